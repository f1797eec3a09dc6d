//! Rate limits and token budgets, exact across Envoy workers through shared data and CAS.
//!
//! - [`Limits::check_rate`]: token buckets per subject, server, tool, method or any combination
//!   (`by`), for the requests a rule's `match` selects. A request must be admitted by every
//!   matching rule; when a later rule refuses, what earlier rules took is given back, so a
//!   refused request never uses up anyone's allowance.
//! - [`Limits::check_budget`] / [`Limits::charge_budget`]: result tokens (or bytes) per subject
//!   per fixed window; the check before forwarding refuses once the budget is used up, the
//!   charge after the response adds what it cost.
//!
//! Counters live in fixed-size tables ([`table`]), so shared memory is bounded whatever the
//! number of subjects. Time is a parameter (ms since the epoch): the core never reads a clock.
//! `docs/guardrails-limits.md` describes the configuration and every decision.

mod bucket;
mod budget;
pub mod reply;
mod table;

use std::net::IpAddr;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::ConfigError;
use crate::selector::{Match, RawMatch, Target};
use crate::store::{SharedStore, StoreError};

pub use bucket::Bucket;
pub use budget::{Budget, Unit};
pub use reply::{LimitKind, Limited, LocalReply, ReplyTo};

/// Default and bounds of `keysPerRule`.
const DEFAULT_KEYS_PER_RULE: u32 = 4096;
const MAX_KEYS_PER_RULE: u32 = 65_536;

/// The `limits` section as users write it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawLimits {
    /// How callers without authentication are told apart: `"address"` (default; each client IP
    /// address, IPv6 by /64 network, has its own buckets) or `"shared"` (all anonymous callers
    /// share one subject).
    pub anonymous: Option<String>,
    /// How many distinct keys (subject × tool × …) each rule tracks at once, 4 to 65536.
    /// Default 4096. Shared memory per rule is about 40 bytes per key, fixed. Beyond it, the
    /// least informative entries (refilled buckets, finished windows) are replaced first.
    pub keys_per_rule: Option<u32>,
    /// Token-bucket rate limits, all checked for every request.
    pub rate_limits: Option<Vec<RawRateLimit>>,
    /// Result-token budgets per window.
    pub token_budgets: Option<Vec<RawTokenBudget>>,
}

/// One token bucket rule.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRateLimit {
    /// Unique name, 1-64 of `[A-Za-z0-9_-]`: in errors, metrics and shared-data keys. Renaming a
    /// rule starts its buckets afresh; changing its numbers keeps them.
    pub name: String,
    /// What gets its own bucket: any of `"subject"`, `"server"`, `"tool"`, `"method"`.
    /// Default `["subject"]`; `[]` is one bucket for everyone.
    pub by: Option<Vec<String>>,
    /// Which requests the rule counts. Absent: every request on the MCP path.
    #[serde(rename = "match")]
    pub matches: Option<RawMatch>,
    /// Requests allowed per `perSeconds` (the refill rate), 1 to 1000000.
    pub requests: u64,
    /// The period of `requests`, 1 to 86400 seconds.
    pub per_seconds: u64,
    /// Bucket size: requests allowed at once after a quiet period, 1 to 1000000.
    /// Default `requests`.
    pub burst: Option<u64>,
}

/// One token budget rule.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawTokenBudget {
    /// Unique name among budgets, 1-64 of `[A-Za-z0-9_-]`.
    pub name: String,
    /// What gets its own budget, as in rate limits. Default `["subject"]`.
    pub by: Option<Vec<String>>,
    /// Which requests the budget applies to. Absent: every request.
    #[serde(rename = "match")]
    pub matches: Option<RawMatch>,
    /// Units allowed per window, 1 to 10^12.
    pub tokens: u64,
    /// Window length, 1 to 2678400 seconds (31 days). Windows are aligned to multiples of their
    /// length since the Unix epoch (an hour window resets on the hour, UTC).
    pub window_seconds: u64,
    /// What is counted: `"tokens"` (default: result tokens from the token counter; bytes when
    /// counting is off, which only makes the budget stricter) or `"bytes"` (result bytes).
    pub unit: Option<String>,
}

/// A part of the request that can key a bucket or budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Subject,
    Server,
    Tool,
    Method,
}

impl Dim {
    fn parse(s: &str) -> Option<Dim> {
        Some(match s {
            "subject" => Dim::Subject,
            "server" => Dim::Server,
            "tool" => Dim::Tool,
            "method" => Dim::Method,
            _ => return None,
        })
    }
}

/// How anonymous callers are keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anonymous {
    /// One subject per client address (IPv4 address, IPv6 /64).
    Address,
    /// One subject for all anonymous callers.
    Shared,
}

/// Who is calling, as the glue knows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caller<'a> {
    /// The authenticated subject (`sub` or API-key name); `None` without authentication.
    pub subject: Option<&'a str>,
    /// The client's address as Envoy reports it (`source.address`, `ip:port` or `[ip]:port`),
    /// used for anonymous callers.
    pub client_address: Option<&'a str>,
}

/// The compiled `limits` section.
#[derive(Debug, Clone)]
pub struct Limits {
    pub anonymous: Anonymous,
    /// Sets per rule (`keysPerRule / 4`).
    sets: u32,
    pub rate_limits: Vec<Bucket>,
    pub token_budgets: Vec<Budget>,
}

/// The outcome of [`Limits::check_rate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateDecision {
    /// Every matching rule admitted the request (or none matched).
    Admitted,
    /// A rule refused: answer with [`Limited::reply`].
    Limited(Limited),
    /// Admitted without a full check because shared data failed (fail-open); count it.
    Unchecked,
}

/// The outcome of [`Limits::check_budget`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetDecision {
    Admitted,
    Exhausted(Limited),
    /// Admitted because shared data could not be read (fail-open); count it.
    Unchecked,
}

/// What a response cost, for [`Limits::charge_budget`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Result tokens from the token counter, `None` when counting is off.
    pub tokens: Option<u64>,
    /// Result bytes.
    pub bytes: u64,
}

/// The outcome of [`Limits::charge_budget`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charged {
    /// Budgets charged.
    pub charged: u32,
    /// Budgets that could not be charged (contention or host failure); the usage is lost.
    pub dropped: u32,
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn in_range(field: String, value: u64, lo: u64, hi: u64) -> Result<u64, ConfigError> {
    if value < lo || value > hi {
        return Err(invalid(
            field,
            format!("must be between {lo} and {hi}, got {value}"),
        ));
    }
    Ok(value)
}

/// Shared validation of what rate limits and budgets have in common.
fn common(
    at: &str,
    name: &str,
    by: Option<Vec<String>>,
    matches: Option<RawMatch>,
    seen: &mut Vec<String>,
) -> Result<(Vec<Dim>, Match), ConfigError> {
    if !valid_name(name) {
        return Err(invalid(
            format!("{at}.name"),
            format!("{name:?} must be 1-64 of [A-Za-z0-9_-]"),
        ));
    }
    if seen.iter().any(|n| n == name) {
        return Err(invalid(
            format!("{at}.name"),
            format!("duplicate name {name:?}"),
        ));
    }
    seen.push(name.to_owned());
    let by = by.unwrap_or_else(|| vec!["subject".to_owned()]);
    let mut dims = Vec::with_capacity(by.len());
    for (j, d) in by.iter().enumerate() {
        let Some(dim) = Dim::parse(d) else {
            return Err(invalid(
                format!("{at}.by[{j}]"),
                format!("unknown key {d:?}; known: subject, server, tool, method"),
            ));
        };
        if dims.contains(&dim) {
            return Err(invalid(format!("{at}.by[{j}]"), format!("{d:?} repeated")));
        }
        dims.push(dim);
    }
    let matches = Match::compile(matches.unwrap_or_default(), &format!("{at}.match"))?;
    Ok((dims, matches))
}

impl Limits {
    /// Compiles the `limits` section; `path` is where it sits in the config (`limits`).
    pub fn compile(raw: RawLimits, path: &str) -> Result<Limits, ConfigError> {
        let anonymous = match raw.anonymous.as_deref() {
            None | Some("address") => Anonymous::Address,
            Some("shared") => Anonymous::Shared,
            Some(other) => {
                return Err(invalid(
                    format!("{path}.anonymous"),
                    format!("{other:?} must be \"address\" or \"shared\""),
                ))
            }
        };
        let keys = in_range(
            format!("{path}.keysPerRule"),
            u64::from(raw.keys_per_rule.unwrap_or(DEFAULT_KEYS_PER_RULE)),
            table::WAYS as u64,
            u64::from(MAX_KEYS_PER_RULE),
        )?;
        let sets = u32::try_from(keys.div_ceil(table::WAYS as u64)).unwrap_or(1);
        let mut names = Vec::new();
        let mut rate_limits = Vec::new();
        for (i, r) in raw.rate_limits.unwrap_or_default().into_iter().enumerate() {
            let at = format!("{path}.rateLimits[{i}]");
            let (by, matches) = common(&at, &r.name, r.by, r.matches, &mut names)?;
            let requests = in_range(format!("{at}.requests"), r.requests, 1, 1_000_000)?;
            let per_seconds = in_range(format!("{at}.perSeconds"), r.per_seconds, 1, 86_400)?;
            let burst = in_range(
                format!("{at}.burst"),
                r.burst.unwrap_or(requests),
                1,
                1_000_000,
            )?;
            rate_limits.push(Bucket::new(
                r.name,
                by,
                matches,
                requests,
                per_seconds,
                burst,
            ));
        }
        let mut names = Vec::new();
        let mut token_budgets = Vec::new();
        for (i, b) in raw
            .token_budgets
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let at = format!("{path}.tokenBudgets[{i}]");
            let (by, matches) = common(&at, &b.name, b.by, b.matches, &mut names)?;
            let tokens = in_range(format!("{at}.tokens"), b.tokens, 1, 1_000_000_000_000)?;
            let window_seconds = in_range(
                format!("{at}.windowSeconds"),
                b.window_seconds,
                1,
                2_678_400,
            )?;
            let unit = match b.unit.as_deref() {
                None | Some("tokens") => Unit::Tokens,
                Some("bytes") => Unit::Bytes,
                Some(other) => {
                    return Err(invalid(
                        format!("{at}.unit"),
                        format!("{other:?} must be \"tokens\" or \"bytes\""),
                    ))
                }
            };
            token_budgets.push(Budget::new(
                b.name,
                by,
                matches,
                tokens,
                window_seconds,
                unit,
            ));
        }
        Ok(Limits {
            anonymous,
            sets,
            rate_limits,
            token_budgets,
        })
    }

    /// Whether any rule is configured (the glue can skip everything otherwise).
    pub fn is_empty(&self) -> bool {
        self.rate_limits.is_empty() && self.token_budgets.is_empty()
    }

    /// Every shared-data key the rules use. Pass them to [`crate::store::ensure_keys`] when the
    /// configuration is applied (on every VM; it is idempotent), so that request-path writes only
    /// ever update existing keys, which CAS protects (see [`crate::store`]).
    pub fn shared_keys(&self) -> impl Iterator<Item = String> + '_ {
        let sets = self.sets;
        self.rate_limits
            .iter()
            .map(|r| r.prefix())
            .chain(self.token_budgets.iter().map(|b| b.prefix()))
            .flat_map(move |p| table::keys(p, sets))
    }

    /// Number of shared-data keys ([`Limits::shared_keys`]).
    pub fn shared_key_count(&self) -> usize {
        (self.rate_limits.len() + self.token_budgets.len()) * self.sets as usize
    }

    /// Takes one request from every rate limit that matches `target`. Admitted only when every
    /// rule admits; when one refuses, earlier rules get their token back. Call it for each
    /// request on the MCP path once the caller and the JSON-RPC method (and tool) are known.
    pub fn check_rate(
        &self,
        store: &dyn SharedStore,
        caller: &Caller<'_>,
        target: &Target<'_>,
        now_ms: u64,
    ) -> RateDecision {
        let mut taken: Vec<(&Bucket, table::Slot)> = Vec::new();
        let mut unchecked = false;
        for rule in self.rate_limits.iter().filter(|r| r.matches(target)) {
            let slot = self.slot(rule.prefix(), rule.by(), caller, target);
            match rule.take(store, &slot, now_ms) {
                bucket::Take::Admitted => taken.push((rule, slot)),
                bucket::Take::Failed => unchecked = true,
                bucket::Take::Refused(limited) => {
                    for (r, s) in &taken {
                        r.give_back(store, s, now_ms);
                    }
                    return RateDecision::Limited(limited);
                }
            }
        }
        if unchecked {
            RateDecision::Unchecked
        } else {
            RateDecision::Admitted
        }
    }

    /// Whether every budget that matches `target` still has room. Read-only: call it before
    /// forwarding; a budget refuses once a charge has used it up (the call that crosses the
    /// line completes; the next one is refused).
    pub fn check_budget(
        &self,
        store: &dyn SharedStore,
        caller: &Caller<'_>,
        target: &Target<'_>,
        now_ms: u64,
    ) -> BudgetDecision {
        let mut unchecked = false;
        for rule in self.token_budgets.iter().filter(|b| b.matches(target)) {
            let slot = self.slot(rule.prefix(), rule.by(), caller, target);
            match rule.check(store, &slot, now_ms) {
                Ok(None) => {}
                Ok(Some(limited)) => return BudgetDecision::Exhausted(limited),
                Err(StoreError::CasMismatch | StoreError::Host) => unchecked = true,
            }
        }
        if unchecked {
            BudgetDecision::Unchecked
        } else {
            BudgetDecision::Admitted
        }
    }

    /// Adds what a response cost to every budget that matches `target`. Call it once per request
    /// when the final response has been counted (the same `caller` and `target` as the check).
    pub fn charge_budget(
        &self,
        store: &dyn SharedStore,
        caller: &Caller<'_>,
        target: &Target<'_>,
        usage: Usage,
        now_ms: u64,
    ) -> Charged {
        let mut out = Charged::default();
        for rule in self.token_budgets.iter().filter(|b| b.matches(target)) {
            let slot = self.slot(rule.prefix(), rule.by(), caller, target);
            if rule.charge(store, &slot, usage, now_ms) {
                out.charged += 1;
            } else {
                out.dropped += 1;
            }
        }
        out
    }

    /// The table slot of one request under one rule: its `by` parts, hashed.
    fn slot(
        &self,
        prefix: &str,
        by: &[Dim],
        caller: &Caller<'_>,
        target: &Target<'_>,
    ) -> table::Slot {
        let mut h = Sha256::new();
        h.update(prefix.as_bytes());
        for dim in by {
            match dim {
                Dim::Subject => match (caller.subject, self.anonymous, caller.client_address) {
                    (Some(sub), _, _) => table::hash_part(&mut h, b's', Some(sub)),
                    (None, Anonymous::Address, Some(addr)) => {
                        table::hash_part(&mut h, b'a', Some(&client_network(addr)));
                    }
                    (None, _, _) => table::hash_part(&mut h, b'n', None),
                },
                Dim::Server => table::hash_part(&mut h, b'v', target.server),
                Dim::Tool => table::hash_part(&mut h, b't', target.tool),
                Dim::Method => table::hash_part(&mut h, b'm', target.method),
            }
        }
        table::slot_of(h, prefix, self.sets)
    }
}

/// The network an anonymous client is keyed by: its IPv4 address, or the /64 of its IPv6
/// address (one host usually holds a whole /64, so per-address keys would be free to rotate).
/// The port is dropped. Text that is no address is used as it is.
pub fn client_network(address: &str) -> String {
    let host = if let Some(rest) = address.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(h, _)| h)
    } else if address.matches(':').count() == 1 {
        address.split_once(':').map_or(address, |(h, _)| h)
    } else {
        address
    };
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
            }
        },
        Err(_) => address.to_owned(),
    }
}

#[cfg(test)]
mod tests;
