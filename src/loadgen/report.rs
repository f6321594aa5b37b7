//! Results of the bench modes, as serialisable reports: the JSON of `--json`
//! and the human summary are the same data.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

/// A new latency histogram in microseconds (1 µs .. 10 min, 3 digits).
#[allow(clippy::expect_used, reason = "constant bounds, see the invariant")]
pub fn histogram() -> Histogram<u64> {
    // INVARIANT: constant bounds within hdrhistogram's rules (low >= 1,
    // high >= 2 * low, sigfig <= 5), so this cannot fail; not a request path.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean_us: (h.mean() * 10.0).round() / 10.0,
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "p50 {} p90 {} p99 {} p99.9 {} max {} (n={}, mean {})",
            us(self.p50_us as f64),
            us(self.p90_us as f64),
            us(self.p99_us as f64),
            us(self.p999_us as f64),
            us(self.max_us as f64),
            self.count,
            us(self.mean_us)
        )
    }
}

/// Microseconds, printed in a readable unit.
pub fn us(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.2}s", v / 1_000_000.0)
    } else if v >= 1_000.0 {
        format!("{:.2}ms", v / 1_000.0)
    } else {
        format!("{v:.0}µs")
    }
}

/// Resident memory of the server process, from `/proc/PID/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    pub pid: u32,
    /// Peak resident set size (VmHWM), KiB.
    pub vm_hwm_kib: u64,
    /// Resident set size at the end of the run (VmRSS), KiB.
    pub vm_rss_kib: u64,
    /// Largest VmRSS seen while sampling once a second, KiB.
    pub vm_rss_max_sampled_kib: u64,
    pub threads: u64,
}

impl Memory {
    /// Reads the current figures; `None` if the process is gone.
    pub fn read(pid: u32) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let rss = field("VmRSS:");
        Some(Self {
            pid,
            vm_hwm_kib: field("VmHWM:"),
            vm_rss_kib: rss,
            vm_rss_max_sampled_kib: rss,
            threads: field("Threads:"),
        })
    }
}

/// CPU time a process used during the measured window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuUse {
    /// Average cores busy over the window (1.0: one core all the time).
    pub cores: f64,
    /// CPU time per answer received in the window, µs: with the signing
    /// ceiling, this tells how much of each request is not the signature.
    pub us_per_answer: f64,
}

impl CpuUse {
    /// `used` CPU over `wall` time, shared by `answers`.
    pub fn of(used: std::time::Duration, wall: std::time::Duration, answers: u64) -> Self {
        let round = |v: f64, places: i32| {
            let f = 10f64.powi(places);
            (v * f).round() / f
        };
        Self {
            cores: round(used.as_secs_f64() / wall.as_secs_f64().max(1e-9), 2),
            us_per_answer: round(used.as_secs_f64() * 1e6 / answers.max(1) as f64, 1),
        }
    }
}

/// Linux reports `/proc` CPU times in USER_HZ ticks; the ABI fixes USER_HZ
/// at 100 on the architectures tss-gate builds for (x86-64, arm64).
const USER_HZ: u64 = 100;

/// User + system CPU time of process `pid` (`"self"` for this one) so far;
/// `None` if it is gone or `/proc` is not there.
pub fn cpu_time(pid: &str) -> Option<std::time::Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = cpu_ticks(&text)?;
    Some(std::time::Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// utime + stime, fields 14 and 15 of `/proc/PID/stat`. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted from
/// after its last `)`, where field 3 begins.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The result of a load run against a server.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub mode: &'static str,
    pub url: String,
    pub connections: usize,
    /// Offered requests per second (open loop) or none (closed loop).
    pub rate_offered: Option<f64>,
    pub warmup_s: f64,
    /// Measured window (after warm-up).
    pub duration_s: f64,
    /// Answers received within the measured window.
    pub completed: u64,
    pub throughput_rps: f64,
    /// Requests sent over the whole run, warm-up included.
    pub sent: u64,
    /// Latency of answers whose request was due in the measured window,
    /// from the scheduled send time in open loop.
    pub latency: Latency,
    /// Answers within the measured window by `ACTION/status`
    /// (`OVERLOADED/30` for overload answers); they add up to `completed`.
    pub answers: BTreeMap<String, u64>,
    /// Failures by kind over the whole run, warm-up included (timeout,
    /// connection, http_NNN, bad_answer, bad_signature, wrong_request_id);
    /// never counted as answers. Zero is the goal.
    pub errors: BTreeMap<String, u64>,
    pub error_total: u64,
    /// Answers whose signature was verified with the server key.
    pub verified: u64,
    pub tokens_minted: usize,
    /// Whether tokens were reused (the run sent more requests than minted).
    pub tokens_reused: bool,
    pub ping: Option<Latency>,
    pub ping_errors: u64,
    pub server_memory: Option<Memory>,
    /// The server's CPU use in the measured window (with `--server-pid`).
    pub server_cpu: Option<CpuUse>,
    /// The load generator's own CPU use in the measured window: on a shared
    /// machine it competes with the server for the same cores.
    pub loadgen_cpu: Option<CpuUse>,
}

impl LoadReport {
    pub fn print(&self) {
        println!(
            "{} {} on {} connections{}",
            self.mode,
            self.url,
            self.connections,
            self.rate_offered
                .map(|r| format!(", offered {r:.0} req/s"))
                .unwrap_or_default()
        );
        println!(
            "  throughput   {:.1} req/s ({} answers in {:.2}s after {:.1}s warm-up)",
            self.throughput_rps, self.completed, self.duration_s, self.warmup_s
        );
        println!("  latency      {}", self.latency.line());
        let answers: Vec<String> = self
            .answers
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("  answers      {}", answers.join(" "));
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "  errors       {}{}",
            self.error_total,
            if errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", errors.join(" "))
            }
        );
        println!("  verified     {} signatures", self.verified);
        if self.tokens_reused {
            println!(
                "  note         {} tokens minted and reused: raise --tokens for distinct ids",
                self.tokens_minted
            );
        }
        if let Some(p) = &self.ping {
            println!("  /ping        {} errors {}", p.line(), self.ping_errors);
        }
        if let Some(c) = &self.server_cpu {
            println!(
                "  server cpu   {:.2} cores, {:.0} µs per answer",
                c.cores, c.us_per_answer
            );
        }
        if let Some(c) = &self.loadgen_cpu {
            println!(
                "  bench cpu    {:.2} cores, {:.0} µs per answer",
                c.cores, c.us_per_answer
            );
        }
        if let Some(m) = &self.server_memory {
            println!(
                "  server mem   VmHWM {:.1} MiB, VmRSS {:.1} MiB (max sampled {:.1} MiB), {} threads",
                m.vm_hwm_kib as f64 / 1024.0,
                m.vm_rss_kib as f64 / 1024.0,
                m.vm_rss_max_sampled_kib as f64 / 1024.0,
                m.threads
            );
        }
    }
}

/// The signing ceiling: RS256 signatures of a typical answer on all cores.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CeilingReport {
    pub mode: &'static str,
    pub key_bits: usize,
    pub threads: usize,
    pub duration_s: f64,
    pub signatures: u64,
    pub signatures_per_s: f64,
    pub per_thread_per_s: f64,
    pub sign_latency: Latency,
}

impl CeilingReport {
    pub fn print(&self) {
        println!(
            "ceiling: RS256 sign of a typical answer, {}-bit key, {} threads",
            self.key_bits, self.threads
        );
        println!(
            "  {:.1} signatures/s ({:.1} per thread; {} in {:.2}s)",
            self.signatures_per_s, self.per_thread_per_s, self.signatures, self.duration_s
        );
        println!("  sign time    {}", self.sign_latency.line());
    }
}

/// Policy evaluation timing per fixture.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyFixtureTiming {
    pub fixture: String,
    pub action: String,
    pub eval: Latency,
    pub eval_large: Latency,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyReport {
    pub mode: &'static str,
    pub iterations: usize,
    pub load_ms: f64,
    pub allow_list_size: usize,
    pub large_data_bytes: u64,
    pub load_large_ms: f64,
    pub fixtures: Vec<PolicyFixtureTiming>,
    /// Largest p99 over the KEYSIGN fixtures, shipped data.
    pub worst_p99_us: u64,
    /// Largest p99 over the KEYSIGN fixtures with the large allow-list.
    pub worst_p99_large_us: u64,
    /// `worst_p99_large_us / worst_p99_us`.
    pub large_ratio: f64,
}

impl PolicyReport {
    pub fn print(&self) {
        println!(
            "policy evaluation (shipped library, KEYSIGN fixtures, {} evaluations each)",
            self.iterations
        );
        println!(
            "  load {:.1} ms; with {} allow-listed addresses ({:.1} MiB data): {:.1} ms",
            self.load_ms,
            self.allow_list_size,
            self.large_data_bytes as f64 / 1_048_576.0,
            self.load_large_ms
        );
        for f in &self.fixtures {
            println!(
                "  {:<48} {:<7} p50 {:>7} p99 {:>7} | large p50 {:>7} p99 {:>7}",
                f.fixture,
                f.action,
                us(f.eval.p50_us as f64),
                us(f.eval.p99_us as f64),
                us(f.eval_large.p50_us as f64),
                us(f.eval_large.p99_us as f64)
            );
        }
        println!(
            "  worst p99 {} ; with large allow-list {} (ratio {:.2})",
            us(self.worst_p99_us as f64),
            us(self.worst_p99_large_us as f64),
            self.large_ratio
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cpu_ticks_are_counted_after_the_command_name() {
        // A command name with spaces and parentheses shifts naive splitting.
        let stat = "4242 (tss gate (x) y) S 1 4242 4242 0 -1 4194560 5000 0 0 0 \
                    1234 567 0 0 20 0 9 0 100 1000000 2000 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(1234 + 567));
        assert_eq!(cpu_ticks("4242 (x) S 1 2"), None);
        assert_eq!(cpu_ticks("no parenthesis"), None);
        assert!(cpu_time("self").is_some());
        // No process 0 in /proc: gone, not zero.
        assert_eq!(cpu_time("0"), None);
    }

    #[test]
    fn cpu_use_is_cores_and_time_per_answer() {
        let c = CpuUse::of(Duration::from_secs(3), Duration::from_secs(2), 1000);
        assert_eq!((c.cores, c.us_per_answer), (1.5, 3000.0));
        // No answers: the time is not divided by zero.
        let c = CpuUse::of(Duration::from_millis(10), Duration::from_secs(1), 0);
        assert_eq!((c.cores, c.us_per_answer), (0.01, 10000.0));
    }
}
