#!/usr/bin/env python3
"""Draws target/bench/results.json as a PNG: one row per workload, one horizontal bar per variant
measured on it, in three columns: throughput at the highest connection count, p50 latency at the
lowest, and the proxy's CPU time per request. Run by bench/run.py with .venv's Python
(matplotlib comes from bench/requirements.txt).

Usage: chart.py RESULTS_JSON OUT_PNG
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")  # no display on CI or dev machines
import matplotlib.pyplot as plt  # noqa: E402

# A and B in greys/blue (the yardsticks), our levels in warm colours, federation in green.
COLORS = {"A": "#9e9e9e", "B": "#5b8def", "B-fed": "#9ab8f5", "C-fed": "#3aa67a"}
C_COLORS = ["#e8833a", "#d94f4f", "#b5386b", "#8c5fd1", "#c9a227", "#6b4226", "#333333"]


def color(key: str, c_keys: list[str]) -> str:
    if key in COLORS:
        return COLORS[key]
    return C_COLORS[c_keys.index(key) % len(C_COLORS)] if key in c_keys else "#777777"


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        results = json.load(f)
    meta = results["meta"]
    conns = meta["settings"]["connections"]
    hi, lo = conns[-1], conns[0]
    summary = {(s["variant"], s["workload"], s["connections"]): s for s in results["summary"]}

    def measured(name: str, w: dict) -> list[str]:
        # Results from before per-workload variant lists: every variant on every workload.
        keys = w.get("variants") or list(meta["variants"])
        return [k for k in keys if (k, name, hi) in summary]

    rows = [(name, w) for name, w in meta["workloads"].items() if measured(name, w)]
    if not rows:
        print("chart.py: nothing measured", file=sys.stderr)
        return 1
    c_keys = [k for k in meta["variants"] if k.startswith("C") and k not in COLORS]
    columns = [
        (f"req/s @{hi} connections (higher is better)", hi, "rps"),
        (f"p50 latency @{lo} connection, µs (lower is better)", lo, "p50_us"),
        (f"proxy CPU µs per request @{hi} (lower is better)", hi, "proxy_cpu_us_per_req"),
    ]
    heights = [len(measured(name, w)) * 0.28 + 0.7 for name, w in rows]
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(16, sum(heights) + 0.9),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for r, (name, w) in enumerate(rows):
        keys = measured(name, w)
        for c, (title, conn, field) in enumerate(columns):
            ax = axes[r][c]
            vals = [(summary.get((k, name, conn)) or {}).get(field) or 0 for k in keys]
            ys = list(range(len(keys)))[::-1]
            bars = ax.barh(ys, vals, color=[color(k, c_keys) for k in keys], height=0.75)
            ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=2)
            ax.set_yticks(ys, [meta["variants"].get(k, {}).get("label", k) for k in keys]
                          if c == 0 else [""] * len(keys), fontsize=7)
            ax.tick_params(axis="x", labelsize=7)
            ax.grid(axis="x", alpha=0.3)
            ax.margins(x=0.15)
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(name, fontsize=9, fontweight="bold")
    m = meta["machine"]
    quick = " — QUICK SMOKE RUN, not for comparison" if meta["settings"].get("quick") else ""
    fig.suptitle(
        f"MCP gateway: plain Envoy (A), native MCP filters (B), our filter (C levels); one proxy "
        f"core; {m['nproc']} × {m['cpu_model']}; {meta['date']}{quick}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(sys.argv[2], dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
