//! Three node daemons (soft sealers, real SQLite stores) on a real nats-server: keygen for
//! both FROST schemes, idempotent keygen, signing by t of n with every signature checked by
//! an independent library, and refusals reaching the client; ECDSA committee setup (made once
//! per committee, made again when a member lost its aux info), keygen and signing.

use std::collections::BTreeMap;
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
use keyrack_node::daemon::{default_registry, ControlRouter, Node, Settings};
use keyrack_node::ecdsa::{committee_id, seed_fixture_primes, PrimeKeeper};
use keyrack_node::identity::NodeIdentity;
use keyrack_node::store::Store;
use keyrack_node::transport::Bus;
use keyrack_tests::NatsServer;

const CLUSTER: &str = "c1";

struct Cluster {
    _server: NatsServer,
    _dirs: Vec<tempfile::TempDir>,
    /// Each node's store (node i at index i).
    stores: Vec<Arc<Store>>,
    /// The nodes.
    nodes: Vec<Arc<Node>>,
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

async fn cluster() -> Cluster {
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
    let manifest = Manifest {
        cluster_id: CLUSTER.into(),
        version: 1,
        previous: None,
        admin_threshold: 1,
        nodes: identities.iter().map(|n| n.public().unwrap()).collect(),
        initiators: vec![Initiator {
            id: "alice".into(),
            public_key: alice.public_key(),
            roles: vec![],
        }],
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
    for (i, identity) in identities.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            Store::open(&dir.path().join("node.db"), CLUSTER, identity.node_id()).unwrap(),
        );
        let sealer: Arc<dyn Sealer> =
            Arc::new(SoftSealer::from_passphrase(b"test", &[1; 16]).unwrap());
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
            manifest: manifest.clone(),
            store,
            sealer,
            primes,
            peers: Arc::default(),
            registry: default_registry(),
            settings: Settings {
                leader_timeout: Duration::from_secs(2),
                ..Settings::default()
            },
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
    Cluster {
        _server: server,
        _dirs: dirs,
        stores,
        nodes,
        client,
        alice,
        manifest,
        results: Box::pin(results),
    }
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
async fn ecdsa_sign_and_verify(c: &mut Cluster, key_id: &str, public_key: &[u8], message: &[u8]) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ecdsa_committee_setup_once_per_committee_then_keygen_and_sign() {
    let mut c = cluster().await;
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
}
