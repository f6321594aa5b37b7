//! Playing the TSS Node's event side in tests: its own event key, the
//! `event_server` config section, and signed event posts.
#![allow(dead_code)]

use std::sync::OnceLock;

use rsa::RsaPrivateKey;
use serde_json::{Value, json};

use super::common::*;

/// The node's event key: its own pair, not the callback key.
pub fn event_key() -> &'static RsaPrivateKey {
    static K: OnceLock<RsaPrivateKey> = OnceLock::new();
    K.get_or_init(|| tss_gate::keys::generate(2048).expect("keygen"))
}

/// `event_server` section with the node's event key written into `ws`.
pub fn events_section(ws: &Workspace) -> String {
    let kd = ws.path().join("keys");
    tss_gate::keys::write_pair(event_key(), &kd, "node-a-event", false).expect("write");
    format!(
        "event_server:\n  endpoint: \"127.0.0.1:0\"\n  event_keys:\n    - name: node-a-event\n      path: {}\n",
        kd.join("node-a-event.pub.pem").display()
    )
}

/// Posts an event document as the node, signed with `key`.
pub fn post_event(server: &Server, doc: &Value, key: &RsaPrivateKey) -> (u16, String) {
    let bytes = serde_json::to_vec(doc).expect("json");
    let token =
        tss_gate::token::sign_package(&bytes, &signing(key), "tss-node", 120).expect("sign");
    let addr = server.events_addr.as_ref().expect("event listener");
    post_token(&format!("http://{addr}/v2/event"), &token)
}

/// An event that does not carry its request (no `request_detail`, no
/// `extra_info`): tss-gate can compare only its kind with the approval's.
/// [`about`] adds the request, as the node reports it.
pub fn event(id: &str, event_type: &str, request_id: &str, status: i64, result: Value) -> Value {
    let data_type = match event_type.split('.').nth(1) {
        Some("keygen") => "KeyGen",
        Some("keyreshare") => "KeyReshare",
        Some("keysharesign") => "KeyShareSign",
        _ => "KeySign",
    };
    let request_type = match data_type {
        "KeyGen" => 1,
        "KeyReshare" => 3,
        "KeyShareSign" => 5,
        _ => 2,
    };
    json!({
        "event_id": id,
        "created_timestamp": tss_gate::clock::now_ms(),
        "node_id": "node-a",
        "event_type": event_type,
        "data": {
            "data_type": data_type,
            "request_id": request_id,
            "request_type": request_type,
            "request_status": status,
            "failed_reason": if status == 170 { "mpc round timeout" } else { "" },
            "result": result,
        }
    })
}

/// `ev` carrying `req`'s documents as the node reports them: the
/// `request_detail` as an object (re-serialised, so its keys may come in
/// another order), `extra_info` as the callback's string.
pub fn about(mut ev: Value, req: &tss_gate::protocol::CallbackRequest) -> Value {
    let detail: Value = serde_json::from_str(&req.request_detail).unwrap_or(json!({}));
    ev["data"]["request_detail"] = detail;
    ev["data"]["extra_info"] = json!(req.extra_info);
    ev
}

pub fn accepted(r: (u16, String)) {
    assert_eq!(
        r,
        (200, "\"\"".to_owned()),
        "event accepted as Cobo's sample answers"
    );
}
