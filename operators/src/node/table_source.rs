//! Reads a topic as a table: each record upserts its key in a store, a null value deletes it.

use std::sync::Arc;

use super::source::deserialize_part;
use super::{downcast, AnyRecord, Node, NodeContext};
use crate::error::ProcessError;
use crate::graph::StoreId;
use crate::record::{Data, RawRecord, Record};
use crate::serdes::Serde;
use crate::store::StoreSerdes;

pub(crate) struct TableSourceNode<K, V> {
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
    pub(crate) store: StoreId,
    pub(crate) store_serdes: StoreSerdes<K, V>,
}

impl<K: Data, V: Data> Node for TableSourceNode<K, V> {
    fn process(&mut self, ctx: &mut NodeContext<'_>, record: AnyRecord) -> Result<(), ProcessError> {
        let raw: RawRecord = downcast(ctx, record)?;
        let key = deserialize_part(self.key_serde.as_ref(), &raw, "key", raw.key.as_deref())?;
        let value = match raw.value.as_deref() {
            Some(bytes) => Some(deserialize_part(self.value_serde.as_ref(), &raw, "value", Some(bytes))?),
            None => None,
        };
        let mut store = ctx.state.key_value_store(self.store, &self.store_serdes)?;
        match &value {
            Some(value) => store.put(&key, value)?,
            None => {
                store.delete(&key)?;
            }
        }
        ctx.forward(Record { key, value, timestamp_ms: raw.timestamp_ms, headers: raw.headers })
    }
}
