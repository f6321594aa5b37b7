//! Issue 36, item 2: the operator's data and fixtures are the operator's.
//!
//! The library's own tests (every `*_test.rego` beside a rule) use their
//! own test data and hold for any `rego/data.yaml`; only
//! `tss/operator_data_test.rego` reads the live data, and only its shape.
//! The shipped `tests/fixtures` are the example organisation's, for the
//! shipped data; an operator replaces them with their own
//! (`policy.fixtures`). So:
//!
//! - an operator who copies `rego/`, tightens the numbers (a 25,000 USDT
//!   per-transaction cap, 20,000 a day) and keeps two fixtures of their own
//!   gets a set that the server loads under the default reload gate, at
//!   start and on `SIGHUP`, and that decides by the new numbers; the gate
//!   runs the operator's fixtures (a stale one refuses the reload), not the
//!   example's; `tss-gate test` on the copy passes;
//! - the library's tests pass on very different data sets (empty, another
//!   organisation, every type open or closed, frozen), and a data set of
//!   the wrong shape fails the data checks alone.
//!
//! `TSS_GATE_TEST_LIBRARY=DIR` runs these against another copy of the
//! library (e.g. an older `rego/`, to see them fail there).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/cli.rs"]
mod cli;
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cli::*;
use common::*;
use serde_json::{Value, json};
use serde_yaml_ng::Value as Yaml;
use tss_gate::protocol::{Action, CallbackRequest};

/// The policy library to copy: this repository's `rego/`, or
/// `TSS_GATE_TEST_LIBRARY`.
fn library() -> PathBuf {
    std::env::var_os("TSS_GATE_TEST_LIBRARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("rego"))
}

/// `tss-gate test` on a policy directory and a fixture directory, from
/// `cwd`: (exit code, JSON report, stderr).
fn run_tests(policy: &Path, fixtures: &Path, cwd: &Path) -> (Option<i32>, Value, String) {
    test_report(policy, fixtures, cwd, &[])
}

fn count_of(doc: &Value, kind: &str) -> usize {
    doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|c| c["kind"] == kind)
        .count()
}

fn read_yaml(path: &Path) -> Yaml {
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).expect("data.yaml")).expect("yaml")
}

fn write_yaml(path: &Path, v: &Yaml) {
    std::fs::write(path, serde_yaml_ng::to_string(v).expect("yaml")).expect("write data.yaml");
}

fn set_cap(data: &mut Yaml, token: &str, cap: &str) {
    let caps = &mut data["keysign"]["max_amount_per_tx"];
    assert!(caps.get(token).is_some(), "the data caps {token}");
    caps[token] = Yaml::from(cap);
}

fn set_limit(data: &mut Yaml, id: &str, max: &str) {
    let limits = data["velocity"]["limits"]
        .as_sequence_mut()
        .expect("velocity.limits");
    let l = limits
        .iter_mut()
        .find(|l| l["id"].as_str() == Some(id))
        .unwrap_or_else(|| panic!("the data has the limit {id}"));
    l["max_amount"] = Yaml::from(max);
}

/// The example organisation's data, tightened the way the compliance
/// engineer of issue 36 did: 25,000 per USDT transfer, 20,000 USDT a day
/// per wallet and per source, 60 ETH a day.
fn tightened(data: &mut Yaml) {
    for t in ["ETH_USDT", "TRON_USDT"] {
        set_cap(data, t, "25000");
    }
    for id in [
        "eth_usdt_wallet_24h",
        "eth_usdt_source_24h",
        "tron_usdt_wallet_24h",
        "tron_usdt_source_24h",
    ] {
        set_limit(data, id, "20000");
    }
    for id in ["eth_wallet_24h", "eth_source_24h"] {
        set_limit(data, id, "60");
    }
}

fn shipped_fixture(name: &str) -> Value {
    let p = repo().join("tests/fixtures").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("fixture json")
}

fn write_fixture(dir: &Path, name: &str, f: &Value) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(f).expect("json"),
    )
    .expect("write fixture");
}

/// 250,000 USDT to the treasury: the example approves it (its cap is
/// 1,000,000); this operator's cap rejects it.
const OVER_CAP: &str = "keysign_usdt_treasury_over_cap_approve";
/// One 9,999.99 USDT transfer with a bound raw transaction.
const USDT_SEND: &str = "integrity_eip1559_eth_usdt_approve";
/// 0.75 ETH, under the example's and this operator's first caps.
const ETH_SEND: &str = "keysign_eth_approve";

fn over_cap_fixture(cap: &str) -> Value {
    let mut f = shipped_fixture(OVER_CAP);
    f["description"] = json!(format!(
        "250,000 USDT to our treasury is over our {cap} per-transaction cap"
    ));
    f["request"]["request_id"] = json!("acme-ops-over-cap-1");
    f["expect"] = json!({"action": "REJECT", "status": 0,
        "reasons": [format!("exceeds the per-transaction cap `{cap}`")]});
    f
}

/// The day's third 9,999.99 USDT send from one wallet: over 20,000.
fn third_send_fixture() -> Value {
    let mut f = shipped_fixture(USDT_SEND);
    let extra: Value = match &f["request"]["extra_info"] {
        Value::String(s) => serde_json::from_str(s).expect("extra_info"),
        v => v.clone(),
    };
    let wallet = extra["transaction"]["wallet_id"].clone();
    assert!(wallet.is_string(), "the send names its wallet");
    f["description"] = json!("the wallet's third 9,999.99 USDT send today passes our 20,000 a day");
    f["request"]["request_id"] = json!("acme-ops-third-send-1");
    f["received_at_ms"] = json!(1_764_000_000_000_i64);
    f["history"] = json!([{"limit": "eth_usdt_wallet_24h",
        "group": {"wallet": wallet, "token": "ETH_USDT"},
        "amount": "9999.99", "ago": "3h", "repeat": 2}]);
    f["expect"] = json!({"action": "REJECT", "status": 0,
        "reasons": ["spending limit `eth_usdt_wallet_24h`", "exceeds the maximum 20000"]});
    f
}

/// The default policy settings (no `require_passing_tests` line: the gate
/// is on) with this policy and fixture directory. `watch: false`: the
/// reloads below are the `SIGHUP`s the test sends.
fn default_gate_config(ws: &Workspace, policy: &Path, fixtures: &Path) -> PathBuf {
    let kd = ws.path().join("keys");
    let text = format!(
        "callback_server:\n  service_name: tss-gate-test\n  endpoint: \"127.0.0.1:0\"\n  token_expire_minutes: 2\n  service_private_key_path: {}\n  tss_node_keys:\n    - name: node-a\n      path: {}\npolicy:\n  dir: {}\n  fixtures: {}\n  watch: false\n",
        kd.join("callback-server.pem").display(),
        kd.join("node-a.pub.pem").display(),
        policy.display(),
        fixtures.display(),
    );
    assert!(!text.contains("require_passing_tests"));
    let p = ws.path().join("tss-gate.yaml");
    std::fs::write(&p, text).expect("write config");
    p
}

fn request(fixture: &str, id: &str) -> CallbackRequest {
    let mut r = tss_gate::fixture::load_request(
        &repo()
            .join("tests/fixtures")
            .join(format!("{fixture}.json")),
    )
    .expect("request");
    r.request_id = id.into();
    r
}

fn sighup(server: &Server) {
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
}

/// Waits until the server's log has one more line containing `what` than
/// `before` lines; returns that line.
fn next_log_line(server: &Server, what: &str, before: usize) -> String {
    let started = Instant::now();
    loop {
        let logs = server.logs();
        let lines: Vec<&str> = logs.lines().filter(|l| l.contains(what)).collect();
        if lines.len() > before {
            return lines[before].to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no `{what}` in the log:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn log_count(server: &Server, what: &str) -> usize {
    server.logs().lines().filter(|l| l.contains(what)).count()
}

#[test]
fn an_operators_tighter_data_and_own_fixtures_load_under_the_default_gate_and_decide() {
    let ws = Workspace::new();
    let rego = ws.path().join("rego");
    copy_tree(&library(), &rego);
    let data_path = rego.join("data.yaml");
    let mut data = read_yaml(&data_path);
    tightened(&mut data);
    write_yaml(&data_path, &data);

    // The operator's own fixtures, in a directory of their own: the
    // example's stay behind.
    let fixtures = ws.path().join("fixtures");
    write_fixture(
        &fixtures,
        "acme_usdt_over_cap_reject",
        &over_cap_fixture("25000"),
    );
    write_fixture(
        &fixtures,
        "acme_usdt_third_send_today_reject",
        &third_send_fixture(),
    );

    // The server starts under the default gate (which runs the library's
    // tests, the data checks and these two fixtures) and decides by the new
    // numbers.
    let cfg = default_gate_config(&ws, &rego, &fixtures);
    let server = Server::start(&cfg);
    let a = send(&server, &request(OVER_CAP, "live-over-cap-1"));
    assert_eq!(a.action, Some(Action::Reject), "{a:?}");
    assert!(
        a.error.contains("exceeds the per-transaction cap `25000`"),
        "{}",
        a.error
    );
    for i in 1..=2 {
        let a = send(&server, &request(USDT_SEND, &format!("live-send-{i}")));
        assert_eq!(
            a.action,
            Some(Action::Approve),
            "send {i} of 9,999.99 fits 20,000: {a:?}"
        );
    }
    let a = send(&server, &request(USDT_SEND, "live-send-3"));
    assert_eq!(a.action, Some(Action::Reject), "{a:?}");
    assert!(
        a.error.contains("exceeds the maximum 20000"),
        "the third send passes 20,000 a day: {}",
        a.error
    );

    // `tss-gate test` on the copy, as the operator runs it before a reload:
    // every library test, every data check and both fixtures pass. From a
    // directory without tests/fixtures, so nothing else is picked up.
    let (exit, doc, stderr) = run_tests(&rego, &fixtures, ws.path());
    assert_eq!(exit, Some(0), "{:#?}\n{stderr}", not_passing(&doc));
    assert_eq!(count_of(&doc, "fixture"), 2, "the operator's two fixtures");
    assert!(count_of(&doc, "rego") > 100, "the library's tests ran");
    assert!(
        doc["cases"].as_array().unwrap().iter().any(|c| c["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("data.tss.operator_data_test."))),
        "the data checks ran"
    );

    // The example's fixtures are not this operator's: under the tighter
    // numbers some of them fail, and only fixtures fail (no library test
    // depends on the numbers).
    let (exit, doc, _) = run_tests(&rego, &repo().join("tests/fixtures"), ws.path());
    assert_eq!(
        exit,
        Some(2),
        "the example's fixtures expect the example's numbers"
    );
    let failing = not_passing(&doc);
    assert!(!failing.is_empty());
    for f in &failing {
        assert!(f.starts_with("\"fixture\""), "only fixtures fail: {f}");
    }

    // A further tightening on SIGHUP: a 0.5 ETH cap. The set passes the
    // gate, loads, and the 0.75 ETH transfer it approved a moment ago is
    // now rejected for it.
    let a = send(&server, &request(ETH_SEND, "live-eth-1"));
    assert_eq!(a.action, Some(Action::Approve), "{a:?}");
    set_cap(&mut data, "ETH", "0.5");
    write_yaml(&data_path, &data);
    let reloaded = log_count(&server, "policy reloaded");
    sighup(&server);
    next_log_line(&server, "policy reloaded", reloaded);
    let a = send(&server, &request(ETH_SEND, "live-eth-2"));
    assert_eq!(a.action, Some(Action::Reject), "{a:?}");
    assert!(
        a.error
            .contains("amount `0.75` of token `ETH` exceeds the per-transaction cap `0.5`"),
        "{}",
        a.error
    );
    assert_eq!(
        log_count(&server, "policy reload refused"),
        0,
        "{}",
        server.logs()
    );

    // On SIGHUP the gate runs the operator's fixtures. A cut of the cap to
    // 5,000 that leaves the operator's cap fixture stale is refused, and
    // the previous set keeps deciding.
    set_cap(&mut data, "ETH_USDT", "5000");
    write_yaml(&data_path, &data);
    let refused = log_count(&server, "policy reload refused");
    sighup(&server);
    let line = next_log_line(&server, "policy reload refused", refused);
    assert!(line.contains("acme_usdt_over_cap_reject"), "{line}");
    assert!(
        !line.contains("keysign_") && !line.contains("integrity_"),
        "the example's fixtures are not run: {line}"
    );
    let a = send(&server, &request(OVER_CAP, "live-over-cap-2"));
    assert!(
        a.error.contains("cap `25000`"),
        "the last good set serves: {}",
        a.error
    );

    // With the fixture updated, the same data loads on SIGHUP and decides
    // by the new cap.
    write_fixture(
        &fixtures,
        "acme_usdt_over_cap_reject",
        &over_cap_fixture("5000"),
    );
    let recovered = log_count(&server, "policy load recovered");
    sighup(&server);
    next_log_line(&server, "policy load recovered", recovered);
    let a = send(&server, &request(OVER_CAP, "live-over-cap-3"));
    assert_eq!(a.action, Some(Action::Reject), "{a:?}");
    assert!(
        a.error.contains("exceeds the per-transaction cap `5000`"),
        "{}",
        a.error
    );
    let a = send(&server, &request(USDT_SEND, "live-send-4"));
    assert!(
        a.error.contains(
            "amount `9999.99` of token `ETH_USDT` exceeds the per-transaction cap `5000`"
        ),
        "{}",
        a.error
    );
}

/// Data sets an operator might write, far from the example's.
fn other_data_sets() -> Vec<(&'static str, String)> {
    let mut tight = read_yaml(&library().join("data.yaml"));
    tightened(&mut tight);
    let mut frozen = read_yaml(&library().join("data.yaml"));
    frozen["freeze"] = serde_yaml_ng::from_str("{keysign: true, reason: drill}").unwrap();
    frozen["embedded_risk_control_rules"]["key_share_sign"]["reject_all"] = Yaml::from(false);
    frozen["integrity"]["unverified_chains"] = serde_yaml_ng::from_str("[XTN]").unwrap();
    vec![
        ("nothing at all (every request rejected)", "{}\n".to_owned()),
        (
            "the example, tightened",
            serde_yaml_ng::to_string(&tight).unwrap(),
        ),
        (
            "the example, frozen, KEYSHARESIGN open, a chain unverified",
            serde_yaml_ng::to_string(&frozen).unwrap(),
        ),
        ("another organisation", OTHER_ORG.to_owned()),
        ("a third one", THIRD_ORG.to_owned()),
    ]
}

/// One wallet, one token, one address under a cool-down, a freeze, the
/// embedded checks off and only KEYSHARESIGN admitted by them.
const OTHER_ORG: &str = r#"
embedded_risk_control_rules:
  enable: false
  key_gen: {reject_all: true}
  key_sign: {reject_all: true}
  key_reshare: {reject_all: true}
  key_share_sign: {reject_all: false}
keysign:
  allowed_token_ids: [ETH_USDT]
  allowed_wallet_ids: [w-globex-1]
  allowed_destination_types: [Address, EVM_Contract]
  lowercase_address_chains: [ETH]
  allowed_destinations:
    ETH:
      "0x1111111111111111111111111111111111111111": {added_at: "2026-01-01T00:00:00Z"}
  destination_cooldown: 48h
  max_amount_per_tx: {ETH_USDT: "100"}
freeze: {keysign: true, reason: "Globex audit"}
velocity:
  limits:
    - id: globex_usdt_day
      match: {token_ids: [ETH_USDT]}
      group_by: [wallet, token]
      window: 24h
      max_amount: "500"
integrity:
  chains:
    ETH: {family: evm, evm_chain_id: 1, native_token: ETH, coin_type: 60, max_fee: "0.001"}
  tokens:
    ETH: {chain: ETH, decimals: 18, native: true}
    ETH_USDT: {chain: ETH, decimals: 6, contract: "0xdac17f958d2ee523a2206206994597c13d831ec7"}
  evm_tx_kinds: [eip1559]
  unverified_chains: [XTN]
  wallet_keys:
    w-globex-1: {root_pub_keys: [xpubGLOBEX], group_ids: [g-globex], accounts: [3]}
"#;

/// Bitcoin and Solana only, an ED25519 4-node KEYGEN, no USDT cap, no
/// cool-down, no limits, no freeze section.
const THIRD_ORG: &str = r#"
embedded_risk_control_rules:
  enable: true
  key_gen:
    reject_all: false
    allow_list:
      - {threshold: 3, node_ids: [n1, n2, n3, n4], curve: 2}
  key_sign: {reject_all: false}
  key_reshare: {reject_all: true}
  key_share_sign: {reject_all: true}
keysign:
  allowed_token_ids: [BTC, SOL]
  allowed_wallet_ids: [w-i]
  allowed_destination_types: [Address]
  lowercase_address_chains: []
  allowed_destinations:
    BTC: {bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh: true}
  max_amount_per_tx: {BTC: "0.1", SOL: "5"}
integrity:
  chains:
    BTC: {family: bitcoin, network: bitcoin, native_token: BTC, coin_type: 0, max_fee: "0.0001"}
    SOL: {family: solana, native_token: SOL, coin_type: 501, max_fee: "0.001"}
  tokens:
    BTC: {chain: BTC, decimals: 8, native: true}
    SOL: {chain: SOL, decimals: 9, native: true}
  wallet_keys:
    w-i: {root_pub_keys: [xpubI], group_ids: [g-i], accounts: [0]}
"#;

/// A copy of the library with this `data.yaml`.
fn library_with_data(data: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    copy_tree(&library(), &t.path().join("rego"));
    std::fs::write(t.path().join("rego/data.yaml"), data).expect("write data.yaml");
    std::fs::create_dir_all(t.path().join("no-fixtures")).expect("mkdir");
    t
}

#[test]
fn the_library_tests_pass_whatever_the_operators_data_says() {
    let mut counts = Vec::new();
    for (what, data) in other_data_sets() {
        let t = library_with_data(&data);
        let (exit, doc, stderr) = run_tests(
            &t.path().join("rego"),
            &t.path().join("no-fixtures"),
            t.path(),
        );
        assert_eq!(exit, Some(0), "{what}: {:#?}\n{stderr}", not_passing(&doc));
        assert_eq!(count_of(&doc, "fixture"), 0);
        counts.push(count_of(&doc, "rego"));
    }
    assert!(
        counts.iter().all(|n| *n == counts[0] && *n > 100),
        "{counts:?}"
    );
}

#[test]
fn data_of_the_wrong_shape_fails_the_data_checks_alone() {
    let mut data = read_yaml(&library().join("data.yaml"));
    data["freeze"]["keysign"] = Yaml::from("off");
    let treasury = &mut data["keysign"]["treasury_addresses"]["ETH"];
    treasury["0x9999999999999999999999999999999999999999"] = Yaml::from(true);
    let t = library_with_data(&serde_yaml_ng::to_string(&data).unwrap());
    let (exit, doc, stderr) = run_tests(
        &t.path().join("rego"),
        &t.path().join("no-fixtures"),
        t.path(),
    );
    assert_eq!(exit, Some(2), "{stderr}");
    let mut failing: Vec<String> = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] != "pass")
        .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    failing.sort();
    assert_eq!(
        failing,
        [
            "data.tss.operator_data_test.test_freeze_is_a_boolean_switch",
            "data.tss.operator_data_test.test_treasury_addresses_are_allowed_destinations",
        ],
        "the failures name the operator's data, and no library test fails"
    );
}
