//! The Approvals tab: requests waiting for approvals, and for the selected one what it does
//! (the chain plugin's decoded intent), why it waits (every policy rule's verdict) and the
//! approvals collected.
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
use crate::fmt;
use keyrack_client::api::WaitingRequest;

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
        let count = match required {
            Some(r) => format!("{approved} of {r}"),
            None => approved.to_string(),
        };
        Row::new(vec![
            w.key_id.clone(),
            w.chain.clone().unwrap_or_else(|| "—".into()),
            text(&w.intent, "action"),
            w.initiator.clone(),
            fmt::duration(now.saturating_sub(w.waiting_since_ms)),
            fmt::until(w.expires_at_ms, now),
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
            let mut lines = detail_lines(w, now);
            if app.approver.is_some() {
                lines.insert(1, check_line(app.checks.get(&w.request_hash)));
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

/// What the approver's own check of the request says (see `Approver::check`).
fn check_line(check: Option<&Result<(), String>>) -> Line<'static> {
    match check {
        Some(Ok(())) => field(
            "checked",
            "the request verifies under your manifest; hash and intent match it",
        )
        .fg(OK),
        Some(Err(why)) => field("checked", format!("cannot approve: {why}")).fg(BAD),
        None => field("checked", "not yet (on the next refresh)").fg(WARN),
    }
}

fn detail_lines(w: &WaitingRequest, now: u64) -> Vec<Line<'static>> {
    let mut lines = vec![
        field("hash", w.request_hash.clone()),
        field(
            "asked",
            format!(
                "by {} · key {} ({}) · waiting {} · expires {}",
                w.initiator,
                w.key_id,
                w.scheme,
                fmt::duration(now.saturating_sub(w.waiting_since_ms)),
                fmt::until(w.expires_at_ms, now)
            ),
        ),
    ];
    lines.push(heading("what it does"));
    lines.extend(intent_lines(&w.intent));
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
