//! Membership changes at run time: the node follows its cluster's manifest stream
//! (`KEYRACK_MAN_<cluster>`, docs/PROTOCOL.md §2) from the first message and judges each
//! manifest offered there against its current one:
//!
//! - another cluster, an older version, or the current version with another hash: refused;
//! - the current manifest again: nothing to do;
//! - a higher version: accepted only if it verifies as the successor of the current one
//!   (same cluster, `previous` = the current hash, signed by a quorum of the current admins).
//!   It is kept in the store first, then made current ([`Membership::replace`]).
//!
//! Each verdict on a message published after the node started reading is published, signed
//! by the node ([`keyrack_client::verdict`]), on `keyrack.<cluster>.manifest.verdict.<node>`.
//! Messages that were in the stream before (history, read again at every start) are judged
//! the same way, but older or equal versions in them pass quietly: they are the cluster's
//! past, not a new offer.
//!
//! If an accepted manifest no longer lists this node (or lists it with other keys), the
//! node logs it and stops following; `keyrack node` sees the membership and exits.
//!
//! What it never does: change the membership on a manifest that does not verify, or before
//! the store holds it.
//!
//! [`Membership::replace`]: crate::membership::Membership::replace

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use keyrack_client::manifest::{SignedManifest, VerifiedManifest};
use keyrack_client::subjects;
use keyrack_client::verdict::{VerdictBody, VERSION};
use sha2::{Digest as _, Sha256};

use super::Node;
use crate::transport::{TransportError, MAX_MANIFEST_BYTES};

/// How long to wait before reading the stream again after NATS failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Reads the cluster's manifest stream and applies signed successors, until this node is
/// no longer a member.
pub async fn watch(node: Arc<Node>) {
    loop {
        match follow(&node).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "manifest stream: reading again in {RETRY_AFTER:?}");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

/// Whether `manifest` lists this node with its own keys.
fn lists(manifest: &VerifiedManifest, node: &Node) -> bool {
    manifest
        .node(node.identity.node_id())
        .is_some_and(|listed| node.identity.matches(listed))
}

/// Follows the stream; returns once this node was removed.
async fn follow(node: &Arc<Node>) -> Result<(), TransportError> {
    let (history_until, mut messages) = node.bus.manifests().await?;
    tracing::info!(
        stream = %subjects::manifest_stream(node.cluster_id())?,
        history_until,
        version = node.manifest().version(),
        "following the cluster's manifest stream"
    );
    while let Some(message) = messages.next().await {
        let message = message?;
        let live = message.sequence > history_until;
        let judged = judge(node, &message.payload, live).await;
        if let Some(verdict) = judged.verdict {
            publish_verdict(node, verdict).await;
        }
        if let Some(last) = judged.removed_by {
            // The verdict must reach the publisher before this node stops: the process
            // exits as soon as the manifest that removes it is current.
            if let Err(e) = node.bus.flush().await {
                tracing::warn!(error = %e, "cannot flush the last manifest verdict");
            }
            node.membership.replace(last);
            return Ok(());
        }
    }
    Err(TransportError::JetStream {
        operation: "read manifests",
        detail: "the manifest consumer ended".into(),
    })
}

/// The outcome of judging one message.
struct Judged {
    /// What to publish (none for history passing quietly).
    verdict: Option<VerdictBody>,
    /// The accepted manifest, stored but not yet current, that no longer lists this node
    /// (made current once the verdict is out: then the node stops).
    removed_by: Option<VerifiedManifest>,
}

/// What a verdict is about: the message bytes' SHA-256, the manifest's hash and version.
#[derive(Clone, Copy)]
struct Offer {
    message_hash: [u8; 32],
    hash: [u8; 32],
    version: u64,
}

/// A verdict body of this node about `offer`.
fn verdict(node: &Node, offer: Offer, accepted: bool, reason: String) -> Judged {
    Judged {
        verdict: Some(VerdictBody {
            version: VERSION,
            cluster_id: node.cluster_id().to_owned(),
            node_id: node.identity.node_id().to_owned(),
            message_hash: offer.message_hash,
            manifest_hash: offer.hash,
            offered_version: offer.version,
            accepted,
            current_version: node.manifest().version(),
            reason,
            at_ms: keyrack_client::now_ms(),
        }),
        removed_by: None,
    }
}

fn refused(node: &Node, offer: Offer, reason: String) -> Judged {
    tracing::warn!(
        offered = offer.version,
        hash = %hex::encode(offer.hash),
        current = node.manifest().version(),
        %reason,
        "cluster manifest refused"
    );
    verdict(node, offer, false, reason)
}

fn quiet(offered: u64, why: &str) -> Judged {
    tracing::debug!(offered, why, "manifest in the stream's history passed");
    Judged {
        verdict: None,
        removed_by: None,
    }
}

async fn judge(node: &Arc<Node>, payload: &[u8], live: bool) -> Judged {
    let message_hash: [u8; 32] = Sha256::digest(payload).into();
    let unparsed = Offer {
        message_hash,
        hash: message_hash,
        version: 0,
    };
    if payload.len() > MAX_MANIFEST_BYTES {
        let reason = format!("larger than {MAX_MANIFEST_BYTES} bytes");
        return refused(node, unparsed, reason);
    }
    let offered = match std::str::from_utf8(payload)
        .map_err(|e| format!("manifest is not UTF-8: {e}"))
        .and_then(|text| SignedManifest::from_toml(text).map_err(|e| e.to_string()))
    {
        Ok(m) => m,
        Err(reason) => return refused(node, unparsed, reason),
    };
    let (hash, version) = (offered.hash(), offered.manifest.version);
    let offer = Offer {
        message_hash,
        hash,
        version,
    };
    let current = node.manifest();
    if offered.manifest.cluster_id != current.cluster_id() {
        let reason = format!(
            "manifest of cluster '{}', not '{}'",
            offered.manifest.cluster_id,
            current.cluster_id()
        );
        return refused(node, offer, reason);
    }
    if version < current.version() {
        if !live {
            return quiet(version, "older");
        }
        let reason = format!(
            "version {version} is older than the current version {}",
            current.version()
        );
        return refused(node, offer, reason);
    }
    if version == current.version() {
        if !live {
            return quiet(version, "not newer");
        }
        if hash == current.hash() {
            tracing::debug!(version, "the current manifest was published again");
            return verdict(node, offer, true, "already current".into());
        }
        let reason = format!(
            "conflicts with the current version {version} (hash {}), which this node accepted",
            hex::encode(current.hash())
        );
        return refused(node, offer, reason);
    }
    let next = match offered.verify_successor(&current) {
        Ok(next) => next,
        Err(e) => return refused(node, offer, e.to_string()),
    };
    // Kept first: a node that stops right after replacing comes back at this version.
    let (store, signed) = (node.store.clone(), next.signed().clone());
    match tokio::task::spawn_blocking(move || store.put_manifest(&signed)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(version, error = %e, "cannot keep an accepted manifest in the store");
            return refused(node, offer, format!("cannot store it: {e}"));
        }
        Err(e) => {
            tracing::error!(version, error = %e, "manifest store task failed");
            return refused(node, offer, format!("cannot store it: {e}"));
        }
    }
    let members: Vec<&str> = next.nodes().iter().map(|n| n.node_id()).collect();
    let summary = format!("nodes: {}", members.join(", "));
    let removed = !lists(&next, node);
    if !removed {
        node.membership.replace(next.clone());
    }
    tracing::info!(
        "cluster manifest version {version} accepted ({summary}; hash {})",
        hex::encode(hash)
    );
    let mut judged = verdict(node, offer, true, summary);
    if removed {
        // Accepted: its version is this node's last (made current once the verdict is out).
        if let Some(v) = judged.verdict.as_mut() {
            v.current_version = version;
        }
        tracing::error!(
            "node {} was removed from cluster {} by manifest version {version}",
            node.identity.node_id(),
            node.cluster_id()
        );
        judged.removed_by = Some(next);
    }
    judged
}

async fn publish_verdict(node: &Node, body: VerdictBody) {
    let subject = match subjects::manifest_verdict_subject(node.cluster_id(), &body.node_id) {
        Ok(s) => s,
        Err(e) => return tracing::error!(error = %e, "manifest verdict subject"),
    };
    let signed = match body.sign(node.identity.signing_key()) {
        Ok(s) => s,
        Err(e) => return tracing::error!(error = %e, "cannot sign a manifest verdict"),
    };
    if let Err(e) = node.bus.publish(subject, signed.to_json()).await {
        tracing::warn!(error = %e, "cannot publish a manifest verdict");
    }
}
