//! Three node daemons (soft sealers, real SQLite stores) on a real nats-server: keygen for
//! both FROST schemes, idempotent keygen, signing by t of n with every signature checked by
//! an independent library, and refusals reaching the client; ECDSA committee setup (made once
//! per committee, made again when a member lost its aux info), keygen and signing;
//! presignature / nonce pools filled in the background for hot signer sets and used by
//! signing (ECDSA and Ed25519), with a fallback when the signers' pools disagree.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use futures::StreamExt;
use keyrack_client::codes::ErrorCode;
use keyrack_client::manifest::{Admin, Initiator, Manifest, SignedManifest, VerifiedManifest};
use keyrack_client::request::{InitiatorKey, PayloadKind, RequestBody, RequestKind, SignedRequest};
use keyrack_client::result::{ResultBody, SignedResult, Status};
use keyrack_client::scheme::Scheme;
use keyrack_hsm::soft::SoftSealer;
use keyrack_hsm::Sealer;
use keyrack_node::daemon::policy::{policy_admins, PolicyGate};
use keyrack_node::daemon::{default_registry, ControlRouter, Node, Settings};
use keyrack_node::ecdsa::{committee_id, seed_fixture_primes, PrimeKeeper};
use keyrack_node::identity::NodeIdentity;
use keyrack_node::store::{SessionState, Store};
use keyrack_node::transport::Bus;
use keyrack_policy::{Bundle, SignedBundle, VerifiedBundle, BUNDLE_FORMAT};
use keyrack_tests::NatsServer;

const CLUSTER: &str = "c1";

struct Cluster {
    _server: NatsServer,
    _dirs: Vec<tempfile::TempDir>,
    /// Each node's store (node i at index i).
    stores: Vec<Arc<Store>>,
    /// The nodes.
    nodes: Vec<Arc<Node>>,
    /// Set node i's switch to make its HSM refuse to seal (a failing device).
    seal_fails: Vec<Arc<AtomicBool>>,
    client: Bus,
    alice: InitiatorKey,
    manifest: Arc<VerifiedManifest>,
    results: std::pin::Pin<
        Box<
            dyn futures::Stream<Item = Result<Vec<u8>, keyrack_node::transport::TransportError>>
                + Send,
        >,
    >,
}

/// A soft sealer whose seals fail while its switch is on (unseals always work).
struct Switchable {
    inner: SoftSealer,
    fail_seals: Arc<AtomicBool>,
}

impl Sealer for Switchable {
    fn backend(&self) -> keyrack_hsm::BackendId {
        self.inner.backend()
    }
    fn key_id(&self) -> &str {
        self.inner.key_id()
    }
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, keyrack_hsm::SealError> {
        if self.fail_seals.load(Ordering::SeqCst) {
            return Err(keyrack_hsm::SealError::Backend {
                backend: self.inner.backend(),
                operation: "encrypt",
                detail: "device removed (test switch)".into(),
            });
        }
        self.inner.seal(aad, plaintext)
    }
    fn unseal(
        &self,
        aad: &[u8],
        blob: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, keyrack_hsm::SealError> {
        self.inner.unseal(aad, blob)
    }
    fn health(&self) -> keyrack_hsm::Health {
        self.inner.health()
    }
}

async fn cluster() -> Cluster {
    cluster_with(Settings {
        leader_timeout: Duration::from_secs(2),
        ..Settings::default()
    })
    .await
}

/// The development policy (policies/examples/dev.toml): allows every request.
const DEV_POLICY: &str = include_str!("../../../policies/examples/dev.toml");

async fn cluster_with(settings: Settings) -> Cluster {
    cluster_with_policies(settings, [DEV_POLICY; 3]).await
}

/// A cluster whose node i starts with `policies[i]` (policy TOML text) as its active bundle.
async fn cluster_with_policies(settings: Settings, policies: [&str; 3]) -> Cluster {
    // KEYRACK_LOG=info (say) shows what the nodes do.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYRACK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_test_writer()
        .try_init();
    let server = NatsServer::start();
    let identities: Vec<Arc<NodeIdentity>> = (0..3)
        .map(|i| Arc::new(NodeIdentity::generate(&format!("node{i}")).unwrap()))
        .collect();
    let alice = InitiatorKey::generate("alice").unwrap();
    let admin = SigningKey::from_bytes(&[3; 32]);
    let officer = SigningKey::from_bytes(&[4; 32]);
    let manifest = Manifest {
        cluster_id: CLUSTER.into(),
        version: 1,
        previous: None,
        admin_threshold: 1,
        nodes: identities.iter().map(|n| n.public().unwrap()).collect(),
        initiators: vec![
            Initiator {
                id: "alice".into(),
                public_key: alice.public_key(),
                roles: vec![],
            },
            Initiator {
                id: "officer".into(),
                public_key: officer.verifying_key(),
                roles: vec!["policy-admin".into()],
            },
        ],
        admins: vec![Admin {
            id: "admin".into(),
            public_key: admin.verifying_key(),
        }],
    };
    let mut signed = SignedManifest::new(manifest).unwrap();
    signed.sign(&admin).unwrap();
    let manifest = Arc::new(signed.verify_bootstrap().unwrap());
    let mut dirs = vec![];
    let mut stores = vec![];
    let mut nodes = vec![];
    let mut seal_fails = vec![];
    for (i, identity) in identities.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            Store::open(&dir.path().join("node.db"), CLUSTER, identity.node_id()).unwrap(),
        );
        let switch = Arc::new(AtomicBool::new(false));
        seal_fails.push(switch.clone());
        let sealer: Arc<dyn Sealer> = Arc::new(Switchable {
            inner: SoftSealer::from_passphrase(b"test", &[1; 16]).unwrap(),
            fail_seals: switch,
        });
        // Two pairs of the plugin's public fixture primes per node (a different pair at each
        // node within one setup), so committee setup need not wait for prime generation.
        for pair in [i, i + 3] {
            seed_fixture_primes(&store, sealer.as_ref(), pair).unwrap();
        }
        let primes = Arc::new(PrimeKeeper::start(store.clone(), sealer.clone(), 0).unwrap());
        stores.push(store.clone());
        let node = Arc::new(Node {
            bus: Bus::connect(
                std::slice::from_ref(&server.url),
                identity.node_id(),
                CLUSTER,
            )
            .await
            .unwrap(),
            identity,
            membership: Arc::new(keyrack_node::membership::Membership::new(
                (*manifest).clone(),
            )),
            store,
            sealer,
            primes,
            peers: Arc::default(),
            pools: Arc::default(),
            key_ops: Arc::default(),
            policy: Arc::new(PolicyGate::new(Some(policy_bundle(
                policies[i],
                &manifest,
                &officer,
            )))),
            telemetry: Arc::default(),
            registry: default_registry(),
            settings,
            control: Arc::new(ControlRouter::default()),
        });
        nodes.push(node.clone());
        tokio::spawn(node.run());
        dirs.push(dir);
    }
    let client = Bus::connect(std::slice::from_ref(&server.url), "alice", CLUSTER)
        .await
        .unwrap();
    // The nodes create the streams; wait for them.
    let results = loop {
        if let Ok(r) = client.results("app").await {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // A node takes only the requests published after its consumer exists: wait until every
    // node pulls from its own (as `keyrack dev` does before it says the cluster is ready).
    let js = async_nats::jetstream::new(client.client().clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for node in &nodes {
        let consumer = keyrack_client::subjects::node_consumer(node.identity.node_id()).unwrap();
        loop {
            let pulling = match js
                .get_stream(keyrack_client::subjects::request_stream(CLUSTER).unwrap())
                .await
            {
                Ok(stream) => stream
                    .consumer_info(&consumer)
                    .await
                    .is_ok_and(|info| info.num_waiting > 0),
                Err(_) => false,
            };
            if pulling {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} never pulled from its request consumer",
                node.identity.node_id()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Cluster {
        _server: server,
        _dirs: dirs,
        stores,
        nodes,
        seal_fails,
        client,
        alice,
        manifest,
        results: Box::pin(results),
    }
}

/// `policy` (TOML text) as bundle version 1 signed by the cluster's policy officer.
fn policy_bundle(
    policy: &str,
    manifest: &VerifiedManifest,
    officer: &SigningKey,
) -> VerifiedBundle {
    let text = policy.to_owned();
    let mut bundle = SignedBundle::new(Bundle {
        format: BUNDLE_FORMAT,
        cluster_id: CLUSTER.into(),
        version: 1,
        previous: None,
        admin_threshold: 1,
        policy: text,
    });
    bundle.sign_as("officer", officer);
    bundle
        .verify(CLUSTER, &policy_admins(manifest), None)
        .unwrap()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

impl Cluster {
    async fn submit(&self, body: &RequestBody) -> SignedRequest {
        let signed = self.alice.sign_request(body).unwrap();
        self.client
            .publish_request(body.kind.as_str(), &body.request_id, signed.to_json())
            .await
            .unwrap();
        signed
    }

    /// Results for `request` (verified under the manifest), until `want` nodes answered.
    async fn results_for(
        &mut self,
        request: &SignedRequest,
        want: usize,
    ) -> BTreeMap<String, ResultBody> {
        let mut got = BTreeMap::new();
        while got.len() < want {
            let bytes = tokio::time::timeout(Duration::from_secs(240), self.results.next())
                .await
                .expect("results in time")
                .unwrap()
                .unwrap();
            let result = SignedResult::parse(&bytes).unwrap();
            let body = result
                .verify_with(&self.manifest)
                .expect("signed by a member");
            if body.answers(request) {
                got.insert(body.node_id.clone(), body);
            }
        }
        got
    }
}

fn keygen_body(key_id: &str, schemes: Vec<Scheme>) -> RequestBody {
    let mut body = RequestBody::new(
        RequestKind::Keygen,
        CLUSTER,
        key_id,
        "app",
        now_ms(),
        120_000,
    );
    body.schemes = schemes;
    body.threshold = Some(2);
    body
}

fn sign_body(key_id: &str, scheme: Scheme, payload: &[u8]) -> RequestBody {
    let mut body = RequestBody::new(RequestKind::Sign, CLUSTER, key_id, "app", now_ms(), 120_000);
    body.schemes = vec![scheme];
    body.payload = Some(payload.to_vec());
    body.payload_kind = Some(PayloadKind::Message);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keygen_then_sign_across_three_nodes() {
    let mut c = cluster().await;

    // Every node hears the others' heartbeats.
    let members: Vec<String> = (0..3).map(|i| format!("node{i}")).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for (i, node) in c.nodes.iter().enumerate() {
        let others: Vec<String> = members
            .iter()
            .filter(|m| **m != members[i])
            .cloned()
            .collect();
        while node.peers.live(&members) != others {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node{i} sees {:?} live",
                node.peers.live(&members)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Keygen of both FROST schemes for one wallet id: every node reports the same keys.
    let request = c
        .submit(&keygen_body(
            "wallet-1",
            vec![Scheme::Ed25519, Scheme::SchnorrSecp256k1],
        ))
        .await;
    let results = c.results_for(&request, 3).await;
    for r in results.values() {
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(r.keys.len(), 2);
    }
    let keys = results["node0"].keys.clone();
    assert!(
        results.values().all(|r| r.keys == keys),
        "nodes disagree on the keys"
    );
    let ed_key = keys
        .iter()
        .find(|k| k.scheme == Scheme::Ed25519)
        .unwrap()
        .public_key
        .clone();
    let tr_key = keys
        .iter()
        .find(|k| k.scheme == Scheme::SchnorrSecp256k1)
        .unwrap()
        .public_key
        .clone();

    // Keygen again: idempotent, the same keys, nothing new generated.
    let again = c
        .submit(&keygen_body(
            "wallet-1",
            vec![Scheme::Ed25519, Scheme::SchnorrSecp256k1],
        ))
        .await;
    let again = c.results_for(&again, 3).await;
    assert!(again
        .values()
        .all(|r| r.status == Status::Ok && r.keys == keys));

    // The same id with another threshold is refused, not answered with the existing key.
    let mut other = keygen_body("wallet-1", vec![Scheme::Ed25519]);
    other.threshold = Some(3);
    let other = c.submit(&other).await;
    let refused = c.results_for(&other, 3).await;
    assert!(
        refused
            .values()
            .all(|r| r.status == Status::Refused
                && r.code == Some(ErrorCode::KeyExistsWithOtherParams)),
        "{refused:?}"
    );

    // Ed25519 signature by 2 of 3, verified with ed25519-dalek.
    let request = c
        .submit(&sign_body(
            "wallet-1",
            Scheme::Ed25519,
            b"pay 1 unit to bob",
        ))
        .await;
    let signed = c.results_for(&request, 2).await;
    assert_eq!(signed.len(), 2, "exactly the two signers answer");
    for r in signed.values() {
        let sig = r.signature.as_ref().expect("a signature");
        assert_eq!(sig.public_key, ed_key);
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(&ed_key.clone().try_into().unwrap()).unwrap();
        key.verify_strict(
            b"pay 1 unit to bob",
            &ed25519_dalek::Signature::from_bytes(&sig.signature),
        )
        .unwrap();
    }

    // BIP-340 over SHA-256 of the message, verified with k256.
    let request = c
        .submit(&sign_body(
            "wallet-1",
            Scheme::SchnorrSecp256k1,
            b"taproot spend",
        ))
        .await;
    let signed = c.results_for(&request, 2).await;
    let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(b"taproot spend").into();
    for r in signed.values() {
        let sig = r.signature.as_ref().unwrap();
        assert_eq!(sig.digest_or_message, digest);
        let key = k256::schnorr::VerifyingKey::from_bytes(&tr_key).unwrap();
        key.verify_raw(
            &digest,
            &k256::schnorr::Signature::try_from(&sig.signature[..]).unwrap(),
        )
        .unwrap();
    }

    // Unknown key: every node refuses, with the code.
    let request = c
        .submit(&sign_body("no-such-wallet", Scheme::Ed25519, b"x"))
        .await;
    let refused = c.results_for(&request, 3).await;
    assert!(
        refused
            .values()
            .all(|r| r.status == Status::Refused && r.code == Some(ErrorCode::UnknownKey)),
        "{refused:?}"
    );
    // Every node keeps a record of each request it worked on, with how it ended: what a
    // redelivery after a crash is answered from.
    let refused_id = refused["node0"].request_id.clone();
    let signed_id = signed.values().next().unwrap().request_id.clone();
    for (i, store) in c.stores.iter().enumerate() {
        let record = store
            .session(&refused_id)
            .unwrap()
            .expect("a session record");
        assert_eq!(record.state, SessionState::Failed, "node{i}");
        assert!(
            record
                .error
                .as_deref()
                .unwrap_or("")
                .starts_with("unknown_key"),
            "node{i}: {record:?}"
        );
        let record = store
            .session(&signed_id)
            .unwrap()
            .expect("a session record");
        assert_eq!(record.state, SessionState::Completed, "node{i}: {record:?}");
    }
}

fn fingerprints(c: &Cluster) -> Vec<Option<[u8; 32]>> {
    let committee = committee_id(CLUSTER, &["node0".into(), "node1".into(), "node2".into()]);
    c.stores
        .iter()
        .map(|s| s.committee_fingerprint(&committee).unwrap())
        .collect()
}

/// Signs SHA-256 of `message` with the ECDSA key and checks every answer with k256 alone:
/// the signature verifies, s is low, and `v` recovers the public key.
/// Returns the signers' node ids (in member order).
async fn ecdsa_sign_and_verify(
    c: &mut Cluster,
    key_id: &str,
    public_key: &[u8],
    message: &[u8],
) -> Vec<String> {
    let request = c
        .submit(&sign_body(key_id, Scheme::EcdsaSecp256k1, message))
        .await;
    let signed = c.results_for(&request, 2).await;
    let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(message).into();
    let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(public_key).unwrap();
    for r in signed.values() {
        assert_eq!(r.status, Status::Ok, "{r:?}");
        let info = r.signature.as_ref().expect("a signature");
        assert_eq!(info.digest_or_message, digest);
        assert_eq!(info.public_key, public_key);
        let sig = k256::ecdsa::Signature::from_slice(&info.signature).unwrap();
        assert!(sig.normalize_s().is_none(), "low s");
        use k256::ecdsa::signature::hazmat::PrehashVerifier;
        key.verify_prehash(&digest, &sig).unwrap();
        let v = k256::ecdsa::RecoveryId::from_byte(info.v.expect("v")).unwrap();
        let recovered = k256::ecdsa::VerifyingKey::recover_from_prehash(&digest, &sig, v).unwrap();
        assert_eq!(recovered, key);
        assert_eq!(info.r.unwrap()[..], info.signature[..32]);
        assert_eq!(info.s.unwrap()[..], info.signature[32..]);
    }
    assert_eq!(signed.len(), 2, "exactly the two signers answer");
    signed.into_keys().collect()
}

async fn ecdsa_keygen(c: &mut Cluster, key_id: &str) -> Vec<u8> {
    let request = c
        .submit(&keygen_body(key_id, vec![Scheme::EcdsaSecp256k1]))
        .await;
    let results = c.results_for(&request, 3).await;
    for r in results.values() {
        assert_eq!(r.status, Status::Ok, "{r:?}");
    }
    let keys = results["node0"].keys.clone();
    assert!(results.values().all(|r| r.keys == keys), "nodes disagree");
    assert_eq!(keys[0].scheme, Scheme::EcdsaSecp256k1);
    keys[0].public_key.clone()
}

/// Creates an Ed25519 key (2 of 3) that every node reports the same; returns its public key.
async fn ed25519_keygen(c: &mut Cluster, key_id: &str) -> Vec<u8> {
    let request = c.submit(&keygen_body(key_id, vec![Scheme::Ed25519])).await;
    let results = c.results_for(&request, 3).await;
    assert!(
        results.values().all(|r| r.status == Status::Ok),
        "{results:?}"
    );
    let keys = results["node0"].keys.clone();
    assert!(results.values().all(|r| r.keys == keys), "nodes disagree");
    keys[0].public_key.clone()
}

/// Small pools (`presign_pool` per hot signer set), so that tests fill them fast.
fn pool_settings(presign_pool: usize) -> Settings {
    Settings {
        leader_timeout: Duration::from_secs(2),
        presign_pool,
        ..Settings::default()
    }
}

/// Pools never grow past what was asked for: `presign_pool` at a set's leader, twice that at
/// another member.
fn assert_pools_bounded(c: &Cluster) {
    for (s, node) in c.stores.iter().zip(&c.nodes) {
        for level in s.pool_levels().unwrap() {
            assert!(
                level.available <= 2 * node.settings.presign_pool as u64,
                "{level:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ecdsa_committee_setup_once_per_committee_then_keygen_and_sign() {
    // One pool entry per hot set: ECDSA presigning costs ≈ 1.4 s of CPU per signer.
    let mut c = cluster_with(pool_settings(1)).await;
    assert_eq!(fingerprints(&c), [None, None, None]);
    let pools: Vec<usize> = c.stores.iter().map(|s| s.prime_count().unwrap()).collect();
    assert_eq!(pools, [2, 2, 2]);

    // The first ECDSA key of the committee runs committee setup: one pair of primes used at
    // each node, and every node holds aux info with the same public fingerprint.
    let first = ecdsa_keygen(&mut c, "eth-1").await;
    let setup = fingerprints(&c);
    assert!(
        setup[0].is_some() && setup.iter().all(|f| *f == setup[0]),
        "{setup:?}"
    );
    let pools: Vec<usize> = c.stores.iter().map(|s| s.prime_count().unwrap()).collect();
    assert_eq!(pools, [1, 1, 1], "one pair used per node");
    ecdsa_sign_and_verify(&mut c, "eth-1", &first, b"send 1 eth").await;

    // A second key reuses the committee's aux info: no setup, no primes used.
    let second = ecdsa_keygen(&mut c, "eth-2").await;
    assert_ne!(first, second);
    assert_eq!(fingerprints(&c), setup);
    let pools: Vec<usize> = c.stores.iter().map(|s| s.prime_count().unwrap()).collect();
    assert_eq!(pools, [1, 1, 1]);
    ecdsa_sign_and_verify(&mut c, "eth-2", &second, b"send 2 eth").await;

    // A member that lost its aux info (a replaced store, say) makes the whole committee run
    // setup again, and every member ends with the same new aux info; older keys still sign.
    let conn = rusqlite::Connection::open(c.stores[1].path()).unwrap();
    conn.execute("DELETE FROM committee_aux", []).unwrap();
    drop(conn);
    assert_eq!(fingerprints(&c)[1], None);
    let third = ecdsa_keygen(&mut c, "eth-3").await;
    let again = fingerprints(&c);
    assert!(
        again[0].is_some() && again.iter().all(|f| *f == again[0]),
        "{again:?}"
    );
    assert_ne!(again, setup, "a new setup");
    ecdsa_sign_and_verify(&mut c, "eth-3", &third, b"send 3 eth").await;
    ecdsa_sign_and_verify(&mut c, "eth-1", &first, b"an older key still signs").await;

    // Presignature pools: hot signer sets get them, signing uses them (≈ 1.5 ms of protocol
    // instead of ≈ 1.4 s), and signers whose pools disagree still sign.
    signing_uses_the_pools(&mut c, "eth-3", Scheme::EcdsaSecp256k1, &third, 1).await;
    assert_pools_bounded(&c);
}

/// Signs `message` with the Ed25519 key, checks every answer with ed25519-dalek and returns
/// the signers' node ids (in member order).
async fn ed25519_sign_and_verify(
    c: &mut Cluster,
    key_id: &str,
    public_key: &[u8],
    message: &[u8],
) -> Vec<String> {
    let request = c.submit(&sign_body(key_id, Scheme::Ed25519, message)).await;
    let signed = c.results_for(&request, 2).await;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&public_key.try_into().unwrap()).unwrap();
    for r in signed.values() {
        assert_eq!(r.status, Status::Ok, "{r:?}");
        let info = r.signature.as_ref().expect("a signature");
        assert_eq!(info.public_key, public_key);
        key.verify_strict(
            message,
            &ed25519_dalek::Signature::from_bytes(&info.signature),
        )
        .unwrap();
    }
    assert_eq!(signed.len(), 2, "exactly the two signers answer");
    signed.into_keys().collect()
}

/// One pool entry as a node's store file holds it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    id: String,
    key_id: String,
    scheme: String,
    /// Signers' key indices (= node numbers here), in session order.
    signers: Vec<u16>,
    used: bool,
}

/// Every pool entry of node `i`, read from its store file.
fn entries(c: &Cluster, i: usize) -> Vec<Entry> {
    let conn = rusqlite::Connection::open(c.stores[i].path()).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, key_id, scheme, signers, state FROM presignatures ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| {
        let signers: String = r.get(3)?;
        Ok(Entry {
            id: r.get(0)?,
            key_id: r.get(1)?,
            scheme: r.get(2)?,
            signers: serde_json::from_str(&signers).unwrap(),
            used: r.get::<_, String>(4)? == "USED",
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn node_index(node: &str) -> usize {
    node.strip_prefix("node").unwrap().parse().unwrap()
}

/// Ids AVAILABLE at every node of `signers` for (`key_id`, `scheme`, that signer set).
fn common_available(c: &Cluster, key_id: &str, scheme: Scheme, signers: &[String]) -> Vec<String> {
    let set: Vec<u16> = signers.iter().map(|s| node_index(s) as u16).collect();
    let per_node: Vec<BTreeSet<String>> = signers
        .iter()
        .map(|s| {
            entries(c, node_index(s))
                .into_iter()
                .filter(|e| {
                    !e.used && e.key_id == key_id && e.scheme == scheme.as_str() && e.signers == set
                })
                .map(|e| e.id)
                .collect()
        })
        .collect();
    per_node[0]
        .iter()
        .filter(|id| per_node[1..].iter().all(|p| p.contains(*id)))
        .cloned()
        .collect()
}

/// Waits until the signers of `signers` hold `want` presignatures in common.
async fn wait_for_pool(c: &Cluster, key_id: &str, scheme: Scheme, signers: &[String], want: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let common = common_available(c, key_id, scheme, signers);
        if common.len() >= want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{signers:?} hold {} {} presignatures in common, want {want}; levels: {:?}",
            common.len(),
            scheme.as_str(),
            c.stores
                .iter()
                .map(|s| s.pool_levels().unwrap())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ids USED at each node.
fn used_ids(c: &Cluster) -> Vec<BTreeSet<String>> {
    (0..3)
        .map(|i| {
            entries(c, i)
                .into_iter()
                .filter(|e| e.used)
                .map(|e| e.id)
                .collect()
        })
        .collect()
}

/// What one signing used: the ids newly USED at each signer must be one and the same id, or
/// none at all, and nothing at the node left out. Returns that id.
fn used_by_signing(
    before: &[BTreeSet<String>],
    after: &[BTreeSet<String>],
    signers: &[String],
) -> Option<String> {
    let new: Vec<BTreeSet<String>> = (0..3)
        .map(|i| after[i].difference(&before[i]).cloned().collect())
        .collect();
    for i in 0..3 {
        assert!(before[i].is_subset(&after[i]), "a USED entry came back");
        if !signers.contains(&format!("node{i}")) {
            assert!(
                new[i].is_empty(),
                "node{i} did not sign but used {:?}",
                new[i]
            );
        }
    }
    let at_signers: Vec<&BTreeSet<String>> = signers.iter().map(|s| &new[node_index(s)]).collect();
    assert!(
        at_signers.iter().all(|n| *n == at_signers[0]) && at_signers[0].len() <= 1,
        "signers {signers:?} used {at_signers:?}"
    );
    at_signers[0].first().cloned()
}

/// No presignature id is USED at one node and AVAILABLE at another.
fn assert_never_half_used(c: &Cluster) {
    let mut state: BTreeMap<String, BTreeSet<bool>> = BTreeMap::new();
    for i in 0..3 {
        for e in entries(c, i) {
            state.entry(e.id).or_default().insert(e.used);
        }
    }
    let half: Vec<&String> = state
        .iter()
        .filter(|(_, s)| s.len() > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(
        half.is_empty(),
        "used at one node, available at another: {half:?}"
    );
}

/// Deletes the AVAILABLE entries `ids` of node `i` from its store file (a lost entry).
fn delete_entries(c: &Cluster, i: usize, ids: &[String]) {
    let conn = rusqlite::Connection::open(c.stores[i].path()).unwrap();
    for id in ids {
        let n = conn
            .execute(
                "DELETE FROM presignatures WHERE id = ?1 AND state = 'AVAILABLE'",
                [id],
            )
            .unwrap();
        assert_eq!(n, 1, "{id} at node{i}");
    }
}

/// The signer sets of (`key_id`, `scheme`) some node holds hot.
fn hot_sets(c: &Cluster, key_id: &str, scheme: Scheme) -> BTreeSet<Vec<String>> {
    c.nodes
        .iter()
        .flat_map(|n| n.pools.hot(n.settings.hot_window))
        .filter(|p| p.key_id == key_id && p.scheme == scheme.as_str())
        .map(|p| p.signers)
        .collect()
}

/// The AVAILABLE ids of node `i` for (`key_id`, `scheme`, `set`).
fn available_at(
    c: &Cluster,
    i: usize,
    key_id: &str,
    scheme: Scheme,
    set: &[String],
) -> BTreeSet<String> {
    let signers: Vec<u16> = set.iter().map(|s| node_index(s) as u16).collect();
    entries(c, i)
        .into_iter()
        .filter(|e| {
            !e.used && e.key_id == key_id && e.scheme == scheme.as_str() && e.signers == signers
        })
        .map(|e| e.id)
        .collect()
}

/// Waits until the leader of `set` holds `target` entries, each also held by the other
/// member unless it was deleted there: the leader's pool is full and no refill is under way.
async fn wait_for_full_pool(
    c: &Cluster,
    key_id: &str,
    scheme: Scheme,
    set: &[String],
    target: usize,
    deleted: &BTreeSet<String>,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let leader = available_at(c, node_index(&set[0]), key_id, scheme, set);
        let member = available_at(c, node_index(&set[1]), key_id, scheme, set);
        if leader.len() >= target
            && leader
                .iter()
                .all(|id| member.contains(id) || deleted.contains(id))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{set:?}: leader holds {leader:?}, member {member:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs with (`key_id`, `scheme`) until a signing by a hot signer set has used a pool entry
/// both signers held; then makes the signers' pools disagree and signs again. `target` is the
/// nodes' `presign_pool`.
async fn signing_uses_the_pools(
    c: &mut Cluster,
    key_id: &str,
    scheme: Scheme,
    public_key: &[u8],
    target: usize,
) {
    async fn sign(
        c: &mut Cluster,
        key_id: &str,
        scheme: Scheme,
        pk: &[u8],
        n: usize,
    ) -> Vec<String> {
        let message = format!("pooled signature {n}");
        match scheme {
            Scheme::EcdsaSecp256k1 => {
                ecdsa_sign_and_verify(c, key_id, pk, message.as_bytes()).await
            }
            Scheme::Ed25519 => ed25519_sign_and_verify(c, key_id, pk, message.as_bytes()).await,
            other => panic!("no verifier for {}", other.as_str()),
        }
    }
    // Which two of three sign is the coordinator's choice. A set that signed is hot and its
    // first member fills its pool; a signing by a hot set (pools filled) must use an entry
    // both hold, a set's first signing cannot. Only three sets exist, so within four
    // signings one is by a hot set.
    let mut presigned = None;
    for n in 0..4 {
        let hot = hot_sets(c, key_id, scheme);
        for set in &hot {
            wait_for_pool(c, key_id, scheme, set, 1).await;
        }
        let common: BTreeMap<Vec<String>, Vec<String>> = hot
            .iter()
            .map(|set| (set.clone(), common_available(c, key_id, scheme, set)))
            .collect();
        let before = used_ids(c);
        let signers = sign(c, key_id, scheme, public_key, n).await;
        let used = used_by_signing(&before, &used_ids(c), &signers);
        assert_never_half_used(c);
        match common.get(&signers) {
            Some(common) => {
                let used = used.expect("a hot set signed without its pool");
                assert!(common.contains(&used), "{used} was not held by both");
                presigned = Some(used);
                break;
            }
            None => assert_eq!(used, None, "{signers:?} had no pool yet"),
        }
    }
    assert!(presigned.is_some(), "no signing used a pool entry");

    // The signers' pools disagree: every hot set's second member loses the oldest entry it
    // shares with the first (whose own pool stays full, so it does not refill). Signing
    // still works, never with an entry one of them lacks, and no entry ends used at one
    // node and available at another.
    let mut deleted = BTreeSet::new();
    if target >= 2 {
        for set in &hot_sets(c, key_id, scheme) {
            wait_for_full_pool(c, key_id, scheme, set, target, &deleted).await;
            let oldest = common_available(c, key_id, scheme, set)[0].clone();
            delete_entries(c, node_index(&set[1]), std::slice::from_ref(&oldest));
            deleted.insert(oldest);
        }
        let before = used_ids(c);
        let signers = sign(c, key_id, scheme, public_key, 10).await;
        let used = used_by_signing(&before, &used_ids(c), &signers);
        assert!(
            used.as_ref().is_none_or(|u| !deleted.contains(u)),
            "{used:?} was lost at a signer"
        );
        assert_never_half_used(c);
    }

    // Every hot set's second member loses all its entries while the first keeps a full pool:
    // no two signers hold an entry in common, so whoever signs runs the full protocol.
    for set in &hot_sets(c, key_id, scheme) {
        wait_for_full_pool(c, key_id, scheme, set, target, &deleted).await;
        let member = node_index(&set[1]);
        let lost: Vec<String> = available_at(c, member, key_id, scheme, set)
            .into_iter()
            .collect();
        delete_entries(c, member, &lost);
        deleted.extend(lost);
    }
    let before = used_ids(c);
    let signers = sign(c, key_id, scheme, public_key, 11).await;
    assert_eq!(
        used_by_signing(&before, &used_ids(c), &signers),
        None,
        "{signers:?} used an entry though no two signers shared one"
    );
    assert_never_half_used(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ed25519_nonce_pools_fill_for_hot_signer_sets_and_signing_uses_them() {
    let mut c = cluster_with(pool_settings(2)).await;
    let ed = ed25519_keygen(&mut c, "ed-pool").await;
    // Pools exist only for keys that were signed with.
    assert!(c.stores.iter().all(|s| s.pool_levels().unwrap().is_empty()));
    signing_uses_the_pools(&mut c, "ed-pool", Scheme::Ed25519, &ed, 2).await;
    assert_pools_bounded(&c);
}

fn lifecycle_body(kind: RequestKind, key_id: &str, schemes: Vec<Scheme>) -> RequestBody {
    let mut body = RequestBody::new(kind, CLUSTER, key_id, "app", now_ms(), 120_000);
    body.schemes = schemes;
    body
}

/// Each store's (version, share versions held, staged share?) of a key.
fn key_versions(c: &Cluster, key_id: &str, scheme: Scheme) -> Vec<(u32, Vec<u32>, bool)> {
    c.stores
        .iter()
        .map(|s| {
            let record = s.key(key_id, scheme.as_str()).unwrap().expect("a record");
            let conn = rusqlite::Connection::open(s.path()).unwrap();
            let mut stmt = conn
                .prepare("SELECT version FROM key_shares WHERE key_id = ?1 AND scheme = ?2 ORDER BY version")
                .unwrap();
            let held = stmt
                .query_map((key_id, scheme.as_str()), |r| r.get(0))
                .unwrap()
                .collect::<Result<Vec<u32>, _>>()
                .unwrap();
            let staged = s.staged(key_id, scheme.as_str()).unwrap().is_some();
            (record.version, held, staged)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_reshare_and_delete_keep_the_key_and_erase_old_shares() {
    let mut c = cluster().await;
    let request = c
        .submit(&keygen_body(
            "wallet-l",
            vec![Scheme::Ed25519, Scheme::EcdsaSecp256k1],
        ))
        .await;
    let results = c.results_for(&request, 3).await;
    assert!(
        results.values().all(|r| r.status == Status::Ok),
        "{results:?}"
    );
    let key_of = |scheme: Scheme| {
        results["node0"]
            .keys
            .iter()
            .find(|k| k.scheme == scheme)
            .unwrap()
            .clone()
    };
    let (ed, ec) = (key_of(Scheme::Ed25519), key_of(Scheme::EcdsaSecp256k1));

    // Refresh both: version 2 everywhere, same keys, only version-2 shares left.
    let request = c
        .submit(&lifecycle_body(
            RequestKind::Refresh,
            "wallet-l",
            vec![Scheme::Ed25519, Scheme::EcdsaSecp256k1],
        ))
        .await;
    let results = c.results_for(&request, 3).await;
    for r in results.values() {
        assert_eq!(r.status, Status::Ok, "{r:?}");
        for k in &r.keys {
            let before = if k.scheme == Scheme::Ed25519 {
                &ed
            } else {
                &ec
            };
            assert_eq!((k.version, k.threshold), (2, 2));
            assert_eq!(
                (&k.public_key, k.chain_code),
                (&before.public_key, before.chain_code)
            );
            assert_eq!(k.participants, before.participants);
        }
    }
    for scheme in [Scheme::Ed25519, Scheme::EcdsaSecp256k1] {
        assert_eq!(
            key_versions(&c, "wallet-l", scheme),
            vec![(2, vec![2], false); 3]
        );
    }
    ecdsa_sign_and_verify(&mut c, "wallet-l", &ec.public_key, b"after refresh").await;

    // Reshare Ed25519 to 3 of 3: every node must sign now.
    let mut body = lifecycle_body(RequestKind::Reshare, "wallet-l", vec![Scheme::Ed25519]);
    body.threshold = Some(3);
    let request = c.submit(&body).await;
    let results = c.results_for(&request, 3).await;
    for r in results.values() {
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!((r.keys[0].version, r.keys[0].threshold), (3, 3));
        assert_eq!(r.keys[0].public_key, ed.public_key);
    }
    assert_eq!(
        key_versions(&c, "wallet-l", Scheme::Ed25519),
        vec![(3, vec![3], false); 3]
    );
    let request = c
        .submit(&sign_body("wallet-l", Scheme::Ed25519, b"three of three"))
        .await;
    let signed = c.results_for(&request, 3).await;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&ed.public_key.clone().try_into().unwrap())
        .unwrap();
    for r in signed.values() {
        let sig = r.signature.as_ref().expect("a signature");
        key.verify_strict(
            b"three of three",
            &ed25519_dalek::Signature::from_bytes(&sig.signature),
        )
        .unwrap();
    }

    // Delete both: tombstones, no share bytes, signing and keygen refused.
    let request = c
        .submit(&lifecycle_body(
            RequestKind::Delete,
            "wallet-l",
            vec![Scheme::Ed25519, Scheme::EcdsaSecp256k1],
        ))
        .await;
    let results = c.results_for(&request, 3).await;
    assert!(
        results.values().all(|r| r.status == Status::Ok),
        "{results:?}"
    );
    for s in &c.stores {
        for scheme in [Scheme::Ed25519, Scheme::EcdsaSecp256k1] {
            let record = s.key("wallet-l", scheme.as_str()).unwrap().unwrap();
            assert_eq!(record.status, keyrack_node::store::KeyStatus::Deleted);
        }
    }
    for scheme in [Scheme::Ed25519, Scheme::EcdsaSecp256k1] {
        assert!(key_versions(&c, "wallet-l", scheme)
            .iter()
            .all(|(_, held, staged)| held.is_empty() && !staged));
    }
    let request = c
        .submit(&sign_body("wallet-l", Scheme::Ed25519, b"no"))
        .await;
    let refused = c.results_for(&request, 3).await;
    assert!(
        refused
            .values()
            .all(|r| r.code == Some(ErrorCode::KeyDeleted)),
        "{refused:?}"
    );
    let request = c
        .submit(&keygen_body("wallet-l", vec![Scheme::Ed25519]))
        .await;
    let refused = c.results_for(&request, 3).await;
    assert!(
        refused
            .values()
            .all(|r| r.code == Some(ErrorCode::KeyDeleted)),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_that_cannot_keep_its_new_share_stops_the_commit_and_the_next_refresh_clears_up() {
    let mut c = cluster().await;
    let key = ed25519_keygen(&mut c, "wallet-f").await;

    // node2's HSM refuses to seal: it votes no, nobody commits, the old version stays.
    c.seal_fails[2].store(true, Ordering::SeqCst);
    let request = c
        .submit(&lifecycle_body(
            RequestKind::Refresh,
            "wallet-f",
            vec![Scheme::Ed25519],
        ))
        .await;
    let results = c.results_for(&request, 3).await;
    for r in results.values() {
        assert_eq!(r.code, Some(ErrorCode::ProtocolFailed), "{r:?}");
        assert!(
            r.message.contains("node2 could not keep the new share"),
            "{r:?}"
        );
    }
    let after = key_versions(&c, "wallet-f", Scheme::Ed25519);
    assert_eq!(
        after,
        vec![(1, vec![1], true), (1, vec![1], true), (1, vec![1], false)]
    );
    // The key signs at version 1; status tells of the staged shares left.
    ed25519_sign_and_verify(&mut c, "wallet-f", &key, b"still at version 1").await;
    let mut status = RequestBody::new(
        RequestKind::Status,
        CLUSTER,
        "wallet-f",
        "app",
        now_ms(),
        60_000,
    );
    status.schemes = vec![Scheme::Ed25519];
    let request = c.submit(&status).await;
    let results = c.results_for(&request, 3).await;
    assert!(
        results["node0"]
            .message
            .contains("staged share of version 2"),
        "{results:?}"
    );
    assert_eq!(results["node2"].message, "");

    // With the HSM back, the next refresh discards the leftovers and commits version 2.
    c.seal_fails[2].store(false, Ordering::SeqCst);
    let request = c
        .submit(&lifecycle_body(
            RequestKind::Refresh,
            "wallet-f",
            vec![Scheme::Ed25519],
        ))
        .await;
    let results = c.results_for(&request, 3).await;
    assert!(
        results
            .values()
            .all(|r| r.status == Status::Ok && r.keys[0].version == 2),
        "{results:?}"
    );
    assert_eq!(
        key_versions(&c, "wallet-f", Scheme::Ed25519),
        vec![(2, vec![2], false); 3]
    );
    ed25519_sign_and_verify(&mut c, "wallet-f", &key, b"at version 2").await;
}

/// A policy that denies every signature (and lets keys be created).
const DENY_ALL: &str = "format = 1\n[[rules]]\nid = \"deny-all\"\neffect = \"deny\"\n\
                        [[rules]]\nid = \"keys\"\neffect = \"allow\"\noperations = [\"keygen\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signing_that_times_out_releases_its_velocity_reservation() {
    // node0 allows everything; node1 and node2 deny everything: node0 reserves, but no other
    // node is ready, so its handshake times out — and its reservation must be released.
    let mut c = cluster_with_policies(
        Settings {
            leader_timeout: Duration::from_millis(500),
            ..Settings::default()
        },
        [DEV_POLICY, DENY_ALL, DENY_ALL],
    )
    .await;
    ed25519_keygen(&mut c, "wallet-v").await;
    let body = sign_body("wallet-v", Scheme::Ed25519, b"pay once");
    let request = c.submit(&body).await;
    let results = c.results_for(&request, 3).await;
    for node in ["node1", "node2"] {
        let r = &results[node];
        assert_eq!(
            (r.status, r.code),
            (Status::Refused, Some(ErrorCode::PolicyDenied)),
            "{r:?}"
        );
        assert!(
            r.message.contains("deny-all"),
            "names the rule: {}",
            r.message
        );
    }
    let r = &results["node0"];
    assert_eq!(
        (r.status, r.code),
        (Status::Failed, Some(ErrorCode::Timeout)),
        "{r:?}"
    );
    // Nothing stays reserved at node0 for the request that was never signed.
    let usage = c.stores[0]
        .usage(&keyrack_node::store::VelocityQuery {
            per: keyrack_node::store::VelocityPer::Key,
            key_id: "wallet-v",
            initiator: "alice",
            destination: None,
            asset: None,
            since_ms: 0,
        })
        .unwrap();
    assert_eq!(usage, (0, 0), "the timed-out signing left a reservation");
    // node0's audit log holds its decision (allow) and the outcome (failed), and verifies.
    let page = c.stores[0].audit_page(0, 100).unwrap();
    let about: Vec<_> = page
        .iter()
        .filter(|e| e.request_id.as_deref() == Some(body.request_id.as_str()))
        .collect();
    assert_eq!(
        about.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["decision", "outcome"]
    );
    assert!(
        about[0].entry.contains("\"outcome\":\"allow\""),
        "{}",
        about[0].entry
    );
    assert!(about[1].entry.contains("\"failed\""), "{}", about[1].entry);
    let key = c.nodes[0].identity.signing_key().verifying_key();
    assert!(c.stores[0].verify_audit_log(&key).unwrap().is_ok());
}

/// One signing per key per hour (and keys may be created).
const ONE_PER_HOUR: &str = "format = 1\n[[rules]]\nid = \"one-per-hour\"\neffect = \"allow\"\n\
                            plain_message = true\n\
                            within_limits = [{ per = \"key\", window = \"1h\", max_count = 1 }]\n\
                            [[rules]]\nid = \"keys\"\neffect = \"allow\"\noperations = [\"keygen\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_requests_decided_at_once_never_both_fit_one_limit() {
    // Each node allows one signing of the key per hour. Two requests sent together: each node
    // reads the limit and reserves under one lock, so it allows at most one of them, and with
    // 2 of 3 needed to sign, at most one request is ever signed.
    let mut c = cluster_with_policies(
        Settings {
            leader_timeout: Duration::from_millis(500),
            ..Settings::default()
        },
        [ONE_PER_HOUR; 3],
    )
    .await;
    ed25519_keygen(&mut c, "wallet-l").await;
    let first = c
        .submit(&sign_body("wallet-l", Scheme::Ed25519, b"first"))
        .await;
    let second = c
        .submit(&sign_body("wallet-l", Scheme::Ed25519, b"second"))
        .await;
    // Read until each request is decided: two ok (signed), or two other answers (it can no
    // longer get the two signers it needs).
    let mut got = [BTreeMap::new(), BTreeMap::new()];
    let decided = |m: &BTreeMap<String, ResultBody>| {
        let ok = m.values().filter(|r| r.status == Status::Ok).count();
        ok >= 2 || m.len() - ok >= 2
    };
    while !got.iter().all(decided) {
        let bytes = tokio::time::timeout(Duration::from_secs(60), c.results.next())
            .await
            .expect("results in time")
            .unwrap()
            .unwrap();
        let body = SignedResult::parse(&bytes)
            .unwrap()
            .verify_with(&c.manifest)
            .expect("signed by a member");
        for (i, request) in [&first, &second].into_iter().enumerate() {
            if body.answers(request) {
                got[i].insert(body.node_id.clone(), body.clone());
            }
        }
    }
    let signed: Vec<bool> = got
        .iter()
        .map(|m| m.values().filter(|r| r.status == Status::Ok).count() >= 2)
        .collect();
    assert!(!(signed[0] && signed[1]), "both signed: {got:?}");
    // No node counts more than one signing of the key in the window.
    for (i, store) in c.stores.iter().enumerate() {
        let (_, count) = store
            .usage(&keyrack_node::store::VelocityQuery {
                per: keyrack_node::store::VelocityPer::Key,
                key_id: "wallet-l",
                initiator: "alice",
                destination: None,
                asset: None,
                since_ms: 0,
            })
            .unwrap();
        assert!(count <= 1, "node{i} counts {count} signings");
    }
}

/// alice's plain messages need one approval of the officers group; keys may be created and
/// deleted at once.
const ONE_APPROVAL: &str = "format = 1\n[approver_groups]\nofficers = [\"officer\"]\n\
                            [[rules]]\nid = \"approved-messages\"\neffect = \"allow-with-approvals\"\n\
                            approvals = { group = \"officers\", required = 1 }\nplain_message = true\n\
                            [[rules]]\nid = \"keys\"\neffect = \"allow\"\n\
                            operations = [\"keygen\", \"delete\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_request_whose_key_goes_away_is_dropped_when_carried_on() {
    let mut c = cluster_with_policies(
        Settings {
            leader_timeout: Duration::from_millis(500),
            ..Settings::default()
        },
        [ONE_APPROVAL; 3],
    )
    .await;
    ed25519_keygen(&mut c, "wallet-h").await;
    let body = sign_body("wallet-h", Scheme::Ed25519, b"later");
    let id = body.request_id.clone();
    let request = c.submit(&body).await;
    // Every node holds it, waiting for the officer's approval.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !c.stores.iter().all(|s| s.parked(&id).unwrap().is_some()) {
        assert!(tokio::time::Instant::now() < deadline, "parked everywhere");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The key is deleted meanwhile, then the approval comes: carried on, the request finds no
    // key, is refused, and is held no longer (not retried for ever, not counted against
    // alice's cap).
    let delete = c
        .submit(&lifecycle_body(
            RequestKind::Delete,
            "wallet-h",
            vec![Scheme::Ed25519],
        ))
        .await;
    let deleted = c.results_for(&delete, 3).await;
    assert!(
        deleted.values().all(|r| r.status == Status::Ok),
        "{deleted:?}"
    );
    let officer = InitiatorKey::from_seed("officer", &[4; 32]).unwrap();
    let mut approve = RequestBody::new(
        RequestKind::Approve,
        CLUSTER,
        "approval",
        "app",
        now_ms(),
        60_000,
    );
    approve.approves = Some(request.hash());
    let approval = officer.sign_request(&approve).unwrap();
    c.client
        .publish_request("approve", &approve.request_id, approval.to_json())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !c.stores.iter().all(|s| s.parked(&id).unwrap().is_none()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no longer held anywhere"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, s) in c.stores.iter().enumerate() {
        let said: Vec<String> = s
            .audit_page(0, 10_000)
            .unwrap()
            .into_iter()
            .filter(|r| r.request_id.as_deref() == Some(id.as_str()))
            .map(|r| r.entry)
            .collect();
        assert!(
            said.iter().any(|e| e.contains("dropped: key_deleted")),
            "node{i}: {said:?}"
        );
    }
}
