//! The keyrack client SDK: the types that cross the wire or a trust boundary between nodes,
//! clients and administrators, and how to check them.
//!
//! - [`api`]: the node's HTTP API routes and their JSON (the console's only view of a node).
//! - [`identity::PublicIdentity`]: the public half of a node's identity.
//! - [`manifest`]: the admin-signed cluster manifest (members, initiators, admins).
//! - [`request`]: initiator-signed requests; [`result`]: node-signed results;
//!   [`codes::ErrorCode`]: why something was refused.
//! - [`envelope`]: signed (and, point-to-point, encrypted) node-to-node session messages.
//! - [`subjects`]: the NATS streams, consumers and subjects.
//! - [`verdict`]: a node's signed verdict on a manifest offered to it over NATS.
//! - `sdk` (feature `sdk`, on by default): the async client that publishes requests over NATS
//!   and verifies the results, threshold signatures included.
//!
//! docs/PROTOCOL.md describes every format byte by byte. This crate knows nothing of HSMs,
//! SQLite or the node's internals (only `sdk` holds a NATS connection), and never holds a
//! node's secret keys beyond the call that uses them.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod codes;
pub mod envelope;
pub mod identity;
pub mod manifest;
pub mod request;
pub mod result;
pub mod scheme;
#[cfg(feature = "sdk")]
pub mod sdk;
pub mod subjects;
pub mod trusted;
pub mod verdict;
mod wire;

pub use wire::now_ms;
