//! `keyrack hsm …`: the node's HSM backend.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use keyrack_client::identity::PublicIdentity;
use keyrack_hsm::{Health, KeyPolicy};
use serde::Serialize;

use crate::config::LoadedConfig;
use crate::identity::NodeIdentity;

#[derive(Debug, Subcommand)]
pub(super) enum HsmCommand {
    /// Check the backend (reachable, logged in, key present) and that the node's sealed
    /// identity opens and matches its public identity. Exit status 0 when all is well, 1 when
    /// a check fails, 2 when the check cannot run (bad config).
    Check {
        /// The node's config file (keyrack.toml).
        #[arg(long)]
        config: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The result of `keyrack hsm check`.
#[derive(Debug, Serialize)]
pub(super) struct CheckReport {
    pub node_id: String,
    pub health: Health,
    pub identity_ok: bool,
    pub identity_detail: String,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.health.is_healthy() && self.identity_ok
    }
}

/// Opens the backend (the key must exist), checks its health and the identity.
pub(super) fn check(loaded: &LoadedConfig) -> anyhow::Result<CheckReport> {
    let node = &loaded.config.node;
    let sealer = keyrack_hsm::open(&loaded.config.hsm, &loaded.base_dir, KeyPolicy::MustExist)?;
    let health = sealer.health();
    let public_path = loaded.resolve(&node.public_identity);
    let public = std::fs::read_to_string(&public_path)
        .with_context(|| format!("cannot read {}", public_path.display()))
        .and_then(|t| {
            PublicIdentity::from_toml(&t).with_context(|| format!("{}", public_path.display()))
        });
    let sealed_path = loaded.resolve(&node.identity);
    let (identity_ok, identity_detail) = match (public, std::fs::read(&sealed_path)) {
        (Err(e), _) => (false, format!("{e:#}")),
        (_, Err(e)) => (false, format!("cannot read {}: {e}", sealed_path.display())),
        (Ok(public), Ok(blob)) => match NodeIdentity::unseal(&node.id, sealer.as_ref(), &blob) {
            Ok(identity) if identity.matches(&public) => (
                true,
                format!(
                    "{} unseals and matches {}",
                    sealed_path.display(),
                    public_path.display()
                ),
            ),
            Ok(_) => (
                false,
                format!(
                    "{} does not match {}",
                    sealed_path.display(),
                    public_path.display()
                ),
            ),
            Err(e) => (false, format!("{}: {e}", sealed_path.display())),
        },
    };
    Ok(CheckReport {
        node_id: node.id.clone(),
        health,
        identity_ok,
        identity_detail,
    })
}

pub(super) fn run(cmd: HsmCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        HsmCommand::Check { config, json } => {
            let loaded = LoadedConfig::load(&config)?;
            let report = check(&loaded)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
                let h = &report.health;
                println!(
                    "node {}: hsm backend {} (key {})",
                    report.node_id, h.backend, h.key_id
                );
                println!("  {} reachable", mark(h.reachable));
                println!("  {} logged in", mark(h.logged_in));
                println!("  {} key present — {}", mark(h.key_present), h.detail);
                println!(
                    "  {} identity — {}",
                    mark(report.identity_ok),
                    report.identity_detail
                );
            }
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
