//! Keys and their sealed shares: the keygen state machine, loading a share, rotating it
//! (refresh/reshare) and deleting it.
//!
//! A key record is identified by (key id, scheme): one wallet id may hold an ECDSA and an
//! EdDSA key. Status moves PENDING → READY or ERROR; ERROR may be retried; DELETED is a
//! tombstone that keeps the id taken. READY is set in the same transaction that stores the
//! sealed share, and database triggers refuse a READY key without its share.

use std::time::SystemTime;

use keyrack_hsm::Sealer;
use keyrack_plugin::KeyShare;
use rusqlite::{Connection, OptionalExtension};

use super::error::{Result, StoreError};
use super::{from_json, from_ms, key_name, now_ms, pools, sealed, to_json, Store};

/// A key's lifecycle status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyStatus {
    /// A keygen session is running.
    Pending,
    /// The key has a sealed share and can sign.
    Ready,
    /// The last keygen failed; a new keygen may retry.
    Error,
    /// Deleted: the share is erased and the id stays taken (a tombstone).
    Deleted,
}

impl KeyStatus {
    /// The name stored in the database and shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Pending => "PENDING",
            KeyStatus::Ready => "READY",
            KeyStatus::Error => "ERROR",
            KeyStatus::Deleted => "DELETED",
        }
    }

    fn parse(s: &str) -> Result<Self> {
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
}

impl std::fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// The share generation: 1 at keygen, +1 for every refresh or reshare, and for a keygen
    /// that reuses a deleted id. Part of every share's and presignature's sealed name.
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
    /// Allow a keygen to reuse the id of a DELETED key (a new key under the old name; its
    /// version continues after the deleted one's). Off, a tombstone refuses the keygen.
    pub allow_reuse_of_deleted_id: bool,
}

/// What [`Store::begin_keygen`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeygenStart {
    /// The key is now PENDING at this version: run the keygen session, then call
    /// [`Store::complete_keygen`] or [`Store::fail_keygen`].
    Started {
        /// The version the new share will be sealed under.
        version: u32,
    },
    /// The key is READY already: answer with its public key, run nothing (idempotent keygen).
    AlreadyReady(KeyRecord),
}

const KEY_COLUMNS: &str = "key_id, scheme, status, threshold, parties, participants, \
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

fn key_from_raw(raw: RawKey) -> Result<KeyRecord> {
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
        status: KeyStatus::parse(&status)?,
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

fn raw_key(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawKey> {
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

fn require_key(conn: &Connection, key_id: &str, scheme: &str) -> Result<KeyRecord> {
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

fn wrong_state(key_id: &str, scheme: &str, state: KeyStatus, expected: &'static str) -> StoreError {
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
fn erase_shares(
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

impl Store {
    fn share_aad(&self, key_id: &str, scheme: &str, version: u32) -> Vec<u8> {
        sealed::share_aad(&self.cluster_id, &self.node_id, key_id, scheme, version)
    }

    /// Checks a committee: threshold rule, one distinct valid node id per party, this node
    /// among them. Returns this node's key index.
    fn check_committee(
        &self,
        threshold: u16,
        parties: u16,
        participants: &[String],
    ) -> Result<u16> {
        keyrack_plugin::scheme::check_threshold(threshold, parties)
            .map_err(|e| StoreError::InvalidRequest(e.to_string()))?;
        if participants.len() != usize::from(parties) {
            return Err(StoreError::InvalidRequest(format!(
                "{} participants for {parties} parties",
                participants.len()
            )));
        }
        for (i, p) in participants.iter().enumerate() {
            keyrack_client::identity::validate_node_id(p)
                .map_err(|e| StoreError::InvalidRequest(e.to_string()))?;
            if participants[..i].contains(p) {
                return Err(StoreError::InvalidRequest(format!(
                    "participant '{p}' is listed twice"
                )));
            }
        }
        let index = participants
            .iter()
            .position(|p| p == &self.node_id)
            .ok_or_else(|| {
                StoreError::InvalidRequest(format!(
                    "this node '{}' is not among the participants",
                    self.node_id
                ))
            })?;
        u16::try_from(index).map_err(|_| StoreError::InvalidRequest("too many parties".into()))
    }

    /// Checks that `share` is this node's share of a key with the given committee.
    fn check_share(&self, scheme: &str, share: &KeyShare, record: &KeyRecord) -> Result<()> {
        let my_index =
            self.check_committee(record.threshold, record.parties, &record.participants)?;
        let mismatch = if share.scheme != scheme {
            Some(format!("scheme '{}'", share.scheme))
        } else if share.threshold != record.threshold || share.parties != record.parties {
            Some(format!("{} of {}", share.threshold, share.parties))
        } else if share.index != my_index {
            Some(format!(
                "key index {} (this node is {my_index})",
                share.index
            ))
        } else if share.public_key.is_empty() || share.secret.is_empty() {
            Some("an empty public key or secret".to_owned())
        } else {
            None
        };
        match mismatch {
            Some(what) => Err(StoreError::InvalidRequest(format!(
                "share for {} has {what}, which does not match the key record",
                key_name(&record.key_id, scheme)
            ))),
            None => Ok(()),
        }
    }

    fn seal_share(
        &self,
        key_id: &str,
        scheme: &str,
        version: u32,
        share: &KeyShare,
        sealer: &dyn Sealer,
    ) -> Result<Vec<u8>> {
        let plaintext = sealed::encode_share(share)?;
        sealer
            .seal(&self.share_aad(key_id, scheme, version), &plaintext)
            .map_err(|source| StoreError::Seal {
                record: share_name(key_id, scheme, version),
                source,
            })
    }

    /// Starts a keygen for (`key_id`, `scheme`), following the key's status:
    /// none → PENDING, [`KeygenStart::Started`]; READY → [`KeygenStart::AlreadyReady`];
    /// PENDING → [`StoreError::InProgress`]; ERROR → PENDING again (a retry), `Started`;
    /// DELETED → [`StoreError::Tombstoned`], unless [`NewKey::allow_reuse_of_deleted_id`].
    pub fn begin_keygen(&self, key_id: &str, scheme: &str, new: &NewKey) -> Result<KeygenStart> {
        check_key_ids(key_id, scheme)?;
        self.check_committee(new.threshold, new.parties, &new.participants)?;
        let participants = to_json(&new.participants)?;
        self.write(|tx| {
            let now = now_ms();
            let reset = |version: u32| -> Result<KeygenStart> {
                tx.execute(
                    "UPDATE keys SET status = 'PENDING', threshold = ?3, parties = ?4,
                         participants = ?5, public_key = NULL, chain_code = NULL,
                         version = ?6, updated_at = ?7, error = NULL
                     WHERE key_id = ?1 AND scheme = ?2",
                    (
                        key_id,
                        scheme,
                        new.threshold,
                        new.parties,
                        &participants,
                        version,
                        now,
                    ),
                )?;
                Ok(KeygenStart::Started { version })
            };
            match read_key(tx, key_id, scheme)? {
                None => {
                    tx.execute(
                        "INSERT INTO keys (key_id, scheme, status, threshold, parties,
                             participants, version, created_at, updated_at)
                         VALUES (?1, ?2, 'PENDING', ?3, ?4, ?5, 1, ?6, ?6)",
                        (
                            key_id,
                            scheme,
                            new.threshold,
                            new.parties,
                            &participants,
                            now,
                        ),
                    )?;
                    Ok(KeygenStart::Started { version: 1 })
                }
                Some(record) => match record.status {
                    KeyStatus::Ready => Ok(KeygenStart::AlreadyReady(record)),
                    KeyStatus::Pending => Err(StoreError::InProgress {
                        key_id: key_id.to_owned(),
                        scheme: scheme.to_owned(),
                    }),
                    KeyStatus::Error => reset(record.version),
                    KeyStatus::Deleted if new.allow_reuse_of_deleted_id => {
                        let version = record.version.checked_add(1).ok_or_else(|| {
                            StoreError::InvalidRequest("key version overflow".into())
                        })?;
                        reset(version)
                    }
                    KeyStatus::Deleted => Err(StoreError::Tombstoned {
                        key_id: key_id.to_owned(),
                        scheme: scheme.to_owned(),
                    }),
                },
            }
        })
    }

    /// Seals this node's share of a PENDING key and, in one transaction, stores the sealed
    /// share and sets the key READY. If sealing or the transaction fails, the key stays
    /// PENDING and no share is stored.
    pub fn complete_keygen(
        &self,
        key_id: &str,
        scheme: &str,
        share: &KeyShare,
        sealer: &dyn Sealer,
    ) -> Result<KeyRecord> {
        check_key_ids(key_id, scheme)?;
        let record = require_key(&self.conn(), key_id, scheme)?;
        if record.status != KeyStatus::Pending {
            return Err(wrong_state(key_id, scheme, record.status, "PENDING"));
        }
        self.check_share(scheme, share, &record)?;
        // Seal outside the database lock: the HSM may be slow.
        let blob = self.seal_share(key_id, scheme, record.version, share, sealer)?;
        self.write(|tx| {
            let now = require_key(tx, key_id, scheme)?;
            if now.status != KeyStatus::Pending || now.version != record.version {
                return Err(wrong_state(key_id, scheme, now.status, "PENDING"));
            }
            erase_shares(tx, key_id, scheme, Some(record.version))?;
            tx.execute(
                "INSERT INTO key_shares (key_id, scheme, version, sealed, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                (key_id, scheme, record.version, &blob, now_ms()),
            )?;
            tx.execute(
                "UPDATE keys SET status = 'READY', public_key = ?3, chain_code = ?4,
                     updated_at = ?5, error = NULL
                 WHERE key_id = ?1 AND scheme = ?2",
                (
                    key_id,
                    scheme,
                    &share.public_key,
                    &share.chain_code[..],
                    now_ms(),
                ),
            )?;
            require_key(tx, key_id, scheme)
        })
    }

    /// Marks a PENDING keygen failed (status ERROR, with `reason`) and erases any share stored
    /// for it. A READY key is never failed by this: a late failure report leaves it alone
    /// ([`StoreError::WrongState`]).
    pub fn fail_keygen(&self, key_id: &str, scheme: &str, reason: &str) -> Result<()> {
        check_key_ids(key_id, scheme)?;
        self.write(|tx| {
            let record = require_key(tx, key_id, scheme)?;
            if !matches!(record.status, KeyStatus::Pending | KeyStatus::Error) {
                return Err(wrong_state(key_id, scheme, record.status, "PENDING"));
            }
            tx.execute(
                "UPDATE keys SET status = 'ERROR', error = ?3, updated_at = ?4
                 WHERE key_id = ?1 AND scheme = ?2",
                (key_id, scheme, reason, now_ms()),
            )?;
            erase_shares(tx, key_id, scheme, None)?;
            pools::erase_pool(tx, key_id, scheme)?;
            Ok(())
        })
    }

    /// Unseals this node's share of a READY key. A blob that fails to unseal (altered, moved
    /// from another record, sealed by another node or backend key) is [`StoreError::Seal`];
    /// one whose contents do not match the key record is [`StoreError::Corrupt`]. Nothing is
    /// deleted in either case.
    pub fn load_share(&self, key_id: &str, scheme: &str, sealer: &dyn Sealer) -> Result<KeyShare> {
        check_key_ids(key_id, scheme)?;
        let (record, blob) = {
            let conn = self.conn();
            let record = require_ready(&conn, key_id, scheme)?;
            let blob: Option<Vec<u8>> = conn
                .query_row(
                    "SELECT sealed FROM key_shares
                     WHERE key_id = ?1 AND scheme = ?2 AND version = ?3",
                    (key_id, scheme, record.version),
                    |r| r.get(0),
                )
                .optional()?;
            (record, blob)
        };
        let name = share_name(key_id, scheme, record.version);
        let blob = blob.ok_or_else(|| StoreError::Corrupt {
            what: format!("{name} is missing"),
        })?;
        let plaintext = sealer
            .unseal(&self.share_aad(key_id, scheme, record.version), &blob)
            .map_err(|source| StoreError::Seal {
                record: name.clone(),
                source,
            })?;
        let share = sealed::decode_share(&plaintext)?;
        let matches = share.scheme == scheme
            && Some(&share.public_key) == record.public_key.as_ref()
            && Some(share.chain_code) == record.chain_code
            && share.threshold == record.threshold
            && share.parties == record.parties;
        if !matches {
            return Err(StoreError::Corrupt {
                what: format!("{name} does not match its key record"),
            });
        }
        Ok(share)
    }

    /// Replaces the share of a READY key at `expected_version` with a new one (a refresh, or a
    /// reshare this node receives a share from), sealed as version `expected_version + 1`.
    /// One transaction stores the new share, moves the key to the new version and committee,
    /// erases the old share and destroys the key's presignature pools. The public key and
    /// chain code must not change.
    pub fn rotate_share(
        &self,
        key_id: &str,
        scheme: &str,
        expected_version: u32,
        participants: &[String],
        share: &KeyShare,
        sealer: &dyn Sealer,
    ) -> Result<KeyRecord> {
        check_key_ids(key_id, scheme)?;
        let current = require_ready(&self.conn(), key_id, scheme)?;
        if current.version != expected_version {
            return Err(StoreError::WrongState {
                what: key_name(key_id, scheme),
                state: format!("at version {}", current.version),
                expected: "the version the rotation started from",
            });
        }
        if Some(&share.public_key) != current.public_key.as_ref()
            || Some(share.chain_code) != current.chain_code
        {
            return Err(StoreError::InvalidRequest(format!(
                "new share of {} has another public key or chain code",
                key_name(key_id, scheme)
            )));
        }
        let next = KeyRecord {
            threshold: share.threshold,
            parties: share.parties,
            participants: participants.to_vec(),
            version: expected_version
                .checked_add(1)
                .ok_or_else(|| StoreError::InvalidRequest("key version overflow".into()))?,
            ..current
        };
        self.check_share(scheme, share, &next)?;
        let participants_json = to_json(&next.participants)?;
        let blob = self.seal_share(key_id, scheme, next.version, share, sealer)?;
        let record = self.write(|tx| {
            let now = require_ready(tx, key_id, scheme)?;
            if now.version != expected_version {
                return Err(wrong_state(
                    key_id,
                    scheme,
                    now.status,
                    "READY at the expected version",
                ));
            }
            erase_shares(tx, key_id, scheme, Some(next.version))?;
            tx.execute(
                "INSERT INTO key_shares (key_id, scheme, version, sealed, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                (key_id, scheme, next.version, &blob, now_ms()),
            )?;
            tx.execute(
                "UPDATE keys SET version = ?3, threshold = ?4, parties = ?5, participants = ?6,
                     updated_at = ?7
                 WHERE key_id = ?1 AND scheme = ?2",
                (
                    key_id,
                    scheme,
                    next.version,
                    next.threshold,
                    next.parties,
                    &participants_json,
                    now_ms(),
                ),
            )?;
            erase_shares(tx, key_id, scheme, Some(expected_version))?;
            pools::erase_pool(tx, key_id, scheme)?;
            require_key(tx, key_id, scheme)
        })?;
        self.checkpoint_after_erase();
        Ok(record)
    }

    /// Deletes a key: overwrites every sealed share and presignature blob of it with zeros,
    /// deletes them, and leaves a DELETED tombstone (public fields kept, the id stays taken).
    /// Then checkpoints the WAL so no old copy of a blob stays in the `-wal` file. Deleting a
    /// tombstone again is a no-op. Returns the tombstone.
    pub fn delete_key(&self, key_id: &str, scheme: &str) -> Result<KeyRecord> {
        check_key_ids(key_id, scheme)?;
        let record = self.write(|tx| {
            let record = require_key(tx, key_id, scheme)?;
            if record.status == KeyStatus::Deleted {
                return Ok(record);
            }
            tx.execute(
                "UPDATE keys SET status = 'DELETED', error = NULL, updated_at = ?3
                 WHERE key_id = ?1 AND scheme = ?2",
                (key_id, scheme, now_ms()),
            )?;
            erase_shares(tx, key_id, scheme, None)?;
            pools::erase_pool(tx, key_id, scheme)?;
            require_key(tx, key_id, scheme)
        })?;
        self.checkpoint_after_erase();
        Ok(record)
    }

    /// One key record.
    pub fn key(&self, key_id: &str, scheme: &str) -> Result<Option<KeyRecord>> {
        read_key(&self.conn(), key_id, scheme)
    }

    /// Every key record (tombstones included), ordered by key id and scheme.
    pub fn keys(&self) -> Result<Vec<KeyRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {KEY_COLUMNS} FROM keys ORDER BY key_id, scheme"
        ))?;
        let raws = stmt
            .query_map([], raw_key)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(key_from_raw).collect()
    }

    /// Checkpoints after an erase. The erase is committed whatever happens here; a checkpoint
    /// that another process's readers block is retried by SQLite's next checkpoint.
    pub(super) fn checkpoint_after_erase(&self) {
        match self.checkpoint() {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                store = %self.path.display(),
                "WAL checkpoint after an erase was blocked by readers; erased blobs may stay in the -wal file until the next checkpoint"
            ),
            Err(e) => {
                tracing::warn!(store = %self.path.display(), error = %e, "WAL checkpoint after an erase failed")
            }
        }
    }
}

fn share_name(key_id: &str, scheme: &str, version: u32) -> String {
    format!("share of {} version {version}", key_name(key_id, scheme))
}
