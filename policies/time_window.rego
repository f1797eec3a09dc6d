# Time windows: read-only tools at any time, everything else only in office hours.
#
# Office hours are Monday to Friday, 08:00 to 18:00 UTC. The gateway passes the time of the
# request in `input.time` (`weekday`, `hour` and `minute` are UTC); for local hours in a fixed
# offset, shift `input.time.unix` instead, e.g. hour := floor(((input.time.unix + 3600) % 86400) / 3600).
package mcp

read_only_tools := {"echo", "get-sum", "get-tiny-image", "get-annotated-message", "get-structured-content"}

office_days := {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}

in_office_hours if {
	input.time.weekday in office_days
	input.time.hour >= 8
	input.time.hour < 18
}

default allow := false

allow if input.tool.name in read_only_tools

allow if in_office_hours

reason := "outside_office_hours" if not allow
