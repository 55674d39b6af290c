//! The Audit tab: the node's audit log (newest entries kept), the selected entry in full, and
//! the result of the last verification (`v`).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;
use serde_json::Value;

use super::{block, mark, ACCENT, BAD, DIM, OK, SELECTED, WARN};
use crate::app::App;
use crate::fmt;

/// Entry fields worth a summary column, in the order shown.
const SUMMARY_FIELDS: &[&str] = &[
    "outcome",
    "key_id",
    "chain",
    "initiator",
    "approver",
    "verdict",
    "version",
    "reason",
    "error",
    "message",
];

pub(super) fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let [verify, list, detail] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(9),
    ])
    .areas(area);
    frame.render_widget(verification_line(app), verify);

    let entries = &app.audit;
    let rows = entries.iter().map(|e| {
        let kind_style = match e.kind.as_str() {
            "decision" => Style::new().fg(ACCENT),
            "approval" => Style::new().fg(OK),
            "policy" => Style::new().fg(WARN),
            _ => Style::new(),
        };
        Row::new(vec![
            Line::from(e.seq.to_string()),
            Line::from(fmt::date_time(e.at_ms)),
            Line::from(Span::styled(e.kind.clone(), kind_style)),
            Line::from(fmt::short(e.request_id.as_deref().unwrap_or("—"), 8)),
            Line::from(summary(&e.entry)),
        ])
    });
    let title = format!(
        "audit log: {} entries shown of {} · newest last",
        entries.len(),
        app.audit_head
    );
    let table = Table::new(
        rows,
        [
            Constraint::Length(6),
            Constraint::Length(19),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Fill(1),
        ],
    )
    .header(Row::new(["seq", "at (UTC)", "kind", "request", "summary"]).style(Style::new().fg(DIM)))
    .highlight_symbol(SELECTED)
    .row_highlight_style(Style::new().reversed())
    .block(block(title));
    let mut state = TableState::default();
    state.select(app.audit_index());
    frame.render_stateful_widget(table, list, &mut state);

    let Some(e) = app.audit_index().and_then(|i| entries.get(i)) else {
        frame.render_widget(
            Paragraph::new("the log is empty")
                .fg(DIM)
                .block(block("entry")),
            detail,
        );
        return;
    };
    let mut lines = vec![Line::from(vec![
        Span::styled("hash ", Style::new().fg(DIM)),
        Span::raw(e.hash.clone()),
    ])];
    match e.entry.as_object() {
        Some(fields) => lines.extend(fields.iter().map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!("{k}: "), Style::new().fg(DIM)),
                Span::raw(fmt::value_text(v)),
            ])
        })),
        None => lines.push(Line::from(e.entry.to_string())),
    }
    let p = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(block(format!("entry {} · {}", e.seq, e.kind)));
    frame.render_widget(p, detail);
}

fn verification_line(app: &App) -> Line<'static> {
    if app.verifying {
        return Line::from(" verifying the audit log…").fg(WARN);
    }
    match &app.verification {
        None => Line::from(" not verified in this console: press v to have the node check every hash, link and signature").fg(DIM),
        Some(Err(e)) => Line::from(format!(" verification could not run: {e}")).fg(BAD),
        Some(Ok(v)) if v.ok => Line::from(vec![
            Span::raw(" "),
            mark(true),
            Span::styled(
                format!(
                    " audit log verified: {} entries, head {}",
                    v.entries,
                    fmt::short(&v.head_hash, 16)
                ),
                Style::new().fg(OK),
            ),
        ]),
        Some(Ok(v)) => Line::from(vec![
            Span::raw(" "),
            mark(false),
            Span::styled(
                format!(
                    " AUDIT LOG BROKEN at entry {}: {} ({} entries checked)",
                    v.broken_at.map_or("?".to_owned(), |s| s.to_string()),
                    v.reason.as_deref().unwrap_or("no reason given"),
                    v.entries
                ),
                Style::new().fg(BAD).bold(),
            ),
        ]),
    }
}

/// One line of an entry's most telling fields.
fn summary(entry: &Value) -> String {
    let mut parts: Vec<String> = SUMMARY_FIELDS
        .iter()
        .filter_map(|k| {
            let v = entry.get(*k)?;
            (!v.is_null()).then(|| format!("{k}={}", fmt::value_text(v)))
        })
        .collect();
    if let Some(o) = entry.get("decision").and_then(|d| d.get("outcome")) {
        parts.push(format!("decision={}", fmt::value_text(o)));
    }
    if parts.is_empty() {
        entry.to_string()
    } else {
        parts.join(" ")
    }
}
