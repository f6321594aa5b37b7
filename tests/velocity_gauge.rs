//! Issue 36 (item 6): the spending-limit gauge on a PostgreSQL store, which
//! several instances share (the SQLite case against a real Prometheus is in
//! tests/prometheus.rs). `Store::peaks` gives each limit's fullest group at
//! the database's clock; every instance's gauge shows the shared ledger,
//! the one that decided nothing too, and falls with no traffic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod obs;
#[path = "common/pg.rs"]
mod pg;
mod resil;

use std::time::{Duration, Instant};

use common::*;
use obs::gauge::*;
use pg::PgCluster;
use tss_gate::store::{PostgresStore, Store};
use tss_gate::velocity::{Amount, Row};

fn open(ws: &Workspace, db: &PgCluster) -> PostgresStore {
    PostgresStore::open_with(
        &tss_gate::config::PostgresSection {
            url: db.url(),
            password_file: Some(password_file(ws, db)),
            pool_size: 2,
            connect_timeout_ms: 5_000,
            statement_timeout_ms: 10_000,
            ..Default::default()
        }
        .options(),
    )
    .unwrap()
}

fn password_file(ws: &Workspace, db: &PgCluster) -> std::path::PathBuf {
    let secret = ws.path().join("pg-password");
    std::fs::write(&secret, format!("{}\n", db.password())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    secret
}

fn row(limit: &str, key: &str, amount: &str) -> (Row, String) {
    (
        Row {
            limit: limit.into(),
            group_key: key.into(),
            amount: Amount::parse(amount).unwrap(),
            token: "T".into(),
        },
        key.into(),
    )
}

fn peaks(s: &PostgresStore, windows: &[(&str, i64)]) -> Vec<(String, u64)> {
    let w: Vec<(String, i64)> = windows.iter().map(|(l, w)| (l.to_string(), *w)).collect();
    s.peaks(&w)
        .unwrap()
        .into_iter()
        .map(|u| (u.amount.to_string(), u.count))
        .collect()
}

#[test]
fn peaks_are_each_limits_fullest_group_at_the_databases_clock() {
    let db = PgCluster::start();
    let ws = Workspace::new();
    let s = open(&ws, &db);
    assert_eq!(peaks(&s, &[]), []);
    let now = tss_gate::clock::now_ms();
    s.seed(
        "r1",
        now - 50_000,
        &[row("l", "a", "10"), row("m", "x", "1")],
    )
    .unwrap();
    s.seed("r2", now - 40_000, &[row("l", "a", "10.5")])
        .unwrap();
    s.seed("r3", now - 30_000, &[row("l", "a", "10")]).unwrap();
    s.seed("r4", now - 20_000, &[row("l", "b", "25")]).unwrap();
    // a: 30.5 in 3 rows; b: 25 in one.
    assert_eq!(
        peaks(&s, &[("l", 600_000), ("m", 600_000), ("gone", 600_000)]),
        [("30.5".into(), 3), ("1".into(), 1), ("0".into(), 0)]
    );
    // A void stops counting: the largest amount and the largest count are
    // then different groups' (b's 25, a's 2 rows).
    assert_eq!(s.void("r3", now, "never ran").unwrap(), 1);
    assert_eq!(peaks(&s, &[("l", 600_000)]), [("25".into(), 2)]);
    // The window ends now by the database's clock: 35 s back holds b only.
    assert_eq!(peaks(&s, &[("l", 35_000)]), [("25".into(), 1)]);
    assert_eq!(peaks(&s, &[("l", 10_000)]), [("0".into(), 0)]);
}

/// Two instances on one database; wallet B's approvals were made before
/// either started, wallet A's traffic goes to the first only. Both export
/// the shared ledger's values, and both see the 5 s limit fall to 0.
#[test]
fn every_instance_shows_the_shared_ledger_and_it_falls_with_no_traffic() {
    let db = PgCluster::start();
    let ws = Workspace::new();
    let store = open(&ws, &db);
    seed_wallet_b(&store, tss_gate::clock::now_ms());
    let policy = policy_with_limits(&ws, Some(LIMITS));
    let cfg = ws.config_with_policy(
        &policy,
        &format!(
            "state:\n  backend: postgres\n  postgres:\n    url: {}\n    password_file: {}\n",
            db.url(),
            password_file(&ws, &db).display()
        ),
    );
    let a = Server::start(&cfg);
    let b = Server::start(&cfg);
    let gauge = |s: &Server, limit: &str| resil::metric(s, &series(limit));
    let wait = |what: &str, f: &dyn Fn(&Server) -> bool| {
        for s in [&a, &b] {
            resil::poll(what, FALL, || f(s).then_some(()));
        }
    };
    wait("the seeded ledger on both", &|s| {
        gauge(s, USDT).is_some_and(|v| close(v, 0.8))
            && gauge(s, REQUESTS).is_some_and(|v| close(v, 0.7))
    });

    wallet_a_traffic(&a, "pg");
    let started = Instant::now();
    resil::poll(
        "the burst on the deciding instance",
        Duration::from_secs(4),
        || gauge(&a, BURST).filter(|v| *v > 0.0),
    );
    wait("the traffic on both", &|s| {
        gauge(s, USDT).is_some_and(|v| close(v, USDT_AFTER))
    });
    for s in [&a, &b] {
        let r = gauge(s, REQUESTS).unwrap();
        assert!(close(r, REQUESTS_AFTER), "wallet B's, not A's 0.6: {r}");
    }
    // Decisions refresh the deciding instance's gauge soon; the other's
    // within its period. Neither ever showed the denied request's 1.2.
    assert!(started.elapsed() < Duration::from_secs(10));

    wait("the burst limit to fall to 0 on both", &|s| {
        gauge(s, BURST) == Some(0.0)
    });
    for s in [&a, &b] {
        assert!(close(gauge(s, USDT).unwrap(), USDT_AFTER));
    }
}
