//! Backend health, as reported by `keyrack hsm check`, the node and the console.

use serde::Serialize;

use crate::blob::BackendId;

/// A live check of a sealing backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Health {
    /// The backend checked.
    pub backend: BackendId,
    /// The backend key.
    pub key_id: String,
    /// The device, library or connector answered.
    pub reachable: bool,
    /// The session is authenticated (true for backends without login).
    pub logged_in: bool,
    /// The sealing key is present and usable.
    pub key_present: bool,
    /// A line for a person: what was checked, or what failed.
    pub detail: String,
}

impl Health {
    /// Whether the backend can seal and unseal now.
    pub fn is_healthy(&self) -> bool {
        self.reachable && self.logged_in && self.key_present
    }

    /// A failed check.
    pub(crate) fn failed(
        backend: BackendId,
        key_id: &str,
        reachable: bool,
        logged_in: bool,
        detail: impl std::fmt::Display,
    ) -> Self {
        Health {
            backend,
            key_id: key_id.to_owned(),
            reachable,
            logged_in,
            key_present: false,
            detail: detail.to_string(),
        }
    }

    /// A passed check.
    pub(crate) fn healthy(
        backend: BackendId,
        key_id: &str,
        detail: impl std::fmt::Display,
    ) -> Self {
        Health {
            backend,
            key_id: key_id.to_owned(),
            reachable: true,
            logged_in: true,
            key_present: true,
            detail: detail.to_string(),
        }
    }
}
