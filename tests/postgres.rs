//! Several instances on one PostgreSQL (issue 15), against a real
//! throwaway cluster each test starts itself: two instances never exceed a
//! cap together, a retry sent to the other instance gets the identical
//! answer, SIGKILL of one instance under load loses no committed approval
//! while the other keeps serving, and a stopped database gives only signed
//! status-30 answers until it is back, without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/node_events.rs"]
mod node_events;
#[path = "common/pg.rs"]
mod pg;
mod resil;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use pg::PgCluster;
use resil::metric;
use tss_gate::protocol::{Action, CallbackRequest, CallbackResponse, Status};

const USDT_FIXTURE: &str = "tests/fixtures/integrity_eip1559_eth_usdt_approve.json";
const USDT_AMOUNT: &str = "9999.99";

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

/// `USDT_AMOUNT * n` as a decimal string.
fn times(n: u64) -> String {
    let a = tss_gate::velocity::Amount::parse(USDT_AMOUNT).unwrap();
    let mut sum = tss_gate::velocity::Amount::ZERO;
    for _ in 0..n {
        sum = sum.checked_add(a).unwrap();
    }
    sum.to_string()
}

fn approved(a: &CallbackResponse) -> bool {
    a.status == Status::Ok && a.action == Some(Action::Approve)
}

fn rejected_by_limit(a: &CallbackResponse) -> bool {
    a.status == Status::Ok
        && a.action == Some(Action::Reject)
        && a.error.contains("usdt_wallet_24h")
}

/// Two configs (`a.yaml`, `b.yaml`) for instances sharing `db`, each with
/// its own log; the password is in a 0600 file, never in the config.
fn two_configs(ws: &Workspace, db: &PgCluster, max: &str, extra: &str) -> (PathBuf, PathBuf) {
    let policy = policy_with_limits(ws, Some(&usdt_limit(max)));
    let secret = ws.path().join("pg-password");
    std::fs::write(&secret, format!("{}\n", db.password())).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let cfg = ws.config_with_policy(
        &policy,
        &format!(
            "state:\n  backend: postgres\n  postgres:\n    url: {}\n    password_file: {}\n    connect_timeout_ms: 1000\n    statement_timeout_ms: 2000\n{extra}",
            db.url(),
            secret.display()
        ),
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(!text.contains(&db.password()), "no password in the config");
    let a = ws.path().join("a.yaml");
    let b = ws.path().join("b.yaml");
    std::fs::write(&a, &text).unwrap();
    std::fs::write(&b, &text).unwrap();
    (a, b)
}

/// Posts a token on a fresh connection: (HTTP status, body), or None when
/// the server is gone (killed under load).
fn post_token_lenient(url: &str, token: &str) -> (Option<u16>, String) {
    use std::io::{Read, Write};
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let body = serde_urlencoded::to_string([("TSS_JWT_MSG", token)]).unwrap();
    let Ok(mut s) = std::net::TcpStream::connect(&addr) else {
        return (None, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let req = format!(
        "POST /v2/check HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (None, String::new());
    }
    let mut out = Vec::new();
    if s.read_to_end(&mut out).is_err() {
        return (None, String::new());
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

fn ledger_json(config: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_tss-gate"))
        .args(["ledger", "show", "--json", "--entries", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn two_instances_with_64_concurrent_requests_never_exceed_a_cap() {
    let db = PgCluster::start();
    let ws = Workspace::new();
    let (a, b) = two_configs(&ws, &db, &times(10), "");
    let servers = [Arc::new(Server::start(&a)), Arc::new(Server::start(&b))];
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let s = servers[i % 2].clone();
            std::thread::spawn(move || send(&s, &usdt_request(&format!("two-{i}"))))
        })
        .collect();
    let answers: Vec<CallbackResponse> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = answers.iter().filter(|a| approved(a)).count();
    let stopped = answers.iter().filter(|a| rejected_by_limit(a)).count();
    assert_eq!(
        ok, 10,
        "exactly the ten that fit, across both: {answers:#?}"
    );
    assert_eq!(stopped, 54, "{answers:#?}");
    let l = ledger_json(&a);
    assert_eq!(l["groups"][0]["used_count"], 10, "{l:#}");
    assert_eq!(l["groups"][0]["used_amount"], times(10), "{l:#}");
}

#[test]
fn a_retry_sent_to_the_other_instance_gets_the_identical_answer() {
    let db = PgCluster::start();
    let ws = Workspace::new();
    let (a, b) = two_configs(&ws, &db, &times(2), "");
    let sa = Server::start(&a);
    let sb = Server::start(&b);
    let first = send(&sa, &usdt_request("r-1"));
    assert!(approved(&first), "{first:?}");
    assert_eq!(send(&sb, &usdt_request("r-1")), first, "the retry on B");
    assert!(approved(&send(&sb, &usdt_request("r-2"))));
    let over = send(&sa, &usdt_request("r-3"));
    assert!(rejected_by_limit(&over), "{over:?}");
    assert_eq!(
        send(&sb, &usdt_request("r-3")),
        over,
        "a REJECT is repeated too"
    );
    // The same id with another payload, on the other instance: refused.
    let mut other = usdt_request("r-1");
    other.extra_info = other
        .extra_info
        .replace("Ops hot wallet", "Ops hot wallet 2");
    let answer = send(&sb, &other);
    assert_eq!(answer.action, Some(Action::Reject), "{answer:?}");
    assert!(answer.error.contains("different payload"), "{answer:?}");
    // Counted once each.
    assert_eq!(ledger_json(&b)["groups"][0]["used_count"], 2);
}

#[test]
fn sigkill_of_one_instance_under_load_loses_no_committed_approval() {
    let db = PgCluster::start();
    let ws = Workspace::new();
    // Room for every request: each approval must be in the ledger.
    let (a, b) = two_configs(&ws, &db, &times(100_000), "");
    let mut sa = Server::start(&a);
    let sb = Arc::new(Server::start(&b));
    let url_a = sa.check_url();
    let stop = Arc::new(AtomicBool::new(false));
    // Approvals A has answered so far: it is killed under load, not before.
    let on_a = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Load on A from four threads, until it dies.
    let loaders: Vec<_> = (0..4)
        .map(|t| {
            let (stop, url, on_a) = (stop.clone(), url_a.clone(), on_a.clone());
            std::thread::spawn(move || {
                let mut approved_ids = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let req = usdt_request(&format!("kill-{t}-{i}"));
                    i += 1;
                    let (status, body) = post_token_lenient(&url, &mint(&req, &test_keys().node));
                    if status == Some(200) {
                        let a = verify_answer(&body);
                        if approved(&a) {
                            approved_ids.push(req.request_id);
                            on_a.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                approved_ids
            })
        })
        .collect();
    // And on B, which must keep approving through A's death.
    let b_load: Vec<_> = (0..2)
        .map(|t| {
            let (stop, sb) = (stop.clone(), sb.clone());
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    answers.push(send(&sb, &usdt_request(&format!("b-{t}-{i}"))));
                    i += 1;
                }
                answers
            })
        })
        .collect();
    // A busy machine answers slower: wait for load to be running (at
    // least 1.5 s, and until A has answered a few approvals).
    let t0 = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    while on_a.load(Ordering::Relaxed) < 10 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    sa.child.kill().unwrap();
    sa.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let b_answers: Vec<CallbackResponse> =
        b_load.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert!(b_answers.len() > 2, "B was under load");
    assert!(
        b_answers.iter().all(approved),
        "B kept approving: {:?}",
        b_answers.iter().find(|a| !approved(a))
    );
    let answered: Vec<String> = loaders
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(answered.len() > 5, "load ran: {}", answered.len());
    // Every approval A answered is committed.
    let l = ledger_json(&b);
    let held: std::collections::BTreeSet<String> = l["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request_id"].as_str().unwrap().to_owned())
        .collect();
    let lost: Vec<&String> = answered.iter().filter(|id| !held.contains(*id)).collect();
    assert!(lost.is_empty(), "approved but not committed: {lost:?}");
    // B keeps serving, and sees A's approvals.
    let after = send(&sb, &usdt_request("after-kill"));
    assert!(approved(&after), "{after:?}");
    let retry = send(&sb, &usdt_request(&answered[0]));
    assert!(approved(&retry), "A's approval is repeated by B: {retry:?}");
}

#[test]
fn a_stopped_database_gives_signed_status_30_and_service_resumes_when_it_is_back() {
    let db = PgCluster::start();
    let ws = Workspace::new();
    let (a, _) = two_configs(&ws, &db, &times(100_000), "");
    let server = Arc::new(Server::start(&a));
    assert!(approved(&send(&server, &usdt_request("up-1"))));
    // Load across the stop: four threads sending until told to stop, each
    // answer (signature verified by `send`) kept with when it was sent.
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|t| {
            let (stop, server) = (stop.clone(), server.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let a = send(&server, &usdt_request(&format!("load-{t}-{i}")));
                    seen.push((sent, sent.elapsed(), a));
                    i += 1;
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    db.stop();
    let stopped = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<(Instant, Duration, CallbackResponse)> = loaders
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let after: Vec<&(Instant, Duration, CallbackResponse)> =
        seen.iter().filter(|(sent, _, _)| *sent > stopped).collect();
    assert!(after.len() >= 4, "load went on while down: {}", after.len());
    for (_, took, a) in &after {
        assert_eq!(
            a.status,
            Status::InternalError,
            "only status 30 while down: {a:?}"
        );
        assert!(a.action != Some(Action::Approve));
        assert!(
            *took < Duration::from_secs(5),
            "within the deadline: {took:?}"
        );
    }
    let approved_ids: Vec<String> = seen
        .iter()
        .filter(|(_, _, a)| approved(a))
        .map(|(_, _, a)| a.request_id.clone())
        .collect();
    assert!(!approved_ids.is_empty(), "the load ran before the stop");
    let logs = server.logs();
    assert!(
        logs.contains("spending-limit store"),
        "a clear log line: {logs}"
    );
    let errors = metric(&server, "tss_gate_store_errors_total{op=\"decide\"}").unwrap_or(0.0);
    assert!(errors >= after.len() as f64, "counted: {errors}");
    let failures =
        metric(&server, "tss_gate_request_failures_total{reason=\"store\"}").unwrap_or(0.0);
    assert!(failures >= after.len() as f64, "{failures}");

    db.start_again();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0;
    loop {
        let a = send(&server, &usdt_request(&format!("back-{i}")));
        i += 1;
        if approved(&a) {
            break;
        }
        assert_eq!(a.status, Status::InternalError, "{a:?}");
        assert!(Instant::now() < deadline, "service did not resume");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Exactly the approvals answered are in the ledger: none lost, and
    // nothing of the status-30 ones.
    let l = ledger_json(&a);
    let ids: Vec<&str> = l["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"up-1"));
    for id in &approved_ids {
        assert!(
            ids.contains(&id.as_str()),
            "approved but not in the ledger: {id}"
        );
    }
    // Anything else is a hold whose request was answered with status 30
    // (the database went away between holding and answering): it errs
    // towards rejecting, and a retry of that request releases it.
    let failed_ids: Vec<String> = seen
        .iter()
        .filter(|(_, _, a)| a.status == Status::InternalError)
        .map(|(_, _, a)| a.request_id.clone())
        .collect();
    let orphans: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| id.starts_with("load-") && !approved_ids.iter().any(|a| a == id))
        .collect();
    for id in &orphans {
        assert!(
            failed_ids.iter().any(|f| f == id),
            "a hold nobody was answered for: {id}"
        );
    }
    if let Some(id) = orphans.first() {
        let again = send(&server, &usdt_request(id));
        assert!(approved(&again), "the retry is decided anew: {again:?}");
        let l = ledger_json(&a);
        let rows = l["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["request_id"] == *id)
            .count();
        assert_eq!(rows, 1, "its old hold was released, not doubled");
    }
}

#[test]
fn the_password_never_sits_in_the_config_and_a_newer_schema_is_refused() {
    let db = PgCluster::start();
    let ws = Workspace::new();
    let (a, _) = two_configs(&ws, &db, &times(1), "");
    // A URL with the password in it is refused, without echoing it.
    let text = std::fs::read_to_string(&a).unwrap();
    let with_pw = text.replace(
        &db.url(),
        &db.url()
            .replace("tss_gate@", &format!("tss_gate:{}@", db.password())),
    );
    let bad = ws.path().join("bad.yaml");
    std::fs::write(&bad, with_pw).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tss-gate"))
        .args(["ledger", "show", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("password_env") && !err.contains(&db.password()),
        "{err}"
    );

    // Schema applied on first start; a newer one refuses the start.
    drop(Server::start(&a));
    db.psql("UPDATE tss_gate_meta SET value = 99 WHERE key = 'schema'");
    let out = Command::new(env!("CARGO_BIN_EXE_tss-gate"))
        .args(["serve", "--config"])
        .arg(&a)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("schema version 99 is newer"), "{err}");
}

#[test]
fn events_on_either_instance_move_the_shared_holds_and_a_version_1_database_migrates() {
    let db = PgCluster::start();
    let ws = Workspace::new();
    let (a, b) = two_configs(&ws, &db, &times(1), &node_events::events_section(&ws));
    // A database of schema 1 (before events): started once, then taken back.
    drop(Server::start(&a));
    db.psql(
        "ALTER TABLE tss_gate_ledger DROP COLUMN void_source; DROP TABLE tss_gate_approvals; \
         DROP TABLE tss_gate_events; UPDATE tss_gate_meta SET value = 1 WHERE key = 'schema'",
    );
    let sa = Server::start(&a);
    let sb = Server::start(&b);
    let key = node_events::event_key();

    assert!(approved(&send(&sa, &usdt_request("ev-1"))));
    assert!(rejected_by_limit(&send(&sb, &usdt_request("ev-2"))));
    // The task failed: B hears it, and A's approval's hold is released.
    let failed = node_events::event(
        "pg-e1",
        "request.keysign.failed",
        "ev-1",
        170,
        serde_json::Value::Null,
    );
    node_events::accepted(node_events::post_event(&sb, &failed, key));
    // Delivered again, to the other instance: a duplicate.
    node_events::accepted(node_events::post_event(&sa, &failed, key));
    assert!(
        approved(&send(&sa, &usdt_request("ev-3"))),
        "the released hold makes room"
    );
    // Completed (reported to A), then a late failure (to B): the hold stays.
    let done = node_events::event(
        "pg-e2",
        "request.keysign.updated",
        "ev-3",
        190,
        serde_json::Value::Null,
    );
    node_events::accepted(node_events::post_event(&sa, &done, key));
    let late = node_events::event(
        "pg-e3",
        "request.keysign.failed",
        "ev-3",
        170,
        serde_json::Value::Null,
    );
    node_events::accepted(node_events::post_event(&sb, &late, key));
    assert!(rejected_by_limit(&send(&sb, &usdt_request("ev-4"))));

    let l = ledger_json(&a);
    let task = |id: &str| {
        l["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["request_id"] == id)
            .map(|e| e["task"]["state"].clone())
            .unwrap_or_default()
    };
    assert_eq!(task("ev-1"), "released", "{l:#}");
    assert_eq!(task("ev-3"), "executed", "{l:#}");
    assert_eq!(l["groups"][0]["used_count"], 1, "{l:#}");
    let stored = db.psql("SELECT count(*) FROM tss_gate_events");
    assert_eq!(stored.trim(), "3", "three events, the duplicate once");
    // The text form names each hold's task state next to it, and one
    // request's view finds its task too.
    let out = Command::new(env!("CARGO_BIN_EXE_tss-gate"))
        .args(["ledger", "show", "--entries", "--config"])
        .arg(&b)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |id: &str| {
        text.lines()
            .find(|l| l.contains(&format!(" {id} ")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line("ev-1").contains("task released"), "{text}");
    assert!(line("ev-1").contains("pg-e1"), "{text}");
    assert!(line("ev-3").contains("held, task executed"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_tss-gate"))
        .args(["ledger", "show", "--json", "--request", "ev-3", "--config"])
        .arg(&b)
        .output()
        .unwrap();
    let one: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(one["entries"][0]["task"]["state"], "executed", "{one:#}");
    assert_eq!(one["entries"].as_array().map(Vec::len), Some(1), "{one:#}");
}

mod store_level {
    //! The store itself, two pools on one database as two instances have:
    //! approvals, events and task transitions against `decide`'s usage.

    use super::*;
    use tss_gate::store::{
        ApprovalRecord, DecideRequest, GroupRef, Outcome, PostgresStore, Store, StoredEvent,
        TaskState, Verdict,
    };
    use tss_gate::velocity::{Amount, Row, Usage};

    fn open(ws: &Workspace, db: &PgCluster) -> PostgresStore {
        let secret = ws.path().join("store-pg-password");
        std::fs::write(&secret, format!("{}\n", db.password())).unwrap();
        PostgresStore::open_with(
            &tss_gate::config::PostgresSection {
                url: db.url(),
                password_file: Some(secret),
                pool_size: 4,
                connect_timeout_ms: 5_000,
                statement_timeout_ms: 10_000,
                ..Default::default()
            }
            .options(),
        )
        .unwrap()
    }

    fn row(amount: &str) -> (Row, String) {
        (
            Row {
                limit: "l".into(),
                group_key: "g".into(),
                amount: Amount::parse(amount).unwrap(),
                token: "T".into(),
            },
            "g".into(),
        )
    }

    fn group() -> [GroupRef; 1] {
        [GroupRef {
            limit: "l".into(),
            key: "g".into(),
            window_ms: 1_000_000,
        }]
    }

    /// A decision under `cap` as the pipeline makes it: held and approved
    /// only when the amount fits.
    fn capped(s: &PostgresStore, id: &str, now: i64, amount: &str, cap: &str) -> bool {
        let a = Amount::parse(amount).unwrap();
        let cap = Amount::parse(cap).unwrap();
        let fits = |u: &[Usage]| u[0].amount.checked_add(a).is_some_and(|t| t <= cap);
        let mut approved = false;
        let out = s
            .decide(
                &DecideRequest {
                    request_id: id,
                    digest: &[4; 32],
                    groups: &group(),
                    hold: &[row(amount)],
                    now_ms: Some(now),
                    fits: &fits,
                },
                &mut |_, u| {
                    approved = fits(u);
                    Verdict {
                        answer: Some(if approved { "A" } else { "R" }.into()),
                        approved,
                    }
                },
            )
            .unwrap();
        match out {
            Outcome::Decided(p) => p.wait().unwrap(),
            Outcome::Prior(_) => panic!("fresh id {id}"),
        }
        approved
    }

    /// The group's usage as the next decision sees it.
    fn usage(s: &PostgresStore, now: i64) -> (String, u64) {
        let mut seen = None;
        let id = format!("probe-{}", rand::random::<u64>());
        let out = s
            .decide(
                &DecideRequest {
                    request_id: &id,
                    digest: &[1; 32],
                    groups: &group(),
                    hold: &[],
                    now_ms: Some(now),
                    fits: &|_| true,
                },
                &mut |_, u| {
                    seen = Some(u[0]);
                    Verdict {
                        answer: None,
                        approved: false,
                    }
                },
            )
            .unwrap();
        if let Outcome::Decided(p) = out {
            p.wait().unwrap();
        }
        let u = seen.expect("decided");
        (u.amount.to_string(), u.count)
    }

    fn approve(s: &PostgresStore, id: &str, at_ms: i64, amount: &str) {
        s.seed(id, at_ms, &[row(amount)]).unwrap();
        s.record_approval(&ApprovalRecord {
            request_id: id.into(),
            request_type: "KEYSIGN".into(),
            at_ms,
            digest: "ab".into(),
            facts: format!("{{\"of\":\"{id}\"}}"),
        })
        .unwrap()
        .wait()
        .unwrap();
    }

    #[test]
    fn task_transitions_on_either_pool_release_and_rehold_exactly() {
        use TaskState::*;
        let db = PgCluster::start();
        let ws = Workspace::new();
        let (a, b) = (open(&ws, &db), open(&ws, &db));
        approve(&a, "p1", 1_000, "10");
        approve(&b, "p2", 1_100, "15");
        // The first record wins, whichever instance writes the retry's.
        b.record_approval(&ApprovalRecord {
            request_id: "p1".into(),
            request_type: "KEYGEN".into(),
            at_ms: 9,
            digest: "cd".into(),
            facts: "{}".into(),
        })
        .unwrap()
        .wait()
        .unwrap();
        let p1 = a.approval("p1").unwrap().unwrap();
        assert_eq!(
            (p1.record.request_type.as_str(), p1.record.at_ms, p1.state),
            ("KEYSIGN", 1_000, Approved)
        );
        assert!(b.approval("nope").unwrap().is_none());

        let ev = StoredEvent {
            event_id: "e1".into(),
            received_at_ms: 1_200,
            node_id: "n".into(),
            event_type: "request.keysign.failed".into(),
            request_id: "p1".into(),
            body: "{\"first\":1}".into(),
        };
        assert!(a.put_event(&ev).unwrap());
        let again = StoredEvent {
            body: "{\"second\":1}".into(),
            ..ev.clone()
        };
        assert!(
            !b.put_event(&again).unwrap(),
            "a duplicate on the other pool"
        );
        assert_eq!(
            db.psql("SELECT body FROM tss_gate_events WHERE event_id = 'e1'")
                .trim(),
            "{\"first\":1}"
        );

        assert!(!capped(&a, "c1", 2_000, "6", "30"));
        assert!(capped(&a, "c2", 2_000, "5", "30"), "exactly full");
        let t = b
            .transition("p1", Released, 2_500, "event e1 failed")
            .unwrap();
        assert_eq!(
            (t.before, t.after, t.rows),
            (Some(Approved), Some(Released), 1)
        );
        let t = a
            .transition("p1", Released, 2_600, "event e2 failed")
            .unwrap();
        assert_eq!((t.before, t.rows), (Some(Released), 0), "released once");
        assert_eq!(usage(&a, 3_000), ("20".into(), 2));
        assert!(!capped(&a, "d1", 3_000, "10.000000000000000001", "30"));
        assert!(capped(&b, "d2", 3_000, "10", "30"), "p1's room, on B");
        // The late `succeeded`: p1 counts again, over the cap.
        let t = a
            .transition("p1", Executed, 3_500, "event e3 succeeded")
            .unwrap();
        assert_eq!(
            (t.before, t.after, t.rows),
            (Some(Released), Some(Executed), 1)
        );
        assert_eq!(usage(&b, 4_000), ("40".into(), 4));
        assert!(!capped(&b, "e1", 4_000, "0.000000000000000001", "30"));
        let t = b
            .transition("p1", Released, 4_100, "event e4 failed")
            .unwrap();
        assert_eq!(
            (t.before, t.after, t.rows),
            (Some(Executed), Some(Executed), 0),
            "executed stays executed"
        );
        assert_eq!(
            a.approval("p1").unwrap().unwrap().changed,
            Some((3_500, "event e3 succeeded".into()))
        );
        // A hand-made void stands through a release and a `succeeded`.
        assert_eq!(a.void("p2", 4_200, "checked the chain").unwrap(), 1);
        assert_eq!(
            b.transition("p2", Released, 4_300, "event e5")
                .unwrap()
                .rows,
            0
        );
        let t = a.transition("p2", Executed, 4_400, "event e6").unwrap();
        assert_eq!((t.after, t.rows), (Some(Executed), 0));
        assert_eq!(usage(&a, 5_000), ("25".into(), 3));
        let t = a.transition("nope", Released, 5_000, "event e7").unwrap();
        assert_eq!((t.before, t.after, t.rows), (None, None, 0));
        let listed: Vec<String> = b
            .approvals(0, 10)
            .unwrap()
            .into_iter()
            .map(|x| x.record.request_id)
            .collect();
        assert_eq!(listed, ["p2", "p1"], "newest first");
    }

    #[test]
    fn two_pools_racing_transitions_and_decisions_on_one_group_stay_exact() {
        use TaskState::*;
        let db = PgCluster::start();
        let ws = Workspace::new();
        let (a, b) = (open(&ws, &db), open(&ws, &db));
        for i in 0..40 {
            approve(&a, &format!("s{i}"), 1_000, "1");
        }
        // Full (40 of 40). Each pool releases the same 15 tasks while two
        // threads per pool decide against the cap.
        let stores = [&a, &b];
        let (released, approved) = std::thread::scope(|sc| {
            let rel: Vec<_> = stores
                .iter()
                .map(|s| {
                    sc.spawn(move || {
                        (0..15)
                            .map(|i| {
                                s.transition(&format!("s{i}"), Released, 2_000, "event failed")
                                    .unwrap()
                                    .rows
                            })
                            .sum::<usize>()
                    })
                })
                .collect();
            let dec: Vec<_> = (0..4)
                .map(|t| {
                    let s = stores[t % 2];
                    sc.spawn(move || {
                        (0..6)
                            .filter(|i| capped(s, &format!("d{t}-{i}"), 3_000, "1", "40"))
                            .count()
                    })
                })
                .collect();
            (
                rel.into_iter().map(|h| h.join().unwrap()).sum::<usize>(),
                dec.into_iter().map(|h| h.join().unwrap()).sum::<usize>(),
            )
        });
        assert_eq!(released, 15, "each task released once");
        let mut more = 0;
        while capped(stores[more % 2], &format!("m{more}"), 4_000, "1", "40") {
            more += 1;
        }
        assert_eq!(approved + more, 15, "exactly the released room was used");
        assert_eq!(usage(&a, 5_000), ("40".into(), 40));
        // Both pools re-hold the same 10 while deciders keep trying.
        let (reheld, approved) = std::thread::scope(|sc| {
            let hs: Vec<_> = stores
                .iter()
                .map(|s| {
                    sc.spawn(move || {
                        (0..10)
                            .map(|i| {
                                s.transition(&format!("s{i}"), Executed, 6_000, "event ok")
                                    .unwrap()
                                    .rows
                            })
                            .sum::<usize>()
                    })
                })
                .collect();
            let dec: Vec<_> = (0..2)
                .map(|t| {
                    let s = stores[t];
                    sc.spawn(move || {
                        (0..4)
                            .filter(|i| capped(s, &format!("x{t}-{i}"), 6_000, "1", "40"))
                            .count()
                    })
                })
                .collect();
            (
                hs.into_iter().map(|h| h.join().unwrap()).sum::<usize>(),
                dec.into_iter().map(|h| h.join().unwrap()).sum::<usize>(),
            )
        });
        assert_eq!(reheld, 10, "each task re-held once");
        assert_eq!(approved, 0, "a full group stays full");
        assert_eq!(usage(&b, 7_000), ("50".into(), 50));
        let state = |id: &str| a.approval(id).unwrap().unwrap().state;
        assert_eq!(
            (state("s0"), state("s12"), state("s30")),
            (Executed, Released, Approved)
        );
    }
}
