//! Reading the answer an upstream MCP server gave to one of the gateway's own calls.
//!
//! Upstreams answer a POST with JSON or with an SSE stream (server-everything always streams);
//! either way the gateway wants the one JSON-RPC response in it. Notifications that precede it on
//! the stream are skipped.

use serde::Deserialize;
use serde_json::Value;

use crate::response::{body_kind, BodyKind};
use crate::sse::SseParser;

/// Why an upstream's answer is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamFailure {
    #[error("unreachable or timed out")]
    Unreachable,
    #[error("session not found upstream (HTTP 404)")]
    SessionLost,
    #[error("HTTP {0}")]
    Http(u16),
    #[error("answered something that is not a JSON-RPC response")]
    Garbled,
    #[error("JSON-RPC error {code}: {message}")]
    Rpc { code: i64, message: String },
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    method: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<RpcError>,
}

#[derive(Deserialize)]
struct RpcError {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

/// Classifies one message: `Some` when it is the response, `None` for notifications/requests.
fn response_of(bytes: &[u8]) -> Option<Result<Value, UpstreamFailure>> {
    // An event with empty data is a resumability priming event, not a message.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    match serde_json::from_slice::<Message>(bytes) {
        Ok(m) if m.method.is_some() => None,
        Ok(Message { error: Some(e), .. }) => Some(Err(UpstreamFailure::Rpc {
            code: e.code,
            message: e.message,
        })),
        Ok(Message {
            result: Some(r), ..
        }) => Some(Ok(r)),
        _ => Some(Err(UpstreamFailure::Garbled)),
    }
}

/// The `result` of the JSON-RPC response in an upstream's answer.
/// `status` 0 means the call never got an answer (connect failure or timeout).
pub fn read_result(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Value, UpstreamFailure> {
    match status {
        0 => return Err(UpstreamFailure::Unreachable),
        // 2026-07-28 servers answer an unknown method with 404 and a JSON-RPC error body; only
        // a 404 without one means the session is gone.
        404 => {
            return match response_of(body) {
                Some(Err(e @ UpstreamFailure::Rpc { .. })) => Err(e),
                _ => Err(UpstreamFailure::SessionLost),
            }
        }
        200..=299 => {}
        s => return Err(UpstreamFailure::Http(s)),
    }
    match body_kind(content_type) {
        BodyKind::EventStream => {
            let mut parser = SseParser::new(body.len().max(1));
            let mut found: Option<Result<Value, UpstreamFailure>> = None;
            parser.feed(body, |event| {
                if found.is_none() && !event.truncated {
                    found = response_of(event.data);
                }
            });
            // A final event without its blank line still counts at the end of a buffered body.
            if found.is_none() && parser.has_partial_event() {
                parser.feed(b"\n\n", |event| {
                    if found.is_none() {
                        found = response_of(event.data);
                    }
                });
            }
            found.unwrap_or(Err(UpstreamFailure::Garbled))
        }
        _ => response_of(body).unwrap_or(Err(UpstreamFailure::Garbled)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_sse_answers_yield_the_result() {
        let r = read_result(
            200,
            Some("application/json"),
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#,
        );
        assert_eq!(r.ok().map(|v| v["tools"].is_array()), Some(true));
        let sse = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"x\":1}}\n\n";
        assert_eq!(
            read_result(200, Some("text/event-stream"), sse)
                .ok()
                .map(|v| v["x"].clone()),
            Some(1.into())
        );
        let primed = b"id: 1\ndata: \n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"y\":2}}\n\n";
        assert_eq!(
            read_result(200, Some("text/event-stream"), primed)
                .ok()
                .map(|v| v["y"].clone()),
            Some(2.into())
        );
        let unterminated = b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}";
        assert!(read_result(200, Some("text/event-stream"), unterminated).is_ok());
    }

    #[test]
    fn failures_are_told_apart() {
        assert_eq!(read_result(0, None, b""), Err(UpstreamFailure::Unreachable));
        assert_eq!(
            read_result(404, None, b""),
            Err(UpstreamFailure::SessionLost)
        );
        assert_eq!(
            read_result(503, Some("text/plain"), b"no healthy upstream"),
            Err(UpstreamFailure::Http(503))
        );
        assert_eq!(
            read_result(200, Some("application/json"), b"<html>"),
            Err(UpstreamFailure::Garbled)
        );
        assert_eq!(
            read_result(200, Some("text/event-stream"), b": only a comment\n\n"),
            Err(UpstreamFailure::Garbled)
        );
        assert!(matches!(
            read_result(
                200,
                Some("application/json"),
                br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"nope"}}"#
            ),
            Err(UpstreamFailure::Rpc { code: -32601, .. })
        ));
    }
}
