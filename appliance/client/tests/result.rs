mod common;

use common::*;
use keyrack_client::codes::ErrorCode;
use keyrack_client::request::{PayloadKind, RequestBody, RequestKind};
use keyrack_client::result::*;
use keyrack_client::scheme::Scheme;

fn request() -> keyrack_client::request::SignedRequest {
    let mut b = RequestBody::new(
        RequestKind::Sign,
        CLUSTER,
        "wallet-1",
        "backend-a",
        1_700_000_000_000,
        60_000,
    );
    b.request_id = "0123456789abcdef0123456789abcdef".into();
    b.nonce = "fedcba9876543210fedcba9876543210".into();
    b.schemes = vec![Scheme::EcdsaSecp256k1];
    b.payload = Some(vec![0x11; 32]);
    b.payload_kind = Some(PayloadKind::Digest);
    initiator().sign_request(&b).unwrap()
}

fn ok_sign(node_id: &str) -> ResultBody {
    let req = request();
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&[0xaa; 32]);
    sig[32..].copy_from_slice(&[0x0b; 32]);
    let mut pk = vec![0x02];
    pk.extend_from_slice(&[0x33; 32]);
    ResultBody {
        version: VERSION,
        request_id: "0123456789abcdef0123456789abcdef".into(),
        request_hash: req.hash(),
        node_id: node_id.into(),
        client_id: "backend-a".into(),
        status: Status::Ok,
        code: None,
        message: String::new(),
        keys: vec![],
        signature: Some(SignatureInfo {
            scheme: Scheme::EcdsaSecp256k1,
            digest_or_message: vec![0x11; 32],
            derivation_path: vec![],
            public_key: pk,
            signature: sig,
            r: Some([0xaa; 32]),
            s: Some([0x0b; 32]),
            v: Some(1),
        }),
        signatures: vec![],
        signed_payload: None,
        at_ms: 1_700_000_000_500,
    }
}

fn refused(node_id: &str, code: ErrorCode) -> ResultBody {
    ResultBody {
        status: Status::Refused,
        code: Some(code),
        message: "request expired".into(),
        signature: None,
        ..ok_sign(node_id)
    }
}

fn keygen_ok(node_id: &str) -> ResultBody {
    ResultBody {
        signature: None,
        keys: vec![KeyInfo {
            key_id: "wallet-1".into(),
            scheme: Scheme::Ed25519,
            public_key: vec![0x44; 32],
            chain_code: [0x55; 32],
            threshold: 2,
            participants: vec!["node0".into(), "node1".into(), "node2".into()],
            version: 1,
            status: None,
        }],
        ..ok_sign(node_id)
    }
}

#[test]
fn round_trip_and_verify() {
    let manifest = verified_v1();
    let n0 = node(0);
    for body in [
        ok_sign("node0"),
        refused("node0", ErrorCode::Expired),
        keygen_ok("node0"),
    ] {
        let signed = body.sign(&n0.signing).unwrap();
        let parsed = SignedResult::parse(&signed.to_json()).unwrap();
        assert_eq!(parsed.verify(&n0.public).unwrap(), body);
        assert_eq!(parsed.verify_with(&manifest).unwrap(), body);
        assert!(body.answers(&request()));
    }
}

#[test]
fn signature_checks() {
    let manifest = verified_v1();
    let n0 = node(0);
    let signed = ok_sign("node0").sign(&n0.signing).unwrap();
    // Another node's identity does not verify it.
    assert!(matches!(
        signed.verify(&node(1).public),
        Err(ResultError::UnknownNode(_))
    ));
    // A node signing a body in another node's name.
    let forged = ok_sign("node1").sign(&n0.signing).unwrap();
    assert!(matches!(
        forged.verify_with(&manifest),
        Err(ResultError::BadSignature(_))
    ));
    // A non-member.
    let stranger = node(7);
    let s = ok_sign("node7").sign(&stranger.signing).unwrap();
    assert!(matches!(
        s.verify_with(&manifest),
        Err(ResultError::UnknownNode(_))
    ));
    // Altered body bytes.
    let json = String::from_utf8(signed.to_json()).unwrap();
    let wire: serde_json::Value = serde_json::from_str(&json).unwrap();
    let body = String::from_utf8(signed.body_bytes().to_vec())
        .unwrap()
        .replace("\"v\":1", "\"v\":0");
    use base64::Engine as _;
    let tampered = serde_json::json!({
        "node_id": "node0",
        "body": base64::engine::general_purpose::STANDARD.encode(body),
        "signature": wire["signature"],
    });
    let tampered = SignedResult::parse(&serde_json::to_vec(&tampered).unwrap()).unwrap();
    assert!(matches!(
        tampered.verify_with(&manifest),
        Err(ResultError::BadSignature(_))
    ));
}

#[test]
fn inconsistent_bodies_are_refused() {
    let k = node(0).signing;
    let mut b = ok_sign("node0");
    b.code = Some(ErrorCode::Busy);
    assert!(b.sign(&k).is_err());
    let mut b = refused("node0", ErrorCode::Busy);
    b.code = None;
    assert!(b.sign(&k).is_err());
    let mut b = ok_sign("node0");
    b.signature.as_mut().unwrap().r = Some([0; 32]);
    assert!(b.sign(&k).is_err());
    let mut b = ok_sign("node0");
    b.signature.as_mut().unwrap().scheme = Scheme::Ed25519;
    assert!(b.sign(&k).is_err());
    let mut b = keygen_ok("node0");
    b.keys[0].public_key.push(0);
    assert!(b.sign(&k).is_err());
    // No public key: only for a status key that was never READY, with a zero chain code.
    let no_key = |status: Option<KeyStatus>, chain_code: [u8; 32]| {
        let mut b = keygen_ok("node0");
        b.keys[0].public_key.clear();
        b.keys[0].chain_code = chain_code;
        b.keys[0].status = status;
        b
    };
    for status in [KeyStatus::Pending, KeyStatus::Error, KeyStatus::Deleted] {
        no_key(Some(status), [0; 32]).sign(&k).unwrap();
        assert!(no_key(Some(status), [1; 32]).sign(&k).is_err());
    }
    assert!(no_key(Some(KeyStatus::Ready), [0; 32]).sign(&k).is_err());
    assert!(no_key(None, [0; 32]).sign(&k).is_err());
    // Unknown fields in a body signed by a member are still refused.
    let n0 = node(0);
    let text = String::from_utf8(ok_sign("node0").sign(&k).unwrap().body_bytes().to_vec()).unwrap();
    assert!(matches!(
        ResultBody::parse(text.replacen('{', "{\"extra\":1,", 1).as_bytes()),
        Err(ResultError::Malformed(_))
    ));
    assert!(matches!(
        ResultBody::parse(text.replace("\"version\":1", "\"version\":2").as_bytes()),
        Err(ResultError::UnsupportedVersion(2))
    ));
    let _ = n0;
}

#[test]
fn a_refusal_of_a_forged_copy_does_not_answer_the_request() {
    let mut forged = refused("node0", ErrorCode::BadSignature);
    forged.request_hash = [9; 32];
    assert!(!forged.answers(&request()));
    let mut other_id = ok_sign("node0");
    other_id.request_id = "ffffffffffffffffffffffffffffffff".into();
    assert!(!other_id.answers(&request()));
}

#[test]
fn golden_results() {
    let n1 = node(1);
    for (name, body) in [
        ("result-sign-ok.json", ok_sign("node1")),
        ("result-keygen-ok.json", keygen_ok("node1")),
        ("result-refused.json", refused("node1", ErrorCode::Expired)),
    ] {
        let json = String::from_utf8(body.sign(&n1.signing).unwrap().to_json()).unwrap();
        golden(name, &(json + "\n"));
        let text = std::fs::read_to_string(testdata(name)).unwrap();
        let parsed = SignedResult::parse(text.trim_end().as_bytes()).unwrap();
        assert_eq!(parsed.verify_with(&verified_v1()).unwrap(), body);
    }
}

#[test]
fn a_status_result_carries_each_keys_status_and_other_results_do_not() {
    let k = node(0).signing;
    let mut b = keygen_ok("node0");
    let plain = String::from_utf8(b.sign(&k).unwrap().body_bytes().to_vec()).unwrap();
    assert!(!plain.contains("\"status\":\"READY\""), "{plain}");
    b.keys[0].status = Some(KeyStatus::Ready);
    let signed = b.sign(&k).unwrap();
    let text = String::from_utf8(signed.body_bytes().to_vec()).unwrap();
    assert!(
        text.contains("\"version\":1,\"status\":\"READY\"}"),
        "{text}"
    );
    let back = SignedResult::parse(&signed.to_json())
        .unwrap()
        .verify(&node(0).public)
        .unwrap();
    assert_eq!(back.keys[0].status, Some(KeyStatus::Ready));
    for (status, wire) in [
        (KeyStatus::Pending, "PENDING"),
        (KeyStatus::Ready, "READY"),
        (KeyStatus::Error, "ERROR"),
        (KeyStatus::Deleted, "DELETED"),
    ] {
        assert_eq!(status.as_str(), wire);
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            format!("\"{wire}\"")
        );
    }
}
