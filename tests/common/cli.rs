//! Running the real `tss-gate` binary as a policy author does: its output,
//! a private copy of the shipped library, and `tss-gate test`'s JSON report.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::{copy_tree, repo};

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A private copy of the shipped policy library, as `<tmp>/rego`.
pub fn rego_copy() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("rego");
    copy_tree(&repo().join("rego"), &dir);
    (t, dir)
}

/// `tss-gate test --format json` on `policy` and `fixtures` from `cwd`, plus
/// `extra` arguments: the exit code, the parsed report and stderr.
pub fn test_report(
    policy: &Path,
    fixtures: &Path,
    cwd: &Path,
    extra: &[&str],
) -> (Option<i32>, Value, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_tss-gate"))
        .arg("test")
        .arg("--policy-dir")
        .arg(policy)
        .arg("--fixtures")
        .arg(fixtures)
        .args(["--format", "json"])
        .args(extra)
        .current_dir(cwd)
        .output()
        .expect("run tss-gate test");
    let (out, err) = (stdout(&o), stderr(&o));
    let doc: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("JSON report ({e}):\n{out}\n{err}"));
    (o.status.code(), doc, err)
}

/// The cases of a report that did not pass, as `kind name: message`.
pub fn not_passing(doc: &Value) -> Vec<String> {
    doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|c| c["outcome"] != "pass")
        .map(|c| format!("{} {}: {}", c["kind"], c["name"], c["message"]))
        .collect()
}
