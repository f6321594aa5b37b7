//! The node's events through the real server: a test plays the TSS Node
//! with its own event key over real HTTP. Holds follow the task (a failed
//! KEYSIGN frees its amount, after a restart too), events are idempotent
//! and handled out of order, bad tokens and payloads get 400, and a
//! `succeeded` task is audited: real signatures made with keys derived as
//! the node derives them pass, a tampered signature, a foreign hash or an
//! unapproved request raise the alarm.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/node_events.rs"]
mod node_events;
#[path = "common/node_sign.rs"]
mod node_sign;

use std::path::{Path, PathBuf};

use common::*;
use node_events::*;
use serde_json::{Value, json};
use tss_gate::protocol::{Action, CallbackRequest, CallbackResponse};

const USDT_FIXTURE: &str = "tests/fixtures/integrity_eip1559_eth_usdt_approve.json";

fn decision_log_section(ws: &Workspace) -> (String, PathBuf) {
    let p = ws.path().join("decisions.log");
    (
        format!("decision_log:\n  path: {}\n  input: full\n", p.display()),
        p,
    )
}

fn state_section(ws: &Workspace) -> String {
    format!(
        "state:\n  sqlite:\n    path: {}\n",
        ws.path().join("state.db").display()
    )
}

fn approved(a: &CallbackResponse) -> bool {
    a.status.code() == 0 && a.action == Some(Action::Approve)
}

fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn event_lines(path: &Path, kind: &str) -> Vec<Value> {
    log_lines(path)
        .into_iter()
        .filter(|l| l["event"] == kind)
        .collect()
}

fn metrics_text(server: &Server) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        reqwest::get(server.url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body")
    })
}

/// The value of the series `name` whose labels include all of `labels`,
/// summed over the rest.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                return None;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

fn usdt_request(id: &str) -> CallbackRequest {
    let mut r = tss_gate::fixture::load_request(&repo().join(USDT_FIXTURE)).expect("fixture");
    r.request_id = id.to_owned();
    r
}

#[test]
fn a_failed_keysign_frees_its_hold_across_a_restart_and_events_are_idempotent() {
    let ws = Workspace::new();
    // Exactly one transfer of the fixture's amount fits.
    let limit = "- id: usdt_wallet_24h\n  match: {token_ids: [ETH_USDT]}\n  group_by: [wallet, token]\n  window: 24h\n  max_amount: \"9999.99\"\n";
    let policy = policy_with_limits(&ws, Some(limit));
    let (log_cfg, log) = decision_log_section(&ws);
    let extra = format!("{}{}{}", events_section(&ws), log_cfg, state_section(&ws));
    let config = ws.config_with_policy(&policy, &extra);

    let server = Server::start(&config);
    assert!(approved(&send(&server, &usdt_request("hold-a"))));
    let b = send(&server, &usdt_request("hold-b"));
    assert!(!approved(&b), "the cap is reached: {b:?}");
    assert!(b.error.contains("usdt_wallet_24h"), "{}", b.error);

    // The approval survives a restart; the event arrives afterwards.
    drop(server);
    let server = Server::start(&config);
    let failed = event(
        "ev-fail-a",
        "request.keysign.failed",
        "hold-a",
        170,
        Value::Null,
    );
    accepted(post_event(&server, &failed, event_key()));
    // At-least-once delivery: the same event again changes nothing.
    accepted(post_event(&server, &failed, event_key()));

    let c = send(&server, &usdt_request("hold-c"));
    assert!(approved(&c), "the released hold makes room: {c:?}");
    let d = send(&server, &usdt_request("hold-d"));
    assert!(
        !approved(&d),
        "one transfer fits, and hold-c holds it: {d:?}"
    );

    // Out of order: completed (status 190 via an update) and then a late
    // failure for the same task: the executed task keeps its hold.
    let done = event(
        "ev-done-c",
        "request.keysign.updated",
        "hold-c",
        190,
        Value::Null,
    );
    accepted(post_event(&server, &done, event_key()));
    let late = event(
        "ev-late-c",
        "request.keysign.failed",
        "hold-c",
        170,
        Value::Null,
    );
    accepted(post_event(&server, &late, event_key()));
    let e = send(&server, &usdt_request("hold-e"));
    assert!(
        !approved(&e),
        "a failure after execution frees nothing: {e:?}"
    );

    // Events for a request never seen, and of unknown types, are stored.
    accepted(post_event(
        &server,
        &event(
            "ev-unknown",
            "request.keysign.failed",
            "never-seen",
            170,
            Value::Null,
        ),
        event_key(),
    ));
    let mut odd = event(
        "ev-odd",
        "request.keysign.created",
        "hold-e",
        110,
        Value::Null,
    );
    odd["event_type"] = json!("request.keysign.teleported");
    accepted(post_event(&server, &odd, event_key()));

    // Bad tokens and payloads: 400 with an empty JSON string, as the sample.
    let stranger = post_event(
        &server,
        &event("ev-x", "request.keysign.failed", "hold-d", 170, Value::Null),
        &test_keys().stranger,
    );
    assert_eq!(stranger, (400, "\"\"".to_owned()));
    let callback_key = post_event(
        &server,
        &event("ev-y", "request.keysign.failed", "hold-d", 170, Value::Null),
        &test_keys().node,
    );
    assert_eq!(callback_key.0, 400, "the callback key is not an event key");
    let mut no_id = event("ev-z", "request.keysign.failed", "hold-d", 170, Value::Null);
    no_id["data"]
        .as_object_mut()
        .expect("data")
        .remove("request_id");
    assert_eq!(post_event(&server, &no_id, event_key()).0, 400);
    let addr = server.events_addr.clone().expect("events");
    assert_eq!(
        post_form(&format!("http://{addr}/v2/event"), "TSS_JWT_MSG=not.a.jwt").0,
        400
    );

    let released = event_lines(&log, "task_released");
    assert_eq!(released.len(), 1, "one release line: {released:?}");
    assert_eq!(released[0]["request_id"], "hold-a");
    assert_eq!(released[0]["event_id"], "ev-fail-a");
    assert_eq!(released[0]["ledger_rows"], 1);
    let executed = event_lines(&log, "task_executed");
    assert_eq!(executed.len(), 1, "{executed:?}");
    assert_eq!(executed[0]["request_id"], "hold-c");

    let m = metrics_text(&server);
    let ev = tss_gate::events::metrics::EVENTS_TOTAL;
    assert_eq!(metric(&m, ev, &[("result", "accepted")]), 5.0, "{m}");
    assert_eq!(metric(&m, ev, &[("result", "duplicate")]), 1.0);
    assert_eq!(metric(&m, ev, &[("result", "bad_token")]), 3.0);
    assert_eq!(metric(&m, ev, &[("result", "bad_payload")]), 1.0);
    let outcomes = tss_gate::events::metrics::TASK_OUTCOMES_TOTAL;
    assert_eq!(
        metric(
            &m,
            outcomes,
            &[("request_type", "KEYSIGN"), ("outcome", "failed")]
        ),
        3.0
    );
    assert_eq!(
        metric(
            &m,
            outcomes,
            &[("request_type", "KEYSIGN"), ("outcome", "succeeded")]
        ),
        1.0
    );

    // `ledger show` tells the state of each hold.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tss-gate"))
        .args(["ledger", "show", "--entries", "--json", "--config"])
        .arg(&config)
        .output()
        .expect("ledger");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("ledger json");
    let entry = |id: &str| {
        doc["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|e| e["request_id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(entry("hold-a")["task"]["state"], "released", "{doc}");
    assert_eq!(entry("hold-a")["state"], "voided", "{doc}");
    assert_eq!(entry("hold-c")["task"]["state"], "executed", "{doc}");
    assert_eq!(entry("hold-c")["state"], "held", "{doc}");
    assert!(
        entry("hold-a")["task"]["change_reason"]
            .as_str()
            .is_some_and(|r| r.contains("ev-fail-a")),
        "{doc}"
    );
}

/// A policy that approves every task but a request id starting `deny-`, so
/// the audit is tested with keys the test owns.
fn permissive_policy(ws: &Workspace) -> PathBuf {
    let dir = ws.path().join("permissive");
    std::fs::create_dir_all(dir.join("tss")).expect("dir");
    std::fs::write(
        dir.join("tss/decision.rego"),
        "package tss\n\ndenied if startswith(input.request_id, \"deny-\")\n\n\
         decision := {\"allow\": false, \"reasons\": [\"denied by the test\"], \"codes\": [\"test.deny\"]} if denied\n\n\
         decision := {\"allow\": true, \"reasons\": [], \"codes\": []} if not denied\n",
    )
    .expect("write");
    dir
}

fn keysign(id: &str, root: &str, paths: &[&str], hashes: &[&str], sig_type: u8) -> CallbackRequest {
    CallbackRequest {
        request_id: id.to_owned(),
        request_type: 2,
        request_detail: json!({
            "group_id": "g1",
            "root_pub_key": root,
            "used_node_ids": ["node-a", "node-b"],
            "msg_hash_list": hashes,
            "bip32_path_list": paths,
            "tweak_list": [],
            "signature_type": sig_type,
            "tss_protocol": 1,
        })
        .to_string(),
        extra_info: json!({"transaction": {"source": {"address": "x"}}}).to_string(),
    }
}

fn succeeded(id: &str, request_id: &str, signatures: Vec<Value>, sig_type: u8) -> Value {
    event(
        id,
        "request.keysign.succeeded",
        request_id,
        190,
        json!({"signatures": signatures, "signature_type": sig_type, "tss_protocol": 1}),
    )
}

#[test]
fn the_audit_passes_real_signatures_and_alarms_on_forgeries() {
    let ws = Workspace::new();
    let policy = permissive_policy(&ws);
    let (log_cfg, log) = decision_log_section(&ws);
    let extra = format!("{}{}{}", events_section(&ws), log_cfg, state_section(&ws));
    let config = ws.config_with_policy(&policy, &extra);
    let server = Server::start(&config);

    let node = node_sign::NodeKey::from_seed(b"tss-gate events test seed, 32 bytes!");
    let root = node.root_pub_key();
    let (p0, p1) = ("m/44/60/0/0/0", "m/44/60/0/0/1");
    let h0 = "11".repeat(32);
    let h1 = "22".repeat(32);
    let req = keysign("sign-1", &root, &[p0, p1], &[&h0, &h1], 1);
    assert!(approved(&send(&server, &req)));

    // The node's real signatures: no alarm.
    let good = vec![node.sign(p0, &h0, 1), node.sign(p1, &h1, 1)];
    accepted(post_event(
        &server,
        // Carrying its request, as the node reports it.
        &about(succeeded("ev-ok", "sign-1", good.clone(), 1), &req),
        event_key(),
    ));
    assert!(event_lines(&log, "unapproved_signature").is_empty());

    // A tampered signature: one bit flipped.
    let mut tampered = good.clone();
    let sig = tampered[1]["signature"].as_str().expect("hex").to_owned();
    let mut bytes = hex::decode(sig.trim_start_matches("0x")).expect("hex");
    bytes[5] ^= 0x01;
    tampered[1]["signature"] = json!(hex::encode(bytes));
    accepted(post_event(
        &server,
        &succeeded("ev-tamper", "sign-1", tampered, 1),
        event_key(),
    ));

    // A real signature, by the right key, of a hash tss-gate never approved.
    let foreign = "33".repeat(32);
    let forged = vec![node.sign(p0, &foreign, 1)];
    accepted(post_event(
        &server,
        &succeeded("ev-foreign", "sign-1", forged, 1),
        event_key(),
    ));

    // A signature for a request tss-gate rejected, and one it never saw.
    let denied = keysign("deny-2", &root, &[p0], &[&h0], 1);
    assert!(!approved(&send(&server, &denied)));
    let sig = vec![node.sign(p0, &h0, 1)];
    accepted(post_event(
        &server,
        &succeeded("ev-denied", "deny-2", sig.clone(), 1),
        event_key(),
    ));
    accepted(post_event(
        &server,
        &succeeded("ev-never", "never-3", sig, 1),
        event_key(),
    ));

    // A key generated that was never approved.
    accepted(post_event(
        &server,
        &event(
            "ev-keygen",
            "request.keygen.succeeded",
            "keygen-9",
            190,
            json!({}),
        ),
        event_key(),
    ));

    let alarms = event_lines(&log, "unapproved_signature");
    let codes: Vec<(String, Vec<String>)> = alarms
        .iter()
        .map(|a| {
            (
                a["event_id"].as_str().unwrap_or("").to_owned(),
                a["alarms"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| x["code"].as_str().unwrap_or("").to_owned())
                    .collect(),
            )
        })
        .collect();
    let find = |id: &str| {
        codes
            .iter()
            .find(|(e, _)| e == id)
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| panic!("no alarm line for {id}: {codes:?}"))
    };
    assert_eq!(find("ev-tamper"), vec!["bad_signature"]);
    assert_eq!(find("ev-foreign"), vec!["hash_not_approved"]);
    assert_eq!(find("ev-denied"), vec!["request_not_approved"]);
    assert_eq!(find("ev-never"), vec!["request_not_approved"]);
    assert_eq!(find("ev-keygen"), vec!["request_not_approved"]);
    assert_eq!(alarms.len(), 5, "{codes:?}");
    assert!(server.logs().contains("ALARM"));

    let m = metrics_text(&server);
    let name = tss_gate::events::metrics::UNAPPROVED_SIGNATURES_TOTAL;
    assert_eq!(metric(&m, name, &[("code", "bad_signature")]), 1.0, "{m}");
    assert_eq!(metric(&m, name, &[("code", "hash_not_approved")]), 1.0);
    assert_eq!(
        metric(
            &m,
            name,
            &[
                ("request_type", "KEYSIGN"),
                ("code", "request_not_approved")
            ]
        ),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            name,
            &[("request_type", "KEYGEN"), ("code", "request_not_approved")]
        ),
        1.0
    );
    let completion = format!(
        "{}_count",
        tss_gate::events::metrics::TASK_COMPLETION_SECONDS
    );
    assert_eq!(metric(&m, &completion, &[("request_type", "KEYSIGN")]), 1.0);

    // A redelivered alarm event is not counted twice.
    let again = post_event(
        &server,
        &succeeded("ev-never", "never-3", vec![node.sign(p0, &h0, 1)], 1),
        event_key(),
    );
    accepted(again);
    let m = metrics_text(&server);
    assert_eq!(
        metric(
            &m,
            name,
            &[
                ("request_type", "KEYSIGN"),
                ("code", "request_not_approved")
            ]
        ),
        2.0
    );
}

#[test]
fn schnorr_and_ed25519_signatures_are_audited_too() {
    let ws = Workspace::new();
    let policy = permissive_policy(&ws);
    let (log_cfg, log) = decision_log_section(&ws);
    let extra = format!("{}{}{}", events_section(&ws), log_cfg, state_section(&ws));
    let config = ws.config_with_policy(&policy, &extra);
    let server = Server::start(&config);
    let node = node_sign::NodeKey::from_seed(b"another seed for schnorr and eddsa");
    let root = node.root_pub_key();

    let path = "m/86/0/0/0/0";
    let h = "44".repeat(32);
    assert!(approved(&send(
        &server,
        &keysign("tr-1", &root, &[path], &[&h], 3)
    )));
    let sig = vec![node.sign(path, &h, 3)];
    accepted(post_event(
        &server,
        &succeeded("ev-tr", "tr-1", sig, 3),
        event_key(),
    ));
    // The same signature claimed under ECDSA is not what was approved.
    let sig = vec![node.sign(path, &h, 3)];
    accepted(post_event(
        &server,
        &succeeded("ev-tr-type", "tr-1", sig, 1),
        event_key(),
    ));

    let sol_path = "m/44/501/0/0";
    let msg = "0102030405060708090a";
    let mut req = keysign("sol-1", &root, &[sol_path], &[msg], 2);
    req.extra_info =
        json!({"transaction": {"source": {"address": node.ed25519_address()}}}).to_string();
    assert!(approved(&send(&server, &req)));
    let good = node.sign(sol_path, msg, 2);
    accepted(post_event(
        &server,
        &succeeded("ev-sol", "sol-1", vec![good.clone()], 2),
        event_key(),
    ));
    let mut bad = good;
    let s = bad["signature"].as_str().expect("hex").to_owned();
    let mut b = hex::decode(s.trim_start_matches("0x")).expect("hex");
    b[40] ^= 0x80;
    bad["signature"] = json!(hex::encode(b));
    accepted(post_event(
        &server,
        &succeeded("ev-sol-bad", "sol-1", vec![bad], 2),
        event_key(),
    ));

    let ids: Vec<String> = event_lines(&log, "unapproved_signature")
        .iter()
        .map(|a| a["event_id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(ids, vec!["ev-tr-type".to_owned(), "ev-sol-bad".to_owned()]);
}

const USDT_24H: &str = "- id: usdt_wallet_24h\n  match: {token_ids: [ETH_USDT]}\n  group_by: [wallet, token]\n  window: 24h\n  max_amount: \"9999.99\"\n";

#[test]
fn release_on_declined_only_keeps_the_hold_of_a_failed_task() {
    let ws = Workspace::new();
    let policy = policy_with_limits(&ws, Some(USDT_24H));
    let (log_cfg, log) = decision_log_section(&ws);
    let extra = format!(
        "{}  release_on: [declined]\n{}{}",
        events_section(&ws),
        log_cfg,
        state_section(&ws)
    );
    let config = ws.config_with_policy(&policy, &extra);
    let server = Server::start(&config);
    let a = usdt_request("rel-a");
    assert!(approved(&send(&server, &a)));
    // The approved task's own failure, carrying its request.
    accepted(post_event(
        &server,
        &about(
            event(
                "ev-rel-fail",
                "request.keysign.failed",
                "rel-a",
                170,
                Value::Null,
            ),
            &a,
        ),
        event_key(),
    ));
    assert!(
        !approved(&send(&server, &usdt_request("rel-b"))),
        "a failure does not release with release_on: [declined]"
    );
    // Nor does a `declined` (which release_on lists): tss-gate approved
    // this id, so the "no" was another approver's, maybe on another attempt.
    accepted(post_event(
        &server,
        &about(
            event(
                "ev-rel-decl",
                "request.keysign.failed",
                "rel-a",
                160,
                Value::Null,
            ),
            &a,
        ),
        event_key(),
    ));
    let c = send(&server, &usdt_request("rel-c"));
    assert!(
        !approved(&c),
        "a declined under an approved id frees nothing: {c:?}"
    );
    assert!(c.error.contains("usdt_wallet_24h"), "{}", c.error);
    assert!(event_lines(&log, "task_released").is_empty());
    let alarms = event_lines(&log, "event_alarm");
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0]["event_id"], "ev-rel-decl");
    assert_eq!(alarms[0]["alarms"][0]["code"], "declined_after_approval");
    assert_eq!(alarms[0]["state"], "approved");
}

/// The request `r` re-sent under its id with another payload: `detail`
/// and `extra` change its two documents.
fn resent(
    r: &CallbackRequest,
    detail: impl Fn(&mut Value),
    extra: impl Fn(&mut Value),
) -> CallbackRequest {
    let mut d: Value = serde_json::from_str(&r.request_detail).expect("detail");
    let mut e: Value = serde_json::from_str(&r.extra_info).expect("extra");
    detail(&mut d);
    extra(&mut e);
    CallbackRequest {
        request_detail: d.to_string(),
        extra_info: e.to_string(),
        ..r.clone()
    }
}

/// The report's end-to-end case: five transfers of 9,999.99 fill a 50,000
/// limit, and no event about anything but an approved task itself (a
/// decline, a re-send under the id, another kind of task under it) makes
/// room for a sixth or seventh. The approved task's own failure does.
#[test]
fn events_about_another_attempt_never_free_an_approved_hold() {
    let ws = Workspace::new();
    let limit = "- id: usdt_wallet_24h\n  match: {token_ids: [ETH_USDT]}\n  group_by: [wallet, token]\n  window: 24h\n  max_amount: \"50000\"\n";
    let policy = policy_with_limits(&ws, Some(limit));
    let (log_cfg, log) = decision_log_section(&ws);
    let extra = format!("{}{}{}", events_section(&ws), log_cfg, state_section(&ws));
    let config = ws.config_with_policy(&policy, &extra);
    let server = Server::start(&config);

    let reqs: Vec<CallbackRequest> = (1..=5)
        .map(|i| usdt_request(&format!("fill-{i}")))
        .collect();
    for r in &reqs {
        assert!(approved(&send(&server, r)), "{}", r.request_id);
    }
    let mut n = 0;
    let mut over_the_limit = |why: &str| {
        n += 1;
        let a = send(&server, &usdt_request(&format!("over-{n}")));
        assert!(!approved(&a), "{why}: {a:?}");
        assert!(a.error.contains("usdt_wallet_24h"), "{why}: {}", a.error);
    };
    over_the_limit("five fill the limit");

    // 1. Declined under an approved id, however reported: status 160 on a
    // failed or an updated event, or a failure whose reason is a refusal.
    let declined = [
        about(
            event(
                "ev-d1",
                "request.keysign.failed",
                "fill-1",
                160,
                Value::Null,
            ),
            &reqs[0],
        ),
        about(
            event(
                "ev-d2",
                "request.keysign.updated",
                "fill-1",
                160,
                Value::Null,
            ),
            &reqs[0],
        ),
        event(
            "ev-d3",
            "request.keysign.failed",
            "fill-1",
            160,
            Value::Null,
        ),
    ];
    for ev in &declined {
        accepted(post_event(&server, ev, event_key()));
    }
    let mut refused = about(
        event(
            "ev-d4",
            "request.keysign.failed",
            "fill-2",
            170,
            Value::Null,
        ),
        &reqs[1],
    );
    refused["data"]["failed_reason"] = json!("rejected by callback server cb-2");
    accepted(post_event(&server, &refused, event_key()));
    over_the_limit("a declined never frees an approval's hold");

    // 2. A re-send under an approved id with another request: tss-gate
    // refuses it, and the node's failure of that attempt carries it.
    let other_detail = resent(&reqs[2], |d| d["task_id"] = json!("task-resent"), |_| {});
    let other_extra = resent(
        &reqs[2],
        |_| {},
        |e| e["transaction"]["description"] = json!("re-sent"),
    );
    for r in [&other_detail, &other_extra] {
        let a = send(&server, r);
        assert!(!approved(&a), "a re-send with another payload: {a:?}");
    }
    accepted(post_event(
        &server,
        &about(
            event(
                "ev-r1",
                "request.keysign.failed",
                "fill-3",
                170,
                Value::Null,
            ),
            &other_detail,
        ),
        event_key(),
    ));
    accepted(post_event(
        &server,
        &about(
            event(
                "ev-r2",
                "request.keysign.failed",
                "fill-3",
                180,
                Value::Null,
            ),
            &other_extra,
        ),
        event_key(),
    ));
    over_the_limit("a failure of another request under the id frees nothing");

    // 3. Another kind of task under an approved id.
    for (id, t) in [
        ("ev-k1", "request.keygen.failed"),
        ("ev-k2", "request.keyreshare.failed"),
        ("ev-k3", "request.keysharesign.failed"),
    ] {
        accepted(post_event(
            &server,
            &event(id, t, "fill-4", 170, Value::Null),
            event_key(),
        ));
    }
    // A re-send carrying the approved request can still be another kind.
    accepted(post_event(
        &server,
        &about(
            event(
                "ev-k4",
                "request.keygen.updated",
                "fill-4",
                180,
                Value::Null,
            ),
            &reqs[3],
        ),
        event_key(),
    ));
    over_the_limit("an event of another kind frees nothing");

    // Redelivered alarms change nothing and are counted once.
    accepted(post_event(&server, &declined[0], event_key()));
    over_the_limit("still full");
    assert!(event_lines(&log, "task_released").is_empty());
    assert!(server.logs().contains("ALARM"));

    let codes = |id: &str| -> Vec<String> {
        let lines: Vec<Value> = event_lines(&log, "event_alarm")
            .into_iter()
            .filter(|l| l["event_id"] == id)
            .collect();
        assert_eq!(lines.len(), 1, "one alarm line for {id}: {lines:?}");
        lines[0]["alarms"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a["code"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    for id in ["ev-d1", "ev-d2", "ev-d3", "ev-d4"] {
        assert_eq!(codes(id), vec!["declined_after_approval"], "{id}");
    }
    assert_eq!(codes("ev-r1"), vec!["request_detail_mismatch"]);
    assert_eq!(codes("ev-r2"), vec!["extra_info_mismatch"]);
    for id in ["ev-k1", "ev-k2", "ev-k3", "ev-k4"] {
        assert_eq!(codes(id), vec!["request_type_mismatch"], "{id}");
    }
    let keygen = event_lines(&log, "event_alarm")
        .into_iter()
        .find(|l| l["event_id"] == "ev-k1")
        .expect("ev-k1");
    assert_eq!(
        (
            keygen["request_type"].as_str(),
            keygen["approved_type"].as_str()
        ),
        (Some("KEYGEN"), Some("KEYSIGN"))
    );

    let m = metrics_text(&server);
    let name = tss_gate::events::metrics::EVENT_ALARMS_TOTAL;
    let count = |labels: &[(&str, &str)]| metric(&m, name, labels);
    assert_eq!(
        count(&[
            ("request_type", "KEYSIGN"),
            ("code", "declined_after_approval")
        ]),
        4.0,
        "{m}"
    );
    assert_eq!(count(&[("code", "request_detail_mismatch")]), 1.0);
    assert_eq!(count(&[("code", "extra_info_mismatch")]), 1.0);
    assert_eq!(count(&[("code", "request_type_mismatch")]), 4.0);
    assert_eq!(
        count(&[
            ("request_type", "KEYGEN"),
            ("code", "request_type_mismatch")
        ]),
        2.0
    );
    assert_eq!(count(&[]), 10.0);

    // Legitimate: the approved task's own failure, carrying its request
    // with its keys in another order, frees exactly its amount.
    accepted(post_event(
        &server,
        &about(
            event(
                "ev-own",
                "request.keysign.failed",
                "fill-5",
                170,
                Value::Null,
            ),
            &reqs[4],
        ),
        event_key(),
    ));
    let released = event_lines(&log, "task_released");
    assert_eq!(released.len(), 1, "{released:?}");
    assert_eq!(released[0]["request_id"], "fill-5");
    assert!(
        approved(&send(&server, &usdt_request("after-own"))),
        "its room is free"
    );
    over_the_limit("one transfer's room, used again");
}

#[test]
fn by_default_the_approved_tasks_own_failure_or_cancel_releases_it() {
    let ws = Workspace::new();
    let policy = policy_with_limits(&ws, Some(USDT_24H));
    let (log_cfg, log) = decision_log_section(&ws);
    let extra = format!("{}{}{}", events_section(&ws), log_cfg, state_section(&ws));
    let server = Server::start(&ws.config_with_policy(&policy, &extra));
    let a = usdt_request("own-a");
    assert!(approved(&send(&server, &a)));
    // A `succeeded` about another request under the id is audited and does
    // not mark the approval executed: a later failure of the approved task
    // itself still releases it (default release_on).
    let other = resent(&a, |d| d["task_id"] = json!("other"), |_| {});
    accepted(post_event(
        &server,
        &about(
            event(
                "ev-own-s",
                "request.keysign.updated",
                "own-a",
                190,
                Value::Null,
            ),
            &other,
        ),
        event_key(),
    ));
    assert!(event_lines(&log, "task_executed").is_empty());
    assert_eq!(event_lines(&log, "event_alarm").len(), 1);
    accepted(post_event(
        &server,
        &about(
            event(
                "ev-own-f",
                "request.keysign.failed",
                "own-a",
                170,
                Value::Null,
            ),
            &a,
        ),
        event_key(),
    ));
    assert!(
        approved(&send(&server, &usdt_request("own-b"))),
        "the approved task's own failure releases its hold"
    );
    // Canceled, likewise.
    accepted(post_event(
        &server,
        &about(
            event(
                "ev-own-c",
                "request.keysign.updated",
                "own-b",
                180,
                Value::Null,
            ),
            &usdt_request("own-b"),
        ),
        event_key(),
    ));
    assert!(approved(&send(&server, &usdt_request("own-c"))));
    assert!(!approved(&send(&server, &usdt_request("own-d"))));
    assert_eq!(event_lines(&log, "task_released").len(), 2);
}

#[test]
fn an_approval_the_audit_could_not_check_is_never_given() {
    let ws = Workspace::new();
    let policy = permissive_policy(&ws);
    let extra = format!("{}{}", events_section(&ws), state_section(&ws));
    let server = Server::start(&ws.config_with_policy(&policy, &extra));
    let h = "11".repeat(32);
    // The policy approves, but nothing binds its hashes to a key: no root,
    // then a root that is not an extended public key, then a path that
    // does not parse.
    for (id, root, path) in [
        ("unaudited-1", "", "m/44/60/0/0/0"),
        ("unaudited-2", "xpub-not-a-key", "m/44/60/0/0/0"),
        (
            "unaudited-3",
            node_sign::NodeKey::from_seed(b"unaudited")
                .root_pub_key()
                .leak() as &str,
            "m/44'/60",
        ),
    ] {
        let req = keysign(id, root, &[path], &[&h], 1);
        for attempt in 0..2 {
            let a = send(&server, &req);
            assert_eq!(a.status.code(), 30, "{id} attempt {attempt}: {a:?}");
            assert_ne!(a.action, Some(Action::Approve), "{id}: {a:?}");
        }
    }
    assert!(server.logs().contains("approval not recorded"));
}
