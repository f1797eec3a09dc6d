"""Without federation, a policy still filters lists: the upstream's own tools/list answer (SSE
from server-everything, plain JSON from the stateless Python server) is filtered for the caller
on its way back. One Envoy (template configs/gateway.yaml: /mcp to server-everything, /pyjson/mcp
to the stateless Python server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

import authkit
import harness
from harness import RawSession, Server

SECRET = b"passthrough-policy-test-secret-32b"
POLICY = (Path(__file__).resolve().parent.parent / "policies" / "demo.rego").read_text()
READER_TOOLS = {"echo", "get-sum", "get-tiny-image", "get-annotated-message", "get-structured-content", "get-resource-links", "get-resource-reference"}


@pytest.fixture(scope="module")
def gw(envoy, everything_server: Server, py_json_server: Server) -> harness.Envoy:
    config: dict[str, Any] = {
        "mcpPaths": harness.MCP_PATHS,
        "auth": {
            "issuer": authkit.ISSUER,
            "algorithms": ["HS256"],
            "jwks": {"keys": [authkit.oct_jwk(SECRET, "k1")]},
            "resourceMetadata": {"resource": authkit.RESOURCE, "authorizationServers": [authkit.ISSUER]},
        },
        "policy": {"modules": [{"name": "demo.rego", "rego": POLICY}], "claims": ["roles"]},
        # The stateless Python server issues no session id.
        "requireSessionId": False,
    }
    return envoy({"everything": everything_server, "pyjson": py_json_server}, config)


def token(role: str) -> str:
    return authkit.hs256(SECRET, authkit.claims(f"user-{role}", roles=[role]), kid="k1")


def tools(gw: harness.Envoy, path: str, role: str, **session: Any) -> set[str]:
    with httpx.Client(timeout=15) as client:
        s = RawSession(client, gw.base_url + path, extra_headers={"Authorization": f"Bearer {token(role)}"}, **session)
        s.initialize()
        _, reply = s.request("tools/list")
    assert "result" in reply, reply
    return {t["name"] for t in reply["result"]["tools"]}


def test_a_reader_sees_only_the_tools_the_policy_lets_it_call_from_an_sse_answer(gw: harness.Envoy) -> None:
    admin, reader = tools(gw, "/mcp", "admin"), tools(gw, "/mcp", "reader")
    assert READER_TOOLS <= admin and "get-env" in admin
    assert reader == READER_TOOLS & admin


def test_a_json_list_answer_is_filtered_too(gw: harness.Envoy) -> None:
    admin = tools(gw, "/pyjson/mcp", "admin")
    reader = tools(gw, "/pyjson/mcp", "reader")
    assert {"echo", "add"} <= admin
    assert reader == {"echo"}
