//! `keyrack node`: real node processes, set up through the CLI (init on SoftHSM, keys,
//! manifest), on a real nats-server; a client submits signed requests and verifies what
//! comes back. Covers keygen, t-of-n signing, a node killed with SIGKILL, and a restart of
//! the nodes with one still down (shares unsealed from SQLite through SoftHSM).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use keyrack_client::manifest::SignedManifest;
use keyrack_client::request::{InitiatorKey, PayloadKind, RequestBody, RequestKind, SignedRequest};
use keyrack_client::result::{ResultBody, SignedResult, Status};
use keyrack_client::scheme::Scheme;
use keyrack_node::transport::Bus;
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

struct Client {
    bus: Bus,
    alice: InitiatorKey,
    manifest: keyrack_client::manifest::VerifiedManifest,
    results: std::pin::Pin<
        Box<
            dyn futures::Stream<Item = Result<Vec<u8>, keyrack_node::transport::TransportError>>
                + Send,
        >,
    >,
}

impl Client {
    async fn submit(&self, body: &RequestBody) -> SignedRequest {
        let signed = self.alice.sign_request(body).unwrap();
        self.bus
            .publish_request(body.kind.as_str(), &body.request_id, signed.to_json())
            .await
            .unwrap();
        signed
    }

    async fn answers(
        &mut self,
        request: &SignedRequest,
        want: usize,
        within: Duration,
    ) -> BTreeMap<String, ResultBody> {
        let mut got = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + within;
        while got.len() < want {
            let bytes = tokio::time::timeout_at(deadline, self.results.next())
                .await
                .unwrap_or_else(|_| panic!("only {got:?} answered in time"))
                .unwrap()
                .unwrap();
            let body = SignedResult::parse(&bytes)
                .unwrap()
                .verify_with(&self.manifest)
                .expect("signed by a member");
            if body.answers(request) {
                got.insert(body.node_id.clone(), body);
            }
        }
        got
    }

    async fn sign_and_verify(
        &mut self,
        public_key: &[u8],
        message: &[u8],
    ) -> BTreeMap<String, ResultBody> {
        let mut body = RequestBody::new(
            RequestKind::Sign,
            CLUSTER,
            "wallet-1",
            "app",
            now_ms(),
            120_000,
        );
        body.schemes = vec![Scheme::Ed25519];
        body.payload = Some(message.to_vec());
        body.payload_kind = Some(PayloadKind::Message);
        let request = self.submit(&body).await;
        let signed = self.answers(&request, 2, Duration::from_secs(60)).await;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public_key.try_into().unwrap()).unwrap();
        for r in signed.values() {
            assert_eq!(r.status, Status::Ok, "{r:?}");
            let sig = r.signature.as_ref().unwrap();
            key.verify_strict(
                message,
                &ed25519_dalek::Signature::from_bytes(&sig.signature),
            )
            .expect("verifies independently");
        }
        signed
    }
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
    let bus = Bus::connect(std::slice::from_ref(&server.url), "alice", CLUSTER)
        .await
        .unwrap();
    let results = loop {
        if let Ok(r) = bus.results("app").await {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut client = Client {
        bus,
        alice: InitiatorKey::load("alice", &w("alice.key")).unwrap(),
        manifest: SignedManifest::from_toml(&std::fs::read_to_string(&manifest).unwrap())
            .unwrap()
            .verify_bootstrap()
            .unwrap(),
        results: Box::pin(results),
    };

    // Keygen: all three nodes report the same key.
    let mut body = RequestBody::new(
        RequestKind::Keygen,
        CLUSTER,
        "wallet-1",
        "app",
        now_ms(),
        120_000,
    );
    body.schemes = vec![Scheme::Ed25519];
    body.threshold = Some(2);
    let request = client.submit(&body).await;
    let keys = client.answers(&request, 3, Duration::from_secs(60)).await;
    assert!(keys.values().all(|r| r.status == Status::Ok), "{keys:?}");
    let public_key = keys["node0"].keys[0].public_key.clone();
    assert!(keys.values().all(|r| r.keys[0].public_key == public_key));

    client.sign_and_verify(&public_key, b"first payment").await;

    // SIGKILL one node: the other two still sign (after leader failover if it led).
    let mut killed = procs[1].take().unwrap();
    Command::new("kill")
        .args(["-9", &killed.0.id().to_string()])
        .status()
        .unwrap();
    let _ = killed.0.wait();
    let signed = client
        .sign_and_verify(&public_key, b"while node1 is down")
        .await;
    assert_eq!(
        signed.keys().cloned().collect::<Vec<_>>(),
        ["node0", "node2"]
    );

    // Restart: node0 and node1 come back, node2 stays down. The shares come back from SQLite
    // through SoftHSM, node1 catches up on what it missed, and the two sign.
    procs.clear();
    let _procs: Vec<NodeProcess> = configs[..2].iter().map(|c| start_node(c)).collect();
    let signed = client
        .sign_and_verify(&public_key, b"after a restart")
        .await;
    assert_eq!(
        signed.keys().cloned().collect::<Vec<_>>(),
        ["node0", "node1"]
    );
}
