//! `keyrack node`: real node processes, set up through the CLI (init on SoftHSM, keys,
//! manifest), on a real nats-server; a client submits signed requests and verifies what
//! comes back. Covers keygen, t-of-n signing, a node killed with SIGKILL, and a restart of
//! the nodes with one still down (shares unsealed from SQLite through SoftHSM).

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keyrack_client::manifest::SignedManifest;
use keyrack_client::request::{InitiatorKey, PayloadKind};
use keyrack_client::scheme::Scheme;
use keyrack_client::sdk::{Client, SdkError};
use keyrack_tests::NatsServer;

use super::*;

const CLUSTER: &str = "c1";

struct NodeProcess(Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_node(config: &Path) -> NodeProcess {
    let child = Command::new(KEYRACK)
        .args(["node", "--config", config.to_str().unwrap()])
        .env(
            "KEYRACK_LOG",
            std::env::var("KEYRACK_NODE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start keyrack node");
    NodeProcess(child)
}

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

/// Signs `message` with the Ed25519 key through the SDK (which verifies the signature
/// itself) and checks it once more with ed25519-dalek; returns the node that answered.
async fn sign_and_verify(client: &Client, public_key: &[u8], message: &[u8]) -> String {
    let signed = client
        .sign(
            "wallet-1",
            Scheme::Ed25519,
            message,
            PayloadKind::Message,
            &[],
            Duration::from_secs(60),
        )
        .await
        .expect("a verified signature");
    assert_eq!(signed.signature.public_key, public_key);
    let key = ed25519_dalek::VerifyingKey::from_bytes(&public_key.try_into().unwrap()).unwrap();
    key.verify_strict(
        message,
        &ed25519_dalek::Signature::from_bytes(&signed.signature.signature),
    )
    .expect("verifies independently");
    signed.node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_node_processes_keygen_sign_survive_a_kill_and_a_restart() {
    let server = NatsServer::start();
    let work = tempfile::tempdir().unwrap();
    let w = |name: &str| work.path().join(name);
    // Three nodes, each with its own SoftHSM token (as each appliance has its own HSM).
    let mut configs = vec![];
    for i in 0..3 {
        let dir = w(&format!("node{i}"));
        let label = keyrack_tests::unique(&format!("node{i}"));
        let token = format!("keyrack-node{i}");
        let pin = keyrack_tests::pin_file(&token);
        ok(keyrack(&[
            "init",
            "--dir",
            dir.to_str().unwrap(),
            "--node-id",
            &format!("node{i}"),
            "--backend",
            "pkcs11",
            "--pkcs11-module",
            &keyrack_tests::required_env("KEYRACK_PKCS11_MODULE"),
            "--token-label",
            &token,
            "--key-label",
            &label,
            "--pin-file",
            pin.to_str().unwrap(),
        ]));
        configs.push(dir.join("keyrack.toml"));
    }
    // An admin and an initiator, and the signed manifest.
    ok(keyrack(&[
        "keys",
        "generate",
        "--out",
        w("admin.key").to_str().unwrap(),
        "--public-out",
        w("admin.pub").to_str().unwrap(),
    ]));
    ok(keyrack(&[
        "keys",
        "generate",
        "--out",
        w("alice.key").to_str().unwrap(),
        "--public-out",
        w("alice.pub").to_str().unwrap(),
    ]));
    let manifest = w("manifest.toml");
    let mut create = vec![
        "manifest",
        "create",
        "--cluster",
        CLUSTER,
        "--out",
        manifest.to_str().unwrap(),
    ];
    let nodes: Vec<String> = (0..3)
        .map(|i| w(&format!("node{i}")).to_str().unwrap().to_owned())
        .collect();
    for n in &nodes {
        create.extend(["--node", n.as_str()]);
    }
    let initiator = format!("alice={}", w("alice.pub").display());
    let admin = format!("admin={}", w("admin.pub").display());
    create.extend([
        "--initiator",
        &initiator,
        "--admin",
        &admin,
        "--admin-threshold",
        "1",
    ]);
    ok(keyrack(&create));
    ok(keyrack(&[
        "manifest",
        "sign",
        "--manifest",
        manifest.to_str().unwrap(),
        "--key",
        w("admin.key").to_str().unwrap(),
        "--admin",
        "admin",
    ]));
    for config in &configs {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(config)
            .unwrap();
        writeln!(f, "\n[cluster]\nmanifest = \"{}\"\nnats = [\"{}\"]\nleader_timeout_ms = 1000\nsession_timeout_ms = 5000", manifest.display(), server.url).unwrap();
    }

    let mut procs: Vec<Option<NodeProcess>> = configs.iter().map(|c| Some(start_node(c))).collect();
    let manifest = SignedManifest::from_toml(&std::fs::read_to_string(&manifest).unwrap())
        .unwrap()
        .verify_bootstrap()
        .unwrap();
    let alice = || InitiatorKey::load("alice", &w("alice.key")).unwrap();
    // The nodes create the streams when they start.
    let client = loop {
        match Client::connect(
            std::slice::from_ref(&server.url),
            CLUSTER,
            "app",
            alice(),
            manifest.clone(),
        )
        .await
        {
            Ok(c) => break c,
            Err(SdkError::StreamsMissing { .. }) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("connect: {e}"),
        }
    };

    // Keygen: all three nodes report the same key (the SDK waits for every node to agree).
    let agreed = client
        .keygen("wallet-1", &[Scheme::Ed25519], 2, Duration::from_secs(60))
        .await
        .expect("keygen");
    let mut nodes = agreed.nodes.clone();
    nodes.sort();
    assert_eq!(nodes, ["node0", "node1", "node2"]);
    let public_key = agreed.keys[0].public_key.clone();

    sign_and_verify(&client, &public_key, b"first payment").await;

    // SIGKILL one node: the other two still sign (after leader failover if it led).
    let mut killed = procs[1].take().unwrap();
    Command::new("kill")
        .args(["-9", &killed.0.id().to_string()])
        .status()
        .unwrap();
    let _ = killed.0.wait();
    let by = sign_and_verify(&client, &public_key, b"while node1 is down").await;
    assert_ne!(by, "node1");

    // Restart: node0 and node1 come back, node2 stays down. The shares come back from SQLite
    // through SoftHSM, node1 catches up on what it missed, and the two sign.
    procs.clear();
    let _procs: Vec<NodeProcess> = configs[..2].iter().map(|c| start_node(c)).collect();
    let by = sign_and_verify(&client, &public_key, b"after a restart").await;
    assert_ne!(by, "node2");
}
