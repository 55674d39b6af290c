//! The policy gate: every governed request — keygen, sign, reshare, refresh, delete, status —
//! passes it at every node before the node takes any part in it, so that the signing
//! threshold is also a policy quorum for creating, moving and destroying keys.
//!
//! [`decide`] evaluates the request on the active bundle with what this node knows of it
//! ([`Facts`]: a sign request's decoded payload; a lifecycle request's thresholds and
//! committees, the current ones from this node's own store, never a peer's word), the
//! approvals in the store, and (sign) the velocity ledger:
//!
//! - **deny** (or no active bundle): refused `policy_denied`, naming the rule;
//! - **needs approvals**: the request is *parked* in the store ([`crate::store::Store::park`])
//!   with its signed wire form, a `pending` notice goes to the client, and the node's
//!   handling ends there — it holds no capacity and its JetStream message is acknowledged.
//!   [`super::parked`] looks at it again when a verdict about it arrives, when the bundle
//!   changes, and when it expires (refused `approvals_required`);
//! - **allow with a delay** (an approval rule's `delay`): once the approvals are met the
//!   request is parked *time-locked* until the delay has passed (a `pending` notice with
//!   code `time_locked` says when), then carried out. The delay runs from when the
//!   approvals were given as their approvers signed them (the latest counted approve
//!   request's `created_at_ms`, within the request's creation and now), so every node runs
//!   it at the same time; and it runs only once this node has read every verdict published
//!   until its run time (a veto may be queued, or this node was away);
//! - **allow**: (sign) its ledger entries are reserved, the decision is audited, and the
//!   caller carries it out.
//!
//! A rejection by a member of the group of any approval rule the request matches (or
//! matched while it was held), other than its initiator, refuses it (`approval_rejected`)
//! while it waits for approvals or for its delay: a veto. A request id names one request:
//! another request under the id of one held here is refused and takes nothing of it. Each node keeps at most `max_waiting_per_initiator` requests parked per
//! initiator and refuses more (`too_many_waiting`). Every decision — allow, deny, waiting,
//! time-locked, rejected, vetoed, expired, too many — and every outcome goes to the node's
//! audit log, with the rule trace.
//!
//! What it never does: act on a peer's claim (everything it reads is the request, its own
//! store and its own clock), or let anything happen before its decision is in the audit log.

use std::sync::Arc;

use keyrack_client::codes::ErrorCode;
use keyrack_client::request::{RequestBody, RequestKind, VerifiedRequest};
use keyrack_client::result::{ResultBody, Status};
use keyrack_plugin::Intent;
use keyrack_policy::{
    ledger_entries, Approval, Committee, Decision, Lifecycle, Operation, Outcome as PolicyOutcome,
    Request as PolicyRequest, VerifiedBundle,
};
use serde_json::json;

use super::parked::Wake;
use super::policy::audit;
use super::request::{blocking, fail, refuse, Done, Outcome};
use super::Node;
use crate::store::{
    Parked, ParkedRequest, ParkedState, StoreError, VelocityEntry, Verdict, VetoGroup,
};

/// A refusal, a failure, or (status `pending`) a request parked by the gate.
pub(super) type Stop = (Status, ErrorCode, String);

/// What a request asks, as the policy reads it.
#[derive(Clone, Debug)]
pub(super) struct Facts {
    /// The kind.
    pub operation: Operation,
    /// The schemes named (sign: exactly one).
    pub schemes: Vec<String>,
    /// sign: a raw digest.
    pub raw_digest: bool,
    /// sign: the decoded intent of a chain payload.
    pub intent: Option<Intent>,
    /// keygen, reshare: the threshold asked (`None`: a reshare keeps it).
    pub new_threshold: Option<u16>,
    /// keygen, reshare: the committee size asked (`None`: a reshare keeps it).
    pub new_committee: Option<u16>,
    /// reshare, refresh: the key's threshold and committee size in this node's store, per
    /// scheme it holds READY.
    pub current: Vec<Committee>,
    /// keygen: may re-create a deleted key id.
    pub reuse_deleted_id: bool,
}

impl Facts {
    /// The facts every kind has: its operation and schemes (the kind's own go on top).
    pub fn of(request: &VerifiedRequest) -> Option<Self> {
        let operation = match request.body.kind {
            RequestKind::Keygen => Operation::Keygen,
            RequestKind::Sign => Operation::Sign,
            RequestKind::Reshare => Operation::Reshare,
            RequestKind::Refresh => Operation::Refresh,
            RequestKind::Delete => Operation::Delete,
            RequestKind::Status => Operation::Status,
            RequestKind::Approve | RequestKind::Reject | RequestKind::Policy => return None,
        };
        Some(Facts {
            operation,
            schemes: request
                .body
                .schemes
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            raw_digest: false,
            intent: None,
            new_threshold: None,
            new_committee: None,
            current: vec![],
            reuse_deleted_id: false,
        })
    }
}

/// A request the policy allowed: (sign) its reservation in the velocity ledger is held
/// until [`Allowed::settle`].
#[derive(Debug)]
pub(super) struct Allowed {
    request_id: String,
    /// The bundle version decided on.
    pub bundle_version: u64,
    reserved: bool,
}

impl Allowed {
    /// Ends the reservation, if any: `spent` commits it, otherwise it is released.
    pub async fn settle(self, node: &Node, spent: bool) {
        if !self.reserved {
            return;
        }
        let (store, id) = (node.store.clone(), self.request_id);
        let done = blocking(move || {
            if spent {
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

/// Decides on a governed request (see the module docs). `Err` with status `pending` means
/// the request is parked (its notice published); the caller publishes nothing more.
pub(super) async fn decide(
    node: &Arc<Node>,
    request: &VerifiedRequest,
    facts: &Facts,
) -> Result<Allowed, Stop> {
    let id = &request.body.request_id;
    let hash = request.hash();
    let Some(bundle) = node.policy.active() else {
        let record = decision_entry(request, facts, None, None, "deny (no active policy bundle)");
        let _ = audit(node, "decision", Some(id), record).await;
        return Err(refuse(
            ErrorCode::PolicyDenied,
            "no policy bundle is active at this node (default deny): activate one with \
             `keyrack policy activate`",
        ));
    };
    node.telemetry.live.phase("deciding");
    // One decision at a time: a velocity limit is read and the request's reservation
    // written under it, and the per-initiator count of parked requests with the new one.
    let turn = node.policy.deciding.lock().await;
    let (store, rid) = (node.store.clone(), id.clone());
    let parked = match blocking(move || store.parked(&rid)).await? {
        Ok(p) => p,
        Err(e) => return Err(fail(ErrorCode::Internal, format!("parked requests: {e}"))),
    };
    // A request id names one request: another request under the id of one held here takes
    // nothing of it (its approvals, its time lock), and does not touch it.
    if let Some(held) = parked.as_ref().filter(|p| p.request_hash != hash) {
        drop(turn);
        let why = format!(
            "request id {id} names another request this node holds (hash {}): a request id \
             names one request",
            hex::encode(held.request_hash)
        );
        let record = decision_entry(
            request,
            facts,
            Some(&bundle),
            None,
            &format!("refused: {why}"),
        );
        let _ = audit(node, "decision", Some(id), record).await;
        return Err(refuse(ErrorCode::InvalidRequest, why));
    }
    let ev = evaluate(node, request, facts, &bundle, parked.as_ref()).await?;
    let entry =
        |outcome: &str| decision_entry(request, facts, Some(&bundle), Some(&ev.decision), outcome);
    let locked = parked
        .as_ref()
        .is_some_and(|p| matches!(p.state, ParkedState::Locked { .. }));
    // Who may stop it: the approver groups of the approval rules it matches now, and of
    // those it matched while it was held (a rejection stands even if a later decision
    // needs no approval).
    let mut vetoes = veto_groups(&ev.decision);
    for v in parked.iter().flat_map(|p| &p.veto_groups) {
        if !vetoes.contains(v) {
            vetoes.push(v.clone());
        }
    }
    if let Some((by, veto)) = rejected_by(&bundle, &vetoes, &request.initiator, &ev.rejections) {
        drop(turn);
        let what = if locked {
            "vetoed during its delay"
        } else {
            "rejected"
        };
        let VetoGroup {
            group,
            rule,
            required,
        } = veto.clone();
        let outcome = format!("{what} by '{by}' of approver group '{group}' (rule '{rule}')");
        let approvals = if required == 1 {
            "approval"
        } else {
            "approvals"
        };
        let why = if locked {
            format!(
                "approver '{by}' of group '{group}' vetoed the request during its delay (rule \
                 '{rule}' had approved it)"
            )
        } else {
            format!(
                "approver '{by}' of group '{group}' rejected the request (rule '{rule}' needed \
                 {required} {approvals} of the group)"
            )
        };
        return end(
            node,
            id,
            &hash,
            entry(&outcome),
            refuse(ErrorCode::ApprovalRejected, why),
        )
        .await;
    }
    match &ev.decision.outcome {
        PolicyOutcome::Deny { reason, .. } => {
            drop(turn);
            let stop = refuse(ErrorCode::PolicyDenied, reason.clone());
            end(node, id, &hash, entry("deny"), stop).await
        }
        PolicyOutcome::NeedsApprovals {
            rule,
            group,
            required,
            have,
        } => {
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
            if ev.at_ms >= request.body.expires_at_ms {
                drop(turn);
                let stop = refuse(
                    ErrorCode::ApprovalsRequired,
                    format!("the request expired {message}"),
                );
                return end(node, id, &hash, entry(EXPIRED), stop).await;
            }
            let parked = park(
                node,
                request,
                facts,
                &ev.decision,
                ParkedState::Waiting,
                vec![],
                vetoes,
            )
            .await;
            drop(turn);
            after_park(
                node,
                request,
                parked,
                ErrorCode::ApprovalsRequired,
                message,
                &entry,
                "waiting for approvals",
            )
            .await
        }
        PolicyOutcome::Allow { delay, .. } => {
            // Approvals must be met before the request expires; once time-locked, its delay
            // runs on past that.
            if parked.is_some() && !locked && ev.at_ms >= request.body.expires_at_ms {
                drop(turn);
                let stop = refuse(
                    ErrorCode::ApprovalsRequired,
                    "the request expired before its approvals were met",
                );
                return end(node, id, &hash, entry(EXPIRED), stop).await;
            }
            if let Some(delay) = delay {
                let locked_at_ms = match parked.as_ref().map(|p| p.state) {
                    Some(ParkedState::Locked { locked_at_ms, .. }) => locked_at_ms,
                    // When the approvals were given, as their approvers signed it (the same
                    // at every node), not when this node happened to read them.
                    _ => ev
                        .approved_at_ms
                        .max(request.body.created_at_ms)
                        .min(ev.at_ms),
                };
                let run_at_ms = locked_at_ms.saturating_add(delay.delay.ms);
                // Due, and yet this node has not read every verdict sent until then (it was
                // down, NATS is away, or verdicts are queued): it waits, held — a veto may
                // be among them.
                let unread = node.policy.verdicts_read_until() < run_at_ms;
                if ev.at_ms < run_at_ms || unread {
                    let groups: Vec<&str> = vetoes.iter().map(|v| v.group.as_str()).collect();
                    let message = format!(
                        "approved; time-locked by rule '{}' ({}): carried out at {} ({run_at_ms} \
                         ms) unless an approver of {} vetoes it (rejects request hash {})",
                        delay.rule,
                        delay.delay.window,
                        utc(run_at_ms),
                        groups.join(", "),
                        hex::encode(hash)
                    );
                    let state = ParkedState::Locked {
                        locked_at_ms,
                        run_at_ms,
                    };
                    let parked = park(
                        node,
                        request,
                        facts,
                        &ev.decision,
                        state,
                        ev.approvers.clone(),
                        vetoes,
                    )
                    .await;
                    drop(turn);
                    return after_park(
                        node,
                        request,
                        parked,
                        ErrorCode::TimeLocked,
                        message,
                        &entry,
                        &format!("approved; time-locked until {}", utc(run_at_ms)),
                    )
                    .await;
                }
            }
            // Carried out now: (sign) reserve, leave the parked ones, then audit — nothing
            // happens without its decision on record.
            let reserved = if facts.operation == Operation::Sign {
                let (store, rid, at, entries) =
                    (node.store.clone(), id.clone(), ev.at_ms, ev.entries);
                match blocking(move || store.reserve(&rid, at, &entries)).await? {
                    Ok(()) => true,
                    Err(e) => {
                        return Err(fail(ErrorCode::Internal, format!("velocity ledger: {e}")))
                    }
                }
            } else {
                false
            };
            drop(turn);
            if parked.is_some() {
                unpark(node, id, &hash).await;
            }
            let allowed = Allowed {
                request_id: id.clone(),
                bundle_version: bundle.version(),
                reserved,
            };
            if let Err(e) = audit(node, "decision", Some(id), entry("allow")).await {
                allowed.settle(node, false).await;
                return Err(fail(ErrorCode::Internal, format!("audit log: {e}")));
            }
            Ok(allowed)
        }
    }
}

/// The audit outcome of a request that expired before its approvals were met.
const EXPIRED: &str = "expired waiting for approvals";

/// Ends a request at this node on a refusal: held no more, the decision (`record`) in the
/// audit log, `stop` returned.
async fn end(
    node: &Node,
    request_id: &str,
    hash: &[u8; 32],
    record: serde_json::Value,
    stop: Stop,
) -> Result<Allowed, Stop> {
    unpark(node, request_id, hash).await;
    let _ = audit(node, "decision", Some(request_id), record).await;
    Err(stop)
}

/// What to say and record once a request is parked (or could not be): a new or changed
/// record gets a `pending` notice and an audit entry (and the keeper looks at it at once, in
/// case a verdict came while it was decided); an unchanged one gets nothing new.
async fn after_park(
    node: &Arc<Node>,
    request: &VerifiedRequest,
    parked: Result<Parked, Stop>,
    code: ErrorCode,
    message: String,
    entry: &(dyn Fn(&str) -> serde_json::Value + Sync),
    audited: &str,
) -> Result<Allowed, Stop> {
    let id = &request.body.request_id;
    match parked {
        Ok(Parked::Unchanged) => {}
        Ok(Parked::New | Parked::Changed) => {
            let _ = audit(node, "decision", Some(id), entry(audited)).await;
            announce(node, request, code, &message).await;
            node.policy.wake(Wake::Parked(id.clone()));
        }
        Err((status, ErrorCode::TooManyWaiting, why)) => {
            let _ = audit(
                node,
                "decision",
                Some(id),
                entry(&format!("refused: {why}")),
            )
            .await;
            return Err((status, ErrorCode::TooManyWaiting, why));
        }
        Err(e) => return Err(e),
    }
    node.telemetry.live.phase(match code {
        ErrorCode::TimeLocked => "time-locked",
        _ => "waiting for approvals",
    });
    Err((Status::Pending, code, message))
}

/// One evaluation, off the runtime.
struct Evaluated {
    decision: Decision,
    /// (sign) The ledger entries the request records if it is allowed now.
    entries: Vec<VelocityEntry>,
    at_ms: u64,
    /// Who rejected the request, by approver.
    rejections: Vec<String>,
    /// The approvers the matched approval rules counted.
    approvers: Vec<String>,
    /// When the last of them approved, as their signed approve requests say (0: unknown).
    approved_at_ms: u64,
}

/// The approver groups of the approval rules `decision` matched, with their rules.
fn veto_groups(decision: &Decision) -> Vec<VetoGroup> {
    decision
        .trace
        .iter()
        .filter(|t| t.matched)
        .filter_map(|t| {
            t.approvals.as_ref().map(|a| VetoGroup {
                group: a.group.clone(),
                rule: t.rule.clone(),
                required: a.required,
            })
        })
        .collect()
}

/// The rejection that stops a request, and the group it counts for: by a member of one of
/// `groups` other than the initiator. Anyone else's rejection is ignored, as their approval
/// would be.
fn rejected_by<'a>(
    bundle: &VerifiedBundle,
    groups: &'a [VetoGroup],
    initiator: &str,
    rejections: &[String],
) -> Option<(String, &'a VetoGroup)> {
    rejections
        .iter()
        .filter(|by| by.as_str() != initiator)
        .find_map(|by| {
            groups
                .iter()
                .find(|g| {
                    bundle
                        .policy()
                        .approver_group(&g.group)
                        .is_some_and(|members| members.contains(by))
                })
                .map(|g| (by.clone(), g))
        })
}

async fn evaluate(
    node: &Arc<Node>,
    request: &VerifiedRequest,
    facts: &Facts,
    bundle: &Arc<VerifiedBundle>,
    parked: Option<&ParkedRequest>,
) -> Result<Evaluated, Stop> {
    let (store, bundle, facts, body, initiator, hash) = (
        node.store.clone(),
        bundle.clone(),
        facts.clone(),
        request.body.clone(),
        request.initiator.clone(),
        request.hash(),
    );
    // A time-locked request keeps the approvals that unlocked it, after they expire.
    let kept: Vec<String> = parked.map(|p| p.approvers.clone()).unwrap_or_default();
    let roles = node
        .manifest()
        .initiator(&initiator)
        .map(|i| i.roles.clone())
        .unwrap_or_default();
    blocking(move || {
        let now_ms = keyrack_client::now_ms();
        let (approves, rejects): (Vec<_>, Vec<_>) = store
            .approvals_for(&hash, now_ms)
            .map_err(|e| fail(ErrorCode::Internal, format!("approvals: {e}")))?
            .into_iter()
            .partition(|a| a.verdict == Verdict::Approve);
        // When each approver signed their approval (the evidence is the approve request's
        // signed body).
        let signed_at: Vec<(String, u64)> = approves
            .iter()
            .filter_map(|a| {
                RequestBody::parse(&a.signed_request)
                    .ok()
                    .map(|b| (a.approver.clone(), b.created_at_ms))
            })
            .collect();
        let mut approvals: Vec<Approval> = approves
            .into_iter()
            .map(|a| Approval {
                approver: a.approver,
                request_hash: a.request_hash,
                expires_at_ms: a.expires_at_ms,
            })
            .collect();
        approvals.extend(kept.into_iter().map(|approver| Approval {
            approver,
            request_hash: hash,
            expires_at_ms: u64::MAX,
        }));
        let req = PolicyRequest {
            operation: facts.operation,
            request_hash: hash,
            initiator: &initiator,
            roles: &roles,
            key_id: &body.key_id,
            schemes: &facts.schemes,
            lifecycle: Lifecycle {
                new_threshold: facts.new_threshold,
                new_committee: facts.new_committee,
                current: &facts.current,
                reuse_deleted_id: facts.reuse_deleted_id,
            },
            derivation_path: &body.derivation_path,
            raw_digest: facts.raw_digest,
            intent: facts.intent.as_ref(),
            now_ms,
        };
        let decision = bundle.policy().evaluate(&req, &approvals, store.as_ref());
        let mut approvers: Vec<String> = decision
            .trace
            .iter()
            .filter(|t| t.matched)
            .filter_map(|t| t.approvals.as_ref())
            .flat_map(|a| a.have.iter().cloned())
            .collect();
        approvers.sort();
        approvers.dedup();
        let approved_at_ms = signed_at
            .iter()
            .filter(|(who, _)| approvers.contains(who))
            .map(|(_, at)| *at)
            .max()
            .unwrap_or(0);
        Ok(Evaluated {
            approved_at_ms,
            entries: ledger_entries(&req),
            decision,
            at_ms: now_ms,
            rejections: rejects.into_iter().map(|a| a.approver).collect(),
            approvers,
        })
    })
    .await?
}

/// Parks the request in `state` (see [`crate::store::Store::park`]).
async fn park(
    node: &Node,
    request: &VerifiedRequest,
    facts: &Facts,
    decision: &Decision,
    state: ParkedState,
    approvers: Vec<String>,
    veto_groups: Vec<VetoGroup>,
) -> Result<Parked, Stop> {
    let summary = json!({
        "initiator": request.initiator,
        "key_id": request.body.key_id,
        "schemes": facts.schemes,
        "chain": request.body.chain,
        "intent": facts.intent,
        "decision": decision,
    })
    .to_string();
    let record = ParkedRequest {
        request_id: request.body.request_id.clone(),
        request_hash: request.hash(),
        kind: request.body.kind.as_str().to_owned(),
        initiator: request.initiator.clone(),
        key_id: request.body.key_id.clone(),
        signed_request: request.to_json(),
        state,
        expires_at_ms: request.body.expires_at_ms,
        approvers,
        veto_groups,
        summary_json: summary,
        added_at_ms: 0,
    };
    let (store, cap) = (node.store.clone(), node.settings.max_waiting_per_initiator);
    match blocking(move || store.park(&record, cap)).await? {
        Ok(parked) => Ok(parked),
        Err(e @ StoreError::TooManyParked { .. }) => {
            Err(refuse(ErrorCode::TooManyWaiting, e.to_string()))
        }
        Err(e) => Err(fail(
            ErrorCode::Internal,
            format!("parking the request: {e}"),
        )),
    }
}

async fn unpark(node: &Node, request_id: &str, hash: &[u8; 32]) -> bool {
    let (store, id, hash) = (node.store.clone(), request_id.to_owned(), *hash);
    match blocking(move || store.unpark(&id, &hash)).await {
        Ok(Ok(was)) => was,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot take a request out of the parked ones");
            false
        }
        Err(_) => false,
    }
}

/// A request this node held that ended without a decision of the gate (its key went away, a
/// store failed, …): it is held no longer, and the audit log says why.
pub(super) async fn forget(node: &Node, request: &VerifiedRequest, stop: &Stop) {
    let id = &request.body.request_id;
    if unpark(node, id, &request.hash()).await {
        let entry = json!({"request_id": id, "request_hash": hex::encode(request.hash()),
                           "kind": request.body.kind.as_str(), "initiator": request.initiator,
                           "key_id": request.body.key_id,
                           "outcome": format!("dropped: {}: {}", stop.1.as_str(), stop.2)});
        let _ = audit(node, "decision", Some(id), entry).await;
    }
}

/// Tells the client where the request stands at this node: a `pending` result under its own
/// de-duplication id (per code), so that the final result still goes out.
async fn announce(node: &Node, request: &VerifiedRequest, code: ErrorCode, message: &str) {
    let body = ResultBody {
        version: 1,
        request_id: request.body.request_id.clone(),
        request_hash: request.hash(),
        node_id: node.identity.node_id().to_owned(),
        client_id: request.body.client_id.clone(),
        status: Status::Pending,
        code: Some(code),
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
            code,
            signed.to_json(),
        )
        .await;
    if let Err(e) = published {
        tracing::warn!(error = %e, "cannot publish a pending notice");
    }
}

/// `2026-12-07T10:00:00Z` for a ms timestamp.
fn utc(ms: u64) -> String {
    keyrack_policy::format_rfc3339_ms(ms)
}

/// The audit entry of a decision.
fn decision_entry(
    request: &VerifiedRequest,
    facts: &Facts,
    bundle: Option<&VerifiedBundle>,
    decision: Option<&Decision>,
    outcome: &str,
) -> serde_json::Value {
    let body = &request.body;
    let mut entry = json!({
        "request_id": body.request_id,
        "request_hash": hex::encode(request.hash()),
        "kind": body.kind.as_str(),
        "initiator": request.initiator,
        "key_id": body.key_id,
        "schemes": facts.schemes,
        "bundle": bundle.map(|b| json!({"version": b.version(), "hash": hex::encode(b.hash())})),
        "decision": decision,
        "outcome": outcome,
    });
    match facts.operation {
        Operation::Sign => {
            entry["scheme"] = json!(facts.schemes.first());
            entry["chain"] = json!(body.chain);
            entry["payload_kind"] = json!(body.payload_kind.map(|k| k.as_str()));
            entry["derivation_path"] = json!(body.derivation_path);
            entry["raw_digest"] = json!(facts.raw_digest);
            entry["intent"] = json!(facts.intent);
        }
        Operation::Keygen | Operation::Reshare | Operation::Refresh => {
            entry["threshold"] = json!(body.threshold);
            entry["participants"] = json!(body.participants);
            entry["reuse_deleted_id"] = json!(body.reuse_deleted_id);
            entry["current"] = json!(facts.current);
        }
        Operation::Delete | Operation::Status => {}
    }
    entry
}

/// Records what a governed request came to at this node, after the gate allowed it.
pub(super) async fn audit_outcome(
    node: &Node,
    request: &VerifiedRequest,
    allowed_by: u64,
    outcome: &Option<Outcome>,
) {
    let kind = request.body.kind;
    let entry = match outcome {
        None => json!({"outcome": "stood down (another signer set signs)"}),
        Some(Ok(done)) => done_entry(kind, allowed_by, done),
        Some(Err((status, code, message))) => json!({
            "outcome": if *status == Status::Refused { "refused" } else { "failed" },
            "code": code.as_str(),
            "message": message,
        }),
    };
    let _ = audit(node, "outcome", Some(&request.body.request_id), entry).await;
}

fn done_entry(kind: RequestKind, bundle_version: u64, done: &Done) -> serde_json::Value {
    let keys: Vec<serde_json::Value> = done
        .keys
        .iter()
        .map(|k| {
            json!({"scheme": k.scheme.as_str(), "version": k.version,
                   "public_key": hex::encode(&k.public_key), "threshold": k.threshold,
                   "participants": k.participants})
        })
        .collect();
    match kind {
        RequestKind::Sign => json!({
            "outcome": "signed",
            "bundle_version": bundle_version,
            "signatures": done.signatures.iter().map(|s| hex::encode(s.signature)).collect::<Vec<_>>(),
            "digests": done.signatures.iter().map(|s| hex::encode(&s.digest_or_message)).collect::<Vec<_>>(),
            "public_key": done.signatures.first().map(|s| hex::encode(&s.public_key)),
        }),
        RequestKind::Delete => json!({"outcome": "deleted", "bundle_version": bundle_version}),
        RequestKind::Status => json!({"outcome": "reported", "bundle_version": bundle_version,
                                      "keys": keys}),
        _ => json!({"outcome": "carried out", "bundle_version": bundle_version, "keys": keys}),
    }
}
