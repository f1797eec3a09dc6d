"""A tiny MCP server (official Python SDK, stateless, plain JSON replies) that records every HTTP
request it receives with all of its headers, one JSON line each, so the auth tests can check
which credentials reached an upstream behind the gateway (servers/request_log.py records only the
MCP headers):

    {"http": "POST", "path": "/mcp", "headers": {"<lower-case name>": "<value>", ...},
     "rpc": "tools/call", "name": "hello", "arguments": {"name": "x"}}

Repeated headers are joined with ", ". Tool: hello(name). Binds 127.0.0.1 only.

    python header_server.py --port 8000 --request-log headers.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Awaitable, Callable

import uvicorn
from mcp.server.mcpserver import MCPServer

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

mcp = MCPServer(name="header-server", version="0.1.0")


@mcp.tool(description="Greets `name`.")
def hello(name: str) -> str:
    return f"hello {name}"


def _record(scope: Scope, body: bytes) -> dict[str, Any]:
    headers: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        name = key.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    record: dict[str, Any] = {"http": scope["method"], "path": scope["path"], "headers": headers, "rpc": None}
    try:
        message = json.loads(body) if body else None
    except ValueError:
        message = None
    if isinstance(message, dict):
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        record.update(rpc=message.get("method"), name=params.get("name"), arguments=params.get("arguments"))
    return record


class HeaderLog:
    """Wraps `app`; appends a line per HTTP request to `path` before the app sees it."""

    def __init__(self, app: ASGIApp, path: Path) -> None:
        self.app = app
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        self.file.write(json.dumps(_record(scope, body)) + "\n")
        self.file.flush()
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--request-log", type=Path, required=True, help="append a JSON line per HTTP request to this file")
    args = parser.parse_args()
    app = mcp.streamable_http_app(streamable_http_path="/mcp", stateless_http=True, json_response=True, host="127.0.0.1")
    uvicorn.run(HeaderLog(app, args.request_log), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
