//! Test support: fixed keys (committed, test-only), token minting, and a standard config.
//!
//! Keys are constants rather than generated: RSA key generation in a debug build takes seconds,
//! and fixed keys keep failures reproducible. They protect nothing.

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::Mac as _;
use p256::ecdsa::signature::Signer as _;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{json, Value};
use sha2::Digest as _;

use super::config::AuthConfig;

pub const NOW: u64 = 1_750_000_000;
pub const ISSUER: &str = "https://auth.example.com";
pub const AUDIENCE: &str = "https://mcp.example.com/mcp";
pub const HMAC_SECRET: &[u8] = b"test-only hs256 secret, 32+ bytes long!";

const RSA1_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCmIu0dAogGIaEn
QPyIZyF6vvrDboLOl77RojtFPV1OU8xwvAtBK2d50k09GuPDT2hduhzAKkn0eAPk
nI8Hx2ZMTD5XShinmjk/JmQfX15mlfbt46iNo22f8FnyS4WY0KStcZnz7GSxJ9ii
I7puF7WX6TyOZU5WnKnQuScxj1kuu/gTitYCyHQuiakyD5P+Ghmhk64Y7OtUGr0L
AJSpFqh0fUKx3P/razNjUrrIoc59KrAC9VrM3REsDS3QlBkacxxF0kz1i+y+apm5
4MMILPPVWZzUAWHmNkOQCqZF+bNMu2dlb2UUCullpHABUxZyQw1IRf3EWIUz1IiC
eUfq3VWXAgMBAAECggEABr+IbhM6PzWCfDuxhkDaJUg4m1OT0JxtTcqPKcLSVWol
9bZNproCm/ok1QSQl9BT5uq2XD/bfSiaz+BkFubMivDV32nNEpG7HYuLqZKQHQ6e
Vw9WO1qWC1cR8DuNE6X16m2g2T2S4XdC32MgIXSpFaCNqyMGSZJXe3jp1KOD9dfv
9rCTRz3TH7oPdZFOLZha4TStYt8jZ+YFnJBszyko7NW2rzgHPLfwjOtQBbcnsyId
Qz7wdmY979T5hkpGDUeq2lQfE4ZxhzrhwAJ60OY7fsQhEZuPLqRl+R3Rfkkju5LV
d4RfUZsiYZIgX1GNYtAeZBFehRhxGURH6eDVE60WAQKBgQDZdrDEXoOelM77vWB5
Ct2GSXTOA8o4ltTCo6Bv7OEOpI8nScXTIqYffRIm+OzNeT10DjSEwknWu9ALwtbM
RBOnTSjvjbzwaw6nW+GytbGENQcgANVGAAKntdDpILsz85xCHNo5StHMrCzYZ3a3
2l3UitmzIQdoQmhCFRxxiGK9gQKBgQDDk8KbX05qgxynuLKXf2YTGROpsdbkEfTb
9VECWMY6zGgYPVLBY3zUWINrg57xBg9umiSv1HX19aH6sgOplijSEAhvtiK+O3hR
fPDAXrDeH69m7IAViGG13VKvGEv1kQmA/oxvfZdbvjoMyZFKXOVMVx9+I7SIS38C
tZwGOkPPFwKBgDKOSWIdpvPDHKuhxz/cqsuBYEpUzzqAtk3ZxH7Az0GcODumBvui
3oQLi6DL1iGewg6tDsCeepQVbbSOQ2mRmhAW/CFVDkvGV83IqpvlabOWsGVcTDjN
39AlkL/iACN/yyADnSgcoNG4ZWSaCRuNBKtY7GucjiBK7/oM9mPelTYBAoGAD6Jl
QTRqOVuH0+SQ6kl16HrttngP/KVu1JKUykI8foDOpXlpfyor1XHJ97NK5mucmjPa
UPAECgh7zWWjo0/srXY4pm2B84EfiiwZttca/na799daGd6QKRCrRnIDyHqyrswq
f9MjYWMgktseMTqh3ettChFioi6e1aGc+mZ3+zsCgYAXPj6ey9K8FiSTRrMlQEFt
QC5Iuxi0stcg5Nc12zhJI9GiAGc3bO5cHFWHgoDCLamjY+dApt4l0BXpfGOOifyK
4vmt8W/qSPuKcfdpweOnJR6zhM/GIzRB6m+Piod38hZ8a2IKBDJmrN7vyitDp2Uh
h84atfi9xig8LxYKC5OVZQ==
-----END PRIVATE KEY-----";

const RSA2_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEugIBADANBgkqhkiG9w0BAQEFAASCBKQwggSgAgEAAoIBAQDX4aHKJb3i0h8p
ZQ0I33XPRI48pgjVU1UvULqoQoX+VPlVRAQlvsriZdv+sBLsUgUnMirRA6pNbLgO
0w83Gck5JPUFFOJy44i9WcwcQDKBAhlAr8veL4CX1ZXDZcv2c+j73V92Vo3vHIdT
ZV2XaxMHodIA/cnfXwX8xWN7TH75OYFRqXFPLq4YaWZZ4s8XD22KPFUGx4gnb73c
XHHOmNfgtml/G0vl+hfsuMnFLBn7FecK3svZhMtzHvXs61KoBzA3gBfsqhJ/w768
WG50aZDQNWuzBWYRvtYaw/yYZ38wEBm0cYK88Ez69PVzzEzVJBVv75RPLwSc8GuU
IX4zzPYfAgMBAAECgf98BHhCufRb8wSefuYxQ8fhjpHBVrHehd7QYMNi1Pati3ig
C6YSCQCmqIgfx/XBqvZb9HX5vzJa4dXJ4ZgPQp7fJBfASwvuJ5VVMdqYgkjFbaJp
htiGQwgDILAbsoFXegvVlAGptakpb+TWjHYEho+bSkoE8nGOz9TC2Oaz7nFHZPc4
LhibBsi/IP7xVey+g1oqM5IG/iIyx7ItJQgfjN0OPoQKtI2QJAbL1MTDEGawTBIK
w7wRM1Vajh+OHWHhHqJRc3yl6is4cxWGQmnV2llEVz0Wh5douFiyplIr8GGrxlM+
QI4GtvHCjrFprYBs+JNg8rFWKUW6E+Oup03JkCECgYEA+9PlMqhD5KjyhiBbFsP1
b2vsehvA0VXe/JAMInpuCT/DTR8AuGeyVoxv9Q/LFN6S76kmUg+19qrS2tXF8iTF
oD1H99P/71IpzkYtG/1w+MRiN1rfwRZEA86eXV7Y/23HGq9DTr4LQKREcSdOnwiO
5GYB3EvSCzzfF8ijSwkWWZkCgYEA23VGBDBzn9JBenFaHK62fQ3p9l8FgXPVaCI7
3xvqbI8ByFLWdyzEo+TTc9I3xXvY6Y/YqU/0i6LkV3mak9DUg0MuQKYfjDKPMmvw
enO46WstEsGwaiMW+3aCxmlhNMZsR/uWiHUkWFXuoDO1LqnfzrfmZkjlxzSjDeNh
yuKl0HcCgYBGW08ftg8x5VnMy2FnnNwHgzmQbAyU787a9UvOnjH794qTE2RaIO6c
a6Qj7YOpkv2uY63HI4iNH/DFHxCstEVanYRr4xkQPf5cGRMlTMuxVPyzxnnZMmVS
QvnP0F4EDyGffPPrHgF6z+onSvoWSIfTnARNDgnjBeC2fmHQ5vsNkQKBgB/pi8bs
LMQe1PqzJQFqvoqszUrQQoKyj2PXJpGpA4vJt96jfSBTWDzk94KuHQIQolhEXKMy
R0NO6pl1y26XPW/hAwbPoWLHr18LpyqHTWpT9Xf2xmqIs7zZXObxR/tepzxIb3lk
X2ahCFQvcLdaaHss7soM66zuEI/icsQH9Ui9AoGAM1LIIcrDwiaLnYMaznsyMsBX
8zk4ASk6BvGrxvzuqcWpaDKdkFDCvLQ9rzfBfxhLocp7OSVUQn9LJazM/4HQOmJW
hs19QAK8akWh1TuDbyCwESlmyURXCoLipBOkDKCggEsbEfCnaFNVzYFrnpUQzr6y
pYoBDGO1WDI5FIH1m0A=
-----END PRIVATE KEY-----";

const EC_SCALAR: &str = "1fa0c0239db8634a9dba68c454e1f8680e495018f00d28d66a9356f85a2198c4";
const EC2_SCALAR: &str = "a3fffb16d59c9a887561dcf843e780bbfeda293c86bd11111175670b0c075fc8";
const ED_SEED: &str = "3108d88d75895d012fd0a0f7d48ec87cb2393a8c7d37c704c014bbbd42e274b4";

/// The test keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Rsa1,
    Rsa2,
    Es256,
    Es256b,
    Ed25519,
    Hmac,
}

pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| s.get(2 * i..2 * i + 2))
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect()
}

fn rsa_key(key: Key) -> &'static rsa::RsaPrivateKey {
    static R1: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    static R2: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    let (cell, pem) = if key == Key::Rsa1 {
        (&R1, RSA1_PEM)
    } else {
        (&R2, RSA2_PEM)
    };
    cell.get_or_init(|| {
        rsa::RsaPrivateKey::from_pkcs8_pem(pem).unwrap_or_else(|e| unreachable!("{e}"))
    })
}

fn ec_key(key: Key) -> p256::ecdsa::SigningKey {
    let scalar = hex(if key == Key::Es256 {
        EC_SCALAR
    } else {
        EC2_SCALAR
    });
    p256::ecdsa::SigningKey::from_slice(&scalar).unwrap_or_else(|e| unreachable!("{e}"))
}

fn ed_key() -> ed25519_compact::KeyPair {
    let seed =
        ed25519_compact::Seed::from_slice(&hex(ED_SEED)).unwrap_or_else(|e| unreachable!("{e}"));
    ed25519_compact::KeyPair::from_seed(seed)
}

/// Signs `input` the way JWS `alg` for this key does (RS256, ES256 as r||s, EdDSA, HS256).
pub fn sign(key: Key, input: &[u8]) -> Vec<u8> {
    match key {
        Key::Rsa1 | Key::Rsa2 => {
            let digest = sha2::Sha256::digest(input);
            rsa_key(key)
                .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
                .unwrap_or_else(|e| unreachable!("{e}"))
        }
        Key::Es256 | Key::Es256b => {
            let sig: p256::ecdsa::Signature = ec_key(key).sign(input);
            sig.to_bytes().to_vec()
        }
        Key::Ed25519 => ed_key().sk.sign(input, None).to_vec(),
        Key::Hmac => {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HMAC_SECRET)
                .unwrap_or_else(|e| unreachable!("{e}"));
            mac.update(input);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact JWS of these exact header and payload texts, signed with `key` (unsigned: `None`).
pub fn mint_raw(header: &str, payload: &str, key: Option<Key>) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = key
        .map(|k| b64(&sign(k, input.as_bytes())))
        .unwrap_or_default();
    format!("{input}.{sig}")
}

pub fn mint(key: Key, header: &Value, claims: &Value) -> String {
    mint_raw(&header.to_string(), &claims.to_string(), Some(key))
}

pub fn std_header(alg: &str, kid: Option<&str>) -> Value {
    match kid {
        Some(k) => json!({"alg": alg, "typ": "JWT", "kid": k}),
        None => json!({"alg": alg, "typ": "JWT"}),
    }
}

pub fn std_claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "exp": NOW + 3600,
        "nbf": NOW - 10,
        "iat": NOW - 10,
        "scope": "mcp:tools mcp:read",
        "email": "alice@example.com",
    })
}

/// The public JWK of a test key, shaped like what real issuers publish.
pub fn public_jwk(key: Key, kid: &str) -> Value {
    match key {
        Key::Rsa1 | Key::Rsa2 => {
            let k = rsa_key(key);
            json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                   "n": b64(&k.n().to_bytes_be()), "e": b64(&k.e().to_bytes_be())})
        }
        Key::Es256 | Key::Es256b => {
            let point = ec_key(key).verifying_key().to_encoded_point(false);
            let x = point.x().map(|x| b64(x)).unwrap_or_default();
            let y = point.y().map(|y| b64(y)).unwrap_or_default();
            json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": x, "y": y})
        }
        Key::Ed25519 => {
            json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(ed_key().pk.as_ref())})
        }
        Key::Hmac => json!({"kty": "oct", "kid": kid, "k": b64(HMAC_SECRET)}),
    }
}

/// Inline JWKS with one key of each type: kids `rsa1`, `ec1`, `ed1`, `hs`.
pub fn jwks_all() -> Value {
    json!({"keys": [
        public_jwk(Key::Rsa1, "rsa1"),
        public_jwk(Key::Es256, "ec1"),
        public_jwk(Key::Ed25519, "ed1"),
        public_jwk(Key::Hmac, "hs"),
    ]})
}

pub fn config_from(json: Value) -> AuthConfig {
    AuthConfig::from_json(json.to_string().as_bytes()).unwrap_or_else(|e| unreachable!("{e}"))
}

/// [`config_with`] of nothing, built once (property tests run it hundreds of times).
pub fn std_config() -> &'static AuthConfig {
    static CFG: OnceLock<AuthConfig> = OnceLock::new();
    CFG.get_or_init(|| config_with(json!({})))
}

/// The standard test config (every algorithm, inline keys of every type), plus `extra`.
pub fn config_with(extra: Value) -> AuthConfig {
    let mut base = json!({
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "jwks": jwks_all(),
        "algorithms": ["RS256", "ES256", "EdDSA", "HS256"],
        "resourceMetadata": {"resource": AUDIENCE, "authorizationServers": [ISSUER]},
    });
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    config_from(base)
}
