//! Input paths a policy reads that the input document never has: a
//! misspelled field (`tx.initator`) is undefined in Rego, so the rule that
//! reads it silently never fires (or, negated, always does). `check` and
//! `test` warn about each, with `file:line` and the closest known name,
//! using the project's JSON Schema of the input (`docs/input.schema.json`,
//! the same file `opa check --schema` loads).
//!
//! It reads the policy text, not the compiled policy: `input.a.b` paths,
//! and names bound to an input path (`tx := input.extra.transaction`, at
//! rule level for the whole package, or inside one rule) followed by
//! `.field`. Brackets (`[i]`, `[_]`, `["key"]`) are followed too. Text in
//! comments and strings is ignored. Only warnings: a false alarm never
//! blocks a policy.

use std::collections::BTreeMap;

use serde_json::Value;

/// The input document's schema, shipped with the binary.
pub const SCHEMA: &str = include_str!("../../docs/input.schema.json");

/// One suspicious path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    /// The path as written, e.g. `tx.initator`.
    pub written: String,
    /// The input path it stands for, e.g. `input.extra.transaction.initator`.
    pub resolved: String,
    /// The segment that does not exist and where: `initator` under
    /// `input.extra.transaction`.
    pub missing: String,
    pub parent: String,
    pub suggestion: Option<String>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: `{}` reads `{}`, which the input never has: `{}` has no field `{}`",
            self.file, self.line, self.written, self.resolved, self.parent, self.missing
        )?;
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean `{s}`?)")?;
        }
        write!(f, "; see docs/input.md")
    }
}

/// A path segment: a field name, or any element/key (`[i]`, `[_]`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Name(String),
    Any,
}

/// Checks every file `(path, text)` against the shipped schema.
pub fn check(files: &[(String, String)]) -> Vec<Finding> {
    let schema: Value = match serde_json::from_str(SCHEMA) {
        Ok(s) => s,
        Err(_) => return Vec::new(),
    };
    check_with(&schema, files)
}

pub fn check_with(schema: &Value, files: &[(String, String)]) -> Vec<Finding> {
    let cleaned: Vec<(String, String, String)> = files
        .iter()
        .map(|(p, t)| (p.clone(), package_of(t), blank_comments_and_strings(t)))
        .collect();
    // Rule-level aliases are visible in every file of their package.
    let mut package_aliases: BTreeMap<String, BTreeMap<String, Vec<Seg>>> = BTreeMap::new();
    for (_, pkg, text) in &cleaned {
        for (_, local, name, segs) in aliases(text) {
            if !local {
                package_aliases
                    .entry(pkg.clone())
                    .or_default()
                    .insert(name, segs);
            }
        }
    }
    let mut out = Vec::new();
    for (path, pkg, text) in &cleaned {
        let lines: Vec<&str> = text.lines().collect();
        let locals = aliases(text);
        for (i, line) in lines.iter().enumerate() {
            for (_, written, segs) in refs(line) {
                let (root, rest) = segs
                    .split_first()
                    .map_or((Seg::Any, &[][..]), |(r, s)| (r.clone(), s));
                let Seg::Name(root) = root else { continue };
                let base: Vec<Seg> = if root == "input" {
                    Vec::new()
                } else if let Some(segs) = local_alias(&locals, &lines, i, &root) {
                    segs
                } else if let Some(segs) = package_aliases.get(pkg).and_then(|a| a.get(&root)) {
                    segs.clone()
                } else {
                    continue;
                };
                // `x := input.y` itself is checked as `input.y`.
                if root != "input" && rest.is_empty() {
                    continue;
                }
                let mut full = base;
                full.extend(rest.iter().cloned());
                if let Some(mut f) = walk(schema, &full) {
                    f.file = path.clone();
                    f.line = i + 1;
                    f.written = written.clone();
                    out.push(f);
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.file, a.line, &a.written).cmp(&(&b.file, b.line, &b.written)));
    out.dedup();
    out
}

/// The package a file declares (`tss.keysign`), or empty.
fn package_of(text: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("package "))
        .map(|p| p.trim().to_owned())
        .unwrap_or_default()
}

/// The text with comments and the insides of string literals replaced by
/// spaces, line structure kept.
pub(super) fn blank_comments_and_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut quote: Option<char> = None;
    let mut comment = false;
    while let Some(c) = chars.next() {
        if c == '\n' {
            comment = false;
            if quote == Some('"') {
                quote = None;
            }
            out.push('\n');
            continue;
        }
        if comment {
            out.push(' ');
            continue;
        }
        match quote {
            Some(q) => {
                if c == '\\' && q == '"' {
                    out.push(' ');
                    if chars.next().is_some() {
                        out.push(' ');
                    }
                    continue;
                }
                if c == q {
                    quote = None;
                    out.push(c);
                } else {
                    out.push(' ');
                }
            }
            None => match c {
                '#' => {
                    comment = true;
                    out.push(' ');
                }
                '"' | '`' => {
                    quote = Some(c);
                    out.push(c);
                }
                _ => out.push(c),
            },
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// References in one line: `(column, text, segments)` for every
/// `name.a.b[...]` chain with at least one step after the name.
fn refs(line: &str) -> Vec<(usize, String, Vec<Seg>)> {
    let b: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts = (b[i].is_ascii_alphabetic() || b[i] == '_')
            && (i == 0 || !(is_ident(b[i - 1]) || b[i - 1] == '.'));
        if !starts {
            i += 1;
            continue;
        }
        let from = i;
        let mut j = i;
        while j < b.len() && is_ident(b[j]) {
            j += 1;
        }
        let mut segs = vec![Seg::Name(b[from..j].iter().collect())];
        loop {
            if j + 1 < b.len() && b[j] == '.' && (b[j + 1].is_ascii_alphabetic() || b[j + 1] == '_')
            {
                let s = j + 1;
                j = s;
                while j < b.len() && is_ident(b[j]) {
                    j += 1;
                }
                segs.push(Seg::Name(b[s..j].iter().collect()));
            } else if j < b.len() && b[j] == '[' {
                let Some(close) = b[j..].iter().position(|&c| c == ']') else {
                    break;
                };
                // Any index or key: string keys are blanked anyway.
                segs.push(Seg::Any);
                j += close + 1;
            } else {
                break;
            }
        }
        if segs.len() > 1 {
            out.push((from, b[from..j].iter().collect(), segs));
        }
        i = j.max(i + 1);
    }
    out
}

/// `(line index, is_local, name, input path)` for every `name := input...`
/// (or `=`) binding; local when indented (inside a rule body).
fn aliases(text: &str) -> Vec<(usize, bool, String, Vec<Seg>)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let local = line.starts_with([' ', '\t']);
        let t = line.trim_start();
        let Some((lhs, rhs)) = t.split_once(":=").or_else(|| {
            t.split_once('=')
                .filter(|(l, r)| !l.ends_with(['!', '<', '>', '=']) && !r.starts_with('='))
        }) else {
            continue;
        };
        let name = lhs.trim();
        if name.is_empty() || !name.chars().all(is_ident) {
            continue;
        }
        let rhs = rhs.trim_start();
        let Some((_, _, segs)) = refs(rhs).into_iter().find(|(c, _, _)| *c == 0) else {
            continue;
        };
        if segs.first() == Some(&Seg::Name("input".into())) {
            out.push((i, local, name.to_owned(), segs[1..].to_vec()));
        }
    }
    out
}

/// A local binding of `name` in the rule that contains line `at`.
fn local_alias(
    locals: &[(usize, bool, String, Vec<Seg>)],
    lines: &[&str],
    at: usize,
    name: &str,
) -> Option<Vec<Seg>> {
    // The rule starts at the last unindented line at or above `at`.
    let rule_start = (0..=at).rev().find(|&k| {
        lines
            .get(k)
            .is_some_and(|l| !l.is_empty() && !l.starts_with([' ', '\t', '}']))
    })?;
    locals
        .iter()
        .filter(|(l, local, n, _)| *local && n == name && *l >= rule_start && *l <= at)
        .map(|(_, _, _, s)| s.clone())
        .next_back()
}

/// Follows `segs` from the schema's root; the first step the schema does
/// not have, with a suggestion.
fn walk(schema: &Value, segs: &[Seg]) -> Option<Finding> {
    let mut node = schema;
    let mut at = String::from("input");
    for seg in segs {
        let props = node.get("properties").and_then(Value::as_object);
        let items = node.get("items");
        let extra = node.get("additionalProperties").filter(|v| v.is_object());
        node = match (seg, props, items, extra) {
            (Seg::Name(n), Some(p), _, _) => match p.get(n) {
                Some(next) => next,
                None => {
                    let suggestion = p
                        .keys()
                        .map(|k| (strsim::damerau_levenshtein(k, n), k))
                        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
                        .min()
                        .map(|(_, k)| k.clone());
                    return Some(Finding {
                        file: String::new(),
                        line: 0,
                        written: String::new(),
                        resolved: format!("{at}.{n}"),
                        missing: n.clone(),
                        parent: at,
                        suggestion,
                    });
                }
            },
            (_, None, Some(i), _) => i,
            (_, None, None, Some(e)) => e,
            // Opaque (any JSON) or a scalar: nothing more to say.
            _ => return None,
        };
        match seg {
            Seg::Name(n) => {
                at.push('.');
                at.push_str(n);
            }
            Seg::Any => at.push_str("[_]"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        serde_json::json!({
            "type": "object",
            "properties": {
                "request_type": {"type": "string"},
                "extra": {"type": "object", "properties": {
                    "transaction": {"type": "object", "properties": {
                        "initiator": {"type": "string"},
                        "destination": {"type": "object", "properties": {"address": {}}}
                    }}
                }},
                "detail": {"type": "object", "properties": {
                    "msg_hash_list": {"type": "array", "items": {"type": "string"}}
                }},
                "velocity": {"type": "object", "additionalProperties": {
                    "type": "array", "items": {"type": "object", "properties": {"used": {}}}
                }}
            }
        })
    }

    fn found(files: &[(&str, &str)]) -> Vec<String> {
        let files: Vec<(String, String)> = files
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect();
        check_with(&schema(), &files)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn misspelled_paths_are_found_through_aliases_with_a_suggestion() {
        let lib = "package tss.keysign\n\ntx := input.extra.transaction\n";
        let rule = "package tss.keysign\n\n# tx.nothere in a comment\ndeny contains \"tx.alsonot\" if {\n\tnot tx.initator in data.x\n\ttx.destination.address\n\td := input.detail\n\td.msg_hash_list[0] == input.detail.msg_hashlist[_]\n\tinput.velocity.some_limit[_].used\n\tinput.velocity.some_limit[_].usde\n}\n";
        let got = found(&[("lib.rego", lib), ("rule.rego", rule)]);
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(
            got[0]
                .starts_with("rule.rego:5: `tx.initator` reads `input.extra.transaction.initator`"),
            "{}",
            got[0]
        );
        assert!(got[0].contains("did you mean `initiator`?"), "{}", got[0]);
        assert!(
            got[1].starts_with("rule.rego:8: `input.detail.msg_hashlist[_]`"),
            "{}",
            got[1]
        );
        assert!(
            got[1].contains("did you mean `msg_hash_list`?"),
            "{}",
            got[1]
        );
        assert!(
            got[2].starts_with("rule.rego:10:") && got[2].contains("`used`?"),
            "{}",
            got[2]
        );
    }

    #[test]
    fn aliases_stay_in_their_package_and_rule() {
        let other = "package tss.keygen\n\nx if {\n\ttx.initator\n}\n";
        let lib = "package tss.keysign\n\ntx := input.extra.transaction\n";
        let local = "package tss.keygen\n\na if {\n\tt := input.extra.transaction\n\tt.initiator\n}\n\nb if {\n\tt.nope\n}\n";
        assert!(found(&[("lib.rego", lib), ("o.rego", other), ("l.rego", local)]).is_empty());
        assert!(
            found(&[("x.rego", "package p\n\nr if input.nope.deeper\n")])
                .iter()
                .any(|f| f.contains("no field `nope`"))
        );
    }

    #[test]
    fn the_shipped_schema_loads_and_knows_the_fields_policies_use() {
        let schema: Value = serde_json::from_str(SCHEMA).expect("schema is JSON");
        for ok in [
            "input.extra.transaction.initiator",
            "input.detail.msg_hash_list[_]",
            "input.derived.violations",
            "input.velocity.any_limit[_].exceeded",
        ] {
            let files = vec![("p.rego".to_owned(), format!("package p\n\nr if {ok}\n"))];
            assert!(check_with(&schema, &files).is_empty(), "{ok}");
        }
    }
}
