//! The Approvals tab: requests waiting for approvals (or approved and time-locked), and for
//! the selected one what it does (a sign request: the chain plugin's decoded intent; any
//! other kind: what its signed body asks, as the approver's check read it, with the key's
//! committee from the approver's trusted keys), why it waits (every policy rule's verdict)
//! and the approvals collected.
//!
//! The intent and decision arrive as JSON (`keyrack_plugin::Intent`,
//! `keyrack_policy::Decision`): read field by field, so a field this build does not know is
//! skipped rather than failing the screen.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState};
use ratatui::Frame;
use serde_json::Value;

use super::{block, field, mark, missing, ACCENT, BAD, DIM, OK, SELECTED, WARN};
use crate::app::App;
use crate::approval::Checked;
use crate::fmt;
use keyrack_client::api::{WaitState, WaitingRequest};

pub(super) fn draw(frame: &mut Frame, app: &App, area: Rect) {
    if app.data.approvals.is_none() {
        frame.render_widget(
            missing("approvals").block(block("waiting for approvals")),
            area,
        );
        return;
    }
    let waiting = app.waiting();
    let now = app.now_ms();
    let [list, detail] = Layout::vertical([
        Constraint::Length(waiting.len().clamp(1, 6) as u16 + 3),
        Constraint::Min(4),
    ])
    .areas(area);
    let rows = waiting.iter().map(|w| {
        let required = w.decision.get("required").and_then(Value::as_u64);
        let approved = w
            .approvals
            .iter()
            .filter(|a| a.verdict == "approve")
            .count();
        let locked = w.state == WaitState::TimeLocked;
        let count = match required {
            _ if locked => "time-lock".to_owned(),
            Some(r) => format!("{approved} of {r}"),
            None => approved.to_string(),
        };
        let action = if w.kind == "sign" {
            text(&w.intent, "action")
        } else {
            match app.checks.get(&w.request_hash) {
                Some(Ok(checked)) => checked.request.kind.as_str().to_owned(),
                _ => w.kind.clone(),
            }
        };
        // A time-locked request: when its lock runs out (it is carried out then).
        let due = match (locked, w.run_at_ms) {
            (true, Some(run_at)) => run_at,
            _ => w.expires_at_ms,
        };
        Row::new(vec![
            w.key_id.clone(),
            w.chain.clone().unwrap_or_else(|| "—".into()),
            action,
            w.initiator.clone(),
            fmt::duration(now.saturating_sub(w.waiting_since_ms)),
            fmt::until(due, now),
            count,
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Fill(2),
            Constraint::Length(8),
            Constraint::Length(15),
            Constraint::Fill(1),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Length(9),
        ],
    )
    .header(
        Row::new([
            "key",
            "chain",
            "action",
            "initiator",
            "waiting",
            "expires",
            "approved",
        ])
        .style(Style::new().fg(DIM)),
    )
    .highlight_symbol(SELECTED)
    .row_highlight_style(Style::new().reversed())
    .block(block(format!("waiting for approvals: {}", waiting.len())));
    let mut state = TableState::default();
    if !waiting.is_empty() {
        state.select(Some(app.approval_selected));
    }
    frame.render_stateful_widget(table, list, &mut state);
    match app.selected_waiting() {
        Some(w) => {
            let check = app.checks.get(&w.request_hash);
            let width = usize::from(detail.width.saturating_sub(2));
            let mut lines = detail_lines(w, check, now, width);
            if app.approver.is_some() {
                lines.splice(1..1, check_lines(w, check, width));
            }
            let inner = detail.height.saturating_sub(2);
            let total = u16::try_from(lines.len()).unwrap_or(u16::MAX);
            let scroll = app.detail_scroll.min(total.saturating_sub(inner));
            let more = if total > inner + scroll {
                " · PgDn for more"
            } else {
                ""
            };
            let p = Paragraph::new(lines)
                .scroll((scroll, 0))
                .block(block(format!("request {}{more}", w.request_id)));
            frame.render_widget(p, detail);
        }
        None => frame.render_widget(
            Paragraph::new("no request waits for approvals")
                .fg(DIM)
                .block(block("request")),
            detail,
        ),
    }
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .map(fmt::value_text)
        .unwrap_or_else(|| "—".into())
}

fn heading(s: &str) -> Line<'static> {
    Line::from(Span::styled(s.to_owned(), Style::new().fg(ACCENT).bold()))
}

/// What the approver's own check of the request says (see `Approver::check`), wrapped to
/// `width`: a refusal is read whole.
fn check_lines(
    w: &WaitingRequest,
    check: Option<&Result<Checked, String>>,
    width: usize,
) -> Vec<Line<'static>> {
    let matched = if w.kind == "sign" {
        "hash and intent match it"
    } else {
        "hash and listing match it"
    };
    let verifies = "the request verifies under your manifest";
    let (text, colour) = match check {
        Some(Ok(c)) => match (&c.mismatch, &c.closed) {
            // A time-locked request's state line says approving is moot.
            (None, None) => (format!("{verifies}; {matched}"), OK),
            (None, Some(_)) if w.state == WaitState::TimeLocked => {
                (format!("{verifies}; {matched}"), OK)
            }
            (None, Some(why)) => (
                format!("{verifies}; {matched} · not to approve: {why}"),
                WARN,
            ),
            (Some(why), _) => (
                format!(
                    "{verifies} and hashes as listed, but cannot be approved: {why} · r still \
                     rejects what was signed"
                ),
                WARN,
            ),
        },
        Some(Err(why)) => (format!("cannot approve or reject: {why}"), BAD),
        None => ("not yet (on the next refresh)".to_owned(), WARN),
    };
    wrapped_field("checked", &text, width, colour)
}

/// A [`field`] whose value wraps to `width`, continued under the value.
fn wrapped_field(
    label: &str,
    value: &str,
    width: usize,
    colour: ratatui::style::Color,
) -> Vec<Line<'static>> {
    const LABEL: usize = 13;
    fmt::wrap(value, width.saturating_sub(LABEL))
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                field(label, part).fg(colour)
            } else {
                Line::from(format!("{:LABEL$}{part}", "")).fg(colour)
            }
        })
        .collect()
}

/// A time-locked request's state, as the node says: when it runs, and that only a veto
/// matters now (a veto is possible whatever the node says of its run time).
fn time_lock_lines(w: &WaitingRequest, now: u64, width: usize) -> Vec<Line<'static>> {
    let when = match w.run_at_ms {
        Some(at) if at > now => format!("runs at {} UTC ({})", fmt::clock(at), fmt::until(at, now)),
        Some(at) => format!("ran at {} UTC ({})", fmt::clock(at), fmt::ago(at, now)),
        None => "run time not listed".to_owned(),
    };
    let text = format!(
        "the node says TIME-LOCKED: approved; {when} unless vetoed · approving is moot; r \
         vetoes it"
    );
    wrapped_field("state", &text, width, WARN)
}

fn detail_lines(
    w: &WaitingRequest,
    check: Option<&Result<Checked, String>>,
    now: u64,
    width: usize,
) -> Vec<Line<'static>> {
    let sign = w.kind == "sign";
    let schemes = if sign || w.schemes.is_empty() {
        w.scheme.clone()
    } else {
        w.schemes.join(", ")
    };
    let locked = w.state == WaitState::TimeLocked;
    let until = if locked {
        String::new()
    } else {
        format!(" · expires {}", fmt::until(w.expires_at_ms, now))
    };
    let mut lines = vec![
        field("hash", w.request_hash.clone()),
        field(
            "asked",
            format!(
                "by {} · key {} ({schemes}) · waiting {}{until}",
                w.initiator,
                w.key_id,
                fmt::duration(now.saturating_sub(w.waiting_since_ms)),
            ),
        ),
    ];
    if locked {
        lines.extend(time_lock_lines(w, now, width));
    }
    lines.push(heading("what it does"));
    if sign {
        lines.extend(intent_lines(&w.intent));
    } else {
        lines.extend(lifecycle_lines(w, check));
    }
    lines.push(heading("policy decision"));
    lines.extend(decision_lines(&w.decision));
    lines.push(heading(&format!(
        "approvals collected: {}",
        w.approvals.len()
    )));
    if w.approvals.is_empty() {
        lines.push(Line::from("  none yet").fg(DIM));
    }
    for a in &w.approvals {
        let style = if a.verdict == "approve" { OK } else { BAD };
        lines.push(Line::from(vec![
            Span::raw(format!("  {:<12}", a.approver)),
            Span::styled(format!("{:<8}", a.verdict), Style::new().fg(style).bold()),
            Span::styled(
                format!(
                    "counts until {} UTC ({})",
                    fmt::clock(a.expires_at_ms),
                    fmt::until(a.expires_at_ms, now)
                ),
                Style::new().fg(DIM),
            ),
        ]));
    }
    lines
}

/// What a request other than sign would do: from its signed body when the approver checked
/// it, else the node's listing, marked as unchecked.
fn lifecycle_lines(
    w: &WaitingRequest,
    check: Option<&Result<Checked, String>>,
) -> Vec<Line<'static>> {
    match check.and_then(|c| c.as_ref().ok()).map(|c| &c.request) {
        Some(checked) => {
            let mut lines = vec![Line::from(format!("  {}", checked.summary())).bold()];
            lines.extend(
                checked
                    .details()
                    .into_iter()
                    .map(|d| Line::from(format!("  {d}"))),
            );
            lines
        }
        None => vec![Line::from(format!(
            "  {} {} ({}): as the node lists it; not checked here",
            w.kind,
            w.key_id,
            w.schemes.join(", ")
        ))
        .fg(WARN)],
    }
}

fn intent_lines(intent: &Value) -> Vec<Line<'static>> {
    if !intent.is_object() {
        return vec![Line::from(
            "  not decoded: a plain message or raw digest (no chain plugin read it)",
        )
        .fg(WARN)];
    }
    let mut head = format!("  {} {}", text(intent, "chain"), text(intent, "action"));
    if let Some(n) = intent.get("network").and_then(Value::as_str) {
        head.push_str(&format!(" on network {n}"));
    }
    let mut lines = vec![Line::from(head).bold()];
    for key in ["method", "contract"] {
        if let Some(v) = intent.get(key).filter(|v| !v.is_null()) {
            lines.push(field(&format!("  {key}"), fmt::value_text(v)));
        }
    }
    let transfers = intent
        .get("transfers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if transfers.is_empty() {
        lines.push(field("  transfers", "none"));
    }
    for t in &transfers {
        lines.push(Line::from(vec![
            Span::styled("  → ", Style::new().fg(WARN)),
            Span::styled(
                t.get("amount").map(fmt::amount).unwrap_or_default(),
                Style::new().bold(),
            ),
            Span::raw(format!(" {}", text(t, "asset"))),
            Span::styled(" to ", Style::new().fg(DIM)),
            Span::raw(text(t, "to")),
        ]));
    }
    if let Some(fee) = intent.get("fee").filter(|v| !v.is_null()) {
        lines.push(field(
            "  fee",
            format!("{} (native base units, at most)", fmt::amount(fee)),
        ));
    }
    if let Some(details) = intent.get("details").and_then(Value::as_object) {
        for (k, v) in details {
            lines.push(Line::from(format!("  {k}: {}", fmt::value_text(v))).fg(DIM));
        }
    }
    lines
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().map(fmt::value_text).collect())
        .unwrap_or_default()
}

fn decision_lines(d: &Value) -> Vec<Line<'static>> {
    let outcome = d
        .get("outcome")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let summary = match outcome {
        "needs_approvals" => {
            let have = strings(d.get("have"));
            format!(
                "  needs approvals: rule {} wants {} of group {}; counted {}: {}",
                text(d, "rule"),
                text(d, "required"),
                text(d, "group"),
                have.len(),
                if have.is_empty() {
                    "none".to_owned()
                } else {
                    have.join(", ")
                }
            )
        }
        "allow" => format!("  allow: {}", strings(d.get("rules")).join(", ")),
        "deny" => format!("  deny ({}): {}", text(d, "rule"), text(d, "reason")),
        other => format!("  {other}"),
    };
    let mut lines = vec![Line::from(summary).fg(WARN)];
    for rule in d
        .get("trace")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let matched = rule
            .get("matched")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        lines.push(Line::from(vec![
            Span::raw("  "),
            mark(matched),
            Span::styled(format!(" {}", text(rule, "rule")), Style::new().bold()),
            Span::styled(format!("  {}", text(rule, "effect")), Style::new().fg(DIM)),
            Span::raw(if matched {
                "  matched"
            } else {
                "  did not match"
            }),
        ]));
        for c in rule
            .get("conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let holds = c.get("holds").and_then(Value::as_bool).unwrap_or(false);
            lines.push(Line::from(vec![
                Span::raw("      "),
                mark(holds),
                Span::raw(format!(" {}: ", text(c, "condition"))),
                Span::styled(text(c, "detail"), Style::new().fg(DIM)),
            ]));
        }
        if let Some(a) = rule.get("approvals").filter(|a| a.is_object()) {
            let have = strings(a.get("have"));
            lines.push(Line::from(format!(
                "      approvers {}: {} of {} ({})",
                text(a, "group"),
                have.len(),
                text(a, "required"),
                if have.is_empty() {
                    "none yet".to_owned()
                } else {
                    have.join(", ")
                }
            )));
            for why in strings(a.get("ignored")) {
                lines.push(Line::from(format!("      not counted: {why}")).fg(DIM));
            }
        }
    }
    lines
}
