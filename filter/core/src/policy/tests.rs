use proptest::prelude::*;
use serde_json::json;

use super::input::Civil;
use super::*;

fn module(name: &str, rego: &str) -> RawModule {
    RawModule {
        name: name.into(),
        rego: rego.into(),
    }
}

fn policy(rego: &str) -> Policy {
    match Policy::compile(RawPolicyConfig {
        modules: vec![module("p.rego", rego)],
        ..Default::default()
    }) {
        Ok(p) => p,
        Err(e) => panic!("policy does not compile: {e}"),
    }
}

fn compile_err(raw: RawPolicyConfig) -> String {
    match Policy::compile(raw) {
        Ok(_) => panic!("expected a configuration error"),
        Err(e) => e.to_string(),
    }
}

fn one(rego: &str) -> RawPolicyConfig {
    RawPolicyConfig {
        modules: vec![module("p.rego", rego)],
        ..Default::default()
    }
}

fn call(tool: &str) -> Request<'_> {
    Request {
        method: "tools/call",
        target: Target::Tool(tool),
        ..Default::default()
    }
}

fn raw(json: &str) -> Box<RawValue> {
    match RawValue::from_string(json.to_owned()) {
        Ok(r) => r,
        Err(e) => panic!("bad fixture {json}: {e}"),
    }
}

use serde_json::value::RawValue;

// ---------------------------------------------------------------------------------------------
// The input document

#[test]
fn input_document_has_the_documented_shape() {
    let p = match Policy::compile(RawPolicyConfig {
        modules: vec![module("p.rego", "package mcp\ndefault allow := false")],
        claims: Some(vec!["roles".into(), "tenant".into(), "absent".into()]),
        headers: Some(vec!["X-Tenant".into(), "user-agent".into()]),
        ..Default::default()
    }) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    let claims = match json!({
        "sub": "alice", "iss": "https://idp.example", "roles": ["reader"], "tenant": "acme",
        "email": "alice@example.com"
    }) {
        serde_json::Value::Object(m) => m,
        _ => unreachable!(),
    };
    let scopes = vec!["mcp:read".to_owned(), "mcp:write".to_owned()];
    let args = raw(r#"{"path": "/srv/a.txt", "opts": {"n": 2, "x": [true, null, 1.5]}}"#);
    let headers = [
        ("x-tenant", "acme"),
        ("Authorization", "Bearer secret"),
        ("X-TENANT", "acme-2"),
        ("User-Agent", "test/1"),
    ];
    let req = Request {
        subject: Subject {
            sub: Some("alice"),
            iss: Some("https://idp.example"),
            scopes: &scopes,
            claims: Some(&claims),
        },
        method: "tools/call",
        server: Some("files"),
        target: Target::Tool("read_file"),
        arguments: Some(&args),
        session: Some("s-1"),
        headers: &headers,
        unix_seconds: 1_777_636_800, // 2026-05-01T12:00:00Z, a Friday
    };
    let doc: serde_json::Value = match serde_json::from_str(&p.input(&req).to_json()) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    let golden = json!({
        "subject": {
            "sub": "alice",
            "iss": "https://idp.example",
            "scopes": ["mcp:read", "mcp:write"],
            "claims": {"roles": ["reader"], "tenant": "acme"}
        },
        "method": "tools/call",
        "server": "files",
        "tool": {"name": "read_file"},
        "prompt": null,
        "resource": null,
        "arguments": {"path": "/srv/a.txt", "opts": {"n": 2, "x": [true, null, 1.5]}},
        "session": "s-1",
        "headers": {"x-tenant": "acme,acme-2", "user-agent": "test/1"},
        "time": {
            "rfc3339": "2026-05-01T12:00:00Z",
            "unix": 1_777_636_800u64,
            "weekday": "Friday",
            "hour": 12,
            "minute": 0
        }
    });
    assert_eq!(doc, golden);
}

#[test]
fn anonymous_request_without_target_has_every_member_present_as_null_or_empty() {
    let p = policy("package mcp\ndefault allow := false");
    let doc: serde_json::Value = match serde_json::from_str(
        &p.input(&Request {
            method: "ping",
            ..Default::default()
        })
        .to_json(),
    ) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        doc,
        json!({
            "subject": {"sub": null, "iss": null, "scopes": [], "claims": {}},
            "method": "ping",
            "server": null,
            "tool": null,
            "prompt": null,
            "resource": null,
            "arguments": null,
            "session": null,
            "headers": {},
            "time": {"rfc3339": "1970-01-01T00:00:00Z", "unix": 0, "weekday": "Thursday",
                     "hour": 0, "minute": 0}
        })
    );
}

#[test]
fn targets_land_in_tool_prompt_or_resource() {
    let p = policy("package mcp\ndefault allow := false");
    let cases = [
        (
            "tools/call",
            Some("echo"),
            None,
            json!({"name": "echo"}),
            "tool",
        ),
        (
            "prompts/get",
            Some("simple-prompt"),
            None,
            json!({"name": "simple-prompt"}),
            "prompt",
        ),
        (
            "resources/read",
            None,
            Some("demo://x"),
            json!({"uri": "demo://x"}),
            "resource",
        ),
        (
            "resources/subscribe",
            None,
            Some("demo://y"),
            json!({"uri": "demo://y"}),
            "resource",
        ),
    ];
    for (method, name, uri, expected, member) in cases {
        let req = Request {
            method,
            target: Target::of(method, name, uri),
            ..Default::default()
        };
        let doc: serde_json::Value =
            serde_json::from_str(&p.input(&req).to_json()).unwrap_or_default();
        assert_eq!(doc[member], expected, "{method}");
    }
    assert_eq!(Target::of("tools/list", Some("x"), None), Target::None);
}

#[test]
fn params_arguments_reads_only_the_arguments_member() {
    let cases: [(&[u8], Option<&str>); 6] = [
        (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":[1,2]}}}"#, Some(r#"{"a":[1,2]}"#)),
        (br#"{"method":"tools/call","params":{"name":"x"}}"#, None),
        (br#"{"method":"tools/call","params":null}"#, None),
        (br#"{"method":"tools/call","params":{"arguments":null}}"#, None),
        (br#"[1]"#, None),
        (b"not json", None),
    ];
    for (body, expected) in cases {
        assert_eq!(params_arguments(body).map(RawValue::get), expected);
    }
}

#[test]
fn civil_time_matches_known_dates() {
    let cases = [
        (0, "1970-01-01T00:00:00Z", "Thursday"),
        (951_782_400, "2000-02-29T00:00:00Z", "Tuesday"),
        (1_709_251_199, "2024-02-29T23:59:59Z", "Thursday"),
        (1_777_636_800, "2026-05-01T12:00:00Z", "Friday"),
        (4_102_444_800, "2100-01-01T00:00:00Z", "Friday"),
        (253_402_300_799, "9999-12-31T23:59:59Z", "Friday"),
    ];
    for (unix, rfc, weekday) in cases {
        let c = Civil::from_unix(unix);
        assert_eq!(
            (c.rfc3339().as_str(), c.weekday_name()),
            (rfc, weekday),
            "{unix}"
        );
    }
}

proptest! {
    #[test]
    fn civil_time_never_panics_and_stays_in_range(unix in any::<u64>()) {
        let c = Civil::from_unix(unix);
        prop_assert!((1..=12).contains(&c.month));
        prop_assert!((1..=31).contains(&c.day));
        prop_assert!(c.hour < 24 && c.minute < 60 && c.second < 60 && c.weekday < 7);
    }

    #[test]
    fn consecutive_days_advance_the_weekday(day in 0u64..3_000_000) {
        let a = Civil::from_unix(day * 86_400);
        let b = Civil::from_unix((day + 1) * 86_400);
        prop_assert_eq!((a.weekday + 1) % 7, b.weekday);
    }

    #[test]
    fn params_arguments_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = params_arguments(&body);
    }

    #[test]
    fn deciding_on_arbitrary_names_and_arguments_never_panics(
        tool in ".{0,40}",
        server in proptest::option::of(".{0,20}"),
        arg in "[ -~]{0,40}",
        unix in any::<u64>(),
    ) {
        let p = policy(POLICY);
        let args = serde_json::to_string(&json!({"path": arg, "n": [1, {"x": arg}]}))
            .unwrap_or_default();
        let args = raw(&args);
        let req = Request {
            method: "tools/call",
            server: server.as_deref(),
            target: Target::Tool(&tool),
            arguments: Some(&args),
            unix_seconds: unix,
            ..Default::default()
        };
        let d = p.decide_request(&req);
        prop_assert!(d.allow == (tool == "echo"));
    }
}

// ---------------------------------------------------------------------------------------------
// Decisions

const POLICY: &str = r#"package mcp

default allow := false
allow if input.tool.name == "echo"

reason := "tool_not_allowed" if not allow

redact contains "password" if input.arguments.password
redact contains "auth.token" if input.arguments.auth.token
"#;

#[test]
fn only_the_boolean_true_allows() {
    let cases: [(&str, &str, bool, Option<&str>); 7] = [
        ("allow if input.tool.name == \"echo\"", "echo", true, None),
        ("default allow := false\nallow if input.tool.name == \"echo\"", "add", false, None),
        ("allow if input.tool.name == \"echo\"", "add", false, Some(reason::NO_DECISION)),
        ("allow := \"yes\"", "echo", false, Some(reason::POLICY_ERROR)),
        ("allow := 1", "echo", false, Some(reason::POLICY_ERROR)),
        ("allow := {\"a\": true}", "echo", false, Some(reason::POLICY_ERROR)),
        // Two complete definitions that disagree: a runtime conflict error.
        ("allow := true if input.method == \"tools/call\"\nallow := false if input.tool.name == \"echo\"", "echo", false, Some(reason::POLICY_ERROR)),
    ];
    for (rules, tool, allow, why) in cases {
        let p = policy(&format!("package mcp\n{rules}\n"));
        let d = p.decide_request(&call(tool));
        assert_eq!(
            (d.allow, d.reason.as_deref()),
            (allow, why),
            "{rules} / {tool}"
        );
        assert_eq!(
            d.error.is_some(),
            why == Some(reason::POLICY_ERROR),
            "{rules}"
        );
    }
}

#[test]
fn evaluation_errors_deny_and_say_where() {
    let p = policy("package mcp\nallow if count(input.arguments) > 0");
    let d = p.decide_request(&call("echo"));
    assert!(!d.allow);
    assert_eq!(d.reason.as_deref(), Some(reason::POLICY_ERROR));
    let error = d.error.unwrap_or_default();
    assert!(error.starts_with("data.mcp.allow: p.rego:2:"), "{error}");
    assert!(error.contains("count"), "{error}");
}

#[test]
fn a_denial_carries_the_policy_reason_and_an_allow_none() {
    let p = policy(POLICY);
    let denied = p.decide_request(&call("add"));
    assert_eq!(
        (denied.allow, denied.reason.as_deref()),
        (false, Some("tool_not_allowed"))
    );
    let allowed = p.decide_request(&call("echo"));
    assert_eq!((allowed.allow, allowed.reason), (true, None));
}

#[test]
fn a_non_string_reason_is_ignored() {
    let p = policy("package mcp\ndefault allow := false\nreason := 42");
    assert_eq!(p.decide_request(&call("x")).reason, None);
}

#[test]
fn redact_obligations_are_read_for_allowed_and_denied_calls() {
    let p = policy(POLICY);
    let args = raw(r#"{"password": "hunter2", "auth": {"token": "t"}}"#);
    for (tool, allow) in [("echo", true), ("add", false)] {
        let d = p.decide_request(&Request {
            arguments: Some(&args),
            ..call(tool)
        });
        assert_eq!(d.allow, allow);
        let mut redact = d.redact.clone();
        redact.sort();
        assert_eq!(redact, ["auth.token", "password"], "{tool}");
    }
    assert!(p.decide_request(&call("echo")).redact.is_empty());
}

#[test]
fn a_malformed_obligation_denies_even_an_allowed_call() {
    for redact in ["redact := \"password\"", "redact := [1, 2]"] {
        let p = policy(&format!("package mcp\nallow := true\n{redact}"));
        let d = p.decide_request(&call("echo"));
        assert_eq!(
            (d.allow, d.reason.as_deref()),
            (false, Some(reason::POLICY_ERROR)),
            "{redact}"
        );
    }
    let p = policy("package mcp\nallow := true\nredact := [\"a\", \"b.c\"]");
    assert_eq!(p.decide_request(&call("echo")).redact, ["a", "b.c"]);
}

#[test]
fn a_decision_object_is_read_in_one_evaluation() {
    let p = policy(
        r#"package mcp
decision := {"allow": true, "redact": {"password"}} if input.tool.name == "echo"
decision := {"allow": false, "reason": "nope"} if input.tool.name == "add"
decision := {"allow": "true"} if input.tool.name == "bad"
decision := {"reason": "no allow member"} if input.tool.name == "noallow"
decision := {"allow": true, "redact": "password"} if input.tool.name == "badredact"
decision := 7 if input.tool.name == "seven"
"#,
    );
    let cases = [
        ("echo", true, None, vec!["password"]),
        ("add", false, Some("nope"), vec![]),
        ("other", false, Some(reason::NO_DECISION), vec![]),
        ("bad", false, Some(reason::POLICY_ERROR), vec![]),
        ("noallow", false, Some(reason::NO_DECISION), vec![]),
        ("badredact", false, Some(reason::POLICY_ERROR), vec![]),
        ("seven", false, Some(reason::POLICY_ERROR), vec![]),
    ];
    for (tool, allow, why, redact) in cases {
        let d = p.decide_request(&call(tool));
        assert_eq!(
            (
                d.allow,
                d.reason.as_deref(),
                d.redact.iter().map(String::as_str).collect::<Vec<_>>()
            ),
            (allow, why, redact),
            "{tool}"
        );
    }
}

#[test]
fn a_decision_rule_takes_precedence_over_allow() {
    let p = policy("package mcp\nallow := true\ndecision := {\"allow\": false, \"reason\": \"d\"}");
    let d = p.decide_request(&call("echo"));
    assert_eq!((d.allow, d.reason.as_deref()), (false, Some("d")));
}

#[test]
fn evaluations_do_not_leak_into_each_other() {
    let p = policy(POLICY);
    let args = raw(r#"{"password": "x"}"#);
    for _ in 0..3 {
        let with_args = p.decide_request(&Request {
            arguments: Some(&args),
            ..call("echo")
        });
        assert_eq!(with_args.redact, ["password"]);
        assert!(p.decide_request(&call("echo")).redact.is_empty());
        assert!(!p.decide_request(&call("add")).allow);
    }
    // After a failed evaluation the scratch engine is replaced; later decisions still work.
    let flaky = policy("package mcp\nallow if count(input.arguments) > 0");
    assert!(flaky.decide_request(&call("x")).error.is_some());
    assert!(
        flaky
            .decide_request(&Request {
                arguments: Some(&args),
                ..call("x")
            })
            .allow
    );
    // A clone decides like the original.
    let cloned = p.clone();
    assert!(cloned.decide_request(&call("echo")).allow);
    assert!(!cloned.decide_request(&call("add")).allow);
}

#[test]
fn a_reentrant_evaluation_uses_a_fresh_engine() {
    let p = policy(POLICY);
    let input = p.input(&call("echo"));
    let nested = p.with_engine(|_outer| (p.decide(&input), true));
    assert!(nested.allow);
}

#[test]
fn data_from_the_config_is_visible_to_the_policy() {
    let p = match Policy::compile(RawPolicyConfig {
        modules: vec![module(
            "p.rego",
            "package mcp\ndefault allow := false\nallow if input.tool.name in data.allowed",
        )],
        data: Some(json!({"allowed": ["echo"]})),
        ..Default::default()
    }) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    assert!(p.decide_request(&call("echo")).allow);
    assert!(!p.decide_request(&call("add")).allow);
}

#[test]
fn a_nested_package_can_be_configured() {
    for package in ["acme.gateway", "data.acme.gateway"] {
        let p = match Policy::compile(RawPolicyConfig {
            modules: vec![module("p.rego", "package acme.gateway\nallow := true")],
            package: Some(package.into()),
            ..Default::default()
        }) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        assert!(p.decide_request(&call("echo")).allow, "{package}");
    }
}

#[test]
fn methods_default_to_the_calls_and_star_means_all() {
    let p = policy(POLICY);
    for (method, applies) in [
        ("tools/call", true),
        ("prompts/get", true),
        ("resources/read", true),
        ("tools/list", false),
        ("initialize", false),
    ] {
        assert_eq!(p.applies_to(method), applies, "{method}");
    }
    let all = match Policy::compile(RawPolicyConfig {
        methods: Some(vec!["*".into()]),
        ..one(POLICY)
    }) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    assert!(all.applies_to("initialize"));
    let listed = match Policy::compile(RawPolicyConfig {
        methods: Some(vec!["tools/call".into()]),
        headers: Some(vec!["X-Tenant".into()]),
        ..one(POLICY)
    }) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    assert!(listed.applies_to("tools/call") && !listed.applies_to("prompts/get"));
    assert_eq!(listed.header_names(), ["X-Tenant"]);
}

// ---------------------------------------------------------------------------------------------
// Configuration errors

#[test]
fn a_module_that_does_not_parse_is_a_config_error_naming_module_and_line() {
    let e = compile_err(RawPolicyConfig {
        modules: vec![
            module("base.rego", "package mcp\ndefault allow := false"),
            module("rbac.rego", "package mcp\n\nallow if {\n  x := \n}"),
        ],
        ..Default::default()
    });
    assert!(
        e.starts_with("policy.modules[1] (rbac.rego): rbac.rego:4:"),
        "{e}"
    );
    assert!(!e.contains('\n'), "one line for Envoy's log: {e}");
}

#[test]
fn an_unknown_function_is_a_config_error_naming_module_and_line() {
    let cases = [
        "allow if regex.match(\"^a\", input.method)",
        "allow if time.now_ns() > 0",
        "allow if nosuch(input.method)",
        "allow if { some x in input.items; glob.match(\"*\", [], x) }",
        "allow if [y | y := lib.missing(1)]",
    ];
    for rules in cases {
        let e = compile_err(RawPolicyConfig {
            modules: vec![
                module("ok.rego", "package lib\nhelper(x) := x"),
                module("p.rego", &format!("package mcp\nimport data.lib\n{rules}")),
            ],
            ..Default::default()
        });
        assert!(
            e.starts_with("policy.modules[1] (p.rego): p.rego:3:"),
            "{rules}: {e}"
        );
        assert!(e.contains("unknown function"), "{e}");
    }
}

#[test]
fn builtins_of_this_build_and_policy_functions_are_accepted() {
    let p = match Policy::compile(RawPolicyConfig {
        modules: vec![
            module(
                "lib.rego",
                "package lib\nprefixed(p, s) if startswith(p, s)",
            ),
            module(
                "p.rego",
                r#"package mcp
import data.lib
import data.lib as l
default allow := false
local(x) := upper(x)
default fallback(_) := false
allow if {
    lib.prefixed(input.arguments.path, "/srv/")
    l.prefixed(input.arguments.path, "/srv/")
    data.lib.prefixed(input.arguments.path, "/")
    local("a") == "A"
    not fallback(1)
    count(split(input.arguments.path, "/")) > 1
    every s in ["a"] { endswith(s, "a") }
    object.get(input, "x", 1) == 1
    print("ok")
}
"#,
            ),
        ],
        ..Default::default()
    }) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    let args = raw(r#"{"path": "/srv/x"}"#);
    assert!(
        p.decide_request(&Request {
            arguments: Some(&args),
            ..call("read_file")
        })
        .allow
    );
}

#[test]
fn config_errors_name_the_field() {
    let cases: Vec<(RawPolicyConfig, &str)> = vec![
        (
            RawPolicyConfig::default(),
            "policy.modules: must list at least one module",
        ),
        (
            one("package mcp\nreason := \"x\""),
            "policy.package: data.mcp defines neither `allow` nor `decision`",
        ),
        (
            one("package other\nallow := true"),
            "policy.package: data.mcp defines neither",
        ),
        (
            RawPolicyConfig {
                package: Some("data.9x".into()),
                ..one(POLICY)
            },
            "policy.package: \"data.9x\" must be a dotted Rego package path",
        ),
        (
            RawPolicyConfig {
                package: Some("data".into()),
                ..one(POLICY)
            },
            "policy.package:",
        ),
        (
            RawPolicyConfig {
                methods: Some(vec![]),
                ..one(POLICY)
            },
            "policy.methods: must list",
        ),
        (
            RawPolicyConfig {
                methods: Some(vec!["".into()]),
                ..one(POLICY)
            },
            "policy.methods[0]:",
        ),
        (
            RawPolicyConfig {
                claims: Some(vec!["".into()]),
                ..one(POLICY)
            },
            "policy.claims[0]:",
        ),
        (
            RawPolicyConfig {
                headers: Some(vec!["ok".into(), "bad header".into()]),
                ..one(POLICY)
            },
            "policy.headers[1]: \"bad header\" is not valid",
        ),
        (
            RawPolicyConfig {
                data: Some(json!([1])),
                ..one(POLICY)
            },
            "policy.data: must be a JSON object",
        ),
        (
            RawPolicyConfig {
                modules: vec![
                    module("a.rego", POLICY),
                    module("a.rego", "package x\ny := 1"),
                ],
                ..Default::default()
            },
            "policy.modules[1].name: \"a.rego\" is used by an earlier module",
        ),
        (
            RawPolicyConfig {
                modules: vec![module(" ", POLICY)],
                ..Default::default()
            },
            "policy.modules[0].name: must not be empty",
        ),
        (
            RawPolicyConfig {
                modules: vec![
                    module("x.rego", "package x"),
                    module("a.rego", "package mcp\nallow if x > 1"),
                ],
                ..Default::default()
            },
            "policy.modules[1] (a.rego): a.rego:2:10: use of undefined variable `x` is unsafe",
        ),
    ];
    for (raw, expected) in cases {
        let e = match Policy::compile(raw) {
            Ok(_) => panic!("expected a configuration error starting {expected:?}"),
            Err(e) => e.to_string(),
        };
        assert!(e.starts_with(expected), "expected {expected:?}, got {e:?}");
    }
}

#[test]
fn raw_config_rejects_unknown_fields_and_reads_camel_case() {
    let ok: Result<RawPolicyConfig, _> = serde_json::from_value(json!({
        "modules": [{"name": "p.rego", "rego": POLICY}],
        "package": "data.mcp",
        "methods": ["tools/call"],
        "claims": ["roles"],
        "headers": ["x-tenant"],
        "data": {"a": 1}
    }));
    assert!(ok.is_ok());
    for bad in [
        json!({"modules": [], "defaultDecision": "allow"}),
        json!({"modules": [{"name": "p", "rego": "", "file": "x"}]}),
    ] {
        let e: Result<RawPolicyConfig, _> = serde_json::from_value(bad);
        assert!(e.is_err());
    }
}

#[test]
fn a_policy_error_becomes_a_config_error_with_the_same_text() {
    let e = match Policy::compile(one("package mcp\nallow if {")) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    };
    let text = e.to_string();
    let config: crate::config::ConfigError = e.into();
    assert_eq!(config.to_string(), text);
}

// ---------------------------------------------------------------------------------------------
// List filtering

const ROLE_POLICY: &str = r#"package mcp
default allow := false
allow if "admin" in input.subject.claims.roles
allow if {
    "reader" in input.subject.claims.roles
    input.server == "everything"
    input.tool.name in {"echo", "get-sum"}
}
allow if {
    "reader" in input.subject.claims.roles
    input.prompt.name == "simple-prompt"
}
allow if {
    "reader" in input.subject.claims.roles
    startswith(input.resource.uri, "demo://resource/static/")
}
"#;

fn role_policy(extra: &str) -> Policy {
    match Policy::compile(RawPolicyConfig {
        modules: vec![module("p.rego", &format!("{ROLE_POLICY}{extra}"))],
        claims: Some(vec!["roles".into()]),
        ..Default::default()
    }) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn reader() -> serde_json::Map<String, serde_json::Value> {
    match json!({"roles": ["reader"]}) {
        serde_json::Value::Object(m) => m,
        _ => unreachable!(),
    }
}

const ITEMS: [ListItem<'static>; 5] = [
    ListItem {
        name: "echo",
        server: Some("everything"),
    },
    ListItem {
        name: "get-env",
        server: Some("everything"),
    },
    ListItem {
        name: "get-sum",
        server: Some("everything"),
    },
    ListItem {
        name: "echo",
        server: Some("other"),
    },
    ListItem {
        name: "get-sum",
        server: None,
    },
];

#[test]
fn per_item_filtering_checks_each_item_as_a_call() {
    let p = role_policy("");
    let claims = reader();
    let list = p.input(&Request {
        subject: Subject {
            claims: Some(&claims),
            ..Default::default()
        },
        method: "tools/list",
        ..Default::default()
    });
    let v = p.visible(&list, ListKind::Tools, &ITEMS);
    assert_eq!(v.visible, [true, false, true, false, false]);
    assert_eq!(v.error, None);

    let prompts = [
        ListItem {
            name: "simple-prompt",
            server: None,
        },
        ListItem {
            name: "args-prompt",
            server: None,
        },
    ];
    assert_eq!(
        p.visible(&list, ListKind::Prompts, &prompts).visible,
        [true, false]
    );
    let resources = [
        ListItem {
            name: "demo://resource/static/document/a.md",
            server: None,
        },
        ListItem {
            name: "demo://resource/dynamic/text/1",
            server: None,
        },
    ];
    assert_eq!(
        p.visible(&list, ListKind::Resources, &resources).visible,
        [true, false]
    );
    assert_eq!(
        p.visible(&list, ListKind::Tools, &[]),
        Visibility::default()
    );
}

#[test]
fn a_visible_rule_filters_the_whole_list_in_one_evaluation() {
    // The bulk rule deliberately disagrees with `allow` for get-sum, to prove it is the one used.
    let p = role_policy(
        r#"
visible_tools contains item.name if {
    some item in input.items
    item.server == "everything"
    item.name == "echo"
    input.method == "tools/list"
}
"#,
    );
    let claims = reader();
    let list = p.input(&Request {
        subject: Subject {
            claims: Some(&claims),
            ..Default::default()
        },
        method: "tools/list",
        ..Default::default()
    });
    let v = p.visible(&list, ListKind::Tools, &ITEMS);
    // Visibility is by name: "echo" is visible, so both entries named echo are.
    assert_eq!(v.visible, [true, false, false, true, false]);
    // Prompts have no bulk rule: per item.
    let prompts = [ListItem {
        name: "simple-prompt",
        server: None,
    }];
    assert_eq!(
        p.visible(&list, ListKind::Prompts, &prompts).visible,
        [true]
    );
}

#[test]
fn list_filtering_fails_closed() {
    let bad_bulk = role_policy("\nvisible_tools := 3");
    let list = bad_bulk.input(&Request {
        method: "tools/list",
        ..Default::default()
    });
    let v = bad_bulk.visible(&list, ListKind::Tools, &ITEMS);
    assert_eq!(v.visible, [false; 5]);
    assert!(v.error.is_some());

    let erroring = policy("package mcp\nallow if count(input.arguments) >= 0");
    let v = erroring.visible(&list, ListKind::Tools, &ITEMS);
    assert_eq!(v.visible, [false; 5]);
    assert!(v.error.unwrap_or_default().contains("count"));
}

#[test]
fn per_item_and_bulk_filtering_agree_for_a_consistent_policy() {
    let rules = r#"package mcp
default allow := false
allowed_servers := {"a", "b"}
allow if input.server in allowed_servers
"#;
    let each = policy(rules);
    let bulk = policy(&format!(
        "{rules}\nvisible_tools contains i.name if {{ some i in input.items; i.server in allowed_servers }}"
    ));
    let names: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
    let servers = ["a", "b", "c"];
    let items: Vec<ListItem<'_>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| ListItem {
            name: n,
            server: servers.get(i % 3).copied(),
        })
        .collect();
    let req = Request {
        method: "tools/list",
        ..Default::default()
    };
    let a = each.visible(&each.input(&req), ListKind::Tools, &items);
    let b = bulk.visible(&bulk.input(&req), ListKind::Tools, &items);
    assert_eq!(a, b);
    assert_eq!(a.visible.iter().filter(|v| **v).count(), 34);
}
