//! Payload → checked message: the one place the payload bytes are parsed. Owns the refusals
//! about the message as a whole (encoding, trailing bytes, version, duplicate accounts, this
//! key's signer slot, lookup-table accounts); knows nothing of instructions' meaning.

use keyrack_plugin::{ChainError, PayloadFormat};
use solana_message::{Address, VersionedMessage};

/// A transaction message that passed every whole-message check, for one key.
pub(crate) struct Checked {
    /// The parsed message (legacy or v0).
    pub message: VersionedMessage,
    /// This key's position among the required signers (its signature slot).
    pub signer_index: usize,
}

impl Checked {
    /// The message's static account keys (every account an instruction may name: lookup
    /// table accounts are refused by [`check`]).
    pub fn keys(&self) -> &[Address] {
        self.message.static_account_keys()
    }

    /// `"legacy"` or `"v0"`.
    pub fn version(&self) -> &'static str {
        match self.message {
            VersionedMessage::V0(_) => "v0",
            _ => "legacy",
        }
    }
}

pub(crate) fn malformed(reason: impl Into<String>) -> ChainError {
    ChainError::Malformed {
        format: PayloadFormat::Transaction.as_str(),
        reason: reason.into(),
    }
}

/// Parses `payload` as a serialized transaction message and checks it for `key`.
pub(crate) fn check(payload: &[u8], key: &Address) -> Result<Checked, ChainError> {
    let message: VersionedMessage = match wincode::deserialize_exact(payload) {
        Ok(message) => message,
        Err(exact) => {
            // Tell trailing bytes apart from a message that does not parse at all.
            return Err(match wincode::deserialize::<VersionedMessage>(payload) {
                Ok(message) => {
                    let used = wincode::serialized_size(&message).unwrap_or(0);
                    malformed(format!(
                        "{} trailing byte(s) after the {}-byte message (the payload must be \
                         the message alone, not a transaction with signatures)",
                        (payload.len() as u64).saturating_sub(used),
                        used
                    ))
                }
                Err(_) => malformed(format!("not a Solana transaction message: {exact}")),
            });
        }
    };
    if let VersionedMessage::V1(_) = message {
        return Err(ChainError::Unsupported(
            "v1 transaction messages (SIMD-0385) are not supported; send a legacy or v0 message"
                .into(),
        ));
    }
    // One encoding per message: the bytes signed must be the bytes decoded.
    let canonical = wincode::serialize(&message)
        .map_err(|e| malformed(format!("message does not re-encode: {e}")))?;
    if canonical != payload {
        return Err(malformed(
            "non-canonical encoding (a compact length is not in its shortest form)",
        ));
    }
    message
        .sanitize()
        .map_err(|e| malformed(format!("message fails Solana's sanitize check: {e}")))?;

    let keys = message.static_account_keys();
    for (i, k) in keys.iter().enumerate() {
        if keys[..i].contains(k) {
            return Err(malformed(format!(
                "account {k} is listed twice (Solana rejects such a transaction)"
            )));
        }
    }
    let signers = usize::from(message.header().num_required_signatures);
    let signer_index = match keys.iter().position(|k| k == key) {
        Some(i) if i < signers => i,
        Some(_) => {
            return Err(ChainError::Unsupported(format!(
                "{key} is in this message only as a non-signing account, not a required signer"
            )))
        }
        None => {
            return Err(ChainError::Unsupported(format!(
                "{key} is not a required signer of this message"
            )))
        }
    };
    for (n, ix) in message.instructions().iter().enumerate() {
        if usize::from(ix.program_id_index) >= keys.len() {
            return Err(ChainError::Unsupported(format!(
                "instruction {n} invokes a program loaded from an address lookup table"
            )));
        }
        if let Some(a) = ix.accounts.iter().find(|a| usize::from(**a) >= keys.len()) {
            return Err(ChainError::Unsupported(format!(
                "instruction {n} uses account index {a}, an account loaded from an address \
                 lookup table: its address is unknown to the signer, so the message is refused"
            )));
        }
    }
    Ok(Checked {
        message,
        signer_index,
    })
}
