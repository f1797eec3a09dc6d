//! One HTTP stream through the gateway: host callbacks in, core decisions out.
//!
//! Request path: headers → `Pause` (Envoy keeps the headers, thanks to
//! `allow_on_headers_stop_iteration`) → body buffered by Envoy until `end_of_stream` → one parse →
//! routing headers set → `Continue`, and Envoy re-selects the route on the new headers.
//! Response path: never held back; chunks are copied to the observer as they pass, except
//! Envoy-generated 5xx pages, which are turned into JSON-RPC errors for the waiting client.

use std::cell::RefCell;
use std::rc::Rc;

use mcp_gateway_core::config::Config;
use mcp_gateway_core::federation::stream::{Emit, StreamRewriter};
use mcp_gateway_core::gate::{self, Head, HeadVerdict, Reply};
use mcp_gateway_core::jsonrpc::{self, code, MessageKind, RequestInfo};
use mcp_gateway_core::metrics::MethodLabel;
use mcp_gateway_core::response::{
    body_kind, BodyKind, Measure, Outcome, ResponseObserver, Summary,
};
use mcp_gateway_core::tokens::TokenCounting;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::authn::SharedAuth;
use crate::cache::ListCache;
use crate::federate::{Next, Work};
use crate::host;
use crate::stats::Stats;
use crate::telemetry::{now_ns, Trace};

/// Filter-state names (Envoy prefixes them with `wasm.`).
const FS_METHOD: &str = "mcp_method";
const FS_NAME: &str = "mcp_name";
pub(crate) const FS_OUTCOME: &str = "mcp_outcome";

/// Longest upstream error text quoted in a JSON-RPC error.
const MAX_QUOTED_ERROR: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not an MCP request, or already finished with: every callback passes through.
    Bypass,
    /// Waiting for the whole request body.
    ReadingBody,
    /// Forwarded upstream; the response is being observed.
    Forwarded,
    /// The gateway answered locally; its own reply passes back through this filter untouched.
    Replied,
}

pub struct GatewayHttp {
    pub(crate) config: Rc<Config>,
    pub(crate) stats: Rc<RefCell<Stats>>,
    pub(crate) cache: Rc<RefCell<ListCache>>,
    auth: Option<SharedAuth>,
    /// Who the caller is, once authenticated.
    pub(crate) identity: Option<mcp_gateway_core::auth::Identity>,
    phase: Phase,
    pub(crate) head: Head,
    /// The accepted message (federation plans on it).
    pub(crate) info: Option<RequestInfo>,
    /// A fan-out in flight (federation).
    pub(crate) work: Option<Work>,
    /// The request body, kept while a list is fetched before routing (federation).
    pub(crate) pending_body: Option<Vec<u8>>,
    /// The server a federated request was routed to.
    pub(crate) route_server: Option<String>,
    /// Routed on the gateway's own upstream session (a stateless client, a session-based server).
    pub(crate) owned_route: bool,
    /// Rewrites a routed SSE response (server-to-client request ids).
    rewriter: Option<StreamRewriter>,
    /// Buffer the routed JSON response to add `resultType` (stateless client, legacy server).
    inject_json: bool,
    /// A list request without federation under a policy: filter the upstream's answer.
    filter_list: bool,
    /// Buffering that list answer (JSON or SSE) until its end.
    list_kind: Option<BodyKind>,
    pub(crate) label: MethodLabel,
    /// Raw JSON id of the request, for errors the gateway writes on the upstream's behalf.
    pub(crate) request_id: Option<String>,
    is_request: bool,
    pub(crate) observer: Option<ResponseObserver>,
    /// Buffering an Envoy-generated error page to replace it with a JSON-RPC error.
    rewrite_error: Option<u16>,
    /// The outcome has been counted (exactly once per request).
    counted: bool,
    /// Figures for per-tool metrics and the audit record.
    pub(crate) trace: Trace,
    /// Rate limits, budgets, cache (issue 6).
    pub(crate) guard: crate::guardrails::Guard,
    /// Redaction/injection screening of a tools/call result.
    pub(crate) result_guard: Option<crate::guardrails::ResultGuard>,
}

impl GatewayHttp {
    pub fn new(
        config: Rc<Config>,
        stats: Rc<RefCell<Stats>>,
        cache: Rc<RefCell<ListCache>>,
        auth: Option<SharedAuth>,
    ) -> Self {
        GatewayHttp {
            config,
            stats,
            cache,
            auth,
            identity: None,
            phase: Phase::Bypass,
            head: Head::default(),
            info: None,
            work: None,
            pending_body: None,
            route_server: None,
            owned_route: false,
            rewriter: None,
            inject_json: false,
            filter_list: false,
            list_kind: None,
            label: MethodLabel::extra(mcp_gateway_core::metrics::LABEL_UNPARSED),
            request_id: None,
            is_request: false,
            observer: None,
            rewrite_error: None,
            counted: false,
            trace: Trace::default(),
            guard: crate::guardrails::Guard::default(),
            result_guard: None,
        }
    }

    fn read_head(&mut self, path: String) {
        // All request headers in one host call: each single read is a call into the host and
        // another back into the module to allocate the value.
        let map = host::map_pairs(proxy_wasm::types::MapType::HttpRequestHeaders);
        let pairs = mcp_gateway_core::header_map::pairs(&map);
        let get = |name: &str| {
            mcp_gateway_core::header_map::value(&pairs, name).map(std::borrow::Cow::into_owned)
        };
        self.head = Head {
            method: get(":method").unwrap_or_default(),
            path,
            authority: get(":authority"),
            origin: get("origin"),
            content_type: get("content-type"),
            content_length: get("content-length").and_then(|v| v.parse().ok()),
            session_id: get("mcp-session-id"),
            protocol_version: get("mcp-protocol-version"),
            mcp_method: get("mcp-method"),
            mcp_name: get("mcp-name"),
        };
    }

    /// Answers locally and counts it. The caller returns `Action::Pause`.
    fn reply(&mut self, reply: Reply) {
        self.phase = Phase::Replied;
        self.stats.borrow_mut().rejected(reply.reason);
        self.label = reply.method;
        self.trace.decision = Some("reject");
        self.trace.reason = Some(reply.reason.as_str().to_owned());
        self.record(reply.reason.outcome(), None, None, None);
        let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        headers.extend(reply.headers.iter().map(|(k, v)| (*k, v.as_str())));
        host::send_reply(reply.status, &headers, reply.body.as_bytes());
    }

    /// Answers a valid request locally (federation: merged lists, initialize, ping, errors).
    pub(crate) fn local_answer(&mut self, status: u16, body: &str, session_id: Option<&str>) {
        self.local_answer_with(status, body, session_id, &[], None);
    }

    /// A JSON-RPC result the gateway built itself (a cached merged list): its outcome is known,
    /// and a list's token count (`tokens`, remembered per cached version) is all telemetry
    /// wants from it, so the body is not parsed again.
    pub(crate) fn local_result(&mut self, body: &str, tokens: Option<u64>) {
        self.local_answer_with(200, body, None, &[], Some(tokens));
    }

    /// A cached tools/call result, answered without the upstream.
    pub(crate) fn answer_from_cache(&mut self, body: &str) {
        self.local_answer_with(200, body, None, &[("x-mcp-cache", "hit")], None);
    }

    fn local_answer_with(
        &mut self,
        status: u16,
        body: &str,
        session_id: Option<&str>,
        extra: &[(&str, &str)],
        known_result: Option<Option<u64>>,
    ) {
        self.phase = Phase::Replied;
        // What a result the gateway built can tell without being parsed: its outcome, and the
        // tokens the caller counted. Enough unless the result itself is wanted, or tokens of
        // something other than a list.
        let known = known_result.filter(|tokens| match self.observation() {
            (None, false) => true,
            (Some((counting, Measure::ToolsList)), false) => counting.is_none() || tokens.is_some(),
            _ => false,
        });
        let summary = if status == 202 || body.is_empty() {
            None
        } else if let Some(tokens) = known {
            Some(Summary {
                outcome: Outcome::Ok,
                error_code: None,
                notifications: 0,
                server_requests: 0,
                garbled: 0,
                tokens,
                result: None,
                tools: Vec::new(),
            })
        } else {
            let mut observer = self.observing(ResponseObserver::new(
                status,
                Some("application/json"),
                Some(body.len()),
                body.len().max(1),
            ));
            observer.feed(body.as_bytes());
            Some(observer.finish(false))
        };
        let outcome = match &summary {
            Some(s) => s.outcome,
            None if status == 202 => Outcome::Accepted,
            // DELETE fan-out: no JSON-RPC answer, the HTTP status is the outcome.
            None if (200..300).contains(&status) => Outcome::Ok,
            None => Outcome::UpstreamError,
        };
        self.trace.session_opened = session_id.is_some();
        match summary {
            Some(s) => self.record(outcome, s.error_code, s.tokens, s.result),
            None => self.record(outcome, None, None, None),
        }
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(2);
        if !body.is_empty() {
            headers.push(("content-type", "application/json"));
        }
        if let Some(id) = session_id {
            headers.push(("mcp-session-id", id));
        }
        headers.extend_from_slice(extra);
        host::send_reply(status, &headers, body.as_bytes());
    }

    /// RFC 9728 protected-resource metadata, served by the gateway (the resource server).
    fn serve_resource_metadata(&mut self, path: &str) -> Action {
        let Some(auth) = self.auth.clone() else {
            return Action::Continue;
        };
        let auth = auth.borrow();
        let Some(meta) = auth.config().metadata.as_ref() else {
            return Action::Continue;
        };
        if !meta.serves(path, &self.config.mcp_paths) {
            return Action::Continue;
        }
        self.phase = Phase::Replied;
        host::send_reply(
            200,
            &[
                ("content-type", "application/json"),
                ("cache-control", "max-age=300"),
            ],
            meta.document().as_bytes(),
        );
        Action::Pause
    }

    /// Authenticates the request when `auth` is configured; on failure answers 401/403/503 with
    /// the `WWW-Authenticate` challenge and returns false.
    fn check_auth(&mut self) -> bool {
        // Identity headers are the gateway's to set: never a client's.
        if let Some(ids) = &self.config.identity_headers {
            for name in ids.names() {
                host::set_request_header(name, None);
            }
        }
        let Some(auth) = self.auth.clone() else {
            return true;
        };
        match crate::authn::authenticate(&auth) {
            Ok(done) => {
                self.stats
                    .borrow_mut()
                    .auth(if done.from_cache { "ok_cached" } else { "ok" });
                self.forward_identity(&done.identity);
                self.identity = Some(done.identity);
                true
            }
            Err(failure) => {
                let answer = auth.borrow().config().reply_for(failure);
                self.stats.borrow_mut().auth(failure.as_str());
                self.phase = Phase::Replied;
                self.trace.decision = Some("unauthenticated");
                self.trace.reason = Some(failure.as_str().to_owned());
                self.record(Outcome::Denied, Some(code::INVALID_REQUEST), None, None);
                let body = jsonrpc::error_body(None, code::INVALID_REQUEST, answer.message, None);
                let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
                if let Some(h) = answer.www_authenticate.as_deref() {
                    headers.push(("www-authenticate", h));
                }
                host::send_reply(answer.status, &headers, body.as_bytes());
                false
            }
        }
    }

    /// Sets the configured identity headers from a verified identity (header-safe values: the
    /// spec's `=?base64?…?=` form for anything else; non-string claims as JSON).
    fn forward_identity(&self, identity: &mcp_gateway_core::auth::Identity) {
        let Some(ids) = &self.config.identity_headers else {
            return;
        };
        if let Some(h) = ids.subject.as_deref() {
            let v = mcp_gateway_core::protocol::encode_header_value(&identity.subject);
            host::set_request_header(h, Some(&v));
        }
        for (claim, h) in &ids.claims {
            let Some(value) = identity.claims.get(claim) else {
                continue;
            };
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let v = mcp_gateway_core::protocol::encode_header_value(&text);
            host::set_request_header(h, Some(&v));
        }
    }

    /// A CORS preflight is never authenticated, so it must carry no credentials upstream: the
    /// client's are stripped and the gateway's are not added. Federating, the gateway is the
    /// server and answers it itself (the `Origin` was already checked against `allowedOrigins`).
    fn preflight(&mut self) -> Action {
        host::set_request_header("authorization", None);
        if let Some(auth) = &self.auth {
            if let Some(h) = auth.borrow().config().api_key_header.as_deref() {
                host::set_request_header(h, None);
            }
        }
        if self.config.federation.is_none() {
            return Action::Continue;
        }
        self.phase = Phase::Replied;
        let origin = self.head.origin.clone().unwrap_or_else(|| "*".to_owned());
        host::send_reply(
            204,
            &[
                ("access-control-allow-origin", origin.as_str()),
                ("access-control-allow-methods", "POST, GET, DELETE, OPTIONS"),
                (
                    "access-control-allow-headers",
                    "authorization, content-type, accept, mcp-session-id, mcp-protocol-version, mcp-method, mcp-name, last-event-id",
                ),
                ("access-control-expose-headers", "mcp-session-id, www-authenticate"),
                ("access-control-max-age", "600"),
                ("vary", "origin"),
            ],
            b"",
        );
        Action::Pause
    }

    /// The configured upstream credential (not federating; federated servers have their own).
    fn present_upstream_credential(&self) {
        if self.config.federation.is_none() {
            if let Some(c) = &self.config.upstream_credential {
                host::set_request_header(&c.header, Some(&c.value));
            }
        }
    }

    fn info_method_name(&self) -> Option<&str> {
        self.info.as_ref().and_then(|i| i.method.as_deref())
    }

    pub(crate) fn mark_replied(&mut self) {
        self.phase = Phase::Replied;
    }

    /// Removes routing headers a client may have sent itself: only the gateway may set them.
    fn clear_routing_headers(&self) {
        host::set_request_header(&self.config.method_header, None);
        host::set_request_header(&self.config.name_header, None);
    }

    fn finish(&mut self, reset: bool) {
        let Some(observer) = self.observer.take() else {
            return;
        };
        self.counted = true;
        let summary = observer.finish(reset);
        // GET streams and DELETE have no JSON-RPC answer: their outcome is the HTTP one.
        let outcome = if !self.is_request && summary.outcome == Outcome::Incomplete && !reset {
            Outcome::Ok
        } else {
            summary.outcome
        };
        self.stats.borrow_mut().stream(
            summary.notifications,
            summary.server_requests,
            summary.garbled,
        );
        self.trace.listed = summary.tools;
        let (outcome, error_code) = if self.finish_result_guard() {
            (Outcome::Denied, Some(crate::guardrails::GUARD_BLOCKED))
        } else {
            (outcome, summary.error_code)
        };
        self.record(outcome, error_code, summary.tokens, summary.result);
    }

    /// What telemetry, limits, the result cache and pinning need read from this request's
    /// final result: what to measure, and whether to keep the result's JSON.
    fn observation(&self) -> (Option<(Option<TokenCounting>, Measure)>, bool) {
        let tel = &self.config.telemetry;
        let measure = match self.info_method_name() {
            Some("tools/call") => Measure::ToolResult,
            Some("tools/list") => Measure::ToolsList,
            _ => return (None, false),
        };
        let keep = match measure {
            Measure::ToolResult => {
                self.guard.cache_key.is_some()
                    || (tel.enabled && tel.audit.as_ref().is_some_and(|a| a.results))
            }
            // Passthrough lists are fingerprinted for pinning (federation pins merged lists).
            Measure::ToolsList => self.config.pinning.is_some() && self.config.federation.is_none(),
        };
        let counting = if tel.enabled { tel.tokens } else { None };
        let measured = (tel.enabled || self.config.limits.is_some()).then_some((counting, measure));
        (measured, keep)
    }

    /// Asks an observer for what telemetry needs from the final result of this request.
    fn observing(&self, observer: ResponseObserver) -> ResponseObserver {
        let (measure, keep) = self.observation();
        let observer = match measure {
            Some((counting, what)) => observer.measure(counting, what),
            None => observer,
        };
        if keep {
            observer.keep_result()
        } else {
            observer
        }
    }

    /// The JSON-RPC error that replaces an Envoy-generated 5xx page (no healthy upstream,
    /// connect failure, timeout), so the client reads a protocol error, not HTML or plain text.
    fn upstream_error_body(&self, status: u16, text: &[u8]) -> String {
        let text = String::from_utf8_lossy(text);
        let mut quoted: String = text.trim().chars().take(MAX_QUOTED_ERROR).collect();
        if quoted.is_empty() {
            quoted = format!("HTTP {status}");
        }
        let server = self
            .route_server
            .as_deref()
            .map(|s| format!(" '{s}'"))
            .unwrap_or_default();
        if status == 429 {
            // Envoy's rate limit filters answer in plain text; an agent needs a JSON-RPC error
            // (the `Retry-After` header, when set, stays).
            return jsonrpc::error_body(
                self.request_id.as_deref(),
                mcp_gateway_core::limits::reply::code::RATE_LIMITED,
                &format!("Rate limited by the proxy: {quoted} (HTTP 429); retry later"),
                None,
            );
        }
        jsonrpc::error_body(
            self.request_id.as_deref(),
            code::INTERNAL_ERROR,
            &format!("Upstream MCP server{server} unavailable: {quoted} (HTTP {status})"),
            None,
        )
    }
}

impl Context for GatewayHttp {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let config = self.config.clone();
        if let Some(fed) = config.federation.as_ref() {
            self.on_callout(fed, token_id, body_size);
        }
    }
}

impl GatewayHttp {
    fn handle_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(path) = host::request_header(":path") else {
            return Action::Continue;
        };
        // Cheapest check first: non-MCP traffic costs one header read.
        if !self.config.is_mcp_path(&path) {
            if path.starts_with("/.well-known/oauth-protected-resource") {
                return self.serve_resource_metadata(&path);
            }
            return Action::Continue;
        }
        self.read_head(path);
        let verdict = gate::on_head(&self.config, &self.head);
        let needs_auth = matches!(verdict, HeadVerdict::ReadBody | HeadVerdict::Forward(_))
            && self.head.method != "OPTIONS";
        if needs_auth && !self.check_auth() {
            return Action::Pause;
        }
        match verdict {
            HeadVerdict::Bypass => Action::Continue,
            HeadVerdict::Reject(reply) => {
                self.reply(reply);
                Action::Pause
            }
            HeadVerdict::Forward(label) => {
                self.clear_routing_headers();
                self.label = label;
                self.phase = Phase::Forwarded;
                if self.head.method == "OPTIONS" {
                    return self.preflight();
                }
                if !self.guard_http() {
                    return Action::Pause;
                }
                self.present_upstream_credential();
                let config = self.config.clone();
                if let Some(fed) = config.federation.as_ref() {
                    return match self.head.method.as_str() {
                        "DELETE" => match self.federate_delete(fed) {
                            Next::Continue => Action::Continue,
                            Next::Pause => Action::Pause,
                        },
                        // No merged server-initiated stream: see docs/federation.md.
                        "GET" => {
                            let reply = gate::Reply {
                                status: 405,
                                body: jsonrpc::error_body(
                                    None,
                                    code::INVALID_REQUEST,
                                    "Method Not Allowed: this gateway offers no server-initiated stream (GET)",
                                    None,
                                ),
                                headers: vec![("allow", "POST, DELETE".to_owned())],
                                reason: mcp_gateway_core::metrics::RejectReason::MethodNotAllowed,
                                method: label,
                            };
                            self.reply(reply);
                            Action::Pause
                        }
                        _ => Action::Continue,
                    };
                }
                Action::Continue
            }
            HeadVerdict::ReadBody => {
                self.phase = Phase::ReadingBody;
                if end_of_stream {
                    // A POST without a body: judge the empty body now.
                    return self.handle_request_body(0, true);
                }
                Action::Pause
            }
        }
    }

    fn handle_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.phase != Phase::ReadingBody {
            return Action::Continue;
        }
        if body_size > self.config.max_request_bytes {
            self.reply(gate::too_large(&self.config));
            return Action::Pause;
        }
        if !end_of_stream {
            // Envoy buffers the body until we continue; `body_size` is the total so far.
            return Action::Pause;
        }
        let body = if body_size == 0 {
            Vec::new()
        } else {
            host::request_body(body_size).unwrap_or_default()
        };
        match gate::on_body(&self.config, &self.head, &body) {
            Err(reply) => {
                self.reply(reply);
                Action::Pause
            }
            Ok(accepted) => {
                let cfg = &self.config;
                host::set_request_header(&cfg.method_header, Some(&accepted.method_value));
                host::set_request_header(&cfg.name_header, accepted.name_value.as_deref());
                host::set_filter_state(FS_METHOD, &accepted.method_value);
                if let Some(name) = accepted.name_value.as_deref() {
                    host::set_filter_state(FS_NAME, name);
                }
                self.label = accepted.label;
                self.is_request = accepted.info.kind == MessageKind::Request;
                self.request_id = accepted.info.id.clone();
                let config = self.config.clone();
                if config.federation.is_some()
                    || config.policy.is_some()
                    || config.telemetry.enabled
                {
                    self.info = Some(accepted.info.clone());
                }
                if !self.authorize(&accepted.info, &body) {
                    return Action::Pause;
                }
                self.phase = Phase::Forwarded;
                if accepted.info.method.as_deref() == Some("tools/call") {
                    self.note_arguments(&body);
                }
                if !self.guard_request(&accepted.info, &body) {
                    return Action::Pause;
                }
                let body = match self.guard_arguments(&body) {
                    Err(()) => return Action::Pause,
                    Ok(Some(redacted)) => {
                        host::replace_request_body(body.len(), &redacted);
                        host::set_request_header(
                            "content-length",
                            Some(&redacted.len().to_string()),
                        );
                        redacted
                    }
                    Ok(None) => body,
                };
                if let Some(fed) = config.federation.as_ref() {
                    self.info = Some(accepted.info);
                    return match self.federate(fed, &body) {
                        Next::Continue => Action::Continue,
                        Next::Pause => Action::Pause,
                    };
                }
                self.present_upstream_credential();
                // Without federation the list comes from the upstream: filter it for this
                // caller on the way back (buffered; lists are small).
                self.filter_list = self.config.policy.is_some()
                    && matches!(
                        self.info_method_name(),
                        Some("tools/list" | "prompts/list" | "resources/list")
                    );
                Action::Continue
            }
        }
    }

    fn handle_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.phase != Phase::Forwarded {
            return Action::Continue;
        }
        // The response head in one host call (see `read_head`).
        let map = host::map_pairs(proxy_wasm::types::MapType::HttpResponseHeaders);
        let pairs = mcp_gateway_core::header_map::pairs(&map);
        let get = |name: &str| mcp_gateway_core::header_map::value(&pairs, name);
        let status = get(":status")
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        let content_type = get("content-type").map(std::borrow::Cow::into_owned);
        let content_length = get("content-length").and_then(|v| v.parse::<usize>().ok());
        let upstream_session = get("mcp-session-id").is_some();
        let kind = body_kind(content_type.as_deref());
        let mut observed_type = content_type.as_deref();
        if self.owned_route && (status == 404 || status == 400) {
            // The gateway's own session with that server is gone (restart, expiry): prepare anew
            // on the next request. This one fails; the client retries.
            self.cache.borrow_mut().drop_owned();
        }
        if let Some(server) = self.route_server.as_deref() {
            // The client knows only the gateway's session id, never an upstream's.
            if upstream_session {
                host::set_response_header("mcp-session-id", self.head.session_id.as_deref());
            }
            if kind == BodyKind::EventStream && (200..300).contains(&status) {
                let rewriter = StreamRewriter::new(server, self.config.max_observed_response_bytes);
                self.rewriter = Some(if self.owned_route {
                    rewriter.injecting_result_type()
                } else {
                    rewriter
                });
                host::set_response_header("content-length", None);
                observed_type = None;
            }
            if self.owned_route && kind == BodyKind::Json && (200..300).contains(&status) {
                // A session-based server answering a stateless client: its JSON result needs the
                // `resultType` that 2026-07-28 requires, so this (small) body is buffered.
                self.inject_json = true;
                host::set_response_header("content-length", None);
            }
        }
        if self.filter_list
            && (200..300).contains(&status)
            && matches!(kind, BodyKind::Json | BodyKind::EventStream)
        {
            host::set_response_header("content-length", None);
            self.list_kind = Some(kind);
        }
        self.read_cluster();
        if self.is_request
            && (200..300).contains(&status)
            && matches!(kind, BodyKind::Json | BodyKind::EventStream)
            && self.start_result_guard(kind == BodyKind::EventStream)
        {
            host::set_response_header("content-length", None);
            // A screened stream is observed after redaction (what the client gets: tokens and
            // the audit record never see what the guard removed), so as a stream of its own.
            observed_type = content_type.as_deref();
        }
        if self.guard.cache_key.is_some() && (200..300).contains(&status) {
            host::set_response_header("x-mcp-cache", Some("miss"));
        }
        if self.label == MethodLabel::of_method("initialize") && upstream_session {
            self.trace.session_opened = true;
        }
        self.observer = Some(self.observing(ResponseObserver::new(
            status,
            observed_type,
            content_length,
            self.config.max_observed_response_bytes,
        )));
        // Envoy's own error pages (no upstream, connect failure, timeout) are plain text. A
        // JSON-RPC request deserves a JSON-RPC error, so buffer that small page and replace it.
        if (status >= 500 || status == 429)
            && self.is_request
            && kind == BodyKind::Other
            && !end_of_stream
        {
            self.rewrite_error = Some(status);
            host::set_response_header("content-length", None);
            host::set_response_header("content-type", Some("application/json"));
            return Action::Continue;
        }
        if end_of_stream {
            self.finish(false);
        }
        Action::Continue
    }

    fn handle_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.phase != Phase::Forwarded {
            return Action::Continue;
        }
        if let Some(status) = self.rewrite_error {
            if !end_of_stream {
                return Action::Pause;
            }
            let text = host::response_body(body_size).unwrap_or_default();
            let body = self.upstream_error_body(status, &text);
            host::replace_response_body(body_size, body.as_bytes());
            self.finish(false);
            return Action::Continue;
        }
        if let Some(kind) = self.list_kind {
            if !end_of_stream {
                return Action::Pause;
            }
            let body = host::response_body(body_size).unwrap_or_default();
            let filtered = match kind {
                BodyKind::EventStream => mcp_gateway_core::sse::rewrite_buffered(&body, |data| {
                    let text = std::str::from_utf8(data).ok()?;
                    text.contains("\"result\"")
                        .then(|| self.filter_listing(None, text))
                        .flatten()
                        .map(String::into_bytes)
                }),
                _ => std::str::from_utf8(&body)
                    .ok()
                    .and_then(|t| self.filter_listing(None, t))
                    .map_or(body, String::into_bytes),
            };
            host::replace_response_body(body_size, &filtered);
            if let Some(o) = self.observer.as_mut() {
                o.feed(&filtered);
            }
            self.finish(false);
            return Action::Continue;
        }
        if self.inject_json {
            if !end_of_stream {
                return Action::Pause;
            }
            let body = host::response_body(body_size).unwrap_or_default();
            self.guard.response_bytes += body.len() as u64;
            let body = match mcp_gateway_core::federation::rewrite::inject_result_type(&body) {
                Some(new) => {
                    host::replace_response_body(body_size, &new);
                    new
                }
                None => body,
            };
            let body = if self.result_guard.is_some() {
                let out = self.guard_whole(&body, false);
                host::replace_response_body(body_size, &out);
                out
            } else {
                body
            };
            if let Some(o) = self.observer.as_mut() {
                o.feed(&body);
            }
            self.finish(false);
            return Action::Continue;
        }
        let guard_buffers = self
            .result_guard
            .as_ref()
            .is_some_and(crate::guardrails::ResultGuard::buffered);
        if self.rewriter.is_some() && self.result_guard.is_some() {
            // Screened federated stream: rewrite (ids), then redact; buffered when a finding may
            // block the result.
            if guard_buffers && !end_of_stream {
                return Action::Pause;
            }
            let chunk = host::response_body(body_size).unwrap_or_default();
            self.guard.response_bytes += chunk.len() as u64;
            let mut emitted = Vec::with_capacity(chunk.len() + 64);
            if let Some(rewriter) = self.rewriter.as_mut() {
                match rewriter.feed(&chunk, |_| {}) {
                    Emit::Unchanged => emitted.extend_from_slice(&chunk),
                    Emit::Replace(out) => emitted.extend_from_slice(out),
                }
                if end_of_stream {
                    emitted.extend_from_slice(rewriter.finish());
                }
                if !rewriter.list_changed.is_empty() {
                    let changed = std::mem::take(&mut rewriter.list_changed);
                    self.cache.borrow_mut().invalidate(&changed);
                }
            }
            if guard_buffers {
                let out = self.guard_whole(&emitted, true);
                self.emit(&out, body_size);
            } else {
                self.emit_guarded(&emitted, end_of_stream, body_size);
            }
            if end_of_stream {
                self.finish(false);
            }
            return Action::Continue;
        }
        if let Some(rewriter) = self.rewriter.as_mut() {
            let chunk = if body_size > 0 {
                host::response_body(body_size).unwrap_or_default()
            } else {
                Vec::new()
            };
            self.guard.response_bytes += chunk.len() as u64;
            let observer = &mut self.observer;
            let emit = rewriter.feed(&chunk, |m| {
                if let Some(o) = observer.as_mut() {
                    o.message(m);
                }
            });
            match emit {
                Emit::Unchanged if !end_of_stream => {}
                Emit::Unchanged => {
                    if !rewriter.finish().is_empty() {
                        let mut all = chunk.clone();
                        all.extend_from_slice(rewriter.finish());
                        host::replace_response_body(body_size, &all);
                    }
                }
                Emit::Replace(out) if !end_of_stream => host::replace_response_body(body_size, out),
                Emit::Replace(out) => {
                    let mut all = out.to_vec();
                    all.extend_from_slice(rewriter.finish());
                    host::replace_response_body(body_size, &all);
                }
            }
            if !rewriter.list_changed.is_empty() {
                let changed = std::mem::take(&mut rewriter.list_changed);
                self.cache.borrow_mut().invalidate(&changed);
            }
            if end_of_stream {
                self.finish(false);
            }
            return Action::Continue;
        }
        if self.result_guard.is_some() {
            if guard_buffers && !end_of_stream {
                return Action::Pause;
            }
            let chunk = host::response_body(body_size).unwrap_or_default();
            self.guard.response_bytes += chunk.len() as u64;
            if guard_buffers {
                let event_stream = self.result_guard.as_ref().is_some_and(|g| g.event_stream);
                let out = self.guard_whole(&chunk, event_stream);
                self.emit(&out, body_size);
            } else {
                self.emit_guarded(&chunk, end_of_stream, body_size);
            }
            if end_of_stream {
                self.finish(false);
            }
            return Action::Continue;
        }
        let wants = self
            .observer
            .as_ref()
            .is_some_and(ResponseObserver::wants_body);
        self.guard.response_bytes += body_size as u64;
        if wants && body_size > 0 {
            if let Some(chunk) = host::response_body(body_size) {
                if let Some(observer) = self.observer.as_mut() {
                    observer.feed(&chunk);
                }
            }
        }
        if end_of_stream {
            self.finish(false);
        }
        Action::Continue
    }

    fn handle_log(&mut self) {
        // The stream ended without a complete response (client gone, upstream reset).
        if self.phase == Phase::Forwarded && !self.counted {
            if self.observer.is_none() {
                // No response headers ever arrived: count it as an upstream failure.
                self.observer = Some(ResponseObserver::new(0, None, None, 0));
            }
            self.finish(true);
        }
    }
}

impl GatewayHttp {
    /// Runs one callback, adding its wall time to the request's filter time and noting when the
    /// request was handed upstream (telemetry on only: two clock reads per callback).
    fn timed(&mut self, f: impl FnOnce(&mut Self) -> Action) -> Action {
        if !self.config.telemetry.enabled {
            return f(self);
        }
        let t0 = now_ns();
        let action = f(self);
        if self.phase == Phase::Bypass && self.trace.started_ns == 0 {
            return action;
        }
        let t1 = now_ns();
        if self.trace.started_ns == 0 {
            self.trace.started_ns = t0;
        }
        self.trace.busy_ns += t1.saturating_sub(t0);
        if action == Action::Continue
            && self.phase == Phase::Forwarded
            && self.trace.forwarded_ns.is_none()
        {
            self.trace.forwarded_ns = Some(t1);
        }
        action
    }
}

impl HttpContext for GatewayHttp {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        self.timed(|s| s.handle_request_headers(num_headers, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.timed(|s| s.handle_request_body(body_size, end_of_stream))
    }

    fn on_http_response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        self.timed(|s| s.handle_response_headers(num_headers, end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.timed(|s| s.handle_response_body(body_size, end_of_stream))
    }

    fn on_log(&mut self) {
        self.handle_log();
    }
}
