//! The write side of order_view: one event, one PostgreSQL transaction (mark the event id as
//! projected, lock the order's row, fold the event in, write the row back).

use deadpool_postgres::{GenericClient, Pool};
use schemas::SagaEvent;

use super::view::{Intervention, OrderStatus, OrderView, Progress};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no PostgreSQL connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("order_view row of order {order_id} has status {status:?}, which is not an order status")]
    UnknownStatus { order_id: String, status: String },
}

/// What applying one event did.
#[derive(Debug)]
pub enum Projection {
    Applied(OrderView),
    /// Its event id was projected before; nothing changed.
    Duplicate,
}

/// `order_version`: the order's event-store version the event was written at, when known.
pub async fn apply_event(pool: &Pool, event: &SagaEvent, order_version: Option<i64>) -> Result<Projection, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let envelope = &event.envelope;
    let first_time = tx
        .execute(
            "insert into projected_events (event_id, order_id) values ($1, $2) on conflict do nothing",
            &[&envelope.event_id, &envelope.order_id],
        )
        .await?
        == 1;
    if !first_time {
        return Ok(Projection::Duplicate);
    }
    // Any of an order's events may come first; the row exists from then on.
    tx.execute(
        "insert into order_view (order_id, status, version, updated_at) values ($1, $2, 0, now()) \
         on conflict do nothing",
        &[&envelope.order_id, &OrderStatus::Placed.as_str()],
    )
    .await?;
    let mut view = load_for_update(&tx, &envelope.order_id).await?;
    view.apply(event, order_version);
    save(&tx, &view).await?;
    tx.commit().await?;
    Ok(Projection::Applied(view))
}

/// Marks the order of a record the projector could never read, so the read model says so.
pub async fn flag_projection_problem(pool: &Pool, order_id: &str, reason: &str) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute(
            "insert into order_view (order_id, status, version, updated_at, projection_problem) values ($1, $2, 0, now(), $3) \
             on conflict (order_id) do update set projection_problem = excluded.projection_problem, updated_at = now()",
            &[&order_id, &OrderStatus::Placed.as_str(), &reason],
        )
        .await?;
    Ok(())
}

async fn load_for_update(client: &impl GenericClient, order_id: &str) -> Result<OrderView, StoreError> {
    let row = client
        .query_one(
            "select customer_id, status, total_amount, item_count, tracking_number, cancellation_reason, \
                    charged, refunded, reserved, released, shipped, shipment_cancelled, \
                    cancellation_rejected, intervention_reason, outstanding_compensations, resolution, version, order_version, \
                    (extract(epoch from placed_at) * 1000)::bigint as placed_at_ms \
             from order_view where order_id = $1 for update",
            &[&order_id],
        )
        .await?;
    let status: String = row.get("status");
    Ok(OrderView {
        order_id: order_id.to_string(),
        customer_id: row.get("customer_id"),
        status: OrderStatus::parse(&status)
            .ok_or_else(|| StoreError::UnknownStatus { order_id: order_id.to_string(), status })?,
        total_amount: row.get("total_amount"),
        item_count: row.get("item_count"),
        tracking_number: row.get("tracking_number"),
        cancellation_reason: row.get("cancellation_reason"),
        cancellation_rejected: row.get("cancellation_rejected"),
        intervention: row.get::<_, Option<String>>("intervention_reason").map(|reason| Intervention {
            reason,
            outstanding: row.get::<_, Option<Vec<String>>>("outstanding_compensations").unwrap_or_default(),
        }),
        resolution: row.get("resolution"),
        progress: Progress {
            charged: row.get("charged"),
            refunded: row.get("refunded"),
            reserved: row.get("reserved"),
            released: row.get("released"),
            shipped: row.get("shipped"),
            shipment_cancelled: row.get("shipment_cancelled"),
        },
        version: row.get("version"),
        order_version: row.get("order_version"),
        placed_at_ms: row.get("placed_at_ms"),
    })
}

async fn save(client: &impl GenericClient, view: &OrderView) -> Result<(), StoreError> {
    let placed_at_seconds = view.placed_at_ms.map(|ms| ms as f64 / 1000.0);
    // Shown only while the order is parked.
    let parked = view.intervention.as_ref().filter(|_| view.status == OrderStatus::RequiresIntervention);
    let intervention_reason = parked.map(|parked| parked.reason.clone());
    let outstanding = parked.map(|parked| parked.outstanding.clone());
    client
        .execute(
            "update order_view set customer_id = $2, status = $3, total_amount = $4, item_count = $5, \
                    tracking_number = $6, cancellation_reason = $7, charged = $8, refunded = $9, \
                    reserved = $10, released = $11, version = $12, placed_at = to_timestamp($13), \
                    shipped = $14, shipment_cancelled = $15, cancellation_rejected = $16, \
                    intervention_reason = $17, outstanding_compensations = $18, order_version = $19, resolution = $20, updated_at = now() \
             where order_id = $1",
            &[
                &view.order_id,
                &view.customer_id,
                &view.status.as_str(),
                &view.total_amount,
                &view.item_count,
                &view.tracking_number,
                &view.cancellation_reason,
                &view.progress.charged,
                &view.progress.refunded,
                &view.progress.reserved,
                &view.progress.released,
                &view.version,
                &placed_at_seconds,
                &view.progress.shipped,
                &view.progress.shipment_cancelled,
                &view.cancellation_rejected,
                &intervention_reason,
                &outstanding,
                &view.order_version,
                &view.resolution,
            ],
        )
        .await?;
    Ok(())
}
