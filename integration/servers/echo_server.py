"""A plain HTTP upstream that tells the client exactly what reached it.

Every request is answered 200 with JSON describing the request as the upstream saw it:
    {"method": ..., "path": ..., "headers": {lower-case name: [values]}, "body": "<latin-1 text>"}
When the body is a JSON-RPC request with an id, the description is wrapped in a JSON-RPC result
({"jsonrpc":"2.0","id":<id>,"result":{"echo": <description>}}) so an MCP-aware gateway sees a
well-formed reply. Tests use it to see which headers and bytes the gateway forwarded, and to tell
a gateway-made reply (never 200-with-echo) from an upstream one.

    python echo_server.py --port 8080     # binds 127.0.0.1 only
"""

from __future__ import annotations

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without this each keep-alive response waits for Nagle + delayed ACK (~40 ms).
    disable_nagle_algorithm = True

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        seen = {
            "method": self.command,
            "path": self.path,
            "headers": headers,
            # latin-1 maps every byte to one code point, so the test can compare bytes exactly.
            "body": body.decode("latin-1"),
        }
        reply: object = seen
        try:
            message = json.loads(body)
        except ValueError:
            message = None
        if isinstance(message, dict) and "id" in message and "method" in message:
            reply = {"jsonrpc": "2.0", "id": message["id"], "result": {"echo": seen}}
        out = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.send_header("X-Echo-Upstream", "1")
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        print(f"{self.command} {self.path} -> {format % args}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"echo server on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
