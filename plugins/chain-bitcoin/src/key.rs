//! The signing key as Bitcoin sees it: which output script it owns and its address.
//!
//! `ecdsa-secp256k1` keys own a P2WPKH output (BIP-141); `schnorr-secp256k1` keys own a P2TR
//! output (BIP-341) whose output key Q *is* the key: keyrack's FROST `secp256k1-tr` DKG already
//! applies the BIP-86 tweak, and HD children are Q + t·G, so the key is used as the tweaked
//! output key as is and key-path sighashes are signed without further tweaking.

use bitcoin::key::{CompressedPublicKey, TweakedPublicKey};
use bitcoin::secp256k1::XOnlyPublicKey;
use bitcoin::{Address, Network, ScriptBuf};
use keyrack_plugin::{ChainError, SignerKey};

/// The scheme id of ECDSA keys (P2WPKH).
pub(crate) const ECDSA: &str = "ecdsa-secp256k1";
/// The scheme id of BIP-340 Schnorr keys (P2TR key path).
pub(crate) const SCHNORR: &str = "schnorr-secp256k1";

/// A key this plugin signs with, parsed from its [`SignerKey`] encoding.
#[derive(Clone, Copy, Debug)]
pub(crate) enum OwnKey {
    /// A 33-byte compressed SEC1 key: spends P2WPKH outputs.
    Ecdsa(CompressedPublicKey),
    /// A 32-byte x-only key, the Taproot output key Q: spends P2TR outputs by key path.
    Schnorr(XOnlyPublicKey),
}

impl OwnKey {
    /// Parses `key`; an unknown scheme or a key that is not a valid point is refused.
    pub(crate) fn parse(key: SignerKey<'_>) -> Result<Self, ChainError> {
        match key.scheme {
            ECDSA => CompressedPublicKey::from_slice(key.public_key)
                .map(OwnKey::Ecdsa)
                .map_err(|e| {
                    ChainError::Unsupported(format!(
                        "{ECDSA} public key ({} bytes) is not a 33-byte compressed secp256k1 \
                         point: {e}",
                        key.public_key.len()
                    ))
                }),
            SCHNORR => XOnlyPublicKey::from_slice(key.public_key)
                .map(OwnKey::Schnorr)
                .map_err(|e| {
                    ChainError::Unsupported(format!(
                        "{SCHNORR} public key ({} bytes) is not a 32-byte x-only secp256k1 \
                         point: {e}",
                        key.public_key.len()
                    ))
                }),
            other => Err(ChainError::Unsupported(format!(
                "scheme {other:?} does not sign for bitcoin (use {ECDSA} or {SCHNORR})"
            ))),
        }
    }

    /// The output script the key owns: P2WPKH or P2TR with the key as output key.
    pub(crate) fn script_pubkey(&self) -> ScriptBuf {
        match self {
            OwnKey::Ecdsa(pk) => ScriptBuf::new_p2wpkh(&pk.wpubkey_hash()),
            OwnKey::Schnorr(q) => ScriptBuf::new_p2tr_tweaked(output_key(*q)),
        }
    }

    /// The key's address on `network`.
    pub(crate) fn address(&self, network: Network) -> Address {
        match self {
            OwnKey::Ecdsa(pk) => Address::p2wpkh(pk, network),
            OwnKey::Schnorr(q) => Address::p2tr_tweaked(output_key(*q), network),
        }
    }
}

/// The key as the Taproot output key Q. Sound because keyrack's Schnorr keys are already
/// tweaked (see the module docs); the P2TR output commits to Q and the key path signs with it.
fn output_key(q: XOnlyPublicKey) -> TweakedPublicKey {
    TweakedPublicKey::dangerous_assume_tweaked(q)
}
