//! JSON-RPC 2.0 message classification for MCP request bodies.
//!
//! The body is parsed exactly once into a borrowed envelope: only the fields the gateway acts on
//! (`jsonrpc`, `id`, `method`, `params.name`, `params.uri`, `params._meta`) are looked at, and the
//! rest (arguments, results) is skipped without being built into a `serde_json::Value`.
//! Duplicate keys are rejected (serde's derive does so), which keeps the gateway and the upstream
//! from disagreeing about which of two `method`s a body means.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// Standard JSON-RPC error codes, plus the MCP ones the gateway emits.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// MCP 2026-07-28: HTTP headers disagree with the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// MCP 2026-07-28: the requested protocol version is not supported.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
}

/// What one JSON-RPC message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Has `method` and a non-null `id`: expects a response.
    Request,
    /// Has `method` and no `id`.
    Notification,
    /// Has `id` and `result` or `error`: a client answering a server-to-client request.
    Response,
}

/// The facts about one client message that routing, policy and telemetry need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub kind: MessageKind,
    /// `method`; `None` for responses.
    pub method: Option<String>,
    /// The `id` exactly as the client wrote it (raw JSON: `1`, `"abc"`), so replies echo it verbatim.
    pub id: Option<String>,
    /// `params.name` of `tools/call` and `prompts/get`.
    pub name: Option<String>,
    /// `params.uri` of `resources/read`, `resources/subscribe`, `resources/unsubscribe`.
    pub uri: Option<String>,
    /// `params._meta.progressToken` as raw JSON.
    pub progress_token: Option<String>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]` (2026-07-28 requests carry it).
    pub meta_protocol_version: Option<String>,
}

impl RequestInfo {
    /// The value a 2026-07-28 client mirrors into `Mcp-Name`: the tool/prompt name or resource URI.
    pub fn target(&self) -> Option<&str> {
        self.name.as_deref().or(self.uri.as_deref())
    }

    pub fn is_initialize(&self) -> bool {
        self.method.as_deref() == Some("initialize")
    }
}

/// Why a body is not an acceptable JSON-RPC message. Each maps to one JSON-RPC code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("Parse error: {0}")]
    Syntax(String),
    #[error("Invalid Request: {message}")]
    InvalidRequest { id: Option<String>, message: String },
    #[error("Invalid params: {message}")]
    InvalidParams { id: Option<String>, message: String },
    #[error("Invalid Request: JSON-RPC batches are not supported (removed in MCP 2025-06-18); send one message per POST")]
    Batch,
}

impl ParseError {
    pub fn code(&self) -> i64 {
        match self {
            ParseError::Syntax(_) => code::PARSE_ERROR,
            ParseError::InvalidRequest { .. } | ParseError::Batch => code::INVALID_REQUEST,
            ParseError::InvalidParams { .. } => code::INVALID_PARAMS,
        }
    }

    /// The request id to echo in the error response, when it could be read.
    pub fn id(&self) -> Option<&str> {
        match self {
            ParseError::InvalidRequest { id, .. } | ParseError::InvalidParams { id, .. } => {
                id.as_deref()
            }
            _ => None,
        }
    }
}

/// Deserializes a field that is present (even when `null`) into `Some(raw)`.
fn present_raw<'de, D>(d: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: Deserializer<'de>,
{
    <&RawValue>::deserialize(d).map(Some)
}

/// Deserializes a field into `true` when it is present, whatever its value.
fn present<'de, D>(d: D) -> Result<bool, D::Error>
where
    D: Deserializer<'de>,
{
    IgnoredAny::deserialize(d).map(|_| true)
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present_raw")]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present_raw")]
    params: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present")]
    result: bool,
    #[serde(default, deserialize_with = "present")]
    error: bool,
}

/// Used only on the error path, to echo the id of a message whose other fields are wrong.
#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow, default, deserialize_with = "present_raw")]
    id: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(borrow, default, deserialize_with = "present_raw")]
    name: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present_raw")]
    uri: Option<&'a RawValue>,
    #[serde(rename = "_meta", borrow, default)]
    meta: Option<Meta<'a>>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(
        rename = "progressToken",
        borrow,
        default,
        deserialize_with = "present_raw"
    )]
    progress_token: Option<&'a RawValue>,
    #[serde(rename = "io.modelcontextprotocol/protocolVersion", borrow, default)]
    protocol_version: Option<Cow<'a, str>>,
}

/// Which `params` member names the target of a method, if any.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Name,
    Uri,
    None,
}

fn target_of(method: &str) -> Target {
    match method {
        "tools/call" | "prompts/get" => Target::Name,
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Target::Uri,
        _ => Target::None,
    }
}

/// A valid JSON-RPC id for MCP: a string or a number (never null, never structured).
fn valid_id(raw: &RawValue) -> bool {
    matches!(
        raw.get().as_bytes().first(),
        Some(b'"' | b'-' | b'0'..=b'9')
    )
}

fn readable_id(raw: Option<&RawValue>) -> Option<String> {
    raw.filter(|r| valid_id(r)).map(|r| r.get().to_owned())
}

fn first_non_ws(body: &[u8]) -> Option<u8> {
    body.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// Parses and classifies one client message.
pub fn parse_message(body: &[u8]) -> Result<RequestInfo, ParseError> {
    if first_non_ws(body) == Some(b'[') {
        // Still make sure it is JSON at all: a broken array is a parse error, not a batch.
        return match serde_json::from_slice::<IgnoredAny>(body) {
            Ok(_) => Err(ParseError::Batch),
            Err(e) => Err(ParseError::Syntax(e.to_string())),
        };
    }
    let env: Envelope<'_> = match serde_json::from_slice(body) {
        Ok(env) => env,
        Err(e) if e.is_data() => {
            let id = serde_json::from_slice::<IdOnly<'_>>(body)
                .ok()
                .and_then(|o| readable_id(o.id));
            let message = if first_non_ws(body) == Some(b'{') {
                e.to_string()
            } else {
                "a JSON-RPC message must be a JSON object".to_owned()
            };
            return Err(ParseError::InvalidRequest { id, message });
        }
        Err(e) => return Err(ParseError::Syntax(e.to_string())),
    };
    classify(env)
}

fn invalid(id: Option<&RawValue>, message: impl Into<String>) -> ParseError {
    ParseError::InvalidRequest {
        id: readable_id(id),
        message: message.into(),
    }
}

fn classify(env: Envelope<'_>) -> Result<RequestInfo, ParseError> {
    if env.jsonrpc.as_deref() != Some("2.0") {
        return Err(invalid(env.id, "\"jsonrpc\" must be \"2.0\""));
    }
    if let Some(raw) = env.id {
        if !valid_id(raw) {
            return Err(invalid(None, "\"id\" must be a string or a number"));
        }
    }
    let id = env.id.map(|r| r.get().to_owned());
    let Some(method) = env.method else {
        // No method: it can only be a response to a server-to-client request.
        return match (id, env.result, env.error) {
            (Some(id), true, false) | (Some(id), false, true) => Ok(RequestInfo {
                kind: MessageKind::Response,
                method: None,
                id: Some(id),
                name: None,
                uri: None,
                progress_token: None,
                meta_protocol_version: None,
            }),
            (id, true, true) => Err(ParseError::InvalidRequest {
                id,
                message: "a response must not carry both \"result\" and \"error\"".into(),
            }),
            (id, _, _) => Err(ParseError::InvalidRequest {
                id,
                message: "missing \"method\"".into(),
            }),
        };
    };
    if env.result || env.error {
        return Err(ParseError::InvalidRequest {
            id,
            message: "a request must not carry \"result\" or \"error\"".into(),
        });
    }
    let kind = if id.is_some() {
        MessageKind::Request
    } else {
        MessageKind::Notification
    };
    let mut info = RequestInfo {
        kind,
        method: None,
        id,
        name: None,
        uri: None,
        progress_token: None,
        meta_protocol_version: None,
    };
    let target = target_of(&method);
    if let Some(raw) = env.params {
        read_params(raw, target, &mut info)?;
    }
    if target != Target::None && info.target().is_none() && kind == MessageKind::Request {
        let field = if target == Target::Name {
            "name"
        } else {
            "uri"
        };
        return Err(ParseError::InvalidParams {
            id: info.id.clone(),
            message: format!("{method} requires params.{field}"),
        });
    }
    info.method = Some(method.into_owned());
    Ok(info)
}

fn read_params(raw: &RawValue, target: Target, info: &mut RequestInfo) -> Result<(), ParseError> {
    let bad = |message: String| ParseError::InvalidParams {
        id: info.id.clone(),
        message,
    };
    if raw.get().as_bytes().first() != Some(&b'{') {
        if raw.get() == "null" {
            return Ok(());
        }
        return Err(bad("params must be an object".into()));
    }
    let params: Params<'_> = serde_json::from_str(raw.get()).map_err(|e| bad(e.to_string()))?;
    let string_of = |raw: &RawValue, field: &str| -> Result<String, ParseError> {
        serde_json::from_str::<Cow<'_, str>>(raw.get())
            .map(Cow::into_owned)
            .map_err(|_| bad(format!("params.{field} must be a string")))
    };
    match target {
        Target::Name => {
            if let Some(raw) = params.name {
                info.name = Some(string_of(raw, "name")?);
            }
        }
        Target::Uri => {
            if let Some(raw) = params.uri {
                info.uri = Some(string_of(raw, "uri")?);
            }
        }
        Target::None => {}
    }
    if let Some(meta) = params.meta {
        info.progress_token = meta.progress_token.map(|r| r.get().to_owned());
        info.meta_protocol_version = meta.protocol_version.map(Cow::into_owned);
    }
    Ok(())
}

/// Writes a JSON string literal (with quotes) for `s` into `out`.
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON-RPC error response. `id` is raw JSON (as in [`RequestInfo::id`]); `None` writes `null`.
/// `data` is raw JSON too.
pub fn error_body(id: Option<&str>, code: i64, message: &str, data: Option<&str>) -> String {
    let mut out = String::with_capacity(64 + message.len());
    out.push_str("{\"jsonrpc\":\"2.0\",\"id\":");
    out.push_str(id.unwrap_or("null"));
    out.push_str(",\"error\":{\"code\":");
    out.push_str(&code.to_string());
    out.push_str(",\"message\":");
    push_json_string(&mut out, message);
    if let Some(data) = data {
        out.push_str(",\"data\":");
        out.push_str(data);
    }
    out.push_str("}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> RequestInfo {
        match parse_message(body.as_bytes()) {
            Ok(info) => info,
            Err(e) => unreachable!("{body}: {e}"),
        }
    }

    fn err(body: &str) -> ParseError {
        match parse_message(body.as_bytes()) {
            Ok(info) => unreachable!("{body} parsed as {info:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn tools_call_yields_method_id_name_and_progress_token() {
        let info = ok(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi","deep":{"a":[1,2,{"b":null}]}},"_meta":{"progressToken":"tok-1"}}}"#,
        );
        assert_eq!(info.kind, MessageKind::Request);
        assert_eq!(info.method.as_deref(), Some("tools/call"));
        assert_eq!(info.id.as_deref(), Some("7"));
        assert_eq!(info.name.as_deref(), Some("echo"));
        assert_eq!(info.progress_token.as_deref(), Some("\"tok-1\""));
        assert_eq!(info.target(), Some("echo"));
    }

    #[test]
    fn string_ids_are_kept_verbatim_for_echoing() {
        let info = ok(r#"{"jsonrpc":"2.0","id":"a\"b","method":"ping"}"#);
        assert_eq!(info.id.as_deref(), Some(r#""a\"b""#));
    }

    #[test]
    fn escaped_names_are_decoded() {
        let info = ok(
            r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"caf\u00e9\n"}}"#,
        );
        assert_eq!(info.name.as_deref(), Some("café\n"));
    }

    #[test]
    fn resources_read_yields_uri() {
        let info = ok(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a b"}}"#,
        );
        assert_eq!(info.uri.as_deref(), Some("file:///a b"));
        assert_eq!(info.name, None);
    }

    #[test]
    fn notification_has_no_id() {
        let info = ok(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!(info.kind, MessageKind::Notification);
        assert_eq!(info.id, None);
    }

    #[test]
    fn client_responses_to_server_requests_are_classified() {
        let info = ok(r#"{"jsonrpc":"2.0","id":"s-1","result":{"action":"accept"}}"#);
        assert_eq!(info.kind, MessageKind::Response);
        let info = ok(r#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"no"}}"#);
        assert_eq!(info.kind, MessageKind::Response);
    }

    #[test]
    fn meta_protocol_version_is_read() {
        let info = ok(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        assert_eq!(info.meta_protocol_version.as_deref(), Some("2026-07-28"));
    }

    #[test]
    fn name_is_ignored_on_methods_that_do_not_define_it() {
        let info = ok(
            r#"{"jsonrpc":"2.0","id":1,"method":"x/custom","params":{"name":{"not":"a string"}}}"#,
        );
        assert_eq!(info.name, None);
    }

    #[test]
    fn malformed_json_is_a_parse_error() {
        for body in [
            "{bad json",
            "",
            "   ",
            "{\"jsonrpc\":\"2.0\",",
            "[1,",
            "\u{1}",
        ] {
            assert_eq!(err(body).code(), code::PARSE_ERROR, "{body:?}");
        }
    }

    #[test]
    fn wrong_version_is_invalid_request_and_echoes_the_id() {
        let e = err(r#"{"jsonrpc":"1.0","id":5,"method":"ping"}"#);
        assert_eq!(e.code(), code::INVALID_REQUEST);
        assert_eq!(e.id(), Some("5"));
        let e = err(r#"{"id":"x","method":"ping"}"#);
        assert_eq!(e.id(), Some("\"x\""));
    }

    #[test]
    fn non_objects_and_wrong_field_types_are_invalid_requests() {
        for body in [
            "1",
            "\"str\"",
            "null",
            r#"{"foo":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#,
        ] {
            assert_eq!(err(body).code(), code::INVALID_REQUEST, "{body}");
        }
    }

    #[test]
    fn wrong_field_type_still_echoes_a_readable_id() {
        let e = err(r#"{"jsonrpc":"2.0","id":9,"method":["x"]}"#);
        assert_eq!(e.id(), Some("9"));
    }

    #[test]
    fn duplicate_method_keys_are_rejected() {
        let e = err(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}"#);
        assert_eq!(e.code(), code::INVALID_REQUEST);
    }

    #[test]
    fn batches_are_rejected_with_a_clear_message() {
        let e = err(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#);
        assert_eq!(e, ParseError::Batch);
        assert!(e.to_string().contains("batches are not supported"));
    }

    #[test]
    fn tools_call_needs_a_string_name() {
        assert_eq!(
            err(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":3}}"#).code(),
            code::INVALID_PARAMS
        );
        assert_eq!(
            err(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#).code(),
            code::INVALID_PARAMS
        );
        assert_eq!(
            err(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}"#).code(),
            code::INVALID_PARAMS
        );
    }

    #[test]
    fn error_body_is_valid_json_with_escaped_message() {
        let body = error_body(Some("\"a\""), -32600, "bad \"x\"\n\u{1}", Some("{\"k\":1}"));
        let v: serde_json::Value = match serde_json::from_str(&body) {
            Ok(v) => v,
            Err(e) => unreachable!("{body}: {e}"),
        };
        assert_eq!(v["id"], "a");
        assert_eq!(v["error"]["code"], -32600);
        assert_eq!(v["error"]["message"], "bad \"x\"\n\u{1}");
        assert_eq!(v["error"]["data"]["k"], 1);
        let v: serde_json::Value =
            serde_json::from_str(&error_body(None, -32700, "x", None)).unwrap_or_default();
        assert!(v["id"].is_null());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = parse_message(&body);
        }

        #[test]
        fn arbitrary_json_shaped_text_never_panics(body in r#"[\[\]{}":,0-9a-z\\ ]{0,64}"#) {
            let _ = parse_message(body.as_bytes());
        }
    }
}
