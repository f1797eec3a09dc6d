//! Cost of per-tool authorization: building the input document, deciding, filtering a list.
//!
//! `cargo bench -p mcp-gateway-core --bench policy`. Native numbers; inside V8 expect roughly
//! 2-4x (see shared/ENVOY_WASM_FACTS.md). Record the machine with the numbers.

// A benchmark harness, not production code: a broken fixture should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use mcp_gateway_core::policy::{
    ListItem, ListKind, Policy, RawModule, RawPolicyConfig, Request, Subject, Target,
};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value as Json};

const DEMO: &str = include_str!("../../../policies/demo.rego");
const ARGUMENTS: &str = include_str!("../../../policies/arguments.rego");

/// About the smallest useful policy: one set lookup.
const TINY: &str = r#"package mcp
default allow := false
allow if input.tool.name in {"echo", "get-sum"}
"#;

/// The demo policy's decisions as one `decision` object, for comparing one evaluation of an
/// object with one or two evaluations of `allow` (and `reason`).
const DEMO_DECISION: &str = r#"
decision := {"allow": true} if allow
decision := {"allow": false, "reason": reason} if not allow
"#;

fn compile(rego: &str) -> Policy {
    Policy::compile(RawPolicyConfig {
        modules: vec![RawModule {
            name: "bench.rego".into(),
            rego: rego.into(),
        }],
        claims: Some(vec!["roles".into()]),
        ..Default::default()
    })
    .unwrap()
}

/// The demo policy without its `visible_*` rules: lists are then filtered item by item.
fn demo_without_visible_rules() -> String {
    let cut = DEMO.find("# tools/list and prompts/list").unwrap();
    DEMO[..cut].to_owned()
}

fn claims(role: &str) -> Map<String, Json> {
    match json!({"sub": "bench", "roles": [role], "email": "bench@example.com"}) {
        Json::Object(m) => m,
        _ => unreachable!(),
    }
}

fn bench(c: &mut Criterion) {
    let demo = compile(DEMO);
    let reader = claims("reader");
    let scopes = vec!["mcp:tools".to_owned()];
    let args = RawValue::from_string(r#"{"message":"hello, world"}"#.to_owned()).unwrap();
    let req = |tool: &'static str| Request {
        subject: Subject {
            sub: Some("bench"),
            iss: Some("https://idp.example"),
            scopes: &scopes,
            claims: Some(&reader),
        },
        method: "tools/call",
        server: Some("everything"),
        target: Target::Tool(tool),
        arguments: Some(&args),
        session: Some("0123456789abcdef"),
        headers: &[],
        unix_seconds: 1_777_636_800,
    };

    let mut g = c.benchmark_group("policy/input");
    g.bench_function("direct_value", |b| {
        b.iter(|| black_box(demo.input(black_box(&req("echo")))))
    });
    // The alternative: write the document as JSON text, let regorus parse it.
    g.bench_function("json_text", |b| {
        b.iter(|| {
            let r = req("echo");
            let doc = json!({
                "subject": {"sub": r.subject.sub, "iss": r.subject.iss, "scopes": r.subject.scopes,
                            "claims": {"roles": reader.get("roles")}},
                "method": r.method, "server": r.server, "tool": {"name": "echo"},
                "prompt": null, "resource": null,
                "arguments": r.arguments.map(|a| serde_json::from_str::<Json>(a.get()).unwrap()),
                "session": r.session, "headers": {},
                "time": {"rfc3339": "2026-05-01T12:00:00Z", "unix": r.unix_seconds,
                         "weekday": "Friday", "hour": 12, "minute": 0}
            });
            let text = serde_json::to_string(&doc).unwrap();
            black_box(regorus::Value::from_json_str(&text).unwrap())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("policy/decide");
    let tiny = compile(TINY);
    let allow_input = demo.input(&req("echo"));
    assert!(tiny.decide(&allow_input).allow);
    g.bench_function("tiny_policy_allow", |b| {
        b.iter(|| black_box(tiny.decide(black_box(&allow_input))))
    });
    let deny_input = demo.input(&req("get-env"));
    assert!(demo.decide(&allow_input).allow);
    assert!(!demo.decide(&deny_input).allow);
    g.bench_function("allow_1_eval", |b| {
        b.iter(|| black_box(demo.decide(black_box(&allow_input))))
    });
    g.bench_function("deny_with_reason_2_evals", |b| {
        b.iter(|| black_box(demo.decide(black_box(&deny_input))))
    });
    let object = compile(&format!("{DEMO}\n{DEMO_DECISION}"));
    assert_eq!(object.decide(&deny_input), demo.decide(&deny_input));
    g.bench_function("allow_decision_object", |b| {
        b.iter(|| black_box(object.decide(black_box(&allow_input))))
    });
    g.bench_function("deny_decision_object", |b| {
        b.iter(|| black_box(object.decide(black_box(&deny_input))))
    });
    let files = compile(ARGUMENTS);
    let write_args =
        RawValue::from_string(r#"{"path":"/srv/shared/uploads/a.txt","content":"hi"}"#.to_owned())
            .unwrap();
    let write = files.input(&Request {
        method: "tools/call",
        target: Target::Tool("write_file"),
        arguments: Some(&write_args),
        ..Default::default()
    });
    assert_eq!(files.decide(&write).redact, ["content"]);
    g.bench_function("allow_with_redact_2_evals", |b| {
        b.iter(|| black_box(files.decide(black_box(&write))))
    });
    let uncached = Policy::compile(RawPolicyConfig {
        modules: vec![RawModule {
            name: "bench.rego".into(),
            rego: DEMO.into(),
        }],
        claims: Some(vec!["roles".into()]),
        cache_entries: Some(0),
        ..Default::default()
    })
    .unwrap();
    g.bench_function("build_input_and_decide", |b| {
        b.iter(|| black_box(uncached.decide_request(black_box(&req("echo")))))
    });
    // The decision cache: demo.rego does not read the arguments, so every repeat is a hit.
    assert_eq!(
        demo.decide_request(&req("echo")),
        uncached.decide_request(&req("echo"))
    );
    g.bench_function("decision_cache_hit", |b| {
        b.iter(|| black_box(demo.decide_request(black_box(&req("echo")))))
    });
    g.finish();

    let mut g = c.benchmark_group("policy/list_50_tools");
    let names: Vec<String> = (0..50)
        .map(|i| match i % 5 {
            0 => "echo".to_owned(),
            1 => "get-sum".to_owned(),
            _ => format!("tool-{i}"),
        })
        .collect();
    let items: Vec<ListItem<'_>> = names
        .iter()
        .map(|n| ListItem {
            name: n,
            server: Some("everything"),
        })
        .collect();
    let list_input = demo.input(&Request {
        method: "tools/list",
        ..req("echo")
    });
    let each = compile(&demo_without_visible_rules());
    assert_eq!(
        each.visible(&list_input, ListKind::Tools, &items),
        demo.visible(&list_input, ListKind::Tools, &items)
    );
    g.bench_function("per_item", |b| {
        b.iter(|| black_box(each.visible(&list_input, ListKind::Tools, black_box(&items))))
    });
    g.bench_function("visible_tools_rule", |b| {
        b.iter(|| black_box(demo.visible(&list_input, ListKind::Tools, black_box(&items))))
    });
    g.finish();

    let mut g = c.benchmark_group("policy/configure");
    g.bench_function("compile_demo", |b| b.iter(|| black_box(compile(DEMO))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
