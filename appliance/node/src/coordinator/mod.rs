//! Who runs a request, and when: the prepare / ready / start handshake (shared/DESIGN.md §2).
//!
//! Every node sees every request on its own consumer and decides for itself whether to take
//! part. Nodes that accept send `Ready` to the request's leader; the leader picks the
//! participants and publishes `Start`; if no `Start` comes in time, every node moves on to
//! the next-ranked leader. The leader order is a pure function of the request id and the
//! cluster's members, so every node computes the same order without talking.
//!
//! This module is pure: no I/O, no clocks of its own (callers pass the time), no crypto
//! beyond hashing. The node's event loop feeds it messages and timeouts and carries out the
//! [`Action`]s it returns.

mod handshake;
mod ranking;

pub use handshake::{Action, Handshake, Need, Start};
pub use ranking::{leader_order, session_id};
