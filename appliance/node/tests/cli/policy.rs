//! `keyrack policy check|test|explain` on the example policies, as a user runs them: the
//! fixtures (intents given, and payloads the chain plugins decode) pass, a policy with an
//! unknown field is refused naming it, and explain prints every rule's verdict.

use std::path::PathBuf;

use super::{keyrack, stderr, stdout};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies/examples")
}

#[test]
fn every_example_fixture_passes_including_decoded_payloads() {
    for name in ["treasury", "dev"] {
        let dir = examples().join(name);
        let out = keyrack(&["policy", "test", dir.to_str().unwrap()]);
        let text = stdout(&out);
        assert!(out.status.success(), "{name}: {text}{}", stderr(&out));
        let fixtures = std::fs::read_dir(&dir).unwrap().count();
        assert!(
            text.contains(&format!("{fixtures} passed, 0 failed")),
            "{name}: every fixture ran: {text}"
        );
    }
    let text = stdout(&keyrack(&[
        "policy",
        "test",
        examples().join("treasury").to_str().unwrap(),
    ]));
    assert!(text.contains("pass  evm-small-transfer-payload"), "{text}");
    assert!(text.contains("pass  evm-over-limit-payload"), "{text}");
}

#[test]
fn a_fixture_whose_expectation_is_wrong_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let fixture =
        std::fs::read_to_string(examples().join("treasury/evm-small-transfer-payload.toml"))
            .unwrap()
            .replace("outcome = \"allow\"", "outcome = \"deny\"");
    std::fs::write(dir.path().join("wrong.toml"), fixture).unwrap();
    let policy = examples().join("treasury.toml");
    let out = keyrack(&[
        "policy",
        "test",
        dir.path().to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("FAIL  wrong"), "{}", stdout(&out));
}

#[test]
fn check_accepts_the_examples_and_names_an_unknown_field() {
    for name in ["treasury.toml", "dev.toml"] {
        let out = keyrack(&["policy", "check", examples().join(name).to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{name}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "format = 1\n[[rules]]\nid = \"r\"\neffect = \"allow\"\nmax_valeu = \"5\"\n",
    )
    .unwrap();
    let out = keyrack(&["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("rules[0].max_valeu"), "{said}");
}

#[test]
fn explain_prints_the_decoded_intent_and_every_rules_verdict() {
    let policy = examples().join("treasury.toml");
    let request = examples().join("treasury/evm-over-limit-payload.toml");
    let out = keyrack(&[
        "policy",
        "explain",
        "--policy",
        policy.to_str().unwrap(),
        "--request",
        request.to_str().unwrap(),
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    // Decoded by the EVM plugin: the destination and value from the transaction bytes.
    assert!(
        text.contains("0x28C6c06298d514Db089934071355E5743bf21d60"),
        "{text}"
    );
    assert!(text.contains("500000000000000000"), "{text}");
    assert!(text.contains("NEEDS APPROVALS"), "{text}");
    // Every rule of the file appears in the trace.
    let rules = std::fs::read_to_string(&policy)
        .unwrap()
        .matches("[[rules]]")
        .count();
    assert_eq!(
        text.matches("\n  MATCH ").count() + text.matches("\n  -     ").count(),
        rules,
        "{text}"
    );
}

#[test]
fn explain_says_what_a_lifecycle_request_asks_its_delay_and_who_judges_the_threshold() {
    let policy = examples().join("treasury.toml");
    let explain = |fixture: &str| {
        let request = examples().join("treasury").join(fixture);
        let out = keyrack(&[
            "policy",
            "explain",
            "--policy",
            policy.to_str().unwrap(),
            "--request",
            request.to_str().unwrap(),
        ]);
        let text = stdout(&out);
        assert!(out.status.success(), "{text}{}", stderr(&out));
        text
    };
    let text = explain("delete-approved-waits-24h.toml");
    assert!(
        text.contains("delete by wendy (wallet-admin) of key hot-1 (ed25519)"),
        "{text}"
    );
    assert!(!text.contains("intent"), "a delete has no payload: {text}");
    assert!(
        text.contains("ALLOW after a delay of 24h (rule 'delete-with-approvals-and-veto-window'"),
        "{text}"
    );
    let text = explain("reshare-lowering-threshold-denied.toml");
    assert!(
        text.contains("asks: threshold 2, committee size unchanged; the key now: 3 of 3"),
        "{text}"
    );
    assert!(
        text.contains("DENY: denied by rule 'reshare-never-lowers-the-threshold'"),
        "{text}"
    );
    assert!(text.contains("3 -> 2 (lower) is in lower"), "{text}");
    let text = explain("reshare-at-a-joining-node.toml");
    assert!(
        text.contains("the key now: unknown here (this node holds no share of the key)")
            && text.contains("its holders judge the change")
            && text.contains("NEEDS APPROVALS: rule 'reshare-with-approvals'"),
        "{text}"
    );
}
