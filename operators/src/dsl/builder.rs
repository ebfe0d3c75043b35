//! The entry point of the DSL.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::{Consumed, KStream, KTable, Materialized};
use crate::graph::{GraphBuilder, NodeDef, NodeFactory, NodeRole, StoreDef, StoreKind, TopicName};
use crate::node::join::StoreValueGetter;
use crate::node::source::SourceNode;
use crate::node::table_source::TableSourceNode;
use crate::record::Data;
use crate::store::{InMemoryStoreSupplier, StoreBuilder, StoreSerdes};
use crate::topology::{compile, Topology, TopologyError};

/// Builds a topology with the DSL, like Kafka Streams' `StreamsBuilder`. Streams and tables
/// created from it add to it; [`StreamsBuilder::build`] turns it all into a [`Topology`].
#[derive(Default)]
pub struct StreamsBuilder {
    graph: Rc<RefCell<GraphBuilder>>,
}

impl StreamsBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A stream of the records in `topic`.
    pub fn stream<K: Data, V: Data>(&self, topic: &str, consumed: Consumed<K, V>) -> KStream<K, V> {
        let Consumed { key_serde, value_serde } = consumed;
        let (key, value) = (Arc::clone(&key_serde), Arc::clone(&value_serde));
        let factory: NodeFactory =
            Arc::new(move |_| Box::new(SourceNode { key_serde: Arc::clone(&key), value_serde: Arc::clone(&value) }));
        let node = {
            let mut graph = self.graph.borrow_mut();
            let name = graph.next_name("KSTREAM-SOURCE");
            graph.add_node(NodeDef::new(name, NodeRole::Source(TopicName::User(topic.to_owned())), Vec::new(), factory))
        };
        KStream {
            graph: Rc::clone(&self.graph),
            node,
            key_changed: false,
            key_serde: Some(key_serde),
            value_serde: Some(value_serde),
        }
    }

    /// A table of the latest value per key in `topic` (a null value deletes the key),
    /// materialized in a change-logged store. Serdes missing from `materialized` default to
    /// those of `consumed`.
    pub fn table<K: Data, V: Data>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let Consumed { key_serde, value_serde } = consumed;
        let store_serdes = StoreSerdes {
            key: materialized.key_serde.unwrap_or_else(|| Arc::clone(&key_serde)),
            value: materialized.value_serde.unwrap_or_else(|| Arc::clone(&value_serde)),
        };
        let mut graph = self.graph.borrow_mut();
        let store_name = materialized.name.unwrap_or_else(|| graph.next_name(&format!("{topic}-STATE-STORE")));
        let store = graph.add_store(StoreDef {
            name: store_name.clone(),
            kind: StoreKind::KeyValue,
            serdes: Arc::new(store_serdes.clone()),
            supplier: materialized.supplier.unwrap_or_else(|| Arc::new(InMemoryStoreSupplier)),
        });
        let (key, value, serdes) = (Arc::clone(&key_serde), Arc::clone(&value_serde), store_serdes.clone());
        let factory: NodeFactory = Arc::new(move |_| {
            Box::new(TableSourceNode {
                key_serde: Arc::clone(&key),
                value_serde: Arc::clone(&value),
                store,
                store_serdes: serdes.clone(),
            })
        });
        let name = graph.next_name("KTABLE-SOURCE");
        let role = NodeRole::Source(TopicName::User(topic.to_owned()));
        let node = graph.add_node(NodeDef::new(name, role, Vec::new(), factory).with_stores(vec![store]));
        drop(graph);
        KTable {
            graph: Rc::clone(&self.graph),
            node,
            getter: Some(Arc::new(StoreValueGetter { store, serdes: store_serdes })),
            store_name: Some(store_name),
            key_serde: Some(key_serde),
            value_serde: Some(value_serde),
        }
    }

    /// Adds a store for Processor API nodes; connect it by name in
    /// [`KStream::process`](super::KStream::process).
    pub fn add_state_store(&self, store: StoreBuilder) {
        let StoreBuilder { name, serdes, supplier } = store;
        self.graph.borrow_mut().add_store(StoreDef { name, kind: StoreKind::KeyValue, serdes, supplier });
    }

    /// Compiles the topology for `application_id`, reporting every mistake found.
    pub fn try_build(self, application_id: &str) -> Result<Topology, TopologyError> {
        let graph = std::mem::take(&mut *self.graph.borrow_mut());
        compile(graph, application_id)
    }

    /// Compiles the topology for `application_id`.
    ///
    /// # Panics
    ///
    /// If the topology is invalid (like Kafka Streams' `TopologyException`): unknown or unused
    /// stores, a topic read twice, a missing serde, an illegal application id. A mistake in the
    /// program, not in data; use [`StreamsBuilder::try_build`] to handle it as an error.
    pub fn build(self, application_id: &str) -> Topology {
        match self.try_build(application_id) {
            Ok(topology) => topology,
            Err(error) => panic!("{error}"),
        }
    }
}
