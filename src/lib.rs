//! tss-gate: a Cobo TSS Node callback server that decides by Rego policy.
//!
//! # Layout
//! - [`protocol`]: the wire types of PROTOCOL.md (request, response, status codes).
//! - [`keys`]: loading, inspecting and generating RSA key files.
//! - [`token`]: the JWT envelope, both directions (verify requests, sign answers).
//! - [`input`]: the pure function that turns a verified request into the Rego input.
//! - [`policy`]: loading, compiling and evaluating the Rego policy set.
//! - [`pipeline`]: the one decision pipeline (verify → parse → input → evaluate →
//!   answer → sign) shared by the server and the CLI tools.
//! - [`retry`]: the retry cache, so a retried request gets the answer it got before.
//! - [`freeze`]: the emergency stop, a switch in the state store outside the policy.
//! - [`reload`]: hot reload of policies, data and keys (file watch, SIGHUP).
//! - [`shadow`]: shadow mode, a second policy set judged beside the live one.
//! - [`config`]: the YAML configuration and its validation.
//! - [`server`]: the axum HTTP layer, handed its state by the caller.
//! - [`workers`]: the server's CPU worker pool and pre-signed answer cache.
//! - [`loadgen`]: the load generator and measurements behind `tss-gate bench`.
//! - [`metrics`]: every metric name and the registry.
//! - [`record`]: writing verified requests as fixtures (`record_dir`).
//! - [`impact`]: `tss-gate replay`, recorded decisions judged by a draft policy set.
//! - [`events`]: the node's events: holds that follow the task, the signature audit.
//! - [`testing`]: the `test` runner and reporters, coverage, `eval --explain`.
//! - [`decision_log`]: the durable audit trail, one versioned JSON line per decision.
//! - [`state`]: building a server's state (keys, policy, decision log, store) from config.
//! - [`store`]: the durable spending-limit ledger and retry records (SQLite).
//! - [`velocity`]: spending limits: the limit table, matching, `input.velocity` facts.
//! - [`cli`]: one module per subcommand; `main.rs` only dispatches.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod decision_log;
pub mod derive;
pub mod events;
pub mod fixture;
pub mod freeze;
pub mod impact;
pub mod input;
pub mod keys;
pub mod loadgen;
pub mod metrics;
pub mod pace;
pub mod pipeline;
pub mod policy;
pub mod private_fs;
pub mod protocol;
pub mod record;
pub mod reload;
pub mod retry;
pub mod server;
pub mod shadow;
pub mod state;
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
