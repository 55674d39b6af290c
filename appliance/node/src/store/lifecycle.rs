//! The key lifecycle on [`Store`]: the keygen state machine, loading a share and deleting
//! it (a reshare's or refresh's new share goes through `staged`). The record types and row helpers live in `keys`.

use keyrack_hsm::Sealer;
use keyrack_plugin::KeyShare;
use rusqlite::OptionalExtension;

use super::error::{Result, StoreError};
use super::keys::{
    check_key_ids, erase_shares, insert_share, key_from_raw, raw_key, read_key, require_key,
    require_ready, require_ready_at, share_name, wrong_state, KeyRecord, KeyStatus, KeygenStart,
    NewKey, KEY_COLUMNS,
};
use super::{key_name, now_ms, pools, sealed, to_json, Store};

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
    pub(super) fn check_share(
        &self,
        scheme: &str,
        share: &KeyShare,
        record: &KeyRecord,
    ) -> Result<()> {
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

    pub(super) fn seal_share(
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
                    // A new key: version 1 on every node, whatever version the deleted key had
                    // here (a node that left its committee, or never held it, has another).
                    // Nothing of the deleted key is left to mix up with: its blobs were
                    // erased, and a share only loads with its record's public key.
                    KeyStatus::Deleted if new.allow_reuse_of_deleted_id => reset(1),
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
            insert_share(tx, key_id, scheme, record.version, &blob)?;
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
        self.load_share_of(key_id, scheme, None, sealer)
    }

    /// [`Store::load_share`], only if the key is READY at `version` (the version an
    /// operation started from): a key that moved on in between (a reshare or refresh
    /// committed) is [`StoreError::WrongState`], never the share of another committee.
    pub fn load_share_at(
        &self,
        key_id: &str,
        scheme: &str,
        version: u32,
        sealer: &dyn Sealer,
    ) -> Result<KeyShare> {
        self.load_share_of(key_id, scheme, Some(version), sealer)
    }

    fn load_share_of(
        &self,
        key_id: &str,
        scheme: &str,
        version: Option<u32>,
        sealer: &dyn Sealer,
    ) -> Result<KeyShare> {
        check_key_ids(key_id, scheme)?;
        let (record, blob) = {
            let conn = self.conn();
            let record = match version {
                Some(v) => require_ready_at(&conn, key_id, scheme, v)?,
                None => require_ready(&conn, key_id, scheme)?,
            };
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

    /// Deletes a key, in one transaction: its record becomes a DELETED tombstone (public
    /// fields kept; a new one with no public key if this node had no record, so that the id
    /// cannot be re-created here by accident either), and every share, staged share and
    /// presignature of the key is overwritten with zeros and removed. Then checkpoints the
    /// WAL, so no old copy of a blob stays in the `-wal` file. Deleting again is a no-op.
    /// Returns the tombstone.
    pub fn delete_key(&self, key_id: &str, scheme: &str) -> Result<KeyRecord> {
        check_key_ids(key_id, scheme)?;
        let record = self.write(|tx| {
            let now = now_ms();
            match read_key(tx, key_id, scheme)? {
                None => {
                    tx.execute(
                        "INSERT INTO keys (key_id, scheme, status, threshold, parties,
                             participants, version, created_at, updated_at)
                         VALUES (?1, ?2, 'DELETED', 0, 0, '[]', 1, ?3, ?3)",
                        (key_id, scheme, now),
                    )?;
                }
                Some(r) if r.status == KeyStatus::Deleted => {}
                Some(_) => {
                    tx.execute(
                        "UPDATE keys SET status = 'DELETED', error = NULL, updated_at = ?3
                         WHERE key_id = ?1 AND scheme = ?2",
                        (key_id, scheme, now),
                    )?;
                }
            }
            erase_shares(tx, key_id, scheme, None)?;
            pools::erase_pool(tx, key_id, scheme)?;
            super::staged::erase_staged(tx, key_id, scheme)?;
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
