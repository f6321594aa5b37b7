//! The shared store: one PostgreSQL database that several tss-gate
//! instances use at once, so a spending limit counts every instance's
//! approvals and a retry that lands on another instance gets the same
//! answer.
//!
//! Exact across instances: one READ COMMITTED transaction per decision
//! takes `pg_advisory_xact_lock` on the request id and on every group it
//! touches, in the order of the lock ids (so two decisions never wait on
//! each other in a cycle), and only then reads: each statement after the
//! lock sees everything committed before it. It reads the retry record,
//! sums the group's rows inside the window, evaluates (the policy runs
//! while the locks are held), inserts the rows of an approval and the
//! retry record, and commits before the answer may leave. Never REPEATABLE
//! READ: its snapshot would predate the lock wait.
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

use std::str::FromStr;
use std::time::Duration;

use postgres::{IsolationLevel, NoTls};
use r2d2_postgres::PostgresConnectionManager;

use super::{
    GroupRef, GroupUsage, LedgerEntry, Outcome, Pending, Prior, Store, StoreError, Verdict,
};
use crate::config::PostgresSection;
use crate::velocity::{Amount, Row, Usage};

/// The schema this binary writes. A database with a newer one is refused.
pub const SCHEMA_VERSION: i64 = 2;

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

/// Version 2: what tss-gate approved, the node's events (issue 18), and
/// which voids a task's failure made (a later `succeeded` re-holds exactly
/// those, never a void made by hand).
const SCHEMA_V2: &str = "
ALTER TABLE tss_gate_ledger ADD COLUMN void_source TEXT;
CREATE TABLE tss_gate_approvals (
    request_id    TEXT PRIMARY KEY,
    request_type  TEXT NOT NULL,
    at_ms         BIGINT NOT NULL,
    digest        TEXT NOT NULL,
    facts         TEXT NOT NULL,
    state         TEXT NOT NULL,
    changed_at_ms BIGINT,
    change_reason TEXT
);
CREATE INDEX tss_gate_approvals_age ON tss_gate_approvals (at_ms);
CREATE TABLE tss_gate_events (
    event_id       TEXT PRIMARY KEY,
    received_at_ms BIGINT NOT NULL,
    node_id        TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    body           TEXT NOT NULL
);
CREATE INDEX tss_gate_events_age ON tss_gate_events (received_at_ms);
CREATE INDEX tss_gate_events_request ON tss_gate_events (request_id);
";

/// `void_source` of rows a task's release voided.
const VOID_BY_EVENT: &str = "event";

const APPROVAL_COLUMNS: &str =
    "request_id, request_type, at_ms, digest, facts, state, changed_at_ms, change_reason";

fn approval_row(r: &postgres::Row) -> super::Approval {
    let state: String = r.get(5);
    let changed_at: Option<i64> = r.get(6);
    let reason: Option<String> = r.get(7);
    super::Approval {
        record: super::ApprovalRecord {
            request_id: r.get(0),
            request_type: r.get(1),
            at_ms: r.get(2),
            digest: r.get(3),
            facts: r.get(4),
        },
        // An unknown state (a newer writer) is read as still approved: its
        // hold keeps counting.
        state: super::TaskState::parse(&state).unwrap_or(super::TaskState::Approved),
        changed: changed_at.map(|t| (t, reason.unwrap_or_default())),
    }
}

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

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

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
        let text = match std::error::Error::source(&e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        };
        if let Ok(mut last) = self.0.lock() {
            *last = text;
        }
    }
}

/// The text of an error from a database call, with its cause (the
/// server's message: `postgres::Error` alone says only "db error").
fn db(e: postgres::Error) -> StoreError {
    match std::error::Error::source(&e) {
        Some(cause) => StoreError::Io(format!("{e}: {cause}")),
        None => StoreError::Io(e.to_string()),
    }
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

/// The client configuration: the URL, the password from where the config
/// says, and time limits on everything.
pub fn client_config(pg: &PostgresSection) -> Result<(postgres::Config, String), StoreError> {
    let open_err = |target: &str, reason: String| StoreError::Open {
        path: target.to_owned(),
        reason,
    };
    let mut cfg = postgres::Config::from_str(&pg.url)
        .map_err(|e| open_err("state.postgres.url", format!("not a PostgreSQL URL: {e}")))?;
    let target = describe(&cfg);
    if cfg.get_password().is_some() {
        return Err(open_err(
            &target,
            "the URL carries a password; put it in `password_env` or `password_file` instead"
                .into(),
        ));
    }
    let password = match (&pg.password_env, &pg.password_file) {
        (Some(var), _) => Some(std::env::var(var).map_err(|_| {
            open_err(
                &target,
                format!("environment variable `{var}` (state.postgres.password_env) is not set"),
            )
        })?),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file).map_err(|e| {
                open_err(
                    &target,
                    format!("cannot read password file `{}`: {e}", file.display()),
                )
            })?;
            Some(text.lines().next().unwrap_or_default().to_owned())
        }
        (None, None) => None,
    };
    if let Some(p) = password {
        cfg.password(p);
    }
    let timeout = Duration::from_millis(pg.statement_timeout_ms);
    cfg.connect_timeout(Duration::from_millis(pg.connect_timeout_ms))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .application_name("tss-gate")
        .options(&format!(
            "-c statement_timeout={ms} -c lock_timeout={ms} -c idle_in_transaction_session_timeout={idle}",
            ms = timeout.as_millis(),
            idle = timeout.as_millis() * 5
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
    pub fn open(pg: &PostgresSection) -> Result<PostgresStore, StoreError> {
        let (cfg, target) = client_config(pg)?;
        let open_err = |reason: String| StoreError::Open {
            path: target.clone(),
            reason,
        };
        let manager = PostgresConnectionManager::new(cfg, NoTls);
        let last_error = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let pool = r2d2::Pool::builder()
            .max_size(pg.pool_size)
            .min_idle(Some(0))
            .connection_timeout(Duration::from_millis(pg.connect_timeout_ms))
            // A connection dropped by a restarted server is found at
            // checkout, not by the request that uses it.
            .test_on_check_out(true)
            .error_handler(Box::new(KeepLast(last_error.clone())))
            .build(manager)
            .map_err(|e| open_err(format!("cannot connect: {e}")))?;
        let store = PostgresStore {
            pool,
            target: target.clone(),
            last_error,
        };
        store.migrate().map_err(|e| match e {
            StoreError::Io(reason) => open_err(reason),
            other => other,
        })?;
        Ok(store)
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>, StoreError> {
        self.pool.get().map_err(|e| {
            let last = self
                .last_error
                .lock()
                .map(|l| l.clone())
                .unwrap_or_default();
            StoreError::Io(if last.is_empty() {
                format!("{}: no connection: {e}", self.target)
            } else {
                format!("{}: no connection: {e} (last attempt: {last})", self.target)
            })
        })
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(db)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(db)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS tss_gate_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        )
        .map_err(db)?;
        let version: Option<i64> = tx
            .query_opt("SELECT value FROM tss_gate_meta WHERE key = 'schema'", &[])
            .map_err(db)?
            .map(|r| r.get(0));
        match version {
            None => {
                tx.batch_execute(SCHEMA).map_err(db)?;
                tx.batch_execute(SCHEMA_V2).map_err(db)?;
                tx.execute(
                    "INSERT INTO tss_gate_meta (key, value) VALUES ('schema', $1)",
                    &[&SCHEMA_VERSION],
                )
                .map_err(db)?;
            }
            Some(1) => {
                tx.batch_execute(SCHEMA_V2).map_err(db)?;
                tx.execute(
                    "UPDATE tss_gate_meta SET value = $1 WHERE key = 'schema'",
                    &[&SCHEMA_VERSION],
                )
                .map_err(db)?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(io(format!(
                    "schema version {v} is newer than this binary's ({SCHEMA_VERSION}); upgrade tss-gate"
                )));
            }
            Some(_) => {}
        }
        // Outside the versioned schema, as in SQLite (see sqlite::migrate).
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS tss_gate_controls \
             (key TEXT PRIMARY KEY, value TEXT NOT NULL, at_ms BIGINT NOT NULL)",
        )
        .map_err(db)?;
        tx.commit().map_err(db)
    }

    /// Deletes rows and records older than any window (any instance may).
    pub fn prune(&self, now_ms: i64) -> Result<(), StoreError> {
        let cutoff = now_ms - super::sqlite::RETENTION_MS;
        let mut conn = self.conn()?;
        conn.execute("DELETE FROM tss_gate_ledger WHERE at_ms < $1", &[&cutoff])
            .map_err(db)?;
        conn.execute(
            "DELETE FROM tss_gate_decisions WHERE at_ms < $1",
            &[&cutoff],
        )
        .map_err(db)?;
        conn.execute(
            "DELETE FROM tss_gate_approvals WHERE at_ms < $1",
            &[&cutoff],
        )
        .map_err(db)?;
        conn.execute(
            "DELETE FROM tss_gate_events WHERE received_at_ms < $1",
            &[&cutoff],
        )
        .map_err(db)?;
        Ok(())
    }

    /// `ledger show`'s report: every (limit, group) with rows in the
    /// retention time, with usage inside `window_of(limit)` (24h for a limit
    /// no longer configured).
    pub fn report(
        &self,
        now_ms: i64,
        window_of: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<Vec<GroupUsage>, StoreError> {
        let mut conn = self.conn()?;
        let groups = conn
            .query(
                "SELECT limit_id, group_key, max(group_name) FROM tss_gate_ledger WHERE at_ms > $1 \
                 GROUP BY limit_id, group_key ORDER BY limit_id, group_key",
                &[&(now_ms - super::sqlite::RETENTION_MS)],
            )
            .map_err(db)?;
        let mut out = Vec::new();
        for g in groups {
            let (limit, key, name): (String, String, String) = (g.get(0), g.get(1), g.get(2));
            let since = now_ms - window_of(&limit).unwrap_or(86_400_000);
            let r = conn
                .query_one(
                    "SELECT coalesce(sum(amount), 0)::text, count(*) FROM tss_gate_ledger \
                     WHERE limit_id = $1 AND group_key = $2 AND at_ms > $3 AND voided_at IS NULL",
                    &[&limit, &key, &since],
                )
                .map_err(db)?;
            let count: i64 = r.get(1);
            out.push(GroupUsage {
                limit,
                group: name,
                usage: Usage {
                    amount: units(r.get(0))?,
                    count: count as u64,
                },
                held: count as u64,
            });
        }
        Ok(out)
    }

    /// Rows of one request, or of all requests since `since_ms`.
    pub fn entries(
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
        rows.iter()
            .map(|r| {
                let voided_at: Option<i64> = r.get(6);
                let reason: Option<String> = r.get(7);
                Ok(LedgerEntry {
                    request_id: r.get(0),
                    limit: r.get(1),
                    group: r.get(2),
                    at_ms: r.get(3),
                    amount: units(r.get(4))?,
                    token: r.get(5),
                    voided: voided_at.map(|t| (t, reason.unwrap_or_default())),
                })
            })
            .collect()
    }

    /// Releases every row of `request_id`; returns how many were released.
    /// Under the request's lock, so it never races its own decision.
    pub fn void(&self, request_id: &str, at_ms: i64, reason: &str) -> Result<usize, StoreError> {
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

    /// `EXPLAIN` of the decision's queries, for `ledger plan`.
    pub fn plans(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut conn = self.conn()?;
        let mut out = Vec::new();
        let usage = format!("EXPLAIN {Q_USAGE}");
        let limits = vec!["l".to_owned()];
        let keys = vec!["k".to_owned()];
        let since = vec![0i64];
        let rows = conn
            .query(usage.as_str(), &[&limits, &keys, &since])
            .map_err(db)?;
        out.push((Q_USAGE.to_owned(), plan_text(&rows)));
        let record = format!("EXPLAIN {Q_RECORD}");
        let rows = conn.query(record.as_str(), &[&"r"]).map_err(db)?;
        out.push((Q_RECORD.to_owned(), plan_text(&rows)));
        Ok(out)
    }
}

fn plan_text(rows: &[postgres::Row]) -> String {
    rows.iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

fn units(s: String) -> Result<Amount, StoreError> {
    Amount::from_units(&s)
        .ok_or_else(|| io(format!("amount `{s}` in the ledger is not an integer")))
}

fn group_lock(limit: &str, key: &str) -> String {
    format!("g\u{1f}{limit}\u{1f}{key}")
}

fn request_lock(request_id: &str) -> String {
    format!("r\u{1f}{request_id}")
}

fn resolved() -> Pending {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _ = tx.send(Ok(()));
    Pending(rx)
}

/// What the first phase of a decision found.
enum Held {
    Prior(Prior),
    Usage {
        now: i64,
        usages: Vec<Usage>,
        /// The rows are in the ledger already (the request fitted).
        held: bool,
    },
}

impl PostgresStore {
    /// Phase one, under the groups' locks: the retry record, the usage,
    /// and when the request fits, its rows and a pending record, committed
    /// so that every other decision counts them.
    #[allow(clippy::too_many_arguments)]
    fn hold(
        conn: &mut postgres::Client,
        request_id: &str,
        digest_hex: &str,
        groups: &[GroupRef],
        hold: &[(Row, String)],
        now_ms: Option<i64>,
        fits: &dyn Fn(&[Usage]) -> bool,
    ) -> Result<Held, StoreError> {
        let mut tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .map_err(db)?;
        let mut locks: Vec<String> = groups
            .iter()
            .map(|g| group_lock(&g.limit, &g.key))
            .collect();
        locks.extend(hold.iter().map(|(r, _)| group_lock(&r.limit, &r.group_key)));
        tx.query_typed_one(Q_LOCK, &[(&locks, postgres::types::Type::TEXT_ARRAY)])
            .map_err(db)?;
        // Each statement from here on sees what committed before the locks.
        if let Some(r) = tx
            .query_typed_opt(Q_RECORD, &[(&request_id, postgres::types::Type::TEXT)])
            .map_err(db)?
        {
            let (d, answer): (String, String) = (r.get(0), r.get(1));
            if d != digest_hex {
                return Ok(Held::Prior(Prior::Different));
            }
            if !answer.is_empty() {
                return Ok(Held::Prior(Prior::Same(answer)));
            }
            // A pending record whose decider died before answering (we hold
            // the request's lock, so it is not deciding any more): it never
            // answered, so its hold is released and the request decided anew.
            tx.execute_typed(Q_RELEASE, &[(&request_id, postgres::types::Type::TEXT)])
                .map_err(db)?;
            tx.execute_typed(
                Q_RECORD_DELETE,
                &[(&request_id, postgres::types::Type::TEXT)],
            )
            .map_err(db)?;
        }
        let now = match now_ms {
            Some(t) => t,
            None => tx.query_typed_one(Q_NOW, &[]).map_err(db)?.get(0),
        };
        let mut usages = Vec::with_capacity(groups.len());
        if !groups.is_empty() {
            let limits: Vec<&str> = groups.iter().map(|g| g.limit.as_str()).collect();
            let keys: Vec<&str> = groups.iter().map(|g| g.key.as_str()).collect();
            let since: Vec<i64> = groups.iter().map(|g| now - g.window_ms).collect();
            let rows = tx
                .query_typed(
                    Q_USAGE,
                    &[
                        (&limits, postgres::types::Type::TEXT_ARRAY),
                        (&keys, postgres::types::Type::TEXT_ARRAY),
                        (&since, postgres::types::Type::INT8_ARRAY),
                    ],
                )
                .map_err(db)?;
            for r in rows {
                let count: i64 = r.get(2);
                usages.push(Usage {
                    amount: units(r.get(1))?,
                    count: count as u64,
                });
            }
            if usages.len() != groups.len() {
                return Err(io("usage query returned the wrong number of groups"));
            }
        }
        let held = fits(&usages);
        if held {
            insert_rows(&mut tx, request_id, digest_hex, hold, now)?;
            record(&mut tx, request_id, digest_hex, now, "")?;
        }
        tx.commit().map_err(db)?;
        Ok(Held::Usage { now, usages, held })
    }

    /// Phase two: an approval keeps its rows (or, approved over a limit by
    /// the policy's own rules, gets them now), a rejection releases them;
    /// the retry record gets the answer.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        conn: &mut postgres::Client,
        request_id: &str,
        digest_hex: &str,
        hold: &[(Row, String)],
        now: i64,
        held: bool,
        verdict: &Verdict,
    ) -> Result<(), StoreError> {
        let mut tx = conn.transaction().map_err(db)?;
        match (verdict.approved, held) {
            (true, true) | (false, false) => {}
            (true, false) => {
                let locks: Vec<String> = hold
                    .iter()
                    .map(|(r, _)| group_lock(&r.limit, &r.group_key))
                    .collect();
                tx.query_typed_one(Q_LOCK, &[(&locks, postgres::types::Type::TEXT_ARRAY)])
                    .map_err(db)?;
                insert_rows(&mut tx, request_id, digest_hex, hold, now)?;
            }
            (false, true) => {
                tx.execute_typed(Q_RELEASE, &[(&request_id, postgres::types::Type::TEXT)])
                    .map_err(db)?;
            }
        }
        if verdict.answer.is_empty() {
            // Not a decision to repeat (status 30 and the like): no record.
            tx.execute_typed(
                Q_RECORD_DELETE,
                &[(&request_id, postgres::types::Type::TEXT)],
            )
            .map_err(db)?;
        } else {
            record(&mut tx, request_id, digest_hex, now, &verdict.answer)?;
        }
        tx.commit().map_err(db)
    }
}

fn insert_rows(
    tx: &mut postgres::Transaction<'_>,
    request_id: &str,
    digest_hex: &str,
    hold: &[(Row, String)],
    now: i64,
) -> Result<(), StoreError> {
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
            (&limits, postgres::types::Type::TEXT_ARRAY),
            (&keys, postgres::types::Type::TEXT_ARRAY),
            (&now, postgres::types::Type::INT8),
            (&request_id, postgres::types::Type::TEXT),
            (&names, postgres::types::Type::TEXT_ARRAY),
            (&tokens, postgres::types::Type::TEXT_ARRAY),
            (&amounts, postgres::types::Type::TEXT_ARRAY),
            (&digest_hex, postgres::types::Type::TEXT),
        ],
    )
    .map_err(db)?;
    Ok(())
}

/// Writes (or replaces the pending one with) the request's retry record.
fn record(
    tx: &mut postgres::Transaction<'_>,
    request_id: &str,
    digest_hex: &str,
    now: i64,
    answer: &str,
) -> Result<(), StoreError> {
    tx.execute_typed(
        Q_RECORD_UPSERT,
        &[
            (&request_id, postgres::types::Type::TEXT),
            (&digest_hex, postgres::types::Type::TEXT),
            (&now, postgres::types::Type::INT8),
            (&answer, postgres::types::Type::TEXT),
        ],
    )
    .map_err(db)?;
    Ok(())
}

impl Store for PostgresStore {
    /// Two short transactions around the evaluation, so that decisions on
    /// the same groups are not serialised behind each other's policy run
    /// (as the SQLite store does with its in-memory holds). The request's
    /// own session lock is held throughout: a retry of it, on any instance,
    /// waits and then finds the answer.
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
        let mut conn = self.conn()?;
        let key = request_lock(request_id);
        conn.query_typed(Q_SESSION_LOCK, &[(&key, postgres::types::Type::TEXT)])
            .map_err(db)?;
        let result = (|| {
            let held = Self::hold(
                &mut conn,
                request_id,
                &digest_hex,
                groups,
                hold,
                now_ms,
                fits,
            )?;
            let (now, usages, held) = match held {
                Held::Prior(p) => return Ok(Outcome::Prior(p)),
                Held::Usage { now, usages, held } => (now, usages, held),
            };
            let verdict = decide(now, &usages);
            Self::settle(
                &mut conn,
                request_id,
                &digest_hex,
                hold,
                now,
                held,
                &verdict,
            )?;
            // Committed before the answer may leave: the pending is resolved.
            Ok(Outcome::Decided(resolved()))
        })();
        // Never back in the pool holding the lock. If this fails the
        // connection is broken and is dropped, which releases it too.
        let _ = conn.query_typed(Q_SESSION_UNLOCK, &[(&key, postgres::types::Type::TEXT)]);
        result
    }

    fn lookup(&self, request_id: &str, digest: &[u8; 32]) -> Result<Option<Prior>, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(db)?;
        tx.query_one(Q_LOCK, &[&vec![request_lock(request_id)]])
            .map_err(db)?;
        let found = tx.query_opt(Q_RECORD, &[&request_id]).map_err(db)?;
        tx.commit().map_err(db)?;
        let digest_hex = hex::encode(digest);
        Ok(found.and_then(|r| {
            let (d, answer): (String, String) = (r.get(0), r.get(1));
            if d != digest_hex {
                Some(Prior::Different)
            } else if answer.is_empty() {
                // Pending from a decider that died before answering: this
                // payload was never answered, so it is decided.
                None
            } else {
                Some(Prior::Same(answer))
            }
        }))
    }

    fn record_approval(&self, rec: &super::ApprovalRecord) -> Result<Pending, StoreError> {
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
        Ok(resolved())
    }

    fn approval(&self, request_id: &str) -> Result<Option<super::Approval>, StoreError> {
        let mut conn = self.conn()?;
        let row = conn
            .query_opt(
                &format!("SELECT {APPROVAL_COLUMNS} FROM tss_gate_approvals WHERE request_id = $1"),
                &[&request_id],
            )
            .map_err(db)?;
        Ok(row.as_ref().map(approval_row))
    }

    fn control(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn()?;
        let row = conn
            .query_opt(
                "SELECT value FROM tss_gate_controls WHERE key = $1",
                &[&key],
            )
            .map_err(db)?;
        Ok(row.map(|r| r.get(0)))
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

    fn put_event(&self, ev: &super::StoredEvent) -> Result<bool, StoreError> {
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

    fn transition(
        &self,
        request_id: &str,
        to: super::TaskState,
        at_ms: i64,
        reason: &str,
    ) -> Result<super::Transition, StoreError> {
        let mut conn = self.conn()?;
        // READ COMMITTED whatever the database's default: the statements
        // after the lock wait must see what committed during it.
        let mut tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .map_err(db)?;
        // The groups of the request's rows, locked as a decision locks them
        // (one statement, lock-id order), so no decision on any instance
        // reads their usage half-way through; plus the task's own lock.
        let mut locks: Vec<String> = tx
            .query(
                "SELECT DISTINCT limit_id, group_key FROM tss_gate_ledger WHERE request_id = $1",
                &[&request_id],
            )
            .map_err(db)?
            .iter()
            .map(|r| group_lock(r.get(0), r.get(1)))
            .collect();
        locks.push(format!("t\u{1f}{request_id}"));
        tx.query_one(Q_LOCK, &[&locks]).map_err(db)?;
        let before: Option<String> = tx
            .query_opt(
                "SELECT state FROM tss_gate_approvals WHERE request_id = $1 FOR UPDATE",
                &[&request_id],
            )
            .map_err(db)?
            .map(|r| r.get(0));
        let Some(before) = before else {
            return Ok(super::Transition::UNKNOWN);
        };
        let before = super::TaskState::parse(&before).unwrap_or(super::TaskState::Approved);
        let (after, change) = super::next_state(before, to);
        let rows = match change {
            super::RowChange::Keep => 0,
            super::RowChange::Release => tx
                .execute(
                    "UPDATE tss_gate_ledger SET voided_at = $2, void_reason = $3, void_source = $4 \
                     WHERE request_id = $1 AND voided_at IS NULL",
                    &[&request_id, &at_ms, &reason, &VOID_BY_EVENT],
                )
                .map_err(db)? as usize,
            super::RowChange::Rehold => tx
                .execute(
                    "UPDATE tss_gate_ledger SET voided_at = NULL, void_reason = NULL, void_source = NULL \
                     WHERE request_id = $1 AND void_source = $2",
                    &[&request_id, &VOID_BY_EVENT],
                )
                .map_err(db)? as usize,
        };
        if after != before {
            tx.execute(
                "UPDATE tss_gate_approvals SET state = $2, changed_at_ms = $3, change_reason = $4 \
                 WHERE request_id = $1",
                &[&request_id, &after.as_str(), &at_ms, &reason],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(super::Transition {
            before: Some(before),
            after: Some(after),
            rows,
        })
    }

    fn approvals(&self, since_ms: i64, limit: usize) -> Result<Vec<super::Approval>, StoreError> {
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
        Ok(rows.iter().map(approval_row).collect())
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
            let i: i64 = r.get(0);
            let count: i64 = r.get(2);
            if let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| out.get_mut(i)) {
                *slot = Usage {
                    amount: units(r.get(1))?,
                    count: count as u64,
                };
            }
        }
        Ok(out)
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
