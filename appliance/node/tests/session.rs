//! Protocol sessions over a real nats-server: a FROST keygen among three nodes and a 2-of-3
//! signature travel in signed, encrypted envelopes; envelopes forged by a non-member,
//! tampered with, or replayed are dropped and counted while the session completes.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures::StreamExt;
use keyrack_client::envelope::{self, Header, MessageKind};
use keyrack_client::manifest::{Admin, Manifest, SignedManifest, VerifiedManifest};
use keyrack_client::subjects;
use keyrack_node::identity::NodeIdentity;
use keyrack_node::session::{run_session, SessionRoute, SessionStats};
use keyrack_node::transport::Bus;
use keyrack_plugin::{KeyShare, KeygenParams, SchemePlugin, Session, SignRequest, SignatureOutput};
use keyrack_tests::NatsServer;

const CLUSTER: &str = "c1";
const TIMEOUT: Duration = Duration::from_secs(10);

fn cluster(n: usize) -> (Vec<Arc<NodeIdentity>>, Arc<VerifiedManifest>) {
    let nodes: Vec<Arc<NodeIdentity>> = (0..n)
        .map(|i| Arc::new(NodeIdentity::generate(&format!("node{i}")).unwrap()))
        .collect();
    let admin = SigningKey::from_bytes(&[9; 32]);
    let manifest = Manifest {
        cluster_id: CLUSTER.into(),
        version: 1,
        previous: None,
        admin_threshold: 1,
        nodes: nodes.iter().map(|n| n.public().unwrap()).collect(),
        initiators: vec![],
        admins: vec![Admin {
            id: "admin0".into(),
            public_key: admin.verifying_key(),
        }],
    };
    let mut signed = SignedManifest::new(manifest).unwrap();
    signed.sign(&admin).unwrap();
    (nodes, Arc::new(signed.verify_bootstrap().unwrap()))
}

async fn connect(url: &str, name: &str) -> Bus {
    Bus::connect(&[url.to_owned()], name, CLUSTER)
        .await
        .unwrap()
}

async fn keygen_at(
    url: String,
    node: Arc<NodeIdentity>,
    manifest: Arc<VerifiedManifest>,
    route: SessionRoute,
) -> (KeyShare, SessionStats) {
    let bus = connect(&url, node.node_id()).await;
    let parties = route.participants.len() as u16;
    let id = route.session;
    run_session(&bus, node, manifest, &route, TIMEOUT, move |me, ch| {
        keyrack_eddsa_frost::ed25519().keygen(
            &Session { id, me, parties },
            ch,
            &KeygenParams { threshold: 2 },
        )
    })
    .await
    .expect("keygen over NATS")
}

async fn sign_at(
    url: String,
    node: Arc<NodeIdentity>,
    manifest: Arc<VerifiedManifest>,
    route: SessionRoute,
    share: KeyShare,
    request: SignRequest,
) -> SignatureOutput {
    let bus = connect(&url, node.node_id()).await;
    let parties = route.participants.len() as u16;
    let id = route.session;
    run_session(&bus, node, manifest, &route, TIMEOUT, move |me, ch| {
        keyrack_eddsa_frost::ed25519().sign(&Session { id, me, parties }, ch, &share, &request)
    })
    .await
    .expect("signing over NATS")
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_and_signing_run_over_nats_and_forgeries_are_dropped() {
    let server = NatsServer::start();
    let (nodes, manifest) = cluster(3);
    let route = SessionRoute {
        session: [0x11; 32],
        participants: nodes.iter().map(|n| n.node_id().to_owned()).collect(),
    };

    // An observer of the session's broadcast subject (it never sees p2p plaintext).
    let observer = connect(&server.url, "observer").await;
    let all = subjects::session_subject(CLUSTER, &route.session, None).unwrap();
    let mut seen = observer.subscribe(all.clone()).await.unwrap();

    // node0 and node1 start and wait in round 1 for node2.
    let k0 = tokio::spawn(keygen_at(
        server.url.clone(),
        nodes[0].clone(),
        manifest.clone(),
        route.clone(),
    ));
    let k1 = tokio::spawn(keygen_at(
        server.url.clone(),
        nodes[1].clone(),
        manifest.clone(),
        route.clone(),
    ));
    // Learn who sent what (broadcasts are signed, not encrypted: any identity can open them).
    let mallory = NodeIdentity::generate("mallory").unwrap();
    let sender_of = |bytes: &[u8]| {
        envelope::open(
            bytes,
            |id| manifest.node(id),
            ("mallory", mallory.agreement_secret()),
            CLUSTER,
        )
        .map(|(h, _)| h.from)
        .unwrap()
    };
    // A node0 envelope to tamper with, and a node1 envelope sent after node0 surely listened
    // (node0 subscribes before its first envelope), to replay.
    let (mut from_node0, mut replay) = (None, None);
    while from_node0.is_none() || replay.is_none() {
        let m = tokio::time::timeout(TIMEOUT, seen.next())
            .await
            .unwrap()
            .unwrap();
        match sender_of(&m.payload).as_str() {
            "node0" => from_node0 = from_node0.or(Some(m.payload.to_vec())),
            "node1" if from_node0.is_some() => replay = Some(m.payload.to_vec()),
            _ => {}
        }
    }
    let (from_node0, replay) = (from_node0.unwrap(), replay.unwrap());

    // 1. A non-member signs an envelope with its own key.
    let forged_header = Header {
        version: 1,
        cluster: CLUSTER.into(),
        session: route.session,
        kind: MessageKind::Protocol,
        round: 1,
        from: "mallory".into(),
        to: None,
        seq: 0,
    };
    let forged = envelope::seal(
        mallory.signing_key(),
        mallory.agreement_secret(),
        None,
        &forged_header,
        b"forged",
    )
    .unwrap();
    observer.publish(all.clone(), forged).await.unwrap();
    // 2. A member's envelope altered in flight.
    let mut tampered = from_node0.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    observer.publish(all.clone(), tampered).await.unwrap();
    // 3. A member's envelope replayed verbatim.
    observer.publish(all.clone(), replay).await.unwrap();
    observer.client().flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // node2 arrives; the keygen completes for everyone.
    let k2 = tokio::spawn(keygen_at(
        server.url.clone(),
        nodes[2].clone(),
        manifest.clone(),
        route.clone(),
    ));
    let mut results = vec![];
    for k in [k0, k1, k2] {
        results.push(k.await.unwrap());
    }
    let public_key = results[0].0.public_key.clone();
    assert!(results
        .iter()
        .all(|(share, _)| share.public_key == public_key));
    let dropped = |i: usize, reason: &str| results[i].1.dropped.get(reason).copied().unwrap_or(0);
    for i in [0, 1] {
        assert!(
            dropped(i, "unknown_sender") >= 1,
            "node{i}: {:?}",
            results[i].1
        );
    }
    assert!(dropped(1, "bad_signature") >= 1, "{:?}", results[1].1);
    assert!(results[0].1.duplicates >= 1, "{:?}", results[0].1);

    // A 2-of-3 signature over NATS (node0 and node2), verified with ed25519-dalek.
    let shares: Vec<KeyShare> = results.into_iter().map(|(s, _)| s).collect();
    let signers = [0u16, 2];
    let sign_route = SessionRoute {
        session: [0x22; 32],
        participants: vec!["node0".into(), "node2".into()],
    };
    let request = SignRequest {
        signers: signers.to_vec(),
        message: b"over nats".to_vec(),
        derivation_path: vec![],
    };
    let mut outs = vec![];
    for (i, signer) in signers.iter().enumerate() {
        let _ = i;
        outs.push(tokio::spawn(sign_at(
            server.url.clone(),
            nodes[*signer as usize].clone(),
            manifest.clone(),
            sign_route.clone(),
            shares[*signer as usize].clone(),
            request.clone(),
        )));
    }
    for o in outs {
        let out = o.await.unwrap();
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public_key.clone().try_into().unwrap())
            .unwrap();
        let sig = ed25519_dalek::Signature::from_bytes(&out.signature.try_into().unwrap());
        key.verify_strict(b"over nats", &sig)
            .expect("verifies independently");
    }
}

#[tokio::test]
async fn a_node_outside_the_session_or_manifest_cannot_run_it() {
    let server = NatsServer::start();
    let (nodes, manifest) = cluster(3);
    let bus = connect(&server.url, "node0").await;
    let not_me = SessionRoute {
        session: [1; 32],
        participants: vec!["node1".into(), "node2".into()],
    };
    let r = run_session(
        &bus,
        nodes[0].clone(),
        manifest.clone(),
        &not_me,
        TIMEOUT,
        |_, _| Ok(()),
    )
    .await;
    assert!(
        matches!(r, Err(keyrack_node::session::SessionError::Invalid(_))),
        "{r:?}"
    );
    let stranger = SessionRoute {
        session: [1; 32],
        participants: vec!["node0".into(), "mallory".into()],
    };
    let r = run_session(
        &bus,
        nodes[0].clone(),
        manifest,
        &stranger,
        TIMEOUT,
        |_, _| Ok(()),
    )
    .await;
    assert!(matches!(r, Err(e) if e.to_string().contains("mallory")));
}

#[tokio::test]
async fn a_watched_session_gives_up_on_a_silent_participant_before_its_timeout() {
    use keyrack_node::session::{run_session_watched, PeerWatch, SessionError, Watch};
    let server = NatsServer::start();
    let (nodes, manifest) = cluster(3);
    let bus = connect(&server.url, "node0").await;
    let route = SessionRoute {
        session: [3; 32],
        participants: vec!["node0".into(), "node1".into(), "node2".into()],
    };
    // node1 was heard from a moment ago; node2 not for a minute (its process died, say).
    // Neither ever joins, so without the watch the protocol would wait its full timeout.
    let at_start = std::time::Instant::now();
    let last_heard = move |node: &str| match node {
        "node1" => Some(std::time::Instant::now()),
        "node2" => Some(at_start - Duration::from_secs(60)),
        _ => None,
    };
    let watch = PeerWatch {
        last_heard: &last_heard,
        silent_after: Duration::from_secs(2),
    };
    let started = tokio::time::Instant::now();
    let r = run_session_watched(
        &bus,
        nodes[0].clone(),
        manifest.clone(),
        &route,
        Duration::from_secs(600),
        Watch {
            peers: Some(&watch),
            progress: None,
        },
        |_, ch| {
            ch.recv()?;
            Ok(())
        },
    )
    .await;
    match r {
        Err(SessionError::PeerDown { node, silent }) => {
            assert_eq!(node, "node2", "the silent one is named, not the live one");
            assert!(silent > Duration::from_secs(2));
        }
        other => panic!("{other:?}"),
    }
    // Silence counts from the session's start at the earliest: the session gave up once
    // node2 had been silent 2 s into it, long before the 600 s message timeout.
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_that_only_sends_delivers_to_peers_that_join_after_it_finished() {
    // A dealer that leaves (it sends its pieces and expects nothing back) may finish before a
    // slow peer (busy with committee setup, say) joins: its messages must still arrive.
    let server = NatsServer::start();
    let (nodes, manifest) = cluster(2);
    let route = SessionRoute {
        session: [0x33; 32],
        participants: nodes.iter().map(|n| n.node_id().to_owned()).collect(),
    };
    let sender = {
        let (url, node, manifest, route) = (
            server.url.clone(),
            nodes[0].clone(),
            manifest.clone(),
            route.clone(),
        );
        tokio::spawn(async move {
            let bus = connect(&url, node.node_id()).await;
            run_session(&bus, node, manifest, &route, TIMEOUT, |_, ch| {
                ch.send(keyrack_plugin::Outgoing {
                    to: keyrack_plugin::Recipient::Party(1),
                    round: 1,
                    payload: b"your piece".to_vec(),
                })
                .map_err(keyrack_plugin::ProtocolError::from)
            })
            .await
        })
    };
    // The sender's protocol is done long before the receiver starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !sender.is_finished(),
        "the sender waits for its peer to join"
    );
    let bus = connect(&server.url, nodes[1].node_id()).await;
    let (got, _) = run_session(
        &bus,
        nodes[1].clone(),
        manifest,
        &route,
        TIMEOUT,
        |_, ch| ch.recv().map_err(keyrack_plugin::ProtocolError::from),
    )
    .await
    .expect("the receiver gets the message");
    assert_eq!(got.payload, b"your piece");
    assert_eq!(got.from, 0);
    sender
        .await
        .unwrap()
        .expect("the sender completes once its message is out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_whose_peer_never_joins_fails_naming_it_instead_of_reporting_success() {
    let server = NatsServer::start();
    let (nodes, manifest) = cluster(2);
    let route = SessionRoute {
        session: [0x44; 32],
        participants: nodes.iter().map(|n| n.node_id().to_owned()).collect(),
    };
    let bus = connect(&server.url, nodes[0].node_id()).await;
    let started = std::time::Instant::now();
    let outcome = run_session(
        &bus,
        nodes[0].clone(),
        manifest,
        &route,
        Duration::from_secs(1),
        |_, ch| {
            ch.send(keyrack_plugin::Outgoing {
                to: keyrack_plugin::Recipient::Party(1),
                round: 1,
                payload: b"never read".to_vec(),
            })
            .map_err(keyrack_plugin::ProtocolError::from)
        },
    )
    .await;
    match outcome {
        Err(keyrack_node::session::SessionError::Protocol(
            keyrack_plugin::ProtocolError::Timeout { missing, .. },
        )) => assert_eq!(missing, vec![1]),
        other => panic!("expected a timeout naming party 1, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the timeout"
    );
}
