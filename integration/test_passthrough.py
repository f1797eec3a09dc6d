"""A well-behaved MCP client sees the same thing through the gateway as it sees talking to the
server directly: sessions, tool calls, progress streamed over SSE, resources, prompts, the GET
stream and session end. Both protocol generations, with the official Python SDK and raw HTTP."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

import harness
from harness import ACCEPT_BOTH, RawSession, Server

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def gw(envoy, everything_server: Server, py_server: Server, py_json_server: Server, echo_server: Server) -> harness.Envoy:
    return envoy({"everything": everything_server, "py": py_server, "pyjson": py_json_server, "echo": echo_server})


@dataclass
class Transcript:
    """What a client observed in one session, reduced to what must not depend on the path taken."""

    protocol_version: str = ""
    tool_names: list[str] = field(default_factory=list)
    echo: str = ""
    long_result: str = ""
    progress: list[tuple[float, float | None]] = field(default_factory=list)
    resource: str = ""
    prompt: list[Any] = field(default_factory=list)
    # Seconds between the first progress notification and the tool result: a gateway that buffers
    # the SSE stream delivers them together.
    progress_lead: float = 0.0


def text_of(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


async def sdk_session(url: str, mode: str, long_tool: str, long_args: dict[str, Any], prompt: tuple[str, dict[str, str] | None]) -> Transcript:
    seen = Transcript()
    first_progress_at: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        first_progress_at.append(time.monotonic())
        seen.progress.append((progress, total))

    with anyio.fail_after(45):
        async with Client(url, mode=mode) as client:
            seen.protocol_version = client.protocol_version
            seen.tool_names = sorted(t.name for t in (await client.list_tools()).tools)
            seen.echo = text_of(await client.call_tool("echo", {"message": "through the gateway ✓"}))
            result = await client.call_tool(long_tool, long_args, progress_callback=on_progress)
            done_at = time.monotonic()
            seen.long_result = text_of(result)
            seen.progress_lead = done_at - first_progress_at[0] if first_progress_at else 0.0
            resources = (await client.list_resources()).resources
            contents = (await client.read_resource(resources[0].uri)).contents
            seen.resource = getattr(contents[0], "text", "")
            got = await client.get_prompt(prompt[0], prompt[1])
            seen.prompt = [m.model_dump() for m in got.messages]
    return seen


EVERYTHING_LONG = ("trigger-long-running-operation", {"duration": 1.5, "steps": 3})
PY_LONG = ("slow_progress", {"steps": 3, "delay": 0.5})


def assert_streamed_progress(seen: Transcript) -> None:
    assert seen.progress == [(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)]
    # Steps are 0.5 s apart: the first notification must arrive about 1 s before the result.
    assert seen.progress_lead > 0.6, f"progress arrived only {seen.progress_lead:.2f}s before the result: buffered?"


@pytest.mark.filter
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_sdk_session_with_server_everything_matches_direct(gw: harness.Envoy, everything_server: Server, mode: str) -> None:
    # server-everything only speaks the initialize era: "auto" probes server/discover first, gets
    # an error, and must fall back to initialize promptly through the gateway too.
    args = (EVERYTHING_LONG[0], EVERYTHING_LONG[1], ("simple-prompt", None))
    direct = await sdk_session(everything_server.url, mode, *args)
    via_gateway = await sdk_session(gw.base_url + "/mcp", mode, *args)
    assert via_gateway == Transcript(**{**direct.__dict__, "progress_lead": via_gateway.progress_lead})
    assert via_gateway.protocol_version == "2025-11-25"
    assert "echo" in via_gateway.tool_names and "trigger-long-running-operation" in via_gateway.tool_names
    assert via_gateway.echo == "Echo: through the gateway ✓"
    assert_streamed_progress(via_gateway)


@pytest.mark.filter
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28", "auto"])
async def test_sdk_session_with_python_sdk_server_matches_direct(gw: harness.Envoy, py_server: Server, mode: str) -> None:
    args = (PY_LONG[0], PY_LONG[1], ("greet", {"name": "Ada"}))
    direct = await sdk_session(py_server.url, mode, *args)
    via_gateway = await sdk_session(gw.base_url + "/py/mcp", mode, *args)
    assert via_gateway == Transcript(**{**direct.__dict__, "progress_lead": via_gateway.progress_lead})
    assert via_gateway.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
    assert via_gateway.tool_names == ["add", "echo", "slow_progress"]
    assert via_gateway.resource == "Hello from py-test-server"
    assert_streamed_progress(via_gateway)


@pytest.mark.filter
async def test_sdk_2026_session_with_stateless_json_server(gw: harness.Envoy) -> None:
    with anyio.fail_after(30):
        async with Client(gw.base_url + "/pyjson/mcp", mode="2026-07-28") as client:
            assert (await client.call_tool("add", {"a": 2, "b": 40})).structured_content == {"result": 42}
            assert sorted(t.name for t in (await client.list_tools()).tools) == ["add", "echo", "slow_progress"]


def raw_session_steps(base: str) -> list[tuple[str, int, str, Any]]:
    """A 2025-06-18 session by hand; each step reduced to (step, status, content type, key fact)."""
    steps: list[tuple[str, int, str, Any]] = []

    def note(step: str, resp: httpx.Response, fact: Any = None) -> None:
        steps.append((step, resp.status_code, resp.headers.get("content-type", "").split(";")[0], fact))

    with httpx.Client(timeout=15) as client:
        session = RawSession(client, base, version="2025-06-18")
        resp, reply = session.initialize()
        note("initialize", resp, (reply["result"]["protocolVersion"], bool(session.session_id)))
        resp, reply = session.request("tools/list")
        note("tools/list", resp, "echo" in [t["name"] for t in reply["result"]["tools"]])
        resp, reply = session.request("tools/call", {"name": "echo", "arguments": {"message": "raw"}})
        note("tools/call", resp, reply["result"]["content"][0]["text"])
        resp, reply = session.request("tools/call", {"name": "no-such-tool", "arguments": {}})
        note("tools/call unknown", resp, ("error" in reply, reply.get("result", {}).get("isError")))
        resp = client.post(base, json={"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}}, headers=session.headers())
        note("notification", resp)
        with client.stream("GET", base, headers={**session.headers(), "Accept": "text/event-stream"}) as stream:
            note("GET stream", stream)  # headers only: the stream stays open until we close it
        resp = session.delete()
        note("DELETE", resp)
        resp = client.post(base, json=harness.rpc("tools/list", request_id=50), headers=session.headers())
        note("after DELETE", resp)
    return steps


@pytest.mark.filter
def test_raw_2025_session_statuses_and_headers_match_direct(gw: harness.Envoy, everything_server: Server) -> None:
    direct = raw_session_steps(everything_server.url)
    via_gateway = raw_session_steps(gw.base_url + "/mcp")
    assert via_gateway == direct
    # And what that is, spelled out:
    assert via_gateway[0] == ("initialize", 200, "text/event-stream", ("2025-06-18", True))
    assert via_gateway[3][3] == (False, True)  # unknown tool: a result with isError, not a JSON-RPC error
    assert via_gateway[4][:2] == ("notification", 202)
    assert via_gateway[5][:3] == ("GET stream", 200, "text/event-stream")
    assert via_gateway[6][:2] == ("DELETE", 200)
    assert via_gateway[7][1] in (400, 404)  # the ended session is gone upstream


@pytest.mark.filter
def test_raw_initialize_response_headers_pass_through(gw: harness.Envoy) -> None:
    with httpx.Client(timeout=15) as client:
        resp = client.post(gw.base_url + "/mcp", json=harness.initialize_body(7, "2025-11-25"), headers={"Accept": ACCEPT_BOTH})
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers.get("mcp-session-id")
        assert harness.jsonrpc_reply(resp, 7)["result"]["serverInfo"]["name"]
        client.delete(gw.base_url + "/mcp", headers={"Mcp-Session-Id": resp.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"})


@pytest.mark.filter
def test_raw_2026_request_with_routing_headers_reaches_python_server(gw: harness.Envoy) -> None:
    headers = harness.modern_headers("tools/call", "add")
    body = harness.rpc("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}, "_meta": harness.modern_meta()}, 3)
    with httpx.Client(timeout=15) as client:
        resp = client.post(gw.base_url + "/pyjson/mcp", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    assert harness.jsonrpc_reply(resp, 3)["result"]["structuredContent"] == {"result": 3}


def test_envoy_without_the_filter_relays_a_session(envoy, everything_server: Server) -> None:
    """Harness self-check (no filter): Envoy + template + server fixtures relay a raw session."""
    plain = envoy({"everything": everything_server}, wasm=False)
    steps = raw_session_steps(plain.base_url + "/mcp")
    assert steps[0] == ("initialize", 200, "text/event-stream", ("2025-06-18", True))
    assert steps[2][3] == "Echo: raw"
