//! The sealed safe-prime pool and each committee's sealed aux info (ECDSA committee setup).
//!
//! Both are opaque secrets to the store: it seals and unseals bytes the ECDSA layer encodes.
//! A pair of primes is used once: [`Store::take_primes`] deletes the entry (after zeroing its
//! blob) in the transaction that picks it, before the plaintext exists. A committee has at
//! most one aux info row; a new committee setup replaces it (keys made earlier keep working:
//! their shares carry their own copy).

use keyrack_hsm::Sealer;
use rand_core::{OsRng, RngCore};
use rusqlite::OptionalExtension;
use zeroize::Zeroizing;

use super::error::{Result, StoreError};
use super::{from_json, now_ms, sealed, to_json, Store};

/// A committee's aux info as stored: who the committee is, the public fingerprint every
/// member holds the same, and the unsealed aux info.
pub struct StoredCommitteeAux {
    /// The committee's members, in key-index order.
    pub members: Vec<String>,
    /// Fingerprint of the aux info's public part (equal at every member of one setup).
    pub fingerprint: [u8; 32],
    /// The aux info (secret).
    pub aux: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for StoredCommitteeAux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCommitteeAux")
            .field("members", &self.members)
            .field("fingerprint", &hex::encode(self.fingerprint))
            .field("aux", &"<redacted>")
            .finish()
    }
}

impl Store {
    /// Seals a pair of safe primes (encoded by the ECDSA layer) into the pool; returns its id.
    pub fn add_primes(&self, primes: &[u8], sealer: &dyn Sealer) -> Result<String> {
        let mut raw = [0u8; 16];
        OsRng.fill_bytes(&mut raw);
        let id = hex::encode(raw);
        let aad = sealed::primes_aad(&self.cluster_id, &self.node_id, &id);
        let blob = sealer
            .seal(&aad, primes)
            .map_err(|source| StoreError::Seal {
                record: format!("safe primes {id}"),
                source,
            })?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO primes (id, sealed, created_at) VALUES (?1, ?2, ?3)",
                (&id, &blob, now_ms()),
            )?;
            Ok(())
        })?;
        Ok(id)
    }

    /// How many pairs of safe primes the pool holds.
    pub fn prime_count(&self) -> Result<usize> {
        let n: i64 = self
            .conn()
            .query_row("SELECT count(*) FROM primes", [], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Takes the oldest pair of safe primes, or `None` if the pool is empty. The entry is gone
    /// from disk (blob zeroed, row deleted) before this unseals it: a pair is never used twice,
    /// even if the caller crashes.
    pub fn take_primes(&self, sealer: &dyn Sealer) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let taken: Option<(String, Vec<u8>)> = self.write(|tx| {
            let row: Option<(String, Vec<u8>)> = tx
                .query_row(
                    "SELECT id, sealed FROM primes ORDER BY created_at, rowid LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((id, _)) = &row {
                tx.execute(
                    "UPDATE primes SET sealed = zeroblob(length(sealed)) WHERE id = ?1",
                    [id],
                )?;
                tx.execute("DELETE FROM primes WHERE id = ?1", [id])?;
            }
            Ok(row)
        })?;
        let Some((id, blob)) = taken else {
            return Ok(None);
        };
        let aad = sealed::primes_aad(&self.cluster_id, &self.node_id, &id);
        sealer
            .unseal(&aad, &blob)
            .map(Some)
            .map_err(|source| StoreError::Seal {
                record: format!("safe primes {id}"),
                source,
            })
    }

    /// Seals and stores the aux info of `committee` (replacing an earlier one).
    pub fn put_committee_aux(
        &self,
        committee: &str,
        members: &[String],
        fingerprint: &[u8; 32],
        aux: &[u8],
        sealer: &dyn Sealer,
    ) -> Result<()> {
        sealed::check_component("committee id", committee, 64)?;
        let aad =
            sealed::committee_aux_aad(&self.cluster_id, &self.node_id, committee, fingerprint);
        let blob = sealer.seal(&aad, aux).map_err(|source| StoreError::Seal {
            record: format!("aux info of committee {committee}"),
            source,
        })?;
        let members = to_json(&members)?;
        self.write(|tx| {
            tx.execute(
                "UPDATE committee_aux SET sealed = zeroblob(length(sealed)) WHERE committee_id = ?1",
                [committee],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO committee_aux
                     (committee_id, members, fingerprint, sealed, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                (committee, &members, &fingerprint[..], &blob, now_ms()),
            )?;
            Ok(())
        })
    }

    /// The public fingerprint of `committee`'s aux info, if this node has one (no unsealing).
    pub fn committee_fingerprint(&self, committee: &str) -> Result<Option<[u8; 32]>> {
        let row: Option<Vec<u8>> = self
            .conn()
            .query_row(
                "SELECT fingerprint FROM committee_aux WHERE committee_id = ?1",
                [committee],
                |r| r.get(0),
            )
            .optional()?;
        row.map(|f| fingerprint(committee, &f)).transpose()
    }

    /// Unseals `committee`'s aux info, if this node has one.
    pub fn committee_aux(
        &self,
        committee: &str,
        sealer: &dyn Sealer,
    ) -> Result<Option<StoredCommitteeAux>> {
        let row: Option<(String, Vec<u8>, Vec<u8>)> = self
            .conn()
            .query_row(
                "SELECT members, fingerprint, sealed FROM committee_aux WHERE committee_id = ?1",
                [committee],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((members, fp, blob)) = row else {
            return Ok(None);
        };
        let fingerprint = fingerprint(committee, &fp)?;
        let members: Vec<String> = from_json("committee members", &members)?;
        let aad =
            sealed::committee_aux_aad(&self.cluster_id, &self.node_id, committee, &fingerprint);
        let aux = sealer
            .unseal(&aad, &blob)
            .map_err(|source| StoreError::Seal {
                record: format!("aux info of committee {committee}"),
                source,
            })?;
        Ok(Some(StoredCommitteeAux {
            members,
            fingerprint,
            aux,
        }))
    }
}

fn fingerprint(committee: &str, bytes: &[u8]) -> Result<[u8; 32]> {
    bytes.try_into().map_err(|_| StoreError::Corrupt {
        what: format!("aux fingerprint of committee {committee} is not 32 bytes"),
    })
}
