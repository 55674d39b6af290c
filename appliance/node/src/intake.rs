//! Intake: what a node does with a request's bytes before anything else, and the refusal it
//! answers with when the request does not pass.
//!
//! In order: the signed wrapper parses; the initiator is in the cluster manifest and its
//! Ed25519 signature covers the exact body bytes; the body is for this cluster and arrived on
//! its kind's subject; it is in time (clock skew, expiry, lifetime); and its request id and
//! nonce were never seen (recorded atomically in the store — only *after* the signature
//! check, so nobody can poison the replay store with forged ids). Every refusal carries a
//! stable [`ErrorCode`]. A refusal is routed to the client only if the request names a
//! client id and request id that are valid tokens; a request too broken for that is only
//! logged.
//!
//! A request whose id names another request this node holds (waiting for approvals or
//! time-locked) is refused `invalid_request` before it is accepted.
//!
//! A `reject` request is the one exception to expiry: a rejection only ever stops something,
//! so one that arrives late (the node was down while it was valid) is still taken, up to
//! [`REJECTIONS_STAND_MS`] after its expiry, and a replay of it changes nothing.
//!
//! A replay of a request this node already handled is refused as `replayed` and nothing is
//! signed again; telling a JetStream redelivery of a request still in hand from a replay is
//! the daemon's job (it knows its sessions).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keyrack_client::codes::ErrorCode;
use keyrack_client::manifest::VerifiedManifest;
use keyrack_client::request::{
    request_hash, RequestError, RequestKind, SignedRequest, VerifiedRequest,
};
use keyrack_client::result::{ResultBody, SignedResult, Status};
use keyrack_client::subjects;

use crate::identity::NodeIdentity;
use crate::store::{ReplayEntry, Store, StoreError};

/// How long a recorded rejection stands, and how long after its own expiry a `reject` request
/// is still taken: longer than any request can wait at a node (its lifetime, then the
/// longest delay a policy may set).
pub const REJECTIONS_STAND_MS: u64 = keyrack_policy::MAX_DELAY_MS + 24 * 3600 * 1000;

/// Time rules for requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntakeLimits {
    /// How far in the future a request's creation time may be.
    pub max_clock_skew_ms: u64,
    /// The longest a request may live (expires − created).
    pub max_lifetime_ms: u64,
}

impl Default for IntakeLimits {
    fn default() -> Self {
        IntakeLimits {
            max_clock_skew_ms: 30_000,
            max_lifetime_ms: 600_000,
        }
    }
}

/// Where a refusal goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The request id the refusal answers.
    pub request_id: String,
    /// The client whose result subject it goes to.
    pub client_id: String,
    /// Hash of the body bytes it answers (lets the client drop answers to forged copies).
    pub request_hash: [u8; 32],
}

/// A request refused at intake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Why, as a stable code.
    pub code: ErrorCode,
    /// Why, for people.
    pub message: String,
    /// Where to answer, if the request says.
    pub route: Option<Route>,
}

/// The outcome of intake.
#[derive(Debug)]
pub enum Intake {
    /// Verified, in time, never seen: on to policy and the coordinator.
    Accepted(Box<VerifiedRequest>),
    /// Refused; nothing is done for it.
    Refused(Refusal),
}

/// Reads the routing fields of a body without trusting it (for refusals only).
pub(crate) fn route_of(body_bytes: &[u8]) -> Option<Route> {
    let value: serde_json::Value = serde_json::from_slice(body_bytes).ok()?;
    let request_id = value.get("request_id")?.as_str()?.to_owned();
    let client_id = value.get("client_id")?.as_str()?.to_owned();
    // Only ids that make valid subjects and message ids.
    subjects::result_subject("x", &client_id, &request_id).ok()?;
    Some(Route {
        request_id,
        client_id,
        request_hash: request_hash(body_bytes),
    })
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Checks a request that arrived on `subject` (see the module docs).
pub fn intake(
    bytes: &[u8],
    subject: &str,
    manifest: &VerifiedManifest,
    store: &Store,
    now: SystemTime,
    limits: IntakeLimits,
) -> Intake {
    let refuse = |code: ErrorCode, message: String, route: Option<Route>| {
        Intake::Refused(Refusal {
            code,
            message,
            route,
        })
    };
    let signed = match SignedRequest::parse(bytes) {
        Ok(s) => s,
        Err(e) => return refuse(e.code(), e.to_string(), None),
    };
    let route = route_of(signed.body_bytes());
    let request = match signed.verify_with(manifest) {
        Ok(r) => r,
        Err(e) => return refuse(e.code(), e.to_string(), route),
    };
    let expected = subjects::request_subject(manifest.cluster_id(), request.body.kind.as_str());
    if expected.as_deref() != Ok(subject) {
        return refuse(
            ErrorCode::InvalidRequest,
            format!(
                "a {} request arrived on {subject}",
                request.body.kind.as_str()
            ),
            route,
        );
    }
    let now_ms = millis(now);
    let rejection = request.body.kind == RequestKind::Reject;
    let expires_at_ms = request.body.expires_at_ms;
    match request.check_time(now_ms, limits.max_clock_skew_ms, limits.max_lifetime_ms) {
        Ok(()) => {}
        // A rejection is final: one that reaches this node late (it was down) still stops
        // what it rejects, as long as that could still be carried out.
        Err(RequestError::Expired { .. })
            if rejection && now_ms < expires_at_ms.saturating_add(REJECTIONS_STAND_MS) => {}
        Err(e) => return refuse(e.code(), e.to_string(), route),
    }
    // A request id names one request: while this node holds one (waiting for approvals or
    // time-locked), another request under its id is refused here, before it is accepted, so
    // that its refusal (published under its own de-duplication id) never shadows the held
    // request's outcome.
    match store.parked(&request.body.request_id) {
        Ok(Some(held)) if held.request_hash != request.hash() => {
            return refuse(
                ErrorCode::InvalidRequest,
                format!(
                    "request id {} names another request this node holds (hash {}): a request \
                     id names one request",
                    request.body.request_id,
                    hex::encode(held.request_hash)
                ),
                route,
            )
        }
        Ok(_) => {}
        Err(e) => return refuse(ErrorCode::Internal, format!("parked requests: {e}"), route),
    }
    let replay_until_ms = if rejection {
        expires_at_ms.saturating_add(REJECTIONS_STAND_MS)
    } else {
        expires_at_ms
    };
    let entry = ReplayEntry {
        request_id: &request.body.request_id,
        nonce: request.body.nonce.as_bytes(),
        initiator: &request.initiator,
        expires_at: UNIX_EPOCH + Duration::from_millis(replay_until_ms),
    };
    match store.check_and_record(&entry, now) {
        Ok(()) => Intake::Accepted(Box::new(request)),
        Err(StoreError::Replay { .. }) => refuse(
            ErrorCode::Replayed,
            "this request was already received".into(),
            route,
        ),
        Err(StoreError::Expired { .. }) => {
            refuse(ErrorCode::Expired, "the request expired".into(), route)
        }
        Err(e) => refuse(ErrorCode::Internal, format!("replay store: {e}"), route),
    }
}

/// The signed refusal result for `refusal`, if it can be routed.
pub fn refusal_result(
    refusal: &Refusal,
    node: &NodeIdentity,
    now: SystemTime,
) -> Option<SignedResult> {
    let route = refusal.route.as_ref()?;
    answer(
        route,
        node,
        Status::Refused,
        refusal.code,
        &refusal.message,
        now,
    )
}

/// A signed result with `status` (refused or failed) and `code` for the request `route`
/// names.
pub fn answer(
    route: &Route,
    node: &NodeIdentity,
    status: Status,
    code: ErrorCode,
    message: &str,
    now: SystemTime,
) -> Option<SignedResult> {
    let body = ResultBody {
        version: 1,
        request_id: route.request_id.clone(),
        request_hash: route.request_hash,
        node_id: node.node_id().to_owned(),
        client_id: route.client_id.clone(),
        status,
        code: Some(code),
        message: message.to_owned(),
        keys: vec![],
        signature: None,
        signatures: vec![],
        signed_payload: None,
        at_ms: millis(now),
    };
    match body.sign(node.signing_key()) {
        Ok(signed) => Some(signed),
        Err(e) => {
            tracing::error!(error = %e, "cannot sign a result");
            None
        }
    }
}
