//! Line coverage of the policy files (not the tests), merged from every
//! engine that evaluated something during a run: the test engine and the
//! fixture engine. A line counts as covered when any evaluation reached it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use regorus::Engine;
use serde::Serialize;

/// Coverage of one policy file.
#[derive(Debug, Clone, Serialize)]
pub struct FileCoverage {
    pub file: String,
    pub covered: BTreeSet<u32>,
    pub not_covered: BTreeSet<u32>,
}

impl FileCoverage {
    pub fn total(&self) -> usize {
        self.covered.len() + self.not_covered.len()
    }

    pub fn percent(&self) -> f64 {
        percent(self.covered.len(), self.total())
    }
}

/// Coverage of the whole policy set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub files: Vec<FileCoverage>,
    pub covered_lines: usize,
    pub total_lines: usize,
    pub coverage_percent: f64,
}

impl Summary {
    pub fn percent(&self) -> f64 {
        self.coverage_percent
    }
}

fn percent(covered: usize, total: usize) -> f64 {
    if total == 0 {
        100.0
    } else {
        covered as f64 * 100.0 / total as f64
    }
}

/// Merges coverage `reports` over `policy_files`. `universe` supplies the
/// coverable lines of files no report mentions (regorus only reports files
/// it evaluated something in).
pub fn merge(
    reports: &[regorus::coverage::Report],
    universe: &[regorus::coverage::Report],
    policy_files: &[String],
) -> Summary {
    let mut covered: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    let mut lines: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for r in reports {
        for f in &r.files {
            covered
                .entry(f.path.as_str())
                .or_default()
                .extend(f.covered.iter().copied());
            let l = lines.entry(f.path.as_str()).or_default();
            l.extend(f.covered.iter().copied());
            l.extend(f.not_covered.iter().copied());
        }
    }
    for r in universe {
        for f in &r.files {
            if !lines.contains_key(f.path.as_str()) {
                let l = lines.entry(f.path.as_str()).or_default();
                l.extend(f.covered.iter().copied());
                l.extend(f.not_covered.iter().copied());
            }
        }
    }
    let mut files = Vec::new();
    for path in policy_files {
        let all = match lines.get(path.as_str()) {
            Some(l) => l.clone(),
            None => textual_lines(Path::new(path)),
        };
        let cov: BTreeSet<u32> = covered
            .get(path.as_str())
            .map(|c| c.intersection(&all).copied().collect())
            .unwrap_or_default();
        let not_covered = all.difference(&cov).copied().collect();
        files.push(FileCoverage {
            file: path.clone(),
            covered: cov,
            not_covered,
        });
    }
    let covered_lines = files.iter().map(|f| f.covered.len()).sum();
    let total_lines = files.iter().map(FileCoverage::total).sum();
    Summary {
        files,
        covered_lines,
        total_lines,
        coverage_percent: percent(covered_lines, total_lines),
    }
}

/// Coverable lines of every module of `engine`, by evaluating all of its
/// rules once with coverage on (the values are thrown away).
pub fn universe(engine: &Engine, input: &serde_json::Value) -> Vec<regorus::coverage::Report> {
    let mut e = engine.clone();
    e.set_enable_coverage(true);
    e.set_input(crate::policy::input_value(input));
    // Errors only mean some rule could not be evaluated on this input; the
    // lines it did reach are still reported.
    let _ = e.eval_modules(false);
    e.get_coverage_report().into_iter().collect()
}

/// Last resort for a file no evaluation touched at all: every line that is
/// not blank, a comment, `package` or `import` counts as not covered.
fn textual_lines(path: &Path) -> BTreeSet<u32> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim();
            !(t.is_empty()
                || t.starts_with('#')
                || t.starts_with("package ")
                || t.starts_with("import "))
        })
        .map(|(i, _)| u32::try_from(i + 1).unwrap_or(u32::MAX))
        .collect()
}

/// `3, 7-9, 12`: compact line list for humans.
pub fn ranges(lines: &BTreeSet<u32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = lines.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        if start == end {
            out.push(start.to_string());
        } else {
            out.push(format!("{start}-{end}"));
        }
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_compact_runs() {
        let s: BTreeSet<u32> = [1, 2, 3, 5, 7, 8].into_iter().collect();
        assert_eq!(ranges(&s), "1-3, 5, 7-8");
        assert_eq!(ranges(&BTreeSet::new()), "");
    }

    #[test]
    fn merge_unions_reports_and_counts_untouched_files() {
        let mut e = Engine::new();
        e.set_rego_v0(false);
        e.add_policy(
            "a.rego".into(),
            "package a\n\nx if {\n\tinput.v == 1\n}\n\ny if {\n\tinput.v == 2\n}\n".into(),
        )
        .unwrap();
        let mut one = e.clone();
        one.set_enable_coverage(true);
        one.set_input(regorus::Value::from(serde_json::json!({"v": 1})));
        one.eval_rule("data.a.x".into()).unwrap();
        let r1 = one.get_coverage_report().unwrap();
        let s = merge(std::slice::from_ref(&r1), &[], &["a.rego".into()]);
        assert!(s.files[0].covered.contains(&4));
        assert!(s.files[0].not_covered.contains(&8));
        let mut two = e.clone();
        two.set_enable_coverage(true);
        two.set_input(regorus::Value::from(serde_json::json!({"v": 2})));
        two.eval_rule("data.a.y".into()).unwrap();
        let both = merge(
            &[r1, two.get_coverage_report().unwrap()],
            &[],
            &["a.rego".into()],
        );
        assert!(both.files[0].not_covered.is_empty(), "{both:?}");
        assert_eq!(both.coverage_percent, 100.0);
    }
}
