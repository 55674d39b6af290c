//! Misconfiguration of each backend gives an error that names the setting to fix, and the
//! PKCS#11 sealing key is what the token itself says it is (checked with opensc's
//! pkcs11-tool, from outside keyrack).

use std::path::Path;
use std::process::Command;

use keyrack_hsm::config::SoftConfig;
use keyrack_hsm::{open, BackendKind, HsmConfig, KeyPolicy, SealError, SecretSource};
use keyrack_tests::{free_port, start_yubihsm_mock};

fn open_err(c: &HsmConfig) -> SealError {
    match open(c, Path::new("/"), KeyPolicy::CreateIfMissing) {
        Ok(_) => panic!("opened a misconfigured backend"),
        Err(e) => e,
    }
}

fn assert_names(e: &SealError, needles: &[&str]) {
    let text = e.to_string();
    for n in needles {
        assert!(text.contains(n), "error {text:?} does not mention {n:?}");
    }
}

#[test]
fn pkcs11_wrong_pin_names_the_pin_setting() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.pin");
    std::fs::write(&wrong, "not-the-pin\n").unwrap();
    // A token that no test ever logs into correctly, so no session of this process is
    // already authenticated.
    let mut c = HsmConfig::new(BackendKind::Pkcs11);
    let mut p = keyrack_tests::softhsm("keyrack-badpin", "keyrack-seal");
    p.pin = SecretSource::File(wrong);
    c.pkcs11 = Some(p);
    let e = open_err(&c);
    assert!(matches!(e, SealError::Login { .. }), "{e:?}");
    assert_names(&e, &["hsm.pkcs11.pin", "keyrack-badpin"]);
}

#[test]
fn pkcs11_missing_token_names_the_label_and_the_setup_script() {
    let mut c = HsmConfig::new(BackendKind::Pkcs11);
    c.pkcs11 = Some(keyrack_tests::softhsm("keyrack-test", "keyrack-seal"));
    c.pkcs11.as_mut().unwrap().token_label = "no-such-token".into();
    let e = open_err(&c);
    assert!(matches!(e, SealError::NotFound { .. }), "{e:?}");
    assert_names(
        &e,
        &[
            "no-such-token",
            "hsm.pkcs11.token_label",
            "softhsm-setup/softhsm-init.sh",
            "SOFTHSM2_CONF=",
        ],
    );
}

#[test]
fn pkcs11_missing_module_names_the_module_setting() {
    let mut c = HsmConfig::new(BackendKind::Pkcs11);
    c.pkcs11 = Some(keyrack_tests::softhsm("keyrack-test", "keyrack-seal"));
    c.pkcs11.as_mut().unwrap().module = "/nonexistent/libpkcs11.so".into();
    let e = open_err(&c);
    assert!(matches!(e, SealError::Unreachable { .. }), "{e:?}");
    assert_names(&e, &["hsm.pkcs11.module", "/nonexistent/libpkcs11.so"]);
}

#[test]
fn pkcs11_missing_pin_file_names_the_pin_setting() {
    let mut c = HsmConfig::new(BackendKind::Pkcs11);
    c.pkcs11 = Some(keyrack_tests::softhsm("keyrack-test", "keyrack-seal"));
    c.pkcs11.as_mut().unwrap().pin = SecretSource::File("/nonexistent/pin".into());
    let e = open_err(&c);
    assert_names(&e, &["hsm.pkcs11.pin", "/nonexistent/pin"]);
}

#[test]
fn tpm_unreachable_names_the_tcti_setting() {
    let mut c = HsmConfig::new(BackendKind::Tpm);
    let tcti = format!("swtpm:host=127.0.0.1,port={}", free_port());
    c.tpm = Some(keyrack_hsm::config::TpmConfig {
        tcti: tcti.clone(),
        storage_key_handle: 0x8100_0100,
        owner_auth: None,
    });
    let e = open_err(&c);
    assert!(matches!(e, SealError::Unreachable { .. }), "{e:?}");
    assert_names(&e, &["hsm.tpm.tcti", &tcti]);
}

#[test]
fn tpm_bad_handle_names_the_handle_setting() {
    let mut c = HsmConfig::new(BackendKind::Tpm);
    c.tpm = Some(keyrack_tests::swtpm(0x0100_0000));
    let e = open_err(&c);
    assert_names(&e, &["hsm.tpm.storage_key_handle"]);
}

#[test]
fn yubihsm_wrong_password_names_the_password_setting() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("pw");
    std::fs::write(&wrong, "not-the-password").unwrap();
    let url = start_yubihsm_mock();
    for connector in ["mock", url.as_str()] {
        let mut c = HsmConfig::new(BackendKind::Yubihsm);
        c.yubihsm = Some(keyrack_tests::yubihsm(connector, &wrong, 0x0100));
        let e = open_err(&c);
        assert!(matches!(e, SealError::Login { .. }), "{connector}: {e:?}");
        assert_names(&e, &["hsm.yubihsm.password"]);
    }
}

#[test]
fn yubihsm_unreachable_connector_names_the_connector_setting() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "password").unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let mut c = HsmConfig::new(BackendKind::Yubihsm);
    c.yubihsm = Some(keyrack_tests::yubihsm(&url, &pw, 0x0100));
    let e = open_err(&c);
    assert!(matches!(e, SealError::Unreachable { .. }), "{e:?}");
    assert_names(&e, &["hsm.yubihsm.connector", &url]);
}

#[test]
fn soft_missing_passphrase_and_short_salt_name_their_settings() {
    let mut c = HsmConfig::new(BackendKind::Soft);
    c.soft = Some(SoftConfig {
        passphrase: SecretSource::Env("KEYRACK_TEST_UNSET_VARIABLE".into()),
        salt: "00".repeat(16),
    });
    assert_names(
        &open_err(&c),
        &["hsm.soft.passphrase", "KEYRACK_TEST_UNSET_VARIABLE"],
    );
    c.soft = Some(SoftConfig {
        passphrase: SecretSource::Env("PATH".into()),
        salt: "0011".into(),
    });
    assert_names(&open_err(&c), &["hsm.soft.salt", "at least 16 bytes"]);
}

#[test]
fn soft_wrong_passphrase_does_not_open_blobs() {
    let salt = "ab".repeat(16);
    let right =
        keyrack_hsm::soft::SoftSealer::from_passphrase(b"right", &hex::decode(&salt).unwrap())
            .unwrap();
    let wrong =
        keyrack_hsm::soft::SoftSealer::from_passphrase(b"wrong", &hex::decode(&salt).unwrap())
            .unwrap();
    let sealed = keyrack_hsm::Sealer::seal(&right, b"rec", b"secret").unwrap();
    assert!(matches!(
        keyrack_hsm::Sealer::unseal(&wrong, b"rec", &sealed),
        Err(SealError::WrongKey { .. })
    ));
}

/// The sealing key, as opensc's pkcs11-tool sees it: AES-256, sensitive, never extractable.
#[test]
fn pkcs11_sealing_key_is_sensitive_and_not_extractable_per_pkcs11_tool() {
    let label = keyrack_tests::unique("attr-check");
    let mut c = HsmConfig::new(BackendKind::Pkcs11);
    c.pkcs11 = Some(keyrack_tests::softhsm("keyrack-test", &label));
    drop(open(&c, Path::new("/"), KeyPolicy::CreateIfMissing).expect("create the key"));

    let pin = std::fs::read_to_string(keyrack_tests::pin_file("keyrack-test")).unwrap();
    let out = Command::new("pkcs11-tool")
        .args([
            "--module",
            &keyrack_tests::required_env("KEYRACK_PKCS11_MODULE"),
        ])
        .args([
            "--token-label",
            "keyrack-test",
            "--login",
            "--pin",
            pin.trim(),
        ])
        .args(["--list-objects", "--type", "secrkey", "--label", &label])
        .output()
        .expect("pkcs11-tool (package opensc) must be installed: softhsm-setup/install-deps.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("Secret Key Object; AES length 32"),
        "{listing}"
    );
    assert!(listing.contains(&label), "{listing}");
    let access: Vec<&str> = listing
        .lines()
        .find_map(|l| l.trim().strip_prefix("Access:"))
        .unwrap_or_else(|| panic!("no Access line in {listing}"))
        .split(',')
        .map(str::trim)
        .collect();
    assert!(
        access.contains(&"sensitive"),
        "CKA_SENSITIVE is not true: {access:?}"
    );
    assert!(access.contains(&"never extractable"), "{access:?}");
    assert!(
        !access.contains(&"extractable"),
        "CKA_EXTRACTABLE is true: {access:?}"
    );
}
