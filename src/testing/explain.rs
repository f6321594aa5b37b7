//! `eval --explain`: which deny and allow rules fired for one input, with
//! file:line and message.
//!
//! The decision package's `denies` set says WHAT denied. To say WHICH rule
//! did, every body of every deny/allow rule is rebuilt as a probe rule in its
//! own package (same imports, same statements), and the probes are evaluated
//! on the same input: a probe that yields the denial's element is the rule
//! that produced it. This needs no tracing support and is exact per body.

use serde::Serialize;
use serde_json::Value as Json;

use super::rules::{self, HeadKind, ModuleDef, RuleDef};
use crate::policy::PolicySet;

/// A rule that fired.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FiredRule {
    pub package: String,
    pub rule: String,
    /// `file:line` of the rule definition.
    pub location: String,
}

/// One element of the decision's `denies` and the rules that produced it.
#[derive(Debug, Clone, Serialize)]
pub struct DenyExplanation {
    pub code: String,
    pub msg: String,
    pub rules: Vec<FiredRule>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Explanation {
    pub denies: Vec<DenyExplanation>,
    /// `allow` rules of the request type's package whose body held.
    pub allows: Vec<FiredRule>,
    /// Anything the explainer could not work out.
    pub notes: Vec<String>,
}

const PROBE: &str = "__tss_gate_probe";

struct Probe {
    name: String,
    rule: FiredRule,
    deny: bool,
    package: String,
    /// The head writes the element out (`{"code": ...}`), rather than
    /// passing on one built elsewhere (`deny contains d if some d in s`).
    builds: bool,
}

/// Explains the decision of `set` on `input`.
pub fn explain(set: &PolicySet, input: &Json) -> Explanation {
    let mut out = Explanation::default();
    let mut engine = set.engine();
    engine.set_input(crate::policy::input_value(input));
    let decision_pkg = set
        .entrypoint
        .rsplit_once('.')
        .map(|(p, _)| p.to_owned())
        .unwrap_or_else(|| "data".into());
    let denies = match engine.eval_rule(format!("{decision_pkg}.denies")) {
        Ok(v) => serde_json::to_value(&v).unwrap_or(Json::Null),
        Err(e) => {
            out.notes
                .push(format!("cannot evaluate `{decision_pkg}.denies`: {e:#}"));
            Json::Null
        }
    };
    let type_pkg = engine
        .eval_rule(format!("{decision_pkg}.type_packages"))
        .ok()
        .and_then(|v| serde_json::to_value(&v).ok())
        .and_then(|tp| {
            let t = input.get("request_type")?.as_str()?;
            let leaf = tp.get(t)?.as_str()?.to_owned();
            let base = decision_pkg.strip_prefix("data.").unwrap_or(&decision_pkg);
            Some(format!("{base}.{leaf}"))
        });

    let modules: Vec<ModuleDef> = rules::modules(&mut engine)
        .into_iter()
        .filter(|m| !m.file.ends_with("_test.rego"))
        .collect();
    let mut probes = Vec::new();
    let mut probe_engine = engine.clone();
    for (mi, m) in modules.iter().enumerate() {
        let (text, mut ps) = probe_module(mi, m);
        if ps.is_empty() {
            continue;
        }
        match probe_engine.add_policy(format!("{PROBE}:{}", m.file), text) {
            Ok(_) => probes.append(&mut ps),
            Err(e) => out
                .notes
                .push(format!("cannot probe rules of `{}`: {e:#}", m.file)),
        }
    }
    probe_engine.set_input(crate::policy::input_value(input));

    let mut fired_denies: Vec<(FiredRule, Json, bool)> = Vec::new();
    for p in &probes {
        let path = format!("data.{}.{}", p.package, p.name);
        let v = match probe_engine.eval_rule(path) {
            Ok(v) => serde_json::to_value(&v).unwrap_or(Json::Null),
            Err(e) => {
                out.notes.push(format!("{}: {e:#}", p.rule.location));
                continue;
            }
        };
        if p.deny {
            if let Some(items) = v.as_array() {
                for item in items {
                    fired_denies.push((p.rule.clone(), item.clone(), p.builds));
                }
            }
        } else if v == Json::Bool(true)
            && type_pkg.as_ref().is_none_or(|t| *t == p.package)
            && !out.allows.contains(&p.rule)
        {
            out.allows.push(p.rule.clone());
        }
    }

    for d in denies.as_array().into_iter().flatten() {
        let code = d.get("code").and_then(Json::as_str).unwrap_or_default();
        let msg = d.get("msg").and_then(Json::as_str).unwrap_or_default();
        // The rules that built the element come first; one that only
        // passed it on from a set is named after them.
        let mut built: Vec<FiredRule> = Vec::new();
        let mut passed: Vec<FiredRule> = Vec::new();
        for (rule, item, builds) in &fired_denies {
            let list = if *builds { &mut built } else { &mut passed };
            if produces(item, code, msg) && !list.contains(rule) {
                list.push(rule.clone());
            }
        }
        let mut rules = built;
        for r in passed {
            if !rules.contains(&r) {
                rules.push(r);
            }
        }
        if rules.is_empty() {
            out.notes
                .push(format!("no rule located for denial `{code}`: {msg}"));
        }
        out.denies.push(DenyExplanation {
            code: code.to_owned(),
            msg: msg.to_owned(),
            rules,
        });
    }
    out
}

/// Whether a deny element `item` becomes the normalised denial (code, msg).
fn produces(item: &Json, code: &str, msg: &str) -> bool {
    match item {
        Json::String(s) => s == msg,
        Json::Object(o) => {
            o.get("code").and_then(Json::as_str) == Some(code)
                && o.get("msg").and_then(Json::as_str) == Some(msg)
        }
        _ => false,
    }
}

/// Whether a rule is worth probing: `deny` sets, sets of `{"code", ...}`
/// objects (framework denials), and `allow` rules.
fn probed(r: &RuleDef) -> Option<bool> {
    match r.kind {
        HeadKind::Contains => {
            let coded = r
                .value
                .as_deref()
                .is_some_and(|v| v.trim_start().starts_with('{') && v.contains("\"code\""));
            (r.name == "deny" || coded).then_some(true)
        }
        HeadKind::Complete if r.name == "allow" => Some(false),
        _ => None,
    }
}

/// Source of a probe module for `m` and the probes it defines.
fn probe_module(mi: usize, m: &ModuleDef) -> (String, Vec<Probe>) {
    let mut text = format!("package {}\n\n", m.package);
    for i in &m.imports {
        text.push_str(i);
        text.push('\n');
    }
    let mut probes = Vec::new();
    for (ri, r) in m.rules.iter().enumerate() {
        let Some(deny) = probed(r) else { continue };
        let bodies: Vec<Vec<String>> = if r.bodies.is_empty() {
            vec![Vec::new()]
        } else {
            r.bodies.iter().map(|b| b.statements.clone()).collect()
        };
        for (bi, stmts) in bodies.iter().enumerate() {
            let name = format!("{PROBE}_{mi}_{ri}_{bi}");
            let body = if stmts.is_empty() {
                "true".to_owned()
            } else {
                stmts.join("\n\t")
            };
            let head = if deny {
                let key = r.value.as_deref().unwrap_or("true");
                format!("{name} contains {key}")
            } else {
                match r.value.as_deref() {
                    Some(v) => format!("{name} := ({v}) == true"),
                    None => name.clone(),
                }
            };
            text.push_str(&format!("\n{head} if {{\n\t{body}\n}}\n"));
            probes.push(Probe {
                name,
                deny,
                builds: r
                    .value
                    .as_deref()
                    .is_some_and(|v| v.trim_start().starts_with('{')),
                package: m.package.clone(),
                rule: FiredRule {
                    package: m.package.clone(),
                    rule: r.name.clone(),
                    location: r.location(),
                },
            });
        }
    }
    (text, probes)
}
