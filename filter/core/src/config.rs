//! Plugin configuration: the JSON users write in Envoy's `configuration`, and its compiled form.
//!
//! Two phases, as in Kuadrant's wasm-shim: serde types that mirror the JSON (camelCase, unknown
//! fields rejected) are compiled once per `on_configure` into [`Config`], which the request path
//! reads without further checks. Every error names the field it is about, so Envoy's log line
//! says what to fix.

use serde::Deserialize;

use std::sync::Arc;

use crate::auth::config::{AuthConfig, RawAuthConfig};
use crate::federation::config::{RawFederation, RawServer};
use crate::federation::session::SessionCodec;
use crate::federation::Federation;
use crate::origin::{HostPattern, OriginPattern};
use crate::protocol::KNOWN_VERSIONS;

/// Largest request body the gateway will buffer, whatever the config says: Envoy's own buffer
/// limits and the wasm VM's memory make larger bodies a liability.
pub const MAX_REQUEST_BYTES_CEILING: u64 = 64 * 1024 * 1024;

/// The configuration as users write it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawConfig {
    /// Request paths that are MCP endpoints (exact match, query string ignored). Others pass
    /// through untouched. Default `["/mcp"]`.
    pub mcp_paths: Option<Vec<String>>,
    /// Largest request body accepted, in bytes. Default 1 MiB. Larger bodies get 413 with a
    /// JSON-RPC error. Keep it below the listener's `per_connection_buffer_limit_bytes`, or Envoy
    /// answers first with a plain-text 413.
    pub max_request_bytes: Option<u64>,
    /// Largest JSON response (or single SSE event) the gateway inspects for telemetry. Larger ones
    /// still pass through untouched; their outcome is recorded as unknown. Default 1 MiB.
    pub max_observed_response_bytes: Option<u64>,
    /// Require `Mcp-Session-Id` on every request but `initialize` from session-based protocol
    /// revisions (before 2026-07-28), as the spec allows servers to. Default true. Set false in
    /// front of stateless upstreams that never issue a session id.
    pub require_session_id: Option<bool>,
    /// Allowed `Origin` values: `scheme://host[:port]`, `scheme://host:*` (any port) or `*`.
    /// A request with an `Origin` not listed gets 403 (DNS-rebinding protection). Requests
    /// without `Origin` (non-browser clients) are allowed. Default: loopback origins, any port.
    pub allowed_origins: Option<Vec<String>>,
    /// Allowed `Host`/`:authority` values: `host[:port]`, `host:*` or `*`. Default: loopback
    /// names, any port. Set your public host names (or `*`) when serving beyond localhost.
    pub allowed_hosts: Option<Vec<String>>,
    /// Names of the request headers the filter sets from the body, for Envoy's routing.
    pub routing_headers: Option<RawRoutingHeaders>,
    /// `MCP-Protocol-Version` values accepted. Default: every revision the gateway knows.
    pub protocol_versions: Option<Vec<String>>,
    /// Upstream MCP servers to federate behind this one endpoint. Absent: the gateway proxies to
    /// whatever Envoy's route picks, as one server.
    pub servers: Option<Vec<RawServer>>,
    /// Federation settings (name prefixes, session key, list cache).
    pub federation: Option<RawFederation>,
    /// Authentication of clients: OAuth 2.1 bearer JWTs and/or API keys (docs/auth.md).
    /// Absent: no authentication.
    pub auth: Option<RawAuthConfig>,
    /// Credentials presented to the upstream when not federating (with `servers`, each server
    /// has its own `credentials`).
    pub upstream_credentials: Option<crate::credentials::RawCredentials>,
    /// Per-request authorization with Rego (policies/README.md). Absent: everything authenticated
    /// is allowed. Present: default deny.
    pub policy: Option<crate::policy::RawPolicyConfig>,
    /// Forward the verified identity upstream as headers (on-behalf-of audit). Client-sent
    /// copies of these headers are always removed.
    pub identity_headers: Option<RawIdentityHeaders>,
    /// Per-tool metrics, token counts and the audit record (docs/telemetry.md). Default: on.
    pub telemetry: Option<crate::telemetry::RawTelemetry>,
    /// Token-bucket rate limits and token budgets (docs/guardrails-limits.md).
    pub limits: Option<crate::limits::RawLimits>,
    /// Cache of tools/call results for cacheable tools.
    pub result_cache: Option<crate::result_cache::RawResultCache>,
    /// Tool pinning (rug-pull defence). Absent: fingerprints are recorded, nothing is flagged.
    pub pinning: Option<crate::pinning::RawPinning>,
    /// Explicit approval for destructive tools.
    pub approval: Option<crate::approval::RawApproval>,
    /// PII/secret redaction and prompt-injection screening (filter/core/src/guard/README.md).
    pub guardrails: Option<RawGuardrails>,
}

/// `guardrails` as users write it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawGuardrails {
    /// PII and secret redaction in tool results and arguments.
    pub redact: Option<crate::guard::RawRedact>,
    /// Prompt-injection screening of tool descriptions and tool results.
    pub injection: Option<crate::guard::RawInjection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawIdentityHeaders {
    /// Header that carries the subject (`sub`), e.g. `x-mcp-subject`.
    pub subject: Option<String>,
    /// Token claims to forward: claim name → header name, e.g. `{"email": "x-mcp-email"}`.
    pub claims: Option<std::collections::BTreeMap<String, String>>,
}

/// Compiled `identityHeaders`: lower-case header names.
#[derive(Debug, Clone, Default)]
pub struct IdentityHeaders {
    pub subject: Option<String>,
    pub claims: Vec<(String, String)>,
}

impl IdentityHeaders {
    /// Every header name this forwards (all are stripped from client requests).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.subject
            .as_deref()
            .into_iter()
            .chain(self.claims.iter().map(|(_, h)| h.as_str()))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRoutingHeaders {
    /// Header that carries the JSON-RPC method. Default `x-mcp-method`.
    pub method: Option<String>,
    /// Header that carries the tool/prompt name or resource URI. Default `x-mcp-name`.
    pub name: Option<String>,
}

/// The compiled, validated configuration.
#[derive(Clone)]
pub struct Config {
    pub mcp_paths: Vec<String>,
    pub max_request_bytes: usize,
    pub max_observed_response_bytes: usize,
    pub require_session_id: bool,
    pub allowed_origins: Vec<OriginPattern>,
    pub allowed_hosts: Vec<HostPattern>,
    pub method_header: String,
    pub name_header: String,
    pub protocol_versions: Vec<String>,
    pub federation: Option<Federation>,
    /// Seals gateway session ids; present with `federation`.
    pub sessions: Option<SessionCodec>,
    pub auth: Option<Arc<AuthConfig>>,
    pub upstream_credential: Option<crate::credentials::Credential>,
    pub policy: Option<std::rc::Rc<crate::policy::Policy>>,
    pub identity_headers: Option<IdentityHeaders>,
    pub telemetry: crate::telemetry::Telemetry,
    pub limits: Option<crate::limits::Limits>,
    pub result_cache: Option<crate::result_cache::ResultCache>,
    /// `None` without a `pinning` section (nothing is fingerprinted then).
    pub pinning: Option<crate::pinning::Pinning>,
    pub approval: Option<crate::approval::Approval>,
    /// Redaction and injection screening; `None` when nothing is configured.
    pub guards: Option<crate::guard::GuardSet>,
}

/// A configuration error; the message starts with the path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("plugin configuration is not valid JSON for this filter: {0}")]
    Json(String),
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

const DEFAULT_ORIGINS: &[&str] = &[
    "http://localhost:*",
    "https://localhost:*",
    "http://127.0.0.1:*",
    "https://127.0.0.1:*",
    "http://[::1]:*",
    "https://[::1]:*",
];
const DEFAULT_HOSTS: &[&str] = &["localhost:*", "127.0.0.1:*", "[::1]:*"];

impl Config {
    /// Parses and compiles the plugin configuration. Empty input means all defaults.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = if bytes.iter().all(u8::is_ascii_whitespace) {
            RawConfig::default()
        } else {
            let de = &mut serde_json::Deserializer::from_slice(bytes);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path == "." || path.is_empty() {
                    ConfigError::Json(inner.to_string())
                } else {
                    ConfigError::Json(format!("{path}: {inner}"))
                }
            })?
        };
        Config::compile(raw)
    }

    pub fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
        let mcp_paths = raw.mcp_paths.unwrap_or_else(|| vec!["/mcp".to_owned()]);
        if mcp_paths.is_empty() {
            return Err(invalid("mcpPaths", "must list at least one path"));
        }
        for (i, p) in mcp_paths.iter().enumerate() {
            if !p.starts_with('/') || p.contains('?') || p.contains('#') {
                return Err(invalid(
                    format!("mcpPaths[{i}]"),
                    format!("{p:?} must be an absolute path starting with '/' without query or fragment"),
                ));
            }
        }
        let max_request_bytes = bounded(
            "maxRequestBytes",
            raw.max_request_bytes.unwrap_or(1024 * 1024),
        )?;
        let max_observed_response_bytes = bounded(
            "maxObservedResponseBytes",
            raw.max_observed_response_bytes.unwrap_or(1024 * 1024),
        )?;
        let allowed_origins = patterns(
            "allowedOrigins",
            raw.allowed_origins,
            DEFAULT_ORIGINS,
            OriginPattern::parse,
        )?;
        let allowed_hosts = patterns(
            "allowedHosts",
            raw.allowed_hosts,
            DEFAULT_HOSTS,
            HostPattern::parse,
        )?;
        let headers = raw.routing_headers.unwrap_or_default();
        let method_header = header_name("routingHeaders.method", headers.method, "x-mcp-method")?;
        let name_header = header_name("routingHeaders.name", headers.name, "x-mcp-name")?;
        if method_header == name_header {
            return Err(invalid(
                "routingHeaders.name",
                "must differ from routingHeaders.method",
            ));
        }
        let federation = match raw.servers {
            Some(servers) => Some(Federation::compile(servers, raw.federation, header_name)?),
            None if raw.federation.is_some() => {
                return Err(invalid("federation", "needs servers to federate"))
            }
            None => None,
        };
        let protocol_versions = match raw.protocol_versions {
            None => KNOWN_VERSIONS.iter().map(|v| (*v).to_owned()).collect(),
            Some(list) if list.is_empty() => {
                return Err(invalid(
                    "protocolVersions",
                    "must list at least one revision",
                ))
            }
            Some(list) => {
                for (i, v) in list.iter().enumerate() {
                    if !KNOWN_VERSIONS.contains(&v.as_str()) {
                        return Err(invalid(
                            format!("protocolVersions[{i}]"),
                            format!(
                                "unknown revision {v:?}; known: {}",
                                KNOWN_VERSIONS.join(", ")
                            ),
                        ));
                    }
                }
                list
            }
        };
        Ok(Config {
            mcp_paths,
            max_request_bytes,
            max_observed_response_bytes,
            require_session_id: raw.require_session_id.unwrap_or(true),
            allowed_origins,
            allowed_hosts,
            method_header,
            name_header,
            protocol_versions,
            sessions: federation
                .as_ref()
                .map(|f| SessionCodec::new(&f.session_key)),
            federation,
            auth: match raw.auth {
                Some(a) => Some(Arc::new(AuthConfig::compile(a)?)),
                None => None,
            },
            upstream_credential: match raw.upstream_credentials {
                Some(c) => Some(crate::credentials::Credential::compile(
                    c,
                    "upstreamCredentials",
                )?),
                None => None,
            },
            policy: match raw.policy {
                Some(p) => Some(std::rc::Rc::new(crate::policy::Policy::compile(p)?)),
                None => None,
            },
            identity_headers: match raw.identity_headers {
                Some(h) => Some(compile_identity_headers(h)?),
                None => None,
            },
            telemetry: crate::telemetry::Telemetry::compile(raw.telemetry)?,
            limits: match raw.limits {
                Some(l) => Some(crate::limits::Limits::compile(l, "limits")?),
                None => None,
            },
            result_cache: match raw.result_cache {
                Some(c) => Some(crate::result_cache::ResultCache::compile(c, "resultCache")?),
                None => None,
            },
            pinning: match raw.pinning {
                Some(p) => Some(crate::pinning::Pinning::compile(p, "pinning")?),
                None => None,
            },
            approval: match raw.approval {
                Some(a) => Some(crate::approval::Approval::compile(a, "approval")?),
                None => None,
            },
            guards: match raw.guardrails {
                Some(g) => {
                    let set = crate::guard::GuardSet::compile(
                        g.redact.as_ref(),
                        g.injection.as_ref(),
                        "guardrails",
                    )
                    .map_err(|e| {
                        let text = e.to_string();
                        match text.split_once(": ") {
                            Some((field, problem)) => invalid(field, problem),
                            None => invalid("guardrails", text),
                        }
                    })?;
                    (!set.is_empty()).then_some(set)
                }
                None => None,
            },
        }
        .with_tool_registry())
    }

    /// The tool registry (fingerprints and hints from tools/list) is kept whenever something
    /// reads it: pinning itself, approval by `destructiveHint`, caching by `readOnlyHint`.
    fn with_tool_registry(mut self) -> Config {
        let needs_hints = self.approval.as_ref().is_some_and(|a| a.uses_hints())
            || self
                .result_cache
                .as_ref()
                .is_some_and(|c| c.uses_read_only_hint());
        if self.pinning.is_none() && needs_hints {
            self.pinning = Some(crate::pinning::Pinning::default());
        }
        self
    }

    /// Whether `path` (with any query string) is one of the MCP endpoints.
    pub fn is_mcp_path(&self, path: &str) -> bool {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        self.mcp_paths.iter().any(|p| p == path)
    }
}

impl Default for Config {
    fn default() -> Self {
        // The defaults always compile; fall back to an explicit literal rather than panic.
        Config::compile(RawConfig::default()).unwrap_or_else(|_| Config {
            mcp_paths: vec!["/mcp".into()],
            max_request_bytes: 1024 * 1024,
            max_observed_response_bytes: 1024 * 1024,
            require_session_id: true,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            method_header: "x-mcp-method".into(),
            name_header: "x-mcp-name".into(),
            protocol_versions: Vec::new(),
            federation: None,
            sessions: None,
            auth: None,
            upstream_credential: None,
            policy: None,
            identity_headers: None,
            telemetry: crate::telemetry::Telemetry::default(),
            limits: None,
            result_cache: None,
            pinning: None,
            approval: None,
            guards: None,
        })
    }
}

fn compile_identity_headers(raw: RawIdentityHeaders) -> Result<IdentityHeaders, ConfigError> {
    let reserved = [
        "authorization",
        "cookie",
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
    ];
    let check = |field: String, name: String| -> Result<String, ConfigError> {
        let name = header_name(&field, Some(name), "")?;
        if reserved.contains(&name.as_str()) {
            return Err(invalid(field, format!("{name:?} is reserved")));
        }
        Ok(name)
    };
    let subject = match raw.subject {
        Some(h) => Some(check("identityHeaders.subject".into(), h)?),
        None => None,
    };
    let mut claims = Vec::new();
    for (claim, header) in raw.claims.unwrap_or_default() {
        let field = format!("identityHeaders.claims.{claim}");
        claims.push((claim, check(field, header)?));
    }
    Ok(IdentityHeaders { subject, claims })
}

fn bounded(field: &str, value: u64) -> Result<usize, ConfigError> {
    if value == 0 || value > MAX_REQUEST_BYTES_CEILING {
        return Err(invalid(
            field,
            format!("must be between 1 and {MAX_REQUEST_BYTES_CEILING}, got {value}"),
        ));
    }
    usize::try_from(value).map_err(|_| invalid(field, "too large for this platform"))
}

fn patterns<T>(
    field: &str,
    given: Option<Vec<String>>,
    default: &[&str],
    parse: fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, ConfigError> {
    match given {
        None => default
            .iter()
            .map(|p| parse(p).map_err(|e| invalid(field, e)))
            .collect(),
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, p)| parse(p).map_err(|e| invalid(format!("{field}[{i}]"), e)))
            .collect(),
    }
}

fn header_name(field: &str, given: Option<String>, default: &str) -> Result<String, ConfigError> {
    let name = given.unwrap_or_else(|| default.to_owned());
    if !crate::protocol::is_header_token(&name) {
        return Err(invalid(
            field,
            format!("{name:?} is not a valid header name"),
        ));
    }
    if name.starts_with(':') || name.eq_ignore_ascii_case("host") {
        return Err(invalid(field, format!("{name:?} is reserved")));
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(json: &str) -> String {
        match Config::from_json(json.as_bytes()) {
            Ok(_) => unreachable!("{json} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_config_means_defaults() {
        let cfg = Config::from_json(b"").unwrap_or_default();
        assert_eq!(cfg.mcp_paths, vec!["/mcp"]);
        assert_eq!(cfg.max_request_bytes, 1024 * 1024);
        assert!(cfg.require_session_id);
        assert_eq!(cfg.method_header, "x-mcp-method");
        assert!(Config::from_json(b"{}").is_ok());
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = error_of(r#"{"mcpPathz":["/mcp"]}"#);
        assert!(e.contains("mcpPathz"), "{e}");
        let e = error_of(r#"{"routingHeaders":{"methd":"x"}}"#);
        assert!(e.contains("routingHeaders") && e.contains("methd"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_field() {
        let e = error_of(r#"{"maxRequestBytes":"big"}"#);
        assert!(e.contains("maxRequestBytes"), "{e}");
    }

    #[test]
    fn bad_values_name_the_field() {
        for (json, field) in [
            (r#"{"maxRequestBytes":0}"#, "maxRequestBytes"),
            (
                r#"{"maxObservedResponseBytes":99999999999}"#,
                "maxObservedResponseBytes",
            ),
            (r#"{"mcpPaths":[]}"#, "mcpPaths"),
            (r#"{"mcpPaths":["/ok","nope"]}"#, "mcpPaths[1]"),
            (r#"{"allowedOrigins":["ftp//x"]}"#, "allowedOrigins[0]"),
            (r#"{"allowedHosts":[""]}"#, "allowedHosts[0]"),
            (
                r#"{"routingHeaders":{"method":"bad header"}}"#,
                "routingHeaders.method",
            ),
            (
                r#"{"routingHeaders":{"method":"a","name":"A"}}"#,
                "routingHeaders.name",
            ),
            (
                r#"{"protocolVersions":["1999-01-01"]}"#,
                "protocolVersions[0]",
            ),
        ] {
            let e = error_of(json);
            assert!(e.starts_with(field), "{json}: {e}");
        }
    }

    #[test]
    fn mcp_path_matching_ignores_the_query() {
        let cfg = Config::default();
        assert!(cfg.is_mcp_path("/mcp"));
        assert!(cfg.is_mcp_path("/mcp?x=1"));
        assert!(!cfg.is_mcp_path("/mcp/"));
        assert!(!cfg.is_mcp_path("/other"));
    }
}
