//! The SQLite file itself: its tables (by schema version), the pragmas
//! every connection needs, and opening it private to its owner.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{open_err, sql};
use crate::store::schema::{Dialect, Migrate, SCHEMA_VERSION, Scripts, version_2};
use crate::store::{Cause, StoreError};

pub(super) const SCHEMA: &str = "
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

fn scripts() -> Scripts {
    [
        SCHEMA.to_owned(),
        version_2(&Dialect {
            prefix: "",
            int: "INTEGER",
            table_end: " WITHOUT ROWID",
        }),
    ]
}

const CONTROLS: &str = "CREATE TABLE IF NOT EXISTS controls (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    at_ms INTEGER NOT NULL
) WITHOUT ROWID;";

/// Opens a connection with the pragmas every user of the file needs.
pub fn connect(path: &Path, create: bool) -> Result<Connection, StoreError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let opening = |e| sql(e).opening(&path.display().to_string());
    let conn = Connection::open_with_flags(path, flags).map_err(opening)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(opening)?;
    conn.execute_batch(
        // A larger WAL between checkpoints: the pages every commit touches
        // (the right edge of each group's rows) are rewritten in the WAL
        // many times but copied back to the database once per checkpoint.
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA wal_autocheckpoint = 8192;",
    )
    .map_err(opening)?;
    Ok(conn)
}

/// Creates the schema on an empty file, checks the version and the file's
/// integrity otherwise. Refuses a newer schema and a damaged file.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    crate::store::schema::migrate(&mut File(conn), scripts())
        .map_err(|e| e.opening(&path.display().to_string()))
}

struct File<'a>(&'a mut Connection);

fn damaged(what: impl std::fmt::Display) -> StoreError {
    Cause::Damaged(what.to_string()).into()
}

impl Migrate for File<'_> {
    fn version(&mut self) -> Result<Option<i64>, StoreError> {
        let v: i64 = self
            .0
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| damaged(format!("not a readable SQLite database ({e})")))?;
        Ok((v != 0).then_some(v))
    }

    fn check(&mut self, found: Option<i64>) -> Result<(), StoreError> {
        let ok: String = self
            .0
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| damaged(format!("integrity check failed ({e})")))?;
        if ok != "ok" {
            return Err(damaged(format!("the file is damaged: {ok}")));
        }
        if found.is_none() {
            let tables: i64 = self
                .0
                .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
                .map_err(sql)?;
            if tables > 0 {
                return Err(damaged(
                    "the file holds tables but no tss-gate schema version; refusing to use it",
                ));
            }
        }
        Ok(())
    }

    fn apply(&mut self, scripts: &[String], found: Option<i64>) -> Result<(), StoreError> {
        let tx = self.0.transaction().map_err(sql)?;
        for s in scripts {
            tx.execute_batch(s).map_err(|e| match found {
                Some(_) => {
                    Cause::Database(format!("migrating to schema {SCHEMA_VERSION}: {e}")).into()
                }
                None => sql(e),
            })?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(sql)?;
        tx.commit().map_err(sql)
    }

    fn unversioned(&mut self) -> Result<(), StoreError> {
        self.0.execute_batch(CONTROLS).map_err(sql)
    }
}

/// Creates a file readable by its owner only: it holds who moved what where.
pub(super) fn create_private(path: &Path) -> Result<(), StoreError> {
    crate::private_fs::create_parent(path)
        .map_err(|e| open_err(path, Cause::File(e.to_string())))?;
    crate::private_fs::open_append(path)
        .map(drop)
        .map_err(|e| open_err(path, Cause::File(e.to_string())))
}
