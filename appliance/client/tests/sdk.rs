//! The SDK against a real nats-server. The test plays the nodes' part honestly: it creates
//! the streams as the nodes do (transport/bus.rs), takes each request from the request
//! stream with its own durable consumer, verifies it, and answers with results signed by
//! the manifest nodes' real identity keys, carrying real signatures made with k256 and
//! ed25519-dalek keys (the SDK checks a signature under the public key in the result).
#![cfg(feature = "sdk")]

mod common;

use async_nats::jetstream::{self, consumer, stream};
use common::{node, CLUSTER};
use futures::StreamExt as _;
use keyrack_client::codes::ErrorCode;
use keyrack_client::request::{PayloadKind, RequestKind, SignedRequest, VerifiedRequest};
use keyrack_client::result::{KeyInfo, KeyStatus, ResultBody, SignatureInfo, SignedResult, Status};
use keyrack_client::scheme::Scheme;
use keyrack_client::sdk::{Client, Outcome, SdkError};
use keyrack_client::subjects;
use sha2::{Digest as _, Sha256};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// A nats-server with JetStream on a free port and its own store directory.
struct NatsServer {
    child: std::process::Child,
    url: String,
    dir: std::path::PathBuf,
}

impl NatsServer {
    fn start() -> Self {
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("nats-server is not installed: run softhsm-setup/install-deps.sh");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("keyrack-sdk-{}-{port}", std::process::id()));
        let child = std::process::Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            dir,
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A nats-server with the cluster's streams and the test's own consumer of requests.
struct Cluster {
    server: NatsServer,
    js: jetstream::Context,
    requests: consumer::Consumer<consumer::pull::Config>,
}

/// One result to publish, with its `Nats-Msg-Id`.
type Answer = (String, SignedResult);

impl Cluster {
    /// Starts a server and creates the streams with the names, subjects and retention the
    /// nodes use (the request stream takes the verdict subjects too, so that the one test
    /// consumer sees every request the client sends).
    async fn start() -> Self {
        let server = NatsServer::start();
        let js = jetstream::new(async_nats::connect(&server.url).await.unwrap());
        let request_stream = js
            .create_stream(stream::Config {
                name: subjects::request_stream(CLUSTER).unwrap(),
                subjects: vec![
                    subjects::request_stream_subjects(CLUSTER).unwrap(),
                    subjects::verdict_stream_subjects(CLUSTER).unwrap(),
                ],
                retention: stream::RetentionPolicy::Interest,
                storage: stream::StorageType::File,
                max_age: Duration::from_secs(24 * 3600),
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .unwrap();
        js.create_stream(stream::Config {
            name: subjects::result_stream(CLUSTER).unwrap(),
            subjects: vec![subjects::result_stream_subjects(CLUSTER).unwrap()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(3600),
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .unwrap();
        let name = subjects::node_consumer("test").unwrap();
        let requests = request_stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(name),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .unwrap();
        Cluster {
            server,
            js,
            requests,
        }
    }

    async fn client(&self) -> Client {
        Client::connect(
            &[&self.server.url],
            CLUSTER,
            "wallet-service",
            common::initiator(),
            common::verified_v1(),
        )
        .await
        .unwrap()
    }

    /// Takes the next request, checks how it was published and its signature, and
    /// publishes what `answer` returns for it, in order.
    fn answer_next<F>(&self, answer: F) -> tokio::task::JoinHandle<()>
    where
        F: FnOnce(&VerifiedRequest) -> Vec<Answer> + Send + 'static,
    {
        let js = self.js.clone();
        let requests = self.requests.clone();
        tokio::spawn(async move {
            let mut batch = requests
                .fetch()
                .max_messages(1)
                .expires(WAIT)
                .messages()
                .await
                .unwrap();
            let message = batch.next().await.expect("a request").unwrap();
            let request = SignedRequest::parse(&message.payload)
                .unwrap()
                .verify_with(&common::verified_v1())
                .unwrap();
            let kind = request.body.kind.as_str();
            assert_eq!(
                message.subject.as_str(),
                subjects::request_subject(CLUSTER, kind).unwrap()
            );
            let msg_id = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id"));
            assert_eq!(
                msg_id.map(|v| v.as_str()),
                Some(request.body.request_id.as_str())
            );
            message.ack().await.unwrap();
            let subject = subjects::result_subject(
                CLUSTER,
                &request.body.client_id,
                &request.body.request_id,
            )
            .unwrap();
            for (msg_id, result) in answer(&request) {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", msg_id.as_str());
                js.publish_with_headers(subject.clone(), headers, result.to_json().into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
        })
    }
}

/// A result body of `node` answering `request`.
fn body(node_id: &str, request: &VerifiedRequest, status: Status) -> ResultBody {
    ResultBody {
        version: 1,
        request_id: request.body.request_id.clone(),
        request_hash: request.hash(),
        node_id: node_id.into(),
        client_id: request.body.client_id.clone(),
        status,
        code: None,
        message: String::new(),
        keys: Vec::new(),
        signature: None,
        signatures: vec![],
        signed_payload: None,
        at_ms: keyrack_client::now_ms(),
    }
}

/// Node `i`'s outcome, signed with its identity key.
fn outcome(i: u8, body: ResultBody) -> Answer {
    let request_id = body.request_id.clone();
    let signed = body.sign(&node(i).signing).unwrap();
    (
        subjects::result_msg_id(&request_id, &node(i).id).unwrap(),
        signed,
    )
}

/// Node `i` refuses or fails `request` with `code`.
fn refusal(i: u8, request: &VerifiedRequest, status: Status, code: ErrorCode) -> Answer {
    let mut b = body(&node(i).id, request, status);
    b.code = Some(code);
    b.message = format!("test says {code}");
    let signed = b.sign(&node(i).signing).unwrap();
    let msg_id = subjects::refusal_msg_id(&b.request_id, &b.node_id, code).unwrap();
    (msg_id, signed)
}

/// The public key of the test key `seed` of `scheme`.
fn public_key(scheme: Scheme, seed: u8) -> Vec<u8> {
    match scheme {
        Scheme::EcdsaSecp256k1 => k256::ecdsa::SigningKey::from_slice(&[seed; 32])
            .unwrap()
            .verifying_key()
            .to_encoded_point(true)
            .as_bytes()
            .to_vec(),
        Scheme::Ed25519 => ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
            .verifying_key()
            .to_bytes()
            .to_vec(),
        Scheme::SchnorrSecp256k1 => k256::schnorr::SigningKey::from_bytes(&[seed; 32])
            .unwrap()
            .verifying_key()
            .to_bytes()
            .to_vec(),
    }
}

/// Node `i` reports the keys asked by a keygen request, made from the test key `seed`.
fn keygen_ok(i: u8, request: &VerifiedRequest, seed: u8) -> Answer {
    let mut b = body(&node(i).id, request, Status::Ok);
    b.keys = request
        .body
        .schemes
        .iter()
        .map(|scheme| KeyInfo {
            key_id: request.body.key_id.clone(),
            scheme: *scheme,
            public_key: public_key(*scheme, seed),
            chain_code: [seed; 32],
            threshold: request.body.threshold.unwrap(),
            participants: (0..3).map(|n| node(n).id).collect(),
            version: 1,
            status: None,
        })
        .collect();
    outcome(i, b)
}

/// A real signature of `message` (what the scheme's verifier takes) by the test key `seed`.
fn signature(scheme: Scheme, seed: u8, message: &[u8], path: &[u32]) -> SignatureInfo {
    let mut info = SignatureInfo {
        scheme,
        digest_or_message: message.to_vec(),
        derivation_path: path.to_vec(),
        public_key: public_key(scheme, seed),
        signature: [0; 64],
        r: None,
        s: None,
        v: None,
    };
    match scheme {
        Scheme::EcdsaSecp256k1 => {
            let key = k256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
            let (sig, v) = key.sign_prehash_recoverable(message).unwrap();
            assert!(sig.normalize_s().is_none(), "k256 signs with low s");
            info.signature = sig.to_bytes().into();
            info.r = info.signature[..32].try_into().ok();
            info.s = info.signature[32..].try_into().ok();
            info.v = Some(v.to_byte());
        }
        Scheme::Ed25519 => {
            use ed25519_dalek::Signer as _;
            let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
            info.signature = key.sign(message).to_bytes();
        }
        Scheme::SchnorrSecp256k1 => {
            let key = k256::schnorr::SigningKey::from_bytes(&[seed; 32]).unwrap();
            info.signature = key.sign_raw(message, &[7; 32]).unwrap().to_bytes();
        }
    }
    info
}

/// What the scheme's verifier takes for a sign request: the payload as given for a digest;
/// else SHA-256 of it for secp256k1 and the message itself for Ed25519.
fn signed_message(request: &VerifiedRequest) -> Vec<u8> {
    let payload = request.body.payload.clone().unwrap();
    match (request.body.payload_kind, request.body.schemes[0]) {
        (Some(PayloadKind::Digest), _) | (_, Scheme::Ed25519) => payload,
        _ => Sha256::digest(&payload).to_vec(),
    }
}

/// Node `i` returns a real signature by the test key `seed` over what `request` asks.
fn sign_ok(i: u8, request: &VerifiedRequest, seed: u8) -> Answer {
    let mut b = body(&node(i).id, request, Status::Ok);
    b.signature = Some(signature(
        request.body.schemes[0],
        seed,
        &signed_message(request),
        &request.body.derivation_path,
    ));
    outcome(i, b)
}

const KEY_SEED: u8 = 0x51;

#[tokio::test]
async fn keygen_completes_when_every_node_reports_the_same_keys() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| (0..3).map(|i| keygen_ok(i, r, KEY_SEED)).collect());
    let schemes = [Scheme::Ed25519, Scheme::EcdsaSecp256k1];
    let agreed = client.keygen("wallet-1", &schemes, 2, WAIT).await.unwrap();
    nodes.await.unwrap();
    assert_eq!(agreed.nodes, ["node0", "node1", "node2"]);
    let reported: Vec<_> = agreed.keys.iter().map(|k| k.scheme).collect();
    assert_eq!(reported, [Scheme::EcdsaSecp256k1, Scheme::Ed25519]);
    for k in &agreed.keys {
        assert_eq!(k.public_key, public_key(k.scheme, KEY_SEED));
        assert_eq!((k.key_id.as_str(), k.threshold), ("wallet-1", 2));
    }
    assert_eq!(agreed.ignored.total(), 0);
}

#[tokio::test]
async fn a_request_gets_its_results_after_the_client_that_published_it_was_dropped() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let pending = client
        .submit(client.keygen_body("wallet-1", &[Scheme::Ed25519], 2, WAIT))
        .await
        .unwrap();
    drop(client);
    // The nodes answer only now, with the client gone.
    let nodes = cluster.answer_next(|r| (0..3).map(|i| keygen_ok(i, r, KEY_SEED)).collect());
    match pending.wait(WAIT).await {
        Ok(Outcome::Keys(agreed)) => {
            assert_eq!(agreed.nodes, ["node0", "node1", "node2"]);
            assert_eq!(
                agreed.keys[0].public_key,
                public_key(Scheme::Ed25519, KEY_SEED)
            );
        }
        other => panic!("the keygen's outcome: {other:?}"),
    }
    nodes.await.unwrap();
}

#[tokio::test]
async fn a_rejection_is_acknowledged_once_every_node_recorded_it() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let rejected = [0x3c; 32];
    let nodes = cluster.answer_next(move |r| {
        assert_eq!(r.body.kind, RequestKind::Reject);
        assert_eq!((r.body.rejects, r.body.approves), (Some(rejected), None));
        assert!(r.body.schemes.is_empty());
        (0..3)
            .map(|i| {
                let mut b = body(&node(i).id, r, Status::Ok);
                b.message = format!("rejection by 'backend' recorded at node{i}");
                outcome(i, b)
            })
            .collect()
    });
    let acknowledged = client
        .reject(rejected, Duration::from_secs(60), WAIT)
        .await
        .unwrap();
    nodes.await.unwrap();
    let mut who: Vec<_> = acknowledged
        .answers
        .iter()
        .map(|a| a.node.as_str())
        .collect();
    who.sort_unstable();
    assert_eq!(who, ["node0", "node1", "node2"]);
}

#[tokio::test]
async fn a_rejection_refused_by_a_node_fails_naming_it() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| {
        vec![
            outcome(0, body(&node(0).id, r, Status::Ok)),
            refusal(1, r, Status::Refused, ErrorCode::NotAuthorized),
        ]
    });
    let err = client
        .reject([0x3d; 32], Duration::from_secs(60), WAIT)
        .await
        .unwrap_err();
    nodes.await.unwrap();
    assert!(
        matches!(&err, SdkError::Refused { code: ErrorCode::NotAuthorized, node, .. } if node == "node1"),
        "{err:?}"
    );
}

#[tokio::test]
async fn keygen_times_out_listing_who_answered_while_a_node_is_silent() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| (0..2).map(|i| keygen_ok(i, r, KEY_SEED)).collect());
    let schemes = [Scheme::Ed25519];
    let err = client
        .keygen("wallet-1", &schemes, 2, Duration::from_millis(1500))
        .await
        .unwrap_err();
    nodes.await.unwrap();
    let SdkError::Timeout {
        answered, silent, ..
    } = &err
    else {
        panic!("expected a timeout, got {err}");
    };
    let answered: Vec<_> = answered.iter().map(|a| a.node.as_str()).collect();
    assert_eq!(answered, ["node0", "node1"]);
    assert_eq!(silent, &["node2"]);
    let shown = err.to_string();
    assert!(shown.contains("node0 (ok), node1 (ok)") && shown.contains("silent: node2"));
}

#[tokio::test]
async fn keygen_names_the_node_that_disagrees() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| {
        vec![
            keygen_ok(0, r, KEY_SEED),
            keygen_ok(1, r, KEY_SEED),
            keygen_ok(2, r, KEY_SEED + 1),
        ]
    });
    let err = client
        .keygen("wallet-1", &[Scheme::SchnorrSecp256k1], 2, WAIT)
        .await
        .unwrap_err();
    nodes.await.unwrap();
    let SdkError::Disagreement { groups } = &err else {
        panic!("expected a disagreement, got {err}");
    };
    let nodes: Vec<_> = groups.iter().map(|g| g.nodes.join(",")).collect();
    assert_eq!(nodes, ["node0,node1", "node2"]);
    assert!(err.to_string().contains("node2 report"), "{err}");
}

#[tokio::test]
async fn keygen_reports_a_refusal_with_its_code_and_node() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| {
        vec![
            keygen_ok(0, r, KEY_SEED),
            refusal(1, r, Status::Refused, ErrorCode::KeyInProgress),
        ]
    });
    let err = client
        .keygen("wallet-1", &[Scheme::Ed25519], 2, WAIT)
        .await
        .unwrap_err();
    nodes.await.unwrap();
    match err {
        SdkError::Refused { node, code, .. } => {
            assert_eq!((node.as_str(), code), ("node1", ErrorCode::KeyInProgress))
        }
        other => panic!("expected a refusal, got {other}"),
    }
}

#[tokio::test]
async fn sign_returns_a_verified_signature_for_each_scheme() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let cases = [
        (Scheme::EcdsaSecp256k1, PayloadKind::Message, vec![]),
        (Scheme::EcdsaSecp256k1, PayloadKind::Digest, vec![0, 7]),
        (Scheme::Ed25519, PayloadKind::Message, vec![3]),
        (Scheme::SchnorrSecp256k1, PayloadKind::Digest, vec![]),
    ];
    for (scheme, kind, path) in cases {
        let payload = [0x42u8; 32];
        // One node is busy (tolerated: n - t = 1), another signs.
        let nodes = cluster.answer_next(|r| {
            vec![
                refusal(0, r, Status::Refused, ErrorCode::Busy),
                sign_ok(2, r, KEY_SEED),
            ]
        });
        let signed = client
            .sign("wallet-1", scheme, &payload, kind, &path, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{scheme} {kind:?}: {e}"));
        nodes.await.unwrap();
        assert_eq!(signed.node, "node2");
        assert_eq!(signed.tolerated.len(), 1);
        assert_eq!(signed.signature.public_key, public_key(scheme, KEY_SEED));
        assert_eq!(signed.signature.derivation_path, path);
    }
}

#[tokio::test]
async fn sign_fails_naming_the_node_whose_signature_does_not_verify() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    for scheme in Scheme::ALL {
        let nodes = cluster.answer_next(move |r| {
            let mut b = body("node1", r, Status::Ok);
            // A real signature, but over another message than the one reported.
            let mut s = signature(scheme, KEY_SEED, &[9; 32], &[]);
            s.digest_or_message = signed_message(r);
            b.signature = Some(s);
            vec![outcome(1, b), sign_ok(2, r, KEY_SEED)]
        });
        let err = client
            .sign(
                "wallet-1",
                scheme,
                b"pay 1 btc",
                PayloadKind::Message,
                &[],
                WAIT,
            )
            .await
            .unwrap_err();
        nodes.await.unwrap();
        assert!(
            matches!(&err, SdkError::BadSignature { node, .. } if node == "node1"),
            "{scheme}: {err}"
        );
    }
}

#[tokio::test]
async fn a_valid_signature_over_another_message_than_the_one_sent_is_refused() {
    // node1 signs (validly, under its reported key) a message the client never sent.
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    for scheme in Scheme::ALL {
        let nodes = cluster.answer_next(move |r| {
            let mut b = body("node1", r, Status::Ok);
            b.signature = Some(signature(scheme, KEY_SEED, &[7; 32], &[]));
            vec![outcome(1, b), sign_ok(2, r, KEY_SEED)]
        });
        let err = client
            .sign(
                "wallet-1",
                scheme,
                b"pay 1 btc",
                PayloadKind::Message,
                &[],
                WAIT,
            )
            .await
            .unwrap_err();
        nodes.await.unwrap();
        assert!(
            matches!(&err, SdkError::InvalidResult { node, reason } if node == "node1" && reason.contains("another message")),
            "{scheme}: {err}"
        );
    }
}

#[tokio::test]
async fn results_for_a_forged_copy_of_the_request_are_ignored() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| {
        // Node 0 refuses a tampered copy of the request (same id, other bytes) first.
        let mut forged = body("node0", r, Status::Refused);
        forged.request_hash = Sha256::digest([r.body_bytes.as_slice(), b" "].concat()).into();
        forged.code = Some(ErrorCode::BadSignature);
        let forged = forged.sign(&node(0).signing).unwrap();
        let msg_id = subjects::refusal_msg_id(&r.body.request_id, "node0", ErrorCode::BadSignature);
        vec![(msg_id.unwrap(), forged), sign_ok(0, r, KEY_SEED)]
    });
    let signed = client
        .sign(
            "wallet-1",
            Scheme::Ed25519,
            b"hello",
            PayloadKind::Message,
            &[],
            WAIT,
        )
        .await
        .unwrap();
    nodes.await.unwrap();
    assert_eq!(signed.node, "node0");
    assert_eq!(signed.ignored.other_request, 1);
    assert!(
        signed.tolerated.is_empty(),
        "the forged refusal did not count"
    );
}

#[tokio::test]
async fn results_signed_by_non_members_are_ignored() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| {
        let outsider = node(9);
        let foreign = body(&outsider.id, r, Status::Ok);
        let foreign = foreign.sign(&outsider.signing).unwrap();
        // The outsider's key, claiming to be node1.
        let mut impostor = body("node1", r, Status::Refused);
        impostor.code = Some(ErrorCode::UnknownKey);
        let impostor = impostor.sign(&outsider.signing).unwrap();
        let mut answers = vec![
            (format!("{}.node9", r.body.request_id), foreign),
            (format!("{}.node1.x", r.body.request_id), impostor),
        ];
        answers.extend((0..3).map(|i| keygen_ok(i, r, KEY_SEED)));
        answers
    });
    let agreed = client
        .keygen("wallet-1", &[Scheme::Ed25519], 3, WAIT)
        .await
        .unwrap();
    nodes.await.unwrap();
    assert_eq!(agreed.nodes, ["node0", "node1", "node2"]);
    assert_eq!(agreed.ignored.unknown_node, 1);
    assert_eq!(agreed.ignored.bad_node_signature, 1);
}

#[tokio::test]
async fn connect_says_the_nodes_have_not_started_when_the_streams_are_missing() {
    let server = NatsServer::start();
    let err = Client::connect(
        &[&server.url],
        CLUSTER,
        "wallet-service",
        common::initiator(),
        common::verified_v1(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, SdkError::StreamsMissing { stream, .. } if stream == "KEYRACK_REQ_test-cluster"),
        "{err}"
    );
    assert!(err.to_string().contains("nodes have not started"), "{err}");
}

#[tokio::test]
async fn sign_fails_once_more_than_n_minus_t_nodes_refuse() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| {
        vec![
            refusal(1, r, Status::Refused, ErrorCode::UnknownKey),
            refusal(0, r, Status::Failed, ErrorCode::HsmFailure),
        ]
    });
    let err = client
        .sign(
            "nope",
            Scheme::Ed25519,
            b"x",
            PayloadKind::Message,
            &[],
            WAIT,
        )
        .await
        .unwrap_err();
    nodes.await.unwrap();
    assert!(
        matches!(&err, SdkError::Refused { node, code: ErrorCode::UnknownKey, .. } if node == "node1"),
        "{err}"
    );
}

#[tokio::test]
async fn a_replayed_refusal_of_the_same_bytes_is_not_a_nodes_final_answer() {
    // Someone re-published the client's exact request: every node refuses that copy as
    // `replayed` (same bytes, same hash) while it answers the original.
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| {
        let mut answers: Vec<Answer> = (0..3)
            .map(|i| refusal(i, r, Status::Refused, ErrorCode::Replayed))
            .collect();
        answers.extend((0..3).map(|i| keygen_ok(i, r, KEY_SEED)));
        answers
    });
    let agreed = client
        .keygen("wallet-1", &[Scheme::EcdsaSecp256k1], 2, WAIT)
        .await
        .unwrap();
    nodes.await.unwrap();
    assert_eq!(agreed.nodes.len(), 3);
}

/// Node `i` reports one key of `request` (a status request) with `status`.
fn status_ok(i: u8, request: &VerifiedRequest, status: KeyStatus) -> Answer {
    let mut b = body(&node(i).id, request, Status::Ok);
    b.keys = vec![KeyInfo {
        key_id: request.body.key_id.clone(),
        scheme: Scheme::Ed25519,
        public_key: public_key(Scheme::Ed25519, KEY_SEED),
        chain_code: [KEY_SEED; 32],
        threshold: 2,
        participants: (0..3).map(|n| node(n).id).collect(),
        version: 1,
        status: Some(status),
    }];
    outcome(i, b)
}

#[tokio::test]
async fn key_status_reports_each_nodes_view_and_names_the_silent_node() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| {
        assert_eq!(r.body.kind, RequestKind::Status);
        assert_eq!(r.body.schemes, [Scheme::Ed25519]);
        // node0 READY, node1 refuses, node2 stays silent.
        vec![
            status_ok(0, r, KeyStatus::Ready),
            refusal(1, r, Status::Refused, ErrorCode::Expired),
        ]
    });
    let report = client
        .key_status("wallet-1", &[Scheme::Ed25519], Duration::from_millis(1500))
        .await
        .unwrap();
    nodes.await.unwrap();
    let answers: Vec<_> = report
        .nodes
        .iter()
        .map(|n| (n.answer.node.as_str(), n.answer.code))
        .collect();
    assert_eq!(
        answers,
        [("node0", None), ("node1", Some(ErrorCode::Expired))]
    );
    assert_eq!(report.nodes[0].keys[0].status, Some(KeyStatus::Ready));
    assert!(report.nodes[1].keys.is_empty());
    assert_eq!(report.missing, ["node2"]);
}

#[tokio::test]
async fn key_status_completes_when_every_node_answered_even_if_they_differ() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| {
        let mut pending = body(&node(2).id, r, Status::Ok);
        pending.keys = vec![KeyInfo {
            key_id: r.body.key_id.clone(),
            scheme: Scheme::Ed25519,
            public_key: vec![],
            chain_code: [0; 32],
            threshold: 2,
            participants: (0..3).map(|n| node(n).id).collect(),
            version: 1,
            status: Some(KeyStatus::Pending),
        }];
        vec![
            status_ok(1, r, KeyStatus::Ready),
            outcome(2, pending),
            // node0 has no such key.
            outcome(0, body(&node(0).id, r, Status::Ok)),
        ]
    });
    // Long enough that only every node answering can end it in time.
    let started = std::time::Instant::now();
    let report = client.key_status("wallet-1", &[], WAIT).await.unwrap();
    nodes.await.unwrap();
    assert!(started.elapsed() < WAIT);
    assert!(report.missing.is_empty());
    let statuses: Vec<_> = report
        .nodes
        .iter()
        .map(|n| n.keys.first().and_then(|k| k.status))
        .collect();
    assert_eq!(
        statuses,
        [None, Some(KeyStatus::Ready), Some(KeyStatus::Pending)]
    );
}

#[tokio::test]
async fn key_status_times_out_when_no_node_answers() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|_| vec![]);
    let err = client
        .key_status("wallet-1", &[], Duration::from_millis(800))
        .await
        .unwrap_err();
    nodes.await.unwrap();
    assert!(
        matches!(&err, SdkError::Timeout { silent, .. } if silent.len() == 3),
        "{err}"
    );
}

#[tokio::test]
async fn key_status_names_a_node_that_reports_another_key() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| {
        let mut b = body(&node(1).id, r, Status::Ok);
        b.keys = vec![KeyInfo {
            key_id: "wallet-2".into(),
            scheme: Scheme::Ed25519,
            public_key: public_key(Scheme::Ed25519, KEY_SEED),
            chain_code: [KEY_SEED; 32],
            threshold: 2,
            participants: (0..3).map(|n| node(n).id).collect(),
            version: 1,
            status: Some(KeyStatus::Ready),
        }];
        vec![outcome(1, b)]
    });
    let err = client.key_status("wallet-1", &[], WAIT).await.unwrap_err();
    nodes.await.unwrap();
    assert!(
        matches!(&err, SdkError::InvalidResult { node, reason } if node == "node1" && reason.contains("wallet-2")),
        "{err}"
    );
}

#[tokio::test]
async fn results_of_reads_back_every_checked_result_of_an_earlier_request() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| {
        // node1's signature does not verify; an outsider's result does not count; node2
        // publishes nothing (it stood down).
        let mut bad = body("node1", r, Status::Ok);
        let mut s = signature(Scheme::Ed25519, KEY_SEED, &[9; 32], &[]);
        s.digest_or_message = signed_message(r);
        bad.signature = Some(s);
        let outsider = node(9);
        let foreign = body(&outsider.id, r, Status::Ok)
            .sign(&outsider.signing)
            .unwrap();
        vec![
            sign_ok(0, r, KEY_SEED),
            outcome(1, bad),
            (format!("{}.node9", r.body.request_id), foreign),
        ]
    });
    let body = client.sign_body(
        "wallet-1",
        Scheme::Ed25519,
        b"hello",
        PayloadKind::Message,
        &[],
        WAIT,
    );
    let request_id = body.request_id.clone();
    client.submit(body).await.unwrap().wait(WAIT).await.unwrap();
    nodes.await.unwrap();

    // Another client process, later: the same client id reads the results back.
    let later = cluster.client().await;
    let results = later.results_of(&request_id, WAIT).await.unwrap();
    assert_eq!(results.request_id, request_id);
    assert_eq!(results.count(), 2);
    assert_eq!(results.ignored.unknown_node, 1);
    let by_node: Vec<_> = results.nodes.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(by_node, ["node0", "node1", "node2"]);
    let check = |i: usize| results.nodes[i].answer().unwrap().signature_check.clone();
    assert_eq!(check(0), Some(Ok(())));
    assert!(matches!(check(1), Some(Err(why)) if why.contains("verification failed")));
    assert!(results.nodes[2].answer().is_none());

    // A request nobody answered: every node is without a result.
    let none = later
        .results_of("0123456789abcdef0123456789abcdef", WAIT)
        .await
        .unwrap();
    assert_eq!(none.count(), 0);
    // Not a request id: refused before NATS is asked.
    assert!(matches!(
        later.results_of("not-an-id", WAIT).await,
        Err(SdkError::Config(_))
    ));
}

/// The ids of nodes `indexes`, in that order.
fn ids(indexes: &[u8]) -> Vec<String> {
    indexes.iter().map(|i| node(*i).id).collect()
}

/// Node `i` reports the keys of a reshare or refresh, made from the test key `seed`:
/// threshold `t`, committee `committee` (node indexes, in key-index order), `version`.
fn reshared(
    i: u8,
    request: &VerifiedRequest,
    seed: u8,
    t: u16,
    committee: &[u8],
    version: u32,
) -> Answer {
    let mut b = body(&node(i).id, request, Status::Ok);
    b.keys = request
        .body
        .schemes
        .iter()
        .map(|scheme| KeyInfo {
            key_id: request.body.key_id.clone(),
            scheme: *scheme,
            public_key: public_key(*scheme, seed),
            chain_code: [seed; 32],
            threshold: t,
            participants: ids(committee),
            version,
            status: None,
        })
        .collect();
    outcome(i, b)
}

/// Node `i` answers `ok` with no keys: not concerned (reshare, refresh), or deleted (delete).
fn ok_without_keys(i: u8, request: &VerifiedRequest) -> Answer {
    outcome(i, body(&node(i).id, request, Status::Ok))
}

#[tokio::test]
async fn reshare_completes_listing_the_nodes_not_concerned() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    // The new committee is node2, node0 (in that key-index order), 2 of 2; node1 is in
    // neither committee (as far as this test's nodes say).
    let nodes = cluster.answer_next(|r| {
        assert_eq!(r.body.kind, RequestKind::Reshare);
        assert_eq!(r.body.threshold, Some(2));
        assert_eq!(r.body.participants.as_deref(), Some(&ids(&[2, 0])[..]));
        vec![
            reshared(2, r, KEY_SEED, 2, &[2, 0], 2),
            ok_without_keys(1, r),
            reshared(0, r, KEY_SEED, 2, &[2, 0], 2),
        ]
    });
    let schemes = [Scheme::Ed25519, Scheme::EcdsaSecp256k1];
    let agreed = client
        .reshare("wallet-1", &schemes, Some(2), Some(ids(&[2, 0])), WAIT)
        .await
        .unwrap();
    nodes.await.unwrap();
    assert_eq!(agreed.nodes, ["node0", "node2"], "manifest order");
    assert_eq!(agreed.uninvolved, ["node1"]);
    let reported: Vec<_> = agreed.keys.iter().map(|k| k.scheme).collect();
    assert_eq!(reported, [Scheme::EcdsaSecp256k1, Scheme::Ed25519]);
    for k in &agreed.keys {
        assert_eq!(k.public_key, public_key(k.scheme, KEY_SEED));
        assert_eq!(k.participants, ["node2", "node0"], "key-index order kept");
        assert_eq!((k.threshold, k.version), (2, 2));
    }
}

#[tokio::test]
async fn refresh_completes_when_every_node_reports_the_new_version() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| {
        assert_eq!(r.body.kind, RequestKind::Refresh);
        assert_eq!(
            (r.body.threshold, r.body.participants.as_ref()),
            (None, None)
        );
        (0..3)
            .map(|i| reshared(i, r, KEY_SEED, 2, &[0, 1, 2], 3))
            .collect()
    });
    let agreed = client
        .refresh("wallet-1", &[Scheme::SchnorrSecp256k1], WAIT)
        .await
        .unwrap();
    nodes.await.unwrap();
    assert_eq!(agreed.nodes, ["node0", "node1", "node2"]);
    assert!(agreed.uninvolved.is_empty());
    assert_eq!(agreed.keys[0].version, 3);
}

#[tokio::test]
async fn reshare_names_the_nodes_that_disagree() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| {
        vec![
            reshared(0, r, KEY_SEED, 2, &[0, 1, 2], 2),
            reshared(1, r, KEY_SEED, 2, &[0, 1, 2], 2),
            // Another committee order is another key-index assignment: a disagreement.
            reshared(2, r, KEY_SEED, 2, &[1, 0, 2], 2),
        ]
    });
    let err = client
        .reshare("wallet-1", &[Scheme::Ed25519], Some(2), None, WAIT)
        .await
        .unwrap_err();
    nodes.await.unwrap();
    let SdkError::Disagreement { groups } = &err else {
        panic!("expected a disagreement, got {err}");
    };
    let nodes: Vec<_> = groups.iter().map(|g| g.nodes.join(",")).collect();
    assert_eq!(nodes, ["node0,node1", "node2"]);
    assert!(err.to_string().contains("node2 report"), "{err}");
}

#[tokio::test]
async fn reshare_fails_naming_a_node_that_reports_another_threshold_or_committee() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    type Report = fn(&VerifiedRequest) -> Answer;
    let cases: [(Report, &str); 4] = [
        (
            |r| reshared(1, r, KEY_SEED, 3, &[0, 1, 2], 2),
            "threshold 3, asked 2",
        ),
        (
            |r| reshared(1, r, KEY_SEED, 2, &[1, 0, 2], 2),
            "committee is node1,node0,node2 (in key-index order), asked node0,node1,node2",
        ),
        (|r| reshared(1, r, KEY_SEED, 2, &[0, 1, 2], 1), "version 1"),
        (
            |r| {
                let mut b = body("node1", r, Status::Ok);
                b.keys = vec![KeyInfo {
                    key_id: "wallet-2".into(),
                    scheme: Scheme::Ed25519,
                    public_key: public_key(Scheme::Ed25519, KEY_SEED),
                    chain_code: [KEY_SEED; 32],
                    threshold: 2,
                    participants: ids(&[0, 1, 2]),
                    version: 2,
                    status: None,
                }];
                outcome(1, b)
            },
            "a key with id 'wallet-2'",
        ),
    ];
    for (report, says) in cases {
        let nodes = cluster.answer_next(move |r| vec![report(r)]);
        let err = client
            .reshare(
                "wallet-1",
                &[Scheme::Ed25519],
                Some(2),
                Some(ids(&[0, 1, 2])),
                WAIT,
            )
            .await
            .unwrap_err();
        nodes.await.unwrap();
        assert!(
            matches!(&err, SdkError::InvalidResult { node, reason } if node == "node1" && reason.contains(says)),
            "{says}: {err}"
        );
    }
}

#[tokio::test]
async fn reshare_fails_when_a_new_committee_member_says_it_is_not_concerned() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| {
        vec![
            reshared(0, r, KEY_SEED, 2, &[0, 1], 2),
            ok_without_keys(1, r),
            ok_without_keys(2, r),
        ]
    });
    let err = client
        .reshare("wallet-1", &[Scheme::Ed25519], None, None, WAIT)
        .await
        .unwrap_err();
    nodes.await.unwrap();
    assert!(
        matches!(&err, SdkError::InvalidResult { node, reason } if node == "node1" && reason.contains("new committee")),
        "{err}"
    );
}

#[tokio::test]
async fn refresh_fails_when_no_node_reports_keys() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| (0..3).map(|i| ok_without_keys(i, r)).collect());
    let err = client
        .refresh("wallet-1", &[Scheme::Ed25519], WAIT)
        .await
        .unwrap_err();
    nodes.await.unwrap();
    assert!(
        matches!(&err, SdkError::NoKeys { nodes } if nodes.len() == 3),
        "{err}"
    );
    assert!(err.to_string().contains("no node reported"), "{err}");
}

#[tokio::test]
async fn reshare_and_refresh_end_at_the_first_refusal_or_failure() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    // node2 stays silent: only the refusal can end the request before WAIT.
    let started = std::time::Instant::now();
    let nodes = cluster.answer_next(|r| {
        vec![
            reshared(0, r, KEY_SEED, 2, &[0, 1, 2], 2),
            refusal(1, r, Status::Refused, ErrorCode::KeyInProgress),
        ]
    });
    let err = client
        .reshare("wallet-1", &[Scheme::Ed25519], Some(2), None, WAIT)
        .await
        .unwrap_err();
    nodes.await.unwrap();
    assert!(
        matches!(&err, SdkError::Refused { node, code: ErrorCode::KeyInProgress, .. } if node == "node1"),
        "{err}"
    );
    let nodes = cluster.answer_next(|r| {
        vec![
            ok_without_keys(2, r),
            refusal(0, r, Status::Failed, ErrorCode::ProtocolFailed),
        ]
    });
    let err = client
        .refresh("wallet-1", &[Scheme::Ed25519], WAIT)
        .await
        .unwrap_err();
    nodes.await.unwrap();
    assert!(
        matches!(&err, SdkError::Failed { node, code: ErrorCode::ProtocolFailed, .. } if node == "node0"),
        "{err}"
    );
    assert!(started.elapsed() < WAIT);
}

#[tokio::test]
async fn reshare_times_out_naming_the_silent_node() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| {
        vec![
            reshared(0, r, KEY_SEED, 2, &[0, 1], 2),
            ok_without_keys(2, r),
        ]
    });
    let err = client
        .reshare(
            "wallet-1",
            &[Scheme::Ed25519],
            Some(2),
            Some(ids(&[0, 1])),
            Duration::from_millis(1500),
        )
        .await
        .unwrap_err();
    nodes.await.unwrap();
    let SdkError::Timeout {
        answered, silent, ..
    } = &err
    else {
        panic!("expected a timeout, got {err}");
    };
    let answered: Vec<_> = answered.iter().map(|a| a.node.as_str()).collect();
    assert_eq!(answered, ["node0", "node2"]);
    assert_eq!(silent, &["node1"]);
    assert!(err.to_string().contains("silent: node1"), "{err}");
}

#[tokio::test]
async fn a_reshare_to_a_committee_outside_the_manifest_is_not_sent() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    for (threshold, participants, says) in [
        (
            None,
            ids(&[0, 7]),
            "participant 'node7' is not a node of the manifest",
        ),
        (None, ids(&[0, 1, 0]), "participant 'node0' listed twice"),
        (Some(1), ids(&[0, 1]), "threshold 1 with 2 nodes"),
        (Some(3), ids(&[0, 1]), "threshold 3 with 2 nodes"),
    ] {
        let err = client
            .reshare(
                "wallet-1",
                &[Scheme::Ed25519],
                threshold,
                Some(participants),
                WAIT,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SdkError::Request(_)) && err.to_string().contains(says),
            "{says}: {err}"
        );
    }
    let mut stream = cluster
        .js
        .get_stream(subjects::request_stream(CLUSTER).unwrap())
        .await
        .unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        0,
        "nothing sent"
    );
}

#[tokio::test]
async fn delete_completes_only_once_every_node_confirmed() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    // Two of three nodes confirm: not deleted everywhere, the silent node is named.
    let nodes = cluster.answer_next(|r| {
        assert_eq!(r.body.kind, RequestKind::Delete);
        vec![ok_without_keys(0, r), ok_without_keys(2, r)]
    });
    let err = client
        .delete("wallet-1", &[Scheme::Ed25519], Duration::from_millis(1500))
        .await
        .unwrap_err();
    nodes.await.unwrap();
    assert!(
        matches!(&err, SdkError::Timeout { silent, .. } if silent == &["node1"]),
        "{err}"
    );
    // A refusal ends it.
    let nodes = cluster.answer_next(|r| {
        vec![
            ok_without_keys(0, r),
            refusal(1, r, Status::Refused, ErrorCode::NotAuthorized),
        ]
    });
    let err = client
        .delete("wallet-1", &[Scheme::Ed25519], WAIT)
        .await
        .unwrap_err();
    nodes.await.unwrap();
    assert!(
        matches!(&err, SdkError::Refused { node, code: ErrorCode::NotAuthorized, .. } if node == "node1"),
        "{err}"
    );
    // Every node confirms.
    let nodes = cluster.answer_next(|r| (0..3).rev().map(|i| ok_without_keys(i, r)).collect());
    let schemes = [Scheme::Ed25519, Scheme::SchnorrSecp256k1];
    let deleted = client.delete("wallet-1", &schemes, WAIT).await.unwrap();
    nodes.await.unwrap();
    assert_eq!(deleted.key_id, "wallet-1");
    assert_eq!(deleted.schemes, schemes);
    assert_eq!(deleted.nodes, ["node0", "node1", "node2"]);
}

#[tokio::test]
async fn keygen_can_reuse_a_deleted_keys_id_when_asked() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| {
        assert!(r.body.reuse_deleted_id, "the flag reached the nodes");
        (0..3).map(|i| keygen_ok(i, r, KEY_SEED)).collect()
    });
    let mut body = client.keygen_body("wallet-1", &[Scheme::Ed25519], 2, WAIT);
    body.reuse_deleted_id = true;
    let outcome = client.request(body, WAIT).await.unwrap();
    nodes.await.unwrap();
    assert!(
        matches!(&outcome, keyrack_client::sdk::Outcome::Keys(k) if k.nodes.len() == 3 && k.uninvolved.is_empty())
    );
}

#[tokio::test]
async fn pending_notices_are_reported_and_the_final_answers_still_count() {
    // Every node says the request waits for approvals, then two sign: the SDK reports each
    // notice once, does not count it as an answer, and returns the signature.
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| {
        let mut answers: Vec<Answer> = (0..3)
            .map(|i| refusal(i, r, Status::Pending, ErrorCode::ApprovalsRequired))
            .collect();
        answers.push(refusal(2, r, Status::Pending, ErrorCode::ApprovalsRequired));
        answers.extend((0..2).map(|i| sign_ok(i, r, KEY_SEED)));
        answers
    });
    let body = client.sign_body(
        "wallet-1",
        Scheme::Ed25519,
        b"pay",
        PayloadKind::Message,
        &[],
        WAIT,
    );
    let mut notices = vec![];
    let outcome = client
        .submit(body)
        .await
        .unwrap()
        .wait_with_notices(WAIT, |a| notices.push((a.node.clone(), a.status, a.code)))
        .await
        .unwrap();
    nodes.await.unwrap();
    assert!(matches!(outcome, Outcome::Signature(_)), "{outcome:?}");
    notices.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        notices,
        (0..3)
            .map(|i| (
                node(i).id.clone(),
                Status::Pending,
                Some(ErrorCode::ApprovalsRequired)
            ))
            .collect::<Vec<_>>(),
        "one notice per node"
    );
}

#[tokio::test]
async fn a_request_refused_after_waiting_for_approvals_fails_with_the_refusal() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes = cluster.answer_next(|r| {
        let mut answers: Vec<Answer> = (0..3)
            .map(|i| refusal(i, r, Status::Pending, ErrorCode::ApprovalsRequired))
            .collect();
        answers.extend((0..2).map(|i| {
            let mut b = body(&node(i).id, r, Status::Refused);
            b.code = Some(ErrorCode::ApprovalsRequired);
            b.message = "rule 'large' needs 2 of 'treasury'".into();
            outcome(i, b)
        }));
        answers
    });
    let err = client
        .sign(
            "wallet-1",
            Scheme::Ed25519,
            b"pay",
            PayloadKind::Message,
            &[],
            WAIT,
        )
        .await
        .unwrap_err();
    nodes.await.unwrap();
    assert!(
        matches!(&err, SdkError::Refused { code: ErrorCode::ApprovalsRequired, message, .. } if message.contains("large")),
        "{err}"
    );
}
