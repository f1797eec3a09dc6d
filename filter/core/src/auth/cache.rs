//! Verified tokens, so a client's repeated requests skip the signature check.
//!
//! Inside V8 an RS256/ES256 check costs about a millisecond; a client sends the same token on
//! every request until it expires. Entries are keyed by the SHA-256 of the token (the token
//! itself is never stored), live until the token's `exp` plus leeway or the configured maximum
//! TTL, whichever is first, and every hit re-checks that deadline against the caller's `now`.
//! The map is bounded; eviction is CLOCK (second chance): a hit only sets a flag, no list
//! splicing, and a full cache evicts the first entry not used since the hand last passed it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use sha2::{Digest as _, Sha256};

use super::Identity;

/// SHA-256 of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn of(token: &str) -> TokenDigest {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }
}

impl Hash for TokenDigest {
    /// The digest is already uniformly distributed (and not chosen by clients in any useful
    /// way): its first 8 bytes are the hash.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let [a, b, c, d, e, f, g, h, ..] = self.0;
        state.write_u64(u64::from_le_bytes([a, b, c, d, e, f, g, h]));
    }
}

/// Passes a `write_u64` through; folds anything else (never used by [`TokenDigest`]).
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Slot {
    digest: TokenDigest,
    identity: Identity,
    valid_until: u64,
    referenced: bool,
}

/// The bounded verified-token cache. Capacity 0 disables it.
pub struct TokenCache {
    index: HashMap<TokenDigest, usize, BuildHasherDefault<PassThrough>>,
    slots: Vec<Option<Slot>>,
    hand: usize,
    capacity: usize,
    max_ttl: u64,
}

impl TokenCache {
    pub fn new(capacity: usize, max_ttl: u64) -> TokenCache {
        TokenCache {
            index: HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default()),
            slots: Vec::with_capacity(capacity),
            hand: 0,
            capacity,
            max_ttl,
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The cached identity, if present and still valid at `now`. An expired entry is dropped.
    pub fn get(&mut self, digest: &TokenDigest, now: u64) -> Option<Identity> {
        let i = *self.index.get(digest)?;
        let slot = self.slots.get_mut(i)?;
        let live = slot.as_mut().filter(|s| now < s.valid_until)?;
        live.referenced = true;
        Some(live.identity.clone())
    }

    /// Caches `identity` until `valid_until` (the token's `exp` plus leeway), capped at
    /// `now + max_ttl`.
    pub fn insert(&mut self, digest: TokenDigest, identity: Identity, valid_until: u64, now: u64) {
        if self.capacity == 0 {
            return;
        }
        let valid_until = valid_until.min(now.saturating_add(self.max_ttl));
        if valid_until <= now {
            return;
        }
        let slot = Slot {
            digest,
            identity,
            valid_until,
            referenced: false,
        };
        if let Some(&i) = self.index.get(&digest) {
            if let Some(s) = self.slots.get_mut(i) {
                *s = Some(slot);
            }
            return;
        }
        let i = if self.slots.len() < self.capacity {
            self.slots.push(None);
            self.slots.len() - 1
        } else {
            self.victim(now)
        };
        if let Some(old) = self.slots.get_mut(i).and_then(Option::take) {
            self.index.remove(&old.digest);
        }
        if let Some(s) = self.slots.get_mut(i) {
            *s = Some(slot);
            self.index.insert(digest, i);
        }
    }

    /// The slot to reuse: the first empty, expired or unreferenced one from the hand on,
    /// clearing reference flags on the way. Two sweeps always find one.
    fn victim(&mut self, now: u64) -> usize {
        let n = self.slots.len();
        for _ in 0..2 * n {
            let i = self.hand;
            self.hand = (self.hand + 1) % n;
            match self.slots.get_mut(i) {
                Some(Some(s)) if s.referenced && now < s.valid_until => s.referenced = false,
                _ => return i,
            }
        }
        self.hand
    }

    /// Drops everything (the key set changed).
    pub fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.hand = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AuthMethod, IdentityData};
    use super::*;

    fn identity(sub: &str) -> Identity {
        Identity::new(IdentityData {
            subject: sub.to_owned(),
            issuer: None,
            scopes: Vec::new(),
            claims: serde_json::Map::new(),
            expires_at: None,
            method: AuthMethod::Jwt,
        })
    }

    fn d(token: &str) -> TokenDigest {
        TokenDigest::of(token)
    }

    #[test]
    fn hits_return_the_identity_until_it_expires() {
        let mut c = TokenCache::new(4, 300);
        assert!(c.get(&d("t"), 0).is_none());
        c.insert(d("t"), identity("alice"), 100, 0);
        assert_eq!(
            c.get(&d("t"), 99).map(|i| i.subject.clone()),
            Some("alice".to_owned())
        );
        assert!(c.get(&d("t"), 100).is_none(), "expired at valid_until");
        assert!(c.get(&d("u"), 50).is_none());
    }

    #[test]
    fn max_ttl_caps_long_lived_tokens() {
        let mut c = TokenCache::new(4, 300);
        c.insert(d("t"), identity("a"), 1_000_000, 1000);
        assert!(c.get(&d("t"), 1299).is_some());
        assert!(c.get(&d("t"), 1300).is_none());
    }

    #[test]
    fn already_expired_tokens_are_not_cached_and_capacity_zero_caches_nothing() {
        let mut c = TokenCache::new(4, 300);
        c.insert(d("t"), identity("a"), 10, 10);
        assert!(c.is_empty());
        let mut off = TokenCache::new(0, 300);
        off.insert(d("t"), identity("a"), 100, 0);
        assert!(!off.enabled() && off.get(&d("t"), 1).is_none());
    }

    #[test]
    fn a_full_cache_evicts_entries_not_recently_used() {
        let mut c = TokenCache::new(3, 1000);
        for t in ["a", "b", "c"] {
            c.insert(d(t), identity(t), 500, 0);
        }
        // a and c are used; b is not: b goes.
        assert!(c.get(&d("a"), 1).is_some());
        assert!(c.get(&d("c"), 1).is_some());
        c.insert(d("d"), identity("d"), 500, 1);
        assert_eq!(c.len(), 3);
        assert!(c.get(&d("b"), 2).is_none());
        for t in ["a", "c", "d"] {
            assert!(c.get(&d(t), 2).is_some(), "{t}");
        }
    }

    #[test]
    fn expired_entries_are_evicted_first() {
        let mut c = TokenCache::new(2, 1000);
        c.insert(d("short"), identity("s"), 10, 0);
        c.insert(d("long"), identity("l"), 900, 0);
        assert!(c.get(&d("long"), 1).is_some());
        assert!(c.get(&d("short"), 1).is_some());
        c.insert(d("new"), identity("n"), 900, 20);
        assert!(c.get(&d("long"), 21).is_some());
        assert!(c.get(&d("new"), 21).is_some());
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn the_cache_never_grows_past_its_capacity() {
        let mut c = TokenCache::new(16, 1000);
        for i in 0..1000u64 {
            let t = format!("token-{i}");
            c.insert(d(&t), identity(&t), 900, i % 800);
            if i % 3 == 0 {
                let _ = c.get(&d(&t), i % 800);
            }
            assert!(c.len() <= 16);
            assert_eq!(c.len(), c.slots.iter().flatten().count());
        }
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn reinserting_a_token_refreshes_it_in_place() {
        let mut c = TokenCache::new(2, 1000);
        c.insert(d("t"), identity("old"), 100, 0);
        c.insert(d("t"), identity("new"), 200, 0);
        assert_eq!(c.len(), 1);
        assert_eq!(
            c.get(&d("t"), 150).map(|i| i.subject.clone()),
            Some("new".to_owned())
        );
    }
}
