//! The node's SQLite store: one database file per node holding its keys and sealed shares,
//! the replay store, protocol sessions, sealed presignature pools, the sealed safe-prime pool
//! and each committee's sealed ECDSA aux info.
//!
//! What it owns: the schema and its migrations; the key lifecycle (PENDING → READY or ERROR,
//! DELETED tombstones) and the rule that a key is READY only together with its sealed share;
//! the record names (AADs) that bind every sealed blob to its row ([`share_aad`],
//! [`presignature_aad`]); replay detection; the used-once rule of presignatures.
//!
//! What it never does: store, log or return a secret unsealed — the only plaintext it hands
//! out is a [`KeyShare`](keyrack_plugin::KeyShare) or
//! [`Presignature`](keyrack_plugin::Presignature) (secrets in `Zeroizing`) to the caller that
//! asked for it; run a protocol or talk to the network; decide policy.
//!
//! Durability: WAL journal with `synchronous=FULL` (every commit is on disk before the call
//! returns), foreign keys on, `secure_delete=ON` (freed pages are zeroed), and every
//! read-modify-write in a `BEGIN IMMEDIATE` transaction, so the rules hold across several
//! connections to one file, not only across threads of one [`Store`].
//!
//! Every call blocks (SQLite and the HSM): on an async runtime, call it through
//! `tokio::task::spawn_blocking`. [`Store`] is `Send + Sync`; share it in an `Arc`.

mod audit;
mod committee;
mod error;
mod keys;
mod lifecycle;
mod manifests;
mod parked;
mod policy;
mod pools;
mod replay;
mod schema;
mod sealed;
mod sessions;
mod staged;

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

pub use audit::{
    audit_entry_hash, audit_signature_message, verify_audit, AuditBreak, AuditBreakReason,
    AuditRecord, AuditSummary,
};
pub use committee::StoredCommitteeAux;
pub use error::{Result, StoreError};
pub use keys::{KeyRecord, KeyStatus, KeygenStart, NewKey};
#[cfg(test)]
pub(crate) use manifests::test_chain;
pub use manifests::StoredManifest;
pub use parked::{Parked, ParkedDue, ParkedRequest, ParkedState, VetoGroup};
pub use policy::{
    NewApproval, StoredApproval, StoredBundle, VelocityEntry, VelocityPer, VelocityQuery, Verdict,
};
pub use pools::{PoolLevel, TakenPresignature};
pub use replay::ReplayEntry;
pub use schema::SCHEMA_VERSION;
pub use sealed::{committee_aux_aad, presignature_aad, primes_aad, share_aad};
pub use sessions::{NewSession, Recovery, SessionRecord, SessionState};
pub use staged::{NextCommittee, StagedShare};

/// How long a call waits for another connection's write lock before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A node's store. Blocking; `Send + Sync`.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
    cluster_id: String,
    node_id: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("cluster_id", &self.cluster_id)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating it with mode 0600 if missing) the store of node `node_id` in cluster
    /// `cluster_id` at `path`, and migrates its schema to [`SCHEMA_VERSION`].
    ///
    /// Refuses a file that is not a keyrack store ([`StoreError::NotAStore`]), one of a newer
    /// schema ([`StoreError::SchemaTooNew`]) and one that belongs to another node or cluster
    /// ([`StoreError::IdentityMismatch`]).
    pub fn open(path: &Path, cluster_id: &str, node_id: &str) -> Result<Self> {
        sealed::check_component("cluster id", cluster_id, 64)?;
        keyrack_client::identity::validate_node_id(node_id)
            .map_err(|e| StoreError::InvalidRequest(e.to_string()))?;
        let io = |source| StoreError::Io {
            path: path.to_owned(),
            source,
        };
        // Create the file ourselves so that it (and the -wal/-shm files SQLite derives from
        // it) is private from the start.
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.pragma_update(None, "secure_delete", true)?;
        conn.pragma_update(None, "trusted_schema", false)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt {
                what: format!("SQLite refused WAL journal mode (got '{mode}')"),
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        schema::migrate(&mut conn, path, now_ms())?;
        check_identity(&mut conn, path, cluster_id, node_id)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_owned(),
            cluster_id: cluster_id.to_owned(),
            node_id: node_id.to_owned(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cluster this store belongs to.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The node this store belongs to.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The schema version of the open database (always [`SCHEMA_VERSION`] after open).
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn()
            .query_row("SELECT user_version FROM pragma_user_version", [], |r| {
                r.get(0)
            })?)
    }

    /// Copies everything in the WAL into the database file and truncates the WAL, so that
    /// erased records leave no old copies in the `-wal` file. Returns `false` if another
    /// connection's readers kept the checkpoint from completing.
    pub fn checkpoint(&self) -> Result<bool> {
        checkpoint(&self.conn())
    }

    /// The connection. A panic while it was held cannot leave a transaction half done (the
    /// transaction rolls back as it unwinds), so a poisoned lock is safe to take over.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction and commits if it succeeds.
    fn write<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

fn checkpoint(conn: &Connection) -> Result<bool> {
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
    Ok(busy == 0)
}

/// Records the node's identity on first open; refuses another node's database afterwards.
fn check_identity(
    conn: &mut Connection,
    path: &Path,
    cluster_id: &str,
    node_id: &str,
) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let stored: Option<(String, String)> = tx
        .query_row(
            "SELECT cluster_id, node_id FROM store_meta WHERE singleton = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match stored {
        None => {
            tx.execute(
                "INSERT INTO store_meta (singleton, cluster_id, node_id, created_at)
                 VALUES (1, ?1, ?2, ?3)",
                (cluster_id, node_id, now_ms()),
            )?;
        }
        Some((stored_cluster, stored_node)) => {
            for (field, stored, configured) in [
                ("cluster", stored_cluster, cluster_id),
                ("node", stored_node, node_id),
            ] {
                if stored != configured {
                    return Err(StoreError::IdentityMismatch {
                        path: path.to_owned(),
                        field,
                        stored,
                        configured: configured.to_owned(),
                    });
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// Milliseconds since the Unix epoch (0 for times before it, saturating far in the future).
fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

/// Reads a column that holds JSON; a parse failure is [`StoreError::Corrupt`].
fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what: format!("{what}: {e}"),
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::InvalidRequest(e.to_string()))
}

/// Names a key record in errors.
fn key_name(key_id: &str, scheme: &str) -> String {
    format!("key '{key_id}' ({scheme})")
}
