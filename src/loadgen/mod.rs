//! The load generator and measurements behind `tss-gate bench`.
//!
//! It plays many TSS Nodes at once: [`tokens`] pre-mints valid request tokens
//! (distinct request ids, fixtures mixed) so that no RSA signing happens while
//! the clock runs; [`http`] keeps one HTTP/1.1 keep-alive connection per
//! simulated node; [`run`] drives them closed-loop (as fast as answers come
//! back) or open-loop (`--rate`, on a fixed timetable, latency measured from
//! the scheduled send time so a slow server cannot hide its queueing), checks
//! the answers and records latency in HDR histograms; [`ceiling`] measures
//! the RSA signing primitive alone, the bound the server is compared with;
//! [`policy_eval`] times policy evaluation of the shipped library with and
//! without a large allow-list; [`report`] turns results into text or JSON.
//!
//! Nothing here is used by the server.

pub mod ceiling;
pub mod http;
pub mod policy_eval;
pub mod report;
pub mod run;
pub mod tokens;

use std::path::PathBuf;

/// What can stop a benchmark before it measures anything.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("unsupported url `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot connect to `{addr}`: {reason}")]
    Connect { addr: String, reason: String },
    #[error("no request fixtures in `{0}`")]
    NoFixtures(PathBuf),
    #[error(transparent)]
    Fixture(#[from] crate::fixture::FixtureError),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error("cannot sign a request token: {0}")]
    Sign(String),
    #[error("cannot write `{path}`: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("cannot start the runtime: {0}")]
    Runtime(String),
}

/// Worker threads to use for CPU-bound measurement: one per core.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
