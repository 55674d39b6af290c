mod common;

use common::*;
use keyrack_client::codes::ErrorCode;
use keyrack_client::request::*;
use keyrack_client::scheme::Scheme;
use serde_json::Value;

const NOW: u64 = 1_700_000_000_000;

fn keygen() -> RequestBody {
    let mut b = RequestBody::new(
        RequestKind::Keygen,
        CLUSTER,
        "wallet-1",
        "backend-a",
        NOW,
        60_000,
    );
    b.schemes = vec![Scheme::EcdsaSecp256k1, Scheme::Ed25519];
    b.threshold = Some(2);
    b
}

fn sign() -> RequestBody {
    let mut b = RequestBody::new(
        RequestKind::Sign,
        CLUSTER,
        "wallet-1",
        "backend-a",
        NOW,
        60_000,
    );
    b.schemes = vec![Scheme::EcdsaSecp256k1];
    b.payload = Some(vec![0xab; 40]);
    b.payload_kind = Some(PayloadKind::Message);
    b.derivation_path = vec![0, 7];
    b
}

fn reshare() -> RequestBody {
    let mut b = RequestBody::new(
        RequestKind::Reshare,
        CLUSTER,
        "wallet-1",
        "backend-a",
        NOW,
        60_000,
    );
    b.schemes = vec![Scheme::Ed25519];
    b.threshold = Some(2);
    b.participants = Some(vec!["node0".into(), "node1".into(), "node2".into()]);
    b
}

fn approve() -> RequestBody {
    let mut b = RequestBody::new(
        RequestKind::Approve,
        CLUSTER,
        "wallet-1",
        "backend-a",
        NOW,
        60_000,
    );
    b.approves = Some([5; 32]);
    b
}

fn reject() -> RequestBody {
    let mut b = RequestBody::new(
        RequestKind::Reject,
        CLUSTER,
        "wallet-1",
        "backend-a",
        NOW,
        60_000,
    );
    b.rejects = Some([6; 32]);
    b
}

fn status() -> RequestBody {
    RequestBody::new(
        RequestKind::Status,
        CLUSTER,
        "wallet-1",
        "backend-a",
        NOW,
        60_000,
    )
}

/// The fixed sign request of the golden fixture.
fn golden_sign_body() -> RequestBody {
    let mut b = sign();
    b.request_id = "0123456789abcdef0123456789abcdef".into();
    b.nonce = "fedcba9876543210fedcba9876543210".into();
    b
}

#[test]
fn round_trip() {
    let key = initiator();
    for body in [keygen(), sign(), reshare(), approve(), reject(), status()] {
        let signed = key.sign_request(&body).unwrap();
        let parsed = SignedRequest::parse(&signed.to_json()).unwrap();
        assert_eq!(parsed, signed);
        let v = parsed.verify(&key.public_key()).unwrap();
        assert_eq!(v.body, body);
        assert_eq!(v.initiator, "backend");
        assert_eq!(v.body_bytes, signed.body_bytes());
        assert_eq!(v.hash(), request_hash(signed.body_bytes()));
        let v = parsed.verify_with(&verified_v1()).unwrap();
        assert_eq!(v.body, body);
    }
}

/// Changes a JSON value (numbers +1, strings' last character, lists one element).
fn alter(v: &Value) -> Value {
    match v {
        Value::Number(n) => Value::from(n.as_u64().unwrap() + 1),
        Value::String(s) => {
            let mut s = s.clone();
            let last = s.pop().unwrap();
            s.push(if last == '0' { '1' } else { '0' });
            Value::String(s)
        }
        Value::Array(a) if a.is_empty() => Value::Array(vec![Value::from(1)]),
        Value::Array(a) => Value::Array(a[..a.len() - 1].to_vec()),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn every_field_is_covered_by_the_signature() {
    let key = initiator();
    let mut covered = std::collections::BTreeSet::new();
    for body in [keygen(), sign(), reshare(), approve(), reject(), status()] {
        let signed = key.sign_request(&body).unwrap();
        let text = String::from_utf8(signed.body_bytes().to_vec()).unwrap();
        let Value::Object(fields) = serde_json::from_str::<Value>(&text).unwrap() else {
            panic!()
        };
        for (name, value) in &fields {
            let was = format!("\"{name}\":{}", serde_json::to_string(value).unwrap());
            let now = format!(
                "\"{name}\":{}",
                serde_json::to_string(&alter(value)).unwrap()
            );
            assert!(text.contains(&was), "{was} not found in {text}");
            let forged = with_signature_of(&signed, text.replace(&was, &now).as_bytes());
            let err = forged.verify(&key.public_key()).unwrap_err();
            assert_eq!(err.code(), ErrorCode::BadSignature, "field {name}");
            covered.insert(name.clone());
        }
    }
    let all: std::collections::BTreeSet<String> = [
        "version",
        "request_id",
        "kind",
        "cluster_id",
        "key_id",
        "schemes",
        "threshold",
        "participants",
        "payload",
        "payload_kind",
        "derivation_path",
        "approves",
        "rejects",
        "client_id",
        "nonce",
        "created_at_ms",
        "expires_at_ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(covered, all);
}

#[test]
fn signature_is_over_bytes_not_values() {
    let key = initiator();
    let body = sign();
    let signed = key.sign_request(&body).unwrap();
    // serde_json::Value sorts keys: same values, other bytes.
    let reordered =
        serde_json::to_vec(&serde_json::from_slice::<Value>(signed.body_bytes()).unwrap()).unwrap();
    assert_ne!(reordered, signed.body_bytes());
    let forged = with_signature_of(&signed, &reordered);
    assert!(matches!(
        forged.verify(&key.public_key()),
        Err(RequestError::BadSignature(_))
    ));
    signed.verify(&key.public_key()).unwrap();
    // Field order is free when the signer signs the bytes it sends.
    let resigned = key.sign_body_bytes(reordered);
    assert_eq!(resigned.verify(&key.public_key()).unwrap().body, body);
}

/// `signed`'s initiator and signature, with other body bytes.
fn with_signature_of(signed: &SignedRequest, body: &[u8]) -> SignedRequest {
    let wire: Value = serde_json::from_slice(&signed.to_json()).unwrap();
    let forged = serde_json::json!({
        "initiator": wire["initiator"],
        "body": base64_encode(body),
        "signature": wire["signature"],
    });
    SignedRequest::parse(&serde_json::to_vec(&forged).unwrap()).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn time_checks() {
    let b = sign(); // created NOW, expires NOW + 60 s
    b.check_time(NOW, 5_000, 300_000).unwrap();
    b.check_time(NOW - 5_000, 5_000, 300_000).unwrap();
    assert_eq!(
        b.check_time(NOW - 5_001, 5_000, 300_000)
            .unwrap_err()
            .code(),
        ErrorCode::NotYetValid
    );
    b.check_time(NOW + 59_999, 5_000, 300_000).unwrap();
    assert_eq!(
        b.check_time(NOW + 60_000, 5_000, 300_000)
            .unwrap_err()
            .code(),
        ErrorCode::Expired
    );
    assert_eq!(
        b.check_time(NOW, 5_000, 59_999).unwrap_err().code(),
        ErrorCode::LifetimeTooLong
    );
    b.check_time(NOW, 5_000, 60_000).unwrap();
}

#[test]
fn unknown_initiator_and_wrong_cluster() {
    let stranger = InitiatorKey::from_seed("stranger", &[9; 32]).unwrap();
    let signed = stranger.sign_request(&sign()).unwrap();
    let err = signed.verify_with(&verified_v1()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownInitiator);
    // A known id with someone else's key.
    let impostor = InitiatorKey::from_seed("backend", &[9; 32]).unwrap();
    let err = impostor
        .sign_request(&sign())
        .unwrap()
        .verify_with(&verified_v1())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadSignature);
    let mut other = sign();
    other.cluster_id = "other".into();
    let err = initiator()
        .sign_request(&other)
        .unwrap()
        .verify_with(&verified_v1())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
}

fn body_text(b: &RequestBody) -> String {
    serde_json::to_string(b).unwrap()
}

fn verify_text(text: String) -> Result<VerifiedRequest, RequestError> {
    let key = initiator();
    key.sign_body_bytes(text.into_bytes())
        .verify(&key.public_key())
}

#[test]
fn unknown_duplicate_and_versioned_fields_are_refused() {
    let text = body_text(&sign());
    let extra = text.replacen('{', "{\"memo\":\"x\",", 1);
    assert_eq!(verify_text(extra).unwrap_err().code(), ErrorCode::Malformed);
    let dup = text.replacen('{', "{\"key_id\":\"other\",", 1);
    assert_eq!(verify_text(dup).unwrap_err().code(), ErrorCode::Malformed);
    let v2 = text.replace("\"version\":1", "\"version\":2");
    assert_eq!(
        verify_text(v2).unwrap_err().code(),
        ErrorCode::UnsupportedVersion
    );
    assert_eq!(
        verify_text("[]".into()).unwrap_err().code(),
        ErrorCode::Malformed
    );
    let kind = text.replace("\"kind\":\"sign\"", "\"kind\":\"transfer\"");
    assert_eq!(verify_text(kind).unwrap_err().code(), ErrorCode::Malformed);
    let upper = text.replace(&hex::encode([0xab; 40]), &"AB".repeat(40));
    assert_eq!(verify_text(upper).unwrap_err().code(), ErrorCode::Malformed);
}

#[test]
fn field_rules_are_enforced() {
    let key = initiator();
    let check = |b: RequestBody, code: ErrorCode| {
        assert_eq!(key.sign_request(&b).unwrap_err().code(), code, "{b:?}");
        // The node refuses the same when a client skips validation.
        assert_eq!(verify_text(body_text(&b)).unwrap_err().code(), code);
    };
    let mut b = sign();
    b.payload_kind = Some(PayloadKind::Digest);
    check(b, ErrorCode::InvalidRequest); // 40 bytes is no digest
    let mut b = sign();
    b.derivation_path = vec![1 << 31];
    check(b, ErrorCode::InvalidRequest);
    let mut b = sign();
    b.schemes.push(Scheme::Ed25519);
    check(b, ErrorCode::InvalidRequest);
    let mut b = sign();
    b.threshold = Some(2);
    check(b, ErrorCode::InvalidRequest);
    let mut b = keygen();
    b.threshold = None;
    check(b, ErrorCode::InvalidRequest);
    let mut b = keygen();
    b.threshold = Some(0);
    check(b, ErrorCode::InvalidThreshold);
    let mut b = keygen();
    b.schemes = vec![Scheme::Ed25519, Scheme::Ed25519];
    check(b, ErrorCode::InvalidRequest);
    for client in ["a.b", "a*", ">", "A", ""] {
        let mut b = keygen();
        b.client_id = client.into();
        check(b, ErrorCode::InvalidRequest);
    }
    for key_id in ["", "-x", "a/b", "a b", &"k".repeat(129)] {
        let mut b = keygen();
        b.key_id = key_id.into();
        check(b, ErrorCode::InvalidRequest);
    }
    let mut b = keygen();
    b.request_id = "XYZ".into();
    check(b, ErrorCode::InvalidRequest);
    let mut b = keygen();
    b.expires_at_ms = b.created_at_ms;
    check(b, ErrorCode::InvalidRequest);
    let mut b = reshare();
    b.participants = Some(vec!["node0".into(), "node0".into()]);
    check(b, ErrorCode::InvalidRequest);
    let mut b = approve();
    b.approves = None;
    check(b, ErrorCode::InvalidRequest);
    // reject: rejects required; approves (and any scheme) forbidden; rejects only on reject.
    key.sign_request(&reject()).unwrap();
    let mut b = reject();
    b.rejects = None;
    check(b, ErrorCode::InvalidRequest);
    let mut b = reject();
    b.approves = Some([6; 32]);
    check(b, ErrorCode::InvalidRequest);
    let mut b = reject();
    b.schemes = vec![Scheme::Ed25519];
    check(b, ErrorCode::InvalidRequest);
    let mut b = approve();
    b.rejects = Some([5; 32]);
    check(b, ErrorCode::InvalidRequest);
    let mut b = sign();
    b.rejects = Some([5; 32]);
    check(b, ErrorCode::InvalidRequest);
    // status: schemes optional (any distinct ones); nothing else but the common members.
    let mut b = status();
    b.schemes = Scheme::ALL.to_vec();
    key.sign_request(&b).unwrap();
    b.schemes = vec![Scheme::Ed25519, Scheme::Ed25519];
    check(b, ErrorCode::InvalidRequest);
    let mut b = status();
    b.threshold = Some(2);
    check(b, ErrorCode::InvalidRequest);
    let mut b = status();
    b.payload = Some(vec![1]);
    check(b, ErrorCode::InvalidRequest);
    let mut b = status();
    b.payload_kind = Some(PayloadKind::Message);
    check(b, ErrorCode::InvalidRequest);
    let mut b = status();
    b.derivation_path = vec![1];
    check(b, ErrorCode::InvalidRequest);
    let mut b = status();
    b.participants = Some(vec!["node0".into()]);
    check(b, ErrorCode::InvalidRequest);
    let mut b = status();
    b.approves = Some([1; 32]);
    check(b, ErrorCode::InvalidRequest);
    // Chains: the chain payload kinds need a chain; messages and digests take none; only
    // sign requests carry one.
    for kind in [
        PayloadKind::Transaction,
        PayloadKind::PersonalMessage,
        PayloadKind::TypedData,
    ] {
        let mut b = sign();
        b.payload_kind = Some(kind);
        check(b.clone(), ErrorCode::InvalidRequest);
        b.chain = Some("evm".into());
        key.sign_request(&b).unwrap();
        b.chain = Some("EVM.x".into());
        check(b, ErrorCode::InvalidRequest);
    }
    let mut b = sign();
    b.chain = Some("evm".into());
    check(b, ErrorCode::InvalidRequest); // a plain message has no chain
    let mut b = status();
    b.chain = Some("evm".into());
    check(b, ErrorCode::InvalidRequest);
    // policy: a payload (the bundle), no schemes, nothing sign-only.
    let mut b = status();
    b.kind = RequestKind::Policy;
    b.schemes.clear();
    check(b.clone(), ErrorCode::InvalidRequest); // no bundle
    b.payload = Some(b"format = 1".to_vec());
    key.sign_request(&b).unwrap();
    let mut c = b.clone();
    c.schemes = vec![Scheme::Ed25519];
    check(c, ErrorCode::InvalidRequest);
    let mut c = b.clone();
    c.payload_kind = Some(PayloadKind::Message);
    check(c, ErrorCode::InvalidRequest);
    let mut c = b;
    c.payload = Some(vec![0; keyrack_client::request::MAX_PAYLOAD_BYTES + 1]);
    check(c, ErrorCode::InvalidRequest);

    check_threshold(2, 3).unwrap();
    check_threshold(2, 2).unwrap();
    check_threshold(3, 5).unwrap();
    // One node alone is no threshold key (the scheme plugins refuse n < 2 as well).
    for (t, n) in [(1, 1), (1, 2), (1, 3), (2, 4), (4, 3), (0, 1), (0, 0)] {
        assert_eq!(
            check_threshold(t, n).unwrap_err().code(),
            ErrorCode::InvalidThreshold
        );
    }
}

#[test]
fn wire_shape_is_checked() {
    let signed = initiator().sign_request(&sign()).unwrap();
    let wire: Value = serde_json::from_slice(&signed.to_json()).unwrap();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut w = wire.clone();
        f(&mut w);
        SignedRequest::parse(&serde_json::to_vec(&w).unwrap()).map(|_| ())
    };
    with(&|_| {}).unwrap();
    let bad: [&dyn Fn(&mut Value); 6] = [
        &|w| w["extra"] = Value::from(1),
        &|w| w["initiator"] = Value::from("Backend"),
        &|w| w["body"] = Value::from("not base64!"),
        &|w| w["signature"] = Value::from(w["signature"].as_str().unwrap().to_uppercase()),
        &|w| w["signature"] = Value::from("00"),
        &|w| {
            w.as_object_mut().unwrap().remove("body");
        },
    ];
    for f in bad {
        assert_eq!(with(f).unwrap_err().code(), ErrorCode::Malformed);
    }
    let huge = vec![b' '; MAX_REQUEST_BYTES + 1];
    assert_eq!(
        SignedRequest::parse(&huge).unwrap_err().code(),
        ErrorCode::Malformed
    );
}

#[test]
fn unverified_body_routes_refusals_of_bad_signatures() {
    let stranger = InitiatorKey::from_seed("backend", &[9; 32]).unwrap();
    let signed = stranger.sign_request(&sign()).unwrap();
    assert!(signed.verify(&initiator().public_key()).is_err());
    assert_eq!(signed.unverified_body().unwrap().client_id, "backend-a");
}

#[test]
fn key_file() {
    let dir = std::env::temp_dir().join(format!("keyrack-client-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("initiator.key");
    let _ = std::fs::remove_file(&path);
    let key = InitiatorKey::generate("backend").unwrap();
    key.save(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.len(), 65);
    let back = InitiatorKey::load("backend", &path).unwrap();
    assert_eq!(back.public_key(), key.public_key());
    assert!(matches!(key.save(&path), Err(KeyFileError::Exists(_))));
    let debug = format!("{key:?}");
    assert!(
        debug.contains("redacted") && !debug.contains(text.trim()),
        "{debug}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            InitiatorKey::load("backend", &path),
            Err(KeyFileError::Permissions { .. })
        ));
    }
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "temp file left behind"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(InitiatorKey::generate("Bad.Id").is_err());
}

#[test]
fn golden_request() {
    let signed = initiator().sign_request(&golden_sign_body()).unwrap();
    let json = String::from_utf8(signed.to_json()).unwrap() + "\n";
    golden("request-sign.json", &json);
    let parsed = SignedRequest::parse(json.trim_end().as_bytes()).unwrap();
    let v = parsed.verify_with(&verified_v1()).unwrap();
    assert_eq!(v.body, golden_sign_body());
    golden(
        "request-sign.body.json",
        &(String::from_utf8(v.body_bytes).unwrap() + "\n"),
    );
}
