//! Guardrail glue: tool pinning, destructive-tool approval, rate limits, token budgets and the
//! result cache, each decided by the core over Envoy's shared data ([`host::SharedData`]).
//!
//! Order on a request (after authentication and policy): pinning, approval, rate limits, budgets,
//! cache. The cheapest refusals come first and a refused call never costs an allowance or fills
//! the cache. After the response: cache store, budget charge.

use mcp_gateway_core::jsonrpc::RequestInfo;
use mcp_gateway_core::limits::{BudgetDecision, Caller, RateDecision, ReplyTo, Usage};
use mcp_gateway_core::response::Outcome;
use mcp_gateway_core::result_cache::{CacheKey, CallFacts, Scope};
use mcp_gateway_core::selector::Target;
use proxy_wasm::hostcalls;

use crate::host::{self, SharedData};
use crate::http::GatewayHttp;

/// Per-request guardrail state.
#[derive(Debug, Default)]
pub struct Guard {
    /// Where to store this call's result (a cacheable call that missed).
    pub cache_key: Option<CacheKey>,
    /// Response body bytes seen (budgets in bytes, or tokens without counting).
    pub response_bytes: u64,
    /// The caller's address, read once when anonymous callers are keyed by it.
    client_address: Option<String>,
}

impl GatewayHttp {
    fn client_address(&mut self) -> Option<String> {
        if self.identity.is_some() {
            return None;
        }
        if self.guard.client_address.is_none() {
            self.guard.client_address = hostcalls::get_property(vec!["source", "address"])
                .ok()
                .flatten()
                .and_then(|b| String::from_utf8(b).ok());
        }
        self.guard.client_address.clone()
    }

    /// Who the limits key a request by: the authenticated subject, or the client's address.
    fn caller_keys(&mut self) -> (Option<String>, Option<String>) {
        let address = self.client_address();
        (self.identity.as_ref().map(|i| i.subject.clone()), address)
    }

    /// Answers with a guardrail refusal (a JSON-RPC error, 200 for requests, 429 otherwise).
    fn refuse(
        &mut self,
        status: u16,
        retry_after: Option<u64>,
        body: &str,
        outcome: Outcome,
        reason: String,
    ) {
        self.mark_replied();
        self.trace.decision = Some(if outcome == Outcome::RateLimited {
            "limit"
        } else {
            "deny"
        });
        self.trace.reason = Some(reason);
        self.record(outcome, error_code(body), None, None);
        let retry = retry_after.map(|s| s.to_string());
        let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        if let Some(r) = retry.as_deref() {
            headers.push(("retry-after", r));
        }
        host::send_reply(status, &headers, body.as_bytes());
    }

    /// Rate limits for a request that is not a JSON-RPC call (GET stream, DELETE). False when
    /// answered (429).
    pub(crate) fn guard_http(&mut self) -> bool {
        let config = self.config.clone();
        let Some(limits) = config.limits.as_ref() else {
            return true;
        };
        let (subject, address) = self.caller_keys();
        let caller = Caller {
            subject: subject.as_deref(),
            client_address: address.as_deref(),
        };
        match limits.check_rate(&SharedData, &caller, &Target::default(), now_ms()) {
            RateDecision::Limited(l) => {
                self.stats.borrow_mut().limited(&l.rule, "rate");
                let reply = l.reply(ReplyTo::NotJsonRpc);
                self.refuse(
                    reply.status,
                    Some(reply.retry_after_seconds),
                    &reply.body,
                    Outcome::RateLimited,
                    l.rule.clone(),
                );
                false
            }
            RateDecision::Unchecked => {
                self.stats.borrow_mut().limited("_unchecked", "rate");
                true
            }
            RateDecision::Admitted => true,
        }
    }

    /// Everything a JSON-RPC message must pass before it goes upstream. False when the gateway
    /// answered it (refused, or served from the cache).
    pub(crate) fn guard_request(&mut self, info: &RequestInfo, body: &[u8]) -> bool {
        let config = self.config.clone();
        let method = info.method.as_deref();
        let (server, own) = match self.server_of(info) {
            Some((s, own)) => (Some(s), Some(own)),
            None => (None, info.name.clone()),
        };
        let tool = if method == Some("tools/call") {
            own.as_deref()
        } else {
            None
        };
        let target = Target {
            server: server.as_deref(),
            tool,
            method,
        };
        let id = info.id.as_deref();
        let now = now_ms();
        // Pinning and approval read the tool registry (one shared-data read).
        let state = match (tool, config.pinning.as_ref()) {
            (Some(t), Some(p)) => p.lookup(&SharedData, target.server, t).ok().flatten(),
            _ => None,
        };
        if let (Some(t), Some(p), Some(s)) = (tool, config.pinning.as_ref(), state.as_ref()) {
            if p.hides(&s.verdict) {
                self.stats
                    .borrow_mut()
                    .pin_refused(server.as_deref().unwrap_or("_none"));
                let name = info.name.as_deref().unwrap_or(t);
                let body = mcp_gateway_core::pinning::blocked_error_body(
                    id,
                    name,
                    target.server,
                    &s.verdict,
                );
                self.refuse(
                    200,
                    None,
                    &body,
                    Outcome::Denied,
                    "tool definition changed".into(),
                );
                return false;
            }
        }
        if let (Some(t), Some(a)) = (tool, config.approval.as_ref()) {
            let scopes: &[String] = self.identity.as_ref().map_or(&[], |i| &i.scopes);
            let flag = mcp_gateway_core::approval::approve_flag(body);
            let decision = a.decide(target.server, t, state.map(|s| s.hints), flag, scopes);
            if let mcp_gateway_core::approval::ApprovalDecision::Required { reason, missing } =
                decision
            {
                self.stats.borrow_mut().approval_required(reason.as_str());
                let name = info.name.as_deref().unwrap_or(t);
                let body = a.error_body(id, name, reason, missing);
                self.refuse(
                    200,
                    None,
                    &body,
                    Outcome::Denied,
                    "approval required".into(),
                );
                return false;
            }
        }
        if let Some(limits) = config.limits.as_ref() {
            let (subject, address) = self.caller_keys();
            let caller = Caller {
                subject: subject.as_deref(),
                client_address: address.as_deref(),
            };
            let reply_to = match id {
                Some(id) => ReplyTo::Request(id),
                None => ReplyTo::Notification,
            };
            let limited = match limits.check_rate(&SharedData, &caller, &target, now) {
                RateDecision::Limited(l) => Some((l, "rate")),
                RateDecision::Unchecked => {
                    self.stats.borrow_mut().limited("_unchecked", "rate");
                    None
                }
                RateDecision::Admitted => None,
            };
            let limited =
                limited.or_else(
                    || match limits.check_budget(&SharedData, &caller, &target, now) {
                        BudgetDecision::Exhausted(l) => Some((l, "budget")),
                        BudgetDecision::Unchecked | BudgetDecision::Admitted => None,
                    },
                );
            if let Some((l, kind)) = limited {
                self.stats.borrow_mut().limited(&l.rule, kind);
                let reply = l.reply(reply_to);
                self.refuse(
                    reply.status,
                    Some(reply.retry_after_seconds),
                    &reply.body,
                    Outcome::RateLimited,
                    l.rule.clone(),
                );
                return false;
            }
        }
        if let (Some(t), Some(cache)) = (tool, config.result_cache.as_ref()) {
            let scope_value = match &cache.scope {
                Scope::Global => Some(String::new()),
                Scope::Subject => self.identity.as_ref().map(|i| i.subject.clone()),
                Scope::Claim(c) => self
                    .identity
                    .as_ref()
                    .and_then(|i| i.claims.get(c))
                    .map(|v| match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }),
            };
            let version = self
                .head
                .protocol_version
                .clone()
                .or_else(|| info.meta_protocol_version.clone())
                .unwrap_or_default();
            let read_only = state.is_some_and(|s| s.hints.read_only);
            let key = cache.key(
                &CallFacts {
                    scope_value: scope_value.as_deref(),
                    server: target.server,
                    tool: t,
                    arguments: mcp_gateway_core::result_cache::call_arguments(body),
                    protocol_version: &version,
                },
                read_only,
            );
            if let Some(key) = key {
                if let Some(cached) = cache.lookup(&SharedData, &key, now) {
                    self.stats.borrow_mut().cache("hit");
                    let reply =
                        mcp_gateway_core::result_cache::hit_response(id.unwrap_or("null"), &cached);
                    let text = String::from_utf8_lossy(&reply).into_owned();
                    self.answer_from_cache(&text);
                    return false;
                }
                self.stats.borrow_mut().cache("miss");
                self.guard.cache_key = Some(key);
            }
        }
        true
    }

    /// After the final response of a forwarded call: store a cacheable result and charge the
    /// caller's budgets with what entered the model's context.
    pub(crate) fn guard_response(
        &mut self,
        outcome: Outcome,
        tokens: Option<u64>,
        result: Option<&[u8]>,
    ) {
        let config = self.config.clone();
        let now = now_ms();
        if let (Some(key), Some(cache), Some(result)) = (
            self.guard.cache_key.take(),
            config.result_cache.as_ref(),
            result,
        ) {
            if outcome == Outcome::Ok {
                let mut message = Vec::with_capacity(result.len() + 40);
                message.extend_from_slice(br#"{"jsonrpc":"2.0","id":0,"result":"#);
                message.extend_from_slice(result);
                message.push(b'}');
                if cache.store(&SharedData, &key, &message, now).is_err() {
                    self.stats.borrow_mut().cache("not_stored");
                }
            }
        }
        let Some(limits) = config.limits.as_ref() else {
            return;
        };
        if !matches!(outcome, Outcome::Ok | Outcome::ToolError) {
            return;
        }
        let Some(info) = self.info.clone() else {
            return;
        };
        let (server, own) = match self.server_of(&info) {
            Some((s, own)) => (Some(s), Some(own)),
            None => (None, info.name.clone()),
        };
        let method = info.method.as_deref();
        let target = Target {
            server: server.as_deref(),
            tool: if method == Some("tools/call") {
                own.as_deref()
            } else {
                None
            },
            method,
        };
        let (subject, address) = self.caller_keys();
        let caller = Caller {
            subject: subject.as_deref(),
            client_address: address.as_deref(),
        };
        let usage = Usage {
            tokens,
            bytes: self.guard.response_bytes,
        };
        let charged = limits.charge_budget(&SharedData, &caller, &target, usage, now);
        if charged.dropped > 0 {
            log::warn!(
                "{} token budget charge(s) lost to shared-data contention",
                charged.dropped
            );
        }
    }
}

/// The JSON-RPC error code in a reply body the gateway wrote, for the audit record.
fn error_code(body: &str) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Reply {
        error: Option<Code>,
    }
    #[derive(serde::Deserialize)]
    struct Code {
        code: i64,
    }
    serde_json::from_str::<Reply>(body)
        .ok()
        .and_then(|r| r.error)
        .map(|e| e.code)
}

fn now_ms() -> u64 {
    crate::federate::now_ms()
}

/// One tool of a list, for pinning: the name to hide it by, and its object with the server's own
/// name (fingerprints and config pins use the server's names, not the gateway's prefixes).
pub struct ListedTool {
    pub facing: String,
    pub object: String,
}

impl GatewayHttp {
    /// Records one server's tools in the registry and judges them; returns the names (as the
    /// client sees them) to hide. Counts and logs changes.
    fn pin_tools(&self, server: Option<&str>, tools: &[ListedTool]) -> Vec<String> {
        let Some(pinning) = self.config.pinning.as_ref() else {
            return Vec::new();
        };
        let hide = pinning.mode == mcp_gateway_core::pinning::PinMode::Hide;
        let label = server.unwrap_or("_none");
        let mut hidden = Vec::new();
        let mut sightings = Vec::with_capacity(tools.len());
        let mut facing = Vec::with_capacity(tools.len());
        for t in tools {
            match mcp_gateway_core::pinning::fingerprint_tool(&t.object) {
                Ok(s) => {
                    sightings.push(s);
                    facing.push(t.facing.as_str());
                }
                Err(e) => {
                    log::warn!("tool {} of {label} cannot be fingerprinted: {e}", t.facing);
                    if hide {
                        hidden.push(t.facing.clone());
                    }
                }
            }
        }
        let observed = pinning.observe(&SharedData, server, &sightings);
        let mut stats = self.stats.borrow_mut();
        for ((verdict, name), sighting) in observed.verdicts.iter().zip(facing).zip(&sightings) {
            if pinning.flags(verdict) {
                stats.pinning(label, "changed");
                if let mcp_gateway_core::pinning::PinVerdict::Changed { pinned, seen } = verdict {
                    log::warn!(
                        "tool {name} of {label} changed its definition: pinned {} now {} ({}); approve by pinning \"{}/{}\": \"{}\"",
                        pinned.to_hex(),
                        seen.to_hex(),
                        if hide { "hidden" } else { "flagged" },
                        label,
                        sighting.name,
                        seen.to_hex()
                    );
                }
            }
            match verdict {
                mcp_gateway_core::pinning::PinVerdict::Untracked => {
                    stats.pinning(label, "untracked")
                }
                mcp_gateway_core::pinning::PinVerdict::Unavailable => {
                    stats.pinning(label, "unavailable");
                }
                _ => {}
            }
            if pinning.hides(verdict) {
                hidden.push(name.to_owned());
            }
        }
        hidden
    }

    /// Pinning of a freshly merged tools/list (federation): each server's tools are judged under
    /// their own names; in `hide` mode the hidden ones leave the merged list. Returns the
    /// client-facing names hidden.
    pub(crate) fn pin_merged(
        &self,
        fed: &mcp_gateway_core::federation::Federation,
        merged: &mut mcp_gateway_core::federation::aggregate::MergedList,
    ) -> Vec<String> {
        if self.config.pinning.is_none() {
            return Vec::new();
        }
        let mut per_server: Vec<Vec<ListedTool>> = fed.servers.iter().map(|_| Vec::new()).collect();
        if let Some(tools) = merged.result.get("tools").and_then(|t| t.as_array()) {
            for tool in tools {
                let Some(name) = tool.get("name").and_then(|n| n.as_str()) else {
                    continue;
                };
                let Some((i, own)) = fed.split(name) else {
                    continue;
                };
                let mut object = tool.clone();
                if let Some(map) = object.as_object_mut() {
                    map.insert("name".into(), serde_json::Value::String(own.to_owned()));
                }
                if let Some(group) = per_server.get_mut(i) {
                    group.push(ListedTool {
                        facing: name.to_owned(),
                        object: object.to_string(),
                    });
                }
            }
        }
        let mut hidden = Vec::new();
        for (server, tools) in fed.servers.iter().zip(&per_server) {
            if !tools.is_empty() {
                hidden.extend(self.pin_tools(Some(&server.name), tools));
            }
        }
        if !hidden.is_empty() {
            if let Some(tools) = merged
                .result
                .get_mut("tools")
                .and_then(|t| t.as_array_mut())
            {
                retain_visible(tools, &hidden);
            }
            merged
                .owners
                .retain(|(n, _)| !hidden.iter().any(|h| h == n));
        }
        hidden
    }

    /// Pinning of a tools/list that passed through (no federation): judged and counted; hiding
    /// applies to calls (the list itself is not rewritten).
    pub(crate) fn pin_passthrough_list(&self, result: Option<&[u8]>) {
        if self.config.pinning.is_none() || self.config.federation.is_some() {
            return;
        }
        #[derive(serde::Deserialize)]
        struct List<'a> {
            #[serde(borrow, default)]
            tools: Vec<&'a serde_json::value::RawValue>,
        }
        let Some(list) = result.and_then(|r| serde_json::from_slice::<List<'_>>(r).ok()) else {
            return;
        };
        let tools: Vec<ListedTool> = list
            .tools
            .iter()
            .map(|raw| ListedTool {
                facing: String::new(),
                object: raw.get().to_owned(),
            })
            .collect();
        self.pin_tools(None, &tools);
    }
}

/// Removes `hidden` tools from a tools/list reply body the gateway is about to send.
pub fn drop_tools(body: &str, hidden: &[String]) -> Option<String> {
    if hidden.is_empty() {
        return None;
    }
    let mut reply: serde_json::Value = serde_json::from_str(body).ok()?;
    let tools = reply.get_mut("result")?.get_mut("tools")?.as_array_mut()?;
    retain_visible(tools, hidden);
    Some(reply.to_string())
}

/// JSON-RPC code of a message a guardrail blocked (outside the reserved range, like the others).
pub const GUARD_BLOCKED: i64 = -31451;

/// Redaction and injection screening of one tool call's result, as it streams or once buffered.
#[derive(Debug)]
pub struct ResultGuard {
    guard: mcp_gateway_core::guard::CallGuard,
    /// Streaming (redact/flag); `None` in buffered mode (a `block` action needs the whole message).
    stream: Option<mcp_gateway_core::guard::GuardStream>,
    /// One output buffer per request, reused for every chunk.
    out: Vec<u8>,
    findings: mcp_gateway_core::guard::Findings,
    /// The response is `text/event-stream` (buffered mode screens event by event).
    pub event_stream: bool,
}

impl ResultGuard {
    /// Whether the response must be buffered before it can be released (a finding may block it).
    pub fn buffered(&self) -> bool {
        self.stream.is_none()
    }
}

impl GatewayHttp {
    /// The guard for the current tools/call's `traffic`, if any applies.
    fn call_guard(
        &self,
        traffic: mcp_gateway_core::guard::Traffic,
    ) -> Option<mcp_gateway_core::guard::CallGuard> {
        let guards = self.config.guards.as_ref()?;
        let info = self.info.as_ref()?;
        if info.method.as_deref() != Some("tools/call") {
            return None;
        }
        let (server, tool) = match self.server_of(info) {
            Some((s, own)) => (s, own),
            None => (String::new(), info.name.clone()?),
        };
        guards.for_call(&server, &tool, traffic)
    }

    /// Redacts (or blocks) a tools/call's arguments before they go upstream. `Err` when the
    /// gateway answered (blocked); `Ok(Some(body))` when the body changed.
    pub(crate) fn guard_arguments(&mut self, body: &[u8]) -> Result<Option<Vec<u8>>, ()> {
        let Some(guard) = self.call_guard(mcp_gateway_core::guard::Traffic::Arguments) else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(body.len());
        let findings = guard.apply(body, &mut out);
        self.count_findings(&guard, &findings);
        if findings.blocked() {
            let body = blocked_body(self.request_id.as_deref(), &findings, "arguments");
            self.refuse(
                200,
                None,
                &body,
                Outcome::Denied,
                "guardrail: arguments".into(),
            );
            return Err(());
        }
        Ok((out != body).then_some(out))
    }

    /// At the response headers of a tools/call: sets up result screening when a guard applies.
    /// Returns whether the response body will change (the caller drops `content-length`).
    pub(crate) fn start_result_guard(&mut self, event_stream: bool) -> bool {
        let Some(guard) = self.call_guard(mcp_gateway_core::guard::Traffic::Result) else {
            return false;
        };
        let stream =
            (!guard.can_block()).then(|| guard.stream(mcp_gateway_core::guard::Mode::Json));
        self.result_guard = Some(ResultGuard {
            guard,
            stream,
            out: Vec::new(),
            findings: mcp_gateway_core::guard::Findings::default(),
            event_stream,
        });
        true
    }

    /// Sends one response chunk on: through the streaming result guard when there is one (its
    /// output buffer is reused for every chunk), as it is otherwise; the observer sees what the
    /// client gets.
    pub(crate) fn emit_guarded(&mut self, chunk: &[u8], end_of_stream: bool, body_size: usize) {
        let Some(g) = self.result_guard.as_mut() else {
            return self.emit(chunk, body_size);
        };
        let Some(stream) = g.stream.as_mut() else {
            return self.emit(chunk, body_size);
        };
        let mut out = std::mem::take(&mut g.out);
        out.clear();
        stream.feed(chunk, &mut out);
        if end_of_stream {
            stream.finish(&mut out);
            g.findings.merge(stream.findings());
        }
        self.emit(&out, body_size);
        if let Some(g) = self.result_guard.as_mut() {
            g.out = out;
        }
    }

    /// Replaces the current response chunk with `bytes` and shows them to the observer.
    pub(crate) fn emit(&mut self, bytes: &[u8], body_size: usize) {
        host::replace_response_body(body_size, bytes);
        if let Some(o) = self.observer.as_mut() {
            o.feed(bytes);
        }
    }

    /// The whole response (buffered mode): redacts, and replaces a blocked result by an error.
    pub(crate) fn guard_whole(&mut self, body: &[u8], event_stream: bool) -> Vec<u8> {
        let Some(g) = self.result_guard.as_mut() else {
            return body.to_vec();
        };
        let guard = g.guard;
        let id = self.request_id.clone();
        let mut findings = mcp_gateway_core::guard::Findings::default();
        let mut judge = |data: &[u8]| -> Option<Vec<u8>> {
            let mut out = Vec::with_capacity(data.len());
            let f = guard.apply(data, &mut out);
            findings.merge(&f);
            if f.blocked() && is_final_response(data) {
                return Some(blocked_body(id.as_deref(), &f, "result").into_bytes());
            }
            (out != data).then_some(out)
        };
        let out = if event_stream {
            mcp_gateway_core::sse::rewrite_buffered(body, judge)
        } else {
            judge(body).unwrap_or_else(|| body.to_vec())
        };
        g.findings.merge(&findings);
        out
    }

    /// Counts what the result guard found (at the end of the response); true if it blocked the
    /// result.
    pub(crate) fn finish_result_guard(&mut self) -> bool {
        let Some(mut g) = self.result_guard.take() else {
            return false;
        };
        if let Some(stream) = g.stream.as_ref() {
            // A stream cut short never reached `finish`: count what it found so far.
            if g.findings.is_empty() {
                g.findings.merge(stream.findings());
            }
        }
        let blocked = g.findings.blocked();
        if blocked {
            self.trace.decision = Some("deny");
            self.trace.reason = Some("guardrail: result".into());
        }
        self.count_findings(&g.guard, &g.findings);
        blocked
    }

    fn count_findings(
        &self,
        guard: &mcp_gateway_core::guard::CallGuard,
        findings: &mcp_gateway_core::guard::Findings,
    ) {
        if findings.is_empty() {
            return;
        }
        let mut stats = self.stats.borrow_mut();
        for (detector, n) in findings.iter() {
            let action = guard.action(detector).map_or("flag", |a| a.as_str());
            for _ in 0..n {
                stats.guard_finding(detector.id(), action);
            }
        }
    }

    /// Screens tool descriptions of a merged tools/list: findings are counted; `redact` rewrites
    /// the description, `block` hides the tool. Returns whether the list changed.
    pub(crate) fn screen_descriptions(
        &self,
        fed: &mcp_gateway_core::federation::Federation,
        merged: &mut mcp_gateway_core::federation::aggregate::MergedList,
    ) -> bool {
        let Some(guards) = self.config.guards.as_ref() else {
            return false;
        };
        let mut hidden: Vec<String> = Vec::new();
        let mut changed = false;
        let Some(tools) = merged
            .result
            .get_mut("tools")
            .and_then(|t| t.as_array_mut())
        else {
            return false;
        };
        for tool in tools.iter_mut() {
            let Some(name) = tool.get("name").and_then(|n| n.as_str()).map(str::to_owned) else {
                continue;
            };
            let Some((i, own)) = fed.split(&name) else {
                continue;
            };
            let Some(server) = fed.servers.get(i) else {
                continue;
            };
            let Some(guard) = guards.for_call(
                &server.name,
                own,
                mcp_gateway_core::guard::Traffic::Description,
            ) else {
                continue;
            };
            let Some(description) = tool.get("description").and_then(|d| d.as_str()) else {
                continue;
            };
            let mut stream = guard.stream(mcp_gateway_core::guard::Mode::Text);
            let mut out = Vec::with_capacity(description.len());
            stream.feed(description.as_bytes(), &mut out);
            stream.finish(&mut out);
            let findings = stream.into_findings();
            if findings.is_empty() {
                continue;
            }
            self.count_findings(&guard, &findings);
            log::warn!(
                "tool {name} of {}: its description matched injection rules ({}){}",
                server.name,
                findings
                    .iter()
                    .map(|(d, n)| format!("{}×{n}", d.id()))
                    .collect::<Vec<_>>()
                    .join(", "),
                if findings.blocked() { "; hidden" } else { "" }
            );
            if findings.blocked() {
                hidden.push(name);
            } else if out != description.as_bytes() {
                if let (Some(map), Ok(text)) = (tool.as_object_mut(), String::from_utf8(out)) {
                    map.insert("description".into(), serde_json::Value::String(text));
                    changed = true;
                }
            }
        }
        if !hidden.is_empty() {
            retain_visible(tools, &hidden);
            merged
                .owners
                .retain(|(n, _)| !hidden.iter().any(|h| h == n));
        }
        changed || !hidden.is_empty()
    }
}

/// A tools/list reply body with its tools replaced by the (screened) merged list's.
pub fn replace_tools(
    body: &str,
    merged: &mcp_gateway_core::federation::aggregate::MergedList,
) -> Option<String> {
    let mut reply: serde_json::Value = serde_json::from_str(body).ok()?;
    let tools = merged.result.get("tools")?.clone();
    *reply.get_mut("result")?.get_mut("tools")? = tools;
    Some(reply.to_string())
}

/// Whether an SSE event's data (or a JSON body) is the final response (not a notification).
fn is_final_response(data: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        method: Option<serde::de::IgnoredAny>,
        id: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Probe>(data).is_ok_and(|p| p.method.is_none() && p.id.is_some())
}

/// The JSON-RPC error that replaces a message a guardrail blocked.
fn blocked_body(
    id: Option<&str>,
    findings: &mcp_gateway_core::guard::Findings,
    what: &str,
) -> String {
    let mut data = String::from("{\"findings\":{");
    for (i, (d, n)) in findings.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        mcp_gateway_core::jsonrpc::push_json_string(&mut data, d.id());
        data.push(':');
        data.push_str(&n.to_string());
    }
    data.push_str("}}");
    mcp_gateway_core::jsonrpc::error_body(
        id,
        GUARD_BLOCKED,
        &format!(
            "Blocked by the gateway's guardrails: the tool call {what} matched a blocking rule"
        ),
        Some(&data),
    )
}

/// Drops the tools whose name is in `hidden` from a list's `tools` array.
fn retain_visible(tools: &mut Vec<serde_json::Value>, hidden: &[String]) {
    tools.retain(|t| {
        !t.get("name")
            .and_then(|n| n.as_str())
            .is_some_and(|n| hidden.iter().any(|h| h == n))
    });
}
