"""The project's Python SDK MCP server (integration/servers/py_server.py) as a container runs it.

integration/servers/py_server.py binds 127.0.0.1 only, and the SDK then accepts only loopback
`Host` headers (DNS-rebinding protection). In a container the server must listen on 0.0.0.0 so Envoy
in another container can reach it, and it must accept the names requests arrive with: the Compose
service name the gateway's own calls carry (`authority: "py:3002"`), and the loopback names clients
use for the published gateway port (`127.0.0.1:10000`), which Envoy passes through on routed calls.
The protection stays on for every other name, and `Origin`s are held to loopback, as the SDK does
for a loopback server.

    python deploy/compose/py_server.py    # HOST, PORT, ALLOWED_HOSTS, ALLOWED_ORIGINS from the environment

The server itself (tools, prompts, resources) is imported unchanged.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration" / "servers"))

from mcp.server.transport_security import TransportSecuritySettings  # noqa: E402
from py_server import mcp  # noqa: E402

DEFAULT_ALLOWED_HOSTS = "py:*,127.0.0.1:*,localhost:*"
DEFAULT_ALLOWED_ORIGINS = "http://127.0.0.1:*,http://localhost:*"


def _list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def main() -> None:
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=_list("ALLOWED_HOSTS", DEFAULT_ALLOWED_HOSTS),
        allowed_origins=_list("ALLOWED_ORIGINS", DEFAULT_ALLOWED_ORIGINS),
    )
    mcp.run(
        "streamable-http",
        host=os.environ.get("HOST", "0.0.0.0"),
        port=int(os.environ.get("PORT", "3002")),
        streamable_http_path="/mcp",
        transport_security=security,
    )


if __name__ == "__main__":
    main()
