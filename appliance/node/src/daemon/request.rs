//! One accepted request, at one node: handshake, session, store, result.

use std::sync::Arc;
use std::time::Instant;

use keyrack_client::codes::ErrorCode;
use keyrack_client::request::{PayloadKind, RequestKind, VerifiedRequest};
use keyrack_client::result::{KeyInfo, ResultBody, SignatureInfo, Status};
use keyrack_client::scheme::Scheme;
use keyrack_plugin::{
    ChainPlugin, KeyShare, KeygenParams, PayloadFormat, SchemePlugin, Session, SignRequest,
    SignerKey, SigningItem,
};
use sha2::{Digest, Sha256};

use keyrack_ecdsa_cggmp21::EcdsaPlugin;
use keyrack_policy::Committee;

use super::control::{self, Control};
use super::gate::{self, Facts};
use super::pool::{self, PoolKey, PoolUse};
use super::Node;
use crate::chains::KeyDecodeError;
use crate::coordinator::{Action, Handshake, Need, Start};
use crate::ecdsa::{ensure_committee, CommitteeContext, FixedAux};
use crate::session::{sub_session, SessionRoute};
use crate::store::{KeyStatus, KeygenStart, NewKey, NewSession, StoreError};

/// An outcome to report: `Ok` with what to put in the result, or a code and a message.
pub(super) type Outcome = Result<Done, (Status, ErrorCode, String)>;

/// What an `ok` result carries.
#[derive(Debug, Default)]
pub(super) struct Done {
    /// keygen, reshare, refresh, status: the keys.
    pub keys: Vec<KeyInfo>,
    /// sign: every signature, in order.
    pub signatures: Vec<SignatureInfo>,
    /// sign of a chain payload: the chain plugin's signed output.
    pub signed_payload: Option<Vec<u8>>,
    /// For people.
    pub message: String,
}

impl Done {
    pub(super) fn keys(keys: Vec<KeyInfo>) -> Self {
        Done {
            keys,
            ..Done::default()
        }
    }

    pub(super) fn message(message: String) -> Self {
        Done {
            message,
            ..Done::default()
        }
    }
}

pub(super) fn refuse(code: ErrorCode, message: impl Into<String>) -> (Status, ErrorCode, String) {
    (Status::Refused, code, message.into())
}

pub(super) fn fail(code: ErrorCode, message: impl Into<String>) -> (Status, ErrorCode, String) {
    (Status::Failed, code, message.into())
}

/// Handles an accepted request to the end and publishes this node's result (if it has one:
/// a node left out of a signing session stands down silently, and a request the policy
/// parks has had its `pending` notice).
pub async fn handle(node: Arc<Node>, request: VerifiedRequest) {
    let started = Instant::now();
    let request_id = request.body.request_id.clone();
    let outcome = match request.body.kind {
        RequestKind::Approve => super::policy::approve(&node, &request).await,
        RequestKind::Reject => super::policy::reject(&node, &request).await,
        RequestKind::Policy => super::policy::activate(&node, &request).await,
        RequestKind::Keygen
        | RequestKind::Sign
        | RequestKind::Reshare
        | RequestKind::Refresh
        | RequestKind::Delete
        | RequestKind::Status => governed(&node, &request).await,
    };
    node.control.unregister(&request_id);
    let metrics = &node.telemetry.metrics;
    let kind = request.body.kind.as_str();
    let Some(outcome) = outcome else {
        return metrics.request_done(kind, "stood_down", None, started.elapsed());
    };
    if let Err((Status::Pending, code, _)) = &outcome {
        // Parked by the policy: the client has its notice; the answer comes when it is
        // carried on.
        return metrics.request_done(kind, "parked", Some(code.as_str()), started.elapsed());
    }
    let (status, code, done) = match outcome {
        Ok(mut done) if request.body.kind == RequestKind::Status => {
            // What is under way on the key here (a reshare's committee setup, say).
            done.message = super::status::under_way(&node, &request.body.key_id, &done.keys).await;
            (Status::Ok, None, done)
        }
        Ok(done) => (Status::Ok, None, done),
        Err((status, code, message)) => (status, Some(code), Done::message(message)),
    };
    let outcome = match status {
        Status::Ok => "ok",
        Status::Refused => "refused",
        _ => "failed",
    };
    // An operator reading the log sees why a request did not complete here, as its client
    // does in the result.
    let code_str = code.map_or("-", ErrorCode::as_str);
    match status {
        Status::Ok | Status::Pending => {}
        Status::Refused => {
            tracing::info!(request = %request_id, kind, code = code_str, message = %done.message, "request refused");
        }
        Status::Failed => {
            tracing::warn!(request = %request_id, kind, code = code_str, message = %done.message, "request failed");
        }
    }
    metrics.request_done(
        kind,
        outcome,
        code.map(ErrorCode::as_str),
        started.elapsed(),
    );
    if status == Status::Ok && request.body.kind == RequestKind::Sign {
        node.telemetry
            .activity
            .signed(keyrack_client::now_ms(), started.elapsed());
    }
    let body = ResultBody {
        version: 1,
        request_id: request_id.clone(),
        request_hash: request.hash(),
        node_id: node.identity.node_id().to_owned(),
        client_id: request.body.client_id.clone(),
        status,
        code,
        message: done.message,
        keys: done.keys,
        signature: done.signatures.first().cloned(),
        signatures: if done.signatures.len() > 1 || done.signed_payload.is_some() {
            done.signatures
        } else {
            vec![]
        },
        signed_payload: done.signed_payload,
        at_ms: keyrack_client::now_ms(),
    };
    let signed = match body.sign(node.identity.signing_key()) {
        Ok(s) => s,
        Err(e) => return tracing::error!(error = %e, "cannot sign a result"),
    };
    if let Err(e) = node
        .bus
        .publish_result(
            &request.body.client_id,
            &request_id,
            node.identity.node_id(),
            signed.to_json(),
        )
        .await
    {
        tracing::error!(error = %e, request = request_id, "cannot publish a result");
    }
}

/// A request the policy governs, through its one door: what it asks ([`facts`]), the
/// policy's decision at this node ([`gate::decide`]), the work of its kind, and the audit of
/// what came of it.
async fn governed(node: &Arc<Node>, request: &VerifiedRequest) -> Option<Outcome> {
    let kind = request.body.kind;
    // One session record per request this node works on or refuses (keyed by the request
    // id; none while the policy holds it): what a redelivery after a crash is answered
    // from, and what the console lists.
    let runs_protocol = matches!(
        kind,
        RequestKind::Keygen | RequestKind::Sign | RequestKind::Reshare | RequestKind::Refresh
    );
    let decided = match facts(node, request).await {
        Ok((facts, sign)) => gate::decide(node, request, &facts)
            .await
            .map(|allowed| (allowed, sign)),
        Err(stop) => Err(stop),
    };
    let (allowed, sign) = match decided {
        Ok(decided) => decided,
        Err(stop) => {
            if stop.0 != Status::Pending {
                // Held here before (carried on by the keeper)? It is held no longer.
                gate::forget(node, request, &stop).await;
                if runs_protocol {
                    start_session(node, request).await;
                    finish_session(node, request, &Some(Err(stop.clone()))).await;
                }
            }
            return Some(Err(stop));
        }
    };
    if runs_protocol {
        start_session(node, request).await;
    }
    let (outcome, spent) = match (kind, sign) {
        (RequestKind::Sign, Some(sign)) => {
            let (outcome, shared) = sign_allowed(node, request, &sign).await;
            // What was reserved stays spent unless this node's share never went out: a node
            // left out of the signer set stands down (the others sign); a session that
            // failed may still have given the others this node's partial signature (a peer
            // that withholds its own part can finish the signature alone). Only a failure
            // before any session releases it.
            let spent = shared || !matches!(outcome, Some(Err(_)));
            (outcome, spent)
        }
        (RequestKind::Keygen, _) => (keygen(node, request).await, true),
        (RequestKind::Status, _) => (super::status::status(node, request).await, true),
        (RequestKind::Reshare | RequestKind::Refresh, _) => {
            (super::lifecycle::reshare(node, request).await, true)
        }
        (RequestKind::Delete, _) => (super::lifecycle::delete(node, request).await, true),
        _ => (
            Some(Err(fail(ErrorCode::Internal, "no door for this kind"))),
            false,
        ),
    };
    let bundle_version = allowed.bundle_version;
    allowed.settle(node, spent).await;
    if runs_protocol {
        finish_session(node, request, &outcome).await;
    }
    gate::audit_outcome(node, request, bundle_version, &outcome).await;
    outcome
}

async fn start_session(node: &Node, request: &VerifiedRequest) {
    let body = request.body.clone();
    record_session(node, move |store| {
        store.start_session(&NewSession {
            session_id: &body.request_id,
            request_id: &body.request_id,
            kind: body.kind.as_str(),
            key: body
                .schemes
                .first()
                .map(|s| (body.key_id.as_str(), s.as_str())),
        })
    })
    .await;
}

async fn finish_session(node: &Node, request: &VerifiedRequest, outcome: &Option<Outcome>) {
    let id = request.body.request_id.clone();
    let error = match outcome {
        Some(Err((_, code, message))) => Some(format!("{code}: {message}")),
        _ => None,
    };
    record_session(node, move |store| {
        store.finish_session(&id, error.as_deref().map_or(Ok(()), Err))
    })
    .await;
}

/// What a governed request asks, as the policy reads it, and for a sign request what it
/// signs. Read here, never taken from a peer: the key's current threshold and committee
/// (reshare, refresh) from this node's store, the intent from its own chain plugins.
async fn facts(
    node: &Arc<Node>,
    request: &VerifiedRequest,
) -> Result<(Facts, Option<SignPrep>), gate::Stop> {
    let body = &request.body;
    let Some(mut facts) = Facts::of(request) else {
        return Err(fail(ErrorCode::Internal, "not a governed request kind"));
    };
    match body.kind {
        RequestKind::Sign => {
            let prep = sign_prep(node, request).await?;
            facts.raw_digest = prep.prepared.raw_digest;
            facts.intent = prep.prepared.intent.clone();
            return Ok((facts, Some(prep)));
        }
        RequestKind::Keygen => {
            facts.new_threshold = body.threshold;
            facts.new_committee = Some(node.manifest().nodes().len() as u16);
            facts.reuse_deleted_id = body.reuse_deleted_id;
        }
        RequestKind::Reshare | RequestKind::Refresh => {
            facts.new_threshold = body.threshold;
            facts.new_committee = body.participants.as_ref().map(|p| p.len() as u16);
            let (store, key_id, schemes) = (
                node.store.clone(),
                body.key_id.clone(),
                body.schemes.clone(),
            );
            let records = blocking(move || {
                schemes
                    .iter()
                    .map(|s| store.key(&key_id, s.as_str()))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?
            .map_err(|e| fail(ErrorCode::Internal, e.to_string()))?;
            facts.current = records
                .into_iter()
                .flatten()
                .filter(|r| r.status == KeyStatus::Ready)
                .map(|r| Committee {
                    threshold: r.threshold,
                    size: r.participants.len() as u16,
                })
                .collect();
        }
        _ => {}
    }
    Ok((facts, None))
}

/// The plugin serving `scheme`, or the refusal to answer with.
pub(super) fn plugin_for(
    node: &Node,
    scheme: Scheme,
) -> Result<Arc<dyn SchemePlugin>, (Status, ErrorCode, String)> {
    node.registry.scheme(scheme.as_str()).ok_or_else(|| {
        refuse(
            ErrorCode::UnsupportedScheme,
            format!("{} is not served by this node", scheme.as_str()),
        )
    })
}

/// Runs the ready/start handshake; `Ok(Some(start))` to run, `Ok(None)` to stand down.
pub(super) async fn handshake(
    node: &Node,
    request: &VerifiedRequest,
    members: &[String],
    need: Need,
) -> Result<Option<Start>, String> {
    let request_id = &request.body.request_id;
    let hash = request.hash();
    let me = node.identity.node_id();
    let mut inbox = node.control.register(request_id);
    node.telemetry.live.phase("handshake");
    let mut hs = Handshake::new(
        request_id,
        me,
        members,
        need,
        Instant::now(),
        node.settings.leader_timeout,
    );
    let mut actions = hs.accept();
    loop {
        for action in std::mem::take(&mut actions) {
            tracing::debug!(request = %request_id, node = me, ?action, "handshake");
            match action {
                Action::SendReady { to, attempt } => {
                    control::send(
                        node,
                        request_id,
                        hash,
                        Some(&to),
                        &Control::Ready { attempt },
                    )
                    .await?
                }
                Action::PublishStart(start) => {
                    control::send(node, request_id, hash, None, &Control::Start(start)).await?;
                }
                Action::Run(start) => return Ok(Some(start)),
                Action::StandDown => return Ok(None),
                Action::Fail(reason) => return Err(reason),
            }
        }
        let deadline = tokio::time::Instant::from_std(hs.deadline());
        tokio::select! {
            message = inbox.recv() => {
                let Some((from, message)) = message else { return Err("control channel closed".into()) };
                tracing::debug!(request = %request_id, node = me, %from, ?message, "control message");
                actions = match message {
                    Control::Ready { attempt } => hs.on_ready(&from, attempt),
                    // A Start counts only from the leader it names: the sender is authenticated.
                    Control::Start(start) if start.leader == from => hs.on_start(start),
                    Control::Start(_) | Control::Presign(_) => vec![],
                };
            }
            _ = tokio::time::sleep_until(deadline) => actions = hs.on_tick(Instant::now()),
        }
    }
}

/// Writes to the session records off the runtime; a failure is logged (the request itself
/// goes on: its result does not depend on its record).
async fn record_session(
    node: &Node,
    write: impl FnOnce(&crate::store::Store) -> Result<(), StoreError> + Send + 'static,
) {
    let store = node.store.clone();
    match blocking(move || write(&store)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "cannot write a session record"),
        Err((_, _, e)) => tracing::error!(error = %e, "cannot write a session record"),
    }
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, (Status, ErrorCode, String)> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| fail(ErrorCode::Internal, e.to_string()))
}

fn key_info(
    key_id: &str,
    scheme: Scheme,
    share: &KeyShare,
    participants: &[String],
    version: u32,
) -> KeyInfo {
    KeyInfo {
        key_id: key_id.to_owned(),
        scheme,
        public_key: share.public_key.clone(),
        chain_code: share.chain_code,
        threshold: share.threshold,
        participants: participants.to_vec(),
        version,
        status: None,
    }
}

async fn keygen(node: &Arc<Node>, request: &VerifiedRequest) -> Option<Outcome> {
    let body = &request.body;
    let members: Vec<String> = node
        .manifest()
        .nodes()
        .iter()
        .map(|n| n.node_id().to_owned())
        .collect();
    let parties = members.len() as u16;
    let Some(threshold) = body.threshold else {
        return Some(Err(refuse(
            ErrorCode::InvalidRequest,
            "keygen needs a threshold",
        )));
    };
    if let Err(e) = keyrack_client::request::check_threshold(threshold, members.len()) {
        return Some(Err(refuse(e.code(), e.to_string())));
    }
    let mut plugins = std::collections::BTreeMap::new();
    for scheme in &body.schemes {
        match plugin_for(node, *scheme) {
            Ok(plugin) => plugins.insert(*scheme, plugin),
            Err(e) => return Some(Err(e)),
        };
    }
    // No keygen while a reshare, refresh or delete of the key id runs here (nor the other
    // way round): each would act on a record the other is changing.
    let _op = match node.key_ops.begin(&body.key_id, &body.schemes) {
        Ok(op) => op,
        Err(busy) => return Some(Err(refuse(ErrorCode::KeyInProgress, busy))),
    };
    // Idempotency and in-progress checks, per scheme, before anything runs.
    let mut ready = vec![];
    let mut to_run = vec![];
    for scheme in body.schemes.clone() {
        let (store, key_id, new) = (
            node.store.clone(),
            body.key_id.clone(),
            NewKey {
                threshold,
                parties,
                participants: members.clone(),
                allow_reuse_of_deleted_id: body.reuse_deleted_id,
            },
        );
        let started =
            match blocking(move || store.begin_keygen(&key_id, scheme.as_str(), &new)).await {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
        match started {
            Ok(KeygenStart::AlreadyReady(record)) => ready.push((scheme, record)),
            Ok(KeygenStart::Started { version }) => to_run.push((scheme, version)),
            Err(StoreError::InProgress { .. }) => {
                return Some(Err(refuse(
                    ErrorCode::KeyInProgress,
                    "a keygen for this key id is in progress",
                )))
            }
            Err(StoreError::Tombstoned { .. }) => {
                return Some(Err(refuse(
                    ErrorCode::KeyDeleted,
                    "this key id was deleted",
                )))
            }
            Err(e @ StoreError::InvalidRequest(_)) => {
                return Some(Err(refuse(ErrorCode::InvalidRequest, e.to_string())))
            }
            Err(e) => return Some(Err(fail(ErrorCode::Internal, e.to_string()))),
        }
    }
    // Idempotent only for the same key: the same id with other parameters is refused.
    if let Some((scheme, _)) = ready
        .iter()
        .find(|(_, r)| r.threshold != threshold || r.participants != members)
    {
        return Some(Err(refuse(
            ErrorCode::KeyExistsWithOtherParams,
            format!(
                "{} key '{}' exists with another threshold or committee",
                scheme.as_str(),
                body.key_id
            ),
        )));
    }
    let mut keys: Vec<KeyInfo> = ready
        .iter()
        .filter_map(|(scheme, r)| {
            Some(KeyInfo {
                key_id: r.key_id.clone(),
                scheme: *scheme,
                public_key: r.public_key.clone()?,
                chain_code: r.chain_code?,
                threshold: r.threshold,
                participants: r.participants.clone(),
                version: r.version,
                status: None,
            })
        })
        .collect();
    if to_run.is_empty() {
        return Some(Ok(Done::keys(keys)));
    }
    let fail_all = |reason: String| {
        let (store, key_id, schemes) = (node.store.clone(), body.key_id.clone(), to_run.clone());
        async move {
            let _ = blocking(move || {
                for (scheme, _) in schemes {
                    let _ = store.fail_keygen(&key_id, scheme.as_str(), &reason);
                }
            })
            .await;
        }
    };
    let start = match handshake(node, request, &members, Need::All).await {
        Ok(Some(start)) => start,
        Ok(None) => {
            fail_all("left out of the keygen".into()).await;
            return Some(Err(fail(
                ErrorCode::ProtocolFailed,
                "this node was left out of the keygen",
            )));
        }
        Err(reason) => {
            fail_all(reason.clone()).await;
            return Some(Err(fail(ErrorCode::Timeout, reason)));
        }
    };
    for (scheme, version) in to_run.clone() {
        let route = SessionRoute {
            session: sub_session(&start.session, scheme.as_str()),
            participants: start.participants.clone(),
        };
        let plugin = if scheme == Scheme::EcdsaSecp256k1 {
            // cggmp21 keys need the committee's aux info: agree on it (or make it) first.
            let context = CommitteeContext {
                node,
                session: route.session,
                members: &start.participants,
            };
            match ensure_committee(context).await {
                Ok(aux) => Arc::new(EcdsaPlugin::new(Arc::new(FixedAux(aux)))),
                Err(reason) => {
                    fail_all(reason.clone()).await;
                    return Some(Err(fail(ErrorCode::ProtocolFailed, reason)));
                }
            }
        } else {
            plugins[&scheme].clone()
        };
        let id = route.session;
        let ran = node
            .run_session(&route, move |me, ch| {
                plugin.keygen(
                    &Session { id, me, parties },
                    ch,
                    &KeygenParams { threshold },
                )
            })
            .await;
        let share = match ran {
            Ok((share, _)) => share,
            Err(e) => {
                fail_all(e.to_string()).await;
                return Some(Err(fail(ErrorCode::ProtocolFailed, e.to_string())));
            }
        };
        let (store, sealer, key_id, stored_share) = (
            node.store.clone(),
            node.sealer.clone(),
            body.key_id.clone(),
            share.clone(),
        );
        match blocking(move || {
            store.complete_keygen(&key_id, scheme.as_str(), &stored_share, sealer.as_ref())
        })
        .await
        {
            Ok(Ok(_)) => keys.push(key_info(&body.key_id, scheme, &share, &members, version)),
            Ok(Err(e)) => {
                fail_all(e.to_string()).await;
                return Some(Err(fail(ErrorCode::HsmFailure, e.to_string())));
            }
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(Done::keys(keys)))
}

/// A sign request, ready for policy: the scheme's plugin, the key's record and what is
/// signed.
struct SignPrep {
    plugin: Arc<dyn SchemePlugin>,
    scheme: Scheme,
    record: crate::store::KeyRecord,
    prepared: Prepared,
}

async fn sign_prep(node: &Arc<Node>, request: &VerifiedRequest) -> Result<SignPrep, gate::Stop> {
    let body = &request.body;
    let [scheme] = body.schemes.as_slice() else {
        return Err(refuse(
            ErrorCode::InvalidRequest,
            "a sign request names exactly one scheme",
        ));
    };
    let scheme = *scheme;
    let plugin = plugin_for(node, scheme)?;
    let (store, key_id) = (node.store.clone(), body.key_id.clone());
    let record = match blocking(move || store.key(&key_id, scheme.as_str())).await? {
        Ok(Some(r)) if r.status == KeyStatus::Ready => r,
        Ok(Some(r)) if r.status == KeyStatus::Deleted => {
            return Err(refuse(ErrorCode::KeyDeleted, "this key was deleted"))
        }
        Ok(_) => {
            return Err(refuse(
                ErrorCode::UnknownKey,
                format!("no READY {} key '{}'", scheme.as_str(), body.key_id),
            ))
        }
        Err(e) => return Err(fail(ErrorCode::Internal, e.to_string())),
    };
    let prepared = prepare(node, plugin.as_ref(), scheme, &record, request)?;
    Ok(SignPrep {
        plugin,
        scheme,
        record,
        prepared,
    })
}

/// What a sign request signs, and what policy reads about it.
struct Prepared {
    /// The messages to sign, in order.
    items: Vec<SigningItem>,
    /// For policy: a raw digest was asked.
    raw_digest: bool,
    /// For policy: the chain plugin's decoded intent.
    intent: Option<keyrack_plugin::Intent>,
    /// A chain payload: its plugin, format and the (derived) key it signs with.
    chain: Option<(Arc<dyn ChainPlugin>, PayloadFormat, Vec<u8>)>,
}

/// Computes what is signed: a chain payload through its chain plugin (digests and intent);
/// a plain message as the scheme signs it (Ed25519 the message itself, the secp256k1
/// schemes its SHA-256); a raw digest as given (Ed25519 signs no digests).
fn prepare(
    node: &Node,
    plugin: &dyn SchemePlugin,
    scheme: Scheme,
    record: &crate::store::KeyRecord,
    request: &VerifiedRequest,
) -> Result<Prepared, (Status, ErrorCode, String)> {
    let body = &request.body;
    let Some(payload) = body.payload.as_deref() else {
        return Err(refuse(ErrorCode::InvalidRequest, "nothing to sign"));
    };
    let plain = |message: Vec<u8>, raw_digest: bool| Prepared {
        items: vec![SigningItem {
            label: if raw_digest { "digest" } else { "message" }.into(),
            message,
        }],
        raw_digest,
        intent: None,
        chain: None,
    };
    let Some(format) = crate::chains::chain_format(body.payload_kind) else {
        return match (body.payload_kind, scheme) {
            (Some(PayloadKind::Digest), Scheme::Ed25519) => Err(refuse(
                ErrorCode::InvalidRequest,
                "Ed25519 signs messages, not digests",
            )),
            (Some(PayloadKind::Digest), _) if payload.len() == 32 => {
                Ok(plain(payload.to_vec(), true))
            }
            (Some(PayloadKind::Digest), _) => {
                Err(refuse(ErrorCode::InvalidRequest, "a digest is 32 bytes"))
            }
            (_, Scheme::Ed25519) => Ok(plain(payload.to_vec(), false)),
            _ => Ok(plain(Sha256::digest(payload).to_vec(), false)),
        };
    };
    let chain_id = body.chain.as_deref().unwrap_or_default();
    let Some(chain) = node.registry.chain(chain_id) else {
        return Err(refuse(
            ErrorCode::UnsupportedChain,
            format!("chain '{chain_id}' is not served by this node"),
        ));
    };
    if !chain.schemes().contains(&scheme.as_str()) {
        return Err(refuse(
            ErrorCode::UnsupportedScheme,
            format!(
                "{chain_id} is signed with {}, not {}",
                chain.schemes().join(" or "),
                scheme.as_str()
            ),
        ));
    }
    let (Some(root), Some(chain_code)) = (&record.public_key, &record.chain_code) else {
        return Err(fail(
            ErrorCode::Internal,
            "a READY key without a public key",
        ));
    };
    let (key, decoded) = crate::chains::decode_for_key(
        chain.as_ref(),
        plugin,
        format,
        payload,
        root,
        chain_code,
        &body.derivation_path,
    )
    .map_err(|e| match e {
        KeyDecodeError::Derivation(e) => {
            refuse(ErrorCode::InvalidRequest, format!("derivation: {e}"))
        }
        KeyDecodeError::Payload(e) => refuse(ErrorCode::InvalidPayload, format!("{chain_id}: {e}")),
    })?;
    if decoded.items.is_empty() {
        return Err(refuse(
            ErrorCode::InvalidPayload,
            format!("{chain_id}: nothing to sign in this payload"),
        ));
    }
    Ok(Prepared {
        items: decoded.items,
        raw_digest: false,
        intent: Some(decoded.intent),
        chain: Some((chain, format, key)),
    })
}

/// The handshake and the signing sessions of a request the policy allowed: one session per
/// item (a PSBT with several own inputs signs each), all by the same signer set. Also says
/// whether a signing session started (after which this node's share may have gone out).
async fn sign_allowed(
    node: &Arc<Node>,
    request: &VerifiedRequest,
    sign: &SignPrep,
) -> (Option<Outcome>, bool) {
    let mut shared = false;
    let outcome = sign_sessions(
        node,
        request,
        sign.plugin.clone(),
        sign.scheme,
        &sign.record,
        &sign.prepared,
        &mut shared,
    )
    .await;
    (outcome, shared)
}

async fn sign_sessions(
    node: &Arc<Node>,
    request: &VerifiedRequest,
    plugin: Arc<dyn SchemePlugin>,
    scheme: Scheme,
    record: &crate::store::KeyRecord,
    prepared: &Prepared,
    shared: &mut bool,
) -> Option<Outcome> {
    let body = &request.body;
    let start = match handshake(
        node,
        request,
        &record.participants,
        Need::Threshold(record.threshold),
    )
    .await
    {
        Ok(Some(start)) => start,
        Ok(None) => return None, // another t of the committee sign; this node says nothing
        Err(reason) => return Some(Err(fail(ErrorCode::Timeout, reason))),
    };
    let signers: Vec<u16> = start
        .participants
        .iter()
        .filter_map(|p| {
            record
                .participants
                .iter()
                .position(|q| q == p)
                .map(|i| i as u16)
        })
        .collect();
    // The share of the version the signer set was chosen for: if a reshare or refresh
    // committed meanwhile, the committee may be another one.
    let (store, sealer, key_id, version) = (
        node.store.clone(),
        node.sealer.clone(),
        body.key_id.clone(),
        record.version,
    );
    let loaded =
        blocking(move || store.load_share_at(&key_id, scheme.as_str(), version, sealer.as_ref()))
            .await;
    let share = match loaded {
        Ok(Err(StoreError::WrongState { .. })) => {
            return Some(Err(fail(
                ErrorCode::KeyInProgress,
                "the key moved to a new version (reshare or refresh) while signing began; \
                     send the request again",
            )))
        }
        Ok(Ok(share)) => Arc::new(share),
        Ok(Err(e)) => return Some(Err(fail(ErrorCode::HsmFailure, e.to_string()))),
        Err(e) => return Some(Err(e)),
    };
    // Every signer remembers the (key, signer set) as hot, whichever way it signs: its
    // first member keeps that set's presignature pool filled from now on ([`pool`]).
    if node.settings.presign_pool > 0 {
        node.pools.record_signing(PoolKey {
            key_id: body.key_id.clone(),
            scheme: scheme.as_str().to_owned(),
            key_version: record.version,
            signers: start.participants.clone(),
        });
    }
    let mut signatures = Vec::with_capacity(prepared.items.len());
    let mut raw = Vec::with_capacity(prepared.items.len());
    for (i, item) in prepared.items.iter().enumerate() {
        let session = if i == 0 {
            start.session
        } else {
            sub_session(&start.session, &format!("item-{i}"))
        };
        let route = SessionRoute {
            session,
            participants: start.participants.clone(),
        };
        let pool_use = PoolUse {
            store: node.store.clone(),
            sealer: node.sealer.clone(),
            key_id: body.key_id.clone(),
            scheme: scheme.as_str().to_owned(),
            key_version: record.version,
            enabled: node.settings.presign_pool > 0,
        };
        let sign_request = SignRequest {
            signers: signers.clone(),
            message: item.message.clone(),
            derivation_path: body.derivation_path.clone(),
        };
        let (id, parties) = (route.session, route.participants.len() as u16);
        let (plugin, share) = (plugin.clone(), share.clone());
        let started = Instant::now();
        *shared = true;
        let ran = node
            .run_session(&route, move |me, ch| {
                let session = Session { id, me, parties };
                pool::sign(
                    plugin.as_ref(),
                    &session,
                    ch,
                    &share,
                    &sign_request,
                    &pool_use,
                )
            })
            .await;
        let output = match ran {
            Ok(((output, presignature), _)) => {
                tracing::debug!(
                    request = %body.request_id,
                    item = %item.label,
                    presignature = presignature.as_deref().unwrap_or("none (full signing)"),
                    ms = started.elapsed().as_millis() as u64,
                    "signed"
                );
                output
            }
            Err(e) => {
                let what = if prepared.items.len() > 1 {
                    format!("{}: {e}", item.label)
                } else {
                    e.to_string()
                };
                return Some(Err(fail(ErrorCode::ProtocolFailed, what)));
            }
        };
        let Ok(signature) =
            <[u8; 64]>::try_from(&output.signature[..64.min(output.signature.len())])
        else {
            return Some(Err(fail(
                ErrorCode::Internal,
                "the plugin returned a short signature",
            )));
        };
        let ecdsa = scheme == Scheme::EcdsaSecp256k1;
        signatures.push(SignatureInfo {
            scheme,
            digest_or_message: item.message.clone(),
            derivation_path: body.derivation_path.clone(),
            public_key: output.public_key.clone(),
            signature,
            r: ecdsa.then(|| signature[..32].try_into().unwrap_or([0; 32])),
            s: ecdsa.then(|| signature[32..].try_into().unwrap_or([0; 32])),
            v: if ecdsa {
                output.signature.get(64).copied()
            } else {
                None
            },
        });
        raw.push(output.signature);
    }
    let signed_payload = match &prepared.chain {
        None => None,
        Some((chain, format, key)) => {
            let signer = SignerKey {
                scheme: scheme.as_str(),
                public_key: key,
            };
            let payload = body.payload.as_deref().unwrap_or_default();
            match chain.finish(*format, payload, signer, &raw) {
                Ok(out) => Some(out),
                Err(e) => {
                    return Some(Err(fail(
                        ErrorCode::Internal,
                        format!("{}: {e}", chain.id()),
                    )))
                }
            }
        }
    };
    Some(Ok(Done {
        signatures,
        signed_payload,
        ..Done::default()
    }))
}
