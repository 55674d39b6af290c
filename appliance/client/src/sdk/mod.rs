//! The async client SDK: publishes initiator-signed requests to a cluster over NATS
//! JetStream and waits for the nodes' signed results, trusting nothing it has not checked.
//!
//! A [`Client`] owns one NATS connection and one ordered JetStream consumer on the cluster's
//! result stream, filtered on its client id; a background task routes each result to the
//! request it names. [`Client::submit`] signs and publishes a request (`Nats-Msg-Id` = the
//! request id, so a re-publish is de-duplicated) and returns a [`Pending`];
//! [`Pending::wait`] applies the waiting rules of docs/PROTOCOL.md §5:
//!
//! - a result counts only if it verifies under a manifest node's identity and carries this
//!   request's id and the hash of its exact body bytes; others are ignored and counted
//!   ([`Ignored`]);
//! - keygen, reshare, refresh and delete complete when **every** manifest node answered
//!   `ok`; a refusal or failure ends them at once ([`SdkError::Refused`],
//!   [`SdkError::Failed`]);
//! - keygen: every node reports the same keys, those asked (schemes, key id, threshold, the
//!   whole manifest as committee); different keys are a [`SdkError::Disagreement`] naming
//!   the nodes;
//! - reshare and refresh ([`Client::reshare`], [`Client::refresh`]): the nodes that took part
//!   (old or new committee) report the same keys, those asked (schemes, key id, and for a
//!   reshare the new threshold and the new committee in key-index order, if given); nodes in
//!   neither committee answer `ok` with no keys and are listed as not concerned
//!   ([`AgreedKeys::uninvolved`]); at least one node must report keys, and every member of
//!   the new committee must;
//! - delete ([`Client::delete`]): every node answered `ok` (it erased its shares and keeps a
//!   tombstone); keys in the answers are ignored;
//! - sign completes on the first `ok` whose signature the SDK verified itself
//!   ([`verify_signature`]); up to `n - t` refusals are tolerated meanwhile; a signature that
//!   does not verify is a [`SdkError::BadSignature`] naming the node, never a success;
//! - status ([`Client::key_status`]) collects **each** node's own view of a key, agreeing or
//!   not, refusals included; when time is up it returns what it has, naming the silent nodes
//!   as missing, unless no node answered at all;
//! - when time is up, [`SdkError::Timeout`] lists who answered what and who stayed silent.
//!
//! A request's timeout is also its lifetime: the nodes refuse a request living longer than
//! their `max_lifetime` (600 s), so no single request may wait longer. A reshare of an ECDSA
//! key to a new committee sets the committee up first (minutes); give it a generous timeout.
//!
//! [`Client::results_of`] reads back, from the result stream, every result of a request this
//! client sent earlier (for as long as the stream keeps them), checked the same way.
//!
//! The SDK never creates streams (the nodes do) and never holds a node's keys.

mod collect;
mod error;
mod history;
mod verify;

pub use error::{Ignored, KeyGroup, NodeAnswer, SdkError};
pub use history::{CheckedResult, NodeResults, RequestResults};
pub use verify::verify_signature;

use crate::manifest::VerifiedManifest;
use crate::request::{InitiatorKey, PayloadKind, RequestBody, RequestError, RequestKind};
use crate::result::{KeyInfo, SignatureInfo};
use crate::scheme::Scheme;
use crate::subjects;
use async_nats::jetstream::{self, consumer};
use collect::{Collector, Step};
use futures::StreamExt as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;

/// Keys the nodes agreed on (keygen, reshare, refresh).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgreedKeys {
    /// The keys, one per scheme, sorted by scheme. Keygen: participants sorted. Reshare and
    /// refresh: participants as the nodes sent them, in key-index order.
    pub keys: Vec<KeyInfo>,
    /// The nodes that reported them, in manifest order: every manifest node for a keygen;
    /// for a reshare or refresh, the nodes of the old or the new committee.
    pub nodes: Vec<String>,
    /// Reshare and refresh: the manifest nodes in neither committee, which answered `ok`
    /// with no keys (not concerned), in manifest order. Empty for a keygen.
    pub uninvolved: Vec<String>,
    /// Results ignored while waiting.
    pub ignored: Ignored,
}

/// A key every manifest node deleted (delete): each erased its shares of the schemes asked
/// and recorded a tombstone (nodes that never held a share too), so the key can never sign
/// again and its id stays taken (see `reuse_deleted_id` on keygen).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletedKey {
    /// The key id.
    pub key_id: String,
    /// The schemes deleted, as asked.
    pub schemes: Vec<Scheme>,
    /// The nodes that confirmed: every manifest node, in manifest order.
    pub nodes: Vec<String>,
    /// Results ignored while waiting.
    pub ignored: Ignored,
}

/// A threshold signature the SDK verified itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// The signature, the digest or message signed and the (derived) public key (for a
    /// chain payload signed in several parts, the first).
    pub signature: SignatureInfo,
    /// Every signature, each verified (one unless a chain payload has several parts, e.g.
    /// the own inputs of a PSBT).
    pub signatures: Vec<SignatureInfo>,
    /// A chain payload's signed output, as the node's chain plugin assembled it (the SDK
    /// verified the signatures in it, not the assembly: check the transaction with the
    /// chain's own library before broadcasting it).
    pub signed_payload: Option<Vec<u8>>,
    /// The node whose result carried it.
    pub node: String,
    /// Refusals tolerated before it arrived.
    pub tolerated: Vec<NodeAnswer>,
    /// Results ignored while waiting.
    pub ignored: Ignored,
}

/// One node's answer to a `status` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeKeyStatus {
    /// The node and how it answered (a node may refuse, e.g. a request out of its time
    /// window).
    pub answer: NodeAnswer,
    /// Its keys with the key id asked, each with its [`KeyInfo::status`]; empty if it has
    /// none (an unknown key id) or did not answer `ok`.
    pub keys: Vec<KeyInfo>,
}

/// Every node's own view of a key (status requests). Nodes are not required to agree: a
/// node that is behind or disagrees is shown as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyStatusReport {
    /// The nodes that answered, in manifest order.
    pub nodes: Vec<NodeKeyStatus>,
    /// The manifest nodes that did not answer in time.
    pub missing: Vec<String>,
    /// Results ignored while waiting.
    pub ignored: Ignored,
}

/// How a request completed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The nodes agreed on keys (keygen, reshare, refresh).
    Keys(AgreedKeys),
    /// Every node deleted the key (delete).
    Deleted(DeletedKey),
    /// A verified signature (sign; boxed: it is much larger than the other outcome).
    Signature(Box<VerifiedSignature>),
    /// Each node's view of a key (status).
    KeyStatus(KeyStatusReport),
    /// Every node accepted (approve, reject, policy activation).
    Acknowledged(Acknowledged),
}

/// Every manifest node accepted an approval or a policy activation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acknowledged {
    /// Each node's answer (with its message), in arrival order.
    pub answers: Vec<NodeAnswer>,
    /// Results ignored while waiting.
    pub ignored: Ignored,
}

impl Outcome {
    /// A node that answered (for errors about an outcome of the wrong kind).
    fn some_node(&self) -> &str {
        let node = match self {
            Outcome::Keys(k) => k.nodes.first(),
            Outcome::Deleted(d) => d.nodes.first(),
            Outcome::Signature(s) => Some(&s.node),
            Outcome::KeyStatus(r) => r.nodes.first().map(|n| &n.answer.node),
            Outcome::Acknowledged(a) => a.answers.first().map(|a| &a.node),
        };
        node.map_or("?", String::as_str)
    }
}

/// Where the result router sends the raw results of each waiting request.
type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Vec<u8>>>>>;

/// A connection to one cluster, as one initiator and client id.
pub struct Client {
    js: jetstream::Context,
    cluster: String,
    client_id: String,
    initiator: InitiatorKey,
    manifest: Arc<VerifiedManifest>,
    routes: Routes,
    router: Arc<Router>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("cluster", &self.cluster)
            .field("client_id", &self.client_id)
            .field("initiator", &self.initiator)
            .finish_non_exhaustive()
    }
}

/// The task reading this client's results; stops when its last holder is gone: the client
/// and each [`Pending`] hold it, so a request keeps getting its results after the client
/// that published it was dropped.
struct Router(tokio::task::JoinHandle<()>);

impl Drop for Router {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Client {
    /// Connects to any of `urls` and starts reading this client's results.
    ///
    /// Checks that `cluster_id` is the manifest's, that `client_id` is a token and that the
    /// initiator is in the manifest with this key; fails with [`SdkError::StreamsMissing`]
    /// if the cluster's streams do not exist (its nodes have not started).
    pub async fn connect<S: AsRef<str>>(
        urls: &[S],
        cluster_id: &str,
        client_id: &str,
        initiator: InitiatorKey,
        manifest: VerifiedManifest,
    ) -> Result<Client, SdkError> {
        check_config(cluster_id, client_id, &initiator, &manifest)?;
        let joined: Vec<&str> = urls.iter().map(AsRef::as_ref).collect();
        let addrs: Vec<async_nats::ServerAddr> = joined
            .iter()
            .map(|u| u.parse())
            .collect::<Result<_, _>>()
            .map_err(|e: std::io::Error| SdkError::Config(format!("NATS URL: {e}")))?;
        let nats = async_nats::ConnectOptions::new()
            .name(client_id)
            .connection_timeout(Duration::from_secs(5))
            .connect(addrs)
            .await
            .map_err(|e| SdkError::Transport {
                operation: "connect",
                detail: format!("{} ({e})", joined.join(",")),
            })?;
        let js = jetstream::new(nats);
        let request_stream = subjects::request_stream(cluster_id).map_err(config)?;
        open_stream(&js, cluster_id, &request_stream).await?;
        let result_stream = subjects::result_stream(cluster_id).map_err(config)?;
        let results = open_stream(&js, cluster_id, &result_stream).await?;
        let consumer = results
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: subjects::result_filter(cluster_id, client_id).map_err(config)?,
                deliver_policy: consumer::DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(|e| SdkError::transport("create result consumer")(&e))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| SdkError::transport("read results")(&e))?;
        let routes = Routes::default();
        let router = Arc::new(Router(tokio::spawn(route_results(
            messages,
            Arc::clone(&routes),
        ))));
        Ok(Client {
            js,
            cluster: cluster_id.to_owned(),
            client_id: client_id.to_owned(),
            initiator,
            manifest: Arc::new(manifest),
            routes,
            router,
        })
    }

    /// The manifest results are checked against.
    pub fn manifest(&self) -> &VerifiedManifest {
        &self.manifest
    }

    /// A request body of `kind` for this cluster and client, living `lifetime` (the nodes
    /// refuse it afterwards); fill in the kind's fields and [`Client::submit`] it.
    pub fn new_request(&self, kind: RequestKind, key_id: &str, lifetime: Duration) -> RequestBody {
        let lifetime_ms = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX);
        RequestBody::new(
            kind,
            &self.cluster,
            key_id,
            &self.client_id,
            crate::now_ms(),
            lifetime_ms.max(1),
        )
    }

    /// The body of a keygen request (see [`Client::keygen`]); [`Client::submit`] it to know
    /// its request id before the outcome.
    ///
    /// To create a key under the id of a deleted key (refused as `key_deleted` otherwise),
    /// set `body.reuse_deleted_id = true` and [`Client::request`] the body: the new key has
    /// nothing in common with the deleted one but its name.
    pub fn keygen_body(
        &self,
        key_id: &str,
        schemes: &[Scheme],
        threshold: u16,
        lifetime: Duration,
    ) -> RequestBody {
        let mut body = self.new_request(RequestKind::Keygen, key_id, lifetime);
        body.schemes = schemes.to_vec();
        body.threshold = Some(threshold);
        body
    }

    /// Creates a key (one per scheme) shared by every manifest node with threshold
    /// `threshold`, and waits until every node reported the same keys.
    pub async fn keygen(
        &self,
        key_id: &str,
        schemes: &[Scheme],
        threshold: u16,
        timeout: Duration,
    ) -> Result<AgreedKeys, SdkError> {
        let body = self.keygen_body(key_id, schemes, threshold, timeout);
        self.agreed_keys(body, timeout).await
    }

    /// The body of a reshare request (see [`Client::reshare`]).
    pub fn reshare_body(
        &self,
        key_id: &str,
        schemes: &[Scheme],
        threshold: Option<u16>,
        participants: Option<Vec<String>>,
        lifetime: Duration,
    ) -> RequestBody {
        let mut body = self.new_request(RequestKind::Reshare, key_id, lifetime);
        body.schemes = schemes.to_vec();
        body.threshold = threshold;
        body.participants = participants;
        body
    }

    /// Moves the key `key_id` (the `schemes` given) to a new threshold and/or committee,
    /// keeping its public key and chain code: `threshold` (`None`: unchanged) and
    /// `participants`, the new committee's node ids **in key-index order** (`None`:
    /// unchanged). Waits until every manifest node answered: those of the old or new
    /// committee with the same new keys, the others as not concerned. The committee must be
    /// manifest nodes and the threshold fit it ([`check_committee`]).
    pub async fn reshare(
        &self,
        key_id: &str,
        schemes: &[Scheme],
        threshold: Option<u16>,
        participants: Option<Vec<String>>,
        timeout: Duration,
    ) -> Result<AgreedKeys, SdkError> {
        let body = self.reshare_body(key_id, schemes, threshold, participants, timeout);
        self.agreed_keys(body, timeout).await
    }

    /// The body of a refresh request (see [`Client::refresh`]).
    pub fn refresh_body(
        &self,
        key_id: &str,
        schemes: &[Scheme],
        lifetime: Duration,
    ) -> RequestBody {
        let mut body = self.new_request(RequestKind::Refresh, key_id, lifetime);
        body.schemes = schemes.to_vec();
        body
    }

    /// New shares of the key `key_id` (the `schemes` given) for the same committee and
    /// threshold: same public key, a new version. Waits as [`Client::reshare`] does.
    pub async fn refresh(
        &self,
        key_id: &str,
        schemes: &[Scheme],
        timeout: Duration,
    ) -> Result<AgreedKeys, SdkError> {
        let body = self.refresh_body(key_id, schemes, timeout);
        self.agreed_keys(body, timeout).await
    }

    /// The body of a delete request (see [`Client::delete`]).
    pub fn delete_body(&self, key_id: &str, schemes: &[Scheme], lifetime: Duration) -> RequestBody {
        let mut body = self.new_request(RequestKind::Delete, key_id, lifetime);
        body.schemes = schemes.to_vec();
        body
    }

    /// Deletes the key `key_id` (the `schemes` given) for good: every node erases its shares
    /// and keeps a tombstone. Irreversible. Waits until every manifest node confirmed.
    pub async fn delete(
        &self,
        key_id: &str,
        schemes: &[Scheme],
        timeout: Duration,
    ) -> Result<DeletedKey, SdkError> {
        let body = self.delete_body(key_id, schemes, timeout);
        match self.request(body, timeout).await? {
            Outcome::Deleted(deleted) => Ok(deleted),
            other => Err(unexpected(other.some_node())),
        }
    }

    async fn agreed_keys(
        &self,
        body: RequestBody,
        timeout: Duration,
    ) -> Result<AgreedKeys, SdkError> {
        match self.request(body, timeout).await? {
            Outcome::Keys(keys) => Ok(keys),
            other => Err(unexpected(other.some_node())),
        }
    }

    /// The body of a sign request (see [`Client::sign`]).
    pub fn sign_body(
        &self,
        key_id: &str,
        scheme: Scheme,
        payload: &[u8],
        payload_kind: PayloadKind,
        derivation_path: &[u32],
        lifetime: Duration,
    ) -> RequestBody {
        let mut body = self.new_request(RequestKind::Sign, key_id, lifetime);
        body.schemes = vec![scheme];
        body.payload = Some(payload.to_vec());
        body.payload_kind = Some(payload_kind);
        body.derivation_path = derivation_path.to_vec();
        body
    }

    /// Signs `payload` (a message the node digests, or a raw 32-byte digest, per
    /// `payload_kind`) with the key `key_id` of `scheme`, derived along `derivation_path`
    /// (empty: the root key), and returns the signature once the SDK verified it.
    pub async fn sign(
        &self,
        key_id: &str,
        scheme: Scheme,
        payload: &[u8],
        payload_kind: PayloadKind,
        derivation_path: &[u32],
        timeout: Duration,
    ) -> Result<VerifiedSignature, SdkError> {
        let body = self.sign_body(
            key_id,
            scheme,
            payload,
            payload_kind,
            derivation_path,
            timeout,
        );
        self.signature(body, timeout).await
    }

    /// Sends a sign request and waits for its verified signature.
    async fn signature(
        &self,
        body: RequestBody,
        timeout: Duration,
    ) -> Result<VerifiedSignature, SdkError> {
        match self.request(body, timeout).await? {
            Outcome::Signature(s) => Ok(*s),
            other => Err(unexpected(other.some_node())),
        }
    }

    /// The body of a sign request for a chain payload (see [`Client::sign_chain`]).
    #[allow(clippy::too_many_arguments)]
    pub fn sign_chain_body(
        &self,
        key_id: &str,
        scheme: Scheme,
        chain: &str,
        payload: &[u8],
        payload_kind: PayloadKind,
        derivation_path: &[u32],
        lifetime: Duration,
    ) -> RequestBody {
        let mut body = self.sign_body(
            key_id,
            scheme,
            payload,
            payload_kind,
            derivation_path,
            lifetime,
        );
        body.chain = Some(chain.to_owned());
        body
    }

    /// Signs a chain payload (`payload_kind` transaction, personal_message or typed_data)
    /// with the key `key_id` of `scheme`: every node decodes it with its own `chain` plugin,
    /// evaluates its policy on what it does, and signs what the plugin computed. Returns
    /// every signature (verified) and the plugin's signed output.
    #[allow(clippy::too_many_arguments)]
    pub async fn sign_chain(
        &self,
        key_id: &str,
        scheme: Scheme,
        chain: &str,
        payload: &[u8],
        payload_kind: PayloadKind,
        derivation_path: &[u32],
        timeout: Duration,
    ) -> Result<VerifiedSignature, SdkError> {
        let body = self.sign_chain_body(
            key_id,
            scheme,
            chain,
            payload,
            payload_kind,
            derivation_path,
            timeout,
        );
        self.signature(body, timeout).await
    }

    /// The body of an approval of the request whose hash is `request_hash` (see
    /// [`Client::approve`]). The approval is valid until the body expires: `valid_for`.
    pub fn approve_body(&self, request_hash: [u8; 32], valid_for: Duration) -> RequestBody {
        let mut body = self.new_request(RequestKind::Approve, APPROVAL_KEY_ID, valid_for);
        body.approves = Some(request_hash);
        body
    }

    /// Approves the request whose hash (SHA-256 of its body bytes) is `request_hash`, as
    /// this client's initiator: every node records the approval (an approver in a group the
    /// policy names counts toward that rule; the initiator of the request never counts as
    /// its own approver). Waits until every node acknowledged.
    pub async fn approve(
        &self,
        request_hash: [u8; 32],
        valid_for: Duration,
        timeout: Duration,
    ) -> Result<Acknowledged, SdkError> {
        let body = self.approve_body(request_hash, valid_for);
        match self.request(body, timeout).await? {
            Outcome::Acknowledged(a) => Ok(a),
            other => Err(unexpected(other.some_node())),
        }
    }

    /// The body of a rejection of the request whose hash is `request_hash` (see
    /// [`Client::reject`]), valid until the body expires: `valid_for`.
    pub fn reject_body(&self, request_hash: [u8; 32], valid_for: Duration) -> RequestBody {
        let mut body = self.new_request(RequestKind::Reject, APPROVAL_KEY_ID, valid_for);
        body.rejects = Some(request_hash);
        body
    }

    /// Rejects the request whose hash is `request_hash`, as this client's initiator: every
    /// node where the initiator is in an approver group the request waits for refuses it
    /// (`approval_rejected`). Waits until every node acknowledged.
    pub async fn reject(
        &self,
        request_hash: [u8; 32],
        valid_for: Duration,
        timeout: Duration,
    ) -> Result<Acknowledged, SdkError> {
        let body = self.reject_body(request_hash, valid_for);
        match self.request(body, timeout).await? {
            Outcome::Acknowledged(a) => Ok(a),
            other => Err(unexpected(other.some_node())),
        }
    }

    /// The body of a policy activation carrying the signed bundle file `bundle`.
    pub fn activate_policy_body(&self, bundle: &[u8], lifetime: Duration) -> RequestBody {
        let mut body = self.new_request(RequestKind::Policy, POLICY_KEY_ID, lifetime);
        body.payload = Some(bundle.to_vec());
        body
    }

    /// Asks every node to activate the signed policy bundle `bundle` (the file's bytes).
    /// Each node checks the policy administrators' signatures against the manifest and the
    /// bundle's predecessor itself; waits until every node accepted.
    pub async fn activate_policy(
        &self,
        bundle: &[u8],
        timeout: Duration,
    ) -> Result<Acknowledged, SdkError> {
        let body = self.activate_policy_body(bundle, timeout);
        match self.request(body, timeout).await? {
            Outcome::Acknowledged(a) => Ok(a),
            other => Err(unexpected(other.some_node())),
        }
    }

    /// The body of a status request (see [`Client::key_status`]).
    pub fn status_body(&self, key_id: &str, schemes: &[Scheme], lifetime: Duration) -> RequestBody {
        let mut body = self.new_request(RequestKind::Status, key_id, lifetime);
        body.schemes = schemes.to_vec();
        body
    }

    /// Asks every node for its own view of the key `key_id` (the `schemes` given, or every
    /// scheme if none): status, public key, version. Waits until every manifest node
    /// answered or `timeout` passed; nodes silent by then are listed as missing. Fails with
    /// [`SdkError::Timeout`] only if no node answered.
    pub async fn key_status(
        &self,
        key_id: &str,
        schemes: &[Scheme],
        timeout: Duration,
    ) -> Result<KeyStatusReport, SdkError> {
        let body = self.status_body(key_id, schemes, timeout);
        match self.request(body, timeout).await? {
            Outcome::KeyStatus(report) => Ok(report),
            other => Err(unexpected(other.some_node())),
        }
    }

    /// Submits `body` ([`Client::submit`]) and waits up to `timeout` for its outcome
    /// ([`Pending::wait`]).
    pub async fn request(&self, body: RequestBody, timeout: Duration) -> Result<Outcome, SdkError> {
        self.submit(body).await?.wait(timeout).await
    }

    /// Signs `body` with the initiator key and publishes it to
    /// its subject (`subjects::request_subject`; `Nats-Msg-Id` = request id). Results are routed to
    /// the returned [`Pending`] from before the publish, so none is missed. A reshare whose
    /// committee does not fit the manifest ([`check_committee`]) is not sent.
    pub async fn submit(&self, body: RequestBody) -> Result<Pending, SdkError> {
        if body.cluster_id != self.cluster || body.client_id != self.client_id {
            return Err(SdkError::Config(format!(
                "the request is for cluster '{}' and client '{}'; this client is '{}' of '{}'",
                body.cluster_id, body.client_id, self.client_id, self.cluster
            )));
        }
        if body.kind == RequestKind::Reshare {
            check_committee(&self.manifest, body.threshold, body.participants.as_deref())?;
        }
        let signed = self.initiator.sign_request(&body)?;
        let subject =
            subjects::request_subject(&self.cluster, body.kind.as_str()).map_err(config)?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let route = Route::open(&self.routes, &self.router, &body.request_id, sender);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", body.request_id.as_str());
        self.js
            .publish_with_headers(subject, headers, signed.to_json().into())
            .await
            .map_err(|e| SdkError::transport("publish request")(&e))?
            .await
            .map_err(|e| SdkError::transport("publish request (ack)")(&e))?;
        let collector = Collector::new(body, signed.hash(), &self.manifest);
        Ok(Pending {
            collector,
            manifest: Arc::clone(&self.manifest),
            receiver,
            _route: route,
        })
    }
}

/// The `key_id` an approve request carries (the body needs one; approvals name no key).
pub const APPROVAL_KEY_ID: &str = "approval";
/// The `key_id` a policy activation carries (the body needs one; it names no key).
pub const POLICY_KEY_ID: &str = "policy";

/// A published request whose results are being collected.
pub struct Pending {
    collector: Collector,
    manifest: Arc<VerifiedManifest>,
    receiver: mpsc::UnboundedReceiver<Vec<u8>>,
    _route: Route,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("ignored", &self.collector.ignored())
            .finish_non_exhaustive()
    }
}

impl Pending {
    /// The request's hash (SHA-256 of the body bytes sent): what approvers approve or reject.
    pub fn request_hash(&self) -> [u8; 32] {
        self.collector.request_hash()
    }

    /// Sign only: tolerate `n` refusals or failures while waiting for an `ok` (default
    /// `n - t_min`, with `t_min = n/2 + 1` the smallest threshold a keygen accepts; pass
    /// `n - t` when the key's threshold `t` is known).
    pub fn tolerate(mut self, n: usize) -> Self {
        self.collector.tolerate(n);
        self
    }

    /// Waits up to `timeout` for the request to complete (see the module docs for the rules).
    pub async fn wait(self, timeout: Duration) -> Result<Outcome, SdkError> {
        self.wait_with_notices(timeout, |_| {}).await
    }

    /// [`Pending::wait`], calling `notice` once per node and stage when a node says the
    /// request waits there (`pending` results: for approvals, with the rule and group in the
    /// message; then, time-locked, with the time it is carried out).
    pub async fn wait_with_notices(
        mut self,
        timeout: Duration,
        mut notice: impl FnMut(&NodeAnswer),
    ) -> Result<Outcome, SdkError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.receiver.recv()).await {
                Err(_elapsed) => return self.collector.timed_out(timeout),
                Ok(None) => {
                    return Err(SdkError::Transport {
                        operation: "read results",
                        detail: "the result consumer stopped".into(),
                    })
                }
                Ok(Some(bytes)) => match self.collector.offer(&self.manifest, &bytes) {
                    Step::Wait => {}
                    Step::Notice(answer) => notice(&answer),
                    Step::Done(outcome) => return Ok(outcome),
                    Step::Fail(e) => return Err(e),
                },
            }
        }
    }
}

/// A request's entry in the routing table, removed when the request is dropped; it keeps
/// the router reading while the request waits.
struct Route {
    routes: Routes,
    request_id: String,
    _router: Arc<Router>,
}

impl Route {
    fn open(
        routes: &Routes,
        router: &Arc<Router>,
        request_id: &str,
        sender: mpsc::UnboundedSender<Vec<u8>>,
    ) -> Self {
        routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(request_id.to_owned(), sender);
        Route {
            routes: Arc::clone(routes),
            request_id: request_id.to_owned(),
            _router: Arc::clone(router),
        }
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        self.routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.request_id);
    }
}

/// Sends each result to the request its subject names (`…res.<client>.<request_id>`);
/// results for requests nobody waits for are dropped (the waiting side re-checks the id).
async fn route_results(mut messages: consumer::pull::Ordered, routes: Routes) {
    while let Some(message) = messages.next().await {
        // The ordered consumer recreates itself after errors; keep reading.
        let Ok(message) = message else { continue };
        let Some(request_id) = message.subject.rsplit('.').next() else {
            continue;
        };
        let routes = routes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = routes.get(request_id) {
            let _ = sender.send(message.payload.to_vec());
        }
    }
}

async fn open_stream(
    js: &jetstream::Context,
    cluster: &str,
    name: &str,
) -> Result<jetstream::stream::Stream, SdkError> {
    use jetstream::context::GetStreamErrorKind;
    js.get_stream(name).await.map_err(|e| match e.kind() {
        GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
        {
            SdkError::StreamsMissing {
                cluster: cluster.to_owned(),
                stream: name.to_owned(),
            }
        }
        _ => SdkError::transport("open stream")(&e),
    })
}

fn check_config(
    cluster_id: &str,
    client_id: &str,
    initiator: &InitiatorKey,
    manifest: &VerifiedManifest,
) -> Result<(), SdkError> {
    if cluster_id != manifest.cluster_id() {
        return Err(SdkError::Config(format!(
            "cluster '{cluster_id}' but the manifest is for '{}'",
            manifest.cluster_id()
        )));
    }
    subjects::check_token("client id", client_id).map_err(config)?;
    match manifest.initiator(initiator.id()) {
        None => Err(SdkError::Config(format!(
            "initiator '{}' is not in the manifest of cluster '{cluster_id}': ask its \
             administrators to add it",
            initiator.id()
        ))),
        Some(listed) if listed.public_key != initiator.public_key() => {
            Err(SdkError::Config(format!(
                "the key of initiator '{}' is not the one the manifest lists: wrong key file?",
                initiator.id()
            )))
        }
        Some(_) => Ok(()),
    }
}

/// Checks a reshare's new committee against the manifest before it is sent: every
/// participant a manifest node, listed once, and, when the new threshold is given too, `t`
/// fitting the committee ([`crate::request::check_threshold`]). With only a threshold, the
/// committee is the key's current one, which the nodes check.
pub fn check_committee(
    manifest: &VerifiedManifest,
    threshold: Option<u16>,
    participants: Option<&[String]>,
) -> Result<(), RequestError> {
    let Some(participants) = participants else {
        return Ok(());
    };
    let members: Vec<&str> = manifest.nodes().iter().map(|n| n.node_id()).collect();
    for (i, p) in participants.iter().enumerate() {
        if !members.contains(&p.as_str()) {
            return Err(RequestError::InvalidRequest(format!(
                "participant '{p}' is not a node of the manifest (nodes: {})",
                members.join(", ")
            )));
        }
        if participants[..i].contains(p) {
            return Err(RequestError::InvalidRequest(format!(
                "participant '{p}' listed twice"
            )));
        }
    }
    match threshold {
        Some(t) => crate::request::check_threshold(t, participants.len()),
        None => Ok(()),
    }
}

fn config(e: subjects::InvalidToken) -> SdkError {
    SdkError::Config(e.to_string())
}

fn unexpected(node: &str) -> SdkError {
    SdkError::InvalidResult {
        node: node.to_owned(),
        reason: "an outcome of another kind than the request".into(),
    }
}
