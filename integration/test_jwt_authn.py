"""`auth.mode: trustEnvoyJwtAuthn`: teams that run Envoy's own jwt_authn filter let it verify the
token, and the gateway trusts the payload jwt_authn stored in the stream's dynamic metadata
(`payload_in_metadata`), re-checking issuer, audience, expiry and scopes on it.

One Envoy (template configs/auth.yaml, MCP path `/echo/mcp` to the echo upstream) with
envoy.filters.http.jwt_authn inserted before the wasm filter."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

import authkit
import harness
from harness import Server

PATH = "/echo/mcp"
JSON_HEADERS = {"content-type": "application/json", "accept": harness.ACCEPT_BOTH, "mcp-protocol-version": "2025-11-25", "mcp-session-id": "s-1"}


def jwt_authn_filter(key: authkit.SigningKey) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {
                "test": {
                    "issuer": authkit.ISSUER,
                    "audiences": [authkit.RESOURCE],
                    "local_jwks": {"inline_string": json.dumps(authkit.jwks(key))},
                    "payload_in_metadata": "jwt_payload",
                    "forward": False,
                }
            },
            # Requests without a token pass jwt_authn unverified: the gateway then sees no
            # payload and answers 401 itself; a bad token is refused by jwt_authn.
            "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [{"provider_name": "test"}, {"allow_missing": {}}]}}}],
        },
    }


@pytest.fixture(scope="module")
def key() -> authkit.SigningKey:
    return authkit.SigningKey.rsa("trusted-1")


@pytest.fixture(scope="module")
def gateway(proc_dir: Path, echo_server: Server, key: authkit.SigningKey) -> Iterator[harness.Envoy]:
    plugin = {
        "mcpPaths": [PATH],
        "auth": {
            "mode": "trustEnvoyJwtAuthn",
            "issuer": authkit.ISSUER,
            "resourceMetadata": {"resource": authkit.RESOURCE, "authorizationServers": [authkit.ISSUER]},
            "requiredScopes": ["mcp"],
        },
    }
    listen, admin = harness.free_port(), harness.free_port()
    values = {"LISTEN_PORT": listen, "ADMIN_PORT": admin, "ACCESS_LOG": proc_dir / "jwt-authn-access.log", "WASM_PATH": harness.WASM}
    template = harness.CONFIGS / "auth.yaml"
    import re

    for name in re.findall(r"\$\{([A-Z0-9_]+_PORT)\}", template.read_text()):
        values.setdefault(name, echo_server.port if name == "ECHO_PORT" else harness.free_port())
    config = harness.render_bootstrap(template, values, plugin)
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                filters = f.get("typed_config", {}).get("http_filters")
                if filters is not None:
                    filters.insert(0, jwt_authn_filter(key))
    instance = harness.Envoy(proc_dir, copy.deepcopy(config), listen, admin, proc_dir / "jwt-authn-access.log", "jwt-authn").start()
    yield instance
    instance.stop()
    assert "panicked" not in instance.log()


def post(gateway: harness.Envoy, headers: dict[str, str]) -> httpx.Response:
    body = harness.rpc("tools/call", {"name": "echo", "arguments": {"message": "hi"}}, 7)
    return httpx.post(gateway.base_url + PATH, json=body, headers={**JSON_HEADERS, **headers}, timeout=10)


def test_a_token_jwt_authn_verified_is_trusted_and_never_forwarded(gateway: harness.Envoy, key: authkit.SigningKey) -> None:
    token = key.token(authkit.claims())
    resp = post(gateway, authkit.bearer(token))
    assert resp.status_code == 200, resp.text[:300]
    seen = resp.json()["result"]["echo"]["headers"]
    assert "authorization" not in {k.lower() for k in seen}, seen
    assert gateway.stats("auth_total").get("wasmcustom.mcp.auth_total.result=ok", 0) >= 1


def test_no_token_means_no_payload_and_a_401_challenge_from_the_gateway(gateway: harness.Envoy) -> None:
    resp = post(gateway, {})
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer ")
    assert "resource_metadata=" in resp.headers["www-authenticate"]


def test_the_gateway_still_checks_scopes_on_the_trusted_payload(gateway: harness.Envoy, key: authkit.SigningKey) -> None:
    resp = post(gateway, authkit.bearer(key.token(authkit.claims(scope="other"))))
    assert resp.status_code == 403
    assert 'error="insufficient_scope"' in resp.headers["www-authenticate"]


def test_a_client_cannot_forge_the_payload_with_a_header(gateway: harness.Envoy) -> None:
    forged = json.dumps(authkit.claims())
    resp = post(gateway, {"jwt_payload": forged, "x-jwt-payload": forged})
    assert resp.status_code == 401
