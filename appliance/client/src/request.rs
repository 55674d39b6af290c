//! Client requests: the body an initiator signs, the signed wire form, and the checks a node
//! makes before it acts (shape, signature over the exact bytes, fields, time).
//!
//! Wire form (one NATS message, JSON object, exactly these three members):
//!
//! ```json
//! {"initiator": "<id>", "body": "<base64 of the body bytes>", "signature": "<128 hex>"}
//! ```
//!
//! The signature is Ed25519 by the initiator's key over `"keyrack/v1/request" ‖ 0x00 ‖ body
//! bytes`. The body is a JSON object (see [`RequestBody`] and docs/PROTOCOL.md). The node
//! checks the signature over the bytes it received and only then parses them; nothing is
//! re-serialised to verify. This module never touches NATS or the node's stores: replay
//! detection, roles and policy are the node's.

use crate::codes::ErrorCode;
use crate::manifest::VerifiedManifest;
use crate::scheme::Scheme;
use crate::subjects::is_token;
use crate::wire;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::path::Path;
use zeroize::Zeroizing;

/// The body version written and read.
pub const VERSION: u32 = 1;
/// The domain separator of request signatures (the 0x00 included).
pub const DOMAIN: &[u8] = b"keyrack/v1/request\0";
/// The largest request message accepted, in bytes (the whole JSON wire form).
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;
/// The largest `payload`, in bytes (before hex).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// The deepest derivation path.
pub const MAX_DERIVATION_DEPTH: usize = 32;
/// The largest key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 128;

/// Why a request is refused. [`RequestError::code`] is the code a refusal result carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The wire form or the body does not parse.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A body version this build does not read.
    #[error("request body version {0} is not supported (this build reads {VERSION})")]
    UnsupportedVersion(u64),
    /// The signature does not verify over the body bytes.
    #[error("request signature by '{0}' does not verify")]
    BadSignature(String),
    /// The initiator is not in the manifest.
    #[error("initiator '{0}' is not in the cluster manifest")]
    UnknownInitiator(String),
    /// Expired on the node's clock.
    #[error("request expired at {expires_at_ms} ms (now {now_ms} ms)")]
    Expired {
        /// The request's expiry.
        expires_at_ms: u64,
        /// The node's clock.
        now_ms: u64,
    },
    /// Created in the future beyond the allowed skew.
    #[error("request created at {created_at_ms} ms is in the future (now {now_ms} ms, skew allowed {max_clock_skew_ms} ms)")]
    NotYetValid {
        /// The request's creation time.
        created_at_ms: u64,
        /// The node's clock.
        now_ms: u64,
        /// The skew allowed.
        max_clock_skew_ms: u64,
    },
    /// Lives longer than allowed.
    #[error("request lifetime {lifetime_ms} ms exceeds the maximum {max_lifetime_ms} ms")]
    LifetimeTooLong {
        /// `expires_at_ms - created_at_ms`.
        lifetime_ms: u64,
        /// The maximum allowed.
        max_lifetime_ms: u64,
    },
    /// A threshold that cannot work.
    #[error("invalid threshold: {0}")]
    InvalidThreshold(String),
    /// Well-formed but not meaningful for its kind.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl RequestError {
    /// The error code a refusal result carries for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            RequestError::Malformed(_) => ErrorCode::Malformed,
            RequestError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            RequestError::BadSignature(_) => ErrorCode::BadSignature,
            RequestError::UnknownInitiator(_) => ErrorCode::UnknownInitiator,
            RequestError::Expired { .. } => ErrorCode::Expired,
            RequestError::NotYetValid { .. } => ErrorCode::NotYetValid,
            RequestError::LifetimeTooLong { .. } => ErrorCode::LifetimeTooLong,
            RequestError::InvalidThreshold(_) => ErrorCode::InvalidThreshold,
            RequestError::InvalidRequest(_) => ErrorCode::InvalidRequest,
        }
    }
}

fn invalid(msg: impl Into<String>) -> RequestError {
    RequestError::InvalidRequest(msg.into())
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Create a key (one per scheme listed) under `key_id`.
    Keygen,
    /// Sign `payload` with the key `key_id` of the one scheme listed.
    Sign,
    /// Move the key's shares to a new committee and/or threshold.
    Reshare,
    /// New shares for the same key and committee.
    Refresh,
    /// Every node erases its share; the key can never sign again.
    Delete,
    /// An approver's approval of another request (by its request hash).
    Approve,
    /// An approver's rejection of another request (by its request hash): the request is
    /// refused (`approval_rejected`) at every node where the approver's group could have
    /// approved it.
    Reject,
    /// Each node reports its own view of the key `key_id` (status, public key, version) from
    /// its store: no session, nothing signed but the result.
    Status,
    /// Activate a policy bundle (`payload`: the signed bundle file). Every node verifies the
    /// policy administrators' signatures itself.
    Policy,
}

impl RequestKind {
    /// Every kind.
    pub const ALL: [RequestKind; 9] = [
        RequestKind::Keygen,
        RequestKind::Sign,
        RequestKind::Reshare,
        RequestKind::Refresh,
        RequestKind::Delete,
        RequestKind::Approve,
        RequestKind::Reject,
        RequestKind::Status,
        RequestKind::Policy,
    ];

    /// The wire form, also the last token of the request subject.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Keygen => "keygen",
            RequestKind::Sign => "sign",
            RequestKind::Reshare => "reshare",
            RequestKind::Refresh => "refresh",
            RequestKind::Delete => "delete",
            RequestKind::Approve => "approve",
            RequestKind::Reject => "reject",
            RequestKind::Status => "status",
            RequestKind::Policy => "policy",
        }
    }
}

/// What an approver says about a request waiting for approvals: an `approve` request
/// approves it, a `reject` request rejects it. Its name (`approve` / `reject`) is the kind's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Counts toward the request's approvals.
    Approve,
    /// Refuses the request (from a member of the approver group it waits for).
    Reject,
}

impl Verdict {
    /// `approve` or `reject`.
    pub fn as_str(self) -> &'static str {
        self.kind().as_str()
    }

    /// The request kind that carries it.
    pub fn kind(self) -> RequestKind {
        match self {
            Verdict::Approve => RequestKind::Approve,
            Verdict::Reject => RequestKind::Reject,
        }
    }

    /// Reads [`Verdict::as_str`]'s form.
    pub fn parse(text: &str) -> Option<Self> {
        [Verdict::Approve, Verdict::Reject]
            .into_iter()
            .find(|v| v.as_str() == text)
    }
}

/// What the `payload` of a sign request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadKind {
    /// A message or transaction: the node computes the digest itself (chain plugin or the
    /// scheme's own hashing).
    Message,
    /// A raw 32-byte digest, signed as given. Honoured only where policy allows raw signing
    /// for the key; the node decides.
    Digest,
    /// A chain transaction (`chain` says which): unsigned EVM transaction, Bitcoin PSBT,
    /// Solana transaction message. The node's chain plugin computes what to sign.
    Transaction,
    /// An EIP-191 personal message (`chain` = `evm`).
    PersonalMessage,
    /// EIP-712 typed data, the JSON of `eth_signTypedData_v4` (`chain` = `evm`).
    TypedData,
}

impl PayloadKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadKind::Message => "message",
            PayloadKind::Digest => "digest",
            PayloadKind::Transaction => "transaction",
            PayloadKind::PersonalMessage => "personal_message",
            PayloadKind::TypedData => "typed_data",
        }
    }

    /// Whether this kind is decoded by a chain plugin (and so needs `chain`).
    pub fn is_chain(self) -> bool {
        matches!(
            self,
            PayloadKind::Transaction | PayloadKind::PersonalMessage | PayloadKind::TypedData
        )
    }
}

/// A request body: the JSON object the initiator signs. Field order on the wire is free
/// (the signature covers the bytes, whatever their order); [`InitiatorKey::sign_request`]
/// writes the fields in the order declared here. Unknown and duplicated fields are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    /// Body version: 1.
    pub version: u32,
    /// 32 lowercase hex (16 random bytes): names the request everywhere.
    pub request_id: String,
    /// What is asked.
    pub kind: RequestKind,
    /// The cluster this request is for (a token).
    pub cluster_id: String,
    /// The key (wallet) id: 1-128 of `A-Z a-z 0-9 . _ : -`, starting with a letter or digit.
    pub key_id: String,
    /// The schemes concerned (distinct): keygen 1-3, sign exactly 1, reshare / refresh /
    /// delete at least 1, approve and policy none, status any (none: every scheme of the key).
    pub schemes: Vec<Scheme>,
    /// keygen: the threshold `t` (required). reshare: the new threshold (optional, absent =
    /// unchanged). Other kinds: absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u16>,
    /// reshare: the new committee, node ids (optional, absent = unchanged). Other kinds:
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participants: Option<Vec<String>>,
    /// sign: what to sign (required, 1..=65536 bytes; exactly 32 for a digest), as hex.
    /// policy: the signed policy bundle file (required). Other kinds: absent.
    #[serde(
        default,
        with = "wire::hex_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub payload: Option<Vec<u8>>,
    /// sign: what `payload` is (required). Other kinds: absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_kind: Option<PayloadKind>,
    /// sign: the chain whose plugin decodes the payload (`evm`, `bitcoin`, `solana`):
    /// required for the chain payload kinds, absent for `message` and `digest`. Other kinds:
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// sign: the non-hardened derivation path (each index < 2^31, at most 32), empty or
    /// absent = the root key. Other kinds: absent or empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub derivation_path: Vec<u32>,
    /// approve: the request hash (64 lowercase hex) of the request approved. Other kinds:
    /// absent.
    #[serde(
        default,
        with = "wire::hex_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub approves: Option<[u8; 32]>,
    /// reject: the request hash (64 lowercase hex) of the request rejected. Other kinds:
    /// absent.
    #[serde(
        default,
        with = "wire::hex_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub rejects: Option<[u8; 32]>,
    /// keygen: create the key even if its id belongs to a deleted key (a new key under the
    /// old name). Absent or false: a deleted id is refused (`key_deleted`). Other kinds:
    /// absent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reuse_deleted_id: bool,
    /// Where results go (a token; part of the result subject).
    pub client_id: String,
    /// 32 lowercase hex (16 random bytes), for the replay store.
    pub nonce: String,
    /// When the initiator made the request, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// After this instant (ms since the Unix epoch, node clock) the request is refused.
    pub expires_at_ms: u64,
}

/// Checks a key id: 1-128 of `A-Z a-z 0-9 . _ : -`, starting with a letter or digit.
pub fn is_valid_key_id(key_id: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&key_id.len())
        && key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        && key_id
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

/// Checks a threshold `t` for a committee of `n`: `n >= 2` and `n/2 < t <= n` (a majority
/// must sign).
pub fn check_threshold(t: u16, n: usize) -> Result<(), RequestError> {
    let t_n = usize::from(t);
    if n < 2 || t == 0 || t_n > n || 2 * t_n <= n {
        return Err(RequestError::InvalidThreshold(format!(
            "threshold {t} with {n} nodes: need n >= 2 and {n}/2 < t <= {n}"
        )));
    }
    Ok(())
}

impl RequestBody {
    /// A body for `kind` with a fresh random request id and nonce, created at `now_ms` and
    /// expiring `lifetime_ms` later. Fill the kind's fields, then sign it with
    /// [`InitiatorKey::sign_request`].
    pub fn new(
        kind: RequestKind,
        cluster_id: &str,
        key_id: &str,
        client_id: &str,
        now_ms: u64,
        lifetime_ms: u64,
    ) -> Self {
        RequestBody {
            version: VERSION,
            request_id: wire::random_id(),
            kind,
            cluster_id: cluster_id.to_owned(),
            key_id: key_id.to_owned(),
            schemes: Vec::new(),
            threshold: None,
            participants: None,
            payload: None,
            payload_kind: None,
            chain: None,
            derivation_path: Vec::new(),
            approves: None,
            rejects: None,
            reuse_deleted_id: false,
            client_id: client_id.to_owned(),
            nonce: wire::random_id(),
            created_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(lifetime_ms),
        }
    }

    /// Checks every field and the per-kind rules (not time: see [`RequestBody::check_time`]).
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.version != VERSION {
            return Err(RequestError::UnsupportedVersion(self.version.into()));
        }
        if !wire::is_hex32(&self.request_id) {
            return Err(invalid("request_id must be 32 lowercase hex digits"));
        }
        if !wire::is_hex32(&self.nonce) {
            return Err(invalid("nonce must be 32 lowercase hex digits"));
        }
        if !is_token(&self.cluster_id) {
            return Err(invalid(format!("invalid cluster_id '{}'", self.cluster_id)));
        }
        if !is_token(&self.client_id) {
            return Err(invalid(format!(
                "invalid client_id '{}': use 1-64 of a-z 0-9 - _",
                self.client_id
            )));
        }
        if !is_valid_key_id(&self.key_id) {
            return Err(invalid(format!(
                "invalid key_id '{}': use 1-128 of A-Z a-z 0-9 . _ : -",
                self.key_id
            )));
        }
        if self.expires_at_ms <= self.created_at_ms {
            return Err(invalid("expires_at_ms must be after created_at_ms"));
        }
        let mut seen = Vec::new();
        for s in &self.schemes {
            if seen.contains(s) {
                return Err(invalid(format!("scheme {s} listed twice")));
            }
            seen.push(*s);
        }
        let n_schemes = self.schemes.len();
        let kind = self.kind.as_str();
        let forbid = |present: bool, field: &str| {
            if present {
                Err(invalid(format!(
                    "{field} is not allowed in a {kind} request"
                )))
            } else {
                Ok(())
            }
        };
        let is_sign = self.kind == RequestKind::Sign;
        forbid(
            !is_sign && self.kind != RequestKind::Policy && self.payload.is_some(),
            "payload",
        )?;
        forbid(!is_sign && self.payload_kind.is_some(), "payload_kind")?;
        forbid(!is_sign && self.chain.is_some(), "chain")?;
        forbid(
            !is_sign && !self.derivation_path.is_empty(),
            "derivation_path",
        )?;
        forbid(
            self.kind != RequestKind::Approve && self.approves.is_some(),
            "approves",
        )?;
        forbid(
            self.kind != RequestKind::Reject && self.rejects.is_some(),
            "rejects",
        )?;
        forbid(
            self.kind != RequestKind::Reshare && self.participants.is_some(),
            "participants",
        )?;
        forbid(
            self.kind != RequestKind::Keygen && self.reuse_deleted_id,
            "reuse_deleted_id",
        )?;
        forbid(
            !matches!(self.kind, RequestKind::Keygen | RequestKind::Reshare)
                && self.threshold.is_some(),
            "threshold",
        )?;
        match self.kind {
            RequestKind::Keygen => {
                if n_schemes == 0 {
                    return Err(invalid("keygen needs at least one scheme"));
                }
                match self.threshold {
                    None => return Err(invalid("keygen needs a threshold")),
                    Some(0) => return Err(RequestError::InvalidThreshold("threshold 0".into())),
                    Some(_) => {}
                }
            }
            RequestKind::Sign => {
                if n_schemes != 1 {
                    return Err(invalid("sign needs exactly one scheme"));
                }
                let payload = self
                    .payload
                    .as_ref()
                    .ok_or_else(|| invalid("sign needs a payload"))?;
                if payload.is_empty() || payload.len() > MAX_PAYLOAD_BYTES {
                    return Err(invalid(format!(
                        "payload must be 1..={MAX_PAYLOAD_BYTES} bytes"
                    )));
                }
                match self.payload_kind {
                    None => return Err(invalid("sign needs a payload_kind")),
                    Some(PayloadKind::Digest) if payload.len() != 32 => {
                        return Err(invalid("a digest payload must be 32 bytes"))
                    }
                    Some(kind) if kind.is_chain() && self.chain.is_none() => {
                        return Err(invalid(format!(
                            "a {} payload needs a chain",
                            kind.as_str()
                        )))
                    }
                    Some(kind) if !kind.is_chain() && self.chain.is_some() => {
                        return Err(invalid(format!(
                            "a {} payload has no chain (chains decode transaction, \
                             personal_message and typed_data payloads)",
                            kind.as_str()
                        )))
                    }
                    Some(_) => {}
                }
                if let Some(chain) = &self.chain {
                    if !is_token(chain) {
                        return Err(invalid(format!("invalid chain '{chain}'")));
                    }
                }
                if self.derivation_path.len() > MAX_DERIVATION_DEPTH {
                    return Err(invalid(format!(
                        "derivation_path deeper than {MAX_DERIVATION_DEPTH}"
                    )));
                }
                if self.derivation_path.iter().any(|i| *i >= 1 << 31) {
                    return Err(invalid(
                        "derivation_path indexes must be non-hardened (< 2^31)",
                    ));
                }
            }
            RequestKind::Reshare | RequestKind::Refresh | RequestKind::Delete => {
                if n_schemes == 0 {
                    return Err(invalid(format!("{kind} needs at least one scheme")));
                }
                if self.threshold == Some(0) {
                    return Err(RequestError::InvalidThreshold("threshold 0".into()));
                }
                if let Some(p) = &self.participants {
                    if p.is_empty() {
                        return Err(invalid("participants must not be empty"));
                    }
                    for (i, id) in p.iter().enumerate() {
                        if crate::identity::validate_node_id(id).is_err() {
                            return Err(invalid(format!("invalid participant '{id}'")));
                        }
                        if p[..i].contains(id) {
                            return Err(invalid(format!("participant '{id}' listed twice")));
                        }
                    }
                }
            }
            RequestKind::Approve => {
                if n_schemes != 0 {
                    return Err(invalid("approve takes no schemes"));
                }
                if self.approves.is_none() {
                    return Err(invalid("approve needs approves (a request hash)"));
                }
            }
            RequestKind::Reject => {
                if n_schemes != 0 {
                    return Err(invalid("reject takes no schemes"));
                }
                if self.rejects.is_none() {
                    return Err(invalid("reject needs rejects (a request hash)"));
                }
            }
            // Any distinct schemes (checked above); every other field is forbidden above.
            RequestKind::Status => {}
            RequestKind::Policy => {
                if n_schemes != 0 {
                    return Err(invalid("policy takes no schemes"));
                }
                let size = self.payload.as_ref().map_or(0, Vec::len);
                if !(1..=MAX_PAYLOAD_BYTES).contains(&size) {
                    return Err(invalid(format!(
                        "policy needs a payload: the signed bundle, 1..={MAX_PAYLOAD_BYTES} bytes"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Checks the request's times against the node's clock: refused as `not_yet_valid` if
    /// created more than `max_clock_skew_ms` in the future, `expired` once `now_ms >=
    /// expires_at_ms` (no grace: the initiator's deadline is a hard limit), and
    /// `lifetime_too_long` if `expires_at_ms - created_at_ms > max_lifetime_ms`.
    pub fn check_time(
        &self,
        now_ms: u64,
        max_clock_skew_ms: u64,
        max_lifetime_ms: u64,
    ) -> Result<(), RequestError> {
        let lifetime_ms = self.expires_at_ms.saturating_sub(self.created_at_ms);
        if lifetime_ms > max_lifetime_ms {
            return Err(RequestError::LifetimeTooLong {
                lifetime_ms,
                max_lifetime_ms,
            });
        }
        if self.created_at_ms > now_ms.saturating_add(max_clock_skew_ms) {
            return Err(RequestError::NotYetValid {
                created_at_ms: self.created_at_ms,
                now_ms,
                max_clock_skew_ms,
            });
        }
        if now_ms >= self.expires_at_ms {
            return Err(RequestError::Expired {
                expires_at_ms: self.expires_at_ms,
                now_ms,
            });
        }
        Ok(())
    }

    /// Parses body bytes: version first (so a newer body says `unsupported_version`, not
    /// `malformed`), then every field, then [`RequestBody::validate`].
    pub fn parse(bytes: &[u8]) -> Result<Self, RequestError> {
        let version = wire::json_body_version(bytes).map_err(RequestError::Malformed)?;
        if version != u64::from(VERSION) {
            return Err(RequestError::UnsupportedVersion(version));
        }
        let body: RequestBody =
            serde_json::from_slice(bytes).map_err(|e| RequestError::Malformed(e.to_string()))?;
        body.validate()?;
        Ok(body)
    }
}

/// A request as received: initiator id, exact body bytes, signature. Nothing in it is
/// trusted until [`SignedRequest::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRequest {
    initiator: String,
    body: Vec<u8>,
    signature: Signature,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestWire {
    initiator: String,
    body: String,
    signature: String,
}

/// The request hash: SHA-256 of the body bytes. Approvals name a request by it, and every
/// result carries the hash of the body it answers.
pub fn request_hash(body_bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(body_bytes).into()
}

impl SignedRequest {
    /// Checks the wire form's shape: size, JSON with exactly `initiator`, `body`, `signature`,
    /// a token initiator id, standard padded base64, 128 lowercase hex.
    pub fn parse(bytes: &[u8]) -> Result<Self, RequestError> {
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(RequestError::Malformed(format!(
                "request is {} bytes, more than {MAX_REQUEST_BYTES}",
                bytes.len()
            )));
        }
        let w: RequestWire =
            serde_json::from_slice(bytes).map_err(|e| RequestError::Malformed(e.to_string()))?;
        if !is_token(&w.initiator) {
            return Err(RequestError::Malformed(format!(
                "invalid initiator id '{}'",
                w.initiator
            )));
        }
        let (body, signature) =
            wire::decode_signed(&w.body, &w.signature).map_err(RequestError::Malformed)?;
        Ok(SignedRequest {
            initiator: w.initiator,
            body,
            signature,
        })
    }

    /// The wire form.
    pub fn to_json(&self) -> Vec<u8> {
        let (body, signature) = wire::encode_signed(&self.body, &self.signature);
        let w = RequestWire {
            initiator: self.initiator.clone(),
            body,
            signature,
        };
        serde_json::to_vec(&w).unwrap_or_default()
    }

    /// The initiator id claimed (unverified).
    pub fn initiator(&self) -> &str {
        &self.initiator
    }

    /// The exact body bytes.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The request hash ([`request_hash`] of the body bytes).
    pub fn hash(&self) -> [u8; 32] {
        request_hash(&self.body)
    }

    /// The body parsed **without** checking the signature. Only for routing a refusal
    /// (client id, request id) when verification fails; never act on it.
    pub fn unverified_body(&self) -> Result<RequestBody, RequestError> {
        RequestBody::parse(&self.body)
    }

    /// Checks the signature over the exact body bytes with the initiator's key, then parses
    /// and validates the body.
    pub fn verify(&self, initiator_key: &VerifyingKey) -> Result<VerifiedRequest, RequestError> {
        if !wire::verify(initiator_key, DOMAIN, &[&self.body], &self.signature) {
            return Err(RequestError::BadSignature(self.initiator.clone()));
        }
        let body = RequestBody::parse(&self.body)?;
        Ok(VerifiedRequest {
            body,
            body_bytes: self.body.clone(),
            initiator: self.initiator.clone(),
            signature: self.signature,
        })
    }

    /// [`SignedRequest::verify`] with the initiator's key from the manifest: refuses an
    /// initiator not in it (`unknown_initiator`) and a body for another cluster
    /// (`invalid_request`). Roles and policy remain the node's to check.
    pub fn verify_with(
        &self,
        manifest: &VerifiedManifest,
    ) -> Result<VerifiedRequest, RequestError> {
        let initiator = manifest
            .initiator(&self.initiator)
            .ok_or_else(|| RequestError::UnknownInitiator(self.initiator.clone()))?;
        let verified = self.verify(&initiator.public_key)?;
        if verified.body.cluster_id != manifest.cluster_id() {
            return Err(invalid(format!(
                "request is for cluster '{}', this is '{}'",
                verified.body.cluster_id,
                manifest.cluster_id()
            )));
        }
        Ok(verified)
    }
}

/// A request whose signature verified and whose body is valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRequest {
    /// The parsed body.
    pub body: RequestBody,
    /// The exact bytes signed.
    pub body_bytes: Vec<u8>,
    /// The initiator who signed them.
    pub initiator: String,
    /// The initiator's signature over them.
    signature: Signature,
}

impl VerifiedRequest {
    /// The wire form, as the initiator sent it (for whoever must check it again: an
    /// approver shown the request, say).
    pub fn to_json(&self) -> Vec<u8> {
        SignedRequest {
            initiator: self.initiator.clone(),
            body: self.body_bytes.clone(),
            signature: self.signature,
        }
        .to_json()
    }

    /// The request hash ([`request_hash`] of the body bytes).
    pub fn hash(&self) -> [u8; 32] {
        request_hash(&self.body_bytes)
    }

    /// See [`RequestBody::check_time`].
    pub fn check_time(
        &self,
        now_ms: u64,
        max_clock_skew_ms: u64,
        max_lifetime_ms: u64,
    ) -> Result<(), RequestError> {
        self.body
            .check_time(now_ms, max_clock_skew_ms, max_lifetime_ms)
    }
}

/// Why an initiator key file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// I/O on the file.
    #[error("initiator key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The contents are not 64 hex digits.
    #[error(
        "initiator key file {0}: expected 64 hex digits (a 32-byte Ed25519 seed) and a newline"
    )]
    Format(String),
    /// Others may read it.
    #[error("initiator key file {path} is readable by group or others (mode {mode:o}): run chmod 600 {path}")]
    Permissions {
        /// The file.
        path: String,
        /// Its mode.
        mode: u32,
    },
    /// Refusing to overwrite a key.
    #[error("initiator key file {0} already exists: refusing to overwrite a key")]
    Exists(String),
    /// The id is not a token.
    #[error("invalid initiator id '{0}': use 1-64 of a-z 0-9 - _")]
    Id(String),
}

/// An initiator's Ed25519 signing key and id. Its `Debug` shows the id and public key only.
///
/// Key file: the 32-byte seed as 64 lowercase hex digits and a newline, mode 0600; nothing
/// else (the id lives in the client's configuration).
pub struct InitiatorKey {
    id: String,
    key: SigningKey,
}

impl std::fmt::Debug for InitiatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitiatorKey")
            .field("id", &self.id)
            .field(
                "public_key",
                &hex::encode(self.key.verifying_key().as_bytes()),
            )
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl InitiatorKey {
    /// A new random key.
    pub fn generate(id: &str) -> Result<Self, KeyFileError> {
        Self::from_key(id, SigningKey::generate(&mut rand_core::OsRng))
    }

    /// A key from its 32-byte seed.
    pub fn from_seed(id: &str, seed: &[u8; 32]) -> Result<Self, KeyFileError> {
        Self::from_key(id, SigningKey::from_bytes(seed))
    }

    fn from_key(id: &str, key: SigningKey) -> Result<Self, KeyFileError> {
        if !is_token(id) {
            return Err(KeyFileError::Id(id.to_owned()));
        }
        Ok(InitiatorKey {
            id: id.to_owned(),
            key,
        })
    }

    /// Loads a key file; refuses one that group or others may read.
    pub fn load(id: &str, path: &Path) -> Result<Self, KeyFileError> {
        let shown = path.display().to_string();
        let io = |source| KeyFileError::Io {
            path: shown.clone(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(KeyFileError::Permissions {
                    path: shown.clone(),
                    mode: mode & 0o777,
                });
            }
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        let hex_seed = text.strip_suffix('\n').unwrap_or(&text);
        let seed = Zeroizing::new(
            wire::hex_array::<32>(hex_seed).map_err(|_| KeyFileError::Format(shown.clone()))?,
        );
        Self::from_seed(id, &seed)
    }

    /// Writes the key file (mode 0600, atomically: temp file, then a hard link that fails if
    /// `path` exists). Never overwrites.
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        use std::io::Write as _;
        let shown = path.display().to_string();
        let io = |source| KeyFileError::Io {
            path: shown.clone(),
            source,
        };
        if path.exists() {
            return Err(KeyFileError::Exists(shown));
        }
        let file_name = path
            .file_name()
            .ok_or_else(|| KeyFileError::Format(shown.clone()))?
            .to_string_lossy();
        let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", wire::random_id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let text = Zeroizing::new(format!("{}\n", hex::encode(self.key.to_bytes())));
        let written = options.open(&tmp).and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        });
        let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(KeyFileError::Exists(shown))
            }
            other => other.map_err(io),
        }
    }

    /// The initiator id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The public key (listed in the manifest's `[[initiators]]`).
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The Ed25519 key itself, for the one other use of the same key file format: an
    /// administrator's key signs manifests ([`crate::manifest::SignedManifest::sign_as`]).
    /// Never print or store it elsewhere.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Validates `body`, writes it as JSON (fields in declaration order) and signs the bytes.
    pub fn sign_request(&self, body: &RequestBody) -> Result<SignedRequest, RequestError> {
        body.validate()?;
        let bytes = serde_json::to_vec(body).map_err(|e| RequestError::Malformed(e.to_string()))?;
        Ok(self.sign_body_bytes(bytes))
    }

    /// Signs body bytes as they are, unchecked. For tests and tools that need exact bytes
    /// (e.g. golden fixtures); clients use [`InitiatorKey::sign_request`].
    pub fn sign_body_bytes(&self, body: Vec<u8>) -> SignedRequest {
        let signature = self.key.sign(&wire::signing_input(DOMAIN, &[&body]));
        SignedRequest {
            initiator: self.id.clone(),
            body,
            signature,
        }
    }
}
