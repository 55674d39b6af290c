//! Verifies a threshold signature a node returned, with libraries independent of the ones
//! the nodes sign with (k256 for secp256k1, ed25519-dalek for Ed25519). The SDK never returns
//! a signature that did not pass here. What is checked is exactly what a chain would check:
//! the signature, under the public key in the result, over `digest_or_message`.

use crate::result::SignatureInfo;
use crate::scheme::Scheme;

/// Checks `info.signature` under `info.public_key` over `info.digest_or_message`:
///
/// - ECDSA secp256k1: `verify_prehash` on the 32-byte digest, `s` low, and public key
///   recovery with `v` gives the public key back;
/// - Ed25519: strict RFC 8032 verification (`verify_strict`);
/// - BIP-340 Schnorr: `verify_raw` on the 32-byte message with the x-only key.
///
/// Returns why it failed.
pub fn verify_signature(info: &SignatureInfo) -> Result<(), String> {
    match info.scheme {
        Scheme::EcdsaSecp256k1 => verify_ecdsa(info),
        Scheme::Ed25519 => verify_ed25519(info),
        Scheme::SchnorrSecp256k1 => verify_bip340(info),
    }
}

fn verify_ecdsa(info: &SignatureInfo) -> Result<(), String> {
    use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
    use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
    let digest = info.digest_or_message.as_slice();
    if digest.len() != 32 {
        return Err(format!("ECDSA digest is {} bytes, not 32", digest.len()));
    }
    let key = VerifyingKey::from_sec1_bytes(&info.public_key)
        .map_err(|_| "public key is not a secp256k1 point".to_owned())?;
    let sig = Signature::from_slice(&info.signature)
        .map_err(|_| "r or s is zero or not below the group order".to_owned())?;
    if sig.normalize_s().is_some() {
        return Err("s is high (not normalised)".into());
    }
    key.verify_prehash(digest, &sig)
        .map_err(|_| "ECDSA verification failed".to_owned())?;
    let v = info.v.ok_or("the recovery id v is missing")?;
    let recovery_id = RecoveryId::from_byte(v).ok_or(format!("recovery id {v} is not 0 or 1"))?;
    let recovered = VerifyingKey::recover_from_prehash(digest, &sig, recovery_id)
        .map_err(|_| format!("no public key recovers with v = {v}"))?;
    if recovered != key {
        return Err(format!("v = {v} recovers another public key"));
    }
    Ok(())
}

fn verify_ed25519(info: &SignatureInfo) -> Result<(), String> {
    let bytes: [u8; 32] = info
        .public_key
        .as_slice()
        .try_into()
        .map_err(|_| "an Ed25519 public key is 32 bytes".to_owned())?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| "public key is not an Ed25519 point".to_owned())?;
    let sig = ed25519_dalek::Signature::from_bytes(&info.signature);
    key.verify_strict(&info.digest_or_message, &sig)
        .map_err(|_| "Ed25519 verification failed".to_owned())
}

fn verify_bip340(info: &SignatureInfo) -> Result<(), String> {
    use k256::schnorr::{Signature, VerifyingKey};
    if info.digest_or_message.len() != 32 {
        return Err(format!(
            "BIP-340 message is {} bytes, not 32",
            info.digest_or_message.len()
        ));
    }
    let key = VerifyingKey::from_bytes(&info.public_key)
        .map_err(|_| "public key is not an x-only secp256k1 key".to_owned())?;
    let sig = Signature::try_from(info.signature.as_slice())
        .map_err(|_| "not a BIP-340 signature encoding".to_owned())?;
    key.verify_raw(&info.digest_or_message, &sig)
        .map_err(|_| "BIP-340 verification failed".to_owned())
}
