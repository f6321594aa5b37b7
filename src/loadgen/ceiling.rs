//! The signing ceiling: how many answers the cores could sign if signing were
//! all the server did. Each thread signs a typical APPROVE answer with the
//! same primitive the server uses ([`crate::decide::steps::sign`], RS256 through
//! jsonwebtoken's aws-lc-rs backend) as fast as it can.

use std::time::{Duration, Instant};

use super::LoadError;
use super::report::{CeilingReport, Latency, histogram};
use crate::decide::steps::Gate;
use crate::keys::SigningKey;
use crate::protocol::CallbackResponse;

/// Signs on `threads` threads for `duration`.
pub fn measure(
    key: SigningKey,
    threads: usize,
    duration: Duration,
) -> Result<CeilingReport, LoadError> {
    let gate = Gate {
        verifier: crate::token::Verifier::new(Vec::new(), 0),
        signer: key,
        service_name: "tss-gate".into(),
        token_ttl_secs: 120,
        max_json_depth: 64,
    };
    // A typical answer: a UUID-like request id, APPROVE, empty error.
    let answer = CallbackResponse::approve("c3a1e6f2-4b7d-4e8a-9f10-2d3c4b5a6e7f");
    pipeline_sign(&gate, &answer)?;
    let threads = threads.max(1);
    let started = Instant::now();
    let end = started + duration;
    let results: Vec<Result<(u64, hdrhistogram::Histogram<u64>), LoadError>> =
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let gate = &gate;
                    let answer = &answer;
                    s.spawn(move || {
                        let mut n = 0u64;
                        let mut h = histogram();
                        loop {
                            let t = Instant::now();
                            if t >= end {
                                break;
                            }
                            pipeline_sign(gate, answer)?;
                            h.saturating_record((t.elapsed().as_micros() as u64).max(1));
                            n += 1;
                        }
                        Ok((n, h))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(LoadError::Sign("signing thread panicked".into())))
                })
                .collect()
        });
    let elapsed = started.elapsed().as_secs_f64();
    let mut total = 0;
    let mut hist = histogram();
    for r in results {
        let (n, h) = r?;
        total += n;
        let _ = hist.add(&h);
    }
    let rate = total as f64 / elapsed;
    Ok(CeilingReport {
        mode: "ceiling",
        key_bits: gate.signer.bits,
        threads,
        duration_s: elapsed,
        signatures: total,
        signatures_per_s: (rate * 10.0).round() / 10.0,
        per_thread_per_s: (rate / threads as f64 * 10.0).round() / 10.0,
        sign_latency: Latency::of(&hist),
    })
}

fn pipeline_sign(gate: &Gate, answer: &CallbackResponse) -> Result<String, LoadError> {
    crate::decide::steps::sign(gate, answer).map_err(|e| LoadError::Sign(e.to_string()))
}
