//! The request pipeline: what the gateway decides about a client request, from its headers and
//! then from its body, before anything is forwarded.
//!
//! Pure decisions only: the glue reads headers and body from the host, calls [`on_head`] and
//! [`on_body`], and carries out the verdict (pass through, reply locally, or set routing headers
//! and continue). Checks follow the Streamable HTTP transport of both protocol generations.

use crate::config::Config;
use crate::jsonrpc::{self, code, MessageKind, ParseError, RequestInfo};
use crate::metrics::{
    MethodLabel, RejectReason, LABEL_DELETE, LABEL_GET, LABEL_OTHER, LABEL_UNPARSED,
};
use crate::origin::{host_allowed, origin_allowed};
use crate::protocol::{self, decode_header_value, encode_header_value, is_stateless};
use crate::response::{body_kind, BodyKind};

/// The request headers the gateway looks at, as read from the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub path: String,
    pub authority: Option<String>,
    pub origin: Option<String>,
    pub content_type: Option<String>,
    pub content_length: Option<u64>,
    pub session_id: Option<String>,
    pub protocol_version: Option<String>,
    pub mcp_method: Option<String>,
    pub mcp_name: Option<String>,
}

/// A local reply: the gateway answers instead of the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// A JSON-RPC error response.
    pub body: String,
    /// Extra response headers (`content-type` is always `application/json`).
    pub headers: Vec<(&'static str, String)>,
    pub reason: RejectReason,
    pub method: MethodLabel,
}

impl Reply {
    fn new(
        status: u16,
        reason: RejectReason,
        method: MethodLabel,
        id: Option<&str>,
        code: i64,
        message: &str,
    ) -> Reply {
        Reply {
            status,
            body: jsonrpc::error_body(id, code, message, None),
            headers: Vec::new(),
            reason,
            method,
        }
    }

    fn with_data(mut self, id: Option<&str>, code: i64, message: &str, data: &str) -> Reply {
        self.body = jsonrpc::error_body(id, code, message, Some(data));
        self
    }
}

/// What to do once the headers are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadVerdict {
    /// Not an MCP endpoint: leave the request alone.
    Bypass,
    /// Answer locally with this error.
    Reject(Reply),
    /// A POST to the MCP endpoint: buffer the body and call [`on_body`].
    ReadBody,
    /// GET/DELETE/OPTIONS on the MCP endpoint: forward as is, counted under this label.
    Forward(MethodLabel),
}

/// A request that passed every check, with what to tell the rest of Envoy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub info: RequestInfo,
    pub label: MethodLabel,
    /// Header-safe value for the method routing header.
    pub method_value: String,
    /// Header-safe value for the name routing header, when the method has a target.
    pub name_value: Option<String>,
}

fn unparsed() -> MethodLabel {
    MethodLabel::extra(LABEL_UNPARSED)
}

/// Decides on a request from its headers alone.
pub fn on_head(cfg: &Config, head: &Head) -> HeadVerdict {
    if !cfg.is_mcp_path(&head.path) {
        return HeadVerdict::Bypass;
    }
    let label = match head.method.as_str() {
        "POST" => unparsed(),
        "GET" => MethodLabel::extra(LABEL_GET),
        "DELETE" => MethodLabel::extra(LABEL_DELETE),
        _ => MethodLabel::extra(LABEL_OTHER),
    };
    if let Some(authority) = head.authority.as_deref() {
        if !host_allowed(&cfg.allowed_hosts, authority) {
            return HeadVerdict::Reject(Reply::new(
                403,
                RejectReason::Host,
                label,
                None,
                code::INVALID_REQUEST,
                "Forbidden: Host is not allowed by this gateway (allowedHosts)",
            ));
        }
    }
    if let Some(origin) = head.origin.as_deref() {
        if !origin_allowed(&cfg.allowed_origins, origin) {
            return HeadVerdict::Reject(Reply::new(
                403,
                RejectReason::Origin,
                label,
                None,
                code::INVALID_REQUEST,
                "Forbidden: Origin is not allowed by this gateway (allowedOrigins)",
            ));
        }
    }
    if let Some(reply) = check_protocol_version(cfg, head, label) {
        return HeadVerdict::Reject(reply);
    }
    if let Some(id) = head.session_id.as_deref() {
        if !protocol::valid_session_id(id) {
            return HeadVerdict::Reject(Reply::new(
                400,
                RejectReason::InvalidSession,
                label,
                None,
                code::INVALID_REQUEST,
                "Bad Request: Mcp-Session-Id must be visible ASCII",
            ));
        }
    }
    match head.method.as_str() {
        "POST" => {
            if body_kind(head.content_type.as_deref()) != BodyKind::Json {
                return HeadVerdict::Reject(Reply::new(
                    415,
                    RejectReason::UnsupportedMediaType,
                    label,
                    None,
                    code::INVALID_REQUEST,
                    "Unsupported Media Type: MCP messages must be POSTed as application/json",
                ));
            }
            if let Some(len) = head.content_length {
                if len > cfg.max_request_bytes as u64 {
                    return HeadVerdict::Reject(too_large(cfg));
                }
            }
            HeadVerdict::ReadBody
        }
        "GET" | "DELETE" => {
            if needs_session(cfg, head) && head.session_id.is_none() && head.method == "DELETE" {
                return HeadVerdict::Reject(missing_session(label, None));
            }
            HeadVerdict::Forward(label)
        }
        "OPTIONS" => HeadVerdict::Forward(label),
        _ => {
            let mut reply = Reply::new(
                405,
                RejectReason::MethodNotAllowed,
                label,
                None,
                code::INVALID_REQUEST,
                "Method Not Allowed: the MCP endpoint accepts POST, GET and DELETE",
            );
            reply
                .headers
                .push(("allow", "GET, POST, DELETE, OPTIONS".to_owned()));
            HeadVerdict::Reject(reply)
        }
    }
}

/// The reply for a body over `maxRequestBytes`; the glue also uses it while the body streams in.
pub fn too_large(cfg: &Config) -> Reply {
    Reply::new(
        413,
        RejectReason::BodyTooLarge,
        unparsed(),
        None,
        code::INVALID_REQUEST,
        &format!(
            "Request body exceeds this gateway's maxRequestBytes ({} bytes)",
            cfg.max_request_bytes
        ),
    )
}

fn check_protocol_version(cfg: &Config, head: &Head, label: MethodLabel) -> Option<Reply> {
    let requested = head.protocol_version.as_deref()?;
    if cfg.protocol_versions.iter().any(|v| v == requested) {
        return None;
    }
    let supported = serde_json::to_string(&cfg.protocol_versions).unwrap_or_else(|_| "[]".into());
    let mut requested_json = String::new();
    jsonrpc::push_json_string(&mut requested_json, requested);
    let data = format!("{{\"supported\":{supported},\"requested\":{requested_json}}}");
    Some(
        Reply::new(
            400,
            RejectReason::UnsupportedProtocolVersion,
            label,
            None,
            0,
            "",
        )
        .with_data(
            None,
            code::UNSUPPORTED_PROTOCOL_VERSION,
            "Unsupported protocol version",
            &data,
        ),
    )
}

/// The revision a request speaks: its header, or 2025-03-26 when absent (spec back-compat rule).
fn version_of(head: &Head) -> &str {
    head.protocol_version
        .as_deref()
        .unwrap_or(protocol::DEFAULT_VERSION)
}

fn needs_session(cfg: &Config, head: &Head) -> bool {
    cfg.require_session_id && !is_stateless(version_of(head))
}

fn missing_session(label: MethodLabel, id: Option<&str>) -> Reply {
    Reply::new(
        400,
        RejectReason::MissingSession,
        label,
        id,
        code::INVALID_REQUEST,
        "Bad Request: Mcp-Session-Id header is required (send initialize first)",
    )
}

fn parse_reply(e: &ParseError) -> Reply {
    let reason = match e {
        ParseError::Syntax(_) => RejectReason::ParseError,
        ParseError::InvalidRequest { .. } => RejectReason::InvalidRequest,
        ParseError::InvalidParams { .. } => RejectReason::InvalidParams,
        ParseError::Batch => RejectReason::Batch,
    };
    Reply::new(400, reason, unparsed(), e.id(), e.code(), &e.to_string())
}

fn mismatch(label: MethodLabel, id: Option<&str>, message: &str) -> Reply {
    Reply::new(
        400,
        RejectReason::HeaderMismatch,
        label,
        id,
        code::HEADER_MISMATCH,
        &format!("Header mismatch: {message}"),
    )
}

/// Decides on a POST from its complete body.
pub fn on_body(cfg: &Config, head: &Head, body: &[u8]) -> Result<Accepted, Reply> {
    if body.len() > cfg.max_request_bytes {
        return Err(too_large(cfg));
    }
    let info = jsonrpc::parse_message(body).map_err(|e| parse_reply(&e))?;
    let label = match (&info.kind, info.method.as_deref()) {
        (MessageKind::Response, _) | (_, None) => MethodLabel::response(),
        (_, Some(m)) => MethodLabel::of_method(m),
    };
    let id = info.id.as_deref();
    check_mirrored_headers(head, &info, label)?;
    let exempt = matches!(
        info.method.as_deref(),
        Some("initialize" | "server/discover")
    );
    if needs_session(cfg, head) && head.session_id.is_none() && !exempt {
        return Err(missing_session(label, id));
    }
    let method_value = info.method.as_deref().map_or_else(
        || "response".to_owned(),
        |m| encode_header_value(m).into_owned(),
    );
    let name_value = info.target().map(|t| encode_header_value(t).into_owned());
    Ok(Accepted {
        info,
        label,
        method_value,
        name_value,
    })
}

/// `Mcp-Method`/`Mcp-Name`/`MCP-Protocol-Version` must agree with the body. They are required
/// from 2026-07-28 on and checked whenever present before that: an intermediary may already have
/// routed on them, so a disagreement is a security problem whatever the revision.
fn check_mirrored_headers(
    head: &Head,
    info: &RequestInfo,
    label: MethodLabel,
) -> Result<(), Reply> {
    let id = info.id.as_deref();
    let stateless = is_stateless(version_of(head));
    let is_request = info.kind != MessageKind::Response;
    match (head.mcp_method.as_deref(), info.method.as_deref()) {
        (Some(h), Some(b)) if h != b => {
            return Err(mismatch(
                label,
                id,
                &format!("Mcp-Method header value {h:?} does not match body method {b:?}"),
            ))
        }
        (Some(h), None) => {
            return Err(mismatch(
                label,
                id,
                &format!("Mcp-Method header value {h:?} on a message without a method"),
            ))
        }
        (None, Some(_)) if stateless && is_request => {
            return Err(mismatch(label, id, "Mcp-Method header is required"))
        }
        _ => {}
    }
    let target = info.target();
    match head.mcp_name.as_deref() {
        Some(raw) => {
            let decoded = decode_header_value(raw)
                .map_err(|e| mismatch(label, id, &format!("Mcp-Name header: {e}")))?;
            if Some(decoded.as_ref()) != target {
                return Err(mismatch(
                    label,
                    id,
                    &format!(
                        "Mcp-Name header value {:?} does not match body value {:?}",
                        decoded.as_ref(),
                        target.unwrap_or("")
                    ),
                ));
            }
        }
        None if stateless && target.is_some() && info.kind == MessageKind::Request => {
            return Err(mismatch(label, id, "Mcp-Name header is required"));
        }
        None => {}
    }
    if stateless {
        if let (Some(h), Some(b)) = (
            head.protocol_version.as_deref(),
            info.meta_protocol_version.as_deref(),
        ) {
            if h != b {
                return Err(mismatch(
                    label,
                    id,
                    &format!("MCP-Protocol-Version header {h:?} does not match _meta protocol version {b:?}"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::RejectReason as R;

    fn head(method: &str) -> Head {
        Head {
            method: method.into(),
            path: "/mcp".into(),
            authority: Some("127.0.0.1:10000".into()),
            content_type: Some("application/json".into()),
            protocol_version: Some("2025-11-25".into()),
            session_id: Some("sess-1".into()),
            ..Head::default()
        }
    }

    fn stateless() -> Head {
        Head {
            protocol_version: Some("2026-07-28".into()),
            session_id: None,
            ..head("POST")
        }
    }

    fn rejected(v: HeadVerdict) -> Reply {
        match v {
            HeadVerdict::Reject(r) => r,
            other => unreachable!("expected a rejection, got {other:?}"),
        }
    }

    fn body_err(cfg: &Config, h: &Head, body: &str) -> Reply {
        match on_body(cfg, h, body.as_bytes()) {
            Ok(a) => unreachable!("accepted {a:?}"),
            Err(r) => r,
        }
    }

    fn body_ok(cfg: &Config, h: &Head, body: &str) -> Accepted {
        match on_body(cfg, h, body.as_bytes()) {
            Ok(a) => a,
            Err(r) => unreachable!("rejected {r:?}"),
        }
    }

    fn json(body: &str) -> serde_json::Value {
        serde_json::from_str(body).unwrap_or_default()
    }

    const CALL: &str =
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;

    #[test]
    fn non_mcp_paths_are_left_alone_whatever_they_carry() {
        let cfg = Config::default();
        let h = Head {
            path: "/other".into(),
            origin: Some("http://evil.example".into()),
            content_type: Some("text/plain".into()),
            ..head("PUT")
        };
        assert_eq!(on_head(&cfg, &h), HeadVerdict::Bypass);
    }

    #[test]
    fn foreign_origins_and_hosts_get_403_with_a_jsonrpc_body() {
        let cfg = Config::default();
        let r = rejected(on_head(
            &cfg,
            &Head {
                origin: Some("http://evil.example".into()),
                ..head("POST")
            },
        ));
        assert_eq!((r.status, r.reason), (403, R::Origin));
        assert!(json(&r.body)["id"].is_null());
        let r = rejected(on_head(
            &cfg,
            &Head {
                authority: Some("evil.example".into()),
                ..head("POST")
            },
        ));
        assert_eq!((r.status, r.reason), (403, R::Host));
        let ok = Head {
            origin: Some("http://localhost:1234".into()),
            ..head("POST")
        };
        assert_eq!(on_head(&cfg, &ok), HeadVerdict::ReadBody);
    }

    #[test]
    fn wrong_content_type_is_415_and_unknown_methods_405() {
        let cfg = Config::default();
        let r = rejected(on_head(
            &cfg,
            &Head {
                content_type: Some("text/plain".into()),
                ..head("POST")
            },
        ));
        assert_eq!((r.status, r.reason), (415, R::UnsupportedMediaType));
        let r = rejected(on_head(
            &cfg,
            &Head {
                content_type: None,
                ..head("POST")
            },
        ));
        assert_eq!(r.status, 415);
        let r = rejected(on_head(&cfg, &head("PUT")));
        assert_eq!(r.status, 405);
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| *k == "allow" && v.contains("POST")));
    }

    #[test]
    fn declared_oversize_is_413_before_the_body_arrives() {
        let cfg = Config::from_json(br#"{"maxRequestBytes":10}"#).unwrap_or_default();
        let r = rejected(on_head(
            &cfg,
            &Head {
                content_length: Some(11),
                ..head("POST")
            },
        ));
        assert_eq!(r.status, 413);
        assert!(json(&r.body)["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("maxRequestBytes"));
        assert_eq!(body_err(&cfg, &head("POST"), CALL).status, 413);
    }

    #[test]
    fn unknown_protocol_versions_get_32022_with_supported_list() {
        let cfg = Config::default();
        let r = rejected(on_head(
            &cfg,
            &Head {
                protocol_version: Some("1999-01-01".into()),
                ..head("POST")
            },
        ));
        assert_eq!(r.status, 400);
        let v = json(&r.body);
        assert_eq!(v["error"]["code"], -32022);
        assert_eq!(v["error"]["data"]["requested"], "1999-01-01");
        assert!(v["error"]["data"]["supported"]
            .as_array()
            .is_some_and(|a| !a.is_empty()));
    }

    #[test]
    fn bad_bodies_get_the_right_jsonrpc_codes() {
        let cfg = Config::default();
        let h = head("POST");
        for (body, code, reason) in [
            ("{bad json", -32700, R::ParseError),
            (
                r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
                -32600,
                R::InvalidRequest,
            ),
            (
                r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
                -32600,
                R::Batch,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}"#,
                -32602,
                R::InvalidParams,
            ),
        ] {
            let r = body_err(&cfg, &h, body);
            assert_eq!((r.status, r.reason), (400, reason), "{body}");
            assert_eq!(json(&r.body)["error"]["code"], code, "{body}");
        }
    }

    #[test]
    fn session_revisions_need_a_session_id_except_for_initialize() {
        let cfg = Config::default();
        let no_session = Head {
            session_id: None,
            ..head("POST")
        };
        let r = body_err(&cfg, &no_session, CALL);
        assert_eq!((r.status, r.reason), (400, R::MissingSession));
        assert_eq!(json(&r.body)["id"], 4);
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#;
        assert!(on_body(
            &cfg,
            &Head {
                protocol_version: None,
                ..no_session.clone()
            },
            init.as_bytes()
        )
        .is_ok());
        let relaxed = Config::from_json(br#"{"requireSessionId":false}"#).unwrap_or_default();
        assert!(on_body(&relaxed, &no_session, CALL.as_bytes()).is_ok());
        let del = Head {
            session_id: None,
            ..head("DELETE")
        };
        assert_eq!(rejected(on_head(&cfg, &del)).reason, R::MissingSession);
    }

    #[test]
    fn stateless_revision_requires_matching_method_and_name_headers() {
        let cfg = Config::default();
        let good = Head {
            mcp_method: Some("tools/call".into()),
            mcp_name: Some("echo".into()),
            ..stateless()
        };
        assert!(on_body(&cfg, &good, CALL.as_bytes()).is_ok());
        let cases = [
            Head {
                mcp_method: None,
                ..good.clone()
            },
            Head {
                mcp_name: None,
                ..good.clone()
            },
            Head {
                mcp_method: Some("tools/list".into()),
                ..good.clone()
            },
            Head {
                mcp_name: Some("other".into()),
                ..good.clone()
            },
            Head {
                mcp_name: Some("=?base64?!!?=".into()),
                ..good.clone()
            },
        ];
        for h in cases {
            let r = body_err(&cfg, &h, CALL);
            assert_eq!((r.status, r.reason), (400, R::HeaderMismatch), "{h:?}");
            assert_eq!(json(&r.body)["error"]["code"], -32020);
        }
        let encoded = Head {
            mcp_name: Some("=?base64?ZWNobw==?=".into()),
            ..good.clone()
        };
        assert!(on_body(&cfg, &encoded, CALL.as_bytes()).is_ok());
        let meta = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}"#;
        let h = Head {
            mcp_method: Some("tools/list".into()),
            mcp_name: None,
            ..stateless()
        };
        assert_eq!(body_err(&cfg, &h, meta).reason, R::HeaderMismatch);
    }

    #[test]
    fn mirrored_headers_are_checked_on_older_revisions_when_present() {
        let cfg = Config::default();
        let h = Head {
            mcp_method: Some("tools/list".into()),
            ..head("POST")
        };
        assert_eq!(body_err(&cfg, &h, CALL).reason, R::HeaderMismatch);
        assert!(on_body(&cfg, &head("POST"), CALL.as_bytes()).is_ok());
    }

    #[test]
    fn accepted_requests_carry_header_safe_routing_values() {
        let cfg = Config::default();
        let a = body_ok(&cfg, &head("POST"), CALL);
        assert_eq!(a.method_value, "tools/call");
        assert_eq!(a.name_value.as_deref(), Some("echo"));
        assert_eq!(a.label.as_label(), "tools_call");
        let hostile = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\r\nx-injected: 1"}}"#;
        let a = body_ok(&cfg, &head("POST"), hostile);
        let v = a.name_value.unwrap_or_default();
        assert!(v.starts_with("=?base64?") && !v.contains('\n'));
        let resp = body_ok(
            &cfg,
            &head("POST"),
            r#"{"jsonrpc":"2.0","id":"s1","result":{}}"#,
        );
        assert_eq!(resp.label.as_label(), "response");
        assert_eq!(resp.name_value, None);
    }

    #[test]
    fn get_and_delete_are_forwarded_under_their_own_labels() {
        let cfg = Config::default();
        assert!(
            matches!(on_head(&cfg, &head("GET")), HeadVerdict::Forward(l) if l.as_label() == "http_get")
        );
        assert!(
            matches!(on_head(&cfg, &head("DELETE")), HeadVerdict::Forward(l) if l.as_label() == "http_delete")
        );
    }
}
