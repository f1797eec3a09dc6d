//! Cost of the guardrails per 64 KiB of realistic tool output (prose, code and logs from
//! `tests/corpus` in a JSON tool result), natively. Inside V8 expect roughly 1.5-3x.
//!
//! `cargo bench -p mcp-gateway-core --bench guard`

// A benchmark harness, not production code: a missing corpus file should stop it loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mcp_gateway_core::guard::{Action, CallGuard, DetectorSet, Mode};

const SIZE: usize = 64 * 1024;

/// About 64 KiB of tool-result text: the corpus's prose, code, logs, markdown and JSON
/// categories interleaved, wrapped in a `tools/call` result.
fn body(escaped: bool) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut texts = Vec::new();
    for cat in ["prose_en", "code", "logs", "markdown", "json", "prose_intl"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(cat))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            texts.push(std::fs::read_to_string(f).unwrap());
        }
    }
    let mut text = String::new();
    'fill: loop {
        for t in &texts {
            for line in t.lines() {
                text.push_str(line);
                text.push('\n');
                if text.len() >= SIZE - 200 {
                    break 'fill;
                }
            }
        }
    }
    let v = serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": text}]}});
    let s = serde_json::to_string(&v).unwrap();
    if !escaped {
        return s.into_bytes();
    }
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out.into_bytes()
}

fn guards() -> [(&'static str, CallGuard); 4] {
    [
        (
            "redact_pii_secrets",
            CallGuard::new(DetectorSet::PII.union(DetectorSet::SECRETS), Action::Redact),
        ),
        (
            "screen_injection_flag",
            CallGuard::new(DetectorSet::INJECTION, Action::Flag),
        ),
        (
            "both_redact_all",
            CallGuard::new(DetectorSet::ALL, Action::Redact),
        ),
        (
            "both_pii_redact_injection_flag",
            CallGuard::new(DetectorSet::PII.union(DetectorSet::SECRETS), Action::Redact)
                .with(DetectorSet::INJECTION, Action::Flag),
        ),
    ]
}

/// `GUARD_BENCH_MIN=<filter>`: instead of criterion, the fastest of 2000 whole-body runs of each
/// case whose name contains the filter. On a shared, loaded machine the minimum moves far less
/// than criterion's mean, so two builds can be compared back to back.
fn min_times(filter: &str) {
    for (name, escaped) in [("utf8", false), ("ascii_escaped", true)] {
        let body = body(escaped);
        for (gname, g) in guards() {
            let id = format!("{name}/{gname}/whole");
            if !id.contains(filter) {
                continue;
            }
            let mut out = Vec::with_capacity(body.len() + 4096);
            let mut times: Vec<f64> = (0..2000)
                .map(|_| {
                    let t = std::time::Instant::now();
                    out.clear();
                    let mut s = g.stream(Mode::Json);
                    s.feed(black_box(&body), &mut out);
                    s.finish(&mut out);
                    black_box(s.findings().total());
                    t.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let per64k = 65536.0 / body.len() as f64;
            println!(
                "{id:45} min {:7.1} µs  p10 {:7.1} µs  (per 64 KiB)",
                times[0] * per64k,
                times[200] * per64k
            );
        }
    }
}

fn bench_guard(c: &mut Criterion) {
    if let Ok(filter) = std::env::var("GUARD_BENCH_MIN") {
        min_times(&filter);
        return;
    }
    let guards = guards();
    for (name, escaped) in [("utf8", false), ("ascii_escaped", true)] {
        let body = body(escaped);
        let mut group = c.benchmark_group(format!("guard_64k/{name}"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        // The floor: copying the body into the output buffer.
        group.bench_function("copy_only", |b| {
            let mut out = Vec::with_capacity(body.len() + 4096);
            b.iter(|| {
                out.clear();
                out.extend_from_slice(black_box(&body));
                out.len()
            })
        });
        for (gname, g) in guards {
            group.bench_with_input(BenchmarkId::new(gname, "whole"), &body, |b, body| {
                let mut out = Vec::with_capacity(body.len() + 4096);
                b.iter(|| {
                    out.clear();
                    let mut s = g.stream(Mode::Json);
                    s.feed(black_box(body), &mut out);
                    s.finish(&mut out);
                    s.findings().total()
                })
            });
            // As Envoy hands a body over: 16 KiB chunks (and 1 KiB for the worst case).
            for chunk in [16 * 1024, 1024] {
                group.bench_with_input(
                    BenchmarkId::new(gname, format!("chunks_{chunk}")),
                    &body,
                    |b, body| {
                        let mut out = Vec::with_capacity(body.len() + 4096);
                        b.iter(|| {
                            out.clear();
                            let mut s = g.stream(Mode::Json);
                            for part in body.chunks(chunk) {
                                s.feed(black_box(part), &mut out);
                            }
                            s.finish(&mut out);
                            s.findings().total()
                        })
                    },
                );
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = bench_guard
}
criterion_main!(benches);
