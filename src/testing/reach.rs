//! Which rules the decision can reach. A `deny` in a package the decision
//! never collects (`package tss.withdrawals` under `rego/tss/keysign/`)
//! parses, compiles and passes every test that queries it directly, yet
//! never denies a request. `check`, `test` and the reload gate warn about
//! every `deny` and `allow` rule that the entrypoint cannot reach, with
//! `file:line`, the packages the decision does read them from, and the
//! package the file's directory stands for.
//!
//! Owns the reading of references out of rule text ([`rule_refs`]), shared
//! with [`super::data_keys`]: `data.a.b[x]` paths, paths through `import`
//! aliases, and bare names (rules of the own package). It is static and
//! conservative: anything that could be a reference counts as one (a local
//! variable named like a rule, a dynamic `data.tss[pkg]`), so a rule it calls
//! unreached is one no evaluation can reach; it may miss some that are.

use std::collections::BTreeSet;
use std::path::Path;

use super::rules::{ModuleDef, RuleDef};

/// A step of a reference: a name, or a key not known statically (`[x]`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Seg {
    Name(String),
    Any,
}

impl Seg {
    fn name(&self) -> Option<&str> {
        match self {
            Seg::Name(n) => Some(n),
            Seg::Any => None,
        }
    }
}

/// `a.b[_]` for a path under `data`.
pub fn show(path: &[Seg]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Seg::Name(n) if out.is_empty() => out.push_str(n),
            Seg::Name(n) => {
                out.push('.');
                out.push_str(n);
            }
            Seg::Any => out.push_str("[_]"),
        }
    }
    out
}

/// One reference in a rule, resolved to a path under `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    /// 1-based line in the rule's file.
    pub line: u32,
    /// The reference as written (`tx.token_id`, `data.keysign.caps[t]`).
    pub written: String,
    pub path: Vec<Seg>,
    /// Written as `data.…` or through an `import data.…` alias; otherwise a
    /// bare name, which can only mean a rule of the own package.
    pub explicit: bool,
    /// The argument of a type test (`is_object(data.x)`) or the object of
    /// `object.get(data.x, …)`: the policy expects it may be absent.
    pub presence_test: bool,
    /// Right after `with`: a replacement target, not a read.
    pub with_target: bool,
}

/// Whether two paths can name the same document: one is a prefix of the
/// other, an unknown key matching any name.
pub fn overlaps(a: &[Seg], b: &[Seg]) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| x == y || *x == Seg::Any || *y == Seg::Any)
}

/// A dotted path (`tss.keysign`) as segments.
fn dotted(p: &str) -> Vec<Seg> {
    p.split('.')
        .filter(|s| !s.is_empty())
        .map(|s| Seg::Name(s.trim().to_owned()))
        .collect()
}

/// `alias -> data path` for a module's `import data.…` statements.
fn import_aliases(m: &ModuleDef) -> Vec<(String, Vec<Seg>)> {
    let mut out = Vec::new();
    for i in &m.imports {
        let t = i.trim().trim_start_matches("import").trim();
        let (path, alias) = match t.split_once(" as ") {
            Some((p, a)) => (p.trim(), Some(a.trim())),
            None => (t, None),
        };
        let Some(rest) = path.strip_prefix("data.") else {
            continue;
        };
        let segs = dotted(rest);
        let name = alias
            .map(str::to_owned)
            .or_else(|| segs.last().and_then(Seg::name).map(str::to_owned));
        if let Some(name) = name {
            out.push((name, segs));
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The key inside `[...]` when it is a plain string literal in the source.
fn literal_key(orig: &[char]) -> Option<String> {
    let s: String = orig.iter().collect();
    let s = s.trim();
    for q in ['"', '`'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q))
            && !inner.contains(['\\', '"', '`'])
        {
            return Some(inner.to_owned());
        }
    }
    None
}

/// `(start, end, segments)` of every `name.a[k].b` chain in `clean` (the
/// text with comments and strings blanked); `orig` is the same text
/// unblanked (same length in chars), for string keys. Chains inside
/// brackets are found too.
fn chains(clean: &[char], orig: &[char]) -> Vec<(usize, usize, Vec<Seg>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < clean.len() {
        let c = clean[i];
        let starts = (c.is_ascii_alphabetic() || c == '_')
            && (i == 0 || !(is_ident(clean[i - 1]) || clean[i - 1] == '.'));
        if !starts {
            i += 1;
            continue;
        }
        let from = i;
        let mut j = i;
        while j < clean.len() && is_ident(clean[j]) {
            j += 1;
        }
        let head_end = j;
        let mut segs = vec![Seg::Name(clean[from..j].iter().collect())];
        loop {
            if j + 1 < clean.len()
                && clean[j] == '.'
                && (clean[j + 1].is_ascii_alphabetic() || clean[j + 1] == '_')
            {
                let s = j + 1;
                j = s;
                while j < clean.len() && is_ident(clean[j]) {
                    j += 1;
                }
                segs.push(Seg::Name(clean[s..j].iter().collect()));
            } else if j < clean.len() && clean[j] == '[' {
                let mut depth = 0usize;
                let close = clean[j..].iter().position(|&c| {
                    match c {
                        '[' => depth += 1,
                        ']' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                });
                let Some(close) = close else {
                    break;
                };
                let inner = orig.get(j + 1..j + close).unwrap_or_default();
                segs.push(literal_key(inner).map_or(Seg::Any, Seg::Name));
                j += close + 1;
            } else {
                break;
            }
        }
        out.push((from, j, segs));
        // Go on after the head: bracket contents hold references too.
        i = head_end;
    }
    out
}

/// The identifier that ends just before `at` (spaces skipped), and whether
/// an opening parenthesis separates them (`is_object(` ... ).
fn word_before(clean: &[char], at: usize) -> (String, bool) {
    let mut k = at;
    while k > 0 && clean[k - 1] == ' ' {
        k -= 1;
    }
    let paren = k > 0 && clean[k - 1] == '(';
    if paren {
        k -= 1;
        while k > 0 && clean[k - 1] == ' ' {
            k -= 1;
        }
    }
    let end = k;
    while k > 0 && (is_ident(clean[k - 1]) || clean[k - 1] == '.') {
        k -= 1;
    }
    (clean[k..end].iter().collect(), paren)
}

/// Builtins whose argument a policy passes because it may be absent or of
/// another type.
const PRESENCE_TESTS: &[&str] = &[
    "is_object",
    "is_string",
    "is_array",
    "is_set",
    "is_number",
    "is_boolean",
    "is_null",
    "type_name",
    "object.get",
];

/// Words that read like a bare name but are Rego's own.
const KEYWORDS: &[&str] = &[
    "as", "contains", "default", "else", "every", "false", "if", "import", "in", "not", "null",
    "package", "some", "true", "with",
];

/// Every reference in one rule definition of module `m`.
pub fn rule_refs(m: &ModuleDef, text: &str, first_line: u32) -> Vec<Ref> {
    let package = dotted(&m.package);
    let aliases = import_aliases(m);
    let clean: Vec<char> = super::input_paths::blank_comments_and_strings(text)
        .chars()
        .collect();
    let mut orig: Vec<char> = text.chars().collect();
    if orig.len() != clean.len() {
        // Blanking keeps every character's place; if it ever did not,
        // string keys are read as unknown rather than from the wrong place.
        orig = clean.clone();
    }
    let mut out = Vec::new();
    let mut line = first_line;
    let mut counted = 0;
    for (start, end, segs) in chains(&clean, &orig) {
        line += clean[counted..start].iter().filter(|&&c| c == '\n').count() as u32;
        counted = start;
        let Some(root) = segs.first().and_then(Seg::name) else {
            continue;
        };
        let (path, explicit) = if root == "data" {
            (segs[1..].to_vec(), true)
        } else if root == "input" || KEYWORDS.contains(&root) {
            continue;
        } else if let Some((_, target)) = aliases.iter().find(|(a, _)| a == root) {
            let mut p = target.clone();
            p.extend(segs[1..].iter().cloned());
            (p, true)
        } else {
            let mut p = package.clone();
            p.extend(segs.iter().cloned());
            (p, false)
        };
        let (before, paren) = word_before(&clean, start);
        out.push(Ref {
            line,
            written: orig[start..end].iter().collect(),
            path,
            explicit,
            presence_test: paren && PRESENCE_TESTS.contains(&before.as_str()),
            with_target: !paren && before == "with",
        });
    }
    out
}

/// One `deny` or `allow` rule the entrypoint cannot reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreached {
    pub file: String,
    pub line: u32,
    pub package: String,
    /// `deny` or `allow`.
    pub name: String,
    pub entrypoint: String,
    /// The packages the entrypoint reads `name` from.
    pub collected: Vec<String>,
    /// The collected package the file's directory (or spelling) suggests.
    pub suggestion: Option<String>,
}

impl std::fmt::Display for Unreached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let effect = if self.name == "deny" {
            "denies"
        } else {
            "allows"
        };
        write!(
            f,
            "{}:{}: `{}` in package `{}` is not reached from the decision `{}`, so it never {effect} anything",
            self.file, self.line, self.name, self.package, self.entrypoint
        )?;
        if self.collected.is_empty() {
            write!(f, "; the decision reads no `{}` rule", self.name)?;
        } else {
            let list: Vec<String> = self.collected.iter().map(|p| format!("`{p}`")).collect();
            write!(
                f,
                "; the decision reads `{}` only from {}",
                self.name,
                list.join(", ")
            )?;
        }
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean `package {s}`?)")?;
        }
        Ok(())
    }
}

/// The document a rule defines: its package, then its name
/// (`tss.keysign.deny`).
pub fn rule_path(m: &ModuleDef, r: &RuleDef) -> Vec<Seg> {
    let name: Vec<char> = r.name.chars().collect();
    let mut path = dotted(&m.package);
    path.extend(
        chains(&name, &name)
            .into_iter()
            .next()
            .map(|(_, _, s)| s)
            .unwrap_or_default(),
    );
    path
}

/// The rule names whose unreachability is a silent mistake.
const DECIDING: &[&str] = &["deny", "allow"];

/// Every `deny` and `allow` rule in a non-test module that `entrypoint`
/// (`data.tss.decision`) cannot reach, following references rule by rule.
pub fn unreached(modules: &[ModuleDef], entrypoint: &str) -> Vec<Unreached> {
    struct Node<'a> {
        path: Vec<Seg>,
        file: &'a str,
        line: u32,
        package: &'a str,
        head: String,
        refs: Vec<Ref>,
    }
    let mut nodes = Vec::new();
    for m in modules.iter().filter(|m| !is_test(&m.file)) {
        for r in &m.rules {
            let path = rule_path(m, r);
            let head = path
                .get(dotted(&m.package).len())
                .and_then(Seg::name)
                .unwrap_or_default()
                .to_owned();
            nodes.push(Node {
                path,
                file: &m.file,
                line: r.line,
                package: &m.package,
                head,
                refs: rule_refs(m, &r.text, r.line),
            });
        }
    }
    let entry = dotted(entrypoint.strip_prefix("data.").unwrap_or(entrypoint));
    let mut reached = vec![false; nodes.len()];
    let mut seen: BTreeSet<Vec<Seg>> = BTreeSet::new();
    let mut work = vec![entry];
    while let Some(p) = work.pop() {
        for (i, n) in nodes.iter().enumerate() {
            if !reached[i] && overlaps(&n.path, &p) {
                reached[i] = true;
                for r in &n.refs {
                    if seen.insert(r.path.clone()) {
                        work.push(r.path.clone());
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        if reached[i] || !DECIDING.contains(&n.head.as_str()) {
            continue;
        }
        // Packages from which a reached reference reads this rule name.
        let collected: Vec<String> = seen
            .iter()
            .filter(|p| p.len() >= 2 && p.last().and_then(Seg::name) == Some(n.head.as_str()))
            .filter_map(|p| {
                let names: Option<Vec<&str>> = p[..p.len() - 1].iter().map(Seg::name).collect();
                names.map(|n| n.join("."))
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let suggestion = suggest(n.file, n.package, &collected);
        out.push(Unreached {
            file: n.file.to_owned(),
            line: n.line,
            package: n.package.to_owned(),
            name: n.head.clone(),
            entrypoint: entrypoint.to_owned(),
            collected,
            suggestion,
        });
    }
    out.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    out
}

/// The collected package the file's directory stands for
/// (`…/tss/keysign/x.rego`: `tss.keysign`), else one spelled almost like
/// the file's package.
fn suggest(file: &str, package: &str, collected: &[String]) -> Option<String> {
    let dirs: Vec<String> = Path::new(file)
        .parent()
        .map(|p| {
            p.components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let by_dir = collected
        .iter()
        .filter(|c| {
            let segs: Vec<&str> = c.split('.').collect();
            dirs.len() >= segs.len() && dirs[dirs.len() - segs.len()..] == segs[..]
        })
        .max_by_key(|c| c.len());
    if let Some(c) = by_dir {
        return Some(c.clone());
    }
    collected
        .iter()
        .map(|c| (strsim::damerau_levenshtein(c, package), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 5))
        .min()
        .map(|(_, c)| c.clone())
}

pub(super) fn is_test(file: &str) -> bool {
    file.ends_with("_test.rego")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules(files: &[(&str, &str)]) -> Vec<ModuleDef> {
        let mut e = regorus::Engine::new();
        e.set_rego_v0(false);
        for (p, t) in files {
            e.add_policy((*p).into(), (*t).into()).expect("parses");
        }
        crate::testing::rules::modules(&mut e)
    }

    #[test]
    fn chains_resolve_string_keys_and_find_references_inside_brackets() {
        let text = "x := data.a[\"b\"].c[input.k][tx.id] # data.not.this\ny := \"data.nor.this\"";
        let clean: Vec<char> = super::super::input_paths::blank_comments_and_strings(text)
            .chars()
            .collect();
        let orig: Vec<char> = text.chars().collect();
        let got: Vec<String> = chains(&clean, &orig)
            .into_iter()
            .map(|(_, _, s)| show(&s))
            .collect();
        assert_eq!(
            got,
            vec!["x", "data.a.b.c[_][_]", "input.k", "tx.id", "y"],
            "{got:?}"
        );
    }

    #[test]
    fn references_are_resolved_through_imports_and_the_package() {
        let m = &modules(&[(
            "p.rego",
            "package tss.p\n\nimport data.tss.lib.fmt\nimport data.cfg as c\n\nr if {\n\tis_object(data.k.opt)\n\tfmt.show(c.limit)\n\thelper[input.x]\n}\n",
        )])[0];
        let r = &m.rules[0];
        let refs = rule_refs(m, &r.text, r.line);
        let got: Vec<(u32, String, bool, bool)> = refs
            .iter()
            .map(|r| (r.line, show(&r.path), r.explicit, r.presence_test))
            .collect();
        assert_eq!(
            got,
            vec![
                (6, "tss.p.r".into(), false, false),
                (7, "tss.p.is_object".into(), false, false),
                (7, "k.opt".into(), true, true),
                (8, "tss.lib.fmt.show".into(), true, false),
                (8, "cfg.limit".into(), true, false),
                (9, "tss.p.helper[_]".into(), false, false),
            ]
        );
    }

    const DECISION: &str = "package tss\n\nraw contains d if some d in data.tss.common.deny\n\nraw contains d if {\n\tinput.request_type == \"KEYSIGN\"\n\tsome d in data.tss.keysign.deny\n}\n\nok if data.tss.keysign.allow == true\n\ndecision := {\"allow\": allowed, \"reasons\": [r | some r in raw]}\n\nallowed if {\n\tok\n\tcount(raw) == 0\n}\n";

    #[test]
    fn a_deny_in_a_package_the_decision_never_collects_is_named() {
        let ms = modules(&[
            ("rego/tss/decision.rego", DECISION),
            (
                "rego/tss/keysign/k.rego",
                "package tss.keysign\n\nallow if true\n\ndeny contains \"a\" if input.x\n",
            ),
            (
                "rego/tss/keysign/withdrawals.rego",
                "package tss.withdrawals\n\nimport data.tss.lib.fmt\n\n# A rule the decision never reads.\ndeny contains \"w\" if {\n\tinput.y\n}\n\nallow if true\n",
            ),
            (
                "rego/tss/common/c.rego",
                "package tss.common\n\ndeny contains \"c\" if input.z\n\nallow if true\n",
            ),
            (
                "rego/tss/common/c_test.rego",
                "package tss.common\n\ndeny contains \"t\" if input.q\n",
            ),
        ]);
        let got = unreached(&ms, "data.tss.decision");
        let lines: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), 3, "{lines:#?}");
        assert_eq!(
            lines[0],
            "rego/tss/common/c.rego:5: `allow` in package `tss.common` is not reached from the decision `data.tss.decision`, so it never allows anything; the decision reads `allow` only from `tss.keysign`"
        );
        assert_eq!(
            lines[1],
            "rego/tss/keysign/withdrawals.rego:6: `deny` in package `tss.withdrawals` is not reached from the decision `data.tss.decision`, so it never denies anything; the decision reads `deny` only from `tss.common`, `tss.keysign` (did you mean `package tss.keysign`?)"
        );
        assert!(lines[2].starts_with("rego/tss/keysign/withdrawals.rego:10: `allow`"));
    }

    #[test]
    fn dynamic_and_whole_package_references_reach_everything_beneath() {
        let dynamic = "package tss\n\npkgs := {\"KEYSIGN\": \"keysign\"}\n\ndecision := {\"allow\": false, \"reasons\": [r | some r in data.tss[pkgs[input.t]].deny]}\n";
        let ms = modules(&[
            ("d.rego", dynamic),
            (
                "w.rego",
                "package tss.withdrawals\n\ndeny contains \"w\" if input.y\n",
            ),
        ]);
        assert!(unreached(&ms, "data.tss.decision").is_empty());
        assert_eq!(unreached(&ms, "data.tss.other").len(), 1);
    }

    #[test]
    fn the_shipped_library_reaches_every_deny_and_allow() {
        let set = crate::policy::PolicySet::load(&crate::policy::PolicyOptions {
            dir: "rego".into(),
            entrypoint: crate::policy::DEFAULT_ENTRYPOINT.into(),
            data_files: Vec::new(),
            eval_timeout: std::time::Duration::from_secs(1),
        })
        .expect("the shipped library loads");
        let mut engine = set.engine();
        let ms = crate::testing::rules::modules(&mut engine);
        let denies = ms
            .iter()
            .flat_map(|m| &m.rules)
            .filter(|r| r.name == "deny")
            .count();
        assert!(denies > 20, "{denies}");
        let found = unreached(&ms, &set.entrypoint);
        assert!(found.is_empty(), "{found:#?}");
    }
}
