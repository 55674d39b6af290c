//! The one error type of the crate. Every variant a person can hit names what to fix.

use crate::blob::BackendId;

/// Why sealing, unsealing or opening a backend failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The configuration is incomplete or invalid.
    #[error("hsm configuration: {setting}: {message}")]
    Config {
        /// The setting to fix, e.g. `hsm.pkcs11.module`.
        setting: String,
        /// What is wrong with it.
        message: String,
    },
    /// The backend could not be reached (library, device, simulator or connector).
    #[error("{backend} backend unreachable ({setting} = {value}): {detail}")]
    Unreachable {
        /// The backend.
        backend: BackendId,
        /// The setting that says where the backend is.
        setting: &'static str,
        /// Its value.
        value: String,
        /// What the backend said.
        detail: String,
    },
    /// The backend refused the credentials.
    #[error("{backend} login refused: {detail} (check {setting})")]
    Login {
        /// The backend.
        backend: BackendId,
        /// The setting that holds the credentials.
        setting: &'static str,
        /// What the backend said.
        detail: String,
    },
    /// A token, key or object the configuration names does not exist.
    #[error("{backend}: {what} not found; {hint}")]
    NotFound {
        /// The backend.
        backend: BackendId,
        /// What was looked for.
        what: String,
        /// What to do about it.
        hint: String,
    },
    /// The backend key exists but is not safe to use (e.g. extractable).
    #[error("{backend}: key {key_id} is unsafe to seal with: {reason}")]
    UnsafeKey {
        /// The backend.
        backend: BackendId,
        /// The key.
        key_id: String,
        /// Why it is refused.
        reason: String,
    },
    /// The bytes are not a sealed blob of a known layout.
    #[error("sealed blob is malformed: {0}")]
    Malformed(String),
    /// The blob has a format version this build does not read.
    #[error("sealed blob format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// The version in the blob.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// The blob was made by another backend.
    #[error("sealed blob was made by the {blob} backend, but this node seals with {sealer}")]
    WrongBackend {
        /// The backend named in the blob.
        blob: BackendId,
        /// This sealer's backend.
        sealer: BackendId,
    },
    /// The blob was made under another backend key.
    #[error("sealed blob was made under key '{blob}', but this node seals with key '{sealer}'")]
    WrongKey {
        /// The key named in the blob.
        blob: String,
        /// This sealer's key.
        sealer: String,
    },
    /// Decryption failed: the AAD names another record, or the blob was altered.
    #[error("sealed blob failed authentication: it belongs to another record or was altered")]
    Authentication,
    /// The backend failed an operation.
    #[error("{backend} {operation} failed: {detail}")]
    Backend {
        /// The backend.
        backend: BackendId,
        /// The operation, e.g. `encrypt`.
        operation: &'static str,
        /// What the backend said.
        detail: String,
    },
}

impl SealError {
    pub(crate) fn config(setting: impl Into<String>, message: impl Into<String>) -> Self {
        SealError::Config {
            setting: setting.into(),
            message: message.into(),
        }
    }

    pub(crate) fn backend(
        backend: BackendId,
        operation: &'static str,
        detail: impl std::fmt::Display,
    ) -> Self {
        SealError::Backend {
            backend,
            operation,
            detail: detail.to_string(),
        }
    }

    #[allow(dead_code)] // used only when a backend feature is off
    pub(crate) fn not_built(backend: &str) -> Self {
        SealError::config(
            "hsm.backend",
            format!(
                "this keyrack build has no '{backend}' backend (cargo feature '{backend}' is off)"
            ),
        )
    }
}
