//! The database schema: an ordered list of migrations, applied in one transaction at open.
//!
//! Schema version `n` is the state after `MIGRATIONS[n - 1]`; it is kept in SQLite's
//! `user_version` header field, and each applied step is listed in `schema_history`. A step,
//! once released, never changes: a new schema is a new step at the end. A database whose
//! version is newer than [`SCHEMA_VERSION`] is refused, never downgraded.

use rusqlite::{Connection, TransactionBehavior};

use super::error::{Result, StoreError};

/// SQLite `application_id` of a keyrack store ("KRK1").
pub(crate) const APPLICATION_ID: i32 = 0x4B52_4B31;

/// Version 1: keys, sealed shares, replay store, sessions, presignature pools.
const V1: &str = r#"
CREATE TABLE store_meta (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    cluster_id TEXT NOT NULL,
    node_id    TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE schema_history (
    version    INTEGER PRIMARY KEY,
    applied_at INTEGER NOT NULL
) STRICT;

CREATE TABLE keys (
    key_id       TEXT NOT NULL,
    scheme       TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('PENDING', 'READY', 'ERROR', 'DELETED')),
    threshold    INTEGER NOT NULL,
    parties      INTEGER NOT NULL,
    participants TEXT NOT NULL,
    public_key   BLOB,
    chain_code   BLOB CHECK (chain_code IS NULL OR length(chain_code) = 32),
    version      INTEGER NOT NULL CHECK (version >= 1),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    error        TEXT,
    PRIMARY KEY (key_id, scheme),
    CHECK (status <> 'READY' OR (public_key IS NOT NULL AND chain_code IS NOT NULL))
) STRICT;

CREATE TABLE key_shares (
    key_id     TEXT NOT NULL,
    scheme     TEXT NOT NULL,
    version    INTEGER NOT NULL,
    sealed     BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (key_id, scheme, version),
    FOREIGN KEY (key_id, scheme) REFERENCES keys (key_id, scheme)
) STRICT;

-- A key is never READY without the sealed share of its current version.
CREATE TRIGGER keys_ready_needs_share_insert BEFORE INSERT ON keys
WHEN NEW.status = 'READY' AND NOT EXISTS (
    SELECT 1 FROM key_shares
    WHERE key_id = NEW.key_id AND scheme = NEW.scheme AND version = NEW.version)
BEGIN SELECT RAISE(ABORT, 'keyrack store: a READY key needs its sealed share'); END;

CREATE TRIGGER keys_ready_needs_share_update BEFORE UPDATE ON keys
WHEN NEW.status = 'READY' AND NOT EXISTS (
    SELECT 1 FROM key_shares
    WHERE key_id = NEW.key_id AND scheme = NEW.scheme AND version = NEW.version)
BEGIN SELECT RAISE(ABORT, 'keyrack store: a READY key needs its sealed share'); END;

CREATE TRIGGER key_shares_keep_ready BEFORE DELETE ON key_shares
WHEN EXISTS (
    SELECT 1 FROM keys
    WHERE key_id = OLD.key_id AND scheme = OLD.scheme AND version = OLD.version
      AND status = 'READY')
BEGIN SELECT RAISE(ABORT, 'keyrack store: cannot remove the share of a READY key'); END;

CREATE TABLE replay (
    request_id  TEXT NOT NULL,
    nonce       BLOB NOT NULL,
    initiator   TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (request_id, nonce)
) STRICT, WITHOUT ROWID;
CREATE INDEX replay_by_expiry ON replay (expires_at);

CREATE TABLE sessions (
    session_id  TEXT PRIMARY KEY,
    request_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    key_id      TEXT,
    scheme      TEXT,
    state       TEXT NOT NULL CHECK (state IN ('RUNNING', 'COMPLETED', 'FAILED')),
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    error       TEXT
) STRICT;
CREATE INDEX sessions_by_start ON sessions (started_at);
CREATE INDEX sessions_by_request ON sessions (request_id);

CREATE TABLE presignatures (
    id          TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL,
    scheme      TEXT NOT NULL,
    key_version INTEGER NOT NULL,
    signers     TEXT NOT NULL,
    sealed      BLOB NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('AVAILABLE', 'USED')),
    created_at  INTEGER NOT NULL,
    used_at     INTEGER,
    FOREIGN KEY (key_id, scheme) REFERENCES keys (key_id, scheme)
) STRICT;
CREATE INDEX presignatures_available
    ON presignatures (key_id, scheme, key_version, signers, state);

-- A used presignature never becomes available again.
CREATE TRIGGER presignatures_used_once BEFORE UPDATE OF state ON presignatures
WHEN OLD.state = 'USED' AND NEW.state <> 'USED'
BEGIN SELECT RAISE(ABORT, 'keyrack store: a used presignature cannot be reused'); END;
"#;

/// Version 2: the sealed safe-prime pool and each committee's sealed ECDSA aux info.
const V2: &str = r#"
CREATE TABLE primes (
    id         TEXT PRIMARY KEY,
    sealed     BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE committee_aux (
    committee_id TEXT PRIMARY KEY,
    members      TEXT NOT NULL,
    fingerprint  BLOB NOT NULL CHECK (length(fingerprint) = 32),
    sealed       BLOB NOT NULL,
    created_at   INTEGER NOT NULL
) STRICT;
"#;

/// Version 3: accepted cluster manifests (membership changes received over NATS) and new
/// shares staged by a reshare or refresh until every new member holds theirs.
const V3: &str = r#"
CREATE TABLE manifests (
    version     INTEGER PRIMARY KEY CHECK (version >= 1),
    hash        BLOB NOT NULL CHECK (length(hash) = 32),
    signed_toml TEXT NOT NULL,
    accepted_at INTEGER NOT NULL
) STRICT;

CREATE TABLE staged_shares (
    key_id       TEXT NOT NULL,
    scheme       TEXT NOT NULL,
    version      INTEGER NOT NULL CHECK (version >= 1),
    from_version INTEGER NOT NULL,
    threshold    INTEGER NOT NULL,
    parties      INTEGER NOT NULL,
    participants TEXT NOT NULL,
    public_key   BLOB NOT NULL,
    chain_code   BLOB NOT NULL CHECK (length(chain_code) = 32),
    sealed       BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (key_id, scheme)
) STRICT;
"#;

/// Version 4: policy state (activated policy bundles, approvals, the queue of requests waiting
/// for approvals, the velocity ledger) and the node's hash-chained, signed audit log.
const V4: &str = r#"
CREATE TABLE policy_bundles (
    version      INTEGER PRIMARY KEY CHECK (version >= 1),
    hash         BLOB NOT NULL CHECK (length(hash) = 32),
    bundle_toml  TEXT NOT NULL,
    activated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE approvals (
    request_hash        BLOB NOT NULL CHECK (length(request_hash) = 32),
    approver            TEXT NOT NULL,
    approval_request_id TEXT NOT NULL,
    expires_at          INTEGER NOT NULL,
    signed_request      BLOB NOT NULL,
    received_at         INTEGER NOT NULL,
    PRIMARY KEY (request_hash, approver)
) STRICT, WITHOUT ROWID;
CREATE INDEX approvals_by_expiry ON approvals (expires_at);

CREATE TABLE pending_approvals (
    request_id   TEXT PRIMARY KEY,
    request_hash BLOB NOT NULL CHECK (length(request_hash) = 32),
    expires_at   INTEGER NOT NULL,
    summary_json TEXT NOT NULL,
    added_at     INTEGER NOT NULL
) STRICT;

-- The velocity ledger: one row per request, one entry per transfer of it.
CREATE TABLE velocity_requests (
    request_id TEXT PRIMARY KEY,
    state      TEXT NOT NULL CHECK (state IN ('RESERVED', 'COMMITTED')),
    at         INTEGER NOT NULL
) STRICT;
CREATE INDEX velocity_requests_by_time ON velocity_requests (at);

CREATE TABLE velocity_entries (
    request_id  TEXT NOT NULL REFERENCES velocity_requests (request_id),
    key_id      TEXT NOT NULL,
    initiator   TEXT NOT NULL,
    destination TEXT,
    asset       TEXT,
    amount      BLOB NOT NULL CHECK (length(amount) = 16)
) STRICT;
CREATE INDEX velocity_entries_by_request ON velocity_entries (request_id);
CREATE INDEX velocity_entries_by_key ON velocity_entries (key_id);
CREATE INDEX velocity_entries_by_initiator ON velocity_entries (initiator);
CREATE INDEX velocity_entries_by_destination ON velocity_entries (destination);

-- A committed request stays counted: it never goes back to RESERVED.
CREATE TRIGGER velocity_committed_stays BEFORE UPDATE OF state ON velocity_requests
WHEN OLD.state = 'COMMITTED' AND NEW.state <> 'COMMITTED'
BEGIN SELECT RAISE(ABORT, 'keyrack store: a committed velocity reservation stays committed'); END;

CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY CHECK (seq >= 1),
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    request_id TEXT,
    entry      TEXT NOT NULL,
    prev_hash  BLOB NOT NULL CHECK (length(prev_hash) = 32),
    hash       BLOB NOT NULL CHECK (length(hash) = 32),
    signature  BLOB NOT NULL CHECK (length(signature) = 64)
) STRICT;

-- The audit log is append-only.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'keyrack store: the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'keyrack store: the audit log is append-only'); END;
"#;

/// Version 5: an approval carries its verdict, `approve` or `reject` (an approver's
/// rejection of a request waiting for approvals). Approvals recorded before are approves.
const V5: &str = r#"
ALTER TABLE approvals ADD COLUMN verdict TEXT NOT NULL DEFAULT 'approve'
    CHECK (verdict IN ('approve', 'reject'));
"#;

/// Version 6: requests the policy holds (waiting for approvals, or approved and time-locked)
/// are parked in the store, with their signed wire form, so that they wait without holding
/// the node's capacity and survive a restart. They replace the approval queue of version 4,
/// whose entries were only listings of requests waiting in memory (dropped with it: those
/// requests died with the process that held them).
const V6: &str = r#"
DROP TABLE pending_approvals;

CREATE TABLE parked_requests (
    request_id     TEXT PRIMARY KEY,
    request_hash   BLOB NOT NULL CHECK (length(request_hash) = 32),
    kind           TEXT NOT NULL,
    initiator      TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    signed_request BLOB NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('WAITING', 'LOCKED')),
    expires_at     INTEGER NOT NULL,
    locked_at      INTEGER,
    run_at         INTEGER,
    approvers      TEXT NOT NULL DEFAULT '[]',
    veto_groups    TEXT NOT NULL DEFAULT '[]',
    summary_json   TEXT NOT NULL,
    added_at       INTEGER NOT NULL,
    CHECK (state = 'WAITING' OR (locked_at IS NOT NULL AND run_at IS NOT NULL))
) STRICT;
CREATE INDEX parked_requests_by_initiator ON parked_requests (initiator);
CREATE INDEX parked_requests_by_hash ON parked_requests (request_hash);
"#;

/// The migrations, oldest first. Never edit a released step; append a new one.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the schema up to [`SCHEMA_VERSION`] in one immediate transaction, refusing a
/// database of another application or of a newer schema. Returns the version found.
pub(crate) fn migrate(conn: &mut Connection, path: &std::path::Path, now_ms: i64) -> Result<i64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("SELECT user_version FROM pragma_user_version", [], |r| {
        r.get(0)
    })?;
    let application_id: i32 = tx.query_row(
        "SELECT application_id FROM pragma_application_id",
        [],
        |r| r.get(0),
    )?;
    let has_tables: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table')",
        [],
        |r| r.get(0),
    )?;
    let foreign = if found == 0 {
        application_id != 0 || has_tables
    } else {
        application_id != APPLICATION_ID
    };
    if foreign {
        return Err(StoreError::NotAStore {
            path: path.to_owned(),
            application_id,
        });
    }
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let start = usize::try_from(found).map_err(|_| StoreError::Corrupt {
        what: format!("schema version {found} is negative"),
    })?;
    for (index, step) in MIGRATIONS.iter().enumerate().skip(start) {
        tx.execute_batch(step)?;
        let version = index as i64 + 1;
        tx.execute(
            "INSERT INTO schema_history (version, applied_at) VALUES (?1, ?2)",
            (version, now_ms),
        )?;
    }
    if found < SCHEMA_VERSION {
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(found)
}
