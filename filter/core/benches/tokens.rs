//! Cost of token counting per kilobyte, natively: the estimator against the real BPE
//! (tiktoken-rs). Inside V8 expect roughly 1.5–2× the native time (see docs/tokens.md).
//!
//! `cargo bench -p mcp-gateway-core --bench tokens`

// A benchmark harness, not production code: a missing corpus file should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use std::hint::black_box;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use mcp_gateway_core::tokens::{estimate, Encoding, TokenCounter, TokenCounting};

/// The corpus, concatenated per category.
fn categories() -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            let body: String = files
                .iter()
                .map(|f| std::fs::read_to_string(f).unwrap())
                .collect();
            (
                dir.file_name().unwrap().to_string_lossy().into_owned(),
                body,
            )
        })
        .collect()
}

fn bench_estimate(c: &mut Criterion) {
    let cats = categories();
    let all: String = cats.iter().map(|(_, b)| b.as_str()).collect();
    for encoding in Encoding::ALL {
        let mut group = c.benchmark_group(format!("estimate/{}", encoding.as_str()));
        for (name, body) in cats.iter().chain([&("all".to_owned(), all.clone())]) {
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_with_input(BenchmarkId::from_parameter(name), body, |b, body| {
                b.iter(|| estimate(encoding, black_box(body.as_bytes())))
            });
        }
        group.finish();
    }
    // Streaming in 4 KiB chunks, as Envoy hands over a body.
    let mut group = c.benchmark_group("estimate_chunked_4k");
    group.throughput(Throughput::Bytes(all.len() as u64));
    group.bench_function("o200k_base/all", |b| {
        b.iter(|| {
            let mut counter = TokenCounter::new(Encoding::O200kBase);
            for chunk in all.as_bytes().chunks(4096) {
                counter.feed(black_box(chunk));
            }
            counter.finish()
        })
    });
    group.finish();
}

fn bench_json(c: &mut Criterion) {
    let cats = categories();
    let text: String = cats
        .iter()
        .filter(|(n, _)| n == "code" || n == "prose_en" || n == "logs")
        .map(|(_, b)| b.as_str())
        .collect();
    let message = serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0", "id": 1,
        "result": {"content": [{"type": "text", "text": text}]}
    }))
    .unwrap();
    let json = cats.iter().find(|(n, _)| n == "json").unwrap().1.clone();
    let t = TokenCounting::default();
    let mut group = c.benchmark_group("json/o200k_base");
    group.throughput(Throughput::Bytes(message.len() as u64));
    group.bench_function("count_tool_result", |b| {
        b.iter(|| t.count_tool_result(black_box(&message)))
    });
    group.bench_function("raw_body_estimate", |b| {
        b.iter(|| estimate(Encoding::O200kBase, black_box(&message)))
    });
    group.throughput(Throughput::Bytes(json.len() as u64));
    // The json category is several documents back to back: still walkable as JSON text.
    group.bench_function("count_json", |b| {
        b.iter(|| t.count_json(black_box(json.as_bytes())))
    });
    group.finish();
}

fn bench_tiktoken(c: &mut Criterion) {
    let cats = categories();
    let all: String = cats.iter().map(|(_, b)| b.as_str()).collect();
    let bpe = tiktoken_rs::o200k_base().unwrap();
    let mut group = c.benchmark_group("tiktoken/o200k_base");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(all.len() as u64));
    group.bench_function("all", |b| {
        b.iter(|| bpe.encode_ordinary(black_box(&all)).len())
    });
    group.finish();
    let mut group = c.benchmark_group("tiktoken_init");
    group.sample_size(10);
    group.bench_function("o200k_base", |b| {
        b.iter(|| tiktoken_rs::o200k_base().unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_estimate, bench_json, bench_tiktoken);

/// With `TOKENS_PROFILE=<encoding>` set, estimates the whole corpus `TOKENS_PROFILE_REPS`
/// times (default 1) and exits, for an instruction count under cachegrind: run it with 1 and 3
/// repetitions and divide the difference by twice the corpus size to get instructions per byte.
///
/// `valgrind --tool=cachegrind --cache-sim=no target/release/deps/tokens-* --bench`
fn profile(encoding: &str) {
    let encoding = Encoding::from_name(encoding).expect("TOKENS_PROFILE: an encoding name");
    let reps: usize = std::env::var("TOKENS_PROFILE_REPS").map_or(1, |r| r.parse().unwrap());
    let all: String = categories().iter().map(|(_, b)| b.as_str()).collect();
    let mut total = 0;
    for _ in 0..reps {
        total += estimate(encoding, black_box(all.as_bytes()));
    }
    println!("{} bytes, {total} tokens over {reps} runs", all.len());
}

fn main() {
    if let Ok(encoding) = std::env::var("TOKENS_PROFILE") {
        profile(&encoding);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
