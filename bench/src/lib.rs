//! What the benchmark binaries share: the Kafka clients they set up around a contestant.

pub mod kafka;
pub mod process_stats;
