//! One request from its token to its final answer, and the effects that
//! must be durable before that answer leaves: the emergency stop, the retry
//! cache and the store's retry record, the spending-limit ledger, the
//! approval record of the event audit, and the decision-log line. It knows
//! no HTTP and no configuration: the transport hands it a token and signs
//! what it answers; the runtime builds it and hands hot reload its [`Live`]
//! handle.
//!
//! The [`Decider`] is the one path: the server, the benches and fuzzing go
//! through it, so what is measured and fuzzed is what serves. Its CPU part
//! ([`Decider::decide`]) runs on a worker thread; the wait for durability
//! ([`Decider::settle`]) holds no thread.

pub mod answer;
pub mod effects;
pub mod ledger;
pub mod record;
pub mod retry;
pub mod shadow;
pub mod steps;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tracing::{Span, error, info, warn};

pub use answer::{Answer, AnswerKind};
pub use steps::{Admitted, Decided, Failure, Gate, Processed};

use crate::decision_log::{self, DecisionLog};
use crate::freeze::{Freeze, FreezeState};
use crate::metrics::{Metrics, TYPE_NONE};
use crate::policy::{Decision, PolicySet};
use crate::store::{Pending, Prior, Store};
use ledger::StoreDecided;
use retry::{Cached, Lookup, RetryCache};

/// What hot reload replaces while requests are decided: keys, the live
/// policy set and the shadow set. A request finishes on what it loaded.
pub struct Live {
    pub gate: ArcSwap<Gate>,
    pub policy: ArcSwap<PolicySet>,
    /// Shadow mode (`policy.shadow_dir`): off until a shadow set loads.
    pub shadow: shadow::Shadow,
}

impl Live {
    pub fn new(gate: Gate, policy: PolicySet) -> Self {
        Self {
            gate: ArcSwap::from_pointee(gate),
            policy: ArcSwap::from_pointee(policy),
            shadow: shadow::Shadow::default(),
        }
    }
}

/// Everything a decision reads or makes durable. Built once by the
/// runtime (or a bench) and shared by every request.
pub struct Decider {
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    /// Answers already given, so a retried request gets the same one.
    pub retry: RetryCache,
    /// The spending-limit ledger and durable retry records; None decides
    /// without spending limits (facts show zero usage).
    pub store: Option<Arc<dyn Store>>,
    /// The emergency stop as last read from the store.
    pub freeze: Arc<FreezeState>,
    /// The audit trail; when set, no answer leaves before its line is durable.
    pub decision_log: Option<Arc<DecisionLog>>,
    /// Writes each verified request as a fixture (`record_dir`); off when None.
    pub recorder: Option<record::Recorder>,
    /// Every APPROVE of a task is recorded in the store before it leaves,
    /// for the audit of the node's events (the event endpoint is on).
    pub record_approvals: bool,
    /// Requests queued for a decision or being decided: the ones that may
    /// still join the store's group commit (its load hint). The transport
    /// counts a request from the moment it queues it.
    pub deciding: Arc<AtomicUsize>,
    /// How long a decision's log line may wait for its ledger commit (the
    /// store's group-commit window; zero: it is written at once).
    pub log_hold: Duration,
}

/// The CPU part's result: an answer now, or one that waits for its
/// decision-log line and ledger rows to be durable.
pub struct Stage(StageKind);

enum StageKind {
    Done(Answer),
    /// Decided; the line was queued and must be durable before the answer
    /// is signed (an APPROVE never leaves before its audit line).
    Logging(
        Answer,
        Result<decision_log::Pending, decision_log::DecisionLogError>,
    ),
    /// Decided under a spending limit: the store's rows must be durable
    /// first; the decision-log line is written once the answer is final.
    Stored(Box<Stored>),
}

struct Stored {
    answer: Answer,
    processed: Processed,
    revision: String,
    started: Instant,
    pending: Pending,
    /// The approval record (event endpoint on) when ledger rows are
    /// pending too: both are in flight, the answer waits for both.
    also: Option<Pending>,
    /// The decision-log line, queued at once so its fsync runs beside the
    /// store's.
    log: Option<Result<decision_log::Pending, decision_log::DecisionLogError>>,
}

impl Stage {
    /// The answer, when nothing remains to wait for (no decision log, no
    /// ledger rows): the transport signs it in the same job.
    pub fn ready(&self) -> Option<&Answer> {
        match &self.0 {
            StageKind::Done(a) => Some(a),
            _ => None,
        }
    }
}

/// Counts a request in [`Decider::deciding`] while it lives.
pub struct Deciding(Arc<AtomicUsize>);

impl Deciding {
    pub fn new(n: &Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::AcqRel);
        Self(n.clone())
    }
}

impl Drop for Deciding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Decider {
    /// A decider with no store, log, recorder or retry memory beyond the
    /// default cache: what benches, fuzzing and tools start from.
    pub fn new(gate: Gate, policy: PolicySet, metrics: Arc<Metrics>) -> Self {
        Self {
            live: Arc::new(Live::new(gate, policy)),
            metrics,
            retry: RetryCache::default(),
            store: None,
            freeze: Arc::default(),
            decision_log: None,
            recorder: None,
            record_approvals: false,
            deciding: Arc::default(),
            log_hold: Duration::ZERO,
        }
    }

    /// The CPU part: admit, decide, and queue every effect the answer
    /// waits for. `span` is the request's: it gets the request id.
    pub fn decide(&self, token: &str, received_ms: i64, started: Instant, span: &Span) -> Stage {
        let gate = self.live.gate.load();
        let policy = self.live.policy.load();
        let (mut p, mut stored) = self.judge(&gate, &policy, token, received_ms);
        // The approval record and any ledger rows must both be durable
        // before the answer leaves.
        let mut also = None;
        if let Some(a) = self.record_approval(&mut p) {
            match stored {
                Some(_) => also = Some(a),
                None => stored = Some(a),
            }
        }
        if !p.response.request_id.is_empty() {
            span.record("request_id", p.response.request_id.as_str());
        }
        let revision = p
            .decided
            .as_ref()
            .map(|d| d.revision.as_str())
            .unwrap_or(&policy.revision);
        log_decided(&p, revision);
        effects::observe_decided(
            &p,
            received_ms,
            &self.metrics,
            self.recorder.as_ref(),
            &self.live.shadow,
            self.decision_log.as_ref(),
        );
        if let Some(pending) = stored {
            let mut answer = Answer::of(&p);
            answer.logged = self.decision_log.is_some();
            // The answer waits for the store's commit anyway: the line may
            // wait as long, so one fsync of the log covers a group commit's
            // lines. Only with other requests in flight, as the group
            // commit itself (a lone request is never held; its fsyncs run
            // side by side).
            let hold = Some(self.log_hold)
                .filter(|w| !w.is_zero() && self.metrics.in_flight.get() > 1)
                .map(|w| Instant::now() + w);
            let log = self
                .decision_log
                .as_ref()
                .map(|log| effects::queue_line(log, &p, revision, started, hold));
            let revision = revision.to_owned();
            // Only a failed commit reads `p` again, for a line that carries
            // no input (a failure was never judged). The documents are
            // freed here, while this thread's cache still holds them, not
            // after the commit.
            if let Some(d) = p.decided.as_mut() {
                d.input = serde_json::Value::Null;
            }
            if let Some(a) = p.admitted.as_mut() {
                a.request.detail = serde_json::Value::Null;
                a.request.extra = serde_json::Value::Null;
            }
            return Stage(StageKind::Stored(Box::new(Stored {
                answer,
                revision,
                processed: p,
                started,
                pending,
                also,
                log,
            })));
        }
        let pending = self
            .decision_log
            .as_ref()
            .map(|log| effects::queue_line(log, &p, revision, started, None));
        let mut answer = Answer::of(&p);
        match pending {
            None => Stage(StageKind::Done(answer)),
            Some(pending) => {
                answer.logged = true;
                Stage(StageKind::Logging(answer, pending))
            }
        }
    }

    /// Waits (without holding a thread) for what the answer must not leave
    /// before, and applies `fail_closed` to a decision-log failure.
    pub async fn settle(&self, stage: Stage) -> Answer {
        let (mut answer, written) = match stage.0 {
            StageKind::Done(a) => return a,
            StageKind::Logging(a, pending) => {
                let written = match pending {
                    Ok(p) => p.done().await,
                    Err(e) => Err(e),
                };
                (a, Some(written))
            }
            StageKind::Stored(s) => self.commit_stored(*s).await,
        };
        if let Some(written) = written {
            let ok = written.is_ok();
            self.metrics
                .decision_log_writes
                .with_label_values(&[if ok { "success" } else { "failure" }])
                .inc();
            if !ok && answer.response.status.code() == 0 {
                let fail_closed = self
                    .decision_log
                    .as_ref()
                    .is_none_or(|l| l.options().fail_closed);
                if fail_closed {
                    error!("decision log write failed: answering status 30 (fail_closed)");
                    let f = Failure::DecisionLog;
                    answer.response = f.answer(&answer.response.request_id);
                    answer.failure = Some(f);
                } else {
                    error!("decision log write failed: answering anyway (fail_closed: false)");
                }
            }
        }
        answer
    }

    /// [`decide`](Self::decide) then [`settle`](Self::settle) on this
    /// thread: for benches, fuzzing and tools that have no runtime.
    pub fn decide_blocking(&self, token: &str, received_ms: i64) -> Answer {
        let stage = self.decide(token, received_ms, Instant::now(), &Span::none());
        pollster::block_on(self.settle(stage))
    }

    /// Signs an answer with the keys now serving.
    pub fn sign(
        &self,
        response: &crate::protocol::CallbackResponse,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        steps::sign(&self.live.gate.load(), response)
    }

    /// Logs an answer given outside the decision (overload, an unreadable
    /// body, the deadline). Never an approval, so nothing waits for it.
    pub fn log_failure(
        &self,
        response: &crate::protocol::CallbackResponse,
        request_type: Option<&'static str>,
        failure: &Failure,
        started: Instant,
    ) {
        let Some(dl) = &self.decision_log else {
            return;
        };
        let revision = self.live.policy.load().revision.clone();
        let line = effects::failure_line(dl, response, request_type, failure, &revision, started);
        let ok = dl.append_nowait(line).is_ok();
        self.metrics
            .decision_log_writes
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
    }

    /// Admit → emergency stop → retry cache → ledger or plain decision →
    /// cache store. The store's pending commit comes back when a spending
    /// limit matched: the answer may leave only once it resolves.
    fn judge(
        &self,
        gate: &Gate,
        policy: &PolicySet,
        token: &str,
        received_ms: i64,
    ) -> (Processed, Option<Pending>) {
        let adm = match steps::admit(gate, token) {
            Ok(a) => a,
            Err((failure, id)) => {
                let p = Processed {
                    response: failure.answer(&id),
                    request_type: None,
                    failure: Some(failure),
                    admitted: None,
                    decided: None,
                };
                return (p, None);
            }
        };
        // The emergency stop comes before everything that could approve,
        // the answers cached or stored for a retry included. Its answer is
        // not cached: once thawed, a retry is decided afresh.
        if let Some(f) = self.freeze.stopping(adm.request.request_type) {
            return (frozen(policy, adm, &f, received_ms), None);
        }
        let id = adm.request.request_id.clone();
        let digest = *adm.digest();
        let now = Instant::now();
        match self.retry.lookup(&id, &digest, now) {
            Lookup::Hit(c) => return (self.replayed(adm, c), None),
            Lookup::Mismatch => return (mismatch(adm), None),
            Lookup::Miss => {}
        }
        let store = self.store.as_deref();
        let stored = store.and_then(|s| {
            ledger::decide_stored(s, policy, &adm, received_ms, None, &mut |i| {
                policy.evaluate(i)
            })
        });
        if stored.is_none()
            && let Some(s) = store
        {
            // No limit matched this payload, but its id may belong to one
            // that a limit did match: the store's record is the only one
            // of it.
            match s.lookup(&id, &digest) {
                Ok(None) => {}
                Ok(Some(Prior::Different)) => return (mismatch(adm), None),
                Ok(Some(Prior::Same(answer))) => {
                    return match serde_json::from_str::<Cached>(&answer) {
                        Ok(c) => (self.replayed(adm, c), None),
                        Err(_) => (refused(adm, Failure::Store), None),
                    };
                }
                Err(e) => {
                    error!("spending-limit store: {e}");
                    return (refused(adm, Failure::Store), None);
                }
            }
        }
        let decided = match stored {
            None => steps::decide(policy, &adm.request, &adm.token, received_ms),
            // Not kept in this cache: the store's own record answers
            // retries, and an answer whose commit then fails must not be
            // replayed.
            Some(Ok(StoreDecided::Fresh(d, p))) => {
                return (Processed::decided(adm, *d), Some(p));
            }
            Some(Ok(StoreDecided::Replayed(c))) => return (self.replayed(adm, c), None),
            Some(Ok(StoreDecided::Mismatch)) => return (mismatch(adm), None),
            Some(Err(f)) => return (refused(adm, f), None),
        };
        let cached = Cached {
            response: decided.response.clone(),
            decision: decided.decision.clone(),
            revision: decided.revision.clone(),
        };
        match self.retry.store(&id, &digest, cached, now) {
            Lookup::Miss => (Processed::decided(adm, decided), None),
            Lookup::Hit(c) => (self.replayed(adm, c), None),
            Lookup::Mismatch => (mismatch(adm), None),
        }
    }

    fn replayed(&self, adm: Admitted, c: Cached) -> Processed {
        self.metrics.retry_cache_hits.inc();
        let decided = Decided {
            response: c.response,
            decision: c.decision,
            failure: None,
            // Not rebuilt: the answer is the earlier decision's, not a new one.
            input: serde_json::Value::Null,
            eval_time: Duration::ZERO,
            revision: c.revision,
            replayed: true,
        };
        Processed::decided(adm, decided)
    }

    /// With the event endpoint on, an APPROVE of a task is recorded for the
    /// audit of the node's later events; returns the record's pending
    /// commit. When it cannot be recorded the answer becomes status 30: an
    /// approval the audit cannot check is not given.
    fn record_approval(&self, p: &mut Processed) -> Option<Pending> {
        if !self.record_approvals {
            return None;
        }
        let rec = effects::approval_record(p)?;
        let recorded = match (rec, self.store.as_deref()) {
            (Ok(rec), Some(store)) => store.record_approval(&rec).map_err(|e| e.to_string()),
            (Ok(_), None) => Err("no state store".to_owned()),
            (Err(e), _) => Err(format!("the approval cannot be audited: {e}")),
        };
        match recorded {
            Ok(pending) => Some(pending),
            Err(e) => {
                error!("approval not recorded for the event audit, answering status 30: {e}");
                let f = Failure::Store;
                p.response = f.answer(&p.response.request_id);
                p.failure = Some(f);
                None
            }
        }
    }

    /// Waits for a spending-limit decision's ledger rows and its
    /// decision-log line (the log's fsync beside the store's, or shared by
    /// the store's whole group commit under load; see
    /// [`DecisionLog::append_by`]). If the rows cannot be committed the
    /// answer becomes status 30 (never an APPROVE without its row), and a
    /// second log line records that final answer.
    async fn commit_stored(
        &self,
        s: Stored,
    ) -> (Answer, Option<Result<(), decision_log::DecisionLogError>>) {
        let Stored {
            mut answer,
            mut processed,
            revision,
            started,
            pending,
            also,
            log,
        } = s;
        let both = async move {
            pending.await?;
            match also {
                Some(a) => a.await,
                None => Ok(()),
            }
        };
        // Both are already queued and their fsyncs run side by side: at
        // once under slow traffic; under fast traffic the log holds its line
        // until the store's group commit takes its batch (the commit hook),
        // then writes every line it holds with one fsync. Awaited one after
        // the other, the store's first: a log line that is durable by then
        // wakes nobody, so most answers are woken once, not once per writer.
        let committed = both.await;
        // Committed (or failed): nothing else is waited for, so a line the
        // log still holds is written now rather than at its deadline.
        let written = match (log, &self.decision_log) {
            (Some(Ok(p)), Some(dl)) => {
                dl.hurry(&p);
                Some(p.done().await)
            }
            (Some(Ok(p)), None) => Some(p.done().await),
            (Some(Err(e)), _) => Some(Err(e)),
            (None, _) => None,
        };
        if let Err(e) = committed {
            error!(
                "state store commit failed (ledger rows or approval record): answering status 30: {e}"
            );
            let f = Failure::Store;
            answer.response = f.answer(&answer.response.request_id);
            answer.failure = Some(f.clone());
            processed.response = answer.response.clone();
            processed.failure = Some(f);
            if let Some(log) = &self.decision_log {
                // The line already written says what the policy decided;
                // this one says what was answered.
                let _ =
                    log.append_nowait(effects::decision_line(log, &processed, &revision, started));
            }
        }
        (answer, written)
    }
}

fn log_decided(p: &Processed, revision: &str) {
    let request_type = p.request_type.map(|t| t.name()).unwrap_or(TYPE_NONE);
    match &p.failure {
        Some(f) => warn!(reason = f.reason(), request_type, "could not decide: {f}"),
        None => info!(
            action = p.response.action.map(|a| a.as_str()).unwrap_or("NONE"),
            request_type,
            key = p.admitted.as_ref().map(|a| a.token.key_name.as_str()).unwrap_or(""),
            policy_revision = revision,
            replayed = p.decided.as_ref().is_some_and(|d| d.replayed),
            reason = %p.response.error,
            "decided"
        ),
    }
}

/// A signed REJECT naming the freeze, with the input the policy would have
/// seen (so the decision log and replay show what was stopped).
fn frozen(policy: &PolicySet, adm: Admitted, f: &Freeze, received_ms: i64) -> Processed {
    let decision = Decision {
        allow: false,
        reasons: vec![f.message(adm.request.request_type)],
        codes: vec![crate::freeze::CODE.to_owned()],
    };
    let input = steps::input_without_ledger(policy, &adm.request, &adm.token, received_ms);
    let decided = Decided {
        response: steps::answer_for(&adm.request.request_id, &decision),
        decision: Some(decision),
        failure: None,
        input,
        eval_time: Duration::ZERO,
        revision: policy.revision.clone(),
        replayed: false,
    };
    Processed::decided(adm, decided)
}

/// An admitted request that could not be decided.
fn refused(adm: Admitted, failure: Failure) -> Processed {
    Processed {
        response: failure.answer(&adm.request.request_id),
        request_type: Some(adm.request.request_type),
        failure: Some(failure),
        admitted: Some(adm),
        decided: None,
    }
}

fn mismatch(adm: Admitted) -> Processed {
    warn!(
        request_id = %adm.request.request_id,
        key = %adm.token.key_name,
        "suspicious: request_id seen before with a different payload; rejecting"
    );
    let failure = Failure::ReplayMismatch(adm.request.request_id.clone());
    refused(adm, failure)
}
