//! Rolling aggregation per key into a key–value store.

use std::sync::Arc;

use super::{downcast, AnyRecord, Node, NodeContext};
use crate::error::ProcessError;
use crate::graph::StoreId;
use crate::record::{Data, Record};
use crate::store::StoreSerdes;

/// Folds a value into the current aggregate (`None` when the key has none yet). `count`,
/// `reduce` and `aggregate` are all this.
pub(crate) type AggregateFn<K, V, VA> = Arc<dyn Fn(&K, V, Option<VA>) -> VA + Send + Sync>;

pub(crate) struct AggregateNode<K, V, VA> {
    pub(crate) store: StoreId,
    pub(crate) serdes: StoreSerdes<K, VA>,
    pub(crate) aggregate: AggregateFn<K, V, VA>,
}

impl<K: Data, V: Data, VA: Data> Node for AggregateNode<K, V, VA> {
    fn process(&mut self, ctx: &mut NodeContext<'_>, record: AnyRecord) -> Result<(), ProcessError> {
        let record: Record<K, V> = downcast(ctx, record)?;
        let mut store = ctx.state.key_value_store(self.store, &self.serdes)?;
        let current = store.get(&record.key)?;
        let updated = (self.aggregate)(&record.key, record.value, current);
        store.put(&record.key, &updated)?;
        ctx.forward(Record {
            key: record.key,
            value: Some(updated),
            timestamp_ms: record.timestamp_ms,
            headers: record.headers,
        })
    }
}
