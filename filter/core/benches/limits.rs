//! Cost of the shared-state guardrails per request, natively against the in-memory store
//! (inside V8 expect roughly 1.5–2× plus the host calls: one get and one set per rule).
//!
//! `cargo bench -p mcp-gateway-core --bench limits`

// A benchmark harness, not production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use mcp_gateway_core::limits::{Caller, Limits, RawLimits, Usage};
use mcp_gateway_core::pinning::{fingerprint_tool, Pinning};
use mcp_gateway_core::result_cache::{CallFacts, RawResultCache, ResultCache};
use mcp_gateway_core::selector::Target;
use mcp_gateway_core::store::{ensure_keys, MemoryStore};
use serde_json::value::RawValue;

const CALL: Target<'static> = Target {
    server: Some("github"),
    tool: Some("create_issue"),
    method: Some("tools/call"),
};

fn limits(c: &mut Criterion) {
    let raw: RawLimits = serde_json::from_str(
        r#"{"rateLimits":[{"name":"calls","requests":1000000,"perSeconds":1,"by":["subject","tool"]}],
            "tokenBudgets":[{"name":"hourly","tokens":1000000000000,"windowSeconds":3600}]}"#,
    )
    .unwrap();
    let l = Limits::compile(raw, "limits").unwrap();
    let store = MemoryStore::new();
    ensure_keys(&store, l.shared_keys()).unwrap();
    let caller = Caller {
        subject: Some("alice@example.com"),
        client_address: None,
    };
    let mut now = 1_700_000_000_000u64;
    c.bench_function("rate limit check (1 rule, admitted)", |b| {
        b.iter(|| {
            now += 1;
            black_box(l.check_rate(&store, &caller, &CALL, now))
        })
    });
    c.bench_function("budget check + charge (1 budget)", |b| {
        b.iter(|| {
            black_box(l.check_budget(&store, &caller, &CALL, now));
            black_box(l.charge_budget(
                &store,
                &caller,
                &CALL,
                Usage {
                    tokens: Some(100),
                    bytes: 400,
                },
                now,
            ))
        })
    });
}

fn cache(c: &mut Criterion) {
    let raw: RawResultCache =
        serde_json::from_str(r#"{"tools":[{"tool":"*"}],"scope":"subject"}"#).unwrap();
    let cache = ResultCache::compile(raw, "resultCache").unwrap();
    // About 1 KiB of arguments.
    let args = format!(
        r#"{{"query":"{}","filters":{{"state":"open","labels":["bug","p1"],"limit":50}},"page":3}}"#,
        "word ".repeat(180)
    );
    let args = RawValue::from_string(args).unwrap();
    let facts = CallFacts {
        scope_value: Some("alice"),
        server: Some("github"),
        tool: "search_issues",
        arguments: Some(&args),
        protocol_version: "2025-11-25",
    };
    c.bench_function("cache key (1 KiB arguments)", |b| {
        b.iter(|| black_box(cache.key(black_box(&facts), false)))
    });
    let store = MemoryStore::new();
    let key = cache.key(&facts, false).unwrap();
    let response = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"content":[{{"type":"text","text":"{}"}}]}}}}"#,
        "x".repeat(4096)
    );
    c.bench_function("cache store (4 KiB result)", |b| {
        b.iter(|| black_box(cache.store(&store, &key, response.as_bytes(), 0)))
    });
    c.bench_function("cache lookup hit (4 KiB result)", |b| {
        b.iter(|| black_box(cache.lookup(&store, &key, 1)))
    });
}

fn pinning(c: &mut Criterion) {
    let tool = r#"{"name":"create_issue","description":"Create a new issue in a GitHub repository.","inputSchema":{"type":"object","properties":{"owner":{"type":"string","description":"Repository owner"},"repo":{"type":"string","description":"Repository name"},"title":{"type":"string"},"body":{"type":"string"},"labels":{"type":"array","items":{"type":"string"}}},"required":["owner","repo","title"]},"annotations":{"destructiveHint":false}}"#;
    c.bench_function("tool fingerprint (600 B tool)", |b| {
        b.iter(|| black_box(fingerprint_tool(black_box(tool))))
    });
    let sightings: Vec<_> = (0..20)
        .map(|i| fingerprint_tool(&tool.replace("create_issue", &format!("tool_{i}"))).unwrap())
        .collect();
    let p = Pinning::default();
    let store = MemoryStore::new();
    p.observe(&store, Some("github"), &sightings);
    c.bench_function("pin observe (20 tools, unchanged)", |b| {
        b.iter(|| black_box(p.observe(&store, Some("github"), &sightings)))
    });
    c.bench_function("registry lookup for a call (20 tools)", |b| {
        b.iter(|| black_box(p.lookup(&store, Some("github"), "tool_7")))
    });
}

criterion_group!(benches, limits, cache, pinning);
criterion_main!(benches);
