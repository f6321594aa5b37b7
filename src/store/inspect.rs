//! What the operator's tools read of a store (`ledger show`, `ledger
//! plan`): the usage report, written once over [`Usages`], which each
//! backend implements with its own queries, and the query-plan listing.

use super::{GroupUsage, RETENTION_MS, StoreError};
use crate::velocity::Usage;

/// The window of a limit no longer configured, in the report.
pub const DEFAULT_WINDOW_MS: i64 = 86_400_000;

/// The plans of the queries a decision runs (`ledger plan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryPlans {
    /// How many ledger rows the plans were made against, when the backend
    /// counts them cheaply.
    pub rows: Option<i64>,
    pub queries: Vec<QueryPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryPlan {
    /// What the query is for (None: the query speaks for itself).
    pub name: Option<&'static str>,
    pub query: &'static str,
    /// The database's plan, one line per step.
    pub plan: Vec<String>,
}

/// A backend's queries behind [`report`].
pub(crate) trait Usages {
    /// Every (limit, group key, group name) with rows after `since`, by
    /// limit and group key.
    fn groups(&mut self, since: i64) -> Result<Vec<(String, String, String)>, StoreError>;
    /// One group's usage after `since` (voided rows not counted) and how
    /// many rows hold room in it.
    fn usage(&mut self, limit: &str, key: &str, since: i64) -> Result<(Usage, u64), StoreError>;
}

/// [`super::Store::report`] for any backend.
pub(crate) fn report(
    u: &mut impl Usages,
    now_ms: i64,
    window_of: &dyn Fn(&str) -> Option<i64>,
) -> Result<Vec<GroupUsage>, StoreError> {
    u.groups(now_ms - RETENTION_MS)?
        .into_iter()
        .map(|(limit, key, name)| {
            let since = now_ms - window_of(&limit).unwrap_or(DEFAULT_WINDOW_MS);
            let (usage, held) = u.usage(&limit, &key, since)?;
            Ok(GroupUsage {
                limit,
                group: name,
                usage,
                held,
            })
        })
        .collect()
}
