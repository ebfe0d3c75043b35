//! The projector's loop: consume the saga topics (read_committed), project what the consumer holds
//! (up to [`MAX_BATCH`] records) in one PostgreSQL transaction, commit offsets after the database
//! did. At-least-once delivery plus the event-id dedup in the same transaction makes each event
//! count once.
//!
//! Nothing is skipped for a transient failure: while the database or the schema registry fails,
//! the projector retries the same record with backoff and stays behind. Only a record that can
//! never be read (poison) is set aside: dead-lettered to `<topic>.dlq` with its reason, and its
//! order flagged in the read model (`projection_problem`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use deadpool_postgres::Pool;
use futures::FutureExt;
use operators::clock::Clock;
use operators::error::ProcessError;
use operators::record::RawRecord;
use operators::runtime::{dead_letter_record, kafka_headers, raw_record, FailureReason};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::{CodecError, SagaCodec, SagaEvent};

use super::config::ProjectorConfig;
use super::internal_events::{
    BatchProjected, ConsumeFailed, DecodeRetried, DuplicateSkipped, EventApplied, OffsetsCommitFailed,
    ProjectionFailed, ProjectorStarted, RecordUndecodable,
};
use super::store::{apply_events, dead_letter_already_sent, dead_letter_sent, flag_projection_problem, Projection};
use crate::offsets::PendingOffsets;

/// Records per database transaction at most. A batch is only what the consumer already holds, so
/// batching adds no wait; one transaction per event capped the read model near 100 events/s.
const MAX_BATCH: usize = 500;
/// Backoff between attempts to project an event while PostgreSQL fails.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Pause after a consumer error, so a broker outage does not spin.
const CONSUME_ERROR_PAUSE: Duration = Duration::from_millis(500);

/// Projects the saga topics into order_view until `shutdown` resolves, then commits the offsets
/// of everything projected and leaves the group. Errors only if the consumer cannot start.
pub async fn run_projector(
    config: ProjectorConfig,
    codec: SagaCodec,
    pool: Pool,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let consumer: Arc<StreamConsumer> =
        Arc::new(config.consumer_config().create().context("creating the projector's Kafka consumer")?);
    let dead_letters: FutureProducer =
        config.producer_config().create().context("creating the projector's dead-letter producer")?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).with_context(|| format!("subscribing the projector to {topics:?}"))?;
    ProjectorStarted { group: &config.group_id, topics: &config.topics }.emit();

    let mut pending = PendingOffsets::new(config.commit_interval);
    // The last records before a quiet spell are committed on a tick, not only when the next
    // record arrives: else the group shows lag while idle, and a restart reads them again.
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
            // Read through the runtime's decoder: rdkafka's own header accessor panics on a
            // header key that is not UTF-8.
            received = consumer.recv() => received.map(|message| raw_record(&message)),
        };
        let mut batch = match received {
            Ok(record) => vec![record],
            Err(error) => {
                ConsumeFailed { error: &error }.emit();
                tokio::time::sleep(CONSUME_ERROR_PAUSE).await;
                continue;
            }
        };
        while batch.len() < MAX_BATCH {
            match consumer.recv().now_or_never() {
                Some(Ok(message)) => batch.push(raw_record(&message)),
                Some(Err(error)) => {
                    ConsumeFailed { error: &error }.emit();
                    break;
                }
                None => break,
            }
        }
        // Dropping a half-done projection rolls its transaction back; the records are read again.
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = project_batch(&batch, &codec, &pool, &dead_letters, &config.group_id) => {}
        }
        BatchProjected { group: &config.group_id, records: batch.len() }.emit();
        for record in &batch {
            pending.done(&record.topic, record.partition, record.offset);
        }
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

/// Projects a batch of records, retrying while the database or the registry fails: an event is
/// never dropped for that. A record that can never be read is set aside first.
async fn project_batch(
    records: &[RawRecord],
    codec: &SagaCodec,
    pool: &Pool,
    dead_letters: &FutureProducer,
    group: &str,
) {
    let mut decoded = Vec::with_capacity(records.len());
    for record in records {
        if let Some(event) = decode_or_set_aside(record, codec, pool, dead_letters, group).await {
            decoded.push((record, event));
        }
    }
    if decoded.is_empty() {
        return;
    }
    let events: Vec<(&SagaEvent, Option<i64>)> =
        decoded.iter().map(|(record, event)| (event, order_version(record))).collect();
    let mut retry_in = FIRST_RETRY;
    let outcomes = loop {
        match apply_events(pool, &events).await {
            Ok(outcomes) => break outcomes,
            Err(error) => {
                let (record, first) = &decoded[0];
                ProjectionFailed {
                    topic: &record.topic,
                    events: events.len(),
                    first_event_id: &first.envelope.event_id,
                    occurred_at_ms: first.envelope.occurred_at,
                    error: &error,
                    retry_in,
                }
                .emit();
                tokio::time::sleep(retry_in).await;
                retry_in = (retry_in * 2).min(MAX_RETRY);
            }
        }
    };
    for ((record, event), outcome) in decoded.iter().zip(outcomes) {
        match outcome {
            Projection::Applied { status, version } => EventApplied {
                topic: &record.topic,
                event_type: event.event_type().as_str(),
                order_id: &event.envelope.order_id,
                occurred_at_ms: event.envelope.occurred_at,
                status: status.as_str(),
                version,
            }
            .emit(),
            Projection::Duplicate => {
                DuplicateSkipped { topic: &record.topic, event_id: &event.envelope.event_id }.emit()
            }
        }
    }
}

/// The record's event, once the registry answers; `None` for a record that can never be read,
/// which is dead-lettered and its order flagged.
async fn decode_or_set_aside(
    record: &RawRecord,
    codec: &SagaCodec,
    pool: &Pool,
    dead_letters: &FutureProducer,
    group: &str,
) -> Option<SagaEvent> {
    let topic = record.topic.as_str();
    let mut retry_in = FIRST_RETRY;
    loop {
        match decode(record, codec).await {
            Ok(event) => return Some(event),
            Err(error) if error.is_transient() => {
                DecodeRetried { topic, offset: record.offset, error: &error.to_string(), retry_in }.emit();
                tokio::time::sleep(retry_in).await;
                retry_in = (retry_in * 2).min(MAX_RETRY);
            }
            Err(error) => {
                let reason = error.to_string();
                RecordUndecodable { topic, partition: record.partition, offset: record.offset, error: &reason }.emit();
                set_aside(record, &reason, pool, dead_letters, group).await;
                return None;
            }
        }
    }
}

/// The order's event-store version, which Debezium copies from the outbox row into a header.
pub(super) fn order_version(record: &RawRecord) -> Option<i64> {
    let header = record.headers.iter().find(|header| header.key == "aggregate_version")?;
    std::str::from_utf8(header.value.as_deref()?).ok()?.trim().parse().ok()
}

/// The record's event; decoding fetches a writer schema it has not seen from the registry.
pub(super) async fn decode(record: &RawRecord, codec: &SagaCodec) -> Result<SagaEvent, CodecError> {
    codec.decode_value(&record.topic, record.value.as_deref()).await
}

/// A poison record: its dead letter (the original bytes, `dlq.*` headers with the reason), and
/// a flag on its order. Each is retried until it succeeds, so the record is never lost; the
/// dead letter is sent once, however long the database takes to come back for the flag, and
/// not again when the group reads the record again after offsets it failed to commit (only a
/// crash between the broker's acknowledgement and noting it sends a second one).
async fn set_aside(record: &RawRecord, reason: &str, pool: &Pool, dead_letters: &FutureProducer, group: &str) {
    let (topic, partition, offset) = (record.topic.as_str(), record.partition, record.offset);
    let already_sent = retry_until_done(record, "looking up its dead letter", || async {
        dead_letter_already_sent(pool, group, topic, partition, offset).await.map_err(|e| e.to_string())
    })
    .await;
    if !already_sent {
        send_dead_letter(record, reason, dead_letters, group).await;
        retry_until_done(record, "noting its dead letter", || async {
            dead_letter_sent(pool, group, topic, partition, offset).await.map_err(|e| e.to_string())
        })
        .await;
    }
    if let Some(order_id) = record.key.as_deref().map(String::from_utf8_lossy) {
        retry_until_done(record, "flagging its order", || async {
            flag_projection_problem(pool, &order_id, reason).await.map_err(|e| e.to_string())
        })
        .await;
    }
}

/// The record's dead letter, sent until the broker acknowledges it.
async fn send_dead_letter(record: &RawRecord, reason: &str, dead_letters: &FutureProducer, group: &str) {
    let error = ProcessError::deserialization(reason.to_string()).with_processor("projector");
    let failed_at_ms = operators::clock::SystemClock.now_ms();
    let letter = dead_letter_record(record.clone(), group, &FailureReason::Process(&error), 1, failed_at_ms);
    let headers = kafka_headers(&letter.headers);
    retry_until_done(record, "dead-lettering", || {
        let mut out =
            FutureRecord::<[u8], [u8]>::to(&letter.topic).headers(headers.clone()).timestamp(letter.timestamp_ms);
        if let Some(key) = letter.key.as_deref() {
            out = out.key(key);
        }
        if let Some(value) = letter.value.as_deref() {
            out = out.payload(value);
        }
        async move { dead_letters.send(out, Duration::from_secs(10)).await.map(|_| ()).map_err(|(e, _)| e.to_string()) }
    })
    .await;
}

/// Runs `attempt` with backoff until it succeeds, and gives what it answered.
async fn retry_until_done<T, F: Future<Output = Result<T, String>>>(
    record: &RawRecord,
    step: &str,
    mut attempt: impl FnMut() -> F,
) -> T {
    let mut retry_in = FIRST_RETRY;
    loop {
        match attempt().await {
            Ok(answer) => return answer,
            Err(error) => {
                tracing::warn!(topic = %record.topic, offset = record.offset, %error, ?retry_in, "setting an undecodable record aside: {step} failed; retrying");
                tokio::time::sleep(retry_in).await;
                retry_in = (retry_in * 2).min(MAX_RETRY);
            }
        }
    }
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
