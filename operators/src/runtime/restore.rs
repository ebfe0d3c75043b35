//! Replays a task's changelog partitions into its stores before the task processes anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::config::StreamsConfig;
use super::error::RuntimeError;
use super::internal_events::{RestoreDoneWaiting, RestoreWaitingOnTransaction, RuntimeMetrics};
use super::raw_message::raw_record;
use super::state::StateCell;
use crate::record::RawRecord;
use crate::task::Task;

/// A consumer context for readers that stop at the end of their partitions (a restore, a
/// verifier): librdkafka's end-of-partition "errors" are how they finish, so they are not logged.
pub struct EndOfPartitionIsExpected;

impl ClientContext for EndOfPartitionIsExpected {
    fn error(&self, error: KafkaError, reason: &str) {
        if !is_end_of_partition(&error) {
            tracing::warn!(%error, reason, "kafka consumer error");
        }
    }
}

impl ConsumerContext for EndOfPartitionIsExpected {}

pub type RestoreConsumer = BaseConsumer<EndOfPartitionIsExpected>;

/// How often a long restore reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The two group-less clients a restore needs: a `read_committed` reader, and a
/// `read_uncommitted` one whose end offsets are the high watermarks.
pub struct Restorer {
    reader: RestoreConsumer,
    end_offsets: RestoreConsumer,
    /// Set when the instance is asked to stop: a restore gives up waiting then.
    stop: Arc<AtomicBool>,
    /// A long restore is alive, not stalled.
    state: StateCell,
    metrics: RuntimeMetrics,
}

impl Restorer {
    pub fn new(
        config: &StreamsConfig,
        stop: Arc<AtomicBool>,
        state: StateCell,
        metrics: RuntimeMetrics,
    ) -> Result<Self, RuntimeError> {
        let create = |client: rdkafka::ClientConfig, during| {
            client
                .create_with_context(EndOfPartitionIsExpected)
                .map_err(|source| RuntimeError::Kafka { during, source })
        };
        Ok(Restorer {
            reader: create(config.restore_consumer_config(), "creating the restore consumer")?,
            end_offsets: create(config.end_offsets_config(), "creating the end-offsets client")?,
            stop,
            state,
            metrics,
        })
    }

    /// Replays each changelog partition of `task` into its stores, up to the high watermark the
    /// partition had when the restore began (as Kafka Streams since KAFKA-10167). Aborted
    /// writes are skipped. There is no deadline: a large changelog takes what it takes, and
    /// progress is logged. Returns the number of records replayed.
    pub fn restore_task(
        &self,
        config: &StreamsConfig,
        task: &mut Task,
        changelogs: &[String],
    ) -> Result<u64, RuntimeError> {
        let partition = task.id().partition;
        let mut replayed = 0;
        // One changelog at a time: an end-of-partition event names the partition, not the topic.
        for changelog in changelogs {
            replayed += self.restore_changelog(config, task, changelog, partition)?;
        }
        Ok(replayed)
    }

    fn restore_changelog(
        &self,
        config: &StreamsConfig,
        task: &mut Task,
        changelog: &str,
        partition: i32,
    ) -> Result<u64, RuntimeError> {
        let from = self.restore_start(config, task, changelog, partition)?;
        self.replay(config, changelog, partition, from, |message| {
            let key = message.key().unwrap_or_default();
            task.restore(changelog, key, message.payload())
                .map_err(|e| RuntimeError::Restore { changelog: changelog.to_string(), reason: e.to_string() })
        })
    }

    /// A persistent store's checkpoint, if it lies inside the changelog; else, with local state
    /// wiped, the beginning (a checkpoint past the end means the topic was recreated).
    fn restore_start(
        &self,
        config: &StreamsConfig,
        task: &mut Task,
        changelog: &str,
        partition: i32,
    ) -> Result<Offset, RuntimeError> {
        let Some(checkpoint) = task.restore_from(changelog) else {
            return Ok(Offset::Beginning);
        };
        let (low, high) = watermarks(&self.end_offsets, changelog, partition, config.blocking_timeout)?;
        if (low..=high).contains(&checkpoint) {
            tracing::info!(
                changelog,
                partition,
                checkpoint,
                end = high,
                "restoring the changelog's tail after the checkpoint of local state"
            );
            return Ok(Offset::Offset(checkpoint));
        }
        tracing::warn!(
            changelog,
            partition,
            checkpoint,
            low,
            high,
            "the checkpoint of local state lies outside the changelog; wiping local state and restoring in full"
        );
        task.wipe_store(changelog)
            .map_err(|e| RuntimeError::Restore { changelog: changelog.to_string(), reason: e.to_string() })?;
        Ok(Offset::Beginning)
    }

    /// The partition's high watermark: where a checkpoint taken now says local state ends.
    pub fn end_offset(&self, config: &StreamsConfig, topic: &str, partition: i32) -> Result<i64, RuntimeError> {
        Ok(watermarks(&self.end_offsets, topic, partition, config.blocking_timeout)?.1)
    }

    /// The committed records of a partition from `from` up to the high watermark it has now.
    pub fn read_tail(
        &self,
        config: &StreamsConfig,
        topic: &str,
        partition: i32,
        from: Offset,
    ) -> Result<Vec<RawRecord>, RuntimeError> {
        let mut records = Vec::new();
        self.replay(config, topic, partition, from, |message| {
            records.push(raw_record(message));
            Ok(())
        })?;
        Ok(records)
    }

    /// Feeds every committed record of the partition from `start` up to its current high
    /// watermark to `apply`, after any transaction open on it has been decided.
    fn replay(
        &self,
        config: &StreamsConfig,
        topic: &str,
        partition: i32,
        start: Offset,
        mut apply: impl FnMut(&BorrowedMessage<'_>) -> Result<(), RuntimeError>,
    ) -> Result<u64, RuntimeError> {
        let timeout = config.blocking_timeout;
        let (low, high_watermark) = watermarks(&self.end_offsets, topic, partition, timeout)?;
        let first = match start {
            Offset::Offset(offset) => offset.max(low),
            _ => low,
        };
        if high_watermark <= first {
            return Ok(0);
        }
        self.wait_until_stable(config, topic, partition, high_watermark)?;

        // The last stable offset is now at or past the target, so the first end of partition
        // the reader meets lies past it too.
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(first))
            .map_err(|e| restore_error(topic, e))?;
        self.reader.assign(&assignment).map_err(|e| restore_error(topic, e))?;
        let mut replayed = 0u64;
        let mut last_report = Instant::now();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err(RuntimeError::Restore {
                    changelog: topic.to_string(),
                    reason: "stopped while restoring".into(),
                });
            }
            self.state.beat();
            match self.reader.poll(config.wall_clock_tick) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                // The broker restarting: the reader reconnects by itself.
                Some(Err(e)) if is_transient(&e) => {
                    tracing::warn!(topic, partition, error = %e, "restore read failed; retrying")
                }
                Some(Err(e)) => return Err(restore_error(topic, e)),
                Some(Ok(message)) => {
                    apply(&message)?;
                    replayed += 1;
                }
            }
            if last_report.elapsed() >= PROGRESS_EVERY {
                last_report = Instant::now();
                tracing::info!(topic, partition, replayed, target = high_watermark, "restoring");
            }
        }
        self.reader.unassign().map_err(|e| restore_error(topic, e))?;
        Ok(replayed)
    }

    /// Waits until no transaction that was open on the partition at `target` is still
    /// undecided: the last stable offset (the reader's end offset) reaches the target. A crashed
    /// writer's transaction is aborted by the broker after `transaction.timeout.ms`.
    fn wait_until_stable(
        &self,
        config: &StreamsConfig,
        changelog: &str,
        partition: i32,
        target: i64,
    ) -> Result<(), RuntimeError> {
        let waited = self.wait_for_last_stable(config, changelog, partition, target);
        RestoreDoneWaiting { changelog, partition }.emit(&self.metrics);
        waited
    }

    fn wait_for_last_stable(
        &self,
        config: &StreamsConfig,
        changelog: &str,
        partition: i32,
        target: i64,
    ) -> Result<(), RuntimeError> {
        let (started, mut last_report) = (Instant::now(), Instant::now());
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err(RuntimeError::Restore {
                    changelog: changelog.to_string(),
                    reason: "stopped while waiting for an open transaction".into(),
                });
            }
            self.state.beat();
            let (_, last_stable) = watermarks(&self.reader, changelog, partition, config.blocking_timeout)?;
            if last_stable >= target {
                return Ok(());
            }
            if last_report.elapsed() >= PROGRESS_EVERY {
                last_report = Instant::now();
                RestoreWaitingOnTransaction {
                    changelog,
                    partition,
                    last_stable,
                    target,
                    waited: started.elapsed(),
                    // The broker aborts a crashed writer's transaction after its timeout.
                    hanging: started.elapsed() > config.transaction_timeout * 3,
                }
                .emit(&self.metrics);
            }
            std::thread::sleep(config.wall_clock_tick);
        }
    }
}

/// A changelog created a moment ago may have no leader yet, or not be in the client's metadata
/// yet: such errors pass, so they are retried for up to 30 s before they count.
fn watermarks(
    client: &RestoreConsumer,
    changelog: &str,
    partition: i32,
    timeout: Duration,
) -> Result<(i64, i64), RuntimeError> {
    let mut attempts = 0;
    loop {
        match client.fetch_watermarks(changelog, partition, timeout) {
            Err(e) if attempts < 120 && is_transient(&e) => {
                attempts += 1;
                tracing::debug!(changelog, partition, error = %e, "changelog not ready; retrying");
                std::thread::sleep(Duration::from_millis(250));
            }
            other => return other.map_err(|e| restore_error(changelog, e)),
        }
    }
}

fn is_transient(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::NotLeaderForPartition
                | Code::LeaderNotAvailable
                | Code::UnknownTopicOrPartition
                // librdkafka's own view: its metadata of a topic created a moment ago lags.
                | Code::UnknownPartition
                | Code::UnknownTopic
                | Code::OperationTimedOut
                | Code::BrokerTransportFailure
                | Code::AllBrokersDown
        )
    )
}

fn restore_error(changelog: &str, e: KafkaError) -> RuntimeError {
    RuntimeError::Restore { changelog: changelog.to_string(), reason: e.to_string() }
}

/// librdkafka reports the end of a partition either as a consumer event or as a global error.
pub fn is_end_of_partition(error: &KafkaError) -> bool {
    matches!(error, KafkaError::PartitionEOF(_))
        || matches!(error, KafkaError::Global(code) if *code == rdkafka::types::RDKafkaErrorCode::PartitionEOF)
}
