//! Merging what several upstream servers answered into what one server would answer.

use serde_json::{Map, Value};

use crate::federation::config::Federation;
use crate::protocol::{is_stateless, KNOWN_VERSIONS};

/// The list methods the gateway aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

impl ListKind {
    pub const ALL: [ListKind; 4] = [
        ListKind::Tools,
        ListKind::Prompts,
        ListKind::Resources,
        ListKind::ResourceTemplates,
    ];

    pub fn of_method(method: &str) -> Option<ListKind> {
        match method {
            "tools/list" => Some(ListKind::Tools),
            "prompts/list" => Some(ListKind::Prompts),
            "resources/list" => Some(ListKind::Resources),
            "resources/templates/list" => Some(ListKind::ResourceTemplates),
            _ => None,
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::ResourceTemplates => "resources/templates/list",
        }
    }

    /// The array member of the result.
    pub fn field(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
        }
    }

    /// The member that identifies an item: a name the gateway prefixes, or a URI it keeps.
    pub fn key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::ResourceTemplates => "uriTemplate",
        }
    }

    pub fn capability(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources | ListKind::ResourceTemplates => "resources",
        }
    }

    /// The notification that says this list changed upstream.
    pub fn of_list_changed(method: &str) -> Option<&'static [ListKind]> {
        match method {
            "notifications/tools/list_changed" => Some(&[ListKind::Tools]),
            "notifications/prompts/list_changed" => Some(&[ListKind::Prompts]),
            "notifications/resources/list_changed" => {
                Some(&[ListKind::Resources, ListKind::ResourceTemplates])
            }
            _ => None,
        }
    }
}

/// Items of one list kind gathered from every server, page by page.
#[derive(Debug)]
pub struct ListAccumulator {
    kind: ListKind,
    per_server: Vec<Vec<Value>>,
}

/// Most pages the gateway follows per server, so a looping cursor can't hold a request forever.
pub const MAX_PAGES: usize = 50;

impl ListAccumulator {
    pub fn new(kind: ListKind, servers: usize) -> Self {
        ListAccumulator {
            kind,
            per_server: vec![Vec::new(); servers],
        }
    }

    /// Adds one page from `server`; returns the cursor of the next page, if any.
    pub fn add_page(&mut self, server: usize, mut result: Value) -> Option<String> {
        let items = result
            .get_mut(self.kind.field())
            .map(Value::take)
            .and_then(|v| match v {
                Value::Array(a) => Some(a),
                _ => None,
            })
            .unwrap_or_default();
        if let Some(list) = self.per_server.get_mut(server) {
            list.extend(items);
        }
        result
            .get("nextCursor")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
    }

    /// The merged result object and which server owns each client-facing key.
    pub fn finish(self, fed: &Federation) -> MergedList {
        let key = self.kind.key();
        let renames = matches!(self.kind, ListKind::Tools | ListKind::Prompts);
        let mut owners: Vec<(String, usize)> = Vec::new();
        let mut items: Vec<Value> = Vec::new();
        let mut ambiguous = Vec::new();
        let mut hidden = 0u32;
        // Without prefixes a name offered by two servers can't be routed: drop it everywhere.
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        if renames && !fed.prefix_names {
            for list in &self.per_server {
                for item in list {
                    if let Some(k) = item.get(key).and_then(Value::as_str) {
                        *seen.entry(k.to_owned()).or_default() += 1;
                    }
                }
            }
        }
        for (i, list) in self.per_server.into_iter().enumerate() {
            let Some(server) = fed.servers.get(i) else {
                continue;
            };
            for mut item in list {
                let Some(own) = item.get(key).and_then(Value::as_str).map(str::to_owned) else {
                    continue;
                };
                if self.kind == ListKind::Tools && !server.exposes_tool(&own) {
                    hidden += 1;
                    continue;
                }
                if renames && !fed.prefix_names && seen.get(&own).copied().unwrap_or(0) > 1 {
                    if !ambiguous.contains(&own) {
                        ambiguous.push(own);
                    }
                    continue;
                }
                if !renames && owners.iter().any(|(k, _)| *k == own) {
                    // The same URI from two servers: the first in config order owns it.
                    if !ambiguous.contains(&own) {
                        ambiguous.push(own);
                    }
                    continue;
                }
                let facing = if renames {
                    fed.qualify(server, &own)
                } else {
                    own
                };
                if renames {
                    if let Some(obj) = item.as_object_mut() {
                        obj.insert(key.to_owned(), Value::String(facing.clone()));
                    }
                }
                owners.push((facing, i));
                items.push(item);
            }
        }
        let mut result = Map::new();
        result.insert(self.kind.field().to_owned(), Value::Array(items));
        MergedList {
            result: Value::Object(result),
            owners,
            ambiguous,
            hidden,
        }
    }
}

#[derive(Debug)]
pub struct MergedList {
    /// The `result` object to answer with (no `nextCursor`: the gateway follows cursors itself).
    pub result: Value,
    /// Client-facing key (name or URI/template) → index of the owning server.
    pub owners: Vec<(String, usize)>,
    /// Names dropped because two servers offer them (unprefixed mode), and URIs a later server
    /// offered again (the first server in config order keeps them).
    pub ambiguous: Vec<String>,
    /// Tools hidden by the servers' allow/deny lists.
    pub hidden: u32,
}

/// The protocol version the gateway answers a session-based client with: the client's own if the
/// gateway knows it, else the newest session-based revision.
pub fn negotiate_version(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|r| KNOWN_VERSIONS.iter().find(|v| **v == r && !is_stateless(v)))
        .or_else(|| KNOWN_VERSIONS.iter().find(|v| !is_stateless(v)))
        .copied()
        .unwrap_or("2025-11-25")
}

/// One server's part of a merged `initialize`.
pub struct InitPart<'a> {
    pub server: &'a str,
    pub result: &'a Value,
}

/// The merged `initialize` result: union of capabilities, the gateway's own identity, and each
/// server's instructions under its name.
pub fn merge_initialize(version: &str, parts: &[InitPart<'_>]) -> Value {
    let mut caps = Map::new();
    let mut instructions = Vec::new();
    for part in parts {
        if let Some(c) = part.result.get("capabilities").and_then(Value::as_object) {
            for (name, value) in c {
                if name == "experimental" {
                    continue;
                }
                let entry = caps
                    .entry(name.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                // Boolean sub-capabilities (listChanged, subscribe) are true if any server has them.
                if let (Some(into), Some(from)) = (entry.as_object_mut(), value.as_object()) {
                    for (k, v) in from {
                        if v.as_bool() == Some(true) {
                            into.insert(k.clone(), Value::Bool(true));
                        }
                    }
                }
            }
        }
        if let Some(text) = part.result.get("instructions").and_then(Value::as_str) {
            if !text.trim().is_empty() {
                instructions.push(format!("[{}] {}", part.server, text.trim()));
            }
        }
    }
    let mut result = Map::new();
    result.insert("protocolVersion".into(), Value::String(version.to_owned()));
    result.insert("capabilities".into(), Value::Object(caps));
    result.insert(
        "serverInfo".into(),
        serde_json::json!({"name": "mcp-gateway-wasm", "version": env!("CARGO_PKG_VERSION")}),
    );
    if !instructions.is_empty() {
        result.insert(
            "instructions".into(),
            Value::String(instructions.join("\n\n")),
        );
    }
    Value::Object(result)
}

/// The merged `server/discover` result for stateless (2026-07-28) clients: the same union of
/// capabilities and instructions as [`merge_initialize`], in the discover shape.
pub fn merge_discover(parts: &[InitPart<'_>]) -> Value {
    let merged = merge_initialize(crate::protocol::FIRST_STATELESS, parts);
    let mut result = Map::new();
    result.insert("resultType".into(), Value::String("complete".into()));
    result.insert(
        "supportedVersions".into(),
        Value::Array(vec![Value::String(crate::protocol::FIRST_STATELESS.into())]),
    );
    if let Some(c) = merged.get("capabilities") {
        result.insert("capabilities".into(), c.clone());
    }
    if let Some(i) = merged.get("instructions") {
        result.insert("instructions".into(), i.clone());
    }
    if let Some(info) = merged.get("serverInfo") {
        let mut meta = Map::new();
        meta.insert("io.modelcontextprotocol/serverInfo".into(), info.clone());
        result.insert("_meta".into(), Value::Object(meta));
    }
    Value::Object(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn fed(prefix: bool) -> Federation {
        let cfg = format!(
            r#"{{"servers":[{{"name":"a","cluster":"ca","tools":{{"deny":["secret*"]}}}},{{"name":"b","cluster":"cb"}}],
               "federation":{{"sessionKey":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","prefixNames":{prefix}}}}}"#
        );
        match Config::from_json(cfg.as_bytes()) {
            Ok(c) => c.federation.unwrap_or_else(|| unreachable!()),
            Err(e) => unreachable!("{e}"),
        }
    }

    #[test]
    fn tools_are_prefixed_filtered_and_owned() {
        let f = fed(true);
        let mut acc = ListAccumulator::new(ListKind::Tools, 2);
        assert_eq!(acc.add_page(0, json!({"tools":[{"name":"echo","inputSchema":{}}, {"name":"secret-env"}], "nextCursor":"p2"})), Some("p2".into()));
        assert_eq!(acc.add_page(0, json!({"tools":[{"name":"add"}]})), None);
        acc.add_page(1, json!({"tools":[{"name":"echo","description":"b's"}]}));
        let m = acc.finish(&f);
        let names: Vec<&str> = m.result["tools"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(names, vec!["a__echo", "a__add", "b__echo"]);
        assert_eq!(m.result["tools"][2]["description"], "b's");
        assert_eq!(m.hidden, 1);
        assert!(m.owners.contains(&("b__echo".into(), 1)));
        assert!(m.result.get("nextCursor").is_none());
    }

    #[test]
    fn unprefixed_mode_drops_ambiguous_names_and_keeps_unique_ones() {
        let f = fed(false);
        let mut acc = ListAccumulator::new(ListKind::Tools, 2);
        acc.add_page(0, json!({"tools":[{"name":"echo"},{"name":"add"}]}));
        acc.add_page(1, json!({"tools":[{"name":"echo"},{"name":"mul"}]}));
        let m = acc.finish(&f);
        assert_eq!(m.ambiguous, vec!["echo".to_owned()]);
        assert_eq!(m.owners, vec![("add".into(), 0), ("mul".into(), 1)]);
    }

    #[test]
    fn resources_keep_their_uris() {
        let f = fed(true);
        let mut acc = ListAccumulator::new(ListKind::Resources, 2);
        acc.add_page(
            1,
            json!({"resources":[{"uri":"test://static/1","name":"r1"}]}),
        );
        let m = acc.finish(&f);
        assert_eq!(m.result["resources"][0]["uri"], "test://static/1");
        assert_eq!(m.owners, vec![("test://static/1".into(), 1)]);
    }

    #[test]
    fn a_uri_offered_twice_belongs_to_the_first_server() {
        let f = fed(true);
        let mut acc = ListAccumulator::new(ListKind::Resources, 2);
        acc.add_page(0, json!({"resources":[{"uri":"test://x","name":"a"}]}));
        acc.add_page(
            1,
            json!({"resources":[{"uri":"test://x","name":"b"},{"uri":"test://y"}]}),
        );
        let m = acc.finish(&f);
        assert_eq!(
            m.owners,
            vec![("test://x".into(), 0), ("test://y".into(), 1)]
        );
        assert_eq!(m.result["resources"].as_array().map(Vec::len), Some(2));
        assert_eq!(m.ambiguous, vec!["test://x".to_owned()]);
    }

    #[test]
    fn initialize_merges_capabilities_as_a_union() {
        let a = json!({"capabilities":{"tools":{"listChanged":true},"logging":{}},"instructions":"use a"});
        let b = json!({"capabilities":{"tools":{},"resources":{"subscribe":true},"experimental":{"x":{}}}});
        let r = merge_initialize(
            "2025-11-25",
            &[
                InitPart {
                    server: "a",
                    result: &a,
                },
                InitPart {
                    server: "b",
                    result: &b,
                },
            ],
        );
        assert_eq!(r["capabilities"]["tools"]["listChanged"], true);
        assert_eq!(r["capabilities"]["resources"]["subscribe"], true);
        assert!(r["capabilities"]["logging"].is_object());
        assert!(r["capabilities"].get("experimental").is_none());
        assert_eq!(r["serverInfo"]["name"], "mcp-gateway-wasm");
        assert_eq!(r["instructions"], "[a] use a");
    }

    #[test]
    fn version_negotiation_prefers_the_clients_known_session_revision() {
        assert_eq!(negotiate_version(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate_version(Some("2099-01-01")), "2025-11-25");
        assert_eq!(negotiate_version(None), "2025-11-25");
        assert_eq!(negotiate_version(Some("2026-07-28")), "2025-11-25");
    }
}
