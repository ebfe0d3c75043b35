//! A built topology: sub-topologies, their topics and stores, and the factory of tasks.

mod compile;
mod describe;

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::clock::SystemClock;
use crate::graph::{NodeFactory, NodeId, NodeSetup, StoreId, StoreKind};
use crate::node::{Node, NodeMeta};
use crate::store::{StoreError, StoreSupplier};
use crate::task::Task;
use crate::task_state::{StoreSlot, TaskState};

pub(crate) use compile::compile;

/// One task per (sub-topology, partition), as in Kafka Streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    pub subtopology: usize,
    pub partition: i32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

/// Why a topology could not be built: every problem found, not just the first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyError {
    problems: Vec<String>,
}

impl TopologyError {
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid topology: {}", self.problems.join("; "))
    }
}

impl std::error::Error for TopologyError {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CompiledRole {
    Source { topic: String, repartition: bool },
    Processor,
    Sink { topic: String, repartition: bool },
}

pub(crate) struct CompiledNode {
    pub(crate) name: String,
    pub(crate) role: CompiledRole,
    pub(crate) parents: Vec<NodeId>,
}

pub(crate) struct CompiledStore {
    pub(crate) name: String,
    pub(crate) changelog_topic: String,
    pub(crate) kind: StoreKind,
    pub(crate) serdes: Arc<dyn Any + Send + Sync>,
    pub(crate) supplier: Arc<dyn StoreSupplier>,
}

/// The nodes and stores that must run together because records or stores connect them.
#[derive(Default)]
pub(crate) struct Subtopology {
    pub(crate) nodes: Vec<NodeId>,
    pub(crate) stores: Vec<StoreId>,
    pub(crate) sources: BTreeMap<String, NodeId>,
    pub(crate) changelogs: BTreeMap<String, StoreId>,
    /// Processors with durable timers and their timer stores.
    pub(crate) timers: Vec<(NodeId, StoreId)>,
}

/// A compiled topology. Immutable, `Send + Sync` and cheap to share in an `Arc`.
pub struct Topology {
    application_id: Arc<str>,
    nodes: Vec<CompiledNode>,
    /// Shared with tasks, which rebuild nodes lost to a panic.
    factories: Arc<[NodeFactory]>,
    meta: Arc<[NodeMeta]>,
    stores: Vec<CompiledStore>,
    subtopologies: Vec<Arc<Subtopology>>,
}

impl Topology {
    pub fn application_id(&self) -> &str {
        &self.application_id
    }

    /// Every topic a task consumes: user topics and repartition topics, by full name.
    pub fn source_topics(&self) -> Vec<String> {
        self.subtopologies.iter().flat_map(|sub| sub.sources.keys().cloned()).collect()
    }

    /// Internal topics that re-key records between sub-topologies:
    /// `<application.id>-<name>-repartition`.
    pub fn repartition_topics(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter_map(|node| match &node.role {
                CompiledRole::Source { topic, repartition: true } => Some(topic.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every store's name, timer stores included.
    pub fn store_names(&self) -> impl Iterator<Item = &str> {
        self.stores.iter().map(|store| store.name.as_str())
    }

    /// One `<application.id>-<store>-changelog` per store, timer stores included.
    pub fn changelog_topics(&self) -> Vec<String> {
        self.stores.iter().map(|store| store.changelog_topic.clone()).collect()
    }

    /// User topics the topology writes to (repartition and changelog topics excluded).
    pub fn sink_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|node| match &node.role {
                CompiledRole::Sink { topic, repartition: false } => Some(topic.clone()),
                _ => None,
            })
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    pub fn subtopology_of(&self, source_topic: &str) -> Option<usize> {
        self.subtopologies.iter().position(|sub| sub.sources.contains_key(source_topic))
    }

    /// The topics a sub-topology reads: co-partitioned, so task `p` reads partition `p` of each.
    pub fn source_topics_of(&self, subtopology: usize) -> Vec<String> {
        self.subtopologies.get(subtopology).map(|sub| sub.sources.keys().cloned().collect()).unwrap_or_default()
    }

    pub fn subtopology_count(&self) -> usize {
        self.subtopologies.len()
    }

    /// Changelog topics of the stores of one sub-topology.
    pub fn changelogs_of(&self, subtopology: usize) -> Vec<String> {
        self.subtopologies.get(subtopology).map(|sub| sub.changelogs.keys().cloned().collect()).unwrap_or_default()
    }

    /// A fresh task with empty stores, using the system clock. Restore its stores with
    /// [`Task::restore`] before processing. An unknown sub-topology gives a task with no sources,
    /// which rejects every record.
    /// A task with the stores its topology declares (in memory unless declared otherwise).
    pub fn create_task(&self, id: TaskId) -> Result<Task, StoreError> {
        self.create_task_with(id, &|_| None)
    }

    /// A task whose stores come from `supplier_for(store name)` where it names one (the
    /// runtime's choice of persistent stores), else from the topology's declaration.
    pub fn create_task_with(
        &self,
        id: TaskId,
        supplier_for: &dyn Fn(&str) -> Option<Arc<dyn StoreSupplier>>,
    ) -> Result<Task, StoreError> {
        let subtopology = self.subtopologies.get(id.subtopology).cloned().unwrap_or_default();
        let setup = NodeSetup { application_id: &self.application_id };
        let mut nodes: Vec<Option<Box<dyn Node>>> = self.nodes.iter().map(|_| None).collect();
        for &node in &subtopology.nodes {
            if let (Some(slot), Some(factory)) = (nodes.get_mut(node), self.factories.get(node)) {
                *slot = Some(factory(&setup));
            }
        }
        let mut stores: Vec<Option<StoreSlot>> = self.stores.iter().map(|_| None).collect();
        for &store in &subtopology.stores {
            if let (Some(slot), Some(def)) = (stores.get_mut(store), self.stores.get(store)) {
                let supplier = supplier_for(&def.name).unwrap_or_else(|| Arc::clone(&def.supplier));
                *slot = Some(StoreSlot {
                    name: def.name.clone(),
                    changelog_topic: def.changelog_topic.clone(),
                    kind: def.kind,
                    store: supplier.build(&def.name, id)?,
                    serdes: Arc::clone(&def.serdes),
                });
            }
        }
        let state = TaskState::new(id, Arc::clone(&self.application_id), stores, Arc::new(SystemClock));
        Ok(Task::new(subtopology, nodes, Arc::clone(&self.factories), Arc::clone(&self.meta), state))
    }

    /// A human-readable description, in the format of Kafka Streams' `TopologyDescription`.
    pub fn describe(&self) -> String {
        describe::describe(self)
    }
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}
