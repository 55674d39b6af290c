//! The node's current cluster manifest. It changes at run time when the cluster's
//! administrators publish a signed successor (a node added or removed); everything that
//! asks who is a member reads it here, once per request or message, as an
//! `Arc<VerifiedManifest>` that stays valid for as long as the caller holds it.
//!
//! Only a manifest that verified as the successor of the current one replaces it
//! ([`Membership::replace`]); the cluster id never changes.

use std::sync::{Arc, PoisonError, RwLock};

use keyrack_client::manifest::VerifiedManifest;

/// The current cluster manifest of a node.
#[derive(Debug)]
pub struct Membership {
    cluster_id: String,
    current: RwLock<Arc<VerifiedManifest>>,
}

impl Membership {
    /// Starts from a verified manifest.
    pub fn new(manifest: VerifiedManifest) -> Self {
        Membership {
            cluster_id: manifest.cluster_id().to_owned(),
            current: RwLock::new(Arc::new(manifest)),
        }
    }

    /// The cluster id (the same in every version).
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The current manifest.
    pub fn current(&self) -> Arc<VerifiedManifest> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes `next` current. The caller verified it as the successor of the current one
    /// (same cluster, higher version, signed by the current administrators) and kept it.
    pub(crate) fn replace(&self, next: VerifiedManifest) {
        debug_assert_eq!(next.cluster_id(), self.cluster_id);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
    }
}
