//! Cost of watching an SSE response go by: a 64 KB `text/event-stream` fed in 16 KB chunks (as
//! Envoy hands a body over) to the three readers the filter has, each on its own:
//! - `SseParser` alone (the event scanner),
//! - `ResponseObserver` (telemetry: counts notifications, classifies the final result), also
//!   with token counting on (`response_observer_counting`: isError and tokens of the result),
//! - `StreamRewriter` (federation: rewrites server-to-client request ids, passes the rest).
//!
//! Two streams of the same size: one big result event after two progress notifications (a tool
//! returning a document), and ~300 small notification events (a chatty progress stream), which
//! shows the per-event cost.
//!
//! `cargo bench -p mcp-gateway-core --bench sse`. Native numbers; inside V8 expect roughly 2-4x.

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
use mcp_gateway_core::federation::stream::{Emit, StreamRewriter};
use mcp_gateway_core::response::{Measure, Outcome, ResponseObserver};
use mcp_gateway_core::sse::SseParser;
use mcp_gateway_core::tokens::TokenCounting;
use serde_json::json;

const STREAM_BYTES: usize = 64 * 1024;
const CHUNK: usize = 16 * 1024;
/// The filter's default `maxObservedResponseBytes`.
const LIMIT: usize = 1024 * 1024;

fn event(n: usize, message: &serde_json::Value) -> String {
    format!("event: message\nid: {n}\ndata: {message}\n\n")
}

fn progress(n: usize) -> String {
    event(
        n,
        &json!({"jsonrpc": "2.0", "method": "notifications/progress",
                "params": {"progressToken": "bench-7", "progress": n, "total": 400,
                           "message": format!("step {n}: fetched part {n} of the report")}}),
    )
}

/// Two progress events, then one result event carrying prose and a JSON document as text.
fn one_big_result() -> Vec<u8> {
    let head: String = (1..=2).map(progress).collect();
    let regions = ["north", "south", "east", "west"];
    let records: Vec<_> = (0..60)
        .map(|i| {
            json!({"id": i, "region": regions[i % 4],
                   "revenue": 1000.5 * i as f64, "note": "café résumé — “quoted”"})
        })
        .collect();
    let doc = serde_json::to_string_pretty(&json!({"report": "Q3", "records": records})).unwrap();
    let words = [
        "the",
        "quarter",
        "closed",
        "with",
        "revenue",
        "up",
        "in",
        "every",
        "region,",
        "naïve",
        "forecasts",
        "aside.\n\n",
    ];
    let result = |prose: &str| {
        event(
            3,
            &json!({"jsonrpc": "2.0", "id": 7, "result": {
            "content": [{"type": "text", "text": prose}, {"type": "text", "text": doc}],
            "isError": false}}),
        )
    };
    // Grow by each word's serialised size, so the event is serialised a few times, not per word.
    let escaped = |w: &str| serde_json::to_string(w).unwrap().len() - 2;
    let mut prose = String::new();
    let mut total = head.len() + result("").len();
    for w in words.iter().cycle() {
        if total + escaped(w) + 1 > STREAM_BYTES {
            break;
        }
        prose.push_str(w);
        prose.push(' ');
        total += escaped(w) + 1;
    }
    while head.len() + result(&prose).len() > STREAM_BYTES {
        prose.pop();
    }
    format!("{head}{}", result(&prose)).into_bytes()
}

/// Progress notifications up to the size, then a small result.
fn many_small_events() -> Vec<u8> {
    let tail = event(
        9999,
        &json!({"jsonrpc": "2.0", "id": 7,
                                   "result": {"content": [], "isError": false}}),
    );
    let mut out = String::new();
    let mut n = 1;
    while out.len() + progress(n).len() + tail.len() <= STREAM_BYTES {
        out.push_str(&progress(n));
        n += 1;
    }
    out.push_str(&tail);
    out.into_bytes()
}

fn bench(c: &mut Criterion) {
    let streams = [
        ("one_big_result", one_big_result()),
        ("300_small_events", many_small_events()),
    ];
    let mut g = c.benchmark_group("sse_64KB_in_16KB_chunks");
    for (name, stream) in &streams {
        // Every reader sees every event of the fixture, and the rewriter changes nothing.
        let mut events = 0;
        let mut parser = SseParser::new(LIMIT);
        for chunk in stream.chunks(CHUNK) {
            parser.feed(chunk, |_| events += 1);
        }
        assert!(events >= 3, "{name}: {events} events");
        let mut obs = ResponseObserver::new(200, Some("text/event-stream"), None, LIMIT);
        for chunk in stream.chunks(CHUNK) {
            obs.feed(chunk);
        }
        let summary = obs.finish(false);
        assert_eq!(summary.outcome, Outcome::Ok, "{name}: {summary:?}");
        assert_eq!(
            summary.notifications as usize,
            events - 1,
            "{name}: {summary:?}"
        );
        let mut rw = StreamRewriter::new("s1", LIMIT);
        let mut passed = 0;
        for chunk in stream.chunks(CHUNK) {
            passed += match rw.feed(chunk, |_| {}) {
                Emit::Unchanged => chunk.len(),
                Emit::Replace(bytes) => bytes.len(),
            };
        }
        passed += rw.finish().len();
        assert_eq!(
            passed,
            stream.len(),
            "{name}: the rewriter must pass every byte on"
        );

        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.bench_with_input(BenchmarkId::new("sse_parser", name), stream, |b, stream| {
            b.iter(|| {
                let mut parser = SseParser::new(LIMIT);
                let mut n = 0usize;
                for chunk in stream.chunks(CHUNK) {
                    parser.feed(black_box(chunk), |e| n += e.data.len());
                }
                n
            })
        });
        g.bench_with_input(
            BenchmarkId::new("response_observer", name),
            stream,
            |b, stream| {
                b.iter(|| {
                    let mut obs =
                        ResponseObserver::new(200, Some("text/event-stream"), None, LIMIT);
                    for chunk in stream.chunks(CHUNK) {
                        obs.feed(black_box(chunk));
                    }
                    obs.finish(false)
                })
            },
        );
        // Telemetry with token counting on: the final result's isError and tokens too.
        g.bench_with_input(
            BenchmarkId::new("response_observer_counting", name),
            stream,
            |b, stream| {
                b.iter(|| {
                    let mut obs =
                        ResponseObserver::new(200, Some("text/event-stream"), None, LIMIT)
                            .measure(Some(TokenCounting::default()), Measure::ToolResult);
                    for chunk in stream.chunks(CHUNK) {
                        obs.feed(black_box(chunk));
                    }
                    obs.finish(false)
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("stream_rewriter", name),
            stream,
            |b, stream| {
                b.iter(|| {
                    let mut rw = StreamRewriter::new("s1", LIMIT);
                    let mut n = 0usize;
                    for chunk in stream.chunks(CHUNK) {
                        n += match rw.feed(black_box(chunk), |m| {
                            black_box(m);
                        }) {
                            Emit::Unchanged => chunk.len(),
                            Emit::Replace(bytes) => bytes.len(),
                        };
                    }
                    n + rw.finish().len()
                })
            },
        );
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
