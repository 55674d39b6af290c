//! The node's NATS transport: JetStream for requests and results, core NATS for session
//! rounds and heartbeats (shared/DESIGN.md §2; subjects and streams are
//! `keyrack_client::subjects`, documented in docs/PROTOCOL.md).
//!
//! This module moves bytes and keeps NATS state right (streams, durable consumers, dedup
//! headers, reconnects). It never interprets or trusts what it carries: signatures and
//! encryption are checked by the layers above, with `keyrack_client`'s formats.

mod bus;
mod presence;

pub use bus::{Bus, ManifestMessage, RequestDelivery, TransportError, MAX_MANIFEST_BYTES};
pub use presence::Presence;
