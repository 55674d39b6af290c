//! The chain plugin trait: what turns a sign request's payload into the exact messages the
//! node signs and the [`Intent`] the policy engine reads, and what puts the signatures back.
//!
//! The node never signs a digest a client computed for a chain payload: it hands the payload
//! to the chain plugin, signs the [`SigningItem`]s the plugin returns, and gives the
//! signatures back to [`ChainPlugin::finish`] for the signed transaction. A chain plugin is
//! pure: no I/O, no clock, no randomness, deterministic for the same input.
//!
//! Keys: [`SignerKey::public_key`] is the key that signs, already derived for the request's
//! derivation path, in its scheme's encoding: `ecdsa-secp256k1` 33-byte compressed SEC1,
//! `schnorr-secp256k1` 32-byte x-only (BIP-340; for Taproot this is the output key Q), and
//! `ed25519` 32 bytes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The asset id of a chain's native coin in [`Transfer::asset`].
pub const NATIVE: &str = "native";

/// What a chain payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// An unsigned transaction: EVM legacy RLP or an EIP-2718 typed envelope (EIP-2930,
    /// EIP-1559), a Bitcoin PSBT (BIP-174 binary), a Solana transaction message (the bytes
    /// its signatures cover).
    Transaction,
    /// An EIP-191 `personal_sign` message (the message itself; the plugin adds the prefix).
    PersonalMessage,
    /// EIP-712 typed data: the JSON of `eth_signTypedData_v4` (`types`, `primaryType`,
    /// `domain`, `message`).
    TypedData,
}

impl PayloadFormat {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Transaction => "transaction",
            PayloadFormat::PersonalMessage => "personal_message",
            PayloadFormat::TypedData => "typed_data",
        }
    }
}

/// The key a payload is decoded for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignerKey<'a> {
    /// The scheme id (`ecdsa-secp256k1`, `schnorr-secp256k1`, `ed25519`).
    pub scheme: &'a str,
    /// The (derived) public key, in the scheme's encoding (see the module docs).
    pub public_key: &'a [u8],
}

/// One message the node signs for a payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningItem {
    /// What it is, for people and the audit log: `"transaction"`, `"input 0"`, `"message"`.
    pub label: String,
    /// What the scheme signs: the 32-byte digest for the secp256k1 schemes (ECDSA over the
    /// digest as is; BIP-340 over it as the message), the message bytes for Ed25519.
    pub message: Vec<u8>,
}

/// Value leaving the key, as the policy engine sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The destination address in the chain's canonical text form (EVM: EIP-55 checksummed;
    /// Bitcoin: the address for the decoder's network, or `script:<hex>` for a script with
    /// no address; Solana: base58). For a token approval, the spender.
    pub to: String,
    /// [`NATIVE`] for the chain's coin, else the token's contract (EVM) or mint (Solana).
    pub asset: String,
    /// In the asset's base units (wei, satoshi, lamports, token units); saturates at
    /// `u128::MAX` (an "unlimited" approval is `u128::MAX`).
    pub amount: u128,
}

/// What a payload does, decoded: the policy engine's input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The chain plugin's id.
    pub chain: String,
    /// The network, when the payload says (EVM chain id in decimal, Bitcoin network name
    /// as the plugin is configured); `None` when the payload does not bind one (a legacy
    /// EVM transaction without EIP-155, a Solana message).
    pub network: Option<String>,
    /// One of [`actions`].
    pub action: String,
    /// Every transfer out of the key, in payload order (change back to the key excluded).
    pub transfers: Vec<Transfer>,
    /// The most the key can pay in fees, in native base units, when the payload says.
    pub fee: Option<u128>,
    /// The contract method or program instruction, when there is one: a known name
    /// (`transfer`, `approve`, `system.transfer`, `spl_token.transfer_checked`) or the 4-byte
    /// selector as `0x` + 8 hex for an unknown EVM call.
    pub method: Option<String>,
    /// The contract called (EVM) or the program invoked (Solana), when there is one.
    pub contract: Option<String>,
    /// Everything else worth showing and auditing (nonce, gas limit, EIP-712 domain and
    /// fields, sighash types, …), as text. Never read by policy rules.
    pub details: BTreeMap<String, String>,
}

/// The values of [`Intent::action`].
pub mod actions {
    /// Native coin to one or more destinations (and nothing else).
    pub const TRANSFER: &str = "transfer";
    /// A token transfer (ERC-20 `transfer`/`transferFrom`, SPL token transfer).
    pub const TOKEN_TRANSFER: &str = "token_transfer";
    /// A token allowance (ERC-20 `approve`, SPL token `approve`): `transfers` holds the
    /// spender and amount.
    pub const TOKEN_APPROVE: &str = "token_approve";
    /// Any other contract or program call (may also move native value).
    pub const CONTRACT_CALL: &str = "contract_call";
    /// An EVM contract creation.
    pub const CONTRACT_DEPLOY: &str = "contract_deploy";
    /// An off-chain message (EIP-191).
    pub const MESSAGE: &str = "message";
    /// EIP-712 typed data.
    pub const TYPED_DATA: &str = "typed_data";
    /// Every action, for validation.
    pub const ALL: [&str; 7] = [
        TRANSFER,
        TOKEN_TRANSFER,
        TOKEN_APPROVE,
        CONTRACT_CALL,
        CONTRACT_DEPLOY,
        MESSAGE,
        TYPED_DATA,
    ];
}

impl Intent {
    /// The one asset every transfer moves, or `None` when there are none or several.
    pub fn asset(&self) -> Option<&str> {
        let first = self.transfers.first()?.asset.as_str();
        self.transfers
            .iter()
            .all(|t| t.asset == first)
            .then_some(first)
    }

    /// The total moved (saturating), or `None` when the transfers move several assets.
    /// No transfers is 0.
    pub fn value(&self) -> Option<u128> {
        if self.transfers.is_empty() {
            return Some(0);
        }
        self.asset()?;
        Some(
            self.transfers
                .iter()
                .fold(0u128, |sum, t| sum.saturating_add(t.amount)),
        )
    }
}

/// A payload decoded for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// What to sign, at least one, in order (a PSBT: one per input this key signs).
    pub items: Vec<SigningItem>,
    /// What it does.
    pub intent: Intent,
}

/// Why a chain plugin refused a payload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The payload does not parse as its format.
    #[error("malformed {format} payload: {reason}")]
    Malformed {
        /// The format claimed.
        format: &'static str,
        /// Why.
        reason: String,
    },
    /// Well formed, but not something this plugin signs (a format or scheme it does not
    /// serve, a PSBT with no input for this key, a sighash type it refuses, …).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The signatures given to `finish` do not fit the payload.
    #[error("cannot finish: {0}")]
    Finish(String),
}

/// A chain: decodes payloads, derives addresses, assembles signed output.
pub trait ChainPlugin: Send + Sync + 'static {
    /// Registry id: `evm`, `bitcoin`, `solana`.
    fn id(&self) -> &'static str;

    /// The schemes that sign for this chain.
    fn schemes(&self) -> &'static [&'static str];

    /// The key's address(es) on this chain, canonical text form, the primary one first
    /// (EVM: one; Bitcoin: P2WPKH for ECDSA, P2TR for Schnorr; Solana: one).
    fn addresses(&self, key: SignerKey<'_>) -> Result<Vec<String>, ChainError>;

    /// Decodes `payload` for `key`: the messages to sign and the intent.
    fn decode(
        &self,
        format: PayloadFormat,
        payload: &[u8],
        key: SignerKey<'_>,
    ) -> Result<Decoded, ChainError>;

    /// The signed output, from the payload and one signature per [`Decoded::items`] entry
    /// in order (as the scheme plugin returned it: ECDSA `r ‖ s ‖ recovery id`, 65 bytes,
    /// low-s; BIP-340 and Ed25519 64 bytes). EVM: the signed raw transaction, or `r ‖ s ‖ v`
    /// (v = 27 + recovery id) for a message; Bitcoin: the PSBT with the signatures added,
    /// finalised where every input is signed; Solana: the wire transaction.
    fn finish(
        &self,
        format: PayloadFormat,
        payload: &[u8],
        key: SignerKey<'_>,
        signatures: &[Vec<u8>],
    ) -> Result<Vec<u8>, ChainError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(transfers: &[(&str, u128)]) -> Intent {
        Intent {
            chain: "evm".into(),
            network: Some("1".into()),
            action: actions::TRANSFER.into(),
            transfers: transfers
                .iter()
                .map(|(asset, amount)| Transfer {
                    to: "0x00".into(),
                    asset: (*asset).into(),
                    amount: *amount,
                })
                .collect(),
            fee: None,
            method: None,
            contract: None,
            details: BTreeMap::new(),
        }
    }

    #[test]
    fn value_sums_one_asset_saturating_and_is_absent_for_mixed_assets() {
        assert_eq!(intent(&[]).value(), Some(0));
        assert_eq!(intent(&[]).asset(), None);
        assert_eq!(intent(&[(NATIVE, 5), (NATIVE, 7)]).value(), Some(12));
        assert_eq!(intent(&[(NATIVE, 5)]).asset(), Some(NATIVE));
        assert_eq!(
            intent(&[(NATIVE, u128::MAX), (NATIVE, 1)]).value(),
            Some(u128::MAX)
        );
        assert_eq!(intent(&[(NATIVE, 5), ("0xtoken", 7)]).value(), None);
        assert_eq!(intent(&[(NATIVE, 5), ("0xtoken", 7)]).asset(), None);
    }
}
