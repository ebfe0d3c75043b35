//! The functions behind `count`, `reduce` and `aggregate`, written once for every grouping (by key,
//! by time window, by session), as Kafka Streams keeps them beside `GroupedStreamAggregateBuilder`.

use std::sync::Arc;

use crate::node::aggregate::AggregateFn;
use crate::record::Data;

/// The prefix of the node and store names of `count` and `aggregate`, as Kafka Streams names them.
pub(crate) const AGGREGATE: &str = "KSTREAM-AGGREGATE";
/// The prefix of the node and store names of `reduce`.
pub(crate) const REDUCE: &str = "KSTREAM-REDUCE";

/// Adds one per record.
pub(crate) fn counter<K: Data, V: Data>() -> AggregateFn<K, V, i64> {
    Arc::new(|_, _, count| count.unwrap_or(0).saturating_add(1))
}

/// Adds a session's count to the merged one.
pub(crate) fn count_merger<K: Data>() -> AggregateFn<K, i64, i64> {
    Arc::new(|_, session, count| count.unwrap_or(0).saturating_add(session))
}

/// `reduce(aggregate, value)`; the first value is the aggregate. Also merges two sessions.
pub(crate) fn reducer<K: Data, V: Data>(reduce: Arc<dyn Fn(V, V) -> V + Send + Sync>) -> AggregateFn<K, V, V> {
    Arc::new(move |_, value, aggregate| match aggregate {
        Some(aggregate) => reduce(aggregate, value),
        None => value,
    })
}

/// `aggregate(key, value, aggregate)`, starting from `initializer()`.
pub(crate) fn aggregator<K: Data, V: Data, VA: Data>(
    initializer: Arc<dyn Fn() -> VA + Send + Sync>,
    aggregate: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
) -> AggregateFn<K, V, VA> {
    Arc::new(move |key, value, aggregated| aggregate(key, value, aggregated.unwrap_or_else(|| initializer())))
}
