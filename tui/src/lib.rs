//! keyrack's operator console: a terminal UI over one node's HTTP API
//! ([`keyrack_client::api`]), run on the appliance as `keyrack tui`.
//!
//! - [`api`]: the blocking API client (also used by the node's integration tests).
//! - [`approval`]: the check of a waiting request against what its initiator signed (with
//!   the approver's own manifest and trusted keys), and signed approve / reject requests for
//!   an operator with an approver key; [`asks`]: what a checked request would do, in words;
//!   [`confirmation`]: which nodes recorded a verdict, by their signed results.
//! - [`app`]: the console's state and keys (pure); [`ui`]: drawing it.
//! - [`run`]: the terminal, and a worker thread that polls the node and performs actions, so
//!   the screen never waits on the network.
//!
//! The console talks to nothing but the node's API: no NATS, no store, no HSM. It holds the
//! API token and, when given, an approver's initiator key, and shows neither.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::Context;
use keyrack_client::api::{Approvals, AuditPage, KeyView};
use ratatui::crossterm::event::{self, Event};
use zeroize::Zeroizing;

pub mod api;
pub mod app;
pub mod approval;
pub mod asks;
pub mod confirmation;
pub mod fmt;
pub mod ui;

/// The key events [`app::App::on_key`] takes (crossterm's, as ratatui re-exports them).
pub use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use api::ApiClient;
use app::{Action, App, Checks, Poll, Problem, Update};
use approval::Approver;

/// The default node API address (the node's `[api] listen`).
pub const DEFAULT_URL: &str = "http://127.0.0.1:7400";
/// The default time between polls.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(1);
/// Audit entries fetched per page.
const AUDIT_PAGE: u32 = 500;
/// How often the worker asks for `/readyz` and `/v1/backend`: each is an HSM round trip at
/// the node, so not on every poll.
const HSM_CHECK_EVERY: Duration = Duration::from_secs(10);
/// Pages fetched per poll (a long backlog arrives over a few polls).
const AUDIT_PAGES_PER_POLL: usize = 4;

/// How to run the console.
pub struct Options {
    /// The node API's base URL (e.g. [`DEFAULT_URL`]).
    pub url: String,
    /// The node's API token.
    pub token: Zeroizing<String>,
    /// The approver's key, to approve and reject from the console.
    pub approver: Option<Approver>,
    /// Time between polls.
    pub refresh: Duration,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("approver", &self.approver.as_ref().map(Approver::id))
            .field("refresh", &self.refresh)
            .finish()
    }
}

/// Runs the console until the operator quits. The terminal is restored on return, on error
/// and on panic.
pub fn run(options: Options) -> anyhow::Result<()> {
    let mut app = App::new(
        &options.url,
        options.approver.as_ref().map(|a| a.id().to_owned()),
    );
    let client = ApiClient::new(&options.url, options.token);
    let (actions_tx, actions_rx) = mpsc::channel();
    let (updates_tx, updates_rx) = mpsc::channel();
    let refresh = options.refresh.max(Duration::from_millis(100));
    let approver = options.approver;
    let worker = std::thread::Builder::new()
        .name("keyrack-tui-worker".into())
        .spawn(move || Worker::new(client, approver, updates_tx).run(refresh, &actions_rx))
        .context("cannot start the console's worker thread")?;

    // `try_init` enters the alternate screen and raw mode and installs a panic hook that
    // restores the terminal before the panic message is printed.
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let result = event_loop(&mut terminal, &mut app, &actions_tx, &updates_rx);
    ratatui::try_restore().context("cannot restore the terminal")?;
    // The worker owns the approver's key: let it finish (its current call is bounded by the
    // API timeouts, a verdict's the longest) so that the key is dropped, and wiped, before
    // the process exits.
    let _ = actions_tx.send(Action::Quit);
    drop(actions_tx);
    let deadline = Instant::now() + api::SUBMIT_TIMEOUT + Duration::from_millis(500);
    while !worker.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if worker.is_finished() {
        let _ = worker.join();
    }
    result
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    actions: &Sender<Action>,
    updates: &Receiver<Update>,
) -> anyhow::Result<()> {
    let mut worker_gone = false;
    loop {
        terminal.draw(|frame| ui::draw(frame, app))?;
        // Short waits keep worker updates flowing to the screen while keys are idle.
        if event::poll(Duration::from_millis(100))? {
            match event::read()? {
                Event::Key(key) => {
                    if let Some(action) = app.on_key(key) {
                        if action == Action::Quit {
                            let _ = actions.send(Action::Quit);
                            return Ok(());
                        }
                        if actions.send(action).is_err() {
                            worker_gone = true;
                        }
                    }
                }
                // The next draw lays out for the new size.
                Event::Resize(..) => terminal.autoresize()?,
                _ => {}
            }
        }
        loop {
            match updates.try_recv() {
                Ok(update) => app.apply(update),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    worker_gone = true;
                    break;
                }
            }
        }
        if worker_gone {
            app.message =
                Some("the console's worker stopped: nothing updates; quit and restart".into());
        }
    }
}

/// The background side: polls the node, signs and posts approvals, verifies the audit log.
/// [`run`] runs one on its own thread; [`Worker::run`] drives it from a channel of
/// [`Action`]s and reports [`Update`]s.
pub struct Worker {
    client: ApiClient,
    approver: Option<Approver>,
    updates: Sender<Update>,
    search: String,
    /// The last audit sequence number received (`None` before the first poll).
    audit_after: Option<u64>,
    /// When readiness and the backend were last asked for (they cost an HSM round trip).
    hsm_checked: Option<Instant>,
}

impl Worker {
    /// A worker for the node `client` reaches, approving as `approver` (if given), reporting
    /// to `updates`.
    pub fn new(client: ApiClient, approver: Option<Approver>, updates: Sender<Update>) -> Self {
        Worker {
            client,
            approver,
            updates,
            search: String::new(),
            audit_after: None,
            hsm_checked: None,
        }
    }

    /// Polls every `refresh` and performs the `actions` until [`Action::Quit`] or either
    /// channel closes.
    pub fn run(mut self, refresh: Duration, actions: &Receiver<Action>) {
        loop {
            let poll = self.poll();
            if self.updates.send(Update::Polled(Box::new(poll))).is_err() {
                return;
            }
            let next = Instant::now() + refresh;
            loop {
                let wait = next.saturating_duration_since(Instant::now());
                match actions.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) | Ok(Action::Refresh) => break,
                    Err(RecvTimeoutError::Disconnected) | Ok(Action::Quit) => return,
                    Ok(Action::Search(text)) => {
                        self.search = text;
                        break;
                    }
                    Ok(Action::VerifyAudit) => {
                        let result = self.client.audit_verify().map_err(|e| e.to_string());
                        if self.updates.send(Update::Verified(result)).is_err() {
                            return;
                        }
                    }
                    Ok(Action::Submit {
                        verdict,
                        request_hash,
                        request_id,
                    }) => {
                        let result = self.submit(verdict, &request_hash);
                        let update = Update::Submitted {
                            verdict,
                            request_id,
                            result,
                        };
                        if self.updates.send(update).is_err() {
                            return;
                        }
                        // Show the approval's effect at once.
                        break;
                    }
                }
            }
        }
    }

    /// Signs and posts `verdict` on the request listed with `request_hash`, after checking
    /// the node's current listing of it against the request itself ([`Approver::check`]; a
    /// rejection needs only the signed request, verified), then reads which nodes recorded
    /// it from their signed results ([`Approver::confirm`]).
    fn submit(
        &self,
        verdict: approval::Verdict,
        request_hash: &str,
    ) -> Result<confirmation::Confirmation, String> {
        let approver = self
            .approver
            .as_ref()
            .ok_or("no approver key (start with --approver-config client.toml)")?;
        let waiting = self.client.approvals().map_err(|e| e.to_string())?.waiting;
        let listed = waiting
            .iter()
            .find(|w| w.request_hash == request_hash)
            .ok_or_else(|| {
                format!(
                    "the node no longer lists the request: nothing was sent (to {} it all the \
                     same, run `keyrack client --config CLIENT.TOML {} {request_hash}` from a \
                     machine with NATS access)",
                    verdict.as_str(),
                    verdict.as_str()
                )
            })?;
        // The node's key list only matters to approving (a key it reports otherwise than
        // the trusted one): a rejection does not wait on it.
        let keys = match (self.client.keys(None), verdict) {
            (Ok(keys), _) => keys.keys,
            (Err(_), approval::Verdict::Reject) => Vec::new(),
            (Err(e), approval::Verdict::Approve) => return Err(e.to_string()),
        };
        let now = keyrack_client::now_ms();
        let checked = approver
            .check(listed, &keys, now)
            .map_err(|e| format!("not signed: {e}"))?;
        if let (approval::Verdict::Approve, Some(why)) = (verdict, checked.approve_refusal()) {
            return Err(format!("not signed: {why}"));
        }
        let request = approver
            .sign(verdict, &checked, now)
            .map_err(|e| format!("cannot sign the {}: {e}", verdict.as_str()))?;
        let submitted = self.client.submit(&request).map_err(|e| e.to_string())?;
        approver.confirm(&request, &submitted)
    }

    /// What [`Approver::check`] says of each waiting request (by hash), when there is an
    /// approver. `keys` is the node's full key list if the poll read it (no search); else it
    /// is read here, only when some request waits.
    fn check_waiting(&self, approvals: &Approvals, keys: Option<&[KeyView]>) -> Checks {
        let Some(approver) = &self.approver else {
            return Checks::new();
        };
        if approvals.waiting.is_empty() {
            return Checks::new();
        }
        let fetched;
        let keys = match keys {
            Some(k) => k,
            None => match self.client.keys(None) {
                Ok(k) => {
                    fetched = k.keys;
                    &fetched
                }
                Err(e) => {
                    let why = format!("cannot read the node's key list: {e}");
                    return approvals
                        .waiting
                        .iter()
                        .map(|w| (w.request_hash.clone(), Err(why.clone())))
                        .collect();
                }
            },
        };
        let now = keyrack_client::now_ms();
        approvals
            .waiting
            .iter()
            .map(|w| (w.request_hash.clone(), approver.check(w, keys, now)))
            .collect()
    }

    /// One round over every route. A node that does not answer `/v1/status` is not asked
    /// the rest (the same error would repeat); otherwise the first failure is reported and
    /// every route that answered is kept.
    fn poll(&mut self) -> Poll {
        let mut poll = Poll::default();
        match self.client.status() {
            Ok(status) => {
                poll.data.status = Some(status);
            }
            Err(e) => {
                poll.problem = Some(Problem::from(&e));
                poll.at_ms = keyrack_client::now_ms();
                return poll;
            }
        }
        let mut first = None;
        let mut keep = |e: api::ApiError| {
            first.get_or_insert_with(|| Problem::from(&e));
        };
        let c = &self.client;
        if self
            .hsm_checked
            .is_none_or(|at| at.elapsed() >= HSM_CHECK_EVERY)
        {
            // The console keeps the last answers in between.
            self.hsm_checked = Some(Instant::now());
            poll.data.readiness = c.readyz().map_err(&mut keep).ok();
            poll.data.backend = c.backend().map_err(&mut keep).ok();
        }
        poll.data.peers = c.peers().map_err(&mut keep).ok();
        poll.data.keys = c.keys(Some(&self.search)).map_err(&mut keep).ok();
        poll.data.sessions = c.sessions().map_err(&mut keep).ok();
        poll.data.pools = c.pools().map_err(&mut keep).ok();
        poll.data.approvals = c.approvals().map_err(&mut keep).ok();
        if let Some(approvals) = &poll.data.approvals {
            let all_keys = self
                .search
                .is_empty()
                .then_some(poll.data.keys.as_ref())
                .flatten()
                .map(|k| k.keys.as_slice());
            poll.checks = Some(self.check_waiting(approvals, all_keys));
        }
        poll.data.policies = c.policies().map_err(&mut keep).ok();
        poll.audit = self.audit().map_err(&mut keep).ok();
        poll.problem = first;
        poll.at_ms = keyrack_client::now_ms();
        poll
    }

    /// The audit entries after the last one received; on the first poll, the newest
    /// [`app::AUDIT_KEPT`] only.
    fn audit(&mut self) -> Result<AuditPage, api::ApiError> {
        let mut after = match self.audit_after {
            Some(after) => after,
            None => {
                let head = self.client.audit(0, 1)?.head_seq;
                head.saturating_sub(app::AUDIT_KEPT as u64)
            }
        };
        let mut out = AuditPage {
            entries: Vec::new(),
            head_seq: after,
            next: None,
        };
        for _ in 0..AUDIT_PAGES_PER_POLL {
            let page = self.client.audit(after, AUDIT_PAGE)?;
            out.head_seq = page.head_seq;
            if let Some(last) = page.entries.last() {
                after = last.seq;
            }
            out.entries.extend(page.entries);
            if page.next.is_none() {
                break;
            }
        }
        // A log shorter than what was seen (a node started over) is read again.
        if out.head_seq < after {
            after = 0;
        }
        self.audit_after = Some(after);
        Ok(out)
    }
}
