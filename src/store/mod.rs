//! State that must survive a restart: the spending-limit ledger and the
//! durable retry records (request id → payload digest → answer). Owns the
//! [`Store`] interface the pipeline talks to and its embedded SQLite
//! implementation; a server with several instances puts another backend
//! behind the same interface.
//!
//! The one operation that matters is [`Store::decide`]: read the usage of the
//! request's groups, let the caller decide, and record the outcome, as one
//! atomic step for those groups. Nothing else may interleave between the
//! read and the record, or 64 concurrent requests could each see room for
//! themselves.

pub mod postgres;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::velocity::{Amount, Row, Usage};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("state store `{path}`: {reason}")]
    Open { path: String, reason: String },
    #[error("state store: {0}")]
    Io(String),
}

/// One group a request falls under, as the store needs it.
#[derive(Debug, Clone)]
pub struct GroupRef {
    pub limit: String,
    pub key: String,
    pub window_ms: i64,
}

/// What the store knows of an earlier request with the same id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prior {
    /// Same payload: this answer (as stored by the caller) is the answer.
    Same(String),
    /// Another payload under the same id.
    Different,
}

/// What the caller decided, to be recorded.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The answer, serialised by the caller, replayed to every retry
    /// (empty: nothing to replay, e.g. an evaluation error).
    pub answer: String,
    /// Approved: the held rows are kept (and committed).
    pub approved: bool,
}

pub enum Outcome {
    /// Seen before: nothing was evaluated or recorded.
    Prior(Prior),
    /// Decided and held in memory; the answer may leave once `Pending`
    /// resolves to Ok (the rows are then durable).
    Decided(Pending),
}

/// Resolves once a decision's rows are durable. Await it on the async side,
/// or [`Pending::wait`] off it.
pub struct Pending(pub(crate) tokio::sync::oneshot::Receiver<Result<(), StoreError>>);

impl Pending {
    /// Blocks the calling (non-async) thread until durable.
    pub fn wait(self) -> Result<(), StoreError> {
        self.0
            .blocking_recv()
            .unwrap_or_else(|_| Err(StoreError::Io("the store's writer stopped".into())))
    }
}

impl Future for Pending {
    type Output = Result<(), StoreError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(StoreError::Io("the store's writer stopped".into()))))
    }
}

/// A ledger row as `ledger show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub request_id: String,
    pub limit: String,
    pub group: String,
    pub at_ms: i64,
    pub amount: Amount,
    pub token: String,
    pub voided: Option<(i64, String)>,
}

/// Usage of one (limit, group) as `ledger show` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupUsage {
    pub limit: String,
    pub group: String,
    pub usage: Usage,
    pub held: u64,
}

pub trait Store: Send + Sync {
    /// The atomic read → decide → record step for `groups` (see the module
    /// doc). Under the groups' locks: the usage of each group before this
    /// request is read and, when `fits` says the request's rows fit, they
    /// are held so every concurrent request counts them. Then `decide` gets
    /// the decision time and the usages (evaluated outside the group locks)
    /// and says what to record; `hold` rows are kept if it approves and
    /// released otherwise. A request id seen before is answered from its
    /// record without calling anything. `now_ms` fixes the clock
    /// (fixtures); None uses the system clock.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        request_id: &str,
        digest: &[u8; 32],
        groups: &[GroupRef],
        hold: &[(Row, String)],
        now_ms: Option<i64>,
        fits: &dyn Fn(&[Usage]) -> bool,
        decide: &mut dyn FnMut(i64, &[Usage]) -> Verdict,
    ) -> Result<Outcome, StoreError>;

    /// The retry record of `request_id`, if it was decided under a limit
    /// (held or committed), compared with `digest`. Requests no limit
    /// matches use it so an id first used under a limit cannot be reused
    /// for another payload, after a restart too.
    fn lookup(&self, request_id: &str, digest: &[u8; 32]) -> Result<Option<Prior>, StoreError>;

    /// Appends rows as if approved at `at_ms` (fixture history, benches):
    /// a decision that approves without a retry record.
    fn seed(&self, request_id: &str, at_ms: i64, rows: &[(Row, String)]) -> Result<(), StoreError> {
        let verdict = Verdict {
            answer: String::new(),
            approved: true,
        };
        match self.decide(
            request_id,
            &[0u8; 32],
            &[],
            rows,
            Some(at_ms),
            &|_| true,
            &mut |_, _| verdict.clone(),
        )? {
            Outcome::Decided(p) => p.wait(),
            Outcome::Prior(_) => Err(StoreError::Io(format!(
                "history request id `{request_id}` is used twice"
            ))),
        }
    }
}

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
        request_id: &str,
        digest: &[u8; 32],
        groups: &[GroupRef],
        hold: &[(Row, String)],
        now_ms: Option<i64>,
        fits: &dyn Fn(&[Usage]) -> bool,
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
        let r = self
            .inner
            .decide(request_id, digest, groups, hold, now_ms, fits, &mut timed);
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
}
