//! The order service's commands: place an order, request its cancellation. Each encodes its
//! events first (the registry may be called), then writes event store, snapshot, outbox and, for
//! placements with an `Idempotency-Key`, `order_requests` in one PostgreSQL transaction.

use std::time::{SystemTime, UNIX_EPOCH};

use deadpool_postgres::{PoolError, Transaction};
use schemas::{CodecError, OrderInterventionRequested, OrderPlaced};
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;

use super::aggregate::{self, AcceptedStatus, CancelRejected, DomainEvent};
use super::event_store::{self, EventStoreError, Loaded};
use operators::idempotency::{AsyncIdempotencyGuard, Claim};

use super::idempotency::{guard_config, request_hash, scoped_key};
use super::outbox::{self, OutboxRow};
use super::trace::TraceParent;
use super::OrderService;

/// The body of a `202` answer; for placements also what a retry with the same key gets back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderAccepted {
    pub order_id: String,
    pub status: AcceptedStatus,
    /// The order's event-store version after this command: `GET /orders/{id}?min_version=` it
    /// to read your own write. Absent (0) in answers stored before versions were returned.
    #[serde(default)]
    pub version: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("order {0} not found")]
    NotFound(String),
    #[error(transparent)]
    Rejected(#[from] CancelRejected),
    #[error("a request with this Idempotency-Key is still being processed; retry later")]
    InProgress,
    #[error("this Idempotency-Key was already used for a different request; use a new key for a new request")]
    KeyReused,
    #[error("order {order_id} is {status}, not waiting for intervention (REQUIRES_INTERVENTION)")]
    NotParked { order_id: String, status: String },
    #[error(transparent)]
    Store(#[from] EventStoreError),
    #[error("encoding the event for the outbox failed: {0}")]
    Encode(#[from] CodecError),
    #[error("no PostgreSQL connection: {0}")]
    Pool(#[from] PoolError),
    #[error("the stored response of Idempotency-Key {key:?} is unreadable: {detail}")]
    StoredResponse { key: String, detail: String },
}

impl From<tokio_postgres::Error> for CommandError {
    fn from(e: tokio_postgres::Error) -> Self {
        CommandError::Store(EventStoreError::Database(e))
    }
}

impl OrderService {
    fn guard(&self) -> AsyncIdempotencyGuard {
        AsyncIdempotencyGuard::new(self.redis.clone(), guard_config())
    }

    /// Places an order. With an idempotency key, a retry gets the first request's answer and
    /// records nothing; a retry while the first is running gets `InProgress`.
    pub async fn place_order(
        &self,
        placed: OrderPlaced,
        idempotency_key: Option<&str>,
        trace: &TraceParent,
    ) -> Result<OrderAccepted, CommandError> {
        let Some(key) = idempotency_key else { return self.record_placement(placed, None, trace).await };
        let (key, hash) = (scoped_key(&placed.customer_id, key), request_hash(&placed));
        let guard = self.guard();
        let lease = match guard.claim(&key, Some(&hash)).await {
            Ok(Claim::Acquired(lease)) => Some(lease),
            Ok(Claim::InProgress) => return Err(CommandError::InProgress),
            Ok(Claim::Completed(Some(response))) => return read_response(&key, response),
            Ok(Claim::Reused) => return Err(CommandError::KeyReused),
            // Without Redis (or its answer) PostgreSQL decides alone.
            Ok(Claim::Completed(None)) | Err(_) => None,
        };
        let result = self.record_placement(placed, Some((&key, &hash)), trace).await;
        match (&result, lease) {
            (Ok(accepted), _) => match serde_json::to_value(accepted) {
                Ok(response) => {
                    if let Err(e) = guard.complete(&key, Some(&response), Some(&hash)).await {
                        tracing::warn!(error = %e, "storing a completed idempotency key failed; PostgreSQL still has it");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot cache the response; PostgreSQL still has it"),
            },
            (Err(_), Some(lease)) => {
                if let Err(e) = guard.release(&lease).await {
                    tracing::warn!(error = %e, "releasing an idempotency lease failed; it expires by itself");
                }
            }
            (Err(_), None) => {}
        }
        result
    }

    /// `idempotency_key`: the scoped key and the request's hash.
    async fn record_placement(
        &self,
        placed: OrderPlaced,
        idempotency_key: Option<(&str, &str)>,
        trace: &TraceParent,
    ) -> Result<OrderAccepted, CommandError> {
        let order_id = uuid::Uuid::new_v4().to_string();
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let event = aggregate::place(&order_id, &correlation_id, placed, now_millis());
        let row = OutboxRow::encode(&self.codec, &event, trace.as_str()).await?;
        let accepted = OrderAccepted { order_id: order_id.clone(), status: AcceptedStatus::Placed, version: 1 };

        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if let Some((key, hash)) = idempotency_key {
            let response = serde_json::to_string(&accepted)
                .map_err(|e| CommandError::StoredResponse { key: key.to_string(), detail: e.to_string() })?;
            // First statement of the transaction: a duplicate waits here for the first request's
            // commit, then gets the unique violation and the first response.
            let claim = tx
                .prepare_cached(
                    "insert into order_requests (idempotency_key, order_id, response, request_hash) values ($1, $2, $3::text::jsonb, $4)",
                )
                .await?;
            let claimed = tx.execute(&claim, &[&key, &order_id, &response, &hash]).await;
            match claimed {
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    tx.rollback().await?;
                    return stored_response(&client, key, hash).await;
                }
                other => other?,
            };
        }
        self.commit_events(tx, &order_id, None, &[event], &[row], trace).await?;
        Ok(accepted)
    }

    /// Appends an `OrderCancellationRequested`; the saga decides what cancelling means now.
    pub async fn request_cancellation(
        &self,
        order_id: &str,
        trace: &TraceParent,
    ) -> Result<OrderAccepted, CommandError> {
        let mut client = self.pool.get().await?;
        let loaded =
            event_store::load(&client, order_id).await?.ok_or_else(|| CommandError::NotFound(order_id.to_string()))?;
        refuse_if_settled(&client, order_id).await?;
        // No authentication yet: the customer is the one asking.
        let event = loaded.order.request_cancellation(&loaded.order.customer_id, now_millis())?;
        let row = OutboxRow::encode(&self.codec, &event, trace.as_str()).await?;
        let tx = client.transaction().await?;
        self.commit_events(tx, order_id, Some(&loaded), &[event], &[row], trace).await?;
        Ok(OrderAccepted {
            order_id: order_id.to_string(),
            status: AcceptedStatus::CancellationRequested,
            version: i64::from(loaded.version) + 1,
        })
    }

    /// Records an operator's action on a parked order; the saga carries it out. Asking again
    /// is harmless: the saga and the participants act on each order's state once.
    pub async fn request_intervention(
        &self,
        order_id: &str,
        requested: OrderInterventionRequested,
        trace: &TraceParent,
    ) -> Result<OrderAccepted, CommandError> {
        let mut client = self.pool.get().await?;
        let loaded =
            event_store::load(&client, order_id).await?.ok_or_else(|| CommandError::NotFound(order_id.to_string()))?;
        let status = outcome_in_read_model(&client, order_id).await?.map(|(status, _)| status);
        if status.as_deref() != Some("REQUIRES_INTERVENTION") {
            let status = status.unwrap_or_else(|| "not in the read model yet".to_string());
            return Err(CommandError::NotParked { order_id: order_id.to_string(), status });
        }
        tracing::info!(order_id, action = %requested.action, operator = %requested.operator, note = %requested.note, "operator intervention");
        let event = loaded.order.request_intervention(requested, now_millis());
        let row = OutboxRow::encode(&self.codec, &event, trace.as_str()).await?;
        let tx = client.transaction().await?;
        self.commit_events(tx, order_id, Some(&loaded), &[event], &[row], trace).await?;
        Ok(OrderAccepted {
            order_id: order_id.to_string(),
            status: loaded.order.status,
            version: i64::from(loaded.version) + 1,
        })
    }

    /// The order as the event store knows it: latest snapshot plus the events after it.
    pub async fn load(&self, order_id: &str) -> Result<Option<Loaded>, CommandError> {
        let client = self.pool.get().await?;
        Ok(event_store::load(&client, order_id).await?)
    }

    /// Appends `events` after `loaded`'s version, snapshots if due, adds the outbox rows, commits.
    async fn commit_events(
        &self,
        tx: Transaction<'_>,
        aggregate_id: &str,
        loaded: Option<&Loaded>,
        events: &[DomainEvent],
        rows: &[OutboxRow],
        trace: &TraceParent,
    ) -> Result<(), CommandError> {
        let expected_version = loaded.map_or(0, |l| l.version);
        let new_version = event_store::append(&tx, aggregate_id, expected_version, events, trace.as_str()).await?;
        if let Some(state) = aggregate::replay(loaded.map(|l| l.order.clone()), events) {
            event_store::snapshot_if_due(&tx, &state, expected_version, new_version, self.snapshot_every).await?;
        }
        outbox::insert(&tx, rows, i64::from(expected_version)).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A cancellation of an order the saga has settled is refused here when the read model
/// already shows the outcome. One that races the outcome is refused by the saga instead
/// (OrderCancellationRejected, shown in the read model): never a request dropped in silence.
async fn refuse_if_settled(client: &tokio_postgres::Client, order_id: &str) -> Result<(), CommandError> {
    let Some((status, reason)) = outcome_in_read_model(client, order_id).await? else { return Ok(()) };
    match (status.as_str(), reason) {
        ("CONFIRMED", _) => Err(CancelRejected::AlreadyConfirmed(order_id.to_string()).into()),
        (_, Some(reason)) => Err(CancelRejected::AlreadyCancelled { order_id: order_id.to_string(), reason }.into()),
        _ => Ok(()),
    }
}

/// The order's status and cancellation reason as the read model shows them (the saga's outcome,
/// which the event store does not hold).
async fn outcome_in_read_model(
    client: &tokio_postgres::Client,
    order_id: &str,
) -> Result<Option<(String, Option<String>)>, tokio_postgres::Error> {
    let row = client
        .query_opt("select status, cancellation_reason from order_view where order_id = $1", &[&order_id])
        .await?;
    Ok(row.map(|row| (row.get(0), row.get(1))))
}

async fn stored_response(
    client: &tokio_postgres::Client,
    key: &str,
    hash: &str,
) -> Result<OrderAccepted, CommandError> {
    let row = client
        .query_one("select response::text, request_hash from order_requests where idempotency_key = $1", &[&key])
        .await?;
    if row.get::<_, Option<&str>>(1).is_some_and(|stored| stored != hash) {
        return Err(CommandError::KeyReused);
    }
    serde_json::from_str(row.get::<_, &str>(0))
        .map_err(|e| CommandError::StoredResponse { key: key.to_string(), detail: e.to_string() })
}

fn read_response(key: &str, response: serde_json::Value) -> Result<OrderAccepted, CommandError> {
    serde_json::from_value(response)
        .map_err(|e| CommandError::StoredResponse { key: key.to_string(), detail: e.to_string() })
}

fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
