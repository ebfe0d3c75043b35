//! Stream–table joins, and the value getters through which a join reads a table, as in Kafka
//! Streams: a table derived by `filter` or `map_values` is read through its source store with the
//! derivation applied on the fly, so it needs no store of its own.

use std::sync::Arc;

use super::{downcast, AnyRecord, Node, NodeContext, Predicate};
use crate::error::ProcessError;
use crate::graph::StoreId;
use crate::record::{Data, Record};
use crate::store::StoreSerdes;
use crate::task_state::TaskState;

pub(crate) trait TableValueGetter<K, V>: Send + Sync {
    /// The store the table's values ultimately come from.
    fn store(&self) -> StoreId;

    fn get(&self, state: &mut TaskState, key: &K) -> Result<Option<V>, ProcessError>;
}

pub(crate) struct StoreValueGetter<K, V> {
    pub(crate) store: StoreId,
    pub(crate) serdes: StoreSerdes<K, V>,
}

impl<K: 'static, V: 'static> TableValueGetter<K, V> for StoreValueGetter<K, V> {
    fn store(&self) -> StoreId {
        self.store
    }

    fn get(&self, state: &mut TaskState, key: &K) -> Result<Option<V>, ProcessError> {
        state.key_value_store(self.store, &self.serdes)?.get(key)
    }
}

pub(crate) struct FilteredValueGetter<K, V> {
    pub(crate) parent: Arc<dyn TableValueGetter<K, V>>,
    pub(crate) keep: Predicate<K, V>,
}

impl<K, V> TableValueGetter<K, V> for FilteredValueGetter<K, V> {
    fn store(&self) -> StoreId {
        self.parent.store()
    }

    fn get(&self, state: &mut TaskState, key: &K) -> Result<Option<V>, ProcessError> {
        Ok(self.parent.get(state, key)?.filter(|value| (self.keep)(key, value)))
    }
}

/// A user mapping of a value, given its key.
pub(crate) type ValueMapper<K, V, V2> = Arc<dyn Fn(&K, V) -> V2 + Send + Sync>;

pub(crate) struct MappedValueGetter<K, V, V2> {
    pub(crate) parent: Arc<dyn TableValueGetter<K, V>>,
    pub(crate) mapper: ValueMapper<K, V, V2>,
}

impl<K, V, V2> TableValueGetter<K, V2> for MappedValueGetter<K, V, V2> {
    fn store(&self) -> StoreId {
        self.parent.store()
    }

    fn get(&self, state: &mut TaskState, key: &K) -> Result<Option<V2>, ProcessError> {
        Ok(self.parent.get(state, key)?.map(|value| (self.mapper)(key, value)))
    }
}

/// Joins each stream record with the table's current value for its key; the joiner decides what
/// a missing table value means (inner join: drop, left join: join with `None`).
pub(crate) type JoinFn<V, VT, VR> = Arc<dyn Fn(V, Option<VT>) -> Option<VR> + Send + Sync>;

pub(crate) struct StreamTableJoinNode<K, V, VT, VR> {
    pub(crate) table: Arc<dyn TableValueGetter<K, VT>>,
    pub(crate) joiner: JoinFn<V, VT, VR>,
}

impl<K: Data, V: Data, VT: Data, VR: Data> Node for StreamTableJoinNode<K, V, VT, VR> {
    fn process(&mut self, ctx: &mut NodeContext<'_>, record: AnyRecord) -> Result<(), ProcessError> {
        let record: Record<K, V> = downcast(ctx, record)?;
        let table_value = self.table.get(ctx.state, &record.key)?;
        let Record { key, value, timestamp_ms, headers } = record;
        match (self.joiner)(value, table_value) {
            Some(joined) => ctx.forward(Record { key, value: joined, timestamp_ms, headers }),
            None => Ok(()),
        }
    }
}
