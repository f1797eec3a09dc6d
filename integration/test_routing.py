"""The filter puts the JSON-RPC method and the tool/prompt name (or resource URI) into request
headers before routing, so plain Envoy routes can match on them; what a client sends in those
headers itself never survives; hostile names don't break anything.

Routes under /routed/mcp all lead to the echo upstream, each adding `x-routed-by: <which route>`;
the echo upstream reports the headers it received, so a test sees both the route Envoy chose and
the routing headers that reached the upstream."""

from __future__ import annotations

from typing import Any, Iterator

import httpx
import pytest

import harness
from harness import ACCEPT_BOTH, RawSession, Server

pytestmark = pytest.mark.filter

SESSION_HEADERS = {"Content-Type": "application/json", "Accept": ACCEPT_BOTH, "MCP-Protocol-Version": "2025-06-18", "Mcp-Session-Id": "s-1"}


@pytest.fixture(scope="module")
def gw(envoy, echo_server: Server, everything_server: Server) -> harness.Envoy:
    return envoy({"echo": echo_server, "everything": everything_server})


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def upstream_view(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text[:500]
    assert resp.headers.get("x-echo-upstream") == "1"
    return resp.json()["result"]["echo"]


def routed(gw: harness.Envoy, http: httpx.Client, body: dict[str, Any], **extra: str) -> dict[str, Any]:
    return upstream_view(http.post(gw.base_url + "/routed/mcp", json=body, headers={**SESSION_HEADERS, **extra}))


def call(name: str, request_id: int = 1) -> dict[str, Any]:
    return harness.rpc("tools/call", {"name": name, "arguments": {}}, request_id)


def test_envoy_routes_on_the_tool_name_from_the_body(gw: harness.Envoy, http: httpx.Client) -> None:
    seen = routed(gw, http, call("echo"))
    assert seen["headers"]["x-routed-by"] == ["mcp-name"]
    assert seen["headers"]["x-mcp-name"] == ["echo"]
    assert seen["headers"]["x-mcp-method"] == ["tools/call"]


def test_envoy_routes_on_the_method_from_the_body(gw: harness.Envoy, http: httpx.Client) -> None:
    seen = routed(gw, http, harness.rpc("tools/list"))
    assert seen["headers"]["x-routed-by"] == ["mcp-method"]
    assert "x-mcp-name" not in seen["headers"]


def test_other_tool_names_take_the_fallback_route(gw: harness.Envoy, http: httpx.Client) -> None:
    seen = routed(gw, http, call("add"))
    assert seen["headers"]["x-routed-by"] == ["fallback"]
    assert seen["headers"]["x-mcp-name"] == ["add"]


@pytest.mark.parametrize(
    ("method", "params", "name"),
    [
        ("prompts/get", {"name": "greet", "arguments": {"name": "Ada"}}, "greet"),
        ("resources/read", {"uri": "test://static/hello"}, "test://static/hello"),
    ],
)
def test_prompt_names_and_resource_uris_are_routing_names(gw: harness.Envoy, http: httpx.Client, method: str, params: dict[str, Any], name: str) -> None:
    seen = routed(gw, http, harness.rpc(method, params))
    assert seen["headers"]["x-mcp-method"] == [method]
    assert seen["headers"]["x-mcp-name"] == [name]


def test_client_supplied_routing_name_is_overwritten_by_the_body(gw: harness.Envoy, http: httpx.Client) -> None:
    seen = routed(gw, http, call("add"), **{"x-mcp-name": "echo", "x-mcp-method": "tools/list"})
    assert seen["headers"]["x-routed-by"] == ["fallback"]
    assert seen["headers"]["x-mcp-name"] == ["add"]
    assert seen["headers"]["x-mcp-method"] == ["tools/call"]


def test_client_supplied_routing_name_is_removed_when_the_body_has_none(gw: harness.Envoy, http: httpx.Client) -> None:
    seen = routed(gw, http, harness.rpc("ping"), **{"x-mcp-name": "echo"})
    assert seen["headers"]["x-routed-by"] == ["fallback"]
    assert "x-mcp-name" not in seen["headers"]
    assert seen["headers"]["x-mcp-method"] == ["ping"]


def test_modern_request_is_routed_on_its_body(gw: harness.Envoy, http: httpx.Client) -> None:
    body = harness.rpc("tools/call", {"name": "echo", "arguments": {}, "_meta": harness.modern_meta()})
    resp = http.post(gw.base_url + "/routed/mcp", json=body, headers=harness.modern_headers("tools/call", "echo"))
    assert upstream_view(resp)["headers"]["x-routed-by"] == ["mcp-name"]


def test_custom_routing_header_names_are_used(envoy, echo_server: Server, http: httpx.Client) -> None:
    custom = envoy({"echo": echo_server}, {"mcpPaths": ["/routed/mcp"], "routingHeaders": {"method": "x-custom-method", "name": "x-custom-name"}})
    seen = upstream_view(http.post(custom.base_url + "/routed/mcp", json=call("echo"), headers=SESSION_HEADERS))
    assert seen["headers"]["x-routed-by"] == ["custom-name"]
    assert seen["headers"]["x-custom-name"] == ["echo"]
    assert seen["headers"]["x-custom-method"] == ["tools/call"]
    assert "x-mcp-name" not in seen["headers"]


HOSTILE_NAMES = {
    "crlf": "echo\r\nx-injected: 1",
    "non_ascii": "naïve-工具-🔧",
    "ten_kb": "t" * 10_240,
    "nul_and_controls": "a\x00b\x07c",
}


@pytest.mark.parametrize("name", HOSTILE_NAMES.values(), ids=HOSTILE_NAMES.keys())
def test_hostile_tool_name_reaches_the_upstream_which_says_unknown_tool(gw: harness.Envoy, http: httpx.Client, name: str) -> None:
    with httpx.Client(timeout=10) as client:
        session = RawSession(client, gw.base_url + "/mcp", version="2025-06-18")
        session.initialize()
        resp, reply = session.request("tools/call", {"name": name, "arguments": {}})
        session.delete()
    assert resp.status_code == 200
    # server-everything answers an unknown tool with an isError result (not a JSON-RPC error).
    assert reply["result"]["isError"] is True
    assert "not found" in reply["result"]["content"][0]["text"].lower()


@pytest.mark.parametrize("name", HOSTILE_NAMES.values(), ids=HOSTILE_NAMES.keys())
def test_hostile_tool_name_never_becomes_a_raw_header(gw: harness.Envoy, http: httpx.Client, name: str) -> None:
    seen = routed(gw, http, call(name))
    assert seen["headers"]["x-mcp-method"] == ["tools/call"]  # the filter did handle it
    assert "x-injected" not in seen["headers"]
    for value in seen["headers"].get("x-mcp-name", []):
        assert all(0x20 <= ord(ch) < 0x7F for ch in value), repr(value[:80])
    assert seen["headers"]["x-routed-by"] == ["fallback"]
