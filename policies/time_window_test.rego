# Unit tests of time_window.rego.
package mcp_test

import data.mcp

at(tool, weekday, hour) := {
	"method": "tools/call",
	"tool": {"name": tool},
	"time": {"weekday": weekday, "hour": hour, "minute": 30},
}

test_other_tools_are_allowed_in_office_hours if {
	mcp.allow with input as at("toggle-simulated-logging", "Monday", 8)
	mcp.allow with input as at("toggle-simulated-logging", "Friday", 17)
}

test_other_tools_are_denied_outside_office_hours if {
	not mcp.allow with input as at("toggle-simulated-logging", "Monday", 7)
	not mcp.allow with input as at("toggle-simulated-logging", "Monday", 18)
	not mcp.allow with input as at("toggle-simulated-logging", "Saturday", 10)
	mcp.reason == "outside_office_hours" with input as at("toggle-simulated-logging", "Sunday", 12)
}

test_read_only_tools_are_allowed_at_any_time if {
	mcp.allow with input as at("echo", "Sunday", 3)
	mcp.allow with input as at("get-sum", "Saturday", 23)
}

test_a_request_without_time_is_denied if {
	not mcp.allow with input as {"method": "tools/call", "tool": {"name": "toggle-simulated-logging"}}
}
