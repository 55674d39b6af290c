//! `keyrack manifest …`: writing, signing and checking the cluster manifest (docs/PROTOCOL.md
//! §2). The rules (canonical bytes, quorum, successor) are [`keyrack_client::manifest`]'s;
//! this module only gathers what the operator gives, writes files and reports. It never
//! installs a manifest on a node and never holds an admin key beyond one signature.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use keyrack_client::identity::PublicIdentity;
use keyrack_client::manifest::{
    Admin, Initiator, Manifest, ManifestError, SignedManifest, VerifiedManifest,
};
use keyrack_client::subjects::is_token;
use serde::Serialize;

use super::keys::{load_key, public_key_arg, PUBLIC_PREFIX};
use crate::fsutil::write_new_file;

/// [`write_new_file`] with the path made absolute (it syncs the parent directory, which a
/// bare file name does not name).
pub(super) fn create_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_new_file(&std::path::absolute(path)?, bytes)
}

/// The file `keyrack init` writes a node's public identity to.
const PUBLIC_IDENTITY_FILE: &str = "identity.pub.toml";

#[derive(Debug, Subcommand)]
pub(super) enum ManifestCommand {
    /// Write a new, unsigned version-1 manifest.
    ///
    /// Admins then sign it with `keyrack manifest sign` until `keyrack manifest show`
    /// verifies it. Needs --node, --admin and --admin-threshold.
    Create {
        /// The cluster id (a-z, 0-9, '-', '_').
        #[arg(long = "cluster", value_name = "ID")]
        cluster_id: String,
        /// The manifest file to write (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        members: Membership,
    },
    /// Write the unsigned successor of a manifest, to change the membership.
    ///
    /// The successor has version + 1 and `previous` = the current manifest's hash. Options
    /// not given are kept from the current manifest; a given option replaces that whole list
    /// (e.g. give every --node, in order, to add one). The current manifest's admins must
    /// sign it (`keyrack manifest sign --current CURRENT`).
    Next {
        /// The current manifest.
        #[arg(long, value_name = "CURRENT")]
        from: PathBuf,
        /// The manifest file to write (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        members: Membership,
        /// The successor lists no initiators.
        #[arg(long, conflicts_with = "initiators")]
        no_initiators: bool,
    },
    /// Add one admin's signature to a manifest file.
    ///
    /// The file is rewritten atomically. Signing again replaces that admin's earlier
    /// signature. A key that is not the named admin's is refused.
    Sign {
        /// The manifest to sign.
        #[arg(long, value_name = "FILE")]
        manifest: PathBuf,
        /// The admin's key file (from `keyrack keys generate`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The admin id to sign as; the key must be that admin's.
        #[arg(long, value_name = "ID")]
        admin: String,
        /// The manifest this one succeeds: its admins (who sign successors) are accepted too.
        #[arg(long, value_name = "FILE")]
        current: Option<PathBuf>,
    },
    /// Print a manifest and check its signatures.
    ///
    /// Exit status 0 when it verifies, 1 when it does not (unsigned, under-signed, not a
    /// successor), 2 when it cannot be read (bad file, altered node identity, invalid
    /// content).
    Show {
        /// The manifest to show.
        #[arg(long, value_name = "FILE")]
        manifest: PathBuf,
        /// Verify it as the successor of this manifest instead of on its own. Repeat to give
        /// a chain, oldest first: the first must verify on its own, each next as a successor.
        #[arg(long, value_name = "FILE")]
        current: Vec<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Who is in the cluster, as given on the command line.
#[derive(Debug, Args)]
pub(super) struct Membership {
    /// A node's public identity file (`identity.pub.toml` from `keyrack init`, or the node
    /// directory holding it). Repeat for each node; the order given is the nodes' key index
    /// order.
    #[arg(long = "node", value_name = "PUBLIC_IDENTITY_FILE")]
    nodes: Vec<PathBuf>,
    /// An initiator allowed to send requests, with its roles (none if omitted). KEY is 64 hex
    /// digits or a public key file (`keyrack keys generate --public-out`; its path must not
    /// contain ':'). Repeat for each initiator.
    #[arg(long = "initiator", value_name = "ID=KEY[:ROLE,...]", value_parser = parse_initiator)]
    initiators: Vec<Initiator>,
    /// An administrator, who signs manifests. KEY as for --initiator. Repeat for each admin.
    #[arg(long = "admin", value_name = "ID=KEY", value_parser = parse_admin)]
    admins: Vec<Admin>,
    /// How many distinct admins must sign this manifest (and, later, its successor).
    #[arg(long, value_name = "M")]
    admin_threshold: Option<u16>,
}

fn id_and_rest<'a>(what: &str, value: &'a str) -> Result<(&'a str, &'a str), String> {
    let (id, rest) = value
        .split_once('=')
        .ok_or_else(|| format!("expected {what}_ID=KEY"))?;
    if !is_token(id) {
        return Err(format!(
            "invalid {what} id '{id}': use 1-64 of a-z, 0-9, '-' and '_'"
        ));
    }
    Ok((id, rest))
}

fn parse_admin(value: &str) -> Result<Admin, String> {
    let (id, key) = id_and_rest("admin", value)?;
    Ok(Admin {
        id: id.to_owned(),
        public_key: public_key_arg(key).map_err(|e| format!("{e:#}"))?,
    })
}

fn parse_initiator(value: &str) -> Result<Initiator, String> {
    let (id, rest) = id_and_rest("initiator", value)?;
    let rest = rest.strip_prefix(PUBLIC_PREFIX).unwrap_or(rest);
    let (key, roles) = match rest.split_once(':') {
        Some((key, roles)) => (key, roles.split(',').map(str::to_owned).collect()),
        None => (rest, Vec::new()),
    };
    if let Some(bad) = roles.iter().find(|r| !is_token(r)) {
        return Err(format!(
            "invalid role '{bad}': roles are 1-64 of a-z, 0-9, '-' and '_', separated by ','"
        ));
    }
    Ok(Initiator {
        id: id.to_owned(),
        public_key: public_key_arg(key).map_err(|e| format!("{e:#}"))?,
        roles,
    })
}

fn load_node(path: &Path) -> anyhow::Result<PublicIdentity> {
    let file = if path.is_dir() {
        path.join(PUBLIC_IDENTITY_FILE)
    } else {
        path.to_owned()
    };
    let text = fs::read_to_string(&file)
        .with_context(|| format!("--node {}: cannot read {}", path.display(), file.display()))?;
    PublicIdentity::from_toml(&text).with_context(|| format!("--node {}", file.display()))
}

fn load_manifest(path: &Path) -> anyhow::Result<SignedManifest> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    SignedManifest::from_toml(&text).with_context(|| format!("{}", path.display()))
}

/// Validates, checks that the file form reads back as written, and creates `out`.
fn write_unsigned(manifest: Manifest, out: &Path) -> anyhow::Result<SignedManifest> {
    let signed = SignedManifest::new(manifest)
        .context("the manifest would be invalid; correct the options")?;
    let text = signed.to_toml();
    let back = SignedManifest::from_toml(&text)
        .context("the manifest would not read back; correct the options")?;
    if back != signed {
        bail!("the manifest does not read back as written (a bug: please report it)");
    }
    create_file(out, text.as_bytes()).with_context(|| format!("--out {}", out.display()))?;
    Ok(signed)
}

/// Replaces `path` atomically (temp file in the same directory, fsync, rename), keeping its
/// permissions.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mode = fs::metadata(path)?.permissions().mode() & 0o777;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => fs::File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

fn ids(admins: &[Admin]) -> String {
    admins
        .iter()
        .map(|a| a.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_written(signed: &SignedManifest, out: &Path, signers: &Manifest, current: &str) {
    let m = &signed.manifest;
    println!(
        "wrote unsigned manifest '{}' version {} to {}",
        m.cluster_id,
        m.version,
        out.display()
    );
    println!("  hash  {}", hex::encode(signed.hash()));
    println!(
        "  {} node(s), {} initiator(s), {} admin(s)",
        m.nodes.len(),
        m.initiators.len(),
        m.admins.len()
    );
    println!(
        "next: {} of {} ({}) sign it, each with\n  keyrack manifest sign --manifest {}{current} --key ADMIN_KEY_FILE --admin ID",
        signers.admin_threshold,
        signers.admins.len(),
        ids(&signers.admins),
        out.display()
    );
}

fn create(cluster_id: String, out: &Path, members: Membership) -> anyhow::Result<ExitCode> {
    if members.nodes.is_empty() {
        bail!("give each node's public identity with --node (in key index order)");
    }
    if members.admins.is_empty() {
        bail!("give the administrators with --admin ID=KEY");
    }
    let admin_threshold = members.admin_threshold.context(
        "give --admin-threshold M: how many distinct admins must sign each manifest version",
    )?;
    if !is_token(&cluster_id) {
        bail!("invalid cluster id '{cluster_id}': use 1-64 of a-z, 0-9, '-' and '_'");
    }
    let nodes = members
        .nodes
        .iter()
        .map(|p| load_node(p))
        .collect::<anyhow::Result<_>>()?;
    let manifest = Manifest {
        cluster_id,
        version: 1,
        previous: None,
        admin_threshold,
        nodes,
        initiators: members.initiators,
        admins: members.admins,
    };
    let signed = write_unsigned(manifest, out)?;
    print_written(&signed, out, &signed.manifest, "");
    Ok(ExitCode::SUCCESS)
}

fn next(
    from: &Path,
    out: &Path,
    members: Membership,
    no_initiators: bool,
) -> anyhow::Result<ExitCode> {
    let current = load_manifest(from)?.manifest;
    let nodes = if members.nodes.is_empty() {
        current.nodes.clone()
    } else {
        members
            .nodes
            .iter()
            .map(|p| load_node(p))
            .collect::<anyhow::Result<_>>()?
    };
    let initiators = match (no_initiators, members.initiators.is_empty()) {
        (true, _) => Vec::new(),
        (false, true) => current.initiators.clone(),
        (false, false) => members.initiators,
    };
    let admins = if members.admins.is_empty() {
        current.admins.clone()
    } else {
        members.admins
    };
    let manifest = Manifest {
        cluster_id: current.cluster_id.clone(),
        version: current
            .version
            .checked_add(1)
            .context("the current version is the last one possible")?,
        previous: Some(current.hash()),
        admin_threshold: members.admin_threshold.unwrap_or(current.admin_threshold),
        nodes,
        initiators,
        admins,
    };
    if (
        &manifest.nodes,
        &manifest.initiators,
        &manifest.admins,
        manifest.admin_threshold,
    ) == (
        &current.nodes,
        &current.initiators,
        &current.admins,
        current.admin_threshold,
    ) {
        eprintln!(
            "note: the membership is the same as version {}'s (no --node, --initiator, --admin or --admin-threshold changed it)",
            current.version
        );
    }
    let signed = write_unsigned(manifest, out)?;
    print_written(
        &signed,
        out,
        &current,
        &format!(" --current {}", from.display()),
    );
    Ok(ExitCode::SUCCESS)
}

fn sign(
    path: &Path,
    key_file: &Path,
    admin_id: &str,
    current: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let mut signed = load_manifest(path)?;
    let current = current.map(load_manifest).transpose()?;
    if let Some(cur) = &current {
        let (m, c) = (&signed.manifest, &cur.manifest);
        if m.cluster_id != c.cluster_id || m.previous != Some(c.hash()) {
            bail!(
                "{} is not the successor of the --current manifest (cluster '{}' version {}): its `previous` is not that manifest's hash",
                path.display(),
                c.cluster_id,
                c.version
            );
        }
    }
    let key = load_key(key_file)?;
    let public = key.public_key();
    let candidates: Vec<(&Admin, u64)> = std::iter::once(&signed.manifest)
        .chain(current.as_ref().map(|c| &c.manifest))
        .flat_map(|m| m.admins.iter().map(move |a| (a, m.version)))
        .filter(|(a, _)| a.id == admin_id)
        .collect();
    if candidates.is_empty() {
        let hint = match (&current, signed.manifest.version) {
            (None, v) if v > 1 => " (a successor is signed by the admins of the manifest it succeeds: add --current CURRENT_FILE)",
            _ => "",
        };
        bail!(
            "'{admin_id}' is not an admin of version {} (admins: {}){hint}",
            signed.manifest.version,
            ids(&signed.manifest.admins)
        );
    }
    if !candidates.iter().any(|(a, _)| a.public_key == public) {
        let listed: Vec<String> = candidates
            .iter()
            .map(|(a, v)| {
                format!(
                    "{PUBLIC_PREFIX}{} in version {v}",
                    hex::encode(a.public_key.as_bytes())
                )
            })
            .collect();
        bail!(
            "the key in {} ({PUBLIC_PREFIX}{}) is not admin '{admin_id}''s ({}): refusing to sign; use that admin's own key file",
            key_file.display(),
            hex::encode(public.as_bytes()),
            listed.join(", ")
        );
    }
    signed.sign_as(admin_id, key.signing_key());
    drop(key);
    replace_file(path, signed.to_toml().as_bytes())
        .with_context(|| format!("cannot rewrite {}", path.display()))?;
    println!(
        "signed {} (cluster '{}' version {}) as admin '{admin_id}'",
        path.display(),
        signed.manifest.cluster_id,
        signed.manifest.version
    );
    let verified_current = current.as_ref().map(|c| {
        c.verify_bootstrap()
            .map_err(|e| format!("--current does not verify on its own: {e}"))
    });
    let report = Report::new(
        &signed,
        current
            .as_ref()
            .zip(verified_current.as_ref())
            .map(|(c, v)| (&c.manifest, v.as_ref().map_err(String::as_str))),
    );
    for check in report.checks() {
        println!("  {check}");
    }
    Ok(ExitCode::SUCCESS)
}

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
struct Report {
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
    verified: bool,
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
    fn new(
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
    fn checks(&self) -> Vec<String> {
        let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
        std::iter::once(("bootstrap", &self.bootstrap))
            .chain(self.successor.as_ref().map(|s| ("successor", s)))
            .map(|(name, c)| format!("{} {name}: {}", mark(c.ok), c.detail))
            .collect()
    }

    fn print(&self) {
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

fn show(path: &Path, chain: &[PathBuf], json: bool) -> anyhow::Result<ExitCode> {
    let signed = load_manifest(path)?;
    let mut current: Option<(SignedManifest, Result<VerifiedManifest, String>)> = None;
    for file in chain {
        let next = load_manifest(file)?;
        let verified = match &current {
            None => next.verify_bootstrap(),
            Some((_, Ok(prev))) => next.verify_successor(prev),
            Some((_, Err(e))) => {
                bail!(
                    "--current {}: its predecessor does not verify: {e}",
                    file.display()
                )
            }
        }
        .map_err(|e| format!("--current {} does not verify: {e}", file.display()));
        current = Some((next, verified));
    }
    let report = Report::new(
        &signed,
        current
            .as_ref()
            .map(|(c, v)| (&c.manifest, v.as_ref().map_err(String::as_str))),
    );
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print();
    }
    Ok(if report.verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(super) fn run(cmd: ManifestCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ManifestCommand::Create {
            cluster_id,
            out,
            members,
        } => create(cluster_id, &out, members),
        ManifestCommand::Next {
            from,
            out,
            members,
            no_initiators,
        } => next(&from, &out, members, no_initiators),
        ManifestCommand::Sign {
            manifest,
            key,
            admin,
            current,
        } => sign(&manifest, &key, &admin, current.as_deref()),
        ManifestCommand::Show {
            manifest,
            current,
            json,
        } => show(&manifest, &current, json),
    }
}
