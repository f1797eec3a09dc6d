# Unit tests of arguments.rego.
package mcp_test

import data.mcp

call(tool, arguments) := {"method": "tools/call", "tool": {"name": tool}, "arguments": arguments}

test_reading_under_the_shared_directory_is_allowed if {
	mcp.allow with input as call("read_text_file", {"path": "/srv/shared/report.txt"})
	mcp.allow with input as call("list_directory", {"path": "/srv/shared/"})
}

test_reading_elsewhere_is_denied_with_a_reason if {
	not mcp.allow with input as call("read_text_file", {"path": "/etc/passwd"})
	mcp.reason == "path_not_allowed" with input as call("read_text_file", {"path": "/etc/passwd"})
	not mcp.allow with input as call("read_text_file", {"path": "/srv/sharedx/a"})
}

test_dot_dot_segments_are_denied_even_under_an_allowed_prefix if {
	not mcp.allow with input as call("read_text_file", {"path": "/srv/shared/../../etc/passwd"})
	not mcp.allow with input as call("write_file", {"path": "/srv/shared/uploads/../x", "content": "x"})
}

test_a_missing_or_non_string_path_is_denied if {
	not mcp.allow with input as call("read_text_file", {})
	not mcp.allow with input as call("read_text_file", {"path": ["/srv/shared/a"]})
	not mcp.allow with input as call("read_text_file", null)
}

test_writing_is_allowed_only_under_uploads if {
	mcp.allow with input as call("write_file", {"path": "/srv/shared/uploads/a.txt", "content": "hi"})
	not mcp.allow with input as call("write_file", {"path": "/srv/shared/a.txt", "content": "hi"})
}

test_every_path_of_a_multiple_read_must_be_allowed if {
	mcp.allow with input as call("read_multiple_files", {"paths": ["/srv/shared/a", "/srv/shared/b"]})
	not mcp.allow with input as call("read_multiple_files", {"paths": ["/srv/shared/a", "/etc/shadow"]})
	not mcp.allow with input as call("read_multiple_files", {"paths": []})
}

test_a_move_needs_both_ends_in_uploads if {
	mcp.allow with input as call("move_file", {"source": "/srv/shared/uploads/a", "destination": "/srv/shared/uploads/b"})
	not mcp.allow with input as call("move_file", {"source": "/srv/shared/uploads/a", "destination": "/tmp/b"})
}

test_tools_without_paths_are_not_this_policys_concern if {
	mcp.allow with input as call("echo", {"message": "hi"})
	mcp.allow with input as {"method": "prompts/get", "prompt": {"name": "simple-prompt"}}
}

test_written_content_is_redacted_from_the_audit_log if {
	redact := mcp.redact with input as call("write_file", {"path": "/srv/shared/uploads/a", "content": "secret"})
	redact == {"content"}
	count(mcp.redact) == 0 with input as call("read_text_file", {"path": "/srv/shared/a"})
}
