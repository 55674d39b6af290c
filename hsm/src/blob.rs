//! The sealed blob layout, the same for every backend.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "KRSB"
//! 4       1     format version (1)
//! 5       1     backend id (1 pkcs11, 2 tpm, 3 yubihsm, 4 soft)
//! 6       1     key id length K (1..=255)
//! 7       K     key id, UTF-8 (e.g. "pkcs11:node0/keyrack-seal")
//! 7+K     2     backend header length H, big-endian
//! 9+K     H     backend header (tpm: the sealed data-key object; yubihsm: the HMAC salt)
//! 9+K+H   12    AES-GCM nonce
//! 21+K+H  ...   ciphertext, then the 16-byte GCM tag
//! ```
//!
//! The GCM associated data is `"keyrack-seal-v1" ‖ u32be(len(aad)) ‖ aad ‖ header`, where
//! `header` is every byte before the ciphertext. So the caller's record name, the backend, the
//! key id, the backend header and the nonce are all authenticated: changing any of them, or
//! opening the blob as another record, fails.

use std::fmt;

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{Backend, SealError};

/// First bytes of every sealed blob.
pub const MAGIC: &[u8; 4] = b"KRSB";
/// The blob format version this build writes and reads.
pub const VERSION: u8 = 1;
/// Length of the AES-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Length of the AES-GCM tag.
pub const TAG_LEN: usize = 16;
const AAD_DOMAIN: &[u8] = b"keyrack-seal-v1";

/// The sealing backends, with their ids in the blob header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendId {
    /// PKCS#11 token.
    Pkcs11 = 1,
    /// TPM 2.0.
    Tpm = 2,
    /// YubiHSM 2.
    Yubihsm = 3,
    /// Passphrase-derived software key (development only).
    Soft = 4,
}

impl BackendId {
    fn from_byte(b: u8) -> Result<Self, SealError> {
        Ok(match b {
            1 => BackendId::Pkcs11,
            2 => BackendId::Tpm,
            3 => BackendId::Yubihsm,
            4 => BackendId::Soft,
            other => return Err(SealError::Malformed(format!("unknown backend id {other}"))),
        })
    }

    /// The backend's name as used in configuration.
    pub fn name(self) -> &'static str {
        match self {
            BackendId::Pkcs11 => "pkcs11",
            BackendId::Tpm => "tpm",
            BackendId::Yubihsm => "yubihsm",
            BackendId::Soft => "soft",
        }
    }
}

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The parsed header of a sealed blob: what a person may inspect without unsealing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    /// Format version.
    pub version: u8,
    /// Backend that made the blob.
    pub backend: BackendId,
    /// Backend key it was sealed under.
    pub key_id: String,
    /// Length of the sealed plaintext.
    pub plaintext_len: usize,
}

struct Parsed<'a> {
    info: BlobInfo,
    header: &'a [u8],
    backend_header: &'a [u8],
    nonce: [u8; NONCE_LEN],
    ciphertext: &'a [u8],
}

fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize, what: &str) -> Result<&'a [u8], SealError> {
    let end = at
        .checked_add(n)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| SealError::Malformed(format!("truncated in {what}")))?;
    let out = &bytes[*at..end];
    *at = end;
    Ok(out)
}

fn parse(blob: &[u8]) -> Result<Parsed<'_>, SealError> {
    let mut at = 0;
    if take(blob, &mut at, 4, "magic")? != MAGIC {
        return Err(SealError::Malformed(
            "not a keyrack sealed blob (bad magic)".into(),
        ));
    }
    let version = take(blob, &mut at, 1, "version")?[0];
    if version != VERSION {
        return Err(SealError::UnsupportedVersion {
            found: version,
            supported: VERSION,
        });
    }
    let backend = BackendId::from_byte(take(blob, &mut at, 1, "backend id")?[0])?;
    let key_len = take(blob, &mut at, 1, "key id length")?[0] as usize;
    let key_id = std::str::from_utf8(take(blob, &mut at, key_len, "key id")?)
        .map_err(|_| SealError::Malformed("key id is not UTF-8".into()))?
        .to_owned();
    let hlen = take(blob, &mut at, 2, "backend header length")?;
    let hlen = u16::from_be_bytes([hlen[0], hlen[1]]) as usize;
    let backend_header = take(blob, &mut at, hlen, "backend header")?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(take(blob, &mut at, NONCE_LEN, "nonce")?);
    let header = &blob[..at];
    let ciphertext = &blob[at..];
    if ciphertext.len() < TAG_LEN {
        return Err(SealError::Malformed("truncated in ciphertext".into()));
    }
    Ok(Parsed {
        info: BlobInfo {
            version,
            backend,
            key_id,
            plaintext_len: ciphertext.len() - TAG_LEN,
        },
        header,
        backend_header,
        nonce,
        ciphertext,
    })
}

/// Reads a blob's header without unsealing it.
pub fn inspect(blob: &[u8]) -> Result<BlobInfo, SealError> {
    parse(blob).map(|p| p.info)
}

fn aead_aad(caller_aad: &[u8], header: &[u8]) -> Result<Vec<u8>, SealError> {
    let len = u32::try_from(caller_aad.len())
        .map_err(|_| SealError::Malformed("AAD longer than 4 GiB".into()))?;
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + 4 + caller_aad.len() + header.len());
    aad.extend_from_slice(AAD_DOMAIN);
    aad.extend_from_slice(&len.to_be_bytes());
    aad.extend_from_slice(caller_aad);
    aad.extend_from_slice(header);
    Ok(aad)
}

/// Seals `plaintext` through `backend` (see [`crate::Sealer::seal`]).
pub fn seal<B: Backend + ?Sized>(
    backend: &B,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let key_id = backend.key_id().as_bytes();
    let key_len = u8::try_from(key_id.len())
        .ok()
        .filter(|l| *l > 0)
        .ok_or_else(|| {
            SealError::Malformed(format!("key id must be 1..=255 bytes, is {}", key_id.len()))
        })?;
    let (backend_header, cipher) = backend.new_blob()?;
    let hlen = u16::try_from(backend_header.len())
        .map_err(|_| SealError::Malformed("backend header longer than 64 KiB".into()))?;
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);

    let mut blob = Vec::with_capacity(
        9 + key_id.len() + backend_header.len() + NONCE_LEN + plaintext.len() + TAG_LEN,
    );
    blob.extend_from_slice(MAGIC);
    blob.push(VERSION);
    blob.push(backend.backend_id() as u8);
    blob.push(key_len);
    blob.extend_from_slice(key_id);
    blob.extend_from_slice(&hlen.to_be_bytes());
    blob.extend_from_slice(&backend_header);
    blob.extend_from_slice(&nonce);
    let full_aad = aead_aad(aad, &blob)?;
    let ciphertext = cipher.encrypt(&nonce, &full_aad, plaintext)?;
    if ciphertext.len() != plaintext.len() + TAG_LEN {
        return Err(SealError::backend(
            backend.backend_id(),
            "encrypt",
            "unexpected ciphertext length",
        ));
    }
    blob.extend_from_slice(&ciphertext);
    Ok(blob)
}

/// Opens a blob made by [`seal`] (see [`crate::Sealer::unseal`]).
pub fn unseal<B: Backend + ?Sized>(
    backend: &B,
    aad: &[u8],
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let parsed = parse(blob)?;
    if parsed.info.backend != backend.backend_id() {
        return Err(SealError::WrongBackend {
            blob: parsed.info.backend,
            sealer: backend.backend_id(),
        });
    }
    if parsed.info.key_id != backend.key_id() {
        return Err(SealError::WrongKey {
            blob: parsed.info.key_id,
            sealer: backend.key_id().to_owned(),
        });
    }
    let full_aad = aead_aad(aad, parsed.header)?;
    let cipher = backend.open_blob(parsed.backend_header)?;
    cipher.decrypt(&parsed.nonce, &full_aad, parsed.ciphertext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cipher::{BlobCipher, DataKey};
    use crate::Health;

    /// A backend with a fixed software key, to test the layout alone.
    struct Fixed(DataKey, &'static str);
    impl Backend for Fixed {
        fn backend_id(&self) -> BackendId {
            BackendId::Soft
        }
        fn key_id(&self) -> &str {
            self.1
        }
        fn new_blob(&self) -> Result<(Vec<u8>, BlobCipher<'_>), SealError> {
            Ok((b"hdr".to_vec(), BlobCipher::Software(self.0.clone())))
        }
        fn open_blob(&self, h: &[u8]) -> Result<BlobCipher<'_>, SealError> {
            assert_eq!(h, b"hdr");
            Ok(BlobCipher::Software(self.0.clone()))
        }
        fn health(&self) -> Health {
            Health::healthy(BackendId::Soft, self.1, "fixed")
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let b = Fixed(DataKey::from_bytes([7; 32]), "soft:abc");
        let blob = seal(&b, b"rec", b"hello").unwrap();
        assert_eq!(&blob[..4], MAGIC);
        assert_eq!(blob[4], VERSION);
        assert_eq!(blob[5], BackendId::Soft as u8);
        assert_eq!(blob[6] as usize, "soft:abc".len());
        assert_eq!(&blob[7..15], b"soft:abc");
        assert_eq!(&blob[15..17], &3u16.to_be_bytes());
        assert_eq!(&blob[17..20], b"hdr");
        assert_eq!(blob.len(), 20 + NONCE_LEN + 5 + TAG_LEN);
        let info = inspect(&blob).unwrap();
        assert_eq!(
            info,
            BlobInfo {
                version: 1,
                backend: BackendId::Soft,
                key_id: "soft:abc".into(),
                plaintext_len: 5
            }
        );
        assert_eq!(&unseal(&b, b"rec", &blob).unwrap()[..], b"hello");
    }

    #[test]
    fn every_truncation_is_malformed_not_a_panic() {
        let b = Fixed(DataKey::from_bytes([7; 32]), "soft:abc");
        let blob = seal(&b, b"rec", b"hello").unwrap();
        for n in 0..blob.len() {
            let err = unseal(&b, b"rec", &blob[..n]).unwrap_err();
            assert!(
                matches!(err, SealError::Malformed(_) | SealError::Authentication),
                "truncation to {n} bytes gave {err:?}"
            );
        }
    }

    #[test]
    fn future_version_is_refused_by_name() {
        let b = Fixed(DataKey::from_bytes([7; 32]), "soft:abc");
        let mut blob = seal(&b, b"rec", b"hello").unwrap();
        blob[4] = 2;
        assert!(matches!(
            unseal(&b, b"rec", &blob),
            Err(SealError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        ));
    }

    /// Golden fixture: a blob written by format version 1 must keep opening.
    #[test]
    fn golden_v1_blob_still_opens() {
        let b = Fixed(DataKey::from_bytes([0x42; 32]), "soft:golden");
        let blob = hex::decode(GOLDEN_V1.trim()).unwrap();
        assert_eq!(
            &unseal(&b, b"golden-record", &blob).unwrap()[..],
            b"keyrack golden plaintext"
        );
    }

    // Made once with `seal(&Fixed(DataKey::from_bytes([0x42; 32]), "soft:golden"),
    // b"golden-record", b"keyrack golden plaintext")`.
    const GOLDEN_V1: &str = include_str!("../testdata/golden-v1.hex");
}
