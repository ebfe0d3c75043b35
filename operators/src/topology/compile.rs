//! Compiles the DSL's graph into a [`Topology`]: resolves names, checks the graph and splits it
//! into sub-topologies.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::{CompiledNode, CompiledRole, CompiledStore, Subtopology, Topology, TopologyError};
use crate::graph::{GraphBuilder, NodeRole, StoreId};
use crate::node::NodeMeta;

/// Kafka's legal topic name characters; internal topic names start with the application id.
fn check_application_id(application_id: &str, problems: &mut Vec<String>) {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if application_id.is_empty() || !application_id.chars().all(legal) {
        problems.push(format!("application id '{application_id}' must be non-empty and use only [a-zA-Z0-9._-]"));
    }
}

/// Disjoint sets of nodes, to find which nodes must share a task.
struct Components {
    parent: Vec<usize>,
}

impl Components {
    fn new(size: usize) -> Self {
        Components { parent: (0..size).collect() }
    }

    fn root(&mut self, mut node: usize) -> usize {
        while let Some(&up) = self.parent.get(node) {
            if up == node {
                break;
            }
            let grand = self.parent.get(up).copied().unwrap_or(up);
            self.parent[node] = grand;
            node = up;
        }
        node
    }

    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.root(a), self.root(b));
        if let Some(slot) = self.parent.get_mut(a.max(b)) {
            *slot = a.min(b);
        }
    }
}

pub(crate) fn compile(graph: GraphBuilder, application_id: &str) -> Result<Topology, TopologyError> {
    let GraphBuilder { nodes, stores, errors, .. } = graph;
    let mut problems = errors;
    check_application_id(application_id, &mut problems);

    let mut names = HashSet::new();
    for node in &nodes {
        if !names.insert(node.name.as_str()) {
            problems.push(format!("more than one node is named '{}'", node.name));
        }
    }

    let store_ids: HashMap<&str, StoreId> =
        stores.iter().enumerate().map(|(id, store)| (store.name.as_str(), id)).collect();
    let mut node_stores: Vec<Vec<StoreId>> = Vec::with_capacity(nodes.len());
    for node in &nodes {
        let mut connected = node.stores.clone();
        for name in &node.store_names {
            match store_ids.get(name.as_str()) {
                Some(&id) => connected.push(id),
                None => problems.push(format!("{} refers to unknown store '{name}'", node.name)),
            }
        }
        node_stores.push(connected);
    }

    // Nodes connected by records or by a store must run in the same task.
    let mut components = Components::new(nodes.len());
    let mut children = vec![Vec::new(); nodes.len()];
    let mut store_users: Vec<Vec<usize>> = vec![Vec::new(); stores.len()];
    for (id, node) in nodes.iter().enumerate() {
        for &parent in &node.parents {
            components.join(id, parent);
            if let Some(siblings) = children.get_mut(parent) {
                siblings.push(id);
            }
        }
        for &store in node_stores[id].iter().chain(&node.timer_store) {
            if let Some(users) = store_users.get_mut(store) {
                users.push(id);
            }
        }
    }
    for (store, users) in store_users.iter().enumerate() {
        match users.split_first() {
            Some((&first, rest)) => rest.iter().for_each(|&user| components.join(first, user)),
            None => problems.push(format!("store '{}' is not connected to any processor", stores[store].name)),
        }
    }

    let mut subtopology_of_root: BTreeMap<usize, usize> = BTreeMap::new();
    let mut subtopologies: Vec<Subtopology> = Vec::new();
    let mut subtopology_of_node = Vec::with_capacity(nodes.len());
    for id in 0..nodes.len() {
        let root = components.root(id);
        let next = subtopology_of_root.len();
        let index = *subtopology_of_root.entry(root).or_insert(next);
        if index == subtopologies.len() {
            subtopologies.push(Subtopology::default());
        }
        subtopologies[index].nodes.push(id);
        subtopology_of_node.push(index);
    }

    let compiled_stores: Vec<CompiledStore> = stores
        .into_iter()
        .enumerate()
        .map(|(id, store)| {
            let changelog_topic = format!("{application_id}-{}-changelog", store.name);
            if let Some(&user) = store_users[id].first() {
                let sub = &mut subtopologies[subtopology_of_node[user]];
                sub.stores.push(id);
                sub.changelogs.insert(changelog_topic.clone(), id);
            }
            CompiledStore {
                name: store.name,
                changelog_topic,
                kind: store.kind,
                serdes: store.serdes,
                supplier: store.supplier,
            }
        })
        .collect();

    let mut meta = Vec::with_capacity(nodes.len());
    let mut compiled_nodes = Vec::with_capacity(nodes.len());
    let mut factories = Vec::with_capacity(nodes.len());
    let mut topic_readers: HashMap<String, usize> = HashMap::new();
    for (id, node) in nodes.into_iter().enumerate() {
        let sub = &mut subtopologies[subtopology_of_node[id]];
        let role = match &node.role {
            NodeRole::Source(topic) => {
                let repartition = topic.is_internal();
                let topic = topic.resolve(application_id);
                *topic_readers.entry(topic.clone()).or_default() += 1;
                sub.sources.insert(topic.clone(), id);
                CompiledRole::Source { topic, repartition }
            }
            NodeRole::Processor => CompiledRole::Processor,
            NodeRole::Sink(topic) => {
                CompiledRole::Sink { topic: topic.resolve(application_id), repartition: topic.is_internal() }
            }
        };
        if let Some(store) = node.timer_store {
            sub.timers.push((id, store));
        }
        meta.push(NodeMeta {
            name: node.name.clone(),
            children: std::mem::take(&mut children[id]),
            stores: std::mem::take(&mut node_stores[id]),
            timer_store: node.timer_store,
        });
        compiled_nodes.push(CompiledNode { name: node.name, role, parents: node.parents });
        factories.push(node.factory);
    }
    let mut duplicated: Vec<_> =
        topic_readers.into_iter().filter(|(_, readers)| *readers > 1).map(|(topic, _)| topic).collect();
    duplicated.sort();
    for topic in duplicated {
        problems.push(format!("topic '{topic}' is read by more than one source"));
    }

    if !problems.is_empty() {
        return Err(TopologyError { problems });
    }
    Ok(Topology {
        application_id: application_id.into(),
        nodes: compiled_nodes,
        factories: factories.into(),
        meta: meta.into(),
        stores: compiled_stores,
        subtopologies: subtopologies.into_iter().map(Arc::new).collect(),
    })
}
