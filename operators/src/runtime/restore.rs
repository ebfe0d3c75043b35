//! Replays a task's changelog partitions into its stores before the task processes anything.

use std::time::Instant;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::config::StreamsConfig;
use super::error::RuntimeError;
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

/// Reads each changelog partition of `task` from the beginning to its end and applies every
/// record. Under `read_committed` the end is the last stable offset, so aborted writes are never
/// replayed. Returns the number of records replayed.
pub fn restore_task(
    consumer: &RestoreConsumer,
    config: &StreamsConfig,
    task: &mut Task,
    changelogs: &[String],
) -> Result<u64, RuntimeError> {
    let partition = task.id().partition;
    let mut replayed = 0;
    // One changelog at a time: an end-of-partition event names the partition, not the topic.
    for changelog in changelogs {
        replayed += restore_changelog(consumer, config, task, changelog, partition)?;
    }
    Ok(replayed)
}

fn restore_changelog(
    consumer: &RestoreConsumer,
    config: &StreamsConfig,
    task: &mut Task,
    changelog: &str,
    partition: i32,
) -> Result<u64, RuntimeError> {
    let (low, high) = consumer
        .fetch_watermarks(changelog, partition, config.blocking_timeout)
        .map_err(|e| restore_error(changelog, e))?;
    if high <= low {
        return Ok(0);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(changelog, partition, Offset::Beginning)
        .map_err(|e| restore_error(changelog, e))?;
    consumer.assign(&assignment).map_err(|e| restore_error(changelog, e))?;

    let deadline = Instant::now() + config.blocking_timeout * 4;
    let mut replayed = 0u64;
    loop {
        if Instant::now() > deadline {
            return Err(RuntimeError::Restore {
                changelog: changelog.to_string(),
                reason: "did not reach the end in time (is another instance's transaction still open on it?)".into(),
            });
        }
        match consumer.poll(config.wall_clock_tick) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => return Err(restore_error(changelog, e)),
            Some(Ok(message)) => {
                let key = message.key().unwrap_or_default();
                task.restore(changelog, key, message.payload())
                    .map_err(|e| RuntimeError::Restore { changelog: changelog.to_string(), reason: e.to_string() })?;
                replayed += 1;
            }
        }
    }
    consumer.unassign().map_err(|e| restore_error(changelog, e))?;
    Ok(replayed)
}

fn restore_error(changelog: &str, e: KafkaError) -> RuntimeError {
    RuntimeError::Restore { changelog: changelog.to_string(), reason: e.to_string() }
}

/// librdkafka reports the end of a partition either as a consumer event or as a global error.
pub fn is_end_of_partition(error: &KafkaError) -> bool {
    matches!(error, KafkaError::PartitionEOF(_))
        || matches!(error, KafkaError::Global(code) if *code == rdkafka::types::RDKafkaErrorCode::PartitionEOF)
}
