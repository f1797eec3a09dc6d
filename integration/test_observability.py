"""Issue 5 through real Envoy: per-tool metrics with Prometheus labels, latency histograms, token
figures and one JSON audit line per MCP request, with secrets kept out of the log.

One Envoy (template configs/auth.yaml) federating server-everything and the project's Python SDK
server, with JWT auth, the demo Rego policy and the audit record including (redacted) arguments
and results. A scripted session runs once per module; the tests read `/stats/prometheus` and the
access log it left behind.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

import httpx
import pytest

import authkit
import harness
from authkit import ISSUER, RESOURCE, SigningKey, bearer, claims
from harness import RawSession, Server

pytestmark = pytest.mark.filter

TEMPLATE = harness.CONFIGS / "auth.yaml"
DEMO_REGO = (harness.REPO / "policies" / "demo.rego").read_text()
ARG_SECRET = "pw-" + secrets.token_urlsafe(16)
UPSTREAM_SECRET = "ev-" + secrets.token_urlsafe(24)
PROSE = (
    "The gateway counts the tokens that travel through it, so operators can see what each tool "
    "costs in the model's context. This sentence is long enough to count to a few dozen tokens. "
)
ECHO_TEXT = PROSE * 4


def prometheus(gw: harness.Envoy) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """`/stats/prometheus` as {(family, labels): value} (no `# TYPE` lines)."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in gw.prometheus().splitlines():
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line.strip())
        if not m:
            continue
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def series(prom: dict[tuple[str, frozenset[tuple[str, str]]], float], family: str, **labels: str) -> float:
    """The value of the one series of `family` whose labels include `labels` (0 if absent)."""
    want = set(labels.items())
    found = [v for (f, ls), v in prom.items() if f == family and want <= set(ls) and "le" not in dict(ls)]
    assert len(found) <= 1, (family, labels, found)
    return found[0] if found else 0.0


@dataclass
class Run:
    """What the scripted session did, for the tests to check against."""

    tag: str
    admin_token: str
    reader_token: str
    session_id: str
    reader_session_id: str
    invented: list[str]
    prom_before: dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey.rsa("rsa-obs")


@pytest.fixture(scope="module")
def gw(envoy, everything_server: Server, py_server: Server, rsa_key: SigningKey) -> harness.Envoy:
    servers = {"everything": everything_server, "py": py_server}
    config = {
        "mcpPaths": ["/mcp"],
        "servers": [
            {"name": "everything", "cluster": "everything", "authority": everything_server.authority, "credentials": {"bearer": UPSTREAM_SECRET}},
            {"name": "py", "cluster": "py", "authority": py_server.authority},
        ],
        "federation": {"sessionKey": harness.session_key()},
        "auth": {
            "issuer": ISSUER,
            "jwks": {"keys": [rsa_key.public_jwk()]},
            "algorithms": ["RS256"],
            "resourceMetadata": {"resource": RESOURCE, "authorizationServers": [ISSUER]},
        },
        "policy": {"modules": [{"name": "demo.rego", "rego": DEMO_REGO}], "claims": ["roles"]},
        "telemetry": {"audit": {"arguments": True, "results": True, "redactKeys": ["apiToken"]}},
    }
    return envoy(servers, config, template=TEMPLATE)


def tools_call(s: RawSession, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    resp, reply = s.request("tools/call", {"name": name, "arguments": arguments})
    assert resp.status_code == 200, resp.text[:500]
    return reply


@pytest.fixture(scope="module")
def run(gw: harness.Envoy, rsa_key: SigningKey) -> Iterator[Run]:
    tag = uuid.uuid4().hex
    prom_before = prometheus(gw)
    admin_token = rsa_key.token(claims("alice", roles=["admin"], client_id="obs-client"))
    reader_token = rsa_key.token(claims("bob", roles="reader"))
    invented = [f"everything__made-up-{uuid.uuid4().hex[:8]}" for _ in range(12)]
    with httpx.Client(timeout=20) as http:
        admin = RawSession(http, gw.base_url + "/mcp", extra_headers={**bearer(admin_token), "X-Test-Id": tag})
        resp, _ = admin.initialize()
        assert resp.status_code == 200
        _, listing = admin.request("tools/list")
        assert "result" in listing
        for _ in range(2):
            reply = tools_call(admin, "everything__echo", {"message": ECHO_TEXT, "password": ARG_SECRET, "apiToken": ARG_SECRET})
            assert reply["result"]["content"][0]["text"] == f"Echo: {ECHO_TEXT}"
        assert "result" in tools_call(admin, "py__add", {"a": 2, "b": 3})
        for name in invented:
            assert "error" in tools_call(admin, name, {})
        reader = RawSession(http, gw.base_url + "/mcp", extra_headers={**bearer(reader_token), "X-Test-Id": tag})
        reader.initialize()
        denied = tools_call(reader, "everything__get-env", {})
        assert "error" in denied and "policy" in denied["error"]["message"].lower(), denied
        assert admin.delete().status_code in (200, 204)
        run = Run(tag, admin_token, reader_token, admin.session_id or "", reader.session_id or "", invented, prom_before)
    yield run


def grown(run: Run, gw: harness.Envoy, family: str, **labels: str) -> float:
    return series(prometheus(gw), family, **labels) - series(run.prom_before, family, **labels)


# --- metrics ----------------------------------------------------------------------------------


def test_tool_calls_are_counted_by_server_tool_and_outcome(gw: harness.Envoy, run: Run) -> None:
    assert grown(run, gw, "mcp_tool_calls_total", server="everything", tool="echo", outcome="ok") == 2
    assert grown(run, gw, "mcp_tool_calls_total", server="py", tool="add", outcome="ok") == 1
    assert grown(run, gw, "mcp_tool_calls_total", server="everything", tool="_unknown", outcome="error") == len(run.invented)
    # A real tool the caller may not call: named, since the merged list admitted it as a label.
    assert grown(run, gw, "mcp_tool_calls_total", server="everything", tool="get-env", outcome="denied") == 1


def test_invented_tool_names_never_become_labels(gw: harness.Envoy, run: Run) -> None:
    text = gw.prometheus()
    for name in run.invented:
        assert name.split("__", 1)[1] not in text
    tools = {dict(ls).get("tool") for (f, ls) in prometheus(gw) if f == "mcp_tool_calls_total"}
    assert tools <= {"echo", "add", "_unknown", "_other", "get-sum", "get-env"} | {None}, tools


def test_latency_histograms_have_one_sample_per_call(gw: harness.Envoy, run: Run) -> None:
    # Histograms reach the admin page at the next stats flush (5 s by default).
    harness.wait_until(
        lambda: grown(run, gw, "mcp_tool_call_duration_us_count", server="everything", tool="echo") == 2,
        timeout=15,
        what="the echo latency histogram",
    )
    assert grown(run, gw, "mcp_tool_call_duration_us_count", server="py", tool="add") == 1
    assert grown(run, gw, "mcp_upstream_duration_us_count", server="everything") >= 2
    # The gateway's own time is measured apart from the upstream's.
    assert grown(run, gw, "mcp_filter_duration_us_count", method="tools_call") >= 2 + 1 + len(run.invented) + 1
    # Every echo took more than 0 µs and less than the 60 s top bucket.
    total = grown(run, gw, "mcp_tool_call_duration_us_sum", server="everything", tool="echo")
    assert 0 < total < 120_000_000
    # The bootstrap's microsecond buckets apply (Envoy's defaults suit milliseconds).
    buckets = {dict(ls)["le"] for (f, ls) in prometheus(gw) if f == "mcp_tool_call_duration_us_bucket"}
    assert {"50", "250000", "60000000"} <= buckets, sorted(buckets)


def test_token_figures_count_arguments_results_and_the_catalogue(gw: harness.Envoy, run: Run) -> None:
    tokens_in = grown(run, gw, "mcp_tool_tokens_total", server="everything", tool="echo", direction="in")
    tokens_out = grown(run, gw, "mcp_tool_tokens_total", server="everything", tool="echo", direction="out")
    # ECHO_TEXT is ≈ 4 × 40 tokens (o200k); arguments add the JSON keys and the password fields.
    assert 2 * 130 < tokens_in < 2 * 260, tokens_in
    assert 2 * 130 < tokens_out < 2 * 240, tokens_out
    harness.wait_until(lambda: grown(run, gw, "mcp_tools_list_tokens_count") >= 1, timeout=15, what="the tools/list token histogram")
    assert grown(run, gw, "mcp_tools_list_tokens_sum") > 500  # server-everything alone lists ~20 tools
    # Each server's share of the merged catalogue: server-everything's is much larger.
    prom = prometheus(gw)
    everything = series(prom, "mcp_catalogue_tokens", server="everything")
    py = series(prom, "mcp_catalogue_tokens", server="py")
    assert everything > 500 and 20 < py < everything, (everything, py)


def test_sessions_opened_and_closed_are_counted(gw: harness.Envoy, run: Run) -> None:
    assert grown(run, gw, "mcp_sessions_total", event="opened") == 2
    assert grown(run, gw, "mcp_sessions_total", event="closed") == 1


def test_every_mcp_series_has_one_type_line(gw: harness.Envoy, run: Run) -> None:
    types = [line.split()[2] for line in gw.prometheus().splitlines() if line.startswith("# TYPE mcp_")]
    assert len(types) == len(set(types)), sorted(t for t in types if types.count(t) > 1)


# --- audit ------------------------------------------------------------------------------------


def audit_lines(gw: harness.Envoy, run: Run) -> list[dict[str, Any]]:
    expected = 2 + 1 + 2 + 1 + len(run.invented) + 1 + 1 + 1  # see `run`: init+notif ×2, list, calls, delete
    return harness.wait_until(
        lambda: (lines := [e for e in gw.access_log_entries() if e.get("request_id") == run.tag]) and len(lines) >= expected and lines,
        timeout=15,
        what=f"{expected} access log lines",
    )


def test_one_audit_line_per_request_with_who_what_and_how(gw: harness.Envoy, run: Run) -> None:
    lines = audit_lines(gw, run)
    calls = [e for e in lines if e["mcp_method"] == "tools/call" and e["mcp_name"] == "everything__echo"]
    assert len(calls) == 2
    for e in calls:
        assert e["mcp_subject"] == "alice"
        assert e["mcp_client"] == "obs-client"
        assert e["mcp_server"] == "everything"
        assert e["mcp_decision"] == "allow"
        assert e["mcp_outcome"] == "ok"
        assert e["mcp_error_code"] is None
        assert e["mcp_session"].startswith("s:") and len(e["mcp_session"]) == 18
        assert int(e["mcp_latency_us"]) > 0
        assert int(e["mcp_tokens_in"]) > 100 and int(e["mcp_tokens_out"]) > 100
        assert e["mcp_request_id"].isdigit()
        assert e["status"] == 200
    # One session, one digest on all its lines.
    assert len({e["mcp_session"] for e in lines if e["mcp_subject"] == "alice" and e["mcp_session"]}) == 1


def test_audit_arguments_and_results_are_present_and_redacted(gw: harness.Envoy, run: Run) -> None:
    call = next(e for e in audit_lines(gw, run) if e["mcp_name"] == "everything__echo")
    assert '"password":"[REDACTED]"' in call["mcp_arguments"]
    assert '"apiToken":"[REDACTED]"' in call["mcp_arguments"]
    assert "The gateway counts" in call["mcp_arguments"]
    # Cut at the default 2048 bytes.
    assert "Echo: The gateway counts" in call["mcp_result"]


def test_denied_and_failed_calls_carry_decision_reason_and_code(gw: harness.Envoy, run: Run) -> None:
    lines = audit_lines(gw, run)
    denied = next(e for e in lines if e["mcp_subject"] == "bob" and e["mcp_method"] == "tools/call")
    assert denied["mcp_decision"] == "deny" and denied["mcp_outcome"] == "denied"
    assert denied["mcp_reason"] and denied["mcp_error_code"] == "-32600"
    unknown = [e for e in lines if e["mcp_name"] in run.invented]
    assert len(unknown) == len(run.invented)
    assert {e["mcp_outcome"] for e in unknown} == {"error"} and {e["mcp_error_code"] for e in unknown} == {"-32602"}


def test_secrets_never_reach_the_access_log(gw: harness.Envoy, run: Run) -> None:
    audit_lines(gw, run)
    text = gw.access_log_path.read_text()
    for secret in [run.admin_token, run.reader_token, ARG_SECRET, UPSTREAM_SECRET, run.session_id, run.reader_session_id]:
        assert secret and secret not in text
    # Nor any fragment of a token's signature.
    assert run.admin_token.rsplit(".", 1)[1][:16] not in text
