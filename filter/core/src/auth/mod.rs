//! Authentication of MCP clients: the gateway as an OAuth 2.1 resource server.
//!
//! The MCP authorization spec (2025-06-18 and later) makes the MCP server a resource server: it
//! validates bearer tokens issued for it (RFC 8707 audience), answers 401 with
//! `WWW-Authenticate: Bearer resource_metadata="…"` so clients can discover the authorization
//! server (RFC 9728), and 403 `insufficient_scope` for step-up. This module decides all of that
//! without the host: the glue hands in header values, the time and fetched JWKS documents, and
//! carries out what comes back.
//!
//! Parts:
//! - [`config`]: raw serde config and its compiled, validated form.
//! - [`jwt`]: JWS compact parsing and claim checks, producing an [`Identity`].
//! - [`jwks`]: JWK/JWKS parsing into ready-to-use keys, and when to (re)fetch a remote JWKS.
//! - [`crypto`]: the [`SignatureVerifier`] seam, with a pure-Rust default.
//! - [`cache`]: verified tokens by SHA-256 of the token, bounded, CLOCK eviction.
//! - [`apikey`]: static API keys stored as SHA-256 hashes.
//! - [`metadata`]: the RFC 9728 protected-resource metadata document.
//! - [`challenge`]: failure reasons, and the HTTP answer (status, `WWW-Authenticate`) for each.
//!
//! Why not `jwt-simple` for verification: its only verification entry point is `verify_token`,
//! which takes the whole token, parses header and claims again, reads the clock itself
//! (`coarsetime`) and applies its own claim policy. The host-crypto seam needs "verify these bytes
//! with this key" (that is what Envoy's `verify_signature` foreign function offers), the core
//! takes the time from the host, and one parse per token is enough. So the token is parsed here
//! (base64url + serde, borrowed where possible) and signatures are checked with the pure-Rust
//! primitives jwt-simple itself uses in `pure-rust` mode (`rsa`, `p256`, `ed25519-compact`,
//! HMAC-SHA-256), called directly; keys are decoded once per JWKS, not once per token.

pub mod apikey;
pub mod cache;
pub mod challenge;
pub mod config;
pub mod crypto;
pub mod jwks;
pub mod jwt;
pub mod metadata;
pub mod pbstruct;

#[cfg(test)]
mod testkit;

use std::ops::Deref;
use std::sync::Arc;

use serde_json::{Map, Value};

pub use challenge::{AuthFailure, AuthReply, BearerChallenge};
pub use config::{AuthConfig, AuthConfigError, AuthMode, RawAuthConfig};
pub use crypto::{RustCryptoVerifier, SignatureVerifier, VerifyError};
pub use jwks::{JwksState, JwksUpdate, KeySet};
pub use jwt::Algorithm;

use cache::{TokenCache, TokenDigest};

/// How a request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A JWT verified by the gateway.
    Jwt,
    /// A static API key.
    ApiKey,
    /// A JWT verified by Envoy's `jwt_authn` filter, claims read from dynamic metadata.
    EnvoyJwtAuthn,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::ApiKey => "api_key",
            AuthMethod::EnvoyJwtAuthn => "envoy_jwt_authn",
        }
    }
}

/// Who the client is, as established by authentication. What policies and audit read.
#[derive(Debug)]
pub struct IdentityData {
    /// `sub` (or `client_id` when a token has no `sub`), or the API key's configured subject.
    pub subject: String,
    /// `iss`, for tokens.
    pub issuer: Option<String>,
    /// Granted scopes: `scope` (space-separated) and `scp` (string or list) merged.
    pub scopes: Vec<String>,
    /// Every claim of the token, for policy input. Empty for API keys.
    pub claims: Map<String, Value>,
    /// `exp` in Unix seconds, for tokens.
    pub expires_at: Option<u64>,
    pub method: AuthMethod,
}

/// A shared, immutable [`IdentityData`]: cloning is a reference-count increment, so the cache can
/// hand the same identity to every request that presents the same token.
#[derive(Debug, Clone)]
pub struct Identity(Arc<IdentityData>);

impl Identity {
    pub fn new(data: IdentityData) -> Identity {
        Identity(Arc::new(data))
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.0.scopes.iter().any(|s| s == scope)
    }

    /// The scopes of `required` this identity lacks, in the order given.
    pub fn missing_scopes<'a>(&self, required: &'a [String]) -> Vec<&'a str> {
        required
            .iter()
            .filter(|r| !self.has_scope(r))
            .map(String::as_str)
            .collect()
    }
}

impl Deref for Identity {
    type Target = IdentityData;

    fn deref(&self) -> &IdentityData {
        &self.0
    }
}

/// What the glue read from the request (and Envoy's metadata) for authentication.
#[derive(Debug, Default, Clone, Copy)]
pub struct Credentials<'a> {
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The header named by [`AuthConfig::api_key_header`], when one is configured.
    pub api_key: Option<&'a str>,
    /// In `trustEnvoyJwtAuthn` mode: the JSON payload `jwt_authn` left in dynamic metadata
    /// (under [`AuthConfig::jwt_authn_payload_key`]).
    pub jwt_authn_payload: Option<&'a [u8]>,
}

/// A successful authentication.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub identity: Identity,
    /// The token was found in the verified-token cache (no signature check ran).
    pub from_cache: bool,
}

/// The per-VM authentication state: compiled config, keys, remote JWKS schedule and the
/// verified-token cache. The glue keeps one in its root context and calls it from every request.
pub struct Authenticator {
    config: Arc<AuthConfig>,
    verifier: Box<dyn SignatureVerifier>,
    remote: Option<JwksState>,
    cache: TokenCache,
}

impl Authenticator {
    /// An authenticator that checks signatures in pure Rust.
    pub fn new(config: Arc<AuthConfig>) -> Authenticator {
        Authenticator::with_verifier(config, Box::new(RustCryptoVerifier))
    }

    /// An authenticator with another signature verifier (e.g. the host's, with pure-Rust
    /// fallback: see [`crypto::Fallback`]).
    pub fn with_verifier(
        config: Arc<AuthConfig>,
        verifier: Box<dyn SignatureVerifier>,
    ) -> Authenticator {
        let remote = config
            .remote_jwks
            .as_ref()
            .map(|r| JwksState::new(r.refresh_policy()));
        let cache = TokenCache::new(config.cache_size, config.cache_max_ttl);
        Authenticator {
            config,
            verifier,
            remote,
            cache,
        }
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Authenticates a request. `now` is the host's time in Unix seconds.
    ///
    /// On success the global `requiredScopes` are satisfied too; finer, per-tool scope checks
    /// belong to the caller ([`Identity::missing_scopes`], [`AuthConfig::insufficient_scope`]).
    pub fn authenticate(
        &mut self,
        creds: &Credentials<'_>,
        now: u64,
    ) -> Result<Authenticated, AuthFailure> {
        let done = match self.config.mode {
            AuthMode::Jwt => self.bearer_jwt(creds.authorization, now),
            AuthMode::ApiKey => self.api_key(creds),
            AuthMode::JwtOrApiKey => {
                if creds.api_key.is_some() {
                    self.api_key(creds)
                } else {
                    match creds.authorization.map(challenge::bearer_token) {
                        // Compact JWS has exactly two dots; API keys have none in practice.
                        Some(Ok(token)) if token.bytes().filter(|b| *b == b'.').count() == 2 => {
                            self.jwt(token, now)
                        }
                        _ => self.api_key(creds),
                    }
                }
            }
            AuthMode::TrustEnvoyJwtAuthn => match creds.jwt_authn_payload {
                None => Err(AuthFailure::Missing),
                Some(payload) => jwt::identity_from_payload(
                    payload,
                    &self.config,
                    now,
                    AuthMethod::EnvoyJwtAuthn,
                )
                .map(|(identity, _)| Authenticated {
                    identity,
                    from_cache: false,
                }),
            },
        }?;
        if !self.config.required_scopes.is_empty()
            && self
                .config
                .required_scopes
                .iter()
                .any(|s| !done.identity.has_scope(s))
        {
            return Err(AuthFailure::InsufficientScope);
        }
        Ok(done)
    }

    fn bearer_jwt(
        &mut self,
        authorization: Option<&str>,
        now: u64,
    ) -> Result<Authenticated, AuthFailure> {
        let token = challenge::bearer_token(authorization.ok_or(AuthFailure::Missing)?)?;
        self.jwt(token, now)
    }

    fn api_key(&self, creds: &Credentials<'_>) -> Result<Authenticated, AuthFailure> {
        let key = match creds.api_key {
            Some(k) => k.trim(),
            None => challenge::bearer_token(creds.authorization.ok_or(AuthFailure::Missing)?)?,
        };
        let identity = self
            .config
            .api_keys
            .lookup(key)
            .ok_or(AuthFailure::InvalidApiKey)?;
        Ok(Authenticated {
            identity,
            from_cache: false,
        })
    }

    fn jwt(&mut self, token: &str, now: u64) -> Result<Authenticated, AuthFailure> {
        if token.len() > self.config.max_token_bytes {
            return Err(AuthFailure::Malformed);
        }
        let digest = self.cache.enabled().then(|| TokenDigest::of(token));
        if let Some(d) = &digest {
            if let Some(identity) = self.cache.get(d, now) {
                return Ok(Authenticated {
                    identity,
                    from_cache: true,
                });
            }
        }
        let remote = self.remote.as_ref().and_then(JwksState::keys);
        let keys = [Some(&self.config.inline_keys), remote.map(Arc::as_ref)];
        let outcome = jwt::verify(token, &self.config, &keys, self.verifier.as_ref(), now);
        let (identity, valid_until) = match outcome {
            Ok(v) => v,
            Err(AuthFailure::UnknownKid) => {
                // A new signing key the last fetch did not have yet: fetch again (rate-limited).
                if let Some(r) = self.remote.as_mut() {
                    r.request_refresh(now);
                }
                return Err(AuthFailure::UnknownKid);
            }
            Err(e) => return Err(e),
        };
        if let Some(d) = digest {
            self.cache.insert(d, identity.clone(), valid_until, now);
        }
        Ok(Authenticated {
            identity,
            from_cache: false,
        })
    }

    /// Whether the glue should fetch the remote JWKS now; `None` without `jwksUri`.
    pub fn jwks_fetch_due(&self, now: u64) -> Option<&config::RemoteJwks> {
        let remote = self.remote.as_ref()?;
        if remote.fetch_due(now) {
            self.config.remote_jwks.as_ref()
        } else {
            None
        }
    }

    /// The glue dispatched the JWKS request.
    pub fn jwks_fetch_started(&mut self, now: u64) {
        if let Some(r) = self.remote.as_mut() {
            r.fetch_started(now);
        }
    }

    /// The JWKS request answered 200 with `body`. A new key set empties the token cache, so a
    /// key removed from the JWKS stops authenticating at once.
    pub fn jwks_fetched(&mut self, now: u64, body: &[u8]) -> Result<JwksUpdate, jwks::JwksError> {
        let Some(r) = self.remote.as_mut() else {
            return Ok(JwksUpdate::Unchanged);
        };
        let update = r.fetch_succeeded(now, body)?;
        if matches!(update, JwksUpdate::Replaced { .. }) {
            self.cache.clear();
        }
        Ok(update)
    }

    /// The JWKS request failed (transport error, timeout, non-200). The last good keys stay.
    pub fn jwks_fetch_failed(&mut self, now: u64) {
        if let Some(r) = self.remote.as_mut() {
            r.fetch_failed(now);
        }
    }

    /// Verified tokens currently cached.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // JSON fixtures: a missing member fails the test anyway
mod tests {
    use super::testkit::*;
    use super::*;

    fn authenticator(extra: serde_json::Value) -> Authenticator {
        Authenticator::new(Arc::new(config_with(extra)))
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    fn creds(authorization: &str) -> Credentials<'_> {
        Credentials {
            authorization: Some(authorization),
            ..Credentials::default()
        }
    }

    #[test]
    fn a_valid_token_authenticates_then_comes_from_the_cache() {
        let mut auth = authenticator(serde_json::json!({}));
        let token = mint(Key::Rsa1, &std_header("RS256", Some("rsa1")), &std_claims());
        let h = bearer(&token);
        let first = auth.authenticate(&creds(&h), NOW);
        let first = first.unwrap_or_else(|e| unreachable!("{e}"));
        assert!(!first.from_cache);
        assert_eq!(first.identity.subject, "alice");
        assert_eq!(first.identity.method, AuthMethod::Jwt);
        let second = auth.authenticate(&creds(&h), NOW + 1);
        assert!(second.is_ok_and(|a| a.from_cache));
        assert_eq!(auth.cached_tokens(), 1);
    }

    #[test]
    fn a_cached_token_still_expires() {
        let mut auth = authenticator(serde_json::json!({"leewaySeconds": 0}));
        let token = mint(Key::Hmac, &std_header("HS256", Some("hs")), &std_claims());
        let h = bearer(&token);
        assert!(auth.authenticate(&creds(&h), NOW).is_ok());
        let exp = NOW + 3600;
        assert_eq!(
            auth.authenticate(&creds(&h), exp).err(),
            Some(AuthFailure::Expired)
        );
    }

    #[test]
    fn required_scopes_are_checked_on_cache_hits_and_misses() {
        let mut auth = authenticator(serde_json::json!({"requiredScopes": ["mcp:admin"]}));
        let token = mint(Key::Es256, &std_header("ES256", Some("ec1")), &std_claims());
        let h = bearer(&token);
        for _ in 0..2 {
            assert_eq!(
                auth.authenticate(&creds(&h), NOW).err(),
                Some(AuthFailure::InsufficientScope)
            );
        }
        // The identity was cached even though the scope check failed: no second signature check.
        assert_eq!(auth.cached_tokens(), 1);
    }

    #[test]
    fn missing_or_non_bearer_authorization_is_missing() {
        let mut auth = authenticator(serde_json::json!({}));
        assert_eq!(
            auth.authenticate(&Credentials::default(), NOW).err(),
            Some(AuthFailure::Missing)
        );
        assert_eq!(
            auth.authenticate(&creds("Basic dXNlcjpwYXNz"), NOW).err(),
            Some(AuthFailure::Missing)
        );
    }

    #[test]
    fn jwt_or_api_key_mode_routes_by_shape_and_header() {
        let key = "k3y-0123456789abcdef0123456789abcdef";
        let mut auth = authenticator(serde_json::json!({
            "mode": "jwtOrApiKey",
            "apiKeyHeader": "x-api-key",
            "apiKeys": [{"sha256": apikey::sha256_hex(key), "subject": "ci", "scopes": ["mcp"]}],
        }));
        let token = mint(
            Key::Ed25519,
            &std_header("EdDSA", Some("ed1")),
            &std_claims(),
        );
        let h = bearer(&token);
        let jwt = auth.authenticate(&creds(&h), NOW);
        assert!(jwt.is_ok_and(|a| a.identity.method == AuthMethod::Jwt));
        let hk = bearer(key);
        let by_bearer = auth.authenticate(&creds(&hk), NOW);
        assert!(by_bearer.is_ok_and(|a| a.identity.subject == "ci"));
        let by_header = Credentials {
            api_key: Some(key),
            ..Credentials::default()
        };
        let by_header = auth.authenticate(&by_header, NOW);
        assert!(by_header.is_ok_and(|a| a.identity.method == AuthMethod::ApiKey));
        let wrong = bearer("not-a-key");
        assert_eq!(
            auth.authenticate(&creds(&wrong), NOW).err(),
            Some(AuthFailure::InvalidApiKey)
        );
    }

    #[test]
    fn trust_envoy_mode_checks_claims_from_metadata() {
        let mut auth = Authenticator::new(Arc::new(config_from(serde_json::json!({
            "mode": "trustEnvoyJwtAuthn",
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "resourceMetadata": {
                "resource": AUDIENCE,
                "authorizationServers": [ISSUER],
            },
        }))));
        let payload = std_claims().to_string();
        let c = Credentials {
            jwt_authn_payload: Some(payload.as_bytes()),
            ..Credentials::default()
        };
        let ok = auth.authenticate(&c, NOW);
        assert!(ok.is_ok_and(|a| a.identity.method == AuthMethod::EnvoyJwtAuthn));
        let mut wrong = std_claims();
        wrong["aud"] = "https://other.example.com".into();
        let payload = wrong.to_string();
        let c = Credentials {
            jwt_authn_payload: Some(payload.as_bytes()),
            ..Credentials::default()
        };
        assert_eq!(
            auth.authenticate(&c, NOW).err(),
            Some(AuthFailure::WrongAudience)
        );
        assert_eq!(
            auth.authenticate(&Credentials::default(), NOW).err(),
            Some(AuthFailure::Missing)
        );
    }

    #[test]
    fn remote_keys_arrive_through_the_fetch_cycle_and_unknown_kids_ask_for_a_refresh() {
        let cfg = config_from(serde_json::json!({
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "jwksUri": "https://idp.example.com/.well-known/jwks.json",
            "jwksCluster": "idp",
            "resourceMetadata": {"resource": AUDIENCE, "authorizationServers": [ISSUER]},
        }));
        let mut auth = Authenticator::new(Arc::new(cfg));
        let token = mint(Key::Rsa1, &std_header("RS256", Some("rsa1")), &std_claims());
        let h = bearer(&token);
        assert_eq!(
            auth.authenticate(&creds(&h), NOW).err(),
            Some(AuthFailure::KeysUnavailable)
        );
        let due = auth
            .jwks_fetch_due(NOW)
            .map(|r| (r.cluster.clone(), r.path.clone()));
        assert_eq!(
            due,
            Some(("idp".to_owned(), "/.well-known/jwks.json".to_owned()))
        );
        auth.jwks_fetch_started(NOW);
        assert!(auth.jwks_fetch_due(NOW).is_none());
        let only_rsa2 = serde_json::json!({"keys": [public_jwk(Key::Rsa2, "rsa2")]});
        let update = auth.jwks_fetched(NOW, only_rsa2.to_string().as_bytes());
        assert!(matches!(update, Ok(JwksUpdate::Replaced { .. })));
        assert_eq!(
            auth.authenticate(&creds(&h), NOW).err(),
            Some(AuthFailure::UnknownKid)
        );
        // An unknown kid asks for a refresh, granted once the cooldown since the last fetch
        // (30 s by default) has passed.
        assert!(auth.jwks_fetch_due(NOW + 1).is_none());
        assert_eq!(
            auth.authenticate(&creds(&h), NOW + 30).err(),
            Some(AuthFailure::UnknownKid)
        );
        assert!(auth.jwks_fetch_due(NOW + 30).is_some());
        auth.jwks_fetch_started(NOW + 30);
        let both = serde_json::json!({"keys": [public_jwk(Key::Rsa2, "rsa2"), public_jwk(Key::Rsa1, "rsa1")]});
        assert!(auth
            .jwks_fetched(NOW + 31, both.to_string().as_bytes())
            .is_ok());
        assert!(auth.authenticate(&creds(&h), NOW + 31).is_ok());
        // A failed refresh keeps the keys.
        auth.jwks_fetch_started(NOW + 400);
        auth.jwks_fetch_failed(NOW + 401);
        let other = mint(Key::Rsa2, &std_header("RS256", Some("rsa2")), &std_claims());
        assert!(auth
            .authenticate(&creds(&bearer(&other)), NOW + 402)
            .is_ok());
    }

    #[test]
    fn a_new_key_set_empties_the_cache() {
        let cfg = config_from(serde_json::json!({
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "jwksUri": "https://idp.example.com/jwks",
            "jwksCluster": "idp",
            "resourceMetadata": {"resource": AUDIENCE, "authorizationServers": [ISSUER]},
        }));
        let mut auth = Authenticator::new(Arc::new(cfg));
        let doc = serde_json::json!({"keys": [public_jwk(Key::Rsa1, "rsa1")]}).to_string();
        assert!(auth.jwks_fetched(NOW, doc.as_bytes()).is_ok());
        let token = mint(Key::Rsa1, &std_header("RS256", Some("rsa1")), &std_claims());
        assert!(auth.authenticate(&creds(&bearer(&token)), NOW).is_ok());
        assert_eq!(auth.cached_tokens(), 1);
        // Same document again: nothing changes.
        assert!(matches!(
            auth.jwks_fetched(NOW + 300, doc.as_bytes()),
            Ok(JwksUpdate::Unchanged)
        ));
        assert_eq!(auth.cached_tokens(), 1);
        // rsa1 is revoked: its token stops working at once.
        let doc = serde_json::json!({"keys": [public_jwk(Key::Rsa2, "rsa2")]}).to_string();
        assert!(auth.jwks_fetched(NOW + 600, doc.as_bytes()).is_ok());
        assert_eq!(auth.cached_tokens(), 0);
        assert_eq!(
            auth.authenticate(&creds(&bearer(&token)), NOW + 600).err(),
            Some(AuthFailure::UnknownKid)
        );
    }
    /// Not an assertion: prints per-operation costs for the report. Run natively with
    /// `cargo test --release -p mcp-gateway-core --lib auth::tests::timing -- --ignored
    /// --nocapture`, or build the test binary for wasm32-wasip1 and run it under V8 (Node's WASI).
    #[test]
    #[ignore]
    fn timing_of_verification_and_cache_hits() {
        use std::time::{Duration, Instant};
        fn per_op(mut f: impl FnMut()) -> Duration {
            let mut n = 1u32;
            loop {
                let t = Instant::now();
                for _ in 0..n {
                    f();
                }
                let took = t.elapsed();
                if took > Duration::from_millis(300) || n >= 1 << 24 {
                    return took / n;
                }
                n *= 2;
            }
        }
        let cfg = std_config();
        let mut big = std_claims();
        big["groups"] = (0..40).map(|i| format!("group-{i:04}-abcdefgh")).collect();
        for (name, key, alg, kid) in [
            ("HS256", Key::Hmac, "HS256", "hs"),
            ("RS256", Key::Rsa1, "RS256", "rsa1"),
            ("ES256", Key::Es256, "ES256", "ec1"),
            ("EdDSA", Key::Ed25519, "EdDSA", "ed1"),
        ] {
            let token = mint(key, &std_header(alg, Some(kid)), &std_claims());
            let keys = [Some(&cfg.inline_keys)];
            let d = per_op(|| {
                let r = jwt::verify(&token, cfg, &keys, &RustCryptoVerifier, NOW);
                assert!(r.is_ok());
            });
            println!("verify {name} ({} B token): {d:?}", token.len());
        }
        for (what, claims) in [("small", std_claims()), ("1.5 KB", big)] {
            let token = mint(Key::Rsa1, &std_header("RS256", Some("rsa1")), &claims);
            let mut auth = authenticator(serde_json::json!({}));
            let h = bearer(&token);
            let c = creds(&h);
            assert!(auth.authenticate(&c, NOW).is_ok_and(|a| !a.from_cache));
            let d = per_op(|| {
                let r = auth.authenticate(&c, NOW);
                assert!(r.is_ok_and(|a| a.from_cache));
            });
            println!("cache hit, {what} token ({} B): {d:?}", token.len());
            let d = per_op(|| {
                std::hint::black_box(TokenDigest::of(std::hint::black_box(&token)));
            });
            println!("  of which SHA-256 of the token: {d:?}");
        }
        let keys: Vec<_> = (0..10)
            .map(|i| serde_json::json!({"sha256": apikey::sha256_hex(&format!("key-{i}")), "subject": format!("s{i}")}))
            .collect();
        let auth = authenticator(serde_json::json!({"mode": "jwtOrApiKey", "apiKeys": keys}));
        let d = per_op(|| {
            assert!(auth.config().api_keys.lookup("key-9").is_some());
        });
        println!("API key lookup among 10: {d:?}");
    }
}
