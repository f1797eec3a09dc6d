//! What the gateway does with one accepted message when it federates several servers.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::federation::aggregate::ListKind;
use crate::federation::config::Federation;
use crate::federation::fanout::{result_reply, FanOut};
use crate::federation::rewrite::{replace_at, replace_string_at, upstream_id};
use crate::federation::session::{SessionCodec, SessionState};
use crate::gate::Head;
use crate::jsonrpc::{self, code, MessageKind, RequestInfo};

/// Forward the client's request through Envoy's router to one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub server: usize,
    pub cluster: String,
    pub path: String,
    /// The upstream's own session id and protocol version, to put on the request.
    pub session_id: Option<String>,
    pub version: Option<String>,
    /// The body with the client-facing name or id swapped for the upstream's; `None`: unchanged.
    pub body: Option<Vec<u8>>,
    /// The upstream's own name of the tool/prompt (for a stateless upstream's `Mcp-Name`).
    pub upstream_name: Option<String>,
    /// The upstream speaks the stateless revision: it wants `Mcp-Method`/`Mcp-Name`, no session.
    pub stateless: bool,
}

#[derive(Debug)]
pub enum Plan {
    Route(Route),
    FanOut(FanOut),
    /// Fetch and cache this merged list (over this session's servers), then plan the same
    /// request again.
    NeedList(ListKind, SessionState),
    /// Answer now: HTTP status and a JSON-RPC body.
    Reply {
        status: u16,
        body: String,
    },
}

/// What the glue knows of merged lists (from its cache).
pub trait ListView {
    /// The cached `result` object of a merged list, as JSON text.
    fn cached(&self, kind: ListKind) -> Option<&str>;
    /// The server that owns a client-facing key of a cached list; `None` if unknown or uncached.
    fn owner(&self, kind: ListKind, key: &str) -> Option<usize>;
    /// The server whose resource template matches `uri` (by the template's literal prefix).
    fn template_owner(&self, uri: &str) -> Option<usize>;
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct InitParams<'a> {
    #[serde(rename = "protocolVersion", borrow, default)]
    protocol_version: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    capabilities: Option<&'a RawValue>,
}

/// A short, stable name for a client's declared capabilities. Servers may offer different lists
/// to clients with different capabilities (server-everything adds sampling and elicitation tools),
/// so merged lists are cached per capability set.
pub fn scope_of(capabilities_json: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in capabilities_json
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[derive(Deserialize)]
struct CompleteParams<'a> {
    #[serde(rename = "ref", borrow)]
    reference: Option<Ref<'a>>,
}

#[derive(Deserialize)]
struct Ref<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    uri: Option<std::borrow::Cow<'a, str>>,
}

fn params_raw(body: &[u8]) -> Option<&str> {
    serde_json::from_slice::<Body<'_>>(body)
        .ok()
        .and_then(|b| b.params)
        .map(RawValue::get)
}

fn error(info: &RequestInfo, status: u16, code: i64, message: &str) -> Plan {
    Plan::Reply {
        status,
        body: jsonrpc::error_body(info.id.as_deref(), code, message, None),
    }
}

/// Unknown names and names the caller may not see get this same answer, so the error does not
/// reveal what exists.
fn unknown(info: &RequestInfo, what: &str, name: &str) -> Plan {
    error(
        info,
        200,
        code::INVALID_PARAMS,
        &format!("Unknown {what}: {name}"),
    )
}

/// Opens the request's gateway session. `Ok(None)`: `initialize`, which has none yet.
/// `Err`: the answer to send instead (400 without a session id, 404 for one this gateway can't open).
pub fn open_session(
    codec: &SessionCodec,
    head: &Head,
    info: &RequestInfo,
) -> Result<Option<SessionState>, Box<Plan>> {
    if info.method.as_deref() == Some("initialize") {
        return Ok(None);
    }
    let Some(raw_session) = head.session_id.as_deref() else {
        return Err(Box::new(error(
            info,
            400,
            code::INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required (send initialize first)",
        )));
    };
    // Tampered, foreign, or sealed with an old key: the spec's answer is 404, after which the
    // client starts a new session.
    codec.open(raw_session).map(Some).map_err(|_| {
        Box::new(error(
            info,
            404,
            code::INVALID_REQUEST,
            "Session not found: re-initialize",
        ))
    })
}

/// Plans one message. `info` comes from the gate, which has already validated it; `session` from
/// [`open_session`].
pub fn plan(
    fed: &Federation,
    session: Option<SessionState>,
    info: &RequestInfo,
    body: &[u8],
    lists: &dyn ListView,
) -> Plan {
    let method = info.method.as_deref().unwrap_or_default();
    if method == "initialize" {
        let params = params_raw(body).unwrap_or("{}");
        let init = serde_json::from_str::<InitParams<'_>>(params).ok();
        let requested = init
            .as_ref()
            .and_then(|p| p.protocol_version.as_deref().map(str::to_owned));
        let caps = init
            .and_then(|p| p.capabilities)
            .map_or_else(String::new, |c| scope_of(c.get()));
        return Plan::FanOut(FanOut::initialize(
            info.id.clone(),
            requested.as_deref(),
            params.to_owned(),
            caps,
            fed.servers.len(),
        ));
    }
    let Some(session) = session else {
        return error(
            info,
            400,
            code::INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required (send initialize first)",
        );
    };
    if info.kind == MessageKind::Response {
        return route_response(fed, &session, info, body);
    }
    if info.kind == MessageKind::Notification {
        let params = params_raw(body).unwrap_or_default().to_owned();
        return Plan::FanOut(FanOut::broadcast(method, None, session, params));
    }
    if let Some(kind) = ListKind::of_method(method) {
        return match lists.cached(kind) {
            Some(result) => Plan::Reply {
                status: 200,
                body: result_reply(info.id.as_deref(), result),
            },
            None => Plan::FanOut(FanOut::list(
                kind,
                info.id.clone(),
                session,
                fed.servers.len(),
            )),
        };
    }
    match method {
        "ping" => Plan::Reply {
            status: 200,
            body: result_reply(
                info.id.as_deref(),
                if session.is_stateless_client() {
                    r#"{"resultType":"complete"}"#
                } else {
                    "{}"
                },
            ),
        },
        "logging/setLevel" => {
            let params = params_raw(body).unwrap_or_default().to_owned();
            Plan::FanOut(FanOut::broadcast(method, info.id.clone(), session, params))
        }
        "tools/call" => route_named(
            fed,
            &session,
            info,
            body,
            ListKind::Tools,
            &["params", "name"],
            lists,
        ),
        "prompts/get" => route_named(
            fed,
            &session,
            info,
            body,
            ListKind::Prompts,
            &["params", "name"],
            lists,
        ),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let uri = info.uri.clone().unwrap_or_default();
            route_uri(fed, &session, info, &uri, lists)
        }
        "completion/complete" => {
            let reference = params_raw(body)
                .and_then(|p| serde_json::from_str::<CompleteParams<'_>>(p).ok())
                .and_then(|p| p.reference);
            match reference {
                Some(Ref {
                    kind: Some(k),
                    name: Some(_),
                    ..
                }) if k == "ref/prompt" => route_named(
                    fed,
                    &session,
                    info,
                    body,
                    ListKind::Prompts,
                    &["params", "ref", "name"],
                    lists,
                ),
                Some(Ref {
                    kind: Some(k),
                    uri: Some(uri),
                    ..
                }) if k == "ref/resource" => route_uri(fed, &session, info, &uri, lists),
                _ => error(
                    info,
                    200,
                    code::INVALID_PARAMS,
                    "completion/complete needs params.ref with a prompt name or resource uri",
                ),
            }
        }
        _ => error(
            info,
            200,
            code::METHOD_NOT_FOUND,
            &format!("Method not found: {method}"),
        ),
    }
}

fn route_to(
    fed: &Federation,
    session: &SessionState,
    info: &RequestInfo,
    server: usize,
    body: Option<Vec<u8>>,
) -> Plan {
    let Some(s) = fed.servers.get(server) else {
        return error(info, 200, code::INTERNAL_ERROR, "internal routing error");
    };
    let Some(up) = session.upstream(&s.name) else {
        return error(
            info,
            200,
            code::INTERNAL_ERROR,
            &format!("Upstream MCP server '{}' is unavailable in this session (it did not initialize); re-initialize to retry", s.name),
        );
    };
    Plan::Route(Route {
        server,
        cluster: s.cluster.clone(),
        path: s.path.clone(),
        session_id: up.session_id.clone(),
        version: up.version.clone(),
        body,
        upstream_name: None,
        stateless: up
            .version
            .as_deref()
            .is_some_and(crate::protocol::is_stateless),
    })
}

fn route_named(
    fed: &Federation,
    session: &SessionState,
    info: &RequestInfo,
    body: &[u8],
    kind: ListKind,
    path: &[&str],
    lists: &dyn ListView,
) -> Plan {
    let what = if kind == ListKind::Tools {
        "tool"
    } else {
        "prompt"
    };
    // The name at `path`: params.name, or params.ref.name for completions.
    let facing = if path.len() == 2 {
        info.name.clone().unwrap_or_default()
    } else {
        params_raw(body)
            .and_then(|p| serde_json::from_str::<CompleteParams<'_>>(p).ok())
            .and_then(|p| p.reference)
            .and_then(|r| r.name.map(std::borrow::Cow::into_owned))
            .unwrap_or_default()
    };
    let (server, own) = if fed.prefix_names {
        match fed.split(&facing) {
            // With a list cache, a name must be in the merged list: a name no server offers
            // gets the same answer as one hidden by `tools.deny` (nothing about what exists
            // leaks through the difference). Without a cache the prefix decides.
            Some((i, own)) if fed.list_cache_ttl_ms > 0 => match lists.cached(kind) {
                None => return Plan::NeedList(kind, session.clone()),
                Some(_) if lists.owner(kind, &facing) != Some(i) => {
                    return unknown(info, what, &facing)
                }
                Some(_) => (i, own.to_owned()),
            },
            Some((i, own)) => (i, own.to_owned()),
            None => return unknown(info, what, &facing),
        }
    } else {
        match lists.owner(kind, &facing) {
            Some(i) => (i, facing.clone()),
            None if lists.cached(kind).is_none() => return Plan::NeedList(kind, session.clone()),
            None => return unknown(info, what, &facing),
        }
    };
    if kind == ListKind::Tools
        && !fed
            .servers
            .get(server)
            .is_some_and(|s| s.exposes_tool(&own))
    {
        return unknown(info, what, &facing);
    }
    let rewritten = if own == facing {
        None
    } else {
        match replace_string_at(body, path, &own) {
            Some(b) => Some(b),
            None => {
                return error(
                    info,
                    400,
                    code::INVALID_PARAMS,
                    "could not rewrite the name in the request",
                )
            }
        }
    };
    match route_to(fed, session, info, server, rewritten) {
        Plan::Route(mut route) => {
            route.upstream_name = Some(own);
            Plan::Route(route)
        }
        other => other,
    }
}

fn route_uri(
    fed: &Federation,
    session: &SessionState,
    info: &RequestInfo,
    uri: &str,
    lists: &dyn ListView,
) -> Plan {
    if fed.servers.len() == 1 {
        return route_to(fed, session, info, 0, None);
    }
    if let Some(i) = lists.owner(ListKind::Resources, uri) {
        return route_to(fed, session, info, i, None);
    }
    if lists.cached(ListKind::Resources).is_none() {
        return Plan::NeedList(ListKind::Resources, session.clone());
    }
    if let Some(i) = lists.template_owner(uri) {
        return route_to(fed, session, info, i, None);
    }
    if lists.cached(ListKind::ResourceTemplates).is_none() {
        return Plan::NeedList(ListKind::ResourceTemplates, session.clone());
    }
    // MCP's "resource not found" code.
    error(info, 200, -32002, &format!("Resource not found: {uri}"))
}

fn route_response(
    fed: &Federation,
    session: &SessionState,
    info: &RequestInfo,
    body: &[u8],
) -> Plan {
    let Some((server_name, raw)) = info.id.as_deref().and_then(upstream_id) else {
        return error(
            info,
            400,
            code::INVALID_REQUEST,
            "response to an unknown request id",
        );
    };
    let Some((server, _)) = fed.server(&server_name) else {
        return error(
            info,
            400,
            code::INVALID_REQUEST,
            "response to an unknown request id",
        );
    };
    match replace_at(body, &["id"], &raw) {
        Some(b) => route_to(fed, session, info, server, Some(b)),
        None => error(
            info,
            400,
            code::INVALID_REQUEST,
            "could not restore the request id",
        ),
    }
}
