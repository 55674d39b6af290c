//! Unsigned transactions: parsing (legacy RLP, EIP-2930, EIP-1559, nothing else), the intent,
//! and the signed raw transaction.

use crate::calldata::{saturating_u128, Call};
use crate::key;
use alloy_consensus::transaction::RlpEcdsaDecodableTx;
use alloy_consensus::{
    EthereumTypedTransaction, SignableTransaction, Transaction, TxEip1559, TxEip2930, TxEip4844,
    TxLegacy,
};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Signature, TxKind, B256};
use alloy_rlp::{Decodable, Header, PayloadView};
use k256::ecdsa::VerifyingKey;
use keyrack_plugin::chain::{actions, NATIVE};
use keyrack_plugin::{ChainError, Intent, Transfer};
use std::collections::BTreeMap;

/// The transaction kinds this plugin signs (as alloy's typed transaction, never blob or
/// set-code ones).
pub(crate) type Unsigned = EthereumTypedTransaction<TxEip4844>;

const FORMAT: &str = "transaction";

fn malformed(reason: impl Into<String>) -> ChainError {
    ChainError::Malformed {
        format: FORMAT,
        reason: reason.into(),
    }
}

/// Parses an unsigned transaction in its signing encoding: legacy RLP (6 fields, or 9 with the
/// EIP-155 chain id and two zeros) or `type ‖ rlp(fields)` for EIP-2930 (0x01) and EIP-1559
/// (0x02). Refuses trailing bytes, signed transactions, other types, and any encoding that
/// does not re-encode to exactly the payload (so the digest signed is keccak-256 of what was
/// decoded).
pub(crate) fn parse(payload: &[u8]) -> Result<Unsigned, ChainError> {
    let Some(&first) = payload.first() else {
        return Err(malformed("empty payload"));
    };
    let body = &payload[1..];
    let tx: Unsigned = match first {
        0xc0..=0xff => parse_legacy(payload)?.into(),
        0x01 => parse_typed::<TxEip2930>(body, "EIP-2930", 8)?.into(),
        0x02 => parse_typed::<TxEip1559>(body, "EIP-1559", 9)?.into(),
        0x03 => {
            return Err(ChainError::Unsupported(
                "EIP-4844 blob transactions (type 0x03) are not signed by the evm plugin".into(),
            ))
        }
        0x04 => {
            return Err(ChainError::Unsupported(
                "EIP-7702 set-code transactions (type 0x04) are not signed by the evm plugin: \
                 they hand the account's code to another contract"
                    .into(),
            ))
        }
        0x00..=0x7f => {
            return Err(ChainError::Unsupported(format!(
                "transaction type 0x{first:02x} is not one the evm plugin signs \
                 (legacy, 0x01 EIP-2930, 0x02 EIP-1559)"
            )))
        }
        _ => {
            return Err(malformed(format!(
                "starts with 0x{first:02x}: neither an RLP list (legacy) nor an EIP-2718 type byte"
            )))
        }
    };
    if tx.encoded_for_signing() != payload {
        return Err(malformed(
            "not the canonical signing encoding of the transaction it decodes to",
        ));
    }
    Ok(tx)
}

/// The top-level items of one RLP list that fills `body` exactly.
fn list_items<'a>(body: &'a [u8], kind: &str) -> Result<Vec<&'a [u8]>, ChainError> {
    let mut rest = body;
    let view = Header::decode_raw(&mut rest).map_err(|e| malformed(format!("{kind} RLP: {e}")))?;
    if !rest.is_empty() {
        return Err(malformed(format!(
            "{} trailing bytes after the {kind} RLP list",
            rest.len()
        )));
    }
    match view {
        PayloadView::List(items) => Ok(items),
        PayloadView::String(_) => Err(malformed(format!("{kind}: an RLP string, not a list"))),
    }
}

/// RLP of the integer zero (the empty string).
const RLP_ZERO: &[u8] = &[0x80];

fn parse_legacy(payload: &[u8]) -> Result<TxLegacy, ChainError> {
    let items = list_items(payload, "legacy transaction")?;
    match items.len() {
        6 => {}
        9 if items[7] == RLP_ZERO && items[8] == RLP_ZERO => {}
        9 => {
            return Err(malformed(
                "a signed legacy transaction (v, r, s present); send the unsigned transaction",
            ))
        }
        n => {
            return Err(malformed(format!(
                "legacy transaction with {n} fields; expected 6 (before EIP-155) or 9 \
                 (EIP-155: chain id, 0, 0)"
            )))
        }
    }
    let tx = TxLegacy::decode(&mut &payload[..])
        .map_err(|e| malformed(format!("legacy transaction: {e}")))?;
    if tx.chain_id == Some(0) {
        return Err(malformed("EIP-155 chain id 0"));
    }
    Ok(tx)
}

fn parse_typed<T: RlpEcdsaDecodableTx>(
    body: &[u8],
    kind: &str,
    fields: usize,
) -> Result<T, ChainError> {
    let items = list_items(body, kind)?;
    if items.len() == fields + 3 {
        return Err(malformed(format!(
            "a signed {kind} transaction (y parity, r, s present); send the unsigned transaction"
        )));
    }
    if items.len() != fields {
        return Err(malformed(format!(
            "{kind} transaction with {} fields; expected {fields}",
            items.len()
        )));
    }
    T::rlp_decode(&mut &body[..]).map_err(|e| malformed(format!("{kind} transaction: {e}")))
}

/// The digest the key signs.
pub(crate) fn signing_hash(tx: &Unsigned) -> B256 {
    tx.signature_hash()
}

/// What the transaction does, for the key whose address is `sender`.
pub(crate) fn intent(tx: &Unsigned, sender: &Address) -> Result<Intent, ChainError> {
    let mut details = BTreeMap::new();
    let kind = match tx {
        Unsigned::Legacy(t) if t.chain_id.is_some() => "legacy (EIP-155)",
        Unsigned::Legacy(_) => "legacy (no chain id)",
        Unsigned::Eip2930(_) => "eip2930",
        Unsigned::Eip1559(_) => "eip1559",
        // parse() builds no other kind.
        _ => return Err(ChainError::Unsupported("transaction type".into())),
    };
    details.insert("type".into(), kind.into());
    details.insert("nonce".into(), tx.nonce().to_string());
    details.insert("gas_limit".into(), tx.gas_limit().to_string());
    match tx.max_priority_fee_per_gas() {
        Some(priority) => {
            details.insert("max_fee_per_gas".into(), tx.max_fee_per_gas().to_string());
            details.insert("max_priority_fee_per_gas".into(), priority.to_string());
        }
        None => {
            details.insert("gas_price".into(), tx.max_fee_per_gas().to_string());
        }
    }
    details.insert("value".into(), tx.value().to_string());
    details.insert("data_len".into(), tx.input().len().to_string());
    if let Some(list) = tx.access_list() {
        details.insert("access_list_len".into(), list.len().to_string());
    }
    details.insert("sender".into(), key::checksummed(sender));

    let fee = u128::from(tx.gas_limit()).saturating_mul(tx.max_fee_per_gas());
    let value = saturating_u128(tx.value());
    let data = tx.input();
    let mut transfers = Vec::new();
    let mut method = None;
    let mut contract = None;

    let action = match tx.kind() {
        TxKind::Create => {
            // The new contract's address follows from the sender and nonce: value sent with
            // the deployment goes there.
            let created = sender.create(tx.nonce());
            details.insert("contract_address".into(), key::checksummed(&created));
            if value > 0 {
                transfers.push(Transfer {
                    to: key::checksummed(&created),
                    asset: NATIVE.into(),
                    amount: value,
                });
            }
            actions::CONTRACT_DEPLOY
        }
        TxKind::Call(to) if data.is_empty() => {
            details.insert("to".into(), key::checksummed(&to));
            transfers.push(Transfer {
                to: key::checksummed(&to),
                asset: NATIVE.into(),
                amount: value,
            });
            actions::TRANSFER
        }
        TxKind::Call(to) => {
            let target = key::checksummed(&to);
            details.insert("to".into(), target.clone());
            contract = Some(target.clone());
            let call = Call::decode(data).map_err(malformed)?;
            let token = |to: &Address, amount| Transfer {
                to: key::checksummed(to),
                asset: target.clone(),
                amount: saturating_u128(amount),
            };
            let action = match call {
                Call::Transfer { to, amount } => {
                    transfers.push(token(&to, amount));
                    method = Some("transfer".to_string());
                    actions::TOKEN_TRANSFER
                }
                Call::TransferFrom { from, to, amount } => {
                    transfers.push(token(&to, amount));
                    details.insert("from".into(), key::checksummed(&from));
                    method = Some("transferFrom".to_string());
                    actions::TOKEN_TRANSFER
                }
                Call::Approve { spender, amount } => {
                    transfers.push(token(&spender, amount));
                    method = Some("approve".to_string());
                    actions::TOKEN_APPROVE
                }
                Call::Other { selector } => {
                    method = selector.map(|s| format!("0x{}", hex::encode(s)));
                    actions::CONTRACT_CALL
                }
            };
            // Native value sent along with the call also leaves the key (and, next to a
            // token, makes the intent's value undefined: mixed assets fail closed).
            if value > 0 {
                transfers.push(Transfer {
                    to: target,
                    asset: NATIVE.into(),
                    amount: value,
                });
            }
            action
        }
    };

    Ok(Intent {
        chain: crate::ID.into(),
        network: tx.chain_id().map(|id| id.to_string()),
        action: action.into(),
        transfers,
        fee: Some(fee),
        method,
        contract,
        details,
    })
}

/// The signed raw transaction (EIP-2718 encoding; legacy with its EIP-155 `v`), after checking
/// the signature recovers to `key` and reading the result back as the network would.
pub(crate) fn finish(
    tx: Unsigned,
    signature: &[u8],
    key: &VerifyingKey,
) -> Result<Vec<u8>, ChainError> {
    let signature: Signature =
        key::check_signature(&signing_hash(&tx), signature, key, "the transaction")?;
    let envelope = alloy_consensus::EthereumTxEnvelope::<TxEip4844>::from((tx, signature));
    let raw = envelope.encoded_2718();
    // Read it back as a node would: same sender, or nothing leaves this function.
    let expected = key::address(key);
    let decoded = <alloy_consensus::EthereumTxEnvelope<TxEip4844> as alloy_eips::eip2718::Decodable2718>::decode_2718(&mut &raw[..])
        .map_err(|e| ChainError::Finish(format!("the signed transaction does not decode: {e}")))?;
    let recovered = alloy_consensus::transaction::SignerRecoverable::recover_signer(&decoded)
        .map_err(|e| ChainError::Finish(format!("the signed transaction's sender: {e}")))?;
    if recovered != expected {
        return Err(ChainError::Finish(format!(
            "the signed transaction's sender is {}, not the key's address {}",
            key::checksummed(&recovered),
            key::checksummed(&expected)
        )));
    }
    Ok(raw)
}
