#!/usr/bin/env python3
"""Renders the demo's Envoy bootstrap with fresh secrets, and mints the demo's tokens.

    .venv/bin/python scripts/demo_setup.py target/demo
    python scripts/demo_setup.py /config --template deploy/compose/envoy.yaml   # docker compose's setup

At every start of `make demo`:
  * a new federation session key (32 random bytes),
  * a new ES256 key pair standing in for an identity provider: its public half goes into the
    gateway's inline JWKS, its private half signs one token per demo role and is then forgotten
    (never written to disk, never committed),
  * target/demo/tokens/<role>.jwt for the roles of policies/demo.rego (admin, reader), valid 24 h,
  * target/demo/envoy.yaml (mode 0600): envoy/demo.yaml (or `--template`, a path relative to the
    repository root) with ${SESSION_KEY}, ${DEMO_JWKS} and ${DEMO_POLICY} filled in.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ROOT = Path(__file__).resolve().parent.parent
ISSUER = "https://demo-idp.invalid"
RESOURCE = "http://127.0.0.1:10000/mcp"
ROLES = {"admin": ["admin"], "reader": ["reader"]}


def main(out: Path, template: Path = Path("envoy/demo.yaml")) -> None:
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    public.update(kid="demo-1", alg="ES256", use="sig")
    tokens = out / "tokens"
    tokens.mkdir(exist_ok=True)
    now = int(time.time())
    for role, roles in ROLES.items():
        claims = {"iss": ISSUER, "aud": RESOURCE, "sub": f"demo-{role}", "roles": roles,
                  "scope": "mcp", "iat": now, "exp": now + 24 * 3600}
        token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "demo-1"})
        path = tokens / f"{role}.jwt"
        path.write_text(token + "\n")
        path.chmod(0o600)
    values = {
        "${SESSION_KEY}": base64.b64encode(os.urandom(32)).decode(),
        "${DEMO_JWKS}": json.dumps({"keys": [public]}),
        "${DEMO_POLICY}": json.dumps((ROOT / "policies" / "demo.rego").read_text()),
    }
    text = (ROOT / template).read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    target = out / "envoy.yaml"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="?", default=Path("target/demo"), help="where envoy.yaml and tokens/ go")
    parser.add_argument("--template", type=Path, default=Path("envoy/demo.yaml"), help="the bootstrap template, relative to the repository root")
    args = parser.parse_args()
    main(args.out, args.template)
