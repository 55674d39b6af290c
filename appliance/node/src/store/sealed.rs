//! What the store seals: the record names (AADs) that bind each blob to its row, and the
//! plaintext layouts of shares and presignatures.
//!
//! Plaintexts are written into a [`Zeroizing`] buffer allocated once at its final size, and
//! read back by slicing, so no unzeroized copy of a secret is left behind by a growing buffer.
//! Layouts are length-prefixed big-endian, and start with a kind byte and a format version:
//!
//! ```text
//! share v1:        'S' 0x01 | threshold u16 | parties u16 | index u16 | chain code [32]
//!                  | scheme (u16 len) | public key (u32 len) | secret (u32 len)
//! presignature v1: 'P' 0x01 | scheme (u16 len) | public key (u32 len)
//!                  | signer count u16 | signers u16… | secret (u32 len)
//! ```

use keyrack_plugin::{KeyShare, Presignature};
use zeroize::Zeroizing;

use super::error::{Result, StoreError};

const SHARE_KIND: u8 = b'S';
const PRESIGNATURE_KIND: u8 = b'P';
const FORMAT_V1: u8 = 1;

/// The AAD of a key share blob: it names cluster, node, key, scheme and key version, so the
/// blob opens only as the share of exactly that record.
pub fn share_aad(cluster: &str, node: &str, key_id: &str, scheme: &str, version: u32) -> Vec<u8> {
    format!("keyrack/v1/share/{cluster}/{node}/{key_id}/{scheme}/{version}").into_bytes()
}

/// The AAD of a presignature blob: like [`share_aad`], plus the signer set and the pool
/// entry's id.
pub fn presignature_aad(
    cluster: &str,
    node: &str,
    key_id: &str,
    scheme: &str,
    version: u32,
    signers: &[u16],
    id: &str,
) -> Vec<u8> {
    let signers: Vec<String> = signers.iter().map(u16::to_string).collect();
    format!(
        "keyrack/v1/presignature/{cluster}/{node}/{key_id}/{scheme}/{version}/{}/{id}",
        signers.join(",")
    )
    .into_bytes()
}

/// The AAD of a pair of safe primes in the pool: it names cluster, node and the entry's id.
pub fn primes_aad(cluster: &str, node: &str, id: &str) -> Vec<u8> {
    format!("keyrack/v1/primes/{cluster}/{node}/{id}").into_bytes()
}

/// The AAD of a committee's aux info: it names cluster, node, the committee id and the
/// aux info's public fingerprint, so a blob opens only for the row it was written to.
pub fn committee_aux_aad(
    cluster: &str,
    node: &str,
    committee: &str,
    fingerprint: &[u8; 32],
) -> Vec<u8> {
    format!(
        "keyrack/v1/committee-aux/{cluster}/{node}/{committee}/{}",
        hex::encode(fingerprint)
    )
    .into_bytes()
}

/// Checks an id that becomes one component of a record name: 1..=`max` bytes of
/// `[A-Za-z0-9._:-]`, so that no id can contain the `/` separating components.
pub(crate) fn check_component(kind: &str, value: &str, max: usize) -> Result<()> {
    let ok = (1..=max).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidRequest(format!(
            "{kind} '{value}' must be 1 to {max} characters of A-Z a-z 0-9 . _ : -"
        )))
    }
}

fn len_u16(what: &str, n: usize) -> Result<u16> {
    u16::try_from(n).map_err(|_| StoreError::InvalidRequest(format!("{what} is too long")))
}

fn len_u32(what: &str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| StoreError::InvalidRequest(format!("{what} is too long")))
}

/// Encodes a share for sealing.
pub(crate) fn encode_share(share: &KeyShare) -> Result<Zeroizing<Vec<u8>>> {
    let scheme_len = len_u16("scheme", share.scheme.len())?;
    let pk_len = len_u32("public key", share.public_key.len())?;
    let secret_len = len_u32("share secret", share.secret.len())?;
    let total =
        2 + 6 + 32 + 2 + share.scheme.len() + 4 + share.public_key.len() + 4 + share.secret.len();
    let mut out = Zeroizing::new(Vec::with_capacity(total));
    out.extend_from_slice(&[SHARE_KIND, FORMAT_V1]);
    out.extend_from_slice(&share.threshold.to_be_bytes());
    out.extend_from_slice(&share.parties.to_be_bytes());
    out.extend_from_slice(&share.index.to_be_bytes());
    out.extend_from_slice(&share.chain_code);
    out.extend_from_slice(&scheme_len.to_be_bytes());
    out.extend_from_slice(share.scheme.as_bytes());
    out.extend_from_slice(&pk_len.to_be_bytes());
    out.extend_from_slice(&share.public_key);
    out.extend_from_slice(&secret_len.to_be_bytes());
    out.extend_from_slice(&share.secret);
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

/// Decodes an unsealed share.
pub(crate) fn decode_share(bytes: &[u8]) -> Result<KeyShare> {
    let mut r = Reader::new(bytes, "share");
    r.header(SHARE_KIND)?;
    let threshold = r.u16()?;
    let parties = r.u16()?;
    let index = r.u16()?;
    let mut chain_code = [0u8; 32];
    chain_code.copy_from_slice(r.take(32)?);
    let scheme = r.string_u16()?;
    let public_key = r.bytes_u32()?.to_vec();
    let secret = Zeroizing::new(r.bytes_u32()?.to_vec());
    r.end()?;
    Ok(KeyShare {
        scheme,
        public_key,
        chain_code,
        threshold,
        parties,
        index,
        secret,
    })
}

/// Encodes a presignature for sealing.
pub(crate) fn encode_presignature(p: &Presignature) -> Result<Zeroizing<Vec<u8>>> {
    let scheme_len = len_u16("scheme", p.scheme.len())?;
    let pk_len = len_u32("public key", p.public_key.len())?;
    let signer_count = len_u16("signer list", p.signers.len())?;
    let secret_len = len_u32("presignature secret", p.secret.len())?;
    let total = 2
        + 2
        + p.scheme.len()
        + 4
        + p.public_key.len()
        + 2
        + 2 * p.signers.len()
        + 4
        + p.secret.len();
    let mut out = Zeroizing::new(Vec::with_capacity(total));
    out.extend_from_slice(&[PRESIGNATURE_KIND, FORMAT_V1]);
    out.extend_from_slice(&scheme_len.to_be_bytes());
    out.extend_from_slice(p.scheme.as_bytes());
    out.extend_from_slice(&pk_len.to_be_bytes());
    out.extend_from_slice(&p.public_key);
    out.extend_from_slice(&signer_count.to_be_bytes());
    for s in &p.signers {
        out.extend_from_slice(&s.to_be_bytes());
    }
    out.extend_from_slice(&secret_len.to_be_bytes());
    out.extend_from_slice(&p.secret);
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

/// Decodes an unsealed presignature.
pub(crate) fn decode_presignature(bytes: &[u8]) -> Result<Presignature> {
    let mut r = Reader::new(bytes, "presignature");
    r.header(PRESIGNATURE_KIND)?;
    let scheme = r.string_u16()?;
    let public_key = r.bytes_u32()?.to_vec();
    let count = r.u16()?;
    let mut signers = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        signers.push(r.u16()?);
    }
    let secret = Zeroizing::new(r.bytes_u32()?.to_vec());
    r.end()?;
    Ok(Presignature {
        scheme,
        public_key,
        signers,
        secret,
    })
}

/// Reads a length-prefixed layout; every failure is [`StoreError::Corrupt`].
struct Reader<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Reader { rest: bytes, what }
    }

    fn corrupt(&self, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            what: format!("unsealed {} payload: {detail}", self.what),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(self.corrupt("truncated"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn header(&mut self, kind: u8) -> Result<()> {
        let h = self.take(2)?;
        if h[0] != kind {
            return Err(self.corrupt(format_args!("kind byte {:#04x}", h[0])));
        }
        if h[1] != FORMAT_V1 {
            return Err(self.corrupt(format_args!(
                "format version {} (this build reads {FORMAT_V1})",
                h[1]
            )));
        }
        Ok(())
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string_u16(&mut self) -> Result<String> {
        let n = self.u16()?;
        let b = self.take(usize::from(n))?;
        String::from_utf8(b.to_vec()).map_err(|_| self.corrupt("scheme is not UTF-8"))
    }

    fn bytes_u32(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()?;
        let n = usize::try_from(n).map_err(|_| self.corrupt("length overflows"))?;
        self.take(n)
    }

    fn end(&self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt(format_args!("{} trailing bytes", self.rest.len())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_layout_round_trips() {
        let share = KeyShare {
            scheme: "ed25519".into(),
            public_key: vec![1; 32],
            chain_code: [2; 32],
            threshold: 2,
            parties: 3,
            index: 1,
            secret: Zeroizing::new(vec![3; 70]),
        };
        let bytes = encode_share(&share).unwrap();
        assert_eq!(bytes.capacity(), bytes.len());
        let back = decode_share(&bytes).unwrap();
        assert_eq!(back.secret, share.secret);
        assert_eq!(back.public_key, share.public_key);
        assert_eq!((back.threshold, back.parties, back.index), (2, 3, 1));
        assert!(decode_share(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_presignature(&bytes).is_err());
    }

    #[test]
    fn presignature_layout_round_trips() {
        let p = Presignature {
            scheme: "ecdsa-secp256k1".into(),
            public_key: vec![4; 33],
            signers: vec![0, 2],
            secret: Zeroizing::new(vec![5; 100]),
        };
        let bytes = encode_presignature(&p).unwrap();
        assert_eq!(bytes.capacity(), bytes.len());
        let back = decode_presignature(&bytes).unwrap();
        assert_eq!(back.signers, vec![0, 2]);
        assert_eq!(back.secret, p.secret);
    }

    #[test]
    fn components_cannot_carry_separators() {
        assert!(check_component("key id", "wallet-1", 128).is_ok());
        assert!(check_component("key id", "a/b", 128).is_err());
        assert!(check_component("key id", "", 128).is_err());
    }
}
