//! MCP protocol revisions and the header-value rules of the Streamable HTTP transport.
//!
//! Two generations meet at the gateway: session-based revisions (2025-03-26 … 2025-11-25, with
//! `initialize` and `Mcp-Session-Id`) and stateless ones (2026-07-28 on, where every POST mirrors
//! `method` and `params.name`/`params.uri` into `Mcp-Method`/`Mcp-Name` headers).

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Revisions the gateway understands, newest first.
pub const KNOWN_VERSIONS: &[&str] = &[
    "2026-07-28",
    "2025-11-25",
    "2025-06-18",
    "2025-03-26",
    "2024-11-05",
];

/// The first stateless revision: no `initialize`, no sessions, request metadata headers required.
pub const FIRST_STATELESS: &str = "2026-07-28";

/// A request without `MCP-Protocol-Version` is taken as this revision (the spec's back-compat rule).
pub const DEFAULT_VERSION: &str = "2025-03-26";

/// Whether `version` (a `YYYY-MM-DD` revision) is of the stateless generation.
/// Revision names are dates, so the string order is the time order.
pub fn is_stateless(version: &str) -> bool {
    version >= FIRST_STATELESS
}

const SENTINEL_PREFIX: &str = "=?base64?";
const SENTINEL_SUFFIX: &str = "?=";

/// Why a mirrored header value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderValueError {
    #[error("invalid base64 in sentinel-encoded value")]
    Base64,
    #[error("sentinel-encoded value is not UTF-8")]
    Utf8,
}

/// Decodes an `Mcp-Name`-style value: `=?base64?…?=` is Base64 of UTF-8, anything else is literal.
pub fn decode_header_value(value: &str) -> Result<Cow<'_, str>, HeaderValueError> {
    match value
        .strip_prefix(SENTINEL_PREFIX)
        .and_then(|rest| rest.strip_suffix(SENTINEL_SUFFIX))
    {
        Some(encoded) => {
            let bytes = STANDARD
                .decode(encoded)
                .map_err(|_| HeaderValueError::Base64)?;
            String::from_utf8(bytes)
                .map(Cow::Owned)
                .map_err(|_| HeaderValueError::Utf8)
        }
        None => Ok(Cow::Borrowed(value)),
    }
}

/// Whether `value` can travel as a header value as it is: visible ASCII and inner spaces, no
/// leading/trailing whitespace, and not itself shaped like the sentinel.
fn header_safe(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.iter().all(|&b| (0x20..=0x7e).contains(&b))
        && bytes.first() != Some(&b' ')
        && bytes.last() != Some(&b' ')
        && !(value.starts_with(SENTINEL_PREFIX) && value.ends_with(SENTINEL_SUFFIX))
}

/// Encodes a body value for a request header the way the spec encodes `Mcp-Name`, so a hostile
/// name (CR/LF, non-ASCII, NUL) can never fail the host call or inject a header.
pub fn encode_header_value(value: &str) -> Cow<'_, str> {
    if header_safe(value) {
        Cow::Borrowed(value)
    } else {
        let mut out = String::with_capacity(SENTINEL_PREFIX.len() + value.len() * 4 / 3 + 6);
        out.push_str(SENTINEL_PREFIX);
        STANDARD.encode_string(value.as_bytes(), &mut out);
        out.push_str(SENTINEL_SUFFIX);
        Cow::Owned(out)
    }
}

/// Whether `name` is an HTTP field name (an RFC 9110 token), as config-given header names must be.
pub fn is_header_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether a session id has the form the spec allows: visible ASCII (0x21–0x7E) only.
pub fn valid_session_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_from_2026_07_28_are_stateless() {
        assert!(is_stateless("2026-07-28"));
        assert!(is_stateless("2027-01-01"));
        assert!(!is_stateless("2025-11-25"));
        assert!(!is_stateless(DEFAULT_VERSION));
    }

    #[test]
    fn plain_ascii_values_are_kept_and_others_are_sentinel_encoded() {
        assert_eq!(encode_header_value("get_weather"), "get_weather");
        assert_eq!(
            encode_header_value("file:///projects/a b.json"),
            "file:///projects/a b.json"
        );
        assert_eq!(
            encode_header_value("Hello, 世界"),
            "=?base64?SGVsbG8sIOS4lueVjA==?="
        );
        assert_eq!(encode_header_value(" padded "), "=?base64?IHBhZGRlZCA=?=");
        assert_eq!(
            encode_header_value("line1\nline2"),
            "=?base64?bGluZTEKbGluZTI=?="
        );
        assert_eq!(
            encode_header_value("=?base64?literal?="),
            "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="
        );
        assert_eq!(encode_header_value(""), "=?base64??=");
    }

    #[test]
    fn encoded_values_decode_back() {
        for v in ["a", "Hello, 世界", "x\r\ny", "=?base64?literal?=", " s "] {
            assert_eq!(
                decode_header_value(&encode_header_value(v)).as_deref(),
                Ok(v)
            );
        }
    }

    #[test]
    fn bad_sentinels_are_errors() {
        assert_eq!(
            decode_header_value("=?base64?!!!?="),
            Err(HeaderValueError::Base64)
        );
        assert_eq!(
            decode_header_value("=?base64?/w==?="),
            Err(HeaderValueError::Utf8)
        );
    }

    #[test]
    fn session_ids_must_be_visible_ascii() {
        assert!(valid_session_id("abc-123_XYZ"));
        assert!(!valid_session_id(""));
        assert!(!valid_session_id("a b"));
        assert!(!valid_session_id("é"));
    }

    proptest::proptest! {
        #[test]
        fn any_string_encodes_to_a_header_safe_value_that_round_trips(s in ".{0,64}") {
            let enc = encode_header_value(&s);
            proptest::prop_assert!(enc.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            let dec = decode_header_value(&enc).ok().map(|d| d.into_owned());
            proptest::prop_assert_eq!(dec.as_deref(), Some(s.as_str()));
        }
    }
}
