//! A real cluster for process-level tests: `n` `keyrack node` processes on their own SoftHSM
//! tokens (`keyrack-node0`, `keyrack-node1`, …, made by `softhsm-setup/softhsm-init.sh`; the
//! setup makes node0 to node3: a test with more nodes needs its tokens added to the token
//! lists of `softhsm-setup/test.sh` and `keyrack_tests::SETUP_HINT`), set up through the CLI
//! as an operator would (`keyrack init`, `keyrack keys generate`, `keyrack manifest create|sign`, a
//! `[cluster]` section), on a nats-server of their own.
//!
//! [`Cluster::start`] (or [`Cluster::builder`] for timeouts, extra config lines and a hook on
//! each node's files before the first start) returns once every node serves: it reads each
//! node's log for the daemon's `node running` line, logged once its streams and its request
//! consumer exist, and its `following the cluster's manifest stream` line. Nodes can then be stopped ([`Cluster::stop_node`]: SIGTERM, and a clean
//! exit is asserted), killed ([`Cluster::kill_node`]: SIGKILL) and started again
//! ([`Cluster::start_node`], [`Cluster::restart_all`]); [`Cluster::client`] connects the SDK
//! as the manifest's initiator; [`Cluster::results`] reads every result a client id received,
//! each checked against the manifest, for tests that count what the SDK does not show;
//! [`Cluster::key_states`] reads a stopped node's store.
//!
//! Membership changes: [`Cluster::add_node`] makes a node (not started, in no manifest yet),
//! [`Cluster::next_manifest`] writes and signs the successor listing the nodes given,
//! [`Cluster::publish_manifest`] offers it to the nodes (`keyrack manifest publish`) and
//! returns their verdicts, [`Cluster::set_manifest`] makes it the cluster's own (what the
//! client verifies against, and the file nodes added later start with), and
//! [`Cluster::wait_exit`] waits for a node that stops by itself (removed).
//!
//! Each node's stderr goes to `node.log` in its directory (all its runs, appended). When a test
//! panics, the cluster prints the end of every node's log. `KEYRACK_NODE_LOG` adds tracing
//! directives to the nodes' filter (e.g. `keyrack_node=debug`).
//!
//! The process-control methods block while they wait (for a start, for an exit): call them
//! from a multi-thread runtime (`#[tokio::test(flavor = "multi_thread")]`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use keyrack_client::manifest::{SignedManifest, VerifiedManifest};
use keyrack_client::request::InitiatorKey;
use keyrack_client::result::{ResultBody, SignedResult, Status};
use keyrack_client::sdk::{Client, SdkError};
use keyrack_client::subjects;
use keyrack_tests::NatsServer;

use super::{keyrack, stderr, stdout, KEYRACK};

/// The cluster id.
pub const CLUSTER: &str = "c1";
/// The initiator listed in the manifest.
pub const INITIATOR: &str = "alice";
/// The policy administrator listed in the manifest (role `policy-admin`): it signs the
/// cluster's policy bundles.
pub const OFFICER: &str = "officer";

/// How long a node may take to start serving, or to exit after SIGTERM.
const PROCESS_DEADLINE: Duration = Duration::from_secs(30);
/// How long [`Results::until_ok`] waits.
const WAIT_RESULTS: Duration = Duration::from_secs(30);
/// The daemon's log lines once its streams and request consumer exist, and once it follows
/// the manifest stream (a manifest published after that is a new offer to it).
const READY_LINES: [&str; 2] = ["node running", "following the cluster's manifest stream"];
/// What the nodes log unless told more: warnings, the daemon's info lines (start, intake
/// refusals) and the envelopes sessions and the control listener drop.
const BASE_LOG_FILTER: &str =
    "warn,keyrack_node::daemon=info,keyrack_node::cli::node=info,keyrack_node::ecdsa=info,keyrack_node::session=debug,\
     keyrack_node::daemon::control=debug";

/// The files of one node.
#[derive(Clone, Debug)]
pub struct NodeFiles {
    /// Position in the cluster (0-based).
    pub index: usize,
    /// Node id: `node<index>`.
    pub id: String,
    /// Its SoftHSM token: `keyrack-node<index>`.
    pub token: String,
    /// The node directory made by `keyrack init`.
    pub dir: PathBuf,
    /// Its `keyrack.toml`.
    pub config: PathBuf,
    /// Its SQLite store, as its config says (by default `keyrack.db` in the node directory).
    pub store: PathBuf,
    /// Its stderr, all runs.
    pub log: PathBuf,
}

impl NodeFiles {
    /// The node's config, as the node reads it.
    pub fn load_config(&self) -> keyrack_node::config::LoadedConfig {
        keyrack_node::config::LoadedConfig::load(&self.config).unwrap()
    }

    /// The node's HSM backend, opened as the node opens it (its key must exist), e.g. to seal
    /// what a [`Builder::before_start`] hook puts in the store. Only while the node does not
    /// run: one process per SoftHSM token.
    pub fn sealer(&self) -> Box<dyn keyrack_hsm::Sealer> {
        let loaded = self.load_config();
        keyrack_hsm::open(
            &loaded.config.hsm,
            &loaded.base_dir,
            keyrack_hsm::KeyPolicy::MustExist,
        )
        .unwrap()
    }

    /// The node's store, opened (created if new) as the node opens it. Only while the node
    /// does not run.
    pub fn open_store(&self) -> keyrack_node::store::Store {
        keyrack_node::store::Store::open(&self.store, CLUSTER, &self.id).unwrap()
    }
}

type Hook = Box<dyn FnMut(&NodeFiles)>;

/// How to make a [`Cluster`].
pub struct Builder {
    nodes: usize,
    leader_timeout_ms: u64,
    session_timeout_ms: u64,
    lines: Vec<String>,
    node_lines: Vec<(usize, String)>,
    hooks: Vec<Hook>,
    policy: Option<PathBuf>,
    initiators: Vec<(String, String)>,
}

impl Builder {
    /// The policy every node starts with (a policy TOML file, signed into bundle version 1
    /// by [`OFFICER`] and named in every node's config). Default: policies/examples/dev.toml,
    /// which allows everything.
    pub fn policy(mut self, path: &Path) -> Self {
        self.policy = Some(path.to_owned());
        self
    }

    /// One more initiator in the manifest, with `roles` (comma-separated, may be empty); its
    /// key file is [`Cluster::key_path`]`(id)`.
    pub fn initiator(mut self, id: &str, roles: &str) -> Self {
        self.initiators.push((id.to_owned(), roles.to_owned()));
        self
    }

    /// `[cluster] leader_timeout_ms` of every node (default 1000).
    pub fn leader_timeout_ms(mut self, ms: u64) -> Self {
        self.leader_timeout_ms = ms;
        self
    }

    /// `[cluster] session_timeout_ms` of every node (default 5000).
    pub fn session_timeout_ms(mut self, ms: u64) -> Self {
        self.session_timeout_ms = ms;
        self
    }

    /// A line added to every node's `[cluster]` section, e.g. `max_in_flight = 4`.
    pub fn cluster_line(mut self, line: &str) -> Self {
        self.lines.push(line.to_owned());
        self
    }

    /// A line added to node `index`'s `[cluster]` section only.
    pub fn node_cluster_line(mut self, index: usize, line: &str) -> Self {
        self.node_lines.push((index, line.to_owned()));
        self
    }

    /// Runs `hook` on each node's files once they are complete (identity, config with its
    /// `[cluster]` section, signed manifest) and before the node first starts: e.g. to seed
    /// its store. Hooks run in the order given, node by node.
    pub fn before_start(mut self, hook: impl FnMut(&NodeFiles) + 'static) -> Self {
        self.hooks.push(Box::new(hook));
        self
    }

    /// Sets the cluster up and starts every node; returns once all serve.
    pub fn start(mut self) -> Cluster {
        assert!(self.nodes >= 2, "a cluster has at least two nodes");
        let nats = NatsServer::start();
        let work = tempfile::tempdir().unwrap();
        let w = |name: &str| work.path().join(name);
        let mut nodes = vec![];
        for index in 0..self.nodes {
            nodes.push(init_node(work.path(), index));
        }
        let key = |name: &str| {
            ok(keyrack(&[
                "keys",
                "generate",
                "--out",
                w(&format!("{name}.key")).to_str().unwrap(),
                "--public-out",
                w(&format!("{name}.pub")).to_str().unwrap(),
            ]))
        };
        key("admin");
        key(INITIATOR);
        key(OFFICER);
        for (id, _) in &self.initiators {
            key(id);
        }
        let manifest_path = w("manifest.toml");
        let mut create: Vec<String> = [
            "manifest",
            "create",
            "--cluster",
            CLUSTER,
            "--out",
            manifest_path.to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec();
        for node in &nodes {
            create.extend(["--node".to_owned(), node.dir.to_str().unwrap().to_owned()]);
        }
        for (id, roles) in &self.initiators {
            let roles = if roles.is_empty() {
                String::new()
            } else {
                format!(":{roles}")
            };
            create.extend([
                "--initiator".to_owned(),
                format!("{id}={}{roles}", w(&format!("{id}.pub")).display()),
            ]);
        }
        create.extend([
            "--initiator".to_owned(),
            format!(
                "{OFFICER}={}:policy-admin",
                w(&format!("{OFFICER}.pub")).display()
            ),
            "--initiator".to_owned(),
            format!("{INITIATOR}={}", w(&format!("{INITIATOR}.pub")).display()),
            "--admin".to_owned(),
            format!("admin={}", w("admin.pub").display()),
            "--admin-threshold".to_owned(),
            "1".to_owned(),
        ]);
        ok(keyrack(
            &create.iter().map(String::as_str).collect::<Vec<_>>(),
        ));
        ok(keyrack(&[
            "manifest",
            "sign",
            "--manifest",
            manifest_path.to_str().unwrap(),
            "--key",
            w("admin.key").to_str().unwrap(),
            "--admin",
            "admin",
        ]));
        // Policy bundle version 1, signed by every policy admin (the officer and any
        // initiator added with the role), a majority threshold, named in every node's config.
        let policy = self.policy.clone().unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/examples/dev.toml")
        });
        let mut admins = vec![OFFICER.to_owned()];
        admins.extend(
            self.initiators
                .iter()
                .filter(|(_, roles)| roles.split(',').any(|r| r == "policy-admin"))
                .map(|(id, _)| id.clone()),
        );
        let bundle_path = w("policy-v1.bundle.toml");
        let threshold = (admins.len() / 2 + 1).to_string();
        for (i, admin) in admins.iter().enumerate() {
            let key = w(&format!("{admin}.key"));
            let mut args = vec![
                "policy",
                "sign",
                "--key",
                key.to_str().unwrap(),
                "--admin",
                admin,
            ];
            if i == 0 {
                args.extend([
                    "--policy",
                    policy.to_str().unwrap(),
                    "--cluster",
                    CLUSTER,
                    "--version",
                    "1",
                    "--threshold",
                    &threshold,
                    "--out",
                    bundle_path.to_str().unwrap(),
                ]);
            } else {
                args.extend(["--bundle", bundle_path.to_str().unwrap()]);
            }
            ok(keyrack(&args));
        }
        self.lines.push(format!(
            "policy_bundle = {:?}",
            bundle_path.to_str().unwrap()
        ));
        self.lines.push("bitcoin_network = \"regtest\"".to_owned());
        let config = ConfigLines {
            leader_timeout_ms: self.leader_timeout_ms,
            session_timeout_ms: self.session_timeout_ms,
            lines: std::mem::take(&mut self.lines),
            node_lines: std::mem::take(&mut self.node_lines),
        };
        for node in &mut nodes {
            config.write(node, &manifest_path, &nats.url);
        }
        for node in &nodes {
            for hook in &mut self.hooks {
                hook(node);
            }
        }
        let manifest = SignedManifest::from_toml(&std::fs::read_to_string(&manifest_path).unwrap())
            .unwrap()
            .verify_bootstrap()
            .unwrap();
        let mut cluster = Cluster {
            procs: nodes.iter().map(|_| None).collect(),
            initiator_key: w(&format!("{INITIATOR}.key")),
            admin_key: w("admin.key"),
            policy_bundle: bundle_path,
            manifest_path,
            manifest,
            config,
            nodes,
            nats,
            _work: work,
        };
        cluster.start_all();
        cluster
    }
}

/// A running node process: its child and where its log started.
struct Running {
    child: Child,
    log_from: u64,
}

/// A cluster of `keyrack node` processes (see the module docs). Dropping it kills them all.
pub struct Cluster {
    nodes: Vec<NodeFiles>,
    procs: Vec<Option<Running>>,
    manifest_path: PathBuf,
    manifest: VerifiedManifest,
    initiator_key: PathBuf,
    admin_key: PathBuf,
    policy_bundle: PathBuf,
    config: ConfigLines,
    // Dropped after the fields above, and the nodes are killed in Drop first.
    nats: NatsServer,
    _work: tempfile::TempDir,
}

impl Cluster {
    /// A builder for `nodes` nodes (leader timeout 1 s, session timeout 5 s).
    pub fn builder(nodes: usize) -> Builder {
        Builder {
            nodes,
            leader_timeout_ms: 1_000,
            session_timeout_ms: 5_000,
            lines: vec![],
            node_lines: vec![],
            hooks: vec![],
            policy: None,
            initiators: vec![],
        }
    }

    /// `nodes` nodes with the builder's defaults, all started.
    pub fn start(nodes: usize) -> Cluster {
        Cluster::builder(nodes).start()
    }

    /// The files of node `i`.
    /// Node `i`'s HTTP API: its base URL (the address the running process logged; its
    /// config asks for any free port) and its bearer token (the file `keyrack init` wrote).
    pub fn api(&self, i: usize) -> (String, zeroize::Zeroizing<String>) {
        let running = self.procs[i].as_ref().expect("the node runs");
        let log = self.log_since(i, running.log_from);
        let addr = log
            .lines()
            .rev()
            .filter(|l| l.contains("HTTP API listening"))
            .filter_map(|l| l.split("addr=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .next()
            .unwrap_or_else(|| panic!("node{i} logged no HTTP API address:\n{log}"))
            .to_owned();
        let token = std::fs::read_to_string(self.nodes[i].dir.join("api-token"))
            .expect("the node's api-token file");
        (
            format!("http://{addr}"),
            zeroize::Zeroizing::new(token.trim().to_owned()),
        )
    }

    pub fn node(&self, i: usize) -> &NodeFiles {
        &self.nodes[i]
    }

    /// Every node's files, in node order.
    pub fn nodes(&self) -> &[NodeFiles] {
        &self.nodes
    }

    /// The node ids, in node order.
    pub fn node_ids(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.id.clone()).collect()
    }

    /// The signed manifest file.
    pub fn manifest_path(&self) -> &Path {
        &self.manifest_path
    }

    /// The manifest, verified.
    pub fn manifest(&self) -> &VerifiedManifest {
        &self.manifest
    }

    /// The initiator's key file.
    pub fn initiator_key_path(&self) -> &Path {
        &self.initiator_key
    }

    /// The key file of the manifest initiator `id` ([`INITIATOR`], [`OFFICER`], or one added
    /// with [`Builder::initiator`]).
    pub fn key_path(&self, id: &str) -> PathBuf {
        self.initiator_key.with_file_name(format!("{id}.key"))
    }

    /// The bundle file every node's config names (version 1 of the policy).
    pub fn policy_bundle_path(&self) -> &Path {
        &self.policy_bundle
    }

    /// The SDK, connected as the manifest initiator `id` with client id `client_id`.
    pub async fn client_as(&self, id: &str, client_id: &str) -> Client {
        let deadline = Instant::now() + PROCESS_DEADLINE;
        loop {
            match Client::connect(
                std::slice::from_ref(&self.nats.url),
                CLUSTER,
                client_id,
                InitiatorKey::load(id, &self.key_path(id)).unwrap(),
                self.manifest.clone(),
            )
            .await
            {
                Ok(c) => return c,
                Err(SdkError::StreamsMissing { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("connect the SDK as {id}: {e}"),
            }
        }
    }

    /// The initiator's key, as listed in the manifest.
    pub fn initiator(&self) -> InitiatorKey {
        InitiatorKey::load(INITIATOR, &self.initiator_key).unwrap()
    }

    /// The NATS URL the nodes use.
    pub fn nats_url(&self) -> &str {
        &self.nats.url
    }

    /// A plain NATS connection (for publishing crafted messages, or listening in).
    pub async fn nats(&self) -> async_nats::Client {
        async_nats::connect(&self.nats.url).await.unwrap()
    }

    /// The SDK, connected as the initiator with client id `client_id`.
    pub async fn client(&self, client_id: &str) -> Client {
        self.client_as(INITIATOR, client_id).await
    }

    /// Every result published for `client_id`, from the first, each verified under the
    /// manifest. Create it shortly before reading: a reader left unpolled through a long
    /// pause (an ECDSA committee setup, ~40 s) was seen to deliver nothing afterwards (the
    /// ordered consumer's idle handling; not investigated further).
    pub async fn results(&self, client_id: &str) -> Results {
        let js = async_nats::jetstream::new(self.nats().await);
        let stream = js
            .get_stream(subjects::result_stream(CLUSTER).unwrap())
            .await
            .expect("the result stream (the nodes create it)");
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                filter_subject: subjects::result_filter(CLUSTER, client_id).unwrap(),
                deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut messages = consumer.messages().await.unwrap();
        // Read all the time, not only while a test waits: an ordered consumer left unpolled
        // for minutes (a test running a long keygen in between) misses its heartbeats and is
        // recreated when next polled, which delays results by up to a minute or fails.
        let (sender, received) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            while let Some(next) = messages.next().await {
                // The ordered consumer recreates itself after an error and goes on from the
                // last message it delivered: nothing is lost, so keep reading (as the SDK
                // does). An error is counted, not fatal.
                let next = next.map(|m| (m.subject.to_string(), m.payload.to_vec()));
                if sender.send(next.map_err(|e| e.to_string())).is_err() {
                    return;
                }
            }
        });
        Results {
            received,
            reader,
            manifest: self.manifest.clone(),
            seen: vec![],
            errors: vec![],
        }
    }

    /// Publishes `bytes` to the request subject of `kind` (`sign`, `keygen`, …) through
    /// JetStream with `Nats-Msg-Id: msg_id`, as a client would, and waits for the ack.
    pub async fn publish_request(&self, kind: &str, msg_id: &str, bytes: Vec<u8>) {
        let js = async_nats::jetstream::new(self.nats().await);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        let ack = js
            .publish_with_headers(
                subjects::request_subject(CLUSTER, kind).unwrap(),
                headers,
                bytes.into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(
            !ack.duplicate,
            "JetStream took message id {msg_id} for a duplicate"
        );
    }

    /// Makes a new node (`keyrack init` on token `keyrack-node<index>`), not started and not
    /// in any manifest yet; returns its index. Its config's `[cluster]` section is written
    /// when it first starts, naming the cluster's manifest at that time
    /// ([`Cluster::set_manifest`]) as its bootstrap file.
    pub fn add_node(&mut self) -> usize {
        let index = self.nodes.len();
        self.nodes.push(init_node(self._work.path(), index));
        self.procs.push(None);
        index
    }

    /// Writes the successor of the cluster's manifest listing the nodes `members` (indices,
    /// in key index order), signed by the admin as the current admin (`keyrack manifest
    /// sign --current`), which also makes it a valid bootstrap file; returns its path. The
    /// cluster's own manifest does not change ([`Cluster::set_manifest`]).
    pub fn next_manifest(&self, members: &[usize]) -> PathBuf {
        let version = self.manifest.version() + 1;
        let ids: Vec<String> = members.iter().map(usize::to_string).collect();
        let out = self
            ._work
            .path()
            .join(format!("manifest-v{version}-nodes-{}.toml", ids.join("-")));
        let mut args: Vec<String> = [
            "manifest",
            "next",
            "--from",
            self.manifest_path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec();
        for &i in members {
            args.extend(["--node".to_owned(), path_str(&self.nodes[i].dir)]);
        }
        ok(keyrack(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        ));
        ok(keyrack(&[
            "manifest",
            "sign",
            "--manifest",
            out.to_str().unwrap(),
            "--key",
            self.admin_key.to_str().unwrap(),
            "--admin",
            "admin",
            "--current",
            self.manifest_path.to_str().unwrap(),
        ]));
        out
    }

    /// Signs the manifest at `path` as the admin (`keyrack manifest sign`, no `--current`:
    /// the admin of its own list).
    pub fn sign_as_admin(&self, path: &Path) {
        ok(keyrack(&[
            "manifest",
            "sign",
            "--manifest",
            path.to_str().unwrap(),
            "--key",
            self.admin_key.to_str().unwrap(),
            "--admin",
            "admin",
        ]));
    }

    /// Publishes the manifest at `path` to the nodes (`keyrack manifest publish --json`,
    /// with the cluster's manifest as `--current`, so that nodes it no longer lists answer
    /// too) and returns the report. Waits at most `timeout_secs` for the verdicts.
    pub fn publish_manifest(&self, path: &Path, timeout_secs: u64) -> Publication {
        let out = keyrack(&[
            "manifest",
            "publish",
            "--manifest",
            path.to_str().unwrap(),
            "--nats",
            &self.nats.url,
            "--current",
            self.manifest_path.to_str().unwrap(),
            "--timeout",
            &timeout_secs.to_string(),
            "--json",
        ]);
        let output = format!("{}{}", stdout(&out), stderr(&out));
        let report = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("publish printed no JSON report ({e}):\n{output}"));
        Publication {
            success: out.status.success(),
            report,
            output,
        }
    }

    /// Makes the manifest at `path` (verified as a bootstrap) the cluster's own: what
    /// [`Cluster::client`] and [`Cluster::results`] verify against, what `publish_manifest`
    /// gives as `--current`, and what nodes started for the first time from now on get as
    /// their manifest file. Nodes already configured keep their file.
    pub fn set_manifest(&mut self, path: &Path) {
        self.manifest = SignedManifest::from_toml(&std::fs::read_to_string(path).unwrap())
            .unwrap()
            .verify_bootstrap()
            .unwrap();
        self.manifest_path = path.to_owned();
    }

    /// Waits (at most `timeout`) for node `i` to exit by itself (e.g. removed from the
    /// cluster); returns its exit status and what it logged in this run.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        let mut running = self.procs[i].take().expect("the node runs");
        loop {
            if let Some(status) = running.child.try_wait().unwrap() {
                return (status, self.log_since(i, running.log_from));
            }
            if Instant::now() > deadline {
                let log = self.log_since(i, running.log_from);
                self.procs[i] = Some(running);
                panic!("node{i} did not exit within {timeout:?}; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What node `i` logged since its current (or last) run started.
    pub fn log_of_run(&self, i: usize) -> String {
        let from = self.procs[i].as_ref().map_or(0, |r| r.log_from);
        self.log_since(i, from)
    }

    /// Whether node `i` runs (started by this cluster, not stopped or killed since).
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.procs[i].as_mut() {
            Some(p) => p.child.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// Starts node `i` without waiting for it to serve (e.g. a node expected to refuse to
    /// start: [`Cluster::wait_exit`]).
    pub fn spawn_node(&mut self, i: usize) {
        self.spawn(i);
    }

    /// Starts node `i` and waits until it serves.
    pub fn start_node(&mut self, i: usize) {
        self.spawn(i);
        self.wait_serving(i);
    }

    /// Starts every node that is not running; waits until all serve.
    pub fn start_all(&mut self) {
        let stopped: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.procs[*i].is_none())
            .collect();
        for &i in &stopped {
            self.spawn(i);
        }
        for &i in &stopped {
            self.wait_serving(i);
        }
    }

    /// Stops node `i` with SIGTERM and asserts that it exits cleanly (status 0) in time.
    pub fn stop_node(&mut self, i: usize) {
        let mut running = self.procs[i].take().expect("the node runs");
        let status = Command::new("kill")
            .args(["-TERM", &running.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM node{i}");
        let deadline = Instant::now() + PROCESS_DEADLINE;
        let status = loop {
            if let Some(status) = running.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = running.child.kill();
                let _ = running.child.wait();
                panic!(
                    "node{i} did not exit within {PROCESS_DEADLINE:?} of SIGTERM; its log:\n{}",
                    self.log_since(i, running.log_from)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "node{i} exited with {status} after SIGTERM; its log:\n{}",
            self.log_since(i, running.log_from)
        );
    }

    /// Kills node `i` with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill_node(&mut self, i: usize) {
        let mut running = self.procs[i].take().expect("the node runs");
        running.child.kill().unwrap();
        running.child.wait().unwrap();
    }

    /// Stops every running node (SIGTERM) and starts them all again.
    pub fn restart_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.procs[i].is_some() {
                self.stop_node(i);
            }
        }
        self.start_all();
    }

    /// The keys in node `i`'s store, read from the SQLite file directly (read-only; the node
    /// must not run), each with whether the sealed share of its current version is there.
    pub fn key_states(&mut self, i: usize) -> Vec<KeyState> {
        assert!(!self.is_running(i), "node{i} runs: stop or kill it first");
        let db = rusqlite::Connection::open_with_flags(
            &self.nodes[i].store,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut query = db
            .prepare(
                "SELECT k.key_id, k.scheme, k.status, k.version, EXISTS (SELECT 1 FROM key_shares s \
                 WHERE s.key_id = k.key_id AND s.scheme = k.scheme AND s.version = k.version) \
                 FROM keys k ORDER BY k.key_id, k.scheme",
            )
            .unwrap();
        let rows = query
            .query_map([], |row| {
                Ok(KeyState {
                    key_id: row.get(0)?,
                    scheme: row.get(1)?,
                    status: row.get(2)?,
                    version: row.get(3)?,
                    has_share: row.get(4)?,
                })
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// Everything node `i` logged, all runs.
    pub fn log(&self, i: usize) -> String {
        self.log_since(i, 0)
    }

    fn log_since(&self, i: usize, from: u64) -> String {
        let bytes = std::fs::read(&self.nodes[i].log).unwrap_or_default();
        let from = usize::try_from(from).unwrap().min(bytes.len());
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }

    fn spawn(&mut self, i: usize) {
        assert!(self.procs[i].is_none(), "node{i} already runs");
        let configured = std::fs::read_to_string(&self.nodes[i].config)
            .unwrap()
            .contains("\n[cluster]\n");
        if !configured {
            // A node added after the start: its first start configures it.
            self.config
                .write(&mut self.nodes[i], &self.manifest_path, &self.nats.url);
        }
        let node = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let log_from = log.metadata().unwrap().len();
        let filter = match std::env::var("KEYRACK_NODE_LOG") {
            Ok(more) => format!("{BASE_LOG_FILTER},{more}"),
            Err(_) => BASE_LOG_FILTER.to_owned(),
        };
        let child = Command::new(KEYRACK)
            .args(["node", "--config", node.config.to_str().unwrap()])
            .env("KEYRACK_LOG", filter)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start keyrack node");
        self.procs[i] = Some(Running { child, log_from });
    }

    fn wait_serving(&mut self, i: usize) {
        let deadline = Instant::now() + PROCESS_DEADLINE;
        loop {
            let running = self.procs[i].as_mut().expect("the node was started");
            let log_from = running.log_from;
            if let Some(status) = running.child.try_wait().unwrap() {
                panic!(
                    "node{i} exited ({status}) before serving; its log:\n{}",
                    self.log_since(i, log_from)
                );
            }
            let log = self.log_since(i, log_from);
            if READY_LINES.iter().all(|line| log.contains(line)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node{i} did not serve within {PROCESS_DEADLINE:?}; its log:\n{}",
                self.log_since(i, log_from)
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

/// Runs `keyrack init` for node `index` (token `keyrack-node<index>`) in `work`.
fn init_node(work: &Path, index: usize) -> NodeFiles {
    let id = format!("node{index}");
    let token = format!("keyrack-node{index}");
    let dir = work.join(&id);
    let pin = keyrack_tests::pin_file(&token);
    ok(keyrack(&[
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "--node-id",
        &id,
        "--backend",
        "pkcs11",
        "--pkcs11-module",
        &keyrack_tests::required_env("KEYRACK_PKCS11_MODULE"),
        "--token-label",
        &token,
        "--key-label",
        &keyrack_tests::unique(&id),
        "--pin-file",
        pin.to_str().unwrap(),
        "--api-listen",
        "127.0.0.1:0",
    ]));
    NodeFiles {
        index,
        config: dir.join("keyrack.toml"),
        store: dir.join("keyrack.db"),
        log: dir.join("node.log"),
        dir,
        id,
        token,
    }
}

/// What every node's `[cluster]` section holds (from the [`Builder`]).
struct ConfigLines {
    leader_timeout_ms: u64,
    session_timeout_ms: u64,
    lines: Vec<String>,
    node_lines: Vec<(usize, String)>,
}

impl ConfigLines {
    /// Appends the `[cluster]` section to `node`'s config, with `manifest` as its manifest
    /// file, and resolves its store path.
    fn write(&self, node: &mut NodeFiles, manifest: &Path, nats_url: &str) {
        let mut section = format!(
            "\n[cluster]\nmanifest = {:?}\nnats = [{:?}]\nleader_timeout_ms = {}\nsession_timeout_ms = {}\n",
            manifest.to_str().unwrap(),
            nats_url,
            self.leader_timeout_ms,
            self.session_timeout_ms,
        );
        let own = self.node_lines.iter().filter(|(i, _)| *i == node.index);
        for line in self.lines.iter().chain(own.map(|(_, l)| l)) {
            section.push_str(line);
            section.push('\n');
        }
        let mut config = std::fs::read_to_string(&node.config).unwrap();
        config.push_str(&section);
        std::fs::write(&node.config, config).unwrap();
        let loaded = node.load_config();
        node.store = loaded.resolve(&loaded.config.cluster.as_ref().unwrap().store);
    }
}

/// What `keyrack manifest publish --json` reported (see [`Cluster::publish_manifest`]).
#[derive(Debug)]
pub struct Publication {
    /// Whether it exited 0 (every node of the manifest accepted).
    pub success: bool,
    /// The JSON report.
    pub report: serde_json::Value,
    /// Its stdout and stderr, for failure messages.
    pub output: String,
}

impl Publication {
    /// Node `id`'s verdict: (`accepted` / `refused` / `silent`, reason, node's version after).
    pub fn verdict(&self, id: &str) -> (String, String, Option<u64>) {
        let node = self.report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node_id"] == id)
            .unwrap_or_else(|| panic!("no line for {id} in:\n{}", self.output));
        (
            node["verdict"].as_str().unwrap().to_owned(),
            node["reason"].as_str().unwrap_or_default().to_owned(),
            node["current_version"].as_u64(),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for running in self.procs.iter_mut().filter_map(Option::take) {
            let mut child = running.child;
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for i in 0..self.nodes.len() {
                let log = self.log(i);
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(80)..];
                eprintln!("----- node{i}: last {} log lines -----", tail.len());
                for line in tail {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// A key record as the store holds it (see [`Cluster::key_states`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyState {
    /// The key (wallet) id.
    pub key_id: String,
    /// The scheme id.
    pub scheme: String,
    /// `PENDING`, `READY`, `ERROR` or `DELETED`.
    pub status: String,
    /// The share generation.
    pub version: u32,
    /// Whether the sealed share of that generation is stored.
    pub has_share: bool,
}

/// The results one client id received (see [`Cluster::results`]).
pub struct Results {
    /// What the reader task got: a result's subject and payload, or a consumer error.
    received: tokio::sync::mpsc::UnboundedReceiver<Result<(String, Vec<u8>), String>>,
    reader: tokio::task::JoinHandle<()>,
    manifest: VerifiedManifest,
    seen: Vec<ResultBody>,
    /// Errors the ordered consumer reported (and recovered from) so far.
    errors: Vec<String>,
}

impl Drop for Results {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Results {
    /// Reads results until `done` holds for all of them so far; panics naming `what` if it
    /// does not within `timeout`. Every result must verify under its manifest node's key.
    pub async fn until(
        &mut self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[ResultBody]) -> bool,
    ) -> &[ResultBody] {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&self.seen) {
            let next = tokio::time::timeout_at(deadline, self.received.recv()).await;
            let (subject, payload) = match next {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => {
                    self.errors.push(e);
                    continue;
                }
                Ok(None) => panic!("the result consumer ended; errors: {:?}", self.errors),
                Err(_) => panic!(
                    "{what}: not within {timeout:?}; consumer errors: {:?}; results so far:\n{}",
                    self.errors,
                    describe(&self.seen)
                ),
            };
            let body = SignedResult::parse(&payload)
                .and_then(|r| r.verify_with(&self.manifest))
                .unwrap_or_else(|e| panic!("a result on {subject} does not verify: {e}"));
            self.seen.push(body);
        }
        &self.seen
    }

    /// Reads results until `count` nodes answered `request_id` with `ok`; returns every
    /// answer to it read so far.
    pub async fn until_ok(&mut self, request_id: &str, count: usize) -> Vec<&ResultBody> {
        let oks = |r: &[ResultBody]| {
            r.iter()
                .filter(|r| r.request_id == request_id && r.status == Status::Ok)
                .count()
        };
        let what = format!("{count} ok results for request {request_id}");
        self.until(WAIT_RESULTS, &what, |r| oks(r) >= count).await;
        self.of(request_id)
    }

    /// The results of one request read so far.
    pub fn of(&self, request_id: &str) -> Vec<&ResultBody> {
        self.seen
            .iter()
            .filter(|r| r.request_id == request_id)
            .collect()
    }
}

/// One line per result: request, node, status, code, message.
pub fn describe<'a>(results: impl IntoIterator<Item = &'a ResultBody>) -> String {
    results
        .into_iter()
        .map(|r| {
            format!(
                "  {} {} {:?} {} {}\n",
                r.request_id,
                r.node_id,
                r.status,
                r.code.map(|c| c.as_str()).unwrap_or("-"),
                r.message
            )
        })
        .collect()
}

fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    stdout(&out)
}
