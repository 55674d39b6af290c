//! `keyrack keys …`: Ed25519 key files for initiators (who sign requests) and administrators
//! (who sign cluster manifests), and how their public keys are named on the command line.
//!
//! A key file is [`InitiatorKey`]'s format: the 32-byte seed as 64 hex digits, mode 0600.
//! A public key file holds `ed25519:<64 hex>`: the prefix keeps a secret key file (bare hex)
//! from ever being taken for a public one and copied into a manifest. Nothing here prints,
//! logs or copies a secret.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Subcommand;
use ed25519_dalek::VerifyingKey;
use keyrack_client::request::InitiatorKey;

use super::manifest::create_file;

/// What a public key file starts with, and how public keys may be written on the command line.
pub(super) const PUBLIC_PREFIX: &str = "ed25519:";

/// Key files carry no id (it lives in the client's configuration or the manifest);
/// [`InitiatorKey`] wants one for the requests it signs, which these commands never do.
const UNNAMED: &str = "unnamed";

#[derive(Debug, Subcommand)]
pub(super) enum KeysCommand {
    /// Generate an Ed25519 key file for an initiator or an administrator.
    ///
    /// Prints the public key (64 hex) on stdout, never the secret.
    Generate {
        /// The key file to create (mode 0600; never overwritten). Keep it private: whoever
        /// holds it signs as the initiator or admin listed with its public key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Also write the public key to this file (`ed25519:<hex>`), to hand to whoever
        /// writes the manifest (`--admin ID=FILE`, `--initiator ID=FILE`).
        #[arg(long, value_name = "FILE")]
        public_out: Option<PathBuf>,
    },
    /// Print the public key (64 hex) of a key file.
    Public {
        /// The key file (from `keyrack keys generate`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
}

/// Loads a key file (refused if group or others may read it).
pub(super) fn load_key(path: &Path) -> anyhow::Result<InitiatorKey> {
    InitiatorKey::load(UNNAMED, path)
        .with_context(|| format!("cannot use the key file {}", path.display()))
}

fn public_file_text(key: &VerifyingKey) -> String {
    format!("{PUBLIC_PREFIX}{}\n", hex::encode(key.as_bytes()))
}

fn parse_hex_key(hex_key: &str) -> anyhow::Result<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("an Ed25519 public key is 64 hex digits")?;
    let key = VerifyingKey::from_bytes(&bytes).context("not a valid Ed25519 public key")?;
    if key.is_weak() {
        bail!("weak (small-order) Ed25519 key: it cannot identify anyone");
    }
    Ok(key)
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A public key given on the command line: 64 hex digits (optionally `ed25519:`-prefixed),
/// or a public key file written by `keyrack keys generate --public-out`. A file holding bare
/// hex is refused: that is a *secret* key file.
pub(super) fn public_key_arg(value: &str) -> anyhow::Result<VerifyingKey> {
    let bare = value.strip_prefix(PUBLIC_PREFIX).unwrap_or(value);
    if is_hex64(bare) {
        return parse_hex_key(bare);
    }
    let path = Path::new(value);
    let text = std::fs::read_to_string(path).with_context(|| {
        format!("'{value}' is neither 64 hex digits nor a readable public key file")
    })?;
    let text = text.trim();
    match text.strip_prefix(PUBLIC_PREFIX) {
        Some(hex_key) => parse_hex_key(hex_key).with_context(|| format!("public key file {value}")),
        None if is_hex64(text) => bail!(
            "{value} looks like a SECRET key file (bare hex): never copy it into a manifest; \
             give its public key instead (`keyrack keys public --key {value}`, or the file \
             written by `keyrack keys generate --public-out`)"
        ),
        None => bail!(
            "{value} is not a public key file: expected one line `{PUBLIC_PREFIX}<64 hex>` \
             as written by `keyrack keys generate --public-out`"
        ),
    }
}

pub(super) fn run(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::Generate { out, public_out } => {
            if let Some(p) = public_out.as_deref().filter(|p| p.exists()) {
                bail!(
                    "--public-out {}: the file exists; refusing to overwrite it",
                    p.display()
                );
            }
            let key = InitiatorKey::generate(UNNAMED)?;
            key.save(&out)
                .with_context(|| format!("--out {}", out.display()))?;
            let public = key.public_key();
            eprintln!(
                "wrote the key file {} (mode 0600): keep it private",
                out.display()
            );
            if let Some(p) = public_out {
                create_file(&p, public_file_text(&public).as_bytes())
                    .with_context(|| format!("--public-out {}", p.display()))?;
                eprintln!("wrote its public key to {}", p.display());
            }
            println!("{}", hex::encode(public.as_bytes()));
        }
        KeysCommand::Public { key } => {
            println!("{}", hex::encode(load_key(&key)?.public_key().as_bytes()));
        }
    }
    Ok(ExitCode::SUCCESS)
}
