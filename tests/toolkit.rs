//! Issue 3 acceptance: the policy authoring toolkit driven through the real
//! binary. `test` on the shipped library and fixtures (with coverage, JSON and
//! JUnit reports); deliberately broken copies of the library that must turn
//! the run red naming file and line; `eval --explain` naming the rule behind
//! every rejecting fixture; `check` and `serve` refusing the same broken
//! policies; and requests recorded by a live server replaying through `test`
//! to the same decisions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/cli.rs"]
mod cli;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cli::*;
use common::*;
use serde_json::Value;
use tss_gate::protocol::{Action, CallbackRequest, Status};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tss-gate"));
    c.current_dir(repo());
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run tss-gate")
}

fn last_line(s: &str) -> &str {
    s.trim_end().lines().last().unwrap_or_default()
}

/// 1-based line of the first line of `file` that starts with `prefix`.
fn line_of(file: &Path, prefix: &str) -> usize {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .position(|l| l.starts_with(prefix))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("`{prefix}` not in {}", file.display()))
}

/// Distinct `test_*` rules per file, counted from the source text.
fn count_rego_tests(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            n += count_rego_tests(&p);
        } else if p.to_string_lossy().ends_with("_test.rego") {
            let text = std::fs::read_to_string(&p).unwrap();
            let names: std::collections::BTreeSet<&str> = text
                .lines()
                .filter(|l| l.starts_with("test_"))
                .filter_map(|l| l.split([' ', '(', ':']).next())
                .collect();
            n += names.len();
        }
    }
    n
}

#[test]
fn test_runs_every_rego_test_and_fixture_with_coverage_over_90() {
    let o = run(&[
        "test",
        "--coverage",
        "--coverage-min",
        "90",
        "--format",
        "json",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", stderr(&o));
    let doc: Value = serde_json::from_str(&out).expect("JSON report parses");
    let cases = doc["cases"].as_array().unwrap();
    let rego_tests = count_rego_tests(&repo().join("rego"));
    let fixtures = fixture_paths();
    assert!(rego_tests >= 50 && fixtures.len() >= 12);
    let of_kind = |k: &str| cases.iter().filter(|c| c["kind"] == k).count();
    assert_eq!(of_kind("rego"), rego_tests, "every test_ rule runs once");
    assert_eq!(of_kind("fixture"), fixtures.len(), "every fixture runs");
    for f in &fixtures {
        let stem = f.file_stem().unwrap().to_string_lossy();
        assert!(
            cases
                .iter()
                .any(|c| c["name"] == *stem && c["outcome"] == "pass"),
            "{stem} passes"
        );
    }
    let total = rego_tests + fixtures.len();
    assert_eq!(doc["summary"]["passed"], total);
    assert_eq!(doc["summary"]["failed"], 0);
    assert_eq!(
        last_line(&stderr(&o)),
        format!("{total} passed, 0 failed"),
        "machine formats still tell people the verdict"
    );
    let pct = doc["coverage"]["coverage_percent"].as_f64().unwrap();
    assert!(pct >= 90.0, "shipped library coverage {pct}");
    let files = doc["coverage"]["files"].as_array().unwrap();
    assert!(
        files
            .iter()
            .any(|f| f["file"].as_str().unwrap().ends_with("decision.rego"))
    );
    assert!(
        files
            .iter()
            .all(|f| !f["file"].as_str().unwrap().ends_with("_test.rego")),
        "coverage is of the policies, not the tests"
    );

    // The same run in pretty form ends with exactly the summary line.
    let o = run(&["test"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(last_line(&stdout(&o)), format!("{total} passed, 0 failed"));
}

#[test]
fn a_parse_error_is_a_load_error_naming_file_line_and_column() {
    let (_t, dir) = rego_copy();
    let bad = dir.join("tss/ping/broken.rego");
    std::fs::write(&bad, "package tss.ping\n\nextra if {\n\tinput.x ==\n}\n").unwrap();
    let bad2 = dir.join("tss/keygen/broken_too.rego");
    std::fs::write(&bad2, "package tss.keygen\n\nx := [1,\n").unwrap();
    let o = run(&["test", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains(&format!("{}:5:1", bad.display())), "{err}");
    assert!(
        err.contains(&format!("{}:4:", bad2.display())),
        "every parse error is reported, not only the first: {err}"
    );
}

#[test]
fn failing_erroring_and_todo_tests_turn_the_run_red_with_file_and_line() {
    let (_t, dir) = rego_copy();
    let tests = dir.join("tss/ping/ping_test.rego");
    let mut text = std::fs::read_to_string(&tests).unwrap();
    text.push_str(concat!(
        "\ntest_deliberately_wrong if {\n",
        "\tprint(\"sum is\", 1 + 1, \"<&>\")\n",
        "\t1 + 1 == 3\n",
        "}\n",
        "\ntest_not_true := 7\n",
        "\ntest_erroring if {\n",
        "\tx := to_number(\"abc\")\n",
        "\tx == 1\n",
        "}\n",
        "\ntodo_test_later if {\n",
        "\tfalse\n",
        "}\n",
    ));
    std::fs::write(&tests, text).unwrap();
    let wrong = line_of(&tests, "test_deliberately_wrong");
    let erroring = line_of(&tests, "test_erroring");
    let d = dir.to_str().unwrap();

    let o = run(&["test", d, "--run", "ping_test"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    let loc = |line: usize| format!("{}:{line}", tests.display());
    assert!(
        out.contains("data.tss.ping_test.test_deliberately_wrong: FAIL")
            && out.contains(&loc(wrong)),
        "{out}"
    );
    assert!(
        out.contains("sum is 2 <&>"),
        "prints of failing tests: {out}"
    );
    assert!(
        out.contains("data.tss.ping_test.test_erroring: ERROR") && out.contains(&loc(erroring)),
        "{out}"
    );
    assert!(
        out.contains(&format!("{}:{}:", tests.display(), erroring + 1)),
        "the error points at the failing expression: {out}"
    );
    assert!(out.contains("could not parse string as number"), "{out}");
    assert!(out.contains("data.tss.ping_test.todo_test_later: SKIPPED"));
    assert_eq!(last_line(&out), "1 passed, 3 failed, 1 skipped");

    // The same run as JUnit XML parses, with escaped text intact.
    let o = run(&["test", d, "--run", "ping_test", "--format", "junit"]);
    assert_eq!(o.status.code(), Some(2));
    let xml = stdout(&o);
    let mut reader = quick_xml::Reader::from_str(&xml);
    let (mut cases, mut failures, mut errors, mut skipped) = (0, 0, 0, 0);
    let mut text_seen = String::new();
    loop {
        match reader.read_event().expect("well-formed JUnit XML") {
            quick_xml::events::Event::Eof => break,
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                match e.name().as_ref() {
                    "testcase" => cases += 1,
                    "failure" => failures += 1,
                    "error" => errors += 1,
                    "skipped" => skipped += 1,
                    _ => {}
                }
            }
            quick_xml::events::Event::Text(t) => {
                text_seen.push_str(&t.xml10_content());
            }
            quick_xml::events::Event::GeneralRef(r) => {
                let name = r.into_inner();
                text_seen.push_str(match name.as_ref() {
                    "lt" => "<",
                    "gt" => ">",
                    "amp" => "&",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "?",
                });
            }
            _ => {}
        }
    }
    assert_eq!((cases, failures, errors, skipped), (5, 2, 1, 1), "{xml}");
    assert!(text_seen.contains("sum is 2 <&>"), "{text_seen}");
    assert_eq!(last_line(&stderr(&o)), "1 passed, 3 failed, 1 skipped");

    // The whole library: the broken tests do not drag other packages down.
    let none = tempfile::tempdir().unwrap();
    let o = run(&["test", d, "--fixtures", none.path().to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(2));
    let all = count_rego_tests(&dir);
    assert_eq!(
        last_line(&out),
        format!("{} passed, 3 failed, 1 skipped", all - 3),
        "{out}"
    );
    assert!(!out.contains("decision_test"), "{out}");
}

#[test]
fn test_packages_that_share_helpers_still_run_together() {
    let (_t, dir) = rego_copy();
    let ping_tests = dir.join("tss/ping/ping_test.rego");
    let mut text = std::fs::read_to_string(&ping_tests).unwrap();
    text.push_str(
        "
shared_helper := 41
",
    );
    std::fs::write(&ping_tests, text).unwrap();
    std::fs::write(
        dir.join("tss/ping/other_test.rego"),
        "package tss.ping_other_test

test_uses_another_packages_helper if {
	data.tss.ping_test.shared_helper + 1 == 42
}
",
    )
    .unwrap();
    let o = run(&["test", dir.to_str().unwrap(), "--run", "ping", "-v"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("data.tss.ping_other_test.test_uses_another_packages_helper: PASS"),
        "{out}"
    );
}

#[test]
fn a_wrong_fixture_expectation_fails_naming_file_and_line() {
    let t = tempfile::tempdir().unwrap();
    let src = repo().join("tests/fixtures/keysign_usdt_over_cap_reject.json");
    let mut f: Value = serde_json::from_str(&std::fs::read_to_string(&src).unwrap()).unwrap();
    f["expect"] = serde_json::json!({"action": "APPROVE", "status": 0});
    let wrong = t.path().join("wrong.json");
    std::fs::write(&wrong, serde_json::to_string_pretty(&f).unwrap()).unwrap();
    let mut f2 = f.clone();
    f2["expect"] = serde_json::json!({"action": "REJECT", "reasons": ["no such reason"]});
    std::fs::write(
        t.path().join("wrong_reason.json"),
        serde_json::to_string_pretty(&f2).unwrap(),
    )
    .unwrap();
    // A REJECT fixture that does not say why is refused.
    f2["expect"] = serde_json::json!({"action": "REJECT"});
    std::fs::write(
        t.path().join("no_reason.json"),
        serde_json::to_string_pretty(&f2).unwrap(),
    )
    .unwrap();
    let expect_line = line_of(&wrong, "  \"expect\"");

    let o = run(&[
        "test",
        "--fixtures",
        t.path().to_str().unwrap(),
        "--run",
        "^(wrong|wrong_reason|no_reason)$",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains(&format!(
            "{}:{expect_line}: expected APPROVE status 0, got REJECT",
            wrong.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("keysign.usdt_cap_exceeded"),
        "names the code: {out}"
    );
    assert!(out.contains("expected reason `no such reason` is not in the answer's error"));
    assert!(
        out.contains("must list at least one reason substring"),
        "{out}"
    );
    assert_eq!(last_line(&out), "0 passed, 3 failed");
}

#[test]
fn coverage_min_fails_a_run_with_unevaluated_lines_and_names_them() {
    let (_t, dir) = rego_copy();
    std::fs::write(
        dir.join("tss/ping/unused.rego"),
        "package unused_pkg\n\nunused_helper if {\n\tinput.zzz == 1\n\tinput.yyy == 2\n}\n",
    )
    .unwrap();
    let o = run(&[
        "test",
        dir.to_str().unwrap(),
        "--run",
        "ping",
        "--coverage-min",
        "99.9",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    let line = out
        .lines()
        .find(|l| l.ends_with("unused.rego  not covered: 4-5"))
        .unwrap_or_else(|| panic!("names the lines: {out}"));
    assert!(line.trim_start().starts_with("0.0%"), "{line}");
    assert!(out.contains("is below the minimum 99.9%"), "{out}");
    assert!(
        last_line(&out).ends_with(" 0 failed"),
        "tests themselves passed"
    );
}

/// Lines of the rule definitions (`deny contains`, or a framework denial
/// rule) that hold `code` in `file` (a code may have several rules, one per
/// reason). Codes the server proves (`input.derived.violations`) are denied
/// by the one rule that reads them (`v.code`).
fn rule_lines_for_code(file: &Path, code: &str) -> Vec<usize> {
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut hits: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains(&format!("\"{code}\"")))
        .map(|(i, _)| i)
        .collect();
    if hits.is_empty() {
        hits = lines
            .iter()
            .position(|l| l.contains("\"code\": v.code"))
            .into_iter()
            .collect();
    }
    assert!(!hits.is_empty(), "{code} not in {}", file.display());
    hits.into_iter().map(|at| rule_start(&lines, at)).collect()
}

fn rule_start(lines: &[&str], at: usize) -> usize {
    (0..=at)
        .rev()
        .find(|&i| lines[i].contains(" contains ") && !lines[i].starts_with(char::is_whitespace))
        .map(|i| i + 1)
        .unwrap()
}

#[test]
fn eval_explain_names_the_rule_behind_every_rejecting_fixture() {
    let mut checked = 0;
    for path in fixture_paths() {
        let f = tss_gate::fixture::load_fixture(&path).unwrap();
        if f.expect.action != Action::Reject || f.expect.status != 0 {
            continue;
        }
        let o = run(&["eval", "--explain", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(doc["answer"]["action"], "REJECT", "{}", path.display());
        assert_eq!(doc["answer"]["status"], 0, "{}", path.display());
        let denies = doc["explain"]["denies"].as_array().unwrap();
        assert!(!denies.is_empty(), "{}", path.display());
        for d in denies {
            let code = d["code"].as_str().unwrap();
            let rules = d["rules"].as_array().unwrap();
            assert!(!rules.is_empty(), "{}: no rule for {code}", path.display());
            let loc = rules[0]["location"].as_str().unwrap();
            let (file, line) = loc.rsplit_once(':').unwrap();
            let expected = rule_lines_for_code(&repo().join(file), code);
            assert!(
                expected.contains(&line.parse::<usize>().unwrap()),
                "{}: {code} located at {loc}, not at one of its rules {expected:?}",
                path.display()
            );
            assert!(
                doc["answer"]["error"]
                    .as_str()
                    .unwrap()
                    .contains(d["msg"].as_str().unwrap())
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "{checked} rejecting fixtures explained");

    // The usdt cap example by name, reading the fixture from stdin.
    let fixture = repo().join("tests/fixtures/keysign_usdt_over_cap_reject.json");
    let mut child = bin()
        .args(["eval", "--explain", "-"])
        .stdin(Stdio::from(std::fs::File::open(&fixture).unwrap()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(child.wait().unwrap().success());
    let doc: Value = serde_json::from_str(&out).unwrap();
    let cap_line = line_of(
        &repo().join("rego/tss/keysign/usdt_cap.rego"),
        "deny contains {",
    );
    let usdt = &doc["explain"]["denies"][0];
    assert_eq!(usdt["code"], "keysign.usdt_cap_exceeded");
    assert!(
        usdt["rules"][0]["location"]
            .as_str()
            .unwrap()
            .starts_with("rego/tss/keysign/usdt_cap.rego:"),
        "{usdt}"
    );
    assert!(cap_line > 0);
    assert_eq!(usdt["rules"][0]["rule"], "deny");
    assert_eq!(doc["input"]["request_type"], "KEYSIGN");
    assert_eq!(doc["decision"]["allow"], false);

    // --input-only prints just the input document.
    let o = run(&["eval", "--input-only", fixture.to_str().unwrap()]);
    let input: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(input["request_id"], "e5c3a8b4-6d9f-4a0c-b132-4f5e6d7c8b91");
    assert_eq!(input["verified_by"], "fixture");
    assert!(input.get("answer").is_none());

    // An approving request lists the allow rule that admitted it.
    let o = run(&["eval", "--explain", "tests/fixtures/ping_approve.json"]);
    let doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(doc["answer"]["action"], "APPROVE");
    assert_eq!(doc["explain"]["denies"], serde_json::json!([]));
    let allows = doc["explain"]["allows"].as_array().unwrap();
    assert_eq!(allows.len(), 1, "{allows:?}");
    assert!(
        allows[0]["location"]
            .as_str()
            .unwrap()
            .starts_with("rego/tss/ping/ping.rego:")
    );
}

/// Runs `serve` expecting it to refuse to start; returns its stderr.
fn serve_refuses(config: &Path) -> String {
    let mut child = bin()
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(1));
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve started on a config that check refuses");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    err
}

#[test]
fn check_accepts_what_serve_serves_and_both_refuse_broken_policies() {
    let ws = Workspace::new();
    let cfg = ws.config("");
    let o = run(&["check", "--config", cfg.to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(
        out.contains("ok") && out.contains("node-a, node-b"),
        "{out}"
    );
    assert!(out.contains("entrypoint `data.tss.decision`"), "{out}");
    assert!(out.contains("warnings: 0"), "{out}");

    // A deny that fires in regorus but not in OPA is reported, file:line.
    let (_t0, dir0) = rego_copy();
    let risky = dir0.join("tss/keysign/risky.rego");
    std::fs::write(
        &risky,
        "package tss.keysign\n\ndeny contains \"x\" if {\n\thas_tx\n\tnot is_array(input.detail.node_ids)\n}\n",
    )
    .unwrap();
    let o = run(&[
        "check",
        "--config",
        ws.config_with_policy(&dir0, "").to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "a warning, not a refusal: {}",
        stderr(&o)
    );
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "{}:5: `not is_array(input.detail.node_ids)`",
            risky.display()
        )) && err.contains("undefined in OPA"),
        "{err}"
    );
    assert!(stdout(&o).contains("warnings: 1"), "{}", stdout(&o));
    // `test` says the same, though its tests pass.
    let o = run(&[
        "test",
        "--config",
        ws.config_with_policy(&dir0, "").to_str().unwrap(),
        "--run",
        "ping",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "warning: {}:5: `not is_array(input.detail.node_ids)`",
            risky.display()
        )),
        "{}",
        stderr(&o)
    );

    let (_t, dir) = rego_copy();
    let bad = dir.join("tss/ping/broken.rego");
    std::fs::write(&bad, "package tss.ping\n\nextra if {\n\tinput.x ==\n}\n").unwrap();
    let bad2 = dir.join("tss/keygen/broken_too.rego");
    std::fs::write(&bad2, "package tss.keygen\n\nx := [1,\n").unwrap();
    let cfg = ws.config_with_policy(&dir, "");
    let o = run(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(&format!("{}:5:1", bad.display())), "{err}");
    assert!(err.contains(&format!("{}:4:", bad2.display())), "{err}");
    assert!(err.contains("expecting expression"), "short reason: {err}");
    let serve_err = serve_refuses(&cfg);
    assert!(
        serve_err.contains(&format!("{}:5:1", bad.display())),
        "{serve_err}"
    );

    // A policy set without the entrypoint fails the contract check in both.
    std::fs::remove_file(&bad).unwrap();
    std::fs::remove_file(&bad2).unwrap();
    let cfg = ws.config_with_policy(&dir, "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "policy:\n",
        "policy:\n  entrypoint: data.tss.nothing_here\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let o = run(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("data.tss.nothing_here"),
        "{}",
        stderr(&o)
    );
    assert!(serve_refuses(&cfg).contains("data.tss.nothing_here"));

    // Missing keys and broken policies are reported together.
    let o = run(&[
        "check",
        "--config",
        cfg.to_str().unwrap(),
        "--policy-dir",
        "/nonexistent-policy-dir",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent-policy-dir"));
}

#[test]
fn recorded_traffic_replays_through_test_to_the_same_decisions() {
    let ws = Workspace::new();
    let rec = ws.path().join("recorded");
    let cfg = ws.config(&format!("record_dir: {}\n", rec.display()));
    let server = Server::start(&cfg);
    let mut sent = Vec::new();
    for name in [
        "ping_approve",
        "keysign_eth_approve",
        "keysign_usdt_over_cap_reject",
        "keygen_unknown_node_reject",
        "unknown_type_reject",
    ] {
        let path = repo().join(format!("tests/fixtures/{name}.json"));
        let req = tss_gate::fixture::load_request(&path).unwrap();
        let answer = send(&server, &req);
        sent.push((req, answer));
    }
    // A request id that is not a safe file name, and one sent twice.
    let mut odd: CallbackRequest =
        tss_gate::fixture::load_request(&repo().join("tests/fixtures/ping_approve.json")).unwrap();
    odd.request_id = "../../etc/passwd x".into();
    for _ in 0..2 {
        let a = send(&server, &odd);
        assert!(a.is_approval());
        sent.push((odd.clone(), a));
    }
    // Not recorded: a token that does not verify, and a malformed request.
    let (_, body) = post_token(&server.check_url(), &mint(&odd, &test_keys().stranger));
    assert_eq!(verify_answer(&body).status, Status::InvalidToken);
    drop(server);

    let mut files: Vec<PathBuf> = std::fs::read_dir(&rec)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), sent.len(), "{files:?}");
    let name_re = regex::Regex::new(r"^\d{13}-[A-Za-z0-9_-]{1,40}-[0-9a-f]{10}\.json$").unwrap();
    let mode = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&rec), 0o700, "the record_dir it created is owner-only");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{} holds a request", f.display());
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(name_re.is_match(&name), "{name}");
        let text = std::fs::read_to_string(f).unwrap();
        assert!(!text.contains("eyJ"), "no token in {name}");
        assert!(!text.contains("BEGIN"), "no key in {name}");
        let fx = tss_gate::fixture::load_fixture(f).unwrap();
        assert_eq!(fx.verified_by.as_deref(), Some("node-a"));
        let (_, answer) = sent
            .iter()
            .find(|(r, _)| *r == fx.request)
            .expect("recorded request is one that was sent");
        assert_eq!(Some(fx.expect.action), answer.action, "{name}");
        assert_eq!(fx.expect.status, answer.status.code());
        for r in &fx.expect.reasons {
            assert!(answer.error.contains(r.as_str()));
        }
        if fx.expect.action == Action::Reject {
            assert!(!fx.expect.reasons.is_empty(), "{name} says why");
        }
    }
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("-______etc_passwd_x-"))
    );

    // Replay: no Rego tests (an empty test path), only the recording.
    let empty = tempfile::tempdir().unwrap();
    let o = run(&[
        "test",
        empty.path().to_str().unwrap(),
        "--policy-dir",
        "rego",
        "--fixtures",
        rec.to_str().unwrap(),
        "-v",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(last_line(&out), format!("{} passed, 0 failed", sent.len()));

    // And a recording replayed against a stricter policy goes red.
    let (_t, dir) = rego_copy();
    std::fs::write(
        dir.join("tss/ping/maintenance.rego"),
        "package tss.ping\n\ndeny contains \"maintenance window\" if true\n",
    )
    .unwrap();
    let o = run(&[
        "test",
        empty.path().to_str().unwrap(),
        "--policy-dir",
        dir.to_str().unwrap(),
        "--fixtures",
        rec.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        last_line(&stdout(&o)),
        format!("{} passed, 3 failed", sent.len() - 3)
    );
}

#[test]
fn usage_errors_exit_1() {
    let o = run(&["test", "--run", "("]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--run"));
    let o = run(&["test", "--fixtures", "/nonexistent-fixtures"]);
    assert_eq!(o.status.code(), Some(1));
    let o = run(&["test", "/nonexistent-rego"]);
    assert_eq!(o.status.code(), Some(1));
    let o = run(&["eval", "/nonexistent.json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent.json"));
}

/// A chain or token row that would unbind what is signed (a typo in the
/// family, an EVM chain without its numeric id, an unpinned token) refuses
/// the whole set in `check` and `serve`, naming the data file, the line of
/// the row, the key and the reason.
#[test]
fn check_and_serve_refuse_an_integrity_table_that_would_unbind_a_chain() {
    let ws = Workspace::new();
    let cases = [
        (
            "    ETH:          {family: evm, evm_chain_id: 1,",
            "    ETH:          {family: evm, evm_chain_id: 0,",
            "integrity.chains.ETH: `evm_chain_id` must be a positive integer",
        ),
        (
            "    TRON:         {family: tron,",
            "    TRON:         {family: tronn,",
            "integrity.chains.TRON: unknown family `tronn`",
        ),
        (
            "    ETH_USDT:     {chain: ETH, decimals: 6, contract: \"0xdac17f958d2ee523a2206206994597c13d831ec7\"}",
            "    ETH_USDT:     {chain: ETH, decimals: 6}",
            "integrity.tokens.ETH_USDT: pins no contract or mint",
        ),
        (
            "          - function approve(address spender, uint256 amount)",
            "          - function approve(address spender, uint257 amount)",
            "integrity.contracts.ETH: contract `0xdac17f958d2ee523a2206206994597c13d831ec7`: function `function approve(address spender, uint257 amount)`: parameter type `uint257` is not an ABI type",
        ),
        (
            "      \"0xdac17f958d2ee523a2206206994597c13d831ec7\":\n        name: Tether USD",
            "      \"0xDAC17F958D2EE523A2206206994597C13D831EC7\":\n        name: Tether USD",
            "integrity.contracts.ETH: contract `0xDAC17F958D2EE523A2206206994597C13D831EC7` is not 0x and 40 lower-case hex digits",
        ),
    ];
    for (from, to, reason) in cases {
        let (_t, dir) = rego_copy();
        let data = dir.join("data.yaml");
        let text = std::fs::read_to_string(&data).unwrap();
        assert!(text.contains(from), "shipped data.yaml lacks `{from}`");
        let text = text.replacen(from, to, 1);
        let line = text
            .lines()
            .position(|l| l.starts_with(to.lines().next().unwrap()))
            .unwrap()
            + 1;
        std::fs::write(&data, text).unwrap();
        let cfg = ws.config_with_policy(&dir, "");
        let o = run(&["check", "--config", cfg.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{reason}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(
            err.contains(&format!("{}", data.display()))
                && err.contains(&format!("line {line}: {reason}")),
            "{reason} at line {line}: {err}"
        );
        assert!(serve_refuses(&cfg).contains(reason));
    }
}

#[test]
fn a_failing_test_says_what_the_policy_decided_at_each_input() {
    let (_t, dir) = rego_copy();
    let mine = dir.join("tss/mine_test.rego");
    std::fs::write(
        &mine,
        "package tss.mine_test\n\n# Wrong on purpose: both fail.\ntest_keysign_without_transaction_is_allowed if {\n\tr := {\"request_type\": \"KEYSIGN\", \"request_id\": \"x\"}\n\tdata.tss.decision.allow with input as r\n}\n\ntest_unknown_type_is_allowed if data.tss.decision.allow with input as {\"request_type\": \"NOPE\"}\n",
    )
    .unwrap();
    let o = run(&[
        "test",
        "--policy-dir",
        dir.to_str().unwrap(),
        "--fixtures",
        dir.to_str().unwrap(),
        "--run",
        "mine_test",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{}", stderr(&o));
    let at = |line: u32| format!("{}:{line}: the policy decided", mine.display());
    let keysign = out
        .lines()
        .find(|l| l.contains(&at(6)))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        keysign.contains("\"allow\": false") && keysign.contains("keysign.transaction_missing"),
        "{keysign}"
    );
    let unknown = out
        .lines()
        .find(|l| l.contains(&at(9)))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(unknown.contains("\"allow\": false"), "{unknown}");
    assert!(out.contains("0 passed, 2 failed"), "{out}");
}

#[test]
fn fixture_derive_writes_a_readable_fixture_that_test_runs() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("keysign_eth_stranger_reject.json");
    let base = repo().join("tests/fixtures/keysign_eth_approve.json");
    let derive = |extra: &[&str]| {
        let mut args = vec![
            "fixture",
            "derive",
            base.to_str().unwrap(),
            "--set",
            "extra_info.transaction.destination.account_output.address=0x00000000000000000000000000000000000000b4",
        ];
        args.extend_from_slice(extra);
        bin().args(&args).current_dir(repo()).output().unwrap()
    };
    let o = derive(&[
        "--expect",
        "reject",
        "--reason",
        "not in the allowed destination list",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("decides as expected"), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    // Readable: the embedded documents are objects, the id is new.
    assert!(
        doc["request"]["extra_info"]["transaction"].is_object(),
        "{text}"
    );
    assert!(
        doc["request"]["request_detail"]["msg_hash_list"].is_array(),
        "{text}"
    );
    let id = doc["request"]["request_id"].as_str().unwrap();
    assert!(
        id.starts_with("c3a1e6f2-4b7d-4e8a-9f10-2d3c4b5a6e7f-"),
        "{id}"
    );

    // `test` runs it as the node would send it.
    let o = run(&[
        "test",
        "--policy-dir",
        repo().join("rego").to_str().unwrap(),
        "--fixtures",
        t.path().to_str().unwrap(),
        "--run",
        "stranger",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        last_line(&stdout(&o)).starts_with("1 passed, 0 failed"),
        "{}",
        stdout(&o)
    );

    // Never overwritten by accident; a wrong expectation is said at once.
    let o = derive(&["--expect", "approve", "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    let o = derive(&[
        "--expect",
        "approve",
        "-o",
        out.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("does not decide as this fixture expects")
            && stderr(&o).contains("keysign.destination_not_allowed"),
        "{}",
        stderr(&o)
    );
    let o = derive(&["--expect", "reject"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--reason"), "{}", stderr(&o));
}

#[test]
fn a_fixture_with_embedded_objects_decides_like_its_string_form() {
    let t = tempfile::tempdir().unwrap();
    for name in ["keysign_eth_approve", "keysign_usdt_over_cap_reject"] {
        let src = repo().join(format!("tests/fixtures/{name}.json"));
        let mut doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&src).unwrap()).unwrap();
        for key in ["request_detail", "extra_info"] {
            let text = doc["request"][key].as_str().unwrap().to_owned();
            doc["request"][key] = serde_json::from_str(&text).unwrap();
        }
        let objects = t.path().join(format!("{name}.json"));
        std::fs::write(&objects, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        let decision = |p: &Path| {
            let o = bin()
                .args(["eval"])
                .arg(p)
                .current_dir(repo())
                .output()
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            (v["decision"].clone(), v["answer"].clone())
        };
        let (d, a) = decision(&src);
        assert!(d["codes"].is_array() && a["action"].is_string(), "{d} {a}");
        assert_eq!(decision(&objects), (d, a), "{name}");
    }
    let o = run(&[
        "test",
        "--policy-dir",
        repo().join("rego").to_str().unwrap(),
        "--fixtures",
        t.path().to_str().unwrap(),
        "--run",
        // Anchored: only the two fixtures, not the `tss.keysign_test` rules.
        "^keysign_",
    ]);
    assert_eq!(
        last_line(&stdout(&o)),
        "2 passed, 0 failed",
        "{}",
        stdout(&o)
    );
}

#[test]
fn check_and_test_warn_about_input_paths_that_do_not_exist() {
    let (_t, dir) = rego_copy();
    let rule = dir.join("tss/keysign/initiator.rego");
    std::fs::write(
        &rule,
        "package tss.keysign\n\n# Who may start a transfer.\ndeny contains {\"code\": \"keysign.initiator_not_allowed\", \"msg\": \"initiator not allowed\"} if {\n\tinput.request_type == \"KEYSIGN\"\n\tnot tx.initator in {\"ops@example.com\"}\n}\n",
    )
    .unwrap();
    let ws = Workspace::new();
    let cfg = ws.config_with_policy(&dir, "");
    let want = format!(
        "warning: {}:6: `tx.initator` reads `input.extra.transaction.initator`",
        rule.display()
    );
    let o = run(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "a warning, not a refusal: {}",
        stderr(&o)
    );
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.starts_with(&want))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("did you mean `initiator`?"), "{line}");
    let o = run(&[
        "test",
        "--policy-dir",
        dir.to_str().unwrap(),
        "--run",
        "ping",
    ]);
    assert!(
        stderr(&o).lines().any(|l| l.starts_with(&want)),
        "{}",
        stderr(&o)
    );
    // The shipped library reads only paths the schema has.
    let o = run(&[
        "check",
        "--config",
        ws.config_with_policy(&repo().join("rego"), "")
            .to_str()
            .unwrap(),
    ]);
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
}

#[test]
fn eval_input_only_shows_the_spending_limit_facts_of_the_fixtures_history() {
    let o = bin()
        .args([
            "eval",
            "--input-only",
            "tests/fixtures/velocity_eth_usdt_fifth_transfer_fits_approve.json",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let input: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        input["velocity"]["eth_usdt_wallet_24h"][0]["used_amount"], "39999.96",
        "{input:#}"
    );
    assert!(input["decided_at_ms"].is_number());
}

/// A fixture that no spending limit matches (a KEYGEN, under a policy that
/// declares limits) is evaluated on the coverage engine like every other:
/// the lines it reaches count as covered.
#[test]
fn coverage_counts_a_fixture_no_spending_limit_matches() {
    let (_t, dir) = rego_copy();
    std::fs::write(
        dir.join("tss/keygen/fixture_only.rego"),
        "package tss.keygen\n\ndeny contains {\"code\": \"keygen.fixture_only\", \"msg\": \"never\"} if {\n\tinput.detail.threshold == 2\n\tinput.zzz_never == true\n}\n",
    )
    .unwrap();
    let o = run(&[
        "test",
        dir.to_str().unwrap(),
        "--run",
        "^keygen_allowed_approve$",
        "--coverage",
        "--format",
        "json",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", stderr(&o));
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["summary"]["passed"], 1, "only the fixture ran: {out}");
    let file = doc["coverage"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["file"].as_str().unwrap().ends_with("fixture_only.rego"))
        .unwrap_or_else(|| panic!("{out}"))
        .clone();
    assert_eq!(file["covered"], serde_json::json!([4, 5]), "{file}");
}

/// An allow-listed address that is no address of its chain (a bad bech32
/// checksum, an upper-case EVM spelling the rules would never match) is
/// refused when the set loads, naming the file, the line and the address.
#[test]
fn a_listed_address_that_is_not_one_of_its_chain_refuses_the_set() {
    for (good, bad) in [
        (
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdz",
        ),
        (
            "\"0x8f3cf7ad23cd3cadbd9735aff958023239c6a063\"",
            "\"0x8F3CF7AD23CD3CADBD9735AFF958023239C6A063\"",
        ),
    ] {
        let (_t, dir) = rego_copy();
        let data = dir.join("data.yaml");
        let text = std::fs::read_to_string(&data).unwrap();
        assert!(text.contains(good), "{good}");
        std::fs::write(&data, text.replace(good, bad)).unwrap();
        let line = line_of(&data, &format!("      {bad}"));
        let o = run(&["test", dir.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!(
                "{}`: line {line}: keysign.allowed_destinations.",
                data.display()
            )) && err.contains(&format!("address `{}`", bad.trim_matches('"'))),
            "{err}"
        );
    }
}

/// `test --config` runs the fixtures the config's reload gate runs (the
/// operator's `policy.fixtures`), not the example organisation's.
#[test]
fn test_with_a_config_runs_the_configs_fixtures() {
    let ws = Workspace::new();
    let mine = ws.path().join("my-fixtures");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::copy(
        repo().join("tests/fixtures/ping_approve.json"),
        mine.join("ping_approve.json"),
    )
    .unwrap();
    let cfg = ws.config("");
    // The standard test config ends its `policy:` block; add the key there.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "  require_passing_tests: false\n",
        &format!(
            "  require_passing_tests: false\n  fixtures: {}\n",
            mine.display()
        ),
    );
    std::fs::write(&cfg, text).unwrap();
    let o = run(&[
        "test",
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", stderr(&o));
    let doc: Value = serde_json::from_str(&out).unwrap();
    let fixtures: Vec<&str> = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "fixture")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(fixtures, ["ping_approve"], "{out}");
}
