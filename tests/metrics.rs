//! Issue 4: `/metrics` after mixed traffic shows exactly what was sent:
//! decisions by type/action/status, rejections by rule code, failures by
//! reason, histogram counts, in-flight back to 0, policy and build info.
//! Also: `metrics.endpoint` moves `/metrics` to its own address.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod obs;

use common::*;
use obs::*;
use tss_gate::metrics as m;

#[test]
fn counters_match_the_traffic_exactly() {
    let ws = Workspace::new();
    let server = Server::start(&ws.config(""));
    let sent = mixed_traffic(&server, "m");
    let (status, text) = get(&server.url("/metrics"));
    assert_eq!(status, 200);
    let s = parse_metrics(&text);

    // Decisions: every (type, action, status) we sent, and nothing else.
    for ((t, a, st), n) in &sent.decisions {
        assert_eq!(
            value(
                &s,
                m::DECISIONS_TOTAL,
                &[("request_type", t), ("action", a), ("status", st)]
            ),
            Some(*n as f64),
            "decisions {t} {a} {st}\n{text}"
        );
    }
    assert_eq!(
        series(&s, m::DECISIONS_TOTAL).len(),
        sent.decisions.len(),
        "no unexpected decision series\n{text}"
    );
    assert_eq!(
        (
            sent.decisions
                .iter()
                .filter(|((_, a, _), _)| a == "APPROVE")
                .map(|(_, n)| n)
                .sum::<u64>(),
            sent.total
        ),
        (6, 20),
        "the traffic mix itself"
    );

    // Rejections by rule code.
    for (code, n) in &sent.rejections {
        assert_eq!(
            value(&s, m::REJECTIONS_TOTAL, &[("rule", code)]),
            Some(*n as f64),
            "rejections {code}\n{text}"
        );
    }
    assert_eq!(series(&s, m::REJECTIONS_TOTAL).len(), sent.rejections.len());

    // Failures by reason; every other reason is pre-created at 0.
    for reason in m::FAILURE_REASONS {
        let want = sent.failures.get(*reason).copied().unwrap_or(0);
        assert_eq!(
            value(&s, m::REQUEST_FAILURES_TOTAL, &[("reason", reason)]),
            Some(want as f64),
            "failures {reason}"
        );
    }
    assert_eq!(sent.failures["bad_signature"], 3);
    assert_eq!(sent.failures["expired"], 2);

    // Histograms: one request observation per answer, one evaluation per
    // policy decision.
    let decided = sent
        .decisions
        .iter()
        .filter(|((_, _, st), _)| st == "0")
        .map(|(_, n)| n)
        .sum::<u64>();
    let count = |name: &str| value(&s, &format!("{name}_count"), &[]);
    assert_eq!(count(m::REQUEST_DURATION_SECONDS), Some(sent.total as f64));
    assert_eq!(count(m::POLICY_EVAL_DURATION_SECONDS), Some(decided as f64));
    assert_eq!(
        value(
            &s,
            &format!("{}_bucket", m::REQUEST_DURATION_SECONDS),
            &[("le", "+Inf")]
        ),
        Some(sent.total as f64)
    );
    let buckets = series(&s, &format!("{}_bucket", m::REQUEST_DURATION_SECONDS));
    assert_eq!(buckets.len(), m::LATENCY_BUCKETS.len() + 1);
    assert_eq!(buckets[0].labels["le"], "0.0001");

    assert_eq!(value(&s, m::REQUESTS_IN_FLIGHT, &[]), Some(0.0));
    assert_eq!(value(&s, m::PINGS_TOTAL, &[]), Some(sent.pings as f64));

    // Policy: one revision series, loaded once, recently.
    let info = series(&s, m::POLICY_INFO);
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].value, 1.0);
    assert_eq!(info[0].labels["revision"].len(), 16, "{:?}", info[0]);
    assert_eq!(value(&s, m::POLICY_LOAD_OK, &[]), Some(1.0));
    assert_eq!(
        value(&s, m::POLICY_RELOADS_TOTAL, &[("result", "success")]),
        Some(1.0)
    );
    let loaded = value(&s, m::POLICY_LAST_LOAD_SUCCESS, &[]).unwrap();
    assert!((loaded - now() as f64).abs() < 600.0, "{loaded}");

    let build = series(&s, m::BUILD_INFO);
    assert_eq!(build.len(), 1);
    assert_eq!(build[0].labels["version"], env!("CARGO_PKG_VERSION"));

    // Decision log off: nothing written.
    assert_eq!(
        value(&s, m::DECISION_LOG_WRITES_TOTAL, &[("result", "success")]),
        Some(0.0)
    );

    // No label carries a request id or other unbounded value.
    for id in &sent.approved_ids {
        assert!(!text.contains(id.as_str()), "request id `{id}` in metrics");
    }
}

#[test]
fn metrics_endpoint_serves_metrics_on_its_own_address() {
    let ws = Workspace::new();
    let server = Server::start(&ws.config("metrics:\n  endpoint: \"127.0.0.1:0\"\n"));
    let maddr = server
        .metrics_addr
        .clone()
        .expect("`metrics on ADDR` line printed");
    assert_ne!(maddr, server.addr);
    let k = test_keys();
    let a = answer(
        &server,
        &mint(&fixture("ping_approve.json", "sep-1"), &k.node),
    );
    assert!(a.is_approval());

    let (status, text) = get(&format!("http://{maddr}/metrics"));
    assert_eq!(status, 200);
    let s = parse_metrics(&text);
    assert_eq!(
        value(
            &s,
            m::DECISIONS_TOTAL,
            &[
                ("request_type", "PING"),
                ("action", "APPROVE"),
                ("status", "0")
            ]
        ),
        Some(1.0)
    );
    // Not on the main address, and the metrics address serves nothing else.
    assert_eq!(get(&server.url("/metrics")).0, 404);
    assert_eq!(get(&format!("http://{maddr}/ping")).0, 404);
}
