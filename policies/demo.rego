# The demo's policy: two roles, from the token's `roles` claim (configure
# `policy.claims: ["roles"]`).
#
#   admin   may call every tool, get every prompt, read every resource
#   reader  may call only the read-only tools of server-everything, get the simple prompt and
#           read the static resources
#
# get-env is marked read-only by server-everything, but it reveals the server's environment
# variables: readers do not get it. Everything else is denied with a machine-readable reason.
package mcp

reader_tools := {
	"echo",
	"get-sum",
	"get-tiny-image",
	"get-annotated-message",
	"get-structured-content",
	"get-resource-links",
	"get-resource-reference",
}

reader_prompts := {"simple-prompt"}

# The caller's roles: a list claim, or one space-separated string.
roles contains role if {
	is_array(input.subject.claims.roles)
	some role in input.subject.claims.roles
}

roles contains role if {
	is_string(input.subject.claims.roles)
	some role in split(input.subject.claims.roles, " ")
}

is_admin if "admin" in roles

is_reader if "reader" in roles

default allow := false

allow if is_admin

allow if {
	is_reader
	input.method == "tools/call"
	input.tool.name in reader_tools
}

allow if {
	is_reader
	input.method == "prompts/get"
	input.prompt.name in reader_prompts
}

allow if {
	is_reader
	input.method == "resources/read"
	startswith(input.resource.uri, "demo://resource/static/")
}

reason := "no_role" if {
	not is_admin
	not is_reader
} else := "tool_not_allowed" if {
	input.method == "tools/call"
} else := "not_allowed"

# tools/list and prompts/list: one evaluation for the whole list.
visible_tools contains item.name if {
	some item in input.items
	is_admin
}

visible_tools contains item.name if {
	some item in input.items
	is_reader
	item.name in reader_tools
}

visible_prompts contains item.name if {
	some item in input.items
	is_admin
}

visible_prompts contains item.name if {
	some item in input.items
	is_reader
	item.name in reader_prompts
}
