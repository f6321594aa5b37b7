//! The steps of one decision: verify → parse → build input → evaluate →
//! answer → sign, and the types that carry a request through them. The
//! [`Decider`](super::Decider) runs them for the server, the benches and
//! fuzzing; `test`, `eval` and `replay` call the steps they need, so no step
//! is written twice.

use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::input::{self, ParsedRequest, RequestError, TokenFacts};
use crate::keys::SigningKey;
use crate::policy::{Decision, PolicyError, PolicySet};
use crate::protocol::{CallbackResponse, RequestType, Status};
use crate::token::{TokenError, Verifier};

/// What the pipeline needs besides the policy: keys and protocol settings.
/// Immutable; a key reload builds a new one.
#[derive(Clone)]
pub struct Gate {
    pub verifier: Verifier,
    pub signer: SigningKey,
    /// `iss` of our answers (`callback_server.service_name`).
    pub service_name: String,
    pub token_ttl_secs: u64,
    pub max_json_depth: usize,
}

/// Why a request could not be decided; each maps to a status and a bounded
/// metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("{0}")]
    Policy(&'static str, &'static str),
    #[error("server overloaded, retry later")]
    Overloaded,
    #[error("request body exceeds {0} bytes")]
    BodyTooLarge(usize),
    #[error("request deadline exceeded")]
    Deadline,
    #[error("decision could not be recorded")]
    DecisionLog,
    #[error("request_id `{0}` was seen before with a different payload")]
    ReplayMismatch(String),
    #[error("spending-limit state unavailable, retry later")]
    Store,
    /// A worker died before it answered (a bug, never a policy's doing).
    #[error("internal error")]
    Internal,
}

impl Failure {
    pub fn status(&self) -> Status {
        match self {
            Failure::Token(_) => Status::InvalidToken,
            Failure::Request(_) | Failure::BodyTooLarge(_) => Status::InvalidRequest,
            Failure::ReplayMismatch(_) => Status::Ok,
            Failure::Policy(..)
            | Failure::Overloaded
            | Failure::Deadline
            | Failure::Store
            | Failure::Internal
            | Failure::DecisionLog => Status::InternalError,
        }
    }

    /// Bounded label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Token(t) => t.reason(),
            Failure::Request(r) => r.reason(),
            Failure::Policy(_, label) => label,
            Failure::Overloaded => "overloaded",
            Failure::BodyTooLarge(_) => "body_too_large",
            Failure::Deadline => "deadline",
            Failure::DecisionLog => "decision_log",
            Failure::Store => "store",
            Failure::Internal => "internal",
            Failure::ReplayMismatch(_) => "replay_mismatch",
        }
    }

    pub fn answer(&self, request_id: &str) -> CallbackResponse {
        match self {
            // Not a could-not-decide: the answer to a conflicting retry is a
            // firm REJECT, so the node reports it instead of retrying.
            Failure::ReplayMismatch(_) => CallbackResponse::reject(request_id, self.to_string()),
            _ => CallbackResponse::error(self.status(), request_id, self.to_string()),
        }
    }
}

impl From<PolicyError> for Failure {
    fn from(e: PolicyError) -> Self {
        Failure::Policy(e.public_reason(), e.reason())
    }
}

/// A verified and parsed request, ready to decide.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub request: ParsedRequest,
    pub token: TokenFacts,
    /// The exact request bytes, for recording fixtures.
    raw: Vec<u8>,
    /// sha256 of `raw`: what a retry's payload is compared by. Private
    /// with `raw`, so the two cannot drift apart: a stale digest would let
    /// another payload under a seen id be answered as its retry.
    digest: [u8; 32],
}

impl Admitted {
    pub fn new(request: ParsedRequest, token: TokenFacts, raw: Vec<u8>) -> Self {
        let digest = digest(&raw);
        Admitted {
            request,
            token,
            raw,
            digest,
        }
    }

    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// sha256 of the request bytes, computed once at admission.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
}

/// sha256 of the exact request bytes.
pub fn digest(raw: &[u8]) -> [u8; 32] {
    Sha256::digest(raw).into()
}

/// Step 1–2: verify the token and parse the request it carries. On failure,
/// returns the failure and whatever request_id could be read.
pub fn admit(gate: &Gate, token: &str) -> Result<Admitted, (Failure, String)> {
    let verified = gate
        .verifier
        .verify(token)
        .map_err(|e| (Failure::Token(e), String::new()))?;
    let raw =
        input::decode_package(&verified.package_data).map_err(|e| (e.into(), String::new()))?;
    let request = input::parse_request(&raw, gate.max_json_depth)
        .map_err(|e| (Failure::Request(e), input::salvage_request_id(&raw)))?;
    let token = TokenFacts {
        key_name: verified.key_name,
        iss: verified.iss,
        iat: verified.iat,
        exp: Some(verified.exp),
    };
    Ok(Admitted::new(request, token, raw))
}

/// The result of deciding one request.
#[derive(Debug, Clone)]
pub struct Decided {
    pub response: CallbackResponse,
    pub decision: Option<Decision>,
    pub failure: Option<Failure>,
    pub input: Value,
    pub eval_time: Duration,
    /// Revision of the policy set that decided ([`PolicySet::revision`]), for
    /// the decision log and metrics; a replayed answer keeps the original's.
    pub revision: String,
    /// The answer was replayed from the retry cache, not evaluated now.
    pub replayed: bool,
}

/// Step 3–5: build the input, evaluate, map the decision to an answer.
pub fn decide(
    policy: &PolicySet,
    request: &ParsedRequest,
    token: &TokenFacts,
    received_at_ms: i64,
) -> Decided {
    decide_with(policy, request, token, received_at_ms, |input| {
        policy.evaluate(input)
    })
}

/// [`decide`] with the evaluation step supplied by the caller. `test
/// --coverage` evaluates on an interpreting engine that records coverage
/// (the compiled policy does not); building the input and mapping the
/// decision to an answer stay this one code path.
pub fn decide_with(
    policy: &PolicySet,
    request: &ParsedRequest,
    token: &TokenFacts,
    received_at_ms: i64,
    evaluate: impl FnOnce(&Value) -> Result<Decision, PolicyError>,
) -> Decided {
    let input = input_without_ledger(policy, request, token, received_at_ms);
    decide_input(policy, &request.request_id, input, evaluate)
}

/// The input document as decided without a ledger (eval, benches, the
/// fixture runner when no limit matches): limits that match show zero
/// usage, so a policy sees the facts it will see when served.
pub fn input_without_ledger(
    policy: &PolicySet,
    request: &ParsedRequest,
    token: &TokenFacts,
    received_at_ms: i64,
) -> Value {
    let mut input = build_input(policy, request, token, received_at_ms);
    let matched = policy.velocity.matches(&input);
    if !matched.is_empty() {
        let usages = vec![crate::velocity::Usage::default(); matched.len()];
        set_velocity(policy, &mut input, &matched, &usages, received_at_ms);
    }
    input
}

/// Evaluates a built input and maps the decision to an answer.
pub fn decide_input(
    policy: &PolicySet,
    request_id: &str,
    input: Value,
    evaluate: impl FnOnce(&Value) -> Result<Decision, PolicyError>,
) -> Decided {
    let started = Instant::now();
    let result = evaluate(&input);
    let eval_time = started.elapsed();
    let id = request_id;
    match result {
        Ok(decision) => Decided {
            response: answer_for(id, &decision),
            decision: Some(decision),
            failure: None,
            input,
            eval_time,
            revision: policy.revision.clone(),
            replayed: false,
        },
        Err(e) => {
            let failure = Failure::from(e);
            Decided {
                response: failure.answer(id),
                decision: None,
                failure: Some(failure),
                input,
                eval_time,
                revision: policy.revision.clone(),
                replayed: false,
            }
        }
    }
}

/// Puts the spending-limit facts and the decision time into `input`.
pub(super) fn set_velocity(
    policy: &PolicySet,
    input: &mut Value,
    matched: &[crate::velocity::Matched],
    usages: &[crate::velocity::Usage],
    now_ms: i64,
) {
    let facts = crate::velocity::facts(&policy.velocity, matched, usages, now_ms);
    if let Some(obj) = input.as_object_mut() {
        obj.insert("velocity".into(), facts);
        obj.insert("decided_at_ms".into(), Value::from(now_ms));
    }
}

/// The input document for `request`, including facts derived from the raw
/// transaction when there are any.
pub fn build_input(
    policy: &PolicySet,
    request: &ParsedRequest,
    token: &TokenFacts,
    received_at_ms: i64,
) -> Value {
    let derived = if request.request_type == RequestType::KeySign {
        crate::derive::derive(&request.detail, &request.extra, &policy.derive)
    } else {
        None
    };
    input::build_input(request, token, received_at_ms, derived)
}

/// Maps a contract-valid decision to the answer. Only `allow == true` with no
/// reasons approves.
pub fn answer_for(request_id: &str, d: &Decision) -> CallbackResponse {
    if d.approves() {
        return CallbackResponse::approve(request_id);
    }
    let reason = if d.reasons.is_empty() {
        "rejected by policy".to_owned()
    } else {
        d.reasons.join("; ")
    };
    CallbackResponse::reject(request_id, reason)
}

/// Step 6: sign an answer. Failing to sign leaves nothing trustworthy to send.
pub fn sign(
    gate: &Gate,
    response: &CallbackResponse,
) -> Result<String, jsonwebtoken::errors::Error> {
    let doc = serde_json::to_vec(response).map_err(jsonwebtoken::errors::Error::from)?;
    crate::token::sign_package(&doc, &gate.signer, &gate.service_name, gate.token_ttl_secs)
}

impl Processed {
    /// The outcome of an admitted request that was decided.
    pub fn decided(adm: Admitted, decided: Decided) -> Self {
        Processed {
            response: decided.response.clone(),
            request_type: Some(adm.request.request_type),
            failure: decided.failure.clone(),
            admitted: Some(adm),
            decided: Some(decided),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Processed {
    pub response: CallbackResponse,
    pub request_type: Option<RequestType>,
    pub failure: Option<Failure>,
    pub admitted: Option<Admitted>,
    pub decided: Option<Decided>,
}
