//! The event store in PostgreSQL: append with an expected version (optimistic concurrency),
//! load as the latest snapshot plus a replay of the events after it, and snapshots every N
//! events. Appends and snapshots run inside the caller's transaction, next to the outbox rows.

use deadpool_postgres::Transaction;
use schemas::Envelope;
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::aggregate::{evolve, DomainEvent, Order, OrderEvent, UnreadableEvent, AGGREGATE_TYPE};

/// An aggregate's state and the version of the last event in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub order: Order,
    pub version: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum EventStoreError {
    /// Someone appended to the aggregate since it was loaded; reload and decide again.
    #[error("order {aggregate_id} changed concurrently: expected version {expected}, found {actual}")]
    ConcurrencyConflict { aggregate_id: String, expected: i32, actual: i32 },
    #[error("the event store holds unreadable data for order {aggregate_id}: {detail}")]
    Corrupt { aggregate_id: String, detail: String },
    #[error("event store query failed: {0}")]
    Database(#[from] tokio_postgres::Error),
}

/// The `metadata` column: the envelope plus the trace the event was recorded in.
#[derive(Serialize, Deserialize)]
struct Metadata {
    #[serde(flatten)]
    envelope: Envelope,
    traceparent: String,
}

/// Loads an order: the latest snapshot, then the events after it. `None` if it has no events.
pub async fn load(client: &Client, aggregate_id: &str) -> Result<Option<Loaded>, EventStoreError> {
    let corrupt = |detail: String| EventStoreError::Corrupt { aggregate_id: aggregate_id.to_string(), detail };
    let snapshot = client
        .query_opt("select version, state::text from snapshots where aggregate_id = $1", &[&aggregate_id])
        .await?;
    let (mut state, mut version) = match snapshot {
        Some(row) => {
            let state: Order =
                serde_json::from_str(row.get::<_, &str>(1)).map_err(|e| corrupt(format!("snapshot: {e}")))?;
            (Some(state), row.get::<_, i32>(0))
        }
        None => (None, 0),
    };
    let rows = client
        .query(
            "select version, event_type, payload::text, metadata::text from event_store \
             where aggregate_id = $1 and version > $2 order by version",
            &[&aggregate_id, &version],
        )
        .await?;
    for row in rows {
        let event = read_event(row.get(1), row.get(2), row.get(3)).map_err(|e| corrupt(e.to_string()))?;
        state = evolve(state, &event);
        version = row.get(0);
    }
    Ok(state.map(|order| Loaded { order, version }))
}

fn read_event(event_type: &str, payload: &str, metadata: &str) -> Result<DomainEvent, UnreadableEvent> {
    let event = OrderEvent::from_stored(event_type, payload)?;
    let metadata: Metadata = serde_json::from_str(metadata)
        .map_err(|e| UnreadableEvent { event_type: event_type.to_string(), detail: format!("metadata: {e}") })?;
    Ok(DomainEvent { envelope: metadata.envelope, event }.upcast())
}

/// Every event of an aggregate from version 1, ignoring snapshots: what a snapshot must equal.
pub async fn load_events(client: &Client, aggregate_id: &str) -> Result<Vec<DomainEvent>, EventStoreError> {
    let rows = client
        .query(
            "select event_type, payload::text, metadata::text from event_store where aggregate_id = $1 order by version",
            &[&aggregate_id],
        )
        .await?;
    rows.iter()
        .map(|row| read_event(row.get(0), row.get(1), row.get(2)))
        .collect::<Result<_, _>>()
        .map_err(|e| EventStoreError::Corrupt { aggregate_id: aggregate_id.to_string(), detail: e.to_string() })
}

/// Appends `events` after `expected_version` and returns the new version. Fails with
/// `ConcurrencyConflict` if the aggregate is at another version, or another transaction appends
/// the same version first (the unique constraint decides; nothing is overwritten).
pub async fn append(
    tx: &Transaction<'_>,
    aggregate_id: &str,
    expected_version: i32,
    events: &[DomainEvent],
    traceparent: &str,
) -> Result<i32, EventStoreError> {
    let actual = current_version(tx, aggregate_id).await?;
    let conflict = |actual| EventStoreError::ConcurrencyConflict {
        aggregate_id: aggregate_id.to_string(),
        expected: expected_version,
        actual,
    };
    if actual != expected_version {
        return Err(conflict(actual));
    }
    let insert = tx
        .prepare_cached(
            "insert into event_store (event_id, aggregate_id, aggregate_type, event_type, version, payload, metadata) \
             values ($1::text::uuid, $2, $3, $4, $5, $6::text::jsonb, $7::text::jsonb)",
        )
        .await?;
    let mut version = expected_version;
    for event in events {
        version += 1;
        let corrupt = |e: serde_json::Error| EventStoreError::Corrupt {
            aggregate_id: aggregate_id.to_string(),
            detail: e.to_string(),
        };
        let payload = event.event.payload_json().map_err(corrupt)?.to_string();
        let metadata = Metadata { envelope: event.envelope.clone(), traceparent: traceparent.to_string() };
        let metadata = serde_json::to_string(&metadata).map_err(corrupt)?;
        let event_type = event.event.event_type().as_str();
        let inserted = tx
            .execute(
                &insert,
                &[&event.envelope.event_id, &aggregate_id, &AGGREGATE_TYPE, &event_type, &version, &payload, &metadata],
            )
            .await;
        match inserted {
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => return Err(conflict(version)),
            other => other?,
        };
    }
    Ok(version)
}

async fn current_version(tx: &Transaction<'_>, aggregate_id: &str) -> Result<i32, EventStoreError> {
    let select = tx.prepare_cached("select coalesce(max(version), 0) from event_store where aggregate_id = $1").await?;
    let row = tx.query_one(&select, &[&aggregate_id]).await?;
    Ok(row.get(0))
}

/// Writes a snapshot of `state` at `new_version` when the append from `old_version` crossed a
/// multiple of `every`, so a load replays fewer than `every` events.
pub async fn snapshot_if_due(
    tx: &Transaction<'_>,
    state: &Order,
    old_version: i32,
    new_version: i32,
    every: u32,
) -> Result<bool, EventStoreError> {
    let every = i32::try_from(every.max(1)).unwrap_or(i32::MAX);
    if old_version / every == new_version / every {
        return Ok(false);
    }
    let state_json = serde_json::to_string(state)
        .map_err(|e| EventStoreError::Corrupt { aggregate_id: state.order_id.clone(), detail: e.to_string() })?;
    tx.execute(
        "insert into snapshots (aggregate_id, version, state) values ($1, $2, $3::text::jsonb) \
         on conflict (aggregate_id) do update set version = excluded.version, state = excluded.state, created_at = now() \
         where snapshots.version < excluded.version",
        &[&state.order_id, &new_version, &state_json],
    )
    .await?;
    Ok(true)
}
