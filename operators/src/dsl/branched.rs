//! `split()`: routing a stream into named branches, like Kafka Streams' `BranchedKStream`.

use std::collections::HashMap;
use std::sync::Arc;

use super::{stateless, stateless_factory, KStream};
use crate::graph::{NodeDef, NodeRole};
use crate::node::Predicate;
use crate::record::{Data, Record};

/// Branches being defined on a stream. Each record goes to the first branch whose predicate
/// holds, else to the default branch if there is one, else nowhere.
pub struct BranchedKStream<K, V> {
    stream: KStream<K, V>,
    branches: Vec<(String, Predicate<K, V>)>,
}

impl<K: Data, V: Data> BranchedKStream<K, V> {
    pub(crate) fn new(stream: KStream<K, V>) -> Self {
        BranchedKStream { stream, branches: Vec::new() }
    }

    pub fn branch(mut self, name: &str, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.branches.push((name.to_owned(), Arc::new(predicate)));
        self
    }

    /// Ends the split with a branch for records no predicate matched; returns every branch by
    /// name.
    pub fn default_branch(self, name: &str) -> HashMap<String, KStream<K, V>> {
        self.finish(Some(name.to_owned()))
    }

    /// Ends the split, dropping records no predicate matched; returns every branch by name.
    pub fn no_default_branch(self) -> HashMap<String, KStream<K, V>> {
        self.finish(None)
    }

    fn finish(self, default: Option<String>) -> HashMap<String, KStream<K, V>> {
        let predicates: Vec<Predicate<K, V>> =
            self.branches.iter().map(|(_, predicate)| Arc::clone(predicate)).collect();
        let default_index = default.as_ref().map(|_| predicates.len());
        // Branch i is child i of the split node: children are kept in creation order.
        let split_op = stateless(move |record: Record<K, V>, ctx| {
            let matched =
                predicates.iter().position(|predicate| predicate(&record.key, &record.value)).or(default_index);
            match matched {
                Some(index) => ctx.forward_to_child(index, record),
                None => Ok(()),
            }
        });
        let split = {
            let mut graph = self.stream.graph.borrow_mut();
            let name = graph.next_name("KSTREAM-BRANCH");
            graph.add_node(NodeDef::new(name, NodeRole::Processor, vec![self.stream.node], stateless_factory(split_op)))
        };
        let split_name = self.stream.graph.borrow().nodes.get(split).map(|node| node.name.clone()).unwrap_or_default();

        let mut branches = HashMap::new();
        let names = self.branches.into_iter().map(|(name, _)| name).chain(default);
        for name in names {
            let pass_through = stateless_factory(stateless(|record: Record<K, V>, ctx| ctx.forward(record)));
            let mut graph = self.stream.graph.borrow_mut();
            let node = graph.add_node(NodeDef::new(
                format!("{split_name}-{name}"),
                NodeRole::Processor,
                vec![split],
                pass_through,
            ));
            let branch = KStream { node, ..self.stream.clone() };
            if branches.insert(name.clone(), branch).is_some() {
                graph.error(format!("{split_name}: branch '{name}' is defined twice"));
            }
        }
        branches
    }
}
