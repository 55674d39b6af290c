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
fn checked(w: &WaitingRequest, now: u64) -> Result<Checked, String> {
    approver().check(w, &[key_view()], now)
}

/// Why nothing at all may be signed for `w` (the check refuses it outright).
fn refused(w: &WaitingRequest) -> String {
    approver().check(w, &[key_view()], NOW + 1).unwrap_err()
}

/// Why `w` may not be approved, though it may be rejected (the signed request verifies and
/// hashes as listed).
fn not_approvable(w: &WaitingRequest) -> String {
    let checked = approver()
        .check(w, &[key_view()], NOW + 1)
        .expect("a request that verifies may be rejected");
    checked
        .approve_refusal()
        .expect("but not approved")
        .to_owned()
}

/// Carol's console on the Approvals tab, listing `w` with what her check said of it, at
/// `now`.
fn console(w: &WaitingRequest, check: Result<Checked, String>, now: u64) -> App {
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
fn approvals_screen(w: &WaitingRequest, check: Result<Checked, String>, now: u64) -> String {
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
fn a_listing_that_is_not_the_signed_request_is_not_approved_but_may_be_rejected() {
    let (w, _) = listed(&bob());
    // The node shows another hash than the request's: nothing is signed at all (a
    // rejection names the hash: it must be the signed request's).
    let mut other = w.clone();
    other.request_hash = "11".repeat(32);
    assert!(refused(&other).contains("hashes to"), "{}", refused(&other));
    // …or no request at all.
    let mut other = w.clone();
    other.request = None;
    assert!(refused(&other).contains("did not send the signed request"));
    // A harmless intent for a payload that decodes to something else: not approved, but
    // the signed request may still be rejected.
    let mut other = w.clone();
    other.intent["byte"] = serde_json::json!(0x01);
    assert!(not_approvable(&other).contains("not what the signed payload decodes to"));
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
        let e = not_approvable(&other);
        assert!(
            e.contains(&format!("differs from the signed request: {field}")),
            "{field}: {e}"
        );
    }
    // Expired by its signed body: an approval is pointless, a rejection is still signed.
    let checked = approver()
        .check(&w, &[key_view()], NOW + 60_000)
        .expect("an expired request may still be rejected");
    assert_eq!(checked.mismatch, None);
    let e = checked.approve_refusal().unwrap();
    assert!(e.contains("expired"), "{e}");
    approver()
        .sign(Verdict::Reject, &checked, NOW + 60_000)
        .unwrap();
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
    let checked = approver().check(&w, &[], NOW + 1).unwrap();
    assert_eq!(checked.approve_refusal(), None);
    // The decoder was handed the trusted key (the intent names it).
    let mut other = w.clone();
    other.intent["key"] = serde_json::json!("ef".repeat(32));
    assert!(not_approvable(&other).contains("not what the signed payload decodes to"));
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
    let checked = approver().check(&shown, &[lying], NOW + 1).unwrap();
    let e = checked.mismatch.clone().expect("not approved");
    assert!(e.contains("the node may be compromised"), "{e}");
    insta::assert_snapshot!("refusal_another_public_key", e);
    insta::assert_snapshot!(
        "approvals_tab_refusing_another_public_key",
        approvals_screen(&shown, Ok(checked), NOW + 30_000)
    );
    // Another chain code alone is refused too (it moves every derived address).
    let mut lying = key_view();
    lying.chain_code = "00".repeat(32);
    let e = approver()
        .check(&w, &[lying], NOW + 1)
        .unwrap()
        .mismatch
        .expect("not approved");
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
    let checked = approver().check(&w, &[pending], NOW + 1).unwrap();
    assert_eq!(checked.approve_refusal(), None);
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
    let checked = untrusting.check(&w, &[key_view()], NOW + 1).unwrap();
    let e = checked.mismatch.clone().expect("not approved");
    assert!(e.contains("keyrack client trust treasury"), "{e}");
    insta::assert_snapshot!("refusal_key_not_trusted", e);
    insta::assert_snapshot!(
        "approvals_tab_refusing_an_untrusted_key",
        approvals_screen(&w, Ok(checked), NOW + 30_000)
    );
    // A plain message needs no decoding, but its key must be trusted all the same.
    let mut body = RequestBody::new(RequestKind::Sign, "prod", "treasury", "app", NOW, 60_000);
    body.schemes = vec![Scheme::Ed25519];
    body.payload_kind = Some(PayloadKind::Message);
    body.payload = Some(b"hello".to_vec());
    let (w, _) = listing(&bob(), body);
    let e = untrusting
        .check(&w, &[key_view()], NOW + 1)
        .unwrap()
        .mismatch
        .expect("not approved");
    assert!(e.contains("not in your trusted keys"), "{e}");
    let checked = approver().check(&w, &[key_view()], NOW + 1).unwrap();
    assert_eq!(checked.approve_refusal(), None);
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
fn a_lifecycle_listing_that_is_not_its_request_is_not_approved() {
    let (w, _) = lifecycle(RequestKind::Delete, "treasury", |_| {});
    // The node shows an intent for a request that has no payload.
    let mut other = w.clone();
    other.intent = serde_json::json!({"action": "transfer"});
    let e = not_approvable(&other);
    assert!(e.contains("shows an intent for a delete request"), "{e}");
    // …or lists it as a milder kind.
    let mut other = w.clone();
    other.kind = "refresh".into();
    assert!(not_approvable(&other).contains("differs from the signed request: kind"));
    // …or other schemes.
    let mut other = w.clone();
    other.schemes = vec!["ed25519".into(), "ecdsa-secp256k1".into()];
    assert!(not_approvable(&other).contains("differs from the signed request: schemes"));
    // An approval is never held for approvals.
    let mut body = RequestBody::new(RequestKind::Approve, "prod", APPROVAL_KEY_ID, "app", NOW, 1);
    body.approves = Some([1; 32]);
    let (w, _) = listing(&bob(), body);
    let e = refused(&w);
    assert!(e.contains("of kind approve, which never waits"), "{e}");
}

#[test]
fn a_time_locked_request_may_be_vetoed_whatever_run_time_the_node_claims() {
    let (mut w, _) = lifecycle(RequestKind::Delete, "treasury", |_| {});
    w.state = WaitState::TimeLocked;
    // Past the request's own expiry (5 minutes): a time-locked request runs later.
    let now = NOW + 3_600_000;
    // The node says it runs tomorrow, ran a minute ago, or does not say: honest nodes may
    // still hold it, so a veto is never refused on the node's word.
    for run_at in [Some(NOW + 86_400_000), Some(now - 60_000), None] {
        w.run_at_ms = run_at;
        let checked = approver()
            .check(&w, &[key_view()], now)
            .unwrap_or_else(|e| panic!("{run_at:?}: a veto is refused: {e}"));
        assert_eq!(checked.mismatch, None);
        let moot = checked.approve_refusal().unwrap();
        assert!(moot.contains("another approval changes nothing"), "{moot}");
        let mut app = console(&w, Ok(checked), now);
        assert_eq!(press(&mut app, 'r'), None);
        let confirm = app.confirm.clone().expect("the veto box opens");
        assert!(confirm.veto);
        assert_eq!(
            press(&mut app, 'y'),
            Some(crate::app::Action::Submit {
                verdict: Verdict::Reject,
                request_hash: w.request_hash.clone(),
                request_id: w.request_id.clone(),
            })
        );
    }
    // The node says its time lock ended: the box says a veto still stops honest nodes.
    w.run_at_ms = Some(now - 60_000);
    let mut app = console(&w, checked(&w, now), now);
    press(&mut app, 'r');
    insta::assert_snapshot!(
        "veto_confirmation_after_the_run_time_the_node_claims",
        screen(&app)
    );
}

#[test]
fn an_expired_waiting_request_may_be_rejected_but_not_approved() {
    let (w, _) = lifecycle(RequestKind::Delete, "treasury", |_| {});
    // Five minutes after its signed expiry (the node says it still waits, or lags).
    let now = w.expires_at_ms + 300_000;
    let mut app = console(&w, checked(&w, now), now);
    assert_eq!(press(&mut app, 'a'), None);
    assert!(app.confirm.is_none());
    let msg = app.message.clone().unwrap();
    assert!(
        msg.contains("cannot approve: the request expired at"),
        "{msg}"
    );
    assert_eq!(press(&mut app, 'r'), None);
    let confirm = app.confirm.clone().expect("the reject box opens");
    assert_eq!(confirm.verdict, Verdict::Reject);
    assert!(!confirm.veto);
}

#[test]
fn a_listing_that_differs_from_the_signed_request_may_still_be_rejected() {
    // A node that shows another kind to keep a veto from the approver: the approver may
    // not approve it, but rejects what was signed, described from the signed body.
    let (mut w, _) = lifecycle(RequestKind::Delete, "treasury", |_| {});
    w.kind = "status".into();
    let mut app = console(&w, checked(&w, NOW + 1), NOW + 1);
    assert_eq!(press(&mut app, 'a'), None);
    assert!(app.confirm.is_none());
    assert_eq!(press(&mut app, 'r'), None);
    let confirm = app.confirm.clone().expect("the reject box opens");
    assert!(
        confirm
            .summary
            .starts_with("delete treasury (ed25519): erases every share (as signed;"),
        "{}",
        confirm.summary
    );
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

/// Node `i`'s identity key (as [`manifest`] lists it).
fn node_key(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[40 + i; 32])
}

/// Carol's rejection of bob's delete, listed as `w`, as the console signs it.
fn rejection() -> (WaitingRequest, SubmitRequest) {
    let (w, _) = lifecycle(RequestKind::Delete, "treasury", |_| {});
    let checked = approver().check(&w, &[key_view()], NOW + 1).unwrap();
    let sent = approver().sign(Verdict::Reject, &checked, NOW + 2).unwrap();
    (w, sent)
}

/// A result of node `i` for the verdict `sent`, signed with `key`: recorded, or refused.
fn result_for(sent: &SubmitRequest, i: u8, key: &SigningKey, recorded: bool) -> String {
    use keyrack_client::codes::ErrorCode;
    use keyrack_client::result::{ResultBody, Status};
    let signed = SignedRequest::parse(sent.signed_request.as_bytes()).unwrap();
    let body = signed.unverified_body().unwrap();
    let (status, code, message) = if recorded {
        (Status::Ok, None, "rejection by 'carol' recorded".to_owned())
    } else {
        (
            Status::Refused,
            Some(ErrorCode::Expired),
            "request expired".to_owned(),
        )
    };
    let result = ResultBody {
        version: 1,
        request_id: body.request_id,
        request_hash: signed.hash(),
        node_id: format!("node{i}"),
        client_id: "carol".into(),
        status,
        code,
        message,
        keys: vec![],
        signature: None,
        signatures: vec![],
        signed_payload: None,
        at_ms: NOW + 3,
    };
    String::from_utf8(result.sign(key).unwrap().to_json()).unwrap()
}

/// The node's 202 for `sent`, passing on `results`.
fn accepted(sent: &SubmitRequest, results: Vec<String>) -> Submitted {
    let signed = SignedRequest::parse(sent.signed_request.as_bytes()).unwrap();
    Submitted {
        request_id: signed.unverified_body().unwrap().request_id,
        subject: "keyrack.prod.verdict.reject".into(),
        results,
    }
}

#[test]
fn a_verdict_is_confirmed_by_every_nodes_signed_result() {
    let (w, sent) = rejection();
    let all: Vec<String> = (0..3)
        .map(|i| result_for(&sent, i, &node_key(i), true))
        .collect();
    let confirmed = approver().confirm(&sent, &accepted(&sent, all)).unwrap();
    assert!(confirmed.complete());
    assert_eq!(confirmed.recorded, node_ids());
    assert_eq!(confirmed.request_hash, w.request_hash);
    assert_eq!(
        confirmed.summary(&w.request_id),
        "rejection of request 0123456789ab… recorded by node0, node1, node2 (3 of 3)"
    );
    // The console says so, and shows no warning.
    let mut app = console(&w, checked(&w, NOW + 1), NOW + 1);
    app.apply(Update::Submitted {
        verdict: Verdict::Reject,
        request_id: w.request_id.clone(),
        result: Ok(confirmed),
    });
    assert!(app.unconfirmed.is_none());
    assert!(app
        .message
        .as_deref()
        .unwrap()
        .ends_with("recorded by node0, node1, node2 (3 of 3)"));
}

#[test]
fn only_results_that_verify_under_the_approvers_manifest_and_answer_the_verdict_count() {
    let (w, sent) = rejection();
    let (_, other) = rejection();
    let stranger = SigningKey::from_bytes(&[99; 32]);
    let results = vec![
        result_for(&sent, 0, &node_key(0), true),
        // node0 again, refusing (a redelivered copy): its record stands.
        result_for(&sent, 0, &node_key(0), false),
        // A result claiming to be node1's, signed by a key the manifest does not hold.
        result_for(&sent, 1, &stranger, true),
        // node2's genuine result, about another verdict (another request hash and id).
        result_for(&other, 2, &node_key(2), true),
        "not a result".to_owned(),
    ];
    let confirmed = approver()
        .confirm(&sent, &accepted(&sent, results))
        .unwrap();
    assert_eq!(confirmed.recorded, ["node0"]);
    assert!(confirmed.refused.is_empty());
    assert_eq!(confirmed.silent, ["node1", "node2"]);
    assert_eq!(confirmed.ignored, 3);
    assert!(!confirmed.complete());
    // A node that refuses it is named with its reason.
    let results = vec![
        result_for(&sent, 0, &node_key(0), true),
        result_for(&sent, 1, &node_key(1), false),
        result_for(&sent, 2, &node_key(2), true),
    ];
    let refused = approver()
        .confirm(&sent, &accepted(&sent, results))
        .unwrap();
    assert_eq!(refused.recorded, ["node0", "node2"]);
    assert_eq!(
        refused.refused,
        [("node1".to_owned(), "request expired".to_owned())]
    );
    assert!(!refused.complete());
    // A node older than the results (no results at all): nothing is confirmed.
    let old = approver().confirm(&sent, &accepted(&sent, vec![])).unwrap();
    assert_eq!(old.silent, node_ids());
    assert!(old.warning(&w.request_id)[1].contains("sent back no signed results"));
}

#[test]
fn a_verdict_not_every_node_confirmed_is_a_warning_until_closed() {
    let (w, sent) = rejection();
    let stranger = SigningKey::from_bytes(&[99; 32]);
    let results = vec![
        result_for(&sent, 0, &node_key(0), true),
        result_for(&sent, 1, &stranger, true),
    ];
    let confirmed = approver()
        .confirm(&sent, &accepted(&sent, results))
        .unwrap();
    let mut app = console(&w, checked(&w, NOW + 1), NOW + 1);
    app.apply(Update::Submitted {
        verdict: Verdict::Reject,
        request_id: w.request_id.clone(),
        result: Ok(confirmed),
    });
    let msg = app.message.clone().unwrap();
    assert!(
        msg.starts_with("WARNING: rejection of request 0123456789ab… NOT confirmed by every node"),
        "{msg}"
    );
    let mut terminal = Terminal::new(TestBackend::new(120, 30)).unwrap();
    terminal.draw(|f| crate::ui::draw(f, &app)).unwrap();
    let s = terminal.backend().to_string();
    assert!(s.contains("rejection NOT confirmed by every node"), "{s}");
    insta::assert_snapshot!("verdict_not_confirmed", s);
    // It stays until closed on purpose: other keys do nothing meanwhile.
    assert_eq!(press(&mut app, 'r'), None);
    assert!(app.confirm.is_none() && app.unconfirmed.is_some());
    app.on_key(crate::KeyEvent::new(
        crate::KeyCode::Enter,
        crate::KeyModifiers::NONE,
    ));
    assert!(app.unconfirmed.is_none());
}
