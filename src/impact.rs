//! Impact analysis (`tss-gate replay`): which recorded decisions a draft
//! policy set would decide differently. Owns reading the sources (decision
//! logs with their rotated files, recorded fixtures), evaluating each
//! recorded input document with the draft on every core, comparing with
//! what was decided, and the bounded summary the CLI renders.
//!
//! A decision-log line carries the input document exactly as the live
//! policy saw it (derived facts, spending-limit usage, decision time), so a
//! replay re-runs nothing but the policy: it is deterministic, and no
//! ledger, clock or key is consulted. Recorded fixtures hold only the
//! request and the answer, so their input is rebuilt with the draft's own
//! tables and without ledger history (usage reads zero); their codes were
//! not recorded, so only the action is compared.
//!
//! Memory stays flat whatever the size of the log: lines are streamed
//! through a bounded queue, and the summary keeps counts plus at most
//! [`IDS_PER_GROUP`] request ids per group and `show` examples.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use serde::Serialize;
use serde_json::Value;

use crate::policy::{Decision, PolicySet};

/// Request ids kept per group; the counts are exact beyond it.
pub const IDS_PER_GROUP: usize = 50;
/// Malformed-line locations kept for the report.
const MAX_PROBLEMS: usize = 20;
/// Work items in flight between the reader and the evaluators.
const QUEUE: usize = 1024;

/// The input schema versions this binary can replay (lines without the
/// field were written before it existed: version 1).
pub const KNOWN_INPUT_SCHEMA: u64 = crate::input::INPUT_SCHEMA_VERSION as u64;

/// The newest decision-log format this binary reads: v1 (no
/// `input_schema`) and v2 (`input_schema` with every input) lines alike.
pub const KNOWN_EVENT_VERSION: u64 = crate::decision_log::EVENT_VERSION as u64;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read `{path}`: {reason}")]
    Read { path: String, reason: String },
    #[error(
        "`{path}` holds no decision-log lines and no fixtures (a decision log is JSON lines with `request_id` and `status`; a fixture directory holds *.json fixtures)"
    )]
    Empty { path: String },
}

/// What was decided, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recorded {
    pub action: String,
    /// None: not recorded (fixtures), so not compared.
    pub codes: Option<Vec<String>>,
    pub reasons: Vec<String>,
    pub policy_revision: String,
}

/// What the draft decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drafted {
    /// `APPROVE`, `REJECT`, or `ERROR` (the draft failed to evaluate: the
    /// server would answer status 30).
    pub action: String,
    pub codes: Vec<String>,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// REJECT → APPROVE: the draft lets through what was refused.
    NewlyApproved,
    /// APPROVE → REJECT.
    NewlyRejected,
    /// The draft cannot evaluate this input (status 30 in production).
    DraftError,
    /// Same action, other rule codes.
    CodesChanged,
    /// Same action and codes, other reason texts.
    ReasonsChanged,
}

impl Change {
    pub fn label(self) -> &'static str {
        match self {
            Change::NewlyApproved => "REJECT → APPROVE",
            Change::NewlyRejected => "APPROVE → REJECT",
            Change::DraftError => "draft evaluation error",
            Change::CodesChanged => "same action, codes changed",
            Change::ReasonsChanged => "same action and codes, reasons changed",
        }
    }
}

/// One replayed decision that changed, as an example.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    #[serde(skip)]
    seq: u64,
    pub request_id: String,
    pub request_type: String,
    pub change: Change,
    pub source: String,
    pub recorded: Recorded,
    pub draft: Drafted,
}

/// A group of changes: one direction, request type and code.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Group {
    pub count: u64,
    /// The first [`IDS_PER_GROUP`] request ids, in log order.
    pub request_ids: Vec<String>,
    /// Where each kept id is in the sources: evaluation runs in parallel,
    /// so results arrive out of order and the earliest are kept.
    #[serde(skip)]
    seqs: Vec<u64>,
}

impl Group {
    fn add(&mut self, seq: u64, id: &str) {
        self.count += 1;
        if self.seqs.len() < IDS_PER_GROUP {
            let at = self.seqs.partition_point(|s| *s < seq);
            self.seqs.insert(at, seq);
            self.request_ids.insert(at, id.to_owned());
        } else if self.seqs.last().is_some_and(|last| seq < *last) {
            self.seqs.pop();
            self.request_ids.pop();
            let at = self.seqs.partition_point(|s| *s < seq);
            self.seqs.insert(at, seq);
            self.request_ids.insert(at, id.to_owned());
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Position in the sources: lines are classified in parallel, and the
    /// earliest problems are the ones kept.
    #[serde(skip)]
    seq: u64,
    pub source: String,
    pub line: u64,
    pub reason: String,
}

/// The whole result; every collection is bounded.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub replayed: u64,
    pub unchanged: u64,
    /// Change → count.
    pub changes: BTreeMap<Change, u64>,
    /// (change, request type, code) → group. For a newly rejected request
    /// the code is the draft's deny code; for a newly approved one, the
    /// recorded code that no longer denies; for changed codes, `+code` and
    /// `-code`.
    pub groups: BTreeMap<(Change, String, String), Group>,
    pub examples: Vec<Example>,
    /// Lines that are not decisions (`"event"` lines: ledger voids, task
    /// states, shadow disagreements, alarms).
    pub not_decisions: u64,
    /// Decisions answered with status ≠ 0 (token, request or internal
    /// errors): nothing was judged, so nothing to replay.
    pub errors: u64,
    /// Decisions logged with `decision_log.input: digest`: no input to replay.
    pub digest_only: u64,
    /// Lines of a newer format or input schema than this binary knows:
    /// counted and located, never guessed at.
    pub unknown_version: u64,
    /// A last line cut short (a crash mid-write), per source.
    pub truncated: u64,
    /// Lines that are not a decision-log line at all (not JSON, no `v`,
    /// a decision without its fields). Skipped, not fatal: the rest of the
    /// log is still a valid sample, and each one is located in `problems`.
    pub malformed: u64,
    /// Where the first [`MAX_PROBLEMS`] skipped lines are (`file:line`).
    pub problems: Vec<Problem>,
    pub draft_revision: String,
    pub sources: Vec<String>,
}

impl Summary {
    pub fn changed(&self) -> u64 {
        self.changes.values().sum()
    }

    pub fn newly_approved(&self) -> u64 {
        self.changes
            .get(&Change::NewlyApproved)
            .copied()
            .unwrap_or(0)
    }

    fn problem(&mut self, seq: u64, source: &str, line: u64, reason: String) {
        if self.problems.len() >= MAX_PROBLEMS {
            if self.problems.last().is_none_or(|p| p.seq < seq) {
                return;
            }
            self.problems.pop();
        }
        let at = self.problems.partition_point(|p| p.seq < seq);
        self.problems.insert(
            at,
            Problem {
                seq,
                source: source.to_owned(),
                line,
                reason,
            },
        );
    }
}

/// One source file, in replay order.
#[derive(Debug, Clone)]
pub enum Source {
    Log(PathBuf),
    Fixture(PathBuf),
}

/// The SOURCE that names standard input.
pub const STDIN: &str = "-";

/// Expands each SOURCE: `-` (standard input) or any path that is not a
/// directory (a file, or a pipe such as `<(zcat decisions.log.7.gz)`) is a
/// decision log; a directory is either a decision log with its rotated files
/// (`NAME`, `NAME.1` … oldest first) or a fixture directory.
pub fn expand(sources: &[PathBuf]) -> Result<Vec<Source>, ReplayError> {
    let mut out = Vec::new();
    for s in sources {
        if s.as_os_str() == STDIN {
            out.push(Source::Log(s.clone()));
            continue;
        }
        let read_err = |e: std::io::Error| ReplayError::Read {
            path: s.display().to_string(),
            reason: e.to_string(),
        };
        let meta = std::fs::metadata(s).map_err(read_err)?;
        if !meta.is_dir() {
            out.push(Source::Log(s.clone()));
            continue;
        }
        let mut logs: Vec<(String, u64, PathBuf)> = Vec::new();
        let mut fixtures = Vec::new();
        for entry in std::fs::read_dir(s).map_err(read_err)? {
            let p = entry.map_err(read_err)?.path();
            if !p.is_file() {
                continue;
            }
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.ends_with(".json") {
                fixtures.push(p);
            } else if let Some((base, n)) = rotated(&name) {
                logs.push((base, n, p));
            }
        }
        if !logs.is_empty() {
            // Oldest first: `.N` … `.1`, then the live file (0).
            logs.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            out.extend(logs.into_iter().map(|(_, _, p)| Source::Log(p)));
        } else if !fixtures.is_empty() {
            fixtures.sort();
            out.extend(fixtures.into_iter().map(Source::Fixture));
        } else {
            return Err(ReplayError::Empty {
                path: s.display().to_string(),
            });
        }
    }
    Ok(out)
}

/// `decisions.log` → (`decisions.log`, 0); `decisions.log.3` → (…, 3).
fn rotated(name: &str) -> Option<(String, u64)> {
    if let Some((base, n)) = name.rsplit_once('.')
        && let Ok(n) = n.parse::<u64>()
        && base.ends_with(".log")
    {
        return Some((base.to_owned(), n));
    }
    name.ends_with(".log").then(|| (name.to_owned(), 0))
}

/// One decision to evaluate.
struct Work {
    /// Position in the sources, for a report in log order.
    seq: u64,
    source: Arc<str>,
    request_id: String,
    request_type: String,
    recorded: Recorded,
    input: Input,
}

enum Input {
    /// The input document as the live policy saw it.
    Document(Value),
    /// A recorded fixture: its input is rebuilt with the draft's tables.
    Fixture(Box<crate::fixture::Fixture>),
}

/// What the reader hands the aggregator besides work. Line numbers are
/// 1-based within the source; 0 before the reader knows it.
enum Note {
    NotDecision,
    Error,
    DigestOnly,
    UnknownVersion(u64, String),
    Truncated(u64),
    Malformed(u64, String),
}

impl Note {
    /// The same note at line `n` of its source.
    fn at(self, n: u64) -> Note {
        match self {
            Note::UnknownVersion(_, r) => Note::UnknownVersion(n, r),
            Note::Truncated(_) => Note::Truncated(n),
            Note::Malformed(_, r) => Note::Malformed(n, r),
            other => other,
        }
    }
}

/// What the reader hands the evaluators: a raw line is parsed and
/// classified on the evaluator threads, so parsing uses every core too.
enum Job {
    Line {
        seq: u64,
        source: Arc<str>,
        /// 1-based line number in `source`.
        line: u64,
        bytes: Vec<u8>,
        /// Ended with `\n`: a last line without it was cut short.
        complete: bool,
    },
    Work(Work),
    Note(u64, Arc<str>, Note),
}

/// What the evaluators hand the aggregator.
enum Outcome {
    /// Boxed: a judged decision is far larger than a note.
    Judged(Box<(Work, Drafted)>),
    /// (position, source, why the line is not judged).
    Note(u64, Arc<str>, Note),
}

/// Progress callback: (bytes read, total bytes, decisions replayed).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64, u64);

/// Options of one replay.
pub struct Options {
    pub jobs: usize,
    /// Examples kept (`--show N`).
    pub show: usize,
}

/// Replays every source against `draft`. Streams: memory does not grow
/// with the number of lines. Standard input, and pipes, count 0 bytes to
/// the progress total (their size is unknown).
pub fn replay(
    sources: &[Source],
    draft: Arc<PolicySet>,
    opts: &Options,
    progress: Progress<'_>,
) -> Result<Summary, ReplayError> {
    let total: u64 = sources
        .iter()
        .map(|s| match s {
            Source::Log(p) | Source::Fixture(p) => {
                std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum();
    let (work_tx, work_rx) = sync_channel::<Job>(QUEUE);
    let (done_tx, done_rx) = sync_channel::<Outcome>(QUEUE);
    let work_rx = Arc::new(std::sync::Mutex::new(work_rx));
    let jobs = opts.jobs.max(1);
    let mut summary = Summary {
        draft_revision: draft.revision.clone(),
        sources: sources
            .iter()
            .map(|s| match s {
                Source::Log(p) | Source::Fixture(p) => p.display().to_string(),
            })
            .collect(),
        ..Summary::default()
    };
    let read = std::sync::atomic::AtomicU64::new(0);
    let result = std::thread::scope(|scope| -> Result<(), ReplayError> {
        for _ in 0..jobs {
            let rx = work_rx.clone();
            let tx = done_tx.clone();
            let draft = draft.clone();
            scope.spawn(move || evaluator(&draft, &rx, &tx));
        }
        drop(done_tx);
        let read = &read;
        let reader = scope.spawn(move || {
            Reader {
                work: work_tx,
                read,
                seq: 0,
            }
            .run(sources)
        });
        aggregate(&mut summary, done_rx, opts.show, &mut |n| {
            progress(read.load(std::sync::atomic::Ordering::Relaxed), total, n)
        });
        reader.join().unwrap_or_else(|_| {
            Err(ReplayError::Read {
                path: "(reader)".into(),
                reason: "the reader thread failed".into(),
            })
        })
    });
    result?;
    Ok(summary)
}

fn evaluator(draft: &PolicySet, rx: &std::sync::Mutex<Receiver<Job>>, tx: &SyncSender<Outcome>) {
    loop {
        let job = {
            let Ok(rx) = rx.lock() else { return };
            match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        let work = match job {
            Job::Work(w) => w,
            Job::Note(seq, src, note) => {
                if tx.send(Outcome::Note(seq, src, note)).is_err() {
                    return;
                }
                continue;
            }
            Job::Line {
                seq,
                source,
                line,
                bytes,
                complete,
            } => {
                let text = bytes.trim_ascii();
                let work = match serde_json::from_slice::<Value>(text) {
                    // A crash mid-write leaves the last line without its newline.
                    Err(_) if !complete => Err(Note::Truncated(line)),
                    Err(e) => Err(Note::Malformed(line, format!("not JSON: {e}"))),
                    Ok(v) => classify(v, &source).map_err(|note| note.at(line)),
                };
                match work {
                    Ok(mut w) => {
                        w.seq = seq;
                        w
                    }
                    Err(note) => {
                        if tx.send(Outcome::Note(seq, source, note)).is_err() {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        let decided = match &work.input {
            Input::Document(doc) => draft.evaluate(doc).map_err(|e| e.to_string()),
            Input::Fixture(f) => evaluate_fixture(draft, f),
        };
        let drafted = match decided {
            Ok(d) => drafted(&d),
            Err(e) => Drafted {
                action: "ERROR".into(),
                codes: Vec::new(),
                reasons: vec![crate::policy::one_line(&e)],
            },
        };
        if tx.send(Outcome::Judged(Box::new((work, drafted)))).is_err() {
            return;
        }
    }
}

fn evaluate_fixture(draft: &PolicySet, f: &crate::fixture::Fixture) -> Result<Decision, String> {
    let wire = f.wire_bytes();
    let parsed = crate::input::parse_request(&wire, crate::input::DEFAULT_MAX_DEPTH)
        .map_err(|e| e.to_string())?;
    let token = crate::input::TokenFacts {
        key_name: f.verified_by.clone().unwrap_or_else(|| "fixture".into()),
        iss: None,
        iat: None,
        exp: None,
    };
    let at = f.received_at_ms.unwrap_or_else(crate::clock::now_ms);
    let input = crate::decide::steps::input_without_ledger(draft, &parsed, &token, at);
    draft.evaluate(&input).map_err(|e| e.to_string())
}

fn drafted(d: &Decision) -> Drafted {
    let mut codes = d.codes.clone();
    codes.sort();
    codes.dedup();
    Drafted {
        action: if d.approves() { "APPROVE" } else { "REJECT" }.into(),
        codes,
        reasons: d.reasons.clone(),
    }
}

/// The reader thread: reads every source in order, sending decisions to
/// evaluate and notes about the rest.
struct Reader<'a> {
    work: SyncSender<Job>,
    /// Bytes read so far, for the progress bar.
    read: &'a std::sync::atomic::AtomicU64,
    /// Position of the next decision in the sources: results arrive out of
    /// order from the evaluators, and the report keeps log order.
    seq: u64,
}

impl Reader<'_> {
    fn run(mut self, sources: &[Source]) -> Result<(), ReplayError> {
        for s in sources {
            let more = match s {
                Source::Fixture(p) => self.fixture(p),
                Source::Log(p) if p.as_os_str() == STDIN => {
                    self.log("(stdin)".into(), std::io::stdin().lock())?
                }
                Source::Log(p) => {
                    let file = std::fs::File::open(p).map_err(|e| ReplayError::Read {
                        path: p.display().to_string(),
                        reason: e.to_string(),
                    })?;
                    self.log(p.display().to_string().into(), file)?
                }
            };
            if !more {
                break;
            }
        }
        Ok(())
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// False once the aggregator has gone.
    fn fixture(&mut self, p: &Path) -> bool {
        let name: Arc<str> = p.display().to_string().into();
        let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        self.read
            .fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        let f = match crate::fixture::load_fixture(p) {
            Ok(f) => f,
            Err(e) => {
                let seq = self.next_seq();
                return self
                    .work
                    .send(Job::Note(seq, name, Note::Malformed(0, e.to_string())))
                    .is_ok();
            }
        };
        // INVARIANT: a recorded fixture's `expect` is the answer it got
        // (src/record.rs), so an error answer was never judged.
        if f.expect.status != 0 {
            let seq = self.next_seq();
            return self.work.send(Job::Note(seq, name, Note::Error)).is_ok();
        }
        let recorded = Recorded {
            action: f.expect.action.as_str().to_owned(),
            codes: None,
            reasons: f.expect.reasons.clone(),
            policy_revision: String::new(),
        };
        let w = Work {
            seq: self.next_seq(),
            source: name,
            request_id: f.request.request_id.clone(),
            request_type: crate::protocol::RequestType::from_code(f.request.request_type)
                .name()
                .to_owned(),
            recorded,
            input: Input::Fixture(Box::new(f)),
        };
        self.work.send(Job::Work(w)).is_ok()
    }

    /// Streams one decision log; false once the aggregator has gone.
    fn log(&mut self, name: Arc<str>, from: impl std::io::Read) -> Result<bool, ReplayError> {
        let mut lines = BufReader::with_capacity(1 << 20, from);
        let mut n: u64 = 0;
        loop {
            // A fresh buffer per line: it moves to the evaluator with the job.
            let mut buf = Vec::new();
            let got = lines
                .read_until(b'\n', &mut buf)
                .map_err(|e| ReplayError::Read {
                    path: name.to_string(),
                    reason: e.to_string(),
                })?;
            if got == 0 {
                return Ok(true);
            }
            n += 1;
            self.read
                .fetch_add(got as u64, std::sync::atomic::Ordering::Relaxed);
            if buf.trim_ascii().is_empty() {
                continue;
            }
            let job = Job::Line {
                seq: self.next_seq(),
                source: name.clone(),
                line: n,
                complete: buf.last() == Some(&b'\n'),
                bytes: buf,
            };
            if self.work.send(job).is_err() {
                return Ok(false);
            }
        }
    }
}

/// A decision-log line as work, or why it is not replayed.
fn classify(mut v: Value, source: &Arc<str>) -> Result<Work, Note> {
    let Some(obj) = v.as_object_mut() else {
        return Err(Note::Malformed(0, "not a JSON object".into()));
    };
    if obj.contains_key("event") {
        return Err(Note::NotDecision);
    }
    let v = match obj.get("v").and_then(Value::as_u64) {
        Some(v @ 1..=KNOWN_EVENT_VERSION) => v,
        Some(v) => {
            return Err(Note::UnknownVersion(
                0,
                format!("format version `v` {v}: this tss-gate reads up to {KNOWN_EVENT_VERSION}"),
            ));
        }
        None => return Err(Note::Malformed(0, "no format version `v`".into())),
    };
    match obj.get("input_schema").map(Value::as_u64) {
        Some(Some(s)) if s > KNOWN_INPUT_SCHEMA => {
            return Err(Note::UnknownVersion(
                0,
                format!("`input_schema` {s}: this tss-gate reads up to {KNOWN_INPUT_SCHEMA}"),
            ));
        }
        Some(None) => {
            return Err(Note::Malformed(0, "`input_schema` is not a number".into()));
        }
        // v2 writes `input_schema` with every input: without it, what the
        // input means is a guess.
        None if v >= 2 && obj.contains_key("input") => {
            return Err(Note::Malformed(
                0,
                "a v2 input without `input_schema`".into(),
            ));
        }
        _ => {}
    }
    let status = obj.get("status").and_then(Value::as_i64);
    if status != Some(0) {
        return Err(Note::Error);
    }
    let Some(input) = obj.remove("input") else {
        return Err(if obj.contains_key("input_digest") {
            Note::DigestOnly
        } else {
            Note::Malformed(0, "a decision without `input`".into())
        });
    };
    let text = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let list = |k: &str| -> Vec<String> {
        obj.get(k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect()
    };
    let mut codes = list("codes");
    codes.sort();
    codes.dedup();
    let action = text("action");
    if action != "APPROVE" && action != "REJECT" {
        return Err(Note::Malformed(0, format!("action `{action}`")));
    }
    Ok(Work {
        seq: 0,
        source: source.clone(),
        request_id: text("request_id"),
        request_type: text("request_type"),
        recorded: Recorded {
            action,
            codes: Some(codes),
            reasons: list("reasons"),
            policy_revision: text("policy_revision"),
        },
        input: Input::Document(input),
    })
}

fn aggregate(s: &mut Summary, done: Receiver<Outcome>, show: usize, progress: &mut dyn FnMut(u64)) {
    loop {
        match done.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok(Outcome::Judged(judged)) => {
                let (w, d) = *judged;
                compare(s, w, d, show);
                if s.replayed.is_multiple_of(1024) {
                    progress(s.replayed);
                }
            }
            Ok(Outcome::Note(seq, src, note)) => note_into(s, seq, &src, note),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => progress(s.replayed),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    progress(s.replayed);
}

fn note_into(s: &mut Summary, seq: u64, src: &str, note: Note) {
    match note {
        Note::NotDecision => s.not_decisions += 1,
        Note::Error => s.errors += 1,
        Note::DigestOnly => s.digest_only += 1,
        Note::UnknownVersion(line, reason) => {
            s.unknown_version += 1;
            s.problem(seq, src, line, reason);
        }
        Note::Truncated(line) => {
            s.truncated += 1;
            s.problem(
                seq,
                src,
                line,
                "the last line is cut short (written during a crash?); skipped".into(),
            );
        }
        Note::Malformed(line, reason) => {
            s.malformed += 1;
            s.problem(seq, src, line, reason);
        }
    }
}

fn compare(s: &mut Summary, w: Work, d: Drafted, show: usize) {
    s.replayed += 1;
    let r = &w.recorded;
    let change = if d.action == "ERROR" {
        Some(Change::DraftError)
    } else if r.action != d.action {
        Some(if d.action == "APPROVE" {
            Change::NewlyApproved
        } else {
            Change::NewlyRejected
        })
    } else if r.codes.as_ref().is_some_and(|c| *c != d.codes) {
        Some(Change::CodesChanged)
    } else if r.codes.is_some() && r.reasons != d.reasons {
        Some(Change::ReasonsChanged)
    } else {
        None
    };
    let Some(change) = change else {
        s.unchanged += 1;
        return;
    };
    *s.changes.entry(change).or_default() += 1;
    let recorded_codes = r.codes.clone().unwrap_or_default();
    let codes: Vec<String> = match change {
        Change::NewlyApproved => recorded_codes,
        Change::NewlyRejected => d.codes.clone(),
        Change::CodesChanged => {
            let mut v: Vec<String> = d
                .codes
                .iter()
                .filter(|c| !recorded_codes.contains(c))
                .map(|c| format!("+{c}"))
                .collect();
            v.extend(
                recorded_codes
                    .iter()
                    .filter(|c| !d.codes.contains(c))
                    .map(|c| format!("-{c}")),
            );
            v
        }
        Change::DraftError | Change::ReasonsChanged => Vec::new(),
    };
    let codes = if codes.is_empty() {
        vec!["(no code)".to_owned()]
    } else {
        codes
    };
    for code in codes {
        s.groups
            .entry((change, w.request_type.clone(), code))
            .or_default()
            .add(w.seq, &w.request_id);
    }
    // Newly approved examples first: keep them over any other kind.
    let example = Example {
        seq: w.seq,
        request_id: w.request_id,
        request_type: w.request_type,
        change,
        source: w.source.to_string(),
        recorded: w.recorded,
        draft: d,
    };
    // Kept: the first `show` by (kind, log order), newly approved first.
    let key = |e: &Example| (e.change, e.seq);
    if s.examples.len() < show {
        s.examples.push(example);
    } else if s.examples.last().is_some_and(|l| key(&example) < key(l)) {
        s.examples.pop();
        s.examples.push(example);
    }
    s.examples.sort_by_key(key);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_files_are_read_oldest_first() {
        assert_eq!(rotated("decisions.log"), Some(("decisions.log".into(), 0)));
        assert_eq!(
            rotated("decisions.log.12"),
            Some(("decisions.log".into(), 12))
        );
        assert_eq!(rotated("notes.txt"), None);
        assert_eq!(rotated("a.json"), None);
    }

    #[test]
    fn lines_are_told_apart() {
        let src: Arc<str> = "x".into();
        let note = |v: Value| match classify(v, &src) {
            Ok(_) => "work",
            Err(Note::NotDecision) => "event",
            Err(Note::Error) => "error",
            Err(Note::DigestOnly) => "digest",
            Err(Note::UnknownVersion(..)) => "version",
            Err(Note::Truncated(_)) => "truncated",
            Err(Note::Malformed(..)) => "malformed",
        };
        let base = serde_json::json!({"v": 1, "request_id": "r", "request_type": "KEYSIGN",
            "action": "REJECT", "status": 0, "reasons": ["no"], "codes": ["a"], "input": {}});
        assert_eq!(note(base.clone()), "work");
        let mut e = base.clone();
        e["event"] = "ledger_void".into();
        assert_eq!(note(e), "event");
        let mut e = base.clone();
        e["status"] = 20.into();
        assert_eq!(note(e), "error");
        let mut e = base.clone();
        e.as_object_mut().unwrap().remove("input");
        e["input_digest"] = "sha256:00".into();
        assert_eq!(note(e), "digest");
        let mut e = base.clone();
        e["v"] = 9.into();
        assert_eq!(note(e), "version");
        let mut e = base.clone();
        e["v"] = 2.into();
        e["input_schema"] = 1.into();
        assert_eq!(note(e), "work", "v2 as the server writes it");
        let mut e = base.clone();
        e["v"] = 2.into();
        assert_eq!(note(e), "malformed", "v2 input without its schema");
        let mut e = base.clone();
        e["input_schema"] = "1".into();
        assert_eq!(note(e), "malformed");
        let mut e = base.clone();
        e["input_schema"] = (KNOWN_INPUT_SCHEMA + 1).into();
        assert_eq!(note(e), "version");
        let mut e = base;
        e["action"] = "MAYBE".into();
        assert_eq!(note(e), "malformed");
    }
}
