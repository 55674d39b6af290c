//! Key records and their sealed shares: the types the coordinator sees and the row helpers
//! the lifecycle (`lifecycle`) is built from.
//!
//! A key record is identified by (key id, scheme): one wallet id may hold an ECDSA and an
//! EdDSA key. Status moves PENDING → READY or ERROR; ERROR may be retried; DELETED is a
//! tombstone that keeps the id taken. READY is set in the same transaction that stores the
//! sealed share, and database triggers refuse a READY key without its share.

use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension};

use super::error::{Result, StoreError};
use super::{from_json, from_ms, key_name, now_ms, sealed};

/// A key's lifecycle status: the wire type of status results, stored by its name.
pub use keyrack_client::result::KeyStatus;

/// Reads a status stored by [`KeyStatus::as_str`].
fn parse_status(s: &str) -> Result<KeyStatus> {
    Ok(match s {
        "PENDING" => KeyStatus::Pending,
        "READY" => KeyStatus::Ready,
        "ERROR" => KeyStatus::Error,
        "DELETED" => KeyStatus::Deleted,
        other => {
            return Err(StoreError::Corrupt {
                what: format!("unknown key status '{other}'"),
            })
        }
    })
}

/// A key record. Holds nothing secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key (wallet) id.
    pub key_id: String,
    /// The scheme id, e.g. `ecdsa-secp256k1`.
    pub scheme: String,
    /// Lifecycle status.
    pub status: KeyStatus,
    /// Signers needed.
    pub threshold: u16,
    /// Parties holding shares.
    pub parties: u16,
    /// Node ids of the parties in key-index order (party `i` is `participants[i]`).
    pub participants: Vec<String>,
    /// The group public key, once READY (kept on the tombstone).
    pub public_key: Option<Vec<u8>>,
    /// The HD chain code, once READY.
    pub chain_code: Option<[u8; 32]>,
    /// The share generation: 1 at keygen (also a keygen that reuses a deleted id), +1 for
    /// every refresh or reshare. Part of every share's and presignature's sealed name.
    pub version: u32,
    /// When the record was created.
    pub created_at: SystemTime,
    /// When the record last changed.
    pub updated_at: SystemTime,
    /// Why the last keygen failed (status ERROR).
    pub error: Option<String>,
}

/// The parameters of a keygen, as the coordinator agreed them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewKey {
    /// Signers needed; keyrack requires `parties / 2 < threshold <= parties`.
    pub threshold: u16,
    /// Parties holding shares.
    pub parties: u16,
    /// Node ids in key-index order; must include this node.
    pub participants: Vec<String>,
    /// Allow a keygen to reuse the id of a DELETED key (a new key under the old name, at
    /// version 1). Off, a tombstone refuses the keygen.
    pub allow_reuse_of_deleted_id: bool,
}

/// What [`Store::begin_keygen`](super::Store::begin_keygen) decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeygenStart {
    /// The key is now PENDING at this version: run the keygen session, then call
    /// [`Store::complete_keygen`](super::Store::complete_keygen) or [`Store::fail_keygen`](super::Store::fail_keygen).
    Started {
        /// The version the new share will be sealed under.
        version: u32,
    },
    /// The key is READY already: answer with its public key, run nothing (idempotent keygen).
    AlreadyReady(KeyRecord),
}

pub(super) const KEY_COLUMNS: &str = "key_id, scheme, status, threshold, parties, participants, \
     public_key, chain_code, version, created_at, updated_at, error";

type RawKey = (
    String,
    String,
    String,
    i64,
    i64,
    String,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    i64,
    i64,
    i64,
    Option<String>,
);

fn corrupt_int(what: &str, value: i64) -> StoreError {
    StoreError::Corrupt {
        what: format!("{what} {value} is out of range"),
    }
}

pub(super) fn key_from_raw(raw: RawKey) -> Result<KeyRecord> {
    let (key_id, scheme, status, threshold, parties, participants, pk, cc, version, c, u, e) = raw;
    let chain_code = match cc {
        None => None,
        Some(bytes) => {
            Some(
                <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| StoreError::Corrupt {
                    what: format!("chain code of {}", key_name(&key_id, &scheme)),
                })?,
            )
        }
    };
    Ok(KeyRecord {
        status: parse_status(&status)?,
        threshold: u16::try_from(threshold).map_err(|_| corrupt_int("threshold", threshold))?,
        parties: u16::try_from(parties).map_err(|_| corrupt_int("parties", parties))?,
        participants: from_json("participants", &participants)?,
        public_key: pk,
        chain_code,
        version: u32::try_from(version).map_err(|_| corrupt_int("version", version))?,
        created_at: from_ms(c),
        updated_at: from_ms(u),
        error: e,
        key_id,
        scheme,
    })
}

pub(super) fn raw_key(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawKey> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
    ))
}

pub(super) fn read_key(conn: &Connection, key_id: &str, scheme: &str) -> Result<Option<KeyRecord>> {
    conn.query_row(
        &format!("SELECT {KEY_COLUMNS} FROM keys WHERE key_id = ?1 AND scheme = ?2"),
        (key_id, scheme),
        raw_key,
    )
    .optional()?
    .map(key_from_raw)
    .transpose()
}

pub(super) fn require_key(conn: &Connection, key_id: &str, scheme: &str) -> Result<KeyRecord> {
    read_key(conn, key_id, scheme)?.ok_or_else(|| StoreError::NotFound {
        what: key_name(key_id, scheme),
    })
}

/// The record must be READY (a tombstone says so as [`StoreError::Tombstoned`]).
pub(super) fn require_ready(conn: &Connection, key_id: &str, scheme: &str) -> Result<KeyRecord> {
    let record = require_key(conn, key_id, scheme)?;
    match record.status {
        KeyStatus::Ready => Ok(record),
        KeyStatus::Deleted => Err(StoreError::Tombstoned {
            key_id: key_id.to_owned(),
            scheme: scheme.to_owned(),
        }),
        other => Err(wrong_state(key_id, scheme, other, "READY")),
    }
}

pub(super) fn wrong_state(
    key_id: &str,
    scheme: &str,
    state: KeyStatus,
    expected: &'static str,
) -> StoreError {
    StoreError::WrongState {
        what: key_name(key_id, scheme),
        state: state.as_str().to_owned(),
        expected,
    }
}

pub(super) fn check_key_ids(key_id: &str, scheme: &str) -> Result<()> {
    sealed::check_component("key id", key_id, 128)?;
    sealed::check_component("scheme", scheme, 64)
}

/// Overwrites share blobs with zeros of the same length, then deletes them. `version: None`
/// erases every version.
pub(super) fn erase_shares(
    conn: &Connection,
    key_id: &str,
    scheme: &str,
    version: Option<u32>,
) -> Result<usize> {
    let filter = "key_id = ?1 AND scheme = ?2 AND (?3 IS NULL OR version = ?3)";
    conn.execute(
        &format!("UPDATE key_shares SET sealed = zeroblob(length(sealed)) WHERE {filter}"),
        (key_id, scheme, version),
    )?;
    Ok(conn.execute(
        &format!("DELETE FROM key_shares WHERE {filter}"),
        (key_id, scheme, version),
    )?)
}

/// The record must be READY at `version` (the key version an operation started from or was
/// made for); a refresh or reshare in between makes the operation stale.
pub(super) fn require_ready_at(
    conn: &Connection,
    key_id: &str,
    scheme: &str,
    version: u32,
) -> Result<KeyRecord> {
    let record = require_ready(conn, key_id, scheme)?;
    if record.version != version {
        return Err(StoreError::WrongState {
            what: key_name(key_id, scheme),
            state: format!("at version {}", record.version),
            expected: "the key version the operation started from",
        });
    }
    Ok(record)
}

/// Stores a sealed share at `version`, replacing any leftover blob of that version.
pub(super) fn insert_share(
    conn: &Connection,
    key_id: &str,
    scheme: &str,
    version: u32,
    blob: &[u8],
) -> Result<()> {
    erase_shares(conn, key_id, scheme, Some(version))?;
    conn.execute(
        "INSERT INTO key_shares (key_id, scheme, version, sealed, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        (key_id, scheme, version, blob, now_ms()),
    )?;
    Ok(())
}

pub(super) fn share_name(key_id: &str, scheme: &str, version: u32) -> String {
    format!("share of {} version {version}", key_name(key_id, scheme))
}
