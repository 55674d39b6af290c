//! The node daemon: takes requests from its JetStream consumer, checks them ([`crate::intake`]),
//! agrees with its peers who runs them ([`crate::coordinator`]), runs the protocol over NATS
//! ([`crate::session`]), keeps the outcome sealed in its store, and publishes a signed result.
//!
//! Every request kind but `policy`, `approve` and `reject` passes the policy gate first
//! ([`gate`]); what it holds (waiting for approvals, time-locked) is parked in the store and
//! carried on later ([`parked`]). Approvers' verdicts arrive on a stream and consumer of
//! their own, read apart from the requests, so that no other work delays them.
//!
//! Hot keys get presignature pools, refilled in the background ([`pool`]).
//!
//! Schemes served: `ecdsa-secp256k1` (cggmp21; committee setup in [`crate::ecdsa`]),
//! `ed25519` and `schnorr-secp256k1` (FROST).

mod control;
mod gate;
pub mod heartbeat;
pub mod lifecycle;
mod membership;
mod parked;
pub mod policy;
pub mod pool;
mod request;
mod status;

use std::sync::Arc;
use std::time::Duration;

use keyrack_client::codes::ErrorCode;
use keyrack_client::manifest::VerifiedManifest;
use keyrack_client::request::{RequestKind, VerifiedRequest};
use keyrack_client::result::Status;
use keyrack_hsm::Sealer;
use keyrack_plugin::{Channel, PartyIndex, ProtocolError, Registry};
use tokio::sync::Semaphore;

use crate::ecdsa::PrimeKeeper;
use crate::identity::NodeIdentity;
use crate::intake::{answer, intake, refusal_result, Intake, IntakeLimits, Route};
use crate::membership::Membership;
use crate::session::{
    run_session_watched, PeerWatch, SessionError, SessionRoute, SessionStats, Watch,
};
use crate::store::SessionState;
use crate::store::Store;
use crate::transport::{Bus, TransportError};

pub use control::ControlRouter;

/// How often a node tells NATS that a request it holds is still in progress (well inside
/// the consumer's acknowledgement wait).
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Timing and capacity of a node.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// How long each leader has to start a request before the next one takes over.
    pub leader_timeout: Duration,
    /// The longest wait for any one protocol message.
    pub session_timeout: Duration,
    /// The longest wait for one message of ECDSA committee setup (a peer may first have to
    /// generate its safe primes).
    pub setup_timeout: Duration,
    /// Requests handled at once; more are handed back to NATS (NAK with delay), never dropped.
    pub max_in_flight: usize,
    /// Request time rules.
    pub intake: IntakeLimits,
    /// Presignatures (nonce commitments for FROST) kept ready per hot (key, signer set);
    /// 0 disables pools.
    pub presign_pool: usize,
    /// How long a (key, signer set) stays hot after its last signing.
    pub hot_window: Duration,
    /// Requests the policy holds (waiting for approvals or a delay) per initiator, at most;
    /// more are refused `too_many_waiting`.
    pub max_waiting_per_initiator: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            leader_timeout: Duration::from_secs(3),
            session_timeout: Duration::from_secs(20),
            setup_timeout: Duration::from_secs(300),
            max_in_flight: 32,
            intake: IntakeLimits::default(),
            presign_pool: 4,
            hot_window: Duration::from_secs(600),
            max_waiting_per_initiator: 16,
        }
    }
}

/// Everything a running node holds.
pub struct Node {
    /// This node's identity (secret keys unsealed in memory).
    pub identity: Arc<NodeIdentity>,
    /// The current cluster manifest (replaced when a signed successor arrives).
    pub membership: Arc<Membership>,
    /// The node's store.
    pub store: Arc<Store>,
    /// The HSM backend that seals shares.
    pub sealer: Arc<dyn Sealer>,
    /// NATS.
    pub bus: Bus,
    /// The schemes served.
    pub registry: Registry,
    /// Timing and capacity.
    pub settings: Settings,
    /// Control messages, routed to the requests they are about.
    pub control: Arc<ControlRouter>,
    /// The sealed safe-prime pool (ECDSA committee setup).
    pub primes: Arc<PrimeKeeper>,
    /// Which peers are live (from their heartbeats).
    pub peers: Arc<heartbeat::Peers>,
    /// Hot (key, signer set) pairs and the presign sessions under way ([`pool`]).
    pub pools: Arc<pool::PoolState>,
    /// Keys with a reshare, refresh or delete under way ([`lifecycle`]).
    pub key_ops: Arc<lifecycle::KeyOps>,
    /// The active policy bundle and the approvals signal ([`policy`]).
    pub policy: Arc<policy::PolicyGate>,
    /// Metrics, the requests and sessions under way, recent activity ([`crate::telemetry`]).
    pub telemetry: Arc<crate::telemetry::Telemetry>,
}

/// The default scheme registry of a node.
pub fn default_registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(Arc::new(keyrack_ecdsa_cggmp21::EcdsaPlugin::new(Arc::new(
        crate::ecdsa::NoAux,
    ))));
    registry.register(Arc::new(keyrack_eddsa_frost::ed25519()));
    registry.register(Arc::new(keyrack_eddsa_frost::schnorr_secp256k1()));
    registry
}

impl Node {
    /// The current cluster manifest: hold the `Arc` for the whole of one request or message,
    /// so that a membership change does not apply halfway through it.
    pub fn manifest(&self) -> Arc<VerifiedManifest> {
        self.membership.current()
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        self.membership.cluster_id()
    }

    /// Runs `protocol` as this node's part of the session `route`, with the node's session
    /// timeout.
    pub(crate) async fn run_session<T, F>(
        &self,
        route: &SessionRoute,
        protocol: F,
    ) -> Result<(T, SessionStats), SessionError>
    where
        T: Send + 'static,
        F: FnOnce(PartyIndex, &mut dyn Channel) -> Result<T, ProtocolError> + Send + 'static,
    {
        self.run_session_for(route, self.settings.session_timeout, protocol)
            .await
    }

    /// [`Node::run_session`] with another message timeout (committee setup's, say). The
    /// session gives up early on a participant that stops sending heartbeats.
    pub(crate) async fn run_session_for<T, F>(
        &self,
        route: &SessionRoute,
        timeout: Duration,
        protocol: F,
    ) -> Result<(T, SessionStats), SessionError>
    where
        T: Send + 'static,
        F: FnOnce(PartyIndex, &mut dyn Channel) -> Result<T, ProtocolError> + Send + 'static,
    {
        let last_heard = |node: &str| self.peers.last_heard(node);
        let watch = PeerWatch {
            last_heard: &last_heard,
            silent_after: heartbeat::SILENT_AFTER,
        };
        let listed = self
            .telemetry
            .live
            .session(&route.session, &route.participants);
        let started = std::time::Instant::now();
        let out = run_session_watched(
            &self.bus,
            self.identity.clone(),
            self.manifest(),
            route,
            timeout,
            Watch {
                peers: Some(&watch),
                progress: Some(&listed.progress),
            },
            protocol,
        )
        .await;
        self.telemetry
            .metrics
            .session_done(out.is_ok(), started.elapsed());
        out
    }

    /// Runs the node until the consumer or NATS fails for good.
    pub async fn run(self: Arc<Self>) -> Result<(), TransportError> {
        self.bus.ensure_streams().await?;
        let consumer = self
            .bus
            .request_consumer(self.identity.node_id(), self.settings.max_in_flight as i64)
            .await?;
        tokio::spawn(control::listen(self.clone()));
        tokio::spawn(heartbeat::watch(self.clone()));
        tokio::spawn(heartbeat::beat(self.clone()));
        tokio::spawn(pool::refill(self.clone()));
        tokio::spawn(membership::watch(self.clone()));
        let verdicts = self.bus.verdict_consumer(self.identity.node_id()).await?;
        tokio::spawn(self.clone().verdicts(verdicts));
        tokio::spawn(parked::keep(self.clone()));
        let permits = Arc::new(Semaphore::new(self.settings.max_in_flight));
        tracing::info!(
            node = self.identity.node_id(),
            cluster = self.cluster_id(),
            "node running"
        );
        loop {
            let Some(delivery) = Bus::next_request(&consumer, Duration::from_secs(5)).await? else {
                continue;
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                // Busy: hand it back to NATS for later; it is never dropped.
                delivery.delay(Duration::from_millis(500)).await?;
                continue;
            };
            let node = self.clone();
            tokio::spawn(async move {
                // A long request (ECDSA committee setup, say) tells NATS it is still being
                // worked on, so that it is not redelivered while it runs.
                let work = node.handle(&delivery.payload, &delivery.subject, delivery.delivered);
                let mut work = std::pin::pin!(work);
                let mut progress = tokio::time::interval_at(
                    tokio::time::Instant::now() + PROGRESS_EVERY,
                    PROGRESS_EVERY,
                );
                loop {
                    tokio::select! {
                        () = &mut work => break,
                        _ = progress.tick() => {
                            if let Err(e) = delivery.in_progress().await {
                                tracing::warn!(error = %e, "cannot tell NATS a request is in progress");
                            }
                        }
                    }
                }
                if let Err(e) = delivery.ack().await {
                    tracing::warn!(error = %e, "cannot acknowledge a request");
                }
                drop(permit);
            });
        }
    }

    /// Reads the verdict consumer (approve and reject requests) until the node stops, one
    /// at a time and apart from every other request; says until when it has read every
    /// verdict (time-locked requests wait for that to pass their run time). A NATS error is
    /// logged and the read tried again.
    async fn verdicts(self: Arc<Self>, consumer: async_nats::jetstream::consumer::PullConsumer) {
        loop {
            let asked_at = keyrack_client::now_ms();
            match Bus::next_request(&consumer, Duration::from_secs(1)).await {
                // Nothing left: every verdict published before this fetch began was read.
                Ok(None) => self.policy.set_verdicts_read(asked_at),
                Ok(Some(delivery)) => {
                    self.handle(&delivery.payload, &delivery.subject, delivery.delivered)
                        .await;
                    if let Err(e) = delivery.ack().await {
                        tracing::warn!(error = %e, "cannot acknowledge a verdict");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the verdict consumer; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn handle(self: &Arc<Self>, bytes: &[u8], subject: &str, delivered: i64) {
        let started = std::time::Instant::now();
        let outcome = {
            let (node, bytes, subject) = (self.clone(), bytes.to_vec(), subject.to_owned());
            tokio::task::spawn_blocking(move || {
                intake(
                    &bytes,
                    &subject,
                    &node.manifest(),
                    &node.store,
                    std::time::SystemTime::now(),
                    node.settings.intake,
                )
            })
            .await
        };
        let request = match outcome {
            Ok(Intake::Accepted(request)) => request,
            Ok(Intake::Refused(refusal))
                if refusal.code == ErrorCode::Replayed && delivered > 1 =>
            {
                // NATS delivered this request to this node before: the node stopped (or lost
                // its acknowledgement) while handling it. Not an attacker's replay, which
                // arrives as a new message.
                if let Some(route) = refusal.route {
                    self.redelivered(&route).await;
                }
                return;
            }
            Ok(Intake::Refused(refusal)) => {
                tracing::info!(code = refusal.code.as_str(), message = %refusal.message, "request refused at intake");
                // The subject's last token, if it is a kind (anyone who may publish could
                // invent others: they are not made into metric labels).
                let token = subject.rsplit('.').next().unwrap_or_default();
                let kind = RequestKind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .find(|k| *k == token)
                    .unwrap_or("other");
                self.telemetry.metrics.request_done(
                    kind,
                    "refused",
                    Some(refusal.code.as_str()),
                    started.elapsed(),
                );
                if let (Some(route), Some(result)) = (
                    refusal.route.as_ref(),
                    refusal_result(&refusal, &self.identity, std::time::SystemTime::now()),
                ) {
                    let published = self
                        .bus
                        .publish_refusal(
                            &route.client_id,
                            &route.request_id,
                            self.identity.node_id(),
                            refusal.code,
                            result.to_json(),
                        )
                        .await;
                    if let Err(e) = published {
                        tracing::warn!(error = %e, "cannot publish a refusal");
                    }
                }
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "intake task failed");
                return;
            }
        };
        self.run_verified(*request).await;
    }

    /// Handles a verified request to the end (listed among the requests in flight meanwhile):
    /// one taken from a consumer, or a parked one carried on.
    pub(crate) async fn run_verified(self: &Arc<Self>, request: VerifiedRequest) {
        let _listed = self.telemetry.live.begin(
            &request.body.request_id,
            request.body.kind.as_str(),
            &request.body.key_id,
            &request.initiator,
            keyrack_client::now_ms(),
        );
        let id = request.body.request_id.clone();
        crate::telemetry::Live::scope(id, request::handle(self.clone(), request)).await;
    }

    /// A request this node had taken before came again (it stopped while handling it, or its
    /// acknowledgement was lost). Its record says what happened: completed requests were
    /// answered already; anything else did not complete here and is answered `interrupted`.
    async fn redelivered(self: &Arc<Self>, route: &Route) {
        let (store, id) = (self.store.clone(), route.request_id.clone());
        let record = tokio::task::spawn_blocking(move || {
            // Parked (waiting for approvals or a delay): still in hand, not interrupted.
            if store.parked(&id)?.is_some() {
                return Ok(None);
            }
            store.session(&id).map(Some)
        })
        .await;
        let record = match record {
            Ok(Ok(None)) => return,
            Ok(Ok(Some(r))) => Ok(Ok(r)),
            Ok(Err(e)) => Ok(Err(e)),
            Err(e) => Err(e),
        };
        let why = match record {
            Ok(Ok(Some(r))) if r.state == SessionState::Completed => return,
            Ok(Ok(Some(r))) if r.state == SessionState::Running => return, // still in hand
            Ok(Ok(Some(r))) => r.error.unwrap_or_default(),
            Ok(Ok(None)) => "the node stopped before the request started".into(),
            Ok(Err(e)) => return tracing::error!(error = %e, "cannot read a session record"),
            Err(e) => return tracing::error!(error = %e, "session lookup failed"),
        };
        tracing::info!(request = %route.request_id, reason = %why, "request redelivered after an interruption");
        let message = format!("interrupted at {}: {why}", self.identity.node_id());
        let Some(result) = answer(
            route,
            &self.identity,
            Status::Failed,
            ErrorCode::Interrupted,
            &message,
            std::time::SystemTime::now(),
        ) else {
            return;
        };
        let published = self
            .bus
            .publish_result(
                &route.client_id,
                &route.request_id,
                self.identity.node_id(),
                result.to_json(),
            )
            .await;
        if let Err(e) = published {
            tracing::warn!(error = %e, "cannot publish a result");
        }
    }
}
