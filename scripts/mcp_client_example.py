"""Talk to an MCP server (e.g. the demo gateway) with the official Python SDK.

    .venv/bin/python scripts/mcp_client_example.py [URL]      # default http://127.0.0.1:10000/mcp

Connects (the SDK probes `server/discover`, then falls back to `initialize`), lists the tools,
calls `echo`, and runs a short tool that reports progress over SSE.
"""

from __future__ import annotations

import sys

import anyio
from mcp import Client


async def main(url: str) -> None:
    async with Client(url) as client:
        print(f"connected: protocol {client.protocol_version}, server {client.server_info}")
        tools = await client.list_tools()
        print("tools:", ", ".join(t.name for t in tools.tools))

        result = await client.call_tool("echo", {"message": "hello through the gateway"})
        print("echo ->", " ".join(getattr(c, "text", "") for c in result.content))

        names = {t.name for t in tools.tools}
        if "trigger-long-running-operation" in names:

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                print(f"  progress {progress:g}/{total:g}" if total else f"  progress {progress:g}")

            result = await client.call_tool(
                "trigger-long-running-operation", {"duration": 1, "steps": 3}, progress_callback=on_progress
            )
            print("long running ->", " ".join(getattr(c, "text", "") for c in result.content))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:10000/mcp")
