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

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{Instrument, Span, info, info_span, warn};

use crate::workers::{Canned, CpuPool};

use crate::decide::{Answer, AnswerKind, Decider, Deciding, Failure, effects};
use crate::metrics::Metrics;
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

/// Everything a handler may touch: the decider and the transport's own
/// admission, worker pools and limits.
pub struct AppState {
    pub decider: Arc<Decider>,
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
}

impl AppState {
    /// Fails only if the worker threads cannot be started.
    pub fn new(decider: Arc<Decider>, limits: Limits) -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let metrics = decider.metrics.clone();
        {
            let policy = decider.live.policy.load();
            metrics.policy_loaded(&policy.revision);
            metrics.velocity_limits_loaded(&policy.velocity);
        }
        // INVARIANT: the pool's queue holds at least `max_queue` jobs, so an
        // admitted request always finds room; `Full` is a second line of defence.
        let pool = CpuPool::new("tss-cpu", cores, limits.max_queue, true)?;
        let side = CpuPool::new("tss-side", 1, SIDE_QUEUE, false)?;
        Ok(Self {
            admission: Arc::new(Semaphore::new(limits.max_queue)),
            pool,
            side,
            canned: Canned::new(CANNED_MAX_AGE),
            decider,
            metrics,
            limits,
            metrics_on_main: true,
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
        "server": state.decider.live.gate.load().service_name,
        "timestamp": crate::clock::now_ms(),
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
    let received_ms = crate::clock::now_ms();
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
    let deciding = Deciding::new(&state.decider.deciding);
    let work = async {
        let rx = state
            .pool
            .try_submit(move || {
                let _e = span.enter();
                let stage = st.decider.decide(&token, received_ms, started, &span);
                drop(deciding);
                // Nothing to wait for: signed in this job, not a second one.
                let signed = stage.ready().map(|a| st.decider.sign(&a.response).ok());
                (stage, signed)
            })
            .map_err(|_| Failure::Overloaded)?;
        let (stage, signed) = rx.await.map_err(|_| Failure::Internal)?;
        let answer = state.decider.settle(stage).await;
        let signed = match signed {
            Some(s) => s,
            None => sign_on_pool(&state, &answer).await,
        };
        Ok::<(Answer, Option<String>), Failure>((answer, signed))
    };
    // On timeout the receiver is dropped, so a job still waiting in the
    // queue is skipped instead of signing an answer nobody reads.
    let (out, signed) = match tokio::time::timeout(state.limits.request_deadline, work).await {
        Ok(Ok(done)) => done,
        Ok(Err(f)) => (Answer::failed(f, ""), None),
        Err(_) => (Answer::failed(Failure::Deadline, ""), None),
    };
    drop(permit);
    match signed {
        Some(token) => {
            effects::count_answer(&state.metrics, started, &out);
            signed_response(token, out.kind)
        }
        None => {
            let id = out.response.request_id.clone();
            let failure = out.failure.clone().unwrap_or(Failure::Internal);
            let log = !out.logged;
            finish(&state, started, out.request_type, Err(failure), id, log).await
        }
    }
}

/// Unsigned response header telling a person at `tss-gate send` whether
/// the answer was decided now or repeated from the retry record of an
/// earlier identical request (so a policy they just changed did not run).
/// Informational only: the node reads the signed body, and the header says
/// nothing the sender does not already know.
pub const ANSWER_HEADER: &str = "x-tss-gate-answer";

/// Signs a settled answer on the worker pool.
async fn sign_on_pool(state: &Arc<AppState>, answer: &Answer) -> Option<String> {
    let st = state.clone();
    let response = answer.response.clone();
    let sign = move || st.decider.sign(&response).ok();
    // INVARIANT: the pool queue holds `max_queue` jobs and this request still
    // holds its admission permit, so there is room; the side pool is only a
    // second line of defence.
    let rx = match state.pool.try_submit(sign.clone()) {
        Ok(rx) => Some(rx),
        Err(_) => state.side.try_submit(sign).ok(),
    };
    match rx {
        Some(rx) => rx.await.ok().flatten(),
        None => None,
    }
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
        Ok(()) => Failure::Internal,
        Err(f) => f,
    };
    let response = failure.answer(&request_id);
    if log {
        state
            .decider
            .log_failure(&response, request_type, &failure, started);
    }
    let signed = sign_off_path(state, &response).await;
    let mut done = Answer::failed(failure, "");
    done.response = response;
    done.request_type = request_type;
    effects::count_answer(&state.metrics, started, &done);
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
    let gate_id = Arc::as_ptr(&state.decider.live.gate.load()) as usize;
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
        let sign = || st.decider.sign(&resp);
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
