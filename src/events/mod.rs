//! The TSS Node's events (issue 18): what became of each task tss-gate
//! approved. Owns the event model, the signature audit, the event endpoint
//! and applying an event to the state store (holds released or kept,
//! alarms raised), the approval facts the audit reads, and what ties an
//! event to the approval it is about (`binding`).

pub mod audit;
pub mod binding;
pub mod ingest;
pub mod metrics;
pub mod model;
