//! What the policy decided inside a failing Rego test. A test such as
//! `not "x" in all_codes with input as r with data.k as t` fails without
//! saying which deny codes did fire; this module re-runs the failing test
//! once, with a `print` of the entrypoint's decision inserted before each
//! statement that evaluates `with input as ...` (same modifiers, same
//! local variables), and returns those lines for the report.
//!
//! It works on the test's source text: a statement it cannot instrument
//! (one spanning several lines) is left alone, and if the instrumented
//! file does not compile nothing is added. It never changes an outcome.

use regorus::Engine;

/// The marker `with` clause each instrumented statement carries.
const WITH_INPUT: &str = " with input as ";

/// Prefix of the inserted prints, followed by the statement's line in the
/// original file (the instrumented file's lines are shifted).
const MARK: &str = "tss-gate-decision@";

/// `text` with a decision print before every single-line statement of the
/// rule starting at 1-based `line` that evaluates with a replaced input;
/// None if there is none.
pub fn instrument(text: &str, line: usize, entrypoint: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = line.checked_sub(1)?;
    let header = *lines.get(start)?;
    let mut out: Vec<String> = lines[..start].iter().map(|l| (*l).to_owned()).collect();
    let probe = |n: usize, l: &str, indent: &str| -> Option<String> {
        let at = l.find(WITH_INPUT)?;
        let mut suffix = l[at..].trim_end();
        // `test_x if { ... with input as y }` on one line: not the body's brace.
        if suffix.matches('}').count() > suffix.matches('{').count() {
            suffix = suffix.strip_suffix('}').unwrap_or(suffix).trim_end();
        }
        Some(format!(
            "{indent}print(\"{MARK}{n}\", {{\"allow\": {entrypoint}.allow, \"codes\": {entrypoint}.codes}}){suffix}"
        ))
    };
    let mut added = 0;
    if header.trim_end().ends_with('{') {
        out.push(header.to_owned());
        let mut i = start + 1;
        while let Some(l) = lines.get(i) {
            if l.starts_with('}') {
                break;
            }
            // A statement alone on its line: not inside brackets left open
            // by an earlier line, and not continued on the next.
            let complete = l.matches(['(', '[', '{']).count() == l.matches([')', ']', '}']).count();
            let next_continues = lines
                .get(i + 1)
                .is_some_and(|n| n.trim_start().starts_with(['.', ')', ']', '|']));
            if complete && !next_continues && !l.trim_start().starts_with('#') {
                let indent = &l[..l.len() - l.trim_start().len()];
                if let Some(p) = probe(i + 1, l, indent) {
                    out.push(p);
                    added += 1;
                }
            }
            out.push((*l).to_owned());
            i += 1;
        }
        out.extend(lines[i..].iter().map(|l| (*l).to_owned()));
    } else {
        // `test_x if EXPR` on one line becomes a body of one statement.
        let (head, expr) = header.split_once(" if ")?;
        let p = probe(line, expr, "\t")?;
        out.push(format!("{head} if {{"));
        out.push(p);
        out.push(format!("\t{}", expr.trim()));
        out.push("}".to_owned());
        added += 1;
        out.extend(lines[start + 1..].iter().map(|l| (*l).to_owned()));
    }
    (added > 0).then(|| out.join("\n") + "\n")
}

/// Runs `rule` on `engine` (policies and every test file, the test's own
/// file instrumented) and returns, for each instrumented statement it
/// reached, `FILE:LINE: the policy decided {...}`.
pub fn decisions(mut engine: Engine, rule: &str, file: &str) -> Vec<String> {
    let _ = engine.eval_rule(rule.to_owned());
    engine
        .take_prints()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let rest = &p[p.find(MARK)? + MARK.len()..];
            let (line, decision) = rest.split_once(' ')?;
            Some(format!("{file}:{line}: the policy decided {decision}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_a_print_with_the_same_modifiers_before_each_statement() {
        let text = "package p_test\n\ntest_a if {\n\tr := req({})\n\tnot \"x\" in codes with input as r with data.k as t\n\tallow with input as {\"a\": [1,\n\t\t2]}\n}\n\ntest_b if allow with input as {}\n";
        let got = instrument(text, 3, "data.tss.decision").unwrap();
        assert!(
            got.contains("\tprint(\"tss-gate-decision@5\", {\"allow\": data.tss.decision.allow, \"codes\": data.tss.decision.codes}) with input as r with data.k as t\n\tnot \"x\" in codes"),
            "{got}"
        );
        // A statement that spans lines is left alone.
        assert_eq!(got.matches("print(").count(), 1, "{got}");
        let one = instrument(text, 10, "data.tss.decision").unwrap();
        assert!(
            one.contains("test_b if {\n\tprint(\"tss-gate-decision@10\", {\"allow\": data.tss.decision.allow, \"codes\": data.tss.decision.codes}) with input as {}\n\tallow with input as {}\n}"),
            "{one}"
        );
        assert!(instrument("package p\n\ntest_c if {\n\ttrue\n}\n", 3, "data.x").is_none());
    }
}
