//! The Cluster tab: this node, its peers, its pools and its signing activity.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, RenderDirection, Row, Sparkline, Table};
use ratatui::Frame;

use super::{block, field, good, mark, missing, ACCENT, BAD, DIM, OK};
use crate::app::App;
use crate::fmt;

pub(super) fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let [top, activity] = Layout::vertical([Constraint::Min(8), Constraint::Length(6)]).areas(area);
    let [node, right] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(top);
    let [peers, pools] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(right);
    draw_node(frame, app, node);
    draw_peers(frame, app, peers);
    draw_pools(frame, app, pools);
    draw_activity(frame, app, activity);
}

fn draw_node(frame: &mut Frame, app: &App, area: Rect) {
    let Some(s) = &app.data.status else {
        frame.render_widget(missing("status").block(block("this node")), area);
        return;
    };
    let now = app.now_ms();
    let backend = app.data.backend.as_ref().unwrap_or(&s.backend);
    let m = &s.manifest;
    let mut lines = vec![
        field(
            "node",
            format!(
                "{} (keyrack {}), up {}",
                s.node_id,
                s.software,
                fmt::duration(now.saturating_sub(s.started_at_ms))
            ),
        ),
        field(
            "manifest",
            format!(
                "v{} {} · {} nodes · {} initiators",
                m.version,
                fmt::short(&m.hash, 12),
                m.nodes.len(),
                m.initiators.len()
            ),
        ),
        field("members", m.nodes.join(", ")),
        field(
            "initiators",
            m.initiators
                .iter()
                .map(|i| match i.roles.is_empty() {
                    true => i.id.clone(),
                    false => format!("{} ({})", i.id, i.roles.join(", ")),
                })
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Line::from(vec![
            Span::styled(format!("{:<13}", "NATS"), Style::new().fg(DIM)),
            Span::styled(s.nats.state.clone(), good(s.nats.state == "connected")),
            Span::raw(format!("  {}", s.nats.servers.join(", "))),
        ]),
        Line::from(vec![
            Span::styled(format!("{:<13}", "HSM"), Style::new().fg(DIM)),
            mark(backend.ok),
            Span::raw(format!(
                " {} {} · {:.1} ms, checked {}",
                backend.backend,
                backend.key_id,
                backend.latency_ms,
                fmt::ago(backend.checked_at_ms, now)
            )),
        ]),
    ];
    if !backend.ok {
        lines.push(field("", backend.detail.clone()).fg(BAD));
    }
    lines.push(match &s.policy {
        Some(p) => field(
            "policy",
            format!(
                "v{} {} · {} rules · signed by {}",
                p.version,
                fmt::short(&p.hash, 12),
                p.rules.len(),
                p.signers.join(", ")
            ),
        ),
        None => field("policy", "none active: every sign request is refused").fg(BAD),
    });
    lines.push(field(
        "work",
        format!(
            "{} requests · {} sessions live · {} awaiting approval",
            s.requests_in_flight, s.sessions_live, s.approvals_waiting
        ),
    ));
    if let Some(r) = &app.data.readiness {
        let mut spans = vec![Span::styled(
            format!("{:<13}", "ready"),
            Style::new().fg(DIM),
        )];
        for c in &r.checks {
            spans.push(mark(c.ok));
            spans.push(Span::raw(format!(" {}  ", c.name)));
        }
        lines.push(Line::from(spans));
        for c in r.checks.iter().filter(|c| !c.ok) {
            lines.push(field("", format!("{}: {}", c.name, c.detail)).fg(BAD));
        }
    }
    // Not wrapped: a cut line reads better than a label-less continuation.
    let p = Paragraph::new(lines).block(block("this node"));
    frame.render_widget(p, area);
}

fn draw_peers(frame: &mut Frame, app: &App, area: Rect) {
    let Some(peers) = &app.data.peers else {
        frame.render_widget(missing("peers").block(block("peers")), area);
        return;
    };
    let live = peers.peers.iter().filter(|p| p.live).count();
    let rows = peers.peers.iter().map(|p| {
        let state = if p.live {
            Span::styled("● live", Style::new().fg(OK))
        } else {
            Span::styled("✖ DOWN", Style::new().fg(BAD).bold())
        };
        let heard = match (p.me, p.last_heard_ms_ago) {
            (true, _) => "(this node)".to_owned(),
            (false, Some(ms)) => format!("{} ago", fmt::duration(ms)),
            (false, None) => "never heard".to_owned(),
        };
        Row::new(vec![
            Line::from(p.node_id.clone()),
            Line::from(state),
            Line::from(heard),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Fill(2),
            Constraint::Length(7),
            Constraint::Fill(2),
        ],
    )
    .header(Row::new(["node", "state", "last heard"]).style(Style::new().fg(DIM)))
    .block(block(format!(
        "peers: {live} of {} live",
        peers.peers.len()
    )));
    frame.render_widget(table, area);
}

fn draw_pools(frame: &mut Frame, app: &App, area: Rect) {
    let Some(pools) = &app.data.pools else {
        frame.render_widget(missing("pools").block(block("pools")), area);
        return;
    };
    let rows = pools.presignatures.iter().map(|p| {
        Row::new(vec![
            p.key_id.clone(),
            p.scheme.clone(),
            p.signers.join(","),
            p.available.to_string(),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Fill(2),
            Constraint::Fill(2),
            Constraint::Fill(2),
            Constraint::Length(5),
        ],
    )
    .header(Row::new(["key", "scheme", "signers", "ready"]).style(Style::new().fg(DIM)))
    .block(block(format!(
        "presignature pools · {} safe-prime sets",
        pools.primes
    )));
    frame.render_widget(table, area);
}

fn draw_activity(frame: &mut Frame, app: &App, area: Rect) {
    let [sigs, lat] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let Some(a) = app.data.status.as_ref().map(|s| &s.activity) else {
        frame.render_widget(missing("activity").block(block("signing activity")), area);
        return;
    };
    // The newest buckets that fit (one column each), newest at the right edge.
    let fit = |v: &[u64]| -> Vec<u64> {
        let w = usize::from(sigs.width.saturating_sub(2));
        v[v.len().saturating_sub(w)..]
            .iter()
            .rev()
            .copied()
            .collect()
    };
    let total: u64 = a.signatures.iter().sum();
    let window = fmt::duration(a.bucket_secs * 1000 * a.signatures.len() as u64);
    let last_sigs = a.signatures.last().copied().unwrap_or(0);
    let title = format!(
        "signatures per {}s: {last_sigs} now · {total} in {window}",
        a.bucket_secs
    );
    let spark = Sparkline::default()
        .data(fit(&a.signatures))
        .direction(RenderDirection::RightToLeft)
        .style(Style::new().fg(ACCENT))
        .block(block(title));
    frame.render_widget(spark, sigs);
    let busy: Vec<u64> = a.latency_ms.iter().copied().filter(|l| *l > 0).collect();
    let max = busy.iter().max().copied().unwrap_or(0);
    let mean = if busy.is_empty() {
        0
    } else {
        busy.iter().sum::<u64>() / busy.len() as u64
    };
    let title = format!(
        "signing latency: mean {} · max {}",
        fmt::latency(mean),
        fmt::latency(max)
    );
    let spark = Sparkline::default()
        .data(fit(&a.latency_ms))
        .direction(RenderDirection::RightToLeft)
        .style(Style::new().fg(super::WARN))
        .block(block(title));
    frame.render_widget(spark, lat);
}
