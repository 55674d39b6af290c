//! `keyrack keys generate|public`.

use std::os::unix::fs::PermissionsExt;

use super::*;

/// Generates a key file (and its public key file) in `dir`; returns (key file, public key
/// file, public key hex printed).
pub fn generate(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    let key = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let out = keyrack(&[
        "keys",
        "generate",
        "--out",
        &path(&key),
        "--public-out",
        &path(&public),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    (key, public, stdout(&out).trim().to_owned())
}

#[test]
fn generate_writes_a_private_key_file_and_prints_only_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public, printed) = generate(dir.path(), "alice");

    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let secret = std::fs::read_to_string(&key).unwrap();
    let secret = secret.trim();
    assert_eq!(secret.len(), 64);
    assert_eq!(printed.len(), 64);
    assert_ne!(printed, secret);
    assert_eq!(
        std::fs::read_to_string(&public).unwrap(),
        format!("ed25519:{printed}\n")
    );

    // `keys public` prints the same key; nothing ever prints the secret.
    let shown = keyrack(&["keys", "public", "--key", &path(&key)]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert_eq!(stdout(&shown).trim(), printed);
    let again = keyrack(&["keys", "generate", "--out", &path(&key)]);
    assert!(!again.status.success(), "overwrote a key file");
    assert!(
        stderr(&again).contains("refusing to overwrite"),
        "{}",
        stderr(&again)
    );
    for out in [&shown, &again] {
        let all = format!("{}{}", stdout(out), stderr(out)).to_lowercase();
        assert!(!all.contains(secret), "the secret was printed:\n{all}");
    }

    // A key file others may read is refused, with the fix.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loose = keyrack(&["keys", "public", "--key", &path(&key)]);
    assert_eq!(loose.status.code(), Some(2));
    assert!(stderr(&loose).contains("chmod 600"), "{}", stderr(&loose));
}
