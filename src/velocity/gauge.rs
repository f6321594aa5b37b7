//! The spending-limit gauge, `tss_gate_velocity_utilization_ratio{limit}`:
//! per limit, the utilisation of its fullest group as the ledger holds it
//! now, the larger of `amount / max_amount` and `count / max_count` over
//! the approvals inside the window that still count. A denied request adds
//! nothing (its facts' `utilization` includes it; the ledger does not), two
//! wallets' groups show the fuller one whichever was decided last, and the
//! value falls as the window slides past old approvals with no traffic.
//!
//! A background task ([`follow`]) asks the store ([`Store::peaks`]) every
//! few seconds (a quarter of the shortest window, between 250 ms and 5 s)
//! and soon after decisions (a decision only wakes it, O(1)); a large
//! ledger whose scan takes longer is read less often (at most 2 % of the
//! time). On a PostgreSQL store every instance shows the same shared
//! ledger.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Limit, Limits, Usage};
use crate::metrics::{MAX_RULE_LABELS, Metrics};
use crate::store::{Store, StoreError};

/// Longest time between two refreshes.
pub const IDLE: Duration = Duration::from_secs(5);
/// Shortest time between two idle refreshes (windows of a few seconds).
const FLOOR: Duration = Duration::from_millis(250);
/// How long a decision's wake-up waits: its rows are committed by then
/// (a group commit waits a few milliseconds), and a burst wakes once.
const SETTLE: Duration = Duration::from_millis(100);
/// Refreshes at least this far apart under traffic (unless windows are shorter).
const BUSY: Duration = Duration::from_secs(1);
/// A refresh takes at most 1/`DUTY` of the time.
const DUTY: u32 = 50;

/// The utilisation of a group with usage `u` under `l`: 0 … ∞, 1 = at the
/// maximum (above it only if the policy approved past the limit, or the
/// limit was lowered).
pub fn ratio(l: &Limit, u: &Usage) -> f64 {
    let mut r: f64 = 0.0;
    if let Some(max) = l.max_amount {
        r = r.max(u.amount.ratio(max));
    }
    if let Some(max) = l.max_count {
        r = r.max(match (max, u.count) {
            (_, 0) => 0.0,
            (0, _) => f64::INFINITY,
            (max, n) => n as f64 / max as f64,
        });
    }
    r
}

/// The limits the gauge shows: as many as its label set may hold.
fn shown(limits: &Limits) -> &[Limit] {
    &limits.limits[..limits.limits.len().min(MAX_RULE_LABELS)]
}

/// How often to refresh with no traffic: a quarter of the shortest window,
/// between 250 ms and 5 s.
pub fn period(limits: &Limits) -> Duration {
    let shortest = shown(limits).iter().map(|l| l.window_ms).min();
    match shortest {
        Some(ms) => Duration::from_millis((ms / 4).max(0) as u64).clamp(FLOOR, IDLE),
        None => IDLE,
    }
}

/// Each shown limit's gauge value from the store's peaks (in the same order).
pub fn values(limits: &Limits, peaks: &[Usage]) -> Vec<(String, f64)> {
    shown(limits)
        .iter()
        .zip(peaks)
        .map(|(l, u)| (l.id.clone(), ratio(l, u)))
        .collect()
}

/// Reads the fullest groups of `limits` from `store`, for [`apply`].
pub fn read(store: &dyn Store, limits: &Limits) -> Result<Vec<(String, f64)>, StoreError> {
    let windows: Vec<(String, i64)> = shown(limits)
        .iter()
        .map(|l| (l.id.clone(), l.window_ms))
        .collect();
    if windows.is_empty() {
        return Ok(Vec::new());
    }
    let peaks = store.peaks(&windows)?;
    Ok(values(limits, &peaks))
}

/// Sets the gauge to `values` and removes the series of limits shown
/// before (`shown`) that are no longer configured; `shown` becomes the
/// limits of `values`.
pub fn apply(metrics: &Metrics, values: &[(String, f64)], shown: &mut BTreeSet<String>) {
    for (id, v) in values {
        metrics
            .velocity_utilization
            .with_label_values(&[id])
            .set(*v);
    }
    let now: BTreeSet<String> = values.iter().map(|(id, _)| id.clone()).collect();
    for gone in shown.difference(&now) {
        let _ = metrics.velocity_utilization.remove_label_values(&[gone]);
    }
    *shown = now;
}

/// Keeps the gauge at the ledger's values for as long as the server runs.
/// `limits` gives the limits in force (they change with a reload).
pub async fn follow(
    store: Arc<dyn Store>,
    limits: impl Fn() -> Arc<Limits> + Send + 'static,
    metrics: Arc<Metrics>,
) {
    let mut shown = BTreeSet::new();
    let mut failing = false;
    loop {
        let started = Instant::now();
        let current = limits();
        let (s, l) = (store.clone(), current.clone());
        let r = tokio::task::spawn_blocking(move || read(s.as_ref(), &l))
            .await
            .unwrap_or_else(|e| Err(StoreError::Io(format!("gauge read panicked: {e}"))));
        match r {
            Ok(v) => {
                if failing {
                    tracing::info!("spending-limit gauge: the ledger is readable again");
                    failing = false;
                }
                apply(&metrics, &v, &mut shown);
            }
            // The last values stay; decisions fail on such a store too.
            Err(e) if !failing => {
                tracing::warn!("spending-limit gauge: cannot read the ledger: {e}");
                failing = true;
            }
            Err(_) => {}
        }
        let cost = started.elapsed() * DUTY;
        let idle = period(&current).max(cost);
        let busy = BUSY.min(idle).max(cost);
        tokio::select! {
            _ = tokio::time::sleep(idle) => {}
            _ = metrics.velocity_changed.notified() => {
                tokio::time::sleep(SETTLE).await;
                tokio::time::sleep_until((started + busy).into()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::velocity::Amount;
    use serde_json::json;

    fn limits(v: serde_json::Value) -> Limits {
        Limits::from_data(Some(&json!({ "limits": v }))).unwrap()
    }

    fn usage(amount: &str, count: u64) -> Usage {
        Usage {
            amount: Amount::parse(amount).unwrap(),
            count,
        }
    }

    #[test]
    fn the_larger_of_amount_and_count() {
        let ls = limits(json!([
            {"id": "a", "window": "1d", "group_by": ["wallet", "token"], "max_amount": "50000", "max_count": 10},
            {"id": "c", "window": "1h", "group_by": ["wallet"], "max_count": 4},
            {"id": "z", "window": "1h", "group_by": ["wallet"], "max_count": 0},
        ]));
        let v = values(&ls, &[usage("49999.95", 5), usage("123", 3), usage("0", 0)]);
        assert_eq!(v[0].0, "a");
        assert!((v[0].1 - 0.999999).abs() < 1e-12, "{v:?}");
        // A count-only limit: the amount (of any tokens) is not looked at.
        assert_eq!(v[1], ("c".into(), 0.75));
        // max_count 0 with nothing approved: empty, not infinitely full.
        assert_eq!(v[2], ("z".into(), 0.0));
        assert_eq!(
            ratio(&ls.limits[2], &usage("0", 1)),
            f64::INFINITY,
            "approved past a zero cap"
        );
        assert_eq!(values(&ls, &[usage("0", 0)]).len(), 1, "zipped");
    }

    #[test]
    fn refreshes_a_quarter_of_the_shortest_window_between_bounds() {
        let ls = |w: &str| {
            limits(json!([{"id": "a", "window": w, "group_by": ["wallet"], "max_count": 1}]))
        };
        assert_eq!(period(&ls("2s")), Duration::from_millis(500));
        assert_eq!(period(&ls("1s")), FLOOR);
        assert_eq!(period(&ls("24h")), IDLE);
        assert_eq!(period(&Limits::default()), IDLE);
    }

    #[test]
    fn limits_no_longer_configured_lose_their_series() {
        let m = Metrics::new();
        let mut shown = BTreeSet::new();
        apply(&m, &[("a".into(), 0.5), ("b".into(), 1.0)], &mut shown);
        apply(&m, &[("b".into(), 0.25)], &mut shown);
        let text = m.render();
        assert!(!text.contains("limit=\"a\""), "{text}");
        assert!(
            text.contains("tss_gate_velocity_utilization_ratio{limit=\"b\"} 0.25"),
            "{text}"
        );
    }
}
