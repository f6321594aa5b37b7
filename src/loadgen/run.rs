//! Drives the load: one task per connection on a single-threaded runtime
//! (the generator shares the machine with the server, so it uses one core at
//! most and little of it), plus optional `/ping` prober and progress line.
//!
//! Closed loop: each connection sends its next request when the previous
//! answer arrives. Open loop (`rate`): request `i` is due at
//! `start + i / rate`; a connection takes the next due request, waits for its
//! time, and latency is measured from that scheduled time, so when the server
//! (or a shortage of connections) falls behind, the waiting shows up in the
//! latency instead of silently lowering the offered load.
//!
//! One exception: tokio's timer has millisecond granularity, so a request is
//! routinely sent up to ~1 ms after its due time even on an idle generator.
//! A send that is late by less than [`TIMER_SLACK`] is timed from when it was
//! actually sent (that lateness is the timer's, not the server's); anything
//! later is timed from its due time.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hdrhistogram::Histogram;

use super::LoadError;
use super::http::{Conn, Target};
use super::report::{CpuUse, Latency, LoadReport, Memory, cpu_time, histogram};
use super::tokens::Tokens;
use crate::keys::VerifyingKey;
use crate::protocol::{CallbackResponse, Status};

/// How a run is driven.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub url: String,
    pub target: Target,
    pub connections: usize,
    /// Measured time, after `warmup`.
    pub duration: Duration,
    /// Load applied before measuring (answers are checked, not timed).
    pub warmup: Duration,
    /// Offered requests per second; `None` is closed loop.
    pub rate: Option<f64>,
    /// Verify the signature of every Nth answer (1 = all).
    pub verify_every: u64,
    /// Probe `/ping` at this interval while the load runs.
    pub ping_interval: Option<Duration>,
    /// The node's request timeout: an answer later than this is a timeout.
    pub timeout: Duration,
    pub progress: bool,
    /// Server process to read resident memory from.
    pub server_pid: Option<u32>,
}

/// Lateness of a send that is attributed to the timer, not to queueing.
pub const TIMER_SLACK: Duration = Duration::from_millis(2);

/// When to start the clock for a request due at `due` and sent at `sent`.
fn clock_start(due: Instant, sent: Instant) -> Instant {
    if sent.saturating_duration_since(due) <= TIMER_SLACK {
        sent.max(due)
    } else {
        due
    }
}

struct Shared {
    opts: RunOptions,
    tokens: Tokens,
    server_key: VerifyingKey,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    next: AtomicUsize,
    done: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

/// What one connection saw.
struct Tally {
    latency: Histogram<u64>,
    in_window: u64,
    sent: u64,
    answers: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    verified: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency: histogram(),
            in_window: 0,
            sent: 0,
            answers: BTreeMap::new(),
            errors: BTreeMap::new(),
            verified: 0,
        }
    }

    fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }

    fn merge(&mut self, o: Tally) {
        let _ = self.latency.add(&o.latency);
        self.in_window += o.in_window;
        self.sent += o.sent;
        for (k, v) in o.answers {
            *self.answers.entry(k).or_default() += v;
        }
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.verified += o.verified;
    }
}

/// Runs the load and reports. Blocks the calling thread.
pub fn run(
    opts: RunOptions,
    tokens: Tokens,
    server_key: VerifyingKey,
) -> Result<LoadReport, LoadError> {
    if tokens.is_empty() {
        return Err(LoadError::Sign("no tokens".into()));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LoadError::Runtime(e.to_string()))?;
    rt.block_on(drive(opts, tokens, server_key))
}

async fn drive(
    opts: RunOptions,
    tokens: Tokens,
    server_key: VerifyingKey,
) -> Result<LoadReport, LoadError> {
    // Fail fast on a wrong address instead of reporting N connection errors.
    tokio::net::TcpStream::connect(&opts.target.authority)
        .await
        .map_err(|e| LoadError::Connect {
            addr: opts.target.authority.clone(),
            reason: e.to_string(),
        })?;
    let start = Instant::now();
    let measure_from = start + opts.warmup;
    let end = measure_from + opts.duration;
    let shared = Arc::new(Shared {
        tokens,
        server_key,
        start,
        measure_from,
        end,
        next: AtomicUsize::new(0),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        opts,
    });
    let mut tasks = Vec::new();
    for _ in 0..shared.opts.connections.max(1) {
        tasks.push(tokio::spawn(connection(shared.clone())));
    }
    let pinger = shared
        .opts
        .ping_interval
        .map(|iv| tokio::spawn(pinger(shared.clone(), iv)));
    let monitor = tokio::spawn(monitor(shared.clone()));
    let cpu = tokio::spawn(cpu_window(shared.clone()));

    let mut total = Tally::new();
    for t in tasks {
        if let Ok(tally) = t.await {
            total.merge(tally);
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    let (ping, ping_errors) = match pinger {
        Some(p) => match p.await {
            Ok((h, e)) => (Some(Latency::of(&h)), e),
            Err(_) => (None, 0),
        },
        None => (None, 0),
    };
    let memory = monitor.await.ok().flatten();
    let (wall, server_cpu, loadgen_cpu) = cpu.await.unwrap_or_default();
    let per = |used: Option<Duration>| used.map(|u| CpuUse::of(u, wall, total.in_window));
    if shared.opts.progress {
        eprintln!();
    }
    let o = &shared.opts;
    let window = o.duration.as_secs_f64();
    let error_total = total.errors.values().sum();
    Ok(LoadReport {
        mode: if o.rate.is_some() {
            "open-loop"
        } else {
            "closed-loop"
        },
        url: o.url.clone(),
        connections: o.connections,
        rate_offered: o.rate,
        warmup_s: o.warmup.as_secs_f64(),
        duration_s: window,
        completed: total.in_window,
        throughput_rps: if window > 0.0 {
            ((total.in_window as f64 / window) * 10.0).round() / 10.0
        } else {
            0.0
        },
        sent: total.sent,
        latency: Latency::of(&total.latency),
        answers: total.answers,
        errors: total.errors,
        error_total,
        verified: total.verified,
        tokens_minted: shared.tokens.len(),
        tokens_reused: total.sent as usize > shared.tokens.len(),
        ping,
        ping_errors,
        server_memory: memory,
        server_cpu: per(server_cpu),
        loadgen_cpu: per(loadgen_cpu),
    })
}

/// CPU time used by the server (with `--server-pid`) and by this process
/// between the start and the end of the measured window, and the window's
/// wall time.
async fn cpu_window(shared: Arc<Shared>) -> (Duration, Option<Duration>, Option<Duration>) {
    let server = shared.opts.server_pid.map(|p| p.to_string());
    let read = || (server.as_deref().and_then(cpu_time), cpu_time("self"));
    tokio::time::sleep_until(shared.measure_from.into()).await;
    let from = Instant::now();
    let (s0, l0) = read();
    tokio::time::sleep_until(shared.end.into()).await;
    let (s1, l1) = read();
    let delta = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
    (from.elapsed(), delta(s0, s1), delta(l0, l1))
}

async fn connection(shared: Arc<Shared>) -> Tally {
    let o = &shared.opts;
    let mut conn = Conn::new(o.target.clone());
    let mut tally = Tally::new();
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        let due = match o.rate {
            Some(rate) => {
                let due = shared.start + Duration::from_secs_f64(i as f64 / rate);
                if due >= shared.end {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => {
                let now = Instant::now();
                if now >= shared.end {
                    break;
                }
                now
            }
        };
        let k = i % shared.tokens.len();
        let (Some(body), Some(want_id)) = (
            shared.tokens.bodies.get(k),
            shared.tokens.request_ids.get(k),
        ) else {
            break;
        };
        tally.sent += 1;
        let sent = Instant::now();
        let result = tokio::time::timeout(o.timeout, conn.post(body.clone())).await;
        let done = Instant::now();
        let ok = match result {
            Err(_) => {
                // The answer may still arrive on this connection: start afresh.
                conn = Conn::new(o.target.clone());
                tally.error("timeout".into());
                None
            }
            Ok(Err(_)) => {
                tally.error("connection".into());
                None
            }
            Ok(Ok(reply)) if reply.status != 200 => {
                tally.error(format!("http_{}", reply.status));
                None
            }
            Ok(Ok(reply)) => check_answer(&shared, &mut tally, i, &reply.body, want_id),
        };
        // Only answers count as completed, with their latency and action: a
        // connection error or a timeout is an error, never an answer.
        let Some(category) = ok else {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        shared.done.fetch_add(1, Ordering::Relaxed);
        if due >= shared.measure_from {
            let us = done
                .saturating_duration_since(clock_start(due, sent))
                .as_micros() as u64;
            tally.latency.saturating_record(us.max(1));
        }
        if done >= shared.measure_from && done <= shared.end {
            tally.in_window += 1;
            *tally.answers.entry(category).or_default() += 1;
        }
    }
    tally
}

/// Classifies an answer (`ACTION/status`); verifies its signature when
/// sampled. None, with the error counted, if it is not a good answer.
fn check_answer(
    shared: &Shared,
    tally: &mut Tally,
    i: usize,
    body: &[u8],
    want_id: &str,
) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let sampled =
        shared.opts.verify_every > 0 && (i as u64).is_multiple_of(shared.opts.verify_every);
    let answer = if sampled {
        match crate::token::verify_answer(&text, &shared.server_key) {
            Ok(bytes) => {
                tally.verified += 1;
                serde_json::from_slice::<CallbackResponse>(&bytes).ok()
            }
            Err(_) => {
                tally.error("bad_signature".into());
                return None;
            }
        }
    } else {
        peek_answer(&text)
    };
    let Some(a) = answer else {
        tally.error("bad_answer".into());
        return None;
    };
    if a.status == Status::Ok && a.request_id != want_id {
        tally.error("wrong_request_id".into());
        return None;
    }
    Some(
        if a.status == Status::InternalError && a.error.contains("overloaded") {
            "OVERLOADED/30".to_owned()
        } else {
            format!(
                "{}/{}",
                a.action.map(|x| x.as_str()).unwrap_or("NONE"),
                a.status.code()
            )
        },
    )
}

/// Reads an answer's payload without verifying its signature (the sampled
/// answers are verified; decoding all is cheap, verifying all is not).
pub fn peek_answer(body: &str) -> Option<CallbackResponse> {
    let token = body.trim().trim_matches('"');
    let claims = token.split('.').nth(1)?;
    let claims = URL_SAFE_NO_PAD.decode(claims).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    let pd = STANDARD
        .decode(claims.get("package_data")?.as_str()?)
        .ok()?;
    serde_json::from_slice(&pd).ok()
}

async fn pinger(shared: Arc<Shared>, interval: Duration) -> (Histogram<u64>, u64) {
    let mut conn = Conn::new(shared.opts.target.clone());
    let mut h = histogram();
    let mut errors = 0;
    for k in 0u32.. {
        let due = shared.start + interval * k;
        if due >= shared.end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let sent = Instant::now();
        let ok = matches!(
            tokio::time::timeout(shared.opts.timeout, conn.ping()).await,
            Ok(Ok(r)) if r.status == 200
        );
        if !ok {
            errors += 1;
            conn = Conn::new(shared.opts.target.clone());
        }
        if due >= shared.measure_from {
            let us = clock_start(due, sent).elapsed().as_micros() as u64;
            h.saturating_record(us.max(1));
        }
    }
    (h, errors)
}

/// Prints progress once a second and samples the server's memory; returns
/// the memory figures at the end.
async fn monitor(shared: Arc<Shared>) -> Option<Memory> {
    let mut peak_rss = 0;
    let mut last = shared.opts.server_pid.and_then(Memory::read);
    let mut prev_done = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while !shared.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        if let Some(pid) = shared.opts.server_pid
            && let Some(m) = Memory::read(pid)
        {
            peak_rss = peak_rss.max(m.vm_rss_kib);
            last = Some(m);
        }
        if shared.opts.progress {
            let done = shared.done.load(Ordering::Relaxed);
            let t = shared.start.elapsed().as_secs_f64();
            let phase = if Instant::now() < shared.measure_from {
                "warm-up"
            } else {
                "measure"
            };
            eprint!(
                "\r[{t:6.1}s {phase}] {done} answers, {} req/s, {} errors   ",
                done - prev_done,
                shared.errors.load(Ordering::Relaxed)
            );
            let _ = std::io::stderr().flush();
            prev_done = done;
        }
    }
    last.map(|mut m| {
        if let Some(now) = shared.opts.server_pid.and_then(Memory::read) {
            m = now;
        }
        m.vm_rss_max_sampled_kib = peak_rss.max(m.vm_rss_kib);
        m
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_sends_are_timed_from_their_due_time_beyond_the_timer_slack() {
        let due = Instant::now();
        let slightly = due + Duration::from_micros(900);
        let queued = due + Duration::from_millis(40);
        assert_eq!(clock_start(due, slightly), slightly);
        assert_eq!(clock_start(due, queued), due);
        assert_eq!(clock_start(due, due), due);
    }

    #[test]
    fn peeks_an_answer_without_a_key() {
        let key = crate::keys::generate(2048).expect("key");
        let signer =
            crate::keys::signing_key_from(&key, std::path::Path::new("t")).expect("signer");
        let doc = serde_json::to_vec(&CallbackResponse::approve("r-1")).expect("json");
        let token = crate::token::sign_package(&doc, &signer, "svc", 60).expect("sign");
        let a = peek_answer(&format!("\"{token}\"")).expect("decodes");
        assert_eq!((a.request_id.as_str(), a.is_approval()), ("r-1", true));
        assert!(peek_answer("not.a-token").is_none());
    }
}
