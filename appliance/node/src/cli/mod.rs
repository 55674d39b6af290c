//! The `keyrack` command tree. Each subcommand lives in its own module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod audit;
mod client;
mod dev;
mod hsm;
mod init;
mod keys;
mod manifest;
mod node;
mod policy;
mod tui;

/// keyrack: hardware-backed threshold signing appliance.
#[derive(Debug, Parser)]
#[command(name = "keyrack", version, about = "keyrack: a hardware-backed threshold signing appliance", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a node: its identity keys, sealed by an HSM backend, and its config file.
    Init(Box<init::InitArgs>),
    /// Inspect the node's HSM backend.
    #[command(subcommand)]
    Hsm(hsm::HsmCommand),
    /// Write, sign, check and publish the cluster manifest (nodes, initiators, admins).
    #[command(subcommand)]
    Manifest(manifest::ManifestCommand),
    /// Ed25519 key files for initiators and administrators.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Run the node: serve the cluster's requests until interrupted.
    Node(node::NodeArgs),
    /// Send requests to a cluster (keygen, sign, reshare, refresh, delete, approve, status,
    /// address) as the initiator in client.toml.
    Client(client::ClientArgs),
    /// Start a local development cluster: nats-server and n nodes on SoftHSM tokens.
    Dev(dev::DevArgs),
    /// Policy files and bundles: lint, sign, explain a decision, run fixtures.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// The node's audit log: show and verify its hash chain and signatures.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The operator console: a live view of this node over its HTTP API (cluster, keys,
    /// sessions, approvals, policies, audit), with approve and reject for an approver.
    Tui(tui::TuiArgs),
}

/// Runs the CLI; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYRACK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Init(args) => init::run(*args),
        Command::Hsm(cmd) => hsm::run(cmd),
        Command::Manifest(cmd) => manifest::run(cmd),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Node(args) => node::run(args),
        Command::Client(args) => client::run(args),
        Command::Dev(args) => dev::run(args),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Tui(args) => tui::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Reads and verifies (as a bootstrap manifest) the signed cluster manifest at `path`.
pub(crate) fn read_manifest(
    path: &std::path::Path,
) -> anyhow::Result<keyrack_client::manifest::VerifiedManifest> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the cluster manifest {}", path.display()))?;
    keyrack_client::manifest::SignedManifest::from_toml(&text)
        .and_then(|m| m.verify_bootstrap())
        .with_context(|| format!("cluster manifest {} does not verify", path.display()))
}
