//! The Policies tab: every bundle this node activated (the active one marked) and the
//! selected bundle's signers and rules.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use super::{block, field, missing, ACCENT, BAD, DIM, OK, SELECTED};
use crate::app::App;
use crate::fmt;

pub(super) fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let Some(p) = &app.data.policies else {
        frame.render_widget(missing("policies").block(block("policies")), area);
        return;
    };
    let active_hash = p.active.as_ref().map(|a| a.hash.as_str());
    let [history, detail] = Layout::vertical([
        Constraint::Length(p.history.len().clamp(1, 8) as u16 + 3),
        Constraint::Min(4),
    ])
    .areas(area);
    let rows = p.history.iter().map(|b| {
        let state = if Some(b.hash.as_str()) == active_hash {
            Span::styled("● active", Style::new().fg(OK).bold())
        } else {
            Span::styled("replaced", Style::new().fg(DIM))
        };
        Row::new(vec![
            Line::from(format!("v{}", b.version)),
            Line::from(state),
            Line::from(b.description.clone()),
            Line::from(fmt::short(&b.hash, 16)),
            Line::from(b.signers.join(", ")),
            Line::from(format!("{} UTC", fmt::date_time(b.activated_at_ms))),
        ])
    });
    let title = match &p.active {
        Some(a) => format!(
            "policy bundles: {} · active v{}",
            p.history.len(),
            a.version
        ),
        None => format!("policy bundles: {} · NONE ACTIVE", p.history.len()),
    };
    let table = Table::new(
        rows,
        [
            Constraint::Length(5),
            Constraint::Length(9),
            Constraint::Fill(2),
            Constraint::Length(17),
            Constraint::Fill(2),
            Constraint::Length(23),
        ],
    )
    .header(
        Row::new([
            "ver",
            "state",
            "description",
            "hash",
            "signed by",
            "activated",
        ])
        .style(Style::new().fg(DIM)),
    )
    .highlight_symbol(SELECTED)
    .row_highlight_style(Style::new().reversed())
    .block(block(title));
    let mut state = TableState::default();
    if !p.history.is_empty() {
        state.select(Some(app.policy_selected));
    }
    frame.render_stateful_widget(table, history, &mut state);

    let Some(b) = p.history.get(app.policy_selected).or(p.active.as_ref()) else {
        let line =
            Line::from("no policy bundle is active: the node refuses every sign request").fg(BAD);
        frame.render_widget(Paragraph::new(line).block(block("bundle")), detail);
        return;
    };
    let mut lines = vec![
        field("version", b.version.to_string()),
        field(
            "description",
            if b.description.is_empty() {
                "(none)".to_owned()
            } else {
                b.description.clone()
            },
        ),
        field("hash", b.hash.clone()),
        field(
            "previous",
            if b.previous.is_empty() {
                "(first bundle)".to_owned()
            } else {
                b.previous.clone()
            },
        ),
        field("signed by", b.signers.join(", ")),
        field(
            "activated",
            format!("{} UTC", fmt::date_time(b.activated_at_ms)),
        ),
        Line::from(Span::styled(
            format!("rules: {}", b.rules.len()),
            Style::new().fg(ACCENT).bold(),
        )),
    ];
    lines.extend(b.rules.iter().map(|r| Line::from(format!("  • {r}"))));
    let p = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(block(format!("bundle v{}", b.version)));
    frame.render_widget(p, detail);
}
