//! What the benchmark binaries share: the Kafka clients they set up around a contestant, and
//! how they read percentiles.

pub mod kafka;
pub mod percentile;
pub mod process_stats;
