//! What can go wrong while talking to a cluster, and the small reports the errors carry
//! (who answered what, what was ignored). Every variant names the node concerned, so a person
//! can tell a misbehaving node from a refused request.

use crate::codes::ErrorCode;
use crate::request::RequestError;
use crate::result::{KeyInfo, Status};
use std::fmt;
use std::time::Duration;

/// Why an SDK call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SdkError {
    /// The client's own configuration does not fit the manifest (cluster id, client id,
    /// initiator key).
    #[error("client configuration: {0}")]
    Config(String),
    /// The request could not be built (invalid key id, threshold, payload…).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The cluster's JetStream streams do not exist.
    #[error(
        "stream {stream} of cluster '{cluster}' does not exist on this NATS: the cluster's \
         nodes have not started (they create the streams when they start); start them, or \
         check the cluster id and the NATS URL"
    )]
    StreamsMissing {
        /// The cluster id.
        cluster: String,
        /// The stream not found.
        stream: String,
    },
    /// NATS or JetStream failed.
    #[error("NATS {operation}: {detail}")]
    Transport {
        /// What the SDK was doing.
        operation: &'static str,
        /// What NATS said.
        detail: String,
    },
    /// A node refused the request (it did not attempt it).
    #[error("node '{node}' refused the request: {code} ({message})")]
    Refused {
        /// The node.
        node: String,
        /// Why (see [`ErrorCode`]; [`ErrorCode::is_transient`] says whether a new request
        /// may succeed).
        code: ErrorCode,
        /// The node's message, for people.
        message: String,
    },
    /// A node attempted the request and failed.
    #[error("node '{node}' failed the request: {code} ({message})")]
    Failed {
        /// The node.
        node: String,
        /// Why.
        code: ErrorCode,
        /// The node's message, for people.
        message: String,
    },
    /// The nodes reported different keys for one keygen, reshare or refresh. Do not use
    /// any of them.
    #[error("nodes disagree on the key: {}", KeyGroup::list(groups))]
    Disagreement {
        /// The nodes grouped by the keys they reported.
        groups: Vec<KeyGroup>,
    },
    /// Every node answered a reshare or refresh `ok`, but none reported keys: each says it
    /// is in neither the key's committee nor the new one. Nothing was reshared.
    #[error(
        "every node ({}) answered that it takes no part in the key: no node reported the \
         new keys",
        nodes.join(", ")
    )]
    NoKeys {
        /// The nodes (every manifest node).
        nodes: Vec<String>,
    },
    /// A node's `ok` result contradicts the request (other scheme, key id, threshold,
    /// committee, derivation path or digest than asked).
    #[error("node '{node}' returned a result that does not answer the request: {reason}")]
    InvalidResult {
        /// The node.
        node: String,
        /// What does not match.
        reason: String,
    },
    /// A node returned a signature that does not verify. It was not used.
    #[error("node '{node}' returned a signature that does not verify: {reason}")]
    BadSignature {
        /// The node.
        node: String,
        /// What failed.
        reason: String,
    },
    /// The answers needed did not all arrive in time.
    #[error(
        "no complete answer within {}: answered: {}; silent: {}; {ignored}",
        humantime(*after), NodeAnswer::list(answered), list_or_none(silent)
    )]
    Timeout {
        /// How long the SDK waited.
        after: Duration,
        /// The nodes that answered, with what.
        answered: Vec<NodeAnswer>,
        /// The manifest nodes that did not answer.
        silent: Vec<String>,
        /// Results ignored meanwhile.
        ignored: Ignored,
    },
}

impl SdkError {
    pub(crate) fn transport(operation: &'static str) -> impl Fn(&dyn fmt::Display) -> SdkError {
        move |e| SdkError::Transport {
            operation,
            detail: e.to_string(),
        }
    }

    /// The error for a node's non-`ok` answer.
    pub(crate) fn from_answer(answer: &NodeAnswer) -> SdkError {
        let node = answer.node.clone();
        let code = answer.code.unwrap_or(ErrorCode::Internal);
        let message = answer.message.clone();
        match answer.status {
            Status::Failed => SdkError::Failed {
                node,
                code,
                message,
            },
            _ => SdkError::Refused {
                node,
                code,
                message,
            },
        }
    }
}

fn humantime(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// One node's answer to a request (from a result that verified and answers the request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAnswer {
    /// The node.
    pub node: String,
    /// How it ended there.
    pub status: Status,
    /// Why, when not `ok`.
    pub code: Option<ErrorCode>,
    /// The node's message, for people.
    pub message: String,
}

impl NodeAnswer {
    fn list(answers: &[NodeAnswer]) -> String {
        if answers.is_empty() {
            return "none".into();
        }
        let shown: Vec<String> = answers.iter().map(ToString::to_string).collect();
        shown.join(", ")
    }
}

impl fmt::Display for NodeAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.status, self.code) {
            (Status::Ok, _) | (_, None) => write!(f, "{} (ok)", self.node),
            (Status::Refused, Some(code)) => write!(f, "{} (refused: {code})", self.node),
            (Status::Failed, Some(code)) => write!(f, "{} (failed: {code})", self.node),
            (Status::Pending, Some(code)) => write!(f, "{} (waiting: {code})", self.node),
        }
    }
}

/// Nodes that reported the same keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyGroup {
    /// The nodes.
    pub nodes: Vec<String>,
    /// The keys they reported (sorted by scheme; participants sorted for a keygen, in
    /// key-index order for a reshare or refresh).
    pub keys: Vec<KeyInfo>,
}

impl KeyGroup {
    fn list(groups: &[KeyGroup]) -> String {
        let shown: Vec<String> = groups.iter().map(ToString::to_string).collect();
        shown.join("; ")
    }
}

impl fmt::Display for KeyGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} report", self.nodes.join(", "))?;
        for k in &self.keys {
            let key = hex::encode(&k.public_key);
            let chain = hex::encode(&k.chain_code[..4]);
            write!(
                f,
                " [{} {} chain {chain}… t={} of {} version {}]",
                k.scheme,
                key.get(..16).unwrap_or(&key),
                k.threshold,
                k.participants.join(","),
                k.version
            )?;
        }
        Ok(())
    }
}

/// Results the SDK received for a request but did not count, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ignored {
    /// The wire form or body did not parse.
    pub malformed: u32,
    /// Signed by (or naming) a node not in the manifest.
    pub unknown_node: u32,
    /// The node signature did not verify.
    pub bad_node_signature: u32,
    /// About other request bytes (another request hash, id or client): an answer to a
    /// forged or altered copy of the request.
    pub other_request: u32,
    /// A node's second answer (only its first counts).
    pub repeated: u32,
}

impl Ignored {
    /// How many results were ignored in all.
    pub fn total(&self) -> u32 {
        self.malformed
            .saturating_add(self.unknown_node)
            .saturating_add(self.bad_node_signature)
            .saturating_add(self.other_request)
            .saturating_add(self.repeated)
    }
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ignored {} result(s) ({} malformed, {} from unknown nodes, {} with bad node \
             signatures, {} about other request bytes, {} repeated)",
            self.total(),
            self.malformed,
            self.unknown_node,
            self.bad_node_signature,
            self.other_request,
            self.repeated
        )
    }
}
