//! Test support: opens a sealed blob in a fresh process, to show that blobs survive the
//! process that made them. `keyrack-seal-probe CONFIG AAD_HEX BLOB_FILE` reads an `[hsm]`
//! config (TOML, the section's contents at top level), unseals the blob with the key that
//! must already exist, and prints the SHA-256 of the plaintext (never the plaintext).
#![forbid(unsafe_code)]

use std::path::Path;

use anyhow::Context;
use keyrack_hsm::{HsmConfig, KeyPolicy};
use sha2::{Digest, Sha256};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, aad, blob] = args.as_slice() else {
        anyhow::bail!("usage: keyrack-seal-probe CONFIG AAD_HEX BLOB_FILE");
    };
    let config_path = Path::new(config);
    let hsm: HsmConfig =
        toml::from_str(&std::fs::read_to_string(config_path)?).context("parse config")?;
    let base = config_path.parent().unwrap_or(Path::new("."));
    let sealer = keyrack_hsm::open(&hsm, base, KeyPolicy::MustExist)?;
    let plaintext = sealer.unseal(&hex::decode(aad)?, &std::fs::read(blob)?)?;
    println!("{}", hex::encode(Sha256::digest(&plaintext[..])));
    Ok(())
}
