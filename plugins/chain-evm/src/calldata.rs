//! ERC-20 calldata: the three calls that move or allow tokens, decoded strictly (the canonical
//! ABI encoding and nothing after it); anything else is an opaque contract call named by its
//! selector.

use alloy_primitives::{Address, U256};
use alloy_sol_types::{abi::AbiDecoderConfig, SolCall};

alloy_sol_types::sol! {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
    function approve(address spender, uint256 amount) external returns (bool);
}

/// What a transaction's data calls.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// ERC-20 `transfer(address,uint256)`.
    Transfer { to: Address, amount: U256 },
    /// ERC-20 `transferFrom(address,address,uint256)`.
    TransferFrom {
        from: Address,
        to: Address,
        amount: U256,
    },
    /// ERC-20 `approve(address,uint256)`.
    Approve { spender: Address, amount: U256 },
    /// Anything else: the 4-byte selector, when the data is long enough to have one.
    Other { selector: Option<[u8; 4]> },
}

impl Call {
    /// Decodes non-empty calldata. A known selector with arguments that are not exactly its
    /// canonical ABI encoding is an error (never read as an opaque call).
    pub(crate) fn decode(data: &[u8]) -> Result<Self, String> {
        let Some(selector) = data.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok()) else {
            return Ok(Call::Other { selector: None });
        };
        let bad = |name: &str, e: alloy_sol_types::Error| {
            format!(
                "calldata for ERC-20 {name} (selector 0x{}) does not decode: {e}",
                hex::encode(selector)
            )
        };
        // Strict: canonical padding, no gaps, no trailing bytes.
        let strict = AbiDecoderConfig::new().strict(true);
        Ok(match selector {
            transferCall::SELECTOR => {
                let c = transferCall::abi_decode_with_config(data, strict)
                    .map_err(|e| bad(transferCall::SIGNATURE, e))?;
                Call::Transfer {
                    to: c.to,
                    amount: c.amount,
                }
            }
            transferFromCall::SELECTOR => {
                let c = transferFromCall::abi_decode_with_config(data, strict)
                    .map_err(|e| bad(transferFromCall::SIGNATURE, e))?;
                Call::TransferFrom {
                    from: c.from,
                    to: c.to,
                    amount: c.amount,
                }
            }
            approveCall::SELECTOR => {
                let c = approveCall::abi_decode_with_config(data, strict)
                    .map_err(|e| bad(approveCall::SIGNATURE, e))?;
                Call::Approve {
                    spender: c.spender,
                    amount: c.amount,
                }
            }
            _ => Call::Other {
                selector: Some(selector),
            },
        })
    }
}

/// A U256 amount in a [`keyrack_plugin::Transfer`]: saturates at `u128::MAX`.
pub(crate) fn saturating_u128(amount: U256) -> u128 {
    u128::try_from(amount).unwrap_or(u128::MAX)
}
