//! The node configuration file (`keyrack.toml`), written by `keyrack init`.
//!
//! ```toml
//! [cluster]                             # what `keyrack node` joins (docs/CONFIG.md)
//! manifest = "manifest.toml"
//! nats = ["nats://127.0.0.1:4222"]
//!
//! [node]
//! id = "node0"
//! identity = "identity.sealed"          # default; the sealed identity keys
//! public_identity = "identity.pub.toml" # default; the public identity for peers
//!
//! [hsm]                                 # see keyrack_hsm::config for every key
//! backend = "pkcs11"
//! [hsm.pkcs11]
//! module = "/usr/lib/softhsm/libsofthsm2.so"
//! token_label = "keyrack-node0"
//! pin = { file = "/etc/keyrack/node0.pin" }
//! ```
//! Unknown keys are errors. Relative paths are relative to the directory of the file.

use std::path::{Path, PathBuf};

use anyhow::Context;
use keyrack_hsm::HsmConfig;
use serde::{Deserialize, Serialize};

/// File name of the node configuration in a node directory.
pub const CONFIG_FILE: &str = "keyrack.toml";

/// The whole configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// `[node]`.
    pub node: NodeSection,
    /// `[hsm]`.
    pub hsm: HsmConfig,
    /// `[cluster]`: what `keyrack node` joins (absent until the node is enrolled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterSection>,
    /// `[api]`: the node's HTTP API (defaults: localhost:7400, token file `api-token`).
    #[serde(default)]
    pub api: ApiSection,
}

/// `[api]`: the HTTP API the console and monitoring read ([`crate::api`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Address and port to listen on. Keep it on localhost unless a firewall and TLS
    /// terminator stand in front: the API has no TLS of its own.
    #[serde(default = "default_api_listen")]
    pub listen: String,
    /// The file holding the bearer token every route but /healthz and /readyz needs
    /// (written by `keyrack init`, mode 0600).
    #[serde(default = "default_api_token_file")]
    pub token_file: PathBuf,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: default_api_listen(),
            token_file: default_api_token_file(),
        }
    }
}

/// Where the API listens unless the config says otherwise.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7400";

fn default_api_listen() -> String {
    DEFAULT_API_LISTEN.into()
}
fn default_api_token_file() -> PathBuf {
    "api-token".into()
}

/// `[cluster]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// The signed cluster manifest.
    pub manifest: PathBuf,
    /// NATS server URLs (any of a NATS cluster's).
    pub nats: Vec<String>,
    /// The node's SQLite database.
    #[serde(default = "default_store")]
    pub store: PathBuf,
    /// How long each coordinator leader has to start a request, in milliseconds.
    #[serde(default = "default_leader_timeout_ms")]
    pub leader_timeout_ms: u64,
    /// The longest wait for one protocol message, in milliseconds.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// Requests handled at once; more wait in NATS.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Pairs of safe primes kept ready (sealed) for ECDSA committee setup; 0 keeps none.
    #[serde(default = "default_prime_pool")]
    pub prime_pool: usize,
    /// The longest wait for one message of ECDSA committee setup, in milliseconds.
    #[serde(default = "default_setup_timeout_ms")]
    pub setup_timeout_ms: u64,
    /// Presignatures (FROST: nonce commitments) kept ready, sealed, per hot key and signer
    /// set; 0 disables the pools.
    #[serde(default = "default_presign_pool")]
    pub presign_pool: usize,
    /// How long a key and signer set stay hot (pools refilled) after their last signing, in
    /// milliseconds.
    #[serde(default = "default_hot_window_ms")]
    pub hot_window_ms: u64,
    /// Requests the policy holds at this node (waiting for approvals, or approved and
    /// time-locked) per initiator, at most; more are refused `too_many_waiting`.
    #[serde(default = "default_max_waiting_per_initiator")]
    pub max_waiting_per_initiator: usize,
    /// A signed policy bundle to activate at start (if it succeeds the active one; a file
    /// that does not verify stops the start). Absent: the active bundle in the store, if any
    /// (bundles also arrive as `policy` requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_bundle: Option<PathBuf>,
    /// The Bitcoin network addresses are shown for: bitcoin, testnet, testnet4, signet,
    /// regtest.
    #[serde(default = "default_bitcoin_network")]
    pub bitcoin_network: String,
}

fn default_bitcoin_network() -> String {
    "bitcoin".into()
}

fn default_store() -> PathBuf {
    "keyrack.db".into()
}
fn default_leader_timeout_ms() -> u64 {
    3_000
}
fn default_session_timeout_ms() -> u64 {
    20_000
}
fn default_max_in_flight() -> usize {
    32
}
fn default_prime_pool() -> usize {
    1
}
fn default_setup_timeout_ms() -> u64 {
    300_000
}
fn default_presign_pool() -> usize {
    4
}
fn default_hot_window_ms() -> u64 {
    600_000
}
fn default_max_waiting_per_initiator() -> usize {
    16
}

/// `[node]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The node's id in its cluster.
    pub id: String,
    /// The sealed identity blob.
    #[serde(default = "default_identity")]
    pub identity: PathBuf,
    /// The public identity file.
    #[serde(default = "default_public_identity")]
    pub public_identity: PathBuf,
}

fn default_identity() -> PathBuf {
    "identity.sealed".into()
}
fn default_public_identity() -> PathBuf {
    "identity.pub.toml".into()
}

/// A configuration together with the directory its relative paths are resolved against.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    /// The parsed file.
    pub config: NodeConfig,
    /// The directory of the file.
    pub base_dir: PathBuf,
}

impl LoadedConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let config: NodeConfig =
            toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))?;
        keyrack_client::identity::validate_node_id(&config.node.id)
            .with_context(|| format!("invalid config {}: node.id", path.display()))?;
        let base_dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .to_owned();
        Ok(LoadedConfig { config, base_dir })
    }

    /// A path from the config, resolved.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in docs/CONFIG.md is a valid config, with the documented defaults.
    #[test]
    fn reference_example_parses_with_documented_defaults() {
        let doc = include_str!("../../../docs/CONFIG.md");
        let example = doc
            .split("## Example")
            .nth(1)
            .and_then(|s| s.split("```toml").nth(1))
            .and_then(|s| s.split("```").next())
            .expect("docs/CONFIG.md has a toml example");
        let c: NodeConfig = toml::from_str(example).unwrap();
        assert_eq!(c.node.identity, PathBuf::from("identity.sealed"));
        assert_eq!(c.node.public_identity, PathBuf::from("identity.pub.toml"));
        assert_eq!(c.hsm.pkcs11.unwrap().key_label, "keyrack-seal");
        let cluster = c.cluster.expect("the example has a [cluster] section");
        assert_eq!(cluster.store, PathBuf::from("keyrack.db"));
        assert_eq!(
            (
                cluster.leader_timeout_ms,
                cluster.session_timeout_ms,
                cluster.max_in_flight
            ),
            (3_000, 20_000, 32)
        );
        assert_eq!((cluster.presign_pool, cluster.hot_window_ms), (4, 600_000));
    }

    #[test]
    fn unknown_node_keys_are_errors() {
        let text = "[node]\nid = \"n\"\nname = \"x\"\n[hsm]\nbackend = \"soft\"\n";
        assert!(toml::from_str::<NodeConfig>(text)
            .unwrap_err()
            .to_string()
            .contains("unknown field `name`"));
    }
}
