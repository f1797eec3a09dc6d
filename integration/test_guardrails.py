"""Issue 6 through real Envoy (two workers) and a real SDK server (servers/guard_server.py):
rate limits exact across workers, token budgets, the result cache (asserted on the upstream's own
call counter), tool pinning against a rug pull, and approval for destructive tools.

One Envoy (template configs/federation.yaml, concurrency 2) federating the guard server.
"""

from __future__ import annotations

import concurrent.futures
import re
import uuid
from typing import Any, Iterator

import httpx
import pytest

import guardkit
import harness
from harness import RawSession, Server

pytestmark = pytest.mark.filter

TEMPLATE = harness.CONFIGS / "federation.yaml"
BURST_LIMIT = 5


@pytest.fixture(scope="module")
def gw(envoy, guard_server: Server) -> harness.Envoy:
    config = {
        "mcpPaths": ["/mcp"],
        "servers": [{"name": "guard", "cluster": "guard", "authority": guard_server.authority}],
        # Every tools/list fans out, so a changed description is seen at once.
        "federation": {"sessionKey": harness.session_key(), "listCacheTtlMs": 0},
        "limits": {
            "anonymous": "shared",
            "rateLimits": [
                {"name": "counted-burst", "by": ["tool"], "match": {"tool": "counted"}, "requests": BURST_LIMIT, "perSeconds": 3600},
            ],
            "tokenBudgets": [
                {"name": "clean-budget", "by": ["subject"], "match": {"tool": "clean"}, "tokens": 5, "windowSeconds": 3600},
            ],
        },
        "resultCache": {"readOnlyHint": True, "scope": "global", "ttlSeconds": 300},
        "pinning": {"mode": "hide"},
        "approval": {"destructive": "require"},
    }
    return envoy({"guard": guard_server}, config, template=TEMPLATE, concurrency=2)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=20) as client:
        yield client


@pytest.fixture(autouse=True)
def fresh(guard_server: Server) -> None:
    guardkit.flip(guard_server, False)


def session(http: httpx.Client, gw: harness.Envoy) -> RawSession:
    s = RawSession(http, gw.base_url + "/mcp")
    resp, reply = s.initialize()
    assert resp.status_code == 200 and "result" in reply, resp.text[:500]
    return s


def tool_names(s: RawSession) -> list[str]:
    resp, reply = s.request("tools/list")
    assert "result" in reply, reply
    return [t["name"] for t in reply["result"]["tools"]]


call = guardkit.call


def counter(gw: harness.Envoy, name: str) -> int:
    return sum(v for k, v in gw.stats(r"^wasmcustom\.mcp\.").items() if k == "wasmcustom." + name)


# --- rate limits ------------------------------------------------------------------------------


def test_a_burst_across_two_workers_gets_exactly_the_limit_through(gw: harness.Envoy, http: httpx.Client, guard_server: Server) -> None:
    s = session(http, gw)
    tool_names(s)
    before = guardkit.calls(guard_server)["counted"]
    cx_before = {k: v for k, v in gw.stats(r"^listener\..*\.worker_\d+\.downstream_cx_total$").items()}

    def one(i: int) -> tuple[int, dict[str, Any], str | None]:
        # A connection of its own, so Envoy spreads the burst over both workers.
        with httpx.Client(timeout=20) as c:
            own = RawSession(c, gw.base_url + "/mcp")
            own.session_id = s.session_id
            own.next_id = 1000 + i  # ids must differ within a session, or the server mixes answers up
            resp, reply = call(own, "guard__counted", {"key": f"k{i}"})
            return resp.status_code, reply, resp.headers.get("retry-after")

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(4 * BURST_LIMIT)))
    admitted = [r for r in results if "result" in r[1]]
    limited = [r for r in results if "error" in r[1]]
    assert len(admitted) == BURST_LIMIT, results
    assert guardkit.calls(guard_server)["counted"] - before == BURST_LIMIT
    for status, reply, retry_after in limited:
        assert status == 200 and reply["error"]["code"] == -31429
        assert reply["error"]["data"]["limit"]["name"] == "counted-burst"
        assert retry_after is not None and int(retry_after) >= 1
        assert "retry after" in reply["error"]["message"].lower()
    cx_after = gw.stats(r"^listener\..*\.worker_\d+\.downstream_cx_total$")
    grew = [k for k, v in cx_after.items() if v > cx_before.get(k, 0)]
    assert len(grew) == 2, f"the burst should land on both workers: {cx_after}"
    assert counter(gw, "mcp.rate_limited_total.rule=counted-burst.kind=rate") == 3 * BURST_LIMIT
    assert counter(gw, "mcp.requests_total.method=tools_call.outcome=rate_limited") >= 3 * BURST_LIMIT


def test_a_spent_token_budget_refuses_the_next_call_until_the_window_ends(gw: harness.Envoy, http: httpx.Client, guard_server: Server) -> None:
    s = session(http, gw)
    tool_names(s)
    text = "a sentence that costs more than five tokens to put into a model's context"
    resp, reply = call(s, "guard__clean", {"text": text})
    assert reply["result"]["content"][0]["text"] == text
    resp, reply = call(s, "guard__clean", {"text": "again"})
    assert reply["error"]["code"] == -31430, reply
    limit = reply["error"]["data"]["limit"]
    assert limit["name"] == "clean-budget" and limit["used"] >= 5
    assert 0 < reply["error"]["data"]["retryAfterSeconds"] <= 3600
    # Other tools are not under that budget.
    assert "result" in call(s, "guard__mutable", {})[1]


# --- result cache -----------------------------------------------------------------------------


def test_a_read_only_result_is_served_from_the_cache_without_reaching_the_upstream(gw: harness.Envoy, http: httpx.Client, guard_server: Server) -> None:
    s = session(http, gw)
    tool_names(s)  # the registry learns lookup's readOnlyHint
    query = "cache-" + uuid.uuid4().hex
    reached = lambda: guardkit.calls(guard_server)["by_tool"].get("lookup", 0)  # noqa: E731
    before = reached()
    first_resp, first = call(s, "guard__lookup", {"query": query})
    assert first_resp.headers.get("x-mcp-cache") == "miss"
    assert reached() == before + 1
    # The same arguments again: a hit, with this request's id, the upstream untouched.
    for _ in range(3):
        resp, again = call(s, "guard__lookup", {"query": query})
        assert resp.headers.get("x-mcp-cache") == "hit"
        assert again["id"] != first["id"]
        assert again["result"]["content"] == first["result"]["content"]
        assert again["result"]["_meta"]["io.mcpgw/cache"] == "hit"
    assert reached() == before + 1
    # Other arguments: a miss that reaches the server.
    resp, _ = call(s, "guard__lookup", {"query": query + "-other"})
    assert resp.headers.get("x-mcp-cache") == "miss" and reached() == before + 2
    assert counter(gw, "mcp.cache_total.result=hit") >= 3


def test_tools_without_a_read_only_hint_are_never_cached(gw: harness.Envoy, http: httpx.Client, guard_server: Server) -> None:
    s = session(http, gw)
    tool_names(s)
    before = guardkit.calls(guard_server)["by_tool"].get("wipe", 0)
    for _ in range(2):
        resp, reply = call(s, "guard__wipe", {"target": "t"}, meta={"io.mcpgw/approve": True})
        assert "x-mcp-cache" not in resp.headers and "result" in reply
    assert guardkit.calls(guard_server)["by_tool"].get("wipe", 0) == before + 2


# --- pinning ----------------------------------------------------------------------------------


def test_a_tool_whose_description_changes_is_flagged_hidden_and_refused(gw: harness.Envoy, http: httpx.Client, guard_server: Server) -> None:
    s = session(http, gw)
    assert "guard__mutable" in tool_names(s)
    assert "result" in call(s, "guard__mutable", {})[1]
    changed_before = counter(gw, "mcp.pinning_total.server=guard.event=changed")
    guardkit.flip(guard_server, True)
    names = tool_names(s)
    assert "guard__mutable" not in names and "guard__lookup" in names
    assert counter(gw, "mcp.pinning_total.server=guard.event=changed") > changed_before
    resp, reply = call(s, "guard__mutable", {})
    assert "error" in reply, reply
    # Approved definition back: visible and callable again.
    guardkit.flip(guard_server, False)
    assert "guard__mutable" in tool_names(s)
    assert "result" in call(s, "guard__mutable", {})[1]
    assert re.search(r"tool guard__mutable of guard changed its definition: pinned [0-9a-f]{64} now [0-9a-f]{64}", gw.log())


# --- approval ---------------------------------------------------------------------------------


def test_a_destructive_tool_needs_an_explicit_approval(gw: harness.Envoy, http: httpx.Client, guard_server: Server) -> None:
    s = session(http, gw)
    tool_names(s)
    before = guardkit.calls(guard_server)["by_tool"].get("wipe", 0)
    resp, reply = call(s, "guard__wipe", {"target": "prod-db"})
    assert resp.status_code == 200 and reply["error"]["code"] == -31403, reply
    approval = reply["error"]["data"]["approval"]
    assert approval["retryWith"] == {"_meta": {"io.mcpgw/approve": True}}
    assert "destructive" in reply["error"]["message"]
    assert guardkit.calls(guard_server)["by_tool"].get("wipe", 0) == before
    resp, reply = call(s, "guard__wipe", {"target": "prod-db"}, meta={"io.mcpgw/approve": True})
    assert reply["result"]["content"][0]["text"] == "wiped prod-db"
