//! Issue 6 acceptance, hot reload: the real binary reloads a changed policy
//! (SIGHUP and file watch) under load without a single failed or unsigned
//! answer; a broken policy, or one whose own tests fail under
//! `require_passing_tests`, is refused and the old one keeps serving; SIGHUP
//! rotates TSS Node keys; a retried request gets the identical decision after
//! the policy flipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod resil;

use std::time::Duration;

use common::*;
use resil::*;
use tss_gate::protocol::{Action, CallbackResponse, Status};

/// A deny rule for every KEYSIGN, dropped into `tss/common/` to flip answers.
const TOGGLE: &str = "package tss.common\n\ndeny contains {\n\t\"code\": \"test.toggle\",\n\t\"msg\": \"keysign switched off by the reload test\",\n} if {\n\tinput.request_type == \"KEYSIGN\"\n}\n";
const TOGGLE_MSG: &str = "keysign switched off by the reload test";

const WAIT: Duration = Duration::from_secs(30);

/// Load check: an approval, or a rejection by the toggle rule only.
fn approve_or_toggled(a: &CallbackResponse) -> Result<(), String> {
    if a.is_approval() && a.error.is_empty()
        || a.action == Some(Action::Reject) && a.error == TOGGLE_MSG
    {
        Ok(())
    } else {
        Err(format!("unexpected answer {a:?}"))
    }
}

/// Sends fresh probes until one gets the wanted action (the reload landed).
fn wait_for(server: &Server, want: Action) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let a = send_as(server, &keysign(&fresh_id("probe")), &test_keys().node);
        assert_eq!(a.status, Status::Ok, "{a:?}");
        if a.action == Some(want) {
            return;
        }
        if std::time::Instant::now() > deadline {
            let logs = server.logs();
            let tail: Vec<&str> = logs.lines().rev().take(30).collect();
            panic!(
                "answers did not flip to {want:?}; last log lines (newest first):\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fifty_reloads_under_load_lose_no_answer_and_switch_decisions() {
    let ws = Workspace::new();
    let dir = policy_copy(&ws);
    let cfg = write_config(&ws, &dir, &["node-a"], NO_WATCH, "");
    let server = Server::start(&cfg);
    let toggle = dir.join("tss/common/toggle.rego");
    let load = Load::start(&server, 3, approve_or_toggled);
    let before = metric(&server, "tss_gate_policy_reloads_total{result=\"success\"}").unwrap();
    let mut revisions = std::collections::BTreeSet::new();
    for i in 0..50 {
        let want = if i % 2 == 0 {
            write_atomic(&toggle, TOGGLE);
            Action::Reject
        } else {
            std::fs::remove_file(&toggle).unwrap();
            Action::Approve
        };
        hup(&server);
        wait_for(&server, want);
        let m = metrics_text(&server);
        let rev = m
            .lines()
            .find_map(|l| l.strip_prefix("tss_gate_policy_info{revision=\""))
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_owned();
        revisions.insert(rev);
    }
    let stats = load.stop();
    assert!(
        stats.failures.is_empty(),
        "failed answers: {:?}",
        &stats.failures[..stats.failures.len().min(5)]
    );
    assert!(stats.answers >= 50, "load ran: {stats:?}");
    assert!(
        stats.approvals > 0 && stats.rejections > 0,
        "load saw both policies: {stats:?}"
    );
    // Exactly two distinct sets took turns; each SIGHUP was one good reload.
    assert_eq!(revisions.len(), 2, "{revisions:?}");
    let after = metric(&server, "tss_gate_policy_reloads_total{result=\"success\"}").unwrap();
    assert_eq!(after - before, 50.0);
    assert_eq!(
        metric(&server, "tss_gate_policy_reloads_total{result=\"failure\"}"),
        Some(0.0)
    );
}

#[test]
fn watched_files_reload_without_a_signal() {
    let ws = Workspace::new();
    let dir = policy_copy(&ws);
    let cfg = write_config(
        &ws,
        &dir,
        &["node-a"],
        "  watch: true\n  eval_timeout_ms: 5000\n",
        "",
    );
    let server = Server::start(&cfg);
    let toggle = dir.join("tss/common/toggle.rego");
    assert!(send_as(&server, &keysign(&fresh_id("w")), &test_keys().node).is_approval());
    std::fs::write(&toggle, TOGGLE).unwrap();
    wait_for(&server, Action::Reject);
    std::fs::remove_file(&toggle).unwrap();
    wait_for(&server, Action::Approve);
    // Data files are watched too: allow-list no token, so KEYSIGN rejects.
    let data = dir.join("data.yaml");
    let text = std::fs::read_to_string(&data).unwrap();
    assert!(
        text.contains("allowed_token_ids:"),
        "data.yaml layout changed"
    );
    let patched = text.replace(
        "allowed_token_ids:",
        "allowed_token_ids: []\n  old_allowed_token_ids:",
    );
    std::fs::write(&data, patched).unwrap();
    wait_for(&server, Action::Reject);
    assert!(server.logs().contains("policy reloaded"));
}

#[test]
fn a_broken_policy_is_refused_and_the_good_one_keeps_serving() {
    let ws = Workspace::new();
    let dir = policy_copy(&ws);
    let cfg = write_config(&ws, &dir, &["node-a"], NO_WATCH, "");
    let server = Server::start(&cfg);
    let toggle = dir.join("tss/common/toggle.rego");
    write_atomic(&toggle, TOGGLE);
    hup(&server);
    wait_for(&server, Action::Reject);
    let failures =
        |s: &Server| metric(s, "tss_gate_policy_reloads_total{result=\"failure\"}").unwrap();
    assert_eq!(failures(&server), 0.0);

    // Broken over good: a syntax error on line 4 of the file that denies.
    write_atomic(
        &toggle,
        "package tss.common\n\ndeny contains x if {\n\tx := )\n}\n",
    );
    hup(&server);
    poll("the refusal", WAIT, || {
        (failures(&server) == 1.0).then_some(())
    });
    assert_eq!(metric(&server, "tss_gate_policy_load_ok"), Some(0.0));
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("policy reload refused"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{logs}"));
    assert!(
        line.contains("toggle.rego:4:"),
        "file and line named: {line}"
    );
    // The good set (with the toggle) still decides.
    let a = send_as(&server, &keysign(&fresh_id("b")), &test_keys().node);
    assert_eq!(
        (a.action, a.error.as_str()),
        (Some(Action::Reject), TOGGLE_MSG)
    );

    // A data file that is not YAML is refused with its name too.
    std::fs::remove_file(&toggle).unwrap();
    let data = dir.join("data.yaml");
    let good_data = std::fs::read_to_string(&data).unwrap();
    write_atomic(&data, "keysign: [unclosed\n");
    hup(&server);
    poll("the second refusal", WAIT, || {
        (failures(&server) == 2.0).then_some(())
    });
    assert!(server.logs().contains("data.yaml"), "data file named");
    let a = send_as(&server, &keysign(&fresh_id("b")), &test_keys().node);
    assert_eq!(a.error, TOGGLE_MSG, "still the good set: {a:?}");

    // A set that breaks the decision contract is refused as well.
    write_atomic(&data, &good_data);
    write_atomic(
        &dir.join("tss/decision.rego"),
        "package tss\n\ndecision := \"yes\"\n",
    );
    hup(&server);
    poll("the third refusal", WAIT, || {
        (failures(&server) == 3.0).then_some(())
    });
    let a = send_as(&server, &keysign(&fresh_id("b")), &test_keys().node);
    assert_eq!(a.error, TOGGLE_MSG, "still the good set: {a:?}");

    // Fixed: accepted, served, and the gauge says so.
    copy_tree(&repo().join("rego"), &dir);
    hup(&server);
    wait_for(&server, Action::Approve);
    assert_eq!(metric(&server, "tss_gate_policy_load_ok"), Some(1.0));
}

/// A tiny policy set with its own tests: KEYSIGN is denied when
/// `data.flags.keysign_off` is true.
fn small_policy(dir: &std::path::Path, keysign_off: bool, test_expects_off: bool) {
    std::fs::create_dir_all(dir.join("tss")).unwrap();
    write_atomic(
        &dir.join("tss/decision.rego"),
        "package tss\n\ndeny contains \"keysign is off\" if {\n\tinput.request_type == \"KEYSIGN\"\n\tdata.flags.keysign_off\n}\n\ndecision := {\"allow\": count(deny) == 0, \"reasons\": sort(deny), \"codes\": []}\n",
    );
    write_atomic(
        &dir.join("data.yaml"),
        &format!("flags:\n  keysign_off: {keysign_off}\n"),
    );
    let expect = if test_expects_off { "not" } else { "" };
    write_atomic(
        &dir.join("tss/decision_test.rego"),
        &format!(
            "package tss_test\n\nimport data.tss\n\ntest_ping_allowed if tss.decision.allow with input as {{\"request_type\": \"PING\"}}\n\ntest_keysign if {{\n\t{expect} tss.decision.allow with input as {{\"request_type\": \"KEYSIGN\"}}\n}}\n"
        ),
    );
}

#[test]
fn require_passing_tests_blocks_a_policy_whose_tests_fail() {
    let ws = Workspace::new();
    let dir = ws.path().join("small");
    small_policy(&dir, false, false);
    let cfg = write_config(
        &ws,
        &dir,
        &["node-a"],
        "  watch: false\n  eval_timeout_ms: 5000\n  require_passing_tests: true\n",
        "",
    );
    let server = Server::start(&cfg);
    assert!(send_as(&server, &keysign(&fresh_id("t")), &test_keys().node).is_approval());

    // The data flips KEYSIGN off, but the set's own test still expects it on.
    small_policy(&dir, true, false);
    hup(&server);
    poll("the refusal", WAIT, || {
        (metric(&server, "tss_gate_policy_reloads_total{result=\"failure\"}") == Some(1.0))
            .then_some(())
    });
    let logs = server.logs();
    assert!(
        logs.contains("1 of 2 policy tests and fixtures failed")
            && logs.contains("data.tss_test.test_keysign")
            && logs.contains("decision_test.rego:7: test is undefined"),
        "failing test named:\n{logs}"
    );
    assert!(send_as(&server, &keysign(&fresh_id("t")), &test_keys().node).is_approval());

    // Tests updated to match: accepted.
    small_policy(&dir, true, true);
    hup(&server);
    wait_for(&server, Action::Reject);
}

#[test]
fn by_default_a_set_serves_only_if_its_tests_and_fixtures_pass_and_recovery_is_logged() {
    let ws = Workspace::new();
    let dir = ws.path().join("small");
    small_policy(&dir, false, false);
    let fixtures = ws.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    std::fs::copy(
        repo().join("tests/fixtures/keysign_eth_approve.json"),
        fixtures.join("keysign_eth_approve.json"),
    )
    .unwrap();
    // No `require_passing_tests` line: the default must be on.
    let cfg = write_config(
        &ws,
        &dir,
        &["node-a"],
        &format!(
            "  # require_passing_tests: left at its default\n  watch: false\n  fixtures: {}\n",
            fixtures.display()
        ),
        "",
    );
    let server = Server::start(&cfg);
    assert!(send_as(&server, &keysign(&fresh_id("d")), &test_keys().node).is_approval());
    let refusals = |n: f64| {
        poll("the refusal", WAIT, || {
            (metric(&server, "tss_gate_policy_reloads_total{result=\"failure\"}") == Some(n))
                .then_some(())
        })
    };

    // A data edit whose Rego tests were updated to match, but which turns
    // the approve fixture into a REJECT: refused because of the fixture.
    small_policy(&dir, true, true);
    hup(&server);
    refusals(1.0);
    let logs = server.logs();
    assert!(
        logs.contains("policy tests and fixtures failed") && logs.contains("keysign_eth_approve"),
        "the failing fixture is named:\n{logs}"
    );
    assert!(send_as(&server, &keysign(&fresh_id("d")), &test_keys().node).is_approval());

    // A rule that no longer does what its tests say: refused too.
    small_policy(&dir, false, true);
    hup(&server);
    refusals(2.0);
    assert!(!server.logs().contains("policy load recovered"));
    assert!(send_as(&server, &keysign(&fresh_id("d")), &test_keys().node).is_approval());

    // Fixed: served again, and the log says the refusals are over.
    small_policy(&dir, false, false);
    hup(&server);
    poll("the recovery line", WAIT, || {
        server
            .logs()
            .lines()
            .find(|l| l.contains("policy load recovered"))
            .map(str::to_owned)
    });
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("policy load recovered"))
        .unwrap();
    let plain = regex::Regex::new("\x1b\\[[0-9;]*m")
        .unwrap()
        .replace_all(line, "");
    assert!(plain.contains("refused_loads=2"), "{plain}");
    assert_eq!(metric(&server, "tss_gate_policy_load_ok"), Some(1.0));

    // A set with no tests at all is refused at start by default.
    std::fs::remove_file(dir.join("tss/decision_test.rego")).unwrap();
    drop(server);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tss-gate"))
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no `test_*` rule") && err.contains("require_passing_tests"),
        "{err}"
    );
}

#[test]
fn sighup_rotates_tss_node_keys_without_a_restart() {
    let ws = Workspace::new();
    let rego = repo().join("rego");
    let k = test_keys();
    let cfg = write_config(&ws, &rego, &["node-a"], NO_WATCH, "");
    let server = Server::start(&cfg);
    let as_b = |id: &str| send_as(&server, &keysign(id), &k.node_b);
    assert_eq!(as_b(&fresh_id("k")).status, Status::InvalidToken);

    // Old and new side by side. The same edit changes a limit, which only a
    // restart applies: the keys still rotate, and the operator is told.
    write_config(
        &ws,
        &rego,
        &["node-a", "node-b"],
        NO_WATCH,
        "limits:\n  max_queue: 7\n",
    );
    hup(&server);
    poll("node-b accepted", WAIT, || {
        as_b(&fresh_id("k")).is_approval().then_some(())
    });
    assert!(send_as(&server, &keysign(&fresh_id("k")), &k.node).is_approval());
    poll("the restart-only warning", WAIT, || {
        server
            .logs()
            .lines()
            .any(|l| l.contains("only after a restart") && l.contains("limits"))
            .then_some(())
    });

    // A config whose key file is missing is refused; the keys stay as they were.
    write_config(&ws, &rego, &["node-b", "node-c"], NO_WATCH, "");
    hup(&server);
    poll("the refused key reload", WAIT, || {
        server.logs().contains("key reload refused").then_some(())
    });
    assert!(
        server.logs().contains("node-c.pub.pem"),
        "missing file named"
    );
    assert!(send_as(&server, &keysign(&fresh_id("k")), &k.node).is_approval());

    // Old removed.
    write_config(&ws, &rego, &["node-b"], NO_WATCH, "");
    hup(&server);
    poll("node-a refused", WAIT, || {
        (send_as(&server, &keysign(&fresh_id("k")), &k.node).status == Status::InvalidToken)
            .then_some(())
    });
    assert!(as_b(&fresh_id("k")).is_approval());
}

#[test]
fn a_retry_gets_the_identical_decision_after_the_policy_flipped() {
    let ws = Workspace::new();
    let dir = policy_copy(&ws);
    let cfg = write_config(&ws, &dir, &["node-a"], NO_WATCH, "");
    let server = Server::start(&cfg);
    let node = &test_keys().node;
    let req = keysign("retry-1");
    let first = send_as(&server, &req, node);
    assert!(first.is_approval(), "{first:?}");

    write_atomic(&dir.join("tss/common/toggle.rego"), TOGGLE);
    hup(&server);
    wait_for(&server, Action::Reject);

    // Same request_id, same payload, fresh token: the same answer.
    let retried = send_as(&server, &req, node);
    assert_eq!(retried, first);
    assert_eq!(
        metric(&server, "tss_gate_retry_cache_hits_total"),
        Some(1.0)
    );

    // Same request_id, different payload: a firm, explained REJECT.
    let mut other = req.clone();
    other.extra_info = other.extra_info.replace("0.75", "75");
    assert_ne!(other.extra_info, req.extra_info, "fixture changed");
    let a = send_as(&server, &other, node);
    assert_eq!(a.status, Status::Ok);
    assert_eq!(a.action, Some(Action::Reject));
    assert_eq!(a.request_id, "retry-1");
    assert_eq!(
        a.error,
        "request_id `retry-1` was seen before with a different payload"
    );
    assert!(server.logs().contains("suspicious"), "logged as suspicious");
    assert_eq!(
        metric(
            &server,
            "tss_gate_request_failures_total{reason=\"replay_mismatch\"}"
        ),
        Some(1.0)
    );
    // The original still replays unchanged after the mismatch.
    assert_eq!(send_as(&server, &req, node), first);
}

#[test]
fn with_the_retry_cache_off_a_retry_is_decided_afresh() {
    let ws = Workspace::new();
    // policy_copy has no spending limits: a request a limit matches is
    // always answered from its durable record (tests/velocity.rs), whatever
    // `retry_cache` says.
    let dir = policy_copy(&ws);
    let cfg = write_config(
        &ws,
        &dir,
        &["node-a"],
        NO_WATCH,
        "retry_cache:\n  enabled: false\n",
    );
    let server = Server::start(&cfg);
    let node = &test_keys().node;
    let req = keysign("retry-off");
    assert!(send_as(&server, &req, node).is_approval());
    write_atomic(&dir.join("tss/common/toggle.rego"), TOGGLE);
    hup(&server);
    wait_for(&server, Action::Reject);
    assert_eq!(send_as(&server, &req, node).error, TOGGLE_MSG);
    assert_eq!(
        metric(&server, "tss_gate_retry_cache_hits_total"),
        Some(0.0)
    );
}
