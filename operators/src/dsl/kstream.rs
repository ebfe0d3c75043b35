//! `KStream`: an unbounded stream of independent records.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::{
    sink_factory, stateless, stateless_factory, BranchedKStream, Grouped, KGroupedStream, KTable, Processed, Produced,
    Repartitioned,
};
use crate::graph::{GraphBuilder, NodeDef, NodeFactory, NodeId, NodeRole, StoreDef, StoreKind, TopicName};
use crate::node::join::{JoinFn, StreamTableJoinNode};
use crate::node::source::SourceNode;
use crate::node::stateless::StatelessFn;
use crate::node::user_processor::ProcessorNode;
use crate::processor::Processor;
use crate::record::{Data, Record};
use crate::serdes::Serde;
use crate::store::InMemoryStoreSupplier;

/// A stream of records, like Kafka Streams' `KStream`. Cheap to clone; using one stream in
/// several operations fans its records out to all of them.
pub struct KStream<K, V> {
    pub(crate) graph: Rc<RefCell<GraphBuilder>>,
    pub(crate) node: NodeId,
    /// Whether an upstream operation may have changed keys, so stateful operations must first
    /// repartition by the new key.
    pub(crate) key_changed: bool,
    /// Known serdes, used when a repartition topic is inserted automatically.
    pub(crate) key_serde: Option<Arc<dyn Serde<K>>>,
    pub(crate) value_serde: Option<Arc<dyn Serde<V>>>,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        KStream {
            graph: Rc::clone(&self.graph),
            node: self.node,
            key_changed: self.key_changed,
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
        }
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    fn derived<K2, V2>(
        &self,
        node: NodeId,
        key_changed: bool,
        key_serde: Option<Arc<dyn Serde<K2>>>,
        value_serde: Option<Arc<dyn Serde<V2>>>,
    ) -> KStream<K2, V2> {
        KStream { graph: Rc::clone(&self.graph), node, key_changed, key_serde, value_serde }
    }

    fn add_node(&self, prefix: &str, parents: Vec<NodeId>, factory: NodeFactory) -> NodeId {
        let mut graph = self.graph.borrow_mut();
        let name = graph.next_name(prefix);
        graph.add_node(NodeDef::new(name, NodeRole::Processor, parents, factory))
    }

    fn add_stateless(&self, prefix: &str, op: StatelessFn<K, V>) -> NodeId {
        self.add_node(prefix, vec![self.node], stateless_factory(op))
    }

    /// Records for which `predicate` holds.
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KStream<K, V> {
        let node = self.add_stateless(
            "KSTREAM-FILTER",
            stateless(
                move |record: Record<K, V>, ctx| {
                    if predicate(&record.key, &record.value) {
                        ctx.forward(record)
                    } else {
                        Ok(())
                    }
                },
            ),
        );
        self.derived(node, self.key_changed, self.key_serde.clone(), self.value_serde.clone())
    }

    /// Records for which `predicate` does not hold.
    pub fn filter_not(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KStream<K, V> {
        self.filter(move |key, value| !predicate(key, value))
    }

    /// Each record with a new key and value. Stateful operations downstream repartition.
    pub fn map<K2: Data, V2: Data>(
        &self,
        mapper: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        let node = self.add_stateless(
            "KSTREAM-MAP",
            stateless(move |record: Record<K, V>, ctx| {
                let Record { key, value, timestamp_ms, headers } = record;
                let (key, value) = mapper(key, value);
                ctx.forward(Record { key, value, timestamp_ms, headers })
            }),
        );
        self.derived(node, true, None, None)
    }

    /// Each record with a new value; keys are kept.
    pub fn map_values<V2: Data>(&self, mapper: impl Fn(V) -> V2 + Send + Sync + 'static) -> KStream<K, V2> {
        self.map_values_with_key(move |_, value| mapper(value))
    }

    /// Each record with a new value computed from key and value; keys are kept.
    pub fn map_values_with_key<V2: Data>(
        &self,
        mapper: impl Fn(&K, V) -> V2 + Send + Sync + 'static,
    ) -> KStream<K, V2> {
        let node = self.add_stateless(
            "KSTREAM-MAPVALUES",
            stateless(move |record: Record<K, V>, ctx| {
                let value = mapper(&record.key, record.value);
                ctx.forward(Record {
                    key: record.key,
                    value,
                    timestamp_ms: record.timestamp_ms,
                    headers: record.headers,
                })
            }),
        );
        self.derived(node, self.key_changed, self.key_serde.clone(), None)
    }

    /// Zero or more records per record. Stateful operations downstream repartition.
    pub fn flat_map<K2: Data, V2: Data, I>(&self, mapper: impl Fn(K, V) -> I + Send + Sync + 'static) -> KStream<K2, V2>
    where
        I: IntoIterator<Item = (K2, V2)>,
    {
        let node = self.add_stateless(
            "KSTREAM-FLATMAP",
            stateless(move |record: Record<K, V>, ctx| {
                let Record { key, value, timestamp_ms, headers } = record;
                for (key, value) in mapper(key, value) {
                    ctx.forward(Record { key, value, timestamp_ms, headers: headers.clone() })?;
                }
                Ok(())
            }),
        );
        self.derived(node, true, None, None)
    }

    /// Zero or more values per record, each keeping the record's key.
    pub fn flat_map_values<V2: Data, I>(&self, mapper: impl Fn(V) -> I + Send + Sync + 'static) -> KStream<K, V2>
    where
        I: IntoIterator<Item = V2>,
    {
        let node = self.add_stateless(
            "KSTREAM-FLATMAPVALUES",
            stateless(move |record: Record<K, V>, ctx| {
                for value in mapper(record.value) {
                    ctx.forward(Record {
                        key: record.key.clone(),
                        value,
                        timestamp_ms: record.timestamp_ms,
                        headers: record.headers.clone(),
                    })?;
                }
                Ok(())
            }),
        );
        self.derived(node, self.key_changed, self.key_serde.clone(), None)
    }

    /// Calls `action` on each record and passes it on unchanged.
    pub fn peek(&self, action: impl Fn(&K, &V) + Send + Sync + 'static) -> KStream<K, V> {
        let node = self.add_stateless(
            "KSTREAM-PEEK",
            stateless(move |record: Record<K, V>, ctx| {
                action(&record.key, &record.value);
                ctx.forward(record)
            }),
        );
        self.derived(node, self.key_changed, self.key_serde.clone(), self.value_serde.clone())
    }

    /// Calls `action` on each record; ends the stream.
    pub fn foreach(&self, action: impl Fn(&K, &V) + Send + Sync + 'static) {
        self.add_stateless(
            "KSTREAM-FOREACH",
            stateless(move |record: Record<K, V>, _| {
                action(&record.key, &record.value);
                Ok(())
            }),
        );
    }

    /// Each record with a new key; values are kept. Stateful operations downstream repartition.
    pub fn select_key<K2: Data>(&self, selector: impl Fn(&K, &V) -> K2 + Send + Sync + 'static) -> KStream<K2, V> {
        let node = self.add_stateless(
            "KSTREAM-KEY-SELECT",
            stateless(move |record: Record<K, V>, ctx| {
                let key = selector(&record.key, &record.value);
                ctx.forward(record.with_key(key))
            }),
        );
        self.derived(node, true, None, self.value_serde.clone())
    }

    /// Routes each record to the first branch whose predicate holds.
    pub fn split(&self) -> BranchedKStream<K, V> {
        BranchedKStream::new(self.clone())
    }

    /// The records of both streams.
    pub fn merge(&self, other: &KStream<K, V>) -> KStream<K, V> {
        let node = self.add_node(
            "KSTREAM-MERGE",
            vec![self.node, other.node],
            stateless_factory(stateless(|record: Record<K, V>, ctx| ctx.forward(record))),
        );
        let key_serde = self.key_serde.clone().or_else(|| other.key_serde.clone());
        let value_serde = self.value_serde.clone().or_else(|| other.value_serde.clone());
        self.derived(node, self.key_changed || other.key_changed, key_serde, value_serde)
    }

    /// Writes the stream to `topic`; the producer partitions by key.
    pub fn to(&self, topic: &str, produced: Produced<K, V>) {
        let Produced { name, key_serde, value_serde } = produced;
        let factory = sink_factory(TopicName::User(topic.to_owned()), key_serde, value_serde);
        let mut graph = self.graph.borrow_mut();
        let name = name.unwrap_or_else(|| graph.next_name("KSTREAM-SINK"));
        graph.add_node(NodeDef::new(name, NodeRole::Sink(TopicName::User(topic.to_owned())), vec![self.node], factory));
    }

    /// Writes the stream to a repartition topic and reads it back, so records are partitioned by
    /// their current key.
    pub fn repartition(&self, repartitioned: Repartitioned<K, V>) -> KStream<K, V> {
        let Repartitioned { name, key_serde, value_serde } = repartitioned;
        let name = name.unwrap_or_else(|| self.graph.borrow_mut().next_name("KSTREAM-REPARTITION"));
        let node = self.through_repartition_topic(&name, Arc::clone(&key_serde), Arc::clone(&value_serde));
        self.derived(node, false, Some(key_serde), Some(value_serde))
    }

    /// Groups by the current key, for aggregations.
    pub fn group_by_key(&self, grouped: Grouped<K, V>) -> KGroupedStream<K, V> {
        KGroupedStream::new(self.clone(), self.key_changed, grouped)
    }

    /// Groups by a new key, for aggregations; always repartitions.
    pub fn group_by<K2: Data>(
        &self,
        selector: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
        grouped: Grouped<K2, V>,
    ) -> KGroupedStream<K2, V> {
        KGroupedStream::new(self.select_key(selector), true, grouped)
    }

    /// Runs a Processor API processor, created per task by `supplier`, with access to the named
    /// stores. Its forwarded records form the returned stream.
    pub fn process<KOut: Data, VOut: Data, P>(
        &self,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        stores: &[&str],
    ) -> KStream<KOut, VOut>
    where
        P: Processor<K, V, KOut, VOut> + 'static,
    {
        self.process_with(supplier, Processed::default().with_stores(stores))
    }

    /// [`KStream::process`] with a name, stores, durable timers and repartition serdes.
    pub fn process_with<KOut: Data, VOut: Data, P>(
        &self,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        processed: Processed<K, V>,
    ) -> KStream<KOut, VOut>
    where
        P: Processor<K, V, KOut, VOut> + 'static,
    {
        let Processed { name, stores, durable_timers, key_serde, value_serde } = processed;
        let name = name.unwrap_or_else(|| self.graph.borrow_mut().next_name("KSTREAM-PROCESSOR"));
        let parent = if stores.is_empty() { self.node } else { self.co_partitioned(&name, key_serde, value_serde) };
        let factory: NodeFactory = Arc::new(move |_| Box::new(ProcessorNode { processor: Box::new(supplier()) }));
        let mut graph = self.graph.borrow_mut();
        let timer_store = durable_timers.then(|| {
            graph.add_store(StoreDef {
                name: format!("{name}-timers"),
                kind: StoreKind::Timers,
                serdes: Arc::new(()),
                supplier: Arc::new(InMemoryStoreSupplier),
            })
        });
        let mut def = NodeDef::new(name, NodeRole::Processor, vec![parent], factory);
        def.store_names = stores;
        def.timer_store = timer_store;
        let node = graph.add_node(def);
        drop(graph);
        self.derived(node, true, None, None)
    }

    /// Inner stream–table join: each record joined with the table's current value for its key;
    /// records whose key is not in the table are dropped.
    pub fn join<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(V, VT) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        let joiner: JoinFn<V, VT, VR> =
            Arc::new(move |value, table_value| table_value.map(|table_value| joiner(value, table_value)));
        self.join_table("KSTREAM-JOIN", table, joiner)
    }

    /// Left stream–table join: every record is joined, with `None` when its key is not in the
    /// table.
    pub fn left_join<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(V, Option<VT>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        let joiner: JoinFn<V, VT, VR> = Arc::new(move |value, table_value| Some(joiner(value, table_value)));
        self.join_table("KSTREAM-LEFTJOIN", table, joiner)
    }

    fn join_table<VT: Data, VR: Data>(
        &self,
        prefix: &str,
        table: &KTable<K, VT>,
        joiner: JoinFn<V, VT, VR>,
    ) -> KStream<K, VR> {
        let name = self.graph.borrow_mut().next_name(prefix);
        let Some(getter) = table.getter.clone() else {
            self.graph.borrow_mut().error(format!("{name}: can only join with a non-windowed table"));
            return self.derived(self.node, self.key_changed, self.key_serde.clone(), None);
        };
        // The table's key serde partitions the table's topic, so the stream must use it too.
        let parent = self.co_partitioned(&name, table.key_serde.clone(), None);
        let store = getter.store();
        let factory: NodeFactory = Arc::new(move |_| {
            Box::new(StreamTableJoinNode { table: Arc::clone(&getter), joiner: Arc::clone(&joiner) })
        });
        let node = self
            .graph
            .borrow_mut()
            .add_node(NodeDef::new(name, NodeRole::Processor, vec![parent], factory).with_stores(vec![store]));
        self.derived(node, false, self.key_serde.clone(), None)
    }

    /// The node a stateful operation should read from: this stream, or, when keys may have
    /// changed, a repartition topic `<application.id>-<name>-repartition` of it, written with the
    /// given serdes or else the stream's.
    fn co_partitioned(
        &self,
        name: &str,
        key_serde: Option<Arc<dyn Serde<K>>>,
        value_serde: Option<Arc<dyn Serde<V>>>,
    ) -> NodeId {
        if !self.key_changed {
            return self.node;
        }
        match (key_serde.or_else(|| self.key_serde.clone()), value_serde.or_else(|| self.value_serde.clone())) {
            (Some(key_serde), Some(value_serde)) => self.through_repartition_topic(name, key_serde, value_serde),
            _ => {
                self.graph.borrow_mut().error(format!(
                    "{name}: keys may have changed upstream, so records must be repartitioned, but the stream's serdes are \
                     unknown; call repartition(Repartitioned::with(..)) first or give the operation serdes"
                ));
                self.node
            }
        }
    }

    /// Adds a sink to `<application.id>-<name>-repartition` and a source reading it back, which
    /// starts a new sub-topology. Returns the source.
    pub(crate) fn through_repartition_topic(
        &self,
        name: &str,
        key_serde: Arc<dyn Serde<K>>,
        value_serde: Arc<dyn Serde<V>>,
    ) -> NodeId {
        let topic = TopicName::Internal(format!("{name}-repartition"));
        let sink = sink_factory(topic.clone(), Arc::clone(&key_serde), Arc::clone(&value_serde));
        let source: NodeFactory = Arc::new(move |_| {
            Box::new(SourceNode { key_serde: Arc::clone(&key_serde), value_serde: Arc::clone(&value_serde) })
        });
        let mut graph = self.graph.borrow_mut();
        graph.add_node(NodeDef::new(
            format!("{name}-repartition-sink"),
            NodeRole::Sink(topic.clone()),
            vec![self.node],
            sink,
        ));
        graph.add_node(NodeDef::new(format!("{name}-repartition-source"), NodeRole::Source(topic), Vec::new(), source))
    }
}
