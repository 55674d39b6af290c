//! The node daemon: takes requests from its JetStream consumer, checks them ([`crate::intake`]),
//! agrees with its peers who runs them ([`crate::coordinator`]), runs the protocol over NATS
//! ([`crate::session`]), keeps the outcome sealed in its store, and publishes a signed result.
//!
//! Schemes served so far: `ed25519` and `schnorr-secp256k1` (FROST). `ecdsa-secp256k1` needs
//! the committee's aux info in the store, which the daemon does not provision yet: such
//! requests are refused with `unsupported_scheme`, saying so.

mod control;
mod request;
mod status;

use std::sync::Arc;
use std::time::Duration;

use keyrack_client::manifest::VerifiedManifest;
use keyrack_hsm::Sealer;
use keyrack_plugin::Registry;
use tokio::sync::Semaphore;

use crate::identity::NodeIdentity;
use crate::intake::{intake, refusal_result, Intake, IntakeLimits};
use crate::store::Store;
use crate::transport::{Bus, TransportError};

pub use control::ControlRouter;

/// Timing and capacity of a node.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// How long each leader has to start a request before the next one takes over.
    pub leader_timeout: Duration,
    /// The longest wait for any one protocol message.
    pub session_timeout: Duration,
    /// Requests handled at once; more are handed back to NATS (NAK with delay), never dropped.
    pub max_in_flight: usize,
    /// Request time rules.
    pub intake: IntakeLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            leader_timeout: Duration::from_secs(3),
            session_timeout: Duration::from_secs(20),
            max_in_flight: 32,
            intake: IntakeLimits::default(),
        }
    }
}

/// Everything a running node holds.
pub struct Node {
    /// This node's identity (secret keys unsealed in memory).
    pub identity: Arc<NodeIdentity>,
    /// The verified cluster manifest.
    pub manifest: Arc<VerifiedManifest>,
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
}

/// The default scheme registry of a node.
pub fn default_registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(Arc::new(keyrack_eddsa_frost::ed25519()));
    registry.register(Arc::new(keyrack_eddsa_frost::schnorr_secp256k1()));
    registry
}

impl Node {
    /// Runs the node until the consumer or NATS fails for good.
    pub async fn run(self: Arc<Self>) -> Result<(), TransportError> {
        self.bus.ensure_streams().await?;
        let consumer = self
            .bus
            .request_consumer(self.identity.node_id(), self.settings.max_in_flight as i64)
            .await?;
        tokio::spawn(control::listen(self.clone()));
        let permits = Arc::new(Semaphore::new(self.settings.max_in_flight));
        tracing::info!(
            node = self.identity.node_id(),
            cluster = self.manifest.cluster_id(),
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
                node.handle(&delivery.payload, &delivery.subject).await;
                if let Err(e) = delivery.ack().await {
                    tracing::warn!(error = %e, "cannot acknowledge a request");
                }
                drop(permit);
            });
        }
    }

    async fn handle(self: &Arc<Self>, bytes: &[u8], subject: &str) {
        let outcome = {
            let (node, bytes, subject) = (self.clone(), bytes.to_vec(), subject.to_owned());
            tokio::task::spawn_blocking(move || {
                intake(
                    &bytes,
                    &subject,
                    &node.manifest,
                    &node.store,
                    std::time::SystemTime::now(),
                    node.settings.intake,
                )
            })
            .await
        };
        let request = match outcome {
            Ok(Intake::Accepted(request)) => request,
            Ok(Intake::Refused(refusal)) => {
                tracing::info!(code = refusal.code.as_str(), message = %refusal.message, "request refused at intake");
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
        request::handle(self.clone(), *request).await;
    }
}
