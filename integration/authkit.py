"""Helpers for the authentication tests: test signing keys made at test time, JWTs minted from
them (well-formed, and the malformed and malicious ones a resource server must refuse), a loopback
JWKS server whose document and failures the tests control, and a process wrapper for
servers/header_server.py, an MCP server that records every header it receives.

No network identity provider is involved: the tests are the issuer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

import harness

ISSUER = "https://idp.example.test"
# The gateway's resource identifier (RFC 8707 audience); the metadata document lives at
# https://gateway.example.test/.well-known/oauth-protected-resource/mcp.
RESOURCE = "https://gateway.example.test/mcp"
METADATA_URL = "https://gateway.example.test/.well-known/oauth-protected-resource/mcp"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(n: int, length: int | None = None) -> bytes:
    return n.to_bytes(length or (n.bit_length() + 7) // 8, "big")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class SigningKey:
    """A test key pair: `alg` is the JWS algorithm it signs, `kid` its JWKS key id."""

    alg: str
    kid: str
    private: Any

    @classmethod
    def rsa(cls, kid: str) -> "SigningKey":
        return cls("RS256", kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def ec(cls, kid: str) -> "SigningKey":
        return cls("ES256", kid, ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def ed25519(cls, kid: str) -> "SigningKey":
        return cls("EdDSA", kid, ed25519.Ed25519PrivateKey.generate())

    def public_jwk(self) -> dict[str, Any]:
        """The public key as a JWK, with `kid`, `alg` and `use`."""
        pub = self.private.public_key()
        if self.alg == "RS256":
            numbers = pub.public_numbers()
            key = {"kty": "RSA", "n": b64url(_int_bytes(numbers.n)), "e": b64url(_int_bytes(numbers.e))}
        elif self.alg == "ES256":
            numbers = pub.public_numbers()
            key = {"kty": "EC", "crv": "P-256", "x": b64url(_int_bytes(numbers.x, 32)), "y": b64url(_int_bytes(numbers.y, 32))}
        else:
            raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            key = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
        return {**key, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def public_der(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, data: bytes) -> bytes:
        """A JWS signature over `data` (ES256 as raw r||s, as RFC 7518 wants, not DER)."""
        if self.alg == "RS256":
            return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        if self.alg == "ES256":
            r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(hashes.SHA256())))
            return _int_bytes(r, 32) + _int_bytes(s, 32)
        return self.private.sign(data)

    def token(self, payload: dict[str, Any], **header: Any) -> str:
        """A JWT signed with this key; `header` overrides (`kid=None` drops the kid)."""
        head = {"alg": self.alg, "typ": "JWT", "kid": self.kid, **header}
        return jws({k: v for k, v in head.items() if v is not None}, payload, self.sign)


def jwks(*keys: SigningKey, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"keys": [k.public_jwk() for k in keys] + (extra or [])}


def oct_jwk(secret: bytes, kid: str) -> dict[str, Any]:
    """An inline HS256 key (only inline JWKS may carry one)."""
    return {"kty": "oct", "k": b64url(secret), "kid": kid, "alg": "HS256"}


def jws(header: dict[str, Any], payload: dict[str, Any], sign: Any) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def hs256(secret: bytes, payload: dict[str, Any], kid: str | None = None) -> str:
    """An HS256 token with `secret` as the HMAC key (for algorithm-confusion attacks: a public key)."""
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    return jws(header, payload, lambda data: hmac.new(secret, data, hashlib.sha256).digest())


def unsigned(payload: dict[str, Any], alg: str = "none") -> str:
    """`alg: none`: no signature at all (`header.payload.`)."""
    return jws({"alg": alg, "typ": "JWT"}, payload, lambda data: b"")


def claims(
    sub: str = "alice",
    *,
    scope: str | None = "mcp",
    aud: str | list[str] = RESOURCE,
    iss: str = ISSUER,
    lifetime: int = 600,
    **more: Any,
) -> dict[str, Any]:
    """Claims of a valid token for the gateway; each call gets a fresh `jti`, so tokens never
    collide in the gateway's verified-token cache unless a test reuses one on purpose."""
    now = int(time.time())
    out: dict[str, Any] = {"iss": iss, "sub": sub, "aud": aud, "iat": now, "exp": now + lifetime, "jti": uuid.uuid4().hex}
    if scope is not None:
        out["scope"] = scope
    out.update(more)
    return {k: v for k, v in out.items() if v is not None}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- a loopback JWKS endpoint -----------------------------------------------------------------


class JwksServer:
    """Serves `document` as JSON at any path on 127.0.0.1, or answers `status` with a text body
    while `status` is not 200. Records when each fetch arrived (`fetches`, monotonic seconds).
    Runs in a thread of the test process; `port` is what the Envoy template's `idp` cluster needs."""

    def __init__(self, document: dict[str, Any], status: int = 200) -> None:
        self.document = document
        self.status = status
        self.fetches: list[float] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                with outer.lock:
                    outer.fetches.append(time.monotonic())
                    status, document = outer.status, outer.document
                body = json.dumps(document).encode() if status == 200 else b"identity provider unavailable"
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if status == 200 else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port: int = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="jwks-server", daemon=True)
        self.thread.start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    def serve(self, document: dict[str, Any] | None = None, status: int = 200) -> None:
        with self.lock:
            if document is not None:
                self.document = document
            self.status = status

    def fetch_count(self) -> int:
        with self.lock:
            return len(self.fetches)

    def fetches_since(self, t: float) -> int:
        with self.lock:
            return sum(1 for f in self.fetches if f >= t)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- an MCP server that records headers --------------------------------------------------------


def start_header_server(tmp: Path) -> harness.Server:
    """servers/header_server.py on a free port; `Server.requests()` gives one dict per HTTP
    request: {"http", "path", "headers": {lower-case name: value}, "rpc", "name", "arguments"}."""
    port = harness.free_port()
    log = tmp / f"header-server-{port}.requests.jsonl"
    log.unlink(missing_ok=True)
    argv = [sys.executable, str(harness.SERVERS / "header_server.py"), "--port", str(port), "--request-log", str(log)]
    proc = harness.Proc("header-server", argv, tmp / f"header-server-{port}.log", env=harness.minimal_env(), cwd=tmp).start()
    harness.wait_for_port(proc, port)
    return harness.Server("header", port, proc, request_log=log)


def secrets_in(text: str, *secrets: str) -> list[str]:
    """Which of `secrets` occur in `text` (for log checks; never prints a whole secret)."""
    return [s[:12] + "…" for s in secrets if s and s in text]
