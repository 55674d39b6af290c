//! The key lifecycle over real node processes (SoftHSM, real nats-server): refresh (an old
//! share copied aside before cannot sign with the new ones), delete (checked in every node's
//! SQLite file; signing and keygen refused afterwards), and a reshare interrupted by a
//! SIGKILL (the key still signs at its old version, a retry completes). Reshares across a
//! membership change are in [`super::membership`]'s tests.

use keyrack_client::codes::ErrorCode;
use keyrack_plugin::sim::{self, Faults};
use keyrack_plugin::{KeyShare, PartyIndex, SchemePlugin, Session, SignRequest};

use super::*;

/// Committee setup and the keygen after it (as in `ecdsa.rs`).
const SETUP_WAIT: Duration = Duration::from_secs(240);

/// A cluster of `n` whose nodes each hold three pairs of the plugin's public fixture primes
/// (each committee setup takes one: keygen, an interrupted reshare, its retry) and make no
/// more. The pairs are spread so that the parties of one setup never share one.
fn ecdsa_builder(n: usize) -> Builder {
    Cluster::builder(n)
        .cluster_line("prime_pool = 0")
        .cluster_line("setup_timeout_ms = 120000")
        .before_start(|node| {
            let (store, sealer) = (node.open_store(), node.sealer());
            for pair in [node.index, node.index + 4, node.index + 8] {
                keyrack_node::ecdsa::seed_fixture_primes(&store, sealer.as_ref(), pair).unwrap();
            }
        })
}

/// What one node's SQLite file holds about `WALLET`'s key of `scheme`: the record's status
/// and version, the versions of the sealed shares, staged shares and presignatures.
#[derive(Debug, PartialEq, Eq)]
struct Stored {
    record: Option<(String, u32)>,
    shares: Vec<u32>,
    staged: usize,
    presignatures: usize,
}

fn stored(cluster: &Cluster, i: usize, scheme: Scheme) -> Stored {
    let conn = rusqlite::Connection::open_with_flags(
        &cluster.node(i).store,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let args = (WALLET, scheme.as_str());
    let record = conn
        .query_row(
            "SELECT status, version FROM keys WHERE key_id = ?1 AND scheme = ?2",
            args,
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok();
    let mut stmt = conn
        .prepare(
            "SELECT version FROM key_shares WHERE key_id = ?1 AND scheme = ?2 ORDER BY version",
        )
        .unwrap();
    let shares = stmt
        .query_map(args, |r| r.get(0))
        .unwrap()
        .collect::<Result<Vec<u32>, _>>()
        .unwrap();
    let count = |table: &str| -> usize {
        let n: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM {table} WHERE key_id = ?1 AND scheme = ?2"),
                args,
                |r| r.get(0),
            )
            .unwrap();
        n as usize
    };
    Stored {
        record,
        shares,
        staged: count("staged_shares"),
        presignatures: count("presignatures"),
    }
}

/// `moved` is the key with `public_key` and `chain_code` after a reshare or refresh: both
/// unchanged, at `version` with `threshold` of `committee`.
fn assert_moved(
    moved: &keyrack_client::result::KeyInfo,
    (public_key, chain_code): (&[u8], [u8; 32]),
    version: u32,
    threshold: u16,
    committee: &[String],
) {
    assert_eq!(
        (moved.public_key.as_slice(), moved.chain_code),
        (public_key, chain_code),
        "{:?} key changed",
        moved.scheme
    );
    assert_eq!(
        (
            moved.version,
            moved.threshold,
            moved.participants.as_slice()
        ),
        (version, threshold, committee),
        "{:?} key",
        moved.scheme
    );
}

/// Unseals node `i`'s share of `WALLET`'s key of `scheme` (the node must be stopped).
fn share_of(cluster: &Cluster, i: usize, scheme: Scheme) -> KeyShare {
    let node = cluster.node(i);
    node.open_store()
        .load_share(WALLET, scheme.as_str(), node.sealer().as_ref())
        .unwrap()
}

/// Signs `message` (as the node would: Ed25519 the message, ECDSA its SHA-256) with
/// `shares` in-process, over the plugin's simulated network; returns each party's outcome.
fn sign_with(scheme: Scheme, shares: &[KeyShare], message: &[u8]) -> Vec<Result<Vec<u8>, String>> {
    use sha2::Digest;
    let plugin: Box<dyn SchemePlugin> = match scheme {
        Scheme::Ed25519 => Box::new(keyrack_eddsa_frost::ed25519()),
        Scheme::EcdsaSecp256k1 => Box::new(keyrack_ecdsa_cggmp21::EcdsaPlugin::new(
            std::sync::Arc::new(keyrack_node::ecdsa::NoAux),
        )),
        other => panic!("{other:?}"),
    };
    let payload = match scheme {
        Scheme::Ed25519 => message.to_vec(),
        _ => sha2::Sha256::digest(message).to_vec(),
    };
    let signers: Vec<PartyIndex> = shares.iter().map(|s| s.index).collect();
    let m = shares.len() as u16;
    sim::run(m, Duration::from_secs(30), &Faults::default(), |me, ch| {
        let request = SignRequest {
            signers: signers.clone(),
            message: payload.clone(),
            derivation_path: vec![],
        };
        let session = Session {
            id: [7; 32],
            me,
            parties: m,
        };
        plugin.sign(&session, ch, &shares[usize::from(me)], &request)
    })
    .into_iter()
    .map(|r| match r.expect("every party ran") {
        Ok(out) => Ok(out.signature),
        Err(e) => Err(e.to_string()),
    })
    .collect()
}

/// Whether `signature` verifies under `public_key` for `message` (independently: dalek, k256).
fn verifies(scheme: Scheme, public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    use sha2::Digest;
    match scheme {
        Scheme::Ed25519 => {
            let key =
                ed25519_dalek::VerifyingKey::from_bytes(&public_key.try_into().unwrap()).unwrap();
            let Ok(sig) =
                ed25519_dalek::Signature::from_slice(&signature[..64.min(signature.len())])
            else {
                return false;
            };
            key.verify_strict(message, &sig).is_ok()
        }
        _ => {
            use k256::ecdsa::signature::hazmat::PrehashVerifier;
            let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(public_key).unwrap();
            let Ok(sig) = k256::ecdsa::Signature::from_slice(&signature[..64.min(signature.len())])
            else {
                return false;
            };
            key.verify_prehash(&sha2::Sha256::digest(message), &sig)
                .is_ok()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_refresh_makes_copied_old_shares_useless_and_delete_erases_everywhere() {
    let schemes = [Scheme::Ed25519, Scheme::EcdsaSecp256k1];
    let mut cluster = ecdsa_builder(3).start();
    let client = cluster.client("app").await;
    let keys = client
        .keygen(WALLET, &schemes, 2, SETUP_WAIT)
        .await
        .expect("keygen");
    let public = |scheme: Scheme| {
        keys.keys
            .iter()
            .find(|k| k.scheme == scheme)
            .unwrap()
            .clone()
    };

    // node0's version-1 shares, copied aside (as a thief of an old backup would hold them).
    cluster.stop_node(0);
    let old: Vec<KeyShare> = schemes.iter().map(|s| share_of(&cluster, 0, *s)).collect();
    cluster.start_node(0);

    // Refresh: same keys, version 2 everywhere, only version-2 shares left in every store.
    let refreshed = client
        .refresh(WALLET, &schemes, SETUP_WAIT)
        .await
        .expect("refresh");
    for k in &refreshed.keys {
        let before = public(k.scheme);
        assert_moved(
            k,
            (&before.public_key, before.chain_code),
            2,
            2,
            &before.participants,
        );
    }
    for scheme in schemes {
        sign_and_verify(
            &client,
            scheme,
            &public(scheme).public_key,
            b"after refresh",
            &[],
        )
        .await;
        for i in 0..3 {
            assert_eq!(
                stored(&cluster, i, scheme),
                Stored {
                    record: Some(("READY".into(), 2)),
                    shares: vec![2],
                    staged: 0,
                    presignatures: stored(&cluster, i, scheme).presignatures,
                },
                "node{i} {scheme:?}"
            );
        }
    }

    // The old share with a new one signs nothing valid; two new shares do.
    cluster.stop_node(1);
    cluster.stop_node(2);
    for (scheme, old) in schemes.iter().zip(&old) {
        let new1 = share_of(&cluster, 1, *scheme);
        let new2 = share_of(&cluster, 2, *scheme);
        let key = public(*scheme).public_key;
        let good = sign_with(*scheme, &[new1.clone(), new2], b"control");
        assert!(
            good.iter().all(|s| s
                .as_ref()
                .is_ok_and(|s| verifies(*scheme, &key, b"control", s))),
            "{scheme:?}: two new shares sign: {good:?}"
        );
        let mixed = sign_with(*scheme, &[old.clone(), new1], b"stale");
        assert!(
            !mixed.iter().any(|s| s
                .as_ref()
                .is_ok_and(|s| verifies(*scheme, &key, b"stale", s))),
            "{scheme:?}: an old share with a new one made a valid signature"
        );
    }
    cluster.start_node(1);
    cluster.start_node(2);

    // Delete: every node erased its shares (checked in its SQLite file) and keeps a
    // tombstone; signing and keygen under the id are refused.
    let deleted = client.delete(WALLET, &schemes, WAIT).await.expect("delete");
    assert_eq!(deleted.nodes.len(), 3);
    for scheme in schemes {
        for i in 0..3 {
            assert_eq!(
                stored(&cluster, i, scheme),
                Stored {
                    record: Some(("DELETED".into(), 2)),
                    shares: vec![],
                    staged: 0,
                    presignatures: 0,
                },
                "node{i} {scheme:?}"
            );
        }
        match client
            .sign(
                WALLET,
                scheme,
                b"after delete",
                PayloadKind::Message,
                &[],
                WAIT,
            )
            .await
        {
            Err(SdkError::Refused { code, .. }) => assert_eq!(code, ErrorCode::KeyDeleted),
            other => panic!("signing a deleted key: {other:?}"),
        }
    }
    match client.keygen(WALLET, &[Scheme::Ed25519], 2, WAIT).await {
        Err(SdkError::Refused { code, .. }) => assert_eq!(code, ErrorCode::KeyDeleted),
        other => panic!("keygen on a deleted id: {other:?}"),
    }
    // Unless asked for explicitly: then a new key under the old id, version 1 everywhere.
    let mut body = client.keygen_body(WALLET, &[Scheme::Ed25519], 2, WAIT);
    body.reuse_deleted_id = true;
    let reused = match client.request(body, WAIT).await {
        Ok(Outcome::Keys(mut keys)) => keys.keys.remove(0),
        other => panic!("keygen reusing a deleted id: {other:?}"),
    };
    assert_eq!(reused.version, 1);
    assert_ne!(
        reused.public_key,
        public(Scheme::Ed25519).public_key,
        "a new key"
    );
    sign_and_verify(
        &client,
        Scheme::Ed25519,
        &reused.public_key,
        b"new key",
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_a_reshare_killed_midway_leaves_the_old_version_signing_and_a_retry_completes() {
    // Four nodes; the ECDSA key is 3 of 4. The reshare moves it to node0..node2, 2 of 3: a
    // new committee, so its members first run committee setup — node1 is killed then.
    let mut cluster = ecdsa_builder(4).start();
    let client = cluster.client("app").await;
    let mut results = cluster.results("app").await;
    let key = client
        .keygen(WALLET, &[Scheme::EcdsaSecp256k1], 3, SETUP_WAIT)
        .await
        .expect("keygen")
        .keys
        .remove(0);
    let new_committee: Vec<String> = ["node0", "node1", "node2"].map(String::from).to_vec();
    let body = client.reshare_body(
        WALLET,
        &[Scheme::EcdsaSecp256k1],
        Some(2),
        Some(new_committee.clone()),
        SETUP_WAIT,
    );
    let first = body.request_id.clone();
    client.submit(body).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let setups = |c: &Cluster| c.log(1).matches("ECDSA committee setup:").count();
    let before = 1; // the keygen's
    while setups(&cluster) <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "node1 never began the new committee's setup"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The progress shows in status results: what each node is doing with the key.
    let status = client
        .key_status(WALLET, &[Scheme::EcdsaSecp256k1], WAIT)
        .await
        .unwrap();
    for node in ["node0", "node1", "node2"] {
        let answer = &status
            .nodes
            .iter()
            .find(|n| n.answer.node == node)
            .unwrap()
            .answer;
        assert!(
            answer
                .message
                .contains("ECDSA committee setup for node0,node1,node2"),
            "{node}: {answer:?}"
        );
    }
    cluster.kill_node(1);
    results
        .until(SETUP_WAIT, "the others give the reshare up", |r| {
            ["node0", "node2", "node3"].iter().all(|n| {
                r.iter()
                    .any(|r| r.request_id == first && r.node_id == *n && r.status == Status::Failed)
            })
        })
        .await;
    let answers = results.of(&first);
    for r in &answers {
        assert!(
            r.message.contains("node1 is down"),
            "{}",
            describe(answers.iter().copied())
        );
    }
    // Each node's log says so too, for the operator.
    for i in [0, 2, 3] {
        let log = cluster.log(i);
        assert!(
            log.lines().any(|l| l.contains("WARN")
                && l.contains("request failed")
                && l.contains(&first)
                && l.contains("node1 is down")),
            "node{i}'s log:\n{log}"
        );
    }
    // No half state: every live node holds version 1 and its version-1 share, nothing staged;
    // the old committee (node0, node2, node3: 3 of 4) still signs.
    for i in [0, 2, 3] {
        assert_eq!(
            stored(&cluster, i, Scheme::EcdsaSecp256k1),
            Stored {
                record: Some(("READY".into(), 1)),
                shares: vec![1],
                staged: 0,
                presignatures: stored(&cluster, i, Scheme::EcdsaSecp256k1).presignatures,
            },
            "node{i}"
        );
    }
    let signed = sign_and_verify(
        &client,
        Scheme::EcdsaSecp256k1,
        &key.public_key,
        b"still v1",
        &[],
    )
    .await;
    assert_ne!(signed.node, "node1");

    // node1 comes back (answers the redelivered request `interrupted`); the retry completes.
    cluster.start_node(1);
    results
        .until(SETUP_WAIT, "node1 answers the redelivered reshare", |r| {
            r.iter()
                .any(|r| r.request_id == first && r.node_id == "node1")
        })
        .await;
    let node1 = results
        .of(&first)
        .into_iter()
        .find(|r| r.node_id == "node1")
        .unwrap();
    assert_eq!(node1.code, Some(ErrorCode::Interrupted), "{node1:?}");
    let moved = client
        .reshare(
            WALLET,
            &[Scheme::EcdsaSecp256k1],
            Some(2),
            Some(new_committee.clone()),
            SETUP_WAIT,
        )
        .await
        .expect("the retried reshare");
    assert_moved(
        &moved.keys[0],
        (&key.public_key, key.chain_code),
        2,
        2,
        &new_committee,
    );
    for i in 0..3 {
        let s = stored(&cluster, i, Scheme::EcdsaSecp256k1);
        assert_eq!(
            (s.record, s.shares, s.staged),
            (Some(("READY".into(), 2)), vec![2], 0),
            "node{i}"
        );
    }
    assert_eq!(
        stored(&cluster, 3, Scheme::EcdsaSecp256k1),
        Stored {
            record: None,
            shares: vec![],
            staged: 0,
            presignatures: 0
        },
        "node3 left the committee: no share, no record"
    );
    sign_and_verify(
        &client,
        Scheme::EcdsaSecp256k1,
        &key.public_key,
        b"at v2",
        &[],
    )
    .await;
    sign_and_verify(
        &client,
        Scheme::EcdsaSecp256k1,
        &bip32_child_of(&key, &[0, 7]),
        b"child at v2",
        &[0, 7],
    )
    .await;
}

/// The BIP-32 child public key of `key` along `path` (CKDpub from the spec, in `ecdsa.rs`).
fn bip32_child_of(key: &keyrack_client::result::KeyInfo, path: &[u32]) -> Vec<u8> {
    super::ecdsa::bip32_child(&key.public_key, key.chain_code, path)
}

/// Seeds a node added after the cluster started (the builder's hook ran only for the first
/// nodes), as [`ecdsa_builder`] does. The node must not run.
fn seed_added(cluster: &Cluster, i: usize) {
    let node = cluster.node(i);
    let (store, sealer) = (node.open_store(), node.sealer());
    for pair in [i, i + 4, i + 8] {
        keyrack_node::ecdsa::seed_fixture_primes(&store, sealer.as_ref(), pair).unwrap();
    }
}

/// Every listed node holds `WALLET`'s keys of `schemes` READY at `version` with only that
/// version's share, nothing staged.
fn assert_only_version(cluster: &Cluster, nodes: &[usize], schemes: &[Scheme], version: u32) {
    for &i in nodes {
        for &scheme in schemes {
            let s = stored(cluster, i, scheme);
            assert_eq!(
                (s.record, s.shares, s.staged),
                (Some(("READY".into(), version)), vec![version], 0),
                "node{i} {scheme:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_reshare_grows_to_3_of_4_with_a_joining_node_then_drops_another_to_2_of_3() {
    let schemes = [Scheme::Ed25519, Scheme::EcdsaSecp256k1];
    let mut cluster = ecdsa_builder(3).start();
    let client = cluster.client("app").await;
    let created = client
        .keygen(WALLET, &schemes, 2, SETUP_WAIT)
        .await
        .expect("keygen")
        .keys;
    let original = |scheme: Scheme| created.iter().find(|k| k.scheme == scheme).unwrap().clone();
    let ecdsa = original(Scheme::EcdsaSecp256k1);
    let child = super::ecdsa::bip32_child(&ecdsa.public_key, ecdsa.chain_code, &[0, 5]);

    // node3 joins: manifest version 2 (signed by the admin, published to every node), then
    // it starts with that manifest. It holds nothing until the reshare.
    let joiner = cluster.add_node();
    let v2 = cluster.next_manifest(&[0, 1, 2, 3]);
    let published = cluster.publish_manifest(&v2, 20);
    for id in ["node0", "node1", "node2"] {
        assert_eq!(published.verdict(id).0, "accepted", "{}", published.output);
    }
    assert_eq!(published.verdict("node3").0, "silent", "not started yet");
    cluster.set_manifest(&v2);
    seed_added(&cluster, joiner);
    cluster.start_node(joiner);
    let client = cluster.client("app-v2").await;
    let everyone: Vec<String> = cluster.node_ids();

    // 2 of 3 → 3 of 4.
    let grown = client
        .reshare(
            WALLET,
            &schemes,
            Some(3),
            Some(everyone.clone()),
            SETUP_WAIT,
        )
        .await
        .expect("reshare to 3 of 4");
    assert_eq!(grown.nodes, everyone);
    for k in &grown.keys {
        let before = original(k.scheme);
        assert_moved(k, (&before.public_key, before.chain_code), 2, 3, &everyone);
    }
    assert_only_version(&cluster, &[0, 1, 2, 3], &schemes, 2);
    for scheme in schemes {
        let signed = sign_and_verify(
            &client,
            scheme,
            &original(scheme).public_key,
            b"3 of 4",
            &[],
        )
        .await;
        assert_eq!(signed.tolerated, vec![], "every signer answered");
    }
    sign_and_verify(
        &client,
        Scheme::EcdsaSecp256k1,
        &child,
        b"child, 3 of 4",
        &[0, 5],
    )
    .await;

    // 3 of 4 → 2 of 3 without node1 (an original member): it deals, receives nothing, and
    // keeps nothing of the key.
    let remaining: Vec<String> = ["node0", "node2", "node3"].map(String::from).to_vec();
    let shrunk = client
        .reshare(
            WALLET,
            &schemes,
            Some(2),
            Some(remaining.clone()),
            SETUP_WAIT,
        )
        .await
        .expect("reshare to 2 of 3");
    for k in &shrunk.keys {
        let before = original(k.scheme);
        assert_moved(k, (&before.public_key, before.chain_code), 3, 2, &remaining);
    }
    assert_only_version(&cluster, &[0, 2, 3], &schemes, 3);
    for scheme in schemes {
        assert_eq!(
            stored(&cluster, 1, scheme),
            Stored {
                record: None,
                shares: vec![],
                staged: 0,
                presignatures: 0
            },
            "node1 {scheme:?}"
        );
    }

    // node1 leaves the cluster (manifest version 3): it stops by itself, and the key signs
    // (root and child) with the committee that remains.
    let v3 = cluster.next_manifest(&[0, 2, 3]);
    let published = cluster.publish_manifest(&v3, 20);
    assert!(published.success, "{}", published.output);
    let (status, log) = cluster.wait_exit(1, Duration::from_secs(20));
    assert!(!status.success(), "node1 exits with an error: {log}");
    assert!(log.contains("removed"), "{log}");
    cluster.set_manifest(&v3);
    let client = cluster.client("app-v3").await;
    for scheme in schemes {
        let signed = sign_and_verify(
            &client,
            scheme,
            &original(scheme).public_key,
            b"2 of 3",
            &[],
        )
        .await;
        assert_ne!(signed.node, "node1");
    }
    sign_and_verify(
        &client,
        Scheme::EcdsaSecp256k1,
        &child,
        b"child, 2 of 3",
        &[0, 5],
    )
    .await;
    // Its old share would not help anyone either: node1's store holds no key material.
    let conn = rusqlite::Connection::open_with_flags(
        &cluster.node(1).store,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    for table in ["key_shares", "staged_shares", "presignatures"] {
        let n: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "node1's {table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_a_dead_appliance_is_replaced_by_resharing_from_the_survivors() {
    // node2 dies for good. The admins remove it and add node3 (manifest version 2); the two
    // survivors, the old threshold, deal the key to node0, node1, node3.
    let mut cluster = Cluster::start(3);
    let client = cluster.client("app").await;
    let key = keygen(&cluster, &client, &[Scheme::Ed25519])
        .await
        .remove(0);
    cluster.kill_node(2);
    let replacement = cluster.add_node();
    let v2 = cluster.next_manifest(&[0, 1, 3]);
    let published = cluster.publish_manifest(&v2, 10);
    for id in ["node0", "node1"] {
        assert_eq!(published.verdict(id).0, "accepted", "{}", published.output);
    }
    cluster.set_manifest(&v2);
    cluster.start_node(replacement);
    let client = cluster.client("app-v2").await;
    let committee: Vec<String> = ["node0", "node1", "node3"].map(String::from).to_vec();
    let moved = client
        .reshare(
            WALLET,
            &[Scheme::Ed25519],
            None,
            Some(committee.clone()),
            WAIT,
        )
        .await
        .expect("reshare from the survivors");
    assert_moved(
        &moved.keys[0],
        (&key.public_key, key.chain_code),
        2,
        2,
        &committee,
    );
    assert_only_version(&cluster, &[0, 1, 3], &[Scheme::Ed25519], 2);
    // Any two of the new committee sign, node3 among them.
    cluster.stop_node(0);
    let signed = sign_and_verify(
        &client,
        Scheme::Ed25519,
        &key.public_key,
        b"without node0",
        &[],
    )
    .await;
    assert_ne!(signed.node, "node0");
    cluster.start_node(0);
    cluster.stop_node(1);
    sign_and_verify(
        &client,
        Scheme::Ed25519,
        &key.public_key,
        b"without node1",
        &[],
    )
    .await;
}
