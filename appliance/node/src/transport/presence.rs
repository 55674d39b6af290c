//! Which peers are live: the time each was last heard from, fed with verified heartbeats.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Liveness of a cluster's nodes.
#[derive(Debug)]
pub struct Presence {
    window: Duration,
    last_seen: BTreeMap<String, Instant>,
}

impl Presence {
    /// A node is live if heard from within `window` (a few heartbeat intervals).
    pub fn new(window: Duration) -> Self {
        Presence {
            window,
            last_seen: BTreeMap::new(),
        }
    }

    /// Records a verified heartbeat (or any verified message) from `node` at `at`.
    pub fn observe(&mut self, node: &str, at: Instant) {
        let entry = self.last_seen.entry(node.to_owned()).or_insert(at);
        if at > *entry {
            *entry = at;
        }
    }

    /// Whether `node` was heard from within the window before `now`.
    pub fn is_live(&self, node: &str, now: Instant) -> bool {
        self.last_seen
            .get(node)
            .is_some_and(|t| now.saturating_duration_since(*t) <= self.window)
    }

    /// The live nodes among `members`, in the given order.
    pub fn live<'a>(&self, members: &'a [String], now: Instant) -> Vec<&'a str> {
        members
            .iter()
            .map(String::as_str)
            .filter(|m| self.is_live(m, now))
            .collect()
    }

    /// When each node was last heard from.
    pub fn last_seen(&self) -> &BTreeMap<String, Instant> {
        &self.last_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_follows_the_window() {
        let t0 = Instant::now();
        let mut p = Presence::new(Duration::from_secs(3));
        p.observe("node0", t0);
        p.observe("node1", t0 + Duration::from_secs(2));
        // An older heartbeat arriving late does not move the clock back.
        p.observe("node1", t0);
        let members = vec!["node0".to_owned(), "node1".to_owned(), "node2".to_owned()];
        assert_eq!(
            p.live(&members, t0 + Duration::from_secs(1)),
            ["node0", "node1"]
        );
        assert_eq!(p.live(&members, t0 + Duration::from_secs(4)), ["node1"]);
        assert!(!p.is_live("node2", t0));
    }
}
