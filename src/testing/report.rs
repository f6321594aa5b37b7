//! Reporters for a [`RunReport`]: pretty text for people, JSON and JUnit XML
//! for CI systems. They only format; the runner decided everything.

use std::fmt::Write as _;

use super::coverage::{self, Summary};
use super::{CaseResult, Kind, Outcome, RunReport};

/// Output formats of `tss-gate test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Pretty,
    Json,
    Junit,
}

/// Renders `report` in `format`. Pretty output ends with the summary line.
pub fn render(report: &RunReport, format: Format, verbose: bool) -> String {
    match format {
        Format::Pretty => pretty(report, verbose),
        Format::Json => json(report),
        Format::Junit => junit(report),
    }
}

/// Failures (with their prints) always; every case with `verbose`; then
/// coverage when measured; then `N passed, M failed[, K skipped]`.
pub fn pretty(report: &RunReport, verbose: bool) -> String {
    let mut s = String::new();
    for kind in [Kind::Rego, Kind::Fixture] {
        let cases: Vec<&CaseResult> = report.cases.iter().filter(|c| c.kind == kind).collect();
        if cases.is_empty() {
            continue;
        }
        let title = match kind {
            Kind::Rego => "rego tests",
            Kind::Fixture => "fixtures",
        };
        let shown: Vec<&&CaseResult> = cases
            .iter()
            .filter(|c| verbose || c.outcome != Outcome::Pass)
            .collect();
        if shown.is_empty() {
            continue;
        }
        let _ = writeln!(s, "{title}:");
        for c in shown {
            let _ = writeln!(
                s,
                "{}: {} ({}) [{}]",
                c.name,
                c.outcome.label(),
                fmt_duration(c),
                c.location()
            );
            if !c.message.is_empty() {
                for line in c.message.lines() {
                    let _ = writeln!(s, "  {line}");
                }
            }
            let show_prints = verbose || matches!(c.outcome, Outcome::Fail | Outcome::Error);
            if show_prints && !c.prints.is_empty() {
                let _ = writeln!(s, "  prints:");
                for p in &c.prints {
                    let _ = writeln!(s, "    {p}");
                }
            }
        }
        let _ = writeln!(s, "{}", "-".repeat(72));
    }
    if let Some(cov) = &report.coverage {
        s.push_str(&coverage_text(cov));
    }
    if report.coverage_too_low() {
        let pct = report
            .coverage
            .as_ref()
            .map(Summary::percent)
            .unwrap_or(0.0);
        let _ = writeln!(
            s,
            "FAIL: coverage {pct:.1}% is below the minimum {:.1}%",
            report.coverage_min.unwrap_or(0.0)
        );
    }
    let _ = writeln!(s, "{}", report.summary_line());
    s
}

fn fmt_duration(c: &CaseResult) -> String {
    let us = c.duration.as_micros();
    if us >= 1000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{us}µs")
    }
}

/// Per-file coverage with the lines never evaluated, then the total.
pub fn coverage_text(cov: &Summary) -> String {
    let mut s = String::from("coverage:\n");
    for f in &cov.files {
        let _ = write!(
            s,
            "  {:6.1}%  {:>4}/{:<4} {}",
            f.percent(),
            f.covered.len(),
            f.total(),
            f.file
        );
        if !f.not_covered.is_empty() {
            let _ = write!(s, "  not covered: {}", coverage::ranges(&f.not_covered));
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "  {:6.1}%  {:>4}/{:<4} total",
        cov.percent(),
        cov.covered_lines,
        cov.total_lines
    );
    s
}

/// One JSON document: summary counts, every case, coverage when measured.
pub fn json(report: &RunReport) -> String {
    let doc = serde_json::json!({
        "summary": {
            "passed": report.passed(),
            "failed": report.failed(),
            "skipped": report.skipped(),
            "ok": report.ok(),
        },
        "cases": report.cases,
        "coverage": report.coverage,
        "coverage_min": report.coverage_min,
        "warnings": report.warnings,
    });
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into());
    out.push('\n');
    out
}

/// JUnit XML: one `<testsuite>` for Rego tests and one for fixtures.
pub fn junit(report: &RunReport) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let total_time: f64 = report.cases.iter().map(|c| c.duration.as_secs_f64()).sum();
    let _ = writeln!(
        s,
        "<testsuites name=\"tss-gate\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.6}\">",
        report.cases.len(),
        count(report, Kind::Rego, Outcome::Fail) + count(report, Kind::Fixture, Outcome::Fail),
        count(report, Kind::Rego, Outcome::Error) + count(report, Kind::Fixture, Outcome::Error),
        report.skipped(),
        total_time
    );
    for (kind, name) in [(Kind::Rego, "rego"), (Kind::Fixture, "fixtures")] {
        let cases: Vec<&CaseResult> = report.cases.iter().filter(|c| c.kind == kind).collect();
        let time: f64 = cases.iter().map(|c| c.duration.as_secs_f64()).sum();
        let _ = writeln!(
            s,
            "  <testsuite name=\"{name}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{time:.6}\">",
            cases.len(),
            count(report, kind, Outcome::Fail),
            count(report, kind, Outcome::Error),
            count(report, kind, Outcome::Skip),
        );
        for c in cases {
            let _ = write!(
                s,
                "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" line=\"{}\" time=\"{:.6}\"",
                xml(&c.name),
                xml(&classname(c)),
                xml(&c.file.display().to_string()),
                c.line,
                c.duration.as_secs_f64()
            );
            let body = match c.outcome {
                Outcome::Pass => String::new(),
                Outcome::Skip => "      <skipped/>\n".into(),
                Outcome::Fail | Outcome::Error => {
                    let tag = if c.outcome == Outcome::Fail {
                        "failure"
                    } else {
                        "error"
                    };
                    let first = c.message.lines().next().unwrap_or_default();
                    format!(
                        "      <{tag} message=\"{}\">{}</{tag}>\n",
                        xml(first),
                        xml(&c.message)
                    )
                }
            };
            let out = if c.prints.is_empty() {
                String::new()
            } else {
                format!(
                    "      <system-out>{}</system-out>\n",
                    xml(&c.prints.join("\n"))
                )
            };
            if body.is_empty() && out.is_empty() {
                s.push_str("/>\n");
            } else {
                let _ = write!(s, ">\n{body}{out}    </testcase>\n");
            }
        }
        s.push_str("  </testsuite>\n");
    }
    s.push_str("</testsuites>\n");
    s
}

fn classname(c: &CaseResult) -> String {
    match c.kind {
        // `data.tss.keysign_test.test_x` → `data.tss.keysign_test`
        Kind::Rego => c
            .name
            .rsplit_once('.')
            .map(|(pkg, _)| pkg.to_owned())
            .unwrap_or_default(),
        Kind::Fixture => "fixtures".into(),
    }
}

fn count(report: &RunReport, kind: Kind, outcome: Outcome) -> usize {
    report
        .cases
        .iter()
        .filter(|c| c.kind == kind && c.outcome == outcome)
        .count()
}

/// Escapes text for XML content and attributes. Characters XML 1.0 cannot
/// carry at all (most control characters) become U+FFFD rather than making
/// the whole report unparseable.
pub fn xml(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect();
    quick_xml::escape::escape(cleaned.as_str()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_markup_and_control_characters() {
        assert_eq!(
            xml("a<b>&\"c\"'\u{1}"),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;\u{FFFD}"
        );
    }
}
