//! The runtime that runs a [`Topology`] against Kafka, exactly-once by default.
//!
//! ```no_run
//! use operators::runtime::{KafkaStreams, StreamsConfig};
//! # fn topology() -> operators::topology::Topology { unimplemented!() }
//! let config = StreamsConfig::new("word-count", "127.0.0.1:9092");
//! let streams = KafkaStreams::start(topology(), config, prometheus::default_registry()).unwrap();
//! // ... until shutdown:
//! streams.close().unwrap();
//! ```

mod config;
mod dead_letter;
mod engine;
mod error;
mod internal_events;
mod produce;
mod restore;
mod stream_thread;
mod topics;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use config::{ProcessingGuarantee, StreamsConfig};
pub use error::RuntimeError;
pub use internal_events::RuntimeMetrics;
pub use restore::{is_end_of_partition, EndOfPartitionIsExpected};
pub use topics::dead_letter_topic;

use crate::topology::Topology;

/// A running instance of a topology. Scale out by starting more instances with the same
/// `application_id` (and distinct `instance_id`s): Kafka's group protocol spreads the partitions.
pub struct KafkaStreams {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), RuntimeError>>>,
}

impl KafkaStreams {
    /// Creates the topology's internal topics, then starts its stream thread.
    pub fn start(topology: Topology, config: StreamsConfig, registry: &prometheus::Registry) -> Result<Self, RuntimeError> {
        let metrics = RuntimeMetrics::new(registry, &config.application_id)
            .map_err(|e| RuntimeError::Config(format!("registering metrics: {e}")))?;
        topics::ensure_internal_topics(&config, &topology)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let topology = Arc::new(topology);
        let thread = std::thread::Builder::new()
            .name(format!("{}-stream-thread", config.application_id))
            .spawn(move || stream_thread::run(config, topology, metrics, thread_stop))
            .map_err(|e| RuntimeError::Config(format!("spawning the stream thread: {e}")))?;
        Ok(Self { stop, thread: Some(thread) })
    }

    /// True once the stream thread has stopped, cleanly or on a fatal error.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Commits what is in flight, leaves the group and stops.
    pub fn close(mut self) -> Result<(), RuntimeError> {
        self.stop.store(true, Ordering::Relaxed);
        self.join_thread()
    }

    /// Waits until the stream thread stops by itself (a fatal error) and returns why.
    pub fn join(mut self) -> Result<(), RuntimeError> {
        self.join_thread()
    }

    fn join_thread(&mut self) -> Result<(), RuntimeError> {
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| RuntimeError::ThreadPanicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for KafkaStreams {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.join_thread();
    }
}
