//! `KTable`: the latest value per key, as a changelog stream.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::{stateless, stateless_factory, KStream};
use crate::graph::{GraphBuilder, NodeDef, NodeId, NodeRole};
use crate::node::join::{FilteredValueGetter, MappedValueGetter, TableValueGetter, ValueMapper};
use crate::node::stateless::StatelessFn;
use crate::node::Predicate;
use crate::record::{Data, Record};
use crate::serdes::{NullableSerde, Serde};

/// A table, like Kafka Streams' `KTable`. Its updates flow downstream as records whose value is
/// `Some(new value)`, or `None` when the key was deleted.
pub struct KTable<K, V> {
    pub(crate) graph: Rc<RefCell<GraphBuilder>>,
    pub(crate) node: NodeId,
    /// How joins read the table; `None` for windowed tables.
    pub(crate) getter: Option<Arc<dyn TableValueGetter<K, V>>>,
    pub(crate) store_name: Option<String>,
    pub(crate) key_serde: Option<Arc<dyn Serde<K>>>,
    pub(crate) value_serde: Option<Arc<dyn Serde<V>>>,
}

impl<K, V> Clone for KTable<K, V> {
    fn clone(&self) -> Self {
        KTable {
            graph: Rc::clone(&self.graph),
            node: self.node,
            getter: self.getter.clone(),
            store_name: self.store_name.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
        }
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    /// Stands in for a table whose definition failed; the build reports why.
    pub(crate) fn unusable<K0, V0>(stream: &KStream<K0, V0>) -> Self {
        KTable {
            graph: Rc::clone(&stream.graph),
            node: stream.node,
            getter: None,
            store_name: None,
            key_serde: None,
            value_serde: None,
        }
    }

    fn add_stateless(&self, prefix: &str, op: StatelessFn<K, Option<V>>) -> NodeId {
        let mut graph = self.graph.borrow_mut();
        let name = graph.next_name(prefix);
        graph.add_node(NodeDef::new(name, NodeRole::Processor, vec![self.node], stateless_factory(op)))
    }

    fn stream_of<V2>(&self, node: NodeId, value_serde: Option<Arc<dyn Serde<V2>>>) -> KStream<K, V2> {
        KStream {
            graph: Rc::clone(&self.graph),
            node,
            key_changed: false,
            key_serde: self.key_serde.clone(),
            value_serde,
        }
    }

    /// The name of the store holding this table, if it has one (source and aggregation tables).
    pub fn queryable_store_name(&self) -> Option<&str> {
        self.store_name.as_deref()
    }

    /// The table's updates as a stream; deletions are left out.
    pub fn to_stream(&self) -> KStream<K, V> {
        let node = self.add_stateless(
            "KTABLE-TOSTREAM",
            stateless(|record: Record<K, Option<V>>, ctx| match record.value {
                Some(value) => ctx.forward(Record {
                    key: record.key,
                    value,
                    timestamp_ms: record.timestamp_ms,
                    headers: record.headers,
                }),
                None => Ok(()),
            }),
        );
        self.stream_of(node, self.value_serde.clone())
    }

    /// The table's updates as a stream, with deletions as `None` (tombstones when written with
    /// a [`NullableSerde`]).
    pub fn to_stream_with_tombstones(&self) -> KStream<K, Option<V>> {
        let node =
            self.add_stateless("KTABLE-TOSTREAM", stateless(|record: Record<K, Option<V>>, ctx| ctx.forward(record)));
        let value_serde =
            self.value_serde.clone().map(|serde| Arc::new(NullableSerde(serde)) as Arc<dyn Serde<Option<V>>>);
        self.stream_of(node, value_serde)
    }

    /// The rows for which `predicate` holds; a row that stops matching is deleted downstream.
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KTable<K, V> {
        let keep: Predicate<K, V> = Arc::new(predicate);
        let node_keep = Arc::clone(&keep);
        let node = self.add_stateless(
            "KTABLE-FILTER",
            stateless(move |record: Record<K, Option<V>>, ctx| {
                let Record { key, value, timestamp_ms, headers } = record;
                let value = value.filter(|value| node_keep(&key, value));
                ctx.forward(Record { key, value, timestamp_ms, headers })
            }),
        );
        let getter = self
            .getter
            .clone()
            .map(|parent| Arc::new(FilteredValueGetter { parent, keep }) as Arc<dyn TableValueGetter<K, V>>);
        KTable { node, getter, store_name: None, ..self.clone() }
    }

    /// The rows for which `predicate` does not hold.
    pub fn filter_not(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KTable<K, V> {
        self.filter(move |key, value| !predicate(key, value))
    }

    /// Each row with a new value.
    pub fn map_values<V2: Data>(&self, mapper: impl Fn(V) -> V2 + Send + Sync + 'static) -> KTable<K, V2> {
        let mapper: ValueMapper<K, V, V2> = Arc::new(move |_, value| mapper(value));
        let node_mapper = Arc::clone(&mapper);
        let node = self.add_stateless(
            "KTABLE-MAPVALUES",
            stateless(move |record: Record<K, Option<V>>, ctx| {
                let Record { key, value, timestamp_ms, headers } = record;
                let value = value.map(|value| node_mapper(&key, value));
                ctx.forward(Record { key, value, timestamp_ms, headers })
            }),
        );
        let getter = self
            .getter
            .clone()
            .map(|parent| Arc::new(MappedValueGetter { parent, mapper }) as Arc<dyn TableValueGetter<K, V2>>);
        KTable {
            graph: Rc::clone(&self.graph),
            node,
            getter,
            store_name: None,
            key_serde: self.key_serde.clone(),
            value_serde: None,
        }
    }
}
