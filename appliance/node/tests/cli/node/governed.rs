//! Every request kind is governed, on node processes (SoftHSM, real nats-server), under
//! policies/examples/treasury.toml as it is, but for its 24 h delete delay, shortened to
//! [`DELAY`] in the copy the cluster runs: an initiator no rule allows (`bot`, a trading
//! bot's key: role trader) is refused delete, reshare, refresh and keygen by every node and
//! every share stays; a reshare lowering the threshold is refused whoever approves; a delete
//! waits for two approvals, then for its delay, then every node erases its share — and a
//! veto during the delay stops another for good; one initiator's waiting requests are capped
//! and cost the nodes no capacity, and survive a node's restart. Every step is in every
//! node's verified audit log. Signatures are Solana transfers (what treasury.toml lets
//! traders sign), checked with ed25519-dalek and Solana's own library.

use std::path::{Path, PathBuf};
use std::time::Instant;

use keyrack_client::codes::ErrorCode;
use keyrack_client::sdk::NodeAnswer;

use super::super::cluster::NodeFiles;
use super::policy::{
    check_solana, client_config, queued_for_approvals, transfer, verified_audit_logs, SOL, WENDY,
};
use super::*;

/// The delete delay of the policy the tests run (treasury.toml says 24h): long enough for a
/// node to be stopped, restored and started within it.
const DELAY: Duration = Duration::from_secs(10);

/// treasury.toml with its delete delay shortened to [`DELAY`], written into `dir`.
fn governed_policy(dir: &Path) -> PathBuf {
    let treasury = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../policies/examples/treasury.toml"
    ))
    .unwrap();
    assert!(treasury.contains("delay = \"24h\""));
    let text = treasury.replace(
        "delay = \"24h\"",
        &format!("delay = \"{}s\"", DELAY.as_secs()),
    );
    let path = dir.join("governed.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A cluster under [`governed_policy`] with the traders `bot` and `tom`, the wallet admin
/// [`WENDY`] and the approvers bob and carol (treasury.toml's group: alice, bob, carol).
fn governed_cluster(dir: &Path, extra: &[&str]) -> Cluster {
    let mut builder = Cluster::builder(3)
        .policy(&governed_policy(dir))
        .initiator("bot", "trader")
        .initiator("tom", "trader")
        .initiator(WENDY, "wallet-admin")
        .initiator("bob", "")
        .initiator("carol", "");
    for line in extra {
        builder = builder.cluster_line(line);
    }
    builder.start()
}

/// The SDK error's code.
fn code(e: &SdkError) -> Option<ErrorCode> {
    match e {
        SdkError::Refused { code, .. } | SdkError::Failed { code, .. } => Some(*code),
        _ => None,
    }
}

/// Creates the Ed25519 key `key_id` (threshold `t`) as the wallet admin; its public key.
async fn create(cluster: &Cluster, key_id: &str, t: u16) -> Vec<u8> {
    cluster
        .client_as(WENDY, WENDY)
        .await
        .keygen(key_id, &[Scheme::Ed25519], t, WAIT)
        .await
        .unwrap_or_else(|e| panic!("a wallet admin creates {key_id}: {e}"))
        .keys[0]
        .public_key
        .clone()
}

/// `who` (a trader) pays 1 SOL from `key_id` to an exchange (within its daily limit): signed,
/// and checked.
async fn pays(cluster: &Cluster, who: &str, key_id: &str, key: &[u8], nonce: u8) {
    let message = transfer(key, SOL, nonce);
    let signed = cluster
        .client_as(who, who)
        .await
        .sign_chain(
            key_id,
            Scheme::Ed25519,
            "solana",
            &message,
            PayloadKind::Transaction,
            &[],
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{key_id} signs: {e}"));
    check_solana(&signed, key, &message);
}

/// Every node's audit entries (verified first), one JSON text per node.
fn audit_texts(cluster: &Cluster) -> Vec<(String, String)> {
    verified_audit_logs(cluster)
        .into_iter()
        .map(|(node, entries)| (node, serde_json::Value::Array(entries).to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn softhsm_an_initiator_no_rule_allows_cannot_create_move_or_destroy_a_key() {
    let work = tempfile::tempdir().unwrap();
    let mut cluster = governed_cluster(work.path(), &[]);
    let wendy = cluster.client_as(WENDY, WENDY).await;
    let hot = create(&cluster, "hot-1", 2).await;
    create(&cluster, "hot-3", 3).await;

    // The trading bot's key: every key operation refused by every node, by the default
    // deny; each refusal audited.
    let bot = cluster.client_as("bot", "bot").await;
    let mut results = cluster.results("bot").await;
    let ed = [Scheme::Ed25519];
    let mut reuse = bot.keygen_body("hot-1", &ed, 2, WAIT);
    reuse.reuse_deleted_id = true;
    let attempts = [
        ("delete", bot.delete_body("hot-1", &ed, WAIT)),
        (
            "reshare",
            bot.reshare_body("hot-1", &ed, Some(3), None, WAIT),
        ),
        ("refresh", bot.refresh_body("hot-1", &ed, WAIT)),
        ("keygen", bot.keygen_body("hot-9", &ed, 2, WAIT)),
        ("keygen reusing an id", reuse),
    ];
    for (what, body) in attempts {
        let id = body.request_id.clone();
        let e = bot.request(body, WAIT).await.unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::PolicyDenied), "{what}: {e}");
        let answers = results
            .until(WAIT, "three refusals", |r| {
                r.iter().filter(|r| r.request_id == id).count() == 3
            })
            .await;
        for r in answers.iter().filter(|r| r.request_id == id) {
            assert_eq!(
                r.code,
                Some(ErrorCode::PolicyDenied),
                "{what}: {}",
                describe([r])
            );
            assert!(r.message.contains("default deny"), "{what}: {}", r.message);
        }
    }
    // Not even a wallet admin re-creates a deleted id: no rule says reuse_deleted_id.
    let mut reuse = wendy.keygen_body("hot-1", &ed, 2, WAIT);
    reuse.reuse_deleted_id = true;
    let e = wendy.request(reuse, WAIT).await.unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::PolicyDenied), "{e}");
    // A reshare lowering the threshold (3 of 3 → 2 of 3) is denied by the rule that says so,
    // whatever approvals it might get.
    let e = wendy
        .reshare("hot-3", &ed, Some(2), None, WAIT)
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::PolicyDenied), "{e}");
    assert!(
        e.to_string().contains("reshare-never-lowers-the-threshold"),
        "{e}"
    );
    // Status is public under treasury.toml: the bot may read it.
    let report = bot
        .key_status("hot-1", &ed, WAIT)
        .await
        .expect("status is allowed to every initiator");
    assert_eq!(report.nodes.len(), 3);

    // The key still signs, and every node still holds its share of both keys.
    pays(&cluster, "bot", "hot-1", &hot, 1).await;
    let texts = audit_texts(&cluster);
    for (node, text) in &texts {
        for kind in ["delete", "reshare", "refresh", "keygen"] {
            assert!(
                text.contains(&format!("\"kind\":\"{kind}\""))
                    && text.contains("\"initiator\":\"bot\""),
                "{node} audited the bot's {kind}"
            );
        }
        assert!(
            text.contains("reshare-never-lowers-the-threshold"),
            "{node}"
        );
    }
    for i in 0..3 {
        cluster.stop_node(i);
        let states = cluster.key_states(i);
        for key in ["hot-1", "hot-3"] {
            let s = states.iter().find(|s| s.key_id == key).unwrap();
            assert_eq!(
                (s.status.as_str(), s.version, s.has_share),
                ("READY", 1, true),
                "node{i} {key}"
            );
        }
        assert!(!states.iter().any(|s| s.key_id == "hot-9"), "node{i}");
    }
}

/// Sends `body` as `client` and collects the notices every node sends about it, until
/// `count` notices with `code` came; returns the waiter (the request's outcome) and the
/// notice channel.
struct Watched {
    hash: [u8; 32],
    notices: tokio::sync::mpsc::UnboundedReceiver<NodeAnswer>,
    outcome: tokio::task::JoinHandle<Result<Outcome, SdkError>>,
}

async fn submit_watched(client: &Client, body: keyrack_client::request::RequestBody) -> Watched {
    let pending = client.submit(body).await.expect("submitted");
    let hash = pending.request_hash();
    let (tx, notices) = tokio::sync::mpsc::unbounded_channel();
    let outcome = tokio::spawn(async move {
        pending
            .wait_with_notices(Duration::from_secs(240), move |a| {
                let _ = tx.send(a.clone());
            })
            .await
    });
    Watched {
        hash,
        notices,
        outcome,
    }
}

impl Watched {
    /// Waits for a notice with `code` from every node; checks each names `words`; returns
    /// the messages.
    async fn notices_from_all(&mut self, code: ErrorCode, words: &str) -> Vec<String> {
        let mut from = BTreeSet::new();
        let mut said = Vec::new();
        while from.len() < 3 {
            let notice = tokio::time::timeout(WAIT, self.notices.recv())
                .await
                .unwrap_or_else(|_| panic!("every node says {}", code.as_str()))
                .expect("a notice");
            assert_eq!(notice.status, Status::Pending);
            assert_eq!(notice.code, Some(code), "{}", notice.message);
            assert!(
                notice.message.contains(words) && notice.message.contains(&hex::encode(self.hash)),
                "{}",
                notice.message
            );
            from.insert(notice.node);
            said.push(notice.message);
        }
        said
    }
}

/// The run time a time-locked notice names (`… (<ms> ms) …`).
fn run_at(notice: &str) -> u64 {
    notice
        .split(" ms)")
        .next()
        .and_then(|head| head.rsplit('(').next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no run time in {notice}"))
}

/// The id of the one request a snapshot's store holds parked.
fn snapshot_request_id(snapshot: &[(PathBuf, Option<Vec<u8>>)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    for (path, bytes) in snapshot {
        if let Some(b) = bytes {
            std::fs::write(dir.path().join(path.file_name().unwrap()), b).unwrap();
        }
    }
    let db = dir.path().join(snapshot[0].0.file_name().unwrap());
    let held = keyrack_node::store::Store::open_read_only(&db, "node2")
        .unwrap()
        .parked_requests()
        .unwrap();
    assert_eq!(held.len(), 1, "the snapshot holds the delete");
    held[0].request_id.clone()
}

/// A node's store files (the database and its WAL), copied aside: what a backup or a VM
/// snapshot of it holds.
fn snapshot_store(node: &NodeFiles) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut path = node.store.clone().into_os_string();
            path.push(suffix);
            let path = PathBuf::from(path);
            let bytes = std::fs::read(&path).ok();
            (path, bytes)
        })
        .collect()
}

/// Puts a snapshot back (the node must be stopped).
fn restore_store(snapshot: &[(PathBuf, Option<Vec<u8>>)]) {
    for (path, bytes) in snapshot {
        match bytes {
            Some(b) => std::fs::write(path, b).unwrap(),
            None => {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn softhsm_a_delete_waits_for_two_approvals_and_its_delay_and_a_veto_stops_another() {
    let work = tempfile::tempdir().unwrap();
    let mut cluster = governed_cluster(work.path(), &[]);
    let wendy = cluster.client_as(WENDY, WENDY).await;
    let ed = [Scheme::Ed25519];
    create(&cluster, "hot-1", 2).await;
    let kept = create(&cluster, "hot-2", 2).await;
    let bob = cluster.client_as("bob", "bob").await;
    let carol = cluster.client_as("carol", "carol").await;
    let alice = cluster.client("app").await;
    let rule = "delete-with-approvals-and-veto-window";

    // The delete waits at every node for two treasury approvals.
    let body = wendy.delete_body("hot-1", &ed, Duration::from_secs(300));
    let deleting = body.request_id.clone();
    let mut delete = submit_watched(&wendy, body).await;
    delete
        .notices_from_all(ErrorCode::ApprovalsRequired, rule)
        .await;
    for node in cluster.nodes() {
        assert!(
            queued_for_approvals(node, &deleting),
            "{} parked it",
            node.id
        );
    }
    // One approval is not enough: still waiting, not time-locked.
    bob.approve(delete.hash, Duration::from_secs(300), WAIT)
        .await
        .expect("every node records bob's approval");
    let one = tokio::time::timeout(Duration::from_secs(2), delete.notices.recv()).await;
    assert!(one.is_err(), "one approval changes nothing: {one:?}");
    assert!(!delete.outcome.is_finished());
    // Two: approved, time-locked for the delay, then carried out everywhere.
    let approved_at = Instant::now();
    carol
        .approve(delete.hash, Duration::from_secs(300), WAIT)
        .await
        .expect("every node records carol's approval");
    let locked = delete
        .notices_from_all(ErrorCode::TimeLocked, "time-locked")
        .await;
    // Every node runs it at the same time: from when the approvers signed, not from when
    // each node happened to read their approvals.
    let run_ats: BTreeSet<u64> = locked.iter().map(|m| run_at(m)).collect();
    assert_eq!(run_ats.len(), 1, "{locked:?}");
    // Another request under the held request's id (the bot's trick: same id, new nonce and
    // message id) is refused at every node before it is accepted, and takes nothing of the
    // held request: not its approvals, not its time lock.
    let mut twin = wendy.delete_body("hot-2", &ed, Duration::from_secs(300));
    twin.request_id = deleting.clone();
    let twin = keyrack_client::request::InitiatorKey::load(WENDY, &cluster.key_path(WENDY))
        .unwrap()
        .sign_request(&twin)
        .unwrap();
    let mut wendy_results = cluster.results(WENDY).await;
    cluster
        .publish_request("delete", "twin-of-the-held-delete", twin.to_json())
        .await;
    let answers = wendy_results
        .until(WAIT, "three refusals of the twin", |r| {
            r.iter()
                .filter(|r| r.request_hash == twin.hash() && r.status == Status::Refused)
                .count()
                == 3
        })
        .await;
    for r in answers.iter().filter(|r| r.request_hash == twin.hash()) {
        assert_eq!(r.code, Some(ErrorCode::InvalidRequest), "{}", describe([r]));
        assert!(
            r.message.contains("names another request this node holds"),
            "{}",
            r.message
        );
    }
    for node in cluster.nodes() {
        assert!(
            queued_for_approvals(node, &deleting),
            "{} still holds it",
            node.id
        );
    }
    let outcome = delete
        .outcome
        .await
        .unwrap()
        .expect("deleted after the delay");
    assert!(
        approved_at.elapsed() >= DELAY,
        "carried out only after the delay ({:?})",
        approved_at.elapsed()
    );
    assert!(matches!(outcome, Outcome::Deleted(_)), "{outcome:?}");

    // Another delete, through `keyrack client` this time: it prints each node's notice
    // (waiting, then time-locked), and exits 1 once a treasury approver vetoes it during the
    // delay: refused everywhere, and the key stays.
    let config = client_config(&cluster, work.path(), WENDY);
    let mut cli = std::process::Command::new(super::super::KEYRACK)
        .args(["client", "delete", "hot-2", "--scheme", "ed25519", "--yes"])
        .args(["--timeout", "120", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stderr = cli.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            all.push_str(&line);
            all.push('\n');
            let _ = lines_tx.send(line);
        }
        all
    });
    // Reads the command's notice lines until every node said `words`; returns their text.
    let mut said = String::new();
    let mut until_all_say = async |words: &str| {
        let mut from = BTreeSet::new();
        while from.len() < 3 {
            let line = tokio::time::timeout(WAIT, lines.recv())
                .await
                .unwrap_or_else(|_| panic!("every node says '{words}': {said}"))
                .expect("the command prints each node's notice");
            said.push_str(&line);
            if let Some((node, message)) = line.split_once(": ") {
                if message.contains(words) {
                    from.insert(node.to_owned());
                }
            }
        }
        said.clone()
    };
    let waiting = until_all_say("waiting for approvals").await;
    let hash_hex = waiting
        .split("approve request hash ")
        .nth(1)
        .and_then(|rest| rest.get(..64))
        .expect("the notice gives the request hash")
        .to_owned();
    let hash: [u8; 32] = hex::decode(&hash_hex).unwrap().try_into().unwrap();
    let approved_at_veto = Instant::now();
    bob.approve(hash, Duration::from_secs(300), WAIT)
        .await
        .unwrap();
    carol
        .approve(hash, Duration::from_secs(300), WAIT)
        .await
        .unwrap();
    until_all_say("time-locked").await;
    // node2 as a backup (or a VM snapshot) holds it now: time-locked, not vetoed.
    cluster.stop_node(2);
    let snapshot = snapshot_store(cluster.node(2));
    cluster.start_node(2);
    alice
        .reject(hash, Duration::from_secs(60), WAIT)
        .await
        .expect("every node records alice's rejection");
    let status = tokio::task::spawn_blocking(move || cli.wait().unwrap())
        .await
        .unwrap();
    let printed = reader.join().unwrap();
    assert_eq!(status.code(), Some(1), "{printed}");
    assert!(
        printed.contains("approval_rejected")
            && printed.contains("vetoed the request during its delay"),
        "{printed}"
    );
    let vetoed_id = {
        let deadline = Instant::now() + WAIT;
        loop {
            let held: Vec<String> =
                keyrack_node::store::Store::open_read_only(&cluster.node(2).store, "node2")
                    .unwrap()
                    .parked_requests()
                    .unwrap()
                    .into_iter()
                    .map(|p| p.request_id)
                    .collect();
            if held.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "node2 dropped the vetoed delete");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        snapshot_request_id(&snapshot)
    };
    // node2 is restored from the snapshot: its store holds the delete time-locked and knows
    // nothing of the veto, and its NATS consumer has long acknowledged it. It starts after the
    // run time: it reads the veto back from the verdict stream before it carries anything
    // on, and refuses the delete.
    cluster.stop_node(2);
    restore_store(&snapshot);
    while Instant::now() < approved_at_veto + DELAY {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.start_node(2);
    let deadline = Instant::now() + WAIT;
    while queued_for_approvals(cluster.node(2), &vetoed_id) {
        assert!(
            Instant::now() < deadline,
            "the restored node2 decided the delete"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the delay, the vetoed delete stays undone: the key signs.
    tokio::time::sleep(DELAY + Duration::from_secs(1)).await;
    pays(&cluster, "bot", "hot-2", &kept, 2).await;

    // Every step is in every node's verified audit log.
    for (node, text) in audit_texts(&cluster) {
        for step in [
            "waiting for approvals",
            "approved; time-locked until",
            "\"outcome\":\"deleted\"",
            "vetoed during its delay by 'alice'",
        ] {
            assert!(text.contains(step), "{node} audited '{step}'");
        }
    }
    let (_, node2) = audit_texts(&cluster).into_iter().nth(2).unwrap();
    assert!(
        node2.contains("from the verdict stream at start"),
        "the restored node2 recovered the veto"
    );
    for i in 0..3 {
        cluster.stop_node(i);
        let states = cluster.key_states(i);
        let state = |key: &str| {
            let s = states.iter().find(|s| s.key_id == key).unwrap();
            (s.status.clone(), s.has_share)
        };
        assert_eq!(state("hot-1"), ("DELETED".into(), false), "node{i}");
        assert_eq!(state("hot-2"), ("READY".into(), true), "node{i}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn softhsm_waiting_requests_are_capped_per_initiator_cost_no_capacity_and_survive_a_restart()
{
    let work = tempfile::tempdir().unwrap();
    let mut cluster = governed_cluster(
        work.path(),
        &["max_waiting_per_initiator = 10", "max_in_flight = 4"],
    );
    let key = create(&cluster, "hot-1", 2).await;

    // The bot asks 100 transfers of 11 SOL, each over the key's 10 SOL a day: each needs two
    // treasury approvals.
    let bot = cluster.client_as("bot", "bot").await;
    let mut results = cluster.results("bot").await;
    let mut sent = Vec::new();
    for i in 0..100u8 {
        let message = transfer(&key, 11 * SOL, 100 + i);
        let body = bot.sign_chain_body(
            "hot-1",
            Scheme::Ed25519,
            "solana",
            &message,
            PayloadKind::Transaction,
            &[],
            Duration::from_secs(300),
        );
        let id = body.request_id.clone();
        let pending = bot.submit(body).await.expect("submitted");
        sent.push((id, message, pending));
    }
    let ids: BTreeSet<String> = sent.iter().map(|(id, _, _)| id.clone()).collect();
    let answers = results
        .until(
            Duration::from_secs(120),
            "every node's answer to all 100",
            |r| r.iter().filter(|r| ids.contains(&r.request_id)).count() == 300,
        )
        .await;
    // Each node parks 10 (its cap for one initiator) and refuses the other 90.
    for node in cluster.node_ids() {
        let mine: Vec<&ResultBody> = answers
            .iter()
            .filter(|r| r.node_id == node && ids.contains(&r.request_id))
            .collect();
        let waiting = mine
            .iter()
            .filter(|r| r.status == Status::Pending && r.code == Some(ErrorCode::ApprovalsRequired))
            .count();
        let capped = mine
            .iter()
            .filter(|r| r.status == Status::Refused && r.code == Some(ErrorCode::TooManyWaiting))
            .count();
        assert_eq!(
            (waiting, capped),
            (10, 90),
            "{node}:\n{}",
            describe(mine.iter().copied())
        );
    }
    // A request every node parked.
    let chosen = ids
        .iter()
        .find(|id| {
            answers
                .iter()
                .filter(|r| &r.request_id == *id && r.status == Status::Pending)
                .count()
                == 3
        })
        .expect("a request parked at every node")
        .clone();

    // Waiting costs no capacity: with 10 waiting at each node (and max_in_flight 4),
    // another initiator's transfer and an approval go through at once.
    let started = Instant::now();
    pays(&cluster, "tom", "hot-1", &key, 1).await;
    let bob = cluster.client_as("bob", "bob").await;
    bob.approve([7; 32], Duration::from_secs(60), WAIT)
        .await
        .expect("an approval is recorded at once");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );

    // node1 restarts: its parked requests are still there, and it carries them on.
    cluster.stop_node(1);
    assert!(queued_for_approvals(cluster.node(1), &chosen));
    cluster.start_node(1);
    let (_, message, pending) = sent
        .into_iter()
        .find(|(id, _, _)| *id == chosen)
        .expect("the chosen request");
    let hash = pending.request_hash();
    let outcome = tokio::spawn(pending.wait(Duration::from_secs(120)));
    bob.approve(hash, Duration::from_secs(300), WAIT)
        .await
        .unwrap();
    cluster
        .client_as("carol", "carol")
        .await
        .approve(hash, Duration::from_secs(300), WAIT)
        .await
        .unwrap();
    let signed = match outcome.await.unwrap().expect("signed once approved") {
        Outcome::Signature(s) => s,
        other => panic!("{other:?}"),
    };
    check_solana(&signed, &key, &message);
    // node1 decides it again after its restart (two signers may have finished before it):
    // it is no longer parked there, and its decision is to allow, with the two approvals.
    let deadline = Instant::now() + WAIT;
    while queued_for_approvals(cluster.node(1), &chosen) {
        assert!(Instant::now() < deadline, "node1 never carried on {chosen}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, node1) = verified_audit_logs(&cluster).into_iter().nth(1).unwrap();
    assert!(
        node1.iter().any(|e| e["request_id"] == chosen.as_str()
            && e["kind"] == "decision"
            && e["entry"]["outcome"] == "allow"),
        "node1 audited its decision to allow {chosen}"
    );
}
