//! Issue 4: the decision log. Every answered APPROVE is on disk before the
//! answer leaves (SIGKILL right after the last answer loses nothing); lines
//! are versioned and carry codes, revision, key and the input (full or
//! digest) but never a token; a log that cannot be written fails closed
//! (status 30) unless `fail_closed: false`. Also: request log lines carry
//! the request_id.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod obs;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use obs::*;
use serde_json::Value;
use tss_gate::protocol::{Action, Status};

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line ({e}): {l}")))
        .collect()
}

fn log_config(ws: &Workspace, extra: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let path = ws.path().join("audit/decisions.log");
    let cfg = ws.config(&format!(
        "decision_log:\n  path: {}\n{extra}",
        path.display()
    ));
    (cfg, path)
}

#[test]
fn sigkill_after_the_last_approval_loses_no_line() {
    let ws = Workspace::new();
    let (cfg, path) = log_config(&ws, "");
    let mut server = Server::start(&cfg);
    let k = test_keys();
    // Pre-mint, then send from 16 threads at once so answers share fsyncs.
    let tokens: Vec<(String, String)> = (0..64)
        .map(|i| {
            let id = format!("kill-{i:03}");
            let file = if i % 2 == 0 {
                "ping_approve.json"
            } else {
                "keysign_eth_approve.json"
            };
            let t = mint(&fixture(file, &id), &k.node);
            (id, t)
        })
        .collect();
    let url = server.check_url();
    let answered: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = tokens
            .chunks(4)
            .map(|chunk| {
                let url = url.clone();
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|(id, t)| {
                            let (status, body) = post_token(&url, t);
                            assert_eq!(status, 200);
                            let a = verify_answer(&body);
                            assert!(a.is_approval(), "{a:?}");
                            assert_eq!(&a.request_id, id);
                            a.request_id
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    // SIGKILL: no shutdown path, no flush, nothing but what is on disk.
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let lines = read_lines(&path);
    let logged: BTreeSet<String> = lines
        .iter()
        .filter(|l| l["action"] == "APPROVE")
        .map(|l| l["request_id"].as_str().unwrap().to_owned())
        .collect();
    let answered: BTreeSet<String> = answered.into_iter().collect();
    assert_eq!(answered.len(), 64);
    assert_eq!(logged, answered, "every answered APPROVE has its line");
    assert_eq!(lines.len(), 64);
}

#[test]
fn lines_describe_each_decision_and_hold_no_secret() {
    let ws = Workspace::new();
    let (cfg, path) = log_config(&ws, "  input: full\n");
    let server = Server::start(&cfg);
    let sent = mixed_traffic(&server, "dl");
    let k = test_keys();
    let token = mint(&fixture("keysign_eth_approve.json", "dl-secret"), &k.node);
    assert!(answer(&server, &token).is_approval());
    let lines = read_lines(&path);
    assert_eq!(lines.len() as u64, sent.total + 1, "one line per answer");

    let by_id = |id: &str| -> &Value {
        lines
            .iter()
            .find(|l| l["request_id"] == id)
            .unwrap_or_else(|| panic!("no line for {id}"))
    };
    let ok = by_id("dl-ok-KEYSIGN-0");
    assert_eq!(ok["v"], 2);
    assert_eq!(ok["request_type"], "KEYSIGN");
    assert_eq!(ok["action"], "APPROVE");
    assert_eq!(ok["status"], 0);
    assert_eq!(ok["key"], "node-a");
    assert_eq!(ok["codes"], serde_json::json!([]));
    assert_eq!(ok["policy_revision"].as_str().unwrap().len(), 16);
    assert!(ok["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(ok["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(ok["input"]["request_id"], "dl-ok-KEYSIGN-0");
    assert_eq!(ok["input"]["verified_by"], "node-a");

    let no = by_id("dl-no-KEYSIGN-0");
    assert_eq!(no["action"], "REJECT");
    assert_eq!(
        no["codes"],
        serde_json::json!(["keysign.token_not_allowed"])
    );
    assert!(
        no["reasons"][0]
            .as_str()
            .unwrap()
            .contains("not in the allowed token list"),
        "{no}"
    );
    assert_eq!(
        by_id("dl-no-KEYGEN-0")["codes"][0],
        "keygen.not_in_allow_list"
    );
    assert_eq!(
        by_id("dl-no-KEYSHARESIGN-0")["codes"][0],
        "keysharesign.reject_all"
    );

    // Failures: status and bounded reason, no input.
    let failures: Vec<&Value> = lines.iter().filter(|l| l["status"] != 0).collect();
    assert_eq!(failures.len(), 10);
    for f in &failures {
        assert!(f.get("input").is_none(), "{f}");
        assert!(f["failure"].is_string(), "{f}");
    }
    let reasons: BTreeSet<&str> = failures
        .iter()
        .map(|f| f["failure"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        BTreeSet::from([
            "bad_package_data",
            "bad_request",
            "bad_signature",
            "expired",
            "malformed_token",
            "missing_token",
        ])
    );

    // Never a token or key material.
    let text = std::fs::read_to_string(&path).unwrap();
    let signature = token.rsplit('.').next().unwrap();
    assert!(!text.contains(signature), "token signature in the log");
    assert!(!text.contains(&token[..40]), "token header in the log");
    assert!(!text.contains("PRIVATE KEY") && !text.contains("PUBLIC KEY"));
}

#[test]
fn digest_mode_records_the_canonical_input_hash() {
    let ws = Workspace::new();
    let (cfg, path) = log_config(&ws, "  input: digest\n");
    let server = Server::start(&cfg);
    let k = test_keys();
    for id in ["dg-1", "dg-2"] {
        assert!(answer(&server, &mint(&fixture("ping_approve.json", id), &k.node)).is_approval());
    }
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 2);
    let digests: Vec<&str> = lines
        .iter()
        .map(|l| {
            assert!(l.get("input").is_none());
            l["input_digest"].as_str().unwrap()
        })
        .collect();
    for d in &digests {
        assert!(d.starts_with("sha256:") && d.len() == 71, "{d}");
    }
    // Different request ids (and receive times) ⇒ different inputs.
    assert_ne!(digests[0], digests[1]);
}

#[test]
fn an_unwritable_log_fails_closed_by_default() {
    // /dev/full opens fine and fails every write with ENOSPC.
    let ws = Workspace::new();
    let server = Server::start(&ws.config("decision_log:\n  path: /dev/full\n"));
    let k = test_keys();
    let a = answer(
        &server,
        &mint(&fixture("ping_approve.json", "full-1"), &k.node),
    );
    assert_eq!(a.status, Status::InternalError, "{a:?}");
    assert_ne!(a.action, Some(Action::Approve));
    assert_eq!(a.request_id, "full-1");
    assert_eq!(a.error, "decision could not be recorded");
    // A rejection cannot be recorded either: also status 30 (the node
    // retries), never an unrecorded answer.
    let r = answer(
        &server,
        &mint(&fixture("keysharesign_reject.json", "full-2"), &k.node),
    );
    assert_eq!(r.status, Status::InternalError, "{r:?}");
    // A token failure is answered as it is (status 20), logged or not.
    let stranger = mint(&fixture("ping_approve.json", "full-3"), &k.stranger);
    assert_eq!(answer(&server, &stranger).status, Status::InvalidToken);

    let s = parse_metrics(&get(&server.url("/metrics")).1);
    let m = tss_gate::metrics::DECISION_LOG_WRITES_TOTAL;
    assert_eq!(value(&s, m, &[("result", "failure")]), Some(3.0));
    assert_eq!(value(&s, m, &[("result", "success")]), Some(0.0));
    assert_eq!(
        value(
            &s,
            tss_gate::metrics::REQUEST_FAILURES_TOTAL,
            &[("reason", "decision_log")]
        ),
        Some(2.0)
    );
    assert!(server.logs().contains("decision log write failed"));
}

#[test]
fn fail_closed_false_answers_anyway() {
    let ws = Workspace::new();
    let server =
        Server::start(&ws.config("decision_log:\n  path: /dev/full\n  fail_closed: false\n"));
    let k = test_keys();
    let a = answer(
        &server,
        &mint(&fixture("ping_approve.json", "open-1"), &k.node),
    );
    assert!(a.is_approval(), "{a:?}");
    assert!(server.logs().contains("answering anyway"));
}

#[test]
fn request_log_lines_carry_the_request_id() {
    let ws = Workspace::new();
    let server = Server::start_with_args(&ws.config(""), &["--log-json"]);
    let k = test_keys();
    let a = answer(
        &server,
        &mint(&fixture("ping_approve.json", "span-7"), &k.node),
    );
    assert!(a.is_approval());
    let token = mint(&fixture("ping_approve.json", "span-8"), &k.stranger);
    let _ = answer(&server, &token);
    // The log line is written before the answer is sent, so it is there.
    let logs = server.logs();
    let decided: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "decided")
        .collect();
    assert_eq!(decided.len(), 1, "{logs}");
    assert_eq!(decided[0]["span"]["request_id"], "span-7", "{logs}");
    assert_eq!(decided[0]["span"]["name"], "request");
    assert!(!logs.contains(token.rsplit('.').next().unwrap()));
}

#[test]
fn log_files_and_their_directory_are_private_and_old_files_are_tightened() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let ws = Workspace::new();
    let (cfg, path) = log_config(&ws, "");
    {
        let server = Server::start(&cfg);
        let a = send(&server, &fixture("ping_approve.json", "mode-1"));
        assert!(a.is_approval());
    }
    assert_eq!(mode(&path), 0o600, "a new decision log is owner-only");
    assert_eq!(mode(path.parent().unwrap()), 0o700, "its new directory too");

    // A log left 0644 by an older release holds the same decisions.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Server::start(&cfg);
    let a = send(&server, &fixture("ping_approve.json", "mode-2"));
    assert!(a.is_approval());
    drop(server);
    assert_eq!(mode(&path), 0o600, "an existing log is tightened at open");
    let ids: Vec<String> = read_lines(&path)
        .iter()
        .filter_map(|l| l["request_id"].as_str().map(str::to_owned))
        .collect();
    assert!(ids.contains(&"mode-1".to_owned()) && ids.contains(&"mode-2".to_owned()));
}
