//! The DLQ indexer: consumes every `*.dlq` topic (a regex subscription, so a new DLQ topic is
//! picked up without a restart), read_committed, into `dlq_entries`. Offsets are committed only
//! after the database has the record; a record read again (a restart, a rebalance) hits the
//! unique (topic, partition, offset) and changes nothing. A database outage holds the indexer
//! back, retrying with backoff: a dead letter is never skipped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use deadpool_postgres::Pool;
use operators::runtime::raw_record;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::ClientConfig;

use super::entry::NewEntry;
use super::internal_events::{EntryIndexed, IndexerCommitFailed, IndexerConsumeFailed, IndexingFailed};
use super::store;
use crate::offsets::PendingOffsets;

const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Pause after a consumer error, so a broker outage does not spin.
const CONSUME_ERROR_PAUSE: Duration = Duration::from_millis(500);

#[derive(Clone, Debug, PartialEq)]
pub struct IndexerConfig {
    pub bootstrap_servers: String,
    pub group_id: String,
    /// A librdkafka regex subscription (it starts with `^`).
    pub topic_pattern: String,
    pub commit_interval: Duration,
    /// How soon a DLQ topic created after start is seen (librdkafka's default is 5 minutes).
    pub metadata_refresh: Duration,
}

impl IndexerConfig {
    /// Group `dlq-indexer` over every topic whose name ends in `.dlq`.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        IndexerConfig {
            bootstrap_servers: bootstrap_servers.into(),
            group_id: "dlq-indexer".into(),
            topic_pattern: r"^.*\.dlq$".into(),
            commit_interval: Duration::from_secs(1),
            metadata_refresh: Duration::from_secs(30),
        }
    }

    fn consumer_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", &self.group_id)
            // Dead letters are written in the runtime's transactions: only committed ones count.
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("topic.metadata.refresh.interval.ms", self.metadata_refresh.as_millis().to_string())
            .set("partition.assignment.strategy", "cooperative-sticky");
        config
    }
}

/// Indexes dead letters until `shutdown` resolves, then commits what is indexed and leaves the
/// group. Errors only if the consumer cannot start.
pub async fn run_indexer(config: IndexerConfig, pool: Pool, shutdown: impl Future<Output = ()>) -> Result<()> {
    let consumer: Arc<StreamConsumer> =
        Arc::new(config.consumer_config().create().context("creating the DLQ indexer's Kafka consumer")?);
    consumer
        .subscribe(&[config.topic_pattern.as_str()])
        .with_context(|| format!("subscribing the DLQ indexer to {}", config.topic_pattern))?;
    tracing::info!(group = %config.group_id, pattern = %config.topic_pattern, "DLQ indexer started");

    let mut pending = PendingOffsets::new(config.commit_interval);
    // Dead letters come in bursts: the last of a burst is committed on a tick, not only when the
    // next record arrives, so a restart does not read it again.
    let mut commit_ticks = tokio::time::interval(config.commit_interval);
    tokio::pin!(shutdown);
    loop {
        let received = tokio::select! {
            biased;
            () = &mut shutdown => break,
            _ = commit_ticks.tick() => {
                if pending.due() {
                    commit(&consumer, &mut pending, CommitMode::Async);
                }
                continue;
            }
            // recv is cancellation safe. The runtime's decoder: rdkafka's own header accessor
            // panics on a non-UTF-8 key.
            received = consumer.recv() => received.map(|message| raw_record(&message)),
        };
        let record = match received {
            Ok(record) => record,
            Err(error) => {
                IndexerConsumeFailed { error: &error }.emit();
                tokio::time::sleep(CONSUME_ERROR_PAUSE).await;
                continue;
            }
        };
        let (topic, partition, offset) = (record.topic.clone(), record.partition, record.offset);
        let entry = NewEntry::from_record(record);
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = index(&pool, &entry) => {}
        }
        pending.done(&topic, partition, offset);
        if pending.due() {
            commit(&consumer, &mut pending, CommitMode::Async);
        }
    }

    // Synchronous commit and leaving the group block: both run off the executor.
    let closing = consumer.clone();
    tokio::task::spawn_blocking(move || {
        commit(&closing, &mut pending, CommitMode::Sync);
        closing.unsubscribe();
    })
    .await
    .context("closing the DLQ indexer's consumer")?;
    tokio::task::spawn_blocking(move || drop(consumer)).await.context("dropping the DLQ indexer's consumer")?;
    tracing::info!("DLQ indexer stopped");
    Ok(())
}

/// Writes one entry, retrying while the database fails.
async fn index(pool: &Pool, entry: &NewEntry) {
    let mut retry_in = FIRST_RETRY;
    loop {
        match store::insert(pool, entry).await {
            Ok(new) => {
                EntryIndexed {
                    dlq_topic: &entry.dlq_topic,
                    partition: entry.dlq_partition,
                    offset: entry.dlq_offset,
                    new,
                }
                .emit();
                return;
            }
            Err(error) => {
                IndexingFailed { dlq_topic: &entry.dlq_topic, offset: entry.dlq_offset, error: &error, retry_in }
                    .emit();
                tokio::time::sleep(retry_in).await;
                retry_in = (retry_in * 2).min(MAX_RETRY);
            }
        }
    }
}

fn commit(consumer: &StreamConsumer, pending: &mut PendingOffsets, mode: CommitMode) {
    let committed =
        pending.take().and_then(|offsets| if offsets.count() == 0 { Ok(()) } else { consumer.commit(&offsets, mode) });
    if let Err(error) = committed {
        IndexerCommitFailed { error: &error }.emit();
    }
}
