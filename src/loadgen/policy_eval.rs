//! Policy evaluation timing of a policy library on the KEYSIGN fixtures, with
//! the shipped data and again with a generated destination allow-list of
//! `allow_list_size` addresses (written to a temp file and merged like any
//! operator data file), including how long that larger set takes to load.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::LoadError;
use super::report::{Latency, PolicyFixtureTiming, PolicyReport, histogram};
use crate::input::TokenFacts;
use crate::policy::{PolicyOptions, PolicySet};
use crate::protocol::RequestType;

#[derive(Debug, Clone)]
pub struct PolicyBenchOptions {
    pub policy_dir: PathBuf,
    pub fixtures_dir: PathBuf,
    pub iterations: usize,
    pub allow_list_size: usize,
}

/// One prepared case: the input document the server would evaluate.
struct Case {
    name: String,
    input: serde_json::Value,
}

pub fn measure(o: &PolicyBenchOptions) -> Result<PolicyReport, LoadError> {
    let opts = PolicyOptions {
        dir: o.policy_dir.clone(),
        entrypoint: crate::policy::DEFAULT_ENTRYPOINT.into(),
        data_files: Vec::new(),
        eval_timeout: Duration::from_secs(1),
    };
    let t = Instant::now();
    let small = PolicySet::load(&opts)?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;

    let data = LargeData::write(o.allow_list_size)?;
    let t = Instant::now();
    let large = PolicySet::load(&PolicyOptions {
        data_files: vec![data.path.clone()],
        ..opts
    })?;
    let load_large_ms = t.elapsed().as_secs_f64() * 1e3;

    let cases = keysign_cases(&o.fixtures_dir, &small)?;
    let mut fixtures = Vec::new();
    for c in &cases {
        let (eval, action) = time_eval(&small, &c.input, o.iterations);
        let (eval_large, _) = time_eval(&large, &c.input, o.iterations);
        fixtures.push(PolicyFixtureTiming {
            fixture: c.name.clone(),
            action,
            eval,
            eval_large,
        });
    }
    let worst_p99_us = fixtures.iter().map(|f| f.eval.p99_us).max().unwrap_or(0);
    let worst_p99_large_us = fixtures
        .iter()
        .map(|f| f.eval_large.p99_us)
        .max()
        .unwrap_or(0);
    Ok(PolicyReport {
        mode: "policy",
        iterations: o.iterations,
        load_ms,
        allow_list_size: o.allow_list_size,
        large_data_bytes: data.bytes,
        load_large_ms,
        fixtures,
        worst_p99_us,
        worst_p99_large_us,
        large_ratio: if worst_p99_us > 0 {
            worst_p99_large_us as f64 / worst_p99_us as f64
        } else {
            0.0
        },
    })
}

/// Input documents of the KEYSIGN fixtures in `dir`, built exactly as the
/// server builds them (derivation included).
fn keysign_cases(dir: &Path, policy: &PolicySet) -> Result<Vec<Case>, LoadError> {
    let mut out = Vec::new();
    for path in crate::fixture::discover(dir)? {
        let f = crate::fixture::load_fixture(&path)?;
        // Requests refused before evaluation (status 10) reach no policy.
        if f.expect.status != 0 {
            continue;
        }
        let Ok(req) = crate::input::parse_callback_request(&f.request, 64) else {
            continue;
        };
        // A fixture with ledger history decides on that history, which a
        // bare evaluation loop does not have.
        if req.request_type != RequestType::KeySign || !f.history.is_empty() {
            continue;
        }
        let facts = TokenFacts {
            key_name: f.verified_by.clone().unwrap_or_else(|| "node-a".into()),
            iss: Some("tss-node".into()),
            iat: None,
            exp: None,
        };
        let now = f.received_at_ms.unwrap_or_else(crate::clock::now_ms);
        out.push(Case {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            input: crate::decide::steps::input_without_ledger(policy, &req, &facts, now),
        });
    }
    if out.is_empty() {
        return Err(LoadError::NoFixtures(dir.to_owned()));
    }
    Ok(out)
}

/// Evaluates `input` `n` times (after a short warm-up); returns the timing
/// and the decision's action.
fn time_eval(policy: &PolicySet, input: &serde_json::Value, n: usize) -> (Latency, String) {
    let mut h = histogram();
    let action = match policy.evaluate(input) {
        Ok(d) if d.approves() => "APPROVE",
        Ok(_) => "REJECT",
        Err(_) => "ERROR",
    };
    for _ in 0..n.min(100) {
        let _ = policy.evaluate(input);
    }
    // Nanosecond resolution matters at tens of µs: record ns, report µs.
    let mut ns = histogram();
    for _ in 0..n {
        let t = Instant::now();
        let _ = std::hint::black_box(policy.evaluate(input));
        ns.saturating_record((t.elapsed().as_nanos() as u64).max(1));
    }
    for v in ns.iter_recorded() {
        h.saturating_record_n((v.value_iterated_to() / 1000).max(1), v.count_at_value());
    }
    (Latency::of(&h), action.to_owned())
}

/// A generated data file: `keysign.allowed_destinations.ETH` with `n` random
/// lower-case addresses (merged into the shipped list). Removed on drop.
struct LargeData {
    path: PathBuf,
    bytes: u64,
}

impl LargeData {
    fn write(n: usize) -> Result<Self, LoadError> {
        let path = std::env::temp_dir().join(format!(
            "tss-gate-bench-allowlist-{}-{:08x}.json",
            std::process::id(),
            rand::random::<u32>()
        ));
        let err = |e: std::io::Error| LoadError::Write {
            path: path.clone(),
            reason: e.to_string(),
        };
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).map_err(err)?);
        let seed: u64 = rand::random();
        write!(f, "{{\"keysign\":{{\"allowed_destinations\":{{\"ETH\":{{").map_err(err)?;
        for i in 0..n {
            let d = Sha256::digest(format!("{seed}-{i}").as_bytes());
            let addr = hex::encode(d.get(..20).unwrap_or_default());
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}\"0x{addr}\":true").map_err(err)?;
        }
        write!(f, "}}}}}}}}").map_err(err)?;
        f.flush().map_err(err)?;
        drop(f);
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Ok(Self { path, bytes })
    }
}

impl Drop for LargeData {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
