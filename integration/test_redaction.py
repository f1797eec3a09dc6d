"""Issue 6 guardrails on content, through real Envoy and a real SDK server (servers/guard_server.py):
PII and secrets redacted in a 64 KB result streamed as SSE and in tool arguments, prompt
injection in a result blocked, and a poisoned tool description hidden.

One Envoy (template configs/federation.yaml) federating the guard server with `guardrails` on.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Iterator

import httpx
import pytest

import guardkit
import harness
from harness import RawSession, Server

pytestmark = pytest.mark.filter

TEMPLATE = harness.CONFIGS / "federation.yaml"


@pytest.fixture(scope="module")
def gw(envoy, guard_server: Server) -> harness.Envoy:
    config = {
        "mcpPaths": ["/mcp"],
        "servers": [{"name": "guard", "cluster": "guard", "authority": guard_server.authority}],
        "federation": {"sessionKey": harness.session_key(), "listCacheTtlMs": 0},
        "guardrails": {
            "redact": {"in": ["results", "arguments"]},
            "injection": {
                "action": "flag",
                "overrides": [
                    {"tool": "poisoned_result", "action": "block"},
                    {"tool": "mutable", "action": "block"},
                ],
            },
        },
        # The audit may carry results: it must carry them as the client got them (redacted).
        "telemetry": {"audit": {"results": True, "maxValueBytes": 1048576}},
    }
    return envoy({"guard": guard_server}, config, template=TEMPLATE)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


@pytest.fixture(autouse=True)
def fresh(guard_server: Server) -> None:
    guardkit.flip(guard_server, False)


def session(http: httpx.Client, gw: harness.Envoy) -> RawSession:
    s = RawSession(http, gw.base_url + "/mcp")
    resp, reply = s.initialize()
    assert resp.status_code == 200, resp.text[:300]
    s.request("tools/list")
    return s


call = guardkit.call


def findings(gw: harness.Envoy) -> dict[str, int]:
    return {k.split("mcp.guard_findings_total.", 1)[1]: v for k, v in gw.stats(r"guard_findings_total").items()}


def test_pii_in_a_64kb_streamed_result_is_redacted_event_by_event(gw: harness.Envoy, http: httpx.Client) -> None:
    s = session(http, gw)
    query = "q-" + uuid.uuid4().hex[:8]
    resp, reply = call(s, "guard__lookup", {"query": query, "size": 65536}, meta={"progressToken": "p1"})
    assert resp.headers["content-type"].startswith("text/event-stream")
    # Progress notifications still arrive before the result, on the same stream.
    messages = harness.jsonrpc_messages(resp)
    assert [m.get("method") for m in messages[:-1]] == ["notifications/progress"] * 2
    text = reply["result"]["content"][0]["text"]
    assert len(text) > 60_000
    pii = guardkit.lookup_pii(query, size=65536)
    assert len(pii) > 200
    leaked = [(kind, value) for kind, value in pii if value in text]
    assert leaked == []
    for kind in ("email", "phone", "card", "iban", "ssn", "aws-key"):
        assert f"[REDACTED:{kind}]" in text, kind
    # What only looks like PII stays: a card failing Luhn, an IBAN with a bad check, ids, times.
    for _, decoy in guardkit.guard_module().DECOYS:
        assert decoy in text
    assert query in text and "café" in text
    counted = findings(gw)
    assert counted.get("kind=email.result=redact", 0) >= sum(1 for k, _ in pii if k == "email")


def test_arguments_are_redacted_before_they_reach_the_server(gw: harness.Envoy, http: httpx.Client, guard_server: Server) -> None:
    s = session(http, gw)
    marker = uuid.uuid4().hex
    resp, reply = call(s, "guard__clean", {"text": f"{marker} reach me at bob.smith@example.org or 415-555-0199"})
    sent = [r for r in guard_server.requests() if marker in json.dumps(r)]
    assert sent, "the call never reached the server"
    body = json.dumps(sent[-1])
    assert "bob.smith@example.org" not in body and "[REDACTED:email]" in body
    assert "bob.smith@example.org" not in json.dumps(reply)


def test_a_result_carrying_an_injection_is_blocked(gw: harness.Envoy, http: httpx.Client) -> None:
    s = session(http, gw)
    resp, reply = call(s, "guard__poisoned_result", {})
    assert resp.status_code == 200
    assert reply["error"]["code"] == -31451, reply
    assert "guardrail" in reply["error"]["message"].lower()
    found = reply["error"]["data"]["findings"]
    assert {"override", "hidden-tags"} <= set(found), found
    assert "webhook.site" not in resp.text and guardkit.guard_module().HIDDEN_TAGS not in resp.text
    assert findings(gw).get("kind=hidden-tags.result=block", 0) >= 1


def test_a_clean_result_passes_unchanged(gw: harness.Envoy, http: httpx.Client) -> None:
    s = session(http, gw)
    text = "Quarterly numbers are up 4% on the same period last year; see the attached chart."
    resp, reply = call(s, "guard__clean", {"text": text})
    assert reply["result"]["content"][0]["text"] == text


def test_a_poisoned_tool_description_is_hidden_from_the_list(gw: harness.Envoy, http: httpx.Client, guard_server: Server) -> None:
    s = session(http, gw)
    _, listing = s.request("tools/list")
    assert "guard__mutable" in [t["name"] for t in listing["result"]["tools"]]
    guardkit.flip(guard_server, True)
    _, listing = s.request("tools/list")
    names = [t["name"] for t in listing["result"]["tools"]]
    assert "guard__mutable" not in names and "guard__lookup" in names
    assert "id_rsa" not in json.dumps(listing)
    assert findings(gw).get("kind=tag-directive.result=block", 0) >= 1 or any(k.endswith("result=block") for k in findings(gw))


def test_the_audit_record_holds_the_redacted_result_never_the_original(gw: harness.Envoy, http: httpx.Client) -> None:
    tag = {"X-Test-Id": uuid.uuid4().hex}
    s = RawSession(http, gw.base_url + "/mcp", extra_headers=tag)
    s.initialize()
    s.request("tools/list")
    query = "audit-" + uuid.uuid4().hex[:8]
    resp, reply = call(s, "guard__lookup", {"query": query, "size": 8192})
    assert "[REDACTED:email]" in reply["result"]["content"][0]["text"]
    entry = gw.wait_access_log(lambda e: e.get("request_id") == tag["X-Test-Id"] and e.get("mcp_name") == "guard__lookup")
    assert query in entry["mcp_result"] and "[REDACTED:email]" in entry["mcp_result"]
    for _, value in guardkit.lookup_pii(query, size=8192):
        assert value not in entry["mcp_result"]
    assert int(entry["mcp_tokens_out"]) > 1000
