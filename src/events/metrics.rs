//! The metrics of the node's events: names (the contract with
//! `dashboards/`), bounded label sets, and registration in the server's
//! registry. Every label value comes from a fixed list here.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts};

pub const EVENTS_TOTAL: &str = "tss_gate_events_total";
pub const UNAPPROVED_SIGNATURES_TOTAL: &str = "tss_gate_unapproved_signatures_total";
pub const TASK_OUTCOMES_TOTAL: &str = "tss_gate_task_outcomes_total";
pub const TASK_FAILED_REASONS_TOTAL: &str = "tss_gate_task_failed_reasons_total";
pub const TASK_COMPLETION_SECONDS: &str = "tss_gate_task_completion_seconds";
pub const TASKS_STALLED: &str = "tss_gate_tasks_stalled";
pub const EVENT_ALARMS_TOTAL: &str = "tss_gate_event_alarms_total";

/// `request_type` values of the task metrics.
pub const REQUEST_TYPES: [&str; 4] = ["KEYGEN", "KEYSIGN", "KEYRESHARE", "KEYSHARESIGN"];
/// `result` values of [`EVENTS_TOTAL`].
pub const RESULTS: [&str; 5] = [
    "accepted",
    "duplicate",
    "bad_token",
    "bad_payload",
    "store_error",
];
/// `outcome` values of [`TASK_OUTCOMES_TOTAL`].
pub const OUTCOMES: [&str; 4] = ["succeeded", "failed", "canceled", "declined"];
/// `code` values of [`UNAPPROVED_SIGNATURES_TOTAL`]: the audit's alarm
/// codes plus the two raised before any signature is looked at.
pub const ALARM_CODES: [&str; 9] = [
    "request_not_approved",
    "request_type_mismatch",
    "malformed",
    "signature_type_mismatch",
    "hash_not_approved",
    "path_mismatch",
    "tweak_not_approved",
    "bad_signature",
    "unauditable",
];

/// `code` values of [`EVENT_ALARMS_TOTAL`]: why an event under an approved
/// request id left the approval as it was.
pub const EVENT_ALARM_CODES: [&str; 5] = [
    "request_type_mismatch",
    "request_detail_mismatch",
    "extra_info_mismatch",
    "approval_unreadable",
    "declined_after_approval",
];

/// Buckets from a second to a day: an MPC signing round takes seconds, a
/// task waiting for other approvers can take hours.
const COMPLETION_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 86400.0,
];

pub struct EventMetrics {
    /// Events received, by event type label and result.
    pub events: IntCounterVec,
    /// Signatures (or successful tasks) tss-gate never approved.
    pub unapproved: IntCounterVec,
    /// Events under an approved request id that did not move the approval.
    pub event_alarms: IntCounterVec,
    pub outcomes: IntCounterVec,
    pub failed_reasons: IntCounterVec,
    pub completion: HistogramVec,
    pub stalled: IntGauge,
}

/// A label value from `allowed`, or `other`.
pub fn bounded(value: &str, allowed: &[&'static str]) -> &'static str {
    allowed
        .iter()
        .find(|a| **a == value)
        .copied()
        .unwrap_or("other")
}

impl EventMetrics {
    /// Creates the metrics and registers them in `m`'s registry.
    pub fn new(m: &crate::metrics::Metrics) -> prometheus::Result<Self> {
        let events = IntCounterVec::new(
            Opts::new(
                EVENTS_TOTAL,
                "Node events received on the event endpoint, by event type and result.",
            ),
            &["event_type", "result"],
        )?;
        let unapproved = IntCounterVec::new(
            Opts::new(
                UNAPPROVED_SIGNATURES_TOTAL,
                "Signatures (or completed tasks) the node reported that tss-gate did not approve, by request type and alarm code.",
            ),
            &["request_type", "code"],
        )?;
        let event_alarms = IntCounterVec::new(
            Opts::new(
                EVENT_ALARMS_TOTAL,
                "Events under a request id tss-gate approved that left the approval as it was (another task under the id, or declined), by request type and code.",
            ),
            &["request_type", "code"],
        )?;
        let outcomes = IntCounterVec::new(
            Opts::new(
                TASK_OUTCOMES_TOTAL,
                "Tasks the node reported finished, by request type and outcome.",
            ),
            &["request_type", "outcome"],
        )?;
        let failed_reasons = IntCounterVec::new(
            Opts::new(
                TASK_FAILED_REASONS_TOTAL,
                "Failed or canceled tasks by request type and bounded reason code.",
            ),
            &["request_type", "reason"],
        )?;
        let completion = HistogramVec::new(
            HistogramOpts::new(
                TASK_COMPLETION_SECONDS,
                "Time from tss-gate's approval to the node's succeeded event.",
            )
            .buckets(COMPLETION_BUCKETS.to_vec()),
            &["request_type"],
        )?;
        let stalled = IntGauge::new(
            TASKS_STALLED,
            "Approved tasks with no succeeded/failed event after event_server.stalled_after_seconds.",
        )?;
        // Pre-created so an alert's increase() sees the first alarm, and
        // dashboards show 0 rather than "no data".
        for t in REQUEST_TYPES {
            for code in ALARM_CODES {
                unapproved.with_label_values(&[t, code]).inc_by(0);
            }
            for code in EVENT_ALARM_CODES {
                event_alarms.with_label_values(&[t, code]).inc_by(0);
            }
            for o in OUTCOMES {
                outcomes.with_label_values(&[t, o]).inc_by(0);
            }
            for r in super::model::FAILED_REASON_CODES {
                failed_reasons.with_label_values(&[t, r]).inc_by(0);
            }
            let _ = completion.with_label_values(&[t]);
        }
        for r in RESULTS {
            events.with_label_values(&["unknown", r]).inc_by(0);
        }
        for c in [
            Box::new(events.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(unapproved.clone()),
            Box::new(event_alarms.clone()),
            Box::new(outcomes.clone()),
            Box::new(failed_reasons.clone()),
            Box::new(completion.clone()),
            Box::new(stalled.clone()),
        ] {
            m.register(c)?;
        }
        Ok(Self {
            events,
            unapproved,
            event_alarms,
            outcomes,
            failed_reasons,
            completion,
            stalled,
        })
    }
}
