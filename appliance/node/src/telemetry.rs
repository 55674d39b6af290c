//! What a running node measures about itself, for its HTTP API ([`crate::api`]): Prometheus
//! metrics, the requests and protocol sessions under way (with their progress by round), and
//! the recent signing activity the console draws as sparklines.
//!
//! Recording is cheap (atomics and short-held locks) and never fails; nothing here holds a
//! secret or reads the store.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use keyrack_client::api;
use keyrack_hsm::{BackendId, Health, SealError, Sealer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use zeroize::Zeroizing;

/// Width of one activity bucket.
pub const ACTIVITY_BUCKET: Duration = Duration::from_secs(10);
/// Buckets kept (10 minutes).
pub const ACTIVITY_BUCKETS: usize = 60;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    key_id: String,
    scheme: String,
    signers: String,
}

fn seconds_histogram() -> Histogram {
    // 1 ms … ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

fn hsm_histogram() -> Histogram {
    // 0.1 ms … ~3 s: HSM calls are short, and a slow one is what operators look for.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The node's Prometheus metrics (names under `keyrack_`; docs/API.md lists them).
pub struct Metrics {
    registry: Registry,
    requests: Family<OutcomeLabels, Counter>,
    request_seconds: Family<KindLabel, Histogram, fn() -> Histogram>,
    refusals: Family<CodeLabel, Counter>,
    sessions: Family<OutcomeLabel, Counter>,
    session_seconds: Family<OutcomeLabel, Histogram, fn() -> Histogram>,
    hsm_seconds: Family<OpLabel, Histogram, fn() -> Histogram>,
    hsm_errors: Family<OpLabel, Counter>,
    in_flight: Gauge,
    sessions_live: Gauge,
    presignatures: Family<PoolLabels, Gauge>,
    primes: Gauge,
    peers_live: Gauge,
    approvals_waiting: Gauge,
    /// Held through [`Metrics::encode`]: it clears and refills the pool gauges, which two
    /// scrapes at once would interleave.
    encoding: std::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("keyrack");
        let m = Metrics {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(seconds_histogram),
            refusals: Family::default(),
            sessions: Family::default(),
            session_seconds: Family::new_with_constructor(seconds_histogram),
            hsm_seconds: Family::new_with_constructor(hsm_histogram),
            hsm_errors: Family::default(),
            in_flight: Gauge::default(),
            sessions_live: Gauge::default(),
            presignatures: Family::default(),
            primes: Gauge::default(),
            peers_live: Gauge::default(),
            approvals_waiting: Gauge::default(),
            encoding: std::sync::Mutex::new(()),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Requests this node handled, by kind and outcome (ok, refused, failed, stood_down)",
            m.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "From a request's intake to this node's result, by kind",
            m.request_seconds.clone(),
        );
        registry.register(
            "refusals",
            "Requests refused or failed at this node, by error code",
            m.refusals.clone(),
        );
        registry.register(
            "sessions",
            "Protocol sessions this node took part in, by outcome (ok, failed)",
            m.sessions.clone(),
        );
        registry.register(
            "session_duration_seconds",
            "Protocol session run time at this node, by outcome",
            m.session_seconds.clone(),
        );
        registry.register(
            "hsm_call_duration_seconds",
            "HSM backend calls (seal, unseal, health), by operation",
            m.hsm_seconds.clone(),
        );
        registry.register(
            "hsm_call_errors",
            "HSM backend calls that failed, by operation",
            m.hsm_errors.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests this node is handling now",
            m.in_flight.clone(),
        );
        registry.register(
            "sessions_live",
            "Protocol sessions under way at this node",
            m.sessions_live.clone(),
        );
        registry.register(
            "presignatures_available",
            "Presignatures (FROST nonces) ready, per key, scheme and signer set",
            m.presignatures.clone(),
        );
        registry.register(
            "primes_available",
            "Sealed safe-prime sets ready for ECDSA committee setup",
            m.primes.clone(),
        );
        registry.register(
            "peers_live",
            "Member nodes whose heartbeats arrive (this node included)",
            m.peers_live.clone(),
        );
        registry.register(
            "approvals_waiting",
            "Sign requests waiting for approvals at this node",
            m.approvals_waiting.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The levels read from the store when metrics are scraped.
#[derive(Debug, Default)]
pub struct Levels {
    /// (key id, scheme, signers joined by ',', available).
    pub presignatures: Vec<(String, String, String, u64)>,
    /// Sealed prime sets.
    pub primes: u64,
    /// Live member nodes.
    pub peers_live: u64,
    /// Requests waiting for approvals.
    pub approvals_waiting: u64,
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    /// A request's end at this node: `outcome` is `ok`, `refused`, `failed` or
    /// `stood_down`; `code` the error code of a refusal or failure.
    pub fn request_done(&self, kind: &str, outcome: &str, code: Option<&str>, took: Duration) {
        self.requests
            .get_or_create(&OutcomeLabels {
                kind: kind.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.request_seconds
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .observe(took.as_secs_f64());
        if let Some(code) = code {
            self.refusals
                .get_or_create(&CodeLabel {
                    code: code.to_owned(),
                })
                .inc();
        }
    }

    /// A protocol session's end.
    pub fn session_done(&self, ok: bool, took: Duration) {
        let label = OutcomeLabel {
            outcome: if ok { "ok" } else { "failed" }.to_owned(),
        };
        self.sessions.get_or_create(&label).inc();
        self.session_seconds
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    fn hsm_call(&self, op: &str, ok: bool, took: Duration) {
        let label = OpLabel { op: op.to_owned() };
        self.hsm_seconds
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        if !ok {
            self.hsm_errors.get_or_create(&label).inc();
        }
    }

    /// The exposition text (OpenMetrics, which Prometheus reads), with the levels given
    /// and the gauges of `live`.
    pub fn encode(&self, levels: &Levels, live: &Live) -> String {
        let _one_at_a_time = self
            .encoding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.presignatures.clear();
        for (key_id, scheme, signers, n) in &levels.presignatures {
            self.presignatures
                .get_or_create(&PoolLabels {
                    key_id: key_id.clone(),
                    scheme: scheme.clone(),
                    signers: signers.clone(),
                })
                .set(gauge_value(*n));
        }
        self.primes.set(gauge_value(levels.primes));
        self.peers_live.set(gauge_value(levels.peers_live));
        self.approvals_waiting
            .set(gauge_value(levels.approvals_waiting));
        self.in_flight.set(gauge_value(live.requests_in_flight()));
        self.sessions_live.set(gauge_value(live.sessions_live()));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// A [`Sealer`] that times every call into the metrics (`keyrack_hsm_call_duration_seconds`).
pub struct TimedSealer {
    inner: Box<dyn Sealer>,
    metrics: Arc<Metrics>,
}

impl TimedSealer {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn Sealer>, metrics: Arc<Metrics>) -> Self {
        TimedSealer { inner, metrics }
    }
}

impl Sealer for TimedSealer {
    fn backend(&self) -> BackendId {
        self.inner.backend()
    }

    fn key_id(&self) -> &str {
        self.inner.key_id()
    }

    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let started = Instant::now();
        let out = self.inner.seal(aad, plaintext);
        self.metrics
            .hsm_call("seal", out.is_ok(), started.elapsed());
        out
    }

    fn unseal(&self, aad: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let started = Instant::now();
        let out = self.inner.unseal(aad, blob);
        self.metrics
            .hsm_call("unseal", out.is_ok(), started.elapsed());
        out
    }

    fn health(&self) -> Health {
        let started = Instant::now();
        let out = self.inner.health();
        self.metrics
            .hsm_call("health", out.is_healthy(), started.elapsed());
        out
    }
}

/// Messages of one protocol session, as this node saw them.
#[derive(Debug, Default)]
pub struct SessionProgress {
    round: AtomicU16,
    sent: AtomicU64,
    received: AtomicU64,
}

impl SessionProgress {
    /// This node sent a message of `round`.
    pub fn sent(&self, round: u16) {
        self.round.fetch_max(round, Ordering::Relaxed);
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// A message of `round` was delivered to this node's protocol.
    pub fn received(&self, round: u16) {
        self.round.fetch_max(round, Ordering::Relaxed);
        self.received.fetch_add(1, Ordering::Relaxed);
    }
}

struct LiveSessionEntry {
    session_id: String,
    participants: Vec<String>,
    progress: Arc<SessionProgress>,
}

struct LiveRequestEntry {
    kind: String,
    key_id: String,
    initiator: String,
    started_at_ms: u64,
    phase: String,
    sessions: Vec<LiveSessionEntry>,
}

/// The requests and sessions under way at this node.
#[derive(Default)]
pub struct Live {
    requests: Mutex<BTreeMap<String, LiveRequestEntry>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("requests", &self.requests_in_flight())
            .finish()
    }
}

/// Sessions run outside any request (presignature pool refills) are listed under this id.
pub const BACKGROUND: &str = "background";

tokio::task_local! {
    /// The request the current task is handling (set by [`Live::scope`]).
    static CURRENT_REQUEST: String;
}

/// A request's entry in [`Live`], removed when dropped.
pub struct LiveRequestGuard<'a> {
    live: &'a Live,
    request_id: String,
}

impl Drop for LiveRequestGuard<'_> {
    fn drop(&mut self) {
        self.live.lock().remove(&self.request_id);
    }
}

/// A session's entry in [`Live`], removed when dropped.
pub struct LiveSessionGuard<'a> {
    live: &'a Live,
    request_id: String,
    session_id: String,
    /// Where the session runner counts messages.
    pub progress: Arc<SessionProgress>,
}

impl Drop for LiveSessionGuard<'_> {
    fn drop(&mut self) {
        let mut requests = self.live.lock();
        if let Some(r) = requests.get_mut(&self.request_id) {
            r.sessions.retain(|s| s.session_id != self.session_id);
            if self.request_id == BACKGROUND && r.sessions.is_empty() {
                requests.remove(BACKGROUND);
            }
        }
    }
}

impl Live {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, LiveRequestEntry>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lists a request as under way until the guard drops.
    pub fn begin(
        &self,
        request_id: &str,
        kind: &str,
        key_id: &str,
        initiator: &str,
        now_ms: u64,
    ) -> LiveRequestGuard<'_> {
        self.lock().insert(
            request_id.to_owned(),
            LiveRequestEntry {
                kind: kind.to_owned(),
                key_id: key_id.to_owned(),
                initiator: initiator.to_owned(),
                started_at_ms: now_ms,
                phase: "checking".to_owned(),
                sessions: vec![],
            },
        );
        LiveRequestGuard {
            live: self,
            request_id: request_id.to_owned(),
        }
    }

    /// Runs `work` as the handling of `request_id`: sessions and phases recorded within it
    /// are the request's.
    pub async fn scope<F: std::future::Future>(request_id: String, work: F) -> F::Output {
        CURRENT_REQUEST.scope(request_id, work).await
    }

    /// Records where the current task's request is (`deciding`, `waiting for approvals`,
    /// `handshake`, `running`…); nothing outside a [`Live::scope`].
    pub fn phase(&self, phase: &str) {
        let Ok(id) = CURRENT_REQUEST.try_with(Clone::clone) else {
            return;
        };
        if let Some(r) = self.lock().get_mut(&id) {
            phase.clone_into(&mut r.phase);
        }
    }

    /// Lists a protocol session of the current task's request (or a background one) until
    /// the guard drops.
    pub fn session(&self, session: &[u8; 32], participants: &[String]) -> LiveSessionGuard<'_> {
        let request_id = CURRENT_REQUEST
            .try_with(Clone::clone)
            .unwrap_or_else(|_| BACKGROUND.to_owned());
        let progress = Arc::new(SessionProgress::default());
        let session_id = hex::encode(session);
        let mut requests = self.lock();
        let entry = requests
            .entry(request_id.clone())
            .or_insert_with(|| LiveRequestEntry {
                kind: "presign".to_owned(),
                key_id: String::new(),
                initiator: String::new(),
                started_at_ms: keyrack_client::now_ms(),
                phase: "pool refill".to_owned(),
                sessions: vec![],
            });
        if request_id != BACKGROUND {
            "running".clone_into(&mut entry.phase);
        }
        entry.sessions.push(LiveSessionEntry {
            session_id: session_id.clone(),
            participants: participants.to_vec(),
            progress: progress.clone(),
        });
        LiveSessionGuard {
            live: self,
            request_id,
            session_id,
            progress,
        }
    }

    /// Requests under way (background pool refills not counted).
    pub fn requests_in_flight(&self) -> u64 {
        self.lock().keys().filter(|k| *k != BACKGROUND).count() as u64
    }

    /// Protocol sessions under way.
    pub fn sessions_live(&self) -> u64 {
        self.lock().values().map(|r| r.sessions.len() as u64).sum()
    }

    /// What is under way, oldest first.
    pub fn snapshot(&self) -> Vec<api::LiveRequest> {
        let mut out: Vec<api::LiveRequest> = self
            .lock()
            .iter()
            .map(|(id, r)| api::LiveRequest {
                request_id: id.clone(),
                kind: r.kind.clone(),
                key_id: r.key_id.clone(),
                initiator: r.initiator.clone(),
                started_at_ms: r.started_at_ms,
                phase: r.phase.clone(),
                sessions: r
                    .sessions
                    .iter()
                    .map(|s| api::LiveSession {
                        session_id: s.session_id.clone(),
                        participants: s.participants.clone(),
                        round: s.progress.round.load(Ordering::Relaxed),
                        sent: s.progress.sent.load(Ordering::Relaxed),
                        received: s.progress.received.load(Ordering::Relaxed),
                    })
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| (a.started_at_ms, &a.request_id).cmp(&(b.started_at_ms, &b.request_id)));
        out
    }
}

/// Signatures per [`ACTIVITY_BUCKET`] and their summed latency, for the console's sparklines.
#[derive(Debug, Default)]
pub struct Activity {
    /// (bucket index since the epoch, signatures, summed latency in ms).
    buckets: Mutex<std::collections::VecDeque<(u64, u64, u64)>>,
}

impl Activity {
    fn bucket_of(at_ms: u64) -> u64 {
        at_ms / ACTIVITY_BUCKET.as_millis() as u64
    }

    /// A signature completed at `at_ms`, `latency` after its request arrived.
    pub fn signed(&self, at_ms: u64, latency: Duration) {
        let bucket = Self::bucket_of(at_ms);
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        match buckets.back_mut() {
            Some(last) if last.0 == bucket => {
                last.1 += 1;
                last.2 = last.2.saturating_add(ms);
            }
            _ => buckets.push_back((bucket, 1, ms)),
        }
        while buckets.len() > ACTIVITY_BUCKETS {
            buckets.pop_front();
        }
    }

    /// The last [`ACTIVITY_BUCKETS`] buckets up to `now_ms`, oldest first (empty ones 0).
    pub fn snapshot(&self, now_ms: u64) -> api::Activity {
        let last = Self::bucket_of(now_ms);
        let first = last.saturating_sub(ACTIVITY_BUCKETS as u64 - 1);
        let mut signatures = vec![0; ACTIVITY_BUCKETS];
        let mut latency_ms = vec![0; ACTIVITY_BUCKETS];
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        for &(b, n, sum) in buckets
            .iter()
            .filter(|(b, _, _)| (first..=last).contains(b))
        {
            let i = (b - first) as usize;
            signatures[i] = n;
            latency_ms[i] = sum / n.max(1);
        }
        api::Activity {
            bucket_secs: ACTIVITY_BUCKET.as_secs(),
            signatures,
            latency_ms,
        }
    }
}

/// Everything the node measures about itself.
#[derive(Debug)]
pub struct Telemetry {
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Requests and sessions under way.
    pub live: Live,
    /// Recent signing activity.
    pub activity: Activity,
    /// When the node started (Unix ms).
    pub started_at_ms: u64,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new(Arc::default())
    }
}

impl Telemetry {
    /// Telemetry recording into `metrics` (shared with the [`TimedSealer`]).
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Telemetry {
            metrics,
            live: Live::default(),
            activity: Activity::default(),
            started_at_ms: keyrack_client::now_ms(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_buckets_roll_and_average() {
        let a = Activity::default();
        let t0 = 1_000_000 * ACTIVITY_BUCKET.as_millis() as u64;
        a.signed(t0, Duration::from_millis(10));
        a.signed(t0 + 1, Duration::from_millis(30));
        a.signed(t0 + 2 * 10_000, Duration::from_millis(7));
        let s = a.snapshot(t0 + 2 * 10_000);
        assert_eq!(s.signatures.len(), ACTIVITY_BUCKETS);
        assert_eq!(&s.signatures[ACTIVITY_BUCKETS - 3..], &[2, 0, 1]);
        assert_eq!(&s.latency_ms[ACTIVITY_BUCKETS - 3..], &[20, 0, 7]);
        // Ten minutes on, the old buckets have left the window.
        let later = a.snapshot(t0 + 3_600_000);
        assert!(later.signatures.iter().all(|n| *n == 0));
    }

    #[tokio::test]
    async fn live_lists_requests_and_their_sessions_until_dropped() {
        let live = Live::default();
        let guard = live.begin("r1", "sign", "wallet", "app", 5);
        Live::scope("r1".to_owned(), async {
            live.phase("deciding");
            assert_eq!(live.snapshot()[0].phase, "deciding");
            let s = live.session(&[7; 32], &["node0".to_owned(), "node1".to_owned()]);
            s.progress.sent(1);
            s.progress.received(2);
            let snap = live.snapshot();
            assert_eq!(snap[0].phase, "running");
            let session = &snap[0].sessions[0];
            assert_eq!((session.round, session.sent, session.received), (2, 1, 1));
            assert_eq!(live.sessions_live(), 1);
            drop(s);
            assert_eq!(live.sessions_live(), 0);
        })
        .await;
        // Outside the scope: a background session, listed apart and gone with its guard.
        let bg = live.session(&[8; 32], &[]);
        assert_eq!(live.requests_in_flight(), 1);
        assert_eq!(live.snapshot().len(), 2);
        drop(bg);
        drop(guard);
        assert!(live.snapshot().is_empty());
    }
}
