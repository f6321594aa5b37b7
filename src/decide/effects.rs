//! What follows a decision besides its answer: its decision-log line (the
//! one place a [`decision_log::Event`] is built), the approval record the
//! node's events are audited against, the request written as a fixture,
//! the spending-limit and answer metrics, and the shadow evaluation.

use std::sync::Arc;
use std::time::Instant;

use super::answer::Answer;
use super::record::Recorder;
use super::shadow::Shadow;
use super::steps::{Failure, Processed};
use crate::decision_log::{self, DecisionLog};
use crate::metrics::{Metrics, TYPE_NONE};
use crate::protocol::{CallbackResponse, RequestType};
use crate::store::ApprovalRecord;

/// The decision-log line of `p`.
pub fn decision_line(
    log: &DecisionLog,
    p: &Processed,
    revision: &str,
    started: Instant,
) -> Vec<u8> {
    let decision = p.decided.as_ref().and_then(|d| d.decision.as_ref());
    let reasons = match decision {
        Some(d) if p.failure.is_none() => d.reasons.clone(),
        _ => error_reasons(&p.response),
    };
    let event = event(
        &p.response,
        p.request_type.map(|t| t.name()),
        reasons,
        decision.map(|d| d.codes.as_slice()).unwrap_or(&[]),
        p.failure.as_ref(),
        revision,
        p.admitted.as_ref().map(|a| a.token.key_name.as_str()),
        started,
    );
    // Failures carry no input: it was never judged.
    let input = match (&p.failure, &p.decided) {
        (None, Some(d)) => Some(&d.input),
        _ => None,
    };
    log.encode(event, input)
}

/// The line of an answer given outside the decision (overload, an
/// unreadable body, the deadline): no request was judged.
pub fn failure_line(
    log: &DecisionLog,
    response: &CallbackResponse,
    request_type: Option<&'static str>,
    failure: &Failure,
    revision: &str,
    started: Instant,
) -> Vec<u8> {
    let reasons = error_reasons(response);
    let e = event(
        response,
        request_type,
        reasons,
        &[],
        Some(failure),
        revision,
        None,
        started,
    );
    log.encode(e, None)
}

fn error_reasons(response: &CallbackResponse) -> Vec<String> {
    if response.error.is_empty() {
        Vec::new()
    } else {
        vec![response.error.clone()]
    }
}

#[allow(clippy::too_many_arguments)]
fn event<'a>(
    response: &'a CallbackResponse,
    request_type: Option<&'static str>,
    reasons: Vec<String>,
    codes: &'a [String],
    failure: Option<&Failure>,
    revision: &'a str,
    key: Option<&'a str>,
    started: Instant,
) -> decision_log::Event<'a> {
    decision_log::Event {
        v: decision_log::EVENT_VERSION,
        time: decision_log::timestamp(crate::clock::now_ms()),
        request_id: &response.request_id,
        request_type: request_type.unwrap_or(TYPE_NONE),
        action: response.action.map(|a| a.as_str()),
        status: response.status.code(),
        reasons,
        codes,
        failure: failure.map(|f| f.reason()),
        policy_revision: revision,
        key,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        input_schema: None,
        input: None,
        input_digest: None,
    }
}

/// Queues the decision's line; the returned handle resolves once durable.
/// `hold`: it need not be durable before then ([`DecisionLog::append_by`]).
pub fn queue_line(
    log: &DecisionLog,
    p: &Processed,
    revision: &str,
    started: Instant,
    hold: Option<Instant>,
) -> Result<decision_log::Pending, decision_log::DecisionLogError> {
    let line = decision_line(log, p, revision, started);
    match hold {
        Some(by) => log.append_by(line, by),
        None => log.append(line),
    }
}

/// The effects that never change the answer: the fixture recording, the
/// spending-limit metrics and the shadow evaluation (queued, never waited
/// for).
pub fn observe_decided(
    p: &Processed,
    received_ms: i64,
    metrics: &Arc<Metrics>,
    recorder: Option<&Recorder>,
    shadow: &Shadow,
    log: Option<&Arc<DecisionLog>>,
) {
    if let (Some(rec), Some(adm)) = (recorder, &p.admitted) {
        let decision = p.decided.as_ref().and_then(|d| d.decision.as_ref());
        // A small file write; failing to record must not change the answer.
        if let Err(e) = rec.record(adm, &p.response, decision, received_ms) {
            tracing::warn!("could not record the request as a fixture: {e}");
        }
    }
    if let Some(facts) = p
        .decided
        .as_ref()
        .filter(|d| !d.replayed)
        .and_then(|d| d.input.get("velocity"))
    {
        metrics.record_velocity(facts, p.response.is_approval());
    }
    shadow.submit(p, metrics, log);
}

/// Counts a final answer (decided or not).
pub fn count_answer(metrics: &Metrics, started: Instant, a: &Answer) {
    let action = a.response.action.map(|a| a.as_str()).unwrap_or("NONE");
    metrics.record_decision(
        a.request_type.unwrap_or(TYPE_NONE),
        action,
        a.response.status.label(),
    );
    if let Some(f) = &a.failure {
        metrics.record_failure(f.reason());
    } else if !a.response.is_approval() {
        metrics.record_rejection(&a.codes);
    }
    if let Some(t) = a.eval_time {
        metrics.eval_duration.observe(t.as_secs_f64());
    }
    metrics
        .request_duration
        .observe(started.elapsed().as_secs_f64());
}

/// The approval record of an APPROVE of a task, or None when `p` is not
/// one (a rejection, a failure, a ping). A replayed approval gets one too
/// (built from its request, which is the same payload): if the first
/// answer's record was lost, the retry's restores it; the store keeps the
/// first. Err: an approval the audit could not check later (its hashes,
/// paths or key cannot be read), which the caller refuses rather than
/// approve unaudited.
pub fn approval_record(p: &Processed) -> Option<Result<ApprovalRecord, String>> {
    use crate::events::{audit, binding};
    let d = p.decided.as_ref()?;
    if p.failure.is_some() || !p.response.is_approval() {
        return None;
    }
    let adm = p.admitted.as_ref()?;
    let t = adm.request.request_type;
    if !RequestType::TASKS.contains(&t) {
        return None;
    }
    let now = crate::clock::now_ms();
    let rebuilt;
    let input = if d.replayed {
        // The audit reads only request fields, never derived facts.
        rebuilt = crate::input::build_input(&adm.request, &adm.token, now, None);
        &rebuilt
    } else {
        &d.input
    };
    // The request's digests let an event be told apart from one about
    // another attempt under the same id (see `binding`).
    let request = binding::RequestDigests::of(&adm.request.detail, &adm.request.extra);
    let facts = match t {
        RequestType::KeySign => audit::ApprovedSign::from_input(input)
            .and_then(|s| serde_json::to_string(&s).map_err(|e| e.to_string())),
        _ => Ok("{}".to_owned()),
    }
    .and_then(|f| binding::with_digests(&f, &request));
    Some(facts.map(|facts| {
        ApprovalRecord {
            request_id: p.response.request_id.clone(),
            request_type: t.name().to_owned(),
            at_ms: input
                .get("decided_at_ms")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(now),
            digest: hex::encode(adm.digest()),
            facts,
        }
    }))
}
