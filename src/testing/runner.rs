//! Discovery and execution for `tss-gate test`: Rego `test_*` rules (as
//! `opa test` runs them) and fixture files (through the server's decision
//! pipeline). Returns a [`RunReport`]; printing is [`super::report`]'s job.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use regex::Regex;
use regorus::Engine;
use serde_json::Value as Json;

use super::rules::{self, HeadKind};
use super::{CaseResult, Kind, Outcome, RunReport, coverage};
use crate::decide::steps::{self, Decided, Failure};
use crate::fixture::{self, Fixture, FixtureError};
use crate::input::{self, TokenFacts};
use crate::policy::{self, Decision, PolicyError, PolicyOptions, PolicySet};
use crate::protocol::{CallbackRequest, CallbackResponse};

/// `verified_by` of a fixture that does not name a TSS Node key.
pub const DEFAULT_VERIFIED_BY: &str = "fixture";

/// Why a run could not start. Test failures are results, not errors.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Fixture(#[from] FixtureError),
    #[error("test path `{0}` does not exist")]
    NoPath(PathBuf),
    #[error("{0}")]
    Parse(String),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The policy set, loaded as `serve` loads it.
    pub policy: PolicyOptions,
    /// Where to discover `*_test.rego` files. Test files inside the policy
    /// directory are always loaded (they may share helpers) but only those
    /// under these paths run; test files outside it are loaded as well.
    pub test_paths: Vec<PathBuf>,
    /// Fixture directory; `None` runs no fixtures.
    pub fixtures: Option<PathBuf>,
    /// Only cases whose name matches run (`--run`).
    pub filter: Option<Regex>,
    pub coverage: bool,
    /// Wall-clock limit of one Rego test.
    pub test_timeout: Duration,
}

/// Runs every selected test and fixture.
pub fn run(opts: &RunOptions) -> Result<RunReport, RunError> {
    for p in &opts.test_paths {
        if !p.exists() {
            return Err(RunError::NoPath(p.clone()));
        }
    }
    // Exactly what `serve` does before it listens (see state::load_all).
    policy::install_time_limit(opts.policy.eval_timeout);
    let set = PolicySet::load(&opts.policy)?;
    let mut engine = test_engine(opts)?;
    let mut report = RunReport {
        warnings: warnings(&set),
        ..RunReport::default()
    };
    let mut reports = run_rego_tests(&mut engine, opts, &mut report.cases);

    let mut fixture_engine = opts.coverage.then(|| {
        let mut e = set.engine();
        e.set_enable_coverage(true);
        e
    });
    if let Some(dir) = &opts.fixtures {
        for path in fixture::discover(dir)? {
            let name = fixture_name(&path);
            if opts.filter.as_ref().is_some_and(|r| !r.is_match(&name)) {
                continue;
            }
            report
                .cases
                .push(run_fixture(&set, &path, name, fixture_engine.as_mut()));
        }
    }

    if opts.coverage {
        if let Some(e) = &fixture_engine {
            reports.extend(e.get_coverage_report().ok());
        }
        let files: Vec<String> = policy::discover(&opts.policy.dir)?
            .policies
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let reported: BTreeSet<&str> = reports
            .iter()
            .flat_map(|r| r.files.iter().map(|f| f.path.as_str()))
            .collect();
        let universe = if files.iter().all(|f| reported.contains(f.as_str())) {
            Vec::new()
        } else {
            coverage::universe(&set.engine(), &policy::sample_input())
        };
        report.coverage = Some(coverage::merge(&reports, &universe, &files));
    }
    Ok(report)
}

/// What `check` warns about in a policy set, so `test` says it too.
pub fn warnings(set: &PolicySet) -> Vec<String> {
    let mut engine = set.engine();
    let modules = super::rules::modules(&mut engine);
    let mut out: Vec<String> = super::portability::negations(&modules)
        .iter()
        .map(ToString::to_string)
        .collect();
    let files: Vec<(String, String)> = engine
        .get_policies()
        .unwrap_or_default()
        .iter()
        .map(|s| (s.get_path().clone(), s.get_contents().clone()))
        .collect();
    out.extend(
        super::input_paths::check(&files)
            .iter()
            .map(ToString::to_string),
    );
    out.extend(
        super::reach::unreached(&modules, &set.entrypoint)
            .iter()
            .map(ToString::to_string),
    );
    let data = serde_json::to_value(engine.get_data()).unwrap_or(Json::Null);
    let keys = super::data_keys::check_set(&modules, &data, &set.files);
    out.extend(keys.missing.iter().map(ToString::to_string));
    out.extend(keys.unread.iter().map(ToString::to_string));
    out.extend(unlimited_tokens(&data));
    out
}

/// Tokens the policy lets move with no bound on the amount: no cap per
/// transaction, or no spending limit over time that sums their amounts. Only
/// count limits would then stand between a compromised upstream and the
/// whole balance.
pub fn unlimited_tokens(data: &Json) -> Vec<String> {
    let Some(allowed) = data
        .pointer("/keysign/allowed_token_ids")
        .and_then(Json::as_array)
    else {
        return Vec::new();
    };
    let caps = data.pointer("/keysign/max_amount_per_tx");
    let limits: Vec<&Json> = data
        .pointer("/velocity/limits")
        .and_then(Json::as_array)
        .map(|l| l.iter().filter(|l| l.get("max_amount").is_some()).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for token in allowed.iter().filter_map(Json::as_str) {
        if caps.and_then(|c| c.get(token)).is_none() {
            out.push(format!(
                "data: token `{token}` is allowed (keysign.allowed_token_ids) but has no per-transaction cap (keysign.max_amount_per_tx.{token})"
            ));
        }
        let limited =
            limits.iter().any(
                |l| match l.pointer("/match/token_ids").and_then(Json::as_array) {
                    None => true,
                    Some(ids) => ids.iter().any(|i| i.as_str() == Some(token)),
                },
            );
        if !limited {
            out.push(format!(
                "data: token `{token}` is allowed (keysign.allowed_token_ids) but no spending limit with max_amount matches it (velocity.limits)"
            ));
        }
    }
    out
}

/// The policies, their tests and data, as `serve` would load them, plus any
/// test files under the test paths that live outside the policy directory.
fn test_engine(opts: &RunOptions) -> Result<Engine, RunError> {
    let (mut engine, _, _) = policy::build_engine(&opts.policy, true)?;
    let dir = canonical(&opts.policy.dir);
    let mut errors = Vec::new();
    for p in &opts.test_paths {
        for f in test_files(p) {
            if canonical(&f).starts_with(&dir) {
                continue;
            }
            let text = std::fs::read_to_string(&f)
                .map_err(|e| RunError::Parse(format!("cannot read `{}`: {e}", f.display())))?;
            if let Err(e) = engine.add_policy(f.display().to_string(), text) {
                errors.push(format!("{e:#}").trim().to_owned());
            }
        }
    }
    if !errors.is_empty() {
        return Err(RunError::Parse(errors.join("\n")));
    }
    Ok(engine)
}

/// Time limit and coverage for an engine that runs tests.
fn configure(engine: &mut Engine, opts: &RunOptions) {
    engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
        limit: opts.test_timeout,
        check_interval: std::num::NonZeroU32::MIN,
    });
    if opts.coverage {
        engine.set_enable_coverage(true);
    }
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_owned())
}

/// `*_test.rego` files at or under `p`, sorted.
fn test_files(p: &Path) -> Vec<PathBuf> {
    if p.is_file() {
        return vec![p.to_owned()];
    }
    policy::discover(p).map(|d| d.tests).unwrap_or_default()
}

fn is_test_file(file: &str) -> bool {
    file.ends_with("_test.rego")
}

/// One `test_*` rule to run.
struct TestCase {
    /// `data.<package>.<rule>`.
    name: String,
    package: String,
    file: PathBuf,
    line: u32,
    todo: bool,
}

/// The `test_*` / `todo_test_*` rules of the selected test files, in load
/// order, each once (a rule written as several definitions is one test, with
/// OPA's "any body true" meaning).
fn discover_tests(engine: &mut Engine, opts: &RunOptions) -> Vec<TestCase> {
    let selected: Vec<PathBuf> = opts.test_paths.iter().map(|p| canonical(p)).collect();
    let in_selection = |file: &str| {
        let c = canonical(Path::new(file));
        selected.iter().any(|s| c.starts_with(s))
    };
    let mut seen = BTreeSet::new();
    let mut cases = Vec::new();
    for m in rules::modules(engine) {
        if !is_test_file(&m.file) || !in_selection(&m.file) {
            continue;
        }
        for r in &m.rules {
            let is_test = r.name.starts_with("test_");
            let todo = r.name.starts_with("todo_test_");
            if !(is_test || todo) || !matches!(r.kind, HeadKind::Complete) {
                continue;
            }
            let name = format!("data.{}.{}", m.package, r.name);
            if !seen.insert(name.clone()) {
                continue;
            }
            if opts.filter.as_ref().is_some_and(|re| !re.is_match(&name)) {
                continue;
            }
            cases.push(TestCase {
                name,
                package: m.package.clone(),
                file: PathBuf::from(&r.file),
                line: r.line,
                todo,
            });
        }
    }
    cases
}

/// Runs the selected tests and returns the coverage they recorded.
///
/// Each test package runs on its own engine: the policies and data (as
/// `serve` loads them) plus only that package's test files. regorus may
/// evaluate a whole subtree of `data` (e.g. under `with data.tss.x as ...`),
/// which on one engine holding every test would evaluate every other test
/// too: slow, and one erroring test would error all of them. When a test
/// package mentions another (`data.<other test package>`), all tests share
/// the one engine `full` instead, so helpers across packages keep working.
fn run_rego_tests(
    full: &mut Engine,
    opts: &RunOptions,
    out: &mut Vec<CaseResult>,
) -> Vec<regorus::coverage::Report> {
    let cases = discover_tests(full, opts);
    if cases.is_empty() {
        return Vec::new();
    }
    let first = out.len();
    let reports = run_discovered(full, opts, &cases, out);
    explain_failures(full, opts, &mut out[first..]);
    reports
}

/// Adds to each failing Rego test what the policy decided at each of its
/// `with input as` statements (see [`super::decisions`]).
fn explain_failures(full: &mut Engine, opts: &RunOptions, results: &mut [CaseResult]) {
    let failing = |r: &CaseResult| {
        r.kind == Kind::Rego && matches!(r.outcome, Outcome::Fail | Outcome::Error)
    };
    if !results.iter().any(failing) {
        return;
    }
    let tests: Vec<(String, String)> = full
        .get_policies()
        .unwrap_or_default()
        .iter()
        .filter(|s| is_test_file(s.get_path()))
        .map(|s| (s.get_path().clone(), s.get_contents().clone()))
        .collect();
    let Ok((base, _, _)) = policy::build_engine(&opts.policy, false) else {
        return;
    };
    for r in results.iter_mut().filter(|r| failing(r)) {
        let file = r.file.display().to_string();
        let Some(text) = tests.iter().find(|(p, _)| *p == file).map(|(_, t)| t) else {
            continue;
        };
        let Some(instrumented) =
            super::decisions::instrument(text, r.line as usize, &opts.policy.entrypoint)
        else {
            continue;
        };
        let mut engine = base.clone();
        let loaded = tests.iter().all(|(p, t)| {
            let t = if *p == file { &instrumented } else { t };
            engine.add_policy(p.clone(), t.clone()).is_ok()
        });
        if !loaded {
            continue;
        }
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: opts.test_timeout,
            check_interval: std::num::NonZeroU32::MIN,
        });
        let lines = super::decisions::decisions(engine, &r.name, &file);
        if !lines.is_empty() {
            r.message
                .push_str("\nwhat the policy decided in this test:");
            for l in lines {
                r.message.push_str("\n  ");
                r.message.push_str(&l);
            }
        }
    }
}

fn run_discovered(
    full: &mut Engine,
    opts: &RunOptions,
    cases: &[TestCase],
    out: &mut Vec<CaseResult>,
) -> Vec<regorus::coverage::Report> {
    let packages: BTreeMap<String, String> = rules::modules(full)
        .into_iter()
        .filter(|m| is_test_file(&m.file))
        .map(|m| (m.file, m.package))
        .collect();
    let mut sources: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for src in full.get_policies().unwrap_or_default() {
        if let Some(pkg) = packages.get(src.get_path()) {
            sources
                .entry(pkg.clone())
                .or_default()
                .push((src.get_path().clone(), src.get_contents().clone()));
        }
    }
    let isolated = sources.iter().all(|(pkg, files)| {
        files.iter().all(|(_, text)| {
            sources
                .keys()
                .filter(|other| *other != pkg)
                .all(|other| !text.contains(&format!("data.{other}")))
        })
    });
    let base = if isolated {
        policy::build_engine(&opts.policy, false).ok().map(|b| b.0)
    } else {
        None
    };
    let mut reports = Vec::new();
    let Some(base) = base else {
        configure(full, opts);
        for c in cases {
            out.push(run_case(full, c));
        }
        reports.extend(full.get_coverage_report().ok());
        return reports;
    };
    let mut results: Vec<(usize, CaseResult)> = Vec::new();
    let mut done = BTreeSet::new();
    for c in cases {
        if !done.insert(c.package.clone()) {
            continue;
        }
        let mut engine = base.clone();
        for (path, text) in sources.get(&c.package).into_iter().flatten() {
            // Already parsed once by `full`, so this cannot fail; if it
            // did, the test would report the error rather than vanish.
            let _ = engine.add_policy(path.clone(), text.clone());
        }
        configure(&mut engine, opts);
        for (i, t) in cases.iter().enumerate() {
            if t.package == c.package {
                results.push((i, run_case(&mut engine, t)));
            }
        }
        reports.extend(engine.get_coverage_report().ok());
    }
    results.sort_by_key(|(i, _)| *i);
    out.extend(results.into_iter().map(|(_, r)| r));
    reports
}

/// Runs one test: PASS only when the rule is exactly `true`.
fn run_case(engine: &mut Engine, c: &TestCase) -> CaseResult {
    let mut result = CaseResult {
        kind: Kind::Rego,
        name: c.name.clone(),
        file: c.file.clone(),
        line: c.line,
        outcome: Outcome::Skip,
        message: String::new(),
        prints: Vec::new(),
        duration: Duration::ZERO,
    };
    if c.todo {
        return result;
    }
    let started = Instant::now();
    let value = engine.eval_rule(c.name.clone());
    result.duration = started.elapsed();
    result.prints = engine.take_prints().unwrap_or_default();
    let location = result.location();
    (result.outcome, result.message) = match value {
        Ok(regorus::Value::Bool(true)) => (Outcome::Pass, String::new()),
        Ok(regorus::Value::Undefined) => (
            Outcome::Fail,
            format!("{location}: test is undefined (some condition did not hold)"),
        ),
        Ok(v) => (
            Outcome::Fail,
            format!(
                "{location}: test value is `{}`, not true",
                serde_json::to_string(&v).unwrap_or_default()
            ),
        ),
        Err(e) => (
            Outcome::Error,
            format!("{location}: {}", format!("{e:#}").trim()),
        ),
    };
    result
}

fn fixture_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// 1-based line of the fixture's `"expect"` key, for file:line messages.
fn expect_line(path: &Path) -> u32 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.find("\"expect\"")
        .and_then(|i| text.get(..i))
        .map(|before| before.matches('\n').count() + 1)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(1)
}

/// The token facts a fixture is evaluated with.
pub fn fixture_token(f: &Fixture) -> TokenFacts {
    TokenFacts {
        key_name: f
            .verified_by
            .clone()
            .unwrap_or_else(|| DEFAULT_VERIFIED_BY.to_owned()),
        ..TokenFacts::default()
    }
}

/// A request as the server decides it once its token has verified: parse
/// the request's bytes exactly as the server does ([`input::parse_request`]:
/// shape, embedded documents, repeated keys), then
/// [`steps::decide_with`]. A request the server would refuse as
/// malformed gets the same status-10 failure.
pub fn decide_request(
    set: &PolicySet,
    wire: &[u8],
    token: &TokenFacts,
    received_at_ms: i64,
    evaluate: impl FnOnce(&Json) -> Result<Decision, PolicyError>,
) -> Result<Decided, Failure> {
    let parsed = input::parse_request(wire, input::DEFAULT_MAX_DEPTH).map_err(Failure::Request)?;
    Ok(steps::decide_with(
        set,
        &parsed,
        token,
        received_at_ms,
        evaluate,
    ))
}

/// A fixture decided as the server decides it: when a spending limit
/// matches, through a scratch ledger that holds exactly the fixture's
/// `history`, at the fixture's time. The outer error is a fixture problem
/// (history naming an unknown limit, a bad amount or duration).
pub fn decide_fixture(
    set: &PolicySet,
    history: &[crate::fixture::HistoryEntry],
    wire: &[u8],
    token: &TokenFacts,
    at: i64,
    evaluate: &mut dyn FnMut(&Json) -> Result<Decision, PolicyError>,
) -> Result<Result<Decided, Failure>, String> {
    let parsed = match input::parse_request(wire, input::DEFAULT_MAX_DEPTH) {
        Ok(p) => p,
        Err(e) => return Ok(Err(Failure::Request(e))),
    };
    if set.velocity.is_empty() {
        if !history.is_empty() {
            return Err("`history` is set but the policy declares no spending limits".into());
        }
        return Ok(Ok(steps::decide_with(set, &parsed, token, at, |i| {
            evaluate(i)
        })));
    }
    let scratch = crate::testing::scratch::ScratchLedger::new()?;
    scratch.seed(&set.velocity, history, at)?;
    let adm = steps::Admitted::new(parsed, token.clone(), wire.to_vec());
    let out = match crate::decide::ledger::decide_stored(
        scratch.store(),
        set,
        &adm,
        at,
        Some(at),
        evaluate,
    ) {
        None if !history.is_empty() => {
            return Err("`history` is set but no spending limit matches this request".into());
        }
        // The evaluator handed in, not the compiled set: `--coverage` and
        // the compiled-vs-interpreted check must see these fixtures too.
        None => steps::decide_with(set, &adm.request, token, at, |i| evaluate(i)),
        Some(Ok(crate::decide::ledger::StoreDecided::Fresh(d, pending))) => match pending.wait() {
            Ok(()) => *d,
            Err(e) => return Err(format!("scratch ledger: {e}")),
        },
        Some(Ok(_)) => return Err("the scratch ledger already knew this request id".into()),
        Some(Err(fail)) => return Ok(Err(fail)),
    };
    Ok(Ok(out))
}

/// The answer the server would sign for `decided`.
pub fn answer_of(req: &CallbackRequest, decided: &Result<Decided, Failure>) -> CallbackResponse {
    match decided {
        Ok(d) => d.response.clone(),
        Err(f) => f.answer(&req.request_id),
    }
}

fn run_fixture(
    set: &PolicySet,
    path: &Path,
    name: String,
    coverage_engine: Option<&mut Engine>,
) -> CaseResult {
    let started = Instant::now();
    let mut case = CaseResult {
        kind: Kind::Fixture,
        name,
        file: path.to_owned(),
        line: 1,
        outcome: Outcome::Pass,
        message: String::new(),
        prints: Vec::new(),
        duration: Duration::ZERO,
    };
    let f = match fixture::load_fixture(path) {
        Ok(f) => f,
        Err(e) => {
            case.outcome = Outcome::Error;
            case.message = format!("{}:1: {e}", path.display());
            return case;
        }
    };
    case.line = expect_line(path);
    let token = fixture_token(&f);
    let at = f.received_at_ms.unwrap_or_else(crate::clock::now_ms);
    let wire = f.wire_bytes();
    let decided = match decide_fixture(set, &f.history, &wire, &token, at, &mut |i| set.evaluate(i))
    {
        Ok(d) => d,
        Err(e) => {
            case.outcome = Outcome::Error;
            case.message = format!("{}: {e}", case.location());
            return case;
        }
    };
    let answer = answer_of(&f.request, &decided);
    if let Some(engine) = coverage_engine {
        let entry = set.entrypoint.clone();
        let again = decide_fixture(set, &f.history, &wire, &token, at, &mut |i| {
            policy::evaluate_on_engine(engine, &entry, i)
        })
        .unwrap_or_else(|e| Err(Failure::Request(crate::input::RequestError::BadShape(e))));
        let other = answer_of(&f.request, &again);
        if other != answer {
            case.outcome = Outcome::Error;
            case.message = format!(
                "{}: compiled and interpreted evaluation disagree: {} vs {}",
                case.location(),
                describe(&answer),
                describe(&other)
            );
            case.duration = started.elapsed();
            return case;
        }
        case.prints = engine.take_prints().unwrap_or_default();
    }
    case.duration = started.elapsed();
    if let Some(why) = mismatch(&f, &answer, &decided) {
        case.outcome = Outcome::Fail;
        case.message = format!("{}: {why}", case.location());
    }
    case
}

/// How `answer` differs from what `f` expects, with the decision's codes;
/// None when it is as expected.
fn mismatch(
    f: &Fixture,
    answer: &CallbackResponse,
    decided: &Result<Decided, Failure>,
) -> Option<String> {
    if frozen_only(f, answer, decided) {
        return None;
    }
    let mut problems = Vec::new();
    if answer.action != Some(f.expect.action) || answer.status.code() != f.expect.status {
        problems.push(format!(
            "expected {} status {}, got {}",
            f.expect.action.as_str(),
            f.expect.status,
            describe(answer)
        ));
    }
    for r in &f.expect.reasons {
        if !answer.error.contains(r.as_str()) {
            problems.push(format!(
                "expected reason `{r}` is not in the answer's error"
            ));
        }
    }
    if problems.is_empty() {
        return None;
    }
    let codes = decided
        .as_ref()
        .ok()
        .and_then(|d| d.decision.as_ref())
        .map(|d| d.codes.join(", "))
        .unwrap_or_default();
    Some(format!(
        "{}\n  decision codes: [{codes}]",
        problems.join("; ")
    ))
}

/// An approving fixture that only the policy's freeze (`data.freeze`)
/// rejects. A freeze only adds REJECTs, so it must never make the set it
/// belongs to unloadable under the reload gate: the fixture still tests
/// everything beneath the freeze (any other denial fails it).
fn frozen_only(f: &Fixture, answer: &CallbackResponse, decided: &Result<Decided, Failure>) -> bool {
    let codes = match decided.as_ref().ok().and_then(|d| d.decision.as_ref()) {
        Some(d) if !d.allow || !d.reasons.is_empty() => &d.codes,
        _ => return false,
    };
    f.expect.action == crate::protocol::Action::Approve
        && f.expect.status == 0
        && answer.action == Some(crate::protocol::Action::Reject)
        && answer.status.code() == 0
        && !codes.is_empty()
        && codes.iter().all(|c| c == FREEZE_CODE)
}

/// The deny code of the policy's own freeze (rego/tss/keysign/controls.rego).
const FREEZE_CODE: &str = "keysign.frozen";

/// Decides one in-memory fixture with the policy set in `policy_dir` (its
/// default entrypoint): None when the answer is as expected, else why not.
pub fn check_fixture(policy_dir: &Path, f: &Fixture) -> Result<Option<String>, String> {
    let opts = PolicyOptions {
        dir: policy_dir.to_owned(),
        entrypoint: policy::DEFAULT_ENTRYPOINT.to_owned(),
        data_files: Vec::new(),
        eval_timeout: Duration::from_secs(10),
    };
    let set = PolicySet::load(&opts).map_err(|e| e.to_string())?;
    let token = fixture_token(f);
    let at = f.received_at_ms.unwrap_or_else(crate::clock::now_ms);
    let decided = decide_fixture(&set, &f.history, &f.wire_bytes(), &token, at, &mut |i| {
        set.evaluate(i)
    })?;
    let answer = answer_of(&f.request, &decided);
    Ok(mismatch(f, &answer, &decided))
}

fn describe(a: &CallbackResponse) -> String {
    let action = a.action.map(|x| x.as_str()).unwrap_or("NONE");
    if a.error.is_empty() {
        format!("{action} status {}", a.status.code())
    } else {
        format!("{action} status {} (`{}`)", a.status.code(), a.error)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::unlimited_tokens;

    #[test]
    fn an_allowed_token_without_an_amount_bound_is_named() {
        let data = json!({
            "keysign": {"allowed_token_ids": ["ETH", "BTC", "SOL"], "max_amount_per_tx": {"ETH": "50", "SOL": "1"}},
            "velocity": {"limits": [
                {"id": "eth", "match": {"token_ids": ["ETH"]}, "max_amount": "100"},
                {"id": "count_only", "max_count": 10},
                {"id": "sol_other", "match": {"token_ids": ["SOL_USDC"]}, "max_amount": "1"}
            ]}
        });
        let w = unlimited_tokens(&data);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("`BTC`") && w[0].contains("no per-transaction cap"));
        assert!(w[1].contains("`BTC`") && w[1].contains("no spending limit with max_amount"));
        assert!(w[2].contains("`SOL`") && w[2].contains("no spending limit with max_amount"));

        // A max_amount limit without token_ids covers every token.
        let mut all = data.clone();
        all["velocity"]["limits"][1]["max_amount"] = json!("5");
        all["keysign"]["max_amount_per_tx"]["BTC"] = json!("1");
        assert!(unlimited_tokens(&all).is_empty());
    }

    #[test]
    fn the_shipped_data_bounds_every_allowed_token() {
        let text = std::fs::read_to_string("rego/data.yaml").unwrap();
        let data: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(unlimited_tokens(&data), Vec::<String>::new());
    }
}
