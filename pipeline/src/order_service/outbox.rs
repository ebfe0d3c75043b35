//! The transactional outbox: one row per recorded event, in the event store's transaction, with
//! the event already in Confluent wire format (Debezium passes the bytes through untouched). The
//! sweeper deletes rows Debezium has long read from the WAL.

use std::time::Duration;

use deadpool_postgres::{Pool, Transaction};
use schemas::{CodecError, SagaCodec, ORDER_EVENTS};

use super::aggregate::{DomainEvent, AGGREGATE_TYPE};

/// An outbox row, encoded before any transaction opens (encoding may call the registry).
#[derive(Clone, Debug)]
pub struct OutboxRow {
    pub event_id: String,
    pub aggregate_id: String,
    pub event_type: &'static str,
    pub payload: Vec<u8>,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub traceparent: String,
}

impl OutboxRow {
    pub async fn encode(codec: &SagaCodec, event: &DomainEvent, traceparent: &str) -> Result<Self, CodecError> {
        let payload = codec.encode(ORDER_EVENTS, &event.to_saga_event()).await?;
        Ok(OutboxRow {
            event_id: event.envelope.event_id.clone(),
            aggregate_id: event.envelope.order_id.clone(),
            event_type: event.event.event_type().as_str(),
            payload,
            correlation_id: event.envelope.correlation_id.clone(),
            causation_id: event.envelope.causation_id.clone(),
            traceparent: traceparent.to_string(),
        })
    }
}

/// Inserts the rows of events appended right after version `appended_after` of their order:
/// row i carries the order's version after it (`appended_after + i + 1`), for read-your-writes.
pub async fn insert(
    tx: &Transaction<'_>,
    rows: &[OutboxRow],
    appended_after: i64,
) -> Result<(), tokio_postgres::Error> {
    let statement = tx
        .prepare_cached(
            "insert into outbox (id, aggregate_type, aggregate_id, event_type, payload, correlation_id, causation_id, traceparent, aggregate_version) \
             values ($1::text::uuid, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await?;
    for (version, row) in (appended_after + 1..).zip(rows) {
        tx.execute(
            &statement,
            &[
                &row.event_id,
                &AGGREGATE_TYPE,
                &row.aggregate_id,
                &row.event_type,
                &row.payload,
                &row.correlation_id,
                &row.causation_id,
                &row.traceparent,
                &version,
            ],
        )
        .await?;
    }
    Ok(())
}

/// Deletes outbox rows older than `retention`; returns how many.
pub async fn sweep_outbox(pool: &Pool, retention: Duration) -> anyhow::Result<u64> {
    let client = pool.get().await?;
    let deleted = client
        .execute("delete from outbox where created_at < now() - make_interval(secs => $1)", &[&retention.as_secs_f64()])
        .await?;
    Ok(deleted)
}

/// Sweeps the outbox every `every`, for as long as the task runs. A failed sweep is logged and
/// retried at the next tick: old rows only cost space.
pub async fn run_outbox_sweeper(pool: Pool, retention: Duration, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match sweep_outbox(&pool, retention).await {
            Ok(deleted) => tracing::debug!(deleted, "outbox swept"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "outbox sweep failed; retrying at the next tick"),
        }
    }
}
