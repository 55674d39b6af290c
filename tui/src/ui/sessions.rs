//! The Sessions tab: the requests this node handles now (with each protocol session's
//! round and message counts) and the sessions the store recorded.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::{block, missing, ACCENT, BAD, DIM, OK, SELECTED, WARN};
use crate::app::App;
use crate::fmt;

/// The most round marks drawn for one session.
const ROUND_MARKS: u16 = 8;

pub(super) fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let Some(s) = &app.data.sessions else {
        frame.render_widget(missing("sessions").block(block("sessions")), area);
        return;
    };
    let now = app.now_ms();
    let mut lines = Vec::new();
    for r in &s.live {
        lines.push(Line::from(vec![
            Span::styled(format!("{:<8}", r.kind), Style::new().fg(ACCENT).bold()),
            Span::raw(format!("{}  by {}  ", r.key_id, r.initiator)),
            Span::styled(r.phase.clone(), Style::new().fg(WARN)),
            Span::styled(
                format!(
                    "  for {} · request {}",
                    fmt::duration(now.saturating_sub(r.started_at_ms)),
                    fmt::short(&r.request_id, 12)
                ),
                Style::new().fg(DIM),
            ),
        ]));
        for (i, x) in r.sessions.iter().enumerate() {
            let branch = if i + 1 == r.sessions.len() {
                "└"
            } else {
                "├"
            };
            let marks = "■".repeat(usize::from(x.round.min(ROUND_MARKS)));
            lines.push(Line::from(vec![
                Span::styled(
                    format!("  {branch} session {} ", fmt::short(&x.session_id, 8)),
                    Style::new().fg(DIM),
                ),
                Span::raw(format!("round {} ", x.round)),
                Span::styled(format!("{marks:<8}"), Style::new().fg(OK)),
                Span::raw(format!(" sent {:>4} · received {:>4}", x.sent, x.received)),
                Span::styled(
                    format!("  with {}", x.participants.join(", ")),
                    Style::new().fg(DIM),
                ),
            ]));
        }
    }
    if lines.is_empty() {
        lines.push(Line::from("nothing under way").fg(DIM));
    }
    let live_height = u16::try_from(lines.len())
        .unwrap_or(u16::MAX)
        .saturating_add(2);
    let [live, recent] = Layout::vertical([
        Constraint::Max(live_height.min(area.height / 2).max(3)),
        Constraint::Min(3),
    ])
    .areas(area);
    frame.render_widget(
        Paragraph::new(lines).block(block(format!("live requests: {}", s.live.len()))),
        live,
    );
    let rows = s.recent.iter().map(|x| {
        let state = match x.state.as_str() {
            "completed" => Span::styled(x.state.clone(), Style::new().fg(OK)),
            "failed" => Span::styled(x.state.clone(), Style::new().fg(BAD).bold()),
            _ => Span::styled(x.state.clone(), Style::new().fg(WARN)),
        };
        let took = match x.finished_at_ms {
            Some(end) => fmt::duration(end.saturating_sub(x.started_at_ms)),
            None => format!("{}…", fmt::duration(now.saturating_sub(x.started_at_ms))),
        };
        Row::new(vec![
            Line::from(fmt::ago(x.started_at_ms, now)),
            Line::from(x.kind.clone()),
            Line::from(x.key_id.clone().unwrap_or_default()),
            Line::from(x.scheme.clone().unwrap_or_default()),
            Line::from(state),
            Line::from(took),
            Line::from(x.error.clone().unwrap_or_default()).fg(BAD),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Length(8),
            Constraint::Fill(2),
            Constraint::Length(17),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Fill(3),
        ],
    )
    .header(
        Row::new(["started", "kind", "key", "scheme", "state", "took", "error"])
            .style(Style::new().fg(DIM)),
    )
    .highlight_symbol(SELECTED)
    .row_highlight_style(Style::new().reversed())
    .block(block(format!("recent sessions: {}", s.recent.len())));
    let mut state = TableState::default();
    if !s.recent.is_empty() {
        state.select(Some(app.session_selected));
    }
    frame.render_stateful_widget(table, recent, &mut state);
}
