"""An MCP server whose lists come in pages, built on the Python SDK's low-level `Server`: what a
gateway must follow (`nextCursor`) to see everything a server offers.

    python paged_server.py --port 8000 [--tools 11] [--page-size 4] [--request-log r.jsonl]

Tools `page_tool_00` … (11 by default, 4 per page: three pages, cursors `page-1`, `page-2`); each
answers `<name>: <arguments as JSON>`. Prompts come in pages too (`page_prompt_0` … `_4`, 2 per
page). Streamable HTTP on 127.0.0.1, stateless, plain JSON replies. An unknown cursor is -32602.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence, TypeVar

import mcp_types as types
import uvicorn
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

T = TypeVar("T")


def page(items: Sequence[T], cursor: str | None, size: int) -> tuple[list[T], str | None]:
    """The page that `cursor` points at (None: the first) and the cursor of the next one."""
    if cursor is None:
        start = 0
    elif cursor.startswith("page-") and cursor[5:].isdigit() and 0 < int(cursor[5:]) * size < len(items):
        start = int(cursor[5:]) * size
    else:
        raise MCPError(code=types.INVALID_PARAMS, message=f"Invalid cursor: {cursor!r}")
    end = start + size
    return list(items[start:end]), (f"page-{end // size}" if end < len(items) else None)


def build(tool_count: int, page_size: int) -> Server[Any]:
    tools = [
        types.Tool(
            name=f"page_tool_{i:02d}",
            description=f"Tool {i} of a paged list.",
            input_schema={"type": "object", "properties": {"x": {"type": "string"}}},
        )
        for i in range(tool_count)
    ]
    prompts = [types.Prompt(name=f"page_prompt_{i}", description=f"Prompt {i} of a paged list.") for i in range(5)]
    names = {t.name for t in tools}

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        items, next_cursor = page(tools, params.cursor if params else None, page_size)
        return types.ListToolsResult(tools=items, next_cursor=next_cursor)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name not in names:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        text = f"{params.name}: {json.dumps(params.arguments or {}, sort_keys=True)}"
        return types.CallToolResult(content=[types.TextContent(text=text)])

    async def list_prompts(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        items, next_cursor = page(prompts, params.cursor if params else None, 2)
        return types.ListPromptsResult(prompts=items, next_cursor=next_cursor)

    return Server(
        "paged-test-server",
        version="0.1.0",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_prompts=list_prompts,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tools", type=int, default=11)
    parser.add_argument("--page-size", type=int, default=4)
    parser.add_argument("--request-log", type=Path, help="append a JSON line per HTTP request received to this file")
    args = parser.parse_args()
    server = build(args.tools, args.page_size)
    app: Any = server.streamable_http_app(
        streamable_http_path="/mcp", stateless_http=True, json_response=True, host="127.0.0.1"
    )
    if args.request_log:
        from request_log import RequestLog

        app = RequestLog(app, args.request_log)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info")  # never anything but loopback


if __name__ == "__main__":
    main()
