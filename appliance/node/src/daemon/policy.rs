//! Policy at one node: the active bundle, its activation, approvals, and the decision on a
//! sign request — every node decides for itself, so the signing threshold is also a policy
//! quorum.
//!
//! - **Bundles.** The policy administrators are the manifest's initiators holding the role
//!   [`POLICY_ADMIN_ROLE`]. A bundle is activated by a `policy` request (any
//!   policy-admin may carry it; the bundle's own signatures are what count) or, at start, from
//!   the file the node config names; either way the node checks the signatures and that it
//!   succeeds the active one ([`keyrack_policy::SignedBundle::verify`]). At start the stored
//!   bundle is verified again; one that does not verify stops the node.
//! - **Approvals.** An `approve` request records its initiator's approval of a request hash at
//!   every node until the approve request's own expiry, a `reject` request its rejection (which
//!   replaces the approver's approval and is never replaced by one); a sign request waiting for
//!   approvals re-evaluates each time one is recorded. Only approvals count towards a quorum.
//! - **Decision.** [`decide`] evaluates a sign request on the active policy with the approvals
//!   and the velocity ledger in the store. Allow: the request's ledger entries are
//!   reserved (released if the signing fails, committed when it ends or when this node stands
//!   down). Needs approvals: the node says so (a `pending` result) and waits, at most until
//!   the request expires; an unexpired rejection by a member of the approver group waited for
//!   (not the initiator) refuses it at once, `approval_rejected`. Deny, or no active bundle:
//!   refused `policy_denied`, naming the rule. Every decision and outcome goes to the audit log.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use ed25519_dalek::Signer as _;
use keyrack_client::codes::ErrorCode;
use keyrack_client::manifest::VerifiedManifest;
use keyrack_client::request::VerifiedRequest;
use keyrack_client::result::{ResultBody, Status};
use keyrack_plugin::Intent;
use keyrack_policy::{
    ledger_entries, Approval, BundleError, Decision, Outcome as PolicyOutcome, PolicyAdmin,
    Request as PolicyRequest, SignedBundle, VerifiedBundle,
};
use serde_json::json;
use tokio::sync::watch;

use super::request::{blocking, fail, refuse, Outcome};
use super::Node;
use crate::identity::NodeIdentity;
use crate::store::{audit_signature_message, NewApproval, Store, VelocityEntry, Verdict};

/// The manifest role of policy administrators.
pub const POLICY_ADMIN_ROLE: &str = "policy-admin";

/// The node's policy state: the active bundle and a signal for new approvals.
pub struct PolicyGate {
    active: RwLock<Option<Arc<VerifiedBundle>>>,
    /// Serialises activations (check against the active bundle, store, switch).
    activating: Mutex<()>,
    /// Serialises decisions: a velocity limit is read and the request's reservation written
    /// under it, so that two requests decided at once cannot both fit in the same room.
    deciding: tokio::sync::Mutex<()>,
    approvals: watch::Sender<u64>,
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
        PolicyGate {
            active: RwLock::new(active.map(Arc::new)),
            activating: Mutex::new(()),
            deciding: tokio::sync::Mutex::new(()),
            approvals: watch::channel(0).0,
        }
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

    fn approval_recorded(&self) {
        self.approvals.send_modify(|n| *n = n.wrapping_add(1));
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
    let (store, approver, id, expires, evidence) = (
        node.store.clone(),
        request.initiator.clone(),
        request.body.request_id.clone(),
        request.body.expires_at_ms,
        request.body_bytes.clone(),
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
    match added {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Some(Err(fail(ErrorCode::Internal, e.to_string()))),
        Err(e) => return Some(Err(e)),
    }
    node.policy.approval_recorded();
    let (what, field) = match verdict {
        Verdict::Approve => ("approval", "approves"),
        Verdict::Reject => ("rejection", "rejects"),
    };
    let mut entry = json!({"approver": request.initiator, "verdict": verdict.as_str(),
                           "expires_at_ms": request.body.expires_at_ms});
    entry[field] = json!(hex::encode(hash));
    let _ = audit(node, "approval", Some(&request.body.request_id), entry).await;
    Some(Ok(super::request::Done::message(format!(
        "{what} by '{}' of request {} recorded, valid until {} ms",
        request.initiator,
        hex::encode(hash),
        request.body.expires_at_ms
    ))))
}

/// What a sign request asks, as policy reads it.
#[derive(Clone, Debug)]
pub(super) struct SignFacts {
    /// The key's scheme id.
    pub scheme: &'static str,
    /// Whether a raw digest is asked.
    pub raw_digest: bool,
    /// The decoded intent (chain payloads).
    pub intent: Option<Intent>,
}

/// A sign request the policy allowed: its reservation in the velocity ledger is held until
/// [`Allowed::settle`].
#[derive(Debug)]
pub(super) struct Allowed {
    request_id: String,
    /// The bundle version decided on.
    pub bundle_version: u64,
}

impl Allowed {
    /// Ends the reservation: `signed` commits it, otherwise it is released.
    pub async fn settle(self, node: &Node, signed: bool) {
        let (store, id) = (node.store.clone(), self.request_id);
        let done = blocking(move || {
            if signed {
                store.commit_reservation(&id).map(|_| ())
            } else {
                store.release_reservation(&id).map(|_| ())
            }
        })
        .await;
        if let Ok(Err(e)) = done {
            tracing::error!(error = %e, "cannot settle a velocity reservation");
        }
    }
}

/// Decides on a sign request (see the module docs); waits for approvals if the policy asks
/// for them, at most until the request expires.
pub(super) async fn decide(
    node: &Arc<Node>,
    request: &VerifiedRequest,
    facts: &SignFacts,
) -> Result<Allowed, (Status, ErrorCode, String)> {
    let mut approvals = node.policy.approvals.subscribe();
    let mut waiting = false;
    loop {
        let Some(bundle) = node.policy.active() else {
            let reason = "no policy bundle is active at this node (default deny): activate one \
                          with `keyrack policy activate`";
            let _ = audit(
                node,
                "decision",
                Some(&request.body.request_id),
                decision_entry(request, facts, None, None, "deny (no active policy bundle)"),
            )
            .await;
            return Err(refuse(ErrorCode::PolicyDenied, reason));
        };
        approvals.borrow_and_update();
        node.telemetry.live.phase("deciding");
        // Held until this round's outcome is recorded (and released before any wait).
        let turn = node.policy.deciding.lock().await;
        let Evaluated {
            decision,
            entries,
            at_ms,
            rejections,
        } = evaluate(node, request, facts, &bundle).await?;
        match &decision.outcome {
            PolicyOutcome::Allow { .. } => {
                let reserved = reserve(node, &request.body.request_id, at_ms, entries).await;
                let entry = decision_entry(request, facts, Some(&bundle), Some(&decision), "allow");
                if waiting {
                    remove_pending(node, &request.body.request_id).await;
                }
                if let Err(e) = reserved {
                    return Err(fail(ErrorCode::Internal, format!("velocity ledger: {e}")));
                }
                let allowed = Allowed {
                    request_id: request.body.request_id.clone(),
                    bundle_version: bundle.version(),
                };
                // No share leaves without its decision on record.
                if let Err(e) = audit(node, "decision", Some(&request.body.request_id), entry).await
                {
                    allowed.settle(node, false).await;
                    return Err(fail(ErrorCode::Internal, format!("audit log: {e}")));
                }
                return Ok(allowed);
            }
            PolicyOutcome::Deny { reason, .. } => {
                if waiting {
                    remove_pending(node, &request.body.request_id).await;
                }
                let _ = audit(
                    node,
                    "decision",
                    Some(&request.body.request_id),
                    decision_entry(request, facts, Some(&bundle), Some(&decision), "deny"),
                )
                .await;
                return Err(refuse(ErrorCode::PolicyDenied, reason.clone()));
            }
            PolicyOutcome::NeedsApprovals {
                rule,
                group,
                required,
                have,
            } => {
                if let Some(by) = rejected_by(&bundle, group, &request.initiator, &rejections) {
                    drop(turn);
                    if waiting {
                        remove_pending(node, &request.body.request_id).await;
                    }
                    let outcome =
                        format!("rejected by '{by}' of approver group '{group}' (rule '{rule}')");
                    let _ = audit(
                        node,
                        "decision",
                        Some(&request.body.request_id),
                        decision_entry(request, facts, Some(&bundle), Some(&decision), &outcome),
                    )
                    .await;
                    return Err(refuse(
                        ErrorCode::ApprovalRejected,
                        format!(
                            "approver '{by}' of group '{group}' rejected the request (rule \
                             '{rule}' needed {required} approvals of the group)"
                        ),
                    ));
                }
                let message = format!(
                    "waiting for approvals: rule '{rule}' needs {required} of group '{group}' \
                     (have {}: {}); approve request hash {}",
                    have.len(),
                    if have.is_empty() {
                        "none".to_owned()
                    } else {
                        have.join(", ")
                    },
                    hex::encode(request.hash())
                );
                drop(turn);
                node.telemetry.live.phase("waiting for approvals");
                if !waiting {
                    waiting = true;
                    announce_pending(node, request, facts, &decision, &message).await;
                }
                let now = keyrack_client::now_ms();
                let left = request.body.expires_at_ms.saturating_sub(now);
                let expired = tokio::select! {
                    changed = approvals.changed() => changed.is_err(),
                    () = tokio::time::sleep(Duration::from_millis(left)) => true,
                };
                if expired {
                    remove_pending(node, &request.body.request_id).await;
                    let _ = audit(
                        node,
                        "decision",
                        Some(&request.body.request_id),
                        decision_entry(
                            request,
                            facts,
                            Some(&bundle),
                            Some(&decision),
                            "expired waiting for approvals",
                        ),
                    )
                    .await;
                    return Err(refuse(
                        ErrorCode::ApprovalsRequired,
                        format!("the request expired {message}"),
                    ));
                }
            }
        }
    }
}

/// One evaluation, off the runtime: the decision, and the ledger entries the request
/// records if it is allowed (at the instant it was evaluated).
struct Evaluated {
    decision: Decision,
    entries: Vec<VelocityEntry>,
    at_ms: u64,
    /// Who rejected the request (unexpired rejections), by approver.
    rejections: Vec<String>,
}

/// The approver whose rejection refuses a request waiting for `group`: a member of the
/// group in the active bundle who is not the request's initiator (anyone else's rejection
/// is ignored, as their approval would be).
fn rejected_by<'a>(
    bundle: &VerifiedBundle,
    group: &str,
    initiator: &str,
    rejections: &'a [String],
) -> Option<&'a str> {
    let members = bundle.policy().approver_group(group).unwrap_or(&[]);
    rejections
        .iter()
        .find(|by| by.as_str() != initiator && members.contains(by))
        .map(String::as_str)
}

async fn evaluate(
    node: &Arc<Node>,
    request: &VerifiedRequest,
    facts: &SignFacts,
    bundle: &Arc<VerifiedBundle>,
) -> Result<Evaluated, (Status, ErrorCode, String)> {
    let (store, bundle, facts, body, initiator, hash) = (
        node.store.clone(),
        bundle.clone(),
        facts.clone(),
        request.body.clone(),
        request.initiator.clone(),
        request.hash(),
    );
    let roles = node
        .manifest()
        .initiator(&initiator)
        .map(|i| i.roles.clone())
        .unwrap_or_default();
    blocking(move || {
        let now_ms = keyrack_client::now_ms();
        // Only approves count towards a quorum; rejections are [`decide`]'s.
        let (approves, rejects): (Vec<_>, Vec<_>) = store
            .approvals_for(&hash, now_ms)
            .map_err(|e| fail(ErrorCode::Internal, format!("approvals: {e}")))?
            .into_iter()
            .partition(|a| a.verdict == Verdict::Approve);
        let approvals: Vec<Approval> = approves
            .into_iter()
            .map(|a| Approval {
                approver: a.approver,
                request_hash: a.request_hash,
                expires_at_ms: a.expires_at_ms,
            })
            .collect();
        let req = PolicyRequest {
            request_hash: hash,
            initiator: &initiator,
            roles: &roles,
            key_id: &body.key_id,
            scheme: facts.scheme,
            derivation_path: &body.derivation_path,
            raw_digest: facts.raw_digest,
            intent: facts.intent.as_ref(),
            now_ms,
        };
        Ok(Evaluated {
            decision: bundle.policy().evaluate(&req, &approvals, store.as_ref()),
            entries: ledger_entries(&req),
            at_ms: now_ms,
            rejections: rejects.into_iter().map(|a| a.approver).collect(),
        })
    })
    .await?
}

/// Records an allowed request's ledger entries as reserved.
async fn reserve(
    node: &Node,
    request_id: &str,
    at_ms: u64,
    entries: Vec<VelocityEntry>,
) -> Result<(), String> {
    let (store, id) = (node.store.clone(), request_id.to_owned());
    blocking(move || store.reserve(&id, at_ms, &entries))
        .await
        .map_err(|(_, _, e)| e)?
        .map_err(|e| e.to_string())
}

/// Tells the client the request waits for approvals (a `pending` result under its own
/// de-duplication id, so the final result still goes out) and lists it in the store's
/// approval queue.
async fn announce_pending(
    node: &Arc<Node>,
    request: &VerifiedRequest,
    facts: &SignFacts,
    decision: &Decision,
    message: &str,
) {
    let summary = json!({
        "request_id": request.body.request_id,
        "initiator": request.initiator,
        "key_id": request.body.key_id,
        "scheme": facts.scheme,
        "chain": request.body.chain,
        "intent": facts.intent,
        "decision": decision,
        // For approvers to check what they sign (see keyrack_client::api::WaitingRequest).
        "request": String::from_utf8_lossy(&request.to_json()),
    })
    .to_string();
    let (store, id, hash, expires) = (
        node.store.clone(),
        request.body.request_id.clone(),
        request.hash(),
        request.body.expires_at_ms,
    );
    if let Ok(Err(e)) = blocking(move || store.add_pending(&id, &hash, expires, &summary)).await {
        tracing::error!(error = %e, "cannot record a request waiting for approvals");
    }
    let body = ResultBody {
        version: 1,
        request_id: request.body.request_id.clone(),
        request_hash: request.hash(),
        node_id: node.identity.node_id().to_owned(),
        client_id: request.body.client_id.clone(),
        status: Status::Pending,
        code: Some(ErrorCode::ApprovalsRequired),
        message: message.to_owned(),
        keys: vec![],
        signature: None,
        signatures: vec![],
        signed_payload: None,
        at_ms: keyrack_client::now_ms(),
    };
    let Ok(signed) = body.sign(node.identity.signing_key()) else {
        return tracing::error!("cannot sign a pending notice");
    };
    let published = node
        .bus
        .publish_refusal(
            &request.body.client_id,
            &request.body.request_id,
            node.identity.node_id(),
            ErrorCode::ApprovalsRequired,
            signed.to_json(),
        )
        .await;
    if let Err(e) = published {
        tracing::warn!(error = %e, "cannot publish a pending notice");
    }
}

async fn remove_pending(node: &Node, request_id: &str) {
    let (store, id) = (node.store.clone(), request_id.to_owned());
    if let Ok(Err(e)) = blocking(move || store.remove_pending(&id)).await {
        tracing::error!(error = %e, "cannot remove a request from the approval queue");
    }
}

/// The audit entry of a decision.
fn decision_entry(
    request: &VerifiedRequest,
    facts: &SignFacts,
    bundle: Option<&VerifiedBundle>,
    decision: Option<&Decision>,
    outcome: &str,
) -> serde_json::Value {
    json!({
        "request_id": request.body.request_id,
        "request_hash": hex::encode(request.hash()),
        "initiator": request.initiator,
        "key_id": request.body.key_id,
        "scheme": facts.scheme,
        "chain": request.body.chain,
        "payload_kind": request.body.payload_kind.map(|k| k.as_str()),
        "derivation_path": request.body.derivation_path,
        "raw_digest": facts.raw_digest,
        "intent": facts.intent,
        "bundle": bundle.map(|b| json!({"version": b.version(), "hash": hex::encode(b.hash())})),
        "decision": decision,
        "outcome": outcome,
    })
}
