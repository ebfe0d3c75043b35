//! The write side of order_view: a batch of events, one PostgreSQL transaction (mark the event
//! ids as projected, lock each order's row, fold its new events in, write the row back once).
//!
//! The tables are a parameter so that a rebuild (`rebuild/`) folds into tables of its own with
//! the live projector's rules: the same dedup by event id and the same fold ([`OrderView::apply`]).

use std::collections::{HashMap, HashSet};

use deadpool_postgres::{GenericClient, Pool};
use schemas::SagaEvent;

use super::view::{Intervention, OrderStatus, OrderView, StepsSeen};

#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    #[error("no PostgreSQL connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("order_view row of order {order_id} has status {status:?}, which is not an order status")]
    UnknownStatus { order_id: String, status: String },
}

/// The two tables the projector writes: the view, and the event ids already folded into it.
/// They go together: a view is only correct with the dedup table it was built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tables {
    pub view: &'static str,
    pub dedup: &'static str,
}

impl Tables {
    /// What the query API reads and the live projector writes.
    pub const LIVE: Tables = Tables { view: "order_view", dedup: "projected_events" };
}

/// What applying one event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projection {
    /// Folded in: the order's status and view version right after this event.
    Applied { status: OrderStatus, version: i64 },
    /// Its event id was projected before; nothing changed.
    Duplicate,
}

/// Events (with their `order_version`) into the live tables, in one transaction of their own.
pub async fn apply_events(
    pool: &Pool,
    events: &[(&SagaEvent, Option<i64>)],
) -> Result<Vec<Projection>, ReadModelError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let projected = apply_events_in(&tx, Tables::LIVE, events).await?;
    tx.commit().await?;
    Ok(projected)
}

/// Events (with their `order_version`) in the caller's transaction, into `tables`, with the
/// outcome of applying each in turn, in their order: the event ids marked in one statement, then
/// each order's row locked, its new events folded in in their order, and saved once.
///
/// Two writers whose batches share orders can deadlock on the row locks; PostgreSQL then fails
/// one of them (a transient error) and it tries again.
pub async fn apply_events_in(
    tx: &impl GenericClient,
    tables: Tables,
    events: &[(&SagaEvent, Option<i64>)],
) -> Result<Vec<Projection>, ReadModelError> {
    let ids: Vec<&str> = events.iter().map(|(event, _)| event.envelope.event_id.as_str()).collect();
    let orders: Vec<&str> = events.iter().map(|(event, _)| event.envelope.order_id.as_str()).collect();
    // An id twice in the batch conflicts with itself: it is returned once.
    let mark = tx
        .prepare_cached(&format!(
            "insert into {} (event_id, order_id) select * from unnest($1::text[], $2::text[]) on conflict do nothing returning event_id",
            tables.dedup
        ))
        .await?;
    let mut first_seen: HashSet<String> =
        tx.query(&mark, &[&ids, &orders]).await?.iter().map(|row| row.get(0)).collect();
    let mut outcomes = vec![Projection::Duplicate; events.len()];
    // Per order, in order of first appearance: the positions of its new events.
    let mut by_order: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut position: HashMap<&str, usize> = HashMap::new();
    for (at, (event, _)) in events.iter().enumerate() {
        if !first_seen.remove(&event.envelope.event_id) {
            continue;
        }
        let order_id = event.envelope.order_id.as_str();
        let index = *position.entry(order_id).or_insert_with(|| {
            by_order.push((order_id, Vec::new()));
            by_order.len() - 1
        });
        by_order[index].1.push(at);
    }
    for (order_id, new_events) in by_order {
        let mut view = load_for_update(tx, tables, order_id).await?;
        for at in new_events {
            let (event, order_version) = events[at];
            view.apply(event, order_version);
            // The next event must see what loading the saved row would.
            view.intervention = stored_intervention(&view).cloned();
            outcomes[at] = Projection::Applied { status: view.status, version: view.version };
        }
        save(tx, tables, &view).await?;
    }
    Ok(outcomes)
}

/// Whether `group` has already dead-lettered the record at `topic`/`partition`/`offset`; notes
/// the record first, so that [`dead_letter_sent`] can mark it.
pub async fn dead_letter_already_sent(
    pool: &Pool,
    group: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<bool, ReadModelError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "insert into projector_dead_letters (consumer_group, topic, \"partition\", \"offset\") values ($1, $2, $3, $4) \
             on conflict (consumer_group, topic, \"partition\", \"offset\") do update set topic = excluded.topic \
             returning sent_at is not null",
            &[&group, &topic, &partition, &offset],
        )
        .await?;
    Ok(row.get(0))
}

/// Marks the dead letter of the record at `topic`/`partition`/`offset` as acknowledged.
pub async fn dead_letter_sent(
    pool: &Pool,
    group: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(), ReadModelError> {
    let client = pool.get().await?;
    client
        .execute(
            "update projector_dead_letters set sent_at = now() \
             where consumer_group = $1 and topic = $2 and \"partition\" = $3 and \"offset\" = $4",
            &[&group, &topic, &partition, &offset],
        )
        .await?;
    Ok(())
}

/// Marks the order of a record the projector could never read, so the read model says so.
pub async fn flag_projection_problem(pool: &Pool, order_id: &str, reason: &str) -> Result<(), ReadModelError> {
    let client = pool.get().await?;
    flag_projection_problem_in(&client, Tables::LIVE, order_id, reason).await
}

/// [`flag_projection_problem`] through the caller's client or transaction, into `tables`.
pub async fn flag_projection_problem_in(
    client: &impl GenericClient,
    tables: Tables,
    order_id: &str,
    reason: &str,
) -> Result<(), ReadModelError> {
    client
        .execute(
            &format!(
                "insert into {} (order_id, status, version, updated_at, projection_problem) values ($1, $2, 0, now(), $3) \
                 on conflict (order_id) do update set projection_problem = excluded.projection_problem, updated_at = now()",
                tables.view
            ),
            &[&order_id, &OrderStatus::Placed.as_str(), &reason],
        )
        .await?;
    Ok(())
}

/// The order's row, locked; created first if none of its events was applied yet (any of an
/// order's events may come first, the row exists from then on).
async fn load_for_update(
    client: &impl GenericClient,
    tables: Tables,
    order_id: &str,
) -> Result<OrderView, ReadModelError> {
    let create = client
        .prepare_cached(&format!(
            "insert into {} (order_id, status, version, updated_at) values ($1, $2, 0, now()) on conflict do nothing",
            tables.view
        ))
        .await?;
    client.execute(&create, &[&order_id, &OrderStatus::Placed.as_str()]).await?;
    let select = client
        .prepare_cached(&format!(
            "select customer_id, status, total_amount, item_count, tracking_number, cancellation_reason, \
                    charged, refunded, reserved, released, shipped, shipment_cancelled, \
                    cancellation_rejected, intervention_reason, outstanding_compensations, resolution, version, order_version, \
                    (extract(epoch from placed_at) * 1000)::bigint as placed_at_ms \
             from {} where order_id = $1 for update",
            tables.view
        ))
        .await?;
    let row = client.query_one(&select, &[&order_id]).await?;
    let status: String = row.get("status");
    Ok(OrderView {
        order_id: order_id.to_string(),
        customer_id: row.get("customer_id"),
        status: OrderStatus::parse(&status)
            .ok_or_else(|| ReadModelError::UnknownStatus { order_id: order_id.to_string(), status })?,
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
        progress: StepsSeen {
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

/// The intervention a row keeps: only while the order is parked.
fn stored_intervention(view: &OrderView) -> Option<&Intervention> {
    view.intervention.as_ref().filter(|_| view.status == OrderStatus::RequiresIntervention)
}

async fn save(client: &impl GenericClient, tables: Tables, view: &OrderView) -> Result<(), ReadModelError> {
    let placed_at_seconds = view.placed_at_ms.map(|ms| ms as f64 / 1000.0);
    let parked = stored_intervention(view);
    let intervention_reason = parked.map(|parked| parked.reason.clone());
    let outstanding = parked.map(|parked| parked.outstanding.clone());
    let update = client
        .prepare_cached(&format!(
            "update {} set customer_id = $2, status = $3, total_amount = $4, item_count = $5, \
                    tracking_number = $6, cancellation_reason = $7, charged = $8, refunded = $9, \
                    reserved = $10, released = $11, version = $12, placed_at = to_timestamp($13), \
                    shipped = $14, shipment_cancelled = $15, cancellation_rejected = $16, \
                    intervention_reason = $17, outstanding_compensations = $18, order_version = $19, resolution = $20, updated_at = now() \
             where order_id = $1",
            tables.view
        ))
        .await?;
    client
        .execute(
            &update,
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
