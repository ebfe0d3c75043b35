//! The projector's loop: consume the saga topics (read_committed), project each event in one
//! PostgreSQL transaction, commit offsets after the database did. At-least-once delivery plus the
//! event-id dedup in the same transaction makes each event count once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use deadpool_postgres::Pool;
use operators::serdes::Serde;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use schemas::SagaEvent;

use super::config::ProjectorConfig;
use super::internal_events::{
    ConsumeFailed, DuplicateSkipped, EventApplied, OffsetsCommitFailed, ProjectionFailed, RecordUndecodable,
};
use super::offsets::PendingOffsets;
use super::store::{apply_event, Projection};
use crate::codec::EventSerde;

/// Backoff between attempts to project an event while PostgreSQL fails.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Pause after a consumer error, so a broker outage does not spin.
const CONSUME_ERROR_PAUSE: Duration = Duration::from_millis(500);

/// Projects the saga topics into order_view until `shutdown` resolves, then commits the offsets
/// of everything projected and leaves the group. Errors only if the consumer cannot start.
pub async fn run_projector(
    config: ProjectorConfig,
    serde: EventSerde,
    pool: Pool,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let consumer: Arc<StreamConsumer> =
        Arc::new(config.consumer_config().create().context("creating the projector's Kafka consumer")?);
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).with_context(|| format!("subscribing the projector to {topics:?}"))?;
    tracing::info!(group = %config.group_id, ?topics, "projector started");

    let mut pending = PendingOffsets::new(config.commit_interval);
    tokio::pin!(shutdown);
    loop {
        let received = tokio::select! {
            biased;
            () = &mut shutdown => break,
            received = consumer.recv() => received.map(|message| message.detach()),
        };
        let record = match received {
            Ok(record) => record,
            Err(error) => {
                ConsumeFailed { error: &error }.emit();
                tokio::time::sleep(CONSUME_ERROR_PAUSE).await;
                continue;
            }
        };
        // Dropping a half-done projection rolls its transaction back; the record is read again.
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = project_record(&record, &serde, &pool) => {}
        }
        pending.done(record.topic(), record.partition(), record.offset());
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
    .context("closing the projector's consumer")?;
    tokio::task::spawn_blocking(move || drop(consumer)).await.context("dropping the projector's consumer")?;
    tracing::info!("projector stopped");
    Ok(())
}

/// Projects one record, retrying while the database fails: an event is never dropped for that.
async fn project_record(record: &OwnedMessage, serde: &EventSerde, pool: &Pool) {
    let topic = record.topic();
    let event = match decode(record, serde).await {
        Ok(event) => event,
        Err(error) => {
            RecordUndecodable { topic, partition: record.partition(), offset: record.offset(), error: &error }.emit();
            return;
        }
    };
    let mut retry_in = FIRST_RETRY;
    loop {
        match apply_event(pool, &event).await {
            Ok(Projection::Applied(view)) => {
                EventApplied {
                    topic,
                    event_type: event.event_type().as_str(),
                    order_id: &view.order_id,
                    occurred_at_ms: event.envelope.occurred_at,
                    status: view.status.as_str(),
                    version: view.version,
                }
                .emit();
                return;
            }
            Ok(Projection::Duplicate) => {
                DuplicateSkipped { topic, event_id: &event.envelope.event_id }.emit();
                return;
            }
            Err(error) => {
                ProjectionFailed {
                    topic,
                    event_id: &event.envelope.event_id,
                    occurred_at_ms: event.envelope.occurred_at,
                    error: &error,
                    retry_in,
                }
                .emit();
                tokio::time::sleep(retry_in).await;
                retry_in = (retry_in * 2).min(MAX_RETRY);
            }
        }
    }
}

/// Decoding may fetch an unknown writer schema from the registry with a blocking call.
async fn decode(record: &OwnedMessage, serde: &EventSerde) -> Result<SagaEvent, String> {
    let bytes = record.payload().ok_or("record has no value (tombstone)")?.to_vec();
    let topic = record.topic().to_string();
    let serde = serde.clone();
    tokio::task::spawn_blocking(move || serde.deserialize(&topic, &bytes))
        .await
        .map_err(|e| format!("decoding panicked: {e}"))?
        .map_err(|e| e.to_string())
}

fn commit(consumer: &StreamConsumer, pending: &mut PendingOffsets, mode: CommitMode) {
    let committed = pending.take().and_then(|offsets| {
        if offsets.count() == 0 {
            return Ok(());
        }
        consumer.commit(&offsets, mode)
    });
    if let Err(error) = committed {
        OffsetsCommitFailed { error: &error }.emit();
    }
}
