//! `tss-gate replay`: recorded decisions judged by a draft policy set, and
//! the report of what it would decide differently (see [`crate::impact`]).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};
use serde_json::json;

use super::Exit;
use crate::impact::{self, Change, Summary};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Pretty,
    Json,
    Junit,
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Exit 3 only when the draft approves something that was rejected.
    NewApprovals,
    /// Exit 3 on any difference (action, codes, reasons, draft errors).
    AnyChange,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Decision logs (a file, or a directory with the log and its rotated
    /// files) or directories of recorded fixtures (`record_dir`).
    #[arg(required = true)]
    pub sources: Vec<PathBuf>,
    /// The draft policy directory to judge the recorded inputs with.
    #[arg(long)]
    pub policy_dir: PathBuf,
    /// Extra data files merged into the draft, as `policy.data_files`.
    #[arg(long = "data")]
    pub data: Vec<PathBuf>,
    /// The draft's decision rule.
    #[arg(long, default_value = crate::policy::DEFAULT_ENTRYPOINT)]
    pub entrypoint: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "pretty")]
    pub format: Format,
    /// Examples shown with both decisions side by side.
    #[arg(long, default_value_t = 5)]
    pub show: usize,
    /// What makes the exit code 3.
    #[arg(long, value_enum, default_value = "new-approvals")]
    pub fail_on: FailOn,
    /// Evaluation threads (default: every core).
    #[arg(long)]
    pub jobs: Option<usize>,
}

pub fn run(a: ReplayArgs) -> Exit {
    match replay(a) {
        Ok(e) => e,
        Err(e) => {
            super::print_error(&e);
            Exit::Error
        }
    }
}

fn replay(a: ReplayArgs) -> anyhow::Result<Exit> {
    let opts = crate::policy::PolicyOptions {
        dir: a.policy_dir.clone(),
        entrypoint: a.entrypoint.clone(),
        data_files: a.data.clone(),
        eval_timeout: std::time::Duration::from_secs(5),
    };
    crate::policy::install_time_limit(opts.eval_timeout);
    let draft = Arc::new(crate::policy::PolicySet::load(&opts)?);
    let sources = impact::expand(&a.sources)?;
    let jobs = a.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut last = Instant::now();
    let mut progress = |read: u64, total: u64, n: u64| {
        if !tty || last.elapsed().as_millis() < 250 {
            return;
        }
        last = Instant::now();
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let rate = n as f64 / secs;
        // A pipe has no size to estimate from: rate only.
        if total == 0 {
            eprint!("\r{n} decisions, {rate:.0}/s   ");
            return;
        }
        let share = read as f64 / total as f64;
        let eta = if share > 0.0 {
            secs / share - secs
        } else {
            0.0
        };
        eprint!(
            "\r{n} decisions, {rate:.0}/s, {:.0}% read, ETA {eta:.0}s   ",
            share * 100.0
        );
    };
    let s = impact::replay(
        &sources,
        draft,
        &impact::Options { jobs, show: a.show },
        &mut progress,
    )?;
    if tty {
        eprintln!();
    }
    let secs = started.elapsed().as_secs_f64();
    if s.replayed == 0 && s.digest_only > 0 {
        anyhow::bail!(
            "nothing to replay: the {} decisions in these logs were written with `decision_log.input: digest`, \
             which keeps only a digest of each input document. Set `decision_log.input: full` (the default) \
             so the log records the inputs a replay needs",
            s.digest_only
        );
    }
    if s.replayed == 0 {
        anyhow::bail!(
            "nothing to replay in {}: no policy decision with its input document",
            a.sources
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Pretty => pretty(&mut out, &s, secs)?,
        Format::Markdown => markdown(&mut out, &s)?,
        Format::Json => writeln!(out, "{}", to_json(&s))?,
        Format::Junit => junit(&mut out, &s, a.fail_on)?,
    }
    let fail = match a.fail_on {
        FailOn::NewApprovals => s.newly_approved() > 0,
        FailOn::AnyChange => s.changed() > 0,
    };
    Ok(if fail { Exit::Looser } else { Exit::Ok })
}

fn groups_of(s: &Summary, change: Change) -> Vec<(&String, &String, &impact::Group)> {
    s.groups
        .iter()
        .filter(|((c, _, _), _)| *c == change)
        .map(|((_, t, code), g)| (t, code, g))
        .collect()
}

const ORDER: [Change; 5] = [
    Change::NewlyApproved,
    Change::NewlyRejected,
    Change::DraftError,
    Change::CodesChanged,
    Change::ReasonsChanged,
];

fn count(s: &Summary, c: Change) -> u64 {
    s.changes.get(&c).copied().unwrap_or(0)
}

fn skipped_lines(s: &Summary) -> Vec<String> {
    let mut v = Vec::new();
    if s.errors > 0 {
        v.push(format!(
            "{} error answers (status ≠ 0: nothing was judged)",
            s.errors
        ));
    }
    if s.digest_only > 0 {
        v.push(format!(
            "{} decisions logged with `decision_log.input: digest` (no input to replay; set `input: full`)",
            s.digest_only
        ));
    }
    if s.unknown_version > 0 {
        v.push(format!(
            "{} lines of a newer log format or input schema (use a newer tss-gate)",
            s.unknown_version
        ));
    }
    if s.not_decisions > 0 {
        v.push(format!(
            "{} non-decision lines (ledger voids, task states, shadow disagreements, alarms)",
            s.not_decisions
        ));
    }
    if s.truncated > 0 {
        v.push(format!(
            "{} last line(s) cut short (a crash mid-write)",
            s.truncated
        ));
    }
    if s.malformed > 0 {
        v.push(format!("{} malformed lines", s.malformed));
    }
    v
}

fn pretty(out: &mut impl Write, s: &Summary, secs: f64) -> std::io::Result<()> {
    let na = s.newly_approved();
    if na > 0 {
        writeln!(
            out,
            "!!! {na} REQUEST(S) THE DRAFT WOULD APPROVE WERE REJECTED !!!"
        )?;
    }
    writeln!(
        out,
        "replayed {} decisions against draft {} in {secs:.1}s: {} unchanged, {} changed",
        s.replayed,
        short(&s.draft_revision),
        s.unchanged,
        s.changed()
    )?;
    for c in ORDER {
        let n = count(s, c);
        if n == 0 {
            continue;
        }
        writeln!(out, "\n{} ({n}):", c.label())?;
        for (t, code, g) in groups_of(s, c) {
            writeln!(out, "  {t} {code}: {}", g.count)?;
            writeln!(out, "    {}", ids(g))?;
        }
    }
    if !s.examples.is_empty() {
        writeln!(out, "\nexamples:")?;
        for e in &s.examples {
            writeln!(
                out,
                "  {} {} ({}, {})",
                e.request_id,
                e.request_type,
                e.change.label(),
                e.source
            )?;
            writeln!(
                out,
                "    recorded: {} {:?} {}",
                e.recorded.action,
                e.recorded.codes.clone().unwrap_or_default(),
                e.recorded.reasons.join("; ")
            )?;
            writeln!(
                out,
                "    draft:    {} {:?} {}",
                e.draft.action,
                e.draft.codes,
                e.draft.reasons.join("; ")
            )?;
        }
    }
    let skipped = skipped_lines(s);
    if !skipped.is_empty() {
        writeln!(out, "\nnot replayed:")?;
        for l in skipped {
            writeln!(out, "  {l}")?;
        }
    }
    for p in &s.problems {
        writeln!(out, "  {}:{}: {}", p.source, p.line, p.reason)?;
    }
    Ok(())
}

fn ids(g: &impact::Group) -> String {
    let more = g.count.saturating_sub(g.request_ids.len() as u64);
    if more > 0 {
        format!("{} … and {more} more", g.request_ids.join(" "))
    } else {
        g.request_ids.join(" ")
    }
}

fn short(rev: &str) -> &str {
    rev.get(..19).unwrap_or(rev)
}

fn markdown(out: &mut impl Write, s: &Summary) -> std::io::Result<()> {
    writeln!(
        out,
        "### Policy replay: draft `{}`\n",
        short(&s.draft_revision)
    )?;
    let na = s.newly_approved();
    if na > 0 {
        writeln!(
            out,
            "> [!CAUTION]\n> **{na} request(s) that were rejected would be APPROVED by this draft.**\n"
        )?;
    }
    writeln!(out, "| | decisions |\n|---|---:|")?;
    writeln!(out, "| replayed | {} |", s.replayed)?;
    writeln!(out, "| unchanged | {} |", s.unchanged)?;
    for c in ORDER {
        writeln!(out, "| {} | {} |", c.label(), count(s, c))?;
    }
    if s.changed() > 0 {
        writeln!(
            out,
            "\n| change | request type | code | count | request ids |\n|---|---|---|---:|---|"
        )?;
        for c in ORDER {
            for (t, code, g) in groups_of(s, c) {
                writeln!(
                    out,
                    "| {} | {t} | `{code}` | {} | {} |",
                    c.label(),
                    g.count,
                    ids(g).replace('|', "\\|")
                )?;
            }
        }
    }
    if !s.examples.is_empty() {
        writeln!(out, "\n<details><summary>Examples</summary>\n")?;
        for e in &s.examples {
            writeln!(
                out,
                "- `{}` {}: recorded **{}** {:?}, draft **{}** {:?}",
                e.request_id,
                e.change.label(),
                e.recorded.action,
                e.recorded.codes.clone().unwrap_or_default(),
                e.draft.action,
                e.draft.codes
            )?;
        }
        writeln!(out, "\n</details>")?;
    }
    let skipped = skipped_lines(s);
    if !skipped.is_empty() {
        writeln!(out, "\nNot replayed: {}.", skipped.join("; "))?;
    }
    Ok(())
}

fn to_json(s: &Summary) -> serde_json::Value {
    let groups: Vec<_> = s
        .groups
        .iter()
        .map(|((c, t, code), g)| {
            json!({"change": c, "request_type": t, "code": code, "count": g.count, "request_ids": g.request_ids})
        })
        .collect();
    let changes: serde_json::Map<String, serde_json::Value> = ORDER
        .iter()
        .map(|c| {
            (
                serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                json!(count(s, *c)),
            )
        })
        .collect();
    json!({
        "draft_revision": s.draft_revision,
        "sources": s.sources,
        "replayed": s.replayed,
        "unchanged": s.unchanged,
        "changes": changes,
        "groups": groups,
        "examples": s.examples,
        "not_replayed": {
            "errors": s.errors,
            "digest_only": s.digest_only,
            "unknown_version": s.unknown_version,
            "not_decisions": s.not_decisions,
            "truncated": s.truncated,
            "malformed": s.malformed,
        },
        "problems": s.problems,
    })
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn junit(out: &mut impl Write, s: &Summary, fail_on: FailOn) -> std::io::Result<()> {
    let cases: Vec<_> = s.groups.iter().collect();
    let failing = |c: Change| match fail_on {
        FailOn::NewApprovals => c == Change::NewlyApproved,
        FailOn::AnyChange => true,
    };
    let failures = cases.iter().filter(|((c, _, _), _)| failing(*c)).count();
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuite name="tss-gate replay" tests="{}" failures="{failures}">"#,
        cases.len() + 1
    )?;
    writeln!(
        out,
        r#"  <testcase classname="replay" name="{} decisions replayed, {} unchanged"/>"#,
        s.replayed, s.unchanged
    )?;
    for ((c, t, code), g) in cases {
        let name = xml(&format!("{} {t} {code}", c.label()));
        if failing(*c) {
            writeln!(out, r#"  <testcase classname="replay" name="{name}">"#)?;
            writeln!(
                out,
                r#"    <failure message="{} request(s)">{}</failure>"#,
                g.count,
                xml(&ids(g))
            )?;
            writeln!(out, "  </testcase>")?;
        } else {
            writeln!(
                out,
                r#"  <testcase classname="replay" name="{name}"><system-out>{} request(s): {}</system-out></testcase>"#,
                g.count,
                xml(&ids(g))
            )?;
        }
    }
    writeln!(out, "</testsuite>")
}
