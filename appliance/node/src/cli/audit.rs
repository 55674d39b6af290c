//! `keyrack audit`: read and verify a node's audit log.
//!
//! Both commands open the node's store read-only ([`Store::open_read_only`]), so they can
//! run while the node runs; `verify` checks the chain under the node's public identity key
//! (the config's `public_identity` file), never the sealed identity: an auditor needs no
//! HSM access.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use keyrack_client::identity::PublicIdentity;
use serde_json::json;

use crate::config::{LoadedConfig, CONFIG_FILE};
use crate::store::{AuditRecord, Store};

/// `keyrack audit …`
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Verify the node's audit log: seq continuity, every entry's hash and link to the one
    /// before, every signature under the node's public identity key. Prints the entries
    /// checked and the head hash (anchor it elsewhere: a log cut short at its end still
    /// verifies). Exit status 0 when it verifies, 1 when it breaks (the entry and why), 2
    /// when the check cannot run.
    Verify {
        /// The node's config file (keyrack.toml).
        #[arg(long, default_value = CONFIG_FILE)]
        config: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List audit log entries, oldest first (not verified: run `keyrack audit verify`).
    Show {
        /// The node's config file (keyrack.toml).
        #[arg(long, default_value = CONFIG_FILE)]
        config: PathBuf,
        /// Only entries after this seq.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print the entries as a JSON array.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `keyrack audit` command.
pub fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify { config, json } => verify(&config, json),
        AuditCommand::Show {
            config,
            after,
            limit,
            json,
        } => show(&config, after, limit, json),
    }
}

/// The node's store, opened read-only.
fn open_store(config: &Path) -> anyhow::Result<(LoadedConfig, Store)> {
    let loaded = LoadedConfig::load(config)?;
    let cluster = loaded.config.cluster.as_ref().with_context(|| {
        format!(
            "{} has no [cluster] section, so the node has no store (docs/CONFIG.md)",
            config.display()
        )
    })?;
    let path = loaded.resolve(&cluster.store);
    let store = Store::open_read_only(&path, &loaded.config.node.id)
        .with_context(|| format!("cannot open the node's store {}", path.display()))?;
    Ok((loaded, store))
}

/// The node's public identity, which must be the config's node's.
fn public_identity(loaded: &LoadedConfig) -> anyhow::Result<PublicIdentity> {
    let path = loaded.resolve(&loaded.config.node.public_identity);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the node's public identity {}", path.display()))?;
    let public = PublicIdentity::from_toml(&text)
        .with_context(|| format!("invalid public identity {}", path.display()))?;
    if public.node_id() != loaded.config.node.id {
        bail!(
            "the public identity {} is node {}'s, but the config is node {}'s",
            path.display(),
            public.node_id(),
            loaded.config.node.id
        );
    }
    Ok(public)
}

fn verify(config: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let (loaded, store) = open_store(config)?;
    let public = public_identity(&loaded)?;
    let node = &loaded.config.node.id;
    let result = store
        .verify_audit_log(public.signing_key())
        .context("cannot read the audit log")?;
    let key = hex::encode(public.signing_key().as_bytes());
    match result {
        Ok(summary) => {
            if as_json {
                let report = json!({
                    "node_id": node,
                    "node_key": key,
                    "ok": true,
                    "entries": summary.entries,
                    "head_hash": hex::encode(summary.head_hash),
                });
                println!("{report}");
            } else {
                println!(
                    "audit log of node {node} verifies: {} entries, head hash {} (node key {key})",
                    summary.entries,
                    hex::encode(summary.head_hash)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            if as_json {
                let report = json!({
                    "node_id": node,
                    "node_key": key,
                    "ok": false,
                    "entries_verified": broken.seq - 1,
                    "break_seq": broken.seq,
                    "reason": broken.reason.to_string(),
                });
                println!("{report}");
            } else {
                println!(
                    "audit log of node {node} does NOT verify: entry {}: {} ({} entries before it verify; node key {key})",
                    broken.seq,
                    broken.reason,
                    broken.seq - 1
                );
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn show(config: &Path, after: u64, limit: usize, as_json: bool) -> anyhow::Result<ExitCode> {
    let (_loaded, store) = open_store(config)?;
    let page = store
        .audit_page(after, limit)
        .context("cannot read the audit log")?;
    if as_json {
        let entries: Vec<_> = page.iter().map(record_json).collect();
        println!("{}", serde_json::Value::Array(entries));
    } else {
        for r in &page {
            println!(
                "{}\t{}\t{}\t{}\t{}",
                r.seq,
                r.at_ms,
                r.kind,
                r.request_id.as_deref().unwrap_or("-"),
                r.entry
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One entry as JSON; the entry's own JSON text is embedded as JSON (as a string if it no
/// longer parses).
fn record_json(r: &AuditRecord) -> serde_json::Value {
    let entry = serde_json::from_str::<serde_json::Value>(&r.entry)
        .unwrap_or_else(|_| serde_json::Value::String(r.entry.clone()));
    json!({
        "seq": r.seq,
        "at_ms": r.at_ms,
        "kind": r.kind,
        "request_id": r.request_id,
        "entry": entry,
        "prev_hash": hex::encode(r.prev_hash),
        "hash": hex::encode(r.hash),
        "signature": hex::encode(r.signature),
    })
}
