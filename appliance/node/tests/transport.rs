//! The NATS transport against a real nats-server (started per test on a free port).

use std::time::Duration;

use futures::StreamExt;
use keyrack_client::subjects;
use keyrack_node::transport::Bus;
use keyrack_tests::NatsServer;

const CLUSTER: &str = "c1";

/// A request id of the protocol's form (32 lowercase hex digits).
fn rid(n: u8) -> String {
    format!("{n:032x}")
}

async fn bus(server: &NatsServer, name: &str) -> Bus {
    let bus = Bus::connect(std::slice::from_ref(&server.url), name, CLUSTER)
        .await
        .expect("connect");
    bus.ensure_streams().await.expect("streams");
    bus
}

#[tokio::test]
async fn every_node_sees_every_request_and_streams_are_idempotent() {
    let server = NatsServer::start();
    let a = bus(&server, "node0").await;
    let b = bus(&server, "node1").await; // ensure_streams again: no error, same streams
    let ca = a.request_consumer("node0", 16).await.unwrap();
    let cb = b.request_consumer("node1", 16).await.unwrap();
    a.publish_request("sign", &rid(1), b"first".to_vec())
        .await
        .unwrap();
    a.publish_request("sign", &rid(2), b"second".to_vec())
        .await
        .unwrap();
    for consumer in [&ca, &cb] {
        for expected in [&b"first"[..], b"second"] {
            let d = Bus::next_request(consumer, Duration::from_secs(5))
                .await
                .unwrap()
                .expect("a request");
            assert_eq!(d.payload, expected);
            assert_eq!(
                d.subject,
                subjects::request_subject(CLUSTER, "sign").unwrap()
            );
            d.ack().await.unwrap();
        }
        assert!(Bus::next_request(consumer, Duration::from_millis(200))
            .await
            .unwrap()
            .is_none());
    }
}

#[tokio::test]
async fn a_republished_request_is_delivered_once() {
    let server = NatsServer::start();
    let a = bus(&server, "node0").await;
    let c = a.request_consumer("node0", 16).await.unwrap();
    for _ in 0..3 {
        a.publish_request("keygen", &rid(3), b"body".to_vec())
            .await
            .unwrap();
    }
    let d = Bus::next_request(&c, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    d.ack().await.unwrap();
    assert!(Bus::next_request(&c, Duration::from_millis(300))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_delayed_request_comes_back_never_dropped() {
    let server = NatsServer::start();
    let a = bus(&server, "node0").await;
    let c = a.request_consumer("node0", 16).await.unwrap();
    a.publish_request("sign", &rid(1), b"busy".to_vec())
        .await
        .unwrap();
    let first = Bus::next_request(&c, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.delivered, 1);
    first.delay(Duration::from_millis(100)).await.unwrap();
    let again = Bus::next_request(&c, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("redelivered");
    assert_eq!(
        (again.payload.as_slice(), again.delivered),
        (&b"busy"[..], 2)
    );
    again.ack().await.unwrap();
}

#[tokio::test]
async fn the_consumer_survives_a_node_restart() {
    let server = NatsServer::start();
    {
        let a = bus(&server, "node0").await;
        let _ = a.request_consumer("node0", 16).await.unwrap();
        a.publish_request("sign", &rid(4), b"queued".to_vec())
            .await
            .unwrap();
    }
    // A new process of the same node picks up what arrived meanwhile.
    let a = bus(&server, "node0").await;
    let c = a.request_consumer("node0", 16).await.unwrap();
    let d = Bus::next_request(&c, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.payload, b"queued");
}

#[tokio::test]
async fn a_joining_node_takes_only_the_requests_published_after_it_first_started() {
    // node3 joins a running cluster: the requests the others handled before (a keygen it
    // took no part in, say) are not for it, even while they have not expired.
    let server = NatsServer::start();
    let a = bus(&server, "node0").await;
    let _ = a.request_consumer("node0", 16).await.unwrap();
    a.publish_request("keygen", &rid(5), b"before".to_vec())
        .await
        .unwrap();
    let joiner = bus(&server, "node3").await;
    let c = joiner.request_consumer("node3", 16).await.unwrap();
    a.publish_request("reshare", &rid(6), b"after".to_vec())
        .await
        .unwrap();
    let d = Bus::next_request(&c, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the request published after it joined");
    assert_eq!(d.payload, b"after");
    d.ack().await.unwrap();
    assert!(Bus::next_request(&c, Duration::from_millis(300))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn results_are_routed_by_client_and_deduplicated_per_node() {
    let server = NatsServer::start();
    let node = bus(&server, "node0").await;
    let client = bus(&server, "client").await;
    let mut mine = client.results("alice").await.unwrap();
    node.publish_result("alice", &rid(1), "node0", b"from node0".to_vec())
        .await
        .unwrap();
    node.publish_result("alice", &rid(1), "node0", b"from node0".to_vec())
        .await
        .unwrap(); // retry
    node.publish_result("bob", &rid(2), "node0", b"for bob".to_vec())
        .await
        .unwrap();
    node.publish_result("alice", &rid(1), "node1", b"from node1".to_vec())
        .await
        .unwrap();
    // A refusal (of a forged copy, say) neither shadows the genuine outcome nor is shadowed.
    node.publish_refusal(
        "alice",
        &rid(1),
        "node0",
        keyrack_client::codes::ErrorCode::BadSignature,
        b"refused copy".to_vec(),
    )
    .await
    .unwrap();
    let mut got = vec![];
    for _ in 0..3 {
        let m = tokio::time::timeout(Duration::from_secs(5), mine.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.push(m);
    }
    assert_eq!(got, [&b"from node0"[..], b"from node1", b"refused copy"]);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), mine.next())
            .await
            .is_err(),
        "a duplicate or bob's result leaked"
    );
}

#[tokio::test]
async fn the_bus_reconnects_after_the_server_restarts() {
    let mut server = NatsServer::start();
    let a = bus(&server, "node0").await;
    let mut sub = a
        .subscribe(subjects::heartbeat_filter(CLUSTER).unwrap())
        .await
        .unwrap();
    server.restart();
    // Publishing resumes once the client has reconnected by itself.
    let got = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let _ = a
                .publish(
                    subjects::heartbeat_subject(CLUSTER, "node0").unwrap(),
                    b"hb".to_vec(),
                )
                .await;
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await
            {
                return m.payload.to_vec();
            }
        }
    })
    .await
    .expect("reconnected within 15 s");
    assert_eq!(got, b"hb");
    // JetStream state survived too.
    let c = a.request_consumer("node0", 4).await.unwrap();
    a.publish_request("sign", &rid(5), b"x".to_vec())
        .await
        .unwrap();
    assert!(Bus::next_request(&c, Duration::from_secs(5))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn a_node_started_before_nats_connects_when_it_comes_up() {
    let port = keyrack_tests::free_port();
    let a = Bus::connect(&[format!("nats://127.0.0.1:{port}")], "node0", CLUSTER)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!a.is_connected(), "connected to nothing");
    let _server = NatsServer::start_on(port);
    tokio::time::timeout(Duration::from_secs(15), async {
        while !a.is_connected() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("connected by itself within 15 s");
    a.ensure_streams().await.unwrap();
}
