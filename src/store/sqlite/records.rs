//! The SQLite store's records beside the ledger: approvals and their task
//! states, the node's events, the control switches. Every function takes a
//! connection, so the server's store and the operator's tools
//! ([`super::Beside`]) share them.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::sql;
use crate::store::protocol::{TaskTx, VOID_BY_EVENT};
use crate::store::rows::APPROVAL_COLUMNS;
use crate::store::{Approval, StoreError, StoredEvent, TaskState};

crate::store::rows::columns_by!(rusqlite::Row<'_>, get, sql);

/// Runs `query` with `args` and reads every row with `read`.
pub(super) fn all<T>(
    conn: &Connection,
    query: &str,
    args: impl rusqlite::Params,
    read: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut st = conn.prepare_cached(query).map_err(sql)?;
    let mut rows = st.query(args).map_err(sql)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(sql)? {
        out.push(read(r)?);
    }
    Ok(out)
}

/// The approval of `request_id`, from any connection.
pub fn approval_of(conn: &Connection, request_id: &str) -> Result<Option<Approval>, StoreError> {
    let q = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE request_id = ?1");
    Ok(
        all(conn, &q, [request_id], |r| crate::store::rows::approval(r))?
            .into_iter()
            .next(),
    )
}

/// Approvals since `since_ms`, newest first, from any connection.
pub fn approvals_since(
    conn: &Connection,
    since_ms: i64,
    limit: usize,
) -> Result<Vec<Approval>, StoreError> {
    let q = format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE at_ms > ?1 ORDER BY at_ms DESC LIMIT ?2"
    );
    all(conn, &q, params![since_ms, limit as i64], |r| {
        crate::store::rows::approval(r)
    })
}

/// A control switch's stored text (see [`crate::store::Store::control`]).
pub fn control_of(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    conn.prepare_cached("SELECT value FROM controls WHERE key = ?1")
        .and_then(|mut st| st.query_row(params![key], |r| r.get(0)).optional())
        .map_err(sql)
}

/// Sets or clears a control switch (see [`crate::store::Store::set_control`]).
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
    .map_err(sql)
}

/// Stores an event unless one with its id is; whether it was stored.
pub(super) fn put_event_on(conn: &Connection, ev: &StoredEvent) -> Result<bool, StoreError> {
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
        .map_err(sql)?;
    Ok(n == 1)
}

pub(super) fn event_stored_on(conn: &Connection, event_id: &str) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")
        .and_then(|mut st| st.exists([event_id]))
        .map_err(sql)
}

/// Counts a void, in the void's transaction: readers skip the voided-rows
/// query while this counter says there never was a void, so the rows and
/// the counter must change together.
pub(super) fn count_void(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('voids', 1) \
         ON CONFLICT (key) DO UPDATE SET value = value + 1",
        [],
    )
    .map(drop)
    .map_err(sql)
}

/// A task's transition in one IMMEDIATE transaction on the file.
pub(super) struct Task<'c>(pub(super) Transaction<'c>);

impl TaskTx for Task<'_> {
    fn state(&mut self, request_id: &str) -> Result<Option<String>, StoreError> {
        self.0
            .query_row(
                "SELECT state FROM approvals WHERE request_id = ?1",
                [request_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)
    }

    fn release(&mut self, request_id: &str, at_ms: i64, reason: &str) -> Result<usize, StoreError> {
        let n = self
            .0
            .execute(
                "UPDATE ledger SET voided_at = ?2, void_reason = ?3, void_source = ?4 \
                 WHERE request_id = ?1 AND voided_at IS NULL",
                params![request_id, at_ms, reason, VOID_BY_EVENT],
            )
            .map_err(sql)?;
        count_void(&self.0)?;
        Ok(n)
    }

    fn rehold(&mut self, request_id: &str) -> Result<usize, StoreError> {
        self.0
            .execute(
                "UPDATE ledger SET voided_at = NULL, void_reason = NULL, void_source = NULL \
                 WHERE request_id = ?1 AND void_source = ?2",
                params![request_id, VOID_BY_EVENT],
            )
            .map_err(sql)
    }

    fn set_state(&mut self, id: &str, to: (TaskState, i64, &str)) -> Result<(), StoreError> {
        let (state, at_ms, reason) = to;
        self.0
            .execute(
                "UPDATE approvals SET state = ?2, changed_at_ms = ?3, change_reason = ?4 WHERE request_id = ?1",
                params![id, state.as_str(), at_ms, reason],
            )
            .map(drop)
            .map_err(sql)
    }

    fn commit(self) -> Result<(), StoreError> {
        self.0.commit().map_err(sql)
    }
}
