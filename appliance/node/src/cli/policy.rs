//! `keyrack policy`: lint, sign, explain and test policy files and bundles.
//! (Being written for issue 6.)

use std::process::ExitCode;

/// `keyrack policy …`
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {}

/// Runs a `keyrack policy` command.
pub fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {}
}
