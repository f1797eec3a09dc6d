//! Prices pieces: a linear model over a few features of each piece, with one parameter table
//! per encoding (fitted against the real tokenizer by `calibrate.rs`, stored in `tables.rs`).
//!
//! A piece's price is `Σ params[feature] × count`, in thousandths of a token, so sums are exact
//! integers: the total does not depend on how the text was chunked or in what order pieces were
//! priced.

use super::scan::{prefix, script, Blob, InRun, Piece, Sink, Span, Word};

/// Longest piece (in letters, spaces, …) with its own table entry; longer pieces extrapolate
/// linearly from it.
pub(super) const LEN: usize = 16;
/// Word shapes of all-ASCII words; the last two are the shapes used inside blob runs.
pub(super) const SHAPE_LOWER: usize = 0;
pub(super) const SHAPE_CAPITALIZED: usize = 1;
pub(super) const SHAPE_UPPER: usize = 2;
pub(super) const SHAPE_MIXED: usize = 3;
pub(super) const SHAPE_BASE64: usize = 4;
pub(super) const SHAPE_HEX: usize = 5;
pub(super) const SHAPES: usize = 6;
const NON_ASCII_SCRIPTS: usize = script::COUNT - 1;
/// Punctuation pieces: tables by ASCII symbol count (0..=8) for 0..=3 quote characters.
pub(super) const PUNCT_LEN: usize = 8;
pub(super) const PUNCT_QUOTES: usize = 4;
pub(super) const NEWLINE_LEN: usize = 8;

// Parameter layout. Every slot is one feature; the model is `Σ params[slot] × count`.
pub(super) const W_ASCII: usize = 0;
pub(super) const W_ASCII_X: usize = W_ASCII + SHAPES * LEN;
pub(super) const W_SCRIPT: usize = W_ASCII_X + SHAPES;
pub(super) const W_SCRIPT_X: usize = W_SCRIPT + NON_ASCII_SCRIPTS * LEN;
pub(super) const W_PREFIX: usize = W_SCRIPT_X + NON_ASCII_SCRIPTS;
pub(super) const W_CLUSTER: usize = W_PREFIX + prefix::COUNT * 2;
pub(super) const W_RARE: usize = W_CLUSTER + 1;
pub(super) const W_FOREIGN: usize = W_RARE + 1;
pub(super) const DIGITS: usize = W_FOREIGN + LEN;
pub(super) const SPACES: usize = DIGITS + 1;
pub(super) const SPACES_X: usize = SPACES + LEN;
pub(super) const NEWLINES: usize = SPACES_X + 1;
pub(super) const NEWLINES_X: usize = NEWLINES + NEWLINE_LEN;
pub(super) const PUNCT: usize = NEWLINES_X + 1;
pub(super) const PUNCT_X: usize = PUNCT + PUNCT_QUOTES * (PUNCT_LEN + 1);
pub(super) const PUNCT_BRACKET: usize = PUNCT_X + 1;
pub(super) const PUNCT_UTF8: usize = PUNCT_BRACKET + 1;
pub(super) const PUNCT_SPACE: usize = PUNCT_UTF8 + 4;
pub(super) const PUNCT_TRAIL: usize = PUNCT_SPACE + 1;
pub(super) const PUNCT_STRUCTURAL: usize = PUNCT_TRAIL + 1;
/// Number of parameters per encoding.
pub(super) const PARAMS: usize = PUNCT_STRUCTURAL + 1;

/// Everything the estimator knows about one encoding.
#[derive(Debug)]
pub(super) struct Tables {
    /// Price per feature slot, in thousandths of a token.
    pub params: [i32; PARAMS],
    /// The vocabulary's tokens of 2–8 bytes made of JSON structure (` ?["{}[\]:,]+[\r\n]*`),
    /// packed big-endian and left-aligned into `u64`s, sorted. Such punctuation is so common
    /// in tool output, and its merges so irregular (`":{"` is one token, `"},"` two), that a
    /// length-based price misses by a third; 200 entries per encoding fix it.
    pub structural: &'static [u64],
}

/// Packs up to 8 bytes the way [`Tables::structural`] stores them.
pub(super) fn pack(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(8)
        .enumerate()
        .fold(0u64, |k, (i, &b)| k | (u64::from(b) << (56 - 8 * i)))
}

/// Tokens of a structural punctuation piece by greedy longest match against the vocabulary:
/// BPE on such short pieces nearly always ends where greedy matching does.
fn structural_tokens(key: &[u8], vocab: &[u64]) -> u32 {
    let mut rest = key;
    let mut tokens = 0;
    while !rest.is_empty() {
        let longest = (2..=rest.len())
            .rev()
            .find(|&n| {
                vocab
                    .binary_search(&pack(rest.get(..n).unwrap_or_default()))
                    .is_ok()
            })
            .unwrap_or(1);
        rest = rest.get(longest..).unwrap_or_default();
        tokens += 1;
    }
    tokens
}

/// Price of a piece, in thousandths of a token.
pub(super) type Milli = i64;

#[inline]
fn len_slot(n: u32, max: usize) -> (usize, u32) {
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > max {
        (max - 1, u32::try_from(n - max).unwrap_or(u32::MAX))
    } else {
        (n.saturating_sub(1), 0)
    }
}

#[inline]
fn shape(w: &Word) -> usize {
    if w.uppers == 0 {
        SHAPE_LOWER
    } else if !w.lower_seen {
        SHAPE_UPPER
    } else if w.uppers == 1 && w.first_upper {
        SHAPE_CAPITALIZED
    } else {
        SHAPE_MIXED
    }
}

/// Calls `f(slot, count)` for each feature of `piece`; `blob` says what kind of run an
/// all-ASCII word is part of.
pub(super) fn features(
    tables: &Tables,
    piece: Piece<'_>,
    blob: Blob,
    mut f: impl FnMut(usize, u32),
) {
    match piece {
        Piece::Word(w) => {
            let (slot, extra) = len_slot(w.letters, LEN);
            let ascii = w.script == script::ASCII;
            if ascii {
                let s = match blob {
                    Blob::No => shape(w),
                    Blob::Base64 => SHAPE_BASE64,
                    Blob::Hex => SHAPE_HEX,
                };
                f(W_ASCII + s * LEN + slot, 1);
                if extra > 0 {
                    f(W_ASCII_X + s, extra);
                }
                if blob == Blob::No {
                    if w.clusters > 0 {
                        f(W_CLUSTER, w.clusters);
                    }
                    if w.rare > 0 {
                        f(W_RARE, w.rare);
                    }
                    if w.foreign {
                        f(W_FOREIGN + slot, 1);
                    }
                }
            } else {
                let s = usize::from(w.script.saturating_sub(1)).min(NON_ASCII_SCRIPTS - 1);
                f(W_SCRIPT + s * LEN + slot, 1);
                if extra > 0 {
                    f(W_SCRIPT_X + s, extra);
                }
            }
            if w.prefix != prefix::NONE {
                let p = usize::from(w.prefix).min(prefix::COUNT - 1);
                f(W_PREFIX + p * 2 + usize::from(!ascii), 1);
            }
        }
        // `\p{N}{1,3}`: every group of up to three digits is one piece.
        Piece::Digits(n) => f(DIGITS, n.div_ceil(3)),
        Piece::Spaces(n) => {
            let (slot, extra) = len_slot(n, LEN);
            f(SPACES + slot, 1);
            if extra > 0 {
                f(SPACES_X, extra);
            }
        }
        Piece::Newlines(n) => {
            let (slot, extra) = len_slot(n, NEWLINE_LEN);
            f(NEWLINES + slot, 1);
            if extra > 0 {
                f(NEWLINES_X, extra);
            }
        }
        Piece::Punct(p) if p.structural => {
            let key = p.key.get(..usize::from(p.key_len)).unwrap_or_default();
            f(PUNCT_STRUCTURAL, structural_tokens(key, tables.structural));
        }
        Piece::Punct(p) => {
            let n = usize::try_from(p.ascii).unwrap_or(usize::MAX);
            let q = usize::try_from(p.quotes)
                .unwrap_or(usize::MAX)
                .min(PUNCT_QUOTES - 1);
            f(PUNCT + q * (PUNCT_LEN + 1) + n.min(PUNCT_LEN), 1);
            if n > PUNCT_LEN {
                f(PUNCT_X, u32::try_from(n - PUNCT_LEN).unwrap_or(u32::MAX));
            }
            if p.brackets > 0 {
                f(PUNCT_BRACKET, p.brackets);
            }
            for (i, &k) in p.utf8.iter().enumerate() {
                if k > 0 {
                    f(PUNCT_UTF8 + i, k);
                }
            }
            if p.space {
                f(PUNCT_SPACE, 1);
            }
            if p.trail > 0 {
                f(PUNCT_TRAIL, p.trail);
            }
        }
    }
}

const BLOBS: [Blob; 3] = [Blob::No, Blob::Base64, Blob::Hex];

/// Price of a piece under `params`.
pub(super) fn price(tables: &Tables, piece: Piece<'_>, blob: Blob) -> Milli {
    let mut total: Milli = 0;
    features(tables, piece, blob, |slot, count| {
        let p = tables.params.get(slot).copied().unwrap_or(0);
        total += Milli::from(p) * Milli::from(count);
    });
    total
}

#[inline]
fn param(tables: &Tables, slot: usize) -> Milli {
    Milli::from(tables.params.get(slot).copied().unwrap_or(0))
}

/// Prices of a word as an ordinary word, as part of a base64 run and of a hex run: the same
/// sums as [`features`] gives for each, computed together because every word inside a run of
/// letters and digits needs all three until the run ends.
#[inline]
pub(super) fn word_prices(tables: &Tables, w: &Word) -> [Milli; 3] {
    BLOBS.map(|blob| word_price(tables, w, blob))
}

/// Price of a word in a run of kind `blob` ([`Blob::No`] for ordinary text); the same sum
/// as [`features`] gives.
#[inline]
pub(super) fn word_price(tables: &Tables, w: &Word, blob: Blob) -> Milli {
    let (slot, extra) = len_slot(w.letters, LEN);
    let extra = Milli::from(extra);
    let mut p = 0;
    if w.prefix != prefix::NONE {
        let k = usize::from(w.prefix).min(prefix::COUNT - 1);
        p += param(
            tables,
            W_PREFIX + k * 2 + usize::from(w.script != script::ASCII),
        );
    }
    if w.script != script::ASCII {
        let s = usize::from(w.script.saturating_sub(1)).min(NON_ASCII_SCRIPTS - 1);
        return p
            + param(tables, W_SCRIPT + s * LEN + slot)
            + extra * param(tables, W_SCRIPT_X + s);
    }
    let s = match blob {
        Blob::No => shape(w),
        Blob::Base64 => {
            return p
                + param(tables, W_ASCII + SHAPE_BASE64 * LEN + slot)
                + extra * param(tables, W_ASCII_X + SHAPE_BASE64)
        }
        Blob::Hex => {
            return p
                + param(tables, W_ASCII + SHAPE_HEX * LEN + slot)
                + extra * param(tables, W_ASCII_X + SHAPE_HEX)
        }
    };
    p += param(tables, W_ASCII + s * LEN + slot)
        + extra * param(tables, W_ASCII_X + s)
        + Milli::from(w.clusters) * param(tables, W_CLUSTER)
        + Milli::from(w.rare) * param(tables, W_RARE);
    if w.foreign {
        p += param(tables, W_FOREIGN + slot);
    }
    p
}

/// The estimating sink: sums piece prices. Pieces inside a run of ASCII letters and digits are
/// priced both as words and as blob, and the run's end decides which sum counts.
#[derive(Debug, Clone)]
pub(super) struct Estimate {
    tables: &'static Tables,
    total: Milli,
    /// The current run's pieces priced as words, as base64, as hex.
    run: [Milli; 3],
    /// Recently priced structural punctuation (`":"`, `","`, …), by packed key: JSON repeats
    /// a handful of them, and each lookup in the vocabulary costs several binary searches.
    structural: [(u64, u32); STRUCTURAL_CACHE],
}

const STRUCTURAL_CACHE: usize = 8;

impl Estimate {
    pub fn new(tables: &'static Tables) -> Self {
        Estimate {
            tables,
            total: 0,
            run: [0; 3],
            structural: [(0, 0); STRUCTURAL_CACHE],
        }
    }

    /// Whole tokens so far (rounded to nearest), and resets the sum.
    pub fn take(&mut self) -> u64 {
        let milli = self.total.max(0);
        self.total = 0;
        self.run = [0; 3];
        u64::try_from((milli + 500) / 1000).unwrap_or(0)
    }
}

impl Sink for Estimate {
    #[inline(always)]
    fn piece(&mut self, piece: Piece<'_>, _span: Span, in_run: InRun) {
        match (piece, in_run) {
            (Piece::Word(w), InRun::Open) => {
                let prices = word_prices(self.tables, w);
                for (sum, p) in self.run.iter_mut().zip(prices) {
                    *sum += p;
                }
            }
            (Piece::Word(w), InRun::Closed(blob)) => self.total += word_price(self.tables, w, blob),
            (Piece::Word(w), InRun::No) => self.total += word_price(self.tables, w, Blob::No),
            (Piece::Digits(n), _) => {
                let p = Milli::from(n.div_ceil(3)) * param(self.tables, DIGITS);
                if in_run == InRun::Open {
                    for sum in &mut self.run {
                        *sum += p;
                    }
                } else {
                    self.total += p;
                }
            }
            (Piece::Punct(p), _) if p.structural => {
                let key = p.key.get(..usize::from(p.key_len)).unwrap_or_default();
                let packed = pack(key);
                // Packed keys of non-empty pieces are never 0, the empty slot.
                let slot = (packed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61) as usize;
                let tokens = match self.structural.get(slot) {
                    Some(&(k, t)) if k == packed => t,
                    _ => {
                        let t = structural_tokens(key, self.tables.structural);
                        if let Some(entry) = self.structural.get_mut(slot) {
                            *entry = (packed, t);
                        }
                        t
                    }
                };
                self.total += Milli::from(tokens) * param(self.tables, PUNCT_STRUCTURAL);
            }
            // Other pieces never end inside a run of letters and digits.
            _ => self.total += price(self.tables, piece, Blob::No),
        }
    }

    #[inline(always)]
    fn end_run(&mut self, blob: Blob) {
        let i = BLOBS.iter().position(|&b| b == blob).unwrap_or(0);
        self.total += self.run.get(i).copied().unwrap_or(0);
        self.run = [0; 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_prices_agree_with_the_features_calibration_fits() {
        let tables = &super::super::tables::O200K;
        let mut checked = 0;
        for script in 0..=script::OTHER {
            for prefix in 0..prefix::COUNT as u8 {
                for letters in [1u32, 2, 5, 16, 17, 40] {
                    for (uppers, first_upper, lower_seen) in [
                        (0, false, true),
                        (1, true, true),
                        (3, true, false),
                        (2, false, true),
                    ] {
                        for (clusters, rare, foreign) in [(0, 0, false), (2, 1, true)] {
                            let w = Word {
                                prefix,
                                letters,
                                script,
                                uppers,
                                first_upper,
                                lower_seen,
                                clusters,
                                rare,
                                foreign,
                                ..Word::default()
                            };
                            let fast = word_prices(tables, &w);
                            for (i, blob) in BLOBS.into_iter().enumerate() {
                                assert_eq!(word_price(tables, &w, blob), fast[i]);
                            }
                            for (i, blob) in BLOBS.into_iter().enumerate() {
                                assert_eq!(
                                    fast[i],
                                    price(tables, Piece::Word(&w), blob),
                                    "{w:?} {blob:?}"
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 1000);
    }
}
