"""An ASGI wrapper that records every HTTP request an MCP server receives, one JSON line each, so
tests can check what actually reached a server behind the gateway (which server got a call, under
which name, how often lists were fetched, whether a session was ended) instead of trusting replies.

    {"http": "POST", "session": "<Mcp-Session-Id>", "version": "<MCP-Protocol-Version>",
     "mcp_method": "<Mcp-Method>", "mcp_name": "<Mcp-Name>", "rpc": "tools/call", "id": 3,
     "name": "echo", "uri": null, "cursor": null, "arguments": {"message": "hi"}, "response": false}

A batch body gives one line per message. Lines are flushed as they are written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


# Request headers recorded as they arrived (None when absent).
HEADERS = {"session": b"mcp-session-id", "version": b"mcp-protocol-version", "mcp_method": b"mcp-method", "mcp_name": b"mcp-name"}


def _records(method: str, headers: dict[str, str | None], body: bytes) -> list[dict[str, Any]]:
    base: dict[str, Any] = {"http": method, **headers}
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return [{**base, "rpc": None, "unparsed": True}]
    messages = parsed if isinstance(parsed, list) else [parsed]
    out = []
    for message in messages:
        if not isinstance(message, dict):
            out.append({**base, "rpc": None})
            continue
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        out.append(
            {
                **base,
                "rpc": message.get("method"),
                "id": message.get("id"),
                "name": params.get("name"),
                "uri": params.get("uri"),
                "cursor": params.get("cursor"),
                "arguments": params.get("arguments"),
                "response": "method" not in message,
            }
        )
    return out


class RequestLog:
    """Wraps `app`; appends a line per request to `path` before the app sees the request."""

    def __init__(self, app: ASGIApp, path: Path) -> None:
        self.app = app
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        first: Message | None = None
        while True:
            message = await receive()
            if message["type"] != "http.request":
                first = message  # a disconnect before the body ended: pass it on
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        for record in _records(scope["method"], {k: _header(scope, h) for k, h in HEADERS.items()}, body):
            self.file.write(json.dumps(record) + "\n")
        self.file.flush()

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first or {"type": "http.request", "body": body, "more_body": False}
            # Later reads wait for the client to go away (SSE replies watch for it).
            return await receive()

        await self.app(scope, replay, send)
