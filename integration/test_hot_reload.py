"""Changing the filter's configuration without restarting Envoy: the wasm filter is delivered by
ECDS from a file Envoy watches (`config_discovery` + `path_config_source`), so operators (and
config management) replace a file, and its policy, upstreams or settings take effect at once.
In-flight requests, an open SSE stream included, finish on the old configuration; a new
configuration that fails validation is rejected and the old one keeps serving."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

import harness
from harness import Server

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


def policy_allowing(*tools: str) -> str:
    return "package mcp\n\ndefault allow := false\n\nallow if input.tool.name in {%s}\n" % ", ".join(json.dumps(t) for t in tools)


def filter_resource(plugin: dict[str, Any]) -> dict[str, Any]:
    return {
        "resources": [
            {
                "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                "name": "mcp_gateway",
                "typed_config": {
                    "@type": WASM_TYPE,
                    "config": {
                        "name": "mcp_gateway",
                        "root_id": "mcp_gateway",
                        "allow_on_headers_stop_iteration": True,
                        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": json.dumps(plugin)},
                        "vm_config": {"vm_id": "mcp_gateway", "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": str(harness.WASM)}}},
                    },
                },
            }
        ]
    }


def plugin(*tools: str, **more: Any) -> dict[str, Any]:
    return {"mcpPaths": ["/mcp"], "policy": {"modules": [{"name": "p.rego", "rego": policy_allowing(*tools)}]}, **more}


class Reloadable:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, config: dict[str, Any]) -> None:
        """Atomically replaces the watched file (Envoy reloads on the rename)."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(filter_resource(config)))
        os.replace(tmp, self.path)


@pytest.fixture(scope="module")
def setup(proc_dir: Path, py_server: Server) -> Iterator[tuple[harness.Envoy, Reloadable]]:
    ecds = Reloadable(proc_dir / "hot-reload-filter.json")
    ecds.write(plugin("echo"))
    listen, admin = harness.free_port(), harness.free_port()
    access_log = proc_dir / "hot-reload-access.log"
    config = {
        "node": {"id": "gateway", "cluster": "gateway"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{
                "name": "mcp",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "mcp",
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "py", "timeout": "0s"}}]}]},
                        "http_filters": [
                            {"name": "mcp_gateway", "config_discovery": {
                                "config_source": {"path_config_source": {"path": str(ecds.path)}, "resource_api_version": "V3"},
                                "type_urls": [WASM_TYPE]}},
                            {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
                        ],
                    },
                }]}],
            }],
            "clusters": [{"name": "py", "connect_timeout": "1s", "load_assignment": {"cluster_name": "py", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": py_server.port}}}}]}]}}],
        },
    }
    envoy = harness.Envoy(proc_dir, config, listen, admin, access_log, "hot-reload").start()
    yield envoy, ecds
    envoy.stop()
    assert "panicked" not in envoy.log()


def session(client: httpx.Client, envoy: harness.Envoy) -> harness.RawSession:
    s = harness.RawSession(client, envoy.base_url + "/mcp")
    s.initialize()
    return s


def allowed(s: harness.RawSession, tool: str, args: dict[str, Any]) -> bool:
    _, reply = s.request("tools/call", {"name": tool, "arguments": args})
    return "result" in reply


def test_a_new_policy_file_takes_effect_without_a_restart_while_a_stream_finishes(setup: tuple[harness.Envoy, Reloadable]) -> None:
    envoy, ecds = setup
    with httpx.Client(timeout=20) as client:
        s = session(client, envoy)
        assert allowed(s, "echo", {"message": "x"})
        assert not allowed(s, "add", {"a": 1, "b": 2})
        pid = envoy.proc.pid
        # An SSE stream in flight across the reload: slow_progress reports progress for ~1.5 s.
        streamed: dict[str, Any] = {}

        def long_call() -> None:
            with httpx.Client(timeout=20) as c2:
                resp = c2.post(envoy.base_url + "/mcp", json=harness.rpc("tools/call", {"name": "slow_progress", "arguments": {"steps": 5, "delay": 0.3}, "_meta": {"progressToken": "p1"}}, 99), headers=s.headers())
                streamed["status"] = resp.status_code
                streamed["messages"] = harness.jsonrpc_messages(resp)

        ecds.write(plugin("echo", "slow_progress"))
        harness.wait_until(lambda: allowed(s, "slow_progress", {"steps": 1, "delay": 0}), 10, "slow_progress to be allowed")
        t = threading.Thread(target=long_call)
        t.start()
        time.sleep(0.4)
        ecds.write(plugin("echo", "slow_progress", "add"))
        harness.wait_until(lambda: allowed(s, "add", {"a": 1, "b": 2}), 10, "the second reload to allow add")
        t.join(20)
        assert streamed.get("status") == 200, streamed
        progress = [m for m in streamed["messages"] if m.get("method") == "notifications/progress"]
        final = [m for m in streamed["messages"] if m.get("id") == 99]
        assert len(progress) == 5 and final and "result" in final[0], streamed
        assert envoy.proc.pid == pid and envoy.proc.alive(), "Envoy restarted"


def test_an_invalid_new_configuration_is_rejected_and_the_old_one_keeps_serving(setup: tuple[harness.Envoy, Reloadable]) -> None:
    envoy, ecds = setup
    with httpx.Client(timeout=20) as client:
        s = session(client, envoy)
        ecds.write(plugin("echo", "add"))
        harness.wait_until(lambda: allowed(s, "add", {"a": 1, "b": 2}), 10, "add to be allowed")
        ecds.write(plugin("echo", maxRequestBytes=0))
        harness.wait_until(lambda: "maxRequestBytes: must be between" in envoy.log(), 10, "Envoy to reject the new configuration")
        assert "update rejected" in envoy.log()
        # The previous configuration (add allowed) still serves.
        assert allowed(s, "add", {"a": 1, "b": 2})
        ecds.write(plugin("echo"))
        harness.wait_until(lambda: not allowed(s, "add", {"a": 1, "b": 2}), 10, "a valid configuration to apply again")
