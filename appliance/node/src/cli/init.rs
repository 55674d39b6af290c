//! `keyrack init`: creates a node directory with sealed identity keys.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use keyrack_hsm::config::{Pkcs11Config, SoftConfig, TpmConfig, YubihsmConfig};
use keyrack_hsm::{BackendKind, HsmConfig, KeyPolicy, SecretSource};
use rand_core::{OsRng, RngCore};

use crate::config::{ApiSection, LoadedConfig, NodeConfig, NodeSection, CONFIG_FILE};
use crate::fsutil::{create_private_dir, write_new_file};
use crate::identity::NodeIdentity;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Backend {
    Pkcs11,
    Tpm,
    Yubihsm,
    /// Development only: a key derived from a passphrase in software.
    Soft,
}

/// Secrets (PINs, passwords, passphrases) are given as a file or an environment variable,
/// never on the command line; the config records where to find them, not their value.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Node directory to create (config, sealed identity, public identity).
    #[arg(long)]
    dir: PathBuf,
    /// The node's id in its cluster (a-z, 0-9, '-', '_').
    #[arg(long)]
    node_id: String,
    /// HSM backend that seals the node's secrets.
    #[arg(long, value_enum)]
    backend: Backend,
    /// Where the node's HTTP API will listen (`[api] listen`; port 0: any free port). Keep
    /// it on localhost: the API has no TLS of its own.
    #[arg(long, default_value = crate::config::DEFAULT_API_LISTEN, value_parser = parse_listen)]
    api_listen: String,

    /// pkcs11: path of the PKCS#11 module.
    #[arg(
        long,
        default_value = "/usr/lib/softhsm/libsofthsm2.so",
        help_heading = "PKCS#11"
    )]
    pkcs11_module: PathBuf,
    /// pkcs11: label of the token.
    #[arg(long, help_heading = "PKCS#11")]
    token_label: Option<String>,
    /// pkcs11: label of the sealing key (created if missing).
    #[arg(long, default_value = "keyrack-seal", help_heading = "PKCS#11")]
    key_label: String,
    /// pkcs11: file holding the user PIN.
    #[arg(long, help_heading = "PKCS#11")]
    pin_file: Option<PathBuf>,
    /// pkcs11: environment variable holding the user PIN.
    #[arg(long, help_heading = "PKCS#11")]
    pin_env: Option<String>,

    /// tpm: TCTI, e.g. device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321.
    #[arg(long, help_heading = "TPM 2.0")]
    tpm_tcti: Option<String>,
    /// tpm: persistent handle of the storage key (created if missing).
    #[arg(long, default_value = "0x81000100", value_parser = parse_u32, help_heading = "TPM 2.0")]
    tpm_handle: u32,

    /// yubihsm: connector URL (http://HOST:PORT).
    #[arg(long, help_heading = "YubiHSM 2")]
    yubihsm_connector: Option<String>,
    /// yubihsm: authentication key id.
    #[arg(long, default_value = "1", value_parser = parse_u16, help_heading = "YubiHSM 2")]
    yubihsm_auth_key: u16,
    /// yubihsm: object id of the HMAC sealing key (created if missing).
    #[arg(long, default_value = "0x0100", value_parser = parse_u16, help_heading = "YubiHSM 2")]
    yubihsm_hmac_key: u16,
    /// yubihsm: file holding the authentication key's password.
    #[arg(long, help_heading = "YubiHSM 2")]
    password_file: Option<PathBuf>,
    /// yubihsm: environment variable holding the password.
    #[arg(long, help_heading = "YubiHSM 2")]
    password_env: Option<String>,

    /// soft: file holding the passphrase.
    #[arg(long, help_heading = "soft (development only)")]
    passphrase_file: Option<PathBuf>,
    /// soft: environment variable holding the passphrase.
    #[arg(long, help_heading = "soft (development only)")]
    passphrase_env: Option<String>,
}

fn parse_listen(s: &str) -> Result<String, String> {
    s.parse::<std::net::SocketAddr>()
        .map(|_| s.to_owned())
        .map_err(|e| format!("{s}: expected ADDRESS:PORT, e.g. 127.0.0.1:7400 ({e})"))
}

fn parse_u32(s: &str) -> Result<u32, String> {
    match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s}: {e}"))
}

fn parse_u16(s: &str) -> Result<u16, String> {
    parse_u32(s).and_then(|v| u16::try_from(v).map_err(|_| format!("{s} does not fit 16 bits")))
}

/// One of `--X-file` / `--X-env`, as a config reference with an absolute path.
fn secret(what: &str, file: Option<PathBuf>, env: Option<String>) -> anyhow::Result<SecretSource> {
    match (file, env) {
        (Some(file), None) => {
            let file = std::path::absolute(&file)
                .with_context(|| format!("--{what}-file {}", file.display()))?;
            if !file.is_file() {
                bail!("--{what}-file {}: no such file", file.display());
            }
            Ok(SecretSource::File(file))
        }
        (None, Some(var)) => {
            if std::env::var_os(&var).is_none() {
                bail!("--{what}-env {var}: the variable is not set");
            }
            Ok(SecretSource::Env(var))
        }
        (Some(_), Some(_)) => bail!("give either --{what}-file or --{what}-env, not both"),
        (None, None) => bail!("this backend needs --{what}-file or --{what}-env"),
    }
}

fn hsm_config(args: &mut InitArgs) -> anyhow::Result<HsmConfig> {
    let mut c = HsmConfig::new(match args.backend {
        Backend::Pkcs11 => BackendKind::Pkcs11,
        Backend::Tpm => BackendKind::Tpm,
        Backend::Yubihsm => BackendKind::Yubihsm,
        Backend::Soft => BackendKind::Soft,
    });
    match args.backend {
        Backend::Pkcs11 => {
            c.pkcs11 = Some(Pkcs11Config {
                module: args.pkcs11_module.clone(),
                token_label: args
                    .token_label
                    .clone()
                    .context("--backend pkcs11 needs --token-label")?,
                key_label: args.key_label.clone(),
                pin: secret("pin", args.pin_file.take(), args.pin_env.take())?,
            });
        }
        Backend::Tpm => {
            c.tpm = Some(TpmConfig {
                tcti: args
                    .tpm_tcti
                    .clone()
                    .context("--backend tpm needs --tpm-tcti")?,
                storage_key_handle: args.tpm_handle,
                owner_auth: None,
            });
        }
        Backend::Yubihsm => {
            c.yubihsm = Some(YubihsmConfig {
                connector: args
                    .yubihsm_connector
                    .clone()
                    .context("--backend yubihsm needs --yubihsm-connector")?,
                auth_key_id: args.yubihsm_auth_key,
                password: secret(
                    "password",
                    args.password_file.take(),
                    args.password_env.take(),
                )?,
                hmac_key_id: args.yubihsm_hmac_key,
                domain: 1,
            });
        }
        Backend::Soft => {
            let mut salt = [0u8; 16];
            OsRng.fill_bytes(&mut salt);
            c.soft = Some(SoftConfig {
                passphrase: secret(
                    "passphrase",
                    args.passphrase_file.take(),
                    args.passphrase_env.take(),
                )?,
                salt: hex::encode(salt),
            });
        }
    }
    Ok(c)
}

pub(super) fn run(mut args: InitArgs) -> anyhow::Result<ExitCode> {
    keyrack_client::identity::validate_node_id(&args.node_id)?;
    let dir = args.dir.clone();
    let node = NodeSection {
        id: args.node_id.clone(),
        identity: "identity.sealed".into(),
        public_identity: "identity.pub.toml".into(),
    };
    let api = ApiSection {
        listen: args.api_listen.clone(),
        ..ApiSection::default()
    };
    for existing in [
        CONFIG_FILE.as_ref(),
        node.identity.as_path(),
        node.public_identity.as_path(),
        api.token_file.as_path(),
    ] {
        let path = dir.join(existing);
        if path.exists() {
            bail!(
                "refusing to overwrite the identity in {}: {} exists (a node's identity is created once; use a new directory)",
                dir.display(),
                path.display()
            );
        }
    }
    let hsm = hsm_config(&mut args)?;
    create_private_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;

    let sealer = keyrack_hsm::open(&hsm, &dir, KeyPolicy::CreateIfMissing)?;
    let identity = NodeIdentity::generate(&node.id)?;
    let sealed = identity.seal(sealer.as_ref())?;
    let public = identity.public()?;
    drop(identity);

    let config = NodeConfig {
        node,
        hsm,
        cluster: None,
        api,
    };
    let config_text = format!(
        "# keyrack node configuration, written by `keyrack init`.\n# Reference: keyrack_node::config and keyrack_hsm::config.\n{}",
        toml::to_string(&config).context("serialise config")?
    );
    write_new_file(&dir.join(&config.node.identity), &sealed)?;
    write_new_file(
        &dir.join(&config.node.public_identity),
        public.to_toml().as_bytes(),
    )?;
    write_new_file(&dir.join(CONFIG_FILE), config_text.as_bytes())?;
    let token = crate::api::new_token();
    write_new_file(&dir.join(&config.api.token_file), token.as_bytes())?;
    drop(token);
    drop(sealer);

    // Read back what was written, through a fresh backend session, before saying it worked.
    let loaded = LoadedConfig::load(&dir.join(CONFIG_FILE))?;
    let report = super::hsm::check(&loaded)?;
    if !report.ok() {
        bail!(
            "the new node does not pass its own check: {}",
            report.identity_detail
        );
    }
    println!("node '{}' created in {}", config.node.id, dir.display());
    println!(
        "  backend        {} ({})",
        report.health.backend, report.health.key_id
    );
    println!(
        "  signing key    ed25519:{}",
        hex::encode(public.signing_key().as_bytes())
    );
    println!(
        "  agreement key  x25519:{}",
        hex::encode(public.agreement_key())
    );
    println!("  config         {}", dir.join(CONFIG_FILE).display());
    println!(
        "  HTTP API       http://{} (bearer token in {}, mode 0600)",
        config.api.listen,
        dir.join(&config.api.token_file).display()
    );
    println!(
        "  public identity (give to the cluster's administrators): {}",
        dir.join(&config.node.public_identity).display()
    );
    Ok(ExitCode::SUCCESS)
}
