//! Refusals at process level: requests published as crafted bytes (through JetStream, as a
//! client would) that every node must refuse with a signed result naming the right code when
//! the request's route (client id, request id) can be read, and never sign. Unroutable ones
//! are only logged; the nodes stay healthy and serve the next request.

use base64::Engine as _;
use keyrack_client::codes::ErrorCode;
use keyrack_client::request::{InitiatorKey, RequestBody};
use keyrack_client::result::{ResultBody, Status};

use super::*;
use crate::cluster::{describe, Results};

/// Waits for the three nodes' answers to `request_id` and checks that each is a refusal with
/// `code` (every result read is signed by its manifest node: [`Results`] checks that).
async fn refused_by_all(results: &mut Results, request_id: &str, code: ErrorCode, what: &str) {
    let answers = |r: &[ResultBody]| r.iter().filter(|r| r.request_id == request_id).count();
    results
        .until(WAIT, &format!("{what}: three refusals"), |r| {
            answers(r) >= 3
        })
        .await;
    let got = results.of(request_id);
    let mut nodes: Vec<&str> = got.iter().map(|r| r.node_id.as_str()).collect();
    nodes.sort();
    assert_eq!(
        nodes,
        ["node0", "node1", "node2"],
        "{what}: {}",
        describe(got.iter().copied())
    );
    for r in &got {
        assert_eq!(
            (r.status, r.code),
            (Status::Refused, Some(code)),
            "{what}: {}",
            describe(got.iter().copied())
        );
        assert!(r.signature.is_none() && r.keys.is_empty(), "{what}: {r:?}");
        assert!(!r.message.is_empty(), "{what}: a refusal says why");
    }
}

/// The wire form of a signed request with its body bytes replaced (signature unchanged).
fn with_body(signed_json: &[u8], body: &[u8]) -> Vec<u8> {
    let mut wire: serde_json::Value = serde_json::from_slice(signed_json).unwrap();
    wire["body"] = base64::engine::general_purpose::STANDARD
        .encode(body)
        .into();
    serde_json::to_vec(&wire).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_refusals_replayed_expired_tampered_unknown_initiator_malformed() {
    let (cluster, client, mut results, key) = ed25519_cluster(Cluster::builder(3)).await;
    let alice = cluster.initiator();
    let body = |message: &[u8]| sign_body(&client, Scheme::Ed25519, message, &[]);

    // Replayed: a request signed once, published twice. JetStream would drop a second copy
    // with the same Nats-Msg-Id itself, so the copy has another: the nodes must catch it.
    let original = body(b"pay once");
    let signed = alice.sign_request(&original).unwrap();
    let id = original.request_id.clone();
    cluster.publish_request("sign", &id, signed.to_json()).await;
    let signature = results.until_ok(&id, 2).await[0].signature.clone().unwrap();
    check_signature(&signature, Scheme::Ed25519, &key.public_key, b"pay once");
    cluster
        .publish_request("sign", &format!("{id}-replayed"), signed.to_json())
        .await;
    let replays = |r: &[ResultBody]| {
        r.iter()
            .filter(|r| r.request_id == id && r.code == Some(ErrorCode::Replayed))
            .count()
    };
    results
        .until(WAIT, "replayed: three refusals", |r| replays(r) >= 3)
        .await;
    let answers = results.of(&id);
    assert_eq!(answers.len(), 5, "{}", describe(answers.iter().copied()));
    for r in &answers {
        match r.status {
            Status::Ok => assert_eq!(r.signature.as_ref(), Some(&signature), "one signature"),
            _ => assert_eq!(
                (r.status, r.code),
                (Status::Refused, Some(ErrorCode::Replayed))
            ),
        }
    }

    // Each crafted request: what it is, the subject kind it goes to, its request id, its
    // bytes, and the code every node must refuse it with.
    let mut crafted: Vec<(&str, &str, String, Vec<u8>, ErrorCode)> = vec![];
    let signed_by = |key: &InitiatorKey, b: &RequestBody| key.sign_request(b).unwrap().to_json();

    // Out of time: expired, created in the future, living too long.
    let now = keyrack_client::now_ms();
    for (what, created, lifetime, code) in [
        ("expired", now - 20_000, 10_000, ErrorCode::Expired),
        (
            "from the future",
            now + 300_000,
            10_000,
            ErrorCode::NotYetValid,
        ),
        (
            "living too long",
            now,
            3_600_000,
            ErrorCode::LifetimeTooLong,
        ),
    ] {
        let mut b = body(b"out of time");
        b.created_at_ms = created;
        b.expires_at_ms = created + lifetime;
        crafted.push((
            what,
            "sign",
            b.request_id.clone(),
            signed_by(&alice, &b),
            code,
        ));
    }

    // Tampered: the body changed after it was signed (another key id).
    let b = body(b"tampered");
    let signed = alice.sign_request(&b).unwrap();
    let text = String::from_utf8(signed.body_bytes().to_vec()).unwrap();
    let tampered = text.replacen("\"wallet-1\"", "\"wallet-2\"", 1);
    assert_ne!(tampered, text);
    let bytes = with_body(&signed.to_json(), tampered.as_bytes());
    crafted.push((
        "tampered",
        "sign",
        b.request_id,
        bytes,
        ErrorCode::BadSignature,
    ));

    // Signed by an initiator the manifest does not list, and as alice by another key.
    let mallory = InitiatorKey::generate("mallory").unwrap();
    let b = body(b"from mallory");
    let bytes = signed_by(&mallory, &b);
    crafted.push((
        "unknown initiator",
        "sign",
        b.request_id,
        bytes,
        ErrorCode::UnknownInitiator,
    ));
    let impostor = InitiatorKey::generate("alice").unwrap();
    let b = body(b"from an impostor");
    let bytes = signed_by(&impostor, &b);
    crafted.push((
        "alice's name, another key",
        "sign",
        b.request_id,
        bytes,
        ErrorCode::BadSignature,
    ));

    // Malformed but routable: a signed body of the wrong shape (no key id, no schemes, no
    // payload, no nonce, no times).
    let b = body(b"wrong shape");
    let shape = serde_json::json!({
        "version": 1,
        "request_id": b.request_id,
        "kind": "sign",
        "client_id": "app",
    });
    let bytes = alice
        .sign_body_bytes(serde_json::to_vec(&shape).unwrap())
        .to_json();
    crafted.push((
        "wrong shape",
        "sign",
        b.request_id,
        bytes,
        ErrorCode::Malformed,
    ));

    // A valid sign request on the keygen subject.
    let b = body(b"wrong subject");
    let bytes = signed_by(&alice, &b);
    crafted.push((
        "wrong subject",
        "keygen",
        b.request_id,
        bytes,
        ErrorCode::InvalidRequest,
    ));

    for (_, kind, request_id, bytes, _) in &crafted {
        cluster
            .publish_request(kind, request_id, bytes.clone())
            .await;
    }
    for (what, _, request_id, _, code) in &crafted {
        refused_by_all(&mut results, request_id, *code, what).await;
    }

    // Unroutable: not JSON, a wrapper of the wrong shape, a body that is not JSON. Nothing can
    // be answered; each node logs the refusal and carries on.
    let unroutable: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        serde_json::to_vec(&serde_json::json!({"initiator": "alice", "body": 7})).unwrap(),
        alice.sign_body_bytes(b"\x00 not a body".to_vec()).to_json(),
    ];
    for (i, bytes) in unroutable.iter().enumerate() {
        cluster
            .publish_request("sign", &format!("unroutable-{i}"), bytes.clone())
            .await;
    }
    // A good request after all of them: signed, by nodes that are all still there.
    let good = body(b"after the refusals");
    let good_id = good.request_id.clone();
    signature_of(client.submit(good).await.unwrap().wait(WAIT).await);
    let malformed_logged = |log: &str| {
        log.lines()
            .filter(|l| l.contains("request refused at intake") && l.contains("code=\"malformed\""))
            .count()
    };
    let deadline = std::time::Instant::now() + WAIT;
    for i in 0..3 {
        // The wrong-shape request was malformed too: four in all.
        while malformed_logged(&cluster.log(i)) < 4 {
            assert!(
                std::time::Instant::now() < deadline,
                "node{i} did not log the unroutable requests as malformed:\n{}",
                cluster.log(i)
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    // Nothing was signed for any refused request: read on until the good request's two
    // signers answered, each refused request still has exactly its three refusals.
    results.until_ok(&good_id, 2).await;
    for (what, _, request_id, _, _) in &crafted {
        let got = results.of(request_id);
        assert!(
            got.len() == 3
                && got
                    .iter()
                    .all(|r| r.status == Status::Refused && r.signature.is_none()),
            "{what}: {}",
            describe(got.iter().copied())
        );
    }
    assert_eq!(
        results.of(&id).len(),
        5,
        "the replayed request: nothing more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_sign_refusals_for_digests_a_scheme_cannot_sign() {
    let (cluster, client, mut results, _) = ed25519_cluster(Cluster::builder(3)).await;
    // The wallet gets a BIP-340 key as well (a new scheme under the same id).
    client
        .keygen(WALLET, &[Scheme::SchnorrSecp256k1], 2, WAIT)
        .await
        .expect("schnorr keygen");
    let digest_request = |scheme: Scheme, digest: &[u8]| {
        let mut body = sign_body(&client, scheme, digest, &[]);
        body.payload_kind = Some(PayloadKind::Digest);
        body
    };
    // A digest that is not 32 bytes never leaves the client: the SDK checks the body as the
    // nodes' intake does (tests/intake.rs covers the nodes' side of it).
    for len in [31, 33] {
        let refused = client
            .submit(digest_request(Scheme::SchnorrSecp256k1, &vec![7; len]))
            .await;
        assert!(
            matches!(&refused, Err(SdkError::Request(_))),
            "{len}-byte digest: {refused:?}"
        );
    }
    // Ed25519 signs messages: a digest request for it reaches the nodes and each refuses it.
    let body = digest_request(Scheme::Ed25519, &[7; 32]);
    let request_id = body.request_id.clone();
    let _pending = client.submit(body).await.unwrap();
    refused_by_all(
        &mut results,
        &request_id,
        ErrorCode::InvalidRequest,
        "a digest for Ed25519",
    )
    .await;
    // A well-formed raw digest is signed as sent (not hashed again), and verifies.
    let digest = [9u8; 32];
    let body = digest_request(Scheme::SchnorrSecp256k1, &digest);
    let signed = signature_of(client.submit(body).await.unwrap().wait(WAIT).await);
    assert_eq!(signed.signature.digest_or_message, digest);
    let key = k256::schnorr::VerifyingKey::from_bytes(&signed.signature.public_key).unwrap();
    key.verify_raw(
        &digest,
        &k256::schnorr::Signature::try_from(&signed.signature.signature[..]).unwrap(),
    )
    .expect("the raw digest's signature verifies (k256)");
    drop(cluster);
}
