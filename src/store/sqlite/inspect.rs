//! What the operator's tools read and change in a SQLite store: the usage
//! report, the rows, a void by hand, the query plans, on any connection;
//! and [`Beside`], the file opened beside the server that owns it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, params};

use super::records::{
    all, approval_of, approvals_since, control_of, count_void, event_stored_on, set_control_on,
};
use super::usage::{Q_FIRST, Q_HEAD, Q_VOIDED, sql_usage};
use super::{Q_RECORD, lock, schema, sql};
use crate::store::inspect::{QueryPlan, QueryPlans, Usages};
use crate::store::{
    Approval, Cause, DecideRequest, GroupUsage, LedgerEntry, Outcome, Prior, Store, StoreError,
    Verdict,
};
use crate::velocity::Usage;

/// [`Usages`] on one connection.
pub(super) struct On<'c>(pub(super) &'c Connection);

impl Usages for On<'_> {
    fn groups(&mut self, since: i64) -> Result<Vec<(String, String, String)>, StoreError> {
        all(
            self.0,
            "SELECT limit_id, group_key, max(group_name) FROM ledger WHERE at_ms > ?1 \
             GROUP BY limit_id, group_key ORDER BY limit_id, group_key",
            [since],
            |r| {
                Ok((
                    r.get(0).map_err(sql)?,
                    r.get(1).map_err(sql)?,
                    r.get(2).map_err(sql)?,
                ))
            },
        )
    }

    fn usage(&mut self, limit: &str, key: &str, since: i64) -> Result<(Usage, u64), StoreError> {
        let usage = sql_usage(self.0, limit, key, since)?;
        let held: i64 = self
            .0
            .query_row(
                "SELECT count(*) FROM ledger WHERE limit_id = ?1 AND group_key = ?2 AND at_ms > ?3 AND voided_at IS NULL",
                params![limit, key, since],
                |r| r.get(0),
            )
            .map_err(sql)?;
        Ok((usage, held as u64))
    }
}

/// `ledger show`'s report, from any connection.
pub fn report(
    conn: &Connection,
    now_ms: i64,
    window_of: &dyn Fn(&str) -> Option<i64>,
) -> Result<Vec<GroupUsage>, StoreError> {
    crate::store::inspect::report(&mut On(conn), now_ms, window_of)
}

/// Rows of one request, or of all requests after `since_ms`.
pub fn entries(
    conn: &Connection,
    request_id: Option<&str>,
    since_ms: i64,
) -> Result<Vec<LedgerEntry>, StoreError> {
    all(
        conn,
        "SELECT request_id, limit_id, group_name, at_ms, amount, token, voided_at, void_reason \
         FROM ledger WHERE (?1 IS NULL OR request_id = ?1) AND at_ms > ?2 ORDER BY at_ms, limit_id",
        params![request_id, since_ms],
        |r| crate::store::rows::entry(r),
    )
}

/// Releases every row of `request_id`; returns how many were released.
pub fn void(
    conn: &Connection,
    request_id: &str,
    at_ms: i64,
    reason: &str,
) -> Result<usize, StoreError> {
    let tx = conn.unchecked_transaction().map_err(sql)?;
    let n = tx
        .execute(
            "UPDATE ledger SET voided_at = ?2, void_reason = ?3 WHERE request_id = ?1 AND voided_at IS NULL",
            params![request_id, at_ms, reason],
        )
        .map_err(sql)?;
    count_void(&tx)?;
    tx.commit().map_err(sql)?;
    Ok(n)
}

/// SQLite's plan of every query a decision runs.
pub fn plans(conn: &Connection) -> Result<QueryPlans, StoreError> {
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM ledger", [], |r| r.get(0))
        .map_err(sql)?;
    let mut queries = Vec::new();
    for (name, query) in [
        ("head of a group", Q_HEAD),
        ("first row inside the window", Q_FIRST),
        ("voided rows inside the window", Q_VOIDED),
        ("retry record", Q_RECORD),
    ] {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {query}"))
            .map_err(sql)?;
        let n = stmt.parameter_count();
        let args: Vec<&dyn rusqlite::ToSql> = (0..n).map(|_| &0 as &dyn rusqlite::ToSql).collect();
        let plan = stmt
            .query_map(args.as_slice(), |r| r.get::<_, String>(3))
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?;
        queries.push(QueryPlan {
            name: Some(name),
            query,
            plan,
        });
    }
    Ok(QueryPlans {
        rows: Some(rows),
        queries,
    })
}

/// A store file opened beside the process that owns it (`tss-gate ledger`,
/// `freeze`): a second connection, which WAL lets read and write beside the
/// server's. It never decides: the owner's in-memory holds are not here.
pub struct Beside {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Beside {
    /// Opens an existing store file (migrating it, as a server would).
    pub fn open(path: &Path) -> Result<Beside, StoreError> {
        let mut conn = schema::connect(path, false)?;
        schema::migrate(&mut conn, path)?;
        Ok(Beside {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        })
    }
}

const BESIDE: &str = "decisions beside the server that owns the file";

impl Store for Beside {
    fn decide(
        &self,
        _req: &DecideRequest<'_>,
        _decide: &mut dyn FnMut(i64, &[Usage]) -> Verdict,
    ) -> Result<Outcome, StoreError> {
        Err(Cause::Unsupported(BESIDE).into())
    }

    fn lookup(&self, _request_id: &str, _digest: &[u8; 32]) -> Result<Option<Prior>, StoreError> {
        Err(Cause::Unsupported(BESIDE).into())
    }

    fn approval(&self, request_id: &str) -> Result<Option<Approval>, StoreError> {
        approval_of(&lock(&self.conn), request_id)
    }

    fn approvals(&self, since_ms: i64, limit: usize) -> Result<Vec<Approval>, StoreError> {
        approvals_since(&lock(&self.conn), since_ms, limit)
    }

    fn control(&self, key: &str) -> Result<Option<String>, StoreError> {
        control_of(&lock(&self.conn), key)
    }

    fn set_control(&self, key: &str, value: Option<&str>, now_ms: i64) -> Result<(), StoreError> {
        set_control_on(&lock(&self.conn), key, value, now_ms)
    }

    fn event_stored(&self, event_id: &str) -> Result<bool, StoreError> {
        event_stored_on(&lock(&self.conn), event_id)
    }

    fn report(
        &self,
        now_ms: i64,
        window_of: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<Vec<GroupUsage>, StoreError> {
        report(&lock(&self.conn), now_ms, window_of)
    }

    fn entries(
        &self,
        request_id: Option<&str>,
        since_ms: i64,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        entries(&lock(&self.conn), request_id, since_ms)
    }

    fn void(&self, request_id: &str, at_ms: i64, reason: &str) -> Result<usize, StoreError> {
        void(&lock(&self.conn), request_id, at_ms, reason)
    }

    fn plans(&self) -> Result<QueryPlans, StoreError> {
        plans(&lock(&self.conn))
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}
