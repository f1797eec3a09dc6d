//! What a limited request is answered with.
//!
//! - A JSON-RPC **request** gets HTTP 200 with a JSON-RPC error (its own id) and `Retry-After`.
//!   MCP clients read JSON-RPC errors; the TypeScript SDK turns any non-2xx answer into a
//!   transport exception and drops the body, so an agent would not learn when to retry. (The
//!   Python SDK reads the error at any status.) Policy denials use 200 for the same reason.
//! - A JSON-RPC **notification** cannot be answered with a JSON-RPC response: the spec asks for
//!   an HTTP error status, whose body may be a JSON-RPC error without id. It gets 429 with
//!   `Retry-After`.
//! - A request that is **not JSON-RPC** (GET stream, DELETE) gets 429 with `Retry-After` and the
//!   same JSON-RPC error body without id.
//!
//! Codes are outside the JSON-RPC reserved range (-32768..-32000), as MCP 2026-07-28 asks of
//! implementation-defined errors: -31429 for a rate limit, -31430 for an exhausted budget.

use super::budget::Unit;
use crate::jsonrpc::{error_body, push_json_string};

/// JSON-RPC error codes of limited requests.
pub mod code {
    /// A rate limit refused the request.
    pub const RATE_LIMITED: i64 = -31429;
    /// A token budget is used up for the current window.
    pub const BUDGET_EXHAUSTED: i64 = -31430;
}

/// Which rule refused a request, and when to come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// The rule's configured name.
    pub rule: String,
    /// Milliseconds until the request would be admitted (exact for buckets, window end for
    /// budgets).
    pub retry_after_ms: u64,
    /// Refused because shared data was contended, not because the bucket was empty.
    pub contended: bool,
    pub kind: LimitKind,
}

/// The refusing rule's numbers, for the error's `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKind {
    Rate {
        requests: u64,
        per_seconds: u64,
        burst: u64,
    },
    Budget {
        limit: u64,
        window_seconds: u64,
        unit: Unit,
        used: u64,
    },
}

/// How the limited request reached the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyTo<'a> {
    /// A JSON-RPC request with this raw id (`RequestInfo::id`).
    Request(&'a str),
    /// A JSON-RPC notification.
    Notification,
    /// Not a JSON-RPC message (GET, DELETE).
    NotJsonRpc,
}

/// The local reply the glue sends: status, `Retry-After` value (always set), body
/// (`content-type: application/json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub retry_after_seconds: u64,
    pub body: String,
}

impl Limited {
    /// Whole seconds to wait, rounded up, at least 1 (`Retry-After` has no fractions).
    pub fn retry_after_seconds(&self) -> u64 {
        self.retry_after_ms.div_ceil(1000).max(1)
    }

    pub fn code(&self) -> i64 {
        match self.kind {
            LimitKind::Rate { .. } => code::RATE_LIMITED,
            LimitKind::Budget { .. } => code::BUDGET_EXHAUSTED,
        }
    }

    /// The error message: what limited the call and when to retry, for a model to read.
    pub fn message(&self) -> String {
        let secs = self.retry_after_seconds();
        match &self.kind {
            LimitKind::Rate {
                requests,
                per_seconds,
                ..
            } if self.contended => format!(
                "Rate limit {:?} ({requests} requests per {per_seconds} s) is under heavy contention; retry after {secs} s",
                self.rule
            ),
            LimitKind::Rate {
                requests,
                per_seconds,
                ..
            } => format!(
                "Rate limit exceeded: {:?} allows {requests} requests per {per_seconds} s; retry after {secs} s",
                self.rule
            ),
            LimitKind::Budget {
                limit,
                window_seconds,
                unit,
                used,
            } => format!(
                "Token budget exhausted: {:?} allows {limit} {} per {window_seconds} s and {used} are used; retry after {secs} s, when the window resets",
                self.rule,
                unit.as_str()
            ),
        }
    }

    /// The error's `data` (raw JSON): `retryAfterSeconds`, `retryAfterMs` and the `limit`.
    pub fn data(&self) -> String {
        let mut out = String::with_capacity(160);
        out.push_str("{\"retryAfterSeconds\":");
        out.push_str(&self.retry_after_seconds().to_string());
        out.push_str(",\"retryAfterMs\":");
        out.push_str(&self.retry_after_ms.to_string());
        out.push_str(",\"limit\":{\"name\":");
        push_json_string(&mut out, &self.rule);
        match &self.kind {
            LimitKind::Rate {
                requests,
                per_seconds,
                burst,
            } => {
                out.push_str(&format!(
                    ",\"kind\":\"rate\",\"requests\":{requests},\"perSeconds\":{per_seconds},\"burst\":{burst}"
                ));
                if self.contended {
                    out.push_str(",\"contended\":true");
                }
            }
            LimitKind::Budget {
                limit,
                window_seconds,
                unit,
                used,
            } => out.push_str(&format!(
                ",\"kind\":\"tokenBudget\",\"tokens\":{limit},\"windowSeconds\":{window_seconds},\"unit\":\"{}\",\"used\":{used}",
                unit.as_str()
            )),
        }
        out.push_str("}}");
        out
    }

    /// The JSON-RPC error response; `id` raw as in `RequestInfo::id`, `None` writes `null`.
    pub fn error_body(&self, id: Option<&str>) -> String {
        error_body(id, self.code(), &self.message(), Some(&self.data()))
    }

    /// The whole local reply for a request that arrived as `to`.
    pub fn reply(&self, to: ReplyTo<'_>) -> LocalReply {
        let (status, id) = match to {
            ReplyTo::Request(id) => (200, Some(id)),
            ReplyTo::Notification | ReplyTo::NotJsonRpc => (429, None),
        };
        LocalReply {
            status,
            retry_after_seconds: self.retry_after_seconds(),
            body: self.error_body(id),
        }
    }
}
