//! Error codes: the closed list of reasons a node refuses a request or a request fails.
//!
//! Each code has one stable snake_case string, used on the wire (`code` in a result) and in
//! logs and metrics. Codes are chosen where the refusal is decided, never parsed out of an
//! error's text. A new code is a protocol change: it comes with a new result `version`.

use serde::{Deserialize, Serialize};

/// Why a request was refused or failed. The string form is the wire form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The message does not parse: bad JSON, base64 or hex, a missing or unknown field, a
    /// duplicated field, a value of the wrong type or length. Fix the client.
    Malformed,
    /// The body's `version` is not one this node reads.
    UnsupportedVersion,
    /// The initiator's signature does not verify over the body bytes.
    BadSignature,
    /// The initiator id is not in the cluster manifest.
    UnknownInitiator,
    /// The initiator is known but its roles do not allow this kind of request.
    NotAuthorized,
    /// The request's `expires_at_ms` has passed on the node's clock.
    Expired,
    /// The request's `created_at_ms` is later than the node's clock plus the allowed skew.
    NotYetValid,
    /// `expires_at_ms - created_at_ms` is longer than the node allows.
    LifetimeTooLong,
    /// This request id or nonce was already seen. Make a new request.
    Replayed,
    /// No usable key with this key id (and scheme).
    UnknownKey,
    /// A keygen (or reshare, refresh, delete) for this key id is still running.
    KeyInProgress,
    /// The key was deleted; it can never sign again and its id cannot be reused.
    KeyDeleted,
    /// A keygen for an existing key id asked for other schemes or another threshold.
    KeyExistsWithOtherParams,
    /// The threshold is impossible or below policy (`n >= 2` and `n/2 < t <= n`).
    InvalidThreshold,
    /// Well-formed but not meaningful: a field missing or forbidden for this kind, a value
    /// out of range, the wrong cluster.
    InvalidRequest,
    /// A scheme this node does not run.
    UnsupportedScheme,
    /// The chain named is not served by the node.
    UnsupportedChain,
    /// The chain plugin cannot decode the payload, or will not sign it (no input for the
    /// key, an unsafe sighash type, …); the message says why.
    InvalidPayload,
    /// The policy denies it.
    PolicyDenied,
    /// The policy allows it only with approvals that have not (yet) been given.
    ApprovalsRequired,
    /// An approver of a group whose approvals the request needed rejected it (a `reject`
    /// request), while it waited for approvals or, time-locked, for its delay (a veto); the
    /// message names the approver and the group. Final: a new request is needed.
    ApprovalRejected,
    /// Not a refusal: a `pending` notice that the request is approved and time-locked; it is
    /// carried out once its rule's delay has passed (the message says when), unless an
    /// approver vetoes it meanwhile. The node's final answer follows.
    TimeLocked,
    /// The initiator has as many requests waiting (for approvals or a delay) at the node as
    /// it keeps per initiator (`[cluster] max_waiting_per_initiator`); retry once some are
    /// decided.
    TooManyWaiting,
    /// A policy bundle was not activated: unsigned, under-signed, an unknown signer, older
    /// than or not a successor of the active bundle, or a policy that does not parse.
    PolicyBundleRefused,
    /// The node has no capacity now; retry later (the same request, if not expired).
    Busy,
    /// The session did not complete in time (a peer is down or slow).
    Timeout,
    /// The threshold protocol failed (a peer misbehaved or sent garbage).
    ProtocolFailed,
    /// The HSM refused or failed to seal or unseal.
    HsmFailure,
    /// The node stopped (crashed or restarted) while it handled the request, which did not
    /// complete there. Send a new request.
    Interrupted,
    /// A bug or an unexpected local failure; the node's log has the details.
    Internal,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: [ErrorCode; 30] = [
        ErrorCode::Malformed,
        ErrorCode::UnsupportedVersion,
        ErrorCode::BadSignature,
        ErrorCode::UnknownInitiator,
        ErrorCode::NotAuthorized,
        ErrorCode::Expired,
        ErrorCode::NotYetValid,
        ErrorCode::LifetimeTooLong,
        ErrorCode::Replayed,
        ErrorCode::UnknownKey,
        ErrorCode::KeyInProgress,
        ErrorCode::KeyDeleted,
        ErrorCode::KeyExistsWithOtherParams,
        ErrorCode::InvalidThreshold,
        ErrorCode::InvalidRequest,
        ErrorCode::UnsupportedScheme,
        ErrorCode::UnsupportedChain,
        ErrorCode::InvalidPayload,
        ErrorCode::PolicyDenied,
        ErrorCode::ApprovalsRequired,
        ErrorCode::ApprovalRejected,
        ErrorCode::TimeLocked,
        ErrorCode::TooManyWaiting,
        ErrorCode::PolicyBundleRefused,
        ErrorCode::Busy,
        ErrorCode::Timeout,
        ErrorCode::ProtocolFailed,
        ErrorCode::HsmFailure,
        ErrorCode::Interrupted,
        ErrorCode::Internal,
    ];

    /// The stable string form (also the wire form).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::UnknownInitiator => "unknown_initiator",
            ErrorCode::NotAuthorized => "not_authorized",
            ErrorCode::Expired => "expired",
            ErrorCode::NotYetValid => "not_yet_valid",
            ErrorCode::LifetimeTooLong => "lifetime_too_long",
            ErrorCode::Replayed => "replayed",
            ErrorCode::UnknownKey => "unknown_key",
            ErrorCode::KeyInProgress => "key_in_progress",
            ErrorCode::KeyDeleted => "key_deleted",
            ErrorCode::KeyExistsWithOtherParams => "key_exists_with_other_params",
            ErrorCode::InvalidThreshold => "invalid_threshold",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::UnsupportedScheme => "unsupported_scheme",
            ErrorCode::UnsupportedChain => "unsupported_chain",
            ErrorCode::InvalidPayload => "invalid_payload",
            ErrorCode::PolicyDenied => "policy_denied",
            ErrorCode::PolicyBundleRefused => "policy_bundle_refused",
            ErrorCode::ApprovalsRequired => "approvals_required",
            ErrorCode::ApprovalRejected => "approval_rejected",
            ErrorCode::TimeLocked => "time_locked",
            ErrorCode::TooManyWaiting => "too_many_waiting",
            ErrorCode::Busy => "busy",
            ErrorCode::Timeout => "timeout",
            ErrorCode::ProtocolFailed => "protocol_failed",
            ErrorCode::HsmFailure => "hsm_failure",
            ErrorCode::Interrupted => "interrupted",
            ErrorCode::Internal => "internal",
        }
    }

    /// Whether sending a *new* request with the same parameters may succeed without anyone
    /// changing anything (the failure was transient). The same request id never succeeds
    /// twice: retries need a new request id and nonce.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorCode::Busy
                | ErrorCode::Timeout
                | ErrorCode::KeyInProgress
                | ErrorCode::ProtocolFailed
                | ErrorCode::HsmFailure
                | ErrorCode::Interrupted
                | ErrorCode::ApprovalsRequired
                | ErrorCode::TooManyWaiting
                | ErrorCode::NotYetValid
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorCode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown error code '{s}'"))
    }
}
