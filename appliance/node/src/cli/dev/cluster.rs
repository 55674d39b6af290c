//! The processes of a dev cluster: nats-server and one `keyrack node` per node, started in
//! their own process group (a Ctrl-C in the terminal reaches only `keyrack dev`, which then
//! stops them in order: nodes first, then nats-server), watched, and stopped with SIGTERM,
//! a deadline, then SIGKILL.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keyrack_client::request::InitiatorKey;
use keyrack_client::sdk::{Client, SdkError};
use keyrack_client::subjects;
use tokio::signal::unix::{signal, Signal, SignalKind};

use super::layout::{node_id, Layout};
use super::setup::{self, CLUSTER_ID, INITIATOR};
use super::{tail, Prerequisites};

/// How long nats-server has to listen.
const NATS_START: Duration = Duration::from_secs(15);
/// How long a node has to unseal its identity and connect.
const NODE_START: Duration = Duration::from_secs(60);
/// How long the cluster has to answer once its nodes run.
const READY: Duration = Duration::from_secs(60);
/// How long nodes, then nats-server, have to exit after SIGTERM.
const STOP_NODES: Duration = Duration::from_secs(15);
const STOP_NATS: Duration = Duration::from_secs(5);
/// How often children are checked and their logs read.
const POLL: Duration = Duration::from_millis(200);

/// Log lines of these targets are shown on the terminal: the long ECDSA steps (safe
/// primes, committee setup) the user is otherwise left waiting on.
const PROGRESS_TARGETS: [&str; 1] = ["keyrack_node::ecdsa:"];

/// SIGINT (Ctrl-C) or SIGTERM.
pub(super) struct StopSignal {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignal {
    pub(super) fn install() -> std::io::Result<Self> {
        Ok(StopSignal {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for either; names the one that came.
    pub(super) async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT (Ctrl-C)",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// A process keyrack dev started, with its log.
struct Started {
    name: String,
    child: Child,
    log: PathBuf,
    /// How far the log has been read (for the ready line and progress).
    read_to: u64,
    /// Its exit, once seen.
    exited: Option<std::process::ExitStatus>,
}

impl Started {
    /// Starts `command` in its own process group, stdout and stderr appended to `log`.
    fn spawn(name: &str, mut command: Command, log: PathBuf) -> anyhow::Result<Self> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        writeln!(
            file,
            "----- keyrack dev starts {name} (unix time {}) -----",
            keyrack_client::now_ms() / 1000
        )?;
        let read_to = file.metadata()?.len();
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Started {
            name: name.to_owned(),
            child,
            log,
            read_to,
            exited: None,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs (reaps it if not).
    fn running(&mut self) -> bool {
        if self.exited.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
            }
        }
        self.exited.is_none()
    }

    /// What to say when it exited while it should run.
    fn died(&self) -> String {
        let status = self
            .exited
            .map(|s| s.to_string())
            .unwrap_or_else(|| "still running".into());
        format!(
            "{} (pid {}) exited unexpectedly ({status}); the last lines of {}:\n{}",
            self.name,
            self.pid(),
            self.log.display(),
            tail(&self.log, 20)
        )
    }

    /// The complete lines its log gained since the last call.
    fn new_lines(&mut self) -> Vec<String> {
        let mut bytes = Vec::new();
        let read = File::open(&self.log).and_then(|mut f| {
            f.seek(SeekFrom::Start(self.read_to))?;
            f.read_to_end(&mut bytes)
        });
        if read.is_err() {
            return Vec::new();
        }
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        self.read_to += complete as u64;
        String::from_utf8_lossy(&bytes[..complete])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Sends `signal` (a `kill -s` name) while it runs; kills it if that fails.
    fn signal(&mut self, signal: &str) {
        if self.running() && !send_signal(self.pid(), signal) {
            let _ = self.child.kill();
        }
    }
}

/// Sends `signal` (a `kill -s` name: TERM, KILL) to `pid`; returns whether it was sent. The
/// standard library sends nothing but SIGKILL and this crate has no unsafe code, so the
/// shell's built-in `kill` does it (`sh` is on every system; procps' `kill` may not be).
fn send_signal(pid: u32, signal: &str) -> bool {
    Command::new("sh")
        .args([
            "-c",
            "kill -s \"$1\" \"$2\"",
            "sh",
            signal,
            &pid.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops the processes an earlier keyrack dev on this directory left running (it was
/// killed, so it could not stop them): any process whose arguments name one of the
/// directory's node configs or its NATS data. Their stores and tokens are this run's.
pub(super) fn stop_leftovers(layout: &Layout) {
    let nodes = layout.dir().join("nodes");
    let nats = layout.nats_dir();
    let is_leftover = |args: &[&[u8]]| {
        args.iter().any(|a| {
            let a = Path::new(std::ffi::OsStr::from_bytes(a));
            a == nats || (a.starts_with(&nodes) && a.ends_with(crate::config::CONFIG_FILE))
        })
    };
    let Ok(procs) = fs::read_dir("/proc") else {
        return;
    };
    let leftovers: Vec<(u32, String)> = procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter_map(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            is_leftover(&args).then(|| (pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")))
        })
        .collect();
    for (pid, cmdline) in &leftovers {
        say!(
            "stopping pid {pid}, left running by an earlier keyrack dev: {}",
            cmdline.trim()
        );
        send_signal(*pid, "TERM");
    }
    let until = Instant::now() + STOP_NODES;
    while leftovers.iter().any(|(p, _)| is_running(*p)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    for (pid, _) in leftovers.iter().filter(|(p, _)| is_running(*p)) {
        send_signal(*pid, "KILL");
    }
}

/// Whether `pid` is a process that has not exited (a zombie has).
fn is_running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// The running processes; dropping it kills what still runs (the orderly way is
/// [`Processes::stop`]).
#[derive(Default)]
pub(super) struct Processes {
    nats: Option<Started>,
    nodes: Vec<Started>,
}

impl Processes {
    fn all(&mut self) -> impl Iterator<Item = &mut Started> {
        self.nodes.iter_mut().chain(self.nats.as_mut())
    }

    /// The first process that is no longer running, as a message.
    fn check_alive(&mut self) -> Option<String> {
        self.all().find_map(|p| (!p.running()).then(|| p.died()))
    }

    /// Reads what the nodes logged since the last call: shows the progress lines (see
    /// [`PROGRESS_TARGETS`]) and returns every line with its node's index.
    fn read_logs(&mut self) -> Vec<(usize, String)> {
        let mut all = Vec::new();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            for line in node.new_lines() {
                if let Some(message) = PROGRESS_TARGETS
                    .iter()
                    .find_map(|t| line.split_once(t).map(|(_, m)| m.trim()))
                {
                    say!("  [{}] {message}", node.name);
                }
                all.push((i, line));
            }
        }
        all
    }

    /// Returns when a process exits, with what to say about it; meanwhile shows progress.
    pub(super) async fn watch(&mut self) -> String {
        loop {
            self.read_logs();
            if let Some(died) = self.check_alive() {
                return died;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the nodes (SIGTERM, then SIGKILL after a deadline), then nats-server.
    pub(super) async fn stop(&mut self) {
        for node in &mut self.nodes {
            node.signal("TERM");
        }
        stop_group(&mut self.nodes, STOP_NODES).await;
        if let Some(nats) = &mut self.nats {
            nats.signal("TERM");
            stop_group(std::slice::from_mut(nats), STOP_NATS).await;
        }
    }
}

/// Waits until every process in `group` exited, at most `deadline`, then kills the rest.
async fn stop_group(group: &mut [Started], deadline: Duration) {
    let until = Instant::now() + deadline;
    while group.iter_mut().any(Started::running) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in group {
        if p.running() {
            let _ = p.child.kill();
            p.exited = p.child.wait().ok();
            say!(
                "{} did not stop within {} s: killed",
                p.name,
                deadline.as_secs()
            );
        } else {
            say!("{} stopped", p.name);
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for p in self.all() {
            if p.running() {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
    }
}

/// Prints `what… ` now; the caller ends the line.
fn progress(what: &str) {
    let mut out = std::io::stdout();
    let _ = write!(out, "{what}… ").and_then(|()| out.flush());
}

/// Polls `ready` until it says yes, a process dies, or `deadline` passes.
async fn wait_until(
    procs: &mut Processes,
    deadline: Duration,
    what: &str,
    mut ready: impl FnMut(&mut Processes) -> bool,
) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    loop {
        if ready(procs) {
            return Ok(());
        }
        if let Some(died) = procs.check_alive() {
            say!("failed");
            bail!("{died}");
        }
        if Instant::now() >= until {
            say!("failed");
            bail!("{what} within {} s", deadline.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Starts nats-server and the nodes and waits until the cluster answers.
pub(super) async fn start(
    procs: &mut Processes,
    layout: &Layout,
    tools: &Prerequisites,
    n: u16,
    port: u16,
) -> anyhow::Result<()> {
    let logs = layout.log("nats");
    if let Some(dir) = logs.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    progress(&format!("starting nats-server on 127.0.0.1:{port}"));
    let mut nats = Command::new(&tools.nats_server);
    nats.args(["-js", "-sd"]).arg(layout.nats_dir()).args([
        "-p",
        &port.to_string(),
        "-a",
        "127.0.0.1",
    ]);
    procs.nats = Some(Started::spawn("nats-server", nats, layout.log("nats"))?);
    wait_until(procs, NATS_START, "nats-server did not listen", |_| {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await?;
    say!("ok (pid {})", procs.nats.as_ref().map_or(0, Started::pid));

    let exe = std::env::current_exe().context("cannot find the keyrack executable")?;
    // One after another: the nodes share one SoftHSM token directory, and SoftHSM's file
    // store is not safe against processes opening its tokens at once (seen once: a node
    // aborted in C_Initialize, SlotManager::insertToken assertion). Each node is past its
    // HSM (identity unsealed) when it says it runs.
    progress(&format!("starting {n} nodes"));
    say!();
    for i in 0..n {
        let id = node_id(i);
        let mut node = Command::new(&exe);
        node.arg("node")
            .arg("--config")
            .arg(layout.node_config(i))
            .env("NO_COLOR", "1");
        if std::env::var_os("KEYRACK_LOG").is_none() {
            node.env("KEYRACK_LOG", "info");
        }
        procs
            .nodes
            .push(Started::spawn(&id, node, layout.log(&id))?);
        // What `keyrack node` prints once it has unsealed its identity and connected.
        let running = format!("node {id} running in cluster");
        let index = usize::from(i);
        wait_until(procs, NODE_START, &format!("{id} did not start"), |p| {
            p.read_logs()
                .iter()
                .any(|(j, line)| *j == index && line.contains(&running))
        })
        .await?;
        let node = &procs.nodes[index];
        say!("  {} up (pid {})", node.name, node.pid());
    }

    progress("waiting for the cluster to answer");
    let url = format!("nats://127.0.0.1:{port}");
    let until = Instant::now() + READY;
    while !answers(layout, &url, n).await? {
        procs.read_logs();
        if let Some(died) = procs.check_alive() {
            say!("failed");
            bail!("{died}");
        }
        if Instant::now() >= until {
            say!("failed");
            bail!(
                "the nodes did not all take requests within {} s (see {})",
                READY.as_secs(),
                layout.dir().join("logs").display()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    say!("ok");
    Ok(())
}

/// Whether the cluster takes requests: a client of `client.toml`'s initiator connects (the
/// streams exist, the manifest and key agree) and every node is pulling from its consumer.
async fn answers(layout: &Layout, url: &str, n: u16) -> anyhow::Result<bool> {
    let manifest = setup::load_manifest(layout)?;
    let key_file = layout.initiator_key();
    let initiator = InitiatorKey::load(INITIATOR, &key_file)
        .with_context(|| format!("cannot use {}", key_file.display()))?;
    match Client::connect(&[url], CLUSTER_ID, "dev-check", initiator, manifest).await {
        Ok(_) => {}
        Err(SdkError::StreamsMissing { .. } | SdkError::Transport { .. }) => return Ok(false),
        Err(e) => bail!("the dev client configuration does not work: {e}"),
    }
    let Ok(nats) = async_nats::connect(url).await else {
        return Ok(false);
    };
    let js = async_nats::jetstream::new(nats);
    let Ok(stream) = js.get_stream(subjects::request_stream(CLUSTER_ID)?).await else {
        return Ok(false);
    };
    for i in 0..n {
        match stream
            .consumer_info(subjects::node_consumer(&node_id(i))?)
            .await
        {
            Ok(info) if info.num_waiting > 0 => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}
