//! Deciding a request that a spending limit matches: the usage read, the
//! evaluation and the ledger rows of an approval as one atomic step of the
//! store for the request's groups, with the store's retry record.

use serde_json::Value;

use super::retry::{Cached, MAX_ID_LEN};
use super::steps::{Admitted, Decided, Failure, build_input, decide_input, set_velocity};
use crate::input::RequestError;
use crate::policy::{Decision, PolicyError, PolicySet};
use crate::store::DecideRequest;

/// The outcome of deciding a request that a spending limit matched.
pub enum StoreDecided {
    /// Decided now; the answer may leave once the pending rows are durable.
    Fresh(Box<Decided>, crate::store::Pending),
    /// Decided before (durable retry record): the same answer again.
    Replayed(Cached),
    /// The id was decided before for another payload.
    Mismatch,
}

/// Decides `request` against the ledger in `store` when a spending limit
/// matches it: read usage, evaluate, record, as one atomic step for its
/// groups. None when no limit matches (decide it the plain way).
pub fn decide_stored(
    store: &dyn crate::store::Store,
    policy: &PolicySet,
    adm: &Admitted,
    received_at_ms: i64,
    fixed_now: Option<i64>,
    evaluate: &mut dyn FnMut(&Value) -> Result<Decision, PolicyError>,
) -> Option<Result<StoreDecided, Failure>> {
    use crate::store::{GroupRef, Outcome, Prior, Verdict};
    let request = &adm.request;
    let input = build_input(policy, request, &adm.token, received_at_ms);
    let matched = policy.velocity.matches(&input);
    if matched.is_empty() {
        return None;
    }
    let id = &request.request_id;
    if id.is_empty() || id.len() > MAX_ID_LEN {
        // The ledger and its retry record are keyed by request_id.
        return Some(Err(Failure::Request(RequestError::BadShape(format!(
            "a request under a spending limit needs a request_id of 1 to {} bytes",
            MAX_ID_LEN
        )))));
    }
    let limits = &policy.velocity;
    // Groups that could not be determined are never looked up: their fact
    // says `error` and the request is denied.
    let looked: Vec<usize> = (0..matched.len())
        .filter(|&i| matched[i].error.is_none())
        .collect();
    let groups: Vec<GroupRef> = looked
        .iter()
        .map(|&i| GroupRef {
            limit: limits.limits[matched[i].limit].id.clone(),
            key: matched[i].key.clone(),
            window_ms: limits.limits[matched[i].limit].window_ms,
        })
        .collect();
    let digest = adm.digest();
    // What an approval adds: one row per group that could be determined.
    let rows = crate::velocity::rows(limits, &matched);
    let hold: Vec<(crate::velocity::Row, String)> = rows
        .into_iter()
        .zip(matched.iter().filter(|m| m.error.is_none()))
        .map(|(r, m)| (r, m.display.clone()))
        .collect();
    let usages_of = |found: &[crate::velocity::Usage]| {
        let mut usages = vec![crate::velocity::Usage::default(); matched.len()];
        for (&i, u) in looked.iter().zip(found) {
            usages[i] = *u;
        }
        usages
    };
    // Whether the request stays within every limit it matched, by the same
    // arithmetic as the facts the policy will see (computed exactly).
    let fits = |found: &[crate::velocity::Usage]| {
        crate::velocity::within(limits, &matched, &usages_of(found))
    };
    let mut decided = None;
    // Moved into the one evaluation (built again only if a store ever
    // asked for a second).
    let mut input = Some(input);
    let outcome = store.decide(
        &DecideRequest {
            request_id: id,
            digest,
            groups: &groups,
            hold: &hold,
            now_ms: fixed_now,
            fits: &fits,
        },
        &mut |now, found| {
            let mut doc = input
                .take()
                .unwrap_or_else(|| build_input(policy, request, &adm.token, received_at_ms));
            set_velocity(policy, &mut doc, &matched, &usages_of(found), now);
            let d = decide_input(policy, id, doc, &mut *evaluate);
            let approved = d.response.is_approval();
            // Only a decided answer (status 0) is replayed to a retry.
            let answer = (d.response.status == crate::protocol::Status::Ok)
                .then(|| {
                    serde_json::to_string(&Cached {
                        response: d.response.clone(),
                        decision: d.decision.clone(),
                        revision: d.revision.clone(),
                    })
                    .ok()
                })
                .flatten();
            decided = Some(d);
            Verdict { answer, approved }
        },
    );
    Some(match outcome {
        Err(e) => {
            tracing::error!("spending-limit store: {e}");
            Err(Failure::Store)
        }
        Ok(Outcome::Prior(Prior::Different)) => Ok(StoreDecided::Mismatch),
        Ok(Outcome::Prior(Prior::Same(answer))) => match serde_json::from_str(&answer) {
            Ok(c) => Ok(StoreDecided::Replayed(c)),
            Err(_) => Err(Failure::Store),
        },
        Ok(Outcome::Decided(pending)) => match decided {
            Some(d) => Ok(StoreDecided::Fresh(Box::new(d), pending)),
            None => Err(Failure::Store),
        },
    })
}
