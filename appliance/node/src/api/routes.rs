//! The API's handlers, one per route of [`keyrack_client::api`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use keyrack_client::api::{self, Check};
use keyrack_client::codes::ErrorCode;
use keyrack_client::manifest::VerifiedManifest;
use keyrack_client::request::{RequestKind, SignedRequest, VerifiedRequest};
use keyrack_client::result::{SignedResult, Status};
use keyrack_client::subjects;
use keyrack_plugin::SignerKey;
use keyrack_policy::SignedBundle;
use serde::Deserialize;

use super::{ApiState, Failure};
use crate::store::{KeyRecord, ParkedState, Store, StoredBundle};
use crate::telemetry::Levels;
use crate::transport::TransportError;

type Answer<T> = Result<Json<T>, Failure>;

/// Routes without the token.
pub(super) fn open() -> Router<ApiState> {
    Router::new()
        .route(api::HEALTHZ, get(|| async { "ok\n" }))
        .route(api::READYZ, get(readyz))
}

/// Routes behind the token.
pub(super) fn guarded() -> Router<ApiState> {
    Router::new()
        .route(api::METRICS, get(metrics))
        .route(api::STATUS, get(status))
        .route(api::PEERS, get(peers))
        .route(api::BACKEND, get(backend))
        .route(api::KEYS, get(keys))
        .route(api::SESSIONS, get(sessions))
        .route(api::POOLS, get(pools))
        .route(
            api::APPROVALS,
            get(approvals)
                .post(submit)
                // A signed approval is well under 2 KiB; the wrapper and JSON escaping add
                // little. Bigger bodies are refused before they are read (413).
                .layer(axum::extract::DefaultBodyLimit::max(SUBMIT_MAX_BYTES)),
        )
        .route(api::POLICIES, get(policies))
        .route(api::AUDIT, get(audit))
        .route(api::AUDIT_VERIFY, get(audit_verify))
}

/// The largest `POST /v1/approvals` body taken.
const SUBMIT_MAX_BYTES: usize = 16 * 1024;

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Runs `read` on the store on a blocking thread.
async fn with_store<T, F>(state: &ApiState, read: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
{
    let store = state.node.store.clone();
    tokio::task::spawn_blocking(move || read(&store))
        .await
        .map_err(Failure::internal)?
        .map_err(|e| Failure::internal(format!("store: {e}")))
}

/// How old a kept HSM check `/readyz` answers with may be: probes polling it do not each
/// cost an HSM round trip (the signing path shares the HSM session).
const READY_HSM_MAX_AGE_MS: u64 = 5_000;

/// Checks the HSM backend (one round trip, on a blocking thread; one check at a time) and
/// keeps the result; a check younger than `max_age_ms` (finished while this one waited,
/// say) is answered instead.
async fn check_backend(state: &ApiState, max_age_ms: u64) -> Result<api::BackendHealth, Failure> {
    let _one_at_a_time = state.checking.lock().await;
    let kept = state
        .backend
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(b) =
        kept.filter(|b| keyrack_client::now_ms().saturating_sub(b.checked_at_ms) < max_age_ms)
    {
        return Ok(b);
    }
    let sealer = state.node.sealer.clone();
    let (health, took) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let health = sealer.health();
        (health, started.elapsed())
    })
    .await
    .map_err(Failure::internal)?;
    let view = api::BackendHealth {
        backend: health.backend.to_string(),
        key_id: health.key_id.clone(),
        ok: health.is_healthy(),
        detail: health.detail.clone(),
        latency_ms: took.as_secs_f64() * 1000.0,
        checked_at_ms: keyrack_client::now_ms(),
    };
    *state
        .backend
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(view.clone());
    Ok(view)
}

/// The last backend check, or a fresh one if there was none.
async fn last_backend(state: &ApiState) -> Result<api::BackendHealth, Failure> {
    let cached = state
        .backend
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    match cached {
        Some(b) => Ok(b),
        None => check_backend(state, 0).await,
    }
}

fn nats_state(state: &ApiState) -> String {
    use async_nats::connection::State as S;
    match state.node.bus.client().connection_state() {
        S::Connected => "connected",
        S::Pending => "pending",
        S::Disconnected => "disconnected",
    }
    .to_owned()
}

/// Readiness. Without the token it names each check and whether it passed, not what was
/// found (key labels, paths, error text are for the operator).
async fn readyz(State(state): State<ApiState>, headers: axum::http::HeaderMap) -> Response {
    let nats = nats_state(&state);
    let mut checks = vec![Check {
        name: "nats".into(),
        ok: nats == "connected",
        detail: nats,
    }];
    let store = with_store(&state, |s| s.active_bundle()).await;
    checks.push(Check {
        name: "store".into(),
        ok: store.is_ok(),
        detail: match &store {
            Ok(_) => "readable".into(),
            Err(Failure(_, e)) => e.message.clone(),
        },
    });
    let hsm = check_backend(&state, READY_HSM_MAX_AGE_MS).await;
    checks.push(match hsm {
        Ok(h) => Check {
            name: "hsm".into(),
            ok: h.ok,
            detail: format!("{} {}: {}", h.backend, h.key_id, h.detail),
        },
        Err(Failure(_, e)) => Check {
            name: "hsm".into(),
            ok: false,
            detail: e.message,
        },
    });
    let policy = state.node.policy.active();
    checks.push(Check {
        name: "policy".into(),
        ok: policy.is_some(),
        detail: match policy {
            Some(b) => format!("bundle version {} active", b.version()),
            None => "no policy bundle is active: every sign request is refused".into(),
        },
    });
    let ready = checks.iter().all(|c| c.ok);
    if !state.authorized(&headers) {
        for c in &mut checks {
            c.detail = if c.ok {
                "ok"
            } else {
                "failing (details with the API token)"
            }
            .into();
        }
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(api::Readiness { ready, checks })).into_response()
}

async fn metrics(State(state): State<ApiState>) -> Result<Response, Failure> {
    let peers_live = {
        let manifest = state.node.manifest();
        let members: Vec<String> = manifest
            .nodes()
            .iter()
            .map(|n| n.node_id().to_owned())
            .collect();
        live_members(&state, &members).len() as u64
    };
    let levels = with_store(&state, move |s| {
        let presignatures = s
            .pool_levels()?
            .into_iter()
            .map(|l| {
                let signers = l
                    .signers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                (l.key_id, l.scheme, signers, l.available)
            })
            .collect();
        Ok(Levels {
            presignatures,
            primes: s.prime_count()? as u64,
            peers_live,
            approvals_waiting: s.parked_requests()?.len() as u64,
        })
    })
    .await?;
    let text = state
        .node
        .telemetry
        .metrics
        .encode(&levels, &state.node.telemetry.live);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// The live members: those whose heartbeats arrive, and this node.
fn live_members(state: &ApiState, members: &[String]) -> Vec<String> {
    let me = state.node.identity.node_id();
    let live = state.node.peers.live(members);
    members
        .iter()
        .filter(|m| *m == me || live.contains(m))
        .cloned()
        .collect()
}

fn bundle_info(stored: &StoredBundle, signers: Option<Vec<String>>) -> api::BundleInfo {
    let parsed = SignedBundle::from_toml(&stored.bundle_toml).ok();
    let policy = parsed
        .as_ref()
        .and_then(|b| keyrack_policy::Policy::from_toml(&b.bundle.policy).ok());
    api::BundleInfo {
        version: stored.version,
        hash: hex::encode(stored.hash),
        previous: parsed
            .as_ref()
            .and_then(|b| b.bundle.previous)
            .map(hex::encode)
            .unwrap_or_default(),
        description: policy
            .as_ref()
            .and_then(|p| p.description().map(str::to_owned))
            .unwrap_or_default(),
        rules: policy
            .as_ref()
            .map(|p| p.rules().iter().map(|r| r.id.clone()).collect())
            .unwrap_or_default(),
        signers: signers.unwrap_or_else(|| {
            parsed
                .map(|b| b.signatures.into_iter().map(|(admin, _)| admin).collect())
                .unwrap_or_default()
        }),
        activated_at_ms: stored.activated_at_ms,
    }
}

async fn status(State(state): State<ApiState>) -> Answer<api::NodeStatus> {
    let node = &state.node;
    let manifest = node.manifest();
    let now_ms = keyrack_client::now_ms();
    let (active, waiting) = with_store(&state, move |s| {
        Ok((s.active_bundle()?, s.parked_requests()?.len() as u64))
    })
    .await?;
    let signers = node.policy.active().map(|b| b.signers());
    Ok(Json(api::NodeStatus {
        node_id: node.identity.node_id().to_owned(),
        cluster_id: node.cluster_id().to_owned(),
        software: env!("CARGO_PKG_VERSION").to_owned(),
        started_at_ms: node.telemetry.started_at_ms,
        now_ms,
        manifest: api::ManifestInfo {
            version: manifest.version(),
            hash: hex::encode(manifest.hash()),
            nodes: manifest
                .nodes()
                .iter()
                .map(|n| n.node_id().to_owned())
                .collect(),
            initiators: manifest
                .manifest()
                .initiators
                .iter()
                .map(|i| api::InitiatorInfo {
                    id: i.id.clone(),
                    roles: i.roles.clone(),
                })
                .collect(),
        },
        nats: api::NatsInfo {
            state: nats_state(&state),
            servers: state.nats_servers.as_ref().clone(),
        },
        backend: last_backend(&state).await?,
        policy: active.map(|b| bundle_info(&b, signers)),
        requests_in_flight: node.telemetry.live.requests_in_flight(),
        sessions_live: node.telemetry.live.sessions_live(),
        approvals_waiting: waiting,
        activity: node.telemetry.activity.snapshot(now_ms),
    }))
}

async fn peers(State(state): State<ApiState>) -> Answer<api::Peers> {
    let manifest = state.node.manifest();
    let me = state.node.identity.node_id();
    let members: Vec<String> = manifest
        .nodes()
        .iter()
        .map(|n| n.node_id().to_owned())
        .collect();
    let live = live_members(&state, &members);
    let now = Instant::now();
    Ok(Json(api::Peers {
        peers: members
            .iter()
            .map(|m| api::Peer {
                node_id: m.clone(),
                me: m == me,
                live: live.contains(m),
                last_heard_ms_ago: if m == me {
                    Some(0)
                } else {
                    state.node.peers.last_heard(m).map(|t| {
                        u64::try_from(now.saturating_duration_since(t).as_millis())
                            .unwrap_or(u64::MAX)
                    })
                },
            })
            .collect(),
    }))
}

async fn backend(State(state): State<ApiState>) -> Answer<api::BackendHealth> {
    check_backend(&state, 0).await.map(Json)
}

#[derive(Deserialize)]
struct KeysQuery {
    search: Option<String>,
}

fn key_view(state: &ApiState, k: KeyRecord) -> api::KeyView {
    let public_key = k.public_key.clone().unwrap_or_default();
    let mut addresses = vec![];
    if !public_key.is_empty() {
        for chain_id in state.node.registry.chain_ids() {
            let Some(chain) = state.node.registry.chain(chain_id) else {
                continue;
            };
            if !chain.schemes().contains(&k.scheme.as_str()) {
                continue;
            }
            let key = SignerKey {
                scheme: &k.scheme,
                public_key: &public_key,
            };
            if let Ok(list) = chain.addresses(key) {
                addresses.extend(list.into_iter().map(|address| api::AddressView {
                    chain: chain_id.to_owned(),
                    address,
                }));
            }
        }
    }
    api::KeyView {
        key_id: k.key_id,
        scheme: k.scheme,
        status: k.status.as_str().to_owned(),
        version: k.version,
        threshold: k.threshold,
        participants: k.participants,
        public_key: hex::encode(public_key),
        chain_code: k.chain_code.as_ref().map(hex::encode).unwrap_or_default(),
        created_at_ms: ms(k.created_at),
        error: k.error,
        addresses,
    }
}

async fn keys(State(state): State<ApiState>, Query(q): Query<KeysQuery>) -> Answer<api::Keys> {
    let search = q.search.unwrap_or_default().to_lowercase();
    // Addresses are derived per key and chain: CPU work, kept off the runtime's threads.
    let st = state.clone();
    let keys = with_store(&state, move |s| {
        Ok(s.keys()?
            .into_iter()
            .filter(|k| search.is_empty() || k.key_id.to_lowercase().contains(&search))
            .map(|k| key_view(&st, k))
            .collect())
    })
    .await?;
    Ok(Json(api::Keys { keys }))
}

#[derive(Deserialize)]
struct LimitQuery {
    limit: Option<u32>,
}

async fn sessions(
    State(state): State<ApiState>,
    Query(q): Query<LimitQuery>,
) -> Answer<api::Sessions> {
    let limit = q.limit.unwrap_or(50).min(500);
    let recent = with_store(&state, move |s| s.recent_sessions(limit)).await?;
    Ok(Json(api::Sessions {
        live: state.node.telemetry.live.snapshot(),
        recent: recent
            .into_iter()
            .map(|r| api::SessionView {
                session_id: r.session_id,
                request_id: r.request_id,
                kind: r.kind,
                key_id: r.key_id,
                scheme: r.scheme,
                state: r.state.as_str().to_lowercase(),
                started_at_ms: ms(r.started_at),
                finished_at_ms: r.finished_at.map(ms),
                error: r.error,
            })
            .collect(),
    }))
}

async fn pools(State(state): State<ApiState>) -> Answer<api::Pools> {
    let (presignatures, primes) = with_store(&state, |s| {
        let mut views = vec![];
        for l in s.pool_levels()? {
            // Signers are key indices: named by the key's committee.
            let committee = s.key(&l.key_id, &l.scheme)?.map(|k| k.participants);
            let signers = l
                .signers
                .iter()
                .map(|i| {
                    committee
                        .as_ref()
                        .and_then(|c| c.get(usize::from(*i)).cloned())
                        .unwrap_or_else(|| format!("#{i}"))
                })
                .collect();
            views.push(api::PoolView {
                key_id: l.key_id,
                scheme: l.scheme,
                signers,
                available: l.available,
            });
        }
        Ok((views, s.prime_count()? as u64))
    })
    .await?;
    Ok(Json(api::Pools {
        presignatures,
        primes,
    }))
}

async fn approvals(State(state): State<ApiState>) -> Answer<api::Approvals> {
    let now = keyrack_client::now_ms();
    let rows = with_store(&state, move |s| {
        s.parked_requests()?
            .into_iter()
            // One that just expired is about to be refused: no longer approvable.
            .filter(|p| p.state != ParkedState::Waiting || p.expires_at_ms > now)
            .map(|p| {
                let approvals = s.approvals_for(&p.request_hash, now)?;
                Ok((p, approvals))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    let waiting = rows
        .into_iter()
        .map(|(p, approvals)| {
            let summary: serde_json::Value =
                serde_json::from_str(&p.summary_json).unwrap_or_default();
            let schemes: Vec<String> = summary["schemes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let (state, run_at_ms) = match p.state {
                ParkedState::Waiting => (api::WaitState::WaitingForApprovals, None),
                ParkedState::Locked { run_at_ms, .. } => {
                    (api::WaitState::TimeLocked, Some(run_at_ms))
                }
            };
            api::WaitingRequest {
                request_hash: hex::encode(p.request_hash),
                kind: p.kind,
                state,
                run_at_ms,
                initiator: p.initiator,
                key_id: p.key_id,
                scheme: schemes.first().cloned().unwrap_or_default(),
                schemes,
                chain: summary["chain"].as_str().map(str::to_owned),
                waiting_since_ms: p.added_at_ms,
                expires_at_ms: p.expires_at_ms,
                intent: summary["intent"].clone(),
                decision: summary["decision"].clone(),
                request: String::from_utf8(p.signed_request).ok(),
                request_id: p.request_id,
                approvals: approvals
                    .into_iter()
                    .map(|a| api::ApprovalView {
                        approver: a.approver,
                        verdict: a.verdict.as_str().to_owned(),
                        expires_at_ms: a.expires_at_ms,
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(Json(api::Approvals { waiting }))
}

/// Checks a signed approve/reject request as every node will (signature, initiator, cluster,
/// body), publishes it to the verdict stream, and waits for the nodes' signed results for
/// it ([`verdict_results`]). 202: published, with the results that came (each node records
/// it or refuses it itself; the approver checks the results, not this node's word).
async fn submit(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<(StatusCode, Json<api::Submitted>), Failure> {
    let submitted: api::SubmitRequest = serde_json::from_slice(&body)
        .map_err(|e| Failure::bad_request(format!("expected {{\"signed_request\": …}}: {e}")))?;
    let bytes = submitted.signed_request.into_bytes();
    let signed = SignedRequest::parse(&bytes)
        .map_err(|e| Failure::bad_request(format!("signed_request: {e}")))?;
    let manifest = state.node.manifest();
    let verified = signed.verify_with(&manifest).map_err(|e| {
        Failure::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("signed_request does not verify: {e}"),
        )
    })?;
    let kind = verified.body.kind;
    if !matches!(kind, RequestKind::Approve | RequestKind::Reject) {
        return Err(Failure::bad_request(format!(
            "only approve and reject requests are taken here, not {}",
            kind.as_str()
        )));
    }
    if verified.body.expires_at_ms <= keyrack_client::now_ms() {
        return Err(Failure::bad_request("signed_request has expired"));
    }
    let request_id = verified.body.request_id.clone();
    // Opened first, on this request's result subject from the stream's start: it sees
    // every node's result however fast they come.
    let reader = state
        .node
        .bus
        .request_results(&verified.body.client_id, &request_id)
        .await;
    state
        .node
        .bus
        .publish_request(kind.as_str(), &request_id, bytes)
        .await
        .map_err(|e| {
            Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("cannot publish to NATS: {e}"),
            )
        })?;
    tracing::info!(request = %request_id, kind = kind.as_str(), initiator = %verified.initiator, "approver's request passed on from the HTTP API");
    let subject = subjects::request_subject(state.node.cluster_id(), kind.as_str())
        .map_err(Failure::internal)?;
    let results = match reader {
        Ok(reader) => verdict_results(&manifest, &verified, reader).await,
        Err(e) => {
            // Published all the same: the approver is told it is not confirmed.
            tracing::warn!(request = %request_id, error = %e, "cannot read the nodes' results for an approver's request");
            Vec::new()
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(api::Submitted {
            request_id,
            subject,
            results,
        }),
    ))
}

/// How long `POST /v1/approvals` waits for the nodes' signed results of a verdict.
const VERDICT_RESULTS_WAIT: Duration = Duration::from_secs(10);

/// The signed results of `request` (an approve or reject) from `results` (its result
/// subject, read from the start), until every node of `manifest` gave its final answer or
/// [`VERDICT_RESULTS_WAIT`] ran out: the wire JSON of those that verify under the manifest
/// and answer this very request, one per node (an `ok` over a refusal; a `replayed`
/// refusal, which a redelivery may cause after the node's outcome, does not end its wait).
async fn verdict_results(
    manifest: &VerifiedManifest,
    request: &VerifiedRequest,
    results: impl futures::Stream<Item = Result<Vec<u8>, TransportError>>,
) -> Vec<String> {
    /// A node's answer kept so far.
    struct Kept {
        /// `ok`, or a refusal other than `replayed`: nothing better is waited for.
        done: bool,
        ok: bool,
        /// Its wire JSON.
        json: String,
    }
    let deadline = tokio::time::Instant::now() + VERDICT_RESULTS_WAIT;
    let (hash, request_id) = (request.hash(), &request.body.request_id);
    let mut kept: BTreeMap<String, Kept> = BTreeMap::new();
    let answered = |kept: &BTreeMap<String, Kept>| {
        manifest
            .nodes()
            .iter()
            .all(|n| kept.get(n.node_id()).is_some_and(|k| k.done))
    };
    let mut results = std::pin::pin!(results);
    while !answered(&kept) {
        let bytes = match tokio::time::timeout_at(deadline, results.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::debug!(error = %e, "reading a verdict's results");
                continue;
            }
            Ok(Some(Ok(bytes))) => bytes,
        };
        let Ok(body) = SignedResult::parse(&bytes).and_then(|r| r.verify_with(manifest)) else {
            continue;
        };
        let ok = body.status == Status::Ok;
        if body.request_hash != hash
            || body.request_id != *request_id
            || body.status == Status::Pending
            || kept.get(&body.node_id).is_some_and(|k| k.ok && !ok)
        {
            continue;
        }
        let Ok(json) = String::from_utf8(bytes) else {
            continue;
        };
        let done = ok || body.code != Some(ErrorCode::Replayed);
        kept.insert(body.node_id, Kept { done, ok, json });
    }
    kept.into_values().map(|k| k.json).collect()
}

async fn policies(State(state): State<ApiState>) -> Answer<api::Policies> {
    // Each bundle's TOML is parsed: kept off the runtime's threads.
    let policies = with_store(&state, |s| {
        let (active, history) = (s.active_bundle()?, s.bundle_history()?);
        Ok(api::Policies {
            active: active.map(|b| bundle_info(&b, None)),
            history: history.iter().map(|b| bundle_info(b, None)).collect(),
        })
    })
    .await?;
    Ok(Json(policies))
}

#[derive(Deserialize)]
struct AuditQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn audit(
    State(state): State<ApiState>,
    Query(q): Query<AuditQuery>,
) -> Answer<api::AuditPage> {
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let (page, head) = with_store(&state, move |s| {
        Ok((s.audit_page(after, limit)?, s.audit_head()?))
    })
    .await?;
    let head_seq = head.map_or(0, |h| h.seq);
    let next = page.last().map(|r| r.seq).filter(|last| *last < head_seq);
    Ok(Json(api::AuditPage {
        entries: page
            .into_iter()
            .map(|r| api::AuditEntryView {
                seq: r.seq,
                at_ms: r.at_ms,
                kind: r.kind,
                request_id: r.request_id,
                entry: serde_json::from_str(&r.entry).unwrap_or(serde_json::Value::String(r.entry)),
                hash: hex::encode(r.hash),
            })
            .collect(),
        head_seq,
        next,
    }))
}

async fn audit_verify(State(state): State<ApiState>) -> Answer<api::AuditVerification> {
    let key = state.node.identity.signing_key().verifying_key();
    let checked = with_store(&state, move |s| {
        let count = s.audit_head()?.map_or(0, |h| h.seq);
        Ok((s.verify_audit_log(&key)?, count))
    })
    .await?;
    Ok(Json(match checked {
        (Ok(summary), _) => api::AuditVerification {
            ok: true,
            entries: summary.entries,
            head_hash: if summary.entries == 0 {
                String::new()
            } else {
                hex::encode(summary.head_hash)
            },
            broken_at: None,
            reason: None,
        },
        (Err(b), count) => api::AuditVerification {
            ok: false,
            entries: count,
            head_hash: String::new(),
            broken_at: Some(b.seq),
            reason: Some(b.reason.to_string()),
        },
    }))
}
