//! `keyrack node`: runs the node daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use keyrack_hsm::KeyPolicy;

use crate::config::LoadedConfig;
use crate::daemon::{default_registry, ControlRouter, Node, Settings};
use crate::ecdsa::PrimeKeeper;
use crate::identity::NodeIdentity;
use crate::intake::IntakeLimits;
use crate::store::Store;
use crate::transport::Bus;

/// Run the node: join the cluster named in the config's `[cluster]` section and serve its
/// requests until interrupted (Ctrl-C / SIGTERM).
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's config file (keyrack.toml) with a [cluster] section.
    #[arg(long)]
    config: PathBuf,
}

pub(super) fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let loaded = LoadedConfig::load(&args.config)?;
    let cluster = loaded.config.cluster.clone().with_context(|| {
        format!(
            "{} has no [cluster] section: add the manifest and NATS URLs (docs/CONFIG.md)",
            args.config.display()
        )
    })?;
    let node_id = loaded.config.node.id.clone();

    let sealer = keyrack_hsm::open(&loaded.config.hsm, &loaded.base_dir, KeyPolicy::MustExist)?;
    let blob = std::fs::read(loaded.resolve(&loaded.config.node.identity))
        .with_context(|| format!("cannot read the sealed identity of node {node_id}"))?;
    let identity = NodeIdentity::unseal(&node_id, sealer.as_ref(), &blob)
        .context("cannot unseal the node identity")?;

    let manifest = super::read_manifest(&loaded.resolve(&cluster.manifest))?;
    match manifest.node(&node_id) {
        Some(listed) if identity.matches(listed) => {}
        Some(_) => {
            bail!("the manifest lists node {node_id} with other keys than this node's identity")
        }
        None => bail!(
            "node {node_id} is not a member of cluster {}",
            manifest.cluster_id()
        ),
    }

    let store = Store::open(
        &loaded.resolve(&cluster.store),
        manifest.cluster_id(),
        &node_id,
    )?;
    let recovery = store.recover_after_restart("the node restarted during it")?;
    tracing::info!(?recovery, "store opened");

    let settings = Settings {
        leader_timeout: Duration::from_millis(cluster.leader_timeout_ms),
        session_timeout: Duration::from_millis(cluster.session_timeout_ms),
        setup_timeout: Duration::from_millis(cluster.setup_timeout_ms),
        max_in_flight: cluster.max_in_flight,
        intake: IntakeLimits::default(),
        presign_pool: cluster.presign_pool,
        hot_window: Duration::from_millis(cluster.hot_window_ms),
    };
    let store = Arc::new(store);
    let sealer: Arc<dyn keyrack_hsm::Sealer> = Arc::from(sealer);
    let primes = PrimeKeeper::start(store.clone(), sealer.clone(), cluster.prime_pool)
        .context("cannot start the safe-prime keeper")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let bus = Bus::connect(&cluster.nats, &node_id, manifest.cluster_id()).await?;
        let node = Arc::new(Node {
            identity: Arc::new(identity),
            membership: Arc::new(crate::membership::Membership::new(manifest)),
            store,
            sealer,
            bus,
            registry: default_registry(),
            settings,
            control: Arc::new(ControlRouter::default()),
            primes: Arc::new(primes),
            peers: Arc::default(),
            pools: Arc::default(),
            key_ops: Arc::default(),
        });
        println!("node {node_id} running in cluster {}", node.cluster_id());
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = node.run() => result.map(|_| ExitCode::SUCCESS).map_err(anyhow::Error::from),
            _ = tokio::signal::ctrl_c() => { println!("node {node_id} stopping"); Ok(ExitCode::SUCCESS) }
            _ = terminate.recv() => { println!("node {node_id} stopping"); Ok(ExitCode::SUCCESS) }
        }
    })
}
