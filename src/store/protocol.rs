//! The store protocol both backends follow, written once: a decision's
//! hold → evaluate → settle sequence ([`decide`] over a [`Decider`]), the
//! retry-record rule ([`prior_of`]), and a task's state transition
//! ([`transition`] over a [`TaskTx`]). A backend supplies only its locks,
//! its SQL and its durability; what is decided, recorded and answered in
//! which order is here.

use super::{GroupRef, Outcome, Pending, Prior, StoreError, TaskState, Transition, Verdict};
use crate::velocity::{Row, Usage};

/// `void_source` of rows a task's release voided: a later `succeeded`
/// re-holds exactly those, never a void made by hand.
pub(crate) const VOID_BY_EVENT: &str = "event";

/// One decision as the backend's steps see it.
pub(crate) struct Request<'a> {
    pub id: &'a str,
    /// Hex SHA-256 of the request bytes, as the retry record keeps it.
    pub digest: String,
    pub groups: &'a [GroupRef],
    pub hold: &'a [(Row, String)],
    /// The decision's time when fixed (fixtures, seeds); None: the store's clock.
    pub now_ms: Option<i64>,
}

/// What a decision's first step found.
pub(crate) enum Read<H> {
    /// The id was decided before: nothing is evaluated or recorded.
    Prior(Prior),
    /// Each group's usage before this request at `now`, and the hold of the
    /// request's rows when they fitted (every concurrent decision counts
    /// them from here on).
    Usage {
        now: i64,
        usages: Vec<Usage>,
        held: Option<H>,
    },
}

/// What becomes of a decision's rows once it is decided.
pub(crate) enum Fate<H> {
    /// Approved and held: the hold becomes the rows.
    Keep(H),
    /// Approved over the limit by the policy's own rules: an approval is
    /// recorded whatever it was judged on, so its rows are held now.
    HoldNow,
    /// Rejected while held: the hold is released.
    Release(H),
    /// Rejected, nothing held.
    Nothing,
}

impl<H> Fate<H> {
    fn of(approved: bool, held: Option<H>) -> Self {
        match (approved, held) {
            (true, Some(h)) => Fate::Keep(h),
            (true, None) => Fate::HoldNow,
            (false, Some(h)) => Fate::Release(h),
            (false, None) => Fate::Nothing,
        }
    }
}

/// A backend's steps of a decision.
pub(crate) trait Decider {
    /// What one decision's steps share (a connection, or nothing).
    type Session;
    /// A hold on a decision's rows, as [`Decider::read`] took it.
    type Hold;

    /// Runs `f` holding the request id's lock, so a copy of the same
    /// request (on any instance) waits and then finds this one's record.
    fn exclusive<T>(
        &self,
        request_id: &str,
        f: impl FnOnce(&mut Self::Session) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;

    /// Under the groups' locks: the retry record (by [`prior_of`]), the
    /// time, each group's usage and, when `fits` says so, the hold.
    fn read(
        &self,
        s: &mut Self::Session,
        req: &Request<'_>,
        fits: &dyn Fn(&[Usage]) -> bool,
    ) -> Result<Read<Self::Hold>, StoreError>;

    /// Applies the rows' fate and records `answer` (None: nothing to
    /// replay, no record); the returned `Pending` resolves once durable.
    fn settle(
        &self,
        s: &mut Self::Session,
        req: &Request<'_>,
        now: i64,
        fate: Fate<Self::Hold>,
        answer: Option<&str>,
    ) -> Result<Pending, StoreError>;
}

/// [`super::Store::decide`] for any backend: the policy (`decide`) runs
/// after the usage is read and the rows are held, outside the groups'
/// locks, so decisions on one group are not serialised behind each other's
/// evaluation; the request id's lock is held throughout.
pub(crate) fn decide<D: Decider>(
    d: &D,
    req: &Request<'_>,
    fits: &dyn Fn(&[Usage]) -> bool,
    decide: &mut dyn FnMut(i64, &[Usage]) -> Verdict,
) -> Result<Outcome, StoreError> {
    d.exclusive(req.id, |s| {
        let (now, usages, held) = match d.read(s, req, fits)? {
            Read::Prior(p) => return Ok(Outcome::Prior(p)),
            Read::Usage { now, usages, held } => (now, usages, held),
        };
        let verdict = decide(now, &usages);
        let fate = Fate::of(verdict.approved, held);
        // Not a decision to repeat (status 30 and the like): no record.
        let answer = verdict.answer.as_deref().filter(|a| !a.is_empty());
        d.settle(s, req, now, fate, answer).map(Outcome::Decided)
    })
}

/// A backend's [`super::Store::decide`]: the request as [`Request`],
/// through [`decide`] and the backend's [`Decider`] steps.
macro_rules! decide_by_protocol {
    () => {
        fn decide(
            &self,
            r: &$crate::store::DecideRequest<'_>,
            decide: &mut dyn FnMut(i64, &[$crate::velocity::Usage]) -> $crate::store::Verdict,
        ) -> Result<$crate::store::Outcome, $crate::store::StoreError> {
            let req = $crate::store::protocol::Request {
                id: r.request_id,
                digest: hex::encode(r.digest),
                groups: r.groups,
                hold: r.hold,
                now_ms: r.now_ms,
            };
            $crate::store::protocol::decide(self, &req, r.fits, decide)
        }
    };
}
pub(crate) use decide_by_protocol;

/// What an earlier request's retry record says of this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    Prior(Prior),
    /// Held by a decider that died before answering (PostgreSQL's pending
    /// record): this payload was never answered, so it is decided anew.
    Unanswered,
}

/// The retry-record rule: `record` (digest hex, answer) of the same id,
/// against this request's `digest` hex. Another digest is another payload
/// under the same id; the same digest replays the answer.
pub(crate) fn prior_of(record: Option<(String, String)>, digest: &str) -> Option<Found> {
    let (d, answer) = record?;
    Some(if d != digest {
        Found::Prior(Prior::Different)
    } else if answer.is_empty() {
        Found::Unanswered
    } else {
        Found::Prior(Prior::Same(answer))
    })
}

/// [`super::Store::lookup`]'s answer from the id's record.
pub(crate) fn lookup(record: Option<(String, String)>, digest: &str) -> Option<Prior> {
    match prior_of(record, digest)? {
        Found::Prior(p) => Some(p),
        Found::Unanswered => None,
    }
}

/// A pending [`Pending`] that is already resolved: the backend committed
/// before returning.
pub(crate) fn resolved() -> Pending {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _ = tx.send(Ok(()));
    Pending(rx)
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

/// The state machine of [`super::Store::transition`]: the state after `to`
/// is reported in state `before`, and what happens to the rows.
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

/// A stored task state as read. An unknown state (a newer writer) is read
/// as still approved: its hold keeps counting.
pub(crate) fn task_state(stored: &str) -> TaskState {
    TaskState::parse(stored).unwrap_or(TaskState::Approved)
}

/// One transaction on a task's approval and its ledger rows, taken with
/// the task's and its groups' locks held (so no decision reads their usage
/// half-way through). Dropped without [`TaskTx::commit`]: rolled back.
pub(crate) trait TaskTx {
    /// The approval's stored state; None: no approval of that request.
    fn state(&mut self, request_id: &str) -> Result<Option<String>, StoreError>;
    /// Voids every row of the request still counting, as [`VOID_BY_EVENT`].
    fn release(&mut self, request_id: &str, at_ms: i64, reason: &str) -> Result<usize, StoreError>;
    /// Counts again the rows [`TaskTx::release`] voided.
    fn rehold(&mut self, request_id: &str) -> Result<usize, StoreError>;
    /// Records the task's new state, when and why: `(state, at_ms, reason)`.
    fn set_state(&mut self, id: &str, to: (TaskState, i64, &str)) -> Result<(), StoreError>;
    fn commit(self) -> Result<(), StoreError>;
}

/// A backend's [`super::Store::transition`]: [`transition`] in the
/// transaction its inherent `with_task(request_id, f)` opens with the
/// task's and its groups' locks held.
macro_rules! transition_by_protocol {
    () => {
        fn transition(
            &self,
            request_id: &str,
            to: $crate::store::TaskState,
            at_ms: i64,
            reason: &str,
        ) -> Result<$crate::store::Transition, $crate::store::StoreError> {
            self.with_task(request_id, |tx| {
                $crate::store::protocol::transition(tx, request_id, to, at_ms, reason)
            })
        }
    };
}
pub(crate) use transition_by_protocol;

/// [`super::Store::transition`] in the backend's transaction `tx`.
pub(crate) fn transition(
    mut tx: impl TaskTx,
    request_id: &str,
    to: TaskState,
    at_ms: i64,
    reason: &str,
) -> Result<Transition, StoreError> {
    let Some(before) = tx.state(request_id)? else {
        return Ok(Transition::UNKNOWN);
    };
    let before = task_state(&before);
    let (after, change) = next_state(before, to);
    let rows = match change {
        RowChange::Keep => 0,
        RowChange::Release => tx.release(request_id, at_ms, reason)?,
        RowChange::Rehold => tx.rehold(request_id)?,
    };
    if after != before {
        tx.set_state(request_id, (after, at_ms, reason))?;
    }
    tx.commit()?;
    Ok(Transition {
        before: Some(before),
        after: Some(after),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_record_rule() {
        let rec = |d: &str, a: &str| Some((d.to_owned(), a.to_owned()));
        assert_eq!(prior_of(None, "ab"), None);
        assert_eq!(
            prior_of(rec("ab", "A"), "ab"),
            Some(Found::Prior(Prior::Same("A".into())))
        );
        assert_eq!(
            prior_of(rec("cd", "A"), "ab"),
            Some(Found::Prior(Prior::Different))
        );
        assert_eq!(prior_of(rec("ab", ""), "ab"), Some(Found::Unanswered));
        assert_eq!(
            prior_of(rec("cd", ""), "ab"),
            Some(Found::Prior(Prior::Different)),
            "another payload even while the first is unanswered"
        );
        assert_eq!(lookup(rec("ab", ""), "ab"), None);
    }

    #[test]
    fn an_unknown_stored_state_keeps_its_hold() {
        assert_eq!(task_state("released"), TaskState::Released);
        assert_eq!(task_state("paused-by-a-newer-binary"), TaskState::Approved);
    }
}
