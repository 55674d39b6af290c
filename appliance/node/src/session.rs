//! A protocol session over NATS: a scheme plugin's [`keyrack_plugin::Channel`], carried in
//! signed (and, point to point, encrypted) envelopes on the session's core NATS subjects.
//!
//! [`run_session`] subscribes to the session's subjects, then joins: it broadcasts a signed
//! `join` control envelope (again whenever it sees a new peer's join, and every
//! [`JOIN_RESEND`]) and holds the protocol's outgoing messages until every participant has
//! joined. Core NATS keeps nothing for late subscribers, so this is what guarantees that no
//! protocol message is sent before every peer listens. The protocol runs on its own thread
//! ([`keyrack_plugin::runtime::spawn_protocol`]); what it sends is sealed, what arrives is
//! opened: envelopes from non-participants, with bad signatures, for another cluster or
//! session, undecryptable, or repeated (same sender and sequence number) are dropped and
//! counted, never delivered. The session's participants are given in session order: party
//! `i` of the protocol is `participants[i]`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use keyrack_client::envelope::{self, EnvelopeError, Header, MessageKind};
use keyrack_client::manifest::VerifiedManifest;
use keyrack_client::subjects;
use keyrack_plugin::runtime::spawn_protocol;
use keyrack_plugin::{Channel, Incoming, PartyIndex, ProtocolError, Recipient};

use crate::identity::NodeIdentity;
use crate::telemetry::SessionProgress;
use crate::transport::{Bus, TransportError};

/// How often a watched session checks that its participants are still heard from.
const PEER_CHECK: Duration = Duration::from_secs(1);

/// How often a node repeats its `join` while peers are missing.
pub const JOIN_RESEND: Duration = Duration::from_millis(250);
const JOIN: &[u8] = b"join";

/// Why a session could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The session is inconsistent (this node not a participant, unknown participant…).
    #[error("invalid session: {0}")]
    Invalid(String),
    /// NATS failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The protocol failed (names the culprit where the plugin could).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A participant fell silent (no heartbeat): the session cannot complete.
    #[error("participant {node} is down: not heard from for {}s", silent.as_secs())]
    PeerDown {
        /// The silent participant.
        node: String,
        /// How long it had been silent.
        silent: Duration,
    },
}

/// What was dropped on the way in, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Envelopes delivered to the protocol.
    pub delivered: u64,
    /// Exact repeats (same sender and sequence number).
    pub duplicates: u64,
    /// Dropped envelopes by reason (`bad_signature`, `unknown_sender`, …).
    pub dropped: BTreeMap<&'static str, u64>,
}

fn reason(e: &EnvelopeError) -> &'static str {
    match e {
        EnvelopeError::Malformed(_) => "malformed",
        EnvelopeError::WrongCluster { .. } => "wrong_cluster",
        EnvelopeError::UnknownSender(_) => "unknown_sender",
        EnvelopeError::BadSignature(_) => "bad_signature",
        EnvelopeError::NotForMe { .. } => "not_for_me",
        EnvelopeError::Decrypt { .. } => "decrypt",
        _ => "other",
    }
}

/// One session, as this node takes part in it.
#[derive(Clone, Debug)]
pub struct SessionRoute {
    /// The session's execution id (also the plugin's `Session::id`).
    pub session: [u8; 32],
    /// Participants' node ids, in session order.
    pub participants: Vec<String>,
}

/// The id of a session run within another (one per scheme of a keygen, committee setup
/// within an ECDSA keygen…): SHA-256(parent ‖ "/" ‖ label).
pub fn sub_session(parent: &[u8; 32], label: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::new()
        .chain_update(parent)
        .chain_update(b"/")
        .chain_update(label.as_bytes())
        .finalize()
        .into()
}

/// Ends a session early when a participant falls silent (its process died, say), instead of
/// waiting out the message timeout.
pub struct PeerWatch<'a> {
    /// When each node was last heard from (its heartbeats); `None` if never.
    pub last_heard: &'a (dyn Fn(&str) -> Option<Instant> + Sync),
    /// How long a participant may be silent (counted from the session's start at the
    /// earliest) before the session gives up on it.
    pub silent_after: Duration,
}

/// Runs `protocol` as this node's part of a session; `timeout` bounds every wait for a
/// message. Returns the protocol's output and what was dropped on the way.
pub async fn run_session<T, F>(
    bus: &Bus,
    identity: Arc<NodeIdentity>,
    manifest: Arc<VerifiedManifest>,
    route: &SessionRoute,
    timeout: Duration,
    protocol: F,
) -> Result<(T, SessionStats), SessionError>
where
    T: Send + 'static,
    F: FnOnce(PartyIndex, &mut dyn Channel) -> Result<T, ProtocolError> + Send + 'static,
{
    run_session_watched(
        bus,
        identity,
        manifest,
        route,
        timeout,
        Watch::default(),
        protocol,
    )
    .await
}

/// What watches a session from outside its protocol.
#[derive(Clone, Copy, Default)]
pub struct Watch<'a> {
    /// Gives up with [`SessionError::PeerDown`] as soon as a participant has been silent too
    /// long.
    pub peers: Option<&'a PeerWatch<'a>>,
    /// Counts the protocol messages sent and received, and the round reached.
    pub progress: Option<&'a SessionProgress>,
}

/// [`run_session`], watched by `watch`.
pub async fn run_session_watched<T, F>(
    bus: &Bus,
    identity: Arc<NodeIdentity>,
    manifest: Arc<VerifiedManifest>,
    route: &SessionRoute,
    timeout: Duration,
    watch: Watch<'_>,
    protocol: F,
) -> Result<(T, SessionStats), SessionError>
where
    T: Send + 'static,
    F: FnOnce(PartyIndex, &mut dyn Channel) -> Result<T, ProtocolError> + Send + 'static,
{
    let Watch {
        peers: watch,
        progress,
    } = watch;
    let started = Instant::now();
    let me = identity.node_id().to_owned();
    let cluster = manifest.cluster_id().to_owned();
    let my_index = route
        .participants
        .iter()
        .position(|p| *p == me)
        .ok_or_else(|| SessionError::Invalid(format!("{me} is not a participant")))?;
    let my_index = PartyIndex::try_from(my_index)
        .map_err(|_| SessionError::Invalid("too many participants".into()))?;
    let unique: BTreeSet<&String> = route.participants.iter().collect();
    if unique.len() != route.participants.len() {
        return Err(SessionError::Invalid(
            "a participant is listed twice".into(),
        ));
    }
    for p in &route.participants {
        if manifest.node(p).is_none() {
            return Err(SessionError::Invalid(format!(
                "participant {p} is not in the cluster manifest"
            )));
        }
    }
    let session_hex = hex::encode(route.session);
    let inbox = subjects::session_subject(&cluster, &route.session, Some(&me))
        .map_err(TransportError::from)?;
    let broadcast =
        subjects::session_subject(&cluster, &route.session, None).map_err(TransportError::from)?;
    let mut incoming =
        futures::stream::select(bus.subscribe(inbox).await?, bus.subscribe(broadcast).await?);

    let name = format!("session-{}", &session_hex[..12]);
    let (port, result) = spawn_protocol(&name, timeout, move |channel| protocol(my_index, channel))
        .map_err(|e| SessionError::Invalid(format!("cannot start the protocol thread: {e}")))?;
    let (inbox, mut outgoing) = port.into_parts();
    let mut result = std::pin::pin!(result);
    let mut stats = SessionStats::default();
    let mut seen: BTreeSet<(String, u64)> = BTreeSet::new();
    let lookup = |id: &str| {
        manifest
            .node(id)
            .filter(|_| route.participants.iter().any(|p| p == id))
    };
    let mut sender = Sender {
        bus,
        identity: &identity,
        manifest: &manifest,
        cluster: &cluster,
        route,
        me: &me,
        seq: 0,
        progress,
    };
    let mut barrier = JoinBarrier::new(&me, route.participants.len());
    let mut resend = tokio::time::interval(JOIN_RESEND);
    let mut check_peers = tokio::time::interval(PEER_CHECK);
    // The protocol's outcome once its thread is done, and until when its last messages may
    // wait for peers that have not joined yet.
    let mut finished: Option<(Result<T, ProtocolError>, tokio::time::Instant)> = None;

    loop {
        let all_joined = barrier.complete();
        if all_joined {
            if let Some((out, _)) = finished.take() {
                // Everything this node sent is out, held messages included.
                bus.client()
                    .flush()
                    .await
                    .map_err(|e| TransportError::Core {
                        operation: "flush",
                        detail: e.to_string(),
                    })?;
                return Ok((out?, stats));
            }
        }
        let linger = finished.as_ref().map(|(_, until)| *until);
        tokio::select! {
            biased;
            out = result.as_mut(), if finished.is_none() => {
                // The protocol's last messages (its final share, say) may still be queued:
                // peers need them even though this node is done. A protocol that ends
                // without hearing from everyone (a dealer that only sends) may finish
                // before every peer joined: its messages are held until they have.
                while let Ok(msg) = outgoing.try_recv() {
                    if let Some(msg) = barrier.pass(msg) {
                        sender.send_protocol(msg).await?;
                    }
                }
                if let Err(e) = out {
                    return Err(e.into());
                }
                finished = Some((out, tokio::time::Instant::now() + timeout));
            }
            () = tokio::time::sleep_until(linger.unwrap_or_else(tokio::time::Instant::now)), if linger.is_some() => {
                let missing: Vec<PartyIndex> = route
                    .participants
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| !barrier.joined.contains(*p))
                    .map(|(i, _)| i as PartyIndex)
                    .collect();
                return Err(SessionError::Protocol(ProtocolError::Timeout { missing, round: 0 }));
            }
            _ = resend.tick(), if !all_joined => sender.send(MessageKind::Control, None, 0, JOIN).await?,
            _ = check_peers.tick(), if watch.is_some() => {
                if let Some(watch) = watch {
                    let now = Instant::now();
                    for p in route.participants.iter().filter(|p| **p != me) {
                        let heard = (watch.last_heard)(p).map_or(started, |t| t.max(started));
                        let silent = now.saturating_duration_since(heard);
                        if silent > watch.silent_after {
                            return Err(SessionError::PeerDown { node: p.clone(), silent });
                        }
                    }
                }
            }
            Some(msg) = outgoing.next() => {
                if let Some(msg) = barrier.pass(msg) {
                    sender.send_protocol(msg).await?;
                }
            }
            Some(message) = incoming.next() => {
                let opened = envelope::open(&message.payload, lookup, (&me, identity.agreement_secret()), &cluster);
                let (header, payload) = match opened {
                    Ok(v) => v,
                    Err(e) => {
                        *stats.dropped.entry(reason(&e)).or_default() += 1;
                        tracing::debug!(error = %e, "dropped a session envelope");
                        continue;
                    }
                };
                if header.from == me {
                    continue; // our own broadcast, echoed by NATS
                }
                if header.session != route.session {
                    *stats.dropped.entry("wrong_session").or_default() += 1;
                    continue;
                }
                if !seen.insert((header.from.clone(), header.seq)) {
                    stats.duplicates += 1;
                    continue;
                }
                let Some(from) = route.participants.iter().position(|p| *p == header.from) else {
                    *stats.dropped.entry("not_a_participant").or_default() += 1;
                    continue;
                };
                let control = header.kind == MessageKind::Control;
                if control && &payload[..] != JOIN {
                    continue;
                }
                // A join, or a protocol message (a peer sends those only once it saw every
                // join): either way the sender has joined.
                if let Some(released) = barrier.join(&header.from) {
                    if control {
                        // Answer a newcomer, who may have subscribed after our last join.
                        sender.send(MessageKind::Control, None, 0, JOIN).await?;
                    }
                    for msg in released {
                        sender.send_protocol(msg).await?;
                    }
                }
                if control {
                    continue;
                }
                stats.delivered += 1;
                if let Some(p) = progress {
                    p.received(header.round);
                }
                // The protocol thread may have finished; its result arrives on the next turn.
                let _ = inbox.deliver(Incoming {
                    from: from as PartyIndex,
                    broadcast: header.to.is_none(),
                    round: header.round,
                    payload: payload.to_vec(),
                });
            }
        }
    }
}

/// Who of a session has joined, and the protocol messages held until everyone has.
struct JoinBarrier {
    joined: BTreeSet<String>,
    size: usize,
    held: Vec<keyrack_plugin::Outgoing>,
}

impl JoinBarrier {
    fn new(me: &str, size: usize) -> Self {
        JoinBarrier {
            joined: BTreeSet::from([me.to_owned()]),
            size,
            held: Vec::new(),
        }
    }

    fn complete(&self) -> bool {
        self.joined.len() == self.size
    }

    /// The message to send now, or `None` if it is held until everyone has joined.
    fn pass(&mut self, msg: keyrack_plugin::Outgoing) -> Option<keyrack_plugin::Outgoing> {
        if self.complete() {
            Some(msg)
        } else {
            self.held.push(msg);
            None
        }
    }

    /// Records that `node` joined. `None` if it had already; otherwise the held messages
    /// to send now (all of them if it was the last to join, else none).
    fn join(&mut self, node: &str) -> Option<Vec<keyrack_plugin::Outgoing>> {
        if !self.joined.insert(node.to_owned()) {
            return None;
        }
        Some(if self.complete() {
            std::mem::take(&mut self.held)
        } else {
            Vec::new()
        })
    }
}

/// Seals an envelope as this node: signed with its identity and, when the header names a
/// recipient, encrypted to that member's agreement key from the manifest.
pub(crate) fn seal_as(
    identity: &NodeIdentity,
    manifest: &VerifiedManifest,
    header: &Header,
    payload: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let peer = header.to.as_deref().and_then(|t| manifest.node(t));
    envelope::seal(
        identity.signing_key(),
        identity.agreement_secret(),
        peer,
        header,
        payload,
    )
}

/// Seals and publishes this node's envelopes of one session, numbering them.
struct Sender<'a> {
    bus: &'a Bus,
    identity: &'a NodeIdentity,
    manifest: &'a VerifiedManifest,
    cluster: &'a str,
    route: &'a SessionRoute,
    me: &'a str,
    seq: u64,
    progress: Option<&'a SessionProgress>,
}

impl Sender<'_> {
    async fn send_protocol(&mut self, msg: keyrack_plugin::Outgoing) -> Result<(), SessionError> {
        let to = match msg.to {
            Recipient::Broadcast => None,
            Recipient::Party(i) => Some(
                self.route
                    .participants
                    .get(usize::from(i))
                    .cloned()
                    .ok_or_else(|| {
                        SessionError::Invalid(format!(
                            "the protocol addressed party {i} of {}",
                            self.route.participants.len()
                        ))
                    })?,
            ),
        };
        if let Some(p) = self.progress {
            p.sent(msg.round);
        }
        self.send(MessageKind::Protocol, to, msg.round, &msg.payload)
            .await
    }

    async fn send(
        &mut self,
        kind: MessageKind,
        to: Option<String>,
        round: u16,
        payload: &[u8],
    ) -> Result<(), SessionError> {
        let header = Header {
            version: 1,
            cluster: self.cluster.to_owned(),
            session: self.route.session,
            kind,
            round,
            from: self.me.to_owned(),
            to: to.clone(),
            seq: self.seq,
        };
        self.seq += 1;
        let sealed = seal_as(self.identity, self.manifest, &header, payload)
            .map_err(|e| SessionError::Invalid(format!("cannot seal a message: {e}")))?;
        let subject = subjects::session_subject(self.cluster, &self.route.session, to.as_deref())
            .map_err(TransportError::from)?;
        self.bus.publish(subject, sealed).await?;
        Ok(())
    }
}
