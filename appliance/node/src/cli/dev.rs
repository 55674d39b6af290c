//! `keyrack dev`: a whole development cluster on this machine in one command — nats-server
//! with JetStream and n `keyrack node` processes, each sealed by its own SoftHSM token — kept
//! in one state directory, stopped cleanly on Ctrl-C.
//!
//! What it owns: the state directory ([`layout`]) and its first setup ([`setup`]: tokens,
//! node identities, admin and initiator keys, the signed manifest, `client.toml`), and the
//! life of the processes it starts ([`cluster`]). It builds nothing of its own: identities,
//! keys and the manifest come from running this same executable's `init`, `keys` and
//! `manifest` commands, so a dev cluster is made exactly as an operator would make one.
//!
//! What it must never do: run outside its state directory (it wipes only a directory it
//! made), or let a cluster whose prime pools hold the public test-fixture primes pass
//! unnoticed: that is said on every start. `keyrack node` itself never seeds fixtures.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;

/// `println!` that ignores a closed stdout: whoever read keyrack dev's output may be gone
/// (a terminal closed, a pipe's reader killed by the same Ctrl-C), and the processes must
/// still be stopped.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// [`say!`] on stderr.
macro_rules! say_err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod cluster;
mod layout;
mod setup;

use layout::Layout;

/// The script that installs what `keyrack dev` needs.
const INSTALL_DEPS: &str = "softhsm-setup/install-deps.sh";

/// The NATS port `keyrack dev` takes when it is free.
const DEFAULT_NATS_PORT: u16 = 4222;

/// Start a local development cluster: nats-server and n nodes on SoftHSM tokens.
///
/// Everything lives in the state directory; running it again on the same directory brings
/// back the same cluster (same keys, wallets kept). Ctrl-C stops it.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// The state directory (tokens, nodes, keys, manifest, NATS data, logs).
    #[arg(long, default_value = ".state/dev")]
    dir: PathBuf,
    /// How many nodes (2 to 64).
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// The threshold the printed keygen commands use: t of the n nodes sign, n/2 < t <= n
    /// (default: n/2 + 1, so 2 of 3). Each keygen request names its own.
    #[arg(long)]
    threshold: Option<u16>,
    /// The NATS port (default: 4222 if free, else any free port).
    #[arg(long)]
    nats_port: Option<u16>,
    /// Node i's HTTP API listens on 127.0.0.1:(API_PORT + i) (`keyrack tui --node …`).
    #[arg(long, default_value_t = 7400)]
    api_port: u16,
    /// Delete the state directory (its tokens, keys and wallets) and start over.
    #[arg(long)]
    fresh: bool,
    /// Do not seed the nodes' ECDSA prime pools with the public test-fixture primes: the
    /// nodes generate their own safe primes (minutes) before the first ECDSA key.
    #[arg(long)]
    no_fixture_primes: bool,
}

/// The programs and files a dev cluster needs from the system.
#[derive(Debug)]
pub(super) struct Prerequisites {
    nats_server: PathBuf,
    softhsm2_util: PathBuf,
    pkcs11_module: PathBuf,
}

fn in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

impl Prerequisites {
    /// Finds nats-server (PATH, then /usr/sbin), softhsm2-util (PATH) and the SoftHSM module
    /// (`KEYRACK_PKCS11_MODULE`, else Debian's paths), as `softhsm-setup/lib.sh` does; the
    /// error lists everything missing and names the script that installs it.
    fn find() -> anyhow::Result<Self> {
        let mut missing = Vec::new();
        let nats_server = in_path("nats-server").or_else(|| {
            let sbin = PathBuf::from("/usr/sbin/nats-server");
            sbin.is_file().then_some(sbin)
        });
        if nats_server.is_none() {
            missing.push("nats-server (not in PATH nor /usr/sbin/nats-server)".to_owned());
        }
        let softhsm2_util = in_path("softhsm2-util");
        if softhsm2_util.is_none() {
            missing.push("softhsm2-util (not in PATH)".to_owned());
        }
        let pkcs11_module = match std::env::var_os("KEYRACK_PKCS11_MODULE") {
            Some(set) => {
                let module = PathBuf::from(set);
                if !module.is_file() {
                    missing.push(format!(
                        "the SoftHSM module: KEYRACK_PKCS11_MODULE={} is not a file",
                        module.display()
                    ));
                }
                Some(module)
            }
            None => {
                let candidates = [
                    "/usr/lib/softhsm/libsofthsm2.so".to_owned(),
                    format!(
                        "/usr/lib/{}-linux-gnu/softhsm/libsofthsm2.so",
                        std::env::consts::ARCH
                    ),
                ];
                let found = candidates.iter().map(PathBuf::from).find(|p| p.is_file());
                if found.is_none() {
                    missing.push(format!(
                        "the SoftHSM module (none of {}; or set KEYRACK_PKCS11_MODULE)",
                        candidates.join(", ")
                    ));
                }
                found
            }
        };
        match (nats_server, softhsm2_util, pkcs11_module) {
            (Some(nats_server), Some(softhsm2_util), Some(pkcs11_module)) if missing.is_empty() => {
                Ok(Prerequisites {
                    nats_server,
                    softhsm2_util,
                    pkcs11_module,
                })
            }
            _ => bail!(
                "keyrack dev cannot start; missing:\n  - {}\ninstall them with `bash {INSTALL_DEPS}` (Debian 12, as root)",
                missing.join("\n  - ")
            ),
        }
    }
}

/// How to run this executable again, as the user would type it.
fn self_command() -> String {
    match std::env::args().next() {
        Some(argv0) if argv0.contains('/') => argv0,
        _ => "keyrack".to_owned(),
    }
}

/// Picks the NATS port: the one asked for (it must be free), else 4222 if free, else any.
fn nats_port(asked: Option<u16>) -> anyhow::Result<u16> {
    let bind = |port| std::net::TcpListener::bind(("127.0.0.1", port));
    match asked {
        Some(port) => {
            bind(port).with_context(|| format!("--nats-port {port}: the port is not free"))?;
            Ok(port)
        }
        None => match bind(DEFAULT_NATS_PORT) {
            Ok(_) => Ok(DEFAULT_NATS_PORT),
            Err(_) => Ok(bind(0)
                .and_then(|l| l.local_addr())
                .context("no free loopback port for nats-server")?
                .port()),
        },
    }
}

/// Where the cluster is and how to use it, once it answers.
fn print_usage(layout: &Layout, nodes: u16, threshold: u16) {
    let me = self_command();
    let client = format!("{me} client --config {}", layout.client_config().display());
    let dir = layout.dir().display();
    say!();
    say!("Try it ({threshold} of {nodes} nodes sign):");
    say!("  {client} keygen wallet-1 --scheme ecdsa --scheme eddsa --threshold {threshold}");
    say!("  {client} sign wallet-1 --scheme eddsa --message 'hello'");
    say!("  {client} sign wallet-1 --scheme ecdsa --message 'hello' --path m/0/1");
    say!("  {client} status --key wallet-1");
    say!("The console (node0's view; approves as the client's initiator):");
    say!(
        "  {me} tui --node {} --approver-config {}",
        layout.node_dir(0).display(),
        layout.client_config().display()
    );
    say!(
        "  It approves only for keys it trusts: keygen records its own; `{client} trust KEY` \
         records one the nodes agree on."
    );
    say!("Logs: {dir}/logs/ (node*.log, nats.log)");
    say!(
        "Press Ctrl-C to stop. The state stays in {dir}: `{me} dev --dir {dir}` brings the same cluster back, --fresh starts over."
    );
}

pub(super) fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    let n = args.nodes;
    if !(2..=64).contains(&n) {
        bail!("--nodes {n}: a cluster has 2 to 64 nodes");
    }
    let threshold = args.threshold.unwrap_or(n / 2 + 1);
    keyrack_client::request::check_threshold(threshold, usize::from(n))
        .with_context(|| format!("--threshold {threshold}"))?;
    let tools = Prerequisites::find()?;
    let dir =
        std::path::absolute(&args.dir).with_context(|| format!("--dir {}", args.dir.display()))?;
    let layout = Layout::new(&dir);
    // SoftHSM finds its token directory through this variable: this process needs it to
    // seed the prime pools, and every process started from here inherits it.
    std::env::set_var("SOFTHSM2_CONF", layout.softhsm_conf());
    let _claim = layout.claim()?;
    say!("keyrack dev: state in {}", dir.display());
    cluster::stop_leftovers(&layout);
    setup::prepare(&layout, n, args.fresh, &tools)?;
    let port = nats_port(args.nats_port)?;
    let nats_url = format!("nats://127.0.0.1:{port}");
    if args.api_port.checked_add(n - 1).is_none() {
        bail!(
            "--api-port {}: node {} would need a port above 65535",
            args.api_port,
            n - 1
        );
    }
    setup::point_at_nats(&layout, n, &nats_url, args.api_port)?;
    setup::seed_prime_pools(&layout, n, !args.no_fixture_primes)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut stop = cluster::StopSignal::install()?;
        let mut procs = cluster::Processes::default();
        let started = tokio::select! {
            started = cluster::start(&mut procs, &layout, &tools, n, port) => Some(started),
            signal = stop.wait() => {
                say!("\n{signal}: stopping before the cluster was ready");
                None
            }
        };
        let code = match started {
            None => ExitCode::SUCCESS,
            Some(Err(e)) => {
                say_err!("error: {e:#}");
                ExitCode::from(1)
            }
            Some(Ok(())) => {
                say!(
                    "WARNING: the DEVELOPMENT POLICY is active (policies/examples/dev.toml): any \
                     initiator may sign anything and create, move, refresh or DELETE any key, \
                     at once, with no approvals. Never put real funds on this cluster."
                );
                say!(
                    "cluster '{}' is ready: {n} nodes, NATS {nats_url}",
                    setup::CLUSTER_ID
                );
                print_usage(&layout, n, threshold);
                tokio::select! {
                    died = procs.watch() => {
                        say_err!("error: {died}");
                        ExitCode::from(1)
                    }
                    signal = stop.wait() => {
                        say!("\n{signal}: stopping the cluster");
                        ExitCode::SUCCESS
                    }
                }
            }
        };
        procs.stop().await;
        say!(
            "stopped; the state stays in {} (run `{} dev --dir {}` to bring it back)",
            dir.display(),
            self_command(),
            dir.display()
        );
        Ok(code)
    })
}

/// The last `lines` lines of a log file, for an error message.
fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
