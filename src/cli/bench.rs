//! `tss-gate bench`: measure a callback server the way TSS Nodes load it, or
//! the bounds it is compared with. Three modes:
//! - load (default): `bench URL --key NODE_PRIVATE --server-key SERVER_PUBLIC`
//!   — many keep-alive connections, closed loop or `--rate` open loop;
//! - `--ceiling --server-key-private PEM`: the RSA signing rate of all cores;
//! - `--policy`: policy evaluation time of the KEYSIGN fixtures, and with a
//!   large generated destination allow-list.
//!
//! The measuring lives in [`crate::loadgen`]; this file parses arguments and
//! prints. Exit 0 on a clean run, 2 when any request failed (timeouts, bad
//! signatures, connection errors) or the run could not start.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::Exit;
use crate::loadgen::{self, LoadError};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Callback URL, e.g. http://127.0.0.1:11020/v2/check (load mode).
    pub url: Option<String>,
    /// The TSS Node's private key (signs the request tokens).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The callback server's public key (verifies the answers).
    #[arg(long)]
    pub server_key: Option<PathBuf>,
    /// Fixtures (or bare request files) to mix, round robin.
    #[arg(long, default_value = "tests/fixtures")]
    pub fixtures: PathBuf,
    /// Keep-alive connections (simulated nodes).
    #[arg(short = 'c', long, default_value_t = 64)]
    pub connections: usize,
    /// Measured duration (after warm-up): `10s`, `500ms`, `1m`.
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Load applied before measuring.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Offered load in requests/s (open loop); without it, closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Verify every answer's signature (default: every `--verify-every`th).
    #[arg(long)]
    pub verify_all: bool,
    /// Verify the signature of every Nth answer (the rest are decoded only).
    #[arg(long, default_value_t = 100)]
    pub verify_every: u64,
    /// Tokens to pre-mint (distinct request ids); default from rate and time.
    #[arg(long)]
    pub tokens: Option<usize>,
    /// Also probe `/ping` while the load runs.
    #[arg(long)]
    pub ping: bool,
    /// Time between `/ping` probes with `--ping`.
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// The node's request timeout: a later answer counts as a timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Server process id: report its resident memory (VmHWM/VmRSS).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Measure the signing ceiling instead of a server.
    #[arg(long)]
    pub ceiling: bool,
    /// The callback server's private key (for `--ceiling`).
    #[arg(long)]
    pub server_key_private: Option<PathBuf>,
    /// Signing threads for `--ceiling` (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Measure policy evaluation instead of a server.
    #[arg(long)]
    pub policy: bool,
    /// Policy directory for `--policy`.
    #[arg(long, default_value = "rego")]
    pub policy_dir: PathBuf,
    /// Addresses in the generated allow-list for `--policy`.
    #[arg(long, default_value_t = 100_000)]
    pub allow_list: usize,
    /// Evaluations per fixture for `--policy`.
    #[arg(long, default_value_t = 3_000)]
    pub iterations: usize,
}

pub fn run(a: BenchArgs) -> Exit {
    super::init_cli_logging();
    match bench(&a) {
        Ok(clean) => {
            if clean {
                Exit::Ok
            } else {
                Exit::Failed
            }
        }
        Err(e) => {
            super::print_error(&e);
            Exit::Failed
        }
    }
}

fn bench(a: &BenchArgs) -> anyhow::Result<bool> {
    if a.ceiling {
        let path = a
            .server_key_private
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("--ceiling needs --server-key-private PEM"))?;
        let key = crate::keys::load_signing_key(path)?;
        let r =
            loadgen::ceiling::measure(key, a.threads.unwrap_or_else(loadgen::cores), a.duration)?;
        emit(a.json, &r, || r.print())?;
        return Ok(true);
    }
    if a.policy {
        let r = loadgen::policy_eval::measure(&loadgen::policy_eval::PolicyBenchOptions {
            policy_dir: a.policy_dir.clone(),
            fixtures_dir: a.fixtures.clone(),
            iterations: a.iterations.max(1),
            allow_list_size: a.allow_list,
        })?;
        emit(a.json, &r, || r.print())?;
        return Ok(true);
    }
    let url = a
        .url
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("give the callback URL (or --ceiling / --policy)"))?;
    let (Some(key), Some(server_key)) = (&a.key, &a.server_key) else {
        anyhow::bail!("load mode needs --key NODE_PRIVATE and --server-key SERVER_PUBLIC");
    };
    let target = loadgen::http::Target::parse(url)?;
    let node_key = crate::keys::load_signing_key(key)?;
    let server_key = crate::keys::load_verifying_key("callback-server", server_key)?;
    let requests = loadgen::tokens::load_requests(&a.fixtures)?;
    let total = (a.warmup + a.duration).as_secs_f64();
    let count = a.tokens.unwrap_or_else(|| match a.rate {
        Some(r) => (r * total * 1.02) as usize + a.connections,
        None => ((2_500.0 * total) as usize).clamp(1_000, 100_000),
    });
    if !a.quiet {
        eprintln!("minting {count} request tokens...");
    }
    let tokens = loadgen::tokens::mint(&requests, &node_key, count.max(1))?;
    let opts = loadgen::run::RunOptions {
        url: url.clone(),
        target,
        connections: a.connections.max(1),
        duration: a.duration,
        warmup: a.warmup,
        rate: a.rate.filter(|r| *r > 0.0),
        verify_every: if a.verify_all { 1 } else { a.verify_every },
        ping_interval: a.ping.then_some(a.ping_interval),
        timeout: a.timeout,
        progress: !a.quiet,
        server_pid: a.server_pid,
    };
    let r = loadgen::run::run(opts, tokens, server_key)?;
    emit(a.json, &r, || r.print())?;
    Ok(r.error_total == 0 && r.ping_errors == 0)
}

fn emit<T: Serialize>(json: bool, r: &T, text: impl FnOnce()) -> Result<(), LoadError> {
    if json {
        match serde_json::to_string_pretty(r) {
            Ok(s) => println!("{s}"),
            Err(e) => return Err(LoadError::Runtime(e.to_string())),
        }
    } else {
        text();
    }
    Ok(())
}

/// `250ms`, `10s`, `2m`, or a bare number of seconds (`1.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 10s, 500ms, 1m)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{s}` is not a duration"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
