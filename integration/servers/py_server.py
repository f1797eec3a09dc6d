"""A small MCP server of the project's own, built on the official Python SDK (mcp 2.x).

It speaks Streamable HTTP on 127.0.0.1 only, at path /mcp, and serves both protocol generations:
the initialize/session era (2025-06-18, 2025-11-25) and 2026-07-28 (the SDK handles both).

    python py_server.py --port 8000                      # stateful, SSE replies (session ids)
    python py_server.py --port 8000 --stateless --json   # no sessions, plain JSON replies
    python py_server.py --port 8000 --request-log r.jsonl  # also record every request (request_log.py)

Tools: echo, add, slow_progress (emits progress notifications while it runs).
Resource: test://static/hello. Prompt: greet.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import anyio
from mcp.server.mcpserver import Context, MCPServer

mcp = MCPServer(name="py-test-server", version="0.1.0", instructions="Test server for mcp-gateway-wasm")


@mcp.tool(description="Echoes back the input message.")
def echo(message: str) -> str:
    return f"Echo: {message}"


@mcp.tool(description="Adds two integers.")
def add(a: int, b: int) -> int:
    return a + b


@mcp.tool(description="Sleeps `steps` times for `delay` seconds, reporting progress after each step.")
async def slow_progress(ctx: Context, steps: int = 3, delay: float = 0.2) -> str:
    for i in range(1, steps + 1):
        await anyio.sleep(delay)
        await ctx.report_progress(i, steps, f"step {i}/{steps}")
    return f"done after {steps} steps"


@mcp.resource("test://static/hello", name="hello", mime_type="text/plain", description="A fixed text resource.")
def hello_resource() -> str:
    return "Hello from py-test-server"


@mcp.prompt(description="A greeting prompt.")
def greet(name: str) -> str:
    return f"Please greet {name} warmly."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--stateless", action="store_true", help="no Mcp-Session-Id; each request stands alone")
    parser.add_argument("--json", action="store_true", help="answer with application/json instead of SSE")
    parser.add_argument("--request-log", type=Path, help="append a JSON line per HTTP request received to this file")
    args = parser.parse_args()
    if args.request_log:
        import uvicorn
        from request_log import RequestLog

        app = mcp.streamable_http_app(
            streamable_http_path="/mcp", stateless_http=args.stateless, json_response=args.json, host="127.0.0.1"
        )
        uvicorn.run(RequestLog(app, args.request_log), host="127.0.0.1", port=args.port, log_level="info")
        return
    mcp.run(
        "streamable-http",
        host="127.0.0.1",  # never anything but loopback
        port=args.port,
        streamable_http_path="/mcp",
        stateless_http=args.stateless,
        json_response=args.json,
    )


if __name__ == "__main__":
    main()
