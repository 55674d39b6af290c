//! Deterministic leader order and session ids.

use sha2::{Digest, Sha256};

/// The cluster's nodes in leader order for one request: sorted by
/// `SHA-256("keyrack/v1/leader" ‖ 0 ‖ request_id ‖ 0 ‖ node_id)`. Every node computes the same
/// order; a different request gets a different, unpredictable-in-advance order, so leadership
/// spreads over the cluster.
pub fn leader_order<'a>(request_id: &str, nodes: &'a [String]) -> Vec<&'a str> {
    let mut ranked: Vec<([u8; 32], &str)> = nodes
        .iter()
        .map(|n| {
            let h = Sha256::new()
                .chain_update(b"keyrack/v1/leader\0")
                .chain_update(request_id.as_bytes())
                .chain_update([0])
                .chain_update(n.as_bytes())
                .finalize();
            (h.into(), n.as_str())
        })
        .collect();
    ranked.sort();
    ranked.into_iter().map(|(_, n)| n).collect()
}

/// The execution id of one attempt at a request: binds the request, the attempt number, the
/// leader and the participants, so messages of one attempt can never count in another.
pub fn session_id(
    request_id: &str,
    attempt: u32,
    leader: &str,
    participants: &[String],
) -> [u8; 32] {
    let mut h = Sha256::new()
        .chain_update(b"keyrack/v1/session\0")
        .chain_update(request_id.as_bytes())
        .chain_update([0])
        .chain_update(attempt.to_be_bytes())
        .chain_update(leader.as_bytes())
        .chain_update([0]);
    for p in participants {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<String> {
        (0..5).map(|i| format!("node{i}")).collect()
    }

    #[test]
    fn order_is_deterministic_complete_and_independent_of_listing_order() {
        let a = nodes();
        let mut b = nodes();
        b.reverse();
        let order = leader_order("req-1", &a);
        assert_eq!(order, leader_order("req-1", &b));
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, ["node0", "node1", "node2", "node3", "node4"]);
    }

    #[test]
    fn leadership_spreads_over_requests() {
        let n = nodes();
        let mut firsts = std::collections::BTreeSet::new();
        for i in 0..200 {
            firsts.insert(leader_order(&format!("req-{i}"), &n)[0]);
        }
        assert_eq!(firsts.len(), 5, "every node leads some requests");
    }

    #[test]
    fn session_ids_bind_attempt_leader_and_participants() {
        let p = vec!["node0".to_owned(), "node2".to_owned()];
        let base = session_id("r", 0, "node0", &p);
        assert_ne!(base, session_id("r", 1, "node0", &p));
        assert_ne!(base, session_id("r", 0, "node2", &p));
        assert_ne!(base, session_id("r2", 0, "node0", &p));
        assert_ne!(
            base,
            session_id("r", 0, "node0", &["node0".to_owned(), "node1".to_owned()])
        );
        // No ambiguity from concatenation.
        assert_ne!(
            session_id("r", 0, "n", &["ab".into(), "c".into()]),
            session_id("r", 0, "n", &["a".into(), "bc".into()])
        );
    }
}
