//! Bounded admission over real HTTP: with `limits.max_queue: 2`, a burst of
//! concurrent requests is either decided or answered at once with a signed
//! status 30 "overloaded"; every answer verifies, none times out, the
//! server's failure counter agrees with what the clients saw, and `/ping`
//! still answers during the burst.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use tss_gate::protocol::{Action, CallbackRequest, Status};

/// Concurrent connections in the burst, far above the queue limit.
const BURST: usize = 96;

fn request(id: &str) -> CallbackRequest {
    let mut r =
        tss_gate::fixture::load_request(&repo().join("tests/fixtures/keysign_eth_approve.json"))
            .expect("fixture");
    r.request_id = id.into();
    r
}

fn overload_count(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("tss_gate_request_failures_total{reason=\"overloaded\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn burst_beyond_max_queue_is_decided_or_signed_overloaded() {
    let ws = Workspace::new();
    let cfg = ws.config("limits:\n  max_queue: 2\n");
    let server = Server::start(&cfg);
    let url = server.check_url();
    // Mint before the burst so that the requests arrive together.
    let tokens: Vec<(String, String)> = (0..BURST)
        .map(|i| {
            let id = format!("burst-{i}");
            let t = mint(&request(&id), &test_keys().node);
            (id, t)
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let (answers, ping_ok) = rt.block_on(async {
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(BURST));
        let mut tasks = Vec::new();
        for (id, token) in tokens {
            let url = url.clone();
            let start = start.clone();
            tasks.push(tokio::spawn(async move {
                // One client per task: separate connections, like separate nodes.
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("client");
                start.wait().await;
                let r = client
                    .post(&url)
                    .form(&[("TSS_JWT_MSG", token.as_str())])
                    .send()
                    .await;
                let r = match r {
                    Ok(r) => r,
                    Err(e) => return (id, Err(format!("no answer: {e}"))),
                };
                let status = r.status().as_u16();
                match r.text().await {
                    Ok(body) if status == 200 => (id, Ok(body)),
                    Ok(body) => (id, Err(format!("HTTP {status}: {body}"))),
                    Err(e) => (id, Err(format!("body: {e}"))),
                }
            }));
        }
        let ping = reqwest::Client::new()
            .get(format!("http://{}/ping", server.addr))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        (out, ping)
    });
    assert!(ping_ok, "/ping must answer while /v2/check is overloaded");

    let (mut decided, mut overloaded) = (0u64, 0u64);
    for (id, answer) in answers {
        let body = answer.unwrap_or_else(|e| panic!("request {id}: {e}"));
        let resp = verify_answer(&body);
        match resp.status {
            Status::Ok => {
                assert_eq!(resp.request_id, id, "a decision echoes its request id");
                assert_eq!(resp.action, Some(Action::Approve), "{resp:?}");
                decided += 1;
            }
            Status::InternalError => {
                assert_eq!(resp.error, "server overloaded, retry later");
                assert_eq!(resp.action, Some(Action::Reject), "never an approval");
                overloaded += 1;
            }
            other => panic!("request {id}: unexpected status {other:?}: {resp:?}"),
        }
    }
    assert!(decided >= 1, "some requests are admitted and decided");
    assert!(
        overloaded >= 1,
        "a burst of {BURST} over a queue of 2 must overload"
    );
    assert_eq!(decided + overloaded, BURST as u64);

    let (status, metrics) = get(&server.url("/metrics"));
    assert_eq!(status, 200);
    assert_eq!(overload_count(&metrics), overloaded, "{metrics}");

    // Once the burst is over, the server decides again.
    let after = send(&server, &request("after-burst"));
    assert_eq!(
        (after.status, after.action),
        (Status::Ok, Some(Action::Approve))
    );
}

fn get(url: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let r = reqwest::get(url).await.expect("get");
        let s = r.status().as_u16();
        (s, r.text().await.expect("body"))
    })
}
