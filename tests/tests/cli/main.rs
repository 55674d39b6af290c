//! Tests of the `keyrack` command line, one module per command, run as a user would: the real
//! binary against real backends (SoftHSM, swtpm, the YubiHSM mock's HTTP connector, soft).

mod hsm_check;
mod init;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use keyrack_tests::{keyrack_bin, ChildGuard};

pub const MOCK_BIN: &str = env!("CARGO_BIN_EXE_keyrack-yubihsm-mock");

pub fn keyrack(args: &[&str]) -> Output {
    Command::new(keyrack_bin())
        .args(args)
        .env("KEYRACK_LOG", "error")
        .output()
        .expect("run keyrack")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A backend to init a node on: the `keyrack init` arguments, and the secret values that
/// must never appear in the node directory.
pub struct Target {
    pub args: Vec<String>,
    pub secrets: Vec<String>,
    pub _dir: tempfile::TempDir,
    pub _services: Vec<ChildGuard>,
}

pub fn target(backend: &str) -> Target {
    let dir = tempfile::tempdir().unwrap();
    let s = |v: &str| v.to_owned();
    match backend {
        "soft" => {
            let f = dir.path().join("passphrase");
            std::fs::write(&f, "correct horse battery staple\n").unwrap();
            Target {
                args: vec![s("--backend"), s("soft"), s("--passphrase-file"), path(&f)],
                secrets: vec![s("correct horse battery staple")],
                _dir: dir,
                _services: vec![],
            }
        }
        "pkcs11" => {
            let pin = keyrack_tests::pin_file("keyrack-test");
            Target {
                args: vec![
                    s("--backend"),
                    s("pkcs11"),
                    s("--pkcs11-module"),
                    keyrack_tests::required_env("KEYRACK_PKCS11_MODULE"),
                    s("--token-label"),
                    s("keyrack-test"),
                    s("--key-label"),
                    keyrack_tests::unique("cli"),
                    s("--pin-file"),
                    path(&pin),
                ],
                secrets: vec![std::fs::read_to_string(&pin).unwrap().trim().to_owned()],
                _dir: dir,
                _services: vec![],
            }
        }
        "tpm" => Target {
            args: vec![
                s("--backend"),
                s("tpm"),
                s("--tpm-tcti"),
                keyrack_tests::required_env("KEYRACK_TPM_TCTI"),
                s("--tpm-handle"),
                s("0x81000120"),
            ],
            secrets: vec![],
            _dir: dir,
            _services: vec![],
        },
        "yubihsm" => {
            let (guard, url) = keyrack_tests::spawn_yubihsm_mock(MOCK_BIN);
            let f = dir.path().join("password");
            std::fs::write(&f, "password").unwrap();
            Target {
                args: vec![
                    s("--backend"),
                    s("yubihsm"),
                    s("--yubihsm-connector"),
                    url,
                    s("--password-file"),
                    path(&f),
                ],
                secrets: vec![],
                _dir: dir,
                _services: vec![guard],
            }
        }
        other => panic!("no target {other}"),
    }
}

pub fn path(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_owned()
}

/// Runs `keyrack init` for `node_id` in a fresh directory; returns (its parent, node dir).
pub fn init_node(t: &Target, node_id: &str) -> (tempfile::TempDir, PathBuf) {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join(node_id);
    let mut args = vec!["init", "--dir", dir.to_str().unwrap(), "--node-id", node_id];
    args.extend(t.args.iter().map(String::as_str));
    let out = keyrack(&args);
    assert!(
        out.status.success(),
        "keyrack init failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    (parent, dir)
}
