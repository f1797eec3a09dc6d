//! The decision cache answers exactly what evaluation would: checked by running the same
//! requests through a policy with and without the cache.

use std::collections::BTreeSet;

use serde_json::json;
use serde_json::value::RawValue;

use super::*;

fn compile(rego: &str, entries: Option<u32>) -> Policy {
    let raw = RawPolicyConfig {
        modules: vec![RawModule {
            name: "p.rego".into(),
            rego: format!("package mcp\n{rego}\n"),
        }],
        claims: Some(vec!["roles".into(), "tenant".into()]),
        headers: Some(vec!["x-tenant".into()]),
        cache_entries: entries,
        ..Default::default()
    };
    match Policy::compile(raw) {
        Ok(p) => p,
        Err(e) => panic!("policy does not compile: {e}"),
    }
}

fn analysis(rego: &str) -> check::Analysis {
    let mut engine = regorus::Engine::new();
    if let Err(e) = engine.add_policy("p.rego".into(), format!("package mcp\n{rego}\n")) {
        panic!("{e}");
    }
    check::analyse(engine.get_modules())
}

#[test]
fn the_walk_finds_which_input_members_a_policy_reads() {
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let cases: &[(&str, bool, &[&str], bool)] = &[
        (
            "allow if input.tool.name == \"echo\"",
            false,
            &["tool"],
            false,
        ),
        (
            "allow if { \"admin\" in input.subject.claims.roles; input[\"server\"] == \"a\" }",
            false,
            &["server", "subject"],
            false,
        ),
        (
            "import input.arguments as args\nallow if args.n > 1",
            false,
            &["arguments"],
            false,
        ),
        (
            "allow if { x := input; x.tool.name == \"echo\" }",
            true,
            &[],
            false,
        ),
        ("allow if { some k; input[k] == 1 }", true, &[], false),
        (
            "import input\nallow if input.tool.name == \"a\"",
            true,
            &["tool"],
            false,
        ),
        ("allow if rand.intn(\"x\", 10) > 5", false, &[], true),
        (
            "f(x) := x.name\nallow if f(input.tool) == \"echo\"\nallow if input.time.hour < 8",
            false,
            &["time", "tool"],
            false,
        ),
        (
            "a if input.tool.name == \"x\"\nallow if a with input as {\"tool\": {\"name\": \"x\"}}",
            true,
            &["tool"],
            false,
        ),
    ];
    for (rego, whole, fields, nondet) in cases {
        let a = analysis(rego);
        assert_eq!(
            (a.whole_input, a.input_fields, a.nondeterministic),
            (*whole, set(fields), *nondet),
            "{rego}"
        );
    }
}

fn claims(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn raw(json: &str) -> Box<RawValue> {
    match RawValue::from_string(json.to_owned()) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

/// Policies reading different members (and one reading `input` whole).
const POLICIES: &[&str] = &[
    "default allow := false\nallow if { \"admin\" in input.subject.claims.roles }\nallow if { input.tool.name == \"echo\"; input.subject.sub == \"alice\" }",
    "default allow := false\nallow if input.arguments.n < 3\nreason := \"too_big\" if input.arguments.n >= 3",
    "default allow := false\nallow if input.time.unix % 2 == 0",
    "default allow := false\nallow if { x := input; x.tool.name == \"echo\"; x.arguments.n == 1 }",
    "default allow := false\nallow if input.headers[\"x-tenant\"] == input.subject.claims.tenant",
    "decision := {\"allow\": input.server != \"b\", \"reason\": \"server\", \"redact\": [sprintf(\"%v\", [input.session])]}",
    "default allow := false\nallow if input.tool.name == \"echo\"\nredact contains \"password\" if input.arguments.password",
];

#[test]
fn cached_decisions_equal_evaluated_ones_for_every_request() {
    let admin = claims(json!({"roles": ["admin"], "tenant": "acme"}));
    let reader = claims(json!({"roles": ["reader"], "tenant": "beta"}));
    let subjects = [
        Subject::default(),
        Subject {
            sub: Some("alice"),
            claims: Some(&reader),
            ..Default::default()
        },
        Subject {
            sub: Some("bob"),
            claims: Some(&admin),
            ..Default::default()
        },
        // Same sub, other claims: the key must tell them apart.
        Subject {
            sub: Some("alice"),
            claims: Some(&admin),
            ..Default::default()
        },
    ];
    let args = [
        None,
        Some(raw(r#"{"n": 1}"#)),
        Some(raw(r#"{"n": 5}"#)),
        Some(raw(r#"{"n":1,"password":"x"}"#)),
    ];
    let headers: [&[(&str, &str)]; 3] = [&[], &[("X-Tenant", "acme")], &[("x-tenant", "beta")]];
    for rego in POLICIES {
        let cached = compile(rego, None);
        let plain = compile(rego, Some(0));
        assert!(
            cached.caches_decisions() && !plain.caches_decisions(),
            "{rego}"
        );
        // Twice over, so the second round is answered from the cache.
        for _round in 0..2 {
            for subject in subjects {
                for a in &args {
                    for h in headers {
                        for (tool, server, session, time) in [
                            ("echo", Some("a"), Some("s1"), 100),
                            ("echo", Some("b"), Some("s2"), 101),
                            ("add", None, None, 100),
                        ] {
                            let req = Request {
                                subject,
                                method: "tools/call",
                                server,
                                target: Target::Tool(tool),
                                arguments: a.as_deref(),
                                session,
                                headers: h,
                                unix_seconds: time,
                            };
                            assert_eq!(
                                cached.decide_request(&req),
                                plain.decide_request(&req),
                                "{rego}\n{req:?}"
                            );
                        }
                    }
                }
            }
        }
        let counts = cached.cache_counts();
        assert!(counts.hits > 0 && counts.misses > 0, "{rego}: {counts:?}");
    }
}

#[test]
fn a_policy_that_ignores_the_arguments_is_answered_from_the_cache_whatever_they_are() {
    let p = compile(POLICIES[0], None);
    let roles = claims(json!({"roles": ["admin"]}));
    let subject = Subject {
        sub: Some("bob"),
        claims: Some(&roles),
        ..Default::default()
    };
    for n in 0..50 {
        let a = raw(&format!(r#"{{"n": {n}}}"#));
        let d = p.decide_cached(&Request {
            subject,
            method: "tools/call",
            target: Target::Tool("echo"),
            arguments: Some(&a),
            unix_seconds: n,
            ..Default::default()
        });
        assert!(d.0.allow);
        assert_eq!(
            d.1,
            if n == 0 {
                CacheUse::Miss
            } else {
                CacheUse::Hit
            }
        );
    }
    assert_eq!(
        p.cache_counts(),
        CacheCounts {
            hits: 49,
            misses: 1
        }
    );
}

#[test]
fn failures_and_huge_arguments_are_not_cached() {
    // (A policy calling `rand.intn` is not cached either, but this build leaves that builtin out
    // and refuses such a policy at configure; the walk test above shows it would be flagged.)
    let failing = compile("allow if count(input.arguments) > 0", None);
    for _ in 0..3 {
        let d = failing.decide_cached(&Request {
            method: "tools/call",
            target: Target::Tool("echo"),
            ..Default::default()
        });
        assert_eq!(d.0.reason.as_deref(), Some(reason::POLICY_ERROR));
        assert_eq!(d.1, CacheUse::Miss);
    }

    let p = compile(POLICIES[1], None);
    let big = raw(&format!(
        r#"{{"n": 1, "pad": "{}"}}"#,
        "x".repeat(cache::MAX_KEY_BYTES)
    ));
    let req = Request {
        method: "tools/call",
        target: Target::Tool("echo"),
        arguments: Some(&big),
        ..Default::default()
    };
    assert_eq!(
        p.decide_cached(&req),
        (p.decide_request(&req), CacheUse::Bypass)
    );
    assert!(p.decide_request(&req).allow);
}

#[test]
fn the_cache_holds_at_most_its_configured_entries() {
    let p = compile("allow if input.tool.name != \"x\"", Some(4));
    let names: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    for name in &names {
        let d = p.decide_request(&Request {
            method: "tools/call",
            target: Target::Tool(name),
            ..Default::default()
        });
        assert!(d.allow);
        assert!(p.cached_len() <= 4);
    }
    assert_eq!(p.cache_counts().misses, 10);
}

#[test]
fn cache_entries_is_read_from_config_in_camel_case() {
    let raw: RawPolicyConfig = match serde_json::from_value(json!({
        "modules": [{"name": "p.rego", "rego": "package mcp\nallow := true"}],
        "cacheEntries": 0
    })) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(raw.cache_entries, Some(0));
}
