"""Bad input gets the gateway's own answer, a JSON-RPC error with the right HTTP status, and never
reaches the upstream; good input on the same Envoy keeps working afterwards (the VM survived).

The MCP routes here lead to the echo upstream, which answers everything with 200 and an
`X-Echo-Upstream` header, so any 4xx below can only have come from the gateway."""

from __future__ import annotations

import socket

import base64
import json
from typing import Any, Iterator

import httpx
import pytest

import harness
from harness import ACCEPT_BOTH, Server

pytestmark = pytest.mark.filter

MAX_REQUEST_BYTES = 1024


VM_ACTIVE = "wasm.envoy.wasm.runtime.v8.active"


@pytest.fixture(scope="module")
def gw(envoy, echo_server: Server) -> harness.Envoy:
    instance = envoy({"echo": echo_server}, {"mcpPaths": harness.MCP_PATHS, "maxRequestBytes": MAX_REQUEST_BYTES})
    instance.vms_at_start = instance.stats("wasm")[VM_ACTIVE]  # type: ignore[attr-defined]
    return instance


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture(autouse=True)
def good_request_still_works_afterwards(gw: harness.Envoy, http: httpx.Client) -> Iterator[None]:
    yield
    resp = http.post(gw.base_url + "/echo/mcp", json=harness.initialize_body(1000), headers={"Accept": ACCEPT_BOTH})
    assert resp.status_code == 200, f"a good initialize after the test failed: {resp.status_code} {resp.text[:500]}"
    assert resp.headers.get("x-echo-upstream") == "1"


def url(gw: harness.Envoy, path: str = "/echo/mcp") -> str:
    return gw.base_url + path


JSON_HEADERS = {"Content-Type": "application/json", "Accept": ACCEPT_BOTH}
# For requests whose point is something else: a session-era request with a session id, so the
# session check has nothing to say about it.
SESSION_HEADERS = {**JSON_HEADERS, "MCP-Protocol-Version": "2025-06-18", "Mcp-Session-Id": "s-1"}


ANY_ID = object()


def assert_gateway_error(resp: httpx.Response, status: int, code: int, request_id: Any = None) -> dict[str, Any]:
    """`resp` is the gateway's JSON-RPC error reply; returns its `error` object. `request_id` is
    the id the reply must carry (None: the gateway could not read one), or ANY_ID."""
    assert resp.status_code == status, f"HTTP {resp.status_code}: {resp.text[:500]}"
    assert "x-echo-upstream" not in resp.headers, "the request reached the upstream"
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert body["jsonrpc"] == "2.0"
    if request_id is not ANY_ID:
        assert body["id"] == request_id
    assert "result" not in body
    error = body["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    return error


def assert_reached_upstream(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:500]}"
    assert resp.headers.get("x-echo-upstream") == "1"
    body = resp.json()
    return body["result"]["echo"] if "result" in body else body


# --- JSON-RPC framing -------------------------------------------------------------------------


def test_unparseable_json_gets_400_parse_error_with_null_id(gw: harness.Envoy, http: httpx.Client) -> None:
    resp = http.post(url(gw), content=b"{bad json", headers=SESSION_HEADERS)
    assert_gateway_error(resp, 400, -32700, None)


def test_jsonrpc_1_0_gets_400_invalid_request_echoing_the_id(gw: harness.Envoy, http: httpx.Client) -> None:
    resp = http.post(url(gw), json={"jsonrpc": "1.0", "id": 1, "method": "ping"}, headers=SESSION_HEADERS)
    assert_gateway_error(resp, 400, -32600, 1)


def test_string_id_is_echoed_on_invalid_request(gw: harness.Envoy, http: httpx.Client) -> None:
    resp = http.post(url(gw), json={"id": "abc-1", "method": "ping"}, headers=SESSION_HEADERS)
    assert_gateway_error(resp, 400, -32600, "abc-1")


def test_json_object_that_is_not_jsonrpc_gets_400_invalid_request(gw: harness.Envoy, http: httpx.Client) -> None:
    resp = http.post(url(gw), json={"foo": 1}, headers=SESSION_HEADERS)
    assert_gateway_error(resp, 400, -32600, None)


@pytest.mark.parametrize("body", [b"42", b'"ping"', b"null", b""], ids=["number", "string", "null", "empty"])
def test_json_that_is_not_an_object_gets_400(gw: harness.Envoy, http: httpx.Client, body: bytes) -> None:
    resp = http.post(url(gw), content=body, headers=SESSION_HEADERS)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] in (-32700, -32600)
    assert "x-echo-upstream" not in resp.headers


def test_batch_gets_400_invalid_request_saying_batches_are_unsupported(gw: harness.Envoy, http: httpx.Client) -> None:
    batch = [{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": 2, "method": "ping"}]
    resp = http.post(url(gw), json=batch, headers=SESSION_HEADERS)
    error = assert_gateway_error(resp, 400, -32600, None)
    assert "batch" in error["message"].lower()


# --- size and media type ----------------------------------------------------------------------


def padded_ping(size: int) -> bytes:
    """A valid JSON-RPC ping of exactly `size` bytes."""
    head = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"pad":"'
    tail = b'"}}}'
    body = head + b"x" * (size - len(head) - len(tail)) + tail
    assert len(body) == size and json.loads(body)
    return body


def test_body_at_max_request_bytes_passes(gw: harness.Envoy, http: httpx.Client) -> None:
    resp = http.post(url(gw), content=padded_ping(MAX_REQUEST_BYTES), headers=SESSION_HEADERS)
    assert assert_reached_upstream(resp)["body"].encode("latin-1") == padded_ping(MAX_REQUEST_BYTES)


def test_body_over_max_request_bytes_gets_413_naming_the_setting(gw: harness.Envoy, http: httpx.Client) -> None:
    resp = http.post(url(gw), content=padded_ping(MAX_REQUEST_BYTES + 1), headers=SESSION_HEADERS)
    error = assert_gateway_error(resp, 413, -32600, None)
    assert "maxRequestBytes" in error["message"]


def test_chunked_body_over_max_request_bytes_gets_413(gw: harness.Envoy, http: httpx.Client) -> None:
    body = padded_ping(8 * MAX_REQUEST_BYTES)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the gateway must count as it buffers
        for i in range(0, len(body), 500):
            yield body[i : i + 500]

    resp = http.post(url(gw), content=chunks(), headers=SESSION_HEADERS)
    error = assert_gateway_error(resp, 413, -32600, None)
    assert "maxRequestBytes" in error["message"]


def test_text_plain_gets_415(gw: harness.Envoy, http: httpx.Client) -> None:
    resp = http.post(url(gw), content=json.dumps(harness.rpc("ping")), headers={**SESSION_HEADERS, "Content-Type": "text/plain"})
    assert_gateway_error(resp, 415, -32600, None)


def test_json_content_type_with_charset_passes(gw: harness.Envoy, http: httpx.Client) -> None:
    resp = http.post(url(gw), json=harness.initialize_body(5), headers={"Content-Type": "application/json; charset=utf-8", "Accept": ACCEPT_BOTH})
    assert assert_reached_upstream(resp)["method"] == "POST"


# --- session and protocol version -------------------------------------------------------------


def test_session_era_request_without_session_id_gets_400(gw: harness.Envoy, http: httpx.Client) -> None:
    resp = http.post(url(gw), json=harness.rpc("tools/list", request_id=9), headers={**JSON_HEADERS, "MCP-Protocol-Version": "2025-06-18"})
    error = assert_gateway_error(resp, 400, -32600, 9)
    assert "mcp-session-id" in error["message"].lower()


def test_initialize_without_session_id_passes(gw: harness.Envoy, http: httpx.Client) -> None:
    resp = http.post(url(gw), json=harness.initialize_body(3, "2025-06-18"), headers=JSON_HEADERS)
    assert json.loads(assert_reached_upstream(resp)["body"])["method"] == "initialize"


def test_session_era_request_with_session_id_passes(gw: harness.Envoy, http: httpx.Client) -> None:
    headers = {**JSON_HEADERS, "MCP-Protocol-Version": "2025-06-18", "Mcp-Session-Id": "abc"}
    resp = http.post(url(gw), json=harness.rpc("tools/list", request_id=4), headers=headers)
    assert assert_reached_upstream(resp)["headers"]["mcp-session-id"] == ["abc"]


def test_unknown_protocol_version_gets_400_listing_supported_versions(gw: harness.Envoy, http: httpx.Client) -> None:
    headers = {**JSON_HEADERS, "MCP-Protocol-Version": "1999-01-01", "Mcp-Session-Id": "abc"}
    resp = http.post(url(gw), json=harness.rpc("tools/list", request_id=11), headers=headers)
    # Rejected on the header alone, before the body is read: the id may be null.
    error = assert_gateway_error(resp, 400, -32022, ANY_ID)
    assert resp.json()["id"] in (None, 11)
    assert error["data"]["requested"] == "1999-01-01"
    supported = error["data"]["supported"]
    assert isinstance(supported, list) and "2025-06-18" in supported and "2026-07-28" in supported


# --- 2026-07-28 routing headers must match the body -------------------------------------------


def modern_call(name: str, request_id: int = 20) -> dict[str, Any]:
    return harness.rpc("tools/call", {"name": name, "arguments": {}, "_meta": harness.modern_meta()}, request_id)


def test_mcp_method_header_that_contradicts_the_body_gets_header_mismatch(gw: harness.Envoy, http: httpx.Client) -> None:
    resp = http.post(url(gw), json=modern_call("echo"), headers=harness.modern_headers("tools/list", "echo"))
    assert_gateway_error(resp, 400, -32020, 20)


def test_mcp_name_header_that_contradicts_the_body_gets_header_mismatch(gw: harness.Envoy, http: httpx.Client) -> None:
    resp = http.post(url(gw), json=modern_call("echo"), headers=harness.modern_headers("tools/call", "add"))
    assert_gateway_error(resp, 400, -32020, 20)


def test_missing_mcp_method_header_gets_header_mismatch(gw: harness.Envoy, http: httpx.Client) -> None:
    headers = harness.modern_headers("tools/call", "echo")
    del headers["Mcp-Method"]
    resp = http.post(url(gw), json=modern_call("echo"), headers=headers)
    assert_gateway_error(resp, 400, -32020, 20)


def test_missing_mcp_name_header_on_tools_call_gets_header_mismatch(gw: harness.Envoy, http: httpx.Client) -> None:
    resp = http.post(url(gw), json=modern_call("echo"), headers=harness.modern_headers("tools/call"))
    assert_gateway_error(resp, 400, -32020, 20)


def test_matching_modern_headers_pass(gw: harness.Envoy, http: httpx.Client) -> None:
    resp = http.post(url(gw), json=modern_call("echo"), headers=harness.modern_headers("tools/call", "echo"))
    assert json.loads(assert_reached_upstream(resp)["body"])["params"]["name"] == "echo"


def test_base64_sentinel_mcp_name_that_decodes_to_the_body_name_passes(gw: harness.Envoy, http: httpx.Client) -> None:
    name = "wetter-zürich"
    sentinel = "=?base64?" + base64.b64encode(name.encode()).decode() + "?="
    resp = http.post(url(gw), json=modern_call(name), headers=harness.modern_headers("tools/call", sentinel))
    assert json.loads(assert_reached_upstream(resp)["body"].encode("latin-1"))["params"]["name"] == name


def test_base64_sentinel_mcp_name_that_decodes_to_another_name_gets_header_mismatch(gw: harness.Envoy, http: httpx.Client) -> None:
    sentinel = "=?base64?" + base64.b64encode(b"add").decode() + "?="
    resp = http.post(url(gw), json=modern_call("echo"), headers=harness.modern_headers("tools/call", sentinel))
    assert_gateway_error(resp, 400, -32020, 20)


# --- Origin, Host, HTTP method ----------------------------------------------------------------


def test_foreign_origin_gets_403_with_jsonrpc_error(gw: harness.Envoy, http: httpx.Client) -> None:
    resp = http.post(url(gw), json=harness.initialize_body(1), headers={**JSON_HEADERS, "Origin": "http://evil.example"})
    assert resp.status_code == 403
    assert "x-echo-upstream" not in resp.headers
    body = resp.json()
    assert body["jsonrpc"] == "2.0" and isinstance(body["error"]["code"], int)


def test_localhost_origin_passes(gw: harness.Envoy, http: httpx.Client) -> None:
    resp = http.post(url(gw), json=harness.initialize_body(1), headers={**JSON_HEADERS, "Origin": "http://localhost:1234"})
    assert assert_reached_upstream(resp)["headers"]["origin"] == ["http://localhost:1234"]


def test_foreign_host_gets_403(gw: harness.Envoy, http: httpx.Client) -> None:
    resp = http.post(url(gw), json=harness.initialize_body(1), headers={**JSON_HEADERS, "Host": "evil.example"})
    assert resp.status_code == 403
    assert "x-echo-upstream" not in resp.headers
    assert resp.json()["jsonrpc"] == "2.0"


def test_put_gets_405_with_allow_header(gw: harness.Envoy, http: httpx.Client) -> None:
    resp = http.put(url(gw), json=harness.rpc("ping"), headers=SESSION_HEADERS)
    assert resp.status_code == 405
    assert "x-echo-upstream" not in resp.headers
    allowed = {m.strip().upper() for m in resp.headers["allow"].split(",")}
    assert "POST" in allowed and "PUT" not in allowed


# --- not an MCP path --------------------------------------------------------------------------


def test_non_mcp_path_passes_untouched_even_with_junk_body(gw: harness.Envoy, http: httpx.Client) -> None:
    junk = b"{bad json \x00\xff" + b"z" * (4 * MAX_REQUEST_BYTES)
    resp = http.post(url(gw, "/other?x=1"), content=junk, headers={"Content-Type": "text/plain", "X-Mcp-Name": "client-value"})
    seen = assert_reached_upstream(resp)
    assert seen["path"] == "/other?x=1"
    assert seen["body"].encode("latin-1") == junk
    assert seen["headers"]["x-mcp-name"] == ["client-value"]
    assert "x-mcp-method" not in seen["headers"]


def test_mcp_path_is_matched_exactly_not_by_prefix(gw: harness.Envoy, http: httpx.Client) -> None:
    # /echo/mcp/extra is routed (prefix) to the echo upstream but is not a configured MCP path.
    resp = http.post(url(gw, "/echo/mcp/extra"), content=b"{bad json", headers=JSON_HEADERS)
    assert assert_reached_upstream(resp)["body"] == "{bad json"


# --- bytes that are not UTF-8 -----------------------------------------------------------------


@pytest.mark.parametrize("header", ["Origin", "Mcp-Session-Id", "Content-Type", "Mcp-Name", "Authorization", "X-Request-Id"])
def test_a_header_value_that_is_not_utf8_is_answered_and_the_vm_survives(gw: harness.Envoy, header: str) -> None:
    """HTTP/1.1 allows obs-text (bytes 0x80-0xFF) in header values and Envoy passes them on; the
    filter reads these headers and must treat such a value as the junk it is, not panic (a panic
    kills the VM for every request)."""
    body = json.dumps(harness.initialize_body(7)).encode()
    host = gw.base_url.split("//", 1)[1]
    request = (
        f"POST /echo/mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Accept: {ACCEPT_BOTH}\r\nContent-Length: {len(body)}\r\n"
    ).encode()
    if header == "Content-Type":
        request = request.replace(b"Content-Type: application/json\r\n", b"")
    request += header.encode() + b": caf\xe9 \xff\xfe\r\nConnection: close\r\n\r\n" + body
    addr, port = host.rsplit(":", 1)
    with socket.create_connection((addr, int(port)), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    assert status < 500, reply[:500]
    assert "panicked" not in gw.log()


# --- the VM survived all of it ----------------------------------------------------------------


def test_no_wasm_vm_panicked(gw: harness.Envoy) -> None:
    assert "panicked" not in gw.log()
    stats = gw.stats("wasm")
    assert stats[VM_ACTIVE] == gw.vms_at_start, stats  # type: ignore[attr-defined]
    assert stats["wasm.mcp_gateway.vm_reload"] == 0, stats
