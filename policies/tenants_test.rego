# Unit tests of tenants.rego.
package mcp_test

import data.mcp

call(tenant, server) := {
	"subject": {"claims": {"tenant": tenant}},
	"method": "tools/call",
	"server": server,
	"tool": {"name": "echo"},
}

test_a_tenant_reaches_its_servers if {
	mcp.allow with input as call("acme", "everything")
	mcp.allow with input as call("acme", "files")
	mcp.allow with input as call("globex", "everything")
}

test_a_tenant_does_not_reach_other_servers if {
	not mcp.allow with input as call("globex", "files")
	mcp.reason == "server_not_allowed" with input as call("globex", "files")
}

test_an_unknown_or_missing_tenant_is_denied if {
	not mcp.allow with input as call("initech", "everything")
	mcp.reason == "unknown_tenant" with input as call("initech", "everything")
	not mcp.allow with input as {"method": "tools/call", "server": "everything", "subject": {"claims": {}}}
}

test_a_request_without_a_known_server_is_denied if {
	not mcp.allow with input as call("acme", null)
}

test_lists_show_only_the_tenants_servers if {
	items := [
		{"name": "echo", "server": "everything"},
		{"name": "read_text_file", "server": "files"},
	]
	visible := mcp.visible_tools with input as {"method": "tools/list", "items": items, "subject": {"claims": {"tenant": "globex"}}}
	visible == {"echo"}
	resources := [{"uri": "file:///a", "server": "files"}]
	mcp.visible_resources == {"file:///a"} with input as {"items": resources, "subject": {"claims": {"tenant": "acme"}}}
}
