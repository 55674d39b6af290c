//! Drawing: one frame of the console from the [`App`] state, at any terminal size.
//!
//! What it owns: layout, wording and colours. It reads the state and never changes it, and
//! never calls the node: what is not in the state is drawn as missing.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Tabs, Wrap};
use ratatui::Frame;

use crate::app::{App, ProblemKind, Tab};
use crate::approval::Verdict;
use crate::fmt;

mod approvals;
mod audit;
mod cluster;
mod keys;
mod policies;
mod sessions;

/// Below this width or height only a "terminal too small" line is drawn.
pub const MIN_WIDTH: u16 = 60;
/// See [`MIN_WIDTH`].
pub const MIN_HEIGHT: u16 = 12;

const OK: Color = Color::Green;
const BAD: Color = Color::Red;
const WARN: Color = Color::Yellow;
const DIM: Color = Color::DarkGray;
const ACCENT: Color = Color::Cyan;

/// What the selected row is marked with (visible without colour too).
const SELECTED: &str = "▶ ";

/// Draws the whole console.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "terminal too small: {}x{}, need {MIN_WIDTH}x{MIN_HEIGHT} (q quits)",
            area.width, area.height
        );
        let p = Paragraph::new(text)
            .style(Style::new().fg(WARN))
            .wrap(Wrap { trim: true });
        frame.render_widget(p, area);
        return;
    }
    let banner_height = u16::from(app.problem.is_some());
    let footer_height = if app.message.is_some() { 2 } else { 1 };
    let [header, tabs, banner, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(banner_height),
        Constraint::Min(1),
        Constraint::Length(footer_height),
    ])
    .areas(area);
    draw_header(frame, app, header);
    draw_tabs(frame, app, tabs);
    draw_banner(frame, app, banner);
    if !draw_no_data(frame, app, body) {
        match app.tab {
            Tab::Cluster => cluster::draw(frame, app, body),
            Tab::Keys => keys::draw(frame, app, body),
            Tab::Sessions => sessions::draw(frame, app, body),
            Tab::Approvals => approvals::draw(frame, app, body),
            Tab::Policies => policies::draw(frame, app, body),
            Tab::Audit => audit::draw(frame, app, body),
        }
    }
    draw_footer(frame, app, footer);
    if app.help {
        draw_help(frame, area);
    }
    if app.confirm.is_some() {
        draw_confirm(frame, app, area);
    }
    if app.unconfirmed.is_some() {
        draw_unconfirmed(frame, app, area);
    }
}

fn sep() -> Span<'static> {
    Span::styled(" │ ", Style::new().fg(DIM))
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    // Freshness on the right, always whole: the one thing that must never be cut off.
    let fresh = match app.updated_ms {
        Some(t) if app.stale() => Span::styled(
            format!(" STALE: data from {} UTC ", fmt::clock(t)),
            Style::new().fg(Color::White).bg(BAD).bold(),
        ),
        Some(t) => Span::styled(
            format!(" updated {} UTC ", fmt::clock(t)),
            Style::new().fg(DIM),
        ),
        None => Span::styled(" no data yet ", Style::new().fg(WARN)),
    };
    let fresh_width = u16::try_from(fresh.width()).unwrap_or(area.width);
    let [left, right] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(fresh_width)]).areas(area);
    frame.render_widget(Line::from(fresh), right);

    let mut spans = vec![Span::styled(" keyrack ", Style::new().bold().fg(ACCENT))];
    match &app.data.status {
        Some(s) => {
            spans.push(sep());
            spans.push(Span::raw(format!("{} / {}", s.cluster_id, s.node_id)));
            spans.push(sep());
            let nats_ok = s.nats.state == "connected";
            spans.push(Span::raw("NATS "));
            spans.push(Span::styled(s.nats.state.clone(), good(nats_ok)));
            spans.push(sep());
            let backend = app.data.backend.as_ref().unwrap_or(&s.backend);
            spans.push(Span::raw(format!("HSM {} ", backend.backend)));
            let hsm = if backend.ok {
                format!("ok {:.1}ms", backend.latency_ms)
            } else {
                "FAILING".to_owned()
            };
            spans.push(Span::styled(hsm, good(backend.ok)));
            spans.push(sep());
            match &s.policy {
                Some(p) => spans.push(Span::raw(format!(
                    "policy v{} {}",
                    p.version,
                    p.hash.get(..8).unwrap_or(&p.hash)
                ))),
                None => spans.push(Span::styled("no policy", Style::new().fg(BAD))),
            }
        }
        None => {
            spans.push(sep());
            spans.push(Span::raw(app.url.clone()));
        }
    }
    frame.render_widget(Line::from(spans), left);
}

fn good(ok: bool) -> Style {
    Style::new().fg(if ok { OK } else { BAD })
}

fn draw_tabs(frame: &mut Frame, app: &App, area: Rect) {
    let waiting = app.waiting().len();
    let titles = Tab::ALL.iter().enumerate().map(|(i, t)| {
        let mut title = format!("{} {}", i + 1, t.title());
        if *t == Tab::Approvals && waiting > 0 {
            title = format!("{title} ({waiting})");
        }
        Line::from(title)
    });
    let selected = Tab::ALL.iter().position(|t| *t == app.tab);
    let tabs = Tabs::new(titles)
        .select(selected)
        .highlight_style(
            Style::new()
                .fg(ACCENT)
                .add_modifier(Modifier::BOLD | Modifier::REVERSED),
        )
        .divider(Span::styled("│", Style::new().fg(DIM)));
    frame.render_widget(tabs, area);
}

fn draw_banner(frame: &mut Frame, app: &App, area: Rect) {
    let Some(problem) = &app.problem else { return };
    let tail = match app.updated_ms {
        Some(t) => format!(" (showing data from {} UTC)", fmt::clock(t)),
        None => String::new(),
    };
    let text = format!("⚠ {}{tail}", problem.message);
    let line = Line::from(fmt::fit(&text, usize::from(area.width)))
        .style(Style::new().fg(Color::White).bg(BAD).bold());
    frame.render_widget(line, area);
}

/// With no data at all, the body explains why instead of drawing empty tables.
fn draw_no_data(frame: &mut Frame, app: &App, area: Rect) -> bool {
    if app.updated_ms.is_some() {
        return false;
    }
    let lines: Vec<Line> = match &app.problem {
        None => vec![Line::from(format!(
            "connecting to the node API at {}…",
            app.url
        ))],
        Some(p) if p.kind == ProblemKind::Unauthorized => vec![
            Line::from("No data: the node refused the API token.").bold(),
            Line::from(""),
            Line::from("Give the token the node's api-token file holds:"),
            Line::from("  keyrack tui --token-file /path/to/node/api-token"),
            Line::from("or let the console read the node's config:"),
            Line::from("  keyrack tui --node /path/to/node"),
        ],
        Some(p) if p.kind == ProblemKind::Unreachable => vec![
            Line::from(format!("No data: nothing answers at {}.", app.url)).bold(),
            Line::from(""),
            Line::from("Is the node running (keyrack node), and is --url its [api] listen"),
            Line::from("address? The console retries every refresh."),
        ],
        Some(p) => vec![
            Line::from("No data: the node answered with an error.").bold(),
            Line::from(""),
            Line::from(p.message.clone()),
        ],
    };
    let p = Paragraph::new(lines).wrap(Wrap { trim: false }).block(
        Block::bordered()
            .title(" no data ")
            .border_style(Style::new().fg(DIM)),
    );
    frame.render_widget(p, area);
    true
}

fn hints(app: &App) -> String {
    let tab = match app.tab {
        Tab::Cluster => "",
        Tab::Keys if app.searching => "type to search · Enter keep · Esc clear",
        Tab::Keys if app.key_detail => "↑↓ key · Enter/Esc close detail · / search",
        Tab::Keys => "↑↓ key · Enter detail · / search · Esc clear search",
        Tab::Sessions => "↑↓ recent session",
        Tab::Approvals => match &app.approver {
            Some(id) => return format!(
                "↑↓ request · PgUp/PgDn detail · a approve · r reject (as {id}) · Tab/1-6 tabs · ? help · q quit"
            ),
            None => "↑↓ request · PgUp/PgDn detail · approving needs --approver-config",
        },
        Tab::Policies => "↑↓ bundle",
        Tab::Audit => "↑↓ PgUp/PgDn entry · End newest · v verify",
    };
    let common = "Tab/1-6 tabs · R refresh · ? help · q quit";
    if tab.is_empty() {
        common.to_owned()
    } else {
        format!("{tab} · {common}")
    }
}

fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    let width = usize::from(area.width);
    let mut lines = Vec::new();
    if let Some(m) = &app.message {
        lines.push(Line::from(fmt::fit(m, width)).style(Style::new().fg(WARN)));
    }
    lines.push(Line::from(fmt::fit(&hints(app), width)).style(Style::new().fg(DIM)));
    frame.render_widget(Paragraph::new(lines), area);
}

/// Every key, for the help overlay.
pub const HELP: &[(&str, &str)] = &[
    ("Tab / Shift-Tab", "next / previous tab"),
    (
        "1 … 6",
        "Cluster, Keys, Sessions, Approvals, Policies, Audit",
    ),
    ("↑ ↓  k j", "move the selection"),
    (
        "PgUp PgDn",
        "move by 10 (Approvals: scroll the request's detail)",
    ),
    ("Home End", "first / last (Audit: End follows new entries)"),
    ("/", "Keys: search key ids (Enter keeps, Esc clears)"),
    ("Enter", "Keys: show / hide the selected key's detail"),
    ("Esc", "close the detail, clear the search, close this help"),
    ("a", "Approvals: approve the selected request (asks y/n)"),
    ("r", "Approvals: reject (a time-locked one: veto), asks y/n"),
    ("v", "Audit: have the node verify its whole audit log"),
    ("R", "refresh now"),
    ("?", "show / hide this help"),
    ("q  Ctrl-C", "quit"),
];

/// A rectangle of at most `w`x`h` centred in `area`.
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(h.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [rect] = Layout::horizontal([Constraint::Length(w.min(area.width))])
        .flex(Flex::Center)
        .areas(row);
    rect
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let height = u16::try_from(HELP.len()).unwrap_or(20) + 4;
    let rect = centered(area, 72, height);
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!(" {k:<16}"), Style::new().fg(ACCENT).bold()),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(
        Line::from(" Read-only but for a and r, which sign as the --approver-config initiator.")
            .fg(DIM),
    );
    frame.render_widget(Clear, rect);
    let p = Paragraph::new(lines).block(
        Block::bordered()
            .title(" keys · ? or Esc closes ")
            .border_style(Style::new().fg(ACCENT)),
    );
    frame.render_widget(p, rect);
}

fn draw_confirm(frame: &mut Frame, app: &App, area: Rect) {
    let Some(c) = &app.confirm else { return };
    let (verb, colour) = match c.verdict {
        Verdict::Approve => ("APPROVE", OK),
        Verdict::Reject if c.veto => ("VETO", BAD),
        Verdict::Reject => ("REJECT", BAD),
    };
    let who = app.approver.as_deref().unwrap_or("?");
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!("{verb} "), Style::new().fg(colour).bold()),
            Span::raw(format!("request {}", c.request_id)),
        ]),
        Line::from(c.summary.clone()),
    ];
    lines.extend(c.transfers.iter().map(|t| Line::from(t.clone()).bold()));
    if let Some(effect) = &c.effect {
        lines.push(Line::from(effect.clone()).fg(colour));
    }
    lines.extend([
        Line::from(format!("hash {}", c.request_hash)),
        Line::from(format!("signed as {who}, valid for 10 minutes")),
        Line::from(""),
        Line::from(vec![
            Span::styled("y", Style::new().bold().fg(colour)),
            Span::raw(format!(" {} · ", verb.to_lowercase())),
            Span::styled("n", Style::new().bold()),
            Span::raw(" / Esc cancel"),
        ]),
    ]);
    let block = Block::bordered()
        .title(format!(" {} this request? ", verb.to_lowercase()))
        .border_style(Style::new().fg(colour));
    draw_box(frame, area, lines, block);
}

/// `lines` in `block`, centred over `area`: wide enough for a transfer to a long address
/// (or a request hash in a command) on one line, one row taller per wrapped line.
fn draw_box(frame: &mut Frame, area: Rect, lines: Vec<Line>, block: Block) {
    const WIDTH: u16 = 100;
    let inner = usize::from(WIDTH - 2);
    let rows: usize = lines.iter().map(|l| l.width().max(1).div_ceil(inner)).sum();
    let rect = centered(area, WIDTH, u16::try_from(rows + 2).unwrap_or(u16::MAX));
    frame.render_widget(Clear, rect);
    let p = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(block);
    frame.render_widget(p, rect);
}

/// A verdict not every node confirmed: which node said what, and what to do, until the
/// operator closes it.
fn draw_unconfirmed(frame: &mut Frame, app: &App, area: Rect) {
    let Some((request_id, c)) = &app.unconfirmed else {
        return;
    };
    let mut lines: Vec<Line> = c
        .warning(request_id)
        .into_iter()
        .map(|l| {
            let colour = match l.trim_start().chars().next() {
                Some('✔') => OK,
                Some('✘') => BAD,
                Some('?') => WARN,
                _ => Color::Reset,
            };
            Line::from(l).fg(colour)
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from(vec![
        Span::styled("Enter", Style::new().bold()),
        Span::raw(" / "),
        Span::styled("Esc", Style::new().bold()),
        Span::raw(" close"),
    ]));
    let block = Block::bordered()
        .title(format!(" {} NOT confirmed by every node ", c.what()))
        .title_style(Style::new().fg(BAD).bold())
        .border_style(Style::new().fg(BAD));
    draw_box(frame, area, lines, block);
}

/// A bordered block with a title.
fn block(title: impl Into<String>) -> Block<'static> {
    Block::bordered()
        .title(format!(" {} ", title.into()))
        .border_style(Style::new().fg(DIM))
        .title_style(Style::new().fg(Color::White).bold())
}

/// `✔` or `✘`, coloured.
fn mark(ok: bool) -> Span<'static> {
    if ok {
        Span::styled("✔", Style::new().fg(OK))
    } else {
        Span::styled("✘", Style::new().fg(BAD))
    }
}

/// A "label  value" line with the label dimmed and padded.
fn field(label: &str, value: impl Into<String>) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{label:<12} "), Style::new().fg(DIM)),
        Span::raw(value.into()),
    ])
}

/// A placeholder line for a part that has not arrived.
fn missing(what: &str) -> Paragraph<'static> {
    Paragraph::new(format!("no {what} from the node yet")).style(Style::new().fg(DIM))
}
