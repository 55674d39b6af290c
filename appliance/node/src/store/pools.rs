//! Sealed presignature (ECDSA) and nonce-commitment (FROST) pools, per key, key version and
//! signer set.
//!
//! The used-once rule: [`Store::take_presignature`] marks the entry USED, and overwrites its
//! sealed blob with zeros, in the transaction that selects it; the blob is unsealed only after
//! that transaction has committed. So a presignature is durably spent before its plaintext
//! exists, no two callers (threads or processes) can take the same one, and a crash after a
//! take never brings it back. A trigger refuses any update from USED to AVAILABLE.

use keyrack_hsm::Sealer;
use keyrack_plugin::{PartyIndex, Presignature};
use rand_core::{OsRng, RngCore};
use rusqlite::{Connection, OptionalExtension};

use super::error::{Result, StoreError};
use super::keys::{check_key_ids, require_ready, require_ready_at};
use super::{from_json, key_name, now_ms, sealed, to_json, Store};

/// A presignature taken from a pool: already marked USED on disk.
#[derive(Debug)]
pub struct TakenPresignature {
    /// The pool entry's id (for session logs).
    pub id: String,
    /// The presignature. Use it once, then drop it.
    pub presignature: Presignature,
}

/// How full one pool is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolLevel {
    /// The key id.
    pub key_id: String,
    /// The scheme.
    pub scheme: String,
    /// The key version the entries were made for.
    pub key_version: u32,
    /// Key indices of the signers, in session order.
    pub signers: Vec<PartyIndex>,
    /// Entries ready to use.
    pub available: u64,
    /// Entries already used (kept, with their blobs zeroed, until the pool is destroyed).
    pub used: u64,
}

/// Overwrites every pool blob of a key with zeros and deletes the entries.
pub(super) fn erase_pool(conn: &Connection, key_id: &str, scheme: &str) -> Result<usize> {
    conn.execute(
        "UPDATE presignatures SET sealed = zeroblob(length(sealed))
         WHERE key_id = ?1 AND scheme = ?2",
        (key_id, scheme),
    )?;
    Ok(conn.execute(
        "DELETE FROM presignatures WHERE key_id = ?1 AND scheme = ?2",
        (key_id, scheme),
    )?)
}

fn signers_json(signers: &[PartyIndex]) -> Result<String> {
    to_json(&signers)
}

impl Store {
    fn presignature_aad(
        &self,
        key_id: &str,
        scheme: &str,
        version: u32,
        signers: &[PartyIndex],
        id: &str,
    ) -> Vec<u8> {
        sealed::presignature_aad(
            &self.cluster_id,
            &self.node_id,
            key_id,
            scheme,
            version,
            signers,
            id,
        )
    }

    /// Seals a presignature made for the READY key (`key_id`, `scheme`) at `key_version` and
    /// adds it to the pool of its signer set. Returns the entry's id.
    pub fn add_presignature(
        &self,
        key_id: &str,
        scheme: &str,
        key_version: u32,
        presignature: &Presignature,
        sealer: &dyn Sealer,
    ) -> Result<String> {
        check_key_ids(key_id, scheme)?;
        let record = require_ready_at(&self.conn(), key_id, scheme, key_version)?;
        if presignature.scheme != scheme
            || Some(&presignature.public_key) != record.public_key.as_ref()
        {
            return Err(StoreError::InvalidRequest(format!(
                "presignature does not belong to {}",
                key_name(key_id, scheme)
            )));
        }
        let signers = &presignature.signers;
        let valid_signers = signers.len() == usize::from(record.threshold)
            && signers.iter().all(|s| *s < record.parties)
            && signers
                .iter()
                .enumerate()
                .all(|(i, s)| !signers[..i].contains(s));
        if !valid_signers {
            return Err(StoreError::InvalidRequest(format!(
                "signer set {signers:?} is not {} distinct parties of {}",
                record.threshold, record.parties
            )));
        }
        let mut raw = [0u8; 16];
        OsRng.fill_bytes(&mut raw);
        let id = hex::encode(raw);
        let plaintext = sealed::encode_presignature(presignature)?;
        let aad = self.presignature_aad(key_id, scheme, key_version, signers, &id);
        let blob = sealer
            .seal(&aad, &plaintext)
            .map_err(|source| StoreError::Seal {
                record: format!("presignature {id} of {}", key_name(key_id, scheme)),
                source,
            })?;
        let signers_json = signers_json(signers)?;
        self.write(|tx| {
            require_ready_at(tx, key_id, scheme, key_version)?;
            tx.execute(
                "INSERT INTO presignatures
                     (id, key_id, scheme, key_version, signers, sealed, state, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'AVAILABLE', ?7)",
                (
                    &id,
                    key_id,
                    scheme,
                    key_version,
                    &signers_json,
                    &blob,
                    now_ms(),
                ),
            )?;
            Ok(())
        })?;
        Ok(id)
    }

    /// Takes one presignature for (`key_id`, `scheme`) at `key_version` made for exactly
    /// `signers` (key indices in session order), or `None` if that pool is empty.
    ///
    /// The entry is marked USED durably before this returns, in the transaction that picks
    /// it; if unsealing then fails the entry stays spent (the safe way round).
    pub fn take_presignature(
        &self,
        key_id: &str,
        scheme: &str,
        key_version: u32,
        signers: &[PartyIndex],
        sealer: &dyn Sealer,
    ) -> Result<Option<TakenPresignature>> {
        check_key_ids(key_id, scheme)?;
        let signers_json = signers_json(signers)?;
        let taken = self.write(|tx| {
            let record = require_ready(tx, key_id, scheme)?;
            if record.version != key_version {
                return Ok(None);
            }
            let entry: Option<(String, Vec<u8>)> = tx
                .query_row(
                    "SELECT id, sealed FROM presignatures
                     WHERE key_id = ?1 AND scheme = ?2 AND key_version = ?3 AND signers = ?4
                       AND state = 'AVAILABLE'
                     ORDER BY created_at, id LIMIT 1",
                    (key_id, scheme, key_version, &signers_json),
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((id, blob)) = entry else {
                return Ok(None);
            };
            let marked = tx.execute(
                "UPDATE presignatures
                 SET state = 'USED', used_at = ?2, sealed = zeroblob(length(sealed))
                 WHERE id = ?1 AND state = 'AVAILABLE'",
                (&id, now_ms()),
            )?;
            if marked != 1 {
                return Err(StoreError::Corrupt {
                    what: format!("presignature {id} could not be marked used"),
                });
            }
            Ok(Some((id, blob)))
        })?;
        let Some((id, blob)) = taken else {
            return Ok(None);
        };
        let record = format!("presignature {id} of {}", key_name(key_id, scheme));
        let aad = self.presignature_aad(key_id, scheme, key_version, signers, &id);
        let plaintext = sealer
            .unseal(&aad, &blob)
            .map_err(|source| StoreError::Seal {
                record: record.clone(),
                source,
            })?;
        let presignature = sealed::decode_presignature(&plaintext)?;
        if presignature.scheme != scheme || presignature.signers != signers {
            return Err(StoreError::Corrupt {
                what: format!("{record} does not match its pool entry"),
            });
        }
        Ok(Some(TakenPresignature { id, presignature }))
    }

    /// Pool levels of every key, for metrics and for deciding which pools to refill.
    pub fn pool_levels(&self) -> Result<Vec<PoolLevel>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT key_id, scheme, key_version, signers,
                    SUM(state = 'AVAILABLE'), SUM(state = 'USED')
             FROM presignatures
             GROUP BY key_id, scheme, key_version, signers
             ORDER BY key_id, scheme, key_version, signers",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(key_id, scheme, version, signers, available, used)| {
                let count = |n: i64| {
                    u64::try_from(n).map_err(|_| StoreError::Corrupt {
                        what: format!("pool count {n}"),
                    })
                };
                Ok(PoolLevel {
                    key_version: u32::try_from(version).map_err(|_| StoreError::Corrupt {
                        what: format!("pool key version {version}"),
                    })?,
                    signers: from_json("pool signers", &signers)?,
                    available: count(available)?,
                    used: count(used)?,
                    key_id,
                    scheme,
                })
            })
            .collect()
    }

    /// Destroys every pool of a key (for reshare and refresh, whose new shares make old
    /// presignatures useless): blobs are overwritten with zeros, then deleted. Returns how
    /// many entries went.
    pub fn destroy_pools(&self, key_id: &str, scheme: &str) -> Result<usize> {
        check_key_ids(key_id, scheme)?;
        let n = self.write(|tx| erase_pool(tx, key_id, scheme))?;
        self.checkpoint_after_erase();
        Ok(n)
    }
}
