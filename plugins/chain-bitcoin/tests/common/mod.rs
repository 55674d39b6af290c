//! Helpers shared by the chain-bitcoin tests: keys signed with k256 (a secp256k1
//! implementation independent of the libsecp256k1 the plugin verifies with), hex, vector files.
#![allow(dead_code)]

use k256::ecdsa::signature::hazmat::PrehashVerifier;
use keyrack_plugin::SignerKey;

pub const ECDSA: &str = "ecdsa-secp256k1";
pub const SCHNORR: &str = "schnorr-secp256k1";

pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}"))
}

/// The non-comment lines of a vector file.
pub fn vector_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// An ECDSA key: its k256 signing key and its 33-byte compressed public key.
pub struct EcdsaKey {
    pub signing: k256::ecdsa::SigningKey,
    pub public: Vec<u8>,
}

impl EcdsaKey {
    pub fn new(secret: &[u8]) -> Self {
        let signing = k256::ecdsa::SigningKey::from_slice(secret).expect("secret key");
        let public = signing
            .verifying_key()
            .to_encoded_point(true)
            .as_bytes()
            .to_vec();
        Self { signing, public }
    }

    pub fn signer(&self) -> SignerKey<'_> {
        SignerKey {
            scheme: ECDSA,
            public_key: &self.public,
        }
    }

    /// `r ‖ s ‖ recovery id` over a digest, as the ECDSA scheme plugin returns it (low-s).
    pub fn sign(&self, digest: &[u8]) -> Vec<u8> {
        let (signature, recid) = self.signing.sign_prehash_recoverable(digest).expect("sign");
        assert!(signature.normalize_s().is_none(), "k256 signs low-s");
        let mut out = signature.to_bytes().to_vec();
        out.push(recid.to_byte());
        out
    }

    /// Checks a DER signature over `digest` with k256.
    pub fn verify_der(&self, digest: &[u8], der: &[u8]) {
        let signature = k256::ecdsa::Signature::from_der(der).expect("DER signature");
        self.signing
            .verifying_key()
            .verify_prehash(digest, &signature)
            .expect("ECDSA signature verifies (k256)");
    }
}

/// A BIP-340 key whose x-only public key is the Taproot output key Q.
pub struct SchnorrKey {
    pub signing: k256::schnorr::SigningKey,
    pub public: Vec<u8>,
}

impl SchnorrKey {
    pub fn new(secret: &[u8]) -> Self {
        let signing = k256::schnorr::SigningKey::from_bytes(secret).expect("secret key");
        let public = signing.verifying_key().to_bytes().to_vec();
        Self { signing, public }
    }

    pub fn signer(&self) -> SignerKey<'_> {
        SignerKey {
            scheme: SCHNORR,
            public_key: &self.public,
        }
    }

    /// A 64-byte BIP-340 signature over the 32-byte message `digest`.
    pub fn sign(&self, digest: &[u8]) -> Vec<u8> {
        self.signing
            .sign_raw(digest, &[7u8; 32])
            .expect("sign")
            .to_bytes()
            .to_vec()
    }

    /// Checks a BIP-340 signature over `digest` with k256.
    pub fn verify(&self, digest: &[u8], signature: &[u8]) {
        verify_schnorr(&self.public, digest, signature);
    }
}

/// Checks a BIP-340 signature with k256.
pub fn verify_schnorr(public: &[u8], digest: &[u8], signature: &[u8]) {
    let key = k256::schnorr::VerifyingKey::from_bytes(public).expect("x-only key");
    let signature = k256::schnorr::Signature::try_from(signature).expect("64-byte signature");
    key.verify_raw(digest, &signature)
        .expect("BIP-340 signature verifies (k256)");
}
