//! A node's verdict on a manifest offered to it over NATS: accepted (it is now the node's
//! manifest) or refused, with the reason. Signed by the node's identity key, so that the
//! administrator who published the manifest can tell which nodes took it.
//!
//! Wire form (JSON, at most [`MAX_VERDICT_BYTES`]), like a result's (docs/PROTOCOL.md §2):
//!
//! ```json
//! {"node_id":"<node id>","body":"<base64 of the body bytes>","signature":"<128 hex>"}
//! ```
//!
//! `signature` is Ed25519 by the node's signing key over
//! `"keyrack/v1/manifest-verdict" ‖ 0x00 ‖ body bytes`; the body is a [`VerdictBody`] in
//! JSON. The signature covers the bytes received; nothing is re-serialised to verify it.

use ed25519_dalek::{Signature, Signer as _, SigningKey};
use serde::{Deserialize, Serialize};

use crate::identity::{validate_node_id, PublicIdentity};
use crate::subjects::is_token;
use crate::wire;

/// The domain separator of verdict signatures (the 0x00 included).
pub const DOMAIN: &[u8] = b"keyrack/v1/manifest-verdict\0";
/// The body version written and read.
pub const VERSION: u32 = 1;
/// The largest wire form accepted.
pub const MAX_VERDICT_BYTES: usize = 16 * 1024;
/// The longest reason kept (longer ones are cut at a character boundary when signing).
pub const MAX_REASON_CHARS: usize = 1024;

/// Why a verdict was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerdictError {
    /// The wire form or body does not parse or breaks a rule.
    #[error("malformed manifest verdict: {0}")]
    Malformed(String),
    /// A body version this build does not read.
    #[error("manifest verdict version {0} is not supported (this build reads {VERSION})")]
    UnsupportedVersion(u64),
    /// The verdict names another node than the identity it was checked with.
    #[error("manifest verdict from node '{claimed}' checked with the identity of '{expected}'")]
    WrongNode {
        /// The node id the verdict claims.
        claimed: String,
        /// The node id of the identity given.
        expected: String,
    },
    /// The signature does not verify with the node's key.
    #[error("manifest verdict signature of node '{0}' does not verify")]
    BadSignature(String),
}

fn malformed(msg: impl Into<String>) -> VerdictError {
    VerdictError::Malformed(msg.into())
}

/// What a node says about one manifest offered to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictBody {
    /// Body version: 1.
    pub version: u32,
    /// The cluster.
    pub cluster_id: String,
    /// The node judging.
    pub node_id: String,
    /// SHA-256 of the exact message bytes judged (the manifest file as published): tells
    /// copies of one manifest with different signatures apart.
    #[serde(with = "wire::hex_bytes")]
    pub message_hash: [u8; 32],
    /// The hash of the manifest offered (SHA-256 of its canonical bytes); for a message that
    /// does not parse, the message hash.
    #[serde(with = "wire::hex_bytes")]
    pub manifest_hash: [u8; 32],
    /// The version of the manifest offered (0 for a message that does not parse).
    pub offered_version: u64,
    /// Whether the node accepted it (it is now the node's manifest).
    pub accepted: bool,
    /// The node's manifest version after judging.
    pub current_version: u64,
    /// Why (refused: what failed; accepted: a summary). For people; never parse it.
    pub reason: String,
    /// When the node judged, ms since the Unix epoch (node clock).
    pub at_ms: u64,
}

impl VerdictBody {
    /// Checks fields: version, ids, reason length.
    pub fn validate(&self) -> Result<(), VerdictError> {
        if self.version != VERSION {
            return Err(VerdictError::UnsupportedVersion(self.version.into()));
        }
        if !is_token(&self.cluster_id) {
            return Err(malformed(format!(
                "invalid cluster_id '{}'",
                self.cluster_id
            )));
        }
        validate_node_id(&self.node_id).map_err(|e| malformed(e.to_string()))?;
        if self.reason.chars().count() > MAX_REASON_CHARS {
            return Err(malformed(format!(
                "reason longer than {MAX_REASON_CHARS} characters"
            )));
        }
        Ok(())
    }

    /// Parses body bytes: version first, then fields, then [`VerdictBody::validate`].
    pub fn parse(bytes: &[u8]) -> Result<Self, VerdictError> {
        let version = wire::json_body_version(bytes).map_err(VerdictError::Malformed)?;
        if version != u64::from(VERSION) {
            return Err(VerdictError::UnsupportedVersion(version));
        }
        let body: VerdictBody =
            serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        body.validate()?;
        Ok(body)
    }

    /// Cuts the reason to [`MAX_REASON_CHARS`], validates, writes the body as JSON and
    /// signs it with the node's identity key.
    pub fn sign(mut self, node_key: &SigningKey) -> Result<SignedVerdict, VerdictError> {
        if let Some((cut, _)) = self.reason.char_indices().nth(MAX_REASON_CHARS) {
            self.reason.truncate(cut);
        }
        self.validate()?;
        let body = serde_json::to_vec(&self).map_err(|e| malformed(e.to_string()))?;
        let signature = node_key.sign(&wire::signing_input(DOMAIN, &[&body]));
        Ok(SignedVerdict {
            node_id: self.node_id,
            body,
            signature,
        })
    }
}

/// A verdict as received. Nothing in it is trusted until verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedVerdict {
    node_id: String,
    body: Vec<u8>,
    signature: Signature,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerdictWire {
    node_id: String,
    body: String,
    signature: String,
}

impl SignedVerdict {
    /// Checks the wire form's shape (size, members, encodings).
    pub fn parse(bytes: &[u8]) -> Result<Self, VerdictError> {
        if bytes.len() > MAX_VERDICT_BYTES {
            return Err(malformed(format!(
                "verdict larger than {MAX_VERDICT_BYTES} bytes"
            )));
        }
        let w: VerdictWire = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        validate_node_id(&w.node_id).map_err(|e| malformed(e.to_string()))?;
        let (body, signature) =
            wire::decode_signed(&w.body, &w.signature).map_err(VerdictError::Malformed)?;
        Ok(SignedVerdict {
            node_id: w.node_id,
            body,
            signature,
        })
    }

    /// The wire form.
    pub fn to_json(&self) -> Vec<u8> {
        let (body, signature) = wire::encode_signed(&self.body, &self.signature);
        serde_json::to_vec(&VerdictWire {
            node_id: self.node_id.clone(),
            body,
            signature,
        })
        .unwrap_or_default()
    }

    /// The node id claimed (unverified): which key to verify with.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Checks the signature with `node`'s identity (which must be the node named), then
    /// parses the body and checks that it names the same node.
    pub fn verify(&self, node: &PublicIdentity) -> Result<VerdictBody, VerdictError> {
        if node.node_id() != self.node_id {
            return Err(VerdictError::WrongNode {
                claimed: self.node_id.clone(),
                expected: node.node_id().to_owned(),
            });
        }
        if !wire::verify(node.signing_key(), DOMAIN, &[&self.body], &self.signature) {
            return Err(VerdictError::BadSignature(self.node_id.clone()));
        }
        let body = VerdictBody::parse(&self.body)?;
        if body.node_id != self.node_id {
            return Err(malformed("body node_id differs from the signer's"));
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn node(id: &str) -> (SigningKey, PublicIdentity) {
        let key = SigningKey::generate(&mut OsRng);
        let public = PublicIdentity::sign(id, &key, [7u8; 32]).unwrap();
        (key, public)
    }

    fn body(node_id: &str) -> VerdictBody {
        VerdictBody {
            version: VERSION,
            cluster_id: "c1".into(),
            node_id: node_id.into(),
            message_hash: [8; 32],
            manifest_hash: [9; 32],
            offered_version: 2,
            accepted: false,
            current_version: 1,
            reason: "manifest version 2 has 0 valid admin signature(s), 1 required".into(),
            at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn signed_verdict_round_trips_and_verifies() {
        let (key, public) = node("node0");
        let signed = body("node0").sign(&key).unwrap();
        let received = SignedVerdict::parse(&signed.to_json()).unwrap();
        assert_eq!(received.node_id(), "node0");
        assert_eq!(received.verify(&public).unwrap(), body("node0"));
        // An independent check of the signature: ed25519-dalek over domain ‖ body bytes.
        let mut message = DOMAIN.to_vec();
        message.extend_from_slice(&received.body);
        public
            .signing_key()
            .verify_strict(&message, &received.signature)
            .unwrap();
    }

    #[test]
    fn tampered_verdict_is_refused() {
        let (key, public) = node("node0");
        let signed = body("node0").sign(&key).unwrap();
        // Flip "accepted": the body bytes change, the signature no longer covers them.
        let mut tampered = signed.clone();
        let text = String::from_utf8(tampered.body.clone()).unwrap();
        tampered.body = text
            .replace("\"accepted\":false", "\"accepted\":true")
            .into_bytes();
        assert_ne!(tampered.body, signed.body);
        assert!(matches!(
            SignedVerdict::parse(&tampered.to_json())
                .unwrap()
                .verify(&public),
            Err(VerdictError::BadSignature(n)) if n == "node0"
        ));
        // Another node's key: refused.
        let (_, other) = node("node1");
        assert!(matches!(
            signed.verify(&other),
            Err(VerdictError::WrongNode { .. })
        ));
        // Signed by another key under this node's name.
        let (forger, _) = node("node0");
        let forged = body("node0").sign(&forger).unwrap();
        assert!(matches!(
            forged.verify(&public),
            Err(VerdictError::BadSignature(_))
        ));
        // A body naming another node than the wire form.
        let mut renamed = body("node1").sign(&key).unwrap();
        renamed.node_id = "node0".into();
        assert!(matches!(
            renamed.verify(&public),
            Err(VerdictError::Malformed(_))
        ));
    }

    #[test]
    fn bad_wire_forms_are_refused() {
        for bad in [
            &b"not json"[..],
            br#"{"node_id":"node0","body":"e30=","signature":"00"}"#,
            br#"{"node_id":"Node0","body":"e30=","signature":""}"#,
            br#"{"node_id":"node0","body":"e30=","signature":"","extra":1}"#,
        ] {
            assert!(SignedVerdict::parse(bad).is_err(), "{:?}", bad);
        }
        let big = vec![b' '; MAX_VERDICT_BYTES + 1];
        assert!(SignedVerdict::parse(&big).is_err());
        let mut v2 = serde_json::to_value(body("node0")).unwrap();
        v2["version"] = 2.into();
        assert!(matches!(
            VerdictBody::parse(&serde_json::to_vec(&v2).unwrap()),
            Err(VerdictError::UnsupportedVersion(2))
        ));
    }

    #[test]
    fn long_reason_is_cut_when_signing() {
        let (key, public) = node("node0");
        let mut b = body("node0");
        b.reason = "é".repeat(MAX_REASON_CHARS + 10);
        let signed = b.sign(&key).unwrap();
        let back = signed.verify(&public).unwrap();
        assert_eq!(back.reason.chars().count(), MAX_REASON_CHARS);
    }
}
