//! Node results: the body a node signs in answer to a request, its wire form, and the checks
//! a client makes (node signature over the exact bytes, shape, that it answers *its* request).
//!
//! Wire form (JSON object, exactly these three members):
//!
//! ```json
//! {"node_id": "<id>", "body": "<base64 of the body bytes>", "signature": "<128 hex>"}
//! ```
//!
//! The signature is Ed25519 by the node's identity key over `"keyrack/v1/result" ‖ 0x00 ‖
//! body bytes`. This module builds and checks results; it does not verify the threshold
//! signature a result carries (the SDK does that with the scheme's verifier).

use crate::codes::ErrorCode;
use crate::identity::{validate_node_id, PublicIdentity};
use crate::manifest::VerifiedManifest;
use crate::scheme::Scheme;
use crate::subjects::is_token;
use crate::wire;
use ed25519_dalek::{Signature, Signer as _, SigningKey};
use serde::{Deserialize, Serialize};

/// The body version written and read.
pub const VERSION: u32 = 1;
/// The domain separator of result signatures (the 0x00 included).
pub const DOMAIN: &[u8] = b"keyrack/v1/result\0";
/// The largest result message accepted, in bytes.
pub const MAX_RESULT_BYTES: usize = 256 * 1024;

/// Why a result was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResultError {
    /// The wire form or body does not parse or is inconsistent.
    #[error("malformed result: {0}")]
    Malformed(String),
    /// A body version this build does not read.
    #[error("result body version {0} is not supported (this build reads {VERSION})")]
    UnsupportedVersion(u64),
    /// The node is not in the manifest, or not the one expected.
    #[error("result from unknown node '{0}'")]
    UnknownNode(String),
    /// The signature does not verify.
    #[error("result signature of node '{0}' does not verify")]
    BadSignature(String),
}

/// How a request ended at one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Done; `keys` (keygen) or `signature` (sign) hold the outcome.
    Ok,
    /// Not attempted: the request was refused (see `code`).
    Refused,
    /// Attempted and failed (see `code`).
    Failed,
    /// Not final: the request waits at this node (for approvals: `code` is
    /// `approvals_required`, the message names the rule and group). The node's final result
    /// follows when it is decided, or when the request expires.
    Pending,
}

/// A key's lifecycle status at one node, as a `status` result reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum KeyStatus {
    /// A keygen is running; no public key yet.
    Pending,
    /// The node holds a sealed share: the key can sign.
    Ready,
    /// The last keygen failed (a new keygen may retry); no public key.
    Error,
    /// Deleted: the share is erased and the id stays taken (public key kept if it had one).
    Deleted,
}

impl KeyStatus {
    /// The wire form (as the node's store names it): `PENDING`, `READY`, `ERROR`, `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Pending => "PENDING",
            KeyStatus::Ready => "READY",
            KeyStatus::Error => "ERROR",
            KeyStatus::Deleted => "DELETED",
        }
    }
}

impl std::fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key, as a keygen (or reshare/refresh) result reports it, or as a node sees it in a
/// `status` result (with [`KeyInfo::status`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyInfo {
    /// The key id.
    pub key_id: String,
    /// The scheme.
    pub scheme: Scheme,
    /// The group public key (length per scheme, see [`Scheme`]), hex. Empty only in a
    /// `status` result, for a key that never had one (not READY, nor DELETED after READY).
    #[serde(with = "wire::hex_bytes")]
    pub public_key: Vec<u8>,
    /// The BIP-32-style chain code for non-hardened derivation, 32 bytes hex (all zero
    /// when `public_key` is empty).
    #[serde(with = "wire::hex_bytes")]
    pub chain_code: [u8; 32],
    /// The threshold `t`.
    pub threshold: u16,
    /// The committee's node ids.
    pub participants: Vec<String>,
    /// The share version (1 after keygen, +1 per reshare or refresh).
    pub version: u32,
    /// `status` results only: the key's status at the node answering. Absent in every other
    /// result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<KeyStatus>,
}

/// A threshold signature, as a sign result reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureInfo {
    /// The scheme.
    pub scheme: Scheme,
    /// Exactly the bytes the scheme's verification takes as its message: for ECDSA the
    /// 32-byte digest the node computed (or the raw digest given); for Ed25519 the message;
    /// for BIP-340 Schnorr the 32-byte message. Hex.
    #[serde(with = "wire::hex_bytes")]
    pub digest_or_message: Vec<u8>,
    /// The derivation path used (empty: the root key).
    #[serde(default)]
    pub derivation_path: Vec<u32>,
    /// The key that signed: the derived child key if a path was used. Hex.
    #[serde(with = "wire::hex_bytes")]
    pub public_key: Vec<u8>,
    /// The signature, 64 bytes hex (ECDSA: `r ‖ s`, low `s`).
    #[serde(with = "wire::hex_bytes")]
    pub signature: [u8; 64],
    /// ECDSA only: `r`, 32 bytes hex.
    #[serde(
        default,
        with = "wire::hex_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub r: Option<[u8; 32]>,
    /// ECDSA only: `s`, 32 bytes hex.
    #[serde(
        default,
        with = "wire::hex_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub s: Option<[u8; 32]>,
    /// ECDSA only: the recovery id, 0 or 1 (add 27, or use EIP-155, as the chain wants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<u8>,
}

/// A result body: the JSON object a node signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultBody {
    /// Body version: 1.
    pub version: u32,
    /// The request answered.
    pub request_id: String,
    /// SHA-256 of the request body bytes answered (see
    /// [`crate::request::request_hash`]). A client accepts only results carrying the hash of
    /// the request it sent: a refusal of a forged copy of its request carries another hash.
    #[serde(with = "wire::hex_bytes")]
    pub request_hash: [u8; 32],
    /// The node answering (equal to the wire form's `node_id`).
    pub node_id: String,
    /// The client the request named.
    pub client_id: String,
    /// How it ended.
    pub status: Status,
    /// Why, when `status` is not `ok`; absent when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    /// For people; never parse it.
    pub message: String,
    /// keygen (ok): the keys, one per scheme. status (ok): the node's keys with this key id
    /// (of the schemes asked, if any), each with its `status`; none if it has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyInfo>,
    /// sign (ok): the signature (for a payload signed in several parts, the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureInfo>,
    /// sign (ok) of a chain payload: every signature, one per part the chain plugin named
    /// (one for most payloads; one per own input of a PSBT), in order; `signature` is the
    /// first. Empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureInfo>,
    /// sign (ok) of a chain payload: the chain plugin's signed output (EVM: the signed raw
    /// transaction, or `r ‖ s ‖ v` for a message; Bitcoin: the PSBT with the signatures,
    /// finalised where complete; Solana: the wire transaction), hex. Absent otherwise.
    #[serde(
        default,
        with = "wire::hex_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub signed_payload: Option<Vec<u8>>,
    /// When the node wrote this, ms since the Unix epoch (node clock).
    pub at_ms: u64,
}

fn malformed(msg: impl Into<String>) -> ResultError {
    ResultError::Malformed(msg.into())
}

impl SignatureInfo {
    fn validate(&self) -> Result<(), ResultError> {
        if self.public_key.len() != self.scheme.public_key_len() {
            return Err(malformed(format!(
                "{} public key must be {} bytes",
                self.scheme,
                self.scheme.public_key_len()
            )));
        }
        let ecdsa_parts = (self.r, self.s, self.v);
        match self.scheme {
            Scheme::EcdsaSecp256k1 => {
                let (Some(r), Some(s), Some(v)) = ecdsa_parts else {
                    return Err(malformed("an ECDSA signature needs r, s and v"));
                };
                if self.signature[..32] != r || self.signature[32..] != s {
                    return Err(malformed("ECDSA signature is not r ‖ s"));
                }
                if v > 1 {
                    return Err(malformed("ECDSA v must be 0 or 1"));
                }
                if self.digest_or_message.len() != 32 {
                    return Err(malformed("an ECDSA digest is 32 bytes"));
                }
            }
            Scheme::Ed25519 | Scheme::SchnorrSecp256k1 => {
                if ecdsa_parts != (None, None, None) {
                    return Err(malformed(format!(
                        "r, s, v are for ECDSA, not {}",
                        self.scheme
                    )));
                }
            }
        }
        Ok(())
    }
}

impl ResultBody {
    /// Checks fields and consistency (`code` iff not ok; ids are tokens).
    pub fn validate(&self) -> Result<(), ResultError> {
        if self.version != VERSION {
            return Err(ResultError::UnsupportedVersion(self.version.into()));
        }
        if !wire::is_hex32(&self.request_id) {
            return Err(malformed("request_id must be 32 lowercase hex digits"));
        }
        validate_node_id(&self.node_id).map_err(|e| malformed(e.to_string()))?;
        if !is_token(&self.client_id) {
            return Err(malformed(format!("invalid client_id '{}'", self.client_id)));
        }
        match (self.status, self.code) {
            (Status::Ok, Some(_)) => return Err(malformed("an ok result carries no code")),
            (Status::Refused | Status::Failed | Status::Pending, None) => {
                return Err(malformed(
                    "a refused, failed or pending result needs a code",
                ))
            }
            _ => {}
        }
        if self.status != Status::Ok
            && (!self.keys.is_empty()
                || self.signature.is_some()
                || !self.signatures.is_empty()
                || self.signed_payload.is_some())
        {
            return Err(malformed("only an ok result carries keys or signatures"));
        }
        if !self.signatures.is_empty() && self.signatures.first() != self.signature.as_ref() {
            return Err(malformed("`signature` must be the first of `signatures`"));
        }
        for k in &self.keys {
            let no_key_yet = k.public_key.is_empty()
                && !matches!(k.status, None | Some(KeyStatus::Ready))
                && k.chain_code == [0; 32];
            if k.public_key.len() != k.scheme.public_key_len() && !no_key_yet {
                return Err(malformed(format!(
                    "{} public key has the wrong length",
                    k.scheme
                )));
            }
            if k.participants.iter().any(|p| validate_node_id(p).is_err()) {
                return Err(malformed("invalid participant id"));
            }
        }
        for s in self.signature.iter().chain(&self.signatures) {
            s.validate()?;
        }
        Ok(())
    }

    /// Parses body bytes: version first, then fields, then [`ResultBody::validate`].
    pub fn parse(bytes: &[u8]) -> Result<Self, ResultError> {
        let version = wire::json_body_version(bytes).map_err(ResultError::Malformed)?;
        if version != u64::from(VERSION) {
            return Err(ResultError::UnsupportedVersion(version));
        }
        let body: ResultBody =
            serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        body.validate()?;
        Ok(body)
    }

    /// Validates, writes the body as JSON (fields in declaration order) and signs it with
    /// the node's identity key.
    pub fn sign(&self, node_key: &SigningKey) -> Result<SignedResult, ResultError> {
        self.validate()?;
        let body = serde_json::to_vec(self).map_err(|e| malformed(e.to_string()))?;
        let signature = node_key.sign(&wire::signing_input(DOMAIN, &[&body]));
        Ok(SignedResult {
            node_id: self.node_id.clone(),
            body,
            signature,
        })
    }
}

/// A result as received. Nothing in it is trusted until verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedResult {
    node_id: String,
    body: Vec<u8>,
    signature: Signature,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultWire {
    node_id: String,
    body: String,
    signature: String,
}

impl SignedResult {
    /// Checks the wire form's shape.
    pub fn parse(bytes: &[u8]) -> Result<Self, ResultError> {
        if bytes.len() > MAX_RESULT_BYTES {
            return Err(malformed(format!(
                "result larger than {MAX_RESULT_BYTES} bytes"
            )));
        }
        let w: ResultWire = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        validate_node_id(&w.node_id).map_err(|e| malformed(e.to_string()))?;
        let (body, signature) =
            wire::decode_signed(&w.body, &w.signature).map_err(ResultError::Malformed)?;
        Ok(SignedResult {
            node_id: w.node_id,
            body,
            signature,
        })
    }

    /// The wire form.
    pub fn to_json(&self) -> Vec<u8> {
        let (body, signature) = wire::encode_signed(&self.body, &self.signature);
        let w = ResultWire {
            node_id: self.node_id.clone(),
            body,
            signature,
        };
        serde_json::to_vec(&w).unwrap_or_default()
    }

    /// The node id claimed (unverified).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The exact body bytes.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// Checks the signature with the node's identity (which must be the node named), then
    /// parses the body and checks it names the same node.
    pub fn verify(&self, node: &PublicIdentity) -> Result<ResultBody, ResultError> {
        if node.node_id() != self.node_id {
            return Err(ResultError::UnknownNode(self.node_id.clone()));
        }
        if !wire::verify(node.signing_key(), DOMAIN, &[&self.body], &self.signature) {
            return Err(ResultError::BadSignature(self.node_id.clone()));
        }
        let body = ResultBody::parse(&self.body)?;
        if body.node_id != self.node_id {
            return Err(malformed("body node_id differs from the signer's"));
        }
        Ok(body)
    }

    /// [`SignedResult::verify`] with the node's identity from the manifest.
    pub fn verify_with(&self, manifest: &VerifiedManifest) -> Result<ResultBody, ResultError> {
        let node = manifest
            .node(&self.node_id)
            .ok_or_else(|| ResultError::UnknownNode(self.node_id.clone()))?;
        self.verify(node)
    }
}

impl ResultBody {
    /// Whether this result answers `request` (same request id and request hash). A client
    /// drops results that do not: a node refusing a forged copy of a request answers the
    /// forged bytes, not the client's.
    pub fn answers(&self, request: &crate::request::SignedRequest) -> bool {
        self.request_hash == request.hash()
            && request
                .unverified_body()
                .is_ok_and(|b| b.request_id == self.request_id)
    }
}
