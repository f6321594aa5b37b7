//! Issue 4: the dashboard and the alert rules against a real Prometheus.
//! tss-gate and Prometheus run on loopback; after mixed traffic (approvals,
//! rejections of several rules, token failures of several reasons, malformed
//! requests, pings) every PromQL expression of `dashboards/tss-gate.json` and
//! `dashboards/alerts.yml` is evaluated through Prometheus's HTTP API.
//! Without Prometheus this test FAILS (scripts/test.sh installs it).

mod common;
mod obs;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use obs::*;
use serde_json::Value;

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
    let server = Server::start(&ws.config(&format!("decision_log:\n  path: {}\n", dl.display())));
    let mut prom = Prometheus::start(ws.path(), &server.addr);
    let instance = server.addr.clone();

    prom.wait_for("the tss-gate target to be up", |p| {
        let v = p.api("/api/v1/targets", &[])?;
        let up = v["data"]["activeTargets"]
            .as_array()?
            .iter()
            .any(|t| t["health"] == "up");
        up.then_some(())
    });
    prom.wait_for("a first sample", |p| {
        (!p.query("tss_gate_build_info").is_empty()).then_some(())
    });

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
