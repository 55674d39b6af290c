//! The fixed semantics: deny wins, order independence, fail closed, approvals, rolling
//! windows, limits per scope, raw digests, unknown fields.

use std::collections::BTreeMap;

use keyrack_plugin::{actions, Intent, Transfer, NATIVE};
use keyrack_policy::{
    ledger_entries, Approval, Ledger, LedgerEntry, Lifecycle, MemoryLedger, Operation, Outcome,
    Policy, PolicyError, Request, Usage, UsageQuery,
};

const NOW: u64 = 1_741_089_600_000; // 2025-03-04T12:00:00Z, a Tuesday
const HOUR: u64 = 3_600_000;
const EXCHANGE: &str = "0x28C6c06298d514Db089934071355E5743bf21d60";
const OTHER: &str = "0x000000000000000000000000000000000000dEaD";

fn transfer(to: &str, asset: &str, amount: u128) -> Transfer {
    Transfer {
        to: to.into(),
        asset: asset.into(),
        amount,
    }
}

fn intent(transfers: Vec<Transfer>) -> Intent {
    Intent {
        chain: "evm".into(),
        network: Some("1".into()),
        action: actions::TRANSFER.into(),
        transfers,
        fee: Some(21_000),
        method: None,
        contract: None,
        details: BTreeMap::new(),
    }
}

struct Req {
    initiator: String,
    roles: Vec<String>,
    key_id: String,
    path: Vec<u32>,
    raw: bool,
    intent: Option<Intent>,
    now: u64,
    hash: [u8; 32],
    schemes: Vec<String>,
}

impl Req {
    fn new(intent: Option<Intent>) -> Self {
        Self {
            initiator: "dana".into(),
            roles: vec!["trader".into()],
            key_id: "hot-1".into(),
            path: vec![],
            raw: false,
            intent,
            now: NOW,
            hash: [7; 32],
            schemes: vec!["ecdsa-secp256k1".into()],
        }
    }
    fn get(&self) -> Request<'_> {
        Request {
            operation: Operation::Sign,
            request_hash: self.hash,
            initiator: &self.initiator,
            roles: &self.roles,
            key_id: &self.key_id,
            schemes: &self.schemes,
            lifecycle: Lifecycle::default(),
            derivation_path: &self.path,
            raw_digest: self.raw,
            intent: self.intent.as_ref(),
            now_ms: self.now,
        }
    }
}

fn policy(rules: &str) -> Policy {
    let text = format!(
        "[approver_groups]\ntreasury = [\"alice\", \"bob\", \"carol\"]\n[address_books]\nexchanges = [\"{EXCHANGE}\"]\n{rules}"
    );
    Policy::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn eval(p: &Policy, r: &Req) -> Outcome {
    p.evaluate(&r.get(), &[], &MemoryLedger::new()).outcome
}

fn allowed(o: &Outcome) -> bool {
    matches!(o, Outcome::Allow { .. })
}

fn deny_rule(o: &Outcome) -> Option<Option<&str>> {
    match o {
        Outcome::Deny { rule, .. } => Some(rule.as_deref()),
        _ => None,
    }
}

#[test]
fn default_deny_and_deny_wins_over_allow_and_approvals() {
    let r = Req::new(Some(intent(vec![transfer(EXCHANGE, NATIVE, 5)])));
    assert_eq!(deny_rule(&eval(&policy(""), &r)), Some(None));
    let p = policy(
        r#"
[[rules]]
id = "a-allow"
effect = "allow"
[[rules]]
id = "b-approve"
effect = "allow-with-approvals"
approvals = { group = "treasury", required = 1 }
[[rules]]
id = "z-deny"
effect = "deny"
description = "no"
chains = ["evm"]
"#,
    );
    let o = eval(&p, &r);
    assert_eq!(deny_rule(&o), Some(Some("z-deny")));
    let Outcome::Deny { reason, .. } = o else {
        unreachable!()
    };
    assert!(
        reason.contains("z-deny") && reason.contains("no"),
        "{reason}"
    );
}

#[test]
fn most_restrictive_effect_wins_and_all_approval_rules_must_be_met() {
    let p = policy(
        r#"
[[rules]]
id = "allow"
effect = "allow"
[[rules]]
id = "one"
effect = "allow-with-approvals"
approvals = { group = "treasury", required = 1 }
[[rules]]
id = "two"
effect = "allow-with-approvals"
approvals = { group = "treasury", required = 2 }
"#,
    );
    let r = Req::new(Some(intent(vec![transfer(EXCHANGE, NATIVE, 5)])));
    let approval = |who: &str| Approval {
        approver: who.into(),
        request_hash: r.hash,
        expires_at_ms: NOW + HOUR,
    };
    let ledger = MemoryLedger::new();
    let o = p.evaluate(&r.get(), &[], &ledger).outcome;
    assert_eq!(
        o,
        Outcome::NeedsApprovals {
            rule: "one".into(),
            group: "treasury".into(),
            required: 1,
            have: vec![]
        }
    );
    let o = p.evaluate(&r.get(), &[approval("bob")], &ledger).outcome;
    assert_eq!(
        o,
        Outcome::NeedsApprovals {
            rule: "two".into(),
            group: "treasury".into(),
            required: 2,
            have: vec!["bob".into()]
        }
    );
    let o = p
        .evaluate(&r.get(), &[approval("bob"), approval("carol")], &ledger)
        .outcome;
    assert_eq!(
        o,
        Outcome::Allow {
            rules: vec!["allow".into(), "one".into(), "two".into()],
            delay: None,
        }
    );
}

#[test]
fn rule_order_never_matters() {
    let rules = [
        "[[rules]]\nid = \"small\"\neffect = \"allow\"\nmax_value = 100\n",
        "[[rules]]\nid = \"big\"\neffect = \"allow-with-approvals\"\napprovals = { group = \"treasury\", required = 2 }\nmin_value = 101\n",
        "[[rules]]\nid = \"blocked\"\neffect = \"deny\"\ndestinations_not_in = [\"exchanges\"]\n",
        "[[rules]]\nid = \"night\"\neffect = \"deny\"\nhours_utc = \"22:00-06:00\"\n",
    ];
    let requests: Vec<Req> = [(EXCHANGE, 50), (EXCHANGE, 500), (OTHER, 50), (OTHER, 500)]
        .into_iter()
        .map(|(to, v)| Req::new(Some(intent(vec![transfer(to, NATIVE, v)]))))
        .collect();
    let reference: Vec<_> = {
        let p = policy(&rules.concat());
        requests
            .iter()
            .map(|r| p.evaluate(&r.get(), &[], &MemoryLedger::new()))
            .collect()
    };
    // Every permutation of the four rules.
    let mut idx = [0usize, 1, 2, 3];
    let mut permutations = 0;
    loop {
        let text: String = idx.iter().map(|&i| rules[i]).collect();
        let p = policy(&text);
        for (r, want) in requests.iter().zip(&reference) {
            assert_eq!(
                &p.evaluate(&r.get(), &[], &MemoryLedger::new()),
                want,
                "order {idx:?}"
            );
        }
        permutations += 1;
        // next permutation
        let Some(i) = (0..3).rev().find(|&i| idx[i] < idx[i + 1]) else {
            break;
        };
        let j = (i + 1..4).rev().find(|&j| idx[j] > idx[i]).unwrap();
        idx.swap(i, j);
        idx[i + 1..].reverse();
    }
    assert_eq!(permutations, 24);
    assert!(allowed(&reference[0].outcome));
    assert!(matches!(
        reference[1].outcome,
        Outcome::NeedsApprovals { .. }
    ));
    assert_eq!(deny_rule(&reference[2].outcome), Some(Some("blocked")));
    // The trace lists every rule, sorted by id.
    let ids: Vec<&str> = reference[0].trace.iter().map(|t| t.rule.as_str()).collect();
    assert_eq!(ids, ["big", "blocked", "night", "small"]);
}

#[test]
fn missing_fields_fail_closed_on_both_sides() {
    let mixed = intent(vec![
        transfer(EXCHANGE, NATIVE, 5),
        transfer(EXCHANGE, "0xToken", 5),
    ]);
    let mut no_fee = intent(vec![transfer(EXCHANGE, NATIVE, 5)]);
    no_fee.fee = None;
    let cases: [(&str, Option<Intent>); 6] = [
        ("max_value = 100", Some(mixed.clone())),
        ("tokens = [\"native\"]", Some(mixed.clone())),
        ("max_fee = 100000", Some(no_fee.clone())),
        ("methods = [\"transfer\"]", Some(no_fee.clone())),
        ("max_value = 100", None),
        ("destinations_in = [\"exchanges\"]", Some(intent(vec![]))),
    ];
    for (condition, intent) in cases {
        let r = Req::new(intent);
        let allow = policy(&format!(
            "[[rules]]\nid = \"a\"\neffect = \"allow\"\n{condition}\n"
        ));
        let o = eval(&allow, &r);
        assert_eq!(
            deny_rule(&o),
            Some(None),
            "allow side of {condition}: {o:?}"
        );
        let d = allow.evaluate(&r.get(), &[], &MemoryLedger::new());
        assert!(
            d.trace[0]
                .conditions
                .iter()
                .any(|c| !c.holds && c.detail.contains("fails closed")),
            "{}",
            d.explain()
        );
        let deny = policy(&format!("[[rules]]\nid = \"any\"\neffect = \"allow\"\n[[rules]]\nid = \"d\"\neffect = \"deny\"\n{condition}\n"));
        assert_eq!(
            deny_rule(&eval(&deny, &r)),
            Some(Some("d")),
            "deny side of {condition}"
        );
    }
}

#[test]
fn plain_messages_only_where_a_rule_allows_them_and_chain_rules_fail_closed_on_them() {
    // Opaque bytes can be a chain transaction in disguise: no allow rule matches a plain
    // message unless it sets plain_message = true.
    let r = Req::new(None);
    let p = policy("[[rules]]\nid = \"any\"\neffect = \"allow\"\n");
    assert_eq!(deny_rule(&eval(&p, &r)), Some(None));
    let p = policy("[[rules]]\nid = \"any\"\neffect = \"allow\"\nplain_message = true\n");
    assert!(allowed(&eval(&p, &r)));
    // The gate is for plain messages only: a decoded transaction still matches "any".
    let tx = Req::new(Some(intent(vec![transfer(EXCHANGE, NATIVE, 5)])));
    let p = policy("[[rules]]\nid = \"any\"\neffect = \"allow\"\n");
    assert!(allowed(&eval(&p, &tx)));
    // A chain condition on a request no decoder read fails closed: it never allows, and a
    // deny scoped to a chain applies (the bytes could be that chain's transaction).
    let p = policy(
        "[[rules]]\nid = \"a\"\neffect = \"allow\"\nplain_message = true\nchains = [\"solana\"]\n",
    );
    assert_eq!(deny_rule(&eval(&p, &r)), Some(None));
    let p = policy("[[rules]]\nid = \"any\"\neffect = \"allow\"\nplain_message = true\n[[rules]]\nid = \"d\"\neffect = \"deny\"\nchains = [\"solana\"]\n");
    assert_eq!(deny_rule(&eval(&p, &r)), Some(Some("d")));
    // A deny rule with plain_message = true applies to plain messages only.
    let p = policy("[[rules]]\nid = \"any\"\neffect = \"allow\"\nplain_message = true\n[[rules]]\nid = \"no-plain\"\neffect = \"deny\"\nplain_message = true\n");
    assert_eq!(deny_rule(&eval(&p, &r)), Some(Some("no-plain")));
    assert!(allowed(&eval(&p, &tx)));
}

struct Failing;
impl Ledger for Failing {
    fn usage(&self, _: &UsageQuery<'_>) -> Result<Usage, String> {
        Err("database is locked".into())
    }
}

#[test]
fn ledger_errors_fail_closed() {
    let r = Req::new(Some(intent(vec![transfer(EXCHANGE, NATIVE, 5)])));
    let lim = "[{ per = \"key\", window = \"24h\", max_count = 10 }]";
    let allow = policy(&format!(
        "[[rules]]\nid = \"a\"\neffect = \"allow\"\nwithin_limits = {lim}\n"
    ));
    let d = allow.evaluate(&r.get(), &[], &Failing);
    assert_eq!(deny_rule(&d.outcome), Some(None));
    assert!(
        d.explain().contains("database is locked"),
        "{}",
        d.explain()
    );
    let deny = policy(&format!("[[rules]]\nid = \"any\"\neffect = \"allow\"\n[[rules]]\nid = \"d\"\neffect = \"deny\"\nover_limits = {lim}\n"));
    assert_eq!(
        deny_rule(&deny.evaluate(&r.get(), &[], &Failing).outcome),
        Some(Some("d"))
    );
}

#[test]
fn approvals_are_bound_to_the_request_unexpired_distinct_group_members_not_the_initiator() {
    let p = policy("[[rules]]\nid = \"big\"\neffect = \"allow-with-approvals\"\napprovals = { group = \"treasury\", required = 2 }\n");
    let mut r = Req::new(Some(intent(vec![transfer(EXCHANGE, NATIVE, 5)])));
    r.initiator = "alice".into();
    let ok = |who: &str| Approval {
        approver: who.into(),
        request_hash: r.hash,
        expires_at_ms: NOW + 1,
    };
    let ledger = MemoryLedger::new();
    let have = |approvals: &[Approval]| match p.evaluate(&r.get(), approvals, &ledger).outcome {
        Outcome::NeedsApprovals { have, .. } => have,
        Outcome::Allow { .. } => vec!["ALLOWED".into()],
        o => panic!("{o:?}"),
    };
    assert_eq!(have(&[ok("bob"), ok("carol")]), ["ALLOWED"]);
    // Another request's approval.
    let other = Approval {
        request_hash: [8; 32],
        ..ok("carol")
    };
    assert_eq!(have(&[ok("bob"), other]), ["bob"]);
    // Expired: at now exactly it no longer counts.
    let expired = Approval {
        expires_at_ms: NOW,
        ..ok("carol")
    };
    assert_eq!(have(&[ok("bob"), expired]), ["bob"]);
    // The initiator approving their own request.
    assert_eq!(have(&[ok("bob"), ok("alice")]), ["bob"]);
    // Not in the group.
    assert_eq!(have(&[ok("bob"), ok("mallory")]), ["bob"]);
    // Duplicates count once.
    assert_eq!(have(&[ok("bob"), ok("bob"), ok("bob")]), ["bob"]);
    // The trace says why each was ignored.
    let d = p.evaluate(&r.get(), &[ok("alice"), ok("mallory")], &ledger);
    let text = d.explain();
    assert!(
        text.contains("alice: is the request's initiator")
            && text.contains("mallory: not in the group"),
        "{text}"
    );
}

fn entry(key: &str, initiator: &str, to: &str, amount: u128) -> Vec<LedgerEntry> {
    vec![LedgerEntry {
        key_id: key.into(),
        initiator: initiator.into(),
        destination: Some(to.into()),
        asset: Some(format!("evm:{NATIVE}")),
        amount,
    }]
}

#[test]
fn windows_roll_over() {
    let p = policy("[[rules]]\nid = \"daily\"\neffect = \"allow\"\nwithin_limits = [{ per = \"key\", window = \"24h\", max_value = 100, max_count = 2 }]\n");
    let r = Req::new(Some(intent(vec![transfer(EXCHANGE, NATIVE, 60)])));
    let day = 24 * HOUR;
    // Usage exactly at the window's start still counts; one ms earlier it has rolled out.
    let mut inside = MemoryLedger::new();
    inside.record(NOW - day, entry("hot-1", "x", OTHER, 50));
    assert!(!p.evaluate(&r.get(), &[], &inside).is_allowed());
    let mut outside = MemoryLedger::new();
    outside.record(NOW - day - 1, entry("hot-1", "x", OTHER, 50));
    assert!(p.evaluate(&r.get(), &[], &outside).is_allowed());
    // The count: two earlier requests inside the window make this the third.
    let mut counted = MemoryLedger::new();
    counted.record(NOW - HOUR, entry("hot-1", "x", OTHER, 1));
    counted.record(NOW - 2 * HOUR, entry("hot-1", "x", OTHER, 1));
    let d = p.evaluate(&r.get(), &[], &counted);
    assert!(!d.is_allowed());
    assert!(
        d.explain().contains("count 2 + 1 = 3 > max_count 2"),
        "{}",
        d.explain()
    );
    // Exactly at the limit is within.
    let mut exact = MemoryLedger::new();
    exact.record(NOW - HOUR, entry("hot-1", "x", OTHER, 40));
    assert!(p.evaluate(&r.get(), &[], &exact).is_allowed());
}

#[test]
fn limits_per_key_initiator_and_destination() {
    let limit = |per: &str| {
        policy(&format!("[[rules]]\nid = \"l\"\neffect = \"allow\"\nwithin_limits = [{{ per = \"{per}\", window = \"1h\", max_value = 100 }}]\n"))
    };
    let r = Req::new(Some(intent(vec![transfer(EXCHANGE, NATIVE, 60)])));
    let mut l = MemoryLedger::new();
    // Another key, same initiator, same destination.
    l.record(NOW - 1, entry("hot-2", "dana", EXCHANGE, 50));
    assert!(limit("key").evaluate(&r.get(), &[], &l).is_allowed());
    assert!(!limit("initiator").evaluate(&r.get(), &[], &l).is_allowed());
    assert!(!limit("destination")
        .evaluate(&r.get(), &[], &l)
        .is_allowed());
    // Same key, another initiator, another destination.
    let mut l = MemoryLedger::new();
    l.record(NOW - 1, entry("hot-1", "erin", OTHER, 50));
    assert!(!limit("key").evaluate(&r.get(), &[], &l).is_allowed());
    assert!(limit("initiator").evaluate(&r.get(), &[], &l).is_allowed());
    assert!(limit("destination")
        .evaluate(&r.get(), &[], &l)
        .is_allowed());
    // Per destination: each destination on its own; two transfers to one are summed.
    let two = Req::new(Some(intent(vec![
        transfer(EXCHANGE, NATIVE, 60),
        transfer(OTHER, NATIVE, 60),
    ])));
    assert!(limit("destination")
        .evaluate(&two.get(), &[], &MemoryLedger::new())
        .is_allowed());
    assert!(!limit("key")
        .evaluate(&two.get(), &[], &MemoryLedger::new())
        .is_allowed());
    let same = Req::new(Some(intent(vec![
        transfer(EXCHANGE, NATIVE, 60),
        transfer(EXCHANGE, NATIVE, 60),
    ])));
    assert!(!limit("destination")
        .evaluate(&same.get(), &[], &MemoryLedger::new())
        .is_allowed());
    // Other assets do not add to a native limit.
    let mut l = MemoryLedger::new();
    l.record(
        NOW - 1,
        vec![LedgerEntry {
            asset: Some("evm:0xtoken".into()),
            ..entry("hot-1", "dana", EXCHANGE, 1000)[0].clone()
        }],
    );
    assert!(limit("key").evaluate(&r.get(), &[], &l).is_allowed());
}

#[test]
fn ledger_entries_one_per_transfer_or_one_empty() {
    let r = Req::new(Some(intent(vec![
        transfer(EXCHANGE, NATIVE, 1),
        transfer(OTHER, NATIVE, 2),
    ])));
    let e = ledger_entries(&r.get());
    assert_eq!(e.len(), 2);
    assert_eq!(
        (
            e[1].destination.as_deref(),
            e[1].asset.as_deref(),
            e[1].amount
        ),
        (Some(OTHER), Some("evm:native"), 2)
    );
    let m = Req::new(None);
    assert_eq!(
        ledger_entries(&m.get()),
        vec![LedgerEntry {
            key_id: "hot-1".into(),
            initiator: "dana".into(),
            destination: None,
            asset: None,
            amount: 0
        }]
    );
}

#[test]
fn raw_digests_only_where_a_rule_allows_them() {
    let mut r = Req::new(None);
    r.raw = true;
    let p = policy("[[rules]]\nid = \"all\"\neffect = \"allow\"\n");
    assert_eq!(deny_rule(&eval(&p, &r)), Some(None));
    let p = policy("[[rules]]\nid = \"all\"\neffect = \"allow\"\nraw_digest = true\n");
    assert!(allowed(&eval(&p, &r)));
    // A deny rule with raw_digest = true applies to raw digests only.
    let p = policy("[[rules]]\nid = \"all\"\neffect = \"allow\"\nraw_digest = true\n[[rules]]\nid = \"no-raw\"\neffect = \"deny\"\nraw_digest = true\n");
    assert_eq!(deny_rule(&eval(&p, &r)), Some(Some("no-raw")));
    let tx = Req::new(Some(intent(vec![transfer(EXCHANGE, NATIVE, 5)])));
    assert!(allowed(&eval(&p, &tx)));
}

#[test]
fn request_conditions() {
    let mut r = Req::new(Some(intent(vec![transfer(EXCHANGE, NATIVE, 5)])));
    r.path = vec![44, 0, 7];
    let check = |cond: &str, want: bool| {
        let p = policy(&format!(
            "[key_tags]\nhot = [\"hot-*\"]\n[[rules]]\nid = \"a\"\neffect = \"allow\"\n{cond}\n"
        ));
        assert_eq!(allowed(&eval(&p, &r)), want, "{cond}");
    };
    check("initiators = [\"dana\"]", true);
    check("initiators = [\"erin\"]", false);
    check("roles = [\"ops\", \"trader\"]", true);
    check("roles = [\"ops\"]", false);
    check("keys = [\"hot-*\"]", true);
    check("keys = [\"cold-*\"]", false);
    check("key_tags = [\"hot\"]", true);
    check("schemes = [\"ed25519\"]", false);
    check("networks = [\"1\"]", true);
    check("networks = [\"10\"]", false);
    check("actions = [\"transfer\"]", true);
    check("destinations_in = [\"exchanges\"]", true);
    check("destinations_not_in = [\"exchanges\"]", false);

    check("derivation_paths = [\"m/44/0/*\"]", true);
    check("derivation_paths = [\"m/44/1/*\"]", false);
    check("derivation_paths = [\"m/44/**\"]", true);
    check("hours_utc = \"08:00-18:00\"", true);
    check("hours_utc = \"18:00-08:00\"", false);
    check("weekdays = [\"tue\"]", true);
    check("weekdays = [\"sat\", \"sun\"]", false);
    check("min_value = 5\nmax_value = \"5\"", true);
    check("max_fee = 20999", false);
}

#[test]
fn evm_addresses_compare_case_insensitively() {
    let p = Policy::from_toml(&format!(
        "[address_books]\nx = [\"{}\"]\n[[rules]]\nid = \"a\"\neffect = \"allow\"\ndestinations_in = [\"x\"]\n",
        EXCHANGE.to_lowercase()
    ))
    .unwrap();
    let r = Req::new(Some(intent(vec![transfer(EXCHANGE, NATIVE, 5)])));
    assert!(allowed(&eval(&p, &r)));
    let mut sol = intent(vec![transfer("AbC", NATIVE, 5)]);
    sol.chain = "solana".into();
    let p = Policy::from_toml("[address_books]\nx = [\"abc\"]\n[[rules]]\nid = \"a\"\neffect = \"allow\"\ndestinations_in = [\"x\"]\n").unwrap();
    assert!(!allowed(&eval(&p, &Req::new(Some(sol)))));
}

fn field_error(text: &str) -> (String, String) {
    match Policy::from_toml(text) {
        Err(PolicyError::Field { path, message }) => (path, message),
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn unknown_fields_are_errors_naming_their_path() {
    let (path, msg) = field_error("formatt = 1\n");
    assert_eq!(path, "formatt");
    assert!(msg.contains("unknown field"), "{msg}");
    let rule = "[[rules]]\nid = \"a\"\neffect = \"allow\"\n";
    let rule_b = rule.replace("\"a\"", "\"b\"");
    let (path, _) = field_error(&format!(
        "{rule}{rule_b}[[rules]]\nid = \"c\"\neffect = \"allow\"\nmax_valeu = 1\n"
    ));
    assert_eq!(path, "rules[2].max_valeu");
    let (path, _) = field_error("[approver_groups]\nt = [\"a\"]\n[[rules]]\nid = \"a\"\neffect = \"allow-with-approvals\"\napprovals = { group = \"t\", required = 1, quorum = 2 }\n");
    assert_eq!(path, "rules[0].approvals.quorum");
    let (path, _) = field_error(&format!(
        "{rule}within_limits = [{{ per = \"key\", window = \"1h\", max_count = 1, burst = 2 }}]\n"
    ));
    assert_eq!(path, "rules[0].within_limits[0].burst");
    // Other errors name their field too.
    assert_eq!(
        field_error(&format!("{rule}chains = [\"evn\"]\n")).0,
        "rules[0].chains"
    );
    assert_eq!(
        field_error(&format!("{rule}destinations_in = [\"nope\"]\n")).0,
        "rules[0].destinations_in"
    );
    assert_eq!(
        field_error(&format!(
            "{rule}within_limits = [{{ per = \"key\", window = \"1y\", max_count = 1 }}]\n"
        ))
        .0,
        "rules[0].within_limits[0].window"
    );
    assert_eq!(field_error(&format!("{rule}{rule}")).0, "rules[1].id");
    assert_eq!(
        field_error("[[rules]]\nid = \"a\"\neffect = \"allow-with-approvals\"\n").0,
        "rules[0].approvals"
    );
    assert_eq!(
        field_error(&format!("{rule}max_value = \"-3\"\n")).0,
        "rules[0]"
    );
    assert!(matches!(
        Policy::from_toml("rules = ["),
        Err(PolicyError::Syntax(_))
    ));
}

#[test]
fn decision_serialises_for_the_audit_log() {
    let p = policy("[[rules]]\nid = \"a\"\neffect = \"allow\"\nmax_value = 10\n");
    let r = Req::new(Some(intent(vec![transfer(EXCHANGE, NATIVE, 50)])));
    let d = p.evaluate(&r.get(), &[], &MemoryLedger::new());
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["outcome"], "deny");
    assert_eq!(json["rule"], serde_json::Value::Null);
    assert_eq!(json["trace"][0]["effect"], "allow");
    assert_eq!(
        json["trace"][0]["conditions"][0]["detail"],
        "value 50 > max_value 10"
    );
}
