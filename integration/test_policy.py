"""Authorization and credential brokering under federation, through real Envoy: the Rego policy
of policies/demo.rego decides per caller which tools, prompts and resources are listed and
callable; each upstream gets the credential configured for it, never the client's token; a
gateway session belongs to the subject that opened it.

One Envoy (template configs/auth.yaml) federating server-everything, the project's Python SDK
server (`py`) and servers/header_server.py, which records every header it receives, behind three
clusters: `hdr` (given an API-key header), `hdrb` (basic auth) and `hdrn` (no credentials). Tokens come from an inline JWKS (an RSA key
and an HS256 secret); roles from the `roles` claim. A second module, `auditor.rego`, grants the
role `auditor` the tools of server `py` only, which pins down `input.server` and list items'
`server`.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import yaml

import authkit
import harness
from authkit import ISSUER, RESOURCE, SigningKey, bearer, claims
from harness import ACCEPT_BOTH, RawSession, Server

pytestmark = pytest.mark.filter

TEMPLATE = harness.CONFIGS / "auth.yaml"
JSON_HEADERS = {"Content-Type": "application/json", "Accept": ACCEPT_BOTH}
DEMO_REGO = (harness.REPO / "policies" / "demo.rego").read_text()
AUDITOR_REGO = """package mcp

# Auditors may call the tools of server `py`, and see only those.
allow if {
	"auditor" in roles
	input.method == "tools/call"
	input.server == "py"
}

visible_tools contains item.name if {
	some item in input.items
	"auditor" in roles
	item.server == "py"
}
"""
# demo.rego's reader_tools and reader_prompts.
READER_TOOLS = {
    "echo",
    "get-sum",
    "get-tiny-image",
    "get-annotated-message",
    "get-structured-content",
    "get-resource-links",
    "get-resource-reference",
}
READER_PROMPTS = {"simple-prompt"}
STATIC_RESOURCES = "demo://resource/static/"

HMAC_SECRET = secrets.token_bytes(32)
HDR_SECRET = "hdr-" + secrets.token_urlsafe(24)
BASIC_PASSWORD = "pw-" + secrets.token_urlsafe(24)
BASIC_VALUE = "Basic " + base64.b64encode(f"gateway:{BASIC_PASSWORD}".encode()).decode()
EVERYTHING_SECRET = "ev-" + secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey.rsa("rsa-1")


@pytest.fixture(scope="module")
def header_server(proc_dir: Path) -> Iterator[Server]:
    server = authkit.start_header_server(proc_dir)
    try:
        yield server
    finally:
        server.stop()


def policy_section(*modules: tuple[str, str]) -> dict[str, Any]:
    return {"modules": [{"name": n, "rego": r} for n, r in modules], "claims": ["roles"]}


def plugin_config(rsa_key: SigningKey, servers: dict[str, Server], policy: dict[str, Any]) -> dict[str, Any]:
    def entry(name: str, cluster_of: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "cluster": name, "authority": servers[cluster_of].authority, **extra}

    return {
        "mcpPaths": ["/mcp"],
        "servers": [
            entry("everything", "everything", credentials={"bearer": EVERYTHING_SECRET}),
            entry("py", "py"),
            entry("hdr", "hdr", credentials={"header": {"name": "X-Upstream-Key", "value": HDR_SECRET}}),
            entry("hdrb", "hdr", credentials={"basic": {"username": "gateway", "password": BASIC_PASSWORD}}),
            entry("hdrn", "hdr"),
        ],
        "federation": {"sessionKey": harness.session_key()},
        "auth": {
            "issuer": ISSUER,
            "jwks": {"keys": [rsa_key.public_jwk(), authkit.oct_jwk(HMAC_SECRET, "hs-1")]},
            "algorithms": ["RS256", "HS256"],
            "resourceMetadata": {"resource": RESOURCE, "authorizationServers": [ISSUER]},
        },
        "policy": policy,
    }


@pytest.fixture(scope="module")
def upstreams(everything_server: Server, py_server: Server, header_server: Server) -> dict[str, Server]:
    return {"everything": everything_server, "py": py_server, "hdr": header_server}


@pytest.fixture(scope="module")
def gw(envoy, upstreams: dict[str, Server], rsa_key: SigningKey) -> harness.Envoy:
    policy = policy_section(("demo.rego", DEMO_REGO), ("auditor.rego", AUDITOR_REGO))
    return envoy(upstreams, plugin_config(rsa_key, upstreams, policy), template=TEMPLATE)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=20) as client:
        yield client


@dataclass
class Callers:
    """Token minting per role; every call gives a fresh token for the same subject."""

    rsa: SigningKey

    def admin(self) -> str:
        return self.rsa.token(claims("alice", roles=["admin"]))

    def reader(self) -> str:
        return self.rsa.token(claims("bob", roles="reader"))  # demo.rego also takes a string

    def auditor(self) -> str:
        # HS256 with the inline secret: accepted where configured.
        return authkit.hs256(HMAC_SECRET, claims("carol", roles=["auditor"]), kid="hs-1")

    def nobody(self) -> str:
        return self.rsa.token(claims("dave"))

    def token(self, role: str) -> str:
        return getattr(self, role)()


@pytest.fixture(scope="module")
def callers(rsa_key: SigningKey) -> Callers:
    return Callers(rsa_key)


def session(http: httpx.Client, gw: harness.Envoy, token: str, capabilities: dict[str, Any] | None = None) -> RawSession:
    s = RawSession(http, gw.base_url + "/mcp", extra_headers=bearer(token), capabilities=capabilities)
    resp, reply = s.initialize()
    assert resp.status_code == 200 and "result" in reply, resp.text[:1000]
    assert s.session_id and s.session_id.startswith("g1."), resp.headers
    return s


def listed(s: RawSession, method: str) -> list[str]:
    field, key = {"tools/list": ("tools", "name"), "prompts/list": ("prompts", "name"), "resources/list": ("resources", "uri")}[method]
    resp, reply = s.request(method)
    assert resp.status_code == 200 and "result" in reply, resp.text[:1000]
    return [item[key] for item in reply["result"][field]]


def own_name(name: str) -> tuple[str, str]:
    server, _, own = name.partition("__")
    return server, own


def fresh_scope() -> dict[str, Any]:
    """Client capabilities no other session declared: merged lists are cached per capability
    set, so a session with these makes the gateway fetch the lists from every server now."""
    return {"experimental": {f"test-{uuid.uuid4().hex}": {}}}


def policy_counters(gw: harness.Envoy) -> dict[str, int]:
    return gw.stats(r"^wasmcustom\.mcp\.(policy_decisions_total|requests_total\.method=tools_call)")


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


# Which process serves each federated server (hdr, hdrb and hdrn are one header_server).
PROCESS_OF = {"everything": "everything", "py": "py", "hdr": "hdr", "hdrb": "hdr", "hdrn": "hdr"}


@pytest.fixture(scope="module")
def direct_tools(upstreams: dict[str, Server]) -> set[str]:
    """Every tool of every federated server, prefixed, asked from the servers directly."""
    own: dict[str, list[str]] = {}
    with httpx.Client(timeout=20) as client:
        for process, server in upstreams.items():
            s = RawSession(client, server.url)
            s.initialize()
            _, reply = s.request("tools/list")
            own[process] = [t["name"] for t in reply["result"]["tools"]]
            if s.session_id:
                s.delete()
    return {f"{name}__{tool}" for name, process in PROCESS_OF.items() for tool in own[process]}


# --- HS256 next to RSA ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kid", "reason"),
    [("rsa-1", "key_mismatch"), (None, "bad_signature"), ("hs-1", "bad_signature")],
    ids=["kid of the RSA key", "no kid", "kid of the HMAC key"],
)
def test_where_hs256_is_accepted_a_token_keyed_with_the_rsa_public_key_is_refused(
    gw: harness.Envoy, http: httpx.Client, rsa_key: SigningKey, kid: str | None, reason: str
) -> None:
    """Algorithm confusion: a verifier that used the RSA public key (public, so known to anyone)
    as an HMAC secret would accept this token."""
    before = gw.stats("auth_total")
    for secret in (rsa_key.public_pem(), rsa_key.public_der()):
        token = authkit.hs256(secret, claims("mallory", roles=["admin"]), kid=kid)
        resp = http.post(gw.base_url + "/mcp", json=harness.initialize_body(), headers={**JSON_HEADERS, **bearer(token)})
        assert resp.status_code == 401, resp.text
        assert resp.headers["www-authenticate"].startswith('Bearer error="invalid_token"'), resp.headers
    counted = delta(before, gw.stats("auth_total"))
    assert counted == {f"wasmcustom.mcp.auth_total.result={reason}": 2}, counted


def test_an_hs256_token_with_the_configured_secret_is_accepted(gw: harness.Envoy, http: httpx.Client) -> None:
    token = authkit.hs256(HMAC_SECRET, claims("carol"), kid="hs-1")
    resp = http.post(gw.base_url + "/mcp", json=harness.initialize_body(), headers={**JSON_HEADERS, **bearer(token)})
    assert resp.status_code == 200, resp.text


# --- filtered lists -------------------------------------------------------------------------------


def test_an_admin_lists_every_tool_of_every_server(gw: harness.Envoy, http: httpx.Client, callers: Callers, direct_tools: set[str]) -> None:
    assert set(listed(session(http, gw, callers.admin()), "tools/list")) == direct_tools


def test_a_reader_lists_only_the_tools_the_policy_lets_them_call(
    gw: harness.Envoy, http: httpx.Client, callers: Callers, direct_tools: set[str]
) -> None:
    # Admin first, reader next, admin again: one cached merged list, filtered per caller.
    admin = session(http, gw, callers.admin())
    reader = session(http, gw, callers.reader())
    listed(admin, "tools/list")
    got = listed(reader, "tools/list")
    expected = {n for n in direct_tools if own_name(n)[1] in READER_TOOLS}
    assert set(got) == expected
    assert {"everything__echo", "py__echo"} <= expected  # the policy sees the servers' own names
    assert "everything__get-env" not in got and "py__add" not in got
    assert set(listed(admin, "tools/list")) == direct_tools


def test_list_items_carry_their_server_to_the_policy(gw: harness.Envoy, http: httpx.Client, callers: Callers, direct_tools: set[str]) -> None:
    """auditor.rego's `visible_tools` keeps the items whose `server` is py. Tools of other servers
    with the same own name (`everything__echo`, own name `echo` like `py__echo`) must stay hidden:
    the auditor may not call them (see the `auditor-...-no_role` call case)."""
    got = set(listed(session(http, gw, callers.auditor()), "tools/list"))
    expected = {n for n in direct_tools if n.startswith("py__")}
    assert not got - expected, f"listed, though the policy keeps only py's tools: {sorted(got - expected)}"
    assert got == expected


def test_a_caller_without_a_role_sees_no_tools(gw: harness.Envoy, http: httpx.Client, callers: Callers) -> None:
    assert listed(session(http, gw, callers.nobody()), "tools/list") == []


def test_a_reader_lists_only_the_simple_prompt(gw: harness.Envoy, http: httpx.Client, callers: Callers) -> None:
    admin = listed(session(http, gw, callers.admin()), "prompts/list")
    reader = listed(session(http, gw, callers.reader()), "prompts/list")
    assert "py__greet" in admin
    assert reader == [n for n in admin if own_name(n)[1] in READER_PROMPTS] and reader


def test_resources_are_filtered_item_by_item_without_a_visible_resources_rule(gw: harness.Envoy, http: httpx.Client, callers: Callers) -> None:
    admin = listed(session(http, gw, callers.admin()), "resources/list")
    reader = listed(session(http, gw, callers.reader()), "resources/list")
    assert "test://static/hello" in admin
    assert reader == [u for u in admin if u.startswith(STATIC_RESOURCES)] and reader


# --- decisions on calls ---------------------------------------------------------------------------


CALLS: list[tuple[str, str, dict[str, Any], str | None]] = [
    # (role, method, params, reason the policy gives, or None when allowed)
    ("admin", "tools/call", {"name": "everything__get-env", "arguments": {}}, None),
    ("admin", "tools/call", {"name": "py__add", "arguments": {"a": 2, "b": 3}}, None),
    ("admin", "tools/call", {"name": "hdr__hello", "arguments": {"name": "admin"}}, None),
    ("admin", "prompts/get", {"name": "py__greet", "arguments": {"name": "x"}}, None),
    ("admin", "resources/read", {"uri": "test://static/hello"}, None),
    ("reader", "tools/call", {"name": "everything__echo", "arguments": {"message": "hi"}}, None),
    ("reader", "tools/call", {"name": "py__echo", "arguments": {"message": "hi"}}, None),
    ("reader", "tools/call", {"name": "everything__get-env", "arguments": {}}, "tool_not_allowed"),
    ("reader", "tools/call", {"name": "py__add", "arguments": {"a": 2, "b": 3}}, "tool_not_allowed"),
    ("reader", "prompts/get", {"name": "everything__simple-prompt"}, None),
    ("reader", "prompts/get", {"name": "py__greet", "arguments": {"name": "x"}}, "not_allowed"),
    ("reader", "resources/read", {"uri": "test://static/hello"}, "not_allowed"),
    ("auditor", "tools/call", {"name": "py__add", "arguments": {"a": 2, "b": 3}}, None),
    ("auditor", "tools/call", {"name": "everything__echo", "arguments": {"message": "hi"}}, "no_role"),
    ("nobody", "tools/call", {"name": "everything__echo", "arguments": {"message": "hi"}}, "no_role"),
]


@pytest.mark.parametrize(
    ("role", "method", "params", "reason"),
    CALLS,
    ids=[f"{r}-{m}-{p.get('name') or p.get('uri')}-{'allowed' if why is None else why}" for r, m, p, why in CALLS],
)
def test_the_policy_decides_each_call_and_a_denial_names_its_reason(
    gw: harness.Envoy, http: httpx.Client, callers: Callers, py_server: Server, role: str, method: str, params: dict[str, Any], reason: str | None
) -> None:
    s = session(http, gw, callers.token(role))
    since = len(py_server.requests())
    before = policy_counters(gw)
    resp, reply = s.request(method, params)
    counted = delta(before, policy_counters(gw))
    if reason is None:
        assert resp.status_code == 200 and "result" in reply, reply
        assert counted.get("wasmcustom.mcp.policy_decisions_total.decision=allow") == 1, counted
        return
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert reply == {
        "jsonrpc": "2.0",
        "id": s.next_id - 1,
        "error": {"code": -32600, "message": f"Forbidden by policy: {reason}", "data": {"reason": reason}},
    }
    assert counted.get("wasmcustom.mcp.policy_decisions_total.decision=deny") == 1, counted
    assert "wasmcustom.mcp.policy_decisions_total.decision=allow" not in counted
    if method == "tools/call":
        assert counted.get("wasmcustom.mcp.requests_total.method=tools_call.outcome=denied") == 1, counted
    # Nothing reached the server.
    assert [r for r in py_server.requests()[since:] if r.get("rpc") == method] == []


def test_a_policy_that_does_not_compile_fails_validate_naming_the_module(tmp_path: Path, rsa_key: SigningKey, upstreams: dict[str, Server]) -> None:
    """(Builtins the gateway leaves out are refused the same way; the native policy tests cover
    that, and every validate run costs seconds.)"""
    broken = AUDITOR_REGO.replace('input.server == "py"\n}', 'input.server == "py"\n', 1)  # an unclosed rule body
    assert broken != AUDITOR_REGO
    config = plugin_config(rsa_key, upstreams, policy_section(("demo.rego", DEMO_REGO), ("broken.rego", broken)))
    values: dict[str, Any] = {"ACCESS_LOG": tmp_path / "access.log", "WASM_PATH": harness.WASM, "LISTEN_PORT": 0, "ADMIN_PORT": 0}
    values |= {f"{k}_PORT": harness.free_port() for k in ("ECHO", "EVERYTHING", "PY", "HDR", "IDP")}
    path = tmp_path / "bootstrap.yaml"
    path.write_text(yaml.safe_dump(harness.render_bootstrap(TEMPLATE, values, config)))
    result = harness.validate_bootstrap(path)
    log = result.stdout + result.stderr
    assert result.returncode == 1, log[-3000:]
    assert "invalid plugin configuration: policy.modules[1] (broken.rego): broken.rego:" in log, log[-3000:]


# --- sessions belong to their subject ---------------------------------------------------------------


def test_another_subject_presenting_a_session_id_gets_404(gw: harness.Envoy, http: httpx.Client, callers: Callers) -> None:
    alice = session(http, gw, callers.admin())
    assert alice.session_id is not None
    resp = http.post(
        alice.url,
        json=harness.rpc("tools/list", None, 41),
        headers={**alice.headers(), **bearer(callers.reader())},
    )
    assert resp.status_code == 404, resp.text
    assert resp.json() == {"jsonrpc": "2.0", "id": 41, "error": {"code": -32600, "message": "Session not found: re-initialize"}}
    # The session itself is unharmed, and is bound to the subject, not to the token that opened it.
    alice.extra = bearer(callers.admin())
    resp, reply = alice.request("tools/list")
    assert resp.status_code == 200 and reply["result"]["tools"], reply


def test_a_session_id_without_credentials_gets_401(gw: harness.Envoy, http: httpx.Client, callers: Callers) -> None:
    alice = session(http, gw, callers.admin())
    headers = {k: v for k, v in alice.headers().items() if k != "Authorization"}
    resp = http.post(alice.url, json=harness.rpc("tools/list", None, 42), headers=headers)
    assert resp.status_code == 401, resp.text


# --- credential brokering ------------------------------------------------------------------------------


def test_each_server_gets_its_own_credential_and_never_the_clients_token(
    gw: harness.Envoy, http: httpx.Client, callers: Callers, header_server: Server
) -> None:
    since = len(header_server.requests())
    token = callers.admin()
    s = session(http, gw, token, fresh_scope())  # fresh list cache: the gateway's own calls happen now
    listed(s, "tools/list")
    marks = {server: uuid.uuid4().hex for server in ("hdr", "hdrb", "hdrn")}
    for server, mark in marks.items():
        _, reply = s.request("tools/call", {"name": f"{server}__hello", "arguments": {"name": mark}})
        assert reply["result"]["content"][0]["text"] == f"hello {mark}", reply
    seen = header_server.requests()[since:]
    assert seen, "nothing reached the header server"
    for record in seen:
        headers = record["headers"]
        assert not any("eyJ" in v for v in headers.values()), f"a client token reached the server: {record}"
        # One configured credential or none (hdrn), never anything else.
        presented = (headers.get("x-upstream-key"), headers.get("authorization"))
        assert presented in {(HDR_SECRET, None), (None, BASIC_VALUE), (None, None)}, record
    by_mark = {r["arguments"]["name"]: r["headers"] for r in seen if r["rpc"] == "tools/call"}
    assert by_mark[marks["hdr"]].get("x-upstream-key") == HDR_SECRET
    assert by_mark[marks["hdrb"]].get("authorization") == BASIC_VALUE
    assert "authorization" not in by_mark[marks["hdrn"]] and "x-upstream-key" not in by_mark[marks["hdrn"]]
    # The gateway's own calls (list fan-out) carry the credentials too.
    lists = [r["headers"] for r in seen if r["rpc"] == "tools/list"]
    assert sum(h.get("x-upstream-key") == HDR_SECRET for h in lists) >= 1, lists
    assert sum(h.get("authorization") == BASIC_VALUE for h in lists) >= 1, lists


def test_no_credential_appears_in_envoys_log_or_the_access_log(gw: harness.Envoy, http: httpx.Client, callers: Callers) -> None:
    token = callers.admin()
    s = session(http, gw, token)
    s.request("tools/call", {"name": "hdrb__hello", "arguments": {"name": "x"}})
    s.request("tools/call", {"name": "everything__echo", "arguments": {"message": "x"}})
    gw.wait_access_log(lambda e: e.get("mcp_name") == "hdrb__hello")
    text = gw.log() + gw.access_log_path.read_text()
    hmac_b64 = base64.urlsafe_b64encode(HMAC_SECRET).rstrip(b"=").decode()
    leaked = authkit.secrets_in(
        text, token, token.rsplit(".", 1)[1], HDR_SECRET, BASIC_PASSWORD, BASIC_VALUE.split(" ")[1], EVERYTHING_SECRET, hmac_b64
    )
    assert not leaked, f"credentials in the logs: {leaked}"



def test_repeated_decisions_come_from_the_cache_and_still_follow_the_callers_claims(
    gw: harness.Envoy, http: httpx.Client, rsa_key: SigningKey
) -> None:
    """demo.rego reads the roles claim, the method and the target, never the arguments: the
    gateway evaluates the first call of a caller and tool and answers the repeats from its
    decision cache (whatever the arguments), while the same subject with other roles, or another
    tool, is decided afresh and correctly."""
    sub = f"cache-{uuid.uuid4().hex[:8]}"
    admin = session(http, gw, rsa_key.token(claims(sub, roles=["admin"])))
    reader = session(http, gw, rsa_key.token(claims(sub, roles=["reader"])))

    def cache() -> dict[str, int]:
        return gw.stats(r"^wasmcustom\.mcp\.policy_cache_total")

    before = cache()
    for n in range(4):
        resp, reply = admin.request("tools/call", {"name": "py__add", "arguments": {"a": n, "b": 1}})
        assert resp.status_code == 200 and reply["result"]["content"][0]["text"] == str(n + 1), reply
    counted = delta(before, cache())
    assert counted == {"wasmcustom.mcp.policy_cache_total.result=miss": 1, "wasmcustom.mcp.policy_cache_total.result=hit": 3}, counted

    # Same sub, other roles: a different key, and the reader may not call py__add.
    before = cache()
    for _ in range(2):
        _, reply = reader.request("tools/call", {"name": "py__add", "arguments": {"a": 1, "b": 1}})
        assert reply["error"]["data"] == {"reason": "tool_not_allowed"}, reply
    _, reply = reader.request("tools/call", {"name": "py__echo", "arguments": {"message": "hi"}})
    assert "result" in reply, reply
    counted = delta(before, cache())
    assert counted == {"wasmcustom.mcp.policy_cache_total.result=miss": 2, "wasmcustom.mcp.policy_cache_total.result=hit": 1}, counted
