"""When the upstream is down the client gets a prompt error, never a hang."""

from __future__ import annotations

import time

import httpx
import pytest

import harness
from harness import ACCEPT_BOTH

pytestmark = pytest.mark.filter


@pytest.fixture(scope="module")
def gw(envoy) -> harness.Envoy:
    # The "dead" cluster (and every upstream not given) points at a port nothing listens on.
    return envoy({})


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/dead/mcp", harness.initialize_body(1), {}),
        ("/mcp", harness.initialize_body(1), {}),
        ("/dead/mcp", harness.rpc("tools/call", {"name": "echo", "arguments": {}, "_meta": harness.modern_meta()}), harness.modern_headers("tools/call", "echo")),
    ],
    ids=["initialize", "initialize-default-route", "modern-tools-call"],
)
def test_closed_upstream_port_gives_a_prompt_5xx(gw: harness.Envoy, path: str, body: dict, headers: dict[str, str]) -> None:
    started = time.monotonic()
    with httpx.Client(timeout=10) as client:
        resp = client.post(gw.base_url + path, json=body, headers={"Content-Type": "application/json", "Accept": ACCEPT_BOTH, **headers})
    elapsed = time.monotonic() - started
    assert resp.status_code >= 500, resp.text[:500]
    assert elapsed < 5, f"took {elapsed:.1f}s"
    if resp.headers.get("content-type", "").startswith("application/json"):
        # If the filter turns it into a JSON-RPC error, the id must be the request's.
        reply = resp.json()
        assert reply["jsonrpc"] == "2.0" and reply["id"] == 1 and "error" in reply


def test_envoy_without_the_filter_also_fails_fast(envoy) -> None:
    """Harness self-check: the baseline answers 503 quickly too, so the test above measures the filter."""
    plain = envoy({}, wasm=False)
    started = time.monotonic()
    resp = httpx.post(plain.base_url + "/dead/mcp", json=harness.initialize_body(1), timeout=10)
    assert resp.status_code == 503
    assert time.monotonic() - started < 5
