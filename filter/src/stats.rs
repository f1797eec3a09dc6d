//! Envoy stats for the gateway, defined lazily and cached per VM.
//!
//! Every name comes from `mcp_gateway_core::metrics`, whose label values are closed sets, so the
//! table sizes are fixed and a stat id is an index away after its first use.

use mcp_gateway_core::metrics::{self, MethodLabel, RejectReason};
use mcp_gateway_core::response::Outcome;
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
        }
    }
}

fn counter(slot: &mut Option<u32>, name: impl FnOnce() -> String) -> Option<u32> {
    if slot.is_none() {
        let name = name();
        match hostcalls::define_metric(MetricType::Counter, &name) {
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
