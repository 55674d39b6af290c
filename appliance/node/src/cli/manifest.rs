//! `keyrack manifest …`: writing, signing and checking the cluster manifest (docs/PROTOCOL.md
//! §2). The rules (canonical bytes, quorum, successor) are [`keyrack_client::manifest`]'s;
//! this module only gathers what the operator gives, writes files and reports. It never
//! installs a manifest on a node (`publish` offers it to the nodes, which judge it
//! themselves) and never holds an admin key beyond one signature.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use keyrack_client::identity::PublicIdentity;
use keyrack_client::manifest::{Admin, Initiator, Manifest, SignedManifest, VerifiedManifest};
use keyrack_client::subjects::is_token;

mod publish;
mod report;

use report::Report;

use super::keys::{load_key, public_key_arg, PUBLIC_PREFIX};
use crate::fsutil::{replace_file, write_new_file};

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
    /// Offer a signed manifest to the running nodes, and report what each node says.
    ///
    /// Publishes the file to the cluster's manifest stream over NATS (creating the stream if
    /// no node has yet). Each node accepts it only if it verifies as the successor of its
    /// current manifest (same cluster, next in the chain, signed by a quorum of the current
    /// admins) and answers with a signed verdict: accepted, or refused with the reason.
    /// Prints one line per node: accepted, refused (why), or silent (no verdict in time).
    /// Exit status 0 when every node of the published manifest accepted it, 1 when one
    /// refused or stayed silent, 2 when it could not publish (bad file, NATS unreachable).
    ///
    /// A node that joins starts with this manifest as its config's manifest file; start it
    /// before publishing and it answers too (`accepted`: already current).
    Publish {
        /// The signed manifest to publish (e.g. from `keyrack manifest next` + `sign`).
        #[arg(long, value_name = "FILE")]
        manifest: PathBuf,
        /// The NATS server(s) of the cluster, as in the nodes' config. Repeat for several.
        #[arg(long, value_name = "URL", required = true)]
        nats: Vec<String>,
        /// The manifest the nodes run now: its nodes' verdicts are checked too (a node the
        /// new manifest removes still answers).
        #[arg(long, value_name = "FILE")]
        current: Option<PathBuf>,
        /// How long to wait for the nodes' verdicts, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        timeout: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
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
        ManifestCommand::Publish {
            manifest,
            nats,
            current,
            timeout,
            json,
        } => publish::run(
            &manifest,
            &nats,
            current.as_deref(),
            std::time::Duration::from_secs(timeout),
            json,
        ),
    }
}
