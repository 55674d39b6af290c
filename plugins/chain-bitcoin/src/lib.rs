//! The Bitcoin chain plugin: reads a PSBT for one key, says what it pays, returns the
//! BIP-143 / BIP-341 sighashes of the key's inputs, and puts the signatures back.
//!
//! Pure, like every chain plugin: no I/O, no clock, no randomness. It never signs anything
//! itself and never trusts a digest from a client: every sighash is computed here by the
//! [`bitcoin`] crate from the PSBT.
//!
//! # Keys and addresses
//! - `ecdsa-secp256k1`: a 33-byte compressed key; it owns the P2WPKH output (BIP-141) and its
//!   inputs are signed with `SIGHASH_ALL` over the BIP-143 sighash.
//! - `schnorr-secp256k1`: a 32-byte x-only key that **is the Taproot output key Q**: keyrack's
//!   FROST `secp256k1-tr` DKG applies the BIP-86 tweak itself, and HD children are Q + t·G. So
//!   the P2TR address commits to the key as is (no further tweak), and the BIP-341 key-path
//!   sighash is signed with it as is. A PSBT's `tap_internal_key` / `tap_merkle_root` are not
//!   used.
//!
//! [`ChainPlugin::addresses`] gives the one address of the key on the configured network.
//!
//! # Payload ([`PayloadFormat::Transaction`] only)
//! A PSBT version 0 (BIP-174) in binary, or in its base64 text form (which starts `cHNidP`;
//! surrounding whitespace ignored). Bytes after the PSBT are refused.
//!
//! # Decoding, and what is refused (fail closed)
//! - Every input must carry the output it spends (`witness_utxo`, or `non_witness_utxo` whose
//!   txid is the outpoint's; if both are present they must agree); otherwise the amounts, and
//!   so the fee, are unknown and the PSBT is refused.
//! - The key's inputs are those whose spent script is the key's (P2WPKH or P2TR above); none
//!   is [`ChainError::Unsupported`], naming the address. An own input that is already
//!   finalised is refused. Other inputs are left for other signers (listed in `details`).
//! - The key's inputs may ask only for `SIGHASH_ALL` (P2WPKH) or `SIGHASH_DEFAULT` /
//!   `SIGHASH_ALL` (P2TR); absent means `SIGHASH_ALL` / `SIGHASH_DEFAULT`. NONE, SINGLE and
//!   ANYONECANPAY are refused: they let others change what the transaction pays, so the
//!   decoded intent would not be what the signature commits to.
//! - Outputs paying more than the inputs spend is [`ChainError::Malformed`].
//!
//! One [`SigningItem`] per own input, in input order, labelled `input N`: the 32-byte sighash.
//!
//! # Intent
//! - `chain` `bitcoin`, `network` the configured name (`bitcoin`, `testnet`, `testnet4`,
//!   `signet`, `regtest`), `action` `transfer`, no `method` or `contract`.
//! - `transfers`: every output in order, except change (an output to the key's own script)
//!   and OP_RETURN outputs of zero value; `to` is the output's address on the configured
//!   network, or `script:<hex>` for a script with no address (an OP_RETURN that burns value is
//!   such a transfer); `asset` `native`; `amount` in satoshi.
//! - `fee`: inputs − outputs in satoshi, **only when the amounts are bound**: for a Schnorr key
//!   always (the BIP-341 sighash commits to every input's amount, so a false amount makes the
//!   signature invalid); for an ECDSA key only when every input carries a `non_witness_utxo`
//!   (the BIP-143 sighash commits to the signed input's own amount only, so with bare
//!   `witness_utxo`s two requests with different false amounts can each yield one valid
//!   signature: the "segwit fee attack", CVE-2020-14199). Otherwise `fee` is absent, so a
//!   policy condition on it fails closed, and `details.fee_unverified_sat` shows the claim.
//! - `details`: `txid` (of the unsigned transaction), `version`, `locktime`, `inputs`,
//!   `outputs`, `address` (the key's), `own_inputs` and `other_inputs` (indices), `input N`
//!   (outpoint, amount, spent address, whose), `sighash.input N` for each own input,
//!   `input_total_sat`, `output_total_sat`, `own_input_total_sat`, `change_sat`, and
//!   `op_return` (the data pushes in hex, `;` between outputs) when there is one.
//!
//! # Finish
//! One signature per item, in order: ECDSA as `r ‖ s ‖ recovery id` (65 bytes, low-s; DER
//! encoded with the sighash byte for the witness), BIP-340 as 64 bytes. Each is verified
//! against its input's sighash and the key before it is accepted; one that does not verify
//! is [`ChainError::Finish`] naming the input. Each own input is then finalised as BIP-174's
//! finalizer does (P2WPKH witness `[signature, pubkey]`, P2TR key path `[signature]`; every
//! other field but the UTXOs and unknown/proprietary ones cleared). The result is the PSBT in
//! binary; once every input is finalised, `Psbt::extract_tx` gives the network transaction.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod finish;
mod key;
mod psbt;

use bitcoin::script::Instruction;
use bitcoin::{Address, Network, Psbt, ScriptBuf};
use key::OwnKey;
use keyrack_plugin::chain::{actions, NATIVE};
use keyrack_plugin::{
    ChainError, ChainPlugin, Decoded, Intent, PayloadFormat, SignerKey, SigningItem, Transfer,
};
use psbt::Analysis;
use std::collections::BTreeMap;

/// The Bitcoin chain plugin for one network.
#[derive(Clone, Copy, Debug)]
pub struct Bitcoin {
    network: Network,
    name: &'static str,
}

impl Bitcoin {
    /// The networks [`Bitcoin::new`] accepts.
    pub const NETWORKS: [&'static str; 5] = ["bitcoin", "testnet", "testnet4", "signet", "regtest"];

    /// The plugin for `network`: `bitcoin`, `testnet`, `testnet4`, `signet` or `regtest`.
    pub fn new(network: &str) -> Result<Self, ChainError> {
        let (network, name) = match network {
            "bitcoin" => (Network::Bitcoin, "bitcoin"),
            "testnet" => (Network::Testnet, "testnet"),
            "testnet4" => (Network::Testnet4, "testnet4"),
            "signet" => (Network::Signet, "signet"),
            "regtest" => (Network::Regtest, "regtest"),
            other => {
                return Err(ChainError::Unsupported(format!(
                    "unknown bitcoin network {other:?}; use one of {}",
                    Self::NETWORKS.join(", ")
                )))
            }
        };
        Ok(Self { network, name })
    }

    /// The configured network's name.
    pub fn network(&self) -> &'static str {
        self.name
    }

    fn address_text(&self, script: &ScriptBuf) -> String {
        match Address::from_script(script, self.network) {
            Ok(address) => address.to_string(),
            Err(_) => format!("script:{}", script.to_hex_string()),
        }
    }

    fn intent(
        &self,
        psbt: &Psbt,
        key: &OwnKey,
        address: &str,
        analysis: &Analysis,
    ) -> Result<Intent, ChainError> {
        let tx = &psbt.unsigned_tx;
        let own_script = key.script_pubkey();
        let sat = |amount: bitcoin::Amount| u128::from(amount.to_sat());
        let input_total: u128 = analysis.spent.iter().map(|o| sat(o.value)).sum();
        let output_total: u128 = tx.output.iter().map(|o| sat(o.value)).sum();
        let Some(fee) = input_total.checked_sub(output_total) else {
            return Err(ChainError::Malformed {
                format: PayloadFormat::Transaction.as_str(),
                reason: format!(
                    "the outputs pay {output_total} sat but the inputs spend only {input_total} sat"
                ),
            });
        };

        let mut details = BTreeMap::new();
        let mut transfers = Vec::new();
        let mut change = 0u128;
        let mut op_returns = Vec::new();
        for out in &tx.output {
            if out.script_pubkey == own_script {
                change += sat(out.value);
                continue;
            }
            if out.script_pubkey.is_op_return() {
                op_returns.push(op_return_data(&out.script_pubkey));
                if out.value.to_sat() == 0 {
                    continue;
                }
            }
            transfers.push(Transfer {
                to: self.address_text(&out.script_pubkey),
                asset: NATIVE.to_string(),
                amount: sat(out.value),
            });
        }

        let own: Vec<usize> = analysis.own.iter().map(|o| o.index).collect();
        let mut own_total = 0u128;
        let mut others = Vec::new();
        for (index, (out, txin)) in analysis.spent.iter().zip(&tx.input).enumerate() {
            let whose = if own.contains(&index) {
                own_total += sat(out.value);
                "this key"
            } else {
                others.push(index);
                "another signer"
            };
            details.insert(
                format!("input {index}"),
                format!(
                    "{} spends {} sat from {} ({whose})",
                    txin.previous_output,
                    out.value.to_sat(),
                    self.address_text(&out.script_pubkey)
                ),
            );
        }
        for item in &analysis.own {
            details.insert(
                format!("sighash.input {}", item.index),
                item.kind.name().to_string(),
            );
        }
        let list = |indices: &[usize]| {
            if indices.is_empty() {
                "none".to_string()
            } else {
                indices
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        details.insert("txid".into(), tx.compute_txid().to_string());
        details.insert("version".into(), tx.version.0.to_string());
        details.insert("locktime".into(), tx.lock_time.to_string());
        details.insert("inputs".into(), tx.input.len().to_string());
        details.insert("outputs".into(), tx.output.len().to_string());
        details.insert("address".into(), address.to_string());
        details.insert("own_inputs".into(), list(&own));
        details.insert("other_inputs".into(), list(&others));
        details.insert("input_total_sat".into(), input_total.to_string());
        details.insert("output_total_sat".into(), output_total.to_string());
        details.insert("own_input_total_sat".into(), own_total.to_string());
        details.insert("change_sat".into(), change.to_string());
        if !op_returns.is_empty() {
            details.insert("op_return".into(), op_returns.join(";"));
        }

        let bound = matches!(key, OwnKey::Schnorr(_)) || analysis.authenticated.iter().all(|a| *a);
        let fee = if bound {
            Some(fee)
        } else {
            details.insert("fee_unverified_sat".into(), fee.to_string());
            None
        };

        Ok(Intent {
            chain: self.id().to_string(),
            network: Some(self.name.to_string()),
            action: actions::TRANSFER.to_string(),
            transfers,
            fee,
            method: None,
            contract: None,
            details,
        })
    }
}

/// The data pushes of an OP_RETURN script in hex (the raw script after OP_RETURN if it does
/// not parse as pushes).
fn op_return_data(script: &ScriptBuf) -> String {
    let mut data = String::new();
    for instruction in script.instructions().skip(1) {
        match instruction {
            Ok(Instruction::PushBytes(bytes)) => data.push_str(&hex::encode(bytes.as_bytes())),
            _ => return hex::encode(script.as_bytes().get(1..).unwrap_or_default()),
        }
    }
    data
}

impl ChainPlugin for Bitcoin {
    fn id(&self) -> &'static str {
        "bitcoin"
    }

    fn schemes(&self) -> &'static [&'static str] {
        &[key::ECDSA, key::SCHNORR]
    }

    fn addresses(&self, key: SignerKey<'_>) -> Result<Vec<String>, ChainError> {
        Ok(vec![OwnKey::parse(key)?.address(self.network).to_string()])
    }

    fn decode(
        &self,
        format: PayloadFormat,
        payload: &[u8],
        key: SignerKey<'_>,
    ) -> Result<Decoded, ChainError> {
        let own_key = OwnKey::parse(key)?;
        let address = own_key.address(self.network).to_string();
        let psbt = psbt::parse(format, payload)?;
        let analysis = psbt::analyse(&psbt, &own_key, &address)?;
        let intent = self.intent(&psbt, &own_key, &address, &analysis)?;
        let items = analysis
            .own
            .iter()
            .map(|item| SigningItem {
                label: format!("input {}", item.index),
                message: item.sighash.to_vec(),
            })
            .collect();
        Ok(Decoded { items, intent })
    }

    fn finish(
        &self,
        format: PayloadFormat,
        payload: &[u8],
        key: SignerKey<'_>,
        signatures: &[Vec<u8>],
    ) -> Result<Vec<u8>, ChainError> {
        let own_key = OwnKey::parse(key)?;
        let address = own_key.address(self.network).to_string();
        let mut psbt = psbt::parse(format, payload)?;
        let analysis = psbt::analyse(&psbt, &own_key, &address)?;
        finish::apply(&mut psbt, &own_key, &analysis.own, signatures)?;
        Ok(psbt.serialize())
    }
}
