//! Waits for the demo's orders to reach terminal states in the read model, then summarises.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Result;
use deadpool_postgres::Pool;

use super::load::PlacedOrder;

#[derive(Clone, Debug)]
pub struct FinalState {
    pub status: String,
    pub reason: Option<String>,
    /// ms from the POST to the terminal state being written in the read model.
    pub latency_ms: i64,
}

pub fn is_terminal(status: &str) -> bool {
    matches!(status, "CONFIRMED" | "CANCELLED" | "REQUIRES_INTERVENTION")
}

/// Polls `order_view` until every order is terminal or `timeout` passes; returns what it saw.
pub async fn wait_for_terminal(
    pool: &Pool,
    orders: &[PlacedOrder],
    timeout: Duration,
    progress: impl Fn(usize, usize),
) -> Result<HashMap<String, FinalState>> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = read_states(pool, orders).await?;
        let terminal = seen.values().filter(|s| is_terminal(&s.status)).count();
        progress(terminal, orders.len());
        if terminal == orders.len() || Instant::now() > deadline {
            return Ok(seen);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The orders' rows in `order_view` as they are now.
pub async fn read_states(pool: &Pool, orders: &[PlacedOrder]) -> Result<HashMap<String, FinalState>> {
    let placed_at: HashMap<&str, i64> = orders.iter().map(|o| (o.order_id.as_str(), o.placed_at_ms)).collect();
    let ids: Vec<String> = orders.iter().map(|o| o.order_id.clone()).collect();
    let client = pool.get().await?;
    let rows = client
        .query(
            "select order_id, status, cancellation_reason, \
             (extract(epoch from updated_at) * 1000)::bigint from order_view where order_id = any($1)",
            &[&ids],
        )
        .await?;
    let mut seen = HashMap::with_capacity(rows.len());
    for row in rows {
        let order_id: String = row.get(0);
        let updated_ms: i64 = row.get(3);
        let latency_ms = updated_ms - placed_at.get(order_id.as_str()).copied().unwrap_or(updated_ms);
        seen.insert(order_id, FinalState { status: row.get(1), reason: row.get(2), latency_ms });
    }
    Ok(seen)
}

pub const NOT_SEEN: &str = "not in the read model";

/// "CONFIRMED", "CANCELLED (<reason>)", another status, or NOT_SEEN.
pub fn label(state: Option<&FinalState>) -> String {
    match state {
        Some(state) if state.status == "CANCELLED" => {
            format!("CANCELLED ({})", state.reason.clone().unwrap_or_else(|| "no reason".into()))
        }
        Some(state) => state.status.clone(),
        None => NOT_SEEN.into(),
    }
}

/// Counts per final status and cancellation reason.
pub fn outcome_counts(states: &HashMap<String, FinalState>, orders: &[PlacedOrder]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for order in orders {
        *counts.entry(label(states.get(&order.order_id))).or_insert(0) += 1;
    }
    counts
}

/// (p50, p95, p99) of the terminal latencies, ms.
pub fn latency_percentiles(states: &HashMap<String, FinalState>) -> Option<(i64, i64, i64)> {
    let mut latencies: Vec<i64> = states.values().filter(|s| is_terminal(&s.status)).map(|s| s.latency_ms).collect();
    if latencies.is_empty() {
        return None;
    }
    latencies.sort_unstable();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    Some((at(0.50), at(0.95), at(0.99)))
}
