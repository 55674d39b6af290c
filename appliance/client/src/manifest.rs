//! The cluster manifest: which nodes, initiators and administrators make up a cluster, signed
//! by a quorum of administrators. Every node loads the same one and refuses messages from ids
//! not in it. A new version is accepted only if the *current* administrators sign it.
//!
//! File format (TOML, `format = 1`; unknown keys are errors):
//!
//! ```toml
//! format = 1
//! cluster_id = "prod"
//! version = 2
//! previous = "<64 hex: SHA-256 of version 1's canonical bytes>"   # absent in version 1
//! admin_threshold = 2
//!
//! [[nodes]]            # from each node's identity.pub.toml
//! id = "node0"
//! signing_key = "<64 hex>"
//! agreement_key = "<64 hex>"
//! binding_signature = "<128 hex: the identity file's signature>"
//!
//! [[initiators]]
//! id = "backend"
//! public_key = "<64 hex>"
//! roles = ["keygen", "sign"]
//!
//! [[admins]]
//! id = "alice"
//! public_key = "<64 hex>"
//!
//! [[signatures]]
//! admin = "alice"
//! signature = "<128 hex>"
//! ```
//!
//! Canonical bytes: the compact JSON of everything but `signatures`, keys in the fixed order
//! `format, cluster_id, version, previous (null in version 1), admin_threshold, nodes [id,
//! signing_key, agreement_key, binding_signature], initiators [id, public_key, roles], admins
//! [id, public_key]`, lists in file order, hex lowercase. Each admin signature is Ed25519
//! over `"keyrack/v1/manifest" ‖ 0x00 ‖ canonical bytes`; the manifest hash is SHA-256 of the
//! canonical bytes (so adding signatures does not change it).
//!
//! One key, one member: every Ed25519 key listed (node signing keys, initiator and admin
//! public keys) belongs to exactly one node, initiator or admin, and every node has its own
//! X25519 agreement key ([`ManifestError::SharedKey`]). Otherwise whoever holds a shared key
//! would count as two distinct approvers of a policy quorum, or two admins of a signature
//! threshold. [`Manifest::validate`] checks it, and every way in (creating, parsing, verifying
//! a bootstrap or a successor) goes through it.

use crate::identity::{IdentityError, PublicIdentity};
use crate::subjects::is_token;
use crate::wire;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

/// The file format written and read.
pub const FORMAT: u32 = 1;
/// The domain separator of admin signatures (the 0x00 included).
pub const DOMAIN: &[u8] = b"keyrack/v1/manifest\0";

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file does not parse (syntax, unknown or missing key, bad hex).
    #[error("manifest does not parse: {0}")]
    Parse(String),
    /// A format this build does not read.
    #[error("manifest format {0} is not supported (this build reads {FORMAT})")]
    Format(u32),
    /// A node entry is not a valid public identity.
    #[error("manifest node entry: {0}")]
    Node(#[from] IdentityError),
    /// The content is inconsistent (duplicate ids, bad threshold, bad ids).
    #[error("invalid manifest: {0}")]
    Invalid(String),
    /// Two members list the same key: whoever holds it would count as both (two approvers
    /// of a quorum, two admins of a threshold). Initiators and admins together, and nodes'
    /// signing keys among themselves and against them, share one Ed25519 key space; nodes'
    /// agreement keys are compared among nodes.
    #[error("{}", shared_key_message(.first, .second, *.kind, .key))]
    SharedKey {
        /// The member listed first (nodes, then initiators, then admins, each in file order).
        first: Member,
        /// The later member listing the same key.
        second: Member,
        /// Which kind of key.
        kind: KeyKind,
        /// The key both list.
        key: [u8; 32],
    },
    /// Not enough distinct valid admin signatures.
    #[error(
        "manifest version {version} has {valid} valid admin signature(s), {required} required"
    )]
    UnderSigned {
        /// The manifest's version.
        version: u64,
        /// Distinct admins whose signature verified.
        valid: usize,
        /// The threshold applied.
        required: u16,
    },
    /// Not a successor of the current manifest.
    #[error("not a successor of manifest version {current}: {reason}")]
    NotSuccessor {
        /// The current version.
        current: u64,
        /// Why.
        reason: String,
    },
    /// The signing key is not an administrator's.
    #[error("the key {0} is not an administrator of this manifest")]
    NotAnAdmin(String),
}

/// A member of a manifest, as an error names it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Member {
    /// A node (its id).
    Node(String),
    /// An initiator (its id).
    Initiator(String),
    /// An administrator (its id).
    Admin(String),
}

impl Member {
    /// What it is, in the singular or the plural: "node" or "nodes".
    fn noun(&self, plural: bool) -> &'static str {
        match (self, plural) {
            (Member::Node(_), false) => "node",
            (Member::Node(_), true) => "nodes",
            (Member::Initiator(_), false) => "initiator",
            (Member::Initiator(_), true) => "initiators",
            (Member::Admin(_), false) => "admin",
            (Member::Admin(_), true) => "admins",
        }
    }

    /// Its id.
    pub fn id(&self) -> &str {
        match self {
            Member::Node(id) | Member::Initiator(id) | Member::Admin(id) => id,
        }
    }
}

/// The kinds of key a manifest lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// Ed25519: a node's signing key, an initiator's or an admin's public key.
    Ed25519,
    /// X25519: a node's agreement key.
    X25519,
}

/// The text of [`ManifestError::SharedKey`], e.g. "initiators 'bob' and 'bob2' share one
/// public key (ed25519:1a2b3c4d…): every initiator and admin needs its own key".
fn shared_key_message(first: &Member, second: &Member, kind: KeyKind, key: &[u8; 32]) -> String {
    let same = std::mem::discriminant(first) == std::mem::discriminant(second);
    let who = if same {
        format!(
            "{} '{}' and '{}'",
            first.noun(true),
            first.id(),
            second.id()
        )
    } else {
        format!(
            "{} '{}' and {} '{}'",
            first.noun(false),
            first.id(),
            second.noun(false),
            second.id()
        )
    };
    let (what, prefix) = match kind {
        KeyKind::Ed25519 => ("public key", "ed25519"),
        KeyKind::X25519 => ("agreement key", "x25519"),
    };
    let short: String = hex::encode(key).chars().take(8).collect();
    let advice = match (first, second) {
        (Member::Node(_), Member::Node(_)) => {
            "every node needs its own identity (`keyrack init` on each node)"
        }
        (Member::Node(_), _) | (_, Member::Node(_)) => {
            "a node's identity key is the node's alone; give initiators and admins keys of \
             their own (`keyrack keys generate`)"
        }
        _ => "every initiator and admin needs its own key",
    };
    format!("{who} share one {what} ({prefix}:{short}…): {advice}")
}

/// An initiator: a client allowed to sign requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Initiator {
    /// Its id (a token), named in its requests.
    pub id: String,
    /// Its Ed25519 key.
    pub public_key: VerifyingKey,
    /// Its roles (tokens); what each allows is the node's policy.
    pub roles: Vec<String>,
}

/// An administrator: signs manifests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin {
    /// Its id (a token).
    pub id: String,
    /// Its Ed25519 key.
    pub public_key: VerifyingKey,
}

/// A manifest's content (what admins sign).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The cluster id (a token).
    pub cluster_id: String,
    /// Starts at 1; each successor is higher.
    pub version: u64,
    /// SHA-256 of the previous manifest's canonical bytes; `None` exactly in version 1.
    pub previous: Option<[u8; 32]>,
    /// How many distinct admins of *this* manifest must sign it (and its successor).
    pub admin_threshold: u16,
    /// The nodes.
    pub nodes: Vec<PublicIdentity>,
    /// The initiators.
    pub initiators: Vec<Initiator>,
    /// The administrators.
    pub admins: Vec<Admin>,
}

/// One admin's signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminSignature {
    /// The admin id claimed (signatures by ids not in the admin list are ignored).
    pub admin: String,
    /// The signature.
    pub signature: Signature,
}

/// A manifest with its signatures, not yet verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedManifest {
    /// The content.
    pub manifest: Manifest,
    /// The signatures, in file order.
    pub signatures: Vec<AdminSignature>,
}

/// A manifest that passed [`SignedManifest::verify_bootstrap`] or
/// [`SignedManifest::verify_successor`]: the only form that answers who is a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedManifest(SignedManifest);

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeEntry {
    id: String,
    signing_key: String,
    agreement_key: String,
    binding_signature: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InitiatorEntry {
    id: String,
    public_key: String,
    roles: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminEntry {
    id: String,
    public_key: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureEntry {
    admin: String,
    signature: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    format: u32,
    cluster_id: String,
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    admin_threshold: u16,
    nodes: Vec<NodeEntry>,
    #[serde(default)]
    initiators: Vec<InitiatorEntry>,
    admins: Vec<AdminEntry>,
    #[serde(default)]
    signatures: Vec<SignatureEntry>,
}

/// The canonical form: field order fixed by declaration order, `previous` always present.
#[derive(Serialize)]
struct Canonical<'a> {
    format: u32,
    cluster_id: &'a str,
    version: u64,
    previous: Option<String>,
    admin_threshold: u16,
    nodes: Vec<NodeEntry>,
    initiators: Vec<InitiatorEntry>,
    admins: Vec<AdminEntry>,
}

fn parse_err(field: &str, e: String) -> ManifestError {
    ManifestError::Parse(format!("{field}: {e}"))
}

fn invalid(msg: impl Into<String>) -> ManifestError {
    ManifestError::Invalid(msg.into())
}

fn unique<'a>(what: &str, items: impl IntoIterator<Item = &'a [u8]>) -> Result<(), ManifestError> {
    let mut seen = BTreeSet::new();
    for item in items {
        if !seen.insert(item) {
            return Err(invalid(format!("duplicate {what}")));
        }
    }
    Ok(())
}

/// Refuses a key listed by two members (see [`ManifestError::SharedKey`]).
fn distinct_keys(
    kind: KeyKind,
    listed: impl IntoIterator<Item = (Member, [u8; 32])>,
) -> Result<(), ManifestError> {
    let mut seen = BTreeMap::new();
    for (member, key) in listed {
        match seen.entry(key) {
            Entry::Vacant(slot) => {
                slot.insert(member);
            }
            Entry::Occupied(first) => {
                return Err(ManifestError::SharedKey {
                    first: first.remove(),
                    second: member,
                    kind,
                    key,
                })
            }
        }
    }
    Ok(())
}

impl Manifest {
    fn entries(&self) -> (Vec<NodeEntry>, Vec<InitiatorEntry>, Vec<AdminEntry>) {
        let nodes = self
            .nodes
            .iter()
            .map(|n| NodeEntry {
                id: n.node_id().to_owned(),
                signing_key: hex::encode(n.signing_key().as_bytes()),
                agreement_key: hex::encode(n.agreement_key()),
                binding_signature: hex::encode(n.binding_signature().to_bytes()),
            })
            .collect();
        let initiators = self
            .initiators
            .iter()
            .map(|i| InitiatorEntry {
                id: i.id.clone(),
                public_key: hex::encode(i.public_key.as_bytes()),
                roles: i.roles.clone(),
            })
            .collect();
        let admins = self
            .admins
            .iter()
            .map(|a| AdminEntry {
                id: a.id.clone(),
                public_key: hex::encode(a.public_key.as_bytes()),
            })
            .collect();
        (nodes, initiators, admins)
    }

    /// The canonical bytes admins sign (see the module docs).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let (nodes, initiators, admins) = self.entries();
        let canonical = Canonical {
            format: FORMAT,
            cluster_id: &self.cluster_id,
            version: self.version,
            previous: self.previous.map(hex::encode),
            admin_threshold: self.admin_threshold,
            nodes,
            initiators,
            admins,
        };
        serde_json::to_vec(&canonical).unwrap_or_default()
    }

    /// SHA-256 of the canonical bytes: what a successor's `previous` names.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_bytes()).into()
    }

    /// Whether `signature` is `admin`'s signature of this manifest (the same check the
    /// quorum count makes; `admin` may come from another manifest, e.g. the current one when
    /// this is its successor). For reports that list which signatures are valid.
    pub fn admin_signature_valid(&self, admin: &Admin, signature: &Signature) -> bool {
        signature_verifies(admin, &self.canonical_bytes(), signature)
    }

    /// Checks consistency: ids valid and unique, one key per member (no key listed twice,
    /// see [`ManifestError::SharedKey`]), `previous` present exactly when `version > 1`,
    /// `1 <= admin_threshold <= admins`, at least one node. [`SignedManifest::new`],
    /// [`SignedManifest::from_toml`] and both verifications call it.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if !is_token(&self.cluster_id) {
            return Err(invalid(format!("invalid cluster_id '{}'", self.cluster_id)));
        }
        if self.version == 0 {
            return Err(invalid("version starts at 1"));
        }
        if (self.version == 1) != self.previous.is_none() {
            return Err(invalid(
                "previous is required after version 1, and absent in version 1",
            ));
        }
        if self.nodes.is_empty() {
            return Err(invalid("no nodes"));
        }
        if self.admins.is_empty() {
            return Err(invalid("no admins"));
        }
        if self.admin_threshold == 0 || usize::from(self.admin_threshold) > self.admins.len() {
            return Err(invalid(format!(
                "admin_threshold {} with {} admins",
                self.admin_threshold,
                self.admins.len()
            )));
        }
        for id in self
            .initiators
            .iter()
            .map(|i| &i.id)
            .chain(self.initiators.iter().flat_map(|i| &i.roles))
            .chain(self.admins.iter().map(|a| &a.id))
        {
            if !is_token(id) {
                return Err(invalid(format!("invalid id or role '{id}'")));
            }
        }
        unique("node id", self.nodes.iter().map(|n| n.node_id().as_bytes()))?;
        unique(
            "initiator id",
            self.initiators.iter().map(|i| i.id.as_bytes()),
        )?;
        unique("admin id", self.admins.iter().map(|a| a.id.as_bytes()))?;
        for i in &self.initiators {
            unique("role", i.roles.iter().map(|r| r.as_bytes()))?;
        }
        self.check_one_key_one_member()
    }

    /// One key, one member (the module docs): the Ed25519 keys of all nodes, initiators and
    /// admins are pairwise distinct, and so are the nodes' X25519 agreement keys. Checked
    /// after the ids, so that a member listed twice is reported as a duplicate id.
    fn check_one_key_one_member(&self) -> Result<(), ManifestError> {
        let nodes = self.nodes.iter().map(|n| {
            (
                Member::Node(n.node_id().to_owned()),
                n.signing_key().to_bytes(),
            )
        });
        let initiators = self
            .initiators
            .iter()
            .map(|i| (Member::Initiator(i.id.clone()), i.public_key.to_bytes()));
        let admins = self
            .admins
            .iter()
            .map(|a| (Member::Admin(a.id.clone()), a.public_key.to_bytes()));
        distinct_keys(KeyKind::Ed25519, nodes.chain(initiators).chain(admins))?;
        distinct_keys(
            KeyKind::X25519,
            self.nodes
                .iter()
                .map(|n| (Member::Node(n.node_id().to_owned()), *n.agreement_key())),
        )
    }
}

/// How many distinct admins of `admins` have a valid signature of `message` in `signatures`
/// (unknown admins ignored; one admin counts once however many entries it has).
fn count_signers(admins: &[Admin], message: &[u8], signatures: &[AdminSignature]) -> usize {
    admins
        .iter()
        .filter(|a| {
            signatures
                .iter()
                .any(|s| s.admin == a.id && signature_verifies(a, message, &s.signature))
        })
        .count()
}

/// Whether `signature` is `admin`'s over the canonical bytes `message` (strict Ed25519).
fn signature_verifies(admin: &Admin, message: &[u8], signature: &Signature) -> bool {
    wire::verify(&admin.public_key, DOMAIN, &[message], signature)
}

impl SignedManifest {
    /// An unsigned manifest (checked with [`Manifest::validate`]).
    pub fn new(manifest: Manifest) -> Result<Self, ManifestError> {
        manifest.validate()?;
        Ok(SignedManifest {
            manifest,
            signatures: Vec::new(),
        })
    }

    /// Parses a manifest file and checks its content; signatures are checked by
    /// [`SignedManifest::verify_bootstrap`] / [`SignedManifest::verify_successor`].
    pub fn from_toml(text: &str) -> Result<Self, ManifestError> {
        let file: ManifestFile =
            toml::from_str(text).map_err(|e| ManifestError::Parse(e.to_string()))?;
        if file.format != FORMAT {
            return Err(ManifestError::Format(file.format));
        }
        let previous = file
            .previous
            .as_deref()
            .map(wire::hex_array::<32>)
            .transpose()
            .map_err(|e| parse_err("previous", e))?;
        let mut nodes = Vec::with_capacity(file.nodes.len());
        for n in &file.nodes {
            let field = |f: &str| format!("node '{}' {f}", n.id);
            nodes.push(PublicIdentity::from_parts(
                &n.id,
                &wire::hex_array(&n.signing_key)
                    .map_err(|e| parse_err(&field("signing_key"), e))?,
                &wire::hex_array(&n.agreement_key)
                    .map_err(|e| parse_err(&field("agreement_key"), e))?,
                &wire::hex_array(&n.binding_signature)
                    .map_err(|e| parse_err(&field("binding_signature"), e))?,
            )?);
        }
        let initiators = file
            .initiators
            .into_iter()
            .map(|i| {
                Ok(Initiator {
                    public_key: wire::public_key(&i.public_key)
                        .map_err(|e| parse_err(&format!("initiator '{}' public_key", i.id), e))?,
                    id: i.id,
                    roles: i.roles,
                })
            })
            .collect::<Result<_, ManifestError>>()?;
        let admins = file
            .admins
            .into_iter()
            .map(|a| {
                Ok(Admin {
                    public_key: wire::public_key(&a.public_key)
                        .map_err(|e| parse_err(&format!("admin '{}' public_key", a.id), e))?,
                    id: a.id,
                })
            })
            .collect::<Result<_, ManifestError>>()?;
        let signatures = file
            .signatures
            .into_iter()
            .map(|s| {
                Ok(AdminSignature {
                    signature: wire::signature(&s.signature)
                        .map_err(|e| parse_err(&format!("signature of '{}'", s.admin), e))?,
                    admin: s.admin,
                })
            })
            .collect::<Result<_, ManifestError>>()?;
        let manifest = Manifest {
            cluster_id: file.cluster_id,
            version: file.version,
            previous,
            admin_threshold: file.admin_threshold,
            nodes,
            initiators,
            admins,
        };
        manifest.validate()?;
        Ok(SignedManifest {
            manifest,
            signatures,
        })
    }

    /// The file form.
    pub fn to_toml(&self) -> String {
        let (nodes, initiators, admins) = self.manifest.entries();
        let file = ManifestFile {
            format: FORMAT,
            cluster_id: self.manifest.cluster_id.clone(),
            version: self.manifest.version,
            previous: self.manifest.previous.map(hex::encode),
            admin_threshold: self.manifest.admin_threshold,
            nodes,
            initiators,
            admins,
            signatures: self
                .signatures
                .iter()
                .map(|s| SignatureEntry {
                    admin: s.admin.clone(),
                    signature: hex::encode(s.signature.to_bytes()),
                })
                .collect(),
        };
        let body = toml::to_string(&file).unwrap_or_default();
        format!("# keyrack cluster manifest: edit only through `keyrack manifest`; admins sign the canonical form.\n{body}")
    }

    /// Signs as the admin of this manifest whose public key is `admin_key`'s (replacing
    /// that admin's earlier signature, if any).
    pub fn sign(&mut self, admin_key: &SigningKey) -> Result<(), ManifestError> {
        let public = admin_key.verifying_key();
        let id = self
            .manifest
            .admins
            .iter()
            .find(|a| a.public_key == public)
            .map(|a| a.id.clone())
            .ok_or_else(|| ManifestError::NotAnAdmin(hex::encode(public.as_bytes())))?;
        self.sign_as(&id, admin_key);
        Ok(())
    }

    /// Signs as admin `admin_id`, which need not be in this manifest's admin list: the
    /// admins of the *current* manifest sign its successor, and may be rotated out by it.
    pub fn sign_as(&mut self, admin_id: &str, admin_key: &SigningKey) {
        let signature = admin_key.sign(&wire::signing_input(
            DOMAIN,
            &[&self.manifest.canonical_bytes()],
        ));
        self.signatures.retain(|s| s.admin != admin_id);
        self.signatures.push(AdminSignature {
            admin: admin_id.to_owned(),
            signature,
        });
    }

    /// SHA-256 of the canonical bytes.
    pub fn hash(&self) -> [u8; 32] {
        self.manifest.hash()
    }

    /// Verifies a manifest trusted on first use (installed by an operator): at least
    /// `admin_threshold` distinct admins of its own list signed it.
    pub fn verify_bootstrap(&self) -> Result<VerifiedManifest, ManifestError> {
        self.manifest.validate()?;
        self.require_signers(&self.manifest.admins, self.manifest.admin_threshold)?;
        Ok(VerifiedManifest(self.clone()))
    }

    /// Verifies a successor of `current`: same cluster, higher version, `previous` =
    /// `current`'s hash, and signed by at least `current.admin_threshold` of `current`'s
    /// admins. (Its own admins need not have signed; to be usable for a bootstrap too, it
    /// should also carry a quorum of its own.)
    pub fn verify_successor(
        &self,
        current: &VerifiedManifest,
    ) -> Result<VerifiedManifest, ManifestError> {
        self.manifest.validate()?;
        let cur = &current.0.manifest;
        let not = |reason: String| ManifestError::NotSuccessor {
            current: cur.version,
            reason,
        };
        if self.manifest.cluster_id != cur.cluster_id {
            return Err(not(format!(
                "cluster '{}' is not '{}'",
                self.manifest.cluster_id, cur.cluster_id
            )));
        }
        if self.manifest.version <= cur.version {
            return Err(not(format!(
                "version {} is not higher",
                self.manifest.version
            )));
        }
        if self.manifest.previous != Some(cur.hash()) {
            return Err(not("previous is not the current manifest's hash".into()));
        }
        self.require_signers(&cur.admins, cur.admin_threshold)?;
        Ok(VerifiedManifest(self.clone()))
    }

    fn require_signers(&self, admins: &[Admin], required: u16) -> Result<(), ManifestError> {
        let valid = count_signers(admins, &self.manifest.canonical_bytes(), &self.signatures);
        if valid < usize::from(required) {
            return Err(ManifestError::UnderSigned {
                version: self.manifest.version,
                valid,
                required,
            });
        }
        Ok(())
    }
}

impl VerifiedManifest {
    /// The manifest and its signatures.
    pub fn signed(&self) -> &SignedManifest {
        &self.0
    }

    /// The content.
    pub fn manifest(&self) -> &Manifest {
        &self.0.manifest
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.0.manifest.cluster_id
    }

    /// The version.
    pub fn version(&self) -> u64 {
        self.0.manifest.version
    }

    /// The manifest hash.
    pub fn hash(&self) -> [u8; 32] {
        self.0.manifest.hash()
    }

    /// A node's identity, if it is a member (usable as the `lookup` of
    /// [`crate::envelope::open`]).
    pub fn node(&self, id: &str) -> Option<&PublicIdentity> {
        self.0.manifest.nodes.iter().find(|n| n.node_id() == id)
    }

    /// The member nodes.
    pub fn nodes(&self) -> &[PublicIdentity] {
        &self.0.manifest.nodes
    }

    /// An initiator, if listed.
    pub fn initiator(&self, id: &str) -> Option<&Initiator> {
        self.0.manifest.initiators.iter().find(|i| i.id == id)
    }
}
