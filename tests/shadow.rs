//! Issue 16.4, shadow mode: the real binary with `policy.shadow_dir` set
//! answers exactly as it does without it, writes one `shadow_disagreement`
//! line per request the shadow set decides differently (both decisions,
//! both revisions, the direction) and counts them in `/metrics`; the shadow
//! set sees the live input (spending-limit facts included); retried requests
//! are not re-judged; a broken shadow set at start leaves the server serving
//! without shadow until a reload fixes it, a broken reload keeps the last good
//! shadow set, a config without `shadow_dir` turns it off, a watched shadow
//! directory reloads on change; a shadow set that errs is counted and
//! changes no answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod obs;
mod resil;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use obs::fixture;
use resil::*;
use serde_json::Value;
use tss_gate::protocol::{CallbackRequest, CallbackResponse};

const WAIT: Duration = Duration::from_secs(30);

/// Drops the token allow-list: the shadow set approves ETH_PEPE, which the
/// live set rejects (`would_approve`).
const NO_TOKEN_RULE: &str = "package tss.keysign\n\ntoken_allowed := true\n";

/// Rules only the shadow set has: it rejects pings (`would_reject`), adds a
/// code to requests tagged `cc-` (`codes_changed`) and rejects a request
/// tagged `vel-` when it sees spending-limit facts and the decision time,
/// which only the live input of a request under a limit carries.
const SHADOW_RULES: &str = r#"package tss.common

deny contains {"code": "shadow.no_ping", "msg": "the shadow set refuses pings"} if {
	input.request_type == "PING"
}

deny contains {"code": "shadow.extra", "msg": "an extra code"} if {
	startswith(input.request_id, "cc-")
}

deny contains {"code": "shadow.velocity_seen", "msg": "spending-limit facts seen"} if {
	startswith(input.request_id, "vel-")
	count(input.velocity) > 0
	input.decided_at_ms > 0
}
"#;

/// A complete rule with two values for every KEYSIGN: evaluation fails.
const CONFLICT: &str = r#"package tss.common

shadow_conflict := 1 if input.request_type == "KEYSIGN"

shadow_conflict := 2 if input.request_type == "KEYSIGN"

deny contains {"code": "shadow.conflict", "msg": "never"} if shadow_conflict == 3
"#;

/// The shipped policy, copied to `dir`, with `files` (relative path, text)
/// written over it.
fn policy_variant(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    copy_tree(&repo().join("rego"), dir);
    for (rel, text) in files {
        std::fs::write(dir.join(rel), text).unwrap();
    }
    dir.to_owned()
}

fn log_path(ws: &Workspace) -> PathBuf {
    ws.path().join("audit/decisions.log")
}

/// Config: the shipped policy live, `shadow` as the shadow set (if any),
/// a decision log in the workspace.
fn shadow_config(ws: &Workspace, shadow: Option<&Path>) -> PathBuf {
    let mut policy = NO_WATCH.to_owned();
    if let Some(s) = shadow {
        policy.push_str(&format!("  shadow_dir: {}\n", s.display()));
    }
    write_config(
        ws,
        &repo().join("rego"),
        &["node-a"],
        &policy,
        &format!("decision_log:\n  path: {}\n", log_path(ws).display()),
    )
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line ({e}): {l}")))
        .collect()
}

fn shadow_lines(ws: &Workspace) -> Vec<Value> {
    lines(&log_path(ws))
        .into_iter()
        .filter(|l| l["event"] == "shadow_disagreement")
        .collect()
}

fn count(server: &Server, name: &str, label: &str, value: &str) -> f64 {
    metric(server, &format!("{name}{{{label}=\"{value}\"}}"))
        .unwrap_or_else(|| panic!("{name}{{{label}=\"{value}\"}} not exported"))
}

fn evaluations(server: &Server) -> BTreeMap<&'static str, f64> {
    ["agree", "disagree", "error", "dropped"]
        .into_iter()
        .map(|r| {
            (
                r,
                count(server, "tss_gate_shadow_evaluations_total", "result", r),
            )
        })
        .collect()
}

fn disagreements(server: &Server) -> BTreeMap<&'static str, f64> {
    ["would_approve", "would_reject", "codes_changed"]
        .into_iter()
        .map(|d| {
            (
                d,
                count(
                    server,
                    "tss_gate_shadow_disagreements_total",
                    "direction",
                    d,
                ),
            )
        })
        .collect()
}

/// The revision in a `*_info{revision="…"} 1` series, if exported.
fn info_revision(server: &Server, name: &str) -> Option<String> {
    metrics_text(server).lines().find_map(|l| {
        l.strip_prefix(&format!("{name}{{revision=\""))
            .and_then(|r| r.split('"').next())
            .map(str::to_owned)
    })
}

/// The traffic of the main test: (request, what the shadow set should say).
fn traffic() -> Vec<(CallbackRequest, Option<&'static str>)> {
    vec![
        (fixture("ping_approve.json", "ping-1"), Some("would_reject")),
        (
            fixture("keysign_token_not_allowed_reject.json", "pepe-1"),
            Some("would_approve"),
        ),
        (fixture("keysign_eth_approve.json", "eth-1"), None),
        (
            fixture("keysign_wallet_not_allowed_reject.json", "cc-1"),
            Some("codes_changed"),
        ),
        (
            fixture("integrity_eip1559_eth_usdt_approve.json", "vel-1"),
            Some("would_reject"),
        ),
        (
            fixture("keysign_destination_not_allowed_reject.json", "rej-1"),
            None,
        ),
    ]
}

#[test]
fn disagreements_are_logged_and_counted_and_answers_never_change() {
    let ws = Workspace::new();
    let shadow = policy_variant(
        &ws.path().join("shadow"),
        &[
            ("tss/keysign/token.rego", NO_TOKEN_RULE),
            ("tss/common/shadow.rego", SHADOW_RULES),
        ],
    );
    let server = Server::start(&shadow_config(&ws, Some(&shadow)));
    // The same live policy without shadow, in a workspace (and ledger) of
    // its own: the reference answers.
    let bare_ws = Workspace::new();
    let bare = Server::start(&shadow_config(&bare_ws, None));

    let sent = traffic();
    let mut answers: Vec<CallbackResponse> = Vec::new();
    for (req, _) in &sent {
        let with = send(&server, req);
        let without = send(&bare, req);
        assert_eq!(with, without, "shadow mode changed the answer");
        answers.push(with);
    }
    // The traffic covers both actions on the live side.
    let approvals = answers.iter().filter(|a| a.is_approval()).count();
    assert_eq!(approvals, 3, "{answers:?}");
    // A retry of the same request is replayed, not judged again.
    let retried = send(&server, &sent[1].0);
    assert_eq!(retried, answers[1]);

    let want: Vec<(&str, &str)> = sent
        .iter()
        .filter_map(|(r, d)| d.map(|d| (r.request_id.as_str(), d)))
        .collect();
    poll("the disagreement lines", WAIT, || {
        (shadow_lines(&ws).len() >= want.len()).then_some(())
    });
    poll("every shadow evaluation counted", WAIT, || {
        (evaluations(&server).values().sum::<f64>() >= sent.len() as f64).then_some(())
    });
    let live_rev = info_revision(&server, "tss_gate_policy_info").unwrap();
    let shadow_rev = info_revision(&server, "tss_gate_shadow_policy_info").unwrap();
    assert_ne!(live_rev, shadow_rev);

    let got = shadow_lines(&ws);
    let by_id: BTreeMap<&str, &Value> = got
        .iter()
        .map(|l| (l["request_id"].as_str().unwrap(), l))
        .collect();
    assert_eq!(got.len(), want.len(), "one line per disagreement: {got:#?}");
    for (id, direction) in &want {
        let l = by_id
            .get(id)
            .unwrap_or_else(|| panic!("no line for {id}: {got:#?}"));
        assert_eq!(l["direction"], *direction, "{l}");
        assert_eq!(l["v"], tss_gate::decision_log::EVENT_VERSION, "{l}");
        assert_eq!(l["key"], "node-a", "{l}");
        assert!(l["time"].as_str().unwrap().ends_with('Z'), "{l}");
        assert_eq!(l["live"]["policy_revision"], live_rev.as_str(), "{l}");
        assert_eq!(l["shadow"]["policy_revision"], shadow_rev.as_str(), "{l}");
        assert!(l.get("action").is_none(), "not a decision line: {l}");
        // The live side is what was answered.
        let answer = &answers[sent.iter().position(|(r, _)| r.request_id == *id).unwrap()];
        let live_action = if answer.is_approval() {
            "APPROVE"
        } else {
            "REJECT"
        };
        assert_eq!(l["live"]["action"], live_action, "{l}");
    }
    let codes = |l: &Value, side: &str| -> Vec<String> {
        l[side]["codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    };
    let reasons = |l: &Value, side: &str| l[side]["reasons"].as_array().unwrap().len();

    let pepe = by_id["pepe-1"];
    assert_eq!(pepe["request_type"], "KEYSIGN");
    assert_eq!(
        (
            pepe["live"]["action"].as_str(),
            pepe["shadow"]["action"].as_str()
        ),
        (Some("REJECT"), Some("APPROVE"))
    );
    assert_eq!(codes(pepe, "live"), vec!["keysign.token_not_allowed"]);
    assert_eq!(
        pepe["live"]["reasons"][0],
        "token `ETH_PEPE` is not in the allowed token list"
    );
    assert!(codes(pepe, "shadow").is_empty() && reasons(pepe, "shadow") == 0);

    let ping = by_id["ping-1"];
    assert_eq!(ping["request_type"], "PING");
    assert_eq!(ping["live"]["action"], "APPROVE");
    assert_eq!(ping["shadow"]["action"], "REJECT");
    assert_eq!(codes(ping, "shadow"), vec!["shadow.no_ping"]);
    assert_eq!(ping["shadow"]["reasons"][0], "the shadow set refuses pings");

    let cc = by_id["cc-1"];
    assert_eq!(
        (
            cc["live"]["action"].as_str(),
            cc["shadow"]["action"].as_str()
        ),
        (Some("REJECT"), Some("REJECT"))
    );
    let mut with_extra = codes(cc, "live");
    with_extra.push("shadow.extra".into());
    with_extra.sort();
    let mut shadow_codes = codes(cc, "shadow");
    shadow_codes.sort();
    assert_eq!(shadow_codes, with_extra);

    // Only the live input of a request under a spending limit has
    // `input.velocity` and `input.decided_at_ms`: the shadow set saw it.
    let vel = by_id["vel-1"];
    assert_eq!(codes(vel, "shadow"), vec!["shadow.velocity_seen"]);
    let vel_input = lines(&log_path(&ws))
        .into_iter()
        .find(|l| l["request_id"] == "vel-1" && l.get("event").is_none())
        .unwrap();
    assert!(
        vel_input["input"]["velocity"]
            .as_object()
            .is_some_and(|v| !v.is_empty()),
        "{vel_input}"
    );

    assert_eq!(
        evaluations(&server),
        BTreeMap::from([
            ("agree", 2.0),
            ("disagree", 4.0),
            ("error", 0.0),
            ("dropped", 0.0)
        ])
    );
    assert_eq!(
        disagreements(&server),
        BTreeMap::from([
            ("would_approve", 1.0),
            ("would_reject", 2.0),
            ("codes_changed", 1.0)
        ])
    );
    assert_eq!(metric(&server, "tss_gate_shadow_policy_load_ok"), Some(1.0));
    // The server without shadow exports the series at zero, and no lines.
    assert_eq!(evaluations(&bare).values().sum::<f64>(), 0.0);
    assert_eq!(disagreements(&bare).values().sum::<f64>(), 0.0);
    assert_eq!(info_revision(&bare, "tss_gate_shadow_policy_info"), None);
    assert!(shadow_lines(&bare_ws).is_empty());
}

#[test]
fn broken_shadow_never_stops_serving_and_reloads_like_the_live_set() {
    let ws = Workspace::new();
    let dir = ws.path().join("shadow");
    let broken = "package tss.common\n\ndeny contains x if {\n\tx := )\n}\n";
    let shadow = policy_variant(&dir, &[("tss/common/shadow.rego", broken)]);
    let cfg = shadow_config(&ws, Some(&shadow));
    let server = Server::start(&cfg);

    // Serving, without shadow, and saying why.
    let ping = |id: &str| send(&server, &fixture("ping_approve.json", id));
    assert!(ping("p-broken").is_approval());
    let logs = server.logs();
    let refusal = logs
        .lines()
        .find(|l| l.contains("shadow policy load refused"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{logs}"));
    assert!(
        refusal.contains("running without shadow") && refusal.contains("tss/common/shadow.rego:4"),
        "{refusal}"
    );
    assert_eq!(metric(&server, "tss_gate_shadow_policy_load_ok"), Some(0.0));
    assert_eq!(info_revision(&server, "tss_gate_shadow_policy_info"), None);
    // Wait as long as a shadow evaluation would take: nothing may come.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(evaluations(&server).values().sum::<f64>(), 0.0);
    assert!(shadow_lines(&ws).is_empty());

    // Fixed and reloaded: shadowing starts.
    write_atomic(&dir.join("tss/common/shadow.rego"), SHADOW_RULES);
    hup(&server);
    let rev = poll("the shadow set to load", WAIT, || {
        info_revision(&server, "tss_gate_shadow_policy_info")
    });
    assert_eq!(metric(&server, "tss_gate_shadow_policy_load_ok"), Some(1.0));
    assert!(ping("p-fixed").is_approval());
    poll("a line for p-fixed", WAIT, || {
        shadow_lines(&ws)
            .iter()
            .any(|l| l["request_id"] == "p-fixed" && l["direction"] == "would_reject")
            .then_some(())
    });

    // Broken again: refused, and the last good shadow set goes on.
    write_atomic(&dir.join("tss/common/shadow.rego"), broken);
    hup(&server);
    poll("the refusal", WAIT, || {
        (metric(&server, "tss_gate_shadow_policy_load_ok") == Some(0.0)).then_some(())
    });
    assert!(
        server
            .logs()
            .contains("the previous shadow set keeps evaluating")
    );
    assert_eq!(
        info_revision(&server, "tss_gate_shadow_policy_info"),
        Some(rev)
    );
    assert!(ping("p-kept").is_approval());
    poll("a line for p-kept", WAIT, || {
        shadow_lines(&ws)
            .iter()
            .any(|l| l["request_id"] == "p-kept")
            .then_some(())
    });

    // `shadow_dir` removed from the config: off.
    shadow_config(&ws, None);
    hup(&server);
    poll("shadow mode off", WAIT, || {
        info_revision(&server, "tss_gate_shadow_policy_info")
            .is_none()
            .then_some(())
    });
    assert!(server.logs().contains("shadow mode off"));
    let before = evaluations(&server);
    assert!(ping("p-off").is_approval());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(evaluations(&server), before);
    assert!(!shadow_lines(&ws).iter().any(|l| l["request_id"] == "p-off"));
    assert_eq!(metric(&server, "tss_gate_shadow_policy_load_ok"), Some(1.0));
}

#[test]
fn shadow_errors_are_counted_and_change_no_answer() {
    let ws = Workspace::new();
    let shadow = policy_variant(
        &ws.path().join("shadow"),
        &[("tss/common/conflict.rego", CONFLICT)],
    );
    let server = Server::start(&shadow_config(&ws, Some(&shadow)));
    let ids = ["e-1", "e-2", "e-3"];
    for id in ids {
        let a = send(&server, &fixture("keysign_eth_approve.json", id));
        assert!(a.is_approval() && a.error.is_empty(), "{a:?}");
        assert_eq!(a.request_id, id);
    }
    assert!(send(&server, &fixture("ping_approve.json", "e-ping")).is_approval());
    poll("every shadow evaluation counted", WAIT, || {
        (evaluations(&server).values().sum::<f64>() >= 4.0).then_some(())
    });
    assert_eq!(
        evaluations(&server),
        BTreeMap::from([
            ("agree", 1.0),
            ("disagree", 0.0),
            ("error", 3.0),
            ("dropped", 0.0)
        ])
    );
    assert!(shadow_lines(&ws).is_empty());
    // Logged, but once: a failing shadow set does not flood the log.
    let logs = server.logs();
    let failed: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("shadow evaluation failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{logs}");
    assert!(failed[0].contains("policy_error"), "{}", failed[0]);
    // The live set's own failure counters saw nothing.
    assert_eq!(
        metric(
            &server,
            "tss_gate_request_failures_total{reason=\"policy_error\"}"
        ),
        Some(0.0)
    );
}

#[test]
fn a_watched_shadow_set_reloads_without_a_signal() {
    let ws = Workspace::new();
    let dir = policy_variant(&ws.path().join("shadow"), &[]);
    let cfg = write_config(
        &ws,
        &repo().join("rego"),
        &["node-a"],
        &format!(
            "  watch: true\n  eval_timeout_ms: 5000\n  shadow_dir: {}\n",
            dir.display()
        ),
        &format!("decision_log:\n  path: {}\n", log_path(&ws).display()),
    );
    let server = Server::start(&cfg);
    let first = info_revision(&server, "tss_gate_shadow_policy_info").unwrap();
    assert!(send(&server, &fixture("ping_approve.json", "w-same")).is_approval());
    std::fs::write(dir.join("tss/common/shadow.rego"), SHADOW_RULES).unwrap();
    poll("the shadow set to reload", WAIT, || {
        info_revision(&server, "tss_gate_shadow_policy_info").filter(|r| *r != first)
    });
    assert!(send(&server, &fixture("ping_approve.json", "w-changed")).is_approval());
    poll("a line for w-changed", WAIT, || {
        shadow_lines(&ws)
            .iter()
            .any(|l| l["request_id"] == "w-changed" && l["direction"] == "would_reject")
            .then_some(())
    });
    assert!(
        !shadow_lines(&ws)
            .iter()
            .any(|l| l["request_id"] == "w-same")
    );
}

#[test]
fn check_reports_a_broken_shadow_set_as_a_warning_with_its_file() {
    let ws = Workspace::new();
    let broken = policy_variant(
        &ws.path().join("shadow-broken"),
        &[(
            "tss/common/shadow.rego",
            "package tss.common\n\ndeny contains x if {\n\tx := )\n}\n",
        )],
    );
    let check = |cfg: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tss-gate"))
            .args(["check", "--config"])
            .arg(cfg)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = check(&shadow_config(&ws, Some(&broken)));
    assert_eq!(code, Some(0), "serve would start: {out}{err}");
    assert!(out.contains("shadow policy: refused"), "{out}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("warning: shadow policy:") && l.contains("shadow.rego")),
        "{err}"
    );
    let good = policy_variant(&ws.path().join("shadow-good"), &[]);
    let (code, out, err) = check(&shadow_config(&ws, Some(&good)));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("shadow policy: ") && out.contains("revision"),
        "{out}"
    );
    assert!(!err.contains("shadow policy"), "{err}");
}
