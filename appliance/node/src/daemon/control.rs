//! Coordinator control messages (`Ready`, `Start`), in signed envelopes on the request's
//! control subject, routed to the task handling that request. `Ready` goes to the leader
//! only (encrypted to it); `Start` is broadcast. Messages for a request this node has not
//! taken from its consumer yet wait in a bounded buffer. A `Presign` order (on the subject
//! of its pool id) goes to a new presign follower task instead ([`super::pool::follow`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use keyrack_client::envelope::{self, Header, MessageKind};
use keyrack_client::subjects;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::pool::{self, PresignOrder};
use super::Node;
use crate::coordinator::Start;

/// Requests whose early control messages are kept, at most.
const EARLY_REQUESTS: usize = 1024;

/// A control message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// The sender will take part in `attempt`.
    Ready {
        /// Attempt number.
        attempt: u32,
    },
    /// The leader's decision; valid only from the leader it names.
    Start(Start),
    /// Make one presignature for a pool; valid only from the order's first signer.
    Presign(PresignOrder),
}

type Routed = (String, Control);

/// Routes control messages to request tasks by request id.
#[derive(Default)]
pub struct ControlRouter {
    inner: Mutex<RouterState>,
}

#[derive(Default)]
struct RouterState {
    live: HashMap<String, mpsc::UnboundedSender<Routed>>,
    early: HashMap<String, Vec<Routed>>,
    early_order: VecDeque<String>,
}

impl ControlRouter {
    /// Registers the task handling `request_id`; it receives what arrived early too.
    pub fn register(&self, request_id: &str) -> mpsc::UnboundedReceiver<Routed> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for m in state.early.remove(request_id).unwrap_or_default() {
            let _ = tx.send(m);
        }
        state.live.insert(request_id.to_owned(), tx);
        rx
    }

    /// The request is done: later messages about it are dropped.
    pub fn unregister(&self, request_id: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .live
            .remove(request_id);
    }

    fn route(&self, request_id: &str, message: Routed) {
        let mut state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = state.live.get(request_id) {
            let _ = tx.send(message);
            return;
        }
        if !state.early.contains_key(request_id) {
            if state.early_order.len() >= EARLY_REQUESTS {
                if let Some(oldest) = state.early_order.pop_front() {
                    state.early.remove(&oldest);
                }
            }
            state.early_order.push_back(request_id.to_owned());
        }
        state
            .early
            .entry(request_id.to_owned())
            .or_default()
            .push(message);
    }
}

/// Sends a control message about `request_id` (to one node, or broadcast).
pub async fn send(
    node: &Node,
    request_id: &str,
    request_hash: [u8; 32],
    to: Option<&str>,
    message: &Control,
) -> Result<(), String> {
    let mut payload = Vec::new();
    ciborium::into_writer(message, &mut payload).map_err(|e| e.to_string())?;
    let header = Header {
        version: 1,
        cluster: node.cluster_id().to_owned(),
        session: request_hash,
        kind: MessageKind::Control,
        round: 0,
        from: node.identity.node_id().to_owned(),
        to: to.map(str::to_owned),
        seq: rand_core::RngCore::next_u64(&mut rand_core::OsRng),
    };
    let sealed = crate::session::seal_as(&node.identity, &node.manifest(), &header, &payload)
        .map_err(|e| e.to_string())?;
    let subject =
        subjects::control_subject(node.cluster_id(), request_id).map_err(|e| e.to_string())?;
    node.bus
        .publish(subject, sealed)
        .await
        .map_err(|e| e.to_string())
}

/// Reads every control message of the cluster and routes what this node may read.
pub async fn listen(node: Arc<Node>) {
    let filter = match subjects::control_filter(node.cluster_id()) {
        Ok(f) => f,
        Err(e) => return tracing::error!(error = %e, "invalid cluster id"),
    };
    let mut sub = match node.bus.subscribe(filter).await {
        Ok(s) => s,
        Err(e) => return tracing::error!(error = %e, "cannot subscribe to control messages"),
    };
    let me = node.identity.node_id().to_owned();
    while let Some(message) = sub.next().await {
        let Some(request_id) = message
            .subject
            .as_str()
            .rsplit('.')
            .next()
            .map(str::to_owned)
        else {
            continue;
        };
        let manifest = node.manifest();
        let opened = envelope::open(
            &message.payload,
            |id| manifest.node(id),
            (&me, node.identity.agreement_secret()),
            node.cluster_id(),
        );
        let (header, payload) = match opened {
            Ok(v) => v,
            Err(envelope::EnvelopeError::NotForMe { .. }) => continue, // a Ready for another leader
            Err(e) => {
                tracing::debug!(error = %e, "dropped a control envelope");
                continue;
            }
        };
        if header.kind != MessageKind::Control || header.from == me {
            continue;
        }
        match ciborium::from_reader::<Control, _>(payload.as_slice()) {
            Ok(Control::Presign(order)) if order.pool_id == request_id => {
                tokio::spawn(pool::follow(node.clone(), header.from, order));
            }
            Ok(Control::Presign(_)) => {
                tracing::debug!(
                    from = header.from,
                    "presign order on another pool's subject"
                )
            }
            Ok(control) => node.control.route(&request_id, (header.from, control)),
            Err(e) => tracing::debug!(error = %e, from = header.from, "malformed control message"),
        }
    }
}
