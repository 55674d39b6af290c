//! What an operator reads: every tab, overlay and error state of the console, drawn on a
//! test terminal from fixture answers of a 3-node cluster (tests/fixtures/*.json, in the API's
//! own JSON, so they also check that the console reads what the node serves).

use keyrack_client::api::AuditVerification;
use keyrack_client::request::RequestKind;
use keyrack_client::scheme::Scheme;
use keyrack_tui::app::{Action, App, Data, Poll, Problem, ProblemKind, Tab, Update};
use keyrack_tui::approval::{Checked, Verdict};
use keyrack_tui::asks::{Asks, CheckedRequest};
use keyrack_tui::confirmation::Confirmation;
use keyrack_tui::ui;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use serde::de::DeserializeOwned;

/// The fixtures' "now" (the node's clock in status.json).
const NOW: u64 = 1_795_000_000_000;
const URL: &str = "http://127.0.0.1:7400";

fn fixture<T: DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn full_poll() -> Poll {
    Poll {
        at_ms: NOW,
        data: Data {
            status: Some(fixture("status")),
            readiness: Some(fixture("readyz")),
            peers: Some(fixture("peers")),
            backend: Some(fixture("backend")),
            keys: Some(fixture("keys")),
            sessions: Some(fixture("sessions")),
            pools: Some(fixture("pools")),
            approvals: Some(fixture("approvals")),
            policies: Some(fixture("policies")),
        },
        audit: Some(fixture("audit")),
        problem: None,
        // The approver's check of the one waiting request passed.
        checks: Some([(WAITING_HASH.to_owned(), Ok(sign_checked()))].into()),
    }
}

/// What the approver's check read from the sign request in approvals.json: it may be
/// approved.
fn sign_checked() -> Checked {
    Checked {
        request_hash: [0xe3; 32],
        request: CheckedRequest {
            kind: RequestKind::Sign,
            key_id: "treasury-sol".into(),
            schemes: vec![Scheme::Ed25519],
            asks: Asks::Sign,
        },
        mismatch: None,
        closed: None,
    }
}

/// The hash of the request waiting in approvals.json.
const WAITING_HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn app(approver: Option<&str>) -> App {
    let mut app = App::new(URL, approver.map(str::to_owned));
    app.apply(Update::Polled(Box::new(full_poll())));
    app
}

fn press(app: &mut App, code: KeyCode) -> Option<Action> {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, KeyCode::Char(c));
    }
}

fn screen(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| ui::draw(f, app)).unwrap();
    terminal.backend().to_string()
}

fn on_tab(tab: char) -> App {
    let mut app = app(Some("carol"));
    press(&mut app, KeyCode::Char(tab));
    app
}

#[test]
fn cluster_tab() {
    let app = app(Some("carol"));
    let s = screen(&app, 120, 32);
    assert!(s.contains("✖ DOWN"), "node-3 is down");
    insta::assert_snapshot!(s);
}

#[test]
fn keys_tab() {
    insta::assert_snapshot!(screen(&on_tab('2'), 120, 20));
}

#[test]
fn keys_search_while_typing_and_kept() {
    let mut app = on_tab('2');
    press(&mut app, KeyCode::Char('/'));
    typed(&mut app, "TREAS");
    let typing = screen(&app, 120, 14);
    assert!(!typing.contains("hot-wallet"), "filtered out");
    insta::assert_snapshot!("keys_search_typing", typing);
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        Some(Action::Search("TREAS".into()))
    );
    insta::assert_snapshot!("keys_search_kept", screen(&app, 120, 14));
}

#[test]
fn key_detail_of_an_ecdsa_key_with_evm_and_bitcoin_addresses() {
    let mut app = on_tab('2');
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Enter);
    assert!(app.key_detail);
    let s = screen(&app, 120, 28);
    assert!(s.contains("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"));
    assert!(s.contains("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"));
    insta::assert_snapshot!(s);
}

#[test]
fn key_detail_of_an_ed25519_key_with_a_solana_address() {
    let mut app = on_tab('2');
    press(&mut app, KeyCode::End);
    press(&mut app, KeyCode::Enter);
    let s = screen(&app, 120, 28);
    assert!(s.contains("4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS"));
    insta::assert_snapshot!(s);
}

#[test]
fn sessions_tab() {
    let s = screen(&on_tab('3'), 120, 24);
    assert!(s.contains("round 2"));
    insta::assert_snapshot!(s);
}

#[test]
fn approvals_tab_with_intent_and_rule_trace() {
    let s = screen(&on_tab('4'), 120, 44);
    assert!(s.contains("2_500_000_000_000 native"));
    assert!(s.contains("max_value"));
    insta::assert_snapshot!(s);
}

#[test]
fn approvals_tab_without_an_approver_key() {
    let mut app = app(None);
    press(&mut app, KeyCode::Char('4'));
    assert_eq!(press(&mut app, KeyCode::Char('a')), None);
    insta::assert_snapshot!(screen(&app, 120, 16));
}

#[test]
fn approve_confirmation_then_result() {
    let mut app = on_tab('4');
    press(&mut app, KeyCode::Char('a'));
    insta::assert_snapshot!("approve_confirmation", screen(&app, 120, 30));
    let action = press(&mut app, KeyCode::Char('y'));
    assert!(matches!(
        action,
        Some(Action::Submit {
            verdict: Verdict::Approve,
            ..
        })
    ));
    app.apply(Update::Submitted {
        verdict: Verdict::Approve,
        request_id: "0123456789abcdef0123456789abcdef".into(),
        result: Ok(Confirmation {
            verdict: Verdict::Approve,
            request_hash: WAITING_HASH.into(),
            verdict_id: "fedcba9876543210fedcba9876543210".into(),
            recorded: vec!["node-1".into(), "node-2".into(), "node-3".into()],
            refused: vec![],
            silent: vec![],
            ignored: 0,
        }),
    });
    let s = screen(&app, 120, 16);
    assert!(
        s.contains("approval of request 0123456789ab… recorded by node-1, node-2, node-3 (3 of 3)")
    );
    insta::assert_snapshot!("approve_published", s);
}

#[test]
fn a_request_whose_listing_does_not_check_out_cannot_be_approved() {
    let mut app = App::new(URL, Some("carol".into()));
    let mut poll = full_poll();
    let mut checked = sign_checked();
    checked.mismatch =
        Some("the intent the node shows is not what the signed payload decodes to".into());
    poll.checks = Some([(WAITING_HASH.to_owned(), Ok(checked))].into());
    app.apply(Update::Polled(Box::new(poll)));
    press(&mut app, KeyCode::Char('4'));
    assert_eq!(press(&mut app, KeyCode::Char('a')), None);
    assert!(app.confirm.is_none());
    let s = screen(&app, 120, 30);
    assert!(
        s.contains("cannot approve: the intent the node shows"),
        "{s}"
    );
    insta::assert_snapshot!(s);
    // What was signed may still be rejected: the box says it from the signed body.
    assert_eq!(press(&mut app, KeyCode::Char('r')), None);
    let confirm = app.confirm.clone().expect("the reject box opens");
    assert!(
        confirm
            .summary
            .starts_with("sign with key treasury-sol (ed25519) (as signed;"),
        "{}",
        confirm.summary
    );
    assert!(
        confirm.transfers.is_empty(),
        "the node's transfers are not shown"
    );
}

#[test]
fn a_request_that_does_not_verify_can_be_neither_approved_nor_rejected() {
    let mut app = App::new(URL, Some("carol".into()));
    let mut poll = full_poll();
    poll.checks = Some(
        [(
            WAITING_HASH.to_owned(),
            Err("the request does not verify under your manifest: bad signature".into()),
        )]
        .into(),
    );
    app.apply(Update::Polled(Box::new(poll)));
    press(&mut app, KeyCode::Char('4'));
    for verdict in ['a', 'r'] {
        assert_eq!(press(&mut app, KeyCode::Char(verdict)), None);
        assert!(app.confirm.is_none());
    }
    let msg = app.message.clone().unwrap();
    assert!(
        msg.starts_with("cannot reject: the request does not verify"),
        "{msg}"
    );
}

#[test]
fn reject_confirmation() {
    let mut app = on_tab('4');
    press(&mut app, KeyCode::Char('r'));
    insta::assert_snapshot!(screen(&app, 100, 24));
}

#[test]
fn policies_tab() {
    insta::assert_snapshot!(screen(&on_tab('5'), 120, 24));
}

#[test]
fn audit_tab_then_a_failed_verification() {
    let mut app = on_tab('6');
    insta::assert_snapshot!("audit_tab", screen(&app, 120, 24));
    press(&mut app, KeyCode::PageUp);
    assert_eq!(
        press(&mut app, KeyCode::Char('v')),
        Some(Action::VerifyAudit)
    );
    let broken: AuditVerification = fixture("audit_verify_broken");
    app.apply(Update::Verified(Ok(broken)));
    let s = screen(&app, 120, 24);
    assert!(s.contains("AUDIT LOG BROKEN at entry 38"));
    insta::assert_snapshot!("audit_verification_failed", s);
}

#[test]
fn help_overlay() {
    let mut app = app(None);
    press(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!(screen(&app, 100, 26));
}

#[test]
fn unreachable_node_keeps_stale_data() {
    let mut app = app(Some("carol"));
    press(&mut app, KeyCode::Char('2'));
    app.apply(Update::Polled(Box::new(Poll {
        at_ms: NOW + 5_000,
        problem: Some(Problem {
            kind: ProblemKind::Unreachable,
            message: format!("node API at {URL} unreachable: Connection refused (os error 111)"),
        }),
        ..Poll::default()
    })));
    let s = screen(&app, 120, 14);
    assert!(s.contains("STALE"));
    assert!(s.contains("treasury-eth"), "the last data stays");
    insta::assert_snapshot!(s);
}

#[test]
fn bad_token_with_no_data() {
    let mut app = App::new(URL, None);
    app.apply(Update::Polled(Box::new(Poll {
        at_ms: NOW,
        problem: Some(Problem {
            kind: ProblemKind::Unauthorized,
            message: "the node refused the API token (401): check --token-file".into(),
        }),
        ..Poll::default()
    })));
    assert_eq!(app.tab, Tab::Cluster);
    insta::assert_snapshot!(screen(&app, 100, 16));
}

#[test]
fn small_terminal_says_so() {
    let app = app(None);
    let s = screen(&app, 40, 10);
    assert!(s.contains("terminal too small"));
    insta::assert_snapshot!(s);
}

#[test]
fn resize_redraws_for_the_new_size() {
    let app = on_tab('4');
    let mut terminal = Terminal::new(TestBackend::new(120, 30)).unwrap();
    terminal.draw(|f| ui::draw(f, &app)).unwrap();
    terminal.backend_mut().resize(64, 16);
    terminal.autoresize().unwrap();
    terminal.draw(|f| ui::draw(f, &app)).unwrap();
    insta::assert_snapshot!(terminal.backend().to_string());
}

/// Every size from 1x1 up draws without panicking, on every tab and overlay.
#[test]
fn any_size_draws() {
    let mut app = app(Some("carol"));
    for tab in ['1', '2', '3', '4', '5', '6'] {
        press(&mut app, KeyCode::Char(tab));
        for (w, h) in [
            (1, 1),
            (20, 5),
            (59, 30),
            (60, 12),
            (61, 13),
            (80, 14),
            (200, 60),
        ] {
            screen(&app, w, h);
        }
    }
    press(&mut app, KeyCode::Char('a'));
    screen(&app, 60, 12);
    press(&mut app, KeyCode::Esc);
    press(&mut app, KeyCode::Char('?'));
    screen(&app, 60, 12);
}
