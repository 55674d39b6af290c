//! Off-chain messages: EIP-191 `personal_sign` and EIP-712 typed data (`eth_signTypedData_v4`),
//! their digests and intents, and the `r ‖ s ‖ v` signature handed back.

use crate::calldata::saturating_u128;
use crate::key;
use alloy_dyn_abi::{DynSolValue, TypedData};
use alloy_primitives::{eip191_hash_message, B256};
use k256::ecdsa::VerifyingKey;
use keyrack_plugin::chain::actions;
use keyrack_plugin::{ChainError, Intent, Transfer};
use std::collections::BTreeMap;

fn intent(action: &str, details: BTreeMap<String, String>) -> Intent {
    Intent {
        chain: crate::ID.into(),
        network: None,
        action: action.into(),
        transfers: Vec::new(),
        fee: None,
        method: None,
        contract: None,
        details,
    }
}

/// An EIP-191 personal message: the digest of `"\x19Ethereum Signed Message:\n" ‖ len ‖ message`.
pub(crate) fn personal(message: &[u8]) -> (B256, Intent) {
    let text = match std::str::from_utf8(message) {
        Ok(text) => text.to_string(),
        Err(_) => format!("0x{}", hex::encode(message)),
    };
    let details = BTreeMap::from([
        ("message".to_string(), text),
        ("length".to_string(), message.len().to_string()),
    ]);
    (
        eip191_hash_message(message),
        intent(actions::MESSAGE, details),
    )
}

fn malformed(reason: impl Into<String>) -> ChainError {
    ChainError::Malformed {
        format: "typed_data",
        reason: reason.into(),
    }
}

/// EIP-712 typed data: the signing hash and the intent (an EIP-2612 `Permit` reads as a token
/// approval of the verifying contract's token).
pub(crate) fn typed(payload: &[u8]) -> Result<(B256, Intent), ChainError> {
    let data: TypedData = serde_json::from_slice(payload)
        .map_err(|e| malformed(format!("not eth_signTypedData_v4 JSON: {e}")))?;
    let digest = data
        .eip712_signing_hash()
        .map_err(|e| malformed(format!("cannot hash: {e}")))?;
    let domain = &data.domain;
    let contract = domain.verifying_contract.as_ref().map(key::checksummed);

    let mut details = BTreeMap::new();
    details.insert("primary_type".to_string(), data.primary_type.clone());
    if let Some(name) = &domain.name {
        details.insert("domain.name".into(), name.to_string());
    }
    if let Some(version) = &domain.version {
        details.insert("domain.version".into(), version.to_string());
    }
    if let Some(chain_id) = &domain.chain_id {
        details.insert("domain.chain_id".into(), chain_id.to_string());
    }
    if let Some(contract) = &contract {
        details.insert("domain.verifying_contract".into(), contract.clone());
    }
    if let Some(salt) = &domain.salt {
        details.insert("domain.salt".into(), salt.to_string());
    }
    if let Some(fields) = data.message.as_object() {
        for (name, value) in fields {
            details.insert(format!("message.{name}"), value.to_string());
        }
    }

    let mut intent = intent(actions::TYPED_DATA, details);
    intent.network = domain.chain_id.map(|id| id.to_string());
    intent.contract = contract.clone();
    if let Some((spender, amount)) = permit(&data)? {
        let Some(token) = contract else {
            return Err(ChainError::Unsupported(
                "an EIP-2612 Permit without domain.verifyingContract: the token it approves \
                 cannot be named"
                    .into(),
            ));
        };
        intent.action = actions::TOKEN_APPROVE.into();
        intent.method = Some("permit".into());
        intent.transfers.push(Transfer {
            to: spender,
            asset: token,
            amount,
        });
    }
    Ok((digest, intent))
}

/// The spender and allowance of a `Permit`: EIP-2612 (`spender`, `value`) or the DAI form
/// (`spender`, `allowed`: unlimited when true). Read from the values the hash covers.
fn permit(data: &TypedData) -> Result<Option<(String, u128)>, ChainError> {
    if data.primary_type != "Permit" {
        return Ok(None);
    }
    let value = data
        .coerce()
        .map_err(|e| malformed(format!("message does not fit its types: {e}")))?;
    let DynSolValue::CustomStruct {
        prop_names, tuple, ..
    } = value
    else {
        return Ok(None);
    };
    let field = |name: &str| {
        prop_names
            .iter()
            .position(|p| p == name)
            .and_then(|i| tuple.get(i))
    };
    let Some(DynSolValue::Address(spender)) = field("spender") else {
        return Ok(None);
    };
    let amount = match (field("value"), field("allowed")) {
        (Some(DynSolValue::Uint(value, _)), _) => saturating_u128(*value),
        (None, Some(DynSolValue::Bool(allowed))) => {
            if *allowed {
                u128::MAX
            } else {
                0
            }
        }
        _ => return Ok(None),
    };
    Ok(Some((key::checksummed(spender), amount)))
}

/// `r ‖ s ‖ v` with `v = 27 + recovery id`, after checking the signature recovers to `key`.
pub(crate) fn finish(
    digest: &B256,
    signature: &[u8],
    key: &VerifyingKey,
    what: &str,
) -> Result<Vec<u8>, ChainError> {
    let signature = key::check_signature(digest, signature, key, what)?;
    let mut out = signature.as_bytes().to_vec();
    out[64] = 27 + u8::from(signature.v());
    Ok(out)
}
