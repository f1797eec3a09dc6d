"""Talk to an MCP server (e.g. the demo gateway) with the official Python SDK.

    .venv/bin/python scripts/mcp_client_example.py [URL]      # default http://127.0.0.1:10000/mcp

Connects (the SDK probes `server/discover`, then falls back to `initialize`), lists the tools, which
the demo gateway merges from two servers (`everything__*`, `py__*`), calls an echo tool, and runs a
short tool that reports progress over SSE. Against a single server it uses the unprefixed names.
"""

from __future__ import annotations

import sys
from collections import defaultdict

import anyio
from mcp import Client


def text_of(result) -> str:  # noqa: ANN001 - a CallToolResult
    return " ".join(getattr(c, "text", "") for c in result.content)


def pick(names: set[str], *candidates: str) -> str | None:
    """The first candidate the server offers."""
    return next((c for c in candidates if c in names), None)


async def main(url: str) -> None:
    async with Client(url) as client:
        print(f"connected: protocol {client.protocol_version}, server {client.server_info}")
        tools = (await client.list_tools()).tools
        names = {t.name for t in tools}
        # A federating gateway names tools <server>__<tool>: group them by server.
        by_server: dict[str, list[str]] = defaultdict(list)
        for t in tools:
            server, sep, own = t.name.partition("__")
            by_server[server if sep else "(unprefixed)"].append(own if sep else t.name)
        print(f"{len(tools)} tools:")
        for server, own_names in by_server.items():
            print(f"  {server}: {', '.join(own_names)}")

        echo = pick(names, "everything__echo", "py__echo", "echo")
        if echo:
            result = await client.call_tool(echo, {"message": "hello through the gateway"})
            print(f"{echo} ->", text_of(result))
        add = pick(names, "py__add", "add")
        if add:
            print(f"{add}(2, 40) ->", text_of(await client.call_tool(add, {"a": 2, "b": 40})))

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            print(f"  progress {progress:g}/{total:g}" if total else f"  progress {progress:g}")

        slow = pick(names, "py__slow_progress", "slow_progress")
        long_running = pick(names, "everything__trigger-long-running-operation", "trigger-long-running-operation")
        if slow:
            result = await client.call_tool(slow, {"steps": 3, "delay": 0.3}, progress_callback=on_progress)
            print(f"{slow} ->", text_of(result))
        elif long_running:
            result = await client.call_tool(long_running, {"duration": 1, "steps": 3}, progress_callback=on_progress)
            print(f"{long_running} ->", text_of(result))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:10000/mcp")
