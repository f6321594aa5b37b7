//! A request whose JSON repeats a key, anywhere, is refused with a signed
//! status 10 and action REJECT: serde_json would keep the last occurrence,
//! the TSS Node's parser may read another, and the policy must never judge
//! a value the node does not use. The real binary over real HTTP, with RSA
//! keys generated at test time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;
use tss_gate::protocol::{Action, Status};

fn keysign() -> serde_json::Value {
    let path = repo().join("tests/fixtures/keysign_eth_approve.json");
    let r = tss_gate::fixture::load_request(&path).unwrap();
    serde_json::to_value(r).unwrap()
}

/// The approved ETH withdrawal with `extra_info` replaced by `extra`.
fn with_extra(id: &str, extra: String) -> Vec<u8> {
    let mut r = keysign();
    r["request_id"] = json!(id);
    r["extra_info"] = json!(extra);
    serde_json::to_vec(&r).unwrap()
}

fn assert_refused(answer: &tss_gate::protocol::CallbackResponse, id: &str, reason: &str) {
    assert_eq!(answer.status, Status::InvalidRequest, "{answer:?}");
    assert_eq!(answer.action, Some(Action::Reject), "{answer:?}");
    assert_eq!(answer.error, reason, "{answer:?}");
    assert_eq!(answer.request_id, id, "{answer:?}");
    assert!(!answer.is_approval());
}

#[test]
fn repeated_keys_get_a_signed_status_10_naming_document_and_path() {
    let ws = Workspace::new();
    let server = Server::start(&ws.config(""));
    let extra = keysign()["extra_info"].as_str().unwrap().to_owned();

    // The untouched request is approved, though `wallet_id`, `address`,
    // `name`, `status`... repeat across sibling objects: only a repeat within
    // one object counts, and what follows is about the keys alone.
    let ok = with_extra("dup-http-0", extra.clone());
    assert!(send_bytes(&server, &ok).is_approval());

    // Nested in the transaction: the policy would have judged 0.75, a
    // first-wins parser would use 750000.
    let amount = extra.replacen(
        r#""amount":"0.75"}"#,
        r#""amount":"750000","amount":"0.75"}"#,
        1,
    );
    assert_ne!(amount, extra);
    assert_refused(
        &send_bytes(&server, &with_extra("dup-http-1", amount)),
        "dup-http-1",
        "duplicate key `amount` in extra_info at transaction.destination.account_output",
    );

    // The same key spelled with an escape is the same key.
    let escaped = extra.replacen(
        r#""token_id":"ETH","#,
        r#""token_id":"ETH","\u0074oken_id":"SOL","#,
        1,
    );
    assert_ne!(escaped, extra);
    assert_refused(
        &send_bytes(&server, &with_extra("dup-http-2", escaped)),
        "dup-http-2",
        "duplicate key `token_id` in extra_info at transaction",
    );

    // In request_detail.
    let mut r = keysign();
    let detail = r["request_detail"].as_str().unwrap().replacen(
        r#""msg_hash_list":"#,
        r#""msg_hash_list":["00"],"msg_hash_list":"#,
        1,
    );
    r["request_detail"] = json!(detail);
    r["request_id"] = json!("dup-http-3");
    assert_refused(
        &send_bytes(&server, &serde_json::to_vec(&r).unwrap()),
        "dup-http-3",
        "duplicate key `msg_hash_list` in request_detail",
    );

    // At the top level of the TSSCallbackRequest (the last request_id is
    // echoed, as serde_json reads it).
    let top = br#"{"request_id":"dup-http-4a","request_type":0,"request_detail":"","extra_info":"","request_id":"dup-http-4"}"#;
    assert_refused(
        &send_bytes(&server, top),
        "dup-http-4",
        "duplicate key `request_id` in request",
    );

    // Attacker text in the key is escaped and bounded.
    let key = format!("a`b{}", "k".repeat(500));
    let noisy = format!(r#"{{"org":{{"{key}":1,"{key}":2}}}}"#);
    let a = send_bytes(&server, &with_extra("dup-http-5", noisy));
    assert_eq!(a.status, Status::InvalidRequest, "{a:?}");
    assert!(a.error.starts_with("duplicate key `a\\u{60}bkkk"), "{a:?}");
    assert!(a.error.ends_with("…` in extra_info at org"), "{a:?}");
    assert!(a.error.len() < 120, "{a:?}");
}
