//! Policy at one node: the active bundle and its activation, and the approvers' verdicts —
//! every node decides for itself ([`super::gate`]), so the signing threshold is also a
//! policy quorum.
//!
//! - **Bundles.** The policy administrators are the manifest's initiators holding the role
//!   [`POLICY_ADMIN_ROLE`]. A bundle is activated by a `policy` request (any
//!   policy-admin may carry it; the bundle's own signatures are what count) or, at start, from
//!   the file the node config names; either way the node checks the signatures and that it
//!   succeeds the active one ([`keyrack_policy::SignedBundle::verify`]). At start the stored
//!   bundle is verified again; one that does not verify stops the node.
//! - **Verdicts.** An `approve` request records its initiator's approval of a request hash at
//!   every node until the approve request's own expiry; a `reject` request its rejection,
//!   which replaces the approver's approval, is never replaced by one, and stands for
//!   [`REJECTIONS_STAND_MS`] (longer than anything can wait). Each verdict wakes the keeper of
//!   parked requests ([`super::parked`]) for the request it is about. Only approvals count
//!   towards a quorum; what a rejection stops is the gate's.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use anyhow::Context as _;
use ed25519_dalek::Signer as _;
use keyrack_client::codes::ErrorCode;
use keyrack_client::manifest::VerifiedManifest;
use keyrack_client::request::{SignedRequest, VerifiedRequest};
use keyrack_policy::{BundleError, PolicyAdmin, SignedBundle, VerifiedBundle};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::parked::Wake;
use super::request::{blocking, fail, refuse, Outcome};
use super::Node;
use crate::identity::NodeIdentity;
use crate::intake::REJECTIONS_STAND_MS;
use crate::store::{audit_signature_message, NewApproval, Store, Verdict};

/// The manifest role of policy administrators.
pub const POLICY_ADMIN_ROLE: &str = "policy-admin";

/// The node's policy state: the active bundle, the decisions' turn, and the signals of the
/// keeper of parked requests.
pub struct PolicyGate {
    active: RwLock<Option<Arc<VerifiedBundle>>>,
    /// Serialises activations (check against the active bundle, store, switch).
    activating: Mutex<()>,
    /// Serialises decisions: a velocity limit is read and the request's reservation written
    /// under it, so that two requests decided at once cannot both fit in the same room (and
    /// an initiator's parked requests are counted with the new one).
    pub(super) deciding: tokio::sync::Mutex<()>,
    wakes: mpsc::UnboundedSender<Wake>,
    wakes_to_take: Mutex<Option<mpsc::UnboundedReceiver<Wake>>>,
    /// Until when (ms) the verdict consumer has read every verdict published: the start of
    /// its last fetch that came back empty; 0 before the first.
    verdicts_read: watch::Sender<u64>,
}

impl std::fmt::Debug for PolicyGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyGate")
            .field("active", &self.active().map(|b| b.version()))
            .finish_non_exhaustive()
    }
}

impl PolicyGate {
    /// A gate with `active` (what [`load`] returned).
    pub fn new(active: Option<VerifiedBundle>) -> Self {
        let (wakes, rx) = mpsc::unbounded_channel();
        PolicyGate {
            active: RwLock::new(active.map(Arc::new)),
            activating: Mutex::new(()),
            deciding: tokio::sync::Mutex::new(()),
            wakes,
            wakes_to_take: Mutex::new(Some(rx)),
            verdicts_read: watch::channel(0).0,
        }
    }

    /// Tells the keeper of parked requests that something may have changed for them.
    pub(super) fn wake(&self, wake: Wake) {
        let _ = self.wakes.send(wake);
    }

    /// The keeper's end of [`PolicyGate::wake`] (once).
    pub(super) fn take_wakes(&self) -> Option<mpsc::UnboundedReceiver<Wake>> {
        self.wakes_to_take
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Until when (ms since the Unix epoch) this node has read every verdict published
    /// (0: not yet since it started): a time-locked request runs only once this has passed
    /// its run time, so that a veto sent until then is seen first.
    pub(super) fn verdicts_read_until(&self) -> u64 {
        *self.verdicts_read.borrow()
    }

    /// Follows [`PolicyGate::verdicts_read_until`].
    pub(super) fn watch_verdicts_read(&self) -> watch::Receiver<u64> {
        self.verdicts_read.subscribe()
    }

    /// The verdict consumer read everything published until `at_ms`.
    pub(super) fn set_verdicts_read(&self, at_ms: u64) {
        self.verdicts_read.send_if_modified(|read| {
            let later = at_ms > *read;
            if later {
                *read = at_ms;
            }
            later
        });
    }

    /// The active bundle, if any.
    pub fn active(&self) -> Option<Arc<VerifiedBundle>> {
        self.active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_active(&self, bundle: VerifiedBundle) {
        *self.active.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(bundle));
    }
}

/// The policy administrators of `manifest`: its initiators with [`POLICY_ADMIN_ROLE`].
pub fn policy_admins(manifest: &VerifiedManifest) -> Vec<PolicyAdmin> {
    manifest
        .manifest()
        .initiators
        .iter()
        .filter(|i| i.roles.iter().any(|r| r == POLICY_ADMIN_ROLE))
        .map(|i| PolicyAdmin {
            id: i.id.clone(),
            public_key: i.public_key,
        })
        .collect()
}

/// At start: the stored active bundle, verified again (one that does not verify is an
/// error: the node does not start on a policy it cannot trust), then the bundle file the
/// config names, if any, activated when it is a valid successor. A file that does not parse
/// or verify (tampered, unsigned, under-signed) is an error naming it; an older file than
/// the stored bundle is only a warning (the newer one stays).
///
/// Returns the active bundle and whether it was activated from the file just now (the
/// caller records that in the audit log).
pub fn load(
    store: &Store,
    manifest: &VerifiedManifest,
    file: Option<&Path>,
) -> anyhow::Result<(Option<VerifiedBundle>, bool)> {
    let admins = policy_admins(manifest);
    let cluster = manifest.cluster_id();
    let mut active = match store.active_bundle()? {
        None => None,
        Some(stored) => {
            let verified = SignedBundle::from_toml(&stored.bundle_toml)
                .and_then(|b| b.verify_installed(cluster, &admins))
                .with_context(|| {
                    format!(
                        "the active policy bundle in the store (version {}) does not verify",
                        stored.version
                    )
                })?;
            anyhow::ensure!(
                verified.hash() == stored.hash && verified.version() == stored.version,
                "the active policy bundle in the store does not match its recorded hash"
            );
            Some(verified)
        }
    };
    let mut from_file = false;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the policy bundle {}", path.display()))?;
        // Its own signatures first: a tampered or under-signed file is refused whatever its
        // version (an "older" tampered file must not pass as a mere warning).
        let signed = SignedBundle::from_toml(&text)
            .and_then(|b| b.verify_installed(cluster, &admins).map(|_| b))
            .map_err(|e| {
                anyhow::anyhow!("policy bundle {}: {e}; refusing to load it", path.display())
            })?;
        match signed.verify(cluster, &admins, active.as_ref()) {
            Ok(verified) => {
                store.activate_bundle(verified.version(), &verified.hash(), &text)?;
                tracing::info!(
                    version = verified.version(),
                    hash = %hex::encode(verified.hash()),
                    file = %path.display(),
                    "policy bundle activated from the config"
                );
                active = Some(verified);
                from_file = true;
            }
            Err(BundleError::AlreadyActive) => {}
            Err(BundleError::Older { version, active }) => tracing::warn!(
                file = %path.display(),
                version,
                active,
                "the policy bundle file is older than the active bundle: keeping the active one"
            ),
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "policy bundle {}: {e}; refusing to load it",
                    path.display()
                ))
            }
        }
    }
    Ok((active, from_file))
}

/// The audit entry of a bundle activated from the node's config file at start.
pub fn activated_at_start_entry(bundle: &VerifiedBundle, file: &Path) -> serde_json::Value {
    json!({"outcome": "activated", "from_file": file.display().to_string(),
           "version": bundle.version(), "bundle_hash": hex::encode(bundle.hash()),
           "signers": bundle.signers()})
}

/// How a node signs its audit entries: Ed25519 by its identity key over
/// [`audit_signature_message`] of the entry hash.
pub fn audit_signer(identity: &NodeIdentity) -> impl Fn(&[u8; 32]) -> [u8; 64] + '_ {
    move |hash| {
        identity
            .signing_key()
            .sign(&audit_signature_message(hash))
            .to_bytes()
    }
}

/// Appends an audit entry signed by this node; a failure is logged (and the request goes
/// on only if it was already decided: see the callers).
pub(super) async fn audit(
    node: &Node,
    kind: &'static str,
    request_id: Option<&str>,
    entry: serde_json::Value,
) -> Result<(), String> {
    let (store, identity, request_id) = (
        node.store.clone(),
        node.identity.clone(),
        request_id.map(str::to_owned),
    );
    let written = blocking(move || {
        store.append_audit(
            kind,
            request_id.as_deref(),
            &entry.to_string(),
            &audit_signer(&identity),
        )
    })
    .await;
    match written {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot append to the audit log");
            Err(e.to_string())
        }
        Err((_, _, e)) => Err(e),
    }
}

/// A `policy` request: activate the bundle it carries.
pub(super) async fn activate(node: &Arc<Node>, request: &VerifiedRequest) -> Option<Outcome> {
    let manifest = node.manifest();
    let holds_role = manifest
        .initiator(&request.initiator)
        .is_some_and(|i| i.roles.iter().any(|r| r == POLICY_ADMIN_ROLE));
    if !holds_role {
        return Some(Err(refuse(
            ErrorCode::NotAuthorized,
            format!(
                "initiator '{}' does not hold the role {POLICY_ADMIN_ROLE}",
                request.initiator
            ),
        )));
    }
    let Some(text) = request
        .body
        .payload
        .as_deref()
        .and_then(|p| std::str::from_utf8(p).ok())
        .map(str::to_owned)
    else {
        return Some(Err(refuse(
            ErrorCode::InvalidRequest,
            "the bundle is not UTF-8 text",
        )));
    };
    let (gate_node, admins, cluster) = (
        node.clone(),
        policy_admins(&manifest),
        manifest.cluster_id().to_owned(),
    );
    let activated = blocking(move || {
        let gate = &gate_node.policy;
        let _one = gate
            .activating
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let signed = SignedBundle::from_toml(&text)?;
        let verified = signed.verify(&cluster, &admins, gate.active().as_deref())?;
        gate_node
            .store
            .activate_bundle(verified.version(), &verified.hash(), &text)
            .map_err(|e| BundleError::Parse(format!("cannot store the bundle: {e}")))?;
        gate.set_active(verified.clone());
        Ok::<_, BundleError>(verified)
    })
    .await;
    let verified = match activated {
        Ok(Ok(v)) => v,
        Ok(Err(BundleError::AlreadyActive)) => {
            let active = node.policy.active();
            return Some(Ok(super::request::Done::message(format!(
                "policy bundle version {} is already active",
                active.map_or(0, |a| a.version())
            ))));
        }
        Ok(Err(e)) => {
            let message = format!("policy bundle refused: {e}");
            let _ = audit(
                node,
                "policy",
                Some(&request.body.request_id),
                json!({"request_id": request.body.request_id, "initiator": request.initiator,
                       "outcome": "refused", "reason": message}),
            )
            .await;
            return Some(Err(refuse(ErrorCode::PolicyBundleRefused, message)));
        }
        Err(e) => return Some(Err(e)),
    };
    let message = format!(
        "activated policy bundle version {} ({}), signed by {}",
        verified.version(),
        hex::encode(verified.hash()),
        verified.signers().join(", ")
    );
    tracing::info!(version = verified.version(), "policy bundle activated");
    node.policy.wake(Wake::Bundle);
    let _ = audit(
        node,
        "policy",
        Some(&request.body.request_id),
        json!({"request_id": request.body.request_id, "initiator": request.initiator,
               "outcome": "activated", "version": verified.version(),
               "bundle_hash": hex::encode(verified.hash()), "signers": verified.signers()}),
    )
    .await;
    Some(Ok(super::request::Done::message(message)))
}

/// An `approve` request: record its initiator's approval of a request hash.
pub(super) async fn approve(node: &Arc<Node>, request: &VerifiedRequest) -> Option<Outcome> {
    let Some(hash) = request.body.approves else {
        return Some(Err(refuse(
            ErrorCode::InvalidRequest,
            "approve needs approves",
        )));
    };
    record_verdict(node, request, hash, Verdict::Approve).await
}

/// A `reject` request: record its initiator's rejection of a request hash (a request
/// waiting for the approver's group is then refused: see [`decide`]).
pub(super) async fn reject(node: &Arc<Node>, request: &VerifiedRequest) -> Option<Outcome> {
    let Some(hash) = request.body.rejects else {
        return Some(Err(refuse(
            ErrorCode::InvalidRequest,
            "reject needs rejects",
        )));
    };
    record_verdict(node, request, hash, Verdict::Reject).await
}

/// Records the initiator's verdict on `hash` until the request's own expiry, wakes the
/// requests waiting for approvals, and audits it.
async fn record_verdict(
    node: &Arc<Node>,
    request: &VerifiedRequest,
    hash: [u8; 32],
    verdict: Verdict,
) -> Option<Outcome> {
    let expires = verdict_expiry(verdict, request.body.expires_at_ms);
    let (store, approver, id, evidence) = (
        node.store.clone(),
        request.initiator.clone(),
        request.body.request_id.clone(),
        request.body_bytes.clone(),
    );
    // A verdict taken from the consumer is acknowledged whatever happens: a store that fails
    // for a moment (busy, full) gets a few more tries before the verdict is given up here
    // (a rejection is then recovered from the verdict stream at the node's next start).
    let mut tries = 0;
    let added = loop {
        let (store, approver, id, evidence) = (
            store.clone(),
            approver.clone(),
            id.clone(),
            evidence.clone(),
        );
        let added = blocking(move || {
            store.add_approval(&NewApproval {
                request_hash: hash,
                verdict,
                approver: &approver,
                approval_request_id: &id,
                expires_at_ms: expires,
                signed_request: &evidence,
            })
        })
        .await;
        tries += 1;
        match added {
            Ok(Err(e)) if tries < VERDICT_TRIES => {
                tracing::warn!(error = %e, "cannot record a verdict; trying again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            other => break other,
        }
    };
    match added {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, request = %id, "a verdict could not be recorded: lost at this node (a rejection is recovered from the verdict stream at the next start)");
            return Some(Err(fail(ErrorCode::Internal, e.to_string())));
        }
        Err(e) => return Some(Err(e)),
    }
    node.policy.wake(Wake::Verdict(hash));
    let (what, field) = match verdict {
        Verdict::Approve => ("approval", "approves"),
        Verdict::Reject => ("rejection", "rejects"),
    };
    let mut entry = json!({"approver": request.initiator, "verdict": verdict.as_str(),
                           "expires_at_ms": expires});
    entry[field] = json!(hex::encode(hash));
    let _ = audit(node, "approval", Some(&request.body.request_id), entry).await;
    Some(Ok(super::request::Done::message(format!(
        "{what} by '{}' of request {} recorded, valid until {expires} ms",
        request.initiator,
        hex::encode(hash),
    ))))
}

/// How many times a verdict is tried into the store.
const VERDICT_TRIES: u32 = 3;

/// Until when a verdict counts: an approval until its request's expiry; a rejection for as
/// long as what it rejects could still be carried out.
fn verdict_expiry(verdict: Verdict, expires_at_ms: u64) -> u64 {
    match verdict {
        Verdict::Approve => expires_at_ms,
        Verdict::Reject => expires_at_ms
            .max(keyrack_client::now_ms())
            .saturating_add(REJECTIONS_STAND_MS),
    }
}

/// At start, before anything held is carried on: every rejection the verdict stream still
/// holds of a request this node holds, recorded if this node lacks it (it was restored from
/// an older copy of its store, or a recording failed). Each is verified under the current
/// manifest, as at intake. Returns how many were new here.
pub(super) async fn recover_rejections(node: &Arc<Node>) -> Result<usize, String> {
    let store = node.store.clone();
    let held: std::collections::BTreeSet<[u8; 32]> =
        blocking(move || store.parked_due().map_err(|e| e.to_string()))
            .await
            .map_err(|(_, _, e)| e)??
            .into_iter()
            .map(|p| p.request_hash)
            .collect();
    if held.is_empty() {
        return Ok(0);
    }
    let (there, mut history) = node
        .bus
        .verdict_history(keyrack_client::request::RequestKind::Reject.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let manifest = node.manifest();
    let mut recovered = 0;
    for _ in 0..there {
        use futures::StreamExt as _;
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), history.next())
            .await
            .map_err(|_| "the verdict stream stopped delivering its history".to_owned())?;
        let Some(message) = next else {
            break;
        };
        let message = message.map_err(|e| e.to_string())?;
        let Ok(request) =
            SignedRequest::parse(&message.payload).and_then(|r| r.verify_with(&manifest))
        else {
            continue;
        };
        let Some(hash) = request.body.rejects.filter(|h| held.contains(h)) else {
            continue;
        };
        let (store, expires) = (
            node.store.clone(),
            verdict_expiry(Verdict::Reject, request.body.expires_at_ms),
        );
        let (approver, id, evidence) = (
            request.initiator.clone(),
            request.body.request_id.clone(),
            request.body_bytes.clone(),
        );
        let added = blocking(move || {
            store.add_approval(&NewApproval {
                request_hash: hash,
                verdict: Verdict::Reject,
                approver: &approver,
                approval_request_id: &id,
                expires_at_ms: expires,
                signed_request: &evidence,
            })
        })
        .await
        .map_err(|(_, _, e)| e)?
        .map_err(|e| e.to_string())?;
        if added {
            recovered += 1;
            let entry = json!({"approver": request.initiator, "verdict": "reject",
                               "rejects": hex::encode(hash), "expires_at_ms": expires,
                               "recovered": "from the verdict stream at start"});
            let _ = audit(node, "approval", Some(&request.body.request_id), entry).await;
        }
    }
    Ok(recovered)
}
