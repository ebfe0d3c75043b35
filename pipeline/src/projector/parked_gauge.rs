//! `saga_orders_requiring_intervention`: how many orders the read model shows parked, counted
//! from `order_view` itself (the view operators act on), for the alert and the dashboard.

use std::time::Duration;

use deadpool_postgres::Pool;

use super::internal_events::{ParkedOrdersCountFailed, ParkedOrdersCounted};
use super::view::OrderStatus;

/// Counts every `interval`, for as long as the admin component runs; a failure keeps the last
/// value and is logged.
pub async fn run_parked_gauge(pool: Pool, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match count_parked(&pool).await {
            Ok(count) => ParkedOrdersCounted { count }.emit(),
            Err(error) => ParkedOrdersCountFailed { error: error.as_ref() }.emit(),
        }
    }
}

async fn count_parked(pool: &Pool) -> Result<i64, Box<dyn std::error::Error + Send + Sync>> {
    let client = pool.get().await?;
    let row = client
        .query_one("select count(*) from order_view where status = $1", &[&OrderStatus::RequiresIntervention.as_str()])
        .await?;
    Ok(row.get(0))
}
