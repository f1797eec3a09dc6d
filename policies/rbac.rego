# Role-based access per tool.
#
# The caller's roles come from the token's `roles` claim: a list (["reader"]) or one
# space-separated string ("reader auditor"). The gateway copies only the claims its config
# lists, so configure `policy.claims: ["roles"]`.
#
#   admin   every tool, prompt and resource
#   user    the everyday tools of server-everything, every prompt and resource
#   reader  two harmless tools, prompts and resources
#
# Anything not granted is denied: `allow` defaults to false.
package mcp

# Tools each role may call. "*" stands for every tool.
role_tools := {
	"admin": {"*"},
	"user": {
		"echo",
		"get-sum",
		"get-tiny-image",
		"get-annotated-message",
		"get-structured-content",
		"get-resource-links",
		"get-resource-reference",
	},
	"reader": {"echo", "get-sum"},
}

# The caller's roles, whichever form the claim takes.
roles contains role if {
	is_array(input.subject.claims.roles)
	some role in input.subject.claims.roles
}

roles contains role if {
	is_string(input.subject.claims.roles)
	some role in split(input.subject.claims.roles, " ")
	role != ""
}

# Whether any of the caller's roles grants `tool`.
tool_allowed(tool) if {
	some role in roles
	some granted in role_tools[role]
	granted in {"*", tool}
}

default allow := false

allow if {
	input.method == "tools/call"
	tool_allowed(input.tool.name)
}

# Prompts and resources are readable by every known role.
allow if {
	input.method in {"prompts/get", "resources/read"}
	some role in roles
	role in object.keys(role_tools)
}

# Why a call was denied, for the JSON-RPC error (evaluated only on denial).
reason := "no_role" if {
	count(roles) == 0
} else := "tool_not_allowed"

# tools/list shows each caller only the tools it may call: one evaluation for the whole list.
visible_tools contains item.name if {
	some item in input.items
	tool_allowed(item.name)
}
