//! Issue 36, item 5: rego/README.md promises "Drop a file into the type's
//! directory … Nothing else changes". A copy of the library gets a new rule
//! file in every request type's package (and in `tss.common`), with a test
//! of its own beside it, and the real binary runs `tss-gate test` on it:
//!
//! - a rule that never fires on the shipped requests: every library test,
//!   the new ones included, and every shipped fixture still passes (with
//!   an import alias for the package under test, a second file in
//!   `tss.keysharesign` made regorus miss one of its `allow` definitions,
//!   and a shipped test failed);
//! - the same rule firing on every request of its type: the library's
//!   tests still pass (each asserts only its own codes), exactly the
//!   approving fixtures of that type fail, with the new code, and
//!   `tss-gate eval` shows the code in the decision of one request of
//!   every type, KEYSHARESIGN included (which the example data rejects).
//!
//! `TSS_GATE_TEST_LIBRARY=DIR` runs it against another copy of the library
//! (e.g. an older `rego/`, to see it fail there).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/cli.rs"]
mod cli;
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use cli::*;
use common::*;
use serde_json::Value;

/// The policy library to copy: this repository's `rego/`, or
/// `TSS_GATE_TEST_LIBRARY`.
fn library() -> PathBuf {
    std::env::var_os("TSS_GATE_TEST_LIBRARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("rego"))
}

/// A package that gets an extra file: its directory under `rego/tss`, the
/// request type it judges (`None`: every type), and one shipped fixture of
/// that type.
struct Package {
    dir: &'static str,
    request_type: Option<(&'static str, i64)>,
    fixture: &'static str,
}

const PACKAGES: [Package; 6] = [
    Package {
        dir: "ping",
        request_type: Some(("PING", 0)),
        fixture: "ping_approve",
    },
    Package {
        dir: "keygen",
        request_type: Some(("KEYGEN", 1)),
        fixture: "keygen_allowed_approve",
    },
    Package {
        dir: "keysign",
        request_type: Some(("KEYSIGN", 2)),
        fixture: "keysign_eth_approve",
    },
    Package {
        dir: "keyreshare",
        request_type: Some(("KEYRESHARE", 3)),
        fixture: "keyreshare_allowed_approve",
    },
    Package {
        dir: "keysharesign",
        request_type: Some(("KEYSHARESIGN", 5)),
        fixture: "keysharesign_reject",
    },
    Package {
        dir: "common",
        request_type: None,
        fixture: "keysign_eth_approve",
    },
];

/// The id the harmless rule denies: no shipped request carries it.
const MARKER_ID: &str = "extra-file-marker-request";

fn code(p: &Package) -> String {
    format!("{}.extra_file_rule", p.dir)
}

/// The new rule file: a deny with a helper rule of its own. `fires_on`
/// is the helper's body: when the rule denies.
fn rule_file(p: &Package, fires_on: &str) -> String {
    format!(
        "# An operator's rule, added as rego/README.md says: a new file in the\n\
         # package, nothing else changed.\n\
         package tss.{dir}\n\n\
         extra_file_rule_applies if {{\n\t{fires_on}\n}}\n\n\
         deny contains {{\n\
         \t\"code\": \"{code}\",\n\
         \t\"msg\": sprintf(\"the extra file of tss.{dir} denies request `%s`\", [object.get(input, \"request_id\", \"<missing>\")]),\n\
         }} if extra_file_rule_applies\n",
        dir = p.dir,
        code = code(p),
    )
}

/// Its test, beside it, in the package's test package: the rule fires on
/// the marker id and not on another, asserting only its own code.
fn test_file(p: &Package) -> String {
    let (name, code_num) = p.request_type.unwrap_or(("PING", 0));
    format!(
        "package tss.{dir}_test\n\n\
         extra_file_input(id) := {{\"request_id\": id, \"request_type\": \"{name}\", \"request_type_code\": {code_num}, \"detail\": {{}}, \"extra\": {{}}}}\n\n\
         test_extra_file_rule_fires_on_its_request if {{\n\
         \tc := {{d.code | some d in data.tss.{dir}.deny; d.code == \"{code}\"}} with input as extra_file_input(\"{MARKER_ID}\")\n\
         \tc == {{\"{code}\"}}\n}}\n\n\
         test_extra_file_rule_ignores_other_requests if {{\n\
         \tc := {{d.code | some d in data.tss.{dir}.deny; d.code == \"{code}\"}} with input as extra_file_input(\"another-request\")\n\
         \tc == set()\n}}\n",
        dir = p.dir,
        code = code(p),
    )
}

/// A copy of the library with the extra files; `firing`: the rule denies
/// every request of its type (every request, for tss.common) instead of
/// only the marker id.
fn with_extra_files(firing: bool) -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    let rego = t.path().join("rego");
    copy_tree(&library(), &rego);
    for p in &PACKAGES {
        let dir = rego.join("tss").join(p.dir);
        assert!(dir.is_dir(), "{}", dir.display());
        let fires_on = match (firing, p.request_type) {
            (false, _) => format!("input.request_id == \"{MARKER_ID}\""),
            (true, Some((name, _))) => format!("input.request_type == \"{name}\""),
            (true, None) => "input.request_id".to_owned(),
        };
        let rule = dir.join("extra_file_rule.rego");
        assert!(!rule.exists(), "a new file, not a shipped one");
        std::fs::write(&rule, rule_file(p, &fires_on)).expect("write rule");
        if !firing {
            std::fs::write(dir.join("extra_file_rule_test.rego"), test_file(p))
                .expect("write test");
        }
    }
    t
}

/// `tss-gate test` on the copy with the shipped fixtures: (exit code,
/// JSON report, stderr).
fn run_tests(root: &Path) -> (Option<i32>, Value, String) {
    test_report(
        &root.join("rego"),
        &repo().join("tests/fixtures"),
        root,
        &[],
    )
}

fn cases(doc: &Value) -> &Vec<Value> {
    doc["cases"].as_array().expect("cases")
}

/// `tss-gate test` on the unchanged library: how many Rego tests it has.
fn shipped_rego_tests() -> usize {
    let t = tempfile::tempdir().expect("tempdir");
    copy_tree(&library(), &t.path().join("rego"));
    let (_, doc, _) = run_tests(t.path());
    cases(&doc).iter().filter(|c| c["kind"] == "rego").count()
}

#[test]
fn a_rule_file_dropped_into_each_package_leaves_every_test_green() {
    let copy = with_extra_files(false);
    let (exit, doc, stderr) = run_tests(copy.path());
    assert_eq!(exit, Some(0), "{:#?}\n{stderr}", not_passing(&doc));
    let rego = cases(&doc).iter().filter(|c| c["kind"] == "rego").count();
    assert_eq!(
        rego,
        shipped_rego_tests() + 2 * PACKAGES.len(),
        "the library's tests and the two new ones of each package ran"
    );
    for p in &PACKAGES {
        for t in [
            "test_extra_file_rule_fires_on_its_request",
            "test_extra_file_rule_ignores_other_requests",
        ] {
            let name = format!("data.tss.{}_test.{t}", p.dir);
            assert!(
                cases(&doc)
                    .iter()
                    .any(|c| c["name"] == name.as_str() && c["outcome"] == "pass"),
                "{name} ran and passed"
            );
        }
    }
    assert_eq!(
        cases(&doc)
            .iter()
            .filter(|c| c["kind"] == "fixture")
            .count(),
        fixture_paths().len(),
        "every shipped fixture ran"
    );
}

/// The shipped fixtures that expect APPROVE, by request type code.
fn approving_fixtures() -> Vec<(i64, String)> {
    fixture_paths()
        .iter()
        .filter_map(|p| {
            let doc: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).ok()?;
            (doc["expect"]["action"] == "APPROVE").then(|| {
                (
                    doc["request"]["request_type"].as_i64().unwrap_or(-1),
                    p.file_stem().unwrap().to_string_lossy().into_owned(),
                )
            })
        })
        .collect()
}

fn eval_codes(root: &Path, fixture: &str) -> Vec<String> {
    let o = Command::new(env!("CARGO_BIN_EXE_tss-gate"))
        .arg("eval")
        .arg("--policy-dir")
        .arg(root.join("rego"))
        .arg(
            repo()
                .join("tests/fixtures")
                .join(format!("{fixture}.json")),
        )
        .current_dir(root)
        .output()
        .expect("run tss-gate eval");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let doc: Value = serde_json::from_str(&out).expect("eval JSON");
    doc["decision"]["codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn the_dropped_rule_file_decides() {
    let copy = with_extra_files(true);

    // Every request type's rule reaches the decision.
    for p in &PACKAGES {
        let codes = eval_codes(copy.path(), p.fixture);
        assert!(
            codes.contains(&code(p)),
            "{}: {} decided with {codes:?}",
            p.dir,
            p.fixture
        );
    }

    // The library's tests do not care; the approving fixtures do. tss.common
    // denies every request, so every approving fixture fails, each with the
    // common rule's code and its type's.
    let (exit, doc, stderr) = run_tests(copy.path());
    assert_eq!(exit, Some(2), "{stderr}");
    let approving = approving_fixtures();
    assert!(approving.len() >= 10, "{approving:?}");
    let mut failed = BTreeSet::new();
    for c in cases(&doc).iter().filter(|c| c["outcome"] != "pass") {
        assert_eq!(c["kind"], "fixture", "only fixtures fail: {c}");
        let name = c["name"].as_str().unwrap().to_owned();
        let (ty, _) = approving
            .iter()
            .find(|(_, n)| *n == name)
            .unwrap_or_else(|| panic!("{name}: not an approving fixture: {c}"));
        let msg = c["message"].as_str().unwrap_or_default();
        let own = PACKAGES
            .iter()
            .find(|p| p.request_type.is_some_and(|(_, n)| n == *ty))
            .expect("a type package");
        let common = PACKAGES.iter().find(|p| p.request_type.is_none()).unwrap();
        for code in [code(common), code(own)] {
            assert!(msg.contains(&code), "{name}: rejected by {code}: {msg}");
        }
        failed.insert(name);
    }
    let want: BTreeSet<String> = approving.into_iter().map(|(_, n)| n).collect();
    assert_eq!(failed, want, "exactly the approving fixtures fail");
}
