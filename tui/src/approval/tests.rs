//! [`Approver::check`] and signing, on requests signed here under a small manifest; and the
//! Approvals tab drawn from what the check said (the refusals and the lifecycle listings an
//! operator reads).

use super::*;
use crate::app::{App, Data, Poll, Update};
use crate::asks::{Asks, Committee, Current};
use ed25519_dalek::SigningKey;
use keyrack_client::api::Approvals;
use keyrack_client::identity::PublicIdentity;
use keyrack_client::manifest::{Admin, Initiator, Manifest, SignedManifest};
use keyrack_client::trusted::TrustSource;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::path::Path;

const NOW: u64 = 1_700_000_000_000;
const TRUSTED_FILE: &str = "/home/carol/keyrack/trusted-keys.toml";

fn carol() -> InitiatorKey {
    InitiatorKey::from_seed("carol", &[7u8; 32]).unwrap()
}

fn bob() -> InitiatorKey {
    InitiatorKey::from_seed("bob", &[9u8; 32]).unwrap()
}

fn node_ids() -> Vec<String> {
    (0..3).map(|i| format!("node{i}")).collect()
}

/// Cluster `prod`: nodes node0-2, initiators bob (asks) and carol (approves), one admin.
fn manifest() -> VerifiedManifest {
    let nodes = (0u8..3)
        .map(|i| {
            let key = SigningKey::from_bytes(&[40 + i; 32]);
            PublicIdentity::sign(&format!("node{i}"), &key, [20 + i; 32]).unwrap()
        })
        .collect();
    let admin = SigningKey::from_bytes(&[3u8; 32]);
    let initiator = |k: &InitiatorKey| Initiator {
        id: k.id().into(),
        public_key: k.public_key(),
        roles: vec!["sign".into(), "approve".into()],
    };
    let mut m = SignedManifest::new(Manifest {
        cluster_id: "prod".into(),
        version: 1,
        previous: None,
        admin_threshold: 1,
        nodes,
        initiators: vec![initiator(&bob()), initiator(&carol())],
        admins: vec![Admin {
            id: "admin".into(),
            public_key: admin.verifying_key(),
        }],
    })
    .unwrap();
    m.sign(&admin).unwrap();
    m.verify_bootstrap().unwrap()
}

/// Decodes as the nodes would: here, a fixed intent naming the payload's first byte and the
/// key it was decoded with.
fn decoder() -> Decoder {
    Arc::new(|r: &VerifiedRequest, key: &TrustedKey| {
        let first = r.body.payload.as_deref().and_then(|p| p.first().copied());
        Ok(serde_json::json!({
            "action": "transfer", "byte": first, "key": hex::encode(&key.public_key)
        }))
    })
}

/// Carol's trusted keys: `treasury` (ed25519), 2 of node0-2, version 1.
fn trusted() -> TrustedKeys {
    let mut keys = TrustedKeys::empty(Path::new(TRUSTED_FILE));
    keys.record(
        TrustedKey {
            key_id: "treasury".into(),
            scheme: Scheme::Ed25519,
            public_key: vec![0xab; 32],
            chain_code: [0xcd; 32],
            threshold: 2,
            participants: node_ids(),
            version: 1,
            trusted_at_ms: NOW - 86_400_000,
            source: TrustSource::Keygen,
        },
        false,
    )
    .unwrap();
    keys
}

fn approver() -> Approver {
    Approver::new(carol(), manifest(), trusted(), decoder())
}

/// The node's key list: `treasury` as carol trusts it.
fn key_view() -> KeyView {
    KeyView {
        key_id: "treasury".into(),
        scheme: "ed25519".into(),
        status: "READY".into(),
        version: 1,
        threshold: 2,
        participants: node_ids(),
        public_key: "ab".repeat(32),
        chain_code: "cd".repeat(32),
        created_at_ms: 1,
        error: None,
        addresses: vec![],
    }
}

/// `body` signed by `signer` (with a fixed request id and nonce, so that screens are
/// stable), listed as a node would list it.
fn listing(signer: &InitiatorKey, mut body: RequestBody) -> (WaitingRequest, VerifiedRequest) {
    body.request_id = "0123456789abcdef0123456789abcdef".into();
    body.nonce = "fedcba9876543210fedcba9876543210".into();
    let signed = signer.sign_request(&body).unwrap();
    let verified = SignedRequest::parse(&signed.to_json())
        .unwrap()
        .verify(&signer.public_key())
        .unwrap();
    let schemes: Vec<String> = body.schemes.iter().map(|s| s.as_str().into()).collect();
    let w = WaitingRequest {
        request_id: body.request_id.clone(),
        request_hash: hex::encode(verified.hash()),
        initiator: signer.id().into(),
        key_id: body.key_id.clone(),
        kind: body.kind.as_str().into(),
        state: WaitState::WaitingForApprovals,
        run_at_ms: None,
        scheme: schemes.first().cloned().unwrap_or_default(),
        schemes,
        chain: body.chain.clone(),
        waiting_since_ms: NOW,
        expires_at_ms: body.expires_at_ms,
        intent: Value::Null,
        decision: serde_json::json!({
            "outcome": "needs_approvals", "rule": "lifecycle-needs-2", "group": "officers",
            "required": 2, "have": []
        }),
        approvals: vec![],
        request: Some(String::from_utf8(verified.to_json()).unwrap()),
    };
    (w, verified)
}

/// bob's transaction on solana with key `treasury`, listed as a node would list it.
fn listed(signer: &InitiatorKey) -> (WaitingRequest, VerifiedRequest) {
    let mut body = RequestBody::new(RequestKind::Sign, "prod", "treasury", "app", NOW, 60_000);
    body.schemes = vec![Scheme::Ed25519];
    body.chain = Some("solana".into());
    body.payload_kind = Some(PayloadKind::Transaction);
    body.payload = Some(vec![0x42, 1, 2]);
    let (mut w, verified) = listing(signer, body);
    w.intent = serde_json::json!({"action": "transfer", "byte": 0x42, "key": "ab".repeat(32)});
    (w, verified)
}

/// bob's `kind` request on key `key_id`, with `edit` applied to its body.
fn lifecycle(
    kind: RequestKind,
    key_id: &str,
    edit: impl FnOnce(&mut RequestBody),
) -> (WaitingRequest, VerifiedRequest) {
    let mut body = RequestBody::new(kind, "prod", key_id, "app", NOW, 300_000);
    body.schemes = vec![Scheme::Ed25519];
    edit(&mut body);
    listing(&bob(), body)
}

/// What carol's check says of `w` at `now`, as the console keeps it.
fn checked(w: &WaitingRequest, now: u64) -> Result<CheckedRequest, String> {
    approver().check(w, &[key_view()], now).map(|c| c.request)
}

fn refused(w: &WaitingRequest) -> String {
    approver().check(w, &[key_view()], NOW + 1).unwrap_err()
}

/// Carol's console on the Approvals tab, listing `w` with what her check said of it, at
/// `now`.
fn console(w: &WaitingRequest, check: Result<CheckedRequest, String>, now: u64) -> App {
    let mut app = App::new("http://127.0.0.1:7400", Some("carol".into()));
    app.apply(Update::Polled(Box::new(Poll {
        at_ms: now,
        data: Data {
            approvals: Some(Approvals {
                waiting: vec![w.clone()],
            }),
            ..Data::default()
        },
        checks: Some([(w.request_hash.clone(), check)].into()),
        ..Poll::default()
    })));
    press(&mut app, '4');
    app
}

fn press(app: &mut App, c: char) -> Option<crate::app::Action> {
    app.on_key(crate::KeyEvent::new(
        crate::KeyCode::Char(c),
        crate::KeyModifiers::NONE,
    ))
}

/// The screen of [`console`].
fn approvals_screen(w: &WaitingRequest, check: Result<CheckedRequest, String>, now: u64) -> String {
    screen(&console(w, check, now))
}

fn screen(app: &App) -> String {
    let mut terminal = Terminal::new(TestBackend::new(120, 22)).unwrap();
    terminal.draw(|f| crate::ui::draw(f, app)).unwrap();
    terminal.backend().to_string()
}

#[test]
fn an_approval_of_a_checked_request_verifies_and_names_its_hash() {
    let a = approver();
    let (w, request) = listed(&bob());
    let checked = a.check(&w, &[key_view()], NOW + 1).unwrap();
    assert_eq!(checked.request_hash, request.hash());
    assert_eq!(checked.request.asks, Asks::Sign);
    let submit = a.sign(Verdict::Approve, &checked, NOW + 2).unwrap();
    let signed = SignedRequest::parse(submit.signed_request.as_bytes()).unwrap();
    assert_eq!(signed.initiator(), "carol");
    let body = signed.verify_with(&manifest()).unwrap().body;
    assert_eq!(body.kind, RequestKind::Approve);
    assert_eq!(body.approves, Some(request.hash()));
    assert_eq!(body.rejects, None);
    assert_eq!(body.cluster_id, "prod");
    assert_eq!(body.client_id, "carol");
    assert_eq!(body.key_id, APPROVAL_KEY_ID);
    assert_eq!(body.created_at_ms, NOW + 2);
    assert_eq!(body.expires_at_ms, NOW + 2 + VALID_FOR_MS);
    let reject = a.sign(Verdict::Reject, &checked, NOW + 2).unwrap();
    let body = SignedRequest::parse(reject.signed_request.as_bytes())
        .unwrap()
        .verify_with(&manifest())
        .unwrap()
        .body;
    assert_eq!(
        (body.kind, body.rejects, body.approves),
        (RequestKind::Reject, Some(request.hash()), None)
    );
}

#[test]
fn a_listing_that_is_not_the_signed_request_is_refused() {
    let (w, _) = listed(&bob());
    // The node shows another hash than the request's.
    let mut other = w.clone();
    other.request_hash = "11".repeat(32);
    assert!(refused(&other).contains("hashes to"), "{}", refused(&other));
    // …or a harmless intent for a payload that decodes to something else.
    let mut other = w.clone();
    other.intent["byte"] = serde_json::json!(0x01);
    assert!(refused(&other).contains("not what the signed payload decodes to"));
    // …or other fields than the request's.
    for (field, edit) in [
        (
            "initiator",
            (|w: &mut WaitingRequest| w.initiator = "carol".into()) as fn(&mut WaitingRequest),
        ),
        ("key", |w| w.key_id = "petty-cash".into()),
        ("chain", |w| w.chain = Some("evm".into())),
        ("scheme", |w| w.scheme = "ecdsa-secp256k1".into()),
        ("schemes", |w| w.schemes = vec!["ecdsa-secp256k1".into()]),
        ("request id", |w| w.request_id = "00".repeat(16)),
        ("kind", |w| w.kind = "delete".into()),
    ] {
        let mut other = w.clone();
        edit(&mut other);
        let e = refused(&other);
        assert!(
            e.contains(&format!("differs from the signed request: {field}")),
            "{field}: {e}"
        );
    }
    // …or no request at all.
    let mut other = w.clone();
    other.request = None;
    assert!(refused(&other).contains("did not send the signed request"));
    // Expired.
    let e = approver()
        .check(&w, &[key_view()], NOW + 60_000)
        .unwrap_err();
    assert!(e.contains("expired"), "{e}");
}

#[test]
fn a_request_not_signed_by_a_manifest_initiator_is_refused() {
    // Signed by a key the approver's manifest does not list under that id.
    let mallory = InitiatorKey::from_seed("bob", &[66u8; 32]).unwrap();
    let (w, _) = listed(&mallory);
    let e = refused(&w);
    assert!(e.contains("does not verify under your manifest"), "{e}");
    let stranger = InitiatorKey::from_seed("eve", &[67u8; 32]).unwrap();
    let (w, _) = listed(&stranger);
    let e = refused(&w);
    assert!(e.contains("does not verify under your manifest"), "{e}");
}

#[test]
fn a_payload_is_decoded_with_the_trusted_key_not_the_nodes() {
    let (w, _) = listed(&bob());
    // The node does not list the key at all: the trusted key decodes it.
    approver().check(&w, &[], NOW + 1).unwrap();
    // The decoder was handed the trusted key (the intent names it).
    let mut other = w.clone();
    other.intent["key"] = serde_json::json!("ef".repeat(32));
    assert!(refused(&other).contains("not what the signed payload decodes to"));
}

#[test]
fn a_node_reporting_another_public_key_than_the_trusted_one_is_refused() {
    let (w, _) = listed(&bob());
    // A compromised node lists its own key for `treasury` and shows the intent decoded with
    // it (a transfer to its key would read as change).
    let mut lying = key_view();
    lying.public_key = "ef".repeat(32);
    let mut shown = w.clone();
    shown.intent["key"] = serde_json::json!("ef".repeat(32));
    let e = approver().check(&shown, &[lying], NOW + 1).unwrap_err();
    assert!(e.contains("the node may be compromised"), "{e}");
    insta::assert_snapshot!("refusal_another_public_key", e);
    insta::assert_snapshot!(
        "approvals_tab_refusing_another_public_key",
        approvals_screen(&shown, Err(e), NOW + 30_000)
    );
    // Another chain code alone is refused too (it moves every derived address).
    let mut lying = key_view();
    lying.chain_code = "00".repeat(32);
    let e = approver().check(&w, &[lying], NOW + 1).unwrap_err();
    assert!(
        e.contains("the node reports chain code 00000000…00000000"),
        "{e}"
    );
    assert!(
        e.contains("your trusted keys hold cdcdcdcd…cdcdcdcd"),
        "{e}"
    );
    // A key record with no key yet (PENDING) says nothing against the trusted one.
    let mut pending = key_view();
    pending.public_key = String::new();
    pending.chain_code = String::new();
    approver().check(&w, &[pending], NOW + 1).unwrap();
}

#[test]
fn a_sign_request_for_a_key_not_in_the_trusted_keys_is_refused() {
    let untrusting = Approver::new(
        carol(),
        manifest(),
        TrustedKeys::empty(Path::new(TRUSTED_FILE)),
        decoder(),
    );
    let (w, _) = listed(&bob());
    let e = untrusting.check(&w, &[key_view()], NOW + 1).unwrap_err();
    assert!(e.contains("keyrack client trust treasury"), "{e}");
    insta::assert_snapshot!("refusal_key_not_trusted", e);
    insta::assert_snapshot!(
        "approvals_tab_refusing_an_untrusted_key",
        approvals_screen(&w, Err(e), NOW + 30_000)
    );
    // A plain message needs no decoding, but its key must be trusted all the same.
    let mut body = RequestBody::new(RequestKind::Sign, "prod", "treasury", "app", NOW, 60_000);
    body.schemes = vec![Scheme::Ed25519];
    body.payload_kind = Some(PayloadKind::Message);
    body.payload = Some(b"hello".to_vec());
    let (w, _) = listing(&bob(), body);
    let e = untrusting.check(&w, &[key_view()], NOW + 1).unwrap_err();
    assert!(e.contains("not in your trusted keys"), "{e}");
    approver().check(&w, &[key_view()], NOW + 1).unwrap();
}

#[test]
fn lifecycle_requests_are_read_from_their_signed_body() {
    let current = Current::Trusted {
        committee: Committee {
            threshold: 2,
            participants: node_ids(),
        },
        version: 1,
    };
    let check = |w: &WaitingRequest| approver().check(w, &[key_view()], NOW + 1);
    let (w, request) = lifecycle(RequestKind::Delete, "treasury", |_| {});
    let checked = check(&w).unwrap();
    assert_eq!(checked.request_hash, request.hash());
    assert_eq!(
        checked.request.asks,
        Asks::Delete {
            current: current.clone()
        }
    );
    let (w, _) = lifecycle(RequestKind::Reshare, "treasury", |b| {
        b.threshold = Some(3);
        b.participants = Some(node_ids());
    });
    assert_eq!(
        check(&w).unwrap().request.asks,
        Asks::Reshare {
            current: current.clone(),
            threshold: Some(3),
            participants: Some(node_ids()),
        }
    );
    let (w, _) = lifecycle(RequestKind::Refresh, "treasury", |_| {});
    assert_eq!(check(&w).unwrap().request.asks, Asks::Refresh { current });
    // A key the approver does not trust: its committee is unknown, which is no refusal.
    let (w, _) = lifecycle(RequestKind::Delete, "vault-7", |b| {
        b.schemes = vec![Scheme::Ed25519, Scheme::EcdsaSecp256k1];
    });
    assert_eq!(
        check(&w).unwrap().request.asks,
        Asks::Delete {
            current: Current::NotTrusted
        }
    );
    let (w, _) = lifecycle(RequestKind::Keygen, "vault-7", |b| b.threshold = Some(2));
    let checked = check(&w).unwrap().request;
    assert_eq!(checked.summary(), "keygen vault-7 (ed25519) 2 of 3");
    let (w, _) = lifecycle(RequestKind::Status, "vault-7", |b| b.schemes = vec![]);
    assert_eq!(check(&w).unwrap().request.asks, Asks::Status);
}

#[test]
fn a_lifecycle_listing_that_is_not_its_request_is_refused() {
    let (w, _) = lifecycle(RequestKind::Delete, "treasury", |_| {});
    // The node shows an intent for a request that has no payload.
    let mut other = w.clone();
    other.intent = serde_json::json!({"action": "transfer"});
    let e = refused(&other);
    assert!(e.contains("shows an intent for a delete request"), "{e}");
    // …or lists it as a milder kind.
    let mut other = w.clone();
    other.kind = "refresh".into();
    assert!(refused(&other).contains("differs from the signed request: kind"));
    // …or other schemes.
    let mut other = w.clone();
    other.schemes = vec!["ed25519".into(), "ecdsa-secp256k1".into()];
    assert!(refused(&other).contains("differs from the signed request: schemes"));
    // An approval is never held for approvals.
    let mut body = RequestBody::new(RequestKind::Approve, "prod", APPROVAL_KEY_ID, "app", NOW, 1);
    body.approves = Some([1; 32]);
    let (w, _) = listing(&bob(), body);
    let e = refused(&w);
    assert!(e.contains("of kind approve, which never waits"), "{e}");
}

#[test]
fn a_time_locked_request_stays_open_until_its_run_time() {
    let (mut w, _) = lifecycle(RequestKind::Delete, "treasury", |_| {});
    w.state = WaitState::TimeLocked;
    w.run_at_ms = Some(NOW + 86_400_000);
    // Past the request's own expiry, it can still be vetoed.
    let later = NOW + 3_600_000;
    approver().check(&w, &[key_view()], later).unwrap();
    let e = approver()
        .check(&w, &[key_view()], NOW + 86_400_000)
        .unwrap_err();
    assert!(e.contains("too late to veto"), "{e}");
    w.run_at_ms = None;
    let e = approver().check(&w, &[key_view()], later).unwrap_err();
    assert!(e.contains("gives no run time"), "{e}");
}

#[test]
fn the_approvals_tab_shows_a_delete_and_a_reshare_from_their_signed_body() {
    let (w, _) = lifecycle(RequestKind::Delete, "treasury", |_| {});
    let s = approvals_screen(&w, checked(&w, NOW + 1), NOW + 30_000);
    assert!(
        s.contains("delete treasury (ed25519): erases every share"),
        "{s}"
    );
    insta::assert_snapshot!("approvals_tab_delete", s);
    let (w, _) = lifecycle(RequestKind::Reshare, "treasury", |b| {
        b.threshold = Some(3);
    });
    let s = approvals_screen(&w, checked(&w, NOW + 1), NOW + 30_000);
    assert!(
        s.contains("reshare treasury (ed25519): 2 of node0,node1,node2 → 3 of node0,node1,node2"),
        "{s}"
    );
    insta::assert_snapshot!("approvals_tab_reshare", s);
}

#[test]
fn the_approvals_tab_shows_a_time_locked_request_and_r_vetoes_it() {
    let (mut w, _) = lifecycle(RequestKind::Delete, "treasury", |_| {});
    w.state = WaitState::TimeLocked;
    w.run_at_ms = Some(NOW + 4 * 3_600_000);
    w.decision = serde_json::json!({"outcome": "allow", "rules": ["delete-after-24h"]});
    let now = NOW + 3_600_000;
    let mut app = console(&w, checked(&w, now), now);
    let s = screen(&app);
    assert!(s.contains("TIME-LOCKED"), "{s}");
    insta::assert_snapshot!("approvals_tab_time_locked", s);
    // Approving is moot: nothing is asked or sent.
    assert_eq!(press(&mut app, 'a'), None);
    assert!(app.confirm.is_none());
    assert!(app
        .message
        .as_deref()
        .unwrap()
        .contains("another approval changes nothing"));
    // Rejecting is a veto, and the box says so.
    assert_eq!(press(&mut app, 'r'), None);
    let confirm = app.confirm.clone().unwrap();
    assert!(confirm.veto);
    insta::assert_snapshot!("veto_confirmation", screen(&app));
}

#[test]
fn approving_a_lifecycle_request_says_what_it_does() {
    let (w, _) = lifecycle(RequestKind::Delete, "treasury", |_| {});
    let mut app = console(&w, checked(&w, NOW + 1), NOW + 30_000);
    assert_eq!(press(&mut app, 'a'), None);
    let confirm = app.confirm.clone().unwrap();
    assert_eq!(
        confirm.summary,
        "delete treasury (ed25519): erases every share · asked by bob"
    );
    assert!(!confirm.veto);
    let effect = confirm.effect.unwrap();
    assert!(
        effect.contains("every node erases its shares (irreversible)"),
        "{effect}"
    );
    insta::assert_snapshot!("approve_delete_confirmation", screen(&app));
}

#[test]
fn hashes_parse_only_as_64_hex_digits() {
    assert_eq!(parse_hash(&"ab".repeat(32)), Some([0xab; 32]));
    assert_eq!(parse_hash("abcd"), None);
    assert_eq!(parse_hash(&"zz".repeat(32)), None);
}
