//! The HTTP layer: `POST /v2/check`, `GET /ping`, `GET /metrics`. It is handed
//! its state (keys, policy handle, metrics) and never builds them; it owns
//! admission (bounded queue, CPU slots), deadlines, and turning every outcome
//! into a signed answer.
//!
//! CPU work (RSA verify, Rego, RSA sign) runs on a fixed pool of one thread per
//! core fed by a bounded queue ([`crate::workers::CpuPool`]), so a saturated
//! `/v2/check` cannot stall `/ping` or `/metrics` on the async workers.
//!
//! Admission: at most `limits.max_queue` requests are admitted at once
//! (reading, waiting or working). Beyond that a request is answered at once
//! with a signed status 30 "overloaded", without reading its body. Those
//! answers carry no request id, so they are identical for every request and
//! come from [`crate::workers::Canned`]: signed at most once a second on a
//! separate one-thread pool, never once per refused request. That keeps the
//! cost of refusing a request at a few microseconds of HTTP work, so overload
//! cannot eat the signing capacity that admitted requests need.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{Instrument, Span, error, info, info_span, warn};

use crate::workers::{Canned, CpuPool};

use crate::decision_log::{self, DecisionLog};
use crate::metrics::{Metrics, TYPE_NONE};
use crate::pipeline::{self, Failure, Gate};
use crate::policy::PolicySet;
use crate::protocol::{CallbackResponse, FORM_FIELD};

/// Limits the HTTP layer enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub body_read_timeout: Duration,
    pub header_read_timeout: Duration,
    pub request_deadline: Duration,
    pub max_queue: usize,
    pub shutdown_grace: Duration,
}

impl Limits {
    pub fn from_config(c: &crate::config::LimitsSection) -> Self {
        Self {
            max_body_bytes: c.max_body_bytes,
            body_read_timeout: Duration::from_millis(c.body_read_timeout_ms),
            header_read_timeout: Duration::from_millis(c.header_read_timeout_ms),
            request_deadline: Duration::from_millis(c.request_deadline_ms),
            max_queue: c.max_queue,
            shutdown_grace: Duration::from_millis(c.shutdown_grace_ms),
        }
    }
}

/// Everything a handler may touch. Keys and policy sit behind `ArcSwap` so a
/// reload replaces them atomically while requests in flight finish on the
/// set they started with.
pub struct AppState {
    pub gate: ArcSwap<Gate>,
    pub policy: ArcSwap<PolicySet>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Requests admitted (reading, queued or working); beyond it: "overloaded".
    admission: Arc<Semaphore>,
    /// One thread per core: token verification, evaluation, signing.
    pool: CpuPool,
    /// One thread that signs the answers given outside the normal path
    /// (overload, unreadable body, deadline), so they never queue behind
    /// admitted work.
    side: CpuPool,
    /// Pre-signed answers that carry no request id.
    canned: Canned,
    /// Whether `/metrics` is served on the main router.
    pub metrics_on_main: bool,
    /// Writes each verified request as a fixture (`record_dir`); off when None.
    pub recorder: Option<crate::record::Recorder>,
    /// The audit trail; when set, no answer leaves before its line is durable.
    pub decision_log: Option<Arc<DecisionLog>>,
    /// Answers already given, so a retried request gets the same one.
    pub retry: crate::retry::RetryCache,
    /// The spending-limit ledger and durable retry records; None serves
    /// without spending limits (facts show zero usage).
    pub store: Option<Arc<dyn crate::store::Store>>,
    /// Shadow mode (`policy.shadow_dir`): off until a shadow set loads.
    pub shadow: crate::shadow::Shadow,
    /// The event endpoint is on: every APPROVE of a task is recorded in the
    /// store before it leaves, for the audit of the node's events.
    pub record_approvals: bool,
    /// Requests queued for a CPU worker's decision or being decided: the
    /// ones that may still join the store's group commit (its load hint).
    pub deciding: Arc<std::sync::atomic::AtomicUsize>,
    /// The emergency stop as last read from the store (crate::freeze).
    pub freeze: Arc<crate::freeze::FreezeState>,
}

/// Counts a request in [`AppState::deciding`] while it lives.
struct Deciding(Arc<std::sync::atomic::AtomicUsize>);

impl Deciding {
    fn new(n: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        n.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self(n.clone())
    }
}

impl Drop for Deciding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl AppState {
    /// Fails only if the worker threads cannot be started.
    pub fn new(
        gate: Gate,
        policy: PolicySet,
        metrics: Arc<Metrics>,
        limits: Limits,
    ) -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        metrics.policy_loaded(&policy.revision);
        metrics.velocity_limits_loaded(&policy.velocity);
        // INVARIANT: the pool's queue holds at least `max_queue` jobs, so an
        // admitted request always finds room; `Full` is a second line of defence.
        let pool = CpuPool::new("tss-cpu", cores, limits.max_queue, true)?;
        let side = CpuPool::new("tss-side", 1, SIDE_QUEUE, false)?;
        Ok(Self {
            admission: Arc::new(Semaphore::new(limits.max_queue)),
            pool,
            side,
            canned: Canned::new(CANNED_MAX_AGE),
            gate: ArcSwap::from_pointee(gate),
            policy: ArcSwap::from_pointee(policy),
            metrics,
            limits,
            metrics_on_main: true,
            recorder: None,
            decision_log: None,
            retry: crate::retry::RetryCache::default(),
            store: None,
            shadow: crate::shadow::Shadow::default(),
            record_approvals: false,
            deciding: Arc::default(),
            freeze: Arc::default(),
        })
    }
}

/// Jobs the side pool holds. Its jobs are cheap after the first of each
/// second (a cache hit), so this is only a bound, rarely reached.
const SIDE_QUEUE: usize = 1024;

/// How long a pre-signed no-request-id answer is reused.
const CANNED_MAX_AGE: Duration = Duration::from_secs(1);

/// Threads for the async runtime. The CPU work has its own pool, so the
/// runtime only parses HTTP and moves bytes: a quarter of the cores (at
/// least one) keeps it responsive without competing with the signers.
pub fn async_worker_threads() -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    cores.div_ceil(4).max(1)
}

/// The router, callable from tests without a socket.
pub fn app(state: Arc<AppState>) -> Router {
    let mut r = Router::new()
        .route("/v2/check", post(check))
        .route("/ping", get(ping));
    if state.metrics_on_main {
        r = r.route("/metrics", get(metrics));
    }
    r.with_state(state)
}

/// A router with only `/metrics`, for a separate listen address.
pub fn metrics_app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn ping(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.pings.inc();
    let body = serde_json::json!({
        "server": state.gate.load().service_name,
        "timestamp": pipeline::now_ms(),
    });
    axum::Json(body).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Decrements the in-flight gauge however the request ends (including when
/// the client goes away and the future is dropped).
struct InFlight(Arc<Metrics>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

async fn check(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    // Every log line of the request carries its request_id once it is known.
    let span = info_span!("request", request_id = tracing::field::Empty);
    check_in_span(state, headers, body).instrument(span).await
}

async fn check_in_span(state: Arc<AppState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let received_ms = pipeline::now_ms();
    state.metrics.in_flight.inc();
    let _guard = InFlight(state.metrics.clone());

    let Ok(permit) = state.admission.clone().try_acquire_owned() else {
        return finish(
            &state,
            started,
            None,
            Err(Failure::Overloaded),
            String::new(),
            true,
        )
        .await;
    };

    let token = match read_token(&state, &headers, body).await {
        Ok(t) => t,
        Err(f) => return finish(&state, started, None, Err(f), String::new(), true).await,
    };

    let st = state.clone();
    let span = Span::current();
    // Dropped with the job: when it is decided, skipped or refused.
    let deciding = Deciding::new(&state.deciding);
    let work = async {
        let rx = state
            .pool
            .try_submit(move || {
                let _e = span.enter();
                let stage = decide_stage(&st, &token, received_ms, started, &span);
                drop(deciding);
                stage
            })
            .map_err(|_| Failure::Overloaded)?;
        let stage = rx
            .await
            .map_err(|_| Failure::Policy("internal error", "policy_error"))?;
        Ok::<Done, Failure>(finish_stage(&state, stage).await)
    };
    // On timeout the receiver is dropped, so a job still waiting in the
    // queue is skipped instead of signing an answer nobody reads.
    let mut out = match tokio::time::timeout(state.limits.request_deadline, work).await {
        Ok(Ok(done)) => done,
        Ok(Err(f)) => Done::failed(f),
        Err(_) => Done::failed(Failure::Deadline),
    };
    drop(permit);
    match out.signed.take() {
        Some(token) => {
            observe(&state, started, &out);
            signed_response(token, out.answer)
        }
        None => {
            let id = out.response.request_id.clone();
            let failure = out
                .failure
                .clone()
                .unwrap_or(Failure::Policy("internal error", "policy_error"));
            let log = !out.logged;
            finish(&state, started, out.request_type, Err(failure), id, log).await
        }
    }
}

/// Result of the CPU part of a request.
struct Done {
    response: CallbackResponse,
    signed: Option<String>,
    request_type: Option<&'static str>,
    failure: Option<Failure>,
    codes: Vec<String>,
    eval_time: Option<Duration>,
    /// Whether the decision log already has this request's line.
    logged: bool,
    /// How the answer was reached, for the unsigned `x-tss-gate-answer`
    /// header (see [`ANSWER_HEADER`]).
    answer: AnswerKind,
}

/// Unsigned response header telling a person at `tss-gate send` whether
/// the answer was decided now or repeated from the retry record of an
/// earlier identical request (so a policy they just changed did not run).
/// Informational only: the node reads the signed body, and the header says
/// nothing the sender does not already know.
pub const ANSWER_HEADER: &str = "x-tss-gate-answer";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnswerKind {
    Decided,
    /// Repeated from the retry record of an identical earlier request.
    Repeated,
    /// The request id was seen before with another payload.
    IdReused,
}

impl AnswerKind {
    fn as_str(self) -> &'static str {
        match self {
            AnswerKind::Decided => "decided",
            AnswerKind::Repeated => "repeated",
            AnswerKind::IdReused => "id-reused",
        }
    }

    fn of(p: &pipeline::Processed) -> Self {
        if matches!(p.failure, Some(Failure::ReplayMismatch(_))) {
            AnswerKind::IdReused
        } else if p.decided.as_ref().is_some_and(|d| d.replayed) {
            AnswerKind::Repeated
        } else {
            AnswerKind::Decided
        }
    }
}

impl Done {
    fn failed(f: Failure) -> Self {
        Self {
            response: f.answer(""),
            signed: None,
            request_type: None,
            failure: Some(f),
            codes: Vec::new(),
            eval_time: None,
            logged: false,
            answer: AnswerKind::Decided,
        }
    }
}

/// The first CPU stage: admit, decide, and either sign at once or hand the
/// decision back to wait for its decision-log line.
enum Stage {
    Done(Done),
    /// Decided; the line was queued and must be durable before the answer
    /// is signed (an APPROVE never leaves before its audit line).
    Logging(Box<Logging>),
    /// Decided under a spending limit: the store's rows must be durable
    /// first; the decision-log line is written once the answer is final.
    Stored(Box<Stored>),
}

struct Logging {
    done: Done,
    pending: Result<decision_log::Pending, decision_log::DecisionLogError>,
}

struct Stored {
    done: Done,
    processed: pipeline::Processed,
    revision: String,
    started: Instant,
    pending: crate::store::Pending,
    /// The approval record (event endpoint on) when ledger rows are
    /// pending too: both are in flight, the answer waits for both.
    also: Option<crate::store::Pending>,
    /// The decision-log line, queued at once so its fsync runs beside the
    /// store's.
    log: Option<Result<decision_log::Pending, decision_log::DecisionLogError>>,
}

fn decide_stage(
    state: &AppState,
    token: &str,
    received_ms: i64,
    started: Instant,
    span: &Span,
) -> Stage {
    let gate = state.gate.load();
    let policy = state.policy.load();
    // admit → retry-cache lookup → decide → cache store (see crate::retry).
    let (mut p, mut stored) = crate::retry::process(
        &state.retry,
        &state.metrics,
        &gate,
        &policy,
        state.store.as_deref(),
        &state.freeze,
        token,
        received_ms,
    );
    // The approval record and any ledger rows must both be durable before
    // the answer leaves.
    let mut also = None;
    if let Some(a) = record_approval(state, &mut p) {
        match stored {
            Some(_) => also = Some(a),
            None => stored = Some(a),
        }
    }
    if !p.response.request_id.is_empty() {
        span.record("request_id", p.response.request_id.as_str());
    }
    let request_type = p.request_type.map(|t| t.name());
    let codes = p
        .decided
        .as_ref()
        .and_then(|d| d.decision.as_ref())
        .map(|d| d.codes.clone())
        .unwrap_or_default();
    let eval_time = p.decided.as_ref().map(|d| d.eval_time);
    let revision = p
        .decided
        .as_ref()
        .map(|d| d.revision.as_str())
        .unwrap_or(&policy.revision);
    match &p.failure {
        Some(f) => warn!(
            reason = f.reason(),
            request_type = request_type.unwrap_or(TYPE_NONE),
            "could not decide: {f}"
        ),
        None => info!(
            action = p.response.action.map(|a| a.as_str()).unwrap_or("NONE"),
            request_type = request_type.unwrap_or(TYPE_NONE),
            key = p.admitted.as_ref().map(|a| a.token.key_name.as_str()).unwrap_or(""),
            policy_revision = revision,
            replayed = p.decided.as_ref().is_some_and(|d| d.replayed),
            reason = %p.response.error,
            "decided"
        ),
    }
    if let (Some(rec), Some(adm)) = (&state.recorder, &p.admitted) {
        let decision = p.decided.as_ref().and_then(|d| d.decision.as_ref());
        // A small file write; failing to record must not change the answer.
        if let Err(e) = rec.record(adm, &p.response, decision, received_ms) {
            warn!("could not record the request as a fixture: {e}");
        }
    }
    if let Some(facts) = p
        .decided
        .as_ref()
        .filter(|d| !d.replayed)
        .and_then(|d| d.input.get("velocity"))
    {
        state
            .metrics
            .record_velocity(facts, p.response.is_approval());
    }
    // Off the answer's path: queued for the shadow thread, never waited for.
    state
        .shadow
        .submit(&p, &state.metrics, state.decision_log.as_ref());
    if let Some(pending) = stored {
        let done = Done {
            response: p.response.clone(),
            signed: None,
            request_type,
            failure: p.failure.clone(),
            codes,
            eval_time,
            logged: state.decision_log.is_some(),
            answer: AnswerKind::of(&p),
        };
        // The answer waits for the store's commit anyway: the line may wait
        // as long, so one fsync of the log covers a group commit's lines.
        // Only with other requests in flight, as the group commit itself
        // (a lone request is never held; its fsyncs run side by side).
        let hold = state
            .store
            .as_deref()
            .filter(|_| state.metrics.in_flight.get() > 1)
            .map(|s| s.batch_window())
            .filter(|w| !w.is_zero())
            .map(|w| Instant::now() + w);
        let log = state
            .decision_log
            .as_ref()
            .map(|log| queue_decision(log, &p, revision, started, hold));
        let revision = revision.to_owned();
        // Only a failed commit reads `p` again, for a line that carries no
        // input (a failure was never judged). The documents are freed here,
        // while this thread's cache still holds them, not after the commit.
        if let Some(d) = p.decided.as_mut() {
            d.input = serde_json::Value::Null;
        }
        if let Some(a) = p.admitted.as_mut() {
            a.request.detail = serde_json::Value::Null;
            a.request.extra = serde_json::Value::Null;
        }
        return Stage::Stored(Box::new(Stored {
            done,
            revision,
            processed: p,
            started,
            pending,
            also,
            log,
        }));
    }
    let pending = state
        .decision_log
        .as_ref()
        .map(|log| queue_decision(log, &p, revision, started, None));
    let answer = AnswerKind::of(&p);
    let mut done = Done {
        response: p.response,
        signed: None,
        request_type,
        failure: p.failure,
        codes,
        eval_time,
        logged: pending.is_some(),
        answer,
    };
    match pending {
        None => {
            done.signed = pipeline::sign(&gate, &done.response).ok();
            Stage::Done(done)
        }
        Some(pending) => Stage::Logging(Box::new(Logging { done, pending })),
    }
}

/// With the event endpoint on, an APPROVE of a task is recorded for the
/// audit of the node's later events; returns the record's pending commit.
/// When it cannot be recorded the answer becomes status 30: an approval
/// the audit cannot check is not given.
fn record_approval(state: &AppState, p: &mut pipeline::Processed) -> Option<crate::store::Pending> {
    if !state.record_approvals {
        return None;
    }
    let rec = crate::events::approval_record(p)?;
    let recorded = match (rec, state.store.as_deref()) {
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

/// Waits (without holding a worker) for the decision's log line, applies
/// `fail_closed`, then signs on the worker pool.
async fn finish_stage(state: &Arc<AppState>, stage: Stage) -> Done {
    let (mut done, written) = match stage {
        Stage::Done(d) => return d,
        Stage::Logging(l) => {
            let Logging { done, pending } = *l;
            let written = match pending {
                Ok(p) => p.done().await,
                Err(e) => Err(e),
            };
            (done, Some(written))
        }
        Stage::Stored(s) => commit_stored(state, *s).await,
    };
    if let Some(written) = written {
        let ok = written.is_ok();
        state
            .metrics
            .decision_log_writes
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
        if !ok && done.response.status.code() == 0 {
            let fail_closed = state
                .decision_log
                .as_ref()
                .is_none_or(|l| l.options().fail_closed);
            if fail_closed {
                error!("decision log write failed: answering status 30 (fail_closed)");
                let f = Failure::DecisionLog;
                done.response = f.answer(&done.response.request_id);
                done.failure = Some(f);
            } else {
                error!("decision log write failed: answering anyway (fail_closed: false)");
            }
        }
    }
    let st = state.clone();
    let response = done.response.clone();
    let sign = move || pipeline::sign(&st.gate.load(), &response).ok();
    // INVARIANT: the pool queue holds `max_queue` jobs and this request still
    // holds its admission permit, so there is room; the side pool is only a
    // second line of defence.
    let rx = match state.pool.try_submit(sign.clone()) {
        Ok(rx) => Some(rx),
        Err(_) => state.side.try_submit(sign).ok(),
    };
    done.signed = match rx {
        Some(rx) => rx.await.ok().flatten(),
        None => None,
    };
    done
}

/// Waits for a spending-limit decision's ledger rows and its decision-log
/// line (the log's fsync beside the store's, or shared by the store's whole
/// group commit under load; see [`DecisionLog::append_by`]). If the
/// rows cannot be committed the answer becomes status 30 (never an APPROVE
/// without its row), and a second log line records that final answer.
async fn commit_stored(
    state: &Arc<AppState>,
    s: Stored,
) -> (Done, Option<Result<(), decision_log::DecisionLogError>>) {
    let Stored {
        mut done,
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
    // Both are already queued and their fsyncs run side by side: at once
    // under slow traffic; under fast traffic the log holds its line until
    // the store's group commit takes its batch (the commit hook), then
    // writes every line it holds with one fsync. Awaited one after the
    // other, the store's first: a log line that is durable by then wakes
    // nobody, so most answers are woken once, not once per writer.
    let committed = both.await;
    // Committed (or failed): nothing else is waited for, so a line the log
    // still holds is written now rather than at its deadline.
    let written = match (log, &state.decision_log) {
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
        done.response = f.answer(&done.response.request_id);
        done.failure = Some(f.clone());
        processed.response = done.response.clone();
        processed.failure = Some(f);
        if let Some(log) = &state.decision_log {
            // The line already written says what the policy decided; this
            // one says what was answered.
            let _ = log.append_nowait(encode_decision(log, &processed, &revision, started));
        }
    }
    (done, written)
}

/// Queues the decision's line; the returned handle resolves once durable.
/// `hold`: it need not be durable before then ([`DecisionLog::append_by`]).
fn queue_decision(
    log: &DecisionLog,
    p: &pipeline::Processed,
    revision: &str,
    started: Instant,
    hold: Option<Instant>,
) -> Result<decision_log::Pending, decision_log::DecisionLogError> {
    let line = encode_decision(log, p, revision, started);
    match hold {
        Some(by) => log.append_by(line, by),
        None => log.append(line),
    }
}

/// The decision-log line of `p`.
fn encode_decision(
    log: &DecisionLog,
    p: &pipeline::Processed,
    revision: &str,
    started: Instant,
) -> Vec<u8> {
    let decision = p.decided.as_ref().and_then(|d| d.decision.as_ref());
    let reasons = match decision {
        Some(d) if p.failure.is_none() => d.reasons.clone(),
        _ if p.response.error.is_empty() => Vec::new(),
        _ => vec![p.response.error.clone()],
    };
    let no_codes = Vec::new();
    let event = decision_log::Event {
        v: decision_log::EVENT_VERSION,
        time: decision_log::timestamp(pipeline::now_ms()),
        request_id: &p.response.request_id,
        request_type: p.request_type.map(|t| t.name()).unwrap_or(TYPE_NONE),
        action: p.response.action.map(|a| a.as_str()),
        status: p.response.status.code(),
        reasons,
        codes: decision.map(|d| d.codes.as_slice()).unwrap_or(&no_codes),
        failure: p.failure.as_ref().map(|f| f.reason()),
        policy_revision: revision,
        key: p.admitted.as_ref().map(|a| a.token.key_name.as_str()),
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        input_schema: None,
        input: None,
        input_digest: None,
    };
    // Failures carry no input: it was never judged.
    let input = match (&p.failure, &p.decided) {
        (None, Some(d)) => Some(&d.input),
        _ => None,
    };
    log.encode(event, input)
}

fn observe(state: &AppState, started: Instant, d: &Done) {
    let m = &state.metrics;
    let action = d.response.action.map(|a| a.as_str()).unwrap_or("NONE");
    m.record_decision(
        d.request_type.unwrap_or(TYPE_NONE),
        action,
        d.response.status.label(),
    );
    if let Some(f) = &d.failure {
        m.record_failure(f.reason());
    } else if !d.response.is_approval() {
        m.record_rejection(&d.codes);
    }
    if let Some(t) = d.eval_time {
        m.eval_duration.observe(t.as_secs_f64());
    }
    m.request_duration.observe(started.elapsed().as_secs_f64());
}

/// Answers a failure that happened outside the normal CPU path (overload,
/// unreadable body, deadline). Signing costs an RSA operation, so it never
/// runs on an async worker: answers without a request id come from the
/// canned cache (signed at most once a second on the side pool), the rare
/// rest are signed on the side pool.
async fn finish(
    state: &Arc<AppState>,
    started: Instant,
    request_type: Option<&'static str>,
    result: Result<(), Failure>,
    request_id: String,
    log: bool,
) -> Response {
    let failure = match result {
        Ok(()) => Failure::Policy("internal error", "policy_error"),
        Err(f) => f,
    };
    let response = failure.answer(&request_id);
    if log && let Some(dl) = &state.decision_log {
        // Never an approval, so nothing waits for this line's fsync.
        let event = decision_log::Event {
            v: decision_log::EVENT_VERSION,
            time: decision_log::timestamp(pipeline::now_ms()),
            request_id: &request_id,
            request_type: request_type.unwrap_or(TYPE_NONE),
            action: response.action.map(|a| a.as_str()),
            status: response.status.code(),
            reasons: vec![response.error.clone()],
            codes: &[],
            failure: Some(failure.reason()),
            policy_revision: &state.policy.load().revision,
            key: None,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            input_schema: None,
            input: None,
            input_digest: None,
        };
        let ok = dl.append_nowait(dl.encode(event, None)).is_ok();
        state
            .metrics
            .decision_log_writes
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
    }
    let signed = sign_off_path(state, &response).await;
    let done = Done {
        response,
        signed: None,
        request_type,
        failure: Some(failure),
        codes: Vec::new(),
        eval_time: None,
        logged: true,
        answer: AnswerKind::Decided,
    };
    observe(state, started, &done);
    match signed {
        Some(t) => signed_response(t, AnswerKind::Decided),
        None => {
            state.metrics.record_failure("signing");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Signs an answer given outside the normal path; see [`finish`].
async fn sign_off_path(state: &Arc<AppState>, response: &CallbackResponse) -> Option<String> {
    // Keyed by the gate too, so a key reload never serves an answer signed
    // with the key it replaced.
    let gate_id = Arc::as_ptr(&state.gate.load()) as usize;
    let canned_key = response
        .request_id
        .is_empty()
        .then(|| format!("{gate_id:x}|{}|{}", response.status.label(), response.error));
    if let Some(key) = &canned_key
        && let Some(token) = state.canned.get(key)
    {
        return Some(token);
    }
    let st = state.clone();
    let resp = response.clone();
    let job = move || {
        let sign = || pipeline::sign(&st.gate.load(), &resp);
        match canned_key {
            Some(key) => st.canned.get_or_sign(&key, sign).ok(),
            None => sign().ok(),
        }
    };
    match state.side.try_submit(job) {
        Ok(rx) => tokio::time::timeout(state.limits.request_deadline, rx)
            .await
            .ok()
            .and_then(Result::ok)
            .flatten(),
        Err(_) => None,
    }
}

fn signed_response(token: String, answer: AnswerKind) -> Response {
    // Bare token as text, like Cobo's Java and Python samples.
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (
                header::HeaderName::from_static(ANSWER_HEADER),
                HeaderValue::from_static(answer.as_str()),
            ),
        ],
        token,
    )
        .into_response()
}

/// Reads the form body within the size and time limits and extracts the token.
async fn read_token(state: &AppState, headers: &HeaderMap, body: Body) -> Result<String, Failure> {
    let bytes = read_body(
        headers,
        body,
        state.limits.max_body_bytes,
        state.limits.body_read_timeout,
    )
    .await?;
    token_from_form(&bytes).ok_or(Failure::Token(crate::token::TokenError::Missing))
}

/// Reads a request body of at most `max` bytes within `timeout`; a declared
/// length over `max` is refused without reading a byte.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    timeout: Duration,
) -> Result<bytes::Bytes, Failure> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        // Refuse without reading a byte of it.
        return Err(Failure::BodyTooLarge(max));
    }
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, max)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(Failure::BodyTooLarge(max)),
        Err(_) => Err(Failure::Deadline),
    }
}

/// Extracts `TSS_JWT_MSG` from an urlencoded form body.
pub fn token_from_form(bytes: &[u8]) -> Option<String> {
    form_urlencoded_pairs(bytes)
        .into_iter()
        .find(|(k, _)| k == FORM_FIELD)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn form_urlencoded_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes).unwrap_or_default()
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains for at
/// most `grace`.
///
/// Draining keeps one promise: every connection the kernel accepted gets
/// its answer, or was never accepted. So on shutdown the listener first
/// stops the kernel from completing new handshakes (a drop-all socket
/// filter: a new client is refused, never reset), then takes every
/// connection already in the accept queue, and only then closes. A
/// connection that has not yet sent its request gets up to the header read
/// timeout to send it and is answered; idle keep-alive connections close.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    grace: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Every connection task holds a sender; `recv` ends once all are gone.
    let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
    let spawn = |stream: tokio::net::TcpStream| {
        let _ = stream.set_nodelay(true);
        tokio::spawn(
            connection(
                builder.clone(),
                stream,
                app.clone(),
                stop_rx.clone(),
                alive_tx.clone(),
                header_read_timeout,
            )
            .instrument(tracing::Span::none()),
        );
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => spawn(stream),
                Err(e) => {
                    // Out of file descriptors and the like: back off
                    // rather than spin.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => break,
        }
    }
    for stream in close_listener(listener) {
        spawn(stream);
    }
    let _ = stop_tx.send(true);
    drop(alive_tx);
    tokio::select! {
        _ = alive_rx.recv() => {}
        _ = tokio::time::sleep(grace) => {
            warn!("shutdown grace period elapsed with connections still open");
        }
    }
    Ok(())
}

/// Stops new handshakes, then returns every connection the kernel had
/// already completed; the listener is closed when this returns.
fn close_listener(listener: TcpListener) -> Vec<tokio::net::TcpStream> {
    // `BPF_RET | BPF_K` with 0: drop every packet. On a listening socket
    // that covers SYNs and the ACKs that would complete a handshake, while
    // connections already in the accept queue stay there.
    const DROP_ALL: socket2::SockFilter = socket2::SockFilter::new(0x06, 0, 0, 0);
    let sock = socket2::SockRef::from(&listener);
    if let Err(e) = sock.attach_filter(&[DROP_ALL]) {
        warn!("cannot stop new connections before draining: {e}");
    }
    let mut taken = Vec::new();
    // The listener is non-blocking: this ends at the first WouldBlock.
    while let Ok((s, _)) = sock.accept() {
        let stream = std::net::TcpStream::from(s);
        if stream.set_nonblocking(true).is_ok()
            && let Ok(t) = tokio::net::TcpStream::from_std(stream)
        {
            taken.push(t);
        }
    }
    if !taken.is_empty() {
        info!(
            connections = taken.len(),
            "accepted queued connections while draining"
        );
    }
    taken
}

/// Serves one connection; on shutdown lets it finish (see [`serve`]).
async fn connection(
    builder: hyper::server::conn::http1::Builder,
    stream: tokio::net::TcpStream,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
    _alive: tokio::sync::mpsc::Sender<()>,
    header_read_timeout: Duration,
) {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    // A permit once any request has arrived on this connection.
    let requested = Arc::new(tokio::sync::Notify::new());
    let svc = {
        let requested = requested.clone();
        let inner = TowerToHyperService::new(app);
        hyper::service::service_fn(move |req| {
            requested.notify_one();
            hyper::service::Service::call(&inner, req)
        })
    };
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|s| *s) => {}
    }
    // hyper would close a connection whose request has not arrived yet as
    // idle; one the kernel accepted is owed an answer, so wait for it.
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = requested.notified() => {}
        _ = tokio::time::sleep(header_read_timeout) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
