//! Signed policy bundles: a policy version that nodes activate only with a majority of the
//! policy admins' signatures, chained to the version before it by hash.
//!
//! Canonical bytes: the compact JSON of `{format, cluster_id, version, previous (hex or
//! null), admin_threshold, policy_sha256 (hex)}` in that order. The bundle hash is their
//! SHA-256; each admin signs `"keyrack/v1/policy-bundle\0" ‖ canonical` with Ed25519. The
//! policy text itself is covered through its SHA-256, so changing one byte of it changes the
//! hash and voids every signature.

use std::collections::BTreeSet;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::file::{Policy, PolicyError};

/// The only bundle format.
pub const BUNDLE_FORMAT: u32 = 1;

/// What each admin signature covers, before the canonical bytes.
pub const BUNDLE_DOMAIN: &[u8] = b"keyrack/v1/policy-bundle\0";

/// A policy admin: a manifest initiator holding the role `policy-admin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyAdmin {
    /// The initiator id.
    pub id: String,
    /// Its Ed25519 key.
    pub public_key: VerifyingKey,
}

/// The signed content of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// [`BUNDLE_FORMAT`].
    pub format: u32,
    /// The cluster it is for.
    pub cluster_id: String,
    /// 1, 2, … each activation one more.
    pub version: u64,
    /// The hash of the bundle it succeeds; `None` for version 1.
    pub previous: Option<[u8; 32]>,
    /// How many admins must sign this bundle and its successor.
    pub admin_threshold: u16,
    /// The policy TOML text.
    pub policy: String,
}

impl Bundle {
    /// The canonical bytes (see the module docs).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Canonical<'a> {
            format: u32,
            cluster_id: &'a str,
            version: u64,
            previous: Option<String>,
            admin_threshold: u16,
            policy_sha256: String,
        }
        let c = Canonical {
            format: self.format,
            cluster_id: &self.cluster_id,
            version: self.version,
            previous: self.previous.map(hex::encode),
            admin_threshold: self.admin_threshold,
            policy_sha256: hex::encode(Sha256::digest(self.policy.as_bytes())),
        };
        serde_json::to_vec(&c).unwrap_or_default()
    }

    /// SHA-256 of the canonical bytes.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_bytes()).into()
    }

    fn signed_message(&self) -> Vec<u8> {
        let mut m = BUNDLE_DOMAIN.to_vec();
        m.extend_from_slice(&self.canonical_bytes());
        m
    }
}

/// Why a bundle was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The file does not read as a bundle.
    #[error("not a policy bundle: {0}")]
    Parse(String),
    /// A format this keyrack does not read.
    #[error("bundle format {0} is not supported (this keyrack reads format {BUNDLE_FORMAT})")]
    Format(u32),
    /// The policy text does not parse.
    #[error("the bundle's policy is invalid: {0}")]
    Policy(PolicyError),
    /// Made for another cluster.
    #[error("the bundle is for cluster '{bundle}', this is cluster '{expected}'")]
    WrongCluster {
        /// The bundle's cluster.
        bundle: String,
        /// The cluster it was offered to.
        expected: String,
    },
    /// Signed by someone who is not a policy admin: the whole bundle is refused.
    #[error("signed by '{0}', who is not a policy admin (an initiator with role policy-admin): bundle refused")]
    UnknownSigner(String),
    /// A signature that does not verify: the whole bundle is refused.
    #[error("the signature of '{0}' does not verify over this bundle (tampered or signed for other content)")]
    BadSignature(String),
    /// Too few distinct admins signed.
    #[error("signed by {valid} distinct policy admin(s), {required} required")]
    UnderSigned {
        /// Distinct valid signers.
        valid: usize,
        /// How many are needed.
        required: u16,
    },
    /// The admin threshold is not a majority of the admins.
    #[error("invalid admin_threshold: {0}")]
    InvalidThreshold(String),
    /// Not newer than the active bundle.
    #[error("bundle version {version} is not newer than the active version {active}")]
    Older {
        /// The bundle's version.
        version: u64,
        /// The active version.
        active: u64,
    },
    /// Does not continue the active bundle's chain (or is not a valid first bundle).
    #[error("not the successor of the active bundle: {0}")]
    NotSuccessor(String),
    /// It is the active bundle already.
    #[error("this bundle is already the active one")]
    AlreadyActive,
}

/// A bundle with its admin signatures: the file `keyrack policy sign` writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedBundle {
    /// The content.
    pub bundle: Bundle,
    /// `(admin id, signature)`, in the order added.
    pub signatures: Vec<(String, Signature)>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    admin: String,
    signature: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleFile {
    format: u32,
    cluster_id: String,
    version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    admin_threshold: u16,
    policy: String,
    #[serde(default)]
    signatures: Vec<SignatureFile>,
}

fn parse_hash(field: &str, text: &str) -> Result<[u8; 32], BundleError> {
    hex::decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            BundleError::Parse(format!("{field}: expected 64 hex digits (a SHA-256 hash)"))
        })
}

impl SignedBundle {
    /// An unsigned bundle.
    pub fn new(bundle: Bundle) -> Self {
        Self {
            bundle,
            signatures: Vec::new(),
        }
    }

    /// Whether a TOML text looks like a bundle (rather than a bare policy): it has a
    /// top-level `cluster_id` and a `policy` string.
    pub fn looks_like_bundle(text: &str) -> bool {
        toml::from_str::<toml::Table>(text)
            .map(|t| {
                t.contains_key("cluster_id") && t.get("policy").is_some_and(toml::Value::is_str)
            })
            .unwrap_or(false)
    }

    /// Reads a bundle file. Only the form is checked here; [`SignedBundle::verify`] judges it.
    pub fn from_toml(text: &str) -> Result<Self, BundleError> {
        let f: BundleFile =
            toml::from_str(text).map_err(|e: toml::de::Error| BundleError::Parse(e.to_string()))?;
        let previous = f
            .previous
            .as_deref()
            .map(|p| parse_hash("previous", p))
            .transpose()?;
        let mut signatures = Vec::with_capacity(f.signatures.len());
        for (i, s) in f.signatures.into_iter().enumerate() {
            let bytes: [u8; 64] = hex::decode(&s.signature)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    BundleError::Parse(format!(
                        "signatures[{i}].signature: expected 128 hex digits (an Ed25519 signature)"
                    ))
                })?;
            signatures.push((s.admin, Signature::from_bytes(&bytes)));
        }
        Ok(Self {
            bundle: Bundle {
                format: f.format,
                cluster_id: f.cluster_id,
                version: f.version,
                previous,
                admin_threshold: f.admin_threshold,
                policy: f.policy,
            },
            signatures,
        })
    }

    /// The file form (the policy as a multi-line string; reads back exactly).
    pub fn to_toml(&self) -> String {
        let b = &self.bundle;
        let f = BundleFile {
            format: b.format,
            cluster_id: b.cluster_id.clone(),
            version: b.version,
            previous: b.previous.map(hex::encode),
            admin_threshold: b.admin_threshold,
            policy: b.policy.clone(),
            signatures: self
                .signatures
                .iter()
                .map(|(admin, sig)| SignatureFile {
                    admin: admin.clone(),
                    signature: hex::encode(sig.to_bytes()),
                })
                .collect(),
        };
        let body = toml::to_string(&f).unwrap_or_default();
        format!(
            "# keyrack policy bundle: {} version {}, hash {}\n# Signed by policy admins with `keyrack policy sign`; edit nothing (every byte of `policy` is signed).\n{body}",
            b.cluster_id,
            b.version,
            hex::encode(self.hash())
        )
    }

    /// The bundle hash.
    pub fn hash(&self) -> [u8; 32] {
        self.bundle.hash()
    }

    /// Adds (or replaces) `admin_id`'s signature.
    pub fn sign_as(&mut self, admin_id: &str, key: &SigningKey) {
        let sig = key.sign(&self.bundle.signed_message());
        self.signatures.retain(|(id, _)| id != admin_id);
        self.signatures.push((admin_id.to_owned(), sig));
    }

    fn check_signers(
        &self,
        admins: &[PolicyAdmin],
        required: u16,
    ) -> Result<Vec<String>, BundleError> {
        let message = self.bundle.signed_message();
        let mut valid = BTreeSet::new();
        for (id, sig) in &self.signatures {
            let admin = admins
                .iter()
                .find(|a| &a.id == id)
                .ok_or_else(|| BundleError::UnknownSigner(id.clone()))?;
            admin
                .public_key
                .verify_strict(&message, sig)
                .map_err(|_| BundleError::BadSignature(id.clone()))?;
            valid.insert(id.clone());
        }
        if valid.len() < usize::from(required) {
            return Err(BundleError::UnderSigned {
                valid: valid.len(),
                required,
            });
        }
        Ok(valid.into_iter().collect())
    }

    fn check_content(&self, cluster_id: &str, admins: &[PolicyAdmin]) -> Result<(), BundleError> {
        let b = &self.bundle;
        if b.format != BUNDLE_FORMAT {
            return Err(BundleError::Format(b.format));
        }
        if b.cluster_id != cluster_id {
            return Err(BundleError::WrongCluster {
                bundle: b.cluster_id.clone(),
                expected: cluster_id.to_owned(),
            });
        }
        let n = admins.len();
        let t = usize::from(b.admin_threshold);
        if n == 0 {
            return Err(BundleError::InvalidThreshold(
                "there are no policy admins (manifest initiators with role policy-admin)".into(),
            ));
        }
        if !(n / 2 < t && t <= n) {
            return Err(BundleError::InvalidThreshold(format!(
                "{t} of {n} policy admins: it must be a majority ({} to {n})",
                n / 2 + 1
            )));
        }
        Ok(())
    }

    /// Verifies the bundle for activation on `cluster_id` by `admins`, as the successor of
    /// `active` (or as the first bundle, version 1 without `previous`).
    pub fn verify(
        &self,
        cluster_id: &str,
        admins: &[PolicyAdmin],
        active: Option<&VerifiedBundle>,
    ) -> Result<VerifiedBundle, BundleError> {
        let b = &self.bundle;
        let hash = self.hash();
        let mut required = b.admin_threshold;
        match active {
            None => {
                if b.version != 1 || b.previous.is_some() {
                    return Err(BundleError::NotSuccessor(format!(
                        "no bundle is active, so the first must be version 1 with no previous (this is version {}{})",
                        b.version,
                        if b.previous.is_some() { " with a previous" } else { "" }
                    )));
                }
            }
            Some(a) => {
                if a.hash == hash {
                    return Err(BundleError::AlreadyActive);
                }
                if b.version <= a.version() {
                    return Err(BundleError::Older {
                        version: b.version,
                        active: a.version(),
                    });
                }
                if b.previous != Some(a.hash) {
                    return Err(BundleError::NotSuccessor(format!(
                        "its previous is {}, the active bundle (version {}) is {}",
                        b.previous.map_or("none".to_owned(), hex::encode),
                        a.version(),
                        hex::encode(a.hash)
                    )));
                }
                required = required.max(a.bundle().admin_threshold);
            }
        }
        self.check_content(cluster_id, admins)?;
        // Signatures before the policy text: an unsigned text never reaches the parser.
        let signers = self.check_signers(admins, required)?;
        let policy = Policy::from_toml(&b.policy).map_err(BundleError::Policy)?;
        Ok(VerifiedBundle {
            signed: self.clone(),
            hash,
            policy,
            signers,
        })
    }

    /// Verifies a bundle the node installed earlier (reloading it at start): every check of
    /// [`SignedBundle::verify`] but its place in the chain, which was checked on activation.
    /// A tampered file fails here (its hash changes, so its signatures do not verify).
    pub fn verify_installed(
        &self,
        cluster_id: &str,
        admins: &[PolicyAdmin],
    ) -> Result<VerifiedBundle, BundleError> {
        self.check_content(cluster_id, admins)?;
        let signers = self.check_signers(admins, self.bundle.admin_threshold)?;
        let policy = Policy::from_toml(&self.bundle.policy).map_err(BundleError::Policy)?;
        Ok(VerifiedBundle {
            signed: self.clone(),
            hash: self.hash(),
            policy,
            signers,
        })
    }
}

/// A bundle that verified: its parsed policy and who signed it.
#[derive(Clone, Debug)]
pub struct VerifiedBundle {
    signed: SignedBundle,
    hash: [u8; 32],
    policy: Policy,
    signers: Vec<String>,
}

impl VerifiedBundle {
    /// The content.
    pub fn bundle(&self) -> &Bundle {
        &self.signed.bundle
    }

    /// The bundle with its signatures.
    pub fn signed(&self) -> &SignedBundle {
        &self.signed
    }

    /// The bundle hash.
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// The version.
    pub fn version(&self) -> u64 {
        self.signed.bundle.version
    }

    /// The parsed policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The admins whose signatures verified (sorted, distinct).
    pub fn signers(&self) -> Vec<String> {
        self.signers.clone()
    }
}
