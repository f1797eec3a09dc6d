//! Guardrails on tool traffic: PII and secret redaction and prompt-injection screening of tool
//! results, tool arguments and tool descriptions, in one streaming pass over the bytes.
//!
//! The input is what the gateway relays: a JSON body, or SSE events whose `data:` lines carry
//! JSON, in chunks split anywhere (inside a UTF-8 character, inside a `\u` escape). Only the
//! contents of JSON strings are scanned; JSON escapes are decoded on the fly, so `\u200b` and the
//! surrogate pair `\udb40\udc41` are seen as the characters they stand for, and `\n`, `\"`, `\\`
//! separate words instead of gluing letters onto them. A replacement (`[REDACTED:email]`) holds
//! no `"` or `\` and never crosses a string boundary, so the output stays valid JSON.
//!
//! One pass: bytes are classified with a table and gathered into words; each finished word goes
//! through the detectors its flags make possible (an `@` for e-mail, digits for numbers, ...);
//! phrases are matched over words. [`GuardStream`] holds back only the word in progress (and an
//! unfinished phrase when phrases are redacted): at most a few hundred bytes, 1 KiB worst case.
//! Feeding a body in any number of chunks gives byte-identical output to feeding it at once.
//!
//! The rule catalogue, what deliberately does not match, and the measured false-positive and
//! false-negative counts are in `README.md` next to this file.

mod config;
mod inject;
mod pii;
mod scan;
mod stream;
#[cfg(test)]
mod tests_stream;

pub use config::{
    GuardConfigError, GuardSet, RawInjection, RawOverride, RawRedact, RawToolScope, Traffic,
};
pub use stream::GuardStream;

/// Everything the guardrails can find: PII kinds, secret formats and injection rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    Email,
    Phone,
    Card,
    Iban,
    Ssn,
    AwsKey,
    GithubToken,
    GitlabToken,
    SlackToken,
    StripeKey,
    GoogleApiKey,
    OpenaiKey,
    AnthropicKey,
    HuggingfaceToken,
    NpmToken,
    Jwt,
    PrivateKey,
    BearerToken,
    Override,
    Role,
    NewInstructions,
    PromptLeak,
    Conceal,
    TagDirective,
    HiddenTags,
    Invisible,
    Bidi,
    ExfilUrl,
    ExfilHost,
}

/// What a detector is about; config names kinds (`pii`, `secret`) and rules (`injection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Pii,
    Secret,
    Injection,
}

impl Detector {
    pub const COUNT: usize = 29;

    pub const ALL: [Detector; Detector::COUNT] = [
        Detector::Email,
        Detector::Phone,
        Detector::Card,
        Detector::Iban,
        Detector::Ssn,
        Detector::AwsKey,
        Detector::GithubToken,
        Detector::GitlabToken,
        Detector::SlackToken,
        Detector::StripeKey,
        Detector::GoogleApiKey,
        Detector::OpenaiKey,
        Detector::AnthropicKey,
        Detector::HuggingfaceToken,
        Detector::NpmToken,
        Detector::Jwt,
        Detector::PrivateKey,
        Detector::BearerToken,
        Detector::Override,
        Detector::Role,
        Detector::NewInstructions,
        Detector::PromptLeak,
        Detector::Conceal,
        Detector::TagDirective,
        Detector::HiddenTags,
        Detector::Invisible,
        Detector::Bidi,
        Detector::ExfilUrl,
        Detector::ExfilHost,
    ];

    /// The id used in config, metrics labels and replacements.
    pub fn id(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::Phone => "phone",
            Detector::Card => "card",
            Detector::Iban => "iban",
            Detector::Ssn => "ssn",
            Detector::AwsKey => "aws-key",
            Detector::GithubToken => "github-token",
            Detector::GitlabToken => "gitlab-token",
            Detector::SlackToken => "slack-token",
            Detector::StripeKey => "stripe-key",
            Detector::GoogleApiKey => "google-api-key",
            Detector::OpenaiKey => "openai-key",
            Detector::AnthropicKey => "anthropic-key",
            Detector::HuggingfaceToken => "huggingface-token",
            Detector::NpmToken => "npm-token",
            Detector::Jwt => "jwt",
            Detector::PrivateKey => "private-key",
            Detector::BearerToken => "bearer-token",
            Detector::Override => "override",
            Detector::Role => "role",
            Detector::NewInstructions => "new-instructions",
            Detector::PromptLeak => "prompt-leak",
            Detector::Conceal => "conceal",
            Detector::TagDirective => "tag-directive",
            Detector::HiddenTags => "hidden-tags",
            Detector::Invisible => "invisible",
            Detector::Bidi => "bidi",
            Detector::ExfilUrl => "exfil-url",
            Detector::ExfilHost => "exfil-host",
        }
    }

    pub fn from_id(id: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.id() == id)
    }

    pub fn category(self) -> Category {
        match self {
            Detector::Email | Detector::Phone | Detector::Card | Detector::Iban | Detector::Ssn => {
                Category::Pii
            }
            Detector::AwsKey
            | Detector::GithubToken
            | Detector::GitlabToken
            | Detector::SlackToken
            | Detector::StripeKey
            | Detector::GoogleApiKey
            | Detector::OpenaiKey
            | Detector::AnthropicKey
            | Detector::HuggingfaceToken
            | Detector::NpmToken
            | Detector::Jwt
            | Detector::PrivateKey
            | Detector::BearerToken => Category::Secret,
            _ => Category::Injection,
        }
    }

    /// What replaces a redacted span. Hidden characters are dropped rather than marked: they sit
    /// inside words, where a marker would mangle the visible text around them.
    pub fn replacement(self) -> &'static str {
        match self {
            Detector::Email => "[REDACTED:email]",
            Detector::Phone => "[REDACTED:phone]",
            Detector::Card => "[REDACTED:card]",
            Detector::Iban => "[REDACTED:iban]",
            Detector::Ssn => "[REDACTED:ssn]",
            Detector::AwsKey => "[REDACTED:aws-key]",
            Detector::GithubToken => "[REDACTED:github-token]",
            Detector::GitlabToken => "[REDACTED:gitlab-token]",
            Detector::SlackToken => "[REDACTED:slack-token]",
            Detector::StripeKey => "[REDACTED:stripe-key]",
            Detector::GoogleApiKey => "[REDACTED:google-api-key]",
            Detector::OpenaiKey => "[REDACTED:openai-key]",
            Detector::AnthropicKey => "[REDACTED:anthropic-key]",
            Detector::HuggingfaceToken => "[REDACTED:huggingface-token]",
            Detector::NpmToken => "[REDACTED:npm-token]",
            Detector::Jwt => "[REDACTED:jwt]",
            Detector::PrivateKey => "[REDACTED:private-key]",
            Detector::BearerToken => "[REDACTED:bearer-token]",
            Detector::Override => "[REDACTED:override]",
            Detector::Role => "[REDACTED:role]",
            Detector::NewInstructions => "[REDACTED:new-instructions]",
            Detector::PromptLeak => "[REDACTED:prompt-leak]",
            Detector::Conceal => "[REDACTED:conceal]",
            Detector::TagDirective => "[REDACTED:tag-directive]",
            Detector::HiddenTags | Detector::Invisible | Detector::Bidi => "",
            Detector::ExfilUrl => "[REDACTED:exfil-url]",
            Detector::ExfilHost => "[REDACTED:exfil-host]",
        }
    }

    const fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// A set of detectors (a bit mask).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct DetectorSet(u32);

impl DetectorSet {
    pub const EMPTY: DetectorSet = DetectorSet(0);
    pub const ALL: DetectorSet = DetectorSet((1 << Detector::COUNT) - 1);
    /// Personal data: e-mail, phone, card, IBAN, SSN.
    pub const PII: DetectorSet = DetectorSet(0b1_1111);
    /// Credentials: API keys, tokens, JWTs, private keys.
    pub const SECRETS: DetectorSet = DetectorSet(((1 << 18) - 1) & !0b1_1111);
    /// Prompt-injection rules.
    pub const INJECTION: DetectorSet = DetectorSet(((1 << Detector::COUNT) - 1) & !((1 << 18) - 1));

    pub const fn of(d: Detector) -> DetectorSet {
        DetectorSet(d.bit())
    }

    pub fn contains(self, d: Detector) -> bool {
        self.0 & d.bit() != 0
    }

    pub fn intersects(self, other: DetectorSet) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    #[must_use]
    pub fn with(self, d: Detector) -> DetectorSet {
        DetectorSet(self.0 | d.bit())
    }

    #[must_use]
    pub fn union(self, other: DetectorSet) -> DetectorSet {
        DetectorSet(self.0 | other.0)
    }

    #[must_use]
    pub fn intersection(self, other: DetectorSet) -> DetectorSet {
        DetectorSet(self.0 & other.0)
    }

    #[must_use]
    pub fn minus(self, other: DetectorSet) -> DetectorSet {
        DetectorSet(self.0 & !other.0)
    }

    pub fn iter(self) -> impl Iterator<Item = Detector> {
        Detector::ALL.into_iter().filter(move |d| self.contains(*d))
    }
}

/// What happens when a detector fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    /// Count it, change nothing.
    #[default]
    Flag,
    /// Replace the span (see [`Detector::replacement`]).
    Redact,
    /// Redact the span and report that the message must be refused: the glue replaces the whole
    /// message with a JSON-RPC error. The span is redacted as well, so nothing of it leaks even
    /// when earlier parts of a stream were already sent.
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Flag => "flag",
            Action::Redact => "redact",
            Action::Block => "block",
        }
    }
}

/// How the bytes are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// A JSON body, or an SSE stream of JSON events: only the contents of JSON strings are
    /// scanned, with escapes decoded.
    #[default]
    Json,
    /// Plain text (a tool description already taken out of its JSON): everything is scanned, no
    /// escapes.
    Text,
}

/// The detectors and actions that apply to one message (a tool call's result, its arguments, or
/// one tool's description). Small and `Copy`: the glue keeps it in its per-request state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallGuard {
    /// Detectors that run.
    enabled: DetectorSet,
    /// Of those, the ones that change the output (redact or block).
    modify: DetectorSet,
    /// Of those, the ones that block the message.
    block: DetectorSet,
}

impl CallGuard {
    /// A guard that runs `detectors` with one action (for tests and simple callers).
    pub fn new(detectors: DetectorSet, action: Action) -> CallGuard {
        CallGuard::default().with(detectors, action)
    }

    /// This guard plus `detectors` with `action` (a detector already present is re-assigned).
    #[must_use]
    pub fn with(self, detectors: DetectorSet, action: Action) -> CallGuard {
        let (modify, block) = match action {
            Action::Flag => (DetectorSet::EMPTY, DetectorSet::EMPTY),
            Action::Redact => (detectors, DetectorSet::EMPTY),
            Action::Block => (detectors, detectors),
        };
        CallGuard {
            enabled: self.enabled.union(detectors),
            modify: self.modify.minus(detectors).union(modify),
            block: self.block.minus(detectors).union(block),
        }
    }

    pub fn enabled(&self) -> DetectorSet {
        self.enabled
    }

    /// Whether any finding can change the bytes: if not, the glue may pass chunks through
    /// untouched and only read [`GuardStream::findings`].
    pub fn modifies(&self) -> bool {
        !self.modify.is_empty()
    }

    /// Whether any finding can block the message.
    pub fn can_block(&self) -> bool {
        !self.block.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.enabled.is_empty()
    }

    /// The action for one detector, `None` when it does not run.
    pub fn action(&self, d: Detector) -> Option<Action> {
        if !self.enabled.contains(d) {
            None
        } else if self.block.contains(d) {
            Some(Action::Block)
        } else if self.modify.contains(d) {
            Some(Action::Redact)
        } else {
            Some(Action::Flag)
        }
    }

    /// A fresh streaming scanner for one message.
    pub fn stream(&self, mode: Mode) -> GuardStream {
        GuardStream::new(*self, mode)
    }

    /// Screens a plain text (e.g. a tool description): findings only, nothing is rewritten.
    pub fn screen_text(&self, text: &str) -> Findings {
        let mut s = CallGuard {
            enabled: self.enabled,
            modify: DetectorSet::EMPTY,
            block: DetectorSet::EMPTY,
        }
        .stream(Mode::Text);
        s.scan_only(text.as_bytes());
        let mut f = s.into_findings();
        let blocked = f.iter().any(|(d, _)| self.block.contains(d));
        f.blocked = blocked;
        f
    }

    /// Applies the guard to a whole JSON body at once (tool arguments, a non-streamed result):
    /// appends the possibly rewritten body to `out`.
    pub fn apply(&self, body: &[u8], out: &mut Vec<u8>) -> Findings {
        let mut s = self.stream(Mode::Json);
        s.feed(body, out);
        s.finish(out);
        s.into_findings()
    }
}

/// What one message's scan found: counts per detector, and whether a blocking one fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Findings {
    counts: [u32; Detector::COUNT],
    blocked: bool,
}

impl Default for Findings {
    fn default() -> Self {
        Findings {
            counts: [0; Detector::COUNT],
            blocked: false,
        }
    }
}

impl Findings {
    pub fn count(&self, d: Detector) -> u32 {
        self.counts.get(d as usize).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u32 {
        self.counts.iter().fold(0u32, |a, c| a.saturating_add(*c))
    }

    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|c| *c == 0)
    }

    /// A detector whose action is `block` fired: the glue must refuse the message.
    pub fn blocked(&self) -> bool {
        self.blocked
    }

    /// Detectors that fired, with their counts, in a fixed order (for metrics and logs).
    pub fn iter(&self) -> impl Iterator<Item = (Detector, u32)> + '_ {
        Detector::ALL
            .into_iter()
            .zip(self.counts.iter().copied())
            .filter(|(_, c)| *c > 0)
    }

    /// Adds another scan's findings (e.g. each tool description of one list).
    pub fn merge(&mut self, other: &Findings) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
        self.blocked |= other.blocked;
    }

    fn add(&mut self, d: Detector) {
        if let Some(c) = self.counts.get_mut(d as usize) {
            *c = c.saturating_add(1);
        }
    }
}

/// Sorts a short slice in place (a few elements per word or chunk). The standard sorts are
/// generic and each use adds kilobytes of wasm; this one is a few instructions.
pub(crate) fn sort_small<T, K: Ord>(v: &mut [T], key: impl Fn(&T) -> K) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 {
            let (Some(a), Some(b)) = (v.get(j - 1), v.get(j)) else {
                break;
            };
            if key(a) <= key(b) {
                break;
            }
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

impl std::fmt::Display for Findings {
    /// `email=2 override=1`, or `none`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (d, c) in self.iter() {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{}={c}", d.id())?;
        }
        if first {
            f.write_str("none")?;
        }
        if self.blocked {
            f.write_str(" (blocked)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detector_ids_are_unique_and_round_trip() {
        for (i, d) in Detector::ALL.into_iter().enumerate() {
            assert_eq!(d as usize, i, "ALL is in declaration order");
            assert_eq!(Detector::from_id(d.id()), Some(d));
            assert!(!d.replacement().contains('"') && !d.replacement().contains('\\'));
        }
    }

    #[test]
    fn the_category_sets_partition_all_detectors() {
        for d in Detector::ALL {
            let sets = [
                (DetectorSet::PII, Category::Pii),
                (DetectorSet::SECRETS, Category::Secret),
                (DetectorSet::INJECTION, Category::Injection),
            ];
            let hits: Vec<_> = sets.iter().filter(|(s, _)| s.contains(d)).collect();
            assert_eq!(hits.len(), 1, "{d:?}");
            assert_eq!(hits[0].1, d.category(), "{d:?}");
        }
        assert_eq!(
            DetectorSet::PII
                .union(DetectorSet::SECRETS)
                .union(DetectorSet::INJECTION),
            DetectorSet::ALL
        );
    }

    #[test]
    fn a_later_action_replaces_an_earlier_one_for_the_same_detectors() {
        let g = CallGuard::new(DetectorSet::PII, Action::Block)
            .with(DetectorSet::of(Detector::Email), Action::Flag);
        assert_eq!(g.action(Detector::Email), Some(Action::Flag));
        assert_eq!(g.action(Detector::Card), Some(Action::Block));
        assert_eq!(g.action(Detector::Jwt), None);
        assert!(g.modifies() && g.can_block());
    }
}
