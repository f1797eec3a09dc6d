"""The plugin configuration is checked when Envoy loads it: `envoy --mode validate` (which runs the
filter's on_configure) fails on a bad one, and its log names the offending field."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import harness

pytestmark = pytest.mark.filter


def validate_with(tmp_path: Path, plugin_config: dict[str, Any] | str) -> tuple[int, str]:
    values: dict[str, Any] = {k: harness.free_port() for k in ("LISTEN_PORT", "ADMIN_PORT", "EVERYTHING_PORT", "PY_PORT", "PYJSON_PORT", "ECHO_PORT", "DEAD_PORT")}
    values |= {"ACCESS_LOG": tmp_path / "access.log", "WASM_PATH": harness.WASM}
    config = harness.render_bootstrap(harness.CONFIGS / "gateway.yaml", values, plugin_config)
    path = tmp_path / "bootstrap.yaml"
    path.write_text(yaml.safe_dump(config))
    result = harness.validate_bootstrap(path)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize(
    "plugin_config",
    [
        {"mcpPaths": ["/mcp"]},
        {"mcpPaths": harness.MCP_PATHS, "maxRequestBytes": 1024, "routingHeaders": {"method": "x-a", "name": "x-b"}},
    ],
    ids=["demo", "full"],
)
def test_good_plugin_config_passes_validate(tmp_path: Path, plugin_config: dict[str, Any]) -> None:
    rc, log = validate_with(tmp_path, plugin_config)
    assert rc == 0, log


@pytest.mark.parametrize(
    ("plugin_config", "named"),
    [
        ({"mcpPathz": []}, "mcpPathz"),
        ({"maxRequestBytes": 0}, "maxRequestBytes"),
        ({"maxRequestBytes": "big"}, "maxRequestBytes"),
        ({"mcpPaths": []}, "mcpPaths"),
        ({"routingHeaders": {"method": "bad header\r\n", "name": "x-b"}}, "routingHeaders.method"),
    ],
    ids=["unknown-field", "zero-body-limit", "wrong-type", "no-paths", "bad-header-name"],
)
def test_bad_plugin_config_fails_validate_naming_the_field(tmp_path: Path, plugin_config: dict[str, Any], named: str) -> None:
    rc, log = validate_with(tmp_path, plugin_config)
    assert rc == 1, log
    assert named in log, log[-3000:]


def test_plugin_config_that_is_not_json_fails_validate(tmp_path: Path) -> None:
    rc, log = validate_with(tmp_path, '{"mcpPaths": ["/mcp"]')
    assert rc == 1, log


def test_bad_plugin_config_keeps_envoy_from_starting(tmp_path: Path) -> None:
    """Not just validate: a real start with a bad config exits instead of serving unchecked."""
    validate_with(tmp_path, {"mcpPathz": ["/mcp"]})  # writes tmp_path/bootstrap.yaml
    result = subprocess.run(
        [harness.envoy_binary(), "-c", str(tmp_path / "bootstrap.yaml"), "--concurrency", "1", "--disable-hot-restart"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, cwd=harness.REPO,
    )
    assert result.returncode != 0
    assert "mcpPathz" in result.stdout + result.stderr
