//! The running server's wiring: the only reader of the configuration
//! besides the CLI. It builds the decision's parts from config (keys, the
//! checked policy set, decision log, state store), owns the policy test gate
//! every set passes before it serves, and hot reload, which is handed the
//! live handle and never the HTTP layer's state.

pub mod build;
pub mod gate;
pub mod reload;
