//! A throwaway spending-limit ledger for `tss-gate test`: a real SQLite
//! store in a private temp directory, seeded with a fixture's `history`,
//! removed when dropped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::fixture::HistoryEntry;
use crate::store::{SqliteStore, Store};
use crate::velocity::limits::{Dim, normalise_address, parse_window};
use crate::velocity::{Amount, Limits, Row};

pub struct ScratchLedger {
    store: Option<SqliteStore>,
    dir: PathBuf,
}

impl ScratchLedger {
    pub fn new() -> Result<Self, String> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tss-gate-ledger-{}-{}-{}",
            std::process::id(),
            crate::clock::now_ms(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| format!("scratch ledger `{}`: {e}", dir.display()))?;
        }
        let store = SqliteStore::open(&dir.join("ledger.sqlite")).map_err(|e| e.to_string())?;
        Ok(Self {
            store: Some(store),
            dir,
        })
    }

    pub fn store(&self) -> &dyn Store {
        match &self.store {
            Some(s) => s,
            None => unreachable!("the store lives until drop"),
        }
    }

    /// Writes `history` (relative to `at`) in time order.
    pub fn seed(&self, limits: &Limits, history: &[HistoryEntry], at: i64) -> Result<(), String> {
        let mut rows: Vec<(i64, Row, String)> = Vec::new();
        for (i, h) in history.iter().enumerate() {
            let Some(limit) = limits.limits.iter().find(|l| l.id == h.limit) else {
                return Err(format!("history[{i}]: no spending limit `{}`", h.limit));
            };
            let ago = parse_window(&h.ago).ok_or_else(|| {
                format!(
                    "history[{i}]: `ago` `{}` is not a duration like 90m, 23h or 6d",
                    h.ago
                )
            })?;
            let amount = match (&h.amount, limit.max_amount) {
                (Some(a), _) => Amount::parse(a)
                    .ok_or_else(|| format!("history[{i}]: amount `{a}` is not a plain decimal"))?,
                (None, None) => Amount::ZERO,
                (None, Some(_)) => {
                    return Err(format!(
                        "history[{i}]: limit `{}` counts amounts: set `amount`",
                        h.limit
                    ));
                }
            };
            let mut values = Vec::new();
            let mut display = Vec::new();
            for d in &limit.group_by {
                let v = h
                    .group
                    .get(d.name())
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| {
                        format!(
                            "history[{i}]: `group.{}` (a string) is required by limit `{}`",
                            d.name(),
                            h.limit
                        )
                    })?;
                let v = if matches!(d, Dim::Destination | Dim::Source) {
                    normalise_address(v)
                } else {
                    v.to_owned()
                };
                display.push(format!("{}={v}", d.name()));
                values.push(v);
            }
            for k in h.group.keys() {
                if !limit.group_by.iter().any(|d| d.name() == k) {
                    return Err(format!(
                        "history[{i}]: limit `{}` does not group by `{k}`",
                        h.limit
                    ));
                }
            }
            let key = serde_json::to_string(&values).map_err(|e| e.to_string())?;
            let token = h
                .group
                .get("token")
                .and_then(|v| v.as_str())
                .or_else(|| {
                    limit
                        .token_ids
                        .as_ref()
                        .and_then(|t| t.iter().next().map(String::as_str))
                })
                .unwrap_or("")
                .to_owned();
            let display = if display.is_empty() {
                "all".to_owned()
            } else {
                display.join(",")
            };
            for _ in 0..h.repeat {
                rows.push((
                    at - ago,
                    Row {
                        limit: limit.id.clone(),
                        group_key: key.clone(),
                        amount,
                        token: token.clone(),
                    },
                    display.clone(),
                ));
            }
        }
        rows.sort_by_key(|r| r.0);
        for (n, (t, row, display)) in rows.into_iter().enumerate() {
            self.store()
                .seed(&format!("history-{n}"), t, &[(row, display)])
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl Drop for ScratchLedger {
    fn drop(&mut self) {
        self.store.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
