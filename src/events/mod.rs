//! The TSS Node's events (issue 18): what became of each task tss-gate
//! approved. Owns the event model, the signature audit, the event endpoint
//! and applying an event to the state store (holds released or kept,
//! alarms raised), the approval record the audit reads, and what ties an
//! event to the approval it is about (`binding`).

pub mod audit;
pub mod binding;
pub mod ingest;
pub mod metrics;
pub mod model;

use crate::pipeline::Processed;
use crate::protocol::RequestType;
use crate::store::ApprovalRecord;

/// The approval record of an APPROVE of a task, or None when `p` is not
/// one (a rejection, a failure, a ping). A replayed approval gets one too
/// (built from its request, which is the same payload): if the first
/// answer's record was lost, the retry's restores it; the store keeps the
/// first. Err: an approval the audit could not check later (its hashes,
/// paths or key cannot be read), which the caller refuses rather than
/// approve unaudited.
pub fn approval_record(p: &Processed) -> Option<Result<ApprovalRecord, String>> {
    let d = p.decided.as_ref()?;
    if p.failure.is_some() || !p.response.is_approval() {
        return None;
    }
    let adm = p.admitted.as_ref()?;
    let t = adm.request.request_type;
    if !matches!(
        t,
        RequestType::KeySign
            | RequestType::KeyGen
            | RequestType::KeyReshare
            | RequestType::KeyShareSign
    ) {
        return None;
    }
    let now = crate::pipeline::now_ms();
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
        RequestType::KeySign => sign_facts(input),
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

fn sign_facts(input: &serde_json::Value) -> Result<String, String> {
    audit::ApprovedSign::from_input(input)
        .and_then(|s| serde_json::to_string(&s).map_err(|e| e.to_string()))
}
