//! Skeleton: being written for issue 6.
#![allow(missing_docs)]
use keyrack_plugin::{ChainError, ChainPlugin, Decoded, PayloadFormat, SignerKey};

/// The solana chain plugin.
#[derive(Debug, Default)]
pub struct Solana;

impl Solana {
    /// The plugin.
    pub fn new() -> Self {
        Self
    }
}

impl ChainPlugin for Solana {
    fn id(&self) -> &'static str {
        "solana"
    }
    fn schemes(&self) -> &'static [&'static str] {
        &[]
    }
    fn addresses(&self, _key: SignerKey<'_>) -> Result<Vec<String>, ChainError> {
        Err(ChainError::Unsupported("not yet".into()))
    }
    fn decode(
        &self,
        _f: PayloadFormat,
        _p: &[u8],
        _k: SignerKey<'_>,
    ) -> Result<Decoded, ChainError> {
        Err(ChainError::Unsupported("not yet".into()))
    }
    fn finish(
        &self,
        _f: PayloadFormat,
        _p: &[u8],
        _k: SignerKey<'_>,
        _s: &[Vec<u8>],
    ) -> Result<Vec<u8>, ChainError> {
        Err(ChainError::Unsupported("not yet".into()))
    }
}
