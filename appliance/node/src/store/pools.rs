//! Sealed presignature (ECDSA) and nonce-commitment (FROST) pools, per key, key version and
//! signer set.
//!
//! Every signer of a pool entry holds its own part under the same id (chosen by the presign
//! session, [`Store::add_presignature_with_id`]); a signing takes the entry all its signers
//! hold ([`Store::available_presignatures`], [`Store::take_presignature_by_id`]).
//!
//! The used-once rule: [`Store::take_presignature`] and [`Store::take_presignature_by_id`]
//! mark the entry USED, and overwrite its sealed blob with zeros, in the transaction that
//! selects it; the blob is unsealed only after that transaction has committed. So a
//! presignature is durably spent before its plaintext exists, no two callers (threads or
//! processes) can take the same one, and a crash after a take never brings it back. A trigger
//! refuses any update from USED to AVAILABLE.

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

fn check_pool_id(id: &str) -> Result<()> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(StoreError::InvalidRequest(format!(
            "presignature id {id:?} is not 32 lowercase hex digits"
        )))
    }
}

fn signers_json(signers: &[PartyIndex]) -> Result<String> {
    to_json(&signers)
}

impl Store {
    /// A new pool entry id: 32 lowercase hex digits, the first 12 the current Unix time in
    /// milliseconds and the other 20 random, so that ids sort by age. It is a valid request id
    /// (and so a NATS subject token) and goes into the entry's sealing AAD.
    pub fn new_pool_id() -> String {
        let mut random = [0u8; 10];
        OsRng.fill_bytes(&mut random);
        format!(
            "{:012x}{}",
            u64::try_from(now_ms()).unwrap_or(0) & 0xffff_ffff_ffff,
            hex::encode(random)
        )
    }

    /// The Unix time in milliseconds a pool id made by [`Store::new_pool_id`] was made at.
    pub fn pool_id_time_ms(id: &str) -> Option<u64> {
        check_pool_id(id).ok()?;
        u64::from_str_radix(&id[..12], 16).ok()
    }

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
    /// adds it to the pool of its signer set, under a new id ([`Store::new_pool_id`]).
    /// Returns the id.
    pub fn add_presignature(
        &self,
        key_id: &str,
        scheme: &str,
        key_version: u32,
        presignature: &Presignature,
        sealer: &dyn Sealer,
    ) -> Result<String> {
        let id = Store::new_pool_id();
        self.add_presignature_with_id(key_id, scheme, key_version, presignature, sealer, &id)?;
        Ok(id)
    }

    /// Like [`Store::add_presignature`], under the id `id` that the presign session chose, so
    /// that every signer holds its part under the same id. `id` must be 32 lowercase hex
    /// digits (as [`Store::new_pool_id`] makes) and new to this store.
    pub fn add_presignature_with_id(
        &self,
        key_id: &str,
        scheme: &str,
        key_version: u32,
        presignature: &Presignature,
        sealer: &dyn Sealer,
        id: &str,
    ) -> Result<()> {
        check_key_ids(key_id, scheme)?;
        check_pool_id(id)?;
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
        let plaintext = sealed::encode_presignature(presignature)?;
        let aad = self.presignature_aad(key_id, scheme, key_version, signers, id);
        let blob = sealer
            .seal(&aad, &plaintext)
            .map_err(|source| StoreError::Seal {
                record: format!("presignature {id} of {}", key_name(key_id, scheme)),
                source,
            })?;
        let signers_json = signers_json(signers)?;
        self.write(|tx| {
            require_ready_at(tx, key_id, scheme, key_version)?;
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM presignatures WHERE id = ?1)",
                [id],
                |r| r.get(0),
            )?;
            if exists {
                return Err(StoreError::InvalidRequest(format!(
                    "presignature id {id} is already in the pool"
                )));
            }
            tx.execute(
                "INSERT INTO presignatures
                     (id, key_id, scheme, key_version, signers, sealed, state, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'AVAILABLE', ?7)",
                (
                    id,
                    key_id,
                    scheme,
                    key_version,
                    &signers_json,
                    &blob,
                    now_ms(),
                ),
            )?;
            Ok(())
        })
    }

    /// The ids of the AVAILABLE presignatures of (`key_id`, `scheme`) at `key_version` made
    /// for exactly `signers` (key indices in session order), at most `limit`, oldest first
    /// (in id order, which is age order for ids made by [`Store::new_pool_id`], and the same order
    /// at every node).
    pub fn available_presignatures(
        &self,
        key_id: &str,
        scheme: &str,
        key_version: u32,
        signers: &[PartyIndex],
        limit: usize,
    ) -> Result<Vec<String>> {
        check_key_ids(key_id, scheme)?;
        let signers_json = signers_json(signers)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id FROM presignatures
             WHERE key_id = ?1 AND scheme = ?2 AND key_version = ?3 AND signers = ?4
               AND state = 'AVAILABLE'
             ORDER BY id LIMIT ?5",
        )?;
        let ids = stmt
            .query_map((key_id, scheme, key_version, &signers_json, limit), |r| {
                r.get(0)
            })?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
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
        self.take(key_id, scheme, key_version, signers, None, sealer)
    }

    /// Takes the presignature `id` of (`key_id`, `scheme`) at `key_version` made for exactly
    /// `signers`, under the same used-once rule as [`Store::take_presignature`]. `None` if no
    /// such entry is AVAILABLE (unknown id, used already, another version or signer set).
    pub fn take_presignature_by_id(
        &self,
        key_id: &str,
        scheme: &str,
        key_version: u32,
        signers: &[PartyIndex],
        id: &str,
        sealer: &dyn Sealer,
    ) -> Result<Option<TakenPresignature>> {
        check_pool_id(id)?;
        self.take(key_id, scheme, key_version, signers, Some(id), sealer)
    }

    /// One take: the oldest AVAILABLE entry of the pool, or the entry `id` if given.
    fn take(
        &self,
        key_id: &str,
        scheme: &str,
        key_version: u32,
        signers: &[PartyIndex],
        id: Option<&str>,
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
                       AND state = 'AVAILABLE' AND (?5 IS NULL OR id = ?5)
                     ORDER BY created_at, rowid LIMIT 1",
                    (key_id, scheme, key_version, &signers_json, id),
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

#[cfg(test)]
mod tests {
    use keyrack_hsm::soft::SoftSealer;
    use keyrack_plugin::KeyShare;
    use zeroize::Zeroizing;

    use super::*;
    use crate::store::{KeygenStart, NewKey};

    const ECDSA: &str = "ecdsa-secp256k1";

    fn sealer() -> SoftSealer {
        SoftSealer::from_passphrase(b"pools", &[7; 16]).unwrap()
    }

    /// A store holding the READY key `wallet` (2 of 3, version 1).
    fn ready_store(sealer: &SoftSealer) -> (tempfile::TempDir, Store, KeyShare) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("node.db"), "c1", "node0").unwrap();
        let share = KeyShare {
            scheme: ECDSA.into(),
            public_key: [vec![2], vec![0x11; 32]].concat(),
            chain_code: [0x22; 32],
            threshold: 2,
            parties: 3,
            index: 0,
            secret: Zeroizing::new(vec![0x33; 64]),
        };
        let new = NewKey {
            threshold: 2,
            parties: 3,
            participants: vec!["node0".into(), "node1".into(), "node2".into()],
            allow_reuse_of_deleted_id: false,
        };
        assert!(matches!(
            store.begin_keygen("wallet", ECDSA, &new).unwrap(),
            KeygenStart::Started { version: 1 }
        ));
        store
            .complete_keygen("wallet", ECDSA, &share, sealer)
            .unwrap();
        (dir, store, share)
    }

    fn presignature(share: &KeyShare, signers: &[u16], n: u8) -> Presignature {
        Presignature {
            scheme: share.scheme.clone(),
            public_key: share.public_key.clone(),
            signers: signers.to_vec(),
            secret: Zeroizing::new(vec![n; 40]),
        }
    }

    #[test]
    fn pool_ids_are_hex_tokens_that_sort_by_age() {
        let a = Store::new_pool_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = Store::new_pool_id();
        assert!(a < b, "{a} then {b}");
        for id in [&a, &b] {
            assert_eq!(id.len(), 32);
            assert!(check_pool_id(id).is_ok());
            keyrack_client::subjects::control_subject("c1", id).unwrap();
        }
        let t = Store::pool_id_time_ms(&a).unwrap();
        let now = u64::try_from(now_ms()).unwrap();
        assert!(t <= now && now - t < 60_000);
        assert!(Store::pool_id_time_ms("not-an-id").is_none());
        assert!(check_pool_id(&a.to_uppercase()).is_err());
    }

    #[test]
    fn presignatures_are_taken_by_id_once_and_only_for_their_pool() {
        let sealer = sealer();
        let (_dir, store, share) = ready_store(&sealer);
        let add = |version: u32, signers: &[u16], n: u8, id: &str| {
            let p = presignature(&share, signers, n);
            store.add_presignature_with_id("wallet", ECDSA, version, &p, &sealer, id)
        };
        let mut ids: Vec<String> = (0..3).map(|_| Store::new_pool_id()).collect();
        ids.sort(); // made within one millisecond, they sort by their random part
        for (n, id) in ids.iter().enumerate() {
            add(1, &[0, 2], n as u8, id).unwrap();
        }
        let other = Store::new_pool_id();
        add(1, &[0, 1], 9, &other).unwrap();

        // Ids are per store: the same id twice is refused; a bad id is a clear error.
        let again = add(1, &[0, 2], 7, &ids[0]).unwrap_err();
        assert!(again.to_string().contains("already in the pool"), "{again}");
        let bad = add(1, &[0, 2], 7, "../x").unwrap_err();
        assert!(bad.to_string().contains("32 lowercase hex"), "{bad}");
        let stale = add(2, &[0, 2], 7, &Store::new_pool_id()).unwrap_err();
        assert!(stale.to_string().contains("version"), "{stale}");
        let strangers = add(1, &[0, 0], 7, &Store::new_pool_id()).unwrap_err();
        assert!(strangers.to_string().contains("distinct"), "{strangers}");

        // Listed oldest first, per signer set, limited.
        assert_eq!(
            store
                .available_presignatures("wallet", ECDSA, 1, &[0, 2], 32)
                .unwrap(),
            ids
        );
        assert_eq!(
            store
                .available_presignatures("wallet", ECDSA, 1, &[0, 2], 2)
                .unwrap(),
            ids[..2]
        );
        assert_eq!(
            store
                .available_presignatures("wallet", ECDSA, 1, &[0, 1], 32)
                .unwrap(),
            std::slice::from_ref(&other)
        );
        assert!(store
            .available_presignatures("wallet", ECDSA, 1, &[2, 0], 32)
            .unwrap()
            .is_empty());
        assert!(store
            .available_presignatures("wallet", ECDSA, 2, &[0, 2], 32)
            .unwrap()
            .is_empty());

        // Another signer set, order or version: not taken, and still available.
        let take = |signers: &[u16], version: u32, id: &str| {
            store.take_presignature_by_id("wallet", ECDSA, version, signers, id, &sealer)
        };
        assert!(take(&[0, 1], 1, &ids[1]).unwrap().is_none());
        assert!(take(&[2, 0], 1, &ids[1]).unwrap().is_none());
        assert!(take(&[0, 2], 2, &ids[1]).unwrap().is_none());
        assert!(take(&[0, 2], 1, &Store::new_pool_id()).unwrap().is_none());
        assert!(take(&[0, 2], 1, "nope").is_err());

        // The one asked for, its own contents, once.
        let t = take(&[0, 2], 1, &ids[1]).unwrap().unwrap();
        assert_eq!(t.id, ids[1]);
        assert_eq!(t.presignature.secret.as_slice(), [1u8; 40]);
        assert!(take(&[0, 2], 1, &ids[1]).unwrap().is_none(), "taken twice");
        assert_eq!(
            store
                .available_presignatures("wallet", ECDSA, 1, &[0, 2], 32)
                .unwrap(),
            [ids[0].clone(), ids[2].clone()]
        );
        let used_blob: Vec<u8> = store
            .conn()
            .query_row(
                "SELECT sealed FROM presignatures WHERE id = ?1",
                [&ids[1]],
                |r| r.get(0),
            )
            .unwrap();
        assert!(used_blob.iter().all(|b| *b == 0), "a used blob is zeroed");
        // take_presignature skips the used one too.
        let oldest = store
            .take_presignature("wallet", ECDSA, 1, &[0, 2], &sealer)
            .unwrap()
            .unwrap();
        assert_eq!(oldest.id, ids[0]);
        let level = store
            .pool_levels()
            .unwrap()
            .into_iter()
            .find(|l| l.signers == [0, 2])
            .unwrap();
        assert_eq!((level.available, level.used), (1, 2));
    }
}
