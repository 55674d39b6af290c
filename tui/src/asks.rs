//! What a waiting request asks, as the approver's check read it from the verified request
//! body (never from the node's listing), in the words the Approvals tab and the y/n
//! confirmation show.
//!
//! What it owns: the description of each request kind and of the key's committee as the
//! approver's trusted keys know it. It decides nothing: [`crate::approval::Approver::check`]
//! builds a [`CheckedRequest`] only for a request it verified.

use std::fmt;

use keyrack_client::request::RequestKind;
use keyrack_client::scheme::Scheme;

/// A key's committee: `threshold` of `participants` sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committee {
    /// Signers needed.
    pub threshold: u16,
    /// The members, in key-index order.
    pub participants: Vec<String>,
}

impl fmt::Display for Committee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {}", self.threshold, self.participants.join(","))
    }
}

/// The key's current committee, as the approver's trusted keys know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Current {
    /// Every scheme the request names is trusted, with this committee.
    Trusted {
        /// The committee.
        committee: Committee,
        /// The share version recorded with it.
        version: u32,
    },
    /// A scheme the request names is not in the trusted keys.
    NotTrusted,
    /// The schemes' trusted entries have different committees.
    DiffersByScheme,
}

impl Current {
    fn committee(&self) -> Option<&Committee> {
        match self {
            Current::Trusted { committee, .. } => Some(committee),
            _ => None,
        }
    }

    /// "now: …" for the detail.
    fn line(&self, what: &str) -> String {
        match self {
            Current::Trusted { committee, version } => {
                format!("{what}: {committee} (your trusted keys, version {version})")
            }
            Current::NotTrusted => format!("{what}: unknown (not in your trusted keys)"),
            Current::DiffersByScheme => {
                format!("{what}: differs by scheme in your trusted keys")
            }
        }
    }
}

impl fmt::Display for Current {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Current::Trusted { committee, .. } => write!(f, "{committee}"),
            Current::NotTrusted => f.write_str("unknown (not in your trusted keys)"),
            Current::DiffersByScheme => f.write_str("unknown (differs by scheme)"),
        }
    }
}

/// What each kind of request would do, from its verified body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Asks {
    /// Sign a payload: the verified intent says what it does.
    Sign,
    /// Create a key shared by every node of the manifest.
    Keygen {
        /// `t`.
        threshold: u16,
        /// The manifest's nodes (the committee of a new key).
        nodes: Vec<String>,
        /// Whether it re-uses the id of a deleted key.
        reuse_deleted_id: bool,
    },
    /// Move the key to a new threshold and/or committee.
    Reshare {
        /// The committee now.
        current: Current,
        /// The new threshold (`None`: unchanged).
        threshold: Option<u16>,
        /// The new committee (`None`: unchanged).
        participants: Option<Vec<String>>,
    },
    /// New shares, same key, committee and threshold.
    Refresh {
        /// The committee now.
        current: Current,
    },
    /// Erase every share.
    Delete {
        /// The committee now.
        current: Current,
    },
    /// Each node's view of the key.
    Status,
}

/// A waiting request the approver checked: what it asks, from the signed body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedRequest {
    /// Its kind.
    pub kind: RequestKind,
    /// The key id.
    pub key_id: String,
    /// The schemes it names.
    pub schemes: Vec<Scheme>,
    /// What it would do.
    pub asks: Asks,
}

impl CheckedRequest {
    /// The schemes, comma-separated ("every scheme" for a status request naming none).
    pub fn schemes_text(&self) -> String {
        if self.schemes.is_empty() {
            return "every scheme".into();
        }
        let names: Vec<&str> = self.schemes.iter().map(|s| s.as_str()).collect();
        names.join(", ")
    }

    /// One line: what it does, e.g. `delete wallet-1 (ed25519): erases every share`.
    pub fn summary(&self) -> String {
        let (key, schemes) = (&self.key_id, self.schemes_text());
        match &self.asks {
            Asks::Sign => format!("sign with key {key} ({schemes})"),
            Asks::Keygen {
                threshold,
                nodes,
                reuse_deleted_id,
            } => {
                let reuse = if *reuse_deleted_id {
                    ", re-using a deleted key's id"
                } else {
                    ""
                };
                format!(
                    "keygen {key} ({schemes}) {threshold} of {}{reuse}",
                    nodes.len()
                )
            }
            Asks::Reshare {
                current,
                threshold,
                participants,
            } => {
                let now = current.committee();
                let t = threshold
                    .or(now.map(|c| c.threshold))
                    .map_or_else(|| "the same threshold".to_owned(), |t| t.to_string());
                let members = participants
                    .as_ref()
                    .or(now.map(|c| &c.participants))
                    .map_or_else(|| "the same committee".to_owned(), |p| p.join(","));
                format!("reshare {key} ({schemes}): {current} → {t} of {members}")
            }
            Asks::Refresh { .. } => {
                format!("refresh {key} ({schemes}): new shares, same key and committee")
            }
            Asks::Delete { .. } => format!("delete {key} ({schemes}): erases every share"),
            Asks::Status => {
                format!("status {key} ({schemes}): each node reports its view; changes nothing")
            }
        }
    }

    /// More lines for the detail: the committee before and after, and what cannot be undone.
    pub fn details(&self) -> Vec<String> {
        match &self.asks {
            Asks::Sign | Asks::Status => vec![],
            Asks::Keygen {
                threshold,
                nodes,
                reuse_deleted_id,
            } => {
                let mut lines = vec![format!(
                    "a new key shared by every node of your manifest ({}); {threshold} of them \
                     sign",
                    nodes.join(", ")
                )];
                if *reuse_deleted_id {
                    lines.push(
                        "the id belonged to a deleted key: this makes a new, unrelated key under \
                         it"
                        .into(),
                    );
                }
                lines
            }
            Asks::Reshare {
                current,
                threshold,
                participants,
            } => vec![
                current.line("now"),
                format!(
                    "after: threshold {}, committee {} (the public key stays the same)",
                    threshold.map_or_else(|| "unchanged".to_owned(), |t| t.to_string()),
                    participants
                        .as_ref()
                        .map_or_else(|| "unchanged".to_owned(), |p| p.join(","))
                ),
            ],
            Asks::Refresh { current } => vec![
                current.line("held by"),
                "every member gets new shares; the public key, committee and threshold stay".into(),
            ],
            Asks::Delete { current } => vec![
                current.line("held by"),
                "every node erases its shares: the key can never sign again (irreversible); \
                 its id stays taken"
                    .into(),
            ],
        }
    }

    /// What the nodes do once it has its approvals.
    pub fn outcome(&self) -> &'static str {
        match self.asks {
            Asks::Sign => "the nodes sign it",
            Asks::Keygen { .. } => "the nodes create the key",
            Asks::Reshare { .. } => "the nodes move the key to the new committee",
            Asks::Refresh { .. } => "the nodes deal new shares",
            Asks::Delete { .. } => "every node erases its shares (irreversible)",
            Asks::Status => "the nodes answer it",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node{i}")).collect()
    }

    fn request(schemes: &[Scheme], asks: Asks) -> CheckedRequest {
        CheckedRequest {
            kind: RequestKind::Delete,
            key_id: "wallet-1".into(),
            schemes: schemes.to_vec(),
            asks,
        }
    }

    fn trusted(t: u16, n: usize) -> Current {
        Current::Trusted {
            committee: Committee {
                threshold: t,
                participants: nodes(n),
            },
            version: 3,
        }
    }

    #[test]
    fn each_kind_says_what_it_does() {
        let both = [Scheme::EcdsaSecp256k1, Scheme::Ed25519];
        let delete = request(
            &both,
            Asks::Delete {
                current: trusted(2, 3),
            },
        );
        assert_eq!(
            delete.summary(),
            "delete wallet-1 (ecdsa-secp256k1, ed25519): erases every share"
        );
        assert_eq!(
            delete.details()[0],
            "held by: 2 of node0,node1,node2 (your trusted keys, version 3)"
        );
        let reshare = request(
            &[Scheme::Ed25519],
            Asks::Reshare {
                current: trusted(2, 3),
                threshold: Some(3),
                participants: Some(nodes(4)),
            },
        );
        assert_eq!(
            reshare.summary(),
            "reshare wallet-1 (ed25519): 2 of node0,node1,node2 → 3 of node0,node1,node2,node3"
        );
        // Unknown now: the new side says only what the request changes.
        let blind = request(
            &[Scheme::Ed25519],
            Asks::Reshare {
                current: Current::NotTrusted,
                threshold: Some(3),
                participants: None,
            },
        );
        assert_eq!(
            blind.summary(),
            "reshare wallet-1 (ed25519): unknown (not in your trusted keys) → 3 of the same \
             committee"
        );
        assert_eq!(
            blind.details()[0],
            "now: unknown (not in your trusted keys)"
        );
        let keygen = CheckedRequest {
            kind: RequestKind::Keygen,
            key_id: "vault-7".into(),
            schemes: vec![Scheme::Ed25519],
            asks: Asks::Keygen {
                threshold: 2,
                nodes: nodes(3),
                reuse_deleted_id: false,
            },
        };
        assert_eq!(keygen.summary(), "keygen vault-7 (ed25519) 2 of 3");
        let status = request(&[], Asks::Status);
        assert_eq!(
            status.summary(),
            "status wallet-1 (every scheme): each node reports its view; changes nothing"
        );
    }
}
