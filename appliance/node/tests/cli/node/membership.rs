//! Membership changes on real node processes: a signed successor manifest published over
//! NATS (`keyrack manifest publish`) is accepted by every node, a new node joins with it and
//! serves, a restarted node comes back at the version it accepted; unsigned, under-signed,
//! not-a-successor, older manifests and one listing a key under two initiator ids are refused
//! by every node and change nothing; a node the accepted manifest removes stops by itself.
//!
//! The nodes' verdicts are checked twice: by `keyrack manifest publish` (its report) and here,
//! independently, from the NATS subject with ed25519-dalek.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use keyrack_client::manifest::{SignedManifest, VerifiedManifest};
use keyrack_client::request::InitiatorKey;
use keyrack_client::scheme::Scheme;
use keyrack_client::subjects;

use super::WAIT;
use crate::cluster::{Cluster, Publication, CLUSTER};

/// How long `keyrack manifest publish` waits for verdicts.
const VERDICT_TIMEOUT_SECS: u64 = 20;
/// How long a removed node may take to exit.
const EXIT_DEADLINE: Duration = Duration::from_secs(20);

fn load(path: &Path) -> SignedManifest {
    SignedManifest::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Writes `manifest` next to `like` under `name`; returns its path.
fn write(like: &Path, name: &str, manifest: &SignedManifest) -> PathBuf {
    let path = like.with_file_name(name);
    std::fs::write(&path, manifest.to_toml()).unwrap();
    path
}

/// Listens to every node's verdicts (subscribe before publishing) and checks them without
/// keyrack's code: wire JSON, Ed25519 (strict, ed25519-dalek) by the node's key from
/// `keys` over "keyrack/v1/manifest-verdict" ‖ 0x00 ‖ body bytes.
struct VerdictListener {
    sub: async_nats::Subscriber,
}

impl VerdictListener {
    async fn start(cluster: &Cluster) -> Self {
        let nats = cluster.nats().await;
        let sub = nats
            .subscribe(subjects::manifest_verdict_filter(CLUSTER).unwrap())
            .await
            .unwrap();
        nats.flush().await.unwrap();
        VerdictListener { sub }
    }

    /// Reads verdicts about the file at `path` (its bytes' SHA-256) until each of `nodes`
    /// sent one; returns each body (JSON).
    async fn verdicts(
        &mut self,
        keys: &VerifiedManifest,
        path: &Path,
        nodes: &[&str],
    ) -> BTreeMap<String, serde_json::Value> {
        use sha2::Digest as _;
        let bytes = std::fs::read(path).unwrap();
        let message_hash = hex::encode(sha2::Sha256::digest(&bytes));
        // The message hash stands in for the manifest hash of a file that does not parse.
        let manifest_hash = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| SignedManifest::from_toml(text).ok())
            .map_or_else(|| message_hash.clone(), |m| hex::encode(m.hash()));
        let mut out = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while nodes.iter().any(|n| !out.contains_key(*n)) {
            let message = tokio::time::timeout_at(deadline, self.sub.next())
                .await
                .unwrap_or_else(|_| panic!("verdicts of {nodes:?}: only {out:?} in time"))
                .unwrap();
            let wire: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
            let node_id = wire["node_id"].as_str().unwrap();
            let body = base64::engine::general_purpose::STANDARD
                .decode(wire["body"].as_str().unwrap())
                .unwrap();
            let signature = ed25519_dalek::Signature::from_bytes(
                &hex::decode(wire["signature"].as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap(),
            );
            let key = ed25519_dalek::VerifyingKey::from_bytes(
                keys.node(node_id).unwrap().signing_key().as_bytes(),
            )
            .unwrap();
            let mut signed = b"keyrack/v1/manifest-verdict\0".to_vec();
            signed.extend_from_slice(&body);
            key.verify_strict(&signed, &signature)
                .unwrap_or_else(|e| panic!("verdict of {node_id} does not verify: {e}"));
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["node_id"], node_id);
            assert_eq!(body["cluster_id"], CLUSTER);
            if body["message_hash"] == message_hash {
                assert_eq!(body["manifest_hash"], manifest_hash);
                out.insert(node_id.to_owned(), body);
            }
        }
        out
    }
}

/// Publishes `path`, expecting every node in `nodes` to refuse it with a reason containing
/// `reason` and to stay at `version`; checks the verdicts independently too.
async fn refused_by_all(
    cluster: &Cluster,
    path: &Path,
    nodes: &[&str],
    reason: &str,
    version: u64,
) -> Publication {
    let mut listener = VerdictListener::start(cluster).await;
    let published = cluster.publish_manifest(path, VERDICT_TIMEOUT_SECS);
    assert!(!published.success, "{}", published.output);
    for node in nodes {
        let (verdict, why, at) = published.verdict(node);
        assert_eq!(verdict, "refused", "{node}: {}", published.output);
        assert!(why.contains(reason), "{node}: {why:?} lacks {reason:?}");
        assert_eq!(at, Some(version), "{node}");
    }
    let seen = listener.verdicts(cluster.manifest(), path, nodes).await;
    for (node, body) in &seen {
        assert_eq!(body["accepted"], false, "{node}: {body}");
        assert_eq!(body["current_version"], version, "{node}: {body}");
    }
    published
}

/// Publishes the file at `path` straight to the cluster's manifest stream, as any NATS
/// client allowed to could (`keyrack manifest publish` refuses a file that does not
/// validate).
async fn publish_raw(cluster: &Cluster, path: &Path) {
    async_nats::jetstream::new(cluster.nats().await)
        .publish(
            subjects::manifest_subject(CLUSTER).unwrap(),
            std::fs::read(path).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// (b), (a), (c) and a restart on one cluster: bad successors (one of them listing one key
/// under two initiator ids) are refused by every node and change nothing; the signed successor adding node3 is accepted by every node, node3 joins
/// with it and takes part in a keygen; the old version published again is refused by every
/// node; node0 restarted with its old manifest file comes back at version 2.
#[tokio::test(flavor = "multi_thread")]
async fn pkcs11_successor_accepted_by_every_node_bad_and_older_ones_refused_restart_keeps_it() {
    let mut cluster = Cluster::start(3);
    let v1 = cluster.manifest_path().to_owned();

    // (b) Successors that remove node2, each refused by every node (node2 included): it
    // keeps running, nothing changes.
    let shrink = cluster.next_manifest(&[0, 1]);
    let mut unsigned = load(&shrink);
    unsigned.signatures.clear();
    let unsigned = write(&shrink, "unsigned.toml", &unsigned);
    let mut forged = load(&shrink);
    forged.signatures.clear();
    forged.sign_as("admin", &ed25519_dalek::SigningKey::from_bytes(&[7; 32]));
    let forged = write(&shrink, "not-the-admins-key.toml", &forged);
    let mut orphan = load(&shrink).manifest;
    orphan.previous = Some([1; 32]);
    let mut orphan = SignedManifest::new(orphan).unwrap();
    orphan.signatures.clear();
    let orphan = write(&shrink, "wrong-previous.toml", &orphan);
    cluster.sign_as_admin(&orphan);
    let all = ["node0", "node1", "node2"];
    refused_by_all(
        &cluster,
        &unsigned,
        &all,
        "0 valid admin signature(s), 1 required",
        1,
    )
    .await;
    refused_by_all(
        &cluster,
        &forged,
        &all,
        "0 valid admin signature(s), 1 required",
        1,
    )
    .await;
    refused_by_all(
        &cluster,
        &orphan,
        &all,
        "previous is not the current manifest's hash",
        1,
    )
    .await;
    // A successor signed by the admin in office that lists an initiator's key under a second
    // id too (its holder would count as two distinct approvers). `keyrack manifest next`,
    // `sign` and `publish` refuse to write, sign or publish it, so it is made and signed with
    // the library and published straight to the stream.
    let mut twins = cluster.manifest().manifest().clone();
    twins.version = 2;
    twins.previous = Some(cluster.manifest().hash());
    let mut twin = twins.initiators[0].clone();
    let first = twin.id.clone();
    twin.id = format!("{first}-twin");
    twins.initiators.push(twin);
    let mut twins = SignedManifest {
        manifest: twins,
        signatures: vec![],
    };
    // The cluster keeps the admin's key file next to its first manifest.
    let admin = InitiatorKey::load("admin", &v1.with_file_name("admin.key")).unwrap();
    twins.sign_as("admin", admin.signing_key());
    let in_office = &cluster.manifest().manifest().admins[0];
    assert!(twins
        .manifest
        .admin_signature_valid(in_office, &twins.signatures[0].signature));
    let twins = write(&shrink, "one-key-two-initiators.toml", &twins);
    let mut listener = VerdictListener::start(&cluster).await;
    publish_raw(&cluster, &twins).await;
    let seen = listener.verdicts(cluster.manifest(), &twins, &all).await;
    let reason = format!("initiators '{first}' and '{first}-twin' share one public key");
    for (node, body) in &seen {
        assert_eq!(body["accepted"], false, "{node}: {body}");
        assert_eq!(body["current_version"], 1, "{node}: {body}");
        assert!(
            body["reason"].as_str().unwrap().contains(&reason),
            "{node}: {body} lacks {reason:?}"
        );
    }

    assert!(cluster.is_running(2), "node2 was not removed");
    for i in 0..3 {
        assert!(
            !cluster.log(i).contains("accepted ("),
            "node{i} accepted a bad manifest:\n{}",
            cluster.log(i)
        );
    }

    // (a) The signed successor adding node3. node3 starts with it as its bootstrap file.
    let new = cluster.add_node();
    let v2 = cluster.next_manifest(&[0, 1, 2, new]);
    cluster.set_manifest(&v2);
    cluster.start_node(new);
    let mut listener = VerdictListener::start(&cluster).await;
    let published = cluster.publish_manifest(&v2, VERDICT_TIMEOUT_SECS);
    assert!(published.success, "{}", published.output);
    for node in ["node0", "node1", "node2", "node3"] {
        let (verdict, why, at) = published.verdict(node);
        assert_eq!(verdict, "accepted", "{node}: {}", published.output);
        assert_eq!(at, Some(2), "{node}");
        if node != "node3" {
            assert!(why.contains("node0, node1, node2, node3"), "{node}: {why}");
        }
    }
    let seen = listener
        .verdicts(
            cluster.manifest(),
            &v2,
            &["node0", "node1", "node2", "node3"],
        )
        .await;
    assert!(seen.values().all(|b| b["accepted"] == true), "{seen:?}");
    for i in 0..3 {
        assert!(
            cluster
                .log(i)
                .contains("cluster manifest version 2 accepted (nodes: node0, node1, node2, node3"),
            "node{i}:\n{}",
            cluster.log(i)
        );
    }
    // Every node, node3 included, takes part: each accepts the others' envelopes.
    let client = cluster.client("membership").await;
    let agreed = client
        .keygen("wallet-m1", &[Scheme::Ed25519], 3, WAIT)
        .await
        .expect("keygen over the four nodes of version 2");
    assert_eq!(
        agreed.keys[0].participants,
        ["node0", "node1", "node2", "node3"]
    );

    // (c) Version 1 published again: older, refused by every node (node3 answers too).
    refused_by_all(
        &cluster,
        &v1,
        &["node0", "node1", "node2", "node3"],
        "version 1 is older than the current version 2",
        2,
    )
    .await;

    // node0 restarted with its old manifest file (version 1) comes back at version 2.
    cluster.stop_node(0);
    cluster.start_node(0);
    let log = cluster.log_of_run(0);
    assert!(
        log.contains("cluster manifest from the store") && log.contains("version=2"),
        "{log}"
    );
    let agreed = client
        .keygen("wallet-m2", &[Scheme::Ed25519], 3, WAIT)
        .await
        .expect("keygen over the four nodes after node0's restart");
    assert_eq!(
        agreed.keys[0].participants,
        ["node0", "node1", "node2", "node3"]
    );
}

/// (d) A signed successor that removes node2: node2 accepts it, says so, and exits non-zero
/// with a clear message; the others keep serving at version 2; node2 started again with its
/// old manifest file refuses to start.
#[tokio::test(flavor = "multi_thread")]
async fn pkcs11_a_removed_node_stops_and_the_others_keep_serving() {
    let mut cluster = Cluster::start(3);
    let v2 = cluster.next_manifest(&[0, 1]);
    let published = cluster.publish_manifest(&v2, VERDICT_TIMEOUT_SECS);
    assert!(published.success, "{}", published.output);
    for node in ["node0", "node1", "node2"] {
        let (verdict, _, at) = published.verdict(node);
        assert_eq!(verdict, "accepted", "{node}: {}", published.output);
        assert_eq!(at, Some(2));
    }
    assert_eq!(
        published.report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node_id"] == "node2")
            .unwrap()["listed"],
        false
    );

    let (status, log) = cluster.wait_exit(2, EXIT_DEADLINE);
    assert!(!status.success(), "node2 exited with {status}:\n{log}");
    assert!(
        log.contains("node node2 was removed from cluster c1 by manifest version 2"),
        "{log}"
    );

    cluster.set_manifest(&v2);
    let client = cluster.client("membership").await;
    let agreed = client
        .keygen("wallet-m3", &[Scheme::Ed25519], 2, WAIT)
        .await
        .expect("keygen over the two nodes of version 2");
    assert_eq!(agreed.keys[0].participants, ["node0", "node1"]);

    // Its config still names version 1; its store says it was removed at version 2.
    cluster.spawn_node(2);
    let (status, log) = cluster.wait_exit(2, EXIT_DEADLINE);
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("node node2 is not a member of cluster c1 at manifest version 2"),
        "{log}"
    );
}
