//! Making a dev cluster once, and what every start refreshes: SoftHSM tokens, node
//! identities, admin and initiator keys, the signed manifest, the nodes' `[cluster]` sections,
//! `client.toml`, and the fixture seeding of the prime pools.
//!
//! The identities, keys and manifest are made by running this executable's own `init`,
//! `keys generate` and `manifest create|sign`, so a dev cluster is built as an operator
//! would build one.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use keyrack_client::manifest::{SignedManifest, VerifiedManifest};
use keyrack_hsm::KeyPolicy;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use super::layout::{node_id, token_label, write_file, DevState, Layout};
use super::Prerequisites;
use crate::cli::client::ClientConfig;
use crate::config::{ClusterSection, LoadedConfig};
use crate::fsutil::create_private_dir;
use crate::store::Store;

/// The dev cluster's id.
pub(super) const CLUSTER_ID: &str = "dev";
/// The admin who signs the manifest.
const ADMIN: &str = "admin";
/// The initiator who signs requests.
pub(super) const INITIATOR: &str = "alice";
/// The policy administrator (manifest role `policy-admin`) who signs policy bundles.
pub(super) const OFFICER: &str = "officer";
/// The development policy (allows every request), signed into bundle version 1.
const DEV_POLICY: &str = include_str!("../../../../../policies/examples/dev.toml");
/// The bundle file every dev node's config names, relative to the dev directory.
pub(super) const DEV_BUNDLE: &str = "policy-v1.bundle.toml";
/// The client id `keyrack client` uses.
const CLIENT_ID: &str = "cli";

/// Runs this executable with `args`; returns its stdout, or fails with all it printed.
fn run_keyrack<S: AsRef<OsStr>>(args: &[S]) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot find the keyrack executable")?;
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    let out = Command::new(&exe)
        .args(args)
        .env("KEYRACK_LOG", "warn")
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !out.status.success() {
        bail!(
            "`keyrack {}` failed ({}):\n{}{}",
            shown.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A random PIN: 24 hex digits.
fn random_pin() -> Zeroizing<String> {
    let mut raw = Zeroizing::new([0u8; 12]);
    OsRng.fill_bytes(raw.as_mut());
    Zeroizing::new(hex::encode(&raw[..]))
}

/// The labels of the tokens in the dev token directory.
fn token_labels(tools: &Prerequisites) -> anyhow::Result<Vec<String>> {
    let out = Command::new(&tools.softhsm2_util)
        .arg("--show-slots")
        .output()
        .with_context(|| format!("cannot run {}", tools.softhsm2_util.display()))?;
    if !out.status.success() {
        bail!(
            "softhsm2-util --show-slots failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Label:"))
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect())
}

/// Makes the cluster in `layout` unless it is there: reuses a finished one with `n` nodes,
/// starts over (`fresh`, or an unfinished setup), refuses a directory it did not make.
pub(super) fn prepare(
    layout: &Layout,
    n: u16,
    fresh: bool,
    tools: &Prerequisites,
) -> anyhow::Result<()> {
    let dir = layout.dir().display();
    // Layout::claim refused a directory with other files and no dev.toml.
    match layout.read_state()? {
        None => {}
        Some(_) if fresh => {
            say!("--fresh: deleting the cluster in {dir} (its tokens, keys and wallets)");
            layout.wipe()?;
        }
        Some(state) if !state.setup_complete => {
            say!("the setup of {dir} did not finish last time: starting it over");
            layout.wipe()?;
        }
        Some(state) if state.nodes != n => bail!(
            "{dir} holds a {}-node cluster: run with --nodes {}, or add --fresh to replace it (its wallets are lost)",
            state.nodes,
            state.nodes
        ),
        Some(_) => {
            check_reusable(layout, n, tools)?;
            say!("reusing the {n}-node cluster in {dir} (same keys and wallets; --fresh starts over)");
            return Ok(());
        }
    }
    create(layout, n, tools)
}

/// The manifest, verified.
pub(super) fn load_manifest(layout: &Layout) -> anyhow::Result<VerifiedManifest> {
    let path = layout.manifest();
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    SignedManifest::from_toml(&text)
        .and_then(|m| m.verify_bootstrap())
        .with_context(|| format!("{} does not verify", path.display()))
}

fn check_reusable(layout: &Layout, n: u16, tools: &Prerequisites) -> anyhow::Result<()> {
    let fresh_hint = "start over with --fresh";
    let manifest = load_manifest(layout).context(fresh_hint)?;
    if manifest.nodes().len() != usize::from(n) {
        bail!(
            "{} lists {} nodes, not {n}: {fresh_hint}",
            layout.manifest().display(),
            manifest.nodes().len()
        );
    }
    let bundle = layout.dir().join(DEV_BUNDLE);
    if !bundle.exists() {
        bail!(
            "{} is missing (a dev cluster made before policies were enforced): {fresh_hint}",
            bundle.display()
        );
    }
    let labels = token_labels(tools)?;
    for i in 0..n {
        let loaded = LoadedConfig::load(&layout.node_config(i)).context(fresh_hint)?;
        if loaded
            .config
            .cluster
            .as_ref()
            .is_some_and(|c| c.policy_bundle.is_none())
        {
            bail!(
                "{} names no policy bundle (made before policies were enforced): {fresh_hint}",
                layout.node_config(i).display()
            );
        }
        if !labels.contains(&token_label(i)) {
            bail!(
                "SoftHSM token {} is missing from {}: node{i}'s identity can no longer be unsealed; {fresh_hint}",
                token_label(i),
                layout.token_dir().display()
            );
        }
    }
    Ok(())
}

fn create(layout: &Layout, n: u16, tools: &Prerequisites) -> anyhow::Result<()> {
    let dir = layout.dir();
    say!("setting up a {n}-node cluster in {}", dir.display());
    layout.write_state(&DevState {
        nodes: n,
        setup_complete: false,
        fixture_primes: Vec::new(),
    })?;
    for private in [
        layout.token_dir(),
        layout.pins(),
        dir.join("nodes"),
        dir.join("logs"),
    ] {
        create_private_dir(&private)
            .with_context(|| format!("cannot create {}", private.display()))?;
    }
    let conf = format!(
        "# SoftHSM2 configuration of this keyrack dev cluster (SOFTHSM2_CONF).\ndirectories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
        layout.token_dir().display()
    );
    write_file(&layout.softhsm_conf(), conf.as_bytes())?;

    for i in 0..n {
        let id = node_id(i);
        let label = token_label(i);
        let pin_file = layout.pins().join(format!("{id}.pin"));
        create_token(layout, tools, &label, &pin_file)?;
        run_keyrack(&[
            OsStr::new("init"),
            OsStr::new("--dir"),
            layout.node_dir(i).as_os_str(),
            OsStr::new("--node-id"),
            OsStr::new(&id),
            OsStr::new("--backend"),
            OsStr::new("pkcs11"),
            OsStr::new("--pkcs11-module"),
            tools.pkcs11_module.as_os_str(),
            OsStr::new("--token-label"),
            OsStr::new(&label),
            OsStr::new("--pin-file"),
            pin_file.as_os_str(),
        ])?;
        say!(
            "  {id}: identity sealed by SoftHSM token {label} (PIN in {})",
            pin_file.display()
        );
    }

    for who in [ADMIN, INITIATOR, OFFICER] {
        run_keyrack(&[
            OsStr::new("keys"),
            OsStr::new("generate"),
            OsStr::new("--out"),
            dir.join(format!("{who}.key")).as_os_str(),
            OsStr::new("--public-out"),
            dir.join(format!("{who}.pub")).as_os_str(),
        ])?;
    }
    say!(
        "  keys: {ADMIN} (signs the manifest), {INITIATOR} (signs requests), {OFFICER} (signs \
         policy bundles)"
    );

    let manifest = layout.manifest();
    let mut args: Vec<std::ffi::OsString> =
        ["manifest", "create", "--cluster", CLUSTER_ID, "--out"]
            .map(Into::into)
            .to_vec();
    args.push(manifest.clone().into());
    for i in 0..n {
        args.push("--node".into());
        args.push(layout.node_dir(i).into());
    }
    for (flag, who) in [("--initiator", INITIATOR), ("--admin", ADMIN)] {
        args.push(flag.into());
        args.push(format!("{who}={}", dir.join(format!("{who}.pub")).display()).into());
    }
    args.push("--initiator".into());
    args.push(
        format!(
            "{OFFICER}={}:policy-admin",
            dir.join(format!("{OFFICER}.pub")).display()
        )
        .into(),
    );
    args.extend(["--admin-threshold", "1"].map(Into::into));
    run_keyrack(&args)?;
    run_keyrack(&[
        OsStr::new("manifest"),
        OsStr::new("sign"),
        OsStr::new("--manifest"),
        manifest.as_os_str(),
        OsStr::new("--key"),
        dir.join(format!("{ADMIN}.key")).as_os_str(),
        OsStr::new("--admin"),
        OsStr::new(ADMIN),
    ])?;
    load_manifest(layout)?;
    say!("  manifest: cluster '{CLUSTER_ID}', {n} nodes, signed by {ADMIN}");

    let policy = dir.join("policy.toml");
    write_file(&policy, DEV_POLICY.as_bytes())?;
    run_keyrack(&[
        OsStr::new("policy"),
        OsStr::new("sign"),
        OsStr::new("--policy"),
        policy.as_os_str(),
        OsStr::new("--cluster"),
        OsStr::new(CLUSTER_ID),
        OsStr::new("--version"),
        OsStr::new("1"),
        OsStr::new("--threshold"),
        OsStr::new("1"),
        OsStr::new("--key"),
        dir.join(format!("{OFFICER}.key")).as_os_str(),
        OsStr::new("--admin"),
        OsStr::new(OFFICER),
        OsStr::new("--out"),
        dir.join(DEV_BUNDLE).as_os_str(),
    ])?;
    say!(
        "  policy: {} (ALLOWS EVERY REQUEST: development only), bundle version 1 signed by \
         {OFFICER}",
        policy.display()
    );

    layout.write_state(&DevState {
        nodes: n,
        setup_complete: true,
        fixture_primes: Vec::new(),
    })
}

/// Creates a token with random user and SO PINs, written to `pin_file` and `*.so-pin`.
fn create_token(
    layout: &Layout,
    tools: &Prerequisites,
    label: &str,
    pin_file: &Path,
) -> anyhow::Result<()> {
    let pin = random_pin();
    let so_pin = random_pin();
    write_file(pin_file, format!("{}\n", *pin).as_bytes())?;
    write_file(
        &pin_file.with_extension("so-pin"),
        format!("{}\n", *so_pin).as_bytes(),
    )?;
    // softhsm2-util takes PINs only as arguments; the token is a throw-away dev token.
    let out = Command::new(&tools.softhsm2_util)
        .args(["--init-token", "--free", "--label", label, "--pin"])
        .arg(pin.as_str())
        .arg("--so-pin")
        .arg(so_pin.as_str())
        .env("SOFTHSM2_CONF", layout.softhsm_conf())
        .output()
        .with_context(|| format!("cannot run {}", tools.softhsm2_util.display()))?;
    if !out.status.success() {
        bail!(
            "softhsm2-util --init-token --label {label} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Points every node's `[cluster]` section and `client.toml` at `nats_url` (the port may
/// change between runs), and node i's HTTP API at 127.0.0.1:(`api_port` + i). Written on
/// every start.
pub(super) fn point_at_nats(
    layout: &Layout,
    n: u16,
    nats_url: &str,
    api_port: u16,
) -> anyhow::Result<()> {
    for i in 0..n {
        let path = layout.node_config(i);
        let mut loaded = LoadedConfig::load(&path)?;
        loaded.config.api.listen = format!("127.0.0.1:{}", api_port + i);
        let token_file = loaded.resolve(&loaded.config.api.token_file);
        if !token_file.exists() {
            // A dev state made before nodes had an HTTP API.
            crate::fsutil::write_new_file(&token_file, crate::api::new_token().as_bytes())
                .with_context(|| format!("cannot write {}", token_file.display()))?;
        }
        let cluster = match loaded.config.cluster.take() {
            Some(mut cluster) => {
                cluster.nats = vec![nats_url.to_owned()];
                cluster
            }
            // The documented defaults, from the config's own parser.
            None => toml::from_str::<ClusterSection>(&format!(
                "manifest = \"../../manifest.toml\"\nnats = [\"{nats_url}\"]\nprime_pool = 0\n\
                 policy_bundle = \"../../{DEV_BUNDLE}\"\nbitcoin_network = \"regtest\"\n"
            ))
            .context("the dev [cluster] section")?,
        };
        loaded.config.cluster = Some(cluster);
        let text = format!(
            "# keyrack node configuration, written by `keyrack init`; [cluster] by `keyrack dev`.\n{}",
            toml::to_string(&loaded.config).context("serialise config")?
        );
        write_file(&path, text.as_bytes())?;
    }
    let client = ClientConfig {
        cluster: CLUSTER_ID.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        nats: vec![nats_url.to_owned()],
        manifest: "manifest.toml".into(),
        initiator: INITIATOR.to_owned(),
        initiator_key: format!("{INITIATOR}.key").into(),
        trusted_keys: None,
    };
    let text = format!(
        "# `keyrack client --config {}`: the dev cluster; written by `keyrack dev` on each start.\n{}",
        layout.client_config().display(),
        toml::to_string(&client).context("serialise client.toml")?
    );
    write_file(&layout.client_config(), text.as_bytes())
}

/// Before a node's first start (its store does not exist yet), seeds its ECDSA prime pool
/// with one pair of the public test-fixture primes, unless `enabled` is false. Says so
/// loudly, then and on every later start.
pub(super) fn seed_prime_pools(layout: &Layout, n: u16, enabled: bool) -> anyhow::Result<()> {
    let mut state = layout
        .read_state()?
        .context("dev.toml is missing after setup")?;
    let mut seeded_now = false;
    for i in 0..n {
        let loaded = LoadedConfig::load(&layout.node_config(i))?;
        let cluster = loaded
            .config
            .cluster
            .as_ref()
            .context("the node config has no [cluster] section")?;
        let store_path = loaded.resolve(&cluster.store);
        if !enabled || store_path.exists() {
            continue;
        }
        let id = node_id(i);
        if usize::from(i) >= keyrack_ecdsa_cggmp21::fixtures::COUNT {
            say!(
                "note: there are {} fixture prime pairs: {id} generates its own safe primes (minutes) at its first ECDSA committee setup",
                keyrack_ecdsa_cggmp21::fixtures::COUNT
            );
            continue;
        }
        say!(
            "WARNING: dev mode seeds {id}'s prime pool with PUBLIC TEST FIXTURE primes; never use this cluster for real keys"
        );
        let sealer = keyrack_hsm::open(&loaded.config.hsm, &loaded.base_dir, KeyPolicy::MustExist)?;
        let store = Store::open(&store_path, CLUSTER_ID, &id)?;
        crate::ecdsa::seed_fixture_primes(&store, sealer.as_ref(), usize::from(i))
            .with_context(|| format!("cannot seed {id}'s prime pool"))?;
        state.fixture_primes.push(id);
        seeded_now = true;
    }
    if seeded_now {
        layout.write_state(&state)?;
    } else if !state.fixture_primes.is_empty() {
        say!(
            "WARNING: the prime pools of {} were seeded with PUBLIC TEST FIXTURE primes; never use this cluster for real keys",
            state.fixture_primes.join(", ")
        );
    }
    Ok(())
}
