//! The cluster manifests this node accepted at run time (membership changes received over
//! NATS), so that a node restarted with its old manifest file comes back at the newest
//! version it accepted.
//!
//! The store keeps what it is given: it checks that a row reads back (the TOML parses, and
//! its version and hash are the row's), never the signatures. Whoever applies a stored
//! manifest verifies it as a successor first. A row that does not read back is an error
//! ([`StoreError::Corrupt`]), never skipped: skipping would silently roll the membership back.

use keyrack_client::manifest::SignedManifest;

use super::error::{Result, StoreError};
use super::{from_ms, now_ms, Store};

/// A manifest as the store holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredManifest {
    /// Its version (the row's key).
    pub version: u64,
    /// Its hash (SHA-256 of the canonical bytes).
    pub hash: [u8; 32],
    /// The manifest and its signatures, parsed from the stored TOML (not verified).
    pub signed: SignedManifest,
    /// When this node stored it.
    pub accepted_at: std::time::SystemTime,
}

fn version_column(version: u64) -> Result<i64> {
    i64::try_from(version)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| {
            StoreError::InvalidRequest(format!("manifest version {version} cannot be stored"))
        })
}

fn read_row(version: i64, hash: Vec<u8>, text: String, at: i64) -> Result<StoredManifest> {
    let corrupt = |what: String| StoreError::Corrupt {
        what: format!("accepted manifest row {version}: {what}"),
    };
    let hash: [u8; 32] = hash
        .try_into()
        .map_err(|_| corrupt("hash is not 32 bytes".into()))?;
    let signed = SignedManifest::from_toml(&text).map_err(|e| corrupt(e.to_string()))?;
    if i64::try_from(signed.manifest.version).ok() != Some(version) {
        return Err(corrupt(format!(
            "the stored manifest is version {}",
            signed.manifest.version
        )));
    }
    if signed.hash() != hash {
        return Err(corrupt(
            "the stored manifest's hash is not the row's".into(),
        ));
    }
    Ok(StoredManifest {
        version: signed.manifest.version,
        hash,
        signed,
        accepted_at: from_ms(at),
    })
}

impl Store {
    /// Keeps `manifest` as accepted (one transaction). Storing the same version and hash
    /// again changes nothing; another manifest under a stored version is refused
    /// ([`StoreError::InvalidRequest`]): a version is accepted once.
    pub fn put_manifest(&self, manifest: &SignedManifest) -> Result<()> {
        let version = version_column(manifest.manifest.version)?;
        let hash = manifest.hash();
        let text = manifest.to_toml();
        self.write(|tx| {
            let stored: Option<Vec<u8>> = rusqlite::OptionalExtension::optional(tx.query_row(
                "SELECT hash FROM manifests WHERE version = ?1",
                [version],
                |r| r.get(0),
            ))?;
            match stored {
                Some(h) if h == hash => Ok(()),
                Some(h) => Err(StoreError::InvalidRequest(format!(
                    "manifest version {version} is stored already with hash {}, not {}",
                    hex::encode(h),
                    hex::encode(hash)
                ))),
                None => {
                    tx.execute(
                        "INSERT INTO manifests (version, hash, signed_toml, accepted_at)
                         VALUES (?1, ?2, ?3, ?4)",
                        (version, hash.as_slice(), &text, now_ms()),
                    )?;
                    Ok(())
                }
            }
        })
    }

    /// Every accepted manifest, oldest version first. A row that does not read back is an
    /// error naming it.
    pub fn manifests(&self) -> Result<Vec<StoredManifest>> {
        let conn = self.conn();
        let mut query = conn.prepare(
            "SELECT version, hash, signed_toml, accepted_at FROM manifests ORDER BY version",
        )?;
        let rows = query.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (version, hash, text, at) = row?;
            out.push(read_row(version, hash, text, at)?);
        }
        Ok(out)
    }
}

/// A chain of `n` manifests of cluster `c1` (version v lists node0..=nodev), each signed by
/// one fresh admin (1 of 1): version 1 verifies as a bootstrap, each next as its successor.
#[cfg(test)]
pub(crate) fn test_chain(n: u64) -> Vec<SignedManifest> {
    use ed25519_dalek::SigningKey;
    use keyrack_client::identity::PublicIdentity;
    use keyrack_client::manifest::{Admin, Manifest};
    use rand_core::OsRng;

    let admin = SigningKey::generate(&mut OsRng);
    let node = |id: &str| {
        let mut agreement = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut agreement);
        PublicIdentity::sign(id, &SigningKey::generate(&mut OsRng), agreement).unwrap()
    };
    let mut out: Vec<SignedManifest> = Vec::new();
    for version in 1..=n {
        let nodes = (0..=version).map(|i| node(&format!("node{i}"))).collect();
        let manifest = Manifest {
            cluster_id: "c1".into(),
            version,
            previous: out.last().map(SignedManifest::hash),
            admin_threshold: 1,
            nodes,
            initiators: vec![],
            admins: vec![Admin {
                id: "admin".into(),
                public_key: admin.verifying_key(),
            }],
        };
        let mut signed = SignedManifest::new(manifest).unwrap();
        signed.sign(&admin).unwrap();
        out.push(signed);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("keyrack.db"), "c1", "node0").unwrap();
        (dir, store)
    }

    #[test]
    fn manifests_are_stored_and_listed_oldest_first() {
        let (_dir, store) = store();
        assert!(store.manifests().unwrap().is_empty());
        let chain = test_chain(3);
        // Stored out of order: listed by version.
        for m in [&chain[2], &chain[0], &chain[1]] {
            store.put_manifest(m).unwrap();
        }
        let listed = store.manifests().unwrap();
        assert_eq!(
            listed.iter().map(|m| m.version).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        for (stored, original) in listed.iter().zip(&chain) {
            assert_eq!(&stored.signed, original);
            assert_eq!(stored.hash, original.hash());
        }
        // The stored chain verifies as it was signed.
        let v1 = listed[0].signed.verify_bootstrap().unwrap();
        let v2 = listed[1].signed.verify_successor(&v1).unwrap();
        listed[2].signed.verify_successor(&v2).unwrap();
    }

    #[test]
    fn a_version_is_stored_once() {
        let (_dir, store) = store();
        let chain = test_chain(1);
        store.put_manifest(&chain[0]).unwrap();
        store.put_manifest(&chain[0]).unwrap(); // the same again: nothing changes
        let other = test_chain(1).remove(0);
        let err = store.put_manifest(&other).unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidRequest(m) if m.contains("version 1 is stored already")),
            "{err}"
        );
        assert_eq!(store.manifests().unwrap().len(), 1);
        assert_eq!(store.manifests().unwrap()[0].signed, chain[0]);
    }

    #[test]
    fn a_bad_row_is_an_error_not_a_skip() {
        let chain = test_chain(2);
        let cases = [
            (
                "UPDATE manifests SET signed_toml = 'format = 1' || char(10) || 'not toml' WHERE version = 2",
                "does not parse",
            ),
            (
                "UPDATE manifests SET hash = zeroblob(32) WHERE version = 2",
                "hash is not the row's",
            ),
            (
                "UPDATE manifests SET (signed_toml, hash) = (SELECT signed_toml, hash FROM manifests WHERE version = 1) WHERE version = 2",
                "the stored manifest is version 1",
            ),
        ];
        for (spoil, expected) in cases {
            let (_dir, store) = store();
            for m in &chain {
                store.put_manifest(m).unwrap();
            }
            store.conn().execute(spoil, []).unwrap();
            let err = store.manifests().unwrap_err();
            assert!(
                matches!(&err, StoreError::Corrupt { what }
                    if what.contains("accepted manifest row 2") && what.contains(expected)),
                "{expected}: {err}"
            );
        }
    }
}
