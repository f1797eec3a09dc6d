//! Decision cache: a policy's answer for an input it has already decided, without building the
//! input document or running the interpreter again.
//!
//! Why it is exact, not a heuristic: the gateway's Rego engine has no clock, network or
//! randomness unless the policy calls one of the few builtins [`super::check`] flags, so a
//! decision is a function of `data` (fixed per configure) and the members of `input` the policy
//! reads. The configure-time walk lists those members; the key is their values, byte for byte
//! (sub, issuer, scopes, the configured claims as JSON, the target, the raw arguments, ...).
//! Members the policy never names are not in the key, which is the point: a policy that reads
//! `input.subject` and `input.tool` answers every call of the same caller and tool from the
//! cache, whatever the arguments. A policy that reads `input.time` keys on the second, one that
//! uses `input` whole keys on everything, one that calls `rand.intn` is never cached.
//!
//! Bounded: at most `cacheEntries` decisions per worker (each VM has its own cache), keys over
//! [`MAX_KEY_BYTES`] (large arguments) are not cached, and a full cache is emptied rather than
//! managed entry by entry (one allocation-free `clear`, and a working set that fits refills it
//! at once). Failed evaluations are never cached.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};

use super::input::Keys;
use super::{Decision, Request, Target};

/// Longest key kept, in bytes. Keys longer than this (arguments of a few KiB) are evaluated
/// every time: memory stays bounded by `entries × MAX_KEY_BYTES`.
pub const MAX_KEY_BYTES: usize = 2048;

/// Default number of decisions kept per worker.
pub const DEFAULT_ENTRIES: usize = 1024;

/// Members of `input` that a decision can depend on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Reads {
    subject: bool,
    method: bool,
    server: bool,
    target: bool,
    arguments: bool,
    session: bool,
    headers: bool,
    time: bool,
}

impl Reads {
    /// Every member: for a policy that uses `input` as a whole.
    const ALL: Reads = Reads {
        subject: true,
        method: true,
        server: true,
        target: true,
        arguments: true,
        session: true,
        headers: true,
        time: true,
    };

    /// From the member names the policy reads. Names the input document does not have
    /// (`input.items` outside list filtering, a typo) are undefined on every request, so they
    /// do not make decisions differ.
    pub(crate) fn of(whole_input: bool, fields: &BTreeSet<String>) -> Reads {
        if whole_input {
            return Reads::ALL;
        }
        let has = |name: &str| fields.contains(name);
        Reads {
            subject: has("subject"),
            method: has("method"),
            server: has("server"),
            target: has("tool") || has("prompt") || has("resource"),
            arguments: has("arguments"),
            session: has("session"),
            headers: has("headers"),
            time: has("time"),
        }
    }
}

/// Whether a request was answered from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    Hit,
    Miss,
    /// The cache is off, the policy cannot be cached, or this request's key is too large.
    Bypass,
}

/// Hits and misses so far (for stats and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounts {
    pub hits: u64,
    pub misses: u64,
}

/// Decisions of one policy, per VM.
#[derive(Debug)]
pub(crate) struct DecisionCache {
    reads: Reads,
    max_entries: usize,
    map: RefCell<HashMap<Box<[u8]>, Decision>>,
    /// Key scratch buffer, reused across requests.
    scratch: RefCell<Vec<u8>>,
    hits: Cell<u64>,
    misses: Cell<u64>,
}

impl Clone for DecisionCache {
    /// A clone starts empty: the engine it caches for is a new copy too.
    fn clone(&self) -> Self {
        DecisionCache::new(self.reads, self.max_entries)
    }
}

impl DecisionCache {
    pub(crate) fn new(reads: Reads, max_entries: usize) -> DecisionCache {
        DecisionCache {
            reads,
            max_entries,
            map: RefCell::new(HashMap::new()),
            scratch: RefCell::new(Vec::with_capacity(256)),
            hits: Cell::new(0),
            misses: Cell::new(0),
        }
    }

    pub(crate) fn counts(&self) -> CacheCounts {
        CacheCounts {
            hits: self.hits.get(),
            misses: self.misses.get(),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.borrow().len()
    }

    /// The cached decision for `req`, or `decide()`'s, remembered when it did not fail.
    pub(crate) fn decide(
        &self,
        keys: &Keys,
        req: &Request<'_>,
        decide: impl FnOnce() -> Decision,
    ) -> (Decision, CacheUse) {
        let (Ok(mut key), Ok(mut map)) = (self.scratch.try_borrow_mut(), self.map.try_borrow_mut())
        else {
            return (decide(), CacheUse::Bypass);
        };
        key.clear();
        if !self.key(keys, req, &mut key) {
            return (decide(), CacheUse::Bypass);
        }
        if let Some(d) = map.get(key.as_slice()) {
            self.hits.set(self.hits.get().saturating_add(1));
            return (d.clone(), CacheUse::Hit);
        }
        self.misses.set(self.misses.get().saturating_add(1));
        let d = decide();
        if d.error.is_none() {
            if map.len() >= self.max_entries {
                map.clear();
            }
            map.insert(key.as_slice().into(), d.clone());
        }
        (d, CacheUse::Miss)
    }

    /// Writes the values of the members the policy reads into `out`, each length-prefixed so
    /// that no two different inputs share a key. False when the key would be too long.
    fn key(&self, keys: &Keys, req: &Request<'_>, out: &mut Vec<u8>) -> bool {
        let r = self.reads;
        if r.subject {
            let s = &req.subject;
            opt(out, s.sub);
            opt(out, s.iss);
            put(out, &(s.scopes.len() as u64).to_le_bytes());
            for scope in s.scopes {
                put(out, scope.as_bytes());
            }
            for (name, _) in &keys.claim_names {
                match s.claims.and_then(|c| c.get(name)) {
                    Some(v) => {
                        out.push(1);
                        let start = out.len();
                        out.extend_from_slice(&[0; 4]);
                        if serde_json::to_writer(&mut *out, v).is_err() {
                            return false;
                        }
                        let len = (out.len() - start - 4) as u32;
                        if let Some(slot) = out.get_mut(start..start + 4) {
                            slot.copy_from_slice(&len.to_le_bytes());
                        }
                    }
                    None => out.push(0),
                }
            }
        }
        if r.method {
            put(out, req.method.as_bytes());
        }
        if r.server {
            opt(out, req.server);
        }
        if r.target {
            let (kind, name) = match req.target {
                Target::Tool(n) => (1, n),
                Target::Prompt(n) => (2, n),
                Target::Resource(u) => (3, u),
                Target::None => (0, ""),
            };
            out.push(kind);
            put(out, name.as_bytes());
        }
        if r.arguments {
            let args = req.arguments.map(|a| a.get());
            if args.is_some_and(|a| a.len() > MAX_KEY_BYTES) {
                return false;
            }
            opt(out, args);
        }
        if r.session {
            opt(out, req.session);
        }
        if r.headers {
            for (lower, _) in &keys.header_names {
                let matching = || {
                    req.headers
                        .iter()
                        .filter(|(name, _)| name.eq_ignore_ascii_case(lower))
                };
                out.extend_from_slice(&(matching().count() as u32).to_le_bytes());
                for (_, value) in matching() {
                    put(out, value.as_bytes());
                }
            }
        }
        if r.time {
            out.extend_from_slice(&req.unix_seconds.to_le_bytes());
        }
        out.len() <= MAX_KEY_BYTES
    }
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            put(out, s.as_bytes());
        }
        None => out.push(0),
    }
}
