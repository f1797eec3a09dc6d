//! Gateway session ids that carry the upstream sessions, sealed with XChaCha20-Poly1305.
//!
//! A client of a session-based MCP revision gets one `Mcp-Session-Id` from the gateway. Inside it,
//! encrypted and authenticated with the configured key, are each upstream server's own session id
//! and negotiated protocol version. Any Envoy worker or replica with the key can therefore serve
//! any session with no shared store, and a tampered, truncated or foreign id fails to open (404).
//! The key is used directly (no per-request derivation); the 24-byte nonce is random per session,
//! supplied by the caller from the host's randomness, which makes nonce reuse negligible.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

/// Distinguishes gateway ids from anything else and versions the format.
const TAG: &str = "g1.";
const NONCE_LEN: usize = 24;
/// Bound on what a client can make the gateway decrypt.
const MAX_ID_LEN: usize = 8 * 1024;
/// Associated data: binds the ciphertext to this use of the key.
const AAD: &[u8] = b"mcp-gateway-wasm session v1";

/// One upstream server's part of a gateway session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamSession {
    /// Server name from the config.
    #[serde(rename = "s")]
    pub server: String,
    /// The upstream's `Mcp-Session-Id`, if it issued one (stateless servers don't).
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The protocol version the upstream negotiated.
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// What a gateway session id carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    /// The protocol version negotiated with the client.
    #[serde(rename = "v")]
    pub version: String,
    /// Upstreams that initialized successfully, in config order.
    #[serde(rename = "u")]
    pub upstreams: Vec<UpstreamSession>,
    /// The cache scope of the client's declared capabilities (see `plan::scope_of`).
    #[serde(rename = "c", default)]
    pub scope: String,
    /// The authenticated subject that opened the session, when authentication is on: a session
    /// id presented by anyone else is not theirs (404).
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

/// The cache scope of the gateway's own sessions for stateless clients.
pub const STATELESS_SCOPE: &str = "stateless";

impl SessionState {
    /// Whether this is the gateway's own session serving 2026-07-28 (stateless) clients.
    pub fn is_stateless_client(&self) -> bool {
        self.scope == STATELESS_SCOPE
    }

    pub fn upstream(&self, server: &str) -> Option<&UpstreamSession> {
        self.upstreams.iter().find(|u| u.server == server)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("not a session id issued by this gateway")]
    Foreign,
    #[error("session id failed authentication (tampered, or sealed with another key)")]
    Unauthentic,
    #[error("could not seal session: {0}")]
    Seal(String),
}

/// Seals and opens session ids with one key. Build once per configure.
#[derive(Clone)]
pub struct SessionCodec {
    cipher: XChaCha20Poly1305,
}

impl SessionCodec {
    pub fn new(key: &[u8; 32]) -> Self {
        SessionCodec {
            cipher: XChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// Seals `state` into an id of visible ASCII (`g1.` + base64url), as `Mcp-Session-Id` requires.
    pub fn seal(
        &self,
        state: &SessionState,
        nonce: [u8; NONCE_LEN],
    ) -> Result<String, SessionError> {
        let plain = serde_json::to_vec(state).map_err(|e| SessionError::Seal(e.to_string()))?;
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: AAD,
                },
            )
            .map_err(|_| SessionError::Seal("encryption failed".into()))?;
        let mut raw = Vec::with_capacity(NONCE_LEN + sealed.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        let mut out = String::with_capacity(TAG.len() + raw.len() * 4 / 3 + 4);
        out.push_str(TAG);
        URL_SAFE_NO_PAD.encode_string(&raw, &mut out);
        Ok(out)
    }

    /// Opens a session id; anything not sealed by this key is an error, never a panic.
    pub fn open(&self, id: &str) -> Result<SessionState, SessionError> {
        if id.len() > MAX_ID_LEN {
            return Err(SessionError::Foreign);
        }
        let body = id.strip_prefix(TAG).ok_or(SessionError::Foreign)?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SessionError::Foreign)?;
        if raw.len() < NONCE_LEN + 16 {
            return Err(SessionError::Foreign);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: AAD,
                },
            )
            .map_err(|_| SessionError::Unauthentic)?;
        serde_json::from_slice(&plain).map_err(|_| SessionError::Unauthentic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> SessionState {
        SessionState {
            version: "2025-11-25".into(),
            upstreams: vec![
                UpstreamSession {
                    server: "everything".into(),
                    session_id: Some("5b1c-…-uuid".into()),
                    version: Some("2025-11-25".into()),
                },
                UpstreamSession {
                    server: "py".into(),
                    session_id: None,
                    version: Some("2025-06-18".into()),
                },
            ],
            scope: "00ff".into(),
            principal: Some("alice".into()),
        }
    }

    #[test]
    fn sealed_sessions_open_to_the_same_state_and_are_visible_ascii() {
        let codec = SessionCodec::new(&[7; 32]);
        let id = codec.seal(&state(), [1; 24]).unwrap_or_default();
        assert!(id.starts_with("g1.") && id.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert_eq!(codec.open(&id), Ok(state()));
        assert_eq!(
            codec
                .open(&id)
                .ok()
                .and_then(|s| s.upstream("py").cloned())
                .map(|u| u.session_id),
            Some(None)
        );
    }

    #[test]
    fn different_nonces_give_different_ids_for_the_same_state() {
        let codec = SessionCodec::new(&[7; 32]);
        assert_ne!(
            codec.seal(&state(), [1; 24]).ok(),
            codec.seal(&state(), [2; 24]).ok()
        );
    }

    #[test]
    fn tampered_truncated_and_foreign_ids_are_rejected() {
        let codec = SessionCodec::new(&[7; 32]);
        let id = codec.seal(&state(), [1; 24]).unwrap_or_default();
        let mut flipped: Vec<u8> = id.clone().into_bytes();
        if let Some(b) = flipped.get_mut(40) {
            *b = if *b == b'A' { b'B' } else { b'A' };
        }
        let flipped = String::from_utf8(flipped).unwrap_or_default();
        assert_eq!(codec.open(&flipped), Err(SessionError::Unauthentic));
        assert!(codec
            .open(id.get(..id.len() - 3).unwrap_or_default())
            .is_err());
        assert_eq!(codec.open("5b1c-upstream-uuid"), Err(SessionError::Foreign));
        assert_eq!(codec.open("g1.!!!"), Err(SessionError::Foreign));
        assert_eq!(codec.open("g1."), Err(SessionError::Foreign));
        let other = SessionCodec::new(&[8; 32]);
        assert_eq!(other.open(&id), Err(SessionError::Unauthentic));
        assert_eq!(codec.open(&"g".repeat(10_000)), Err(SessionError::Foreign));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_ids_never_panic(id in ".{0,200}") {
            let codec = SessionCodec::new(&[7; 32]);
            let _ = codec.open(&id);
            let _ = codec.open(&format!("g1.{id}"));
        }
    }
}
