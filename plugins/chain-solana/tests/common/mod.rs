//! Helpers shared by the Solana plugin tests (included with `mod common;`).
#![allow(dead_code)]

use ed25519_dalek::{Signer, SigningKey};
use keyrack_chain_solana::Solana;
use keyrack_plugin::{ChainError, ChainPlugin, Decoded, PayloadFormat, SignerKey};

pub fn key(public: &[u8]) -> SignerKey<'_> {
    SignerKey {
        scheme: "ed25519",
        public_key: public,
    }
}

pub fn decode(payload: &[u8], public: &[u8]) -> Result<Decoded, ChainError> {
    Solana::new().decode(PayloadFormat::Transaction, payload, key(public))
}

pub fn finish(payload: &[u8], public: &[u8], signature: Vec<u8>) -> Result<Vec<u8>, ChainError> {
    Solana::new().finish(
        PayloadFormat::Transaction,
        payload,
        key(public),
        &[signature],
    )
}

/// A deterministic test key.
pub fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn sign(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    key.sign(message).to_bytes().to_vec()
}

pub fn base58(bytes: &[u8]) -> String {
    bs58::encode(bytes).into_string()
}
