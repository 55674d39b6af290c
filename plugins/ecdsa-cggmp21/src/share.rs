//! The stored form of a cggmp21 key share inside [`keyrack_plugin::KeyShare`], and the
//! checks that a share given back to the plugin belongs where it claims.
//!
//! `KeyShare.secret` is the crate's versioned envelope ([`crate::envelope`]): format version
//! [`SHARE_FORMAT`] (u16, big-endian) followed by CBOR of cggmp21's complete `KeyShare`
//! (core share and committee aux info, cggmp21's serde field names).

use cggmp21::generic_ec::{NonZero, Point};
use cggmp21::key_share::AnyKeyShare;
use keyrack_plugin::{KeyShare, ProtocolError};

use crate::aux::Level;
use crate::envelope;

/// The curve.
pub(crate) type E = cggmp21::supported_curves::Secp256k1;
/// A complete cggmp21 key share (core share and aux info).
pub(crate) type Share = cggmp21::KeyShare<E, Level>;

/// Format version of `KeyShare.secret`.
pub const SHARE_FORMAT: u16 = 1;

/// SEC1-compressed encoding of a point.
pub(crate) fn sec1(point: &Point<E>) -> Vec<u8> {
    point.to_bytes(true).to_vec()
}

/// Parses a SEC1 public key.
pub(crate) fn parse_point(bytes: &[u8]) -> Result<NonZero<Point<E>>, ProtocolError> {
    Point::<E>::from_bytes(bytes)
        .ok()
        .and_then(NonZero::from_point)
        .ok_or_else(|| {
            ProtocolError::InvalidRequest("public key is not a SEC1 secp256k1 point".into())
        })
}

/// Wraps a cggmp21 share for the node.
pub(crate) fn to_keyrack(share: &Share) -> Result<KeyShare, ProtocolError> {
    let chain_code =
        share.core.key_info.chain_code.ok_or_else(|| {
            ProtocolError::InvalidMaterial("key share has no HD chain code".into())
        })?;
    Ok(KeyShare {
        scheme: crate::SCHEME_ID.0.to_owned(),
        public_key: sec1(&share.shared_public_key()),
        chain_code,
        threshold: share.min_signers(),
        parties: share.n(),
        index: share.core.i,
        secret: envelope::encode(SHARE_FORMAT, share)?,
    })
}

/// Unwraps (and re-validates) a share the node hands back, checking that its public fields
/// match what is inside.
pub(crate) fn from_keyrack(share: &KeyShare) -> Result<Share, ProtocolError> {
    if share.scheme != crate::SCHEME_ID.0 {
        return Err(ProtocolError::InvalidMaterial(format!(
            "a {} share given to {}",
            share.scheme,
            crate::SCHEME_ID
        )));
    }
    let inner: Share = envelope::decode(SHARE_FORMAT, &share.secret, "key share")?;
    let matches = inner.core.i == share.index
        && inner.n() == share.parties
        && inner.min_signers() == share.threshold
        && sec1(&inner.shared_public_key()) == share.public_key
        && inner.core.key_info.chain_code == Some(share.chain_code);
    if !matches {
        return Err(ProtocolError::InvalidMaterial(
            "key share's public fields do not match its secret part".into(),
        ));
    }
    Ok(inner)
}
