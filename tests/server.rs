//! Issue 2 acceptance: the real binary over real HTTP, acting as a TSS Node.
//! Every fixture gives its expected action; every token problem a signed
//! status 20; every malformed request a signed status 10; every answer
//! verifies with the server's key and echoes the request_id.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::json;
use tss_gate::protocol::{Action, CallbackRequest, Status};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn keysign_request(id: &str) -> CallbackRequest {
    let path = repo().join("tests/fixtures/keysign_eth_approve.json");
    let mut r = tss_gate::fixture::load_request(&path).unwrap();
    r.request_id = id.into();
    r
}

fn package(req: &CallbackRequest) -> String {
    STANDARD.encode(serde_json::to_vec(req).unwrap())
}

fn rs256(claims: &serde_json::Value, key: &rsa::RsaPrivateKey) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &signing(key).key).unwrap()
}

#[test]
fn every_fixture_gets_its_expected_answer() {
    let ws = Workspace::new();
    // One server answers every fixture in turn, so spending limits would
    // count the approvals of one fixture against the next; fixtures decide
    // limits on their own `history` (tss-gate test), and tests/velocity.rs
    // drives limits through this server.
    let policy = policy_with_limits(&ws, None);
    let server = Server::start(&ws.config_with_policy(&policy, ""));
    let fixtures = fixture_paths();
    assert!(fixtures.len() >= 12, "at least 12 fixtures");
    let mut seen_types = std::collections::BTreeSet::new();
    let (mut approvals, mut rejections) = (0, 0);
    for path in fixtures {
        let f = tss_gate::fixture::load_fixture(&path).unwrap();
        if !f.history.is_empty() {
            continue;
        }
        seen_types.insert(f.request.request_type);
        // The request's text as written: some fixtures repeat a key.
        let answer = send_bytes(&server, &f.wire_bytes());
        let name = path.display();
        assert_eq!(
            answer.request_id, f.request.request_id,
            "{name}: request_id echo"
        );
        assert_eq!(
            answer.status.code(),
            f.expect.status,
            "{name}: status ({answer:?})"
        );
        assert_eq!(
            answer.action,
            Some(f.expect.action),
            "{name}: action ({answer:?})"
        );
        for r in &f.expect.reasons {
            assert!(
                answer.error.contains(r.as_str()),
                "{name}: `{}` lacks `{r}`",
                answer.error
            );
        }
        match f.expect.action {
            Action::Approve => {
                approvals += 1;
                assert!(answer.error.is_empty(), "{name}: approvals carry no error");
            }
            Action::Reject => rejections += 1,
        }
    }
    for t in [0, 1, 2, 3, 5] {
        assert!(seen_types.contains(&t), "fixtures cover request type {t}");
    }
    assert!(approvals > 0 && rejections > 0);
}

/// Asserts a signed status-20 answer.
fn assert_token_error(server: &Server, token: &str, why: &str) {
    let (status, body) = post_token(&server.check_url(), token);
    assert_eq!(status, 200, "{why}: signed answers are HTTP 200");
    let a = verify_answer(&body);
    assert_eq!(a.status, Status::InvalidToken, "{why}: {a:?}");
    assert_ne!(a.action, Some(Action::Approve), "{why}");
    assert!(!a.error.is_empty(), "{why}: a reason is given");
}

#[test]
fn token_problems_get_signed_status_20() {
    let ws = Workspace::new();
    let server = Server::start(&ws.config(""));
    let k = test_keys();
    let req = keysign_request("tok-1");
    let good = mint(&req, &k.node);

    // Sanity: the untampered token approves, so the failures below are the
    // token's fault and not the request's.
    let a = verify_answer(&post_token(&server.check_url(), &good).1);
    assert!(a.is_approval(), "{a:?}");

    // Bad signature: a character in the middle of the signature changed (the
    // last one may only carry padding bits).
    let mut bad: Vec<char> = good.chars().collect();
    let mid = good.rfind('.').unwrap() + (good.len() - good.rfind('.').unwrap()) / 2;
    bad[mid] = if bad[mid] == 'A' { 'B' } else { 'A' };
    let bad: String = bad.into_iter().collect();
    assert_token_error(&server, &bad, "bad signature");

    // Payload swapped under a valid signature.
    let parts: Vec<&str> = good.split('.').collect();
    let other = mint(&keysign_request("tok-other"), &k.node);
    let other_payload = other.split('.').nth(1).unwrap();
    assert_token_error(
        &server,
        &format!("{}.{}.{}", parts[0], other_payload, parts[2]),
        "payload swap",
    );

    // Signed by a key that is not configured.
    assert_token_error(&server, &mint(&req, &k.stranger), "unknown key");

    // Expired (well beyond the leeway).
    let expired = rs256(
        &json!({"package_data": package(&req), "exp": now() - 3600, "iss": "tss-node"}),
        &k.node,
    );
    assert_token_error(&server, &expired, "expired");

    // Missing exp.
    let no_exp = rs256(
        &json!({"package_data": package(&req), "iss": "tss-node"}),
        &k.node,
    );
    assert_token_error(&server, &no_exp, "missing exp");

    // Missing package_data.
    let no_pkg = rs256(&json!({"exp": now() + 60}), &k.node);
    assert_token_error(&server, &no_pkg, "missing package_data");

    // alg: none.
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let p = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&json!({"package_data": package(&req), "exp": now() + 60})).unwrap(),
    );
    assert_token_error(&server, &format!("{h}.{p}."), "alg none");

    // HS256 with the node's public key bytes as the HMAC secret.
    let pem = k
        .node
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"package_data": package(&req), "exp": now() + 60}),
        &EncodingKey::from_secret(pem.as_bytes()),
    )
    .unwrap();
    assert_token_error(&server, &hs, "HS256 key confusion");

    // Not a JWT at all, and an empty field.
    assert_token_error(&server, "hello", "not a JWT");
    assert_token_error(&server, "a.b.c", "garbage segments");
    let (status, body) = post_form(&server.check_url(), "other_field=1");
    assert_eq!(status, 200);
    assert_eq!(
        verify_answer(&body).status,
        Status::InvalidToken,
        "missing form field"
    );
}

#[test]
fn malformed_requests_get_signed_status_10() {
    let ws = Workspace::new();
    let server = Server::start(&ws.config(""));
    let node = &test_keys().node;
    let cases: Vec<(&str, String, &str)> = vec![
        ("package_data not base64", "%%%not-base64%%%".into(), ""),
        ("package_data not JSON", STANDARD.encode(b"not json"), ""),
        (
            "request_type not an integer",
            STANDARD.encode(br#"{"request_id":"m-1","request_type":"KEYSIGN","request_detail":"","extra_info":""}"#),
            "m-1",
        ),
        (
            "request_detail not JSON",
            STANDARD.encode(br#"{"request_id":"m-2","request_type":2,"request_detail":"{oops","extra_info":"{}"}"#),
            "m-2",
        ),
        (
            "extra_info not an object",
            STANDARD.encode(br#"{"request_id":"m-3","request_type":2,"request_detail":"{}","extra_info":"[1,2]"}"#),
            "m-3",
        ),
    ];
    for (why, pkg, id) in cases {
        let token = rs256(
            &json!({"package_data": pkg, "exp": now() + 60, "iss": "tss-node"}),
            node,
        );
        let (status, body) = post_token(&server.check_url(), &token);
        assert_eq!(status, 200, "{why}");
        let a = verify_answer(&body);
        assert_eq!(a.status, Status::InvalidRequest, "{why}: {a:?}");
        assert_eq!(a.request_id, id, "{why}: request_id echoed when readable");
        assert_ne!(a.action, Some(Action::Approve), "{why}");
    }
}

#[test]
fn a_request_signed_by_an_unconfigured_key_is_never_approved() {
    let ws = Workspace::new();
    let server = Server::start(&ws.config(""));
    let k = test_keys();
    for path in fixture_paths() {
        let f = tss_gate::fixture::load_fixture(&path).unwrap();
        let (_, body) = post_token(&server.check_url(), &mint(&f.request, &k.stranger));
        let a = verify_answer(&body);
        assert_eq!(a.status, Status::InvalidToken, "{}", path.display());
        assert!(!a.is_approval());
    }
}

#[test]
fn both_configured_nodes_are_accepted_and_named_in_the_input() {
    let ws = Workspace::new();
    let server = Server::start(&ws.config(""));
    let k = test_keys();
    let req = keysign_request("node-b-1");
    let a = verify_answer(&post_token(&server.check_url(), &mint(&req, &k.node_b)).1);
    assert!(a.is_approval(), "{a:?}");
    assert_eq!(a.request_id, "node-b-1");
}

#[test]
fn ping_answers_like_the_samples() {
    let ws = Workspace::new();
    let server = Server::start(&ws.config(""));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let v: serde_json::Value = rt.block_on(async {
        reqwest::get(server.url("/ping"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(v["server"], "tss-gate-test");
    let ts = v["timestamp"].as_i64().expect("numeric timestamp");
    assert!((ts / 1000 - now() as i64).abs() < 60, "unix milliseconds");
}

#[test]
fn bad_config_and_missing_keys_refuse_to_start() {
    let ws = Workspace::new();
    let cfg = ws.config("surprise_key: 1\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tss-gate"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("surprise_key") && err.contains("tss-gate.yaml"),
        "{err}"
    );

    let cfg = ws.config("");
    std::fs::remove_file(ws.path().join("keys/node-b.pub.pem")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tss-gate"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node-b.pub.pem"),
        "names the missing file: {err}"
    );
}
