"""The shipped Grafana dashboard and Prometheus scrape example fit what a real Envoy exports.

One Envoy (template configs/federation.yaml) federates server-everything, the Python SDK server and
a dead server, with JWT auth and the demo Rego policy, so one short scripted session makes every
family of gateway series appear in `/stats/prometheus`. The tests then read every PromQL query of
deploy/observability/grafana-dashboard.json and check that each metric it names, each label it
filters or groups by and each label its legend prints exists on that real Envoy: a renamed stat or
label breaks this test rather than leaving an empty panel in front of an operator.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import yaml

import harness
from authkit import ISSUER, RESOURCE, SigningKey, bearer, claims
from harness import ACCEPT_BOTH, RawSession, Server

pytestmark = pytest.mark.filter

OBSERVABILITY = harness.REPO / "deploy" / "observability"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"
PROMETHEUS_YML = OBSERVABILITY / "prometheus.yml"
DEMO_REGO = (harness.REPO / "policies" / "demo.rego").read_text()

# Labels Prometheus adds at scrape time; Envoy's page never has them.
TARGET_LABELS = {"instance", "job"}
# Gateway series the dashboard deliberately leaves out: they stay at zero in a healthy deployment
# and belong in alerts (docs/telemetry.md lists them).
NOT_PLOTTED = {"mcp_upstream_garbled_total", "mcp_stream_server_requests_total"}
# Dashboard variables and Grafana's built-ins, replaced before a query is checked.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__range": "1h",
    "$__interval": "1m",
    "$instance": ".*",
    "$server": ".*",
    "$tool": ".*",
}


# --- what the real Envoy exports ---------------------------------------------------------------


def exported_series(text: str) -> dict[str, set[str]]:
    """`/stats/prometheus` as {sample name: label names seen on it} for the gateway's `mcp_*`
    series; a histogram gives `_bucket` (with `le`), `_sum` and `_count`."""
    out: dict[str, set[str]] = defaultdict(set)
    for line in text.splitlines():
        m = re.fullmatch(r"(mcp_\w+)\{(.*)\} \S+", line.strip())
        if m:
            out[m.group(1)] |= set(re.findall(r'(\w+)="(?:[^"\\]|\\.)*"', m.group(2)))
    return dict(out)


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey.rsa("rsa-dash")


@pytest.fixture(scope="module")
def gw(envoy, everything_server: Server, py_server: Server, rsa_key: SigningKey) -> harness.Envoy:
    config = {
        "mcpPaths": ["/mcp"],
        "servers": [
            {"name": "everything", "cluster": "everything", "authority": everything_server.authority},
            {"name": "py", "cluster": "py", "authority": py_server.authority},
            # Nothing listens there: the fan-out to it fails, which is what upstream failures count.
            {"name": "dead", "cluster": "dead", "timeoutMs": 500},
        ],
        "federation": {"sessionKey": harness.session_key()},
        "auth": {
            "issuer": ISSUER,
            "jwks": {"keys": [rsa_key.public_jwk()]},
            "algorithms": ["RS256"],
            "resourceMetadata": {"resource": RESOURCE, "authorizationServers": [ISSUER]},
        },
        "policy": {"modules": [{"name": "demo.rego", "rego": DEMO_REGO}], "claims": ["roles"]},
    }
    return envoy({"everything": everything_server, "py": py_server}, config, template=harness.CONFIGS / "federation.yaml")


HISTOGRAMS = ["mcp_tool_call_duration_us", "mcp_upstream_duration_us", "mcp_filter_duration_us", "mcp_tools_list_tokens"]


@pytest.fixture(scope="module")
def exported(gw: harness.Envoy, rsa_key: SigningKey) -> Iterator[dict[str, set[str]]]:
    """A short session that moves every family of gateway series, then what Envoy exports."""
    admin = bearer(rsa_key.token(claims("alice", roles=["admin"])))
    reader = bearer(rsa_key.token(claims("bob", roles="reader")))
    url = gw.base_url + "/mcp"
    with httpx.Client(timeout=20) as http:
        s = RawSession(http, url, version="2025-11-25", extra_headers=admin)
        s.initialize()
        _, listing = s.request("tools/list")
        assert "result" in listing, listing
        for name, args in [("everything__echo", {"message": "dashboards"}), ("py__add", {"a": 1, "b": 2})]:
            assert "result" in s.request("tools/call", {"name": name, "arguments": args})[1]
        # Progress notifications travel on the SSE reply.
        slow = {"name": "py__slow_progress", "arguments": {"steps": 2, "delay": 0.05}, "_meta": {"progressToken": "p"}}
        assert "result" in s.request("tools/call", slow)[1]
        assert "error" in s.request("tools/call", {"name": "everything__no-such-tool", "arguments": {}})[1]
        # Malformed body: answered by the gateway, counted by reason.
        bad = http.post(url, content=b"{not json", headers=s.headers())
        assert bad.status_code == 400, bad.text
        assert s.delete().status_code in (200, 204)
        r = RawSession(http, url, extra_headers=reader)
        r.initialize()
        assert "error" in r.request("tools/call", {"name": "everything__get-env", "arguments": {}})[1]
        # No token at all.
        anonymous = http.post(url, json=harness.rpc("tools/list"), headers={"Content-Type": "application/json", "Accept": ACCEPT_BOTH})
        assert anonymous.status_code == 401

    # Histograms reach the admin page at the next stats flush (5 s by default).
    def flushed() -> dict[str, set[str]] | None:
        series = exported_series(gw.prometheus())
        return series if all(h + "_bucket" in series for h in HISTOGRAMS) else None

    yield harness.wait_until(flushed, timeout=15, what="the gateway's histograms in /stats/prometheus")


# --- what the dashboard asks for ---------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included, rows themselves excluded."""
    out = []
    for p in board["panels"]:
        out.extend(p.get("panels", []) if p["type"] == "row" else [p])
    return out


def queries(board: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(where, PromQL, legend format) for every panel target and every query variable."""
    out = []
    for p in panels(board):
        for t in p.get("targets", []):
            out.append((f"panel {p['title']!r} {t['refId']}", t["expr"], t.get("legendFormat", "")))
    for v in board["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out.append((f"variable {v['name']}", q, ""))
    return out


def concrete(expr: str) -> str:
    """The query with Grafana's variables replaced, as Prometheus would receive it."""
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    return expr


SELECTOR = re.compile(r"\b([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?\s*(\[[^\]]*\])?")
MATCHER = re.compile(r'(\w+)\s*(?:=~|!~|!=|=)\s*"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "increase", "irate", "histogram_quantile", "by", "without", "on",
    "ignoring", "group_left", "group_right", "label_values", "and", "or", "unless", "topk", "bottomk", "clamp_min",
}


def selectors(expr: str) -> list[tuple[str, list[str]]]:
    """(metric name, label names matched) of every vector selector in `expr`."""
    real = concrete(expr)
    # Blank out what holds identifiers that are not metrics, keeping offsets: string contents,
    # grouping label lists and the label argument of label_values().
    text = re.sub(r'"(?:[^"\\]|\\.)*"', lambda m: '"' + " " * (len(m.group()) - 2) + '"', real)
    text = GROUPING.sub(lambda m: " " * len(m.group()), text)
    text = re.sub(r",\s*\w+\s*\)\s*$", lambda m: " " * len(m.group()), text) if "label_values" in text else text
    out = []
    for m in SELECTOR.finditer(text):
        name, braces, window = m.group(1), m.group(2), m.group(3)
        if name in PROMQL_WORDS:
            continue
        if not braces and not window and text[m.end():].lstrip().startswith("("):
            continue  # a function call
        out.append((name, MATCHER.findall(real[m.start(2):m.end(2)]) if braces else []))
    return out


def grouping_labels(expr: str) -> set[str]:
    return {label.strip() for group in GROUPING.findall(expr) for label in group.split(",") if label.strip()}


def variable_label(expr: str) -> str | None:
    m = re.search(r"label_values\(.*,\s*(\w+)\s*\)\s*$", expr)
    return m.group(1) if m else None


# --- tests: the dashboard file ---------------------------------------------------------------


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 38
    assert board["uid"] and board["title"]
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("server", "tool"):
        assert variables[name]["type"] == "query"
        assert variable_label(variables[name]["query"]["query"]) == name
    for v in variables.values():
        if v["type"] == "query":
            assert v["definition"] == v["query"]["query"], v["name"]
    ids = [p["id"] for p in board["panels"]] + [q["id"] for p in board["panels"] for q in p.get("panels", [])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels(board):
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]


def test_every_query_is_balanced_promql() -> None:
    for where, expr, _ in queries(dashboard()):
        text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
        for open_, close in ("()", "{}", "[]"):
            depth = 0
            for ch in text:
                depth += (ch == open_) - (ch == close)
                assert depth >= 0, f"{where}: unbalanced {open_}{close} in {expr}"
            assert depth == 0, f"{where}: unbalanced {open_}{close} in {expr}"


def test_quantile_panels_read_histogram_buckets_grouped_by_le() -> None:
    quantiles = [(w, e) for w, e, _ in queries(dashboard()) if "histogram_quantile" in e]
    assert len(quantiles) >= 4
    for where, expr in quantiles:
        assert all(name.endswith("_bucket") for name, _ in selectors(expr)), f"{where}: {expr}"
        assert "le" in grouping_labels(expr), f"{where}: {expr}"


def test_the_dashboard_plots_every_panel_the_operators_asked_for() -> None:
    exprs = " ".join(e for _, e, _ in queries(dashboard()))
    for family in [
        "mcp_requests_total", "mcp_tool_calls_total", "mcp_tool_call_duration_us_bucket", "mcp_upstream_duration_us_bucket",
        "mcp_filter_duration_us_bucket", "mcp_tool_tokens_total", "mcp_catalogue_tokens", "mcp_tools_list_tokens_bucket",
        "mcp_sessions_total", "mcp_auth_total", "mcp_policy_decisions_total", "mcp_upstream_failures_total", "mcp_rejected_total",
    ]:
        assert re.search(rf"\b{family}\b", exprs), family


# --- tests: the dashboard against a real Envoy ---------------------------------------------------


def test_every_query_names_only_series_a_real_envoy_exports(exported: dict[str, set[str]]) -> None:
    missing = []
    for where, expr, _ in queries(dashboard()):
        for name, _ in selectors(expr):
            if name not in exported:
                missing.append(f"{where}: {name}")
    assert not missing, f"series the dashboard queries but Envoy does not export: {missing}\nexported: {sorted(exported)}"


def test_every_label_a_query_filters_groups_or_prints_is_on_its_series(exported: dict[str, set[str]]) -> None:
    wrong = []
    for where, expr, legend in queries(dashboard()):
        found = selectors(expr)
        available = set(TARGET_LABELS)
        for name, matched in found:
            labels = exported.get(name, set()) | TARGET_LABELS
            available |= labels
            wrong += [f"{where}: {name} has no label {m!r}" for m in matched if m not in labels]
        grouped = grouping_labels(expr)
        wrong += [f"{where}: groups by {g!r}, which none of its series has" for g in grouped if g not in available]
        if (label := variable_label(expr)) and label not in available:
            wrong.append(f"{where}: label_values of {label!r}, which its series lacks")
        printed = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
        keeps = grouped if re.search(r"\b(?:sum|max|min|avg|count)\s+by\b", expr) else available
        wrong += [f"{where}: legend prints {p!r}, which the query's result does not keep" for p in printed if p not in keeps]
    assert not wrong, "\n".join(wrong)


def test_every_gateway_series_is_on_the_dashboard(exported: dict[str, set[str]]) -> None:
    exprs = " ".join(concrete(e) for _, e, _ in queries(dashboard()))
    families = set()
    for name in exported:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        families.add(base if base + "_bucket" in exported else name)
    unplotted = sorted(f for f in families - NOT_PLOTTED if not re.search(rf"\b{f}(_bucket|_sum|_count)?\b", exprs))
    assert not unplotted, f"gateway series no panel shows (add a panel, or list them in NOT_PLOTTED with a reason): {unplotted}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Prometheus) is not installed")
def test_promtool_accepts_every_query(tmp_path: Path) -> None:
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": concrete(expr)} for i, (_, expr, _) in enumerate(queries(dashboard())) if "label_values" not in expr
    ]}]}
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# --- tests: the scrape example ---------------------------------------------------------------------


def test_prometheus_example_scrapes_the_demo_envoy_admin_page() -> None:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    job = jobs["mcp-gateway-envoy"]
    assert job["metrics_path"] == "/stats/prometheus"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    demo = yaml.safe_load((harness.REPO / "envoy" / "demo.yaml").read_text())
    admin = demo["admin"]["address"]["socket_address"]
    assert targets == [f"{admin['address']}:{admin['port_value']}"]


def test_prometheus_example_params_are_ones_envoy_accepts(gw: harness.Envoy) -> None:
    job = {j["job_name"]: j for j in yaml.safe_load(PROMETHEUS_YML.read_text())["scrape_configs"]}["mcp-gateway-envoy"]
    query = "&".join(f"{k}={v}" for k, values in job.get("params", {}).items() for v in values)
    page = gw.admin(job["metrics_path"] + ("?" + query if query else ""))
    assert "# TYPE mcp_requests_total counter" in page


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Prometheus) is not installed")
def test_promtool_accepts_the_scrape_example() -> None:
    done = subprocess.run(["promtool", "check", "config", str(PROMETHEUS_YML)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
