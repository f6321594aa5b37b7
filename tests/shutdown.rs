//! Issue 6 acceptance, graceful shutdown: SIGTERM during load. Requests in
//! flight when the signal lands finish with their signed answers, every
//! request the server took in (logged a decision for) reached its client
//! signed, new connections are refused, and the process exits 0. A client
//! that holds its request open past `limits.shutdown_grace_ms` cannot keep
//! the process alive.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod resil;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use resil::*;
use tss_gate::protocol::{CallbackRequest, Status};

fn wait_exit(server: &mut Server, limit: Duration) -> ExitStatus {
    poll("the process to exit", limit, || {
        server.child.try_wait().unwrap()
    })
}

/// request_ids of every decision the server logged (JSON log lines).
fn decided_ids(logs: &str) -> BTreeSet<String> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            let m = v["fields"]["message"].as_str().unwrap_or("");
            m == "decided" || m.starts_with("could not decide")
        })
        .filter_map(|v| v["span"]["request_id"].as_str().map(str::to_owned))
        .collect()
}

/// A request whose body is held back: headers and all but the last 10
/// bytes are sent now, the rest by `finish`.
struct Held {
    stream: TcpStream,
    rest: Vec<u8>,
    id: String,
}

impl Held {
    fn open(server: &Server, req: &CallbackRequest) -> Self {
        let body =
            serde_urlencoded::to_string([("TSS_JWT_MSG", mint(req, &test_keys().node))]).unwrap();
        let mut stream = TcpStream::connect(&server.addr).unwrap();
        write!(
            stream,
            "POST /v2/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        let (now, rest) = body.as_bytes().split_at(body.len() - 10);
        stream.write_all(now).unwrap();
        Held {
            stream,
            rest: rest.to_vec(),
            id: req.request_id.clone(),
        }
    }

    /// Sends the rest and returns the raw response.
    fn finish(mut self) -> (String, String) {
        self.stream.write_all(&self.rest).unwrap();
        self.stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut out = Vec::new();
        // The server closes after answering (it is shutting down).
        let _ = self.stream.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).to_string();
        (self.id, text)
    }
}

#[test]
fn sigterm_under_load_answers_every_accepted_request_and_exits_0() {
    let ws = Workspace::new();
    let cfg = config(&ws, "limits:\n  shutdown_grace_ms: 20000\n");
    let mut server = Server::start_with_args(&cfg, &["--log-json"]);

    // Load: clients on fresh connections, sending until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(Mutex::new(BTreeSet::new()));
    let bad = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (stop, answered, bad, url) = (
                stop.clone(),
                answered.clone(),
                bad.clone(),
                server.check_url(),
            );
            std::thread::spawn(move || {
                let rt = runtime();
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .build()
                    .unwrap();
                let mut refused = 0;
                while !stop.load(Ordering::Relaxed) && refused < 3 {
                    let req = keysign(&fresh_id(&format!("load{t}")));
                    match rt.block_on(send_async(&client, &url, &req, &test_keys().node)) {
                        Ok(a) if a.status == Status::Ok && a.request_id == req.request_id => {
                            answered.lock().unwrap().insert(req.request_id);
                        }
                        Ok(a) => bad.lock().unwrap().push(format!("{a:?}")),
                        // Refused or reset at connect: not accepted. Anything
                        // the server did accept is checked against its log.
                        Err(e) if e.starts_with("send:") => refused += 1,
                        Err(e) => bad.lock().unwrap().push(e),
                    }
                }
            })
        })
        .collect();
    poll("load to get going", Duration::from_secs(30), || {
        (answered.lock().unwrap().len() >= 20).then_some(())
    });

    // Requests in flight for sure: bodies held back across the signal.
    let held: Vec<Held> = (0..3)
        .map(|i| Held::open(&server, &keysign(&format!("held-{i}"))))
        .collect();
    poll(
        "held requests to be in flight",
        Duration::from_secs(30),
        || (metric(&server, "tss_gate_requests_in_flight") >= Some(3.0)).then_some(()),
    );

    signal(&server, libc::SIGTERM);
    poll(
        "the server to start draining",
        Duration::from_secs(30),
        || server.logs().contains("draining").then_some(()),
    );
    // Stopped accepting: a new connection is refused.
    poll(
        "new connections to be refused",
        Duration::from_secs(30),
        || TcpStream::connect(&server.addr).is_err().then_some(()),
    );
    for h in held {
        let (id, raw) = h.finish();
        let body = raw
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{id}: no answer: {raw:?}"));
        assert!(raw.starts_with("HTTP/1.1 200"), "{id}: {raw}");
        let a = verify_answer(body);
        assert!(a.is_approval(), "{id}: {a:?}");
        assert_eq!(a.request_id, id);
        answered.lock().unwrap().insert(id);
    }

    let status = wait_exit(&mut server, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let bad = bad.lock().unwrap();
    assert!(bad.is_empty(), "failed or unsigned answers: {bad:?}");

    let logs = server.logs();
    let decided = decided_ids(&logs);
    let answered = answered.lock().unwrap();
    assert!(decided.len() >= 23, "decisions logged: {}", decided.len());
    let lost: Vec<_> = decided.difference(&answered).collect();
    assert!(lost.is_empty(), "decided but never answered: {lost:?}");
    assert!(logs.contains("\"stopped\""), "clean stop logged");
}

#[test]
fn a_client_holding_its_request_cannot_outlast_the_grace_period() {
    let ws = Workspace::new();
    let cfg = config(
        &ws,
        "limits:\n  shutdown_grace_ms: 300\n  body_read_timeout_ms: 600000\n",
    );
    let mut server = Server::start(&cfg);
    let held = Held::open(&server, &keysign("held-forever"));
    poll(
        "the held request to be in flight",
        Duration::from_secs(30),
        || (metric(&server, "tss_gate_requests_in_flight") >= Some(1.0)).then_some(()),
    );
    let sent = Instant::now();
    signal(&server, libc::SIGTERM);
    let status = wait_exit(&mut server, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0));
    // Far below the 10-minute body timeout the client could have used.
    assert!(sent.elapsed() < Duration::from_secs(30));
    assert!(server.logs().contains("grace period elapsed"));
    drop(held);
}

/// Posts `req` on an already connected stream and returns the raw response,
/// or the I/O error that ended it.
fn post_on(mut stream: TcpStream, req: &CallbackRequest) -> Result<String, String> {
    let body = serde_urlencoded::to_string([("TSS_JWT_MSG", mint(req, &test_keys().node))])
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "POST /v2/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("write: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    stream
        .read_to_end(&mut out)
        .map_err(|e| format!("read: {e}"))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A signed decision for `id` in a raw HTTP response, or why not. (Which
/// decision depends on the shipped spending limits these requests fill.)
fn answered_in(raw: &str, id: &str) -> Result<(), String> {
    if !raw.starts_with("HTTP/1.1 200") {
        return Err(format!("{id}: no answer: {raw:?}"));
    }
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default();
    let a = verify_answer(body);
    if a.status == Status::Ok && a.action.is_some() && a.request_id == id {
        Ok(())
    } else {
        Err(format!("{id}: {a:?}"))
    }
}

#[test]
fn connections_accepted_before_sigterm_are_answered_even_if_their_request_comes_later() {
    let ws = Workspace::new();
    let cfg = config(&ws, "limits:\n  shutdown_grace_ms: 20000\n");
    let mut server = Server::start_with_args(&cfg, &["--log-json"]);

    // Connected (the kernel accepted them) but silent when the signal lands:
    // some already taken by the server, some still in its accept queue.
    let silent: Vec<TcpStream> = (0..24)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let more: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    signal(&server, libc::SIGTERM);
    poll(
        "the server to start draining",
        Duration::from_secs(30),
        || server.logs().contains("draining").then_some(()),
    );
    poll(
        "new connections to be refused",
        Duration::from_secs(30),
        || {
            TcpStream::connect_timeout(&server.addr.parse().unwrap(), Duration::from_millis(200))
                .is_err()
                .then_some(())
        },
    );
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = silent
            .into_iter()
            .chain(more)
            .enumerate()
            .map(|(i, stream)| {
                s.spawn(move || {
                    let req = keysign(&format!("late-{i}"));
                    post_on(stream, &req).and_then(|raw| answered_in(&raw, &req.request_id))
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap().err())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "accepted but not answered: {failures:#?}"
    );
    let status = wait_exit(&mut server, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[test]
fn a_burst_of_new_connections_across_sigterm_is_answered_or_refused_never_dropped() {
    let ws = Workspace::new();
    let cfg = config(&ws, "limits:\n  shutdown_grace_ms: 20000\n");
    let mut server = Server::start_with_args(&cfg, &["--log-json"]);
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    let n = 200;
    let go = Arc::new(std::sync::Barrier::new(n + 1));
    let clients: Vec<_> = (0..n)
        .map(|i| {
            let go = go.clone();
            std::thread::spawn(move || {
                let req = keysign(&format!("burst-{i}"));
                go.wait();
                // Spread the connects over ~40 ms so the signal lands among them.
                std::thread::sleep(Duration::from_micros((i as u64 % 40) * 1000));
                match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
                    // Never accepted: fine.
                    Err(_) => Ok(false),
                    Ok(stream) => post_on(stream, &req)
                        .and_then(|raw| answered_in(&raw, &req.request_id))
                        .map(|()| true),
                }
            })
        })
        .collect();
    go.wait();
    std::thread::sleep(Duration::from_millis(15));
    signal(&server, libc::SIGTERM);
    let mut answered = 0;
    let mut failures = Vec::new();
    for c in clients {
        match c.join().unwrap() {
            Ok(true) => answered += 1,
            Ok(false) => {}
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} connected but got no signed answer: {failures:#?}",
        failures.len()
    );
    assert!(answered > 0, "some were answered before the signal");
    let status = wait_exit(&mut server, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}
