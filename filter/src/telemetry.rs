//! Telemetry glue: what one request contributes to per-tool metrics and to its audit record.
//!
//! Everything here runs once per request, when its outcome is known (`record`), from figures the
//! request path gathered as it went (`Trace`). The audit record is a set of `wasm.mcp_*` filter
//! state values that Envoy's access loggers print (envoy/demo.yaml ships a JSON line format), so
//! shipping stays Envoy's job.

use mcp_gateway_core::response::Outcome;
use proxy_wasm::hostcalls;

use crate::host;
use crate::http::GatewayHttp;
use crate::stats::ToolCall;

/// Label of a request the gateway answered without an upstream server.
const NO_SERVER: &str = "_gateway";

/// Per-request figures gathered along the way.
#[derive(Debug, Default)]
pub struct Trace {
    /// When the first MCP callback ran (ns since the epoch); 0 with telemetry off.
    pub started_ns: u64,
    /// When the request was handed to the upstream.
    pub forwarded_ns: Option<u64>,
    /// Time spent inside this filter's callbacks.
    pub busy_ns: u64,
    /// Tokens in the tool call's arguments.
    pub tokens_in: Option<u64>,
    /// Upstream cluster (passthrough), for the server label.
    pub cluster: Option<String>,
    /// `allow`, `deny` (policy), `unauthenticated`, `reject` (malformed), `limit`.
    pub decision: Option<&'static str>,
    pub reason: Option<String>,
    /// Argument paths the policy asked the audit log to hide.
    pub redact: Vec<String>,
    /// The redacted arguments, when the audit includes them.
    pub arguments: Option<String>,
    /// The response carried a new session id (initialize).
    pub session_opened: bool,
    /// Tool names of a tools/list answer that passed through.
    pub listed: Vec<String>,
}

/// Nanoseconds since the epoch from the host clock (0 if unavailable).
pub fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn micros(from: u64, to: u64) -> Option<u64> {
    (from > 0 && to >= from).then(|| (to - from) / 1000)
}

impl GatewayHttp {
    /// Upstream cluster the router picked, for the server label of passthrough traffic.
    pub(crate) fn read_cluster(&mut self) {
        if !self.config.telemetry.enabled
            || self.config.federation.is_some()
            || self.trace.cluster.is_some()
        {
            return;
        }
        for path in [vec!["xds", "cluster_name"], vec!["cluster_name"]] {
            if let Ok(Some(bytes)) = hostcalls::get_property(path) {
                if let Ok(name) = String::from_utf8(bytes) {
                    if !name.is_empty() {
                        self.trace.cluster = Some(name);
                        return;
                    }
                }
            }
        }
    }

    /// From a freshly merged tools/list: each server's tools may become labels (so a denied
    /// call to a real tool is counted under its name), and each server's catalogue-tokens gauge.
    pub(crate) fn note_catalogue(
        &self,
        fed: &mcp_gateway_core::federation::Federation,
        kind: mcp_gateway_core::federation::aggregate::ListKind,
        merged: &mcp_gateway_core::federation::aggregate::MergedList,
    ) {
        let tel = &self.config.telemetry;
        if !tel.enabled || kind != mcp_gateway_core::federation::aggregate::ListKind::Tools {
            return;
        }
        let mut stats = self.stats.borrow_mut();
        for (name, _) in &merged.owners {
            if let Some(server) = fed
                .split(name)
                .and_then(|(i, own)| fed.servers.get(i).map(|s| (s, own)))
            {
                stats.admit_tools(&server.0.name, &[server.1.to_owned()]);
            }
        }
        if let Some(counting) = tel.tokens {
            let per =
                mcp_gateway_core::telemetry::catalogue_tokens(merged, fed.servers.len(), counting);
            for (server, tokens) in fed.servers.iter().zip(per) {
                stats.catalogue_tokens(&server.name, tokens);
            }
        }
    }

    /// Token count and (when audited) redacted copy of a tools/call request's arguments.
    pub(crate) fn note_arguments(&mut self, body: &[u8]) {
        let tel = &self.config.telemetry;
        if !tel.enabled {
            return;
        }
        let Some(args) = mcp_gateway_core::policy::params_arguments(body) else {
            self.trace.tokens_in = tel.tokens.map(|_| 0);
            return;
        };
        if let Some(counting) = tel.tokens {
            self.trace.tokens_in = Some(counting.count_json(args.get().as_bytes()));
        }
        if let Some(audit) = tel.audit.as_ref().filter(|a| a.arguments) {
            self.trace.arguments = audit.redacted(args.get().as_bytes(), &self.trace.redact);
        }
    }

    /// The server a request is counted under: the routed federation server, the one its name
    /// belongs to, the passthrough cluster, or `_gateway`.
    fn server_label(&self) -> (String, Option<String>) {
        let owned = self.info.as_ref().and_then(|i| self.server_of(i));
        let name = self.info.as_ref().and_then(|i| i.name.clone());
        match (self.route_server.as_deref(), owned) {
            (Some(s), Some((_, own))) => (s.to_owned(), Some(own)),
            (Some(s), None) => (s.to_owned(), name),
            (None, Some((server, own))) => (server, Some(own)),
            (None, None) => (
                self.trace
                    .cluster
                    .clone()
                    .unwrap_or_else(|| NO_SERVER.to_owned()),
                name,
            ),
        }
    }

    /// Counts a finished request and writes its audit record. Called exactly once per request.
    pub(crate) fn record(
        &mut self,
        outcome: Outcome,
        error_code: Option<i64>,
        tokens_out: Option<u64>,
        result: Option<Vec<u8>>,
    ) {
        self.stats.borrow_mut().request(self.label, outcome);
        host::set_filter_state(crate::http::FS_OUTCOME, outcome.as_str());
        if self.label == mcp_gateway_core::metrics::MethodLabel::of_method("tools/call") {
            self.guard_response(outcome, tokens_out, result.as_deref());
        } else if self.label == mcp_gateway_core::metrics::MethodLabel::of_method("tools/list") {
            self.pin_passthrough_list(result.as_deref());
        }
        let config = self.config.clone();
        let tel = &config.telemetry;
        if !tel.enabled {
            return;
        }
        let now = now_ns();
        let method = self
            .info
            .as_ref()
            .and_then(|i| i.method.as_deref())
            .unwrap_or_default()
            .to_owned();
        let (server, tool) = self.server_label();
        let latency = micros(self.trace.started_ns, now);
        {
            let mut stats = self.stats.borrow_mut();
            match method.as_str() {
                "tools/call" => {
                    let tool = tool.as_deref().unwrap_or("_none");
                    stats.tool_call(&ToolCall {
                        server: &server,
                        tool,
                        outcome,
                        duration_us: latency,
                        upstream_us: self
                            .trace
                            .forwarded_ns
                            .and_then(|f| micros(f, now))
                            .filter(|_| server != NO_SERVER),
                        tokens_in: self.trace.tokens_in,
                        tokens_out,
                        routed: self.route_server.is_some(),
                    });
                }
                "tools/list" => {
                    if config.federation.is_none() && server != NO_SERVER {
                        stats.admit_tools(&server, &self.trace.listed);
                    }
                    if let Some(t) = tokens_out {
                        stats.tools_list_tokens(t);
                        if config.federation.is_none() && server != NO_SERVER {
                            stats.catalogue_tokens(&server, t);
                        }
                    }
                }
                "initialize" if outcome == Outcome::Ok && self.trace.session_opened => {
                    stats.session(true);
                }
                _ => {}
            }
            if self.head.method == "DELETE" && outcome == Outcome::Ok {
                stats.session(false);
            }
            stats.filter_duration(self.label, self.trace.busy_ns / 1000);
        }
        let Some(audit) = tel.audit.as_ref() else {
            return;
        };
        let set = |k: &str, v: &str| {
            if !v.is_empty() {
                host::set_filter_state(k, v);
            }
        };
        set("mcp_server", &server);
        if let Some(id) = self.identity.as_ref() {
            set("mcp_subject", &id.subject);
            let client = ["client_id", "azp"]
                .iter()
                .find_map(|c| id.claims.get(*c).and_then(|v| v.as_str()));
            if let Some(c) = client {
                set("mcp_client", c);
            }
        }
        if let Some(s) = self.head.session_id.as_deref() {
            set("mcp_session", &mcp_gateway_core::telemetry::session_ref(s));
        }
        set(
            "mcp_decision",
            self.trace
                .decision
                .unwrap_or(if outcome == Outcome::Denied {
                    "deny"
                } else {
                    "allow"
                }),
        );
        if let Some(r) = self.trace.reason.as_deref() {
            set("mcp_reason", r);
        }
        if let Some(c) = error_code {
            set("mcp_error_code", &c.to_string());
        }
        if let Some(l) = latency {
            set("mcp_latency_us", &l.to_string());
        }
        if let Some(t) = self.trace.tokens_in {
            set("mcp_tokens_in", &t.to_string());
        }
        if let Some(t) = tokens_out {
            set("mcp_tokens_out", &t.to_string());
        }
        if let Some(id) = self.request_id.as_deref() {
            set("mcp_request_id", id);
        }
        if let Some(a) = self.trace.arguments.as_deref() {
            set("mcp_arguments", a);
        }
        if audit.results {
            if let Some(r) = result.as_deref().and_then(|r| audit.redacted(r, &[])) {
                set("mcp_result", &r);
            }
        }
    }
}
