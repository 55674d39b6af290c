//! Signing at process level: every 2-node subset of a 2-of-3 cluster signs (the third node
//! stopped), HD-derived signing, and 100 concurrent requests under back-pressure. Ed25519 and
//! BIP-340 Schnorr; every signature is checked by the SDK and again independently.

use std::collections::{BTreeMap, BTreeSet};

use keyrack_plugin::SchemePlugin;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_every_two_node_subset_signs_with_the_third_stopped() {
    let mut cluster = Cluster::start(3);
    let client = cluster.client("app").await;
    let mut results = cluster.results("app").await;
    let keys = keygen(
        &cluster,
        &client,
        &[Scheme::Ed25519, Scheme::SchnorrSecp256k1],
    )
    .await;
    for down in 0..3 {
        let down_id = format!("node{down}");
        cluster.stop_node(down);
        for key in &keys {
            let message = format!("{:?}, signed while {down_id} is stopped", key.scheme);
            let body = sign_body(&client, key.scheme, message.as_bytes(), &[]);
            let request_id = body.request_id.clone();
            let signed = signature_of(client.submit(body).await.unwrap().wait(WAIT).await);
            check_signature(
                &signed.signature,
                key.scheme,
                &key.public_key,
                message.as_bytes(),
            );
            // Both other nodes signed, in one session.
            let answers = results.until_ok(&request_id, 2).await;
            let by = signers(&answers, &signed.signature.signature);
            let expected: BTreeSet<String> = cluster
                .node_ids()
                .into_iter()
                .filter(|n| *n != down_id)
                .collect();
            assert_eq!(by, expected, "{:?} without {down_id}", key.scheme);
        }
        cluster.start_node(down);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_hd_derived_signing_signs_under_the_child_key() {
    let cluster = Cluster::start(3);
    let client = cluster.client("app").await;
    let keys = keygen(
        &cluster,
        &client,
        &[Scheme::Ed25519, Scheme::SchnorrSecp256k1],
    )
    .await;
    for key in &keys {
        // The child keys as a wallet computes them from the public key and chain code alone.
        let plugin: Box<dyn SchemePlugin> = match key.scheme {
            Scheme::Ed25519 => Box::new(keyrack_eddsa_frost::ed25519()),
            Scheme::SchnorrSecp256k1 => Box::new(keyrack_eddsa_frost::schnorr_secp256k1()),
            other => panic!("{other:?}"),
        };
        let child = |path: &[u32]| {
            plugin
                .derive_public_key(&key.public_key, &key.chain_code, path)
                .unwrap()
        };
        let (a, b) = ([44, 0, 7], [44, 0, 8]);
        let (child_a, child_b) = (child(&a), child(&b));
        assert_ne!(child_a, key.public_key);
        assert_ne!(child_a, child_b);

        let first = sign_and_verify(&client, key.scheme, &child_a, b"to path a", &a).await;
        let again = sign_and_verify(&client, key.scheme, &child_a, b"to path a, again", &a).await;
        assert_eq!(
            first.signature.public_key, again.signature.public_key,
            "the same path gives the same key"
        );
        let other = sign_and_verify(&client, key.scheme, &child_b, b"to path b", &b).await;
        assert_ne!(
            other.signature.public_key, first.signature.public_key,
            "another path gives another key"
        );
        // And the root key still signs as itself.
        sign_and_verify(&client, key.scheme, &key.public_key, b"to the root", &[]).await;
    }
}

/// 100 signing requests submitted at once, then all waited for: each gets exactly one
/// verified signature. `max_in_flight = 4` forces back-pressure: a node takes at most four
/// requests at once (its consumer's `max_ack_pending`; one that arrives while its four
/// permits are taken is NAKed with a delay), so most requests wait in JetStream meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_hundred_concurrent_signing_requests_each_get_one_signature() {
    const REQUESTS: usize = 100;
    let cluster = Cluster::builder(3)
        .cluster_line("max_in_flight = 4")
        .start();
    let client = cluster.client("app").await;
    let mut results = cluster.results("app").await;
    let key = keygen(&cluster, &client, &[Scheme::Ed25519])
        .await
        .remove(0);

    let started = std::time::Instant::now();
    let mut waiting = vec![];
    for i in 0..REQUESTS {
        let message = format!("payment #{i}").into_bytes();
        let body = sign_body(&client, Scheme::Ed25519, &message, &[]);
        let request_id = body.request_id.clone();
        let pending = client.submit(body).await.unwrap();
        waiting.push((request_id, message, tokio::spawn(pending.wait(WAIT * 3))));
    }
    let mut signatures = BTreeMap::new();
    for (request_id, message, task) in waiting {
        let signed = signature_of(task.await.unwrap());
        check_signature(
            &signed.signature,
            Scheme::Ed25519,
            &key.public_key,
            &message,
        );
        signatures.insert(request_id, signed.signature.signature);
    }
    eprintln!(
        "{REQUESTS} signatures in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let distinct: BTreeSet<&[u8; 64]> = signatures.values().collect();
    assert_eq!(
        distinct.len(),
        REQUESTS,
        "every request has its own signature"
    );

    // What the nodes published: per request, two `ok` results (its two signers, one session,
    // the signature the SDK returned), and nothing else.
    results
        .until(WAIT, "two ok results per request", |r| {
            r.iter()
                .filter(|r| signatures.contains_key(&r.request_id))
                .count()
                >= 2 * REQUESTS
        })
        .await;
    for (request_id, signature) in &signatures {
        let answers = results.of(request_id);
        assert_eq!(answers.len(), 2, "{}", describe(answers.iter().copied()));
        signers(&answers, signature);
    }
}
