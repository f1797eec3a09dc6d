# Argument constraints: file tools may only touch paths under allowed directories.
#
# Tool names and arguments are those of the reference filesystem MCP server
# (@modelcontextprotocol/server-filesystem). Reading is allowed under /srv/shared/, writing only
# under /srv/shared/uploads/. A path with a ".." segment is refused whatever its prefix, since
# "/srv/shared/../../etc/passwd" starts with an allowed prefix. Tools that take no path are left
# alone: combine this example with rbac.rego for who may call what.
#
# It also shows an obligation: file contents written through the gateway are kept out of the
# audit log (`redact`).
package mcp

read_roots := ["/srv/shared/"]

write_roots := ["/srv/shared/uploads/"]

# Tools that read the `path` argument.
read_tools := {
	"read_file",
	"read_text_file",
	"read_media_file",
	"list_directory",
	"list_directory_with_sizes",
	"directory_tree",
	"search_files",
	"get_file_info",
}

# Tools that change the file at `path`.
write_tools := {"write_file", "edit_file", "create_directory"}

# `path` is a string under one of `roots`, with no ".." segment.
path_under(path, roots) if {
	is_string(path)
	not ".." in split(path, "/")
	some root in roots
	startswith(path, root)
}

default allow := false

allow if {
	input.tool.name in read_tools
	path_under(input.arguments.path, read_roots)
}

allow if {
	input.tool.name in write_tools
	path_under(input.arguments.path, write_roots)
}

# Several paths at once: every one of them must be allowed (and there must be at least one).
allow if {
	input.tool.name == "read_multiple_files"
	count(input.arguments.paths) > 0
	every path in input.arguments.paths {
		path_under(path, read_roots)
	}
}

# A move both reads and writes.
allow if {
	input.tool.name == "move_file"
	path_under(input.arguments.source, write_roots)
	path_under(input.arguments.destination, write_roots)
}

# Every other tool, and prompts and resources, are not this policy's concern.
file_tools := (read_tools | write_tools) | {"read_multiple_files", "move_file"}

allow if not input.tool.name in file_tools

reason := "path_not_allowed" if not allow

# Obligations: argument fields the audit log must not record.
redact contains "content" if input.tool.name == "write_file"

redact contains "edits" if input.tool.name == "edit_file"
