//! The write side of order_view: a batch of events, one PostgreSQL transaction (mark the event
//! ids as projected, lock the orders' rows, fold each order's new events in, write the rows back),
//! in four statements whatever the batch holds.
//!
//! The tables are a parameter so that a rebuild (`rebuild/`) folds into tables of its own with
//! the live projector's rules: the same dedup by event id and the same fold ([`OrderView::apply`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use deadpool_postgres::{GenericClient, Pool};
use schemas::SagaEvent;
use tokio_postgres::Row;

use super::view::{Intervention, OrderStatus, OrderView, StepsSeen};

#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    #[error("no PostgreSQL connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("order_view row of order {order_id} has status {status:?}, which is not an order status")]
    UnknownStatus { order_id: String, status: String },
    #[error("the order_view row of order {0} was not there to lock (deleted meanwhile?)")]
    RowMissing(String),
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
/// outcome of applying each in turn, in their order: the event ids marked, the rows of their
/// orders created where missing and locked, each order's new events folded in in their order,
/// and the rows saved; four statements whatever the batch holds.
///
/// Rows are created and locked in order-id order, so two writers whose batches share orders wait
/// for each other instead of deadlocking; were they to deadlock anyway, PostgreSQL fails one of
/// them (a transient error) and it tries again.
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
    // Per order: the positions of its new events, in their order.
    let mut by_order: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (at, (event, _)) in events.iter().enumerate() {
        if first_seen.remove(&event.envelope.event_id) {
            by_order.entry(event.envelope.order_id.as_str()).or_default().push(at);
        }
    }
    if by_order.is_empty() {
        return Ok(outcomes);
    }
    let order_ids: Vec<&str> = by_order.keys().copied().collect();
    // Matched by id: the database sorts by its collation, which need not be Rust's byte order.
    let mut views: HashMap<String, OrderView> =
        load_for_update(tx, tables, &order_ids).await?.into_iter().map(|view| (view.order_id.clone(), view)).collect();
    for (order_id, new_events) in by_order {
        // Only a row deleted between the two statements is missing; the retry creates it again.
        let view = views.get_mut(order_id).ok_or_else(|| ReadModelError::RowMissing(order_id.to_string()))?;
        for at in new_events {
            let (event, order_version) = events[at];
            view.apply(event, order_version);
            // The next event must see what loading the saved row would.
            view.intervention = stored_intervention(view).cloned();
            outcomes[at] = Projection::Applied { status: view.status, version: view.version };
        }
    }
    let views: Vec<OrderView> = views.into_values().collect();
    save(tx, tables, &views).await?;
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

/// The rows of `order_ids`, locked in the database's order of ids, so that every writer takes
/// them in the same order; created first where none of an order's events was applied yet (any
/// of an order's events may come first, the row exists from then on).
async fn load_for_update(
    client: &impl GenericClient,
    tables: Tables,
    order_ids: &[&str],
) -> Result<Vec<OrderView>, ReadModelError> {
    let create = client
        .prepare_cached(&format!(
            "insert into {} (order_id, status, version, updated_at) \
             select order_id, $2, 0, now() from unnest($1::text[]) as order_id order by order_id \
             on conflict do nothing",
            tables.view
        ))
        .await?;
    client.execute(&create, &[&order_ids, &OrderStatus::Placed.as_str()]).await?;
    let select = client
        .prepare_cached(&format!(
            "select order_id, customer_id, status, total_amount, item_count, tracking_number, cancellation_reason, \
                    charged, refunded, reserved, released, shipped, shipment_cancelled, \
                    cancellation_rejected, intervention_reason, outstanding_compensations, resolution, version, order_version, \
                    (extract(epoch from placed_at) * 1000)::bigint as placed_at_ms \
             from {} where order_id = any($1) order by order_id for update",
            tables.view
        ))
        .await?;
    let rows = client.query(&select, &[&order_ids]).await?;
    rows.iter().map(order_view).collect()
}

fn order_view(row: &Row) -> Result<OrderView, ReadModelError> {
    let order_id: String = row.get("order_id");
    let status: String = row.get("status");
    Ok(OrderView {
        status: OrderStatus::parse(&status)
            .ok_or_else(|| ReadModelError::UnknownStatus { order_id: order_id.clone(), status })?,
        order_id,
        customer_id: row.get("customer_id"),
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

/// Writes `views` back in one statement: a column each as an array, joined on the order id.
/// An array column cannot go through `unnest` (it would flatten), so the outstanding
/// compensations travel as a JSON array each.
async fn save(client: &impl GenericClient, tables: Tables, views: &[OrderView]) -> Result<(), ReadModelError> {
    let column = |value: fn(&OrderView) -> Option<String>| views.iter().map(value).collect::<Vec<_>>();
    let order_ids: Vec<&str> = views.iter().map(|view| view.order_id.as_str()).collect();
    let customer_ids = column(|view| view.customer_id.clone());
    let statuses: Vec<&str> = views.iter().map(|view| view.status.as_str()).collect();
    let total_amounts: Vec<Option<i64>> = views.iter().map(|view| view.total_amount).collect();
    let item_counts: Vec<Option<i64>> = views.iter().map(|view| view.item_count).collect();
    let tracking_numbers = column(|view| view.tracking_number.clone());
    let cancellation_reasons = column(|view| view.cancellation_reason.clone());
    let steps = |step: fn(&StepsSeen) -> bool| views.iter().map(|view| step(&view.progress)).collect::<Vec<_>>();
    let versions: Vec<i64> = views.iter().map(|view| view.version).collect();
    let placed_at_seconds: Vec<Option<f64>> =
        views.iter().map(|view| view.placed_at_ms.map(|ms| ms as f64 / 1000.0)).collect();
    let cancellations_rejected = column(|view| view.cancellation_rejected.clone());
    let intervention_reasons = column(|view| stored_intervention(view).map(|parked| parked.reason.clone()));
    let outstanding = column(|view| {
        stored_intervention(view).map(|parked| serde_json::Value::from(parked.outstanding.clone()).to_string())
    });
    let order_versions: Vec<i64> = views.iter().map(|view| view.order_version).collect();
    let resolutions = column(|view| view.resolution.clone());
    let update = client
        .prepare_cached(&format!(
            "update {} as v set customer_id = n.customer_id, status = n.status, total_amount = n.total_amount, \
                    item_count = n.item_count, tracking_number = n.tracking_number, \
                    cancellation_reason = n.cancellation_reason, charged = n.charged, refunded = n.refunded, \
                    reserved = n.reserved, released = n.released, version = n.version, \
                    placed_at = to_timestamp(n.placed_at), shipped = n.shipped, \
                    shipment_cancelled = n.shipment_cancelled, cancellation_rejected = n.cancellation_rejected, \
                    intervention_reason = n.intervention_reason, \
                    outstanding_compensations = case when n.outstanding is null then null \
                        else array(select name from jsonb_array_elements_text(n.outstanding::jsonb) \
                                   with ordinality as listed(name, at) order by at) end, \
                    order_version = n.order_version, resolution = n.resolution, updated_at = now() \
             from unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::text[], \
                         $8::bool[], $9::bool[], $10::bool[], $11::bool[], $12::bigint[], $13::float8[], \
                         $14::bool[], $15::bool[], $16::text[], $17::text[], $18::text[], $19::bigint[], $20::text[]) \
                  as n(order_id, customer_id, status, total_amount, item_count, tracking_number, \
                       cancellation_reason, charged, refunded, reserved, released, version, placed_at, \
                       shipped, shipment_cancelled, cancellation_rejected, intervention_reason, outstanding, \
                       order_version, resolution) \
             where v.order_id = n.order_id",
            tables.view
        ))
        .await?;
    client
        .execute(
            &update,
            &[
                &order_ids,
                &customer_ids,
                &statuses,
                &total_amounts,
                &item_counts,
                &tracking_numbers,
                &cancellation_reasons,
                &steps(|seen| seen.charged),
                &steps(|seen| seen.refunded),
                &steps(|seen| seen.reserved),
                &steps(|seen| seen.released),
                &versions,
                &placed_at_seconds,
                &steps(|seen| seen.shipped),
                &steps(|seen| seen.shipment_cancelled),
                &cancellations_rejected,
                &intervention_reasons,
                &outstanding,
                &order_versions,
                &resolutions,
            ],
        )
        .await?;
    Ok(())
}
