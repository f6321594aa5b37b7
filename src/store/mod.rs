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

/// What tss-gate approved for one request, kept so the node's events can
/// be checked against it (issue 18): `facts` is the JSON object the
/// signature audit reads ([`crate::events::audit::ApprovedSign`] for
/// KEYSIGN) and, under `request`, the digests an event's request is
/// compared with ([`crate::events::binding::RequestDigests`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    pub request_id: String,
    /// `KEYSIGN`, `KEYGEN`, `KEYRESHARE`, `KEYSHARESIGN`.
    pub request_type: String,
    pub at_ms: i64,
    /// Hex SHA-256 of the request bytes (as the retry record).
    pub digest: String,
    pub facts: String,
}

/// Where an approved task stands, as the node's events tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Approved; no terminal event yet. Its spending-limit rows count.
    Approved,
    /// `succeeded`: executed. Its rows count for the whole window.
    Executed,
    /// `failed` / `canceled`: its rows are released.
    Released,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Approved => "approved",
            TaskState::Executed => "executed",
            TaskState::Released => "released",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "approved" => Some(TaskState::Approved),
            "executed" => Some(TaskState::Executed),
            "released" => Some(TaskState::Released),
            _ => None,
        }
    }
}

/// An approval and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub record: ApprovalRecord,
    pub state: TaskState,
    /// When and why the state last changed (`event <event_id> <type>`).
    pub changed: Option<(i64, String)>,
}

/// One accepted event as stored (its JSON body whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub event_id: String,
    pub received_at_ms: i64,
    pub node_id: String,
    pub event_type: String,
    /// `data.request_id`, `""` when the event has none (ping).
    pub request_id: String,
    pub body: String,
}

/// What [`Store::transition`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// None: no approval of that request is recorded; nothing changed.
    pub before: Option<TaskState>,
    pub after: Option<TaskState>,
    /// Ledger rows released (to Released) or re-held (Released → Executed).
    pub rows: usize,
}

impl Transition {
    /// No approval of that request is recorded: nothing changed.
    pub const UNKNOWN: Transition = Transition {
        before: None,
        after: None,
        rows: 0,
    };
}

/// What a transition does to the request's ledger rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowChange {
    Keep,
    /// Void every row still counting, marked as voided by the task.
    Release,
    /// Count again exactly the rows the task's release voided.
    Rehold,
}

/// The state machine of [`Store::transition`], shared by the backends:
/// the state after `to` is reported in state `before`, and what happens to
/// the rows.
pub(crate) fn next_state(before: TaskState, to: TaskState) -> (TaskState, RowChange) {
    use TaskState::*;
    match (before, to) {
        (Approved, Released) => (Released, RowChange::Release),
        (Released, Executed) => (Executed, RowChange::Rehold),
        (Approved, Executed) => (Executed, RowChange::Keep),
        // Same state, back to Approved, or Executed → Released (a task
        // that executed spent its amount whatever comes later).
        (b, _) => (b, RowChange::Keep),
    }
}

fn unsupported(what: &str) -> StoreError {
    StoreError::Io(format!("this state store does not support {what}"))
}

/// How many of the server's requests may still join a group commit: those
/// queued for a decision or being decided (see [`Store::set_load_hint`]).
pub type LoadHint = std::sync::Arc<dyn Fn() -> usize + Send + Sync>;

/// Called as a group commit starts (see [`Store::set_commit_hook`]).
pub type CommitHook = std::sync::Arc<dyn Fn() + Send + Sync>;

pub trait Store: Send + Sync {
    /// Tells the store how many of the server's requests are still being
    /// decided, so a group commit waits for more only while some may join
    /// it (never for a caller that sends one request at a time, nor once
    /// every request in flight has joined). Ignored by stores without a
    /// group commit.
    fn set_load_hint(&self, _hint: LoadHint) {}

    /// The longest a commit may wait for others to join it (its group
    /// commit); zero for stores that commit each decision at once. A caller
    /// waiting for a commit anyway may let its other durable effects wait
    /// as long (the decision-log line of a decision under a limit).
    fn batch_window(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// `hook` runs each time a group commit takes its batch, before its
    /// fsync: the decision log then writes the lines it holds for that
    /// batch (queued before the batch was taken) beside the store's fsync,
    /// not after it. Ignored by stores without a group commit.
    fn set_commit_hook(&self, _hook: CommitHook) {}

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

    /// Records an approval before its answer leaves (only when the event
    /// endpoint is on). Durable once the returned `Pending` resolves Ok.
    /// The first record of a request id wins: a retry's record is ignored.
    fn record_approval(&self, _rec: &ApprovalRecord) -> Result<Pending, StoreError> {
        Err(unsupported("approval records"))
    }

    /// The approval of `request_id` and its state, if recorded.
    fn approval(&self, _request_id: &str) -> Result<Option<Approval>, StoreError> {
        Err(unsupported("approval records"))
    }

    /// An operator's control switch (`freeze`), as stored text; None when
    /// unset. Kept beside the ledger so every instance on one store reads
    /// the same switch.
    fn control(&self, _key: &str) -> Result<Option<String>, StoreError> {
        Err(unsupported("control switches"))
    }

    /// Sets (Some) or clears (None) a control switch, durably.
    fn set_control(
        &self,
        _key: &str,
        _value: Option<&str>,
        _now_ms: i64,
    ) -> Result<(), StoreError> {
        Err(unsupported("control switches"))
    }

    /// Stores an accepted event durably (before the 200). Ok(false): an
    /// event with that `event_id` is already stored (the node's at-least-once
    /// delivery), and nothing changed.
    fn put_event(&self, _ev: &StoredEvent) -> Result<bool, StoreError> {
        Err(unsupported("events"))
    }

    /// Whether an event with `event_id` is stored: it was handled whole,
    /// and a redelivery (or a replayed token) changes nothing.
    fn event_stored(&self, _event_id: &str) -> Result<bool, StoreError> {
        Err(unsupported("events"))
    }

    /// Moves the approval of `request_id` to `to`, atomically with its
    /// ledger rows, durably on return:
    /// - Approved → Released: every row of the request is voided with
    ///   `reason`; Approved → Executed: rows stay.
    /// - Released → Executed (a `succeeded` after a `failed`): the rows this
    ///   request's release voided count again; the node's last word on
    ///   execution wins and the hold is never lost.
    /// - Executed → Released is refused (unchanged, `rows` 0): a task that
    ///   executed spent its amount whatever comes later.
    /// - Same state, or to Approved: unchanged.
    fn transition(
        &self,
        _request_id: &str,
        _to: TaskState,
        _at_ms: i64,
        _reason: &str,
    ) -> Result<Transition, StoreError> {
        Err(unsupported("task states"))
    }

    /// Approvals recorded since `since_ms`, newest first, at most `limit`
    /// (`ledger show --holds`, the stalled-task gauge).
    fn approvals(&self, _since_ms: i64, _limit: usize) -> Result<Vec<Approval>, StoreError> {
        Err(unsupported("approval records"))
    }

    /// The fullest group of each limit as the ledger holds it now (the
    /// store's clock): for each `(limit id, window_ms)`, the largest amount
    /// and, separately, the largest count that any one of the limit's groups
    /// has inside the window (committed rows that count, voided ones not;
    /// zero when there are none). The largest ratio of any one group to a
    /// limit's maxima is the larger of the two maxima's ratios, so this is
    /// all the utilisation gauge needs ([`crate::velocity::gauge`]). Off
    /// the decision path: it must not hold what a decision waits for.
    fn peaks(&self, _limits: &[(String, i64)]) -> Result<Vec<Usage>, StoreError> {
        Err(unsupported("usage peaks"))
    }

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
    fn set_load_hint(&self, hint: LoadHint) {
        self.inner.set_load_hint(hint)
    }

    fn batch_window(&self) -> std::time::Duration {
        self.inner.batch_window()
    }

    fn set_commit_hook(&self, hook: CommitHook) {
        self.inner.set_commit_hook(hook)
    }

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
}
