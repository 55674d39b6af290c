//! ECDSA over real node processes: committee setup (interrupted by a SIGKILL: the others
//! give up on the silent node, it answers `interrupted` once back; then run again), a wallet with both an ECDSA and an Ed25519 key, every 2-node subset signing,
//! BIP-32 derived signing checked against a derivation written here from the spec, and every
//! node restarted with its shares unsealed from SQLite through SoftHSM.
//!
//! Each node's prime pool is seeded before its first start with the plugin's public fixture
//! primes (two pairs each, as `keyrack dev` does with one), so committee setup does not wait
//! for prime generation; `prime_pool = 0` keeps the nodes from generating more.

use hmac::{Hmac, Mac};
use k256::elliptic_curve::sec1::ToEncodedPoint;
use keyrack_client::codes::ErrorCode;

use super::*;

/// Committee setup (≈ 9 s of CPU per party, three parties on the test machine's cores)
/// and the keygen after it.
const SETUP_WAIT: Duration = Duration::from_secs(240);

/// BIP-32 CKDpub along a non-hardened path, from the spec, with k256 and HMAC-SHA512.
pub(super) fn bip32_child(public: &[u8], chain_code: [u8; 32], path: &[u32]) -> Vec<u8> {
    let mut key = k256::PublicKey::from_sec1_bytes(public).unwrap();
    let mut cc = chain_code;
    for &i in path {
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(&cc).unwrap();
        mac.update(key.to_encoded_point(true).as_bytes());
        mac.update(&i.to_be_bytes());
        let out = mac.finalize().into_bytes();
        let il = k256::NonZeroScalar::try_from(&out[..32]).unwrap();
        let child = key.to_projective() + k256::ProjectivePoint::GENERATOR * *il;
        key = k256::PublicKey::from_affine(child.to_affine()).unwrap();
        cc.copy_from_slice(&out[32..]);
    }
    key.to_encoded_point(true).as_bytes().to_vec()
}

fn keygen_body(client: &Client) -> RequestBody {
    let mut body = client.new_request(RequestKind::Keygen, WALLET, SETUP_WAIT);
    body.schemes = vec![Scheme::EcdsaSecp256k1, Scheme::Ed25519];
    body.threshold = Some(2);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_ecdsa_wallet_survives_an_interrupted_setup_subsets_hd_and_restarts() {
    let mut cluster = Cluster::builder(3)
        .cluster_line("prime_pool = 0")
        .cluster_line("setup_timeout_ms = 120000")
        .before_start(|node| {
            let index: usize = node.id.trim_start_matches("node").parse().unwrap();
            let (store, sealer) = (node.open_store(), node.sealer());
            for pair in [index, index + 3] {
                keyrack_node::ecdsa::seed_fixture_primes(&store, sealer.as_ref(), pair).unwrap();
            }
        })
        .start();
    let client = cluster.client("app").await;
    let mut results = cluster.results("app").await;

    // 1. Kill node2 while the committee sets up: the keygen fails everywhere, clearly, and
    //    node2, started again, answers the request NATS redelivers to it `interrupted`.
    let body = keygen_body(&client);
    let first = body.request_id.clone();
    client.submit(body).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !cluster.log(2).contains("ECDSA committee setup") {
        assert!(
            std::time::Instant::now() < deadline,
            "node2 never began committee setup"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.kill_node(2);
    results
        .until(SETUP_WAIT, "node0 and node1 give up the keygen", |r| {
            ["node0", "node1"].iter().all(|n| {
                r.iter()
                    .any(|r| r.request_id == first && r.node_id == *n && r.status == Status::Failed)
            })
        })
        .await;
    cluster.start_node(2);
    results
        .until(SETUP_WAIT, "node2 answers the redelivered keygen", |r| {
            r.iter()
                .any(|r| r.request_id == first && r.node_id == "node2")
        })
        .await;
    let answers = results.of(&first);
    assert!(
        answers.iter().all(|r| r.status == Status::Failed),
        "{}",
        describe(answers.iter().copied())
    );
    // The survivors gave up on node2 when its heartbeats stopped, not at the 120 s timeout.
    for r in answers.iter().filter(|r| r.node_id != "node2") {
        assert!(
            r.message.contains("node2 is down"),
            "{}",
            describe(answers.iter().copied())
        );
    }
    let node2 = answers.iter().find(|r| r.node_id == "node2").unwrap();
    assert_eq!(
        node2.code,
        Some(ErrorCode::Interrupted),
        "{}",
        describe(answers.iter().copied())
    );
    // No key is READY anywhere (node2's PENDING keygen became ERROR at its restart).
    let status = client
        .key_status(WALLET, &[], Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(status.missing, Vec::<String>::new(), "{status:?}");
    assert_eq!(status.nodes.len(), 3, "{status:?}");
    for node in &status.nodes {
        for key in &node.keys {
            assert_ne!(
                key.status,
                Some(keyrack_client::result::KeyStatus::Ready),
                "{node:?}"
            );
        }
    }

    // 2. ERROR can be retried: a new keygen runs committee setup again and makes both keys.
    let agreed = client
        .keygen(
            WALLET,
            &[Scheme::EcdsaSecp256k1, Scheme::Ed25519],
            2,
            SETUP_WAIT,
        )
        .await
        .expect("keygen after the interrupted one");
    let key = |scheme: Scheme| {
        agreed
            .keys
            .iter()
            .find(|k| k.scheme == scheme)
            .unwrap_or_else(|| panic!("no {scheme:?} key in {agreed:?}"))
            .clone()
    };
    let (ecdsa, ed) = (key(Scheme::EcdsaSecp256k1), key(Scheme::Ed25519));
    // A fresh reader (it replays every result): the one above sat unread through the keygen,
    // and an ordered consumer left idle that long has been seen to stall.
    drop(results);
    let mut results = cluster.results("app").await;
    assert_eq!(ecdsa.public_key.len(), 33, "compressed SEC1");

    // 3. Every 2-node subset signs with the ECDSA key, the third node stopped.
    for down in 0..3 {
        let down_id = format!("node{down}");
        cluster.stop_node(down);
        let message = format!("ECDSA, signed while {down_id} is stopped");
        let body = sign_body(&client, Scheme::EcdsaSecp256k1, message.as_bytes(), &[]);
        let request_id = body.request_id.clone();
        let signed = signature_of(client.submit(body).await.unwrap().wait(WAIT).await);
        check_signature(
            &signed.signature,
            Scheme::EcdsaSecp256k1,
            &ecdsa.public_key,
            message.as_bytes(),
        );
        let answers = results.until_ok(&request_id, 2).await;
        let by = signers(&answers, &signed.signature.signature);
        let expected: BTreeSet<String> = cluster
            .node_ids()
            .into_iter()
            .filter(|n| *n != down_id)
            .collect();
        assert_eq!(by, expected, "ECDSA without {down_id}");
        cluster.start_node(down);
    }

    // 4. HD: signatures under BIP-32 children of the wallet key.
    let path = [44, 60, 0, 0, 7];
    let child = bip32_child(&ecdsa.public_key, ecdsa.chain_code, &path);
    assert_ne!(child, ecdsa.public_key);
    sign_and_verify(
        &client,
        Scheme::EcdsaSecp256k1,
        &child,
        b"pay from child 7",
        &path,
    )
    .await;
    let other = bip32_child(&ecdsa.public_key, ecdsa.chain_code, &[44, 60, 0, 0, 8]);
    assert_ne!(other, child);
    sign_and_verify(
        &client,
        Scheme::EcdsaSecp256k1,
        &other,
        b"pay from child 8",
        &[44, 60, 0, 0, 8],
    )
    .await;

    // 5. Every node restarted: both keys still sign (shares unsealed from SQLite via SoftHSM).
    cluster.restart_all();
    sign_and_verify(
        &client,
        Scheme::EcdsaSecp256k1,
        &ecdsa.public_key,
        b"after restart",
        &[],
    )
    .await;
    sign_and_verify(
        &client,
        Scheme::Ed25519,
        &ed.public_key,
        b"after restart",
        &[],
    )
    .await;
    for i in 0..3 {
        cluster.stop_node(i);
        let states = cluster.key_states(i);
        assert_eq!(states.len(), 2, "node{i}: {states:?}");
        assert!(
            states.iter().all(|s| s.status == "READY" && s.has_share),
            "node{i}: {states:?}"
        );
    }
}
