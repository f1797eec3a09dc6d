//! Token buckets in exact integer arithmetic.
//!
//! A rule allows `requests` per `perSeconds` with a bucket of `burst`. To refill without
//! rounding, one request costs `perSeconds × 1000` units and the bucket gains `requests` units
//! per millisecond: refill is `elapsed_ms × requests`, a product of integers, so there is no
//! drift however often or rarely the bucket is touched, and the wait for the next request is an
//! exact ceiling division. (Milli-tokens would round `requests / perSeconds` per millisecond:
//! 1 request per minute would then never refill when touched every millisecond.)
//! The largest level, `burst × perSeconds × 1000 ≤ 10^6 × 86400 × 1000`, fits in a u64.

use super::reply::{LimitKind, Limited};
use super::table::{self, Change, Slot, Way};
use super::Dim;
use crate::selector::{Match, Target};
use crate::store::{SharedStore, UpdateError};

/// How long a caller that lost the CAS race [`crate::store::CAS_ATTEMPTS`] times is told to
/// wait: contention passes quickly.
const CONTENDED_RETRY_MS: u64 = 1000;

/// One compiled rate limit rule.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub name: String,
    prefix: String,
    by: Vec<Dim>,
    matches: Match,
    pub requests: u64,
    pub per_seconds: u64,
    pub burst: u64,
}

/// What [`Bucket::take`] did.
#[derive(Debug)]
pub(crate) enum Take {
    Admitted,
    Refused(Limited),
    /// Shared data failed: nothing was taken.
    Failed,
}

impl Bucket {
    pub(crate) fn new(
        name: String,
        by: Vec<Dim>,
        matches: Match,
        requests: u64,
        per_seconds: u64,
        burst: u64,
    ) -> Bucket {
        Bucket {
            prefix: format!("mcpgw.rl.{name}."),
            name,
            by,
            matches,
            requests,
            per_seconds,
            burst,
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn by(&self) -> &[Dim] {
        &self.by
    }

    pub fn matches(&self, target: &Target<'_>) -> bool {
        self.matches.matches(target)
    }

    /// Units one request costs.
    fn unit(&self) -> u64 {
        self.per_seconds.saturating_mul(1000)
    }

    fn capacity(&self) -> u64 {
        self.burst.saturating_mul(self.unit())
    }

    /// The level at `now`: a bucket not tracked is full; time before the last update (another
    /// worker's clock ran ahead) refills nothing.
    fn level(&self, way: Option<&Way>, now: u64) -> u64 {
        match way {
            None => self.capacity(),
            Some(w) => {
                let gained = now.saturating_sub(w.b).saturating_mul(self.requests);
                w.a.saturating_add(gained).min(self.capacity())
            }
        }
    }

    /// Milliseconds until the bucket holds one request's worth, from `level`.
    fn wait_ms(&self, level: u64) -> u64 {
        self.unit()
            .saturating_sub(level)
            .div_ceil(self.requests.max(1))
    }

    fn limited(&self, retry_after_ms: u64, contended: bool) -> Limited {
        Limited {
            rule: self.name.clone(),
            retry_after_ms,
            contended,
            kind: LimitKind::Rate {
                requests: self.requests,
                per_seconds: self.per_seconds,
                burst: self.burst,
            },
        }
    }

    /// Takes one request's worth from the bucket of `slot`, or says how long to wait.
    pub(crate) fn take(&self, store: &dyn SharedStore, slot: &Slot, now: u64) -> Take {
        let unit = self.unit();
        let result = table::modify(
            store,
            slot,
            // A full bucket carries no information: replace the fullest first.
            |w| self.level(Some(w), now),
            |way| {
                let level = self.level(way.as_ref(), now);
                if level >= unit {
                    Change::Put {
                        a: level - unit,
                        b: way.map_or(now, |w| w.b.max(now)),
                        out: None,
                    }
                } else {
                    Change::Keep(Some(self.wait_ms(level)))
                }
            },
        );
        match result {
            Ok(None) => Take::Admitted,
            Ok(Some(wait)) => Take::Refused(self.limited(wait, false)),
            // Fail closed under contention: a conflict means other requests for this very set
            // are being admitted right now, which is the burst the limit exists for.
            Err(UpdateError::Contended) => {
                Take::Refused(self.limited(CONTENDED_RETRY_MS.min(self.wait_ms(0)), true))
            }
            // Fail open when the host fails: the limiter is broken, not the traffic.
            Err(UpdateError::Host) => Take::Failed,
        }
    }

    /// Returns a request taken by [`Bucket::take`] (another rule refused the request).
    pub(crate) fn give_back(&self, store: &dyn SharedStore, slot: &Slot, now: u64) {
        let unit = self.unit();
        let _ = table::modify(
            store,
            slot,
            |w| self.level(Some(w), now),
            |way| match way {
                Some(w) => Change::Put {
                    a: self
                        .level(Some(&w), now)
                        .saturating_add(unit)
                        .min(self.capacity()),
                    b: w.b.max(now),
                    out: (),
                },
                // Replaced meanwhile: the bucket starts full anyway.
                None => Change::Keep(()),
            },
        );
    }
}
