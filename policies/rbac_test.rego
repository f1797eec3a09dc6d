# Unit tests of rbac.rego, run by filter/core/tests/policies.rs
# (with OPA: `opa test policies/rbac.rego policies/rbac_test.rego`).
package mcp_test

import data.mcp

call(roles, tool) := {
	"subject": {"sub": "alice", "claims": {"roles": roles}},
	"method": "tools/call",
	"tool": {"name": tool},
}

test_admin_may_call_any_tool if {
	mcp.allow with input as call(["admin"], "get-env")
	mcp.allow with input as call(["admin"], "trigger-long-running-operation")
}

test_reader_may_call_echo_and_get_sum if {
	mcp.allow with input as call(["reader"], "echo")
	mcp.allow with input as call(["reader"], "get-sum")
}

test_reader_may_not_call_other_tools if {
	not mcp.allow with input as call(["reader"], "get-env")
	not mcp.allow with input as call(["reader"], "get-tiny-image")
	mcp.reason == "tool_not_allowed" with input as call(["reader"], "get-env")
}

test_user_gets_more_tools_than_reader if {
	mcp.allow with input as call(["user"], "get-tiny-image")
	not mcp.allow with input as call(["user"], "get-env")
}

test_roles_may_be_a_space_separated_string if {
	mcp.allow with input as call("auditor reader", "echo")
	not mcp.allow with input as call("auditor", "echo")
}

test_several_roles_combine if {
	mcp.allow with input as call(["reader", "admin"], "get-env")
}

test_no_roles_is_denied_with_reason_no_role if {
	not mcp.allow with input as call([], "echo")
	mcp.reason == "no_role" with input as call([], "echo")
	not mcp.allow with input as {"method": "tools/call", "tool": {"name": "echo"}, "subject": {"claims": {}}}
}

test_unknown_role_is_denied if {
	not mcp.allow with input as call(["superuser"], "echo")
}

test_known_roles_may_read_prompts_and_resources if {
	mcp.allow with input as {"method": "prompts/get", "prompt": {"name": "simple-prompt"}, "subject": {"claims": {"roles": ["reader"]}}}
	mcp.allow with input as {"method": "resources/read", "resource": {"uri": "demo://resource/static/document/x"}, "subject": {"claims": {"roles": ["reader"]}}}
	not mcp.allow with input as {"method": "prompts/get", "prompt": {"name": "simple-prompt"}, "subject": {"claims": {"roles": ["guest"]}}}
}

test_tools_list_shows_a_reader_only_its_tools if {
	items := [
		{"name": "echo", "server": "everything"},
		{"name": "get-env", "server": "everything"},
		{"name": "get-sum", "server": "everything"},
	]
	visible := mcp.visible_tools with input as {"method": "tools/list", "items": items, "subject": {"claims": {"roles": ["reader"]}}}
	visible == {"echo", "get-sum"}
}
