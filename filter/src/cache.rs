//! The merged-list cache: shared data across workers, parsed once per VM per version.
//!
//! A merged list is stored in Envoy shared data (process-wide for the VM id) with its expiry and
//! the owner of every name/URI. Each VM keeps the parsed form and re-parses only when the shared
//! entry's CAS changes, so a cached `tools/list` costs one host call and a copy.

use std::collections::HashMap;

use mcp_gateway_core::federation::aggregate::{ListKind, MergedList};
use mcp_gateway_core::federation::plan::ListView;
use proxy_wasm::hostcalls;
use serde_json::value::RawValue;

struct Entry {
    cas: u32,
    expires_at_ms: u64,
    result: String,
    owners: HashMap<String, usize>,
    /// Literal prefixes of URI templates (up to the first `{`), longest first.
    templates: Vec<(String, usize)>,
    /// Model tokens of the list as served unfiltered, counted on first use: this entry's
    /// `result` never changes (a new version is a new entry), so neither does its count.
    tokens: std::cell::Cell<Option<u64>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored<'a> {
    exp: u64,
    owners: Vec<(String, usize)>,
    #[serde(borrow)]
    result: &'a RawValue,
}

/// The gateway's own upstream sessions for stateless clients, and the merged discover result.
#[derive(Clone)]
pub struct Owned {
    pub state: mcp_gateway_core::federation::session::SessionState,
    pub discover: std::rc::Rc<str>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredOwned<'a> {
    exp: u64,
    state: mcp_gateway_core::federation::session::SessionState,
    #[serde(borrow)]
    discover: &'a RawValue,
}

#[derive(Default)]
pub struct ListCache {
    /// Parsed copy of the shared owned-session entry, with its CAS and expiry.
    owned: Option<(u32, u64, Owned)>,
    /// Distinguishes configurations that share a VM id.
    namespace: String,
    /// The capability scope of the request being served (see `plan::scope_of`).
    scope: String,
    entries: HashMap<(ListKind, String), Entry>,
}

fn kind_key(kind: ListKind) -> &'static str {
    match kind {
        ListKind::Tools => "tools",
        ListKind::Prompts => "prompts",
        ListKind::Resources => "resources",
        ListKind::ResourceTemplates => "templates",
    }
}

impl ListCache {
    pub fn new(namespace: String) -> Self {
        ListCache {
            owned: None,
            namespace,
            scope: String::new(),
            entries: HashMap::new(),
        }
    }

    /// Selects the capability scope that the next lookups and stores are for.
    pub fn set_scope(&mut self, scope: &str) {
        if self.scope != scope {
            scope.clone_into(&mut self.scope);
        }
    }

    fn key(&self, kind: ListKind) -> String {
        format!(
            "mcpgw.{}.{}.list.{}",
            self.namespace,
            self.scope,
            kind_key(kind)
        )
    }

    fn slot(&self, kind: ListKind) -> (ListKind, String) {
        (kind, self.scope.clone())
    }

    fn entry(&self, kind: ListKind) -> Option<&Entry> {
        // Avoids building the owned key for the common lookup.
        self.entries
            .iter()
            .find(|((k, s), _)| *k == kind && *s == self.scope)
            .map(|(_, e)| e)
    }

    /// Brings the local entry for `kind` in line with shared data.
    pub fn refresh(&mut self, kind: ListKind, now_ms: u64) {
        let key = self.key(kind);
        let (bytes, cas) = match hostcalls::get_shared_data(&key) {
            Ok((Some(b), Some(cas))) if !b.is_empty() => (b, cas),
            _ => {
                self.entries.remove(&self.slot(kind));
                return;
            }
        };
        if let Some(e) = self.entry(kind) {
            if e.cas == cas {
                if e.expires_at_ms <= now_ms {
                    self.entries.remove(&self.slot(kind));
                }
                return;
            }
        }
        let Ok(stored) = serde_json::from_slice::<Stored<'_>>(&bytes) else {
            self.entries.remove(&self.slot(kind));
            return;
        };
        if stored.exp <= now_ms {
            self.entries.remove(&self.slot(kind));
            return;
        }
        let entry = build_entry(
            cas,
            stored.exp,
            stored.result.get().to_owned(),
            stored.owners,
            kind,
        );
        self.entries.insert(self.slot(kind), entry);
    }

    /// Stores a freshly merged list for `ttl_ms` (0: not cached).
    pub fn store(&mut self, kind: ListKind, merged: &MergedList, ttl_ms: u64, now_ms: u64) {
        if ttl_ms == 0 {
            return;
        }
        let result = merged.result.to_string();
        let Ok(raw) = RawValue::from_string(result.clone()) else {
            return;
        };
        let stored = Stored {
            exp: now_ms.saturating_add(ttl_ms),
            owners: merged.owners.clone(),
            result: &raw,
        };
        let Ok(bytes) = serde_json::to_vec(&stored) else {
            return;
        };
        let key = self.key(kind);
        if let Err(status) = hostcalls::set_shared_data(&key, Some(&bytes), None) {
            log::warn!("could not cache {key}: {status:?}");
            return;
        }
        // Read back the CAS so the next refresh recognises our own entry.
        if let Ok((_, Some(cas))) = hostcalls::get_shared_data(&key) {
            let entry = build_entry(cas, stored.exp, result, merged.owners.clone(), kind);
            self.entries.insert(self.slot(kind), entry);
        }
    }

    fn owned_key(&self) -> String {
        format!("mcpgw.{}.owned", self.namespace)
    }

    /// The gateway's own upstream sessions, shared by every worker, if prepared and not expired.
    pub fn owned(&mut self, now_ms: u64) -> Option<Owned> {
        let key = self.owned_key();
        let (bytes, cas) = match hostcalls::get_shared_data(&key) {
            Ok((Some(b), Some(cas))) if !b.is_empty() => (b, cas),
            _ => {
                self.owned = None;
                return None;
            }
        };
        if let Some((c, exp, owned)) = &self.owned {
            if *c == cas {
                return (*exp > now_ms).then(|| owned.clone());
            }
        }
        let stored: StoredOwned<'_> = serde_json::from_slice(&bytes).ok()?;
        let owned = Owned {
            state: stored.state,
            discover: std::rc::Rc::from(stored.discover.get()),
        };
        self.owned = Some((cas, stored.exp, owned.clone()));
        (stored.exp > now_ms).then_some(owned)
    }

    /// Shares newly prepared upstream sessions for `ttl_ms`.
    pub fn store_owned(
        &mut self,
        state: &mcp_gateway_core::federation::session::SessionState,
        discover: &str,
        ttl_ms: u64,
        now_ms: u64,
    ) {
        let Ok(raw) = RawValue::from_string(discover.to_owned()) else {
            return;
        };
        let stored = StoredOwned {
            exp: now_ms.saturating_add(ttl_ms),
            state: state.clone(),
            discover: &raw,
        };
        if let Ok(bytes) = serde_json::to_vec(&stored) {
            let _ = hostcalls::set_shared_data(&self.owned_key(), Some(&bytes), None);
        }
    }

    /// Forgets the owned sessions (an upstream lost its session): the next request prepares anew.
    pub fn drop_owned(&mut self) {
        self.owned = None;
        let _ = hostcalls::set_shared_data(&self.owned_key(), Some(b""), None);
    }

    /// Drops cached lists of the current scope, here and for every worker.
    pub fn invalidate(&mut self, kinds: &[ListKind]) {
        for kind in kinds {
            self.entries.remove(&self.slot(*kind));
            let _ = hostcalls::set_shared_data(&self.key(*kind), Some(b""), None);
        }
    }
}

fn build_entry(
    cas: u32,
    expires_at_ms: u64,
    result: String,
    owners: Vec<(String, usize)>,
    kind: ListKind,
) -> Entry {
    let mut templates = Vec::new();
    if kind == ListKind::ResourceTemplates {
        for (t, i) in &owners {
            let prefix = t.split('{').next().unwrap_or_default();
            if !prefix.is_empty() {
                templates.push((prefix.to_owned(), *i));
            }
        }
        templates.sort_by_key(|t| std::cmp::Reverse(t.0.len()));
    }
    Entry {
        cas,
        expires_at_ms,
        result,
        owners: owners.into_iter().collect(),
        templates,
        tokens: std::cell::Cell::new(None),
    }
}

impl ListCache {
    /// The token count of the cached `kind` list as served unfiltered: remembered, or counted
    /// now with `count` (which gets the reply body) and remembered.
    pub fn list_tokens(&self, kind: ListKind, count: impl FnOnce() -> Option<u64>) -> Option<u64> {
        let entry = self.entry(kind)?;
        if let Some(n) = entry.tokens.get() {
            return Some(n);
        }
        let n = count()?;
        entry.tokens.set(Some(n));
        Some(n)
    }
}

impl ListView for ListCache {
    fn cached(&self, kind: ListKind) -> Option<&str> {
        self.entry(kind).map(|e| e.result.as_str())
    }

    fn owner(&self, kind: ListKind, key: &str) -> Option<usize> {
        self.entry(kind).and_then(|e| e.owners.get(key).copied())
    }

    fn template_owner(&self, uri: &str) -> Option<usize> {
        self.entry(ListKind::ResourceTemplates)?
            .templates
            .iter()
            .find(|(prefix, _)| uri.starts_with(prefix.as_str()))
            .map(|(_, i)| *i)
    }
}
