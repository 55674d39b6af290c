//! Why a protocol run failed, naming the party at fault where there is one.

use crate::channel::{ChannelError, PartyIndex};

/// A failed protocol run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A party sent bytes that do not decode as the expected message.
    #[error("party {party} sent a malformed message in round {round}: {reason}")]
    Malformed {
        /// The sender.
        party: PartyIndex,
        /// The round.
        round: u16,
        /// What was wrong.
        reason: String,
    },
    /// A party's message decodes but fails a check (a bad proof, a share that does not match
    /// its commitment, a conflicting broadcast).
    #[error("party {party} misbehaved: {reason}")]
    Misbehaved {
        /// The culprit.
        party: PartyIndex,
        /// What it did.
        reason: String,
    },
    /// The protocol aborted without identifying a single culprit.
    #[error("protocol aborted: {0}")]
    Aborted(String),
    /// The listed parties did not send what the protocol waited for in time.
    #[error("timed out waiting for parties {missing:?} in round {round}")]
    Timeout {
        /// The round.
        round: u16,
        /// Who was still missing.
        missing: Vec<PartyIndex>,
    },
    /// The channel failed or the session was cancelled.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The request itself is invalid (threshold out of range, wrong signer set, …).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A stored share or presignature does not decode or belongs elsewhere.
    #[error("invalid stored material: {0}")]
    InvalidMaterial(String),
    /// The protocol thread panicked.
    #[error("protocol thread panicked: {0}")]
    Panicked(String),
}
