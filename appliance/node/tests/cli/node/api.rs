//! The node's HTTP API on node processes (SoftHSM, real nats-server): the token is required
//! everywhere but the health routes, every route answers in its documented JSON (read with
//! the console's own client), /metrics parses as Prometheus text, and approvals posted by an
//! approver through one node's API reach every node, come back with every node's signed
//! result, and let a waiting request be signed.

use keyrack_client::api;
use keyrack_client::trusted::{self, TrustedKeys};
use keyrack_tui::api::ApiClient;
use keyrack_tui::approval::{Approver, Checked, Decoder, Verdict};
use keyrack_tui::asks::{Asks, CheckedRequest};

use super::super::cluster::CLUSTER;
use super::*;

/// Every route that needs the token.
const GUARDED: [&str; 11] = [
    api::METRICS,
    api::STATUS,
    api::PEERS,
    api::BACKEND,
    api::KEYS,
    api::SESSIONS,
    api::POOLS,
    api::APPROVALS,
    api::POLICIES,
    api::AUDIT,
    api::AUDIT_VERIFY,
];

/// A GET of `url` with an optional bearer token: (status, body). Errors statuses are
/// answers here, not failures.
fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(url);
    if let Some(t) = token {
        request = request.header("Authorization", &format!("Bearer {t}"));
    }
    let mut response = request.call().expect("the API answers");
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, body)
}

/// A POST of a JSON `body` with the token: (status, body).
fn post(url: &str, token: &str, body: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .post(url)
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body)
        .expect("the API answers");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, text)
}

/// Runs blocking HTTP off the test's runtime threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// The value of the sample `name` with exactly `labels` in a parsed exposition.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref b) => b.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

/// The console's decoder, for the harness's Bitcoin network (regtest).
fn decoder() -> Decoder {
    keyrack_node::chains::intent_decoder("regtest").unwrap()
}

/// The keys `who` trusts: hot-1's, recorded as `keyrack client trust hot-1` records them
/// (from the nodes' signed status answers: every READY answer agrees, and a threshold of
/// the committee answered).
async fn trusted_keys(cluster: &Cluster, who: &str) -> TrustedKeys {
    let client = cluster.client_as(who, &format!("{who}-trust")).await;
    let status = client
        .key_status("hot-1", &[Scheme::Ed25519], WAIT)
        .await
        .expect("the nodes answer a status request");
    let answers: Vec<trusted::StatusAnswer<'_>> = status.nodes.iter().map(Into::into).collect();
    let key = trusted::agree("hot-1", Scheme::Ed25519, &answers, keyrack_client::now_ms())
        .expect("the nodes agree on hot-1");
    let mut keys = TrustedKeys::empty(std::path::Path::new("trusted-keys.toml"));
    keys.record(key, false).unwrap();
    keys
}

/// `who` as the console's approver trusting `trusted`: their key, the cluster's manifest,
/// the decoder.
fn approver_trusting(cluster: &Cluster, who: &str, trusted: TrustedKeys) -> Approver {
    let key = keyrack_client::request::InitiatorKey::load(who, &cluster.key_path(who)).unwrap();
    Approver::new(key, cluster.manifest().clone(), trusted, decoder())
}

/// `who` as the console's approver, trusting hot-1 as the nodes agree on it.
async fn approver(cluster: &Cluster, who: &str) -> Approver {
    approver_trusting(cluster, who, trusted_keys(cluster, who).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_the_http_api_needs_its_token_and_answers_every_route_in_its_json() {
    let cluster = Cluster::start(3);
    let client = cluster.client("app").await;
    let key = keygen(&cluster, &client, &[Scheme::Ed25519])
        .await
        .remove(0);
    let body = sign_body(&client, Scheme::Ed25519, b"via the API", &[]);
    let sign_id = body.request_id.clone();
    let signed = signature_of(client.request(body, WAIT).await);
    check_signature(
        &signed.signature,
        Scheme::Ed25519,
        &key.public_key,
        b"via the API",
    );
    let (url, token) = cluster.api(0);

    // Health needs no token; readiness names its checks, all passing here.
    let (u, t) = (url.clone(), token.clone());
    let (health, ready, unauthenticated, wrong, missing) = blocking(move || {
        let health = get(&format!("{u}{}", api::HEALTHZ), None);
        let ready = get(&format!("{u}{}", api::READYZ), None);
        let ready_detailed = get(&format!("{u}{}", api::READYZ), Some(&t));
        let unauthenticated: Vec<(u16, String)> = GUARDED
            .iter()
            .map(|r| get(&format!("{u}{r}"), None))
            .collect();
        let wrong: Vec<(u16, String)> = GUARDED
            .iter()
            .map(|r| get(&format!("{u}{r}"), Some(&"0".repeat(64))))
            .collect();
        let missing = get(&format!("{u}/v1/nothing-here"), Some(&t));
        (
            health,
            (ready, ready_detailed),
            unauthenticated,
            wrong,
            missing,
        )
    })
    .await;
    let (ready, ready_detailed) = ready;
    assert_eq!(health, (200, "ok\n".to_owned()));
    assert_eq!(ready.0, 200, "{}", ready.1);
    let readiness: api::Readiness = serde_json::from_str(&ready.1).unwrap();
    assert!(readiness.ready);
    let names: Vec<&str> = readiness.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["nats", "store", "hsm", "policy"]);
    // Without the token the checks say only whether they passed; with it, what was found
    // (the HSM backend and its key, the bundle version).
    assert!(
        readiness.checks.iter().all(|c| c.detail == "ok"),
        "{readiness:?}"
    );
    let detailed: api::Readiness = serde_json::from_str(&ready_detailed.1).unwrap();
    let hsm = &detailed.checks[2];
    assert!(hsm.ok && hsm.detail.starts_with("pkcs11 "), "{hsm:?}");
    assert!(
        detailed.checks[3].detail.contains("bundle version"),
        "{detailed:?}"
    );
    // Without the token, or with another, every other route is refused (and says why).
    for (route, (status, body)) in GUARDED.iter().zip(unauthenticated.iter().chain(&wrong)) {
        assert_eq!(*status, 401, "{route}: {body}");
        let e: api::ApiError = serde_json::from_str(body).unwrap();
        assert_eq!(e.error, "unauthorized", "{route}");
    }
    for (route, (status, _)) in GUARDED.iter().zip(&wrong) {
        assert_eq!(*status, 401, "{route} with a wrong token");
    }
    assert_eq!(missing.0, 404, "{}", missing.1);

    // The console's client reads every route in its documented shape.
    let api_client = ApiClient::new(&url, token.clone());
    let (status, peers, backend, keys, none, sessions, pools, policies, audit, page, verified) =
        blocking(move || {
            (
                api_client.status().unwrap(),
                api_client.peers().unwrap(),
                api_client.backend().unwrap(),
                api_client.keys(None).unwrap(),
                api_client.keys(Some("NO-SUCH")).unwrap(),
                api_client.sessions().unwrap(),
                api_client.pools().unwrap(),
                api_client.policies().unwrap(),
                api_client.audit(0, 1000).unwrap(),
                api_client.audit(1, 1).unwrap(),
                api_client.audit_verify().unwrap(),
            )
        })
        .await;
    assert_eq!(
        (status.node_id.as_str(), status.cluster_id.as_str()),
        ("node0", CLUSTER)
    );
    assert_eq!(status.manifest.nodes, cluster.node_ids());
    assert_eq!(status.nats.state, "connected");
    assert!(status.backend.ok, "{:?}", status.backend);
    assert_eq!(status.policy.as_ref().map(|p| p.version), Some(1));
    assert_eq!(peers.peers.len(), 3);
    assert!(peers
        .peers
        .iter()
        .any(|p| p.node_id == "node0" && p.me && p.live));
    assert_eq!((backend.backend.as_str(), backend.ok), ("pkcs11", true));
    let view = keys
        .keys
        .iter()
        .find(|k| k.key_id == WALLET && k.scheme == "ed25519")
        .expect("the wallet's key");
    assert_eq!(view.status, "READY");
    assert_eq!(view.public_key, hex::encode(&key.public_key));
    assert_eq!(
        (view.threshold, view.participants.clone()),
        (2, cluster.node_ids())
    );
    // Its Solana address: the base58 of the public key (written here by the bitcoin crate's
    // base58, not by the node's plugin).
    let solana: Vec<&str> = view
        .addresses
        .iter()
        .filter(|a| a.chain == "solana")
        .map(|a| a.address.as_str())
        .collect();
    assert_eq!(solana, [bitcoin::base58::encode(&key.public_key)]);
    assert!(none.keys.is_empty(), "a search that matches nothing");
    assert!(
        sessions
            .recent
            .iter()
            .any(|s| s.request_id == sign_id && s.kind == "sign" && s.state == "completed"),
        "{:?}",
        sessions.recent
    );
    let _ = pools.primes;
    let active = policies.active.expect("an active bundle");
    assert_eq!(active.version, 1);
    assert!(
        !active.rules.is_empty() && !active.signers.is_empty(),
        "{active:?}"
    );
    assert_eq!(policies.history.len(), 1);
    // The sign was decided and its outcome recorded: the log holds both, pages by seq, and
    // verifies.
    assert!(audit.entries.len() >= 2, "{:?}", audit.entries);
    assert_eq!(audit.head_seq, audit.entries.last().unwrap().seq);
    assert!(audit
        .entries
        .iter()
        .any(|e| e.request_id.as_deref() == Some(sign_id.as_str()) && e.kind == "decision"));
    assert_eq!(page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.entries, audit.head_seq);

    // /metrics parses as Prometheus text and counts what happened (once every peer's
    // heartbeat has arrived, so that the live count is settled).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let c = ApiClient::new(&url, token.clone());
        let peers = blocking(move || c.peers().unwrap()).await;
        if peers.peers.iter().all(|p| p.live) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "peers never all live: {peers:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (u, t) = (url.clone(), token.clone());
    let (code, text) = blocking(move || get(&format!("{u}{}", api::METRICS), Some(&t))).await;
    assert_eq!(code, 200);
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    let ok_signs = sample(
        &scrape,
        "keyrack_requests_total",
        &[("kind", "sign"), ("outcome", "ok")],
    );
    let stood_down = sample(
        &scrape,
        "keyrack_requests_total",
        &[("kind", "sign"), ("outcome", "stood_down")],
    );
    // 2 of 3 sign: node0 signed or stood down; its activity counts the signature it made.
    assert_eq!(
        ok_signs.unwrap_or(0.0) + stood_down.unwrap_or(0.0),
        1.0,
        "{text}"
    );
    assert_eq!(
        status.activity.signatures.iter().sum::<u64>() as f64,
        ok_signs.unwrap_or(0.0)
    );
    assert!(
        sample(
            &scrape,
            "keyrack_request_duration_seconds_count",
            &[("kind", "keygen")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        sample(
            &scrape,
            "keyrack_hsm_call_duration_seconds_count",
            &[("op", "seal")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(
        sample(&scrape, "keyrack_peers_live", &[]),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&scrape, "keyrack_requests_in_flight", &[]),
        Some(0.0),
        "{text}"
    );
}

/// A request of tom's that waits for approvals: 12 SOL from hot-1, over treasury.toml's
/// 10 SOL a day, so two approvals of the treasury group are needed.
struct Waiting {
    message: Vec<u8>,
    request_id: String,
    hash: [u8; 32],
    /// The SDK's wait for its outcome.
    outcome: tokio::task::JoinHandle<Result<Outcome, keyrack_client::sdk::SdkError>>,
}

/// Tom (his client `tom`, which must outlive the wait) submits the over-limit transfer
/// (`nonce` makes it distinct) from the treasury key.
async fn over_limit_transfer(cluster: &Cluster, tom: &Client, key: &[u8], nonce: u8) -> Waiting {
    let message = super::policy::transfer(key, 12 * 1_000_000_000, nonce);
    let body = tom.sign_chain_body(
        "hot-1",
        Scheme::Ed25519,
        "solana",
        &message,
        keyrack_client::request::PayloadKind::Transaction,
        &[],
        Duration::from_secs(120),
    );
    let request_id = body.request_id.clone();
    let hash = keyrack_client::request::InitiatorKey::load("tom", &cluster.key_path("tom"))
        .unwrap()
        .sign_request(&body)
        .unwrap()
        .hash();
    let pending = tom.submit(body).await.expect("submitted");
    Waiting {
        message,
        request_id,
        hash,
        outcome: tokio::spawn(async move { pending.wait(Duration::from_secs(120)).await }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_approvals_posted_to_one_nodes_api_reach_every_node_and_bad_ones_are_refused() {
    let (cluster, key) = super::policy::treasury_cluster(&["bob", "carol"]).await;
    let tom = cluster.client_as("tom", "tom").await;
    let Waiting {
        message,
        request_id,
        hash: submitted_hash,
        outcome: waiter,
    } = over_limit_transfer(&cluster, &tom, &key, 9).await;

    // Node1's API lists it, with what the plugin decoded and the rule that holds it.
    let (url, token) = cluster.api(1);
    let reader = std::sync::Arc::new(ApiClient::new(&url, token.clone()));
    let waiting = {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let reader = reader.clone();
            let listed = blocking(move || reader.approvals().unwrap()).await;
            if let Some(w) = listed
                .waiting
                .into_iter()
                .find(|w| w.request_id == request_id)
            {
                break w;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node1 never listed the request"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert_eq!(
        (waiting.initiator.as_str(), waiting.key_id.as_str()),
        ("tom", "hot-1")
    );
    assert_eq!(waiting.chain.as_deref(), Some("solana"));
    assert_eq!(
        waiting.intent["transfers"][0]["amount"],
        serde_json::json!(12_000_000_000u64),
        "{}",
        waiting.intent
    );
    assert!(
        waiting
            .decision
            .to_string()
            .contains("solana-over-daily-limit"),
        "{}",
        waiting.decision
    );
    let hash = keyrack_tui::approval::parse_hash(&waiting.request_hash).expect("a hash");
    assert_eq!(
        hash, submitted_hash,
        "the hash the API shows is the request's"
    );
    // An approver checks the listing against the signed request it carries: the signature
    // under their own manifest, the hash, and the payload decoded on their side to the very
    // intent the node shows (the console's decoder and the node's agree).
    let r = reader.clone();
    let keys = blocking(move || r.keys(None).unwrap()).await.keys;
    let trusted = trusted_keys(&cluster, "bob").await;
    assert_eq!(
        trusted.get("hot-1", Scheme::Ed25519).unwrap().public_key,
        key,
        "the nodes' signed answers agree on the keygen's key"
    );
    let checker = approver_trusting(&cluster, "bob", trusted.clone());
    let checked = checker
        .check(&waiting, &keys, keyrack_client::now_ms())
        .expect("the listing matches the signed request");
    assert_eq!(checked.request_hash, submitted_hash);
    assert_eq!(checked.request.asks, Asks::Sign);
    // An approver whose trusted keys hold another key for hot-1 (a tampered file, or a
    // node that lied when it was recorded) refuses to approve: the node lists another
    // public key. (Each may still reject what was signed: a rejection only stops it.)
    let mut tampered = TrustedKeys::empty(std::path::Path::new("trusted-keys.toml"));
    let mut other = trusted.get("hot-1", Scheme::Ed25519).unwrap().clone();
    other.public_key = ed25519_dalek::SigningKey::from_bytes(&[5; 32])
        .verifying_key()
        .to_bytes()
        .to_vec();
    tampered.record(other, false).unwrap();
    let refused = approver_trusting(&cluster, "bob", tampered)
        .check(&waiting, &keys, keyrack_client::now_ms())
        .unwrap()
        .mismatch
        .expect("not approved");
    assert!(refused.contains("the node may be compromised"), "{refused}");
    // One that does not trust hot-1 at all refuses too, saying how to trust it.
    let refused = approver_trusting(
        &cluster,
        "bob",
        TrustedKeys::empty(std::path::Path::new("t.toml")),
    )
    .check(&waiting, &keys, keyrack_client::now_ms())
    .unwrap()
    .mismatch
    .expect("not approved");
    assert!(refused.contains("keyrack client trust hot-1"), "{refused}");
    let mut lying = waiting.clone();
    lying.intent["transfers"][0]["amount"] = serde_json::json!(1);
    let refused = checker
        .check(&lying, &keys, keyrack_client::now_ms())
        .unwrap()
        .mismatch
        .expect("not approved");
    assert!(
        refused.contains("not what the signed payload decodes to"),
        "{refused}"
    );
    // It waits parked, listed as waiting for approvals, and holds no capacity: it is not
    // among the requests in flight.
    assert_eq!(
        (
            waiting.kind.as_str(),
            waiting.state,
            waiting.run_at_ms,
            waiting.initiator.as_str()
        ),
        (
            "sign",
            keyrack_client::api::WaitState::WaitingForApprovals,
            None,
            "tom"
        )
    );
    let r = reader.clone();
    let sessions = blocking(move || r.sessions().unwrap()).await;
    assert!(
        !sessions
            .live
            .iter()
            .any(|l| l.request_id == waiting.request_id),
        "a parked request is not in flight: {:?}",
        sessions.live
    );

    // Bad submissions are refused with the reason, and publish nothing.
    let stranger = keyrack_client::request::InitiatorKey::generate("mallory").unwrap();
    let forged = Approver::new(stranger, cluster.manifest().clone(), trusted, decoder())
        .sign(
            Verdict::Approve,
            &Checked {
                request_hash: hash,
                request: CheckedRequest {
                    kind: keyrack_client::request::RequestKind::Sign,
                    key_id: "hot-1".into(),
                    schemes: vec![Scheme::Ed25519],
                    asks: Asks::Sign,
                },
                mismatch: None,
                closed: None,
            },
            keyrack_client::now_ms(),
        )
        .unwrap();
    let not_approval = {
        let b = tom.new_request(keyrack_client::request::RequestKind::Status, "hot-1", WAIT);
        let k =
            keyrack_client::request::InitiatorKey::load("tom", &cluster.key_path("tom")).unwrap();
        api::SubmitRequest {
            signed_request: String::from_utf8(k.sign_request(&b).unwrap().to_json()).unwrap(),
        }
    };
    let (u, t) = (url.clone(), token.clone());
    let refused = blocking(move || {
        let to = format!("{u}{}", api::APPROVALS);
        [
            post(&to, &t, &serde_json::to_string(&forged).unwrap()),
            post(&to, &t, &serde_json::to_string(&not_approval).unwrap()),
            post(&to, &t, "{\"signed_request\": \"not json\"}"),
            post(&to, &t, "[]"),
            post(
                &to,
                &t,
                &format!("{{\"signed_request\": \"{}\"}}", "a".repeat(17 * 1024)),
            ),
        ]
    })
    .await;
    let codes: Vec<u16> = refused.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, [403, 400, 400, 400, 413], "{refused:?}");
    assert!(
        refused[0].1.contains("unknown initiator") || refused[0].1.contains("mallory"),
        "{}",
        refused[0].1
    );

    // Bob and carol approve through node1's API, the console's way: every node records
    // both and the request is signed. Node1 answers with every node's signed result for
    // each approval, which the approver checks under their own manifest.
    for who in ["bob", "carol"] {
        let approver = approver(&cluster, who).await;
        let approval = approver
            .sign(Verdict::Approve, &checked, keyrack_client::now_ms())
            .unwrap();
        let poster = ApiClient::new(&url, token.clone());
        let sent = approval.clone();
        let submitted = blocking(move || poster.submit(&sent))
            .await
            .expect("accepted");
        assert!(
            submitted.subject.ends_with(".approve"),
            "{}",
            submitted.subject
        );
        assert_eq!(submitted.results.len(), 3, "{:?}", submitted.results);
        let signed =
            keyrack_client::request::SignedRequest::parse(approval.signed_request.as_bytes())
                .unwrap();
        for json in &submitted.results {
            let result = keyrack_client::result::SignedResult::parse(json.as_bytes())
                .and_then(|r| r.verify_with(cluster.manifest()))
                .expect("a node's signed result");
            assert!(result.answers(&signed), "{result:?}");
            assert_eq!(
                result.status,
                keyrack_client::result::Status::Ok,
                "{result:?}"
            );
            assert!(
                result.message.contains(&format!("approval by '{who}'")),
                "{}",
                result.message
            );
        }
        let confirmed = approver.confirm(&approval, &submitted).unwrap();
        assert!(confirmed.complete(), "{confirmed:?}");
        assert_eq!(confirmed.recorded, cluster.node_ids());
        assert_eq!(confirmed.request_hash, hex::encode(hash));
    }
    let signed = match waiter.await.unwrap().expect("signed after two approvals") {
        Outcome::Signature(s) => s,
        other => panic!("a signature, not {other:?}"),
    };
    check_signature(&signed.signature, Scheme::Ed25519, &key, &message);
    // Each node's audit log holds both approvals.
    for i in 0..3 {
        let (u, t) = cluster.api(i);
        let c = ApiClient::new(&u, t);
        let audit = blocking(move || c.audit(0, 1000).unwrap()).await;
        let approvers: Vec<&str> = audit
            .entries
            .iter()
            .filter(|e| e.kind == "approval")
            .filter_map(|e| e.entry["approver"].as_str())
            .collect();
        assert!(
            approvers.contains(&"bob") && approvers.contains(&"carol"),
            "node{i}: {approvers:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_approving_from_the_console_lets_a_waiting_over_limit_transfer_be_signed() {
    let (cluster, key) = super::policy::treasury_cluster(&["bob", "carol"]).await;
    let tom = cluster.client_as("tom", "tom").await;
    let Waiting {
        message,
        request_id,
        hash,
        outcome: waiter,
    } = over_limit_transfer(&cluster, &tom, &key, 7).await;
    // Bob approves with the SDK: one of the two approvals the rule needs.
    let bob = cluster.client_as("bob", "bob").await;
    bob.approve(hash, Duration::from_secs(300), WAIT)
        .await
        .expect("bob's approval recorded");
    assert!(!waiter.is_finished(), "one approval of two signs nothing");

    // Carol, at node2's console: the console's own worker and state, driven by keys.
    let (url, token) = cluster.api(2);
    let carol = approver(&cluster, "carol").await;
    let expected = request_id.clone();
    let submitted = blocking(move || {
        use keyrack_tui::app::{Action, App, Update};
        use keyrack_tui::{KeyCode, KeyEvent, KeyModifiers};
        let (updates_tx, updates) = std::sync::mpsc::channel();
        let (actions, actions_rx) = std::sync::mpsc::channel();
        let worker = keyrack_tui::Worker::new(ApiClient::new(&url, token), Some(carol), updates_tx);
        let thread =
            std::thread::spawn(move || worker.run(Duration::from_millis(200), &actions_rx));
        let mut app = App::new(&url, Some("carol".into()));
        let press = |app: &mut App, c: char| {
            app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
        };
        let deadline = std::time::Instant::now() + WAIT;
        // Until the Approvals tab lists the request.
        while !app.waiting().iter().any(|w| w.request_id == expected) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let update = updates
                .recv_timeout(left)
                .expect("the console lists the request");
            app.apply(update);
        }
        assert_eq!(press(&mut app, '4'), None);
        let shown = app
            .selected_waiting()
            .expect("a selected request")
            .request_id
            .clone();
        assert_eq!(shown, expected);
        // `a` asks first; `y` signs and posts carol's approval.
        assert_eq!(press(&mut app, 'a'), None);
        let action = press(&mut app, 'y').expect("an action");
        assert!(
            matches!(&action, Action::Submit { request_id, .. } if *request_id == expected),
            "{action:?}"
        );
        actions.send(action).unwrap();
        let result = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match updates
                .recv_timeout(left)
                .expect("the worker reports the approval")
            {
                Update::Submitted { result, .. } => break result,
                other => app.apply(other),
            }
        };
        actions.send(Action::Quit).unwrap();
        thread.join().unwrap();
        result
    })
    .await
    .expect("node2 took carol's approval");
    // The console confirms it by every node's signed result, not by node2's 202.
    assert_eq!(submitted.verdict, Verdict::Approve);
    assert!(submitted.complete(), "{submitted:?}");
    assert_eq!(submitted.recorded, cluster.node_ids());
    assert_eq!(submitted.request_hash, hex::encode(hash));
    let signed = match waiter
        .await
        .unwrap()
        .expect("signed after the console's approval")
    {
        Outcome::Signature(s) => s,
        other => panic!("a signature, not {other:?}"),
    };
    check_signature(&signed.signature, Scheme::Ed25519, &key, &message);
}
