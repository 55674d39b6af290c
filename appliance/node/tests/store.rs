//! The node's SQLite store against real database files: schema and migrations, the keygen
//! state machine, sealed shares and their AAD binding, replay store, sessions, presignature
//! pools, deletion, and a scan of the raw files for secrets.
//!
//! The golden fixture `tests/testdata/store/schema-v1.sqlite` was written by schema version 1;
//! regenerate it only when adding a new fixture for a new schema version:
//!
//! ```text
//! cargo test -p keyrack-node --test store -- --ignored write_golden_fixture
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, OnceLock};
use std::thread;
use std::time::{Duration, SystemTime};

use keyrack_hsm::soft::SoftSealer;
use keyrack_hsm::{BackendId, Health, SealError, Sealer};
use keyrack_node::store::{
    KeyStatus, KeygenStart, NewKey, NewSession, NextCommittee, ReplayEntry, SessionState, Store,
    StoreError, SCHEMA_VERSION,
};
use keyrack_plugin::{KeyShare, Presignature};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const CLUSTER: &str = "cluster-a";
const NODE: &str = "node0";
const ECDSA: &str = "ecdsa-secp256k1";
const EDDSA: &str = "ed25519";

fn sealer() -> &'static SoftSealer {
    static SEALER: OnceLock<SoftSealer> = OnceLock::new();
    SEALER.get_or_init(|| SoftSealer::from_passphrase(b"test", &[7; 16]).unwrap())
}

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("node0.sqlite")
}

fn open(path: &Path) -> Store {
    Store::open(path, CLUSTER, NODE).unwrap()
}

fn fresh() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir));
    (dir, store)
}

/// A raw connection to the same file, for what a test does behind the store's back.
fn raw(store: &Store) -> rusqlite::Connection {
    rusqlite::Connection::open(store.path()).unwrap()
}

/// Distinctive bytes: no other test value and no SQLite structure contains them by chance.
fn marker(label: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = Sha256::digest(label.as_bytes()).to_vec();
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha256::digest(&block).to_vec();
    }
    out.truncate(len);
    out
}

fn new_key() -> NewKey {
    NewKey {
        threshold: 2,
        parties: 3,
        participants: vec!["node0".into(), "node1".into(), "node2".into()],
        allow_reuse_of_deleted_id: false,
    }
}

fn share(key_id: &str, scheme: &str) -> KeyShare {
    let mut public_key = vec![0x02];
    public_key.extend(marker(&format!("public {key_id} {scheme}"), 32));
    KeyShare {
        scheme: scheme.into(),
        public_key,
        chain_code: marker(&format!("chain {key_id} {scheme}"), 32)
            .try_into()
            .unwrap(),
        threshold: 2,
        parties: 3,
        index: 0,
        secret: Zeroizing::new(marker(&format!("secret {key_id} {scheme}"), 96)),
    }
}

fn presignature(share: &KeyShare, signers: &[u16], n: usize) -> Presignature {
    Presignature {
        scheme: share.scheme.clone(),
        public_key: share.public_key.clone(),
        signers: signers.to_vec(),
        secret: Zeroizing::new(marker(&format!("presig {} {n}", share.scheme), 80)),
    }
}

/// Adds one presignature for version 1 of a READY key made from `s`.
fn add_presignature(store: &Store, key_id: &str, s: &KeyShare, signers: &[u16], n: usize) {
    store
        .add_presignature(key_id, &s.scheme, 1, &presignature(s, signers, n), sealer())
        .unwrap();
}

fn make_ready(store: &Store, key_id: &str, scheme: &str) -> KeyShare {
    let s = share(key_id, scheme);
    assert!(matches!(
        store.begin_keygen(key_id, scheme, &new_key()).unwrap(),
        KeygenStart::Started { version: 1 }
    ));
    store.complete_keygen(key_id, scheme, &s, sealer()).unwrap();
    s
}

fn status(store: &Store, key_id: &str, scheme: &str) -> KeyStatus {
    store.key(key_id, scheme).unwrap().unwrap().status
}

fn share_rows(store: &Store, key_id: &str) -> i64 {
    raw(store)
        .query_row(
            "SELECT count(*) FROM key_shares WHERE key_id = ?1",
            [key_id],
            |r| r.get(0),
        )
        .unwrap()
}

/// The database file and its WAL, as bytes on disk.
fn file_bytes(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if let Ok(w) = std::fs::read(PathBuf::from(wal)) {
        bytes.extend(w);
    }
    bytes
}

/// Whether any 16-byte window of `needle` occurs in `hay`.
fn leaks(hay: &[u8], needle: &[u8]) -> bool {
    needle.windows(16).any(|w| hay.windows(16).any(|h| h == w))
}

/// A sealer whose HSM fails every seal (or panics mid-seal): a crash between seal and commit.
struct BrokenSealer {
    panic: bool,
}

impl Sealer for BrokenSealer {
    fn backend(&self) -> BackendId {
        BackendId::Soft
    }
    fn key_id(&self) -> &str {
        "broken"
    }
    fn seal(&self, _aad: &[u8], _plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        if self.panic {
            panic!("HSM vanished mid-seal");
        }
        Err(SealError::Backend {
            backend: BackendId::Soft,
            operation: "encrypt",
            detail: "device removed".into(),
        })
    }
    fn unseal(&self, aad: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        sealer().unseal(aad, blob)
    }
    fn health(&self) -> Health {
        sealer().health()
    }
}

#[test]
fn migrates_an_empty_file_to_the_current_schema_privately() {
    let (_dir, store) = fresh();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let conn = raw(&store);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let history: i64 = conn
        .query_row("SELECT max(version) FROM schema_history", [], |r| r.get(0))
        .unwrap();
    assert_eq!(history, SCHEMA_VERSION);
    use std::os::unix::fs::PermissionsExt;
    let perms = std::fs::metadata(store.path()).unwrap().permissions();
    assert_eq!(perms.mode() & 0o777, 0o600);
}

#[test]
fn reopening_keeps_keys_and_shares() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let s = make_ready(&open(&path), "wallet-1", ECDSA);
    let store = open(&path);
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(status(&store, "wallet-1", ECDSA), KeyStatus::Ready);
    let back = store.load_share("wallet-1", ECDSA, sealer()).unwrap();
    assert_eq!(back.secret, s.secret);
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(open(&path));
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 999)
        .unwrap();
    match Store::open(&path, CLUSTER, NODE) {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (999, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 999, "a refused store is never downgraded");
}

#[test]
fn another_nodes_store_or_a_foreign_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(open(&path));
    assert!(matches!(
        Store::open(&path, CLUSTER, "node1"),
        Err(StoreError::IdentityMismatch { field: "node", .. })
    ));
    assert!(matches!(
        Store::open(&path, "cluster-b", NODE),
        Err(StoreError::IdentityMismatch {
            field: "cluster",
            ..
        })
    ));
    let other = dir.path().join("other.sqlite");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    assert!(matches!(
        Store::open(&other, CLUSTER, NODE),
        Err(StoreError::NotAStore { .. })
    ));
}

#[test]
fn keygen_follows_the_key_status() {
    let (_dir, store) = fresh();
    let k = "wallet-1";
    // No row: PENDING, started.
    assert_eq!(
        store.begin_keygen(k, ECDSA, &new_key()).unwrap(),
        KeygenStart::Started { version: 1 }
    );
    assert_eq!(status(&store, k, ECDSA), KeyStatus::Pending);
    // PENDING: refused as in progress.
    assert!(matches!(
        store.begin_keygen(k, ECDSA, &new_key()),
        Err(StoreError::InProgress { .. })
    ));
    // ERROR: a retry starts again.
    store.fail_keygen(k, ECDSA, "peer node2 timed out").unwrap();
    let rec = store.key(k, ECDSA).unwrap().unwrap();
    assert_eq!(rec.status, KeyStatus::Error);
    assert_eq!(rec.error.as_deref(), Some("peer node2 timed out"));
    assert_eq!(
        store.begin_keygen(k, ECDSA, &new_key()).unwrap(),
        KeygenStart::Started { version: 1 }
    );
    // READY: idempotent, answers with the stored public key.
    let s = share(k, ECDSA);
    store.complete_keygen(k, ECDSA, &s, sealer()).unwrap();
    match store.begin_keygen(k, ECDSA, &new_key()).unwrap() {
        KeygenStart::AlreadyReady(rec) => {
            assert_eq!(rec.public_key.as_deref(), Some(&s.public_key[..]));
            assert_eq!(rec.participants, new_key().participants);
        }
        other => panic!("expected AlreadyReady, got {other:?}"),
    }
    // A late failure report does not touch a READY key.
    assert!(matches!(
        store.fail_keygen(k, ECDSA, "late"),
        Err(StoreError::WrongState { .. })
    ));
    assert_eq!(status(&store, k, ECDSA), KeyStatus::Ready);
    // DELETED: refused, unless explicitly allowed (then a new key, at version 1).
    store.delete_key(k, ECDSA).unwrap();
    assert!(matches!(
        store.begin_keygen(k, ECDSA, &new_key()),
        Err(StoreError::Tombstoned { .. })
    ));
    let allow = NewKey {
        allow_reuse_of_deleted_id: true,
        ..new_key()
    };
    assert_eq!(
        store.begin_keygen(k, ECDSA, &allow).unwrap(),
        KeygenStart::Started { version: 1 }
    );
}

#[test]
fn keygen_parameters_are_checked() {
    let (_dir, store) = fresh();
    let bad = [
        NewKey {
            threshold: 1,
            ..new_key()
        },
        NewKey {
            participants: vec!["node1".into(), "node2".into(), "node3".into()],
            ..new_key()
        },
        NewKey {
            participants: vec!["node0".into(), "node0".into(), "node2".into()],
            ..new_key()
        },
    ];
    for params in &bad {
        assert!(matches!(
            store.begin_keygen("w", ECDSA, params),
            Err(StoreError::InvalidRequest(_))
        ));
    }
    assert!(matches!(
        store.begin_keygen("a/b", ECDSA, &new_key()),
        Err(StoreError::InvalidRequest(_))
    ));
    // A share that is not this node's (wrong index) is refused; the key stays PENDING.
    store.begin_keygen("w", ECDSA, &new_key()).unwrap();
    let wrong = KeyShare {
        index: 1,
        ..share("w", ECDSA)
    };
    assert!(matches!(
        store.complete_keygen("w", ECDSA, &wrong, sealer()),
        Err(StoreError::InvalidRequest(_))
    ));
    assert_eq!(status(&store, "w", ECDSA), KeyStatus::Pending);
}

#[test]
fn a_key_is_never_ready_without_its_share() {
    let (_dir, store) = fresh();
    let k = "wallet-1";
    store.begin_keygen(k, ECDSA, &new_key()).unwrap();
    // The HSM fails between keygen and commit.
    let err = store
        .complete_keygen(k, ECDSA, &share(k, ECDSA), &BrokenSealer { panic: false })
        .unwrap_err();
    assert!(matches!(err, StoreError::Seal { .. }), "{err}");
    assert_eq!(status(&store, k, ECDSA), KeyStatus::Pending);
    assert_eq!(share_rows(&store, k), 0);
    // The thread dies mid-seal.
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.complete_keygen(k, ECDSA, &share(k, ECDSA), &BrokenSealer { panic: true })
    }));
    assert!(crashed.is_err());
    assert_eq!(status(&store, k, ECDSA), KeyStatus::Pending);
    assert_eq!(share_rows(&store, k), 0);
    // Not even SQL behind the store's back can make it READY without a share.
    let sneaky = raw(&store).execute(
        "UPDATE keys SET status = 'READY', public_key = x'02', chain_code = zeroblob(32)
         WHERE key_id = ?1",
        [k],
    );
    assert!(sneaky.is_err());
    // After a restart the PENDING keygen is failed, so it can be retried.
    let recovery = store.recover_after_restart("node restarted").unwrap();
    assert_eq!(recovery.keygens_failed, 1);
    assert_eq!(status(&store, k, ECDSA), KeyStatus::Error);
    make_ready_retry(&store, k);
}

fn make_ready_retry(store: &Store, k: &str) {
    assert!(matches!(
        store.begin_keygen(k, ECDSA, &new_key()).unwrap(),
        KeygenStart::Started { .. }
    ));
    store
        .complete_keygen(k, ECDSA, &share(k, ECDSA), sealer())
        .unwrap();
    assert_eq!(status(store, k, ECDSA), KeyStatus::Ready);
    assert_eq!(share_rows(store, k), 1);
}

#[test]
fn shares_round_trip_for_both_schemes_of_one_wallet() {
    let (_dir, store) = fresh();
    let ecdsa = make_ready(&store, "wallet-1", ECDSA);
    let eddsa = make_ready(&store, "wallet-1", EDDSA);
    for (scheme, original) in [(ECDSA, &ecdsa), (EDDSA, &eddsa)] {
        let back = store.load_share("wallet-1", scheme, sealer()).unwrap();
        assert_eq!(back.scheme, original.scheme);
        assert_eq!(back.public_key, original.public_key);
        assert_eq!(back.chain_code, original.chain_code);
        assert_eq!(
            (back.threshold, back.parties, back.index),
            (original.threshold, original.parties, original.index)
        );
        assert_eq!(back.secret, original.secret);
        let rec = store.key("wallet-1", scheme).unwrap().unwrap();
        assert_eq!(rec.chain_code, Some(original.chain_code));
        assert_eq!(rec.version, 1);
    }
    assert_eq!(store.keys().unwrap().len(), 2);
}

#[test]
fn a_tampered_share_is_a_clear_error_and_is_kept() {
    let (_dir, store) = fresh();
    make_ready(&store, "wallet-1", ECDSA);
    let conn = raw(&store);
    let mut blob: Vec<u8> = conn
        .query_row("SELECT sealed FROM key_shares", [], |r| r.get(0))
        .unwrap();
    let last = blob.len() - 1;
    blob[last] ^= 0x01;
    conn.execute("UPDATE key_shares SET sealed = ?1", [&blob])
        .unwrap();
    match store.load_share("wallet-1", ECDSA, sealer()) {
        Err(StoreError::Seal {
            source: SealError::Authentication,
            record,
        }) => assert!(record.contains("wallet-1"), "{record}"),
        other => panic!("expected an authentication failure, got {other:?}"),
    }
    assert_eq!(share_rows(&store, "wallet-1"), 1);
    assert_eq!(status(&store, "wallet-1", ECDSA), KeyStatus::Ready);
}

#[test]
fn a_share_blob_only_opens_as_its_own_record() {
    let (_dir, store) = fresh();
    make_ready(&store, "wallet-1", ECDSA);
    make_ready(&store, "wallet-2", ECDSA);
    let conn = raw(&store);
    conn.execute(
        "UPDATE key_shares SET sealed =
             (SELECT sealed FROM key_shares WHERE key_id = 'wallet-1')
         WHERE key_id = 'wallet-2'",
        [],
    )
    .unwrap();
    assert!(matches!(
        store.load_share("wallet-2", ECDSA, sealer()),
        Err(StoreError::Seal {
            source: SealError::Authentication,
            ..
        })
    ));
    // Another node's sealer (another HSM key) cannot open this node's shares either.
    let other = SoftSealer::from_passphrase(b"other node", &[8; 16]).unwrap();
    assert!(matches!(
        store.load_share("wallet-1", ECDSA, &other),
        Err(StoreError::Seal { .. })
    ));
    assert!(store.load_share("wallet-1", ECDSA, sealer()).is_ok());
}

fn entry<'a>(request_id: &'a str, nonce: &'a [u8], expires_at: SystemTime) -> ReplayEntry<'a> {
    ReplayEntry {
        request_id,
        nonce,
        initiator: "backend-1",
        expires_at,
    }
}

#[test]
fn the_replay_store_refuses_a_request_seen_before() {
    let (_dir, store) = fresh();
    let now = SystemTime::now();
    let later = now + Duration::from_secs(60);
    store
        .check_and_record(&entry("req-1", b"n1", later), now)
        .unwrap();
    assert!(matches!(
        store.check_and_record(&entry("req-1", b"n1", later), now),
        Err(StoreError::Replay { .. })
    ));
    store
        .check_and_record(&entry("req-1", b"n2", later), now)
        .unwrap();
    assert!(matches!(
        store.check_and_record(&entry("req-2", b"n1", now), now),
        Err(StoreError::Expired { .. })
    ));
    assert_eq!(store.purge_expired(now).unwrap(), 0);
    assert_eq!(store.purge_expired(later).unwrap(), 2);
}

/// Eight threads over two stores (two connections to one file): exactly one records.
#[test]
fn concurrent_replays_record_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let stores = [Arc::new(open(&path)), Arc::new(open(&path))];
    let barrier = Arc::new(Barrier::new(8));
    let now = SystemTime::now();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let store = stores[i % 2].clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                store.check_and_record(
                    &entry("req-1", b"nonce", now + Duration::from_secs(60)),
                    now,
                )
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, StoreError::Replay { .. })));
}

#[test]
fn each_presignature_is_taken_once_under_concurrency_and_stays_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path);
    let s = make_ready(&store, "wallet-1", ECDSA);
    const N: usize = 24;
    for n in 0..N {
        add_presignature(&store, "wallet-1", &s, &[0, 2], n);
    }
    add_presignature(&store, "wallet-1", &s, &[0, 1], 99);
    let stores = [Arc::new(store), Arc::new(open(&path))];
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let store = stores[i % 2].clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let mut got = Vec::new();
                while let Some(t) = store
                    .take_presignature("wallet-1", ECDSA, 1, &[0, 2], sealer())
                    .unwrap()
                {
                    got.push((t.id, t.presignature.secret.to_vec()));
                }
                got
            })
        })
        .collect();
    let mut taken: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(taken.len(), N);
    taken.sort();
    taken.dedup_by(|a, b| a.0 == b.0 || a.1 == b.1);
    assert_eq!(taken.len(), N, "a presignature was handed out twice");

    let levels = stores[0].pool_levels().unwrap();
    let level = |signers: &[u16]| levels.iter().find(|l| l.signers == signers).unwrap();
    assert_eq!(
        (level(&[0, 2]).available, level(&[0, 2]).used),
        (0, N as u64)
    );
    assert_eq!(level(&[0, 1]).available, 1);
    drop(stores);

    // USED survives a reopen; a used entry's blob is zeroed; USED never goes back.
    let store = open(&path);
    assert!(store
        .take_presignature("wallet-1", ECDSA, 1, &[0, 2], sealer())
        .unwrap()
        .is_none());
    let conn = raw(&store);
    let nonzero: i64 = conn
        .query_row(
            "SELECT count(*) FROM presignatures WHERE state = 'USED' AND sealed <> zeroblob(length(sealed))",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(nonzero, 0);
    assert!(conn
        .execute("UPDATE presignatures SET state = 'AVAILABLE'", [])
        .is_err());
    // The other signer set's entry is still there, and only for its own set and version.
    assert!(store
        .take_presignature("wallet-1", ECDSA, 2, &[0, 1], sealer())
        .unwrap()
        .is_none());
    let t = store
        .take_presignature("wallet-1", ECDSA, 1, &[0, 1], sealer())
        .unwrap()
        .unwrap();
    assert_eq!(t.presignature.signers, vec![0, 1]);
}

#[test]
fn deleting_a_key_leaves_a_tombstone_and_no_blob_bytes() {
    let (_dir, store) = fresh();
    let s = make_ready(&store, "wallet-1", ECDSA);
    add_presignature(&store, "wallet-1", &s, &[0, 1], 0);
    let conn = raw(&store);
    let share_blob: Vec<u8> = conn
        .query_row("SELECT sealed FROM key_shares", [], |r| r.get(0))
        .unwrap();
    let presig_blob: Vec<u8> = conn
        .query_row("SELECT sealed FROM presignatures", [], |r| r.get(0))
        .unwrap();
    drop(conn);
    // The blob layout starts with a fixed header; look for its ciphertext.
    let tail = |b: &[u8]| b[b.len() - 48..].to_vec();
    assert!(leaks(&file_bytes(store.path()), &tail(&share_blob)));

    let tomb = store.delete_key("wallet-1", ECDSA).unwrap();
    assert_eq!(tomb.status, KeyStatus::Deleted);
    assert_eq!(tomb.public_key.as_deref(), Some(&s.public_key[..]));
    assert_eq!(share_rows(&store, "wallet-1"), 0);
    assert!(store.pool_levels().unwrap().is_empty());
    let bytes = file_bytes(store.path());
    assert!(
        !leaks(&bytes, &tail(&share_blob)),
        "share blob left on disk"
    );
    assert!(
        !leaks(&bytes, &tail(&presig_blob)),
        "presignature blob left on disk"
    );

    assert!(matches!(
        store.load_share("wallet-1", ECDSA, sealer()),
        Err(StoreError::Tombstoned { .. })
    ));
    assert!(matches!(
        store.begin_keygen("wallet-1", ECDSA, &new_key()),
        Err(StoreError::Tombstoned { .. })
    ));
    // Deleting again is a no-op (an id this node never held: see below).
    assert_eq!(
        store.delete_key("wallet-1", ECDSA).unwrap().status,
        KeyStatus::Deleted
    );
}

#[test]
fn no_secret_reaches_the_database_files_unsealed() {
    let (_dir, store) = fresh();
    let mut secrets = Vec::new();
    for (key, scheme) in [
        ("wallet-1", ECDSA),
        ("wallet-1", EDDSA),
        ("wallet-2", ECDSA),
    ] {
        let s = make_ready(&store, key, scheme);
        for n in 0..3 {
            let p = presignature(&s, &[0, 1], n);
            store
                .add_presignature(key, scheme, 1, &p, sealer())
                .unwrap();
            secrets.push(p.secret.to_vec());
        }
        secrets.push(s.secret.to_vec());
    }
    let bytes = file_bytes(store.path());
    // The scan works: public keys are stored in the clear and are found.
    assert!(leaks(&bytes, &share("wallet-1", ECDSA).public_key));
    for secret in &secrets {
        assert!(!leaks(&bytes, secret), "a secret is stored unsealed");
    }
    // Also after a checkpoint moves everything into the main file.
    store.checkpoint().unwrap();
    let bytes = file_bytes(store.path());
    for secret in &secrets {
        assert!(!leaks(&bytes, secret), "a secret is stored unsealed");
    }
}

/// Stages `share` as version 2 of a key READY at version 1, same committee (a refresh).
fn stage_next_version(
    store: &Store,
    key_id: &str,
    scheme: &str,
    share: &KeyShare,
) -> Result<keyrack_node::store::StagedShare, StoreError> {
    let participants = new_key().participants;
    let next = NextCommittee {
        version: 2,
        participants: &participants,
    };
    store.stage_share(key_id, scheme, 1, &next, share, sealer())
}

fn committee(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_staged_share_changes_nothing_until_committed_then_replaces_the_old_one_and_its_pools() {
    let (_dir, store) = fresh();
    let s = make_ready(&store, "wallet-1", ECDSA);
    add_presignature(&store, "wallet-1", &s, &[0, 1], 0);
    let refreshed = KeyShare {
        secret: Zeroizing::new(marker("refreshed", 96)),
        ..s.clone()
    };
    let staged = stage_next_version(&store, "wallet-1", ECDSA, &refreshed).unwrap();
    assert_eq!((staged.version, staged.from_version), (2, 1));
    assert_eq!(store.staged("wallet-1", ECDSA).unwrap(), Some(staged));
    // Staged is not current: the key still signs with its old share, pools intact.
    let rec = store.key("wallet-1", ECDSA).unwrap().unwrap();
    assert_eq!((rec.status, rec.version), (KeyStatus::Ready, 1));
    let back = store.load_share("wallet-1", ECDSA, sealer()).unwrap();
    assert_eq!(back.secret, s.secret);
    assert_eq!(store.pool_levels().unwrap().len(), 1);

    let rec = store.commit_staged("wallet-1", ECDSA).unwrap();
    assert_eq!((rec.status, rec.version), (KeyStatus::Ready, 2));
    assert_eq!(share_rows(&store, "wallet-1"), 1, "the old share is gone");
    assert!(store.pool_levels().unwrap().is_empty());
    assert_eq!(store.staged("wallet-1", ECDSA).unwrap(), None);
    let back = store.load_share("wallet-1", ECDSA, sealer()).unwrap();
    assert_eq!(back.secret, refreshed.secret);
    // A stale stage (from version 1 again) and a second commit are refused.
    assert!(matches!(
        stage_next_version(&store, "wallet-1", ECDSA, &refreshed),
        Err(StoreError::WrongState { .. })
    ));
    assert!(matches!(
        store.commit_staged("wallet-1", ECDSA),
        Err(StoreError::NotFound { .. })
    ));
    // Presignatures for the old version are refused.
    assert!(matches!(
        store.add_presignature(
            "wallet-1",
            ECDSA,
            1,
            &presignature(&s, &[0, 1], 1),
            sealer()
        ),
        Err(StoreError::WrongState { .. })
    ));
}

#[test]
fn a_joining_node_stages_and_commits_a_share_of_a_key_it_never_held() {
    let (_dir, store) = fresh();
    // This store is node0's; in the new committee node0 is key index 1 of 4, threshold 3.
    let participants = committee(&["node1", "node0", "node2", "node3"]);
    let joined = KeyShare {
        threshold: 3,
        parties: 4,
        index: 1,
        ..share("wallet-1", EDDSA)
    };
    let next = NextCommittee {
        version: 4,
        participants: &participants,
    };
    store
        .stage_share("wallet-1", EDDSA, 0, &next, &joined, sealer())
        .unwrap();
    assert!(
        store.key("wallet-1", EDDSA).unwrap().is_none(),
        "no record before the commit"
    );
    let listed = store.staged_shares().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].0.as_str(),
            listed[0].1.as_str(),
            listed[0].2.version
        ),
        ("wallet-1", EDDSA, 4)
    );
    let rec = store.commit_staged("wallet-1", EDDSA).unwrap();
    assert!(store.staged_shares().unwrap().is_empty());
    assert_eq!(
        (rec.status, rec.version, rec.threshold, rec.parties),
        (KeyStatus::Ready, 4, 3, 4)
    );
    assert_eq!(rec.participants, participants);
    assert_eq!(
        store
            .load_share("wallet-1", EDDSA, sealer())
            .unwrap()
            .secret,
        joined.secret
    );
}

#[test]
fn staging_checks_the_share_against_the_key_and_the_committee() {
    let (_dir, store) = fresh();
    let s = make_ready(&store, "wallet-1", ECDSA);
    let participants = new_key().participants;
    let next = NextCommittee {
        version: 2,
        participants: &participants,
    };
    let other_key = KeyShare {
        public_key: vec![0x03; 33],
        ..s.clone()
    };
    let wrong_index = KeyShare {
        index: 2,
        ..s.clone()
    };
    for bad in [other_key, wrong_index] {
        assert!(matches!(
            store.stage_share("wallet-1", ECDSA, 1, &next, &bad, sealer()),
            Err(StoreError::InvalidRequest(_))
        ));
    }
    // A node with a record cannot stage as a joiner; versions must move forward.
    assert!(matches!(
        store.stage_share("wallet-1", ECDSA, 0, &next, &s, sealer()),
        Err(StoreError::WrongState { .. })
    ));
    let back = NextCommittee {
        version: 1,
        participants: &participants,
    };
    assert!(matches!(
        store.stage_share("wallet-1", ECDSA, 1, &back, &s, sealer()),
        Err(StoreError::InvalidRequest(_))
    ));
    // A tombstoned id takes no share.
    store.delete_key("wallet-1", ECDSA).unwrap();
    assert!(matches!(
        store.stage_share("wallet-1", ECDSA, 0, &next, &s, sealer()),
        Err(StoreError::Tombstoned { .. })
    ));
    assert_eq!(store.staged("wallet-1", ECDSA).unwrap(), None);
}

#[test]
fn discarded_staged_shares_and_left_committees_leave_no_blob_bytes() {
    let (_dir, store) = fresh();
    let s = make_ready(&store, "wallet-1", ECDSA);
    add_presignature(&store, "wallet-1", &s, &[0, 1], 0);
    let participants = new_key().participants;
    let next = NextCommittee {
        version: 2,
        participants: &participants,
    };
    let refreshed = KeyShare {
        secret: Zeroizing::new(marker("refreshed", 96)),
        ..s.clone()
    };
    store
        .stage_share("wallet-1", ECDSA, 1, &next, &refreshed, sealer())
        .unwrap();
    let blob = |table: &str| -> Vec<u8> {
        let b: Vec<u8> = raw(&store)
            .query_row(&format!("SELECT sealed FROM {table}"), [], |r| r.get(0))
            .unwrap();
        b[b.len() - 48..].to_vec()
    };
    let (staged, old, presig) = (
        blob("staged_shares"),
        blob("key_shares"),
        blob("presignatures"),
    );
    assert!(store.discard_staged("wallet-1", ECDSA).unwrap());
    assert!(
        !store.discard_staged("wallet-1", ECDSA).unwrap(),
        "nothing left"
    );
    assert!(
        !leaks(&file_bytes(store.path()), &staged),
        "staged blob left on disk"
    );
    // The key is untouched by the discard.
    assert_eq!(
        store
            .load_share("wallet-1", ECDSA, sealer())
            .unwrap()
            .secret,
        s.secret
    );

    // Leaving needs the version the run started from, then takes everything.
    assert!(matches!(
        store.leave_committee("wallet-1", ECDSA, 2),
        Err(StoreError::WrongState { .. })
    ));
    store.leave_committee("wallet-1", ECDSA, 1).unwrap();
    assert!(store.key("wallet-1", ECDSA).unwrap().is_none());
    assert_eq!(share_rows(&store, "wallet-1"), 0);
    assert!(store.pool_levels().unwrap().is_empty());
    let bytes = file_bytes(store.path());
    assert!(!leaks(&bytes, &old), "old share blob left on disk");
    assert!(!leaks(&bytes, &presig), "presignature blob left on disk");
}

#[test]
fn a_delete_tombstones_even_an_id_this_node_never_held() {
    let (_dir, store) = fresh();
    let tomb = store.delete_key("never-held", EDDSA).unwrap();
    assert_eq!(tomb.status, KeyStatus::Deleted);
    assert_eq!(tomb.public_key, None);
    assert!(matches!(
        store.begin_keygen("never-held", EDDSA, &new_key()),
        Err(StoreError::Tombstoned { .. })
    ));
    // Reuse only when asked for: a new key at version 1.
    let reuse = NewKey {
        allow_reuse_of_deleted_id: true,
        ..new_key()
    };
    assert_eq!(
        store.begin_keygen("never-held", EDDSA, &reuse).unwrap(),
        KeygenStart::Started { version: 1 }
    );
    // A held key with a staged share: both go.
    let s = make_ready(&store, "wallet-1", ECDSA);
    stage_next_version(&store, "wallet-1", ECDSA, &s).unwrap();
    let tomb = store.delete_key("wallet-1", ECDSA).unwrap();
    assert_eq!(tomb.status, KeyStatus::Deleted);
    assert_eq!(share_rows(&store, "wallet-1"), 0);
    assert_eq!(store.staged("wallet-1", ECDSA).unwrap(), None);
    assert_eq!(
        store.delete_key("wallet-1", ECDSA).unwrap().status,
        KeyStatus::Deleted,
        "deleting again is a no-op"
    );
}

#[test]
fn sessions_are_recorded_and_restarts_fail_the_running_ones() {
    let (_dir, store) = fresh();
    let s1 = NewSession {
        session_id: "s1",
        request_id: "req-1",
        kind: "keygen",
        key: Some(("wallet-1", ECDSA)),
    };
    store.start_session(&s1).unwrap();
    assert!(matches!(
        store.start_session(&s1),
        Err(StoreError::InvalidRequest(_))
    ));
    store
        .start_session(&NewSession {
            session_id: "s2",
            request_id: "req-2",
            kind: "sign",
            key: None,
        })
        .unwrap();
    store.finish_session("s1", Ok(())).unwrap();
    assert!(matches!(
        store.finish_session("s1", Err("again")),
        Err(StoreError::WrongState { .. })
    ));
    let rec = store.session("s1").unwrap().unwrap();
    assert_eq!(rec.state, SessionState::Completed);
    assert_eq!(rec.key_id.as_deref(), Some("wallet-1"));
    assert!(rec.finished_at.is_some());

    let recovery = store.recover_after_restart("node restarted").unwrap();
    assert_eq!(recovery.sessions_failed, 1);
    let s2 = store.session("s2").unwrap().unwrap();
    assert_eq!(s2.state, SessionState::Failed);
    assert_eq!(s2.error.as_deref(), Some("node restarted"));
    assert_eq!(store.recent_sessions(10).unwrap().len(), 2);
}

// Golden fixture: a store written by schema version 1 with a soft-sealed share and one
// presignature, which every later build must open and read.

const FIXTURE_CLUSTER: &str = "golden";
const FIXTURE_NODE: &str = "node0";

fn fixture_path_of(version: i64) -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo test and nextest at run time"),
    )
    .join(format!("tests/testdata/store/schema-v{version}.sqlite"))
}

fn fixture_path() -> PathBuf {
    fixture_path_of(1)
}

#[test]
#[ignore = "writes the golden fixture; run only when adding a fixture"]
fn write_golden_fixture() {
    // Each schema version gets its own fixture file; older ones are kept and must still open.
    let path = fixture_path_of(SCHEMA_VERSION);
    let _ = std::fs::remove_file(&path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let store = Store::open(&path, FIXTURE_CLUSTER, FIXTURE_NODE).unwrap();
    let s = make_ready(&store, "golden-wallet", ECDSA);
    add_presignature(&store, "golden-wallet", &s, &[0, 1], 0);
    store.checkpoint().unwrap();
    drop(store);
    // Leave one self-contained file: the WAL is merged and removed when the last
    // connection closes.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
}

#[test]
fn the_schema_v1_golden_fixture_still_opens_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixture.sqlite");
    std::fs::copy(fixture_path(), &path).expect("golden fixture missing; see module docs");
    let store = Store::open(&path, FIXTURE_CLUSTER, FIXTURE_NODE).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let expected = share("golden-wallet", ECDSA);
    let back = store.load_share("golden-wallet", ECDSA, sealer()).unwrap();
    assert_eq!(back.secret, expected.secret);
    assert_eq!(back.public_key, expected.public_key);
    assert_eq!(back.chain_code, expected.chain_code);
    let t = store
        .take_presignature("golden-wallet", ECDSA, 1, &[0, 1], sealer())
        .unwrap()
        .expect("the fixture holds one presignature");
    assert_eq!(
        t.presignature.secret,
        presignature(&expected, &[0, 1], 0).secret
    );
}

// The safe-prime pool and committee aux info.

#[test]
fn primes_are_sealed_taken_oldest_first_and_never_twice() {
    let (_dir, store) = fresh();
    assert!(store.take_primes(sealer()).unwrap().is_none(), "empty pool");
    let (a, b) = (marker("primes a", 600), marker("primes b", 600));
    store.add_primes(&a, sealer()).unwrap();
    store.add_primes(&b, sealer()).unwrap();
    assert_eq!(store.prime_count().unwrap(), 2);
    // Sealed: neither pair is in the database file in the clear.
    store.checkpoint().unwrap();
    let file = std::fs::read(store.path()).unwrap();
    for p in [&a, &b] {
        assert!(
            !file.windows(32).any(|w| w == &p[..32]),
            "a pair in the clear"
        );
    }
    assert_eq!(*store.take_primes(sealer()).unwrap().unwrap(), a);
    assert_eq!(store.prime_count().unwrap(), 1);
    // Another store handle (another process) cannot take the same pair again.
    let other = open(store.path());
    assert_eq!(*other.take_primes(sealer()).unwrap().unwrap(), b);
    assert!(store.take_primes(sealer()).unwrap().is_none());
    assert_eq!(store.prime_count().unwrap(), 0);
}

#[test]
fn a_tampered_prime_blob_is_a_seal_error_and_the_pair_is_spent() {
    let (_dir, store) = fresh();
    store.add_primes(&marker("primes", 600), sealer()).unwrap();
    let conn = raw(&store);
    let mut blob: Vec<u8> = conn
        .query_row("SELECT sealed FROM primes", [], |r| r.get(0))
        .unwrap();
    let last = blob.len() - 1;
    blob[last] ^= 1;
    conn.execute("UPDATE primes SET sealed = ?1", [&blob])
        .unwrap();
    assert!(matches!(
        store.take_primes(sealer()),
        Err(StoreError::Seal { .. })
    ));
    // Taken before it was unsealed: a pair is never offered twice, even a bad one.
    assert_eq!(store.prime_count().unwrap(), 0);
}

#[test]
fn committee_aux_is_sealed_per_committee_and_bound_to_its_fingerprint() {
    let (_dir, store) = fresh();
    let members = vec!["node0".to_owned(), "node1".to_owned(), "node2".to_owned()];
    let aux = marker("aux info", 2000);
    assert_eq!(store.committee_fingerprint("c-one").unwrap(), None);
    assert!(store.committee_aux("c-one", sealer()).unwrap().is_none());
    store
        .put_committee_aux("c-one", &members, &[1; 32], &aux, sealer())
        .unwrap();
    assert_eq!(store.committee_fingerprint("c-one").unwrap(), Some([1; 32]));
    let back = store.committee_aux("c-one", sealer()).unwrap().unwrap();
    assert_eq!(
        (back.members.clone(), back.fingerprint),
        (members.clone(), [1; 32])
    );
    assert_eq!(*back.aux, aux);
    assert!(
        !format!("{back:?}").contains(&hex::encode(&aux[..16])),
        "no secret in Debug"
    );
    // Another committee has none.
    assert!(store.committee_aux("c-two", sealer()).unwrap().is_none());
    // A new setup replaces the old one.
    let newer = marker("newer aux info", 2000);
    store
        .put_committee_aux("c-one", &members, &[2; 32], &newer, sealer())
        .unwrap();
    assert_eq!(
        *store.committee_aux("c-one", sealer()).unwrap().unwrap().aux,
        newer
    );
    // A fingerprint changed behind the store's back no longer opens the blob (it is in the
    // AAD), and nothing is deleted.
    raw(&store)
        .execute(
            "UPDATE committee_aux SET fingerprint = ?1",
            [&[3u8; 32][..]],
        )
        .unwrap();
    assert!(matches!(
        store.committee_aux("c-one", sealer()),
        Err(StoreError::Seal { .. })
    ));
    assert_eq!(store.committee_fingerprint("c-one").unwrap(), Some([3; 32]));
    // An id that could change a record name is refused.
    assert!(matches!(
        store.put_committee_aux("a/b", &members, &[1; 32], &aux, sealer()),
        Err(StoreError::InvalidRequest(_))
    ));
}

#[test]
fn a_joiner_replaces_a_failed_keygen_record_and_a_delete_takes_a_lone_staged_share() {
    let (_dir, store) = fresh();
    let participants = committee(&["node1", "node0", "node2"]);
    let joined = KeyShare {
        index: 1,
        ..share("wallet-1", EDDSA)
    };
    let next = NextCommittee {
        version: 3,
        participants: &participants,
    };
    // A keygen that failed here left an ERROR record: joining the committee replaces it.
    store.begin_keygen("wallet-1", EDDSA, &new_key()).unwrap();
    store.fail_keygen("wallet-1", EDDSA, "test").unwrap();
    store
        .stage_share("wallet-1", EDDSA, 0, &next, &joined, sealer())
        .unwrap();
    let rec = store.commit_staged("wallet-1", EDDSA).unwrap();
    assert_eq!((rec.status, rec.version), (KeyStatus::Ready, 3));
    assert_eq!(rec.participants, participants);

    // A joiner holding only a staged share (its run did not commit): a delete takes it,
    // leaving no byte of it on disk.
    store
        .stage_share("wallet-2", EDDSA, 0, &next, &joined, sealer())
        .unwrap();
    let blob: Vec<u8> = raw(&store)
        .query_row("SELECT sealed FROM staged_shares", [], |r| r.get(0))
        .unwrap();
    let tomb = store.delete_key("wallet-2", EDDSA).unwrap();
    assert_eq!(tomb.status, KeyStatus::Deleted);
    assert_eq!(store.staged("wallet-2", EDDSA).unwrap(), None);
    assert!(
        !leaks(&file_bytes(store.path()), &blob[blob.len() - 48..]),
        "staged blob left on disk"
    );
}

#[test]
fn a_share_is_loaded_only_at_the_version_asked() {
    let (_dir, store) = fresh();
    let s = make_ready(&store, "wallet-1", ECDSA);
    assert_eq!(
        store
            .load_share_at("wallet-1", ECDSA, 1, sealer())
            .unwrap()
            .secret,
        s.secret
    );
    stage_next_version(&store, "wallet-1", ECDSA, &s).unwrap();
    store.commit_staged("wallet-1", ECDSA).unwrap();
    assert!(matches!(
        store.load_share_at("wallet-1", ECDSA, 1, sealer()),
        Err(StoreError::WrongState { .. })
    ));
    assert!(store.load_share_at("wallet-1", ECDSA, 2, sealer()).is_ok());
}
