//! Cost of authenticating a request with a bearer JWT, through `Authenticator::authenticate` (what
//! the filter calls per request): a full check (parse, pure-Rust signature, claims) for HS256 and
//! ES256 with the verified-token cache off, and the cache-hit path (SHA-256 of the token and a
//! lookup) with it on. RS256 is left out: the filter checks it with Envoy's `verify_signature`
//! (BoringSSL in the host), which no native bench can call.
//!
//! `cargo bench -p mcp-gateway-core --bench auth`. Native numbers; inside V8 expect roughly 2-4x
//! (pure-Rust ES256 ≈ 0.8 ms there, see shared/ENVOY_WASM_FACTS.md).

// A benchmark harness, not production code: a broken fixture should stop it loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use hmac::Mac as _;
use mcp_gateway_core::auth::{AuthConfig, Authenticator, Credentials};
use p256::ecdsa::signature::Signer as _;
use serde_json::{json, Value};

const NOW: u64 = 1_750_000_000;
const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "https://mcp.example.com/mcp";
/// Bench-only keys: they protect nothing.
const HMAC_SECRET: &[u8] = b"bench-only hs256 secret, 32+ bytes long";
const EC_SCALAR: [u8; 32] = [
    0x1f, 0xa0, 0xc0, 0x23, 0x9d, 0xb8, 0x63, 0x4a, 0x9d, 0xba, 0x68, 0xc4, 0x54, 0xe1, 0xf8, 0x68,
    0x0e, 0x49, 0x50, 0x18, 0xf0, 0x0d, 0x28, 0xd6, 0x6a, 0x93, 0x56, 0xf8, 0x5a, 0x21, 0x98, 0xc4,
];

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn ec_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&EC_SCALAR).unwrap()
}

/// A compact JWS with typical claims (a few scopes and roles, an email), signed with `alg`.
fn mint(alg: &str, kid: &str) -> String {
    let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": NOW + 3600, "nbf": NOW - 10,
        "iat": NOW - 10, "scope": "mcp:tools mcp:read", "email": "alice@example.com",
        "roles": ["admin", "reader"], "client_id": "bench-client"
    });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = match alg {
        "HS256" => {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HMAC_SECRET).unwrap();
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        "ES256" => {
            let sig: p256::ecdsa::Signature = ec_key().sign(input.as_bytes());
            sig.to_bytes().to_vec()
        }
        other => panic!("no minting for {other}"),
    };
    format!("{input}.{}", b64(&sig))
}

fn config(cache_size: usize) -> Arc<AuthConfig> {
    let point = ec_key().verifying_key().to_encoded_point(false);
    let jwks: Value = json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec1", "x": b64(point.x().unwrap()),
         "y": b64(point.y().unwrap())},
        {"kty": "oct", "kid": "hs", "k": b64(HMAC_SECRET)},
    ]});
    let raw = json!({
        "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": jwks,
        "algorithms": ["ES256", "HS256"], "cacheSize": cache_size,
        "resourceMetadata": {"resource": AUDIENCE, "authorizationServers": [ISSUER]},
    });
    Arc::new(AuthConfig::from_json(raw.to_string().as_bytes()).unwrap())
}

fn bench(c: &mut Criterion) {
    let hs = format!("Bearer {}", mint("HS256", "hs"));
    let es = format!("Bearer {}", mint("ES256", "ec1"));
    let mut g = c.benchmark_group("jwt");
    for (name, header, cache) in [
        ("hs256_verify", &hs, 0),
        ("es256_verify", &es, 0),
        ("es256_cache_hit", &es, 1024),
    ] {
        let mut auth = Authenticator::new(config(cache));
        let creds = Credentials {
            authorization: Some(header),
            ..Credentials::default()
        };
        let first = auth.authenticate(&creds, NOW).unwrap();
        assert_eq!(first.identity.subject, "alice");
        let second = auth.authenticate(&creds, NOW).unwrap();
        assert_eq!(second.from_cache, cache > 0, "{name}");
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(
                    auth.authenticate(black_box(&creds), NOW)
                        .unwrap()
                        .from_cache,
                )
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    // Short runs: `make bench-core` runs every core bench in a few minutes.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = bench
}
criterion_main!(benches);
