//! The node's HTTP API: its routes and the JSON each returns (served by the node, read by the
//! console and by monitoring). docs/API.md lists the routes with examples.
//!
//! Every route but [`HEALTHZ`] and [`READYZ`] needs `Authorization: Bearer <token>`, the
//! token the node's `api-token` file holds (written by `keyrack init`). Errors are
//! [`ApiError`] with an HTTP status. Byte strings (public keys, hashes) are lower-case hex;
//! times are Unix milliseconds.

use serde::{Deserialize, Serialize};

/// Liveness: 200 `ok` while the process serves HTTP (no token).
pub const HEALTHZ: &str = "/healthz";
/// Readiness: 200 with a [`Readiness`] when the node can take requests, else 503 with the
/// same body naming what is missing (no token).
pub const READYZ: &str = "/readyz";
/// Metrics in the OpenMetrics 1.0 text format (Prometheus reads it).
pub const METRICS: &str = "/metrics";
/// [`NodeStatus`].
pub const STATUS: &str = "/v1/status";
/// [`Peers`].
pub const PEERS: &str = "/v1/peers";
/// [`BackendHealth`] (checked when asked: one HSM round trip).
pub const BACKEND: &str = "/v1/backend";
/// [`Keys`]; `?search=TEXT` keeps keys whose id contains TEXT (case-insensitive).
pub const KEYS: &str = "/v1/keys";
/// [`Sessions`]; `?limit=N` recent sessions (default 50, at most 500).
pub const SESSIONS: &str = "/v1/sessions";
/// [`Pools`].
pub const POOLS: &str = "/v1/pools";
/// GET: [`Approvals`] (the requests waiting for approvals at this node). POST: a signed
/// `approve` or `reject` request ([`SubmitRequest`]), published for every node; answers
/// 202 with [`Submitted`].
pub const APPROVALS: &str = "/v1/approvals";
/// [`Policies`].
pub const POLICIES: &str = "/v1/policies";
/// [`AuditPage`]; `?after=SEQ&limit=N` (default after 0, limit 100, at most 1000).
pub const AUDIT: &str = "/v1/audit";
/// [`AuditVerification`] of the whole log.
pub const AUDIT_VERIFY: &str = "/v1/audit/verify";

/// The body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// A stable code: `unauthorized`, `bad_request`, `forbidden`, `not_found`, `unavailable`,
    /// `internal`.
    pub error: String,
    /// What was wrong, for a person.
    pub message: String,
}

/// `/readyz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// Whether the node can take requests (every check passed).
    pub ready: bool,
    /// Each check: `nats`, `store`, `hsm`, `policy`.
    pub checks: Vec<Check>,
}

/// One readiness check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// `/v1/status`: this node at a glance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// This node's id.
    pub node_id: String,
    /// The cluster's id.
    pub cluster_id: String,
    /// The keyrack version the node runs.
    pub software: String,
    /// When the node started.
    pub started_at_ms: u64,
    /// The node's clock when it answered.
    pub now_ms: u64,
    /// The current cluster manifest.
    pub manifest: ManifestInfo,
    /// The node's NATS connection.
    pub nats: NatsInfo,
    /// The HSM backend, as last checked (see [`BACKEND`] for a fresh check).
    pub backend: BackendHealth,
    /// The active policy bundle, if any.
    pub policy: Option<BundleInfo>,
    /// Requests this node is handling now.
    pub requests_in_flight: u64,
    /// Protocol sessions this node takes part in now.
    pub sessions_live: u64,
    /// Requests waiting for approvals at this node.
    pub approvals_waiting: u64,
    /// Signing throughput and latency over the last minutes.
    pub activity: Activity,
}

/// The current cluster manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestInfo {
    /// Its version.
    pub version: u64,
    /// Its hash.
    pub hash: String,
    /// The member nodes.
    pub nodes: Vec<String>,
    /// The initiators (id and roles).
    pub initiators: Vec<InitiatorInfo>,
}

/// An initiator the manifest lists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitiatorInfo {
    /// Its id.
    pub id: String,
    /// Its roles (`policy-admin`, …).
    pub roles: Vec<String>,
}

/// The node's NATS connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatsInfo {
    /// `connected`, `pending` (reconnecting) or `disconnected`.
    pub state: String,
    /// The server URLs the node was given.
    pub servers: Vec<String>,
}

/// The HSM backend's health.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendHealth {
    /// `pkcs11`, `tpm`, `yubihsm` or `soft`.
    pub backend: String,
    /// The sealing key (token/label, handle, object id).
    pub key_id: String,
    /// Whether the last check sealed and unsealed a probe.
    pub ok: bool,
    /// What the check found (the error, if it failed).
    pub detail: String,
    /// How long the check took, in milliseconds.
    pub latency_ms: f64,
    /// When it was checked.
    pub checked_at_ms: u64,
}

/// Signing activity in fixed buckets, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// The width of a bucket, in seconds.
    pub bucket_secs: u64,
    /// Signatures this node took part in, per bucket.
    pub signatures: Vec<u64>,
    /// Mean signing latency (request received to result published) per bucket, in
    /// milliseconds; 0 where nothing was signed.
    pub latency_ms: Vec<u64>,
}

/// `/v1/peers`: every member of the manifest, as this node hears them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peers {
    /// One per member, in manifest order.
    pub peers: Vec<Peer>,
}

/// A member node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Its id.
    pub node_id: String,
    /// Whether it is the node answering.
    pub me: bool,
    /// Whether its heartbeats arrive (always true for the node answering).
    pub live: bool,
    /// Milliseconds since its last heartbeat, if one was ever heard.
    pub last_heard_ms_ago: Option<u64>,
}

/// `/v1/keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    /// One per (key id, scheme), ordered by key id then scheme.
    pub keys: Vec<KeyView>,
}

/// A key as this node holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    /// The key id.
    pub key_id: String,
    /// `ecdsa-secp256k1`, `ed25519` or `schnorr-secp256k1`.
    pub scheme: String,
    /// `PENDING`, `READY`, `ERROR` or `DELETED`.
    pub status: String,
    /// Its version (raised by each reshare and refresh).
    pub version: u32,
    /// Signers needed.
    pub threshold: u16,
    /// The nodes holding shares.
    pub participants: Vec<String>,
    /// The public key (empty until READY).
    pub public_key: String,
    /// The chain code child keys are derived with (hex; empty until READY).
    #[serde(default)]
    pub chain_code: String,
    /// When it was created.
    pub created_at_ms: u64,
    /// Why it failed (status `ERROR`).
    pub error: Option<String>,
    /// Its addresses on each chain whose plugin takes the scheme (root key).
    pub addresses: Vec<AddressView>,
}

/// An address of a key on one chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressView {
    /// The chain plugin (`evm`, `bitcoin`, `solana`).
    pub chain: String,
    /// The address (canonical text form of the chain).
    pub address: String,
}

/// `/v1/sessions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sessions {
    /// Requests being handled now, oldest first.
    pub live: Vec<LiveRequest>,
    /// Sessions recorded in the store, newest first.
    pub recent: Vec<SessionView>,
}

/// A request this node is handling now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveRequest {
    /// The request id.
    pub request_id: String,
    /// `keygen`, `sign`, `reshare`, …
    pub kind: String,
    /// The key id.
    pub key_id: String,
    /// The initiator.
    pub initiator: String,
    /// When this node took it.
    pub started_at_ms: u64,
    /// Where it is: `checking`, `deciding`, `waiting for approvals`, `handshake`,
    /// `running`; `pool refill` for the background sessions that fill presignature pools.
    pub phase: String,
    /// Its protocol sessions under way at this node.
    pub sessions: Vec<LiveSession>,
}

/// A protocol session under way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveSession {
    /// The session id (hex).
    pub session_id: String,
    /// The participants, in session order.
    pub participants: Vec<String>,
    /// The highest protocol round this node has sent or received a message of.
    pub round: u16,
    /// Protocol messages this node sent.
    pub sent: u64,
    /// Protocol messages delivered to this node.
    pub received: u64,
}

/// A session the store recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    /// The session id.
    pub session_id: String,
    /// The request it served.
    pub request_id: String,
    /// `keygen`, `sign`, …
    pub kind: String,
    /// The key, if the session was about one.
    pub key_id: Option<String>,
    /// The scheme, if the session was about one key.
    pub scheme: Option<String>,
    /// `running`, `completed` or `failed`.
    pub state: String,
    /// When it started.
    pub started_at_ms: u64,
    /// When it ended.
    pub finished_at_ms: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// `/v1/pools`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pools {
    /// Presignatures (FROST nonces) ready per (key, scheme, signer set).
    pub presignatures: Vec<PoolView>,
    /// Sealed safe-prime sets ready for ECDSA committee setup.
    pub primes: u64,
}

/// One presignature pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolView {
    /// The key id.
    pub key_id: String,
    /// The scheme.
    pub scheme: String,
    /// The signer set the presignatures are for.
    pub signers: Vec<String>,
    /// How many are ready.
    pub available: u64,
}

/// `/v1/approvals`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Approvals {
    /// Requests waiting for approvals at this node, oldest first.
    pub waiting: Vec<WaitingRequest>,
}

/// A request the policy holds at this node: waiting for approvals, or approved and
/// time-locked (carried out at `run_at_ms` unless an approver vetoes it meanwhile).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WaitingRequest {
    /// The request id.
    pub request_id: String,
    /// The hash an approver signs (SHA-256 of the request body).
    pub request_hash: String,
    /// What is asked: `sign`, `keygen`, `reshare`, `refresh`, `delete` or `status`
    /// (`keyrack_client::request::RequestKind`); `sign` when absent.
    #[serde(default = "sign_kind")]
    pub kind: String,
    /// Where it stands: waiting for approvals, or approved and time-locked.
    #[serde(default)]
    pub state: WaitState,
    /// A time-locked request: when it is carried out (ms since the Unix epoch), unless a
    /// member of an approver group it needed rejects it first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at_ms: Option<u64>,
    /// Who asked.
    pub initiator: String,
    /// The key.
    pub key_id: String,
    /// The scheme (the first of `schemes`).
    pub scheme: String,
    /// Every scheme the request names (a keygen or reshare may name several).
    #[serde(default)]
    pub schemes: Vec<String>,
    /// The chain plugin that decoded the payload, if any.
    pub chain: Option<String>,
    /// When it started waiting.
    pub waiting_since_ms: u64,
    /// When it expires (approvals must come before).
    pub expires_at_ms: u64,
    /// What the chain plugin decoded (`keyrack_plugin::Intent` as JSON), if anything.
    pub intent: serde_json::Value,
    /// The policy's decision: outcome and every rule's verdict (`keyrack_policy::Decision`
    /// as JSON).
    pub decision: serde_json::Value,
    /// The approvals this node holds for it.
    pub approvals: Vec<ApprovalView>,
    /// The request as its initiator signed it (wire JSON), for an approver to check the
    /// hash, the signature and the intent before signing; absent for a request a node
    /// recorded before it kept them.
    #[serde(default)]
    pub request: Option<String>,
}

fn sign_kind() -> String {
    "sign".into()
}

/// Where a request the policy holds stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitState {
    /// It needs (more) approvals, before it expires.
    #[default]
    WaitingForApprovals,
    /// Approved; carried out at `run_at_ms` unless vetoed meanwhile.
    TimeLocked,
}

/// An approval a node holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalView {
    /// The approver (an initiator id).
    pub approver: String,
    /// `approve` or `reject`.
    pub verdict: String,
    /// Until when it counts.
    pub expires_at_ms: u64,
}

/// POST `/v1/approvals`: a signed `approve` or `reject` request, as an initiator's SDK
/// signs it (`keyrack_client::request::SignedRequest` in JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// The signed request's JSON (the bytes published to NATS).
    pub signed_request: String,
}

/// The answer to a submitted request: it was checked and published for every node, and
/// the nodes' signed results for it that arrived while the node waited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// The request id.
    pub request_id: String,
    /// The NATS subject it was published on.
    pub subject: String,
    /// The signed results the nodes published for the request
    /// (`keyrack.<cluster>.res.<client_id>.<request_id>`), each in its wire JSON
    /// ([`crate::result::SignedResult`]): at most one per node, gathered until every node
    /// of the manifest answered or the node's wait (10 s) ran out. Only what verifies under
    /// the approver's own manifest and answers the request sent counts: the node passing
    /// them on cannot forge another node's signature. Empty from nodes older than this
    /// field.
    #[serde(default)]
    pub results: Vec<String>,
}

/// `/v1/policies`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policies {
    /// The active bundle, if any.
    pub active: Option<BundleInfo>,
    /// Every bundle this node activated, newest first.
    pub history: Vec<BundleInfo>,
}

/// A policy bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleInfo {
    /// Its version.
    pub version: u64,
    /// Its hash.
    pub hash: String,
    /// The hash of the bundle it succeeds (empty for the first).
    pub previous: String,
    /// The policy's description (its `description` line; empty if none).
    pub description: String,
    /// Its rules' ids.
    pub rules: Vec<String>,
    /// The policy admins who signed it.
    pub signers: Vec<String>,
    /// When this node activated it.
    pub activated_at_ms: u64,
}

/// `/v1/audit`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    /// The entries after the `after` sequence number, oldest first.
    pub entries: Vec<AuditEntryView>,
    /// The sequence number of the log's last entry (0 if empty).
    pub head_seq: u64,
    /// The `after` to ask for the next page (absent at the end).
    pub next: Option<u64>,
}

/// One audit entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntryView {
    /// Its sequence number (from 1).
    pub seq: u64,
    /// When it was appended.
    pub at_ms: u64,
    /// `decision`, `outcome`, `policy`, `approval`, …
    pub kind: String,
    /// The request it is about.
    pub request_id: Option<String>,
    /// The entry.
    pub entry: serde_json::Value,
    /// Its hash (links the next entry).
    pub hash: String,
}

/// `/v1/audit/verify`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerification {
    /// Whether every entry's hash, link and node signature check.
    pub ok: bool,
    /// Entries checked.
    pub entries: u64,
    /// The last entry's hash (empty if the log is empty).
    pub head_hash: String,
    /// Where the chain breaks, if it does.
    pub broken_at: Option<u64>,
    /// Why.
    pub reason: Option<String>,
}
