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

mod client_statistics;
mod commit_pacing;
mod config;
mod dead_letter;
mod delivery;
mod engine;
mod error;
mod internal_events;
mod local_state;
mod produce;
mod purge;
mod raw_message;
mod repartition_configs;
mod restore;
mod retry;
mod state;
mod stream_thread;
mod topics;
mod transaction_counts;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use config::{ProcessingGuarantee, StoreType, StreamsConfig};
pub use dead_letter::{dead_letter_record, FailureReason, Poison, REPROCESSED_FROM_HEADER};
pub use error::RuntimeError;
pub use internal_events::RuntimeMetrics;
use internal_events::StateChanged;
pub use produce::kafka_headers;
pub use raw_message::raw_record;
pub use restore::{is_end_of_partition, EndOfPartitionIsExpected};
pub use retry::retry_lane_topic;
pub use state::{Health, State, StateListener};
pub use topics::{dead_letter_topic, retry_lane_topics};

use crate::topology::Topology;
use state::StateCell;

/// A running instance of a topology. Scale out by starting more instances with the same
/// `application_id`: Kafka's group protocol (eager `range`) assigns each task whole to one of them.
pub struct KafkaStreams {
    stop: Arc<AtomicBool>,
    state: StateCell,
    thread: Option<JoinHandle<Result<(), RuntimeError>>>,
}

impl KafkaStreams {
    /// Starts the stream thread, which creates the topology's internal topics, joins the group
    /// and processes. Returns at once without network I/O, so it is safe on an async executor;
    /// a failure at start shows as [`State::Error`] and as the result of [`KafkaStreams::join`].
    pub fn start(
        topology: Topology,
        config: StreamsConfig,
        registry: &prometheus::Registry,
    ) -> Result<Self, RuntimeError> {
        Self::start_with_state_listener(topology, config, registry, None)
    }

    /// As [`KafkaStreams::start`], with a listener called with `(new, old)` on every state change.
    pub fn start_with_state_listener(
        topology: Topology,
        config: StreamsConfig,
        registry: &prometheus::Registry,
        listener: Option<StateListener>,
    ) -> Result<Self, RuntimeError> {
        config.validate().map_err(RuntimeError::Config)?;
        let dead_letter_topics = topics::dead_letter_topics(&config, &topology);
        let sources: Vec<(usize, String)> = (0..topology.subtopology_count())
            .flat_map(|subtopology| {
                topology.source_topics_of(subtopology).into_iter().map(move |topic| (subtopology, topic))
            })
            .collect();
        let metrics =
            RuntimeMetrics::new(registry, &config.application_id, config.error_policy, &dead_letter_topics, &sources)
                .map_err(|e| RuntimeError::Config(format!("registering metrics: {e}")))?;
        let state_metrics = metrics.clone();
        let state = StateCell::new(Some(Box::new(move |new, old| {
            StateChanged { old, new }.emit(&state_metrics);
            if let Some(listener) = &listener {
                listener(new, old);
            }
        })));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_state, thread_stop) = (state.clone(), stop.clone());
        let topology = Arc::new(topology);
        let thread = std::thread::Builder::new()
            .name(format!("{}-stream-thread", config.application_id))
            .spawn(move || stream_thread::run(config, topology, metrics, thread_state, thread_stop))
            .map_err(|e| RuntimeError::Config(format!("spawning the stream thread: {e}")))?;
        Ok(Self { stop, state, thread: Some(thread) })
    }

    pub fn state(&self) -> State {
        self.state.get()
    }

    /// A handle on the state and on the dependency the instance waits for, if any.
    pub fn health(&self) -> Health {
        Health(self.state.clone())
    }

    /// True once the stream thread has stopped, cleanly or on a fatal error.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Commits what is in flight, leaves the group and stops.
    pub fn close(mut self) -> Result<(), RuntimeError> {
        self.request_stop();
        self.join_thread()
    }

    /// Waits until the stream thread stops by itself (a fatal error) and returns why.
    pub fn join(mut self) -> Result<(), RuntimeError> {
        self.join_thread()
    }

    fn request_stop(&self) {
        self.state.set(State::PendingShutdown);
        self.stop.store(true, Ordering::Relaxed);
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
        if self.thread.is_some() {
            self.request_stop();
            let _ = self.join_thread();
        }
    }
}
