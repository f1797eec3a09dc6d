//! Why authentication failed, and what the client is told: status and `WWW-Authenticate`.
//!
//! One closed set of reasons serves metrics (`as_str`) and the wire. Per RFC 6750 §3 and the MCP
//! spec: no credentials → 401 with just the discovery parameters (`resource_metadata`, `scope`);
//! a bad token or key → 401 `error="invalid_token"`; missing scopes → 403
//! `error="insufficient_scope"` with the scopes needed. Descriptions are fixed strings: nothing
//! the client sent (least of all the token) is ever echoed into a header.

use super::config::{valid_scope, AuthConfig};

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("no credentials")]
    Missing,
    #[error("the token is not a well-formed JWS")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    AlgNotAllowed,
    #[error("no key matches the token's key id")]
    UnknownKid,
    #[error("the token's key id names a key of another type or algorithm")]
    KeyMismatch,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token is not meant for this resource")]
    WrongAudience,
    #[error("the token lacks a required claim")]
    MissingClaim,
    #[error("the API key is not valid")]
    InvalidApiKey,
    #[error("the token lacks a required scope")]
    InsufficientScope,
    #[error("the signing keys are not available yet")]
    KeysUnavailable,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 14] = [
        AuthFailure::Missing,
        AuthFailure::Malformed,
        AuthFailure::AlgNotAllowed,
        AuthFailure::UnknownKid,
        AuthFailure::KeyMismatch,
        AuthFailure::BadSignature,
        AuthFailure::Expired,
        AuthFailure::NotYetValid,
        AuthFailure::WrongIssuer,
        AuthFailure::WrongAudience,
        AuthFailure::MissingClaim,
        AuthFailure::InvalidApiKey,
        AuthFailure::InsufficientScope,
        AuthFailure::KeysUnavailable,
    ];

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::AlgNotAllowed => "alg_not_allowed",
            AuthFailure::UnknownKid => "unknown_kid",
            AuthFailure::KeyMismatch => "key_mismatch",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::WrongIssuer => "wrong_issuer",
            AuthFailure::WrongAudience => "wrong_audience",
            AuthFailure::MissingClaim => "missing_claim",
            AuthFailure::InvalidApiKey => "invalid_api_key",
            AuthFailure::InsufficientScope => "insufficient_scope",
            AuthFailure::KeysUnavailable => "keys_unavailable",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// HTTP status: 401 for anything about the credentials, 403 for scopes, 503 while the JWKS
    /// has never been fetched (the gateway's problem: a 401 would send OAuth clients into a
    /// pointless re-authorization loop).
    pub fn status(self) -> u16 {
        match self {
            AuthFailure::InsufficientScope => 403,
            AuthFailure::KeysUnavailable => 503,
            _ => 401,
        }
    }

    /// The RFC 6750 `error` code, when one applies.
    pub fn oauth_error(self) -> Option<&'static str> {
        match self {
            AuthFailure::Missing | AuthFailure::KeysUnavailable => None,
            AuthFailure::InsufficientScope => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        }
    }
}

/// The bearer credential in an `Authorization` value: scheme `Bearer` (any case), one or more
/// spaces, then a token68 (RFC 9110 §11.4). Another scheme counts as no credentials.
pub fn bearer_token(authorization: &str) -> Result<&str, AuthFailure> {
    let value = authorization.trim_matches([' ', '\t']);
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Err(if value.eq_ignore_ascii_case("bearer") {
            AuthFailure::Malformed
        } else {
            AuthFailure::Missing
        });
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::Missing);
    }
    let token = rest.trim_start_matches(' ');
    let token68 = !token.is_empty()
        && token
            .trim_end_matches('=')
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if token68 {
        Ok(token)
    } else {
        Err(AuthFailure::Malformed)
    }
}

/// The parameters of a `Bearer` challenge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BearerChallenge<'a> {
    pub error: Option<&'a str>,
    pub error_description: Option<&'a str>,
    /// Scopes, joined with spaces into one parameter.
    pub scopes: &'a [&'a str],
    pub resource_metadata: Option<&'a str>,
}

impl BearerChallenge<'_> {
    /// The `WWW-Authenticate` value: `Bearer` then the given parameters as quoted strings.
    /// Values are escaped for quoted-string (`"` and `\`); bytes that may not appear in a header
    /// (controls, non-ASCII) are dropped, so no value can split or forge a header.
    pub fn header_value(&self) -> String {
        let mut out = String::with_capacity(160);
        out.push_str("Bearer");
        let mut sep = " ";
        let mut param = |out: &mut String, name: &str, value: &mut dyn Iterator<Item = char>| {
            out.push_str(sep);
            sep = ", ";
            out.push_str(name);
            out.push_str("=\"");
            for c in value {
                match c {
                    '"' | '\\' => {
                        out.push('\\');
                        out.push(c);
                    }
                    ' '..='~' => out.push(c),
                    _ => {}
                }
            }
            out.push('"');
        };
        if let Some(e) = self.error {
            param(&mut out, "error", &mut e.chars());
        }
        if let Some(d) = self.error_description {
            param(&mut out, "error_description", &mut d.chars());
        }
        let scopes: Vec<&str> = self
            .scopes
            .iter()
            .copied()
            .filter(|s| valid_scope(s))
            .collect();
        if !scopes.is_empty() {
            param(&mut out, "scope", &mut scopes.join(" ").chars());
        }
        if let Some(url) = self.resource_metadata {
            param(&mut out, "resource_metadata", &mut url.chars());
        }
        out
    }
}

/// What to answer when authentication fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthReply {
    pub status: u16,
    /// `WWW-Authenticate` value, for 401 and 403.
    pub www_authenticate: Option<String>,
    /// A short message for the JSON-RPC error body.
    pub message: &'static str,
    pub reason: AuthFailure,
}

impl AuthConfig {
    /// The reply for a failed [`authenticate`](super::Authenticator::authenticate). For
    /// `insufficient_scope`, the scopes named are the global `requiredScopes`.
    pub fn reply_for(&self, failure: AuthFailure) -> AuthReply {
        if failure == AuthFailure::InsufficientScope {
            let scopes: Vec<&str> = self.required_scopes.iter().map(String::as_str).collect();
            return self.insufficient_scope(&scopes);
        }
        let message = match failure.status() {
            503 => "Service Unavailable: the token signing keys are not available yet",
            _ if failure == AuthFailure::Missing => "Unauthorized: authentication required",
            _ => "Unauthorized: invalid credentials",
        };
        let www_authenticate = (failure.status() == 401).then(|| {
            // Without credentials, tell the client what to ask for (MCP: SHOULD send `scope`).
            let scopes: Vec<&str> = if failure == AuthFailure::Missing {
                self.required_scopes.iter().map(String::as_str).collect()
            } else {
                Vec::new()
            };
            BearerChallenge {
                error: failure.oauth_error(),
                error_description: failure.oauth_error().map(|_| description(failure)),
                scopes: &scopes,
                resource_metadata: self.metadata.as_ref().map(|m| m.url()),
            }
            .header_value()
        });
        AuthReply {
            status: failure.status(),
            www_authenticate,
            message,
            reason: failure,
        }
    }

    /// A 403 step-up reply naming the scopes the request needs (MCP: the client re-authorizes
    /// with exactly these, so include already-granted ones that are still needed).
    pub fn insufficient_scope(&self, scopes: &[&str]) -> AuthReply {
        let header = BearerChallenge {
            error: Some("insufficient_scope"),
            error_description: Some(description(AuthFailure::InsufficientScope)),
            scopes,
            resource_metadata: self.metadata.as_ref().map(|m| m.url()),
        }
        .header_value();
        AuthReply {
            status: 403,
            www_authenticate: Some(header),
            message: "Forbidden: insufficient scope",
            reason: AuthFailure::InsufficientScope,
        }
    }
}

fn description(failure: AuthFailure) -> &'static str {
    match failure {
        AuthFailure::Expired => "The access token expired",
        AuthFailure::NotYetValid => "The access token is not valid yet",
        AuthFailure::WrongAudience => "The access token was not issued for this resource",
        AuthFailure::WrongIssuer => "The access token was issued by an untrusted issuer",
        AuthFailure::InsufficientScope => "The access token lacks a scope this request needs",
        AuthFailure::InvalidApiKey => "The API key is not valid",
        _ => "The access token is invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn reasons_have_distinct_labels_and_dense_indices() {
        let mut seen = std::collections::HashSet::new();
        for (i, r) in AuthFailure::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(seen.insert(r.as_str()));
            assert!(r
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    #[test]
    fn bearer_values_are_parsed_leniently_but_never_loosely() {
        for (value, want) in [
            ("Bearer abc.def.ghi", Ok("abc.def.ghi")),
            ("bearer   abc", Ok("abc")),
            ("BEARER abc== ", Ok("abc==")),
            ("Bearer", Err(AuthFailure::Malformed)),
            ("Bearer ", Err(AuthFailure::Malformed)),
            ("Bearer a b", Err(AuthFailure::Malformed)),
            ("Bearer a\"b", Err(AuthFailure::Malformed)),
            ("Bearer =abc", Err(AuthFailure::Malformed)),
            ("Basic dXNlcg==", Err(AuthFailure::Missing)),
            ("", Err(AuthFailure::Missing)),
            ("Bearerabc", Err(AuthFailure::Missing)),
        ] {
            assert_eq!(bearer_token(value), want, "{value:?}");
        }
    }

    #[test]
    fn challenge_values_are_quoted_and_cannot_inject_headers() {
        let v = BearerChallenge {
            error: Some("invalid_token"),
            error_description: Some("say \"hi\" \\ bye\r\nSet-Cookie: x=1 é"),
            scopes: &["a:read", "b:write", "bad scope", "q\"uote"],
            resource_metadata: Some("https://h/.well-known/oauth-protected-resource/mcp"),
        }
        .header_value();
        assert_eq!(
            v,
            "Bearer error=\"invalid_token\", \
             error_description=\"say \\\"hi\\\" \\\\ byeSet-Cookie: x=1 \", \
             scope=\"a:read b:write\", \
             resource_metadata=\"https://h/.well-known/oauth-protected-resource/mcp\""
        );
        assert!(!v.contains('\r') && !v.contains('\n'));
        assert_eq!(BearerChallenge::default().header_value(), "Bearer");
    }

    #[test]
    fn each_failure_maps_to_the_spec_answer() {
        let cfg = config_with(serde_json::json!({"requiredScopes": ["mcp:tools", "mcp:read"]}));
        let md = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
        let missing = cfg.reply_for(AuthFailure::Missing);
        assert_eq!(missing.status, 401);
        assert_eq!(
            missing.www_authenticate.as_deref(),
            Some(
                format!("Bearer scope=\"mcp:tools mcp:read\", resource_metadata=\"{md}\"").as_str()
            )
        );
        let expired = cfg.reply_for(AuthFailure::Expired);
        assert_eq!(expired.status, 401);
        assert_eq!(
            expired.www_authenticate.as_deref(),
            Some(
                format!(
                    "Bearer error=\"invalid_token\", error_description=\"The access token \
                     expired\", resource_metadata=\"{md}\""
                )
                .as_str()
            )
        );
        let scope = cfg.reply_for(AuthFailure::InsufficientScope);
        assert_eq!(scope.status, 403);
        let h = scope.www_authenticate.unwrap_or_default();
        assert!(h.starts_with("Bearer error=\"insufficient_scope\""), "{h}");
        assert!(h.contains("scope=\"mcp:tools mcp:read\""), "{h}");
        assert!(h.contains(&format!("resource_metadata=\"{md}\"")), "{h}");
        let unavailable = cfg.reply_for(AuthFailure::KeysUnavailable);
        assert_eq!(
            (unavailable.status, unavailable.www_authenticate),
            (503, None)
        );
        for f in AuthFailure::ALL {
            let r = cfg.reply_for(f);
            assert_eq!(r.status, f.status());
            assert_eq!(r.reason, f);
            if let Some(h) = r.www_authenticate {
                assert!(h.contains(md), "{f:?}: {h}");
            }
        }
    }
}
