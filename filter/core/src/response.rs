//! Watches an upstream response as it streams by, to learn how the request ended.
//!
//! The response is never held back or rewritten here: JSON bodies are copied (up to a bound) only
//! to be classified at the end, and SSE bodies go through [`SseParser`] so each event is looked at
//! as soon as it is complete. What comes out is an [`Outcome`] plus counts of the notifications and
//! server-to-client requests that travelled on the stream.

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::sse::SseParser;

/// How one MCP request ended, as a closed set (it becomes a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A JSON-RPC result.
    Ok,
    /// A JSON-RPC error from the upstream.
    Error,
    /// 202 for a notification or a client response.
    Accepted,
    /// Rejected by the gateway as malformed.
    Invalid,
    /// Rejected by the gateway's Origin/Host check.
    Forbidden,
    /// The upstream answered with an HTTP error, reset, or could not be reached.
    UpstreamError,
    /// The stream ended without a final JSON-RPC response.
    Incomplete,
    /// The response was not inspected (too large, or not JSON/SSE) but succeeded at HTTP level.
    Unknown,
    /// Refused by authentication or policy.
    Denied,
    /// Refused by a rate limit or token budget.
    RateLimited,
    /// A tools/call result with `isError: true`: the tool ran and failed.
    ToolError,
}

impl Outcome {
    pub const ALL: [Outcome; 11] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Accepted,
        Outcome::Invalid,
        Outcome::Forbidden,
        Outcome::UpstreamError,
        Outcome::Incomplete,
        Outcome::Unknown,
        Outcome::Denied,
        Outcome::RateLimited,
        Outcome::ToolError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Accepted => "accepted",
            Outcome::Invalid => "invalid",
            Outcome::Forbidden => "forbidden",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Incomplete => "incomplete",
            Outcome::Unknown => "unknown",
            Outcome::Denied => "denied",
            Outcome::RateLimited => "rate_limited",
            Outcome::ToolError => "tool_error",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What the observer learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub outcome: Outcome,
    /// The JSON-RPC error code of the final response, when it was an error.
    pub error_code: Option<i64>,
    /// Notifications seen on an SSE stream (progress, log messages, …).
    pub notifications: u32,
    /// Server-to-client requests seen on an SSE stream (sampling, elicitation, roots).
    pub server_requests: u32,
    /// Messages on the stream that were not valid JSON-RPC.
    pub garbled: u32,
    /// Model tokens in the final result, when asked to [`ResponseObserver::measure`] it.
    pub tokens: Option<u64>,
    /// The final result's JSON, when asked to [`ResponseObserver::keep_result`] (audit).
    pub result: Option<Vec<u8>>,
    /// Tool names of a measured tools/list result (for bounded tool labels).
    pub tools: Vec<String>,
}

/// What to count in the final result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// A `tools/call` result: the text that lands in the model's context.
    ToolResult,
    /// A `tools/list` result: the catalogue as a model is given it.
    ToolsList,
}

/// Optional work on the final result, decided per request.
#[derive(Debug, Clone, Copy, Default)]
struct Extras {
    measure: Option<(Option<crate::tokens::TokenCounting>, Measure)>,
    keep_result: bool,
}

#[derive(Debug)]
enum Mode {
    Json {
        buf: Vec<u8>,
        overflow: bool,
    },
    Sse(SseParser),
    /// Not a body the gateway interprets (e.g. 202 with no body, or another content type).
    Opaque,
}

/// Incremental observer of one upstream response.
#[derive(Debug)]
pub struct ResponseObserver {
    mode: Mode,
    status: u16,
    limit: usize,
    final_seen: Option<(Outcome, Option<i64>)>,
    notifications: u32,
    server_requests: u32,
    garbled: u32,
    extras: Extras,
    tokens: Option<u64>,
    result: Option<Vec<u8>>,
    tools: Vec<String>,
}

/// The body kinds the Streamable HTTP transport uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    EventStream,
    Other,
}

/// Classifies a `Content-Type` value (parameters and case ignored).
pub fn body_kind(content_type: Option<&str>) -> BodyKind {
    let Some(ct) = content_type else {
        return BodyKind::Other;
    };
    let essence = ct.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        BodyKind::Json
    } else if essence.eq_ignore_ascii_case("text/event-stream") {
        BodyKind::EventStream
    } else {
        BodyKind::Other
    }
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(default)]
    method: Option<IgnoredAny>,
    #[serde(default)]
    id: Option<IgnoredAny>,
    #[serde(default, borrow)]
    result: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    error: Option<ErrorObject>,
}

#[derive(Deserialize)]
struct ErrorObject {
    #[serde(default)]
    code: Option<i64>,
}

impl ResponseObserver {
    /// Starts observing a response with `status` and `content_type`. `content_length`, when known,
    /// sizes the JSON buffer once so it never grows chunk by chunk.
    pub fn new(
        status: u16,
        content_type: Option<&str>,
        content_length: Option<usize>,
        limit: usize,
    ) -> Self {
        let mode = if !(200..300).contains(&status) {
            Mode::Opaque
        } else {
            match body_kind(content_type) {
                BodyKind::Json => Mode::Json {
                    buf: Vec::with_capacity(content_length.unwrap_or(256).min(limit)),
                    overflow: content_length.is_some_and(|l| l > limit),
                },
                BodyKind::EventStream => Mode::Sse(SseParser::new(limit)),
                BodyKind::Other => Mode::Opaque,
            }
        };
        ResponseObserver {
            mode,
            status,
            limit,
            final_seen: None,
            notifications: 0,
            server_requests: 0,
            garbled: 0,
            extras: Extras::default(),
            tokens: None,
            result: None,
            tools: Vec::new(),
        }
    }

    /// Reads the final result for telemetry: `isError` and tokens of a tool result, tool names
    /// and tokens of a tools/list (tokens only with `counting`).
    pub fn measure(
        mut self,
        counting: Option<crate::tokens::TokenCounting>,
        what: Measure,
    ) -> Self {
        self.extras.measure = Some((counting, what));
        self
    }

    /// Keeps a copy of the final result's JSON (the audit record asked for results).
    pub fn keep_result(mut self) -> Self {
        self.extras.keep_result = true;
        self
    }

    /// Whether feeding the body is useful at all (the glue can skip reading it otherwise).
    pub fn wants_body(&self) -> bool {
        match &self.mode {
            Mode::Json { overflow, .. } => !overflow,
            Mode::Sse(_) => true,
            Mode::Opaque => false,
        }
    }

    /// Feeds one body chunk.
    pub fn feed(&mut self, chunk: &[u8]) {
        match &mut self.mode {
            Mode::Json { buf, overflow } => {
                if *overflow {
                    return;
                }
                if buf.len() + chunk.len() > self.limit {
                    *overflow = true;
                    *buf = Vec::new();
                } else {
                    buf.extend_from_slice(chunk);
                }
            }
            Mode::Sse(parser) => {
                let mut tally = Tally::with(self.extras);
                parser.feed(chunk, |event| {
                    if event.truncated {
                        tally.truncated += 1;
                    } else {
                        tally.message(event.data);
                    }
                });
                self.absorb(tally);
            }
            Mode::Opaque => {}
        }
    }

    /// Classifies one complete message that the caller extracted itself (e.g. while rewriting an
    /// SSE stream), for responses created with no content type to parse.
    pub fn message(&mut self, data: &[u8]) {
        let mut tally = Tally::with(self.extras);
        tally.message(data);
        self.absorb(tally);
    }

    /// The response ended (end of stream, or the stream was reset when `reset` is true).
    pub fn finish(mut self, reset: bool) -> Summary {
        let mut partial = false;
        let is_stream = matches!(self.mode, Mode::Sse(_));
        match std::mem::replace(&mut self.mode, Mode::Opaque) {
            Mode::Json { buf, overflow } => {
                if !overflow && !reset {
                    let mut tally = Tally::with(self.extras);
                    tally.message(&buf);
                    self.absorb(tally);
                }
            }
            Mode::Sse(parser) => partial = parser.has_partial_event(),
            Mode::Opaque => {}
        }
        let (outcome, error_code) = if self.status == 429 {
            // Envoy's own limiter (local or global rate limit filter) or the upstream's.
            (Outcome::RateLimited, None)
        } else if !(200..300).contains(&self.status) {
            (Outcome::UpstreamError, None)
        } else if let Some(done) = self.final_seen {
            done
        } else if self.status == 202 {
            (Outcome::Accepted, None)
        } else if reset || partial || is_stream {
            // An SSE answer to a request must end with its response; without one the client
            // never got an answer.
            (Outcome::Incomplete, None)
        } else {
            (Outcome::Unknown, None)
        };
        Summary {
            outcome,
            error_code,
            notifications: self.notifications,
            server_requests: self.server_requests,
            garbled: self.garbled,
            tokens: self.tokens,
            result: self.result,
            tools: self.tools,
        }
    }

    fn absorb(&mut self, t: Tally) {
        self.notifications += t.notifications;
        self.server_requests += t.server_requests;
        self.garbled += t.garbled + t.truncated;
        if self.final_seen.is_none() {
            self.final_seen = t.final_seen;
            self.tokens = t.tokens;
            self.result = t.result;
            self.tools = t.tools;
        }
    }
}

#[derive(Default)]
struct Tally {
    notifications: u32,
    server_requests: u32,
    garbled: u32,
    truncated: u32,
    final_seen: Option<(Outcome, Option<i64>)>,
    extras: Extras,
    tokens: Option<u64>,
    result: Option<Vec<u8>>,
    tools: Vec<String>,
}

#[derive(Deserialize)]
struct ListedTools {
    #[serde(default)]
    tools: Vec<ListedTool>,
}

#[derive(Deserialize)]
struct ListedTool {
    name: String,
}

impl Tally {
    fn with(extras: Extras) -> Self {
        Tally {
            extras,
            ..Tally::default()
        }
    }

    fn message(&mut self, bytes: &[u8]) {
        // Empty data: an SSE priming event (resumability), not a message.
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match serde_json::from_slice::<Message>(bytes) {
            Ok(m) if m.method.is_some() && m.id.is_some() => self.server_requests += 1,
            Ok(m) if m.method.is_some() => self.notifications += 1,
            Ok(Message {
                error: Some(err), ..
            }) => {
                self.final_seen.get_or_insert((Outcome::Error, err.code));
            }
            Ok(Message {
                result: Some(result),
                ..
            }) => {
                if self.final_seen.is_none() {
                    self.final_seen = Some((Outcome::Ok, None));
                    if let Some((counting, what)) = self.extras.measure {
                        self.tokens = match what {
                            Measure::ToolResult => {
                                // One pass over the result for both the flag and the tokens.
                                let json = result.get().as_bytes();
                                let (is_error, tokens) = match counting {
                                    Some(c) => {
                                        let t = c.count_call_result(json);
                                        match t {
                                            Some(t) => (t.is_error, Some(t.text)),
                                            None => {
                                                (crate::tokens::tool_result_is_error(json), None)
                                            }
                                        }
                                    }
                                    None => (crate::tokens::tool_result_is_error(json), None),
                                };
                                if is_error {
                                    self.final_seen = Some((Outcome::ToolError, None));
                                }
                                tokens
                            }
                            Measure::ToolsList => {
                                if let Ok(list) = serde_json::from_str::<ListedTools>(result.get())
                                {
                                    self.tools = list.tools.into_iter().map(|t| t.name).collect();
                                }
                                counting.and_then(|c| c.count_tools_list(bytes))
                            }
                        };
                    }
                    if self.extras.keep_result {
                        self.result = Some(result.get().as_bytes().to_vec());
                    }
                }
            }
            _ => self.garbled += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe(status: u16, ct: &str, chunks: &[&[u8]]) -> Summary {
        let mut o = ResponseObserver::new(status, Some(ct), None, 1 << 20);
        for c in chunks {
            o.feed(c);
        }
        o.finish(false)
    }

    #[test]
    fn a_measured_result_reports_its_tokens_and_a_kept_result_its_json_on_json_and_sse() {
        let counting = crate::tokens::TokenCounting::default();
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hello there, world"}]}}"#;
        let mut o = ResponseObserver::new(200, Some("application/json"), None, 1 << 20)
            .measure(Some(counting), Measure::ToolResult)
            .keep_result();
        o.feed(body);
        let s = o.finish(false);
        let expected = counting.count_text(b"hello there, world");
        assert_eq!(s.tokens, Some(expected));
        assert!(s.result.unwrap().starts_with(br#"{"content""#));
        let mut sse =
            b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\ndata: ".to_vec();
        sse.extend_from_slice(body);
        sse.extend_from_slice(b"\n\n");
        let mut o = ResponseObserver::new(200, Some("text/event-stream"), None, 1 << 20)
            .measure(Some(counting), Measure::ToolResult);
        for chunk in sse.chunks(7) {
            o.feed(chunk);
        }
        let s = o.finish(false);
        assert_eq!(
            (s.tokens, s.result, s.notifications),
            (Some(expected), None, 1)
        );
    }

    #[test]
    fn a_tool_result_with_is_error_is_a_tool_error_with_or_without_counting() {
        let counting = crate::tokens::TokenCounting::default();
        for (result, outcome) in [
            (
                r#"{"content":[{"type":"text","text":"disk full"}],"isError":true}"#,
                Outcome::ToolError,
            ),
            (
                r#"{"isError":true,"content":"not an array"}"#,
                Outcome::ToolError,
            ),
            (
                r#"{"content":[{"type":"text","text":"fine"}],"isError":false}"#,
                Outcome::Ok,
            ),
            (r#"{"content":[],"isError":"true"}"#, Outcome::Ok),
            (r#"{"content":[]}"#, Outcome::Ok),
        ] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{result}}}"#);
            for tokens in [Some(counting), None] {
                let mut o = ResponseObserver::new(200, Some("application/json"), None, 1 << 20)
                    .measure(tokens, Measure::ToolResult);
                o.feed(body.as_bytes());
                let s = o.finish(false);
                assert_eq!(s.outcome, outcome, "{result} counting={}", tokens.is_some());
                let counted = tokens.is_some() && result.contains('[');
                assert_eq!(s.tokens.is_some(), counted, "{result}");
            }
            let sse = format!("data: {{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{result}}}\n\n");
            let mut o = ResponseObserver::new(200, Some("text/event-stream"), None, 1 << 20)
                .measure(Some(counting), Measure::ToolResult);
            for chunk in sse.as_bytes().chunks(5) {
                o.feed(chunk);
            }
            assert_eq!(o.finish(false).outcome, outcome, "{result} over SSE");
        }
    }

    #[test]
    fn errors_have_no_token_figure() {
        let mut o = ResponseObserver::new(200, Some("application/json"), None, 1 << 20).measure(
            Some(crate::tokens::TokenCounting::default()),
            Measure::ToolResult,
        );
        o.feed(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unknown tool"}}"#);
        let s = o.finish(false);
        assert_eq!(
            (s.outcome, s.error_code, s.tokens),
            (Outcome::Error, Some(-32602), None)
        );
    }

    #[test]
    fn json_result_is_ok_and_json_error_carries_its_code() {
        let s = observe(
            200,
            "application/json",
            &[
                b"{\"jsonrpc\":\"2.0\",\"id\":1,",
                b"\"result\":{\"x\":[1]}}",
            ],
        );
        assert_eq!(s.outcome, Outcome::Ok);
        let s = observe(
            200,
            "application/json; charset=utf-8",
            &[b"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32601,\"message\":\"nope\"}}"],
        );
        assert_eq!((s.outcome, s.error_code), (Outcome::Error, Some(-32601)));
    }

    #[test]
    fn sse_stream_counts_notifications_and_server_requests_before_the_result() {
        let body = "id: p\ndata: \n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n\
                    data: {\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"method\":\"elicitation/create\",\"params\":{}}\n\n\
                    data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[]}}\n\n";
        let bytes = body.as_bytes();
        let whole = observe(200, "text/event-stream", &[bytes]);
        assert_eq!(whole.outcome, Outcome::Ok);
        assert_eq!((whole.notifications, whole.server_requests), (1, 1));
        for i in 0..=bytes.len() {
            let (a, b) = bytes.split_at(i);
            assert_eq!(
                observe(200, "text/event-stream", &[a, b]),
                whole,
                "split {i}"
            );
        }
    }

    #[test]
    fn sse_stream_that_ends_without_a_response_is_incomplete() {
        let s = observe(
            200,
            "text/event-stream",
            &[b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n"],
        );
        assert_eq!(s.outcome, Outcome::Incomplete);
        let s = observe(
            200,
            "text/event-stream",
            &[b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"res"],
        );
        assert_eq!(s.outcome, Outcome::Incomplete);
    }

    #[test]
    fn reset_midway_is_incomplete() {
        let mut o = ResponseObserver::new(200, Some("text/event-stream"), None, 1024);
        o.feed(b"data: {\"jsonrpc\":\"2.0\",\"method\":\"n\"}\n\n");
        assert_eq!(o.finish(true).outcome, Outcome::Incomplete);
    }

    #[test]
    fn http_errors_and_accepted_notifications() {
        assert_eq!(
            observe(404, "application/json", &[b"{}"]).outcome,
            Outcome::UpstreamError
        );
        assert_eq!(
            observe(503, "text/plain", &[b"down"]).outcome,
            Outcome::UpstreamError
        );
        assert_eq!(observe(202, "", &[]).outcome, Outcome::Accepted);
    }

    #[test]
    fn oversized_or_garbage_json_is_unknown_not_an_error() {
        let mut o = ResponseObserver::new(200, Some("application/json"), None, 8);
        o.feed(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}");
        assert_eq!(o.finish(false).outcome, Outcome::Unknown);
        let s = observe(200, "application/json", &[b"not json"]);
        assert_eq!((s.outcome, s.garbled), (Outcome::Unknown, 1));
        let o = ResponseObserver::new(200, Some("application/json"), Some(1 << 30), 1024);
        assert!(!o.wants_body());
    }

    #[test]
    fn content_types_are_classified_loosely() {
        assert_eq!(
            body_kind(Some("Application/JSON ; charset=utf-8")),
            BodyKind::Json
        );
        assert_eq!(body_kind(Some("text/event-stream")), BodyKind::EventStream);
        assert_eq!(body_kind(Some("text/html")), BodyKind::Other);
        assert_eq!(body_kind(None), BodyKind::Other);
    }
}
