//! Shared helpers for tests that run against the local stack (`dev/stack up`).
//!
//! Every helper that needs a service checks it first and panics with a message that names the
//! service and how to start it, so a test never skips silently.

pub mod app;
#[cfg(feature = "testcontainers")]
pub mod containers;
pub mod eos;
pub mod eos_verifier;
pub mod kafka;
pub mod logs;
pub mod metrics;
pub mod outage;
pub mod saga;
pub mod stack;
