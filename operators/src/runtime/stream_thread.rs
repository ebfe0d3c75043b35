//! The consume → process → produce → commit loop, one per instance, on its own OS thread so
//! that every blocking client call stays off any async executor. Shaped after librdkafka's
//! `examples/transactions.c` (KIP-447: one transactional producer), with the eager `range`
//! assignor so that a task's co-partitioned source partitions move together.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};

use super::client_statistics::ClientSnapshot;
use super::config::StreamsConfig;
use super::engine::Engine;
use super::error::RuntimeError;
use super::internal_events::{ConsumerStatistics, RuntimeMetrics, StatisticsUnreadable};
use super::state::{State, StateCell};
use super::topics;
use crate::topology::Topology;

/// Routes rebalance callbacks to the engine: commit before partitions are revoked, remember
/// new partitions so their tasks are restored before they process anything.
struct RebalanceHandler {
    engine: Arc<Mutex<Engine>>,
    /// For the consumer's statistics, which must not wait for the engine.
    metrics: RuntimeMetrics,
}

impl ClientContext for RebalanceHandler {
    fn stats_raw(&self, statistics: &[u8]) {
        match ClientSnapshot::parse(statistics) {
            Ok(snapshot) => ConsumerStatistics(&snapshot).emit(&self.metrics),
            Err(error) => StatisticsUnreadable { error: &error }.emit(),
        }
    }
}

impl ConsumerContext for RebalanceHandler {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            lock(&self.engine).on_revoked(consumer, partitions);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => lock(&self.engine).on_assigned(consumer, partitions),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

fn lock(engine: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    // A panic while holding the lock already stopped the thread; the state is rolled back by
    // the next owner's restore, so the guard is safe to take.
    engine.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn run(
    config: StreamsConfig,
    topology: Arc<Topology>,
    metrics: RuntimeMetrics,
    state: StateCell,
    stop: Arc<AtomicBool>,
) -> Result<(), RuntimeError> {
    let outcome = run_until_stopped(config, topology, metrics, state.clone(), stop);
    match &outcome {
        Ok(()) => {
            tracing::info!("stream thread stopped cleanly");
            state.set(State::NotRunning);
        }
        Err(e) => {
            tracing::error!(error = %e, "stream thread stopped");
            state.set(State::Error);
        }
    }
    outcome
}

fn run_until_stopped(
    config: StreamsConfig,
    topology: Arc<Topology>,
    metrics: RuntimeMetrics,
    state: StateCell,
    stop: Arc<AtomicBool>,
) -> Result<(), RuntimeError> {
    topics::ensure_internal_topics(&config, &topology)?;
    let tick = config.wall_clock_tick;
    let engine = Arc::new(Mutex::new(Engine::new(
        config.clone(),
        topology.clone(),
        metrics.clone(),
        state.clone(),
        stop.clone(),
    )?));
    let consumer: BaseConsumer<RebalanceHandler> = config
        .consumer_config()
        .create_with_context(RebalanceHandler { engine: engine.clone(), metrics })
        .map_err(|source| RuntimeError::Kafka { during: "creating the consumer", source })?;
    let mut topics = topology.source_topics();
    topics.extend(lock(&engine).lane_topics().cloned());
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs).map_err(|source| RuntimeError::Kafka { during: "subscribing", source })?;
    state.set(State::Rebalancing);
    tracing::info!(application_id = %config.application_id, instance_id = %config.instance_id,
        transactional_id = %config.transactional_id(), topics = ?topics, "stream thread started");

    let mut last_tick = Instant::now();
    let outcome = loop {
        if stop.load(Ordering::Relaxed) {
            break lock(&engine).commit(&consumer);
        }
        state.beat();
        let timeout = lock(&engine).poll_timeout();
        let message = consumer.poll(timeout);
        let mut engine = lock(&engine);
        if let Some(fatal) = engine.fatal.take() {
            break Err(fatal);
        }
        if let Err(e) = engine.restore_assigned(&consumer) {
            // Asked to stop mid-restore: nothing was processed since the last commit.
            if stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            break Err(e);
        }
        if let Err(e) = engine.resume_due(&consumer, now_ms()) {
            break Err(e);
        }
        let step = match message {
            Some(Ok(message)) => engine.process(&consumer, &message),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                Ok(())
            }
            None => Ok(()),
        };
        if let Err(e) = step {
            break Err(e);
        }
        if last_tick.elapsed() >= tick {
            last_tick = Instant::now();
            if let Err(e) = engine.punctuate(&consumer, now_ms()) {
                break Err(e);
            }
        }
        if engine.commit_due() {
            if let Err(e) = engine.commit(&consumer) {
                break Err(e);
            }
        }
    };
    if outcome.is_err() {
        // Before the consumer goes: dropping it leaves the group, whose revoke callback would
        // otherwise commit whatever the failed transaction holds.
        lock(&engine).abort_after_failure(&consumer);
    }
    drop(consumer);
    outcome
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
