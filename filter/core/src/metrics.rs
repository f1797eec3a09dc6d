//! Metric names and their label values, all from closed sets.
//!
//! Envoy's stats ABI takes flat names; tags are cut out of them by the `stats_tags` regexes in the
//! bootstrap (see `envoy/`), which turn `mcp.requests_total.method=tools_call.outcome=ok` into
//! `mcp_requests_total{method="tools_call",outcome="ok"}`. Every label value comes from a fixed
//! list so a client can never mint new series by sending new method names.

use crate::response::Outcome;

/// Methods that get their own label value; anything else is `other`.
pub const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "server/discover",
    "subscriptions/listen",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

/// Label values for what is not a JSON-RPC method: client responses, GET/DELETE, the rest.
pub const LABEL_RESPONSE: &str = "response";
pub const LABEL_GET: &str = "http_get";
pub const LABEL_DELETE: &str = "http_delete";
pub const LABEL_OTHER: &str = "other";
/// A request rejected before its method could be read.
pub const LABEL_UNPARSED: &str = "unparsed";

/// Index of a method's label in the closed set: `METHODS` first, then the fixed extras.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodLabel(usize);

const EXTRAS: &[&str] = &[
    LABEL_RESPONSE,
    LABEL_GET,
    LABEL_DELETE,
    LABEL_OTHER,
    LABEL_UNPARSED,
];

impl MethodLabel {
    pub const COUNT: usize = METHODS.len() + EXTRAS.len();

    pub fn of_method(method: &str) -> MethodLabel {
        match METHODS.iter().position(|m| *m == method) {
            Some(i) => MethodLabel(i),
            None => MethodLabel::extra(LABEL_OTHER),
        }
    }

    pub fn extra(label: &str) -> MethodLabel {
        let i = EXTRAS.iter().position(|e| *e == label).unwrap_or(3);
        MethodLabel(METHODS.len() + i)
    }

    pub fn response() -> MethodLabel {
        MethodLabel::extra(LABEL_RESPONSE)
    }

    pub fn index(self) -> usize {
        self.0
    }

    /// The label text: the method with `/` turned into `_` (stat names split on `.` only, but
    /// Prometheus label values stay readable and uniform this way).
    pub fn as_label(self) -> String {
        let raw = METHODS
            .get(self.0)
            .or_else(|| EXTRAS.get(self.0 - METHODS.len().min(self.0)))
            .copied()
            .unwrap_or(LABEL_OTHER);
        raw.replace('/', "_")
    }
}

/// Why the gateway answered a request itself instead of forwarding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    ParseError,
    InvalidRequest,
    InvalidParams,
    Batch,
    BodyTooLarge,
    UnsupportedMediaType,
    HeaderMismatch,
    MissingSession,
    InvalidSession,
    UnsupportedProtocolVersion,
    Origin,
    Host,
    MethodNotAllowed,
}

impl RejectReason {
    pub const ALL: [RejectReason; 13] = [
        RejectReason::ParseError,
        RejectReason::InvalidRequest,
        RejectReason::InvalidParams,
        RejectReason::Batch,
        RejectReason::BodyTooLarge,
        RejectReason::UnsupportedMediaType,
        RejectReason::HeaderMismatch,
        RejectReason::MissingSession,
        RejectReason::InvalidSession,
        RejectReason::UnsupportedProtocolVersion,
        RejectReason::Origin,
        RejectReason::Host,
        RejectReason::MethodNotAllowed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::ParseError => "parse_error",
            RejectReason::InvalidRequest => "invalid_request",
            RejectReason::InvalidParams => "invalid_params",
            RejectReason::Batch => "batch",
            RejectReason::BodyTooLarge => "body_too_large",
            RejectReason::UnsupportedMediaType => "unsupported_media_type",
            RejectReason::HeaderMismatch => "header_mismatch",
            RejectReason::MissingSession => "missing_session",
            RejectReason::InvalidSession => "invalid_session",
            RejectReason::UnsupportedProtocolVersion => "unsupported_protocol_version",
            RejectReason::Origin => "origin",
            RejectReason::Host => "host",
            RejectReason::MethodNotAllowed => "method_not_allowed",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The outcome label a rejection is counted under.
    pub fn outcome(self) -> Outcome {
        match self {
            RejectReason::Origin | RejectReason::Host => Outcome::Forbidden,
            _ => Outcome::Invalid,
        }
    }
}

/// `mcp.requests_total.method=<m>.outcome=<o>`
pub fn requests_total(method: MethodLabel, outcome: Outcome) -> String {
    format!(
        "mcp.requests_total.method={}.outcome={}",
        method.as_label(),
        outcome.as_str()
    )
}

/// `mcp.rejected_total.reason=<r>`
pub fn rejected_total(reason: RejectReason) -> String {
    format!("mcp.rejected_total.reason={}", reason.as_str())
}

/// `mcp.upstream_failures_total.server=<name>`: the gateway's own calls to a server that failed.
/// Server names come from the config, so the set is bounded.
pub fn upstream_failures_total(server: &str) -> String {
    format!("mcp.upstream_failures_total.server={server}")
}

/// `mcp.auth_total.result=<r>`: authentications by result (`ok`, `ok_cached`, or the failure
/// reason from the auth core's closed set).
pub fn auth_total(result: &str) -> String {
    format!("mcp.auth_total.result={result}")
}

/// `mcp.tool_calls_total.server=<s>.tool=<t>.outcome=<o>`: tools/call by server, tool, outcome.
/// `tool` must come from [`crate::telemetry::ToolLabels`] (bounded) and `server` from config or
/// the routed cluster.
pub fn tool_calls_total(server: &str, tool: &str, outcome: Outcome) -> String {
    format!(
        "mcp.tool_calls_total.server={server}.tool={tool}.outcome={}",
        outcome.as_str()
    )
}

/// Histogram `mcp.tool_call_duration_us.server=<s>.tool=<t>`: request start to final response
/// (the end of an SSE stream's result event included), in microseconds.
pub fn tool_call_duration(server: &str, tool: &str) -> String {
    format!("mcp.tool_call_duration_us.server={server}.tool={tool}")
}

/// Histogram `mcp.upstream_duration_us.server=<s>`: request forwarded to final response.
pub fn upstream_duration(server: &str) -> String {
    format!("mcp.upstream_duration_us.server={server}")
}

/// Histogram `mcp.filter_duration_us.method=<m>`: time spent inside the gateway's callbacks for
/// one request (parse, auth, policy, routing, response observation).
pub fn filter_duration(method: MethodLabel) -> String {
    format!("mcp.filter_duration_us.method={}", method.as_label())
}

/// Which way tokens travelled in a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Arguments the model wrote.
    In,
    /// The result that lands in the model's context.
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// `mcp.tool_tokens_total.server=<s>.tool=<t>.direction=<in|out>`.
pub fn tool_tokens_total(server: &str, tool: &str, direction: Direction) -> String {
    format!(
        "mcp.tool_tokens_total.server={server}.tool={tool}.direction={}",
        direction.as_str()
    )
}

/// Gauge `mcp.catalogue_tokens.server=<s>`: tokens of that server's tools/list as a model sees
/// it (the context cost of its catalogue), as last seen.
pub fn catalogue_tokens(server: &str) -> String {
    format!("mcp.catalogue_tokens.server={server}")
}

/// Histogram: tokens of each tools/list answer delivered to a client.
pub const TOOLS_LIST_TOKENS: &str = "mcp.tools_list_tokens";

/// `mcp.sessions_total.event=<opened|closed>`.
pub fn sessions_total(opened: bool) -> String {
    format!(
        "mcp.sessions_total.event={}",
        if opened { "opened" } else { "closed" }
    )
}

/// Upstream messages on a response that were not valid JSON-RPC.
pub const UPSTREAM_GARBLED_TOTAL: &str = "mcp.upstream_garbled_total";
/// Notifications relayed on SSE responses.
pub const STREAM_NOTIFICATIONS_TOTAL: &str = "mcp.stream_notifications_total";
/// Server-to-client requests relayed on SSE responses.
pub const STREAM_SERVER_REQUESTS_TOTAL: &str = "mcp.stream_server_requests_total";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_methods_get_their_own_label_and_others_collapse() {
        assert_eq!(
            MethodLabel::of_method("tools/call").as_label(),
            "tools_call"
        );
        assert_eq!(
            MethodLabel::of_method("notifications/roots/list_changed").as_label(),
            "notifications_roots_list_changed"
        );
        assert_eq!(MethodLabel::of_method("evil.method=x").as_label(), "other");
        assert_eq!(MethodLabel::response().as_label(), "response");
        assert_eq!(MethodLabel::extra(LABEL_GET).as_label(), "http_get");
    }

    #[test]
    fn every_label_index_is_in_range_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for m in METHODS.iter().chain(EXTRAS) {
            let l = if METHODS.contains(m) {
                MethodLabel::of_method(m)
            } else {
                MethodLabel::extra(m)
            };
            assert!(l.index() < MethodLabel::COUNT);
            assert!(seen.insert(l.as_label()));
            assert!(!l.as_label().contains('.'));
        }
    }

    #[test]
    fn stat_names_have_the_documented_shape() {
        assert_eq!(
            requests_total(MethodLabel::of_method("tools/call"), Outcome::Ok),
            "mcp.requests_total.method=tools_call.outcome=ok"
        );
        assert_eq!(
            rejected_total(RejectReason::HeaderMismatch),
            "mcp.rejected_total.reason=header_mismatch"
        );
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
    }
}
