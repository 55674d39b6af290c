//! The `soft` backend: an AES-256 key derived from a passphrase with Argon2id.
//!
//! **Development only.** The key exists in this process's memory, and anyone with the
//! passphrase and the config file can open every blob. Opening it logs a warning every time.
//! The Argon2id parameters are pinned (memory 64 MiB, 3 passes, 1 lane, version 0x13): they are
//! part of the key id, so a blob never opens under parameters other than its own.

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::blob::BackendId;
use crate::cipher::{BlobCipher, DataKey};
use crate::config::SoftConfig;
use crate::{Backend, Health, SealError};

const M_COST_KIB: u32 = 64 * 1024;
const T_COST: u32 = 3;
const P_COST: u32 = 1;
/// Shortest salt accepted, in bytes.
pub const MIN_SALT_LEN: usize = 16;

/// A sealer whose key is derived from a passphrase. Development only.
pub struct SoftSealer {
    key: DataKey,
    key_id: String,
}

impl std::fmt::Debug for SoftSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftSealer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl SoftSealer {
    /// Derives the key from the configured passphrase and salt.
    pub fn open(config: &SoftConfig, base_dir: &Path) -> Result<Self, SealError> {
        tracing::warn!(
            "hsm backend 'soft' is for development only: the sealing key is derived from a \
             passphrase in software and lives in this process's memory; use pkcs11, tpm or \
             yubihsm in production"
        );
        let passphrase = config.passphrase.read(base_dir, "hsm.soft.passphrase")?;
        let salt = hex::decode(&config.salt)
            .map_err(|e| SealError::config("hsm.soft.salt", format!("not hex: {e}")))?;
        if salt.len() < MIN_SALT_LEN {
            return Err(SealError::config(
                "hsm.soft.salt",
                format!("must be at least {MIN_SALT_LEN} bytes, is {}", salt.len()),
            ));
        }
        Self::from_passphrase(passphrase.as_bytes(), &salt)
    }

    /// Derives the key from a passphrase and salt directly.
    pub fn from_passphrase(passphrase: &[u8], salt: &[u8]) -> Result<Self, SealError> {
        let params = Params::new(M_COST_KIB, T_COST, P_COST, Some(32))
            .map_err(|e| SealError::backend(BackendId::Soft, "key derivation", e))?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase, salt, key.as_mut())
            .map_err(|e| SealError::backend(BackendId::Soft, "key derivation", e))?;
        // The id names the key without revealing it: HKDF output under its own label.
        let mut fingerprint = [0u8; 8];
        Hkdf::<Sha256>::new(None, key.as_ref())
            .expand(b"keyrack soft sealer key id", &mut fingerprint)
            .map_err(|e| SealError::backend(BackendId::Soft, "key derivation", e))?;
        let key_id = format!(
            "soft:argon2id-m{M_COST_KIB}-t{T_COST}-p{P_COST}:{}",
            hex::encode(fingerprint)
        );
        Ok(SoftSealer {
            key: DataKey::from_bytes(*key),
            key_id,
        })
    }
}

impl Backend for SoftSealer {
    fn backend_id(&self) -> BackendId {
        BackendId::Soft
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn new_blob(&self) -> Result<(Vec<u8>, BlobCipher<'_>), SealError> {
        Ok((Vec::new(), BlobCipher::Software(self.key.clone())))
    }

    fn open_blob(&self, backend_header: &[u8]) -> Result<BlobCipher<'_>, SealError> {
        if !backend_header.is_empty() {
            return Err(SealError::Malformed(
                "soft blobs carry no backend header".into(),
            ));
        }
        Ok(BlobCipher::Software(self.key.clone()))
    }

    fn health(&self) -> Health {
        Health::healthy(
            BackendId::Soft,
            &self.key_id,
            "software key derived (DEVELOPMENT ONLY)",
        )
    }
}
