//! Membership changes at run time: signed successor manifests received over NATS.
//! (Being built: see issue 5.)

use std::sync::Arc;

use super::Node;

/// Reads the cluster's manifest stream and applies signed successors.
pub async fn watch(node: Arc<Node>) {
    let _ = node;
}
