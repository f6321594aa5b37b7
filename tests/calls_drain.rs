//! Token approvals through the real server count against the token's daily
//! limits like transfers: with the shipped limits (50,000 ETH_USDT per wallet
//! and per source a day) an `approve` to the allowed spender cannot be
//! followed by transfers past the day's maximum, transfers cannot be
//! followed by an approval past it, and splitting across approvals adds up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use tss_gate::protocol::{Action, CallbackRequest, CallbackResponse};

/// USDT approve of 25,000 to Permit2 (the shipped example).
const APPROVE: &str = "tests/fixtures/calls_usdt_approve_permit2_approve.json";
/// USDT transfer of 9,999.99 to an allowed destination.
const TRANSFER: &str = "tests/fixtures/integrity_eip1559_eth_usdt_approve.json";

fn request(fixture: &str, id: &str) -> CallbackRequest {
    let mut r = tss_gate::fixture::load_request(&repo().join(fixture)).expect("fixture");
    r.request_id = id.to_owned();
    r
}

fn approved(a: &CallbackResponse) -> bool {
    a.status.code() == 0 && a.action == Some(Action::Approve)
}

fn over_the_day(a: &CallbackResponse) -> bool {
    a.status.code() == 0
        && a.action == Some(Action::Reject)
        && a.error.contains("eth_usdt_wallet_24h")
        && a.error.contains("eth_usdt_source_24h")
}

/// A server on a copy of the shipped library with the shipped limits.
fn shipped_server(ws: &Workspace) -> Server {
    let data: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo().join("rego/data.yaml")).expect("data"),
    )
    .expect("yaml");
    let limits = serde_yaml_ng::to_string(&data["velocity"]["limits"]).expect("limits");
    let policy = policy_with_limits(ws, Some(&limits));
    Server::start(&ws.config_with_policy(&policy, ""))
}

#[test]
fn approvals_and_transfers_share_the_day() {
    let ws = Workspace::new();
    let server = shipped_server(&ws);
    // Two approvals reach the 50,000 maximum exactly; then nothing more of
    // ETH_USDT leaves that day, neither a transfer nor a third approval.
    assert!(approved(&send(&server, &request(APPROVE, "ap-1"))));
    assert!(approved(&send(&server, &request(APPROVE, "ap-2"))));
    let t = send(&server, &request(TRANSFER, "tr-1"));
    assert!(over_the_day(&t), "{t:?}");
    let a = send(&server, &request(APPROVE, "ap-3"));
    assert!(over_the_day(&a), "{a:?}");
    assert!(a.error.contains("50000 used"), "{a:?}");
}

#[test]
fn transfers_then_an_approval_past_the_day_are_stopped() {
    let ws = Workspace::new();
    let server = shipped_server(&ws);
    // Three transfers (29,999.97), then an approval of 25,000 would make
    // 54,999.97: denied; the day still has room for two more transfers.
    for i in 0..3 {
        assert!(approved(&send(
            &server,
            &request(TRANSFER, &format!("tr-{i}"))
        )));
    }
    let a = send(&server, &request(APPROVE, "ap-1"));
    assert!(over_the_day(&a), "{a:?}");
    for i in 3..5 {
        assert!(approved(&send(
            &server,
            &request(TRANSFER, &format!("tr-{i}"))
        )));
    }
    assert!(over_the_day(&send(&server, &request(TRANSFER, "tr-5"))));
}
