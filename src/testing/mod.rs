//! The policy authoring toolkit behind `tss-gate test` and `tss-gate eval`.
//!
//! As in OPA, running is separate from reporting:
//! - [`runner`] discovers and runs Rego `test_*` rules and fixture files and
//!   returns a [`RunReport`]; it prints nothing.
//! - [`report`] turns a [`RunReport`] into text (pretty, JSON, JUnit XML).
//! - [`coverage`] merges and summarises regorus line coverage.
//! - [`rules`] reads rule definitions (name, file:line, bodies) from the
//!   parsed modules; [`explain`] uses them to say which rules fired.
//! - The warnings of `check` and `test` ([`runner::warnings`]):
//!   [`portability`] (negations OPA decides differently), [`input_paths`]
//!   (input fields that do not exist), [`reach`] (`deny`/`allow` rules the
//!   decision never reaches), [`data_keys`] (data keys no policy reads,
//!   reads of keys the data lacks).
//!
//! Fixtures go through [`crate::decide::steps::decide_with`], the same code the
//! server runs, so a passing fixture means the server answers the same.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub mod coverage;
pub mod data_keys;
pub mod decisions;
pub mod explain;
pub mod input_paths;
pub mod portability;
pub mod reach;
pub mod report;
pub mod rules;
pub mod runner;
pub mod scratch;

/// What a test case is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A `test_*` rule in a `*_test.rego` file.
    Rego,
    /// A fixture file run through the decision pipeline.
    Fixture,
}

/// How a test case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    /// The test rule was not exactly `true`, or a fixture got another answer.
    Fail,
    /// Evaluation failed, or a fixture could not be loaded.
    Error,
    /// A `todo_test_*` rule.
    Skip,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Error => "ERROR",
            Outcome::Skip => "SKIPPED",
        }
    }
}

/// One test case's result.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub kind: Kind,
    /// `data.<package>.<rule>` for Rego tests, the file stem for fixtures.
    pub name: String,
    pub file: PathBuf,
    /// 1-based line of the rule, or of the fixture's `expect`.
    pub line: u32,
    pub outcome: Outcome,
    /// Why it failed or errored; empty on a pass.
    pub message: String,
    /// Output of `print()` during the test.
    pub prints: Vec<String>,
    #[serde(serialize_with = "as_millis")]
    pub duration: Duration,
}

impl CaseResult {
    pub fn location(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// Everything one `tss-gate test` run found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub cases: Vec<CaseResult>,
    /// Present when coverage was asked for.
    pub coverage: Option<coverage::Summary>,
    /// `--coverage-min`, when given.
    pub coverage_min: Option<f64>,
    /// Things that do not fail the run but may bite later, each
    /// `FILE:LINE: ...`: negations OPA decides differently, input paths
    /// that do not exist.
    pub warnings: Vec<String>,
}

impl RunReport {
    pub fn passed(&self) -> usize {
        self.count(|o| o == Outcome::Pass)
    }

    /// Failures and errors: both turn the run red.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Fail | Outcome::Error))
    }

    pub fn skipped(&self) -> usize {
        self.count(|o| o == Outcome::Skip)
    }

    fn count(&self, f: impl Fn(Outcome) -> bool) -> usize {
        self.cases.iter().filter(|c| f(c.outcome)).count()
    }

    /// Whether coverage is below `--coverage-min`.
    pub fn coverage_too_low(&self) -> bool {
        match (&self.coverage, self.coverage_min) {
            (Some(c), Some(min)) => c.percent() < min,
            (None, Some(_)) => true,
            _ => false,
        }
    }

    pub fn ok(&self) -> bool {
        self.failed() == 0 && !self.coverage_too_low()
    }

    /// The final line: `N passed, M failed` and `, K skipped` when any were.
    pub fn summary_line(&self) -> String {
        let mut s = format!("{} passed, {} failed", self.passed(), self.failed());
        if self.skipped() > 0 {
            s.push_str(&format!(", {} skipped", self.skipped()));
        }
        s
    }
}
