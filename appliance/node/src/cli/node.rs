//! `keyrack node`: runs the node daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use keyrack_client::manifest::{SignedManifest, VerifiedManifest};
use keyrack_hsm::KeyPolicy;

use crate::config::LoadedConfig;
use crate::daemon::{default_registry, ControlRouter, Node, Settings};
use crate::ecdsa::PrimeKeeper;
use crate::identity::NodeIdentity;
use crate::intake::IntakeLimits;
use crate::membership::Membership;
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
    let api_token = crate::api::ApiToken::load(&loaded.resolve(&loaded.config.api.token_file))?;
    let api_listen = loaded.config.api.listen.clone();

    let sealer = keyrack_hsm::open(&loaded.config.hsm, &loaded.base_dir, KeyPolicy::MustExist)?;
    let blob = std::fs::read(loaded.resolve(&loaded.config.node.identity))
        .with_context(|| format!("cannot read the sealed identity of node {node_id}"))?;
    let identity = NodeIdentity::unseal(&node_id, sealer.as_ref(), &blob)
        .context("cannot unseal the node identity")?;

    let manifest_file = loaded.resolve(&cluster.manifest);
    let bootstrap = super::read_manifest(&manifest_file)?;
    let store = Store::open(
        &loaded.resolve(&cluster.store),
        bootstrap.cluster_id(),
        &node_id,
    )?;
    let (manifest, keep_file) = newest_accepted(&store, bootstrap, &manifest_file)?;
    match manifest.node(&node_id) {
        Some(listed) if identity.matches(listed) => {}
        Some(_) => bail!(
            "cluster {} manifest version {} lists node {node_id} with other keys than this node's identity",
            manifest.cluster_id(),
            manifest.version()
        ),
        None => bail!(
            "node {node_id} is not a member of cluster {} at manifest version {} (nodes: {})",
            manifest.cluster_id(),
            manifest.version(),
            member_ids(&manifest)
        ),
    }
    if let Some(file) = keep_file {
        store
            .put_manifest(&file)
            .context("cannot keep the cluster manifest in the store")?;
    }
    tracing::info!(
        version = manifest.version(),
        hash = %hex::encode(manifest.hash()),
        "cluster manifest"
    );

    let recovery = store.recover_after_restart("the node restarted during it")?;
    tracing::info!(?recovery, "store opened");
    for (key_id, scheme, staged) in store.staged_shares()? {
        tracing::warn!(
            key = %key_id,
            scheme = %scheme,
            version = staged.version,
            "a staged share left by an interrupted reshare or refresh: the next reshare or \
             refresh of the key settles it (commits it if that run committed elsewhere, else \
             discards it)"
        );
    }

    let settled = store.settle_reservations_at_start()?;
    if settled > 0 {
        tracing::warn!(
            requests = settled,
            "sign requests were under way when the node stopped: their velocity reservations \
             stay counted (this node cannot know whether its share left)"
        );
    }
    // Requests the policy holds stay parked across a restart (the daemon carries them on);
    // expired approvals go.
    store.prune_approvals(keyrack_client::now_ms())?;
    let policy_file = cluster.policy_bundle.as_ref().map(|p| loaded.resolve(p));
    let (bundle, from_file) =
        crate::daemon::policy::load(&store, &manifest, policy_file.as_deref())?;
    if let (Some(b), true, Some(file)) = (&bundle, from_file, &policy_file) {
        let entry = crate::daemon::policy::activated_at_start_entry(b, file).to_string();
        let sign = crate::daemon::policy::audit_signer(&identity);
        store
            .append_audit("policy", None, &entry, &sign)
            .context("cannot record the policy activation in the audit log")?;
    }
    match &bundle {
        Some(b) => {
            tracing::info!(version = b.version(), hash = %hex::encode(b.hash()), "policy bundle active")
        }
        None => tracing::warn!(
            "no policy bundle is active: every request but policy activations is refused until one is activated"
        ),
    }
    let mut registry = default_registry();
    crate::chains::register(&mut registry, &cluster.bitcoin_network)
        .with_context(|| format!("bitcoin_network = {:?}", cluster.bitcoin_network))?;

    let settings = Settings {
        leader_timeout: Duration::from_millis(cluster.leader_timeout_ms),
        session_timeout: Duration::from_millis(cluster.session_timeout_ms),
        setup_timeout: Duration::from_millis(cluster.setup_timeout_ms),
        max_in_flight: cluster.max_in_flight,
        intake: IntakeLimits::default(),
        presign_pool: cluster.presign_pool,
        hot_window: Duration::from_millis(cluster.hot_window_ms),
        max_waiting_per_initiator: cluster.max_waiting_per_initiator,
    };
    let store = Arc::new(store);
    let telemetry = Arc::new(crate::telemetry::Telemetry::default());
    let sealer: Arc<dyn keyrack_hsm::Sealer> = Arc::new(crate::telemetry::TimedSealer::new(
        sealer,
        telemetry.metrics.clone(),
    ));
    let primes = PrimeKeeper::start(store.clone(), sealer.clone(), cluster.prime_pool)
        .context("cannot start the safe-prime keeper")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let membership = Arc::new(Membership::new(manifest));
    runtime.block_on(async move {
        let listener = crate::api::bind(&api_listen).await?;
        let api_addr = listener.local_addr()?;
        let bus = Bus::connect(&cluster.nats, &node_id, membership.cluster_id()).await?;
        let node = Arc::new(Node {
            identity: Arc::new(identity),
            membership,
            store,
            sealer,
            bus,
            registry,
            settings,
            control: Arc::new(ControlRouter::default()),
            primes: Arc::new(primes),
            peers: Arc::default(),
            pools: Arc::default(),
            key_ops: Arc::default(),
            policy: Arc::new(crate::daemon::policy::PolicyGate::new(bundle)),
            telemetry,
        });
        let router = crate::api::router(node.clone(), api_token, cluster.nats.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::api::serve(listener, router).await {
                tracing::error!(error = %e, "the HTTP API stopped");
            }
        });
        tracing::info!(addr = %api_addr, "HTTP API listening");
        println!("node {node_id} HTTP API on http://{api_addr}");
        println!("node {node_id} running in cluster {}", node.cluster_id());
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = node.clone().run() => result.map(|_| ExitCode::SUCCESS).map_err(anyhow::Error::from),
            _ = tokio::signal::ctrl_c() => { println!("node {node_id} stopping"); Ok(ExitCode::SUCCESS) }
            _ = terminate.recv() => { println!("node {node_id} stopping"); Ok(ExitCode::SUCCESS) }
            version = removed(&node) => {
                let message = format!(
                    "node {node_id} was removed from cluster {} by manifest version {version}",
                    node.cluster_id()
                );
                Err(anyhow::anyhow!(message))
            }
        }
    })
}

/// Returns (the manifest version) once the node's current manifest no longer lists it with
/// its own keys: the manifest watcher accepted a successor that removed it
/// (`daemon::membership`), and the node must stop serving.
async fn removed(node: &Node) -> u64 {
    let mut changes = node.membership.subscribe();
    loop {
        let current = changes.borrow_and_update().clone();
        let listed = current
            .node(node.identity.node_id())
            .is_some_and(|n| node.identity.matches(n));
        if !listed {
            return current.version();
        }
        if changes.changed().await.is_err() {
            // The membership is gone: the node is shutting down anyway.
            std::future::pending::<()>().await;
        }
    }
}

fn member_ids(manifest: &VerifiedManifest) -> String {
    manifest
        .nodes()
        .iter()
        .map(|n| n.node_id())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The manifest the node starts with: the config's file (verified as a bootstrap), then each
/// manifest the node accepted at run time (kept in its store) with a higher version, oldest
/// first, each verified as the successor of the one before. A node restarted with its old
/// file thus comes back at the newest version it accepted. Also returns the file's manifest
/// if it is newer than all the store holds (a node's first start, or a file an operator
/// replaced), for the caller to keep once the node is known to be a member.
fn newest_accepted(
    store: &Store,
    bootstrap: VerifiedManifest,
    file: &std::path::Path,
) -> anyhow::Result<(VerifiedManifest, Option<SignedManifest>)> {
    let stored = store
        .manifests()
        .context("cannot read the accepted cluster manifests from the store")?;
    if let Some(same) = stored
        .iter()
        .find(|m| m.version == bootstrap.version() && m.hash != bootstrap.hash())
    {
        bail!(
            "cluster manifest {} is version {} with hash {}, but this node accepted another version {} (hash {}); install the manifest the cluster agreed on",
            file.display(),
            bootstrap.version(),
            hex::encode(bootstrap.hash()),
            same.version,
            hex::encode(same.hash)
        );
    }
    let keep_file = stored
        .last()
        .is_none_or(|m| m.version < bootstrap.version())
        .then(|| bootstrap.signed().clone());
    let from = bootstrap.version();
    let mut current = bootstrap;
    for m in stored.into_iter().filter(|m| m.version > from) {
        let version = m.version;
        current = m.signed.verify_successor(&current).with_context(|| {
            format!(
                "the store's accepted cluster manifest version {version} does not verify as the successor of version {}",
                current.version()
            )
        })?;
        tracing::info!(
            version,
            "cluster manifest from the store (accepted at run time)"
        );
    }
    Ok((current, keep_file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_chain;

    fn open_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("keyrack.db"), "c1", "node0").unwrap();
        (dir, store)
    }

    fn verified(m: &SignedManifest) -> VerifiedManifest {
        m.verify_bootstrap().unwrap()
    }

    const FILE: &str = "/etc/keyrack/manifest.toml";

    #[test]
    fn the_node_starts_at_the_newest_version_it_accepted() {
        let chain = test_chain(3);
        let (_dir, store) = open_store();
        // First start: the file is the manifest, to be kept.
        let (m, keep) = newest_accepted(&store, verified(&chain[0]), FILE.as_ref()).unwrap();
        assert_eq!((m.version(), keep.as_ref()), (1, Some(&chain[0])));
        for c in &chain {
            store.put_manifest(c).unwrap();
        }
        // Restarted with the old file: back at version 3, nothing to keep.
        let (m, keep) = newest_accepted(&store, verified(&chain[0]), FILE.as_ref()).unwrap();
        assert_eq!((m.version(), m.hash(), keep), (3, chain[2].hash(), None));
        // A newer file than the store holds is kept.
        let (_dir2, store2) = open_store();
        store2.put_manifest(&chain[0]).unwrap();
        let (m, keep) = newest_accepted(&store2, verified(&chain[2]), FILE.as_ref()).unwrap();
        assert_eq!((m.version(), keep.as_ref()), (3, Some(&chain[2])));
    }

    #[test]
    fn a_store_that_disagrees_with_the_file_stops_the_start() {
        let (chain, other) = (test_chain(2), test_chain(2));
        // The store accepted another version 1 than the file's.
        let (_dir, store) = open_store();
        store.put_manifest(&other[0]).unwrap();
        let err = newest_accepted(&store, verified(&chain[0]), FILE.as_ref()).unwrap_err();
        assert!(
            format!("{err:#}").contains("this node accepted another version 1"),
            "{err:#}"
        );
        // A stored version 2 that is not the file's successor.
        let (_dir, store) = open_store();
        store.put_manifest(&chain[0]).unwrap();
        store.put_manifest(&other[1]).unwrap();
        let err = newest_accepted(&store, verified(&chain[0]), FILE.as_ref()).unwrap_err();
        assert!(
            format!("{err:#}").contains(
                "accepted cluster manifest version 2 does not verify as the successor of version 1"
            ),
            "{err:#}"
        );
    }
}
