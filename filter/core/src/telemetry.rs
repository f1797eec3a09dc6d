//! Telemetry settings and the pure parts of per-tool metrics and audit records.
//!
//! Operators scrape Envoy and ship its access log; the gateway adds MCP meaning to both. This
//! module holds what does not need the host: the `telemetry` config, the rule that keeps tool
//! labels bounded (clients choose tool names, so a label set they could grow would be a memory
//! and cardinality leak), label sanitising, and the redaction of arguments/results that the
//! audit record may carry.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::ConfigError;
use crate::tokens::{RawTokenCounting, TokenCounting};

/// Default cap on distinct (server, tool) label pairs per worker.
pub const DEFAULT_MAX_TOOL_LABELS: usize = 500;
/// Default cap on the bytes of an argument/result value in an audit record.
pub const DEFAULT_MAX_AUDIT_VALUE_BYTES: usize = 2048;
/// Label for a tool the upstream did not recognise (never answered with a result).
pub const TOOL_UNKNOWN: &str = "_unknown";
/// Label for tools beyond `maxToolLabels`.
pub const TOOL_OVERFLOW: &str = "_other";
/// Keys whose values the audit record never shows, whatever the config adds.
const ALWAYS_REDACTED: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "private_key",
    "client_secret",
];
const REDACTED: &str = "[REDACTED]";

/// `telemetry` as users write it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawTelemetry {
    /// Per-tool metrics, latency histograms, token counts and audit fields. Default true; false
    /// leaves only the per-method request counters.
    pub enabled: Option<bool>,
    /// Count model tokens in tool arguments, tool results and tools/list answers. Default true.
    pub count_tokens: Option<bool>,
    /// Which tokenizer to count for (docs/tokens.md).
    pub tokens: Option<RawTokenCounting>,
    /// Most distinct (server, tool) label pairs per worker; later tools are counted as `_other`.
    /// Default 500.
    pub max_tool_labels: Option<u64>,
    /// The audit record (filter state read by Envoy's access loggers).
    pub audit: Option<RawAudit>,
}

/// `telemetry.audit` as users write it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawAudit {
    /// Set the audit fields (`wasm.mcp_*` filter state). Default true.
    pub enabled: Option<bool>,
    /// Include tool-call arguments (redacted). Default false: arguments often hold personal data.
    pub arguments: Option<bool>,
    /// Include tool results (redacted). Default false.
    pub results: Option<bool>,
    /// Extra object keys (case-insensitive, any depth) whose values are replaced by
    /// `[REDACTED]`, on top of the built-in list (password, token, secret, api_key, ...).
    pub redact_keys: Option<Vec<String>>,
    /// Longest argument/result value kept, in bytes; longer ones are cut. Default 2048.
    pub max_value_bytes: Option<u64>,
}

/// Compiled telemetry settings.
#[derive(Debug, Clone)]
pub struct Telemetry {
    pub enabled: bool,
    pub tokens: Option<TokenCounting>,
    pub max_tool_labels: usize,
    pub audit: Option<Audit>,
}

/// Compiled audit settings.
#[derive(Debug, Clone)]
pub struct Audit {
    pub arguments: bool,
    pub results: bool,
    /// Lower-cased keys to redact (built-ins and configured).
    pub redact_keys: Vec<String>,
    pub max_value_bytes: usize,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            enabled: true,
            tokens: Some(TokenCounting::default()),
            max_tool_labels: DEFAULT_MAX_TOOL_LABELS,
            audit: Some(Audit::default()),
        }
    }
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            arguments: false,
            results: false,
            redact_keys: ALWAYS_REDACTED.iter().map(|k| (*k).to_owned()).collect(),
            max_value_bytes: DEFAULT_MAX_AUDIT_VALUE_BYTES,
        }
    }
}

fn invalid(field: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

impl Telemetry {
    pub fn compile(raw: Option<RawTelemetry>) -> Result<Telemetry, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Telemetry::default());
        };
        let enabled = raw.enabled.unwrap_or(true);
        let tokens = if raw.count_tokens.unwrap_or(true) {
            let counting =
                TokenCounting::compile(&raw.tokens.unwrap_or_default(), "telemetry.tokens")
                    .map_err(|e| {
                        let text = e.to_string();
                        match text.split_once(": ") {
                            Some((field, problem)) => invalid(field, problem),
                            None => invalid("telemetry.tokens", text),
                        }
                    })?;
            Some(counting)
        } else {
            None
        };
        let max_tool_labels = match raw.max_tool_labels {
            None => DEFAULT_MAX_TOOL_LABELS,
            Some(n @ 1..=100_000) => usize::try_from(n).unwrap_or(DEFAULT_MAX_TOOL_LABELS),
            Some(n) => {
                return Err(invalid(
                    "telemetry.maxToolLabels",
                    format!("must be between 1 and 100000, got {n}"),
                ))
            }
        };
        let audit = match raw.audit {
            None => Some(Audit::default()),
            Some(a) if a.enabled == Some(false) => None,
            Some(a) => {
                let mut redact_keys: Vec<String> =
                    ALWAYS_REDACTED.iter().map(|k| (*k).to_owned()).collect();
                for (i, k) in a.redact_keys.unwrap_or_default().into_iter().enumerate() {
                    if k.trim().is_empty() {
                        return Err(invalid(
                            &format!("telemetry.audit.redactKeys[{i}]"),
                            "must not be empty",
                        ));
                    }
                    redact_keys.push(k.to_ascii_lowercase());
                }
                let max_value_bytes = match a.max_value_bytes {
                    None => DEFAULT_MAX_AUDIT_VALUE_BYTES,
                    Some(n @ 16..=1_048_576) => {
                        usize::try_from(n).unwrap_or(DEFAULT_MAX_AUDIT_VALUE_BYTES)
                    }
                    Some(n) => {
                        return Err(invalid(
                            "telemetry.audit.maxValueBytes",
                            format!("must be between 16 and 1048576, got {n}"),
                        ))
                    }
                };
                Some(Audit {
                    arguments: a.arguments.unwrap_or(false),
                    results: a.results.unwrap_or(false),
                    redact_keys,
                    max_value_bytes,
                })
            }
        };
        Ok(Telemetry {
            enabled,
            tokens: if enabled { tokens } else { None },
            max_tool_labels,
            audit: if enabled { audit } else { None },
        })
    }
}

/// A label value safe inside a flat stat name: Envoy's tag regexes split on `.`, so only
/// `[A-Za-z0-9_-]` survive (others become `_`) and the value is cut at 64 bytes.
pub fn label_value(raw: &str) -> Cow<'_, str> {
    const MAX: usize = 64;
    let clean = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if !raw.is_empty() && raw.len() <= MAX && raw.bytes().all(clean) {
        return Cow::Borrowed(raw);
    }
    let mut out: String = raw
        .bytes()
        .take(MAX)
        .map(|b| if clean(b) { char::from(b) } else { '_' })
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    Cow::Owned(out)
}

/// Keeps the tool label set bounded: a name becomes a label only once its server listed it (a
/// tools/list answer the gateway saw, or the merged list a federated call was routed by), so a
/// client inventing names mints nothing, and at most `max` pairs exist per worker.
#[derive(Debug)]
pub struct ToolLabels {
    /// Tools per server: nested so a lookup borrows both names (no allocation per call).
    known: HashMap<String, HashSet<String>>,
    /// Pairs in `known`.
    len: usize,
    max: usize,
}

impl ToolLabels {
    pub fn new(max: usize) -> Self {
        ToolLabels {
            known: HashMap::new(),
            len: 0,
            max,
        }
    }

    /// Records that `server` offers `tool`. False once the cap is reached.
    pub fn admit(&mut self, server: &str, tool: &str) -> bool {
        if self.contains(server, tool) {
            return true;
        }
        if self.len >= self.max {
            return false;
        }
        let tools = match self.known.get_mut(server) {
            Some(t) => t,
            None => self.known.entry(server.to_owned()).or_default(),
        };
        tools.insert(tool.to_owned());
        self.len += 1;
        true
    }

    fn contains(&self, server: &str, tool: &str) -> bool {
        self.known.get(server).is_some_and(|t| t.contains(tool))
    }

    /// The label for `tool` on `server`: the (sanitised) name if the server listed it, else
    /// `_unknown`, or `_other` once the cap left it out.
    pub fn label<'a>(&self, server: &str, tool: &'a str) -> Cow<'a, str> {
        if self.contains(server, tool) {
            label_value(tool)
        } else if self.len >= self.max {
            Cow::Borrowed(TOOL_OVERFLOW)
        } else {
            Cow::Borrowed(TOOL_UNKNOWN)
        }
    }
}

/// A reference to a session for the audit log: the id itself lets its holder use the session,
/// so the log carries a digest that correlates lines without being usable.
pub fn session_ref(session_id: &str) -> String {
    let digest = Sha256::digest(session_id.as_bytes());
    let mut out = String::with_capacity(18);
    out.push_str("s:");
    for b in digest.iter().take(8) {
        for nibble in [b >> 4, b & 0xf] {
            out.extend(char::from_digit(u32::from(nibble), 16));
        }
    }
    out
}

impl Audit {
    /// The JSON text of `value` with secrets hidden: values of the redacted keys (any depth) and
    /// of the policy's dotted `paths` become `"[REDACTED]"`; the text is cut at
    /// `max_value_bytes` (on a character boundary, marked with `…`). `None` if `value` is not JSON.
    pub fn redacted(&self, value: &[u8], paths: &[String]) -> Option<String> {
        let mut v: serde_json::Value = serde_json::from_slice(value).ok()?;
        redact_keys(&mut v, &self.redact_keys);
        for p in paths {
            redact_path(&mut v, p);
        }
        let mut text = v.to_string();
        if text.len() > self.max_value_bytes {
            let mut cut = self.max_value_bytes;
            while cut > 0 && !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        Some(text)
    }
}

fn redact_keys(v: &mut serde_json::Value, keys: &[String]) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                let lower = k.to_ascii_lowercase();
                if keys.contains(&lower) {
                    *child = serde_json::Value::String(REDACTED.to_owned());
                } else {
                    redact_keys(child, keys);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for child in items {
                redact_keys(child, keys);
            }
        }
        _ => {}
    }
}

fn redact_path(v: &mut serde_json::Value, path: &str) {
    let mut node = v;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let serde_json::Value::Object(map) = node else {
            return;
        };
        let Some(child) = map.get_mut(part) else {
            return;
        };
        if parts.peek().is_none() {
            *child = serde_json::Value::String(REDACTED.to_owned());
            return;
        }
        node = child;
    }
}

/// Tokens of each server's share of a merged tools/list (names as clients see them): the
/// context cost each server adds to every session's catalogue. Index = server position.
pub fn catalogue_tokens(
    merged: &crate::federation::aggregate::MergedList,
    servers: usize,
    counting: TokenCounting,
) -> Vec<u64> {
    let owner: std::collections::HashMap<&str, usize> = merged
        .owners
        .iter()
        .map(|(name, i)| (name.as_str(), *i))
        .collect();
    let mut groups: Vec<Vec<&serde_json::Value>> = vec![Vec::new(); servers];
    if let Some(tools) = merged.result.get("tools").and_then(|t| t.as_array()) {
        for tool in tools {
            let name = tool
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or_default();
            if let Some(group) = owner.get(name).and_then(|i| groups.get_mut(*i)) {
                group.push(tool);
            }
        }
    }
    groups
        .into_iter()
        .map(|tools| {
            let message = serde_json::json!({"result": {"tools": tools}}).to_string();
            counting.count_tools_list(message.as_bytes()).unwrap_or(0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(json: &str) -> Result<Telemetry, ConfigError> {
        Telemetry::compile(Some(serde_json::from_str(json).unwrap()))
    }

    #[test]
    fn telemetry_is_on_by_default_with_estimated_tokens_and_an_audit_without_payloads() {
        let t = Telemetry::compile(None).unwrap();
        assert!(t.enabled);
        assert!(t.tokens.is_some());
        let a = t.audit.unwrap();
        assert!(!a.arguments && !a.results);
    }

    #[test]
    fn disabled_telemetry_counts_no_tokens_and_writes_no_audit() {
        let t = compile(r#"{"enabled": false}"#).unwrap();
        assert!(!t.enabled && t.tokens.is_none() && t.audit.is_none());
    }

    #[test]
    fn bad_settings_name_their_field() {
        for (json, field) in [
            (r#"{"maxToolLabels": 0}"#, "telemetry.maxToolLabels"),
            (
                r#"{"audit": {"maxValueBytes": 1}}"#,
                "telemetry.audit.maxValueBytes",
            ),
            (
                r#"{"audit": {"redactKeys": [" "]}}"#,
                "telemetry.audit.redactKeys[0]",
            ),
            (
                r#"{"tokens": {"encoding": "p50k"}}"#,
                "telemetry.tokens.encoding",
            ),
        ] {
            let err = compile(json).unwrap_err().to_string();
            assert!(err.starts_with(field), "{json}: {err}");
        }
    }

    #[test]
    fn label_values_keep_safe_names_and_rewrite_the_rest() {
        assert_eq!(label_value("get-weather_2"), "get-weather_2");
        assert_eq!(label_value("a.b=c d"), "a_b_c_d");
        assert_eq!(label_value(""), "_");
        assert_eq!(label_value(&"x".repeat(100)).len(), 64);
        assert_eq!(label_value("é"), "__");
    }

    #[test]
    fn a_tool_becomes_a_label_only_once_its_server_listed_it_and_the_set_is_capped() {
        let mut l = ToolLabels::new(2);
        assert_eq!(l.label("s", "made-up"), TOOL_UNKNOWN);
        assert!(l.admit("s", "echo"));
        assert_eq!(l.label("s", "echo"), "echo");
        // Per server: the same name elsewhere is not known.
        assert_eq!(l.label("t", "echo"), TOOL_UNKNOWN);
        assert!(l.admit("t", "echo.v2"));
        assert_eq!(l.label("t", "echo.v2"), "echo_v2");
        assert!(!l.admit("s", "add"));
        assert!(l.admit("s", "echo"));
        assert_eq!(l.label("s", "add"), TOOL_OVERFLOW);
    }

    #[test]
    fn catalogue_tokens_split_a_merged_list_by_owning_server() {
        let tool = |name: &str, words: usize| serde_json::json!({"name": name, "description": "word ".repeat(words), "inputSchema": {"type": "object"}});
        let merged = crate::federation::aggregate::MergedList {
            result: serde_json::json!({"tools": [tool("a__x", 10), tool("b__y", 200), tool("a__z", 10)]}),
            owners: vec![("a__x".into(), 0), ("b__y".into(), 1), ("a__z".into(), 0)],
            ambiguous: Vec::new(),
            hidden: 0,
        };
        let counting = TokenCounting::default();
        let per = catalogue_tokens(&merged, 3, counting);
        assert_eq!(per.len(), 3);
        assert!(per[1] > 150 && per[0] > 20 && per[0] < per[1], "{per:?}");
        assert_eq!(
            per[2],
            counting
                .count_tools_list(br#"{"result":{"tools":[]}}"#)
                .unwrap()
        );
    }

    #[test]
    fn session_refs_are_stable_digests_not_the_id() {
        let r = session_ref("g1.secret-session");
        assert_eq!(r, session_ref("g1.secret-session"));
        assert_ne!(r, session_ref("g1.other"));
        assert!(!r.contains("secret"));
        assert_eq!(r.len(), 18);
    }

    #[test]
    fn audit_values_hide_builtin_configured_and_policy_keys_at_any_depth() {
        let a = Telemetry::compile(Some(
            serde_json::from_str(r#"{"audit": {"redactKeys": ["SSN"]}}"#).unwrap(),
        ))
        .unwrap()
        .audit
        .unwrap();
        let out = a
            .redacted(
                br#"{"q":"x","Password":"hunter2","nested":[{"api_key":"k1","ssn":"123"}],"auth":{"user":"u","pin":"9"}}"#,
                &["auth.pin".to_owned(), "missing.path".to_owned()],
            )
            .unwrap();
        for secret in ["hunter2", "k1", "\"123\"", "\"9\""] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(
            out.contains(r#""q":"x""#) && out.contains(r#""user":"u""#),
            "{out}"
        );
    }

    #[test]
    fn long_audit_values_are_cut_on_a_character_boundary() {
        let a = Audit {
            max_value_bytes: 20,
            ..Audit::default()
        };
        let out = a.redacted("\"ééééééééééééééééé\"".as_bytes(), &[]).unwrap();
        assert!(out.ends_with('…'));
        assert!(out.len() <= 20 + '…'.len_utf8());
        assert!(a.redacted(b"not json", &[]).is_none());
    }
}
