//! The Solana chain plugin: decodes a transaction message for one Ed25519 key into the
//! message it signs and the [`Intent`](keyrack_plugin::Intent) the policy engine reads, and
//! puts the signature back into a wire transaction. Pure: no I/O, no RPC, no clock; it knows
//! nothing of NATS, SQLite or HSMs.
//!
//! # Formats
//!
//! - **Key**: scheme `ed25519`, the 32-byte public key; its address is the key in base58.
//! - **Payload** ([`PayloadFormat::Transaction`] only): a serialized transaction *message*,
//!   legacy or v0, exactly the bytes the signatures cover (what `Message::serialize` /
//!   `VersionedMessage::serialize` produce; not a transaction with signatures in front).
//! - **Signing item**: one, labelled `"message"`, whose message is the payload itself
//!   (Ed25519 signs the message bytes as they are).
//! - **Output of `finish`**: the wire transaction (`VersionedTransaction` serialization):
//!   the compact signature count, one 64-byte signature per required signer with this key's
//!   in its slot and zeros in the others (for the other signers to fill in), then the
//!   message. When this key is the only signer it is ready to send, and its transaction id
//!   is the signature in base58.
//!
//! # Refused payloads
//!
//! Malformed: bytes that do not parse as a message, trailing bytes, a non-canonical encoding
//! (the bytes signed must be the bytes decoded), a message that fails Solana's sanitize
//! check, an account listed twice, and instructions the runtime itself would reject while
//! the decoder reads them (too few accounts or data bytes for a system, SPL token or compute
//! budget instruction; repeated or unknown compute budget instructions).
//!
//! Unsupported: a key that is not among the message's required signers (the error names the
//! address), v1 messages, and v0 messages in which any instruction uses an account loaded
//! from an address lookup table (its address is unknown to an offline signer, so the
//! message could move funds anywhere: fail closed). Lookup tables that no instruction uses
//! are allowed.
//!
//! # Intent
//!
//! - `chain` `"solana"`; `network` `None` (a message does not bind a cluster).
//! - `transfers`: value leaving this key, in instruction order, a transfer to the key itself
//!   left out:
//!   - system `transfer` (this key funds it) and `transfer_with_seed` (this key is the base
//!     of the funding account): `to` = recipient, asset [`NATIVE`](keyrack_plugin::NATIVE),
//!     lamports;
//!   - system `create_account` / `create_account_with_seed` /
//!     `create_account_allow_prefund` funded by this key: `to` = the new account;
//!     `withdraw_nonce_account` with this key as the nonce authority: `to` = recipient;
//!   - SPL Token and Token-2022 `TransferChecked` / `ApproveChecked` with this key as the
//!     authority (or one of a multisig authority's signers): asset = the mint in base58,
//!     amount in token base units, `to` = the destination *token account* (transfer) or the
//!     delegate (approval);
//!   - SPL `Transfer` / `Approve` (tags 3 and 4) name no mint: asset is `"unknown"`, so any
//!     rule about a token or an asset-summed value fails closed.
//!
//!   Value moved inside another program (a CPI) cannot be seen from the message: a policy
//!   that allows `contract_call` to a program trusts that program.
//! - `action`: compute budget instructions and `advance_nonce_account` are neutral; of the
//!   rest, all system transfers → `transfer`, all SPL transfers → `token_transfer`, all SPL
//!   approvals → `token_approve`, anything else or a mix → `contract_call` (so is a message
//!   with only neutral instructions).
//! - `contract` and `method`: the program id (base58) and the method, set only when every
//!   non-neutral instruction has the same one (else `None`: a rule on them fails closed).
//!   Methods: `system.transfer`, `system.transfer_with_seed`, `system.create_account`, … (every
//!   system instruction by name), `spl_token.transfer`, `spl_token.transfer_checked`,
//!   `spl_token.approve`, `spl_token.approve_checked`, and for anything else
//!   `<program id>:<first data byte in decimal>` (`<program id>:none` without data).
//! - `fee`: when this key is the fee payer (first account), the most the message can cost:
//!   5000 lamports per signature (the required signatures plus those checked by the
//!   Ed25519 / secp256k1 / secp256r1 precompiles) plus the priority fee,
//!   ⌈compute unit price (micro-lamports) × compute unit limit / 10⁶⌉. The limit is the
//!   `SetComputeUnitLimit` value capped at 1,400,000, or without one the conservative
//!   200,000 per instruction (compute budget ones included, capped at 1,400,000): never
//!   below what the runtime charges. When another account pays, `Some(0)`: this key pays
//!   nothing.
//! - `details`: `version` (`legacy`/`v0`), `fee_payer`, `recent_blockhash`, `programs`
//!   (comma-separated, in order of first use), `instructions` (count), `instruction.<n>`
//!   (each one's method), `required_signatures`, `signer_index`, `address_table_lookups`
//!   (v0), `durable_nonce_account` (when the first instruction advances a nonce), and for
//!   the fee payer `fee.signatures`, `fee.compute_unit_limit`,
//!   `fee.compute_unit_price_micro_lamports`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod intent;
mod message;

use ed25519_dalek::{Signature, VerifyingKey};
use keyrack_plugin::{ChainError, ChainPlugin, Decoded, PayloadFormat, SignerKey, SigningItem};
use solana_message::Address;
use solana_transaction::versioned::VersionedTransaction;

pub use intent::{LAMPORTS_PER_SIGNATURE, UNKNOWN_ASSET};

/// The scheme that signs for Solana.
pub const SCHEME: &str = "ed25519";

/// The Solana chain plugin (registry id `solana`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Solana;

impl Solana {
    /// The plugin.
    pub fn new() -> Self {
        Self
    }
}

/// The key as a Solana address, after checking its scheme and length.
fn address(key: SignerKey<'_>) -> Result<Address, ChainError> {
    if key.scheme != SCHEME {
        return Err(ChainError::Unsupported(format!(
            "scheme {:?} does not sign for Solana (only {SCHEME})",
            key.scheme
        )));
    }
    let bytes: [u8; 32] = key.public_key.try_into().map_err(|_| {
        ChainError::Unsupported(format!(
            "an {SCHEME} public key is 32 bytes, this one is {}",
            key.public_key.len()
        ))
    })?;
    Ok(Address::new_from_array(bytes))
}

fn transaction_only(format: PayloadFormat) -> Result<(), ChainError> {
    match format {
        PayloadFormat::Transaction => Ok(()),
        other => Err(ChainError::Unsupported(format!(
            "Solana signs transaction messages only, not {}",
            other.as_str()
        ))),
    }
}

impl ChainPlugin for Solana {
    fn id(&self) -> &'static str {
        "solana"
    }

    fn schemes(&self) -> &'static [&'static str] {
        &[SCHEME]
    }

    fn addresses(&self, key: SignerKey<'_>) -> Result<Vec<String>, ChainError> {
        Ok(vec![address(key)?.to_string()])
    }

    fn decode(
        &self,
        format: PayloadFormat,
        payload: &[u8],
        key: SignerKey<'_>,
    ) -> Result<Decoded, ChainError> {
        transaction_only(format)?;
        let checked = message::check(payload, &address(key)?)?;
        Ok(Decoded {
            items: vec![SigningItem {
                label: "message".into(),
                message: payload.to_vec(),
            }],
            intent: intent::intent(&checked)?,
        })
    }

    fn finish(
        &self,
        format: PayloadFormat,
        payload: &[u8],
        key: SignerKey<'_>,
        signatures: &[Vec<u8>],
    ) -> Result<Vec<u8>, ChainError> {
        transaction_only(format)?;
        let signer = address(key)?;
        let checked = message::check(payload, &signer)?;
        let [signature] = signatures else {
            return Err(ChainError::Finish(format!(
                "a Solana message takes one signature from this key, got {}",
                signatures.len()
            )));
        };
        let bytes: [u8; 64] = signature.as_slice().try_into().map_err(|_| {
            ChainError::Finish(format!(
                "an {SCHEME} signature is 64 bytes, this one is {}",
                signature.len()
            ))
        })?;
        let verifying = VerifyingKey::from_bytes(signer.as_array())
            .map_err(|e| ChainError::Finish(format!("{signer} is not an Ed25519 point: {e}")))?;
        verifying
            .verify_strict(payload, &Signature::from_bytes(&bytes))
            .map_err(|_| {
                ChainError::Finish(format!(
                    "the signature does not verify over this message under {signer}"
                ))
            })?;
        let mut transaction = VersionedTransaction::new_unsigned(checked.message);
        transaction.signatures[checked.signer_index] = bytes.into();
        wincode::serialize(&transaction)
            .map_err(|e| ChainError::Finish(format!("cannot serialize the transaction: {e}")))
    }
}
