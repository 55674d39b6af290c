//! Lint findings: shadowed and subsumed rules, contradictions, a deny of everything.

use keyrack_policy::Policy;

fn findings(text: &str) -> Vec<(Option<String>, String)> {
    let p = Policy::from_toml(&format!(
        "[approver_groups]\ntreasury = [\"alice\", \"bob\"]\n{text}"
    ))
    .unwrap();
    p.lint().into_iter().map(|f| (f.rule, f.message)).collect()
}

fn one(text: &str, rule: &str, words: &str) {
    let f = findings(text);
    assert!(
        f.iter()
            .any(|(r, m)| r.as_deref() == Some(rule) && m.contains(words)),
        "expected a finding on {rule} containing '{words}', got {f:?}"
    );
}

#[test]
fn shadowed_by_a_deny_rule() {
    one(
        "[[rules]]\nid = \"evm-small\"\neffect = \"allow\"\nchains = [\"evm\"]\nkeys = [\"hot-1\"]\nmax_value = 10\n[[rules]]\nid = \"no-hot\"\neffect = \"deny\"\nkeys = [\"hot-*\"]\n",
        "evm-small",
        "unreachable",
    );
    // Not shadowed when the deny is narrower.
    let f = findings("[[rules]]\nid = \"a\"\neffect = \"allow\"\nkeys = [\"hot-*\"]\n[[rules]]\nid = \"d\"\neffect = \"deny\"\nkeys = [\"hot-1\"]\n");
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn allow_subsumed_by_an_approval_rule() {
    one(
        "[[rules]]\nid = \"a\"\neffect = \"allow\"\nmax_value = 10\n[[rules]]\nid = \"b\"\neffect = \"allow-with-approvals\"\napprovals = { group = \"treasury\", required = 1 }\nmax_value = 100\n",
        "a",
        "never allows on its own",
    );
}

#[test]
fn contradictions_and_deny_everything() {
    one(
        "[[rules]]\nid = \"a\"\neffect = \"allow\"\nmin_value = 10\nmax_value = 5\n",
        "a",
        "min_value 10 > max_value 5",
    );
    one(
        "[[rules]]\nid = \"a\"\neffect = \"allow-with-approvals\"\napprovals = { group = \"treasury\", required = 3 }\n",
        "a",
        "group 'treasury' has 2",
    );
    one("[[rules]]\nid = \"a\"\neffect = \"allow\"\nchains = [\"solana\"]\nschemes = [\"ecdsa-secp256k1\"]\n", "a", "can never match");
    one(
        "[[rules]]\nid = \"d\"\neffect = \"deny\"\n",
        "d",
        "denies every request",
    );
    // A deny of raw digests only is not a deny of everything; bitcoin with schnorr is fine.
    let f = findings("[[rules]]\nid = \"d\"\neffect = \"deny\"\nraw_digest = true\n[[rules]]\nid = \"b\"\neffect = \"allow\"\nchains = [\"bitcoin\"]\nschemes = [\"schnorr-secp256k1\"]\n");
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn shadowing_and_subsumption_only_within_the_kinds_a_rule_governs() {
    // A deny of every delete does not shadow a sign rule, and warns as a deny of everything
    // it governs.
    let f = findings("[[rules]]\nid = \"a\"\neffect = \"allow\"\nkeys = [\"hot-*\"]\n[[rules]]\nid = \"d\"\neffect = \"deny\"\noperations = [\"delete\"]\n");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0.as_deref(), Some("d"));
    assert!(f[0].1.contains("denies every request (delete)"), "{f:?}");
    // It does shadow an allow of deletes.
    one(
        "[[rules]]\nid = \"a\"\neffect = \"allow\"\noperations = [\"delete\"]\nroles = [\"admin\"]\n[[rules]]\nid = \"d\"\neffect = \"deny\"\noperations = [\"delete\", \"reshare\"]\n",
        "a",
        "unreachable",
    );
    // An approval rule for deletes does not subsume an allow of signatures.
    let f = findings("[[rules]]\nid = \"a\"\neffect = \"allow\"\n[[rules]]\nid = \"b\"\neffect = \"allow-with-approvals\"\noperations = [\"delete\"]\napprovals = { group = \"treasury\", required = 1 }\n");
    assert!(f.is_empty(), "{f:?}");
    one(
        "[[rules]]\nid = \"k\"\neffect = \"allow\"\noperations = [\"keygen\"]\nmin_new_threshold = 4\nmax_new_threshold = 3\n",
        "k",
        "min_new_threshold 4 > max_new_threshold 3",
    );
}
