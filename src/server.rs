//! The HTTP layer: `POST /v2/check`, `GET /ping`, `GET /metrics`. It is handed
//! its state (keys, policy handle, metrics) and never builds them; it owns
//! admission (bounded queue, CPU slots), deadlines, and turning every outcome
//! into a signed answer.
//!
//! CPU work (RSA verify, Rego, RSA sign) runs on the blocking pool, at most one
//! job per core at a time, so a saturated `/v2/check` cannot stall `/ping` or
//! `/metrics` on the async workers.

use std::net::SocketAddr;
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{Instrument, Span, error, info, info_span, warn};

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
    /// Requests admitted (queued or working); beyond it: "overloaded".
    admission: Arc<Semaphore>,
    /// One CPU job per core at a time.
    cpu: Arc<Semaphore>,
    /// Whether `/metrics` is served on the main router.
    pub metrics_on_main: bool,
    /// Writes each verified request as a fixture (`record_dir`); off when None.
    pub recorder: Option<crate::record::Recorder>,
    /// The audit trail; when set, no answer leaves before its line is durable.
    pub decision_log: Option<Arc<DecisionLog>>,
    /// Answers already given, so a retried request gets the same one.
    pub retry: crate::retry::RetryCache,
}

impl AppState {
    pub fn new(gate: Gate, policy: PolicySet, metrics: Arc<Metrics>, limits: Limits) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        metrics.policy_loaded(&policy.revision);
        Self {
            admission: Arc::new(Semaphore::new(limits.max_queue)),
            cpu: Arc::new(Semaphore::new(cores)),
            gate: ArcSwap::from_pointee(gate),
            policy: ArcSwap::from_pointee(policy),
            metrics,
            limits,
            metrics_on_main: true,
            recorder: None,
            decision_log: None,
            retry: crate::retry::RetryCache::default(),
        }
    }
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

    let work = {
        let state = state.clone();
        async move {
            let slot = state.cpu.clone().acquire_owned().await.ok();
            let st = state.clone();
            let span = Span::current();
            tokio::task::spawn_blocking(move || {
                let _e = span.enter();
                decide_and_sign(&st, &token, received_ms, started, slot, &span)
            })
            .await
        }
    };
    let mut out = match tokio::time::timeout(state.limits.request_deadline, work).await {
        Ok(Ok(done)) => done,
        Ok(Err(_join)) => Done::failed(Failure::Policy("internal error", "policy_error")),
        Err(_) => Done::failed(Failure::Deadline),
    };
    drop(permit);
    match out.signed.take() {
        Some(token) => {
            observe(&state, started, &out);
            signed_response(token)
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
        }
    }
}

fn decide_and_sign(
    state: &AppState,
    token: &str,
    received_ms: i64,
    started: Instant,
    mut slot: Option<OwnedSemaphorePermit>,
    span: &Span,
) -> Done {
    let gate = state.gate.load();
    let policy = state.policy.load();
    // admit → retry-cache lookup → decide → cache store (see crate::retry).
    let mut p = crate::retry::process(
        &state.retry,
        &state.metrics,
        &gate,
        &policy,
        token,
        received_ms,
    );
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
            policy_revision = p.decided.as_ref().map(|d| d.revision.as_str()).unwrap_or(&policy.revision),
            replayed = p.decided.as_ref().is_some_and(|d| d.replayed),
            reason = %p.response.error,
            "decided"
        ),
    }
    let logged = match &state.decision_log {
        Some(log) => {
            // The CPU slot is not held while waiting for the fsync, so other
            // requests keep the cores busy and share that fsync.
            drop(slot.take());
            let written = write_decision(log, &p, &policy.revision, started);
            let ok = written.is_ok();
            state
                .metrics
                .decision_log_writes
                .with_label_values(&[if ok { "success" } else { "failure" }])
                .inc();
            if !ok && p.response.status.code() == 0 {
                if log.options().fail_closed {
                    error!("decision log write failed: answering status 30 (fail_closed)");
                    let f = Failure::DecisionLog;
                    p.response = f.answer(&p.response.request_id);
                    p.failure = Some(f);
                } else {
                    error!("decision log write failed: answering anyway (fail_closed: false)");
                }
            }
            true
        }
        None => false,
    };
    // Signing holds a CPU slot like the rest of the work.
    let _slot = if logged {
        reacquire_cpu(state)
    } else {
        slot.take()
    };
    if let (Some(rec), Some(adm)) = (&state.recorder, &p.admitted) {
        let decision = p.decided.as_ref().and_then(|d| d.decision.as_ref());
        // A small file write; failing to record must not change the answer.
        if let Err(e) = rec.record(adm, &p.response, decision, received_ms) {
            warn!("could not record the request as a fixture: {e}");
        }
    }
    let signed = pipeline::sign(&gate, &p.response).ok();
    Done {
        response: p.response,
        signed,
        request_type,
        failure: p.failure,
        codes,
        eval_time,
        logged,
    }
}

/// Takes a CPU slot again from a blocking-pool thread.
fn reacquire_cpu(state: &AppState) -> Option<OwnedSemaphorePermit> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    handle.block_on(state.cpu.clone().acquire_owned()).ok()
}

/// Writes the decision's line and waits until it is durable.
fn write_decision(
    log: &DecisionLog,
    p: &pipeline::Processed,
    revision: &str,
    started: Instant,
) -> Result<(), decision_log::DecisionLogError> {
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
        input: None,
        input_digest: None,
    };
    // Failures carry no input: it was never judged.
    let input = match (&p.failure, &p.decided) {
        (None, Some(d)) => Some(&d.input),
        _ => None,
    };
    log.append(log.encode(event, input))?.wait()
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
/// unreadable body, deadline). Signing still costs an RSA operation, so it
/// runs on the blocking pool, never on an async worker.
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
    let gate = state.gate.load_full();
    let resp2 = response.clone();
    let signed = tokio::task::spawn_blocking(move || pipeline::sign(&gate, &resp2).ok())
        .await
        .ok()
        .flatten();
    let done = Done {
        response,
        signed: None,
        request_type,
        failure: Some(failure),
        codes: Vec::new(),
        eval_time: None,
        logged: true,
    };
    observe(state, started, &done);
    match signed {
        Some(t) => signed_response(t),
        None => {
            state.metrics.record_failure("signing");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn signed_response(token: String) -> Response {
    // Bare token as text, like Cobo's Java and Python samples.
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        token,
    )
        .into_response()
}

/// Reads the form body within the size and time limits and extracts the token.
async fn read_token(state: &AppState, headers: &HeaderMap, body: Body) -> Result<String, Failure> {
    let max = state.limits.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        // Refuse without reading a byte of it.
        return Err(Failure::BodyTooLarge(max));
    }
    let bytes = match tokio::time::timeout(
        state.limits.body_read_timeout,
        axum::body::to_bytes(body, max),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return Err(Failure::BodyTooLarge(max)),
        Err(_) => return Err(Failure::Deadline),
    };
    token_from_form(&bytes).ok_or(Failure::Token(crate::token::TokenError::Missing))
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

/// Serves `app` on `listener` until `shutdown` resolves, then drains in-flight
/// connections for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    grace: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let _ = TokioExecutor::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer): (tokio::net::TcpStream, SocketAddr) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of file descriptors and the like: back off
                        // rather than spin.
                        warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let svc = TowerToHyperService::new(app.clone());
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                }.instrument(tracing::Span::none()));
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => {
            warn!("shutdown grace period elapsed with connections still open");
        }
    }
    Ok(())
}
