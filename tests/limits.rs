//! Issue 6 acceptance, limits: each limit has a config key and is hit here
//! over real sockets against the real binary: body size (with and without
//! Content-Length), header and body read timeouts (clients that dribble
//! bytes), the per-request deadline, the policy evaluation time limit, and
//! JSON nesting depth. Every refusal that reaches the handler is a signed
//! answer with the right status and reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod resil;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use resil::*;
use tss_gate::protocol::{CallbackResponse, Status};

/// A deny rule that spins for well over 10 s, only for request_ids `slow-*`.
/// Limits in these tests are 1 s or less, far from both that and from the
/// few milliseconds an ordinary request takes even on a loaded machine.
const SLOW: &str = "package tss.common\n\ndeny contains {\"code\": \"test.slow\", \"msg\": \"slow\"} if {\n\tstartswith(input.request_id, \"slow-\")\n\tcount([1 | some x in numbers.range(1, 4000); some y in numbers.range(1, 4000); x == y + 5000]) == 0\n}\n";

fn slow_policy(ws: &Workspace) -> std::path::PathBuf {
    let dir = policy_copy(ws);
    std::fs::write(dir.join("tss/common/slow.rego"), SLOW).unwrap();
    dir
}

/// Reads one HTTP/1.1 response (headers + Content-Length body) from `s`.
fn read_response(s: &mut TcpStream) -> (u16, String) {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).expect("read response");
        assert!(
            n > 0,
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = find(&buf, b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .expect("content-length");
        if buf.len() >= end + 4 + len {
            let status = head.split(' ').nth(1).unwrap().parse().unwrap();
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
            return (status, body);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn connect(server: &Server) -> TcpStream {
    let s = TcpStream::connect(&server.addr).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn signed(status: u16, body: &str) -> CallbackResponse {
    assert_eq!(status, 200, "{body}");
    verify_answer(body)
}

#[test]
fn an_oversized_body_is_refused_unread_with_or_without_content_length() {
    let ws = Workspace::new();
    // 1 MiB is the default; the key is spelled out to show where it lives.
    let server = Server::start(&config(&ws, "limits:\n  max_body_bytes: 1048576\n"));
    let two_mib = 2 * 1024 * 1024;

    // Declared 2 MiB: answered from the headers alone, before a body byte
    // is sent.
    let mut s = connect(&server);
    write!(
        s,
        "POST /v2/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {two_mib}\r\n\r\n"
    )
    .unwrap();
    let a = signed_pair(read_response(&mut s));
    assert_eq!(a.status, Status::InvalidRequest, "{a:?}");
    assert_eq!(a.error, "request body exceeds 1048576 bytes");

    // Chunked, no length: the server stops reading past the limit. The
    // client keeps offering 2 MiB from another thread and gets its answer.
    let mut s = connect(&server);
    write!(
        s,
        "POST /v2/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'a'; 64 * 1024];
        let mut sent = 0;
        while sent < two_mib {
            let ok = write!(w, "{:x}\r\n", chunk.len()).is_ok()
                && w.write_all(&chunk).is_ok()
                && w.write_all(b"\r\n").is_ok();
            if !ok {
                break;
            }
            sent += chunk.len();
        }
        let _ = w.write_all(b"0\r\n\r\n");
        sent
    });
    let a = signed_pair(read_response(&mut s));
    assert_eq!(a.status, Status::InvalidRequest, "{a:?}");
    assert_eq!(a.error, "request body exceeds 1048576 bytes");
    let sent = writer.join().unwrap();
    assert!(
        sent > 1024 * 1024,
        "the client did send past the limit ({sent})"
    );

    // Just under the limit is read (and then judged as the token it is not).
    let (_, body) = post_form(
        &server.check_url(),
        &format!("TSS_JWT_MSG={}", "a".repeat(1024 * 1024 - 100)),
    );
    let a = verify_answer(&body);
    assert_eq!(a.status, Status::InvalidToken, "{a:?}");
}

fn signed_pair((status, body): (u16, String)) -> CallbackResponse {
    signed(status, &body)
}

/// Writes `bytes` one at a time, `gap` apart, until the server closes the
/// connection or `limit` passes. Returns whether the server closed it.
fn dribble_until_closed(s: &mut TcpStream, bytes: &[u8], gap: Duration, limit: Duration) -> bool {
    let started = Instant::now();
    s.set_read_timeout(Some(gap)).unwrap();
    let mut buf = [0u8; 1024];
    for b in bytes.iter().cycle() {
        if started.elapsed() > limit {
            return false;
        }
        if s.write_all(&[*b]).is_err() {
            return true;
        }
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // a response (e.g. 408); keep going until closed
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn clients_that_dribble_headers_are_cut_off() {
    let ws = Workspace::new();
    let server = Server::start(&config(&ws, "limits:\n  header_read_timeout_ms: 300\n"));
    let mut s = connect(&server);
    s.write_all(b"POST /v2/check HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // An endless header, one byte per 50 ms: never completes by itself.
    let closed = dribble_until_closed(
        &mut s,
        b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        Duration::from_millis(50),
        Duration::from_secs(20),
    );
    assert!(
        closed,
        "the server must close a connection whose headers never end"
    );
    // And the server is still answering others.
    let a = send(&server, &keysign(&fresh_id("after")));
    assert!(a.is_approval(), "{a:?}");
}

#[test]
fn clients_that_dribble_the_body_get_a_signed_timeout() {
    let ws = Workspace::new();
    let server = Server::start(&config(&ws, "limits:\n  body_read_timeout_ms: 300\n"));
    let mut s = connect(&server);
    s.write_all(
        b"POST /v2/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\nTSS_JWT_MSG=",
    )
    .unwrap();
    let mut w = s.try_clone().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let writer = std::thread::spawn(move || {
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            if w.write_all(b"a").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let a = signed_pair(read_response(&mut s));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(a.status, Status::InternalError, "{a:?}");
    assert_eq!(a.error, "request deadline exceeded");
    assert_eq!(
        metric(
            &server,
            "tss_gate_request_failures_total{reason=\"deadline\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn a_slow_policy_hits_the_evaluation_time_limit() {
    let ws = Workspace::new();
    let dir = slow_policy(&ws);
    let cfg = write_config(
        &ws,
        &dir,
        &["node-a"],
        "  watch: false\n  eval_timeout_ms: 1000\n",
        "",
    );
    let server = Server::start(&cfg);
    let a = send(&server, &keysign("slow-1"));
    assert_eq!(a.status, Status::InternalError, "{a:?}");
    assert_eq!(a.error, "policy evaluation exceeded its time limit");
    assert_eq!(a.request_id, "slow-1");
    assert_eq!(
        metric(
            &server,
            "tss_gate_request_failures_total{reason=\"policy_timeout\"}"
        ),
        Some(1.0)
    );
    // The same policy decides ordinary requests as before.
    assert!(send(&server, &keysign("fast-1")).is_approval());
    // A time-limited answer is not cached: the retry is evaluated again.
    assert_eq!(
        send(&server, &keysign("slow-1")).error,
        "policy evaluation exceeded its time limit"
    );
    assert_eq!(
        metric(&server, "tss_gate_retry_cache_hits_total"),
        Some(0.0)
    );
}

#[test]
fn a_request_past_its_deadline_gets_a_signed_status_30() {
    let ws = Workspace::new();
    let dir = slow_policy(&ws);
    let cfg = write_config(
        &ws,
        &dir,
        &["node-a"],
        "  watch: false\n  eval_timeout_ms: 10000\n",
        "limits:\n  request_deadline_ms: 300\n",
    );
    let server = Server::start(&cfg);
    let a = send(&server, &keysign("slow-2"));
    assert_eq!(a.status, Status::InternalError, "{a:?}");
    assert_eq!(a.error, "request deadline exceeded");
    assert_eq!(
        a.request_id, "",
        "the answer left before the request was parsed"
    );
}

#[test]
fn json_nested_deeper_than_the_limit_is_refused() {
    let ws = Workspace::new();
    let server = Server::start(&config(&ws, "limits:\n  max_json_depth: 8\n"));
    let mut deep = keysign("deep-1");
    let nested = format!("{}1{}", "[".repeat(20), "]".repeat(20));
    deep.request_detail = format!("{{\"x\":{nested}}}");
    let a = send(&server, &deep);
    assert_eq!(a.status, Status::InvalidRequest, "{a:?}");
    assert_eq!(a.error, "request JSON is nested deeper than 8 levels");
    assert_eq!(a.request_id, "deep-1");
    // Depth in the outer document counts too.
    let mut outer = keysign("deep-2");
    outer.extra_info = r#"{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{}}}}}}}}}"#.to_owned();
    let a = send(&server, &outer);
    assert_eq!(a.status, Status::InvalidRequest, "{a:?}");
    // The real fixture is well within it.
    assert!(send(&server, &keysign("deep-3")).is_approval());
}
