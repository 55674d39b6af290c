//! `keyrack init`.

use std::os::unix::fs::PermissionsExt;

use keyrack_hsm::KeyPolicy;
use keyrack_node::config::LoadedConfig;
use keyrack_node::identity::NodeIdentity;

use super::*;

/// Every file in the node directory, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p))
        } else {
            out.push(p)
        }
    }
    out
}

fn encodings(secret: &[u8]) -> Vec<Vec<u8>> {
    use std::fmt::Write;
    let upper = secret.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    });
    vec![
        secret.to_vec(),
        hex::encode(secret).into_bytes(),
        upper.into_bytes(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn init_creates_a_sealed_identity_and_leaks_nothing(backend: &str) {
    let t = target(backend);
    let (_parent, dir) = init_node(&t, "node0");

    // Private permissions.
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let all = files(&dir);
    let names: Vec<String> = all
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "api-token",
            "identity.pub.toml",
            "identity.sealed",
            "keyrack.toml"
        ]
    );
    // The HTTP API's token: 32 random bytes in hex, named (not copied) by the config.
    let token = std::fs::read_to_string(dir.join("api-token")).unwrap();
    let token = token.strip_suffix('\n').expect("one line");
    assert!(
        token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token:?}"
    );
    let config = std::fs::read_to_string(dir.join("keyrack.toml")).unwrap();
    assert!(!config.contains(token), "the config holds the token itself");
    let api = LoadedConfig::load(&dir.join("keyrack.toml"))
        .unwrap()
        .config
        .api;
    assert_eq!(
        (api.listen.as_str(), api.token_file.to_str()),
        ("127.0.0.1:0", Some("api-token"))
    );
    for f in &all {
        assert_eq!(
            std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            f.display()
        );
    }

    // The secrets, unsealed by the library the node uses, appear in no file of the node
    // directory in any encoding; neither does the PIN or passphrase.
    let loaded = LoadedConfig::load(&dir.join("keyrack.toml")).unwrap();
    let sealer =
        keyrack_hsm::open(&loaded.config.hsm, &loaded.base_dir, KeyPolicy::MustExist).unwrap();
    let blob = std::fs::read(dir.join("identity.sealed")).unwrap();
    let identity = NodeIdentity::unseal("node0", sealer.as_ref(), &blob).unwrap();
    drop(sealer);
    let secret = identity.secret_bytes_for_leak_tests();
    let mut needles: Vec<Vec<u8>> = vec![];
    for half in [&secret[..32], &secret[32..]] {
        needles.extend(encodings(half));
        // Any 16-byte window of a key would be a leak too.
        needles.extend(encodings(&half[8..24]));
    }
    needles.extend(t.secrets.iter().map(|s| s.as_bytes().to_vec()));
    for f in &all {
        let bytes = std::fs::read(f).unwrap();
        for n in &needles {
            assert!(!contains(&bytes, n), "{} contains a secret", f.display());
        }
    }

    // The public identity names the node's real public keys.
    let public = keyrack_client::identity::PublicIdentity::from_toml(
        &std::fs::read_to_string(dir.join("identity.pub.toml")).unwrap(),
    )
    .unwrap();
    assert!(identity.matches(&public));
}

#[test]
fn soft_init_creates_a_sealed_identity_and_leaks_nothing() {
    init_creates_a_sealed_identity_and_leaks_nothing("soft");
}
#[test]
fn pkcs11_init_creates_a_sealed_identity_and_leaks_nothing() {
    init_creates_a_sealed_identity_and_leaks_nothing("pkcs11");
}
#[test]
fn tpm_init_creates_a_sealed_identity_and_leaks_nothing() {
    init_creates_a_sealed_identity_and_leaks_nothing("tpm");
}
#[test]
fn yubihsm_init_creates_a_sealed_identity_and_leaks_nothing() {
    init_creates_a_sealed_identity_and_leaks_nothing("yubihsm");
}

#[test]
fn init_refuses_to_overwrite_an_identity_and_changes_nothing() {
    let t = target("soft");
    let (_parent, dir) = init_node(&t, "node0");
    let before: Vec<Vec<u8>> = files(&dir)
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    let mut args = vec!["init", "--dir", dir.to_str().unwrap(), "--node-id", "node0"];
    args.extend(t.args.iter().map(String::as_str));
    let out = keyrack(&args);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("refusing to overwrite the identity"),
        "{}",
        stderr(&out)
    );
    let after: Vec<Vec<u8>> = files(&dir)
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn init_refuses_when_only_the_sealed_identity_exists() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("n");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("identity.sealed"), b"old").unwrap();
    let t = target("soft");
    let mut args = vec!["init", "--dir", dir.to_str().unwrap(), "--node-id", "n"];
    args.extend(t.args.iter().map(String::as_str));
    let out = keyrack(&args);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("identity.sealed exists"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(dir.join("identity.sealed")).unwrap(), b"old");
}

#[test]
fn a_pin_cannot_be_given_on_the_command_line() {
    let out = keyrack(&[
        "init",
        "--dir",
        "/tmp/x",
        "--node-id",
        "n",
        "--backend",
        "pkcs11",
        "--token-label",
        "t",
        "--pin",
        "1234",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unexpected argument '--pin'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_backend_settings_are_named() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("n");
    let d = dir.to_str().unwrap();
    for (args, expected) in [
        (
            vec!["--backend", "pkcs11", "--pin-env", "PATH"],
            "--backend pkcs11 needs --token-label",
        ),
        (
            vec!["--backend", "pkcs11", "--token-label", "t"],
            "needs --pin-file or --pin-env",
        ),
        (vec!["--backend", "tpm"], "--backend tpm needs --tpm-tcti"),
        (
            vec!["--backend", "yubihsm", "--password-env", "PATH"],
            "needs --yubihsm-connector",
        ),
        (
            vec![
                "--backend",
                "soft",
                "--passphrase-env",
                "KEYRACK_UNSET_VARIABLE",
            ],
            "KEYRACK_UNSET_VARIABLE: the variable is not set",
        ),
        (
            vec!["--backend", "soft", "--passphrase-file", "/nonexistent"],
            "/nonexistent: no such file",
        ),
    ] {
        let mut all = vec!["init", "--dir", d, "--node-id", "n"];
        all.extend(args);
        let out = keyrack(&all);
        assert_eq!(out.status.code(), Some(2), "{all:?}");
        assert!(stderr(&out).contains(expected), "{all:?}: {}", stderr(&out));
        assert!(!dir.exists(), "a failed init left {}", dir.display());
    }
}

#[test]
fn bad_node_ids_are_refused() {
    for id in ["Node0", "-x", "a/b", ""] {
        let node_id = format!("--node-id={id}");
        let out = keyrack(&[
            "init",
            "--dir",
            "/tmp/keyrack-never",
            &node_id,
            "--backend",
            "soft",
            "--passphrase-env",
            "PATH",
        ]);
        assert_eq!(out.status.code(), Some(2), "{id}");
        assert!(
            stderr(&out).contains("invalid node id"),
            "{id}: {}",
            stderr(&out)
        );
    }
}
