//! Cost of reading a client's request body: the JSON-RPC parse alone (`jsonrpc::parse_message`)
//! and the whole body decision the filter makes on every POST (`gate::on_body`: parse, size and
//! header checks, routing headers), for `tools/call` bodies of 1 KB, 64 KB and 1 MB.
//!
//! `cargo bench -p mcp-gateway-core --bench jsonrpc`. Native numbers; inside V8 expect roughly
//! 2-4x (see shared/ENVOY_WASM_FACTS.md). Record the machine with the numbers.

// A benchmark harness, not production code: a broken fixture should stop it loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mcp_gateway_core::config::Config;
use mcp_gateway_core::gate::{self, Head};
use mcp_gateway_core::jsonrpc;
use serde_json::json;

const SIZES: [(&str, usize); 3] = [("1KB", 1024), ("64KB", 64 * 1024), ("1MB", 1024 * 1024)];

/// A `tools/call` of exactly `size` bytes: the bulk is a document argument (prose with line
/// breaks, quotes and non-ASCII, so the parser meets escapes), beside small typed arguments, as
/// a "write this file" or "summarise this text" call sends.
fn tools_call(size: usize) -> Vec<u8> {
    let words = [
        "the",
        "gateway",
        "routes",
        "each",
        "call",
        "to",
        "its",
        "server;",
        "naïve",
        "café",
        "\"quoted\"",
        "—",
        "budget",
        "line\nbreak",
        "tab\there",
    ];
    let body = |content: &str| {
        serde_json::to_vec(&json!({
            "jsonrpc": "2.0",
            "id": 42,
            "method": "tools/call",
            "params": {
                "name": "write_file",
                "arguments": {"path": "/srv/docs/report.md", "overwrite": true, "mode": 420,
                              "tags": ["q3", "finance"], "content": content},
                "_meta": {"progressToken": "bench-1"}
            }
        }))
        .unwrap()
    };
    let content = fill(&words, size, |c| body(c).len());
    let out = body(&content);
    assert!(
        out.len() + 4 >= size && out.len() <= size,
        "{} for {size}",
        out.len()
    );
    out
}

/// Words (and a space after each) up to the point where `len(text)` is `target`, give or take
/// the last escape: each word's serialised size is added up, so the document is serialised only
/// a few times, not once per word.
fn fill(words: &[&str], target: usize, len: impl Fn(&str) -> usize) -> String {
    let escaped = |w: &str| serde_json::to_string(w).unwrap().len() - 2;
    let mut text = String::new();
    let mut total = len("");
    for w in words.iter().cycle() {
        let cost = escaped(w) + 1;
        if total + cost > target {
            break;
        }
        text.push_str(w);
        text.push(' ');
        total += cost;
    }
    while len(&text) > target {
        text.pop();
    }
    text
}

fn head() -> Head {
    Head {
        method: "POST".into(),
        path: "/mcp".into(),
        authority: Some("127.0.0.1:10000".into()),
        content_type: Some("application/json".into()),
        session_id: Some("bench-session".into()),
        protocol_version: Some("2025-11-25".into()),
        ..Head::default()
    }
}

fn bench(c: &mut Criterion) {
    let cfg = Config::from_json(br#"{"maxRequestBytes": 2097152}"#).unwrap();
    let head = head();
    let mut g = c.benchmark_group("request");
    for (label, size) in SIZES {
        let body = tools_call(size);
        let info = jsonrpc::parse_message(&body).unwrap();
        assert_eq!(info.method.as_deref(), Some("tools/call"));
        assert!(gate::on_body(&cfg, &head, &body).is_ok());
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("parse_message", label),
            &body,
            |b, body| b.iter(|| black_box(jsonrpc::parse_message(black_box(body)))),
        );
        g.bench_with_input(BenchmarkId::new("gate_on_body", label), &body, |b, body| {
            b.iter(|| black_box(gate::on_body(&cfg, &head, black_box(body))))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    // Short runs: `make bench-core` runs every core bench in a few minutes.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = bench
}
criterion_main!(benches);
