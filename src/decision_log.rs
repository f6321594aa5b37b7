//! The decision log (audit trail): one versioned JSON line per decision,
//! written durably before the answer leaves the server. It owns the event
//! format (`docs/decision-log.md`), the writer thread, group commit and
//! size-based rotation; it never sees a token or a key.
//!
//! Durability without losing throughput: callers enqueue a line and wait; one
//! writer thread takes every queued line, writes them in one `write`, calls
//! `fsync` once, then releases every waiter of that batch. Under 64
//! concurrent requests one fsync covers many answers.
//!
//! A caller whose answer waits for another durable effect anyway (a
//! spending-limit decision waits for the ledger's group commit) queues its
//! line with a time it must be durable by ([`DecisionLog::append_by`]).
//! While lines arrive fast, the writer holds such lines until the earliest
//! of those times, a line that must be written now, the group commit taking
//! its batch ([`DecisionLog::write_held`]) or a caller's
//! [`DecisionLog::hurry`], so one fsync covers a whole group commit's lines
//! instead of one or two. Slow traffic is never held.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::{error, warn};

use crate::pace::Arrivals;

/// Version of the event format; bump on any incompatible change.
/// v2: every line with `input` or `input_digest` carries `input_schema`, so
/// a reader (`tss-gate replay`) knows the shape of the input it reads
/// instead of guessing; v1 lines have none and mean input schema 1.
pub const EVENT_VERSION: u32 = 2;

/// What an event records of the input document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMode {
    /// The whole input document.
    Full,
    /// `sha256:` + hex SHA-256 of the canonical (sorted-key, compact) JSON.
    Digest,
}

impl InputMode {
    pub fn parse(s: &str) -> Result<Self, DecisionLogError> {
        match s {
            "full" => Ok(InputMode::Full),
            "digest" => Ok(InputMode::Digest),
            other => Err(DecisionLogError::InputMode(other.to_owned())),
        }
    }
}

/// Decision log settings (`decision_log.*` in the config).
#[derive(Debug, Clone)]
pub struct Options {
    pub path: PathBuf,
    pub input: InputMode,
    /// When a line cannot be written: refuse to answer status 0 (`true`).
    pub fail_closed: bool,
    /// Rotate when the live file would grow past this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` … `path.N`); older ones are deleted.
    pub retain: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DecisionLogError {
    #[error("cannot open decision log `{path}`: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("`{0}` is not a decision log input mode (`full` or `digest`)")]
    InputMode(String),
    #[error("cannot start the decision log writer: {0}")]
    Thread(std::io::Error),
    #[error("decision log write failed")]
    Write,
    #[error("decision log is closed")]
    Closed,
    #[error("cannot encode decision log event: {0}")]
    Encode(String),
}

/// One decision, as written. Field order is the line's field order.
#[derive(Debug, Clone, Serialize)]
pub struct Event<'a> {
    /// Event format version ([`EVENT_VERSION`]).
    pub v: u32,
    /// RFC 3339 UTC time the decision was made, millisecond precision.
    pub time: String,
    pub request_id: &'a str,
    /// Request type name (`KEYSIGN` …), `NONE` when the request was never parsed.
    pub request_type: &'a str,
    /// `APPROVE`, `REJECT`, or absent when no decision was made (status ≠ 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'a str>,
    pub status: i64,
    /// Policy reasons for a rejection, or the error for a failure.
    pub reasons: Vec<String>,
    /// Stable rule codes of the denying rules (empty on approval).
    pub codes: &'a [String],
    /// Bounded failure reason label (`bad_signature` …) when status ≠ 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<&'a str>,
    pub policy_revision: &'a str,
    /// Name of the configured TSS Node key that verified the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    /// Milliseconds from request arrival to the decision.
    pub latency_ms: f64,
    /// [`crate::input::INPUT_SCHEMA_VERSION`] of `input`/`input_digest`
    /// (absent on lines without either, and on lines written before it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<u32>,
    /// The input document (`decision_log.input: full`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<&'a Value>,
    /// `sha256:<hex>` of the canonical input (`decision_log.input: digest`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_digest: Option<String>,
}

/// What a queued line's writer reports back.
/// A tokio oneshot so the server can await durability without parking a
/// thread (the CPU workers go on with other requests meanwhile).
type Ack = tokio::sync::oneshot::Sender<bool>;

/// What the writer is sent.
enum Queued {
    /// A line, its number, the waiter to release after its fsync, and
    /// until when it may be held (None: write it with the next batch, now).
    Line {
        line: Vec<u8>,
        seq: u64,
        ack: Option<Ack>,
        hold: Option<Instant>,
    },
    /// Write what is held now ([`DecisionLog::hurry`]).
    Flush,
}

/// At most this many lines are held for one fsync.
const MAX_HELD: usize = 1024;

/// What the writer and the callers both read.
#[derive(Default)]
struct Shared {
    /// The number of the last line queued (assigned under the queue's lock,
    /// so numbers follow the queue's order).
    queued: AtomicU64,
    /// The number of the last line the writer has taken into a write:
    /// every line up to it is written, or being written.
    taken: AtomicU64,
    /// A [`Queued::Flush`] is on its way: another would add nothing.
    flush_asked: AtomicBool,
}

/// Handle to the decision log; cheap to share behind an `Arc`.
pub struct DecisionLog {
    /// The settings it was opened with (`fail_closed` is read by the server).
    opts: Options,
    /// Queue to the writer thread; `None` once closed, so late appends fail
    /// instead of waiting forever.
    tx: Mutex<Option<Sender<Queued>>>,
    /// Joined by `close` so shutdown returns only after the last fsync.
    writer: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionLog")
            .field("path", &self.opts.path)
            .finish()
    }
}

/// A line waiting for its fsync.
pub struct Pending {
    rx: tokio::sync::oneshot::Receiver<bool>,
    seq: u64,
}

impl Pending {
    /// Blocks until the line is durably written (or failed). Not for async
    /// contexts: use [`Pending::done`] there.
    pub fn wait(self) -> Result<(), DecisionLogError> {
        Self::outcome(self.rx.blocking_recv().ok())
    }

    /// Resolves once the line is durably written (or failed).
    pub async fn done(self) -> Result<(), DecisionLogError> {
        Self::outcome(self.rx.await.ok())
    }

    fn outcome(ack: Option<bool>) -> Result<(), DecisionLogError> {
        match ack {
            Some(true) => Ok(()),
            Some(false) => Err(DecisionLogError::Write),
            None => Err(DecisionLogError::Closed),
        }
    }
}

impl DecisionLog {
    /// Opens (creating) the log file and starts the writer thread. Fails when
    /// the file cannot be opened, so `serve` refuses to start without its
    /// audit trail.
    pub fn open(opts: Options) -> Result<Self, DecisionLogError> {
        let file = Segment::open(&opts.path)?;
        let (tx, rx) = mpsc::channel();
        let writer_opts = opts.clone();
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        let handle = std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || writer_loop(rx, file, writer_opts, sh))
            .map_err(DecisionLogError::Thread)?;
        Ok(Self {
            opts,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            shared,
        })
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Renders `event` as one line (with the configured input mode applied
    /// to `input`) without writing it.
    pub fn encode<'a>(&self, mut event: Event<'a>, input: Option<&'a Value>) -> Vec<u8> {
        match (self.opts.input, input) {
            (InputMode::Full, Some(i)) => event.input = Some(i),
            (InputMode::Digest, Some(i)) => event.input_digest = Some(digest(i)),
            (_, None) => {}
        }
        if input.is_some() {
            event.input_schema = Some(crate::input::INPUT_SCHEMA_VERSION);
        }
        encode_line(&event)
    }

    /// Queues one line; the returned [`Pending`] resolves after its fsync.
    pub fn append(&self, line: Vec<u8>) -> Result<Pending, DecisionLogError> {
        self.append_held(line, None)
    }

    /// Queues one line that need not be durable before `by`: its caller
    /// waits for something else until about then. While lines arrive fast
    /// the writer may hold it until `by` (or until [`Self::hurry`]) so that
    /// one fsync covers the lines queued meanwhile; otherwise it is written
    /// at once, like [`Self::append`].
    pub fn append_by(&self, line: Vec<u8>, by: Instant) -> Result<Pending, DecisionLogError> {
        self.append_held(line, Some(by))
    }

    fn append_held(
        &self,
        line: Vec<u8>,
        hold: Option<Instant>,
    ) -> Result<Pending, DecisionLogError> {
        let (ack, rx) = tokio::sync::oneshot::channel();
        let seq = self.send(line, Some(ack), hold)?;
        Ok(Pending { rx, seq })
    }

    /// Queues one line without waiting for it (answers that never approve,
    /// produced on async workers that must not block).
    pub fn append_nowait(&self, line: Vec<u8>) -> Result<(), DecisionLogError> {
        self.send(line, None, None).map(|_| ())
    }

    /// The caller of `pending` no longer waits for anything else: if its
    /// line is still held, have the writer write it now. A line already
    /// taken into a write is not asked for twice.
    pub fn hurry(&self, pending: &Pending) {
        if self.shared.taken.load(Ordering::Acquire) >= pending.seq {
            return;
        }
        self.write_held();
    }

    /// Has the writer write every line it holds now (the store's group
    /// commit took its batch: the lines held for it wait for nothing more).
    pub fn write_held(&self) {
        if self.shared.flush_asked.swap(true, Ordering::AcqRel) {
            return;
        }
        let guard = match self.tx.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(tx) = guard.as_ref() {
            let _ = tx.send(Queued::Flush);
        }
    }

    fn send(
        &self,
        line: Vec<u8>,
        ack: Option<Ack>,
        hold: Option<Instant>,
    ) -> Result<u64, DecisionLogError> {
        let guard = match self.tx.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match guard.as_ref() {
            Some(tx) => {
                let seq = self.shared.queued.fetch_add(1, Ordering::AcqRel) + 1;
                tx.send(Queued::Line {
                    line,
                    seq,
                    ack,
                    hold,
                })
                .map(|()| seq)
                .map_err(|_| DecisionLogError::Closed)
            }
            None => Err(DecisionLogError::Closed),
        }
    }

    /// Writes everything queued, fsyncs, and stops the writer. Called last on
    /// shutdown; later appends fail with [`DecisionLogError::Closed`].
    pub fn close(&self) {
        let tx = match self.tx.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        drop(tx);
        let handle = match self.writer.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for DecisionLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// One JSON line, newline-terminated. Serialising these plain types cannot
/// fail; if it ever did, a line that says so is still written.
fn encode_line(event: &Event<'_>) -> Vec<u8> {
    let mut line = serde_json::to_vec(event).unwrap_or_else(|e| {
        serde_json::to_vec(&serde_json::json!({
            "v": EVENT_VERSION,
            "request_id": event.request_id,
            "encode_error": e.to_string(),
        }))
        .unwrap_or_default()
    });
    line.push(b'\n');
    line
}

/// `sha256:<hex>` of the canonical JSON of `v`.
pub fn digest(v: &Value) -> String {
    let mut buf = Vec::new();
    canonical(v, &mut buf);
    format!("sha256:{}", hex::encode(Sha256::digest(&buf)))
}

/// Canonical JSON: compact, object keys sorted by their UTF-8 bytes, strings
/// and numbers as serde_json writes them. Independent of whether serde_json's
/// maps preserve insertion order in this build.
pub fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                if let Some(val) = m.get(k) {
                    canonical(val, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(x, out);
            }
            out.push(b']');
        }
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

/// The live file and its size.
struct Segment {
    file: File,
    /// Bytes in the file, for the rotation check without a `stat` per batch.
    size: u64,
}

impl Segment {
    fn open(path: &Path) -> Result<Self, DecisionLogError> {
        let open_err = |source| DecisionLogError::Open {
            path: path.display().to_string(),
            source,
        };
        crate::private_fs::create_parent(path).map_err(open_err)?;
        let file = crate::private_fs::open_append(path).map_err(open_err)?;
        let size = file.metadata().map_err(open_err)?.len();
        // Make the file's directory entry durable too, or a crash could lose
        // the whole (fsynced) file.
        sync_dir(path);
        Ok(Self { file, size })
    }
}

fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Appends one line written by another process (`tss-gate ledger void`)
/// to the live file: a single `O_APPEND` write, then fsync, so it lands
/// whole between the server's own lines.
pub fn append_external(path: &Path, line: &Value) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(line)?;
    bytes.push(b'\n');
    let mut f = crate::private_fs::open_append(path)?;
    f.write_all(&bytes)?;
    f.sync_all()
}

/// `path.N` for rotation generation `n`.
fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Shifts `path` → `path.1` → … → `path.retain`, dropping the oldest.
fn rotate(path: &Path, retain: usize) -> std::io::Result<()> {
    if retain == 0 {
        std::fs::remove_file(path)?;
    } else {
        let _ = std::fs::remove_file(rotated(path, retain));
        for n in (1..retain).rev() {
            let from = rotated(path, n);
            if from.exists() {
                std::fs::rename(&from, rotated(path, n + 1))?;
            }
        }
        std::fs::rename(path, rotated(path, 1))?;
    }
    sync_dir(path);
    Ok(())
}

/// The lines one fsync will cover.
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    acks: Vec<Ack>,
    lines: usize,
    last_seq: u64,
    /// Write without holding (a line that may not wait, or a flush).
    now: bool,
    /// The earliest time a held line must be durable by.
    until: Option<Instant>,
}

impl Batch {
    fn add(&mut self, q: Queued, pace: &mut Arrivals, shared: &Shared) {
        match q {
            Queued::Flush => {
                // Cleared as it is taken: a flush asked for from here on
                // is for lines this batch may not hold.
                shared.flush_asked.store(false, Ordering::Release);
                self.now = true;
            }
            Queued::Line {
                line,
                seq,
                ack,
                hold,
            } => {
                pace.arrived(Instant::now());
                self.buf.extend_from_slice(&line);
                self.acks.extend(ack);
                self.lines += 1;
                self.last_seq = self.last_seq.max(seq);
                match hold {
                    None => self.now = true,
                    Some(t) => self.until = Some(self.until.map_or(t, |u| u.min(t))),
                }
            }
        }
    }

    fn take_queued(&mut self, rx: &Receiver<Queued>, pace: &mut Arrivals, shared: &Shared) {
        while let Ok(q) = rx.try_recv() {
            self.add(q, pace, shared);
        }
    }
}

fn writer_loop(rx: Receiver<Queued>, first: Segment, opts: Options, shared: Arc<Shared>) {
    let mut seg = Some(first);
    // Lines are held only while they arrive fast, as the ledger waits.
    let mut pace = Arrivals::default();
    // Block for the first line, then take everything else already queued:
    // that is the batch one fsync covers, unless its lines may be held.
    while let Ok(q) = rx.recv() {
        let mut batch = Batch::default();
        batch.add(q, &mut pace, &shared);
        batch.take_queued(&rx, &mut pace, &shared);
        if pace.fast() {
            while !batch.now && batch.lines < MAX_HELD {
                let Some(until) = batch.until else { break };
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match rx.recv_timeout(left) {
                    Ok(q) => {
                        batch.add(q, &mut pace, &shared);
                        batch.take_queued(&rx, &mut pace, &shared);
                    }
                    // Closed: write what is held, then the outer loop ends.
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        if batch.lines == 0 {
            continue;
        }
        shared.taken.store(batch.last_seq, Ordering::Release);
        let ok = write_batch(&mut seg, &batch.buf, &opts);
        for a in batch.acks {
            // A waiter that went away (request deadline) no longer cares.
            let _ = a.send(ok);
        }
    }
}

/// Writes and fsyncs one batch, rotating first when it would overflow the
/// live file. On error the file is dropped and reopened on the next batch.
fn write_batch(seg: &mut Option<Segment>, buf: &[u8], opts: &Options) -> bool {
    if seg.is_none() {
        match Segment::open(&opts.path) {
            Ok(s) => *seg = Some(s),
            Err(e) => {
                error!("{e}");
                return false;
            }
        }
    }
    if let Some(s) = seg.as_ref()
        && s.size > 0
        && s.size + buf.len() as u64 > opts.max_bytes
    {
        *seg = None;
        if let Err(e) = rotate(&opts.path, opts.retain) {
            // Keep logging into the oversized file rather than lose lines.
            warn!(path = %opts.path.display(), "decision log rotation failed: {e}");
        }
        match Segment::open(&opts.path) {
            Ok(s) => *seg = Some(s),
            Err(e) => {
                error!("{e}");
                return false;
            }
        }
    }
    let Some(s) = seg.as_mut() else {
        return false;
    };
    let result = s.file.write_all(buf).and_then(|()| s.file.sync_data());
    match result {
        Ok(()) => {
            s.size += buf.len() as u64;
            true
        }
        Err(e) => {
            error!(path = %opts.path.display(), "decision log write failed: {e}");
            *seg = None;
            false
        }
    }
}

/// RFC 3339 UTC with milliseconds.
pub fn timestamp(unix_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn opts(dir: &Path, max_bytes: u64, retain: usize) -> Options {
        Options {
            path: dir.join("decisions.log"),
            input: InputMode::Digest,
            fail_closed: true,
            max_bytes,
            retain,
        }
    }

    fn event<'a>(id: &'a str, codes: &'a [String]) -> Event<'a> {
        Event {
            v: EVENT_VERSION,
            time: timestamp(0),
            request_id: id,
            request_type: "PING",
            action: Some("APPROVE"),
            status: 0,
            reasons: Vec::new(),
            codes,
            failure: None,
            policy_revision: "abc",
            key: Some("node-a"),
            latency_ms: 1.5,
            input_schema: None,
            input: None,
            input_digest: None,
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = json!({"b": [ {"z": 1, "a": "x"} ], "a": null, "é": 1.5});
        let mut out = Vec::new();
        canonical(&v, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":null,"b":[{"a":"x","z":1}],"é":1.5}"#
        );
        // Same document, other insertion order: same digest.
        let w = json!({"é": 1.5, "a": null, "b": [ {"a": "x", "z": 1} ]});
        assert_eq!(digest(&v), digest(&w));
        assert!(digest(&v).starts_with("sha256:"));
        assert_eq!(digest(&v).len(), 7 + 64);
    }

    /// Lines queued back to back, so the writer sees fast traffic.
    fn fast_traffic(log: &DecisionLog) {
        let pending: Vec<_> = (0..20)
            .map(|i| {
                log.append(format!("{{\"warm\":{i}}}\n").into_bytes())
                    .unwrap()
            })
            .collect();
        for p in pending {
            p.wait().unwrap();
        }
    }

    fn logged(dir: &Path, marker: &str) -> usize {
        std::fs::read_to_string(dir.join("decisions.log"))
            .unwrap()
            .lines()
            .filter(|l| l.contains(marker))
            .count()
    }

    fn held(log: &DecisionLog, n: usize, marker: &str) -> Vec<Pending> {
        let by = Instant::now() + Duration::from_secs(120);
        (0..n)
            .map(|i| {
                log.append_by(format!("{{\"{marker}\":{i}}}\n").into_bytes(), by)
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn under_fast_traffic_lines_that_may_wait_are_held_until_hurried() {
        let dir = tempfile::tempdir().unwrap();
        let log = DecisionLog::open(opts(dir.path(), 1 << 20, 2)).unwrap();
        fast_traffic(&log);
        let pending = held(&log, 5, "held");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(logged(dir.path(), "held"), 0, "written before its time");
        // Hurrying the last line writes every line held with it.
        log.hurry(&pending[4]);
        log.hurry(&pending[4]);
        for p in pending {
            p.wait().unwrap();
        }
        assert_eq!(logged(dir.path(), "held"), 5);
        // The log goes on after a hurry, its lines in order.
        log.append(b"{\"after\":1}\n".to_vec())
            .unwrap()
            .wait()
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join("decisions.log")).unwrap();
        let order: Vec<&str> = text.lines().skip(20).collect();
        assert_eq!(order.len(), 6);
        assert!(order[..5].iter().all(|l| l.contains("held")));
        assert!(order[5].contains("after"));
    }

    #[test]
    fn a_line_that_may_not_wait_takes_the_held_ones_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = DecisionLog::open(opts(dir.path(), 1 << 20, 2)).unwrap();
        fast_traffic(&log);
        let pending = held(&log, 3, "held");
        log.append(b"{\"now\":1}\n".to_vec())
            .unwrap()
            .wait()
            .unwrap();
        for p in pending {
            p.wait().unwrap();
        }
        assert_eq!(logged(dir.path(), "held"), 3);
        assert_eq!(logged(dir.path(), "now"), 1);
    }

    #[test]
    fn slow_traffic_is_never_held() {
        let dir = tempfile::tempdir().unwrap();
        let log = DecisionLog::open(opts(dir.path(), 1 << 20, 2)).unwrap();
        let started = Instant::now();
        for p in held(&log, 1, "first") {
            p.wait().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "a lone line waited for its deadline"
        );
        assert_eq!(logged(dir.path(), "first"), 1);
    }

    #[test]
    fn close_writes_held_lines_without_waiting_for_their_time() {
        let dir = tempfile::tempdir().unwrap();
        let log = DecisionLog::open(opts(dir.path(), 1 << 20, 2)).unwrap();
        fast_traffic(&log);
        let pending = held(&log, 4, "held");
        let started = Instant::now();
        log.close();
        assert!(started.elapsed() < Duration::from_secs(60));
        for p in pending {
            p.wait().unwrap();
        }
        assert_eq!(logged(dir.path(), "held"), 4);
    }

    #[test]
    fn lines_are_written_and_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let log = DecisionLog::open(opts(dir.path(), 1 << 20, 2)).unwrap();
        let input = json!({"request_id": "r1"});
        let codes = vec!["a.b".to_owned()];
        let pending: Vec<_> = (0..10)
            .map(|i| {
                let id = format!("r{i}");
                let line = log.encode(event(&id, &codes), Some(&input));
                log.append(line).unwrap()
            })
            .collect();
        for p in pending {
            p.wait().unwrap();
        }
        let text = std::fs::read_to_string(dir.path().join("decisions.log")).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 10);
        assert_eq!(lines[3]["request_id"], "r3");
        assert_eq!(lines[3]["v"], 2);
        assert_eq!(lines[3]["input_schema"], crate::input::INPUT_SCHEMA_VERSION);
        assert_eq!(lines[3]["codes"], json!(["a.b"]));
        assert_eq!(lines[3]["input_digest"], json!(digest(&input)));
        assert!(lines[3].get("input").is_none());
        assert_eq!(lines[3]["time"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn rotation_keeps_retain_files_and_never_splits_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = DecisionLog::open(opts(dir.path(), 4096, 2)).unwrap();
        let codes = Vec::new();
        for i in 0..200 {
            let id = format!("req-{i:04}");
            log.append(log.encode(event(&id, &codes), None))
                .unwrap()
                .wait()
                .unwrap();
        }
        log.close();
        let p = dir.path().join("decisions.log");
        let mut ids = Vec::new();
        for f in [rotated(&p, 2), rotated(&p, 1), p.clone()] {
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(text.len() as u64 <= 4096, "{} too big", f.display());
            for l in text.lines() {
                let v: Value = serde_json::from_str(l).unwrap();
                ids.push(v["request_id"].as_str().unwrap().to_owned());
            }
        }
        assert!(!rotated(&p, 3).exists(), "only `retain` rotated files");
        // The newest lines survive, in order, ending with the last one.
        assert_eq!(ids.last().map(String::as_str), Some("req-0199"));
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(ids.len() < 200, "older lines were rotated away");
    }

    #[test]
    fn closed_log_refuses_appends() {
        let dir = tempfile::tempdir().unwrap();
        let log = DecisionLog::open(opts(dir.path(), 1 << 20, 1)).unwrap();
        log.close();
        assert!(matches!(
            log.append(b"x\n".to_vec()),
            Err(DecisionLogError::Closed)
        ));
    }

    #[test]
    fn unwritable_path_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let o = Options {
            path: blocker.join("decisions.log"),
            ..opts(dir.path(), 4096, 1)
        };
        assert!(matches!(
            DecisionLog::open(o),
            Err(DecisionLogError::Open { .. })
        ));
    }
}
