//! Accuracy of the token estimator against the real tokenizers (tiktoken-rs, which embeds the
//! o200k_base and cl100k_base vocabularies) on the corpus in `tests/corpus`.
//!
//! `cargo test -p mcp-gateway-core --test token_accuracy -- --nocapture` prints the error per
//! file, per category and overall; `docs/tokens.md` quotes these tables.

// A test harness, not production code: a missing corpus file should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use mcp_gateway_core::tokens::{compact_json, estimate, Encoding, TokenCounting};
use tiktoken_rs::CoreBPE;

/// The goal: the estimate of the whole corpus within ±3% of the real count.
const AGGREGATE_TOLERANCE_PCT: f64 = 3.0;
/// No category may be off by more than this (they are reported, not tuned one by one).
const CATEGORY_TOLERANCE_PCT: f64 = 8.0;

struct Text {
    category: String,
    name: String,
    body: String,
}

fn corpus() -> Vec<Text> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut texts = Vec::new();
    for dir in dirs {
        let category = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
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
    assert!(
        texts.len() > 40,
        "corpus not found under {}",
        root.display()
    );
    texts
}

fn reference(encoding: Encoding) -> CoreBPE {
    match encoding {
        Encoding::O200kBase => tiktoken_rs::o200k_base().unwrap(),
        Encoding::Cl100kBase => tiktoken_rs::cl100k_base().unwrap(),
    }
}

fn real(bpe: &CoreBPE, text: &str) -> u64 {
    bpe.encode_ordinary(text).len() as u64
}

fn pct(est: u64, reference: u64) -> f64 {
    100.0 * (est as f64 - reference as f64) / (reference as f64).max(1.0)
}

#[derive(Default, Clone, Copy)]
struct Tally {
    est: u64,
    real: u64,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, est: u64, real: u64, bytes: usize) {
        self.est += est;
        self.real += real;
        self.bytes += bytes as u64;
    }
}

fn table(title: &str, rows: &BTreeMap<String, Tally>) -> Tally {
    println!("\n{title}");
    println!(
        "| {:<34} | {:>8} | {:>8} | {:>8} | {:>7} |",
        "", "bytes", "tiktoken", "estimate", "error"
    );
    println!(
        "|{:-<36}|{:->10}|{:->10}|{:->10}|{:->9}|",
        "", "", "", "", ""
    );
    let mut all = Tally::default();
    for (name, t) in rows {
        println!(
            "| {:<34} | {:>8} | {:>8} | {:>8} | {:>+6.1}% |",
            name,
            t.bytes,
            t.real,
            t.est,
            pct(t.est, t.real)
        );
        all.est += t.est;
        all.real += t.real;
        all.bytes += t.bytes;
    }
    all
}

#[test]
fn estimate_is_within_three_percent_of_tiktoken_on_the_corpus() {
    let texts = corpus();
    for encoding in Encoding::ALL {
        let bpe = reference(encoding);
        let mut files = BTreeMap::new();
        let mut categories: BTreeMap<String, Tally> = BTreeMap::new();
        for t in &texts {
            let est = estimate(encoding, t.body.as_bytes());
            let real = real(&bpe, &t.body);
            files
                .entry(format!("{}/{}", t.category, t.name))
                .or_insert_with(Tally::default)
                .add(est, real, t.body.len());
            categories
                .entry(t.category.clone())
                .or_default()
                .add(est, real, t.body.len());
        }
        table(&format!("{} per file", encoding.as_str()), &files);
        let all = table(&format!("{} per category", encoding.as_str()), &categories);
        let macro_avg = categories
            .values()
            .map(|t| pct(t.est, t.real).abs())
            .sum::<f64>()
            / categories.len() as f64;
        println!(
            "{}: all {} bytes, tiktoken {} tokens, estimate {} ({:+.2}%); mean |category error| {:.1}%",
            encoding.as_str(),
            all.bytes,
            all.real,
            all.est,
            pct(all.est, all.real),
            macro_avg
        );
        assert!(
            pct(all.est, all.real).abs() <= AGGREGATE_TOLERANCE_PCT,
            "{}: aggregate error {:+.2}%",
            encoding.as_str(),
            pct(all.est, all.real)
        );
        for (category, t) in &categories {
            assert!(
                pct(t.est, t.real).abs() <= CATEGORY_TOLERANCE_PCT,
                "{} {category}: error {:+.2}%",
                encoding.as_str(),
                pct(t.est, t.real)
            );
        }
    }
}

fn tool_result(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0",
        "id": 42,
        "result": {"content": [{"type": "text", "text": text}], "isError": false}
    }))
    .unwrap()
}

/// What the gateway reports for a tool result (the text the model reads) against the naive
/// alternative of counting the response body as it is.
#[test]
fn tool_results_count_the_text_the_model_reads_not_the_envelope() {
    let texts = corpus();
    for encoding in Encoding::ALL {
        let bpe = reference(encoding);
        let counting = TokenCounting {
            encoding,
            ..TokenCounting::default()
        };
        let mut visible: BTreeMap<String, Tally> = BTreeMap::new();
        let mut raw_est: BTreeMap<String, Tally> = BTreeMap::new();
        let mut raw_exact: BTreeMap<String, Tally> = BTreeMap::new();
        for t in &texts {
            let message = tool_result(&t.body);
            let truth = real(&bpe, &t.body);
            let got = counting.count_tool_result(&message).unwrap();
            assert_eq!(got.media, 0);
            visible
                .entry(t.category.clone())
                .or_default()
                .add(got.text, truth, t.body.len());
            raw_est.entry(t.category.clone()).or_default().add(
                estimate(encoding, &message),
                truth,
                message.len(),
            );
            let exact_raw = real(&bpe, std::str::from_utf8(&message).unwrap());
            raw_exact
                .entry(t.category.clone())
                .or_default()
                .add(exact_raw, truth, message.len());
        }
        let name = encoding.as_str();
        let v = table(
            &format!("{name}: count_tool_result vs tiktoken(text)"),
            &visible,
        );
        let r = table(
            &format!("{name}: estimate(raw body) vs tiktoken(text)"),
            &raw_est,
        );
        let x = table(
            &format!("{name}: tiktoken(raw body) vs tiktoken(text)"),
            &raw_exact,
        );
        println!(
            "{name}: model-visible estimate {:+.2}%, raw-body estimate {:+.2}%, raw body counted exactly {:+.2}%",
            pct(v.est, v.real),
            pct(r.est, r.real),
            pct(x.est, x.real)
        );
        assert!(pct(v.est, v.real).abs() <= AGGREGATE_TOLERANCE_PCT);
        // The envelope and escapes make raw counting overcount; the estimator must not hide it.
        assert!(pct(x.est, x.real) > 2.0);
    }
}

/// `count_json` prices the compact form of a JSON text; check it against tiktoken on that form.
#[test]
fn json_is_counted_as_its_compact_form() {
    let texts = corpus();
    for encoding in Encoding::ALL {
        let bpe = reference(encoding);
        let counting = TokenCounting {
            encoding,
            ..TokenCounting::default()
        };
        let mut rows: BTreeMap<String, Tally> = BTreeMap::new();
        for t in texts.iter().filter(|t| t.category == "json") {
            let mut compact = Vec::new();
            compact_json(t.body.as_bytes(), |p| compact.extend_from_slice(p));
            let compact = String::from_utf8(compact).unwrap();
            let value: serde_json::Value = serde_json::from_str(&t.body).unwrap();
            let reparsed: serde_json::Value = serde_json::from_str(&compact).unwrap();
            assert_eq!(value, reparsed, "{}", t.name);
            rows.entry(t.name.clone()).or_default().add(
                counting.count_json(t.body.as_bytes()),
                real(&bpe, &compact),
                compact.len(),
            );
        }
        let all = table(
            &format!(
                "{}: count_json vs tiktoken(compact JSON)",
                encoding.as_str()
            ),
            &rows,
        );
        assert!(pct(all.est, all.real).abs() <= AGGREGATE_TOLERANCE_PCT);
    }
}
