"""Helpers for the guardrail, limit and cache tests: start servers/guard_server.py (an MCP server
with PII-laden and poisoned results, a destructive tool, a rug-pull tool and a call counter), read
its counters, flip its rug pull, and compute what its `lookup` tool returns.

The server's own counter (`calls`) is the ground truth for "did this call reach the upstream".
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

import harness


def start_guard_server(tmp: Path, *, json_response: bool = False, request_log: bool = True) -> harness.Server:
    """servers/guard_server.py, stateful; SSE replies, or plain JSON with `json_response`.
    Records every /mcp request (`Server.requests()`) unless `request_log` is false."""
    port = harness.free_port()
    name = "guard-server" + ("-json" if json_response else "")
    argv = [sys.executable, str(harness.SERVERS / "guard_server.py"), "--port", str(port)]
    if json_response:
        argv.append("--json")
    log = tmp / f"{name}-{port}.requests.jsonl" if request_log else None
    if log is not None:
        log.unlink(missing_ok=True)
        argv += ["--request-log", str(log)]
    proc = harness.Proc(name, argv, tmp / f"{name}-{port}.log", env=harness.minimal_env(), cwd=tmp).start()
    harness.wait_for_port(proc, port)
    return harness.Server(name, port, proc, request_log=log)


def _control(server: harness.Server, method: str, path: str) -> dict[str, Any]:
    resp = httpx.request(method, f"http://127.0.0.1:{server.port}{path}", timeout=5)
    resp.raise_for_status()
    result: dict[str, Any] = resp.json()
    return result


def calls(server: harness.Server) -> dict[str, Any]:
    """What reached the server: {"counted": n, "total_tool_calls": m, "by_tool": {name: k}}."""
    return _control(server, "GET", "/calls")


def reset_calls(server: harness.Server) -> dict[str, Any]:
    """Zero the server's counters (the server lives for the whole test session)."""
    return _control(server, "DELETE", "/calls")


def flip(server: harness.Server, on: bool) -> None:
    """on: the `mutable` tool's description turns poisoned (a rug pull); off: back to the original."""
    got = _control(server, "POST", "/flip" if on else "/flip?reset=1")
    assert got == {"flipped": on}, got


@cache
def guard_module() -> ModuleType:
    """servers/guard_server.py as a module, for its pure parts: `lookup_text`, `lookup_pii`,
    `HEAD_PII`, `DECOYS`, `POISONED_RESULT`, `HIDDEN_TAGS`, `MUTABLE_DESCRIPTION`, `MUTABLE_POISONED`."""
    spec = importlib.util.spec_from_file_location("guard_server", harness.SERVERS / "guard_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lookup_text(query: str, size: int | None = None) -> str:
    """Exactly what `lookup(query, size)` returns as its text."""
    text: str = guard_module().lookup_text(query, size)
    return text


def lookup_pii(query: str, size: int | None = None) -> list[tuple[str, str]]:
    """Every PII occurrence in that text, in order, as (kind, value); kinds: email, phone, card,
    iban, ssn, aws_key."""
    pii: list[tuple[str, str]] = guard_module().lookup_pii(query, size)
    return pii


def call(s: harness.RawSession, name: str, arguments: dict[str, Any], meta: dict[str, Any] | None = None) -> tuple[httpx.Response, dict[str, Any]]:
    """tools/call `name` on a raw session, with optional `_meta`."""
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if meta:
        params["_meta"] = meta
    return s.request("tools/call", params)
