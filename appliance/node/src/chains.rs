//! The chain plugins this node serves: EVM, Bitcoin and Solana. Each turns a sign request's
//! payload into the digests to sign and the intent the policy reads (see
//! [`keyrack_plugin::ChainPlugin`]).

use std::sync::Arc;

use keyrack_client::api::KeyView;
use keyrack_client::request::{PayloadKind, VerifiedRequest};
use keyrack_plugin::{ChainError, PayloadFormat, Registry, SignerKey};

/// Registers the EVM, Bitcoin (addresses for `bitcoin_network`: bitcoin, testnet, testnet4,
/// signet or regtest) and Solana plugins.
pub fn register(registry: &mut Registry, bitcoin_network: &str) -> Result<(), ChainError> {
    registry.register_chain(Arc::new(keyrack_chain_evm::Evm::new()));
    registry.register_chain(Arc::new(keyrack_chain_bitcoin::Bitcoin::new(
        bitcoin_network,
    )?));
    registry.register_chain(Arc::new(keyrack_chain_solana::Solana::new()));
    Ok(())
}

/// The console's decoder (see [`keyrack_tui::approval::Decoder`]): a sign request's chain
/// payload decoded as [`crate::daemon`] decodes it before policy (the same plugins, the
/// child key derived along the request's path), so an approver sees the intent computed on
/// their side, not the node's word for it.
pub fn intent_decoder(bitcoin_network: &str) -> Result<keyrack_tui::approval::Decoder, ChainError> {
    let mut registry = crate::daemon::default_registry();
    register(&mut registry, bitcoin_network)?;
    Ok(Arc::new(move |request: &VerifiedRequest, key: &KeyView| {
        decode_intent(&registry, request, key)
    }))
}

fn decode_intent(
    registry: &Registry,
    request: &VerifiedRequest,
    key: &KeyView,
) -> Result<serde_json::Value, String> {
    let body = &request.body;
    let format = match body.payload_kind {
        Some(PayloadKind::Transaction) => PayloadFormat::Transaction,
        Some(PayloadKind::PersonalMessage) => PayloadFormat::PersonalMessage,
        Some(PayloadKind::TypedData) => PayloadFormat::TypedData,
        // A plain message or raw digest: no intent (as at the nodes).
        Some(PayloadKind::Message | PayloadKind::Digest) | None => {
            return Ok(serde_json::Value::Null)
        }
    };
    let payload = body
        .payload
        .as_deref()
        .ok_or("the request has no payload")?;
    let chain_id = body.chain.as_deref().unwrap_or_default();
    let chain = registry
        .chain(chain_id)
        .ok_or_else(|| format!("no chain plugin '{chain_id}'"))?;
    let scheme = registry
        .scheme(&key.scheme)
        .ok_or_else(|| format!("no scheme plugin '{}'", key.scheme))?;
    let root = hex::decode(&key.public_key).map_err(|e| format!("the key's public key: {e}"))?;
    let mut chain_code = [0u8; 32];
    hex::decode_to_slice(&key.chain_code, &mut chain_code)
        .map_err(|e| format!("the key's chain code: {e}"))?;
    let child = scheme
        .derive_public_key(&root, &chain_code, &body.derivation_path)
        .map_err(|e| format!("derivation: {e}"))?;
    let signer = SignerKey {
        scheme: &key.scheme,
        public_key: &child,
    };
    let decoded = chain
        .decode(format, payload, signer)
        .map_err(|e| format!("{chain_id}: {e}"))?;
    serde_json::to_value(decoded.intent).map_err(|e| e.to_string())
}
