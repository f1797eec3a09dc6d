//! Runs the shipped example policies (`policies/` at the repository root) natively.
//!
//! Every `policies/NAME.rego` must
//! - compile as a gateway policy (the same checks `on_configure` makes), and
//! - come with `policies/NAME_test.rego`, whose `test_*` rules must all evaluate to `true`
//!   through regorus (the engine the gateway embeds), as `opa test policies/` would.
//!
//! The demo policy is also driven through the gateway's own input builder, so the documented input
//! document and the policy agree.

// The helpers below belong to this test crate: a missing or broken fixture should fail loudly.
#![allow(clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use mcp_gateway_core::policy::{
    ListItem, ListKind, Policy, RawModule, RawPolicyConfig, Request, Subject, Target,
};
use regorus::{Engine, Value};

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// The example policies, as (name, policy path, test path), sorted.
fn examples() -> Vec<(String, PathBuf, PathBuf)> {
    let dir = policies_dir();
    let mut out: Vec<(String, PathBuf, PathBuf)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_owned();
            let stem = name.strip_suffix(".rego")?;
            if stem.ends_with("_test") {
                return None;
            }
            let test = dir.join(format!("{stem}_test.rego"));
            Some((name, p, test))
        })
        .collect();
    out.sort();
    out
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `package a.b` of a module.
fn package_of(rego: &str) -> String {
    rego.lines()
        .find_map(|l| l.trim().strip_prefix("package "))
        .map(|p| p.trim().to_owned())
        .unwrap_or_else(|| panic!("no package line"))
}

/// Names of the `test_*` rules of a module (rule heads start a line in our style).
fn test_rules(rego: &str) -> Vec<String> {
    let mut names: Vec<String> = rego
        .lines()
        .filter(|l| l.starts_with("test_"))
        .map(|l| {
            l.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect();
    names.dedup();
    names
}

fn gateway_policy(name: &str, rego: String, claims: &[&str]) -> Policy {
    Policy::compile(RawPolicyConfig {
        modules: vec![RawModule {
            name: name.to_owned(),
            rego,
        }],
        claims: Some(claims.iter().map(|c| (*c).to_owned()).collect()),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{name} does not compile as a gateway policy: {e}"))
}

#[test]
fn every_example_policy_compiles_and_passes_its_rego_unit_tests() {
    let examples = examples();
    assert!(
        examples.len() >= 5,
        "expected the five example policies, found {examples:?}"
    );
    let mut failures = Vec::new();
    let mut passed = 0;
    for (name, policy_path, test_path) in &examples {
        let policy = read(policy_path);
        gateway_policy(name, policy.clone(), &["roles", "tenant"]);
        assert!(
            test_path.exists(),
            "{name} has no unit tests: add {}",
            test_path.display()
        );
        let tests = read(test_path);
        let test_name = format!("{}_test.rego", name.trim_end_matches(".rego"));
        let package = package_of(&tests);
        let rules = test_rules(&tests);
        assert!(!rules.is_empty(), "{test_name} defines no test_* rules");

        let mut engine = Engine::new();
        engine
            .add_policy(name.clone(), policy)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        engine
            .add_policy(test_name.clone(), tests)
            .unwrap_or_else(|e| panic!("{test_name}: {e}"));
        for rule in &rules {
            let path = format!("data.{package}.{rule}");
            match engine.eval_rule(path.clone()) {
                Ok(Value::Bool(true)) => passed += 1,
                Ok(other) => failures.push(format!("{test_name}: {rule} is {other}, not true")),
                Err(e) => failures.push(format!("{test_name}: {rule} failed: {e}")),
            }
        }
        println!("{name}: {} Rego tests", rules.len());
    }
    println!("{passed} Rego tests passed, {} failed", failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn test_rule_discovery_finds_rule_heads_only() {
    let rego = "package t\ntest_a if true\n\ttest_b if true\ntest_c := true\n# test_d\n";
    assert_eq!(test_rules(rego), ["test_a", "test_c"]);
}

fn claims(roles: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("roles".into(), roles);
    m.insert("email".into(), "someone@example.com".into());
    m
}

#[test]
fn demo_policy_decides_on_the_gateways_own_input_document() {
    let demo = gateway_policy(
        "demo.rego",
        read(&policies_dir().join("demo.rego")),
        &["roles"],
    );
    let cases: [(serde_json::Value, &str, Target<'_>, bool, Option<&str>); 9] = [
        (
            serde_json::json!(["admin"]),
            "tools/call",
            Target::Tool("get-env"),
            true,
            None,
        ),
        (
            serde_json::json!("admin"),
            "tools/call",
            Target::Tool("get-env"),
            true,
            None,
        ),
        (
            serde_json::json!(["reader"]),
            "tools/call",
            Target::Tool("echo"),
            true,
            None,
        ),
        (
            serde_json::json!(["reader"]),
            "tools/call",
            Target::Tool("get-sum"),
            true,
            None,
        ),
        (
            serde_json::json!(["reader"]),
            "tools/call",
            Target::Tool("get-env"),
            false,
            Some("tool_not_allowed"),
        ),
        (
            serde_json::json!([]),
            "tools/call",
            Target::Tool("echo"),
            false,
            Some("no_role"),
        ),
        (
            serde_json::json!(["reader"]),
            "prompts/get",
            Target::Prompt("simple-prompt"),
            true,
            None,
        ),
        (
            serde_json::json!(["reader"]),
            "resources/read",
            Target::Resource("demo://resource/static/document/a.md"),
            true,
            None,
        ),
        (
            serde_json::json!(["reader"]),
            "resources/read",
            Target::Resource("demo://resource/dynamic/text/1"),
            false,
            Some("not_allowed"),
        ),
    ];
    for (roles, method, target, allow, reason) in cases {
        let c = claims(roles.clone());
        let d = demo.decide_request(&Request {
            subject: Subject {
                sub: Some("demo-user"),
                claims: Some(&c),
                ..Default::default()
            },
            method,
            target,
            ..Default::default()
        });
        assert_eq!(
            (d.allow, d.reason.as_deref()),
            (allow, reason),
            "{roles} {method} {target:?}"
        );
    }

    let c = claims(serde_json::json!(["reader"]));
    let list = demo.input(&Request {
        subject: Subject {
            claims: Some(&c),
            ..Default::default()
        },
        method: "tools/list",
        ..Default::default()
    });
    let items: Vec<ListItem<'_>> = ["echo", "get-env", "get-sum", "toggle-simulated-logging"]
        .iter()
        .map(|name| ListItem {
            name,
            server: Some("everything"),
        })
        .collect();
    let v = demo.visible(&list, ListKind::Tools, &items);
    assert_eq!(v.visible, [true, false, true, false]);
    assert_eq!(v.error, None);
}
