//! State that must survive a restart: the spending-limit ledger, the
//! durable retry records (request id → payload digest → answer), approvals,
//! the node's events and the operator's control switches. Owns the
//! [`Store`] interface the rest of the crate talks to, and the two backends
//! behind it: embedded SQLite (one process) and PostgreSQL (several
//! instances on one database).
//!
//! The one operation that matters is [`Store::decide`]: read the usage of the
//! request's groups, let the caller decide, and record the outcome, as one
//! atomic step for those groups. Nothing else may interleave between the
//! read and the record, or 64 concurrent requests could each see room for
//! themselves.
//!
//! # Layout
//! - [`protocol`]: what both backends do, written once over a small backend
//!   trait each implements with its own SQL: a decision's hold → evaluate →
//!   settle sequence, the retry-record rule, a task's state transition.
//! - [`rows`]: reading approvals and ledger rows out of either database.
//! - [`inspect`]: `ledger show` (its report), `void` and `plan`.
//! - [`schema`]: the schema version both backends write and how a store
//!   reaches it.
//! - [`error`]: [`StoreError`] and its [`Cause`]s.
//! - [`metered`]: [`Metered`], a store that times every operation.
//! - [`sqlite`], [`postgres`]: the backends, their SQL and IO only.

pub mod error;
pub mod inspect;
pub mod metered;
pub mod postgres;
pub(crate) mod protocol;
pub(crate) mod rows;
pub mod schema;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::velocity::{Amount, Row, Usage};

pub use error::{Cause, StoreError};
pub use inspect::{QueryPlan, QueryPlans};
pub use metered::Metered;
pub use postgres::{PasswordSource, PostgresOptions, PostgresStore};
pub use sqlite::SqliteStore;

/// Rows and records older than this are deleted: longer than any window.
pub const RETENTION_MS: i64 = crate::velocity::limits::MAX_WINDOW_MS + 86_400_000;

/// The store's wall clock (ms since the Unix epoch), as the decisions read
/// it; a decision may fix its own time instead (fixtures, seeds).
pub use crate::clock::now_ms;

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

/// One decision under spending limits, as [`Store::decide`] runs it.
pub struct DecideRequest<'a> {
    pub request_id: &'a str,
    /// sha256 of the request bytes: what a retry is compared by.
    pub digest: &'a [u8; 32],
    /// The groups whose usage is read (and locked).
    pub groups: &'a [GroupRef],
    /// The rows an approval adds, each with its group's display name.
    pub hold: &'a [(Row, String)],
    /// Fixes the clock (fixtures, seeds); None: the store's clock.
    pub now_ms: Option<i64>,
    /// Whether the rows fit every limit at the usages read.
    pub fits: &'a dyn Fn(&[Usage]) -> bool,
}

/// What the caller decided, to be recorded.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The answer, serialised by the caller, replayed to every retry; None:
    /// nothing to replay (an evaluation error, status 30).
    pub answer: Option<String>,
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
            .unwrap_or_else(|_| Err(Cause::WriterGone.into()))
    }
}

impl Future for Pending {
    type Output = Result<(), StoreError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(Cause::WriterGone.into())))
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

fn unsupported(what: &'static str) -> StoreError {
    Cause::Unsupported(what).into()
}

/// How many of the server's requests may still join a group commit: those
/// queued for a decision or being decided (see
/// [`SqliteStore::set_load_hint`]).
pub type LoadHint = std::sync::Arc<dyn Fn() -> usize + Send + Sync>;

/// Called as a group commit starts (see [`SqliteStore::set_commit_hook`]).
pub type CommitHook = std::sync::Arc<dyn Fn() + Send + Sync>;

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
    fn decide(
        &self,
        req: &DecideRequest<'_>,
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
            answer: None,
            approved: true,
        };
        match self.decide(
            &DecideRequest {
                request_id,
                digest: &[0u8; 32],
                groups: &[],
                hold: rows,
                now_ms: Some(at_ms),
                fits: &|_| true,
            },
            &mut |_, _| verdict.clone(),
        )? {
            Outcome::Decided(p) => p.wait(),
            Outcome::Prior(_) => Err(Cause::SeedReused(request_id.to_owned()).into()),
        }
    }

    /// `ledger show`'s report: every (limit, group) with rows in the
    /// retention time ([`RETENTION_MS`]), with its usage inside
    /// `window_of(limit)` (24 h for a limit no longer configured).
    fn report(
        &self,
        _now_ms: i64,
        _window_of: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<Vec<GroupUsage>, StoreError> {
        Err(unsupported("ledger reports"))
    }

    /// The ledger rows of one request, or of every request, after
    /// `since_ms`, oldest first (`ledger show --entries`).
    fn entries(
        &self,
        _request_id: Option<&str>,
        _since_ms: i64,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        Err(unsupported("ledger reports"))
    }

    /// Releases every row of `request_id` still counting, marked voided by
    /// hand with `reason` (`ledger void`); how many were released.
    fn void(&self, _request_id: &str, _at_ms: i64, _reason: &str) -> Result<usize, StoreError> {
        Err(unsupported("voids"))
    }

    /// The database's plan of every query a decision runs (`ledger plan`).
    fn plans(&self) -> Result<QueryPlans, StoreError> {
        Err(unsupported("query plans"))
    }

    /// Where the store is, for messages: a file, or a database's host,
    /// port and name (never its password).
    fn location(&self) -> String {
        String::new()
    }
}
