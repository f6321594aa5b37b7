//! The embedded store: one SQLite file (WAL, `synchronous=FULL`) that one
//! server process owns (an exclusive lock beside it refuses a second).
//!
//! Exact totals without scanning: each ledger row carries its group's
//! running total (`cum_amount`, `cum_count`) up to and including itself, so
//! a window's usage is `head - (first_in_window - its own amount)`: two
//! indexed point lookups whatever the number of rows. Voided rows are
//! subtracted (a partial index keeps that lookup small). Amounts are
//! integers of 10^-18 units in TEXT, summed in Rust, never by SQLite's
//! floating `total()`.
//!
//! Durability without an fsync per request: rows decided under the group
//! locks are held in memory (`pending`) and counted by every later reader,
//! while one writer thread commits them in batches; an answer leaves only
//! after its batch committed. A failed commit drops its rows and its
//! answer becomes status 30; later rows that counted it over-count, which
//! fails closed.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
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
pub const SCHEMA_VERSION: i64 = 1;

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
    PRIMARY KEY (limit_id, group_key, seq)
) WITHOUT ROWID;
CREATE INDEX ledger_window ON ledger (limit_id, group_key, at_ms);
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
";

/// The queries a decision runs, named for `ledger plan` and tests.
pub const Q_HEAD: &str = "SELECT seq, at_ms, cum_amount, cum_count FROM ledger \
     WHERE limit_id = ?1 AND group_key = ?2 ORDER BY seq DESC LIMIT 1";
pub const Q_FIRST: &str = "SELECT amount, cum_amount, cum_count FROM ledger \
     WHERE limit_id = ?1 AND group_key = ?2 AND at_ms > ?3 ORDER BY at_ms, seq LIMIT 1";
pub const Q_VOIDED: &str = "SELECT amount FROM ledger \
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

#[derive(Debug, Clone)]
struct Held {
    seq: i64,
    at_ms: i64,
    amount: Amount,
    cum: Amount,
    count: i64,
}

impl Held {
    fn head(&self) -> Head {
        Head {
            seq: self.seq,
            at_ms: self.at_ms,
            cum: self.cum,
            count: self.count,
        }
    }
}

#[derive(Default)]
struct PendingState {
    /// Rows decided but not yet committed, per `limit\0group_key`.
    rows: HashMap<String, Vec<Held>>,
    /// Answers decided but not yet committed: id → (digest hex, answer).
    records: HashMap<String, (String, String)>,
}

struct Shared {
    reader: Mutex<Connection>,
    pending: Mutex<PendingState>,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    clock: AtomicI64,
}

struct InsertRow {
    slot: String,
    limit: String,
    key: String,
    held: Held,
    request_id: String,
    display: String,
    token: String,
    digest: String,
}

struct Job {
    rows: Vec<InsertRow>,
    record: Option<(String, String, i64, String)>,
    reply: Option<tokio::sync::oneshot::Sender<Result<(), StoreError>>>,
}

pub struct SqliteStore {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
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
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
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
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(|e| open_err(path, e))?;
        tx.commit().map_err(|e| open_err(path, e))?;
    }
    Ok(())
}

/// Creates a file readable by its owner only: it holds who moved what where.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| open_err(path, e))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| open_err(path, e))
}

impl SqliteStore {
    /// Opens (creating on first start) the store at `path` and starts its
    /// writer. Fails if another process holds it, or it is damaged, or
    /// its schema is newer than this binary's.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        create_private(path)?;
        let lock_path = path.with_extension("lock");
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
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
        let shared = Arc::new(Shared {
            reader: Mutex::new(reader),
            pending: Mutex::new(PendingState::default()),
            locks: Mutex::new(HashMap::new()),
            clock: AtomicI64::new(0),
        });
        let (tx, rx) = mpsc::channel::<Job>();
        let sh = shared.clone();
        let handle = std::thread::Builder::new()
            .name("tss-store".into())
            .spawn(move || writer_loop(writer, rx, sh))
            .map_err(|e| open_err(path, e))?;
        Ok(SqliteStore {
            shared,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            path: path.to_owned(),
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
        let usage = sql_usage(conn, &limit, &key, since, &[])?;
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
    conn.execute(
        "UPDATE ledger SET voided_at = ?2, void_reason = ?3 WHERE request_id = ?1 AND voided_at IS NULL",
        params![request_id, at_ms, reason],
    )
    .map_err(io)
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

/// Usage in (since, now] from committed rows, plus `held` (rows not yet
/// committed, all newer than any committed row of the group).
fn sql_usage(
    conn: &Connection,
    limit: &str,
    key: &str,
    since: i64,
    held: &[Held],
) -> Result<Usage, StoreError> {
    let head = match held.last() {
        Some(h) => Head {
            seq: h.seq,
            at_ms: h.at_ms,
            cum: h.cum,
            count: h.count,
        },
        None => match sql_head(conn, limit, key)? {
            Some(h) => h,
            None => return Ok(Usage::default()),
        },
    };
    let first = {
        let mut stmt = conn.prepare_cached(Q_FIRST).map_err(io)?;
        stmt.query_row(params![limit, key, since], |r| {
            let a: String = r.get(0)?;
            let c: String = r.get(1)?;
            Ok((parse_amount(&a)?, parse_amount(&c)?, r.get::<_, i64>(2)?))
        })
        .optional()
        .map_err(io)?
    };
    let first = first.or_else(|| {
        held.iter()
            .find(|h| h.at_ms > since)
            .map(|h| (h.amount, h.cum, h.count))
    });
    let Some((amount, cum, count)) = first else {
        return Ok(Usage::default());
    };
    let before = cum.saturating_sub(amount);
    let mut used = head.cum.saturating_sub(before);
    let mut n = head.count - (count - 1);
    let mut stmt = conn.prepare_cached(Q_VOIDED).map_err(io)?;
    let voided = stmt
        .query_map(params![limit, key, since], |r| {
            parse_amount(&r.get::<_, String>(0)?)
        })
        .map_err(io)?;
    for v in voided {
        used = used.saturating_sub(v.map_err(io)?);
        n -= 1;
    }
    Ok(Usage {
        amount: used,
        count: n.max(0) as u64,
    })
}

fn slot(limit: &str, key: &str) -> String {
    format!("{limit}\0{key}")
}

impl Store for SqliteStore {
    fn decide(
        &self,
        request_id: &str,
        digest: &[u8; 32],
        groups: &[GroupRef],
        now_ms: Option<i64>,
        decide: &mut dyn FnMut(i64, &[Usage]) -> Verdict,
    ) -> Result<Outcome, StoreError> {
        let digest_hex = hex::encode(digest);
        // Lock order: sorted, the request id among them, so two copies of
        // one request and two requests of one group are serialised, and no
        // two threads ever wait on each other in a cycle.
        let mut names: Vec<String> = groups.iter().map(|g| slot(&g.limit, &g.key)).collect();
        names.push(format!("\u{1}{request_id}"));
        names.sort();
        names.dedup();
        let mutexes: Vec<Arc<Mutex<()>>> = {
            let mut map = lock(&self.shared.locks);
            names
                .iter()
                .map(|n| map.entry(n.clone()).or_default().clone())
                .collect()
        };
        let result = {
            let _guards: Vec<MutexGuard<()>> = mutexes.iter().map(|m| lock(m)).collect();
            self.decide_locked(request_id, &digest_hex, groups, now_ms, decide)
        };
        drop(mutexes);
        let mut map = lock(&self.shared.locks);
        for n in &names {
            if map.get(n).is_some_and(|m| Arc::strong_count(m) == 1) {
                map.remove(n);
            }
        }
        result
    }

    fn seed(&self, request_id: &str, at_ms: i64, rows: &[(Row, String)]) -> Result<(), StoreError> {
        let digest = [0u8; 32];
        let groups: Vec<GroupRef> = rows
            .iter()
            .map(|(r, _)| GroupRef {
                limit: r.limit.clone(),
                key: r.group_key.clone(),
                window_ms: 1,
            })
            .collect();
        let verdict = Verdict {
            answer: String::new(),
            rows: rows.iter().map(|(r, _)| r.clone()).collect(),
            displays: rows.iter().map(|(_, d)| d.clone()).collect(),
        };
        match self.decide(request_id, &digest, &groups, Some(at_ms), &mut |_, _| {
            verdict.clone()
        })? {
            Outcome::Decided(p) => p.wait(),
            Outcome::Prior(_) => Err(io(format!(
                "history request id `{request_id}` is used twice"
            ))),
        }
    }
}

impl SqliteStore {
    fn decide_locked(
        &self,
        request_id: &str,
        digest_hex: &str,
        groups: &[GroupRef],
        now_ms: Option<i64>,
        decide: &mut dyn FnMut(i64, &[Usage]) -> Verdict,
    ) -> Result<Outcome, StoreError> {
        let held_record = lock(&self.shared.pending).records.get(request_id).cloned();
        let conn = lock(&self.shared.reader);
        let prior = match held_record {
            Some(r) => Some(r),
            None => conn
                .prepare_cached(Q_RECORD)
                .and_then(|mut s| {
                    s.query_row([request_id], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })
                    .optional()
                })
                .map_err(io)?,
        };
        if let Some((d, answer)) = prior {
            return Ok(Outcome::Prior(if d == digest_hex {
                Prior::Same(answer)
            } else {
                Prior::Different
            }));
        }
        let now = self.now(now_ms);
        let mut usages = Vec::with_capacity(groups.len());
        let mut heads: HashMap<String, Head> = HashMap::new();
        for g in groups {
            let s = slot(&g.limit, &g.key);
            // Snapshot what is held before reading what is committed: the
            // writer commits, then forgets, so a row is always in one of
            // the two when read in this order.
            let held = lock(&self.shared.pending)
                .rows
                .get(&s)
                .cloned()
                .unwrap_or_default();
            usages.push(sql_usage(
                &conn,
                &g.limit,
                &g.key,
                now - g.window_ms,
                &held,
            )?);
            if let std::collections::hash_map::Entry::Vacant(e) = heads.entry(s) {
                let head = match held.last() {
                    Some(h) => h.head(),
                    None => sql_head(&conn, &g.limit, &g.key)?.unwrap_or(EMPTY),
                };
                e.insert(head);
            }
        }
        drop(conn);
        let verdict = decide(now, &usages);
        let mut inserts = Vec::with_capacity(verdict.rows.len());
        for (i, r) in verdict.rows.iter().enumerate() {
            let s = slot(&r.limit, &r.group_key);
            let head = match heads.get(&s) {
                Some(h) => *h,
                None => {
                    let held = lock(&self.shared.pending)
                        .rows
                        .get(&s)
                        .and_then(|v| v.last().cloned());
                    match held {
                        Some(h) => Head {
                            seq: h.seq,
                            at_ms: h.at_ms,
                            cum: h.cum,
                            count: h.count,
                        },
                        None => sql_head(&lock(&self.shared.reader), &r.limit, &r.group_key)?
                            .unwrap_or(EMPTY),
                    }
                }
            };
            let held = Held {
                seq: head.seq + 1,
                at_ms: now.max(head.at_ms),
                amount: r.amount,
                // Past 2^256 the total sticks at the maximum: every later
                // request of the group is then over any cap.
                cum: head
                    .cum
                    .checked_add(r.amount)
                    .unwrap_or(Amount(alloy_primitives::U256::MAX)),
                count: head.count + 1,
            };
            heads.insert(
                s.clone(),
                Head {
                    seq: held.seq,
                    at_ms: held.at_ms,
                    cum: held.cum,
                    count: held.count,
                },
            );
            inserts.push(InsertRow {
                slot: s,
                limit: r.limit.clone(),
                key: r.group_key.clone(),
                held,
                request_id: request_id.to_owned(),
                display: verdict.displays.get(i).cloned().unwrap_or_default(),
                token: r.token.clone(),
                digest: digest_hex.to_owned(),
            });
        }
        let record = (!verdict.answer.is_empty()).then(|| {
            (
                request_id.to_owned(),
                digest_hex.to_owned(),
                now,
                verdict.answer.clone(),
            )
        });
        {
            let mut p = lock(&self.shared.pending);
            for ins in &inserts {
                p.rows
                    .entry(ins.slot.clone())
                    .or_default()
                    .push(ins.held.clone());
            }
            if let Some((id, d, _, a)) = &record {
                p.records.insert(id.clone(), (d.clone(), a.clone()));
            }
        }
        let undo: Vec<(String, i64)> = inserts
            .iter()
            .map(|i| (i.slot.clone(), i.held.seq))
            .collect();
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job = Job {
            rows: inserts,
            record,
            reply: Some(reply),
        };
        if let Err(e) = self.send(job) {
            // Never queued: forget what was held, or it would count forever.
            let mut p = lock(&self.shared.pending);
            p.records.remove(request_id);
            for (s, seq) in undo {
                if let Some(v) = p.rows.get_mut(&s) {
                    v.retain(|h| h.seq != seq);
                    if v.is_empty() {
                        p.rows.remove(&s);
                    }
                }
            }
            return Err(e);
        }
        Ok(Outcome::Decided(Pending(rx)))
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

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Job>, shared: Arc<Shared>) {
    let mut last_prune = Instant::now() - Duration::from_secs(3600);
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let result = commit(&mut conn, &jobs);
        if let Err(e) = &result {
            tracing::error!("state store commit failed: {e}");
        }
        {
            let mut p = lock(&shared.pending);
            for j in &jobs {
                for r in &j.rows {
                    if let Some(v) = p.rows.get_mut(&r.slot) {
                        v.retain(|h| h.seq != r.held.seq);
                        if v.is_empty() {
                            p.rows.remove(&r.slot);
                        }
                    }
                }
                if let Some((id, ..)) = &j.record {
                    p.records.remove(id);
                }
            }
        }
        for j in jobs {
            if let Some(reply) = j.reply {
                let _ = reply.send(result.clone());
            }
        }
        if last_prune.elapsed() > Duration::from_secs(60) {
            last_prune = Instant::now();
            let cutoff = crate::pipeline::now_ms() - RETENTION_MS;
            if let Err(e) = conn
                .execute("DELETE FROM ledger WHERE at_ms < ?1", [cutoff])
                .and_then(|_| conn.execute("DELETE FROM decisions WHERE at_ms < ?1", [cutoff]))
            {
                tracing::warn!("state store: pruning old rows failed: {e}");
            }
        }
    }
}

fn commit(conn: &mut Connection, jobs: &[Job]) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(io)?;
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
                row.execute(params![
                    r.limit,
                    r.key,
                    r.held.seq,
                    r.held.at_ms,
                    r.request_id,
                    r.display,
                    r.token,
                    r.held.amount.units(),
                    r.held.cum.units(),
                    r.held.count,
                    r.digest,
                ])
                .map_err(io)?;
            }
            if let Some((id, d, at, answer)) = &j.record {
                rec.execute(params![id, d, at, answer]).map_err(io)?;
            }
        }
    }
    tx.commit().map_err(io)
}
