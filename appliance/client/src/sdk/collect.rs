//! The waiting rules: which results count for a request and when it is complete. Pure (no
//! NATS, no clock): [`Collector::offer`] takes the raw bytes of each result routed to the
//! request and says whether the request is done, failed, or still waiting.
//!
//! A result counts only if its wire form parses, its node is in the manifest, the node's
//! signature verifies over the body bytes received, and it names this request's id, client
//! and **request hash** (results about other bytes answer forged copies). Everything else is
//! ignored and counted in [`Ignored`]. Only a node's first counted answer is used, except a
//! `replayed` refusal of these very bytes, which is not final: it is what a node says to a
//! copy of the request replayed by someone else while it works on the original.
//!
//! Keygen, reshare, refresh and delete need an `ok` from **every** manifest node; the first
//! refusal or failure ends them. Keygen: every node reports the keys asked, all the same.
//! Reshare and refresh: a node in neither the old nor the new committee answers `ok` with no
//! keys (not concerned); the others report the same keys (participants compared in the
//! order sent: it is the key-index order), those asked; at least one node reports keys, and
//! every member of the new committee does. Delete: keys are not looked at.
//!
//! A `status` request collects every node's answer as it is (no agreement needed); when time
//! is up, what arrived is the outcome and the silent nodes are listed as missing.

use super::error::{Ignored, KeyGroup, NodeAnswer, SdkError};
use super::verify::verify_signature;
use super::{
    Acknowledged, AgreedKeys, DeletedKey, KeyStatusReport, NodeKeyStatus, Outcome,
    VerifiedSignature,
};
use crate::codes::ErrorCode;
use crate::manifest::VerifiedManifest;
use crate::request::{PayloadKind, RequestBody, RequestKind};
use crate::result::{KeyInfo, ResultBody, ResultError, SignedResult, Status};
use std::collections::BTreeMap;
use std::time::Duration;

/// What one more result did to a request.
pub(crate) enum Step {
    /// Keep waiting.
    Wait,
    /// Keep waiting; a node says the request waits there (for approvals, or time-locked
    /// until its delay has passed).
    Notice(NodeAnswer),
    /// Complete.
    Done(Outcome),
    /// Failed for good.
    Fail(SdkError),
}

/// Collects and judges the results of one request.
pub(crate) struct Collector {
    body: RequestBody,
    hash: [u8; 32],
    /// Every manifest node, in manifest order.
    members: Vec<String>,
    /// Sign: how many non-`ok` answers are tolerated while waiting for an `ok`.
    tolerated: usize,
    /// Each node's first counted answer, in arrival order.
    answers: Vec<NodeAnswer>,
    /// `replayed` refusals of these bytes, waiting for the node's real answer.
    replayed: BTreeMap<String, NodeAnswer>,
    /// `pending` notices (waiting for approvals, or time-locked): not final, the node's
    /// answer follows.
    waiting: BTreeMap<String, NodeAnswer>,
    /// Keys reported by nodes that answered `ok` (not sign; empty for delete).
    keys: Vec<(String, Vec<KeyInfo>)>,
    ignored: Ignored,
}

/// The smallest threshold a keygen accepts for `n` nodes (`n/2 < t`); signing tolerates
/// `n - t` refusals with it unless told the key's real threshold.
pub(crate) fn default_tolerance(n: usize) -> usize {
    n.saturating_sub(n / 2 + 1)
}

impl Collector {
    pub(crate) fn new(body: RequestBody, hash: [u8; 32], manifest: &VerifiedManifest) -> Self {
        let members: Vec<String> = manifest
            .nodes()
            .iter()
            .map(|n| n.node_id().to_owned())
            .collect();
        Collector {
            tolerated: default_tolerance(members.len()),
            body,
            hash,
            members,
            answers: Vec::new(),
            replayed: BTreeMap::new(),
            waiting: BTreeMap::new(),
            keys: Vec::new(),
            ignored: Ignored::default(),
        }
    }

    /// Sign: tolerate `n` non-`ok` answers (at most `members - 1`).
    pub(crate) fn tolerate(&mut self, n: usize) {
        self.tolerated = n.min(self.members.len().saturating_sub(1));
    }

    pub(crate) fn request_hash(&self) -> [u8; 32] {
        self.hash
    }

    pub(crate) fn ignored(&self) -> Ignored {
        self.ignored
    }

    /// Judges one more result (raw bytes as received).
    pub(crate) fn offer(&mut self, manifest: &VerifiedManifest, bytes: &[u8]) -> Step {
        let Some(result) = self.authentic(manifest, bytes) else {
            return Step::Wait;
        };
        let answer = NodeAnswer {
            node: result.node_id.clone(),
            status: result.status,
            code: result.code,
            message: result.message.clone(),
        };
        if self.answers.iter().any(|a| a.node == answer.node) {
            self.ignored.repeated = self.ignored.repeated.saturating_add(1);
            return Step::Wait;
        }
        if answer.code == Some(ErrorCode::Replayed) {
            self.replayed.insert(answer.node.clone(), answer);
            return Step::Wait;
        }
        if answer.status == Status::Pending {
            // A node says so once per stage: waiting for approvals, then time-locked.
            let new = self
                .waiting
                .get(&answer.node)
                .is_none_or(|w| w.code != answer.code);
            self.waiting.insert(answer.node.clone(), answer.clone());
            return if new {
                Step::Notice(answer)
            } else {
                Step::Wait
            };
        }
        self.replayed.remove(&answer.node);
        self.waiting.remove(&answer.node);
        self.answers.push(answer.clone());
        match self.body.kind {
            RequestKind::Sign => self.offer_sign(answer, result),
            RequestKind::Status => self.offer_status(answer, result),
            RequestKind::Keygen
            | RequestKind::Reshare
            | RequestKind::Refresh
            | RequestKind::Delete
            | RequestKind::Approve
            | RequestKind::Reject
            | RequestKind::Policy => self.offer_keys(answer, result),
        }
    }

    /// The result, if it is authentic and about this request's bytes; else counts why not.
    fn authentic(&mut self, manifest: &VerifiedManifest, bytes: &[u8]) -> Option<ResultBody> {
        let body = verified_result(manifest, bytes, &mut self.ignored)?;
        if body.request_hash == self.hash
            && body.request_id == self.body.request_id
            && body.client_id == self.body.client_id
        {
            return Some(body);
        }
        self.ignored.other_request = self.ignored.other_request.saturating_add(1);
        None
    }

    fn offer_sign(&mut self, answer: NodeAnswer, result: ResultBody) -> Step {
        if answer.status != Status::Ok {
            let refusals: Vec<&NodeAnswer> = self
                .answers
                .iter()
                .filter(|a| a.status != Status::Ok)
                .collect();
            if refusals.len() > self.tolerated {
                // The first refusal is the likeliest cause (the others usually repeat it).
                return Step::Fail(SdkError::from_answer(refusals[0]));
            }
            return Step::Wait;
        }
        let node = answer.node;
        let ResultBody {
            signature,
            signatures,
            signed_payload,
            ..
        } = result;
        let Some(signature) = signature else {
            return Step::Fail(SdkError::InvalidResult {
                node,
                reason: "an ok sign result without a signature".into(),
            });
        };
        if let Err(reason) = self.answers_sign_request(&signature) {
            return Step::Fail(SdkError::InvalidResult { node, reason });
        }
        let signatures = if signatures.is_empty() {
            vec![signature.clone()]
        } else {
            signatures
        };
        for (i, s) in signatures.iter().enumerate() {
            if let Err(reason) = self.answers_sign_request(s) {
                return Step::Fail(SdkError::InvalidResult { node, reason });
            }
            if let Err(reason) = verify_signature(s) {
                let reason = if signatures.len() > 1 {
                    format!("signature {} of {}: {reason}", i + 1, signatures.len())
                } else {
                    reason
                };
                return Step::Fail(SdkError::BadSignature { node, reason });
            }
        }
        let tolerated = self
            .answers
            .iter()
            .filter(|a| a.status != Status::Ok)
            .cloned()
            .collect();
        Step::Done(Outcome::Signature(Box::new(VerifiedSignature {
            signature,
            signatures,
            signed_payload,
            node,
            tolerated,
            ignored: self.ignored,
        })))
    }

    /// Whether a signature is for what was asked (scheme, path, and a raw digest as given).
    fn answers_sign_request(&self, s: &crate::result::SignatureInfo) -> Result<(), String> {
        if !self.body.schemes.contains(&s.scheme) {
            return Err(format!(
                "signature of scheme {}, not the one asked",
                s.scheme
            ));
        }
        if s.derivation_path != self.body.derivation_path {
            return Err(format!(
                "derivation path {:?}, asked {:?}",
                s.derivation_path, self.body.derivation_path
            ));
        }
        if self.body.payload_kind == Some(PayloadKind::Digest)
            && self.body.payload.as_deref() != Some(s.digest_or_message.as_slice())
        {
            return Err("signed another digest than the one given".into());
        }
        // A plain message: Ed25519 signs it as is, the secp256k1 schemes its SHA-256.
        if self.body.payload_kind == Some(PayloadKind::Message) {
            let payload = self.body.payload.as_deref().unwrap_or_default();
            let expected = match s.scheme {
                crate::scheme::Scheme::Ed25519 => payload.to_vec(),
                _ => <sha2::Sha256 as sha2::Digest>::digest(payload).to_vec(),
            };
            if s.digest_or_message != expected {
                return Err("signed another message than the one sent".into());
            }
        }
        Ok(())
    }

    fn offer_status(&mut self, answer: NodeAnswer, result: ResultBody) -> Step {
        if let Err(reason) = self.answers_status(&result.keys) {
            return Step::Fail(SdkError::InvalidResult {
                node: answer.node,
                reason,
            });
        }
        self.keys.push((answer.node, normalised(result.keys, true)));
        if self.answers.len() < self.members.len() {
            return Step::Wait;
        }
        Step::Done(Outcome::KeyStatus(self.status_report()))
    }

    /// Whether status keys are about what was asked: this key id, a status each, at most one
    /// per scheme, and only the schemes asked (if any were).
    fn answers_status(&self, keys: &[KeyInfo]) -> Result<(), String> {
        for (i, k) in keys.iter().enumerate() {
            if k.key_id != self.body.key_id {
                return Err(format!("a key with id '{}'", k.key_id));
            }
            if k.status.is_none() {
                return Err(format!("the {} key has no status", k.scheme));
            }
            if !self.body.schemes.is_empty() && !self.body.schemes.contains(&k.scheme) {
                return Err(format!("a {} key, not a scheme asked", k.scheme));
            }
            if keys[..i].iter().any(|o| o.scheme == k.scheme) {
                return Err(format!("two {} keys", k.scheme));
            }
        }
        Ok(())
    }

    /// The answers so far in manifest order; the other members are missing.
    fn status_report(&self) -> KeyStatusReport {
        let mut nodes = Vec::new();
        let mut missing = Vec::new();
        for member in &self.members {
            match self.answers.iter().find(|a| &a.node == member) {
                Some(answer) => nodes.push(NodeKeyStatus {
                    answer: answer.clone(),
                    keys: self
                        .keys
                        .iter()
                        .find(|(node, _)| node == member)
                        .map(|(_, keys)| keys.clone())
                        .unwrap_or_default(),
                }),
                None => missing.push(member.clone()),
            }
        }
        KeyStatusReport {
            nodes,
            missing,
            ignored: self.ignored,
        }
    }

    fn offer_keys(&mut self, answer: NodeAnswer, result: ResultBody) -> Step {
        if answer.status != Status::Ok {
            return Step::Fail(SdkError::from_answer(&answer));
        }
        let kind = self.body.kind;
        let keys = match kind {
            RequestKind::Delete
            | RequestKind::Approve
            | RequestKind::Reject
            | RequestKind::Policy => Vec::new(),
            RequestKind::Reshare | RequestKind::Refresh => normalised(result.keys, false),
            _ => normalised(result.keys, true),
        };
        let checked = match kind {
            RequestKind::Keygen => self.answers_keygen(&keys),
            RequestKind::Reshare | RequestKind::Refresh if !keys.is_empty() => {
                self.answers_reshare(&keys)
            }
            _ => Ok(()),
        };
        if let Err(reason) = checked {
            return Step::Fail(SdkError::InvalidResult {
                node: answer.node,
                reason,
            });
        }
        self.keys.push((answer.node, keys));
        if self.keys.len() < self.members.len() {
            return Step::Wait;
        }
        match self.complete() {
            Ok(outcome) => Step::Done(outcome),
            Err(e) => Step::Fail(e),
        }
    }

    /// The outcome once every member answered `ok`.
    fn complete(&self) -> Result<Outcome, SdkError> {
        if matches!(
            self.body.kind,
            RequestKind::Approve | RequestKind::Reject | RequestKind::Policy
        ) {
            return Ok(Outcome::Acknowledged(Acknowledged {
                answers: self.answers.clone(),
                ignored: self.ignored,
            }));
        }
        if self.body.kind == RequestKind::Delete {
            return Ok(Outcome::Deleted(DeletedKey {
                key_id: self.body.key_id.clone(),
                schemes: self.body.schemes.clone(),
                nodes: self.members.clone(),
                ignored: self.ignored,
            }));
        }
        let groups = self.key_groups();
        let agreed = match <[KeyGroup; 1]>::try_from(groups) {
            Ok([agreed]) => agreed,
            Err(groups) if groups.is_empty() => {
                return Err(SdkError::NoKeys {
                    nodes: self.members.clone(),
                })
            }
            Err(groups) => return Err(SdkError::Disagreement { groups }),
        };
        let uninvolved: Vec<String> = self
            .members
            .iter()
            .filter(|m| !agreed.nodes.contains(m))
            .cloned()
            .collect();
        // A member of the new committee holds a new share: it cannot be "not concerned".
        let committee = agreed.keys.iter().flat_map(|k| &k.participants);
        if let Some(node) = committee.into_iter().find(|p| uninvolved.contains(p)) {
            return Err(SdkError::InvalidResult {
                node: node.clone(),
                reason: "it is in the new committee but reported no keys".into(),
            });
        }
        Ok(Outcome::Keys(AgreedKeys {
            keys: agreed.keys,
            nodes: agreed.nodes,
            uninvolved,
            ignored: self.ignored,
        }))
    }

    /// Whether keygen keys are those asked: one per scheme, this key id and threshold, and
    /// every manifest node a participant.
    fn answers_keygen(&self, keys: &[KeyInfo]) -> Result<(), String> {
        self.answers_schemes(keys)?;
        let mut members = self.members.clone();
        members.sort();
        for k in keys {
            if Some(k.threshold) != self.body.threshold {
                return Err(format!("a key with threshold {}", k.threshold));
            }
            if k.participants != members {
                return Err(format!(
                    "participants {}, the manifest has {}",
                    k.participants.join(","),
                    members.join(",")
                ));
            }
        }
        Ok(())
    }

    /// Whether reshare or refresh keys (of a node that reports some) are those asked: one
    /// per scheme, this key id, a new version (> 1), the threshold and committee asked (a
    /// reshare's, if given; the committee in the order asked, which is the key-index order),
    /// and a committee of distinct manifest nodes that the threshold fits.
    fn answers_reshare(&self, keys: &[KeyInfo]) -> Result<(), String> {
        self.answers_schemes(keys)?;
        for k in keys {
            let scheme = k.scheme;
            if let Some(status) = k.status {
                return Err(format!("the {scheme} key has a status ({status})"));
            }
            if k.version < 2 {
                return Err(format!(
                    "the {scheme} key has version {}: a reshare or refresh makes version 2 \
                     or later",
                    k.version
                ));
            }
            if let Some(t) = self.body.threshold {
                if k.threshold != t {
                    return Err(format!(
                        "the {scheme} key has threshold {}, asked {t}",
                        k.threshold
                    ));
                }
            }
            if let Some(asked) = &self.body.participants {
                if &k.participants != asked {
                    return Err(format!(
                        "the {scheme} key's committee is {} (in key-index order), asked {}",
                        k.participants.join(","),
                        asked.join(",")
                    ));
                }
            }
            for (i, p) in k.participants.iter().enumerate() {
                if !self.members.contains(p) {
                    return Err(format!(
                        "the {scheme} key's committee names '{p}', not a manifest node"
                    ));
                }
                if k.participants[..i].contains(p) {
                    return Err(format!("the {scheme} key's committee lists '{p}' twice"));
                }
            }
            crate::request::check_threshold(k.threshold, k.participants.len())
                .map_err(|e| format!("the {scheme} key: {e}"))?;
        }
        Ok(())
    }

    /// Whether keys are one per scheme asked, each with this key id.
    fn answers_schemes(&self, keys: &[KeyInfo]) -> Result<(), String> {
        let mut schemes: Vec<_> = keys.iter().map(|k| k.scheme).collect();
        let mut asked = self.body.schemes.clone();
        schemes.sort();
        asked.sort();
        if schemes != asked {
            return Err(format!("keys for schemes {schemes:?}, asked {asked:?}"));
        }
        for k in keys {
            if k.key_id != self.body.key_id {
                return Err(format!("a key with id '{}'", k.key_id));
            }
        }
        Ok(())
    }

    /// The nodes grouped by the keys they reported, nodes in manifest order. Reshare and
    /// refresh: nodes that reported no keys (not concerned) are in no group.
    fn key_groups(&self) -> Vec<KeyGroup> {
        let skip_empty = matches!(self.body.kind, RequestKind::Reshare | RequestKind::Refresh);
        let mut groups: Vec<KeyGroup> = Vec::new();
        for member in &self.members {
            let Some((node, keys)) = self.keys.iter().find(|(node, _)| node == member) else {
                continue;
            };
            if skip_empty && keys.is_empty() {
                continue;
            }
            match groups.iter_mut().find(|g| &g.keys == keys) {
                Some(g) => g.nodes.push(node.clone()),
                None => groups.push(KeyGroup {
                    nodes: vec![node.clone()],
                    keys: keys.clone(),
                }),
            }
        }
        groups
    }

    /// What time being up means: for a status request that some node answered, the answers
    /// so far (the others missing); else an error: the nodes' disagreement if one is already
    /// visible, or a timeout listing who answered what and who is silent.
    pub(crate) fn timed_out(&self, after: Duration) -> Result<Outcome, SdkError> {
        if self.body.kind == RequestKind::Status && !self.answers.is_empty() {
            return Ok(Outcome::KeyStatus(self.status_report()));
        }
        let groups = self.key_groups();
        if groups.len() > 1 {
            return Err(SdkError::Disagreement { groups });
        }
        let mut answered = self.answers.clone();
        answered.extend(self.replayed.values().cloned());
        answered.extend(
            self.waiting
                .values()
                .filter(|w| !self.answers.iter().any(|a| a.node == w.node))
                .cloned(),
        );
        let silent = self
            .members
            .iter()
            .filter(|m| !answered.iter().any(|a| &a.node == *m))
            .cloned()
            .collect();
        Err(SdkError::Timeout {
            after,
            answered,
            silent,
            ignored: self.ignored,
        })
    }
}

/// Parses `bytes` as a result and checks it under the manifest (a member node's signature
/// over the body bytes, a valid body); counts why not in `ignored`. Whether it answers a
/// given request is the caller's to check.
pub(crate) fn verified_result(
    manifest: &VerifiedManifest,
    bytes: &[u8],
    ignored: &mut Ignored,
) -> Option<ResultBody> {
    let counter = match SignedResult::parse(bytes).and_then(|r| r.verify_with(manifest)) {
        Ok(body) => return Some(body),
        Err(ResultError::UnknownNode(_)) => &mut ignored.unknown_node,
        Err(ResultError::BadSignature(_)) => &mut ignored.bad_node_signature,
        Err(_) => &mut ignored.malformed,
    };
    *counter = counter.saturating_add(1);
    None
}

/// Keys sorted by scheme, so equal keys compare equal whatever order a node wrote them in;
/// with `sort_participants`, participants sorted too (not for reshare and refresh, whose
/// participants are in key-index order, which the nodes must agree on).
fn normalised(mut keys: Vec<KeyInfo>, sort_participants: bool) -> Vec<KeyInfo> {
    if sort_participants {
        for k in &mut keys {
            k.participants.sort();
        }
    }
    keys.sort_by_key(|k| k.scheme);
    keys
}
