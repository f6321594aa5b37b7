//! The event endpoint (`POST /v2/event` on its own listener) and what an
//! accepted event does: it moves the approval of its request (a `failed`
//! task releases its spending-limit hold, a `succeeded` one keeps it for
//! the whole window), and a `succeeded` task is audited against what
//! tss-gate approved.
//!
//! Only an event about the approved attempt moves an approval: one of
//! another kind or carrying another request under the same id
//! ([`super::binding`]), and a `declined` under an id tss-gate approved,
//! leave it as it is and raise an `event_alarm` instead ([`not_about`]).
//!
//! Order of effects, chosen so a crash or a retried delivery never loses
//! one: the state change (idempotent) and the decision-log lines (release,
//! alarm) are durable first; the event row last, as the marker that the
//! event was handled. A redelivery of an event whose row exists is answered
//! 200 at once (the node's at-least-once delivery); one whose handling
//! crashed before its row is handled again, and its alarm line may then be
//! written twice but is never lost. Counters move only for the delivery
//! that stored the row, so an alarm is counted once.
//!
//! Answers follow Cobo's event-server sample: 200 with body `""` when
//! accepted (a duplicate too), 400 with body `""` when the token or the
//! payload is bad. When the store cannot take the event the answer is 503,
//! so the node delivers it again later rather than believing it recorded.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tracing::{error, info, warn};

use super::audit::{self, ApprovedSign};
use super::metrics::{self as em, EventMetrics};
use super::model::{self, Event, EventType, Kind, Phase};
use crate::decision_log::{self, DecisionLog};
use crate::store::{Approval, Store, StoreError, StoredEvent, TaskState};
use crate::token::Verifier;

/// Everything the event handler needs.
pub struct EventService {
    pub verifier: Verifier,
    pub store: Arc<dyn Store>,
    pub metrics: EventMetrics,
    pub log: Option<Arc<DecisionLog>>,
    pub max_body_bytes: usize,
    pub body_read_timeout: Duration,
    pub service_name: String,
    /// An approval with no terminal event after this long is stalled.
    pub stalled_after_ms: i64,
    /// Outcomes that release a hold (`event_server.release_on`).
    pub release_on: Vec<String>,
    /// Events being handled at once; beyond it the answer is 503 (the node
    /// delivers again), so a flood cannot pile up blocking threads.
    pub admission: tokio::sync::Semaphore,
}

/// Default bound of [`EventService::admission`].
pub const MAX_CONCURRENT_EVENTS: usize = 64;

/// The event listener's router.
pub fn router(svc: Arc<EventService>, path: &str) -> Router {
    Router::new()
        .route(path, post(receive))
        .route("/ping", get(ping))
        .with_state(svc)
}

async fn ping(State(svc): State<Arc<EventService>>) -> Response {
    axum::Json(json!({
        "server": svc.service_name,
        "timestamp": crate::clock::now_ms(),
    }))
    .into_response()
}

/// How an event was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    Duplicate,
    BadToken,
    BadPayload,
    Unavailable,
}

impl Answer {
    fn status(self) -> StatusCode {
        match self {
            Answer::Accepted | Answer::Duplicate => StatusCode::OK,
            Answer::BadToken | Answer::BadPayload => StatusCode::BAD_REQUEST,
            Answer::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Answer::Accepted => "accepted",
            Answer::Duplicate => "duplicate",
            Answer::BadToken => "bad_token",
            Answer::BadPayload => "bad_payload",
            Answer::Unavailable => "store_error",
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        (
            self.status(),
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            "\"\"",
        )
            .into_response()
    }
}

async fn receive(State(svc): State<Arc<EventService>>, headers: HeaderMap, body: Body) -> Response {
    let received_ms = crate::clock::now_ms();
    let Ok(_permit) = svc.admission.try_acquire() else {
        return count(&svc, "unknown", Answer::Unavailable).into_response();
    };
    let Ok(bytes) =
        crate::http::read_body(&headers, body, svc.max_body_bytes, svc.body_read_timeout).await
    else {
        return count(&svc, "unknown", Answer::BadPayload).into_response();
    };
    let Some(token) = crate::http::token_from_form(&bytes) else {
        warn!("event refused: no TSS_JWT_MSG form field");
        return count(&svc, "unknown", Answer::BadToken).into_response();
    };
    let s = svc.clone();
    // Verifying (RSA) and the store's fsyncs block: off the async workers.
    match tokio::task::spawn_blocking(move || handle(&s, &token, received_ms)).await {
        Ok(a) => a.into_response(),
        Err(_) => count(&svc, "unknown", Answer::Unavailable).into_response(),
    }
}

fn count(svc: &EventService, event_type: &str, a: Answer) -> Answer {
    svc.metrics
        .events
        .with_label_values(&[event_type, a.label()])
        .inc();
    a
}

/// Verifies, parses and applies one event token.
pub fn handle(svc: &EventService, token: &str, received_ms: i64) -> Answer {
    let verified = match svc.verifier.verify(token) {
        Ok(v) => v,
        Err(e) => {
            warn!(reason = e.reason(), "event refused: {e}");
            return count(svc, "unknown", Answer::BadToken);
        }
    };
    let raw = match crate::input::decode_package(&verified.package_data) {
        Ok(r) => r,
        Err(e) => {
            warn!(key = %verified.key_name, "event refused: {e}");
            return count(svc, "unknown", Answer::BadPayload);
        }
    };
    let ev = match model::parse(&raw) {
        Ok(ev) => ev,
        Err(e) => {
            warn!(key = %verified.key_name, "event refused: {e}");
            return count(svc, "unknown", Answer::BadPayload);
        }
    };
    let label = ev.event_type.label();
    match apply(svc, &ev, &verified.key_name, received_ms) {
        Ok(true) => {
            info!(
                event_id = %ev.event_id,
                event_type = label,
                request_id = ev.request_id.as_deref().unwrap_or(""),
                key = %verified.key_name,
                "event accepted"
            );
            count(svc, label, Answer::Accepted)
        }
        Ok(false) => count(svc, label, Answer::Duplicate),
        Err(e) => {
            error!(event_id = %ev.event_id, "event not stored, answering 503: {e}");
            count(svc, label, Answer::Unavailable)
        }
    }
}

/// The state an event moves its task's approval to, if any. The node's
/// terminal word: `succeeded` (or status 190 completed) executed it;
/// `failed` (or status 160 declined, 170 failed, 180 canceled) did not.
pub fn target_state(phase: Phase, status: Option<i64>) -> Option<TaskState> {
    match (phase, status) {
        (Phase::Succeeded, _) => Some(TaskState::Executed),
        (Phase::Failed, _) => Some(TaskState::Released),
        (_, Some(190)) => Some(TaskState::Executed),
        (_, Some(160 | 170 | 180)) => Some(TaskState::Released),
        _ => None,
    }
}

/// Outcome label of a terminal event.
fn outcome(phase: Phase, status: Option<i64>) -> Option<&'static str> {
    match (phase, status) {
        (_, Some(160)) => Some("declined"),
        (_, Some(180)) => Some("canceled"),
        (Phase::Failed, _) | (_, Some(170)) => Some("failed"),
        (Phase::Succeeded, _) | (_, Some(190)) => Some("succeeded"),
        _ => None,
    }
}

/// One alarm of the audit, with the request type it concerns.
struct Raised {
    code: &'static str,
    index: Option<usize>,
    detail: String,
}

/// What a `succeeded` task is checked against. KEYSIGN: every signature
/// against the approved hashes, paths and key. Other kinds: that tss-gate
/// approved a task of that kind under that id.
fn audit_task(kind: Kind, approval: Option<&Approval>, ev: &Event) -> Vec<Raised> {
    let want = kind.request_type_name();
    let Some(a) = approval else {
        return vec![Raised {
            code: "request_not_approved",
            index: None,
            detail: format!("the node completed a {want} tss-gate has no approval of"),
        }];
    };
    if a.record.request_type != want {
        return vec![Raised {
            code: "request_type_mismatch",
            index: None,
            detail: format!(
                "the node completed a {want}, but tss-gate approved a {} under this request id",
                a.record.request_type
            ),
        }];
    }
    if kind != Kind::KeySign {
        return Vec::new();
    }
    let approved: ApprovedSign = match serde_json::from_str(&a.record.facts) {
        Ok(s) => s,
        Err(e) => {
            return vec![Raised {
                code: "unauditable",
                index: None,
                detail: format!("the approval's record cannot be read: {e}"),
            }];
        }
    };
    let report = audit::audit(&approved, ev.result().unwrap_or(&Value::Null));
    report
        .alarms
        .into_iter()
        .map(|al| Raised {
            code: al.code,
            index: al.index,
            detail: al.detail,
        })
        .collect()
}

/// The alarm code of a `declined` reported under an approved request id.
pub const DECLINED_AFTER_APPROVAL: &str = "declined_after_approval";

/// Whether a task the node reports as not executed was declined: status
/// 160, or a failure whose reason is classed `declined` (another approver
/// said no).
fn declined(ev: &Event) -> bool {
    model::failed_reason_code(ev) == "declined"
}

/// Why an event that would move approval `a` to `to` must leave it as it
/// is; empty when it may move it (as far as `release_on` allows).
///
/// - The event is not about the approved attempt (another kind, another
///   request under the same id): see [`super::binding`].
/// - A `declined` under an id tss-gate approved: tss-gate said yes, so the
///   "no" came from another approver, and possibly about another attempt
///   (a re-send under the same id that tss-gate refused, while the approved
///   one executed). It is never evidence that the approved task did not
///   run, so it frees nothing; an operator who checked the chain releases
///   the hold with `tss-gate ledger void`.
fn not_about(kind: Kind, a: &Approval, ev: &Event, to: TaskState) -> Vec<Raised> {
    let m = super::binding::mismatches(kind, &a.record, ev);
    if !m.is_empty() {
        return m
            .into_iter()
            .map(|m| Raised {
                code: m.code,
                index: None,
                detail: m.detail,
            })
            .collect();
    }
    if to == TaskState::Released && declined(ev) {
        return vec![Raised {
            code: DECLINED_AFTER_APPROVAL,
            index: None,
            detail: "declined under a request id tss-gate approved: the approval stands".into(),
        }];
    }
    Vec::new()
}

/// Applies a verified and parsed event (what [`handle`] does after the
/// token and the payload); Ok(true) when it was new, Ok(false) when its row
/// was already stored. Metrics move only for a new event.
pub fn apply(
    svc: &EventService,
    ev: &Event,
    key: &str,
    received_ms: i64,
) -> Result<bool, StoreError> {
    // Handled whole already: applying it again could move an approval
    // recorded since under the same id, which the event is not about.
    if svc.store.event_stored(&ev.event_id)? {
        return Ok(false);
    }
    let mut lines: Vec<Value> = Vec::new();
    let mut alarms: Vec<Raised> = Vec::new();
    let mut completed: Option<f64> = None;
    let mut request_type = "";
    let mut terminal = None;
    let mut kept: Vec<Raised> = Vec::new();
    let base = |kind: &str| {
        json!({
            "v": decision_log::EVENT_VERSION,
            "event": kind,
            "time": decision_log::timestamp(received_ms),
            "event_id": ev.event_id,
            "event_type": ev.raw_type,
            "node_id": ev.node_id,
            "key": key,
            "request_id": ev.request_id.as_deref().unwrap_or(""),
        })
    };
    if let (EventType::Request(kind, phase), Some(rid)) = (&ev.event_type, &ev.request_id) {
        request_type = kind.request_type_name();
        terminal = outcome(*phase, ev.status);
        let target = target_state(*phase, ev.status);
        let approval = if target.is_some() {
            svc.store.approval(rid)?
        } else {
            None
        };
        // The record of an approval never changes once written (the first
        // record of an id wins), so what it is checked against here is what
        // the transition below moves.
        if let (Some(to), Some(a)) = (target, &approval) {
            kept = not_about(*kind, a, ev, to);
            let listed = to != TaskState::Released
                || terminal.is_some_and(|o| svc.release_on.iter().any(|r| r == o));
            if kept.is_empty() && listed {
                let reason = format!("event {} {}", ev.event_id, ev.event_type.label());
                let t = svc.store.transition(rid, to, received_ms, &reason)?;
                if let (Some(before), Some(after)) = (t.before, t.after) {
                    if before != after {
                        let kind_line = match (before, after) {
                            (_, TaskState::Released) => "task_released",
                            (TaskState::Released, TaskState::Executed) => "task_reheld",
                            _ => "task_executed",
                        };
                        let mut line = base(kind_line);
                        line["request_type"] = json!(request_type);
                        line["before"] = json!(before.as_str());
                        line["after"] = json!(after.as_str());
                        line["ledger_rows"] = json!(t.rows);
                        line["reason"] = json!(reason);
                        if let Some(r) = &ev.failed_reason {
                            line["failed_reason"] = json!(crate::policy::one_line(r));
                        }
                        lines.push(line);
                    } else if before == TaskState::Executed && to == TaskState::Released {
                        warn!(
                            request_id = %rid,
                            event_id = %ev.event_id,
                            "a failure reported for a task that already executed: its hold stays"
                        );
                    }
                    if before == TaskState::Approved && after == TaskState::Executed {
                        completed = Some((received_ms - a.record.at_ms).max(0) as f64 / 1000.0);
                    }
                }
            }
            if !kept.is_empty() {
                let codes: Vec<&str> = kept.iter().map(|k| k.code).collect();
                if kept.iter().any(|k| k.code != DECLINED_AFTER_APPROVAL) {
                    error!(
                        event_id = %ev.event_id,
                        request_id = %rid,
                        request_type,
                        approved_type = %a.record.request_type,
                        ?codes,
                        "ALARM: the node reports on another task under a request id tss-gate approved: the approval is left as it was"
                    );
                } else {
                    warn!(
                        event_id = %ev.event_id,
                        request_id = %rid,
                        "ALARM: a task was declined under a request id tss-gate approved: the approval stands and its hold is kept"
                    );
                }
                let mut line = base("event_alarm");
                line["request_type"] = json!(request_type);
                line["approved_type"] = json!(a.record.request_type);
                line["state"] = json!(a.state.as_str());
                line["alarms"] = kept
                    .iter()
                    .map(|k| json!({"code": k.code, "detail": k.detail}))
                    .collect();
                lines.push(line);
            }
        }
        if *phase == Phase::Succeeded {
            alarms = audit_task(*kind, approval.as_ref(), ev);
        }
    }
    if !alarms.is_empty() {
        error!(
            event_id = %ev.event_id,
            request_id = ev.request_id.as_deref().unwrap_or(""),
            request_type,
            codes = ?alarms.iter().map(|a| a.code).collect::<Vec<_>>(),
            "ALARM: the node reports a signature or task tss-gate did not approve"
        );
        let mut line = base("unapproved_signature");
        line["request_type"] = json!(request_type);
        line["alarms"] = alarms
            .iter()
            .map(|a| json!({"code": a.code, "index": a.index, "detail": a.detail}))
            .collect();
        lines.push(line);
    }
    write_lines(svc, &lines)?;
    let new = svc.store.put_event(&StoredEvent {
        event_id: ev.event_id.clone(),
        received_at_ms: received_ms,
        node_id: ev.node_id.clone(),
        event_type: ev.raw_type.clone(),
        request_id: ev.request_id.clone().unwrap_or_default(),
        body: ev.doc.to_string(),
    })?;
    if new {
        let m = &svc.metrics;
        let rt = em::bounded(request_type, &em::REQUEST_TYPES);
        for a in &alarms {
            m.unapproved
                .with_label_values(&[rt, em::bounded(a.code, &em::ALARM_CODES)])
                .inc();
        }
        for k in &kept {
            m.event_alarms
                .with_label_values(&[rt, em::bounded(k.code, &em::EVENT_ALARM_CODES)])
                .inc();
        }
        if let Some(o) = terminal {
            m.outcomes.with_label_values(&[rt, o]).inc();
            if o != "succeeded" {
                m.failed_reasons
                    .with_label_values(&[rt, model::failed_reason_code(ev)])
                    .inc();
            }
        }
        if let Some(secs) = completed {
            m.completion.with_label_values(&[rt]).observe(secs);
        }
    }
    Ok(new)
}

/// Writes the event's decision-log lines and waits until they are durable:
/// a release or an alarm must be on record before the event counts as
/// handled.
fn write_lines(svc: &EventService, lines: &[Value]) -> Result<(), StoreError> {
    let Some(log) = &svc.log else {
        return Ok(());
    };
    for line in lines {
        let mut bytes = serde_json::to_vec(line).unwrap_or_default();
        bytes.push(b'\n');
        log.append(bytes)
            .and_then(|p| p.wait())
            .map_err(|e| StoreError::Io(format!("decision log: {e}")))?;
    }
    Ok(())
}

/// Counts approvals still waiting for their terminal event past
/// `stalled_after_ms` (the newest `SCAN` approvals of the retention window).
pub fn refresh_stalled(svc: &EventService, now_ms: i64) {
    const SCAN: usize = 10_000;
    let since = now_ms - crate::store::RETENTION_MS;
    match svc.store.approvals(since, SCAN) {
        Ok(list) => {
            let n = list
                .iter()
                .filter(|a| {
                    a.state == TaskState::Approved && a.record.at_ms < now_ms - svc.stalled_after_ms
                })
                .count();
            svc.metrics.stalled.set(n as i64);
        }
        Err(e) => warn!("cannot count stalled tasks: {e}"),
    }
}

/// Binds the event listener and serves it until `shutdown` resolves, with
/// the stalled-task gauge refreshed every 30 s meanwhile. Returns the bound
/// address once listening.
pub async fn start(
    svc: Arc<EventService>,
    endpoint: std::net::SocketAddr,
    path: &str,
    header_read_timeout: Duration,
    grace: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(endpoint).await?;
    let addr = listener.local_addr()?;
    let app = router(svc.clone(), path);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = crate::http::serve(listener, app, header_read_timeout, grace, async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop_rx.changed() => break,
            }
            let s = svc.clone();
            let _ =
                tokio::task::spawn_blocking(move || refresh_stalled(&s, crate::clock::now_ms()))
                    .await;
        }
    });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_final_words_move_a_task_and_each_has_one_outcome() {
        use Phase::*;
        type Case = (Phase, Option<i64>, Option<TaskState>, Option<&'static str>);
        let cases: [Case; 9] = [
            (
                Succeeded,
                Some(190),
                Some(TaskState::Executed),
                Some("succeeded"),
            ),
            (
                Succeeded,
                None,
                Some(TaskState::Executed),
                Some("succeeded"),
            ),
            (Failed, Some(170), Some(TaskState::Released), Some("failed")),
            (
                Failed,
                Some(160),
                Some(TaskState::Released),
                Some("declined"),
            ),
            (
                Failed,
                Some(180),
                Some(TaskState::Released),
                Some("canceled"),
            ),
            (
                Updated,
                Some(180),
                Some(TaskState::Released),
                Some("canceled"),
            ),
            (
                Updated,
                Some(190),
                Some(TaskState::Executed),
                Some("succeeded"),
            ),
            (Updated, Some(140), None, None),
            (Created, Some(110), None, None),
        ];
        for (phase, status, state, label) in cases {
            assert_eq!(target_state(phase, status), state, "{phase:?} {status:?}");
            assert_eq!(outcome(phase, status), label, "{phase:?} {status:?}");
        }
    }

    #[test]
    fn every_alarm_code_that_keeps_an_approval_is_a_metric_label() {
        for c in super::super::binding::MISMATCH_CODES
            .iter()
            .chain([&DECLINED_AFTER_APPROVAL])
        {
            assert!(em::EVENT_ALARM_CODES.contains(c), "{c}");
        }
        assert_eq!(
            em::EVENT_ALARM_CODES.len(),
            super::super::binding::MISMATCH_CODES.len() + 1
        );
    }

    #[test]
    fn answers_are_the_samples_status_and_an_empty_json_string() {
        for (a, code) in [
            (Answer::Accepted, 200),
            (Answer::Duplicate, 200),
            (Answer::BadToken, 400),
            (Answer::BadPayload, 400),
            (Answer::Unavailable, 503),
        ] {
            assert_eq!(a.status().as_u16(), code);
        }
    }
}
