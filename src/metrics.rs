//! Every metric tss-gate exports: names (as constants, the contract with the
//! dashboards and alert rules in `dashboards/`), label sets, and the registry.
//! Labels come from bounded sets only: request types, actions, statuses, a
//! fixed list of failure reasons, and policy rule codes (validated and capped).

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

pub const DECISIONS_TOTAL: &str = "tss_gate_decisions_total";
pub const REQUEST_DURATION_SECONDS: &str = "tss_gate_request_duration_seconds";
pub const POLICY_EVAL_DURATION_SECONDS: &str = "tss_gate_policy_eval_duration_seconds";
pub const REQUEST_FAILURES_TOTAL: &str = "tss_gate_request_failures_total";
pub const REJECTIONS_TOTAL: &str = "tss_gate_rejections_total";
pub const REQUESTS_IN_FLIGHT: &str = "tss_gate_requests_in_flight";
pub const POLICY_INFO: &str = "tss_gate_policy_info";
pub const POLICY_LAST_LOAD_SUCCESS: &str = "tss_gate_policy_last_load_success_timestamp_seconds";
pub const POLICY_RELOADS_TOTAL: &str = "tss_gate_policy_reloads_total";
pub const POLICY_LOAD_OK: &str = "tss_gate_policy_load_ok";
pub const FROZEN: &str = "tss_gate_frozen";
pub const BUILD_INFO: &str = "tss_gate_build_info";
pub const RETRY_CACHE_HITS_TOTAL: &str = "tss_gate_retry_cache_hits_total";
pub const DECISION_LOG_WRITES_TOTAL: &str = "tss_gate_decision_log_writes_total";
pub const PINGS_TOTAL: &str = "tss_gate_http_ping_total";
pub const VELOCITY_DENIALS_TOTAL: &str = "tss_gate_velocity_denials_total";
pub const VELOCITY_UTILIZATION: &str = "tss_gate_velocity_utilization_ratio";

/// Label value used when a request failed before its type was known.
pub const TYPE_NONE: &str = "NONE";

/// Histogram buckets from 100 µs to 10 s: policy evaluation lives at the low
/// end, RSA-4096 signing near 1–2 ms, the node's timeout at 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Distinct rule codes beyond this are counted as `other`, so a policy bug
/// cannot explode the series count.
pub const MAX_RULE_LABELS: usize = 256;

pub const STORE_DURATION_SECONDS: &str = "tss_gate_store_duration_seconds";
pub const STORE_ERRORS_TOTAL: &str = "tss_gate_store_errors_total";
/// `op` label values of the store metrics.
pub const STORE_OPS: [&str; 2] = ["decide", "lookup"];

pub const SHADOW_EVALUATIONS_TOTAL: &str = "tss_gate_shadow_evaluations_total";
pub const SHADOW_DISAGREEMENTS_TOTAL: &str = "tss_gate_shadow_disagreements_total";
pub const SHADOW_EVAL_DURATION_SECONDS: &str = "tss_gate_shadow_eval_duration_seconds";
pub const SHADOW_POLICY_INFO: &str = "tss_gate_shadow_policy_info";
pub const SHADOW_POLICY_LOAD_OK: &str = "tss_gate_shadow_policy_load_ok";
/// `result` label values of the shadow evaluations (shadow mode).
pub const SHADOW_RESULTS: [&str; 4] = ["agree", "disagree", "error", "dropped"];
/// `direction` label values of the shadow disagreements.
pub const SHADOW_DIRECTIONS: [&str; 3] = ["would_approve", "would_reject", "codes_changed"];

pub struct Metrics {
    registry: Registry,
    pub decisions: IntCounterVec,
    pub request_duration: Histogram,
    pub eval_duration: Histogram,
    pub failures: IntCounterVec,
    pub rejections: IntCounterVec,
    pub in_flight: IntGauge,
    pub policy_info: IntGaugeVec,
    pub policy_last_load: Gauge,
    pub policy_reloads: IntCounterVec,
    pub policy_load_ok: IntGauge,
    /// 1 per request type the emergency stop rejects.
    pub frozen: IntGaugeVec,
    pub retry_cache_hits: IntCounter,
    pub decision_log_writes: IntCounterVec,
    pub pings: IntCounter,
    /// Requests a spending limit stopped, by limit id (ids come from the
    /// operator's data and are validated label-safe).
    pub velocity_denials: IntCounterVec,
    /// Utilisation of a limit's fullest group as the ledger holds it now,
    /// set by [`crate::velocity::gauge::follow`] (never by a decision).
    pub velocity_utilization: prometheus::GaugeVec,
    /// Woken after each decision under a limit and each policy load, so
    /// the gauge is refreshed soon (an O(1) wake-up on the decision path).
    pub velocity_changed: tokio::sync::Notify,
    /// Time a decision spends in the state store (policy evaluation
    /// excluded), by operation.
    pub store_duration: prometheus::HistogramVec,
    /// State store operations that failed (answered with status 30).
    pub store_errors: IntCounterVec,
    /// Shadow evaluations by outcome (`policy.shadow_dir`).
    pub shadow_evaluations: IntCounterVec,
    /// Shadow decisions that differ from the live one, by direction.
    pub shadow_disagreements: IntCounterVec,
    /// Shadow evaluation wall time (off the answer's path, so not in the
    /// request duration).
    pub shadow_eval_duration: Histogram,
    /// The shadow set evaluating now (value 1); no series while off.
    pub shadow_policy_info: IntGaugeVec,
    /// 0 when the last shadow load attempt was refused.
    pub shadow_policy_load_ok: IntGauge,
    seen_rules: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn must<T>(r: prometheus::Result<T>) -> T {
    match r {
        Ok(v) => v,
        // INVARIANT: names and label sets are constants defined above and
        // registered once per registry, so registration cannot fail.
        Err(e) => unreachable!("metric definition error: {e}"),
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let decisions = must(IntCounterVec::new(
            Opts::new(
                DECISIONS_TOTAL,
                "Answers to /v2/check by request type, action and status.",
            ),
            &["request_type", "action", "status"],
        ));
        let request_duration = must(Histogram::with_opts(
            HistogramOpts::new(
                REQUEST_DURATION_SECONDS,
                "Time from request arrival to signed answer on /v2/check.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        ));
        let eval_duration = must(Histogram::with_opts(
            HistogramOpts::new(
                POLICY_EVAL_DURATION_SECONDS,
                "Rego evaluation time per decision.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        ));
        let failures = must(IntCounterVec::new(
            Opts::new(
                REQUEST_FAILURES_TOTAL,
                "Requests answered with a non-zero status, by reason.",
            ),
            &["reason"],
        ));
        let rejections = must(IntCounterVec::new(
            Opts::new(REJECTIONS_TOTAL, "Policy rejections by rule code."),
            &["rule"],
        ));
        let in_flight = must(IntGauge::new(
            REQUESTS_IN_FLIGHT,
            "/v2/check requests being decided now.",
        ));
        let policy_info = must(IntGaugeVec::new(
            Opts::new(
                POLICY_INFO,
                "The serving policy revision (value is always 1).",
            ),
            &["revision"],
        ));
        let policy_last_load = must(Gauge::new(
            POLICY_LAST_LOAD_SUCCESS,
            "Unix time of the last successful policy load.",
        ));
        let policy_reloads = must(IntCounterVec::new(
            Opts::new(POLICY_RELOADS_TOTAL, "Policy (re)load attempts by result."),
            &["result"],
        ));
        let frozen = must(IntGaugeVec::new(
            Opts::new(
                FROZEN,
                "1 while `tss-gate freeze` rejects every request of this type, else 0.",
            ),
            &["request_type"],
        ));
        let policy_load_ok = must(IntGauge::new(
            POLICY_LOAD_OK,
            "1 when the last policy load attempt succeeded, 0 when it was refused.",
        ));
        let build_info = must(IntGaugeVec::new(
            Opts::new(BUILD_INFO, "Build information (value is always 1)."),
            &["version"],
        ));
        let retry_cache_hits = must(IntCounter::new(
            RETRY_CACHE_HITS_TOTAL,
            "Retried requests answered from the decision cache.",
        ));
        let decision_log_writes = must(IntCounterVec::new(
            Opts::new(DECISION_LOG_WRITES_TOTAL, "Decision log writes by result."),
            &["result"],
        ));
        let pings = must(IntCounter::new(
            PINGS_TOTAL,
            "GET /ping health checks served.",
        ));
        let velocity_denials = must(IntCounterVec::new(
            Opts::new(
                VELOCITY_DENIALS_TOTAL,
                "Requests denied because a spending limit would be exceeded, by limit id.",
            ),
            &["limit"],
        ));
        let velocity_utilization = must(prometheus::GaugeVec::new(
            Opts::new(
                VELOCITY_UTILIZATION,
                "Utilisation of a spending limit's fullest group as the ledger holds it now (the larger of amount / max_amount and count / max_count inside the window; a denied request adds nothing), refreshed every few seconds, by limit id.",
            ),
            &["limit"],
        ));
        let store_duration = must(prometheus::HistogramVec::new(
            HistogramOpts::new(
                STORE_DURATION_SECONDS,
                "Time spent in the state store per operation (locks, reads, writes, commit; policy evaluation excluded).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["op"],
        ));
        let store_errors = must(IntCounterVec::new(
            Opts::new(
                STORE_ERRORS_TOTAL,
                "State store operations that failed, by operation; each is answered with status 30.",
            ),
            &["op"],
        ));
        let shadow_evaluations = must(IntCounterVec::new(
            Opts::new(
                SHADOW_EVALUATIONS_TOTAL,
                "Shadow policy evaluations by result (agree, disagree, error, dropped when the shadow queue was full); never affects answers.",
            ),
            &["result"],
        ));
        let shadow_disagreements = must(IntCounterVec::new(
            Opts::new(
                SHADOW_DISAGREEMENTS_TOTAL,
                "Shadow decisions that differ from the live one: would_approve (shadow APPROVE, live REJECT), would_reject, codes_changed.",
            ),
            &["direction"],
        ));
        let shadow_eval_duration = must(Histogram::with_opts(
            HistogramOpts::new(
                SHADOW_EVAL_DURATION_SECONDS,
                "Wall time of one shadow policy evaluation; the shadow thread runs at idle priority, so this includes time it was preempted by requests.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        ));
        let shadow_policy_info = must(IntGaugeVec::new(
            Opts::new(
                SHADOW_POLICY_INFO,
                "The shadow policy revision evaluating now (value is always 1; absent while shadow mode is off).",
            ),
            &["revision"],
        ));
        let shadow_policy_load_ok = must(IntGauge::new(
            SHADOW_POLICY_LOAD_OK,
            "0 when the last shadow policy load attempt was refused, else 1.",
        ));
        shadow_policy_load_ok.set(1);
        for r in SHADOW_RESULTS {
            shadow_evaluations.with_label_values(&[r]).inc_by(0);
        }
        for d in SHADOW_DIRECTIONS {
            shadow_disagreements.with_label_values(&[d]).inc_by(0);
        }
        for op in STORE_OPS {
            store_errors.with_label_values(&[op]).inc_by(0);
            let _ = store_duration.with_label_values(&[op]);
        }
        for c in [
            Box::new(velocity_denials.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(store_duration.clone()),
            Box::new(store_errors.clone()),
            Box::new(velocity_utilization.clone()),
            Box::new(decisions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(eval_duration.clone()),
            Box::new(failures.clone()),
            Box::new(rejections.clone()),
            Box::new(in_flight.clone()),
            Box::new(policy_info.clone()),
            Box::new(policy_last_load.clone()),
            Box::new(policy_reloads.clone()),
            Box::new(policy_load_ok.clone()),
            Box::new(frozen.clone()),
            Box::new(build_info.clone()),
            Box::new(retry_cache_hits.clone()),
            Box::new(decision_log_writes.clone()),
            Box::new(pings.clone()),
            Box::new(shadow_evaluations.clone()),
            Box::new(shadow_disagreements.clone()),
            Box::new(shadow_eval_duration.clone()),
            Box::new(shadow_policy_info.clone()),
            Box::new(shadow_policy_load_ok.clone()),
        ] {
            must(registry.register(c));
        }
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Pre-create the series dashboards divide by, so a fresh server shows
        // 0 rather than "no data".
        for reason in FAILURE_REASONS {
            failures.with_label_values(&[reason]).inc_by(0);
        }
        for t in crate::protocol::RequestType::TASKS {
            frozen.with_label_values(&[t.name()]).set(0);
        }
        for result in ["success", "failure"] {
            policy_reloads.with_label_values(&[result]).inc_by(0);
            decision_log_writes.with_label_values(&[result]).inc_by(0);
        }
        Self {
            registry,
            decisions,
            request_duration,
            eval_duration,
            failures,
            rejections,
            in_flight,
            policy_info,
            policy_last_load,
            policy_reloads,
            policy_load_ok,
            frozen,
            retry_cache_hits,
            decision_log_writes,
            pings,
            velocity_denials,
            velocity_utilization,
            velocity_changed: tokio::sync::Notify::new(),
            store_duration,
            store_errors,
            shadow_evaluations,
            shadow_disagreements,
            shadow_eval_duration,
            shadow_policy_info,
            shadow_policy_load_ok,
            seen_rules: Mutex::new(HashSet::new()),
        }
    }

    /// Registers a collector another module owns (the event metrics) in
    /// the same registry, so one `/metrics` shows everything.
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) -> prometheus::Result<()> {
        self.registry.register(c)
    }

    pub fn record_decision(&self, request_type: &str, action: &str, status: &str) {
        self.decisions
            .with_label_values(&[request_type, action, status])
            .inc();
    }

    /// Counts a rejection under each of its rule codes, bounded.
    pub fn record_rejection(&self, codes: &[String]) {
        if codes.is_empty() {
            self.rejections.with_label_values(&["unspecified"]).inc();
            return;
        }
        for code in codes {
            let label = {
                let mut seen = match self.seen_rules.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                if seen.contains(code)
                    || (seen.len() < MAX_RULE_LABELS && seen.insert(code.clone()))
                {
                    code.as_str()
                } else {
                    "other"
                }
            };
            self.rejections.with_label_values(&[label]).inc();
        }
    }

    /// Spending-limit metrics of one decided request: a denial for each
    /// limit it exceeded when it was not approved, and a wake-up for the
    /// utilisation gauge, which reads the ledger itself (the facts'
    /// `utilization` includes this request, approved or not).
    pub fn record_velocity(&self, facts: &serde_json::Value, approved: bool) {
        let Some(obj) = facts.as_object() else {
            return;
        };
        self.velocity_changed.notify_one();
        // Past MAX_RULE_LABELS ids a label set could grow from data; ids
        // are validated and operator-written, so this only bounds a typo storm.
        for id in obj.keys().take(MAX_RULE_LABELS) {
            self.velocity_denials.with_label_values(&[id]).inc_by(0);
        }
        if approved {
            return;
        }
        for (id, groups) in obj.iter().take(MAX_RULE_LABELS) {
            let hit = groups
                .as_array()
                .is_some_and(|g| g.iter().any(crate::velocity::exceeded));
            if hit {
                self.velocity_denials.with_label_values(&[id]).inc();
            }
        }
    }

    /// Creates the series of every configured limit, so a panel shows 0
    /// before the first request a limit matches.
    pub fn velocity_limits_loaded(&self, limits: &crate::velocity::Limits) {
        for l in limits.limits.iter().take(MAX_RULE_LABELS) {
            self.velocity_denials.with_label_values(&[&l.id]).inc_by(0);
            let _ = self.velocity_utilization.with_label_values(&[&l.id]);
        }
        self.velocity_changed.notify_one();
    }

    pub fn record_failure(&self, reason: &str) {
        self.failures.with_label_values(&[reason]).inc();
    }

    /// Marks a successful (re)load of policy `revision`.
    pub fn policy_loaded(&self, revision: &str) {
        self.policy_info.reset();
        self.policy_info.with_label_values(&[revision]).set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.policy_last_load.set(now);
        self.policy_reloads.with_label_values(&["success"]).inc();
        self.policy_load_ok.set(1);
    }

    /// Counts one shadow evaluation under `result` ([`SHADOW_RESULTS`]).
    pub fn shadow_result(&self, result: &str) {
        self.shadow_evaluations.with_label_values(&[result]).inc();
    }

    /// Counts one disagreement under `direction` ([`SHADOW_DIRECTIONS`]).
    pub fn shadow_disagreement(&self, direction: &str) {
        self.shadow_disagreements
            .with_label_values(&[direction])
            .inc();
    }

    /// Marks shadow set `revision` as evaluating; None: shadow mode is off.
    pub fn shadow_loaded(&self, revision: Option<&str>) {
        self.shadow_policy_info.reset();
        if let Some(r) = revision {
            self.shadow_policy_info.with_label_values(&[r]).set(1);
        }
        self.shadow_policy_load_ok.set(1);
    }

    pub fn shadow_refused(&self) {
        self.shadow_policy_load_ok.set(0);
    }

    pub fn policy_refused(&self) {
        self.policy_reloads.with_label_values(&["failure"]).inc();
        self.policy_load_ok.set(0);
    }

    /// Text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Every reason label `tss_gate_request_failures_total` can carry.
pub const FAILURE_REASONS: &[&str] = &[
    "internal",
    "missing_token",
    "malformed_token",
    "bad_algorithm",
    "bad_signature",
    "unknown_key",
    "expired",
    "not_yet_valid",
    "missing_claim",
    "malformed_claims",
    "bad_package_data",
    "bad_request",
    "too_deep",
    "body_too_large",
    "policy_error",
    "policy_timeout",
    "policy_undefined",
    "policy_shape",
    "overloaded",
    "deadline",
    "decision_log",
    "replay_mismatch",
    "store",
    "signing",
];
