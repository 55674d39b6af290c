//! Intake of requests: signed by a known initiator, for this cluster, on the right subject,
//! in time and never seen — or refused with a stable code and a signed refusal result.

use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use keyrack_client::codes::ErrorCode;
use keyrack_client::manifest::{Admin, Initiator, Manifest, SignedManifest, VerifiedManifest};
use keyrack_client::request::{InitiatorKey, RequestBody, RequestKind, SignedRequest};
use keyrack_client::result::Status;
use keyrack_client::scheme::Scheme;
use keyrack_client::subjects;
use keyrack_node::identity::NodeIdentity;
use keyrack_node::intake::{intake, refusal_result, Intake, IntakeLimits};
use keyrack_node::store::Store;

const CLUSTER: &str = "c1";

struct Fixture {
    node: NodeIdentity,
    manifest: VerifiedManifest,
    alice: InitiatorKey,
    store: Store,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let node = NodeIdentity::generate("node0").unwrap();
    let others: Vec<NodeIdentity> = ["node1", "node2"]
        .iter()
        .map(|n| NodeIdentity::generate(n).unwrap())
        .collect();
    let alice = InitiatorKey::generate("alice").unwrap();
    let admin = SigningKey::from_bytes(&[5; 32]);
    let mut nodes = vec![node.public().unwrap()];
    nodes.extend(others.iter().map(|n| n.public().unwrap()));
    let manifest = Manifest {
        cluster_id: CLUSTER.into(),
        version: 1,
        previous: None,
        admin_threshold: 1,
        nodes,
        initiators: vec![Initiator {
            id: "alice".into(),
            public_key: alice.public_key(),
            roles: vec!["backend".into()],
        }],
        admins: vec![Admin {
            id: "admin0".into(),
            public_key: admin.verifying_key(),
        }],
    };
    let mut signed = SignedManifest::new(manifest).unwrap();
    signed.sign(&admin).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("node0.db"), CLUSTER, "node0").unwrap();
    Fixture {
        node,
        manifest: signed.verify_bootstrap().unwrap(),
        alice,
        store,
        _dir: dir,
    }
}

impl Fixture {
    fn intake(&self, bytes: &[u8], subject: &str) -> Intake {
        intake(
            bytes,
            subject,
            &self.manifest,
            &self.store,
            SystemTime::now(),
            IntakeLimits::default(),
        )
    }

    /// The refusal of `bytes` arriving on the keygen subject.
    fn refusal(&self, bytes: &[u8]) -> keyrack_node::intake::Refusal {
        refused(self.intake(bytes, &subject()))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn keygen_body(created_ms: u64) -> RequestBody {
    let mut body = RequestBody::new(
        RequestKind::Keygen,
        CLUSTER,
        "wallet-1",
        "app",
        created_ms,
        60_000,
    );
    body.schemes = vec![Scheme::Ed25519];
    body.threshold = Some(2);
    body
}

fn subject() -> String {
    subjects::request_subject(CLUSTER, "keygen").unwrap()
}

fn refused(outcome: Intake) -> keyrack_node::intake::Refusal {
    match outcome {
        Intake::Refused(r) => r,
        Intake::Accepted(r) => panic!("accepted {:?}", r.body.request_id),
    }
}

#[test]
fn a_good_request_is_accepted_once_and_its_replay_refused() {
    let f = fixture();
    let bytes = f
        .alice
        .sign_request(&keygen_body(now_ms()))
        .unwrap()
        .to_json();
    let now = SystemTime::now();
    match f.intake(&bytes, &subject()) {
        Intake::Accepted(r) => assert_eq!(
            (r.initiator.as_str(), r.body.key_id.as_str()),
            ("alice", "wallet-1")
        ),
        Intake::Refused(r) => panic!("refused: {r:?}"),
    }
    let again = f.refusal(&bytes);
    assert_eq!(again.code, ErrorCode::Replayed);
    // The refusal is signed by the node and answers exactly this request.
    let result = refusal_result(&again, &f.node, now).expect("routable");
    let body = result.verify(&f.node.public().unwrap()).unwrap();
    assert_eq!(
        (body.status, body.code),
        (Status::Refused, Some(ErrorCode::Replayed))
    );
    assert!(body.answers(&SignedRequest::parse(&bytes).unwrap()));
}

#[test]
fn expired_early_and_long_lived_requests_are_refused() {
    let f = fixture();
    let old = f
        .alice
        .sign_request(&keygen_body(now_ms() - 120_000))
        .unwrap()
        .to_json();
    assert_eq!(f.refusal(&old).code, ErrorCode::Expired);
    let future = f
        .alice
        .sign_request(&keygen_body(now_ms() + 300_000))
        .unwrap()
        .to_json();
    assert_eq!(f.refusal(&future).code, ErrorCode::NotYetValid);
    let mut long = keygen_body(now_ms());
    long.expires_at_ms = long.created_at_ms + 3_600_000;
    let long = f.alice.sign_request(&long).unwrap().to_json();
    assert_eq!(f.refusal(&long).code, ErrorCode::LifetimeTooLong);
}

#[test]
fn tampered_unknown_and_malformed_requests_are_refused_and_nothing_is_recorded() {
    let f = fixture();
    let genuine = f.alice.sign_request(&keygen_body(now_ms())).unwrap();
    // Tampered: same signature, one byte of the body changed (the key id).
    let body = String::from_utf8(genuine.body_bytes().to_vec())
        .unwrap()
        .replace("wallet-1", "wallet-2");
    let mut wrapper: serde_json::Value = serde_json::from_slice(&genuine.to_json()).unwrap();
    wrapper["body"] = serde_json::Value::String(base64_encode(body.as_bytes()));
    let tampered = serde_json::to_vec(&wrapper).unwrap();
    let r = f.refusal(&tampered);
    assert_eq!(r.code, ErrorCode::BadSignature);
    assert!(r.route.is_some(), "the client still hears why");
    // Unknown initiator.
    let mallory = InitiatorKey::generate("mallory").unwrap();
    let unknown = mallory
        .sign_request(&keygen_body(now_ms()))
        .unwrap()
        .to_json();
    assert_eq!(f.refusal(&unknown).code, ErrorCode::UnknownInitiator);
    // A known initiator's id with another key.
    let impostor = InitiatorKey::generate("alice")
        .unwrap()
        .sign_request(&keygen_body(now_ms()))
        .unwrap()
        .to_json();
    assert_eq!(f.refusal(&impostor).code, ErrorCode::BadSignature);
    // Malformed: not a request at all (no route), and a body with an unknown field (routed).
    let garbage = f.refusal(b"{not json");
    assert_eq!(
        (garbage.code, garbage.route.is_none()),
        (ErrorCode::Malformed, true)
    );
    let mut extra: serde_json::Value = serde_json::from_slice(genuine.body_bytes()).unwrap();
    extra["surprise"] = serde_json::Value::Bool(true);
    let extra = f
        .alice
        .sign_body_bytes(serde_json::to_vec(&extra).unwrap())
        .to_json();
    let r = f.refusal(&extra);
    assert_eq!(r.code, ErrorCode::Malformed);
    assert!(r.route.is_some());
    // Right request, wrong subject.
    let sign_subject = subjects::request_subject(CLUSTER, "sign").unwrap();
    let bytes = genuine.to_json();
    assert_eq!(
        refused(f.intake(&bytes, &sign_subject)).code,
        ErrorCode::InvalidRequest
    );
    // None of the refusals consumed the genuine request's id: it is still accepted.
    assert!(matches!(f.intake(&bytes, &subject()), Intake::Accepted(_)));
}

#[test]
fn a_request_for_another_cluster_is_refused() {
    let f = fixture();
    let mut body = keygen_body(now_ms());
    body.cluster_id = "other".into();
    let bytes = f.alice.sign_request(&body).unwrap().to_json();
    let r = refused(f.intake(&bytes, &subject()));
    assert_eq!(r.code, ErrorCode::InvalidRequest, "{r:?}");
    assert!(r.message.contains("other"), "{r:?}");
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
