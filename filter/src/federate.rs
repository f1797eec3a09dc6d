//! Federation glue: dispatches the core's fan-out calls, applies its routes, and answers.

use std::time::Duration;

use mcp_gateway_core::federation::aggregate::ListKind;
use mcp_gateway_core::federation::fanout::{self, Callout, CalloutReply, FanOut, Finished};
use mcp_gateway_core::federation::plan::{self, Plan, Route};
use mcp_gateway_core::federation::session::SessionState;
use mcp_gateway_core::federation::Federation;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

use crate::cache::Owned;
use crate::host;
use crate::http::GatewayHttp;

/// A fan-out in flight for this stream.
pub struct Work {
    pub fan: FanOut,
    /// Host call tokens and the fan-out's keys for them.
    pub tokens: Vec<(u32, usize)>,
    /// What to do when the fan-out is done.
    pub after: After,
}

/// The continuation of a fan-out.
pub enum After {
    /// Answer the client with the fan-out's reply.
    Reply,
    /// The list is cached now: plan the paused request again with this session (`NeedList`).
    Replan(SessionState),
    /// The gateway's own upstream sessions are ready: share them, then plan the paused request.
    Prepared,
}

/// How long prepared upstream sessions are shared: long when every server took part, short when
/// some failed, so a recovered server is probed again soon.
const OWNED_TTL_MS: u64 = 3_600_000;
const OWNED_PARTIAL_TTL_MS: u64 = 15_000;

impl Work {
    /// Dispatches calls. A call the host refuses (e.g. an unknown cluster) is answered at once as
    /// "no answer", and whatever follow-up that yields (a failed probe leads to an `initialize`)
    /// is dispatched too, so nothing stays pending and the client is never left hanging.
    fn dispatch(&mut self, fed: &Federation, calls: Vec<Callout>) {
        let mut queue = calls;
        while let Some(call) = queue.pop() {
            let headers: Vec<(&str, &str)> = call
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let body = (!call.body.is_empty()).then_some(call.body.as_slice());
            match hostcalls::dispatch_http_call(
                &call.cluster,
                headers,
                body,
                Vec::new(),
                Duration::from_millis(call.timeout_ms),
            ) {
                Ok(token) => self.tokens.push((token, call.key)),
                Err(status) => {
                    log::warn!("could not call cluster {}: {status:?}", call.cluster);
                    queue.extend(self.fan.on_reply(fed, call.key, no_answer()));
                }
            }
        }
    }
}

/// What the request path should return to Envoy.
pub enum Next {
    /// Forward (headers and body already adjusted).
    Continue,
    /// Wait: a local reply was sent, or callouts are in flight.
    Pause,
}

/// Milliseconds since the epoch, from the host clock.
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The list kinds a method's plan may consult, refreshed from shared data before planning.
fn kinds_for(method: &str, fed: &Federation) -> &'static [ListKind] {
    match method {
        "tools/list" => &[ListKind::Tools],
        "prompts/list" => &[ListKind::Prompts],
        "resources/list" => &[ListKind::Resources],
        "resources/templates/list" => &[ListKind::ResourceTemplates],
        // Prefixed names are checked against the merged list too, when lists are cached.
        "tools/call" if !fed.prefix_names || fed.list_cache_ttl_ms > 0 => &[ListKind::Tools],
        "prompts/get" if !fed.prefix_names || fed.list_cache_ttl_ms > 0 => &[ListKind::Prompts],
        "resources/read"
        | "resources/subscribe"
        | "resources/unsubscribe"
        | "completion/complete" => &[
            ListKind::Resources,
            ListKind::ResourceTemplates,
            ListKind::Prompts,
        ],
        _ => &[],
    }
}

/// Resumes a request paused in the body phase. The SDK's `resume_http_request` panics on an
/// unexpected status (e.g. the stream is already gone); this reports it instead.
fn resume_request() {
    extern "C" {
        fn proxy_continue_stream(stream_type: u32) -> u32;
    }
    // SAFETY: a host import with plain integer arguments; 0 is the request stream.
    let status = unsafe { proxy_continue_stream(0) };
    if status != 0 {
        log::warn!("could not resume request: host status {status}");
    }
}

impl GatewayHttp {
    /// Plans an accepted POST under federation and starts carrying the plan out.
    pub fn federate(&mut self, fed: &Federation, body: &[u8]) -> Next {
        let Some(codec) = self.config.sessions.clone() else {
            return Next::Continue;
        };
        let info = self.info.clone().unwrap_or_else(empty_info);
        if self.client_is_stateless() {
            return self.federate_stateless(fed, &info, body);
        }
        let session = match plan::open_session(&codec, &self.head, &info) {
            Ok(session) => session,
            Err(answer) => return self.carry_out(fed, *answer, body),
        };
        // A session belongs to the caller that opened it: presented by anyone else, it is
        // unknown (404), whatever the id looks like.
        if let Some(state) = &session {
            let caller = self.identity.as_ref().map(|i| i.subject.as_str());
            if state.principal.as_deref() != caller {
                let reply = mcp_gateway_core::jsonrpc::error_body(
                    info.id.as_deref(),
                    -32600,
                    "Session not found: re-initialize",
                    None,
                );
                self.local_answer(404, &reply, None);
                return Next::Pause;
            }
        }
        let now = now_ms();
        let plan = {
            let mut cache = self.cache.borrow_mut();
            cache.set_scope(session.as_ref().map_or("", |s| s.scope.as_str()));
            for kind in kinds_for(self.info_method(), fed) {
                cache.refresh(*kind, now);
            }
            plan::plan(fed, session, &info, body, &*cache)
        };
        self.carry_out(fed, plan, body)
    }

    /// A 2026-07-28 client: no session of its own; the gateway's own upstream sessions serve it.
    pub(crate) fn client_is_stateless(&self) -> bool {
        self.head
            .protocol_version
            .as_deref()
            .is_some_and(mcp_gateway_core::protocol::is_stateless)
    }

    fn federate_stateless(
        &mut self,
        fed: &Federation,
        info: &mcp_gateway_core::jsonrpc::RequestInfo,
        body: &[u8],
    ) -> Next {
        let now = now_ms();
        let owned = self.cache.borrow_mut().owned(now);
        let Some(owned) = owned else {
            self.pending_body = Some(body.to_vec());
            return self.start_fanout(fed, FanOut::prepare(fed.servers.len()), After::Prepared);
        };
        self.serve_stateless(fed, info, body, owned, now)
    }

    fn serve_stateless(
        &mut self,
        fed: &Federation,
        info: &mcp_gateway_core::jsonrpc::RequestInfo,
        body: &[u8],
        owned: Owned,
        now: u64,
    ) -> Next {
        if info.method.as_deref() == Some("server/discover") {
            let reply = mcp_gateway_core::federation::fanout::result_reply(
                info.id.as_deref(),
                &owned.discover,
            );
            self.local_answer(200, &reply, None);
            return Next::Pause;
        }
        let plan = {
            let mut cache = self.cache.borrow_mut();
            cache.set_scope(&owned.state.scope);
            for kind in kinds_for(self.info_method(), fed) {
                cache.refresh(*kind, now);
            }
            plan::plan(fed, Some(owned.state), info, body, &*cache)
        };
        self.carry_out(fed, plan, body)
    }

    fn info_method(&self) -> &str {
        self.info
            .as_ref()
            .and_then(|i| i.method.as_deref())
            .unwrap_or_default()
    }

    fn carry_out(&mut self, fed: &Federation, plan: Plan, body: &[u8]) -> Next {
        match plan {
            Plan::Route(route) => {
                self.apply_route(fed, &route, body);
                Next::Continue
            }
            Plan::Reply { status, body } => {
                let id = self.info.as_ref().and_then(|i| i.id.as_deref());
                let known = status == 200 && fanout::is_result_reply(id, &body);
                match self.filter_listing(Some(fed), &body) {
                    Some(filtered) if filtered != body => {
                        self.local_answer(status, &filtered, None)
                    }
                    _ if known => {
                        let tokens = self.cached_list_tokens(&body);
                        self.local_result(&body, tokens);
                    }
                    _ => self.local_answer(status, &body, None),
                }
                Next::Pause
            }
            Plan::FanOut(fan) => self.start_fanout(fed, fan, After::Reply),
            Plan::NeedList(kind, session) => {
                let fan = FanOut::list(kind, None, session.clone(), fed.servers.len());
                self.pending_body = Some(body.to_vec());
                self.start_fanout(fed, fan, After::Replan(session))
            }
        }
    }

    /// Tokens of the cached tools list this reply serves, when telemetry counts them: counted
    /// once per cached version, not on every tools/list.
    fn cached_list_tokens(&self, body: &str) -> Option<u64> {
        let tel = &self.config.telemetry;
        let counting = tel.tokens.filter(|_| tel.enabled)?;
        if self.info_method() != "tools/list" {
            return None;
        }
        self.cache.borrow().list_tokens(ListKind::Tools, || {
            counting.count_tools_list(body.as_bytes())
        })
    }

    /// DELETE of a gateway session: end every upstream session.
    pub fn federate_delete(&mut self, fed: &Federation) -> Next {
        let state = self
            .head
            .session_id
            .as_deref()
            .and_then(|id| self.config.sessions.as_ref().map(|c| c.open(id)));
        match state {
            Some(Ok(session)) => self.start_fanout(fed, FanOut::delete(session), After::Reply),
            _ => {
                let body =
                    mcp_gateway_core::jsonrpc::error_body(None, -32600, "Session not found", None);
                self.local_answer(404, &body, None);
                Next::Pause
            }
        }
    }

    fn apply_route(&mut self, fed: &Federation, route: &Route, body: &[u8]) {
        host::set_request_header(&fed.cluster_header, Some(&route.cluster));
        if !self.head.path.starts_with(route.path.as_str())
            || self.head.path.len() != route.path.len()
        {
            host::set_request_header(":path", Some(&route.path));
        }
        host::set_request_header("mcp-session-id", route.session_id.as_deref());
        if let Some(v) = route.version.as_deref() {
            host::set_request_header("mcp-protocol-version", Some(v));
        }
        // Mirrored headers must match what the upstream reads in the body: the stripped name for
        // a stateless upstream; a session-based one gets none.
        if route.stateless {
            if let Some(own) = route.upstream_name.as_deref() {
                let value = mcp_gateway_core::protocol::encode_header_value(own);
                host::set_request_header("mcp-name", Some(&value));
            }
        } else if self.head.mcp_method.is_some() || self.head.mcp_name.is_some() {
            host::set_request_header("mcp-method", None);
            host::set_request_header("mcp-name", None);
        }
        self.owned_route = self.client_is_stateless() && !route.stateless;
        if let Some(new_body) = &route.body {
            host::replace_request_body(body.len(), new_body);
            host::set_request_header("content-length", Some(&new_body.len().to_string()));
        }
        if let Some(c) = fed
            .servers
            .get(route.server)
            .and_then(|s| s.credential.as_ref())
        {
            host::set_request_header(&c.header, Some(&c.value));
        }
        self.route_server = fed.servers.get(route.server).map(|s| s.name.clone());
    }

    fn start_fanout(&mut self, fed: &Federation, mut fan: FanOut, after: After) -> Next {
        let calls = fan.start(fed);
        let mut work = Work {
            fan,
            tokens: Vec::new(),
            after,
        };
        work.dispatch(fed, calls);
        self.work = Some(work);
        self.maybe_finish(fed)
    }

    /// One callout answered (or failed: no headers).
    pub fn on_callout(&mut self, fed: &Federation, token: u32, body_size: usize) {
        let Some(work) = self.work.as_mut() else {
            return;
        };
        let Some(pos) = work.tokens.iter().position(|(t, _)| *t == token) else {
            return;
        };
        let (_, key) = work.tokens.swap_remove(pos);
        let status = host::map_value(MapType::HttpCallResponseHeaders, ":status")
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        let content_type = host::map_value(MapType::HttpCallResponseHeaders, "content-type");
        let session_id = host::map_value(MapType::HttpCallResponseHeaders, "mcp-session-id");
        let body = if body_size > 0 {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let reply = CalloutReply {
            status,
            content_type: content_type.as_deref(),
            session_id: session_id.as_deref(),
            body: &body,
        };
        let follow = work.fan.on_reply(fed, key, reply);
        work.dispatch(fed, follow);
        if let Next::Continue = self.maybe_finish(fed) {
            resume_request();
        }
    }

    /// Finishes the fan-out if nothing is pending.
    fn maybe_finish(&mut self, fed: &Federation) -> Next {
        if self.work.as_ref().is_some_and(|w| w.fan.pending() > 0) {
            return Next::Pause;
        }
        let Some(work) = self.work.take() else {
            return Next::Pause;
        };
        let finished = work.fan.finish(fed);
        self.after_fanout(fed, finished, work.after)
    }

    fn after_fanout(&mut self, fed: &Federation, mut done: Finished, after: After) -> Next {
        if let Some((mcp_gateway_core::federation::aggregate::ListKind::Tools, merged)) =
            &mut done.merged
        {
            // Changed tools leave the list before it is cached or served (pinning, hide mode);
            // then descriptions are screened for injected instructions.
            let hidden = self.pin_merged(fed, merged);
            let screened = self.screen_descriptions(fed, merged);
            if screened {
                if let Some(body) = crate::guardrails::replace_tools(&done.body, merged) {
                    done.body = body;
                }
            } else if let Some(body) = crate::guardrails::drop_tools(&done.body, &hidden) {
                done.body = body;
            }
        }
        for (server, why) in &done.failures {
            log::warn!("upstream MCP server {server} failed: {why}");
            self.stats.borrow_mut().upstream_failure(fed, server);
        }
        if let Some((kind, merged)) = &done.merged {
            if !merged.ambiguous.is_empty() {
                log::warn!(
                    "{} names offered by more than one server were dropped: {:?}",
                    merged.ambiguous.len(),
                    merged.ambiguous
                );
            }
            self.note_catalogue(fed, *kind, merged);
            // Only a complete view is shared: a list missing a failed server would hide its
            // tools from everyone for the whole TTL after it recovers.
            if done.cacheable {
                self.cache
                    .borrow_mut()
                    .store(*kind, merged, fed.list_cache_ttl_ms, now_ms());
            }
        }
        if let After::Prepared = after {
            let body = self.pending_body.take().unwrap_or_default();
            let (Some(state), Some(discover)) = (&done.new_session, &done.discover) else {
                self.local_answer(done.status, &done.body, None);
                return Next::Pause;
            };
            let ttl = if done.failures.is_empty() {
                OWNED_TTL_MS
            } else {
                OWNED_PARTIAL_TTL_MS
            };
            let now = now_ms();
            self.cache
                .borrow_mut()
                .store_owned(state, discover, ttl, now);
            let info = self.info.clone().unwrap_or_else(empty_info);
            let owned = Owned {
                state: state.clone(),
                discover: std::rc::Rc::from(discover.as_str()),
            };
            return self.serve_stateless(fed, &info, &body, owned, now);
        }
        if let After::Replan(session) = after {
            let body = self.pending_body.take().unwrap_or_default();
            if done.status != 200 {
                self.local_answer(done.status, &done.body, None);
                return Next::Pause;
            }
            // The list is cached now (or failed to merge): plan the original request again.
            let info = self.info.clone().unwrap_or_else(empty_info);
            let plan = {
                let mut cache = self.cache.borrow_mut();
                // A list that was not shared (incomplete, or caching off) still routes this
                // request: keep it for an instant, long enough to plan.
                if !done.cacheable || fed.list_cache_ttl_ms == 0 {
                    if let Some((kind, merged)) = &done.merged {
                        cache.store(*kind, merged, 1, now_ms());
                    }
                }
                plan::plan(fed, Some(session), &info, &body, &*cache)
            };
            return match plan {
                // Never loop: a second NeedList means the list could not be had.
                Plan::NeedList(..) => {
                    let body = mcp_gateway_core::jsonrpc::error_body(
                        info.id.as_deref(),
                        -32603,
                        "Upstream MCP servers unavailable: could not list their names",
                        None,
                    );
                    self.local_answer(200, &body, None);
                    Next::Pause
                }
                other => self.carry_out(fed, other, &body),
            };
        }
        let session = done.new_session.map(|mut state| {
            state.principal = self.identity.as_ref().map(|i| i.subject.clone());
            state
        });
        let session = session.as_ref().and_then(|s| self.seal(s));
        let body = self
            .filter_listing(Some(fed), &done.body)
            .unwrap_or(done.body);
        self.local_answer(done.status, &body, session.as_deref());
        Next::Pause
    }

    fn seal(&self, session: &SessionState) -> Option<String> {
        let mut nonce = [0u8; 24];
        if let Err(e) = getrandom::getrandom(&mut nonce) {
            log::error!("no randomness for a session nonce: {e}");
            return None;
        }
        let codec = self.config.sessions.as_ref()?;
        match codec.seal(session, nonce) {
            Ok(id) => Some(id),
            Err(e) => {
                log::error!("could not seal session: {e}");
                None
            }
        }
    }
}

fn no_answer() -> CalloutReply<'static> {
    CalloutReply {
        status: 0,
        content_type: None,
        session_id: None,
        body: &[],
    }
}

fn empty_info() -> mcp_gateway_core::jsonrpc::RequestInfo {
    mcp_gateway_core::jsonrpc::RequestInfo {
        kind: mcp_gateway_core::jsonrpc::MessageKind::Notification,
        method: None,
        id: None,
        name: None,
        uri: None,
        progress_token: None,
        meta_protocol_version: None,
    }
}
