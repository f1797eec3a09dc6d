"""The Envoy bootstraps we ship (envoy/*.yaml) and the test template are valid for Envoy 1.40 and
agree with each other on what matters (wasm filter settings, stats rules, SSE timeouts)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import yaml

import harness

SHIPPED = sorted((harness.REPO / "envoy").glob("*.yaml"))
WASM_FILTER = "envoy.filters.http.wasm"


TEMPLATE = harness.CONFIGS / "gateway.yaml"
TEMPLATES = sorted(harness.CONFIGS.glob("*.yaml"))  # gateway.yaml, federation.yaml
PORTS = ("LISTEN_PORT", "ADMIN_PORT", "EVERYTHING_PORT", "PY_PORT", "PYJSON_PORT", "ECHO_PORT", "DEAD_PORT")


# The shipped bootstraps carry this placeholder where the federation session key goes
# (scripts/demo.sh fills in a fresh key at every start); the tests fill in TEST_KEY.
KEY_PLACEHOLDER = "${SESSION_KEY}"
TEST_KEY = "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktdGVzdCE="  # base64 of 32 bytes, for tests only
# The demo's identity-provider keys and policy (scripts/demo_setup.py fills in fresh ones); for
# validation, a public P-256 key made here and the shipped policy.
def _demo_values() -> dict[str, str]:
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    public = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    public.update(kid="test", alg="ES256", use="sig")
    policy = (Path(__file__).resolve().parent.parent / "policies" / "demo.rego").read_text()
    return {"${DEMO_JWKS}": json.dumps({"keys": [public]}), "${DEMO_POLICY}": json.dumps(policy)}


DEMO_VALUES = _demo_values()


def template_values(tmp_path: Path) -> dict[str, Any]:
    ports = {k: harness.free_port() for k in PORTS}
    for template in harness.CONFIGS.glob("*.yaml"):
        for name in re.findall(r"\$\{([A-Z0-9_]+_PORT)\}", template.read_text()):
            ports.setdefault(name, harness.free_port())
    return {**ports, "ACCESS_LOG": tmp_path / "access.log", "WASM_PATH": harness.WASM}


def rendered_shipped(path: Path) -> str:
    """A shipped bootstrap's text with the test session key in place of the placeholder."""
    text = path.read_text().replace(KEY_PLACEHOLDER, TEST_KEY)
    for placeholder, value in DEMO_VALUES.items():
        text = text.replace(placeholder, value)
    assert "${" not in text, f"{path.name}: a placeholder other than {KEY_PLACEHOLDER}, {', '.join(DEMO_VALUES)}"
    return text


def load(path: Path) -> dict[str, Any]:
    """A shipped bootstrap as parsed YAML (test key filled in); a test template with its
    placeholders filled in."""
    if path.parent == harness.CONFIGS:
        return harness.render_bootstrap(path, template_values(Path("/nonexistent")), None)
    return yaml.safe_load(rendered_shipped(path))


def plugin_config(config: dict[str, Any]) -> dict[str, Any]:
    (f,) = wasm_filters(config)
    return json.loads(f["typed_config"]["config"]["configuration"]["value"])


def mcp_route(config: dict[str, Any]) -> dict[str, Any]:
    (hcm,) = http_managers(config)
    routes = [r for vh in hcm["route_config"]["virtual_hosts"] for r in vh["routes"]]
    return next(r for r in routes if r["match"].get("prefix") == "/mcp")


def rendered_template(tmp_path: Path, wasm: bool) -> Path:
    config = harness.render_bootstrap(TEMPLATE, template_values(tmp_path), harness.DEFAULT_PLUGIN_CONFIG, wasm)
    out = tmp_path / "gateway.yaml"
    out.write_text(yaml.safe_dump(config))
    return out


def http_managers(config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for net_filter in chain["filters"]:
                if net_filter["name"] == "envoy.filters.network.http_connection_manager":
                    yield net_filter["typed_config"]


def wasm_filters(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for hcm in http_managers(config) for f in hcm["http_filters"] if f["name"] == WASM_FILTER]


def without_wasm(config: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    for hcm in http_managers(config):
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != WASM_FILTER]
    return config


def test_shipped_configs_include_demo_and_passthrough() -> None:
    assert {p.name for p in SHIPPED} >= {"demo.yaml", "passthrough.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_bootstrap_passes_envoy_validate(path: Path, tmp_path: Path) -> None:
    if wasm_filters(load(path)) and not harness.WASM.exists():
        pytest.fail(f"{path.name} loads the filter, but {harness.WASM} is missing: run `make build`")
    if not (harness.REPO / "target" / "demo").is_dir():
        pytest.fail("target/demo/ (where the shipped configs write their access log) is missing: run `make build`")
    rendered = tmp_path / path.name
    rendered.write_text(rendered_shipped(path))
    # cwd = repo root: the shipped files name the wasm and the access log relative to it.
    result = harness.validate_bootstrap(rendered, cwd=harness.REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in (result.stdout + result.stderr)


def test_integration_template_without_the_filter_passes_envoy_validate(tmp_path: Path) -> None:
    result = harness.validate_bootstrap(rendered_template(tmp_path, wasm=False))
    assert result.returncode == 0, result.stdout + result.stderr


def test_integration_template_with_the_filter_passes_envoy_validate(tmp_path: Path) -> None:
    result = harness.validate_bootstrap(rendered_template(tmp_path, wasm=True))
    assert result.returncode == 0, result.stdout + result.stderr


def test_passthrough_is_the_demo_without_the_wasm_filter() -> None:
    """Without the filter nothing federates: the baseline routes /mcp straight to server-everything
    and has no other server's cluster; everything else is the demo's."""
    demo, passthrough = load(harness.REPO / "envoy/demo.yaml"), load(harness.REPO / "envoy/passthrough.yaml")
    assert wasm_filters(demo), "demo.yaml must load the filter"
    assert not wasm_filters(passthrough), "passthrough.yaml must not load the filter"
    expected = without_wasm(demo)
    route = mcp_route(expected)["route"]
    del route["cluster_header"]
    route["cluster"] = "everything"
    expected["static_resources"]["clusters"] = [c for c in expected["static_resources"]["clusters"] if c["name"] == "everything"]
    assert passthrough == expected


def test_shipped_bootstraps_never_carry_a_session_key() -> None:
    for path in SHIPPED:
        text = path.read_text()
        filled = text
        for placeholder, value in DEMO_VALUES.items():
            filled = filled.replace(placeholder, value)
        config = yaml.safe_load(filled)
        if wasm_filters(config) and "servers" in plugin_config(config):
            assert plugin_config(config)["federation"]["sessionKey"] == KEY_PLACEHOLDER, path.name
        # Nothing that looks like a 32-byte key in base64 anywhere else either.
        assert not re.search(r"[A-Za-z0-9+/]{43}=", text), path.name


def test_demo_federates_every_upstream_cluster_with_health_checks_and_safe_retries() -> None:
    config = load(harness.REPO / "envoy/demo.yaml")
    plugin = plugin_config(config)
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    assert {s["cluster"] for s in plugin["servers"]} == set(clusters), "a server without a cluster, or a cluster no server uses"
    assert len(plugin["servers"]) >= 2
    route = mcp_route(config)["route"]
    assert route["cluster_header"] == plugin["federation"].get("clusterHeader", "x-mcp-cluster")
    # Only failures where the request never reached a server: tool calls are not idempotent.
    assert set(route["retry_policy"]["retry_on"].split(",")) == {"connect-failure", "refused-stream", "reset-before-request"}
    for name, cluster in clusters.items():
        assert cluster["health_checks"], name
        assert cluster["outlier_detection"]["enforcing_consecutive_5xx"] == 0, name
        assert cluster["outlier_detection"]["enforcing_consecutive_gateway_failure"] > 0, name


def test_every_bootstrap_has_the_same_stats_tag_rules() -> None:
    demo_tags = load(harness.REPO / "envoy/demo.yaml")["stats_config"]["stats_tags"]
    assert {t["tag_name"] for t in demo_tags} == {"method", "outcome", "reason", "server", "tool", "direction", "event", "result", "decision", "rule", "kind"}
    for path in [*SHIPPED, *harness.CONFIGS.glob("*.yaml")]:
        assert load(path)["stats_config"]["stats_tags"] == demo_tags, path.name


@pytest.mark.parametrize("path", [*SHIPPED, *TEMPLATES], ids=lambda p: p.name)
def test_wasm_filter_pauses_on_headers_and_runs_before_the_router(path: Path) -> None:
    config = load(path)
    for hcm in http_managers(config):
        names = [f["name"] for f in hcm["http_filters"]]
        assert names[-1] == "envoy.filters.http.router"
        for f in hcm["http_filters"]:
            if f["name"] != WASM_FILTER:
                continue
            plugin = f["typed_config"]["config"]
            # Without it, Pause in on_http_request_headers stalls the request until the idle timeout.
            assert plugin["allow_on_headers_stop_iteration"] is True
            assert plugin["root_id"] == "mcp_gateway"
            assert plugin["vm_config"]["runtime"] == "envoy.wasm.runtime.v8"
            assert plugin["vm_config"]["code"]["local"]["filename"].endswith("mcp_gateway.wasm")


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_mcp_route_allows_long_lived_sse(path: Path) -> None:
    config = load(path)
    listener = config["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 10000}
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9901}
    assert listener["per_connection_buffer_limit_bytes"] > 1024 * 1024
    (hcm,) = http_managers(config)
    mcp = mcp_route(config)
    if wasm_filters(config):
        assert mcp["route"]["cluster_header"] == "x-mcp-cluster"
    else:
        assert mcp["route"]["cluster"] == "everything"
    assert mcp["route"]["timeout"] == "0s"
    fmt = hcm["access_log"][0]["typed_config"]["log_format"]["json_format"]
    for key in ("mcp_method", "mcp_name", "mcp_outcome"):
        assert fmt[key] == f"%FILTER_STATE(wasm.{key}:PLAIN)%"


def test_every_listener_and_admin_binds_loopback_only() -> None:
    for path in [*SHIPPED, *TEMPLATES]:
        config = load(path)
        addresses = [config["admin"]["address"]["socket_address"]["address"]]
        addresses += [listener["address"]["socket_address"]["address"] for listener in config["static_resources"]["listeners"]]
        assert set(addresses) == {"127.0.0.1"}, path.name


@pytest.mark.filter
def test_demo_bootstrap_federates_both_servers_with_labelled_metrics_and_access_log(
    tmp_path: Path, everything_server: harness.Server, py_server: harness.Server
) -> None:
    """envoy/demo.yaml as scripts/demo_setup.py renders it (fresh keys, tokens per role), on free
    ports, in front of server-everything and py_server."""
    import subprocess
    import sys

    subprocess.run([sys.executable, str(harness.REPO / "scripts/demo_setup.py"), str(tmp_path)], check=True)
    assert (tmp_path / "envoy.yaml").stat().st_mode & 0o077 == 0, "the rendered bootstrap holds keys: owner-only"
    tokens = {role: (tmp_path / "tokens" / f"{role}.jwt").read_text().strip() for role in ("admin", "reader")}
    config = yaml.safe_load((tmp_path / "envoy.yaml").read_text())
    listen_port, admin_port = harness.free_port(), harness.free_port()
    config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    listener = config["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = listen_port
    (hcm,) = http_managers(config)
    access_log = tmp_path / "access.log"
    hcm["access_log"][0]["typed_config"]["path"] = str(access_log)
    ports = {"everything": everything_server.port, "py": py_server.port}
    for cluster in config["static_resources"]["clusters"]:
        cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"] = ports[cluster["name"]]
    gateway = harness.Envoy(tmp_path, config, listen_port, admin_port, access_log, "demo").start()
    try:
        with httpx.Client(timeout=15) as client:
            anonymous = client.post(gateway.base_url + "/mcp", json=harness.initialize_body(), headers={"accept": harness.ACCEPT_BOTH})
            assert anonymous.status_code == 401 and "resource_metadata=" in anonymous.headers["www-authenticate"]
            reader = harness.RawSession(client, gateway.base_url + "/mcp", extra_headers={"Authorization": f"Bearer {tokens['reader']}"})
            reader.initialize()
            _, reader_tools = reader.request("tools/list")
            _, denied = reader.request("tools/call", {"name": "py__add", "arguments": {"a": 1, "b": 2}})
            assert "py__add" not in {t["name"] for t in reader_tools["result"]["tools"]}
            assert denied["error"]["data"]["reason"], denied
            session = harness.RawSession(
                client, gateway.base_url + "/mcp", extra_headers={"X-Test-Id": "demo-1", "Authorization": f"Bearer {tokens['admin']}"}
            )
            session.initialize()
            _, tools = session.request("tools/list")
            _, everything = session.request("tools/call", {"name": "everything__echo", "arguments": {"message": "demo"}})
            _, py = session.request("tools/call", {"name": "py__add", "arguments": {"a": 2, "b": 40}})
            session.delete()
        names = {t["name"] for t in tools["result"]["tools"]}
        assert {"everything__echo", "py__echo", "py__add"} <= names and "everything__get-env" not in names
        assert everything["result"]["content"][0]["text"] == "Echo: demo"
        assert py["result"]["structuredContent"] == {"result": 42}
        entry = gateway.wait_access_log(lambda e: e.get("mcp_name") == "py__add" and e.get("mcp_outcome") == "ok")
        assert (entry["mcp_method"], entry["mcp_outcome"], entry["status"], entry["upstream_cluster"]) == ("tools/call", "ok", 200, "py")
        assert 'mcp_requests_total{method="tools_call",outcome="ok"} 2' in gateway.prometheus().splitlines()
    finally:
        gateway.stop()
    assert "panicked" not in gateway.log()
