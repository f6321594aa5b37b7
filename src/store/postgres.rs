//! The shared store: one PostgreSQL database that several tss-gate
//! instances use at once, so a spending limit counts every instance's
//! approvals and a retry that lands on another instance gets the same
//! answer.
//!
//! Exact across instances, in two short READ COMMITTED transactions around
//! the policy's evaluation ([`crate::store::protocol::decide`]), so that
//! decisions on the same groups are not serialised behind each other's
//! policy run:
//! - The request's own session advisory lock is held throughout (on any
//!   instance a retry of it waits, then finds its answer).
//! - Hold: `pg_advisory_xact_lock` on every group the request touches, in
//!   lock-id order (two decisions never wait on each other in a cycle),
//!   then the reads: each statement after the lock sees everything
//!   committed before it. It reads the retry record, sums each group's rows
//!   inside its window and, when the request fits, inserts its rows with a
//!   pending (unanswered) retry record, and commits: from then on every
//!   instance counts them. Never REPEATABLE READ: its snapshot would
//!   predate the lock wait.
//! - Settle, after the evaluation: an approval keeps its rows (one approved
//!   over the limit by the policy's own rules takes the group locks and
//!   inserts them now), a rejection deletes them, and the retry record gets
//!   the answer (or is deleted when there is nothing to replay); committed
//!   before the answer may leave.
//! - A pending record whose decider died between the two is found by the
//!   next decision of that id (under its lock): never answered, so its rows
//!   are deleted and the request is decided anew.
//!
//! Fail closed: every statement has a time limit (`statement_timeout`,
//! `lock_timeout`), connecting and waiting for a pooled connection too. Any
//! error is a [`StoreError`], which the server answers with status 30; a
//! broken connection is dropped and replaced, so when the database is back
//! answers resume without a restart.
//!
//! Amounts are NUMERIC(78,0) integers of 10^-18 units, summed by
//! PostgreSQL exactly. Time is the database's clock (one clock for all
//! instances) unless a decision fixes it (fixtures, seeds).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::Type;
use postgres::{IsolationLevel, NoTls};
use r2d2_postgres::PostgresConnectionManager;

use super::inspect::{QueryPlan, QueryPlans, Usages};
use super::protocol::{self, Decider, Fate, Found, Read, Request, TaskTx, VOID_BY_EVENT};
use super::rows::{APPROVAL_COLUMNS, Columns, units};
use super::schema::{Dialect, Migrate, SCHEMA_VERSION, Scripts, version_2};
use super::{
    Approval, ApprovalRecord, Cause, GroupUsage, LedgerEntry, Pending, Prior, RETENTION_MS, Store,
    StoreError, StoredEvent, TaskState,
};
use crate::velocity::Usage;

/// Lock id serialising schema migrations between instances starting at once.
const MIGRATION_LOCK: i64 = 0x7473_735f_6761_7465; // "tss_gate"

const SCHEMA: &str = "
CREATE TABLE tss_gate_ledger (
    id          BIGSERIAL PRIMARY KEY,
    limit_id    TEXT NOT NULL,
    group_key   TEXT NOT NULL,
    at_ms       BIGINT NOT NULL,
    request_id  TEXT NOT NULL,
    group_name  TEXT NOT NULL,
    token       TEXT NOT NULL,
    amount      NUMERIC(78, 0) NOT NULL,
    digest      TEXT NOT NULL,
    voided_at   BIGINT,
    void_reason TEXT
);
CREATE INDEX tss_gate_ledger_window ON tss_gate_ledger (limit_id, group_key, at_ms)
    INCLUDE (amount) WHERE voided_at IS NULL;
CREATE INDEX tss_gate_ledger_request ON tss_gate_ledger (request_id);
CREATE INDEX tss_gate_ledger_age ON tss_gate_ledger (at_ms);
CREATE TABLE tss_gate_decisions (
    request_id TEXT PRIMARY KEY,
    digest     TEXT NOT NULL,
    at_ms      BIGINT NOT NULL,
    answer     TEXT NOT NULL
);
CREATE INDEX tss_gate_decisions_age ON tss_gate_decisions (at_ms);
";

/// Takes the advisory locks of `$1` (lock names) in lock-id order.
const Q_LOCK: &str = "SELECT count(pg_advisory_xact_lock(h)) FROM \
     (SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k ORDER BY h) AS locks";
pub const Q_RECORD: &str = "SELECT digest, answer FROM tss_gate_decisions WHERE request_id = $1";
/// Usage of each group `(limit, key, since)`, in the order given.
pub const Q_USAGE: &str = "SELECT g.i, coalesce(sum(l.amount), 0)::text, count(l.amount) \
     FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS g(limit_id, group_key, since, i) \
     LEFT JOIN tss_gate_ledger l ON l.limit_id = g.limit_id AND l.group_key = g.group_key \
         AND l.at_ms > g.since AND l.voided_at IS NULL \
     GROUP BY g.i ORDER BY g.i";
const Q_NOW: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint";
const Q_INSERT: &str = "INSERT INTO tss_gate_ledger \
     (limit_id, group_key, at_ms, request_id, group_name, token, amount, digest) \
     SELECT l, g, $3, $4, n, t, a::numeric, $8 \
     FROM unnest($1::text[], $2::text[], $5::text[], $6::text[], $7::text[]) AS r(l, g, n, t, a)";
const Q_RECORD_UPSERT: &str = "INSERT INTO tss_gate_decisions (request_id, digest, at_ms, answer) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (request_id) DO UPDATE SET digest = $2, at_ms = $3, answer = $4";
const Q_RECORD_DELETE: &str = "DELETE FROM tss_gate_decisions WHERE request_id = $1";
/// Releases a hold that was never answered.
const Q_RELEASE: &str = "DELETE FROM tss_gate_ledger WHERE request_id = $1 AND voided_at IS NULL";
const Q_SESSION_LOCK: &str = "SELECT pg_advisory_lock(hashtextextended($1, 0))";
const Q_SESSION_UNLOCK: &str = "SELECT pg_advisory_unlock(hashtextextended($1, 0))";

fn scripts() -> Scripts {
    [
        SCHEMA.to_owned(),
        version_2(&Dialect {
            prefix: "tss_gate_",
            int: "BIGINT",
            table_end: "",
        }),
    ]
}

/// Where the password comes from (never the URL, never the options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    None,
    /// An environment variable holding it.
    Env(String),
    /// A file holding it (its first line).
    File(PathBuf),
}

/// How to reach the database and how long anything may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// `postgres://USER@HOST:PORT/DB` (or key=value form), no password.
    pub url: String,
    pub password: PasswordSource,
    /// Connections per instance.
    pub pool_size: u32,
    /// Connecting, and waiting for a free pooled connection.
    pub connect_timeout: Duration,
    /// Any one statement, lock waits included.
    pub statement_timeout: Duration,
}

impl PostgresOptions {
    /// The options from their parts as a config states them; an
    /// environment variable wins over a file when both are named.
    pub fn new(
        url: &str,
        password_env: Option<&str>,
        password_file: Option<&Path>,
        pool_size: u32,
        connect_timeout_ms: u64,
        statement_timeout_ms: u64,
    ) -> Self {
        let password = match (password_env, password_file) {
            (Some(var), _) => PasswordSource::Env(var.to_owned()),
            (None, Some(file)) => PasswordSource::File(file.to_owned()),
            (None, None) => PasswordSource::None,
        };
        Self {
            url: url.to_owned(),
            password,
            pool_size,
            connect_timeout: Duration::from_millis(connect_timeout_ms),
            statement_timeout: Duration::from_millis(statement_timeout_ms),
        }
    }
}

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;
type Conn = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

pub struct PostgresStore {
    pool: Pool,
    /// What to name in messages: host, port and database, never the password.
    target: String,
    /// Why the last connection attempt failed: r2d2 reports only that it
    /// timed out.
    last_error: std::sync::Arc<std::sync::Mutex<String>>,
}

/// Keeps the last connection error (with its cause) for the message of a
/// checkout that timed out.
#[derive(Debug)]
struct KeepLast(std::sync::Arc<std::sync::Mutex<String>>);

impl r2d2::HandleError<postgres::Error> for KeepLast {
    fn handle_error(&self, e: postgres::Error) {
        if let Ok(mut last) = self.0.lock() {
            *last = text(&e);
        }
    }
}

/// An error's text with its cause (the server's message: `postgres::Error`
/// alone says only "db error").
fn text(e: &postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// An error from a database call, by cause.
fn db(e: postgres::Error) -> StoreError {
    let timed_out = [
        SqlState::QUERY_CANCELED,
        SqlState::LOCK_NOT_AVAILABLE,
        SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
    ];
    StoreError::Failed(match e.code() {
        Some(c) if timed_out.contains(c) => Cause::Busy(text(&e)),
        None if e.is_closed() => Cause::Unreachable(text(&e)),
        _ => Cause::Database(text(&e)),
    })
}

/// The client configuration: the URL, the password from where the options
/// say, and time limits on everything.
pub fn client_config(o: &PostgresOptions) -> Result<(postgres::Config, String), StoreError> {
    let open_err = |target: &str, why: String| StoreError::Open {
        path: target.to_owned(),
        cause: Cause::Settings(why),
    };
    let mut cfg = postgres::Config::from_str(&o.url)
        .map_err(|e| open_err("state.postgres.url", format!("not a PostgreSQL URL: {e}")))?;
    let target = describe(&cfg);
    if cfg.get_password().is_some() {
        return Err(open_err(
            &target,
            "the URL carries a password; put it in `password_env` or `password_file` instead"
                .into(),
        ));
    }
    let password = match &o.password {
        PasswordSource::Env(var) => Some(std::env::var(var).map_err(|_| {
            open_err(
                &target,
                format!("environment variable `{var}` (state.postgres.password_env) is not set"),
            )
        })?),
        PasswordSource::File(file) => {
            let text = std::fs::read_to_string(file).map_err(|e| {
                open_err(
                    &target,
                    format!("cannot read password file `{}`: {e}", file.display()),
                )
            })?;
            Some(text.lines().next().unwrap_or_default().to_owned())
        }
        PasswordSource::None => None,
    };
    if let Some(p) = password {
        cfg.password(p);
    }
    let ms = o.statement_timeout.as_millis();
    cfg.connect_timeout(o.connect_timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .application_name("tss-gate")
        .options(&format!(
            "-c statement_timeout={ms} -c lock_timeout={ms} -c idle_in_transaction_session_timeout={idle}",
            idle = ms * 5
        ));
    Ok((cfg, target))
}

fn describe(cfg: &postgres::Config) -> String {
    let host = cfg
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(s) => s.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let db = cfg.get_dbname().unwrap_or("");
    format!("postgres://{host}:{port}/{db}")
}

impl PostgresStore {
    /// Connects, applies the schema (serialised between instances) and
    /// checks its version. Fails if the database is unreachable, or its
    /// schema is newer than this binary's.
    pub fn open_with(o: &PostgresOptions) -> Result<PostgresStore, StoreError> {
        let (cfg, target) = client_config(o)?;
        let manager = PostgresConnectionManager::new(cfg, NoTls);
        let last_error = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let pool = r2d2::Pool::builder()
            .max_size(o.pool_size)
            .min_idle(Some(0))
            .connection_timeout(o.connect_timeout)
            // A connection dropped by a restarted server is found at
            // checkout, not by the request that uses it.
            .test_on_check_out(true)
            .error_handler(Box::new(KeepLast(last_error.clone())))
            .build(manager)
            .map_err(|e| StoreError::Open {
                path: target.clone(),
                cause: Cause::Unreachable(format!("cannot connect: {e}")),
            })?;
        let store = PostgresStore {
            pool,
            target: target.clone(),
            last_error,
        };
        store.migrate().map_err(|e| e.opening(&target))?;
        Ok(store)
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    fn conn(&self) -> Result<Conn, StoreError> {
        self.pool.get().map_err(|e| {
            let last = self
                .last_error
                .lock()
                .map(|l| l.clone())
                .unwrap_or_default();
            StoreError::Failed(Cause::Unreachable(if last.is_empty() {
                format!("{}: no connection: {e}", self.target)
            } else {
                format!("{}: no connection: {e} (last attempt: {last})", self.target)
            }))
        })
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut m = Migration(conn.transaction().map_err(db)?);
        super::schema::migrate(&mut m, scripts())?;
        m.0.commit().map_err(db)
    }

    /// Deletes rows and records older than any window (any instance may).
    pub fn prune(&self, now_ms: i64) -> Result<(), StoreError> {
        let cutoff = now_ms - RETENTION_MS;
        let mut conn = self.conn()?;
        for q in [
            "DELETE FROM tss_gate_ledger WHERE at_ms < $1",
            "DELETE FROM tss_gate_decisions WHERE at_ms < $1",
            "DELETE FROM tss_gate_approvals WHERE at_ms < $1",
            "DELETE FROM tss_gate_events WHERE received_at_ms < $1",
        ] {
            conn.execute(q, &[&cutoff]).map_err(db)?;
        }
        Ok(())
    }

    /// Runs `f` in a READ COMMITTED transaction holding the locks of the
    /// groups of the request's rows, taken as a decision takes them (one
    /// statement, lock-id order), so no decision on any instance reads
    /// their usage half-way through; plus the task's own lock.
    fn with_task<T>(
        &self,
        request_id: &str,
        f: impl FnOnce(Task<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = Self::read_committed(&mut conn)?;
        let mut locks: Vec<String> = tx
            .query(
                "SELECT DISTINCT limit_id, group_key FROM tss_gate_ledger WHERE request_id = $1",
                &[&request_id],
            )
            .map_err(db)?
            .iter()
            .map(|r| Ok(group_lock(&r.text(0)?, &r.text(1)?)))
            .collect::<Result<_, StoreError>>()?;
        locks.push(format!("t\u{1f}{request_id}"));
        tx.query_one(Q_LOCK, &[&locks]).map_err(db)?;
        f(Task(tx))
    }

    /// A READ COMMITTED transaction whatever the database's default: the
    /// statements after a lock wait must see what committed during it.
    fn read_committed(conn: &mut Conn) -> Result<postgres::Transaction<'_>, StoreError> {
        conn.build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .map_err(db)
    }
}

/// The migration, in one transaction under [`MIGRATION_LOCK`].
struct Migration<'c>(postgres::Transaction<'c>);

impl Migrate for Migration<'_> {
    fn version(&mut self) -> Result<Option<i64>, StoreError> {
        self.0
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(db)?;
        self.0
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS tss_gate_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
            )
            .map_err(db)?;
        Ok(self
            .0
            .query_opt("SELECT value FROM tss_gate_meta WHERE key = 'schema'", &[])
            .map_err(db)?
            .map(|r| r.get(0)))
    }

    fn check(&mut self, _found: Option<i64>) -> Result<(), StoreError> {
        Ok(())
    }

    fn apply(&mut self, scripts: &[String], found: Option<i64>) -> Result<(), StoreError> {
        for s in scripts {
            self.0.batch_execute(s).map_err(db)?;
        }
        let q = match found {
            None => "INSERT INTO tss_gate_meta (key, value) VALUES ('schema', $1)",
            Some(_) => "UPDATE tss_gate_meta SET value = $1 WHERE key = 'schema'",
        };
        self.0.execute(q, &[&SCHEMA_VERSION]).map(drop).map_err(db)
    }

    fn unversioned(&mut self) -> Result<(), StoreError> {
        self.0
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS tss_gate_controls \
                 (key TEXT PRIMARY KEY, value TEXT NOT NULL, at_ms BIGINT NOT NULL)",
            )
            .map_err(db)
    }
}

super::rows::columns_by!(postgres::Row, try_get, db);

/// A usage row's sum (NUMERIC as text) and count.
fn sum_count(r: &postgres::Row, sum: usize) -> Result<Usage, StoreError> {
    let count: i64 = r.try_get(sum + 1).map_err(db)?;
    Ok(Usage {
        amount: units(&r.text(sum)?)?,
        count: count as u64,
    })
}

impl Decider for PostgresStore {
    /// The pooled connection that holds the request's session lock.
    type Session = Conn;
    /// Nothing: held rows are in the ledger, committed.
    type Hold = ();

    /// The request's session lock; never back in the pool holding it.
    fn exclusive<T>(
        &self,
        request_id: &str,
        f: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        let key = request_lock(request_id);
        conn.query_typed(Q_SESSION_LOCK, &[(&key, Type::TEXT)])
            .map_err(db)?;
        let result = f(&mut conn);
        // If this fails the connection is broken and is dropped, which
        // releases the lock too.
        let _ = conn.query_typed(Q_SESSION_UNLOCK, &[(&key, Type::TEXT)]);
        result
    }

    /// Under the groups' locks: the retry record, the usage, and when the
    /// request fits, its rows and a pending record, committed so that
    /// every other decision counts them.
    fn read(
        &self,
        conn: &mut Conn,
        req: &Request<'_>,
        fits: &dyn Fn(&[Usage]) -> bool,
    ) -> Result<Read<()>, StoreError> {
        let mut tx = Self::read_committed(conn)?;
        lock_groups(&mut tx, req, true)?;
        // Each statement from here on sees what committed before the locks.
        let stored = tx
            .query_typed_opt(Q_RECORD, &[(&req.id, Type::TEXT)])
            .map_err(db)?
            .map(|r| Ok::<_, StoreError>((r.text(0)?, r.text(1)?)))
            .transpose()?;
        match protocol::prior_of(stored, &req.digest) {
            Some(Found::Prior(p)) => return Ok(Read::Prior(p)),
            // We hold the request's lock, so its decider is not deciding
            // any more: its hold is released and the request decided anew.
            Some(Found::Unanswered) => {
                tx.execute_typed(Q_RELEASE, &[(&req.id, Type::TEXT)])
                    .map_err(db)?;
                tx.execute_typed(Q_RECORD_DELETE, &[(&req.id, Type::TEXT)])
                    .map_err(db)?;
            }
            None => {}
        }
        let now = match req.now_ms {
            Some(t) => t,
            None => tx.query_typed_one(Q_NOW, &[]).map_err(db)?.int(0)?,
        };
        let mut usages = Vec::with_capacity(req.groups.len());
        if !req.groups.is_empty() {
            let limits: Vec<&str> = req.groups.iter().map(|g| g.limit.as_str()).collect();
            let keys: Vec<&str> = req.groups.iter().map(|g| g.key.as_str()).collect();
            let since: Vec<i64> = req.groups.iter().map(|g| now - g.window_ms).collect();
            let rows = tx
                .query_typed(
                    Q_USAGE,
                    &[
                        (&limits, Type::TEXT_ARRAY),
                        (&keys, Type::TEXT_ARRAY),
                        (&since, Type::INT8_ARRAY),
                    ],
                )
                .map_err(db)?;
            for r in rows {
                usages.push(sum_count(&r, 1)?);
            }
            if usages.len() != req.groups.len() {
                return Err(Cause::Corrupt(
                    "usage query returned the wrong number of groups".into(),
                )
                .into());
            }
        }
        let held = fits(&usages);
        if held {
            insert_rows(&mut tx, req, now)?;
            record(&mut tx, req, now, "")?;
        }
        tx.commit().map_err(db)?;
        Ok(Read::Usage {
            now,
            usages,
            held: held.then_some(()),
        })
    }

    /// One transaction; committed before the answer may leave, so the
    /// pending it returns is resolved.
    fn settle(
        &self,
        conn: &mut Conn,
        req: &Request<'_>,
        now: i64,
        fate: Fate<()>,
        answer: Option<&str>,
    ) -> Result<Pending, StoreError> {
        let mut tx = conn.transaction().map_err(db)?;
        match fate {
            Fate::Keep(()) | Fate::Nothing => {}
            Fate::HoldNow => {
                lock_groups(&mut tx, req, false)?;
                insert_rows(&mut tx, req, now)?;
            }
            Fate::Release(()) => {
                tx.execute_typed(Q_RELEASE, &[(&req.id, Type::TEXT)])
                    .map_err(db)?;
            }
        }
        match answer {
            Some(a) => record(&mut tx, req, now, a)?,
            None => {
                tx.execute_typed(Q_RECORD_DELETE, &[(&req.id, Type::TEXT)])
                    .map_err(db)?;
            }
        }
        tx.commit().map_err(db)?;
        Ok(protocol::resolved())
    }
}

/// Takes the locks of the groups `req` holds rows in (and, `reads`, of the
/// groups it reads), in one statement, in lock-id order.
fn lock_groups(
    tx: &mut postgres::Transaction<'_>,
    req: &Request<'_>,
    reads: bool,
) -> Result<(), StoreError> {
    let read = req.groups.iter().filter(|_| reads);
    let mut locks: Vec<String> = read.map(|g| group_lock(&g.limit, &g.key)).collect();
    locks.extend(
        req.hold
            .iter()
            .map(|(r, _)| group_lock(&r.limit, &r.group_key)),
    );
    tx.query_typed_one(Q_LOCK, &[(&locks, Type::TEXT_ARRAY)])
        .map_err(db)?;
    Ok(())
}

fn insert_rows(
    tx: &mut postgres::Transaction<'_>,
    req: &Request<'_>,
    now: i64,
) -> Result<(), StoreError> {
    let hold = req.hold;
    if hold.is_empty() {
        return Ok(());
    }
    let limits: Vec<&str> = hold.iter().map(|(r, _)| r.limit.as_str()).collect();
    let keys: Vec<&str> = hold.iter().map(|(r, _)| r.group_key.as_str()).collect();
    let names: Vec<&str> = hold.iter().map(|(_, n)| n.as_str()).collect();
    let tokens: Vec<&str> = hold.iter().map(|(r, _)| r.token.as_str()).collect();
    let amounts: Vec<String> = hold.iter().map(|(r, _)| r.amount.units()).collect();
    tx.execute_typed(
        Q_INSERT,
        &[
            (&limits, Type::TEXT_ARRAY),
            (&keys, Type::TEXT_ARRAY),
            (&now, Type::INT8),
            (&req.id, Type::TEXT),
            (&names, Type::TEXT_ARRAY),
            (&tokens, Type::TEXT_ARRAY),
            (&amounts, Type::TEXT_ARRAY),
            (&req.digest, Type::TEXT),
        ],
    )
    .map_err(db)?;
    Ok(())
}

/// Writes (or replaces the pending one with) the request's retry record.
fn record(
    tx: &mut postgres::Transaction<'_>,
    req: &Request<'_>,
    now: i64,
    answer: &str,
) -> Result<(), StoreError> {
    tx.execute_typed(
        Q_RECORD_UPSERT,
        &[
            (&req.id, Type::TEXT),
            (&req.digest, Type::TEXT),
            (&now, Type::INT8),
            (&answer, Type::TEXT),
        ],
    )
    .map_err(db)?;
    Ok(())
}

fn group_lock(limit: &str, key: &str) -> String {
    format!("g\u{1f}{limit}\u{1f}{key}")
}

fn request_lock(request_id: &str) -> String {
    format!("r\u{1f}{request_id}")
}

/// A task's transition, in the transaction that holds its locks.
struct Task<'c>(postgres::Transaction<'c>);

impl TaskTx for Task<'_> {
    fn state(&mut self, request_id: &str) -> Result<Option<String>, StoreError> {
        self.0
            .query_opt(
                "SELECT state FROM tss_gate_approvals WHERE request_id = $1 FOR UPDATE",
                &[&request_id],
            )
            .map_err(db)?
            .map(|r| r.text(0))
            .transpose()
    }

    fn release(&mut self, request_id: &str, at_ms: i64, reason: &str) -> Result<usize, StoreError> {
        let n = self
            .0
            .execute(
                "UPDATE tss_gate_ledger SET voided_at = $2, void_reason = $3, void_source = $4 \
                 WHERE request_id = $1 AND voided_at IS NULL",
                &[&request_id, &at_ms, &reason, &VOID_BY_EVENT],
            )
            .map_err(db)?;
        Ok(n as usize)
    }

    fn rehold(&mut self, request_id: &str) -> Result<usize, StoreError> {
        let n = self
            .0
            .execute(
                "UPDATE tss_gate_ledger SET voided_at = NULL, void_reason = NULL, void_source = NULL \
                 WHERE request_id = $1 AND void_source = $2",
                &[&request_id, &VOID_BY_EVENT],
            )
            .map_err(db)?;
        Ok(n as usize)
    }

    fn set_state(&mut self, id: &str, to: (TaskState, i64, &str)) -> Result<(), StoreError> {
        let (state, at_ms, reason) = to;
        self.0
            .execute(
                "UPDATE tss_gate_approvals SET state = $2, changed_at_ms = $3, change_reason = $4 \
                 WHERE request_id = $1",
                &[&id, &state.as_str(), &at_ms, &reason],
            )
            .map(drop)
            .map_err(db)
    }

    fn commit(self) -> Result<(), StoreError> {
        self.0.commit().map_err(db)
    }
}

/// [`Usages`] on one connection.
struct Report<'c>(&'c mut Conn);

impl Usages for Report<'_> {
    fn groups(&mut self, since: i64) -> Result<Vec<(String, String, String)>, StoreError> {
        self.0
            .query(
                "SELECT limit_id, group_key, max(group_name) FROM tss_gate_ledger WHERE at_ms > $1 \
                 GROUP BY limit_id, group_key ORDER BY limit_id, group_key",
                &[&since],
            )
            .map_err(db)?
            .iter()
            .map(|g| Ok((g.text(0)?, g.text(1)?, g.text(2)?)))
            .collect()
    }

    fn usage(&mut self, limit: &str, key: &str, since: i64) -> Result<(Usage, u64), StoreError> {
        let r = self
            .0
            .query_one(
                "SELECT coalesce(sum(amount), 0)::text, count(*) FROM tss_gate_ledger \
                 WHERE limit_id = $1 AND group_key = $2 AND at_ms > $3 AND voided_at IS NULL",
                &[&limit, &key, &since],
            )
            .map_err(db)?;
        let u = sum_count(&r, 0)?;
        Ok((u, u.count))
    }
}

fn plan_text(rows: &[postgres::Row]) -> Result<Vec<String>, StoreError> {
    rows.iter().map(|r| r.text(0)).collect()
}

impl Store for PostgresStore {
    super::protocol::decide_by_protocol!();

    fn lookup(&self, request_id: &str, digest: &[u8; 32]) -> Result<Option<Prior>, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(db)?;
        tx.query_one(Q_LOCK, &[&vec![request_lock(request_id)]])
            .map_err(db)?;
        let found = tx.query_opt(Q_RECORD, &[&request_id]).map_err(db)?;
        tx.commit().map_err(db)?;
        let record = found.map(|r| Ok::<_, StoreError>((r.text(0)?, r.text(1)?)));
        Ok(protocol::lookup(record.transpose()?, &hex::encode(digest)))
    }

    fn record_approval(&self, rec: &ApprovalRecord) -> Result<Pending, StoreError> {
        let mut conn = self.conn()?;
        // The first record of an id wins: a retry's is ignored.
        conn.execute(
            "INSERT INTO tss_gate_approvals (request_id, request_type, at_ms, digest, facts, state) \
             VALUES ($1, $2, $3, $4, $5, 'approved') ON CONFLICT (request_id) DO NOTHING",
            &[
                &rec.request_id,
                &rec.request_type,
                &rec.at_ms,
                &rec.digest,
                &rec.facts,
            ],
        )
        .map_err(db)?;
        Ok(protocol::resolved())
    }

    fn approval(&self, request_id: &str) -> Result<Option<Approval>, StoreError> {
        let mut conn = self.conn()?;
        let row = conn
            .query_opt(
                &format!("SELECT {APPROVAL_COLUMNS} FROM tss_gate_approvals WHERE request_id = $1"),
                &[&request_id],
            )
            .map_err(db)?;
        row.as_ref().map(super::rows::approval).transpose()
    }

    fn control(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn()?;
        let row = conn
            .query_opt(
                "SELECT value FROM tss_gate_controls WHERE key = $1",
                &[&key],
            )
            .map_err(db)?;
        row.map(|r| r.text(0)).transpose()
    }

    fn set_control(&self, key: &str, value: Option<&str>, now_ms: i64) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        match value {
            Some(v) => conn.execute(
                "INSERT INTO tss_gate_controls (key, value, at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, at_ms = EXCLUDED.at_ms",
                &[&key, &v, &now_ms],
            ),
            None => conn.execute("DELETE FROM tss_gate_controls WHERE key = $1", &[&key]),
        }
        .map(drop)
        .map_err(db)
    }

    fn put_event(&self, ev: &StoredEvent) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let n = conn
            .execute(
                "INSERT INTO tss_gate_events (event_id, received_at_ms, node_id, event_type, request_id, body) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
                &[
                    &ev.event_id,
                    &ev.received_at_ms,
                    &ev.node_id,
                    &ev.event_type,
                    &ev.request_id,
                    &ev.body,
                ],
            )
            .map_err(db)?;
        Ok(n == 1)
    }

    fn event_stored(&self, event_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let row = conn
            .query_opt(
                "SELECT 1 FROM tss_gate_events WHERE event_id = $1",
                &[&event_id],
            )
            .map_err(db)?;
        Ok(row.is_some())
    }

    super::protocol::transition_by_protocol!();

    fn approvals(&self, since_ms: i64, limit: usize) -> Result<Vec<Approval>, StoreError> {
        let mut conn = self.conn()?;
        let rows = conn
            .query(
                &format!(
                    "SELECT {APPROVAL_COLUMNS} FROM tss_gate_approvals WHERE at_ms > $1 \
                     ORDER BY at_ms DESC LIMIT $2"
                ),
                &[&since_ms, &(limit as i64)],
            )
            .map_err(db)?;
        rows.iter().map(super::rows::approval).collect()
    }

    /// One statement for every limit, at the database's clock (every
    /// instance's, as the decisions). It reads the window index only.
    fn peaks(&self, limits: &[(String, i64)]) -> Result<Vec<Usage>, StoreError> {
        if limits.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = limits.iter().map(|(l, _)| l.as_str()).collect();
        let windows: Vec<i64> = limits.iter().map(|(_, w)| *w).collect();
        let mut conn = self.conn()?;
        let rows = conn.query(Q_PEAKS, &[&ids, &windows]).map_err(db)?;
        let mut out = vec![Usage::default(); limits.len()];
        for r in rows {
            let i = r.int(0)?;
            if let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| out.get_mut(i)) {
                *slot = sum_count(&r, 1)?;
            }
        }
        Ok(out)
    }

    fn report(
        &self,
        now_ms: i64,
        window_of: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<Vec<GroupUsage>, StoreError> {
        let mut conn = self.conn()?;
        super::inspect::report(&mut Report(&mut conn), now_ms, window_of)
    }

    fn entries(
        &self,
        request_id: Option<&str>,
        since_ms: i64,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let mut conn = self.conn()?;
        let rows = conn
            .query(
                "SELECT request_id, limit_id, group_name, at_ms, amount::text, token, voided_at, void_reason \
                 FROM tss_gate_ledger WHERE ($1::text IS NULL OR request_id = $1) AND at_ms > $2 \
                 ORDER BY at_ms, limit_id, id",
                &[&request_id, &since_ms],
            )
            .map_err(db)?;
        rows.iter().map(super::rows::entry).collect()
    }

    /// Under the request's lock, so it never races its own decision.
    fn void(&self, request_id: &str, at_ms: i64, reason: &str) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(db)?;
        tx.query_one(Q_LOCK, &[&vec![request_lock(request_id)]])
            .map_err(db)?;
        let n = tx
            .execute(
                "UPDATE tss_gate_ledger SET voided_at = $2, void_reason = $3 \
                 WHERE request_id = $1 AND voided_at IS NULL",
                &[&request_id, &at_ms, &reason],
            )
            .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(n as usize)
    }

    /// `EXPLAIN` of the decision's queries.
    fn plans(&self) -> Result<QueryPlans, StoreError> {
        let mut conn = self.conn()?;
        let limits = vec!["l".to_owned()];
        let keys = vec!["k".to_owned()];
        let since = vec![0i64];
        let usage = conn
            .query(&format!("EXPLAIN {Q_USAGE}"), &[&limits, &keys, &since])
            .map_err(db)?;
        let record = conn
            .query(&format!("EXPLAIN {Q_RECORD}"), &[&"r"])
            .map_err(db)?;
        Ok(QueryPlans {
            rows: None,
            queries: vec![
                QueryPlan {
                    name: None,
                    query: Q_USAGE,
                    plan: plan_text(&usage)?,
                },
                QueryPlan {
                    name: None,
                    query: Q_RECORD,
                    plan: plan_text(&record)?,
                },
            ],
        })
    }

    fn location(&self) -> String {
        self.target.clone()
    }
}

/// [`Store::peaks`]: per limit `($1[i], window $2[i])`, the largest sum
/// and the largest count of any one group inside the window.
pub const Q_PEAKS: &str = "SELECT w.i, coalesce(max(g.s), 0)::text, coalesce(max(g.c), 0) \
     FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS w(limit_id, window_ms, i) \
     CROSS JOIN (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now) AS t \
     LEFT JOIN LATERAL (SELECT sum(l.amount) AS s, count(*) AS c FROM tss_gate_ledger l \
         WHERE l.limit_id = w.limit_id AND l.at_ms > t.now - w.window_ms AND l.voided_at IS NULL \
         GROUP BY l.group_key) AS g ON true \
     GROUP BY w.i ORDER BY w.i";
