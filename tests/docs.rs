//! The documentation's examples, run as written (issue 17, item 3). Every
//! fenced block of README.md and rego/README.md is taken from the Markdown
//! itself and checked by a test here, so the guides and the code cannot
//! drift apart:
//!
//! - README's walk-through: serve on the dev config, then each `send` with
//!   the exit code its comment promises; every `cargo run` in it uses the
//!   profile of the `serve` command, so following the README builds once.
//! - Rego modules are added to a copy of `rego/`, where `tss-gate test` and
//!   `tss-gate check` must pass; data examples are merged into the copy's
//!   `data.yaml` (spending limits into a copy of their own) and must load;
//!   JSON examples become real fixtures or are compared with what the
//!   server computes; the messages the guide quotes are expected, verbatim,
//!   from fixtures and tests that provoke them.
//! - Command lines run in the copy when a test can run them, and otherwise
//!   (benchmarks, fuzzing, `scripts/test.sh`) name subcommands, flags,
//!   scripts, environment variables and targets that exist.
//! - The directory layouts name files that exist, and rego/README's names
//!   every policy file.
//!
//! rego/README.md names its blocks with `<!-- example: NAME -->` right above
//! the fence (invisible to readers); README.md's blocks are named by what
//! they hold (`README_BLOCKS`). `every_fenced_block_of_both_guides_is_run`
//! fails on a block that no test here (or tests/new_rule.rs, for the
//! "Add a rule" walkthrough) runs and that `NOT_RUN` does not list with a
//! reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::{Value, json};

const README: &str = "README.md";
const REGO_README: &str = "rego/README.md";

const EXAMPLE_MARKER: &str = "<!-- example: ";
/// tests/new_rule.rs applies the blocks under this marker.
const WALKTHROUGH_MARKER: &str = "<!-- new-rule-walkthrough: ";

/// README.md's blocks carry no marker: each is named by its language and a
/// text only it holds.
const README_BLOCKS: &[(&str, &str, &str)] = &[
    ("setup", "sh", "-- serve"),
    ("send", "sh", "-- send http://"),
    ("node-config", "yaml", "cb_server_v2:"),
    ("limit", "yaml", "velocity:"),
    ("history", "json", "\"history\""),
    ("benchmarks", "sh", "scripts/bench.sh"),
    ("fuzzing", "sh", "cargo fuzz run"),
    ("layout", "", ".ci/run"),
];

// The tests that run examples, for `COVERED`.
const WALK: &str = "the_readme_walk_through_runs_as_written";
const COMMANDS: &str = "readme_command_blocks_name_what_exists";
const LAYOUTS: &str = "the_layouts_name_what_exists";
const LAB: &str = "rego_readme_examples_run_in_a_copy_of_the_library";
const LIMITS: &str = "the_spending_limit_examples_load_and_decide_as_the_guides_say";
const CALLS: &str = "the_contract_call_example_is_the_shipped_data";

/// Every block and the tests that run it. A test that claims a block reads
/// it with `example(DOC, "name")` (the census checks this file for the call).
const COVERED: &[(&str, &str, &[&str])] = &[
    (README, "setup", &[WALK, COMMANDS]),
    (README, "send", &[WALK, COMMANDS]),
    (README, "node-config", &[COMMANDS]),
    (README, "limit", &[LIMITS]),
    (README, "history", &[LIMITS, LAB]),
    (README, "benchmarks", &[COMMANDS]),
    (README, "fuzzing", &[COMMANDS]),
    (README, "layout", &[LAYOUTS]),
    (REGO_README, "layout", &[LAYOUTS]),
    (REGO_README, "decision", &[LAB]),
    (REGO_README, "fixture", &[LAB]),
    (REGO_README, "run", &[LAB]),
    (REGO_README, "eval", &[LAB]),
    (REGO_README, "check", &[LAB]),
    (REGO_README, "usdt-cap-data", &[LAB]),
    (REGO_README, "limit", &[LIMITS]),
    (REGO_README, "fact", &[LIMITS]),
    (REGO_README, "velocity-messages", &[LIMITS, LAB]),
    (REGO_README, "soft-cap-rule", &[LAB]),
    (REGO_README, "soft-cap-test", &[LAB]),
    (REGO_README, "freeze-message", &[LAB]),
    (REGO_README, "cooldown-data", &[LAB]),
    (REGO_README, "cooldown-message", &[LAB]),
    (REGO_README, "call-abi-data", &[CALLS]),
    (REGO_README, "call-allow-data", &[CALLS]),
];

/// Blocks that no test runs: `(doc, name, why it cannot run in a test)`.
/// Keep it short; empty while every example runs.
const NOT_RUN: &[(&str, &str, &str)] = &[];

// --- Markdown --------------------------------------------------------------------

/// One fenced block of a guide.
#[derive(Debug, Clone)]
struct Block {
    doc: &'static str,
    /// 1-based line of the opening fence.
    line: usize,
    lang: String,
    /// The HTML comment on the line right above the fence, if any.
    marker: Option<String>,
    /// The content, without the fence's indentation.
    text: String,
}

impl Block {
    fn at(&self) -> String {
        format!("{}:{}", self.doc, self.line)
    }

    /// The lines, continuation lines (`\` at the end) joined.
    fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for line in self.text.lines() {
            match out.last_mut() {
                Some(prev) if prev.ends_with('\\') => {
                    prev.pop();
                    prev.push(' ');
                    prev.push_str(line.trim());
                }
                _ => out.push(line.to_owned()),
            }
        }
        out
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{}: JSON: {e}", self.at()))
    }

    fn yaml(&self) -> serde_yaml_ng::Value {
        serde_yaml_ng::from_str(&self.text).unwrap_or_else(|e| panic!("{}: YAML: {e}", self.at()))
    }
}

fn doc_text(doc: &str) -> String {
    std::fs::read_to_string(repo().join(doc)).unwrap_or_else(|e| panic!("{doc}: {e}"))
}

/// Every fenced block of `doc`, in order.
fn fenced(doc: &'static str) -> Vec<Block> {
    let text = doc_text(doc);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let open = lines[i];
        let trimmed = open.trim_start();
        let Some(lang) = trimmed.strip_prefix("```") else {
            i += 1;
            continue;
        };
        let indent = open.len() - trimmed.len();
        let marker = i
            .checked_sub(1)
            .map(|j| lines[j].trim())
            .filter(|m| m.starts_with("<!--"))
            .map(str::to_owned);
        let mut body = String::new();
        let mut j = i + 1;
        loop {
            let line = *lines
                .get(j)
                .unwrap_or_else(|| panic!("{doc}:{}: the fenced block is not closed", i + 1));
            if line.trim_start().starts_with("```") {
                break;
            }
            let lead = line.len() - line.trim_start().len();
            body.push_str(&line[lead.min(indent)..]);
            body.push('\n');
            j += 1;
        }
        out.push(Block {
            doc,
            line: i + 1,
            lang: lang.trim().to_owned(),
            marker,
            text: body,
        });
        i = j + 1;
    }
    out
}

/// A block's name: its `example:` marker, `walkthrough PATH` under a
/// new-rule-walkthrough marker, or (README.md) the `README_BLOCKS` entry
/// that fits it.
fn name_of(b: &Block) -> Result<String, String> {
    if let Some(m) = &b.marker {
        let inner = |prefix: &str| {
            m.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix("-->"))
                .map(|r| r.trim().to_owned())
        };
        if let Some(name) = inner(EXAMPLE_MARKER) {
            return Ok(name);
        }
        if let Some(path) = inner(WALKTHROUGH_MARKER) {
            return Ok(format!("walkthrough {path}"));
        }
    }
    if b.doc == README {
        let fits: Vec<&str> = README_BLOCKS
            .iter()
            .filter(|(_, lang, needle)| *lang == b.lang && b.text.contains(needle))
            .map(|(name, _, _)| *name)
            .collect();
        return match fits[..] {
            [name] => Ok(name.to_owned()),
            _ => Err(format!(
                "{}: README_BLOCKS names this block {} times, not once",
                b.at(),
                fits.len()
            )),
        };
    }
    Err(format!(
        "{}: no `{EXAMPLE_MARKER}NAME -->` on the line above this block",
        b.at()
    ))
}

/// The block of `doc` named `name`.
fn example(doc: &'static str, name: &str) -> Block {
    let mut found: Vec<Block> = fenced(doc)
        .into_iter()
        .filter(|b| name_of(b).as_deref() == Ok(name))
        .collect();
    assert_eq!(found.len(), 1, "{doc} has exactly one block named `{name}`");
    found.remove(0)
}

/// The text between the first pair of backticks after `after` in `s`.
fn quoted<'a>(s: &'a str, after: &str) -> &'a str {
    s.split_once(after)
        .and_then(|(_, r)| r.split('`').nth(1))
        .unwrap_or_else(|| panic!("no `…` after {after:?} in {s:?}"))
}

// --- command lines ---------------------------------------------------------------

/// One command line of a block.
#[derive(Debug)]
struct Cmd {
    line: String,
    /// `cat FILE | …`: FILE on stdin.
    stdin: Option<String>,
    program: String,
    args: Vec<String>,
    comment: String,
}

impl Cmd {
    fn parse(line: &str) -> Cmd {
        let (cmd, comment) = match line.find(" #") {
            Some(i) => (&line[..i], line[i + 2..].trim()),
            None => (line, ""),
        };
        let (stdin, cmd) = match cmd.split_once(" | ") {
            Some((left, right)) => {
                let file = left
                    .trim()
                    .strip_prefix("cat ")
                    .unwrap_or_else(|| panic!("only `cat FILE | …` pipes: {line}"));
                (Some(file.trim().to_owned()), right)
            }
            None => (None, cmd),
        };
        let mut words = cmd.split_whitespace().map(str::to_owned).peekable();
        // `VAR=value` words before the program set its environment.
        while words
            .next_if(|w| {
                w.split_once('=').is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                })
            })
            .is_some()
        {}
        let program = words.next().unwrap_or_default();
        Cmd {
            line: line.trim().to_owned(),
            stdin,
            program,
            args: words.collect(),
            comment: comment.to_owned(),
        }
    }

    /// The arguments of `tss-gate` when the line runs it: `cargo run
    /// [--release] -- ARGS`, `target/release/tss-gate ARGS`, `tss-gate ARGS`.
    fn tss_gate_args(&self) -> Option<Vec<String>> {
        if self.program == "cargo" && self.args.first().is_some_and(|a| a == "run") {
            let rest: Vec<String> = self
                .args
                .iter()
                .skip_while(|a| *a != "--")
                .skip(1)
                .cloned()
                .collect();
            assert!(!rest.is_empty(), "`cargo run -- ARGS`: {}", self.line);
            return Some(rest);
        }
        (self.program == "tss-gate" || self.program.ends_with("/tss-gate"))
            .then(|| self.args.clone())
    }
}

fn commands(b: &Block) -> Vec<Cmd> {
    b.lines()
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Cmd::parse(l))
        .collect()
}

/// The binary, run outside the repository unless a test says where: a
/// command that writes next to its working directory never touches it.
fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tss-gate"));
    c.current_dir(std::env::temp_dir());
    c
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `tss-gate SUB --help` for the subcommand `args` starts with, once each.
struct Helps(BTreeMap<Vec<String>, String>);

impl Helps {
    fn new() -> Self {
        Helps(BTreeMap::new())
    }

    /// Every flag `args` uses is one the subcommand has (`[--rate R]`
    /// brackets mark optional ones).
    fn assert_flags_exist(&mut self, line: &str, args: &[String]) {
        let mut sub = vec![args[0].clone()];
        if ["keys", "ledger", "fixture"].contains(&args[0].as_str()) {
            sub.push(args[1].clone());
        }
        let help = self.0.entry(sub.clone()).or_insert_with(|| {
            let o = bin().args(&sub).arg("--help").output().unwrap();
            let (out, err) = text(&o);
            assert!(
                o.status.success(),
                "`tss-gate {sub:?}` exists: {line}\n{err}"
            );
            out
        });
        for a in args {
            let a = a.trim_matches(['[', ']']);
            if let Some(long) = a.strip_prefix("--") {
                let flag = format!("--{}", long.split('=').next().unwrap());
                assert!(
                    [" ", "\n", "="]
                        .iter()
                        .any(|end| help.contains(&format!("{flag}{end}"))),
                    "`tss-gate {}` has no `{flag}`: {line}",
                    sub.join(" ")
                );
            } else if a.len() == 2 && a.starts_with('-') {
                assert!(
                    help.contains(&format!("{a}, ")),
                    "`tss-gate {}` has no `{a}`: {line}",
                    sub.join(" ")
                );
            }
        }
    }
}

/// A script a line runs: it exists, is executable, parses (`bash -n`),
/// reads as many positional arguments as the line passes, and reads every
/// environment variable the comment names (`env A, B`).
fn assert_script(c: &Cmd, path: &str, args: &[String]) {
    let p = repo().join(path);
    let meta = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{path}: {e}: {}", c.line));
    assert!(
        meta.permissions().mode() & 0o111 != 0,
        "{path} is executable"
    );
    let o = Command::new("bash").arg("-n").arg(&p).output().unwrap();
    assert!(o.status.success(), "bash -n {path}: {}", text(&o).1);
    let script = std::fs::read_to_string(&p).unwrap();
    for i in 1..=args.len() {
        assert!(
            script.contains(&format!("${{{i}")) || script.contains(&format!("${i}")),
            "{path} reads no argument {i}: {}",
            c.line
        );
    }
    if let Some(names) = c.comment.split("env ").nth(1) {
        for name in names
            .split([',', ' ', ';'])
            .filter(|w| !w.is_empty() && w.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_'))
        {
            assert!(
                script.contains(&format!("${{{name}:-")),
                "{path} reads no `{name}` from the environment: {}",
                c.line
            );
        }
    }
}

// --- documents -------------------------------------------------------------------

/// `a` holds everything `b` holds (mappings compared key by key).
fn yaml_contains(a: &serde_yaml_ng::Value, b: &serde_yaml_ng::Value) -> bool {
    match (a, b) {
        (serde_yaml_ng::Value::Mapping(a), serde_yaml_ng::Value::Mapping(b)) => b
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| yaml_contains(av, v))),
        _ => a == b,
    }
}

/// Merges `patch` into `base` as a reader edits `data.yaml`: mappings key by
/// key, anything else (a list of limits, a value) replaced.
fn yaml_merge(base: &mut serde_yaml_ng::Value, patch: &serde_yaml_ng::Value) {
    match (base, patch) {
        (serde_yaml_ng::Value::Mapping(b), serde_yaml_ng::Value::Mapping(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(old) => yaml_merge(old, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn shipped_data() -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(&doc_text("rego/data.yaml")).unwrap()
}

/// A shipped fixture.
fn fixture(name: &str) -> Value {
    serde_json::from_str(&doc_text(&format!("tests/fixtures/{name}.json"))).unwrap()
}

/// `extra_info` of a fixture's request, parsed (it is a JSON string).
fn extra(f: &Value) -> Value {
    match &f["request"]["extra_info"] {
        Value::String(s) => serde_json::from_str(s).unwrap(),
        v => v.clone(),
    }
}

/// Replaces `extra_info`, written the way the fixture writes it.
fn set_extra(f: &mut Value, extra: Value) {
    let was_string = f["request"]["extra_info"].is_string();
    f["request"]["extra_info"] = if was_string {
        Value::String(extra.to_string())
    } else {
        extra
    };
}

fn write_fixture(dir: &Path, name: &str, f: &Value) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(f).unwrap(),
    )
    .unwrap();
}

/// A decimal string in millionths (the examples' amounts have at most six
/// decimals), so sums are exact.
fn micros(s: &str) -> u128 {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    assert!(frac.len() <= 6, "{s}");
    int.parse::<u128>().unwrap() * 1_000_000 + format!("{frac:0<6}").parse::<u128>().unwrap()
}

fn from_micros(m: u128) -> String {
    let (int, frac) = (m / 1_000_000, m % 1_000_000);
    if frac == 0 {
        int.to_string()
    } else {
        format!("{int}.{frac:06}").trim_end_matches('0').to_owned()
    }
}

/// `<n>s|m|h|d` in ms.
fn duration_ms(d: &str) -> i64 {
    let (n, unit) = d.split_at(d.len() - 1);
    let n: i64 = n.parse().unwrap_or_else(|_| panic!("duration {d}"));
    n * match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => panic!("duration {d}"),
    }
}

fn rfc3339_ms(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .unwrap_or_else(|e| panic!("{t}: {e}"))
        .timestamp_millis()
}

/// The spending limit a limit example declares (`velocity.limits`, one).
fn declared_limit(b: &Block) -> (serde_yaml_ng::Value, Value) {
    let doc = b.yaml();
    let map = doc.as_mapping().unwrap();
    assert_eq!(map.len(), 1, "{}: only `velocity`", b.at());
    let limits = doc["velocity"]["limits"].clone();
    assert_eq!(
        limits.as_sequence().map(Vec::len),
        Some(1),
        "{}: one limit",
        b.at()
    );
    let limit: Value = serde_json::to_value(&limits[0]).unwrap();
    (limits, limit)
}

/// The KEYSIGN fixture the velocity and cool-down examples start from: an
/// approving ETH_USDT transfer of the approving fixtures' wallet.
const ETH_USDT_BASE: &str = "integrity_eip1559_eth_usdt_approve";

/// README's `history` fragment as a real fixture: the ETH_USDT transfer with
/// the fragment's receive time and ledger rows, expecting what the limit
/// example decides: REJECT naming the limit and its maximum when the rows
/// inside the window plus this transfer pass it, else APPROVE.
fn history_fixture() -> Value {
    let b = example(README, "history");
    let frag: Value = serde_json::from_str(&format!("{{{}}}", b.text))
        .unwrap_or_else(|e| panic!("{}: the fragment of a fixture object: {e}", b.at()));
    let (_, limit) = declared_limit(&example(README, "limit"));
    let mut f = fixture(ETH_USDT_BASE);
    let tx = extra(&f)["transaction"].clone();
    let window = duration_ms(limit["window"].as_str().unwrap());
    let mut used = 0;
    for row in frag["history"].as_array().expect("history rows") {
        assert_eq!(
            row["limit"],
            limit["id"],
            "{}: a row of the limit example",
            b.at()
        );
        assert_eq!(
            row["group"],
            json!({"wallet": tx["wallet_id"], "token": tx["token_id"]}),
            "{}: the row's group is the approving fixtures' wallet and token",
            b.at()
        );
        if duration_ms(row["ago"].as_str().unwrap()) < window {
            used += micros(row["amount"].as_str().unwrap())
                * row["repeat"].as_u64().unwrap_or(1) as u128;
        }
    }
    let amount = micros(
        tx["destination"]["account_output"]["amount"]
            .as_str()
            .unwrap(),
    );
    let max = limit["max_amount"].as_str().unwrap();
    let over = used + amount > micros(max);
    assert!(used > 0, "{}: the rows count", b.at());
    f["description"] = json!(format!(
        "README's history example: {} used + {} now",
        from_micros(used),
        from_micros(amount)
    ));
    f["received_at_ms"] = frag["received_at_ms"].clone();
    f["history"] = frag["history"].clone();
    f["expect"] = if over {
        json!({"action": "REJECT", "status": 0, "reasons": [limit["id"], max]})
    } else {
        json!({"action": "APPROVE", "status": 0, "reasons": []})
    };
    f
}

/// The `test_*` rules of the `*_test.rego` files under `dir`, counted from
/// their text as `tss-gate test` runs them (distinct names per file).
fn count_rego_tests(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            n += count_rego_tests(&p);
        } else if p.to_string_lossy().ends_with("_test.rego") {
            let text = std::fs::read_to_string(&p).unwrap();
            let names: BTreeSet<&str> = text
                .lines()
                .filter(|l| l.starts_with("test_"))
                .filter_map(|l| l.split([' ', '(', ':']).next())
                .collect();
            n += names.len();
        }
    }
    n
}

/// A Rego example: a full module whose first line names its file
/// (`# rego/…`). Returns (path relative to the repository, text).
fn rego_module(b: &Block) -> (String, String) {
    assert_eq!(b.lang, "rego", "{}", b.at());
    let path = b
        .text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# "))
        .filter(|p| p.starts_with("rego/") && p.ends_with(".rego"))
        .unwrap_or_else(|| panic!("{}: the first line names the file: `# rego/….rego`", b.at()));
    assert!(
        b.text.lines().any(|l| l.starts_with("package ")),
        "{}: a module, with its `package` (a snippet would need one to be wrapped in)",
        b.at()
    );
    (path.to_owned(), b.text.clone())
}

// --- README.md -------------------------------------------------------------------

#[test]
fn every_cargo_run_in_the_readme_uses_the_serve_commands_profile() {
    let text = doc_text(README);
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
    let setup = commands(&example(README, "setup"));
    let serve = setup
        .iter()
        .find(|c| c.line.contains("-- serve"))
        .expect("a serve command");
    assert!(serve.line.starts_with("cargo run --release -- serve"));
    let sends = commands(&example(README, "send"));
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
    let dev = doc_text("tss-gate.yaml");
    let endpoint = "127.0.0.1:11020";
    assert!(dev.contains(endpoint));
    std::fs::write(
        clone.join("tss-gate.yaml"),
        dev.replace(endpoint, "127.0.0.1:0"),
    )
    .unwrap();
    let server = Server::start(&clone.join("tss-gate.yaml"));

    for send in sends {
        let want: i32 = send
            .comment
            .split("exit ")
            .nth(1)
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("the comment says the exit code: {}", send.line));
        let args: Vec<String> = send
            .tss_gate_args()
            .expect("tss-gate")
            .iter()
            .map(|w| {
                w.replace(
                    &format!("http://{endpoint}"),
                    &format!("http://{}", server.addr),
                )
            })
            .collect();
        let out = bin().args(&args).current_dir(&clone).output().unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(
            out.status.code(),
            Some(want),
            "{}\n{stdout}\n{stderr}",
            send.line
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

/// The command lines no test can run (they serve, build, benchmark or fuzz
/// for minutes) name subcommands, flags, scripts, environment variables,
/// bench and fuzz targets that exist; the node's config snippet points at
/// what tss-gate serves and at the key file the set-up step generates.
#[test]
fn readme_command_blocks_name_what_exists() {
    let mut helps = Helps::new();
    let cargo_toml = doc_text("Cargo.toml");
    let fuzz_toml = doc_text("fuzz/Cargo.toml");
    let fuzz_target = |t: &str, line: &str| {
        assert!(
            fuzz_toml.contains(&format!("name = \"{t}\""))
                && repo().join(format!("fuzz/fuzz_targets/{t}.rs")).is_file(),
            "no fuzz target `{t}`: {line}"
        );
    };
    let mut seen = 0;
    for b in [
        example(README, "setup"),
        example(README, "send"),
        example(README, "benchmarks"),
        example(README, "fuzzing"),
    ] {
        for c in commands(&b) {
            seen += 1;
            if let Some(args) = c.tss_gate_args() {
                helps.assert_flags_exist(&c.line, &args);
            } else if c.program.starts_with("scripts/") {
                assert_script(&c, &c.program, &c.args);
            } else if c.program == "bash" {
                assert_script(&c, &c.args[0], &c.args[1..]);
            } else if c.program == "cargo"
                && c.args.starts_with(&["bench".into(), "--bench".into()])
            {
                let target = &c.args[2];
                assert!(
                    cargo_toml.contains(&format!("[[bench]]\nname = \"{target}\""))
                        && repo().join(format!("benches/{target}.rs")).is_file(),
                    "no bench `{target}`: {}",
                    c.line
                );
            } else if c.program == "cargo" && c.args == ["install", "cargo-fuzz"] {
                assert!(
                    fuzz_toml.contains("cargo-fuzz = true"),
                    "fuzz/ is a cargo-fuzz crate"
                );
            } else if c.program == "cargo" && c.args.starts_with(&["fuzz".into(), "run".into()]) {
                fuzz_target(&c.args[2], &c.line);
                // `# or: request, pipeline`
                if let Some(others) = c.comment.strip_prefix("or:") {
                    for t in others.split(',') {
                        fuzz_target(t.trim(), &c.line);
                    }
                }
            } else {
                panic!("{}: no check for `{}`", b.at(), c.line);
            }
        }
    }
    assert!(seen >= 11, "{seen} command lines");

    // The node's side: it posts to /v2/check on the port tss-gate listens on,
    // and verifies with the public key the set-up step generates.
    let b = example(README, "node-config");
    let node = b.yaml();
    let entries = node["cb_server_v2"].as_sequence().expect("a list");
    assert_eq!(entries.len(), 1, "{}", b.at());
    let address = entries[0]["service_address"]
        .as_str()
        .expect("service_address");
    let dev_path = repo().join("tss-gate.yaml");
    let dev = tss_gate::config::Config::parse(&dev_path, &doc_text("tss-gate.yaml"))
        .expect("the dev config parses");
    assert!(
        address.starts_with("http://")
            && address.ends_with(&format!(":{}/v2/check", dev.endpoint().port())),
        "{}: {address}",
        b.at()
    );
    let pubkey = entries[0]["pubkey_path"].as_str().expect("pubkey_path");
    let readme = doc_text(README);
    let keygen = readme
        .split('`')
        .find(|s| s.starts_with("tss-gate keys generate --bits"))
        .expect("the set-up step's `tss-gate keys generate …`");
    let keygen = Cmd::parse(keygen);
    helps.assert_flags_exist(&keygen.line, &keygen.args);
    let name = keygen
        .args
        .iter()
        .skip_while(|a| *a != "--name")
        .nth(1)
        .expect("--name");
    assert_eq!(
        Path::new(pubkey).file_name().unwrap().to_string_lossy(),
        format!("{name}.pub.pem"),
        "{}: the node verifies with the key `keys generate --name {name}` writes",
        b.at()
    );
}

// --- layouts ---------------------------------------------------------------------

/// README's layout: every path it starts a line with exists, and so does
/// every file or directory its description names (`lib.rs`, `fixtures/`).
/// rego/README's: every entry exists ({a,b} expanded; `dir/…` a directory,
/// `**/*_test.rego` the test files; files named in a description beside
/// the entry), and every policy and data file of `rego/` is listed.
#[test]
fn the_layouts_name_what_exists() {
    let b = example(README, "layout");
    let named_file = |w: &str| {
        let w = w.trim_matches(|c: char| "(),;:".contains(c));
        let ext = w.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        (["rs", "md", "json", "sh", "py", "yaml", "rego"].contains(&ext) || w.ends_with('/'))
            .then(|| w.to_owned())
    };
    let mut current = PathBuf::new();
    let mut checked = 0;
    for line in b.text.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        if !line.starts_with(' ') {
            let path = words.next().unwrap();
            current = repo().join(path);
            assert!(
                if path.ends_with('/') {
                    current.is_dir()
                } else {
                    current.is_file()
                },
                "{}: `{path}` does not exist",
                b.at()
            );
            checked += 1;
        }
        for w in words.filter_map(named_file) {
            // `scripts/test.sh` from the repository, `lib.rs` in the entry.
            let base = if w.trim_end_matches('/').contains('/') {
                repo()
            } else {
                current.clone()
            };
            assert!(
                base.join(&w).exists(),
                "{}: `{w}` is not in {}",
                b.at(),
                current.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked} paths");

    let b = example(REGO_README, "layout");
    let mut lines = b.text.lines();
    assert_eq!(lines.next(), Some("rego/"), "{}", b.at());
    let root = repo().join("rego");
    let mut listed: BTreeSet<PathBuf> = BTreeSet::new();
    let mut listed_dirs: Vec<PathBuf> = Vec::new();
    let mut tests_listed = false;
    for line in lines {
        let mut words = line.split_whitespace();
        let entry = words.next().expect("an entry");
        if entry == "**/*_test.rego" {
            tests_listed = true;
            continue;
        }
        let expanded: Vec<String> = match entry.split_once('{') {
            Some((head, rest)) => {
                let (alts, tail) = rest.split_once('}').expect("{a,b}");
                alts.split(',')
                    .map(|a| format!("{head}{a}{tail}"))
                    .collect()
            }
            None => vec![entry.to_owned()],
        };
        for e in expanded {
            if let Some(dir) = e.strip_suffix('…') {
                assert!(root.join(dir).is_dir(), "{}: `{e}` is no directory", b.at());
                listed_dirs.push(root.join(dir));
                continue;
            }
            let file = root.join(&e);
            assert!(file.is_file(), "{}: `{e}` does not exist", b.at());
            // `nodes.rego: node id list`: a file beside this one.
            for w in words.clone() {
                let w = w.trim_matches(|c: char| "(),;:".contains(c));
                if w.ends_with(".rego") && !w.contains('/') {
                    let beside = file.with_file_name(w);
                    assert!(beside.is_file(), "{}: `{w}` is not beside `{e}`", b.at());
                    listed.insert(beside);
                }
            }
            listed.insert(file);
        }
    }
    assert!(tests_listed, "{}: the test files", b.at());
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root, &mut files);
    let unlisted: Vec<String> = files
        .iter()
        .filter(|p| p.file_name().unwrap() != "README.md")
        .filter(|p| !p.to_string_lossy().ends_with("_test.rego"))
        .filter(|p| !listed.contains(*p) && !listed_dirs.iter().any(|d| p.starts_with(d)))
        .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert!(
        unlisted.is_empty(),
        "{}: the layout does not list {unlisted:?}",
        b.at()
    );
}

// --- rego/README.md: the library ---------------------------------------------------

/// rego/README's examples, applied to one copy of `rego/` and
/// `tests/fixtures` (the "lab"), where the guide's own commands then run:
///
/// - the velocity soft-cap rule and its test, written where their first line
///   says; the worked example's and the cool-down's data merged into
///   `data.yaml` (the worked example's is the shipped data);
/// - fixtures made from the examples: the fixture skeleton (its `expect`
///   verbatim), README's `history`, the cool-down message (exactly, half way
///   through the cool-down) and its "usable from" time (approves), the
///   count-limit message; a generated test expects the freeze message with
///   the prose's `freeze` value;
/// - "Run": each `cargo run -- test …` line passes; the first runs every
///   test and fixture of the lab, the doc's included; `--coverage` lists the
///   doc's rule; `--run usdt` runs only matching cases, every one shown;
/// - "See what a request gets": each `eval` line, on `request.json` (the
///   approving fixture's request) where it names it; the decision of the
///   approving request is the decision contract's example;
/// - "Before deploying": `check --config` on a config for the lab: exit 0,
///   no warning (the doc's rule compiles and reads only real input paths);
/// - the test example tests the rule example: without the rule it fails.
#[test]
fn rego_readme_examples_run_in_a_copy_of_the_library() {
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = lab_dir.path();
    copy_tree(&repo().join("rego"), &lab.join("rego"));
    let fixtures = lab.join("tests/fixtures");
    copy_tree(&repo().join("tests/fixtures"), &fixtures);

    // Rego modules, where their first line says.
    let rule = rego_module(&example(REGO_README, "soft-cap-rule"));
    let test = rego_module(&example(REGO_README, "soft-cap-test"));
    assert!(test.1.contains("package tss.keysign_test"));
    let test_names: Vec<&str> = test
        .1
        .lines()
        .filter(|l| l.starts_with("test_"))
        .filter_map(|l| l.split([' ', '(']).next())
        .collect();
    assert!(!test_names.is_empty(), "the test example has test_ rules");
    for (path, text) in [&rule, &test] {
        let target = lab.join(path);
        assert!(!target.exists(), "{path}: a new file, not a shipped one");
        std::fs::write(&target, text).unwrap();
    }

    // Data: the worked example's knobs are the shipped ones; both examples
    // merged into the lab's data.yaml.
    let data_path = lab.join("rego/data.yaml");
    let mut data = shipped_data();
    let usdt = example(REGO_README, "usdt-cap-data");
    assert!(
        yaml_contains(&data, &usdt.yaml()),
        "{}: the worked example's knobs are the shipped rego/data.yaml's",
        usdt.at()
    );
    let cooldown = example(REGO_README, "cooldown-data");
    for b in [&usdt, &cooldown] {
        yaml_merge(&mut data, &b.yaml());
    }
    std::fs::write(&data_path, serde_yaml_ng::to_string(&data).unwrap()).unwrap();

    // The fixture skeleton: its request fields and `expect`, verbatim, on a
    // real request of its type with the token its reason names.
    let b = example(REGO_README, "fixture");
    let skeleton = b.json();
    let keys: BTreeSet<&str> = skeleton
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["description", "request", "expect"]),
        "{}",
        b.at()
    );
    let mut f = fixture("keysign_token_not_allowed_reject");
    for (k, v) in skeleton["request"].as_object().unwrap() {
        assert!(
            f["request"][k].is_string() == v.is_string()
                && f["request"][k].is_number() == v.is_number(),
            "{}: `{k}` is written as in a real fixture",
            b.at()
        );
    }
    let reason = skeleton["expect"]["reasons"][0].as_str().expect("a reason");
    let mut x = extra(&f);
    x["transaction"]["token_id"] = json!(quoted(reason, "token "));
    set_extra(&mut f, x);
    f["request"]["request_type"] = skeleton["request"]["request_type"].clone();
    f["description"] = skeleton["description"].clone();
    f["expect"] = skeleton["expect"].clone();
    write_fixture(&fixtures, "docs_fixture_skeleton", &f);

    // README's history fragment, against the shipped limits.
    write_fixture(&fixtures, "docs_readme_history", &history_fixture());

    // The cool-down: the message exactly, half way through the cool-down of
    // the example's address; an approval from the "usable from" time on.
    let cd = cooldown.yaml();
    let period = cd["keysign"]["destination_cooldown"]
        .as_str()
        .expect("destination_cooldown");
    let chains = cd["keysign"]["allowed_destinations"].as_mapping().unwrap();
    assert_eq!(chains.len(), 1, "{}", cooldown.at());
    let (chain, addrs) = chains.iter().next().unwrap();
    let (addr, entry) = addrs.as_mapping().unwrap().iter().next().unwrap();
    let added_at = entry["added_at"].as_str().expect("added_at");
    let b = example(REGO_README, "cooldown-message");
    let message = b.text.trim();
    assert_eq!(message.lines().count(), 1, "{}", b.at());
    let paid = quoted(message, "destination address ");
    assert_eq!(&paid.to_lowercase(), addr.as_str().unwrap(), "{}", b.at());
    assert_eq!(quoted(message, "on chain "), chain.as_str().unwrap());
    let added_ms = rfc3339_ms(added_at);
    let usable_ms = added_ms + duration_ms(period);
    let usable = message.rsplit("usable from ").next().unwrap();
    assert_eq!(rfc3339_ms(usable), usable_ms, "{}: {usable}", b.at());
    let mut f = fixture(ETH_USDT_BASE);
    let x = extra(&f);
    let tx = &x["transaction"];
    assert_eq!(tx["destination"]["account_output"]["address"], paid);
    assert_eq!(tx["chain_id"], *chain.as_str().unwrap());
    f["description"] = json!("rego/README's cool-down message, half way through the cool-down");
    f["received_at_ms"] = json!((added_ms + usable_ms) / 2);
    f["expect"] = json!({"action": "REJECT", "status": 0, "reasons": [message]});
    write_fixture(&fixtures, "docs_cooldown_message_reject", &f);
    f["description"] = json!("rego/README's cool-down: usable from the time its message names");
    f["received_at_ms"] = json!(usable_ms);
    f["expect"] = json!({"action": "APPROVE", "status": 0, "reasons": []});
    write_fixture(&fixtures, "docs_cooldown_usable_from_approve", &f);

    // The count limit's message: as many earlier requests of the wallet in
    // the window as the message says were made before this one.
    let b = example(REGO_README, "velocity-messages");
    let count_msg = b
        .text
        .lines()
        .find(|l| l.contains(" requests in the last "))
        .expect("the count message");
    let limit_id = quoted(count_msg, "spending limit ");
    let group = count_msg
        .split_once('(')
        .unwrap()
        .1
        .split_once(')')
        .unwrap()
        .0;
    let (dim, prefix) = group.split_once('=').unwrap();
    assert_eq!(dim, "wallet", "{}", b.at());
    let total: u64 = count_msg
        .split(" requests")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("N requests");
    let mut f = fixture(ETH_USDT_BASE);
    let wallet = extra(&f)["transaction"]["wallet_id"].clone();
    assert!(
        wallet
            .as_str()
            .unwrap()
            .starts_with(prefix.trim_end_matches('…'))
    );
    f["description"] = json!("rego/README's count-limit message");
    f["received_at_ms"] = json!(1_764_000_000_000_i64);
    f["history"] =
        json!([{"limit": limit_id, "group": {"wallet": wallet}, "ago": "1m", "repeat": total - 1}]);
    let pieces: Vec<&str> = count_msg.split('…').filter(|p| !p.is_empty()).collect();
    f["expect"] = json!({"action": "REJECT", "status": 0, "reasons": pieces});
    write_fixture(&fixtures, "docs_count_limit_message_reject", &f);

    // The freeze message, with the `freeze` value the prose shows.
    let prose = doc_text(REGO_README);
    let freeze = prose
        .split('`')
        .find(|s| s.starts_with("freeze: {"))
        .expect("the prose's `freeze: {…}`");
    let freeze: serde_yaml_ng::Value = serde_yaml_ng::from_str(freeze).unwrap();
    let freeze = serde_json::to_value(&freeze["freeze"]).unwrap();
    let b = example(REGO_README, "freeze-message");
    let frozen = b.text.trim();
    std::fs::write(
        lab.join("rego/tss/keysign/docs_examples_test.rego"),
        format!(
            "# Generated by tests/docs.rs from rego/README.md.\npackage tss.keysign_test\n\n\
             test_docs_freeze_message if {{\n\
             \tm := all_msgs with input as req({{}}) with data.freeze as {freeze} with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg\n\
             \t{} in m\n}}\n",
            json!(frozen)
        ),
    )
    .unwrap();

    // The bare request the eval lines read.
    let approving = fixture("keysign_eth_approve");
    std::fs::write(lab.join("request.json"), approving["request"].to_string()).unwrap();

    // "Run": every test and fixture of the lab passes, the doc's included.
    let expected_cases =
        count_rego_tests(&lab.join("rego")) + tss_gate::fixture::discover(&fixtures).unwrap().len();
    let b = example(REGO_README, "run");
    let runs = commands(&b);
    assert_eq!(runs.len(), 3, "{}", b.at());
    let mut helps = Helps::new();
    for c in &runs {
        let args = c.tss_gate_args().expect("tss-gate");
        helps.assert_flags_exist(&c.line, &args);
        let o = bin().args(&args).current_dir(lab).output().unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{}\n{out}\n{err}", c.line);
        let summary = out.trim_end().lines().last().unwrap_or_default().to_owned();
        let passed: usize = summary
            .strip_suffix(" passed, 0 failed")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}: summary `{summary}`", c.line));
        if args.iter().any(|a| a == "--run") {
            let regex = args.iter().skip_while(|a| *a != "--run").nth(1).unwrap();
            let shown: Vec<&str> = out
                .lines()
                .filter_map(|l| l.split_once(": PASS (").map(|(n, _)| n))
                .collect();
            assert_eq!(shown.len(), passed, "-v shows every case:\n{out}");
            assert!(passed > 0 && passed < expected_cases, "{passed}");
            let regex = regex::Regex::new(regex).unwrap();
            for name in shown {
                assert!(regex.is_match(name), "{name} matches {regex}");
            }
        } else {
            assert_eq!(
                passed, expected_cases,
                "{}: every test and fixture\n{out}",
                c.line
            );
        }
        if args.iter().any(|a| a == "--coverage") {
            assert!(
                out.lines().any(|l| l.trim_end().ends_with(&rule.0)),
                "coverage lists {}:\n{out}",
                rule.0
            );
        }
    }

    // "See what a request gets".
    let decision = example(REGO_README, "decision").json();
    let b = example(REGO_README, "eval");
    let evals = commands(&b);
    assert_eq!(evals.len(), 3, "{}", b.at());
    for c in &evals {
        let args = c.tss_gate_args().expect("tss-gate");
        helps.assert_flags_exist(&c.line, &args);
        let mut cmd = bin();
        cmd.args(&args).current_dir(lab);
        if let Some(file) = &c.stdin {
            cmd.stdin(std::fs::File::open(lab.join(file)).unwrap());
        } else {
            cmd.stdin(Stdio::null());
        }
        let o = cmd.output().unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{}\n{err}", c.line);
        let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{}: {e}", c.line));
        if args.iter().any(|a| a == "--input-only") {
            assert_eq!(
                doc["request_type"], "KEYSIGN",
                "{}: the input document",
                c.line
            );
            assert!(doc["extra"]["transaction"].is_object() && doc.get("decision").is_none());
        } else if args.iter().any(|a| a == "--explain") {
            // The worked example: `--explain` names the rule in usdt_cap.rego.
            assert_eq!(doc["decision"]["allow"], false);
            let rules: Vec<&str> = doc["explain"]["denies"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|d| d["rules"].as_array().unwrap())
                .filter_map(|r| r["location"].as_str())
                .collect();
            assert!(
                rules
                    .iter()
                    .any(|l| l.contains("tss/keysign/usdt_cap.rego:")),
                "{}: {rules:?}",
                c.line
            );
        } else {
            for k in ["input", "decision", "answer"] {
                assert!(doc.get(k).is_some(), "{}: `{k}`", c.line);
            }
            assert_eq!(
                doc["decision"], decision,
                "the approving request's decision is the contract's example"
            );
        }
    }

    // "Before deploying", on a config for the lab.
    let ws = Workspace::new();
    let config = ws.config_with_policy(&lab.join("rego"), "");
    let b = example(REGO_README, "check");
    let checks = commands(&b);
    assert_eq!(checks.len(), 1, "{}", b.at());
    let mut args = checks[0].tss_gate_args().expect("tss-gate");
    helps.assert_flags_exist(&checks[0].line, &args);
    let at = args.iter().position(|a| a == "--config").expect("--config") + 1;
    args[at] = config.display().to_string();
    let o = bin().args(&args).current_dir(lab).output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{}\n{out}\n{err}", checks[0].line);
    assert!(out.contains("warnings: 0"), "{out}\n{err}");

    // The test example tests the rule example: without the rule, it fails.
    std::fs::remove_file(lab.join(&rule.0)).unwrap();
    let only = format!("\\.({})$", test_names.join("|"));
    let o = bin()
        .args(["test", "--run", &only])
        .current_dir(lab)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{test_names:?} fail without {}:\n{out}\n{err}",
        rule.0
    );
    assert!(
        out.trim_end().ends_with(" failed") && !out.contains(" 0 failed"),
        "{out}"
    );
}

/// The spending-limit examples, each the only limit of a copy of the
/// library: `tss-gate check` accepts it, and fixtures decide as the guides
/// say. README's `history` fragment stops the transfer at the maximum
/// (under either limit example); rego/README's fact is exactly what the
/// server computes for its limit example (`eval --input-only`), and its
/// amount message is the answer's reason. README's limit with its maximum
/// unquoted is refused, naming the data file, the limit's line and why.
#[test]
fn the_spending_limit_examples_load_and_decide_as_the_guides_say() {
    let history = history_fixture();
    let empty = tempfile::tempdir().unwrap();
    for b in [example(README, "limit"), example(REGO_README, "limit")] {
        let doc = b.doc;
        let (limits, limit) = declared_limit(&b);
        let ws = Workspace::new();
        let dir = policy_with_limits(&ws, Some(&serde_yaml_ng::to_string(&limits).unwrap()));
        let config = ws.config_with_policy(&dir, "");
        let o = bin()
            .arg("check")
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}: accepted\n{out}\n{err}",
            b.at()
        );

        let fixtures = ws.path().join("fixtures");
        write_fixture(&fixtures, "docs_readme_history", &history);
        if doc == REGO_README {
            // The fact: the limit's group with used_count earlier requests
            // moving used_amount, then this one moving amount, decided at
            // since_ms + window_ms.
            let fb = example(REGO_README, "fact");
            let fact = fb.json();
            assert_eq!(fact["limit"], limit["id"], "{}", fb.at());
            assert_eq!(fact["window"], limit["window"], "{}", fb.at());
            let mut f = fixture(ETH_USDT_BASE);
            let mut x = extra(&f);
            let tx = &x["transaction"];
            assert_eq!(
                fact["group"],
                json!({"wallet": tx["wallet_id"], "token": tx["token_id"]}),
                "{}",
                fb.at()
            );
            x["transaction"]["destination"]["account_output"]["amount"] = fact["amount"].clone();
            set_extra(&mut f, x);
            let used = micros(fact["used_amount"].as_str().unwrap());
            let n = fact["used_count"].as_u64().unwrap() as u128;
            assert_eq!(used % n, 0, "{}: equal earlier amounts", fb.at());
            f["received_at_ms"] =
                json!(fact["since_ms"].as_i64().unwrap() + fact["window_ms"].as_i64().unwrap());
            f["history"] = json!([{
                "limit": fact["limit"], "group": fact["group"],
                "amount": from_micros(used / n), "ago": "1m", "repeat": n as u64,
            }]);
            let mb = example(REGO_README, "velocity-messages");
            let message = mb
                .text
                .lines()
                .find(|l| l.contains(&format!("`{}`", fact["limit"].as_str().unwrap())))
                .expect("the amount message");
            let pieces: Vec<&str> = message.split('…').filter(|p| !p.is_empty()).collect();
            f["description"] = json!("rego/README's velocity fact and its message");
            f["expect"] = json!({"action": "REJECT", "status": 0, "reasons": pieces});
            write_fixture(&fixtures, "docs_velocity_fact", &f);

            let o = bin()
                .args(["eval", "--input-only", "--policy-dir"])
                .arg(&dir)
                .arg(fixtures.join("docs_velocity_fact.json"))
                .output()
                .unwrap();
            let (out, err) = text(&o);
            assert_eq!(o.status.code(), Some(0), "{err}");
            let input: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(
                input["velocity"][fact["limit"].as_str().unwrap()],
                json!([fact]),
                "{}: the fact the server computes",
                fb.at()
            );
        }
        // The fixtures only: the Rego tests hold the shipped limits.
        let o = bin()
            .arg("test")
            .arg("--policy-dir")
            .arg(&dir)
            .arg("--fixtures")
            .arg(&fixtures)
            .arg(empty.path())
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{}\n{out}\n{err}", b.at());
        let n = tss_gate::fixture::discover(&fixtures).unwrap().len();
        assert!(
            out.trim_end().ends_with(&format!("{n} passed, 0 failed")),
            "{out}"
        );

        if doc == README {
            // "a decimal STRING": unquoted, the set is refused.
            let bad = b
                .text
                .lines()
                .map(|l| {
                    if l.trim_start().starts_with("max_amount:") {
                        l.replacen('"', "", 2)
                    } else {
                        l.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            assert_ne!(bad, b.text.trim_end());
            let ws = Workspace::new();
            let (limits, _) = declared_limit(&Block {
                text: bad,
                ..b.clone()
            });
            let dir = policy_with_limits(&ws, Some(&serde_yaml_ng::to_string(&limits).unwrap()));
            let config = ws.config_with_policy(&dir, "");
            let o = bin()
                .arg("check")
                .arg("--config")
                .arg(&config)
                .output()
                .unwrap();
            let (out, err) = text(&o);
            assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
            let data_yaml = dir.join("data.yaml");
            let line = std::fs::read_to_string(&data_yaml)
                .unwrap()
                .lines()
                .position(|l| {
                    l.trim_end()
                        .ends_with(&format!("id: {}", limit["id"].as_str().unwrap()))
                })
                .unwrap()
                + 1;
            for want in [
                data_yaml.display().to_string(),
                format!("line {line}"),
                "max_amount".to_owned(),
            ] {
                assert!(err.contains(&want), "`{want}` in: {err}");
            }
        }
    }
}

/// The worked example "allowing a contract call" is the shipped data, so
/// its fixtures (`tests/fixtures/calls_*`) decide as the guide says.
#[test]
fn the_contract_call_example_is_the_shipped_data() {
    let data = shipped_data();
    for b in [
        example(REGO_README, "call-abi-data"),
        example(REGO_README, "call-allow-data"),
    ] {
        assert!(
            yaml_contains(&data, &b.yaml()),
            "{}: the example is not in rego/data.yaml",
            b.at()
        );
    }
}

// --- the census --------------------------------------------------------------------

#[test]
fn every_fenced_block_of_both_guides_is_run() {
    let source = include_str!("docs.rs");
    let mut seen: BTreeSet<(&str, String)> = BTreeSet::new();
    let mut walkthrough = 0;
    let mut total = 0;
    for doc in [README, REGO_README] {
        for b in fenced(doc) {
            total += 1;
            let name = name_of(&b).unwrap_or_else(|e| panic!("{e}"));
            if name.starts_with("walkthrough ") {
                walkthrough += 1;
                continue;
            }
            assert!(
                seen.insert((doc, name.clone())),
                "{}: a second block named `{name}`",
                b.at()
            );
            let covered = COVERED.iter().any(|(d, n, _)| *d == doc && *n == name);
            let not_run = NOT_RUN.iter().any(|(d, n, _)| *d == doc && *n == name);
            assert!(
                covered != not_run,
                "{}: block `{name}` must be run by a test (COVERED) or listed in NOT_RUN with the reason, not {}",
                b.at(),
                if covered { "both" } else { "neither" }
            );
        }
    }
    for (doc, name, by) in COVERED {
        assert!(
            seen.contains(&(*doc, name.to_string())),
            "COVERED names no block: {doc} `{name}`"
        );
        let konst = if *doc == README {
            "README"
        } else {
            "REGO_README"
        };
        assert!(
            source.contains(&format!("example({konst}, \"{name}\")")),
            "{doc} `{name}`: COVERED says {by:?}, but no test reads the block"
        );
    }
    for (doc, name, why) in NOT_RUN {
        assert!(seen.contains(&(*doc, name.to_string())), "{doc} `{name}`");
        assert!(!why.trim().is_empty(), "{doc} `{name}`: the reason");
    }
    // The "Add a rule" walkthrough: tests/new_rule.rs applies exactly the
    // blocks under its marker, and expects as many as there are.
    let new_rule = doc_text("tests/new_rule.rs");
    assert!(new_rule.contains(&format!("\"{WALKTHROUGH_MARKER}\"")));
    let expected: usize = new_rule
        .split("paths.len(), ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .expect("tests/new_rule.rs asserts the number of walkthrough blocks");
    assert_eq!(
        walkthrough, expected,
        "walkthrough blocks in rego/README.md"
    );
    assert_eq!(seen.len() + walkthrough, total);
    assert!(total >= 26, "{total} blocks");
}
