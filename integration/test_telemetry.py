"""What operators see: the access log names the MCP method, name and outcome of each request, and
the admin endpoint counts requests by method/outcome and rejections by reason, with Prometheus
labels from the bootstrap's stats_tags."""

from __future__ import annotations

import re
import uuid
from typing import Any, Iterator

import httpx
import pytest

import harness
from harness import ACCEPT_BOTH, RawSession, Server

pytestmark = pytest.mark.filter

JSON_HEADERS = {"Content-Type": "application/json", "Accept": ACCEPT_BOTH}


@pytest.fixture(scope="module")
def gw(envoy, everything_server: Server, echo_server: Server) -> harness.Envoy:
    return envoy({"everything": everything_server, "echo": echo_server}, {"mcpPaths": harness.MCP_PATHS, "maxRequestBytes": 4096})


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def tagged() -> dict[str, str]:
    """A header that the access log records, to find this request's line."""
    return {"X-Test-Id": uuid.uuid4().hex}


def mcp_counters(gw: harness.Envoy) -> dict[str, int]:
    return {k: v for k, v in gw.stats(r"^wasmcustom\.mcp\.").items()}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def requests_total(method: str, outcome: str) -> str:
    return f"wasmcustom.mcp.requests_total.method={method}.outcome={outcome}"


def rejected_total(reason: str) -> str:
    return f"wasmcustom.mcp.rejected_total.reason={reason}"


# --- access log -------------------------------------------------------------------------------


def test_access_log_names_the_tool_call(gw: harness.Envoy) -> None:
    tag = tagged()
    with httpx.Client(timeout=10) as client:
        session = RawSession(client, gw.base_url + "/mcp", extra_headers=tag)
        session.initialize()
        resp, reply = session.request("tools/call", {"name": "echo", "arguments": {"message": "logged"}})
        session.delete()
    assert reply["result"]["content"][0]["text"] == "Echo: logged"
    entry = gw.wait_access_log(lambda e: e.get("request_id") == tag["X-Test-Id"] and e.get("mcp_method") == "tools/call")
    assert entry["mcp_name"] == "echo"
    assert entry["mcp_outcome"] == "ok"
    assert entry["status"] == 200 and entry["method"] == "POST" and entry["path"] == "/mcp"
    init = gw.wait_access_log(lambda e: e.get("request_id") == tag["X-Test-Id"] and e.get("mcp_method") == "initialize")
    assert init["mcp_outcome"] == "ok"
    assert init["mcp_name"] is None


def test_access_log_records_a_rejected_request_as_invalid(gw: harness.Envoy, http: httpx.Client) -> None:
    tag = tagged()
    resp = http.post(gw.base_url + "/echo/mcp", content=b"{bad json", headers={**JSON_HEADERS, **SESSION, **tag})
    assert resp.status_code == 400
    entry = gw.wait_access_log(lambda e: e.get("request_id") == tag["X-Test-Id"])
    assert entry["status"] == 400
    assert entry["mcp_outcome"] == "invalid"


def test_access_log_leaves_mcp_fields_empty_off_the_mcp_paths(gw: harness.Envoy, http: httpx.Client) -> None:
    tag = tagged()
    assert http.post(gw.base_url + "/other", json=harness.rpc("tools/list"), headers={**JSON_HEADERS, **tag}).status_code == 200
    entry = gw.wait_access_log(lambda e: e.get("request_id") == tag["X-Test-Id"])
    assert entry["mcp_method"] is None and entry["mcp_name"] is None and entry["mcp_outcome"] is None


# --- counters ---------------------------------------------------------------------------------


def test_scripted_session_counts_requests_by_method_and_outcome(gw: harness.Envoy) -> None:
    before = mcp_counters(gw)
    with httpx.Client(timeout=10) as client:
        session = RawSession(client, gw.base_url + "/mcp")
        session.initialize()  # initialize + notifications/initialized
        session.request("tools/list")
        session.request("tools/call", {"name": "echo", "arguments": {"message": "1"}})
        session.request("tools/call", {"name": "echo", "arguments": {"message": "2"}})
        session.request("prompts/get", {"name": "no-such-prompt"})  # a JSON-RPC error from upstream
        session.delete()
    counted = delta(before, mcp_counters(gw))
    assert counted.get(requests_total("initialize", "ok")) == 1, counted
    assert counted.get(requests_total("notifications_initialized", "accepted")) == 1, counted
    assert counted.get(requests_total("tools_list", "ok")) == 1, counted
    assert counted.get(requests_total("tools_call", "ok")) == 2, counted
    assert counted.get(requests_total("prompts_get", "error")) == 1, counted


def test_well_formed_upstream_sse_is_not_counted_as_garbled(gw: harness.Envoy) -> None:
    # server-everything (2025-11-25) opens each SSE reply with a priming event that has an id and
    # an empty `data:` line (for resumability); that is valid SSE, not a garbled message.
    before = mcp_counters(gw)
    with httpx.Client(timeout=20) as client:
        session = RawSession(client, gw.base_url + "/mcp", version="2025-11-25")
        session.initialize()
        resp, reply = session.request("tools/call", {"name": "trigger-long-running-operation", "arguments": {"duration": 0.3, "steps": 3}, "_meta": {"progressToken": "p1"}})
        session.delete()
    assert resp.headers["content-type"].startswith("text/event-stream")
    progress = [m for m in harness.jsonrpc_messages(resp) if m.get("method") == "notifications/progress"]
    assert len(progress) == 3
    counted = delta(before, mcp_counters(gw))
    assert counted.get("wasmcustom.mcp.upstream_garbled_total", 0) == 0, counted


def test_upstream_failure_is_counted_as_upstream_error(gw: harness.Envoy, http: httpx.Client) -> None:
    before = mcp_counters(gw)
    resp = http.post(gw.base_url + "/dead/mcp", json=harness.initialize_body(1), headers=JSON_HEADERS)
    assert resp.status_code >= 500
    assert delta(before, mcp_counters(gw)).get(requests_total("initialize", "upstream_error")) == 1


SESSION = {"MCP-Protocol-Version": "2025-06-18", "Mcp-Session-Id": "s"}
MODERN_CALL = harness.rpc("tools/call", {"name": "echo", "arguments": {}, "_meta": harness.modern_meta()})

# reason -> (HTTP method, path, body, extra headers, expected status)
REJECTIONS: dict[str, tuple[str, str, Any, dict[str, str], int]] = {
    "parse_error": ("POST", "/echo/mcp", b"{bad", SESSION, 400),
    "invalid_request": ("POST", "/echo/mcp", {"jsonrpc": "1.0", "id": 1, "method": "ping"}, SESSION, 400),
    "batch": ("POST", "/echo/mcp", [harness.rpc("ping")], SESSION, 400),
    "body_too_large": ("POST", "/echo/mcp", harness.rpc("ping", {"pad": "x" * 5000}), SESSION, 413),
    "unsupported_media_type": ("POST", "/echo/mcp", b"{}", {**SESSION, "Content-Type": "text/plain"}, 415),
    "header_mismatch": ("POST", "/echo/mcp", MODERN_CALL, harness.modern_headers("tools/list"), 400),
    "missing_session": ("POST", "/echo/mcp", harness.rpc("tools/list"), {"MCP-Protocol-Version": "2025-06-18"}, 400),
    "unsupported_protocol_version": ("POST", "/echo/mcp", harness.rpc("tools/list"), {**SESSION, "MCP-Protocol-Version": "1999-01-01"}, 400),
    "origin": ("POST", "/echo/mcp", harness.initialize_body(), {"Origin": "http://evil.example"}, 403),
    "host": ("POST", "/echo/mcp", harness.initialize_body(), {"Host": "evil.example"}, 403),
    "method_not_allowed": ("PUT", "/echo/mcp", harness.rpc("ping"), SESSION, 405),
}


def send(http: httpx.Client, gw: harness.Envoy, spec: tuple[str, str, Any, dict[str, str], int]) -> httpx.Response:
    method, path, body, headers, _ = spec
    content = body if isinstance(body, bytes) else harness.json_bytes(body)
    return http.request(method, gw.base_url + path, content=content, headers={**JSON_HEADERS, **headers})


@pytest.mark.parametrize("reason", REJECTIONS)
def test_each_rejection_is_counted_once_under_its_reason(gw: harness.Envoy, http: httpx.Client, reason: str) -> None:
    before = mcp_counters(gw)
    resp = send(http, gw, REJECTIONS[reason])
    assert resp.status_code == REJECTIONS[reason][4], resp.text[:300]
    counted = delta(before, mcp_counters(gw))
    rejected = {k: v for k, v in counted.items() if k.startswith("wasmcustom.mcp.rejected_total.")}
    assert rejected == {rejected_total(reason): 1}


# --- Prometheus -------------------------------------------------------------------------------


def test_prometheus_output_has_labelled_mcp_series(gw: harness.Envoy, http: httpx.Client) -> None:
    with httpx.Client(timeout=10) as client:
        session = RawSession(client, gw.base_url + "/mcp")
        session.initialize()
        session.request("tools/call", {"name": "echo", "arguments": {"message": "p"}})
        session.delete()
    send(http, gw, REJECTIONS["parse_error"])
    text = gw.prometheus()
    assert re.search(r'^mcp_requests_total\{method="tools_call",outcome="ok"\} [1-9]\d*$', text, re.M), text[:3000]
    assert re.search(r'^mcp_requests_total\{method="initialize",outcome="ok"\} [1-9]\d*$', text, re.M)
    assert re.search(r'^mcp_rejected_total\{reason="parse_error"\} [1-9]\d*$', text, re.M)
    # One family per metric (duplicate TYPE lines make the whole scrape invalid), no unlabelled leftovers.
    assert text.count("# TYPE mcp_requests_total counter") == 1
    assert text.count("# TYPE mcp_rejected_total counter") == 1
    assert not re.search(r"^mcp_\w*(method|outcome|reason)_", text, re.M)
    assert "wasmcustom" not in text


def test_passthrough_tool_calls_are_labelled_with_the_routed_cluster(gw: harness.Envoy) -> None:
    # Without federation the server label is the Envoy cluster the route picked.
    def calls(text: str, tool: str, outcome: str) -> int:
        m = re.search(rf'^mcp_tool_calls_total\{{outcome="{outcome}",server="everything",tool="{tool}"\}} (\d+)$', text, re.M)
        return int(m.group(1)) if m else 0

    before = gw.prometheus()
    with httpx.Client(timeout=10) as client:
        session = RawSession(client, gw.base_url + "/mcp")
        session.initialize()
        session.request("tools/list")
        session.request("tools/call", {"name": "echo", "arguments": {"message": "label me"}})
        session.request("tools/call", {"name": "no-such-tool-" + uuid.uuid4().hex, "arguments": {}})
        session.delete()
    after = gw.prometheus()
    assert calls(after, "echo", "ok") - calls(before, "echo", "ok") == 1, after[:4000]
    # server-everything answers an unknown tool with an `isError` result: a tool error, counted
    # under `_unknown` (only listed tools become labels), never as a new label.
    unknown = calls(after, "_unknown", "tool_error") - calls(before, "_unknown", "tool_error")
    assert unknown == 1
    assert "no-such-tool" not in after
    # The catalogue's token cost, by cluster.
    assert re.search(r'^mcp_catalogue_tokens\{server="everything"\} [1-9]\d{2,}$', after, re.M)
