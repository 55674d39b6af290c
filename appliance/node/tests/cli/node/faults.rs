//! Faults at process level: a node killed with SIGKILL while signing sessions run, and
//! envelopes forged by a key outside the manifest on the session and control subjects.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;

use keyrack_client::codes::ErrorCode;
use keyrack_client::envelope::{self, Header, MessageKind};
use keyrack_client::result::Status;
use keyrack_client::subjects;
use keyrack_node::coordinator::{leader_order, session_id, Start};
use keyrack_node::identity::NodeIdentity;

use super::*;
use crate::cluster::{describe, CLUSTER};

/// The node killed.
const VICTIM: usize = 1;

/// Sixteen signing requests are submitted at once; once two have completed (four `ok`
/// results: sessions are running) node1 is killed with SIGKILL while the others are still
/// open. Every request must end, in time, with a verified signature or a clear failure
/// (`protocol_failed` or `timeout`) — never a wrong signature, never two signatures for one
/// request. Afterwards node1's store holds no READY key without its share; restarted, node1
/// signs again (with node2 stopped, it must take part).
///
/// The burst is kept below `max_in_flight` (32): requests node1 took before it died stay
/// unacknowledged in JetStream until their ack wait ends and count against its limit after the
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_kill_9_during_signing_sessions_every_request_ends_cleanly() {
    const REQUESTS: usize = 16;
    let (mut cluster, client, mut results, key) = ed25519_cluster(Cluster::builder(3)).await;

    let mut waiting = vec![];
    for i in 0..REQUESTS {
        let message = format!("burst #{i}").into_bytes();
        let body = sign_body(&client, Scheme::Ed25519, &message, &[]);
        let request_id = body.request_id.clone();
        // No failure tolerated: a session that loses a member ends the request with the
        // surviving member's failure instead of waiting out the SDK's timeout.
        let pending = client.submit(body).await.unwrap().tolerate(0);
        waiting.push((request_id, message, tokio::spawn(pending.wait(WAIT))));
    }
    let burst: BTreeMap<String, Vec<u8>> = waiting
        .iter()
        .map(|(r, m, _)| (r.clone(), m.clone()))
        .collect();
    results
        .until(WAIT, "signing under way", |r| {
            r.iter()
                .filter(|r| burst.contains_key(&r.request_id) && r.status == Status::Ok)
                .count()
                >= 4
        })
        .await;
    cluster.kill_node(VICTIM);
    let open = waiting.iter().filter(|(_, _, t)| !t.is_finished()).count();
    assert!(
        open > 0,
        "every request had completed before the kill: nothing was running"
    );

    let (mut signed, mut failed) = (0, vec![]);
    for (request_id, message, task) in waiting {
        match task.await.unwrap() {
            Ok(Outcome::Signature(s)) => {
                check_signature(&s.signature, Scheme::Ed25519, &key.public_key, &message);
                signed += 1;
            }
            Err(SdkError::Failed { code, node, .. })
                if matches!(code, ErrorCode::ProtocolFailed | ErrorCode::Timeout) =>
            {
                failed.push((request_id, node, code));
            }
            other => panic!("request {request_id} ended with {other:?}"),
        }
    }
    eprintln!(
        "kill -9 of node{VICTIM} with {open} of {REQUESTS} requests open: {signed} signed, \
         failed: {failed:?}"
    );
    assert!(signed > 0);

    // Crash state: node1's store holds the key, READY with its share.
    assert_store_consistent(&mut cluster, VICTIM);

    // node1 restarts; with node2 stopped, node0 and node1 must sign together.
    cluster.start_node(VICTIM);
    cluster.stop_node(2);
    let body = sign_body(&client, Scheme::Ed25519, b"after the crash", &[]);
    let request_id = body.request_id.clone();
    let after = signature_of(client.submit(body).await.unwrap().wait(WAIT).await);
    check_signature(
        &after.signature,
        Scheme::Ed25519,
        &key.public_key,
        b"after the crash",
    );
    let answers = results.until_ok(&request_id, 2).await;
    let by = signers(&answers, &after.signature.signature);
    assert_eq!(by, BTreeSet::from(["node0".to_owned(), "node1".to_owned()]));

    // Over everything the nodes published for the burst: every signature is the request's and
    // verifies, one signature per request, and no request both failed and signed.
    for (request_id, message) in &burst {
        let answers = results.of(request_id);
        for s in answers.iter().filter_map(|r| r.signature.as_ref()) {
            check_signature(s, Scheme::Ed25519, &key.public_key, message);
        }
        let signatures: BTreeSet<[u8; 64]> = answers
            .iter()
            .filter_map(|r| r.signature.as_ref().map(|s| s.signature))
            .collect();
        assert!(
            signatures.len() <= 1,
            "{}",
            describe(answers.iter().copied())
        );
        if failed.iter().any(|(f, _, _)| f == request_id) {
            assert!(
                signatures.is_empty(),
                "{}",
                describe(answers.iter().copied())
            );
        }
    }

    // Stopped cleanly after signing again, node1's store is still consistent.
    cluster.stop_node(VICTIM);
    assert_store_consistent(&mut cluster, VICTIM);
}

/// Node `i`'s store (the node stopped or killed) has no READY key without the share of its
/// version, no keygen left PENDING, and `WALLET`'s Ed25519 key READY.
fn assert_store_consistent(cluster: &mut Cluster, i: usize) {
    let states = cluster.key_states(i);
    for k in &states {
        assert!(k.status != "READY" || k.has_share, "node{i}: {k:?}");
        assert_ne!(k.status, "PENDING", "node{i}: {k:?}");
    }
    assert!(
        states
            .iter()
            .any(|k| k.key_id == WALLET && k.scheme == "ed25519" && k.status == "READY"),
        "node{i}: {states:?}"
    );
}

/// A control message as the daemon writes it (CBOR of its `Control` enum).
#[derive(serde::Serialize)]
enum Control {
    Ready { attempt: u32 },
    Start(Start),
}

fn cbor<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![];
    ciborium::into_writer(value, &mut out).unwrap();
    out
}

/// Forges envelopes with `outsider`, a node identity outside the manifest: as itself (an
/// unknown sender) and posing as each member (a bad signature), broadcast and point to point.
struct Forger {
    outsider: NodeIdentity,
    members: Vec<String>,
    manifest: keyrack_client::manifest::VerifiedManifest,
    seq: u64,
}

/// A forged envelope and the subject it goes to.
type Forged = (String, Vec<u8>);

impl Forger {
    /// Every forgery of one message (`kind`, `round`, `payload`) with header session
    /// `session`, published on `subject(to)` (`to`: the recipient, `None` for a broadcast).
    fn forge(
        &mut self,
        session: [u8; 32],
        kind: MessageKind,
        round: u16,
        payload: &[u8],
        subject: impl Fn(Option<&str>) -> String,
    ) -> Vec<Forged> {
        let mut out = vec![];
        let senders: Vec<String> = std::iter::once(self.outsider.node_id().to_owned())
            .chain(self.members.iter().cloned())
            .collect();
        for from in senders {
            let recipients = std::iter::once(None).chain(self.members.iter().cloned().map(Some));
            for to in recipients {
                self.seq += 1;
                let header = Header {
                    version: 1,
                    cluster: CLUSTER.into(),
                    session,
                    kind,
                    round,
                    from: from.clone(),
                    to: to.clone(),
                    seq: self.seq,
                };
                let peer = to.as_deref().and_then(|t| self.manifest.node(t));
                let sealed = envelope::seal(
                    self.outsider.signing_key(),
                    self.outsider.agreement_secret(),
                    peer,
                    &header,
                    payload,
                )
                .unwrap();
                out.push((subject(to.as_deref()), sealed));
            }
        }
        out
    }

    /// Forged `Ready`s for every attempt and a `Start` for the first leader naming the two
    /// other members, on the request's control subject.
    fn control(&mut self, request_id: &str, request_hash: [u8; 32]) -> Vec<Forged> {
        let order: Vec<String> = leader_order(request_id, &self.members)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let others: Vec<String> = self
            .members
            .iter()
            .filter(|m| **m != order[0])
            .cloned()
            .collect();
        let start = Start {
            request_id: request_id.to_owned(),
            attempt: 0,
            leader: order[0].clone(),
            session: session_id(request_id, 0, &order[0], &others),
            participants: others,
        };
        let subject = subjects::control_subject(CLUSTER, request_id).unwrap();
        let mut out = vec![];
        let mut payloads: Vec<Vec<u8>> = (0..3)
            .map(|attempt| cbor(&Control::Ready { attempt }))
            .collect();
        payloads.push(cbor(&Control::Start(start)));
        for payload in payloads {
            out.extend(
                self.forge(request_hash, MessageKind::Control, 0, &payload, |_| {
                    subject.clone()
                }),
            );
        }
        out
    }

    /// Forged `join`s and protocol rounds for every session the request's signing could
    /// use (each attempt's leader with each pair of signers it could choose), by session.
    fn sessions(&mut self, request_id: &str) -> BTreeMap<String, Vec<Forged>> {
        let members = self.members.clone();
        let mut out = BTreeMap::new();
        for (attempt, leader) in leader_order(request_id, &members).into_iter().enumerate() {
            for skip in &members {
                let signers: Vec<String> = members.iter().filter(|m| *m != skip).cloned().collect();
                if !signers.iter().any(|s| s == leader) {
                    continue;
                }
                let session = session_id(request_id, attempt as u32, leader, &signers);
                let subject =
                    |to: Option<&str>| subjects::session_subject(CLUSTER, &session, to).unwrap();
                let mut forged = vec![];
                for (kind, round, payload) in [
                    (MessageKind::Control, 0, &b"join"[..]),
                    (MessageKind::Protocol, 0, &b"forged round 0"[..]),
                    (MessageKind::Protocol, 1, &b"forged round 1"[..]),
                ] {
                    forged.extend(self.forge(session, kind, round, payload, subject));
                }
                out.insert(hex::encode(session), forged);
            }
        }
        out
    }
}

/// The lines of `log` that record a dropped envelope (`what`: `session` or `control`).
fn drops<'a>(log: &'a str, what: &str) -> Vec<&'a str> {
    let needle = format!("dropped a {what} envelope");
    log.lines().filter(|l| l.contains(&needle)).collect()
}

/// During live signing sessions, envelopes signed by a node key outside the manifest are
/// published on the request's session and control subjects: `join`s and protocol rounds,
/// `Ready`s and a `Start` naming other signers, as the outsider itself and posing as each
/// member. Session ids are predictable (request, attempt, leader, signers): the forger has
/// its envelopes ready for every session the signing could use and publishes them the moment
/// it sees a member's first message on one (while that session waits for its peers), and
/// again on each later one. The nodes drop them all (their logs record each drop) and every
/// request is signed correctly by two members in one session. Requests are repeated (at
/// least three, at most ten) until a session has logged a forgery: a session lasts
/// milliseconds and may end before one arrives.
///
/// The forger reacts instead of flooding. Publishing the same forgeries in a tight loop
/// (hundreds of envelopes per round, as fast as NATS takes them) made signing fail with
/// `timeout` ("no leader started the request"): every node checks every envelope on the
/// control subjects in one task, so genuine `Ready`s and `Start`s arrive too late. That is a
/// denial of service which NATS permissions on these subjects must prevent; signatures on
/// envelopes cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_envelopes_forged_by_a_non_member_are_ignored() {
    let (cluster, client, mut results, key) = ed25519_cluster(Cluster::builder(3)).await;
    let members = cluster.node_ids();
    let nats = cluster.nats().await;
    let mut forger = Forger {
        outsider: NodeIdentity::generate("node9").unwrap(),
        members: members.clone(),
        manifest: cluster.manifest().clone(),
        seq: 0,
    };
    let session_drops = |cluster: &Cluster| -> usize {
        (0..3)
            .map(|i| drops(&cluster.log(i), "session").len())
            .sum()
    };

    let mut requests = 0;
    while requests < 3 || (session_drops(&cluster) == 0 && requests < 10) {
        requests += 1;
        let message = format!("forged around #{requests}").into_bytes();
        let body = sign_body(&client, Scheme::Ed25519, &message, &[]);
        let request_id = body.request_id.clone();
        let hash = cluster.initiator().sign_request(&body).unwrap().hash();
        // Control forgeries before the request (a node's router would keep genuine ones for
        // it), and again as each session starts.
        let control = forger.control(&request_id, hash);
        for (subject, e) in &control {
            nats.publish(subject.clone(), e.clone().into())
                .await
                .unwrap();
        }
        nats.flush().await.unwrap();
        let sessions = forger.sessions(&request_id);
        let mut watch = nats
            .subscribe(format!("keyrack.{CLUSTER}.sess.*.>"))
            .await
            .unwrap();
        let forging = {
            let nats = nats.clone();
            tokio::spawn(async move {
                while let Some(seen) = watch.next().await {
                    let hex = seen.subject.as_str().split('.').nth(3).unwrap_or_default();
                    // The member's own message, not one of ours echoed back.
                    let Some(forged) = sessions.get(hex) else {
                        continue;
                    };
                    if forged.iter().any(|(_, e)| e[..] == seen.payload[..]) {
                        continue;
                    }
                    for (subject, e) in forged.iter().chain(&control) {
                        nats.publish(subject.clone(), e.clone().into())
                            .await
                            .unwrap();
                    }
                    nats.flush().await.unwrap();
                }
            })
        };

        let signed = signature_of(client.submit(body).await.unwrap().wait(WAIT).await);
        forging.abort();
        assert!(forging.await.is_err_and(|e| e.is_cancelled()));
        check_signature(
            &signed.signature,
            Scheme::Ed25519,
            &key.public_key,
            &message,
        );
        // Two members signed it, in one session: the forged Start naming other signers and
        // the forged rounds changed nothing.
        let answers = results.until_ok(&request_id, 2).await;
        let by = signers(&answers, &signed.signature.signature);
        assert!(by.iter().all(|n| members.contains(n)), "{by:?}");
    }

    // The drops, as the nodes logged them: every node dropped the forged control envelopes
    // (its control listener reads them all), from the unknown sender and posing as members;
    // the signing sessions dropped forged envelopes too.
    for i in 0..3 {
        let log = cluster.log(i);
        let control = drops(&log, "control");
        assert!(
            control.iter().any(|l| l.contains("unknown sender 'node9'")),
            "node{i} logged no control envelope from node9 dropped"
        );
        for member in &members {
            assert!(
                control
                    .iter()
                    .any(|l| l.contains(&format!("from '{member}' has a bad signature"))),
                "node{i} logged no forged control envelope posing as {member} dropped"
            );
        }
        assert!(!log.contains("panicked"), "node{i} panicked:\n{log}");
    }
    let dropped = session_drops(&cluster);
    eprintln!("{requests} requests; forged session envelopes dropped: {dropped}");
    assert!(
        dropped > 0,
        "no session saw a forged envelope in {requests} requests"
    );
}
