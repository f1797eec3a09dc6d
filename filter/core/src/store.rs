//! Cross-worker state: the trait over Envoy's shared data, an in-memory copy for tests, and the
//! bounded compare-and-swap loop every shared algorithm (rate limits, budgets, tool registry) uses.
//!
//! Envoy's shared data is a process-wide key → bytes map per VM id with a CAS token per key. What
//! the host does (proxy-wasm-cpp-host `SharedData::set`, the version Envoy 1.40 links) shapes
//! everything built on it:
//! - a write with CAS 0 (`None`) is unconditional; a write with a stale CAS fails with
//!   `CasMismatch`;
//! - **a write to a key that does not exist always succeeds, whatever CAS it carries**: creating a
//!   key is not protected. Two workers that both see a key missing both "create" it and the
//!   second silently overwrites the first. [`ensure_keys`] creates keys before traffic so that the
//!   request path only ever updates existing keys under CAS;
//! - there is no delete, no TTL and no iteration for modules (the host has `SharedData::remove`
//!   since 2022, but no ABI function exposes it); writing an empty value keeps the key with an
//!   empty value. Every algorithm here reads an empty value as "nothing stored", so an empty
//!   write is how an entry is dropped, and keys come from fixed-size tables so memory stays
//!   bounded;
//! - the data of a VM id lives until the last VM with that id is destroyed: a config reload that
//!   keeps the VM id keeps it.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};

/// How many times a read-modify-write is retried after CAS conflicts before it gives up. A
/// conflict means another worker's write succeeded, so the system as a whole progresses; giving
/// up needs this many competing writes to one key during one request.
pub const CAS_ATTEMPTS: u32 = 32;

/// A stored value and the CAS token that must accompany a conditional write of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    pub cas: u32,
}

/// Why a shared-data operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another writer changed the key since it was read (host status `CasMismatch`).
    #[error("shared data changed concurrently")]
    CasMismatch,
    /// Any other host failure.
    #[error("shared data unavailable")]
    Host,
}

/// Envoy's shared data, as the core sees it. The glue implements it over
/// `proxy_wasm::hostcalls::{get_shared_data, set_shared_data}`; [`MemoryStore`] for tests.
pub trait SharedStore {
    /// The value and CAS of `key`, `Ok(None)` when the key was never written.
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError>;
    /// Writes `value`; with `Some(cas)` only if the key's CAS is still `cas` (but see the module
    /// doc: a missing key is always written).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// What a read-modify-write step decided for the value it was shown.
pub(crate) enum Step<T> {
    /// Write these bytes (conditionally on the CAS read), then return `T`.
    Write(Vec<u8>, T),
    /// Nothing to write: return `T`.
    Keep(T),
}

/// Why [`update`] did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpdateError {
    /// [`CAS_ATTEMPTS`] conflicts in a row.
    Contended,
    /// The host failed a read or a write.
    Host,
}

/// Read-modify-write of one key under CAS, retried on conflicts at most [`CAS_ATTEMPTS`] times.
/// `step` sees the current value (`None` for a missing or empty key) and may run several times.
pub(crate) fn update<T>(
    store: &dyn SharedStore,
    key: &str,
    mut step: impl FnMut(Option<&[u8]>) -> Step<T>,
) -> Result<T, UpdateError> {
    for _ in 0..CAS_ATTEMPTS {
        let current = store.get(key).map_err(|_| UpdateError::Host)?;
        let (value, cas) = match &current {
            Some(v) if !v.value.is_empty() => (Some(v.value.as_slice()), Some(v.cas)),
            Some(v) => (None, Some(v.cas)),
            None => (None, None),
        };
        match step(value) {
            Step::Keep(out) => return Ok(out),
            Step::Write(bytes, out) => match store.set(key, &bytes, cas) {
                Ok(()) => return Ok(out),
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Host) => return Err(UpdateError::Host),
            },
        }
    }
    Err(UpdateError::Contended)
}

/// Creates every key of `keys` that does not exist yet with an empty value, leaving existing keys
/// alone. Call it when the configuration is applied (every VM may; it is idempotent): afterwards
/// request-path writes only update existing keys, which CAS protects. Returns how many keys were
/// created, or the first host failure.
pub fn ensure_keys<I, K>(store: &dyn SharedStore, keys: I) -> Result<usize, StoreError>
where
    I: IntoIterator<Item = K>,
    K: AsRef<str>,
{
    let mut created = 0;
    for key in keys {
        let key = key.as_ref();
        if store.get(key)?.is_none() {
            store.set(key, &[], None)?;
            created += 1;
        }
    }
    Ok(created)
}

/// An action that runs inside [`MemoryStore::set`] just before the write is applied: it stands
/// for another worker writing between this worker's read and write.
pub type Interleaved = Box<dyn FnOnce(&MemoryStore)>;

/// In-memory [`SharedStore`] with the host's semantics (global CAS counter, unconditional writes
/// to missing keys). Tests use [`MemoryStore::interleave`] to inject another writer between a
/// read and the write that follows it.
#[derive(Default)]
pub struct MemoryStore {
    data: RefCell<HashMap<String, Versioned>>,
    next_cas: Cell<u32>,
    hooks: RefCell<VecDeque<Interleaved>>,
    /// A hook is running: its own writes are not interrupted by further hooks.
    in_hook: Cell<bool>,
    /// Fail every operation with [`StoreError::Host`] (a broken host).
    pub failing: Cell<bool>,
    /// Number of successful writes.
    pub writes: Cell<u64>,
    /// Number of writes refused with `CasMismatch`.
    pub conflicts: Cell<u64>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Runs `action` inside the next `set` call, before that write is checked and applied.
    /// Writes made by `action` itself are not interrupted by other queued actions.
    pub fn interleave(&self, action: impl FnOnce(&MemoryStore) + 'static) {
        self.hooks.borrow_mut().push_back(Box::new(action));
    }

    /// Number of keys stored (including empty ones).
    pub fn len(&self) -> usize {
        self.data.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.borrow().is_empty()
    }

    /// Total bytes of keys and values: what the host would hold.
    pub fn bytes(&self) -> usize {
        self.data
            .borrow()
            .iter()
            .map(|(k, v)| k.len() + v.value.len())
            .sum()
    }

    /// Every key, sorted (tests only: the host cannot list keys).
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.data.borrow().keys().cloned().collect();
        keys.sort();
        keys
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        if self.failing.get() {
            return Err(StoreError::Host);
        }
        Ok(self.data.borrow().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        if self.failing.get() {
            return Err(StoreError::Host);
        }
        // Taken out before running, so the hook may itself read and write this store.
        let hook = if self.in_hook.get() {
            None
        } else {
            self.hooks.borrow_mut().pop_front()
        };
        if let Some(hook) = hook {
            self.in_hook.set(true);
            hook(self);
            self.in_hook.set(false);
        }
        let mut data = self.data.borrow_mut();
        if let (Some(existing), Some(cas)) = (data.get(key), cas) {
            if cas != 0 && existing.cas != cas {
                self.conflicts.set(self.conflicts.get() + 1);
                return Err(StoreError::CasMismatch);
            }
        }
        let next = self.next_cas.get().wrapping_add(1).max(1);
        self.next_cas.set(next);
        data.insert(
            key.to_owned(),
            Versioned {
                value: value.to_vec(),
                cas: next,
            },
        );
        self.writes.set(self.writes.get() + 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(store: &MemoryStore, key: &str) -> Option<Vec<u8>> {
        store.get(key).ok().flatten().map(|v| v.value)
    }

    #[test]
    fn a_stale_cas_is_refused_and_a_fresh_one_accepted() {
        let s = MemoryStore::new();
        assert_eq!(s.set("k", b"a", None), Ok(()));
        let cas = s.get("k").ok().flatten().map(|v| v.cas);
        assert_eq!(s.set("k", b"b", cas), Ok(()));
        assert_eq!(s.set("k", b"c", cas), Err(StoreError::CasMismatch));
        assert_eq!(value(&s, "k").as_deref(), Some(&b"b"[..]));
    }

    #[test]
    fn writes_to_missing_keys_succeed_whatever_cas_they_carry_as_in_envoy() {
        let s = MemoryStore::new();
        assert_eq!(s.set("k", b"a", Some(12345)), Ok(()));
        assert_eq!(value(&s, "k").as_deref(), Some(&b"a"[..]));
    }

    #[test]
    fn update_retries_after_an_interleaved_write_and_applies_on_top_of_it() {
        let s = MemoryStore::new();
        assert!(ensure_keys(&s, ["n"]).is_ok());
        s.interleave(|s| {
            let _ = s.set("n", b"10", None);
        });
        let mut seen = Vec::new();
        let r = update(&s, "n", |v| {
            let n: u32 = v
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            seen.push(n);
            Step::Write((n + 1).to_string().into_bytes(), n + 1)
        });
        assert_eq!(r, Ok(11));
        assert_eq!(seen, vec![0, 10]);
        assert_eq!(s.conflicts.get(), 1);
    }

    #[test]
    fn update_gives_up_as_contended_after_the_attempt_limit() {
        let s = MemoryStore::new();
        assert!(ensure_keys(&s, ["n"]).is_ok());
        for _ in 0..CAS_ATTEMPTS {
            s.interleave(|s| {
                let _ = s.set("n", b"x", None);
            });
        }
        let r = update(&s, "n", |_| Step::Write(b"mine".to_vec(), ()));
        assert_eq!(r, Err(UpdateError::Contended));
        assert_eq!(s.conflicts.get(), u64::from(CAS_ATTEMPTS));
    }

    #[test]
    fn update_reports_host_failures() {
        let s = MemoryStore::new();
        s.failing.set(true);
        assert_eq!(
            update(&s, "n", |_| Step::Write(vec![1], ())),
            Err(UpdateError::Host)
        );
    }

    #[test]
    fn ensure_keys_creates_only_missing_keys() {
        let s = MemoryStore::new();
        assert_eq!(s.set("b", b"keep", None), Ok(()));
        assert_eq!(ensure_keys(&s, ["a", "b", "c"]), Ok(2));
        assert_eq!(value(&s, "b").as_deref(), Some(&b"keep"[..]));
        assert_eq!(value(&s, "a").as_deref(), Some(&b""[..]));
        assert_eq!(ensure_keys(&s, ["a", "b", "c"]), Ok(0));
    }

    #[test]
    fn an_empty_value_reads_as_nothing_stored() {
        let s = MemoryStore::new();
        assert!(ensure_keys(&s, ["k"]).is_ok());
        let r = update(&s, "k", |v| Step::Keep(v.is_none()));
        assert_eq!(r, Ok(true));
    }
}
