//! Staged shares: the new share a reshare or refresh gives this node, sealed and kept beside
//! the key until every new member holds theirs. Only then does the node commit it (the key
//! moves to the new version and committee, the old share is erased) — or, if the run did
//! not complete everywhere, discard it, the key staying at its old version. A node that
//! leaves the committee erases its share and its record of the key.
//!
//! A staged share is sealed under the record name of the version it will have
//! ([`super::share_aad`]), so committing moves the blob as it is; nothing is unsealed.

use keyrack_hsm::Sealer;
use keyrack_plugin::KeyShare;
use rusqlite::OptionalExtension;

use super::error::{Result, StoreError};
use super::keys::{
    check_key_ids, erase_shares, insert_share, read_key, require_key, require_ready_at, KeyRecord,
    KeyStatus,
};
use super::{from_json, key_name, now_ms, pools, to_json, Store};

/// What a staged share will make of the key: public fields only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedShare {
    /// The key version the share is for.
    pub version: u32,
    /// The version the key was at when the run started (0: this node had no record).
    pub from_version: u32,
    /// Signers needed in the new committee.
    pub threshold: u16,
    /// The new committee, in key-index order.
    pub participants: Vec<String>,
    /// The group public key (unchanged by a reshare).
    pub public_key: Vec<u8>,
    /// The chain code (unchanged).
    pub chain_code: [u8; 32],
}

/// Where a reshare or refresh moves a key: its next version and committee.
#[derive(Clone, Copy, Debug)]
pub struct NextCommittee<'a> {
    /// The key's next version.
    pub version: u32,
    /// The new committee, in key-index order.
    pub participants: &'a [String],
}

/// Zeroes and deletes the staged share of a key, if any.
pub(super) fn erase_staged(
    conn: &rusqlite::Connection,
    key_id: &str,
    scheme: &str,
) -> Result<usize> {
    let filter = "key_id = ?1 AND scheme = ?2";
    conn.execute(
        &format!("UPDATE staged_shares SET sealed = zeroblob(length(sealed)) WHERE {filter}"),
        (key_id, scheme),
    )?;
    Ok(conn.execute(
        &format!("DELETE FROM staged_shares WHERE {filter}"),
        (key_id, scheme),
    )?)
}

/// A staged share's row.
struct StagedRow {
    info: StagedShare,
    parties: u16,
    sealed: Vec<u8>,
}

type RawStaged = (i64, i64, i64, i64, String, Vec<u8>, Vec<u8>, Vec<u8>);

fn read_staged(
    conn: &rusqlite::Connection,
    key_id: &str,
    scheme: &str,
) -> Result<Option<StagedRow>> {
    let raw: Option<RawStaged> = conn
        .query_row(
            "SELECT version, from_version, threshold, parties, participants, public_key,
                 chain_code, sealed
             FROM staged_shares WHERE key_id = ?1 AND scheme = ?2",
            (key_id, scheme),
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            },
        )
        .optional()?;
    let Some((
        version,
        from_version,
        threshold,
        parties,
        participants,
        public_key,
        chain_code,
        sealed,
    )) = raw
    else {
        return Ok(None);
    };
    let corrupt = |what: &str| StoreError::Corrupt {
        what: format!("staged share of {}: {what}", key_name(key_id, scheme)),
    };
    Ok(Some(StagedRow {
        info: StagedShare {
            version: u32::try_from(version).map_err(|_| corrupt("version"))?,
            from_version: u32::try_from(from_version).map_err(|_| corrupt("from_version"))?,
            threshold: u16::try_from(threshold).map_err(|_| corrupt("threshold"))?,
            participants: from_json("participants", &participants)?,
            public_key,
            chain_code: chain_code
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("chain code"))?,
        },
        parties: u16::try_from(parties).map_err(|_| corrupt("parties"))?,
        sealed,
    }))
}

/// The record must be READY at `from_version`, or, when `from_version` is 0 (a node joining
/// the key's committee), absent or left by a failed keygen (PENDING or ERROR, no share).
fn require_start(
    conn: &rusqlite::Connection,
    key_id: &str,
    scheme: &str,
    from_version: u32,
) -> Result<Option<KeyRecord>> {
    if from_version > 0 {
        return require_ready_at(conn, key_id, scheme, from_version).map(Some);
    }
    match read_key(conn, key_id, scheme)? {
        None => Ok(None),
        // What a keygen that failed here left (no share): the committee's key replaces it.
        Some(r) if matches!(r.status, KeyStatus::Pending | KeyStatus::Error) => Ok(None),
        Some(r) if r.status == KeyStatus::Deleted => Err(StoreError::Tombstoned {
            key_id: key_id.to_owned(),
            scheme: scheme.to_owned(),
        }),
        Some(r) => Err(StoreError::WrongState {
            what: key_name(key_id, scheme),
            state: format!("{} at version {}", r.status.as_str(), r.version),
            expected: "no usable record (a node joining the key's committee)",
        }),
    }
}

impl Store {
    /// Seals `share` as this node's staged share of the key at `next.version` (committee
    /// `next.participants`), made by a run that
    /// started, at this node, from `from_version` (the key must be READY there; 0 = this node
    /// has no record and joins the committee). The share must belong to the new committee (this
    /// node among it) and, if the node holds the key, have its public key and chain code. Replaces an
    /// earlier staged share of the key. The key itself does not change.
    pub fn stage_share(
        &self,
        key_id: &str,
        scheme: &str,
        from_version: u32,
        next: &NextCommittee<'_>,
        share: &KeyShare,
        sealer: &dyn Sealer,
    ) -> Result<StagedShare> {
        check_key_ids(key_id, scheme)?;
        let (version, participants) = (next.version, next.participants);
        if version <= from_version {
            return Err(StoreError::InvalidRequest(format!(
                "staged version {version} is not after version {from_version}"
            )));
        }
        let current = require_start(&self.conn(), key_id, scheme, from_version)?;
        if let Some(current) = &current {
            if Some(&share.public_key) != current.public_key.as_ref()
                || Some(share.chain_code) != current.chain_code
            {
                return Err(StoreError::InvalidRequest(format!(
                    "new share of {} has another public key or chain code",
                    key_name(key_id, scheme)
                )));
            }
        }
        let next = KeyRecord {
            key_id: key_id.to_owned(),
            scheme: scheme.to_owned(),
            status: KeyStatus::Pending,
            threshold: share.threshold,
            parties: share.parties,
            participants: participants.to_vec(),
            public_key: Some(share.public_key.clone()),
            chain_code: Some(share.chain_code),
            version,
            created_at: std::time::SystemTime::now(),
            updated_at: std::time::SystemTime::now(),
            error: None,
        };
        self.check_share(scheme, share, &next)?;
        let blob = self.seal_share(key_id, scheme, version, share, sealer)?;
        let participants_json = to_json(&participants)?;
        self.write(|tx| {
            require_start(tx, key_id, scheme, from_version)?;
            erase_staged(tx, key_id, scheme)?;
            tx.execute(
                "INSERT INTO staged_shares (key_id, scheme, version, from_version, threshold,
                     parties, participants, public_key, chain_code, sealed, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                rusqlite::params![
                    key_id,
                    scheme,
                    version,
                    from_version,
                    share.threshold,
                    share.parties,
                    participants_json,
                    share.public_key,
                    &share.chain_code[..],
                    blob,
                    now_ms(),
                ],
            )?;
            Ok(())
        })?;
        // An earlier staged blob was replaced: keep no copy of it in the WAL.
        self.checkpoint_after_erase();
        Ok(StagedShare {
            version,
            from_version,
            threshold: share.threshold,
            participants: participants.to_vec(),
            public_key: share.public_key.clone(),
            chain_code: share.chain_code,
        })
    }

    /// The staged share of a key, if any (public fields only).
    pub fn staged(&self, key_id: &str, scheme: &str) -> Result<Option<StagedShare>> {
        check_key_ids(key_id, scheme)?;
        Ok(read_staged(&self.conn(), key_id, scheme)?.map(|row| row.info))
    }

    /// Every staged share this store holds, as (key id, scheme, share), ordered by key id and
    /// scheme: what interrupted runs left for the next reshare or refresh to settle.
    pub fn staged_shares(&self) -> Result<Vec<(String, String, StagedShare)>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT key_id, scheme FROM staged_shares ORDER BY key_id, scheme")?;
        let keys = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        drop(stmt);
        let mut out = vec![];
        for (key_id, scheme) in keys {
            if let Some(row) = read_staged(&conn, &key_id, &scheme)? {
                out.push((key_id, scheme, row.info));
            }
        }
        Ok(out)
    }

    /// Makes the staged share the key's share, in one transaction: the key moves to the
    /// staged version, threshold and committee (READY; a record is created on a node that
    /// joined), the old share and the key's presignature pools are erased, the staged row
    /// is removed. The key must still be where the run started (READY at its
    /// `from_version`, or absent for a joining node). Returns the new record.
    pub fn commit_staged(&self, key_id: &str, scheme: &str) -> Result<KeyRecord> {
        check_key_ids(key_id, scheme)?;
        let record = self.write(|tx| {
            let Some(StagedRow {
                info,
                parties,
                sealed,
            }) = read_staged(tx, key_id, scheme)?
            else {
                return Err(StoreError::NotFound {
                    what: format!("staged share of {}", key_name(key_id, scheme)),
                });
            };
            let (version, from, threshold) = (info.version, info.from_version, info.threshold);
            let participants = to_json(&info.participants)?;
            let now = now_ms();
            match require_start(tx, key_id, scheme, from)? {
                Some(_) => {}
                None => {
                    // A failed keygen's record goes first (with any share it left).
                    erase_shares(tx, key_id, scheme, None)?;
                    pools::erase_pool(tx, key_id, scheme)?;
                    tx.execute(
                        "DELETE FROM keys WHERE key_id = ?1 AND scheme = ?2",
                        (key_id, scheme),
                    )?;
                    tx.execute(
                        "INSERT INTO keys (key_id, scheme, status, threshold, parties,
                             participants, version, created_at, updated_at)
                         VALUES (?1, ?2, 'PENDING', ?3, ?4, ?5, ?6, ?7, ?7)",
                        (
                            key_id,
                            scheme,
                            threshold,
                            parties,
                            &participants,
                            version,
                            now,
                        ),
                    )?;
                }
            }
            insert_share(tx, key_id, scheme, version, &sealed)?;
            tx.execute(
                "UPDATE keys SET status = 'READY', version = ?3, threshold = ?4, parties = ?5,
                     participants = ?6, public_key = ?7, chain_code = ?8, updated_at = ?9,
                     error = NULL
                 WHERE key_id = ?1 AND scheme = ?2",
                rusqlite::params![
                    key_id,
                    scheme,
                    version,
                    threshold,
                    parties,
                    participants,
                    info.public_key,
                    &info.chain_code[..],
                    now
                ],
            )?;
            if from > 0 {
                erase_shares(tx, key_id, scheme, Some(from))?;
            }
            pools::erase_pool(tx, key_id, scheme)?;
            erase_staged(tx, key_id, scheme)?;
            require_key(tx, key_id, scheme)
        })?;
        self.checkpoint_after_erase();
        Ok(record)
    }

    /// Erases the staged share of a key (a run that did not commit anywhere). Returns
    /// whether there was one.
    pub fn discard_staged(&self, key_id: &str, scheme: &str) -> Result<bool> {
        check_key_ids(key_id, scheme)?;
        let erased = self.write(|tx| erase_staged(tx, key_id, scheme))?;
        if erased > 0 {
            self.checkpoint_after_erase();
        }
        Ok(erased > 0)
    }

    /// This node leaves the key's committee (a reshare moved the key to a committee without
    /// it, and every new member holds its share): in one transaction its share (every
    /// version), presignature pools and staged share are overwritten and removed, and so is
    /// its record of the key. The key must be READY at `from_version`.
    pub fn leave_committee(&self, key_id: &str, scheme: &str, from_version: u32) -> Result<()> {
        check_key_ids(key_id, scheme)?;
        self.write(|tx| {
            require_ready_at(tx, key_id, scheme, from_version)?;
            // Not READY any more, so that its share may go (the store never drops the share
            // of a READY key).
            tx.execute(
                "UPDATE keys SET status = 'PENDING', updated_at = ?3
                 WHERE key_id = ?1 AND scheme = ?2",
                (key_id, scheme, now_ms()),
            )?;
            erase_shares(tx, key_id, scheme, None)?;
            pools::erase_pool(tx, key_id, scheme)?;
            erase_staged(tx, key_id, scheme)?;
            tx.execute(
                "DELETE FROM keys WHERE key_id = ?1 AND scheme = ?2",
                (key_id, scheme),
            )?;
            Ok(())
        })?;
        self.checkpoint_after_erase();
        Ok(())
    }
}
