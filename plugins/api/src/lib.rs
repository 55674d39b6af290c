//! The plugin seams of keyrack: threshold signature schemes and chain decoders.
//!
//! A scheme plugin runs its protocols over a [`Channel`]: a blocking, authenticated,
//! byte-level message pipe between the parties of one session, indexed `0..n`. The plugin
//! knows nothing of NATS, SQLite or HSMs: the node gives it a channel and seals what it
//! returns. Protocol code is CPU-heavy and blocking (up to seconds without yielding), so it
//! never runs on an async runtime's threads: [`runtime::spawn_protocol`] runs it on a
//! dedicated thread and hands the async side a port to feed it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod chain;
pub mod channel;
mod error;
pub mod registry;
pub mod rounds;
pub mod runtime;
pub mod scheme;
#[cfg(feature = "sim")]
pub mod sim;

pub use chain::{
    actions, ChainError, ChainPlugin, Decoded, Intent, PayloadFormat, SignerKey, SigningItem,
    Transfer, NATIVE,
};
pub use channel::{Channel, ChannelError, Incoming, Outgoing, PartyIndex, Recipient};
pub use error::ProtocolError;
pub use registry::Registry;
pub use scheme::{
    KeyShare, KeygenParams, Presignature, ReshareParams, SchemeId, SchemePlugin, Session,
    SignRequest, SignatureOutput,
};
