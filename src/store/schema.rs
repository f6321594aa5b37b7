//! Schema versioning, the same for both backends: the version this binary
//! writes, which scripts take a store from the version it has to it, and
//! the refusal of a store written by a newer tss-gate. The scripts
//! themselves (SQL) are each backend's.

use super::{Cause, StoreError};

/// The schema this binary writes. A store with a newer one is refused.
pub const SCHEMA_VERSION: i64 = 2;

/// The scripts from version `i` to `i + 1`, in order: the first creates
/// version 1 on a fresh store.
pub(crate) type Scripts = [String; SCHEMA_VERSION as usize];

/// What a backend's SQL calls things.
pub(crate) struct Dialect {
    /// Before every table and index name.
    pub prefix: &'static str,
    /// A 64-bit integer column.
    pub int: &'static str,
    /// After every table's column list.
    pub table_end: &'static str,
}

/// Version 2, the same tables in either dialect: what tss-gate approved,
/// the node's events (issue 18), and which voids a task's failure made (a
/// later `succeeded` re-holds exactly those, never a void made by hand).
pub(crate) fn version_2(d: &Dialect) -> String {
    const V2: &str = "
ALTER TABLE {p}ledger ADD COLUMN void_source TEXT;
CREATE TABLE {p}approvals (
    request_id    TEXT PRIMARY KEY,
    request_type  TEXT NOT NULL,
    at_ms         {int} NOT NULL,
    digest        TEXT NOT NULL,
    facts         TEXT NOT NULL,
    state         TEXT NOT NULL,
    changed_at_ms {int},
    change_reason TEXT
){end};
CREATE INDEX {p}approvals_age ON {p}approvals (at_ms);
CREATE TABLE {p}events (
    event_id       TEXT PRIMARY KEY,
    received_at_ms {int} NOT NULL,
    node_id        TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    body           TEXT NOT NULL
){end};
CREATE INDEX {p}events_age ON {p}events (received_at_ms);
CREATE INDEX {p}events_request ON {p}events (request_id);
";
    V2.replace("{p}", d.prefix)
        .replace("{int}", d.int)
        .replace("{end}", d.table_end)
}

/// A backend's part of [`migrate`], on one connection or transaction.
pub(crate) trait Migrate {
    /// The stored version; None: a fresh store, no version yet.
    fn version(&mut self) -> Result<Option<i64>, StoreError>;
    /// What must hold before anything changes (SQLite: the integrity
    /// check, and that a fresh file holds no tables).
    fn check(&mut self, found: Option<i64>) -> Result<(), StoreError>;
    /// Runs `scripts` and records [`SCHEMA_VERSION`], in one transaction;
    /// `found` as [`Migrate::version`] read it.
    fn apply(&mut self, scripts: &[String], found: Option<i64>) -> Result<(), StoreError>;
    /// Tables kept outside the versioned schema (the control switches: an
    /// older binary ignores them, and `tss-gate freeze` may create them
    /// beside a running server).
    fn unversioned(&mut self) -> Result<(), StoreError>;
}

/// Brings a store to [`SCHEMA_VERSION`]: refuses a newer one, creates a
/// fresh one, runs the scripts an older one has not had.
pub(crate) fn migrate(m: &mut impl Migrate, scripts: Scripts) -> Result<(), StoreError> {
    let found = m.version()?;
    if let Some(v) = found.filter(|v| *v > SCHEMA_VERSION) {
        return Err(Cause::NewerSchema {
            found: v,
            known: SCHEMA_VERSION,
        }
        .into());
    }
    m.check(found)?;
    let todo: &[String] = match found {
        None => &scripts,
        // A version below 1 was never written by tss-gate: left as it is.
        Some(v) => usize::try_from(v)
            .ok()
            .filter(|v| *v >= 1)
            .and_then(|v| scripts.get(v..))
            .unwrap_or(&[]),
    };
    if !todo.is_empty() {
        m.apply(todo, found)?;
    }
    m.unversioned()
}
