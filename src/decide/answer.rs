//! The final answer to one request as the decision leaves it: the unsigned
//! response and what metrics and the HTTP layer need to know of it.

use std::time::Duration;

use super::steps::{Failure, Processed};
use crate::protocol::CallbackResponse;

/// A request's answer once every effect it waits for is durable; signing
/// it is the transport's last step.
#[derive(Debug, Clone)]
pub struct Answer {
    pub response: CallbackResponse,
    pub request_type: Option<&'static str>,
    pub failure: Option<Failure>,
    /// The rule codes of a rejection (metrics).
    pub codes: Vec<String>,
    pub eval_time: Option<Duration>,
    /// Whether the decision log already has this request's line.
    pub logged: bool,
    pub kind: AnswerKind,
    /// The policy's decision, when one was reached (fuzzing and benches
    /// check an approval against it).
    pub decision: Option<crate::policy::Decision>,
}

/// How an answer was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    Decided,
    /// Repeated from the retry record of an identical earlier request.
    Repeated,
    /// The request id was seen before with another payload.
    IdReused,
}

impl AnswerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerKind::Decided => "decided",
            AnswerKind::Repeated => "repeated",
            AnswerKind::IdReused => "id-reused",
        }
    }

    pub fn of(p: &Processed) -> Self {
        if matches!(p.failure, Some(Failure::ReplayMismatch(_))) {
            AnswerKind::IdReused
        } else if p.decided.as_ref().is_some_and(|d| d.replayed) {
            AnswerKind::Repeated
        } else {
            AnswerKind::Decided
        }
    }
}

impl Answer {
    /// An answer for a request that never reached a decision.
    pub fn failed(f: Failure, request_id: &str) -> Self {
        Self {
            response: f.answer(request_id),
            request_type: None,
            failure: Some(f),
            codes: Vec::new(),
            eval_time: None,
            logged: false,
            kind: AnswerKind::Decided,
            decision: None,
        }
    }

    /// The answer of a decided (or refused) request, before its effects.
    pub fn of(p: &Processed) -> Self {
        let decision = p.decided.as_ref().and_then(|d| d.decision.clone());
        Self {
            response: p.response.clone(),
            request_type: p.request_type.map(|t| t.name()),
            failure: p.failure.clone(),
            codes: decision
                .as_ref()
                .map(|d| d.codes.clone())
                .unwrap_or_default(),
            eval_time: p.decided.as_ref().map(|d| d.eval_time),
            logged: false,
            kind: AnswerKind::of(p),
            decision,
        }
    }
}
