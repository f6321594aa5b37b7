//! What can go wrong in the state store, typed by cause: the server answers
//! every one of them with status 30 and logs its text, so a text names what
//! failed and where (a file, a database host), never a password.

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Cause {
    /// The database refused or failed a statement (its own message).
    #[error("{0}")]
    Database(String),
    /// A lock or a statement waited past its time limit (SQLite busy,
    /// PostgreSQL `lock_timeout` / `statement_timeout`).
    #[error("{0}")]
    Busy(String),
    /// No connection to the database could be had.
    #[error("{0}")]
    Unreachable(String),
    /// A stored value is not what this binary writes (an amount that is not
    /// an integer, a query that returned the wrong shape).
    #[error("{0}")]
    Corrupt(String),
    /// The file is not a SQLite database, fails its integrity check, or
    /// holds tables but no tss-gate schema.
    #[error("{0}")]
    Damaged(String),
    /// Written by a newer tss-gate: refused rather than misread.
    #[error(
        "schema version {found} is newer than this tss-gate understands ({known}); use a newer tss-gate"
    )]
    NewerSchema { found: i64, known: i64 },
    /// Another process owns the SQLite file.
    #[error(
        "another tss-gate process is using this store (one process per SQLite file; use PostgreSQL for several instances)"
    )]
    InUse,
    /// The store's settings cannot be used (a URL with a password in it, a
    /// password that cannot be read).
    #[error("{0}")]
    Settings(String),
    /// A file beside the store could not be created or opened.
    #[error("{0}")]
    File(String),
    /// The SQLite store's writer thread is gone: nothing more is durable.
    #[error("the store's writer stopped")]
    WriterGone,
    /// The store was closed while a caller still used it.
    #[error("the store is closed")]
    Closed,
    /// This store cannot do that (an inspection-only store asked to decide).
    #[error("this state store does not support {0}")]
    Unsupported(&'static str),
    /// A fixture's history names one request id twice.
    #[error("history request id `{0}` is used twice")]
    SeedReused(String),
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// Opening the store failed (`path`: a file, or a database without its
    /// password).
    #[error("state store `{path}`: {cause}")]
    Open { path: String, cause: Cause },
    /// An operation on an open store failed.
    #[error("state store: {0}")]
    Failed(#[from] Cause),
    /// A failure of a caller's own around a store call (a reader thread
    /// that panicked, the decision log): kept for callers outside the store;
    /// the store itself never builds it.
    #[error("state store: {0}")]
    Io(String),
}

impl StoreError {
    /// Why, for a caller that tells causes apart (None: a caller's own).
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            StoreError::Open { cause, .. } | StoreError::Failed(cause) => Some(cause),
            StoreError::Io(_) => None,
        }
    }

    /// This failure as a failure to open `path` (errors of the first
    /// statements an open runs).
    pub(crate) fn opening(self, path: &str) -> StoreError {
        match self {
            StoreError::Failed(cause) => StoreError::Open {
                path: path.to_owned(),
                cause,
            },
            other => other,
        }
    }
}
