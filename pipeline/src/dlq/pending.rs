//! `dlq_pending{topic}`: refreshed from the table, which is the truth (several admin instances
//! may act on the same entries).

use std::time::Duration;

use deadpool_postgres::Pool;

use super::internal_events::{PendingCountFailed, PendingCounted};
use super::store;

/// Counts once; a failure keeps the last values and is logged.
pub async fn refresh_pending(pool: &Pool) {
    match store::pending_per_topic(pool).await {
        Ok(counts) => PendingCounted { counts: &counts }.emit(),
        Err(error) => PendingCountFailed { error: &error }.emit(),
    }
}

/// Refreshes every `interval`, for as long as the admin component runs.
pub async fn run_pending_gauge(pool: Pool, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        refresh_pending(&pool).await;
    }
}
