//! `keyrack hsm check`.

use super::*;

fn check(dir: &Path, json: bool) -> Output {
    let config = dir.join("keyrack.toml");
    let mut args = vec!["hsm", "check", "--config", config.to_str().unwrap()];
    if json {
        args.push("--json");
    }
    keyrack(&args)
}

fn check_passes_in_a_fresh_process(backend: &str) {
    let t = target(backend);
    let (_parent, dir) = init_node(&t, "node0");
    let out = check(&dir, false);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("hsm backend {backend}")), "{text}");
    assert_eq!(text.matches("ok  ").count(), 4, "{text}");

    let out = check(&dir, true);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["node_id"], "node0");
    assert_eq!(report["health"]["backend"], backend);
    for field in ["reachable", "logged_in", "key_present"] {
        assert_eq!(report["health"][field], true, "{field}");
    }
    assert_eq!(report["identity_ok"], true);
}

#[test]
fn soft_check_passes_in_a_fresh_process() {
    check_passes_in_a_fresh_process("soft");
}
#[test]
fn pkcs11_check_passes_in_a_fresh_process() {
    check_passes_in_a_fresh_process("pkcs11");
}
#[test]
fn tpm_check_passes_in_a_fresh_process() {
    check_passes_in_a_fresh_process("tpm");
}
#[test]
fn yubihsm_check_passes_in_a_fresh_process() {
    check_passes_in_a_fresh_process("yubihsm");
}

#[test]
fn pkcs11_tampered_identity_fails_the_check() {
    let t = target("pkcs11");
    let (_parent, dir) = init_node(&t, "node0");
    let sealed = dir.join("identity.sealed");
    let mut blob = std::fs::read(&sealed).unwrap();
    let last = blob.len() - 1;
    blob[last] ^= 1;
    std::fs::write(&sealed, &blob).unwrap();
    let out = check(&dir, false);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("FAIL identity"), "{}", stdout(&out));
    assert!(stdout(&out).contains("altered"), "{}", stdout(&out));
}

#[test]
fn another_nodes_identity_blob_fails_the_check() {
    let t = target("soft");
    let (_p0, dir0) = init_node(&t, "node0");
    let (_p1, dir1) = init_node(&t, "node1");
    // Same passphrase, different salts: node1's blob is under another key; and even under
    // the same key the AAD names node1.
    std::fs::copy(dir1.join("identity.sealed"), dir0.join("identity.sealed")).unwrap();
    let out = check(&dir0, false);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("FAIL identity"), "{}", stdout(&out));
}

#[test]
fn forged_public_identity_fails_the_check() {
    let t = target("soft");
    let (_parent, dir) = init_node(&t, "node0");
    let agreement = format!("agreement_key = \"{}\"", "11".repeat(32));
    replace_line(&dir.join("identity.pub.toml"), "agreement_key", &agreement);
    let out = check(&dir, false);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("bad signature"), "{}", stdout(&out));
}

#[test]
fn unknown_config_keys_are_refused() {
    let t = target("soft");
    let (_parent, dir) = init_node(&t, "node0");
    replace_line(
        &dir.join("keyrack.toml"),
        "[hsm]",
        "[hsm]\nbakend = \"soft\"",
    );
    let out = check(&dir, false);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown field `bakend`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn pkcs11_wrong_pin_is_reported_with_the_setting() {
    let t = target("pkcs11");
    let (_parent, dir) = init_node(&t, "node0");
    let wrong = dir.parent().unwrap().join("wrong.pin");
    std::fs::write(&wrong, "000000").unwrap();
    let pin_line = format!("file = \"{}\"", wrong.display());
    replace_line(&dir.join("keyrack.toml"), "file = ", &pin_line);
    let out = check(&dir, false);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("hsm.pkcs11.pin"), "{}", stderr(&out));
}

#[test]
fn unreachable_tpm_is_reported_with_the_setting() {
    let t = target("tpm");
    let (_parent, dir) = init_node(&t, "node0");
    let dead = format!(
        "tcti = \"swtpm:host=127.0.0.1,port={}\"",
        keyrack_tests::free_port()
    );
    replace_line(&dir.join("keyrack.toml"), "tcti = ", &dead);
    let out = check(&dir, false);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("hsm.tpm.tcti"), "{}", stderr(&out));
}

#[test]
fn soft_backend_warns_on_every_start_and_softhsm_does_not() {
    let t = target("soft");
    let (_parent, dir) = init_node(&t, "node0");
    let config = dir.join("keyrack.toml");
    for _ in 0..2 {
        let out = Command::new(KEYRACK)
            .args(["hsm", "check", "--config", config.to_str().unwrap()])
            .env_remove("KEYRACK_LOG")
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(stderr(&out).contains("WARN"), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("for development only"),
            "{}",
            stderr(&out)
        );
    }
    // A hardware backend says nothing of the kind.
    let t = target("pkcs11");
    let (_parent, dir) = init_node(&t, "node0");
    let out = Command::new(KEYRACK)
        .args([
            "hsm",
            "check",
            "--config",
            dir.join("keyrack.toml").to_str().unwrap(),
        ])
        .env_remove("KEYRACK_LOG")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        !stderr(&out).contains("development only"),
        "{}",
        stderr(&out)
    );
}
