//! Every request kind is governed: operation scopes, lifecycle conditions, the re-created-id
//! gate, delays and veto groups, and the file errors that keep a rule from reading what its
//! kinds do not have.

use keyrack_policy::{
    ledger_entries, Approval, Committee, Lifecycle, MemoryLedger, Operation, Outcome, Policy,
    PolicyError, Request,
};

const NOW: u64 = 1_741_089_600_000;
const HASH: [u8; 32] = [9; 32];

fn policy(rules: &str) -> Policy {
    let text = format!(
        "[approver_groups]\ntreasury = [\"alice\", \"bob\", \"carol\"]\nops = [\"erin\"]\n{rules}"
    );
    Policy::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn field_error(rules: &str) -> (String, String) {
    let text = format!("[approver_groups]\ntreasury = [\"alice\", \"bob\"]\n{rules}");
    match Policy::from_toml(&text) {
        Err(PolicyError::Field { path, message }) => (path, message),
        other => panic!("expected a field error, got {other:?}\n{text}"),
    }
}

/// A request of `operation` by `initiator` (role wallet-admin) for key `hot-1`.
struct Req {
    operation: Operation,
    initiator: String,
    roles: Vec<String>,
    schemes: Vec<String>,
    current: Vec<Committee>,
    new_threshold: Option<u16>,
    new_committee: Option<u16>,
    reuse: bool,
}

impl Req {
    fn new(operation: Operation) -> Self {
        Req {
            operation,
            initiator: "wendy".into(),
            roles: vec!["wallet-admin".into()],
            schemes: vec!["ed25519".into()],
            current: vec![],
            new_threshold: None,
            new_committee: None,
            reuse: false,
        }
    }

    fn get(&self) -> Request<'_> {
        Request {
            operation: self.operation,
            request_hash: HASH,
            initiator: &self.initiator,
            roles: &self.roles,
            key_id: "hot-1",
            schemes: &self.schemes,
            lifecycle: Lifecycle {
                new_threshold: self.new_threshold,
                new_committee: self.new_committee,
                current: &self.current,
                reuse_deleted_id: self.reuse,
            },
            derivation_path: &[],
            raw_digest: false,
            intent: None,
            now_ms: NOW,
        }
    }
}

fn approval(who: &str) -> Approval {
    Approval {
        approver: who.into(),
        request_hash: HASH,
        expires_at_ms: NOW + 60_000,
    }
}

fn eval(p: &Policy, r: &Req, approvals: &[Approval]) -> Outcome {
    p.evaluate(&r.get(), approvals, &MemoryLedger::new())
        .outcome
}

fn deny_rule(o: &Outcome) -> Option<Option<&str>> {
    match o {
        Outcome::Deny { rule, .. } => Some(rule.as_deref()),
        _ => None,
    }
}

#[test]
fn a_rule_without_operations_governs_sign_only_and_every_kind_defaults_to_deny() {
    // The pre-scope "allow everything" policy: it keeps allowing signatures, and allows no
    // key operation at all.
    let p = policy("[[rules]]\nid = \"all\"\neffect = \"allow\"\nplain_message = true\n");
    assert_eq!(p.rule("all").unwrap().operations, vec![Operation::Sign]);
    for op in [
        Operation::Keygen,
        Operation::Reshare,
        Operation::Refresh,
        Operation::Delete,
        Operation::Status,
    ] {
        let o = eval(&p, &Req::new(op), &[]);
        assert_eq!(deny_rule(&o), Some(None), "{op}: {o:?}");
    }
    let mut sign = Req::new(Operation::Sign);
    sign.schemes = vec!["ed25519".into()];
    assert!(matches!(eval(&p, &sign, &[]), Outcome::Allow { .. }));
}

#[test]
fn operations_scope_rules_and_roles_condition_lifecycle_requests() {
    let p = policy(
        r#"
[[rules]]
id = "admins-delete"
effect = "allow"
operations = ["delete", "refresh"]
roles = ["wallet-admin"]
"#,
    );
    assert!(matches!(
        eval(&p, &Req::new(Operation::Delete), &[]),
        Outcome::Allow { .. }
    ));
    assert!(matches!(
        eval(&p, &Req::new(Operation::Refresh), &[]),
        Outcome::Allow { .. }
    ));
    let mut bot = Req::new(Operation::Delete);
    bot.roles = vec!["trader".into()];
    assert_eq!(deny_rule(&eval(&p, &bot, &[])), Some(None));
    // Not a kind the rule governs: its conditions are not even read.
    let d = p.evaluate(
        &Req::new(Operation::Reshare).get(),
        &[],
        &MemoryLedger::new(),
    );
    assert_eq!(d.trace[0].conditions.len(), 1);
    assert_eq!(d.trace[0].conditions[0].condition, "operations");
    assert!(!d.trace[0].matched);
}

#[test]
fn a_multi_scheme_request_needs_every_scheme_allowed_and_any_denied_scheme_denies() {
    let p = policy(
        r#"
[[rules]]
id = "eddsa-keys"
effect = "allow"
operations = ["keygen"]
schemes = ["ed25519"]
"#,
    );
    let mut both = Req::new(Operation::Keygen);
    both.schemes = vec!["ecdsa-secp256k1".into(), "ed25519".into()];
    assert_eq!(deny_rule(&eval(&p, &both, &[])), Some(None));
    let p = policy(
        r#"
[[rules]]
id = "keys"
effect = "allow"
operations = ["keygen"]
[[rules]]
id = "no-ecdsa"
effect = "deny"
operations = ["keygen"]
schemes = ["ecdsa-secp256k1"]
"#,
    );
    assert_eq!(deny_rule(&eval(&p, &both, &[])), Some(Some("no-ecdsa")));
    assert!(matches!(
        eval(&p, &Req::new(Operation::Keygen), &[]),
        Outcome::Allow { .. }
    ));
    // A status of every scheme of the key names none: a scheme condition fails closed.
    let p = policy(
        "[[rules]]\nid = \"s\"\neffect = \"allow\"\noperations = [\"status\"]\nschemes = [\"ed25519\"]\n",
    );
    let mut all = Req::new(Operation::Status);
    all.schemes = vec![];
    assert_eq!(deny_rule(&eval(&p, &all, &[])), Some(None));
}

#[test]
fn re_creating_a_deleted_id_needs_a_rule_that_says_so() {
    let p = policy("[[rules]]\nid = \"k\"\neffect = \"allow\"\noperations = [\"keygen\"]\n");
    let mut reuse = Req::new(Operation::Keygen);
    reuse.reuse = true;
    assert_eq!(deny_rule(&eval(&p, &reuse, &[])), Some(None));
    assert!(matches!(
        eval(&p, &Req::new(Operation::Keygen), &[]),
        Outcome::Allow { .. }
    ));
    let p = policy(
        r#"
[[rules]]
id = "k"
effect = "allow"
operations = ["keygen"]
reuse_deleted_id = true
[[rules]]
id = "never-reuse-hot"
effect = "deny"
operations = ["keygen"]
reuse_deleted_id = true
keys = ["hot-*"]
"#,
    );
    // The deny applies to re-creating keygens only.
    assert_eq!(
        deny_rule(&eval(&p, &reuse, &[])),
        Some(Some("never-reuse-hot"))
    );
    assert!(matches!(
        eval(&p, &Req::new(Operation::Keygen), &[]),
        Outcome::Allow { .. }
    ));
}

#[test]
fn reshare_conditions_are_judged_by_the_holders_from_their_own_store() {
    let p = policy(
        r#"
[[rules]]
id = "move"
effect = "allow"
operations = ["reshare"]
[[rules]]
id = "never-lower"
effect = "deny"
operations = ["reshare"]
threshold_change = ["lower"]
[[rules]]
id = "three-holders"
effect = "deny"
operations = ["reshare"]
max_new_committee = 2
"#,
    );
    let holder = |t: u16, n: u16, new_t: Option<u16>, new_n: Option<u16>| {
        let mut r = Req::new(Operation::Reshare);
        r.current = vec![Committee {
            threshold: t,
            size: n,
        }];
        r.new_threshold = new_t;
        r.new_committee = new_n;
        r
    };
    assert_eq!(
        deny_rule(&eval(&p, &holder(3, 4, Some(2), Some(3)), &[])),
        Some(Some("never-lower"))
    );
    assert!(matches!(
        eval(&p, &holder(2, 3, Some(3), Some(4)), &[]),
        Outcome::Allow { .. }
    ));
    assert_eq!(
        deny_rule(&eval(&p, &holder(2, 3, None, Some(2)), &[])),
        Some(Some("three-holders"))
    );
    // Unchanged values are the key's own: a 2-node key stays denied when resharing it
    // without naming a committee.
    assert_eq!(
        deny_rule(&eval(&p, &holder(2, 2, None, None), &[])),
        Some(Some("three-holders"))
    );
    // Several schemes held: any one lowered is enough.
    let mut two = holder(2, 3, Some(3), None);
    two.schemes = vec!["ecdsa-secp256k1".into(), "ed25519".into()];
    two.current = vec![
        Committee {
            threshold: 2,
            size: 3,
        },
        Committee {
            threshold: 4,
            size: 5,
        },
    ];
    assert_eq!(deny_rule(&eval(&p, &two, &[])), Some(Some("never-lower")));
    // A node that holds no share does not judge what it cannot know; the holders deny.
    let joining = holder(0, 0, Some(2), None);
    let joining = Req {
        current: vec![],
        ..joining
    };
    let d = p.evaluate(&joining.get(), &[], &MemoryLedger::new());
    assert!(d.is_allowed(), "{}", d.explain());
    assert!(d.explain().contains("its holders judge"), "{}", d.explain());
    // What the request itself says is judged everywhere.
    let joining = Req {
        current: vec![],
        ..holder(0, 0, Some(2), Some(2))
    };
    assert_eq!(
        deny_rule(&eval(&p, &joining, &[])),
        Some(Some("three-holders"))
    );
}

#[test]
fn keygen_thresholds_are_read_from_the_request() {
    let p = policy(
        "[[rules]]\nid = \"k\"\neffect = \"allow\"\noperations = [\"keygen\"]\nmin_new_threshold = 3\nmin_new_committee = 4\n",
    );
    let keygen = |t: u16, n: u16| {
        let mut r = Req::new(Operation::Keygen);
        r.new_threshold = Some(t);
        r.new_committee = Some(n);
        r
    };
    assert!(matches!(
        eval(&p, &keygen(3, 4), &[]),
        Outcome::Allow { .. }
    ));
    assert_eq!(deny_rule(&eval(&p, &keygen(2, 4), &[])), Some(None));
    assert_eq!(deny_rule(&eval(&p, &keygen(3, 3), &[])), Some(None));
}

#[test]
fn a_delay_follows_the_approvals_and_names_who_may_veto() {
    let p = policy(
        r#"
[[rules]]
id = "delete"
effect = "allow-with-approvals"
operations = ["delete"]
approvals = { group = "treasury", required = 2 }
delay = "24h"
[[rules]]
id = "delete-ops"
effect = "allow-with-approvals"
operations = ["delete"]
approvals = { group = "ops", required = 1 }
delay = "1h"
"#,
    );
    let r = Req::new(Operation::Delete);
    match eval(&p, &r, &[approval("bob")]) {
        Outcome::NeedsApprovals { rule, required, .. } => {
            assert_eq!((rule.as_str(), required), ("delete", 2))
        }
        o => panic!("{o:?}"),
    }
    let d = p.evaluate(
        &r.get(),
        &[approval("bob"), approval("carol"), approval("erin")],
        &MemoryLedger::new(),
    );
    match &d.outcome {
        Outcome::Allow {
            delay: Some(delay), ..
        } => {
            // The longest delay of the matched approval rules.
            assert_eq!(
                (delay.rule.as_str(), delay.delay.ms),
                ("delete", 86_400_000)
            );
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(
        d.veto_groups(),
        vec!["ops".to_owned(), "treasury".to_owned()]
    );
    assert!(
        d.summary().contains("after a delay of 24h"),
        "{}",
        d.summary()
    );
    // The initiator's own approval never counts, for lifecycle requests too.
    let own = Req {
        initiator: "bob".into(),
        ..Req::new(Operation::Delete)
    };
    assert!(matches!(
        eval(
            &p,
            &own,
            &[approval("bob"), approval("carol"), approval("erin")]
        ),
        Outcome::NeedsApprovals { .. }
    ));
}

#[test]
fn lifecycle_requests_record_nothing_in_the_velocity_ledger() {
    for op in [Operation::Keygen, Operation::Delete, Operation::Status] {
        assert!(ledger_entries(&Req::new(op).get()).is_empty(), "{op}");
    }
    let mut sign = Req::new(Operation::Sign);
    sign.schemes = vec!["ed25519".into()];
    assert_eq!(ledger_entries(&sign.get()).len(), 1);
}

#[test]
fn a_rule_may_read_only_what_every_kind_it_governs_has() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "operations = [\"delete\"]\nchains = [\"evm\"]",
            "rules[0].chains",
            "sign request's payload",
        ),
        (
            "operations = [\"sign\", \"keygen\"]\nmax_value = 5",
            "rules[0].max_value",
            "also governs keygen",
        ),
        (
            "operations = [\"delete\"]\nraw_digest = true",
            "rules[0].raw_digest",
            "sign",
        ),
        (
            "operations = [\"delete\"]\nreuse_deleted_id = true",
            "rules[0].reuse_deleted_id",
            "keygen",
        ),
        (
            "operations = [\"keygen\", \"reshare\"]\nthreshold_change = [\"lower\"]",
            "rules[0].threshold_change",
            "reshare",
        ),
        (
            "operations = [\"delete\"]\nmin_new_threshold = 2",
            "rules[0].min_new_threshold",
            "keygen or reshare",
        ),
        (
            "operations = [\"reshare\"]\nthreshold_change = [\"raise\"]",
            "rules[0].threshold_change",
            "deny rules only",
        ),
        (
            "operations = [\"reshare\"]\nmin_new_committee = 3",
            "rules[0].min_new_committee",
            "deny rules only",
        ),
        ("operations = []", "rules[0].operations", "governs nothing"),
        (
            "operations = [\"approve\"]",
            "rules[0].operations",
            "unknown operation",
        ),
        (
            "operations = [\"sign\", \"sign\"]",
            "rules[0].operations",
            "listed twice",
        ),
        ("delay = \"1h\"", "rules[0].delay", "allow-with-approvals"),
        (
            "operations = [\"reshare\"]\ncommittee_change = [\"smaller\"]",
            "rules[0].committee_change",
            "unknown committee change",
        ),
    ];
    for (body, path, words) in cases {
        let effect = if body.contains("threshold_change = [\"raise\"]")
            || body.contains("min_new_committee")
        {
            "allow"
        } else if body.contains("threshold_change") || body.contains("committee_change") {
            "deny"
        } else {
            "allow"
        };
        let (p, m) = field_error(&format!(
            "[[rules]]\nid = \"r\"\neffect = \"{effect}\"\n{body}\n"
        ));
        assert_eq!(&p, path, "{body}: {m}");
        assert!(m.contains(words), "{body}: {m}");
    }
    let (p, m) = field_error(
        "[[rules]]\nid = \"r\"\neffect = \"allow-with-approvals\"\napprovals = { group = \"treasury\", required = 1 }\noperations = [\"delete\"]\ndelay = \"31d\"\n",
    );
    assert_eq!(
        (p.as_str(), m.contains("30 days")),
        ("rules[0].delay", true),
        "{m}"
    );
    // Allowed combinations parse.
    policy("[[rules]]\nid = \"k\"\neffect = \"allow\"\noperations = [\"keygen\"]\nmin_new_threshold = 2\n");
    policy("[[rules]]\nid = \"d\"\neffect = \"deny\"\noperations = [\"keygen\", \"reshare\"]\nmax_new_committee = 2\n");
}
