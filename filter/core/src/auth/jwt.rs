//! JWS compact tokens: parse, pick the key, check the signature, check the claims.
//!
//! Defences, in order: size cap; exactly three segments of canonical unpadded base64url;
//! a header that is a JSON object with an `alg` from the configured set (so `none`, `HS256`
//! when not configured, and anything exotic stop here) and no `crit` (no extension is
//! understood, RFC 7515 §4.1.11); key selection that only considers keys of the type the
//! algorithm needs, so an RSA public key can never be used as an HMAC secret; then the signature;
//! then `iss`, `aud` (RFC 8707), `exp`/`nbf` with leeway and a subject. Claims are parsed before
//! the signature check only so malformed tokens fail without crypto; nothing in them is trusted
//! until the signature holds.

use std::borrow::Cow;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::challenge::AuthFailure;
use super::config::AuthConfig;
use super::crypto::SignatureVerifier;
use super::jwks::KeySet;
use super::{AuthMethod, Identity, IdentityData};

/// The JWS algorithms the gateway verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Rs256,
    Es256,
    EdDsa,
    Hs256,
}

impl Algorithm {
    pub const ALL: [Algorithm; 4] = [
        Algorithm::Rs256,
        Algorithm::Es256,
        Algorithm::EdDsa,
        Algorithm::Hs256,
    ];

    /// From the JWS `alg` name (case-sensitive, as RFC 7518 registers them).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "RS256" => Some(Algorithm::Rs256),
            "ES256" => Some(Algorithm::Es256),
            "EdDSA" => Some(Algorithm::EdDsa),
            "HS256" => Some(Algorithm::Hs256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Hs256 => "HS256",
        }
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of algorithms, as a bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmSet(u8);

impl AlgorithmSet {
    pub const EMPTY: AlgorithmSet = AlgorithmSet(0);
    /// The asymmetric algorithms: HS256 must be asked for.
    pub const DEFAULT: AlgorithmSet =
        AlgorithmSet(Algorithm::Rs256.bit() | Algorithm::Es256.bit() | Algorithm::EdDsa.bit());

    pub const fn with(self, alg: Algorithm) -> AlgorithmSet {
        AlgorithmSet(self.0 | alg.bit())
    }

    pub fn contains(self, alg: Algorithm) -> bool {
        self.0 & alg.bit() != 0
    }
}

/// Without a `kid`, at most this many keys of the right type are tried: each RSA attempt costs
/// about a millisecond inside V8, and a kid-less forged token must not cost a JWKS's worth.
pub const MAX_KIDLESS_CANDIDATES: usize = 4;

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

fn b64_decode(segment: &str) -> Result<Vec<u8>, AuthFailure> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthFailure::Malformed)
}

/// Verifies a compact JWS against the configured keys and claims rules. Returns the identity
/// and the time (Unix seconds) until which it may be served from the cache.
pub fn verify(
    token: &str,
    cfg: &AuthConfig,
    key_sets: &[Option<&KeySet>],
    verifier: &dyn SignatureVerifier,
    now: u64,
) -> Result<(Identity, u64), AuthFailure> {
    if token.len() > cfg.max_token_bytes {
        return Err(AuthFailure::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthFailure::Malformed);
    };
    let header_bytes = b64_decode(h64)?;
    let header: Header<'_> =
        serde_json::from_slice(&header_bytes).map_err(|_| AuthFailure::Malformed)?;
    if header.crit.is_some() {
        return Err(AuthFailure::Malformed);
    }
    let alg = Algorithm::from_name(&header.alg)
        .filter(|a| cfg.algorithms.contains(*a))
        .ok_or(AuthFailure::AlgNotAllowed)?;
    let signature = b64_decode(s64)?;
    if signature.is_empty() {
        return Err(AuthFailure::Malformed);
    }
    let claims: Map<String, Value> =
        serde_json::from_slice(&b64_decode(p64)?).map_err(|_| AuthFailure::Malformed)?;
    let signing_input = token
        .get(..h64.len() + 1 + p64.len())
        .ok_or(AuthFailure::Malformed)?;
    check_signature(
        alg,
        header.kid.as_deref(),
        signing_input.as_bytes(),
        &signature,
        key_sets,
        verifier,
    )?;
    validate_claims(claims, cfg, now, AuthMethod::Jwt)
}

fn check_signature(
    alg: Algorithm,
    kid: Option<&str>,
    signing_input: &[u8],
    signature: &[u8],
    key_sets: &[Option<&KeySet>],
    verifier: &dyn SignatureVerifier,
) -> Result<(), AuthFailure> {
    let mut keys = key_sets.iter().flatten().flat_map(|s| s.keys()).peekable();
    if keys.peek().is_none() {
        return Err(AuthFailure::KeysUnavailable);
    }
    let mut tried = 0;
    let mut kid_matched = false;
    for key in keys {
        if let Some(kid) = kid {
            if key.kid() != Some(kid) {
                continue;
            }
            kid_matched = true;
        }
        if !key.fits(alg) {
            continue;
        }
        if kid.is_none() && tried >= MAX_KIDLESS_CANDIDATES {
            break;
        }
        tried += 1;
        if let Ok(true) = verifier.verify(alg, key, signing_input, signature) {
            return Ok(());
        }
    }
    Err(if tried > 0 {
        AuthFailure::BadSignature
    } else if kid_matched {
        AuthFailure::KeyMismatch
    } else {
        AuthFailure::UnknownKid
    })
}

/// Claims from a token verified elsewhere (Envoy's `jwt_authn` payload in dynamic metadata):
/// the same checks as for a token the gateway verified itself.
pub fn identity_from_payload(
    payload: &[u8],
    cfg: &AuthConfig,
    now: u64,
    method: AuthMethod,
) -> Result<(Identity, u64), AuthFailure> {
    let claims: Map<String, Value> =
        serde_json::from_slice(payload).map_err(|_| AuthFailure::Malformed)?;
    validate_claims(claims, cfg, now, method)
}

fn validate_claims(
    claims: Map<String, Value>,
    cfg: &AuthConfig,
    now: u64,
    method: AuthMethod,
) -> Result<(Identity, u64), AuthFailure> {
    let issuer = match claims.get("iss") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(AuthFailure::Malformed),
    };
    if !cfg.issuers.is_empty() && !issuer.is_some_and(|i| cfg.issuers.iter().any(|x| x == i)) {
        return Err(AuthFailure::WrongIssuer);
    }
    let ours = |a: &str| cfg.audiences.iter().any(|x| x == a);
    let audience_ok = match claims.get("aud") {
        Some(Value::String(a)) => ours(a),
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(ours),
        _ => false,
    };
    if !audience_ok {
        return Err(AuthFailure::WrongAudience);
    }
    let exp = numeric_date(claims.get("exp"))?.ok_or(AuthFailure::MissingClaim)?;
    let valid_until = exp.saturating_add(cfg.leeway);
    if now >= valid_until {
        return Err(AuthFailure::Expired);
    }
    if let Some(nbf) = numeric_date(claims.get("nbf"))? {
        if now.saturating_add(cfg.leeway) < nbf {
            return Err(AuthFailure::NotYetValid);
        }
    }
    let subject = ["sub", "client_id"]
        .iter()
        .find_map(|c| claims.get(*c).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .ok_or(AuthFailure::MissingClaim)?
        .to_owned();
    let issuer = issuer.map(str::to_owned);
    let scopes = scopes_of(&claims);
    let identity = Identity::new(IdentityData {
        subject,
        issuer,
        scopes,
        claims,
        expires_at: Some(exp),
        method,
    });
    Ok((identity, valid_until))
}

/// RFC 7519 NumericDate: seconds, possibly fractional; negative values clamp to 0.
fn numeric_date(v: Option<&Value>) -> Result<Option<u64>, AuthFailure> {
    match v {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => Ok(Some(u)),
            (None, Some(f)) if f.is_finite() => Ok(Some(f.max(0.0) as u64)),
            _ => Err(AuthFailure::Malformed),
        },
        Some(_) => Err(AuthFailure::Malformed),
    }
}

/// Granted scopes: `scope` (RFC 9068 / RFC 8693, space-separated) and `scp` (used by Okta and
/// Entra ID, a list or a space-separated string).
fn scopes_of(claims: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => {
                out.extend(s.split(' ').filter(|x| !x.is_empty()).map(str::to_owned))
            }
            Some(Value::Array(list)) => {
                out.extend(list.iter().filter_map(Value::as_str).map(str::to_owned))
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // JSON fixtures: a missing member fails the test anyway
mod tests {
    use super::super::crypto::RustCryptoVerifier;
    use super::super::testkit::*;
    use super::*;
    use serde_json::json;

    fn check_with(cfg: &AuthConfig, token: &str, now: u64) -> Result<Identity, AuthFailure> {
        verify(
            token,
            cfg,
            &[Some(&cfg.inline_keys)],
            &RustCryptoVerifier,
            now,
        )
        .map(|(i, _)| i)
    }

    fn check(token: &str) -> Result<Identity, AuthFailure> {
        check_with(std_config(), token, NOW)
    }

    fn claims_with(changes: Value) -> Value {
        let mut c = std_claims();
        if let (Some(o), Value::Object(ch)) = (c.as_object_mut(), changes) {
            for (k, v) in ch {
                if v.is_null() {
                    o.remove(&k);
                } else {
                    o.insert(k, v);
                }
            }
        }
        c
    }

    #[test]
    fn tokens_of_every_algorithm_verify() {
        for (key, alg, kid) in [
            (Key::Rsa1, "RS256", "rsa1"),
            (Key::Es256, "ES256", "ec1"),
            (Key::Ed25519, "EdDSA", "ed1"),
            (Key::Hmac, "HS256", "hs"),
        ] {
            let token = mint(key, &std_header(alg, Some(kid)), &std_claims());
            let id = check(&token).unwrap_or_else(|e| unreachable!("{alg}: {e}"));
            assert_eq!(id.subject, "alice");
            assert_eq!(id.issuer.as_deref(), Some(ISSUER));
            assert_eq!(id.scopes, vec!["mcp:tools", "mcp:read"]);
            assert_eq!(id.expires_at, Some(NOW + 3600));
            assert_eq!(id.claims["email"], "alice@example.com");
        }
    }

    #[test]
    fn a_token_without_kid_is_tried_against_keys_of_its_type() {
        for (key, alg) in [
            (Key::Rsa1, "RS256"),
            (Key::Es256, "ES256"),
            (Key::Hmac, "HS256"),
        ] {
            let token = mint(key, &std_header(alg, None), &std_claims());
            assert!(check(&token).is_ok(), "{alg}");
        }
    }

    #[test]
    fn every_rejection_has_its_own_reason() {
        let h = |alg, kid| std_header(alg, Some(kid));
        let es = |claims: Value| mint(Key::Es256, &h("ES256", "ec1"), &claims);
        let valid = es(std_claims());
        let (hp, _) = valid.rsplit_once('.').unwrap_or_default();
        let other_sig = mint(Key::Es256b, &h("ES256", "ec1"), &std_claims());
        let (_, foreign_sig) = other_sig.rsplit_once('.').unwrap_or_default();
        // HS256 keyed with the RSA public key's JWK text: the classic confusion attack.
        let rsa_pub_as_secret = public_jwk(Key::Rsa1, "rsa1").to_string();
        let confused = {
            let input = format!(
                "{}.{}",
                b64(h("HS256", "rsa1").to_string().as_bytes()),
                b64(std_claims().to_string().as_bytes())
            );
            use hmac::Mac as _;
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(rsa_pub_as_secret.as_bytes())
                .unwrap_or_else(|e| unreachable!("{e}"));
            mac.update(input.as_bytes());
            format!("{input}.{}", b64(&mac.finalize().into_bytes()))
        };
        let cases: Vec<(&str, String, AuthFailure)> = vec![
            (
                "expired",
                es(claims_with(json!({"exp": NOW - 61}))),
                AuthFailure::Expired,
            ),
            (
                "nbf in the future",
                es(claims_with(json!({"nbf": NOW + 61}))),
                AuthFailure::NotYetValid,
            ),
            (
                "wrong aud",
                es(claims_with(json!({"aud": "https://other.example.com"}))),
                AuthFailure::WrongAudience,
            ),
            (
                "aud list without us",
                es(claims_with(json!({"aud": ["a", "b"]}))),
                AuthFailure::WrongAudience,
            ),
            (
                "no aud",
                es(claims_with(json!({"aud": null}))),
                AuthFailure::WrongAudience,
            ),
            (
                "wrong iss",
                es(claims_with(json!({"iss": "https://evil.example.com"}))),
                AuthFailure::WrongIssuer,
            ),
            (
                "no iss",
                es(claims_with(json!({"iss": null}))),
                AuthFailure::WrongIssuer,
            ),
            (
                "no exp",
                es(claims_with(json!({"exp": null}))),
                AuthFailure::MissingClaim,
            ),
            (
                "no sub",
                es(claims_with(json!({"sub": null}))),
                AuthFailure::MissingClaim,
            ),
            (
                "exp not a number",
                es(claims_with(json!({"exp": "soon"}))),
                AuthFailure::Malformed,
            ),
            (
                "iss not a string",
                es(claims_with(json!({"iss": 7}))),
                AuthFailure::Malformed,
            ),
            (
                "bad signature",
                format!("{hp}.{foreign_sig}"),
                AuthFailure::BadSignature,
            ),
            (
                "tampered payload",
                {
                    let (h0, rest) = valid.split_once('.').unwrap_or_default();
                    let (_, s0) = rest.split_once('.').unwrap_or_default();
                    let forged = b64(claims_with(json!({"sub": "root"})).to_string().as_bytes());
                    format!("{h0}.{forged}.{s0}")
                },
                AuthFailure::BadSignature,
            ),
            (
                "alg none",
                mint_raw(r#"{"alg":"none"}"#, &std_claims().to_string(), None),
                AuthFailure::AlgNotAllowed,
            ),
            (
                "alg None spelled oddly",
                mint_raw(r#"{"alg":"NONE"}"#, &std_claims().to_string(), None),
                AuthFailure::AlgNotAllowed,
            ),
            (
                "alg unsupported",
                mint_raw(
                    r#"{"alg":"RS512"}"#,
                    &std_claims().to_string(),
                    Some(Key::Rsa1),
                ),
                AuthFailure::AlgNotAllowed,
            ),
            (
                "HS256 with the RSA key as secret",
                confused,
                AuthFailure::KeyMismatch,
            ),
            (
                "HS256 without kid only meets HMAC keys",
                {
                    let t = mint(Key::Hmac, &std_header("HS256", None), &std_claims());
                    let (hp2, _) = t.rsplit_once('.').unwrap_or_default();
                    format!("{hp2}.{}", b64(&sign(Key::Es256, hp2.as_bytes())))
                },
                AuthFailure::BadSignature,
            ),
            (
                "unknown kid",
                mint(Key::Rsa2, &h("RS256", "nope"), &std_claims()),
                AuthFailure::UnknownKid,
            ),
            (
                "kid of the wrong key type",
                mint(Key::Es256, &h("ES256", "rsa1"), &std_claims()),
                AuthFailure::KeyMismatch,
            ),
            (
                "RS256 signed by another key",
                mint(Key::Rsa2, &h("RS256", "rsa1"), &std_claims()),
                AuthFailure::BadSignature,
            ),
            ("two parts", hp.to_owned(), AuthFailure::Malformed),
            ("four parts", format!("{valid}.x"), AuthFailure::Malformed),
            (
                "five parts (JWE)",
                "a.b.c.d.e".to_owned(),
                AuthFailure::Malformed,
            ),
            (
                "junk parts",
                "abc.def.ghi".to_owned(),
                AuthFailure::Malformed,
            ),
            (
                "padded base64",
                format!("{valid}=="),
                AuthFailure::Malformed,
            ),
            ("empty signature", format!("{hp}."), AuthFailure::Malformed),
            (
                "header not an object",
                mint_raw("[1]", "{}", Some(Key::Hmac)),
                AuthFailure::Malformed,
            ),
            (
                "payload not an object",
                mint_raw(r#"{"alg":"HS256","kid":"hs"}"#, "[1]", Some(Key::Hmac)),
                AuthFailure::Malformed,
            ),
            (
                "payload not JSON",
                mint_raw(r#"{"alg":"HS256","kid":"hs"}"#, "{oops", Some(Key::Hmac)),
                AuthFailure::Malformed,
            ),
            (
                "crit header",
                mint(
                    Key::Hmac,
                    &json!({"alg": "HS256", "kid": "hs", "crit": ["b64"], "b64": false}),
                    &std_claims(),
                ),
                AuthFailure::Malformed,
            ),
            (
                "duplicate alg",
                mint_raw(
                    r#"{"alg":"HS256","alg":"none"}"#,
                    &std_claims().to_string(),
                    Some(Key::Hmac),
                ),
                AuthFailure::Malformed,
            ),
            ("huge", "a".repeat(10_000), AuthFailure::Malformed),
        ];
        for (what, token, want) in cases {
            assert_eq!(check(&token).err(), Some(want), "{what}");
        }
    }

    #[test]
    fn algorithms_outside_the_configured_set_are_refused_before_any_key_lookup() {
        let cfg = config_with(json!({"algorithms": ["ES256"]}));
        let token = mint(Key::Rsa1, &std_header("RS256", Some("rsa1")), &std_claims());
        assert_eq!(
            check_with(&cfg, &token, NOW).err(),
            Some(AuthFailure::AlgNotAllowed)
        );
    }

    #[test]
    fn leeway_applies_to_exp_and_nbf_at_the_boundaries() {
        let cfg = config_with(json!({"leewaySeconds": 30}));
        let token = mint(
            Key::Hmac,
            &std_header("HS256", Some("hs")),
            &claims_with(json!({"exp": NOW, "nbf": NOW + 30})),
        );
        assert!(check_with(&cfg, &token, NOW).is_ok());
        assert!(check_with(&cfg, &token, NOW + 29).is_ok());
        assert_eq!(
            check_with(&cfg, &token, NOW + 30).err(),
            Some(AuthFailure::Expired)
        );
        assert_eq!(
            check_with(&cfg, &token, NOW - 1).err(),
            Some(AuthFailure::NotYetValid)
        );
    }

    #[test]
    fn claims_in_their_other_shapes_are_understood() {
        let token = mint(
            Key::Hmac,
            &std_header("HS256", Some("hs")),
            &claims_with(json!({
                "aud": ["https://x", AUDIENCE],
                "exp": (NOW + 10) as f64 + 0.5,
                "sub": null,
                "client_id": "svc-1",
                "scope": null,
                "scp": ["a", "b"],
            })),
        );
        let id = check(&token).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(id.subject, "svc-1");
        assert_eq!(id.scopes, vec!["a", "b"]);
        assert_eq!(id.expires_at, Some(NOW + 10));
    }

    #[test]
    fn several_issuers_may_be_accepted() {
        let cfg = config_with(json!({"issuer": null, "issuers": ["https://a", ISSUER]}));
        let token = mint(Key::Hmac, &std_header("HS256", Some("hs")), &std_claims());
        assert!(check_with(&cfg, &token, NOW).is_ok());
    }

    #[test]
    fn kidless_tokens_try_a_bounded_number_of_keys() {
        let keys: Vec<Value> = (0..6)
            .map(|i| public_jwk(Key::Es256b, &format!("k{i}")))
            .collect();
        let mut keys = keys;
        keys.push(public_jwk(Key::Es256, "last"));
        let cfg = config_with(json!({"jwks": {"keys": keys}, "algorithms": ["ES256"]}));
        let token = mint(Key::Es256, &std_header("ES256", None), &std_claims());
        assert_eq!(
            check_with(&cfg, &token, NOW).err(),
            Some(AuthFailure::BadSignature)
        );
        let token = mint(
            Key::Es256,
            &std_header("ES256", Some("last")),
            &std_claims(),
        );
        assert!(check_with(&cfg, &token, NOW).is_ok());
    }

    #[test]
    fn no_keys_at_all_means_keys_unavailable() {
        let cfg = config_with(json!({}));
        let token = mint(Key::Hmac, &std_header("HS256", Some("hs")), &std_claims());
        let r = verify(&token, &cfg, &[None, None], &RustCryptoVerifier, NOW);
        assert_eq!(r.err(), Some(AuthFailure::KeysUnavailable));
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_as_a_token_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let token = String::from_utf8_lossy(&bytes);
            let _ = check_with(std_config(), &token, NOW);
        }

        #[test]
        fn random_segments_never_panic(
            h in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            p in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            s in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            alg in proptest::sample::select(vec!["RS256", "ES256", "EdDSA", "HS256"]),
        ) {
            let cfg = std_config();
            let header = format!(r#"{{"alg":"{alg}","kid":"{}"}}"#, String::from_utf8_lossy(&h).escape_default());
            let token = format!("{}.{}.{}", b64(header.as_bytes()), b64(&p), b64(&s));
            let _ = check_with(cfg, &token, NOW);
            let token = format!("{}.{}.{}", b64(&h), b64(&p), b64(&s));
            let _ = check_with(cfg, &token, NOW);
        }

        #[test]
        fn random_payloads_from_envoy_never_panic(p in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = identity_from_payload(&p, std_config(), NOW, AuthMethod::EnvoyJwtAuthn);
        }
    }
}
