//! Credentials the gateway presents to upstream servers (credential brokering).
//!
//! The client's own token is never forwarded (it is for the gateway, RFC 8707); each upstream
//! gets what the operator configured for it: a bearer token, an API-key header, or basic auth.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;

use crate::config::ConfigError;

/// One upstream credential, as users write it: exactly one of the three.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawCredentials {
    /// Sent as `Authorization: Bearer <bearer>`.
    pub bearer: Option<String>,
    /// Sent as a header of its own, e.g. `{"name": "x-api-key", "value": "…"}`.
    pub header: Option<RawHeaderCredential>,
    /// Sent as `Authorization: Basic base64(username:password)`.
    pub basic: Option<RawBasicCredential>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawHeaderCredential {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawBasicCredential {
    pub username: String,
    pub password: String,
}

/// A compiled credential: one request header. Never printed (its `Debug` hides the value).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub header: String,
    pub value: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}: <redacted>)", self.header)
    }
}

fn invalid(field: &str, problem: &str) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        problem: problem.to_owned(),
    }
}

fn header_value_ok(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b == b'\t' || (0x20..=0x7e).contains(&b))
}

impl Credential {
    /// Compiles `raw`; `field` is its path in the config (for errors, which never quote values).
    pub fn compile(raw: RawCredentials, field: &str) -> Result<Credential, ConfigError> {
        let given = usize::from(raw.bearer.is_some())
            + usize::from(raw.header.is_some())
            + usize::from(raw.basic.is_some());
        if given != 1 {
            return Err(invalid(
                field,
                "must set exactly one of bearer, header, basic",
            ));
        }
        let cred = if let Some(token) = raw.bearer {
            Credential {
                header: "authorization".into(),
                value: format!("Bearer {token}"),
            }
        } else if let Some(h) = raw.header {
            let name = h.name.to_ascii_lowercase();
            if !crate::protocol::is_header_token(&name) || name == "host" {
                return Err(invalid(
                    &format!("{field}.header.name"),
                    "is not a usable header name",
                ));
            }
            Credential {
                header: name,
                value: h.value,
            }
        } else if let Some(b) = raw.basic {
            if b.username.contains(':') {
                return Err(invalid(
                    &format!("{field}.basic.username"),
                    "must not contain ':'",
                ));
            }
            Credential {
                header: "authorization".into(),
                value: format!(
                    "Basic {}",
                    STANDARD.encode(format!("{}:{}", b.username, b.password))
                ),
            }
        } else {
            return Err(invalid(
                field,
                "must set exactly one of bearer, header, basic",
            ));
        };
        if !header_value_ok(&cred.value) {
            return Err(invalid(
                field,
                "the credential must be printable ASCII (it is sent as a header)",
            ));
        }
        Ok(cred)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(json: &str) -> Result<Credential, String> {
        let raw: RawCredentials = serde_json::from_str(json).map_err(|e| e.to_string())?;
        Credential::compile(raw, "servers[0].credentials").map_err(|e| e.to_string())
    }

    #[test]
    fn each_kind_becomes_one_header() {
        let c = compile(r#"{"bearer":"s3cret"}"#).unwrap();
        assert_eq!(
            (c.header.as_str(), c.value.as_str()),
            ("authorization", "Bearer s3cret")
        );
        let c = compile(r#"{"header":{"name":"X-Api-Key","value":"k1"}}"#).unwrap();
        assert_eq!((c.header.as_str(), c.value.as_str()), ("x-api-key", "k1"));
        let c = compile(r#"{"basic":{"username":"u","password":"p"}}"#).unwrap();
        assert_eq!(c.value, "Basic dTpw");
    }

    #[test]
    fn errors_name_the_field_and_never_the_secret() {
        for (json, field) in [
            (r#"{}"#, "servers[0].credentials"),
            (
                r#"{"bearer":"a","basic":{"username":"u","password":"p"}}"#,
                "servers[0].credentials",
            ),
            (
                r#"{"header":{"name":"bad name","value":"v"}}"#,
                "servers[0].credentials.header.name",
            ),
            (
                r#"{"bearer":"line\nbreak-secret"}"#,
                "servers[0].credentials",
            ),
        ] {
            let e = compile(json).unwrap_err();
            assert!(e.starts_with(field), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn debug_output_hides_the_value() {
        let c = compile(r#"{"bearer":"s3cret"}"#).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
