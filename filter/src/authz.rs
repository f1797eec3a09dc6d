//! Authorization glue: asks the Rego policy about each request, and filters merged lists so a
//! caller sees only what it may call.

use mcp_gateway_core::federation::Federation;
use mcp_gateway_core::jsonrpc::{self, code, RequestInfo};
use mcp_gateway_core::policy::{self, ListItem, Request, Subject, Target};
use mcp_gateway_core::response::Outcome;
use serde_json::Value;

use crate::host;
use crate::http::GatewayHttp;

fn policy_list_kind(method: &str) -> Option<(policy::ListKind, &'static str, &'static str)> {
    match method {
        "tools/list" => Some((policy::ListKind::Tools, "tools", "name")),
        "prompts/list" => Some((policy::ListKind::Prompts, "prompts", "name")),
        "resources/list" => Some((policy::ListKind::Resources, "resources", "uri")),
        _ => None,
    }
}

/// The policy's view of the caller (anonymous without authentication).
fn subject_of(identity: Option<&mcp_gateway_core::auth::IdentityData>) -> Subject<'_> {
    const NO_SCOPES: &[String] = &[];
    match identity {
        Some(id) => Subject {
            sub: Some(id.subject.as_str()),
            iss: id.issuer.as_deref(),
            scopes: &id.scopes,
            claims: Some(&id.claims),
        },
        None => Subject {
            sub: None,
            iss: None,
            scopes: NO_SCOPES,
            claims: None,
        },
    }
}

impl GatewayHttp {
    fn policy_headers(&self, names: &[String]) -> Vec<(String, String)> {
        names
            .iter()
            .filter_map(|n| host::request_header(n).map(|v| (n.clone(), v)))
            .collect()
    }

    /// Runs the policy on an accepted request. On a denial answers with a JSON-RPC error carrying
    /// the policy's reason and returns false. Without a policy everything is allowed.
    pub(crate) fn authorize(&mut self, info: &RequestInfo, body: &[u8]) -> bool {
        let Some(policy) = self.config.policy.clone() else {
            return true;
        };
        let method = info.method.as_deref().unwrap_or_default();
        if !policy.applies_to(method) {
            return true;
        }
        let headers = self.policy_headers(policy.header_names());
        let header_refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // Under federation the policy sees the server's own tool/prompt name and the server.
        let (server, own_name) = match self.server_of(info) {
            Some((server, own)) => (Some(server), Some(own)),
            None => (None, info.name.clone()),
        };
        let identity = self.identity.clone();
        let subject = subject_of(identity.as_deref());
        let request = Request {
            subject,
            method,
            server: server.as_deref(),
            target: Target::of(method, own_name.as_deref(), info.uri.as_deref()),
            arguments: policy::params_arguments(body),
            session: self.head.session_id.as_deref(),
            headers: &header_refs,
            unix_seconds: crate::authn::now_secs(),
        };
        let (decision, cache) = policy.decide_cached(&request);
        {
            let mut stats = self.stats.borrow_mut();
            stats.policy(if decision.allow { "allow" } else { "deny" });
            match cache {
                policy::CacheUse::Hit => stats.policy_cache(true),
                policy::CacheUse::Miss => stats.policy_cache(false),
                policy::CacheUse::Bypass => {}
            }
        }
        self.trace.redact = decision.redact.clone();
        if decision.allow {
            self.trace.decision = Some("allow");
            return true;
        }
        self.trace.decision = Some("deny");
        if let Some(e) = &decision.error {
            log::warn!("policy evaluation failed (denied): {e}");
        }
        let reason = decision
            .reason
            .as_deref()
            .unwrap_or(policy::reason::NO_DECISION);
        self.trace.reason = Some(reason.to_owned());
        let mut data = String::from("{\"reason\":");
        jsonrpc::push_json_string(&mut data, reason);
        data.push('}');
        let body = jsonrpc::error_body(
            info.id.as_deref(),
            code::INVALID_REQUEST,
            &format!("Forbidden by policy: {reason}"),
            Some(&data),
        );
        self.deny(&body);
        false
    }

    /// The server a request targets and its own name there (federation with prefixes).
    pub(crate) fn server_of(&self, info: &RequestInfo) -> Option<(String, String)> {
        let fed = self.config.federation.as_ref()?;
        let name = info.name.as_deref()?;
        let (i, own) = fed.split(name)?;
        fed.servers.get(i).map(|s| (s.name.clone(), own.to_owned()))
    }

    /// Removes from a list reply (`{"jsonrpc","id","result":{"tools":[…]}}`) what the policy
    /// would not let this caller call. Returns the body unchanged without a policy.
    pub(crate) fn filter_listing(&self, fed: Option<&Federation>, body: &str) -> Option<String> {
        let policy = self.config.policy.clone()?;
        let info = self.info.as_ref()?;
        let method = info.method.as_deref()?;
        let (kind, field, key) = policy_list_kind(method)?;
        let mut reply: Value = serde_json::from_str(body).ok()?;
        let items = reply.get_mut("result")?.get_mut(field)?.as_array_mut()?;
        let names: Vec<(String, Option<String>)> = items
            .iter()
            .map(|item| {
                let facing = item.get(key).and_then(Value::as_str).unwrap_or_default();
                match fed.and_then(|f| f.split(facing).map(|(i, own)| (f, i, own))) {
                    Some((f, i, own)) => (own.to_owned(), f.servers.get(i).map(|s| s.name.clone())),
                    None => (facing.to_owned(), None),
                }
            })
            .collect();
        let list: Vec<ListItem<'_>> = names
            .iter()
            .map(|(n, s)| ListItem {
                name: n,
                server: s.as_deref(),
            })
            .collect();
        let identity = self.identity.clone();
        let subject = subject_of(identity.as_deref());
        let headers = self.policy_headers(policy.header_names());
        let header_refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let input = policy.input(&Request {
            subject,
            method,
            server: None,
            target: Target::None,
            arguments: None,
            session: self.head.session_id.as_deref(),
            headers: &header_refs,
            unix_seconds: crate::authn::now_secs(),
        });
        // One evaluation per server: a bulk `visible_*` rule answers with names, and the same
        // name can belong to two servers (`echo` on both) with different verdicts.
        let mut flags = vec![false; list.len()];
        let mut servers: Vec<Option<&str>> = list.iter().map(|i| i.server).collect();
        servers.sort_unstable();
        servers.dedup();
        for server in servers {
            let positions: Vec<usize> = (0..list.len())
                .filter(|&i| list.get(i).is_some_and(|item| item.server == server))
                .collect();
            let group: Vec<ListItem<'_>> = positions
                .iter()
                .filter_map(|&i| list.get(i).copied())
                .collect();
            let visibility = policy.visible(&input, kind, &group);
            if let Some(e) = &visibility.error {
                log::warn!("policy list filtering failed (items hidden): {e}");
            }
            for (pos, visible) in positions.iter().zip(visibility.visible) {
                if let Some(flag) = flags.get_mut(*pos) {
                    *flag = visible;
                }
            }
        }
        let mut flags = flags.into_iter();
        items.retain(|_| flags.next().unwrap_or(false));
        Some(reply.to_string())
    }

    /// Answers a request the policy refused.
    fn deny(&mut self, body: &str) {
        self.mark_replied();
        self.record(Outcome::Denied, Some(code::INVALID_REQUEST), None, None);
        host::send_reply(
            200,
            &[("content-type", "application/json")],
            body.as_bytes(),
        );
    }
}
