//! [`Metered`]: any store, with each operation's time (the policy
//! evaluation inside `decide` excluded) and failures in the metrics.

use super::{
    Approval, ApprovalRecord, DecideRequest, GroupUsage, LedgerEntry, Outcome, Pending, Prior,
    QueryPlans, Store, StoreError, StoredEvent, TaskState, Transition, Verdict,
};
use crate::velocity::{Row, Usage};

/// A store that records each operation's time (the policy evaluation it
/// runs inside `decide` excluded) and failures in the metrics.
pub struct Metered {
    inner: std::sync::Arc<dyn Store>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl Metered {
    pub fn new(
        inner: std::sync::Arc<dyn Store>,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self { inner, metrics }
    }

    fn observe<T>(&self, op: &str, took: std::time::Duration, r: &Result<T, StoreError>) {
        if r.is_err() {
            self.metrics.store_errors.with_label_values(&[op]).inc();
        }
        self.metrics
            .store_duration
            .with_label_values(&[op])
            .observe(took.as_secs_f64());
    }
}

impl Store for Metered {
    fn decide(
        &self,
        req: &DecideRequest<'_>,
        decide: &mut dyn FnMut(i64, &[Usage]) -> Verdict,
    ) -> Result<Outcome, StoreError> {
        let started = std::time::Instant::now();
        let mut evaluating = std::time::Duration::ZERO;
        let mut timed = |now: i64, u: &[Usage]| {
            let t = std::time::Instant::now();
            let v = decide(now, u);
            evaluating += t.elapsed();
            v
        };
        let r = self.inner.decide(req, &mut timed);
        self.observe("decide", started.elapsed().saturating_sub(evaluating), &r);
        r
    }

    fn lookup(&self, request_id: &str, digest: &[u8; 32]) -> Result<Option<Prior>, StoreError> {
        let started = std::time::Instant::now();
        let r = self.inner.lookup(request_id, digest);
        self.observe("lookup", started.elapsed(), &r);
        r
    }

    fn seed(&self, request_id: &str, at_ms: i64, rows: &[(Row, String)]) -> Result<(), StoreError> {
        self.inner.seed(request_id, at_ms, rows)
    }

    fn record_approval(&self, rec: &ApprovalRecord) -> Result<Pending, StoreError> {
        let started = std::time::Instant::now();
        let r = self.inner.record_approval(rec);
        self.observe("record_approval", started.elapsed(), &r);
        r
    }

    fn approval(&self, request_id: &str) -> Result<Option<Approval>, StoreError> {
        let started = std::time::Instant::now();
        let r = self.inner.approval(request_id);
        self.observe("approval", started.elapsed(), &r);
        r
    }

    fn control(&self, key: &str) -> Result<Option<String>, StoreError> {
        let started = std::time::Instant::now();
        let r = self.inner.control(key);
        self.observe("control", started.elapsed(), &r);
        r
    }

    fn set_control(&self, key: &str, value: Option<&str>, now_ms: i64) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let r = self.inner.set_control(key, value, now_ms);
        self.observe("set_control", started.elapsed(), &r);
        r
    }

    fn put_event(&self, ev: &StoredEvent) -> Result<bool, StoreError> {
        let started = std::time::Instant::now();
        let r = self.inner.put_event(ev);
        self.observe("put_event", started.elapsed(), &r);
        r
    }

    fn event_stored(&self, event_id: &str) -> Result<bool, StoreError> {
        let started = std::time::Instant::now();
        let r = self.inner.event_stored(event_id);
        self.observe("event_stored", started.elapsed(), &r);
        r
    }

    fn transition(
        &self,
        request_id: &str,
        to: TaskState,
        at_ms: i64,
        reason: &str,
    ) -> Result<Transition, StoreError> {
        let started = std::time::Instant::now();
        let r = self.inner.transition(request_id, to, at_ms, reason);
        self.observe("transition", started.elapsed(), &r);
        r
    }

    fn approvals(&self, since_ms: i64, limit: usize) -> Result<Vec<Approval>, StoreError> {
        self.inner.approvals(since_ms, limit)
    }

    // Not timed: a background read, not a decision's time in the store.
    fn peaks(&self, limits: &[(String, i64)]) -> Result<Vec<Usage>, StoreError> {
        self.inner.peaks(limits)
    }

    // Inspection (the operator's tools): not a decision's time either.
    fn report(
        &self,
        now_ms: i64,
        window_of: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<Vec<GroupUsage>, StoreError> {
        self.inner.report(now_ms, window_of)
    }

    fn entries(
        &self,
        request_id: Option<&str>,
        since_ms: i64,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        self.inner.entries(request_id, since_ms)
    }

    fn void(&self, request_id: &str, at_ms: i64, reason: &str) -> Result<usize, StoreError> {
        self.inner.void(request_id, at_ms, reason)
    }

    fn plans(&self) -> Result<QueryPlans, StoreError> {
        self.inner.plans()
    }

    fn location(&self) -> String {
        self.inner.location()
    }
}
