//! The Keys tab: every key this node holds, a search by id, and the selected key's detail.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use super::{block, field, missing, ACCENT, BAD, DIM, OK, SELECTED, WARN};
use crate::app::App;
use crate::fmt;

pub(super) fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let search_height = u16::from(app.searching || !app.search.is_empty());
    let detail_height = if app.key_detail { 12 } else { 0 };
    let [search, list, detail] = Layout::vertical([
        Constraint::Length(search_height),
        Constraint::Min(4),
        Constraint::Length(detail_height),
    ])
    .areas(area);
    if search_height > 0 {
        let cursor = if app.searching { "▏" } else { "" };
        let how = if app.searching {
            "  (Enter keeps, Esc clears)"
        } else {
            "  (/ edits, Esc clears)"
        };
        let line = Line::from(vec![
            Span::styled(" search: ", Style::new().fg(DIM)),
            Span::styled(
                format!("{}{cursor}", app.search),
                Style::new().fg(ACCENT).bold(),
            ),
            Span::styled(how, Style::new().fg(DIM)),
        ]);
        frame.render_widget(line, search);
    }
    if app.data.keys.is_none() {
        frame.render_widget(missing("keys").block(block("keys")), list);
        return;
    }
    let keys = app.visible_keys();
    let total = app.data.keys.as_ref().map_or(0, |k| k.keys.len());
    let rows = keys.iter().map(|k| {
        let status = match k.status.as_str() {
            "READY" => Span::styled(k.status.clone(), Style::new().fg(OK)),
            "ERROR" => Span::styled(k.status.clone(), Style::new().fg(BAD).bold()),
            _ => Span::styled(k.status.clone(), Style::new().fg(WARN)),
        };
        let chains: Vec<&str> = k.addresses.iter().map(|a| a.chain.as_str()).collect();
        Row::new(vec![
            Line::from(k.key_id.clone()),
            Line::from(k.scheme.clone()),
            Line::from(status),
            Line::from(format!("v{}", k.version)),
            Line::from(format!("{} of {}", k.threshold, k.participants.len())),
            Line::from(fmt::short(&k.public_key, 16)),
            Line::from(chains.join(" ")),
        ])
    });
    let title = if app.search.is_empty() {
        format!("keys: {total}")
    } else {
        format!("keys: {} of {total} match '{}'", keys.len(), app.search)
    };
    let table = Table::new(
        rows,
        [
            Constraint::Fill(3),
            Constraint::Length(17),
            Constraint::Length(7),
            Constraint::Length(4),
            Constraint::Length(6),
            Constraint::Fill(2),
            Constraint::Fill(2),
        ],
    )
    .header(
        Row::new([
            "key id",
            "scheme",
            "status",
            "ver",
            "t of n",
            "public key",
            "chains",
        ])
        .style(Style::new().fg(DIM)),
    )
    .highlight_symbol(SELECTED)
    .row_highlight_style(Style::new().reversed())
    .block(block(title));
    let mut state = TableState::default().with_selected(Some(app.key_selected));
    if keys.is_empty() {
        state = TableState::default();
    }
    frame.render_stateful_widget(table, list, &mut state);
    if app.key_detail {
        draw_detail(frame, app, detail);
    }
}

fn draw_detail(frame: &mut Frame, app: &App, area: Rect) {
    let Some(k) = app.selected_key() else { return };
    let mut lines = vec![
        field(
            "key",
            format!(
                "{} ({}) {} v{} · threshold {} of {} · created {} UTC",
                k.key_id,
                k.scheme,
                k.status,
                k.version,
                k.threshold,
                k.participants.len(),
                fmt::date_time(k.created_at_ms)
            ),
        ),
        field("participants", k.participants.join(", ")),
        field(
            "public key",
            if k.public_key.is_empty() {
                "(none until READY)".to_owned()
            } else {
                k.public_key.clone()
            },
        ),
    ];
    if let Some(e) = &k.error {
        lines.push(field("error", e.clone()).fg(BAD));
    }
    if k.addresses.is_empty() {
        lines.push(field(
            "addresses",
            "none (no chain plugin takes this scheme)",
        ));
    }
    for (i, a) in k.addresses.iter().enumerate() {
        let label = if i == 0 { "addresses" } else { "" };
        lines.push(Line::from(vec![
            Span::styled(format!("{label:<13}"), Style::new().fg(DIM)),
            Span::styled(format!("{:<9}", a.chain), Style::new().fg(ACCENT)),
            Span::raw(a.address.clone()),
        ]));
    }
    let p = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(block(format!("key {} · Esc closes", k.key_id)));
    frame.render_widget(p, area);
}
