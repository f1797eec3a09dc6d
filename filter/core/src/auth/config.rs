//! The `auth` section of the plugin configuration, and its compiled form.
//!
//! Same two phases as the rest of the config: serde types mirroring the JSON (camelCase, unknown
//! fields rejected), compiled once into [`AuthConfig`] with every key decoded and every URL
//! checked, so the request path does no validation. Errors name the field, prefixed `auth.`.

use serde::Deserialize;
use serde_json::Value;

use super::apikey::ApiKeys;
use super::jwks::{self, JwkOrigin, KeySet, RefreshPolicy};
use super::jwt::{Algorithm, AlgorithmSet};
use super::metadata::{self, ResourceMetadata};

/// Where authentication credentials come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthMode {
    /// `Authorization: Bearer <JWT>`, verified by the gateway.
    #[default]
    Jwt,
    /// Static API keys only.
    ApiKey,
    /// A JWT, or else an API key (from `apiKeyHeader`, or a bearer value that is not a JWT).
    JwtOrApiKey,
    /// Envoy's `jwt_authn` filter verified the token; the gateway checks the claims it left in
    /// dynamic metadata (issuer, audience, expiry, scopes).
    TrustEnvoyJwtAuthn,
}

/// The `auth` section as users write it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawAuthConfig {
    /// Where credentials come from. Default `jwt`.
    pub mode: Option<AuthMode>,
    /// The one accepted token issuer (`iss`). Use `issuers` for several.
    pub issuer: Option<String>,
    /// Accepted token issuers (`iss`), exact match.
    pub issuers: Option<Vec<String>>,
    /// This gateway's resource identifiers (RFC 8707): a token's `aud` must contain one.
    /// Default: `resourceMetadata.resource`.
    pub audiences: Option<Vec<String>>,
    /// An inline JWKS (`{"keys": [...]}`, as an object or a JSON string). The only place
    /// symmetric (`"kty": "oct"`) keys for HS256 are accepted.
    pub jwks: Option<Value>,
    /// URL of the issuer's JWKS, fetched by the gateway through `jwksCluster`.
    pub jwks_uri: Option<String>,
    /// Envoy cluster that reaches the host of `jwksUri`.
    pub jwks_cluster: Option<String>,
    /// Seconds between scheduled JWKS fetches. Default 300.
    pub jwks_refresh_seconds: Option<u64>,
    /// Least seconds between two fetches triggered by tokens with an unknown `kid`, so forged
    /// `kid`s cannot make the gateway hammer the issuer. Default 30.
    pub jwks_min_refresh_interval_seconds: Option<u64>,
    /// Timeout of one JWKS fetch, in milliseconds. Default 5000.
    pub jwks_fetch_timeout_ms: Option<u64>,
    /// Accepted JWS algorithms, among `RS256`, `ES256`, `EdDSA`, `HS256`. Default the three
    /// asymmetric ones. `HS256` needs an inline `oct` key.
    pub algorithms: Option<Vec<String>>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds. Default 60.
    pub leeway_seconds: Option<u64>,
    /// Scopes every request needs; otherwise 403 `insufficient_scope`. Default none.
    pub required_scopes: Option<Vec<String>>,
    /// The RFC 9728 protected-resource metadata this gateway serves. Required with tokens.
    pub resource_metadata: Option<RawResourceMetadata>,
    /// Static API keys, for `apiKey` and `jwtOrApiKey` modes.
    pub api_keys: Option<Vec<RawApiKey>>,
    /// Header that carries an API key (e.g. `x-api-key`). Without it, API keys come as
    /// `Authorization: Bearer <key>`.
    pub api_key_header: Option<String>,
    /// Most verified tokens kept in the cache; 0 disables it. Default 1024.
    pub cache_size: Option<usize>,
    /// Longest a verified token stays cached, in seconds, even if its `exp` is later. Default 300.
    pub cache_max_ttl_seconds: Option<u64>,
    /// Longest bearer token accepted, in bytes. Default 8192.
    pub max_token_bytes: Option<usize>,
    /// In `trustEnvoyJwtAuthn` mode: the `payload_in_metadata` name set in `jwt_authn`.
    /// Default `jwt_payload`.
    pub jwt_authn_payload_key: Option<String>,
}

/// RFC 9728 metadata fields.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawResourceMetadata {
    /// This gateway's resource identifier, e.g. `https://mcp.example.com/mcp`: absolute
    /// http(s) URL without query or fragment. Clients ask for tokens with it as `resource`.
    pub resource: String,
    /// Issuer URLs of the authorization servers that issue tokens for this resource.
    pub authorization_servers: Vec<String>,
    /// Scopes to advertise (`scopes_supported`).
    pub scopes_supported: Option<Vec<String>>,
    /// Human-readable name (`resource_name`).
    pub resource_name: Option<String>,
    /// URL of human-readable documentation (`resource_documentation`).
    pub resource_documentation: Option<String>,
}

/// One static API key.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawApiKey {
    /// SHA-256 of the key, 64 hex digits (`printf %s "$KEY" | sha256sum`). The key itself is
    /// never in the config. Keys must be long random strings: an unsalted hash only protects
    /// high-entropy secrets.
    pub sha256: String,
    /// The identity's subject.
    pub subject: String,
    /// Scopes granted to this key.
    pub scopes: Option<Vec<String>>,
}

/// A remote JWKS: what the glue needs to fetch it, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub uri: String,
    pub cluster: String,
    /// `:authority` of the fetch (the URI's host).
    pub authority: String,
    /// `:path` of the fetch (with query).
    pub path: String,
    pub refresh_seconds: u64,
    pub min_refresh_interval_seconds: u64,
    pub timeout_ms: u64,
}

impl RemoteJwks {
    pub fn refresh_policy(&self) -> RefreshPolicy {
        RefreshPolicy {
            interval: self.refresh_seconds,
            min_interval: self.min_refresh_interval_seconds,
            timeout: self.timeout_ms.div_ceil(1000).max(1),
        }
    }
}

/// The compiled, validated `auth` section.
#[derive(Debug)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    pub inline_keys: KeySet,
    pub remote_jwks: Option<RemoteJwks>,
    pub algorithms: AlgorithmSet,
    pub leeway: u64,
    pub required_scopes: Vec<String>,
    pub metadata: Option<ResourceMetadata>,
    pub api_keys: ApiKeys,
    /// Lower-case header name.
    pub api_key_header: Option<String>,
    pub cache_size: usize,
    pub cache_max_ttl: u64,
    pub max_token_bytes: usize,
    pub jwt_authn_payload_key: String,
}

/// An `auth` configuration error; the message starts with the path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct AuthConfigError {
    pub field: String,
    pub problem: String,
}

impl From<AuthConfigError> for crate::config::ConfigError {
    fn from(e: AuthConfigError) -> Self {
        crate::config::ConfigError::Invalid {
            field: e.field,
            problem: e.problem,
        }
    }
}

pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> AuthConfigError {
    AuthConfigError {
        field: field.into(),
        problem: problem.into(),
    }
}

const MAX_LEEWAY: u64 = 3600;
const MAX_TOKEN_BYTES_CEILING: usize = 64 * 1024;
const MAX_CACHE_SIZE: usize = 1 << 20;

impl AuthConfig {
    /// Parses the `auth` section on its own (tests, tools); the plugin config embeds
    /// [`RawAuthConfig`] and calls [`AuthConfig::compile`].
    pub fn from_json(bytes: &[u8]) -> Result<AuthConfig, AuthConfigError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let raw: RawAuthConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." || path.is_empty() {
                "auth".to_owned()
            } else {
                format!("auth.{path}")
            };
            invalid(field, e.into_inner().to_string())
        })?;
        AuthConfig::compile(raw)
    }

    pub fn compile(raw: RawAuthConfig) -> Result<AuthConfig, AuthConfigError> {
        let mode = raw.mode.unwrap_or_default();
        let verifies_jwt = matches!(mode, AuthMode::Jwt | AuthMode::JwtOrApiKey);
        let uses_tokens = verifies_jwt || mode == AuthMode::TrustEnvoyJwtAuthn;
        let uses_api_keys = matches!(mode, AuthMode::ApiKey | AuthMode::JwtOrApiKey);

        let not_for_mode = |field: &str| {
            invalid(
                format!("auth.{field}"),
                format!("is not used in mode {}", mode_name(mode)),
            )
        };
        if !verifies_jwt {
            let jwt_only = [
                ("jwks", raw.jwks.is_some()),
                ("jwksUri", raw.jwks_uri.is_some()),
                ("jwksCluster", raw.jwks_cluster.is_some()),
                ("algorithms", raw.algorithms.is_some()),
                ("cacheSize", raw.cache_size.is_some()),
            ];
            if let Some((f, _)) = jwt_only.iter().find(|(_, set)| *set) {
                return Err(not_for_mode(f));
            }
        }
        if !uses_tokens {
            let token_only = [
                ("issuer", raw.issuer.is_some()),
                ("issuers", raw.issuers.is_some()),
                ("audiences", raw.audiences.is_some()),
                ("leewaySeconds", raw.leeway_seconds.is_some()),
            ];
            if let Some((f, _)) = token_only.iter().find(|(_, set)| *set) {
                return Err(not_for_mode(f));
            }
        }
        if !uses_api_keys && (raw.api_keys.is_some() || raw.api_key_header.is_some()) {
            let f = if raw.api_keys.is_some() {
                "apiKeys"
            } else {
                "apiKeyHeader"
            };
            return Err(not_for_mode(f));
        }
        if mode != AuthMode::TrustEnvoyJwtAuthn && raw.jwt_authn_payload_key.is_some() {
            return Err(not_for_mode("jwtAuthnPayloadKey"));
        }

        let metadata = match raw.resource_metadata {
            Some(m) => Some(ResourceMetadata::compile(m, "auth.resourceMetadata")?),
            None if uses_tokens => {
                return Err(invalid(
                    "auth.resourceMetadata",
                    "is required when tokens are accepted: MCP clients discover the \
                     authorization server through it",
                ))
            }
            None => None,
        };

        let issuers = match (raw.issuer, raw.issuers) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "auth.issuers",
                    "set either issuer or issuers, not both",
                ))
            }
            (Some(one), None) => vec![one],
            (None, Some(list)) => list,
            (None, None) => Vec::new(),
        };
        if verifies_jwt && issuers.is_empty() {
            return Err(invalid("auth.issuer", "is required (or auth.issuers)"));
        }
        for (i, iss) in issuers.iter().enumerate() {
            if iss.is_empty() {
                return Err(invalid(format!("auth.issuers[{i}]"), "must not be empty"));
            }
        }

        let audiences = match raw.audiences {
            Some(list) => list,
            None => metadata
                .as_ref()
                .map(|m| vec![m.resource().to_owned()])
                .unwrap_or_default(),
        };
        if uses_tokens && audiences.is_empty() {
            return Err(invalid("auth.audiences", "must not be empty"));
        }
        for (i, aud) in audiences.iter().enumerate() {
            if aud.is_empty() {
                return Err(invalid(format!("auth.audiences[{i}]"), "must not be empty"));
            }
        }

        let algorithms = match raw.algorithms {
            None => AlgorithmSet::DEFAULT,
            Some(list) if list.is_empty() => {
                return Err(invalid("auth.algorithms", "must not be empty"))
            }
            Some(list) => {
                let mut set = AlgorithmSet::EMPTY;
                for (i, name) in list.iter().enumerate() {
                    let alg = Algorithm::from_name(name).ok_or_else(|| {
                        invalid(
                            format!("auth.algorithms[{i}]"),
                            format!("{name:?} is not supported; use RS256, ES256, EdDSA or HS256"),
                        )
                    })?;
                    set = set.with(alg);
                }
                set
            }
        };

        let inline_keys = match raw.jwks {
            None => KeySet::default(),
            Some(doc) => compile_inline_jwks(&doc)?,
        };
        if algorithms.contains(Algorithm::Hs256) && !inline_keys.has_symmetric() {
            return Err(invalid(
                "auth.algorithms",
                "HS256 needs an inline \"oct\" key in auth.jwks",
            ));
        }

        let remote_jwks = match (raw.jwks_uri, raw.jwks_cluster) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid("auth.jwksCluster", "is required with auth.jwksUri"))
            }
            (None, Some(_)) => {
                return Err(invalid("auth.jwksUri", "is required with auth.jwksCluster"))
            }
            (Some(uri), Some(cluster)) => {
                let parts = metadata::split_url(&uri).map_err(|p| invalid("auth.jwksUri", p))?;
                if cluster.is_empty() {
                    return Err(invalid("auth.jwksCluster", "must not be empty"));
                }
                let refresh_seconds = raw.jwks_refresh_seconds.unwrap_or(300);
                if !(10..=86_400).contains(&refresh_seconds) {
                    return Err(invalid(
                        "auth.jwksRefreshSeconds",
                        format!("must be between 10 and 86400, got {refresh_seconds}"),
                    ));
                }
                let min_refresh = raw.jwks_min_refresh_interval_seconds.unwrap_or(30);
                if min_refresh == 0 || min_refresh > refresh_seconds {
                    return Err(invalid(
                        "auth.jwksMinRefreshIntervalSeconds",
                        format!("must be between 1 and jwksRefreshSeconds, got {min_refresh}"),
                    ));
                }
                let timeout_ms = raw.jwks_fetch_timeout_ms.unwrap_or(5000);
                if !(100..=60_000).contains(&timeout_ms) {
                    return Err(invalid(
                        "auth.jwksFetchTimeoutMs",
                        format!("must be between 100 and 60000, got {timeout_ms}"),
                    ));
                }
                Some(RemoteJwks {
                    authority: parts.authority.to_owned(),
                    path: parts.path_and_query.to_owned(),
                    uri: uri.clone(),
                    cluster,
                    refresh_seconds,
                    min_refresh_interval_seconds: min_refresh,
                    timeout_ms,
                })
            }
        };
        let field_only_with_uri = [
            ("jwksRefreshSeconds", raw.jwks_refresh_seconds.is_some()),
            (
                "jwksMinRefreshIntervalSeconds",
                raw.jwks_min_refresh_interval_seconds.is_some(),
            ),
            ("jwksFetchTimeoutMs", raw.jwks_fetch_timeout_ms.is_some()),
        ];
        if remote_jwks.is_none() {
            if let Some((f, _)) = field_only_with_uri.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    format!("auth.{f}"),
                    "is only used with auth.jwksUri",
                ));
            }
        }
        if verifies_jwt && inline_keys.is_empty() && remote_jwks.is_none() {
            return Err(invalid(
                "auth.jwks",
                "JWT verification needs keys: set auth.jwks or auth.jwksUri",
            ));
        }

        let leeway = raw.leeway_seconds.unwrap_or(60);
        if leeway > MAX_LEEWAY {
            return Err(invalid(
                "auth.leewaySeconds",
                format!("must be at most {MAX_LEEWAY}, got {leeway}"),
            ));
        }

        let required_scopes = raw.required_scopes.unwrap_or_default();
        check_scopes("auth.requiredScopes", &required_scopes)?;

        let api_keys = match raw.api_keys {
            Some(list) => ApiKeys::compile(list, "auth.apiKeys")?,
            None if uses_api_keys => return Err(invalid("auth.apiKeys", "must not be empty")),
            None => ApiKeys::default(),
        };
        if uses_api_keys && api_keys.is_empty() {
            return Err(invalid("auth.apiKeys", "must not be empty"));
        }
        let api_key_header = raw
            .api_key_header
            .map(|h| header_name("auth.apiKeyHeader", h))
            .transpose()?;

        let cache_size = raw.cache_size.unwrap_or(1024);
        if cache_size > MAX_CACHE_SIZE {
            return Err(invalid(
                "auth.cacheSize",
                format!("must be at most {MAX_CACHE_SIZE}, got {cache_size}"),
            ));
        }
        let cache_max_ttl = raw.cache_max_ttl_seconds.unwrap_or(300);
        if cache_max_ttl == 0 || cache_max_ttl > 86_400 {
            return Err(invalid(
                "auth.cacheMaxTtlSeconds",
                format!("must be between 1 and 86400, got {cache_max_ttl}"),
            ));
        }
        let max_token_bytes = raw.max_token_bytes.unwrap_or(8192);
        if !(256..=MAX_TOKEN_BYTES_CEILING).contains(&max_token_bytes) {
            return Err(invalid(
                "auth.maxTokenBytes",
                format!("must be between 256 and {MAX_TOKEN_BYTES_CEILING}, got {max_token_bytes}"),
            ));
        }
        let jwt_authn_payload_key = raw
            .jwt_authn_payload_key
            .unwrap_or_else(|| "jwt_payload".to_owned());
        if jwt_authn_payload_key.is_empty() {
            return Err(invalid("auth.jwtAuthnPayloadKey", "must not be empty"));
        }

        Ok(AuthConfig {
            mode,
            issuers,
            audiences,
            inline_keys,
            remote_jwks,
            algorithms,
            leeway,
            required_scopes,
            metadata,
            api_keys,
            api_key_header,
            cache_size,
            cache_max_ttl,
            max_token_bytes,
            jwt_authn_payload_key,
        })
    }
}

fn mode_name(mode: AuthMode) -> &'static str {
    match mode {
        AuthMode::Jwt => "jwt",
        AuthMode::ApiKey => "apiKey",
        AuthMode::JwtOrApiKey => "jwtOrApiKey",
        AuthMode::TrustEnvoyJwtAuthn => "trustEnvoyJwtAuthn",
    }
}

fn compile_inline_jwks(doc: &Value) -> Result<KeySet, AuthConfigError> {
    let parsed = match doc {
        Value::String(s) => jwks::parse_jwks(s.as_bytes(), JwkOrigin::Inline),
        other => jwks::parse_jwks_value(other, JwkOrigin::Inline),
    }
    .map_err(|e| invalid("auth.jwks", e.to_string()))?;
    // Inline keys are written by the operator: a key we cannot use is a mistake to report, not a
    // foreign key type to skip quietly.
    if let Some(skipped) = parsed.skipped.first() {
        return Err(invalid(
            format!("auth.jwks.keys[{}]", skipped.index),
            skipped.reason.clone(),
        ));
    }
    if parsed.keys.is_empty() {
        return Err(invalid("auth.jwks", "has no keys"));
    }
    Ok(parsed.keys)
}

/// RFC 6749 §3.3 scope-token: `1*( %x21 / %x23-5B / %x5D-7E )`. This also keeps scopes safe
/// inside a quoted `WWW-Authenticate` parameter.
pub(crate) fn valid_scope(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

pub(crate) fn check_scopes(field: &str, scopes: &[String]) -> Result<(), AuthConfigError> {
    for (i, s) in scopes.iter().enumerate() {
        if !valid_scope(s) {
            return Err(invalid(
                format!("{field}[{i}]"),
                format!(
                    "{s:?} is not a valid OAuth scope (printable ASCII, no space, '\"' or '\\')"
                ),
            ));
        }
    }
    Ok(())
}

fn header_name(field: &str, name: String) -> Result<String, AuthConfigError> {
    if !crate::protocol::is_header_token(&name) {
        return Err(invalid(
            field,
            format!("{name:?} is not a valid header name"),
        ));
    }
    if name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("host") {
        return Err(invalid(field, format!("{name:?} is reserved")));
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn error_of(json: serde_json::Value) -> String {
        match AuthConfig::from_json(json.to_string().as_bytes()) {
            Ok(_) => unreachable!("{json} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_minimal_jwt_config_compiles_with_defaults() {
        let cfg = config_from(serde_json::json!({
            "issuer": ISSUER,
            "jwks": jwks_all(),
            "resourceMetadata": {"resource": AUDIENCE, "authorizationServers": [ISSUER]},
        }));
        assert_eq!(cfg.mode, AuthMode::Jwt);
        assert_eq!(cfg.audiences, vec![AUDIENCE.to_owned()]);
        assert_eq!(cfg.leeway, 60);
        assert_eq!(cfg.cache_size, 1024);
        assert!(cfg.algorithms.contains(Algorithm::Rs256));
        assert!(!cfg.algorithms.contains(Algorithm::Hs256));
    }

    #[test]
    fn bad_values_name_the_field() {
        let meta = serde_json::json!({"resource": AUDIENCE, "authorizationServers": [ISSUER]});
        let base = |extra: serde_json::Value| {
            let mut v =
                serde_json::json!({"issuer": ISSUER, "jwks": jwks_all(), "resourceMetadata": meta});
            if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                for (k, x) in e {
                    o.insert(k.clone(), x.clone());
                }
            }
            v
        };
        let cases = [
            (
                base(serde_json::json!({"audiences": []})),
                "auth.audiences: must not be empty",
            ),
            (
                base(serde_json::json!({"audiences": [""]})),
                "auth.audiences[0]",
            ),
            (base(serde_json::json!({"issuers": ["x"]})), "auth.issuers"),
            (
                serde_json::json!({"jwks": jwks_all(), "resourceMetadata": meta}),
                "auth.issuer",
            ),
            (
                base(serde_json::json!({"algorithms": ["RS256", "none"]})),
                "auth.algorithms[1]",
            ),
            (
                base(serde_json::json!({"algorithms": []})),
                "auth.algorithms",
            ),
            (
                serde_json::json!({"issuer": ISSUER, "jwks": {"keys": [public_jwk(Key::Rsa1, "r")]}, "algorithms": ["HS256"], "resourceMetadata": meta}),
                "auth.algorithms: HS256",
            ),
            (
                base(serde_json::json!({"jwksUri": "https://idp/jwks"})),
                "auth.jwksCluster",
            ),
            (
                base(serde_json::json!({"jwksCluster": "idp"})),
                "auth.jwksUri",
            ),
            (
                base(serde_json::json!({"jwksUri": "idp/jwks", "jwksCluster": "idp"})),
                "auth.jwksUri",
            ),
            (
                base(serde_json::json!({"jwksRefreshSeconds": 60})),
                "auth.jwksRefreshSeconds",
            ),
            (
                base(
                    serde_json::json!({"jwksUri": "https://idp/j", "jwksCluster": "c", "jwksMinRefreshIntervalSeconds": 0}),
                ),
                "auth.jwksMinRefreshIntervalSeconds",
            ),
            (
                base(serde_json::json!({"leewaySeconds": 99999})),
                "auth.leewaySeconds",
            ),
            (
                base(serde_json::json!({"requiredScopes": ["a b"]})),
                "auth.requiredScopes[0]",
            ),
            (
                base(serde_json::json!({"requiredScopes": ["ok", "bad\""]})),
                "auth.requiredScopes[1]",
            ),
            (
                base(serde_json::json!({"apiKeys": []})),
                "auth.apiKeys: is not used in mode jwt",
            ),
            (
                base(serde_json::json!({"cacheMaxTtlSeconds": 0})),
                "auth.cacheMaxTtlSeconds",
            ),
            (
                base(serde_json::json!({"maxTokenBytes": 10})),
                "auth.maxTokenBytes",
            ),
            (
                base(serde_json::json!({"jwtAuthnPayloadKey": "p"})),
                "auth.jwtAuthnPayloadKey",
            ),
            (
                base(
                    serde_json::json!({"jwks": {"keys": [{"kty": "RSA", "kid": "r", "n": "!!", "e": "AQAB"}]}}),
                ),
                "auth.jwks.keys[0]",
            ),
            (
                base(serde_json::json!({"jwks": {"nokeys": []}})),
                "auth.jwks",
            ),
            (
                serde_json::json!({"issuer": ISSUER, "resourceMetadata": meta}),
                "auth.jwks: JWT verification needs keys",
            ),
            (
                serde_json::json!({"issuer": ISSUER, "jwks": jwks_all()}),
                "auth.resourceMetadata",
            ),
            (
                base(
                    serde_json::json!({"resourceMetadata": {"resource": "https://x/mcp#f", "authorizationServers": [ISSUER]}}),
                ),
                "auth.resourceMetadata.resource",
            ),
            (
                base(
                    serde_json::json!({"resourceMetadata": {"resource": AUDIENCE, "authorizationServers": []}}),
                ),
                "auth.resourceMetadata.authorizationServers",
            ),
            (
                serde_json::json!({"mode": "apiKey"}),
                "auth.apiKeys: must not be empty",
            ),
            (
                serde_json::json!({"mode": "apiKey", "issuer": ISSUER, "apiKeys": [{"sha256": "00", "subject": "s"}]}),
                "auth.issuer: is not used in mode apiKey",
            ),
            (
                serde_json::json!({"mode": "apiKey", "apiKeys": [{"sha256": "00", "subject": "s"}]}),
                "auth.apiKeys[0].sha256",
            ),
            (
                serde_json::json!({"mode": "apiKey", "apiKeyHeader": "bad header", "apiKeys": [{"sha256": "0".repeat(64), "subject": "s"}]}),
                "auth.apiKeyHeader",
            ),
            (
                serde_json::json!({"mode": "trustEnvoyJwtAuthn", "jwksUri": "https://i/j", "resourceMetadata": meta}),
                "auth.jwksUri: is not used in mode trustEnvoyJwtAuthn",
            ),
        ];
        for (json, want) in cases {
            let e = error_of(json.clone());
            assert!(e.starts_with(want), "{json}\n  gave: {e}\n  want: {want}");
        }
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_named() {
        let e = error_of(serde_json::json!({"issuerz": "x"}));
        assert!(e.starts_with("auth") && e.contains("issuerz"), "{e}");
        let e = error_of(serde_json::json!({"leewaySeconds": "ten"}));
        assert!(e.starts_with("auth.leewaySeconds"), "{e}");
        let e = error_of(serde_json::json!({"mode": "magic"}));
        assert!(e.starts_with("auth.mode"), "{e}");
    }

    #[test]
    fn remote_jwks_uri_is_split_for_the_fetch() {
        let cfg = config_from(serde_json::json!({
            "issuer": ISSUER,
            "jwksUri": "https://idp.example.com:8443/realms/x/certs?v=1",
            "jwksCluster": "idp",
            "resourceMetadata": {"resource": AUDIENCE, "authorizationServers": [ISSUER]},
        }));
        let remote = cfg.remote_jwks.unwrap_or_else(|| unreachable!());
        assert_eq!(remote.authority, "idp.example.com:8443");
        assert_eq!(remote.path, "/realms/x/certs?v=1");
        assert_eq!(remote.refresh_seconds, 300);
        assert_eq!(remote.refresh_policy().timeout, 5);
    }

    #[test]
    fn inline_jwks_may_be_a_json_string() {
        let cfg = config_from(serde_json::json!({
            "issuer": ISSUER,
            "jwks": jwks_all().to_string(),
            "algorithms": ["HS256", "RS256"],
            "resourceMetadata": {"resource": AUDIENCE, "authorizationServers": [ISSUER]},
        }));
        assert!(cfg.inline_keys.has_symmetric());
    }

    #[test]
    fn auth_errors_convert_to_plugin_config_errors() {
        let e: crate::config::ConfigError = invalid("auth.x", "bad").into();
        assert_eq!(e.to_string(), "auth.x: bad");
    }
}
