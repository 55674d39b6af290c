//! The keeper of parked requests: the requests the policy gate holds at this node, waiting
//! for approvals or time-locked ([`super::gate`]), kept in the store, looked at again when
//! something may have changed for them, and carried on from where they stopped.
//!
//! It looks at a parked request again — by handing it, verified anew under the current
//! manifest, to the same door it came through ([`Node::run_verified`]), so that the gate
//! decides on it again — when:
//! - it was just parked (a verdict may have been recorded while it was being decided);
//! - a verdict (approve or reject) about its hash is recorded, or a policy bundle is
//!   activated;
//! - it is due: its expiry while it waits (the gate then refuses it), its run time once
//!   time-locked (the gate then lets it through, unless something stops it);
//! - the node starts (every parked request).
//!
//! Vetoes come first. At start, before anything is carried on, the rejections of held
//! requests the verdict stream still holds are recorded where this node lacks them
//! ([`super::policy::recover_rejections`]: a node restored from an older copy of its
//! store), and nothing is carried on until the verdict consumer has read its backlog. A
//! time-locked request is carried on only once the consumer has read every verdict published
//! until its run time ([`PolicyGate::verdicts_read_until`](super::policy::PolicyGate), which
//! the gate checks too): while NATS is away, or verdicts are queued, it waits. A request is
//! in hand at most once at a time; one that something concerned while it was in hand is
//! looked at again when it comes back. A request that stays due after being looked at (a
//! store that fails, say) is retried at most every [`RETRY_DUE`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use keyrack_client::codes::ErrorCode;
use keyrack_client::request::SignedRequest;
use keyrack_client::result::Status;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use super::policy::{audit, recover_rejections};
use super::Node;
use crate::intake::{answer, route_of};
use crate::store::{ParkedDue, ParkedRequest, ParkedState};

/// How soon a request that is still due after being looked at is looked at again (and how
/// soon reading the store or the verdict stream is tried again).
const RETRY_DUE: Duration = Duration::from_secs(5);
/// How long the keeper sleeps when nothing is due.
const IDLE: Duration = Duration::from_secs(3600);

/// Something that may change what the gate says about parked requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wake {
    /// This request was just parked (or its state changed).
    Parked(String),
    /// A verdict about this request hash was recorded.
    Verdict([u8; 32]),
    /// Another policy bundle is active.
    Bundle,
}

/// Whether a time-locked request is due but waits for the verdicts published until its run
/// time to be read.
fn waits_for_verdicts(p: &ParkedDue, now: u64, read_until: u64) -> bool {
    matches!(p.state, ParkedState::Locked { run_at_ms, .. } if run_at_ms <= now && read_until < run_at_ms)
}

/// Keeps the parked requests of `node` until it stops (see the module docs).
pub(super) async fn keep(node: Arc<Node>) {
    let Some(mut wakes) = node.policy.take_wakes() else {
        return tracing::error!("the parked requests already have a keeper");
    };
    let mut verdicts_read = node.policy.watch_verdicts_read();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let permits = Arc::new(Semaphore::new(node.settings.max_in_flight.max(1)));
    // Request id → whether something concerned it while it was in hand.
    let mut in_hand: HashMap<String, bool> = HashMap::new();
    // Request id → when it was last handed out because it was due.
    let mut last_due: HashMap<String, u64> = HashMap::new();
    let mut look: BTreeSet<String> = BTreeSet::new();
    let mut recovered = false;
    let mut first = true;
    loop {
        let store = node.store.clone();
        let parked = match tokio::task::spawn_blocking(move || store.parked_due()).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the parked requests");
                tokio::time::sleep(RETRY_DUE).await;
                continue;
            }
            Err(e) => return tracing::error!(error = %e, "parked requests task failed"),
        };
        if first {
            first = false;
            look.extend(parked.iter().map(|p| p.request_id.clone()));
            if !parked.is_empty() {
                tracing::info!(
                    parked = parked.len(),
                    "requests waiting for approvals or a delay from the last run"
                );
            }
        }
        if !recovered {
            match recover_rejections(&node).await {
                Ok(n) => {
                    recovered = true;
                    if n > 0 {
                        tracing::warn!(
                            rejections = n,
                            "rejections of held requests this store lacked were recovered from                              the verdict stream (was the store restored from an older copy?)"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the verdict stream yet; nothing held is carried on until it can be")
                }
            }
        }
        let now = keyrack_client::now_ms();
        let read_until = *verdicts_read.borrow_and_update();
        let retry = RETRY_DUE.as_millis() as u64;
        for p in &parked {
            let again = last_due
                .get(&p.request_id)
                .is_none_or(|t| now >= t.saturating_add(retry));
            if p.due_at_ms <= now && again && !waits_for_verdicts(p, now, read_until) {
                look.insert(p.request_id.clone());
            }
        }
        last_due.retain(|id, _| parked.iter().any(|p| &p.request_id == id));
        if recovered && read_until > 0 {
            for id in std::mem::take(&mut look) {
                if let Some(concerned) = in_hand.get_mut(&id) {
                    *concerned = true;
                    continue;
                }
                let Some(p) = parked.iter().find(|p| p.request_id == id) else {
                    continue; // decided meanwhile
                };
                if p.due_at_ms <= now {
                    last_due.insert(id.clone(), now);
                }
                in_hand.insert(id.clone(), false);
                tokio::spawn(carry_on(node.clone(), id, done_tx.clone(), permits.clone()));
            }
        }
        let next = parked
            .iter()
            .filter(|p| !in_hand.contains_key(&p.request_id))
            .filter(|p| !waits_for_verdicts(p, now, read_until))
            .map(|p| match last_due.get(&p.request_id) {
                Some(t) if p.due_at_ms <= *t => t.saturating_add(retry),
                _ => p.due_at_ms,
            })
            .min();
        let mut sleep = next.map_or(IDLE, |t| Duration::from_millis(t.saturating_sub(now)));
        if !recovered {
            sleep = sleep.min(RETRY_DUE);
        }
        // Woken by the verdict consumer's progress only while something waits for it.
        let follow_verdicts = read_until == 0
            || parked
                .iter()
                .any(|p| waits_for_verdicts(p, now, read_until));
        tokio::select! {
            wake = wakes.recv() => match wake {
                None => return,
                Some(Wake::Parked(id)) => { look.insert(id); }
                Some(Wake::Verdict(hash)) => look.extend(
                    parked.iter().filter(|p| p.request_hash == hash).map(|p| p.request_id.clone()),
                ),
                Some(Wake::Bundle) => look.extend(parked.iter().map(|p| p.request_id.clone())),
            },
            Some(id) = done_rx.recv() => {
                if in_hand.remove(&id) == Some(true) {
                    look.insert(id);
                }
            }
            () = tokio::time::sleep(sleep) => {}
            changed = verdicts_read.changed(), if follow_verdicts => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Verifies a parked request again and hands it to the node's door for requests; one that
/// no longer verifies (its initiator left the manifest, say) is refused and dropped.
async fn carry_on(
    node: Arc<Node>,
    id: String,
    done: mpsc::UnboundedSender<String>,
    permits: Arc<Semaphore>,
) {
    let Ok(_permit) = permits.acquire_owned().await else {
        return;
    };
    let store = node.store.clone();
    let rid = id.clone();
    let parked = match tokio::task::spawn_blocking(move || store.parked(&rid)).await {
        Ok(Ok(Some(p))) => p,
        Ok(Ok(None)) => {
            let _ = done.send(id);
            return; // decided meanwhile
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, request = %id, "cannot read a parked request");
            let _ = done.send(id);
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "parked request task failed");
            let _ = done.send(id);
            return;
        }
    };
    let verified =
        SignedRequest::parse(&parked.signed_request).and_then(|s| s.verify_with(&node.manifest()));
    match verified {
        Ok(request) if request.hash() == parked.request_hash => node.run_verified(request).await,
        other => {
            let (code, why) = match other {
                Err(e) => (e.code(), e.to_string()),
                Ok(_) => (
                    ErrorCode::Internal,
                    "its bytes do not hash to the parked hash".into(),
                ),
            };
            drop_parked(&node, &parked, code, &why).await;
        }
    }
    let _ = done.send(id);
}

async fn drop_parked(node: &Node, parked: &ParkedRequest, code: ErrorCode, why: &str) {
    tracing::warn!(request = %parked.request_id, reason = %why, "a parked request no longer verifies: dropped");
    let (store, id, hash) = (
        node.store.clone(),
        parked.request_id.clone(),
        parked.request_hash,
    );
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.unpark(&id, &hash)).await {
        tracing::error!(error = %e, "cannot drop a parked request");
    }
    let entry = json!({"request_id": parked.request_id, "kind": parked.kind,
                       "initiator": parked.initiator, "key_id": parked.key_id,
                       "outcome": format!("dropped: no longer verifies ({why})")});
    let _ = audit(node, "decision", Some(&parked.request_id), entry).await;
    let route = SignedRequest::parse(&parked.signed_request)
        .ok()
        .and_then(|s| route_of(s.body_bytes()));
    let Some(route) = route else { return };
    let message = format!("dropped while it waited: it no longer verifies ({why})");
    if let Some(result) = answer(
        &route,
        &node.identity,
        Status::Refused,
        code,
        &message,
        std::time::SystemTime::now(),
    ) {
        let published = node
            .bus
            .publish_result(
                &route.client_id,
                &route.request_id,
                node.identity.node_id(),
                result.to_json(),
            )
            .await;
        if let Err(e) = published {
            tracing::warn!(error = %e, "cannot publish a result");
        }
    }
}
