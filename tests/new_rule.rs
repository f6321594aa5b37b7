//! Issue 17, item 1: a rule added the way rego/README.md ("Add a rule")
//! shows leaves every shipped Rego test and fixture green, and really
//! decides. The walkthrough's blocks (the rule file, its `data.yaml` key,
//! its test file) are read from the README itself, each from the fenced
//! block right below its `<!-- new-rule-walkthrough: PATH -->` marker, so
//! the guide and this test cannot drift apart. They are applied to a copy of
//! `rego/` and `tests/fixtures`, and the real binary runs `tss-gate test` on
//! the copy: once as written (everything passes), once with a list that
//! lacks the fixtures' initiator (exactly the approving KEYSIGN fixtures
//! fail, with the new rule's code; every Rego test still passes, because
//! none depends on what `data.yaml` lists).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/cli.rs"]
mod cli;
mod common;

use std::collections::BTreeSet;
use std::path::Path;

use cli::*;
use common::*;
use serde_json::Value;

const MARKER: &str = "<!-- new-rule-walkthrough: ";

const DATA_FILE: &str = "rego/data.yaml";

/// One walkthrough block: where it goes (relative to the repository) and
/// its text.
struct Step {
    path: String,
    text: String,
}

/// The walkthrough blocks of rego/README.md, in the README's order.
fn walkthrough() -> Vec<Step> {
    let readme = std::fs::read_to_string(repo().join("rego/README.md")).expect("rego/README.md");
    let mut steps = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim().strip_prefix(MARKER) else {
            continue;
        };
        let path = rest
            .strip_suffix("-->")
            .unwrap_or_else(|| panic!("marker without `-->`: {line}"))
            .trim()
            .to_owned();
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "{path}: the marker must stand right above its fenced block, found {fence:?}"
        );
        let mut text = String::new();
        let mut closed = false;
        for l in lines.by_ref() {
            if l.starts_with("```") {
                closed = true;
                break;
            }
            text.push_str(l);
            text.push('\n');
        }
        assert!(closed, "{path}: the fenced block is not closed");
        steps.push(Step { path, text });
    }
    steps
}

fn step<'a>(steps: &'a [Step], pred: impl Fn(&Step) -> bool, what: &str) -> &'a Step {
    let found: Vec<&Step> = steps.iter().filter(|s| pred(s)).collect();
    assert_eq!(
        found.len(),
        1,
        "rego/README.md has exactly one walkthrough {what}"
    );
    found[0]
}

/// The code the walkthrough's rule denies with (`"code": "…"`).
fn rule_code(rule: &str) -> String {
    rule.split("\"code\": \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("the walkthrough rule names its code:\n{rule}"))
        .to_owned()
}

/// The `test_` rules a Rego file defines.
fn test_names(rego: &str) -> BTreeSet<String> {
    rego.lines()
        .filter(|l| l.starts_with("test_"))
        .filter_map(|l| l.split([' ', '(', ':']).next())
        .map(str::to_owned)
        .collect()
}

/// Distinct `test_*` rules per file under `dir`, as `tss-gate test` runs them.
fn count_rego_tests(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            n += count_rego_tests(&p);
        } else if p.to_string_lossy().ends_with("_test.rego") {
            n += test_names(&std::fs::read_to_string(&p).unwrap()).len();
        }
    }
    n
}

/// The initiators of the shipped KEYSIGN fixtures, and the names of those
/// among them that expect APPROVE. `extra_info` is a JSON string inside
/// the fixture (or, in newer fixtures, an object).
fn keysign_fixtures() -> (BTreeSet<String>, BTreeSet<String>) {
    let mut initiators = BTreeSet::new();
    let mut approving = BTreeSet::new();
    for p in fixture_paths() {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let request = &doc["request"];
        if request["request_type"] != 2 {
            continue;
        }
        let extra = match &request["extra_info"] {
            Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
            v => v.clone(),
        };
        let Some(who) = extra["transaction"]["initiator"].as_str() else {
            continue;
        };
        initiators.insert(who.to_owned());
        if doc["expect"]["action"] == "APPROVE" {
            approving.insert(p.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    (initiators, approving)
}

/// A copy of `rego/` and `tests/fixtures` with the walkthrough applied as a
/// reader applies it: new files written as shown; the `rego/data.yaml`
/// block (a top-level key and the lines under it) added to that section of
/// the shipped file, right below its key. `data` may rewrite the data block
/// first.
fn apply(steps: &[Step], data: impl Fn(&str) -> String) -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    copy_tree(&repo().join("rego"), &t.path().join("rego"));
    copy_tree(
        &repo().join("tests/fixtures"),
        &t.path().join("tests/fixtures"),
    );
    for s in steps {
        let target = t.path().join(&s.path);
        if s.path == DATA_FILE {
            let block = data(&s.text);
            let (key, body) = block
                .split_once('\n')
                .expect("the data block: a key and the lines under it");
            assert!(
                !key.starts_with([' ', '#']) && key.ends_with(':'),
                "the data block starts with its top-level key, not {key:?}"
            );
            let shipped = std::fs::read_to_string(&target).expect("data.yaml");
            let mut lines: Vec<&str> = shipped.lines().collect();
            let at = lines
                .iter()
                .position(|l| *l == key)
                .unwrap_or_else(|| panic!("`{key}` is not a section of rego/data.yaml"));
            for (i, l) in body.lines().enumerate() {
                lines.insert(at + 1 + i, l);
            }
            std::fs::write(&target, lines.join("\n") + "\n").expect("write data.yaml");
        } else {
            assert!(
                !target.exists(),
                "{}: the walkthrough adds this file, it must not replace a shipped one",
                s.path
            );
            std::fs::write(&target, &s.text).expect("write");
        }
    }
    t
}

/// `tss-gate test` on the copy under `root`: (exit code, JSON report, stderr).
fn run_tests(root: &Path) -> (Option<i32>, Value, String) {
    test_report(
        &root.join("rego"),
        &root.join("tests/fixtures"),
        root,
        &["--coverage-min", "90"],
    )
}

#[test]
fn the_readme_walkthrough_adds_a_rule_that_leaves_every_test_green_and_decides() {
    let steps = walkthrough();
    let rule = step(
        &steps,
        |s| s.path.ends_with(".rego") && !s.path.ends_with("_test.rego"),
        "rule file",
    );
    let data = step(&steps, |s| s.path == DATA_FILE, "data block");
    let test = step(&steps, |s| s.path.ends_with("_test.rego"), "test file");
    let paths: Vec<&str> = steps.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths.len(), 3, "a rule, its data, its test: {paths:?}");
    assert!(rule.path.starts_with("rego/tss/keysign/"), "{}", rule.path);
    let code = rule_code(&rule.text);
    let new_tests = test_names(&test.text);
    assert!(
        !new_tests.is_empty(),
        "the walkthrough test defines test_ rules"
    );

    // The list in the walkthrough holds what the approving fixtures carry.
    let (initiators, approving) = keysign_fixtures();
    assert!(
        !initiators.is_empty() && approving.len() >= 10,
        "{initiators:?} {approving:?}"
    );
    for who in &initiators {
        assert!(
            data.text.contains(who.as_str()),
            "the walkthrough's list must hold the fixtures' initiator {who}:\n{}",
            data.text
        );
    }

    // Followed as written: every Rego test (the new ones included) and
    // every fixture passes.
    let copy = apply(&steps, |block: &str| block.to_owned());
    let data_yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(copy.path().join(DATA_FILE)).unwrap())
            .expect("data.yaml with the walkthrough's key still parses");
    assert!(
        data_yaml["keysign"]["allowed_initiators"].is_sequence(),
        "the key landed in the keysign section"
    );
    let (exit, doc, stderr) = run_tests(copy.path());
    assert_eq!(exit, Some(0), "{:#?}\n{stderr}", not_passing(&doc));
    let cases = doc["cases"].as_array().unwrap();
    let of_kind = |k: &str| cases.iter().filter(|c| c["kind"] == k).count();
    assert_eq!(
        of_kind("rego"),
        count_rego_tests(&copy.path().join("rego")),
        "every test_ rule runs"
    );
    assert_eq!(
        of_kind("fixture"),
        fixture_paths().len(),
        "every fixture runs"
    );
    assert_eq!(doc["summary"]["failed"], 0);
    let passed = doc["summary"]["passed"].as_u64().unwrap();
    assert_eq!(passed as usize, cases.len());
    assert_eq!(
        stderr.trim_end().lines().last().unwrap_or_default(),
        format!("{passed} passed, 0 failed")
    );
    for name in &new_tests {
        assert!(
            cases.iter().any(|c| c["kind"] == "rego"
                && c["name"]
                    .as_str()
                    .unwrap_or_default()
                    .ends_with(&format!(".{name}"))
                && c["outcome"] == "pass"),
            "the walkthrough's {name} runs and passes"
        );
    }
    let uncovered = &doc["coverage"]["files"]
        .as_array()
        .unwrap()
        .iter()
        // The report names files as the policy directory was given.
        .find(|f| {
            f["file"]
                .as_str()
                .is_some_and(|p| p.ends_with(rule.path.as_str()))
        })
        .unwrap_or_else(|| panic!("coverage of {}", rule.path))["not_covered"];
    assert_eq!(uncovered, &serde_json::json!([]), "the new rule is covered");

    // The rule decides: without the fixtures' initiator in the list, exactly
    // the approving KEYSIGN fixtures are rejected, with its code. The Rego
    // tests, the walkthrough's included, do not depend on what data.yaml
    // lists and still pass.
    let unlisted = apply(&steps, |block| {
        initiators.iter().fold(block.to_owned(), |b, who| {
            b.replace(who.as_str(), "nobody@example.invalid")
        })
    });
    let (exit, doc, stderr) = run_tests(unlisted.path());
    assert_eq!(exit, Some(2), "{stderr}");
    let failed: BTreeSet<String> = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] != "pass")
        .map(|c| {
            assert_eq!(c["kind"], "fixture", "only fixtures fail: {c}");
            assert!(
                c["message"].as_str().unwrap_or_default().contains(&code),
                "rejected by the new rule ({code}): {c}"
            );
            c["name"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(failed, approving);
    assert_eq!(doc["summary"]["failed"], approving.len());
}
