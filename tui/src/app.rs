//! The console's state and what each key does to it.
//!
//! What it owns: the last data the worker brought (kept, and marked stale, when a poll
//! fails), the tab, selections, search, overlays and the confirmation of an approval. It is
//! pure: no I/O, no clock (times come with the data), no threads. Keys turn into [`Action`]s
//! that the caller hands to the worker.

use keyrack_client::api::{
    AuditEntryView, AuditPage, AuditVerification, BackendHealth, KeyView, Keys, NodeStatus, Peers,
    Policies, Pools, Readiness, Sessions, WaitState, WaitingRequest,
};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::api::ApiError;
use crate::approval::{Checked, Verdict};
use crate::asks::Asks;
use crate::confirmation::Confirmation;

/// What the approver's check ([`crate::approval::Approver::check`]) says of each waiting
/// request, by request hash: what it asks (read from its signed body) and whether it may be
/// approved, or why nothing may be signed for it.
pub type Checks = std::collections::BTreeMap<String, Result<Checked, String>>;

/// The most audit entries kept in memory (the newest).
pub const AUDIT_KEPT: usize = 2000;
/// How far PgUp/PgDn move.
pub const PAGE: usize = 10;

/// The console's tabs, in order (keys 1-6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    /// This node, its peers, pools and activity.
    Cluster,
    /// Keys, search and detail.
    Keys,
    /// Live requests and recent sessions.
    Sessions,
    /// Requests waiting for approvals.
    Approvals,
    /// Policy bundles.
    Policies,
    /// The audit log.
    Audit,
}

impl Tab {
    /// Every tab, in order.
    pub const ALL: [Tab; 6] = [
        Tab::Cluster,
        Tab::Keys,
        Tab::Sessions,
        Tab::Approvals,
        Tab::Policies,
        Tab::Audit,
    ];

    /// Its title.
    pub fn title(self) -> &'static str {
        match self {
            Tab::Cluster => "Cluster",
            Tab::Keys => "Keys",
            Tab::Sessions => "Sessions",
            Tab::Approvals => "Approvals",
            Tab::Policies => "Policies",
            Tab::Audit => "Audit",
        }
    }

    fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

/// What went wrong talking to the node, as the console shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Which kind (decides the banner's wording).
    pub kind: ProblemKind,
    /// The error, for the operator.
    pub message: String,
}

/// The kinds of [`Problem`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// The node did not answer.
    Unreachable,
    /// The node refused the token.
    Unauthorized,
    /// Any other failure (an error status, bad JSON).
    Other,
}

impl From<&ApiError> for Problem {
    fn from(e: &ApiError) -> Self {
        let kind = match e {
            ApiError::Unreachable { .. } => ProblemKind::Unreachable,
            ApiError::Unauthorized => ProblemKind::Unauthorized,
            _ => ProblemKind::Other,
        };
        Problem {
            kind,
            message: e.to_string(),
        }
    }
}

/// One poll of the node: what each route returned, the new audit entries, the first
/// failure, and the worker's clock when it finished.
#[derive(Clone, Debug, Default)]
pub struct Poll {
    /// The worker's clock (Unix ms) when the poll finished.
    pub at_ms: u64,
    /// The routes' answers (`None` where a route failed or was not asked).
    pub data: Data,
    /// New audit entries since the last poll.
    pub audit: Option<AuditPage>,
    /// The first route that failed.
    pub problem: Option<Problem>,
    /// The approver's checks of the waiting requests (`None`: the queue was not read).
    pub checks: Option<Checks>,
}

/// What the worker reports.
#[derive(Clone, Debug)]
pub enum Update {
    /// A poll finished.
    Polled(Box<Poll>),
    /// An approve or reject was posted (or could not be).
    Submitted {
        /// Which.
        verdict: Verdict,
        /// The request it was about.
        request_id: String,
        /// Which nodes recorded it, by their signed results; or why it failed.
        result: Result<Confirmation, String>,
    },
    /// The node verified its audit log (or could not).
    Verified(Result<AuditVerification, String>),
}

/// What the console asks of the worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Leave.
    Quit,
    /// Poll now.
    Refresh,
    /// Poll keys with this search from now on (empty: all).
    Search(String),
    /// Sign and post an approve or reject of a request.
    Submit {
        /// Approve or reject.
        verdict: Verdict,
        /// The request's hash (hex, as listed: the worker checks the listing again).
        request_hash: String,
        /// The request's id (for messages).
        request_id: String,
    },
    /// Verify the audit log.
    VerifyAudit,
}

/// An approve or reject waiting for the operator's y/n.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirm {
    /// Approve or reject.
    pub verdict: Verdict,
    /// The request.
    pub request_id: String,
    /// Its hash (hex).
    pub request_hash: String,
    /// One line saying what it is (action, chain, key, initiator).
    pub summary: String,
    /// One line per transfer: amount, asset, destination.
    pub transfers: Vec<String>,
    /// What approving or rejecting does, where it is not plain (requests other than sign,
    /// and a time-locked request's veto).
    pub effect: Option<String>,
    /// A rejection of a time-locked (approved) request: a veto.
    pub veto: bool,
}

/// The routes' answers: in a [`Poll`], what one poll got; in the [`App`], the last answer
/// of each route (kept while later polls fail).
#[derive(Clone, Debug, Default)]
pub struct Data {
    /// This node.
    pub status: Option<NodeStatus>,
    /// Readiness checks.
    pub readiness: Option<Readiness>,
    /// Peers.
    pub peers: Option<Peers>,
    /// The HSM backend, freshly checked.
    pub backend: Option<BackendHealth>,
    /// Keys.
    pub keys: Option<Keys>,
    /// Sessions.
    pub sessions: Option<Sessions>,
    /// Pools.
    pub pools: Option<Pools>,
    /// Waiting requests.
    pub approvals: Option<keyrack_client::api::Approvals>,
    /// Policies.
    pub policies: Option<Policies>,
}

impl Data {
    /// Takes every answer `newer` has; whether it had any.
    fn update(&mut self, newer: Data) -> bool {
        let mut any = false;
        macro_rules! take {
            ($($field:ident),*) => {$(
                if let Some(v) = newer.$field {
                    self.$field = Some(v);
                    any = true;
                }
            )*};
        }
        take!(status, readiness, peers, backend, keys, sessions, pools, approvals, policies);
        any
    }
}

/// The console's state.
#[derive(Clone, Debug)]
pub struct App {
    /// The node API's URL (shown when it is unreachable).
    pub url: String,
    /// The approver's id, if an approver key was given.
    pub approver: Option<String>,
    /// The last answer of each route.
    pub data: Data,
    /// Audit entries, oldest first (the newest [`AUDIT_KEPT`]).
    pub audit: Vec<AuditEntryView>,
    /// The audit log's last sequence number.
    pub audit_head: u64,
    /// When the last successful poll finished (worker clock, Unix ms).
    pub updated_ms: Option<u64>,
    /// When the last poll finished, successful or not.
    pub polled_ms: Option<u64>,
    /// What failed on the last poll (data shown is stale while set).
    pub problem: Option<Problem>,
    /// The last message for the operator (an action's result, why a key did nothing).
    pub message: Option<String>,
    /// The current tab.
    pub tab: Tab,
    /// Whether the help overlay is shown.
    pub help: bool,
    /// Selected key (index into the filtered keys).
    pub key_selected: usize,
    /// Whether the selected key's detail is shown.
    pub key_detail: bool,
    /// The key search text.
    pub search: String,
    /// Whether the search is being typed.
    pub searching: bool,
    /// Selected recent session.
    pub session_selected: usize,
    /// Selected waiting request.
    pub approval_selected: usize,
    /// Its hash: the selection follows the request, not the row, as the queue changes.
    pub approval_hash: Option<String>,
    /// The approver's checks of the waiting requests.
    pub checks: Checks,
    /// How far the selected waiting request's detail is scrolled (lines).
    pub detail_scroll: u16,
    /// Selected bundle in the policy history.
    pub policy_selected: usize,
    /// Selected audit entry (index into `audit`); `None` follows the newest.
    pub audit_selected: Option<usize>,
    /// An approve or reject waiting for y/n.
    pub confirm: Option<Confirm>,
    /// Requests with an approve/reject posted and not yet answered.
    pub submitting: Option<String>,
    /// A verdict not every node confirmed, with the request it was about: shown until the
    /// operator closes it.
    pub unconfirmed: Option<(String, Confirmation)>,
    /// Whether an audit verification is under way.
    pub verifying: bool,
    /// The last audit verification.
    pub verification: Option<Result<AuditVerification, String>>,
}

impl App {
    /// A console for the node at `url`; `approver` is the approver's id, if one was given.
    pub fn new(url: &str, approver: Option<String>) -> Self {
        App {
            url: url.to_owned(),
            approver,
            data: Data::default(),
            audit: Vec::new(),
            audit_head: 0,
            updated_ms: None,
            polled_ms: None,
            problem: None,
            message: None,
            tab: Tab::Cluster,
            help: false,
            key_selected: 0,
            key_detail: false,
            search: String::new(),
            searching: false,
            session_selected: 0,
            approval_selected: 0,
            approval_hash: None,
            checks: Checks::new(),
            detail_scroll: 0,
            policy_selected: 0,
            audit_selected: None,
            confirm: None,
            submitting: None,
            unconfirmed: None,
            verifying: false,
            verification: None,
        }
    }

    /// Whether the data shown is older than the last poll (it failed).
    pub fn stale(&self) -> bool {
        self.problem.is_some() && self.updated_ms.is_some()
    }

    /// The node's clock as last reported, else the last poll's: "now" for relative times.
    pub fn now_ms(&self) -> u64 {
        self.data
            .status
            .as_ref()
            .map(|s| s.now_ms)
            .or(self.polled_ms)
            .unwrap_or(0)
    }

    /// The keys shown: those whose id contains the search text (case-insensitive), as the
    /// node filters them too.
    pub fn visible_keys(&self) -> Vec<&KeyView> {
        let needle = self.search.to_lowercase();
        self.data
            .keys
            .as_ref()
            .map(|k| {
                k.keys
                    .iter()
                    .filter(|k| k.key_id.to_lowercase().contains(&needle))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The selected key, if any.
    pub fn selected_key(&self) -> Option<&KeyView> {
        self.visible_keys().get(self.key_selected).copied()
    }

    /// The waiting requests.
    pub fn waiting(&self) -> &[WaitingRequest] {
        self.data
            .approvals
            .as_ref()
            .map(|a| a.waiting.as_slice())
            .unwrap_or(&[])
    }

    /// The selected waiting request, if any.
    pub fn selected_waiting(&self) -> Option<&WaitingRequest> {
        self.waiting().get(self.approval_selected)
    }

    /// The selected audit entry's index (the newest when following).
    pub fn audit_index(&self) -> Option<usize> {
        let n = self.audit.len();
        if n == 0 {
            return None;
        }
        Some(self.audit_selected.unwrap_or(n - 1).min(n - 1))
    }

    /// Takes in what the worker reports.
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Polled(poll) => self.apply_poll(*poll),
            Update::Submitted {
                verdict,
                request_id,
                result,
            } => {
                self.submitting = None;
                let what = match verdict {
                    Verdict::Approve => "approval",
                    Verdict::Reject => "rejection",
                };
                self.message = Some(match result {
                    Ok(confirmation) => {
                        let summary = confirmation.summary(&request_id);
                        if !confirmation.complete() {
                            self.unconfirmed = Some((request_id, confirmation));
                        }
                        summary
                    }
                    Err(e) => format!(
                        "{what} of request {} failed: {e}",
                        crate::fmt::short(&request_id, 12)
                    ),
                });
            }
            Update::Verified(result) => {
                self.verifying = false;
                self.verification = Some(result);
            }
        }
    }

    fn apply_poll(&mut self, poll: Poll) {
        self.polled_ms = Some(poll.at_ms);
        let mut any = self.data.update(poll.data);
        if let Some(page) = poll.audit {
            // A log shorter than what was shown: the node started over (new store); its
            // entries replace the old ones.
            if self.audit.last().is_some_and(|e| e.seq > page.head_seq) {
                self.audit.clear();
                self.audit_selected = None;
            }
            self.audit_head = page.head_seq;
            let last = self.audit.last().map(|e| e.seq).unwrap_or(0);
            self.audit
                .extend(page.entries.into_iter().filter(|e| e.seq > last));
            if self.audit.len() > AUDIT_KEPT {
                let cut = self.audit.len() - AUDIT_KEPT;
                self.audit.drain(..cut);
                self.audit_selected = self.audit_selected.map(|i| i.saturating_sub(cut));
            }
            any = true;
        }
        // A poll that failed part-way updated what it got; the banner names what failed.
        if poll.problem.is_none() && any {
            self.updated_ms = Some(poll.at_ms);
        }
        self.problem = poll.problem;
        if let Some(checks) = poll.checks {
            self.checks = checks;
        }
        self.clamp();
    }

    /// Keeps every selection inside its list.
    fn clamp(&mut self) {
        let keys = self.visible_keys().len();
        self.key_selected = self.key_selected.min(keys.saturating_sub(1));
        if keys == 0 {
            self.key_detail = false;
        }
        let at = self.approval_hash.as_ref().map(|hash| {
            self.waiting()
                .iter()
                .position(|w| w.request_hash == *hash)
                .ok_or_else(|| hash.clone())
        });
        match at {
            Some(Ok(i)) => self.approval_selected = i,
            Some(Err(gone)) => {
                self.detail_scroll = 0;
                // Said only when another request takes the selection: an emptied queue
                // keeps the last message (an approval's result, say).
                if !self.waiting().is_empty() {
                    self.message = Some(format!(
                        "request {} is no longer waiting; the selection moved to another",
                        crate::fmt::short(&gone, 12)
                    ));
                }
            }
            None => {}
        }
        let waiting = self.waiting().len();
        self.approval_selected = self.approval_selected.min(waiting.saturating_sub(1));
        self.approval_hash = self.selected_waiting().map(|w| w.request_hash.clone());
        let sessions = self.data.sessions.as_ref().map_or(0, |s| s.recent.len());
        self.session_selected = self.session_selected.min(sessions.saturating_sub(1));
        let history = self.data.policies.as_ref().map_or(0, |p| p.history.len());
        self.policy_selected = self.policy_selected.min(history.saturating_sub(1));
        if let Some(confirm) = &self.confirm {
            if !self
                .waiting()
                .iter()
                .any(|w| w.request_hash == confirm.request_hash)
            {
                self.confirm = None;
                self.message =
                    Some("the request is no longer waiting: nothing was sent".to_owned());
            }
        }
    }

    /// What a key press does; the [`Action`] for the worker, if any.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL)
            && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('C'))
        {
            return Some(Action::Quit);
        }
        if self.confirm.is_some() {
            return self.on_confirm_key(key.code);
        }
        if self.unconfirmed.is_some() {
            // The warning stays until it is closed on purpose.
            if matches!(key.code, KeyCode::Enter | KeyCode::Esc) {
                self.unconfirmed = None;
            }
            return None;
        }
        if self.searching {
            return self.on_search_key(key.code);
        }
        if self.help {
            match key.code {
                KeyCode::Char('q') => return Some(Action::Quit),
                KeyCode::Char('?') | KeyCode::Esc => self.help = false,
                _ => {}
            }
            return None;
        }
        match key.code {
            KeyCode::Char('q') => return Some(Action::Quit),
            KeyCode::Char('?') => self.help = true,
            KeyCode::Tab => self.switch(Tab::ALL[(self.tab.index() + 1) % Tab::ALL.len()]),
            KeyCode::BackTab => {
                let n = Tab::ALL.len();
                self.switch(Tab::ALL[(self.tab.index() + n - 1) % n]);
            }
            KeyCode::Char(c @ '1'..='6') => {
                let i = usize::from(c as u8 - b'1');
                self.switch(Tab::ALL[i]);
            }
            KeyCode::Char('R') => {
                self.message = Some("refreshing…".to_owned());
                return Some(Action::Refresh);
            }
            KeyCode::Up | KeyCode::Char('k') => self.step(-1),
            KeyCode::Down | KeyCode::Char('j') => self.step(1),
            KeyCode::PageUp if self.tab == Tab::Approvals => {
                self.detail_scroll = self.detail_scroll.saturating_sub(PAGE as u16);
            }
            KeyCode::PageDown if self.tab == Tab::Approvals => {
                self.detail_scroll = self.detail_scroll.saturating_add(PAGE as u16);
            }
            KeyCode::PageUp => self.step(-(PAGE as isize)),
            KeyCode::PageDown => self.step(PAGE as isize),
            KeyCode::Home => self.step(isize::MIN),
            KeyCode::End => self.step(isize::MAX),
            code => return self.on_tab_key(code),
        }
        None
    }

    fn switch(&mut self, tab: Tab) {
        self.tab = tab;
    }

    fn on_tab_key(&mut self, code: KeyCode) -> Option<Action> {
        match (self.tab, code) {
            (Tab::Keys, KeyCode::Char('/')) => {
                self.searching = true;
                self.key_detail = false;
            }
            (Tab::Keys, KeyCode::Enter) => {
                self.key_detail = !self.key_detail && self.selected_key().is_some();
            }
            (Tab::Keys, KeyCode::Esc) => {
                if self.key_detail {
                    self.key_detail = false;
                } else if !self.search.is_empty() {
                    self.search.clear();
                    return Some(Action::Search(String::new()));
                }
            }
            (Tab::Approvals, KeyCode::Char('a')) => self.ask(Verdict::Approve),
            (Tab::Approvals, KeyCode::Char('r')) => self.ask(Verdict::Reject),
            (Tab::Audit, KeyCode::Char('v')) if !self.verifying => {
                self.verifying = true;
                return Some(Action::VerifyAudit);
            }
            (_, KeyCode::Char('a' | 'r')) => {
                self.message =
                    Some("approve (a) and reject (r) work on the Approvals tab (4)".into());
            }
            _ => {}
        }
        None
    }

    fn ask(&mut self, verdict: Verdict) {
        let Some(approver) = &self.approver else {
            self.message = Some(format!(
                "cannot {}: no approver key (start with --approver-config client.toml)",
                verdict.as_str()
            ));
            return;
        };
        if let Some(id) = &self.submitting {
            self.message = Some(format!(
                "wait: an answer for request {} is still on its way",
                crate::fmt::short(id, 12)
            ));
            return;
        }
        let approver = approver.clone();
        let Some(w) = self.selected_waiting().cloned() else {
            self.message = Some(format!("nothing to {}: no request waits", verdict.as_str()));
            return;
        };
        let checked = match self.checks.get(&w.request_hash) {
            Some(Ok(checked)) => checked.clone(),
            Some(Err(why)) => {
                self.message = Some(format!("cannot {}: {why}", verdict.as_str()));
                return;
            }
            None => {
                self.message = Some(format!(
                    "cannot {} yet: the request is checked on the next refresh",
                    verdict.as_str()
                ));
                return;
            }
        };
        // The node's word: it decides what approving would do, never whether to reject.
        let locked = w.state == WaitState::TimeLocked;
        if locked && verdict == Verdict::Approve {
            self.message = Some(format!(
                "request {} is approved and time-locked{}, the node says: another approval \
                 changes nothing; r vetoes it",
                crate::fmt::short(&w.request_id, 12),
                run_at_text(&w, "until", self.now_ms())
            ));
            return;
        }
        if verdict == Verdict::Approve {
            if let Some(why) = checked.approve_refusal() {
                self.message = Some(format!("cannot approve: {why} (r still rejects it)"));
                return;
            }
            if w.initiator == approver {
                self.message = Some(format!(
                    "note: {approver} made this request; its own approval will not count"
                ));
            }
        }
        let (summary, transfers) = match (&checked.mismatch, &checked.request.asks) {
            // What the node lists is not what was signed: say only what the signature
            // covers.
            (Some(why), _) => (
                format!(
                    "{} (as signed; the node's listing is not: {why})",
                    checked.request.summary()
                ),
                vec![],
            ),
            (None, Asks::Sign) => confirm_summary(&w),
            (None, _) => (
                format!("{} · asked by {}", checked.request.summary(), w.initiator),
                vec![],
            ),
        };
        let effect = confirm_effect(&w, &checked, verdict, self.now_ms());
        self.confirm = Some(Confirm {
            verdict,
            summary,
            transfers,
            effect,
            veto: locked && verdict == Verdict::Reject,
            request_id: w.request_id,
            request_hash: w.request_hash,
        });
    }

    fn on_confirm_key(&mut self, code: KeyCode) -> Option<Action> {
        match code {
            KeyCode::Char('y' | 'Y') => {
                let confirm = self.confirm.take()?;
                self.submitting = Some(confirm.request_id.clone());
                self.message = Some(format!(
                    "sending {} of request {}, then waiting (up to 10 s) for every node's signed \
                     answer…",
                    confirm.verdict.as_str(),
                    crate::fmt::short(&confirm.request_id, 12)
                ));
                Some(Action::Submit {
                    verdict: confirm.verdict,
                    request_hash: confirm.request_hash,
                    request_id: confirm.request_id,
                })
            }
            KeyCode::Char('n' | 'N' | 'q') | KeyCode::Esc => {
                self.confirm = None;
                self.message = Some("cancelled: nothing was sent".to_owned());
                None
            }
            _ => None,
        }
    }

    fn on_search_key(&mut self, code: KeyCode) -> Option<Action> {
        match code {
            KeyCode::Enter => {
                self.searching = false;
                return Some(Action::Search(self.search.clone()));
            }
            KeyCode::Esc => {
                self.searching = false;
                self.search.clear();
                self.key_selected = 0;
                return Some(Action::Search(String::new()));
            }
            KeyCode::Backspace => {
                self.search.pop();
            }
            KeyCode::Char(c) if !c.is_control() && self.search.len() < 128 => {
                self.search.push(c);
            }
            _ => {}
        }
        self.key_selected = 0;
        None
    }

    /// Moves the current tab's selection by `delta` (saturating at both ends).
    fn step(&mut self, delta: isize) {
        let move_by = |i: usize, n: usize| -> usize {
            if n == 0 {
                return 0;
            }
            let moved = if delta < 0 {
                i.saturating_sub(delta.unsigned_abs())
            } else {
                i.saturating_add(delta.unsigned_abs())
            };
            moved.min(n - 1)
        };
        match self.tab {
            Tab::Cluster => {}
            Tab::Keys => {
                let n = self.visible_keys().len();
                self.key_selected = move_by(self.key_selected, n);
            }
            Tab::Sessions => {
                let n = self.data.sessions.as_ref().map_or(0, |s| s.recent.len());
                self.session_selected = move_by(self.session_selected, n);
            }
            Tab::Approvals => {
                let n = self.waiting().len();
                self.approval_selected = move_by(self.approval_selected, n);
                self.approval_hash = self.selected_waiting().map(|w| w.request_hash.clone());
                self.detail_scroll = 0;
            }
            Tab::Policies => {
                let n = self.data.policies.as_ref().map_or(0, |p| p.history.len());
                self.policy_selected = move_by(self.policy_selected, n);
            }
            Tab::Audit => {
                let n = self.audit.len();
                if let Some(i) = self.audit_index() {
                    let j = move_by(i, n);
                    // Back at the newest entry: follow new ones again.
                    self.audit_selected = (j + 1 < n).then_some(j);
                }
            }
        }
    }
}

/// " {word} HH:MM:SS UTC (in …)" (or "(… ago)") for a time-locked request's run time, if
/// listed.
fn run_at_text(w: &WaitingRequest, word: &str, now_ms: u64) -> String {
    w.run_at_ms.map_or_else(String::new, |at| {
        let when = if at > now_ms {
            crate::fmt::until(at, now_ms)
        } else {
            crate::fmt::ago(at, now_ms)
        };
        format!(" {word} {} UTC ({when})", crate::fmt::clock(at))
    })
}

/// What approving or rejecting `w` does, where the confirmation must say it: a veto of a
/// request the node says is time-locked, and every verdict on a request other than sign (a
/// sign request's confirmation shows its transfers instead).
fn confirm_effect(
    w: &WaitingRequest,
    checked: &Checked,
    verdict: Verdict,
    now_ms: u64,
) -> Option<String> {
    if w.state == WaitState::TimeLocked && verdict == Verdict::Reject {
        let due = w.run_at_ms.is_some_and(|at| at > now_ms);
        return Some(if due {
            format!(
                "VETO: the node says it is approved and runs{}; rejecting stops it at every \
                 node that has not carried it out",
                run_at_text(w, "at", now_ms)
            )
        } else {
            format!(
                "VETO: the node says it is approved and its time lock ended{}; rejecting still \
                 stops it at every node that has not carried it out (the node may be wrong)",
                run_at_text(w, "at", now_ms)
            )
        });
    }
    if checked.request.asks == Asks::Sign {
        return None;
    }
    Some(match verdict {
        Verdict::Approve => format!(
            "approving counts toward the approvals it needs; with enough, {}, after its rule's \
             delay if it has one (an approver may veto it meanwhile)",
            checked.request.outcome()
        ),
        Verdict::Reject => "rejecting refuses it at every node at once; a later approval of \
                            yours cannot undo it"
            .to_owned(),
    })
}

/// What the confirmation shows of a waiting request: action, chain, key and initiator, and
/// each transfer (amount, asset, destination), so that two requests from one key and
/// initiator cannot look alike.
fn confirm_summary(w: &WaitingRequest) -> (String, Vec<String>) {
    use serde_json::Value;
    let text = |v: &Value, k: &str| v.get(k).map(crate::fmt::value_text).unwrap_or_default();
    let action = w
        .intent
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or("sign");
    let chain = w.chain.as_deref().unwrap_or("no chain");
    let summary = format!(
        "{action} on {chain} with key {} by {}",
        w.key_id, w.initiator
    );
    let transfers = w.intent.get("transfers").and_then(Value::as_array);
    let transfers = transfers
        .into_iter()
        .flatten()
        .map(|t| {
            let amount = t.get("amount").map(crate::fmt::amount).unwrap_or_default();
            format!("→ {amount} {} to {}", text(t, "asset"), text(t, "to"))
        })
        .collect();
    (summary, transfers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyrack_client::api::Approvals;
    use serde_json::json;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn waiting(hash: &str) -> WaitingRequest {
        WaitingRequest {
            request_id: "0123456789abcdef0123456789abcdef".into(),
            request_hash: hash.into(),
            initiator: "bob".into(),
            key_id: "treasury-sol".into(),
            kind: "sign".into(),
            state: Default::default(),
            run_at_ms: None,
            scheme: "ed25519".into(),
            schemes: vec!["ed25519".into()],
            chain: Some("solana".into()),
            waiting_since_ms: 1_000,
            expires_at_ms: 600_000,
            intent: json!({"action": "transfer", "transfers": [
                {"amount": 7, "asset": "SOL", "to": format!("dest-{}", &hash[..2])}
            ]}),
            decision: json!({}),
            approvals: vec![],
            request: None,
        }
    }

    /// What the approver's check says of `waiting`'s sign request: it may be approved.
    fn sign_checked() -> Checked {
        Checked {
            request_hash: [0; 32],
            request: crate::asks::CheckedRequest {
                kind: keyrack_client::request::RequestKind::Sign,
                key_id: "treasury-sol".into(),
                schemes: vec![keyrack_client::scheme::Scheme::Ed25519],
                asks: Asks::Sign,
            },
            mismatch: None,
            closed: None,
        }
    }

    /// A poll listing `hashes` as waiting, every one checked fine by the approver.
    fn poll_of(at_ms: u64, hashes: &[&str]) -> Update {
        Update::Polled(Box::new(Poll {
            at_ms,
            data: Data {
                approvals: Some(Approvals {
                    waiting: hashes.iter().map(|h| waiting(h)).collect(),
                }),
                ..Data::default()
            },
            checks: Some(
                hashes
                    .iter()
                    .map(|h| (h.to_string(), Ok(sign_checked())))
                    .collect(),
            ),
            ..Poll::default()
        }))
    }

    fn app_with_waiting(approver: Option<&str>) -> App {
        let mut app = App::new("http://127.0.0.1:7400", approver.map(str::to_owned));
        app.apply(poll_of(2_000, &[&"11".repeat(32), &"22".repeat(32)]));
        app.on_key(key(KeyCode::Char('4')));
        assert_eq!(app.tab, Tab::Approvals);
        app
    }

    #[test]
    fn approve_without_an_approver_key_says_why_and_sends_nothing() {
        let mut app = app_with_waiting(None);
        assert_eq!(app.on_key(key(KeyCode::Char('a'))), None);
        assert!(app.confirm.is_none());
        let msg = app.message.clone().unwrap();
        assert!(msg.contains("no approver key"), "{msg}");
        assert!(msg.contains("--approver-config"), "{msg}");
    }

    #[test]
    fn approve_then_yes_approves_the_selected_request() {
        let mut app = app_with_waiting(Some("carol"));
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.on_key(key(KeyCode::Char('a'))), None);
        let confirm = app.confirm.clone().unwrap();
        assert_eq!(confirm.request_hash, "22".repeat(32));
        // The confirmation names what moves where, not only the key.
        assert_eq!(confirm.transfers, ["→ 7 SOL to dest-22"]);
        // Other keys neither confirm nor move anything while asking.
        assert_eq!(app.on_key(key(KeyCode::Up)), None);
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), None);
        assert!(app.confirm.is_none(), "q cancels like n");
        app.on_key(key(KeyCode::Char('a')));
        assert_eq!(
            app.on_key(key(KeyCode::Char('y'))),
            Some(Action::Submit {
                verdict: Verdict::Approve,
                request_hash: "22".repeat(32),
                request_id: "0123456789abcdef0123456789abcdef".into(),
            })
        );
        assert!(app.confirm.is_none());
        assert!(app.submitting.is_some());
    }

    #[test]
    fn a_request_the_approver_could_not_check_is_neither_approved_nor_rejected() {
        let mut app = app_with_waiting(Some("carol"));
        let mut update = poll_of(3_000, &[&"11".repeat(32), &"22".repeat(32)]);
        if let Update::Polled(poll) = &mut update {
            let checks = poll.checks.as_mut().unwrap();
            checks.insert("11".repeat(32), Err("the node lists hash 11… but".into()));
            checks.remove(&"22".repeat(32));
        }
        app.apply(update);
        for verdict in ['a', 'r'] {
            assert_eq!(app.on_key(key(KeyCode::Char(verdict))), None);
            assert!(app.confirm.is_none());
            let msg = app.message.clone().unwrap();
            assert!(msg.contains("the node lists hash"), "{msg}");
        }
        // Not checked yet (the next poll does): nothing either.
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.on_key(key(KeyCode::Char('a'))), None);
        assert!(app.confirm.is_none());
        assert!(app
            .message
            .as_deref()
            .unwrap()
            .contains("checked on the next refresh"));
    }

    #[test]
    fn the_selection_follows_its_request_when_the_queue_changes() {
        let (a, b, c) = ("11".repeat(32), "22".repeat(32), "33".repeat(32));
        let mut app = App::new("u", Some("carol".into()));
        app.apply(poll_of(1_000, &[&a, &b, &c]));
        app.on_key(key(KeyCode::Char('4')));
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.selected_waiting().unwrap().request_hash, b);
        // A request before it was decided: the row moves, the selection stays on b.
        app.apply(poll_of(2_000, &[&b, &c]));
        assert_eq!(app.selected_waiting().unwrap().request_hash, b);
        // b itself goes: the operator is told, not silently moved.
        app.apply(poll_of(3_000, &[&c]));
        assert_eq!(app.selected_waiting().unwrap().request_hash, c);
        let msg = app.message.clone().unwrap();
        assert!(msg.contains("no longer waiting"), "{msg}");
        // c goes too: nothing is selected, and the last message stays.
        app.message = Some("approval of request 33… published".into());
        app.apply(poll_of(4_000, &[]));
        assert!(app.selected_waiting().is_none());
        assert_eq!(
            app.message.as_deref(),
            Some("approval of request 33… published")
        );
    }

    #[test]
    fn reject_then_no_cancels() {
        let mut app = app_with_waiting(Some("carol"));
        app.on_key(key(KeyCode::Char('r')));
        assert_eq!(app.confirm.as_ref().unwrap().verdict, Verdict::Reject);
        assert_eq!(app.on_key(key(KeyCode::Char('n'))), None);
        assert!(app.confirm.is_none());
        assert!(app.message.as_deref().unwrap().contains("nothing was sent"));
        app.on_key(key(KeyCode::Char('r')));
        assert_eq!(app.on_key(key(KeyCode::Esc)), None);
        assert!(app.confirm.is_none());
    }

    #[test]
    fn a_confirmation_is_dropped_when_the_request_stops_waiting() {
        let mut app = app_with_waiting(Some("carol"));
        app.on_key(key(KeyCode::Char('a')));
        app.apply(poll_of(3_000, &[&"22".repeat(32)]));
        assert!(app.confirm.is_none());
        assert_eq!(app.on_key(key(KeyCode::Char('y'))), None);
    }

    #[test]
    fn tabs_switch_by_number_tab_and_back_tab() {
        let mut app = App::new("u", None);
        app.on_key(key(KeyCode::Char('6')));
        assert_eq!(app.tab, Tab::Audit);
        app.on_key(key(KeyCode::Tab));
        assert_eq!(app.tab, Tab::Cluster);
        app.on_key(key(KeyCode::BackTab));
        assert_eq!(app.tab, Tab::Audit);
        assert_eq!(app.on_key(key(KeyCode::Char('R'))), Some(Action::Refresh));
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Some(Action::Quit));
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.on_key(ctrl_c), Some(Action::Quit));
    }

    #[test]
    fn help_swallows_keys_until_closed() {
        let mut app = App::new("u", None);
        app.on_key(key(KeyCode::Char('?')));
        assert!(app.help);
        app.on_key(key(KeyCode::Char('3')));
        assert_eq!(app.tab, Tab::Cluster);
        app.on_key(key(KeyCode::Esc));
        assert!(!app.help);
    }

    #[test]
    fn search_typing_then_enter_asks_the_worker_and_esc_clears() {
        let mut app = App::new("u", None);
        app.on_key(key(KeyCode::Char('2')));
        app.on_key(key(KeyCode::Char('/')));
        for c in "sol".chars() {
            assert_eq!(app.on_key(key(KeyCode::Char(c))), None);
        }
        // 'q' is text while searching, not quit.
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), None);
        app.on_key(key(KeyCode::Backspace));
        assert_eq!(
            app.on_key(key(KeyCode::Enter)),
            Some(Action::Search("sol".into()))
        );
        assert!(!app.searching);
        assert_eq!(
            app.on_key(key(KeyCode::Esc)),
            Some(Action::Search(String::new()))
        );
        assert_eq!(app.search, "");
    }

    #[test]
    fn a_failed_poll_keeps_the_data_and_marks_it_stale() {
        let mut app = app_with_waiting(None);
        assert!(!app.stale());
        app.apply(Update::Polled(Box::new(Poll {
            at_ms: 9_000,
            problem: Some(Problem {
                kind: ProblemKind::Unreachable,
                message: "node API at u unreachable: refused".into(),
            }),
            ..Poll::default()
        })));
        assert!(app.stale());
        assert_eq!(app.waiting().len(), 2);
        assert_eq!(app.updated_ms, Some(2_000));
        assert_eq!(app.polled_ms, Some(9_000));
    }

    #[test]
    fn audit_verify_is_asked_once_until_answered() {
        let mut app = App::new("u", None);
        app.on_key(key(KeyCode::Char('6')));
        assert_eq!(
            app.on_key(key(KeyCode::Char('v'))),
            Some(Action::VerifyAudit)
        );
        assert_eq!(app.on_key(key(KeyCode::Char('v'))), None);
        app.apply(Update::Verified(Err("boom".into())));
        assert!(!app.verifying);
        assert_eq!(
            app.on_key(key(KeyCode::Char('v'))),
            Some(Action::VerifyAudit)
        );
    }

    #[test]
    fn a_node_whose_audit_log_started_over_shows_its_new_entries() {
        let entry = |seq: u64, kind: &str| keyrack_client::api::AuditEntryView {
            seq,
            at_ms: seq,
            kind: kind.into(),
            request_id: None,
            entry: json!({}),
            hash: String::new(),
        };
        let page = |entries: Vec<keyrack_client::api::AuditEntryView>| {
            Update::Polled(Box::new(Poll {
                at_ms: 1,
                audit: Some(AuditPage {
                    head_seq: entries.last().map_or(0, |e| e.seq),
                    entries,
                    next: None,
                }),
                ..Poll::default()
            }))
        };
        let mut app = App::new("u", None);
        app.apply(page((1..=5).map(|i| entry(i, "old")).collect()));
        assert_eq!(app.audit.len(), 5);
        // The node's store was replaced: its log is at 2 now.
        app.apply(page(vec![entry(1, "new"), entry(2, "new")]));
        let kinds: Vec<&str> = app.audit.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["new", "new"]);
        // And it goes on from there.
        app.apply(page(vec![entry(3, "new")]));
        assert_eq!(app.audit.len(), 3);
    }
}
