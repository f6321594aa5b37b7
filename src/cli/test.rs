//! `tss-gate test`: run the Rego `test_*` rules and the fixture files, as
//! `opa test` does for the former and as the server decides for the latter.
//! Exit 0 when everything passes, 2 when anything fails, 1 on a usage or
//! load error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::Exit;
use crate::config::{Config, Overrides, PolicySection};
use crate::policy::PolicyOptions;
use crate::testing::report::{self, Format};
use crate::testing::runner::{self, RunOptions};

/// Where fixtures are looked for when `--fixtures` is not given.
pub const DEFAULT_FIXTURES: &str = "tests/fixtures";

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Where to discover `*_test.rego` files. Without `--config` or
    /// `--policy-dir`, the first PATH is also the policy directory.
    /// Default: the policy directory (`rego`).
    pub paths: Vec<PathBuf>,
    /// Take the policy directory, entrypoint, data files and time limit
    /// from this config file, as `serve` would.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Policy directory; wins over the config's `policy.dir`.
    #[arg(long)]
    pub policy_dir: Option<PathBuf>,
    /// Fixture directory (default: with `--config`, its `policy.fixtures`
    /// as the reload gate runs them; else `tests/fixtures`, skipped if absent).
    #[arg(long)]
    pub fixtures: Option<PathBuf>,
    /// Only run tests and fixtures whose name matches this regex.
    #[arg(long = "run")]
    pub run: Option<String>,
    /// Show every case and its `print()` output, not only failures.
    #[arg(short, long)]
    pub verbose: bool,
    /// Report format: text for people, JSON or JUnit XML for CI.
    #[arg(long, value_enum, default_value = "pretty")]
    pub format: Format,
    /// Report per-file line coverage of the policies.
    #[arg(long)]
    pub coverage: bool,
    /// Fail the run when coverage is below PCT (implies --coverage).
    #[arg(long, value_name = "PCT")]
    pub coverage_min: Option<f64>,
    /// Time limit of one Rego test, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

pub fn run(a: TestArgs) -> Exit {
    super::init_cli_logging();
    let opts = match options(&a) {
        Ok(o) => o,
        Err(e) => {
            super::print_error(&e);
            return Exit::Error;
        }
    };
    let mut rep = match runner::run(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Error;
        }
    };
    rep.coverage_min = a.coverage_min;
    // On stderr whatever the format, as `check` prints them.
    for w in &rep.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", report::render(&rep, a.format, a.verbose));
    if a.format != Format::Pretty {
        // Machine formats own stdout; people still get the verdict.
        eprintln!("{}", rep.summary_line());
    }
    if rep.ok() { Exit::Ok } else { Exit::Failed }
}

fn options(a: &TestArgs) -> anyhow::Result<RunOptions> {
    if let Some(min) = a.coverage_min
        && !(0.0..=100.0).contains(&min)
    {
        anyhow::bail!("--coverage-min must be between 0 and 100, got `{min}`");
    }
    let first = a.paths.first().filter(|p| p.is_dir()).map(PathBuf::as_path);
    let mut policy = policy_options(a.config.as_deref(), a.policy_dir.as_deref(), first)?;
    let test_timeout = Duration::from_millis(a.timeout_ms.max(1));
    // The server's per-request limit is tuned for a release build on a
    // quiet machine; checking what a policy decides must not turn red
    // because a CI machine is busy. Speed is measured by the benchmarks.
    policy.eval_timeout = policy.eval_timeout.max(test_timeout);
    let test_paths = if a.paths.is_empty() {
        vec![policy.dir.clone()]
    } else {
        a.paths.clone()
    };
    let fixtures = match &a.fixtures {
        Some(f) => {
            if !f.is_dir() {
                anyhow::bail!("fixture directory `{}` does not exist", f.display());
            }
            Some(f.clone())
        }
        // With a config, the fixtures its reload gate runs (the operator's,
        // `policy.fixtures`), not the example organisation's: otherwise an
        // operator's data would be tested against the vendor's demo.
        None => match a.config.as_deref() {
            Some(c) => Config::load(c, &Overrides::default())?.policy.fixtures,
            None => Some(PathBuf::from(DEFAULT_FIXTURES)).filter(|d| d.is_dir()),
        },
    };
    let filter = a
        .run
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--run: {e}"))?;
    Ok(RunOptions {
        policy,
        test_paths,
        fixtures,
        filter,
        coverage: a.coverage || a.coverage_min.is_some(),
        test_timeout,
    })
}

/// Policy options for the offline tools: `--policy-dir` wins, then the
/// config file's `policy` section, then `fallback_dir`, then `rego`.
pub fn policy_options(
    config: Option<&Path>,
    policy_dir: Option<&Path>,
    fallback_dir: Option<&Path>,
) -> anyhow::Result<PolicyOptions> {
    if let Some(c) = config {
        let overrides = Overrides {
            policy_dir: policy_dir.map(Path::to_path_buf),
            ..Overrides::default()
        };
        return Ok(Config::load(c, &overrides)?.policy_options());
    }
    let defaults = PolicySection::default();
    let dir = policy_dir
        .or(fallback_dir)
        .map(Path::to_path_buf)
        .unwrap_or(defaults.dir);
    Ok(PolicyOptions {
        dir,
        entrypoint: defaults.entrypoint,
        data_files: defaults.data_files,
        eval_timeout: Duration::from_millis(defaults.eval_timeout_ms),
    })
}
