//! `keyrack client`: the command as a user runs it, against three real `keyrack node`
//! processes on SoftHSM tokens and a real nats-server, set up through the CLI. Every
//! signature printed is checked again here with an independent library (ed25519-dalek,
//! k256), and every derived key against the scheme plugin's own derivation.
//!
//! Configuration and usage errors need no cluster: they must exit 2 before anything is sent.

use std::io::Write as _;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use keyrack_tests::NatsServer;
use serde_json::Value;

use super::*;

const CLUSTER: &str = "c1";

/// A `keyrack node` process, killed when dropped.
struct NodeProcess(Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Three nodes on their own SoftHSM tokens, an admin, the initiator `alice`, the signed
/// manifest and a client.toml, all made with the CLI; the nodes running.
struct Cluster {
    work: tempfile::TempDir,
    server: NatsServer,
    _nodes: Vec<NodeProcess>,
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

/// Asserts the exit status `code`, showing the output if not.
fn exits(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}{}",
        stdout(out),
        stderr(out)
    );
}

impl Cluster {
    fn start() -> Self {
        let server = NatsServer::start();
        let work = tempfile::tempdir().unwrap();
        let w = |name: &str| path(&work.path().join(name));
        let mut configs = vec![];
        for i in 0..3 {
            let token = format!("keyrack-node{i}");
            ok(keyrack(&[
                "init",
                "--dir",
                &w(&format!("node{i}")),
                "--node-id",
                &format!("node{i}"),
                "--backend",
                "pkcs11",
                "--pkcs11-module",
                &keyrack_tests::required_env("KEYRACK_PKCS11_MODULE"),
                "--token-label",
                &token,
                "--key-label",
                &keyrack_tests::unique(&format!("client{i}")),
                "--pin-file",
                &path(&keyrack_tests::pin_file(&token)),
                "--api-listen",
                "127.0.0.1:0",
            ]));
            configs.push(work.path().join(format!("node{i}/keyrack.toml")));
        }
        for who in ["admin", "alice", "officer"] {
            ok(keyrack(&[
                "keys",
                "generate",
                "--out",
                &w(&format!("{who}.key")),
                "--public-out",
                &w(&format!("{who}.pub")),
            ]));
        }
        let (manifest, initiator, officer, admin) = (
            w("manifest.toml"),
            format!("alice={}", w("alice.pub")),
            format!("officer={}:policy-admin", w("officer.pub")),
            format!("admin={}", w("admin.pub")),
        );
        let nodes: Vec<String> = (0..3).map(|i| w(&format!("node{i}"))).collect();
        let mut create = vec![
            "manifest",
            "create",
            "--cluster",
            CLUSTER,
            "--out",
            &manifest,
        ];
        for n in &nodes {
            create.extend(["--node", n.as_str()]);
        }
        create.extend([
            "--initiator",
            &initiator,
            "--initiator",
            &officer,
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
            &manifest,
            "--key",
            &w("admin.key"),
            "--admin",
            "admin",
        ]));
        // Every node starts with the development policy (allows everything), signed by the
        // policy officer.
        let bundle = w("policy-v1.bundle.toml");
        let dev_policy = format!(
            "{}/../../policies/examples/dev.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        ok(keyrack(&[
            "policy",
            "sign",
            "--policy",
            &dev_policy,
            "--cluster",
            CLUSTER,
            "--version",
            "1",
            "--threshold",
            "1",
            "--key",
            &w("officer.key"),
            "--admin",
            "officer",
            "--out",
            &bundle,
        ]));
        for config in &configs {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(config)
                .unwrap();
            writeln!(
                f,
                "\n[cluster]\nmanifest = \"{manifest}\"\nnats = [\"{}\"]\n\
                 leader_timeout_ms = 1000\nsession_timeout_ms = 5000\n\
                 policy_bundle = \"{bundle}\"",
                server.url
            )
            .unwrap();
        }
        // Relative paths: they resolve against the directory of client.toml.
        std::fs::write(
            work.path().join("client.toml"),
            format!(
                "cluster = \"{CLUSTER}\"\nclient_id = \"cli\"\nnats = [\"{}\"]\n\
                 manifest = \"manifest.toml\"\ninitiator = \"alice\"\n\
                 initiator_key = \"alice.key\"\n",
                server.url
            ),
        )
        .unwrap();
        let nodes = configs
            .iter()
            .map(|config| {
                NodeProcess(
                    Command::new(KEYRACK)
                        .args(["node", "--config", &path(config)])
                        .env(
                            "KEYRACK_LOG",
                            std::env::var("KEYRACK_NODE_LOG").unwrap_or_else(|_| "warn".into()),
                        )
                        .stdout(Stdio::null())
                        .stderr(Stdio::inherit())
                        .spawn()
                        .expect("start keyrack node"),
                )
            })
            .collect();
        let cluster = Cluster {
            work,
            server,
            _nodes: nodes,
        };
        cluster.wait_until_every_node_answers();
        cluster
    }

    /// Polls with `status --key` until all three nodes answer (each node creates its
    /// request consumer when it starts; a request published before that is never seen by
    /// it).
    fn wait_until_every_node_answers(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.client(&["status", "--key", "probe", "--timeout", "2", "--json"]);
            let answered = serde_json::from_slice::<Value>(&out.stdout)
                .ok()
                .and_then(|v| v["nodes"].as_array().cloned())
                .is_some_and(|nodes| nodes.iter().all(|n| n["answer"] == "ok"));
            if answered {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the nodes did not all answer within 60 s: {}{}",
                stdout(&out),
                stderr(&out)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn config(&self) -> String {
        path(&self.work.path().join("client.toml"))
    }

    /// `keyrack client --config client.toml ARGS…`.
    fn client(&self, args: &[&str]) -> Output {
        let config = self.config();
        let mut all = vec!["client", "--config", config.as_str()];
        all.extend_from_slice(args);
        keyrack(&all)
    }

    /// Runs `keyrack client … --json`, expects exit 0 and returns the JSON object.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.client(&all);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: stdout is not one JSON object ({e}): {}",
                stdout(&out)
            )
        })
    }

    /// The last sequence number of the request stream (every request ever published).
    async fn requests_published(&self) -> u64 {
        let nats = async_nats::connect(&self.server.url).await.unwrap();
        let js = async_nats::jetstream::new(nats);
        let mut stream = js
            .get_stream(keyrack_client::subjects::request_stream(CLUSTER).unwrap())
            .await
            .unwrap();
        stream.info().await.unwrap().state.last_sequence
    }
}

/// The hex value after `label` on the first line of `text` that starts with it
/// (`  label  <hex>…`).
fn field(text: &str, label: &str) -> String {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix(label))
        .filter_map(|rest| rest.split_whitespace().next())
        .find(|value| hex::decode(value).is_ok())
        .unwrap_or_else(|| panic!("no '{label} <hex>' line in:\n{text}"))
        .to_owned()
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))).unwrap()
}

fn ed25519_verify(public_key: &[u8], message: &[u8], signature: &[u8]) {
    let key = ed25519_dalek::VerifyingKey::from_bytes(public_key.try_into().unwrap()).unwrap();
    let signature = ed25519_dalek::Signature::from_slice(signature).unwrap();
    key.verify_strict(message, &signature)
        .expect("the printed signature verifies with ed25519-dalek");
}

/// The child key the scheme derives at `path` from a root key and chain code.
fn derived(
    scheme: &dyn keyrack_plugin::SchemePlugin,
    root: &[u8],
    chain: &[u8],
    path: &[u32],
) -> Vec<u8> {
    scheme
        .derive_public_key(root, chain.try_into().unwrap(), path)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_client_keygen_sign_and_status_on_three_node_processes() {
    let cluster = Cluster::start();
    let ed25519 = keyrack_eddsa_frost::ed25519();

    // keygen, as text: one key per scheme, every node agreeing, threshold 2 of 3 by default.
    let out = cluster.client(&[
        "keygen",
        "wallet-1",
        "--scheme",
        "eddsa",
        "--scheme",
        "schnorr-secp256k1",
    ]);
    let text = ok(out);
    assert!(
        text.contains("key wallet-1: threshold 2 of 3 (node0, node1, node2); all 3 nodes report the same keys"),
        "{text}"
    );
    let keygen_request = field(&text, "request");
    assert_eq!(keygen_request.len(), 32, "{text}");

    // keygen again with --json: idempotent, the same keys come back.
    let keygen = cluster.json(&[
        "keygen",
        "wallet-1",
        "--scheme",
        "ed25519",
        "--scheme",
        "schnorr-secp256k1",
        "--threshold",
        "2",
    ]);
    assert_eq!(keygen["ok"], true);
    assert_eq!(keygen["key_id"], "wallet-1");
    assert_eq!(keygen["nodes"].as_array().unwrap().len(), 3);
    let keys = keygen["keys"].as_array().unwrap();
    let key = |scheme: &str| {
        keys.iter()
            .find(|k| k["scheme"] == scheme)
            .unwrap_or_else(|| panic!("no {scheme} key in {keygen}"))
    };
    let (ed_key, schnorr_key) = (key("ed25519"), key("schnorr-secp256k1"));
    let ed_public = unhex(&ed_key["public_key"]);
    let ed_chain = unhex(&ed_key["chain_code"]);
    assert!(
        text.contains(&hex::encode(&ed_public)),
        "the text keygen printed another ed25519 key:\n{text}"
    );
    assert_eq!(ed_key["threshold"], 2);
    assert_eq!(ed_key["version"], 1);
    assert_eq!(
        ed_key["participants"],
        serde_json::json!(["node0", "node1", "node2"])
    );
    // keygen recorded both keys as trusted, beside client.toml.
    assert!(
        text.contains("trusted: recorded in "),
        "the text keygen names the trusted keys:\n{text}"
    );
    let alice_trusted = cluster.work.path().join("trusted-keys.toml");
    assert_eq!(keygen["trusted_keys"], path(&alice_trusted));
    let trusted = keyrack_client::trusted::TrustedKeys::load(&alice_trusted).unwrap();
    for k in keys {
        let scheme = serde_json::from_value(k["scheme"].clone()).unwrap();
        let entry = trusted.get("wallet-1", scheme).expect("recorded by keygen");
        assert_eq!(entry.public_key, unhex(&k["public_key"]));
        assert_eq!(entry.chain_code.to_vec(), unhex(&k["chain_code"]));
        assert_eq!(entry.source, keyrack_client::trusted::TrustSource::Keygen);
    }
    trust_as_another_initiator(&cluster, &ed_public);

    // sign --message with --path, as text: verified by the client, and again here under
    // the child key, which is the one the scheme derives from the root key.
    let text = ok(cluster.client(&[
        "sign",
        "wallet-1",
        "--scheme",
        "eddsa",
        "--message",
        "pay 5 to bob",
        "--path",
        "m/0/1",
    ]));
    assert!(
        text.contains("(ed25519, path m/0/1) from node node"),
        "{text}"
    );
    assert!(text.contains(": verified"), "{text}");
    let child = hex::decode(field(&text, "public key")).unwrap();
    assert_eq!(child, derived(&ed25519, &ed_public, &ed_chain, &[0, 1]));
    assert_eq!(
        hex::decode(field(&text, "message")).unwrap(),
        b"pay 5 to bob"
    );
    ed25519_verify(
        &child,
        b"pay 5 to bob",
        &hex::decode(field(&text, "signature")).unwrap(),
    );
    let sign_request = field(&text, "request");

    // sign --message-hex with --path, --json.
    let message = [0x00, 0xff, 0x10, 0x20];
    let signed = cluster.json(&[
        "sign",
        "wallet-1",
        "--scheme",
        "ed25519",
        "--message-hex",
        &hex::encode(message),
        "--path",
        "m/7",
    ]);
    assert_eq!(signed["ok"], true);
    assert_eq!(signed["verified"], true);
    assert_eq!(signed["payload_kind"], "message");
    assert_eq!(signed["path"], "m/7");
    assert_eq!(signed["derivation_path"], serde_json::json!([7]));
    assert_eq!(signed["r"], Value::Null);
    assert_eq!(unhex(&signed["digest_or_message"]), message);
    let child = unhex(&signed["public_key"]);
    assert_eq!(child, derived(&ed25519, &ed_public, &ed_chain, &[7]));
    ed25519_verify(&child, &message, &unhex(&signed["signature"]));

    // BIP-340 over a raw digest, checked with k256.
    let digest = [0x42u8; 32];
    let signed = cluster.json(&[
        "sign",
        "wallet-1",
        "--scheme",
        "schnorr-secp256k1",
        "--digest",
        &hex::encode(digest),
    ]);
    assert_eq!(signed["payload_kind"], "digest");
    assert_eq!(unhex(&signed["digest_or_message"]), digest);
    assert_eq!(signed["public_key"], schnorr_key["public_key"]);
    let key = k256::schnorr::VerifyingKey::from_bytes(&unhex(&signed["public_key"])).unwrap();
    let signature =
        k256::schnorr::Signature::try_from(unhex(&signed["signature"]).as_slice()).unwrap();
    key.verify_raw(&digest, &signature)
        .expect("the BIP-340 signature verifies with k256");

    // status of the keygen request: every node answered ok with the same keys.
    let text = ok(cluster.client(&["status", &keygen_request]));
    assert!(
        text.contains(&format!("request {keygen_request}: 3 of 3 nodes answered")),
        "{text}"
    );
    for node in ["node0", "node1", "node2"] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(node))
            .unwrap();
        assert_eq!(line.split_whitespace().nth(1), Some("ok"), "{text}");
    }
    let status = cluster.json(&["status", &keygen_request]);
    assert_eq!(status["ok"], true);
    for n in status["nodes"].as_array().unwrap() {
        assert_eq!(n["status"], "ok", "{status}");
        let results = n["results"].as_array().unwrap();
        assert_eq!(results.len(), 1, "{status}");
        assert_eq!(results[0]["keys"].as_array().unwrap().len(), 2, "{status}");
    }

    // status of the sign request: t = 2 nodes signed; the third stood down (pending).
    let status = cluster.json(&["status", &sign_request]);
    let nodes = status["nodes"].as_array().unwrap();
    let signers: Vec<&Value> = nodes.iter().filter(|n| n["status"] == "ok").collect();
    assert!(signers.len() >= 2, "{status}");
    assert!(
        nodes
            .iter()
            .all(|n| n["status"] == "ok" || n["status"] == "pending"),
        "{status}"
    );
    for n in signers {
        let s = &n["results"][0]["signature"];
        assert_eq!(s["verified"], true, "{status}");
        ed25519_verify(
            &unhex(&s["public_key"]),
            b"pay 5 to bob",
            &unhex(&s["signature"]),
        );
    }

    // status --key: READY on every node, with equal public keys, as text and JSON.
    let text = ok(cluster.client(&["status", "--key", "wallet-1"]));
    assert!(
        text.contains("key wallet-1: 3 of 3 nodes answered"),
        "{text}"
    );
    assert!(
        text.contains("the 3 nodes that answered ok report the same keys"),
        "{text}"
    );
    let ed_hex = hex::encode(&ed_public);
    for node in ["node0", "node1", "node2"] {
        assert!(
            text.lines().any(|l| l.contains(node)
                && l.contains("ed25519")
                && l.contains("READY")
                && l.contains(&ed_hex)),
            "{text}"
        );
    }
    let view = cluster.json(&["status", "--key", "wallet-1", "--scheme", "eddsa"]);
    assert_eq!(view["ok"], true);
    assert_eq!(view["agree"], true);
    let nodes = view["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for n in nodes {
        assert_eq!(n["answer"], "ok", "{view}");
        let keys = n["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1, "only the scheme asked: {view}");
        assert_eq!(keys[0]["status"], "READY");
        assert_eq!(keys[0]["public_key"], ed_key["public_key"]);
        assert_eq!(keys[0]["version"], 1);
    }

    // status --key for a key nobody has: every node answers, with no key.
    let text = ok(cluster.client(&["status", "--key", "no-such-wallet"]));
    assert_eq!(text.matches("no key 'no-such-wallet'").count(), 3, "{text}");
    let view = cluster.json(&["status", "--key", "no-such-wallet"]);
    assert_eq!(view["ok"], true);
    for n in view["nodes"].as_array().unwrap() {
        assert_eq!(n["answer"], "ok");
        assert_eq!(n["keys"], serde_json::json!([]));
    }

    // A refused request exits 1 and says the code, as text and as JSON.
    let out = cluster.client(&[
        "sign",
        "no-such-wallet",
        "--scheme",
        "ed25519",
        "--message",
        "x",
        "--timeout",
        "30",
    ]);
    exits(&out, 1);
    assert!(
        stderr(&out).contains("refused the request: unknown_key"),
        "{}",
        stderr(&out)
    );
    let refused_request = field(&stderr(&out), "request");
    let out = cluster.client(&[
        "sign",
        "no-such-wallet",
        "--scheme",
        "ed25519",
        "--message",
        "x",
        "--json",
    ]);
    exits(&out, 1);
    let failure: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(failure["ok"], false);
    assert_eq!(failure["error"]["kind"], "refused");
    assert_eq!(failure["error"]["code"], "unknown_key");
    assert_eq!(failure["request_id"].as_str().unwrap().len(), 32);
    // …and its status shows the refusals, with exit 1.
    let out = cluster.client(&["status", &refused_request]);
    exits(&out, 1);
    assert!(
        stdout(&out).contains("refused unknown_key"),
        "{}",
        stdout(&out)
    );

    // A digest of the wrong length is refused before anything is sent (exit 2).
    let before = cluster.requests_published().await;
    let out = cluster.client(&[
        "sign",
        "wallet-1",
        "--scheme",
        "schnorr-secp256k1",
        "--digest",
        &"ab".repeat(31),
    ]);
    exits(&out, 2);
    assert!(
        stderr(&out).contains("a digest is 32 bytes (64 hex digits); this is 31 bytes"),
        "{}",
        stderr(&out)
    );
    // So is a digest for ed25519, which signs messages.
    let out = cluster.client(&[
        "sign",
        "wallet-1",
        "--scheme",
        "eddsa",
        "--digest",
        &"ab".repeat(32),
    ]);
    exits(&out, 2);
    assert!(
        stderr(&out).contains("ed25519 signs the message itself"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        cluster.requests_published().await,
        before,
        "a request was sent"
    );

    // The config is found through KEYRACK_CLIENT_CONFIG too.
    let out = Command::new(KEYRACK)
        .args(["client", "status", "--key", "wallet-1", "--json"])
        .env("KEYRACK_CLIENT_CONFIG", cluster.config())
        .env("KEYRACK_LOG", "error")
        .output()
        .unwrap();
    exits(&out, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_client_refresh_reshare_and_delete_on_three_node_processes() {
    let cluster = Cluster::start();
    let keygen = cluster.json(&["keygen", "w", "--scheme", "ed25519"]);
    let public = keygen["keys"][0]["public_key"].clone();
    let sign_verifies = |what: &str| {
        let signed = cluster.json(&["sign", "w", "--scheme", "ed25519", "--message", what]);
        ed25519_verify(
            &unhex(&public),
            what.as_bytes(),
            &unhex(&signed["signature"]),
        );
    };

    // refresh: same key and committee, version 2, every node took part.
    let refreshed = cluster.json(&["refresh", "w", "--scheme", "ed25519"]);
    assert_eq!(
        refreshed["nodes"].as_array().unwrap().len(),
        3,
        "{refreshed}"
    );
    assert_eq!(
        refreshed["uninvolved"],
        serde_json::json!([]),
        "{refreshed}"
    );
    let key = &refreshed["keys"][0];
    assert_eq!(key["public_key"], public, "{refreshed}");
    assert_eq!(key["version"], 2, "{refreshed}");
    assert_eq!(key["threshold"], 2, "{refreshed}");
    sign_verifies("after refresh");

    // reshare to node2, node0 (that key-index order), 2 of 2, as text.
    let text = ok(cluster.client(&[
        "reshare",
        "w",
        "--scheme",
        "eddsa",
        "--participants",
        "node2,node0",
        "--threshold",
        "2",
    ]));
    assert!(
        text.contains("key w reshared: threshold 2 of 2 (node2, node0), in key-index order"),
        "{text}"
    );
    assert!(
        text.contains(&public.as_str().unwrap().to_owned()),
        "{text}"
    );
    sign_verifies("after reshare");

    // status --key: every node's view, with version, threshold and committee.
    let text = ok(cluster.client(&["status", "--key", "w"]));
    for node in ["node0", "node2"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(node)
                && l.contains("READY")
                && l.contains("version 3")
                && l.contains("threshold 2 of 2 (")),
            "{text}"
        );
    }

    // delete: refused without --yes (nothing sent), then done by every node.
    let out = cluster.client(&["delete", "w", "--scheme", "ed25519"]);
    exits(&out, 2);
    assert!(stderr(&out).contains("irreversible"), "{}", stderr(&out));
    let deleted = cluster.json(&["delete", "w", "--scheme", "ed25519", "--yes"]);
    assert_eq!(deleted["nodes"].as_array().unwrap().len(), 3, "{deleted}");
    let view = cluster.json(&["status", "--key", "w"]);
    for n in view["nodes"].as_array().unwrap() {
        let keys = n["keys"].as_array().unwrap();
        assert!(keys.iter().all(|k| k["status"] == "DELETED"), "{view}");
    }
    let out = cluster.client(&["sign", "w", "--scheme", "ed25519", "--message", "x"]);
    exits(&out, 1);

    // The id is not reused unless asked (keygen --reuse-deleted-id).
    let out = cluster.client(&["keygen", "w", "--scheme", "ed25519", "--json"]);
    exits(&out, 1);
    assert!(stdout(&out).contains("key_deleted"), "{}", stdout(&out));
}

/// `keyrack client trust` as the officer (another initiator, with a client.toml of its own):
/// it records wallet-1's keys from the nodes' signed answers (the keys keygen made), leaves
/// an entry it agrees with unchanged, refuses a tampered entry (another public key) unless
/// --replace, and refuses a key no node holds and a file with unknown fields.
fn trust_as_another_initiator(cluster: &Cluster, ed_public: &[u8]) {
    let dir = cluster.work.path().join("officer");
    std::fs::create_dir(&dir).unwrap();
    let config = dir.join("client.toml");
    std::fs::write(
        &config,
        format!(
            "cluster = \"{CLUSTER}\"\nclient_id = \"officer\"\nnats = [\"{}\"]\n\
             manifest = \"../manifest.toml\"\ninitiator = \"officer\"\n\
             initiator_key = \"../officer.key\"\ntrusted_keys = \"officer-keys.toml\"\n",
            cluster.server.url
        ),
    )
    .unwrap();
    let officer = |args: &[&str]| {
        let mut all = vec!["client", "--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        keyrack(&all)
    };
    let file = dir.join("officer-keys.toml");
    // Both schemes, from every node's READY answer.
    let out = officer(&["trust", "wallet-1", "--json"]);
    exits(&out, 0);
    let trusted: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(trusted["trusted_keys"], path(&file), "{trusted}");
    assert_eq!(
        trusted["answered"].as_array().unwrap().len(),
        3,
        "{trusted}"
    );
    let keys = trusted["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{trusted}");
    assert!(keys.iter().all(|k| k["recorded"] == "added"), "{trusted}");
    let recorded = keyrack_client::trusted::TrustedKeys::load(&file).unwrap();
    let alice =
        keyrack_client::trusted::TrustedKeys::load(&cluster.work.path().join("trusted-keys.toml"))
            .unwrap();
    for (mine, hers) in recorded.keys().iter().zip(alice.keys()) {
        assert_eq!((&mine.key_id, mine.scheme), (&hers.key_id, hers.scheme));
        assert_eq!(
            (&mine.public_key, mine.chain_code),
            (&hers.public_key, hers.chain_code)
        );
        assert_eq!(mine.source, keyrack_client::trusted::TrustSource::Status);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Again, as text: the same keys, unchanged.
    let text = ok(officer(&["trust", "wallet-1", "--scheme", "eddsa"]));
    assert!(text.contains("ed25519 (unchanged)"), "{text}");
    assert!(text.contains(&hex::encode(ed_public)), "{text}");
    // The file tampered with (another ed25519 key for wallet-1): refused, naming both keys.
    let original = std::fs::read_to_string(&file).unwrap();
    let tampered = original.replace(&hex::encode(ed_public), &"11".repeat(32));
    assert_ne!(tampered, original);
    std::fs::write(&file, &tampered).unwrap();
    let out = officer(&["trust", "wallet-1", "--scheme", "ed25519"]);
    exits(&out, 1);
    let e = stderr(&out);
    assert!(e.contains("is trusted in"), "{e}");
    assert!(e.contains("11111111…11111111"), "{e}");
    assert!(e.contains(&hex::encode(&ed_public[..4])), "{e}");
    assert!(e.contains("or a node lies"), "{e}");
    assert!(e.contains("--replace"), "{e}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        tampered,
        "nothing written"
    );
    // --replace records the nodes' key again.
    let out = officer(&[
        "trust",
        "wallet-1",
        "--scheme",
        "ed25519",
        "--replace",
        "--json",
    ]);
    exits(&out, 0);
    let replaced: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(replaced["keys"][0]["recorded"], "replaced", "{replaced}");
    assert_eq!(unhex(&replaced["keys"][0]["public_key"]), ed_public);
    // A key no node holds: nothing to trust (exit 1, as JSON too).
    let out = officer(&["trust", "no-such-wallet", "--json"]);
    exits(&out, 1);
    let failure: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(failure["error"]["kind"], "untrusted", "{failure}");
    assert!(
        failure["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no node that answered holds a READY key 'no-such-wallet'"),
        "{failure}"
    );
    // A file with a field this build does not know: a configuration error, nothing sent.
    std::fs::write(&file, format!("{original}colour = \"blue\"\n")).unwrap();
    let out = officer(&["trust", "wallet-1"]);
    exits(&out, 2);
    assert!(stderr(&out).contains(&path(&file)), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unknown field `colour`"),
        "{}",
        stderr(&out)
    );
}

/// A client.toml in a fresh directory, with `text`; returns (dir, its path).
fn client_toml(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("client.toml");
    std::fs::write(&file, text).unwrap();
    (dir, path(&file))
}

const GOOD: &str = "cluster = \"c1\"\nclient_id = \"cli\"\nnats = [\"nats://127.0.0.1:9\"]\n\
                    manifest = \"manifest.toml\"\ninitiator = \"alice\"\n\
                    initiator_key = \"alice.key\"\n";

/// Runs `keyrack client --config FILE status --key k` and expects exit 2 with every one
/// of `says` on stderr.
fn refused_config(config: &str, says: &[&str]) {
    let out = keyrack(&["client", "--config", config, "status", "--key", "k"]);
    exits(&out, 2);
    for s in says {
        assert!(stderr(&out).contains(s), "{s:?} not in: {}", stderr(&out));
    }
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}

#[test]
fn client_config_errors_exit_2_naming_the_problem() {
    // An unknown key.
    let (_dir, config) = client_toml(&format!("{GOOD}colour = \"blue\"\n"));
    refused_config(&config, &[&config, "unknown field `colour`"]);
    // A missing manifest file.
    let (_dir, config) = client_toml(GOOD);
    refused_config(
        &config,
        &[&config, "manifest = \"manifest.toml\"", "cannot read"],
    );
    // A missing key.
    let (_dir, config) = client_toml(&GOOD.replace("client_id = \"cli\"\n", ""));
    refused_config(&config, &["missing field `client_id`"]);
    // No NATS server.
    let (_dir, config) = client_toml(&GOOD.replace("[\"nats://127.0.0.1:9\"]", "[]"));
    refused_config(&config, &["nats lists no server"]);
    // No config file at all.
    let dir = tempfile::tempdir().unwrap();
    let missing = path(&dir.path().join("client.toml"));
    refused_config(&missing, &[&missing, "KEYRACK_CLIENT_CONFIG"]);
}

#[test]
fn client_usage_errors_exit_2_saying_what_to_write() {
    let (_dir, config) = client_toml(GOOD);
    for (args, says) in [
        (
            vec![
                "sign",
                "w",
                "--scheme",
                "ed25519",
                "--message",
                "x",
                "--path",
                "m/44'/0",
            ],
            "hardened index",
        ),
        (
            vec![
                "sign",
                "w",
                "--scheme",
                "ed25519",
                "--message",
                "x",
                "--path",
                "m/2147483648",
            ],
            "not below 2^31",
        ),
        (
            vec!["keygen", "w", "--scheme", "schnorr"],
            "unknown scheme 'schnorr'",
        ),
        (
            vec![
                "sign",
                "w",
                "--scheme",
                "ed25519",
                "--message",
                "x",
                "--message-hex",
                "00",
            ],
            "cannot be used with",
        ),
        (vec!["sign", "w", "--scheme", "ed25519"], "required"),
        (
            vec!["sign", "w", "--scheme", "ed25519", "--message-hex", "xyz"],
            "not hex",
        ),
        (vec!["status"], "required"),
        (vec!["status", "--scheme", "ed25519"], "required"),
        (
            vec!["keygen", "w", "--scheme", "ed25519", "--timeout", "601"],
            "1 to 600 s",
        ),
        (
            vec![
                "sign",
                "w",
                "--scheme",
                "ed25519",
                "--message",
                "x",
                "--timeout",
                "0",
            ],
            "1 to 600 s",
        ),
        // delete: irreversible, so --yes is required; nothing is read or sent without it.
        (
            vec!["delete", "w", "--scheme", "ed25519"],
            "deleting key 'w' is irreversible",
        ),
        (vec!["delete", "w", "--yes"], "required"),
        (vec!["delete", "--scheme", "ed25519", "--yes"], "required"),
        // reshare: a new threshold and/or committee, of well-formed, distinct node ids.
        (
            vec!["reshare", "w", "--scheme", "ed25519"],
            "a reshare with neither changes nothing",
        ),
        (
            vec![
                "reshare",
                "w",
                "--scheme",
                "ed25519",
                "--participants",
                "node0,,node1",
            ],
            "'' is not a node id",
        ),
        (
            vec![
                "reshare",
                "w",
                "--scheme",
                "ed25519",
                "--participants",
                "Node0,node1",
            ],
            "'Node0' is not a node id",
        ),
        (
            vec![
                "reshare",
                "w",
                "--scheme",
                "ed25519",
                "--participant",
                "node1",
                "--participant",
                "node1",
            ],
            "'node1' is listed twice",
        ),
        (
            vec![
                "reshare",
                "w",
                "--scheme",
                "ed25519",
                "--threshold",
                "0",
                "--participants",
                "node0,node1",
            ],
            "--threshold 0",
        ),
        (vec!["reshare", "w", "--threshold", "2"], "required"),
        (
            vec![
                "reshare",
                "w",
                "--scheme",
                "ed25519",
                "--threshold",
                "2",
                "--timeout",
                "900",
            ],
            "1 to 600 s",
        ),
        (vec!["refresh", "w"], "required"),
        (vec!["refresh", "--scheme", "ed25519"], "required"),
    ] {
        let mut all = vec!["client", "--config", config.as_str()];
        all.extend(args.iter().copied());
        let out = keyrack(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

/// A client.toml with a real signed manifest (nodes node0-node2, initiator alice) and alice's
/// key, for cluster c1, whose NATS server is not there (port 9): what the client checks
/// before it connects can be tested without a cluster.
fn offline_client() -> (tempfile::TempDir, String) {
    use keyrack_client::identity::PublicIdentity;
    use keyrack_client::manifest::{Admin, Initiator, Manifest, SignedManifest};
    use keyrack_client::request::InitiatorKey;
    let (dir, config) = client_toml(GOOD);
    let nodes = (0..3u8)
        .map(|i| {
            let signing = ed25519_dalek::SigningKey::from_bytes(&[0x10 + i; 32]);
            let agreement = x25519_dalek::StaticSecret::from([0x20 + i; 32]);
            let agreement = x25519_dalek::PublicKey::from(&agreement).to_bytes();
            PublicIdentity::sign(&format!("node{i}"), &signing, agreement).unwrap()
        })
        .collect();
    let alice = InitiatorKey::from_seed("alice", &[0x40; 32]).unwrap();
    alice.save(&dir.path().join("alice.key")).unwrap();
    let admin = ed25519_dalek::SigningKey::from_bytes(&[0x30; 32]);
    let mut manifest = SignedManifest::new(Manifest {
        cluster_id: CLUSTER.into(),
        version: 1,
        previous: None,
        admin_threshold: 1,
        nodes,
        initiators: vec![Initiator {
            id: "alice".into(),
            public_key: alice.public_key(),
            roles: vec!["keygen".into(), "sign".into()],
        }],
        admins: vec![Admin {
            id: "admin".into(),
            public_key: admin.verifying_key(),
        }],
    })
    .unwrap();
    manifest.sign(&admin).unwrap();
    std::fs::write(dir.path().join("manifest.toml"), manifest.to_toml()).unwrap();
    (dir, config)
}

#[test]
fn client_reshare_to_a_committee_outside_the_manifest_exits_2_before_connecting() {
    let (_dir, config) = offline_client();
    let reshare = |extra: &[&str]| {
        let mut all = vec![
            "client", "--config", &config, "reshare", "w", "--scheme", "ed25519",
        ];
        all.extend_from_slice(extra);
        keyrack(&all)
    };
    for (extra, says) in [
        (
            vec!["--participants", "node0,node7"],
            "participant 'node7' is not a node of the manifest (nodes: node0, node1, node2)",
        ),
        (
            vec!["--participants", "node0,node1", "--threshold", "1"],
            "threshold 1 with 2 nodes",
        ),
        (
            vec!["--participants", "node2,node0", "--threshold", "3"],
            "threshold 3 with 2 nodes",
        ),
    ] {
        let out = reshare(&extra);
        exits(&out, 2);
        assert!(stderr(&out).contains(says), "{extra:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("--participants"),
            "{extra:?}: {}",
            stderr(&out)
        );
    }
    // A committee that fits gets as far as connecting (no NATS here: exit 1, transport).
    let out = reshare(&["--participant", "node2", "--participant", "node0", "--json"]);
    exits(&out, 1);
    let failure: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(failure["ok"], false);
    assert_eq!(failure["error"]["kind"], "transport", "{failure}");
}

#[test]
fn client_help_says_delete_is_irreversible_and_reshare_keeps_the_key_index_order() {
    let help = |command: &str| ok(keyrack(&["client", command, "--help"]));
    let delete = help("delete");
    for says in [
        "IRREVERSIBLE",
        "--yes",
        "tombstone",
        "--reuse-deleted-id",
        "schemes",
    ] {
        assert!(delete.contains(says), "{says}: {delete}");
    }
    let reshare = help("reshare");
    for says in [
        "key-index order",
        "--participant",
        "[default: 600]",
        "not concerned",
        "uninvolved",
    ] {
        assert!(reshare.contains(says), "{says}: {reshare}");
    }
    let refresh = help("refresh");
    assert!(refresh.contains("[default: 600]"), "{refresh}");
    let keygen = help("keygen");
    assert!(keygen.contains("--reuse-deleted-id"), "{keygen}");
    assert!(keygen.contains("no_keys"), "{keygen}");
    let status = help("status");
    assert!(status.contains("committee"), "{status}");
}
