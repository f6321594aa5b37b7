//! Rule definitions read from regorus's parsed modules: package, name,
//! file:line, head and body source text. The runner uses them to find
//! `test_*` rules, `eval --explain` to rebuild single rule bodies.
//!
//! regorus exposes its AST only under `regorus::unstable`; everything that
//! touches it is in this file so a regorus upgrade changes one place.

use regorus::Engine;
use regorus::unstable::{Expr, Literal, LiteralStmt, Query, Rule, RuleHead, Span};

/// The shape of a rule head, as far as the toolkit cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadKind {
    /// `name if ...`, `name := v if ...`: a complete rule.
    Complete,
    /// `name contains key if ...`: a multi-value (set) rule.
    Contains,
    /// `name(args) ...`: a function.
    Function,
    /// `default name := v`.
    Default,
}

/// One body of a rule: its statements' source text.
#[derive(Debug, Clone)]
pub struct Body {
    pub statements: Vec<String>,
    /// The line each statement starts on.
    pub lines: Vec<u32>,
    /// An `else` branch: only runs when earlier bodies did not.
    pub is_else: bool,
    /// Statements of the `every` queries and comprehensions inside this body
    /// (at any depth), with their lines: they are negated or compared like
    /// the body's own. An `else` branch's value counts as part of its body.
    pub nested: Vec<(String, u32)>,
}

/// The statements of every query nested in `stmts` (`every` bodies and
/// comprehensions, at any depth), depth first.
fn nested_statements(stmts: &[LiteralStmt], out: &mut Vec<(String, u32)>) {
    for s in stmts {
        match &s.literal {
            Literal::SomeVars { .. } => {}
            Literal::SomeIn {
                key,
                value,
                collection,
                ..
            } => membership_queries(key.as_ref(), value, collection, out),
            Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => expr_queries(expr, out),
            Literal::Every { domain, query, .. } => {
                expr_queries(domain, out);
                query_statements(query, out);
            }
        }
    }
}

fn query_statements(query: &Query, out: &mut Vec<(String, u32)>) {
    for inner in &query.stmts {
        out.push((full_text(&inner.span), inner.span.line));
    }
    nested_statements(&query.stmts, out);
}

/// `[key,] value in collection`, as a statement (`some ... in`) or an
/// expression.
fn membership_queries(
    key: Option<&regorus::unstable::Ref<Expr>>,
    value: &Expr,
    collection: &Expr,
    out: &mut Vec<(String, u32)>,
) {
    if let Some(k) = key {
        expr_queries(k, out);
    }
    expr_queries(value, out);
    expr_queries(collection, out);
}

/// The statements of the comprehensions inside an expression.
fn expr_queries(expr: &Expr, out: &mut Vec<(String, u32)>) {
    match expr {
        Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
            expr_queries(term, out);
            query_statements(query, out);
        }
        Expr::ObjectCompr {
            key, value, query, ..
        } => {
            expr_queries(key, out);
            expr_queries(value, out);
            query_statements(query, out);
        }
        Expr::Array { items, .. } | Expr::Set { items, .. } => {
            items.iter().for_each(|i| expr_queries(i, out));
        }
        Expr::Object { fields, .. } => {
            for (_, k, v) in fields {
                expr_queries(k, out);
                expr_queries(v, out);
            }
        }
        Expr::Call { params, .. } => params.iter().for_each(|p| expr_queries(p, out)),
        Expr::UnaryExpr { expr, .. } | Expr::RefDot { refr: expr, .. } => expr_queries(expr, out),
        Expr::RefBrack { refr, index, .. } => {
            expr_queries(refr, out);
            expr_queries(index, out);
        }
        Expr::BinExpr { lhs, rhs, .. }
        | Expr::BoolExpr { lhs, rhs, .. }
        | Expr::ArithExpr { lhs, rhs, .. }
        | Expr::AssignExpr { lhs, rhs, .. } => {
            expr_queries(lhs, out);
            expr_queries(rhs, out);
        }
        Expr::Membership {
            key,
            value,
            collection,
            ..
        } => membership_queries(key.as_ref(), value, collection, out),
        // Scalars and variables hold no query.
        _ => {}
    }
}

/// One rule definition in one file.
#[derive(Debug, Clone)]
pub struct RuleDef {
    /// Package path without `data.`, e.g. `tss.keysign`.
    pub package: String,
    /// The rule's reference as written, e.g. `deny` or `test_ping`.
    pub name: String,
    pub file: String,
    pub line: u32,
    pub kind: HeadKind,
    /// Source text of a `contains` key or a complete rule's value.
    pub value: Option<String>,
    pub bodies: Vec<Body>,
    /// Statements of the comprehensions in the head (its value or key),
    /// with their lines.
    pub head_nested: Vec<(String, u32)>,
    /// The whole definition's source text, head to last body, starting on
    /// `line`: what [`super::reach`] reads references from.
    pub text: String,
}

impl RuleDef {
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// One parsed module (one file).
#[derive(Debug, Clone)]
pub struct ModuleDef {
    pub file: String,
    pub package: String,
    /// Source text of each `import` statement.
    pub imports: Vec<String>,
    pub rules: Vec<RuleDef>,
}

/// Every module the engine holds, in load order.
pub fn modules(engine: &mut Engine) -> Vec<ModuleDef> {
    let mut out = Vec::new();
    for module in engine.get_modules().iter() {
        let file = module.package.span.source.file().clone();
        let package = module.package.refr.span().text().to_owned();
        let imports = module
            .imports
            .iter()
            .map(|i| i.span.text().to_owned())
            .collect();
        let mut rules = Vec::new();
        for rule in &module.policy {
            let line = rule.span().line;
            let text = full_text(rule.span());
            let def = match rule.as_ref() {
                Rule::Spec { head, bodies, .. } => {
                    let mut head_nested = Vec::new();
                    let (name, kind, value) = match head {
                        RuleHead::Compr { refr, assign, .. } => {
                            if let Some(a) = assign {
                                expr_queries(&a.value, &mut head_nested);
                            }
                            (
                                refr.span().text().to_owned(),
                                HeadKind::Complete,
                                assign.as_ref().map(|a| full_text(a.value.span())),
                            )
                        }
                        RuleHead::Set { span, refr, key } => {
                            if let Some(k) = key {
                                expr_queries(k, &mut head_nested);
                            }
                            (
                                refr.span().text().to_owned(),
                                HeadKind::Contains,
                                key.as_ref()
                                    .map(|k| set_key_text(&full_text(span), &full_text(k.span()))),
                            )
                        }
                        RuleHead::Func { refr, assign, .. } => {
                            if let Some(a) = assign {
                                expr_queries(&a.value, &mut head_nested);
                            }
                            (refr.span().text().to_owned(), HeadKind::Function, None)
                        }
                    };
                    let bodies = bodies
                        .iter()
                        .map(|b| {
                            let mut nested = Vec::new();
                            nested_statements(&b.query.stmts, &mut nested);
                            if let Some(a) = &b.assign {
                                expr_queries(&a.value, &mut nested);
                            }
                            Body {
                                statements: b
                                    .query
                                    .stmts
                                    .iter()
                                    .map(|s| full_text(&s.span))
                                    .collect(),
                                lines: b.query.stmts.iter().map(|s| s.span.line).collect(),
                                is_else: b.is_else,
                                nested,
                            }
                        })
                        .collect();
                    RuleDef {
                        package: package.clone(),
                        name,
                        file: file.clone(),
                        line,
                        kind,
                        value,
                        bodies,
                        head_nested,
                        text,
                    }
                }
                Rule::Default { refr, value, .. } => RuleDef {
                    package: package.clone(),
                    name: refr.span().text().to_owned(),
                    file: file.clone(),
                    line,
                    kind: HeadKind::Default,
                    value: Some(full_text(value.span())),
                    bodies: Vec::new(),
                    head_nested: Vec::new(),
                    text,
                },
            };
            rules.push(def);
        }
        out.push(ModuleDef {
            file,
            package,
            imports,
            rules,
        });
    }
    out
}

/// The key of `name contains KEY`: taken from the head's text, because the
/// span regorus gives an object key covers only part of the object.
fn set_key_text(head: &str, key: &str) -> String {
    head.split_once(" contains ")
        .map(|(_, k)| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| key.to_owned())
}

/// A span's source text. regorus ends the span of an expression that ends in
/// a string literal before the closing quote; the quote is taken back here so
/// the text parses again.
fn full_text(span: &Span) -> String {
    let src = span.source.contents();
    let start = span.start as usize;
    let mut end = (span.end as usize).min(src.len());
    let Some(mut text) = src.get(start..end).map(str::to_owned) else {
        return span.text().to_owned();
    };
    for quote in ['"', '`'] {
        if unbalanced(&text, quote) && src.get(end..).is_some_and(|rest| rest.starts_with(quote)) {
            text.push(quote);
            end += 1;
        }
    }
    text
}

/// Whether `text` leaves a `quote` string open (escapes only count in `"`).
fn unbalanced(text: &str, quote: char) -> bool {
    let mut open: Option<char> = None;
    let mut escaped = false;
    for c in text.chars() {
        match open {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if q == '"' && c == '\\' {
                    escaped = true;
                } else if c == q {
                    open = None;
                }
            }
            None if c == '"' || c == '`' => open = Some(c),
            None => {}
        }
    }
    open == Some(quote)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_text_round_trips_including_trailing_strings() {
        let mut e = Engine::new();
        e.set_rego_v0(false);
        let src = "package p.q\n\nimport data.lib\n\ndeny contains {\"code\": \"a.b\", \"msg\": \"m\"} if {\n\tinput.t == \"Address\"\n\tnot input.u == `raw`\n}\n\ntest_x if true\n\ndefault allow := false\n";
        e.add_policy("p.rego".into(), src.into()).unwrap();
        let m = modules(&mut e);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].package, "p.q");
        assert_eq!(m[0].imports, vec!["import data.lib"]);
        let deny = &m[0].rules[0];
        assert_eq!(
            (deny.name.as_str(), deny.line, deny.kind),
            ("deny", 5, HeadKind::Contains)
        );
        assert_eq!(
            deny.value.as_deref(),
            Some("{\"code\": \"a.b\", \"msg\": \"m\"}")
        );
        assert_eq!(
            deny.bodies[0].statements,
            vec!["input.t == \"Address\"", "not input.u == `raw`"]
        );
        assert_eq!(deny.location(), "p.rego:5");
        let t = &m[0].rules[1];
        assert_eq!((t.name.as_str(), t.kind), ("test_x", HeadKind::Complete));
        assert_eq!(m[0].rules[2].kind, HeadKind::Default);
    }

    #[test]
    fn quote_balance() {
        assert!(unbalanced("a == \"x", '"'));
        assert!(!unbalanced("a == \"x\"", '"'));
        assert!(!unbalanced("a == \"x\\\"y\"", '"'));
        assert!(unbalanced("a == `x", '`'));
        assert!(!unbalanced("a == `\"`", '"'));
    }
}
