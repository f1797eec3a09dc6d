# Per-tenant server sets: each tenant reaches only its own upstream servers.
#
# The tenant comes from the token's `tenant` claim (configure `policy.claims: ["tenant"]`); the
# upstream server is the one the gateway routes the request to (`input.server`). The table is
# written here for readability; a deployment would rather pass it in the gateway config as
# `policy.data: {"tenant_servers": {...}}` and read `data.tenant_servers`.
#
# Lists are filtered the same way: a tenant sees only the tools, prompts and resources of its
# servers, in one evaluation per list.
package mcp

tenant_servers := {
	"acme": {"everything", "files"},
	"globex": {"everything"},
}

tenant := input.subject.claims.tenant

servers := tenant_servers[tenant]

default allow := false

allow if input.server in servers

reason := "unknown_tenant" if {
	not servers
} else := "server_not_allowed"

visible_tools contains item.name if {
	some item in input.items
	item.server in servers
}

visible_prompts contains item.name if {
	some item in input.items
	item.server in servers
}

visible_resources contains item.uri if {
	some item in input.items
	item.server in servers
}
