//! The single pass: JSON-string decoding, words, and the detectors' dispatch.
//!
//! Bytes go through three layers, each a state machine that never looks at chunk boundaries, so
//! the findings and their raw offsets are the same however the input is split:
//! 1. **Decoding.** Outside JSON strings nothing is scanned. Inside, escapes are decoded
//!    (surrogate pairs combined) and UTF-8 is assembled; each character carries its raw byte span.
//!    A raw newline cannot be inside a JSON string, so it ends one: SSE framing (`data: …\n\n`)
//!    needs no parser of its own.
//! 2. **Words.** Characters are separators, word characters, or hidden characters (zero-width,
//!    bidi, tags), which are transparent: they extend the word they sit in without adding to its
//!    text, so `ali\u200bce@example.com` is still an address and is reported as invisible text
//!    too. A single space joins number groups (`4111 1111 1111 1111`) and IBAN groups. A word
//!    longer than 256 bytes is cut into pieces that overlap by 64 bytes; a secret that runs past
//!    a cut is decided on its prefix and swallows the rest of its body.
//! 3. **Detectors.** A finished word (or piece) goes to the detectors its byte-class flags make
//!    possible; phrases, `Bearer <token>` and PEM headers look across words.
//!
//! Findings are counted here; spans to rewrite are queued as [`Hit`]s for [`super::GuardStream`].

use super::inject::{self, Phrases};
use super::pii::{
    self, letter_bytes, Body, Cand, Piece, C_AT, C_COLON, C_DIGIT, C_DOT, C_LOWER, C_NONASCII,
    C_NUMP, C_PUNCT, C_SLASH, C_SPACE, C_UPPER, C_WORD, HIGH,
};
use super::{CallGuard, Detector, DetectorSet, Findings, Mode};

/// Longest word piece, in decoded bytes.
pub(super) const MAX_WORD: usize = 256;
/// How much of a cut piece the next piece starts with, so a match near the cut is seen whole.
pub(super) const OVERLAP: usize = 64;
/// Longest raw span of a word piece (escapes and hidden characters take raw bytes without adding
/// text); a piece cut for this reason keeps no overlap.
pub(super) const MAX_WORD_RAW: u64 = 512;
/// Longest raw span of an unfinished PEM header.
const MAX_PEM_HEADER_RAW: u64 = 256;
/// Longest run of number groups joined by spaces.
const MAX_JOIN: usize = 48;

/// A span the stream must rewrite (raw offsets from the start of the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hit {
    pub start: u64,
    pub end: u64,
    pub det: Detector,
    /// Continues the previous hit of the same detector (a swallowed secret or key block).
    pub cont: bool,
}

const fn class_of(b: u8) -> u16 {
    match b {
        b'0'..=b'9' => C_WORD | C_DIGIT,
        b'A'..=b'Z' => C_WORD | C_UPPER,
        b'a'..=b'z' => C_WORD | C_LOWER,
        b'@' => C_WORD | C_AT,
        b'.' => C_WORD | C_DOT | C_NUMP,
        b'-' | b'(' | b')' | b'+' => C_WORD | C_NUMP,
        b':' => C_WORD | C_COLON,
        b'/' => C_WORD | C_SLASH,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'*' | b'=' | b'?' | b'^' | b'_' | b'{' | b'}'
        | b'~' => C_WORD | C_PUNCT,
        b' ' => C_SPACE | C_SEP,
        // Separators the fast path handles inline; `"`, `\\`, `<`, `[`, `]` and raw line breaks
        // need the full path (string ends, escapes, tag and link context).
        b'\t' | b'\'' | b',' | b';' | b'>' | b'`' | b'|' | 0x0B | 0x0C => C_SEP,
        0x80..=0xFF => C_NONASCII,
        _ => 0,
    }
}

/// A separator the fast path handles without the per-character machinery.
const C_SEP: u16 = 1 << 15;

// Evaluated at compile time: an out-of-range index would fail the build, not panic at run time.
#[allow(clippy::indexing_slicing)]
static CLASS: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = class_of(b as u8);
        b += 1;
    }
    t
};

pub(super) fn class(b: u8) -> u16 {
    CLASS.get(usize::from(b)).copied().unwrap_or(0)
}

pub(super) fn is_word_byte(b: u8) -> bool {
    class(b) & C_WORD != 0
}

/// Typographic quotes separate words like their ASCII forms (`don’t` is `don` `t`).
fn is_curly_quote(cp: u32) -> bool {
    matches!(cp, 0x2018..=0x201F)
}

/// Unicode whitespace besides ASCII: separates words like a space.
fn is_unicode_space(cp: u32) -> bool {
    matches!(
        cp,
        0x85 | 0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dec {
    None,
    Utf8 {
        need: u8,
        cp: u32,
    },
    Esc,
    Hex {
        n: u8,
        v: u32,
    },
    /// After a high-surrogate escape: expecting `\uDC00`–`\uDFFF`. `second` is where the second
    /// escape starts.
    Surr {
        hi: u32,
        stage: u8,
        v: u32,
        second: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct HiddenRun {
    det: Detector,
    start: u64,
    end: u64,
    len: u16,
    after_flag: bool,
    flag_ok: bool,
    cancelled: bool,
}

#[derive(Debug, Default)]
struct Word {
    buf: Vec<u8>,
    /// Raw offset of each byte of `buf`, kept only once the word stops being a plain copy of the
    /// raw bytes (an escape or a hidden character in it).
    map: Vec<u64>,
    mapped: bool,
    active: bool,
    start: u64,
    raw_end: u64,
    flags: u16,
    before: u32,
    /// Matches ending before this index were reported by the previous piece.
    accept_from: usize,
    /// This piece continues a word that was cut.
    continued: bool,
    /// The word directly follows `](`: `Some(is_image)`.
    md: Option<bool>,
    /// Raw start of a `<` directly before the word.
    lt: Option<u64>,
    run: Option<HiddenRun>,
}

impl Word {
    fn raw_at(&self, i: usize) -> u64 {
        if i >= self.buf.len() {
            self.raw_end
        } else if self.mapped {
            self.map.get(i).copied().unwrap_or(self.raw_end)
        } else {
            self.start + i as u64
        }
    }

    fn unmap(&mut self) {
        if !self.mapped {
            self.mapped = true;
            self.map.clear();
            let start = self.start;
            self.map
                .extend((0..self.buf.len() as u64).map(|i| start + i));
        }
    }
}

/// A finished word or piece, wherever its bytes are (the input chunk, or the word buffer).
struct View<'a> {
    text: &'a [u8],
    /// Raw offset of each byte, when they are not consecutive from `start`.
    map: Option<&'a [u64]>,
    start: u64,
    raw_end: u64,
    flags: u16,
    before: u32,
    lt: Option<u64>,
    md: Option<bool>,
    continued: bool,
    accept_from: usize,
}

impl View<'_> {
    fn raw_at(&self, i: usize) -> u64 {
        if i >= self.text.len() {
            self.raw_end
        } else if let Some(map) = self.map {
            map.get(i).copied().unwrap_or(self.raw_end)
        } else {
            self.start + i as u64
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Swallow {
    /// The rest of a secret's body after a cut.
    Token {
        det: Detector,
        body: Body,
        reported: u64,
        end: u64,
    },
    /// A PEM private key block, up to its `-----END … -----` line or the end of the string.
    Region {
        det: Detector,
        reported: u64,
        end: u64,
        seen_end: bool,
    },
}

/// What a pending join space would continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Join {
    Number,
    Iban,
}

#[derive(Debug, Clone, Copy)]
struct Pem {
    start: u64,
    words: u8,
    private: bool,
}

/// Counts findings and queues hits.
#[derive(Debug)]
pub(super) struct Sink {
    pub guard: CallGuard,
    pub hits: Vec<Hit>,
    pub findings: Findings,
}

impl Sink {
    fn report(&mut self, det: Detector, start: u64, end: u64) {
        if !self.guard.enabled.contains(det) {
            return;
        }
        self.findings.add(det);
        if self.guard.block.contains(det) {
            self.findings.blocked = true;
        }
        if self.guard.modify.contains(det) && end > start {
            self.hits.push(Hit {
                start,
                end,
                det,
                cont: false,
            });
        }
    }

    fn cont(&mut self, det: Detector, start: u64, end: u64) {
        if self.guard.modify.contains(det) && end > start {
            self.hits.push(Hit {
                start,
                end,
                det,
                cont: true,
            });
        }
    }
}

/// Which word-level checks some enabled detector needs.
#[derive(Debug, Clone, Copy, Default)]
struct Want {
    email: bool,
    numbers: bool,
    /// Prefixed secrets, JWTs, IBANs (long words).
    long: bool,
    urls: bool,
    hosts: bool,
    pem: bool,
    bearer: bool,
}

#[derive(Debug)]
pub(super) struct Scanner {
    json: bool,
    /// Raw offset of the next byte.
    pub pos: u64,
    in_string: bool,
    dec: Dec,
    dec_start: u64,
    /// The previous decoded character of the current string (0 at its start).
    prev: u32,
    /// The previous character was a backslash decoded from `\\`.
    after_bs: bool,
    w: Word,
    /// A space that may join two number or IBAN groups: its raw span.
    join: Option<(u64, u64, Join)>,
    /// Raw start of a `<` that the next word may start right after.
    lt: Option<u64>,
    /// The last `[` followed `!`.
    bracket_image: bool,
    /// Raw end of a `]` that the next word may start right after.
    close_bracket: Option<u64>,
    /// The previous word was `Bearer`.
    bearer: bool,
    pem: Option<Pem>,
    swallow: Option<Swallow>,
    phrases: Phrases,
    cands: Vec<Cand>,
    pub sink: Sink,
    /// Detectors per family, precomputed from the guard.
    any_word_detector: bool,
    /// What the lean loop's word test must look for.
    want: Want,
    hold_words: bool,
    hold_phrases: bool,
    hold_tags: bool,
    hold_pem: bool,
}

fn set(ds: &[Detector]) -> DetectorSet {
    ds.iter().fold(DetectorSet::EMPTY, |s, d| s.with(*d))
}

impl Scanner {
    pub fn new(guard: CallGuard, mode: Mode) -> Scanner {
        let phrase_set = set(&[
            Detector::Override,
            Detector::Role,
            Detector::NewInstructions,
            Detector::PromptLeak,
            Detector::Conceal,
        ]);
        let json = mode == Mode::Json;
        Scanner {
            json,
            pos: 0,
            in_string: !json,
            dec: Dec::None,
            dec_start: 0,
            prev: 0,
            after_bs: false,
            w: Word::default(),
            join: None,
            lt: None,
            bracket_image: false,
            close_bracket: None,
            bearer: false,
            pem: None,
            swallow: None,
            phrases: Phrases::new(guard.enabled),
            cands: Vec::new(),
            any_word_detector: !guard.enabled.minus(phrase_set).is_empty(),
            want: {
                let en = guard.enabled;
                Want {
                    email: en.contains(Detector::Email),
                    numbers: en.contains(Detector::Card)
                        || en.contains(Detector::Phone)
                        || en.contains(Detector::Ssn),
                    long: en.intersects(DetectorSet::SECRETS) || en.contains(Detector::Iban),
                    urls: en.contains(Detector::ExfilHost) || en.contains(Detector::ExfilUrl),
                    hosts: en.contains(Detector::ExfilHost),
                    pem: en.contains(Detector::PrivateKey),
                    bearer: en.contains(Detector::BearerToken),
                }
            },
            hold_words: !guard.modify.minus(phrase_set).is_empty(),
            hold_phrases: guard.modify.intersects(phrase_set),
            hold_tags: guard.modify.contains(Detector::TagDirective),
            hold_pem: guard.modify.contains(Detector::PrivateKey),
            sink: Sink {
                guard,
                hits: Vec::new(),
                findings: Findings::default(),
            },
        }
    }

    /// Raw offset before which no future hit can start: everything before it may be released.
    pub fn hold_from(&self) -> u64 {
        if self.sink.guard.modify.is_empty() {
            return self.pos;
        }
        let mut h = self.pos;
        if self.dec != Dec::None {
            h = h.min(self.dec_start);
        }
        if self.w.active && self.hold_words && self.swallow.is_none() {
            h = h.min(self.w.start);
        }
        if self.hold_tags {
            if let Some(lt) = self.lt.or(if self.w.active { self.w.lt } else { None }) {
                h = h.min(lt);
            }
        }
        if self.hold_phrases {
            if let Some(s) = self.phrases.min_start() {
                h = h.min(s);
            }
            if self.w.active && self.swallow.is_none() {
                h = h.min(self.w.start);
            }
        }
        if self.hold_pem {
            if let Some(p) = self.pem {
                h = h.min(p.start);
            }
        }
        h
    }

    fn fast(&self) -> bool {
        self.in_string
            && self.dec == Dec::None
            && self.swallow.is_none()
            && self.join.is_none()
            && !self.after_bs
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        let base = self.pos;
        let mut i = 0;
        while i < chunk.len() {
            if self.calm() {
                i = self.lean(chunk, i, base);
            }
            let Some(&b) = chunk.get(i) else {
                break;
            };
            if !self.fast() {
                self.byte(b, base + i as u64);
                i += 1;
                continue;
            }
            let mut c = class(b);
            let mut first = 1;
            if c & C_NONASCII != 0 {
                if let Some(len) = plain_letter(chunk.get(i..).unwrap_or_default()) {
                    c = C_WORD | C_NONASCII;
                    first = len;
                }
            }
            if c & C_WORD != 0 {
                // A run of word bytes: ASCII, or whole UTF-8 characters that are neither
                // whitespace nor hidden.
                let s = i;
                let mut fl = c;
                i += first;
                while let Some(&b) = chunk.get(i) {
                    let c = class(b);
                    if c & C_WORD != 0 {
                        fl |= c;
                        i += 1;
                    } else if b < 0x80 {
                        break;
                    } else if let Some(len) = plain_letter(chunk.get(i..).unwrap_or_default()) {
                        fl |= C_NONASCII;
                        i += len;
                    } else {
                        break;
                    }
                }
                let word = chunk.get(s..i).unwrap_or_default();
                if let Some(step) = self.direct_word(
                    word,
                    base + s as u64,
                    fl,
                    chunk.get(i..).unwrap_or_default(),
                ) {
                    i += step;
                    continue;
                }
                let used = self.push_ascii(word, base + s as u64, fl);
                i = s + used;
                continue;
            }
            let raw = base + i as u64;
            if c & C_SEP != 0 {
                self.separator(u32::from(b), raw, raw + 1);
                i += 1;
                continue;
            }
            // Two-byte escapes that decode to a separator, when both bytes are here.
            if b == b'\\' && self.json {
                let sep = match chunk.get(i + 1) {
                    Some(b'n') => Some(0x0A),
                    Some(b't') => Some(0x09),
                    Some(b'r') => Some(0x0D),
                    Some(b'"') => Some(0x22),
                    Some(b'b') => Some(0x08),
                    Some(b'f') => Some(0x0C),
                    _ => None,
                };
                if let Some(cp) = sep {
                    self.separator(cp, raw, raw + 2);
                    i += 2;
                    continue;
                }
            }
            self.byte(b, raw);
            i += 1;
        }
        self.pos = base + chunk.len() as u64;
        self.flush_swallow();
    }

    /// Nothing is under way: no word, escape or character half read, no phrase, no context from
    /// the previous word. The lean loop may run.
    #[inline]
    fn calm(&self) -> bool {
        self.in_string
            && self.dec == Dec::None
            && !self.w.active
            && self.w.run.is_none()
            && self.swallow.is_none()
            && self.join.is_none()
            && !self.after_bs
            && self.lt.is_none()
            && self.close_bracket.is_none()
            && !self.bearer
            && self.pem.is_none()
    }

    /// The common case, kept tight: ASCII words of ordinary text, each followed by simple
    /// separators or separator escapes, that [`Scanner::ordinary`] says cannot match anything.
    /// Returns where the general path has to take over: the start of a word that needs a closer
    /// look, or a byte the lean loop does not handle. Leaves the scanner calm.
    fn lean(&mut self, chunk: &[u8], i: usize, base: u64) -> usize {
        let json = self.json;
        let mut rest = chunk.get(i..).unwrap_or_default();
        let handed = |rest: &[u8]| chunk.len() - rest.len();
        loop {
            let (wl, fl, end_class) = word_run(rest);
            let (word, after) = rest.split_at(wl);
            // What ends the word: a simple separator or a separator escape, else hand over.
            let step = match after {
                [_, ..] if end_class & C_SEP != 0 => 1,
                [b'\\', b'n' | b't' | b'r' | b'"', ..] if json => 2,
                _ => return handed(rest),
            };
            if !word.is_empty() {
                // The common case inline: a short word of plain letters that no phrase starts
                // with; else the full test. A number followed by a space may continue as a
                // group (`4111 1111`): the general path decides.
                let plain = fl & !(C_WORD | C_LOWER | C_UPPER) == 0 && wl < 15;
                let quiet = if plain {
                    if self.want.bearer && wl == 6 && word.eq_ignore_ascii_case(b"bearer") {
                        return handed(rest);
                    }
                    // Phrases step right here: a phrase under way takes (or drops) every word, a
                    // new one starts only on a word that passes the cheap filter.
                    if self.phrases.is_on()
                        && (self.phrases.active() || self.phrases.may_start(word))
                    {
                        let start = base + handed(rest) as u64;
                        self.phrase_word(word, start, start + wl as u64);
                    }
                    true
                } else if self.phrases.active() {
                    false
                } else {
                    let joins = fl & C_DIGIT != 0
                        && after.first() == Some(&b' ')
                        && after.get(1).is_none_or(|b| {
                            b.is_ascii_digit() || b.is_ascii_uppercase() || *b == b'('
                        });
                    !joins && self.ordinary(word, fl)
                };
                if !quiet {
                    return handed(rest);
                }
            }
            // The separator run.
            let mut seps = after.get(step..).unwrap_or_default();
            // Mostly one space and the next word.
            while seps.first().is_none_or(|b| class(*b) & C_WORD == 0) {
                let k = seps
                    .iter()
                    .position(|b| class(*b) & C_SEP == 0)
                    .unwrap_or(seps.len());
                seps = seps.get(k..).unwrap_or_default();
                match seps {
                    [b'\\', b'n' | b't' | b'r' | b'"', tail @ ..] if json => seps = tail,
                    _ => break,
                }
            }
            rest = seps;
            if self.phrases.active() {
                self.phrases.expire(base + handed(rest) as u64);
            }
            // The previous character is a separator; which one only matters for `[` (image
            // links) and `<`, which are not simple separators.
            self.prev = u32::from(b' ');
            if rest.is_empty() {
                return handed(rest);
            }
        }
    }

    /// Feeds a word of plain letters to the phrase matcher.
    fn phrase_word(&mut self, word: &[u8], start: u64, end: u64) {
        let mut buf = [0u8; 14];
        let lower = (word.len() <= buf.len()).then(|| {
            for (d, c) in buf.iter_mut().zip(word) {
                *d = c.to_ascii_lowercase();
            }
            buf.get(..word.len()).unwrap_or_default()
        });
        let sink = &mut self.sink;
        self.phrases
            .word(lower, 0, start, end, |d, s, e| sink.report(d, s, e));
    }

    /// Whether a word, in a calm state, can be passed over: judged from its byte classes,
    /// length, a look for secret prefixes, and at most a vocabulary lookup, nothing could start
    /// or match in it. Always inlined: about a third of all words (most words of code) come here.
    #[inline(always)]
    fn ordinary(&self, word: &[u8], fl: u16) -> bool {
        let len = word.len();
        let want = self.want;
        if (want.email && fl & C_AT != 0 && fl & C_DOT != 0)
            || (want.numbers && fl & C_DIGIT != 0 && len >= 8)
            || (want.pem && pii::starts_with(word, b"-----"))
        {
            return false;
        }
        if fl & (C_LOWER | C_UPPER) == 0 {
            return true;
        }
        if want.long && len >= 15 && pii::may_hold_secret(word) {
            return false;
        }
        if fl & !(C_WORD | C_LOWER | C_UPPER) != 0 {
            // Letters with digits or punctuation: URLs, hosts, or a phrase word with punctuation
            // around it (`(Ignore`, `instructions:`).
            if (want.urls && fl & C_COLON != 0 && fl & C_SLASH != 0)
                || (want.hosts && fl & C_DOT != 0 && inject::may_be_catcher_host(word))
            {
                return false;
            }
            if !self.phrases.is_on() {
                return true;
            }
            return match self.phrase_core(word) {
                Some(core) => !self.phrases.starts_with(core),
                None => true,
            };
        }
        // Plain letters: not `Bearer`, and not a word a phrase starts with.
        let bearer = want.bearer && len == 6 && word.eq_ignore_ascii_case(b"bearer");
        !bearer && !self.phrases.starts_with(word)
    }

    /// The letters of a word with punctuation only around them (`(Ignore`, `instructions:`),
    /// when the cheap filter says a phrase may start with them; `None` when letters and other
    /// characters mix (`self.has_data`, `u8`) or no phrase can start there. The first run of
    /// letters is tested before the rest of the word is looked at, so most words of code are
    /// ruled out after a few bytes.
    #[inline]
    fn phrase_core<'w>(&self, word: &'w [u8]) -> Option<&'w [u8]> {
        let mut i = 0;
        while word.get(i).is_some_and(|b| !b.is_ascii_alphabetic()) {
            i += 1;
        }
        let s = i;
        while word.get(i).is_some_and(u8::is_ascii_alphabetic) {
            i += 1;
        }
        let core = word.get(s..i).unwrap_or_default();
        if core.is_empty() || !self.phrases.may_start(core) {
            return None;
        }
        let tail = word.get(i..).unwrap_or_default();
        tail.iter()
            .all(|b| !b.is_ascii_alphanumeric() && *b < 0x80)
            .then_some(core)
    }

    /// A word that starts and ends in this chunk, followed by `rest`: when what follows surely
    /// ends it (a simple separator, a separator escape, the end of the string), it is judged
    /// right here from the chunk, without copying. Returns how many bytes of `rest` were used.
    #[inline]
    fn direct_word(&mut self, word: &[u8], raw: u64, flags: u16, rest: &[u8]) -> Option<usize> {
        if self.w.active || self.w.run.is_some() || word.len() >= MAX_WORD {
            return None;
        }
        let judged = self.any_word_detector || self.phrases.is_on();
        let end = raw + word.len() as u64;
        let (after, after_len, string_end) = match rest {
            [b, ..] if class(*b) & C_SEP != 0 => {
                if *b == b' ' && flags & C_DIGIT != 0 && join_candidate(word).is_some() {
                    return None;
                }
                (u32::from(*b), 1, false)
            }
            [b'\\', e, ..] if self.json => match e {
                b'n' => (0x0A, 2, false),
                b't' => (0x09, 2, false),
                b'r' => (0x0D, 2, false),
                b'"' => (0x22, 2, false),
                _ => return None,
            },
            [b'"', ..] if self.json => (0, 0, true),
            _ => return None,
        };
        let context = self.lt.is_some()
            || self.close_bracket == Some(raw)
            || self.bearer
            || self.pem.is_some()
            || self.phrases.active();
        if judged && (context || !self.ordinary(word, flags)) {
            let v = View {
                text: word,
                map: None,
                start: raw,
                raw_end: end,
                flags,
                before: self.prev,
                lt: self.lt.take(),
                md: (self.close_bracket == Some(raw)).then_some(self.bracket_image),
                continued: false,
                accept_from: 0,
            };
            self.close_bracket = None;
            self.judge(&v, true, after, end + after_len);
        }
        if !word.is_empty() {
            self.prev = last_char(word);
        }
        if string_end {
            self.end_string(end);
            return Some(1);
        }
        self.separator(after, end, end + after_len);
        Some(after_len as usize)
    }

    /// End of input: an unfinished character or escape becomes U+FFFD, the last word is judged.
    pub fn finish(&mut self) {
        if self.dec != Dec::None {
            self.dec = Dec::None;
            self.char(0xFFFD, self.dec_start, self.pos);
        }
        self.end_string(self.pos);
        if !self.json {
            self.in_string = true;
        }
    }

    // -----------------------------------------------------------------------------------------
    // Decoding

    fn byte(&mut self, b: u8, raw: u64) {
        match self.dec {
            Dec::None => self.plain(b, raw),
            Dec::Utf8 { need, cp } => {
                if b & 0xC0 == 0x80 {
                    let cp = cp << 6 | u32::from(b & 0x3F);
                    if need <= 1 {
                        self.dec = Dec::None;
                        let cp = if char::from_u32(cp).is_some() {
                            cp
                        } else {
                            0xFFFD
                        };
                        self.char(cp, self.dec_start, raw + 1);
                    } else {
                        self.dec = Dec::Utf8 { need: need - 1, cp };
                    }
                } else {
                    self.dec = Dec::None;
                    self.char(0xFFFD, self.dec_start, raw);
                    self.plain(b, raw);
                }
            }
            Dec::Esc => {
                self.dec = Dec::None;
                let start = self.dec_start;
                match b {
                    b'n' => self.char(0x0A, start, raw + 1),
                    b't' => self.char(0x09, start, raw + 1),
                    b'r' => self.char(0x0D, start, raw + 1),
                    b'b' => self.char(0x08, start, raw + 1),
                    b'f' => self.char(0x0C, start, raw + 1),
                    b'"' | b'/' => self.char(u32::from(b), start, raw + 1),
                    b'\\' => {
                        self.char(u32::from(b'\\'), start, raw + 1);
                        self.after_bs = true;
                    }
                    b'u' => self.dec = Dec::Hex { n: 0, v: 0 },
                    _ => self.char(0xFFFD, start, raw + 1),
                }
            }
            Dec::Hex { n, v } => match hex(b) {
                Some(h) => {
                    let v = v << 4 | h;
                    if n < 3 {
                        self.dec = Dec::Hex { n: n + 1, v };
                    } else {
                        self.dec = Dec::None;
                        self.unit(v, self.dec_start, raw + 1);
                    }
                }
                None => {
                    self.dec = Dec::None;
                    self.char(0xFFFD, self.dec_start, raw);
                    self.plain(b, raw);
                }
            },
            Dec::Surr {
                hi,
                stage,
                v,
                second,
            } => {
                let start = self.dec_start;
                match (stage, b) {
                    (0, b'\\') => {
                        self.dec = Dec::Surr {
                            hi,
                            stage: 1,
                            v,
                            second,
                        }
                    }
                    (1, b'u') => {
                        self.dec = Dec::Surr {
                            hi,
                            stage: 2,
                            v,
                            second,
                        }
                    }
                    (0, _) => {
                        self.dec = Dec::None;
                        self.char(0xFFFD, start, second);
                        self.plain(b, raw);
                    }
                    (1, _) => {
                        // `\` then something else: a lone high surrogate, then another escape.
                        self.dec = Dec::None;
                        self.char(0xFFFD, start, second);
                        self.dec = Dec::Esc;
                        self.dec_start = second;
                        self.byte(b, raw);
                    }
                    (_, _) => match hex(b) {
                        Some(h) => {
                            let v = v << 4 | h;
                            if stage < 5 {
                                self.dec = Dec::Surr {
                                    hi,
                                    stage: stage + 1,
                                    v,
                                    second,
                                };
                            } else {
                                self.dec = Dec::None;
                                if (0xDC00..=0xDFFF).contains(&v) {
                                    let cp = 0x10000 + ((hi - 0xD800) << 10) + (v - 0xDC00);
                                    self.char(cp, start, raw + 1);
                                } else {
                                    self.char(0xFFFD, start, second);
                                    self.dec_start = second;
                                    self.unit(v, second, raw + 1);
                                }
                            }
                        }
                        None => {
                            self.dec = Dec::None;
                            self.char(0xFFFD, start, second);
                            self.char(0xFFFD, second, raw);
                            self.plain(b, raw);
                        }
                    },
                }
            }
        }
    }

    /// One decoded `\uXXXX` code unit.
    fn unit(&mut self, v: u32, start: u64, end: u64) {
        if (0xD800..=0xDBFF).contains(&v) {
            self.dec_start = start;
            self.dec = Dec::Surr {
                hi: v,
                stage: 0,
                v: 0,
                second: end,
            };
        } else if (0xDC00..=0xDFFF).contains(&v) {
            self.char(0xFFFD, start, end);
        } else {
            self.char(v, start, end);
        }
    }

    /// A byte outside any escape or multi-byte character.
    fn plain(&mut self, b: u8, raw: u64) {
        if !self.in_string {
            if b == b'"' {
                self.begin_string();
            }
            return;
        }
        if self.json {
            match b {
                b'"' => return self.end_string(raw),
                b'\\' => {
                    self.dec = Dec::Esc;
                    self.dec_start = raw;
                    return;
                }
                // Never inside a JSON string: the string ended (SSE framing, or broken JSON).
                b'\n' | b'\r' => return self.end_string(raw),
                _ => {}
            }
        }
        match b {
            0x00..=0x7F => self.char(u32::from(b), raw, raw + 1),
            0xC2..=0xDF => self.start_utf8(1, b & 0x1F, raw),
            0xE0..=0xEF => self.start_utf8(2, b & 0x0F, raw),
            0xF0..=0xF4 => self.start_utf8(3, b & 0x07, raw),
            _ => self.char(0xFFFD, raw, raw + 1),
        }
    }

    fn start_utf8(&mut self, need: u8, bits: u8, raw: u64) {
        self.dec = Dec::Utf8 {
            need,
            cp: u32::from(bits),
        };
        self.dec_start = raw;
    }

    fn begin_string(&mut self) {
        self.in_string = true;
        self.prev = 0;
        self.after_bs = false;
        self.reset_context();
    }

    fn end_string(&mut self, raw: u64) {
        if let Some((_, je, _)) = self.join.take() {
            self.end_word(u32::from(b' '), je);
        }
        self.end_word(0, raw);
        self.end_swallow();
        self.reset_context();
        self.in_string = !self.json;
        self.prev = 0;
        self.after_bs = false;
    }

    fn reset_context(&mut self) {
        self.phrases.reset();
        self.bearer = false;
        self.pem = None;
        self.lt = None;
        self.close_bracket = None;
        self.bracket_image = false;
    }

    // -----------------------------------------------------------------------------------------
    // Characters and words

    /// One decoded character with its raw span.
    fn char(&mut self, cp: u32, start: u64, end: u64) {
        if let Some(Swallow::Token { body, end: e, .. }) = &mut self.swallow {
            if body.accepts(cp) {
                *e = end;
                self.prev = cp;
                return;
            }
            self.end_swallow();
        }
        if let Some(Swallow::Region { end: e, .. }) = &mut self.swallow {
            *e = end;
        }
        let after_bs = std::mem::take(&mut self.after_bs);
        let hidden = if cp >= 0x80 {
            inject::hidden(cp, self.prev)
        } else {
            None
        };
        let is_sep = hidden.is_none()
            && match u8::try_from(cp) {
                Ok(b) if b < 0x80 => {
                    !is_word_byte(b) || (after_bs && matches!(b, b'n' | b't' | b'r'))
                }
                _ => is_unicode_space(cp) || is_curly_quote(cp),
            };
        if let Some((js, je, kind)) = self.join.take() {
            let joins = !is_sep && hidden.is_none() && joins(kind, cp);
            if joins {
                self.w.buf.push(b' ');
                if self.w.mapped {
                    self.w.map.push(js);
                }
                self.w.flags |= C_SPACE;
                self.w.raw_end = je;
            } else {
                self.end_word(u32::from(b' '), je);
                self.lt = None;
                self.close_bracket = None;
                let _ = js;
            }
        }
        if let Some(det) = hidden {
            self.push_hidden(det, cp, start, end);
        } else if is_sep {
            self.sep(cp, start, end);
        } else {
            self.push_char(cp, start, end);
        }
        self.prev = cp;
    }

    fn start_word(&mut self, raw: u64) {
        let w = &mut self.w;
        w.active = true;
        w.buf.clear();
        w.map.clear();
        w.mapped = false;
        w.start = raw;
        w.raw_end = raw;
        w.flags = 0;
        w.before = self.prev;
        w.accept_from = 0;
        w.continued = false;
        w.lt = self.lt.take();
        w.md = (self.close_bracket == Some(raw)).then_some(self.bracket_image);
        w.run = None;
        self.close_bracket = None;
    }

    /// A run of plain ASCII word bytes; returns how many were consumed (fewer when a secret
    /// started swallowing at a cut).
    fn push_ascii(&mut self, bytes: &[u8], raw: u64, fl: u16) -> usize {
        let mut used = 0;
        while used < bytes.len() {
            if self.swallow.is_some() {
                return used;
            }
            let at = raw + used as u64;
            if !self.w.active {
                self.start_word(at);
            }
            if let Some(run) = self.w.run.take() {
                self.close_run(run);
            }
            let room = MAX_WORD.saturating_sub(self.w.buf.len()).max(1);
            let take = room.min(bytes.len() - used);
            let part = bytes.get(used..used + take).unwrap_or_default();
            self.w.buf.extend_from_slice(part);
            if self.w.mapped {
                self.w.map.extend((0..take as u64).map(|k| at + k));
            }
            self.w.flags |= fl;
            self.w.raw_end = at + take as u64;
            used += take;
            if !part.is_empty() {
                self.prev = last_char(part);
            }
            self.after_bs = false;
            self.check_cut();
        }
        used
    }

    fn push_char(&mut self, cp: u32, start: u64, end: u64) {
        if !self.w.active {
            self.start_word(start);
        } else {
            self.lt = None;
        }
        if let Some(run) = self.w.run.take() {
            self.close_run(run);
        }
        let mut utf8 = [0u8; 4];
        let s = char::from_u32(cp)
            .unwrap_or(char::REPLACEMENT_CHARACTER)
            .encode_utf8(&mut utf8);
        let bytes = s.as_bytes();
        if end - start != bytes.len() as u64 || start != self.w.raw_end {
            self.w.unmap();
        }
        self.w.buf.extend_from_slice(bytes);
        if self.w.mapped {
            self.w.map.extend(bytes.iter().map(|_| start));
        }
        self.w.flags |= match u8::try_from(cp) {
            Ok(b) if b < 0x80 => class(b),
            _ => C_NONASCII,
        };
        self.w.raw_end = end;
        self.check_cut();
    }

    fn push_hidden(&mut self, det: Detector, cp: u32, start: u64, end: u64) {
        if !self.w.active {
            self.start_word(start);
        }
        self.w.unmap();
        let flag_char = flag_tag_or_cancel(cp);
        match &mut self.w.run {
            Some(run) if run.det == det && run.end == start => {
                run.end = end;
                run.len = run.len.saturating_add(1);
                run.flag_ok &= flag_char && !run.cancelled;
                run.cancelled |= cp == inject::CANCEL_TAG;
            }
            _ => {
                if let Some(run) = self.w.run.take() {
                    self.close_run(run);
                }
                self.w.run = Some(HiddenRun {
                    det,
                    start,
                    end,
                    len: 1,
                    after_flag: self.prev == inject::BLACK_FLAG,
                    flag_ok: flag_char && cp != inject::CANCEL_TAG,
                    cancelled: cp == inject::CANCEL_TAG,
                });
            }
        }
        self.w.raw_end = end;
        self.check_cut();
    }

    fn close_run(&mut self, run: HiddenRun) {
        let subdivision_flag = run.det == Detector::HiddenTags
            && run.after_flag
            && run.flag_ok
            && run.cancelled
            && (3..=8).contains(&run.len);
        if !subdivision_flag {
            self.sink.report(run.det, run.start, run.end);
        }
    }

    fn sep(&mut self, cp: u32, start: u64, end: u64) {
        let before = self.prev;
        self.separator(cp, start, end);
        if cp == u32::from(b'<') {
            self.lt = Some(start);
        } else if cp == u32::from(b'[') {
            self.bracket_image = before == u32::from(b'!');
        } else if cp == u32::from(b']') {
            self.close_bracket = Some(end);
        }
    }

    /// A separator: ends the word (or holds a space that may join number groups).
    #[inline]
    fn separator(&mut self, cp: u32, start: u64, end: u64) {
        // Unfinished cross-word matches expire by distance, counted in raw bytes so that the
        // result does not depend on chunking.
        self.phrases.expire(end);
        if self.pem.is_some_and(|p| end - p.start > MAX_PEM_HEADER_RAW) {
            self.pem = None;
        }
        if self.w.active {
            if cp == u32::from(b' ') && self.swallow.is_none() {
                if let Some(kind) = join_candidate(&self.w.buf) {
                    self.join = Some((start, end, kind));
                    self.prev = cp;
                    return;
                }
            }
            self.end_word(cp, end);
        }
        self.lt = None;
        self.close_bracket = None;
        self.prev = cp;
    }

    fn check_cut(&mut self) {
        if self.w.buf.len() >= MAX_WORD || self.w.raw_end - self.w.start >= MAX_WORD_RAW {
            self.cut();
        }
    }

    /// The word reached the piece limit: judge this piece, then keep the overlap (or swallow).
    fn cut(&mut self) {
        if let Some(run) = self.w.run.take() {
            self.close_run(run);
        }
        if matches!(self.swallow, Some(Swallow::Region { .. })) {
            self.w.buf.clear();
            self.w.map.clear();
            self.w.mapped = false;
            self.w.start = self.w.raw_end;
            return;
        }
        self.with_view(|scan, v| scan.judge(v, false, 0, 0));
        if self.swallow.is_some() {
            self.w.active = false;
            return;
        }
        let w = &mut self.w;
        let len = w.buf.len();
        let raw_cap = w.raw_end - w.start >= MAX_WORD_RAW;
        let keep = if raw_cap { 0 } else { OVERLAP.min(len) };
        let drop = len - keep;
        let new_start = w.raw_at(drop);
        if let Some(b) = drop.checked_sub(1).and_then(|k| w.buf.get(k)) {
            w.before = u32::from(*b);
        }
        w.buf.drain(..drop);
        if w.mapped {
            w.map.drain(..drop.min(w.map.len()));
        }
        if w.buf.is_empty() {
            w.mapped = false;
            w.map.clear();
        }
        w.start = new_start;
        w.accept_from = keep;
        w.continued = true;
        w.md = None;
        w.lt = None;
        w.flags = w.buf.iter().fold(0, |f, b| f | class(*b));
    }

    /// The buffered word ended at a separator `after` (0: end of string) whose raw end is
    /// `after_end`.
    fn end_word(&mut self, after: u32, after_end: u64) {
        if !self.w.active {
            return;
        }
        if let Some(run) = self.w.run.take() {
            self.close_run(run);
        }
        let w = &self.w;
        let context = w.lt.is_some()
            || w.md.is_some()
            || w.continued
            || w.mapped
            || self.swallow.is_some()
            || self.bearer
            || self.pem.is_some()
            || self.phrases.active();
        let skip = !context && self.ordinary(&self.w.buf, self.w.flags);
        if !skip && (self.any_word_detector || self.phrases.is_on() || self.swallow.is_some()) {
            self.with_view(|scan, v| scan.judge(v, true, after, after_end));
        }
        self.w.active = false;
    }

    /// Lends the buffered word to `f` as a [`View`] (the buffers are moved out and back, so `f`
    /// may use `self` freely).
    fn with_view(&mut self, f: impl FnOnce(&mut Scanner, &View<'_>)) {
        let buf = std::mem::take(&mut self.w.buf);
        let map = std::mem::take(&mut self.w.map);
        let w = &self.w;
        let v = View {
            text: &buf,
            map: if w.mapped { Some(&map) } else { None },
            start: w.start,
            raw_end: w.raw_end,
            flags: w.flags,
            before: w.before,
            lt: w.lt,
            md: w.md,
            continued: w.continued,
            accept_from: w.accept_from,
        };
        f(self, &v);
        self.w.buf = buf;
        self.w.map = map;
    }

    /// Judges a word (or, when not `complete`, a piece of a long one): detectors, then the
    /// context that spans words.
    fn judge(&mut self, v: &View<'_>, complete: bool, after: u32, after_end: u64) {
        if matches!(self.swallow, Some(Swallow::Region { .. })) {
            if complete {
                self.region_word(v);
            }
            return;
        }
        let plain = v.flags & !(C_WORD | C_LOWER | C_UPPER) == 0
            && v.text.len() < 15
            && !self.bearer
            && v.lt.is_none();
        if !plain && self.any_word_detector && !v.text.is_empty() {
            self.detect(v, complete, after, after_end);
        }
        if complete {
            self.after_word(v, plain, after, after_end);
        } else {
            self.phrases.reset();
            self.bearer = false;
            self.pem = None;
        }
    }

    /// Runs the word detectors over a word or piece and reports what they find.
    fn detect(&mut self, v: &View<'_>, complete: bool, after: u32, after_end: u64) {
        let mut cands = std::mem::take(&mut self.cands);
        cands.clear();
        let en = self.sink.guard.enabled;
        let piece = Piece {
            text: v.text,
            before: v.before,
            after,
            complete,
            flags: v.flags,
            bearer: self.bearer && !v.continued,
        };
        pii::scan(&piece, en, &mut cands);
        let pii_end = cands.len();
        let host_on = en.contains(Detector::ExfilHost);
        let url_on = en.contains(Detector::ExfilUrl) && v.md.is_some();
        if host_on || url_on {
            inject::urls(&piece, v.md, host_on, url_on, &mut cands);
        }
        if !cands.is_empty() {
            let len = piece.text.len();
            let (pii_part, inj_part) = cands.split_at_mut(pii_end);
            for group in [pii_part, inj_part] {
                super::sort_small(group, |c| (c.s, std::cmp::Reverse(c.e), c.det));
                let mut last_end = 0;
                for c in group.iter() {
                    if c.e < v.accept_from || c.s < last_end {
                        continue;
                    }
                    let touches = c.e == len && !complete;
                    if touches && c.open.is_none() {
                        continue;
                    }
                    last_end = c.e;
                    let (s, e) = (v.raw_at(c.s), v.raw_at(c.e));
                    self.sink.report(c.det, s, e);
                    if let (true, Some(body)) = (touches, c.open) {
                        if self.swallow.is_none() {
                            self.swallow = Some(Swallow::Token {
                                det: c.det,
                                body,
                                reported: e,
                                end: e,
                            });
                        }
                    }
                }
            }
        }
        if en.contains(Detector::TagDirective) && inject::tag_directive(&piece) {
            // From the `<` to the `>`, both held back for this (see `hold_from`).
            let s = v.lt.unwrap_or(v.start);
            self.sink.report(Detector::TagDirective, s, after_end);
        }
        self.cands = cands;
    }

    /// Context that spans words: phrases, `Bearer`, PEM headers. `plain`: the word is only
    /// letters (and short).
    fn after_word(&mut self, v: &View<'_>, plain: bool, after: u32, after_end: u64) {
        let text = v.text;
        // `Bearer <token>`: the next word is the token.
        self.bearer = text.len() == 6
            && !v.continued
            && text.eq_ignore_ascii_case(b"bearer")
            && (matches!(after, 0x20 | 0x09 | 0x0A | 0x0D) || is_unicode_space(after));
        // PEM private key header: `-----BEGIN [WORDS ]PRIVATE KEY[ BLOCK]-----`.
        if self.pem.is_some() || text.first() == Some(&b'-') {
            self.pem_word(v, after_end);
        }
        if !self.phrases.is_on() {
            return;
        }
        if v.continued {
            self.phrases.reset();
            return;
        }
        let mut buf = [0u8; 14];
        // Most words are ruled out by first letter and length before any comparison.
        if plain && (self.phrases.idle_skips(text) || !inject::may_be_vocabulary(text)) {
            self.phrases.reset();
            return;
        }
        let core = inject::core(text, &mut buf);
        if let Some((lower, _, _)) = core {
            if self.phrases.idle_skips(lower) {
                return;
            }
        }
        let (lower, s, trail) = match core {
            Some((l, s, t)) => (Some(l), s, t),
            None => (None, 0, 0),
        };
        let start = v.raw_at(s);
        let end = v.raw_at(s + lower.map_or(0, <[u8]>::len));
        let sink = &mut self.sink;
        self.phrases
            .word(lower, trail, start, end, |d, s, e| sink.report(d, s, e));
    }

    fn pem_word(&mut self, v: &View<'_>, after_end: u64) {
        let text = v.text;
        if text == b"-----BEGIN" {
            self.pem = Some(Pem {
                start: v.start,
                words: 0,
                private: false,
            });
        } else if let Some(p) = &mut self.pem {
            if p.private && (text == b"KEY-----" || (text == b"BLOCK-----" && p.words > 0)) {
                let start = p.start;
                self.pem = None;
                let end = v.raw_end;
                self.sink.report(Detector::PrivateKey, start, end);
                self.swallow = Some(Swallow::Region {
                    det: Detector::PrivateKey,
                    reported: end,
                    end: after_end.max(end),
                    seen_end: false,
                });
            } else if p.words < 6
                && v.raw_end - p.start <= MAX_PEM_HEADER_RAW
                && text.len() <= 12
                && text
                    .iter()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            {
                p.words += 1;
                p.private |= text == b"PRIVATE";
            } else {
                self.pem = None;
            }
        }
    }

    /// A word inside a PEM block: look for the `-----END … -----` line that closes it.
    fn region_word(&mut self, v: &View<'_>) {
        let text = v.text;
        if let Some(Swallow::Region { seen_end, end, .. }) = &mut self.swallow {
            if text.starts_with(b"-----END") {
                *seen_end = true;
            }
            if *seen_end && text.ends_with(b"-----") {
                *end = v.raw_end;
                self.end_swallow();
            }
        }
    }

    /// Queues what a swallow consumed since the last flush.
    fn flush_swallow(&mut self) {
        match &mut self.swallow {
            Some(Swallow::Token {
                det, reported, end, ..
            })
            | Some(Swallow::Region {
                det, reported, end, ..
            }) if *end > *reported => {
                self.sink.cont(*det, *reported, *end);
                *reported = *end;
            }
            _ => {}
        }
    }

    fn end_swallow(&mut self) {
        self.flush_swallow();
        self.swallow = None;
    }
}

/// The run of word bytes at the start of `bytes`, the OR of their classes (except that letters
/// of either case add [`C_LETTERS`]: nothing in the lean loop tells the cases apart), and the
/// class of the byte that ends it (0 at the end of `bytes`). Runs of letters, most of any
/// text, are taken eight bytes at a time; other word bytes one at a time.
#[inline]
fn word_run(bytes: &[u8]) -> (usize, u16, u16) {
    let mut i = 0;
    let mut fl = 0u16;
    loop {
        if let Some(b8) = bytes.get(i..i + 8) {
            let mut x = [0u8; 8];
            x.copy_from_slice(b8);
            let letters = letter_bytes(u64::from_le_bytes(x));
            // Leading letter bytes: 8 when all are.
            let n = (!letters & HIGH).trailing_zeros() / 8;
            if n > 0 {
                fl |= C_LETTERS;
            }
            i += n as usize;
            if n == 8 {
                continue;
            }
        }
        let Some(&b) = bytes.get(i) else {
            return (i, fl, 0);
        };
        let c = class(b);
        if c & C_WORD == 0 {
            return (i, fl, c);
        }
        // An upper-case letter counts as `C_LOWER`, as in the eight-byte steps.
        fl |= (c & !C_UPPER) | ((c & C_UPPER) << 1);
        i += 1;
    }
}

/// What [`word_run`] adds for letters of either case.
const C_LETTERS: u16 = C_WORD | C_LOWER;

/// Whether a word may continue across a single space: when it ends in number groups
/// (`+1`, `tel:+1 415`, `4111 1111`) or IBAN groups (`DE89`, `IBAN:DE89 3704`).
fn join_candidate(buf: &[u8]) -> Option<Join> {
    let last = *buf.last()?;
    let glued = |k: usize| {
        k.checked_sub(1)
            .and_then(|i| buf.get(i))
            .is_some_and(u8::is_ascii_alphanumeric)
    };
    if last.is_ascii_digit() || last == b')' {
        let k = buf
            .iter()
            .rposition(|b| !pii::is_num(*b))
            .map_or(0, |i| i + 1);
        let suffix = buf.get(k..).unwrap_or_default();
        if suffix.len() < MAX_JOIN && suffix.iter().any(u8::is_ascii_digit) && !glued(k) {
            return Some(Join::Number);
        }
    }
    if last.is_ascii_uppercase() || last.is_ascii_digit() {
        let k = buf
            .iter()
            .rposition(|b| !(b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b' '))
            .map_or(0, |i| i + 1);
        if !glued(k) && buf.get(k..).is_some_and(iban_groups) {
            return Some(Join::Iban);
        }
    }
    None
}

/// Whether `cp` continues a word across a pending join space.
fn joins(kind: Join, cp: u32) -> bool {
    let Ok(b) = u8::try_from(cp) else {
        return false;
    };
    match kind {
        Join::Number => b.is_ascii_digit() || b == b'(',
        Join::Iban => b.is_ascii_uppercase() || b.is_ascii_digit(),
    }
}

/// The last character of a run of well-formed UTF-8 (the fast path only passes whole ones).
fn last_char(bytes: &[u8]) -> u32 {
    let Some(&last) = bytes.last() else {
        return 0;
    };
    if last < 0x80 {
        return u32::from(last);
    }
    let cont = bytes
        .iter()
        .rev()
        .take(4)
        .take_while(|b| **b & 0xC0 == 0x80)
        .count();
    // Only continuation bytes (a piece cut inside a character): no whole character to decode.
    let Some(start) = bytes.len().checked_sub(cont + 1) else {
        return 0xFFFD;
    };
    bytes
        .get(start..)
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.chars().next())
        .map_or(0xFFFD, u32::from)
}

/// The length of the UTF-8 character at the start of `bytes` if it is complete, well formed,
/// and certainly neither whitespace nor a hidden character (those leave the fast path). Only a
/// few lead bytes can start either: everything else is a letter, digit or symbol of some script.
#[inline]
fn plain_letter(bytes: &[u8]) -> Option<usize> {
    let (&b0, rest) = bytes.split_first()?;
    let len = match b0 {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let cont = rest.get(..len - 1)?;
    if !cont.iter().all(|b| b & 0xC0 == 0x80) {
        return None;
    }
    let b1 = cont.first().copied().unwrap_or(0);
    let b2 = cont.get(1).copied().unwrap_or(0);
    let ok = match b0 {
        // U+0085, U+00A0.
        0xC2 => b1 != 0x85 && b1 != 0xA0,
        // U+061C.
        0xD8 => b1 != 0x9C,
        // Overlong forms.
        0xE0 => b1 >= 0xA0,
        // U+115F, U+1160, U+1680, U+180E.
        0xE1 => !matches!((b1, b2), (0x85, 0x9F | 0xA0) | (0x9A, 0x80) | (0xA0, 0x8E)),
        // U+2000-U+200F, U+2018-U+201F (quotes separate words), U+2028-U+202F, U+205F-U+206F.
        0xE2 => match b1 {
            0x80 => matches!(b2, 0x90..=0x97 | 0xA0..=0xA7 | 0xB0..=0xBF),
            0x81 => b2 < 0x9F,
            _ => true,
        },
        // U+3000, U+3164.
        0xE3 => !matches!((b1, b2), (0x80, 0x80) | (0x85, 0xA4)),
        // Surrogates.
        0xED => b1 < 0xA0,
        // U+FEFF, U+FFA0, U+FFF9-U+FFFB (and the rest of those rows, to be simple).
        0xEF => !matches!(b1, 0xBB | 0xBE | 0xBF),
        0xF0 => b1 >= 0x90,
        // Tags and variation selectors supplement (U+E0000-U+E01EF).
        0xF3 => b1 != 0xA0,
        0xF4 => b1 < 0x90,
        _ => true,
    };
    ok.then_some(len)
}

fn hex(b: u8) -> Option<u32> {
    char::from(b).to_digit(16)
}

fn flag_tag_or_cancel(cp: u32) -> bool {
    inject::flag_tag(cp) || cp == inject::CANCEL_TAG
}

/// `DE89`, `DE89 3704`, `DE89 3704 0044`: an IBAN so far, in complete groups of four.
fn iban_groups(buf: &[u8]) -> bool {
    if buf.len() > 40 || buf.len() % 5 != 4 {
        return false;
    }
    let head_ok = buf.first().is_some_and(u8::is_ascii_uppercase)
        && buf.get(1).is_some_and(u8::is_ascii_uppercase)
        && buf.get(2).is_some_and(u8::is_ascii_digit)
        && buf.get(3).is_some_and(u8::is_ascii_digit);
    head_ok
        && buf.iter().enumerate().all(|(i, b)| {
            if i % 5 == 4 {
                *b == b' '
            } else {
                b.is_ascii_uppercase() || b.is_ascii_digit()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::Action;
    use proptest::prelude::*;

    /// The byte-at-a-time definitions the fast paths must agree with.
    fn word_run_naive(bytes: &[u8]) -> (usize, u16, u16) {
        let n = bytes
            .iter()
            .position(|b| class(*b) & C_WORD == 0)
            .unwrap_or(bytes.len());
        let fl = bytes[..n].iter().fold(0, |f, b| {
            let c = class(*b);
            f | if c & (C_UPPER | C_LOWER) != 0 {
                C_LETTERS
            } else {
                c
            }
        });
        (n, fl, bytes.get(n).map_or(0, |b| class(*b)))
    }

    fn letter_core_naive(word: &[u8]) -> Option<&[u8]> {
        let s = word.iter().position(u8::is_ascii_alphabetic)?;
        let e = s + word[s..]
            .iter()
            .position(|b| !b.is_ascii_alphabetic())
            .unwrap_or(word.len() - s);
        word[e..]
            .iter()
            .all(|b| !b.is_ascii_alphanumeric() && *b < 0x80)
            .then_some(&word[s..e])
    }

    fn word_bytes() -> impl Strategy<Value = Vec<u8>> {
        // Letters, digits, word punctuation, separators, escapes and non-ASCII, in runs.
        let pieces = prop_oneof![
            Just(b"word".to_vec()),
            Just(b"Ignore".to_vec()),
            Just(b"self.pos".to_vec()),
            Just(b"(x)".to_vec()),
            Just(b" ".to_vec()),
            Just(b"\\n".to_vec()),
            Just("é".as_bytes().to_vec()),
            proptest::collection::vec(any::<u8>(), 0..12),
            proptest::collection::vec(prop_oneof![b'a'..=b'z', b'A'..=b'Z'], 0..20),
        ];
        proptest::collection::vec(pieces, 0..8).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn word_runs_agree_with_a_byte_at_a_time_scan(bytes in word_bytes()) {
            prop_assert_eq!(word_run(&bytes), word_run_naive(&bytes));
        }

        #[test]
        fn phrase_cores_agree_with_the_letter_core_and_the_start_filter(bytes in word_bytes()) {
            let guard = CallGuard::new(DetectorSet::INJECTION, Action::Flag);
            let scan = Scanner::new(guard, Mode::Json);
            let want = letter_core_naive(&bytes).filter(|c| scan.phrases.may_start(c));
            prop_assert_eq!(scan.phrase_core(&bytes), want);
        }
    }

    #[test]
    fn letter_bytes_marks_exactly_the_ascii_letters() {
        for b in 0..=255u8 {
            let x = u64::from_le_bytes([b'1', b, 0xFF, b'z', b'@', b'[', b'`', b'{']);
            let want = u64::from(b.is_ascii_alphabetic()) << 15 | 1 << 31;
            assert_eq!(letter_bytes(x), want, "byte {b:#x}");
        }
    }
}
