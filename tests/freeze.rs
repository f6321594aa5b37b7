//! The emergency stop on a live server with the default policy settings
//! (the reload gate on: `require_passing_tests` unset): `tss-gate freeze on`
//! rejects KEYSIGN at once, retries of approved requests included, without a
//! reload; `off` lifts it; `--all` stops the other task types; a server
//! started while frozen is frozen from its first request; the state is
//! exported as `tss_gate_frozen` and written to the decision log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tss_gate::protocol::{Action, CallbackRequest};

/// The shipped policy under the default reload gate (the tests and
/// fixtures must pass), with a decision log.
fn default_config(ws: &Workspace) -> std::path::PathBuf {
    let kd = ws.path().join("keys");
    let text = format!(
        "callback_server:\n  service_name: tss-gate-test\n  endpoint: \"127.0.0.1:0\"\n  token_expire_minutes: 2\n  service_private_key_path: {}\n  tss_node_keys:\n    - name: node-a\n      path: {}\npolicy:\n  dir: {}\n  fixtures: {}\ndecision_log:\n  path: {}\n",
        kd.join("callback-server.pem").display(),
        kd.join("node-a.pub.pem").display(),
        repo().join("rego").display(),
        repo().join("tests/fixtures").display(),
        ws.path().join("decisions.log").display(),
    );
    let p = ws.path().join("tss-gate.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn request(fixture: &str, id: &str) -> CallbackRequest {
    let mut r =
        tss_gate::fixture::load_request(&repo().join("tests/fixtures").join(fixture)).unwrap();
    r.request_id = id.into();
    r
}

fn freeze(config: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tss-gate"))
        .arg("freeze")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "freeze {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn metrics(server: &Server) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::get(server.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

/// Sends fresh KEYSIGNs until one gets `want` (the server reads the switch
/// every 100 ms); returns the answer and how long it took.
fn until(
    server: &Server,
    want: Action,
    tag: &str,
) -> (tss_gate::protocol::CallbackResponse, Duration) {
    let started = Instant::now();
    for i in 0.. {
        let a = send(
            server,
            &request("keysign_eth_approve.json", &format!("{tag}-{i}")),
        );
        if a.action == Some(want) {
            return (a, started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no {want:?} after 5 s: {a:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    unreachable!()
}

#[test]
fn freeze_stops_keysign_at_once_on_a_live_server_and_thaws() {
    let ws = Workspace::new();
    let cfg = default_config(&ws);
    let server = Server::start(&cfg);

    let approved = request("keysign_eth_approve.json", "before-freeze");
    assert_eq!(send(&server, &approved).action, Some(Action::Approve));
    assert!(metrics(&server).contains("tss_gate_frozen{request_type=\"KEYSIGN\"} 0"));

    let out = freeze(&cfg, &["on", "--reason", "incident 9: key rotation"]);
    assert!(out.contains("frozen: every KEYSIGN is rejected"), "{out}");
    let (a, took) = until(&server, Action::Reject, "frozen");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(a.status.code(), 0);
    assert!(
        a.error
            .contains("KEYSIGN is rejected: every KEYSIGN is frozen by `tss-gate freeze` since ")
            && a.error.contains("(reason: incident 9: key rotation)"),
        "{}",
        a.error
    );
    // A retry of what was approved before the freeze is not replayed.
    let retry = send(&server, &approved);
    assert_eq!(retry.action, Some(Action::Reject), "{retry:?}");
    assert!(retry.error.contains("frozen"), "{}", retry.error);
    // Other kinds are decided by the policy as before.
    let keygen = send(&server, &request("keygen_allowed_approve.json", "keygen-1"));
    assert_eq!(keygen.action, Some(Action::Approve), "{keygen:?}");

    let m = metrics(&server);
    assert!(
        m.contains("tss_gate_frozen{request_type=\"KEYSIGN\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("tss_gate_frozen{request_type=\"KEYGEN\"} 0"),
        "{m}"
    );
    let status = freeze(&cfg, &["status", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(s["frozen"], true);
    assert_eq!(s["freeze"]["scope"], "keysign");
    assert_eq!(s["freeze"]["reason"], "incident 9: key rotation");
    assert!(server.logs().contains("FROZEN"), "{}", server.logs());

    freeze(&cfg, &["off"]);
    let (a, took) = until(&server, Action::Approve, "thawed");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(a.error.is_empty());
    // The earlier approval's retry is its own answer again.
    assert_eq!(send(&server, &approved).action, Some(Action::Approve));
    assert!(metrics(&server).contains("tss_gate_frozen{request_type=\"KEYSIGN\"} 0"));

    // --all stops KEYGEN too, but not PING.
    freeze(&cfg, &["on", "--all"]);
    until(&server, Action::Reject, "all");
    let keygen = send(&server, &request("keygen_allowed_approve.json", "keygen-2"));
    assert_eq!(keygen.action, Some(Action::Reject), "{keygen:?}");
    assert!(
        keygen
            .error
            .contains("KEYGEN is rejected: every task but PING is frozen"),
        "{}",
        keygen.error
    );
    let ping = send(&server, &request("ping_approve.json", "ping-1"));
    assert_eq!(ping.action, Some(Action::Approve), "{ping:?}");

    // Every change is in the decision log, and each frozen answer is a
    // logged decision with the freeze's code.
    let log = std::fs::read_to_string(ws.path().join("decisions.log")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["event"].as_str())
        .filter(|e| e.starts_with("freeze"))
        .collect();
    assert_eq!(events, ["freeze_on", "freeze_off", "freeze_on"], "{log}");
    assert!(
        lines
            .iter()
            .any(|l| l["request_id"] == "before-freeze" && l.to_string().contains("gate.frozen")),
        "{log}"
    );
}

#[test]
fn a_server_started_while_frozen_rejects_its_first_keysign() {
    let ws = Workspace::new();
    let cfg = default_config(&ws);
    // No server has run: the command creates the store.
    freeze(&cfg, &["on", "--reason", "before start"]);
    let server = Server::start(&cfg);
    let a = send(&server, &request("keysign_eth_approve.json", "first"));
    assert_eq!(a.action, Some(Action::Reject), "{a:?}");
    assert!(a.error.contains("(reason: before start)"), "{}", a.error);
    assert!(metrics(&server).contains("tss_gate_frozen{request_type=\"KEYSIGN\"} 1"));
    drop(server);
    freeze(&cfg, &["off"]);
    let server = Server::start(&cfg);
    assert_eq!(
        send(&server, &request("keysign_eth_approve.json", "second")).action,
        Some(Action::Approve)
    );
}

#[test]
fn a_damaged_switch_freezes_every_task() {
    let ws = Workspace::new();
    let cfg = default_config(&ws);
    freeze(&cfg, &["on"]);
    let db = ws.path().join("state/tss-gate.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE controls SET value = '{\"scope\":\"nothing\"}' WHERE key = 'freeze'",
        [],
    )
    .unwrap();
    drop(conn);
    let server = Server::start(&cfg);
    let a = send(&server, &request("keygen_allowed_approve.json", "kg"));
    assert_eq!(a.action, Some(Action::Reject), "{a:?}");
    assert!(a.error.contains("cannot be read"), "{}", a.error);
    let status = freeze(&cfg, &["status"]);
    assert!(status.contains("scope all"), "{status}");
}

/// The policy's own freeze (`freeze.keysign: true` in the data) is a
/// tighter policy: under the default reload gate it must load, though the
/// shipped approving fixtures now get REJECT (a freeze only adds REJECTs).
#[test]
fn the_data_freeze_passes_the_reload_gate() {
    let ws = Workspace::new();
    let rego = ws.path().join("rego");
    copy_tree(&repo().join("rego"), &rego);
    let cfg = default_config(&ws);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &repo().join("rego").display().to_string(),
        &rego.display().to_string(),
    );
    std::fs::write(&cfg, text).unwrap();
    let server = Server::start(&cfg);
    assert_eq!(
        send(&server, &request("keysign_eth_approve.json", "d-0")).action,
        Some(Action::Approve)
    );

    let data = rego.join("data.yaml");
    let before = std::fs::read_to_string(&data).unwrap();
    let frozen = before.replace(
        "freeze:\n  keysign: false\n",
        "freeze:\n  keysign: true\n  reason: \"drill\"\n",
    );
    assert_ne!(before, frozen, "the shipped data has the switch");
    std::fs::write(&data, frozen).unwrap();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    let started = Instant::now();
    loop {
        let a = send(
            &server,
            &request(
                "keysign_eth_approve.json",
                &format!("d-{}", started.elapsed().as_millis()),
            ),
        );
        if a.action == Some(Action::Reject) {
            assert!(
                a.error
                    .contains("data.freeze.keysign is true (reason: drill)"),
                "{}",
                a.error
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the frozen data was not loaded:\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!server.logs().contains("refused"), "{}", server.logs());
}
