use std::cell::Cell;
use std::rc::Rc;

use super::*;
use crate::store::{ensure_keys, MemoryStore, CAS_ATTEMPTS};

fn limits(json: &str) -> Limits {
    let raw: RawLimits = match serde_json::from_str(json) {
        Ok(r) => r,
        Err(e) => unreachable!("{json}: {e}"),
    };
    match Limits::compile(raw, "limits") {
        Ok(l) => l,
        Err(e) => unreachable!("{json}: {e}"),
    }
}

fn error_of(json: &str) -> String {
    match serde_json::from_str::<RawLimits>(json) {
        Ok(raw) => match Limits::compile(raw, "limits") {
            Ok(_) => unreachable!("{json} compiled"),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    }
}

/// A store with every key of `l` created, as the glue does on configure.
fn prepared(l: &Limits) -> MemoryStore {
    let s = MemoryStore::new();
    assert!(ensure_keys(&s, l.shared_keys()).is_ok());
    s
}

const ALICE: Caller<'static> = Caller {
    subject: Some("alice"),
    client_address: None,
};
const BOB: Caller<'static> = Caller {
    subject: Some("bob"),
    client_address: None,
};
const CALL: Target<'static> = Target {
    server: Some("github"),
    tool: Some("create_issue"),
    method: Some("tools/call"),
};
const LIST: Target<'static> = Target {
    server: None,
    tool: None,
    method: Some("tools/list"),
};

const TEN_PER_MINUTE: &str =
    r#"{"rateLimits":[{"name":"calls","requests":10,"perSeconds":60,"burst":10}]}"#;

fn admitted(d: &RateDecision) -> bool {
    matches!(d, RateDecision::Admitted)
}

fn limited(d: RateDecision) -> Limited {
    match d {
        RateDecision::Limited(l) => l,
        other => unreachable!("expected Limited, got {other:?}"),
    }
}

#[test]
fn a_burst_admits_exactly_the_bucket_size() {
    let l = limits(TEN_PER_MINUTE);
    let s = prepared(&l);
    let n = (0..25)
        .filter(|_| admitted(&l.check_rate(&s, &ALICE, &CALL, 1_000)))
        .count();
    assert_eq!(n, 10);
}

#[test]
fn two_interleaved_workers_never_admit_more_than_the_limit() {
    // Worker A's every write is preceded by a whole request of worker B on the same bucket, so
    // every one of A's first attempts meets a stale CAS and must retry on B's result.
    let l = Rc::new(limits(TEN_PER_MINUTE));
    let s = prepared(&l);
    let by_b = Rc::new(Cell::new(0u32));
    let mut by_a = 0;
    for _ in 0..20 {
        let (l2, b2) = (Rc::clone(&l), Rc::clone(&by_b));
        s.interleave(move |s| {
            if admitted(&l2.check_rate(s, &ALICE, &CALL, 5_000)) {
                b2.set(b2.get() + 1);
            }
        });
        if admitted(&l.check_rate(&s, &ALICE, &CALL, 5_000)) {
            by_a += 1;
        }
    }
    assert_eq!(by_a + by_b.get(), 10, "a={by_a} b={}", by_b.get());
    assert!(
        s.conflicts.get() > 0,
        "the interleaving must have caused CAS conflicts"
    );
}

#[test]
fn without_pre_created_keys_a_racing_first_write_is_lost_which_is_why_keys_are_ensured() {
    // The host writes to a missing key whatever CAS is given: two workers that both saw the key
    // missing both "create" it. This is the hazard `ensure_keys` removes.
    let l = Rc::new(limits(
        r#"{"rateLimits":[{"name":"one","requests":1,"perSeconds":60}]}"#,
    ));
    let s = MemoryStore::new();
    let b_admitted = Rc::new(Cell::new(false));
    let (l2, b2) = (Rc::clone(&l), Rc::clone(&b_admitted));
    s.interleave(move |s| b2.set(admitted(&l2.check_rate(s, &ALICE, &CALL, 0))));
    let a_admitted = admitted(&l.check_rate(&s, &ALICE, &CALL, 0));
    assert!(
        a_admitted && b_admitted.get(),
        "both got the single request"
    );

    let s = prepared(&l);
    let b_admitted = Rc::new(Cell::new(false));
    let (l2, b2) = (Rc::clone(&l), Rc::clone(&b_admitted));
    s.interleave(move |s| b2.set(admitted(&l2.check_rate(s, &ALICE, &CALL, 0))));
    let a_admitted = admitted(&l.check_rate(&s, &ALICE, &CALL, 0));
    assert!(a_admitted != b_admitted.get(), "exactly one gets it");
}

#[test]
fn refill_is_exact_over_long_times_with_fractional_rates() {
    // 7 requests per 3 s, bucket of 2, touched every millisecond, so the bucket never overflows:
    // admitted = 2 + ⌊t·7/3000⌋.
    let l = limits(r#"{"rateLimits":[{"name":"r","requests":7,"perSeconds":3,"burst":2}]}"#);
    let s = prepared(&l);
    let start = 1_700_000_000_000u64;
    let mut n = 0u64;
    for t in 0..=300_000u64 {
        if admitted(&l.check_rate(&s, &ALICE, &CALL, start + t)) {
            n += 1;
        }
    }
    assert_eq!(n, 2 + 300_000 * 7 / 3000);
}

#[test]
fn a_slow_rate_refills_even_when_touched_every_millisecond() {
    let l = limits(r#"{"rateLimits":[{"name":"r","requests":1,"perSeconds":60}]}"#);
    let s = prepared(&l);
    assert!(admitted(&l.check_rate(&s, &ALICE, &CALL, 0)));
    for t in 1..60_000 {
        assert!(!admitted(&l.check_rate(&s, &ALICE, &CALL, t)), "at {t}");
    }
    assert!(admitted(&l.check_rate(&s, &ALICE, &CALL, 60_000)));
}

#[test]
fn retry_after_is_the_exact_wait_for_the_next_request() {
    let l = limits(r#"{"rateLimits":[{"name":"r","requests":3,"perSeconds":10,"burst":2}]}"#);
    let s = prepared(&l);
    for _ in 0..2 {
        assert!(admitted(&l.check_rate(&s, &ALICE, &CALL, 1_000)));
    }
    let lim = limited(l.check_rate(&s, &ALICE, &CALL, 1_000));
    // One request per 10/3 s: 3334 ms (rounded up), told as 4 whole seconds.
    assert_eq!(lim.retry_after_ms, 3334);
    assert_eq!(lim.retry_after_seconds(), 4);
    assert!(!lim.contended);
    let at = 1_000 + lim.retry_after_ms;
    assert!(!admitted(&l.check_rate(&s, &ALICE, &CALL, at - 1)));
    assert!(admitted(&l.check_rate(&s, &ALICE, &CALL, at)));
    // Half-way through a wait, the remaining wait is reported.
    let lim = limited(l.check_rate(&s, &ALICE, &CALL, at + 1000));
    assert_eq!(lim.retry_after_ms, 3334 - 1000 - 1);
}

#[test]
fn refusals_do_not_consume_and_earlier_rules_get_their_token_back() {
    let l = limits(
        r#"{"rateLimits":[
            {"name":"all","requests":5,"perSeconds":60},
            {"name":"calls","requests":1,"perSeconds":60,"match":{"methods":["tools/call"]}}
        ]}"#,
    );
    let s = prepared(&l);
    assert!(admitted(&l.check_rate(&s, &ALICE, &CALL, 0)));
    for _ in 0..10 {
        let lim = limited(l.check_rate(&s, &ALICE, &CALL, 0));
        assert_eq!(lim.rule, "calls");
    }
    // "all" was given back every refused call's token: four lists remain.
    let n = (0..10)
        .filter(|_| admitted(&l.check_rate(&s, &ALICE, &LIST, 0)))
        .count();
    assert_eq!(n, 4);
}

#[test]
fn rules_only_count_the_requests_they_match() {
    let l = limits(
        r#"{"rateLimits":[{"name":"create","requests":1,"perSeconds":60,
            "match":{"server":"github","tool":"create_*","methods":["tools/call"]}}]}"#,
    );
    let s = prepared(&l);
    let other = Target {
        tool: Some("list_issues"),
        ..CALL
    };
    assert!(admitted(&l.check_rate(&s, &ALICE, &CALL, 0)));
    assert!(!admitted(&l.check_rate(&s, &ALICE, &CALL, 0)));
    for t in [other, LIST] {
        assert!(admitted(&l.check_rate(&s, &ALICE, &t, 0)), "{t:?}");
    }
}

#[test]
fn buckets_are_separate_per_by_key() {
    let l = limits(
        r#"{"rateLimits":[{"name":"r","requests":1,"perSeconds":60,"by":["subject","tool"]}]}"#,
    );
    let s = prepared(&l);
    let other_tool = Target {
        tool: Some("delete_issue"),
        ..CALL
    };
    for (caller, target) in [(ALICE, CALL), (BOB, CALL), (ALICE, other_tool)] {
        assert!(admitted(&l.check_rate(&s, &caller, &target, 0)));
        assert!(!admitted(&l.check_rate(&s, &caller, &target, 0)));
    }
}

#[test]
fn a_global_rule_shares_one_bucket_among_everyone() {
    let l = limits(r#"{"rateLimits":[{"name":"g","requests":2,"perSeconds":60,"by":[]}]}"#);
    let s = prepared(&l);
    assert!(admitted(&l.check_rate(&s, &ALICE, &CALL, 0)));
    assert!(admitted(&l.check_rate(&s, &BOB, &LIST, 0)));
    assert!(!admitted(&l.check_rate(&s, &ALICE, &LIST, 0)));
}

fn anon(addr: &'static str) -> Caller<'static> {
    Caller {
        subject: None,
        client_address: Some(addr),
    }
}

#[test]
fn anonymous_callers_are_keyed_by_address_without_port_and_ipv6_by_64() {
    let l = limits(r#"{"rateLimits":[{"name":"r","requests":1,"perSeconds":60}]}"#);
    let s = prepared(&l);
    for (first, same) in [
        ("10.0.0.1:5000", "10.0.0.1:6000"),
        ("[2001:db8:1:2::5]:443", "[2001:db8:1:2:ffff::9]:80"),
        ("[::ffff:10.9.9.9]:1", "10.9.9.9:2"),
    ] {
        assert!(admitted(&l.check_rate(&s, &anon(first), &CALL, 0)));
        assert!(
            !admitted(&l.check_rate(&s, &anon(same), &CALL, 0)),
            "{same}"
        );
    }
    assert!(admitted(&l.check_rate(&s, &anon("10.0.0.2:1"), &CALL, 0)));
    assert!(admitted(&l.check_rate(
        &s,
        &anon("[2001:db8:1:3::5]:1"),
        &CALL,
        0
    )));
    // A user called "10.0.0.1" is not the anonymous client 10.0.0.1.
    let user = Caller {
        subject: Some("10.0.0.1"),
        client_address: Some("10.0.0.1:5000"),
    };
    assert!(admitted(&l.check_rate(&s, &user, &CALL, 0)));
}

#[test]
fn shared_anonymous_mode_puts_all_anonymous_callers_in_one_bucket() {
    let l = limits(
        r#"{"anonymous":"shared","rateLimits":[{"name":"r","requests":1,"perSeconds":60}]}"#,
    );
    let s = prepared(&l);
    assert!(admitted(&l.check_rate(&s, &anon("10.0.0.1:1"), &CALL, 0)));
    assert!(!admitted(&l.check_rate(&s, &anon("10.0.0.2:1"), &CALL, 0)));
    let none = Caller::default();
    assert!(!admitted(&l.check_rate(&s, &none, &CALL, 0)));
    assert!(admitted(&l.check_rate(&s, &ALICE, &CALL, 0)));
}

#[test]
fn client_network_normalises_addresses() {
    for (addr, net) in [
        ("1.2.3.4:80", "1.2.3.4"),
        ("1.2.3.4", "1.2.3.4"),
        ("[2001:db8::1]:80", "2001:db8:0:0::/64"),
        ("2001:db8:a:b:c::1", "2001:db8:a:b::/64"),
        ("[::ffff:1.2.3.4]:9", "1.2.3.4"),
        ("unix:/tmp/sock", "unix:/tmp/sock"),
        ("", ""),
    ] {
        assert_eq!(client_network(addr), net, "{addr}");
    }
}

#[test]
fn a_broken_host_fails_open_and_says_so() {
    let l = limits(TEN_PER_MINUTE);
    let s = prepared(&l);
    s.failing.set(true);
    for _ in 0..20 {
        assert_eq!(l.check_rate(&s, &ALICE, &CALL, 0), RateDecision::Unchecked);
    }
}

#[test]
fn endless_contention_fails_closed_with_a_short_retry() {
    let l = limits(TEN_PER_MINUTE);
    let s = prepared(&l);
    let key = l
        .slot(
            l.rate_limits[0].prefix(),
            l.rate_limits[0].by(),
            &ALICE,
            &CALL,
        )
        .key;
    for _ in 0..CAS_ATTEMPTS {
        let k = key.clone();
        s.interleave(move |s| {
            let _ = s.set(&k, &[], None);
        });
    }
    let lim = limited(l.check_rate(&s, &ALICE, &CALL, 0));
    assert!(lim.contended);
    assert_eq!(lim.retry_after_ms, 1000);
}

#[test]
fn a_full_set_evicts_the_most_refilled_bucket_not_an_exhausted_one() {
    // keysPerRule 4: one set of four entries.
    let l =
        limits(r#"{"keysPerRule":4,"rateLimits":[{"name":"r","requests":10,"perSeconds":60}]}"#);
    let s = prepared(&l);
    let users = ["a", "b", "c"].map(|u| Caller {
        subject: Some(u),
        client_address: None,
    });
    for u in &users {
        for _ in 0..10 {
            assert!(admitted(&l.check_rate(&s, u, &CALL, 0)));
        }
    }
    let d = Caller {
        subject: Some("d"),
        client_address: None,
    };
    assert!(admitted(&l.check_rate(&s, &d, &CALL, 0)));
    let e = Caller {
        subject: Some("e"),
        client_address: None,
    };
    assert!(admitted(&l.check_rate(&s, &e, &CALL, 0)));
    for u in &users {
        assert!(
            !admitted(&l.check_rate(&s, u, &CALL, 0)),
            "{u:?} still limited"
        );
    }
}

#[test]
fn shared_memory_stays_bounded_however_many_subjects_come() {
    let l =
        limits(r#"{"keysPerRule":64,"rateLimits":[{"name":"r","requests":1,"perSeconds":60}]}"#);
    let s = prepared(&l);
    let keys_before = s.len();
    for i in 0..5_000u32 {
        let sub = format!("user-{i}");
        let c = Caller {
            subject: Some(&sub),
            client_address: None,
        };
        let _ = l.check_rate(&s, &c, &CALL, u64::from(i));
    }
    assert_eq!(s.len(), keys_before);
    assert_eq!(s.len(), 16);
    let max_key = "mcpgw.rl.r.15".len();
    assert!(s.bytes() <= 16 * (max_key + 1 + 4 * 32), "{}", s.bytes());
}

const BUDGET: &str = r#"{"tokenBudgets":[{"name":"hourly","tokens":1000,"windowSeconds":3600}]}"#;

fn usage(tokens: u64) -> Usage {
    Usage {
        tokens: Some(tokens),
        bytes: tokens * 4,
    }
}

#[test]
fn a_budget_refuses_the_call_after_the_one_that_used_it_up() {
    let l = limits(BUDGET);
    let s = prepared(&l);
    let t0 = 7_200_000 + 60_000; // one minute into an hour window
    assert_eq!(
        l.check_budget(&s, &ALICE, &CALL, t0),
        BudgetDecision::Admitted
    );
    assert_eq!(
        l.charge_budget(&s, &ALICE, &CALL, usage(600), t0).charged,
        1
    );
    assert_eq!(
        l.check_budget(&s, &ALICE, &CALL, t0),
        BudgetDecision::Admitted
    );
    let _ = l.charge_budget(&s, &ALICE, &CALL, usage(600), t0);
    let BudgetDecision::Exhausted(lim) = l.check_budget(&s, &ALICE, &CALL, t0 + 1000) else {
        unreachable!()
    };
    assert_eq!(lim.rule, "hourly");
    assert_eq!(lim.retry_after_ms, 3_600_000 - 61_000);
    assert!(matches!(
        lim.kind,
        LimitKind::Budget {
            used: 1200,
            limit: 1000,
            ..
        }
    ));
    assert_eq!(
        l.check_budget(&s, &BOB, &CALL, t0),
        BudgetDecision::Admitted
    );
}

#[test]
fn a_budget_resets_when_its_window_ends() {
    let l = limits(BUDGET);
    let s = prepared(&l);
    let _ = l.charge_budget(&s, &ALICE, &CALL, usage(5000), 3_599_999);
    assert!(matches!(
        l.check_budget(&s, &ALICE, &CALL, 3_599_999),
        BudgetDecision::Exhausted(_)
    ));
    assert_eq!(
        l.check_budget(&s, &ALICE, &CALL, 3_600_000),
        BudgetDecision::Admitted
    );
    let _ = l.charge_budget(&s, &ALICE, &CALL, usage(10), 3_600_000);
    assert_eq!(
        l.check_budget(&s, &ALICE, &CALL, 3_600_001),
        BudgetDecision::Admitted
    );
}

#[test]
fn budget_units_pick_tokens_or_bytes_and_tokens_fall_back_to_bytes() {
    let l = limits(
        r#"{"tokenBudgets":[
            {"name":"t","tokens":100,"windowSeconds":60},
            {"name":"b","tokens":100,"windowSeconds":60,"unit":"bytes"}
        ]}"#,
    );
    let amount = |i: usize, u: Usage| l.token_budgets[i].amount(u);
    let counted = Usage {
        tokens: Some(10),
        bytes: 40,
    };
    let uncounted = Usage {
        tokens: None,
        bytes: 40,
    };
    assert_eq!(amount(0, counted), 10);
    assert_eq!(amount(0, uncounted), 40);
    assert_eq!(amount(1, counted), 40);
    let s = prepared(&l);
    let _ = l.charge_budget(
        &s,
        &ALICE,
        &CALL,
        Usage {
            tokens: Some(50),
            bytes: 200,
        },
        0,
    );
    let BudgetDecision::Exhausted(lim) = l.check_budget(&s, &ALICE, &CALL, 0) else {
        unreachable!()
    };
    assert_eq!(lim.rule, "b");
}

#[test]
fn interleaved_charges_are_all_counted() {
    let l = Rc::new(limits(BUDGET));
    let s = prepared(&l);
    for _ in 0..10 {
        let l2 = Rc::clone(&l);
        s.interleave(move |s| {
            let _ = l2.charge_budget(s, &ALICE, &CALL, usage(7), 0);
        });
        assert_eq!(l.charge_budget(&s, &ALICE, &CALL, usage(3), 0).charged, 1);
    }
    let slot = l.slot(
        l.token_budgets[0].prefix(),
        l.token_budgets[0].by(),
        &ALICE,
        &CALL,
    );
    let used = table::read(&s, &slot).ok().flatten().map(|w| w.b);
    assert_eq!(used, Some(100));
}

#[test]
fn a_broken_host_lets_budgets_through_and_reports_lost_charges() {
    let l = limits(BUDGET);
    let s = prepared(&l);
    s.failing.set(true);
    assert_eq!(
        l.check_budget(&s, &ALICE, &CALL, 0),
        BudgetDecision::Unchecked
    );
    let c = l.charge_budget(&s, &ALICE, &CALL, usage(1), 0);
    assert_eq!((c.charged, c.dropped), (0, 1));
}

#[test]
fn limited_requests_get_200_with_a_jsonrpc_error_and_others_429() {
    let l = limits(r#"{"rateLimits":[{"name":"per-user","requests":2,"perSeconds":60}]}"#);
    let s = prepared(&l);
    let _ = l.check_rate(&s, &ALICE, &CALL, 0);
    let _ = l.check_rate(&s, &ALICE, &CALL, 0);
    let lim = limited(l.check_rate(&s, &ALICE, &CALL, 100));
    let r = lim.reply(ReplyTo::Request("\"req-1\""));
    assert_eq!((r.status, r.retry_after_seconds), (200, 30));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
    assert_eq!(v["id"], "req-1");
    assert_eq!(v["error"]["code"], -31429);
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("retry after 30 s") && msg.contains("per-user"),
        "{msg}"
    );
    assert_eq!(v["error"]["data"]["retryAfterSeconds"], 30);
    assert_eq!(v["error"]["data"]["retryAfterMs"], 29_900);
    assert_eq!(v["error"]["data"]["limit"]["name"], "per-user");
    assert_eq!(v["error"]["data"]["limit"]["kind"], "rate");
    assert_eq!(v["error"]["data"]["limit"]["requests"], 2);
    assert_eq!(v["error"]["data"]["limit"]["perSeconds"], 60);
    for to in [ReplyTo::Notification, ReplyTo::NotJsonRpc] {
        let r = lim.reply(to);
        assert_eq!(r.status, 429);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
        assert!(v["id"].is_null());
        assert_eq!(v["error"]["code"], -31429);
    }
}

#[test]
fn an_exhausted_budget_error_names_the_budget_and_the_reset() {
    let l = limits(BUDGET);
    let s = prepared(&l);
    let _ = l.charge_budget(&s, &ALICE, &CALL, usage(1000), 0);
    let BudgetDecision::Exhausted(lim) = l.check_budget(&s, &ALICE, &CALL, 1_800_000) else {
        unreachable!()
    };
    let v: serde_json::Value = serde_json::from_str(&lim.error_body(Some("7"))).unwrap_or_default();
    assert_eq!(v["error"]["code"], -31430);
    assert_eq!(v["error"]["data"]["retryAfterSeconds"], 1800);
    assert_eq!(v["error"]["data"]["limit"]["kind"], "tokenBudget");
    assert_eq!(v["error"]["data"]["limit"]["unit"], "tokens");
    assert_eq!(v["error"]["data"]["limit"]["used"], 1000);
}

#[test]
fn retry_after_seconds_round_up_and_are_at_least_one() {
    for (ms, secs) in [(0, 1), (1, 1), (999, 1), (1000, 1), (1001, 2), (59_999, 60)] {
        let lim = Limited {
            rule: "r".into(),
            retry_after_ms: ms,
            contended: false,
            kind: LimitKind::Rate {
                requests: 1,
                per_seconds: 1,
                burst: 1,
            },
        };
        assert_eq!(lim.retry_after_seconds(), secs, "{ms}");
    }
}

#[test]
fn config_errors_name_the_field() {
    for (json, field) in [
        (r#"{"anonymous":"ip"}"#, "limits.anonymous"),
        (r#"{"keysPerRule":2}"#, "limits.keysPerRule"),
        (r#"{"keysPerRule":100000}"#, "limits.keysPerRule"),
        (
            r#"{"rateLimits":[{"name":"a","requests":1,"perSeconds":1},{"name":"b","requests":1,"perSeconds":0}]}"#,
            "limits.rateLimits[1].perSeconds",
        ),
        (
            r#"{"rateLimits":[{"name":"a b","requests":1,"perSeconds":1}]}"#,
            "limits.rateLimits[0].name",
        ),
        (
            r#"{"rateLimits":[{"name":"a","requests":1,"perSeconds":1},{"name":"a","requests":1,"perSeconds":1}]}"#,
            "limits.rateLimits[1].name",
        ),
        (
            r#"{"rateLimits":[{"name":"a","requests":0,"perSeconds":1}]}"#,
            "limits.rateLimits[0].requests",
        ),
        (
            r#"{"rateLimits":[{"name":"a","requests":1,"perSeconds":1,"burst":0}]}"#,
            "limits.rateLimits[0].burst",
        ),
        (
            r#"{"rateLimits":[{"name":"a","requests":1,"perSeconds":1,"by":["user"]}]}"#,
            "limits.rateLimits[0].by[0]",
        ),
        (
            r#"{"rateLimits":[{"name":"a","requests":1,"perSeconds":1,"by":["tool","tool"]}]}"#,
            "limits.rateLimits[0].by[1]",
        ),
        (
            r#"{"rateLimits":[{"name":"a","requests":1,"perSeconds":1,"match":{"tool":""}}]}"#,
            "limits.rateLimits[0].match.tool",
        ),
        (
            r#"{"tokenBudgets":[{"name":"a","tokens":1,"windowSeconds":0}]}"#,
            "limits.tokenBudgets[0].windowSeconds",
        ),
        (
            r#"{"tokenBudgets":[{"name":"a","tokens":1,"windowSeconds":1,"unit":"words"}]}"#,
            "limits.tokenBudgets[0].unit",
        ),
    ] {
        let e = error_of(json);
        assert!(e.starts_with(field), "{json}: {e}");
    }
}

#[test]
fn unknown_fields_are_rejected() {
    for json in [
        r#"{"rateLimit":[]}"#,
        r#"{"rateLimits":[{"name":"a","requests":1,"perSeconds":1,"perMinute":1}]}"#,
        r#"{"rateLimits":[{"name":"a","requests":1,"perSeconds":1,"match":{"tools":"x"}}]}"#,
    ] {
        assert!(serde_json::from_str::<RawLimits>(json).is_err(), "{json}");
    }
}

#[test]
fn shared_keys_cover_every_set_of_every_rule() {
    let l = limits(
        r#"{"keysPerRule":10,"rateLimits":[{"name":"a","requests":1,"perSeconds":1}],
            "tokenBudgets":[{"name":"b","tokens":1,"windowSeconds":1}]}"#,
    );
    let keys: Vec<String> = l.shared_keys().collect();
    assert_eq!(keys.len(), l.shared_key_count());
    assert_eq!(keys.len(), 6, "10 keys per rule round up to 3 sets of 4");
    assert!(keys.contains(&"mcpgw.rl.a.2".to_owned()));
    assert!(keys.contains(&"mcpgw.tb.b.0".to_owned()));
}

proptest::proptest! {
    #[test]
    fn arbitrary_client_addresses_never_panic(addr in "\\PC{0,48}") {
        let _ = client_network(&addr);
    }

    #[test]
    fn arbitrary_set_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        let l = limits(r#"{"keysPerRule":4,"rateLimits":[{"name":"r","requests":1,"perSeconds":1}],
            "tokenBudgets":[{"name":"b","tokens":1,"windowSeconds":1}]}"#);
        let s = MemoryStore::new();
        for key in l.shared_keys() {
            let _ = s.set(&key, &bytes, None);
        }
        let _ = l.check_rate(&s, &ALICE, &CALL, 5);
        let _ = l.check_budget(&s, &ALICE, &CALL, 5);
        let _ = l.charge_budget(&s, &ALICE, &CALL, usage(3), 5);
    }
}
