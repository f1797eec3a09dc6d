//! The gateway's own calls to upstream servers, and turning their answers into one reply.
//!
//! A [`FanOut`] is a small state machine the glue drives: [`FanOut::start`] yields the calls to
//! dispatch (Envoy `dispatch_http_call`), each answer goes to [`FanOut::on_reply`] (which may yield
//! follow-up calls, e.g. the next page of a list), and once nothing is pending
//! [`FanOut::finish`] gives the local reply, a new session to seal, and lists to cache.
//! A server that fails (down, timeout, garbage) is left out of the merge and reported; it never
//! fails the whole request unless every server failed.

use serde_json::Value;

use crate::federation::aggregate::{
    merge_discover, merge_initialize, negotiate_version, InitPart, ListAccumulator, ListKind,
    MergedList, MAX_PAGES,
};
use crate::federation::config::Federation;
use crate::federation::session::{SessionState, UpstreamSession};
use crate::federation::upstream::{read_result, UpstreamFailure};
use crate::jsonrpc::{self, code, push_json_string};

/// One HTTP call to an upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    /// Handed back with the answer.
    pub key: usize,
    pub server: usize,
    pub cluster: String,
    /// Pseudo-headers (`:method`, `:path`, `:authority`) and headers.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

/// An upstream's answer as the glue read it. `status` 0: no answer (connect failure, timeout).
#[derive(Debug, Clone, Copy)]
pub struct CalloutReply<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub body: &'a [u8],
}

/// What a finished fan-out tells the glue to do.
#[derive(Debug)]
pub struct Finished {
    pub status: u16,
    /// JSON body of the local reply (empty for 202).
    pub body: String,
    /// A new gateway session to seal and return in `Mcp-Session-Id`.
    pub new_session: Option<SessionState>,
    /// The merged list, for routing the request that needed it.
    pub merged: Option<(ListKind, MergedList)>,
    /// Whether `merged` is complete (every server answered) and may be cached for others.
    pub cacheable: bool,
    /// Servers that failed, with why: for logs and counters.
    pub failures: Vec<(String, String)>,
    /// After `prepare`: the merged `server/discover` result for stateless clients.
    pub discover: Option<String>,
}

#[derive(Debug)]
enum Job {
    Initialize {
        version: String,
        scope: String,
        results: Vec<Option<(Value, Option<String>)>>,
    },
    List {
        kind: ListKind,
        acc: ListAccumulator,
        pages: Vec<usize>,
    },
    /// Notifications (and setLevel) sent to every server; the answer doesn't depend on theirs.
    Broadcast { reply_result: Option<&'static str> },
    /// DELETE of the session at every server.
    Delete,
    /// The gateway's own upstream sessions for stateless (2026-07-28) clients: each server is
    /// probed with `server/discover`; one that answers is used statelessly, any other gets an
    /// `initialize` + `notifications/initialized` of the gateway's own.
    Prepare {
        results: Vec<Option<(Value, UpstreamSession)>>,
    },
}

/// Which step of [`Job::Prepare`] a call is.
#[derive(Debug, Clone)]
enum Step {
    Plain,
    Discover,
    Initialize,
    Initialized {
        result: Value,
        session: UpstreamSession,
    },
}

/// The revision the gateway speaks to upstreams on behalf of stateless clients.
const MODERN: &str = crate::protocol::FIRST_STATELESS;
/// The revision of the gateway's own sessions with servers that are not stateless.
const LEGACY: &str = "2025-11-25";

/// `_meta` every stateless request carries: the version and the (empty) client capabilities.
fn modern_meta() -> String {
    format!(
        "{{\"io.modelcontextprotocol/protocolVersion\":\"{MODERN}\",\"io.modelcontextprotocol/clientCapabilities\":{{}},\"io.modelcontextprotocol/clientInfo\":{{\"name\":\"mcp-gateway-wasm\",\"version\":\"{}\"}}}}",
        env!("CARGO_PKG_VERSION")
    )
}

/// Params for a list call: the cursor, and for stateless upstreams the `_meta` envelope.
fn list_params(cursor: Option<&str>, stateless: bool) -> String {
    let mut out = String::from("{");
    if let Some(c) = cursor {
        out.push_str("\"cursor\":");
        push_json_string(&mut out, c);
    }
    if stateless {
        if cursor.is_some() {
            out.push(',');
        }
        out.push_str("\"_meta\":");
        out.push_str(&modern_meta());
    }
    out.push('}');
    out
}

#[derive(Debug)]
pub struct FanOut {
    job: Job,
    request_id: Option<String>,
    session: Option<SessionState>,
    /// Raw JSON of the client's `params` (initialize, broadcast) to pass on.
    params: String,
    method: String,
    calls: Vec<usize>,
    next_key: usize,
    pending: usize,
    failures: Vec<(usize, UpstreamFailure)>,
    session_lost: bool,
    /// Per call key: its step (only [`Job::Prepare`] has more than one).
    steps: Vec<Step>,
}

fn request_body(method: &str, params: &str, id: Option<u64>) -> Vec<u8> {
    let mut out = String::with_capacity(64 + method.len() + params.len());
    out.push_str("{\"jsonrpc\":\"2.0\",");
    if let Some(id) = id {
        out.push_str("\"id\":");
        out.push_str(&id.to_string());
        out.push(',');
    }
    out.push_str("\"method\":");
    push_json_string(&mut out, method);
    if !params.is_empty() {
        out.push_str(",\"params\":");
        out.push_str(params);
    }
    out.push('}');
    out.into_bytes()
}

impl FanOut {
    /// `initialize`: every configured server, with the client's params.
    pub fn initialize(
        request_id: Option<String>,
        requested_version: Option<&str>,
        params: String,
        scope: String,
        servers: usize,
    ) -> FanOut {
        FanOut::new(
            Job::Initialize {
                version: negotiate_version(requested_version).to_owned(),
                scope,
                results: vec![None; servers],
            },
            request_id,
            None,
            params,
            "initialize",
        )
    }

    /// A list method over the servers of `session` (all servers for stateless upstreams).
    pub fn list(
        kind: ListKind,
        request_id: Option<String>,
        session: SessionState,
        servers: usize,
    ) -> FanOut {
        FanOut::new(
            Job::List {
                kind,
                acc: ListAccumulator::new(kind, servers),
                pages: vec![0; servers],
            },
            request_id,
            Some(session),
            String::new(),
            kind.method(),
        )
    }

    /// A message for every server of the session. Requests (`logging/setLevel`) are answered with
    /// an empty result; notifications with 202.
    pub fn broadcast(
        method: &str,
        request_id: Option<String>,
        session: SessionState,
        params: String,
    ) -> FanOut {
        let reply_result = request_id.is_some().then_some("{}");
        FanOut::new(
            Job::Broadcast { reply_result },
            request_id,
            Some(session),
            params,
            method,
        )
    }

    /// The gateway's own upstream sessions for stateless clients (see [`Job::Prepare`]).
    pub fn prepare(servers: usize) -> FanOut {
        FanOut::new(
            Job::Prepare {
                results: vec![None; servers],
            },
            None,
            None,
            String::new(),
            "server/discover",
        )
    }

    /// DELETE of a gateway session: ends every upstream session it carries.
    pub fn delete(session: SessionState) -> FanOut {
        FanOut::new(Job::Delete, None, Some(session), String::new(), "")
    }

    fn new(
        job: Job,
        request_id: Option<String>,
        session: Option<SessionState>,
        params: String,
        method: &str,
    ) -> FanOut {
        FanOut {
            job,
            request_id,
            session,
            params,
            method: method.to_owned(),
            calls: Vec::new(),
            next_key: 0,
            pending: 0,
            failures: Vec::new(),
            session_lost: false,
            steps: Vec::new(),
        }
    }

    pub fn pending(&self) -> usize {
        self.pending
    }

    fn stateless(&self, fed: &Federation, server: usize) -> bool {
        let (Some(session), Some(s)) = (&self.session, fed.servers.get(server)) else {
            return false;
        };
        session
            .upstream(&s.name)
            .and_then(|u| u.version.as_deref())
            .is_some_and(crate::protocol::is_stateless)
    }

    fn callout(
        &mut self,
        fed: &Federation,
        server: usize,
        body: Vec<u8>,
        step: Step,
    ) -> Option<Callout> {
        let s = fed.servers.get(server)?;
        let verb = if matches!(self.job, Job::Delete) {
            "DELETE"
        } else {
            "POST"
        };
        let mut headers = vec![
            (":method".to_owned(), verb.to_owned()),
            (":path".to_owned(), s.path.clone()),
            (":authority".to_owned(), s.authority.clone()),
            ("content-type".to_owned(), "application/json".to_owned()),
            (
                "accept".to_owned(),
                "application/json, text/event-stream".to_owned(),
            ),
        ];
        if let Some(c) = &s.credential {
            headers.push((c.header.clone(), c.value.clone()));
        }
        let mut header = |k: &str, v: &str| headers.push((k.to_owned(), v.to_owned()));
        match (&step, &self.job, &self.session) {
            (Step::Discover, _, _) => {
                header("mcp-protocol-version", MODERN);
                header("mcp-method", "server/discover");
            }
            (Step::Initialize, _, _) => header("mcp-protocol-version", LEGACY),
            (Step::Initialized { session, .. }, _, _) => {
                if let Some(id) = &session.session_id {
                    header("mcp-session-id", id);
                }
                if let Some(v) = &session.version {
                    header("mcp-protocol-version", v);
                }
            }
            (Step::Plain, Job::Initialize { version, .. }, _) => {
                header("mcp-protocol-version", version);
            }
            (Step::Plain, _, Some(session)) => {
                if let Some(up) = session.upstream(&s.name) {
                    if let Some(id) = &up.session_id {
                        header("mcp-session-id", id);
                    }
                    if let Some(v) = &up.version {
                        header("mcp-protocol-version", v);
                        if crate::protocol::is_stateless(v) {
                            header("mcp-method", &self.method);
                        }
                    }
                }
            }
            _ => {}
        }
        let key = self.next_key;
        self.next_key += 1;
        self.calls.push(server);
        self.steps.push(step);
        self.pending += 1;
        Some(Callout {
            key,
            server,
            cluster: s.cluster.clone(),
            headers,
            body,
            timeout_ms: s.timeout_ms,
        })
    }

    /// The servers this fan-out talks to: all for initialize, the session's otherwise.
    fn targets(&self, fed: &Federation) -> Vec<usize> {
        match (&self.job, &self.session) {
            (Job::Initialize { .. } | Job::Prepare { .. }, _) | (_, None) => {
                (0..fed.servers.len()).collect()
            }
            // A DELETE ends sessions: stateless servers have none to end.
            (Job::Delete, Some(session)) => fed
                .servers
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    session
                        .upstream(&s.name)
                        .is_some_and(|u| u.session_id.is_some())
                })
                .map(|(i, _)| i)
                .collect(),
            (_, Some(session)) => fed
                .servers
                .iter()
                .enumerate()
                .filter(|(_, s)| session.upstream(&s.name).is_some())
                .map(|(i, _)| i)
                .collect(),
        }
    }

    /// The first round of calls.
    pub fn start(&mut self, fed: &Federation) -> Vec<Callout> {
        let is_request = !matches!(self.job, Job::Broadcast { reply_result: None });
        let params = std::mem::take(&mut self.params);
        let method = self.method.clone();
        let mut out = Vec::new();
        for i in self.targets(fed) {
            let (body, step) = match &self.job {
                Job::Delete => (Vec::new(), Step::Plain),
                Job::Prepare { .. } => {
                    let params = format!("{{\"_meta\":{}}}", modern_meta());
                    (
                        request_body("server/discover", &params, Some(1)),
                        Step::Discover,
                    )
                }
                Job::List { .. } => {
                    let params = list_params(None, self.stateless(fed, i));
                    (request_body(&method, &params, Some(1)), Step::Plain)
                }
                _ => (
                    request_body(&method, &params, is_request.then_some(1)),
                    Step::Plain,
                ),
            };
            out.extend(self.callout(fed, i, body, step));
        }
        self.params = params;
        out
    }

    /// Takes one answer; returns follow-up calls (the next page of a list, the next step of
    /// preparing a server).
    pub fn on_reply(
        &mut self,
        fed: &Federation,
        key: usize,
        reply: CalloutReply<'_>,
    ) -> Vec<Callout> {
        let (Some(&server), Some(step)) = (self.calls.get(key), self.steps.get(key).cloned())
        else {
            return Vec::new();
        };
        self.pending = self.pending.saturating_sub(1);
        if matches!(self.job, Job::Prepare { .. }) {
            return self.prepare_step(fed, server, step, reply);
        }
        if matches!(self.job, Job::Broadcast { .. } | Job::Delete) {
            // Notifications get 202 with no body; only transport failures matter.
            if let Some(failure) = http_failure(reply.status) {
                self.failures.push((server, failure));
            }
            return Vec::new();
        }
        let result = match read_result(reply.status, reply.content_type, reply.body) {
            Ok(r) => r,
            // A server without this feature (no resources, no prompts) has an empty list: not
            // a failure, and the merged list stays complete.
            Err(UpstreamFailure::Rpc {
                code: jsonrpc::code::METHOD_NOT_FOUND,
                ..
            }) if matches!(self.job, Job::List { .. }) => Value::Object(serde_json::Map::new()),
            Err(e) => {
                if e == UpstreamFailure::SessionLost {
                    self.session_lost = true;
                }
                self.failures.push((server, e));
                return Vec::new();
            }
        };
        let mut next = None;
        let stateless = self.stateless(fed, server);
        match &mut self.job {
            Job::Initialize { results, .. } => {
                if let Some(slot) = results.get_mut(server) {
                    *slot = Some((result, reply.session_id.map(str::to_owned)));
                }
            }
            Job::List { kind, acc, pages } => {
                let kind = *kind;
                if let Some(cursor) = acc.add_page(server, result) {
                    let page = pages.get_mut(server).map(|p| {
                        *p += 1;
                        *p
                    });
                    if page.is_some_and(|p| p < MAX_PAGES) {
                        let params = list_params(Some(&cursor), stateless);
                        next = Some(request_body(kind.method(), &params, Some(1)));
                    }
                }
            }
            Job::Broadcast { .. } | Job::Delete | Job::Prepare { .. } => {}
        }
        next.and_then(|body| self.callout(fed, server, body, Step::Plain))
            .into_iter()
            .collect()
    }

    fn prepare_step(
        &mut self,
        fed: &Federation,
        server: usize,
        step: Step,
        reply: CalloutReply<'_>,
    ) -> Vec<Callout> {
        let name = fed
            .servers
            .get(server)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        let next = match step {
            Step::Discover => match read_result(reply.status, reply.content_type, reply.body) {
                Ok(result)
                    if result
                        .get("supportedVersions")
                        .and_then(Value::as_array)
                        .is_some_and(|v| v.iter().any(|x| x.as_str() == Some(MODERN))) =>
                {
                    let session = UpstreamSession {
                        server: name,
                        session_id: None,
                        version: Some(MODERN.to_owned()),
                    };
                    self.prepared(server, result, session);
                    None
                }
                // No answer at all: the server is down or slow; an `initialize` would only wait
                // out the same timeout again.
                Err(e @ UpstreamFailure::Unreachable) => {
                    self.failures.push((server, e));
                    None
                }
                // Not a stateless server (or not this revision): a session of the gateway's own.
                _ => {
                    let params = format!(
                        "{{\"protocolVersion\":\"{LEGACY}\",\"capabilities\":{{}},\"clientInfo\":{{\"name\":\"mcp-gateway-wasm\",\"version\":\"{}\"}}}}",
                        env!("CARGO_PKG_VERSION")
                    );
                    Some((
                        request_body("initialize", &params, Some(1)),
                        Step::Initialize,
                    ))
                }
            },
            Step::Initialize => match read_result(reply.status, reply.content_type, reply.body) {
                Ok(result) => {
                    let session = UpstreamSession {
                        server: name,
                        session_id: reply.session_id.map(str::to_owned),
                        version: Some(
                            result
                                .get("protocolVersion")
                                .and_then(Value::as_str)
                                .unwrap_or(LEGACY)
                                .to_owned(),
                        ),
                    };
                    let body = request_body("notifications/initialized", "", None);
                    Some((body, Step::Initialized { result, session }))
                }
                Err(e) => {
                    self.failures.push((server, e));
                    None
                }
            },
            Step::Initialized { result, session } => {
                match http_failure(reply.status) {
                    Some(failure) => self.failures.push((server, failure)),
                    None => self.prepared(server, result, session),
                }
                None
            }
            Step::Plain => None,
        };
        next.and_then(|(body, step)| self.callout(fed, server, body, step))
            .into_iter()
            .collect()
    }

    fn prepared(&mut self, server: usize, result: Value, session: UpstreamSession) {
        if let Job::Prepare { results } = &mut self.job {
            if let Some(slot) = results.get_mut(server) {
                *slot = Some((result, session));
            }
        }
    }

    fn error_reply(&self, code: i64, message: &str) -> String {
        jsonrpc::error_body(self.request_id.as_deref(), code, message, None)
    }

    fn failure_list(&self, fed: &Federation) -> Vec<(String, String)> {
        self.failures
            .iter()
            .map(|(i, e)| {
                let name = fed.servers.get(*i).map_or("?", |s| s.name.as_str());
                (name.to_owned(), e.to_string())
            })
            .collect()
    }

    /// The reply, once [`FanOut::pending`] is zero.
    pub fn finish(self, fed: &Federation) -> Finished {
        let failures = self.failure_list(fed);
        let id = self.request_id.as_deref();
        if self.session_lost {
            // The spec's answer to an unknown session: 404, after which the client re-initializes.
            return Finished::reply(
                404,
                self.error_reply(
                    code::INVALID_REQUEST,
                    "Session not found upstream: re-initialize",
                ),
                failures,
            );
        }
        let asked = self
            .calls
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len();
        let failed = self
            .failures
            .iter()
            .map(|(i, _)| i)
            .collect::<std::collections::HashSet<_>>()
            .len();
        match self.job {
            Job::Initialize {
                version,
                scope,
                results,
            } => {
                let mut parts = Vec::new();
                let mut upstreams = Vec::new();
                for (r, s) in results.iter().zip(&fed.servers) {
                    let Some((result, session_id)) = r else {
                        continue;
                    };
                    parts.push(InitPart {
                        server: &s.name,
                        result,
                    });
                    upstreams.push(UpstreamSession {
                        server: s.name.clone(),
                        session_id: session_id.clone(),
                        version: result
                            .get("protocolVersion")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                    });
                }
                if parts.is_empty() {
                    let detail: Vec<String> =
                        failures.iter().map(|(s, e)| format!("{s}: {e}")).collect();
                    let body = jsonrpc::error_body(
                        id,
                        code::INTERNAL_ERROR,
                        &format!(
                            "No upstream MCP server could be initialized ({})",
                            detail.join("; ")
                        ),
                        None,
                    );
                    return Finished::reply(502, body, failures);
                }
                let merged = merge_initialize(&version, &parts);
                Finished {
                    new_session: Some(SessionState {
                        version,
                        upstreams,
                        scope,
                        principal: None,
                    }),
                    ..Finished::reply(200, result_reply(id, &merged.to_string()), failures)
                }
            }
            Job::List { kind, acc, .. } => {
                let mut merged = acc.finish(fed);
                if self
                    .session
                    .as_ref()
                    .is_some_and(SessionState::is_stateless_client)
                {
                    // 2026-07-28 results carry these; the gateway's cache is its own business,
                    // so clients are told not to cache (lists are filtered per caller later on).
                    if let Some(obj) = merged.result.as_object_mut() {
                        obj.insert("resultType".into(), Value::String("complete".into()));
                        obj.insert("ttlMs".into(), Value::from(0));
                        obj.insert("cacheScope".into(), Value::String("private".into()));
                    }
                }
                let body = result_reply(id, &merged.result.to_string());
                // Cache only complete views: a list missing a failed server would hide its tools
                // for the whole TTL after it recovers.
                let cacheable = failed == 0 && asked > 0;
                Finished {
                    merged: Some((kind, merged)),
                    cacheable,
                    ..Finished::reply(200, body, failures)
                }
            }
            Job::Broadcast {
                reply_result: Some(r),
            } => Finished::reply(200, result_reply(id, r), failures),
            Job::Broadcast { reply_result: None } => Finished::reply(202, String::new(), failures),
            Job::Prepare { results } => {
                let mut parts = Vec::new();
                let mut upstreams = Vec::new();
                for (r, s) in results.iter().zip(&fed.servers) {
                    if let Some((result, session)) = r {
                        parts.push(InitPart {
                            server: &s.name,
                            result,
                        });
                        upstreams.push(session.clone());
                    }
                }
                if parts.is_empty() {
                    let detail: Vec<String> =
                        failures.iter().map(|(s, e)| format!("{s}: {e}")).collect();
                    let body = jsonrpc::error_body(
                        id,
                        code::INTERNAL_ERROR,
                        &format!(
                            "No upstream MCP server is reachable ({})",
                            detail.join("; ")
                        ),
                        None,
                    );
                    return Finished::reply(502, body, failures);
                }
                let discover = merge_discover(&parts);
                Finished {
                    new_session: Some(SessionState {
                        version: MODERN.to_owned(),
                        upstreams,
                        scope: crate::federation::session::STATELESS_SCOPE.to_owned(),
                        principal: None,
                    }),
                    discover: Some(discover.to_string()),
                    ..Finished::reply(200, String::new(), failures)
                }
            }
            Job::Delete => Finished::reply(200, String::new(), failures),
        }
    }
}

impl Finished {
    fn reply(status: u16, body: String, failures: Vec<(String, String)>) -> Finished {
        Finished {
            status,
            body,
            new_session: None,
            merged: None,
            failures,
            discover: None,
            cacheable: false,
        }
    }
}

/// A notification's or DELETE's HTTP answer as a failure, if it is one.
fn http_failure(status: u16) -> Option<UpstreamFailure> {
    match status {
        0 => Some(UpstreamFailure::Unreachable),
        404 => Some(UpstreamFailure::SessionLost),
        s if s >= 400 => Some(UpstreamFailure::Http(s)),
        _ => None,
    }
}

/// `{"jsonrpc":"2.0","id":<id>,"result":<result>}` with both spliced in raw.
pub fn result_reply(id: Option<&str>, result: &str) -> String {
    let mut out = String::with_capacity(40 + result.len());
    out.push_str("{\"jsonrpc\":\"2.0\",\"id\":");
    out.push_str(id.unwrap_or("null"));
    out.push_str(",\"result\":");
    out.push_str(result);
    out.push('}');
    out
}

/// Whether `body` is exactly what [`result_reply`] makes for `id`: a success the gateway built,
/// whose outcome need not be parsed back out of it.
pub fn is_result_reply(id: Option<&str>, body: &str) -> bool {
    body.strip_prefix("{\"jsonrpc\":\"2.0\",\"id\":")
        .and_then(|rest| rest.strip_prefix(id.unwrap_or("null")))
        .is_some_and(|rest| rest.starts_with(",\"result\":") && rest.ends_with('}'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn a_built_result_is_recognised_and_an_error_or_another_id_is_not() {
        let ok = result_reply(Some("7"), r#"{"tools":[]}"#);
        assert!(is_result_reply(Some("7"), &ok));
        assert!(is_result_reply(None, &result_reply(None, "{}")));
        assert!(!is_result_reply(Some("8"), &ok));
        assert!(!is_result_reply(
            Some("7"),
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32601}}"#
        ));
        // An id whose text contains the marker cannot fool it: the id is matched as a whole.
        let tricky = r#""a","result":""#;
        let err = format!(r#"{{"jsonrpc":"2.0","id":{tricky},"error":{{}}}}"#);
        assert!(!is_result_reply(Some(tricky), &err));
    }

    fn fed() -> Federation {
        let cfg = r#"{"servers":[{"name":"a","cluster":"ca"}],
                      "federation":{"sessionKey":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}"#;
        Config::from_json(cfg.as_bytes())
            .unwrap()
            .federation
            .unwrap()
    }

    fn no_answer() -> CalloutReply<'static> {
        CalloutReply {
            status: 0,
            content_type: None,
            session_id: None,
            body: &[],
        }
    }

    #[test]
    fn an_unreachable_server_fails_preparation_without_a_second_wait() {
        let f = fed();
        let mut fan = FanOut::prepare(1);
        let calls = fan.start(&f);
        assert_eq!(calls.len(), 1);
        assert!(fan.on_reply(&f, calls[0].key, no_answer()).is_empty());
        assert_eq!(fan.pending(), 0);
        assert_eq!(fan.finish(&f).status, 502);
    }

    #[test]
    fn a_server_that_does_not_know_discover_gets_an_initialize_of_the_gateways_own() {
        let f = fed();
        let mut fan = FanOut::prepare(1);
        let calls = fan.start(&f);
        let unknown = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#;
        let reply = CalloutReply {
            status: 200,
            content_type: Some("application/json"),
            session_id: None,
            body: unknown,
        };
        let follow = fan.on_reply(&f, calls[0].key, reply);
        assert_eq!(follow.len(), 1);
        assert!(String::from_utf8_lossy(&follow[0].body).contains("\"initialize\""));
        assert_eq!(fan.pending(), 1);
    }
}
