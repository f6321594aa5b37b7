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
//! - [`config`]: the YAML configuration and its validation.
//! - [`server`]: the axum HTTP layer, handed its state by the caller.
//! - [`workers`]: the server's CPU worker pool and pre-signed answer cache.
//! - [`loadgen`]: the load generator and measurements behind `tss-gate bench`.
//! - [`metrics`]: every metric name and the registry.
//! - [`cli`]: one module per subcommand; `main.rs` only dispatches.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod derive;
pub mod fixture;
pub mod input;
pub mod keys;
pub mod loadgen;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod protocol;
pub mod server;
pub mod token;
pub mod workers;
