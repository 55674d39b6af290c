//! The message channel a protocol runs over.
//!
//! The transport behind it (core NATS in the node, memory queues in tests) authenticates the
//! sender of every message, encrypts point-to-point payloads, and drops duplicates; what
//! reaches a protocol is `(sender, round, broadcast or p2p, bytes)`. Payload bytes are
//! untrusted: a plugin that cannot decode them blames the sender.

use std::time::Duration;

/// A party's index within one session: its position in the session's party list (`0..n`).
pub type PartyIndex = u16;

/// Who a message is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Recipient {
    /// Every other party of the session; the transport delivers the same bytes to all.
    Broadcast,
    /// One party, privately.
    Party(PartyIndex),
}

/// A message a protocol sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Destination.
    pub to: Recipient,
    /// Protocol round the message belongs to (at most one message per sender, round and
    /// recipient kind).
    pub round: u16,
    /// Encoded protocol message.
    pub payload: Vec<u8>,
}

/// A message a protocol receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// Authenticated sender.
    pub from: PartyIndex,
    /// Whether it was broadcast or sent to this party alone.
    pub broadcast: bool,
    /// Round, as the sender declared it.
    pub round: u16,
    /// Encoded protocol message (untrusted).
    pub payload: Vec<u8>,
}

/// Why a channel could not deliver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// No message arrived within the session's deadline.
    #[error("no message within {0:?}")]
    Timeout(Duration),
    /// The session was cancelled by its owner.
    #[error("session cancelled")]
    Cancelled,
    /// The transport is gone.
    #[error("transport closed: {0}")]
    Closed(String),
}

/// A blocking, authenticated message pipe between the parties of one session.
pub trait Channel: Send {
    /// Sends a message.
    fn send(&mut self, msg: Outgoing) -> Result<(), ChannelError>;
    /// Waits for the next message, until the session's deadline. Stashed messages come
    /// first, in the order they were stashed.
    fn recv(&mut self) -> Result<Incoming, ChannelError>;
    /// Puts back a message that arrived before its round, for a later `recv` (possibly by the
    /// next step of the same session: a fast peer may already be a protocol ahead).
    fn stash(&mut self, msg: Incoming);
}
