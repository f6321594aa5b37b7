//! The embedded store: one SQLite file (WAL, `synchronous=FULL`) that one
//! server process owns (an exclusive lock beside it refuses a second).
//!
//! Exact totals without scanning: each ledger row carries its group's
//! running total (`cum_amount`, `cum_count`) up to and including itself, so
//! a window's usage is `head - (first_in_window - its own amount)`: two
//! point lookups on the primary key (limit, group, time, seq) whatever the
//! number of rows. Time order is seq order within a group (the writer never
//! lets a row's time go back), so one key serves both lookups. Voided rows are
//! subtracted (a partial index keeps that lookup small). Amounts are
//! integers of 10^-18 units in TEXT, summed in Rust, never by SQLite's
//! floating `total()`.
//!
//! Exact under concurrency without serialising evaluation: under the
//! request's group locks the store reads the usage and, when the request
//! fits, holds its rows in memory (`pending`); the locks are released
//! before the policy is evaluated. Every later reader counts held rows, so
//! no two requests can take the same room. An approval keeps its hold, a
//! rejection releases it (a request rejected for another reason may have
//! made a concurrent one look over the limit for a moment: that errs
//! towards rejecting, never towards approving).
//!
//! Usage without reading SQLite: the writer publishes each group's head
//! (its last committed row) as it removes the batch's held rows, and the
//! first row inside a group's window is remembered once read ([`Tail`]):
//! rows are only appended, so it stays the first until the window's start
//! passes it. A busy group is then decided from memory alone; SQLite is
//! read when a head or a window start is not known, and for voided rows
//! once the store has had a void.
//!
//! Durability without an fsync per request: one writer thread commits the
//! held rows in batches, numbering each batch in the `meta` table inside its
//! transaction; an answer leaves only after its batch committed. Under load
//! (fast traffic and other requests still being decided) the writer waits a few
//! milliseconds for a batch to fill (`state.sqlite.group_commit_ms`). A reader
//! takes its SQLite snapshot and its copy of the held rows at one instant
//! (under the pending lock), and counts a held row only if its batch is not
//! in the snapshot, so no row is counted twice or missed. Running totals
//! (`cum_*`) are assigned by the writer at commit, so a released hold never
//! leaves a trace in them. A failed commit drops its rows and its answer
//! becomes status 30.
//!
//! # Layout
//! - here: the store, its in-memory holds and locks, and its part of the
//!   shared protocol ([`crate::store::protocol`]).
//! - [`schema`]: the file's tables, pragmas and migration.
//! - [`usage`]: a group's usage from running totals, memory or SQLite; peaks.
//! - [`writer`]: the writer thread and its group commit.
//! - [`records`]: approvals, task states, events, control switches.
//! - [`inspect`]: the operator's reads and voids, and [`Beside`].

mod inspect;
mod records;
mod schema;
#[cfg(test)]
mod tests;
mod usage;
mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension};

use super::protocol::{self, Decider, Fate, Found, Read, Request};
use super::{
    Approval, ApprovalRecord, Cause, CommitHook, GroupUsage, LedgerEntry, LoadHint, Pending, Prior,
    QueryPlans, Store, StoreError, StoredEvent,
};
use crate::velocity::{Amount, Row, Usage};
use usage::{Head, Tail};
use writer::{Job, JobRow, writer_loop};

pub use super::RETENTION_MS;
pub use super::schema::SCHEMA_VERSION;
pub use inspect::{Beside, entries, plans, report, void};
pub use records::{approval_of, approvals_since, control_of, set_control_on};
pub use schema::{connect, migrate};
pub use usage::{Q_FIRST, Q_FIRST_GROUP, Q_HEAD, Q_NEXT_GROUP, Q_VOIDED, peaks_on};

pub const Q_RECORD: &str = "SELECT digest, answer FROM decisions WHERE request_id = ?1";

/// A row held in memory until its batch commits.
#[derive(Debug, Clone)]
struct Held {
    id: u64,
    at_ms: i64,
    amount: Amount,
    /// The batch the writer put it in ([`UNBATCHED`] until then).
    batch: u64,
}

const UNBATCHED: u64 = u64::MAX;

#[derive(Default)]
struct PendingState {
    /// Rows held but not yet committed, per `limit\0group_key`.
    rows: HashMap<String, Vec<Held>>,
    /// Answers decided but not yet committed: id → (digest hex, answer).
    records: HashMap<String, (String, String)>,
    /// Each group's last committed row, as the writer applied it together
    /// with removing that batch's rows from `rows`: a reader that takes
    /// both under this lock sees one consistent state without asking
    /// SQLite for the head. Absent: read it from SQLite.
    heads: HashMap<String, Head>,
    /// Each group's first row inside its window, as last read from SQLite.
    tails: HashMap<String, Tail>,
}

struct Shared {
    reader: Mutex<Connection>,
    /// Events and task-state changes: written outside the writer thread
    /// (each durable on its own commit; SQLite serialises the writers).
    events: Mutex<Connection>,
    pending: Mutex<PendingState>,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    clock: AtomicI64,
    next_id: AtomicU64,
    /// The server's requests still being decided, for the group commit.
    load: std::sync::OnceLock<super::LoadHint>,
    /// Run as each batch is taken ([`Store::set_commit_hook`]).
    on_commit: std::sync::OnceLock<super::CommitHook>,
}

pub struct SqliteStore {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
    /// The group commit's longest wait ([`Store::batch_window`]).
    group_commit: Duration,
    _lock: File,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its map consistent after each single
    // insert or remove, so a panic elsewhere does not make it unusable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A SQLite error as a store error, by cause.
pub(crate) fn sql(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    let text = e.to_string();
    StoreError::Failed(match (e.sqlite_error_code(), &e) {
        (Some(DatabaseBusy | DatabaseLocked), _) => Cause::Busy(text),
        (Some(DatabaseCorrupt | NotADatabase), _) => Cause::Damaged(text),
        (
            _,
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..),
        ) => Cause::Corrupt(text),
        _ => Cause::Database(text),
    })
}

fn open_err(path: &Path, cause: Cause) -> StoreError {
    StoreError::Open {
        path: path.display().to_string(),
        cause,
    }
}

fn slot(limit: &str, key: &str) -> String {
    format!("{limit}\0{key}")
}

/// The group locks of a decision: every group it reads or holds a row in,
/// sorted (see [`SqliteStore::with_locks`]).
fn slots(req: &Request<'_>) -> Vec<String> {
    let mut names: Vec<String> = req.groups.iter().map(|g| slot(&g.limit, &g.key)).collect();
    names.extend(req.hold.iter().map(|(r, _)| slot(&r.limit, &r.group_key)));
    names.sort();
    names.dedup();
    names
}

impl SqliteStore {
    /// Opens (creating on first start) the store at `path` and starts its
    /// writer. Fails if another process holds it, or it is damaged, or
    /// its schema is newer than this binary's.
    /// Opens (creating) the store; each commit goes as soon as the writer
    /// is free (tools, tests, scratch ledgers: callers that wait for each
    /// commit before the next would only be slowed by a group commit).
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_with(path, Duration::ZERO)
    }

    /// Opens (creating) the store with a group commit: while approvals
    /// arrive faster than one per 2.5 ms and other requests are still being decided
    /// ([`Store::set_load_hint`]), the writer waits up to `group_commit`
    /// after the first of a batch for more, so one fsync makes many
    /// durable (on a VM's disk a commit costs a good share of what
    /// deciding a request does; BENCHMARKS.md, "Spending limits"). Slower
    /// traffic, and a caller that waits for each commit, never wait.
    pub fn open_with(path: &Path, group_commit: Duration) -> Result<SqliteStore, StoreError> {
        schema::create_private(path)?;
        let lock_path = path.with_extension("lock");
        let lock_file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&lock_path)
        }
        .map_err(|e| open_err(&lock_path, Cause::File(e.to_string())))?;
        lock_file
            .try_lock()
            .map_err(|_| open_err(path, Cause::InUse))?;
        let mut writer = connect(path, true)?;
        migrate(&mut writer, path)?;
        let reader = connect(path, false)?;
        let events = connect(path, false)?;
        let shared = Arc::new(Shared {
            reader: Mutex::new(reader),
            events: Mutex::new(events),
            pending: Mutex::new(PendingState::default()),
            locks: Mutex::new(HashMap::new()),
            clock: AtomicI64::new(0),
            next_id: AtomicU64::new(1),
            load: std::sync::OnceLock::new(),
            on_commit: std::sync::OnceLock::new(),
        });
        let (tx, rx) = mpsc::channel::<Job>();
        let sh = shared.clone();
        let handle = std::thread::Builder::new()
            .name("tss-store".into())
            .spawn(move || writer_loop(writer, rx, sh, group_commit))
            .map_err(|e| open_err(path, Cause::File(e.to_string())))?;
        Ok(SqliteStore {
            shared,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            path: path.to_owned(),
            group_commit,
            _lock: lock_file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn now(&self, fixed: Option<i64>) -> i64 {
        // Never earlier than a time already handed out, so rows of one
        // group are appended in time order even if the wall clock steps back.
        let t = fixed.unwrap_or_else(super::now_ms);
        let prev = self.shared.clock.fetch_max(t, Ordering::SeqCst);
        if fixed.is_some() { t } else { prev.max(t) }
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        let tx = lock(&self.tx);
        match tx.as_ref() {
            Some(tx) => tx.send(job).map_err(|_| Cause::WriterGone.into()),
            None => Err(Cause::Closed.into()),
        }
    }
}

impl SqliteStore {
    /// Runs `f` holding the named locks, taken in the (sorted) order given,
    /// so no two threads ever wait on each other in a cycle.
    fn with_locks<T>(&self, names: &[String], f: impl FnOnce() -> T) -> T {
        let mutexes: Vec<Arc<Mutex<()>>> = {
            let mut map = lock(&self.shared.locks);
            names
                .iter()
                .map(|n| map.entry(n.clone()).or_default().clone())
                .collect()
        };
        let out = {
            let _guards: Vec<MutexGuard<()>> = mutexes.iter().map(|m| lock(m)).collect();
            f()
        };
        drop(mutexes);
        let mut map = lock(&self.shared.locks);
        for n in names {
            if map.get(n).is_some_and(|m| Arc::strong_count(m) == 1) {
                map.remove(n);
            }
        }
        out
    }

    /// The retry record of `request_id` (digest hex, answer): held, then
    /// committed, read through `conn` (the reader, or a read transaction
    /// on it). Held first: the writer drops a held record only once it is
    /// committed.
    fn record_on(
        &self,
        conn: &Connection,
        request_id: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        if let Some(r) = lock(&self.shared.pending).records.get(request_id).cloned() {
            return Ok(Some(r));
        }
        conn.prepare_cached(Q_RECORD)
            .and_then(|mut st| {
                st.query_row([request_id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .optional()
            })
            .map_err(sql)
    }

    /// The earlier request's answer (by [`protocol::prior_of`]; SQLite
    /// never keeps an unanswered record) and, when there is none, whether the store has ever
    /// had a void (false: the voided-rows queries can be skipped; a file
    /// without the counter is assumed to). A decision needs both, and one
    /// read transaction takes the file's locks once instead of twice.
    fn prior_and_voids(
        &self,
        request_id: &str,
        digest_hex: &str,
    ) -> Result<(Option<Prior>, bool), StoreError> {
        let conn = lock(&self.shared.reader);
        let tx = conn.unchecked_transaction().map_err(sql)?;
        if let Some(Found::Prior(p)) =
            protocol::prior_of(self.record_on(&tx, request_id)?, digest_hex)
        {
            return Ok((Some(p), true));
        }
        let voids: Option<i64> = tx
            .prepare_cached("SELECT value FROM meta WHERE key = 'voids'")
            .and_then(|mut st| st.query_row([], |r| r.get(0)).optional())
            .map_err(sql)?;
        Ok((None, voids != Some(0)))
    }

    /// Runs `f` in an IMMEDIATE transaction on the events connection: one
    /// transition of a request at a time, then the locks of its groups, so
    /// no decision reads their usage half-way through.
    fn with_task<T>(
        &self,
        request_id: &str,
        f: impl FnOnce(records::Task<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_locks(&[format!("\u{2}{request_id}")], || {
            let mut names = records::all(
                &lock(&self.shared.reader),
                "SELECT DISTINCT limit_id, group_key FROM ledger WHERE request_id = ?1",
                [request_id],
                |r| {
                    let (l, k): (String, String) = (r.get(0).map_err(sql)?, r.get(1).map_err(sql)?);
                    Ok(slot(&l, &k))
                },
            )?;
            names.sort();
            names.dedup();
            self.with_locks(&names, || {
                let mut conn = lock(&self.shared.events);
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(sql)?;
                f(records::Task(tx))
            })
        })
    }

    /// Holds `rows` at `now`; returns (slot, id) per row, in order.
    fn hold(&self, rows: &[(Row, String)], now: i64) -> Vec<(String, u64)> {
        let mut p = lock(&self.shared.pending);
        rows.iter()
            .map(|(r, _)| {
                let s = slot(&r.limit, &r.group_key);
                let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
                p.rows.entry(s.clone()).or_default().push(Held {
                    id,
                    at_ms: now,
                    amount: r.amount,
                    batch: UNBATCHED,
                });
                (s, id)
            })
            .collect()
    }

    fn release(&self, ids: &[(String, u64)]) {
        forget(&mut lock(&self.shared.pending), ids);
    }
}

fn forget(p: &mut PendingState, ids: &[(String, u64)]) {
    for (s, id) in ids {
        if let Some(v) = p.rows.get_mut(s) {
            v.retain(|h| h.id != *id);
            if v.is_empty() {
                p.rows.remove(s);
            }
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        lock(&self.tx).take();
        if let Some(h) = lock(&self.writer).take() {
            let _ = h.join();
        }
    }
}

impl Decider for SqliteStore {
    /// Nothing: the steps share the store's connections and locks.
    type Session = ();
    /// The held rows' (slot, id), in the order of the request's rows.
    type Hold = Vec<(String, u64)>;

    fn exclusive<T>(
        &self,
        request_id: &str,
        f: impl FnOnce(&mut ()) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_locks(&[format!("\u{1}{request_id}")], || f(&mut ()))
    }

    fn read(
        &self,
        _: &mut (),
        req: &Request<'_>,
        fits: &dyn Fn(&[Usage]) -> bool,
    ) -> Result<Read<Self::Hold>, StoreError> {
        // Outside the group locks, so two requests of one group wait for
        // each other only while usage is read from memory and held: the
        // id's record needs only the id's lock, and a void counter read
        // early can only miss a void made since, which errs towards
        // counting a released row (rejecting), never the other way.
        let voids = match self.prior_and_voids(req.id, &req.digest)? {
            (Some(p), _) => return Ok(Read::Prior(p)),
            (None, voids) => voids,
        };
        self.with_locks(&slots(req), || {
            let now = self.now(req.now_ms);
            let usages = self.usages(req.groups, now, voids)?;
            let held = fits(&usages).then(|| self.hold(req.hold, now));
            Ok(Read::Usage { now, usages, held })
        })
    }

    /// Queues the rows and the record for the writer; held in memory until
    /// their batch commits, so every reader counts them meanwhile.
    fn settle(
        &self,
        _: &mut (),
        req: &Request<'_>,
        now: i64,
        fate: Fate<Self::Hold>,
        answer: Option<&str>,
    ) -> Result<Pending, StoreError> {
        let ids = match fate {
            Fate::Keep(ids) => ids,
            Fate::HoldNow => self.with_locks(&slots(req), || self.hold(req.hold, now)),
            Fate::Release(ids) => {
                self.release(&ids);
                Vec::new()
            }
            Fate::Nothing => Vec::new(),
        };
        let rows: Vec<JobRow> = ids
            .iter()
            .zip(req.hold)
            .map(|((s, id), (r, display))| JobRow {
                id: *id,
                slot: s.clone(),
                limit: r.limit.clone(),
                key: r.group_key.clone(),
                at_ms: now,
                amount: r.amount,
                request_id: req.id.to_owned(),
                display: display.clone(),
                token: r.token.clone(),
                digest: req.digest.clone(),
            })
            .collect();
        let record = answer.map(|a| (req.id.to_owned(), req.digest.clone(), now, a.to_owned()));
        if let Some((id, d, _, a)) = &record {
            lock(&self.shared.pending)
                .records
                .insert(id.clone(), (d.clone(), a.clone()));
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job = Job {
            rows,
            record,
            approval: None,
            reply: Some(reply),
            queued: Instant::now(),
        };
        if let Err(e) = self.send(job) {
            // Never queued: forget what was held, or it would count forever.
            self.release(&ids);
            lock(&self.shared.pending).records.remove(req.id);
            return Err(e);
        }
        Ok(Pending(rx))
    }
}

/// The group commit's tuning, handed to the store when it is wired.
impl SqliteStore {
    /// Tells the store how many of the server's requests are still being
    /// decided, so a group commit waits for more only while some may join
    /// it (never for a caller that sends one request at a time, nor once
    /// every request in flight has joined). Set once, before serving.
    pub fn set_load_hint(&self, hint: LoadHint) {
        let _ = self.shared.load.set(hint);
    }

    /// The longest a commit may wait for others to join it (its group
    /// commit); zero when each decision commits at once. A caller waiting
    /// for a commit anyway may let its other durable effects wait as long
    /// (the decision-log line of a decision under a limit).
    pub fn batch_window(&self) -> Duration {
        self.group_commit
    }

    /// `hook` runs each time a group commit takes its batch, before its
    /// fsync: the decision log then writes the lines it holds for that
    /// batch (queued before the batch was taken) beside the store's fsync,
    /// not after it. Set once, before serving.
    pub fn set_commit_hook(&self, hook: CommitHook) {
        let _ = self.shared.on_commit.set(hook);
    }
}

impl Store for SqliteStore {
    super::protocol::decide_by_protocol!();

    fn lookup(&self, request_id: &str, digest: &[u8; 32]) -> Result<Option<Prior>, StoreError> {
        // Under the id's lock, so a decision in progress for the same id is
        // seen once it holds its record.
        self.exclusive(request_id, |_| {
            let record = self.record_on(&lock(&self.shared.reader), request_id)?;
            Ok(protocol::lookup(record, &hex::encode(digest)))
        })
    }

    fn record_approval(&self, rec: &ApprovalRecord) -> Result<Pending, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(Job {
            rows: Vec::new(),
            record: None,
            approval: Some(rec.clone()),
            reply: Some(reply),
            queued: Instant::now(),
        })?;
        Ok(Pending(rx))
    }

    fn approval(&self, request_id: &str) -> Result<Option<Approval>, StoreError> {
        approval_of(&lock(&self.shared.reader), request_id)
    }

    fn control(&self, key: &str) -> Result<Option<String>, StoreError> {
        control_of(&lock(&self.shared.events), key)
    }

    fn set_control(&self, key: &str, value: Option<&str>, now_ms: i64) -> Result<(), StoreError> {
        set_control_on(&lock(&self.shared.events), key, value, now_ms)
    }

    fn put_event(&self, ev: &StoredEvent) -> Result<bool, StoreError> {
        records::put_event_on(&lock(&self.shared.events), ev)
    }

    fn event_stored(&self, event_id: &str) -> Result<bool, StoreError> {
        records::event_stored_on(&lock(&self.shared.reader), event_id)
    }

    super::protocol::transition_by_protocol!();

    fn approvals(&self, since_ms: i64, limit: usize) -> Result<Vec<Approval>, StoreError> {
        approvals_since(&lock(&self.shared.reader), since_ms, limit)
    }

    fn peaks(&self, limits: &[(String, i64)]) -> Result<Vec<Usage>, StoreError> {
        if limits.is_empty() {
            return Ok(Vec::new());
        }
        // A connection of its own, so no decision waits for this read (WAL
        // lets it read beside the writer and the decisions' reader). The
        // clock a decision would use now; committed rows only (a hold is
        // committed within milliseconds, or released).
        let conn = connect(&self.path, false)?;
        let now = super::now_ms().max(self.shared.clock.load(Ordering::SeqCst));
        peaks_on(&conn, limits, now)
    }

    fn report(
        &self,
        now_ms: i64,
        window_of: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<Vec<GroupUsage>, StoreError> {
        report(&lock(&self.shared.reader), now_ms, window_of)
    }

    fn entries(
        &self,
        request_id: Option<&str>,
        since_ms: i64,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        entries(&lock(&self.shared.reader), request_id, since_ms)
    }

    fn void(&self, request_id: &str, at_ms: i64, reason: &str) -> Result<usize, StoreError> {
        void(&lock(&self.shared.events), request_id, at_ms, reason)
    }

    fn plans(&self) -> Result<QueryPlans, StoreError> {
        plans(&lock(&self.shared.reader))
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}
