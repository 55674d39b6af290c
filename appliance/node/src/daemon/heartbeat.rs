//! Peer presence: every node publishes a signed heartbeat every [`HEARTBEAT_EVERY`] on
//! `keyrack.<cluster>.hb.<node>`, and keeps [`Presence`] from the heartbeats of the others.
//!
//! A heartbeat is a control envelope (signed by the node's identity, checked against the
//! manifest like every other envelope) with an empty payload, the all-zero session and, as
//! its sequence number, the sender's clock in Unix milliseconds. A receiver takes it only if
//! that time is within [`MAX_SKEW`] of its own clock and later than the last one it took from
//! that node, so a recorded heartbeat replayed later cannot make a stopped node look live.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use keyrack_client::envelope::{self, Header, MessageKind};
use keyrack_client::subjects;

use super::Node;
use crate::transport::Presence;

/// How often a node publishes its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// A peer is live if heard from within this window.
pub const LIVE_WINDOW: Duration = Duration::from_secs(4);
/// A session gives up on a participant not heard from for this long (a few missed
/// heartbeats more than [`LIVE_WINDOW`], so a busy peer is not taken for a dead one).
pub const SILENT_AFTER: Duration = Duration::from_secs(10);
/// The largest clock difference at which a heartbeat is still taken.
pub const MAX_SKEW: Duration = Duration::from_secs(30);

/// Which peers this node hears from (shared by the heartbeat tasks and readers).
#[derive(Debug)]
pub struct Peers {
    presence: Mutex<Presence>,
    last_at: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Default for Peers {
    fn default() -> Self {
        Peers {
            presence: Mutex::new(Presence::new(LIVE_WINDOW)),
            last_at: Mutex::default(),
        }
    }
}

impl Peers {
    fn presence(&self) -> MutexGuard<'_, Presence> {
        self.presence.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a verified heartbeat of `node` sent at `at_ms` (its clock), received when this
    /// node's clock read `now_ms`. Returns whether it was taken.
    pub fn heartbeat(&self, node: &str, at_ms: u64, now_ms: u64) -> bool {
        if at_ms.abs_diff(now_ms) > MAX_SKEW.as_millis() as u64 {
            return false;
        }
        let mut last = self.last_at.lock().unwrap_or_else(|e| e.into_inner());
        match last.get(node) {
            Some(previous) if *previous >= at_ms => return false,
            _ => last.insert(node.to_owned(), at_ms),
        };
        self.presence().observe(node, Instant::now());
        true
    }

    /// The live nodes among `members`, in their order.
    pub fn live(&self, members: &[String]) -> Vec<String> {
        self.presence()
            .live(members, Instant::now())
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// When `node` was last heard from, if ever.
    pub fn last_heard(&self, node: &str) -> Option<Instant> {
        self.presence().last_seen().get(node).copied()
    }

    /// Whether `node` was heard from lately.
    pub fn is_live(&self, node: &str) -> bool {
        self.presence().is_live(node, Instant::now())
    }
}

/// Publishes this node's heartbeat until the connection fails for good.
pub async fn beat(node: Arc<Node>) {
    let subject = match subjects::heartbeat_subject(node.cluster_id(), node.identity.node_id()) {
        Ok(s) => s,
        Err(e) => return tracing::error!(error = %e, "invalid heartbeat subject"),
    };
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let header = Header {
            version: 1,
            cluster: node.cluster_id().to_owned(),
            session: [0; 32],
            kind: MessageKind::Control,
            round: 0,
            from: node.identity.node_id().to_owned(),
            to: None,
            seq: keyrack_client::now_ms(),
        };
        let sealed = match crate::session::seal_as(&node.identity, &node.manifest(), &header, &[]) {
            Ok(s) => s,
            Err(e) => return tracing::error!(error = %e, "cannot seal a heartbeat"),
        };
        if let Err(e) = node.bus.publish(subject.clone(), sealed).await {
            tracing::debug!(error = %e, "cannot publish a heartbeat");
        }
    }
}

/// Reads the cluster's heartbeats into [`Node::peers`], and logs peers going down and up.
pub async fn watch(node: Arc<Node>) {
    let filter = match subjects::heartbeat_filter(node.cluster_id()) {
        Ok(f) => f,
        Err(e) => return tracing::error!(error = %e, "invalid cluster id"),
    };
    let mut sub = match node.bus.subscribe(filter).await {
        Ok(s) => s,
        Err(e) => return tracing::error!(error = %e, "cannot subscribe to heartbeats"),
    };
    let me = node.identity.node_id().to_owned();
    let mut was_live: Vec<String> = vec![];
    let mut check = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tokio::select! {
            message = sub.next() => {
                let Some(message) = message else { return };
                let manifest = node.manifest();
                let opened = envelope::open(
                    &message.payload,
                    |id| manifest.node(id),
                    (&me, node.identity.agreement_secret()),
                    node.cluster_id(),
                );
                match opened {
                    Ok((header, payload))
                        if header.kind == MessageKind::Control
                            && header.session == [0; 32]
                            && payload.is_empty()
                            && header.from != me =>
                    {
                        node.peers.heartbeat(&header.from, header.seq, keyrack_client::now_ms());
                    }
                    Ok(_) => tracing::debug!("dropped a heartbeat of the wrong shape"),
                    Err(e) => tracing::debug!(error = %e, "dropped a heartbeat envelope"),
                }
            }
            _ = check.tick() => {
                // The members of the current manifest (it changes when nodes join or leave).
                let others: Vec<String> = node
                    .manifest()
                    .nodes()
                    .iter()
                    .map(|n| n.node_id().to_owned())
                    .filter(|n| *n != me)
                    .collect();
                let live = node.peers.live(&others);
                for p in others.iter().filter(|p| live.contains(p) && !was_live.contains(p)) {
                    tracing::info!(peer = %p, "peer is up");
                }
                for p in was_live.iter().filter(|p| !live.contains(p)) {
                    tracing::warn!(peer = %p, "peer is down (no heartbeat)");
                }
                was_live = live;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_must_be_recent_and_newer_than_the_last() {
        let peers = Peers::default();
        let now = 1_800_000_000_000;
        assert!(!peers.is_live("node1"));
        // Too far from this node's clock, either way: not taken.
        assert!(!peers.heartbeat("node1", now - 31_000, now));
        assert!(!peers.heartbeat("node1", now + 31_000, now));
        assert!(!peers.is_live("node1"));
        assert!(peers.heartbeat("node1", now - 1_000, now));
        assert!(peers.is_live("node1"));
        // A replay of that heartbeat, or an older one, is not taken.
        assert!(!peers.heartbeat("node1", now - 1_000, now));
        assert!(!peers.heartbeat("node1", now - 2_000, now));
        assert!(peers.heartbeat("node1", now, now));
        let members = ["node0".to_owned(), "node1".to_owned(), "node2".to_owned()];
        assert_eq!(peers.live(&members), ["node1"]);
    }
}
