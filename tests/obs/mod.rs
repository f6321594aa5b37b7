//! Shared by the observability tests: a mixed traffic run with known
//! expected counts (approvals, rejections by rule code, token failures by
//! reason, malformed requests, pings) and a parser for the Prometheus text
//! format.
#![allow(dead_code)]

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, Header};
use serde_json::json;
use tss_gate::protocol::{Action, CallbackRequest, Status};

use crate::common::*;

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn fixture(name: &str, id: &str) -> CallbackRequest {
    let path = repo().join("tests/fixtures").join(name);
    let mut r = tss_gate::fixture::load_request(&path).unwrap();
    r.request_id = id.into();
    r
}

fn rs256(claims: &serde_json::Value, key: &rsa::RsaPrivateKey) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &signing(key).key).unwrap()
}

/// Posts a token and returns the verified answer (every answer must verify).
pub fn answer(server: &Server, token: &str) -> tss_gate::protocol::CallbackResponse {
    let (status, body) = post_token(&server.check_url(), token);
    assert_eq!(status, 200, "every answer is HTTP 200: {body}");
    verify_answer(&body)
}

/// What [`mixed_traffic`] sent, for exact assertions.
#[derive(Debug, Default)]
pub struct Sent {
    /// (request_type, action, status) → count
    pub decisions: BTreeMap<(String, String, String), u64>,
    /// rule code → count
    pub rejections: BTreeMap<String, u64>,
    /// failure reason → count
    pub failures: BTreeMap<String, u64>,
    pub pings: u64,
    /// request_ids of the APPROVE answers.
    pub approved_ids: Vec<String>,
    pub total: u64,
}

impl Sent {
    fn decision(&mut self, t: &str, a: &str, s: &str) {
        *self
            .decisions
            .entry((t.into(), a.into(), s.into()))
            .or_default() += 1;
        self.total += 1;
    }
    fn failure(&mut self, reason: &str, status: &str) {
        // Answers that are not decisions still carry action REJECT.
        self.decision("NONE", "REJECT", status);
        *self.failures.entry(reason.into()).or_default() += 1;
    }
}

/// Approvals of three request types, rejections of three rules, token
/// failures of four reasons, malformed requests of two reasons, and pings
/// (the node's `monitor_interval` PING tasks and `GET /ping`).
pub fn mixed_traffic(server: &Server, tag: &str) -> Sent {
    let k = test_keys();
    let mut sent = Sent::default();
    let approvals = [
        ("ping_approve.json", "PING", 3),
        ("keysign_eth_approve.json", "KEYSIGN", 2),
        ("keygen_allowed_approve.json", "KEYGEN", 1),
    ];
    for (file, t, n) in approvals {
        for i in 0..n {
            let id = format!("{tag}-ok-{t}-{i}");
            let a = answer(server, &mint(&fixture(file, &id), &k.node));
            assert!(a.is_approval(), "{file}: {a:?}");
            assert_eq!(a.request_id, id);
            sent.decision(t, "APPROVE", "0");
            sent.approved_ids.push(id);
        }
    }
    let rejections = [
        (
            "keysign_token_not_allowed_reject.json",
            "KEYSIGN",
            "keysign.token_not_allowed",
            2,
        ),
        (
            "keysharesign_reject.json",
            "KEYSHARESIGN",
            "keysharesign.reject_all",
            1,
        ),
        (
            "keygen_unknown_node_reject.json",
            "KEYGEN",
            "keygen.not_in_allow_list",
            1,
        ),
    ];
    for (file, t, code, n) in rejections {
        for i in 0..n {
            let id = format!("{tag}-no-{t}-{i}");
            let a = answer(server, &mint(&fixture(file, &id), &k.node));
            assert_eq!(a.action, Some(Action::Reject), "{file}: {a:?}");
            assert_eq!(a.status, Status::Ok);
            sent.decision(t, "REJECT", "0");
            *sent.rejections.entry(code.into()).or_default() += 1;
        }
    }

    // Token failures: status 20.
    let good = mint(&fixture("keysign_eth_approve.json", "tok"), &k.node);
    // Change a character inside the signature, not the last one: the last
    // base64url character also carries padding bits, and changing only those
    // makes a malformed token instead of a bad signature.
    let mut chars: Vec<char> = good.chars().collect();
    let i = chars.len() - 10;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    let expired = rs256(
        &json!({"package_data": STANDARD.encode(b"{}"), "exp": now() - 3600}),
        &k.node,
    );
    let token_failures: [(&str, &str, u64); 4] = [
        (&tampered, "bad_signature", 2),
        (&expired, "expired", 2),
        ("hello", "malformed_token", 1),
        ("", "missing_token", 1),
    ];
    for (token, reason, n) in token_failures {
        for _ in 0..n {
            let a = if token.is_empty() {
                let (status, body) = post_form(&server.check_url(), "other_field=1");
                assert_eq!(status, 200);
                verify_answer(&body)
            } else {
                answer(server, token)
            };
            assert_eq!(a.status, Status::InvalidToken, "{reason}: {a:?}");
            sent.failure(reason, "20");
        }
    }
    // A stranger's key: also a bad signature (no `kid`, every key fails).
    let a = answer(
        server,
        &mint(&fixture("ping_approve.json", "stranger"), &k.stranger),
    );
    assert_eq!(a.status, Status::InvalidToken);
    sent.failure("bad_signature", "20");

    // Malformed requests under valid signatures: status 10.
    let malformed = [
        ("%%%not-base64%%%".to_owned(), "bad_package_data"),
        (STANDARD.encode(b"not json"), "bad_request"),
        (
            STANDARD.encode(
                br#"{"request_id":"m-2","request_type":2,"request_detail":"{oops","extra_info":"{}"}"#,
            ),
            "bad_request",
        ),
    ];
    for (pkg, reason) in malformed {
        let token = rs256(
            &json!({"package_data": pkg, "exp": now() + 60, "iss": "tss-node"}),
            &k.node,
        );
        let a = answer(server, &token);
        assert_eq!(a.status, Status::InvalidRequest, "{reason}: {a:?}");
        sent.failure(reason, "10");
    }

    for _ in 0..2 {
        let (status, _) = get(&server.url("/ping"));
        assert_eq!(status, 200);
        sent.pings += 1;
    }
    sent
}

/// GET `url` → (HTTP status, body).
pub fn get(url: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::get(url).await.expect("GET");
        let s = r.status().as_u16();
        (s, r.text().await.expect("body"))
    })
}

/// One sample of the text exposition format.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text format (the subset the prometheus crate
/// writes: no timestamps, label values without escaped quotes).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let value: f64 = value.parse().expect("sample value");
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((n, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let mut labels = BTreeMap::new();
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").expect("label pair");
                    labels.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
                }
                (n.to_owned(), labels)
            }
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// The value of the one series of `name` with exactly these labels, or
/// `None` when the series does not exist.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name && s.labels == want)
        .map(|s| s.value)
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} is ambiguous");
    found.first().copied()
}

/// Every series of `name`.
pub fn series<'a>(samples: &'a [Sample], name: &str) -> Vec<&'a Sample> {
    samples.iter().filter(|s| s.name == name).collect()
}

/// Issue 36 (item 6): the spending-limit gauge against the ledger, one
/// scenario for both stores. Wallet B's approvals predate the server (seeded
/// into the store); wallet A's arrive as live traffic.
pub mod gauge {
    use std::time::Duration;

    use tss_gate::protocol::{Action, CallbackRequest, Status};
    use tss_gate::store::Store;
    use tss_gate::velocity::{Amount, Row};

    use crate::common::*;

    /// The fixtures' wallet (all three of its ids).
    pub const WALLET_A: &str = "5b2c1f7e-8d4a-4e39-9c6b-2f1a7d3e9b40";
    /// The shipped data's other allowed wallet.
    pub const WALLET_B: &str = "a71e4c02-3b9f-4d58-8e21-6c0f5a9d2b17";
    pub const USDT: &str = "usdt_wallet_24h";
    pub const REQUESTS: &str = "wallet_requests_1h";
    pub const BURST: &str = "wallet_burst_5s";

    /// An amount cap per wallet and token; a request count per wallet over
    /// any tokens (count-only, not grouped by token); a 5 s burst count.
    pub const LIMITS: &str = "\
- id: usdt_wallet_24h
  match: {token_ids: [ETH_USDT]}
  group_by: [wallet, token]
  window: 24h
  max_amount: \"50000\"
- id: wallet_requests_1h
  group_by: [wallet]
  window: 1h
  max_count: 10
- id: wallet_burst_5s
  group_by: [wallet]
  window: 5s
  max_count: 7
";

    /// `tss_gate_velocity_utilization_ratio{limit="ID"}`.
    pub fn series(limit: &str) -> String {
        format!("tss_gate_velocity_utilization_ratio{{limit=\"{limit}\"}}")
    }

    fn row(limit: &str, key: &str, amount: &str) -> (Row, String) {
        let keys: Vec<&str> = serde_json::from_str(key).unwrap();
        let display = if keys.len() == 2 {
            format!("wallet={},token={}", keys[0], keys[1])
        } else {
            format!("wallet={}", keys[0])
        };
        (
            Row {
                limit: limit.into(),
                group_key: key.into(),
                amount: Amount::parse(amount).unwrap(),
                token: "ETH_USDT".into(),
            },
            display,
        )
    }

    /// Wallet B's approvals before the server started: 40 000 of 50 000
    /// USDT an hour ago (0.8), 7 of 10 requests ten minutes ago (0.7).
    pub fn seed_wallet_b(store: &dyn Store, now_ms: i64) {
        let usdt = format!("[\"{WALLET_B}\",\"ETH_USDT\"]");
        let wallet = format!("[\"{WALLET_B}\"]");
        for i in 0..4 {
            store
                .seed(
                    &format!("seed-usdt-{i}"),
                    now_ms - 3_600_000 + i,
                    &[row(USDT, &usdt, "10000")],
                )
                .unwrap();
        }
        for i in 0..7 {
            store
                .seed(
                    &format!("seed-requests-{i}"),
                    now_ms - 600_000 + i,
                    &[row(REQUESTS, &wallet, "1")],
                )
                .unwrap();
        }
    }

    fn request(file: &str, id: &str) -> CallbackRequest {
        let mut r = tss_gate::fixture::load_request(&repo().join("tests/fixtures").join(file))
            .expect("fixture");
        r.request_id = id.to_owned();
        r
    }

    /// Wallet A's traffic, in well under 5 s: five USDT transfers of
    /// 9999.99 approved (49 999.95 of 50 000), a sixth denied by
    /// `usdt_wallet_24h` (it would be 120 %), then a 0.75 ETH transfer
    /// approved (6 of 10 requests, 6 of 7 in the burst; its group under
    /// `usdt_wallet_24h` none). The last decision is the ETH one.
    pub fn wallet_a_traffic(server: &Server, tag: &str) {
        let usdt = "integrity_eip1559_eth_usdt_approve.json";
        for i in 0..5 {
            let a = send(server, &request(usdt, &format!("{tag}-usdt-{i}")));
            assert!(a.is_approval(), "USDT transfer {i}: {a:?}");
        }
        let a = send(server, &request(usdt, &format!("{tag}-usdt-over")));
        assert_eq!(
            (a.status, a.action),
            (Status::Ok, Some(Action::Reject)),
            "{a:?}"
        );
        assert!(a.error.contains(USDT), "denied by the cap: {a:?}");
        let a = send(
            server,
            &request("keysign_eth_approve.json", &format!("{tag}-eth")),
        );
        assert!(a.is_approval(), "ETH transfer: {a:?}");
    }

    /// What the gauge must read once the traffic is in the ledger: wallet
    /// A's 49 999.95 / 50 000 (not the denied request's 1.2), wallet B's
    /// 7 / 10 requests (not A's 6 / 10, the latest decision's group).
    pub const USDT_AFTER: f64 = 49_999.95 / 50_000.0;
    pub const REQUESTS_AFTER: f64 = 0.7;

    pub fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// Longest a fall to 0 may take after the traffic: the 5 s window, a
    /// refresh period (1.25 s) and a slow machine's margin.
    pub const FALL: Duration = Duration::from_secs(20);
}
