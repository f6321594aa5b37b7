//! The policy test gate: what a candidate policy set must pass before it
//! serves (its own `test_*` rules and the configured fixtures), shared by
//! `serve`, hot reload, `check` and the shadow set, so they never disagree.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::debug;

use crate::config::{Config, ConfigError};
use crate::policy::{PolicyError, PolicyOptions, PolicySet};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("keys: {0}")]
    Keys(String),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("{failed} of {total} policy tests and fixtures failed: {}", .failures.join("; "))]
    TestsFailed {
        failed: usize,
        total: usize,
        /// `file: rule: why`, one per failing test.
        failures: Vec<String>,
    },
    #[error(
        "`policy.require_passing_tests` is on but no `test_*` rule was found under `{0}` (write tests, or set it to false to serve an untested policy)"
    )]
    NoTests(PathBuf),
    #[error("`policy.fixtures` directory `{0}` does not exist")]
    NoFixtures(PathBuf),
}

/// What a candidate policy set must pass before it serves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestGate {
    /// Run the gate at all (`policy.require_passing_tests`).
    pub require: bool,
    /// Fixtures that must decide as they expect (`policy.fixtures`).
    pub fixtures: Option<PathBuf>,
}

/// Runs every `test_*` rule of the policy directory's `*_test.rego` files,
/// and the fixtures if given, with the same runner as `tss-gate test` (so a
/// reload gate and the CLI can never disagree); each must pass. Returns how
/// many ran.
pub fn run_policy_tests(
    opts: &PolicyOptions,
    fixtures: Option<&Path>,
) -> Result<usize, ReloadError> {
    if let Some(f) = fixtures
        && !f.is_dir()
    {
        return Err(ReloadError::NoFixtures(f.to_owned()));
    }
    let run = crate::testing::runner::RunOptions {
        policy: opts.clone(),
        test_paths: vec![opts.dir.clone()],
        fixtures: fixtures.map(Path::to_path_buf),
        filter: None,
        coverage: false,
        test_timeout: Duration::from_secs(5),
    };
    let report = crate::testing::runner::run(&run).map_err(|e| match e {
        crate::testing::runner::RunError::Policy(p) => ReloadError::Policy(p),
        other => ReloadError::Policy(PolicyError::Parse(other.to_string())),
    })?;
    if !report
        .cases
        .iter()
        .any(|c| c.kind == crate::testing::Kind::Rego)
    {
        return Err(ReloadError::NoTests(opts.dir.clone()));
    }
    let total = report.cases.len();
    let failures: Vec<String> = report
        .cases
        .iter()
        .filter(|c| {
            matches!(
                c.outcome,
                crate::testing::Outcome::Fail | crate::testing::Outcome::Error
            )
        })
        .map(|c| format!("{}: {}", c.name, c.message))
        .collect();
    if failures.is_empty() {
        Ok(report.passed())
    } else {
        Err(ReloadError::TestsFailed {
            failed: failures.len(),
            total,
            failures,
        })
    }
}

/// The warnings of a set the test gate refused (they often explain the
/// failing cases); none when the set itself does not load.
pub(crate) fn refused_set_warnings(opts: &PolicyOptions, e: &ReloadError) -> Vec<String> {
    match e {
        ReloadError::TestsFailed { .. } | ReloadError::NoTests(_) | ReloadError::NoFixtures(_) => {
            PolicySet::load(opts)
                .map(|set| crate::testing::runner::warnings(&set))
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// Loads and checks a candidate policy set; nothing is swapped here.
pub fn load_checked(opts: &PolicyOptions, gate: &TestGate) -> Result<PolicySet, ReloadError> {
    let set = PolicySet::load(opts)?;
    if gate.require {
        let n = run_policy_tests(opts, gate.fixtures.as_deref())?;
        debug!(tests = n, "candidate policy tests passed");
    }
    Ok(set)
}

/// What a policy set must pass before it serves.
pub fn test_gate(cfg: &Config) -> TestGate {
    TestGate {
        require: cfg.policy.require_passing_tests,
        fixtures: cfg.policy.fixtures.clone(),
    }
}

/// The shadow set's options and gate, when `policy.shadow_dir` is set.
/// Same entrypoint and time limit as the live set. Its own `test_*`
/// rules must pass under `require_passing_tests`, but not the live
/// fixtures: a shadow set exists to decide some of them differently.
pub fn shadow_options(cfg: &Config) -> Option<(PolicyOptions, TestGate)> {
    let dir = cfg.policy.shadow_dir.clone()?;
    let opts = PolicyOptions {
        dir,
        data_files: cfg.policy.shadow_data_files.clone(),
        ..cfg.policy_options()
    };
    let gate = TestGate {
        require: cfg.policy.require_passing_tests,
        fixtures: None,
    };
    Some((opts, gate))
}
