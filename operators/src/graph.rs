//! The graph the DSL builds before it is compiled into a [`Topology`](crate::topology::Topology):
//! node and store definitions with factories that create per-task instances.

use std::any::Any;
use std::sync::Arc;

use crate::node::Node;
use crate::store::StoreSupplier;

pub(crate) type NodeId = usize;
pub(crate) type StoreId = usize;

/// A topic name, or the part of an internal topic's name after `<application.id>-`, which is
/// only known when the topology is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TopicName {
    User(String),
    Internal(String),
}

impl TopicName {
    /// Internal topics are the repartition topics the DSL inserts.
    pub(crate) fn is_internal(&self) -> bool {
        matches!(self, TopicName::Internal(_))
    }

    pub(crate) fn resolve(&self, application_id: &str) -> String {
        match self {
            TopicName::User(name) => name.clone(),
            TopicName::Internal(suffix) => format!("{application_id}-{suffix}"),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum NodeRole {
    Source(TopicName),
    Processor,
    Sink(TopicName),
}

/// What a node factory may need to know about the topology it is built into.
pub(crate) struct NodeSetup<'a> {
    pub(crate) application_id: &'a str,
}

pub(crate) type NodeFactory = Arc<dyn Fn(&NodeSetup<'_>) -> Box<dyn Node> + Send + Sync>;

pub(crate) struct NodeDef {
    pub(crate) name: String,
    pub(crate) role: NodeRole,
    pub(crate) parents: Vec<NodeId>,
    pub(crate) stores: Vec<StoreId>,
    /// Stores connected by name (Processor API); resolved when the topology is built.
    pub(crate) store_names: Vec<String>,
    pub(crate) timer_store: Option<StoreId>,
    pub(crate) factory: NodeFactory,
}

impl NodeDef {
    pub(crate) fn new(name: String, role: NodeRole, parents: Vec<NodeId>, factory: NodeFactory) -> Self {
        NodeDef { name, role, parents, stores: Vec::new(), store_names: Vec::new(), timer_store: None, factory }
    }

    pub(crate) fn with_stores(mut self, stores: Vec<StoreId>) -> Self {
        self.stores = stores;
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreKind {
    KeyValue,
    Window,
    Session,
    Timers,
}

pub(crate) struct StoreDef {
    pub(crate) name: String,
    pub(crate) kind: StoreKind,
    /// The store's `StoreSerdes<K, V>`, typed again by whoever reads the store.
    pub(crate) serdes: Arc<dyn Any + Send + Sync>,
    pub(crate) supplier: Arc<dyn StoreSupplier>,
}

/// Nodes and stores in the order they were added, plus mistakes found while adding them, which
/// fail the build.
#[derive(Default)]
pub(crate) struct GraphBuilder {
    pub(crate) nodes: Vec<NodeDef>,
    pub(crate) stores: Vec<StoreDef>,
    pub(crate) errors: Vec<String>,
    name_counter: usize,
}

impl GraphBuilder {
    /// A generated name like Kafka Streams' `KSTREAM-FILTER-0000000003`.
    pub(crate) fn next_name(&mut self, prefix: &str) -> String {
        let name = format!("{prefix}-{:010}", self.name_counter);
        self.name_counter += 1;
        name
    }

    pub(crate) fn add_node(&mut self, node: NodeDef) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    pub(crate) fn add_store(&mut self, store: StoreDef) -> StoreId {
        if self.stores.iter().any(|existing| existing.name == store.name) {
            self.errors.push(format!("store '{}' is defined twice", store.name));
        }
        self.stores.push(store);
        self.stores.len() - 1
    }

    pub(crate) fn error(&mut self, message: String) {
        self.errors.push(message);
    }
}
