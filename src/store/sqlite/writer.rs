//! The writer thread: the only writer of ledger rows and retry records.
//! It takes the decisions' jobs in batches (a group commit under load),
//! assigns each row its running totals, commits a batch in one transaction
//! numbered in `meta`, then publishes the groups' heads and drops the held
//! rows in one step, and answers each job. It prunes rows older than any
//! window once a minute.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

use super::usage::{EMPTY, Head, MAX_HEADS, sql_head};
use super::{Shared, forget, lock, sql};
use crate::store::{ApprovalRecord, RETENTION_MS, StoreError};
use crate::velocity::Amount;

/// One decision's (or approval's) writes, as the writer commits them.
pub(super) struct Job {
    pub(super) rows: Vec<JobRow>,
    pub(super) record: Option<(String, String, i64, String)>,
    pub(super) approval: Option<ApprovalRecord>,
    pub(super) reply: Option<tokio::sync::oneshot::Sender<Result<(), StoreError>>>,
    pub(super) queued: Instant,
}

/// A row to append, with where its hold sits in memory.
pub(super) struct JobRow {
    pub(super) id: u64,
    pub(super) slot: String,
    pub(super) limit: String,
    pub(super) key: String,
    pub(super) at_ms: i64,
    pub(super) amount: Amount,
    pub(super) request_id: String,
    pub(super) display: String,
    pub(super) token: String,
    pub(super) digest: String,
}

/// How many decisions one commit carries at most.
const BATCH: usize = 512;

/// A batch that reaches this many decisions is committed at once.
pub(super) const GROUP_COMMIT_BATCH: usize = 32;

/// How long the writer sleeps between looks at who may still join a batch.
const GROUP_COMMIT_NAP: Duration = Duration::from_millis(1);

/// When to wait for more jobs before a commit: the mean time between jobs
/// (of the times they were queued).
pub(super) struct Pace {
    max_wait: Duration,
    arrivals: crate::pace::Arrivals,
}

impl Pace {
    pub(super) fn new(max_wait: Duration) -> Self {
        Self {
            max_wait,
            arrivals: crate::pace::Arrivals::default(),
        }
    }

    pub(super) fn arrived(&mut self, at: Instant) {
        self.arrivals.arrived(at);
    }

    /// Until when to wait for more jobs, given a batch of `have` whose
    /// first was queued at `first` and the server's requests still being
    /// decided (None: not known); None: commit now.
    pub(super) fn wait_until(
        &self,
        have: usize,
        first: Instant,
        deciding: Option<usize>,
    ) -> Option<Instant> {
        let others = deciding.is_none_or(|n| n > 0);
        if self.max_wait.is_zero() || have >= GROUP_COMMIT_BATCH || !self.arrivals.fast() || !others
        {
            return None;
        }
        Some(first + self.max_wait)
    }
}

/// Adds the jobs already queued to `jobs`, up to a batch.
fn take_queued(rx: &mpsc::Receiver<Job>, jobs: &mut Vec<Job>, pace: &mut Pace) {
    while jobs.len() < BATCH {
        match rx.try_recv() {
            Ok(j) => {
                pace.arrived(j.queued);
                jobs.push(j);
            }
            Err(_) => break,
        }
    }
}

pub(super) fn writer_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Job>,
    shared: Arc<Shared>,
    group_commit: Duration,
) {
    let mut last_prune = Instant::now() - Duration::from_secs(3600);
    let mut heads: HashMap<String, Head> = HashMap::new();
    let mut batch: u64 = conn
        .query_row("SELECT value FROM meta WHERE key = 'batch'", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|b| b as u64)
        .unwrap_or(0);
    let mut pace = Pace::new(group_commit);
    while let Ok(first) = rx.recv() {
        pace.arrived(first.queued);
        let mut jobs = vec![first];
        take_queued(&rx, &mut jobs, &mut pace);
        // Asleep rather than waiting on the channel, so a sender has nobody
        // to wake; in short naps, so the batch goes once nobody is left to
        // join it (a few requests in flight then never wait the whole time).
        loop {
            let deciding = shared.load.get().map(|f| f());
            let Some(until) = pace.wait_until(jobs.len(), jobs[0].queued, deciding) else {
                break;
            };
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(GROUP_COMMIT_NAP));
            take_queued(&rx, &mut jobs, &mut pace);
        }
        if let Some(hook) = shared.on_commit.get() {
            hook();
        }
        batch += 1;
        {
            let mut p = lock(&shared.pending);
            for r in jobs.iter().flat_map(|j| &j.rows) {
                if let Some(h) = p
                    .rows
                    .get_mut(&r.slot)
                    .and_then(|v| v.iter_mut().find(|h| h.id == r.id))
                {
                    h.batch = batch;
                }
            }
        }
        let result = commit(&mut conn, &jobs, batch, &mut heads);
        if let Err(e) = &result {
            tracing::error!("state store commit failed: {e}");
            // The batch number was not written; reuse it.
            batch -= 1;
        }
        if heads.len() > MAX_HEADS {
            heads.clear();
        }
        {
            let mut p = lock(&shared.pending);
            match &result {
                Ok(moved) => {
                    if p.heads.len() > MAX_HEADS {
                        p.heads.clear();
                    }
                    p.heads.extend(moved.iter().map(|(k, v)| (k.clone(), *v)));
                }
                // What this batch would have moved is not in SQLite: forget
                // every head it touched, readers fall back to SQLite.
                Err(_) => {
                    for r in jobs.iter().flat_map(|j| &j.rows) {
                        p.heads.remove(&r.slot);
                    }
                }
            }
            for j in &jobs {
                let ids: Vec<(String, u64)> =
                    j.rows.iter().map(|r| (r.slot.clone(), r.id)).collect();
                forget(&mut p, &ids);
                if let Some((id, ..)) = &j.record {
                    p.records.remove(id);
                }
            }
        }
        let result = result.map(|_| ());
        for j in jobs {
            if let Some(reply) = j.reply {
                let _ = reply.send(result.clone());
            }
        }
        if last_prune.elapsed() > Duration::from_secs(60) {
            last_prune = Instant::now();
            // Relative to the store's own clock (the latest decision time),
            // not the wall clock: a scratch ledger of fixtures lives at the
            // fixtures' time, and its history must not be pruned away.
            let cutoff = shared.clock.load(Ordering::SeqCst) - RETENTION_MS;
            if let Err(e) = conn
                .execute("DELETE FROM ledger WHERE at_ms < ?1", [cutoff])
                .and_then(|_| conn.execute("DELETE FROM decisions WHERE at_ms < ?1", [cutoff]))
                .and_then(|_| conn.execute("DELETE FROM approvals WHERE at_ms < ?1", [cutoff]))
                .and_then(|_| {
                    conn.execute("DELETE FROM events WHERE received_at_ms < ?1", [cutoff])
                })
            {
                tracing::warn!("state store: pruning old rows failed: {e}");
            }
        }
    }
}

fn commit(
    conn: &mut Connection,
    jobs: &[Job],
    batch: u64,
    heads: &mut HashMap<String, Head>,
) -> Result<HashMap<String, Head>, StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql)?;
    // Heads move only once the commit succeeded.
    let mut moved: HashMap<String, Head> = HashMap::new();
    {
        let mut row = tx
            .prepare_cached(
                "INSERT INTO ledger (limit_id, group_key, seq, at_ms, request_id, group_name, token, amount, cum_amount, cum_count, digest) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .map_err(sql)?;
        let mut rec = tx
            .prepare_cached(
                "INSERT INTO decisions (request_id, digest, at_ms, answer) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(sql)?;
        for j in jobs {
            for r in &j.rows {
                let head = match moved.get(&r.slot).or_else(|| heads.get(&r.slot)) {
                    Some(h) => *h,
                    None => sql_head(&tx, &r.limit, &r.key)?.unwrap_or(EMPTY),
                };
                let next = Head {
                    seq: head.seq + 1,
                    // Never before the group's last row, so time order is
                    // seq order even if the clock steps back.
                    at_ms: r.at_ms.max(head.at_ms),
                    cum: head
                        .cum
                        .checked_add(r.amount)
                        .unwrap_or(Amount(alloy_primitives::U256::MAX)),
                    count: head.count + 1,
                };
                row.execute(params![
                    r.limit,
                    r.key,
                    next.seq,
                    next.at_ms,
                    r.request_id,
                    r.display,
                    r.token,
                    r.amount.units(),
                    next.cum.units(),
                    next.count,
                    r.digest,
                ])
                .map_err(sql)?;
                moved.insert(r.slot.clone(), next);
            }
            if let Some((id, d, at, answer)) = &j.record {
                rec.execute(params![id, d, at, answer]).map_err(sql)?;
            }
            if let Some(a) = &j.approval {
                // The first record of an id wins: a retry's is ignored.
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO approvals (request_id, request_type, at_ms, digest, facts, state) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 'approved')",
                )
                .and_then(|mut st| {
                    st.execute(params![a.request_id, a.request_type, a.at_ms, a.digest, a.facts])
                })
                .map_err(sql)?;
            }
        }
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'batch'",
            [batch as i64],
        )
        .map_err(sql)?;
    }
    tx.commit().map_err(sql)?;
    heads.extend(moved.iter().map(|(k, v)| (k.clone(), *v)));
    Ok(moved)
}
