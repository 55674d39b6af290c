//! The versioned encoding of a FROST share inside [`keyrack_plugin::KeyShare::secret`], and of
//! a presignature inside [`keyrack_plugin::Presignature::secret`].
//!
//! Share format 1: CBOR map `{format: 1, key_package, public_key_package}`, the two packages in
//! frost-core's own serialisation (which carries its own ciphersuite and version header).

use frost_core::keys::{KeyPackage, PublicKeyPackage};
use frost_core::Ciphersuite;
use keyrack_plugin::{KeyShare, ProtocolError};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::suite::{internal, FrostSuite};
use crate::wire::encode;

/// The share format this build writes; it reads this one.
pub(crate) const SHARE_FORMAT: u16 = 1;
/// The presignature format.
pub(crate) const PRESIG_FORMAT: u16 = 1;

#[derive(Serialize, Deserialize)]
struct ShareV1 {
    format: u16,
    key_package: Vec<u8>,
    public_key_package: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct PresigV1 {
    pub format: u16,
    pub nonces: Vec<u8>,
    /// (key index, serialised commitments) for every signer, own included.
    pub commitments: Vec<(u16, Vec<u8>)>,
}

/// The share's packages, decoded.
pub(crate) struct Packages<C: Ciphersuite> {
    pub key: KeyPackage<C>,
    pub public: PublicKeyPackage<C>,
}

pub(crate) fn encode_share<C: Ciphersuite>(
    key: &KeyPackage<C>,
    public: &PublicKeyPackage<C>,
) -> Result<Zeroizing<Vec<u8>>, ProtocolError> {
    let v1 = ShareV1 {
        format: SHARE_FORMAT,
        key_package: key.serialize().map_err(internal)?,
        public_key_package: public.serialize().map_err(internal)?,
    };
    let out = Zeroizing::new(encode(&v1)?);
    let ShareV1 {
        mut key_package, ..
    } = v1;
    zeroize::Zeroize::zeroize(&mut key_package);
    Ok(out)
}

pub(crate) fn decode_share<S: FrostSuite>(
    share: &KeyShare,
) -> Result<Packages<S::C>, ProtocolError> {
    if share.scheme != S::ID {
        return Err(ProtocolError::InvalidMaterial(format!(
            "a {} share given to the {} scheme",
            share.scheme,
            S::ID
        )));
    }
    let mut v1: ShareV1 = ciborium::from_reader(share.secret.as_slice())
        .map_err(|e| ProtocolError::InvalidMaterial(format!("share does not decode: {e}")))?;
    if v1.format != SHARE_FORMAT {
        return Err(ProtocolError::InvalidMaterial(format!(
            "share format {} is not supported (this build reads {SHARE_FORMAT})",
            v1.format
        )));
    }
    let key = KeyPackage::deserialize(&v1.key_package).map_err(internal);
    zeroize::Zeroize::zeroize(&mut v1.key_package);
    let public = PublicKeyPackage::deserialize(&v1.public_key_package).map_err(internal)?;
    let key = key?;
    if S::encode_public_key(public.verifying_key())? != share.public_key {
        return Err(ProtocolError::InvalidMaterial(
            "share's packages do not match its public key".into(),
        ));
    }
    Ok(Packages { key, public })
}
