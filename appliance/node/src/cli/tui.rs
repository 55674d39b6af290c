//! `keyrack tui`: the operator console ([`keyrack_tui`]) on the node's HTTP API.
//!
//! What it owns: where the API is and its token (from the flags or the node's keyrack.toml
//! `[api]`), and the approver key (from a client.toml). The console itself lives in the
//! keyrack-tui crate; this never opens the node's store or HSM.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use keyrack_tui::approval::Approver;
use zeroize::Zeroizing;

use crate::config::{LoadedConfig, CONFIG_FILE, DEFAULT_API_LISTEN};

/// The operator console: a live view of one node (cluster, keys, sessions, approvals,
/// policies, audit log) over its HTTP API, with approve and reject for an approver.
///
/// Run it on the appliance, next to the node. It reads the node's API only (no NATS, no
/// store, no HSM) and keeps working while the node is down or restarting: the last data
/// stays on screen, marked stale, until the node answers again. Press ? for every key.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  keyrack tui --node /var/lib/keyrack/node1
  keyrack tui --url http://127.0.0.1:7400 --token-file /var/lib/keyrack/node1/api-token
  keyrack tui --node /var/lib/keyrack/node1 --approver-config ~/carol/client.toml")]
pub struct TuiArgs {
    /// The node's directory: the API address and token file come from its keyrack.toml
    /// `[api]` section (listen, token_file). --url and --token-file override either.
    #[arg(long, value_name = "DIR")]
    node: Option<PathBuf>,
    /// The node API's base URL [default: http://127.0.0.1:7400, or the node's [api] listen
    /// with --node].
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// The file holding the node's API token (the node's `api-token`, written by `keyrack
    /// init`). Required without --node.
    #[arg(long, value_name = "PATH", env = "KEYRACK_API_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// A client configuration (client.toml, as `keyrack client` uses) whose initiator
    /// approves and rejects from the console (keys a and r on the Approvals tab). Without
    /// it the console only shows.
    ///
    /// Before signing, the console checks each waiting request against what its
    /// initiator signed: the signature under this client's own manifest, the hash, and the
    /// payload decoded here with the chain plugins and the key from this client's trusted
    /// keys (trusted-keys.toml beside it, or its trusted_keys; `keyrack client trust KEY_ID`
    /// records a key); a request that does not match, or whose key is not trusted or is
    /// listed by the node with another public key, is neither approved nor rejected.
    #[arg(long, value_name = "FILE")]
    approver_config: Option<PathBuf>,
    /// The Bitcoin network the nodes show addresses for (their [cluster] bitcoin_network),
    /// to decode payloads as they do [default: the node's, with --node; else bitcoin].
    #[arg(long, value_name = "NETWORK")]
    bitcoin_network: Option<String>,
    /// Milliseconds between polls of the node (100 to 60000).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(100..=60_000)
    )]
    refresh_ms: u64,
}

pub(super) fn run(args: TuiArgs) -> anyhow::Result<ExitCode> {
    let (url, token_file, node_network) = endpoint(&args)?;
    let token = read_token(&token_file)?;
    let network = args
        .bitcoin_network
        .clone()
        .or(node_network)
        .unwrap_or_else(|| "bitcoin".to_owned());
    let approver = args
        .approver_config
        .as_deref()
        .map(|path| load_approver(path, &network))
        .transpose()?;
    keyrack_tui::run(keyrack_tui::Options {
        url,
        token,
        approver,
        refresh: Duration::from_millis(args.refresh_ms),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The API URL and token file, from the flags and (with --node) the node's config; and
/// the node's Bitcoin network (with --node).
fn endpoint(args: &TuiArgs) -> anyhow::Result<(String, PathBuf, Option<String>)> {
    let mut network = None;
    let from_node = match &args.node {
        Some(dir) => {
            let loaded = LoadedConfig::load(&dir.join(CONFIG_FILE))
                .with_context(|| format!("--node {}", dir.display()))?;
            network = loaded
                .config
                .cluster
                .as_ref()
                .map(|c| c.bitcoin_network.clone());
            let api = &loaded.config.api;
            Some((url_of_listen(&api.listen), loaded.resolve(&api.token_file)))
        }
        None => None,
    };
    let url = args
        .url
        .clone()
        .or_else(|| from_node.as_ref().map(|(u, _)| u.clone()))
        .unwrap_or_else(|| format!("http://{DEFAULT_API_LISTEN}"));
    if !url.starts_with("http://") {
        bail!("--url {url}: the node's API is plain http:// on localhost (no TLS)");
    }
    if args.url.is_some() && !is_loopback(&url) {
        bail!(
            "--url {url}: the console sends the API token and signed approvals unencrypted, so \
             it talks to a node on this machine only (127.0.0.1, [::1] or localhost); for \
             another appliance's node, run the console there or tunnel: ssh -L \
             7400:127.0.0.1:7400 APPLIANCE, then --url http://127.0.0.1:7400"
        );
    }
    let token_file = match (&args.token_file, from_node) {
        (Some(path), _) => path.clone(),
        (None, Some((_, path))) => path,
        (None, None) => bail!(
            "no API token: give --token-file PATH (the node's api-token file) or --node DIR \
             (the node's directory, whose keyrack.toml names it)"
        ),
    };
    Ok((url, token_file, network))
}

/// Whether `url` (http://HOST[:PORT][/…]) names this machine's loopback.
fn is_loopback(url: &str) -> bool {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The URL to reach an `[api] listen` address: a wildcard address is reached on loopback.
fn url_of_listen(listen: &str) -> String {
    let host_port = if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = listen.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        listen.to_owned()
    };
    format!("http://{host_port}")
}

fn read_token(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    let text = Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the API token file {} (the node's api-token, written by keyrack init)",
            path.display()
        )
    })?);
    let token = Zeroizing::new(text.trim().to_owned());
    if token.is_empty() {
        bail!("the API token file {} is empty", path.display());
    }
    Ok(token)
}

/// The approver: client.toml's initiator, its key, its manifest and its trusted keys (the
/// files read as `keyrack client` reads them), with the chain plugins for
/// `bitcoin_network` to decode payloads.
fn load_approver(path: &Path, bitcoin_network: &str) -> anyhow::Result<Approver> {
    let loaded = super::client::Loaded::load(path)?;
    let trusted = loaded
        .trusted()
        .with_context(|| format!("--approver-config {}", path.display()))?;
    let decoder = crate::chains::intent_decoder(bitcoin_network)
        .with_context(|| format!("--bitcoin-network {bitcoin_network}"))?;
    Ok(Approver::new(loaded.key, loaded.manifest, trusted, decoder))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_count_as_this_machine() {
        for url in [
            "http://127.0.0.1:7400",
            "http://127.0.0.2:7400/",
            "http://localhost:7401",
            "http://[::1]:7400",
            "http://LOCALHOST",
        ] {
            assert!(is_loopback(url), "{url}");
        }
        for url in [
            "http://10.0.0.5:7400",
            "http://node1.example:7400",
            "http://[2001:db8::1]:7400",
            "http://127.0.0.1.evil.example:7400",
            "http://localhost.example:7400",
        ] {
            assert!(!is_loopback(url), "{url}");
        }
    }

    #[test]
    fn wildcard_listen_addresses_are_reached_on_loopback() {
        assert_eq!(url_of_listen("127.0.0.1:7400"), "http://127.0.0.1:7400");
        assert_eq!(url_of_listen("0.0.0.0:7401"), "http://127.0.0.1:7401");
        assert_eq!(url_of_listen("[::]:7402"), "http://[::1]:7402");
    }
}
