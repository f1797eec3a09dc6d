"""The Envoy bootstraps we ship (envoy/*.yaml) and the test template are valid for Envoy 1.40 and
agree with each other on what matters (wasm filter settings, stats rules, SSE timeouts)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import yaml

import harness

SHIPPED = sorted((harness.REPO / "envoy").glob("*.yaml"))
WASM_FILTER = "envoy.filters.http.wasm"


TEMPLATE = harness.CONFIGS / "gateway.yaml"
PORTS = ("LISTEN_PORT", "ADMIN_PORT", "EVERYTHING_PORT", "PY_PORT", "PYJSON_PORT", "ECHO_PORT", "DEAD_PORT")


def template_values(tmp_path: Path) -> dict[str, Any]:
    return {**{k: harness.free_port() for k in PORTS}, "ACCESS_LOG": tmp_path / "access.log", "WASM_PATH": harness.WASM}


def load(path: Path) -> dict[str, Any]:
    """A shipped bootstrap as parsed YAML; a test template with its placeholders filled in."""
    if path.parent == harness.CONFIGS:
        return harness.render_bootstrap(path, template_values(Path("/nonexistent")), None)
    return yaml.safe_load(path.read_text())


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
def test_every_shipped_bootstrap_passes_envoy_validate(path: Path) -> None:
    if wasm_filters(load(path)) and not harness.WASM.exists():
        pytest.fail(f"{path.name} loads the filter, but {harness.WASM} is missing: run `make build`")
    if not (harness.REPO / "target" / "demo").is_dir():
        pytest.fail("target/demo/ (where the shipped configs write their access log) is missing: run `make build`")
    # cwd = repo root: the shipped files name the wasm and the access log relative to it.
    result = harness.validate_bootstrap(path, cwd=harness.REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in (result.stdout + result.stderr)


def test_integration_template_without_the_filter_passes_envoy_validate(tmp_path: Path) -> None:
    result = harness.validate_bootstrap(rendered_template(tmp_path, wasm=False))
    assert result.returncode == 0, result.stdout + result.stderr


def test_integration_template_with_the_filter_passes_envoy_validate(tmp_path: Path) -> None:
    result = harness.validate_bootstrap(rendered_template(tmp_path, wasm=True))
    assert result.returncode == 0, result.stdout + result.stderr


def test_passthrough_is_the_demo_without_the_wasm_filter() -> None:
    demo, passthrough = load(harness.REPO / "envoy/demo.yaml"), load(harness.REPO / "envoy/passthrough.yaml")
    assert wasm_filters(demo), "demo.yaml must load the filter"
    assert not wasm_filters(passthrough), "passthrough.yaml must not load the filter"
    assert without_wasm(demo) == passthrough


def test_every_bootstrap_has_the_same_stats_tag_rules() -> None:
    demo_tags = load(harness.REPO / "envoy/demo.yaml")["stats_config"]["stats_tags"]
    assert {t["tag_name"] for t in demo_tags} == {"method", "outcome", "reason"}
    for path in [*SHIPPED, *harness.CONFIGS.glob("*.yaml")]:
        assert load(path)["stats_config"]["stats_tags"] == demo_tags, path.name


@pytest.mark.parametrize("path", [*SHIPPED, TEMPLATE], ids=lambda p: p.name)
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
    routes = [r for vh in hcm["route_config"]["virtual_hosts"] for r in vh["routes"]]
    mcp = next(r for r in routes if r["match"].get("prefix") == "/mcp")
    assert mcp["route"]["cluster"] == "everything"
    assert mcp["route"]["timeout"] == "0s"
    fmt = hcm["access_log"][0]["typed_config"]["log_format"]["json_format"]
    for key in ("mcp_method", "mcp_name", "mcp_outcome"):
        assert fmt[key] == f"%FILTER_STATE(wasm.{key}:PLAIN)%"


def test_every_listener_and_admin_binds_loopback_only() -> None:
    for path in [*SHIPPED, TEMPLATE]:
        config = load(path)
        addresses = [config["admin"]["address"]["socket_address"]["address"]]
        addresses += [listener["address"]["socket_address"]["address"] for listener in config["static_resources"]["listeners"]]
        assert set(addresses) == {"127.0.0.1"}, path.name


@pytest.mark.filter
def test_demo_bootstrap_serves_a_session_with_labelled_metrics_and_access_log(tmp_path: Path, everything_server: harness.Server) -> None:
    """envoy/demo.yaml itself, moved to free ports, in front of server-everything."""
    config = load(harness.REPO / "envoy/demo.yaml")
    listen_port, admin_port = harness.free_port(), harness.free_port()
    config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    listener = config["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = listen_port
    (hcm,) = http_managers(config)
    access_log = tmp_path / "access.log"
    hcm["access_log"][0]["typed_config"]["path"] = str(access_log)
    (cluster,) = config["static_resources"]["clusters"]
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"] = everything_server.port
    gateway = harness.Envoy(tmp_path, config, listen_port, admin_port, access_log, "demo").start()
    try:
        with httpx.Client(timeout=15) as client:
            session = harness.RawSession(client, gateway.base_url + "/mcp", extra_headers={"X-Test-Id": "demo-1"})
            session.initialize()
            resp, reply = session.request("tools/call", {"name": "echo", "arguments": {"message": "demo"}})
            session.delete()
        assert reply["result"]["content"][0]["text"] == "Echo: demo"
        entry = gateway.wait_access_log(lambda e: e.get("mcp_method") == "tools/call")
        assert (entry["mcp_name"], entry["mcp_outcome"], entry["status"]) == ("echo", "ok", 200)
        assert 'mcp_requests_total{method="tools_call",outcome="ok"} 1' in gateway.prometheus().splitlines()
    finally:
        gateway.stop()
    assert "panicked" not in gateway.log()
