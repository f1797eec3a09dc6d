"""Where users run Envoy (issue 8): docker compose, Istio, Envoy Gateway, and the release artifact.

No Docker engine, Kubernetes, Istio or Envoy Gateway runs here, so each target is checked as far as
a machine without them allows:

* docker-compose.yml against the Compose specification's JSON schema, every path and name it refers
  to, and the Envoy config its `setup` service renders: `envoy --mode validate`, then run for real
  with the Compose service names resolved to loopback, in front of the same two MCP servers;
* the Istio manifests against the CRDs' openAPIV3Schema (strictly: an unknown field fails, as Istio's
  own validation does), then rendered the way istiod and istio-agent apply them (ECDS resource with
  the module fetched and checksum-checked, filter inserted before the router, route patched to
  `cluster_header`, the stats bootstrap override passed with `--config-yaml`) and served through;
* the Envoy Gateway manifests for their shape and names (no Envoy Gateway CRD schema is available
  here), their plugin configuration through `envoy --mode validate`, and what Envoy Gateway would
  generate for them, the EnvoyPatchPolicy's JSON patch applied, served through;
* dist/mcp_gateway.wasm loaded by URL with its sha256, and refused with a wrong one.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import http.server
import json
import re
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import httpx
import jsonschema
import pytest
import yaml

import harness
from harness import RawSession, Server

pytestmark = pytest.mark.filter

REPO = harness.REPO
COMPOSE = REPO / "docker-compose.yml"
COMPOSE_ENVOY = REPO / "deploy" / "compose" / "envoy.yaml"
PY_CONTAINER_SERVER = REPO / "deploy" / "compose" / "py_server.py"
ISTIO = REPO / "deploy" / "istio"
EG_POLICY = REPO / "deploy" / "envoy-gateway" / "extension-policy.yaml"
DIST = REPO / "dist"
DIST_WASM = DIST / "mcp_gateway.wasm"

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
HCM_NAME = "envoy.filters.network.http_connection_manager"
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
JSON_HEADERS = {"Content-Type": "application/json", "Accept": harness.ACCEPT_BOTH}


def find_schemas() -> Path:
    """`shared/schemas` beside the repository (CI's layout), or beside one of its parents."""
    for parent in REPO.parents:
        candidate = parent / "shared" / "schemas"
        if candidate.is_dir():
            return candidate
    pytest.fail(f"no shared/schemas beside {REPO} or its parents: the compose and Istio schemas live there")


def load_docs(path: Path, values: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The YAML documents of a manifest, `${NAME}` placeholders filled in (as `envsubst` would)."""
    text = path.read_text()
    for name, value in (values or {}).items():
        text = text.replace("${" + name + "}", value)
    return [d for d in yaml.safe_load_all(text) if d is not None]


def strict(schema: Any) -> Any:
    """A CRD schema that rejects unknown fields wherever it lists the known ones (except where it
    preserves unknown fields on purpose, as for `pluginConfig` and patch values): Istio's webhook
    decodes specs into protos that reject unknown fields, so a misspelt field fails there too."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema and schema.get("type") == "object":
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def crd_errors(crd: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    """What is wrong with `doc` by the CRD: group/version/kind, then the served version's schema."""
    group, _, version = doc["apiVersion"].rpartition("/")
    if group != crd["spec"]["group"] or doc["kind"] != crd["spec"]["names"]["kind"]:
        return [f"{doc['apiVersion']} {doc['kind']} is not {crd['spec']['group']} {crd['spec']['names']['kind']}"]
    served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    if version not in served:
        return [f"version {version} is not served (served: {sorted(served)})"]
    schema = strict(served[version]["schema"]["openAPIV3Schema"])
    # The CRD schema covers spec/status; metadata is Kubernetes' own.
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(body)]
    if not doc.get("metadata", {}).get("name") or not doc["metadata"].get("namespace"):
        errors.append("metadata needs a name and a namespace")
    return errors


def http_filters(listener: dict[str, Any]) -> list[dict[str, Any]]:
    return listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]


def free_address() -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": harness.free_port()}}


def port_of(address: dict[str, Any]) -> int:
    return address["socket_address"]["port_value"]


def static_cluster(name: str, port: int, host: str = "127.0.0.1", dns: bool = False) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STRICT_DNS" if dns else "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}]},
    }
    if dns:
        cluster["dns_lookup_family"] = "V4_ONLY"
    return cluster


def mcp_listener(name: str, filters: list[dict[str, Any]], route_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "address": free_address(),
        "per_connection_buffer_limit_bytes": 4194304,
        "filter_chains": [{"filters": [{"name": HCM_NAME, "typed_config": {
            "@type": HCM_TYPE, "stat_prefix": name, "stream_idle_timeout": "3600s",
            "route_config": route_config, "http_filters": filters}}]}],
    }


def wasm_filter(plugin: dict[str, Any] | str, code: dict[str, Any], *, vm_id: str = "mcp_gateway") -> dict[str, Any]:
    return {"name": "envoy.filters.http.wasm", "typed_config": {"@type": WASM_TYPE, "config": {
        "name": "mcp_gateway", "root_id": "mcp_gateway", "allow_on_headers_stop_iteration": True,
        "configuration": {"@type": STRING_VALUE, "value": plugin if isinstance(plugin, str) else json.dumps(plugin)},
        "vm_config": {"vm_id": vm_id, "runtime": "envoy.wasm.runtime.v8", "code": code}}}}


def start_envoy(workdir: Path, name: str, config: dict[str, Any], listener: str, extra_args: tuple[str, ...] = ()) -> harness.Envoy:
    ports = {ln["name"]: port_of(ln["address"]) for ln in config["static_resources"]["listeners"]}
    return harness.Envoy(workdir, config, ports[listener], port_of(config["admin"]["address"]), workdir / f"{name}-access.log", name, extra_args=extra_args).start()


def rejected_with(resp: httpx.Response, status: int, code: int) -> bool:
    """Whether the filter (not an upstream) answered with this HTTP status and JSON-RPC error."""
    return resp.status_code == status and resp.json().get("error", {}).get("code") == code


class WasmOrigin:
    """A local HTTP server for a directory: where Envoy, istio-agent or Envoy Gateway would download
    the module from. Records the paths it served."""

    def __init__(self, directory: Path) -> None:
        served = self.served = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                served.append(self.path)
                super().do_GET()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> "WasmOrigin":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schemas() -> Path:
    return find_schemas()


@pytest.fixture(scope="module")
def dist_sha256() -> str:
    """The artifact's checksum, from its .sha256 file (checked against the file in a test)."""
    if not DIST_WASM.exists():
        pytest.fail(f"{DIST_WASM} is missing: run `make dist` (`make test` does)")
    return (DIST / "mcp_gateway.wasm.sha256").read_text().split()[0]


@pytest.fixture(scope="module")
def origin() -> Iterator[WasmOrigin]:
    with WasmOrigin(DIST) as server:
        yield server


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def start_container_py_server(tmp: Path, allowed_hosts: str) -> Server:
    """deploy/compose/py_server.py, as the `py` service runs it, but on a loopback port."""
    port = harness.free_port()
    env = harness.minimal_env(HOST="127.0.0.1", PORT=str(port), ALLOWED_HOSTS=allowed_hosts)
    proc = harness.Proc("py-container-server", [sys.executable, str(PY_CONTAINER_SERVER)], tmp / f"py-container-{port}.log", env=env, cwd=tmp).start()
    harness.wait_for_port(proc, port)
    return Server("py-container", port, proc)


@pytest.fixture(scope="module")
def compose_py_server(proc_dir: Path, compose: dict[str, Any]) -> Iterator[Server]:
    """The Python server with exactly the Host allow-list docker-compose.yml gives the `py` service."""
    server = start_container_py_server(proc_dir, compose["services"]["py"]["environment"]["ALLOWED_HOSTS"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def istio_py_server(proc_dir: Path) -> Iterator[Server]:
    """The Python server as a mesh would run it: its service name for the gateway's own calls, the
    public name on calls the gateway routes (they keep the client's Host)."""
    server = start_container_py_server(proc_dir, "py.mcp.svc.cluster.local:*,mcp.example.com")
    yield server
    server.stop()


# --- docker compose ------------------------------------------------------------------------


def test_compose_file_is_valid_by_the_compose_specification(schemas: Path, compose: dict[str, Any]) -> None:
    schema = json.loads((schemas / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    assert [e.message for e in validator.iter_errors(compose)] == []
    broken = copy.deepcopy(compose)
    broken["services"]["envoy"]["depends_on"]["setup"]["condition"] = "service_finished"
    assert list(validator.iter_errors(broken)), "the schema must catch a wrong depends_on condition"


def compose_default(value: str) -> str:
    """`${VAR:-default}` as Compose expands it with VAR unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_compose_refers_only_to_what_exists(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"setup", "everything", "py", "envoy"}
    assert services["envoy"]["image"] == "envoyproxy/envoy:v1.40.0"
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
        mounts: dict[str, Path] = {}
        named: list[str] = []
        for volume in service.get("volumes", []):
            if isinstance(volume, str):
                source, target, *_ = volume.split(":")
            else:
                source, target = compose_default(volume["source"]), volume["target"]
            if source.startswith("."):
                path = (REPO / source).resolve()
                assert path.exists(), f"{name}: bind mount {source} does not exist (run `make build` for the wasm)"
                mounts[target] = path
            else:
                assert source in compose.get("volumes", {}), f"{name}: volume {source} is not declared"
                named.append(target)
        # Compose would expand a `$` in a command; none is meant to be.
        command = service.get("command", [])
        words = command if isinstance(command, list) else command.split()
        assert not any("$" in w for w in words), f"{name}: `$` in the command"
        # Every repository file a command names is mounted where the command looks for it.
        workdir = service.get("working_dir", "/")
        for word in " ".join(words).split():
            if not re.fullmatch(r"[\w./-]+\.(py|yaml|txt|rego)", word):
                continue
            in_container = word if word.startswith("/") else f"{workdir.rstrip('/')}/{word}"
            if any(in_container.startswith(t.rstrip("/") + "/") for t in named):
                continue  # written by the setup service, not taken from the repository
            hits = [(t, p) for t, p in mounts.items() if in_container == t or in_container.startswith(t.rstrip("/") + "/")]
            assert hits, f"{name}: {word} is not under any mount"
            target, path = max(hits, key=lambda h: len(h[0]))
            assert (path / in_container[len(target):].lstrip("/")).is_file(), f"{name}: {word} does not exist in the repository"
    # The config the setup service writes is the one Envoy reads.
    assert "/config" in " ".join(services["setup"]["command"]) and "gateway-config:/config" in services["setup"]["volumes"]
    assert "gateway-config:/etc/mcp-gateway:ro" in services["envoy"]["volumes"]
    assert services["envoy"]["command"][:3] == ["envoy", "-c", "/etc/mcp-gateway/envoy.yaml"]
    assert services["envoy"]["depends_on"]["setup"] == {"condition": "service_completed_successfully"}
    # Only the gateway is reachable from the host, and only on its loopback.
    assert all(p.startswith("127.0.0.1:") for p in services["envoy"]["ports"])
    assert not any("ports" in s for n, s in services.items() if n != "envoy")


def demo_values() -> dict[str, str]:
    """Test values for the templates' placeholders (scripts/demo_setup.py makes real ones)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    public = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    return {
        "${SESSION_KEY}": harness.session_key(),
        "${DEMO_JWKS}": json.dumps({"keys": [public]}),
        "${DEMO_POLICY}": json.dumps((REPO / "policies" / "demo.rego").read_text()),
    }


def filled(path: Path, values: dict[str, str]) -> dict[str, Any]:
    text = path.read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return yaml.safe_load(text)


def test_compose_envoy_config_is_the_demo_but_for_what_containers_need() -> None:
    """deploy/compose/envoy.yaml differs from envoy/demo.yaml only in what its header lists, so the
    two cannot drift apart."""
    values = demo_values()
    demo, compose_envoy = filled(REPO / "envoy" / "demo.yaml", values), filled(COMPOSE_ENVOY, values)
    expected = copy.deepcopy(demo)
    expected["admin"]["address"]["socket_address"]["address"] = "0.0.0.0"
    listener = expected["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["address"] = "0.0.0.0"
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    log = hcm["access_log"][0]
    log["name"] = "envoy.access_loggers.stdout"
    log["typed_config"] = {"@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog", "log_format": log["typed_config"]["log_format"]}
    wasm = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.wasm")["typed_config"]["config"]
    wasm["vm_config"]["code"]["local"]["filename"] = "/opt/mcp-gateway/mcp_gateway.wasm"
    plugin = json.loads(wasm["configuration"]["value"])
    for server in plugin["servers"]:
        server["authority"] = {"everything": "everything:3001", "py": "py:3002"}[server["name"]]
    for cluster in expected["static_resources"]["clusters"]:
        cluster["type"] = "STRICT_DNS"
        cluster["dns_lookup_family"] = "V4_ONLY"
        cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["address"] = cluster["name"]
    compose_wasm = next(f for f in http_filters(compose_envoy["static_resources"]["listeners"][0]) if f["name"] == "envoy.filters.http.wasm")
    assert json.loads(compose_wasm["typed_config"]["config"]["configuration"]["value"]) == plugin
    wasm["configuration"]["value"] = compose_wasm["typed_config"]["config"]["configuration"]["value"]
    assert compose_envoy == expected


def render_like_setup(out: Path) -> Path:
    """What the compose `setup` service runs, into `out`."""
    subprocess.run([sys.executable, str(REPO / "scripts" / "demo_setup.py"), str(out), "--template", "deploy/compose/envoy.yaml"], check=True, cwd=REPO)
    return out / "envoy.yaml"


def test_compose_envoy_config_rendered_by_the_setup_step_passes_envoy_validate(tmp_path: Path) -> None:
    rendered = render_like_setup(tmp_path)
    assert rendered.stat().st_mode & 0o077 == 0, "the rendered bootstrap holds keys: owner-only"
    assert {p.name for p in (tmp_path / "tokens").iterdir()} == {"admin.jwt", "reader.jwt"}
    text = rendered.read_text()
    assert "${" not in text
    # The only change: the wasm at its path here instead of the container's mount. The Compose
    # service names stay: validation does not resolve STRICT_DNS hosts.
    local = tmp_path / "local.yaml"
    local.write_text(text.replace("/opt/mcp-gateway/mcp_gateway.wasm", str(harness.WASM)))
    result = harness.validate_bootstrap(local)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_stack_serves_the_demo_with_service_names_resolved_to_loopback(
    tmp_path: Path, everything_server: Server, compose_py_server: Server
) -> None:
    """The setup step's config, run by the real Envoy, with the Compose service names pointing at
    loopback (`localhost`, still resolved by STRICT_DNS) and the servers on their ports: the
    gateway's own calls carry `everything:3001` / `py:3002`, which the Python server's Compose
    allow-list accepts."""
    config = yaml.safe_load(render_like_setup(tmp_path).read_text())
    tokens = {role: (tmp_path / "tokens" / f"{role}.jwt").read_text().strip() for role in ("admin", "reader")}
    config["admin"]["address"] = free_address()
    listener = config["static_resources"]["listeners"][0]
    listener["address"] = free_address()
    for f in http_filters(listener):
        if f["name"] == "envoy.filters.http.wasm":
            f["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = str(harness.WASM)
    ports = {"everything": everything_server.port, "py": compose_py_server.port}
    for cluster in config["static_resources"]["clusters"]:
        assert cluster["type"] == "STRICT_DNS"
        address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        assert address["address"] == cluster["name"]
        address.update(address="localhost", port_value=ports[cluster["name"]])
    gateway = start_envoy(tmp_path, "compose", config, "mcp")
    try:
        with httpx.Client(timeout=20) as client:
            session = RawSession(client, gateway.base_url + "/mcp", extra_headers={"Authorization": f"Bearer {tokens['admin']}"})
            session.initialize()
            _, tools = session.request("tools/list")
            _, py = session.request("tools/call", {"name": "py__add", "arguments": {"a": 2, "b": 40}})
            _, everything = session.request("tools/call", {"name": "everything__echo", "arguments": {"message": "compose"}})
            reader = RawSession(client, gateway.base_url + "/mcp", extra_headers={"Authorization": f"Bearer {tokens['reader']}"})
            reader.initialize()
            _, denied = reader.request("tools/call", {"name": "py__add", "arguments": {"a": 1, "b": 2}})
        names = {t["name"] for t in tools["result"]["tools"]}
        assert {"everything__echo", "py__add"} <= names and "everything__get-env" not in names
        assert py["result"]["structuredContent"] == {"result": 42}
        assert everything["result"]["content"][0]["text"] == "Echo: compose"
        assert denied["error"]["data"]["reason"] == "tool_not_allowed"
        # The JSON access log goes to Envoy's stdout (`docker compose logs envoy`).
        harness.wait_until(lambda: '"mcp_name":"py__add"' in gateway.log().replace(" ", ""), 10, "the access log line on stdout")
    finally:
        gateway.stop()
    assert "panicked" not in gateway.log()


# --- Istio -----------------------------------------------------------------------------------


ISTIO_CRDS = {"WasmPlugin": "istio-WasmPlugin-crd.yaml", "EnvoyFilter": "istio-EnvoyFilter-crd.yaml"}


def istio_values(url: str = "https://example.com/mcp_gateway.wasm", sha256: str = "0" * 64) -> dict[str, str]:
    return {"WASM_URL": url, "WASM_SHA256": sha256, "SESSION_KEY": harness.session_key()}


def istio_docs(values: dict[str, str]) -> list[dict[str, Any]]:
    return [d for name in ("wasmplugin.yaml", "envoyfilter.yaml") for d in load_docs(ISTIO / name, values)]


def test_every_istio_manifest_is_valid_by_its_crd(schemas: Path) -> None:
    crds = {kind: yaml.safe_load((schemas / file).read_text()) for kind, file in ISTIO_CRDS.items()}
    docs = istio_docs(istio_values())
    assert sorted((d["kind"], d["metadata"]["namespace"]) for d in docs) == [
        ("EnvoyFilter", "istio-system"), ("EnvoyFilter", "mcp"), ("WasmPlugin", "istio-system"), ("WasmPlugin", "mcp")]
    for doc in docs:
        assert crd_errors(crds[doc["kind"]], doc) == [], f"{doc['kind']} {doc['metadata']['namespace']}/{doc['metadata']['name']}"
        if doc["kind"] == "WasmPlugin":
            # The CRD's CEL rule (jsonschema cannot evaluate CEL): the URL scheme.
            assert doc["spec"]["url"].split("://")[0] in ("http", "https", "oci", "file")


def test_istio_crd_check_catches_a_misspelt_or_misplaced_field(schemas: Path) -> None:
    """The check above can fail: a typo in a WasmPlugin field, an unknown patch operation, a
    checksum that is not one."""
    crds = {kind: yaml.safe_load((schemas / file).read_text()) for kind, file in ISTIO_CRDS.items()}
    plugin, _, envoy_filter, _ = istio_docs(istio_values())
    typo = copy.deepcopy(plugin)
    typo["spec"]["pluginConfg"] = typo["spec"].pop("pluginConfig")
    bad_op = copy.deepcopy(envoy_filter)
    bad_op["spec"]["configPatches"][0]["patch"]["operation"] = "UPSERT"
    bad_sha = copy.deepcopy(plugin)
    bad_sha["spec"]["sha256"] = "not-a-checksum"
    for kind, doc in (("WasmPlugin", typo), ("EnvoyFilter", bad_op), ("WasmPlugin", bad_sha)):
        assert crd_errors(crds[kind], doc), doc["spec"]


def test_istio_manifests_agree_on_names_routes_and_stats_rules() -> None:
    """The names that tie the Istio files together: the route the EnvoyFilter patches is the
    VirtualService's, the filter is inserted by the name its ECDS resource has, the gateway's
    clusters are named as Istio names them, and the stats rules are envoy/demo.yaml's."""
    gateway_filter, sidecar_filter = load_docs(ISTIO / "envoyfilter.yaml", istio_values())
    istio_gateway, virtual_service = load_docs(ISTIO / "routing.yaml")
    for envoy_filter in (gateway_filter, sidecar_filter):
        added = [p["patch"]["value"]["name"] for p in envoy_filter["spec"]["configPatches"] if p["applyTo"] == "EXTENSION_CONFIG"]
        inserted = {p["patch"]["value"]["name"] for p in envoy_filter["spec"]["configPatches"] if p["applyTo"] == "HTTP_FILTER"}
        assert inserted == set(added) and added[0].startswith(envoy_filter["metadata"]["namespace"] + "/")
    assert gateway_filter["spec"]["workloadSelector"]["labels"] == istio_gateway["spec"]["selector"]
    (route_patch,) = [p for p in gateway_filter["spec"]["configPatches"] if p["applyTo"] == "HTTP_ROUTE"]
    vhost = route_patch["match"]["routeConfiguration"]["vhost"]
    (server,) = istio_gateway["spec"]["servers"]
    assert vhost["name"] == f"{server['hosts'][0]}:{server['port']['number']}"
    assert vhost["route"]["name"] in {r["name"] for r in virtual_service["spec"]["http"]}
    plugin = json.loads(gateway_filter["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]["configuration"]["value"])
    assert route_patch["patch"]["value"]["route"]["cluster_header"] == plugin.get("federation", {}).get("clusterHeader", "x-mcp-cluster")
    for s in plugin["servers"]:
        host, port = s["authority"].rsplit(":", 1)
        assert s["cluster"] == f"outbound|{port}||{host}"
    demo_stats = yaml.safe_load((REPO / "envoy" / "demo.yaml").read_text().replace("${DEMO_JWKS}", "{}").replace("${DEMO_POLICY}", '""'))["stats_config"]
    for config_map in load_docs(ISTIO / "stats-bootstrap.yaml"):
        assert config_map["kind"] == "ConfigMap" and config_map["metadata"]["name"] == "mcp-gateway-stats"
        assert json.loads(config_map["data"]["custom_bootstrap.json"]) == {"stats_config": demo_stats}
    # Same plugin configuration whichever of the two forms is applied.
    gateway_plugin, sidecar_plugin = load_docs(ISTIO / "wasmplugin.yaml", {**istio_values(), "SESSION_KEY": plugin["federation"]["sessionKey"]})
    assert gateway_plugin["spec"]["pluginConfig"] == plugin
    sidecar_config = sidecar_filter["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]["configuration"]["value"]
    assert sidecar_plugin["spec"]["pluginConfig"] == json.loads(sidecar_config)


# A faithful-enough Istio: what istiod and istio-agent make of the manifests, for a proxy that has
# the listeners and clusters Istio would generate for routing.yaml and two MCP services.

# Istio's own bootstrap stats settings (istio/istio tools/packaging/common/envoy_bootstrap.json and
# pkg/bootstrap/config.go's required inclusion prefixes): a subset of its tags, and its inclusion
# list, which decides which stats exist at all.
ISTIO_STATS_CONFIG = {
    "use_all_default_tags": False,
    "stats_tags": [
        {"tag_name": "cluster_name", "regex": "^cluster(\\.(.+);)"},
        {"tag_name": "response_code", "regex": "_rq(_(\\d{3}))$"},
        {"tag_name": "response_code_class", "regex": "_rq(_(\\dxx))$"},
        {"tag_name": "cache", "regex": "(cache\\.(.+?)\\.)"},
        {"tag_name": "component", "regex": "(component\\.(.+?)\\.)"},
        {"tag_name": "tag", "regex": "(tag\\.(.+?);\\.)"},
        {"tag_name": "wasm_filter", "regex": "(wasm_filter\\.(.+?)\\.)"},
    ],
    "stats_matcher": {"inclusion_list": {"patterns": [
        {"prefix": p} for p in ("reporter=", "cluster_manager", "listener_manager", "server", "cluster.xds-grpc", "wasm", "component", "istio")]}},
}
# RouteAction's cluster_specifier oneof: proto merge replaces the member that is set.
ROUTE_ONEOF = {"cluster", "cluster_header", "weighted_clusters", "cluster_specifier_plugin", "inline_cluster_specifier_plugin"}


def proto_merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    """Istio's MERGE (proto merge): messages merge field by field, repeated fields append, scalars
    and well-known value types replace, and setting one member of a oneof clears the others."""
    for key, value in src.items():
        if key in ROUTE_ONEOF:
            for other in ROUTE_ONEOF - {key}:
                dst.pop(other, None)
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            proto_merge(dst[key], value)
        elif isinstance(value, list) and isinstance(dst.get(key), list):
            dst[key] = dst[key] + copy.deepcopy(value)
        else:
            dst[key] = copy.deepcopy(value)


def agent_fetch(extension_config: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """What istio-agent does to an ECDS Wasm resource: download `remote`, check its sha256, and
    hand Envoy a local file instead."""
    resource = copy.deepcopy(extension_config)
    code = resource["typed_config"]["config"]["vm_config"]["code"]
    remote = code.pop("remote")
    with urllib.request.urlopen(remote["http_uri"]["uri"], timeout=10) as resp:
        module = resp.read()
    digest = hashlib.sha256(module).hexdigest()
    assert digest == remote["sha256"], "istio-agent refuses a module whose checksum differs"
    path = workdir / f"{digest}.wasm"
    path.write_bytes(module)
    code["local"] = {"filename": str(path)}
    return resource


def ecds_file(workdir: Path, resource: dict[str, Any]) -> dict[str, Any]:
    """Serve one ECDS resource from a file, where istiod would serve it over ADS."""
    path = workdir / (re.sub(r"[^\w.-]", "_", resource["name"]) + ".ecds.json")
    path.write_text(json.dumps({"resources": [{"@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig", **resource}]}))
    return {"path_config_source": {"path": str(path)}, "resource_api_version": "V3"}


def apply_envoy_filter(envoy_filter: dict[str, Any], listeners: list[tuple[dict[str, Any], str, int]], extensions: dict[str, dict[str, Any]]) -> list[str]:
    """Apply an EnvoyFilter's patches the way istiod does, for the operations these manifests use;
    returns what was patched. `listeners`: (listener, Istio context, port Istio matches
    `portNumber` against). A patch that matches nothing changes nothing, as in Istio."""
    applied = []
    for patch in envoy_filter["spec"]["configPatches"]:
        operation, value, match = patch["patch"]["operation"], patch["patch"]["value"], patch.get("match", {})
        matched = [(ln, ctx, port) for ln, ctx, port in listeners if match.get("context", "ANY") in ("ANY", ctx)]
        if patch["applyTo"] == "EXTENSION_CONFIG":
            # Istio applies EXTENSION_CONFIG patches with ADD only (envoyfilter/extension_configuration_patch.go).
            assert operation == "ADD"
            extensions[value["name"]] = value
            applied.append("EXTENSION_CONFIG")
        elif patch["applyTo"] == "HTTP_FILTER":
            assert operation == "INSERT_BEFORE"
            where = match["listener"]
            sub_filter = where["filterChain"]["filter"]["subFilter"]["name"]
            for listener, _, port in matched:
                if where.get("portNumber", port) != port:
                    continue
                filters = http_filters(listener)
                index = next(i for i, f in enumerate(filters) if f["name"] == sub_filter)
                filters.insert(index, copy.deepcopy(value))
                applied.append(f"HTTP_FILTER {listener['name']}")
        elif patch["applyTo"] == "HTTP_ROUTE":
            assert operation == "MERGE"
            vhost_match = match["routeConfiguration"]["vhost"]
            for listener, _, _ in matched:
                for vhost in listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]:
                    if vhost["name"] != vhost_match["name"]:
                        continue
                    for route in vhost["routes"]:
                        if route.get("name") == vhost_match["route"]["name"]:
                            proto_merge(route, value)
                            applied.append(f"HTTP_ROUTE {listener['name']}")
        else:
            raise AssertionError(f"unexpected patch {patch['applyTo']}")
    return applied


def resolve_ecds(listeners: list[dict[str, Any]], extensions: dict[str, dict[str, Any]], workdir: Path) -> None:
    """Every `config_discovery` over ADS gets its resource (fetched like istio-agent) from a file."""
    for listener in listeners:
        for f in http_filters(listener):
            discovery = f.get("config_discovery")
            if discovery is not None and "ads" in discovery["config_source"]:
                assert f["name"] in extensions, f"no ECDS resource named {f['name']}"
                discovery["config_source"] = ecds_file(workdir, agent_fetch(extensions[f["name"]], workdir))


def wasm_plugin_extension(plugin: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The ECDS resource and filter name istiod makes of a WasmPlugin (pilot/pkg/model/extensions.go):
    no `allow_on_headers_stop_iteration`, since WasmPlugin has no field for it."""
    spec, meta = plugin["spec"], plugin["metadata"]
    name = f"extensions.istio.io/wasmplugin/{meta['namespace']}.{meta['name']}"
    config = {
        "name": f"{meta['namespace']}.{meta['name']}",
        "root_id": spec["pluginName"],
        "configuration": {"@type": STRING_VALUE, "value": json.dumps(spec["pluginConfig"])},
        "vm_config": {"runtime": "envoy.wasm.runtime.v8",
                      "code": {"remote": {"http_uri": {"uri": spec["url"], "cluster": "_", "timeout": "30s"}, "sha256": spec["sha256"]}},
                      "environment_variables": {"key_values": {"ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION": "1"}}},
        "failure_policy": {"FAIL_CLOSE": "FAIL_CLOSED", "FAIL_OPEN": "FAIL_OPEN"}[spec["failStrategy"]],
    }
    return name, {"name": name, "typed_config": {"@type": WASM_TYPE, "config": config}}


@pytest.fixture(scope="module")
def istio_proxy(proc_dir: Path, origin: WasmOrigin, dist_sha256: str, everything_server: Server, istio_py_server: Server) -> Iterator[tuple[harness.Envoy, dict[str, int]]]:
    """One Envoy standing in for three Istio proxies, a listener each: the ingress gateway with
    envoyfilter.yaml's gateway patches (listener `gateway`), the `everything` server's sidecar with
    its inbound patches (`sidecar`), and the ingress gateway as the WasmPlugin alone would set it
    up (`wasmplugin`). Modules come from dist/ over HTTP, as istio-agent fetches them; the stats
    rules come from stats-bootstrap.yaml through `--config-yaml`, as istio-agent passes them."""
    workdir = proc_dir / "istio"
    workdir.mkdir(exist_ok=True)
    values = istio_values(origin.url("mcp_gateway.wasm"), dist_sha256)
    gateway_filter, sidecar_filter = load_docs(ISTIO / "envoyfilter.yaml", values)
    gateway_plugin, _ = load_docs(ISTIO / "wasmplugin.yaml", values)
    _, virtual_service = load_docs(ISTIO / "routing.yaml")
    everything_cluster, py_cluster = "outbound|3001||everything.mcp.svc.cluster.local", "outbound|3002||py.mcp.svc.cluster.local"
    (vs_route,) = virtual_service["spec"]["http"]
    retry = vs_route["retries"]

    def gateway_routes() -> dict[str, Any]:
        # What istiod makes of routing.yaml for the gateway's port 80.
        return {"name": "http.8080", "virtual_hosts": [{"name": "mcp.example.com:80", "domains": ["mcp.example.com", "mcp.example.com:*"], "routes": [{
            "name": vs_route["name"], "match": {"prefix": vs_route["match"][0]["uri"]["prefix"]},
            "route": {"cluster": everything_cluster, "timeout": vs_route["timeout"],
                      "retry_policy": {"retry_on": retry["retryOn"], "num_retries": retry["attempts"]}}}]}]}

    istio_chain = [
        {"name": "envoy.filters.http.cors", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
        {"name": "envoy.filters.http.fault", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
        ROUTER,
    ]
    gateway = mcp_listener("gateway", copy.deepcopy(istio_chain), gateway_routes())
    sidecar = mcp_listener("sidecar", copy.deepcopy(istio_chain), {"name": "inbound|3001||", "virtual_hosts": [{"name": "inbound|http|3001", "domains": ["*"], "routes": [{
        "name": "default", "match": {"prefix": "/"}, "route": {"cluster": "inbound|3001||", "timeout": "0s"}}]}]})
    plugin_name, plugin_resource = wasm_plugin_extension(gateway_plugin)
    # phase STATS: before Istio's stats filter, which is last before the router in a gateway.
    wasmplugin = mcp_listener("wasmplugin", [*copy.deepcopy(istio_chain[:-1]), {"name": plugin_name, "config_discovery": {
        "config_source": {"ads": {}, "initial_fetch_timeout": "0s"}, "type_urls": [WASM_TYPE]}}, ROUTER], gateway_routes())

    extensions: dict[str, dict[str, Any]] = {plugin_name: plugin_resource}
    proxies = [(gateway, "GATEWAY", 8080), (sidecar, "SIDECAR_INBOUND", 3001), (wasmplugin, "WASMPLUGIN_ONLY", 0)]
    assert apply_envoy_filter(gateway_filter, proxies, extensions) == ["EXTENSION_CONFIG", "HTTP_FILTER gateway", "HTTP_ROUTE gateway"]
    assert apply_envoy_filter(sidecar_filter, proxies, extensions) == ["EXTENSION_CONFIG", "HTTP_FILTER sidecar"]
    route = gateway["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    assert route["cluster_header"] == "x-mcp-cluster" and "cluster" not in route
    listeners = [gateway, sidecar, wasmplugin]
    resolve_ecds(listeners, extensions, workdir)
    config = {
        "node": {"id": "router~10.0.0.1~istio-ingressgateway.istio-system~istio-system.svc.cluster.local", "cluster": "istio-ingressgateway.istio-system"},
        "admin": {"address": free_address()},
        "stats_config": copy.deepcopy(ISTIO_STATS_CONFIG),
        "static_resources": {"listeners": listeners, "clusters": [
            static_cluster(everything_cluster, everything_server.port),
            static_cluster(py_cluster, istio_py_server.port),
            static_cluster("inbound|3001||", everything_server.port),
        ]},
    }
    (stats_override, _) = load_docs(ISTIO / "stats-bootstrap.yaml")
    override = json.dumps(json.loads(stats_override["data"]["custom_bootstrap.json"]))
    validation = subprocess.run([harness.envoy_binary(), "--mode", "validate", "-c", str(write_yaml(workdir / "istio-validate.yaml", config)),
                                 "--config-yaml", override, "--disable-hot-restart"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert validation.returncode == 0, validation.stdout + validation.stderr
    envoy = start_envoy(workdir, "istio", config, "gateway", extra_args=("--config-yaml", override))
    ports = {ln["name"]: port_of(ln["address"]) for ln in listeners}
    yield envoy, ports
    envoy.stop()
    assert "panicked" not in envoy.log()


def write_yaml(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_istio_gateway_rendered_from_the_envoyfilter_federates_both_servers_with_labelled_metrics(
    istio_proxy: tuple[harness.Envoy, dict[str, int]], origin: WasmOrigin
) -> None:
    envoy, ports = istio_proxy
    assert "/mcp_gateway.wasm" in origin.served
    url = f"http://127.0.0.1:{ports['gateway']}/mcp"
    with httpx.Client(timeout=20) as client:
        session = RawSession(client, url, extra_headers={"Host": "mcp.example.com"})
        session.initialize()
        _, tools = session.request("tools/list")
        # Routed by the patched route: x-mcp-cluster names Istio's cluster for py.
        _, added = session.request("tools/call", {"name": "py__add", "arguments": {"a": 2, "b": 40}})
        _, echoed = session.request("tools/call", {"name": "everything__echo", "arguments": {"message": "mesh"}})
        # The filter checks the public name: any other Host is refused.
        elsewhere = client.post(url, json=harness.initialize_body(), headers={**JSON_HEADERS, "Host": "elsewhere.example.com"})
    names = {t["name"] for t in tools["result"]["tools"]}
    assert {"everything__echo", "py__add"} <= names and "everything__get-env" not in names
    assert added["result"]["structuredContent"] == {"result": 42}
    assert echoed["result"]["content"][0]["text"] == "Echo: mesh"
    assert rejected_with(elsewhere, 403, -32600)
    prometheus = envoy.prometheus().splitlines()
    assert any(line.startswith('mcp_requests_total{method="tools_call",outcome="ok"}') for line in prometheus), "\n".join(l for l in prometheus if "mcp" in l)
    assert any(line.startswith('mcp_rejected_total{reason="host"}') for line in prometheus)


def test_istio_sidecar_rendered_from_the_envoyfilter_checks_traffic_to_its_server(istio_proxy: tuple[harness.Envoy, dict[str, int]]) -> None:
    _, ports = istio_proxy
    url = f"http://127.0.0.1:{ports['sidecar']}/mcp"
    with httpx.Client(timeout=20) as client:
        session = RawSession(client, url, extra_headers={"Host": "everything.mcp.svc.cluster.local:3001"})
        _, reply = session.initialize()
        malformed = client.post(url, content=b"{not json", headers={**JSON_HEADERS, "Host": "everything.mcp.svc.cluster.local:3001"})
        foreign = client.post(url, json=harness.initialize_body(), headers={**JSON_HEADERS, "Host": "attacker.example:3001"})
    # No federation on a sidecar: the server's own session, not a sealed gateway session (`g1.`).
    assert session.session_id and not session.session_id.startswith("g1.")
    assert "result" in reply
    assert rejected_with(malformed, 400, -32700)
    assert rejected_with(foreign, 403, -32600)


def test_istio_wasmplugin_alone_stalls_mcp_posts_for_want_of_allow_on_headers_stop_iteration(istio_proxy: tuple[harness.Envoy, dict[str, int]]) -> None:
    """Why envoyfilter.yaml and not wasmplugin.yaml: the same module and configuration as Istio
    builds them from the WasmPlugin load and validate, but without the setting a POST never
    reaches the body callback and hangs, while a request the filter does not pause passes."""
    _, ports = istio_proxy
    url = f"http://127.0.0.1:{ports['wasmplugin']}/mcp"
    with httpx.Client(timeout=httpx.Timeout(3.0)) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post(url, json=harness.initialize_body(), headers={**JSON_HEADERS, "Host": "mcp.example.com"})
        not_paused = client.put(url, headers={"Host": "mcp.example.com"})
    assert rejected_with(not_paused, 405, -32600), "the plugin is loaded and answering"


# --- Envoy Gateway ---------------------------------------------------------------------------


def test_envoy_gateway_policies_attach_the_filter_by_url_with_checksum_and_the_setting_it_needs() -> None:
    """No Envoy Gateway CRD schema is available here: the shape is checked by hand, the names that
    tie the resources together are checked against how Envoy Gateway names what it generates."""
    docs = {d["kind"]: d for d in load_docs(EG_POLICY, {"WASM_URL": "https://example.com/mcp_gateway.wasm", "WASM_SHA256": "0" * 64})}
    assert set(docs) == {"Gateway", "HTTPRoute", "EnvoyExtensionPolicy", "EnvoyPatchPolicy", "ClientTrafficPolicy"}
    for kind in ("EnvoyExtensionPolicy", "EnvoyPatchPolicy", "ClientTrafficPolicy"):
        assert docs[kind]["apiVersion"] == "gateway.envoyproxy.io/v1alpha1"
    namespaces = {d["metadata"]["namespace"] for d in docs.values()}
    assert len(namespaces) == 1, "an EnvoyPatchPolicy acts only on a Gateway in its own namespace"
    (namespace,) = namespaces
    extension = docs["EnvoyExtensionPolicy"]["spec"]
    assert extension["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": docs["HTTPRoute"]["metadata"]["name"]}]
    (wasm,) = extension["wasm"]
    assert wasm["rootID"] == "mcp_gateway" and wasm["failOpen"] is False
    assert wasm["code"]["type"] == "HTTP" and re.fullmatch(r"[a-f0-9]{64}", wasm["code"]["http"]["sha256"])
    patch = docs["EnvoyPatchPolicy"]["spec"]
    assert patch["targetRef"]["name"] == docs["Gateway"]["metadata"]["name"] and patch["type"] == "JSONPatch"
    (json_patch,) = patch["jsonPatches"]
    generated = f"envoy.filters.http.wasm/envoyextensionpolicy/{namespace}/{docs['EnvoyExtensionPolicy']['metadata']['name']}/wasm/0"
    assert f"'{generated}'" in json_patch["operation"]["jsonPath"]
    assert json_patch["operation"]["path"] == "allow_on_headers_stop_iteration" and json_patch["operation"]["value"] is True
    assert docs["ClientTrafficPolicy"]["spec"]["connection"]["bufferLimit"] == "4Mi"


def test_envoy_gateway_plugin_configuration_is_accepted_by_the_filter(tmp_path: Path) -> None:
    """The `config` Envoy Gateway passes to the filter (as JSON), through `envoy --mode validate`,
    which runs the filter's configuration check."""
    docs = {d["kind"]: d for d in load_docs(EG_POLICY)}
    (wasm,) = docs["EnvoyExtensionPolicy"]["spec"]["wasm"]
    config = {
        "admin": {"address": free_address()},
        "static_resources": {
            "listeners": [mcp_listener("eg", [wasm_filter(wasm["config"], {"local": {"filename": str(harness.WASM)}}), ROUTER],
                                       {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]})],
            "clusters": [static_cluster("backend", harness.free_port())],
        },
    }
    result = harness.validate_bootstrap(write_yaml(tmp_path / "eg.yaml", config))
    assert result.returncode == 0, result.stdout + result.stderr
    # And the check can fail: a configuration the filter refuses fails validation.
    wasm_config = http_filters(config["static_resources"]["listeners"][0])[0]["typed_config"]["config"]
    wasm_config["configuration"]["value"] = json.dumps({**wasm["config"], "maxRequestBytes": 0})
    result = harness.validate_bootstrap(write_yaml(tmp_path / "eg-bad.yaml", config))
    assert result.returncode != 0 and "maxRequestBytes" in result.stdout + result.stderr


def json_path_add(document: Any, json_path: str, path: str, value: Any) -> int:
    """Envoy Gateway's JSON patch `add` at `jsonPath` + `path`, for the one jsonPath form used here:
    `..<list>[?(@.name == '<name>')]<.field>*`. Returns how many places were patched."""
    m = re.fullmatch(r"\.\.(\w+)\[\?\(@\.name == '([^']+)'\)\]((?:\.\w+)*)", json_path)
    assert m, f"unsupported jsonPath {json_path}"
    key, name, fields = m.group(1), m.group(2), [f for f in m.group(3).split(".") if f]
    hits = 0

    def walk(node: Any) -> None:
        nonlocal hits
        if isinstance(node, dict):
            for k, v in node.items():
                if k == key and isinstance(v, list):
                    for item in v:
                        if isinstance(item, dict) and item.get("name") == name:
                            target = item
                            for f in fields:
                                target = target[f]
                            target[path] = value
                            hits += 1
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(document)
    return hits


def test_envoy_gateway_rendering_with_the_patch_policy_serves_mcp_through_the_filter(
    tmp_path: Path, origin: WasmOrigin, dist_sha256: str, everything_server: Server
) -> None:
    """What Envoy Gateway generates for the HTTPRoute and the EnvoyExtensionPolicy
    (internal/xds/translator/wasm.go: the filter in the HCM disabled, enabled on the route, the
    module served to Envoy by URL with its checksum), the ClientTrafficPolicy's buffer limit, then
    the EnvoyPatchPolicy's JSON patch applied: the flag lands where Envoy reads it, and MCP traffic
    passes through the filter."""
    docs = {d["kind"]: d for d in load_docs(EG_POLICY, {"WASM_URL": origin.url("mcp_gateway.wasm"), "WASM_SHA256": dist_sha256})}
    extension, route = docs["EnvoyExtensionPolicy"], docs["HTTPRoute"]
    namespace, policy = extension["metadata"]["namespace"], extension["metadata"]["name"]
    (wasm,) = extension["spec"]["wasm"]
    ir_name = f"envoyextensionpolicy/{namespace}/{policy}/wasm/0"
    filter_name = f"envoy.filters.http.wasm/{ir_name}"
    cluster = f"httproute/{namespace}/{route['metadata']['name']}/rule/0"
    (rule,) = route["spec"]["rules"]
    eg_filter = {"name": filter_name, "disabled": True, "typed_config": {"@type": WASM_TYPE, "config": {
        "name": wasm["name"], "root_id": wasm["rootID"], "fail_open": wasm["failOpen"],
        "configuration": {"@type": STRING_VALUE, "value": json.dumps(wasm["config"])},
        "vm_config": {"vm_id": ir_name, "runtime": "envoy.wasm.runtime.v8", "code": {"remote": {
            "http_uri": {"uri": wasm["code"]["http"]["url"], "cluster": "wasm_cluster", "timeout": "10s"},
            "sha256": wasm["code"]["http"]["sha256"],
            "retry_policy": {"num_retries": 10, "retry_back_off": {"base_interval": "1s", "max_interval": "30s"}}}}}}}}
    routes = {"name": "http-80", "virtual_hosts": [{"name": "mcp_example_com", "domains": route["spec"]["hostnames"], "routes": [{
        "name": f"{cluster}/match/0/mcp_example_com",
        "match": {"path_separated_prefix": rule["matches"][0]["path"]["value"]},
        "route": {"cluster": cluster, "timeout": rule["timeouts"]["request"]},
        "typed_per_filter_config": {filter_name: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}}}}]}]}
    listener = mcp_listener("tcp-80", [eg_filter, ROUTER], routes)
    buffer = docs["ClientTrafficPolicy"]["spec"]["connection"]["bufferLimit"]
    listener["per_connection_buffer_limit_bytes"] = int(buffer.removesuffix("Mi")) * 1024 * 1024
    # The EnvoyPatchPolicy, applied to the listener it names.
    (json_patch,) = docs["EnvoyPatchPolicy"]["spec"]["jsonPatches"]
    assert json_patch["type"] == "type.googleapis.com/envoy.config.listener.v3.Listener" and json_patch["name"] == listener["name"]
    operation = json_patch["operation"]
    assert operation["op"] == "add"
    assert json_path_add(listener, operation["jsonPath"], operation["path"], operation["value"]) == 1
    assert eg_filter["typed_config"]["config"]["allow_on_headers_stop_iteration"] is True
    config = {
        "admin": {"address": free_address()},
        "static_resources": {"listeners": [listener], "clusters": [static_cluster(cluster, everything_server.port), static_cluster("wasm_cluster", origin.port)]},
    }
    result = harness.validate_bootstrap(write_yaml(tmp_path / "eg-validate.yaml", config))
    assert result.returncode == 0, result.stdout + result.stderr
    envoy = start_envoy(tmp_path, "envoy-gateway", config, "tcp-80")
    url = envoy.base_url + "/mcp"
    try:
        with httpx.Client(timeout=20) as client:
            session = RawSession(client, url, extra_headers={"Host": "mcp.example.com"})
            _, reply = session.initialize()
            _, echoed = session.request("tools/call", {"name": "echo", "arguments": {"message": "eg"}})
            malformed = client.post(url, content=b"[", headers={**JSON_HEADERS, "Host": "mcp.example.com"})
            big = client.post(url, json={**harness.rpc("tools/call", {"name": "echo", "arguments": {"message": "x" * 200_000}}), "id": 9},
                              headers=session.headers(Host="mcp.example.com"))
    finally:
        envoy.stop()
    assert "result" in reply and echoed["result"]["content"][0]["text"] == "Echo: eg"
    assert rejected_with(malformed, 400, -32700), "the filter, enabled on the route, answers malformed JSON"
    # Past Envoy Gateway's default 32 KiB buffer, within the filter's 1 MiB: the call goes through.
    assert big.status_code == 200, big.text[:300]
    assert "panicked" not in envoy.log()


# --- the release artifact --------------------------------------------------------------------


def test_dist_artifact_is_size_optimised_and_matches_its_sha256_file(dist_sha256: str) -> None:
    line = (DIST / "mcp_gateway.wasm.sha256").read_text()
    assert re.fullmatch(r"[a-f0-9]{64}  mcp_gateway\.wasm\n", line), "sha256sum format, so `sha256sum -c` checks it"
    assert hashlib.sha256(DIST_WASM.read_bytes()).hexdigest() == dist_sha256
    assert DIST_WASM.read_bytes()[:4] == b"\0asm"
    assert DIST_WASM.stat().st_size < harness.WASM.stat().st_size, "the dist profile optimises for size"


def remote_code(origin: WasmOrigin, sha256: str) -> dict[str, Any]:
    """`vm_config.code` loading the module by URL, checked against `sha256`, through a cluster."""
    return {"remote": {"http_uri": {"uri": origin.url("mcp_gateway.wasm"), "cluster": "wasm_origin", "timeout": "10s"}, "sha256": sha256}}


def by_url_bootstrap(origin: WasmOrigin, sha256: str, upstream: Server) -> dict[str, Any]:
    routes = {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "0s"}}]}]}
    return {
        "admin": {"address": free_address()},
        "static_resources": {
            "listeners": [mcp_listener("mcp", [wasm_filter({"mcpPaths": ["/mcp"]}, remote_code(origin, sha256)), ROUTER], routes)],
            "clusters": [static_cluster("upstream", upstream.port), static_cluster("wasm_origin", origin.port)],
        },
    }


def test_envoy_loads_the_dist_artifact_by_url_with_its_sha256_and_serves_through_it(
    tmp_path: Path, origin: WasmOrigin, dist_sha256: str, py_server: Server
) -> None:
    envoy = start_envoy(tmp_path, "dist-by-url", by_url_bootstrap(origin, dist_sha256, py_server), "mcp")
    try:
        with httpx.Client(timeout=20) as client:
            session = RawSession(client, envoy.base_url + "/mcp")
            _, reply = session.initialize()
            # The filter, not the server, answers malformed JSON: the module is running.
            malformed = client.post(envoy.base_url + "/mcp", content=b"{oops", headers=JSON_HEADERS)
    finally:
        envoy.stop()
    assert "/mcp_gateway.wasm" in origin.served
    assert reply["result"]["serverInfo"]["name"] == "py-test-server" and session.session_id
    assert rejected_with(malformed, 400, -32700)
    assert "panicked" not in envoy.log()


def test_envoy_refuses_the_dist_artifact_when_its_sha256_does_not_match(tmp_path: Path, origin: WasmOrigin, dist_sha256: str, py_server: Server) -> None:
    wrong = hashlib.sha256(b"not the module").hexdigest()
    assert wrong != dist_sha256
    served_before = len(origin.served)
    envoy = start_envoy(tmp_path, "dist-wrong-sha", by_url_bootstrap(origin, wrong, py_server), "mcp")
    try:
        harness.wait_until(lambda: "Plugin mcp_gateway failed to load" in envoy.log(), 20, "Envoy to refuse the module")
        with httpx.Client(timeout=10) as client:
            resp = client.post(envoy.base_url + "/mcp", json=harness.initialize_body(), headers=JSON_HEADERS)
    finally:
        envoy.stop()
    # It was downloaded (so the refusal is the checksum's, not a failed fetch) and never runs:
    # fail-closed, the request gets a 503 and never reaches the server.
    assert "/mcp_gateway.wasm" in origin.served[served_before:]
    assert resp.status_code == 503, resp.text
    assert "py-test-server" not in resp.text
