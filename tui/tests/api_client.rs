//! The API client against a minimal HTTP server on localhost that answers as the node does
//! (status codes, ApiError bodies) and records what it was asked: the bearer token is sent,
//! each failure reads as the operator should see it. (The node's own integration tests run
//! the same client against a real node.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;

use keyrack_client::api::SubmitRequest;
use keyrack_tui::api::{ApiClient, ApiError};
use zeroize::Zeroizing;

/// What the server saw of one request.
#[derive(Debug)]
struct Seen {
    request_line: String,
    authorization: Option<String>,
    body: String,
}

/// Serves `answers` (status, body) one per connection, in order; reports each request.
fn serve(answers: Vec<(u16, &'static str)>) -> (String, mpsc::Receiver<Seen>) {
    serve_gated(answers, None)
}

/// [`serve`], answering each request only once `gate` gives the word (if given).
fn serve_gated(
    answers: Vec<(u16, &'static str)>,
    gate: Option<mpsc::Receiver<()>>,
) -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for (status, body) in answers {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let (mut authorization, mut length) = (None, 0usize);
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap();
                match name.to_ascii_lowercase().as_str() {
                    "authorization" => authorization = Some(value.trim().to_owned()),
                    "content-length" => length = value.trim().parse().unwrap(),
                    _ => {}
                }
            }
            let mut buf = vec![0; length];
            reader.read_exact(&mut buf).unwrap();
            tx.send(Seen {
                request_line: request_line.trim_end().to_owned(),
                authorization,
                body: String::from_utf8(buf).unwrap(),
            })
            .unwrap();
            if let Some(gate) = &gate {
                if gate.recv().is_err() {
                    return; // the test is done with this server
                }
            }
            let mut stream = stream;
            write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        }
    });
    (url, rx)
}

fn client(url: &str) -> ApiClient {
    ApiClient::new(url, Zeroizing::new("tok-123".into()))
}

#[test]
fn a_typed_answer_is_read_with_the_bearer_token_sent() {
    let peers = r#"{"peers":[{"node_id":"node-1","me":true,"live":true,"last_heard_ms_ago":0}]}"#;
    let (url, seen) = serve(vec![(200, peers)]);
    let got = client(&url).peers().unwrap();
    assert_eq!(got.peers[0].node_id, "node-1");
    let s = seen.recv().unwrap();
    assert_eq!(s.request_line, "GET /v1/peers HTTP/1.1");
    assert_eq!(s.authorization.as_deref(), Some("Bearer tok-123"));
}

#[test]
fn search_and_audit_paging_go_in_the_query() {
    let (url, seen) = serve(vec![
        (200, r#"{"keys":[]}"#),
        (200, r#"{"entries":[],"head_seq":0,"next":null}"#),
    ]);
    let c = client(&url);
    c.keys(Some("hot wallet")).unwrap();
    c.audit(40, 500).unwrap();
    assert_eq!(
        seen.recv().unwrap().request_line,
        "GET /v1/keys?search=hot%20wallet HTTP/1.1"
    );
    assert_eq!(
        seen.recv().unwrap().request_line,
        "GET /v1/audit?after=40&limit=500 HTTP/1.1"
    );
}

#[test]
fn a_401_says_to_check_the_token_file() {
    let body = r#"{"error":"unauthorized","message":"missing or wrong bearer token"}"#;
    let (url, _seen) = serve(vec![(401, body)]);
    let e = client(&url).status().unwrap_err();
    assert!(matches!(e, ApiError::Unauthorized), "{e:?}");
    assert_eq!(
        e.to_string(),
        "the node refused the API token (401): check --token-file"
    );
}

#[test]
fn an_error_status_carries_the_nodes_message() {
    let body = r#"{"error":"unavailable","message":"the HSM did not answer: token not present"}"#;
    let (url, _seen) = serve(vec![(503, body)]);
    let e = client(&url).backend().unwrap_err();
    assert_eq!(
        e.to_string(),
        "/v1/backend: HTTP 503: the HSM did not answer: token not present"
    );
}

#[test]
fn an_answer_that_is_not_the_routes_json_is_bad_json() {
    let (url, _seen) = serve(vec![(200, r#"{"hello":"world"}"#)]);
    let e = client(&url).pools().unwrap_err();
    assert!(matches!(e, ApiError::BadJson { .. }), "{e:?}");
    assert!(e.to_string().contains("is --url a keyrack node?"), "{e}");
}

#[test]
fn readiness_is_read_from_a_503_too() {
    let body = r#"{"ready":false,"checks":[{"name":"nats","ok":false,"detail":"disconnected"}]}"#;
    let (url, seen) = serve(vec![(503, body)]);
    let r = client(&url).readyz().unwrap();
    assert!(!r.ready);
    assert_eq!(r.checks[0].detail, "disconnected");
    // The node answers without a token too; with it, the checks' details come.
    assert_eq!(
        seen.recv().unwrap().authorization.as_deref(),
        Some("Bearer tok-123")
    );
}

#[test]
fn submit_posts_the_signed_request_and_reads_202() {
    let answer = r#"{"request_id":"ab","subject":"keyrack.c.requests.approve"}"#;
    let (url, seen) = serve(vec![(202, answer)]);
    let request = SubmitRequest {
        signed_request: r#"{"initiator":"carol"}"#.into(),
    };
    let submitted = client(&url).submit(&request).unwrap();
    assert_eq!(submitted.request_id, "ab");
    let s = seen.recv().unwrap();
    assert_eq!(s.request_line, "POST /v1/approvals HTTP/1.1");
    assert_eq!(s.authorization.as_deref(), Some("Bearer tok-123"));
    let sent: SubmitRequest = serde_json::from_str(&s.body).unwrap();
    assert_eq!(sent, request);
}

#[test]
fn an_audit_verification_may_take_longer_than_a_poll() {
    let body = r#"{"ok":true,"entries":3,"head_hash":"ab","broken_at":null,"reason":null}"#;
    let (go, gate) = mpsc::channel();
    let (url, _seen) = serve_gated(vec![(200, body), (200, body)], Some(gate));
    let verifying = {
        let url = url.clone();
        thread::spawn(move || client(&url).audit_verify())
    };
    // Past the timeout every other route has, the verification still waits for its answer.
    thread::sleep(keyrack_tui::api::TIMEOUT + std::time::Duration::from_millis(500));
    assert!(!verifying.is_finished(), "gave up at the poll timeout");
    go.send(()).unwrap();
    let verified = verifying
        .join()
        .unwrap()
        .expect("the verification's answer");
    assert!(verified.ok);
    // An ordinary route does give up then.
    let polling = thread::spawn(move || client(&url).status());
    thread::sleep(keyrack_tui::api::TIMEOUT + std::time::Duration::from_millis(500));
    assert!(polling.is_finished(), "a poll route waits past its timeout");
    assert!(matches!(
        polling.join().unwrap(),
        Err(ApiError::Unreachable { .. })
    ));
}
