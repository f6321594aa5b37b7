//! The crate's floor plan, checked from its source so it stays true: no
//! two files import each other in a circle; the decision, the store and the
//! pure modules never reach up into the transport, the runtime, the CLI or
//! the configuration; only the transports speak HTTP; a decision-log event
//! is built in one place.
//!
//! Imports are read from the code (comments stripped): every `crate::…`
//! and `super::…` path, braces expanded, resolved to the file that defines
//! the longest prefix of it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Files whose module path starts with one of these may not import
/// anything under `FORBIDDEN`.
const LOWER: &[&str] = &[
    "decide",
    "store",
    "clock",
    "pace",
    "private_fs",
    "protocol",
    "derive",
    "velocity",
    "keys",
    "input",
    "policy",
    "metrics",
    "fixture",
    "token",
    "decision_log",
    "freeze",
    "workers",
];
const FORBIDDEN: &[&str] = &["http", "runtime", "cli", "config"];

/// Where HTTP may be spoken: the transport, the node's event endpoint and
/// the load generator.
const HTTP_ALLOWED: &[&str] = &["http", "events::ingest", "loadgen"];

struct File {
    /// `decide::steps`, `lib` for src/lib.rs.
    module: String,
    code: String,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(SRC).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        parts.push(stem.to_owned());
    }
    if parts.is_empty() {
        "lib".into()
    } else {
        parts.join("::")
    }
}

/// The code without comments or string contents (a path in a doc comment
/// or a message is not an import).
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            out.push('"');
            i += 1;
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // A char literal such as '{' (lifetimes have no closing quote).
            i += 3;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Parses `a::b::{c, d::e}` from `s[i..]`, appending full paths to `out`.
fn parse_path(s: &[u8], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    loop {
        while i < s.len() && s[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < s.len() && s[i] == b'{' {
            i += 1;
            loop {
                while i < s.len() && (s[i].is_ascii_whitespace() || s[i] == b',') {
                    i += 1;
                }
                if i >= s.len() || s[i] == b'}' {
                    return i + 1;
                }
                i = parse_path(s, i, path.clone(), out);
            }
        }
        let start = i;
        while i < s.len() && is_ident(s[i]) {
            i += 1;
        }
        if start == i {
            out.push(path);
            return i;
        }
        path.push(String::from_utf8_lossy(&s[start..i]).into_owned());
        if s[i..].starts_with(b"::") {
            i += 2;
        } else {
            out.push(path);
            return i;
        }
    }
}

/// Every path the code names through `crate::` or `super::`, absolute.
/// Inside an inline `mod x { … }` (a file's tests), `super` is the file.
fn paths(module: &str, code: &str) -> Vec<Vec<String>> {
    let s = code.as_bytes();
    let mut out = Vec::new();
    let mut here: Vec<String> = module.split("::").map(str::to_owned).collect();
    if module == "lib" {
        here.clear();
    }
    let file_len = here.len();
    // Brace depth, and the depth each open inline module's body began at.
    let mut depth = 0usize;
    let mut inline: Vec<usize> = Vec::new();
    let mut opening: Option<String> = None;
    let mut i = 0;
    while i < s.len() {
        let boundary = i == 0 || !is_ident(s[i - 1]) && s[i - 1] != b':';
        if boundary && s[i..].starts_with(b"crate::") {
            i = parse_path(s, i + 7, Vec::new(), &mut out);
        } else if boundary && s[i..].starts_with(b"super::") {
            let mut base = here.clone();
            let mut j = i;
            while s[j..].starts_with(b"super::") {
                base.pop();
                j += 7;
            }
            i = parse_path(s, j, base, &mut out);
        } else if boundary && s[i..].starts_with(b"mod ") {
            let mut j = i + 4;
            let start = j;
            while j < s.len() && is_ident(s[j]) {
                j += 1;
            }
            let name = String::from_utf8_lossy(&s[start..j]).into_owned();
            while j < s.len() && s[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < s.len() && s[j] == b'{' {
                opening = Some(name);
            }
            i = j;
        } else if s[i] == b'{' {
            depth += 1;
            if let Some(name) = opening.take() {
                inline.push(depth);
                here.push(name);
            }
            i += 1;
        } else if s[i] == b'}' {
            if inline.last() == Some(&depth) {
                inline.pop();
                here.pop();
            }
            depth = depth.saturating_sub(1);
            i += 1;
        } else {
            i += 1;
        }
    }
    debug_assert!(here.len() >= file_len);
    out
}

fn load() -> Vec<File> {
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    files
        .into_iter()
        .filter(|p| !p.ends_with("main.rs"))
        .map(|p| File {
            module: module_of(&p),
            code: strip(&std::fs::read_to_string(&p).expect("read")),
        })
        .collect()
}

/// module → the other modules (files) it imports.
fn graph(files: &[File]) -> BTreeMap<String, BTreeSet<String>> {
    let known: BTreeSet<&str> = files.iter().map(|f| f.module.as_str()).collect();
    let mut g = BTreeMap::new();
    for f in files {
        let mut to = BTreeSet::new();
        for p in paths(&f.module, &f.code) {
            // The longest prefix that is a file of the crate.
            let target = (1..=p.len())
                .rev()
                .map(|n| p[..n].join("::"))
                .find(|m| known.contains(m.as_str()));
            if let Some(t) = target
                && t != f.module
            {
                to.insert(t);
            }
        }
        g.insert(f.module.clone(), to);
    }
    g
}

fn under(module: &str, area: &str) -> bool {
    module == area || module.starts_with(&format!("{area}::"))
}

#[test]
fn no_two_files_import_each_other_in_a_circle() {
    let g = graph(&load());
    // Tarjan's strongly connected components.
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        circles: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut c = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                c.push(w);
                if w == v {
                    break;
                }
            }
            if c.len() > 1 {
                t.circles.push(c);
            }
        }
    }
    let mut t = T {
        g: &g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        circles: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    let describe: Vec<String> = t
        .circles
        .iter()
        .map(|c| {
            let ties: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    g[*a]
                        .iter()
                        .filter(|b| c.contains(&b.as_str()))
                        .map(move |b| format!("{a} -> {b}"))
                })
                .collect();
            ties.join(", ")
        })
        .collect();
    assert!(describe.is_empty(), "import circles: {describe:#?}");
}

#[test]
fn the_decision_the_store_and_the_pure_modules_never_import_upwards() {
    let g = graph(&load());
    let mut wrong = Vec::new();
    for (from, to) in &g {
        if !LOWER.iter().any(|l| under(from, l)) {
            continue;
        }
        for t in to {
            if FORBIDDEN.iter().any(|f| under(t, f)) {
                wrong.push(format!("{from} -> {t}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports that run upwards: {wrong:#?}");
}

#[test]
fn only_the_transports_speak_http() {
    let mut wrong = Vec::new();
    for f in load() {
        if HTTP_ALLOWED.iter().any(|a| under(&f.module, a)) {
            continue;
        }
        for word in ["axum::", "hyper::", "hyper_util::"] {
            if f.code.contains(word) {
                wrong.push(format!("{} uses {word}", f.module));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn a_decision_log_event_is_built_in_one_place() {
    let mut builders = Vec::new();
    for f in load() {
        if f.module == "decision_log" {
            continue;
        }
        let n = f.code.matches("decision_log::Event {").count();
        if n > 0 {
            builders.push((f.module, n));
        }
    }
    assert_eq!(
        builders,
        vec![("decide::effects".to_owned(), 1)],
        "decision_log::Event literals outside decision_log.rs"
    );
}

#[test]
fn one_path_decides_a_request() {
    let files = load();
    let modules: BTreeSet<&str> = files.iter().map(|f| f.module.as_str()).collect();
    for gone in ["pipeline", "retry", "server", "state", "reload"] {
        assert!(
            !modules.contains(gone),
            "src/{gone}.rs is back: the decision has one home (decide/)"
        );
    }
    for f in &files {
        assert!(
            !f.code.contains("fn process("),
            "{} defines a second decision path (`fn process`)",
            f.module
        );
    }
}

/// The reader itself: braces, `super::` and comments resolve as written.
#[test]
fn paths_are_read_as_the_compiler_reads_them() {
    let code = strip(
        "use super::{steps::{Admitted, Failure}, retry};\n// crate::cli::x\nlet _ = crate::store::Pending; \"crate::http\"\nmod tests { use super::*; }",
    );
    let p = paths("decide::ledger", &code);
    let flat: Vec<String> = p.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        flat,
        vec![
            "decide::steps::Admitted",
            "decide::steps::Failure",
            "decide::retry",
            "store::Pending",
            "decide::ledger"
        ]
    );
}

/// lib.rs's layout map names every module of the crate once.
#[test]
fn the_layout_map_names_every_module() {
    let lib = std::fs::read_to_string(Path::new(SRC).join("lib.rs")).expect("lib.rs");
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_owned())
        .collect();
    let mut named = Vec::new();
    for l in lib.lines().filter(|l| l.starts_with("//! - ")) {
        let head = l.split("]:").next().unwrap_or("");
        for part in head.split("[`").skip(1) {
            named.push(part.trim_end_matches(['`', ']', ',', ' ']).to_owned());
        }
    }
    let once: BTreeSet<String> = named.iter().cloned().collect();
    assert_eq!(once.len(), named.len(), "named twice: {named:?}");
    assert_eq!(
        once, declared,
        "the layout map and the `pub mod` list differ"
    );
}
