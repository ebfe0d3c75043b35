//! Windowed aggregations: `TimeWindowedKStream` and `SessionWindowedKStream`.

use std::rc::Rc;
use std::sync::Arc;

use super::grouped::AggregationPlan;
use super::{aggregators, KGroupedStream, KTable, Materialized};
use crate::graph::{NodeFactory, StoreKind};
use crate::node::aggregate::AggregateFn;
use crate::node::session_aggregate::SessionAggregateNode;
use crate::node::window_aggregate::TimeWindowAggregateNode;
use crate::record::Data;
use crate::serdes::{I64Serde, Serde};
use crate::windowing::{SessionWindows, TimeWindows, Windowed};

/// Window definitions accepted by [`KGroupedStream::windowed_by`].
pub trait WindowedBy<K, V> {
    type Windowed;

    fn window(self, grouped: KGroupedStream<K, V>) -> Self::Windowed;
}

impl<K: Data, V: Data> WindowedBy<K, V> for TimeWindows {
    type Windowed = TimeWindowedKStream<K, V>;

    fn window(self, grouped: KGroupedStream<K, V>) -> TimeWindowedKStream<K, V> {
        if let Err(problem) = self.validate() {
            grouped.stream.graph.borrow_mut().error(problem);
        }
        TimeWindowedKStream { grouped, windows: self }
    }
}

impl<K: Data, V: Data> WindowedBy<K, V> for SessionWindows {
    type Windowed = SessionWindowedKStream<K, V>;

    fn window(self, grouped: KGroupedStream<K, V>) -> SessionWindowedKStream<K, V> {
        if let Err(problem) = self.validate() {
            grouped.stream.graph.borrow_mut().error(problem);
        }
        SessionWindowedKStream { grouped, windows: self }
    }
}

/// A windowed table without a value getter: windowed tables cannot be joined.
fn windowed_table<K, VA>(
    grouped: &KGroupedStream<K, impl Data>,
    node: usize,
    store_name: String,
) -> KTable<Windowed<K>, VA> {
    KTable {
        graph: Rc::clone(&grouped.stream.graph),
        node,
        getter: None,
        store_name: Some(store_name),
        key_serde: None,
        value_serde: None,
    }
}

/// A stream grouped by key and time window (tumbling or hopping). Records later than their
/// window's end plus grace are dropped and counted in
/// [`Task::dropped_records`](crate::task::Task::dropped_records).
pub struct TimeWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: TimeWindows,
}

impl<K: Data, V: Data> TimeWindowedKStream<K, V> {
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        self.aggregate_with(aggregators::AGGREGATE, materialized, Some(Arc::new(I64Serde)), aggregators::counter())
    }

    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<Windowed<K>, V> {
        let value_serde = Some(Arc::clone(&self.grouped.grouped.value_serde));
        self.aggregate_with(aggregators::REDUCE, materialized, value_serde, aggregators::reducer(Arc::new(reducer)))
    }

    pub fn aggregate<VA: Data>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let aggregate = aggregators::aggregator(Arc::new(initializer), aggregator);
        self.aggregate_with(aggregators::AGGREGATE, materialized, None, aggregate)
    }

    fn aggregate_with<VA: Data>(
        &self,
        prefix: &str,
        materialized: Materialized<K, VA>,
        default_value_serde: Option<Arc<dyn Serde<VA>>>,
        aggregate: AggregateFn<K, V, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let Some(AggregationPlan { parent, store, store_name, serdes }) =
            self.grouped.plan(prefix, materialized, default_value_serde, StoreKind::Window)
        else {
            return KTable::unusable(&self.grouped.stream);
        };
        let windows = self.windows;
        let factory: NodeFactory = Arc::new(move |_| {
            Box::new(TimeWindowAggregateNode {
                windows,
                store,
                serdes: serdes.clone(),
                aggregate: Arc::clone(&aggregate),
            })
        });
        let node = self.grouped.add_aggregation_node(prefix, parent, store, factory);
        windowed_table(&self.grouped, node, store_name)
    }
}

/// A stream grouped by key and session. Records that would only extend sessions that ended
/// before stream time minus grace are dropped and counted.
pub struct SessionWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: SessionWindows,
}

impl<K: Data, V: Data> SessionWindowedKStream<K, V> {
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        let (count, merge) = (aggregators::counter(), aggregators::count_merger());
        self.aggregate_with(aggregators::AGGREGATE, materialized, Some(Arc::new(I64Serde)), count, merge)
    }

    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<Windowed<K>, V> {
        let reducer: Arc<dyn Fn(V, V) -> V + Send + Sync> = Arc::new(reducer);
        let (reduce, merge) = (aggregators::reducer(Arc::clone(&reducer)), aggregators::reducer(reducer));
        let value_serde = Some(Arc::clone(&self.grouped.grouped.value_serde));
        self.aggregate_with(aggregators::REDUCE, materialized, value_serde, reduce, merge)
    }

    /// `merger(key, aggregate1, aggregate2)` combines two sessions' aggregates when a record
    /// bridges them.
    pub fn aggregate<VA: Data>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        merger: impl Fn(&K, VA, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let initializer: Arc<dyn Fn() -> VA + Send + Sync> = Arc::new(initializer);
        let aggregate = aggregators::aggregator(Arc::clone(&initializer), aggregator);
        // A merge folds one session's aggregate into the other's: `merger(key, merged, session)`.
        let merge = aggregators::aggregator(initializer, move |key, session, merged| merger(key, merged, session));
        self.aggregate_with(aggregators::AGGREGATE, materialized, None, aggregate, merge)
    }

    fn aggregate_with<VA: Data>(
        &self,
        prefix: &str,
        materialized: Materialized<K, VA>,
        default_value_serde: Option<Arc<dyn Serde<VA>>>,
        aggregate: AggregateFn<K, V, VA>,
        merge: AggregateFn<K, VA, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let Some(AggregationPlan { parent, store, store_name, serdes }) =
            self.grouped.plan(prefix, materialized, default_value_serde, StoreKind::Session)
        else {
            return KTable::unusable(&self.grouped.stream);
        };
        let windows = self.windows;
        let factory: NodeFactory = Arc::new(move |_| {
            Box::new(SessionAggregateNode {
                windows,
                store,
                serdes: serdes.clone(),
                aggregate: Arc::clone(&aggregate),
                merge: Arc::clone(&merge),
            })
        });
        let node = self.grouped.add_aggregation_node(prefix, parent, store, factory);
        windowed_table(&self.grouped, node, store_name)
    }
}
