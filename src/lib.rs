//! tss-gate: a Cobo TSS Node callback server that decides by Rego policy.
//!
//! # Layout, in floor order (a module uses only those above it in this list)
//! - [`clock`], [`pace`], [`private_fs`], [`protocol`]: the wall clock, the
//!   arrival pace, files created 0600, the wire types of PROTOCOL.md.
//! - [`derive`]: facts proven from the signed bytes (transactions, calls).
//! - [`velocity`]: spending limits: the limit table, matching, `input.velocity` facts.
//! - [`keys`]: loading, inspecting and generating RSA key files.
//! - [`input`]: the pure function that turns a verified request into the Rego input.
//! - [`policy`]: loading, compiling and evaluating the Rego policy set.
//! - [`metrics`]: every metric name and the registry.
//! - [`fixture`]: the fixture file format (a request and what it must get).
//! - [`token`]: the JWT envelope, both directions (verify requests, sign answers).
//! - [`decision_log`]: the durable audit trail, one versioned JSON line per decision.
//! - [`store`]: the durable spending-limit ledger, retry records, approvals
//!   and controls (SQLite, PostgreSQL).
//! - [`freeze`]: the emergency stop, a switch in the state store outside the policy.
//! - [`decide`]: one request from token to durable answer: admit, freeze,
//!   retry cache, ledger, evaluate, decision log, approval record, shadow.
//! - [`config`]: the YAML configuration and its validation (read only by
//!   `runtime` and `cli`).
//! - [`testing`]: the `test` runner and reporters, coverage, `eval --explain`.
//! - [`impact`]: `tss-gate replay`, recorded decisions judged by a draft policy set.
//! - [`workers`]: the server's CPU worker pool and pre-signed answer cache.
//! - [`http`]: the transport: router, `/v2/check`, body reading, the
//!   listener and its drain.
//! - [`events`]: the node's events: holds that follow the task, the signature
//!   audit. Its model, audit and binding stand below `decide` (an approval
//!   record is built from them); its endpoint (`ingest`) above `http`.
//! - [`runtime`]: building the parts from config, the policy test gate, hot reload.
//! - [`loadgen`]: the load generator and measurements behind `tss-gate bench`.
//! - [`cli`]: one module per subcommand; `main.rs` only dispatches.
#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod decide;
pub mod decision_log;
pub mod derive;
pub mod events;
pub mod fixture;
pub mod freeze;
pub mod http;
pub mod impact;
pub mod input;
pub mod keys;
pub mod loadgen;
pub mod metrics;
pub mod pace;
pub mod policy;
pub mod private_fs;
pub mod protocol;
pub mod runtime;
pub mod store;
pub mod testing;
pub mod token;
pub mod velocity;
pub mod workers;

/// An error and its causes on one line, like `{:#}`, but without repeating
/// a cause whose text the message already contains (most of our errors
/// quote their source, and anyhow would print it a second time).
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
