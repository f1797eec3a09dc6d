"""Fixtures: real MCP servers (started once per session) and Envoy instances (one per test file)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import harness
from harness import Envoy, Server


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def proc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Logs, rendered bootstraps and access logs of everything the tests start."""
    return tmp_path_factory.mktemp("procs")


def _serve(start: Callable[[], Server]) -> Iterator[Server]:
    server = start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def everything_server(proc_dir: Path) -> Iterator[Server]:
    """npm @modelcontextprotocol/server-everything, Streamable HTTP, stateful, on loopback."""
    yield from _serve(lambda: harness.start_everything(proc_dir))


@pytest.fixture(scope="session")
def py_server(proc_dir: Path) -> Iterator[Server]:
    """The project's Python SDK server, stateful with SSE replies; records what it receives
    (`server.requests()`)."""
    yield from _serve(lambda: harness.start_py_server(proc_dir, request_log=True))


@pytest.fixture(scope="session")
def py_json_server(proc_dir: Path) -> Iterator[Server]:
    """The project's Python SDK server, stateless with plain JSON replies; records what it receives."""
    yield from _serve(lambda: harness.start_py_server(proc_dir, stateless=True, json_response=True, request_log=True))


@pytest.fixture(scope="session")
def paged_server(proc_dir: Path) -> Iterator[Server]:
    """servers/paged_server.py: tools and prompts over several pages (nextCursor); records requests."""
    yield from _serve(lambda: harness.start_paged_server(proc_dir))


@pytest.fixture(scope="session")
def guard_server(proc_dir: Path) -> Iterator[Server]:
    """servers/guard_server.py: PII-laden, cacheable, destructive, mutable and poisoned tools, with
    `/calls` (what really reached it) and `/flip` (change a tool's description); SSE replies."""
    import guardkit

    yield from _serve(lambda: guardkit.start_guard_server(proc_dir))


@pytest.fixture(scope="session")
def echo_server(proc_dir: Path) -> Iterator[Server]:
    """A plain HTTP upstream that answers with what reached it."""
    yield from _serve(lambda: harness.start_echo_server(proc_dir))


EnvoyFactory = Callable[..., Envoy]


@pytest.fixture(scope="module")
def envoy(request: pytest.FixtureRequest, proc_dir: Path) -> Iterator[EnvoyFactory]:
    """Factory: `envoy({"everything": server, "echo": ...}, plugin_config=..., wasm=True)` starts an
    Envoy from a template (default integration/configs/gateway.yaml, whose upstream keys are
    everything, py, pyjson, echo, dead; a key `k` fills the template's `${K_PORT}`) and waits for
    admin /ready. Keywords `template`, `concurrency` and `extra_args` (Envoy flags) pass through.
    All are stopped at module end, and the module fails if a wasm VM panicked in any of them."""
    started: list[Envoy] = []
    # Debugging aid: MCP_GATEWAY_BASELINE=1 runs every Envoy without the filter, to tell the
    # filter's failures from the harness's (filter tests are expected to fail then).
    baseline = os.environ.get("MCP_GATEWAY_BASELINE") == "1"
    module = request.module.__name__.rsplit(".", 1)[-1]

    def make(upstreams: dict[str, Server], plugin_config: dict[str, Any] | str | None = None, *, wasm: bool = True, **kw: Any) -> Envoy:
        wasm = wasm and not baseline
        name = f"{module}-{len(started)}" + ("" if wasm else "-nowasm")
        ports = {key: server.port for key, server in upstreams.items()}
        instance = harness.start_envoy(proc_dir, name, upstreams=ports, plugin_config=plugin_config, wasm=wasm, **kw)
        started.append(instance)
        return instance

    yield make

    panics = []
    for instance in started:
        instance.stop()
        if "panicked" in instance.log():
            lines = [ln for ln in instance.log().splitlines() if "panicked" in ln]
            panics.append(f"{instance.proc.name}: " + "\n".join(lines[:5]))
    if panics:
        pytest.fail("a wasm VM panicked:\n" + "\n".join(panics), pytrace=False)
