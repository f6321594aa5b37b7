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

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{
    GroupRef, GroupUsage, LedgerEntry, Outcome, Pending, Prior, Store, StoreError, Verdict,
};
use crate::velocity::{Amount, Row, Usage};

/// The schema this binary writes. A file with a newer one is refused.
pub const SCHEMA_VERSION: i64 = 2;

/// Rows and records older than this are deleted: longer than any window.
pub const RETENTION_MS: i64 = crate::velocity::limits::MAX_WINDOW_MS + 86_400_000;

const SCHEMA: &str = "
CREATE TABLE ledger (
    limit_id    TEXT NOT NULL,
    group_key   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    request_id  TEXT NOT NULL,
    group_name  TEXT NOT NULL,
    token       TEXT NOT NULL,
    amount      TEXT NOT NULL,
    cum_amount  TEXT NOT NULL,
    cum_count   INTEGER NOT NULL,
    digest      TEXT NOT NULL,
    voided_at   INTEGER,
    void_reason TEXT,
    PRIMARY KEY (limit_id, group_key, at_ms, seq)
) WITHOUT ROWID;
CREATE INDEX ledger_request ON ledger (request_id);
CREATE INDEX ledger_age ON ledger (at_ms);
CREATE INDEX ledger_voided ON ledger (limit_id, group_key, at_ms) WHERE voided_at IS NOT NULL;
CREATE TABLE decisions (
    request_id TEXT PRIMARY KEY,
    digest     TEXT NOT NULL,
    at_ms      INTEGER NOT NULL,
    answer     TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX decisions_age ON decisions (at_ms);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('batch', 0), ('voids', 0);
";

/// Version 2: what tss-gate approved and the node's events (issue 18),
/// and which voids a task's failure made (a `succeeded` reported later
/// re-holds exactly those, never a void made by hand).
const SCHEMA_V2: &str = "
ALTER TABLE ledger ADD COLUMN void_source TEXT;
CREATE TABLE approvals (
    request_id    TEXT PRIMARY KEY,
    request_type  TEXT NOT NULL,
    at_ms         INTEGER NOT NULL,
    digest        TEXT NOT NULL,
    facts         TEXT NOT NULL,
    state         TEXT NOT NULL,
    changed_at_ms INTEGER,
    change_reason TEXT
) WITHOUT ROWID;
CREATE INDEX approvals_age ON approvals (at_ms);
CREATE TABLE events (
    event_id       TEXT PRIMARY KEY,
    received_at_ms INTEGER NOT NULL,
    node_id        TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    body           TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX events_age ON events (received_at_ms);
CREATE INDEX events_request ON events (request_id);
";

/// `void_source` of rows a task's release voided.
const VOID_BY_EVENT: &str = "event";

/// The queries a decision runs, named for `ledger plan` and tests.
pub const Q_HEAD: &str = "SELECT seq, at_ms, cum_amount, cum_count FROM ledger \
     WHERE limit_id = ?1 AND group_key = ?2 ORDER BY at_ms DESC, seq DESC LIMIT 1";
pub const Q_FIRST: &str = "SELECT amount, cum_amount, cum_count, at_ms FROM ledger \
     WHERE limit_id = ?1 AND group_key = ?2 AND at_ms > ?3 ORDER BY at_ms, seq LIMIT 1";
// INDEXED BY: the primary key also matches the WHERE clause, and the
// planner may pick it, which would visit every row of the window.
pub const Q_VOIDED: &str = "SELECT amount FROM ledger INDEXED BY ledger_voided \
     WHERE limit_id = ?1 AND group_key = ?2 AND at_ms > ?3 AND voided_at IS NOT NULL";
pub const Q_RECORD: &str = "SELECT digest, answer FROM decisions WHERE request_id = ?1";

#[derive(Debug, Clone, Copy)]
struct Head {
    seq: i64,
    at_ms: i64,
    cum: Amount,
    count: i64,
}

const EMPTY: Head = Head {
    seq: 0,
    at_ms: i64::MIN,
    cum: Amount::ZERO,
    count: 0,
};

/// The first committed row of a group inside a window that started at
/// `since`. Rows are only ever appended after a group's last row (never
/// before it in time), and a row's running totals never change, so this
/// stays the first row inside any later window that still contains it.
/// (Pruning deletes rows older than any window; a row deleted by hand
/// while remembered keeps counting, which errs towards rejecting.)
#[derive(Debug, Clone, Copy)]
struct Tail {
    since: i64,
    at_ms: i64,
    amount: Amount,
    cum: Amount,
    count: i64,
}

impl Tail {
    /// Whether this is the first row inside the window starting at `since`.
    fn first_after(&self, since: i64) -> bool {
        since >= self.since && self.at_ms > since
    }

    /// Usage from this row up to `head` (a head before this row: none).
    fn usage_to(&self, head: Head) -> Usage {
        // The running total just before this row.
        let before = self.cum.saturating_sub(self.amount);
        let n = head.count - (self.count - 1);
        Usage {
            amount: head.cum.saturating_sub(before),
            count: n.max(0) as u64,
        }
    }
}

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

struct JobRow {
    id: u64,
    slot: String,
    limit: String,
    key: String,
    at_ms: i64,
    amount: Amount,
    request_id: String,
    display: String,
    token: String,
    digest: String,
}

struct Job {
    rows: Vec<JobRow>,
    record: Option<(String, String, i64, String)>,
    approval: Option<super::ApprovalRecord>,
    reply: Option<tokio::sync::oneshot::Sender<Result<(), StoreError>>>,
    queued: Instant,
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

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

fn open_err(path: &Path, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Open {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Opens a connection with the pragmas every user of the file needs.
pub fn connect(path: &Path, create: bool) -> Result<Connection, StoreError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|e| open_err(path, e))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| open_err(path, e))?;
    conn.execute_batch(
        // A larger WAL between checkpoints: the pages every commit touches
        // (the right edge of each group's rows) are rewritten in the WAL
        // many times but copied back to the database once per checkpoint.
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA wal_autocheckpoint = 8192;",
    )
    .map_err(|e| open_err(path, e))?;
    Ok(conn)
}

/// Creates the schema on an empty file, checks the version and the file's
/// integrity otherwise. Refuses a newer schema and a damaged file.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| open_err(path, format!("not a readable SQLite database ({e})")))?;
    if version > SCHEMA_VERSION {
        return Err(open_err(
            path,
            format!(
                "schema version {version} is newer than this tss-gate understands ({SCHEMA_VERSION}); use a newer tss-gate"
            ),
        ));
    }
    let ok: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| open_err(path, format!("integrity check failed ({e})")))?;
    if ok != "ok" {
        return Err(open_err(path, format!("the file is damaged: {ok}")));
    }
    if version == 1 {
        let tx = conn.transaction().map_err(|e| open_err(path, e))?;
        tx.execute_batch(SCHEMA_V2)
            .map_err(|e| open_err(path, format!("migrating to schema 2: {e}")))?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(|e| open_err(path, e))?;
        tx.commit().map_err(|e| open_err(path, e))?;
    }
    if version == 0 {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(|e| open_err(path, e))?;
        if tables > 0 {
            return Err(open_err(
                path,
                "the file holds tables but no tss-gate schema version; refusing to use it",
            ));
        }
        let tx = conn.transaction().map_err(|e| open_err(path, e))?;
        tx.execute_batch(SCHEMA).map_err(|e| open_err(path, e))?;
        tx.execute_batch(SCHEMA_V2).map_err(|e| open_err(path, e))?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(|e| open_err(path, e))?;
        tx.commit().map_err(|e| open_err(path, e))?;
    }
    // Outside the versioned schema: an older binary ignores the table, and
    // `tss-gate freeze` may create it beside a running server.
    conn.execute_batch(CONTROLS)
        .map_err(|e| open_err(path, e))?;
    Ok(())
}

const CONTROLS: &str = "CREATE TABLE IF NOT EXISTS controls (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    at_ms INTEGER NOT NULL
) WITHOUT ROWID;";

/// A control switch's stored text (see [`Store::control`]).
pub fn control_of(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    conn.prepare_cached("SELECT value FROM controls WHERE key = ?1")
        .and_then(|mut st| st.query_row(params![key], |r| r.get(0)).optional())
        .map_err(io)
}

/// Sets or clears a control switch (see [`Store::set_control`]).
pub fn set_control_on(
    conn: &Connection,
    key: &str,
    value: Option<&str>,
    now_ms: i64,
) -> Result<(), StoreError> {
    match value {
        Some(v) => conn.execute(
            "INSERT INTO controls (key, value, at_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, at_ms = excluded.at_ms",
            params![key, v, now_ms],
        ),
        None => conn.execute("DELETE FROM controls WHERE key = ?1", params![key]),
    }
    .map(drop)
    .map_err(io)
}

/// Creates a file readable by its owner only: it holds who moved what where.
fn create_private(path: &Path) -> Result<(), StoreError> {
    crate::private_fs::create_parent(path).map_err(|e| open_err(path, e))?;
    crate::private_fs::open_append(path)
        .map(drop)
        .map_err(|e| open_err(path, e))
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
        create_private(path)?;
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
        .map_err(|e| open_err(&lock_path, e))?;
        lock_file.try_lock().map_err(|_| {
            open_err(
                path,
                "another tss-gate process is using this store (one process per SQLite file; use PostgreSQL for several instances)",
            )
        })?;
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
            .map_err(|e| open_err(path, e))?;
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
        let t = fixed.unwrap_or_else(crate::pipeline::now_ms);
        let prev = self.shared.clock.fetch_max(t, Ordering::SeqCst);
        if fixed.is_some() { t } else { prev.max(t) }
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        let tx = lock(&self.tx);
        match tx.as_ref() {
            Some(tx) => tx.send(job).map_err(|_| io("the store's writer stopped")),
            None => Err(io("the store is closed")),
        }
    }

    /// Every (limit, group) with rows in the last `RETENTION_MS`, with usage
    /// inside `window_of(limit)`; limits no longer configured use 24h.
    pub fn usage_report(
        &self,
        now_ms: i64,
        window_of: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<Vec<GroupUsage>, StoreError> {
        let conn = lock(&self.shared.reader);
        report(&conn, now_ms, window_of)
    }
}

/// `ledger show`'s report, from any connection.
pub fn report(
    conn: &Connection,
    now_ms: i64,
    window_of: &dyn Fn(&str) -> Option<i64>,
) -> Result<Vec<GroupUsage>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT limit_id, group_key, max(group_name) FROM ledger WHERE at_ms > ?1 \
             GROUP BY limit_id, group_key ORDER BY limit_id, group_key",
        )
        .map_err(io)?;
    let groups: Vec<(String, String, String)> = stmt
        .query_map([now_ms - RETENTION_MS], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    let mut out = Vec::new();
    for (limit, key, name) in groups {
        let window = window_of(&limit).unwrap_or(86_400_000);
        let since = now_ms - window;
        let usage = sql_usage(conn, &limit, &key, since)?;
        let held: i64 = conn
            .query_row(
                "SELECT count(*) FROM ledger WHERE limit_id = ?1 AND group_key = ?2 AND at_ms > ?3 AND voided_at IS NULL",
                params![limit, key, since],
                |r| r.get(0),
            )
            .map_err(io)?;
        out.push(GroupUsage {
            limit,
            group: name,
            usage,
            held: held as u64,
        });
    }
    Ok(out)
}

/// Rows of one request, or of all requests in the last `since_ms`.
pub fn entries(
    conn: &Connection,
    request_id: Option<&str>,
    since_ms: i64,
) -> Result<Vec<LedgerEntry>, StoreError> {
    let sql = "SELECT request_id, limit_id, group_name, at_ms, amount, token, voided_at, void_reason \
               FROM ledger WHERE (?1 IS NULL OR request_id = ?1) AND at_ms > ?2 ORDER BY at_ms, limit_id";
    let mut stmt = conn.prepare(sql).map_err(io)?;
    let rows = stmt
        .query_map(params![request_id, since_ms], |r| {
            let amount: String = r.get(4)?;
            let voided_at: Option<i64> = r.get(6)?;
            let reason: Option<String> = r.get(7)?;
            Ok(LedgerEntry {
                request_id: r.get(0)?,
                limit: r.get(1)?,
                group: r.get(2)?,
                at_ms: r.get(3)?,
                amount: Amount::from_units(&amount).unwrap_or_default(),
                token: r.get(5)?,
                voided: voided_at.map(|t| (t, reason.unwrap_or_default())),
            })
        })
        .map_err(io)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    Ok(rows)
}

/// Releases every row of `request_id`; returns how many were released.
pub fn void(
    conn: &Connection,
    request_id: &str,
    at_ms: i64,
    reason: &str,
) -> Result<usize, StoreError> {
    // One transaction: readers skip the voided-rows query while the
    // counter says there never was a void, so the rows and the counter
    // must change together.
    let tx = conn.unchecked_transaction().map_err(io)?;
    let n = tx
        .execute(
            "UPDATE ledger SET voided_at = ?2, void_reason = ?3 WHERE request_id = ?1 AND voided_at IS NULL",
            params![request_id, at_ms, reason],
        )
        .map_err(io)?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('voids', 1) \
         ON CONFLICT (key) DO UPDATE SET value = value + 1",
        [],
    )
    .map_err(io)?;
    tx.commit().map_err(io)?;
    Ok(n)
}

fn parse_amount(s: &str) -> rusqlite::Result<Amount> {
    Amount::from_units(s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            "amount is not an integer".into(),
        )
    })
}

fn sql_head(conn: &Connection, limit: &str, key: &str) -> Result<Option<Head>, StoreError> {
    let mut stmt = conn.prepare_cached(Q_HEAD).map_err(io)?;
    stmt.query_row(params![limit, key], |r| {
        let cum: String = r.get(2)?;
        Ok(Head {
            seq: r.get(0)?,
            at_ms: r.get(1)?,
            cum: parse_amount(&cum)?,
            count: r.get(3)?,
        })
    })
    .optional()
    .map_err(io)
}

/// Usage in (since, ∞) from committed rows only.
fn sql_usage(conn: &Connection, limit: &str, key: &str, since: i64) -> Result<Usage, StoreError> {
    match sql_head(conn, limit, key)? {
        Some(head) => usage_from(conn, limit, key, since, head, true).map(|(u, _)| u),
        None => Ok(Usage::default()),
    }
}

/// Usage in (since, ∞) of the committed rows up to `head`, and the first
/// row inside the window (None: there is none). Rows after `head` that
/// SQLite already shows are not counted (the caller counts them as held);
/// `voids: false` skips the voided-rows query when the store has never had
/// a void.
fn usage_from(
    conn: &Connection,
    limit: &str,
    key: &str,
    since: i64,
    head: Head,
    voids: bool,
) -> Result<(Usage, Option<Tail>), StoreError> {
    let first = {
        let mut stmt = conn.prepare_cached(Q_FIRST).map_err(io)?;
        stmt.query_row(params![limit, key, since], |r| {
            let a: String = r.get(0)?;
            let c: String = r.get(1)?;
            Ok(Tail {
                since,
                at_ms: r.get(3)?,
                amount: parse_amount(&a)?,
                cum: parse_amount(&c)?,
                count: r.get(2)?,
            })
        })
        .optional()
        .map_err(io)?
    };
    let Some(tail) = first else {
        return Ok((Usage::default(), None));
    };
    let mut u = tail.usage_to(head);
    if voids {
        subtract_voided(conn, limit, key, since, &mut u)?;
    }
    Ok((u, Some(tail)))
}

/// Takes the voided rows inside the window off `u`.
fn subtract_voided(
    conn: &Connection,
    limit: &str,
    key: &str,
    since: i64,
    u: &mut Usage,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(Q_VOIDED).map_err(io)?;
    let voided = stmt
        .query_map(params![limit, key, since], |r| {
            parse_amount(&r.get::<_, String>(0)?)
        })
        .map_err(io)?;
    for v in voided {
        u.amount = u.amount.saturating_sub(v.map_err(io)?);
        u.count = u.count.saturating_sub(1);
    }
    Ok(())
}

/// Adds the held rows inside the window to `u`; `committed_batch`: the
/// snapshot's batch (rows of batches it contains are already counted).
fn add_held(u: &mut Usage, held: &[Held], since: i64, committed_batch: Option<u64>) {
    for h in held {
        let uncommitted = committed_batch.is_none_or(|b| h.batch == UNBATCHED || h.batch > b);
        if uncommitted && h.at_ms > since {
            // Past 2^256 the sum sticks at the maximum: over any cap.
            u.amount = u
                .amount
                .checked_add(h.amount)
                .unwrap_or(Amount(alloy_primitives::U256::MAX));
            u.count += 1;
        }
    }
}

fn slot(limit: &str, key: &str) -> String {
    format!("{limit}\0{key}")
}

impl Store for SqliteStore {
    fn set_load_hint(&self, hint: super::LoadHint) {
        let _ = self.shared.load.set(hint);
    }

    fn batch_window(&self) -> Duration {
        self.group_commit
    }

    fn set_commit_hook(&self, hook: super::CommitHook) {
        let _ = self.shared.on_commit.set(hook);
    }

    fn decide(
        &self,
        request_id: &str,
        digest: &[u8; 32],
        groups: &[GroupRef],
        hold: &[(Row, String)],
        now_ms: Option<i64>,
        fits: &dyn Fn(&[Usage]) -> bool,
        decide: &mut dyn FnMut(i64, &[Usage]) -> Verdict,
    ) -> Result<Outcome, StoreError> {
        let digest_hex = hex::encode(digest);
        // The request id's lock is held throughout, so a copy of the same
        // request waits and then finds this one's record; the group locks
        // only while usage is read and the rows are held.
        let id_lock = [format!("\u{1}{request_id}")];
        self.with_locks(&id_lock, || {
            let mut names: Vec<String> = groups.iter().map(|g| slot(&g.limit, &g.key)).collect();
            names.extend(hold.iter().map(|(r, _)| slot(&r.limit, &r.group_key)));
            names.sort();
            names.dedup();
            // Outside the group locks, so two requests of one group wait
            // for each other only while usage is read from memory and held:
            // the id's record needs only the id's lock, and a void counter
            // read early can only miss a void made since, which errs
            // towards counting a released row (rejecting), never the other way.
            let voids = match self.prior_and_voids(request_id, &digest_hex)? {
                (Some(p), _) => return Ok(Outcome::Prior(p)),
                (None, voids) => voids,
            };
            let (now, usages, held) = self.with_locks(&names, || -> Result<_, StoreError> {
                let now = self.now(now_ms);
                let usages = self.usages(groups, now, voids)?;
                let held = fits(&usages).then(|| self.hold(hold, now));
                Ok((now, usages, held))
            })?;
            let verdict = decide(now, &usages);
            let ids = match (verdict.approved, held) {
                (true, Some(ids)) => ids,
                // Approved over the limit by the policy's own rules: an
                // approval is recorded whatever it was judged on.
                (true, None) => self.with_locks(&names, || self.hold(hold, now)),
                (false, Some(ids)) => {
                    self.release(&ids);
                    Vec::new()
                }
                (false, None) => Vec::new(),
            };
            let rows: Vec<JobRow> = ids
                .iter()
                .zip(hold)
                .map(|((s, id), (r, display))| JobRow {
                    id: *id,
                    slot: s.clone(),
                    limit: r.limit.clone(),
                    key: r.group_key.clone(),
                    at_ms: now,
                    amount: r.amount,
                    request_id: request_id.to_owned(),
                    display: display.clone(),
                    token: r.token.clone(),
                    digest: digest_hex.clone(),
                })
                .collect();
            let record = (!verdict.answer.is_empty()).then(|| {
                (
                    request_id.to_owned(),
                    digest_hex.clone(),
                    now,
                    verdict.answer.clone(),
                )
            });
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
                lock(&self.shared.pending).records.remove(request_id);
                return Err(e);
            }
            Ok(Outcome::Decided(Pending(rx)))
        })
    }

    fn lookup(&self, request_id: &str, digest: &[u8; 32]) -> Result<Option<Prior>, StoreError> {
        // Under the id's lock, so a decision in progress for the same id is
        // seen once it holds its record.
        let id_lock = [format!("\u{1}{request_id}")];
        self.with_locks(&id_lock, || self.prior(request_id, &hex::encode(digest)))
    }

    fn record_approval(&self, rec: &super::ApprovalRecord) -> Result<Pending, StoreError> {
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

    fn approval(&self, request_id: &str) -> Result<Option<super::Approval>, StoreError> {
        let conn = lock(&self.shared.reader);
        approval_of(&conn, request_id)
    }

    fn control(&self, key: &str) -> Result<Option<String>, StoreError> {
        control_of(&lock(&self.shared.events), key)
    }

    fn set_control(&self, key: &str, value: Option<&str>, now_ms: i64) -> Result<(), StoreError> {
        set_control_on(&lock(&self.shared.events), key, value, now_ms)
    }

    fn put_event(&self, ev: &super::StoredEvent) -> Result<bool, StoreError> {
        let conn = lock(&self.shared.events);
        let n = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO events (event_id, received_at_ms, node_id, event_type, request_id, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    ev.event_id,
                    ev.received_at_ms,
                    ev.node_id,
                    ev.event_type,
                    ev.request_id,
                    ev.body
                ])
            })
            .map_err(io)?;
        Ok(n == 1)
    }

    fn event_stored(&self, event_id: &str) -> Result<bool, StoreError> {
        let conn = lock(&self.shared.reader);
        conn.prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")
            .and_then(|mut st| st.exists([event_id]))
            .map_err(io)
    }

    fn transition(
        &self,
        request_id: &str,
        to: super::TaskState,
        at_ms: i64,
        reason: &str,
    ) -> Result<super::Transition, StoreError> {
        // One transition of a request at a time; then the locks of its
        // groups, so no decision reads their usage half-way through.
        let id_lock = [format!("\u{2}{request_id}")];
        self.with_locks(&id_lock, || {
            let mut names: Vec<String> = {
                let conn = lock(&self.shared.reader);
                let mut st = conn
                    .prepare_cached(
                        "SELECT DISTINCT limit_id, group_key FROM ledger WHERE request_id = ?1",
                    )
                    .map_err(io)?;
                st.query_map([request_id], |r| {
                    Ok(slot(&r.get::<_, String>(0)?, &r.get::<_, String>(1)?))
                })
                .map_err(io)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(io)?
            };
            names.sort();
            names.dedup();
            self.with_locks(&names, || {
                let mut conn = lock(&self.shared.events);
                apply_transition(&mut conn, request_id, to, at_ms, reason)
            })
        })
    }

    fn approvals(&self, since_ms: i64, limit: usize) -> Result<Vec<super::Approval>, StoreError> {
        let conn = lock(&self.shared.reader);
        approvals_since(&conn, since_ms, limit)
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
        let now = crate::pipeline::now_ms().max(self.shared.clock.load(Ordering::SeqCst));
        peaks_on(&conn, limits, now)
    }
}

/// A limit's first group, and the group after `?2`: one seek each on the
/// primary key, so the groups are visited without reading their rows.
pub const Q_FIRST_GROUP: &str =
    "SELECT group_key FROM ledger WHERE limit_id = ?1 ORDER BY limit_id, group_key LIMIT 1";
pub const Q_NEXT_GROUP: &str = "SELECT group_key FROM ledger \
     WHERE limit_id = ?1 AND group_key > ?2 ORDER BY limit_id, group_key LIMIT 1";

/// [`Store::peaks`] at `now_ms`, from any connection, in one snapshot:
/// each group's usage exactly as a decision reads it from SQLite (running
/// totals, voided rows taken off), a few index seeks per group of the
/// retention time whatever its number of rows.
pub fn peaks_on(
    conn: &Connection,
    limits: &[(String, i64)],
    now_ms: i64,
) -> Result<Vec<Usage>, StoreError> {
    let tx = conn.unchecked_transaction().map_err(io)?;
    let mut out = Vec::with_capacity(limits.len());
    for (limit, window_ms) in limits {
        let since = now_ms.saturating_sub(*window_ms);
        let mut peak = Usage::default();
        let mut group: Option<String> = tx
            .prepare_cached(Q_FIRST_GROUP)
            .and_then(|mut st| st.query_row(params![limit], |r| r.get(0)).optional())
            .map_err(io)?;
        while let Some(key) = group {
            fold_peak(&mut peak, sql_usage(&tx, limit, &key, since)?);
            group = tx
                .prepare_cached(Q_NEXT_GROUP)
                .and_then(|mut st| st.query_row(params![limit, key], |r| r.get(0)).optional())
                .map_err(io)?;
        }
        out.push(peak);
    }
    Ok(out)
}

fn fold_peak(peak: &mut Usage, group: Usage) {
    peak.amount = peak.amount.max(group.amount);
    peak.count = peak.count.max(group.count);
}

const APPROVAL_COLUMNS: &str =
    "request_id, request_type, at_ms, digest, facts, state, changed_at_ms, change_reason";

fn approval_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<super::Approval> {
    let state: String = r.get(5)?;
    let changed_at: Option<i64> = r.get(6)?;
    let reason: Option<String> = r.get(7)?;
    Ok(super::Approval {
        record: super::ApprovalRecord {
            request_id: r.get(0)?,
            request_type: r.get(1)?,
            at_ms: r.get(2)?,
            digest: r.get(3)?,
            facts: r.get(4)?,
        },
        // An unknown state (a newer writer) is read as still approved:
        // its hold keeps counting.
        state: super::TaskState::parse(&state).unwrap_or(super::TaskState::Approved),
        changed: changed_at.map(|t| (t, reason.unwrap_or_default())),
    })
}

/// The approval of `request_id`, from any connection.
pub fn approval_of(
    conn: &Connection,
    request_id: &str,
) -> Result<Option<super::Approval>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE request_id = ?1"
    ))
    .and_then(|mut st| st.query_row([request_id], approval_row).optional())
    .map_err(io)
}

/// Approvals since `since_ms`, newest first, from any connection.
pub fn approvals_since(
    conn: &Connection,
    since_ms: i64,
    limit: usize,
) -> Result<Vec<super::Approval>, StoreError> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE at_ms > ?1 ORDER BY at_ms DESC LIMIT ?2"
        ))
        .map_err(io)?;
    st.query_map(params![since_ms, limit as i64], approval_row)
        .map_err(io)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)
}

/// The state machine of [`super::Store::transition`], in one transaction.
fn apply_transition(
    conn: &mut Connection,
    request_id: &str,
    to: super::TaskState,
    at_ms: i64,
    reason: &str,
) -> Result<super::Transition, StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(io)?;
    let before: Option<String> = tx
        .query_row(
            "SELECT state FROM approvals WHERE request_id = ?1",
            [request_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(io)?;
    let Some(before) = before else {
        return Ok(super::Transition::UNKNOWN);
    };
    let before = super::TaskState::parse(&before).unwrap_or(super::TaskState::Approved);
    let (after, change) = super::next_state(before, to);
    let rows = match change {
        super::RowChange::Keep => 0,
        super::RowChange::Release => {
            let n = tx
                .execute(
                    "UPDATE ledger SET voided_at = ?2, void_reason = ?3, void_source = ?4 \
                     WHERE request_id = ?1 AND voided_at IS NULL",
                    params![request_id, at_ms, reason, VOID_BY_EVENT],
                )
                .map_err(io)?;
            // Readers skip the voided-rows query while this counter says
            // there never was a void.
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('voids', 1) \
                 ON CONFLICT (key) DO UPDATE SET value = value + 1",
                [],
            )
            .map_err(io)?;
            n
        }
        super::RowChange::Rehold => tx
            .execute(
                "UPDATE ledger SET voided_at = NULL, void_reason = NULL, void_source = NULL \
                 WHERE request_id = ?1 AND void_source = ?2",
                params![request_id, VOID_BY_EVENT],
            )
            .map_err(io)?,
    };
    if after != before {
        tx.execute(
            "UPDATE approvals SET state = ?2, changed_at_ms = ?3, change_reason = ?4 WHERE request_id = ?1",
            params![request_id, after.as_str(), at_ms, reason],
        )
        .map_err(io)?;
    }
    tx.commit().map_err(io)?;
    Ok(super::Transition {
        before: Some(before),
        after: Some(after),
        rows,
    })
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

    /// The record of an earlier request with this id: held, then committed.
    fn prior(&self, request_id: &str, digest_hex: &str) -> Result<Option<Prior>, StoreError> {
        self.prior_on(&lock(&self.shared.reader), request_id, digest_hex)
    }

    /// [`Self::prior`], reading the committed record through `conn` (the
    /// reader, or a read transaction on it). Held first: the writer drops a
    /// held record only once it is committed.
    fn prior_on(
        &self,
        conn: &Connection,
        request_id: &str,
        digest_hex: &str,
    ) -> Result<Option<Prior>, StoreError> {
        let held = lock(&self.shared.pending).records.get(request_id).cloned();
        let found = match held {
            Some(r) => Some(r),
            None => conn
                .prepare_cached(Q_RECORD)
                .and_then(|mut st| {
                    st.query_row([request_id], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })
                    .optional()
                })
                .map_err(io)?,
        };
        Ok(found.map(|(d, answer)| {
            if d == digest_hex {
                Prior::Same(answer)
            } else {
                Prior::Different
            }
        }))
    }

    /// [`Self::prior`] and, when there is none, whether the store has ever
    /// had a void (false: the voided-rows queries can be skipped; a file
    /// without the counter is assumed to). A decision needs both, and one
    /// read transaction takes the file's locks once instead of twice.
    fn prior_and_voids(
        &self,
        request_id: &str,
        digest_hex: &str,
    ) -> Result<(Option<Prior>, bool), StoreError> {
        let conn = lock(&self.shared.reader);
        let tx = conn.unchecked_transaction().map_err(io)?;
        if let Some(p) = self.prior_on(&tx, request_id, digest_hex)? {
            return Ok((Some(p), true));
        }
        let voids: Option<i64> = tx
            .prepare_cached("SELECT value FROM meta WHERE key = 'voids'")
            .and_then(|mut st| st.query_row([], |r| r.get(0)).optional())
            .map_err(io)?;
        Ok((None, voids != Some(0)))
    }

    /// Each group's usage inside its window at `now`: committed rows plus
    /// held rows whose batch the snapshot does not contain.
    fn usages(&self, groups: &[GroupRef], now: i64, voids: bool) -> Result<Vec<Usage>, StoreError> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(out) = self.cached_usages(groups, now, voids)? {
            return Ok(out);
        }
        let conn = lock(&self.shared.reader);
        let (tx, batch, voids, held, heads) = {
            // One instant for all views: while the pending lock is held no
            // row changes batch or leaves and no head moves, and the SQLite
            // snapshot starts with the first read of the transaction.
            let p = lock(&self.shared.pending);
            let tx = conn.unchecked_transaction().map_err(io)?;
            let (batch, voids): (i64, Option<i64>) = tx
                .query_row(
                    "SELECT (SELECT value FROM meta WHERE key = 'batch'), \
                            (SELECT value FROM meta WHERE key = 'voids')",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(io)?;
            let mut held = Vec::with_capacity(groups.len());
            let mut heads = Vec::with_capacity(groups.len());
            for g in groups {
                let s = slot(&g.limit, &g.key);
                held.push(p.rows.get(&s).cloned().unwrap_or_default());
                heads.push(p.heads.get(&s).copied());
            }
            (tx, batch as u64, voids, held, heads)
        };
        // Without a counter (an older file) assume there were voids.
        let voids = voids != Some(0);
        let mut out = Vec::with_capacity(groups.len());
        let mut found = Vec::new();
        for ((g, held), head) in groups.iter().zip(held).zip(heads) {
            let since = now.saturating_sub(g.window_ms);
            let (mut u, counts) = match head {
                // The applied head: every held row is after it.
                Some(h) => {
                    let (u, tail) = usage_from(&tx, &g.limit, &g.key, since, h, voids)?;
                    if let Some(t) = tail {
                        found.push((slot(&g.limit, &g.key), t));
                    }
                    (u, None)
                }
                // The snapshot's head: held rows of batches it shows are in it.
                None => (sql_usage(&tx, &g.limit, &g.key, since)?, Some(batch)),
            };
            add_held(&mut u, &held, since, counts);
            out.push(u);
        }
        drop(tx);
        if !found.is_empty() {
            let mut p = lock(&self.shared.pending);
            if p.tails.len() > MAX_HEADS {
                p.tails.clear();
            }
            p.tails.extend(found);
        }
        Ok(out)
    }

    /// The usages from memory alone when every group's head and first row
    /// inside the window are known (the common case: a busy group's window
    /// start moves past a row only as often as rows age out), so a decision
    /// reads nothing from SQLite unless the store has had voids (`voids`,
    /// from [`Self::prior_and_voids`]). None: read SQLite.
    fn cached_usages(
        &self,
        groups: &[GroupRef],
        now: i64,
        voids: bool,
    ) -> Result<Option<Vec<Usage>>, StoreError> {
        let mut known = Vec::with_capacity(groups.len());
        {
            let p = lock(&self.shared.pending);
            for g in groups {
                let s = slot(&g.limit, &g.key);
                let since = now.saturating_sub(g.window_ms);
                let (Some(head), Some(tail)) = (p.heads.get(&s), p.tails.get(&s)) else {
                    return Ok(None);
                };
                if !tail.first_after(since) {
                    return Ok(None);
                }
                let held = p.rows.get(&s).cloned().unwrap_or_default();
                known.push((since, *head, *tail, held));
            }
        }
        // Voided rows are read after the heads: a row voided since is
        // subtracted once, whether it was counted in its head or as held
        // (every row after an applied head is held).
        let conn = voids.then(|| lock(&self.shared.reader));
        let mut out = Vec::with_capacity(groups.len());
        for (g, (since, head, tail, held)) in groups.iter().zip(known) {
            let mut u = tail.usage_to(head);
            if let Some(conn) = &conn {
                subtract_voided(conn, &g.limit, &g.key, since, &mut u)?;
            }
            add_held(&mut u, &held, since, None);
            out.push(u);
        }
        Ok(Some(out))
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

/// How many decisions one commit carries at most.
const BATCH: usize = 512;

/// Heads the writer remembers; beyond this many groups it starts afresh
/// (a head is one indexed lookup away).
const MAX_HEADS: usize = 100_000;

/// A batch that reaches this many decisions is committed at once.
const GROUP_COMMIT_BATCH: usize = 32;

/// How long the writer sleeps between looks at who may still join a batch.
const GROUP_COMMIT_NAP: Duration = Duration::from_millis(1);

/// When to wait for more jobs before a commit: the mean time between jobs
/// (of the times they were queued).
struct Pace {
    max_wait: Duration,
    arrivals: crate::pace::Arrivals,
}

impl Pace {
    fn new(max_wait: Duration) -> Self {
        Self {
            max_wait,
            arrivals: crate::pace::Arrivals::default(),
        }
    }

    fn arrived(&mut self, at: Instant) {
        self.arrivals.arrived(at);
    }

    /// Until when to wait for more jobs, given a batch of `have` whose
    /// first was queued at `first` and the server's requests still being
    /// decided (None: not known); None: commit now.
    fn wait_until(&self, have: usize, first: Instant, deciding: Option<usize>) -> Option<Instant> {
        let others = deciding.is_none_or(|n| n > 0);
        if self.max_wait.is_zero() || have >= GROUP_COMMIT_BATCH || !self.arrivals.fast() || !others
        {
            return None;
        }
        Some(first + self.max_wait)
    }
}

/// Adds the jobs already queued to `jobs`, up to a batch.
fn take_queued(rx: &mpsc::Receiver<Job>, jobs: &mut Vec<Job>, pace: &mut Pace) {
    while jobs.len() < BATCH {
        match rx.try_recv() {
            Ok(j) => {
                pace.arrived(j.queued);
                jobs.push(j);
            }
            Err(_) => break,
        }
    }
}

fn writer_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Job>,
    shared: Arc<Shared>,
    group_commit: Duration,
) {
    let mut last_prune = Instant::now() - Duration::from_secs(3600);
    let mut heads: HashMap<String, Head> = HashMap::new();
    let mut batch: u64 = conn
        .query_row("SELECT value FROM meta WHERE key = 'batch'", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|b| b as u64)
        .unwrap_or(0);
    let mut pace = Pace::new(group_commit);
    while let Ok(first) = rx.recv() {
        pace.arrived(first.queued);
        let mut jobs = vec![first];
        take_queued(&rx, &mut jobs, &mut pace);
        // Asleep rather than waiting on the channel, so a sender has nobody
        // to wake; in short naps, so the batch goes once nobody is left to
        // join it (a few requests in flight then never wait the whole time).
        loop {
            let deciding = shared.load.get().map(|f| f());
            let Some(until) = pace.wait_until(jobs.len(), jobs[0].queued, deciding) else {
                break;
            };
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(GROUP_COMMIT_NAP));
            take_queued(&rx, &mut jobs, &mut pace);
        }
        if let Some(hook) = shared.on_commit.get() {
            hook();
        }
        batch += 1;
        {
            let mut p = lock(&shared.pending);
            for r in jobs.iter().flat_map(|j| &j.rows) {
                if let Some(h) = p
                    .rows
                    .get_mut(&r.slot)
                    .and_then(|v| v.iter_mut().find(|h| h.id == r.id))
                {
                    h.batch = batch;
                }
            }
        }
        let result = commit(&mut conn, &jobs, batch, &mut heads);
        if let Err(e) = &result {
            tracing::error!("state store commit failed: {e}");
            // The batch number was not written; reuse it.
            batch -= 1;
        }
        if heads.len() > MAX_HEADS {
            heads.clear();
        }
        {
            let mut p = lock(&shared.pending);
            match &result {
                Ok(moved) => {
                    if p.heads.len() > MAX_HEADS {
                        p.heads.clear();
                    }
                    p.heads.extend(moved.iter().map(|(k, v)| (k.clone(), *v)));
                }
                // What this batch would have moved is not in SQLite: forget
                // every head it touched, readers fall back to SQLite.
                Err(_) => {
                    for r in jobs.iter().flat_map(|j| &j.rows) {
                        p.heads.remove(&r.slot);
                    }
                }
            }
            for j in &jobs {
                let ids: Vec<(String, u64)> =
                    j.rows.iter().map(|r| (r.slot.clone(), r.id)).collect();
                forget(&mut p, &ids);
                if let Some((id, ..)) = &j.record {
                    p.records.remove(id);
                }
            }
        }
        let result = result.map(|_| ());
        for j in jobs {
            if let Some(reply) = j.reply {
                let _ = reply.send(result.clone());
            }
        }
        if last_prune.elapsed() > Duration::from_secs(60) {
            last_prune = Instant::now();
            // Relative to the store's own clock (the latest decision time),
            // not the wall clock: a scratch ledger of fixtures lives at the
            // fixtures' time, and its history must not be pruned away.
            let cutoff = shared.clock.load(Ordering::SeqCst) - RETENTION_MS;
            if let Err(e) = conn
                .execute("DELETE FROM ledger WHERE at_ms < ?1", [cutoff])
                .and_then(|_| conn.execute("DELETE FROM decisions WHERE at_ms < ?1", [cutoff]))
                .and_then(|_| conn.execute("DELETE FROM approvals WHERE at_ms < ?1", [cutoff]))
                .and_then(|_| {
                    conn.execute("DELETE FROM events WHERE received_at_ms < ?1", [cutoff])
                })
            {
                tracing::warn!("state store: pruning old rows failed: {e}");
            }
        }
    }
}

fn commit(
    conn: &mut Connection,
    jobs: &[Job],
    batch: u64,
    heads: &mut HashMap<String, Head>,
) -> Result<HashMap<String, Head>, StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(io)?;
    // Heads move only once the commit succeeded.
    let mut moved: HashMap<String, Head> = HashMap::new();
    {
        let mut row = tx
            .prepare_cached(
                "INSERT INTO ledger (limit_id, group_key, seq, at_ms, request_id, group_name, token, amount, cum_amount, cum_count, digest) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .map_err(io)?;
        let mut rec = tx
            .prepare_cached(
                "INSERT INTO decisions (request_id, digest, at_ms, answer) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(io)?;
        for j in jobs {
            for r in &j.rows {
                let head = match moved.get(&r.slot).or_else(|| heads.get(&r.slot)) {
                    Some(h) => *h,
                    None => sql_head(&tx, &r.limit, &r.key)?.unwrap_or(EMPTY),
                };
                let next = Head {
                    seq: head.seq + 1,
                    // Never before the group's last row, so time order is
                    // seq order even if the clock steps back.
                    at_ms: r.at_ms.max(head.at_ms),
                    cum: head
                        .cum
                        .checked_add(r.amount)
                        .unwrap_or(Amount(alloy_primitives::U256::MAX)),
                    count: head.count + 1,
                };
                row.execute(params![
                    r.limit,
                    r.key,
                    next.seq,
                    next.at_ms,
                    r.request_id,
                    r.display,
                    r.token,
                    r.amount.units(),
                    next.cum.units(),
                    next.count,
                    r.digest,
                ])
                .map_err(io)?;
                moved.insert(r.slot.clone(), next);
            }
            if let Some((id, d, at, answer)) = &j.record {
                rec.execute(params![id, d, at, answer]).map_err(io)?;
            }
            if let Some(a) = &j.approval {
                // The first record of an id wins: a retry's is ignored.
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO approvals (request_id, request_type, at_ms, digest, facts, state) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 'approved')",
                )
                .and_then(|mut st| {
                    st.execute(params![a.request_id, a.request_type, a.at_ms, a.digest, a.facts])
                })
                .map_err(io)?;
            }
        }
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'batch'",
            [batch as i64],
        )
        .map_err(io)?;
    }
    tx.commit().map_err(io)?;
    heads.extend(moved.iter().map(|(k, v)| (k.clone(), *v)));
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(limit: &str, key: &str, amount: &str) -> (Row, String) {
        (
            Row {
                limit: limit.into(),
                group_key: key.into(),
                amount: Amount::parse(amount).unwrap(),
                token: "T".into(),
            },
            format!("g={key}"),
        )
    }

    /// Decides a fresh `id` in one group, holding `hold`, and returns the
    /// usage the decision saw once its batch committed.
    fn decide_seeing(
        s: &SqliteStore,
        id: &str,
        group: GroupRef,
        hold: &[(Row, String)],
        now: i64,
        approved: bool,
    ) -> Usage {
        let mut seen = None;
        let out = s
            .decide(
                id,
                &[2; 32],
                &[group],
                hold,
                Some(now),
                &|_| true,
                &mut |_, u| {
                    seen = Some(u[0]);
                    Verdict {
                        answer: String::new(),
                        approved,
                    }
                },
            )
            .unwrap();
        match out {
            Outcome::Decided(p) => p.wait().unwrap(),
            Outcome::Prior(_) => panic!("fresh id {id}"),
        }
        seen.unwrap()
    }

    fn usage(s: &SqliteStore, limit: &str, key: &str, window_ms: i64, now: i64) -> Usage {
        let g = GroupRef {
            limit: limit.into(),
            key: key.into(),
            window_ms,
        };
        let id = format!("probe-{now}-{}", rand::random::<u64>());
        decide_seeing(s, &id, g, &[], now, false)
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.sqlite")).unwrap();
        (dir, s)
    }

    #[test]
    fn usage_is_exact_inside_the_window_and_excludes_its_start() {
        let (_d, s) = store();
        for (i, (t, a)) in [
            (1_000, "1.5"),
            (2_000, "2.25"),
            (3_000, "0.000000000000000001"),
        ]
        .iter()
        .enumerate()
        {
            s.seed(&format!("r{i}"), *t, &[row("l", "g", a)]).unwrap();
        }
        let u = usage(&s, "l", "g", 10_000, 3_000);
        assert_eq!(
            (u.amount.to_string(), u.count),
            ("3.750000000000000001".into(), 3)
        );
        // (since, now]: a row exactly at now - window is outside.
        let u = usage(&s, "l", "g", 2_000, 3_000);
        assert_eq!(
            (u.amount.to_string(), u.count),
            ("2.250000000000000001".into(), 2)
        );
        let u = usage(&s, "l", "g", 500, 10_000);
        assert_eq!(u, Usage::default());
        // Other groups and limits are separate.
        assert_eq!(usage(&s, "l", "h", 10_000, 3_000), Usage::default());
        assert_eq!(usage(&s, "m", "g", 10_000, 3_000), Usage::default());
    }

    fn approval(id: &str) -> crate::store::ApprovalRecord {
        crate::store::ApprovalRecord {
            request_id: id.into(),
            request_type: "KEYSIGN".into(),
            at_ms: 1_000,
            digest: "ab".into(),
            facts: format!("{{\"of\":\"{id}\"}}"),
        }
    }

    #[test]
    fn task_states_release_and_rehold_exactly_their_own_rows() {
        use crate::store::TaskState::*;
        let (_d, s) = store();
        for id in ["a", "b", "c"] {
            s.seed(id, 1_000, &[row("l", "g", "10"), row("m", "h", "1")])
                .unwrap();
            s.record_approval(&approval(id)).unwrap().wait().unwrap();
        }
        // The first record of an id wins.
        let mut other = approval("a");
        other.facts = "{}".into();
        s.record_approval(&other).unwrap().wait().unwrap();
        let a = s.approval("a").unwrap().unwrap();
        assert_eq!(
            (a.record.facts.as_str(), a.state),
            ("{\"of\":\"a\"}", Approved)
        );
        assert!(s.approval("zz").unwrap().is_none());

        let u = |s: &SqliteStore| usage(s, "l", "g", 100_000, 2_000).amount.to_string();
        assert_eq!(u(&s), "30");
        // Released: exactly a's rows stop counting, in both its groups.
        let t = s
            .transition("a", Released, 1_500, "event e1 failed")
            .unwrap();
        assert_eq!(
            (t.before, t.after, t.rows),
            (Some(Approved), Some(Released), 2)
        );
        assert_eq!(u(&s), "20");
        assert_eq!(usage(&s, "m", "h", 100_000, 2_000).count, 2);
        // Again: nothing more.
        let t = s
            .transition("a", Released, 1_600, "event e2 failed")
            .unwrap();
        assert_eq!(
            (t.before, t.after, t.rows),
            (Some(Released), Some(Released), 0)
        );
        assert_eq!(u(&s), "20");
        // A late `succeeded` re-holds them.
        let t = s
            .transition("a", Executed, 1_700, "event e3 succeeded")
            .unwrap();
        assert_eq!(
            (t.before, t.after, t.rows),
            (Some(Released), Some(Executed), 2)
        );
        assert_eq!(u(&s), "30");
        // Executed never goes back to released.
        let t = s
            .transition("a", Released, 1_800, "event e4 failed")
            .unwrap();
        assert_eq!(
            (t.before, t.after, t.rows),
            (Some(Executed), Some(Executed), 0)
        );
        assert_eq!(u(&s), "30");
        // A hand-made void stays when a later `succeeded` re-holds the
        // event's voids.
        let conn = connect(s.path(), false).unwrap();
        assert_eq!(void(&conn, "b", 1_900, "checked the chain").unwrap(), 2);
        assert_eq!(u(&s), "20");
        let t = s
            .transition("b", Released, 2_000, "event e5 failed")
            .unwrap();
        assert_eq!(t.rows, 0, "nothing left to release");
        let t = s
            .transition("b", Executed, 2_100, "event e6 succeeded")
            .unwrap();
        assert_eq!((t.after, t.rows), (Some(Executed), 0));
        assert_eq!(u(&s), "20", "the manual void stands");
        // Unknown request: nothing.
        let t = s
            .transition("nope", Released, 2_200, "event e7 failed")
            .unwrap();
        assert_eq!((t.before, t.after, t.rows), (None, None, 0));
        let b = s.approval("b").unwrap().unwrap();
        assert_eq!(b.changed, Some((2_100, "event e6 succeeded".into())));
        let listed: Vec<String> = s
            .approvals(0, 10)
            .unwrap()
            .into_iter()
            .map(|a| a.record.request_id)
            .collect();
        assert_eq!(listed.len(), 3);
    }

    #[test]
    fn events_are_stored_once_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let ev = crate::store::StoredEvent {
            event_id: "e1".into(),
            received_at_ms: 5,
            node_id: "n".into(),
            event_type: "request.keysign.failed".into(),
            request_id: "r".into(),
            body: "{}".into(),
        };
        {
            let s = SqliteStore::open(&path).unwrap();
            assert!(!s.event_stored("e1").unwrap());
            assert!(s.put_event(&ev).unwrap());
            assert!(s.event_stored("e1").unwrap());
            let mut again = ev.clone();
            again.body = "{\"other\":1}".into();
            assert!(!s.put_event(&again).unwrap());
            s.record_approval(&approval("r")).unwrap().wait().unwrap();
            s.transition("r", crate::store::TaskState::Released, 6, "event e1")
                .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert!(!s.put_event(&ev).unwrap(), "still there after a reopen");
        assert!(s.event_stored("e1").unwrap() && !s.event_stored("e2").unwrap());
        let conn = connect(&path, false).unwrap();
        let body: String = conn
            .query_row("SELECT body FROM events WHERE event_id = 'e1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(body, "{}", "the first delivery is kept");
        assert_eq!(
            s.approval("r").unwrap().unwrap().state,
            crate::store::TaskState::Released
        );
    }

    #[test]
    fn a_version_1_file_migrates_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.sqlite");
        {
            let mut conn = connect(&path, true).unwrap();
            let tx = conn.transaction().unwrap();
            tx.execute_batch(SCHEMA).unwrap();
            tx.pragma_update(None, "user_version", 1).unwrap();
            tx.execute(
                "INSERT INTO ledger (limit_id, group_key, seq, at_ms, request_id, group_name, token, amount, cum_amount, cum_count, digest) \
                 VALUES ('l', 'g', 1, 1000, 'old', 'g', 'T', '5', '5', 1, 'd')",
                [],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let conn = connect(&path, false).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        assert_eq!(usage(&s, "l", "g", 100_000, 2_000).count, 1);
        // Its old rows can be released by a task's failure like new ones.
        s.record_approval(&approval("old")).unwrap().wait().unwrap();
        let t = s
            .transition("old", crate::store::TaskState::Released, 1_500, "event x")
            .unwrap();
        assert_eq!(t.rows, 1);
        assert_eq!(usage(&s, "l", "g", 100_000, 2_000).count, 0);
    }

    fn approval_at(id: &str, at_ms: i64) -> crate::store::ApprovalRecord {
        crate::store::ApprovalRecord {
            at_ms,
            ..approval(id)
        }
    }

    /// A decision under a cap on ("l", "g") as the pipeline makes it: the
    /// rows are held only when they fit, and approved only then.
    fn capped(s: &SqliteStore, id: &str, now: i64, amount: &str, cap: &str) -> bool {
        let g = [GroupRef {
            limit: "l".into(),
            key: "g".into(),
            window_ms: 1_000_000,
        }];
        let a = Amount::parse(amount).unwrap();
        let cap = Amount::parse(cap).unwrap();
        let fits = |u: &[Usage]| u[0].amount.checked_add(a).is_some_and(|t| t <= cap);
        let mut approved = false;
        let out = s
            .decide(
                id,
                &[4; 32],
                &g,
                &[row("l", "g", amount)],
                Some(now),
                &fits,
                &mut |_, u| {
                    approved = fits(u);
                    Verdict {
                        answer: if approved { "A" } else { "R" }.into(),
                        approved,
                    }
                },
            )
            .unwrap();
        match out {
            Outcome::Decided(p) => p.wait().unwrap(),
            Outcome::Prior(_) => panic!("fresh id"),
        }
        approved
    }

    #[test]
    fn every_edge_of_the_task_state_machine() {
        use crate::store::TaskState::*;
        let (_d, s) = store();
        let u = |s: &SqliteStore| usage(s, "l", "g", 100_000, 5_000);
        for (i, id) in ["ap", "ex", "re"].iter().enumerate() {
            s.seed(id, 1_000, &[row("l", "g", "10")]).unwrap();
            s.record_approval(&approval_at(id, 1_000 + i as i64))
                .unwrap()
                .wait()
                .unwrap();
        }
        let t = s
            .transition("ex", Executed, 1_100, "event x1 succeeded")
            .unwrap();
        assert_eq!(
            (t.before, t.after, t.rows),
            (Some(Approved), Some(Executed), 0),
            "executing keeps the rows"
        );
        assert_eq!(u(&s).amount.to_string(), "30");
        let t = s
            .transition("re", Released, 1_100, "event r1 failed")
            .unwrap();
        assert_eq!(
            (t.before, t.after, t.rows),
            (Some(Approved), Some(Released), 1)
        );
        assert_eq!(u(&s).amount.to_string(), "20");
        // Every edge that changes nothing: same state, to Approved, and
        // Executed → Released.
        for (id, to, stays) in [
            ("ap", Approved, Approved),
            ("ex", Executed, Executed),
            ("ex", Approved, Executed),
            ("ex", Released, Executed),
            ("re", Released, Released),
            ("re", Approved, Released),
        ] {
            let was = s.approval(id).unwrap().unwrap();
            let t = s.transition(id, to, 1_200, "event later").unwrap();
            assert_eq!(
                (t.before, t.after, t.rows),
                (Some(stays), Some(stays), 0),
                "{id} to {to:?}"
            );
            assert_eq!(s.approval(id).unwrap().unwrap(), was, "{id} to {to:?}");
            assert_eq!(u(&s).amount.to_string(), "20", "{id} to {to:?}");
        }
        assert_eq!(
            s.approval("ex").unwrap().unwrap().changed,
            Some((1_100, "event x1 succeeded".into())),
            "the last change is kept, not the refused one"
        );
        let t = s
            .transition("ap", Executed, 1_300, "event a1 succeeded")
            .unwrap();
        assert_eq!(
            (t.before, t.after, t.rows),
            (Some(Approved), Some(Executed), 0)
        );
        let t = s
            .transition("re", Executed, 1_400, "event r2 succeeded")
            .unwrap();
        assert_eq!(
            (t.before, t.after, t.rows),
            (Some(Released), Some(Executed), 1)
        );
        assert_eq!(u(&s).amount.to_string(), "30");
        assert_eq!(u(&s).count, 3);
        // Newest first, at most `limit`, only after `since`.
        let ids = |since, limit| -> Vec<String> {
            s.approvals(since, limit)
                .unwrap()
                .into_iter()
                .map(|a| a.record.request_id)
                .collect()
        };
        assert_eq!(ids(0, 10), ["re", "ex", "ap"]);
        assert_eq!(ids(0, 2), ["re", "ex"]);
        assert_eq!(ids(1_000, 10), ["re", "ex"]);
    }

    #[test]
    fn a_release_makes_room_for_exactly_its_amount_and_a_rehold_takes_it_back() {
        use crate::store::TaskState::*;
        let (_d, s) = store();
        s.seed("a", 1_000, &[row("l", "g", "10")]).unwrap();
        s.seed("b", 1_100, &[row("l", "g", "15")]).unwrap();
        for id in ["a", "b"] {
            s.record_approval(&approval(id)).unwrap().wait().unwrap();
        }
        assert!(!capped(&s, "c1", 2_000, "6", "30"));
        assert!(capped(&s, "c2", 2_000, "5", "30"), "exactly full");
        let t = s
            .transition("a", Released, 2_500, "event f failed")
            .unwrap();
        assert_eq!(t.rows, 1);
        // Room for a's 10, not one unit more, for the very next decision.
        assert!(!capped(&s, "d1", 3_000, "10.000000000000000001", "30"));
        assert!(capped(&s, "d2", 3_000, "10", "30"));
        assert!(!capped(&s, "d3", 3_000, "0.000000000000000001", "30"));
        // The node's late `succeeded`: a counts again (it spent the amount),
        // over the cap, so nothing more fits.
        let t = s
            .transition("a", Executed, 3_500, "event s succeeded")
            .unwrap();
        assert_eq!(t.rows, 1);
        let now = usage(&s, "l", "g", 1_000_000, 4_000);
        assert_eq!((now.amount.to_string(), now.count), ("40".into(), 4));
        assert!(!capped(&s, "e1", 4_000, "0.000000000000000001", "30"));
        // A release while another decision's rows are still held (not yet
        // committed) leaves both counted exactly once.
        let g = [GroupRef {
            limit: "l".into(),
            key: "g".into(),
            window_ms: 1_000_000,
        }];
        s.record_approval(&approval("h")).unwrap().wait().unwrap();
        let out = s
            .decide(
                "h",
                &[5; 32],
                &g,
                &[row("l", "g", "7")],
                Some(5_000),
                &|_| true,
                &mut |_, _| Verdict {
                    answer: "A".into(),
                    approved: true,
                },
            )
            .unwrap();
        let t = s
            .transition("b", Released, 5_000, "event g failed")
            .unwrap();
        assert_eq!(t.rows, 1);
        let now = usage(&s, "l", "g", 1_000_000, 5_000);
        assert_eq!((now.amount.to_string(), now.count), ("32".into(), 4));
        let Outcome::Decided(p) = out else { panic!() };
        p.wait().unwrap();
        let now = usage(&s, "l", "g", 1_000_000, 5_000);
        assert_eq!((now.amount.to_string(), now.count), ("32".into(), 4));
    }

    #[test]
    fn releases_rehold_and_decisions_racing_on_one_group_stay_exact_across_a_reopen() {
        use crate::store::TaskState::*;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let s = SqliteStore::open(&path).unwrap();
        for i in 0..50 {
            let id = format!("s{i}");
            s.seed(&id, 1_000, &[row("l", "g", "1")]).unwrap();
            s.record_approval(&approval(&id)).unwrap().wait().unwrap();
        }
        // Full (50 of 50). Two threads release the same 20 tasks (each is
        // released once) while four decide against the cap.
        let (released, approved) = std::thread::scope(|sc| {
            let s = &s;
            let rel: Vec<_> = (0..2)
                .map(|_| {
                    sc.spawn(move || {
                        (0..20)
                            .map(|i| {
                                s.transition(&format!("s{i}"), Released, 2_000, "event failed")
                                    .unwrap()
                                    .rows
                            })
                            .sum::<usize>()
                    })
                })
                .collect();
            let dec: Vec<_> = (0..4)
                .map(|t| {
                    sc.spawn(move || {
                        (0..8)
                            .filter(|i| capped(s, &format!("d{t}-{i}"), 3_000, "1", "50"))
                            .count()
                    })
                })
                .collect();
            (
                rel.into_iter().map(|h| h.join().unwrap()).sum::<usize>(),
                dec.into_iter().map(|h| h.join().unwrap()).sum::<usize>(),
            )
        });
        assert_eq!(released, 20);
        let mut more = 0;
        while capped(&s, &format!("m{more}"), 4_000, "1", "50") {
            more += 1;
        }
        assert_eq!(approved + more, 20, "exactly the released room was used");
        let u = usage(&s, "l", "g", 1_000_000, 5_000);
        assert_eq!((u.amount.to_string(), u.count), ("50".into(), 50));
        // Two threads re-hold the same 10 (each re-held once).
        let reheld: usize = std::thread::scope(|sc| {
            let s = &s;
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    sc.spawn(move || {
                        (0..10)
                            .map(|i| {
                                s.transition(&format!("s{i}"), Executed, 6_000, "event ok")
                                    .unwrap()
                                    .rows
                            })
                            .sum::<usize>()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(reheld, 10);
        let u = usage(&s, "l", "g", 1_000_000, 7_000);
        assert_eq!((u.amount.to_string(), u.count), ("60".into(), 60));
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        let u = usage(&s, "l", "g", 1_000_000, 7_000);
        assert_eq!((u.amount.to_string(), u.count), ("60".into(), 60));
        let state = |id: &str| s.approval(id).unwrap().unwrap().state;
        assert_eq!(
            (state("s0"), state("s15"), state("s30")),
            (Executed, Released, Approved)
        );
        assert!(!capped(&s, "over", 7_000, "10.000000000000000001", "70"));
        assert!(capped(&s, "fits", 7_000, "10", "70"));
    }

    /// The usage a decision sees (from the in-memory heads and first rows
    /// once they are known) always equals the usage read afresh from
    /// SQLite, as time moves on, windows of several lengths (so a window's
    /// start also moves back), approvals land in the queried groups, and
    /// rows are voided behind the server's back (`ledger void`).
    #[test]
    fn remembered_window_starts_give_the_same_usage_as_sqlite() {
        use rand::{Rng, SeedableRng};
        let (_d, s) = store();
        let conn = connect(s.path(), false).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        let mut now = 10_000i64;
        let mut ids = Vec::new();
        for step in 0..600 {
            now += [0, 1, 7, 150, 900][rng.gen_range(0..5)];
            let key = ["g1", "g2"][rng.gen_range(0..2)];
            let window = [1_000, 2_500, 10_000][rng.gen_range(0..3)];
            match rng.gen_range(0..10) {
                0..=4 => {
                    let id = format!("a{step}");
                    let g = GroupRef {
                        limit: "l".into(),
                        key: key.into(),
                        window_ms: window,
                    };
                    let amount = rng.gen_range(1..1_000u32).to_string();
                    let hold = [row("l", key, &amount)];
                    let seen = decide_seeing(&s, &id, g, &hold, now, true);
                    let truth = sql_usage(&conn, "l", key, now - window).unwrap();
                    // What the decision saw excludes its own row.
                    let mut with_own = seen;
                    with_own.amount = with_own
                        .amount
                        .checked_add(Amount::parse(&amount).unwrap())
                        .unwrap();
                    with_own.count += 1;
                    assert_eq!(
                        with_own, truth,
                        "step {step}: approval in {key}, window {window}"
                    );
                    ids.push(id);
                }
                5 if !ids.is_empty() => {
                    let id = &ids[rng.gen_range(0..ids.len())];
                    void(&conn, id, now, "test").unwrap();
                }
                _ => {
                    let truth = sql_usage(&conn, "l", key, now - window).unwrap();
                    assert_eq!(
                        usage(&s, "l", key, window, now),
                        truth,
                        "step {step}: {key}, window {window}"
                    );
                }
            }
        }
        assert!(!lock(&s.shared.pending).tails.is_empty());
    }

    #[test]
    fn the_commit_hook_runs_before_each_batch_is_durable() {
        let (_d, s) = store();
        let seen = Arc::new(AtomicU64::new(0));
        let count = seen.clone();
        s.set_commit_hook(Arc::new(move || {
            count.fetch_add(1, Ordering::SeqCst);
        }));
        for i in 0..3 {
            // Each decision waits for its commit: the hook ran before it.
            usage(&s, "l", "k", 60_000, 1_000 + i);
            assert!(seen.load(Ordering::SeqCst) > i as u64, "decision {i}");
        }
        assert_eq!(s.batch_window(), Duration::ZERO, "open() commits at once");
    }

    #[test]
    fn a_group_commit_goes_once_nobody_is_left_to_join_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open_with(&dir.path().join("s.sqlite"), Duration::from_millis(50))
            .unwrap();
        let deciding = Arc::new(AtomicU64::new(1));
        let d = deciding.clone();
        s.set_load_hint(Arc::new(move || d.load(Ordering::SeqCst) as usize));
        // Five bursts of 20 decisions queued back to back (fast traffic),
        // each burst waited for before the next.
        let run = |from: i64| {
            let t = Instant::now();
            for b in 0..5 {
                let pending: Vec<Pending> = (0..20)
                    .map(|i| {
                        let id = format!("r-{from}-{b}-{i}");
                        let g = GroupRef {
                            limit: "l".into(),
                            key: "k".into(),
                            window_ms: 60_000,
                        };
                        let verdict = &mut |_, _: &[Usage]| Verdict {
                            answer: String::new(),
                            approved: false,
                        };
                        match s.decide(&id, &[2; 32], &[g], &[], Some(from), &|_| true, verdict) {
                            Ok(Outcome::Decided(p)) => p,
                            _ => panic!("{id} not decided"),
                        }
                    })
                    .collect();
                for p in pending {
                    p.wait().unwrap();
                }
            }
            t.elapsed()
        };
        // Another request still being decided: each burst's commit waits
        // its 50 ms for it.
        let waited = run(1_000);
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        // Nobody else being decided: nobody can join, each goes at once.
        deciding.store(0, Ordering::SeqCst);
        let alone = run(2_000);
        assert!(alone < waited / 2, "{alone:?} against {waited:?}");
    }

    #[test]
    fn the_group_commit_waits_only_for_fast_traffic() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // One approval every 3 ms: never held back.
        let mut p = Pace::new(ms(8));
        for i in 0..50 {
            p.arrived(t0 + ms(3 * i));
        }
        assert_eq!(p.wait_until(1, t0 + ms(147), None), None);
        // Ten a millisecond: wait up to the configured time after the first.
        let mut p = Pace::new(ms(8));
        for i in 0..50 {
            p.arrived(t0 + Duration::from_micros(100 * i));
        }
        let first = t0 + ms(5);
        assert_eq!(p.wait_until(1, first, None), Some(first + ms(8)));
        assert_eq!(p.wait_until(1, first, Some(5)), Some(first + ms(8)));
        assert_eq!(p.wait_until(3, first, Some(1)), Some(first + ms(8)));
        // Nobody still being decided: nobody can join.
        assert_eq!(p.wait_until(1, first, Some(0)), None);
        assert_eq!(p.wait_until(3, first, Some(0)), None);
        assert_eq!(
            p.wait_until(GROUP_COMMIT_BATCH, first, None),
            None,
            "a full batch goes at once"
        );
        // After a quiet second the average is above the threshold again.
        p.arrived(t0 + ms(1_100));
        assert_eq!(p.wait_until(1, t0 + ms(1_100), None), None);
        // Switched off.
        let mut p = Pace::new(Duration::ZERO);
        for i in 0..50 {
            p.arrived(t0 + Duration::from_micros(100 * i));
        }
        assert_eq!(p.wait_until(1, t0, None), None);
    }

    #[test]
    fn voids_release_and_pruning_old_rows_keeps_totals() {
        let (_d, s) = store();
        for i in 0..10 {
            s.seed(&format!("r{i}"), 1_000 * (i + 1), &[row("l", "g", "10")])
                .unwrap();
        }
        let conn = connect(s.path(), false).unwrap();
        assert_eq!(void(&conn, "r7", 50_000, "never ran").unwrap(), 1);
        assert_eq!(void(&conn, "r7", 50_000, "again").unwrap(), 0);
        let u = usage(&s, "l", "g", 100_000, 10_000);
        assert_eq!((u.amount.to_string(), u.count), ("90".into(), 9));
        // Rows older than retention are deleted from the start of a group:
        // the running totals of the rest still give the window exactly.
        conn.execute("DELETE FROM ledger WHERE at_ms <= 3000", [])
            .unwrap();
        let u = usage(&s, "l", "g", 4_500, 10_000);
        assert_eq!(
            (u.amount.to_string(), u.count),
            ("40".into(), 4),
            "r5..r9 minus r7"
        );
        let u = usage(&s, "l", "g", 100_000, 10_000);
        assert_eq!((u.amount.to_string(), u.count), ("60".into(), 6));
    }

    #[test]
    fn peaks_are_each_limits_fullest_group_inside_its_window() {
        let (_d, s) = store();
        s.seed("r1", 1_000, &[row("l", "a", "10"), row("m", "x", "1")])
            .unwrap();
        s.seed("r2", 2_000, &[row("l", "a", "10")]).unwrap();
        s.seed("r3", 3_000, &[row("l", "a", "10")]).unwrap();
        s.seed("r4", 3_500, &[row("l", "b", "25")]).unwrap();
        let conn = connect(s.path(), false).unwrap();
        let peaks = |windows: &[(&str, i64)], now: i64| -> Vec<(String, u64)> {
            let w: Vec<(String, i64)> = windows.iter().map(|(l, w)| (l.to_string(), *w)).collect();
            peaks_on(&conn, &w, now)
                .unwrap()
                .into_iter()
                .map(|u| (u.amount.to_string(), u.count))
                .collect()
        };
        assert_eq!(
            peaks(&[("l", 10_000), ("m", 10_000), ("gone", 10_000)], 4_000),
            [("30".into(), 3), ("1".into(), 1), ("0".into(), 0)]
        );
        // A voided row stops counting: the largest amount and the largest
        // count are now different groups' (b's 25, a's 2 rows).
        assert_eq!(void(&conn, "r3", 4_000, "never ran").unwrap(), 1);
        assert_eq!(peaks(&[("l", 10_000)], 4_000), [("25".into(), 2)]);
        // (since, now]: the window slides past a's rows, then b's.
        assert_eq!(peaks(&[("l", 2_000)], 4_000), [("25".into(), 1)]);
        assert_eq!(peaks(&[("l", 600)], 4_000), [("25".into(), 1)]);
        assert_eq!(peaks(&[("l", 600)], 4_100), [("0".into(), 0)]);
        // Through the trait: now, by the wall clock.
        let w = [("l".to_owned(), 10_000), ("m".to_owned(), 3_000)];
        let p = Store::peaks(&s, &w).unwrap();
        assert_eq!(
            p,
            [Usage::default(); 2],
            "the wall clock is long past 2000 ms"
        );
        let now = crate::pipeline::now_ms();
        s.seed(
            "r5",
            now,
            &[row("m", "x", "4"), row("m", "y", "2"), row("m", "y", "2")],
        )
        .unwrap();
        let p = Store::peaks(&s, &w).unwrap();
        assert_eq!((p[1].amount.to_string(), p[1].count), ("4".into(), 2));
        // Groups are found by seeks on the primary key, never a sort; their
        // usage by the decisions' own queries.
        for q in [Q_FIRST_GROUP, Q_NEXT_GROUP] {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {q}")).unwrap();
            let params: &[&dyn rusqlite::ToSql] = &[&"l", &"k"];
            let plan: Vec<String> = stmt
                .query_map(&params[..stmt.parameter_count()], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join(" | ");
            assert!(
                plan.contains("USING PRIMARY KEY (limit_id=?"),
                "{q}: {plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{q}: {plan}");
        }
    }

    #[test]
    fn a_retry_finds_its_record_and_another_payload_is_told_apart() {
        let (_d, s) = store();
        let g = [GroupRef {
            limit: "l".into(),
            key: "g".into(),
            window_ms: 1_000,
        }];
        let hold = [row("l", "g", "1")];
        let mut calls = 0;
        let mut decide = |_: i64, _: &[Usage]| {
            calls += 1;
            Verdict {
                answer: "A".into(),
                approved: true,
            }
        };
        match s
            .decide("x", &[7; 32], &g, &hold, None, &|_| true, &mut decide)
            .unwrap()
        {
            Outcome::Decided(p) => p.wait().unwrap(),
            Outcome::Prior(_) => panic!(),
        }
        for (digest, want) in [
            ([7; 32], Prior::Same("A".into())),
            ([8; 32], Prior::Different),
        ] {
            match s
                .decide("x", &digest, &g, &hold, None, &|_| true, &mut decide)
                .unwrap()
            {
                Outcome::Prior(p) => assert_eq!(p, want),
                Outcome::Decided(_) => panic!("decided twice"),
            }
        }
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_rejection_releases_its_hold_and_held_rows_count_once() {
        let (_d, s) = store();
        let g = [GroupRef {
            limit: "l".into(),
            key: "g".into(),
            window_ms: 100_000,
        }];
        let hold = [row("l", "g", "5")];
        // Rejected: nothing stays.
        let out = s
            .decide(
                "r1",
                &[1; 32],
                &g,
                &hold,
                Some(1_000),
                &|_| true,
                &mut |_, _| Verdict {
                    answer: "R".into(),
                    approved: false,
                },
            )
            .unwrap();
        let Outcome::Decided(p) = out else { panic!() };
        p.wait().unwrap();
        assert_eq!(usage(&s, "l", "g", 100_000, 2_000), Usage::default());
        // Approved but not yet committed: counted by the next reader, once,
        // and exactly once again after the commit.
        let out = s
            .decide(
                "r2",
                &[2; 32],
                &g,
                &hold,
                Some(3_000),
                &|_| true,
                &mut |_, _| Verdict {
                    answer: "A".into(),
                    approved: true,
                },
            )
            .unwrap();
        let seen = usage(&s, "l", "g", 100_000, 4_000);
        assert_eq!((seen.amount.to_string(), seen.count), ("5".into(), 1));
        let Outcome::Decided(p) = out else { panic!() };
        p.wait().unwrap();
        let seen = usage(&s, "l", "g", 100_000, 5_000);
        assert_eq!((seen.amount.to_string(), seen.count), ("5".into(), 1));
        // Concurrent readers and committers: every reader sees 5 * k for
        // some k, never a double count.
        let s = std::sync::Arc::new(s);
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let id = format!("w{t}-{i}");
                        let g = [GroupRef {
                            limit: "l".into(),
                            key: "g".into(),
                            window_ms: 1 << 40,
                        }];
                        let out = s
                            .decide(
                                &id,
                                &[3; 32],
                                &g,
                                &[row("l", "g", "5")],
                                None,
                                &|_| true,
                                &mut |_, _| Verdict {
                                    answer: "A".into(),
                                    approved: true,
                                },
                            )
                            .unwrap();
                        if let Outcome::Decided(p) = out {
                            p.wait().unwrap();
                        }
                    }
                })
            })
            .collect();
        let mut last = 0;
        for _ in 0..200 {
            let u = usage(&s, "l", "g", 1 << 40, crate::pipeline::now_ms());
            assert_eq!(u.amount.to_string(), (u.count * 5).to_string());
            assert!(
                u.count >= last,
                "usage never goes back: {} < {last}",
                u.count
            );
            last = u.count;
        }
        for w in writers {
            w.join().unwrap();
        }
        // r2 (at t = 3000) is long outside this window; the 100 are inside.
        let u = usage(&s, "l", "g", 1 << 40, crate::pipeline::now_ms());
        assert_eq!(u.count, 100);
    }

    #[test]
    fn a_second_process_and_a_newer_schema_are_refused() {
        let (d, s) = store();
        let path = d.path().join("s.sqlite");
        let e = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(e.contains("another tss-gate process"), "{e}");
        drop(s);
        let conn = connect(&path, false).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let e = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(e.contains("newer than this tss-gate"), "{e}");
    }

    #[test]
    fn every_query_of_a_decision_uses_an_index() {
        let (_d, s) = store();
        let conn = connect(s.path(), false).unwrap();
        for q in [Q_HEAD, Q_FIRST, Q_VOIDED, Q_RECORD] {
            let sql = format!("EXPLAIN QUERY PLAN {q}");
            let mut stmt = conn.prepare(&sql).unwrap();
            let n = stmt.parameter_count();
            let params: Vec<&dyn rusqlite::ToSql> =
                (0..n).map(|_| &0 as &dyn rusqlite::ToSql).collect();
            let plan: Vec<String> = stmt
                .query_map(params.as_slice(), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join(" | ");
            assert!(
                plan.contains("USING") && !plan.contains("SCAN"),
                "{q}: {plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{q} sorts: {plan}");
            if q == Q_VOIDED {
                // Only voided rows, never the whole window.
                assert!(plan.contains("ledger_voided"), "{plan}");
            }
        }
    }
}
