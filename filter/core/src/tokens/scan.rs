//! Streaming pre-tokenizer: cuts text into the pieces that o200k_base's or cl100k_base's split
//! regex would, without a regex engine and without holding the text.
//!
//! BPE tokenizers first split text with a regex (words with one leading space or punctuation
//! character, runs of up to three digits, punctuation runs, whitespace runs) and then encode each
//! piece on its own, so a token count is a sum over pieces. This module reproduces that split as a
//! byte-at-a-time state machine; [`super::model`] prices each piece. Everything the machine needs
//! from earlier bytes lives in [`Scanner`] (a few hundred bytes, no heap), so feeding a text in any
//! number of chunks, split anywhere, even inside a UTF-8 character, gives exactly the same pieces
//! as feeding it at once.
//!
//! Deliberate simplifications, each worth well under 1% of tokens on the corpus: English
//! contractions (`'s`, `'ll`, …) are not glued to the word before them (the next piece gets the
//! apostrophe as its prefix instead, which costs the same); combining marks count as caseless
//! letters in both encodings; a caseless letter followed by an uppercase one stays in one piece.

/// Maximal run of ASCII letters and digits at or above which, if it mixes both, the run is
/// treated as a machine-made blob (base64, hex, keys): such text splits into far more tokens
/// than words of the same length. English words and identifiers rarely reach 24 characters
/// without punctuation, and rarely mix in digits when they do.
const BLOB_RUN: u32 = 24;

/// How many plain ASCII words after an accented one still count as "not English" context, and
/// the most that can build up. Roughly one word in five to ten carries an accent in French,
/// Spanish or German prose.
const FOREIGN_BOOST: u8 = 8;
const FOREIGN_MAX: u8 = 32;

/// The two places where the encodings' split rules differ in a way that moves token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rules {
    /// o200k ends a letter piece where a lowercase letter is followed by an uppercase one
    /// (`camelCase` is two pieces); cl100k keeps any run of letters together.
    pub split_case: bool,
    /// o200k lets the newlines that trail a punctuation piece continue with `/`.
    pub slash_trailer: bool,
    /// cl100k keeps all whitespace at the very end of the text in one piece (`\s++$`).
    pub merge_final_ws: bool,
}

/// Where a piece starts and ends, as byte offsets from the start of the text. Only calibration
/// reads it; keeping it costs two integer stores per piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Span {
    pub start: u64,
    pub end: u64,
}

/// The one character a word piece may start with (the regex's `[^\r\n\p{L}\p{N}]?`).
pub(super) mod prefix {
    pub const NONE: u8 = 0;
    pub const SPACE: u8 = 1;
    pub const OTHER_WS: u8 = 2;
    /// `.` or `_`: member access and snake_case, which BPE vocabularies merge often.
    pub const DOT: u8 = 3;
    /// `"`, `'` or a backquote.
    pub const QUOTE: u8 = 4;
    /// `/`, `\`, `-`, `@`: paths, flags, e-mail addresses.
    pub const SLASH: u8 = 5;
    /// `(`, `[`, `{`, `<`.
    pub const OPEN: u8 = 6;
    pub const OTHER: u8 = 7;
    /// Any non-ASCII symbol or punctuation (or an invalid UTF-8 byte).
    pub const NON_ASCII: u8 = 8;
    pub const COUNT: usize = 9;
}

/// Letter scripts with their own price tables; 0 means all letters were ASCII.
pub(super) mod script {
    pub const ASCII: u8 = 0;
    pub const LATIN: u8 = 1;
    pub const GREEK: u8 = 2;
    pub const CYRILLIC: u8 = 3;
    /// Hebrew, Arabic, Syriac, Thaana.
    pub const RTL: u8 = 4;
    /// Devanagari through Sinhala.
    pub const INDIC: u8 = 5;
    pub const HANGUL: u8 = 6;
    pub const KANA: u8 = 7;
    pub const HAN: u8 = 8;
    pub const OTHER: u8 = 9;
    pub const COUNT: usize = 10;
}

/// A finished word piece: an optional prefix character and a run of letters.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Word {
    pub prefix: u8,
    pub letters: u32,
    /// [`script::ASCII`] when every letter is ASCII, else the script of the first non-ASCII one.
    pub script: u8,
    pub uppers: u32,
    pub first_upper: bool,
    /// A lowercase letter has been seen (for o200k, an uppercase letter now starts a new piece).
    pub lower_seen: bool,
    /// Letters that extend a run of three or more consonants (`nstr` in "instruct" adds 2):
    /// a cheap sign of a rare letter sequence, which BPE splits more.
    pub clusters: u32,
    /// Set when recent words had accented Latin letters: the text is probably not English, and
    /// its ASCII words split into more tokens than English words of the same length.
    pub foreign: bool,
    /// Letters among `jqxzkvwf`, another sign of a rare sequence.
    pub rare: u32,
    pub consonant_run: u8,
    pub start: u64,
}

/// A finished punctuation piece: an optional leading space, symbols, and trailing newlines.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Punct {
    pub space: bool,
    pub ascii: u32,
    pub quotes: u32,
    pub brackets: u32,
    /// Non-ASCII characters by encoded length: `[invalid byte, 2-byte, 3-byte, 4-byte]`.
    pub utf8: [u32; 4],
    /// Newlines (and, for o200k, slashes after them) that end the piece.
    pub trail: u32,
    /// The piece's bytes while it holds only JSON structure (`"{}[]:,`, a leading space,
    /// trailing newlines) and fits in 8 bytes; such pieces are priced from the vocabulary.
    pub key: [u8; 8],
    pub key_len: u8,
    pub structural: bool,
    /// The prefix kind of the first character, used if it turns out to start a word.
    first: u8,
    in_trail: bool,
    start: u64,
}

impl Punct {
    fn begin(first: u8, start: u64, space: bool) -> Punct {
        let mut p = Punct {
            space,
            first,
            start,
            structural: true,
            ..Punct::default()
        };
        if space {
            p.push_key(b' ');
        }
        p
    }

    fn push_key(&mut self, b: u8) {
        match self.key.get_mut(usize::from(self.key_len)) {
            Some(slot) if self.structural => {
                *slot = b;
                self.key_len += 1;
            }
            _ => self.structural = false,
        }
    }

    fn chars(&self) -> u32 {
        self.ascii + self.utf8.iter().sum::<u32>()
    }
}

/// One piece, handed to a [`Sink`] when it is complete.
#[derive(Debug, Clone, Copy)]
pub(super) enum Piece<'a> {
    Word(&'a Word),
    Digits(u32),
    Spaces(u32),
    Newlines(u32),
    Punct(&'a Punct),
}

/// What a finished run of ASCII letters and digits turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Blob {
    /// Ordinary words, identifiers and numbers.
    No,
    /// Hex digits only (hashes, ids): splits differently from base64.
    Hex,
    /// Any other long letter-digit mix: base64, keys, tokens.
    Base64,
}

/// Where a finished piece stands with respect to runs of ASCII letters and digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum InRun {
    /// Not in a run (the piece ended with something else).
    No,
    /// In a run that goes on: whether it is a blob is not known yet, see [`Sink::end_run`].
    Open,
    /// In a run that ends right after the piece, and this is what the run was.
    Closed(Blob),
}

/// Receives pieces as the scanner completes them.
pub(super) trait Sink {
    /// A piece is complete.
    fn piece(&mut self, piece: Piece<'_>, span: Span, in_run: InRun);
    /// The current run of ASCII letters and digits ended, and this is what it was. Pieces
    /// reported [`InRun::Open`] since the last call belong to it.
    fn end_run(&mut self, blob: Blob);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Upper,
    Lower,
    Caseless,
    Digit,
    /// The literal space, the only whitespace that may lead a punctuation piece.
    Space,
    OtherWs,
    Newline,
    Punct,
}

/// JSON's structural characters: punctuation made only of these is priced exactly.
fn is_structural(b: u8) -> bool {
    matches!(b, b'"' | b'{' | b'}' | b'[' | b']' | b':' | b',')
}

/// `Ch::flags` of '/', the one symbol o200k lets continue a punctuation piece after newlines.
const SLASH_FLAG: u8 = 3;

/// A classified character.
#[derive(Debug, Clone, Copy)]
struct Ch {
    kind: Kind,
    /// Letters: script. Punctuation: prefix kind.
    sub: u8,
    /// ASCII letters: 1 vowel, 2 rare consonant, 0 other consonant. Punctuation: 1 quote,
    /// 2 bracket, 3 slash. Non-ASCII punctuation: encoded length class (0 invalid, 1–3 for 2–4 bytes).
    flags: u8,
    ascii: bool,
    /// The byte itself for ASCII, else 0.
    byte: u8,
}

const fn ascii_class(b: u8) -> Ch {
    let (kind, sub, flags) = match b {
        b'A'..=b'Z' | b'a'..=b'z' => {
            let lower = b | 0x20;
            let flags = match lower {
                b'a' | b'e' | b'i' | b'o' | b'u' | b'y' => 1,
                b'j' | b'q' | b'x' | b'z' | b'k' | b'v' | b'w' | b'f' => 2,
                _ => 0,
            };
            let kind = if b.is_ascii_uppercase() {
                Kind::Upper
            } else {
                Kind::Lower
            };
            (kind, script::ASCII, flags)
        }
        b'0'..=b'9' => (Kind::Digit, 0, 0),
        b' ' => (Kind::Space, prefix::SPACE, 0),
        b'\r' | b'\n' => (Kind::Newline, 0, 0),
        b'\t' | 0x0b | 0x0c => (Kind::OtherWs, prefix::OTHER_WS, 0),
        b'.' | b'_' => (Kind::Punct, prefix::DOT, 0),
        b'"' | b'\'' | b'`' => (Kind::Punct, prefix::QUOTE, 1),
        b'/' => (Kind::Punct, prefix::SLASH, SLASH_FLAG),
        b'\\' | b'-' | b'@' => (Kind::Punct, prefix::SLASH, 0),
        b'(' | b'[' | b'{' | b'<' => (Kind::Punct, prefix::OPEN, 2),
        b')' | b']' | b'}' | b'>' => (Kind::Punct, prefix::OTHER, 2),
        _ => (Kind::Punct, prefix::OTHER, 0),
    };
    Ch {
        kind,
        sub,
        flags,
        ascii: true,
        byte: b,
    }
}

// Evaluated at compile time: an out-of-range index would fail the build, not panic at run time.
#[allow(clippy::indexing_slicing)]
static ASCII: [Ch; 128] = {
    let mut table = [ascii_class(0); 128];
    let mut b = 0;
    while b < 128 {
        table[b] = ascii_class(b as u8);
        b += 1;
    }
    table
};

const L_LOWER: u8 = 1;
const L_UPPER: u8 = 2;
const L_VOWEL: u8 = 4;
const L_RARE: u8 = 8;
const L_NON_HEX: u8 = 16;

/// Per-byte letter facts for the inner loop; 0 for anything but an ASCII letter.
// Evaluated at compile time: an out-of-range index would fail the build, not panic at run time.
#[allow(clippy::indexing_slicing)]
static LETTER: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 128 {
        let ch = ascii_class(b as u8);
        let mut info = match ch.kind {
            Kind::Lower => L_LOWER,
            Kind::Upper => L_UPPER,
            _ => 0,
        };
        if info != 0 {
            info |= match ch.flags {
                1 => L_VOWEL,
                2 => L_RARE,
                _ => 0,
            };
            if !matches!(b as u8 | 0x20, b'a'..=b'f') {
                info |= L_NON_HEX;
            }
        }
        table[b] = info;
        b += 1;
    }
    table
};

fn ascii(b: u8) -> Ch {
    ASCII.get(usize::from(b)).copied().unwrap_or(INVALID)
}

/// An undecodable byte sequence: priced like a non-ASCII symbol of its own class.
const INVALID: Ch = Ch {
    kind: Kind::Punct,
    sub: prefix::NON_ASCII,
    flags: 0,
    ascii: false,
    byte: 0,
};

fn script_of(cp: u32) -> u8 {
    match cp {
        0x00C0..=0x02AF | 0x1E00..=0x1EFF => script::LATIN,
        0x0370..=0x03FF | 0x1F00..=0x1FFF => script::GREEK,
        0x0400..=0x052F => script::CYRILLIC,
        0x0590..=0x08FF => script::RTL,
        0x0900..=0x0DFF => script::INDIC,
        0x1100..=0x11FF | 0x3130..=0x318F | 0xAC00..=0xD7AF => script::HANGUL,
        0x3040..=0x30FF | 0x31F0..=0x31FF | 0xFF66..=0xFF9F => script::KANA,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x3FFFF => script::HAN,
        _ => script::OTHER,
    }
}

/// Combining marks (`\p{M}`) that are not `Alphabetic`, which o200k treats as letters (the
/// virama inside most Indic words, Hebrew and Arabic points, Thai tone marks, variation
/// selectors). Only the common blocks; a mark outside them is priced as punctuation.
fn is_mark(cp: u32) -> bool {
    match cp {
        // Indic blocks share one layout: signs sit at the same offsets in every 128-char block.
        0x0900..=0x0DFF => {
            matches!(cp & 0x7F, 0x00..=0x03 | 0x3A..=0x4F | 0x51..=0x57 | 0x62..=0x63)
        }
        0x0300..=0x036F
        | 0x0483..=0x0489
        | 0x0591..=0x05BD
        | 0x0610..=0x061A
        | 0x064B..=0x065F
        | 0x0670
        | 0x06D6..=0x06DC
        | 0x0E31..=0x0E3A
        | 0x0E47..=0x0E4E
        | 0x1AB0..=0x1AFF
        | 0x1DC0..=0x1DFF
        | 0x20D0..=0x20FF
        | 0x302A..=0x302F
        | 0x3099..=0x309A
        | 0xFE00..=0xFE0F
        | 0xFE20..=0xFE2F => true,
        _ => false,
    }
}

fn classify(c: char, len: usize) -> Ch {
    let cp = u32::from(c);
    let letter = |kind, script| Ch {
        kind,
        sub: script,
        flags: 0,
        ascii: false,
        byte: 0,
    };
    // The letters of the commonest non-Latin-1 texts, without Unicode table lookups.
    match cp {
        0x00C0..=0x00D6 | 0x00D8..=0x00DE => return letter(Kind::Upper, script::LATIN),
        0x00E0..=0x00F6 | 0x00F8..=0x00FF => return letter(Kind::Lower, script::LATIN),
        0x0410..=0x042F => return letter(Kind::Upper, script::CYRILLIC),
        0x0430..=0x044F => return letter(Kind::Lower, script::CYRILLIC),
        0x3041..=0x3096 | 0x30A1..=0x30FA => return letter(Kind::Caseless, script::KANA),
        0x4E00..=0x9FFF => return letter(Kind::Caseless, script::HAN),
        0xAC00..=0xD7A3 => return letter(Kind::Caseless, script::HANGUL),
        _ => {}
    }
    // Letters first: they are most of what is left. (Letter-like numerals, `Nl`, count as
    // letters here, unlike the regex's `\p{N}`: rare enough not to matter.)
    let kind = if c.is_alphabetic() {
        if c.is_lowercase() {
            Kind::Lower
        } else if c.is_uppercase() {
            Kind::Upper
        } else {
            Kind::Caseless
        }
    } else if c.is_whitespace() {
        Kind::OtherWs
    } else if c.is_numeric() {
        Kind::Digit
    } else if is_mark(cp) {
        Kind::Caseless
    } else {
        Kind::Punct
    };
    let (sub, flags) = match kind {
        Kind::Upper | Kind::Lower | Kind::Caseless => (
            match script_of(cp) {
                // Combining diacritics (U+0300…) accent Latin letters far more often than not.
                script::OTHER if is_mark(cp) => script::LATIN,
                s => s,
            },
            0,
        ),
        Kind::OtherWs => (prefix::OTHER_WS, 0),
        // 2-, 3- and 4-byte characters map to 1, 2, 3.
        _ => (
            prefix::NON_ASCII,
            u8::try_from(len.saturating_sub(1)).unwrap_or(3).min(3),
        ),
    };
    Ch {
        kind,
        sub,
        flags,
        ascii: false,
        byte: 0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Start,
    Word,
    Digits,
    Punct,
    Spaces,
    Newlines,
}

#[derive(Debug, Clone, Copy, Default)]
struct Spaces {
    n: u32,
    /// Prefix kind of the last whitespace character, which may lead the next word.
    last: u8,
    start: u64,
    last_start: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Newlines {
    /// Characters in the piece so far: whitespace up to and including the last newline.
    len: u32,
    /// Whitespace after the last newline: it joins the piece only if another newline follows.
    pending: Spaces,
    start: u64,
}

/// An incomplete UTF-8 sequence, carried across chunks.
#[derive(Debug, Clone, Copy, Default)]
struct Utf8 {
    need: u8,
    len: u8,
    cp: u32,
    lo: u8,
    hi: u8,
    start: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Run {
    len: u32,
    digit: bool,
    letter: bool,
    /// A letter outside `a-f`/`A-F` was seen.
    non_hex: bool,
}

impl Run {
    fn blob(&self) -> Blob {
        if self.len < BLOB_RUN || !self.digit || !self.letter {
            Blob::No
        } else if self.non_hex {
            Blob::Base64
        } else {
            Blob::Hex
        }
    }
}

/// The streaming pre-tokenizer. Plain data: `Clone` it to fork a count.
#[derive(Debug, Clone)]
pub(super) struct Scanner {
    rules: Rules,
    state: State,
    word: Word,
    punct: Punct,
    spaces: Spaces,
    newlines: Newlines,
    digits: u32,
    digits_start: u64,
    run: Run,
    /// Recent evidence of accented Latin text (see [`Word::foreign`]).
    foreign: u8,
    /// The character being processed continues the current run of letters and digits.
    continues_run: bool,
    utf8: Utf8,
    /// Offset of the next byte.
    pos: u64,
    /// Tests compare the fast paths against the general state machine.
    #[cfg(test)]
    pub no_fast_paths: bool,
}

impl Scanner {
    pub fn new(rules: Rules) -> Self {
        Scanner {
            rules,
            state: State::Start,
            word: Word::default(),
            punct: Punct::default(),
            spaces: Spaces::default(),
            newlines: Newlines::default(),
            digits: 0,
            digits_start: 0,
            run: Run::default(),
            foreign: 0,
            continues_run: false,
            utf8: Utf8::default(),
            pos: 0,
            #[cfg(test)]
            no_fast_paths: false,
        }
    }

    /// Feeds the next bytes of the text.
    pub fn feed<S: Sink>(&mut self, bytes: &[u8], sink: &mut S) {
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if self.utf8.need > 0 || b >= 0x80 {
                self.on_byte(b, sink);
                i += 1;
                continue;
            }
            // Fast paths: the stretches that make up most text (letters inside a word, spaces
            // of indentation, digits, punctuation runs) only update the current piece's
            // counters, so they skip the general state machine.
            let rest = bytes.get(i..).unwrap_or_default();
            let taken = match self.state {
                #[cfg(test)]
                _ if self.no_fast_paths => 0,
                State::Start | State::Word => {
                    // Advances `pos` itself: it emits pieces on the way.
                    let n = self.take_pieces(rest, sink);
                    if n > 0 {
                        i += n;
                        continue;
                    }
                    0
                }
                State::Spaces => self.take_spaces(rest),
                State::Digits => self.take_digits(rest),
                State::Punct if !self.punct.in_trail => self.take_punct(rest),
                _ => 0,
            };
            if taken > 0 {
                i += taken;
                self.pos += taken as u64;
                continue;
            }
            let at = self.pos;
            self.pos += 1;
            self.on_char(ascii(b), at, sink);
            i += 1;
        }
    }

    /// The ASCII hot path: from a piece boundary (or inside a word) takes whole pieces of
    /// ASCII text, each found with a tight loop over its bytes and handed to `sink` with the
    /// same piece, span and run status as the general machine gives it. A piece is only
    /// taken once the byte after it is seen in this chunk and is ASCII (a non-ASCII byte
    /// might continue it): otherwise this stops at the piece's start in [`State::Start`],
    /// which the general machine continues from exactly as if it had ended the piece before
    /// (its transitions between pieces all amount to "emit the piece, begin the next one"),
    /// or, inside a word, in [`State::Word`]. Advances `pos` itself; returns bytes taken.
    fn take_pieces<S: Sink>(&mut self, bytes: &[u8], sink: &mut S) -> usize {
        let base = self.pos;
        let at = |i: usize| base + i as u64;
        let byte = |i: usize| bytes.get(i).copied();
        let mut i = 0;
        let mut in_word = self.state == State::Word;
        loop {
            if in_word {
                i += self.take_letters(bytes.get(i..).unwrap_or_default());
                let Some(b) = byte(i).filter(|&b| b < 0x80) else {
                    self.state = State::Word;
                    break;
                };
                let ch = ascii(b);
                let alnum = matches!(ch.kind, Kind::Upper | Kind::Lower | Kind::Digit);
                self.continues_run = alnum;
                self.emit_word(at(i), sink);
                if !alnum {
                    self.end_run(sink);
                }
                if ch.kind == Kind::Upper || ch.kind == Kind::Lower {
                    // o200k: an uppercase letter after a lowercase one starts the next word.
                    self.start_word(prefix::NONE, at(i), b);
                    i += 1;
                    continue;
                }
                in_word = false;
            }
            // At a piece boundary: the next piece starts at `i`.
            let Some(b) = byte(i).filter(|&b| b < 0x80) else {
                self.state = State::Start;
                break;
            };
            let ch = ascii(b);
            match ch.kind {
                Kind::Upper | Kind::Lower => {
                    self.start_word(prefix::NONE, at(i), b);
                    i += 1;
                    in_word = true;
                }
                Kind::Digit => {
                    let rest = bytes.get(i..).unwrap_or_default();
                    let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                    let Some(t) = byte(i + n).filter(|&t| t < 0x80) else {
                        self.state = State::Start;
                        break;
                    };
                    let n32 = u32::try_from(n).unwrap_or(u32::MAX);
                    self.run.len = self.run.len.saturating_add(n32);
                    self.run.digit = true;
                    let alnum = t.is_ascii_alphanumeric();
                    self.continues_run = alnum;
                    self.emit(Piece::Digits(n32), at(i), at(i + n), sink);
                    if !alnum {
                        self.end_run(sink);
                    }
                    i += n;
                }
                // Only non-ASCII letters are caseless.
                Kind::Caseless => {
                    self.state = State::Start;
                    break;
                }
                Kind::Punct => match self.take_punct_piece(bytes, i, i, false, sink) {
                    Some(next) => (i, in_word) = next,
                    None => {
                        self.state = State::Start;
                        break;
                    }
                },
                Kind::Space | Kind::OtherWs | Kind::Newline => {
                    // Whitespace never continues a run, so the run has ended: pieces here are
                    // outside runs.
                    let mut j = i;
                    let mut after_newline = None;
                    while let Some(c) = byte(j) {
                        match c {
                            b' ' | b'\t' | 0x0b | 0x0c => {}
                            b'\r' | b'\n' => after_newline = Some(j + 1),
                            _ => break,
                        }
                        j += 1;
                    }
                    let Some(t) = byte(j).filter(|&t| t < 0x80) else {
                        self.state = State::Start;
                        break;
                    };
                    let mut s = i;
                    if let Some(end) = after_newline {
                        let len = u32::try_from(end - i).unwrap_or(u32::MAX);
                        self.emit(Piece::Newlines(len), at(i), at(end), sink);
                        s = end;
                    }
                    if s == j {
                        i = j;
                        continue;
                    }
                    // `\s+(?!\S)`: all but the last whitespace character are a piece, and the
                    // last one leads what follows.
                    let last = j - 1;
                    if last > s {
                        let n = u32::try_from(last - s).unwrap_or(u32::MAX);
                        self.emit(Piece::Spaces(n), at(s), at(last), sink);
                    }
                    let lead = if byte(last) == Some(b' ') {
                        prefix::SPACE
                    } else {
                        prefix::OTHER_WS
                    };
                    let tc = ascii(t);
                    match tc.kind {
                        Kind::Upper | Kind::Lower => {
                            self.start_word(lead, at(last), t);
                            i = j + 1;
                            in_word = true;
                        }
                        Kind::Punct if lead == prefix::SPACE => {
                            match self.take_punct_piece(bytes, last, j, true, sink) {
                                Some(next) => (i, in_word) = next,
                                None => {
                                    // Resume at the space, as the machine would from there.
                                    i = last;
                                    self.state = State::Start;
                                    break;
                                }
                            }
                        }
                        _ => {
                            self.emit(Piece::Spaces(1), at(last), at(j), sink);
                            i = j;
                        }
                    }
                }
            }
        }
        self.pos = at(i);
        i
    }

    /// Begins a word at `start` with the ASCII letter `b` (at the current position) and adds
    /// the letter to the run, as `on_char` and `begin` do.
    #[inline(always)]
    fn start_word(&mut self, lead: u8, start: u64, b: u8) {
        self.word = Word::begin(lead, start);
        self.word.add(ascii(b));
        let r = &mut self.run;
        r.len = r.len.saturating_add(1);
        r.letter = true;
        r.non_hex |= !matches!(b | 0x20, b'a'..=b'f');
    }

    /// A punctuation piece starting at `start` whose first symbol is at `first` (after a
    /// leading space when `space`): emits it, or starts the word it prefixes. Returns where
    /// the next piece starts and whether it is that word, or `None` (nothing done) when the
    /// piece's end is not in `bytes` or is not ASCII.
    #[inline(always)]
    fn take_punct_piece<S: Sink>(
        &mut self,
        bytes: &[u8],
        start: usize,
        first: usize,
        space: bool,
        sink: &mut S,
    ) -> Option<(usize, bool)> {
        let at = |i: usize| self.pos + i as u64;
        let ascii_at = |i: usize| bytes.get(i).copied().filter(|&b| b < 0x80).map(ascii);
        let ch0 = ascii_at(first)?;
        let mut j = first + 1;
        let mut next = ascii_at(j)?;
        if !space && matches!(next.kind, Kind::Upper | Kind::Lower) {
            // A lone symbol before letters is the word's prefix (`.get`, `"name`).
            self.start_word(ch0.sub, at(first), next.byte);
            return Some((j + 1, true));
        }
        let mut p = Punct::begin(ch0.sub, at(start), space);
        p.add(ch0);
        while next.kind == Kind::Punct {
            p.add(next);
            j += 1;
            next = ascii_at(j)?;
        }
        if next.kind == Kind::Newline {
            p.in_trail = true;
            loop {
                if next.kind == Kind::Newline {
                    p.trail += 1;
                    p.push_key(next.byte);
                } else if self.rules.slash_trailer
                    && next.kind == Kind::Punct
                    && next.flags == SLASH_FLAG
                {
                    // o200k's `[\r\n/]*`: a '/' after the trailing newlines still belongs.
                    p.trail += 1;
                    p.structural = false;
                } else {
                    break;
                }
                j += 1;
                next = ascii_at(j)?;
            }
        }
        let end = at(j);
        sink.piece(
            Piece::Punct(&p),
            Span {
                start: at(start),
                end,
            },
            InRun::No,
        );
        Some((j, false))
    }

    /// Adds the ASCII letters at the start of `bytes` to the current word, up to a letter that
    /// would start a new piece; returns how many. The counters live in locals during the loop:
    /// this is the innermost loop of the estimator.
    #[inline]
    fn take_letters(&mut self, bytes: &[u8]) -> usize {
        let split = self.rules.split_case;
        let w = &mut self.word;
        let (mut letters, mut uppers, mut lower_seen) = (w.letters, w.uppers, w.lower_seen);
        let (mut run, mut clusters, mut rare) = (w.consonant_run, w.clusters, w.rare);
        let mut non_hex = false;
        let mut n = 0;
        for &b in bytes {
            let info = LETTER.get(usize::from(b)).copied().unwrap_or(0);
            if info & L_LOWER != 0 {
                lower_seen = true;
            } else if info & L_UPPER != 0 && !(split && lower_seen) {
                uppers += 1;
            } else {
                break;
            }
            letters += 1;
            if info & L_VOWEL != 0 {
                run = 0;
            } else {
                run = run.saturating_add(1);
                clusters += u32::from(run >= 3);
                rare += u32::from(info & L_RARE != 0);
            }
            non_hex |= info & L_NON_HEX != 0;
            n += 1;
        }
        if n > 0 {
            (w.letters, w.uppers, w.lower_seen) = (letters, uppers, lower_seen);
            (w.consonant_run, w.clusters, w.rare) = (run, clusters, rare);
            let r = &mut self.run;
            r.len = r.len.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
            r.letter = true;
            r.non_hex |= non_hex;
        }
        n
    }

    fn take_spaces(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.iter().take_while(|&&b| b == b' ').count();
        if n > 0 {
            let s = &mut self.spaces;
            s.n = s.n.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
            s.last = prefix::SPACE;
            s.last_start = self.pos + n as u64 - 1;
        }
        n
    }

    fn take_digits(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        if n > 0 {
            let n32 = u32::try_from(n).unwrap_or(u32::MAX);
            self.digits = self.digits.saturating_add(n32);
            self.run.len = self.run.len.saturating_add(n32);
            self.run.digit = true;
        }
        n
    }

    fn take_punct(&mut self, bytes: &[u8]) -> usize {
        let mut n = 0;
        for &b in bytes {
            let ch = ascii(b);
            // Bytes from 0x80 start a UTF-8 sequence: the decoder must see them.
            if ch.kind != Kind::Punct || !ch.ascii {
                break;
            }
            self.punct.add(ch);
            n += 1;
        }
        n
    }

    /// Ends the text: completes the last piece and resets the scanner for a new text.
    pub fn finish<S: Sink>(&mut self, sink: &mut S) {
        if self.utf8.need > 0 {
            let at = self.utf8.start;
            self.utf8 = Utf8::default();
            self.on_char(INVALID, at, sink);
        }
        let end = self.pos;
        self.continues_run = false;
        match self.state {
            State::Start => {}
            State::Word => self.emit_word(end, sink),
            State::Digits => self.emit_digits(end, sink),
            State::Punct => self.emit_punct(end, sink),
            State::Spaces => {
                let s = self.spaces;
                self.emit(Piece::Spaces(s.n), s.start, end, sink);
            }
            State::Newlines => {
                let nl = self.newlines;
                if nl.pending.n > 0 && !self.rules.merge_final_ws {
                    self.emit(Piece::Newlines(nl.len), nl.start, nl.pending.start, sink);
                    self.emit(Piece::Spaces(nl.pending.n), nl.pending.start, end, sink);
                } else {
                    self.emit(Piece::Newlines(nl.len + nl.pending.n), nl.start, end, sink);
                }
            }
        }
        self.end_run(sink);
        *self = Scanner {
            #[cfg(test)]
            no_fast_paths: self.no_fast_paths,
            ..Scanner::new(self.rules)
        };
    }

    fn on_byte<S: Sink>(&mut self, b: u8, sink: &mut S) {
        if self.utf8.need > 0 {
            if (self.utf8.lo..=self.utf8.hi).contains(&b) {
                self.utf8.cp = (self.utf8.cp << 6) | u32::from(b & 0x3F);
                self.utf8.need -= 1;
                self.utf8.lo = 0x80;
                self.utf8.hi = 0xBF;
                self.pos += 1;
                if self.utf8.need == 0 {
                    let u = self.utf8;
                    self.utf8 = Utf8::default();
                    let ch =
                        char::from_u32(u.cp).map_or(INVALID, |c| classify(c, usize::from(u.len)));
                    self.on_char(ch, u.start, sink);
                }
                return;
            }
            // The sequence broke off: it stands for one invalid character, and `b` starts afresh.
            let at = self.utf8.start;
            self.utf8 = Utf8::default();
            self.on_char(INVALID, at, sink);
            if b < 0x80 {
                let at = self.pos;
                self.pos += 1;
                self.on_char(ascii(b), at, sink);
                return;
            }
        }
        let (need, lo, hi, bits) = match b {
            0xC2..=0xDF => (1, 0x80, 0xBF, b & 0x1F),
            0xE0 => (2, 0xA0, 0xBF, b & 0x0F),
            0xE1..=0xEC | 0xEE | 0xEF => (2, 0x80, 0xBF, b & 0x0F),
            0xED => (2, 0x80, 0x9F, b & 0x0F),
            0xF0 => (3, 0x90, 0xBF, b & 0x07),
            0xF1..=0xF3 => (3, 0x80, 0xBF, b & 0x07),
            0xF4 => (3, 0x80, 0x8F, b & 0x07),
            _ => {
                let at = self.pos;
                self.pos += 1;
                self.on_char(INVALID, at, sink);
                return;
            }
        };
        self.utf8 = Utf8 {
            need,
            len: need + 1,
            cp: u32::from(bits),
            lo,
            hi,
            start: self.pos,
        };
        self.pos += 1;
    }

    #[inline(always)]
    fn on_char<S: Sink>(&mut self, ch: Ch, at: u64, sink: &mut S) {
        let alnum = ch.ascii && matches!(ch.kind, Kind::Upper | Kind::Lower | Kind::Digit);
        self.continues_run = alnum;
        self.step(ch, at, sink);
        if alnum {
            self.run.len = self.run.len.saturating_add(1);
            if ch.kind == Kind::Digit {
                self.run.digit = true;
            } else {
                self.run.letter = true;
                self.run.non_hex |= !matches!(ch.byte | 0x20, b'a'..=b'f');
            }
        } else {
            self.end_run(sink);
        }
    }

    #[inline(always)]
    fn end_run<S: Sink>(&mut self, sink: &mut S) {
        if self.run.len > 0 {
            sink.end_run(self.run.blob());
            self.run = Run::default();
        }
    }

    #[inline(always)]
    fn in_run(&self) -> InRun {
        if self.run.len == 0 {
            InRun::No
        } else if self.continues_run {
            InRun::Open
        } else {
            InRun::Closed(self.run.blob())
        }
    }

    fn emit<S: Sink>(&self, piece: Piece<'_>, start: u64, end: u64, sink: &mut S) {
        sink.piece(piece, Span { start, end }, self.in_run());
    }

    #[inline(always)]
    fn emit_word<S: Sink>(&mut self, end: u64, sink: &mut S) {
        self.word.foreign = self.foreign > 0;
        let span = Span {
            start: self.word.start,
            end,
        };
        let in_run = self.in_run();
        sink.piece(Piece::Word(&self.word), span, in_run);
        if self.word.script == script::LATIN {
            self.foreign = self.foreign.saturating_add(FOREIGN_BOOST).min(FOREIGN_MAX);
        } else if self.word.script == script::ASCII && self.word.letters > 1 {
            self.foreign = self.foreign.saturating_sub(1);
        }
    }

    fn emit_digits<S: Sink>(&mut self, end: u64, sink: &mut S) {
        self.emit(Piece::Digits(self.digits), self.digits_start, end, sink);
    }

    #[inline(always)]
    fn emit_punct<S: Sink>(&mut self, end: u64, sink: &mut S) {
        let span = Span {
            start: self.punct.start,
            end,
        };
        let in_run = self.in_run();
        sink.piece(Piece::Punct(&self.punct), span, in_run);
    }

    /// Advances the piece state machine by one character starting at byte `at`.
    #[inline(always)]
    fn step<S: Sink>(&mut self, ch: Ch, at: u64, sink: &mut S) {
        match self.state {
            State::Start => self.begin(ch, at),
            State::Word => match ch.kind {
                Kind::Upper | Kind::Lower | Kind::Caseless => {
                    if self.rules.split_case && ch.kind == Kind::Upper && self.word.lower_seen {
                        self.emit_word(at, sink);
                        self.word = Word::begin(prefix::NONE, at);
                    }
                    self.word.add(ch);
                }
                _ => {
                    self.emit_word(at, sink);
                    self.begin(ch, at);
                }
            },
            State::Digits => {
                if ch.kind == Kind::Digit {
                    self.digits += 1;
                } else {
                    self.emit_digits(at, sink);
                    self.begin(ch, at);
                }
            }
            State::Punct => self.step_punct(ch, at, sink),
            State::Spaces => self.step_spaces(ch, at, sink),
            State::Newlines => match ch.kind {
                Kind::Newline => {
                    let nl = &mut self.newlines;
                    nl.len += nl.pending.n + 1;
                    nl.pending = Spaces::default();
                }
                Kind::Space | Kind::OtherWs => {
                    let p = &mut self.newlines.pending;
                    if p.n == 0 {
                        p.start = at;
                    }
                    p.n += 1;
                    p.last = ch.sub;
                    p.last_start = at;
                }
                _ => {
                    let nl = self.newlines;
                    let end = if nl.pending.n > 0 {
                        nl.pending.start
                    } else {
                        at
                    };
                    self.emit(Piece::Newlines(nl.len), nl.start, end, sink);
                    if nl.pending.n > 0 {
                        self.spaces = nl.pending;
                        self.state = State::Spaces;
                        self.step_spaces(ch, at, sink);
                    } else {
                        self.begin(ch, at);
                    }
                }
            },
        }
    }

    /// Starts a new piece with `ch`, as the regex does after a completed piece.
    #[inline(always)]
    fn begin(&mut self, ch: Ch, at: u64) {
        match ch.kind {
            Kind::Upper | Kind::Lower | Kind::Caseless => {
                self.word = Word::begin(prefix::NONE, at);
                self.word.add(ch);
                self.state = State::Word;
            }
            Kind::Digit => {
                self.digits = 1;
                self.digits_start = at;
                self.state = State::Digits;
            }
            Kind::Space | Kind::OtherWs => {
                self.spaces = Spaces {
                    n: 1,
                    last: ch.sub,
                    start: at,
                    last_start: at,
                };
                self.state = State::Spaces;
            }
            Kind::Newline => {
                self.newlines = Newlines {
                    len: 1,
                    pending: Spaces::default(),
                    start: at,
                };
                self.state = State::Newlines;
            }
            Kind::Punct => {
                self.punct = Punct::begin(ch.sub, at, false);
                self.punct.add(ch);
                self.state = State::Punct;
            }
        }
    }

    #[inline(always)]
    fn step_punct<S: Sink>(&mut self, ch: Ch, at: u64, sink: &mut S) {
        match ch.kind {
            Kind::Punct => {
                if !self.punct.in_trail {
                    self.punct.add(ch);
                } else if self.rules.slash_trailer && ch.ascii && ch.flags == SLASH_FLAG {
                    // o200k's `[\r\n/]*`: a '/' after the trailing newlines still belongs.
                    self.punct.trail += 1;
                    self.punct.structural = false;
                } else {
                    self.emit_punct(at, sink);
                    self.begin(ch, at);
                }
            }
            Kind::Newline => {
                self.punct.in_trail = true;
                self.punct.trail += 1;
                self.punct.push_key(ch.byte);
            }
            Kind::Upper | Kind::Lower | Kind::Caseless => {
                let p = self.punct;
                if p.chars() == 1 && !p.space && !p.in_trail {
                    // A lone symbol before letters is the word's prefix (`.get`, `"name`).
                    self.word = Word::begin(p.first, p.start);
                } else {
                    self.emit_punct(at, sink);
                    self.word = Word::begin(prefix::NONE, at);
                }
                self.word.add(ch);
                self.state = State::Word;
            }
            _ => {
                self.emit_punct(at, sink);
                self.begin(ch, at);
            }
        }
    }

    #[inline(always)]
    fn step_spaces<S: Sink>(&mut self, ch: Ch, at: u64, sink: &mut S) {
        let s = self.spaces;
        match ch.kind {
            Kind::Space | Kind::OtherWs => {
                self.spaces.n += 1;
                self.spaces.last = ch.sub;
                self.spaces.last_start = at;
            }
            Kind::Newline => {
                self.newlines = Newlines {
                    len: s.n + 1,
                    pending: Spaces::default(),
                    start: s.start,
                };
                self.state = State::Newlines;
            }
            Kind::Upper | Kind::Lower | Kind::Caseless => {
                // `\s+(?!\S)` leaves the last whitespace character to lead the word.
                if s.n > 1 {
                    self.emit(Piece::Spaces(s.n - 1), s.start, s.last_start, sink);
                }
                self.word = Word::begin(s.last, s.last_start);
                self.word.add(ch);
                self.state = State::Word;
            }
            Kind::Punct => {
                if s.n > 1 {
                    self.emit(Piece::Spaces(s.n - 1), s.start, s.last_start, sink);
                }
                if s.last == prefix::SPACE {
                    // ` ?[^\s\p{L}\p{N}]+`: a literal space leads the punctuation.
                    self.punct = Punct::begin(ch.sub, s.last_start, true);
                    self.punct.add(ch);
                    self.state = State::Punct;
                } else {
                    self.emit(Piece::Spaces(1), s.last_start, at, sink);
                    self.begin(ch, at);
                }
            }
            Kind::Digit => {
                if s.n > 1 {
                    self.emit(Piece::Spaces(s.n - 1), s.start, s.last_start, sink);
                }
                self.emit(Piece::Spaces(1), s.last_start, at, sink);
                self.begin(ch, at);
            }
        }
    }
}

impl Word {
    fn begin(prefix: u8, start: u64) -> Word {
        Word {
            prefix,
            start,
            ..Word::default()
        }
    }

    fn add(&mut self, ch: Ch) {
        self.letters += 1;
        match ch.kind {
            Kind::Upper => {
                if self.letters == 1 {
                    self.first_upper = true;
                }
                self.uppers += 1;
            }
            Kind::Lower => self.lower_seen = true,
            _ => {}
        }
        if ch.ascii {
            self.letter_shape(ch.flags);
        } else if self.script == script::ASCII {
            self.script = ch.sub;
        }
    }

    fn letter_shape(&mut self, flags: u8) {
        if flags == 1 {
            self.consonant_run = 0;
        } else {
            self.consonant_run = self.consonant_run.saturating_add(1);
            if self.consonant_run >= 3 {
                self.clusters += 1;
            }
            if flags == 2 {
                self.rare += 1;
            }
        }
    }
}

impl Punct {
    fn add(&mut self, ch: Ch) {
        if is_structural(ch.byte) {
            self.push_key(ch.byte);
        } else {
            self.structural = false;
        }
        if ch.ascii {
            self.ascii += 1;
            match ch.flags {
                1 => self.quotes += 1,
                2 => self.brackets += 1,
                _ => {}
            }
        } else if let Some(n) = self.utf8.get_mut(usize::from(ch.flags)) {
            *n += 1;
        }
    }
}
