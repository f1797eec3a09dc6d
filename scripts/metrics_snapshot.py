#!/usr/bin/env python3
"""Drive varied MCP traffic through a running gateway, scrape Envoy's `/stats/prometheus` as it
goes, and draw what a dashboard would show: the picture in docs/telemetry.md.

    make demo                                   # in another terminal: the gateway on :10000
    .venv/bin/python scripts/metrics_snapshot.py [--duration 30] [--out docs/img/telemetry-dashboard.png]

Against the demo (envoy/demo.yaml: federation of server-everything and the Python SDK server, JWT
auth, policies/demo.rego) it uses the tokens `make demo` writes to target/demo/tokens/: admin.jwt
for most calls, reader.jwt for calls the policy denies, and no token for some refused requests.
Traffic comes in three phases of changing mix (a few tools, some slow, some failing: unknown
tools, invalid arguments, malformed bodies) so the rates move; the admin page is scraped every
`--interval` seconds. Histograms reach that page at Envoy's stats flush (5 s), so the script waits
for one more flush after the traffic stops.

Panels, laid out like deploy/observability/grafana-dashboard.json: tool calls/s by tool, latency
p50/p95/p99 per tool computed from the histogram buckets the way PromQL's histogram_quantile does,
tokens in/out per tool, the context cost of each server's catalogue, requests by method and
outcome, and the gateway's own time against the upstream's. Nothing here is simulated: every
number is read from the live Envoy.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import sys
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

try:
    import matplotlib
except ImportError:  # a benchmark-only dependency, not installed by `make deps`
    raise SystemExit("matplotlib is missing: .venv/bin/pip install -r bench/requirements.txt") from None

matplotlib.use("Agg")  # no display on CI or dev machines
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ACCEPT = "application/json, text/event-stream"
Labels = frozenset[tuple[str, str]]
Scrape = dict[tuple[str, Labels], float]


# --- a minimal MCP client ---------------------------------------------------------------------


def reply_of(resp: httpx.Response, request_id: int) -> dict[str, Any]:
    """The JSON-RPC answer to `request_id` from a JSON or SSE response ({} if none)."""
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        for block in resp.text.replace("\r\n", "\n").split("\n\n"):
            data = "\n".join(line[5:].lstrip() for line in block.split("\n") if line.startswith("data:"))
            if data:
                message = json.loads(data)
                if message.get("id") == request_id:
                    return message
        return {}
    try:
        return resp.json()
    except ValueError:
        return {}


@dataclass
class Session:
    http: httpx.Client
    url: str
    token: str | None
    session_id: str | None = None
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": ACCEPT}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if self.session_id:
            h["Mcp-Session-Id"] = self.session_id
            h["MCP-Protocol-Version"] = "2025-11-25"
        return h

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        rid = next(self.ids)
        body = {"jsonrpc": "2.0", "id": rid, "method": method, **({"params": params} if params is not None else {})}
        return reply_of(self.http.post(self.url, json=body, headers=self.headers()), rid)

    def open(self) -> "Session":
        body = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "metrics-snapshot", "version": "1"}}
        rid = next(self.ids)
        resp = self.http.post(self.url, json={"jsonrpc": "2.0", "id": rid, "method": "initialize", "params": body}, headers=self.headers())
        if resp.status_code != 200:
            raise SystemExit(f"initialize at {self.url} answered {resp.status_code}: {resp.text[:300]}")
        self.session_id = resp.headers.get("mcp-session-id")
        self.http.post(self.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=self.headers())
        return self

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.request("tools/call", {"name": name, "arguments": arguments})

    def close(self) -> None:
        self.http.delete(self.url, headers=self.headers())


# --- scraping ---------------------------------------------------------------------------------


def scrape(admin: str) -> Scrape:
    with urllib.request.urlopen(admin + "/stats/prometheus", timeout=5) as resp:
        text = resp.read().decode()
    out: Scrape = {}
    for line in text.splitlines():
        m = re.fullmatch(r"(mcp_\w+)\{(.*)\} (\S+)", line.strip())
        if m:
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def by(scrape_: Scrape, family: str, *keys: str) -> dict[tuple[str, ...], float]:
    """sum by (keys) (family) of one scrape."""
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for (name, labels), v in scrape_.items():
        if name == family:
            d = dict(labels)
            out[tuple(d.get(k, "") for k in keys)] += v
    return dict(out)


def increase(first: Scrape, last: Scrape, family: str, *keys: str) -> dict[tuple[str, ...], float]:
    a, b = by(first, family, *keys), by(last, family, *keys)
    return {k: v - a.get(k, 0.0) for k, v in b.items() if v - a.get(k, 0.0) > 0}


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """PromQL's histogram_quantile over cumulative bucket counts {le: count}: linear
    interpolation inside the bucket the rank falls in."""
    les = sorted(buckets)
    if not les or buckets[les[-1]] <= 0:
        return None
    rank = q * buckets[les[-1]]
    prev_le, prev_count = 0.0, 0.0
    for le in les:
        if buckets[le] >= rank:
            if le == float("inf"):
                return prev_le
            width = buckets[le] - prev_count
            return prev_le + (le - prev_le) * ((rank - prev_count) / width if width else 1.0)
        prev_le, prev_count = le, buckets[le]
    return prev_le


def bucket_increase(first: Scrape, last: Scrape, family: str, *keys: str) -> dict[tuple[str, ...], dict[float, float]]:
    out: dict[tuple[str, ...], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for sign, s in ((-1.0, first), (1.0, last)):
        for (name, labels), v in s.items():
            if name == family + "_bucket":
                d = dict(labels)
                le = float("inf") if d["le"] == "+Inf" else float(d["le"])
                out[tuple(d.get(k, "") for k in keys)][le] += sign * v
    return {k: dict(v) for k, v in out.items() if max(v.values(), default=0) > 0}


# --- traffic ----------------------------------------------------------------------------------

PROSE = "The gateway counts the tokens that travel through it, so operators see what each tool costs. "


def traffic(url: str, tokens: Path, duration: float, admin_url: str, interval: float) -> list[tuple[float, Scrape]]:
    """Runs the scripted traffic for `duration` seconds, scraping every `interval` seconds; the
    last scrape comes after one more stats flush."""
    rng = random.Random(5)
    admin_token = (tokens / "admin.jwt").read_text().strip()
    reader_token = (tokens / "reader.jwt").read_text().strip()
    scrapes = [(0.0, scrape(admin_url))]
    start = time.monotonic()
    next_scrape = interval
    with httpx.Client(timeout=30) as http:
        admin = Session(http, url, admin_token).open()
        reader = Session(http, url, reader_token).open()
        admin.request("tools/list")
        reader.request("tools/list")
        # (weight per phase, call): three phases of ~duration/3 each with a different mix.
        calls: list[tuple[tuple[int, int, int], Any]] = [
            ((6, 2, 4), lambda: admin.call("everything__echo", {"message": PROSE * rng.randint(1, 12)})),
            ((3, 5, 2), lambda: admin.call("py__add", {"a": rng.randint(0, 99), "b": rng.randint(0, 99)})),
            ((2, 4, 1), lambda: admin.call("everything__get-sum", {"a": rng.random(), "b": rng.random()})),
            ((1, 2, 3), lambda: admin.call("everything__get-structured-content", {"location": rng.choice(["New York", "Chicago"])})),
            ((1, 1, 3), lambda: admin.request("tools/call", {"name": "py__slow_progress", "arguments": {"steps": 2, "delay": rng.choice([0.05, 0.15, 0.3])}, "_meta": {"progressToken": "p"}})),
            ((0, 1, 2), lambda: admin.call("everything__get-resource-links", {"count": rng.randint(1, 10)})),
            ((1, 1, 1), lambda: admin.call("everything__no-such-tool", {})),  # JSON-RPC error
            ((1, 1, 1), lambda: admin.call("py__add", {"a": "one", "b": 2})),  # isError result: tool_error
            ((1, 1, 2), lambda: reader.call("py__add", {"a": 1, "b": 2})),  # denied by policy
            ((0, 1, 1), lambda: Session(http, url, None).request("tools/list")),  # no token: 401
            ((0, 1, 1), lambda: http.post(url, content=b"{not json", headers=admin.headers())),  # rejected: parse_error
            ((1, 1, 1), lambda: admin.request("tools/list")),
        ]
        while (elapsed := time.monotonic() - start) < duration:
            phase = min(2, int(3 * elapsed / duration))
            weights = [w[phase] for w, _ in calls]
            _, fn = rng.choices(calls, weights=weights)[0]
            fn()
            time.sleep(rng.uniform(0.01, 0.06))
            if time.monotonic() - start >= next_scrape:
                scrapes.append((time.monotonic() - start, scrape(admin_url)))
                next_scrape += interval
        admin.close()
        reader.close()
    # One more stats flush (5 s) so the histograms hold the last calls.
    time.sleep(6)
    scrapes.append((time.monotonic() - start, scrape(admin_url)))
    return scrapes


# --- drawing ----------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} × {model}"


def envoy_version(admin: str) -> str:
    try:
        with urllib.request.urlopen(admin + "/server_info", timeout=5) as resp:
            return json.load(resp)["version"].split("/")[1]
    except (OSError, KeyError, IndexError, ValueError):
        return "?"


def draw(scrapes: list[tuple[float, Scrape]], out: Path, title: str) -> None:
    first, last = scrapes[0][1], scrapes[-1][1]
    fig, axes = plt.subplots(3, 2, figsize=(16, 14))
    fig.suptitle(title, fontsize=11)

    # 1. tool calls/s by server/tool, from counter deltas between scrapes.
    ax = axes[0][0]
    series: dict[tuple[str, ...], list[tuple[float, float]]] = defaultdict(list)
    during = scrapes[:-1]  # the last scrape waited for a stats flush after the traffic stopped
    for (t0, s0), (t1, s1) in zip(during, during[1:]):
        for key, n in increase(s0, s1, "mcp_tool_calls_total", "server", "tool").items():
            series[key].append(((t0 + t1) / 2, n / (t1 - t0)))
    xs = [(a + b) / 2 for (a, _), (b, _) in zip(during, during[1:])]
    for key in sorted(series):
        pts = dict(series[key])
        ax.plot(xs, [pts.get(x, 0.0) for x in xs], marker="o", markersize=3, label="/".join(key))
    ax.set_title("Tool calls/s by server/tool  (rate(mcp_tool_calls_total))", fontsize=9)
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("calls/s")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)

    # 2. latency quantiles per tool from the histogram buckets.
    ax = axes[0][1]
    hist = bucket_increase(first, last, "mcp_tool_call_duration_us", "server", "tool")
    names = sorted(hist)
    width = 0.27
    for i, (q, colour) in enumerate([(0.5, "#4c72b0"), (0.95, "#dd8452"), (0.99, "#c44e52")]):
        values = [(quantile(q, hist[k]) or 0) / 1000 for k in names]
        bars = ax.bar([j + (i - 1) * width for j in range(len(names))], values, width, label=f"p{int(q * 100)}", color=colour)
        ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=1, rotation=90)
    ax.set_xticks(range(len(names)), ["/".join(k) for k in names], rotation=30, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.margins(y=0.25)
    ax.set_ylabel("ms (log scale)")
    ax.set_title("Tool-call latency p50/p95/p99  (histogram_quantile, mcp_tool_call_duration_us)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)

    # 3. tokens in/out per tool over the run.
    ax = axes[1][0]
    tokens = increase(first, last, "mcp_tool_tokens_total", "server", "tool", "direction")
    tools = sorted({k[:2] for k in tokens})
    for i, (direction, colour) in enumerate([("in", "#55a868"), ("out", "#8172b2")]):
        values = [tokens.get((*k, direction), 0) for k in tools]
        bars = ax.barh([j + (i - 0.5) * 0.4 for j in range(len(tools))], values, 0.4, label=f"{direction} ({'arguments' if direction == 'in' else 'results'})", color=colour)
        ax.bar_label(bars, fmt="%.0f", fontsize=6, padding=2)
    ax.set_yticks(range(len(tools)), ["/".join(k) for k in tools], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("tokens (o200k_base) over the run")
    ax.set_title("Tokens in/out per tool  (increase(mcp_tool_tokens_total))", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)

    # 4. requests by method and outcome over the run.
    ax = axes[1][1]
    requests = increase(first, last, "mcp_requests_total", "method", "outcome")
    methods = sorted({m for m, _ in requests}, key=lambda m: -sum(v for (mm, _), v in requests.items() if mm == m))
    outcomes = sorted({o for _, o in requests}, key=lambda o: (o != "ok", o))
    colours = {"ok": "#55a868", "accepted": "#8fbf9f", "error": "#dd8452", "tool_error": "#e8b04b", "denied": "#c44e52", "invalid": "#937860", "upstream_error": "#8c1c13", "rate_limited": "#da8bc3"}
    left = [0.0] * len(methods)
    for o in outcomes:
        values = [requests.get((m, o), 0) for m in methods]
        ax.barh(range(len(methods)), values, left=left, label=o, color=colours.get(o))
        left = [a + b for a, b in zip(left, values)]
    for j, total in enumerate(left):
        ax.text(total, j, f" {total:.0f}", va="center", fontsize=7)
    ax.set_yticks(range(len(methods)), methods, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("requests over the run")
    ax.set_title("Requests by method and outcome  (increase(mcp_requests_total))", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)

    # 5. gateway time vs upstream time (means over the run).
    ax = axes[2][0]
    rows = []
    for family, key, prefix in [("mcp_filter_duration_us", "method", "gateway "), ("mcp_upstream_duration_us", "server", "upstream ")]:
        sums = increase(first, last, family + "_sum", key)
        counts = increase(first, last, family + "_count", key)
        for k, n in counts.items():
            if k in sums and n >= 1:
                rows.append((prefix + k[0], sums[k] / n / 1000, int(n)))
    rows.sort(key=lambda r: (not r[0].startswith("gateway"), -r[1]))
    bars = ax.barh(range(len(rows)), [r[1] for r in rows], color=["#4c72b0" if r[0].startswith("gateway") else "#dd8452" for r in rows])
    ax.bar_label(bars, labels=[f"{r[1]:.2f} ms (n={r[2]})" for r in rows], fontsize=6, padding=2)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("mean ms per request (log scale)")
    ax.set_title("Gateway time (mcp_filter_duration_us) vs upstream (mcp_upstream_duration_us)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)

    # 6. catalogue cost and auth/policy counts.
    ax = axes[2][1]
    catalogue = by(last, "mcp_catalogue_tokens", "server")
    auth = increase(first, last, "mcp_auth_total", "result")
    policy = increase(first, last, "mcp_policy_decisions_total", "decision")
    labels = [f"catalogue tokens: {k[0]}" for k in sorted(catalogue)] + [f"auth: {k[0]}" for k in sorted(auth)] + [f"policy: {k[0]}" for k in sorted(policy)]
    values = [catalogue[k] for k in sorted(catalogue)] + [auth[k] for k in sorted(auth)] + [policy[k] for k in sorted(policy)]
    colours6 = ["#8172b2"] * len(catalogue) + ["#64b5cd"] * len(auth) + ["#ccb974"] * len(policy)
    bars = ax.barh(range(len(values)), values, color=colours6)
    ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=2)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_title("Catalogue tokens per server (gauge); auth results, policy decisions (increase)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)

    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:10000/mcp", help="the gateway's MCP endpoint")
    ap.add_argument("--admin", default="http://127.0.0.1:9901", help="Envoy's admin address")
    ap.add_argument("--tokens", type=Path, default=ROOT / "target" / "demo" / "tokens", help="folder with admin.jwt and reader.jwt")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of traffic")
    ap.add_argument("--interval", type=float, default=2.5, help="seconds between scrapes")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "telemetry-dashboard.png")
    args = ap.parse_args()
    for f in ("admin.jwt", "reader.jwt"):
        if not (args.tokens / f).exists():
            raise SystemExit(f"{args.tokens / f} missing: start the demo first (`make demo`)")
    version = envoy_version(args.admin)
    scrapes = traffic(args.url, args.tokens, args.duration, args.admin, args.interval)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = (
        f"MCP gateway telemetry from a live Envoy {version} run (make demo, {args.duration:.0f} s of scripted traffic, "
        f"{len(scrapes)} scrapes of /stats/prometheus)\n{machine()}; {date}"
    )
    draw(scrapes, args.out, title)
    calls = sum(increase(scrapes[0][1], scrapes[-1][1], "mcp_tool_calls_total").values())
    print(f"{args.out}: {calls:.0f} tool calls over {args.duration:.0f} s, {len(scrapes)} scrapes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
