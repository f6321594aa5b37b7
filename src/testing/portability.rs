//! The portability lint: negations that OPA and regorus decide differently.
//!
//! `not f(x.y)`, `not x.y in coll` and `not x.y == v` are true in regorus
//! when `x.y` is missing, but OPA evaluates such an argument before the
//! negation, so there the whole line is undefined and the rule does not
//! fire. For a deny that is a silent approval under OPA (`opa test`,
//! `opa eval`); for an allow-style rule it is the other way round. The
//! shipped library negates helper rules instead (rego/README.md, "Fail
//! closed"); this lint finds the pattern in anyone's policies.
//!
//! It reads statement text, so it is a heuristic: an operand is suspect when
//! it is a reference path (`input.a`, `x.y`, `m[k]`) or the name of a
//! complete rule of the package (which may be undefined). Local variables,
//! literals and calls on them are not. Statements inside `every` and inside
//! comprehensions (in bodies and heads, at any depth) are inspected like the
//! body's own.

use super::rules::{HeadKind, ModuleDef};

/// One suspect negation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    pub line: u32,
    pub statement: String,
    /// The operand that may be missing.
    pub operand: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: `{}`: when `{}` is missing this is true in regorus but undefined in OPA \
             (the rule does not fire there); negate a helper rule instead \
             (`has_x if f(...)`, then `not has_x`)",
            self.file, self.line, self.statement, self.operand
        )
    }
}

/// Every suspect negation in the non-test modules.
pub fn negations(modules: &[ModuleDef]) -> Vec<Finding> {
    let mut out = Vec::new();
    for m in modules.iter().filter(|m| !m.file.ends_with("_test.rego")) {
        let complete: Vec<&str> = modules
            .iter()
            .filter(|o| o.package == m.package)
            .flat_map(|o| o.rules.iter())
            .filter(|r| r.kind == HeadKind::Complete)
            .map(|r| r.name.as_str())
            .collect();
        for rule in &m.rules {
            let in_head = rule.head_nested.iter().map(|(s, l)| (s, *l));
            let in_bodies = rule.bodies.iter().flat_map(|body| {
                let own = body.statements.iter().zip(body.lines.iter().copied());
                own.chain(body.nested.iter().map(|(s, l)| (s, *l)))
            });
            for (stmt, line) in in_head.chain(in_bodies) {
                let Some(expr) = stmt.trim().strip_prefix("not ") else {
                    continue;
                };
                if let Some(operand) = operands(expr.trim())
                    .into_iter()
                    .find(|o| suspect(o, &complete))
                {
                    out.push(Finding {
                        file: m.file.clone(),
                        line,
                        statement: stmt.trim().to_owned(),
                        operand,
                    });
                }
            }
        }
    }
    out
}

/// The operands of a negated expression: both sides of a top-level `in` or
/// comparison, the arguments of a call, or the indexes of a bare reference
/// (`not m[input.k]`). A bare reference itself is not one: `not x.y` is true
/// in both engines when `x.y` is missing.
fn operands(expr: &str) -> Vec<String> {
    for op in [" in ", " == ", " != ", " <= ", " >= ", " < ", " > "] {
        if let Some(i) = top_level_find(expr, op) {
            return vec![
                expr[..i].trim().to_owned(),
                expr[i + op.len()..].trim().to_owned(),
            ];
        }
    }
    let Some(open) = expr.find('(') else {
        return indexes(expr);
    };
    let callee = &expr[..open];
    if !expr.ends_with(')') || !is_path(callee) {
        return Vec::new();
    }
    split_top_level(&expr[open + 1..expr.len() - 1])
}

/// The contents of the `[...]` indexes of a reference.
fn indexes(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(open) = rest.find('[') {
        let inner = &rest[open + 1..];
        let mut depth = 1;
        let close = inner.char_indices().find_map(|(i, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(i)
        });
        let Some(close) = close else {
            break;
        };
        out.push(inner[..close].trim().to_owned());
        rest = &inner[close + 1..];
    }
    out
}

/// Byte index of `needle` outside brackets and strings.
fn top_level_find(s: &str, needle: &str) -> Option<usize> {
    let mut depth = 0i32;
    let mut in_str = false;
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' if i == 0 || bytes[i - 1] != b'\\' => in_str = !in_str,
            _ if in_str => {}
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ if depth == 0 && s[i..].starts_with(needle) => return Some(i),
            _ => {}
        }
    }
    None
}

fn split_top_level(args: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = args;
    while let Some(i) = top_level_find(rest, ",") {
        out.push(rest[..i].trim().to_owned());
        rest = &rest[i + 1..];
    }
    if !rest.trim().is_empty() {
        out.push(rest.trim().to_owned());
    }
    out
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_path(s: &str) -> bool {
    let s = s.trim();
    s.chars().next().is_some_and(is_ident_start)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Whether an operand holds a reference that may be undefined.
fn suspect(operand: &str, complete_rules: &[&str]) -> bool {
    let o = strip_strings(operand);
    if complete_rules.contains(&o.trim()) {
        return true;
    }
    // A path or index after an identifier, unless it names a function
    // (`object.get(`): the function's arguments are judged on their own.
    let chars: Vec<char> = o.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if is_ident_start(chars[i]) && (i == 0 || !is_word(chars[i - 1])) {
            let start = i;
            while i < chars.len() && (is_word(chars[i]) || chars[i] == '.') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars.get(i).copied();
            let called = next == Some('(');
            if !called && (word.contains('.') || next == Some('[')) {
                return true;
            }
            // `input` itself is missing when a query has no input.
            if !called && (word == "input" || complete_rules.contains(&word.as_str())) {
                return true;
            }
        } else {
            i += 1;
        }
    }
    false
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The text with string literals blanked, so their content is not read as
/// references.
fn strip_strings(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_str = false;
    let mut prev = ' ';
    for c in s.chars() {
        if c == '"' && prev != '\\' {
            in_str = !in_str;
            out.push('"');
        } else if !in_str {
            out.push(c);
        }
        prev = c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operands_and_suspects() {
        assert_eq!(operands("is_array(input.a.b)"), vec!["input.a.b"]);
        assert_eq!(operands("x.y in data.list"), vec!["x.y", "data.list"]);
        assert_eq!(
            operands("f(object.get(o, \"a, b\", null), k)"),
            vec!["object.get(o, \"a, b\", null)", "k"]
        );
        assert!(operands("known_type").is_empty());
        assert_eq!(
            operands("type_packages[input.request_type]"),
            vec!["input.request_type"]
        );
        assert!(suspect("input", &[]));
        assert!(operands("input.x").is_empty());
        let rules = ["cap", "tx"];
        assert!(suspect("input.a.b", &rules));
        assert!(suspect("m[k]", &rules));
        assert!(suspect("cap", &rules));
        assert!(!suspect("a", &rules));
        assert!(!suspect("object.get(o, \"x.y\", null)", &rules));
        assert!(!suspect("\"data.x\"", &rules));
        assert!(suspect("object.get(tx, \"a\", 1)", &rules));
        assert!(!suspect("1.5", &rules));
    }

    /// (line, operand) of every finding in one module `p.rego`.
    fn findings(src: &str) -> Vec<(u32, String)> {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy("p.rego".into(), src.into())
            .expect("parses");
        let modules = crate::testing::rules::modules(&mut engine);
        negations(&modules)
            .into_iter()
            .map(|f| (f.line, f.operand))
            .collect()
    }

    #[test]
    fn negations_inside_every_are_found_at_their_line() {
        let found = findings(
            r#"package p

deny contains "x" if {
	some t in input.txs
	every o in t.outputs {
		is_object(o)
		not valid(o.address)
	}
}

deny contains "y" if {
	every o in input.outputs {
		every k in o.keys { not ok(k) }
	}
}

valid(a) if is_string(a)

ok(k) if k == 1
"#,
        );
        // `not ok(k)`: k is a local, so it is not suspect.
        assert_eq!(found, vec![(7, "o.address".to_owned())]);
    }

    #[test]
    fn negations_inside_comprehensions_are_found_at_their_line() {
        let found = findings(
            r#"package p

bad_outputs := [o |
	some o in input.outputs
	not valid(o.address)
]

deny contains msg if {
	n := count({k | some k in input.keys; not ok(input.limits[k])})
	n > 0
	msg := sprintf("%d", [n])
}

deny contains "z" if {
	every t in input.txs {
		count([1 | some o in t.outputs; not valid(o.to)]) == 0
	}
}

pairs := {k: v | some k, v in input.m; not ok(v)}

label := "a" if input.x == 1
else := concat(",", [s | some s in input.names; not valid(s.first)])

valid(a) if is_string(a)

ok(k) if k == 1
"#,
        );
        // Head value, body, inside `every`, an `else` value; `not ok(v)` in
        // the object comprehension negates a local, so it is not suspect.
        assert_eq!(
            found,
            vec![
                (5, "o.address".to_owned()),
                (9, "input.limits[k]".to_owned()),
                (16, "o.to".to_owned()),
                (23, "s.first".to_owned()),
            ]
        );
    }

    #[test]
    fn the_shipped_library_has_no_suspect_negation() {
        let set = crate::policy::PolicySet::load(&crate::policy::PolicyOptions {
            dir: "rego".into(),
            entrypoint: crate::policy::DEFAULT_ENTRYPOINT.into(),
            data_files: Vec::new(),
            eval_timeout: std::time::Duration::from_secs(1),
        })
        .expect("the shipped library loads");
        let mut engine = set.engine();
        let modules = crate::testing::rules::modules(&mut engine);
        assert!(modules.iter().any(|m| m.file.ends_with("keysign.rego")));
        let findings = negations(&modules);
        assert!(findings.is_empty(), "{findings:#?}");
    }
}
