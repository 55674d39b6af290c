//! Threshold Schnorr signatures with FROST, written once over frost-core's ciphersuites and
//! registered twice:
//!
//! | id | ciphersuite | signatures |
//! |---|---|---|
//! | `ed25519` | `frost-ed25519` | plain Ed25519 (RFC 8032), 64 bytes |
//! | `schnorr-secp256k1` | `frost-secp256k1-tr` | BIP-340, 64 bytes, for Taproot key-path spends |
//!
//! This crate knows nothing of NATS, SQLite or HSMs: it runs protocols over a
//! [`keyrack_plugin::Channel`] and returns shares for the node to seal.
//!
//! # Protocols
//!
//! Parties are numbered by key index `k` (`0..n`); FROST identifiers are `k + 1`.
//!
//! **Keygen** (Pedersen DKG, frost-core `dkg::part1..3`), three rounds:
//! 1. broadcast: the round-1 package (commitments + proof of knowledge) and 32 random bytes
//!    toward the chain code;
//! 2. broadcast echo: SHA-256 of every round-1 message received (own included), so that a
//!    party that sent different round-1 messages to different peers is caught before any
//!    secret moves;
//! 3. point-to-point: each party's secret share for each other party (the node's transport
//!    encrypts p2p payloads).
//!
//! The chain code is SHA-256 over every party's 32 bytes in index order.
//! For `schnorr-secp256k1` the group key is the BIP-86 Taproot output key (frost-secp256k1-tr
//! applies the unspendable script-tree tweak after DKG), so signatures spend its key path.
//!
//! **Presign** (nonce pre-commitment): each signer generates FROST nonces and broadcasts the
//! commitments; the [`keyrack_plugin::Presignature`] holds its own nonces and everyone's
//! commitments. **Sign with a presignature** is then one exchange: each signer broadcasts its
//! signature share, and every signer aggregates (identifying a bad share's sender) and
//! verifies the result.
//!
//! **HD derivation** (non-hardened, additive): for index `i < 2³¹`,
//! `t = HID("keyrack-frost-hd-v1" ‖ chain_code ‖ P ‖ i)`, `P' = P + t·G`, and the child chain
//! code is `SHA-256("keyrack-frost-hd-cc-v1" ‖ chain_code ‖ P ‖ i)`; `HID` is the
//! ciphersuite's hash to scalar and `P` the serialised parent key. Signing under `P'` adds `t`
//! to every signer's share: Lagrange coefficients over any signer set sum to 1, so the group
//! secret becomes `x + t`.
//!
//! **Reshare** (also refresh: same committee and threshold). Each dealer `i` of the old
//! committee (any set `D` of at least `t_old` of them) holds `x_i` and deals
//! `λ_i·x_i` (λ over `D`) with a fresh random polynomial `f_i` of degree `t_new − 1`:
//! 1. broadcast: Feldman commitments `C_i = [a_ik·G]`;
//! 2. point-to-point: `f_i(j + 1)` to each new member `j`;
//! 3. broadcast echo of SHA-256 over all commitments, by the receivers.
//!
//! A receiver checks each `f_i(j+1)·G = Σ_k C_ik (j+1)^k` and, where it holds the old public
//! key package, `C_i0 = λ_i·Y_i`; a failure names dealer `i`. Everyone checks
//! `Σ_i C_i0 = Y`. The new share is `x'_j = Σ_i f_i(j + 1)`; the new public shares follow from
//! the commitments. The public key and chain code are unchanged; old shares do not combine
//! with new ones.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod dkg;
mod hd;
#[cfg(feature = "import")]
pub mod import;
mod plugin;
mod reshare;
mod share;
mod sign;
mod suite;
mod wire;

pub use plugin::FrostPlugin;
pub use suite::{Ed25519, FrostSuite, SchnorrSecp256k1};

/// The `ed25519` scheme.
pub fn ed25519() -> FrostPlugin<Ed25519> {
    FrostPlugin::new()
}

/// The `schnorr-secp256k1` (BIP-340) scheme.
pub fn schnorr_secp256k1() -> FrostPlugin<SchnorrSecp256k1> {
    FrostPlugin::new()
}
