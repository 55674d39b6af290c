//! `keyrack audit`: read and verify a node's audit log.
//! (Being written for issue 6.)

use std::process::ExitCode;

/// `keyrack audit …`
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {}

/// Runs a `keyrack audit` command.
pub fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {}
}
