//! `KGroupedStream`: a stream grouped by key, ready for aggregation.

use std::cell::OnceCell;
use std::rc::Rc;
use std::sync::Arc;

use super::{aggregators, Grouped, KStream, KTable, Materialized, WindowedBy};
use crate::graph::{NodeDef, NodeFactory, NodeId, NodeRole, StoreDef, StoreId, StoreKind};
use crate::node::aggregate::{AggregateFn, AggregateNode};
use crate::node::join::StoreValueGetter;
use crate::record::Data;
use crate::serdes::{I64Serde, Serde};
use crate::store::{InMemoryStoreSupplier, StoreSerdes};

/// Where an aggregation reads and keeps its state.
pub(crate) struct AggregationPlan<K, VA> {
    pub(crate) parent: NodeId,
    pub(crate) store: StoreId,
    pub(crate) store_name: String,
    pub(crate) serdes: StoreSerdes<K, VA>,
}

/// Records grouped by key, like Kafka Streams' `KGroupedStream`. Aggregations produce a table
/// that is updated, and emits an update, for every record.
pub struct KGroupedStream<K, V> {
    pub(crate) stream: KStream<K, V>,
    pub(crate) repartition_required: bool,
    pub(crate) grouped: Grouped<K, V>,
    /// The source of the repartition topic, once an aggregation has added it. Shared by clones
    /// (`windowed_by` takes one), so that every aggregation of the grouping reads the one topic:
    /// a second source of it would fail the build, and a second topic would copy every record.
    repartition_source: Rc<OnceCell<NodeId>>,
}

impl<K, V> Clone for KGroupedStream<K, V> {
    fn clone(&self) -> Self {
        KGroupedStream {
            stream: self.stream.clone(),
            repartition_required: self.repartition_required,
            grouped: self.grouped.clone(),
            repartition_source: Rc::clone(&self.repartition_source),
        }
    }
}

impl<K: Data, V: Data> KGroupedStream<K, V> {
    pub(crate) fn new(stream: KStream<K, V>, repartition_required: bool, grouped: Grouped<K, V>) -> Self {
        KGroupedStream { stream, repartition_required, grouped, repartition_source: Rc::default() }
    }

    /// Number of records per key.
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        self.aggregate_with(aggregators::AGGREGATE, materialized, Some(Arc::new(I64Serde)), aggregators::counter())
    }

    /// Combines the values of each key with `reducer(aggregate, value)`; the first value is the
    /// initial aggregate.
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let value_serde = Some(Arc::clone(&self.grouped.value_serde));
        self.aggregate_with(aggregators::REDUCE, materialized, value_serde, aggregators::reducer(Arc::new(reducer)))
    }

    /// Folds the values of each key with `aggregator(key, value, aggregate)`, starting from
    /// `initializer()`. `materialized` must carry a value serde for the aggregate.
    pub fn aggregate<VA: Data>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA> {
        let aggregate = aggregators::aggregator(Arc::new(initializer), aggregator);
        self.aggregate_with(aggregators::AGGREGATE, materialized, None, aggregate)
    }

    /// Aggregates per window: `TimeWindows` (tumbling or hopping) or `SessionWindows`.
    pub fn windowed_by<W: WindowedBy<K, V>>(&self, windows: W) -> W::Windowed {
        windows.window(self.clone())
    }

    fn aggregate_with<VA: Data>(
        &self,
        prefix: &str,
        materialized: Materialized<K, VA>,
        default_value_serde: Option<Arc<dyn Serde<VA>>>,
        aggregate: AggregateFn<K, V, VA>,
    ) -> KTable<K, VA> {
        let Some(plan) = self.plan(prefix, materialized, default_value_serde, StoreKind::KeyValue) else {
            return KTable::unusable(&self.stream);
        };
        let AggregationPlan { parent, store, store_name, serdes } = plan;
        let node_serdes = serdes.clone();
        let factory: NodeFactory = Arc::new(move |_| {
            Box::new(AggregateNode { store, serdes: node_serdes.clone(), aggregate: Arc::clone(&aggregate) })
        });
        let node = self.add_aggregation_node(prefix, parent, store, factory);
        let (key_serde, value_serde) = (Some(Arc::clone(&serdes.key)), Some(Arc::clone(&serdes.value)));
        KTable {
            graph: Rc::clone(&self.stream.graph),
            node,
            getter: Some(Arc::new(StoreValueGetter { store, serdes })),
            store_name: Some(store_name),
            key_serde,
            value_serde,
        }
    }

    pub(crate) fn add_aggregation_node(
        &self,
        prefix: &str,
        parent: NodeId,
        store: StoreId,
        factory: NodeFactory,
    ) -> NodeId {
        let mut graph = self.stream.graph.borrow_mut();
        let name = graph.next_name(prefix);
        graph.add_node(NodeDef::new(name, NodeRole::Processor, vec![parent], factory).with_stores(vec![store]))
    }

    /// Names and registers the aggregation's store and, when keys may have changed, finds its
    /// input in the grouping's repartition topic. `None` when the aggregate's value serde is
    /// unknown; the build then fails.
    pub(crate) fn plan<VA: Data>(
        &self,
        prefix: &str,
        materialized: Materialized<K, VA>,
        default_value_serde: Option<Arc<dyn Serde<VA>>>,
        kind: StoreKind,
    ) -> Option<AggregationPlan<K, VA>> {
        let Materialized { name, key_serde, value_serde, supplier } = materialized;
        let store_name =
            name.unwrap_or_else(|| self.stream.graph.borrow_mut().next_name(&format!("{prefix}-STATE-STORE")));
        let Some(value_serde) = value_serde.or(default_value_serde) else {
            self.stream.graph.borrow_mut().error(format!(
                "store '{store_name}': an aggregate needs a value serde; use Materialized::with_value_serde"
            ));
            return None;
        };
        let parent = if self.repartition_required { self.repartition_source(&store_name) } else { self.stream.node };
        let serdes =
            StoreSerdes { key: key_serde.unwrap_or_else(|| Arc::clone(&self.grouped.key_serde)), value: value_serde };
        let store = self.stream.graph.borrow_mut().add_store(StoreDef {
            name: store_name.clone(),
            kind,
            serdes: Arc::new(serdes.clone()),
            supplier: supplier.unwrap_or_else(|| Arc::new(InMemoryStoreSupplier)),
        });
        Some(AggregationPlan { parent, store, store_name, serdes })
    }

    /// The source of the grouping's repartition topic, which its first aggregation adds: named
    /// after the grouping, else after that aggregation's store, as in Kafka Streams. Later
    /// aggregations read the same source, as Kafka Streams' `GroupedStreamAggregateBuilder` reuses
    /// its repartition node (there only for a named grouping, unless the topology is optimized).
    fn repartition_source(&self, first_store_name: &str) -> NodeId {
        *self.repartition_source.get_or_init(|| {
            let topic_name = self.grouped.name.as_deref().unwrap_or(first_store_name);
            let (key, value) = (Arc::clone(&self.grouped.key_serde), Arc::clone(&self.grouped.value_serde));
            self.stream.through_repartition_topic(topic_name, key, value)
        })
    }
}
