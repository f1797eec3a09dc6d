//! Result cache for `tools/call`: successful results of cacheable tools, shared by all workers.
//!
//! A tool is cacheable when config lists it (server/tool globs) or, with `readOnlyHint: true`
//! in config, when its latest `tools/list` declared `annotations.readOnlyHint: true`. The key is
//! SHA-256 over the caller's scope, the server, the tool, the canonical arguments
//! ([`crate::canonical::canonicalize`], exact for numbers) and the protocol revision (result
//! shapes differ between revisions). Arguments with duplicate keys are not cached: a key must
//! never merge two calls that could give different results.
//!
//! Storage is a direct-mapped table of `maxEntries` shared-data keys: the key hash picks a slot,
//! the slot holds the full key hash, the expiry and the result; a newer store overwrites. A
//! lookup that finds an expired entry empties the slot, so its memory is given back. Memory is
//! bounded by `maxEntries × (maxEntryBytes + 41)`; results larger than `maxEntryBytes` are not
//! stored. JSON-RPC errors, `isError: true` results and incomplete results (`resultType` other
//! than `"complete"`, MCP 2026-07-28) are never stored.
//!
//! The stored bytes are the `result` object with `_meta["io.mcpgw/cache"] = "hit"` already
//! added, so a hit is answered by concatenating the new request's id around them.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::canonical::{canonicalize, parse_object};
use crate::config::ConfigError;
use crate::jsonrpc::push_json_string;
use crate::selector::{RawToolMatch, ToolMatch};
use crate::store::SharedStore;

/// The `_meta` key that marks a cached result.
pub const HIT_META_KEY: &str = "io.mcpgw/cache";

const VERSION: u8 = 1;
const HEADER_BYTES: usize = 1 + 32 + 8;
const DEFAULT_TTL_SECONDS: u64 = 60;
const DEFAULT_MAX_ENTRIES: u32 = 1024;
const DEFAULT_MAX_ENTRY_BYTES: u32 = 64 * 1024;

/// The `resultCache` section as users write it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawResultCache {
    /// Tools whose results are cached (server/tool globs over the server's own names), each
    /// with an optional `ttlSeconds`.
    pub tools: Option<Vec<RawCacheTool>>,
    /// Also cache tools whose `tools/list` entry declares `annotations.readOnlyHint: true`.
    /// Default false: the hint comes from the server, and a read-only tool may still return
    /// different results each time.
    pub read_only_hint: Option<bool>,
    /// How long a result is served from the cache, 1 to 86400 seconds. Default 60.
    pub ttl_seconds: Option<u64>,
    /// Whose calls share results: `"subject"` (default: each caller its own), `"global"`
    /// (everyone: only for tools whose results do not depend on who asks), or `"claim:<name>"`
    /// (callers with the same value of a token claim, e.g. `claim:tenant`). Callers without a
    /// value (anonymous, claim missing) are not cached, except with `global`.
    pub scope: Option<String>,
    /// Slots in shared data, 1 to 65536. Default 1024.
    pub max_entries: Option<u32>,
    /// Largest result stored, in bytes, 1 to 1048576. Default 65536.
    pub max_entry_bytes: Option<u32>,
}

/// One cacheable tool selector.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawCacheTool {
    /// Glob over the server name. Absent: any server.
    pub server: Option<String>,
    /// Glob over the server's own tool name.
    pub tool: String,
    /// TTL for these tools, overriding the section's `ttlSeconds`.
    pub ttl_seconds: Option<u64>,
}

/// Whose calls share cached results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Subject,
    Global,
    /// A token claim's value.
    Claim(String),
}

/// The compiled `resultCache` section.
#[derive(Debug, Clone)]
pub struct ResultCache {
    tools: Vec<(ToolMatch, u64)>,
    read_only_hint: bool,
    ttl_ms: u64,
    pub scope: Scope,
    max_entries: u32,
    max_entry_bytes: usize,
}

/// A cache key: the SHA-256 of everything that selects a result, and the TTL of its tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheKey {
    pub hash: [u8; 32],
    pub ttl_ms: u64,
}

/// What makes up a key, as the glue knows it at the request.
#[derive(Debug, Clone, Copy)]
pub struct CallFacts<'a> {
    /// The value of the configured [`Scope`] for this caller: the subject, the claim value, or
    /// anything (ignored) for `Global`. `None`: the caller has none (not cached).
    pub scope_value: Option<&'a str>,
    pub server: Option<&'a str>,
    /// The server's own tool name.
    pub tool: &'a str,
    /// `params.arguments` raw ([`call_arguments`]); `None` when absent.
    pub arguments: Option<&'a RawValue>,
    /// The request's protocol revision (`MCP-Protocol-Version`).
    pub protocol_version: &'a str,
}

/// Why a response was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// A JSON-RPC error, `isError: true`, an incomplete result, or not a JSON-RPC response.
    NotCacheable,
    /// Larger than `maxEntryBytes`.
    TooLarge,
    /// Shared data refused the write.
    StoreFailed,
}

fn invalid(field: String, problem: String) -> ConfigError {
    ConfigError::Invalid { field, problem }
}

fn ranged(field: String, value: u64, hi: u64) -> Result<u64, ConfigError> {
    if value == 0 || value > hi {
        return Err(invalid(
            field,
            format!("must be between 1 and {hi}, got {value}"),
        ));
    }
    Ok(value)
}

impl ResultCache {
    /// Compiles the `resultCache` section; `path` names it in errors (`resultCache`).
    pub fn compile(raw: RawResultCache, path: &str) -> Result<ResultCache, ConfigError> {
        let ttl = ranged(
            format!("{path}.ttlSeconds"),
            raw.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS),
            86_400,
        )?;
        let mut tools = Vec::new();
        for (i, t) in raw.tools.unwrap_or_default().into_iter().enumerate() {
            let at = format!("{path}.tools[{i}]");
            let m = ToolMatch::compile(
                &RawToolMatch {
                    server: t.server,
                    tool: t.tool,
                },
                &at,
            )?;
            let ttl = match t.ttl_seconds {
                Some(s) => ranged(format!("{at}.ttlSeconds"), s, 86_400)?,
                None => ttl,
            };
            tools.push((m, ttl * 1000));
        }
        let read_only_hint = raw.read_only_hint.unwrap_or(false);
        if tools.is_empty() && !read_only_hint {
            return Err(invalid(
                path.to_owned(),
                "caches nothing: list `tools` or set `readOnlyHint: true`".into(),
            ));
        }
        let scope = match raw.scope.as_deref() {
            None | Some("subject") => Scope::Subject,
            Some("global") => Scope::Global,
            Some(s) => match s.strip_prefix("claim:") {
                Some(claim) if !claim.is_empty() => Scope::Claim(claim.to_owned()),
                _ => {
                    return Err(invalid(
                        format!("{path}.scope"),
                        format!("{s:?} must be \"subject\", \"global\" or \"claim:<name>\""),
                    ))
                }
            },
        };
        let max_entries = ranged(
            format!("{path}.maxEntries"),
            u64::from(raw.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES)),
            65_536,
        )?;
        let max_entry_bytes = ranged(
            format!("{path}.maxEntryBytes"),
            u64::from(raw.max_entry_bytes.unwrap_or(DEFAULT_MAX_ENTRY_BYTES)),
            1024 * 1024,
        )?;
        Ok(ResultCache {
            tools,
            read_only_hint,
            ttl_ms: ttl * 1000,
            scope,
            max_entries: u32::try_from(max_entries).unwrap_or(DEFAULT_MAX_ENTRIES),
            max_entry_bytes: usize::try_from(max_entry_bytes).unwrap_or(1024 * 1024),
        })
    }

    /// The TTL for a tool in ms, `None` when it is not cacheable. `read_only_hint`: what the
    /// tool's latest list entry declared (`pinning::ToolState::hints`), `false` when unknown.
    pub fn ttl_for(&self, server: Option<&str>, tool: &str, read_only_hint: bool) -> Option<u64> {
        self.tools
            .iter()
            .find(|(m, _)| m.matches(server, tool))
            .map(|(_, ttl)| *ttl)
            .or((self.read_only_hint && read_only_hint).then_some(self.ttl_ms))
    }

    /// Whether the registry's hints matter (the glue can skip looking them up otherwise).
    pub fn uses_read_only_hint(&self) -> bool {
        self.read_only_hint
    }

    /// The key of a call, `None` when it is not cached (tool not cacheable, caller without a
    /// scope value, arguments without an exact canonical form).
    pub fn key(&self, call: &CallFacts<'_>, read_only_hint: bool) -> Option<CacheKey> {
        let ttl_ms = self.ttl_for(call.server, call.tool, read_only_hint)?;
        let mut h = Sha256::new();
        h.update(b"mcpgw.rc.v1\0");
        let scope = match (&self.scope, call.scope_value) {
            (Scope::Global, _) => None,
            (_, Some(v)) => Some(v),
            (_, None) => return None,
        };
        for part in [
            scope,
            call.server,
            Some(call.tool),
            Some(call.protocol_version),
        ] {
            hash_part(&mut h, part);
        }
        match call.arguments {
            Some(raw) => {
                let canon = canonicalize(raw.get()).ok()?;
                hash_part(&mut h, Some(&canon));
            }
            None => hash_part(&mut h, None),
        }
        Some(CacheKey {
            hash: h.finalize().into(),
            ttl_ms,
        })
    }

    /// The shared-data key of the slot `key` maps to.
    pub fn slot_key(&self, key: &CacheKey) -> String {
        let mut pick = [0u8; 8];
        pick.copy_from_slice(key.hash.get(..8).unwrap_or(&[0; 8]));
        let slot = u64::from_le_bytes(pick) % u64::from(self.max_entries.max(1));
        format!("mcpgw.rc.{slot}")
    }

    /// The cached `result` bytes for `key`, with the hit marker in `_meta`; `None` on a miss.
    /// Call it in the request-body callback of a cacheable `tools/call`; on a hit answer with
    /// [`hit_response`] and do not forward.
    pub fn lookup(&self, store: &dyn SharedStore, key: &CacheKey, now_ms: u64) -> Option<Vec<u8>> {
        let slot = self.slot_key(key);
        let current = store.get(&slot).ok()??;
        let (hash, rest) = match current.value.split_first() {
            Some((&VERSION, rest)) => rest.split_at_checked(32)?,
            _ => return None,
        };
        if hash != key.hash {
            return None;
        }
        let (expiry, result) = rest.split_at_checked(8)?;
        let mut e = [0u8; 8];
        e.copy_from_slice(expiry);
        if u64::from_le_bytes(e) <= now_ms {
            // Give the memory back, unless another worker stored something meanwhile.
            let _ = store.set(&slot, &[], Some(current.cas));
            return None;
        }
        Some(result.to_vec())
    }

    /// Stores a `tools/call` response body for `key` if it is a successful, complete result no
    /// larger than `maxEntryBytes`. Call it when the final response has been seen (JSON body, or
    /// the data of the SSE event that carries the response).
    pub fn store(
        &self,
        store: &dyn SharedStore,
        key: &CacheKey,
        response_body: &[u8],
        now_ms: u64,
    ) -> Result<(), NotStored> {
        let result = cacheable_result(response_body).ok_or(NotStored::NotCacheable)?;
        if result.get().len() > self.max_entry_bytes {
            return Err(NotStored::TooLarge);
        }
        let marked = mark_hit(result).ok_or(NotStored::NotCacheable)?;
        if marked.len() > self.max_entry_bytes {
            return Err(NotStored::TooLarge);
        }
        let mut value = Vec::with_capacity(HEADER_BYTES + marked.len());
        value.push(VERSION);
        value.extend_from_slice(&key.hash);
        value.extend_from_slice(&now_ms.saturating_add(key.ttl_ms).to_le_bytes());
        value.extend_from_slice(marked.as_bytes());
        // Unconditional: the newest result for a slot wins.
        store
            .set(&self.slot_key(key), &value, None)
            .map_err(|_| NotStored::StoreFailed)
    }
}

fn hash_part(h: &mut Sha256, part: Option<&str>) {
    match part {
        Some(p) => {
            h.update([1]);
            h.update((p.len() as u64).to_le_bytes());
            h.update(p.as_bytes());
        }
        None => h.update([0]),
    }
}

#[derive(Deserialize)]
struct CallEnvelope<'a> {
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

/// `params.arguments` of a `tools/call` body, raw (`None` when absent or `null`).
pub fn call_arguments(body: &[u8]) -> Option<&RawValue> {
    let env: CallEnvelope<'_> = parse_object(std::str::from_utf8(body).ok()?)?;
    let params: CallParams<'_> = parse_object(env.params?.get())?;
    params.arguments.filter(|a| a.get() != "null")
}

#[derive(Deserialize)]
struct ResponseEnvelope<'a> {
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

/// The `result` of a response worth caching: no error, an object, not `isError: true`, and
/// complete (`resultType` absent or `"complete"`).
fn cacheable_result(body: &[u8]) -> Option<&RawValue> {
    let env: ResponseEnvelope<'_> = parse_object(std::str::from_utf8(body).ok()?)?;
    if env.error.is_some() {
        return None;
    }
    let result = env.result?;
    let members = Members::parse(result.get())?;
    let is_error = members.get("isError").is_some_and(|v| v.get() != "false");
    let complete = members
        .get("resultType")
        .is_none_or(|v| v.get() == "\"complete\"");
    (!is_error && complete).then_some(result)
}

/// An object's members in order, values raw; `None` for non-objects and duplicate keys.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Members<'a> {
    fn parse(json: &'a str) -> Option<Members<'a>> {
        let m: Members<'a> = serde_json::from_str(json).ok()?;
        let mut keys: Vec<&str> = m.0.iter().map(|(k, _)| k.as_ref()).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|w| matches!(w, [a, b] if a == b)) {
            return None;
        }
        Some(m)
    }

    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                    let v: &'de RawValue = map.next_value()?;
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// `result` with `_meta["io.mcpgw/cache"] = "hit"`; `None` if `_meta` is not an object.
fn mark_hit(result: &RawValue) -> Option<String> {
    let members = Members::parse(result.get())?;
    let mut out = String::with_capacity(result.get().len() + 32);
    out.push('{');
    let mut meta_seen = false;
    for (i, (k, v)) in members.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(&mut out, k);
        out.push(':');
        if k == "_meta" {
            meta_seen = true;
            let meta = Members::parse(v.get())?;
            out.push('{');
            let mut first = true;
            for (mk, mv) in meta.0.iter().filter(|(mk, _)| mk != HIT_META_KEY) {
                if !first {
                    out.push(',');
                }
                first = false;
                push_json_string(&mut out, mk);
                out.push(':');
                out.push_str(mv.get());
            }
            if !first {
                out.push(',');
            }
            push_hit_marker(&mut out);
            out.push('}');
        } else {
            out.push_str(v.get());
        }
    }
    if !meta_seen {
        if !members.0.is_empty() {
            out.push(',');
        }
        out.push_str("\"_meta\":{");
        push_hit_marker(&mut out);
        out.push('}');
    }
    out.push('}');
    Some(out)
}

fn push_hit_marker(out: &mut String) {
    push_json_string(out, HIT_META_KEY);
    out.push_str(":\"hit\"");
}

/// The response to a request with raw `id` (`RequestInfo::id`) from cached `result` bytes.
/// Send it as `200`, `content-type: application/json`, with `x-mcp-cache: hit`.
pub fn hit_response(id: &str, cached: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cached.len() + id.len() + 40);
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b",\"result\":");
    out.extend_from_slice(cached);
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn cache(json: &str) -> ResultCache {
        let raw: RawResultCache = match serde_json::from_str(json) {
            Ok(r) => r,
            Err(e) => unreachable!("{json}: {e}"),
        };
        match ResultCache::compile(raw, "resultCache") {
            Ok(c) => c,
            Err(e) => unreachable!("{json}: {e}"),
        }
    }

    const CONFIG: &str = r#"{"tools":[{"server":"*","tool":"get_*"}],"ttlSeconds":60}"#;
    const OK: &[u8] =
        br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"sunny"}]}}"#;

    fn raw(s: &str) -> Box<RawValue> {
        match RawValue::from_string(s.to_owned()) {
            Ok(r) => r,
            Err(e) => unreachable!("{s}: {e}"),
        }
    }

    fn facts<'a>(scope: Option<&'a str>, args: Option<&'a RawValue>) -> CallFacts<'a> {
        CallFacts {
            scope_value: scope,
            server: Some("weather"),
            tool: "get_forecast",
            arguments: args,
            protocol_version: "2025-11-25",
        }
    }

    fn key_of(c: &ResultCache, scope: Option<&str>, args: &str) -> Option<CacheKey> {
        let a = raw(args);
        c.key(&facts(scope, Some(&a)), false)
    }

    #[test]
    fn key_order_whitespace_and_escapes_do_not_change_the_key() {
        let c = cache(CONFIG);
        let base = key_of(&c, Some("alice"), r#"{"city":"Zürich","days":3}"#);
        assert!(base.is_some());
        for same in [
            r#"{"days":3,"city":"Zürich"}"#,
            r#" { "city" : "Z\u00fcrich" , "days" : 3 } "#,
            r#"{"city":"Z\u00FCrich","days":3}"#,
        ] {
            assert_eq!(key_of(&c, Some("alice"), same), base, "{same}");
        }
        for different in [
            r#"{"city":"Zurich","days":3}"#,
            r#"{"city":"Zürich","days":3.0}"#,
            r#"{"city":"Zürich","days":"3"}"#,
            r#"{"city":"Zürich"}"#,
        ] {
            assert_ne!(key_of(&c, Some("alice"), different), base, "{different}");
        }
    }

    #[test]
    fn scope_server_tool_and_protocol_separate_keys() {
        let c = cache(CONFIG);
        let a = raw("{}");
        let base = c.key(&facts(Some("alice"), Some(&a)), false);
        let variants = [
            facts(Some("bob"), Some(&a)),
            CallFacts {
                server: Some("other"),
                ..facts(Some("alice"), Some(&a))
            },
            CallFacts {
                tool: "get_other",
                ..facts(Some("alice"), Some(&a))
            },
            CallFacts {
                protocol_version: "2026-07-28",
                ..facts(Some("alice"), Some(&a))
            },
            facts(Some("alice"), None),
        ];
        for v in variants {
            let k = c.key(&v, false);
            assert!(k.is_some());
            assert_ne!(k, base, "{v:?}");
        }
    }

    #[test]
    fn callers_without_a_scope_value_are_not_cached_unless_global() {
        let c = cache(CONFIG);
        assert_eq!(key_of(&c, None, "{}"), None);
        let g = cache(r#"{"tools":[{"tool":"get_*"}],"scope":"global"}"#);
        assert!(key_of(&g, None, "{}").is_some());
        assert_eq!(key_of(&g, None, "{}"), key_of(&g, Some("anyone"), "{}"));
    }

    #[test]
    fn arguments_that_cannot_be_keyed_exactly_are_not_cached() {
        let c = cache(CONFIG);
        for args in [r#"{"a":1,"a":2}"#, r#"{"n":1e400}"#] {
            assert_eq!(key_of(&c, Some("alice"), args), None, "{args}");
        }
    }

    #[test]
    fn tools_are_cacheable_by_config_or_by_read_only_hint_when_enabled() {
        let c = cache(
            r#"{"tools":[{"server":"weather","tool":"get_*","ttlSeconds":5}],"readOnlyHint":true,"ttlSeconds":30}"#,
        );
        assert_eq!(c.ttl_for(Some("weather"), "get_x", false), Some(5_000));
        assert_eq!(c.ttl_for(Some("other"), "get_x", false), None);
        assert_eq!(c.ttl_for(Some("other"), "get_x", true), Some(30_000));
        let no_hints = cache(CONFIG);
        assert_eq!(no_hints.ttl_for(Some("weather"), "lookup", true), None);
    }

    #[test]
    fn a_stored_result_is_served_until_it_expires() {
        let c = cache(CONFIG);
        let s = MemoryStore::new();
        let Some(k) = key_of(&c, Some("alice"), "{}") else {
            unreachable!()
        };
        assert_eq!(c.lookup(&s, &k, 1_000), None);
        assert_eq!(c.store(&s, &k, OK, 1_000), Ok(()));
        let hit = c.lookup(&s, &k, 60_999);
        assert!(hit.is_some());
        assert_eq!(c.lookup(&s, &k, 61_000), None, "expired");
        // The expired slot was emptied.
        assert!(s.bytes() < 20, "{}", s.bytes());
    }

    #[test]
    fn a_hit_carries_the_new_id_and_the_marker() {
        let c = cache(CONFIG);
        let s = MemoryStore::new();
        let Some(k) = key_of(&c, Some("alice"), "{}") else {
            unreachable!()
        };
        assert_eq!(c.store(&s, &k, OK, 0), Ok(()));
        let cached = c.lookup(&s, &k, 1).unwrap_or_default();
        let body = hit_response("\"req-42\"", &cached);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(v["id"], "req-42");
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["result"]["content"][0]["text"], "sunny");
        assert_eq!(v["result"]["_meta"][HIT_META_KEY], "hit");
    }

    #[test]
    fn the_marker_joins_an_existing_meta_and_keeps_member_order() {
        for (result, expected) in [
            (
                r#"{"content":[],"_meta":{"a":1}}"#,
                r#"{"content":[],"_meta":{"a":1,"io.mcpgw/cache":"hit"}}"#,
            ),
            (
                r#"{"_meta":{}, "z":true}"#,
                r#"{"_meta":{"io.mcpgw/cache":"hit"},"z":true}"#,
            ),
            (r#"{}"#, r#"{"_meta":{"io.mcpgw/cache":"hit"}}"#),
            (
                r#"{"_meta":{"io.mcpgw/cache":"miss","b":[1]}}"#,
                r#"{"_meta":{"b":[1],"io.mcpgw/cache":"hit"}}"#,
            ),
            (
                r#"{"t":"\u00e9\n"}"#,
                "{\"t\":\"\\u00e9\\n\",\"_meta\":{\"io.mcpgw/cache\":\"hit\"}}",
            ),
        ] {
            assert_eq!(
                mark_hit(&raw(result)).as_deref(),
                Some(expected),
                "{result}"
            );
        }
        assert_eq!(mark_hit(&raw(r#"{"_meta":5}"#)), None);
        assert_eq!(mark_hit(&raw(r#"[1]"#)), None);
    }

    #[test]
    fn errors_and_incomplete_results_are_never_stored() {
        let c = cache(CONFIG);
        let s = MemoryStore::new();
        let Some(k) = key_of(&c, Some("alice"), "{}") else {
            unreachable!()
        };
        for body in [
            &br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unknown tool"}}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required","inputRequests":{}}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"isError":true,"isError":false}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":[1]}"#,
            br#"{"jsonrpc":"2.0","id":1}"#,
            br#"not json"#,
            br#"[{"content":[]}]"#,
        ] {
            assert_eq!(
                c.store(&s, &k, body, 0),
                Err(NotStored::NotCacheable),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(s.writes.get(), 0);
        let complete = br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","content":[],"isError":false}}"#;
        assert_eq!(c.store(&s, &k, complete, 0), Ok(()));
    }

    #[test]
    fn results_larger_than_the_bound_are_not_stored() {
        let c = cache(r#"{"tools":[{"tool":"*"}],"maxEntryBytes":100}"#);
        let s = MemoryStore::new();
        let Some(k) = key_of(&c, Some("alice"), "{}") else {
            unreachable!()
        };
        let big = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"content":[{{"type":"text","text":"{}"}}]}}}}"#,
            "x".repeat(100)
        );
        assert_eq!(c.store(&s, &k, big.as_bytes(), 0), Err(NotStored::TooLarge));
        assert!(s.is_empty());
    }

    #[test]
    fn a_colliding_newer_entry_overwrites_and_the_old_key_misses() {
        let c = cache(r#"{"tools":[{"tool":"*"}],"maxEntries":1}"#);
        let s = MemoryStore::new();
        let (Some(k1), Some(k2)) = (
            key_of(&c, Some("alice"), r#"{"q":1}"#),
            key_of(&c, Some("alice"), r#"{"q":2}"#),
        ) else {
            unreachable!()
        };
        assert_eq!(c.slot_key(&k1), c.slot_key(&k2));
        assert_eq!(c.store(&s, &k1, OK, 0), Ok(()));
        let other =
            br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"rain"}]}}"#;
        assert_eq!(c.store(&s, &k2, other, 0), Ok(()));
        assert_eq!(c.lookup(&s, &k1, 1), None);
        let hit = c.lookup(&s, &k2, 1).unwrap_or_default();
        assert!(String::from_utf8_lossy(&hit).contains("rain"));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn shared_memory_is_bounded_by_the_slot_count() {
        let c = cache(r#"{"tools":[{"tool":"*"}],"maxEntries":8,"maxEntryBytes":200}"#);
        let s = MemoryStore::new();
        for i in 0..500 {
            let k = key_of(&c, Some("alice"), &format!(r#"{{"q":{i}}}"#));
            if let Some(k) = k {
                let _ = c.store(&s, &k, OK, 0);
            }
        }
        assert!(s.len() <= 8);
        assert!(s.bytes() <= 8 * ("mcpgw.rc.7".len() + HEADER_BYTES + 200));
    }

    #[test]
    fn call_arguments_are_read_from_the_request_body() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"b":1,"a":[2]}}}"#;
        assert_eq!(
            call_arguments(body).map(RawValue::get),
            Some(r#"{"b":1,"a":[2]}"#)
        );
        for body in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":null}}"#,
            br#"nope"#,
            br#"{"params":["t",{"a":1}]}"#,
            br#"[{"params":{"arguments":{}}}]"#,
        ] {
            assert_eq!(call_arguments(body).map(RawValue::get), None);
        }
    }

    #[test]
    fn a_broken_host_means_misses_and_failed_stores() {
        let c = cache(CONFIG);
        let s = MemoryStore::new();
        let Some(k) = key_of(&c, Some("alice"), "{}") else {
            unreachable!()
        };
        s.failing.set(true);
        assert_eq!(c.lookup(&s, &k, 0), None);
        assert_eq!(c.store(&s, &k, OK, 0), Err(NotStored::StoreFailed));
    }

    #[test]
    fn config_errors_name_the_field() {
        for (json, field) in [
            (r#"{}"#, "resultCache"),
            (r#"{"tools":[{"tool":""}]}"#, "resultCache.tools[0].tool"),
            (
                r#"{"tools":[{"tool":"*","ttlSeconds":0}]}"#,
                "resultCache.tools[0].ttlSeconds",
            ),
            (
                r#"{"readOnlyHint":true,"ttlSeconds":0}"#,
                "resultCache.ttlSeconds",
            ),
            (
                r#"{"readOnlyHint":true,"scope":"tenant"}"#,
                "resultCache.scope",
            ),
            (
                r#"{"readOnlyHint":true,"scope":"claim:"}"#,
                "resultCache.scope",
            ),
            (
                r#"{"readOnlyHint":true,"maxEntries":0}"#,
                "resultCache.maxEntries",
            ),
            (
                r#"{"readOnlyHint":true,"maxEntryBytes":2000000}"#,
                "resultCache.maxEntryBytes",
            ),
        ] {
            let raw: RawResultCache = serde_json::from_str(json).unwrap_or_default();
            let e = ResultCache::compile(raw, "resultCache")
                .err()
                .map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|e| e.starts_with(field)),
                "{json}: {e:?}"
            );
        }
        let c = cache(r#"{"readOnlyHint":true,"scope":"claim:tenant"}"#);
        assert_eq!(c.scope, Scope::Claim("tenant".into()));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_arguments_never_panic(args in r#"[\[\]{}":,0-9a-z\\.eE\- ]{0,64}"#) {
            let c = cache(CONFIG);
            if let Ok(a) = RawValue::from_string(args.clone()) {
                let _ = c.key(&facts(Some("s"), Some(&a)), false);
            }
            let _ = crate::canonical::canonicalize(&args);
        }

        #[test]
        fn arbitrary_responses_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let c = cache(CONFIG);
            let s = MemoryStore::new();
            if let Some(k) = key_of(&c, Some("a"), "{}") {
                let _ = c.store(&s, &k, &body, 0);
                let _ = c.lookup(&s, &k, 1);
            }
        }

        #[test]
        fn arbitrary_slot_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let c = cache(CONFIG);
            let s = MemoryStore::new();
            if let Some(k) = key_of(&c, Some("a"), "{}") {
                let _ = s.set(&c.slot_key(&k), &bytes, None);
                let _ = c.lookup(&s, &k, 1);
            }
        }
    }
}
