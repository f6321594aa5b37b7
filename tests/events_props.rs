//! Node events against spending limits, at the library level: random
//! sequences of requests (fresh ids, re-sends under a used id with another
//! payload or another kind) and node events (every kind, phase and status,
//! with or without the request, redelivered) go through the real SQLite
//! store's read-decide-record step and the real event handling
//! (`events::ingest::apply`), under every `release_on`.
//!
//! The world is honest where tss-gate relies on it: each approved task has a
//! true fate (executed or not), and the node never reports a fate the
//! approved task did not have; about any other attempt under the id it may
//! report anything. What must hold after every step:
//! - an approval whose task executed is never released, so the amounts of
//!   executed tasks never exceed the limit;
//! - an event about another attempt never moves the approval it names;
//! - each approval's state is the one its own events give it;
//! - with no failure outcome in `release_on`, nothing is ever released.
//!
//! Left out by construction: a re-send under the id with the *same*
//! payload (tss-gate answers it as the approved request's retry, so the node's
//! events about it cannot be told apart; docs/events.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};
use tss_gate::events::binding::{RequestDigests, with_digests};
use tss_gate::events::ingest::{self, EventService};
use tss_gate::events::metrics::EventMetrics;
use tss_gate::store::{
    ApprovalRecord, DecideRequest, GroupRef, Outcome, SqliteStore, Store, TaskState, Verdict,
};
use tss_gate::velocity::{Amount, Row};

const KINDS: [(&str, &str, &str, i64); 4] = [
    ("keysign", "KEYSIGN", "KeySign", 2),
    ("keygen", "KEYGEN", "KeyGen", 1),
    ("keyreshare", "KEYRESHARE", "KeyReshare", 3),
    ("keysharesign", "KEYSHARESIGN", "KeyShareSign", 5),
];
const LIMIT: &str = "50000";
const AMOUNT: &str = "9999.99";
const WINDOW_MS: i64 = 86_400_000;
const T0: i64 = 1_764_000_000_000;
const RELEASE_ON: [&[&str]; 6] = [
    &["failed", "canceled", "declined"],
    &["declined"],
    &[],
    &["failed"],
    &["canceled"],
    &["failed", "canceled"],
];

/// A node's report: phase word, status, failed_reason.
type Report = (&'static str, Option<i64>, &'static str);
/// What the node may say of a task that executed.
const EXECUTED: [Report; 3] = [
    ("succeeded", Some(190), ""),
    ("succeeded", None, ""),
    ("updated", Some(190), ""),
];
/// What the node may say of a task that did not execute.
const NOT_EXECUTED: [Report; 6] = [
    ("failed", Some(170), "mpc round timeout"),
    ("failed", Some(180), ""),
    ("updated", Some(180), ""),
    ("failed", Some(160), ""),
    ("updated", Some(160), ""),
    ("failed", Some(170), "rejected by callback server cb-2"),
];
/// Either fate.
const UNDECIDED: [Report; 2] = [("created", Some(110), ""), ("updated", Some(140), "")];

/// One attempt's payload: its kind and its two documents' variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Payload {
    kind: usize,
    detail: u8,
    extra: u8,
}

fn detail_doc(v: u8) -> Value {
    json!({"task_id": format!("task-{v}"), "msg_hash_list": [format!("{v:02x}").repeat(32)]})
}

fn extra_doc(v: u8) -> Value {
    json!({"transaction": {"description": format!("transfer {v}"), "amount": AMOUNT}})
}

#[derive(Debug, Clone)]
enum Op {
    /// A request under id `id` (a fresh id, or a re-send under a used one).
    Request {
        id: u8,
        payload: Payload,
        executes: bool,
    },
    /// The node reports on the approved task of `id` (its true fate).
    Own {
        id: u8,
        report: u8,
        carry: u8,
        string_detail: bool,
    },
    /// The node reports on another attempt under `id`: anything.
    Other {
        id: u8,
        payload: Payload,
        report: u8,
        carry: u8,
    },
    /// An earlier event delivered again.
    Redeliver(u8),
}

fn payload() -> impl Strategy<Value = Payload> {
    (0usize..4, 0u8..3, 0u8..3).prop_map(|(kind, detail, extra)| Payload {
        kind,
        detail,
        extra,
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..8, payload(), any::<bool>())
            .prop_map(|(id, payload, executes)| Op::Request { id, payload, executes }),
        4 => (0u8..8, any::<u8>(), 0u8..4, any::<bool>()).prop_map(|(id, report, carry, string_detail)| Op::Own {
            id,
            report,
            carry,
            string_detail
        }),
        4 => (0u8..8, payload(), any::<u8>(), 0u8..4)
            .prop_map(|(id, payload, report, carry)| Op::Other { id, payload, report, carry }),
        1 => any::<u8>().prop_map(Op::Redeliver),
    ]
}

/// What the test knows of one approved id.
#[derive(Debug)]
struct Approved {
    payload: Payload,
    executes: bool,
    /// The state its own events give it.
    model: TaskState,
}

struct World {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    svc: EventService,
    release_on: &'static [&'static str],
    approved: HashMap<u8, Approved>,
    delivered: Vec<Value>,
    now: i64,
    next_event: u64,
}

fn group() -> GroupRef {
    GroupRef {
        limit: "usdt_24h".into(),
        key: "[\"w\",\"ETH_USDT\"]".into(),
        window_ms: WINDOW_MS,
    }
}

fn row() -> (Row, String) {
    (
        Row {
            limit: "usdt_24h".into(),
            group_key: group().key,
            amount: Amount::parse(AMOUNT).unwrap(),
            token: "ETH_USDT".into(),
        },
        "w".into(),
    )
}

fn payload_digest(p: Payload) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(format!("{}|{}|{}", p.kind, p.detail, p.extra).as_bytes()).into()
}

impl World {
    fn new(release_on: &'static [&'static str]) -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
        let metrics = tss_gate::metrics::Metrics::new();
        let svc = EventService {
            verifier: tss_gate::token::Verifier::new(Vec::new(), 30),
            store: store.clone(),
            metrics: EventMetrics::new(&metrics).unwrap(),
            log: None,
            max_body_bytes: 1 << 20,
            body_read_timeout: Duration::from_secs(5),
            service_name: "props".into(),
            stalled_after_ms: 3_600_000,
            release_on: release_on.iter().map(|s| (*s).to_owned()).collect(),
            admission: tokio::sync::Semaphore::new(1),
        };
        World {
            _dir: dir,
            store,
            svc,
            release_on,
            approved: HashMap::new(),
            delivered: Vec::new(),
            now: T0,
            next_event: 0,
        }
    }

    fn tick(&mut self) -> i64 {
        self.now += 1_000;
        self.now
    }

    /// The request's decision under the limit, as the pipeline takes it.
    fn request(&mut self, id: u8, p: Payload, executes: bool) {
        let now = self.tick();
        let rid = format!("t{id}");
        let limit = Amount::parse(LIMIT).unwrap();
        let amount = Amount::parse(AMOUNT).unwrap();
        let room = |u: &[tss_gate::velocity::Usage]| {
            u[0].amount.checked_add(amount).is_some_and(|t| t <= limit)
        };
        let mut approved = false;
        let out = self
            .store
            .decide(
                &DecideRequest {
                    request_id: &rid,
                    digest: &payload_digest(p),
                    groups: &[group()],
                    hold: &[row()],
                    now_ms: Some(now),
                    fits: &room,
                },
                &mut |_, u| {
                    approved = room(u);
                    Verdict {
                        answer: approved.then(|| "APPROVE".into()),
                        approved,
                    }
                },
            )
            .unwrap();
        match out {
            Outcome::Decided(pending) => {
                pending.wait().unwrap();
                if approved {
                    let facts = with_digests(
                        "{}",
                        &RequestDigests::of(&detail_doc(p.detail), &extra_doc(p.extra)),
                    )
                    .unwrap();
                    self.store
                        .record_approval(&ApprovalRecord {
                            request_id: rid,
                            request_type: KINDS[p.kind].1.into(),
                            at_ms: now,
                            digest: hex::encode(payload_digest(p)),
                            facts,
                        })
                        .unwrap()
                        .wait()
                        .unwrap();
                    self.approved.insert(
                        id,
                        Approved {
                            payload: p,
                            executes,
                            model: TaskState::Approved,
                        },
                    );
                }
            }
            // A retry of the same payload is answered from its record; another
            // payload under the id is refused: nothing new is approved.
            Outcome::Prior(_) => {}
        }
    }

    fn event_doc(
        &mut self,
        id: u8,
        p: Payload,
        r: Report,
        carry: u8,
        string_detail: bool,
    ) -> Value {
        self.next_event += 1;
        let (word, _, data_type, code) = KINDS[p.kind];
        let mut data = json!({
            "data_type": data_type,
            "request_id": format!("t{id}"),
            "request_type": code,
            "failed_reason": r.2,
        });
        if let Some(s) = r.1 {
            data["request_status"] = json!(s);
        }
        if carry & 1 != 0 {
            let d = detail_doc(p.detail);
            data["request_detail"] = if string_detail {
                json!(d.to_string())
            } else {
                d
            };
        }
        if carry & 2 != 0 {
            data["extra_info"] = json!(extra_doc(p.extra).to_string());
        }
        json!({
            "event_id": format!("ev-{}", self.next_event),
            "created_timestamp": self.now,
            "node_id": "node-a",
            "event_type": format!("request.{word}.{}", r.0),
            "data": data,
        })
    }

    fn deliver(&mut self, doc: &Value) {
        let now = self.tick();
        let ev = tss_gate::events::model::parse(&serde_json::to_vec(doc).unwrap()).unwrap();
        ingest::apply(&self.svc, &ev, "node-a-event", now).unwrap();
    }

    fn state(&self, id: u8) -> Option<TaskState> {
        self.store
            .approval(&format!("t{id}"))
            .unwrap()
            .map(|a| a.state)
    }

    /// The state an event about the approved task itself gives it.
    fn model_step(&self, before: TaskState, r: Report) -> TaskState {
        let executed = EXECUTED.contains(&r);
        let declined = r.1 == Some(160) || r.2.contains("rejected");
        let outcome = match r.1 {
            Some(180) => "canceled",
            _ => "failed",
        };
        match before {
            TaskState::Approved | TaskState::Released if executed => TaskState::Executed,
            TaskState::Approved
                if NOT_EXECUTED.contains(&r) && !declined && self.release_on.contains(&outcome) =>
            {
                TaskState::Released
            }
            s => s,
        }
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Request {
                id,
                payload,
                executes,
            } => self.request(id, payload, executes),
            Op::Own {
                id,
                report,
                carry,
                string_detail,
            } => {
                let Some(a) = self.approved.get(&id) else {
                    return;
                };
                let honest: Vec<Report> = if a.executes {
                    EXECUTED.iter().chain(&UNDECIDED).copied().collect()
                } else {
                    NOT_EXECUTED.iter().chain(&UNDECIDED).copied().collect()
                };
                let r = honest[report as usize % honest.len()];
                let p = a.payload;
                let doc = self.event_doc(id, p, r, carry, string_detail);
                self.deliver(&doc);
                let before = self.approved[&id].model;
                let after = self.model_step(before, r);
                self.approved.get_mut(&id).unwrap().model = after;
                self.delivered.push(doc);
            }
            Op::Other {
                id,
                payload,
                report,
                carry,
            } => {
                let all: Vec<Report> = EXECUTED
                    .iter()
                    .chain(&NOT_EXECUTED)
                    .chain(&UNDECIDED)
                    .copied()
                    .collect();
                let mut r = all[report as usize % all.len()];
                if let Some(a) = self.approved.get(&id) {
                    let told_apart = payload.kind != a.payload.kind
                        || (carry & 1 != 0 && payload.detail != a.payload.detail)
                        || (carry & 2 != 0 && payload.extra != a.payload.extra);
                    if payload == a.payload {
                        // The same payload is the approved request's retry.
                        return;
                    }
                    if !told_apart {
                        // Nothing tells it from the approved task: the node's
                        // word on a re-send tss-gate refused is "declined".
                        r = NOT_EXECUTED[3 + (report as usize % 2)];
                    }
                }
                let before = self.state(id);
                let doc = self.event_doc(id, payload, r, carry, false);
                self.deliver(&doc);
                assert_eq!(
                    self.state(id),
                    before,
                    "an event about another attempt moved t{id}: {doc}"
                );
                self.delivered.push(doc);
            }
            Op::Redeliver(i) => {
                if self.delivered.is_empty() {
                    return;
                }
                let doc = self.delivered[i as usize % self.delivered.len()].clone();
                let before: Vec<_> = (0..8).map(|id| self.state(id)).collect();
                self.deliver(&doc);
                let after: Vec<_> = (0..8).map(|id| self.state(id)).collect();
                assert_eq!(before, after, "a redelivery changed a state: {doc}");
            }
        }
    }

    fn check(&self, step: usize, op: &Op) {
        let mut executed = Amount::ZERO;
        for (id, a) in &self.approved {
            let state = self.state(*id).expect("recorded");
            assert_eq!(state, a.model, "step {step} ({op:?}): t{id} {a:?}");
            if a.executes {
                assert_ne!(state, TaskState::Released, "step {step}: t{id} executed");
                executed = executed
                    .checked_add(Amount::parse(AMOUNT).unwrap())
                    .unwrap();
            }
            if !self
                .release_on
                .iter()
                .any(|o| *o == "failed" || *o == "canceled")
            {
                assert_ne!(state, TaskState::Released, "step {step}: t{id}");
            }
        }
        assert!(
            executed <= Amount::parse(LIMIT).unwrap(),
            "step {step}: executed tasks moved {executed} against a {LIMIT} limit"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn events_never_let_executed_amounts_exceed_a_limit(
        release_on in 0usize..RELEASE_ON.len(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut w = World::new(RELEASE_ON[release_on]);
        for (i, op) in ops.iter().enumerate() {
            w.step(op);
            w.check(i, op);
        }
    }
}

/// The report's case, replayed at this level: five approvals fill the
/// limit and execute; declines and failures of re-sends under their ids
/// (each carrying the re-send's request) must not let a sixth or seventh in.
#[test]
fn seven_transfers_against_a_fifty_thousand_limit_are_five() {
    for release_on in RELEASE_ON {
        let mut w = World::new(release_on);
        let p = |detail| Payload {
            kind: 0,
            detail,
            extra: 0,
        };
        for id in 0..5 {
            w.request(id, p(0), true);
        }
        for id in 0..5 {
            w.step(&Op::Request {
                id,
                payload: p(1),
                executes: true,
            });
            // Nothing carried: told from the approved task by nothing, so
            // the node's word on the refused re-send is "declined".
            w.step(&Op::Other {
                id,
                payload: p(1),
                report: 0,
                carry: 0,
            });
            for report in [3, 0, 1] {
                w.step(&Op::Other {
                    id,
                    payload: p(1),
                    report: (EXECUTED.len() + report) as u8,
                    carry: 3,
                });
            }
            w.step(&Op::Other {
                id,
                payload: Payload { kind: 1, ..p(0) },
                report: EXECUTED.len() as u8,
                carry: 0,
            });
        }
        w.request(5, p(0), true);
        w.request(6, p(0), true);
        assert_eq!(w.approved.len(), 5, "release_on {release_on:?}");
        w.check(0, &Op::Redeliver(0));
    }
}
