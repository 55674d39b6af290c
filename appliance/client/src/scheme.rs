//! Signature scheme ids, as they appear on the wire and in the plugin registry.

use serde::{Deserialize, Serialize};

/// A threshold signature scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scheme {
    /// ECDSA over secp256k1 (threshold: CGGMP21). Public key: 33-byte compressed SEC1.
    /// Signature: 64 bytes `r ‖ s` with low `s`, plus the recovery id `v`.
    #[serde(rename = "ecdsa-secp256k1")]
    EcdsaSecp256k1,
    /// Ed25519 (threshold: FROST). Public key: 32 bytes. Signature: 64 bytes `R ‖ S`.
    #[serde(rename = "ed25519")]
    Ed25519,
    /// BIP-340 Schnorr over secp256k1 (threshold: FROST). Public key: 32-byte x-only.
    /// Signature: 64 bytes.
    #[serde(rename = "schnorr-secp256k1")]
    SchnorrSecp256k1,
}

impl Scheme {
    /// Every scheme.
    pub const ALL: [Scheme; 3] = [
        Scheme::EcdsaSecp256k1,
        Scheme::Ed25519,
        Scheme::SchnorrSecp256k1,
    ];

    /// The wire id.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::EcdsaSecp256k1 => "ecdsa-secp256k1",
            Scheme::Ed25519 => "ed25519",
            Scheme::SchnorrSecp256k1 => "schnorr-secp256k1",
        }
    }

    /// The length of a public key of this scheme, in bytes.
    pub fn public_key_len(self) -> usize {
        match self {
            Scheme::EcdsaSecp256k1 => 33,
            Scheme::Ed25519 | Scheme::SchnorrSecp256k1 => 32,
        }
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scheme {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scheme::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown scheme '{s}'"))
    }
}
