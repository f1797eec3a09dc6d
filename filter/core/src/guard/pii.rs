//! PII and secret detectors: pure functions over one word of decoded text.
//!
//! A "word" is what [`super::scan`] hands over: a run of non-separator characters, where number
//! groups (`4111 1111 1111 1111`, `+1 (415) 555-2671`) and spaced IBAN groups are joined across
//! single spaces. Each detector looks for its pattern inside the word with explicit boundary
//! checks (a card number glued to letters is part of an identifier, not a card), validates it
//! (Luhn, mod-97, SSN ranges, key lengths) and reports index ranges. Nothing here allocates.

use super::{Detector, DetectorSet};

/// Byte classes (see `scan::CLASS`), the subset the detectors gate on.
pub(super) const C_WORD: u16 = 1;
pub(super) const C_DIGIT: u16 = 1 << 1;
pub(super) const C_UPPER: u16 = 1 << 2;
pub(super) const C_LOWER: u16 = 1 << 3;
pub(super) const C_AT: u16 = 1 << 4;
pub(super) const C_DOT: u16 = 1 << 5;
pub(super) const C_COLON: u16 = 1 << 6;
pub(super) const C_SLASH: u16 = 1 << 7;
/// `-`, `.`, `(`, `)`, `+`: what numbers are written with besides digits.
pub(super) const C_NUMP: u16 = 1 << 8;
/// A literal space (only ever inside a word when number or IBAN groups were joined).
pub(super) const C_SPACE: u16 = 1 << 9;
pub(super) const C_NONASCII: u16 = 1 << 10;
/// Any other ASCII punctuation that is part of words.
pub(super) const C_PUNCT: u16 = 1 << 11;

/// The characters a secret's body is made of; also what a long secret swallows when it runs past
/// the end of a word piece (see `scan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    UpperDigit,
    Alnum,
    AlnumUnder,
    AlnumDash,
    Base64Url,
    /// Base64url segments joined by dots.
    Jwt,
    /// RFC 6750 `b64token`.
    Token,
    /// Everything that can be part of a word.
    Url,
}

impl Body {
    pub fn accepts_byte(self, b: u8) -> bool {
        let alnum = b.is_ascii_alphanumeric();
        match self {
            Body::UpperDigit => b.is_ascii_uppercase() || b.is_ascii_digit(),
            Body::Alnum => alnum,
            Body::AlnumUnder => alnum || b == b'_',
            Body::AlnumDash => alnum || b == b'-',
            Body::Base64Url => alnum || b == b'-' || b == b'_',
            Body::Jwt => alnum || b == b'-' || b == b'_' || b == b'.',
            Body::Token => alnum || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'='),
            Body::Url => super::scan::is_word_byte(b) && b != b')',
        }
    }

    pub fn accepts(self, cp: u32) -> bool {
        u8::try_from(cp).is_ok_and(|b| b < 0x80 && self.accepts_byte(b))
    }
}

/// One word (or piece of a long word) and what surrounds it.
pub(super) struct Piece<'a> {
    pub text: &'a [u8],
    /// The character before the piece: a separator, 0 at the start of a string, or the last
    /// character of the previous piece of the same long word.
    pub before: u32,
    /// The character that ended the word (0 at the end of a string); unknown if not `complete`.
    pub after: u32,
    /// False when the word goes on past this piece (it was cut at the length limit).
    pub complete: bool,
    /// OR of the byte classes of `text`.
    pub flags: u16,
    /// The previous word was `Bearer`.
    pub bearer: bool,
}

/// Non-ASCII context characters compare as this byte: not alphanumeric, not punctuation.
const NON_ASCII: u8 = 0x80;

fn ascii_or_marker(cp: u32) -> u8 {
    match u8::try_from(cp) {
        Ok(b) if b < 0x80 => b,
        _ => NON_ASCII,
    }
}

impl Piece<'_> {
    pub fn len(&self) -> usize {
        self.text.len()
    }

    pub fn at(&self, i: usize) -> u8 {
        self.text.get(i).copied().unwrap_or(0)
    }

    /// The byte before index `i`, looking into the context at 0.
    pub fn prev(&self, i: usize) -> u8 {
        match i.checked_sub(1) {
            None => ascii_or_marker(self.before),
            Some(j) => self.at(j),
        }
    }

    /// The byte at `i`, or what follows the word; `None` where the piece was cut (unknown yet).
    pub fn next(&self, i: usize) -> Option<u8> {
        if i < self.len() {
            Some(self.at(i))
        } else if self.complete {
            Some(ascii_or_marker(self.after))
        } else {
            None
        }
    }

    fn slice(&self, from: usize, to: usize) -> &[u8] {
        self.text.get(from..to).unwrap_or_default()
    }

    /// Length of the run of bytes in `body` starting at `i`, looking at most `max` bytes.
    fn run(&self, i: usize, max: usize, body: Body) -> usize {
        self.text
            .get(i..)
            .unwrap_or_default()
            .iter()
            .take(max)
            .take_while(|b| body.accepts_byte(**b))
            .count()
    }

    fn digits(&self, i: usize) -> usize {
        self.text
            .get(i..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    }
}

/// A match in a piece: byte range, detector, and for a secret that runs to the end of a cut
/// piece, the body it continues with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cand {
    pub s: usize,
    pub e: usize,
    pub det: Detector,
    pub open: Option<Body>,
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Runs the enabled PII and secret detectors over one piece.
pub(super) fn scan(p: &Piece<'_>, en: DetectorSet, out: &mut Vec<Cand>) {
    let n = p.len();
    let f = p.flags;
    if en.contains(Detector::Email) && f & C_AT != 0 && f & C_DOT != 0 && n >= 6 {
        emails(p, out);
    }
    if f & C_DIGIT != 0
        && n >= 9
        && (en.contains(Detector::Card)
            || en.contains(Detector::Phone)
            || en.contains(Detector::Ssn))
    {
        numbers(p, en, out);
    }
    if en.contains(Detector::Iban) && f & C_UPPER != 0 && f & C_DIGIT != 0 && n >= 15 {
        ibans(p, out);
    }
    if (n >= 15 || p.bearer) && en.intersects(DetectorSet::SECRETS) {
        secrets(p, en, out);
    }
}

// ---------------------------------------------------------------------------------------------
// E-mail

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

/// Top-level "domains" that are really file extensions (`logo@2x.png`, `icon@3x.webp`).
const FILE_EXTENSIONS: &[&[u8]] = &[
    b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"ico", b"bmp", b"js", b"mjs", b"ts", b"css",
    b"json", b"map", b"txt", b"pdf", b"mp4", b"wasm", b"lock",
];

fn emails(p: &Piece<'_>, out: &mut Vec<Cand>) {
    let n = p.len();
    for (a, _) in p.text.iter().enumerate().filter(|(_, b)| **b == b'@') {
        // Local part: up to 64 characters; a longer run is not an address.
        let mut s = a;
        while s > 0 && is_local(p.at(s - 1)) && a - s < 64 {
            s -= 1;
        }
        if s > 0 && is_local(p.at(s - 1)) {
            continue;
        }
        while s < a && p.at(s) == b'.' {
            s += 1;
        }
        if s == a || p.at(a - 1) == b'.' || !p.slice(s, a).iter().any(u8::is_ascii_alphanumeric) {
            continue;
        }
        let mut e = a + 1;
        while e < n && is_domain(p.at(e)) && e - a <= 254 {
            e += 1;
        }
        if e == n && !p.complete {
            continue; // the domain may go on in the next piece
        }
        while e > a + 1 && matches!(p.at(e - 1), b'.' | b'-') {
            e -= 1;
        }
        if !valid_domain(p.slice(a + 1, e)) {
            continue;
        }
        // `git@github.com:owner/repo.git` is an SSH remote, not an address.
        if p.at(e) == b':' && p.next(e + 1).is_some_and(|b| b == b'/' || is_alnum(b)) {
            continue;
        }
        out.push(Cand {
            s,
            e,
            det: Detector::Email,
            open: None,
        });
    }
}

fn valid_domain(d: &[u8]) -> bool {
    if d.len() < 4 || d.len() > 253 {
        return false;
    }
    let mut labels = 0;
    let mut last: &[u8] = &[];
    for label in d.split(|b| *b == b'.') {
        if label.is_empty()
            || label.len() > 63
            || label.first() == Some(&b'-')
            || label.last() == Some(&b'-')
        {
            return false;
        }
        if labels == 0 {
            // `@2x.png`, `@3x.webp`: retina image suffixes.
            let (digits, rest) =
                label.split_at(label.iter().take_while(|b| b.is_ascii_digit()).count());
            if !digits.is_empty() && (rest == b"x" || rest.is_empty()) {
                return false;
            }
        }
        labels += 1;
        last = label;
    }
    labels >= 2
        && (2..=24).contains(&last.len())
        && last.iter().all(u8::is_ascii_alphabetic)
        && !FILE_EXTENSIONS
            .iter()
            .any(|ext| last.eq_ignore_ascii_case(ext))
}

// ---------------------------------------------------------------------------------------------
// Numbers: cards, phones, SSNs

pub(super) fn is_num(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b' ' | b'-' | b'.' | b'(' | b')' | b'+')
}

fn numbers(p: &Piece<'_>, en: DetectorSet, out: &mut Vec<Cand>) {
    let n = p.len();
    let mut i = 0;
    while i < n {
        if !is_num(p.at(i)) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < n && is_num(p.at(j)) {
            j += 1;
        }
        let (mut s, mut e) = (i, j);
        i = j;
        if j == n && !p.complete {
            continue; // judged in the next piece, which overlaps this one
        }
        // Separators at the ends belong to the text around the number (`(cell)`, `415-…-0123.`).
        while s < e && matches!(p.at(s), b' ' | b'-' | b'.' | b')') {
            s += 1;
        }
        while e > s && matches!(p.at(e - 1), b' ' | b'-' | b'.' | b'(' | b'+') {
            e -= 1;
        }
        // A run glued to letters or underscores is part of an identifier (`v1.2.3`, `id_4111…`,
        // `2024-01-15T10`); a run cut at the piece end is judged in the next piece.
        if is_ident(p.prev(s)) {
            continue;
        }
        match p.next(e) {
            None => continue,
            Some(b) if is_ident(b) => continue,
            Some(_) => {}
        }
        if p.slice(s, e).iter().filter(|b| b.is_ascii_digit()).count() < 8 {
            continue;
        }
        scan_run(p, s, e, en, out);
    }
}

/// Group starts of a number run are its start and every digit, `(` or `+` after a space; at each
/// the first detector that matches wins and scanning resumes after it.
fn scan_run(p: &Piece<'_>, s: usize, e: usize, en: DetectorSet, out: &mut Vec<Cand>) {
    let r = Run { p, end: e };
    let mut q = s;
    while q < e {
        let starts_group = q == s || p.at(q - 1) == b' ';
        let b = p.at(q);
        if starts_group && (b.is_ascii_digit() || b == b'(' || b == b'+') {
            let found = [
                (Detector::Ssn, r.ssn(q)),
                (Detector::Card, r.card(q)),
                (Detector::Phone, r.phone(q)),
            ]
            .into_iter()
            .find(|(d, m)| en.contains(*d) && m.is_some());
            if let Some((det, Some(end))) = found {
                out.push(Cand {
                    s: q,
                    e: end,
                    det,
                    open: None,
                });
                q = end;
                continue;
            }
        }
        q += 1;
    }
}

struct Run<'a, 'b> {
    p: &'a Piece<'b>,
    end: usize,
}

impl Run<'_, '_> {
    fn at(&self, i: usize) -> u8 {
        if i < self.end {
            self.p.at(i)
        } else {
            0
        }
    }

    fn digits(&self, i: usize) -> usize {
        if i >= self.end {
            return 0;
        }
        self.p.digits(i).min(self.end - i)
    }

    /// A match may end at the end of the run or before a space (the next group is separate);
    /// never before `-`, `.` or a digit, which would make it part of a longer number.
    fn boundary(&self, i: usize) -> bool {
        i >= self.end || self.at(i) == b' '
    }

    fn ssn(&self, q: usize) -> Option<usize> {
        if self.digits(q) != 3
            || self.at(q + 3) != b'-'
            || self.digits(q + 4) != 2
            || self.at(q + 6) != b'-'
            || self.digits(q + 7) != 4
            || !self.boundary(q + 11)
        {
            return None;
        }
        let num = |from: usize, len: usize| {
            self.p
                .slice(from, from + len)
                .iter()
                .fold(0u32, |a, b| a * 10 + u32::from(b - b'0'))
        };
        let (area, group, serial) = (num(q, 3), num(q + 4, 2), num(q + 7, 4));
        // Never issued: area 000, 666 and 900-999, group 00, serial 0000.
        if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
            return None;
        }
        Some(q + 11)
    }

    fn card(&self, q: usize) -> Option<usize> {
        let mut digits = [0u8; 19];
        let d = self.digits(q);
        if (13..=19).contains(&d) && self.boundary(q + d) {
            for (k, b) in self.p.slice(q, q + d).iter().enumerate() {
                *digits.get_mut(k)? = b - b'0';
            }
            let digits = digits.get(..d)?;
            return (card_prefix_ok(digits) && luhn(digits)).then_some(q + d);
        }
        // Grouped: a first group of four, then groups of 2-7 with one consistent separator.
        if d != 4 {
            return None;
        }
        let sep = self.at(q + 4);
        if sep != b' ' && sep != b'-' {
            return None;
        }
        for (k, b) in self.p.slice(q, q + 4).iter().enumerate() {
            *digits.get_mut(k)? = b - b'0';
        }
        let (mut total, mut at, mut best) = (4usize, q + 4, None);
        while self.at(at) == sep {
            let g = self.digits(at + 1);
            if !(2..=7).contains(&g) || total + g > 19 {
                break;
            }
            for (k, b) in self.p.slice(at + 1, at + 1 + g).iter().enumerate() {
                *digits.get_mut(total + k)? = b - b'0';
            }
            total += g;
            at += 1 + g;
            if total >= 13 && self.boundary(at) {
                let ds = digits.get(..total)?;
                if card_prefix_ok(ds) && luhn(ds) {
                    best = Some(at);
                }
            }
        }
        best
    }

    fn phone(&self, q: usize) -> Option<usize> {
        match self.at(q) {
            b'+' => self.e164(q),
            b'0' => self.trunk(q),
            _ => self.nanp(q),
        }
    }

    /// `+` and a country code, 8 to 15 digits in groups separated by single spaces, dashes,
    /// dots, or with the area code in parentheses.
    fn e164(&self, q: usize) -> Option<usize> {
        if !matches!(self.at(q + 1), b'1'..=b'9') {
            return None;
        }
        let (mut at, mut total, mut groups) = (q + 1, 0usize, 0usize);
        let mut end = None;
        loop {
            let g;
            if self.at(at) == b'(' {
                g = self.digits(at + 1);
                if !(1..=4).contains(&g) || self.at(at + 1 + g) != b')' {
                    break;
                }
                at += g + 2;
            } else {
                g = self.digits(at);
                if g == 0 {
                    break;
                }
                at += g;
            }
            total += g;
            groups += 1;
            if total > 15 {
                return None;
            }
            end = Some(at);
            let c = self.at(at);
            let next = self.at(at + 1);
            if matches!(c, b' ' | b'-' | b'.') && (next.is_ascii_digit() || next == b'(') {
                at += 1;
            } else if self.p.at(at - 1) == b')' && c.is_ascii_digit() {
                // `+1 (415)555-2671`
            } else {
                break;
            }
        }
        let end = end?;
        (total >= 8 && groups >= 1 && self.boundary(end)).then_some(end)
    }

    /// North American numbers: `(415) 555-2671`, `415-555-2671`, `415.555.2671`, with an
    /// optional leading `1-`/`1 `/`1.`. Area code and exchange start with 2-9. Space-only
    /// `415 555 2671` is not matched: it reads the same as three unrelated numbers.
    fn nanp(&self, q: usize) -> Option<usize> {
        let body = |at: usize| -> Option<usize> {
            let nxx = |i: usize| self.digits(i) >= 3 && matches!(self.at(i), b'2'..=b'9');
            if self.at(at) == b'(' {
                if self.digits(at + 1) != 3 || !nxx(at + 1) || self.at(at + 4) != b')' {
                    return None;
                }
                let mut i = at + 5;
                if self.at(i) == b' ' {
                    i += 1;
                }
                if self.digits(i) != 3 || !nxx(i) {
                    return None;
                }
                let sep = self.at(i + 3);
                if !matches!(sep, b'-' | b' ' | b'.') || self.digits(i + 4) != 4 {
                    return None;
                }
                let end = i + 8;
                return self.boundary(end).then_some(end);
            }
            if self.digits(at) != 3 || !nxx(at) {
                return None;
            }
            let sep = self.at(at + 3);
            if !matches!(sep, b'-' | b'.')
                || self.digits(at + 4) != 3
                || !nxx(at + 4)
                || self.at(at + 7) != sep
                || self.digits(at + 8) != 4
            {
                return None;
            }
            let end = at + 12;
            self.boundary(end).then_some(end)
        };
        if self.at(q) == b'1' && self.digits(q) == 1 && matches!(self.at(q + 1), b' ' | b'-' | b'.')
        {
            if let Some(end) = body(q + 2) {
                return Some(end);
            }
        }
        body(q)
    }

    /// National numbers with a trunk `0`: `020 7946 0958`, `07700 900123`, `030 12345678`
    /// (space-separated groups, 10-11 digits), `01 23 45 67 89` / `01.23.45.67.89` (French
    /// pairs). Unseparated or dash-separated forms are not matched (order and product codes).
    fn trunk(&self, q: usize) -> Option<usize> {
        if !matches!(self.at(q + 1), b'1'..=b'9') {
            return None;
        }
        let first = self.digits(q);
        let sep = self.at(q + first);
        if sep == b'.' {
            // Exactly five pairs.
            let mut at = q;
            for k in 0..5 {
                if self.digits(at) != 2 || (k < 4 && self.at(at + 2) != b'.') {
                    return None;
                }
                at += if k < 4 { 3 } else { 2 };
            }
            return self.boundary(at).then_some(at);
        }
        if sep != b' ' || !(2..=5).contains(&first) {
            return None;
        }
        let (mut at, mut total, mut groups, mut end) = (q + first, first, 1, None);
        while self.at(at) == b' ' {
            let g = self.digits(at + 1);
            if !(2..=8).contains(&g) || total + g > 11 {
                break;
            }
            at += 1 + g;
            total += g;
            groups += 1;
            if total >= 10 && self.boundary(at) {
                end = Some(at);
            }
        }
        if groups < 2 {
            return None;
        }
        end
    }
}

/// Issuer prefixes and lengths of the card networks in use, so that a long number that merely
/// passes Luhn (one in ten do) is not taken for a card unless it also looks like one.
fn card_prefix_ok(d: &[u8]) -> bool {
    let len = d.len();
    let pre = |k: usize| d.iter().take(k).fold(0u32, |a, b| a * 10 + u32::from(*b));
    let (p1, p2, p3, p4, p6) = (pre(1), pre(2), pre(3), pre(4), pre(6));
    match p1 {
        4 => matches!(len, 13 | 16 | 19),                          // Visa
        5 if (51..=55).contains(&p2) => len == 16,                 // Mastercard
        5 => matches!(p4, 5018 | 5020 | 5038 | 5893) && len >= 13, // Maestro
        2 if (2221..=2720).contains(&p4) => len == 16,             // Mastercard 2-series
        2 => (2200..=2204).contains(&p4) && len >= 16,             // Mir
        3 if p2 == 34 || p2 == 37 => len == 15,                    // Amex
        3 if (3528..=3589).contains(&p4) => len >= 16,             // JCB
        3 => ((300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39)) && len >= 14, // Diners
        6 if p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) => len >= 16, // Discover
        6 if (622_126..=622_925).contains(&p6) || p2 == 62 => len >= 16, // UnionPay
        6 => matches!(p4, 6304 | 6759 | 6761 | 6762 | 6763) && len >= 13, // Maestro
        _ => false,
    }
}

fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

// ---------------------------------------------------------------------------------------------
// IBAN

/// IBAN lengths by country (SWIFT IBAN registry).
const IBAN_LENGTHS: &[(&[u8; 2], u8)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

fn iban_len(cc: &[u8]) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(c, _)| c.as_slice() == cc)
        .map(|(_, l)| usize::from(*l))
}

fn ibans(p: &Piece<'_>, out: &mut Vec<Cand>) {
    let n = p.len();
    let mut i = 0;
    while i + 15 <= n {
        let ok_start = p.at(i).is_ascii_uppercase()
            && p.at(i + 1).is_ascii_uppercase()
            && p.at(i + 2).is_ascii_digit()
            && p.at(i + 3).is_ascii_digit()
            && !is_alnum(p.prev(i));
        let len = if ok_start {
            iban_len(p.slice(i, i + 2))
        } else {
            None
        };
        let Some(len) = len else {
            i += 1;
            continue;
        };
        // Compact, or in groups of four separated by single spaces.
        let spaced = p.at(i + 4) == b' ';
        let mut chars = [0u8; 34];
        let (mut q, mut got) = (i, 0usize);
        while got < len {
            let c = p.at(q);
            if c.is_ascii_uppercase() || c.is_ascii_digit() {
                if let Some(slot) = chars.get_mut(got) {
                    *slot = c;
                }
                got += 1;
                q += 1;
            } else if spaced && c == b' ' && got > 0 && got % 4 == 0 && p.at(q - 1) != b' ' {
                q += 1;
            } else {
                break;
            }
        }
        let boundary = match p.next(q) {
            None => false,
            Some(b) => !is_alnum(b),
        };
        if got == len && boundary && chars.get(..len).is_some_and(iban_checksum_ok) {
            out.push(Cand {
                s: i,
                e: q,
                det: Detector::Iban,
                open: None,
            });
            i = q;
        } else {
            i += 1;
        }
    }
}

/// ISO 13616 mod-97: move the first four characters to the end, letters become 10..35.
fn iban_checksum_ok(chars: &[u8]) -> bool {
    let (head, tail) = chars.split_at(4.min(chars.len()));
    let mut rem = 0u32;
    for &c in tail.iter().chain(head) {
        let v = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

// ---------------------------------------------------------------------------------------------
// Secrets

/// What a secret's body must contain besides its length, so that placeholders
/// (`sk-xxxxxxxx…`, `ghp_XXXX…`) do not count.
#[derive(Clone, Copy)]
enum Needs {
    DigitAndLetter,
    MixedCase,
    /// AWS key ids: the 4-letter prefix and exactly 16 base32 characters (`A-Z`, `2-7`) are
    /// specific enough; about 3.6 % of real ids have no digit at all, so none is required.
    Base32,
}

struct Prefixed {
    prefix: &'static [u8],
    det: Detector,
    body: Body,
    min: usize,
    /// Fixed-length formats have `min == max`: a longer run is glued to something else.
    max: usize,
    needs: Needs,
}

const VAR: usize = 512;

/// Longest prefix first where one is the start of another (`sk-ant-` before `sk-`).
const PREFIXED: &[Prefixed] = &[
    aws(b"AKIA"),
    aws(b"ASIA"),
    aws(b"ABIA"),
    aws(b"ACCA"),
    p(b"AIza", Detector::GoogleApiKey, Body::Base64Url, 35, 35),
    p(b"ghp_", Detector::GithubToken, Body::Alnum, 36, VAR),
    p(b"gho_", Detector::GithubToken, Body::Alnum, 36, VAR),
    p(b"ghu_", Detector::GithubToken, Body::Alnum, 36, VAR),
    p(b"ghs_", Detector::GithubToken, Body::Alnum, 36, VAR),
    p(b"ghr_", Detector::GithubToken, Body::Alnum, 36, VAR),
    p(
        b"github_pat_",
        Detector::GithubToken,
        Body::AlnumUnder,
        50,
        VAR,
    ),
    p(b"glpat-", Detector::GitlabToken, Body::Base64Url, 20, VAR),
    p(b"xoxb-", Detector::SlackToken, Body::AlnumDash, 20, VAR),
    p(b"xoxp-", Detector::SlackToken, Body::AlnumDash, 20, VAR),
    p(b"xoxa-", Detector::SlackToken, Body::AlnumDash, 20, VAR),
    p(b"xoxr-", Detector::SlackToken, Body::AlnumDash, 20, VAR),
    p(b"xoxs-", Detector::SlackToken, Body::AlnumDash, 20, VAR),
    p(b"xoxe-", Detector::SlackToken, Body::AlnumDash, 20, VAR),
    p(b"sk_live_", Detector::StripeKey, Body::Alnum, 16, VAR),
    p(b"sk_test_", Detector::StripeKey, Body::Alnum, 16, VAR),
    p(b"rk_live_", Detector::StripeKey, Body::Alnum, 16, VAR),
    p(b"rk_test_", Detector::StripeKey, Body::Alnum, 16, VAR),
    p(b"sk-ant-", Detector::AnthropicKey, Body::Base64Url, 32, VAR),
    p(b"sk-", Detector::OpenaiKey, Body::Base64Url, 32, VAR),
    Prefixed {
        prefix: b"hf_",
        det: Detector::HuggingfaceToken,
        body: Body::Alnum,
        min: 30,
        max: 40,
        needs: Needs::MixedCase,
    },
    p(b"npm_", Detector::NpmToken, Body::Alnum, 36, 36),
];

const fn aws(prefix: &'static [u8]) -> Prefixed {
    Prefixed {
        prefix,
        det: Detector::AwsKey,
        body: Body::UpperDigit,
        min: 16,
        max: 16,
        needs: Needs::Base32,
    }
}

const fn p(prefix: &'static [u8], det: Detector, body: Body, min: usize, max: usize) -> Prefixed {
    Prefixed {
        prefix,
        det,
        body,
        min,
        max,
        needs: Needs::DigitAndLetter,
    }
}

/// First bytes of the prefixes, for a cheap filter before comparing.
fn may_start_secret(b: u8) -> bool {
    matches!(b, b'A' | b'g' | b'x' | b's' | b'r' | b'h' | b'n' | b'e')
}

/// Whether a long word may hold a prefixed secret, a JWT or an IBAN: one of their first two
/// bytes (`AK`, `gh`, `sk`, `ey`, `DE89`…) at the word's start or after punctuation. Long
/// identifiers and paths in code have none, and skip the detectors.
pub(super) fn may_hold_secret(word: &[u8]) -> bool {
    // Eight bytes at a time: only letters at a boundary (the word's start, or after a byte that
    // is not alphanumeric) can start a prefix, and a word of code has few of them.
    let mut i = 0;
    let mut prev_alnum = false;
    while let Some(b8) = word.get(i..i + 8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(b8);
        let x = u64::from_le_bytes(a);
        let letters = letter_bytes(x);
        let alnum = letters | digit_bytes(x);
        let after_alnum = alnum << 8 | if prev_alnum { 0x80 } else { 0 };
        let mut cand = letters & !after_alnum;
        while cand != 0 {
            if secret_pair_at(word, i + (cand.trailing_zeros() / 8) as usize) {
                return true;
            }
            cand &= cand - 1;
        }
        prev_alnum = alnum >> 63 != 0;
        i += 8;
    }
    // The last few bytes one at a time.
    let mut boundary = !prev_alnum;
    for (j, &b) in word.iter().enumerate().skip(i) {
        let f = SECRET_BYTE.get(usize::from(b)).copied().unwrap_or(0);
        if boundary && f & SB_FIRST != 0 && secret_pair_at(word, j) {
            return true;
        }
        boundary = f & SB_ALNUM == 0;
    }
    false
}

/// Whether one of the first bytes of a secret or IBAN starts at `i` (`AK`, `gh`, `sk`, `ey`,
/// `DE89`…).
#[inline]
fn secret_pair_at(word: &[u8], i: usize) -> bool {
    let b = word.get(i).copied().unwrap_or(0);
    let next = word.get(i + 1).copied().unwrap_or(0);
    match (b, next) {
        (b'A', b'K' | b'S' | b'B' | b'C' | b'I')
        | (b'g', b'h' | b'i' | b'l')
        | (b'x', b'o')
        | (b's' | b'r', b'k')
        | (b'h', b'f')
        | (b'n', b'p')
        | (b'e', b'y') => true,
        (b'A'..=b'Z', b'A'..=b'Z') => {
            word.get(i + 2).is_some_and(u8::is_ascii_digit)
                && word.get(i + 3).is_some_and(u8::is_ascii_digit)
        }
        _ => false,
    }
}

pub(super) const ONES: u64 = 0x0101_0101_0101_0101;
pub(super) const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `x` (eight bytes, little-endian) that is an ASCII letter, with
/// no per-byte branch: case folded with `| 0x20`, then two carry-free additions test the range
/// `a..=z`; bytes with the high bit set are never letters.
#[inline]
pub(super) fn letter_bytes(x: u64) -> u64 {
    let y = (x | (ONES * 0x20)) & !HIGH;
    let ge_a = y + ONES * (0x80 - u64::from(b'a'));
    let gt_z = y + ONES * (0x80 - u64::from(b'z') - 1);
    ge_a & !gt_z & !x & HIGH
}

/// The high bit of each byte of `x` that is an ASCII digit (as [`letter_bytes`]).
#[inline]
fn digit_bytes(x: u64) -> u64 {
    let y = x & !HIGH;
    let ge_0 = y + ONES * (0x80 - u64::from(b'0'));
    let gt_9 = y + ONES * (0x80 - u64::from(b'9') - 1);
    ge_0 & !gt_9 & !x & HIGH
}

const SB_ALNUM: u8 = 1;
/// A byte a pair tested in [`may_hold_secret`] starts with: an upper-case letter (`AK`, `AI`,
/// IBAN country codes) or `g`, `x`, `s`, `r`, `h`, `n`, `e`.
const SB_FIRST: u8 = 2;

// Evaluated at compile time: an out-of-range index would fail the build, not panic at run time.
#[allow(clippy::indexing_slicing)]
static SECRET_BYTE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let mut f = 0;
        if c.is_ascii_alphanumeric() {
            f |= SB_ALNUM;
        }
        if c.is_ascii_uppercase() || matches!(c, b'g' | b'x' | b's' | b'r' | b'h' | b'n' | b'e') {
            f |= SB_FIRST;
        }
        t[b] = f;
        b += 1;
    }
    t
};

/// `text.starts_with(prefix)` for short prefixes, without a call to `memcmp`.
#[inline]
pub(super) fn starts_with(text: &[u8], prefix: &[u8]) -> bool {
    text.len() >= prefix.len() && text.iter().zip(prefix).all(|(a, b)| a == b)
}

fn has_needs(body: &[u8], needs: Needs) -> bool {
    match needs {
        Needs::DigitAndLetter => {
            body.iter().any(u8::is_ascii_digit) && body.iter().any(u8::is_ascii_alphabetic)
        }
        Needs::MixedCase => {
            body.iter().any(u8::is_ascii_uppercase) && body.iter().any(u8::is_ascii_lowercase)
        }
        Needs::Base32 => body
            .iter()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(b)),
    }
}

fn secrets(p: &Piece<'_>, en: DetectorSet, out: &mut Vec<Cand>) {
    let n = p.len();
    let first = out.len();
    let mut i = 0;
    while i < n {
        let b = p.at(i);
        if !may_start_secret(b) || is_alnum(p.prev(i)) {
            i += 1;
            continue;
        }
        if let Some(c) = jwt(p, i, en).or_else(|| prefixed(p, i, en)) {
            out.push(c);
            i = c.e.max(i + 1);
            continue;
        }
        i += 1;
    }
    // `Bearer <token>`: the whole next word, unless a specific format already matched it.
    if p.bearer
        && en.contains(Detector::BearerToken)
        && !out
            .get(first..)
            .unwrap_or_default()
            .iter()
            .any(|c| c.s == 0)
    {
        let len = p.run(0, n, Body::Token);
        let tok = p.slice(0, len);
        let decided = len >= 16 && has_needs(tok, Needs::DigitAndLetter);
        if decided && len == n && !p.complete {
            out.push(Cand {
                s: 0,
                e: n,
                det: Detector::BearerToken,
                open: Some(Body::Token),
            });
        } else if decided && p.next(len).is_some() {
            out.push(Cand {
                s: 0,
                e: len,
                det: Detector::BearerToken,
                open: None,
            });
        }
    }
}

fn prefixed(p: &Piece<'_>, i: usize, en: DetectorSet) -> Option<Cand> {
    let n = p.len();
    let rest = p.text.get(i..)?;
    let f = PREFIXED
        .iter()
        .find(|f| starts_with(rest, f.prefix) && en.contains(f.det))?;
    let b0 = i + f.prefix.len();
    let len = p.run(b0, f.max + 1, f.body);
    let body = p.slice(b0, b0 + len);
    if len < f.min || len > f.max || !has_needs(body, f.needs) {
        return None;
    }
    let e = b0 + len;
    if e == n && !p.complete {
        // Runs into the next piece: a variable-length secret is decided and swallows the rest;
        // a fixed-length one is judged again in the next piece, which overlaps this one.
        return (f.max == VAR).then_some(Cand {
            s: i,
            e,
            det: f.det,
            open: Some(f.body),
        });
    }
    Some(Cand {
        s: i,
        e,
        det: f.det,
        open: None,
    })
}

/// `eyJ<header>.eyJ<payload>[.<signature>[.…]]`: base64url JSON objects. Decided once the
/// payload has 10 characters.
fn jwt(p: &Piece<'_>, i: usize, en: DetectorSet) -> Option<Cand> {
    if !en.contains(Detector::Jwt) || !starts_with(p.text.get(i..)?, b"eyJ") {
        return None;
    }
    let n = p.len();
    let h = p.run(i, n, Body::Base64Url);
    if h < 13 || p.at(i + h) != b'.' || !starts_with(p.text.get(i + h + 1..)?, b"eyJ") {
        return None;
    }
    let pl = p.run(i + h + 1, n, Body::Base64Url);
    if pl < 13 {
        return None;
    }
    let mut e = i + h + 1 + pl;
    let mut parts = 2;
    while p.at(e) == b'.' && parts < 5 {
        let seg = p.run(e + 1, n, Body::Base64Url);
        if seg == 0 && parts > 2 {
            break;
        }
        e += 1 + seg;
        parts += 1;
    }
    if e == n && !p.complete {
        return Some(Cand {
            s: i,
            e,
            det: Detector::Jwt,
            open: Some(Body::Jwt),
        });
    }
    Some(Cand {
        s: i,
        e,
        det: Detector::Jwt,
        open: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-at-a-time definition [`may_hold_secret`] must agree with.
    fn may_hold_secret_naive(word: &[u8]) -> bool {
        (0..word.len())
            .any(|i| (i == 0 || !word[i - 1].is_ascii_alphanumeric()) && secret_pair_at(word, i))
    }

    proptest::proptest! {
        #[test]
        fn the_secret_prefilter_agrees_with_a_byte_at_a_time_scan(
            word in proptest::collection::vec(proptest::prop_oneof![
                proptest::prelude::any::<u8>(),
                proptest::prelude::Just(b'_'),
                proptest::prelude::Just(b'A'),
                proptest::prelude::Just(b'K'),
                proptest::prelude::Just(b'g'),
                proptest::prelude::Just(b'h'),
                proptest::prelude::Just(b'1'),
                proptest::prelude::Just(b'.'),
            ], 0..40)
        ) {
            proptest::prop_assert_eq!(may_hold_secret(&word), may_hold_secret_naive(&word));
        }
    }

    fn flags(text: &[u8]) -> u16 {
        text.iter()
            .fold(0, |f, b| f | super::super::scan::class(*b))
    }

    fn found(text: &str) -> Vec<(Detector, &str)> {
        let p = Piece {
            text: text.as_bytes(),
            before: 0,
            after: 0,
            complete: true,
            flags: flags(text.as_bytes()),
            bearer: false,
        };
        let mut out = Vec::new();
        scan(&p, DetectorSet::ALL, &mut out);
        out.iter().map(|c| (c.det, &text[c.s..c.e])).collect()
    }

    #[test]
    fn luhn_and_card_prefixes_accept_test_numbers_and_reject_near_misses() {
        let digits = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<_>>();
        for ok in [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
            "3530111333300000",
            "2223003122003222",
        ] {
            assert!(luhn(&digits(ok)) && card_prefix_ok(&digits(ok)), "{ok}");
        }
        assert!(!luhn(&digits("4111111111111112")));
        // Passes Luhn, but no network issues 16-digit numbers starting with 1.
        assert!(luhn(&digits("1234567812345670")));
        assert!(!card_prefix_ok(&digits("1234567812345670")));
    }

    #[test]
    fn aws_key_ids_without_any_digit_are_found_too() {
        // Base32 ids: about 3.6 % of real ones have no digit (found by the e2e test's padding).
        let body = br#"{"t":"access key AKIAKVALWBMXCNYDOZEP\n2025"}"#;
        let set =
            super::super::GuardSet::compile(Some(&super::super::RawRedact::default()), None, "g")
                .unwrap();
        let guard = set
            .for_call("s", "t", super::super::Traffic::Result)
            .unwrap();
        let mut out = Vec::new();
        guard.apply(body, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"t":"access key [REDACTED:aws-key]\n2025"}"#
        );
        // A digit outside base32 (0, 1, 8, 9) is not an AWS id.
        let mut out = Vec::new();
        guard.apply(br#"{"t":"AKIAKVALWBMXCNYDOZE0"}"#, &mut out);
        assert_eq!(out, br#"{"t":"AKIAKVALWBMXCNYDOZE0"}"#);
    }

    #[test]
    fn iban_checksums_follow_iso_13616() {
        assert!(iban_checksum_ok(b"DE89370400440532013000"));
        assert!(iban_checksum_ok(b"GB82WEST12345698765432"));
        assert!(!iban_checksum_ok(b"DE89370400440532013001"));
    }

    #[test]
    fn each_detector_finds_its_own_format_in_a_word() {
        let cases: &[(&str, Detector, &str)] = &[
            ("alice@example.com", Detector::Email, "alice@example.com"),
            (
                "<mailto:bob.smith+tag@mail.example.co.uk>.",
                Detector::Email,
                "bob.smith+tag@mail.example.co.uk",
            ),
            ("4111-1111-1111-1111", Detector::Card, "4111-1111-1111-1111"),
            ("4111 1111 1111 1111", Detector::Card, "4111 1111 1111 1111"),
            ("card=5555555555554444", Detector::Card, "5555555555554444"),
            ("123-45-6789", Detector::Ssn, "123-45-6789"),
            ("+1 (415) 555-2671", Detector::Phone, "+1 (415) 555-2671"),
            ("+442079460958", Detector::Phone, "+442079460958"),
            ("(415) 555-2671", Detector::Phone, "(415) 555-2671"),
            ("1-800-555-0199", Detector::Phone, "1-800-555-0199"),
            ("020 7946 0958", Detector::Phone, "020 7946 0958"),
            ("01.23.45.67.89", Detector::Phone, "01.23.45.67.89"),
            (
                "DE89 3704 0044 0532 0130 00",
                Detector::Iban,
                "DE89 3704 0044 0532 0130 00",
            ),
            (
                "iban:GB82WEST12345698765432",
                Detector::Iban,
                "GB82WEST12345698765432",
            ),
            (
                "AKIAIOSFODNN7EXAMPLE",
                Detector::AwsKey,
                "AKIAIOSFODNN7EXAMPLE",
            ),
            (
                "OPENAI_API_KEY=sk-proj-4fGh7Jk9LmN2pQ5rStUv8WxYz1AbCdEf",
                Detector::OpenaiKey,
                "sk-proj-4fGh7Jk9LmN2pQ5rStUv8WxYz1AbCdEf",
            ),
        ];
        for (text, det, want) in cases {
            assert_eq!(found(text), vec![(*det, *want)], "{text}");
        }
    }

    #[test]
    fn numbers_that_only_look_like_pii_do_not_match() {
        for text in [
            "2024-01-15",
            "192.168.100.200",
            "10.0.19041.1234",
            "1718035200000",
            "4111111111111112",
            "v4111111111111111",
            "415 555 2671",
            "000-12-3456",
            "666-12-3456",
            "0123-4567-89",
            "+20",
            "logo@2x.png",
            "git@github.com:owner/repo.git",
            "user@localhost",
            "react@18.2.0",
        ] {
            assert_eq!(found(text), vec![], "{text}");
        }
    }
}
