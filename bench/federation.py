#!/usr/bin/env python3
"""Federation latency, in one run: what the gateway adds in front of real MCP servers.

Starts three real upstream MCP servers (npm server-everything, the project's Python SDK server
stateful/SSE and stateless/JSON), one Envoy with the filter federating them, and measures
sequential requests (one connection, p50 and p90 over N requests) of:

  * `tools/list` directly at each server, and through the gateway with the merged-list cache warm
    and with the cache off (`listCacheTtlMs: 0`: a parallel fan-out to all three per request);
  * `tools/call` of `echo` directly at the Python server, through the same Envoy without the filter
    (one plain hop: the floor), and routed through the gateway.

Ratios are against the slowest single server (lists) and the direct call (tools/call). Writes
target/bench/federation.{json,md}. Loopback only; bounded (N requests per point).

    .venv/bin/python bench/federation.py [--requests 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "integration"))

import harness  # noqa: E402

HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def session(client: httpx.Client, url: str) -> dict[str, str]:
    r = client.post(url, headers=HEADERS, json=harness.initialize_body(0, "2025-11-25"))
    r.raise_for_status()
    h = dict(HEADERS, **{"mcp-protocol-version": "2025-11-25"})
    if sid := r.headers.get("mcp-session-id"):
        h["mcp-session-id"] = sid
    client.post(url, headers=h, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    return h


def timed(client: httpx.Client, url: str, headers: dict[str, str], body: dict[str, Any], n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.post(url, headers=headers, json=body)
        r.read()
        samples.append((time.perf_counter() - t) * 1e3)
        if r.status_code != 200 or '"error"' in r.text[:200]:
            raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")
    samples.sort()
    return {"p50_ms": statistics.median(samples), "p90_ms": samples[int(len(samples) * 0.9)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    n = args.requests
    out_dir = ROOT / "target" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="fedbench-"))
    servers = {
        "everything": harness.start_everything(tmp),
        "py": harness.start_py_server(tmp),
        "pyjson": harness.start_py_server(tmp, stateless=True, json_response=True),
    }
    envoys = []
    try:
        def gateway(ttl_ms: int, wasm: bool = True) -> harness.Envoy:
            cfg = {
                "servers": [
                    {"name": name, "cluster": name, "authority": f"127.0.0.1:{s.port}"}
                    for name, s in servers.items()
                ],
                "federation": {"sessionKey": harness.session_key(), "listCacheTtlMs": ttl_ms},
                "requireSessionId": False,
            }
            e = harness.start_envoy(tmp, f"fed-{ttl_ms}-{wasm}", upstreams={k: s.port for k, s in servers.items()},
                                    plugin_config=cfg, template=harness.CONFIGS / "federation.yaml", wasm=wasm)
            envoys.append(e)
            return e

        cached, uncached = gateway(60_000), gateway(0)
        # The same Envoy without the filter: the client names the cluster itself. The floor for
        # a routed call: one plain Envoy hop.
        plain = gateway(0, wasm=False)
        results: dict[str, Any] = {"requests_per_point": n, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        list_body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        with httpx.Client(timeout=30) as c:
            direct = {}
            for name, s in servers.items():
                h = session(c, s.url)
                direct[name] = timed(c, s.url, h, list_body, n)
            results["tools_list_direct"] = direct
            for label, e in (("cached", cached), ("uncached", uncached)):
                url = e.base_url + "/mcp"
                h = session(c, url)
                results[f"tools_list_gateway_{label}"] = timed(c, url, h, list_body, n)
            call = lambda name: {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": name, "arguments": {"message": "x"}}}  # noqa: E731
            h = session(c, servers["py"].url)
            results["tools_call_direct"] = timed(c, servers["py"].url, h, call("echo"), n)
            url = plain.base_url + "/mcp"
            pinned = dict(HEADERS, **{"x-mcp-cluster": "py"})
            r = c.post(url, headers=pinned, json=harness.initialize_body(0, "2025-11-25"))
            h = dict(pinned, **{"mcp-protocol-version": "2025-11-25", "mcp-session-id": r.headers.get("mcp-session-id", "")})
            c.post(url, headers=h, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
            results["tools_call_plain_envoy"] = timed(c, url, h, call("echo"), n)
            url = cached.base_url + "/mcp"
            h = session(c, url)
            results["tools_call_gateway"] = timed(c, url, h, call("py__echo"), n)
        slowest = max(v["p50_ms"] for v in results["tools_list_direct"].values())
        results["ratios"] = {
            "tools_list_cached_vs_slowest_server": results["tools_list_gateway_cached"]["p50_ms"] / slowest,
            "tools_list_uncached_vs_slowest_server": results["tools_list_gateway_uncached"]["p50_ms"] / slowest,
            "tools_call_routed_vs_direct": results["tools_call_gateway"]["p50_ms"] / results["tools_call_direct"]["p50_ms"],
            "tools_call_routed_vs_plain_envoy": results["tools_call_gateway"]["p50_ms"] / results["tools_call_plain_envoy"]["p50_ms"],
        }
        (out_dir / "federation.json").write_text(json.dumps(results, indent=2))
        md = [
            f"# Federation latency ({results['date']}, {n} sequential requests per point, p50 / p90 ms)", "",
            "| request | p50 ms | p90 ms |", "| --- | --- | --- |",
        ]
        for name, v in results["tools_list_direct"].items():
            md.append(f"| tools/list direct at {name} | {v['p50_ms']:.2f} | {v['p90_ms']:.2f} |")
        for key in ("tools_list_gateway_cached", "tools_list_gateway_uncached", "tools_call_direct", "tools_call_plain_envoy", "tools_call_gateway"):
            v = results[key]
            md.append(f"| {key.replace('_', ' ')} | {v['p50_ms']:.2f} | {v['p90_ms']:.2f} |")
        md += ["", "| ratio (p50) | value |", "| --- | --- |"]
        md += [f"| {k.replace('_', ' ')} | {v:.2f} |" for k, v in results["ratios"].items()]
        (out_dir / "federation.md").write_text("\n".join(md) + "\n")
        print("\n".join(md))
        return 0
    finally:
        for e in envoys:
            e.stop()
        for s in servers.values():
            s.stop()


if __name__ == "__main__":
    sys.exit(main())
