//! The SQLite store's own tests: exact usage, holds, the task state
//! machine, the group commit, migration and query plans.

use super::schema::SCHEMA;
use super::usage::sql_usage;
use super::writer::{GROUP_COMMIT_BATCH, Pace};
use super::*;
use crate::store::{DecideRequest, GroupRef, Outcome, Verdict};

fn row(limit: &str, key: &str, amount: &str) -> (Row, String) {
    (
        Row {
            limit: limit.into(),
            group_key: key.into(),
            amount: Amount::parse(amount).unwrap(),
            token: "T".into(),
        },
        format!("g={key}"),
    )
}

/// Decides a fresh `id` in one group, holding `hold`, and returns the
/// usage the decision saw once its batch committed.
fn decide_seeing(
    s: &SqliteStore,
    id: &str,
    group: GroupRef,
    hold: &[(Row, String)],
    now: i64,
    approved: bool,
) -> Usage {
    let mut seen = None;
    let out = s
        .decide(
            &DecideRequest {
                request_id: id,
                digest: &[2; 32],
                groups: &[group],
                hold,
                now_ms: Some(now),
                fits: &|_| true,
            },
            &mut |_, u| {
                seen = Some(u[0]);
                Verdict {
                    answer: None,
                    approved,
                }
            },
        )
        .unwrap();
    match out {
        Outcome::Decided(p) => p.wait().unwrap(),
        Outcome::Prior(_) => panic!("fresh id {id}"),
    }
    seen.unwrap()
}

fn usage(s: &SqliteStore, limit: &str, key: &str, window_ms: i64, now: i64) -> Usage {
    let g = GroupRef {
        limit: limit.into(),
        key: key.into(),
        window_ms,
    };
    let id = format!("probe-{now}-{}", rand::random::<u64>());
    decide_seeing(s, &id, g, &[], now, false)
}

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("s.sqlite")).unwrap();
    (dir, s)
}

#[test]
fn usage_is_exact_inside_the_window_and_excludes_its_start() {
    let (_d, s) = store();
    for (i, (t, a)) in [
        (1_000, "1.5"),
        (2_000, "2.25"),
        (3_000, "0.000000000000000001"),
    ]
    .iter()
    .enumerate()
    {
        s.seed(&format!("r{i}"), *t, &[row("l", "g", a)]).unwrap();
    }
    let u = usage(&s, "l", "g", 10_000, 3_000);
    assert_eq!(
        (u.amount.to_string(), u.count),
        ("3.750000000000000001".into(), 3)
    );
    // (since, now]: a row exactly at now - window is outside.
    let u = usage(&s, "l", "g", 2_000, 3_000);
    assert_eq!(
        (u.amount.to_string(), u.count),
        ("2.250000000000000001".into(), 2)
    );
    let u = usage(&s, "l", "g", 500, 10_000);
    assert_eq!(u, Usage::default());
    // Other groups and limits are separate.
    assert_eq!(usage(&s, "l", "h", 10_000, 3_000), Usage::default());
    assert_eq!(usage(&s, "m", "g", 10_000, 3_000), Usage::default());
}

fn approval(id: &str) -> crate::store::ApprovalRecord {
    crate::store::ApprovalRecord {
        request_id: id.into(),
        request_type: "KEYSIGN".into(),
        at_ms: 1_000,
        digest: "ab".into(),
        facts: format!("{{\"of\":\"{id}\"}}"),
    }
}

#[test]
fn task_states_release_and_rehold_exactly_their_own_rows() {
    use crate::store::TaskState::*;
    let (_d, s) = store();
    for id in ["a", "b", "c"] {
        s.seed(id, 1_000, &[row("l", "g", "10"), row("m", "h", "1")])
            .unwrap();
        s.record_approval(&approval(id)).unwrap().wait().unwrap();
    }
    // The first record of an id wins.
    let mut other = approval("a");
    other.facts = "{}".into();
    s.record_approval(&other).unwrap().wait().unwrap();
    let a = s.approval("a").unwrap().unwrap();
    assert_eq!(
        (a.record.facts.as_str(), a.state),
        ("{\"of\":\"a\"}", Approved)
    );
    assert!(s.approval("zz").unwrap().is_none());

    let u = |s: &SqliteStore| usage(s, "l", "g", 100_000, 2_000).amount.to_string();
    assert_eq!(u(&s), "30");
    // Released: exactly a's rows stop counting, in both its groups.
    let t = s
        .transition("a", Released, 1_500, "event e1 failed")
        .unwrap();
    assert_eq!(
        (t.before, t.after, t.rows),
        (Some(Approved), Some(Released), 2)
    );
    assert_eq!(u(&s), "20");
    assert_eq!(usage(&s, "m", "h", 100_000, 2_000).count, 2);
    // Again: nothing more.
    let t = s
        .transition("a", Released, 1_600, "event e2 failed")
        .unwrap();
    assert_eq!(
        (t.before, t.after, t.rows),
        (Some(Released), Some(Released), 0)
    );
    assert_eq!(u(&s), "20");
    // A late `succeeded` re-holds them.
    let t = s
        .transition("a", Executed, 1_700, "event e3 succeeded")
        .unwrap();
    assert_eq!(
        (t.before, t.after, t.rows),
        (Some(Released), Some(Executed), 2)
    );
    assert_eq!(u(&s), "30");
    // Executed never goes back to released.
    let t = s
        .transition("a", Released, 1_800, "event e4 failed")
        .unwrap();
    assert_eq!(
        (t.before, t.after, t.rows),
        (Some(Executed), Some(Executed), 0)
    );
    assert_eq!(u(&s), "30");
    // A hand-made void stays when a later `succeeded` re-holds the
    // event's voids.
    let conn = connect(s.path(), false).unwrap();
    assert_eq!(void(&conn, "b", 1_900, "checked the chain").unwrap(), 2);
    assert_eq!(u(&s), "20");
    let t = s
        .transition("b", Released, 2_000, "event e5 failed")
        .unwrap();
    assert_eq!(t.rows, 0, "nothing left to release");
    let t = s
        .transition("b", Executed, 2_100, "event e6 succeeded")
        .unwrap();
    assert_eq!((t.after, t.rows), (Some(Executed), 0));
    assert_eq!(u(&s), "20", "the manual void stands");
    // Unknown request: nothing.
    let t = s
        .transition("nope", Released, 2_200, "event e7 failed")
        .unwrap();
    assert_eq!((t.before, t.after, t.rows), (None, None, 0));
    let b = s.approval("b").unwrap().unwrap();
    assert_eq!(b.changed, Some((2_100, "event e6 succeeded".into())));
    let listed: Vec<String> = s
        .approvals(0, 10)
        .unwrap()
        .into_iter()
        .map(|a| a.record.request_id)
        .collect();
    assert_eq!(listed.len(), 3);
}

#[test]
fn events_are_stored_once_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let ev = crate::store::StoredEvent {
        event_id: "e1".into(),
        received_at_ms: 5,
        node_id: "n".into(),
        event_type: "request.keysign.failed".into(),
        request_id: "r".into(),
        body: "{}".into(),
    };
    {
        let s = SqliteStore::open(&path).unwrap();
        assert!(!s.event_stored("e1").unwrap());
        assert!(s.put_event(&ev).unwrap());
        assert!(s.event_stored("e1").unwrap());
        let mut again = ev.clone();
        again.body = "{\"other\":1}".into();
        assert!(!s.put_event(&again).unwrap());
        s.record_approval(&approval("r")).unwrap().wait().unwrap();
        s.transition("r", crate::store::TaskState::Released, 6, "event e1")
            .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert!(!s.put_event(&ev).unwrap(), "still there after a reopen");
    assert!(s.event_stored("e1").unwrap() && !s.event_stored("e2").unwrap());
    let conn = connect(&path, false).unwrap();
    let body: String = conn
        .query_row("SELECT body FROM events WHERE event_id = 'e1'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(body, "{}", "the first delivery is kept");
    assert_eq!(
        s.approval("r").unwrap().unwrap().state,
        crate::store::TaskState::Released
    );
}

#[test]
fn a_version_1_file_migrates_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.sqlite");
    {
        let mut conn = connect(&path, true).unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch(SCHEMA).unwrap();
        tx.pragma_update(None, "user_version", 1).unwrap();
        tx.execute(
            "INSERT INTO ledger (limit_id, group_key, seq, at_ms, request_id, group_name, token, amount, cum_amount, cum_count, digest) \
             VALUES ('l', 'g', 1, 1000, 'old', 'g', 'T', '5', '5', 1, 'd')",
            [],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let conn = connect(&path, false).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    assert_eq!(usage(&s, "l", "g", 100_000, 2_000).count, 1);
    // Its old rows can be released by a task's failure like new ones.
    s.record_approval(&approval("old")).unwrap().wait().unwrap();
    let t = s
        .transition("old", crate::store::TaskState::Released, 1_500, "event x")
        .unwrap();
    assert_eq!(t.rows, 1);
    assert_eq!(usage(&s, "l", "g", 100_000, 2_000).count, 0);
}

fn approval_at(id: &str, at_ms: i64) -> crate::store::ApprovalRecord {
    crate::store::ApprovalRecord {
        at_ms,
        ..approval(id)
    }
}

/// A decision under a cap on ("l", "g") as the pipeline makes it: the
/// rows are held only when they fit, and approved only then.
fn capped(s: &SqliteStore, id: &str, now: i64, amount: &str, cap: &str) -> bool {
    let g = [GroupRef {
        limit: "l".into(),
        key: "g".into(),
        window_ms: 1_000_000,
    }];
    let a = Amount::parse(amount).unwrap();
    let cap = Amount::parse(cap).unwrap();
    let fits = |u: &[Usage]| u[0].amount.checked_add(a).is_some_and(|t| t <= cap);
    let mut approved = false;
    let out = s
        .decide(
            &DecideRequest {
                request_id: id,
                digest: &[4; 32],
                groups: &g,
                hold: &[row("l", "g", amount)],
                now_ms: Some(now),
                fits: &fits,
            },
            &mut |_, u| {
                approved = fits(u);
                Verdict {
                    answer: Some(if approved { "A" } else { "R" }.into()),
                    approved,
                }
            },
        )
        .unwrap();
    match out {
        Outcome::Decided(p) => p.wait().unwrap(),
        Outcome::Prior(_) => panic!("fresh id"),
    }
    approved
}

#[test]
fn every_edge_of_the_task_state_machine() {
    use crate::store::TaskState::*;
    let (_d, s) = store();
    let u = |s: &SqliteStore| usage(s, "l", "g", 100_000, 5_000);
    for (i, id) in ["ap", "ex", "re"].iter().enumerate() {
        s.seed(id, 1_000, &[row("l", "g", "10")]).unwrap();
        s.record_approval(&approval_at(id, 1_000 + i as i64))
            .unwrap()
            .wait()
            .unwrap();
    }
    let t = s
        .transition("ex", Executed, 1_100, "event x1 succeeded")
        .unwrap();
    assert_eq!(
        (t.before, t.after, t.rows),
        (Some(Approved), Some(Executed), 0),
        "executing keeps the rows"
    );
    assert_eq!(u(&s).amount.to_string(), "30");
    let t = s
        .transition("re", Released, 1_100, "event r1 failed")
        .unwrap();
    assert_eq!(
        (t.before, t.after, t.rows),
        (Some(Approved), Some(Released), 1)
    );
    assert_eq!(u(&s).amount.to_string(), "20");
    // Every edge that changes nothing: same state, to Approved, and
    // Executed → Released.
    for (id, to, stays) in [
        ("ap", Approved, Approved),
        ("ex", Executed, Executed),
        ("ex", Approved, Executed),
        ("ex", Released, Executed),
        ("re", Released, Released),
        ("re", Approved, Released),
    ] {
        let was = s.approval(id).unwrap().unwrap();
        let t = s.transition(id, to, 1_200, "event later").unwrap();
        assert_eq!(
            (t.before, t.after, t.rows),
            (Some(stays), Some(stays), 0),
            "{id} to {to:?}"
        );
        assert_eq!(s.approval(id).unwrap().unwrap(), was, "{id} to {to:?}");
        assert_eq!(u(&s).amount.to_string(), "20", "{id} to {to:?}");
    }
    assert_eq!(
        s.approval("ex").unwrap().unwrap().changed,
        Some((1_100, "event x1 succeeded".into())),
        "the last change is kept, not the refused one"
    );
    let t = s
        .transition("ap", Executed, 1_300, "event a1 succeeded")
        .unwrap();
    assert_eq!(
        (t.before, t.after, t.rows),
        (Some(Approved), Some(Executed), 0)
    );
    let t = s
        .transition("re", Executed, 1_400, "event r2 succeeded")
        .unwrap();
    assert_eq!(
        (t.before, t.after, t.rows),
        (Some(Released), Some(Executed), 1)
    );
    assert_eq!(u(&s).amount.to_string(), "30");
    assert_eq!(u(&s).count, 3);
    // Newest first, at most `limit`, only after `since`.
    let ids = |since, limit| -> Vec<String> {
        s.approvals(since, limit)
            .unwrap()
            .into_iter()
            .map(|a| a.record.request_id)
            .collect()
    };
    assert_eq!(ids(0, 10), ["re", "ex", "ap"]);
    assert_eq!(ids(0, 2), ["re", "ex"]);
    assert_eq!(ids(1_000, 10), ["re", "ex"]);
}

#[test]
fn a_release_makes_room_for_exactly_its_amount_and_a_rehold_takes_it_back() {
    use crate::store::TaskState::*;
    let (_d, s) = store();
    s.seed("a", 1_000, &[row("l", "g", "10")]).unwrap();
    s.seed("b", 1_100, &[row("l", "g", "15")]).unwrap();
    for id in ["a", "b"] {
        s.record_approval(&approval(id)).unwrap().wait().unwrap();
    }
    assert!(!capped(&s, "c1", 2_000, "6", "30"));
    assert!(capped(&s, "c2", 2_000, "5", "30"), "exactly full");
    let t = s
        .transition("a", Released, 2_500, "event f failed")
        .unwrap();
    assert_eq!(t.rows, 1);
    // Room for a's 10, not one unit more, for the very next decision.
    assert!(!capped(&s, "d1", 3_000, "10.000000000000000001", "30"));
    assert!(capped(&s, "d2", 3_000, "10", "30"));
    assert!(!capped(&s, "d3", 3_000, "0.000000000000000001", "30"));
    // The node's late `succeeded`: a counts again (it spent the amount),
    // over the cap, so nothing more fits.
    let t = s
        .transition("a", Executed, 3_500, "event s succeeded")
        .unwrap();
    assert_eq!(t.rows, 1);
    let now = usage(&s, "l", "g", 1_000_000, 4_000);
    assert_eq!((now.amount.to_string(), now.count), ("40".into(), 4));
    assert!(!capped(&s, "e1", 4_000, "0.000000000000000001", "30"));
    // A release while another decision's rows are still held (not yet
    // committed) leaves both counted exactly once.
    let g = [GroupRef {
        limit: "l".into(),
        key: "g".into(),
        window_ms: 1_000_000,
    }];
    s.record_approval(&approval("h")).unwrap().wait().unwrap();
    let out = s
        .decide(
            &DecideRequest {
                request_id: "h",
                digest: &[5; 32],
                groups: &g,
                hold: &[row("l", "g", "7")],
                now_ms: Some(5_000),
                fits: &|_| true,
            },
            &mut |_, _| Verdict {
                answer: Some("A".into()),
                approved: true,
            },
        )
        .unwrap();
    let t = s
        .transition("b", Released, 5_000, "event g failed")
        .unwrap();
    assert_eq!(t.rows, 1);
    let now = usage(&s, "l", "g", 1_000_000, 5_000);
    assert_eq!((now.amount.to_string(), now.count), ("32".into(), 4));
    let Outcome::Decided(p) = out else { panic!() };
    p.wait().unwrap();
    let now = usage(&s, "l", "g", 1_000_000, 5_000);
    assert_eq!((now.amount.to_string(), now.count), ("32".into(), 4));
}

#[test]
fn releases_rehold_and_decisions_racing_on_one_group_stay_exact_across_a_reopen() {
    use crate::store::TaskState::*;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let s = SqliteStore::open(&path).unwrap();
    for i in 0..50 {
        let id = format!("s{i}");
        s.seed(&id, 1_000, &[row("l", "g", "1")]).unwrap();
        s.record_approval(&approval(&id)).unwrap().wait().unwrap();
    }
    // Full (50 of 50). Two threads release the same 20 tasks (each is
    // released once) while four decide against the cap.
    let (released, approved) = std::thread::scope(|sc| {
        let s = &s;
        let rel: Vec<_> = (0..2)
            .map(|_| {
                sc.spawn(move || {
                    (0..20)
                        .map(|i| {
                            s.transition(&format!("s{i}"), Released, 2_000, "event failed")
                                .unwrap()
                                .rows
                        })
                        .sum::<usize>()
                })
            })
            .collect();
        let dec: Vec<_> = (0..4)
            .map(|t| {
                sc.spawn(move || {
                    (0..8)
                        .filter(|i| capped(s, &format!("d{t}-{i}"), 3_000, "1", "50"))
                        .count()
                })
            })
            .collect();
        (
            rel.into_iter().map(|h| h.join().unwrap()).sum::<usize>(),
            dec.into_iter().map(|h| h.join().unwrap()).sum::<usize>(),
        )
    });
    assert_eq!(released, 20);
    let mut more = 0;
    while capped(&s, &format!("m{more}"), 4_000, "1", "50") {
        more += 1;
    }
    assert_eq!(approved + more, 20, "exactly the released room was used");
    let u = usage(&s, "l", "g", 1_000_000, 5_000);
    assert_eq!((u.amount.to_string(), u.count), ("50".into(), 50));
    // Two threads re-hold the same 10 (each re-held once).
    let reheld: usize = std::thread::scope(|sc| {
        let s = &s;
        let hs: Vec<_> = (0..2)
            .map(|_| {
                sc.spawn(move || {
                    (0..10)
                        .map(|i| {
                            s.transition(&format!("s{i}"), Executed, 6_000, "event ok")
                                .unwrap()
                                .rows
                        })
                        .sum::<usize>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(reheld, 10);
    let u = usage(&s, "l", "g", 1_000_000, 7_000);
    assert_eq!((u.amount.to_string(), u.count), ("60".into(), 60));
    drop(s);
    let s = SqliteStore::open(&path).unwrap();
    let u = usage(&s, "l", "g", 1_000_000, 7_000);
    assert_eq!((u.amount.to_string(), u.count), ("60".into(), 60));
    let state = |id: &str| s.approval(id).unwrap().unwrap().state;
    assert_eq!(
        (state("s0"), state("s15"), state("s30")),
        (Executed, Released, Approved)
    );
    assert!(!capped(&s, "over", 7_000, "10.000000000000000001", "70"));
    assert!(capped(&s, "fits", 7_000, "10", "70"));
}

/// The usage a decision sees (from the in-memory heads and first rows
/// once they are known) always equals the usage read afresh from
/// SQLite, as time moves on, windows of several lengths (so a window's
/// start also moves back), approvals land in the queried groups, and
/// rows are voided behind the server's back (`ledger void`).
#[test]
fn remembered_window_starts_give_the_same_usage_as_sqlite() {
    use rand::{Rng, SeedableRng};
    let (_d, s) = store();
    let conn = connect(s.path(), false).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let mut now = 10_000i64;
    let mut ids = Vec::new();
    for step in 0..600 {
        now += [0, 1, 7, 150, 900][rng.gen_range(0..5)];
        let key = ["g1", "g2"][rng.gen_range(0..2)];
        let window = [1_000, 2_500, 10_000][rng.gen_range(0..3)];
        match rng.gen_range(0..10) {
            0..=4 => {
                let id = format!("a{step}");
                let g = GroupRef {
                    limit: "l".into(),
                    key: key.into(),
                    window_ms: window,
                };
                let amount = rng.gen_range(1..1_000u32).to_string();
                let hold = [row("l", key, &amount)];
                let seen = decide_seeing(&s, &id, g, &hold, now, true);
                let truth = sql_usage(&conn, "l", key, now - window).unwrap();
                // What the decision saw excludes its own row.
                let mut with_own = seen;
                with_own.amount = with_own
                    .amount
                    .checked_add(Amount::parse(&amount).unwrap())
                    .unwrap();
                with_own.count += 1;
                assert_eq!(
                    with_own, truth,
                    "step {step}: approval in {key}, window {window}"
                );
                ids.push(id);
            }
            5 if !ids.is_empty() => {
                let id = &ids[rng.gen_range(0..ids.len())];
                void(&conn, id, now, "test").unwrap();
            }
            _ => {
                let truth = sql_usage(&conn, "l", key, now - window).unwrap();
                assert_eq!(
                    usage(&s, "l", key, window, now),
                    truth,
                    "step {step}: {key}, window {window}"
                );
            }
        }
    }
    assert!(!lock(&s.shared.pending).tails.is_empty());
}

#[test]
fn the_commit_hook_runs_before_each_batch_is_durable() {
    let (_d, s) = store();
    let seen = Arc::new(AtomicU64::new(0));
    let count = seen.clone();
    s.set_commit_hook(Arc::new(move || {
        count.fetch_add(1, Ordering::SeqCst);
    }));
    for i in 0..3 {
        // Each decision waits for its commit: the hook ran before it.
        usage(&s, "l", "k", 60_000, 1_000 + i);
        assert!(seen.load(Ordering::SeqCst) > i as u64, "decision {i}");
    }
    assert_eq!(s.batch_window(), Duration::ZERO, "open() commits at once");
}

#[test]
fn a_group_commit_goes_once_nobody_is_left_to_join_it() {
    let dir = tempfile::tempdir().unwrap();
    let s =
        SqliteStore::open_with(&dir.path().join("s.sqlite"), Duration::from_millis(50)).unwrap();
    let deciding = Arc::new(AtomicU64::new(1));
    let d = deciding.clone();
    s.set_load_hint(Arc::new(move || d.load(Ordering::SeqCst) as usize));
    // Five bursts of 20 decisions queued back to back (fast traffic),
    // each burst waited for before the next.
    let run = |from: i64| {
        let t = Instant::now();
        for b in 0..5 {
            let pending: Vec<Pending> = (0..20)
                .map(|i| {
                    let id = format!("r-{from}-{b}-{i}");
                    let g = GroupRef {
                        limit: "l".into(),
                        key: "k".into(),
                        window_ms: 60_000,
                    };
                    let verdict = &mut |_, _: &[Usage]| Verdict {
                        answer: None,
                        approved: false,
                    };
                    match s.decide(
                        &DecideRequest {
                            request_id: &id,
                            digest: &[2; 32],
                            groups: &[g],
                            hold: &[],
                            now_ms: Some(from),
                            fits: &|_| true,
                        },
                        verdict,
                    ) {
                        Ok(Outcome::Decided(p)) => p,
                        _ => panic!("{id} not decided"),
                    }
                })
                .collect();
            for p in pending {
                p.wait().unwrap();
            }
        }
        t.elapsed()
    };
    // Another request still being decided: each burst's commit waits
    // its 50 ms for it.
    let waited = run(1_000);
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    // Nobody else being decided: nobody can join, each goes at once.
    deciding.store(0, Ordering::SeqCst);
    let alone = run(2_000);
    assert!(alone < waited / 2, "{alone:?} against {waited:?}");
}

#[test]
fn the_group_commit_waits_only_for_fast_traffic() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    // One approval every 3 ms: never held back.
    let mut p = Pace::new(ms(8));
    for i in 0..50 {
        p.arrived(t0 + ms(3 * i));
    }
    assert_eq!(p.wait_until(1, t0 + ms(147), None), None);
    // Ten a millisecond: wait up to the configured time after the first.
    let mut p = Pace::new(ms(8));
    for i in 0..50 {
        p.arrived(t0 + Duration::from_micros(100 * i));
    }
    let first = t0 + ms(5);
    assert_eq!(p.wait_until(1, first, None), Some(first + ms(8)));
    assert_eq!(p.wait_until(1, first, Some(5)), Some(first + ms(8)));
    assert_eq!(p.wait_until(3, first, Some(1)), Some(first + ms(8)));
    // Nobody still being decided: nobody can join.
    assert_eq!(p.wait_until(1, first, Some(0)), None);
    assert_eq!(p.wait_until(3, first, Some(0)), None);
    assert_eq!(
        p.wait_until(GROUP_COMMIT_BATCH, first, None),
        None,
        "a full batch goes at once"
    );
    // After a quiet second the average is above the threshold again.
    p.arrived(t0 + ms(1_100));
    assert_eq!(p.wait_until(1, t0 + ms(1_100), None), None);
    // Switched off.
    let mut p = Pace::new(Duration::ZERO);
    for i in 0..50 {
        p.arrived(t0 + Duration::from_micros(100 * i));
    }
    assert_eq!(p.wait_until(1, t0, None), None);
}

#[test]
fn voids_release_and_pruning_old_rows_keeps_totals() {
    let (_d, s) = store();
    for i in 0..10 {
        s.seed(&format!("r{i}"), 1_000 * (i + 1), &[row("l", "g", "10")])
            .unwrap();
    }
    let conn = connect(s.path(), false).unwrap();
    assert_eq!(void(&conn, "r7", 50_000, "never ran").unwrap(), 1);
    assert_eq!(void(&conn, "r7", 50_000, "again").unwrap(), 0);
    let u = usage(&s, "l", "g", 100_000, 10_000);
    assert_eq!((u.amount.to_string(), u.count), ("90".into(), 9));
    // Rows older than retention are deleted from the start of a group:
    // the running totals of the rest still give the window exactly.
    conn.execute("DELETE FROM ledger WHERE at_ms <= 3000", [])
        .unwrap();
    let u = usage(&s, "l", "g", 4_500, 10_000);
    assert_eq!(
        (u.amount.to_string(), u.count),
        ("40".into(), 4),
        "r5..r9 minus r7"
    );
    let u = usage(&s, "l", "g", 100_000, 10_000);
    assert_eq!((u.amount.to_string(), u.count), ("60".into(), 6));
}

#[test]
fn peaks_are_each_limits_fullest_group_inside_its_window() {
    let (_d, s) = store();
    s.seed("r1", 1_000, &[row("l", "a", "10"), row("m", "x", "1")])
        .unwrap();
    s.seed("r2", 2_000, &[row("l", "a", "10")]).unwrap();
    s.seed("r3", 3_000, &[row("l", "a", "10")]).unwrap();
    s.seed("r4", 3_500, &[row("l", "b", "25")]).unwrap();
    let conn = connect(s.path(), false).unwrap();
    let peaks = |windows: &[(&str, i64)], now: i64| -> Vec<(String, u64)> {
        let w: Vec<(String, i64)> = windows.iter().map(|(l, w)| (l.to_string(), *w)).collect();
        peaks_on(&conn, &w, now)
            .unwrap()
            .into_iter()
            .map(|u| (u.amount.to_string(), u.count))
            .collect()
    };
    assert_eq!(
        peaks(&[("l", 10_000), ("m", 10_000), ("gone", 10_000)], 4_000),
        [("30".into(), 3), ("1".into(), 1), ("0".into(), 0)]
    );
    // A voided row stops counting: the largest amount and the largest
    // count are now different groups' (b's 25, a's 2 rows).
    assert_eq!(void(&conn, "r3", 4_000, "never ran").unwrap(), 1);
    assert_eq!(peaks(&[("l", 10_000)], 4_000), [("25".into(), 2)]);
    // (since, now]: the window slides past a's rows, then b's.
    assert_eq!(peaks(&[("l", 2_000)], 4_000), [("25".into(), 1)]);
    assert_eq!(peaks(&[("l", 600)], 4_000), [("25".into(), 1)]);
    assert_eq!(peaks(&[("l", 600)], 4_100), [("0".into(), 0)]);
    // Through the trait: now, by the wall clock.
    let w = [("l".to_owned(), 10_000), ("m".to_owned(), 3_000)];
    let p = Store::peaks(&s, &w).unwrap();
    assert_eq!(
        p,
        [Usage::default(); 2],
        "the wall clock is long past 2000 ms"
    );
    let now = crate::store::now_ms();
    s.seed(
        "r5",
        now,
        &[row("m", "x", "4"), row("m", "y", "2"), row("m", "y", "2")],
    )
    .unwrap();
    let p = Store::peaks(&s, &w).unwrap();
    assert_eq!((p[1].amount.to_string(), p[1].count), ("4".into(), 2));
    // Groups are found by seeks on the primary key, never a sort; their
    // usage by the decisions' own queries.
    for q in [Q_FIRST_GROUP, Q_NEXT_GROUP] {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {q}")).unwrap();
        let params: &[&dyn rusqlite::ToSql] = &[&"l", &"k"];
        let plan: Vec<String> = stmt
            .query_map(&params[..stmt.parameter_count()], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join(" | ");
        assert!(
            plan.contains("USING PRIMARY KEY (limit_id=?"),
            "{q}: {plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{q}: {plan}");
    }
}

#[test]
fn a_retry_finds_its_record_and_another_payload_is_told_apart() {
    let (_d, s) = store();
    let g = [GroupRef {
        limit: "l".into(),
        key: "g".into(),
        window_ms: 1_000,
    }];
    let hold = [row("l", "g", "1")];
    let mut calls = 0;
    let mut decide = |_: i64, _: &[Usage]| {
        calls += 1;
        Verdict {
            answer: Some("A".into()),
            approved: true,
        }
    };
    match s
        .decide(
            &DecideRequest {
                request_id: "x",
                digest: &[7; 32],
                groups: &g,
                hold: &hold,
                now_ms: None,
                fits: &|_| true,
            },
            &mut decide,
        )
        .unwrap()
    {
        Outcome::Decided(p) => p.wait().unwrap(),
        Outcome::Prior(_) => panic!(),
    }
    for (digest, want) in [
        ([7; 32], Prior::Same("A".into())),
        ([8; 32], Prior::Different),
    ] {
        match s
            .decide(
                &DecideRequest {
                    request_id: "x",
                    digest: &digest,
                    groups: &g,
                    hold: &hold,
                    now_ms: None,
                    fits: &|_| true,
                },
                &mut decide,
            )
            .unwrap()
        {
            Outcome::Prior(p) => assert_eq!(p, want),
            Outcome::Decided(_) => panic!("decided twice"),
        }
    }
    assert_eq!(calls, 1);
}

#[test]
fn a_rejection_releases_its_hold_and_held_rows_count_once() {
    let (_d, s) = store();
    let g = [GroupRef {
        limit: "l".into(),
        key: "g".into(),
        window_ms: 100_000,
    }];
    let hold = [row("l", "g", "5")];
    // Rejected: nothing stays.
    let out = s
        .decide(
            &DecideRequest {
                request_id: "r1",
                digest: &[1; 32],
                groups: &g,
                hold: &hold,
                now_ms: Some(1_000),
                fits: &|_| true,
            },
            &mut |_, _| Verdict {
                answer: Some("R".into()),
                approved: false,
            },
        )
        .unwrap();
    let Outcome::Decided(p) = out else { panic!() };
    p.wait().unwrap();
    assert_eq!(usage(&s, "l", "g", 100_000, 2_000), Usage::default());
    // Approved but not yet committed: counted by the next reader, once,
    // and exactly once again after the commit.
    let out = s
        .decide(
            &DecideRequest {
                request_id: "r2",
                digest: &[2; 32],
                groups: &g,
                hold: &hold,
                now_ms: Some(3_000),
                fits: &|_| true,
            },
            &mut |_, _| Verdict {
                answer: Some("A".into()),
                approved: true,
            },
        )
        .unwrap();
    let seen = usage(&s, "l", "g", 100_000, 4_000);
    assert_eq!((seen.amount.to_string(), seen.count), ("5".into(), 1));
    let Outcome::Decided(p) = out else { panic!() };
    p.wait().unwrap();
    let seen = usage(&s, "l", "g", 100_000, 5_000);
    assert_eq!((seen.amount.to_string(), seen.count), ("5".into(), 1));
    // Concurrent readers and committers: every reader sees 5 * k for
    // some k, never a double count.
    let s = std::sync::Arc::new(s);
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let id = format!("w{t}-{i}");
                    let g = [GroupRef {
                        limit: "l".into(),
                        key: "g".into(),
                        window_ms: 1 << 40,
                    }];
                    let out = s
                        .decide(
                            &DecideRequest {
                                request_id: &id,
                                digest: &[3; 32],
                                groups: &g,
                                hold: &[row("l", "g", "5")],
                                now_ms: None,
                                fits: &|_| true,
                            },
                            &mut |_, _| Verdict {
                                answer: Some("A".into()),
                                approved: true,
                            },
                        )
                        .unwrap();
                    if let Outcome::Decided(p) = out {
                        p.wait().unwrap();
                    }
                }
            })
        })
        .collect();
    let mut last = 0;
    for _ in 0..200 {
        let u = usage(&s, "l", "g", 1 << 40, crate::store::now_ms());
        assert_eq!(u.amount.to_string(), (u.count * 5).to_string());
        assert!(
            u.count >= last,
            "usage never goes back: {} < {last}",
            u.count
        );
        last = u.count;
    }
    for w in writers {
        w.join().unwrap();
    }
    // r2 (at t = 3000) is long outside this window; the 100 are inside.
    let u = usage(&s, "l", "g", 1 << 40, crate::store::now_ms());
    assert_eq!(u.count, 100);
}

#[test]
fn a_second_process_and_a_newer_schema_are_refused() {
    let (d, s) = store();
    let path = d.path().join("s.sqlite");
    let e = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(e.contains("another tss-gate process"), "{e}");
    drop(s);
    let conn = connect(&path, false).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let e = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(e.contains("newer than this tss-gate"), "{e}");
}

#[test]
fn every_query_of_a_decision_uses_an_index() {
    let (_d, s) = store();
    let conn = connect(s.path(), false).unwrap();
    for q in [Q_HEAD, Q_FIRST, Q_VOIDED, Q_RECORD] {
        let sql = format!("EXPLAIN QUERY PLAN {q}");
        let mut stmt = conn.prepare(&sql).unwrap();
        let n = stmt.parameter_count();
        let params: Vec<&dyn rusqlite::ToSql> =
            (0..n).map(|_| &0 as &dyn rusqlite::ToSql).collect();
        let plan: Vec<String> = stmt
            .query_map(params.as_slice(), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join(" | ");
        assert!(
            plan.contains("USING") && !plan.contains("SCAN"),
            "{q}: {plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{q} sorts: {plan}");
        if q == Q_VOIDED {
            // Only voided rows, never the whole window.
            assert!(plan.contains("ledger_voided"), "{plan}");
        }
    }
}
