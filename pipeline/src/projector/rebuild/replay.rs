//! Reads every record of the projector's topics below the end offsets (read_committed) and folds
//! it into the rebuild's tables with the live projector's rules: the same decoding, event-id
//! dedup and fold (`store::apply_events_in`). Nothing else writes those tables, so a batch of
//! records goes in one transaction.
//!
//! The consumer is assigned its partitions and never joins or commits to a group: the live
//! projector's committed offsets stay as they are.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use deadpool_postgres::Pool;
use operators::record::RawRecord;
use operators::runtime::raw_record;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use schemas::{SagaCodec, SagaEvent};
use tokio::time::Instant;

use super::end_offsets::EndOffsets;
use super::progress::{Counts, ProgressReporter};
use super::tables::NEXT;
use crate::projector::config::ProjectorConfig;
use crate::projector::consumer::{decode, order_version};
use crate::projector::store::{apply_events_in, flag_projection_problem_in, Projection, ReadModelError};

/// Records per transaction.
const BATCH_SIZE: usize = 500;
/// How long a batch waits to fill up; also how often the positions are looked at while idle.
const BATCH_WAIT: Duration = Duration::from_millis(100);
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);
const CONSUME_ERROR_PAUSE: Duration = Duration::from_millis(500);

/// A consumer for the rebuild: read_committed like the projector, under a group id of its own
/// that it never joins or commits to (librdkafka wants one to assign partitions).
pub fn consumer(config: &ProjectorConfig) -> Result<StreamConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("group.id", format!("{}-rebuild", config.group_id))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating the rebuild's Kafka consumer")
}

/// Reads until every partition reached its end, folding each batch into the rebuild's tables.
/// Fails on a database error that retrying will not fix, or when `shutdown` resolves.
pub async fn replay<F: FnMut(&str)>(
    consumer: Arc<StreamConsumer>,
    codec: &SagaCodec,
    pool: &Pool,
    offsets: &mut EndOffsets,
    counts: &mut Counts,
    progress: &mut ProgressReporter<F>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    consumer.assign(&offsets.assignment()?).context("assigning the rebuild's partitions")?;
    tokio::pin!(shutdown);
    while !offsets.all_done() {
        let batch = tokio::select! {
            biased;
            () = &mut shutdown => bail!("interrupted; the live view was not changed"),
            batch = next_batch(&consumer) => batch,
        };
        let wanted: Vec<RawRecord> =
            batch.into_iter().filter(|r| offsets.wanted(&r.topic, r.partition, r.offset)).collect();
        if !wanted.is_empty() {
            tokio::select! {
                biased;
                () = &mut shutdown => bail!("interrupted; the live view was not changed"),
                folded = fold(&wanted, codec, pool) => *counts += folded?,
            }
        }
        // Positions, not records: a partition that ends in a transaction marker is done once
        // the consumer moved past it.
        let mut finished = TopicPartitionList::new();
        for element in consumer.position().context("reading the rebuild consumer's positions")?.elements() {
            if let Offset::Offset(position) = element.offset() {
                if offsets.advance(element.topic(), element.partition(), position) {
                    finished.add_partition(element.topic(), element.partition());
                }
            }
        }
        if finished.count() > 0 {
            // Records produced after the rebuild began are not wanted; stop fetching them.
            consumer.pause(&finished).context("pausing the partitions read to their end")?;
        }
        progress.tick(offsets, counts);
    }
    Ok(())
}

/// Up to [`BATCH_SIZE`] records, or what arrived within [`BATCH_WAIT`].
async fn next_batch(consumer: &StreamConsumer) -> Vec<RawRecord> {
    let mut batch = Vec::new();
    let deadline = Instant::now() + BATCH_WAIT;
    while batch.len() < BATCH_SIZE {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Err(_) => break,
            // Through the runtime's decoder: rdkafka's own header accessor panics on a header
            // key that is not UTF-8.
            Ok(Ok(message)) => batch.push(raw_record(&message)),
            Ok(Err(error)) => {
                tracing::warn!(%error, "rebuild consumer error");
                tokio::time::sleep(CONSUME_ERROR_PAUSE).await;
                break;
            }
        }
    }
    batch
}

/// Decodes the batch (retrying while the registry fails) and applies it in one transaction
/// (retrying while PostgreSQL is unavailable).
async fn fold(batch: &[RawRecord], codec: &SagaCodec, pool: &Pool) -> Result<Counts> {
    let mut decoded = Vec::with_capacity(batch.len());
    for record in batch {
        decoded.push((record, decode_with_retry(record, codec).await));
    }
    let mut retry_in = FIRST_RETRY;
    loop {
        match apply_batch(pool, &decoded).await {
            Ok(counts) => return Ok(counts),
            Err(error) if is_transient(&error) => {
                tracing::warn!(%error, ?retry_in, "folding a batch into {} failed; retrying", NEXT.view);
                tokio::time::sleep(retry_in).await;
                retry_in = (retry_in * 2).min(MAX_RETRY);
            }
            Err(error) => return Err(error).with_context(|| format!("folding records into {}", NEXT.view)),
        }
    }
}

/// The event, or why the record can never be read (the live projector dead-lettered it when it
/// read it; the rebuild only flags its order, so the dead-letter topic gets no second copy).
async fn decode_with_retry(record: &RawRecord, codec: &SagaCodec) -> Result<SagaEvent, String> {
    let mut retry_in = FIRST_RETRY;
    loop {
        match decode(record, codec).await {
            Ok(event) => return Ok(event),
            Err(error) if error.is_transient() => {
                tracing::warn!(topic = %record.topic, offset = record.offset, %error, ?retry_in, "cannot decode the record for now; retrying");
                tokio::time::sleep(retry_in).await;
                retry_in = (retry_in * 2).min(MAX_RETRY);
            }
            Err(error) => return Err(error.to_string()),
        }
    }
}

async fn apply_batch(
    pool: &Pool,
    decoded: &[(&RawRecord, Result<SagaEvent, String>)],
) -> Result<Counts, ReadModelError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut events = Vec::with_capacity(decoded.len());
    let mut undecodable = 0;
    for (record, event) in decoded {
        match event {
            Ok(event) => events.push((event, order_version(record))),
            Err(reason) => {
                undecodable += 1;
                if let Some(order_id) = record.key.as_deref().map(String::from_utf8_lossy) {
                    flag_projection_problem_in(&tx, NEXT, &order_id, reason).await?;
                }
            }
        }
    }
    let projected = apply_events_in(&tx, NEXT, &events).await?;
    tx.commit().await?;
    let duplicates = projected.iter().filter(|outcome| **outcome == Projection::Duplicate).count() as u64;
    Ok(Counts { records: decoded.len() as u64, applied: projected.len() as u64 - duplicates, duplicates, undecodable })
}

/// No connection, a server going away, a conflict or a resource limit pass by themselves; a
/// missing table or a violated constraint will not.
fn is_transient(error: &ReadModelError) -> bool {
    match error {
        ReadModelError::Pool(_) => true,
        ReadModelError::Postgres(error) => match error.as_db_error() {
            None => true,
            Some(db) => ["08", "40", "53", "57"].iter().any(|class| db.code().code().starts_with(class)),
        },
        ReadModelError::RowMissing(_) => true,
        ReadModelError::UnknownStatus { .. } => false,
    }
}
