//! `tss-gate replay` over decision logs the real server wrote (approvals,
//! rejections, errors; rotated files; a cut-short last line), against a
//! draft policy that flips decisions both ways: the exact groups, request
//! ids and exit codes in every format; a digest-only log refused with the
//! setting that fixes it; a directory of recorded fixtures replayed too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;
use tss_gate::protocol::{Action, CallbackRequest};

fn fixture(name: &str, id: &str) -> CallbackRequest {
    let mut r = tss_gate::fixture::load_request(&repo().join("tests/fixtures").join(name))
        .expect("fixture");
    r.request_id = id.to_owned();
    r
}

/// The shipped library with ETH_USDT no longer allowed (its approvals turn
/// into rejections) and the unknown KEYGEN node set allowed (its rejection
/// turns into an approval).
fn draft(ws: &Workspace) -> PathBuf {
    let dir = ws.path().join("draft");
    copy_tree(&repo().join("rego"), &dir);
    let path = dir.join("data.yaml");
    let mut data: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let tokens = data["keysign"]["allowed_token_ids"]
        .as_sequence_mut()
        .unwrap();
    tokens.retain(|t| t.as_str() != Some("ETH_USDT"));
    let keygen = fixture("keygen_unknown_node_reject.json", "x");
    let detail: Value = serde_json::from_str(&keygen.request_detail).unwrap();
    let entry = serde_yaml_ng::to_value(serde_json::json!({
        "threshold": detail["threshold"],
        "node_ids": detail["node_ids"],
        "curve": detail["curve"],
    }))
    .unwrap();
    data["embedded_risk_control_rules"]["key_gen"]["allow_list"]
        .as_sequence_mut()
        .unwrap()
        .push(entry);
    std::fs::write(&path, serde_yaml_ng::to_string(&data).unwrap()).unwrap();
    dir
}

fn replay(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tss-gate"))
        .arg("replay")
        .args(args)
        .output()
        .expect("run replay");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Serves the shipped policy with `extra` config and sends the same mix:
/// two ETH_USDT approvals, a TRON_USDT rejection over its cap, a KEYGEN
/// rejected for an unknown node, a PING, and a token no key verifies.
fn traffic(ws: &Workspace, extra: &str) {
    let server = Server::start(&ws.config(extra));
    for (name, id, action) in [
        (
            "keysign_usdt_under_cap_approve.json",
            "usdt-1",
            Action::Approve,
        ),
        (
            "keysign_usdt_under_cap_approve.json",
            "usdt-2",
            Action::Approve,
        ),
        (
            "keysign_usdt_over_cap_reject.json",
            "tron-over",
            Action::Reject,
        ),
        (
            "keygen_unknown_node_reject.json",
            "keygen-1",
            Action::Reject,
        ),
        ("ping_approve.json", "ping-1", Action::Approve),
    ] {
        let a = send(&server, &fixture(name, id));
        assert_eq!(a.action, Some(action), "{id}: {a:?}");
    }
    let token = mint(
        &fixture("ping_approve.json", "bad-token"),
        &test_keys().stranger,
    );
    let (status, _) = post_token(&server.check_url(), &token);
    assert_eq!(status, 200);
}

fn group<'a>(report: &'a Value, change: &str, code: &str) -> &'a Value {
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["change"] == change && g["code"] == code)
        .unwrap_or_else(|| panic!("no group {change} {code}: {report:#}"))
}

fn log_dir_line(path: &Path, id: &str) -> Value {
    let mut files: Vec<PathBuf> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("decisions.log"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .find(|l| l["request_id"] == id)
        .unwrap_or_else(|| panic!("no line for {id}"))
}

#[test]
fn a_draft_is_judged_on_a_real_log_with_rotation_and_a_cut_short_line() {
    let ws = Workspace::new();
    let logs = ws.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("decisions.log");
    // Small files: the log rotates several times over this traffic.
    traffic(
        &ws,
        &format!(
            "decision_log:\n  path: {}\n  max_bytes: 4096\n  retain: 50\n",
            log.display()
        ),
    );
    let rotated = std::fs::read_dir(&logs).unwrap().count();
    assert!(rotated >= 3, "{rotated} files: the log rotated");
    let keygen_codes = log_dir_line(&log, "keygen-1")["codes"].clone();
    let keygen_code = keygen_codes[0].as_str().unwrap().to_owned();
    assert_eq!(log_dir_line(&log, "usdt-1")["input_schema"], 1);
    // A crash mid-write leaves a cut-short last line.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"{\"v\":1,\"time\":\"2026-11-28T00:00:00Z\",\"request_id\":\"cut")
            .unwrap();
    }
    let draft = draft(&ws);
    let d = draft.to_str().unwrap();
    let l = logs.to_str().unwrap();

    let (code, out, err) = replay(&[l, "--policy-dir", d, "--format", "json", "--show", "10"]);
    assert_eq!(code, 3, "something is newly approved: {out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["replayed"], 5, "{report:#}");
    assert_eq!(report["unchanged"], 2, "TRON over cap and PING: {report:#}");
    assert_eq!(report["changes"]["newly_approved"], 1);
    assert_eq!(report["changes"]["newly_rejected"], 2);
    assert_eq!(report["not_replayed"]["errors"], 1, "the bad token");
    assert_eq!(report["not_replayed"]["truncated"], 1);
    let approved = group(&report, "newly_approved", &keygen_code);
    assert_eq!(approved["request_type"], "KEYGEN");
    assert_eq!(approved["request_ids"], serde_json::json!(["keygen-1"]));
    let rejected = group(&report, "newly_rejected", "keysign.token_not_allowed");
    assert_eq!(rejected["request_type"], "KEYSIGN");
    assert_eq!(rejected["count"], 2);
    assert_eq!(
        rejected["request_ids"],
        serde_json::json!(["usdt-1", "usdt-2"])
    );
    // Newly approved first among the examples, both decisions shown.
    let first = &report["examples"][0];
    assert_eq!(first["request_id"], "keygen-1");
    assert_eq!(first["recorded"]["action"], "REJECT");
    assert_eq!(first["draft"]["action"], "APPROVE");

    // Pretty: the newly approved first and loudest.
    let (code, out, _) = replay(&[l, "--policy-dir", d]);
    assert_eq!(code, 3);
    assert!(
        out.starts_with("!!! 1 REQUEST(S) THE DRAFT WOULD APPROVE WERE REJECTED !!!"),
        "{out}"
    );
    let approve_at = out.find("REJECT → APPROVE").unwrap();
    let reject_at = out.find("APPROVE → REJECT").unwrap();
    assert!(approve_at < reject_at, "{out}");
    assert!(out.contains("usdt-1 usdt-2"), "{out}");

    // Markdown for a pull request.
    let (_, md, _) = replay(&[l, "--policy-dir", d, "--format", "markdown"]);
    assert!(md.starts_with("### Policy replay"), "{md}");
    assert!(md.contains("| REJECT → APPROVE | 1 |"), "{md}");
    assert!(
        md.contains("`keysign.token_not_allowed` | 2 | usdt-1 usdt-2 |"),
        "{md}"
    );

    // JUnit: well-formed, one failure (the newly approved group).
    let (_, xml, _) = replay(&[l, "--policy-dir", d, "--format", "junit"]);
    let mut reader = quick_xml::Reader::from_str(&xml);
    let (mut failures, mut cases) = (0, 0);
    loop {
        match reader.read_event().expect("well-formed XML") {
            quick_xml::events::Event::Eof => break,
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                match e.name().into_inner() {
                    "failure" => failures += 1,
                    "testcase" => cases += 1,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    assert_eq!((cases, failures), (3, 1), "{xml}");
    let (code, xml, _) = replay(&[
        l,
        "--policy-dir",
        d,
        "--format",
        "junit",
        "--fail-on",
        "any-change",
    ]);
    assert_eq!(code, 3);
    assert_eq!(xml.matches("<failure").count(), 2, "{xml}");

    // The live policy itself: nothing changes, exit 0.
    let live = repo().join("rego");
    let (code, out, err) = replay(&[
        l,
        "--policy-dir",
        live.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let same: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(same["unchanged"], 5, "{same:#}");

    // A draft that only rejects more: exit 0, unless any change fails.
    let stricter = ws.path().join("stricter");
    copy_tree(&repo().join("rego"), &stricter);
    let path = stricter.join("data.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut data: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    data["keysign"]["allowed_token_ids"]
        .as_sequence_mut()
        .unwrap()
        .retain(|t| t.as_str() != Some("ETH_USDT"));
    std::fs::write(&path, serde_yaml_ng::to_string(&data).unwrap()).unwrap();
    let s = stricter.to_str().unwrap();
    assert_eq!(replay(&[l, "--policy-dir", s]).0, 0);
    assert_eq!(
        replay(&[l, "--policy-dir", s, "--fail-on", "any-change"]).0,
        3
    );
}

#[test]
fn a_digest_only_log_is_refused_with_the_setting_that_fixes_it() {
    let ws = Workspace::new();
    let log = ws.path().join("decisions.log");
    traffic(
        &ws,
        &format!(
            "decision_log:\n  path: {}\n  input: digest\n",
            log.display()
        ),
    );
    let live = repo().join("rego");
    let (code, out, err) = replay(&[
        log.to_str().unwrap(),
        "--policy-dir",
        live.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("decision_log.input: full") && err.contains("digest"),
        "{err}"
    );
    assert!(out.is_empty());
}

#[test]
fn recorded_fixtures_are_replayed_by_action() {
    let ws = Workspace::new();
    let rec = ws.path().join("recorded");
    traffic(&ws, &format!("record_dir: {}\n", rec.display()));
    let draft = draft(&ws);
    let (code, out, err) = replay(&[
        rec.to_str().unwrap(),
        "--policy-dir",
        draft.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 3, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["replayed"], 5, "{report:#}");
    assert_eq!(report["changes"]["newly_approved"], 1);
    assert_eq!(report["changes"]["newly_rejected"], 2);
    let approved = group(&report, "newly_approved", "(no code)");
    assert_eq!(approved["request_ids"], serde_json::json!(["keygen-1"]));
}

/// A log as it looks after an upgrade and a bad day: v1 and v2 decisions,
/// the lines other parts of the server write (`event`), a digest-only
/// decision, lines of a newer version, and a damaged line in the middle.
/// Every one is counted, the damaged and unknown ones located by
/// `file:line`, and none stops the run; the same log piped on stdin is read
/// the same way.
#[test]
fn old_new_foreign_and_damaged_lines_are_counted_and_located() {
    let ws = Workspace::new();
    let live = ws.path().join("decisions.log");
    traffic(&ws, &format!("decision_log:\n  path: {}\n", live.display()));
    let written: Vec<Value> = std::fs::read_to_string(&live)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(written.iter().all(|l| l["v"] == 2), "{written:#?}");
    let line = |id: &str| written.iter().find(|l| l["request_id"] == id).unwrap();

    // A v1 line, as written before `input_schema` existed.
    let mut v1 = line("usdt-1").clone();
    v1["v"] = 1.into();
    v1.as_object_mut().unwrap().remove("input_schema");
    v1["request_id"] = "usdt-v1".into();
    v1["input"]["request_id"] = "usdt-v1".into();
    let mut digest_only = line("tron-over").clone();
    digest_only["request_id"] = "tron-digest".into();
    let input = digest_only
        .as_object_mut()
        .unwrap()
        .remove("input")
        .unwrap();
    digest_only["input_digest"] = tss_gate::decision_log::digest(&input).into();
    let mut v3 = line("usdt-2").clone();
    v3["v"] = 3.into();
    let mut schema2 = line("usdt-2").clone();
    schema2["input_schema"] = 2.into();
    let events = [
        r#"{"v":2,"time":"2026-11-28T10:02:11.512Z","event":"ledger_void","request_id":"usdt-1","reasons":["never broadcast"],"released":[]}"#,
        r#"{"v":2,"time":"2026-11-28T10:02:12.000Z","event":"task_released","request_id":"usdt-2"}"#,
        r#"{"v":2,"time":"2026-11-28T10:02:13.000Z","event":"shadow_disagreement","request_id":"keygen-1","direction":"would_approve"}"#,
        r#"{"v":2,"time":"2026-11-28T10:02:14.000Z","event":"unapproved_signature","request_id":""}"#,
    ];
    let mut text: Vec<String> = vec![v1.to_string()];
    text.extend(written.iter().map(Value::to_string));
    text.extend(events.iter().map(|e| e.to_string()));
    text.push(r#"{"v":2,"time":"2026-11-28T10:03:00.000Z","request_id":"brok"#.into());
    let damaged_at = text.len();
    text.push(digest_only.to_string());
    text.push(v3.to_string());
    let v3_at = text.len();
    text.push(schema2.to_string());
    let schema2_at = text.len();
    let mixed = ws.path().join("mixed.log");
    std::fs::write(&mixed, text.join("\n") + "\n").unwrap();

    let draft = draft(&ws);
    let d = draft.to_str().unwrap();
    let m = mixed.to_str().unwrap();
    let (code, out, err) = replay(&[m, "--policy-dir", d, "--format", "json"]);
    assert_eq!(code, 3, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["replayed"], 6, "five v2 and one v1: {report:#}");
    assert_eq!(
        report["not_replayed"],
        serde_json::json!({"errors": 1, "digest_only": 1, "unknown_version": 2,
            "not_decisions": 4, "truncated": 0, "malformed": 1}),
        "{report:#}"
    );
    assert_eq!(
        group(&report, "newly_rejected", "keysign.token_not_allowed")["request_ids"],
        serde_json::json!(["usdt-v1", "usdt-1", "usdt-2"]),
        "the v1 line is judged like the others, in log order"
    );
    let problems: Vec<(u64, String)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["source"], m);
            (
                p["line"].as_u64().unwrap(),
                p["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert_eq!(problems[0].0, damaged_at as u64);
    assert!(problems[0].1.starts_with("not JSON"), "{problems:?}");
    assert_eq!(problems[1].0, v3_at as u64);
    assert!(problems[1].1.contains("`v` 3"), "{problems:?}");
    assert_eq!(problems[2].0, schema2_at as u64);
    assert!(problems[2].1.contains("`input_schema` 2"), "{problems:?}");

    // Pretty names each place as file:line.
    let (_, out, _) = replay(&[m, "--policy-dir", d]);
    assert!(
        out.contains(&format!("{m}:{damaged_at}: not JSON")),
        "{out}"
    );
    assert!(
        out.contains("1 decisions logged with `decision_log.input: digest`"),
        "{out}"
    );

    // The same bytes on stdin: the same judgement.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tss-gate"))
        .args(["replay", "-", "--policy-dir", d, "--format", "json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&std::fs::read(&mixed).unwrap()).unwrap();
    }
    let piped = child.wait_with_output().unwrap();
    assert_eq!(piped.status.code(), Some(3));
    let piped: Value = serde_json::from_slice(&piped.stdout).unwrap();
    assert_eq!(piped["groups"], report["groups"]);
    assert_eq!(piped["not_replayed"], report["not_replayed"]);
    assert_eq!(piped["problems"][0]["source"], "(stdin)");
}

/// A draft that does not compile is a load error (exit 1) that names the
/// file and line, and nothing is replayed.
#[test]
fn a_broken_draft_is_refused_with_its_file_and_line() {
    let ws = Workspace::new();
    let draft = ws.path().join("draft");
    copy_tree(&repo().join("rego"), &draft);
    let file = draft.join("tss/ping/ping.rego");
    let mut text = std::fs::read_to_string(&file).unwrap();
    let line = text.lines().count() + 1;
    text.push_str("deny contains msg if {\n");
    std::fs::write(&file, text).unwrap();
    let log = ws.path().join("decisions.log");
    std::fs::write(&log, "").unwrap();
    let (code, out, err) = replay(&[
        log.to_str().unwrap(),
        "--policy-dir",
        draft.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("ping.rego:"), "{err}");
    assert!(
        err.contains(&format!("ping.rego:{line}"))
            || err.contains(&format!("ping.rego:{}", line + 1)),
        "{err}"
    );
}
