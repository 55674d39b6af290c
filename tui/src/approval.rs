//! Signed approve and reject requests, as the console sends them for an operator who holds an
//! approver key (the same initiator key file `keyrack client approve` uses).
//!
//! What it owns: building and signing the request body. It never sends anything (the
//! worker posts it to the node's API) and never shows the key.

use std::sync::Arc;

use keyrack_client::api::{KeyView, SubmitRequest, WaitingRequest};
use keyrack_client::manifest::VerifiedManifest;
use keyrack_client::request::{
    InitiatorKey, PayloadKind, RequestBody, RequestError, RequestKind, SignedRequest,
    VerifiedRequest,
};
use keyrack_client::sdk::APPROVAL_KEY_ID;
use serde_json::Value;

/// How long an approval or rejection counts: the nodes' longest request lifetime, as
/// `keyrack client approve` defaults to.
pub const VALID_FOR_MS: u64 = 600_000;

/// Approve or reject (the wire's own type).
pub use keyrack_client::request::Verdict;

/// Decodes a sign request's chain payload as the nodes do, for the key it names (`key`:
/// its root public key and chain code, from the node's key list): the intent as JSON
/// (`keyrack_plugin::Intent`). The binary supplies it: it holds the chain plugins.
pub type Decoder = Arc<dyn Fn(&VerifiedRequest, &KeyView) -> Result<Value, String> + Send + Sync>;

/// An operator's approver identity: the initiator key (its id is the client id too), the
/// cluster manifest the operator trusts (their own copy, not the node's), and the decoder
/// that reads payloads here. `Debug` shows ids only.
pub struct Approver {
    key: InitiatorKey,
    manifest: VerifiedManifest,
    decoder: Decoder,
}

impl std::fmt::Debug for Approver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approver")
            .field("id", &self.key.id())
            .field("cluster", &self.manifest.cluster_id())
            .finish_non_exhaustive()
    }
}

/// A waiting request whose listing the approver checked against the request itself: the
/// hash to sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The request hash, computed here from the signed body.
    pub request_hash: [u8; 32],
}

impl Approver {
    /// An approver signing as `key` for the cluster of `manifest`, reading payloads with
    /// `decoder`.
    pub fn new(key: InitiatorKey, manifest: VerifiedManifest, decoder: Decoder) -> Self {
        Approver {
            key,
            manifest,
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

    /// Checks that what the node lists for a waiting request is what its initiator signed,
    /// so that an operator approves what they were shown even if the node lies: the
    /// request verifies under the approver's manifest, hashes to the listed hash, names
    /// the listed id, initiator, key, scheme and chain, has not expired at `now_ms`, and
    /// its payload decodes here to the listed intent. `keys` is the node's key list (for
    /// the public key and chain code the payload is decoded with).
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
        let listed = [
            ("request id", body.request_id == waiting.request_id),
            ("initiator", verified.initiator == waiting.initiator),
            ("key", body.key_id == waiting.key_id),
            ("chain", body.chain == waiting.chain),
            (
                "scheme",
                body.schemes.iter().any(|s| s.as_str() == waiting.scheme),
            ),
            (
                "kind (only sign requests wait)",
                body.kind == RequestKind::Sign,
            ),
        ];
        if let Some((what, _)) = listed.iter().find(|(_, same)| !same) {
            return Err(format!(
                "the node's listing differs from the signed request: {what}"
            ));
        }
        if body.expires_at_ms <= now_ms {
            return Err("the request has expired".to_owned());
        }
        let decoded = match body.payload_kind {
            Some(
                PayloadKind::Transaction | PayloadKind::PersonalMessage | PayloadKind::TypedData,
            ) => {
                let key = keys
                    .iter()
                    .find(|k| k.key_id == body.key_id && k.scheme == waiting.scheme)
                    .ok_or_else(|| format!("key {} is not in the node's key list", body.key_id))?;
                (self.decoder)(&verified, key)
                    .map_err(|e| format!("the payload does not decode here: {e}"))?
            }
            // A plain message or raw digest: nothing to decode (as at the nodes).
            _ => Value::Null,
        };
        if decoded != waiting.intent {
            return Err(
                "the intent the node shows is not what the signed payload decodes to".to_owned(),
            );
        }
        Ok(Checked { request_hash })
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
}

/// Parses a request hash as the API shows it (64 hex digits).
pub fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use keyrack_client::identity::PublicIdentity;
    use keyrack_client::manifest::{Admin, Initiator, Manifest, SignedManifest};
    use keyrack_client::scheme::Scheme;

    const NOW: u64 = 1_700_000_000_000;

    fn carol() -> InitiatorKey {
        InitiatorKey::from_seed("carol", &[7u8; 32]).unwrap()
    }

    fn bob() -> InitiatorKey {
        InitiatorKey::from_seed("bob", &[9u8; 32]).unwrap()
    }

    /// Cluster `prod`: one node, initiators bob (asks) and carol (approves), one admin.
    fn manifest() -> VerifiedManifest {
        let node_key = SigningKey::from_bytes(&[1u8; 32]);
        let node = PublicIdentity::sign("node0", &node_key, [2u8; 32]).unwrap();
        let admin = SigningKey::from_bytes(&[3u8; 32]);
        let initiator = |k: &InitiatorKey| Initiator {
            id: k.id().into(),
            public_key: k.public_key(),
            roles: vec!["sign".into(), "approve".into()],
        };
        let mut m = SignedManifest::new(Manifest {
            cluster_id: "prod".into(),
            version: 1,
            previous: None,
            admin_threshold: 1,
            nodes: vec![node],
            initiators: vec![initiator(&bob()), initiator(&carol())],
            admins: vec![Admin {
                id: "admin".into(),
                public_key: admin.verifying_key(),
            }],
        })
        .unwrap();
        m.sign(&admin).unwrap();
        m.verify_bootstrap().unwrap()
    }

    /// Decodes as the nodes would: here, a fixed intent naming the payload's first byte.
    fn decoder() -> Decoder {
        Arc::new(|r: &VerifiedRequest, key: &KeyView| {
            let first = r.body.payload.as_deref().and_then(|p| p.first().copied());
            Ok(serde_json::json!({"action": "transfer", "byte": first, "key": key.public_key}))
        })
    }

    fn approver() -> Approver {
        Approver::new(carol(), manifest(), decoder())
    }

    fn key_view() -> KeyView {
        KeyView {
            key_id: "treasury".into(),
            scheme: "ed25519".into(),
            status: "READY".into(),
            version: 1,
            threshold: 2,
            participants: vec!["node0".into()],
            public_key: "ab".repeat(32),
            chain_code: "cd".repeat(32),
            created_at_ms: 1,
            error: None,
            addresses: vec![],
        }
    }

    /// bob's transaction on solana with key `treasury`, listed as a node would list it.
    fn listed(signer: &InitiatorKey) -> (WaitingRequest, VerifiedRequest) {
        let mut body = RequestBody::new(RequestKind::Sign, "prod", "treasury", "app", NOW, 60_000);
        body.schemes = vec![Scheme::Ed25519];
        body.chain = Some("solana".into());
        body.payload_kind = Some(PayloadKind::Transaction);
        body.payload = Some(vec![0x42, 1, 2]);
        let signed = signer.sign_request(&body).unwrap();
        let verified = SignedRequest::parse(&signed.to_json())
            .unwrap()
            .verify(&signer.public_key())
            .unwrap();
        let w = WaitingRequest {
            request_id: body.request_id.clone(),
            request_hash: hex::encode(verified.hash()),
            initiator: signer.id().into(),
            key_id: "treasury".into(),
            scheme: "ed25519".into(),
            chain: Some("solana".into()),
            waiting_since_ms: NOW,
            expires_at_ms: NOW + 60_000,
            intent: serde_json::json!({"action": "transfer", "byte": 0x42, "key": "ab".repeat(32)}),
            decision: serde_json::json!({}),
            approvals: vec![],
            request: Some(String::from_utf8(verified.to_json()).unwrap()),
        };
        (w, verified)
    }

    fn refused(w: &WaitingRequest) -> String {
        approver().check(w, &[key_view()], NOW + 1).unwrap_err()
    }

    #[test]
    fn an_approval_of_a_checked_request_verifies_and_names_its_hash() {
        let a = approver();
        let (w, request) = listed(&bob());
        let checked = a.check(&w, &[key_view()], NOW + 1).unwrap();
        assert_eq!(checked.request_hash, request.hash());
        let submit = a.sign(Verdict::Approve, &checked, NOW + 2).unwrap();
        let signed = SignedRequest::parse(submit.signed_request.as_bytes()).unwrap();
        assert_eq!(signed.initiator(), "carol");
        let body = signed.verify_with(&manifest()).unwrap().body;
        assert_eq!(body.kind, RequestKind::Approve);
        assert_eq!(body.approves, Some(request.hash()));
        assert_eq!(body.rejects, None);
        assert_eq!(body.cluster_id, "prod");
        assert_eq!(body.client_id, "carol");
        assert_eq!(body.key_id, APPROVAL_KEY_ID);
        assert_eq!(body.created_at_ms, NOW + 2);
        assert_eq!(body.expires_at_ms, NOW + 2 + VALID_FOR_MS);
        let reject = a.sign(Verdict::Reject, &checked, NOW + 2).unwrap();
        let body = SignedRequest::parse(reject.signed_request.as_bytes())
            .unwrap()
            .verify_with(&manifest())
            .unwrap()
            .body;
        assert_eq!(
            (body.kind, body.rejects, body.approves),
            (RequestKind::Reject, Some(request.hash()), None)
        );
    }

    #[test]
    fn a_listing_that_is_not_the_signed_request_is_refused() {
        let (w, _) = listed(&bob());
        // The node shows another hash than the request's.
        let mut other = w.clone();
        other.request_hash = "11".repeat(32);
        assert!(refused(&other).contains("hashes to"), "{}", refused(&other));
        // …or a harmless intent for a payload that decodes to something else.
        let mut other = w.clone();
        other.intent["byte"] = serde_json::json!(0x01);
        assert!(refused(&other).contains("not what the signed payload decodes to"));
        // …or other fields than the request's.
        for (field, edit) in [
            (
                "initiator",
                (|w: &mut WaitingRequest| w.initiator = "carol".into()) as fn(&mut WaitingRequest),
            ),
            ("key", |w| w.key_id = "petty-cash".into()),
            ("chain", |w| w.chain = Some("evm".into())),
            ("scheme", |w| w.scheme = "ecdsa-secp256k1".into()),
            ("request id", |w| w.request_id = "00".repeat(16)),
        ] {
            let mut other = w.clone();
            edit(&mut other);
            let e = refused(&other);
            assert!(
                e.contains(&format!("differs from the signed request: {field}")),
                "{field}: {e}"
            );
        }
        // …or no request at all.
        let mut other = w.clone();
        other.request = None;
        assert!(refused(&other).contains("did not send the signed request"));
        // A key the node does not list cannot be decoded.
        let e = approver().check(&w, &[], NOW + 1).unwrap_err();
        assert!(e.contains("not in the node's key list"), "{e}");
        // Expired.
        let e = approver()
            .check(&w, &[key_view()], NOW + 60_000)
            .unwrap_err();
        assert!(e.contains("expired"), "{e}");
    }

    #[test]
    fn a_request_not_signed_by_a_manifest_initiator_is_refused() {
        // Signed by a key the approver's manifest does not list under that id.
        let mallory = InitiatorKey::from_seed("bob", &[66u8; 32]).unwrap();
        let (w, _) = listed(&mallory);
        let e = refused(&w);
        assert!(e.contains("does not verify under your manifest"), "{e}");
        let stranger = InitiatorKey::from_seed("eve", &[67u8; 32]).unwrap();
        let (w, _) = listed(&stranger);
        let e = refused(&w);
        assert!(e.contains("does not verify under your manifest"), "{e}");
    }

    #[test]
    fn hashes_parse_only_as_64_hex_digits() {
        assert_eq!(parse_hash(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(parse_hash("abcd"), None);
        assert_eq!(parse_hash(&"zz".repeat(32)), None);
    }
}
