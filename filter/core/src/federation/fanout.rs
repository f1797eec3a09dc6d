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
    merge_initialize, negotiate_version, InitPart, ListAccumulator, ListKind, MergedList, MAX_PAGES,
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
    /// A merged list to cache.
    pub merged: Option<(ListKind, MergedList)>,
    /// Servers that failed, with why: for logs and counters.
    pub failures: Vec<(String, String)>,
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
        }
    }

    pub fn pending(&self) -> usize {
        self.pending
    }

    fn callout(&mut self, fed: &Federation, server: usize, body: Vec<u8>) -> Option<Callout> {
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
        match (&self.job, &self.session) {
            (Job::Initialize { version, .. }, _) => {
                headers.push(("mcp-protocol-version".to_owned(), version.clone()));
            }
            (_, Some(session)) => {
                if let Some(up) = session.upstream(&s.name) {
                    if let Some(id) = &up.session_id {
                        headers.push(("mcp-session-id".to_owned(), id.clone()));
                    }
                    if let Some(v) = &up.version {
                        headers.push(("mcp-protocol-version".to_owned(), v.clone()));
                    }
                }
            }
            _ => {}
        }
        let key = self.next_key;
        self.next_key += 1;
        self.calls.push(server);
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
            (Job::Initialize { .. }, _) | (_, None) => (0..fed.servers.len()).collect(),
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
        let body = if matches!(self.job, Job::Delete) {
            Vec::new()
        } else {
            request_body(&method, &params, is_request.then_some(1))
        };
        let out = self
            .targets(fed)
            .into_iter()
            .filter_map(|i| self.callout(fed, i, body.clone()))
            .collect();
        self.params = params;
        out
    }

    /// Takes one answer; returns follow-up calls (the next page of a list).
    pub fn on_reply(
        &mut self,
        fed: &Federation,
        key: usize,
        reply: CalloutReply<'_>,
    ) -> Vec<Callout> {
        let Some(&server) = self.calls.get(key) else {
            return Vec::new();
        };
        self.pending = self.pending.saturating_sub(1);
        if matches!(self.job, Job::Broadcast { .. } | Job::Delete) {
            // Notifications get 202 with no body; only transport failures matter.
            if reply.status == 0 || reply.status >= 400 {
                let failure = if reply.status == 404 {
                    UpstreamFailure::SessionLost
                } else if reply.status == 0 {
                    UpstreamFailure::Unreachable
                } else {
                    UpstreamFailure::Http(reply.status)
                };
                self.failures.push((server, failure));
            }
            return Vec::new();
        }
        let result = match read_result(reply.status, reply.content_type, reply.body) {
            Ok(r) => r,
            Err(e) => {
                if e == UpstreamFailure::SessionLost {
                    self.session_lost = true;
                }
                self.failures.push((server, e));
                return Vec::new();
            }
        };
        let mut next = None;
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
                        let mut params = String::from("{\"cursor\":");
                        push_json_string(&mut params, &cursor);
                        params.push('}');
                        next = Some(request_body(kind.method(), &params, Some(1)));
                    }
                }
            }
            Job::Broadcast { .. } | Job::Delete => {}
        }
        next.and_then(|body| self.callout(fed, server, body))
            .into_iter()
            .collect()
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
                    }),
                    ..Finished::reply(200, result_reply(id, &merged.to_string()), failures)
                }
            }
            Job::List { kind, acc, .. } => {
                let merged = acc.finish(fed);
                let body = result_reply(id, &merged.result.to_string());
                // Cache only complete views: a list missing a failed server would hide its tools
                // for the whole TTL after it recovers.
                let cacheable = failed == 0 && asked > 0;
                Finished {
                    merged: cacheable.then_some((kind, merged)),
                    ..Finished::reply(200, body, failures)
                }
            }
            Job::Broadcast {
                reply_result: Some(r),
            } => Finished::reply(200, result_reply(id, r), failures),
            Job::Broadcast { reply_result: None } => Finished::reply(202, String::new(), failures),
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
        }
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
