//! Envoy stats for the gateway, defined lazily and cached per VM.
//!
//! Every name comes from `mcp_gateway_core::metrics`, whose label values are closed sets, so the
//! table sizes are fixed and a stat id is an index away after its first use.

use mcp_gateway_core::metrics::{self, Direction, MethodLabel, RejectReason};
use mcp_gateway_core::response::Outcome;
use mcp_gateway_core::telemetry::ToolLabels;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

const OUTCOMES: usize = Outcome::ALL.len();

pub struct Stats {
    requests: Vec<Option<u32>>,
    rejected: Vec<Option<u32>>,
    garbled: Option<u32>,
    notifications: Option<u32>,
    server_requests: Option<u32>,
    upstream_failures: std::collections::HashMap<String, Option<u32>>,
    auth: std::collections::HashMap<&'static str, Option<u32>>,
    policy: std::collections::HashMap<&'static str, Option<u32>>,
    /// `mcp.policy_cache_total.result=hit` and `=miss`.
    policy_cache: [Option<u32>; 2],
    /// Per-tool and per-server stats, by full stat name (names are bounded by `labels`).
    dynamic: std::collections::HashMap<String, Option<u32>>,
    /// `mcp.filter_duration_us` ids by method label.
    filter_durations: Vec<Option<u32>>,
    /// The tools/call stat ids per server label, then tool label: found by borrowed names, so
    /// a call whose stats exist formats no name and allocates nothing.
    tools: std::collections::HashMap<String, ServerIds>,
    labels: ToolLabels,
}

/// Stat ids of one server's tools/call metrics, defined on first use.
#[derive(Default)]
struct ServerIds {
    upstream: Option<u32>,
    tools: std::collections::HashMap<String, ToolIds>,
}

/// Stat ids of one (server, tool) pair.
#[derive(Default)]
struct ToolIds {
    calls: [Option<u32>; OUTCOMES],
    duration: Option<u32>,
    tokens: [Option<u32>; 2],
}

/// One finished tools/call, as telemetry sees it.
pub struct ToolCall<'a> {
    pub server: &'a str,
    pub tool: &'a str,
    pub outcome: Outcome,
    pub duration_us: Option<u64>,
    pub upstream_us: Option<u64>,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    /// Routed by the merged list (federation): the server listed this tool.
    pub routed: bool,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            requests: vec![None; MethodLabel::COUNT * OUTCOMES],
            rejected: vec![None; RejectReason::ALL.len()],
            garbled: None,
            notifications: None,
            server_requests: None,
            upstream_failures: std::collections::HashMap::new(),
            auth: std::collections::HashMap::new(),
            policy: std::collections::HashMap::new(),
            policy_cache: [None; 2],
            dynamic: std::collections::HashMap::new(),
            tools: std::collections::HashMap::new(),
            filter_durations: vec![None; MethodLabel::COUNT],
            labels: ToolLabels::new(mcp_gateway_core::telemetry::DEFAULT_MAX_TOOL_LABELS),
        }
    }
}

fn counter(slot: &mut Option<u32>, name: impl FnOnce() -> String) -> Option<u32> {
    metric(MetricType::Counter, slot, name)
}

fn metric(kind: MetricType, slot: &mut Option<u32>, name: impl FnOnce() -> String) -> Option<u32> {
    if slot.is_none() {
        let name = name();
        match hostcalls::define_metric(kind, &name) {
            Ok(id) => *slot = Some(id),
            Err(status) => log::warn!("could not define metric {name}: {status:?}"),
        }
    }
    *slot
}

fn add(id: Option<u32>, n: u64) {
    if let Some(id) = id {
        if n > 0 {
            let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

impl Stats {
    pub fn request(&mut self, method: MethodLabel, outcome: Outcome) {
        let i = method.index() * OUTCOMES + outcome.index();
        if let Some(slot) = self.requests.get_mut(i) {
            add(
                counter(slot, || metrics::requests_total(method, outcome)),
                1,
            );
        }
    }

    pub fn rejected(&mut self, reason: RejectReason) {
        if let Some(slot) = self.rejected.get_mut(reason.index()) {
            add(counter(slot, || metrics::rejected_total(reason)), 1);
        }
    }

    /// Counts a failed call to a configured upstream server (names come from config: bounded).
    pub fn upstream_failure(
        &mut self,
        fed: &mcp_gateway_core::federation::Federation,
        server: &str,
    ) {
        if fed.server(server).is_none() {
            return;
        }
        let slot = self
            .upstream_failures
            .entry(server.to_owned())
            .or_insert(None);
        add(
            counter(slot, || metrics::upstream_failures_total(server)),
            1,
        );
    }

    /// `mcp.auth_total.result=<r>`: `ok`, `ok_cached`, or the failure reason (a closed set).
    pub fn auth(&mut self, result: &'static str) {
        let slot = self.auth.entry(result).or_insert(None);
        add(counter(slot, || metrics::auth_total(result)), 1);
    }

    /// `mcp.policy_decisions_total.decision=<allow|deny>`.
    pub fn policy(&mut self, decision: &'static str) {
        let slot = self.policy.entry(decision).or_insert(None);
        add(
            counter(slot, || {
                format!("mcp.policy_decisions_total.decision={decision}")
            }),
            1,
        );
    }

    /// `mcp.policy_cache_total.result=<hit|miss>`: how often the decision cache answered.
    pub fn policy_cache(&mut self, hit: bool) {
        let (slot, result) = if hit {
            (&mut self.policy_cache[0], "hit")
        } else {
            (&mut self.policy_cache[1], "miss")
        };
        add(
            counter(slot, || format!("mcp.policy_cache_total.result={result}")),
            1,
        );
    }

    pub fn stream(&mut self, notifications: u32, server_requests: u32, garbled: u32) {
        if notifications > 0 {
            add(
                counter(&mut self.notifications, || {
                    metrics::STREAM_NOTIFICATIONS_TOTAL.to_owned()
                }),
                u64::from(notifications),
            );
        }
        if server_requests > 0 {
            add(
                counter(&mut self.server_requests, || {
                    metrics::STREAM_SERVER_REQUESTS_TOTAL.to_owned()
                }),
                u64::from(server_requests),
            );
        }
        if garbled > 0 {
            add(
                counter(&mut self.garbled, || {
                    metrics::UPSTREAM_GARBLED_TOTAL.to_owned()
                }),
                u64::from(garbled),
            );
        }
    }
}

impl Stats {
    /// Applies the configured cap on tool labels (a reload may change it; known labels stay).
    pub fn set_max_tool_labels(&mut self, max: usize) {
        self.labels = ToolLabels::new(max);
    }

    fn dynamic(&mut self, kind: MetricType, name: String) -> Option<u32> {
        if let Some(slot) = self.dynamic.get(&name) {
            return *slot;
        }
        let mut slot = None;
        let id = metric(kind, &mut slot, || name.clone());
        self.dynamic.insert(name, slot);
        id
    }

    fn histogram(&mut self, name: String, value: u64) {
        if let Some(id) = self.dynamic(MetricType::Histogram, name) {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    /// Counts one finished tools/call with its latency and token figures. Returns the tool label
    /// it was counted under (bounded: see `ToolLabels`).
    pub fn tool_call(&mut self, call: &ToolCall<'_>) {
        let server = mcp_gateway_core::telemetry::label_value(call.server);
        if call.routed {
            // A federated call is routed only to a name in the merged list.
            self.labels.admit(&server, call.tool);
        }
        let tool = self.labels.label(&server, call.tool);
        let ids = match self.tools.get_mut(server.as_ref()) {
            Some(ids) => ids,
            None => self.tools.entry(server.to_string()).or_default(),
        };
        if let Some(us) = call.upstream_us {
            let id = metric(MetricType::Histogram, &mut ids.upstream, || {
                metrics::upstream_duration(&server)
            });
            if let Some(id) = id {
                let _ = hostcalls::record_metric(id, us);
            }
        }
        let ids = match ids.tools.get_mut(tool.as_ref()) {
            Some(ids) => ids,
            None => ids.tools.entry(tool.to_string()).or_default(),
        };
        if let Some(slot) = ids.calls.get_mut(call.outcome.index()) {
            add(
                counter(slot, || {
                    metrics::tool_calls_total(&server, &tool, call.outcome)
                }),
                1,
            );
        }
        if let Some(us) = call.duration_us {
            let id = metric(MetricType::Histogram, &mut ids.duration, || {
                metrics::tool_call_duration(&server, &tool)
            });
            if let Some(id) = id {
                let _ = hostcalls::record_metric(id, us);
            }
        }
        for (slot, direction, n) in [
            (0, Direction::In, call.tokens_in),
            (1, Direction::Out, call.tokens_out),
        ] {
            if let (Some(n), Some(slot)) = (n, ids.tokens.get_mut(slot)) {
                add(
                    counter(slot, || {
                        metrics::tool_tokens_total(&server, &tool, direction)
                    }),
                    n,
                );
            }
        }
    }

    /// Tools a server listed (a tools/list answer passed through): they may become labels.
    pub fn admit_tools(&mut self, server: &str, tools: &[String]) {
        let server = mcp_gateway_core::telemetry::label_value(server);
        for t in tools {
            if !self.labels.admit(&server, t) {
                break;
            }
        }
    }

    /// Time spent in the gateway's own callbacks for one request.
    pub fn filter_duration(&mut self, method: MethodLabel, us: u64) {
        if let Some(slot) = self.filter_durations.get_mut(method.index()) {
            let id = metric(MetricType::Histogram, slot, || {
                metrics::filter_duration(method)
            });
            if let Some(id) = id {
                let _ = hostcalls::record_metric(id, us);
            }
        }
    }

    /// Tokens of a tools/list answer delivered to a client.
    pub fn tools_list_tokens(&mut self, tokens: u64) {
        self.histogram(metrics::TOOLS_LIST_TOKENS.to_owned(), tokens);
    }

    /// The context cost of one server's catalogue, as last seen.
    pub fn catalogue_tokens(&mut self, server: &str, tokens: u64) {
        let server = mcp_gateway_core::telemetry::label_value(server);
        if let Some(id) = self.dynamic(MetricType::Gauge, metrics::catalogue_tokens(&server)) {
            let _ = hostcalls::record_metric(id, tokens);
        }
    }

    fn count(&mut self, name: String) {
        let id = self.dynamic(MetricType::Counter, name);
        add(id, 1);
    }

    /// `mcp.rate_limited_total.rule=<r>.kind=<rate|budget>` (rule names come from config;
    /// `_unchecked` counts admissions without a check because shared data failed).
    pub fn limited(&mut self, rule: &str, kind: &str) {
        self.count(format!("mcp.rate_limited_total.rule={rule}.kind={kind}"));
    }

    /// `mcp.cache_total.result=<hit|miss|not_stored>`.
    pub fn cache(&mut self, result: &str) {
        self.count(format!("mcp.cache_total.result={result}"));
    }

    /// `mcp.pinning_total.server=<s>.event=<changed|refused|untracked|unavailable>`.
    pub fn pinning(&mut self, server: &str, event: &str) {
        let server = mcp_gateway_core::telemetry::label_value(server);
        self.count(format!("mcp.pinning_total.server={server}.event={event}"));
    }

    /// A call refused because its tool's definition changed (pinning, hide mode).
    pub fn pin_refused(&mut self, server: &str) {
        self.pinning(server, "refused");
    }

    /// `mcp.guard_findings_total.kind=<detector>.result=<flag|redact|block>`.
    pub fn guard_finding(&mut self, kind: &str, action: &str) {
        self.count(format!(
            "mcp.guard_findings_total.kind={kind}.result={action}"
        ));
    }

    /// `mcp.approvals_required_total.reason=<r>`.
    pub fn approval_required(&mut self, reason: &str) {
        self.count(format!("mcp.approvals_required_total.reason={reason}"));
    }

    /// A session opened (initialize answered with a session) or closed (DELETE succeeded).
    pub fn session(&mut self, opened: bool) {
        let id = self.dynamic(MetricType::Counter, metrics::sessions_total(opened));
        add(id, 1);
    }
}
