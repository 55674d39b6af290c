//! `keyrack dev`: the whole local cluster as a user starts it — the real binary makes its
//! SoftHSM tokens, nodes, keys and manifest, starts nats-server and the node processes — then
//! a client signs through it, and Ctrl-C (SIGINT), SIGTERM or a dead node stop every process
//! it started. Signatures are checked with ed25519-dalek.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use sha2::{Digest as _, Sha256};

use super::*;

/// Setup of a fresh directory (three tokens and identities on SoftHSM) plus start.
const READY: Duration = Duration::from_secs(240);
/// How long `keyrack dev` may take to stop everything.
const STOPPED: Duration = Duration::from_secs(40);

/// A running `keyrack dev`, its stdout and stderr (lines prefixed `stderr: `) read line by
/// line. Dropping it kills it and every
/// process it reported starting (so a failed test leaves nothing behind).
struct Dev {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    dir: PathBuf,
}

impl Dev {
    fn start(dir: &Path, extra: &[&str]) -> Dev {
        let mut child = Command::new(KEYRACK)
            .args(["dev", "--dir", dir.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keyrack dev");
        let (tx, lines) = mpsc::channel();
        let stdout: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let stderr: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for (stream, prefix) in [(stdout, ""), (stderr, "stderr: ")] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(format!("{prefix}{line}")).is_err() {
                        break;
                    }
                }
            });
        }
        Dev {
            child,
            lines,
            seen: Vec::new(),
            dir: dir.to_owned(),
        }
    }

    fn output(&self) -> String {
        self.seen.join("\n")
    }

    /// Reads output until a line contains `needle`; returns that line.
    fn wait_for(&mut self, needle: &str, within: Duration) -> String {
        let until = Instant::now() + within;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no line with {needle:?} within {within:?}; output so far:\n{}",
                    self.output()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "keyrack dev ended ({:?}) before printing {needle:?}; output:\n{}",
                    self.child.try_wait(),
                    self.output()
                ),
            }
        }
    }

    /// Waits for the ready line; returns the NATS URL it names.
    fn wait_ready(&mut self) -> String {
        let line = self.wait_for("is ready", READY);
        line.split_whitespace()
            .find(|w| w.starts_with("nats://"))
            .unwrap_or_else(|| panic!("no NATS URL in {line:?}"))
            .trim_end_matches(',')
            .to_owned()
    }

    /// The pids `keyrack dev` reported for nats-server and each node.
    fn child_pids(&self) -> Vec<u32> {
        let pids: Vec<u32> = self
            .seen
            .iter()
            .filter_map(|l| l.split_once("(pid ")?.1.split_once(')'))
            .map(|(pid, _)| pid.parse().unwrap())
            .collect();
        assert_eq!(pids.len(), 4, "nats-server and 3 nodes:\n{}", self.output());
        pids
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits for `keyrack dev` to exit; reads the rest of its output.
    fn wait_exit(&mut self) -> ExitStatus {
        let until = Instant::now() + STOPPED;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < until,
                "keyrack dev did not exit within {STOPPED:?}; output:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // The rest of the output, until both pipes close.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        status
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for pid in self
            .seen
            .iter()
            .filter_map(|l| l.split_once("(pid ")?.1.split_once(')'))
            .filter_map(|(pid, _)| pid.parse::<u32>().ok())
        {
            if is_ours(pid, &self.dir) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

/// Whether `pid` is a live process started for the dev directory `dir` (its command line
/// names a path in it), not a pid reused by something else.
fn is_ours(pid: u32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = state
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    !zombie && String::from_utf8_lossy(&cmdline).contains(dir.to_str().unwrap())
}

/// Asserts that none of `pids` is left running.
fn assert_all_gone(pids: &[u32], dir: &Path) {
    let left: Vec<u32> = pids.iter().copied().filter(|p| is_ours(*p, dir)).collect();
    assert!(
        left.is_empty(),
        "still running after keyrack dev exited: {left:?}"
    );
}

/// `keyrack client --config DIR/client.toml --json ARGS`, as the dev cluster's banner says;
/// it must succeed. Returns its JSON.
fn client(dir: &Path, args: &[&str]) -> serde_json::Value {
    let config = dir.join("client.toml");
    let mut all = vec!["client", "--config", config.to_str().unwrap(), "--json"];
    all.extend(args);
    let out = keyrack(&all);
    assert!(
        out.status.success(),
        "keyrack {all:?} failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    serde_json::from_str(&stdout(&out)).expect("one JSON object")
}

/// Creates (or, existing, gets back) the Ed25519 key `wallet-1`; returns its public key.
fn keygen(dir: &Path) -> String {
    let out = client(
        dir,
        &["keygen", "wallet-1", "--scheme", "eddsa", "--timeout", "90"],
    );
    assert_eq!(out["nodes"].as_array().unwrap().len(), 3, "{out}");
    out["keys"][0]["public_key"].as_str().unwrap().to_owned()
}

fn unhex<const N: usize>(v: &serde_json::Value) -> [u8; N] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

#[test]
fn softhsm_dev_cluster_signs_ecdsa_and_ed25519_then_ctrl_c_stops_every_process() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("dev");
    let mut dev = Dev::start(&dir, &["--nodes", "3"]);
    let url = dev.wait_ready();
    let pids = dev.child_pids();
    assert!(
        dev.output().contains("PUBLIC TEST FIXTURE"),
        "the fixture primes are announced:\n{}",
        dev.output()
    );
    assert!(
        dev.output()
            .contains("WARNING: the DEVELOPMENT POLICY is active")
            && dev.output().contains("DELETE any key"),
        "the allow-everything policy is announced:\n{}",
        dev.output()
    );
    let client_toml = std::fs::read_to_string(dir.join("client.toml")).unwrap();
    assert!(client_toml.contains(&url), "{client_toml}");

    // The README's wallet: an ECDSA and an Ed25519 key under one id. The committee's first
    // ECDSA key runs its setup, on the fixture primes keyrack dev seeded.
    let keygen = client(
        &dir,
        &[
            "keygen",
            "wallet-1",
            "--scheme",
            "ecdsa",
            "--scheme",
            "eddsa",
            "--timeout",
            "240",
        ],
    );
    let key = |scheme: &str| {
        let keys = keygen["keys"].as_array().unwrap();
        let found = keys.iter().find(|k| k["scheme"] == scheme);
        let found = found.unwrap_or_else(|| panic!("no {scheme} key in {keygen}"));
        found["public_key"].as_str().unwrap().to_owned()
    };
    let (ecdsa_key, ed25519_key) = (key("ecdsa-secp256k1"), key("ed25519"));
    let message = "paid by the dev cluster";

    let signed = client(
        &dir,
        &[
            "sign",
            "wallet-1",
            "--scheme",
            "eddsa",
            "--message",
            message,
        ],
    );
    assert_eq!(signed["public_key"].as_str(), Some(ed25519_key.as_str()));
    let key = ed25519_dalek::VerifyingKey::from_bytes(&unhex(&signed["public_key"])).unwrap();
    key.verify_strict(
        message.as_bytes(),
        &ed25519_dalek::Signature::from_bytes(&unhex(&signed["signature"])),
    )
    .expect("the Ed25519 signature verifies with ed25519-dalek");

    // ECDSA with the key itself and with its child m/0/1: k256 checks each signature over
    // the message's SHA-256 under the key the nodes say signed (the child's differs).
    for path in [None, Some("m/0/1")] {
        let mut args = vec![
            "sign",
            "wallet-1",
            "--scheme",
            "ecdsa",
            "--message",
            message,
        ];
        args.extend(path.map(|p| ["--path", p]).into_iter().flatten());
        let signed = client(&dir, &args);
        let public = signed["public_key"].as_str().unwrap();
        assert_eq!(public == ecdsa_key, path.is_none(), "{signed}");
        let digest: [u8; 32] = unhex(&signed["digest_or_message"]);
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(message)));
        let key =
            k256::ecdsa::VerifyingKey::from_sec1_bytes(&hex::decode(public).unwrap()).unwrap();
        let signature =
            k256::ecdsa::Signature::from_slice(&unhex::<64>(&signed["signature"])).unwrap();
        key.verify_prehash(&digest, &signature)
            .unwrap_or_else(|e| panic!("ECDSA signature at {path:?} does not verify: {e}"));
    }

    dev.signal("INT");
    let status = dev.wait_exit();
    assert_eq!(status.code(), Some(0), "output:\n{}", dev.output());
    for stopped in [
        "node0 stopped",
        "node1 stopped",
        "node2 stopped",
        "nats-server stopped",
    ] {
        assert!(
            dev.output().contains(stopped),
            "{stopped}:\n{}",
            dev.output()
        );
    }
    assert_all_gone(&pids, &dir);
    assert!(!dir.join("dev.pid").exists());
}

#[test]
fn softhsm_dev_dead_node_stops_the_cluster_a_rerun_keeps_the_wallet_and_stops_leftovers() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("dev");
    let mut dev = Dev::start(&dir, &[]);
    dev.wait_ready();
    let pids = dev.child_pids();
    let public_key = keygen(&dir);

    // A node dies: keyrack dev says which, shows its log, stops the rest and exits 1.
    let node1 = pids[2];
    Command::new("kill")
        .args(["-9", &node1.to_string()])
        .status()
        .unwrap();
    let status = dev.wait_exit();
    assert_eq!(status.code(), Some(1), "output:\n{}", dev.output());
    assert!(
        dev.output()
            .contains(&format!("node1 (pid {node1}) exited unexpectedly")),
        "{}",
        dev.output()
    );
    assert_all_gone(&pids, &dir);
    drop(dev);

    // Again on the same directory: the same cluster, the same wallet.
    let mut dev = Dev::start(&dir, &[]);
    dev.wait_ready();
    assert!(
        dev.output().contains("reusing the 3-node cluster"),
        "{}",
        dev.output()
    );
    let pids = dev.child_pids();
    assert_eq!(keygen(&dir), public_key);

    // keyrack dev itself killed (SIGKILL: it cannot stop anything): its processes run on,
    // and the next keyrack dev on the directory stops them before it starts its own.
    dev.signal("KILL");
    dev.wait_exit();
    let orphans: Vec<u32> = pids.iter().copied().filter(|p| is_ours(*p, &dir)).collect();
    assert_eq!(
        orphans, pids,
        "a SIGKILLed keyrack dev leaves its processes"
    );
    let _killed = dev; // dropped last: its Drop would kill the orphans this test is about
    let mut dev = Dev::start(&dir, &[]);
    dev.wait_ready();
    for pid in &orphans {
        let said = format!("stopping pid {pid}, left running by an earlier keyrack dev");
        assert!(dev.output().contains(&said), "{said}:\n{}", dev.output());
    }
    assert_all_gone(&orphans, &dir);
    let pids = dev.child_pids();
    assert_eq!(keygen(&dir), public_key);
    dev.signal("TERM");
    assert_eq!(dev.wait_exit().code(), Some(0), "output:\n{}", dev.output());
    assert_all_gone(&pids, &dir);
}

#[test]
fn softhsm_dev_without_its_tools_names_install_deps() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("dev");
    let empty_path = work.path().join("bin");
    std::fs::create_dir(&empty_path).unwrap();
    let out = Command::new(KEYRACK)
        .args(["dev", "--dir", dir.to_str().unwrap()])
        .env("PATH", &empty_path)
        .env(
            "KEYRACK_PKCS11_MODULE",
            work.path().join("no-such-module.so"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for named in [
        "softhsm2-util",
        "KEYRACK_PKCS11_MODULE",
        "softhsm-setup/install-deps.sh",
    ] {
        assert!(err.contains(named), "{named} in:\n{err}");
    }
    assert!(!dir.exists(), "nothing is created when a tool is missing");
}

#[test]
fn dev_refuses_a_directory_it_did_not_make_and_leaves_it_alone() {
    use std::os::unix::fs::PermissionsExt as _;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("mine");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("notes.txt"), "keep me").unwrap();
    for extra in [&[][..], &["--fresh"][..]] {
        let mut args = vec!["dev", "--dir", dir.to_str().unwrap()];
        args.extend(extra);
        let out = keyrack(&args);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("not made by keyrack dev"),
            "{}",
            stderr(&out)
        );
    }
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["notes.txt"]);
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755);

    let out = keyrack(&["dev", "--dir", dir.to_str().unwrap(), "--threshold", "1"]);
    assert!(stderr(&out).contains("--threshold 1"), "{}", stderr(&out));
}
