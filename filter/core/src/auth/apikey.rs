//! Static API keys, for clients that cannot do OAuth (CI jobs, scripts).
//!
//! The config holds only SHA-256 hashes, so a leaked config leaks no key. A presented key is
//! hashed and compared with every configured hash in constant time, without stopping at the
//! first match, so timing says nothing about which hashes are close. Each key maps to a
//! configured subject and scopes, built into an [`Identity`] once at configure time.

use sha2::{Digest as _, Sha256};

use super::config::{check_scopes, invalid, AuthConfigError, RawApiKey};
use super::{AuthMethod, Identity, IdentityData};

/// Longest presented key that is hashed at all.
pub const MAX_KEY_BYTES: usize = 4096;

struct Entry {
    digest: [u8; 32],
    identity: Identity,
}

/// The configured keys.
#[derive(Default)]
pub struct ApiKeys {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let subjects: Vec<&str> = self
            .entries
            .iter()
            .map(|e| e.identity.subject.as_str())
            .collect();
        f.debug_struct("ApiKeys")
            .field("subjects", &subjects)
            .finish()
    }
}

/// Lower-case hex SHA-256 of a key: what goes in `apiKeys[].sha256`.
pub fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Equality that looks at every byte whatever the inputs.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl ApiKeys {
    pub fn compile(raw: Vec<RawApiKey>, field: &str) -> Result<ApiKeys, AuthConfigError> {
        let mut entries: Vec<Entry> = Vec::with_capacity(raw.len());
        for (i, key) in raw.into_iter().enumerate() {
            let digest = parse_hex32(&key.sha256).ok_or_else(|| {
                invalid(
                    format!("{field}[{i}].sha256"),
                    "must be 64 hex digits (the SHA-256 of the key)",
                )
            })?;
            if entries.iter().any(|e| e.digest == digest) {
                return Err(invalid(
                    format!("{field}[{i}].sha256"),
                    "duplicates an earlier key",
                ));
            }
            if key.subject.is_empty() {
                return Err(invalid(
                    format!("{field}[{i}].subject"),
                    "must not be empty",
                ));
            }
            let scopes = key.scopes.unwrap_or_default();
            check_scopes(&format!("{field}[{i}].scopes"), &scopes)?;
            let identity = Identity::new(IdentityData {
                subject: key.subject,
                issuer: None,
                scopes,
                claims: serde_json::Map::new(),
                expires_at: None,
                method: AuthMethod::ApiKey,
            });
            entries.push(Entry { digest, identity });
        }
        Ok(ApiKeys { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The identity of a presented key, if it is one of ours.
    pub fn lookup(&self, presented: &str) -> Option<Identity> {
        if presented.is_empty() || presented.len() > MAX_KEY_BYTES {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for e in &self.entries {
            if ct_eq(&e.digest, &digest) {
                found = Some(&e.identity);
            }
        }
        found.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ApiKeys {
        let raw = vec![
            RawApiKey {
                sha256: sha256_hex("key-one-0123456789abcdef"),
                subject: "ci".into(),
                scopes: Some(vec!["mcp:tools".into()]),
            },
            RawApiKey {
                sha256: sha256_hex("key-two-0123456789abcdef").to_uppercase(),
                subject: "ops".into(),
                scopes: None,
            },
        ];
        ApiKeys::compile(raw, "auth.apiKeys").unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn a_matching_key_yields_its_subject_and_scopes() {
        let k = keys();
        let one = k.lookup("key-one-0123456789abcdef");
        assert!(one
            .as_ref()
            .is_some_and(|i| i.subject == "ci" && i.has_scope("mcp:tools")));
        assert_eq!(one.map(|i| i.method), Some(AuthMethod::ApiKey));
        assert!(k
            .lookup("key-two-0123456789abcdef")
            .is_some_and(|i| i.subject == "ops"));
    }

    #[test]
    fn other_keys_match_nothing() {
        let k = keys();
        for presented in [
            "",
            "key-one",
            "key-one-0123456789abcdeF",
            &"x".repeat(MAX_KEY_BYTES + 1),
        ] {
            assert!(k.lookup(presented).is_none(), "{presented:.20}");
        }
    }

    #[test]
    fn the_known_sha256_of_abc_is_produced() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bad_entries_name_the_field() {
        for (raw, field) in [
            (
                RawApiKey {
                    sha256: "abc".into(),
                    subject: "s".into(),
                    scopes: None,
                },
                "auth.apiKeys[0].sha256",
            ),
            (
                RawApiKey {
                    sha256: "g".repeat(64),
                    subject: "s".into(),
                    scopes: None,
                },
                "auth.apiKeys[0].sha256",
            ),
            (
                RawApiKey {
                    sha256: "é".repeat(32),
                    subject: "s".into(),
                    scopes: None,
                },
                "auth.apiKeys[0].sha256",
            ),
            (
                RawApiKey {
                    sha256: "0".repeat(64),
                    subject: String::new(),
                    scopes: None,
                },
                "auth.apiKeys[0].subject",
            ),
            (
                RawApiKey {
                    sha256: "0".repeat(64),
                    subject: "s".into(),
                    scopes: Some(vec!["a b".into()]),
                },
                "auth.apiKeys[0].scopes[0]",
            ),
        ] {
            let e = ApiKeys::compile(vec![raw], "auth.apiKeys").err();
            assert_eq!(e.map(|e| e.field), Some(field.to_owned()));
        }
        let dup = vec![
            RawApiKey {
                sha256: "0".repeat(64),
                subject: "a".into(),
                scopes: None,
            },
            RawApiKey {
                sha256: "0".repeat(64),
                subject: "b".into(),
                scopes: None,
            },
        ];
        let e = ApiKeys::compile(dup, "auth.apiKeys").err();
        assert_eq!(
            e.map(|e| e.field),
            Some("auth.apiKeys[1].sha256".to_owned())
        );
    }
}
