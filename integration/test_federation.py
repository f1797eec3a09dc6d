"""Federation (docs/federation.md): one gateway endpoint in front of several real MCP servers.

Servers: npm server-everything (stateful, SSE), the project's Python SDK server stateful with SSE
(`py`) and stateless with plain JSON (`pyjson`), and `paged`, whose lists come in pages. The
Python servers record every request they receive (servers/request_log.py), so the tests check what
reached which server, not only what the client was told; server-everything is observed through
Envoy's per-cluster request counters.

Envoys: `gw` (the four servers, two workers), `twin` (same configuration and session key, another
process), `aux` (py, pyjson and `victim`, a server-everything the tests kill and restart; another
key; no list cache).
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import re
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import anyio
import httpx
import mcp_types as types
import pytest
import yaml
from mcp import Client

import harness
from harness import ACCEPT_BOTH, RawSession, Server

pytestmark = pytest.mark.filter

TEMPLATE = harness.CONFIGS / "federation.yaml"
JSON_HEADERS = {"Content-Type": "application/json", "Accept": ACCEPT_BOTH}
# Upstream clusters of the template; the test checks which of them a request reached.
CLUSTERS = ("everything", "py", "pyjson", "paged", "victim")
VICTIM_TIMEOUT_MS = 3000


def server_entry(name: str, server: Server | None, **extra: Any) -> dict[str, Any]:
    """A `servers[]` entry for the template's cluster `name`. The Python SDK servers accept only a
    127.0.0.1 Host (DNS-rebinding protection), so the gateway's own calls name the port."""
    entry: dict[str, Any] = {"name": name, "cluster": name, **extra}
    if server is not None:
        entry["authority"] = server.authority
    return entry


def plugin_config(servers: list[dict[str, Any]], **federation: Any) -> dict[str, Any]:
    return {"mcpPaths": ["/mcp"], "servers": servers, "federation": federation}


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key() -> str:
    return harness.session_key()


@pytest.fixture(scope="module")
def main_config(key: str, everything_server: Server, py_server: Server, py_json_server: Server, paged_server: Server) -> dict[str, Any]:
    return plugin_config(
        [
            server_entry("everything", everything_server, tools={"deny": ["get-env"]}),
            server_entry("py", py_server),
            server_entry("pyjson", py_json_server),
            server_entry("paged", paged_server),
        ],
        sessionKey=key,
    )


@pytest.fixture(scope="module")
def upstreams(everything_server: Server, py_server: Server, py_json_server: Server, paged_server: Server) -> dict[str, Server]:
    return {"everything": everything_server, "py": py_server, "pyjson": py_json_server, "paged": paged_server}


@pytest.fixture(scope="module")
def gw(envoy, upstreams: dict[str, Server], main_config: dict[str, Any]) -> harness.Envoy:
    """Two workers; the connection handler's debug lines show which worker took each connection."""
    return envoy(upstreams, main_config, template=TEMPLATE, concurrency=2, extra_args=("--component-log-level", "conn_handler:debug"))


@pytest.fixture(scope="module")
def twin(envoy, upstreams: dict[str, Server], main_config: dict[str, Any]) -> harness.Envoy:
    """A second Envoy process with the same configuration (and so the same session key)."""
    return envoy(upstreams, main_config, template=TEMPLATE)


class Victim:
    """A server-everything (session-based only) the tests may kill; `restart()` brings it back on
    the same port."""

    def __init__(self, proc_dir: Path) -> None:
        self.proc_dir = proc_dir
        self.server = harness.start_everything(proc_dir)
        self.port = self.server.port

    def kill(self) -> None:
        assert self.server.proc.popen is not None
        self.server.proc.popen.kill()  # SIGKILL: a crash, not a graceful shutdown
        self.server.proc.popen.wait(timeout=10)

    def restart(self) -> None:
        self.server.stop()
        self.server = harness.start_everything(self.proc_dir, port=self.port)

    def ensure_alive(self) -> None:
        if not self.server.proc.alive():
            self.restart()


@pytest.fixture(scope="module")
def victim(proc_dir: Path) -> Iterator[Victim]:
    v = Victim(proc_dir)
    try:
        yield v
    finally:
        v.server.stop()


@pytest.fixture(scope="module")
def aux(envoy, py_server: Server, py_json_server: Server, victim: Victim) -> harness.Envoy:
    """Another session key, no list cache, and a server to kill with a short timeoutMs."""
    config = plugin_config(
        [
            server_entry("py", py_server),
            server_entry("pyjson", py_json_server),
            server_entry("victim", victim.server, timeoutMs=VICTIM_TIMEOUT_MS),
        ],
        sessionKey=harness.session_key(),
        listCacheTtlMs=0,
    )
    return envoy({"py": py_server, "pyjson": py_json_server, "victim": victim.server}, config, template=TEMPLATE)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=20) as client:
        yield client


def session(http: httpx.Client, gw: harness.Envoy, capabilities: dict[str, Any] | None = None) -> RawSession:
    s = RawSession(http, gw.base_url + "/mcp", capabilities=capabilities)
    resp, reply = s.initialize()
    assert resp.status_code == 200 and "result" in reply, resp.text[:1000]
    assert s.session_id and s.session_id.startswith("g1."), resp.headers
    return s


def fresh_scope() -> dict[str, Any]:
    """Client capabilities no other test declared: merged lists are cached per capability set,
    so a session with these starts with an empty cache."""
    return {"experimental": {f"test-{uuid.uuid4().hex}": {}}}


# --- what the servers offer directly ------------------------------------------------------------

LISTS = {
    "tools/list": "tools",
    "prompts/list": "prompts",
    "resources/list": "resources",
    "resources/templates/list": "resourceTemplates",
}


def list_all(s: RawSession, method: str) -> list[dict[str, Any]] | None:
    """Every item of a list, following nextCursor; None if the server does not offer the list."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] | None = None
    for _ in range(50):
        _, reply = s.request(method, params)
        if "error" in reply:
            assert reply["error"]["code"] == -32601, reply
            return None
        items += reply["result"][LISTS[method]]
        cursor = reply["result"].get("nextCursor")
        if not cursor:
            return items
        params = {"cursor": cursor}
    raise AssertionError(f"{method}: more than 50 pages")


@pytest.fixture(scope="module")
def direct(upstreams: dict[str, Server]) -> dict[str, dict[str, list[dict[str, Any]] | None]]:
    """{server: {method: items}}: each server's own lists, asked directly with the capabilities
    the tests' gateway sessions declare ({})."""
    out: dict[str, dict[str, list[dict[str, Any]] | None]] = {}
    with httpx.Client(timeout=20) as client:
        for name, server in upstreams.items():
            s = RawSession(client, server.url)
            s.initialize()
            out[name] = {method: list_all(s, method) for method in LISTS}
            if s.session_id:
                s.delete()
    return out


def merged(s: RawSession, method: str) -> list[dict[str, Any]]:
    resp, reply = s.request(method)
    assert resp.status_code == 200 and "result" in reply, resp.text[:1000]
    assert "nextCursor" not in reply["result"], "a merged list is complete: no cursor"
    return reply["result"][LISTS[method]]


def prefixed(server: str, item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "name": f"{server}__{item['name']}"}


# --- upstream observations ---------------------------------------------------------------------


def cluster_requests(gw: harness.Envoy) -> dict[str, int]:
    """Requests Envoy sent to each upstream cluster (routed ones and the filter's own calls)."""
    stats = gw.stats(r"^cluster\.[a-z]+\.upstream_rq_total$")
    return {c: stats.get(f"cluster.{c}.upstream_rq_total", 0) for c in CLUSTERS}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def received(server: Server, since: int = 0, **match: Any) -> list[dict[str, Any]]:
    """Messages the server received after the first `since`, matching every `field=value`."""
    return [r for r in server.requests()[since:] if all(r.get(k) == v for k, v in match.items())]


def failures(gw: harness.Envoy) -> dict[str, int]:
    prefix = "wasmcustom.mcp.upstream_failures_total.server="
    return {k[len(prefix):]: v for k, v in gw.stats(r"upstream_failures_total").items() if k.startswith(prefix)}


def error_of(reply: dict[str, Any]) -> tuple[int, str]:
    assert "error" in reply, reply
    return reply["error"]["code"], reply["error"]["message"]


# --- merged lists ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["tools/list", "prompts/list"])
def test_merged_list_has_every_servers_items_prefixed_and_nothing_else(gw: harness.Envoy, http: httpx.Client, direct: dict[str, Any], method: str) -> None:
    got = merged(session(http, gw), method)
    expected = [
        prefixed(server, item)
        for server, lists in direct.items()
        for item in lists[method] or []
        if not (method == "tools/list" and server == "everything" and item["name"] == "get-env")
    ]
    assert sorted(i["name"] for i in got) == sorted(i["name"] for i in expected)
    # Only the name changes: descriptions, schemas and annotations arrive as the server sent them.
    by_name = {i["name"]: i for i in got}
    for item in expected:
        assert by_name[item["name"]] == item


def first_owner_wins(direct: dict[str, Any], method: str, key: str) -> list[dict[str, Any]]:
    """What a merged resource list holds: each URI once, from the first server (config order)
    that offers it; `direct` is in config order."""
    seen: set[str] = set()
    out = []
    for lists in direct.values():
        for item in lists[method] or []:
            if item[key] not in seen:
                seen.add(item[key])
                out.append(item)
    return out


def test_merged_resources_are_every_servers_resources_with_their_own_uris(gw: harness.Envoy, http: httpx.Client, direct: dict[str, Any]) -> None:
    s = session(http, gw)
    for method in ("resources/list", "resources/templates/list"):
        got = merged(s, method)
        key = "uri" if method == "resources/list" else "uriTemplate"
        expected = first_owner_wins(direct, method, key)
        assert expected, f"no server offers {method}: the test would prove nothing"
        assert Counter(i[key] for i in got) == Counter(i[key] for i in expected), method
        assert sorted(got, key=json.dumps) == sorted(expected, key=json.dumps)


def test_a_uri_two_servers_offer_is_listed_once_and_read_from_the_first(gw: harness.Envoy, http: httpx.Client, direct: dict[str, Any], py_server: Server, py_json_server: Server) -> None:
    offered_by = [name for name, lists in direct.items() if any(r["uri"] == "test://static/hello" for r in lists["resources/list"] or [])]
    assert offered_by[:2] == ["py", "pyjson"], offered_by
    s = session(http, gw)
    uris = [r["uri"] for r in merged(s, "resources/list")]
    assert uris.count("test://static/hello") == 1
    since_py, since_json = len(py_server.requests()), len(py_json_server.requests())
    _, reply = s.request("resources/read", {"uri": "test://static/hello"})
    assert "result" in reply, reply
    assert received(py_server, since_py, rpc="resources/read", uri="test://static/hello")
    assert not received(py_json_server, since_json, rpc="resources/read"), "the second server was asked"


def test_merged_list_follows_every_page_of_a_paged_server(gw: harness.Envoy, http: httpx.Client, paged_server: Server) -> None:
    since = len(paged_server.requests())
    s = session(http, gw, fresh_scope())  # an empty cache: the lists are fetched now
    tools = [t["name"] for t in merged(s, "tools/list") if t["name"].startswith("paged__")]
    prompts = [p["name"] for p in merged(s, "prompts/list") if p["name"].startswith("paged__")]
    assert tools == [f"paged__page_tool_{i:02d}" for i in range(11)]
    assert prompts == [f"paged__page_prompt_{i}" for i in range(5)]
    cursors = [r["cursor"] for r in received(paged_server, since, rpc="tools/list")]
    assert cursors == [None, "page-1", "page-2"]
    # A tool from the last page is callable like any other.
    _, reply = s.request("tools/call", {"name": "paged__page_tool_10", "arguments": {"x": "last"}})
    assert reply["result"]["content"][0]["text"] == 'page_tool_10: {"x": "last"}'


# --- tools.deny --------------------------------------------------------------------------------


def test_denied_tool_is_not_listed_and_calling_it_is_answered_like_an_unknown_tool(gw: harness.Envoy, http: httpx.Client, direct: dict[str, Any]) -> None:
    assert "get-env" in {t["name"] for t in direct["everything"]["tools/list"]}, "server-everything no longer has get-env"
    s = session(http, gw)
    assert "everything__get-env" not in {t["name"] for t in merged(s, "tools/list")}
    before = cluster_requests(gw)
    resp_denied, denied = s.request("tools/call", {"name": "everything__get-env", "arguments": {}})
    resp_unknown, unknown = s.request("tools/call", {"name": "nope__x", "arguments": {}})
    assert (resp_denied.status_code, error_of(denied)) == (200, (-32602, "Unknown tool: everything__get-env"))
    assert (resp_unknown.status_code, error_of(unknown)) == (200, (-32602, "Unknown tool: nope__x"))
    # The denied call never reached server-everything.
    assert delta(before, cluster_requests(gw)) == {}


def test_denied_tool_and_missing_tool_of_the_same_server_get_the_same_answer(gw: harness.Envoy, http: httpx.Client) -> None:
    """Otherwise a client tells a hidden tool from a missing one (docs: "the error does not reveal
    what exists")."""
    s = session(http, gw)
    _, denied = s.request("tools/call", {"name": "everything__get-env", "arguments": {}})
    _, missing = s.request("tools/call", {"name": "everything__no-such-tool", "arguments": {}})
    assert error_of(missing) == (-32602, "Unknown tool: everything__no-such-tool"), missing
    assert error_of(denied) == (-32602, "Unknown tool: everything__get-env")


# --- routing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments", "owner", "own_name"),
    [
        ("everything__echo", {"message": "MARK"}, "everything", "echo"),
        ("py__echo", {"message": "MARK"}, "py", "echo"),
        ("pyjson__echo", {"message": "MARK"}, "pyjson", "echo"),
        ("paged__page_tool_03", {"x": "MARK"}, "paged", "page_tool_03"),
    ],
)
def test_tool_call_reaches_only_the_owning_server_under_its_own_name(
    gw: harness.Envoy, http: httpx.Client, upstreams: dict[str, Server], tool: str, arguments: dict[str, str], owner: str, own_name: str
) -> None:
    s = session(http, gw)
    merged(s, "tools/list")  # warm the cache, so that the call below is the only upstream request
    mark = uuid.uuid4().hex
    arguments = {k: v.replace("MARK", mark) for k, v in arguments.items()}
    logged = {name: len(server.requests()) for name, server in upstreams.items() if server.request_log}
    before = cluster_requests(gw)
    resp, reply = s.request("tools/call", {"name": tool, "arguments": arguments})
    assert resp.status_code == 200 and "result" in reply, resp.text[:1000]
    assert mark in json.dumps(reply["result"])
    assert delta(before, cluster_requests(gw)) == {owner: 1}
    for name, since in logged.items():
        calls = [r for r in received(upstreams[name], since) if mark in json.dumps(r.get("arguments"))]
        if name == owner:
            # The prefix is stripped, the rest of the request arrives as sent.
            assert [(r["rpc"], r["name"], r["arguments"]) for r in calls] == [("tools/call", own_name, arguments)]
        else:
            assert calls == [], f"{name} received a call meant for {owner}"
    # The client never sees an upstream's session id, only the gateway's.
    assert resp.headers.get("mcp-session-id") in (None, s.session_id)


def test_prompt_get_reaches_the_owning_server_under_its_own_name(gw: harness.Envoy, http: httpx.Client, py_server: Server, py_json_server: Server) -> None:
    s = session(http, gw)
    since_py, since_json = len(py_server.requests()), len(py_json_server.requests())
    _, reply = s.request("prompts/get", {"name": "pyjson__greet", "arguments": {"name": "Ada"}})
    assert reply["result"]["messages"][0]["content"]["text"] == "Please greet Ada warmly."
    assert [r["name"] for r in received(py_json_server, since_json, rpc="prompts/get")] == ["greet"]
    assert received(py_server, since_py, rpc="prompts/get") == []


def test_resource_read_goes_to_the_server_that_lists_the_uri(gw: harness.Envoy, http: httpx.Client, direct: dict[str, Any], everything_server: Server) -> None:
    """URIs are not prefixed: the owner comes from the merged resource list. `paged` offers no
    resources at all, which must not keep the others' from being read."""
    uri = direct["everything"]["resources/list"][0]["uri"]
    with httpx.Client(timeout=20) as client:
        d = RawSession(client, everything_server.url)
        d.initialize()
        _, want = d.request("resources/read", {"uri": uri})
        d.delete()
    s = session(http, gw, fresh_scope())  # nothing cached: the gateway must list to find the owner
    before = cluster_requests(gw)
    resp, reply = s.request("resources/read", {"uri": uri})
    assert resp.status_code == 200 and reply.get("result") == want["result"], resp.text[:1000]
    assert delta(before, cluster_requests(gw)).get("everything", 0) >= 1
    _, missing = s.request("resources/read", {"uri": "test://nobody/offers/this"})
    assert error_of(missing) == (-32002, "Resource not found: test://nobody/offers/this")


def test_resource_read_routes_by_uri_without_a_list_cache(aux: harness.Envoy, http: httpx.Client, victim: Victim) -> None:
    """`aux` caches nothing and every server of it offers resources: the gateway lists them for
    this one read, then routes it to the owner (victim, a server-everything)."""
    victim.ensure_alive()
    with httpx.Client(timeout=20) as client:
        d = RawSession(client, victim.server.url)
        d.initialize()
        _, listed = d.request("resources/list")
        uri = listed["result"]["resources"][0]["uri"]
        _, want = d.request("resources/read", {"uri": uri})
        d.delete()
    s = session(http, aux)
    before = cluster_requests(aux)
    resp, reply = s.request("resources/read", {"uri": uri})
    assert resp.status_code == 200 and reply.get("result") == want["result"], resp.text[:1000]
    # One resources/list to each of the three servers, then the read itself to the victim.
    assert delta(before, cluster_requests(aux)) == {"py": 1, "pyjson": 1, "victim": 2}


def test_a_server_without_resources_is_not_counted_as_failing(gw: harness.Envoy, http: httpx.Client) -> None:
    """`paged` declares no `resources` capability and answers resources/list with -32601: that is
    an empty list, not an upstream failure (which would also keep the merged list from being cached)."""
    s = session(http, gw, fresh_scope())
    before = failures(gw)
    merged(s, "resources/list")
    merged(s, "resources/templates/list")
    assert delta(before, failures(gw)) == {}


def test_client_supplied_cluster_header_never_picks_the_upstream(gw: harness.Envoy, http: httpx.Client, py_server: Server, py_json_server: Server) -> None:
    """Only the filter may set x-mcp-cluster: a client naming a cluster itself must not reach it,
    whatever the HTTP method (an OPTIONS preflight is forwarded, not planned)."""
    s = session(http, gw)
    since_py, since_json = len(py_server.requests()), len(py_json_server.requests())
    resp, reply = s.request("tools/call", {"name": "py__echo", "arguments": {"message": "mine"}}, **{"x-mcp-cluster": "pyjson"})
    assert reply["result"]["content"][0]["text"] == "Echo: mine"
    assert len(received(py_server, since_py, rpc="tools/call")) == 1
    http.options(gw.base_url + "/mcp", headers={"x-mcp-cluster": "pyjson", "Access-Control-Request-Method": "POST"})
    http.options(gw.base_url + "/mcp", headers={"x-mcp-cluster": "py", "Access-Control-Request-Method": "POST"})
    assert received(py_json_server, since_json) == [], "a client-chosen cluster received the request"
    assert received(py_server, since_py, http="OPTIONS") == [], "a client-chosen cluster received the request"


# --- sessions ------------------------------------------------------------------------------------


LOG_LINE = r"^\[[^\]]+\]\[(\d+)\]"  # Envoy's log line prefix: [time][thread id]


def worker_threads(gw: harness.Envoy, since: int) -> set[str]:
    """Threads that accepted connections in the log after offset `since`, less the main thread
    (which serves admin): the workers that took client connections."""
    log = gw.log()
    main = set(re.findall(LOG_LINE + r"\[info\]\[main\]", log, re.M))
    return set(re.findall(LOG_LINE + r"\[debug\]\[conn_handler\].*new connection", log[since:], re.M)) - main


def test_one_session_serves_requests_over_many_connections_on_every_worker(gw: harness.Envoy, py_server: Server) -> None:
    log_start = len(gw.log())
    with httpx.Client(timeout=20) as first:
        s = session(first, gw)
    since = len(py_server.requests())
    for i in range(16):
        # A new connection each time: the kernel spreads them over the two workers.
        with httpx.Client(timeout=20) as client:
            s.client = client
            _, reply = s.request("tools/call", {"name": "py__echo", "arguments": {"message": f"n{i}"}})
            assert reply["result"]["content"][0]["text"] == f"Echo: n{i}"
            assert "result" in s.request("tools/list")[1]
    try:
        harness.wait_until(lambda: len(worker_threads(gw, log_start)) >= 2, 3, "connections on both workers")
    except TimeoutError:
        pytest.fail("all connections went to one worker: the test proved nothing")
    # Every call arrived on one and the same upstream session of py.
    calls = received(py_server, since, rpc="tools/call")
    assert len(calls) == 16
    assert len({c["session"] for c in calls}) == 1 and calls[0]["session"]


def test_session_opened_on_one_envoy_works_on_another_with_the_same_key(gw: harness.Envoy, twin: harness.Envoy, http: httpx.Client, py_server: Server) -> None:
    s = session(http, gw)
    since = len(py_server.requests())
    _, first = s.request("tools/call", {"name": "py__echo", "arguments": {"message": "on gw"}})
    s.url = twin.base_url + "/mcp"
    resp, second = s.request("tools/call", {"name": "py__echo", "arguments": {"message": "on twin"}})
    assert resp.status_code == 200 and second["result"]["content"][0]["text"] == "Echo: on twin"
    calls = received(py_server, since, rpc="tools/call")
    assert [c["arguments"]["message"] for c in calls] == ["on gw", "on twin"]
    assert calls[0]["session"] == calls[1]["session"], "the twin did not use the session gw opened"
    assert "result" in s.request("tools/list")[1]


def test_envoy_with_another_key_answers_the_session_with_404(gw: harness.Envoy, aux: harness.Envoy, http: httpx.Client) -> None:
    s = session(http, gw)
    s.url = aux.base_url + "/mcp"
    for method, params in [("tools/list", None), ("tools/call", {"name": "py__echo", "arguments": {"message": "x"}})]:
        request_id = s.next_id
        resp = http.post(s.url, json=harness.rpc(method, params, request_id), headers=s.headers())
        assert resp.status_code == 404, resp.text[:500]
        assert resp.json()["id"] == request_id and resp.json()["error"]["code"] == -32600


def tampered(session_id: str) -> str:
    body = session_id[3:]
    middle = len(body) // 2
    return "g1." + body[:middle] + ("A" if body[middle] != "A" else "B") + body[middle + 1 :]


@pytest.mark.parametrize(
    "forge",
    [
        tampered,
        lambda sid: sid[: len(sid) // 2],
        lambda sid: sid[:-1],
        lambda sid: "g1." + base64.urlsafe_b64encode(b"\0" * 80).decode().rstrip("="),
        lambda sid: str(uuid.uuid4()),
        lambda sid: "g2." + sid[3:],
    ],
    ids=["tampered", "truncated", "one-char-short", "zero-bytes", "foreign-uuid", "other-version"],
)
@pytest.mark.parametrize("method", ["tools/list", "tools/call"])
def test_forged_session_id_gets_404(gw: harness.Envoy, http: httpx.Client, forge: Any, method: str) -> None:
    s = session(http, gw)
    merged(s, "tools/list")  # cached: the forged request would not even need an upstream
    s.session_id = forge(s.session_id)
    params = {"name": "py__echo", "arguments": {"message": "x"}} if method == "tools/call" else None
    resp = http.post(s.url, json=harness.rpc(method, params, 7), headers=s.headers())
    assert resp.status_code == 404, resp.text[:500]
    assert resp.json() == {"jsonrpc": "2.0", "id": 7, "error": {"code": -32600, "message": resp.json()["error"]["message"]}}


def test_request_without_session_id_gets_400(gw: harness.Envoy, http: httpx.Client) -> None:
    resp = http.post(gw.base_url + "/mcp", json=harness.rpc("tools/list", None, 3), headers={**JSON_HEADERS, "MCP-Protocol-Version": "2025-06-18"})
    assert resp.status_code == 400 and resp.json()["id"] == 3, resp.text


# --- GET, DELETE, ping ---------------------------------------------------------------------------


def test_get_on_the_mcp_path_is_405(gw: harness.Envoy, http: httpx.Client) -> None:
    s = session(http, gw)
    resp = http.get(s.url, headers={**s.headers(), "Accept": "text/event-stream"})
    assert resp.status_code == 405
    assert set(resp.headers["allow"].replace(" ", "").split(",")) == {"POST", "DELETE"}


def test_delete_ends_the_upstream_sessions(gw: harness.Envoy, http: httpx.Client, py_server: Server) -> None:
    s = session(http, gw)
    since = len(py_server.requests())
    s.request("tools/call", {"name": "py__echo", "arguments": {"message": "before delete"}})
    (call,) = received(py_server, since, rpc="tools/call")
    assert s.delete().status_code == 200
    assert [r["session"] for r in received(py_server, since, http="DELETE")] == [call["session"]]
    request_id = s.next_id
    resp = http.post(s.url, json=harness.rpc("tools/call", {"name": "py__echo", "arguments": {"message": "after"}}, request_id), headers=s.headers())
    assert resp.status_code == 404, resp.text[:500]


def test_delete_is_sent_only_to_servers_that_have_a_session(gw: harness.Envoy, http: httpx.Client, py_json_server: Server, paged_server: Server) -> None:
    """Stateless servers issued no session id: nothing to end, and their 405 to a DELETE is not an
    upstream failure."""
    s = session(http, gw)
    since_json, since_paged = len(py_json_server.requests()), len(paged_server.requests())
    before = failures(gw)
    assert s.delete().status_code == 200
    assert received(py_json_server, since_json, http="DELETE") == []
    assert received(paged_server, since_paged, http="DELETE") == []
    assert delta(before, failures(gw)) == {}


def test_ping_is_answered_by_the_gateway(gw: harness.Envoy, http: httpx.Client) -> None:
    s = session(http, gw)
    before = cluster_requests(gw)
    resp, reply = s.request("ping")
    assert (resp.status_code, reply["result"]) == (200, {})
    assert delta(before, cluster_requests(gw)) == {}


# --- list cache ----------------------------------------------------------------------------------


def list_requests(servers: dict[str, Server], since: dict[str, int]) -> dict[str, int]:
    return {name: len(received(server, since[name], rpc="tools/list")) for name, server in servers.items() if server.request_log}


def test_cached_tools_list_does_not_reach_the_upstreams_from_any_worker_or_session(gw: harness.Envoy, upstreams: dict[str, Server]) -> None:
    scope = fresh_scope()
    since = {name: len(server.requests()) for name, server in upstreams.items() if server.request_log}
    before = cluster_requests(gw)
    with httpx.Client(timeout=20) as client:
        first = merged(session(client, gw, scope), "tools/list")
    # One fetch: one request per server, and one per page for `paged`.
    assert list_requests(upstreams, since) == {"py": 1, "pyjson": 1, "paged": 3}
    fetched = delta(before, cluster_requests(gw))
    for _ in range(6):
        with httpx.Client(timeout=20) as client:  # new connections, new sessions: both workers
            assert merged(session(client, gw, scope), "tools/list") == first
    assert list_requests(upstreams, since) == {"py": 1, "pyjson": 1, "paged": 3}
    # The six sessions' initialize and notifications went upstream; their lists did not.
    sessions_only = delta(before, cluster_requests(gw))
    assert sessions_only["everything"] - fetched["everything"] == 6 * 2


def test_list_cache_ttl_0_fetches_every_list_from_the_upstreams(aux: harness.Envoy, http: httpx.Client, py_server: Server, py_json_server: Server, victim: Victim) -> None:
    victim.ensure_alive()
    s = session(http, aux)
    since = {"py": len(py_server.requests()), "pyjson": len(py_json_server.requests())}
    for _ in range(3):
        assert any(t["name"] == "victim__echo" for t in merged(s, "tools/list"))
    assert list_requests({"py": py_server, "pyjson": py_json_server}, since) == {"py": 3, "pyjson": 3}


# --- failure -------------------------------------------------------------------------------------


def test_killed_server_is_left_out_promptly_counted_and_named_in_call_errors(aux: harness.Envoy, http: httpx.Client, victim: Victim) -> None:
    victim.ensure_alive()
    s = session(http, aux)
    assert any(t["name"] == "victim__echo" for t in merged(s, "tools/list"))
    healthy_before = failures(aux)
    victim.kill()
    try:
        started = time.monotonic()
        names = {t["name"] for t in merged(s, "tools/list")}
        elapsed = time.monotonic() - started
        assert {"py__echo", "pyjson__echo"} <= names and not any(n.startswith("victim__") for n in names)
        assert elapsed < VICTIM_TIMEOUT_MS / 2000, f"the list took {elapsed:.2f}s: it waited for the dead server"
        counted = delta(healthy_before, failures(aux))
        assert counted.get("victim", 0) >= 1 and set(counted) == {"victim"}, counted
        assert re.search(r'^mcp_upstream_failures_total\{server="victim"\} [1-9]', aux.prometheus(), re.M), "no labelled Prometheus counter"

        started = time.monotonic()
        request_id = s.next_id
        resp = http.post(s.url, json=harness.rpc("tools/call", {"name": "victim__echo", "arguments": {"message": "x"}}, request_id), headers=s.headers())
        elapsed = time.monotonic() - started
        assert resp.status_code == 503, resp.text[:500]
        body = resp.json()
        assert body["id"] == request_id and body["error"]["code"] == -32603 and "victim" in body["error"]["message"], body
        assert elapsed < 2, f"the call took {elapsed:.2f}s"

        # A session opened while it is down has no victim: calls to it name it too.
        later = session(http, aux)
        _, reply = later.request("tools/call", {"name": "victim__echo", "arguments": {"message": "x"}})
        code, message = error_of(reply)
        assert code == -32603 and "victim" in message
        assert "result" in later.request("tools/call", {"name": "py__echo", "arguments": {"message": "ok"}})[1]
    finally:
        victim.restart()


# --- streams -------------------------------------------------------------------------------------


def text_of(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


@pytest.mark.anyio
async def test_sampling_request_from_a_server_round_trips_through_the_gateway(gw: harness.Envoy) -> None:
    asked: list[types.CreateMessageRequestParams] = []

    async def sampling(ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append(params)
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="sampled-by-client"), model="test-model")

    with anyio.fail_after(30):
        async with Client(gw.base_url + "/mcp", mode="legacy", sampling_callback=sampling) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "everything__trigger-sampling-request" in names
            result = await client.call_tool("everything__trigger-sampling-request", {"prompt": "hello there", "maxTokens": 10})
    assert len(asked) == 1 and "hello there" in json.dumps(asked[0].model_dump(mode="json"))
    assert "sampled-by-client" in text_of(result) and not result.is_error


def sse_stream(resp: httpx.Response) -> Iterator[dict[str, Any]]:
    """JSON-RPC messages of an SSE response as they arrive."""
    data: list[str] = []
    for line in resp.iter_lines():
        if line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
        elif line == "" and data:
            yield json.loads("\n".join(data))
            data = []


def test_server_request_ids_are_namespaced_and_the_answer_reaches_the_server(gw: harness.Envoy, http: httpx.Client) -> None:
    s = session(http, gw, {"sampling": {}})
    call = harness.rpc("tools/call", {"name": "everything__trigger-sampling-request", "arguments": {"prompt": "raw", "maxTokens": 5}}, 42)
    with httpx.Client(timeout=20) as streaming, streaming.stream("POST", s.url, json=call, headers=s.headers()) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        messages = sse_stream(resp)
        request = next(m for m in messages if m.get("method") == "sampling/createMessage")
        assert isinstance(request["id"], str) and request["id"].startswith("mcpgw:everything:"), request
        answer = {"jsonrpc": "2.0", "id": request["id"], "result": {"role": "assistant", "content": {"type": "text", "text": "raw-sampled"}, "model": "m"}}
        assert http.post(s.url, json=answer, headers=s.headers()).status_code == 202
        result = next(m for m in messages if m.get("id") == 42)
    assert "raw-sampled" in json.dumps(result["result"])


@pytest.mark.anyio
async def test_progress_notifications_stream_before_the_result(gw: harness.Envoy) -> None:
    seen: list[tuple[float, float | None]] = []
    first_at: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        first_at.append(time.monotonic())
        seen.append((progress, total))

    with anyio.fail_after(30):
        async with Client(gw.base_url + "/mcp", mode="legacy") as client:
            result = await client.call_tool("py__slow_progress", {"steps": 3, "delay": 0.5}, progress_callback=on_progress)
            done_at = time.monotonic()
    assert text_of(result) == "done after 3 steps"
    assert seen == [(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)]
    assert done_at - first_at[0] > 0.6, "progress arrived together with the result: the stream was buffered"


# --- 2026-07-28 clients ----------------------------------------------------------------------


def modern_call(name: str, arguments: dict[str, Any], request_id: int = 5) -> tuple[dict[str, Any], dict[str, str]]:
    body = harness.rpc("tools/call", {"name": name, "arguments": arguments, "_meta": harness.modern_meta()}, request_id)
    return body, harness.modern_headers("tools/call", name)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["2026-07-28", "auto"])
async def test_2026_client_reaches_every_server_session_based_or_not(gw: harness.Envoy, mode: str) -> None:
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    with anyio.fail_after(45):
        async with Client(gw.base_url + "/mcp", mode=mode) as client:
            assert client.protocol_version == "2026-07-28"
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"everything__echo", "py__echo", "pyjson__add", "paged__page_tool_10"} <= names
            assert "everything__get-env" not in names
            assert text_of(await client.call_tool("everything__echo", {"message": "m26"})) == "Echo: m26"
            assert text_of(await client.call_tool("py__echo", {"message": "m26"})) == "Echo: m26"
            assert text_of(await client.call_tool("pyjson__add", {"a": 2, "b": 40})) == "42"
            assert text_of(await client.call_tool("paged__page_tool_10", {"x": "y"})) == 'page_tool_10: {"x": "y"}'
            # A session-based server's SSE stream, with its progress, bridged to 2026-07-28.
            result = await client.call_tool("everything__trigger-long-running-operation", {"duration": 0.6, "steps": 3}, progress_callback=on_progress)
            assert not result.is_error and progress == [1.0, 2.0, 3.0]


def test_2026_calls_reach_stateless_capable_servers_without_a_session_under_their_own_name(gw: harness.Envoy, http: httpx.Client, py_server: Server) -> None:
    since = len(py_server.requests())
    body, headers = modern_call("py__echo", {"message": "header check"})
    resp = http.post(gw.base_url + "/mcp", json=body, headers=headers)
    assert resp.status_code == 200 and harness.jsonrpc_reply(resp, 5)["result"]["content"][0]["text"] == "Echo: header check"
    (call,) = [r for r in received(py_server, since, rpc="tools/call") if r["arguments"] == {"message": "header check"}]
    assert (call["session"], call["version"], call["mcp_method"], call["mcp_name"], call["name"]) == (None, "2026-07-28", "tools/call", "echo", "echo")


@pytest.mark.parametrize(
    ("name", "arguments"),
    [("everything__echo", {"message": "x"}), ("everything__trigger-long-running-operation", {"duration": 0.2, "steps": 2})],
    ids=["json-or-sse", "sse-with-progress"],
)
def test_2026_results_from_a_session_based_server_say_result_type_complete(gw: harness.Envoy, http: httpx.Client, name: str, arguments: dict[str, Any]) -> None:
    body, headers = modern_call(name, arguments)
    resp = http.post(gw.base_url + "/mcp", json=body, headers=headers)
    assert resp.status_code == 200, resp.text[:500]
    assert harness.jsonrpc_reply(resp, 5)["result"]["resultType"] == "complete"


def modern_list(gw: harness.Envoy, http: httpx.Client, method: str) -> tuple[httpx.Response, dict[str, Any]]:
    body = harness.rpc(method, {"_meta": harness.modern_meta()}, 9)
    resp = http.post(gw.base_url + "/mcp", json=body, headers=harness.modern_headers(method))
    return resp, harness.jsonrpc_reply(resp, 9)


@pytest.mark.parametrize("method", ["tools/list", "prompts/list"])
def test_2026_merged_lists_carry_the_cache_fields_2026_requires(gw: harness.Envoy, http: httpx.Client, method: str) -> None:
    _, reply = modern_list(gw, http, method)
    result = reply["result"]
    assert (result["resultType"], result["ttlMs"], result["cacheScope"]) == ("complete", 0, "private")


@pytest.mark.parametrize("method", ["resources/list", "resources/templates/list"])
def test_2026_resource_lists_leave_out_a_server_that_offers_no_resources(gw: harness.Envoy, http: httpx.Client, direct: dict[str, Any], method: str) -> None:
    """`paged` has no resources; speaking 2026-07-28 it answers resources/list with HTTP 404 and
    -32601. That is "none here", not a lost session (a 2026 client has none to re-initialize)."""
    resp, reply = modern_list(gw, http, method)
    assert resp.status_code == 200 and "result" in reply, resp.text[:500]
    key = "uri" if method == "resources/list" else "uriTemplate"
    expected = [item[key] for item in first_owner_wins(direct, method, key)]
    assert Counter(i[key] for i in reply["result"][LISTS[method]]) == Counter(expected)
    assert (reply["result"]["resultType"], reply["result"]["ttlMs"], reply["result"]["cacheScope"]) == ("complete", 0, "private")


def test_2026_discover_is_answered_from_the_merged_view(gw: harness.Envoy, http: httpx.Client) -> None:
    body = harness.rpc("server/discover", {"_meta": harness.modern_meta()}, 4)
    resp = http.post(gw.base_url + "/mcp", json=body, headers=harness.modern_headers("server/discover"))
    result = harness.jsonrpc_reply(resp, 4)["result"]
    assert "2026-07-28" in result["supportedVersions"]
    assert {"tools", "prompts", "resources"} <= set(result["capabilities"])
    assert "[everything]" in result.get("instructions", "")


def test_2026_client_recovers_when_a_session_based_server_loses_the_gateways_session(aux: harness.Envoy, http: httpx.Client, victim: Victim) -> None:
    """The gateway's own session with a session-based server is dropped when the server answers it
    with 404/400 (a restart): the next request prepares a new one."""
    victim.ensure_alive()

    def call(message: str) -> httpx.Response:
        body, headers = modern_call("victim__echo", {"message": message})
        return http.post(aux.base_url + "/mcp", json=body, headers=headers)

    first = call("before")
    assert harness.jsonrpc_reply(first, 5)["result"]["content"][0]["text"] == "Echo: before"
    victim.restart()
    started = time.monotonic()
    attempts = [call("after"), call("after")]
    assert time.monotonic() - started < 5
    last = harness.jsonrpc_reply(attempts[-1], 5)
    assert last.get("result", {}).get("content", [{}])[0].get("text") == "Echo: after", [a.text[:300] for a in attempts]


# --- configuration -------------------------------------------------------------------------------

GOOD_KEY = base64.b64encode(b"k" * 32).decode()
# Only what the gateway itself must catch at load time, end to end; every other rule (names, paths,
# timeouts, globs, unknown fields) has its unit test in filter/core. Each validate loads the wasm
# into V8, which costs seconds of CPU, so the cases stay few. A good configuration needs no case of
# its own: the Envoys above start with one.
BAD_CONFIGS: dict[str, tuple[dict[str, Any], str]] = {
    "duplicate-name": (
        plugin_config([{"name": "a", "cluster": "py"}, {"name": "a", "cluster": "pyjson"}], sessionKey=GOOD_KEY),
        "servers[1].name",
    ),
    "no-session-key": (plugin_config([{"name": "a", "cluster": "py"}]), "federation.sessionKey"),
    "short-key": (
        plugin_config([{"name": "a", "cluster": "py"}], sessionKey=base64.b64encode(b"k" * 16).decode()),
        "federation.sessionKey",
    ),
    "colliding-prefixes": (
        plugin_config([{"name": "a", "cluster": "py"}, {"name": "b", "cluster": "pyjson", "prefix": "a__b"}], sessionKey=GOOD_KEY),
        "servers[1].prefix",
    ),
}


@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str]]:
    """`envoy --mode validate` of every bad configuration, run side by side."""
    tmp = tmp_path_factory.mktemp("federation-validate")
    values: dict[str, Any] = {k: harness.free_port() for k in ("LISTEN_PORT", "ADMIN_PORT")}
    values |= {f"{c.upper()}_PORT": harness.free_port() for c in (*CLUSTERS, "dead", "guard")}
    values |= {"ACCESS_LOG": tmp / "access.log", "WASM_PATH": harness.WASM}
    paths = {}
    for name, (config, _) in BAD_CONFIGS.items():
        paths[name] = tmp / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(harness.render_bootstrap(TEMPLATE, values, config)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(paths)) as pool:
        results = dict(zip(paths, pool.map(harness.validate_bootstrap, paths.values())))
    return {name: (r.returncode, r.stdout + r.stderr) for name, r in results.items()}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_federation_config_fails_validate_naming_the_field(validated: dict[str, tuple[int, str]], case: str) -> None:
    rc, log = validated[case]
    assert rc == 1, log[-3000:]
    errors = [line for line in log.splitlines() if "invalid plugin configuration" in line]
    assert errors and BAD_CONFIGS[case][1] in errors[0], log[-3000:]


def test_a_merged_list_served_from_the_cache_counts_the_tokens_its_first_merge_counted(gw: harness.Envoy, http: httpx.Client) -> None:
    """The first tools/list of a new capability scope is merged from the servers and its tokens
    are counted from the reply; the repeats are served from the cache with the count remembered
    for that cached version (not counted again): the same figure each time."""

    def tokens() -> tuple[float, float]:
        found = dict(re.findall(r"^mcp_tools_list_tokens_(sum|count)\{?[^ ]*\}? (\S+)$", gw.prometheus(), re.M))
        return float(found.get("sum", 0)), float(found.get("count", 0))

    s = session(http, gw, capabilities=fresh_scope())
    # Lists of earlier tests may not have reached the admin page yet (histograms are flushed
    # every 5 s): start from a figure that one flush interval leaves unchanged.
    before = tokens()
    time.sleep(5.5)
    while tokens() != before:
        before = tokens()
        time.sleep(5.5)
    sum0, count0 = before
    first = merged(s, "tools/list")
    harness.wait_until(lambda: tokens()[1] >= count0 + 1, timeout=15, what="the first list's tokens")
    per_list = tokens()[0] - sum0
    assert per_list > 500, per_list  # server-everything alone lists ~20 tools
    for _ in range(2):
        assert merged(s, "tools/list") == first
    harness.wait_until(lambda: tokens()[1] >= count0 + 3, timeout=15, what="the cached lists' tokens")
    assert tokens()[0] - sum0 == pytest.approx(3 * per_list), (tokens(), sum0, per_list)
