#!/usr/bin/env python3
"""Draws target/bench/results.json as a PNG: throughput at the highest connection count and p50
latency at the lowest, per workload, one bar per variant. Run by bench/run.py with .venv's Python
(matplotlib comes from bench/requirements.txt).

Usage: chart.py RESULTS_JSON OUT_PNG
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")  # no display on CI or dev machines
import matplotlib.pyplot as plt  # noqa: E402


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        results = json.load(f)
    meta = results["meta"]
    conns = meta["settings"]["connections"]
    hi, lo = conns[-1], conns[0]
    variants = list(meta["variants"])
    workloads = list(meta["workloads"])
    summary = {(s["variant"], s["workload"], s["connections"]): s for s in results["summary"]}

    panels = [
        (f"throughput, {hi} connections (req/s, higher is better)", hi, "rps"),
        (f"p50 latency, {lo} connection (µs, lower is better)", lo, "p50_us"),
        (f"proxy CPU per request, {hi} connections (µs, lower is better)", hi,
         "proxy_cpu_us_per_req"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4))
    width = 0.8 / max(len(variants), 1)
    colors = ["#9e9e9e", "#5b8def", "#e8833a", "#d94f4f", "#8c5fd1", "#3aa67a", "#c9a227"]
    for ax, (title, c, key) in zip(axes, panels):
        for i, v in enumerate(variants):
            xs, ys = [], []
            for j, w in enumerate(workloads):
                s = summary.get((v, w, c))
                if s and s.get(key) is not None:
                    xs.append(j + (i - (len(variants) - 1) / 2) * width)
                    ys.append(s[key])
            bars = ax.bar(xs, ys, width, label=meta["variants"][v]["label"],
                          color=colors[i % len(colors)])
            ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(len(workloads)), workloads)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.12)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(variants), fontsize=9, frameon=False)
    m = meta["machine"]
    fig.suptitle(
        f"MCP gateway vs plain Envoy vs native MCP filters: one proxy core; "
        f"{m['nproc']} × {m['cpu_model']}; {meta['date']}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(sys.argv[2], dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
