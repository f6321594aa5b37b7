//! The documentation's examples, run as written: README's walk-through
//! (serve on the dev config, then each `send` with the exit code its
//! comment promises), and every `cargo run` in it using the profile of the
//! `serve` command, so following the README builds once.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Fenced blocks of `lang` in a Markdown file, with continuation lines
/// (`\` at the end) joined.
fn blocks(markdown: &str, lang: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut current: Option<Vec<String>> = None;
    let mut in_other = false;
    for line in markdown.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("```") {
            if let Some(b) = current.take() {
                out.push(b);
            } else if in_other {
                in_other = false;
            } else if rest.trim() == lang {
                current = Some(Vec::new());
            } else {
                in_other = true;
            }
            continue;
        }
        if let Some(b) = current.as_mut() {
            match b.last_mut() {
                Some(prev) if prev.ends_with('\\') => {
                    prev.pop();
                    prev.push(' ');
                    prev.push_str(line.trim());
                }
                _ => b.push(line.to_owned()),
            }
        }
    }
    out
}

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).unwrap()
}

#[test]
fn every_cargo_run_in_the_readme_uses_the_serve_commands_profile() {
    let text = readme();
    let runs: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("cargo run"))
        .collect();
    assert!(runs.len() >= 3, "{runs:?}");
    for r in runs {
        assert!(
            r.trim_start().starts_with("cargo run --release --"),
            "a second (debug) build on first use: {r}"
        );
    }
}

#[test]
fn the_readme_walk_through_runs_as_written() {
    let text = readme();
    let sh = blocks(&text, "sh");
    let serve = sh
        .iter()
        .flatten()
        .find(|l| l.contains("-- serve"))
        .expect("a serve command");
    assert!(
        serve
            .trim_start()
            .starts_with("cargo run --release -- serve")
    );
    let sends: Vec<&String> = sh
        .iter()
        .flatten()
        .filter(|l| l.contains("-- send http://"))
        .collect();
    assert_eq!(sends.len(), 2, "{sends:?}");

    // A fresh clone, as far as serving is concerned: the dev config, the
    // policy and the fixtures; no keys.
    let ws = Workspace::new();
    let clone = ws.path().join("clone");
    copy_tree(&repo().join("rego"), &clone.join("rego"));
    copy_tree(
        &repo().join("tests/fixtures"),
        &clone.join("tests/fixtures"),
    );
    let dev = std::fs::read_to_string(repo().join("tss-gate.yaml")).unwrap();
    let endpoint = "127.0.0.1:11020";
    assert!(dev.contains(endpoint));
    std::fs::write(
        clone.join("tss-gate.yaml"),
        dev.replace(endpoint, "127.0.0.1:0"),
    )
    .unwrap();
    let server = Server::start(&clone.join("tss-gate.yaml"));

    for send in sends {
        let (cmd, comment) = send.split_once('#').unwrap_or((send, ""));
        let want: i32 = comment
            .split("exit ")
            .nth(1)
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("the comment says the exit code: {send}"));
        let args: Vec<String> = cmd
            .split_whitespace()
            .skip_while(|w| *w != "--")
            .skip(1)
            .map(|w| {
                w.replace(
                    &format!("http://{endpoint}"),
                    &format!("http://{}", server.addr),
                )
            })
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_tss-gate"))
            .args(&args)
            .current_dir(&clone)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(want),
            "{send}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let action = if want == 0 { "APPROVE" } else { "REJECT" };
        assert_eq!(answer["action"], action, "{stdout}");
        if want == 1 {
            assert!(
                !answer["error"].as_str().unwrap_or("").is_empty(),
                "a reason"
            );
        }
    }
    assert!(Path::new(&clone.join("keys/dev-tss-node.pem")).exists());
}
