//! Reading an approval or a ledger row out of either database: each
//! backend selects the same columns in the same order and reads them
//! through [`Columns`]; what they mean is decided here once.

use super::{Approval, ApprovalRecord, Cause, LedgerEntry, StoreError, protocol::task_state};
use crate::velocity::Amount;

/// The columns of an approval, in the order [`approval`] reads them (both
/// backends name them alike).
pub(crate) const APPROVAL_COLUMNS: &str =
    "request_id, request_type, at_ms, digest, facts, state, changed_at_ms, change_reason";

/// One result row of either database, read by column index.
pub(crate) trait Columns {
    fn text(&self, i: usize) -> Result<String, StoreError>;
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError>;
}

/// Implements [`Columns`] for a backend's row type `$row`, whose method
/// `$get(i)` reads column `i` as any type and whose errors `$err` maps.
macro_rules! columns_by {
    ($row:ty, $get:ident, $err:path) => {
        impl $crate::store::rows::Columns for $row {
            fn text(&self, i: usize) -> Result<String, $crate::store::StoreError> {
                self.$get(i).map_err($err)
            }
            fn int(&self, i: usize) -> Result<i64, $crate::store::StoreError> {
                self.$get(i).map_err($err)
            }
            fn opt_text(&self, i: usize) -> Result<Option<String>, $crate::store::StoreError> {
                self.$get(i).map_err($err)
            }
            fn opt_int(&self, i: usize) -> Result<Option<i64>, $crate::store::StoreError> {
                self.$get(i).map_err($err)
            }
        }
    };
}
pub(crate) use columns_by;

/// An approval from its [`APPROVAL_COLUMNS`].
pub(crate) fn approval(r: &impl Columns) -> Result<Approval, StoreError> {
    let changed_at = r.opt_int(6)?;
    let reason = r.opt_text(7)?;
    Ok(Approval {
        record: ApprovalRecord {
            request_id: r.text(0)?,
            request_type: r.text(1)?,
            at_ms: r.int(2)?,
            digest: r.text(3)?,
            facts: r.text(4)?,
        },
        state: task_state(&r.text(5)?),
        changed: changed_at.map(|t| (t, reason.unwrap_or_default())),
    })
}

/// A ledger row from `request_id, limit_id, group_name, at_ms, amount (as
/// text), token, voided_at, void_reason`.
pub(crate) fn entry(r: &impl Columns) -> Result<LedgerEntry, StoreError> {
    let voided_at = r.opt_int(6)?;
    let reason = r.opt_text(7)?;
    Ok(LedgerEntry {
        request_id: r.text(0)?,
        limit: r.text(1)?,
        group: r.text(2)?,
        at_ms: r.int(3)?,
        amount: units(&r.text(4)?)?,
        token: r.text(5)?,
        voided: voided_at.map(|t| (t, reason.unwrap_or_default())),
    })
}

/// A stored amount (integer 10^-18 units as text).
pub(crate) fn units(s: &str) -> Result<Amount, StoreError> {
    Amount::from_units(s).ok_or_else(|| {
        Cause::Corrupt(format!("amount `{s}` in the ledger is not an integer")).into()
    })
}
