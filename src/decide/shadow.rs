//! Shadow mode (`policy.shadow_dir`): a second policy set judges live
//! traffic beside the serving one, so a policy change can be watched on real
//! requests before it decides anything.
//!
//! The live decision is what is signed, always. After the live set has
//! decided a request, [`Shadow::submit`] hands the very input document it
//! saw (derived facts, spending-limit usage and decision time included) to
//! one background thread through a bounded queue; that thread evaluates the
//! shadow set, compares, counts
//! (`tss_gate_shadow_evaluations_total{result}`) and, on a disagreement,
//! appends an `"event": "shadow_disagreement"` line to the decision log
//! and counts its direction (`tss_gate_shadow_disagreements_total`).
//!
//! Why a queue and not the request's own worker: the answer never waits for
//! the shadow evaluation, and a shadow set that is slow, errs or panics
//! cannot touch it. The thread runs under `SCHED_IDLE` (only on CPU time
//! no request wants), so a saturated server sheds shadow work first: the
//! queue fills and further evaluations are dropped and counted
//! (`result="dropped"`). Its disagreement lines are queued without waiting
//! for their fsync: they are diagnostics, and no answer waits for them.
//!
//! Not shadowed: answers repeated from the retry cache or the store's retry
//! record (not fresh decisions), requests the live set could not decide (an
//! evaluation error has no decision to compare with), and requests that
//! failed before evaluation.
//!
//! Owns: the shadow set handle, the queue and its thread, the comparison and
//! the disagreement line. Loading and reloading the set is [`crate::runtime::reload`]'s.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use serde::Serialize;
use serde_json::Value;
use tracing::{debug, error, warn};

use crate::decide::steps::Processed;
use crate::decision_log::DecisionLog;
use crate::metrics::{Metrics, TYPE_NONE};
use crate::policy::{Decision, PolicySet};

/// Evaluations waiting for the shadow thread at most: about half a second of
/// work at the shipped policy's cost (~0.6 ms each). Beyond it the shadow
/// cannot keep up and evaluations are dropped (and counted).
pub const QUEUE: usize = 1024;

/// The `event` value of a disagreement line in the decision log.
pub const EVENT: &str = "shadow_disagreement";

/// Shortest time between two log lines about shadow errors or drops, so a
/// broken shadow set cannot flood the log at the request rate.
const LOG_EVERY_MS: i64 = 10_000;

/// How a shadow decision differs from the live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The shadow set approves what the live set rejected.
    WouldApprove,
    /// The shadow set rejects what the live set approved.
    WouldReject,
    /// Same action, different deny codes.
    CodesChanged,
}

impl Direction {
    /// The `direction` label and line field.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::WouldApprove => "would_approve",
            Direction::WouldReject => "would_reject",
            Direction::CodesChanged => "codes_changed",
        }
    }
}

/// Compares two decisions: None when they agree. The action is what each
/// would answer ([`Decision::approves`]); codes are compared as sets, so an
/// order the engine happens to emit is not a disagreement. Reasons are not
/// compared: their text may quote values and change with wording alone.
pub fn compare(live: &Decision, shadow: &Decision) -> Option<Direction> {
    match (live.approves(), shadow.approves()) {
        (false, true) => Some(Direction::WouldApprove),
        (true, false) => Some(Direction::WouldReject),
        _ if code_set(&live.codes) != code_set(&shadow.codes) => Some(Direction::CodesChanged),
        _ => None,
    }
}

fn code_set(codes: &[String]) -> std::collections::BTreeSet<&str> {
    codes.iter().map(String::as_str).collect()
}

/// The shadow set of a server and the queue to its thread. Off (no set)
/// until [`crate::runtime::reload`] installs one.
#[derive(Default)]
pub struct Shadow {
    /// The set evaluating now; None while shadow mode is off or no shadow
    /// set has loaded yet.
    set: ArcSwapOption<PolicySet>,
    /// The queue to the shadow thread, started with the first set.
    queue: OnceLock<SyncSender<Job>>,
    /// Rate limit of the log lines about shadow errors and drops.
    quiet: Arc<Quiet>,
    /// Jobs queued and not yet taken: a full queue is seen before the
    /// input document is copied, so shedding shadow work costs nothing.
    queued: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Shadow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shadow")
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}

/// One evaluation for the shadow thread: everything it needs, owned, so
/// the request it came from is long answered when it runs.
struct Job {
    /// The shadow set as it was when the live decision was made.
    set: Arc<PolicySet>,
    input: Value,
    live: Decision,
    live_revision: String,
    request_id: String,
    request_type: &'static str,
    key: Option<String>,
    metrics: Arc<Metrics>,
    log: Option<Arc<DecisionLog>>,
    /// Rate limit of the thread's error log lines (shared by all jobs).
    quiet: Arc<Quiet>,
    /// [`Shadow::queued`], decremented when the thread takes the job.
    queued: Arc<AtomicUsize>,
}

impl Shadow {
    /// The revision of the shadow set evaluating now, if any.
    pub fn revision(&self) -> Option<String> {
        self.set.load().as_ref().map(|s| s.revision.clone())
    }

    /// Puts `set` in place of the current shadow set (starting the shadow
    /// thread the first time). Evaluations already queued finish on the set
    /// they were queued with.
    pub fn install(&self, set: PolicySet) -> std::io::Result<()> {
        if self.queue.get().is_none() {
            let tx = start_thread()?;
            // A second installer racing here would lose its sender, and its
            // thread would end at once; reloads are serialised, so it never does.
            let _ = self.queue.set(tx);
        }
        self.set.store(Some(Arc::new(set)));
        Ok(())
    }

    /// Turns shadow mode off; returns whether it was on. Queued evaluations
    /// still finish.
    pub fn turn_off(&self) -> bool {
        self.set.swap(None).is_some()
    }

    /// Queues the shadow evaluation of a request the live set just decided.
    /// Never blocks and never fails: a full queue drops the evaluation and
    /// counts it. Does nothing when shadow mode is off, the answer was
    /// replayed, or the live set reached no decision.
    pub fn submit(&self, p: &Processed, metrics: &Arc<Metrics>, log: Option<&Arc<DecisionLog>>) {
        let Some(set) = self.set.load_full() else {
            return;
        };
        let Some(decided) = p.decided.as_ref().filter(|d| !d.replayed) else {
            return;
        };
        let Some(live) = &decided.decision else {
            return;
        };
        let Some(tx) = self.queue.get() else {
            return;
        };
        if self.queued.load(Ordering::Relaxed) >= QUEUE {
            self.dropped(metrics);
            return;
        }
        let job = Job {
            set,
            input: decided.input.clone(),
            live: live.clone(),
            live_revision: decided.revision.clone(),
            request_id: p.response.request_id.clone(),
            request_type: p.request_type.map(|t| t.name()).unwrap_or(TYPE_NONE),
            key: p.admitted.as_ref().map(|a| a.token.key_name.clone()),
            metrics: metrics.clone(),
            log: log.cloned(),
            quiet: self.quiet.clone(),
            queued: self.queued.clone(),
        };
        self.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(job) {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.dropped(metrics);
        }
    }

    fn dropped(&self, metrics: &Metrics) {
        metrics.shadow_result("dropped");
        if self.quiet.may_log() {
            warn!(
                queue = QUEUE,
                "shadow evaluation dropped: the shadow queue is full (the live answer is unaffected)"
            );
        }
    }
}

/// Lets a log line through at most once per [`LOG_EVERY_MS`].
#[derive(Default)]
struct Quiet {
    last_ms: AtomicI64,
}

impl Quiet {
    fn may_log(&self) -> bool {
        let now = crate::clock::now_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        now - last >= LOG_EVERY_MS
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

fn start_thread() -> std::io::Result<SyncSender<Job>> {
    let (tx, rx) = sync_channel::<Job>(QUEUE);
    std::thread::Builder::new()
        .name("tss-shadow".into())
        .spawn(move || {
            lowest_priority();
            run(&rx)
        })?;
    Ok(tx)
}

/// `SCHED_IDLE` on Linux: the thread runs only on CPU time no request
/// wants, and any waking request thread preempts it at once. Nice 19 alone
/// (the first version) was not enough: at saturation the shadow thread
/// still took half a core from the request workers (nice 10) and
/// throughput fell by 29 % (BENCHMARKS.md, "Shadow mode"). Best effort,
/// like the workers' own priority: where the policy cannot be set, nice 19.
fn lowest_priority() {
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id,
    };
    use thread_priority::{ThreadPriority, ThreadPriorityValue, set_current_thread_priority};
    let Ok(lowest) = ThreadPriorityValue::try_from(0u8) else {
        return;
    };
    // SCHED_IDLE takes no nice value (the crate accepts only its minimum).
    let idle = set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
    );
    if idle.is_err() {
        let _ = set_current_thread_priority(ThreadPriority::Crossplatform(lowest));
    }
}

/// The shadow thread: until every sender is gone (the server has stopped).
fn run(rx: &Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        job.queued.fetch_sub(1, Ordering::Relaxed);
        let metrics = job.metrics.clone();
        let quiet = job.quiet.clone();
        let id = job.request_id.clone();
        // A panic in the shadow set's evaluation is the shadow's error, not
        // the server's: count it and go on with the next job.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| evaluate(job))).is_err() {
            metrics.shadow_result("error");
            if quiet.may_log() {
                error!(request_id = %id, "shadow evaluation panicked (the live answer is unaffected)");
            }
        }
    }
}

fn evaluate(job: Job) {
    let started = Instant::now();
    let result = job.set.evaluate(&job.input);
    job.metrics
        .shadow_eval_duration
        .observe(started.elapsed().as_secs_f64());
    let shadow = match result {
        Ok(d) => d,
        Err(e) => {
            job.metrics.shadow_result("error");
            if job.quiet.may_log() {
                warn!(
                    request_id = %job.request_id,
                    shadow_revision = %job.set.revision,
                    "shadow evaluation failed, {} (the live answer is unaffected; failures are counted in tss_gate_shadow_evaluations_total{{result=\"error\"}} and logged at most every {}s): {}",
                    e.reason(),
                    LOG_EVERY_MS / 1000,
                    crate::policy::one_line(&e.to_string())
                );
            }
            return;
        }
    };
    let Some(direction) = compare(&job.live, &shadow) else {
        job.metrics.shadow_result("agree");
        return;
    };
    job.metrics.shadow_result("disagree");
    job.metrics.shadow_disagreement(direction.as_str());
    debug!(
        request_id = %job.request_id,
        direction = direction.as_str(),
        "shadow policy disagrees"
    );
    if let Some(log) = &job.log {
        // Not waited for: no answer depends on it (see the module doc). Not
        // counted in the decision log's writes either: the only failure
        // seen here is a log already closed at shutdown, which is no fault
        // of the disk that metric alerts on.
        if log.append_nowait(line(&job, &shadow, direction)).is_err() {
            debug!(request_id = %job.request_id, "shadow line not written: the decision log is closed");
        }
    }
}

/// One side of a disagreement line.
#[derive(Debug, Serialize)]
struct Side<'a> {
    action: &'static str,
    codes: &'a [String],
    reasons: &'a [String],
    policy_revision: &'a str,
}

impl<'a> Side<'a> {
    fn of(d: &'a Decision, revision: &'a str) -> Self {
        Self {
            action: if d.approves() { "APPROVE" } else { "REJECT" },
            codes: &d.codes,
            reasons: &d.reasons,
            policy_revision: revision,
        }
    }
}

/// A disagreement, as written (docs/decision-log.md). Field order is the
/// line's field order.
#[derive(Debug, Serialize)]
struct Line<'a> {
    v: u32,
    time: String,
    event: &'static str,
    request_id: &'a str,
    request_type: &'a str,
    direction: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    live: Side<'a>,
    shadow: Side<'a>,
}

fn line(job: &Job, shadow: &Decision, direction: Direction) -> Vec<u8> {
    let l = Line {
        v: crate::decision_log::EVENT_VERSION,
        time: crate::decision_log::timestamp(crate::clock::now_ms()),
        event: EVENT,
        request_id: &job.request_id,
        request_type: job.request_type,
        direction: direction.as_str(),
        key: job.key.as_deref(),
        live: Side::of(&job.live, &job.live_revision),
        shadow: Side::of(shadow, &job.set.revision),
    };
    // Plain strings and lists: serialising cannot fail.
    let mut out = serde_json::to_vec(&l).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(allow: bool, codes: &[&str]) -> Decision {
        Decision {
            allow,
            reasons: if allow { Vec::new() } else { vec!["no".into()] },
            codes: codes.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn directions() {
        use Direction::*;
        assert_eq!(
            compare(&d(false, &["a"]), &d(true, &[])),
            Some(WouldApprove)
        );
        assert_eq!(compare(&d(true, &[]), &d(false, &["a"])), Some(WouldReject));
        assert_eq!(
            compare(&d(false, &["a"]), &d(false, &["a", "b"])),
            Some(CodesChanged)
        );
        assert_eq!(
            compare(&d(false, &["b", "a"]), &d(false, &["a", "b"])),
            None
        );
        assert_eq!(compare(&d(true, &[]), &d(true, &[])), None);
        // Allowing with reasons is a rejection (the contract), so a set that
        // does that rejects what the live set approves.
        let contradictory = Decision {
            allow: true,
            reasons: vec!["why".into()],
            codes: Vec::new(),
        };
        assert_eq!(compare(&d(true, &[]), &contradictory), Some(WouldReject));
    }
}
