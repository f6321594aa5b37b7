//! Issue 4: the dashboard and the alert rules against a real Prometheus.
//! tss-gate and Prometheus run on loopback; after mixed traffic (approvals,
//! rejections of several rules, token failures of several reasons, malformed
//! requests, pings) every PromQL expression of `dashboards/tss-gate.json` and
//! `dashboards/alerts.yml` is evaluated through Prometheus's HTTP API.
//!
//! Issue 17 (item 8): every ratio the dashboard and the rules show must read
//! 0 % — a value, not "No data" — when nothing is approved, and
//! `TssGatePolicyLoadFailing` must stop once a later reload is good; both
//! checked against a real Prometheus scraping the real server, plus
//! generated `promtool test rules` cases for the no-traffic and exact-value
//! sides of every ratio panel.
//! Without Prometheus these tests FAIL (scripts/test.sh installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod obs;
mod resil;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use obs::*;
use resil::{NO_WATCH, hup, policy_copy, write_atomic, write_config};
use serde_json::{Value, json};
use tss_gate::protocol::{Action, Status};

const MISSING: &str = "Prometheus is required by this test and was not found: install Debian's \
     `prometheus` package (`apt-get install -y --no-install-recommends prometheus`, which \
     provides /usr/bin/prometheus and /usr/bin/promtool) or run scripts/test.sh, which installs it";

/// `name` on PATH or in /usr/bin; panics with [`MISSING`] otherwise.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` not found. {MISSING}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus process with its own config and storage; killed on drop.
struct Prometheus {
    child: Child,
    base: String,
    log: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Self {
        let bin = tool("prometheus");
        let rules = repo().join("dashboards/alerts.yml");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: tss-gate\n    static_configs:\n      - targets: [\"{target}\"]\n",
                rules.display()
            ),
        )
        .unwrap();
        let port = free_port();
        let log = dir.join("prometheus.log");
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{}`: {e}. {MISSING}", bin.display()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            rt,
        }
    }

    fn api(&self, path: &str, params: &[(&str, &str)]) -> Option<Value> {
        let url = format!("{}{}", self.base, path);
        self.rt.block_on(async {
            let c = reqwest::Client::new();
            // Queries are POSTed as a form; the other endpoints are GET only.
            let req = if params.is_empty() {
                c.get(&url)
            } else {
                c.post(&url).form(params)
            };
            let r = req.send().await.ok()?;
            r.json::<Value>().await.ok()
        })
    }

    /// Evaluates `expr` now; panics on an API error (invalid PromQL).
    fn query(&self, expr: &str) -> Vec<Value> {
        let v = self
            .api("/api/v1/query", &[("query", expr)])
            .unwrap_or_else(|| panic!("no answer from Prometheus for `{expr}`"));
        assert_eq!(v["status"], "success", "`{expr}`: {v}");
        match &v["data"]["result"] {
            Value::Array(a) => a.clone(),
            // A scalar (`time() - ...` of a scalar) counts as one result.
            other if !other.is_null() => vec![other.clone()],
            _ => Vec::new(),
        }
    }

    /// Polls `what` until it returns `Some` or 60 s pass.
    fn wait_for<T>(&mut self, desc: &str, mut what: impl FnMut(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(t) = what(self) {
                return t;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "prometheus exited ({status}) while waiting for {desc}:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {desc}:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the tss-gate target is up and a first sample is stored.
    fn wait_scraping(&mut self) {
        self.wait_for("the tss-gate target to be up", |p| {
            let v = p.api("/api/v1/targets", &[])?;
            let up = v["data"]["activeTargets"]
                .as_array()?
                .iter()
                .any(|t| t["health"] == "up");
            up.then_some(())
        });
        self.wait_for("a first sample", |p| {
            (!p.query("tss_gate_build_info").is_empty()).then_some(())
        });
    }

    fn scalar(&self, expr: &str) -> Option<f64> {
        let r = self.query(expr);
        r.first()?["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Grafana's variables as a dashboard viewer with this target would have them.
fn substitute(expr: &str, instance: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
        .replace("${job}", "tss-gate")
        .replace("$job", "tss-gate")
        .replace("${instance}", instance)
        .replace("$instance", instance)
}

/// Every `tss_gate_*` metric an expression reads, as exposed (histogram
/// suffixes kept).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("tss_gate_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// Alerts the test traffic must trigger (it is rejection- and
/// failure-heavy on purpose); every other alert must stay silent.
const FIRING: &[&str] = &[
    "TssGateApprovalRateDrop",
    "TssGateRejectionSpike",
    "TssGateTokenFailures",
];

#[test]
fn dashboard_and_alert_queries_return_data_in_a_real_prometheus() {
    // The rule file is valid for promtool itself.
    let out = Command::new(tool("promtool"))
        .args(["check", "rules"])
        .arg(repo().join("dashboards/alerts.yml"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}. {MISSING}"));
    assert!(
        out.status.success(),
        "promtool check rules failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Each alert's threshold, both sides, on synthetic series.
    let out = Command::new(tool("promtool"))
        .args(["test", "rules"])
        .arg(repo().join("dashboards/alerts_test.yml"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}. {MISSING}"));
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let ws = Workspace::new();
    let dl = ws.path().join("decisions.log");
    // The event listener on, so the event metrics the dashboard reads exist.
    let kd = ws.path().join("keys");
    tss_gate::keys::write_pair(&test_keys().stranger, &kd, "node-event", false).unwrap();
    let server = Server::start(&ws.config(&format!(
        "decision_log:\n  path: {}\nevent_server:\n  endpoint: \"127.0.0.1:0\"\n  client_public_key_path: {}\n",
        dl.display(),
        kd.join("node-event.pub.pem").display()
    )));
    let mut prom = Prometheus::start(ws.path(), &server.addr);
    let instance = server.addr.clone();

    prom.wait_scraping();

    // Round 1 creates the series; later rounds make them increase between
    // scrapes, so rate() and increase() have something to show.
    let rounds = 4;
    let mut per_round = 0;
    for round in 0..rounds {
        per_round = mixed_traffic(&server, &format!("p{round}")).total;
        let want = (per_round * (round + 1)) as f64;
        prom.wait_for(&format!("round {round} to be scraped"), |p| {
            (p.scalar("sum(tss_gate_decisions_total)") == Some(want)).then_some(())
        });
    }
    assert_eq!(
        prom.scalar("sum(tss_gate_decisions_total)"),
        Some((per_round * rounds) as f64)
    );

    let mut problems = Vec::new();

    // Every metric the dashboard and the rules read exists.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("dashboards/tss-gate.json")).unwrap(),
    )
    .unwrap();
    let rules: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo().join("dashboards/alerts.yml")).unwrap(),
    )
    .unwrap();

    // The dashboard: current schema, datasource variable, job/instance.
    assert!(dash["schemaVersion"].as_u64().unwrap() >= 36);
    let vars: Vec<&Value> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let names: Vec<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["datasource", "job", "instance"]);
    assert_eq!(vars[0]["type"], "datasource");
    assert_eq!(vars[0]["query"], "prometheus");
    // Variable queries: label_values(selector, label) must offer values.
    for v in &vars[1..] {
        let q = v["query"]["query"].as_str().unwrap();
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap();
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let expr = format!(
            "count by ({}) ({})",
            label.trim(),
            substitute(selector, &instance)
        );
        let r = prom.query(&expr);
        if r.is_empty() {
            problems.push(format!(
                "variable `{}`: `{expr}` offers no value",
                v["name"]
            ));
        }
    }

    let mut targets = 0;
    for panel in dash["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel `{}` uses the datasource variable",
            panel["title"]
        );
        let ts = panel["targets"].as_array().unwrap();
        assert!(!ts.is_empty(), "panel `{}` has queries", panel["title"]);
        for t in ts {
            targets += 1;
            assert_eq!(t["datasource"]["uid"], "${datasource}");
            let raw = t["expr"].as_str().unwrap();
            assert!(
                raw.contains("$job") && raw.contains("$instance"),
                "`{raw}` is filtered by $job and $instance"
            );
            let expr = substitute(raw, &instance);
            for m in metric_names(&expr) {
                if prom
                    .query(&format!("count({{__name__=\"{m}\"}})"))
                    .is_empty()
                {
                    problems.push(format!(
                        "panel `{}`: metric `{m}` has no series",
                        panel["title"]
                    ));
                }
            }
            if prom.query(&expr).is_empty() {
                problems.push(format!(
                    "panel `{}`: `{expr}` returned no data",
                    panel["title"]
                ));
            }
        }
    }
    assert!(targets >= 20, "{targets} dashboard queries");

    // Alert rules: each expression valid; exactly the expected ones fire
    // under this traffic, the rest return an empty vector.
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().unwrap().to_owned();
            let expr = rule["expr"].as_str().unwrap();
            for m in metric_names(expr) {
                if prom
                    .query(&format!("count({{__name__=\"{m}\"}})"))
                    .is_empty()
                {
                    problems.push(format!("alert `{name}`: metric `{m}` has no series"));
                }
            }
            let r = prom.query(expr);
            let fires = FIRING.contains(&name.as_str());
            if fires == r.is_empty() {
                problems.push(format!(
                    "alert `{name}`: expected {} result, got {r:?}",
                    if fires { "a" } else { "no" }
                ));
            }
            alerts.insert(name);
        }
    }
    let want: BTreeSet<String> = [
        "TssGateDown",
        "TssGateApprovalRateDrop",
        "TssGateRejectionSpike",
        "TssGateTokenFailures",
        "TssGateNoRequests",
        "TssGatePolicyLoadFailing",
        "TssGateLatencyNearTimeout",
        "TssGateDecisionLogFailing",
        "TssGateOverloaded",
        "TssGateSpendingLimitNearCap",
        "TssGateStoreErrors",
        "TssGateStoreSlow",
        "TssGateUnapprovedSignature",
        "TssGateTasksStalled",
        "TssGateFrozen",
        "TssGateShadowWouldApprove",
    ]
    .map(String::from)
    .into();
    assert_eq!(alerts, want);

    // Prometheus itself loaded the rules and evaluates them healthily; the
    // expected alerts go pending/firing.
    prom.wait_for("the rule evaluator to see the alerts", |p| {
        let v = p.api("/api/v1/rules", &[])?;
        let rules: Vec<&Value> = v["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        if rules.len() != want.len() || rules.iter().any(|r| r["health"] != "ok") {
            return None;
        }
        let active: BTreeSet<&str> = rules
            .iter()
            .filter(|r| r["state"] != "inactive")
            .filter_map(|r| r["name"].as_str())
            .collect();
        (active == FIRING.iter().copied().collect()).then_some(())
    });

    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Whether a PromQL expression divides: a `/` outside quoted strings (label
/// values and regexes may contain one).
fn is_ratio(expr: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q != '`' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' | '`' => quote = Some(c),
                '/' => return true,
                _ => {}
            },
        }
    }
    false
}

fn dashboard() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join("dashboards/tss-gate.json")).unwrap())
        .unwrap()
}

fn alert_rules() -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(repo().join("dashboards/alerts.yml")).unwrap())
        .unwrap()
}

/// Every dashboard query that divides, as (panel title, raw expression),
/// read from the JSON so the dashboard and these tests cannot drift
/// (panels inside a collapsed row included).
fn ratio_targets(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let top = dash["panels"].as_array().unwrap();
    let nested = top
        .iter()
        .flat_map(|p| p["panels"].as_array().into_iter().flatten());
    for panel in top.iter().chain(nested) {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            if is_ratio(expr) {
                out.push((panel["title"].as_str().unwrap().to_owned(), expr.to_owned()));
            }
        }
    }
    assert!(
        out.len() >= 2,
        "the approval-rate panels are ratios; found only {out:?}"
    );
    out
}

/// (name, expression) of every alert rule.
fn alert_exprs(rules: &Value) -> Vec<(String, String)> {
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| {
            (
                r["alert"].as_str().unwrap().to_owned(),
                r["expr"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn alert_expr(rules: &Value, name: &str) -> String {
    alert_exprs(rules)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no alert `{name}` in alerts.yml"))
        .1
}

/// Alerts that divide, and what a rejects-only run must make them return:
/// a new ratio alert has to be added here with its own expectation.
const RATIO_ALERTS: &[&str] = &["TssGateApprovalRateDrop"];

/// One round of traffic in which nothing is approved: three request types
/// refused by the policy and a malformed token (counted as type NONE).
/// Returns the number of answers; adds the request types to `types`.
fn rejects_only(server: &Server, tag: &str, types: &mut BTreeSet<String>) -> u64 {
    let k = test_keys();
    let mut n = 0;
    for (file, t) in [
        ("keysign_token_not_allowed_reject.json", "KEYSIGN"),
        ("keysharesign_reject.json", "KEYSHARESIGN"),
        ("keygen_unknown_node_reject.json", "KEYGEN"),
    ] {
        for i in 0..2 {
            let id = format!("{tag}-{t}-{i}");
            let a = answer(server, &mint(&fixture(file, &id), &k.node));
            assert_eq!(a.action, Some(Action::Reject), "{file}: {a:?}");
            assert_eq!(a.status, Status::Ok, "{file}: {a:?}");
            types.insert(t.to_owned());
            n += 1;
        }
    }
    let a = answer(server, "hello");
    assert_eq!(a.status, Status::InvalidToken, "{a:?}");
    types.insert("NONE".to_owned());
    n + 1
}

/// Issue 17, item 8, against a real Prometheus scraping the real server:
/// with rejections only (no `action="APPROVE"` series exists at all) every
/// ratio panel reads 0 for each of its series, and so does the approval
/// alert; a refused reload fires `TssGatePolicyLoadFailing` and a later good
/// reload ends it.
#[test]
fn ratios_read_zero_without_approvals_and_a_good_reload_ends_the_load_alert() {
    let ws = Workspace::new();
    let dir = policy_copy(&ws);
    let server = Server::start(&write_config(&ws, &dir, &["node-a"], NO_WATCH, ""));
    let mut prom = Prometheus::start(ws.path(), &server.addr);
    let instance = server.addr.clone();
    prom.wait_scraping();

    // Several rounds, each scraped, so rate() over the window sees traffic
    // and the alert's ">= 10 answers" guard is met.
    let mut types = BTreeSet::new();
    let mut total = 0;
    for round in 0..4 {
        total += rejects_only(&server, &format!("r{round}"), &mut types);
        let want = total as f64;
        prom.wait_for(&format!("round {round} to be scraped"), |p| {
            (p.scalar("sum(tss_gate_decisions_total)") == Some(want)).then_some(())
        });
    }
    assert!(
        prom.query("tss_gate_decisions_total{action=\"APPROVE\"}")
            .is_empty(),
        "the premise: not one approval series"
    );

    let mut problems = Vec::new();
    let value = |s: &Value| -> f64 { s["value"][1].as_str().unwrap().parse().unwrap() };
    for (title, raw) in ratio_targets(&dashboard()) {
        let expr = substitute(&raw, &instance);
        let r = prom.query(&expr);
        if r.is_empty() {
            problems.push(format!("panel `{title}`: no data instead of 0: `{expr}`"));
            continue;
        }
        for s in &r {
            if value(s) != 0.0 {
                problems.push(format!("panel `{title}`: {s} is not 0: `{expr}`"));
            }
        }
        // Each series of a breakdown gets its 0.
        let keys: BTreeSet<&str> = r
            .iter()
            .flat_map(|s| s["metric"].as_object().unwrap().keys())
            .map(String::as_str)
            .collect();
        let keys: Vec<&str> = keys.into_iter().collect();
        match keys.as_slice() {
            [] => assert_eq!(r.len(), 1, "panel `{title}`: {r:?}"),
            ["request_type"] => {
                let got: BTreeSet<String> = r
                    .iter()
                    .map(|s| s["metric"]["request_type"].as_str().unwrap().to_owned())
                    .collect();
                if got != types {
                    problems.push(format!(
                        "panel `{title}`: series for {got:?}, want one per request type sent {types:?}"
                    ));
                }
            }
            other => panic!("panel `{title}` breaks down by {other:?}: extend this test"),
        }
    }

    let rules = alert_rules();
    let ratio_alerts: Vec<String> = alert_exprs(&rules)
        .into_iter()
        .filter(|(_, e)| is_ratio(e))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        ratio_alerts, RATIO_ALERTS,
        "ratio alerts covered by this test"
    );
    // Nothing approved of >= 10 tasks: the approval alert holds, at 0.
    let expr = alert_expr(&rules, "TssGateApprovalRateDrop");
    let r = prom.query(&expr);
    if r.len() != 1 || value(&r[0]) != 0.0 || r[0]["metric"]["instance"] != instance.as_str() {
        problems.push(format!(
            "alert `TssGateApprovalRateDrop`: want one result of 0 for {instance}, got {r:?}"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Policy load: refused, then a good reload.
    let load = alert_expr(&rules, "TssGatePolicyLoadFailing");
    let firing = |p: &Prometheus| -> bool {
        !p.query("ALERTS{alertname=\"TssGatePolicyLoadFailing\", alertstate=\"firing\"}")
            .is_empty()
    };
    assert!(prom.query(&load).is_empty(), "loaded fine: {load}");
    let broken = dir.join("tss/common/broken.rego");
    write_atomic(
        &broken,
        "package tss.common\n\ndeny contains x if {\n\tx := )\n}\n",
    );
    hup(&server);
    prom.wait_for("the refusal to be scraped", |p| {
        (p.scalar("tss_gate_policy_load_ok") == Some(0.0)).then_some(())
    });
    assert!(!prom.query(&load).is_empty(), "refused: `{load}` holds");
    prom.wait_for("TssGatePolicyLoadFailing to fire", |p| {
        firing(p).then_some(())
    });

    std::fs::remove_file(&broken).unwrap();
    hup(&server);
    prom.wait_for("the good reload to be scraped", |p| {
        (p.scalar("tss_gate_policy_load_ok") == Some(1.0)
            && p.scalar("tss_gate_policy_reloads_total{result=\"success\"}") == Some(2.0))
        .then_some(())
    });
    let r = prom.query(&load);
    assert!(
        r.is_empty(),
        "the load is OK again, yet `{load}` still holds: {r:?}"
    );
    prom.wait_for("TssGatePolicyLoadFailing to resolve", |p| {
        (!firing(p)).then_some(())
    });
}

/// `promtool test rules` cases generated from the dashboard JSON, one per
/// ratio query and traffic pattern, on synthetic series (15 s apart):
/// - `idle`: counters that exist, approvals included, but do not move —
///   no traffic in the window: no value at all (not NaN, not 0);
/// - `rejects`: only rejections, no approval series: every series is 0;
/// - `quarter`: every request type approves exactly 1 of 4: every series is
///   0.25, and the `or` that supplies the zeros adds no extra series.
#[test]
fn ratio_panels_pass_generated_promtool_cases() {
    let series = |instance: &str, t: &str, action: &str, status: &str, values: &str| {
        json!({
            "series": format!(
                "tss_gate_decisions_total{{job=\"tss-gate\", instance=\"{instance}\", request_type=\"{t}\", action=\"{action}\", status=\"{status}\"}}"
            ),
            "values": values,
        })
    };
    let mut input = Vec::new();
    for t in ["PING", "KEYSIGN", "KEYGEN"] {
        input.push(series("idle", t, "APPROVE", "0", "5x40"));
        input.push(series("idle", t, "REJECT", "0", "3x40"));
    }
    input.push(series("idle", "NONE", "REJECT", "20", "2x40"));
    for t in ["KEYSIGN", "KEYSHARESIGN", "KEYGEN"] {
        input.push(series("rejects", t, "REJECT", "0", "0+2x40"));
    }
    input.push(series("rejects", "NONE", "REJECT", "20", "0+1x40"));
    for (t, n) in [
        ("PING", 4),
        ("KEYSIGN", 1),
        ("KEYGEN", 2),
        ("KEYSHARESIGN", 1),
    ] {
        input.push(series("quarter", t, "APPROVE", "0", &format!("0+{n}x40")));
        input.push(series(
            "quarter",
            t,
            "REJECT",
            "0",
            &format!("0+{}x40", 2 * n),
        ));
        input.push(series("quarter", t, "REJECT", "20", &format!("0+{n}x40")));
    }

    let one = |expr: String, value: f64| {
        json!({
            "expr": expr,
            "eval_time": "8m",
            "exp_samples": [{"labels": "{}", "value": value}],
        })
    };
    let mut cases = Vec::new();
    for (_, raw) in ratio_targets(&dashboard()) {
        let idle = substitute(&raw, "idle");
        cases.push(one(format!("count({idle}) or vector(0)"), 0.0));
        let rejects = substitute(&raw, "rejects");
        cases.push(one(format!("count({rejects} != 0) or vector(0)"), 0.0));
        cases.push(one(
            format!("clamp_max(count({rejects}) or vector(0), 1)"),
            1.0,
        ));
        let quarter = substitute(&raw, "quarter");
        cases.push(one(
            format!("count(abs({quarter} - 0.25) > 1e-9) or vector(0)"),
            0.0,
        ));
        cases.push(one(
            format!("clamp_max(count({quarter}) or vector(0), 1)"),
            1.0,
        ));
    }
    let doc = json!({
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{"interval": "15s", "input_series": input, "promql_expr_test": cases}],
    });
    let dir = tempfile::tempdir().unwrap();
    // JSON is YAML: promtool reads it as is.
    let file = dir.path().join("ratio_panels_test.yml");
    std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let out = Command::new(tool("promtool"))
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}. {MISSING}"));
    assert!(
        out.status.success(),
        "promtool test rules (generated ratio panel cases) failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 36 (item 6): `tss_gate_velocity_utilization_ratio{limit}` is the
/// ledger's utilisation of each limit's fullest group, as a real Prometheus
/// scrapes it: from the ledger at the start (wallet B's approvals predate
/// the server), not the denied request's 120 % but the ledger's 49 999.95 /
/// 50 000, the fuller wallet whichever was decided last, and falling to 0
/// with no traffic once a short window has passed, so the alert ends by
/// itself. `ledger show` agrees, and adds no amounts of different tokens.
#[test]
fn the_spending_limit_gauge_is_the_ledgers_fullest_group_and_falls_with_no_traffic() {
    use obs::gauge::*;
    let ws = Workspace::new();
    let db = ws.path().join("state/ledger.sqlite");
    {
        let store = tss_gate::store::SqliteStore::open(&db).unwrap();
        seed_wallet_b(&store, tss_gate::clock::now_ms());
    }
    let policy = policy_with_limits(&ws, Some(LIMITS));
    let cfg = ws.config_with_policy(
        &policy,
        &format!("state:\n  sqlite:\n    path: {}\n", db.display()),
    );
    let server = Server::start(&cfg);
    let mut prom = Prometheus::start(ws.path(), &server.addr);
    prom.wait_scraping();
    let value = |p: &Prometheus, limit: &str| p.scalar(&series(limit));

    // Before any request: the seeded ledger, not 0.
    prom.wait_for("wallet B's usage from the ledger", |p| {
        let usdt = value(p, USDT)?;
        let requests = value(p, REQUESTS)?;
        (close(usdt, 0.8) && close(requests, 0.7)).then_some(())
    });
    assert_eq!(value(&prom, BURST), Some(0.0));

    wallet_a_traffic(&server, "gauge");
    let sent = tss_gate::clock::now_ms() as f64 / 1000.0;
    // A scrape well after the last decision's refresh (it comes within
    // about a second of the decision).
    prom.wait_for("a scrape after the traffic", |p| {
        let t = p.scalar(&format!("timestamp({})", series(USDT)))?;
        (t > sent + 3.0).then_some(())
    });
    let usdt = value(&prom, USDT).unwrap();
    assert!(
        close(usdt, USDT_AFTER),
        "the ledger's 49999.95 of 50000, not the denied request's 1.2: {usdt}"
    );
    let requests = value(&prom, REQUESTS).unwrap();
    assert!(
        close(requests, REQUESTS_AFTER),
        "wallet B's 7 of 10, not the latest decision's group (A, 6 of 10): {requests}"
    );
    let most = prom
        .scalar(&format!("max_over_time({}[10m])", series(USDT)))
        .unwrap();
    assert!(
        most <= 1.0,
        "no scrape ever saw the denied request's 120 %: {most}"
    );
    let burst = prom
        .scalar(&format!("max_over_time({}[10m])", series(BURST)))
        .unwrap();
    assert!(burst > 0.0, "the burst was seen: {burst}");

    // `ledger show`, while the server runs, says the same.
    let ledger = |json: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tss-gate"));
        c.args(["ledger", "show", "--config"]).arg(&cfg);
        if json {
            c.arg("--json");
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let l: Value = serde_json::from_str(&ledger(true)).unwrap();
    let groups = l["groups"].as_array().unwrap();
    let of = |limit: &str, wallet: &str| {
        groups
            .iter()
            .find(|g| g["limit"] == limit && g["group"].as_str().unwrap().contains(wallet))
            .unwrap_or_else(|| panic!("{limit} {wallet}: {l:#}"))
    };
    assert_eq!(of(USDT, WALLET_A)["used_amount"], "49999.95", "{l:#}");
    assert_eq!(of(USDT, WALLET_B)["used_amount"], "40000", "{l:#}");
    // Count-only, not grouped by token: 9999.99 USDT and 0.75 ETH are no amount.
    let a = of(REQUESTS, WALLET_A);
    assert_eq!(
        (&a["used_amount"], &a["used_count"]),
        (&Value::Null, &json!(6)),
        "{l:#}"
    );
    let text = ledger(false);
    let line = text
        .lines()
        .find(|l| l.starts_with(REQUESTS) && l.contains(WALLET_A))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.ends_with("last 1h: requests 6 of 10"), "{line}");
    let line = text
        .lines()
        .find(|l| l.starts_with(USDT) && l.contains(WALLET_A))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("amount 49999.95 of 50000"), "{line}");

    // No more traffic: the 5 s window slides past wallet A's approvals and
    // the burst limit's gauge falls to 0; the others stay.
    let started = Instant::now();
    prom.wait_for("the burst gauge to fall to 0 without traffic", |p| {
        (value(p, BURST)? == 0.0).then_some(())
    });
    assert!(started.elapsed() < FALL, "{:?}", started.elapsed());
    assert!(close(value(&prom, USDT).unwrap(), USDT_AFTER));
    assert!(close(value(&prom, REQUESTS).unwrap(), REQUESTS_AFTER));
    // The alert's expression now holds for the full limit only, and
    // Prometheus has it pending there (for: 1m).
    let expr = alert_expr(&alert_rules(), "TssGateSpendingLimitNearCap");
    let near: BTreeSet<String> = prom
        .query(&expr)
        .iter()
        .map(|r| r["metric"]["limit"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(near, BTreeSet::from([USDT.to_owned()]));
    prom.wait_for("the near-cap alert pending for the full limit", |p| {
        let r = p.query("ALERTS{alertname=\"TssGateSpendingLimitNearCap\"}");
        let limits: BTreeSet<&str> = r
            .iter()
            .filter_map(|a| a["metric"]["limit"].as_str())
            .collect();
        (limits == BTreeSet::from([USDT])).then_some(())
    });
}
