//! Tests of the `keyrack` command line, one module per command, run as a user would: the real
//! binary against real backends (SoftHSM, swtpm, the YubiHSM mock's HTTP connector, soft).

mod client;
mod cluster;
mod dev;
mod hsm_check;
mod init;
mod keys;
mod manifest;
mod node;
mod policy;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test, built by cargo for these tests.
pub const KEYRACK: &str = env!("CARGO_BIN_EXE_keyrack");

pub fn keyrack(args: &[&str]) -> Output {
    Command::new(KEYRACK)
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
        },
        "yubihsm" => {
            let url = keyrack_tests::start_yubihsm_mock();
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
    args.extend(["--api-listen", "127.0.0.1:0"]);
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

/// Rewrites a file of a node directory: replaces the first line starting with `prefix`.
pub fn replace_line(path: &Path, prefix: &str, new_line: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in {}", path.display()))
        .to_owned();
    std::fs::write(path, text.replacen(&line, new_line, 1)).unwrap();
}
