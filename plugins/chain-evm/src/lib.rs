//! The EVM chain plugin: turns Ethereum-family payloads into the digest a secp256k1 key signs
//! and the [`Intent`] the policy engine reads, and puts the signature back.
//!
//! Pure, like every chain plugin: no I/O, no clock, no randomness. Parsing and hashing are
//! alloy's (alloy-consensus, alloy-rlp, alloy-sol-types, alloy-dyn-abi); this crate chooses
//! what to accept and how to describe it.
//!
//! # Keys and addresses
//! Only `ecdsa-secp256k1`, with the 33-byte compressed SEC1 public key; anything else is
//! [`ChainError::Unsupported`]. The address is the last 20 bytes of keccak-256 of the
//! uncompressed point, in EIP-55 checksummed text. Every address in an intent is checksummed.
//!
//! # Formats
//! - [`PayloadFormat::Transaction`]: an **unsigned** transaction in its signing encoding —
//!   legacy RLP (6 fields before EIP-155, or 9 with the chain id and two zeros), or an EIP-2718
//!   envelope of type 0x01 (EIP-2930) or 0x02 (EIP-1559). One [`SigningItem`] `"transaction"`:
//!   the signature hash. `finish` gives the signed raw transaction (EIP-2718 encoding; legacy
//!   with the EIP-155 `v` when it has a chain id).
//! - [`PayloadFormat::PersonalMessage`]: the message of `personal_sign`; the item
//!   `"message"` is its EIP-191 hash. `finish` gives `r ‖ s ‖ v`, `v = 27 + recovery id`.
//! - [`PayloadFormat::TypedData`]: the JSON of `eth_signTypedData_v4`; the item
//!   `"typed_data"` is the EIP-712 signing hash. `finish` gives `r ‖ s ‖ v` as above.
//!
//! # Intents
//! Transactions: `network` = the chain id in decimal (`None` for a legacy transaction without
//! EIP-155); `fee` = gas limit × (max fee per gas | gas price), saturating; `contract` = `to`
//! when there is calldata. `action`:
//! - no calldata: `transfer`, one native [`Transfer`] of the value to `to` (even 0);
//! - no `to`: `contract_deploy`; value sent goes to the contract address (sender, nonce),
//!   which `details.contract_address` names;
//! - ERC-20 `transfer(address,uint256)` / `transferFrom(address,address,uint256)`:
//!   `token_transfer`, a [`Transfer`] of the token (`asset` = the contract) to the recipient;
//!   `method` `transfer` / `transferFrom` (`details.from` = the owner debited);
//! - ERC-20 `approve(address,uint256)`: `token_approve`, `to` = the spender, `method`
//!   `approve`;
//! - any other calldata: `contract_call`, `method` = `0x` + the 4-byte selector (none when the
//!   calldata is shorter than 4 bytes).
//!
//!   Native value sent with any call is listed as one more native [`Transfer`] to the
//!   contract. `details`: `type`, `nonce`, `gas_limit`, `gas_price` or
//!   `max_fee_per_gas`/`max_priority_fee_per_gas`, `value`, `data_len`, `access_list_len`,
//!   `to`, `sender` (the key's address).
//!
//! Personal messages: `message`, no transfers; `details.message` is the text (or `0x` + hex
//! when it is not UTF-8) and `details.length` its byte length.
//!
//! Typed data: `typed_data`, `network` = the domain's chain id, `contract` = its verifying
//! contract; `details`: `primary_type`, `domain.name|version|chain_id|verifying_contract|salt`
//! (those present) and every top-level message field as `message.<name>` (JSON text). A
//! `Permit` with `spender` and `value` (EIP-2612), or `spender` and `allowed` (the DAI form:
//! true is unlimited), is `token_approve`, `method` `permit`, one [`Transfer`] of the
//! verifying contract's token to the spender.
//!
//! # Failing closed
//! - Amounts above `u128::MAX` saturate (an unlimited approval is `u128::MAX`); a token call
//!   that also sends native value has two assets, so [`Intent::value`] is `None`.
//! - Refused: trailing bytes, non-canonical encodings (the payload must re-encode to itself,
//!   so the digest is the hash of what was decoded), signed transactions offered as unsigned,
//!   EIP-155 chain id 0, blob (0x03), set-code (0x04) and unknown types, calldata of a known
//!   ERC-20 selector that is not exactly its canonical ABI encoding, and a `Permit` without a
//!   verifying contract.
//! - `finish` refuses a signature that is not 65 bytes, has a recovery id other than 0/1, a
//!   high `s`, or does not recover to the key; a finished transaction is decoded again and its
//!   recovered sender compared with the key's address before it is returned.
//!
//! [`Transfer`]: keyrack_plugin::Transfer

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod calldata;
mod key;
mod message;
mod transaction;

use alloy_primitives::B256;
use keyrack_plugin::{
    ChainError, ChainPlugin, Decoded, Intent, PayloadFormat, SignerKey, SigningItem,
};

/// The registry id of this plugin.
const ID: &str = "evm";

/// The EVM chain plugin (Ethereum and every chain that shares its transaction formats).
#[derive(Debug, Default, Clone, Copy)]
pub struct Evm;

impl Evm {
    /// The plugin.
    pub fn new() -> Self {
        Self
    }
}

/// The digest, its item label, and the intent of a message payload.
fn decode_message(
    format: PayloadFormat,
    payload: &[u8],
) -> Result<(&'static str, B256, Intent), ChainError> {
    match format {
        PayloadFormat::PersonalMessage => {
            let (digest, intent) = message::personal(payload);
            Ok(("message", digest, intent))
        }
        PayloadFormat::TypedData => {
            let (digest, intent) = message::typed(payload)?;
            Ok(("typed_data", digest, intent))
        }
        PayloadFormat::Transaction => Err(ChainError::Unsupported(
            "a transaction is not a message".into(),
        )),
    }
}

impl ChainPlugin for Evm {
    fn id(&self) -> &'static str {
        ID
    }

    fn schemes(&self) -> &'static [&'static str] {
        &[key::SCHEME]
    }

    fn addresses(&self, key: SignerKey<'_>) -> Result<Vec<String>, ChainError> {
        let public = key::verifying_key(key)?;
        Ok(vec![key::checksummed(&key::address(&public))])
    }

    fn decode(
        &self,
        format: PayloadFormat,
        payload: &[u8],
        key: SignerKey<'_>,
    ) -> Result<Decoded, ChainError> {
        let public = key::verifying_key(key)?;
        let (label, digest, intent) = match format {
            PayloadFormat::Transaction => {
                let tx = transaction::parse(payload)?;
                let intent = transaction::intent(&tx, &key::address(&public))?;
                ("transaction", transaction::signing_hash(&tx), intent)
            }
            _ => decode_message(format, payload)?,
        };
        Ok(Decoded {
            items: vec![SigningItem {
                label: label.into(),
                message: digest.to_vec(),
            }],
            intent,
        })
    }

    fn finish(
        &self,
        format: PayloadFormat,
        payload: &[u8],
        key: SignerKey<'_>,
        signatures: &[Vec<u8>],
    ) -> Result<Vec<u8>, ChainError> {
        let public = key::verifying_key(key)?;
        let [signature] = signatures else {
            return Err(ChainError::Finish(format!(
                "{} signatures; an evm {} takes exactly one",
                signatures.len(),
                format.as_str()
            )));
        };
        match format {
            PayloadFormat::Transaction => {
                transaction::finish(transaction::parse(payload)?, signature, &public)
            }
            _ => {
                let (label, digest, _) = decode_message(format, payload)?;
                message::finish(&digest, signature, &public, label)
            }
        }
    }
}
