//! Spending limits through the real server: exact under concurrency, durable
//! across SIGKILL, retries never counted twice, a drain stopped at the cap,
//! voiding a hold, and a damaged store refusing to start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::*;
use tss_gate::protocol::{Action, CallbackRequest, CallbackResponse};

const USDT_FIXTURE: &str = "tests/fixtures/integrity_eip1559_eth_usdt_approve.json";
/// The fixture's amount: each approval adds exactly this.
const USDT_AMOUNT: &str = "9999.99";

fn policy_with(ws: &Workspace, limits: &str) -> PathBuf {
    policy_with_limits(ws, Some(limits))
}

fn usdt_limit(max: &str) -> String {
    format!(
        "- id: usdt_wallet_24h\n  match: {{token_ids: [ETH_USDT]}}\n  group_by: [wallet, token]\n  window: 24h\n  max_amount: \"{max}\"\n"
    )
}

fn usdt_request(id: &str) -> CallbackRequest {
    let mut r = tss_gate::fixture::load_request(&repo().join(USDT_FIXTURE)).expect("fixture");
    r.request_id = id.to_owned();
    r
}

fn approved(a: &CallbackResponse) -> bool {
    a.status.code() == 0 && a.action == Some(Action::Approve)
}

fn rejected_by_velocity(a: &CallbackResponse) -> bool {
    a.status.code() == 0 && a.action == Some(Action::Reject) && a.error.contains("usdt_wallet_24h")
}

/// `amount * n` as a decimal string.
fn times(n: u64) -> String {
    let a = tss_gate::velocity::Amount::parse(USDT_AMOUNT).unwrap();
    let mut sum = tss_gate::velocity::Amount::ZERO;
    for _ in 0..n {
        sum = sum.checked_add(a).unwrap();
    }
    sum.to_string()
}

/// Runs `tss-gate ARGS... --config CONFIG`: (exit code, stdout, stderr).
fn run(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tss-gate"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run tss-gate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ledger(config: &Path, args: &[&str]) -> (i32, String, String) {
    run(config, &[&["ledger"], args].concat())
}

fn ledger_json(config: &Path) -> serde_json::Value {
    let (code, out, err) = ledger(config, &["show", "--json", "--entries"]);
    assert_eq!(code, 0, "ledger show failed: {err}");
    serde_json::from_str(&out).expect("ledger show --json")
}

#[test]
fn sixty_four_concurrent_requests_approve_exactly_as_many_as_fit() {
    let ws = Workspace::new();
    // Ten fit; 64 arrive at once.
    let policy = policy_with(&ws, &usdt_limit(&times(10)));
    let cfg = ws.config_with_policy(&policy, "");
    let server = Arc::new(Server::start(&cfg));
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let s = server.clone();
            std::thread::spawn(move || send(&s, &usdt_request(&format!("conc-{i}"))))
        })
        .collect();
    let answers: Vec<CallbackResponse> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = answers.iter().filter(|a| approved(a)).count();
    let stopped = answers.iter().filter(|a| rejected_by_velocity(a)).count();
    assert_eq!(ok, 10, "exactly the ten that fit: {answers:#?}");
    assert_eq!(stopped, 54, "every other one is stopped by the limit");
    let msg = &answers
        .iter()
        .find(|a| rejected_by_velocity(a))
        .unwrap()
        .error;
    assert!(
        msg.contains(&times(10)) && msg.contains("24h"),
        "the message names used amount and window: {msg}"
    );
    let l = ledger_json(&cfg);
    assert_eq!(l["groups"][0]["used_count"], 10);
    assert_eq!(l["groups"][0]["used_amount"], times(10));
    assert_eq!(l["entries"].as_array().unwrap().len(), 10);
}

#[test]
fn sigkill_keeps_every_answered_approval_and_retries_get_the_same_answer() {
    let ws = Workspace::new();
    let policy = policy_with(&ws, &usdt_limit(&times(10)));
    let cfg = ws.config_with_policy(&policy, "");
    let mut server = Server::start(&cfg);
    for i in 0..7 {
        assert!(approved(&send(&server, &usdt_request(&format!("k-{i}")))));
    }
    // SIGKILL: no shutdown path runs.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let l = ledger_json(&cfg);
    assert_eq!(
        l["groups"][0]["used_count"], 7,
        "seven answered approvals, seven rows"
    );
    drop(server);

    let server = Server::start(&cfg);
    // A retry (fresh token, same request) is answered as before and not counted.
    let again = send(&server, &usdt_request("k-3"));
    assert!(approved(&again), "{again:?}");
    assert_eq!(ledger_json(&cfg)["groups"][0]["used_count"], 7);
    // The same id with another payload stays a REJECT.
    let mut other = usdt_request("k-3");
    other.extra_info = other
        .extra_info
        .replace("Ops hot wallet", "Ops hot wallet 2");
    let answer = send(&server, &other);
    assert_eq!(answer.action, Some(Action::Reject), "{answer:?}");
    assert!(answer.error.contains("different payload"), "{answer:?}");
    // So does a payload no limit matches (a PING, or a transfer of another
    // token) under that id: the store's record is the only one after a restart.
    let mut ping =
        tss_gate::fixture::load_request(&repo().join("tests/fixtures/ping_approve.json"))
            .expect("fixture");
    ping.request_id = "k-3".into();
    let mut eth =
        tss_gate::fixture::load_request(&repo().join("tests/fixtures/keysign_eth_approve.json"))
            .expect("fixture");
    eth.request_id = "k-4".into();
    for reused in [ping, eth] {
        let answer = send(&server, &reused);
        assert_eq!(answer.action, Some(Action::Reject), "{answer:?}");
        assert!(answer.error.contains("different payload"), "{answer:?}");
    }
    // Three more fit, the fourth does not.
    for i in 7..10 {
        assert!(approved(&send(&server, &usdt_request(&format!("k-{i}")))));
    }
    let over = send(&server, &usdt_request("k-10"));
    assert!(rejected_by_velocity(&over), "{over:?}");
    // Its retry is the same REJECT even after a hold is released.
    let (code, _, err) = ledger(&cfg, &["void", "k-0", "--reason", "node gave up"]);
    assert_eq!(code, 0, "{err}");
    let retry = send(&server, &usdt_request("k-10"));
    assert_eq!(retry, over, "a retry gets the identical answer");
    // A new request fits in the released room.
    assert!(approved(&send(&server, &usdt_request("k-11"))));
    assert!(rejected_by_velocity(&send(&server, &usdt_request("k-12"))));
}

#[test]
fn a_drain_of_a_thousand_sub_cap_transfers_stops_exactly_at_the_cap() {
    let ws = Workspace::new();
    let cap = 500;
    let policy = policy_with(&ws, &usdt_limit(&times(cap)));
    let cfg = ws.config_with_policy(&policy, "decision_log:\n  path: decisions.log\n");
    let server = Arc::new(Server::start(&cfg));
    let threads = 8;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let s = server.clone();
            std::thread::spawn(move || {
                (0..1000 / threads)
                    .map(|i| send(&s, &usdt_request(&format!("drain-{t}-{i}"))))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let answers: Vec<CallbackResponse> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(answers.len(), 1000);
    let ok = answers.iter().filter(|a| approved(a)).count();
    let stopped = answers.iter().filter(|a| rejected_by_velocity(a)).count();
    assert_eq!((ok, stopped), (cap as usize, 1000 - cap as usize));
    let l = ledger_json(&cfg);
    assert_eq!(l["groups"][0]["used_amount"], times(cap));
    assert_eq!(l["groups"][0]["used_count"], cap);
    // Under this concurrent load the log holds its lines for the ledger's
    // group commit: every answer still has its line, with its action.
    let log = std::fs::read_to_string(ws.path().join("decisions.log")).unwrap();
    let lines: std::collections::HashMap<String, serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|l| (l["request_id"].as_str().unwrap().to_owned(), l))
        .collect();
    assert_eq!(lines.len(), 1000, "one line per decision");
    for a in &answers {
        let want = if approved(a) { "APPROVE" } else { "REJECT" };
        assert_eq!(lines[&a.request_id]["action"], want, "{}", a.request_id);
    }
    // The release of an approval that never executed is a decision-log line.
    let held = answers.iter().find(|a| approved(a)).unwrap();
    let id = held.request_id.as_str();
    let (code, out, err) = ledger(&cfg, &["void", id, "--reason", "never broadcast"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("released 1 hold"), "{out}");
    let log = std::fs::read_to_string(ws.path().join("decisions.log")).unwrap();
    let line: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|l: &serde_json::Value| l["event"] == "ledger_void")
        .expect("void line");
    assert_eq!(line["request_id"], id);
    assert_eq!(line["reasons"][0], "never broadcast");
    assert_eq!(line["released"][0]["amount"], USDT_AMOUNT);
    // Voiding it again releases nothing.
    let (code, _, err) = ledger(&cfg, &["void", id, "--reason", "again"]);
    assert_eq!(code, 1);
    assert!(err.contains("holds nothing"), "{err}");
    assert_eq!(ledger_json(&cfg)["groups"][0]["used_count"], cap - 1);
}

#[test]
fn a_damaged_store_or_a_second_process_refuses_to_start() {
    let ws = Workspace::new();
    let cfg = ws.config("state:\n  sqlite:\n    path: st/ledger.sqlite\n");
    std::fs::create_dir_all(ws.path().join("st")).unwrap();
    std::fs::write(ws.path().join("st/ledger.sqlite"), vec![0x5a; 8192]).unwrap();
    let (code, _, err) = run(&cfg, &["serve"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("ledger.sqlite") && err.contains("state store"),
        "{err}"
    );

    std::fs::remove_file(ws.path().join("st/ledger.sqlite")).unwrap();
    let _first = Server::start(&cfg);
    let meta = std::fs::metadata(ws.path().join("st/ledger.sqlite")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "the store is private"
    );
    for side in ["st/ledger.sqlite-wal", "st/ledger.lock"] {
        let mode = std::fs::metadata(ws.path().join(side))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{side} is private");
    }
    let (code, _, err) = run(&cfg, &["serve"]);
    assert_ne!(code, 0);
    assert!(err.contains("another tss-gate process"), "{err}");
}

#[test]
fn a_bad_limit_is_refused_naming_file_line_limit_and_reason() {
    let ws = Workspace::new();
    let policy = policy_with(
        &ws,
        "- id: fine\n  group_by: [wallet]\n  window: 1h\n  max_count: 5\n- id: drain_guard\n  group_by: [wallet]\n  window: 1h\n  max_amount: \"100\"\n",
    );
    let cfg = ws.config_with_policy(&policy, "");
    let (code, out, err) = run(&cfg, &["check"]);
    assert_eq!(code, 1);
    let err = err + &out;
    let data = policy.join("data.yaml");
    let text = std::fs::read_to_string(&data).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("id: drain_guard"))
        .unwrap()
        + 1;
    assert!(err.contains(&data.display().to_string()), "{err}");
    assert!(err.contains(&format!("line {line}")), "{err}");
    assert!(err.contains("velocity.limits.drain_guard"), "{err}");
    assert!(err.contains("one token's units"), "{err}");
}
