//! The read side of order_view: what GET /orders returns.

use deadpool_postgres::Pool;
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::store::ReadModelError;
use super::view::OrderStatus;

/// An order as the query API shows it. Amounts in cents, times in RFC 3339 (UTC).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OrderRecord {
    pub order_id: String,
    pub customer_id: Option<String>,
    #[schema(value_type = OrderStatus)]
    pub status: String,
    pub total_amount: Option<i64>,
    pub item_count: Option<i64>,
    pub tracking_number: Option<String>,
    pub cancellation_reason: Option<String>,
    /// Why a cancellation the customer asked for was refused.
    pub cancellation_rejected: Option<String>,
    /// While REQUIRES_INTERVENTION: why, and the compensations still missing.
    pub intervention_reason: Option<String>,
    pub outstanding_compensations: Option<Vec<String>>,
    /// An operator's note settling a parked order.
    pub resolution: Option<String>,
    /// Set when one of the order's events could not be read (it is in `<topic>.dlq`).
    pub projection_problem: Option<String>,
    /// Distinct events projected.
    pub version: i64,
    /// The order's event-store version reflected (what `?min_version=` waits for).
    pub order_version: i64,
    pub placed_at: Option<String>,
    pub updated_at: String,
}

/// Which orders to list, already validated.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderFilter {
    pub customer_id: Option<String>,
    pub status: Option<OrderStatus>,
    /// 1-based.
    pub page: i64,
    pub limit: i64,
}

const COLUMNS: &str = "order_id, customer_id, status, total_amount, item_count, tracking_number, \
    cancellation_reason, cancellation_rejected, intervention_reason, outstanding_compensations, resolution, projection_problem, version, order_version, \
    to_char(placed_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') as placed_at, \
    to_char(updated_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') as updated_at";

/// Newest first; the order id makes the order total, so pages never overlap.
const LISTING_ORDER: &str = "placed_at desc nulls last, order_id";

pub async fn find_order(pool: &Pool, order_id: &str) -> Result<Option<OrderRecord>, ReadModelError> {
    let client = pool.get().await?;
    let row = client.query_opt(&format!("select {COLUMNS} from order_view where order_id = $1"), &[&order_id]).await?;
    Ok(row.as_ref().map(to_record))
}

/// One page of orders, plus whether another page follows.
pub async fn list_orders(pool: &Pool, filter: &OrderFilter) -> Result<(Vec<OrderRecord>, bool), ReadModelError> {
    let status = filter.status.map(OrderStatus::as_str);
    // Only the filters given make it into the SQL, so each shape can use its index.
    let mut conditions = Vec::new();
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    if let Some(customer_id) = &filter.customer_id {
        params.push(customer_id);
        conditions.push(format!("customer_id = ${}", params.len()));
    }
    if let Some(status) = &status {
        params.push(status);
        conditions.push(format!("status = ${}", params.len()));
    }
    let filter_sql = if conditions.is_empty() { String::new() } else { format!("where {}", conditions.join(" and ")) };
    // One row past the page says whether there is a next one.
    let fetch = filter.limit + 1;
    let offset = (filter.page - 1) * filter.limit;
    params.push(&fetch);
    params.push(&offset);
    let sql = format!(
        "select {COLUMNS} from order_view {filter_sql} order by {LISTING_ORDER} limit ${} offset ${}",
        params.len() - 1,
        params.len()
    );
    let client = pool.get().await?;
    let rows = client.query(&sql, &params).await?;
    let mut orders: Vec<OrderRecord> = rows.iter().map(to_record).collect();
    let has_more = orders.len() as i64 > filter.limit;
    orders.truncate(filter.limit as usize);
    Ok((orders, has_more))
}

fn to_record(row: &Row) -> OrderRecord {
    OrderRecord {
        order_id: row.get("order_id"),
        customer_id: row.get("customer_id"),
        status: row.get("status"),
        total_amount: row.get("total_amount"),
        item_count: row.get("item_count"),
        tracking_number: row.get("tracking_number"),
        cancellation_reason: row.get("cancellation_reason"),
        cancellation_rejected: row.get("cancellation_rejected"),
        intervention_reason: row.get("intervention_reason"),
        outstanding_compensations: row.get("outstanding_compensations"),
        resolution: row.get("resolution"),
        projection_problem: row.get("projection_problem"),
        version: row.get("version"),
        order_version: row.get("order_version"),
        placed_at: row.get("placed_at"),
        updated_at: row.get("updated_at"),
    }
}
