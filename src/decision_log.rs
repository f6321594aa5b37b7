//! The decision log (audit trail): one versioned JSON line per decision,
//! written durably before the answer leaves the server. It owns the event
//! format (`docs/decision-log.md`), the writer thread, group commit and
//! size-based rotation; it never sees a token or a key.
//!
//! Durability without losing throughput: callers enqueue a line and wait; one
//! writer thread takes every queued line, writes them in one `write`, calls
//! `fsync` once, then releases every waiter of that batch. Under 64
//! concurrent requests one fsync covers many answers.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::{error, warn};

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

/// A line for the writer, with the waiter to release after its fsync.
type Queued = (Vec<u8>, Option<Ack>);

/// Handle to the decision log; cheap to share behind an `Arc`.
pub struct DecisionLog {
    /// The settings it was opened with (`fail_closed` is read by the server).
    opts: Options,
    /// Queue to the writer thread; `None` once closed, so late appends fail
    /// instead of waiting forever.
    tx: Mutex<Option<Sender<Queued>>>,
    /// Joined by `close` so shutdown returns only after the last fsync.
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionLog")
            .field("path", &self.opts.path)
            .finish()
    }
}

/// A line waiting for its fsync.
pub struct Pending(tokio::sync::oneshot::Receiver<bool>);

impl Pending {
    /// Blocks until the line is durably written (or failed). Not for async
    /// contexts: use [`Pending::done`] there.
    pub fn wait(self) -> Result<(), DecisionLogError> {
        Self::outcome(self.0.blocking_recv().ok())
    }

    /// Resolves once the line is durably written (or failed).
    pub async fn done(self) -> Result<(), DecisionLogError> {
        Self::outcome(self.0.await.ok())
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
        let handle = std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || writer_loop(rx, file, writer_opts))
            .map_err(DecisionLogError::Thread)?;
        Ok(Self {
            opts,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
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
        let (ack, rx) = tokio::sync::oneshot::channel();
        self.send(line, Some(ack))?;
        Ok(Pending(rx))
    }

    /// Queues one line without waiting for it (answers that never approve,
    /// produced on async workers that must not block).
    pub fn append_nowait(&self, line: Vec<u8>) -> Result<(), DecisionLogError> {
        self.send(line, None)
    }

    fn send(&self, line: Vec<u8>, ack: Option<Ack>) -> Result<(), DecisionLogError> {
        let guard = match self.tx.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match guard.as_ref() {
            Some(tx) => tx.send((line, ack)).map_err(|_| DecisionLogError::Closed),
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

fn writer_loop(rx: Receiver<Queued>, first: Segment, opts: Options) {
    let mut seg = Some(first);
    let mut buf = Vec::new();
    let mut acks = Vec::new();
    // Block for the first line, then take everything else already queued:
    // that is the batch one fsync covers.
    while let Ok((line, ack)) = rx.recv() {
        buf.extend_from_slice(&line);
        acks.extend(ack);
        while let Ok((line, ack)) = rx.try_recv() {
            buf.extend_from_slice(&line);
            acks.extend(ack);
        }
        let ok = write_batch(&mut seg, &buf, &opts);
        for a in acks.drain(..) {
            // A waiter that went away (request deadline) no longer cares.
            let _ = a.send(ok);
        }
        buf.clear();
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
