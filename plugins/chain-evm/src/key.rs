//! The signing key: its EVM address, and checking a signature against it before anything is
//! handed back (a signature that does not recover to the key's address would send a
//! transaction the network attributes to someone else).

use alloy_primitives::{Address, Signature, B256};
use k256::ecdsa::{RecoveryId, Signature as EcdsaSignature, VerifyingKey};
use keyrack_plugin::{ChainError, SignerKey};

/// The one scheme that signs for EVM chains.
pub(crate) const SCHEME: &str = "ecdsa-secp256k1";

/// The key's public point, refusing any other scheme or encoding than 33-byte compressed SEC1.
pub(crate) fn verifying_key(key: SignerKey<'_>) -> Result<VerifyingKey, ChainError> {
    if key.scheme != SCHEME {
        return Err(ChainError::Unsupported(format!(
            "scheme {:?} does not sign for evm (only {SCHEME})",
            key.scheme
        )));
    }
    let bytes = key.public_key;
    if bytes.len() != 33 || !matches!(bytes[0], 0x02 | 0x03) {
        return Err(ChainError::Unsupported(format!(
            "an {SCHEME} public key for evm is 33 bytes of compressed SEC1 (0x02/0x03 prefix); \
             got {} bytes",
            bytes.len()
        )));
    }
    VerifyingKey::from_sec1_bytes(bytes).map_err(|_| {
        ChainError::Unsupported(format!(
            "the {SCHEME} public key is not a point on secp256k1"
        ))
    })
}

/// The key's address: the last 20 bytes of keccak-256 of the uncompressed point.
pub(crate) fn address(key: &VerifyingKey) -> Address {
    Address::from_public_key(key)
}

/// The EIP-55 checksummed text of an address.
pub(crate) fn checksummed(address: &Address) -> String {
    address.to_checksum(None)
}

/// Checks `signature` (`r ‖ s ‖ recovery id`, 65 bytes, low-s) over `digest` against `key` and
/// returns it as an alloy signature. `what` names the item for the error.
pub(crate) fn check_signature(
    digest: &B256,
    signature: &[u8],
    key: &VerifyingKey,
    what: &str,
) -> Result<Signature, ChainError> {
    let finish = |reason: String| ChainError::Finish(format!("signature for {what}: {reason}"));
    let Ok(raw) = <&[u8; 65]>::try_from(signature) else {
        return Err(finish(format!(
            "{} bytes; expected 65 (r ‖ s ‖ recovery id)",
            signature.len()
        )));
    };
    let recid = raw[64];
    if recid > 1 {
        return Err(finish(format!(
            "recovery id {recid}; expected 0 or 1 (an EVM signature cannot carry another)"
        )));
    }
    let ecdsa = EcdsaSignature::from_slice(&raw[..64])
        .map_err(|_| finish("r or s is zero or not below the curve order".into()))?;
    if ecdsa.normalize_s().is_some() {
        return Err(finish(
            "s is in the upper half of the curve order (EIP-2 refuses high-s signatures)".into(),
        ));
    }
    let recovery_id = RecoveryId::from_byte(recid)
        .ok_or_else(|| finish(format!("recovery id {recid} is not valid")))?;
    let recovered = VerifyingKey::recover_from_prehash(digest.as_slice(), &ecdsa, recovery_id)
        .map_err(|_| finish("no public key recovers from it".into()))?;
    if recovered != *key {
        return Err(finish(format!(
            "it recovers to {}, not to the key's address {}",
            checksummed(&address(&recovered)),
            checksummed(&address(key))
        )));
    }
    Ok(Signature::from_signature_and_parity(ecdsa, recid == 1))
}
