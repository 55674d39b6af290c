//! Signed approve and reject requests, as the console sends them for an operator who holds an
//! approver key (the same initiator key file `keyrack client approve` uses), and the check
//! of a waiting request that comes before them.
//!
//! What it owns: checking a node's listing against the request its initiator signed, with
//! the approver's own manifest and trusted keys (never the node's word for a key), and
//! building and signing the approve or reject body. A rejection only ever stops something:
//! it needs nothing but a signed request that verifies and hashes as listed, whatever the
//! node says of its state or times. It never sends anything (the worker posts it to the
//! node's API) and never shows the key.

use std::sync::Arc;

use keyrack_client::api::{KeyView, SubmitRequest, Submitted, WaitState, WaitingRequest};
use keyrack_client::manifest::VerifiedManifest;
use keyrack_client::request::{
    InitiatorKey, PayloadKind, RequestBody, RequestError, RequestKind, SignedRequest,
    VerifiedRequest,
};
use keyrack_client::scheme::Scheme;
use keyrack_client::sdk::APPROVAL_KEY_ID;
use keyrack_client::trusted::{short_hex, TrustedKey, TrustedKeys};
use serde_json::Value;

use crate::asks::{Asks, CheckedRequest, Committee, Current};
use crate::confirmation::Confirmation;

/// How long an approval or rejection counts: the nodes' longest request lifetime, as
/// `keyrack client approve` defaults to.
pub const VALID_FOR_MS: u64 = 600_000;

/// Approve or reject (the wire's own type).
pub use keyrack_client::request::Verdict;

/// The request kinds a node may hold for approvals (every kind but approve, reject and
/// policy activation).
pub const WAITING_KINDS: [RequestKind; 6] = [
    RequestKind::Sign,
    RequestKind::Keygen,
    RequestKind::Reshare,
    RequestKind::Refresh,
    RequestKind::Delete,
    RequestKind::Status,
];

/// Decodes a sign request's chain payload as the nodes do, for the key it names (`key`:
/// its root public key and chain code, from the approver's trusted keys, never from the
/// node): the intent as JSON (`keyrack_plugin::Intent`). The binary supplies it: it holds
/// the chain plugins.
pub type Decoder =
    Arc<dyn Fn(&VerifiedRequest, &TrustedKey) -> Result<Value, String> + Send + Sync>;

/// An operator's approver identity: the initiator key (its id is the client id too), the
/// cluster manifest and the keys the operator trusts (their own copies, not the node's),
/// and the decoder that reads payloads here. `Debug` shows ids only.
pub struct Approver {
    key: InitiatorKey,
    manifest: VerifiedManifest,
    trusted: TrustedKeys,
    decoder: Decoder,
}

impl std::fmt::Debug for Approver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approver")
            .field("id", &self.key.id())
            .field("cluster", &self.manifest.cluster_id())
            .field("trusted_keys", &self.trusted.path())
            .finish_non_exhaustive()
    }
}

/// A waiting request whose signed body the approver verified (it may be rejected): the
/// hash to sign, what the request asks (read from its signed body), and why it may not be
/// approved, if it may not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The request hash, computed here from the signed body.
    pub request_hash: [u8; 32],
    /// What it asks.
    pub request: CheckedRequest,
    /// Why the node's listing is not what the initiator signed (another id, kind, key,
    /// chain or schemes, an intent the payload does not decode to here, a key not trusted
    /// or listed with another public key); `None`: the listing is the signed request.
    pub mismatch: Option<String>,
    /// Why an approval is pointless now: the request expired (by its signed body), or the
    /// node says it is approved and time-locked. Never a reason not to reject.
    pub closed: Option<String>,
}

impl Checked {
    /// Why this approver may not approve it ([`Checked::mismatch`], then
    /// [`Checked::closed`]); `None`: it may. A rejection needs no more than a `Checked`.
    pub fn approve_refusal(&self) -> Option<&str> {
        self.mismatch.as_deref().or(self.closed.as_deref())
    }
}

impl Approver {
    /// An approver signing as `key` for the cluster of `manifest`, trusting the keys of
    /// `trusted` (see [`keyrack_client::trusted`]), reading payloads with `decoder`.
    pub fn new(
        key: InitiatorKey,
        manifest: VerifiedManifest,
        trusted: TrustedKeys,
        decoder: Decoder,
    ) -> Self {
        Approver {
            key,
            manifest,
            trusted,
            decoder,
        }
    }

    /// The initiator id approvals are signed as.
    pub fn id(&self) -> &str {
        self.key.id()
    }

    /// The cluster id (the manifest's).
    pub fn cluster_id(&self) -> &str {
        self.manifest.cluster_id()
    }

    /// The keys this approver trusts.
    pub fn trusted(&self) -> &TrustedKeys {
        &self.trusted
    }

    /// Checks a node's listing of a waiting request against what its initiator signed, so
    /// that an operator approves what they were shown even if the node lies.
    ///
    /// Refused outright (nothing may be signed): a listing without the signed request, one
    /// that does not verify under the approver's manifest or hash to the listed hash, a
    /// kind that never waits, a lifecycle body that says nothing to act on. Anything else
    /// may be rejected: the rejection names the hash of what the initiator signed, so it
    /// can only stop that request, and nothing the node says of its state, run time or
    /// expiry changes that (a node that lies about them must not keep a veto from the
    /// nodes that will carry the request out).
    ///
    /// It may be approved too unless [`Checked::approve_refusal`] says why not: the listing
    /// must name the request's id, initiator, kind, key, schemes and chain; a sign
    /// request's key must be in the approver's trusted keys, the node's key list (`keys`)
    /// must not report another public key or chain code for it, and its payload must
    /// decode here, with the trusted key, to the listed intent (any other kind has no
    /// payload: its listed intent must be null; what it would do is read from its body);
    /// and it must still wait for approvals at `now_ms` (before its signed expiry, and not
    /// time-locked).
    pub fn check(
        &self,
        waiting: &WaitingRequest,
        keys: &[KeyView],
        now_ms: u64,
    ) -> Result<Checked, String> {
        let json = waiting
            .request
            .as_deref()
            .ok_or("the node did not send the signed request, so it cannot be checked here")?;
        let verified = SignedRequest::parse(json.as_bytes())
            .and_then(|r| r.verify_with(&self.manifest))
            .map_err(|e| format!("the request does not verify under your manifest: {e}"))?;
        let request_hash = verified.hash();
        if hex::encode(request_hash) != waiting.request_hash {
            return Err(format!(
                "the node lists hash {} but the request hashes to {}",
                waiting.request_hash,
                hex::encode(request_hash)
            ));
        }
        let body = &verified.body;
        if !WAITING_KINDS.contains(&body.kind) {
            return Err(format!(
                "the request is of kind {}, which never waits for approvals",
                body.kind.as_str()
            ));
        }
        let asks = match body.kind {
            RequestKind::Sign => Asks::Sign,
            _ => self.lifecycle(body)?,
        };
        Ok(Checked {
            request_hash,
            request: CheckedRequest {
                kind: body.kind,
                key_id: body.key_id.clone(),
                schemes: body.schemes.clone(),
                asks,
            },
            mismatch: self.check_listing(&verified, waiting, keys).err(),
            closed: approval_closed(waiting, body, now_ms),
        })
    }

    /// Whether the node's listing is the signed request `verified` (see [`Approver::check`]).
    fn check_listing(
        &self,
        verified: &VerifiedRequest,
        waiting: &WaitingRequest,
        keys: &[KeyView],
    ) -> Result<(), String> {
        let body = &verified.body;
        let schemes: Vec<&str> = body.schemes.iter().map(|s| s.as_str()).collect();
        let listed = [
            ("request id", body.request_id == waiting.request_id),
            ("initiator", verified.initiator == waiting.initiator),
            ("kind", body.kind.as_str() == waiting.kind),
            ("key", body.key_id == waiting.key_id),
            ("chain", body.chain == waiting.chain),
            (
                "scheme",
                schemes.is_empty() || schemes.contains(&waiting.scheme.as_str()),
            ),
            (
                "schemes",
                waiting.schemes.is_empty() || waiting.schemes == schemes,
            ),
        ];
        if let Some((what, _)) = listed.iter().find(|(_, same)| !same) {
            return Err(format!(
                "the node's listing differs from the signed request: {what}"
            ));
        }
        match body.kind {
            RequestKind::Sign => self.check_sign(verified, waiting, keys),
            _ if !waiting.intent.is_null() => Err(format!(
                "the node shows an intent for a {} request, which has no payload",
                body.kind.as_str()
            )),
            _ => Ok(()),
        }
    }

    /// A sign request: its key is trusted, the node does not report another, and the
    /// payload decodes with the trusted key to the listed intent.
    fn check_sign(
        &self,
        verified: &VerifiedRequest,
        waiting: &WaitingRequest,
        keys: &[KeyView],
    ) -> Result<(), String> {
        let body = &verified.body;
        let scheme = *body
            .schemes
            .first()
            .ok_or("the sign request names no scheme")?;
        let trusted = self.trusted_key(&body.key_id, scheme, keys)?;
        let decoded = match body.payload_kind {
            Some(
                PayloadKind::Transaction | PayloadKind::PersonalMessage | PayloadKind::TypedData,
            ) => (self.decoder)(verified, trusted)
                .map_err(|e| format!("the payload does not decode here: {e}"))?,
            // A plain message or raw digest: nothing to decode (as at the nodes).
            _ => Value::Null,
        };
        if decoded != waiting.intent {
            return Err(
                "the intent the node shows is not what the signed payload decodes to".to_owned(),
            );
        }
        Ok(())
    }

    /// The trusted key `key_id` of `scheme`, if the node's key list does not contradict it.
    fn trusted_key(
        &self,
        key_id: &str,
        scheme: Scheme,
        keys: &[KeyView],
    ) -> Result<&TrustedKey, String> {
        let trusted = self.trusted.get(key_id, scheme).ok_or_else(|| {
            format!(
                "key {key_id} ({scheme}) is not in your trusted keys {}: run `keyrack client \
                 trust {key_id}` with your client.toml (it records the key when a threshold \
                 of its nodes agree in signed answers), then look again",
                self.trusted.path().display()
            )
        })?;
        let listed = keys
            .iter()
            .find(|k| k.key_id == key_id && k.scheme == scheme.as_str());
        if let Some(view) = listed {
            let differs = |listed: &str, trusted: &[u8]| {
                !listed.is_empty() && !listed.eq_ignore_ascii_case(&hex::encode(trusted))
            };
            let what = if differs(&view.public_key, &trusted.public_key) {
                Some((
                    "public key",
                    &view.public_key,
                    short_hex(&trusted.public_key),
                ))
            } else if differs(&view.chain_code, &trusted.chain_code) {
                Some((
                    "chain code",
                    &view.chain_code,
                    short_hex(&trusted.chain_code),
                ))
            } else {
                None
            };
            if let Some((what, listed, trusted)) = what {
                let listed = hex::decode(listed)
                    .map(|b| short_hex(&b))
                    .unwrap_or_else(|_| crate::fmt::short(listed, 16));
                return Err(format!(
                    "the node reports {what} {listed} for key {key_id} ({scheme}) but your \
                     trusted keys hold {trusted}: the node may be compromised, so nothing is \
                     approved on its word (if the key id was re-created, run `keyrack client \
                     trust {key_id} --replace`)"
                ));
            }
        }
        Ok(trusted)
    }

    /// What a keygen, reshare, refresh, delete or status request would do.
    fn lifecycle(&self, body: &RequestBody) -> Result<Asks, String> {
        Ok(match body.kind {
            RequestKind::Keygen => Asks::Keygen {
                threshold: body
                    .threshold
                    .ok_or("the keygen request names no threshold")?,
                nodes: self
                    .manifest
                    .nodes()
                    .iter()
                    .map(|n| n.node_id().to_owned())
                    .collect(),
                reuse_deleted_id: body.reuse_deleted_id,
            },
            RequestKind::Reshare => Asks::Reshare {
                current: self.current(&body.key_id, &body.schemes),
                threshold: body.threshold,
                participants: body.participants.clone(),
            },
            RequestKind::Refresh => Asks::Refresh {
                current: self.current(&body.key_id, &body.schemes),
            },
            RequestKind::Delete => Asks::Delete {
                current: self.current(&body.key_id, &body.schemes),
            },
            _ => Asks::Status,
        })
    }

    /// The key's committee as the trusted keys know it, for every scheme of `schemes`.
    fn current(&self, key_id: &str, schemes: &[Scheme]) -> Current {
        let entries: Option<Vec<&TrustedKey>> = schemes
            .iter()
            .map(|s| self.trusted.get(key_id, *s))
            .collect();
        let Some((first, rest)) = entries.as_deref().and_then(<[_]>::split_first) else {
            return Current::NotTrusted;
        };
        if rest
            .iter()
            .any(|k| (k.threshold, &k.participants) != (first.threshold, &first.participants))
        {
            return Current::DiffersByScheme;
        }
        Current::Trusted {
            committee: Committee {
                threshold: first.threshold,
                participants: first.participants.clone(),
            },
            version: first.version,
        }
    }

    /// A signed `verdict` request on the `checked` request, created at `now_ms` and valid
    /// for [`VALID_FOR_MS`], ready to POST.
    pub fn sign(
        &self,
        verdict: Verdict,
        checked: &Checked,
        now_ms: u64,
    ) -> Result<SubmitRequest, RequestError> {
        let kind = verdict.kind();
        let id = self.key.id();
        let mut body = RequestBody::new(
            kind,
            self.manifest.cluster_id(),
            APPROVAL_KEY_ID,
            id,
            now_ms,
            VALID_FOR_MS,
        );
        match verdict {
            Verdict::Approve => body.approves = Some(checked.request_hash),
            Verdict::Reject => body.rejects = Some(checked.request_hash),
        }
        let signed = self.key.sign_request(&body)?;
        let json = String::from_utf8(signed.to_json())
            .map_err(|e| RequestError::Malformed(e.to_string()))?;
        Ok(SubmitRequest {
            signed_request: json,
        })
    }

    /// Which nodes recorded the verdict `sent` (made by [`Approver::sign`]), by the signed
    /// results the node answered with (`submitted`): only those that verify under this
    /// approver's manifest and answer `sent` count.
    pub fn confirm(
        &self,
        sent: &SubmitRequest,
        submitted: &Submitted,
    ) -> Result<Confirmation, String> {
        Confirmation::from_results(&self.manifest, sent, submitted)
    }
}

/// Why approving is pointless at `now_ms`, if it is: the request's signed expiry passed
/// while it waits, or the node says it is approved and time-locked (another approval
/// changes nothing). Only ever a reason not to approve.
fn approval_closed(waiting: &WaitingRequest, body: &RequestBody, now_ms: u64) -> Option<String> {
    match waiting.state {
        WaitState::TimeLocked => Some(
            "the node says it is approved and time-locked: another approval changes nothing"
                .to_owned(),
        ),
        WaitState::WaitingForApprovals if body.expires_at_ms <= now_ms => Some(format!(
            "the request expired at {} UTC (its signed expiry): an approval is pointless",
            crate::fmt::clock(body.expires_at_ms)
        )),
        WaitState::WaitingForApprovals => None,
    }
}

/// Parses a request hash as the API shows it (64 hex digits).
pub fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests;
