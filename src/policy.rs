//! The Rego policy set: discovery and loading of `.rego` and data files,
//! compilation (once per load), the revision digest, and evaluation of the
//! decision entrypoint against one input document.
//!
//! A loaded [`PolicySet`] is immutable; reload builds a new one and swaps it in
//! (see [`crate::http`]), so a bad set can never replace a good one.
//!
//! Data files follow OPA's convention so that `opa test rego/` and tss-gate see
//! the same `data`: a file named `data.json`, `data.yaml` or `data.yml` is
//! merged at the path of its directory relative to the policy directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use regorus::{CompiledPolicy, Engine, Value};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

/// Default decision entrypoint, per the decision contract.
pub const DEFAULT_ENTRYPOINT: &str = "data.tss.decision";

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy directory `{0}` does not exist or is not a directory")]
    NoDir(PathBuf),
    #[error("cannot read `{path}`: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("no `.rego` files under `{0}`")]
    Empty(PathBuf),
    #[error("{0}")]
    Parse(String),
    #[error("data file `{path}`: {reason}")]
    Data { path: PathBuf, reason: String },
    #[error("cannot compile entrypoint `{entrypoint}`: {reason}")]
    Compile { entrypoint: String, reason: String },
    #[error("entrypoint `{entrypoint}` fails the decision contract on a sample input: {reason}")]
    Contract { entrypoint: String, reason: String },
    #[error("policy evaluation failed: {0}")]
    Eval(String),
    #[error("policy evaluation exceeded its time limit")]
    TimeLimit,
    #[error("decision is undefined")]
    Undefined,
    #[error("decision has the wrong shape: {0}")]
    Shape(String),
}

impl PolicyError {
    /// Short reason safe to put in a signed answer: no file contents, no
    /// internal detail beyond the kind of failure.
    pub fn public_reason(&self) -> &'static str {
        match self {
            PolicyError::TimeLimit => "policy evaluation exceeded its time limit",
            PolicyError::Undefined => "policy decision is undefined",
            PolicyError::Shape(_) => "policy decision has the wrong shape",
            _ => "policy evaluation failed",
        }
    }

    /// Bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            PolicyError::TimeLimit => "policy_timeout",
            PolicyError::Undefined => "policy_undefined",
            PolicyError::Shape(_) => "policy_shape",
            _ => "policy_error",
        }
    }
}

/// What the loader needs to know.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    pub dir: PathBuf,
    pub entrypoint: String,
    /// Extra data files merged at the data root, after the directory's own.
    pub data_files: Vec<PathBuf>,
    /// Wall-clock limit of one evaluation.
    pub eval_timeout: Duration,
}

/// The outcome of the decision entrypoint, validated against the contract.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    pub allow: bool,
    pub reasons: Vec<String>,
    /// Stable machine codes of the rules that denied, label-safe.
    pub codes: Vec<String>,
}

impl Decision {
    /// APPROVE only on `allow == true` with no reasons: a policy that allows
    /// and explains at once is contradictory, so it does not approve.
    pub fn approves(&self) -> bool {
        self.allow && self.reasons.is_empty()
    }
}

/// One loaded, compiled policy set.
#[derive(Clone)]
pub struct PolicySet {
    compiled: CompiledPolicy,
    engine: Engine,
    pub entrypoint: String,
    /// sha256 over every loaded file's path and bytes, short form.
    pub revision: String,
    pub files: Vec<PathBuf>,
    pub loaded_at: SystemTime,
    pub load_time: Duration,
    pub eval_timeout: Duration,
    /// Chain facts for transaction decoding, read from `data.integrity` at
    /// load so that no request re-reads policy data.
    pub derive: crate::derive::DeriveConfig,
    /// Spending limits, read from `data.velocity` at load.
    pub velocity: std::sync::Arc<crate::velocity::Limits>,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("entrypoint", &self.entrypoint)
            .field("revision", &self.revision)
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

/// Files found under a policy directory.
#[derive(Debug, Default, Clone)]
pub struct Discovered {
    pub policies: Vec<PathBuf>,
    pub tests: Vec<PathBuf>,
    pub data: Vec<PathBuf>,
}

fn is_test_file(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with("_test.rego"))
}

/// Walks `dir` (sorted, so the revision is stable) for policies, tests and data.
pub fn discover(dir: &Path) -> Result<Discovered, PolicyError> {
    if !dir.is_dir() {
        return Err(PolicyError::NoDir(dir.to_owned()));
    }
    let mut out = Discovered::default();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| PolicyError::Read {
            path: d.clone(),
            reason: e.to_string(),
        })?;
        for entry in rd {
            let entry = entry.map_err(|e| PolicyError::Read {
                path: d.clone(),
                reason: e.to_string(),
            })?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".rego") {
                if is_test_file(&path) {
                    out.tests.push(path);
                } else {
                    out.policies.push(path);
                }
            } else if matches!(name.as_ref(), "data.json" | "data.yaml" | "data.yml") {
                out.data.push(path);
            }
        }
    }
    out.policies.sort();
    out.tests.sort();
    out.data.sort();
    Ok(out)
}

fn read_text(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|e| PolicyError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn parse_data(path: &Path, text: &str) -> Result<Value, PolicyError> {
    let is_json = path.extension().is_some_and(|e| e == "json");
    let parsed = if is_json {
        Value::from_json_str(text)
    } else {
        Value::from_yaml_str(text)
    };
    let v = parsed.map_err(|e| PolicyError::Data {
        path: path.to_owned(),
        reason: format!("{e:#}"),
    })?;
    if v.as_object().is_err() {
        return Err(PolicyError::Data {
            path: path.to_owned(),
            reason: "top level must be an object".into(),
        });
    }
    Ok(v)
}

/// Wraps `v` in objects named after `dir`'s components below `root`.
fn nest_at(root: &Path, file: &Path, v: Value) -> Value {
    let rel = file
        .parent()
        .and_then(|p| p.strip_prefix(root).ok())
        .map(|p| p.to_owned())
        .unwrap_or_default();
    let comps: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    comps.iter().rev().fold(v, |acc, key| {
        let mut obj = Value::new_object();
        if let Ok(map) = obj.as_object_mut() {
            map.insert(Value::from(key.as_str()), acc);
        }
        obj
    })
}

/// Builds an engine holding the directory's policies (and tests when asked)
/// and its data. Shared by serving, `check` and `test` so they load alike.
pub fn build_engine(
    opts: &PolicyOptions,
    include_tests: bool,
) -> Result<(Engine, Vec<PathBuf>, String), PolicyError> {
    let found = discover(&opts.dir)?;
    if found.policies.is_empty() {
        return Err(PolicyError::Empty(opts.dir.clone()));
    }
    let mut engine = Engine::new();
    engine.set_rego_v0(false);
    // Builtin errors (e.g. a bad regex) must surface as errors, never as a
    // silently undefined rule that a policy might read as "no denial".
    engine.set_strict_builtin_errors(true);
    engine.set_gather_prints(true);
    let mut hasher = Sha256::new();
    let mut files = Vec::new();
    let mut rego_files: Vec<&PathBuf> = found.policies.iter().collect();
    if include_tests {
        rego_files.extend(found.tests.iter());
    }
    // Every file is parsed before giving up, so `check` (and a refused
    // `serve`) report all syntax errors at once, each with file:line:col.
    let mut parse_errors = Vec::new();
    for path in rego_files {
        let text = read_text(path)?;
        hash_file(&mut hasher, &opts.dir, path, text.as_bytes());
        match engine.add_policy(path.display().to_string(), text) {
            Ok(_) => files.push(path.clone()),
            Err(e) => parse_errors.push(format!("{e:#}").trim().to_owned()),
        }
    }
    if !parse_errors.is_empty() {
        return Err(PolicyError::Parse(parse_errors.join("\n")));
    }
    if !include_tests {
        // Test files do not change decisions, but the revision should still
        // change when they do, so `require_passing_tests` reloads are visible.
        for path in &found.tests {
            let bytes = std::fs::read(path).map_err(|e| PolicyError::Read {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            hash_file(&mut hasher, &opts.dir, path, &bytes);
        }
    }
    for path in &found.data {
        let text = read_text(path)?;
        hash_file(&mut hasher, &opts.dir, path, text.as_bytes());
        let v = nest_at(&opts.dir, path, parse_data(path, &text)?);
        engine.add_data(v).map_err(|e| PolicyError::Data {
            path: path.clone(),
            reason: format!("{e:#}"),
        })?;
        files.push(path.clone());
    }
    for path in &opts.data_files {
        let text = read_text(path)?;
        hash_file(&mut hasher, &opts.dir, path, text.as_bytes());
        let v = parse_data(path, &text)?;
        engine.add_data(v).map_err(|e| PolicyError::Data {
            path: path.clone(),
            reason: format!("{e:#}"),
        })?;
        files.push(path.clone());
    }
    let digest = hasher.finalize();
    let revision = hex::encode(&digest[..8]);
    Ok((engine, files, revision))
}

fn hash_file(h: &mut Sha256, root: &Path, path: &Path, bytes: &[u8]) {
    let rel = path.strip_prefix(root).unwrap_or(path);
    h.update(rel.to_string_lossy().as_bytes());
    h.update([0u8]);
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// A minimal, always-valid input used to check the decision contract at load.
pub fn sample_input() -> Json {
    serde_json::json!({
        "request_id": "tss-gate-contract-check",
        "request_type": "PING",
        "request_type_code": 0,
        "detail": {},
        "extra": {},
        "verified_by": "contract-check",
        "token": {},
        "received_at_ms": 0,
        "received_at": "1970-01-01T00:00:00.000Z"
    })
}

impl PolicySet {
    /// Loads, compiles and contract-checks a policy set. Refuses anything that
    /// could not serve a well-formed decision.
    pub fn load(opts: &PolicyOptions) -> Result<Self, PolicyError> {
        let started = Instant::now();
        let (mut engine, files, revision) = build_engine(opts, false)?;
        let entry: regorus::Rc<str> = opts.entrypoint.as_str().into();
        let compiled =
            engine
                .compile_with_entrypoint(&entry)
                .map_err(|e| PolicyError::Compile {
                    entrypoint: opts.entrypoint.clone(),
                    reason: format!("{e:#}"),
                })?;
        // The tables the server reads itself, from one JSON copy of the data.
        // Missing `integrity` means no chain is known, so every raw
        // transaction yields a decode error (`derived.error`), never a
        // silent pass; a malformed table or limit refuses the whole set.
        let data: Json = serde_json::to_value(engine.get_data()).unwrap_or(Json::Null);
        let derive = crate::derive::DeriveConfig::from_integrity(data.get("integrity"))
            .map_err(|reason| data_error(&files, reason, locate_table_row))?;
        derive
            .check_listed_addresses(data.get("keysign"))
            .map_err(|reason| data_error(&files, reason, locate_quoted))?;
        let velocity = crate::velocity::Limits::from_data(data.get("velocity"))
            .map_err(|reason| data_error(&files, reason, locate_limit))?;
        let set = PolicySet {
            compiled,
            engine,
            derive,
            velocity: std::sync::Arc::new(velocity),
            entrypoint: opts.entrypoint.clone(),
            revision,
            files,
            loaded_at: SystemTime::now(),
            load_time: Duration::ZERO,
            eval_timeout: opts.eval_timeout,
        };
        set.evaluate(&sample_input())
            .map_err(|e| PolicyError::Contract {
                entrypoint: opts.entrypoint.clone(),
                reason: e.to_string(),
            })?;
        Ok(PolicySet {
            load_time: started.elapsed(),
            ..set
        })
    }

    /// A fresh engine with the policies and data of this set, for tools
    /// (explain, ad-hoc queries). Cloning is cheap: nothing is re-parsed.
    pub fn engine(&self) -> Engine {
        self.engine.clone()
    }

    /// Evaluates the entrypoint and validates the result against the contract.
    pub fn evaluate(&self, input: &Json) -> Result<Decision, PolicyError> {
        let raw = self.evaluate_raw(input)?;
        decision_from_value(&raw)
    }

    /// Evaluates the entrypoint and returns its value as JSON, unvalidated.
    pub fn evaluate_raw(&self, input: &Json) -> Result<Json, PolicyError> {
        let started = Instant::now();
        let out = self.compiled.eval_with_input(input_value(input));
        eval_result(out, started.elapsed() >= self.eval_timeout)
    }
}

/// Maps a raw regorus result to JSON: errors classified (the time limit is
/// reported as an error; anything that ran at least the limit is attributed
/// to it), Undefined refused.
fn eval_result<E: std::fmt::Display>(
    out: Result<Value, E>,
    over_limit: bool,
) -> Result<Json, PolicyError> {
    let out = out.map_err(|e| {
        let msg = format!("{e:#}");
        if msg.contains("time limit") || over_limit {
            PolicyError::TimeLimit
        } else {
            PolicyError::Eval(msg)
        }
    })?;
    if out == Value::Undefined {
        return Err(PolicyError::Undefined);
    }
    serde_json::to_value(&out).map_err(|e| PolicyError::Shape(e.to_string()))
}

/// The input document as a regorus value, read straight from the borrowed
/// JSON: `Value::from(Json)` would need an owned copy of a document the
/// caller keeps (for the decision log), a clone per decision for nothing.
pub fn input_value(input: &Json) -> Value {
    use serde::Deserialize;
    // Every serde_json value maps to a regorus value (both are JSON data
    // models), so this cannot fail; Undefined would make the decision
    // undefined, which is refused, never approved.
    Value::deserialize(input).unwrap_or(Value::Undefined)
}

/// Evaluates `entrypoint` on an interpreting engine (which, unlike the
/// compiled policy, can record coverage) and validates the result exactly as
/// [`PolicySet::evaluate`] does.
pub fn evaluate_on_engine(
    engine: &mut Engine,
    entrypoint: &str,
    input: &Json,
) -> Result<Decision, PolicyError> {
    engine.set_input(input_value(input));
    let json = eval_result(engine.eval_rule(entrypoint.to_owned()), false)?;
    decision_from_value(&json)
}

/// A data table's load error, at the file and line `locate` finds for it.
fn data_error(
    files: &[PathBuf],
    reason: String,
    locate: fn(&[PathBuf], &str) -> (PathBuf, Option<usize>),
) -> PolicyError {
    let (path, line) = locate(files, &reason);
    PolicyError::Data {
        path,
        reason: match line {
            Some(n) => format!("line {n}: {reason}"),
            None => reason,
        },
    }
}

/// The data file and line of the limit a load error names
/// (`velocity.limits.<id>: ...`): the line that declares that id, else the
/// `velocity:` line.
fn locate_limit(files: &[PathBuf], reason: &str) -> (PathBuf, Option<usize>) {
    let id = reason
        .strip_prefix("velocity.limits.")
        .and_then(|r| r.split(':').next())
        .filter(|id| !id.is_empty());
    let mut fallback = (PathBuf::from("data.velocity"), None);
    for (path, text) in data_texts(files) {
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start().trim_start_matches("- ").trim_start();
            if let Some(id) = id {
                let bare = t.strip_prefix("id:").or_else(|| t.strip_prefix("\"id\":"));
                if bare.is_some_and(|v| v.trim().trim_matches([',', '"', '\'']).trim() == id) {
                    return (path.clone(), Some(i + 1));
                }
            }
            if fallback.1.is_none()
                && (t.starts_with("velocity:") || t.starts_with("\"velocity\":"))
            {
                fallback = (path.clone(), Some(i + 1));
            }
        }
    }
    fallback
}

/// The data file and line of the table row a load error names
/// (`integrity.chains.ETH: ...`), so the refusal points at what to fix.
/// Falls back to the first data file that mentions `integrity`.
fn locate_table_row(files: &[PathBuf], reason: &str) -> (PathBuf, Option<usize>) {
    let mut parts = reason.split([':', '.']);
    let (_, table, row) = (parts.next(), parts.next(), parts.next());
    let mut fallback = None;
    for (path, text) in data_texts(files) {
        if !text.contains("integrity") {
            continue;
        }
        fallback.get_or_insert_with(|| path.clone());
        let (Some(table), Some(row)) = (table, row) else {
            continue;
        };
        let mut in_table = false;
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if t.starts_with(&format!("{table}:")) || t.starts_with(&format!("\"{table}\":")) {
                in_table = true;
            } else if in_table
                && (t.starts_with(&format!("{row}:")) || t.starts_with(&format!("\"{row}\":")))
            {
                // `integrity.contracts.<chain>: contract `<address>`:
                // function `<text>`: ...` names rows deeper down: each quoted
                // value is looked for from the line of the one before.
                let mut at = i;
                if table == "contracts" {
                    for q in reason
                        .split('`')
                        .skip(1)
                        .step_by(2)
                        .filter(|q| !q.is_empty())
                    {
                        match text.lines().skip(at).position(|l| l.contains(q)) {
                            Some(j) => at += j,
                            None => break,
                        }
                    }
                }
                return (path.clone(), Some(at + 1));
            }
        }
    }
    (
        fallback.unwrap_or_else(|| PathBuf::from("data.integrity")),
        None,
    )
}

/// The policy set's data files (YAML, JSON) that can be read, with their text.
fn data_texts(files: &[PathBuf]) -> impl Iterator<Item = (&PathBuf, String)> {
    files
        .iter()
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .filter_map(|p| std::fs::read_to_string(p).ok().map(|t| (p, t)))
}

/// The data file and line of the first `quoted` value a load error names.
fn locate_quoted(files: &[PathBuf], reason: &str) -> (PathBuf, Option<usize>) {
    let quoted = reason.split('`').nth(1).filter(|q| !q.is_empty());
    let mut fallback = None;
    for (path, text) in data_texts(files) {
        fallback.get_or_insert_with(|| path.clone());
        if let Some(q) = quoted
            && let Some(i) = text.lines().position(|l| l.contains(q))
        {
            return (path.clone(), Some(i + 1));
        }
    }
    (fallback.unwrap_or_else(|| PathBuf::from("data")), None)
}

/// Label-safe shape of a rule code: it becomes a Prometheus label value.
pub fn is_valid_code(code: &str) -> bool {
    let mut chars = code.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && code.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
}

/// Validates the decision contract: `{"allow": bool, "reasons": [string],
/// "codes"?: [string]}`. Anything else is an error, never an approval.
pub fn decision_from_value(v: &Json) -> Result<Decision, PolicyError> {
    let obj = v
        .as_object()
        .ok_or_else(|| PolicyError::Shape("decision is not an object".into()))?;
    let allow = obj
        .get("allow")
        .and_then(Json::as_bool)
        .ok_or_else(|| PolicyError::Shape("`allow` is missing or not a boolean".into()))?;
    let reasons = string_list(obj.get("reasons"), "reasons")?
        .ok_or_else(|| PolicyError::Shape("`reasons` is missing".into()))?;
    let codes = string_list(obj.get("codes"), "codes")?
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            if is_valid_code(&c) {
                c
            } else {
                "invalid_code".into()
            }
        })
        .collect();
    Ok(Decision {
        allow,
        reasons,
        codes,
    })
}

fn string_list(v: Option<&Json>, name: &str) -> Result<Option<Vec<String>>, PolicyError> {
    let Some(v) = v else { return Ok(None) };
    let arr = v
        .as_array()
        .ok_or_else(|| PolicyError::Shape(format!("`{name}` is not an array")))?;
    arr.iter()
        .map(|r| {
            r.as_str()
                .map(str::to_owned)
                .ok_or_else(|| PolicyError::Shape(format!("`{name}` holds a non-string")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Installs the evaluation time limit. regorus applies it to compiled
/// policies only through its process-wide fallback, so this is set once at
/// start (and again on reload) rather than per engine.
pub fn install_time_limit(limit: Duration) {
    regorus::utils::limits::set_fallback_execution_timer_config(Some(
        regorus::utils::limits::ExecutionTimerConfig {
            limit,
            check_interval: TIME_CHECK_INTERVAL,
        },
    ));
}

/// Work units (statements, rule and loop steps, each a few microseconds)
/// between two reads of the clock. Reading it at every unit cost 3-4 % of
/// a saturated server's CPU (perf, 4096-bit load); every 16th unit still
/// notices an overrun within well under a millisecond.
#[allow(clippy::unwrap_used, reason = "a constant: evaluated when compiled")]
const TIME_CHECK_INTERVAL: std::num::NonZeroU32 = std::num::NonZeroU32::new(16).unwrap();

/// Squeezes a multi-line compiler message into one log line. regorus
/// reports `--> FILE:LINE:COL`, a source excerpt, then `error: REASON`; that
/// becomes `FILE:LINE:COL: REASON`. Anything else has its lines joined.
pub fn one_line(msg: &str) -> String {
    let mut location = None;
    let mut reason = None;
    for l in msg.lines() {
        let t = l.trim();
        if let Some(loc) = t.strip_prefix("--> ") {
            location.get_or_insert(loc.to_owned());
        } else if let Some(r) = t.strip_prefix("error: ") {
            reason.get_or_insert(r.to_owned());
        }
    }
    match (location, reason) {
        (Some(loc), Some(r)) => format!("{loc}: {r}"),
        _ => msg
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" | "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contract_shapes() {
        let ok = decision_from_value(&json!({"allow": true, "reasons": []})).unwrap();
        assert!(ok.approves());
        let contradictory = decision_from_value(&json!({"allow": true, "reasons": ["x"]})).unwrap();
        assert!(!contradictory.approves());
        for bad in [
            json!(true),
            json!({"allow": "true", "reasons": []}),
            json!({"allow": true}),
            json!({"allow": true, "reasons": [1]}),
            json!({"allow": true, "reasons": "none"}),
        ] {
            assert!(decision_from_value(&bad).is_err(), "{bad} must not pass");
        }
        let coded = decision_from_value(
            &json!({"allow": false, "reasons": ["r"], "codes": ["keysign.cap", "Bad Code!"]}),
        )
        .unwrap();
        assert_eq!(coded.codes, vec!["keysign.cap", "invalid_code"]);
    }

    #[test]
    fn compiler_messages_become_one_line() {
        let msg =
            "\n--> /p/x.rego:4:7\n  |\n4 |   x := )\n  |       ^\nerror: expecting expression";
        assert_eq!(one_line(msg), "/p/x.rego:4:7: expecting expression");
        assert_eq!(one_line("a\n\n b"), "a | b");
    }
}
