use keyrack_client::codes::ErrorCode;
use keyrack_client::request::RequestKind;
use keyrack_client::subjects::*;

#[test]
fn error_code_strings_are_stable() {
    let strings: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        strings,
        [
            "malformed",
            "unsupported_version",
            "bad_signature",
            "unknown_initiator",
            "not_authorized",
            "expired",
            "not_yet_valid",
            "lifetime_too_long",
            "replayed",
            "unknown_key",
            "key_in_progress",
            "key_deleted",
            "key_exists_with_other_params",
            "invalid_threshold",
            "invalid_request",
            "unsupported_scheme",
            "unsupported_chain",
            "invalid_payload",
            "policy_denied",
            "approvals_required",
            "approval_rejected",
            "time_locked",
            "too_many_waiting",
            "policy_bundle_refused",
            "busy",
            "timeout",
            "protocol_failed",
            "hsm_failure",
            "interrupted",
            "internal",
        ]
    );
    for c in ErrorCode::ALL {
        assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{c}\""));
        assert_eq!(c.as_str().parse::<ErrorCode>().unwrap(), c);
        assert_eq!(
            serde_json::from_str::<ErrorCode>(&format!("\"{c}\"")).unwrap(),
            c
        );
    }
    assert!(serde_json::from_str::<ErrorCode>("\"Expired\"").is_err());
    // PROTOCOL.md lists every code.
    let doc = std::fs::read_to_string(
        std::path::Path::new(
            &std::env::var("CARGO_MANIFEST_DIR")
                .expect("set by cargo test and nextest at run time"),
        )
        .join("../../docs/PROTOCOL.md"),
    )
    .unwrap();
    for c in ErrorCode::ALL {
        assert!(
            doc.contains(&format!("`{c}`")),
            "docs/PROTOCOL.md does not list {c}"
        );
    }
}

#[test]
fn subjects() {
    let s = [7u8; 32];
    assert_eq!(request_stream("prod").unwrap(), "KEYRACK_REQ_prod");
    assert_eq!(
        request_stream_subjects("prod").unwrap(),
        "keyrack.prod.req.*"
    );
    assert_eq!(
        request_subject("prod", RequestKind::Sign.as_str()).unwrap(),
        "keyrack.prod.req.sign"
    );
    // Verdicts travel apart from the other requests.
    assert_eq!(verdict_stream("prod").unwrap(), "KEYRACK_VERDICT_prod");
    assert_eq!(
        verdict_stream_subjects("prod").unwrap(),
        "keyrack.prod.verdict.*"
    );
    for (kind, subject) in [
        (RequestKind::Approve, "keyrack.prod.verdict.approve"),
        (RequestKind::Reject, "keyrack.prod.verdict.reject"),
        (RequestKind::Delete, "keyrack.prod.req.delete"),
    ] {
        assert_eq!(request_subject("prod", kind.as_str()).unwrap(), subject);
    }
    assert_eq!(node_consumer("node0").unwrap(), "node-node0");
    assert_eq!(result_stream("prod").unwrap(), "KEYRACK_RES_prod");
    let rid = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        result_subject("prod", "backend-a", rid).unwrap(),
        format!("keyrack.prod.res.backend-a.{rid}")
    );
    assert_eq!(
        result_filter("prod", "backend-a").unwrap(),
        "keyrack.prod.res.backend-a.*"
    );
    assert_eq!(result_msg_id(rid, "node0").unwrap(), format!("{rid}.node0"));
    assert_eq!(
        refusal_msg_id(rid, "node0", ErrorCode::Replayed).unwrap(),
        format!("{rid}.node0.replayed")
    );
    let hex = "07".repeat(32);
    assert_eq!(
        session_subject("prod", &s, Some("node1")).unwrap(),
        format!("keyrack.prod.sess.{hex}.node1")
    );
    assert_eq!(
        session_subject("prod", &s, None).unwrap(),
        format!("keyrack.prod.sess.{hex}.all")
    );
    assert!(session_subject("prod", &s, Some("all")).is_err());
    assert_eq!(
        session_inbox("prod", "node1").unwrap(),
        "keyrack.prod.sess.*.node1"
    );
    assert_eq!(
        session_broadcasts("prod").unwrap(),
        "keyrack.prod.sess.*.all"
    );
    assert_eq!(
        control_subject("prod", rid).unwrap(),
        format!("keyrack.prod.ctl.{rid}")
    );
    assert_eq!(
        heartbeat_subject("prod", "node0").unwrap(),
        "keyrack.prod.hb.node0"
    );
    assert_eq!(heartbeat_filter("prod").unwrap(), "keyrack.prod.hb.*");
    for bad in ["a.b", "a*", "a>", "A", "", " a", "-a", "a b"] {
        assert!(result_subject("prod", bad, rid).is_err(), "{bad:?}");
        assert!(request_stream(bad).is_err(), "{bad:?}");
        assert!(heartbeat_subject("prod", bad).is_err(), "{bad:?}");
    }
    assert!(result_subject("prod", "c", "ABC").is_err());
    assert!(control_subject("prod", &"a".repeat(33)).is_err());
    for k in RequestKind::ALL {
        assert!(request_subject("prod", k.as_str()).is_ok());
    }
}
