//! The chain plugins this node serves: EVM, Bitcoin and Solana. Each turns a sign request's
//! payload into the digests to sign and the intent the policy reads (see
//! [`keyrack_plugin::ChainPlugin`]).

use std::sync::Arc;

use keyrack_plugin::{ChainError, Registry};

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
