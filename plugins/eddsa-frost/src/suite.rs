//! The two ciphersuites, and the arithmetic the protocols of this crate do outside frost-core
//! (HD tweaks, resharing), through frost-core's public serialisation.

use frost_core::keys::{SigningShare, VerifyingShare};
use frost_core::{Ciphersuite, Element, Field, Group, Scalar, Signature, VerifyingKey};
use keyrack_plugin::ProtocolError;

/// A FROST ciphersuite as a keyrack scheme.
pub trait FrostSuite: Send + Sync + 'static {
    /// The frost-core ciphersuite.
    type C: Ciphersuite;
    /// Registry id.
    const ID: &'static str;
    /// The public key in the scheme's usual encoding.
    fn encode_public_key(key: &VerifyingKey<Self::C>) -> Result<Vec<u8>, ProtocolError> {
        key.serialize().map_err(internal)
    }
    /// Parses a public key in the scheme's usual encoding.
    fn decode_public_key(bytes: &[u8]) -> Result<VerifyingKey<Self::C>, ProtocolError> {
        VerifyingKey::deserialize(bytes).map_err(internal)
    }
    /// Whether the key must be negated to be the one its encoding names (BIP-340 x-only keys
    /// name the even-y point).
    fn needs_negation(_key: &VerifyingKey<Self::C>) -> Result<bool, ProtocolError> {
        Ok(false)
    }
    /// The signature in the scheme's usual encoding (64 bytes).
    fn encode_signature(signature: &Signature<Self::C>) -> Result<Vec<u8>, ProtocolError> {
        signature.serialize().map_err(internal)
    }
}

/// Ed25519 (RFC 8032 signatures).
#[derive(Clone, Copy, Debug)]
pub struct Ed25519;

impl FrostSuite for Ed25519 {
    type C = frost_ed25519::Ed25519Sha512;
    const ID: &'static str = "ed25519";
}

/// BIP-340 Schnorr over secp256k1, for Taproot key-path spends.
#[derive(Clone, Copy, Debug)]
pub struct SchnorrSecp256k1;

impl FrostSuite for SchnorrSecp256k1 {
    type C = frost_secp256k1_tr::Secp256K1Sha256TR;
    const ID: &'static str = "schnorr-secp256k1";

    /// BIP-340 keys are the 32-byte x coordinate.
    fn encode_public_key(key: &VerifyingKey<Self::C>) -> Result<Vec<u8>, ProtocolError> {
        let compressed = key.serialize().map_err(internal)?;
        match compressed.as_slice() {
            [0x02 | 0x03, x @ ..] if x.len() == 32 => Ok(x.to_vec()),
            _ => Err(internal("unexpected secp256k1 key encoding")),
        }
    }

    fn decode_public_key(bytes: &[u8]) -> Result<VerifyingKey<Self::C>, ProtocolError> {
        if bytes.len() != 32 {
            return Err(ProtocolError::InvalidRequest(
                "a BIP-340 public key is 32 bytes".into(),
            ));
        }
        let mut even = vec![0x02];
        even.extend_from_slice(bytes);
        VerifyingKey::deserialize(&even).map_err(internal)
    }

    fn needs_negation(key: &VerifyingKey<Self::C>) -> Result<bool, ProtocolError> {
        Ok(key.serialize().map_err(internal)?.first() == Some(&0x03))
    }
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::InvalidMaterial(e.to_string())
}

pub(crate) fn scalar_of<C: Ciphersuite>(
    share: &SigningShare<C>,
) -> Result<Scalar<C>, ProtocolError> {
    scalar_from_bytes::<C>(&share.serialize())
}

pub(crate) fn scalar_from_bytes<C: Ciphersuite>(bytes: &[u8]) -> Result<Scalar<C>, ProtocolError> {
    let ser = <<C::Group as Group>::Field as Field>::Serialization::try_from(bytes)
        .map_err(|_| internal("scalar has the wrong length"))?;
    <<C::Group as Group>::Field as Field>::deserialize(&ser).map_err(internal)
}

pub(crate) fn scalar_bytes<C: Ciphersuite>(s: &Scalar<C>) -> Vec<u8> {
    <<C::Group as Group>::Field as Field>::serialize(s)
        .as_ref()
        .to_vec()
}

pub(crate) fn share_of<C: Ciphersuite>(s: &Scalar<C>) -> Result<SigningShare<C>, ProtocolError> {
    SigningShare::deserialize(&scalar_bytes::<C>(s)).map_err(internal)
}

pub(crate) fn element_bytes<C: Ciphersuite>(e: &Element<C>) -> Result<Vec<u8>, ProtocolError> {
    Ok(<C::Group as Group>::serialize(e)
        .map_err(internal)?
        .as_ref()
        .to_vec())
}

pub(crate) fn element_from_bytes<C: Ciphersuite>(
    bytes: &[u8],
) -> Result<Element<C>, ProtocolError> {
    let ser = <C::Group as Group>::Serialization::try_from(bytes)
        .map_err(|_| internal("point has the wrong length"))?;
    <C::Group as Group>::deserialize(&ser).map_err(internal)
}

pub(crate) fn verifying_share_of<C: Ciphersuite>(
    e: &Element<C>,
) -> Result<VerifyingShare<C>, ProtocolError> {
    VerifyingShare::deserialize(&element_bytes::<C>(e)?).map_err(internal)
}

pub(crate) fn element_of_share<C: Ciphersuite>(
    v: &VerifyingShare<C>,
) -> Result<Element<C>, ProtocolError> {
    element_from_bytes::<C>(&v.serialize().map_err(internal)?)
}

pub(crate) fn element_of_key<C: Ciphersuite>(
    v: &VerifyingKey<C>,
) -> Result<Element<C>, ProtocolError> {
    element_from_bytes::<C>(&v.serialize().map_err(internal)?)
}

pub(crate) fn key_of<C: Ciphersuite>(e: &Element<C>) -> Result<VerifyingKey<C>, ProtocolError> {
    VerifyingKey::deserialize(&element_bytes::<C>(e)?).map_err(internal)
}

pub(crate) fn scalar_from_u16<C: Ciphersuite>(v: u16) -> Scalar<C> {
    let one = <<C::Group as Group>::Field as Field>::one();
    let mut s = <<C::Group as Group>::Field as Field>::zero();
    for _ in 0..v {
        s = s + one;
    }
    s
}

/// Lagrange coefficient at 0 for FROST identifier `x` (key index + 1) over `set`.
pub(crate) fn lagrange_at_zero<C: Ciphersuite>(
    x: u16,
    set: &[u16],
) -> Result<Scalar<C>, ProtocolError> {
    let one = <<C::Group as Group>::Field as Field>::one();
    let (mut num, mut den) = (one, one);
    let xi = scalar_from_u16::<C>(x);
    for &other in set.iter().filter(|o| **o != x) {
        let xj = scalar_from_u16::<C>(other);
        num = num * xj;
        den = den * (xj - xi);
    }
    let inv = <<C::Group as Group>::Field as Field>::invert(&den).map_err(internal)?;
    Ok(num * inv)
}

pub(crate) fn generator<C: Ciphersuite>() -> Element<C> {
    <C::Group as Group>::generator()
}

pub(crate) fn identity<C: Ciphersuite>() -> Element<C> {
    <C::Group as Group>::identity()
}
