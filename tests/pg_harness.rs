//! Issue 15: the PostgreSQL harness (tests/common/pg.rs) itself. The service's
//! tests trust it to give them a real server with password authentication
//! over TCP, durable commits across clean and crash restarts, and nothing
//! left behind; these tests check exactly that. Without PostgreSQL they FAIL
//! (scripts/test.sh installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/pg.rs"]
mod pg;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use pg::PgCluster;

fn assert_refused(pg: &PgCluster) {
    let e = TcpStream::connect((Ipv4Addr::LOCALHOST, pg.port()))
        .expect_err("the server should be down");
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
    let err = pg
        .try_psql_tcp(&pg.password(), "SELECT 1")
        .expect_err("psql should not connect to a stopped server");
    assert!(err.contains("Connection refused"), "{err}");
}

/// The service's path: the URL (which holds no secret) plus the password,
/// SCRAM over TCP; a wrong or missing password is refused; the server runs
/// with the settings the harness promises.
#[test]
fn password_authentication_over_tcp() {
    let pg = PgCluster::start();
    assert_eq!(
        pg.url(),
        format!("postgres://tss_gate@127.0.0.1:{}/tss_gate", pg.port())
    );
    assert!(!pg.url().contains(&pg.password()));
    assert!(
        pg.password().len() >= 32,
        "weak password {:?}",
        pg.password()
    );

    let who = pg
        .try_psql_tcp(
            &pg.password(),
            "SELECT current_user, current_database(), inet_server_addr()",
        )
        .unwrap();
    assert_eq!(who.trim(), "tss_gate|tss_gate|127.0.0.1");
    let how = pg.psql(
        "SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host' AND address = '127.0.0.1' \
         AND database = '{all}';\n\
         SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'tss_gate';",
    );
    assert_eq!(how, "scram-sha-256\nt\n");

    let wrong = pg.try_psql_tcp("not-the-password", "SELECT 1").unwrap_err();
    assert!(
        wrong.contains("password authentication failed for user \"tss_gate\""),
        "{wrong}"
    );
    let none = pg.try_psql_tcp("", "SELECT 1").unwrap_err();
    assert!(
        none.contains("password") && !none.contains("timed out"),
        "{none}"
    );

    let settings = pg.psql(
        "SELECT current_setting('fsync'), current_setting('max_connections'), \
         current_setting('listen_addresses'), current_setting('shared_buffers')",
    );
    assert_eq!(settings.trim(), "on|200|127.0.0.1|32MB");
    // psql's errors reach the caller: a test's typo must not pass silently.
    let bad = std::panic::catch_unwind(|| pg.psql("SELEC 1")).unwrap_err();
    let msg = bad.downcast_ref::<String>().unwrap();
    assert!(msg.contains("syntax error"), "{msg}");
}

/// `stop` really stops (refused), and `start_again` comes back on the same
/// URL with every committed row.
#[test]
fn committed_rows_survive_stop_and_start_again() {
    let pg = PgCluster::start();
    let pw = pg.password();
    pg.try_psql_tcp(
        &pw,
        "CREATE TABLE t (id int PRIMARY KEY, v text);\nINSERT INTO t VALUES (1, 'before stop');",
    )
    .unwrap();

    pg.stop();
    assert_refused(&pg);

    pg.start_again();
    let rows = pg.try_psql_tcp(&pw, "SELECT id, v FROM t").unwrap();
    assert_eq!(rows, "1|before stop\n");
    // Still writable, and stop/start_again can repeat.
    pg.try_psql_tcp(&pw, "INSERT INTO t VALUES (2, 'after restart')")
        .unwrap();
    pg.stop();
    pg.start_again();
    let rows = pg.try_psql_tcp(&pw, "SELECT count(*) FROM t").unwrap();
    assert_eq!(rows.trim(), "2");
}

/// `kill` is a real crash (no shutdown checkpoint: the restart runs crash
/// recovery) and `start_again` recovers every committed row, while a
/// transaction that had not committed is gone.
#[test]
fn committed_rows_survive_kill_and_start_again() {
    let pg = PgCluster::start();
    let pw = pg.password();
    pg.try_psql_tcp(
        &pw,
        "CREATE TABLE t (id int PRIMARY KEY);\nINSERT INTO t SELECT generate_series(1, 1000);",
    )
    .unwrap();
    // A transaction that has written rows but not committed when the
    // server dies: its session sleeps inside it until the kill ends it.
    std::thread::scope(|s| {
        let open = s.spawn(|| {
            pg.try_psql_tcp(
                &pw,
                "BEGIN;\nINSERT INTO t VALUES (-1);\nSELECT pg_sleep(25);\nCOMMIT;",
            )
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while pg
            .psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
            .trim()
            != "1"
        {
            assert!(Instant::now() < deadline, "the session never slept");
            std::thread::sleep(Duration::from_millis(20));
        }
        pg.kill();
        let lost = open.join().unwrap().unwrap_err();
        assert!(lost.contains("server closed the connection"), "{lost}");
    });
    assert_refused(&pg);

    pg.start_again();
    assert!(
        pg.log()
            .contains("not properly shut down; automatic recovery in progress"),
        "no crash recovery after kill:\n{}",
        pg.log()
    );
    let rows = pg
        .try_psql_tcp(&pw, "SELECT count(*), sum(id) FROM t")
        .unwrap();
    assert_eq!(rows.trim(), "1000|500500");
}

/// Two clusters run side by side (distinct ports and data), and dropping one
/// stops its server and deletes its directory.
#[test]
fn clusters_are_isolated_and_drop_cleans_up() {
    let a = PgCluster::start();
    let b = PgCluster::start();
    assert_ne!(a.port(), b.port());
    a.psql("CREATE TABLE only_in_a (x int)");
    let in_b = b.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'");
    assert_eq!(in_b.trim(), "0");
    assert_ne!(a.password(), b.password());

    let (port, dir) = (a.port(), a.dir().to_path_buf());
    assert!(dir.join("data/PG_VERSION").is_file());
    drop(a);
    assert!(!dir.exists(), "{} left behind", dir.display());
    let e = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
    assert_eq!(b.psql("SELECT 1").trim(), "1");
}
