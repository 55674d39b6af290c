//! The node's current cluster manifest. It changes at run time when the cluster's
//! administrators publish a signed successor (a node added or removed); everything that
//! asks who is a member reads it here, once per request or message, as an
//! `Arc<VerifiedManifest>` that stays valid for as long as the caller holds it.
//!
//! Only a manifest that verified as the successor of the current one replaces it
//! ([`Membership::replace`]); the cluster id never changes. Whoever must act on a change
//! (the node stopping when it is removed) waits for it ([`Membership::subscribe`]).

use std::sync::Arc;

use keyrack_client::manifest::VerifiedManifest;
use tokio::sync::watch;

/// The current cluster manifest of a node.
#[derive(Debug)]
pub struct Membership {
    cluster_id: String,
    current: watch::Sender<Arc<VerifiedManifest>>,
}

impl Membership {
    /// Starts from a verified manifest.
    pub fn new(manifest: VerifiedManifest) -> Self {
        Membership {
            cluster_id: manifest.cluster_id().to_owned(),
            current: watch::Sender::new(Arc::new(manifest)),
        }
    }

    /// The cluster id (the same in every version).
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The current manifest.
    pub fn current(&self) -> Arc<VerifiedManifest> {
        self.current.borrow().clone()
    }

    /// A receiver that sees every later replacement (`changed().await`, then `borrow()`).
    pub fn subscribe(&self) -> watch::Receiver<Arc<VerifiedManifest>> {
        self.current.subscribe()
    }

    /// Makes `next` current. The caller verified it as the successor of the current one
    /// (same cluster, higher version, signed by the current administrators) and kept it.
    pub(crate) fn replace(&self, next: VerifiedManifest) {
        debug_assert_eq!(next.cluster_id(), self.cluster_id);
        self.current.send_replace(Arc::new(next));
    }
}
