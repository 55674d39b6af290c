//! A node's public identity: its id, its Ed25519 signing key and its X25519 key-agreement key,
//! bound together by a signature of the signing key (proof that the node holds it, and that
//! the agreement key is the node's own).
//!
//! File format (`identity.pub.toml`, written by `keyrack init`):
//!
//! ```toml
//! format = 1
//! node_id = "node0"
//! signing_key = "<64 hex: Ed25519 public key>"
//! agreement_key = "<64 hex: X25519 public key>"
//! signature = "<128 hex: Ed25519 signature over the binding below>"
//! ```
//!
//! The signed binding is `"keyrack/v1/public-identity" ‖ 0x00 ‖ node_id ‖ 0x00 ‖ signing_key
//! (32 bytes) ‖ agreement_key (32 bytes)`.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The format version written and read.
pub const FORMAT: u32 = 1;
const BINDING_DOMAIN: &[u8] = b"keyrack/v1/public-identity";

/// Why a public identity was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The file does not parse.
    #[error("public identity does not parse: {0}")]
    Parse(String),
    /// A format this build does not read.
    #[error("public identity format {found} is not supported (this build reads {FORMAT})")]
    Format {
        /// The format in the file.
        found: u32,
    },
    /// The node id is not acceptable.
    #[error(
        "invalid node id '{0}': use 1-64 of a-z, 0-9, '-' and '_', starting with a letter or digit (not 'all')"
    )]
    NodeId(String),
    /// A key field is not a valid key.
    #[error("public identity field {field} is invalid: {reason}")]
    Key {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The binding signature does not verify.
    #[error("public identity of node '{0}' has a bad signature: the file was altered or forged")]
    Signature(String),
}

/// Checks a node id: a subject token (1-64 characters of `a-z0-9-_`, not starting with `-`
/// or `_`, see [`crate::subjects`]), and not `all`, which names a session's broadcast subject.
pub fn validate_node_id(id: &str) -> Result<(), IdentityError> {
    if crate::subjects::is_token(id) && id != crate::subjects::BROADCAST {
        Ok(())
    } else {
        Err(IdentityError::NodeId(id.to_owned()))
    }
}

/// A node's public identity, verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicIdentity {
    node_id: String,
    signing_key: VerifyingKey,
    agreement_key: [u8; 32],
    signature: Signature,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    format: u32,
    node_id: String,
    signing_key: String,
    agreement_key: String,
    signature: String,
}

fn binding(node_id: &str, signing_key: &VerifyingKey, agreement_key: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(BINDING_DOMAIN.len() + node_id.len() + 66);
    m.extend_from_slice(BINDING_DOMAIN);
    m.push(0);
    m.extend_from_slice(node_id.as_bytes());
    m.push(0);
    m.extend_from_slice(signing_key.as_bytes());
    m.extend_from_slice(agreement_key);
    m
}

fn hex32(field: &'static str, value: &str) -> Result<[u8; 32], IdentityError> {
    hex::decode(value)
        .map_err(|e| IdentityError::Key {
            field,
            reason: e.to_string(),
        })?
        .try_into()
        .map_err(|_| IdentityError::Key {
            field,
            reason: "must be 32 bytes".into(),
        })
}

impl PublicIdentity {
    /// Makes and signs the public identity of the node holding `signing_key`.
    pub fn sign(
        node_id: &str,
        signing_key: &SigningKey,
        agreement_key: [u8; 32],
    ) -> Result<Self, IdentityError> {
        validate_node_id(node_id)?;
        let verifying = signing_key.verifying_key();
        let signature = signing_key.sign(&binding(node_id, &verifying, &agreement_key));
        Ok(PublicIdentity {
            node_id: node_id.to_owned(),
            signing_key: verifying,
            agreement_key,
            signature,
        })
    }

    /// Parses and verifies a public identity file.
    pub fn from_toml(text: &str) -> Result<Self, IdentityError> {
        let file: IdentityFile =
            toml::from_str(text).map_err(|e| IdentityError::Parse(e.to_string()))?;
        if file.format != FORMAT {
            return Err(IdentityError::Format { found: file.format });
        }
        let signing_key = hex32("signing_key", &file.signing_key)?;
        let agreement_key = hex32("agreement_key", &file.agreement_key)?;
        let signature: [u8; 64] = hex::decode(&file.signature)
            .map_err(|e| IdentityError::Key {
                field: "signature",
                reason: e.to_string(),
            })?
            .try_into()
            .map_err(|_| IdentityError::Key {
                field: "signature",
                reason: "must be 64 bytes".into(),
            })?;
        Self::from_parts(&file.node_id, &signing_key, &agreement_key, &signature)
    }

    /// Checks and assembles a public identity from its parts (as listed in a cluster
    /// manifest): the node id, the Ed25519 key, the X25519 key and the binding signature.
    pub fn from_parts(
        node_id: &str,
        signing_key: &[u8; 32],
        agreement_key: &[u8; 32],
        signature: &[u8; 64],
    ) -> Result<Self, IdentityError> {
        validate_node_id(node_id)?;
        let signing_key =
            VerifyingKey::from_bytes(signing_key).map_err(|e| IdentityError::Key {
                field: "signing_key",
                reason: e.to_string(),
            })?;
        if signing_key.is_weak() {
            return Err(IdentityError::Key {
                field: "signing_key",
                reason: "weak (small-order) key".into(),
            });
        }
        let signature = Signature::from_bytes(signature);
        signing_key
            .verify_strict(&binding(node_id, &signing_key, agreement_key), &signature)
            .map_err(|_| IdentityError::Signature(node_id.to_owned()))?;
        Ok(PublicIdentity {
            node_id: node_id.to_owned(),
            signing_key,
            agreement_key: *agreement_key,
            signature,
        })
    }

    /// The file form (see the module docs).
    pub fn to_toml(&self) -> String {
        let file = IdentityFile {
            format: FORMAT,
            node_id: self.node_id.clone(),
            signing_key: hex::encode(self.signing_key.as_bytes()),
            agreement_key: hex::encode(self.agreement_key),
            signature: hex::encode(self.signature.to_bytes()),
        };
        let body = toml::to_string(&file).unwrap_or_default();
        format!("# keyrack node public identity: give this file to the cluster's administrators.\n{body}")
    }

    /// The node id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The node's Ed25519 key, which signs everything the node says.
    pub fn signing_key(&self) -> &VerifyingKey {
        &self.signing_key
    }

    /// The node's X25519 public key, for encrypting point-to-point messages to it.
    pub fn agreement_key(&self) -> &[u8; 32] {
        &self.agreement_key
    }

    /// The binding signature (see the module docs).
    pub fn binding_signature(&self) -> &Signature {
        &self.signature
    }

    /// Checks a signature the node made (strict Ed25519 verification).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        self.signing_key.verify(message, signature).is_ok()
            && self.signing_key.verify_strict(message, signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn sample() -> (SigningKey, PublicIdentity) {
        let sk = SigningKey::generate(&mut OsRng);
        let id = PublicIdentity::sign("node0", &sk, [9; 32]).unwrap();
        (sk, id)
    }

    #[test]
    fn file_round_trips_and_verifies() {
        let (sk, id) = sample();
        let back = PublicIdentity::from_toml(&id.to_toml()).unwrap();
        assert_eq!(back, id);
        assert_eq!(back.signing_key(), &sk.verifying_key());
        assert!(back.verify(b"m", &sk.sign(b"m")));
        assert!(!back.verify(b"other", &sk.sign(b"m")));
    }

    #[test]
    fn altered_fields_are_refused() {
        let (_, id) = sample();
        let text = id.to_toml();
        let other_agreement = text.replace(&hex::encode([9u8; 32]), &hex::encode([8u8; 32]));
        assert!(matches!(
            PublicIdentity::from_toml(&other_agreement),
            Err(IdentityError::Signature(_))
        ));
        let renamed = text.replace("node_id = \"node0\"", "node_id = \"node1\"");
        assert!(matches!(
            PublicIdentity::from_toml(&renamed),
            Err(IdentityError::Signature(_))
        ));
        let future = text.replace("format = 1", "format = 2");
        assert!(matches!(
            PublicIdentity::from_toml(&future),
            Err(IdentityError::Format { found: 2 })
        ));
        let extra = format!("{text}comment = \"x\"\n");
        assert!(matches!(
            PublicIdentity::from_toml(&extra),
            Err(IdentityError::Parse(_))
        ));
    }

    #[test]
    fn node_ids_are_checked() {
        for good in ["node0", "a", "rack-1_b"] {
            validate_node_id(good).unwrap();
        }
        for bad in [
            "",
            "all",
            "-x",
            "_x",
            "Node0",
            "n/0",
            "n 0",
            &"x".repeat(65),
        ] {
            assert!(validate_node_id(bad).is_err(), "{bad:?} accepted");
        }
    }
}
