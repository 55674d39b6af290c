//! The node's policy state and audit log against real SQLite files: policy bundles,
//! approvals, parked requests, the velocity ledger, the hash-chained signed audit
//! log (and what tampering with its rows does to verification), the current schema reached
//! from schema v3 and v4 stores, read-only opening, and the `keyrack audit` command as a
//! process.
//!
//! The golden fixture `tests/testdata/store/schema-v3.sqlite` was written by schema version 3
//! with `cargo test -p keyrack-node --test store -- --ignored write_golden_fixture`;
//! `schema-v4.sqlite` is that store migrated by schema version 4's step, holding two v4
//! approvals, written by `tests/testdata/store/schema-v4.py`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ed25519_dalek::{Signer, SigningKey, Verifier};
use keyrack_client::identity::PublicIdentity;
use keyrack_hsm::soft::SoftSealer;
use keyrack_node::store::{
    audit_signature_message, verify_audit, AuditBreak, AuditBreakReason, AuditRecord, NewApproval,
    Parked, ParkedRequest, ParkedState, Store, StoreError, VelocityEntry, VelocityPer,
    VelocityQuery, Verdict, VetoGroup, SCHEMA_VERSION,
};
use sha2::{Digest, Sha256};

const CLUSTER: &str = "cluster-a";
const NODE: &str = "node0";

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("node0.sqlite")
}

fn fresh() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir), CLUSTER, NODE).unwrap();
    (dir, store)
}

/// A raw connection to the same file, for what a test does behind the store's back.
fn raw(store: &Store) -> rusqlite::Connection {
    rusqlite::Connection::open(store.path()).unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// Policy bundles.

#[test]
fn bundles_activate_only_upwards_and_keep_their_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir), CLUSTER, NODE).unwrap();
    assert_eq!(store.active_bundle().unwrap(), None);
    assert!(store.bundle_history().unwrap().is_empty());

    let before = now_ms();
    store.activate_bundle(1, &[1; 32], "version = 1\n").unwrap();
    store.activate_bundle(2, &[2; 32], "version = 2\n").unwrap();
    let active = store.active_bundle().unwrap().unwrap();
    assert_eq!(
        (active.version, active.hash, active.bundle_toml.as_str()),
        (2, [2; 32], "version = 2\n")
    );
    assert!(active.activated_at_ms >= before && active.activated_at_ms <= now_ms());

    // The same version again, or an older one: refused, nothing changes.
    for (version, hash) in [(2, [2; 32]), (2, [9; 32]), (1, [1; 32])] {
        let err = store.activate_bundle(version, &hash, "x").unwrap_err();
        assert!(
            matches!(err, StoreError::StaleBundle { version: v, newest: 2 } if v == version),
            "{err}"
        );
        assert!(
            err.to_string().contains("not newer than version 2"),
            "{err}"
        );
    }
    let err = store.activate_bundle(0, &[0; 32], "x").unwrap_err();
    assert!(matches!(err, StoreError::InvalidRequest(_)), "{err}");

    // Versions may skip; history is newest first and survives a reopen.
    store.activate_bundle(5, &[5; 32], "version = 5\n").unwrap();
    drop(store);
    let store = Store::open(&db_path(&dir), CLUSTER, NODE).unwrap();
    let history = store.bundle_history().unwrap();
    assert_eq!(
        history.iter().map(|b| b.version).collect::<Vec<_>>(),
        [5, 2, 1]
    );
    assert_eq!(history[2].hash, [1; 32]);
    assert_eq!(history[2].bundle_toml, "version = 1\n");
    assert_eq!(store.active_bundle().unwrap().unwrap(), history[0]);
}

// Approvals.

fn approval<'a>(hash: [u8; 32], approver: &'a str, id: &'a str, expires: u64) -> NewApproval<'a> {
    NewApproval {
        request_hash: hash,
        verdict: Verdict::Approve,
        approver,
        approval_request_id: id,
        expires_at_ms: expires,
        signed_request: id.as_bytes(),
    }
}

#[test]
fn approvals_are_one_per_approver_keep_the_later_expiry_and_expire() {
    let (_dir, store) = fresh();
    let (h, other) = ([7; 32], [8; 32]);
    let t = 1_000_000;
    assert!(store
        .add_approval(&approval(h, "alice", "a1", t + 100))
        .unwrap());
    // Alice again, expiring earlier: not new, the later expiry stays.
    assert!(!store
        .add_approval(&approval(h, "alice", "a0", t + 50))
        .unwrap());
    let got = store.approvals_for(&h, t).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].approval_request_id.as_str(), got[0].expires_at_ms),
        ("a1", t + 100)
    );
    assert_eq!(got[0].signed_request, b"a1");
    // Alice again, expiring later: not new, the row takes it (with its evidence).
    assert!(!store
        .add_approval(&approval(h, "alice", "a2", t + 300))
        .unwrap());
    assert!(store
        .add_approval(&approval(h, "bob", "b1", t + 200))
        .unwrap());
    assert!(store
        .add_approval(&approval(other, "carol", "c1", t + 200))
        .unwrap());

    let got = store.approvals_for(&h, t).unwrap();
    assert_eq!(
        got.iter()
            .map(|a| (
                a.approver.as_str(),
                a.approval_request_id.as_str(),
                a.expires_at_ms
            ))
            .collect::<Vec<_>>(),
        [("alice", "a2", t + 300), ("bob", "b1", t + 200)]
    );
    assert!(got.iter().all(|a| a.request_hash == h));
    assert_eq!(got[0].signed_request, b"a2");

    // An approval counts strictly before its expiry.
    assert_eq!(store.approvals_for(&h, t + 199).unwrap().len(), 2);
    assert_eq!(store.approvals_for(&h, t + 200).unwrap().len(), 1);
    assert!(store.approvals_for(&h, t + 300).unwrap().is_empty());

    // Pruning removes exactly the expired ones.
    assert_eq!(store.prune_approvals(t + 200).unwrap(), 2, "bob and carol");
    assert_eq!(store.approvals_for(&h, t).unwrap().len(), 1);
    assert!(store.approvals_for(&other, t).unwrap().is_empty());
    assert_eq!(store.prune_approvals(t + 200).unwrap(), 0);

    let err = store.add_approval(&approval(h, "", "x", t)).unwrap_err();
    assert!(matches!(err, StoreError::InvalidRequest(_)), "{err}");
}

fn rejection<'a>(hash: [u8; 32], approver: &'a str, id: &'a str, expires: u64) -> NewApproval<'a> {
    NewApproval {
        verdict: Verdict::Reject,
        ..approval(hash, approver, id, expires)
    }
}

/// (approver, verdict, approval request id, expiry) of each unexpired record of `hash` at `t`.
fn verdicts(store: &Store, hash: &[u8; 32], t: u64) -> Vec<(String, Verdict, String, u64)> {
    store
        .approvals_for(hash, t)
        .unwrap()
        .into_iter()
        .map(|a| {
            (
                a.approver,
                a.verdict,
                a.approval_request_id,
                a.expires_at_ms,
            )
        })
        .collect()
}

fn row(approver: &str, verdict: Verdict, id: &str, expires: u64) -> (String, Verdict, String, u64) {
    (approver.to_owned(), verdict, id.to_owned(), expires)
}

#[test]
fn approvals_and_rejections_are_listed_with_their_verdict() {
    let (_dir, store) = fresh();
    let (h, t) = ([9; 32], 2_000_000);
    assert!(store
        .add_approval(&approval(h, "alice", "a1", t + 100))
        .unwrap());
    assert!(store
        .add_approval(&rejection(h, "bob", "b1", t + 100))
        .unwrap());
    assert_eq!(
        verdicts(&store, &h, t),
        [
            row("alice", Verdict::Approve, "a1", t + 100),
            row("bob", Verdict::Reject, "b1", t + 100)
        ]
    );
    let got = store.approvals_for(&h, t).unwrap();
    assert_eq!(
        got[1].signed_request, b"b1",
        "the rejection's evidence is kept"
    );
    assert_eq!(
        (Verdict::Approve.as_str(), Verdict::Reject.as_str()),
        ("approve", "reject")
    );
    // A rejection expires like an approval.
    assert_eq!(
        verdicts(&store, &h, t + 100),
        Vec::<(String, Verdict, String, u64)>::new()
    );
}

#[test]
fn a_rejection_replaces_the_approvers_approval_even_if_it_expires_sooner() {
    let (_dir, store) = fresh();
    let (h, t) = ([10; 32], 3_000_000);
    assert!(store
        .add_approval(&approval(h, "alice", "a1", t + 500))
        .unwrap());
    assert!(!store
        .add_approval(&rejection(h, "alice", "r1", t + 100))
        .unwrap());
    assert_eq!(
        verdicts(&store, &h, t),
        [row("alice", Verdict::Reject, "r1", t + 100)]
    );
    assert_eq!(store.approvals_for(&h, t).unwrap()[0].signed_request, b"r1");
    // Of two rejections, the later expiry is kept.
    assert!(!store
        .add_approval(&rejection(h, "alice", "r0", t + 50))
        .unwrap());
    assert!(!store
        .add_approval(&rejection(h, "alice", "r2", t + 300))
        .unwrap());
    assert_eq!(
        verdicts(&store, &h, t),
        [row("alice", Verdict::Reject, "r2", t + 300)]
    );
}

#[test]
fn an_approval_never_replaces_a_rejection() {
    let (_dir, store) = fresh();
    let (h, t) = ([11; 32], 4_000_000);
    assert!(store
        .add_approval(&rejection(h, "bob", "r1", t + 100))
        .unwrap());
    // Later, and expiring later: the approver cannot take the rejection back.
    assert!(!store
        .add_approval(&approval(h, "bob", "a1", t + 900))
        .unwrap());
    assert_eq!(
        verdicts(&store, &h, t),
        [row("bob", Verdict::Reject, "r1", t + 100)]
    );
    assert_eq!(store.approvals_for(&h, t).unwrap()[0].signed_request, b"r1");
    // Another approver's approval of the same request is its own record.
    assert!(store
        .add_approval(&approval(h, "carol", "c1", t + 100))
        .unwrap());
    assert_eq!(
        verdicts(&store, &h, t),
        [
            row("bob", Verdict::Reject, "r1", t + 100),
            row("carol", Verdict::Approve, "c1", t + 100)
        ]
    );
}

// Parked requests (waiting for approvals, or time-locked).

fn parked(id: &str, hash: u8, initiator: &str, state: ParkedState) -> ParkedRequest {
    ParkedRequest {
        request_id: id.into(),
        request_hash: [hash; 32],
        kind: "delete".into(),
        initiator: initiator.into(),
        key_id: "vault-1".into(),
        signed_request: format!("{{\"signed\":\"{id}\"}}").into_bytes(),
        state,
        expires_at_ms: 5_000_100,
        approvers: vec![],
        veto_groups: vec![],
        summary_json: r#"{"n":1}"#.into(),
        added_at_ms: 0,
    }
}

#[test]
fn parked_requests_keep_their_bytes_and_state_per_initiator_up_to_a_cap() {
    let (dir, store) = fresh();
    assert_eq!(
        store
            .park(&parked("r1", 1, "bot", ParkedState::Waiting), 2)
            .unwrap(),
        Parked::New
    );
    assert_eq!(
        store
            .park(&parked("r2", 2, "bot", ParkedState::Waiting), 2)
            .unwrap(),
        Parked::New
    );
    // The cap counts the initiator's parked requests; others have their own.
    let err = store
        .park(&parked("r3", 3, "bot", ParkedState::Waiting), 2)
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::TooManyParked { initiator, cap: 2 } if initiator == "bot"),
        "{err}"
    );
    assert!(store.parked("r3").unwrap().is_none(), "nothing of r3 kept");
    store
        .park(&parked("r4", 4, "alice", ParkedState::Waiting), 2)
        .unwrap();
    // Parked again as it is: unchanged (and not counted twice against the cap).
    assert_eq!(
        store
            .park(&parked("r1", 1, "bot", ParkedState::Waiting), 2)
            .unwrap(),
        Parked::Unchanged
    );
    // Time-locked: its times and approvers kept.
    let lock = ParkedState::Locked {
        locked_at_ms: 5_000_000,
        run_at_ms: 5_086_400,
    };
    let mut locked = parked("r1", 1, "bot", lock);
    locked.approvers = vec!["bob".into(), "carol".into()];
    locked.veto_groups = vec![VetoGroup {
        group: "treasury".into(),
        rule: "delete".into(),
        required: 2,
    }];
    assert_eq!(store.park(&locked, 2).unwrap(), Parked::Changed);
    let r1 = store.parked("r1").unwrap().unwrap();
    assert_eq!((r1.state, r1.due_at_ms()), (lock, 5_086_400));
    assert_eq!(r1.approvers, ["bob", "carol"]);
    assert_eq!(r1.veto_groups, locked.veto_groups);
    assert_eq!(r1.signed_request, br#"{"signed":"r1"}"#);
    assert_eq!(
        store.parked("r2").unwrap().unwrap().due_at_ms(),
        5_000_100,
        "a waiting request is due at its expiry"
    );
    // Another request under a parked id is refused.
    let err = store
        .park(&parked("r1", 9, "bot", ParkedState::Waiting), 2)
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidRequest(m) if m.contains("'r1' is parked")),
        "{err}"
    );
    // They survive reopening (a restart), oldest first.
    drop(store);
    let store = Store::open(&db_path(&dir), CLUSTER, NODE).unwrap();
    let ids: Vec<String> = store
        .parked_requests()
        .unwrap()
        .into_iter()
        .map(|p| p.request_id)
        .collect();
    assert_eq!(ids, ["r1", "r2", "r4"]);
    // The keeper's view: soonest due first, without the bytes.
    let due: Vec<(String, u64)> = store
        .parked_due()
        .unwrap()
        .into_iter()
        .map(|p| (p.request_id, p.due_at_ms))
        .collect();
    assert_eq!(
        due,
        [
            ("r2".to_owned(), 5_000_100),
            ("r4".to_owned(), 5_000_100),
            ("r1".to_owned(), 5_086_400)
        ]
    );
    // Taken out only by its own hash (another request under its id takes nothing); then
    // the initiator has room again.
    assert!(!store.unpark("r2", &[9; 32]).unwrap());
    assert!(store.unpark("r2", &[2; 32]).unwrap());
    assert!(!store.unpark("r2", &[2; 32]).unwrap());
    store
        .park(&parked("r3", 3, "bot", ParkedState::Waiting), 2)
        .unwrap();
    // A time-locked row must have its times.
    let err = raw(&store)
        .execute(
            "UPDATE parked_requests SET state = 'LOCKED', run_at = NULL WHERE request_id = 'r3'",
            [],
        )
        .unwrap_err();
    assert!(err.to_string().contains("CHECK"), "{err}");
}

// The velocity ledger.

fn entry(
    key: &str,
    initiator: &str,
    dest: Option<&str>,
    asset: Option<&str>,
    amount: u128,
) -> VelocityEntry {
    VelocityEntry {
        key_id: key.into(),
        initiator: initiator.into(),
        destination: dest.map(Into::into),
        asset: asset.map(Into::into),
        amount,
    }
}

fn query<'a>(
    per: VelocityPer,
    who: &'a str,
    asset: Option<&'a str>,
    since_ms: u64,
) -> VelocityQuery<'a> {
    VelocityQuery {
        per,
        key_id: who,
        initiator: who,
        destination: Some(who),
        asset,
        since_ms,
    }
}

#[test]
fn release_frees_only_what_is_reserved() {
    let (_dir, store) = fresh();
    let e = |amount| entry("k1", "ann", Some("0xdead"), Some("ETH"), amount);
    store.reserve("r1", 1_000, &[e(10), e(20)]).unwrap();
    store.reserve("r2", 1_000, &[e(5)]).unwrap();
    let key = query(VelocityPer::Key, "k1", Some("ETH"), 0);
    assert_eq!(store.usage(&key).unwrap(), (35, 2));

    // A request is reserved once, whatever its state.
    let err = store.reserve("r1", 2_000, &[e(1)]).unwrap_err();
    assert!(
        matches!(&err, StoreError::WrongState { what, state, .. }
            if what.contains("'r1'") && state == "RESERVED"),
        "{err}"
    );
    store.commit_reservation("r1").unwrap();
    store.commit_reservation("r1").unwrap(); // again: nothing changes
    let err = store.reserve("r1", 2_000, &[]).unwrap_err();
    assert!(
        matches!(&err, StoreError::WrongState { state, .. } if state == "COMMITTED"),
        "{err}"
    );

    // Releasing a committed request frees nothing; a reserved one frees its entries.
    assert_eq!(store.release_reservation("r1").unwrap(), 0);
    assert_eq!(store.usage(&key).unwrap(), (35, 2));
    assert_eq!(store.release_reservation("r2").unwrap(), 1);
    assert_eq!(store.usage(&key).unwrap(), (30, 1));
    assert_eq!(store.release_reservation("r2").unwrap(), 0);
    assert_eq!(store.release_reservation("never").unwrap(), 0);
    let err = store.commit_reservation("r2").unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");

    // A request that moves nothing is reserved all the same.
    store.reserve("r3", 1_000, &[]).unwrap();
    assert!(store.reserve("r3", 1_000, &[]).is_err());
    assert_eq!(store.release_reservation("r3").unwrap(), 0);
    store.reserve("r3", 1_000, &[]).unwrap();
}

#[test]
fn usage_counts_per_scope_asset_and_window() {
    let (_dir, store) = fresh();
    // r1: ann moves 100 ETH from k1 to A and 7 USDC to B; r2: bob moves 50 ETH from k1 to A
    // twice (two transfers, one request); r3: ann moves 1 ETH from k2 to A, long ago.
    store
        .reserve(
            "r1",
            10_000,
            &[
                entry("k1", "ann", Some("A"), Some("ETH"), 100),
                entry("k1", "ann", Some("B"), Some("USDC"), 7),
            ],
        )
        .unwrap();
    store
        .reserve(
            "r2",
            20_000,
            &[
                entry("k1", "bob", Some("A"), Some("ETH"), 50),
                entry("k1", "bob", Some("A"), Some("ETH"), 50),
            ],
        )
        .unwrap();
    store.commit_reservation("r2").unwrap();
    store
        .reserve(
            "r3",
            1_000,
            &[entry("k2", "ann", Some("A"), Some("ETH"), 1)],
        )
        .unwrap();
    // A transfer the decoder gave no destination or asset.
    store
        .reserve("r4", 30_000, &[entry("k1", "ann", None, None, 1_000)])
        .unwrap();

    let u = |per, who, asset, since| store.usage(&query(per, who, asset, since)).unwrap();
    use VelocityPer::{Destination, Initiator, Key};
    // Per key: reserved and committed both count; requests counted once each.
    assert_eq!(u(Key, "k1", Some("ETH"), 0), (200, 3));
    assert_eq!(u(Key, "k1", Some("USDC"), 0), (7, 3));
    assert_eq!(u(Key, "k1", None, 0), (0, 3), "no asset: count only");
    assert_eq!(u(Key, "k2", Some("ETH"), 0), (1, 1));
    assert_eq!(u(Key, "k3", Some("ETH"), 0), (0, 0));
    // Per initiator.
    assert_eq!(u(Initiator, "ann", Some("ETH"), 0), (101, 3));
    assert_eq!(u(Initiator, "bob", Some("ETH"), 0), (100, 1));
    // Per destination.
    assert_eq!(u(Destination, "A", Some("ETH"), 0), (201, 3));
    assert_eq!(u(Destination, "B", Some("ETH"), 0), (0, 1));
    assert_eq!(u(Destination, "B", Some("USDC"), 0), (7, 1));
    let no_destination = VelocityQuery {
        destination: None,
        ..query(Destination, "A", Some("ETH"), 0)
    };
    assert_eq!(store.usage(&no_destination).unwrap(), (0, 0));

    // The window: an entry exactly at since_ms counts, one just before it does not.
    assert_eq!(u(Key, "k1", Some("ETH"), 10_000), (200, 3));
    assert_eq!(u(Key, "k1", Some("ETH"), 10_001), (100, 2));
    assert_eq!(u(Key, "k1", Some("ETH"), 20_000), (100, 2));
    assert_eq!(u(Key, "k1", Some("ETH"), 20_001), (0, 1));
    assert_eq!(u(Destination, "A", Some("ETH"), 1_000), (201, 3));
    assert_eq!(u(Destination, "A", Some("ETH"), 1_001), (200, 2));

    // Amounts are u128 end to end and sum saturating.
    store
        .reserve(
            "big",
            40_000,
            &[
                entry("k9", "ann", Some("A"), Some("WEI"), u128::MAX - 1),
                entry("k9", "ann", Some("A"), Some("WEI"), 2),
            ],
        )
        .unwrap();
    assert_eq!(u(Key, "k9", Some("WEI"), 0), (u128::MAX, 1));
    store.release_reservation("big").unwrap();
    store
        .reserve(
            "big2",
            40_000,
            &[entry("k9", "ann", None, Some("WEI"), u128::MAX - 1)],
        )
        .unwrap();
    assert_eq!(u(Key, "k9", Some("WEI"), 0), (u128::MAX - 1, 1));

    // Pruning drops committed requests before a time, nothing reserved.
    assert_eq!(store.prune_velocity(25_000).unwrap(), 1, "r2 only");
    assert_eq!(u(Key, "k1", Some("ETH"), 0), (100, 2));
    assert_eq!(u(Key, "k2", Some("ETH"), 0), (1, 1), "r3 is still reserved");
}

#[test]
fn a_restart_settles_reservations_as_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir), CLUSTER, NODE).unwrap();
    let e = entry("k1", "ann", Some("A"), Some("ETH"), 10);
    store
        .reserve("r1", 1_000, std::slice::from_ref(&e))
        .unwrap();
    store
        .reserve("r2", 1_000, std::slice::from_ref(&e))
        .unwrap();
    store
        .reserve("r3", 1_000, std::slice::from_ref(&e))
        .unwrap();
    store.commit_reservation("r3").unwrap();
    drop(store); // the node dies mid-signing of r1 and r2

    let store = Store::open(&db_path(&dir), CLUSTER, NODE).unwrap();
    assert_eq!(store.settle_reservations_at_start().unwrap(), 2);
    assert_eq!(store.settle_reservations_at_start().unwrap(), 0);
    // A late release (the signing "failed") frees nothing now: the share may have left.
    assert_eq!(store.release_reservation("r1").unwrap(), 0);
    let q = query(VelocityPer::Key, "k1", Some("ETH"), 0);
    assert_eq!(store.usage(&q).unwrap(), (30, 3));
}

// The audit log.

fn node_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// The node's signer as the daemon is told to write it.
fn signer(key: &SigningKey) -> impl Fn(&[u8; 32]) -> [u8; 64] + '_ {
    move |hash| key.sign(&audit_signature_message(hash)).to_bytes()
}

/// The entry hash, written out here from the documented layout (not the store's function).
fn expected_hash(r: &AuditRecord) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"keyrack/v1/audit\0");
    h.update(r.seq.to_be_bytes());
    h.update(r.at_ms.to_be_bytes());
    h.update(r.prev_hash);
    h.update((r.kind.len() as u32).to_be_bytes());
    h.update(r.kind.as_bytes());
    let id = r.request_id.as_deref().unwrap_or("");
    h.update((id.len() as u32).to_be_bytes());
    h.update(id.as_bytes());
    h.update(r.entry.as_bytes());
    h.finalize().into()
}

/// A store holding a log of five entries.
fn five_entries() -> (tempfile::TempDir, Store, Vec<AuditRecord>) {
    let (dir, store) = fresh();
    let key = node_key();
    let sign = signer(&key);
    let mut out = Vec::new();
    for i in 1..=5 {
        let request = (i % 2 == 1).then(|| format!("req-{i}"));
        let kind = if i % 2 == 1 { "decision" } else { "outcome" };
        let r = store
            .append_audit(kind, request.as_deref(), &format!(r#"{{"i":{i}}}"#), &sign)
            .unwrap();
        out.push(r);
    }
    (dir, store, out)
}

fn verify_store(store: &Store) -> Result<keyrack_node::store::AuditSummary, AuditBreak> {
    let via_store = store.verify_audit_log(&node_key().verifying_key()).unwrap();
    // The pure verifier over the same rows agrees.
    let rows = store.audit_page(0, usize::MAX).unwrap();
    assert_eq!(
        verify_audit(rows.into_iter(), &node_key().verifying_key()),
        via_store
    );
    via_store
}

#[test]
fn the_audit_log_is_a_signed_hash_chain() {
    let (_dir, store, records) = five_entries();
    let public = node_key().verifying_key();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        let prev = if i == 0 { [0; 32] } else { records[i - 1].hash };
        assert_eq!(r.prev_hash, prev);
        assert_eq!(r.hash, expected_hash(r), "seq {}", r.seq);
        // The signature, checked with ed25519-dalek over the documented message.
        let mut message = b"keyrack/v1/audit-entry\0".to_vec();
        message.extend_from_slice(&r.hash);
        let signature = ed25519_dalek::Signature::from_bytes(&r.signature);
        public.verify(&message, &signature).unwrap();
        public.verify_strict(&message, &signature).unwrap();
    }
    assert_eq!(records[0].request_id.as_deref(), Some("req-1"));
    assert_eq!(records[1].request_id, None);
    assert_eq!(store.audit_page(0, 100).unwrap(), records);
    assert_eq!(store.audit_page(2, 2).unwrap(), records[2..4]);
    assert!(store.audit_page(5, 10).unwrap().is_empty());
    assert_eq!(store.audit_head().unwrap().as_ref(), records.last());

    let summary = verify_store(&store).unwrap();
    assert_eq!((summary.entries, summary.head_hash), (5, records[4].hash));

    // Another node's key: the first entry fails.
    let other = SigningKey::from_bytes(&[43; 32]).verifying_key();
    assert_eq!(
        store.verify_audit_log(&other).unwrap(),
        Err(AuditBreak {
            seq: 1,
            reason: AuditBreakReason::BadSignature
        })
    );

    // An empty log verifies with the zero head.
    let (_dir2, empty) = fresh();
    let summary = empty.verify_audit_log(&public).unwrap().unwrap();
    assert_eq!((summary.entries, summary.head_hash), (0, [0; 32]));
    assert_eq!(empty.audit_head().unwrap(), None);
}

#[test]
fn bad_audit_entries_are_refused() {
    let (_dir, store) = fresh();
    let key = node_key();
    let sign = signer(&key);
    for (kind, request, entry, expected) in [
        ("decision", None, "not json", "is not JSON"),
        ("decision", None, r#"{"a":1} trailing"#, "is not JSON"),
        ("", None, "{}", "kind"),
        ("decision", Some(""), "{}", "request id"),
    ] {
        let err = store.append_audit(kind, request, entry, &sign).unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidRequest(m) if m.contains(expected)),
            "{expected}: {err}"
        );
    }
    assert_eq!(store.audit_head().unwrap(), None);
}

#[test]
fn the_audit_table_refuses_changes_until_its_triggers_are_dropped() {
    let (_dir, store, _) = five_entries();
    let conn = raw(&store);
    for sql in [
        "UPDATE audit_log SET entry = '{}' WHERE seq = 3",
        "DELETE FROM audit_log WHERE seq = 5",
    ] {
        let err = conn.execute(sql, []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(verify_store(&store).unwrap().entries, 5);
}

/// Runs `tamper` (SQL) on a fresh five-entry log, as someone with write access to the file
/// would: the append-only triggers dropped first.
fn tampered(tamper: &str) -> (tempfile::TempDir, Store, Vec<AuditRecord>) {
    let (dir, store, records) = five_entries();
    let conn = raw(&store);
    conn.execute_batch("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;")
        .unwrap();
    conn.execute_batch(tamper).unwrap();
    (dir, store, records)
}

#[test]
fn tampering_with_audit_rows_breaks_verification_at_the_entry() {
    use AuditBreakReason::*;
    let cases: [(&str, &str, u64, AuditBreakReason); 5] = [
        (
            "an entry's text changed",
            r#"UPDATE audit_log SET entry = '{"i":33}' WHERE seq = 3"#,
            3,
            HashMismatch,
        ),
        (
            "an entry's kind changed",
            "UPDATE audit_log SET kind = 'outcome' WHERE seq = 1",
            1,
            HashMismatch,
        ),
        (
            "a middle entry deleted",
            "DELETE FROM audit_log WHERE seq = 3",
            3,
            Missing { found: 4 },
        ),
        (
            "two entries' seq swapped",
            "UPDATE audit_log SET seq = 100 WHERE seq = 2;
             UPDATE audit_log SET seq = 2 WHERE seq = 4;
             UPDATE audit_log SET seq = 4 WHERE seq = 100;",
            2,
            HashMismatch,
        ),
        (
            "a signature replaced by another entry's",
            "UPDATE audit_log SET signature = (SELECT signature FROM audit_log WHERE seq = 2)
             WHERE seq = 4",
            4,
            BadSignature,
        ),
    ];
    for (what, sql, seq, reason) in cases {
        let (_dir, store, _) = tampered(sql);
        assert_eq!(
            verify_store(&store),
            Err(AuditBreak { seq, reason }),
            "{what}"
        );
    }

    // The first entry deleted: the chain must start at 1.
    let (_dir, store, _) = tampered("DELETE FROM audit_log WHERE seq = 1");
    assert_eq!(
        verify_store(&store),
        Err(AuditBreak {
            seq: 1,
            reason: Missing { found: 2 }
        })
    );
}

#[test]
fn rehashing_an_altered_entry_needs_the_node_key_and_still_breaks_the_link() {
    // Without the key: the entry re-hashed consistently, but its signature no longer fits.
    let (_dir, store, records) = five_entries();
    let mut forged = records[2].clone();
    forged.entry = r#"{"i":"forged"}"#.into();
    forged.hash = expected_hash(&forged);
    let replace = |store: &Store, r: &AuditRecord| {
        let conn = raw(store);
        conn.execute_batch("DROP TRIGGER IF EXISTS audit_log_no_update;")
            .unwrap();
        conn.execute(
            "UPDATE audit_log SET entry = ?2, prev_hash = ?3, hash = ?4, signature = ?5
             WHERE seq = ?1",
            rusqlite::params![
                r.seq as i64,
                r.entry,
                r.prev_hash.as_slice(),
                r.hash.as_slice(),
                r.signature.as_slice()
            ],
        )
        .unwrap();
    };
    replace(&store, &forged);
    assert_eq!(
        verify_store(&store),
        Err(AuditBreak {
            seq: 3,
            reason: AuditBreakReason::BadSignature
        })
    );

    // With the key, but without rewriting what follows: entry 4 no longer links to 3.
    forged.signature = signer(&node_key())(&forged.hash);
    replace(&store, &forged);
    assert_eq!(
        verify_store(&store),
        Err(AuditBreak {
            seq: 4,
            reason: AuditBreakReason::BrokenLink
        })
    );

    // An entry spliced in with a wrong previous hash (re-hashed and re-signed).
    let (_dir, store, records) = five_entries();
    let mut spliced = records[1].clone();
    spliced.prev_hash = [0xAA; 32];
    spliced.hash = expected_hash(&spliced);
    spliced.signature = signer(&node_key())(&spliced.hash);
    replace(&store, &spliced);
    assert_eq!(
        verify_store(&store),
        Err(AuditBreak {
            seq: 2,
            reason: AuditBreakReason::BrokenLink
        })
    );
}

#[test]
fn a_log_cut_short_verifies_but_its_head_hash_changes() {
    let (_dir, store, records) = tampered("DELETE FROM audit_log WHERE seq > 3");
    let summary = verify_store(&store).unwrap();
    assert_eq!(summary.entries, 3);
    assert_eq!(summary.head_hash, records[2].hash);
    assert_ne!(
        summary.head_hash, records[4].hash,
        "the anchored head hash exposes the cut"
    );
    assert_eq!(store.audit_head().unwrap().unwrap().seq, 3);
}

// The current schema from v3 and v4 stores, and read-only opening.

/// A copy of the golden fixture of schema `version` in `dir`.
fn fixture(dir: &tempfile::TempDir, version: u32) -> PathBuf {
    let path = dir.path().join("fixture.sqlite");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/testdata/store/schema-v{version}.sqlite")),
        &path,
    )
    .expect("golden fixture missing; see module docs");
    path
}

/// The versions listed in a store's schema history.
fn schema_history(store: &Store) -> Vec<i64> {
    let conn = raw(store);
    let mut q = conn
        .prepare("SELECT version FROM schema_history ORDER BY version")
        .unwrap();
    q.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_schema_v3_store_migrates_to_the_current_schema_and_keeps_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture(&dir, 3);
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3, "the fixture is a schema v3 store");
    // A reader cannot migrate: it says what to do.
    let err = Store::open_read_only(&path, "node0").unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooOld { found: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("start the node"), "{err}");

    let store = Store::open(&path, "golden", "node0").unwrap();
    assert_eq!(SCHEMA_VERSION, 6);
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(schema_history(&store), [1, 2, 3, 4, 5, 6]);
    // What v3 held still loads.
    let sealer = SoftSealer::from_passphrase(b"test", &[7; 16]).unwrap();
    let share = store
        .load_share("golden-wallet", "ecdsa-secp256k1", &sealer)
        .unwrap();
    assert_eq!(share.threshold, 2);
    // The new state starts empty and works.
    assert_eq!(store.active_bundle().unwrap(), None);
    store.activate_bundle(1, &[1; 32], "v1").unwrap();
    let key = node_key();
    store
        .append_audit("policy", None, r#"{"version":1}"#, &signer(&key))
        .unwrap();
    assert_eq!(verify_store(&store).unwrap().entries, 1);
}

#[test]
fn a_schema_v4_store_migrates_and_its_approvals_become_approves() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture(&dir, 4);
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4, "the fixture is a schema v4 store");
    let store = Store::open(&path, "golden", "node0").unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(schema_history(&store), [1, 2, 3, 4, 5, 6]);
    // The approval queue of v4 is gone; parked requests start empty.
    assert!(store.parked_requests().unwrap().is_empty());
    let (h, t) = ([7; 32], now_ms());
    let far = 4_102_444_800_000;
    assert_eq!(
        verdicts(&store, &h, t),
        [
            row("alice", Verdict::Approve, "approve-alice", far),
            row("bob", Verdict::Approve, "approve-bob", far)
        ]
    );
    assert_eq!(
        store.approvals_for(&h, t).unwrap()[1].signed_request,
        b"approve-bob"
    );
    // A migrated approval is replaced by its approver's rejection, as any approval.
    assert!(!store
        .add_approval(&rejection(h, "bob", "reject-bob", far))
        .unwrap());
    assert_eq!(
        verdicts(&store, &h, t)[1],
        row("bob", Verdict::Reject, "reject-bob", far)
    );
    // The column refuses anything but the two verdicts.
    let err = raw(&store)
        .execute(
            "UPDATE approvals SET verdict = 'maybe' WHERE approver = 'alice'",
            [],
        )
        .unwrap_err();
    assert!(err.to_string().contains("CHECK"), "{err}");
    // What v3 held still loads.
    let sealer = SoftSealer::from_passphrase(b"test", &[7; 16]).unwrap();
    assert_eq!(
        store
            .load_share("golden-wallet", "ecdsa-secp256k1", &sealer)
            .unwrap()
            .threshold,
        2
    );
}

#[test]
fn a_reader_opens_the_store_beside_its_writer_and_cannot_write() {
    let (dir, store, records) = five_entries();
    let reader = Store::open_read_only(&db_path(&dir), NODE).unwrap();
    assert_eq!(reader.cluster_id(), CLUSTER);
    assert_eq!(reader.audit_page(0, 100).unwrap(), records);
    // The writer goes on; the reader sees it.
    let key = node_key();
    store
        .append_audit("outcome", Some("req-6"), "{}", &signer(&key))
        .unwrap();
    assert_eq!(reader.audit_head().unwrap().unwrap().seq, 6);
    assert_eq!(
        reader
            .verify_audit_log(&key.verifying_key())
            .unwrap()
            .unwrap()
            .entries,
        6
    );
    let err = reader
        .append_audit("x", None, "{}", &signer(&key))
        .unwrap_err();
    assert!(err.to_string().contains("readonly"), "{err}");

    // Another node's store, a missing file, a foreign database.
    let err = Store::open_read_only(&db_path(&dir), "node1").unwrap_err();
    assert!(matches!(err, StoreError::IdentityMismatch { .. }), "{err}");
    let missing = dir.path().join("missing.sqlite");
    let err = Store::open_read_only(&missing, NODE).unwrap_err();
    assert!(
        matches!(&err, StoreError::Io { path, .. } if path == &missing),
        "{err}"
    );
    assert!(!missing.exists(), "a reader never creates the file");
    let foreign = dir.path().join("foreign.sqlite");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER)")
        .unwrap();
    let err = Store::open_read_only(&foreign, NODE).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
}

#[test]
fn a_reader_opens_a_store_whose_writer_has_closed() {
    // No -wal or -shm file left: a read-only open still works.
    let (dir, store, records) = five_entries();
    drop(store);
    let reader = Store::open_read_only(&db_path(&dir), NODE).unwrap();
    assert_eq!(reader.audit_head().unwrap().as_ref(), records.last());
}

// `keyrack audit` as a process.

/// A node directory with a config, a public identity and a store holding five entries.
struct NodeDir {
    dir: tempfile::TempDir,
    store: Store,
    records: Vec<AuditRecord>,
}

fn node_dir() -> NodeDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("keyrack.toml"),
        "[node]\nid = \"node0\"\n\n[hsm]\nbackend = \"soft\"\n\n[cluster]\n\
         manifest = \"manifest.toml\"\nnats = [\"nats://127.0.0.1:1\"]\nstore = \"node.db\"\n",
    )
    .unwrap();
    let public = PublicIdentity::sign(NODE, &node_key(), [9; 32]).unwrap();
    std::fs::write(dir.path().join("identity.pub.toml"), public.to_toml()).unwrap();
    let store = Store::open(&dir.path().join("node.db"), CLUSTER, NODE).unwrap();
    let key = node_key();
    let records = (1..=5)
        .map(|i| {
            store
                .append_audit(
                    "decision",
                    Some(&format!("r{i}")),
                    r#"{"ok":true}"#,
                    &signer(&key),
                )
                .unwrap()
        })
        .collect();
    NodeDir {
        dir,
        store,
        records,
    }
}

fn keyrack(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keyrack"))
        .args(args)
        .current_dir(dir)
        .env("KEYRACK_LOG", "error")
        .output()
        .expect("run keyrack")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn keyrack_audit_verify_exits_0_on_a_good_log_and_1_on_a_broken_one() {
    let n = node_dir();
    let config = n.dir.path().join("keyrack.toml");
    let config = config.to_str().unwrap();
    let head = hex::encode(n.records[4].hash);

    // The node's store is open (as a running node's would be) while the command runs.
    let out = keyrack(Path::new("/"), &["audit", "verify", "--config", config]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("verifies: 5 entries"), "{stdout}");
    assert!(stdout.contains(&head), "{stdout}");

    // keyrack.toml in the working directory is the default config.
    let out = keyrack(n.dir.path(), &["audit", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["entries"], 5);
    assert_eq!(report["head_hash"], head.as_str());

    let out = keyrack(n.dir.path(), &["audit", "show", "--after", "3", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shown = shown.as_array().unwrap();
    assert_eq!(shown.len(), 2);
    assert_eq!(shown[0]["seq"], 4);
    assert_eq!(shown[0]["request_id"], "r4");
    assert_eq!(shown[0]["entry"]["ok"], true);
    assert_eq!(shown[1]["hash"], head.as_str());
    let out = keyrack(n.dir.path(), &["audit", "show", "--limit", "2"]);
    assert_eq!(text(&out.stdout).lines().count(), 2);

    // Tampered: exit 1, naming the entry and why.
    let conn = raw(&n.store);
    conn.execute_batch(
        "DROP TRIGGER audit_log_no_update;
         UPDATE audit_log SET entry = '{\"ok\":false}' WHERE seq = 3;",
    )
    .unwrap();
    let out = keyrack(n.dir.path(), &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("does NOT verify: entry 3: its contents do not hash"),
        "{stdout}"
    );
    let out = keyrack(n.dir.path(), &["audit", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["ok"].clone(), report["break_seq"].clone()),
        (false.into(), 3.into())
    );
}

#[test]
fn keyrack_audit_verify_exits_2_when_it_cannot_check() {
    let n = node_dir();
    // No config.
    let empty = tempfile::tempdir().unwrap();
    let out = keyrack(empty.path(), &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("keyrack.toml"),
        "{}",
        text(&out.stderr)
    );
    // A public identity of another node.
    let other = SigningKey::from_bytes(&[5; 32]);
    let public = PublicIdentity::sign("node1", &other, [9; 32]).unwrap();
    std::fs::write(n.dir.path().join("identity.pub.toml"), public.to_toml()).unwrap();
    let out = keyrack(n.dir.path(), &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is node node1's, but the config is node node0's"),
        "{}",
        text(&out.stderr)
    );
    // No store yet.
    std::fs::remove_file(n.store.path()).unwrap();
    let out = keyrack(n.dir.path(), &["audit", "show"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("node.db"),
        "{}",
        text(&out.stderr)
    );
}
