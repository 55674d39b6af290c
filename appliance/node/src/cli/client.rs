//! `keyrack client …`: keygen, sign, reshare, refresh, delete and status requests to a
//! cluster, from the command line,
//! through the client SDK ([`keyrack_client::sdk`]), which checks every node's signature on
//! every result and verifies threshold signatures itself before anything is printed.
//!
//! What it owns: the command line, `client.toml` ([`ClientConfig`], docs/CONFIG.md), what
//! is printed ([`report`]), and recording the keys this client trusts
//! ([`keyrack_client::trusted`]: on keygen, and from agreeing status answers with `trust`).
//! It never holds a node's keys, and never prints the initiator's.
//!
//! Exit status: 0 done; 1 sent but refused, failed, or not answered in time (the error code
//! and the node's message are printed); 2 nothing was sent: a usage or configuration error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use keyrack_client::manifest::VerifiedManifest;
use keyrack_client::request::{InitiatorKey, PayloadKind, RequestBody};
use keyrack_client::scheme::Scheme;
use keyrack_client::sdk::{check_committee, Client, KeyStatusReport, Outcome, SdkError};
use keyrack_client::trusted::{self, TrustSource, TrustedKey, TrustedKeys};
use serde::{Deserialize, Serialize};

mod parse;
mod report;

use parse::{DerivationPath, HexBytes};

/// Send keygen, sign, reshare, refresh, delete, approve, reject and status requests to a
/// cluster, as
/// the initiator named in client.toml (and show a key's addresses, or record the keys this
/// client trusts).
///
/// Every result is checked before it is printed: each node's signature on it (against the
/// cluster manifest), that it answers this very request, and for a signature, the signature
/// itself under the public key. Exit status: 0 done; 1 refused, failed or not answered in
/// time (the error code and message are printed); 2 usage or configuration error (nothing was
/// sent).
#[derive(Debug, Args)]
#[command(after_help = "\
Exit status: 0 done; 1 sent, but refused, failed or not answered in time (the error code and
message are printed); 2 usage or configuration error (nothing was sent).")]
pub struct ClientArgs {
    /// The client configuration: cluster, NATS servers, manifest, initiator and its key file
    /// (docs/CONFIG.md, "client.toml"). Relative paths in it are relative to its directory.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "KEYRACK_CLIENT_CONFIG",
        default_value = "client.toml"
    )]
    config: PathBuf,
    /// Print one JSON object on stdout instead of text (fields: see each command's --help).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Create a key shared by every node of the cluster (one per scheme, under one key id).
    ///
    /// Waits until every node of the manifest reported the same keys, and prints them. Fails
    /// (exit 1) if a node refuses or fails, or if the nodes report different keys. A keygen
    /// for a key id that exists with the same schemes and threshold returns the existing
    /// keys.
    ///
    /// The keys are recorded in this client's trusted keys (client.toml's trusted_keys,
    /// default trusted-keys.toml beside it), which the console's approver decodes payloads
    /// with. A trusted entry with another public key under the id is replaced only with
    /// --reuse-deleted-id; otherwise the keys are printed but not recorded (exit 1).
    #[command(after_long_help = report::KEYGEN_JSON)]
    Keygen(KeygenArgs),
    /// Sign a message, a digest or a chain payload with a key, and print the verified
    /// signature.
    ///
    /// Ed25519 signs the message itself; ecdsa-secp256k1 and schnorr-secp256k1 sign the
    /// SHA-256 digest of the message, computed by the nodes, or a raw digest given with
    /// --digest. With --chain, the nodes decode the transaction or message with their chain
    /// plugin, apply their policy to what it does, sign what the plugin computes and return
    /// the signed transaction. Every node decides on its own: a request the policy allows
    /// only with approvals waits for them (see `approve`). The signature is printed only once
    /// this client verified it under the public key (the derived child key with --path).
    #[command(after_long_help = report::SIGN_JSON)]
    Sign(SignArgs),
    /// Move a key to a new threshold and/or committee; its public key stays the same.
    ///
    /// The nodes holding the key deal new shares to the new committee (--participants, in
    /// key-index order; default: unchanged) with the new threshold (--threshold; default:
    /// unchanged). Waits until every node of the manifest answered: those of the old or the
    /// new committee with the same new keys (a new version), the others as not concerned.
    /// Fails (exit 1) if a node refuses or fails, or if the nodes report different keys.
    /// Moving an ECDSA key to a new committee first sets the committee up, which can take
    /// minutes: the default timeout is the longest the nodes allow (600 s).
    #[command(after_long_help = report::RESHARE_JSON)]
    Reshare(ReshareArgs),
    /// New shares of a key for the same committee and threshold (a new version); its public
    /// key stays the same.
    ///
    /// Waits as `reshare` does; default timeout 600 s, the longest the nodes allow.
    #[command(after_long_help = report::RESHARE_JSON)]
    Refresh(RefreshArgs),
    /// Delete a key for good: every node erases its shares (IRREVERSIBLE; needs --yes).
    ///
    /// Every node of the manifest erases its shares of the schemes given and keeps a
    /// tombstone, so the key can never sign again and its id stays taken (a keygen with
    /// --reuse-deleted-id makes a new, unrelated key under the id). Waits until every node
    /// confirmed; fails (exit 1) if one refuses or fails.
    #[command(after_long_help = report::DELETE_JSON)]
    Delete(DeleteArgs),
    /// Show each node's result for a request this client sent, or each node's view of a key.
    ///
    /// `status REQUEST_ID`: every result this client's request got, per node, read from the
    /// cluster's result stream (kept one hour), each checked against the manifest; nodes with
    /// no result are shown as pending.
    ///
    /// `status --key KEY_ID`: asks every node for its own view of the key: status (PENDING,
    /// READY, ERROR or DELETED), version, threshold, committee (participants, in key-index
    /// order) and public key, and what is under way on the key there (a reshare's phase,
    /// e.g. the new committee's setup). Nodes that do not answer in time are shown as
    /// missing. An unknown key id is no error: each node answers that it has no such key.
    #[command(after_long_help = report::STATUS_JSON)]
    Status(StatusArgs),
    /// Approve a request that waits for approvals, by its request hash (as the nodes and the
    /// initiator's `sign` print it).
    ///
    /// Every node records the approval, signed by this client's initiator, until it expires
    /// (--valid-for). It counts toward a rule's approvals only if the initiator is in the
    /// rule's approver group, and never for a request it made itself. Waits until every
    /// node acknowledged.
    Approve(VerdictArgs),
    /// Reject a request that waits for approvals, by its request hash (as the nodes and the
    /// initiator's `sign` print it).
    ///
    /// Every node records the rejection, signed by this client's initiator, until it expires
    /// (--valid-for); it replaces this initiator's approval of the request, and a later
    /// approval does not undo it. A node refuses the waiting request at once
    /// (approval_rejected) if the initiator is in the approver group the request waits for
    /// and did not make the request; anyone else's rejection is ignored. Waits until every
    /// node acknowledged.
    Reject(VerdictArgs),
    /// Show a key's addresses on each chain its scheme signs for (EVM and Bitcoin for
    /// ecdsa-secp256k1, Bitcoin P2TR for schnorr-secp256k1, Solana for ed25519), for the
    /// root key or the child key at --path.
    ///
    /// The public key and chain code come from the nodes' signed status answers (all that
    /// hold the key READY must agree); the child key and the addresses are computed here,
    /// with the same plugins the nodes use.
    Address(AddressArgs),
    /// Record a key's public keys in this client's trusted keys, from the nodes' signed
    /// status answers (as an approver does before approving from the console).
    ///
    /// Sends a status request for the key and records each scheme's key (public key, chain
    /// code, threshold, committee, version) only if every node that answers READY reports
    /// the same, and at least the threshold of that committee answered READY: one lying
    /// node cannot decide it. Otherwise nothing is recorded (exit 1), saying which nodes
    /// disagree or how many answered. A key already trusted under the id with another
    /// public key is replaced only with --replace (the key id was deleted and re-created,
    /// or a node lies: find out which first). The file is client.toml's trusted_keys,
    /// default trusted-keys.toml beside client.toml.
    #[command(after_long_help = report::TRUST_JSON)]
    Trust(TrustArgs),
}

#[derive(Debug, Args)]
struct TrustArgs {
    /// The key (wallet) id.
    key_id: String,
    /// Only this scheme (repeatable). Default: every scheme a node reports READY.
    #[arg(long = "scheme", value_name = "SCHEME", value_parser = parse::scheme)]
    schemes: Vec<Scheme>,
    /// Replace a trusted entry that holds another public key or chain code.
    #[arg(long)]
    replace: bool,
    /// Seconds to wait for the nodes' answers.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    timeout: u64,
}

#[derive(Debug, Args)]
struct AddressArgs {
    /// The key (wallet) id.
    key_id: String,
    /// The key's scheme: ecdsa-secp256k1 (or ecdsa), ed25519 (or eddsa), schnorr-secp256k1.
    #[arg(long, value_name = "SCHEME", value_parser = parse::scheme)]
    scheme: Scheme,
    /// The child key at this non-hardened path, e.g. m/0/1. Default: the key itself.
    #[arg(long, value_name = "PATH", value_parser = parse::path)]
    path: Option<DerivationPath>,
    /// The Bitcoin network of the addresses: bitcoin, testnet, testnet4, signet, regtest.
    #[arg(long, value_name = "NETWORK", default_value = "bitcoin")]
    bitcoin_network: String,
    /// Seconds to wait for the nodes' answers.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    timeout: u64,
}

/// `approve` and `reject`.
#[derive(Debug, Args)]
struct VerdictArgs {
    /// The request hash (64 hex): SHA-256 of the body of the request approved or rejected.
    #[arg(value_name = "REQUEST_HASH", value_parser = parse::digest)]
    request_hash: [u8; 32],
    /// Seconds the approval or rejection stays valid; also its request's lifetime (at most
    /// 600: nodes refuse longer-lived requests).
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = parse::lifetime_secs)]
    valid_for: u64,
    /// Seconds to wait for every node.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// The key (wallet) id: 1-128 of A-Z a-z 0-9 . _ : -, starting with a letter or digit.
    key_id: String,
    /// A scheme: ecdsa-secp256k1 (or ecdsa), ed25519 (or eddsa), schnorr-secp256k1. Repeat
    /// it for several keys under the one key id.
    #[arg(long = "scheme", value_name = "SCHEME", required = true, value_parser = parse::scheme)]
    schemes: Vec<Scheme>,
    /// How many nodes must take part in each signature (t of the manifest's n nodes, with
    /// n/2 < t <= n). Default: n/2 + 1.
    #[arg(long, value_name = "T")]
    threshold: Option<u16>,
    /// Create the key even if its id belongs to a deleted key: a new key, unrelated to the
    /// deleted one but for its name (without it the nodes refuse: key_deleted).
    #[arg(long)]
    reuse_deleted_id: bool,
    /// Seconds to wait for every node; also the request's lifetime (at most 600: nodes
    /// refuse longer-lived requests).
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = parse::lifetime_secs)]
    timeout: u64,
}

#[derive(Debug, Args)]
struct ReshareArgs {
    /// The key (wallet) id.
    key_id: String,
    /// A scheme of the key to reshare: ecdsa-secp256k1 (or ecdsa), ed25519 (or eddsa),
    /// schnorr-secp256k1. Repeat it for several.
    #[arg(long = "scheme", value_name = "SCHEME", required = true, value_parser = parse::scheme)]
    schemes: Vec<Scheme>,
    /// The new threshold t (n/2 < t <= n for the new committee's n). Default: unchanged.
    #[arg(long, value_name = "T")]
    threshold: Option<u16>,
    /// The new committee: node ids of the manifest, in key-index order (the order is the
    /// shares' order). Comma-separated, or --participant repeated. Default: unchanged.
    #[arg(
        long = "participants",
        visible_alias = "participant",
        value_name = "NODE,NODE…",
        value_delimiter = ',',
        value_parser = parse::node_id
    )]
    participants: Vec<String>,
    /// Seconds to wait for every node; also the request's lifetime (at most 600: nodes
    /// refuse longer-lived requests).
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = parse::lifetime_secs)]
    timeout: u64,
}

#[derive(Debug, Args)]
struct RefreshArgs {
    /// The key (wallet) id.
    key_id: String,
    /// A scheme of the key to refresh (repeatable).
    #[arg(long = "scheme", value_name = "SCHEME", required = true, value_parser = parse::scheme)]
    schemes: Vec<Scheme>,
    /// Seconds to wait for every node; also the request's lifetime (at most 600).
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = parse::lifetime_secs)]
    timeout: u64,
}

#[derive(Debug, Args)]
struct DeleteArgs {
    /// The key (wallet) id.
    key_id: String,
    /// A scheme of the key to delete (repeatable).
    #[arg(long = "scheme", value_name = "SCHEME", required = true, value_parser = parse::scheme)]
    schemes: Vec<Scheme>,
    /// Confirm: deleting is irreversible; the key can never sign again.
    #[arg(long)]
    yes: bool,
    /// Seconds to wait for every node; also the request's lifetime (at most 600), so the
    /// time approvers have if the policy asks for approvals (a delay after them runs on
    /// without this command: see `keyrack client status REQUEST_ID`).
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = parse::lifetime_secs)]
    timeout: u64,
}

#[derive(Debug, Args)]
struct SignArgs {
    /// The key (wallet) id.
    key_id: String,
    /// The key's scheme: ecdsa-secp256k1 (or ecdsa), ed25519 (or eddsa), schnorr-secp256k1.
    #[arg(long, value_name = "SCHEME", value_parser = parse::scheme)]
    scheme: Scheme,
    #[command(flatten)]
    payload: PayloadArgs,
    /// The chain whose transaction or message --tx-hex, --tx-file, --personal-message or
    /// --typed-data is: evm, bitcoin or solana.
    #[arg(long, value_name = "CHAIN")]
    chain: Option<String>,
    /// Sign with the child key at this non-hardened BIP-32-style path, e.g. m/44/0/1
    /// (hardened indexes, ' or h, are refused). Default: the key itself.
    #[arg(long, value_name = "PATH", value_parser = parse::path)]
    path: Option<DerivationPath>,
    /// Seconds to wait for a signature; also the request's lifetime (at most 600: nodes
    /// refuse longer-lived requests).
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = parse::lifetime_secs)]
    timeout: u64,
}

/// What to sign: exactly one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct PayloadArgs {
    /// A message, as UTF-8 text.
    #[arg(long, value_name = "TEXT")]
    message: Option<String>,
    /// A message, as hex.
    #[arg(long, value_name = "HEX", value_parser = parse::hex_bytes)]
    message_hex: Option<HexBytes>,
    /// A raw 32-byte digest (64 hex), signed as given (secp256k1 schemes only; the nodes'
    /// policy decides whether raw digests may be signed).
    #[arg(long, value_name = "HEX32", value_parser = parse::digest)]
    digest: Option<[u8; 32]>,
    /// A chain transaction, as hex (needs --chain): an unsigned EVM transaction (legacy RLP
    /// or EIP-2718 envelope), a Bitcoin PSBT, a Solana transaction message. The nodes decode
    /// it, apply their policy to what it does, and sign what their chain plugin computes.
    #[arg(long, value_name = "HEX", value_parser = parse::hex_bytes, requires = "chain")]
    tx_hex: Option<HexBytes>,
    /// A chain transaction read from a file, as is (a binary or base64 PSBT, say; needs
    /// --chain).
    #[arg(long, value_name = "FILE", requires = "chain")]
    tx_file: Option<PathBuf>,
    /// An EIP-191 personal message, as UTF-8 text (needs --chain evm).
    #[arg(long, value_name = "TEXT", requires = "chain")]
    personal_message: Option<String>,
    /// EIP-712 typed data (eth_signTypedData_v4 JSON) read from a file (needs --chain evm).
    #[arg(long, value_name = "FILE", requires = "chain")]
    typed_data: Option<PathBuf>,
}

impl PayloadArgs {
    fn payload(&self) -> anyhow::Result<(Vec<u8>, PayloadKind)> {
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        Ok(if let Some(text) = &self.message {
            (text.as_bytes().to_vec(), PayloadKind::Message)
        } else if let Some(HexBytes(bytes)) = &self.message_hex {
            (bytes.clone(), PayloadKind::Message)
        } else if let Some(digest) = &self.digest {
            (digest.to_vec(), PayloadKind::Digest)
        } else if let Some(HexBytes(bytes)) = &self.tx_hex {
            (bytes.clone(), PayloadKind::Transaction)
        } else if let Some(path) = &self.tx_file {
            (read(path)?, PayloadKind::Transaction)
        } else if let Some(text) = &self.personal_message {
            (text.as_bytes().to_vec(), PayloadKind::PersonalMessage)
        } else if let Some(path) = &self.typed_data {
            (read(path)?, PayloadKind::TypedData)
        } else {
            // clap's group requires exactly one.
            bail!("give what to sign")
        })
    }
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// A request id (32 hex) this client sent, as printed by keygen and sign.
    #[arg(
        value_name = "REQUEST_ID",
        required_unless_present = "key",
        conflicts_with = "key",
        value_parser = parse::request_id
    )]
    request_id: Option<String>,
    /// Show each node's view of this key id instead.
    #[arg(long, value_name = "KEY_ID")]
    key: Option<String>,
    /// With --key: only this scheme (repeatable). Default: every scheme.
    #[arg(long = "scheme", value_name = "SCHEME", requires = "key", value_parser = parse::scheme)]
    schemes: Vec<Scheme>,
    /// Seconds to wait for the nodes' answers (--key) or for the stream (a request id).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    timeout: u64,
}

/// `client.toml`: who the client is and which cluster it talks to (docs/CONFIG.md). Relative
/// paths are relative to the file's directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientConfig {
    /// The cluster id (the manifest's).
    pub cluster: String,
    /// This client's id: results come back on subjects naming it (a-z 0-9 - _).
    pub client_id: String,
    /// NATS server URLs (any of the cluster's).
    pub nats: Vec<String>,
    /// The signed cluster manifest (the nodes' identities are checked against it).
    pub manifest: PathBuf,
    /// The initiator's id in the manifest.
    pub initiator: String,
    /// The initiator's Ed25519 key file (`keyrack keys generate`; mode 0600).
    pub initiator_key: PathBuf,
    /// The keys this client trusts ([`keyrack_client::trusted`]); default
    /// `trusted-keys.toml` beside this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_keys: Option<PathBuf>,
}

/// A client configuration with its manifest verified and its key loaded (also the
/// console's approver: `keyrack tui --approver-config`).
pub(super) struct Loaded {
    pub(super) config: ClientConfig,
    pub(super) manifest: VerifiedManifest,
    pub(super) key: InitiatorKey,
    /// Where the trusted keys are (client.toml's `trusted_keys`, resolved; else
    /// trusted-keys.toml beside it).
    pub(super) trusted_keys: PathBuf,
}

impl Loaded {
    /// Reads `path` (relative paths in it are relative to its directory).
    pub(super) fn load(path: &Path) -> anyhow::Result<Self> {
        let shown = path.display();
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the client configuration {shown} (give --config FILE or set \
                 KEYRACK_CLIENT_CONFIG; docs/CONFIG.md describes client.toml)"
            )
        })?;
        let config: ClientConfig = toml::from_str(&text)
            .with_context(|| format!("invalid client configuration {shown}"))?;
        if config.nats.is_empty() {
            bail!("invalid client configuration {shown}: nats lists no server");
        }
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let manifest = super::read_manifest(&base.join(&config.manifest))
            .with_context(|| format!("{shown}: manifest = {:?}", config.manifest))?;
        let key_path = base.join(&config.initiator_key);
        let key = InitiatorKey::load(&config.initiator, &key_path)
            .with_context(|| format!("{shown}: initiator_key = {:?}", config.initiator_key))?;
        let trusted_keys = base.join(
            config
                .trusted_keys
                .as_deref()
                .unwrap_or(Path::new(trusted::DEFAULT_FILE)),
        );
        Ok(Loaded {
            config,
            manifest,
            key,
            trusted_keys,
        })
    }

    /// The trusted keys (none yet if the file does not exist).
    pub(super) fn trusted(&self) -> anyhow::Result<TrustedKeys> {
        let entry = match &self.config.trusted_keys {
            Some(p) => format!(" (trusted_keys = {p:?})"),
            None => String::new(),
        };
        TrustedKeys::load_or_empty(&self.trusted_keys)
            .with_context(|| format!("this client's trusted keys{entry}"))
    }

    async fn connect(self) -> Result<Client, SdkError> {
        let c = &self.config;
        Client::connect(&c.nats, &c.cluster, &c.client_id, self.key, self.manifest).await
    }
}

pub(super) fn run(args: ClientArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        ClientCommand::Sign(a) => a.check()?,
        ClientCommand::Reshare(a) => a.check()?,
        ClientCommand::Delete(a) => a.check()?,
        _ => {}
    }
    let loaded = Loaded::load(&args.config)?;
    if let ClientCommand::Reshare(a) = &args.command {
        check_committee(&loaded.manifest, a.threshold, a.committee())
            .context("--threshold / --participants")?;
    }
    // Read before anything is sent: a file that cannot be read stops here (exit 2), not
    // after the nodes made a key it cannot record.
    let trusted = match &args.command {
        ClientCommand::Keygen(_) | ClientCommand::Trust(_) => Some(loaded.trusted()?),
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let json = args.json;
    runtime.block_on(async move {
        let client = match loaded.connect().await {
            Ok(client) => client,
            Err(e) => return failure(e, None, json),
        };
        match args.command {
            ClientCommand::Keygen(a) => keygen(&client, a, trusted, json).await,
            ClientCommand::Trust(a) => trust(&client, a, trusted, json).await,
            ClientCommand::Sign(a) => sign(&client, a, json).await,
            ClientCommand::Reshare(a) => {
                let body = client.reshare_body(
                    &a.key_id,
                    &a.schemes,
                    a.threshold,
                    a.committee().map(<[String]>::to_vec),
                    Duration::from_secs(a.timeout),
                );
                let op = report::KeysOp::Reshared;
                agreed_keys(&client, body, a.timeout, op, &a.key_id, None, json).await
            }
            ClientCommand::Refresh(a) => {
                let body =
                    client.refresh_body(&a.key_id, &a.schemes, Duration::from_secs(a.timeout));
                let op = report::KeysOp::Refreshed;
                agreed_keys(&client, body, a.timeout, op, &a.key_id, None, json).await
            }
            ClientCommand::Delete(a) => delete(&client, a, json).await,
            ClientCommand::Address(a) => address(&client, a, json).await,
            ClientCommand::Approve(a) => {
                let body = client.approve_body(a.request_hash, Duration::from_secs(a.valid_for));
                acknowledged(&client, body, "approval", a.timeout, json).await
            }
            ClientCommand::Reject(a) => {
                let body = client.reject_body(a.request_hash, Duration::from_secs(a.valid_for));
                acknowledged(&client, body, "rejection", a.timeout, json).await
            }
            ClientCommand::Status(a) => match (a.request_id, a.key) {
                (Some(request_id), _) => {
                    request_status(&client, &request_id, a.timeout, json).await
                }
                (None, Some(key_id)) => {
                    key_status(&client, &key_id, &a.schemes, a.timeout, json).await
                }
                (None, None) => bail!("give a request id or --key KEY_ID"),
            },
        }
    })
}

async fn keygen(
    client: &Client,
    a: KeygenArgs,
    trusted: Option<TrustedKeys>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut trusted = trusted.context("internal: keygen without the trusted keys")?;
    let n = client.manifest().nodes().len();
    let threshold = match a.threshold {
        Some(t) => t,
        None => u16::try_from(n / 2 + 1).context("too many nodes in the manifest")?,
    };
    keyrack_client::request::check_threshold(threshold, n)
        .with_context(|| format!("--threshold {threshold}"))?;
    let mut body = client.keygen_body(
        &a.key_id,
        &a.schemes,
        threshold,
        Duration::from_secs(a.timeout),
    );
    body.reuse_deleted_id = a.reuse_deleted_id;
    // Every node of the manifest reports the keys (the SDK checks that they agree): they are
    // recorded as trusted. Another key under the id is replaced only when the id was asked
    // to be re-used.
    let record = Some((&mut trusted, a.reuse_deleted_id));
    let op = report::KeysOp::Created;
    agreed_keys(client, body, a.timeout, op, &a.key_id, record, json).await
}

/// `trust`: records the keys the nodes' signed status answers agree on.
async fn trust(
    client: &Client,
    a: TrustArgs,
    trusted: Option<TrustedKeys>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut trusted = trusted.context("internal: trust without the trusted keys")?;
    let timeout = Duration::from_secs(a.timeout);
    let body = client.status_body(&a.key_id, &a.schemes, timeout);
    let request_id = body.request_id.clone();
    let status = match client.request(body, timeout).await {
        Ok(Outcome::KeyStatus(report)) => report,
        Ok(_) => bail!("internal: a status request completed with another kind of outcome"),
        Err(e) => return failure(e, Some(&request_id), json),
    };
    let agreed = match agreed_from_status(&a, &status) {
        Ok(keys) => keys,
        Err(message) => {
            report::untrusted(&request_id, &message, json)?;
            return Ok(ExitCode::from(1));
        }
    };
    let mut recorded = Vec::new();
    for key in agreed {
        match trusted.record(key.clone(), a.replace) {
            Ok(r) => recorded.push((key, r)),
            Err(e) => {
                let hint = format!(
                    "{e}; once you know the key was re-created, run `keyrack client trust {} \
                     --replace`",
                    a.key_id
                );
                report::untrusted(&request_id, &hint, json)?;
                return Ok(ExitCode::from(1));
            }
        }
    }
    trusted.save()?;
    let answered: Vec<&str> = status
        .nodes
        .iter()
        .map(|n| n.answer.node.as_str())
        .collect();
    report::trusted(
        &request_id,
        &a.key_id,
        &recorded,
        &answered,
        &status.missing,
        trusted.path(),
        json,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The keys of `a.key_id` the status answers establish (each scheme asked, or each scheme
/// some node reports READY), or why not (naming the nodes that disagree or how many
/// answered).
fn agreed_from_status(a: &TrustArgs, status: &KeyStatusReport) -> Result<Vec<TrustedKey>, String> {
    let answers: Vec<trusted::StatusAnswer<'_>> = status.nodes.iter().map(Into::into).collect();
    let mut schemes = a.schemes.clone();
    if schemes.is_empty() {
        for k in status.nodes.iter().flat_map(|n| &n.keys) {
            let ready = k.status == Some(keyrack_client::result::KeyStatus::Ready);
            if ready && k.key_id == a.key_id && !schemes.contains(&k.scheme) {
                schemes.push(k.scheme);
            }
        }
        schemes.sort();
    }
    let silent = if status.missing.is_empty() {
        String::new()
    } else {
        format!(" (no answer from {})", status.missing.join(", "))
    };
    if schemes.is_empty() {
        return Err(format!(
            "no node that answered holds a READY key '{}'{silent}: nothing to trust",
            a.key_id
        ));
    }
    let now = keyrack_client::now_ms();
    schemes
        .iter()
        .map(|s| trusted::agree(&a.key_id, *s, &answers, now))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{e}{silent}; nothing was recorded"))
}

/// Sends a keygen, reshare or refresh and prints the keys the nodes agreed on; with
/// `record` (the trusted keys, and whether another key may replace a trusted one), records
/// them as trusted first.
async fn agreed_keys(
    client: &Client,
    body: RequestBody,
    timeout: u64,
    op: report::KeysOp,
    key_id: &str,
    record: Option<(&mut TrustedKeys, bool)>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let request_id = body.request_id.clone();
    let agreed = match request_noting(client, body, Duration::from_secs(timeout)).await {
        Ok(Outcome::Keys(keys)) => keys,
        Ok(_) => bail!(
            "internal: a {} request completed with another kind of outcome",
            op.kind()
        ),
        Err(e) => return failure(e, Some(&request_id), json),
    };
    let recorded = record.map(|(trusted, replace)| {
        let now = keyrack_client::now_ms();
        for k in &agreed.keys {
            trusted.record(TrustedKey::from_info(k, TrustSource::Keygen, now), replace)?;
        }
        trusted.save()?;
        anyhow::Ok(trusted.path().to_owned())
    });
    let written = match &recorded {
        Some(Ok(path)) => Some(path.as_path()),
        _ => None,
    };
    report::agreed_keys(op, &request_id, key_id, &agreed, written, json)?;
    if let Some(Err(e)) = recorded {
        eprintln!(
            "error: the keys were made but not recorded as trusted: {e:#}\n(`keyrack client \
             trust {key_id} --replace` records them once you know why)"
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

impl ReshareArgs {
    /// The new committee, if one was given.
    fn committee(&self) -> Option<&[String]> {
        (!self.participants.is_empty()).then_some(self.participants.as_slice())
    }

    /// What clap cannot check alone (the manifest is checked once loaded).
    fn check(&self) -> anyhow::Result<()> {
        if self.threshold.is_none() && self.participants.is_empty() {
            bail!(
                "give --threshold T and/or --participants NODE,NODE…: a reshare with neither \
                 changes nothing (for new shares of the same committee, use `keyrack client \
                 refresh`)"
            );
        }
        if self.threshold == Some(0) {
            bail!("--threshold 0: a threshold is at least 1 (and more than half the committee)");
        }
        for (i, p) in self.participants.iter().enumerate() {
            if self.participants[..i].contains(p) {
                bail!("--participants: '{p}' is listed twice (each node holds one share)");
            }
        }
        Ok(())
    }
}

impl DeleteArgs {
    fn check(&self) -> anyhow::Result<()> {
        if !self.yes {
            bail!(
                "deleting key '{}' is irreversible: every node erases its shares and the key \
                 can never sign again; add --yes to confirm",
                self.key_id
            );
        }
        Ok(())
    }
}

async fn delete(client: &Client, a: DeleteArgs, json: bool) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(a.timeout);
    let body = client.delete_body(&a.key_id, &a.schemes, timeout);
    let request_id = body.request_id.clone();
    let deleted = match request_noting(client, body, timeout).await {
        Ok(Outcome::Deleted(d)) => d,
        Ok(_) => bail!("internal: a delete request completed with another kind of outcome"),
        Err(e) => return failure(e, Some(&request_id), json),
    };
    report::deleted(&request_id, &deleted, json)?;
    Ok(ExitCode::SUCCESS)
}

impl SignArgs {
    /// What clap cannot check alone.
    fn check(&self) -> anyhow::Result<()> {
        let chain_payload = self.payload.tx_hex.is_some()
            || self.payload.tx_file.is_some()
            || self.payload.personal_message.is_some()
            || self.payload.typed_data.is_some();
        if self.chain.is_some() && !chain_payload {
            bail!(
                "--chain goes with --tx-hex, --tx-file, --personal-message or --typed-data \
                 (a plain --message or --digest has no chain)"
            );
        }
        if self.payload.digest.is_some() && self.scheme == Scheme::Ed25519 {
            bail!(
                "--digest: ed25519 signs the message itself, not a digest; give --message or \
                 --message-hex"
            );
        }
        Ok(())
    }
}

async fn sign(client: &Client, a: SignArgs, json: bool) -> anyhow::Result<ExitCode> {
    let (payload, kind) = a.payload.payload()?;
    let path = a.path.unwrap_or_default();
    let timeout = Duration::from_secs(a.timeout);
    let mut body = client.sign_body(&a.key_id, a.scheme, &payload, kind, &path.0, timeout);
    body.chain = a.chain.clone();
    let request_id = body.request_id.clone();
    let signed = match request_noting(client, body, timeout).await {
        Ok(Outcome::Signature(s)) => s,
        Ok(_) => bail!("internal: a sign request completed with another kind of outcome"),
        Err(e) => return failure(e, Some(&request_id), json),
    };
    report::signature(&request_id, &a.key_id, kind, &path, &signed, json)?;
    Ok(ExitCode::SUCCESS)
}

/// Sends `body` and waits up to `timeout` for its outcome. A request the policy holds at a
/// node — waiting for approvals, or approved and time-locked — is said on stderr as each node
/// reports it (with the request hash approvers need, or when it will be carried out).
async fn request_noting(
    client: &Client,
    body: RequestBody,
    timeout: Duration,
) -> Result<Outcome, SdkError> {
    client
        .submit(body)
        .await?
        .wait_with_notices(timeout, |answer| {
            eprintln!("{}: {}", answer.node, answer.message);
        })
        .await
}

async fn address(client: &Client, a: AddressArgs, json: bool) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(a.timeout);
    let body = client.status_body(&a.key_id, &[a.scheme], timeout);
    let request_id = body.request_id.clone();
    let report = match client.request(body, timeout).await {
        Ok(Outcome::KeyStatus(report)) => report,
        Ok(_) => bail!("internal: a status request completed with another kind of outcome"),
        Err(e) => return failure(e, Some(&request_id), json),
    };
    let ready: Vec<(&str, &keyrack_client::result::KeyInfo)> = report
        .nodes
        .iter()
        .flat_map(|n| n.keys.iter().map(move |k| (n.answer.node.as_str(), k)))
        .filter(|(_, k)| k.status == Some(keyrack_client::result::KeyStatus::Ready))
        .collect();
    let Some((_, first)) = ready.first() else {
        bail!(
            "no node holds a READY {} key '{}'",
            a.scheme.as_str(),
            a.key_id
        );
    };
    if let Some((node, other)) = ready
        .iter()
        .find(|(_, k)| (&k.public_key, k.chain_code) != (&first.public_key, first.chain_code))
    {
        bail!(
            "the nodes disagree on key '{}': {node} reports public key {}, another {}",
            a.key_id,
            hex::encode(&other.public_key),
            hex::encode(&first.public_key)
        );
    }
    let mut registry = crate::daemon::default_registry();
    crate::chains::register(&mut registry, &a.bitcoin_network)
        .with_context(|| format!("--bitcoin-network {}", a.bitcoin_network))?;
    let scheme_plugin = registry
        .scheme(a.scheme.as_str())
        .context("this build has no plugin for the scheme")?;
    let path = a.path.unwrap_or_default();
    let key = scheme_plugin
        .derive_public_key(&first.public_key, &first.chain_code, &path.0)
        .map_err(|e| anyhow::anyhow!("derivation at {path}: {e}"))?;
    let mut chains = Vec::new();
    for id in registry.chain_ids() {
        let chain = registry.chain(id).context("a registered chain")?;
        if !chain.schemes().contains(&a.scheme.as_str()) {
            continue;
        }
        let signer = keyrack_plugin::SignerKey {
            scheme: a.scheme.as_str(),
            public_key: &key,
        };
        let addresses = chain
            .addresses(signer)
            .map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
        chains.push((id, addresses));
    }
    if json {
        let chains: serde_json::Map<String, serde_json::Value> = chains
            .iter()
            .map(|(id, addrs)| ((*id).to_owned(), serde_json::json!(addrs)))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": true, "key_id": a.key_id, "scheme": a.scheme.as_str(),
                "path": path.to_string(), "public_key": hex::encode(&key), "addresses": chains,
            }))?
        );
    } else {
        println!(
            "key {} ({}, path {path}): public key {}",
            a.key_id,
            a.scheme.as_str(),
            hex::encode(&key)
        );
        for (id, addresses) in &chains {
            for address in addresses {
                println!("  {id:<8} {address}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends an approval or a policy activation and reports every node's acknowledgement.
async fn acknowledged(
    client: &Client,
    body: RequestBody,
    what: &str,
    timeout: u64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let request_id = body.request_id.clone();
    let ack = match client.request(body, Duration::from_secs(timeout)).await {
        Ok(Outcome::Acknowledged(ack)) => ack,
        Ok(_) => bail!("internal: a {what} completed with another kind of outcome"),
        Err(e) => return failure(e, Some(&request_id), json),
    };
    report::acknowledged(what, &request_id, &ack, json)?;
    Ok(ExitCode::SUCCESS)
}

/// `keyrack policy activate`: sends the signed bundle file `bundle` as the initiator of the
/// client configuration `config` (a policy administrator).
pub(crate) fn activate_policy(
    config: &Path,
    bundle: &Path,
    timeout: u64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(bundle)
        .with_context(|| format!("cannot read the policy bundle {}", bundle.display()))?;
    let loaded = Loaded::load(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let client = match loaded.connect().await {
            Ok(client) => client,
            Err(e) => return failure(e, None, json),
        };
        let body = client.activate_policy_body(&bytes, Duration::from_secs(timeout));
        acknowledged(&client, body, "policy activation", timeout, json).await
    })
}

async fn key_status(
    client: &Client,
    key_id: &str,
    schemes: &[Scheme],
    timeout: u64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(timeout);
    let body = client.status_body(key_id, schemes, timeout);
    let request_id = body.request_id.clone();
    let status = match client.request(body, timeout).await {
        Ok(Outcome::KeyStatus(report)) => report,
        Ok(_) => bail!("internal: a status request completed with another kind of outcome"),
        Err(e) => return failure(e, Some(&request_id), json),
    };
    let members: Vec<String> = client
        .manifest()
        .nodes()
        .iter()
        .map(|n| n.node_id().to_owned())
        .collect();
    let all_ok = report::key_status(&request_id, key_id, &status, &members, timeout, json)?;
    Ok(exit(all_ok))
}

async fn request_status(
    client: &Client,
    request_id: &str,
    timeout: u64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let results = match client
        .results_of(request_id, Duration::from_secs(timeout))
        .await
    {
        Ok(results) => results,
        Err(e) => return failure(e, Some(request_id), json),
    };
    let all_ok = report::request_results(&results, json)?;
    Ok(exit(all_ok))
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Reports an SDK error: a configuration or request error exits 2 through the caller's
/// error path (nothing was sent); anything else is printed and exits 1.
fn failure(e: SdkError, request_id: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    if matches!(e, SdkError::Config(_) | SdkError::Request(_)) {
        return Err(e.into());
    }
    report::failure(&e, request_id, json)?;
    Ok(ExitCode::from(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client.toml example in docs/CONFIG.md parses, with every key documented in its
    /// table.
    #[test]
    fn documented_client_toml_example_parses() {
        let doc = include_str!("../../../../docs/CONFIG.md");
        let section = doc
            .split("# Client configuration reference (`client.toml`)")
            .nth(1)
            .expect("docs/CONFIG.md has a client.toml section");
        let example = section
            .split("```toml")
            .nth(1)
            .and_then(|s| s.split("```").next())
            .expect("the client.toml section has a toml example");
        let c: ClientConfig = toml::from_str(example).unwrap();
        assert_eq!(c.cluster, "dev");
        assert_eq!(c.client_id, "cli");
        assert_eq!(c.nats, ["nats://127.0.0.1:4222"]);
        assert_eq!(c.manifest, PathBuf::from("manifest.toml"));
        assert_eq!(c.initiator, "alice");
        assert_eq!(c.initiator_key, PathBuf::from("alice.key"));
        assert_eq!(c.trusted_keys, Some(PathBuf::from("trusted-keys.toml")));
        for key in [
            "cluster",
            "client_id",
            "nats",
            "manifest",
            "initiator",
            "initiator_key",
            "trusted_keys",
        ] {
            assert!(
                section.contains(&format!("| `{key}` |")),
                "{key} is not in the table"
            );
        }
    }

    #[test]
    fn unknown_client_keys_are_errors() {
        let text = "cluster = \"dev\"\nclient_id = \"cli\"\nnats = []\nmanifest = \"m\"\n\
                    initiator = \"a\"\ninitiator_key = \"k\"\ncolour = \"blue\"\n";
        let e = toml::from_str::<ClientConfig>(text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");
    }
}
