//! What `keyrack manifest show` (and `sign`, after signing) reports: the members, each
//! signature's standing, and the outcome of the bootstrap and successor rules. The rules
//! themselves are [`keyrack_client::manifest`]'s; this only judges with them and prints.

use keyrack_client::manifest::{Admin, Manifest, ManifestError, SignedManifest, VerifiedManifest};
use serde::Serialize;

/// One signature entry, judged against this manifest's admins and, for a successor, the
/// current manifest's.
#[derive(Serialize)]
struct SignatureReport {
    admin: String,
    /// `valid`, `invalid` (does not verify with that admin's key) or `unknown_admin`.
    status: &'static str,
    /// The versions whose admin list the signature is valid for.
    valid_for_versions: Vec<u64>,
}

/// The outcome of one verification rule.
#[derive(Serialize)]
struct Check {
    ok: bool,
    detail: String,
}

#[derive(Serialize)]
struct NodeReport {
    index: usize,
    id: String,
    signing_key: String,
    agreement_key: String,
}

#[derive(Serialize)]
struct InitiatorReport {
    id: String,
    public_key: String,
    roles: Vec<String>,
}

#[derive(Serialize)]
struct AdminReport {
    id: String,
    public_key: String,
}

/// What `keyrack manifest show` prints.
#[derive(Serialize)]
pub(super) struct Report {
    cluster_id: String,
    version: u64,
    hash: String,
    previous: Option<String>,
    admin_threshold: u16,
    nodes: Vec<NodeReport>,
    initiators: Vec<InitiatorReport>,
    admins: Vec<AdminReport>,
    /// Judged against the current manifest's admins when verifying a successor.
    signatures: Vec<SignatureReport>,
    /// Signed by a quorum of its own admins (how a node installs it with no predecessor).
    bootstrap: Check,
    /// A valid successor of the current manifest (only with `--current`).
    successor: Option<Check>,
    /// Whether the verification asked for (successor with `--current`, else bootstrap) passed.
    pub(super) verified: bool,
}

fn check(result: Result<VerifiedManifest, ManifestError>, ok: String) -> Check {
    match result {
        Ok(_) => Check {
            ok: true,
            detail: ok,
        },
        Err(e) => Check {
            ok: false,
            detail: e.to_string(),
        },
    }
}

fn signers(signed: &SignedManifest, admins: &[Admin]) -> Vec<String> {
    admins
        .iter()
        .filter(|a| {
            signed
                .signatures
                .iter()
                .any(|s| s.admin == a.id && signed.manifest.admin_signature_valid(a, &s.signature))
        })
        .map(|a| a.id.clone())
        .collect()
}

impl Report {
    /// `current`: the manifest `signed` succeeds, and the outcome of verifying it.
    pub(super) fn new(
        signed: &SignedManifest,
        current: Option<(&Manifest, Result<&VerifiedManifest, &str>)>,
    ) -> Report {
        let m = &signed.manifest;
        let lists: Vec<(u64, &[Admin])> = std::iter::once((m.version, m.admins.as_slice()))
            .chain(
                current
                    .as_ref()
                    .map(|(c, _)| (c.version, c.admins.as_slice())),
            )
            .collect();
        let signatures = signed
            .signatures
            .iter()
            .map(|s| {
                let named: Vec<(u64, &Admin)> = lists
                    .iter()
                    .filter_map(|(v, admins)| {
                        admins.iter().find(|a| a.id == s.admin).map(|a| (*v, a))
                    })
                    .collect();
                let valid_for_versions: Vec<u64> = named
                    .iter()
                    .filter(|(_, a)| m.admin_signature_valid(a, &s.signature))
                    .map(|(v, _)| *v)
                    .collect();
                SignatureReport {
                    admin: s.admin.clone(),
                    status: match (named.is_empty(), valid_for_versions.is_empty()) {
                        (true, _) => "unknown_admin",
                        (false, false) => "valid",
                        (false, true) => "invalid",
                    },
                    valid_for_versions,
                }
            })
            .collect();
        let own = signers(signed, &m.admins);
        let bootstrap = check(
            signed.verify_bootstrap(),
            format!(
                "signed by {} of its {} admins ({}), {} required",
                own.len(),
                m.admins.len(),
                own.join(", "),
                m.admin_threshold
            ),
        );
        let successor = current.map(|(c, verified_current)| {
            let by = signers(signed, &c.admins);
            let ok = format!(
                "successor of version {}: signed by {} of that version's {} admins ({}), {} required",
                c.version,
                by.len(),
                c.admins.len(),
                by.join(", "),
                c.admin_threshold
            );
            match verified_current {
                Ok(v) => check(signed.verify_successor(v), ok),
                Err(e) => Check {
                    ok: false,
                    detail: e.to_owned(),
                },
            }
        });
        let verified = successor.as_ref().map_or(bootstrap.ok, |s| s.ok);
        Report {
            cluster_id: m.cluster_id.clone(),
            version: m.version,
            hash: hex::encode(m.hash()),
            previous: m.previous.map(hex::encode),
            admin_threshold: m.admin_threshold,
            nodes: m
                .nodes
                .iter()
                .enumerate()
                .map(|(index, n)| NodeReport {
                    index,
                    id: n.node_id().to_owned(),
                    signing_key: hex::encode(n.signing_key().as_bytes()),
                    agreement_key: hex::encode(n.agreement_key()),
                })
                .collect(),
            initiators: m
                .initiators
                .iter()
                .map(|i| InitiatorReport {
                    id: i.id.clone(),
                    public_key: hex::encode(i.public_key.as_bytes()),
                    roles: i.roles.clone(),
                })
                .collect(),
            admins: m
                .admins
                .iter()
                .map(|a| AdminReport {
                    id: a.id.clone(),
                    public_key: hex::encode(a.public_key.as_bytes()),
                })
                .collect(),
            signatures,
            bootstrap,
            successor,
            verified,
        }
    }

    /// One line per verification rule.
    pub(super) fn checks(&self) -> Vec<String> {
        let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
        std::iter::once(("bootstrap", &self.bootstrap))
            .chain(self.successor.as_ref().map(|s| ("successor", s)))
            .map(|(name, c)| format!("{} {name}: {}", mark(c.ok), c.detail))
            .collect()
    }

    pub(super) fn print(&self) {
        println!("cluster    {}", self.cluster_id);
        println!("version    {}", self.version);
        println!("hash       {}", self.hash);
        println!(
            "previous   {}",
            self.previous.as_deref().unwrap_or("none (version 1)")
        );
        println!("nodes (key index order):");
        let width = |ids: &mut dyn Iterator<Item = usize>| ids.max().unwrap_or(0);
        let w = width(&mut self.nodes.iter().map(|n| n.id.len()));
        for n in &self.nodes {
            println!(
                "  {:>2}  {:w$}  signing ed25519:{}  agreement x25519:{}",
                n.index, n.id, n.signing_key, n.agreement_key
            );
        }
        println!("initiators:");
        if self.initiators.is_empty() {
            println!("  (none)");
        }
        let w = width(&mut self.initiators.iter().map(|i| i.id.len()));
        for i in &self.initiators {
            let roles = if i.roles.is_empty() {
                "(no roles)".to_owned()
            } else {
                i.roles.join(", ")
            };
            println!("  {:w$}  ed25519:{}  roles: {roles}", i.id, i.public_key);
        }
        println!(
            "admins ({} of {} must sign):",
            self.admin_threshold,
            self.admins.len()
        );
        let w = width(&mut self.admins.iter().map(|a| a.id.len()));
        for a in &self.admins {
            println!("  {:w$}  ed25519:{}", a.id, a.public_key);
        }
        println!("signatures:");
        if self.signatures.is_empty() {
            println!("  (none)");
        }
        let w = width(&mut self.signatures.iter().map(|s| s.admin.len()));
        for s in &self.signatures {
            let versions = s
                .valid_for_versions
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" and ");
            let status = match s.status {
                "valid" => format!("valid (admin of version {versions})"),
                "invalid" => "INVALID: does not verify with that admin's key (ignored)".into(),
                _ => "not an admin (ignored)".into(),
            };
            println!("  {:w$}  {status}", s.admin);
        }
        println!("verification:");
        for line in self.checks() {
            println!("  {line}");
        }
        println!(
            "{}",
            if self.verified {
                "VERIFIED"
            } else {
                "NOT VERIFIED"
            }
        );
    }
}
