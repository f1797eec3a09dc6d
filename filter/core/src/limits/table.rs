//! A fixed-size, 4-way set-associative table of small counters in shared data.
//!
//! Shared data has no delete, so one key per subject would grow without bound (anonymous
//! callers by address, rotating tokens). Instead each rule owns `sets` keys; a tracked key
//! (subject, tool, …) hashes to one set and is stored there as one of [`WAYS`] entries tagged
//! with a 128-bit fingerprint. When a set is full, the entry that carries the least information
//! is replaced: a bucket that has refilled, a budget whose window is over. Memory per rule is
//! therefore fixed: `sets × (key + 1 + 4 × 32)` bytes, however many subjects come and go.

use sha2::{Digest, Sha256};

use crate::store::{update, SharedStore, Step, StoreError, UpdateError};

/// Entries per set.
pub const WAYS: usize = 4;
const WAY_BYTES: usize = 32;
const VERSION: u8 = 1;

/// One entry: a fingerprint and two counters whose meaning the table's user decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Way {
    pub fp: [u8; 16],
    pub a: u64,
    pub b: u64,
}

/// Where one tracked key lives: the shared-data key of its set and its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    pub key: String,
    pub fp: [u8; 16],
}

/// One part of a tracked key, hashed unambiguously (tag, length, bytes).
pub(crate) fn hash_part(h: &mut Sha256, tag: u8, value: Option<&str>) {
    h.update([tag]);
    match value {
        Some(v) => {
            h.update([1]);
            h.update((v.len() as u64).to_le_bytes());
            h.update(v.as_bytes());
        }
        None => h.update([0]),
    }
}

/// Finishes a tracked key: the first 16 bytes are the fingerprint, the next 8 pick the set.
pub(crate) fn slot_of(h: Sha256, prefix: &str, sets: u32) -> Slot {
    let digest = h.finalize();
    let mut fp = [0u8; 16];
    let mut pick = [0u8; 8];
    fp.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    pick.copy_from_slice(digest.get(16..24).unwrap_or(&[0; 8]));
    let set = u64::from_le_bytes(pick) % u64::from(sets.max(1));
    Slot {
        key: format!("{prefix}{set}"),
        fp,
    }
}

/// Every shared-data key of a table, for [`crate::store::ensure_keys`].
pub(crate) fn keys(prefix: &str, sets: u32) -> impl Iterator<Item = String> + '_ {
    (0..sets).map(move |i| format!("{prefix}{i}"))
}

fn decode(bytes: Option<&[u8]>) -> Vec<Way> {
    let Some(bytes) = bytes else {
        return Vec::new();
    };
    // Anything this version did not write (or a torn future format) reads as an empty set.
    let Some((&VERSION, rest)) = bytes.split_first() else {
        return Vec::new();
    };
    if rest.len() % WAY_BYTES != 0 || rest.len() / WAY_BYTES > WAYS {
        return Vec::new();
    }
    rest.chunks_exact(WAY_BYTES)
        .map(|c| {
            let mut fp = [0u8; 16];
            let mut a = [0u8; 8];
            let mut b = [0u8; 8];
            fp.copy_from_slice(c.get(..16).unwrap_or(&[0; 16]));
            a.copy_from_slice(c.get(16..24).unwrap_or(&[0; 8]));
            b.copy_from_slice(c.get(24..32).unwrap_or(&[0; 8]));
            Way {
                fp,
                a: u64::from_le_bytes(a),
                b: u64::from_le_bytes(b),
            }
        })
        .collect()
}

fn encode(ways: &[Way]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + ways.len() * WAY_BYTES);
    out.push(VERSION);
    for w in ways {
        out.extend_from_slice(&w.fp);
        out.extend_from_slice(&w.a.to_le_bytes());
        out.extend_from_slice(&w.b.to_le_bytes());
    }
    out
}

/// What a caller of [`modify`] does with the entry it was shown.
pub(crate) enum Change<T> {
    /// Store these counters for the slot's fingerprint.
    Put { a: u64, b: u64, out: T },
    /// Leave the set as it is.
    Keep(T),
}

/// Read-modify-write of one entry under CAS. `f` sees the entry (`None`: not tracked) and may run
/// again after a conflict. When a new entry must go into a full set, the entry with the highest
/// `rank` is replaced (rank it by how little is lost when it goes).
pub(crate) fn modify<T>(
    store: &dyn SharedStore,
    slot: &Slot,
    rank: impl Fn(&Way) -> u64,
    mut f: impl FnMut(Option<Way>) -> Change<T>,
) -> Result<T, UpdateError> {
    update(store, &slot.key, |bytes| {
        let mut ways = decode(bytes);
        let at = ways.iter().position(|w| w.fp == slot.fp);
        match f(at.and_then(|i| ways.get(i).copied())) {
            Change::Keep(out) => Step::Keep(out),
            Change::Put { a, b, out } => {
                let way = Way { fp: slot.fp, a, b };
                match at {
                    Some(i) => {
                        if let Some(w) = ways.get_mut(i) {
                            *w = way;
                        }
                    }
                    None if ways.len() < WAYS => ways.push(way),
                    None => {
                        let victim = ways
                            .iter()
                            .enumerate()
                            .max_by_key(|(_, w)| rank(w))
                            .map(|(i, _)| i);
                        if let Some(w) = victim.and_then(|i| ways.get_mut(i)) {
                            *w = way;
                        }
                    }
                }
                Step::Write(encode(&ways), out)
            }
        }
    })
}

/// The entry for `slot`, without writing.
pub(crate) fn read(store: &dyn SharedStore, slot: &Slot) -> Result<Option<Way>, StoreError> {
    let current = store.get(&slot.key)?;
    let bytes = current
        .as_ref()
        .map(|v| v.value.as_slice())
        .filter(|b| !b.is_empty());
    Ok(decode(bytes).into_iter().find(|w| w.fp == slot.fp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn slot(n: u8) -> Slot {
        Slot {
            key: "t.0".into(),
            fp: [n; 16],
        }
    }

    fn put(store: &MemoryStore, n: u8, a: u64) {
        let r = modify(
            store,
            &slot(n),
            |w| w.a,
            |_| Change::Put { a, b: 0, out: () },
        );
        assert_eq!(r, Ok(()));
    }

    #[test]
    fn entries_round_trip_through_shared_data() {
        let s = MemoryStore::new();
        put(&s, 1, 7);
        put(&s, 2, 9);
        assert_eq!(read(&s, &slot(1)).ok().flatten().map(|w| w.a), Some(7));
        assert_eq!(read(&s, &slot(2)).ok().flatten().map(|w| w.a), Some(9));
        assert_eq!(read(&s, &slot(3)), Ok(None));
    }

    #[test]
    fn a_full_set_replaces_the_highest_ranked_entry() {
        let s = MemoryStore::new();
        for (n, a) in [(1, 10), (2, 99), (3, 20), (4, 30)] {
            put(&s, n, a);
        }
        put(&s, 5, 1);
        assert_eq!(read(&s, &slot(2)), Ok(None), "rank 99 goes first");
        for n in [1, 3, 4, 5] {
            assert!(matches!(read(&s, &slot(n)), Ok(Some(_))), "{n} kept");
        }
        assert!(s.bytes() <= "t.0".len() + 1 + WAYS * WAY_BYTES);
    }

    #[test]
    fn unreadable_values_read_as_an_empty_set() {
        let s = MemoryStore::new();
        for junk in [&b"\x02abc"[..], &b"\x01short"[..], &[1u8; 1 + 5 * 32][..]] {
            assert_eq!(s.set("t.0", junk, None), Ok(()));
            assert_eq!(read(&s, &slot(1)), Ok(None));
        }
    }

    #[test]
    fn sets_spread_keys_and_stay_within_the_table() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..2000u32 {
            let mut h = Sha256::new();
            hash_part(&mut h, b's', Some(&i.to_string()));
            let s = slot_of(h, "p.", 64);
            let n: u32 = s.key.trim_start_matches("p.").parse().unwrap_or(u32::MAX);
            assert!(n < 64);
            seen.insert(n);
        }
        assert_eq!(seen.len(), 64);
    }

    #[test]
    fn key_parts_are_unambiguous() {
        let fp = |parts: &[(u8, Option<&str>)]| {
            let mut h = Sha256::new();
            for (t, v) in parts {
                hash_part(&mut h, *t, *v);
            }
            slot_of(h, "", 1).fp
        };
        assert_ne!(
            fp(&[(b's', Some("ab")), (b't', Some("c"))]),
            fp(&[(b's', Some("a")), (b't', Some("bc"))])
        );
        assert_ne!(fp(&[(b't', None)]), fp(&[(b't', Some(""))]));
        assert_ne!(fp(&[(b's', Some("x"))]), fp(&[(b'a', Some("x"))]));
    }
}
