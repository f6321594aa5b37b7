//! A group's usage inside its window, read without scanning: the running
//! totals of its first row inside the window and of its head, voided rows
//! taken off, held rows added; from memory alone when the head and the
//! first row are known ([`Tail`]). Also the peaks of `Store::peaks`, by the
//! same reads.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Held, SqliteStore, UNBATCHED, lock, slot, sql};
use crate::store::{GroupRef, StoreError};
use crate::velocity::{Amount, Usage};

/// Heads the writer remembers; beyond this many groups it starts afresh
/// (a head is one indexed lookup away).
pub(super) const MAX_HEADS: usize = 100_000;

/// The queries a decision runs, named for `ledger plan` and tests.
pub const Q_HEAD: &str = "SELECT seq, at_ms, cum_amount, cum_count FROM ledger \
     WHERE limit_id = ?1 AND group_key = ?2 ORDER BY at_ms DESC, seq DESC LIMIT 1";
pub const Q_FIRST: &str = "SELECT amount, cum_amount, cum_count, at_ms FROM ledger \
     WHERE limit_id = ?1 AND group_key = ?2 AND at_ms > ?3 ORDER BY at_ms, seq LIMIT 1";
// INDEXED BY: the primary key also matches the WHERE clause, and the
// planner may pick it, which would visit every row of the window.
pub const Q_VOIDED: &str = "SELECT amount FROM ledger INDEXED BY ledger_voided \
     WHERE limit_id = ?1 AND group_key = ?2 AND at_ms > ?3 AND voided_at IS NOT NULL";

#[derive(Debug, Clone, Copy)]
pub(super) struct Head {
    pub(super) seq: i64,
    pub(super) at_ms: i64,
    pub(super) cum: Amount,
    pub(super) count: i64,
}

pub(super) const EMPTY: Head = Head {
    seq: 0,
    at_ms: i64::MIN,
    cum: Amount::ZERO,
    count: 0,
};

/// The first committed row of a group inside a window that started at
/// `since`. Rows are only ever appended after a group's last row (never
/// before it in time), and a row's running totals never change, so this
/// stays the first row inside any later window that still contains it.
/// (Pruning deletes rows older than any window; a row deleted by hand
/// while remembered keeps counting, which errs towards rejecting.)
#[derive(Debug, Clone, Copy)]
pub(super) struct Tail {
    since: i64,
    at_ms: i64,
    amount: Amount,
    cum: Amount,
    count: i64,
}

impl Tail {
    /// Whether this is the first row inside the window starting at `since`.
    fn first_after(&self, since: i64) -> bool {
        since >= self.since && self.at_ms > since
    }

    /// Usage from this row up to `head` (a head before this row: none).
    fn usage_to(&self, head: Head) -> Usage {
        // The running total just before this row.
        let before = self.cum.saturating_sub(self.amount);
        let n = head.count - (self.count - 1);
        Usage {
            amount: head.cum.saturating_sub(before),
            count: n.max(0) as u64,
        }
    }
}

fn parse_amount(s: &str) -> rusqlite::Result<Amount> {
    Amount::from_units(s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            "amount is not an integer".into(),
        )
    })
}

pub(super) fn sql_head(
    conn: &Connection,
    limit: &str,
    key: &str,
) -> Result<Option<Head>, StoreError> {
    let mut stmt = conn.prepare_cached(Q_HEAD).map_err(sql)?;
    stmt.query_row(params![limit, key], |r| {
        let cum: String = r.get(2)?;
        Ok(Head {
            seq: r.get(0)?,
            at_ms: r.get(1)?,
            cum: parse_amount(&cum)?,
            count: r.get(3)?,
        })
    })
    .optional()
    .map_err(sql)
}

/// Usage in (since, ∞) from committed rows only.
pub(super) fn sql_usage(
    conn: &Connection,
    limit: &str,
    key: &str,
    since: i64,
) -> Result<Usage, StoreError> {
    match sql_head(conn, limit, key)? {
        Some(head) => usage_from(conn, limit, key, since, head, true).map(|(u, _)| u),
        None => Ok(Usage::default()),
    }
}

/// Usage in (since, ∞) of the committed rows up to `head`, and the first
/// row inside the window (None: there is none). Rows after `head` that
/// SQLite already shows are not counted (the caller counts them as held);
/// `voids: false` skips the voided-rows query when the store has never had
/// a void.
fn usage_from(
    conn: &Connection,
    limit: &str,
    key: &str,
    since: i64,
    head: Head,
    voids: bool,
) -> Result<(Usage, Option<Tail>), StoreError> {
    let first = {
        let mut stmt = conn.prepare_cached(Q_FIRST).map_err(sql)?;
        stmt.query_row(params![limit, key, since], |r| {
            let a: String = r.get(0)?;
            let c: String = r.get(1)?;
            Ok(Tail {
                since,
                at_ms: r.get(3)?,
                amount: parse_amount(&a)?,
                cum: parse_amount(&c)?,
                count: r.get(2)?,
            })
        })
        .optional()
        .map_err(sql)?
    };
    let Some(tail) = first else {
        return Ok((Usage::default(), None));
    };
    let mut u = tail.usage_to(head);
    if voids {
        subtract_voided(conn, limit, key, since, &mut u)?;
    }
    Ok((u, Some(tail)))
}

/// Takes the voided rows inside the window off `u`.
fn subtract_voided(
    conn: &Connection,
    limit: &str,
    key: &str,
    since: i64,
    u: &mut Usage,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(Q_VOIDED).map_err(sql)?;
    let voided = stmt
        .query_map(params![limit, key, since], |r| {
            parse_amount(&r.get::<_, String>(0)?)
        })
        .map_err(sql)?;
    for v in voided {
        u.amount = u.amount.saturating_sub(v.map_err(sql)?);
        u.count = u.count.saturating_sub(1);
    }
    Ok(())
}

/// Adds the held rows inside the window to `u`; `committed_batch`: the
/// snapshot's batch (rows of batches it contains are already counted).
fn add_held(u: &mut Usage, held: &[Held], since: i64, committed_batch: Option<u64>) {
    for h in held {
        let uncommitted = committed_batch.is_none_or(|b| h.batch == UNBATCHED || h.batch > b);
        if uncommitted && h.at_ms > since {
            // Past 2^256 the sum sticks at the maximum: over any cap.
            u.amount = u
                .amount
                .checked_add(h.amount)
                .unwrap_or(Amount(alloy_primitives::U256::MAX));
            u.count += 1;
        }
    }
}

impl SqliteStore {
    /// Each group's usage inside its window at `now`: committed rows plus
    /// held rows whose batch the snapshot does not contain.
    pub(super) fn usages(
        &self,
        groups: &[GroupRef],
        now: i64,
        voids: bool,
    ) -> Result<Vec<Usage>, StoreError> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(out) = self.cached_usages(groups, now, voids)? {
            return Ok(out);
        }
        let conn = lock(&self.shared.reader);
        let (tx, batch, voids, held, heads) = {
            // One instant for all views: while the pending lock is held no
            // row changes batch or leaves and no head moves, and the SQLite
            // snapshot starts with the first read of the transaction.
            let p = lock(&self.shared.pending);
            let tx = conn.unchecked_transaction().map_err(sql)?;
            let (batch, voids): (i64, Option<i64>) = tx
                .query_row(
                    "SELECT (SELECT value FROM meta WHERE key = 'batch'), \
                            (SELECT value FROM meta WHERE key = 'voids')",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(sql)?;
            let mut held = Vec::with_capacity(groups.len());
            let mut heads = Vec::with_capacity(groups.len());
            for g in groups {
                let s = slot(&g.limit, &g.key);
                held.push(p.rows.get(&s).cloned().unwrap_or_default());
                heads.push(p.heads.get(&s).copied());
            }
            (tx, batch as u64, voids, held, heads)
        };
        // Without a counter (an older file) assume there were voids.
        let voids = voids != Some(0);
        let mut out = Vec::with_capacity(groups.len());
        let mut found = Vec::new();
        for ((g, held), head) in groups.iter().zip(held).zip(heads) {
            let since = now.saturating_sub(g.window_ms);
            let (mut u, counts) = match head {
                // The applied head: every held row is after it.
                Some(h) => {
                    let (u, tail) = usage_from(&tx, &g.limit, &g.key, since, h, voids)?;
                    if let Some(t) = tail {
                        found.push((slot(&g.limit, &g.key), t));
                    }
                    (u, None)
                }
                // The snapshot's head: held rows of batches it shows are in it.
                None => (sql_usage(&tx, &g.limit, &g.key, since)?, Some(batch)),
            };
            add_held(&mut u, &held, since, counts);
            out.push(u);
        }
        drop(tx);
        if !found.is_empty() {
            let mut p = lock(&self.shared.pending);
            if p.tails.len() > MAX_HEADS {
                p.tails.clear();
            }
            p.tails.extend(found);
        }
        Ok(out)
    }

    /// The usages from memory alone when every group's head and first row
    /// inside the window are known (the common case: a busy group's window
    /// start moves past a row only as often as rows age out), so a decision
    /// reads nothing from SQLite unless the store has had voids (`voids`,
    /// from [`Self::prior_and_voids`]). None: read SQLite.
    fn cached_usages(
        &self,
        groups: &[GroupRef],
        now: i64,
        voids: bool,
    ) -> Result<Option<Vec<Usage>>, StoreError> {
        let mut known = Vec::with_capacity(groups.len());
        {
            let p = lock(&self.shared.pending);
            for g in groups {
                let s = slot(&g.limit, &g.key);
                let since = now.saturating_sub(g.window_ms);
                let (Some(head), Some(tail)) = (p.heads.get(&s), p.tails.get(&s)) else {
                    return Ok(None);
                };
                if !tail.first_after(since) {
                    return Ok(None);
                }
                let held = p.rows.get(&s).cloned().unwrap_or_default();
                known.push((since, *head, *tail, held));
            }
        }
        // Voided rows are read after the heads: a row voided since is
        // subtracted once, whether it was counted in its head or as held
        // (every row after an applied head is held).
        let conn = voids.then(|| lock(&self.shared.reader));
        let mut out = Vec::with_capacity(groups.len());
        for (g, (since, head, tail, held)) in groups.iter().zip(known) {
            let mut u = tail.usage_to(head);
            if let Some(conn) = &conn {
                subtract_voided(conn, &g.limit, &g.key, since, &mut u)?;
            }
            add_held(&mut u, &held, since, None);
            out.push(u);
        }
        Ok(Some(out))
    }
}

/// A limit's first group, and the group after `?2`: one seek each on the
/// primary key, so the groups are visited without reading their rows.
pub const Q_FIRST_GROUP: &str =
    "SELECT group_key FROM ledger WHERE limit_id = ?1 ORDER BY limit_id, group_key LIMIT 1";
pub const Q_NEXT_GROUP: &str = "SELECT group_key FROM ledger \
     WHERE limit_id = ?1 AND group_key > ?2 ORDER BY limit_id, group_key LIMIT 1";

/// [`Store::peaks`] at `now_ms`, from any connection, in one snapshot:
/// each group's usage exactly as a decision reads it from SQLite (running
/// totals, voided rows taken off), a few index seeks per group of the
/// retention time whatever its number of rows.
pub fn peaks_on(
    conn: &Connection,
    limits: &[(String, i64)],
    now_ms: i64,
) -> Result<Vec<Usage>, StoreError> {
    let tx = conn.unchecked_transaction().map_err(sql)?;
    let mut out = Vec::with_capacity(limits.len());
    for (limit, window_ms) in limits {
        let since = now_ms.saturating_sub(*window_ms);
        let mut peak = Usage::default();
        let mut group: Option<String> = tx
            .prepare_cached(Q_FIRST_GROUP)
            .and_then(|mut st| st.query_row(params![limit], |r| r.get(0)).optional())
            .map_err(sql)?;
        while let Some(key) = group {
            fold_peak(&mut peak, sql_usage(&tx, limit, &key, since)?);
            group = tx
                .prepare_cached(Q_NEXT_GROUP)
                .and_then(|mut st| st.query_row(params![limit, key], |r| r.get(0)).optional())
                .map_err(sql)?;
        }
        out.push(peak);
    }
    Ok(out)
}

fn fold_peak(peak: &mut Usage, group: Usage) {
    peak.amount = peak.amount.max(group.amount);
    peak.count = peak.count.max(group.count);
}
