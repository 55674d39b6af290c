//! The per-blob cipher a backend hands to the blob layer.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::blob::NONCE_LEN;
use crate::SealError;

/// A 256-bit AES key held in memory for one blob; wiped on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; 32]);

impl DataKey {
    /// Wraps key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DataKey(bytes)
    }

    /// The key bytes, for a backend that must hand them to a device to seal.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// Encrypts or decrypts one blob with AES-256-GCM.
pub trait TokenAead: Send + Sync {
    /// Encrypts inside the device; returns ciphertext ‖ tag.
    fn encrypt(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError>;
    /// Decrypts inside the device; fails with [`SealError::Authentication`] on a bad tag.
    fn decrypt(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError>;
}

/// Where a blob's AES-256-GCM runs.
pub enum BlobCipher<'a> {
    /// In software, with a data key the backend produced or unwrapped for this blob.
    Software(DataKey),
    /// Inside the device, with a key that never leaves it.
    Token(&'a dyn TokenAead),
}

impl BlobCipher<'_> {
    pub(crate) fn encrypt(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        match self {
            BlobCipher::Software(key) => Aes256Gcm::new(key.as_bytes().into())
                .encrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: plaintext,
                        aad,
                    },
                )
                .map_err(|_| SealError::Malformed("plaintext too long for AES-GCM".into())),
            BlobCipher::Token(token) => token.encrypt(nonce, aad, plaintext),
        }
    }

    pub(crate) fn decrypt(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        match self {
            BlobCipher::Software(key) => Aes256Gcm::new(key.as_bytes().into())
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad,
                    },
                )
                .map(Zeroizing::new)
                .map_err(|_| SealError::Authentication),
            BlobCipher::Token(token) => token.decrypt(nonce, aad, ciphertext),
        }
    }
}
