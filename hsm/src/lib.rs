//! Sealing of keyrack secrets through an HSM backend.
//!
//! Every secret a keyrack node keeps (its identity keys, key shares, pools) leaves memory only
//! as a *sealed blob* made by a [`Sealer`]. One blob layout serves every backend (see
//! [`blob`]): a header naming the format version, the backend and the backend key, then
//! AES-256-GCM ciphertext whose associated data binds the caller's record name (its AAD) and
//! every header byte, so that a blob cannot be moved to another record, key or backend.
//!
//! Backends, each behind a cargo feature and chosen from [`HsmConfig`]:
//!
//! | feature   | backend | where the AES-GCM key lives |
//! |-----------|---------|-----------------------------|
//! | `pkcs11`  | [`pkcs11::Pkcs11Sealer`] | a non-extractable, sensitive AES-256 key inside the token; encryption runs in the token |
//! | `tpm`     | [`tpm::TpmSealer`] | a fresh data key per blob, sealed as a TPM object under a persistent storage key |
//! | `yubihsm` | [`yubihsm::YubihsmSealer`] | a data key per blob = HMAC(non-exportable on-device key, salt) |
//! | `soft`    | [`soft::SoftSealer`] | a key derived from a passphrase with Argon2id; development only |
//!
//! This crate never writes a file, never logs a secret, and never returns plaintext except
//! inside [`zeroize::Zeroizing`]. All calls block: callers on an async runtime run them on a
//! blocking thread.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod blob;
mod cipher;
pub mod config;
mod error;
mod health;
mod secret;

#[cfg(feature = "pkcs11")]
pub mod pkcs11;
#[cfg(feature = "soft")]
pub mod soft;
#[cfg(feature = "tpm")]
pub mod tpm;
#[cfg(feature = "yubihsm")]
pub mod yubihsm;

use std::path::Path;

pub use blob::BackendId;
pub use cipher::{BlobCipher, DataKey, TokenAead};
pub use config::{BackendKind, HsmConfig, SecretSource};
pub use error::SealError;
pub use health::Health;
use zeroize::Zeroizing;

/// Seals and unseals secrets. Implemented for every [`Backend`].
///
/// `aad` names the record a blob belongs to (for example cluster, node, key id and share
/// version); unsealing with any other `aad` fails with [`SealError::Authentication`].
pub trait Sealer: Send + Sync {
    /// Which backend this sealer uses.
    fn backend(&self) -> BackendId;
    /// The backend key this sealer seals under, as recorded in every blob it makes.
    fn key_id(&self) -> &str;
    /// Seals `plaintext` for the record named by `aad`.
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError>;
    /// Opens a blob made by [`Sealer::seal`] with the same `aad`.
    fn unseal(&self, aad: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError>;
    /// A live check of the backend: reachable, logged in, key present.
    fn health(&self) -> Health;
}

/// What a backend provides: a cipher per blob. The blob layout, nonces and AAD binding are
/// the same for every backend and live in [`blob`]; a backend only decides where the key is.
pub trait Backend: Send + Sync {
    /// Which backend this is.
    fn backend_id(&self) -> BackendId;
    /// The backend key's id (for example `pkcs11:node0/keyrack-seal`).
    fn key_id(&self) -> &str;
    /// Prepares a new blob: the backend header to store in it and the cipher to encrypt with.
    fn new_blob(&self) -> Result<(Vec<u8>, BlobCipher<'_>), SealError>;
    /// The cipher for an existing blob, from the backend header stored in it.
    fn open_blob(&self, backend_header: &[u8]) -> Result<BlobCipher<'_>, SealError>;
    /// A live check of the backend.
    fn health(&self) -> Health;
}

impl<B: Backend> Sealer for B {
    fn backend(&self) -> BackendId {
        self.backend_id()
    }
    fn key_id(&self) -> &str {
        Backend::key_id(self)
    }
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        blob::seal(self, aad, plaintext)
    }
    fn unseal(&self, aad: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        blob::unseal(self, aad, blob)
    }
    fn health(&self) -> Health {
        Backend::health(self)
    }
}

/// Whether opening a backend may create its sealing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPolicy {
    /// The key must exist already (a running node: a missing key means a swapped or wiped
    /// device, and making a new one would hide that).
    MustExist,
    /// Create the key if it is missing (provisioning, `keyrack init`).
    CreateIfMissing,
}

/// Opens the backend chosen by `config`. Relative paths in the config are resolved against
/// `base_dir` (the directory of the config file).
pub fn open(
    config: &HsmConfig,
    base_dir: &Path,
    key_policy: KeyPolicy,
) -> Result<Box<dyn Sealer>, SealError> {
    match config.backend {
        BackendKind::Pkcs11 => {
            #[cfg(feature = "pkcs11")]
            {
                let c = config.section(config.pkcs11.as_ref(), "pkcs11")?;
                Ok(Box::new(pkcs11::Pkcs11Sealer::open(
                    c, base_dir, key_policy,
                )?))
            }
            #[cfg(not(feature = "pkcs11"))]
            Err(SealError::not_built("pkcs11"))
        }
        BackendKind::Tpm => {
            #[cfg(feature = "tpm")]
            {
                let c = config.section(config.tpm.as_ref(), "tpm")?;
                Ok(Box::new(tpm::TpmSealer::open(c, base_dir, key_policy)?))
            }
            #[cfg(not(feature = "tpm"))]
            Err(SealError::not_built("tpm"))
        }
        BackendKind::Yubihsm => {
            #[cfg(feature = "yubihsm")]
            {
                let c = config.section(config.yubihsm.as_ref(), "yubihsm")?;
                Ok(Box::new(yubihsm::YubihsmSealer::open(
                    c, base_dir, key_policy,
                )?))
            }
            #[cfg(not(feature = "yubihsm"))]
            Err(SealError::not_built("yubihsm"))
        }
        BackendKind::Soft => {
            #[cfg(feature = "soft")]
            {
                let c = config.section(config.soft.as_ref(), "soft")?;
                Ok(Box::new(soft::SoftSealer::open(c, base_dir)?))
            }
            #[cfg(not(feature = "soft"))]
            Err(SealError::not_built("soft"))
        }
    }
}
