# Unit tests of demo.rego.
package mcp_test

import data.mcp

req(roles, method, target) := object.union(
	{"subject": {"sub": "demo", "claims": {"roles": roles}}, "method": method},
	target,
)

tool(roles, name) := req(roles, "tools/call", {"tool": {"name": name}})

test_admin_may_call_every_tool if {
	mcp.allow with input as tool(["admin"], "get-env")
	mcp.allow with input as tool(["admin"], "trigger-sampling-request")
	mcp.allow with input as tool("admin", "echo")
}

test_reader_may_call_read_only_tools if {
	every name in ["echo", "get-sum", "get-tiny-image", "get-structured-content"] {
		mcp.allow with input as tool(["reader"], name)
	}
}

test_reader_may_not_call_get_env_or_tools_with_side_effects if {
	every name in ["get-env", "toggle-simulated-logging", "gzip-file-as-resource", "trigger-sampling-request"] {
		not mcp.allow with input as tool(["reader"], name)
	}
	mcp.reason == "tool_not_allowed" with input as tool(["reader"], "get-env")
}

test_a_caller_without_a_role_is_denied_with_reason_no_role if {
	not mcp.allow with input as tool([], "echo")
	mcp.reason == "no_role" with input as tool([], "echo")
	not mcp.allow with input as {"method": "tools/call", "tool": {"name": "echo"}, "subject": {"sub": null, "claims": {}}}
}

test_reader_gets_only_the_simple_prompt_and_static_resources if {
	mcp.allow with input as req(["reader"], "prompts/get", {"prompt": {"name": "simple-prompt"}})
	not mcp.allow with input as req(["reader"], "prompts/get", {"prompt": {"name": "args-prompt"}})
	mcp.reason == "not_allowed" with input as req(["reader"], "prompts/get", {"prompt": {"name": "args-prompt"}})
	mcp.allow with input as req(["reader"], "resources/read", {"resource": {"uri": "demo://resource/static/document/architecture.md"}})
	not mcp.allow with input as req(["reader"], "resources/read", {"resource": {"uri": "demo://resource/dynamic/text/1"}})
}

test_tools_list_is_filtered_per_role if {
	items := [{"name": "echo", "server": null}, {"name": "get-env", "server": null}, {"name": "get-sum", "server": null}]
	reader := mcp.visible_tools with input as req(["reader"], "tools/list", {"items": items})
	reader == {"echo", "get-sum"}
	admin := mcp.visible_tools with input as req(["admin"], "tools/list", {"items": items})
	admin == {"echo", "get-env", "get-sum"}
	nobody := mcp.visible_tools with input as req([], "tools/list", {"items": items})
	nobody == set()
}
