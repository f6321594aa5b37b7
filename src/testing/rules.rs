//! Rule definitions read from regorus's parsed modules: package, name,
//! file:line, head and body source text. The runner uses them to find
//! `test_*` rules, `eval --explain` to rebuild single rule bodies.
//!
//! regorus exposes its AST only under `regorus::unstable`; everything that
//! touches it is in this file so a regorus upgrade changes one place.

use regorus::Engine;
use regorus::unstable::{Rule, RuleHead};

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
    /// An `else` branch: only runs when earlier bodies did not.
    pub is_else: bool,
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
            let def = match rule.as_ref() {
                Rule::Spec { head, bodies, .. } => {
                    let (name, kind, value) = match head {
                        RuleHead::Compr { refr, assign, .. } => (
                            refr.span().text().to_owned(),
                            HeadKind::Complete,
                            assign.as_ref().map(|a| a.value.span().text().to_owned()),
                        ),
                        RuleHead::Set { refr, key, .. } => (
                            refr.span().text().to_owned(),
                            HeadKind::Contains,
                            key.as_ref().map(|k| k.span().text().to_owned()),
                        ),
                        RuleHead::Func { refr, .. } => {
                            (refr.span().text().to_owned(), HeadKind::Function, None)
                        }
                    };
                    let bodies = bodies
                        .iter()
                        .map(|b| Body {
                            statements: b
                                .query
                                .stmts
                                .iter()
                                .map(|s| s.span.text().to_owned())
                                .collect(),
                            is_else: b.is_else,
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
                    }
                }
                Rule::Default { refr, value, .. } => RuleDef {
                    package: package.clone(),
                    name: refr.span().text().to_owned(),
                    file: file.clone(),
                    line,
                    kind: HeadKind::Default,
                    value: Some(value.span().text().to_owned()),
                    bodies: Vec::new(),
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
