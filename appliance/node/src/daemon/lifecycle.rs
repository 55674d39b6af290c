//! The key lifecycle across the cluster: reshare, refresh and delete.
//! (Being built: see issue 5.)

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

/// The keys (key id, scheme) this node is resharing, refreshing or deleting right now: one
/// such operation per key at a time.
#[derive(Debug, Default)]
pub struct KeyOps {
    busy: Mutex<BTreeSet<(String, String)>>,
}

impl KeyOps {
    /// Whether a lifecycle operation on the key is under way.
    pub fn is_busy(&self, key_id: &str, scheme: &str) -> bool {
        self.busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&(key_id.to_owned(), scheme.to_owned()))
    }
}
