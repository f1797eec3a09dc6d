"""Talk to an MCP server (e.g. the demo gateway) with the official Python SDK.

    .venv/bin/python scripts/mcp_client_example.py [URL] [--token-file FILE]
                                                        # default http://127.0.0.1:10000/mcp

With --token-file the requests carry `Authorization: Bearer <token>` (the demo writes one token per
role to target/demo/tokens/). A call the policy denies is printed, not fatal.

Connects (the SDK probes `server/discover`, then falls back to `initialize`), lists the tools, which
the demo gateway merges from two servers (`everything__*`, `py__*`), calls an echo tool, and runs a
short tool that reports progress over SSE. Against a single server it uses the unprefixed names.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def text_of(result) -> str:  # noqa: ANN001 - a CallToolResult
    return " ".join(getattr(c, "text", "") for c in result.content)


def pick(names: set[str], *candidates: str) -> str | None:
    """The first candidate the server offers."""
    return next((c for c in candidates if c in names), None)


async def call(client: Client, name: str, args: dict, **kw) -> str:  # noqa: ANN003
    try:
        return text_of(await client.call_tool(name, args, **kw))
    except Exception as e:  # noqa: BLE001 - a denied call is part of the demo
        return f"refused: {e}"


async def main(url: str, token: str | None) -> None:
    target = url
    if token:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
        target = streamable_http_client(url, http_client=http)
    async with Client(target) as client:
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
            print(f"{echo} ->", await call(client, echo, {"message": "hello through the gateway"}))
        add = pick(names, "py__add", "add")
        if add:
            print(f"{add}(2, 40) ->", await call(client, add, {"a": 2, "b": 40}))

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            print(f"  progress {progress:g}/{total:g}" if total else f"  progress {progress:g}")

        slow = pick(names, "py__slow_progress", "slow_progress")
        long_running = pick(names, "everything__trigger-long-running-operation", "trigger-long-running-operation")
        if slow:
            print(f"{slow} ->", await call(client, slow, {"steps": 3, "delay": 0.3}, progress_callback=on_progress))
        elif long_running:
            print(f"{long_running} ->", await call(client, long_running, {"duration": 1, "steps": 3}, progress_callback=on_progress))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="List and call tools through an MCP endpoint.")
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:10000/mcp")
    parser.add_argument("--token-file", type=Path, help="a file holding a bearer token")
    args = parser.parse_args()
    anyio.run(main, args.url, args.token_file.read_text().strip() if args.token_file else None)
