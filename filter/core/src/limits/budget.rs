//! Token budgets: units used per subject (or any `by` key) per fixed window.
//!
//! Windows are aligned to multiples of their length since the Unix epoch, so every worker and
//! replica agrees on when a window starts without coordination, and users can tell when a
//! budget resets (an hour budget resets on the hour, UTC). A sliding window would smooth the
//! boundary, where a caller can spend up to two budgets in a short time, but needs two counters
//! per key and gives no clear reset time to put in the error; for cost control a fixed, stated
//! reset is the more useful promise.

use super::reply::{LimitKind, Limited};
use super::table::{self, Change, Slot, Way};
use super::{Dim, Usage};
use crate::selector::{Match, Target};
use crate::store::{SharedStore, StoreError};

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Result tokens (bytes when the glue has no token count).
    Tokens,
    /// Result bytes.
    Bytes,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Tokens => "tokens",
            Unit::Bytes => "bytes",
        }
    }
}

/// One compiled token budget.
#[derive(Debug, Clone)]
pub struct Budget {
    pub name: String,
    prefix: String,
    by: Vec<Dim>,
    matches: Match,
    pub limit: u64,
    pub window_seconds: u64,
    pub unit: Unit,
}

impl Budget {
    pub(crate) fn new(
        name: String,
        by: Vec<Dim>,
        matches: Match,
        limit: u64,
        window_seconds: u64,
        unit: Unit,
    ) -> Budget {
        Budget {
            prefix: format!("mcpgw.tb.{name}."),
            name,
            by,
            matches,
            limit,
            window_seconds,
            unit,
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

    fn window_ms(&self) -> u64 {
        self.window_seconds.saturating_mul(1000).max(1)
    }

    /// Start of the window `now` falls in.
    pub fn window_start(&self, now: u64) -> u64 {
        now - now % self.window_ms()
    }

    /// What one response costs in this budget's unit.
    pub fn amount(&self, usage: Usage) -> u64 {
        match self.unit {
            Unit::Tokens => usage.tokens.unwrap_or(usage.bytes),
            Unit::Bytes => usage.bytes,
        }
    }

    /// Used units in the current window of an entry.
    fn used(&self, way: Option<&Way>, now: u64) -> u64 {
        match way {
            Some(w) if w.a == self.window_start(now) => w.b,
            _ => 0,
        }
    }

    /// `Some` when the budget of `slot` is used up in the current window.
    pub(crate) fn check(
        &self,
        store: &dyn SharedStore,
        slot: &Slot,
        now: u64,
    ) -> Result<Option<Limited>, StoreError> {
        let way = table::read(store, slot)?;
        let used = self.used(way.as_ref(), now);
        if used < self.limit {
            return Ok(None);
        }
        let ends = self.window_start(now).saturating_add(self.window_ms());
        Ok(Some(Limited {
            rule: self.name.clone(),
            retry_after_ms: ends.saturating_sub(now),
            contended: false,
            kind: LimitKind::Budget {
                limit: self.limit,
                window_seconds: self.window_seconds,
                unit: self.unit,
                used,
            },
        }))
    }

    /// Adds `usage` to the budget of `slot`; false when it could not be recorded.
    pub(crate) fn charge(
        &self,
        store: &dyn SharedStore,
        slot: &Slot,
        usage: Usage,
        now: u64,
    ) -> bool {
        let amount = self.amount(usage);
        if amount == 0 {
            return true;
        }
        let start = self.window_start(now);
        table::modify(
            store,
            slot,
            // A finished window carries nothing; then the least used goes first.
            |w| {
                if w.a == start {
                    u64::MAX - 1 - w.b.min(u64::MAX - 2)
                } else {
                    u64::MAX
                }
            },
            |way| Change::Put {
                a: start,
                b: self.used(way.as_ref(), now).saturating_add(amount),
                out: (),
            },
        )
        .is_ok()
    }
}
