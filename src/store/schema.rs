//! Schema versioning, the same for both backends: the version this binary
//! writes, which scripts take a store from the version it has to it, and
//! the refusal of a store written by a newer tss-gate. The scripts
//! themselves (SQL) are each backend's.

use super::{Cause, StoreError};

/// The schema this binary writes. A store with a newer one is refused.
pub const SCHEMA_VERSION: i64 = 2;

/// The scripts from version `i` to `i + 1`, in order: the first creates
/// version 1 on a fresh store.
pub(crate) type Scripts = [&'static str; SCHEMA_VERSION as usize];

/// A backend's part of [`migrate`], on one connection or transaction.
pub(crate) trait Migrate {
    /// The stored version; None: a fresh store, no version yet.
    fn version(&mut self) -> Result<Option<i64>, StoreError>;
    /// What must hold before anything changes (SQLite: the integrity
    /// check, and that a fresh file holds no tables).
    fn check(&mut self, found: Option<i64>) -> Result<(), StoreError>;
    /// Runs `scripts` and records [`SCHEMA_VERSION`], in one transaction;
    /// `found` as [`Migrate::version`] read it.
    fn apply(&mut self, scripts: &[&'static str], found: Option<i64>) -> Result<(), StoreError>;
    /// Tables kept outside the versioned schema (the control switches: an
    /// older binary ignores them, and `tss-gate freeze` may create them
    /// beside a running server).
    fn unversioned(&mut self) -> Result<(), StoreError>;
}

/// Brings a store to [`SCHEMA_VERSION`]: refuses a newer one, creates a
/// fresh one, runs the scripts an older one has not had.
pub(crate) fn migrate(m: &mut impl Migrate, scripts: &Scripts) -> Result<(), StoreError> {
    let found = m.version()?;
    if let Some(v) = found.filter(|v| *v > SCHEMA_VERSION) {
        return Err(Cause::NewerSchema {
            found: v,
            known: SCHEMA_VERSION,
        }
        .into());
    }
    m.check(found)?;
    let todo: &[&'static str] = match found {
        None => scripts,
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
