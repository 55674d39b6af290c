//! The keyrack appliance: a node's configuration, its sealed identity, and the `keyrack` CLI.
//!
//! Every secret the node holds goes through the HSM backend of its configuration
//! ([`keyrack_hsm`]); this crate never writes a secret to disk unsealed and never logs one.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod chains;
pub mod cli;
pub mod config;
pub mod coordinator;
pub mod daemon;
pub mod ecdsa;
pub mod fsutil;
pub mod identity;
pub mod intake;
pub mod membership;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod transport;
