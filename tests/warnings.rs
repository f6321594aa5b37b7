//! Issue 36, items 4 and 7. Mistakes that pass every check and go live
//! silently are warned about, with `file:line`, by `check`, `test` and the
//! reload log: a `deny`/`allow` rule the decision never reaches, a data
//! key no policy reads (a dedented key), a read of a data key the data
//! lacks. `check` prints them also when the tests fail, and the reload log
//! shows them beside a refused set's failing cases and for an accepted set.
//! The shipped library and data warn about nothing. And rego/README.md's
//! commands use README.md's release build (item 7).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/cli.rs"]
mod cli;
mod common;
mod resil;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use cli::*;
use common::*;
use resil::*;

fn run(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tss-gate"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run tss-gate")
}

/// 1-based line of the first line of `file` that holds `needle` outside a
/// comment.
fn line_with(file: &Path, needle: &str) -> usize {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .position(|l| !l.trim_start().starts_with('#') && l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` in {}", file.display()))
        + 1
}

/// A file in `tss/keysign/` that declares another package: its deny is at
/// line 4.
const WITHDRAWALS: &str = "package tss.withdrawals\n\n# Meant for KEYSIGN, but the package is not one the decision collects.\ndeny contains {\"code\": \"keysign.withdrawal\", \"msg\": \"withdrawals are off\"} if {\n\tinput.request_type == \"KEYSIGN\"\n}\n";

/// Moves `keysign.allowed_wallet_ids` to the top level of the data file,
/// as a dedent would, and returns the 1-based line it now starts on.
fn dedent_wallets(data_path: &Path) -> usize {
    let mut data: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(data_path).unwrap()).unwrap();
    let wallets = data["keysign"]
        .as_mapping_mut()
        .unwrap()
        .remove("allowed_wallet_ids")
        .expect("the shipped data lists wallets");
    data.as_mapping_mut()
        .unwrap()
        .insert("allowed_wallet_ids".into(), wallets);
    std::fs::write(data_path, serde_yaml_ng::to_string(&data).unwrap()).unwrap();
    line_of_key(data_path, "allowed_wallet_ids:")
}

fn line_of_key(data_path: &Path, key: &str) -> usize {
    std::fs::read_to_string(data_path)
        .unwrap()
        .lines()
        .position(|l| l.starts_with(key))
        .expect("the key")
        + 1
}

/// A fixture directory with the shipped approving ETH transfer only.
fn one_fixture(ws: &Workspace) -> PathBuf {
    let dir = ws.path().join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        repo().join("tests/fixtures/keysign_eth_approve.json"),
        dir.join("keysign_eth_approve.json"),
    )
    .unwrap();
    dir
}

fn gate_on(fixtures: &Path) -> String {
    format!(
        "  watch: false\n  eval_timeout_ms: 5000\n  require_passing_tests: true\n  fixtures: {}\n",
        fixtures.display()
    )
}

#[test]
fn the_shipped_library_and_data_warn_about_nothing_under_the_default_gate() {
    let ws = Workspace::new();
    let cfg = write_config(
        &ws,
        &repo().join("rego"),
        &["node-a"],
        &gate_on(&repo().join("tests/fixtures")),
        "",
    );
    let o = run(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("warnings: 0"), "{}", stdout(&o));
    assert!(!stderr(&o).contains("warning:"), "{}", stderr(&o));
}

#[test]
fn a_rule_the_decision_never_reaches_and_a_misspelled_data_read_are_named() {
    let (_t, dir) = rego_copy();
    let withdrawals = dir.join("tss/keysign/withdrawals.rego");
    std::fs::write(&withdrawals, WITHDRAWALS).unwrap();
    // `allow` is read from the type packages only, never from tss.common.
    let common_allow = dir.join("tss/common/allow.rego");
    std::fs::write(&common_allow, "package tss.common\n\nallow if true\n").unwrap();
    // A real rule reading a misspelled list.
    let treasury = dir.join("tss/keysign/treasury_only.rego");
    std::fs::write(
        &treasury,
        "package tss.keysign\n\ndeny contains {\"code\": \"keysign.not_treasury\", \"msg\": \"not to the treasury\"} if {\n\thas_tx\n\tnot to_treasury\n}\n\nto_treasury if in_address_book(data.keysign.treasury_adresses, destination.address)\n",
    )
    .unwrap();
    let ws = Workspace::new();
    let cfg = ws.config_with_policy(&dir, "");
    let o = run(&["check", "--config", cfg.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "a warning, not a refusal: {err}");
    assert!(stdout(&o).contains("warnings: 3"), "{}\n{err}", stdout(&o));
    let deny = format!(
        "warning: {}:4: `deny` in package `tss.withdrawals` is not reached from the decision `data.tss.decision`, so it never denies anything; the decision reads `deny` only from `tss.common`, `tss.keygen`, `tss.keyreshare`, `tss.keysharesign`, `tss.keysign`, `tss.ping` (did you mean `package tss.keysign`?)",
        withdrawals.display()
    );
    assert!(err.lines().any(|l| l == deny), "{deny}\n{err}");
    let allow = format!(
        "warning: {}:3: `allow` in package `tss.common` is not reached",
        common_allow.display()
    );
    assert!(err.lines().any(|l| l.starts_with(&allow)), "{allow}\n{err}");
    let read = format!(
        "warning: {}:8: `data.keysign.treasury_adresses` reads `data.keysign.treasury_adresses`, which the data does not have: `data.keysign` has no key `treasury_adresses` (did you mean `treasury_addresses`?)",
        treasury.display()
    );
    assert!(err.lines().any(|l| l == read), "{read}\n{err}");

    // `test` says the same, though everything it runs passes.
    let o = run(&[
        "test",
        "--policy-dir",
        dir.to_str().unwrap(),
        "--run",
        "ping",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for w in [&deny, &read] {
        assert!(stderr(&o).lines().any(|l| l == w), "{w}\n{}", stderr(&o));
    }
}

#[test]
fn check_prints_the_warnings_that_explain_failing_fixtures() {
    let ws = Workspace::new();
    let (_t, dir) = rego_copy();
    let data = dir.join("data.yaml");
    let at = dedent_wallets(&data);
    let wallet_rule = dir.join("tss/keysign/wallet.rego");
    let read_at = line_with(&wallet_rule, "data.keysign.allowed_wallet_ids");
    let cfg = write_config(&ws, &dir, &["node-a"], &gate_on(&one_fixture(&ws)), "");
    let o = run(&["check", "--config", cfg.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "the fixture fails: {err}");
    assert!(
        err.contains("policy tests and fixtures failed") && err.contains("keysign_eth_approve"),
        "{err}"
    );
    let unread = format!(
        "warning: {}:{at}: data key `data.allowed_wallet_ids` is read by no policy, so it has no effect (did you mean `data.keysign.allowed_wallet_ids`, which {}:{read_at} reads?)",
        data.display(),
        wallet_rule.display()
    );
    let missing = format!(
        "warning: {}:{read_at}: `data.keysign.allowed_wallet_ids` reads `data.keysign.allowed_wallet_ids`, which the data does not have: `data.keysign` has no key `allowed_wallet_ids` (`allowed_wallet_ids` is at `data.allowed_wallet_ids`: is it indented under the wrong key?)",
        wallet_rule.display()
    );
    for w in [&unread, &missing] {
        assert!(err.lines().any(|l| l == w), "{w}\n{err}");
    }
    // After the errors, which they explain.
    let first_error = err.find("error:").unwrap();
    assert!(err.find(&unread).unwrap() > first_error, "{err}");
    assert!(err.contains("2 warnings beside the errors above"), "{err}");
}

#[test]
fn the_reload_log_shows_the_warnings_of_accepted_and_refused_sets() {
    const WAIT: Duration = Duration::from_secs(60);
    let ws = Workspace::new();
    let dir = policy_copy(&ws);
    let fixtures = one_fixture(&ws);
    let cfg = write_config(&ws, &dir, &["node-a"], &gate_on(&fixtures), "");
    let server = Server::start(&cfg);
    let plain = |s: &Server| {
        regex::Regex::new("\x1b\\[[0-9;]*m")
            .unwrap()
            .replace_all(&s.logs(), "")
            .into_owned()
    };

    // Accepted (its tests pass: the rule never runs), with the warning.
    let withdrawals = dir.join("tss/keysign/withdrawals.rego");
    write_atomic(&withdrawals, WITHDRAWALS);
    hup(&server);
    let unreached = format!(
        "{}:4: `deny` in package `tss.withdrawals` is not reached",
        withdrawals.display()
    );
    let line = poll("the accepted set's warning", WAIT, || {
        plain(&server)
            .lines()
            .find(|l| l.contains("policy warning: ") && l.contains(&unreached))
            .map(str::to_owned)
    });
    assert!(line.contains("WARN"), "{line}");
    let logs = plain(&server);
    assert!(logs.contains("policy reloaded"), "{logs}");
    assert_eq!(
        metric(&server, "tss_gate_policy_reloads_total{result=\"failure\"}"),
        Some(0.0)
    );

    // Refused (the fixture fails): the warnings that explain it, beside it.
    let data = dir.join("data.yaml");
    let at = dedent_wallets(&data);
    hup(&server);
    poll("the refusal", WAIT, || {
        (metric(&server, "tss_gate_policy_reloads_total{result=\"failure\"}") == Some(1.0))
            .then_some(())
    });
    let unread = format!(
        "policy warning in the refused set: {}:{at}: data key `data.allowed_wallet_ids` is read by no policy",
        data.display()
    );
    // Logged right after the refusal (the set is loaded once more for them).
    poll("the refused set's warnings", WAIT, || {
        plain(&server).contains(&unread).then_some(())
    });
    let logs = plain(&server);
    assert!(
        logs.lines()
            .any(|l| l.contains("policy reload refused") && l.contains("keysign_eth_approve")),
        "{logs}"
    );
    assert!(
        logs.contains("policy warning in the refused set: ")
            && logs.contains(
                "which the data does not have: `data.keysign` has no key `allowed_wallet_ids`"
            ),
        "{logs}"
    );
}

#[test]
fn rego_readme_commands_use_the_readme_setup_release_build() {
    let setup = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        setup.contains("cargo run --release -- serve"),
        "README.md's set-up builds the release profile"
    );
    let text = std::fs::read_to_string(repo().join("rego/README.md")).unwrap();
    let runs: Vec<&str> = text
        .match_indices("cargo run")
        .map(|(i, _)| &text[i..])
        .collect();
    assert!(runs.len() >= 8, "{}", runs.len());
    for r in runs {
        assert!(
            r.starts_with("cargo run --release --"),
            "a second (debug) build: {}",
            r.lines().next().unwrap_or_default()
        );
    }
    assert!(!text.contains("target/debug"));
}

/// `serve` logs at start what `check` would warn about: a rule the decision
/// never reaches would otherwise go live silently.
#[test]
fn serve_logs_the_warnings_of_the_set_it_starts_with() {
    let ws = Workspace::new();
    let dir = policy_copy(&ws);
    let withdrawals = dir.join("tss/keysign/withdrawals.rego");
    std::fs::write(&withdrawals, WITHDRAWALS).unwrap();
    let cfg = write_config(&ws, &dir, &["node-a"], "  watch: false\n", "");
    let server = Server::start(&cfg);
    let logs = regex::Regex::new("\x1b\\[[0-9;]*m")
        .unwrap()
        .replace_all(&server.logs(), "")
        .into_owned();
    let unreached = format!(
        "{}:4: `deny` in package `tss.withdrawals` is not reached",
        withdrawals.display()
    );
    assert!(
        logs.lines().any(|l| l.contains("WARN")
            && l.contains("policy warning: ")
            && l.contains(&unreached)),
        "{logs}"
    );
}
