//! The guardrail corpora (`tests/guard_corpus/`): every case as a JSON tool result (raw UTF-8
//! and `\u`-escaped), inside a split SSE stream, and as plain text. Prints false negatives and
//! false positives per detector and fails if any count exceeds the recorded baseline (so a
//! regression fails; an improvement should lower the baseline).
//!
//! `cargo test -p mcp-gateway-core --test guard_corpus -- --nocapture` shows the table.

// A test harness: a malformed corpus line should stop it loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use mcp_gateway_core::guard::{Action, CallGuard, Detector, DetectorSet, Findings, Mode};
use serde_json::{json, Value};

/// Recorded misses and false alarms per detector: (id, false negatives, false positives).
/// Every one is a case in the corpus files, explained there and in `src/guard/README.md`.
const BASELINE: &[(&str, u32, u32)] = &[
    ("email", 1, 0),
    ("phone", 1, 1),
    ("card", 0, 1),
    ("iban", 1, 0),
    ("ssn", 1, 0),
    ("override", 2, 1),
    ("new-instructions", 1, 0),
    ("conceal", 0, 2),
    ("exfil-url", 0, 1),
    ("bidi", 0, 1),
];

struct Case {
    line: usize,
    label: String,
    text: String,
    /// Byte ranges of the `«…»` spans in `text`.
    spans: Vec<(usize, usize)>,
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some('u') => {
                assert_eq!(it.next(), Some('{'));
                let hex: String = it.by_ref().take_while(|c| *c != '}').collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
            }
            other => panic!("unknown escape \\{other:?} in {s}"),
        }
    }
    out
}

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/guard_corpus")
        .join(name)
}

fn load(name: &str) -> Vec<Case> {
    std::fs::read_to_string(path(name))
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            let (label, text) = l
                .split_once('\t')
                .unwrap_or_else(|| panic!("{name}:{}: no tab", i + 1));
            let marked = unescape(text);
            let mut text = String::new();
            let mut spans = Vec::new();
            for c in marked.chars() {
                match c {
                    '«' => spans.push((text.len(), text.len())),
                    '»' => spans.last_mut().unwrap().1 = text.len(),
                    _ => text.push(c),
                }
            }
            Case {
                line: i + 1,
                label: label.to_owned(),
                text,
                spans,
            }
        })
        .collect()
}

fn result(text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 3, "result": {"content": [{"type": "text", "text": text}], "isError": false}})
}

fn ascii_json(v: &Value) -> String {
    let mut out = String::new();
    for c in serde_json::to_string(v).unwrap().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

fn run(g: CallGuard, mode: Mode, body: &[u8], cuts: &[usize]) -> (Vec<u8>, Findings) {
    let mut s = g.stream(mode);
    let mut out = Vec::new();
    let mut prev = 0;
    for &c in cuts.iter().chain([&body.len()]) {
        s.feed(&body[prev..c], &mut out);
        prev = c;
    }
    s.finish(&mut out);
    (out, *s.findings())
}

/// Findings of one text in every framing; they must agree.
fn scan(g: CallGuard, case: &Case, file: &str) -> Findings {
    let v = result(&case.text);
    let raw = serde_json::to_string(&v).unwrap();
    let esc = ascii_json(&v);
    let sse = format!("event: message\ndata: {esc}\n\nevent: message\ndata: {raw}\n\n");
    let (_, want) = run(g, Mode::Json, raw.as_bytes(), &[]);
    let (_, f) = run(g, Mode::Json, esc.as_bytes(), &[]);
    assert_eq!(f, want, "{file}:{}: escaped JSON differs", case.line);
    let n = sse.len();
    let (_, f) = run(
        g,
        Mode::Json,
        sse.as_bytes(),
        &[n / 5, n / 3, n / 2, 2 * n / 3],
    );
    let mut twice = want;
    twice.merge(&want);
    assert_eq!(f, twice, "{file}:{}: split SSE differs", case.line);
    let text = g.screen_text(&case.text);
    assert_eq!(text, want, "{file}:{}: plain text differs", case.line);
    want
}

/// The text of a redacted tool result.
fn redacted(g: CallGuard, text: &str) -> String {
    let body = serde_json::to_vec(&result(text)).unwrap();
    let (out, _) = run(g, Mode::Json, &body, &[body.len() / 2]);
    let v: Value = serde_json::from_slice(&out).expect("redacted output is valid JSON");
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[derive(Default)]
struct Tally {
    positives: u32,
    fn_: u32,
    negatives_fired: u32,
    misses: Vec<String>,
    alarms: Vec<String>,
}

#[test]
fn corpus_false_positives_and_negatives_stay_within_the_baseline() {
    let everything = CallGuard::new(DetectorSet::ALL, Action::Flag);
    let mut tally: BTreeMap<Detector, Tally> = BTreeMap::new();
    let (mut n_pos, mut n_neg) = (0, 0);
    for file in ["pii_positive.tsv", "injection_positive.tsv"] {
        for case in load(file) {
            n_pos += 1;
            let det = Detector::from_id(&case.label)
                .unwrap_or_else(|| panic!("{file}:{}: unknown detector {}", case.line, case.label));
            let t = tally.entry(det).or_default();
            t.positives += 1;
            let f = scan(everything, &case, file);
            let mut hit = f.count(det) > 0;
            if hit && !case.spans.is_empty() {
                // The exact spans are replaced, nothing more, nothing less.
                let only = CallGuard::new(DetectorSet::of(det), Action::Redact);
                let mut want = String::new();
                let mut at = 0;
                for (s, e) in &case.spans {
                    want.push_str(&case.text[at..*s]);
                    want.push_str(det.replacement());
                    at = *e;
                }
                want.push_str(&case.text[at..]);
                let got = redacted(only, &case.text);
                if got != want {
                    hit = false;
                    t.misses
                        .push(format!("{file}:{} wrong span: {got:?}", case.line));
                }
            } else if !hit {
                t.misses
                    .push(format!("{file}:{} {:?} (found: {f})", case.line, case.text));
            }
            if !hit {
                t.fn_ += 1;
            }
        }
    }
    for file in ["pii_negative.tsv", "injection_negative.tsv"] {
        for case in load(file) {
            n_neg += 1;
            let f = scan(everything, &case, file);
            for (det, _) in f.iter() {
                let t = tally.entry(det).or_default();
                t.negatives_fired += 1;
                t.alarms.push(format!(
                    "{file}:{} [{}] {:?}",
                    case.line, case.label, case.text
                ));
            }
        }
    }
    println!("{n_pos} positive and {n_neg} negative cases\n");
    println!(
        "{:<18} {:>9} {:>4} {:>4}",
        "detector", "positives", "FN", "FP"
    );
    let (mut total_fn, mut total_fp) = (0, 0);
    for (det, t) in &tally {
        println!(
            "{:<18} {:>9} {:>4} {:>4}",
            det.id(),
            t.positives,
            t.fn_,
            t.negatives_fired
        );
        for m in t.misses.iter().chain(&t.alarms) {
            println!("    {m}");
        }
        total_fn += t.fn_;
        total_fp += t.negatives_fired;
    }
    println!(
        "{:<18} {:>9} {:>4} {:>4}",
        "total", n_pos, total_fn, total_fp
    );
    assert!(n_pos >= 40 && n_neg >= 60);
    for (det, t) in &tally {
        let (bfn, bfp) = BASELINE
            .iter()
            .find(|(id, _, _)| *id == det.id())
            .map_or((0, 0), |(_, a, b)| (*a, *b));
        assert!(
            t.fn_ <= bfn && t.negatives_fired <= bfp,
            "{}: {} false negatives (baseline {bfn}), {} false positives (baseline {bfp})",
            det.id(),
            t.fn_,
            t.negatives_fired
        );
    }
    // Every detector has positive cases.
    for det in Detector::ALL {
        assert!(
            tally.get(&det).is_some_and(|t| t.positives > 0),
            "no positive case for {}",
            det.id()
        );
    }
}

#[test]
fn real_tool_descriptions_screen_clean_and_poisoned_ones_are_caught() {
    let g = CallGuard::new(DetectorSet::INJECTION, Action::Block);
    let clean = std::fs::read_to_string(path("descriptions_clean.txt")).unwrap();
    for line in clean
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let f = g.screen_text(&unescape(line));
        assert!(f.is_empty(), "{line}: {f}");
    }
    for case in load("descriptions_poisoned.tsv") {
        let f = g.screen_text(&case.text);
        let mut want: Vec<&str> = case.label.split(',').collect();
        want.sort_unstable();
        let mut got: Vec<&str> = f
            .iter()
            .flat_map(|(d, c)| std::iter::repeat_n(d.id(), c as usize))
            .collect();
        got.sort_unstable();
        assert_eq!(got, want, "line {}", case.line);
        assert!(f.blocked());
    }
}

/// The token-counting corpus (`tests/corpus`: code, logs, prose in several languages, CSV, HTML,
/// JSON; written for another purpose) as tool results. Everything found there is real: the
/// addresses in a CSV export, a DB dump and an e-mail thread, JWTs in `Authorization` headers,
/// a Stripe test key in API docs. Nothing else may fire, in particular no injection rule.
#[test]
fn ordinary_tool_output_only_yields_the_pii_it_really_contains() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let g = CallGuard::new(DetectorSet::ALL, Action::Flag);
    let mut total = Findings::default();
    let mut bytes = 0;
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs.into_iter().filter(|d| d.is_dir()) {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            bytes += text.len();
            let body = ascii_json(&result(&text));
            let (_, f) = run(g, Mode::Json, body.as_bytes(), &[body.len() / 3]);
            total.merge(&f);
        }
    }
    println!("{bytes} bytes of ordinary tool output: {total}");
    let got: Vec<(&str, u32)> = total.iter().map(|(d, c)| (d.id(), c)).collect();
    assert_eq!(got, vec![("email", 279), ("stripe-key", 1), ("jwt", 30)]);
}
