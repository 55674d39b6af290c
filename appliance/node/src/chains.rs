//! The chain plugins this node serves: EVM, Bitcoin and Solana. Each turns a sign request's
//! payload into the digests to sign and the intent the policy reads (see
//! [`keyrack_plugin::ChainPlugin`]).

use std::sync::Arc;

use keyrack_client::request::{PayloadKind, VerifiedRequest};
use keyrack_client::trusted::TrustedKey;
use keyrack_plugin::{
    ChainError, ChainPlugin, Decoded, PayloadFormat, Registry, SchemePlugin, SignerKey,
};

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

/// The chain payload format a request's payload kind names; `None` for a plain message or a
/// raw digest, which no chain plugin reads.
pub fn chain_format(kind: Option<PayloadKind>) -> Option<PayloadFormat> {
    match kind {
        Some(PayloadKind::Transaction) => Some(PayloadFormat::Transaction),
        Some(PayloadKind::PersonalMessage) => Some(PayloadFormat::PersonalMessage),
        Some(PayloadKind::TypedData) => Some(PayloadFormat::TypedData),
        Some(PayloadKind::Message | PayloadKind::Digest) | None => None,
    }
}

/// Why [`decode_for_key`] failed.
#[derive(Debug)]
pub enum KeyDecodeError {
    /// The child key could not be derived along the path.
    Derivation(String),
    /// The chain plugin refused the payload.
    Payload(ChainError),
}

/// `payload` decoded by `chain` for the child of the key `root`/`chain_code` along `path`
/// (derived by `scheme`), as a node decodes a sign request before policy: the child key and
/// what the plugin read.
pub fn decode_for_key(
    chain: &dyn ChainPlugin,
    scheme: &dyn SchemePlugin,
    format: PayloadFormat,
    payload: &[u8],
    root: &[u8],
    chain_code: &[u8; 32],
    path: &[u32],
) -> Result<(Vec<u8>, Decoded), KeyDecodeError> {
    let key = scheme
        .derive_public_key(root, chain_code, path)
        .map_err(|e| KeyDecodeError::Derivation(e.to_string()))?;
    let signer = SignerKey {
        scheme: scheme.id().0,
        public_key: &key,
    };
    let decoded = chain
        .decode(format, payload, signer)
        .map_err(KeyDecodeError::Payload)?;
    Ok((key, decoded))
}

/// The console's decoder (see [`keyrack_tui::approval::Decoder`]): a sign request's chain
/// payload decoded as [`crate::daemon`] decodes it before policy (the same plugins, the
/// child key derived along the request's path) but with the approver's trusted key, so an
/// approver sees the intent computed on their side, not the node's word for it.
pub fn intent_decoder(bitcoin_network: &str) -> Result<keyrack_tui::approval::Decoder, ChainError> {
    let mut registry = crate::daemon::default_registry();
    register(&mut registry, bitcoin_network)?;
    Ok(Arc::new(
        move |request: &VerifiedRequest, key: &TrustedKey| decode_intent(&registry, request, key),
    ))
}

fn decode_intent(
    registry: &Registry,
    request: &VerifiedRequest,
    key: &TrustedKey,
) -> Result<serde_json::Value, String> {
    let body = &request.body;
    // A plain message or raw digest: no intent (as at the nodes).
    let Some(format) = chain_format(body.payload_kind) else {
        return Ok(serde_json::Value::Null);
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
        .scheme(key.scheme.as_str())
        .ok_or_else(|| format!("no scheme plugin '{}'", key.scheme))?;
    let path = &body.derivation_path;
    let (_, decoded) = decode_for_key(
        chain.as_ref(),
        scheme.as_ref(),
        format,
        payload,
        &key.public_key,
        &key.chain_code,
        path,
    )
    .map_err(|e| match e {
        KeyDecodeError::Derivation(e) => format!("derivation: {e}"),
        KeyDecodeError::Payload(e) => format!("{chain_id}: {e}"),
    })?;
    serde_json::to_value(decoded.intent).map_err(|e| e.to_string())
}
