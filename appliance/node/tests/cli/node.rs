//! `keyrack node`: real node processes, set up through the CLI (init on SoftHSM, keys,
//! manifest; see [`super::cluster`]), on a real nats-server; a client submits signed requests
//! and verifies what comes back. Covers keygen, t-of-n signing, a node killed with SIGKILL,
//! and a restart of the nodes with one still down (shares unsealed from SQLite through
//! SoftHSM). The modules below cover the rest of the cluster's process-level behaviour.

mod api;
mod chains;
mod ecdsa;
mod faults;
mod governed;
mod lifecycle;
mod membership;
mod policy;
mod refusals;
mod signing;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyrack_client::request::{PayloadKind, RequestBody, RequestKind};
use keyrack_client::result::{ResultBody, SignatureInfo, Status};
use keyrack_client::scheme::Scheme;
use keyrack_client::sdk::{Client, Outcome, SdkError, VerifiedSignature};

use super::cluster::{describe, Builder, Cluster, Results};

/// The wallet id the tests create their keys under.
const WALLET: &str = "wallet-1";
/// How long a test waits for one request.
const WAIT: Duration = Duration::from_secs(30);

/// Creates `WALLET` with `schemes`, threshold 2, and checks that every node reports it;
/// returns the public keys in the order of `schemes`.
async fn keygen(cluster: &Cluster, client: &Client, schemes: &[Scheme]) -> Vec<KeyInfo> {
    let agreed = client
        .keygen(WALLET, schemes, 2, WAIT)
        .await
        .expect("keygen");
    let mut nodes = agreed.nodes.clone();
    nodes.sort();
    assert_eq!(nodes, cluster.node_ids());
    schemes
        .iter()
        .map(|s| {
            let key = agreed
                .keys
                .iter()
                .find(|k| k.scheme == *s)
                .unwrap_or_else(|| panic!("no {s:?} key in {agreed:?}"));
            KeyInfo {
                scheme: *s,
                public_key: key.public_key.clone(),
                chain_code: key.chain_code,
            }
        })
        .collect()
}

/// A key of `WALLET`.
#[derive(Clone, Debug)]
struct KeyInfo {
    scheme: Scheme,
    public_key: Vec<u8>,
    chain_code: [u8; 32],
}

/// Checks a signature a node returned: of `scheme`, under `expected_key` (the root key, or
/// the derived child), over `message` (Ed25519), or its SHA-256 (BIP-340: what a node signs
/// for a message payload), verified with an independent library: ed25519-dalek (strict) or
/// k256.
fn check_signature(info: &SignatureInfo, scheme: Scheme, expected_key: &[u8], message: &[u8]) {
    use sha2::Digest;
    assert_eq!(info.scheme, scheme);
    assert_eq!(
        info.public_key, expected_key,
        "signed under the expected key"
    );
    match scheme {
        Scheme::Ed25519 => {
            assert_eq!(info.digest_or_message, message);
            let key =
                ed25519_dalek::VerifyingKey::from_bytes(&expected_key.try_into().unwrap()).unwrap();
            key.verify_strict(
                message,
                &ed25519_dalek::Signature::from_bytes(&info.signature),
            )
            .expect("the Ed25519 signature verifies (ed25519-dalek)");
        }
        Scheme::SchnorrSecp256k1 => {
            let digest = sha2::Sha256::digest(message);
            assert_eq!(info.digest_or_message, digest.as_slice());
            let key = k256::schnorr::VerifyingKey::from_bytes(expected_key).unwrap();
            let sig = k256::schnorr::Signature::try_from(&info.signature[..]).unwrap();
            key.verify_raw(&digest, &sig)
                .expect("the BIP-340 signature verifies (k256)");
        }
        Scheme::EcdsaSecp256k1 => {
            use k256::ecdsa::signature::hazmat::PrehashVerifier;
            let digest = sha2::Sha256::digest(message);
            assert_eq!(info.digest_or_message, digest.as_slice());
            let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(expected_key).unwrap();
            let sig = k256::ecdsa::Signature::from_slice(&info.signature).unwrap();
            assert!(sig.normalize_s().is_none(), "low s");
            key.verify_prehash(&digest, &sig)
                .expect("the ECDSA signature verifies (k256)");
            let v =
                k256::ecdsa::RecoveryId::from_byte(info.v.expect("ECDSA results carry v")).unwrap();
            let recovered = k256::ecdsa::VerifyingKey::recover_from_prehash(&digest, &sig, v)
                .expect("v recovers a key");
            assert_eq!(recovered, key, "v recovers the signing key");
            assert_eq!(info.r.unwrap()[..], info.signature[..32]);
            assert_eq!(info.s.unwrap()[..], info.signature[32..]);
        }
    }
}

/// The nodes that sent `answers` (one request's results), asserting each is an `ok` carrying
/// `signature`: the request was signed in one session, not two.
fn signers(answers: &[&ResultBody], signature: &[u8; 64]) -> BTreeSet<String> {
    for r in answers {
        assert_eq!(
            r.status,
            Status::Ok,
            "{}",
            describe(answers.iter().copied())
        );
        let s = r
            .signature
            .as_ref()
            .expect("an ok sign result has a signature");
        assert_eq!(
            &s.signature, signature,
            "{} returned another signature",
            r.node_id
        );
    }
    answers.iter().map(|r| r.node_id.clone()).collect()
}

/// A cluster of three (made by `builder`) with `WALLET`'s Ed25519 key, an SDK client `app`,
/// and a reader of every result `app` gets.
async fn ed25519_cluster(builder: Builder) -> (Cluster, Client, Results, KeyInfo) {
    let cluster = builder.start();
    let client = cluster.client("app").await;
    let results = cluster.results("app").await;
    let key = keygen(&cluster, &client, &[Scheme::Ed25519])
        .await
        .remove(0);
    (cluster, client, results, key)
}

/// Signs `message` with `WALLET`'s key of `key.scheme` along `path` through the SDK (which
/// verifies the signature itself), checks that it is under `expected_key` (the root key, or
/// the derived child) and verifies it once more independently. Returns what the SDK returned.
async fn sign_and_verify(
    client: &Client,
    scheme: Scheme,
    expected_key: &[u8],
    message: &[u8],
    path: &[u32],
) -> VerifiedSignature {
    let signed = client
        .sign(WALLET, scheme, message, PayloadKind::Message, path, WAIT)
        .await
        .unwrap_or_else(|e| panic!("a verified {scheme:?} signature: {e}"));
    assert_eq!(signed.signature.derivation_path, path);
    check_signature(&signed.signature, scheme, expected_key, message);
    signed
}

/// A sign request body for `WALLET`'s key of `scheme`: `message` along `path`.
fn sign_body(client: &Client, scheme: Scheme, message: &[u8], path: &[u32]) -> RequestBody {
    let mut body = client.new_request(RequestKind::Sign, WALLET, WAIT);
    body.schemes = vec![scheme];
    body.payload = Some(message.to_vec());
    body.payload_kind = Some(PayloadKind::Message);
    body.derivation_path = path.to_vec();
    body
}

/// The signature of a completed sign request (panics on any other outcome).
fn signature_of(outcome: Result<Outcome, SdkError>) -> VerifiedSignature {
    match outcome {
        Ok(Outcome::Signature(s)) => *s,
        Ok(other) => panic!("a sign request completed with {other:?}"),
        Err(e) => panic!("a sign request failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_node_processes_keygen_sign_survive_a_kill_and_a_restart() {
    // Three nodes, each with its own SoftHSM token (as each appliance has its own HSM).
    let mut cluster = Cluster::start(3);
    let client = cluster.client("app").await;

    // Keygen: all three nodes report the same key (the SDK waits for every node to agree).
    let key = keygen(&cluster, &client, &[Scheme::Ed25519])
        .await
        .remove(0);
    let pk = key.public_key.as_slice();
    sign_and_verify(&client, Scheme::Ed25519, pk, b"first payment", &[]).await;

    // SIGKILL one node: the other two still sign (after leader failover if it led).
    cluster.kill_node(1);
    let by = sign_and_verify(&client, Scheme::Ed25519, pk, b"while node1 is down", &[]).await;
    assert_ne!(by.node, "node1");

    // Restart: node0 and node1 come back, node2 stays down. The shares come back from SQLite
    // through SoftHSM, node1 catches up on what it missed, and the two sign.
    cluster.stop_node(0);
    cluster.stop_node(2);
    cluster.start_node(0);
    cluster.start_node(1);
    let by = sign_and_verify(&client, Scheme::Ed25519, pk, b"after a restart", &[]).await;
    assert_ne!(by.node, "node2");
}

/// The harness itself (what other tests build on): hooks run once per node, node by node,
/// on complete files before the first start; lines land in the `[cluster]` section of every
/// node or of one; `restart_all` brings every node back (SIGTERM, clean exit) and they sign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_cluster_harness_hooks_config_lines_and_restart_all() {
    let hooked = Arc::new(Mutex::new(vec![]));
    let mut cluster = Cluster::builder(3)
        .leader_timeout_ms(1_500)
        .session_timeout_ms(6_000)
        .cluster_line("max_in_flight = 8")
        .node_cluster_line(2, "store = \"node2.db\"")
        .before_start({
            let hooked = hooked.clone();
            move |node| {
                let config = std::fs::read_to_string(&node.config).unwrap();
                assert!(config.contains("[cluster]") && config.contains(&node.token));
                assert!(node.dir.join("identity.sealed").exists());
                assert!(!node.log.exists(), "{} has not started yet", node.id);
                // What a hook may do: open the store and the HSM as the node will.
                assert!(!node.store.exists());
                assert!(node.open_store().keys().unwrap().is_empty());
                let sealer = node.sealer();
                let blob = sealer.seal(b"hook", b"seeded").unwrap();
                assert_eq!(&sealer.unseal(b"hook", &blob).unwrap()[..], b"seeded");
                hooked.lock().unwrap().push(node.id.clone());
            }
        })
        .start();
    assert_eq!(*hooked.lock().unwrap(), cluster.node_ids());
    for node in cluster.nodes() {
        let config = std::fs::read_to_string(&node.config).unwrap();
        assert!(
            config.contains("leader_timeout_ms = 1500") && config.contains("max_in_flight = 8")
        );
        assert_eq!(config.contains("node2.db"), node.index == 2, "{config}");
    }
    assert!(cluster.manifest_path().exists() && cluster.initiator_key_path().exists());
    assert!(cluster.nats_url().starts_with("nats://127.0.0.1:"));

    let client = cluster.client("app").await;
    let key = keygen(&cluster, &client, &[Scheme::Ed25519])
        .await
        .remove(0);
    sign_and_verify(&client, Scheme::Ed25519, &key.public_key, b"before", &[]).await;
    cluster.restart_all();
    let store = &cluster.node(2).store;
    assert!(
        store.ends_with("node2.db") && store.exists(),
        "{}",
        store.display()
    );
    for i in 0..3 {
        assert!(cluster.is_running(i));
    }
    sign_and_verify(&client, Scheme::Ed25519, &key.public_key, b"after", &[]).await;
}
