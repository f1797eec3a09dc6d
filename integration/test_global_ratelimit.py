"""The path to a global limit across Envoy replicas: the gateway filter's `x-mcp-*` headers feed
Envoy's own rate limit descriptors (docs/guardrails-limits.md, "Global limits across replicas").

- envoy/examples/global-ratelimit.yaml (wasm filter -> envoy.filters.http.ratelimit -> router, with
  route `rate_limits` on x-mcp-method, x-mcp-name and x-mcp-subject) passes `envoy --mode
  validate`, and envoy/examples/ratelimit-service.yaml (the envoyproxy/ratelimit service config)
  has a rule for every descriptor shape the route sends. There is no rate limit service here, so
  the global filter itself is only validated, never run.
- Live: a real Envoy (template configs/ratelimit.yaml) runs envoy.filters.http.local_ratelimit
  after the gateway filter with the SAME route `rate_limits` as the example (checked below), in
  front of server-everything. Its descriptors allow `echo` twice a minute for everyone and subject
  `bob` two tools/call a minute; the tests show Envoy's limiter keys on the tool name and subject
  the filter took from the body and the verified API key, not on what the client put in headers.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import yaml

import authkit
import harness
from harness import RawSession, Server

EXAMPLE = harness.REPO / "envoy" / "examples" / "global-ratelimit.yaml"
SERVICE = harness.REPO / "envoy" / "examples" / "ratelimit-service.yaml"
TEMPLATE = harness.CONFIGS / "ratelimit.yaml"

WASM_FILTER = "envoy.filters.http.wasm"
GLOBAL_FILTER = "envoy.filters.http.ratelimit"
LOCAL_FILTER = "envoy.filters.http.local_ratelimit"
ROUTER = "envoy.filters.http.router"

ALICE_KEY = "ak_" + secrets.token_urlsafe(32)
BOB_KEY = "ak_" + secrets.token_urlsafe(32)


def public_jwks() -> str:
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    key = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    key.update(kid="example", alg="ES256", use="sig")
    return json.dumps({"keys": [key]})


def rendered_example() -> str:
    text = EXAMPLE.read_text().replace("${JWKS}", public_jwks())
    assert "${" not in text, "global-ratelimit.yaml: a placeholder other than ${JWKS}"
    return text


def http_manager(config: dict[str, Any]) -> dict[str, Any]:
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (hcm,) = chain["filters"]
    return hcm["typed_config"]


def mcp_route(config: dict[str, Any]) -> dict[str, Any]:
    (vhost,) = http_manager(config)["route_config"]["virtual_hosts"]
    return next(r for r in vhost["routes"] if r["match"].get("prefix") == "/mcp")


def http_filter(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f["typed_config"] for f in http_manager(config)["http_filters"] if f["name"] == name)


def template_config() -> dict[str, Any]:
    values = {"LISTEN_PORT": 1, "ADMIN_PORT": 2, "EVERYTHING_PORT": 3, "ACCESS_LOG": "/dev/null", "WASM_PATH": harness.WASM}
    return harness.render_bootstrap(TEMPLATE, values, None)


def commented_service_config() -> Any:
    """The service config quoted in the example's header comment, between the marker lines."""
    lines = EXAMPLE.read_text().splitlines()
    start, end = lines.index("# --- ratelimit-service ---"), lines.index("# --- end ---")
    return yaml.safe_load("\n".join(line.removeprefix("# ").removeprefix("#") for line in lines[start + 1 : end]))


def descriptor_shapes(config: dict[str, Any]) -> dict[str, list[str]]:
    """rule name -> the descriptor keys the route sends for it, in order (generic_key first)."""
    shapes = {}
    for entry in mcp_route(config)["route"]["rate_limits"]:
        keys, rule = [], None
        for action in entry["actions"]:
            ((kind, spec),) = action.items()
            keys.append(spec["descriptor_key"])
            if kind == "generic_key":
                rule = spec["descriptor_value"]
        assert rule is not None, f"a rate_limits entry without a generic_key naming its rule: {entry}"
        shapes[rule] = keys
    return shapes


def limited_paths(entries: list[dict[str, Any]], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every key path of the service config that ends in a `rate_limit`."""
    for entry in entries:
        path = (*prefix, entry["key"])
        if "rate_limit" in entry:
            yield path
        yield from limited_paths(entry.get("descriptors", []), path)


# --- the global example: validated, not run -----------------------------------------------------


def test_global_example_passes_envoy_validate(tmp_path: Path) -> None:
    if not harness.WASM.exists():
        pytest.fail(f"{harness.WASM} is missing: run `make build`")
    rendered = tmp_path / "global-ratelimit.yaml"
    rendered.write_text(rendered_example())
    # cwd = repo root: the example names the wasm relative to it. Validation loads the wasm and
    # runs the plugin's on_configure, and rejects any field Envoy 1.40's API does not have.
    result = harness.validate_bootstrap(rendered, cwd=harness.REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


def test_global_rate_limit_filter_runs_after_the_gateway_filter_and_fails_open() -> None:
    config = yaml.safe_load(rendered_example())
    names = [f["name"] for f in http_manager(config)["http_filters"]]
    assert names == [WASM_FILTER, GLOBAL_FILTER, ROUTER]
    rl = http_filter(config, GLOBAL_FILTER)
    assert (rl["domain"], rl["failure_mode_deny"], rl["rate_limit_service"]["transport_api_version"]) == ("mcp", False, "V3")
    cluster_name = rl["rate_limit_service"]["grpc_service"]["envoy_grpc"]["cluster_name"]
    cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == cluster_name)
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert (cluster_name, endpoint) == ("ratelimit", {"address": "127.0.0.1", "port_value": 8081})
    options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in options["explicit_http_config"], "gRPC needs HTTP/2 to the service"
    plugin = json.loads(http_filter(config, WASM_FILTER)["config"]["configuration"]["value"])
    assert plugin["identityHeaders"]["subject"] == "x-mcp-subject"
    assert mcp_route(config)["match"]["prefix"] in plugin["mcpPaths"]


def test_service_config_quoted_in_the_example_is_the_shipped_one() -> None:
    assert commented_service_config() == yaml.safe_load(SERVICE.read_text())


def test_every_limit_in_the_service_config_matches_a_descriptor_the_route_sends() -> None:
    """The service matches a descriptor only against entries nested exactly as deep as it has
    entries, in the same key order: a limit whose key path differs from every descriptor the
    route sends would silently never apply."""
    service = yaml.safe_load(SERVICE.read_text())
    assert service["domain"] == http_filter(yaml.safe_load(rendered_example()), GLOBAL_FILTER)["domain"]
    shapes = descriptor_shapes(yaml.safe_load(rendered_example()))
    assert set(shapes) == {"per_tool", "per_subject", "per_subject_tool"}
    rules = {}
    for top in service["descriptors"]:
        assert top["key"] == "rule", top
        rules.setdefault(top["value"], []).extend(limited_paths(top.get("descriptors", []), ("rule",)))
    assert set(rules) == set(shapes)
    for rule, paths in rules.items():
        assert paths, f"rule {rule} sets no limit"
        for path in paths:
            assert list(path) == shapes[rule], f"rule {rule}: limit at {path}, but the route sends {shapes[rule]}"


def test_live_template_uses_the_same_descriptor_actions_as_the_global_example() -> None:
    example, local = yaml.safe_load(rendered_example()), template_config()
    assert mcp_route(local)["route"]["rate_limits"] == mcp_route(example)["route"]["rate_limits"]
    assert [f["name"] for f in http_manager(local)["http_filters"]] == [WASM_FILTER, LOCAL_FILTER, ROUTER]


# --- live: Envoy's local limiter, fed by the filter's headers ------------------------------------


@pytest.fixture(scope="module")
def gw(envoy, everything_server: Server) -> harness.Envoy:
    plugin = {
        "mcpPaths": ["/mcp"],
        "auth": {
            "mode": "apiKey",
            "apiKeyHeader": "x-api-key",
            "apiKeys": [
                {"sha256": authkit.sha256_hex(ALICE_KEY), "subject": "alice"},
                {"sha256": authkit.sha256_hex(BOB_KEY), "subject": "bob"},
            ],
        },
        "identityHeaders": {"subject": "x-mcp-subject"},
    }
    return envoy({"everything": everything_server}, plugin, template=TEMPLATE)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def session(gw: harness.Envoy, http: httpx.Client, key: str) -> RawSession:
    s = RawSession(http, gw.base_url + "/mcp", extra_headers={"x-api-key": key})
    s.initialize()
    return s


def call(s: RawSession, tool: str, arguments: dict[str, Any], test_id: str, **headers: str) -> httpx.Response:
    """A tools/call whose HTTP response is returned as is (a limited one is not JSON-RPC)."""
    body = harness.rpc("tools/call", {"name": tool, "arguments": arguments}, s._id())
    return s.client.post(s.url, json=body, headers=s.headers(**{"X-Test-Id": test_id, **headers}))


def assert_answered(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:500]}"
    (message,) = [m for m in harness.jsonrpc_messages(resp) if "result" in m or "error" in m]
    assert "result" in message, message
    return message["result"]


def assert_limited_by_envoy(resp: httpx.Response) -> None:
    """Envoy's local limiter answered (HTTP 429, its own header); the gateway filter turned its
    plain-text page into a JSON-RPC error the agent can read, with the request's id."""
    assert resp.status_code == 429, f"HTTP {resp.status_code}: {resp.text[:500]}"
    assert resp.headers.get("x-local-rate-limit") == "true"
    assert resp.headers.get("content-type", "").startswith("application/json")
    error = resp.json()["error"]
    assert error["code"] == -31429 and "local_rate_limited" in error["message"], error


@pytest.mark.filter
def test_third_call_of_a_limited_tool_gets_envoys_429_while_other_tools_pass(
    gw: harness.Envoy, http: httpx.Client, everything_server: Server
) -> None:
    alice = session(gw, http, ALICE_KEY)
    for i in range(2):
        assert assert_answered(call(alice, "echo", {"message": f"hi {i}"}, f"echo-{i}"))["content"][0]["text"] == f"Echo: hi {i}"
    # The client's own x-mcp-name is replaced by the name from the body: no way around the limit.
    assert_limited_by_envoy(call(alice, "echo", {"message": "third"}, "echo-2", **{"x-mcp-name": "get-sum"}))
    # The descriptor carries the tool name: get-sum matches no descriptor and is not limited.
    for i in range(3):
        assert assert_answered(call(alice, "get-sum", {"a": i, "b": 1}, f"sum-{i}"))["content"][0]["text"] == f"The sum of {i} and 1 is {i + 1}."
    limited = gw.wait_access_log(lambda e: e.get("request_id") == "echo-2")
    # Answered by Envoy's limiter (flag RL), never sent upstream.
    assert (limited["status"], limited["response_flags"], limited["response_code_details"]) == (429, "RL", "local_rate_limited")
    assert limited["upstream_host"] is None
    assert (limited["x_mcp_method"], limited["x_mcp_name"], limited["x_mcp_subject"]) == ("tools/call", "echo", "alice")
    assert gw.wait_access_log(lambda e: e.get("request_id") == "sum-2")["upstream_host"] == f"127.0.0.1:{everything_server.port}"


@pytest.mark.filter
def test_a_subjects_limit_keys_on_the_verified_identity_not_on_client_headers(gw: harness.Envoy, http: httpx.Client) -> None:
    enforced = "mcp_local_rl.http_local_rate_limit.enforced"
    before = gw.stats(r"mcp_local_rl\.").get(enforced, 0)
    bob, alice = session(gw, http, BOB_KEY), session(gw, http, ALICE_KEY)
    # Initialize and the notification were not tools/call: they matched no limited descriptor.
    for i in range(2):
        assert_answered(call(bob, "get-sum", {"a": 1, "b": i}, f"bob-{i}"))
    assert_limited_by_envoy(call(bob, "get-sum", {"a": 1, "b": 2}, "bob-2"))
    # Bob's other methods still pass: the per-subject descriptor carries the method.
    _, tools = bob.request("tools/list")
    assert "get-sum" in {t["name"] for t in tools["result"]["tools"]}
    # Alice claiming to be bob (and bob claiming to be alice) changes nothing: x-mcp-subject is
    # set from the verified API key, and a client's copy is removed.
    assert_answered(call(alice, "get-sum", {"a": 2, "b": 2}, "alice-as-bob", **{"x-mcp-subject": "bob"}))
    assert_limited_by_envoy(call(bob, "get-sum", {"a": 2, "b": 3}, "bob-as-alice", **{"x-mcp-subject": "alice"}))
    entry = gw.wait_access_log(lambda e: e.get("request_id") == "alice-as-bob")
    assert (entry["status"], entry["x_mcp_subject"]) == (200, "alice")
    assert gw.stats(r"mcp_local_rl\.")[enforced] - before == 2
