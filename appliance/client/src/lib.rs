//! The keyrack client SDK: the types that cross the wire or a trust boundary between nodes,
//! clients and administrators, and how to check them.
//!
//! So far: [`identity::PublicIdentity`], the public half of a node's identity, which peers
//! and clients use to authenticate what a node signs and to encrypt to it. This crate knows
//! nothing of HSMs, SQLite or the node's internals, and never holds a node's secret keys.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod identity;
