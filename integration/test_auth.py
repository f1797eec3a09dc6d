"""Authentication through real Envoy: the gateway as an OAuth 2.1 resource server (MCP
authorization) in front of one upstream, with keys from a remote JWKS and static API keys.

One Envoy (template configs/auth.yaml), MCP path `/echo/mcp` routed to the echo upstream, which
answers with the headers that reached it. `auth` in mode `jwtOrApiKey`: JWTs verified against the
tests' loopback JWKS server (fetched through the `idp` cluster; early refresh on an unknown `kid`
at most once a second), API keys in `x-api-key` or as a bearer value; every request needs scope
`mcp`; the upstream gets `upstreamCredentials` (a bearer of its own), never the client's.

The JWKS server answers 500 when the Envoy starts, so the first request meets a gateway that has
no keys (503); then the fixture lets the fetch succeed.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import httpx
import pytest

import authkit
import harness
from authkit import ISSUER, METADATA_URL, RESOURCE, SigningKey, bearer, claims
from harness import ACCEPT_BOTH, Server

pytestmark = pytest.mark.filter

TEMPLATE = harness.CONFIGS / "auth.yaml"
PATH = "/echo/mcp"
JSON_HEADERS = {"Content-Type": "application/json", "Accept": ACCEPT_BOTH}
API_KEY = "ak_" + secrets.token_urlsafe(32)
SCOPELESS_API_KEY = "ak_" + secrets.token_urlsafe(32)
UPSTREAM_SECRET = "upstream-" + secrets.token_urlsafe(24)
# Longest wait for the gateway to pick up a rotated JWKS after a token names a new kid: an early
# fetch is granted at most once per second (jwksMinRefreshIntervalSeconds) and starts on the next
# one-second tick.
ROTATION_DEADLINE_S = 4.0


@dataclass
class Keys:
    rsa: SigningKey
    ec: SigningKey
    ed: SigningKey
    # In the JWKS until the rotation test retires it.
    retiring: SigningKey
    # Added to the JWKS by the rotation test.
    rotated: SigningKey
    # Never published; signs with another key's kid (bad signature).
    stranger: SigningKey

    def published(self) -> dict[str, Any]:
        return authkit.jwks(self.rsa, self.ec, self.ed, self.retiring)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        rsa=SigningKey.rsa("rsa-1"),
        ec=SigningKey.ec("ec-1"),
        ed=SigningKey.ed25519("ed-1"),
        retiring=SigningKey.rsa("rsa-retiring"),
        rotated=SigningKey.rsa("rsa-2"),
        stranger=SigningKey.rsa("rsa-1"),
    )


@pytest.fixture(scope="module")
def idp(keys: Keys) -> Iterator[authkit.JwksServer]:
    """The loopback JWKS endpoint; failing (HTTP 500) until the `gw` fixture lets it answer."""
    server = authkit.JwksServer(keys.published(), status=500)
    try:
        yield server
    finally:
        server.stop()


def plugin_config(idp: authkit.JwksServer) -> dict[str, Any]:
    return {
        "mcpPaths": [PATH],
        "requireSessionId": False,
        "auth": {
            "mode": "jwtOrApiKey",
            "issuer": ISSUER,
            "jwksUri": idp.uri,
            "jwksCluster": "idp",
            "jwksMinRefreshIntervalSeconds": 1,
            "requiredScopes": ["mcp"],
            "resourceMetadata": {
                "resource": RESOURCE,
                "authorizationServers": [ISSUER],
                "scopesSupported": ["mcp"],
                "resourceName": "mcp-gateway-wasm tests",
            },
            "apiKeys": [
                {"sha256": authkit.sha256_hex(API_KEY), "subject": "ci-bot", "scopes": ["mcp"]},
                {"sha256": authkit.sha256_hex(SCOPELESS_API_KEY), "subject": "scopeless-bot"},
            ],
            "apiKeyHeader": "x-api-key",
        },
        "upstreamCredentials": {"bearer": UPSTREAM_SECRET},
        "identityHeaders": {"subject": "x-mcp-subject", "claims": {"email": "x-mcp-email"}},
    }


@dataclass
class Gateway:
    envoy: harness.Envoy
    idp: authkit.JwksServer
    # The answer to a valid token sent before any JWKS fetch had succeeded.
    before_keys: httpx.Response

    @property
    def url(self) -> str:
        return self.envoy.base_url + PATH


@pytest.fixture(scope="module")
def gw(envoy, echo_server: Server, idp: authkit.JwksServer, keys: Keys) -> Gateway:
    instance = envoy({"echo": echo_server, "idp": idp}, plugin_config(idp), template=TEMPLATE)
    with httpx.Client(timeout=10) as client:
        before = post(client, instance.base_url + PATH, bearer(keys.rsa.token(claims())))
        idp.serve(status=200)

        def accepted() -> bool:
            return post(client, instance.base_url + PATH, bearer(keys.rsa.token(claims()))).status_code == 200

        # Failed fetches are retried after 2 s, then 4 s.
        harness.wait_until(accepted, 15, "the gateway to fetch the JWKS", interval=0.25)
    return Gateway(instance, idp, before)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def call_body(request_id: int = 7) -> dict[str, Any]:
    return harness.rpc("tools/call", {"name": "echo", "arguments": {"message": "hi"}}, request_id)


def post(client: httpx.Client, url: str, headers: dict[str, str], request_id: int = 7) -> httpx.Response:
    return client.post(url, json=call_body(request_id), headers={**JSON_HEADERS, **headers})


def upstream_saw(resp: httpx.Response) -> dict[str, list[str]]:
    """The request headers that reached the echo upstream (it answers with them, wrapped in a
    JSON-RPC result when the request was a JSON-RPC request)."""
    assert resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:500]}"
    assert resp.headers.get("x-echo-upstream") == "1", resp.headers
    body = resp.json()
    return (body["result"]["echo"] if "result" in body else body)["headers"]


def auth_counters(envoy: harness.Envoy) -> dict[str, int]:
    return envoy.stats(r"^wasmcustom\.mcp\.(auth_total|requests_total)")


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def challenge(error: str | None = None, description: str | None = None, scope: str | None = None) -> str:
    """The exact `WWW-Authenticate` value the gateway sends."""
    params = []
    if error:
        params.append(f'error="{error}"')
    if description:
        params.append(f'error_description="{description}"')
    if scope:
        params.append(f'scope="{scope}"')
    params.append(f'resource_metadata="{METADATA_URL}"')
    return "Bearer " + ", ".join(params)


def assert_jsonrpc_error(resp: httpx.Response, message: str) -> None:
    assert resp.headers.get("content-type") == "application/json", resp.headers
    assert resp.headers.get("x-echo-upstream") is None, "the upstream answered: the request got through"
    assert resp.json() == {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}


# --- rejections -------------------------------------------------------------------------------

UNAUTHORIZED = "Unauthorized: invalid credentials"
INVALID = "The access token is invalid"


@dataclass
class Rejection:
    """A request the gateway must refuse: `credentials(keys)` gives its headers."""

    credentials: Callable[[Keys], dict[str, str]]
    status: int
    # `mcp.auth_total.result` label.
    reason: str
    www_authenticate: str
    message: str = UNAUTHORIZED


def tampered(token: str) -> str:
    """The token with another subject in its payload and the original signature."""
    head, payload, sig = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["sub"] = "mallory"
    return f"{head}.{authkit.b64url(json.dumps(body).encode())}.{sig}"


REJECTIONS: dict[str, Rejection] = {
    "no credentials": Rejection(lambda k: {}, 401, "missing", challenge(scope="mcp"), "Unauthorized: authentication required"),
    "another scheme": Rejection(
        lambda k: {"Authorization": "Basic dXNlcjpwYXNz"}, 401, "missing", challenge(scope="mcp"), "Unauthorized: authentication required"
    ),
    "not a JWS": Rejection(lambda k: bearer("abc.def.ghi"), 401, "malformed", challenge("invalid_token", INVALID)),
    "expired": Rejection(
        lambda k: bearer(k.rsa.token(claims(lifetime=-3600))), 401, "expired", challenge("invalid_token", "The access token expired")
    ),
    "not yet valid": Rejection(
        lambda k: bearer(k.rsa.token(claims(nbf=int(time.time()) + 3600))),
        401,
        "not_yet_valid",
        challenge("invalid_token", "The access token is not valid yet"),
    ),
    "without exp": Rejection(lambda k: bearer(k.rsa.token(claims(exp=None))), 401, "missing_claim", challenge("invalid_token", INVALID)),
    "wrong audience": Rejection(
        lambda k: bearer(k.ec.token(claims(aud="https://other.example.test/mcp"))),
        401,
        "wrong_audience",
        challenge("invalid_token", "The access token was not issued for this resource"),
    ),
    "wrong issuer": Rejection(
        lambda k: bearer(k.ed.token(claims(iss="https://evil.example.test"))),
        401,
        "wrong_issuer",
        challenge("invalid_token", "The access token was issued by an untrusted issuer"),
    ),
    "signed by another key": Rejection(
        lambda k: bearer(k.stranger.token(claims())), 401, "bad_signature", challenge("invalid_token", INVALID)
    ),
    "tampered payload": Rejection(
        lambda k: bearer(tampered(k.rsa.token(claims()))), 401, "bad_signature", challenge("invalid_token", INVALID)
    ),
    "alg none": Rejection(lambda k: bearer(authkit.unsigned(claims())), 401, "alg_not_allowed", challenge("invalid_token", INVALID)),
    "HS256 keyed with the RSA public key": Rejection(
        lambda k: bearer(authkit.hs256(k.rsa.public_pem(), claims(), kid=k.rsa.kid)),
        401,
        "alg_not_allowed",
        challenge("invalid_token", INVALID),
    ),
    "unknown kid": Rejection(
        lambda k: bearer(k.rsa.token(claims(), kid="no-such-key")), 401, "unknown_kid", challenge("invalid_token", INVALID)
    ),
    "wrong API key": Rejection(
        lambda k: {"x-api-key": "ak_" + secrets.token_urlsafe(32)}, 401, "invalid_api_key", challenge("invalid_token", "The API key is not valid")
    ),
    "missing scope": Rejection(
        lambda k: bearer(k.rsa.token(claims(scope="mcp:read profile"))),
        403,
        "insufficient_scope",
        challenge("insufficient_scope", "The access token lacks a scope this request needs", scope="mcp"),
        "Forbidden: insufficient scope",
    ),
    "API key without the scope": Rejection(
        lambda k: {"x-api-key": SCOPELESS_API_KEY},
        403,
        "insufficient_scope",
        challenge("insufficient_scope", "The access token lacks a scope this request needs", scope="mcp"),
        "Forbidden: insufficient scope",
    ),
}


@pytest.mark.parametrize("case", REJECTIONS.values(), ids=REJECTIONS.keys())
def test_a_refused_credential_gets_the_exact_challenge_and_never_reaches_the_upstream(
    gw: Gateway, http: httpx.Client, keys: Keys, case: Rejection
) -> None:
    before = auth_counters(gw.envoy)
    resp = post(http, gw.url, case.credentials(keys))
    assert resp.status_code == case.status, resp.text
    assert resp.headers.get_list("www-authenticate") == [case.www_authenticate]
    assert_jsonrpc_error(resp, case.message)
    counted = delta(before, auth_counters(gw.envoy))
    assert counted.get(f"wasmcustom.mcp.auth_total.result={case.reason}") == 1, counted
    denied = {k: v for k, v in counted.items() if k.startswith("wasmcustom.mcp.requests_total.") and k.endswith(".outcome=denied")}
    assert sum(denied.values()) == 1, counted


def test_a_token_before_the_first_jwks_fetch_gets_503_without_a_challenge(gw: Gateway) -> None:
    """No keys yet is the gateway's problem: 401 would send the client to re-authorize for nothing."""
    resp = gw.before_keys
    assert resp.status_code == 503, resp.text
    assert "www-authenticate" not in resp.headers
    assert_jsonrpc_error(resp, "Service Unavailable: the token signing keys are not available yet")
    assert gw.envoy.stats(r"auth_total")["wasmcustom.mcp.auth_total.result=keys_unavailable"] >= 1


def test_get_and_delete_need_credentials_too(gw: Gateway, http: httpx.Client) -> None:
    for method in ("GET", "DELETE"):
        resp = http.request(method, gw.url, headers={"Accept": "text/event-stream"})
        assert resp.status_code == 401, (method, resp.text)
        assert resp.headers["www-authenticate"] == challenge(scope="mcp")


PREFLIGHT = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"}


def test_a_cors_preflight_needs_no_credentials(gw: Gateway, http: httpx.Client) -> None:
    """Browsers never send credentials on a preflight (Fetch standard), so it is let through."""
    resp = http.options(gw.url, headers=PREFLIGHT)
    assert "www-authenticate" not in resp.headers
    upstream_saw(resp)


def test_an_unauthenticated_preflight_gets_no_credentials_upstream(gw: Gateway, http: httpx.Client, keys: Keys) -> None:
    """The preflight is not authenticated, so it must not travel upstream with the gateway's own
    credential, nor with whatever credentials the client put on it."""
    token = keys.rsa.token(claims())
    seen = upstream_saw(http.options(gw.url, headers={**PREFLIGHT, **bearer(token), "x-api-key": API_KEY}))
    assert "x-api-key" not in seen, "the client's API key reached the upstream"
    assert not any(token in v for values in seen.values() for v in values), "the client's token reached the upstream"
    assert "authorization" not in seen, f"an unauthenticated request went upstream with {seen['authorization']}"


# --- accepted credentials and what the upstream gets ---------------------------------------------


ACCEPTED: dict[str, Callable[[Keys], dict[str, str]]] = {
    "RS256": lambda k: bearer(k.rsa.token(claims())),
    "ES256": lambda k: bearer(k.ec.token(claims())),
    "EdDSA": lambda k: bearer(k.ed.token(claims())),
    "no kid (keys of the right type are tried)": lambda k: bearer(k.ec.token(claims(), kid=None)),
    "audience list containing the resource": lambda k: bearer(k.rsa.token(claims(aud=["https://other.example.test", RESOURCE]))),
    "expired within the leeway": lambda k: bearer(k.ed.token(claims(lifetime=-30))),
    "lower-case scheme": lambda k: {"Authorization": "bearer " + k.rsa.token(claims())},
    "API key header": lambda k: {"x-api-key": API_KEY},
    "API key as bearer": lambda k: bearer(API_KEY),
}


@pytest.mark.parametrize("credentials", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_an_accepted_credential_is_replaced_by_the_upstream_credential(
    gw: Gateway, http: httpx.Client, keys: Keys, credentials: Callable[[Keys], dict[str, str]]
) -> None:
    sent = credentials(keys)
    seen = upstream_saw(post(http, gw.url, sent))
    assert seen.get("authorization") == [f"Bearer {UPSTREAM_SECRET}"]
    assert "x-api-key" not in seen
    client_secret = next(iter(sent.values())).split(" ")[-1]
    assert not any(client_secret in v for values in seen.values() for v in values), "the client's credential reached the upstream"


def test_the_upstream_credential_is_presented_on_get_streams_too(gw: Gateway, http: httpx.Client, keys: Keys) -> None:
    token = keys.rsa.token(claims())
    resp = http.get(gw.url, headers={"Accept": "text/event-stream", **bearer(token)})
    seen = upstream_saw(resp)
    assert seen.get("authorization") == [f"Bearer {UPSTREAM_SECRET}"]


def test_paths_that_are_not_mcp_endpoints_are_neither_authenticated_nor_rewritten(gw: Gateway, http: httpx.Client) -> None:
    resp = http.get(gw.envoy.base_url + "/other", headers={"Authorization": "Bearer not-checked-here"})
    seen = upstream_saw(resp)
    assert seen.get("authorization") == ["Bearer not-checked-here"]


def test_a_verified_token_is_counted_ok_then_ok_cached(gw: Gateway, http: httpx.Client, keys: Keys) -> None:
    headers = bearer(keys.ec.token(claims()))
    before = auth_counters(gw.envoy)
    for _ in range(3):
        upstream_saw(post(http, gw.url, headers))
    counted = delta(before, auth_counters(gw.envoy))
    assert counted.get("wasmcustom.mcp.auth_total.result=ok") == 1, counted
    assert counted.get("wasmcustom.mcp.auth_total.result=ok_cached") == 2, counted
    assert counted.get("wasmcustom.mcp.requests_total.method=tools_call.outcome=ok") == 3, counted


# --- RFC 9728 metadata --------------------------------------------------------------------------

METADATA = {
    "resource": RESOURCE,
    "authorization_servers": [ISSUER],
    "scopes_supported": ["mcp"],
    "bearer_methods_supported": ["header"],
    "resource_name": "mcp-gateway-wasm tests",
}


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/echo/mcp",
        "/.well-known/oauth-protected-resource/mcp?x=1",
    ],
    ids=["resource path", "root", "mcp endpoint path", "with query"],
)
def test_the_protected_resource_metadata_is_served_without_credentials(gw: Gateway, http: httpx.Client, path: str) -> None:
    resp = http.get(gw.envoy.base_url + path)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["cache-control"] == "max-age=300"
    assert resp.json() == METADATA


def test_the_challenge_points_at_a_metadata_url_the_gateway_serves(gw: Gateway, http: httpx.Client) -> None:
    header = post(http, gw.url, {}).headers["www-authenticate"]
    url = re.search(r'resource_metadata="([^"]+)"', header)
    assert url and url.group(1) == METADATA_URL
    resp = http.get(gw.envoy.base_url + url.group(1).removeprefix("https://gateway.example.test"))
    assert resp.status_code == 200 and resp.json()["resource"] == RESOURCE


def test_other_well_known_suffixes_are_not_answered_by_the_gateway(gw: Gateway, http: httpx.Client) -> None:
    resp = http.get(gw.envoy.base_url + "/.well-known/oauth-protected-resource/elsewhere")
    assert resp.status_code == 404  # no route: Envoy's own answer


# --- remote JWKS: rotation and failures ----------------------------------------------------------


def test_a_new_signing_key_is_fetched_early_and_a_retired_one_stops_working(gw: Gateway, http: httpx.Client, keys: Keys) -> None:
    """Runs before the failure test below (file order), so the only fetch it can see is the early
    one its unknown kid asks for: the regular refresh is 300 s away."""
    retiring_token = bearer(keys.retiring.token(claims()))
    upstream_saw(post(http, gw.url, retiring_token))  # verified and cached
    rotated_at = time.monotonic()
    gw.idp.serve(authkit.jwks(keys.rsa, keys.ec, keys.ed, keys.rotated))
    new_token = bearer(keys.rotated.token(claims()))
    first = post(http, gw.url, new_token)
    answers = [first.status_code]
    if first.status_code != 200:
        assert first.status_code == 401 and 'error="invalid_token"' in first.headers["www-authenticate"], first.text
        deadline = rotated_at + ROTATION_DEADLINE_S
        while time.monotonic() < deadline and answers[-1] != 200:
            time.sleep(0.2)
            answers.append(post(http, gw.url, new_token).status_code)
    assert answers[-1] == 200, f"the rotated key was not picked up within {ROTATION_DEADLINE_S}s: {answers}"
    assert gw.idp.fetches_since(rotated_at) >= 1
    # The new document dropped the retiring key, and emptied the verified-token cache with it.
    resp = post(http, gw.url, retiring_token)
    assert resp.status_code == 401, resp.text
    assert resp.headers["www-authenticate"] == challenge("invalid_token", INVALID)


def test_a_failing_jwks_refresh_keeps_the_last_good_keys(gw: Gateway, http: httpx.Client, keys: Keys) -> None:
    gw.idp.serve(status=500)
    try:
        started = time.monotonic()
        harness.wait_until(
            lambda: post(http, gw.url, bearer(keys.rsa.token(claims(), kid=f"probe-{uuid.uuid4().hex}"))).status_code == 401
            and gw.idp.fetches_since(started) >= 1,
            ROTATION_DEADLINE_S,
            "an early JWKS fetch (answered 500)",
            interval=0.3,
        )
        time.sleep(0.3)  # let the failed answer reach the gateway
        for key in (keys.rsa, keys.ec, keys.ed):
            upstream_saw(post(http, gw.url, bearer(key.token(claims()))))  # fresh tokens: no cache hits
    finally:
        gw.idp.serve(status=200)


# --- secrets ----------------------------------------------------------------------------------------


def test_no_credential_appears_in_envoys_log_or_the_access_log(gw: Gateway, http: httpx.Client, keys: Keys) -> None:
    token = keys.rsa.token(claims())
    bad_token = keys.stranger.token(claims())
    tag = {"X-Test-Id": uuid.uuid4().hex}
    upstream_saw(post(http, gw.url, {**bearer(token), **tag}))
    post(http, gw.url, {**bearer(bad_token), **tag})
    upstream_saw(post(http, gw.url, {"x-api-key": API_KEY, **tag}))
    post(http, gw.url, {"x-api-key": API_KEY + "x", **tag})
    gw.envoy.wait_access_log(lambda e: e.get("request_id") == tag["X-Test-Id"] and str(e.get("status")) == "401")
    time.sleep(0.2)
    text = gw.envoy.log() + gw.envoy.access_log_path.read_text()
    signatures = [t.rsplit(".", 1)[1] for t in (token, bad_token)]
    leaked = authkit.secrets_in(text, token, bad_token, *signatures, API_KEY, UPSTREAM_SECRET)
    assert not leaked, f"credentials in the logs: {leaked}"



def test_the_verified_identity_reaches_the_upstream_and_a_forged_one_does_not(gw: Gateway, http: httpx.Client, keys: Keys) -> None:
    forged = {"x-mcp-subject": "mallory", "x-mcp-email": "mallory@evil.example"}
    token = keys.rsa.token(claims("alice", email="alice@example.com"))
    seen = upstream_saw(post(http, gw.url, {**bearer(token), **forged}))
    assert seen.get("x-mcp-subject") == ["alice"], seen
    assert seen.get("x-mcp-email") == ["alice@example.com"], seen
    # A token without the claim: no header at all, not the client's copy.
    seen = upstream_saw(post(http, gw.url, {**bearer(keys.rsa.token(claims("bob"))), **forged}))
    assert seen.get("x-mcp-subject") == ["bob"], seen
    assert "x-mcp-email" not in seen, seen
