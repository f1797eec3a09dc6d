//! Fits the estimator's price tables against the real tokenizers (tiktoken-rs, a dev-dependency
//! that embeds the vocabularies) on the corpus in `tests/corpus`, and rewrites `tables.rs`.
//!
//! ```text
//! UPDATE_TOKEN_TABLES=1 cargo test -p mcp-gateway-core --release --lib \
//!     tokens::calibrate -- --ignored --nocapture
//! ```
//!
//! Each piece the scanner cuts is encoded on its own by tiktoken; the fit is a weighted ridge
//! regression of those counts on the piece features (`model::features`). Weights give every
//! corpus category the same total, so the large log and CSV files do not drown prose and code;
//! the ridge pulls slots with little or no data towards a hand-set prior instead of leaving
//! them at zero. It also prints a held-out check: fitted on the first half of every file,
//! scored on the second half, and the other way round.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tiktoken_rs::CoreBPE;

use super::model::{self, features, pack, Estimate, Tables, PARAMS};
use super::scan::{script, Blob, InRun, Piece, Scanner, Sink, Span};
use super::Encoding;

/// One corpus text: its category (directory) and name.
pub(super) struct Text {
    pub category: String,
    #[allow(dead_code)] // read by the accuracy report
    pub name: String,
    pub body: String,
}

pub(super) fn corpus() -> Vec<Text> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut texts = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let category = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            texts.push(Text {
                category: category.clone(),
                name: f.file_name().unwrap().to_string_lossy().into_owned(),
                body: std::fs::read_to_string(&f).unwrap(),
            });
        }
    }
    texts
}

pub(super) fn reference(encoding: Encoding) -> CoreBPE {
    match encoding {
        Encoding::O200kBase => tiktoken_rs::o200k_base().unwrap(),
        Encoding::Cl100kBase => tiktoken_rs::cl100k_base().unwrap(),
    }
}

type Features = Vec<(usize, u32)>;

/// Records every piece's features and span; pieces inside a run wait for the run's verdict.
struct Recorder {
    tables: &'static Tables,
    rows: Vec<(Features, Span)>,
    pending: Vec<([Features; 3], Span)>,
}

impl Recorder {
    fn new(tables: &'static Tables) -> Self {
        Recorder {
            tables,
            rows: Vec::new(),
            pending: Vec::new(),
        }
    }

    fn collect(&self, piece: Piece<'_>, blob: Blob) -> Features {
        let mut v = Vec::new();
        features(self.tables, piece, blob, |slot, count| {
            v.push((slot, count))
        });
        v
    }
}

impl Sink for Recorder {
    fn piece(&mut self, piece: Piece<'_>, span: Span, in_run: InRun) {
        match in_run {
            InRun::Open => {
                let each = [Blob::No, Blob::Base64, Blob::Hex].map(|b| self.collect(piece, b));
                self.pending.push((each, span));
            }
            InRun::Closed(blob) => {
                let x = self.collect(piece, blob);
                self.rows.push((x, span));
            }
            InRun::No => {
                let x = self.collect(piece, Blob::No);
                self.rows.push((x, span));
            }
        }
    }

    fn end_run(&mut self, blob: Blob) {
        let i = match blob {
            Blob::No => 0,
            Blob::Base64 => 1,
            Blob::Hex => 2,
        };
        for (mut each, span) in self.pending.drain(..) {
            self.rows.push((std::mem::take(&mut each[i]), span));
        }
    }
}

/// A sample for the fit: features, reference tokens, weight.
struct Sample {
    x: Features,
    y: f64,
    w: f64,
}

fn samples(
    encoding: Encoding,
    tables: &'static Tables,
    bpe: &CoreBPE,
    texts: &[(&str, &str)],
) -> Vec<Sample> {
    let mut per_category: BTreeMap<&str, Vec<(Features, f64)>> = BTreeMap::new();
    for &(category, body) in texts {
        let mut rec = Recorder::new(tables);
        let mut scanner = Scanner::new(encoding.rules());
        scanner.feed(body.as_bytes(), &mut rec);
        scanner.finish(&mut rec);
        let rows = per_category.entry(category).or_default();
        for (x, span) in rec.rows {
            let piece = &body[span.start as usize..span.end as usize];
            let y = bpe.encode_ordinary(piece).len() as f64;
            rows.push((x, y));
        }
    }
    let mut out = Vec::new();
    for rows in per_category.into_values() {
        let total: f64 = rows.iter().map(|r| r.1).sum::<f64>().max(1.0);
        for (x, y) in rows {
            out.push(Sample {
                x,
                y,
                w: 1.0 / total,
            });
        }
    }
    out
}

/// Hand-set starting values (tokens) that the ridge pulls poorly covered slots towards.
fn prior(slot: usize) -> f64 {
    use model::*;
    let len = |base: usize| (slot - base) % LEN + 1;
    if slot < W_ASCII_X {
        let l = len(W_ASCII) as f64;
        match (slot - W_ASCII) / LEN {
            SHAPE_BASE64 | SHAPE_HEX => 0.35 * l + 0.3,
            SHAPE_UPPER => 1.0 + (l - 3.0).max(0.0) * 0.4,
            _ => 1.0 + (l - 6.0).max(0.0) * 0.3,
        }
    } else if slot < W_SCRIPT {
        if slot - W_ASCII_X >= SHAPE_BASE64 {
            0.35
        } else {
            0.3
        }
    } else if slot < W_PREFIX {
        let (s, l) = if slot < W_SCRIPT_X {
            ((slot - W_SCRIPT) / LEN + 1, Some(len(W_SCRIPT) as f64))
        } else {
            (slot - W_SCRIPT_X + 1, None)
        };
        let (base, per) = match u8::try_from(s).unwrap() {
            script::LATIN => (0.6, 0.25),
            script::GREEK | script::CYRILLIC | script::RTL => (0.5, 0.3),
            script::INDIC => (0.5, 0.4),
            script::HANGUL => (0.0, 0.6),
            script::KANA => (0.0, 0.7),
            script::HAN => (0.0, 0.8),
            _ => (0.5, 0.5),
        };
        l.map_or(per, |l| base + per * l)
    } else if slot < W_CLUSTER {
        match (slot - W_PREFIX) / 2 {
            1 => 0.0,
            8 => 0.5,
            _ => 0.3,
        }
    } else if slot == W_CLUSTER {
        0.2
    } else if slot == W_RARE {
        0.1
    } else if slot == DIGITS || (SPACES..SPACES_X).contains(&slot) {
        1.0
    } else if slot == SPACES_X {
        0.05
    } else if (NEWLINES..NEWLINES_X).contains(&slot) {
        1.0
    } else if slot == NEWLINES_X {
        0.1
    } else if (PUNCT..PUNCT_X).contains(&slot) {
        let n = ((slot - PUNCT) % (PUNCT_LEN + 1)) as f64;
        if n == 0.0 {
            0.0
        } else {
            1.0 + (n - 1.0) * 0.3
        }
    } else if slot == PUNCT_X {
        0.3
    } else if (PUNCT_UTF8..PUNCT_UTF8 + 4).contains(&slot) {
        [1.0, 1.0, 1.0, 1.5][slot - PUNCT_UTF8]
    } else if slot == PUNCT_TRAIL {
        0.1
    } else if slot == PUNCT_STRUCTURAL {
        1.0
    } else {
        0.0
    }
}

/// Ridge strength, in units of per-category weight (each category's weights sum to 1).
const RIDGE: f64 = 2e-4;

fn fit(samples: &[Sample]) -> [i32; PARAMS] {
    let n = PARAMS;
    let mut a = vec![0.0f64; n * n];
    let mut b = vec![0.0f64; n];
    for s in samples {
        for &(i, xi) in &s.x {
            b[i] += s.w * f64::from(xi) * s.y;
            for &(j, xj) in &s.x {
                a[i * n + j] += s.w * f64::from(xi) * f64::from(xj);
            }
        }
    }
    for i in 0..n {
        a[i * n + i] += RIDGE;
        b[i] += RIDGE * prior(i);
    }
    let beta = cholesky_solve(&mut a, &b, n);
    let mut out = [0i32; PARAMS];
    for (o, v) in out.iter_mut().zip(beta) {
        *o = (v * 1000.0).round() as i32;
    }
    out
}

fn cholesky_solve(a: &mut [f64], b: &[f64], n: usize) -> Vec<f64> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        let d = d.max(1e-12).sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * n + k] * y[k];
        }
        y[i] = s / a[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in i + 1..n {
            s -= a[k * n + i] * x[k];
        }
        x[i] = s / a[i * n + i];
    }
    x
}

/// The vocabulary's JSON-structure tokens (see [`Tables::structural`]), found by asking the
/// tokenizer about every candidate: each is a single split piece in both encodings, so it is
/// one token exactly when the vocabulary has it.
fn structural_vocab(bpe: &CoreBPE) -> &'static [u64] {
    const CORE: &[u8] = b"\"{}[]:,";
    let mut cores: Vec<Vec<u8>> = vec![Vec::new()];
    let mut all = Vec::new();
    for _ in 0..6 {
        cores = cores
            .iter()
            .flat_map(|c| {
                CORE.iter().map(move |&b| {
                    let mut c = c.clone();
                    c.push(b);
                    c
                })
            })
            .collect();
        all.extend(cores.iter().cloned());
    }
    let mut out = Vec::new();
    for core in all {
        for space in [false, true] {
            for trail in [&b""[..], b"\n", b"\n\n", b"\r\n"] {
                let mut s = Vec::new();
                if space {
                    s.push(b' ');
                }
                s.extend_from_slice(&core);
                s.extend_from_slice(trail);
                if (2..=8).contains(&s.len())
                    && bpe.encode_ordinary(std::str::from_utf8(&s).unwrap()).len() == 1
                {
                    out.push(pack(&s));
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out.leak()
}

fn leak(params: [i32; PARAMS], structural: &'static [u64]) -> &'static Tables {
    Box::leak(Box::new(Tables { params, structural }))
}

/// Per-category (estimate, reference) token sums of `texts` under `tables`.
fn score(
    encoding: Encoding,
    params: &'static Tables,
    bpe: &CoreBPE,
    texts: &[(&str, &str)],
) -> BTreeMap<String, (u64, u64)> {
    let mut by_category: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for &(category, body) in texts {
        let mut scanner = Scanner::new(encoding.rules());
        let mut sink = Estimate::new(params);
        scanner.feed(body.as_bytes(), &mut sink);
        scanner.finish(&mut sink);
        let e = by_category.entry(category.to_owned()).or_default();
        e.0 += sink.take();
        e.1 += bpe.encode_ordinary(body).len() as u64;
    }
    by_category
}

fn report(label: &str, scores: &BTreeMap<String, (u64, u64)>) {
    let (mut est, mut reference) = (0u64, 0u64);
    let mut line = String::new();
    for (category, &(e, r)) in scores {
        est += e;
        reference += r;
        line += &format!(" {category} {:+.1}%", pct(e, r));
    }
    println!("{label}: all {:+.2}% |{line}", pct(est, reference));
}

pub(super) fn pct(est: u64, reference: u64) -> f64 {
    100.0 * (est as f64 - reference as f64) / (reference as f64).max(1.0)
}

/// Splits at the first line break after the middle.
fn halves(body: &str) -> (&str, &str) {
    let mid = body.len() / 2;
    let cut = body.as_bytes()[mid..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(body.len(), |i| mid + i + 1);
    body.split_at(cut)
}

fn render(name: &str, tables: &Tables) -> String {
    let mut s =
        format!("#[rustfmt::skip]\npub(super) static {name}: Tables = Tables {{\n    params: [\n");
    for chunk in tables.params.chunks(12) {
        let row: Vec<String> = chunk.iter().map(|v| v.to_string()).collect();
        s += &format!("        {},\n", row.join(", "));
    }
    s += "    ],\n    structural: &[\n";
    for chunk in tables.structural.chunks(4) {
        let row: Vec<String> = chunk.iter().map(|v| format!("0x{v:016x}")).collect();
        s += &format!("        {},\n", row.join(", "));
    }
    s += "    ],\n};\n";
    s
}

#[test]
#[ignore = "slow; rewrites tables.rs with UPDATE_TOKEN_TABLES=1"]
fn calibrate() {
    let texts = corpus();
    let mut tables = String::from(
        "//! Price tables of the token estimator, in thousandths of a token, one slot per feature\n\
         //! (layout in `model.rs`). Generated by `calibrate.rs` against tiktoken-rs on\n\
         //! `tests/corpus`; do not edit by hand.\n\nuse super::model::Tables;\n\n",
    );
    for encoding in Encoding::ALL {
        let bpe = reference(encoding);
        let all: Vec<(&str, &str)> = texts
            .iter()
            .map(|t| (t.category.as_str(), t.body.as_str()))
            .collect();
        let first: Vec<(&str, &str)> = texts
            .iter()
            .map(|t| (t.category.as_str(), halves(&t.body).0))
            .collect();
        let second: Vec<(&str, &str)> = texts
            .iter()
            .map(|t| (t.category.as_str(), halves(&t.body).1))
            .collect();
        let structural = structural_vocab(&bpe);
        let features_only = leak([0; PARAMS], structural);
        let p1 = leak(
            fit(&samples(encoding, features_only, &bpe, &first)),
            structural,
        );
        let p2 = leak(
            fit(&samples(encoding, features_only, &bpe, &second)),
            structural,
        );
        let full_samples = samples(encoding, features_only, &bpe, &all);
        let pf = leak(fit(&full_samples), structural);
        println!(
            "== {} ({} structural tokens)",
            encoding.as_str(),
            structural.len()
        );
        let whole: usize = all.iter().map(|(_, b)| bpe.encode_ordinary(b).len()).sum();
        let pieces: f64 = full_samples.iter().map(|s| s.y).sum();
        println!(
            "split fidelity: reference tokens summed over our pieces {pieces} vs whole texts {whole} ({:+.3}%)",
            pct(pieces as u64, whole as u64)
        );
        report(
            "held out, fit 1st halves, score 2nd",
            &score(encoding, p1, &bpe, &second),
        );
        report(
            "held out, fit 2nd halves, score 1st",
            &score(encoding, p2, &bpe, &first),
        );
        report(
            "in sample, fit all, score all     ",
            &score(encoding, pf, &bpe, &all),
        );
        let name = match encoding {
            Encoding::O200kBase => "O200K",
            Encoding::Cl100kBase => "CL100K",
        };
        tables += &render(name, pf);
        tables += "\n";
    }
    if std::env::var_os("UPDATE_TOKEN_TABLES").is_some() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/tokens/tables.rs");
        std::fs::write(&path, tables.trim_end().to_owned() + "\n").unwrap();
        println!("wrote {}", path.display());
    }
}

/// Prints the pieces of one corpus file (`TOKENS_DIAG=category/name`) whose estimate is furthest
/// from tiktoken, summed over repeats: the starting point for a better feature.
#[test]
#[ignore = "diagnostic"]
fn diagnose() {
    let Some(which) = std::env::var_os("TOKENS_DIAG") else {
        return;
    };
    let which = which.to_string_lossy().into_owned();
    let encoding = if std::env::var_os("TOKENS_CL100K").is_some() {
        Encoding::Cl100kBase
    } else {
        Encoding::O200kBase
    };
    let bpe = reference(encoding);
    for t in corpus() {
        if format!("{}/{}", t.category, t.name) != which {
            continue;
        }
        let mut rec = Recorder::new(encoding.tables());
        let mut scanner = Scanner::new(encoding.rules());
        scanner.feed(t.body.as_bytes(), &mut rec);
        scanner.finish(&mut rec);
        let mut by_piece: BTreeMap<String, (f64, usize, usize)> = BTreeMap::new();
        for (x, span) in rec.rows {
            let piece = &t.body[span.start as usize..span.end as usize];
            let y = bpe.encode_ordinary(piece).len();
            let p: f64 = x
                .iter()
                .map(|&(s, c)| f64::from(encoding.tables().params[s]) * f64::from(c) / 1000.0)
                .sum();
            let e = by_piece.entry(piece.to_owned()).or_default();
            e.0 += p - y as f64;
            e.1 += 1;
            e.2 = y;
        }
        let mut v: Vec<_> = by_piece.into_iter().collect();
        v.sort_by(|a, b| b.1 .0.abs().total_cmp(&a.1 .0.abs()));
        for (piece, (resid, n, y)) in v.into_iter().take(40) {
            println!("{resid:+8.2}  x{n:<4} real {y}  {piece:?}");
        }
    }
}
