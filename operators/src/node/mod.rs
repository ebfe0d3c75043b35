//! Nodes: the per-task instances of a topology's sources, processors and sinks, and the context
//! through which they forward records to their children.
//!
//! Records travel between nodes type-erased (`Box<dyn Any>`); the DSL only connects nodes whose
//! types match, so a failed downcast is an internal error, reported rather than panicking.

pub(crate) mod aggregate;
pub(crate) mod join;
pub(crate) mod session_aggregate;
pub(crate) mod sink;
pub(crate) mod source;
pub(crate) mod stateless;
pub(crate) mod table_source;
pub(crate) mod user_processor;
pub(crate) mod window_aggregate;

use std::any::Any;
use std::sync::Arc;

use crate::error::ProcessError;
use crate::graph::{NodeId, StoreId};
use crate::punctuation::PunctuationId;
use crate::record::{Data, Record};
use crate::task_state::TaskState;

pub(crate) type AnyRecord = Box<dyn Any + Send>;

/// A user predicate over a record's key and value.
pub(crate) type Predicate<K, V> = Arc<dyn Fn(&K, &V) -> bool + Send + Sync>;

pub(crate) trait Node: Send {
    /// Called once, after the task's stores are restored and before the first record.
    fn init(&mut self, _ctx: &mut NodeContext<'_>) -> Result<(), ProcessError> {
        Ok(())
    }

    fn process(&mut self, ctx: &mut NodeContext<'_>, record: AnyRecord) -> Result<(), ProcessError>;

    fn punctuate(
        &mut self,
        _ctx: &mut NodeContext<'_>,
        _id: PunctuationId,
        _timestamp_ms: i64,
    ) -> Result<(), ProcessError> {
        Ok(())
    }

    fn on_timer(
        &mut self,
        _ctx: &mut NodeContext<'_>,
        _timer_key: &[u8],
        _fire_at_ms: i64,
    ) -> Result<(), ProcessError> {
        Ok(())
    }

    fn before_commit(&mut self, _ctx: &mut NodeContext<'_>) -> Result<(), ProcessError> {
        Ok(())
    }
}

/// Static facts about a node, shared by all tasks.
#[derive(Debug)]
pub(crate) struct NodeMeta {
    pub(crate) name: String,
    pub(crate) children: Vec<NodeId>,
    pub(crate) stores: Vec<StoreId>,
    pub(crate) timer_store: Option<StoreId>,
}

pub(crate) type NodeSlots = [Option<Box<dyn Node>>];

/// A node's view of its task while it runs.
pub(crate) struct NodeContext<'a> {
    nodes: &'a mut NodeSlots,
    meta: &'a [NodeMeta],
    pub(crate) state: &'a mut TaskState,
    node: NodeId,
}

impl<'a> NodeContext<'a> {
    pub(crate) fn meta(&self) -> Option<&'a NodeMeta> {
        self.meta.get(self.node)
    }

    pub(crate) fn node_name(&self) -> &'a str {
        self.meta().map_or("?", |meta| meta.name.as_str())
    }

    pub(crate) fn node_id(&self) -> NodeId {
        self.node
    }

    /// The same context with a shorter lifetime, for wrapping in a typed context.
    pub(crate) fn reborrow(&mut self) -> NodeContext<'_> {
        NodeContext { nodes: &mut *self.nodes, meta: self.meta, state: &mut *self.state, node: self.node }
    }

    fn children(&self) -> &'a [NodeId] {
        self.meta().map_or(&[], |meta| meta.children.as_slice())
    }

    /// Sends the record to every child, depth first, cloning for all but the last.
    pub(crate) fn forward<K: Data, V: Data>(&mut self, record: Record<K, V>) -> Result<(), ProcessError> {
        let Some((last, others)) = self.children().split_last() else {
            return Ok(());
        };
        for &child in others {
            deliver(self.nodes, self.meta, self.state, child, Box::new(record.clone()))?;
        }
        deliver(self.nodes, self.meta, self.state, *last, Box::new(record))
    }

    /// Sends the record to the child at `index` in creation order.
    pub(crate) fn forward_to_child<K: Data, V: Data>(
        &mut self,
        index: usize,
        record: Record<K, V>,
    ) -> Result<(), ProcessError> {
        let child = *self
            .children()
            .get(index)
            .ok_or_else(|| ProcessError::processing(format!("node {} has no child #{index}", self.node_name())))?;
        deliver(self.nodes, self.meta, self.state, child, Box::new(record))
    }

    pub(crate) fn forward_to_named<K: Data, V: Data>(
        &mut self,
        child_name: &str,
        record: Record<K, V>,
    ) -> Result<(), ProcessError> {
        let index = self
            .children()
            .iter()
            .position(|&child| self.meta.get(child).is_some_and(|meta| meta.name == child_name))
            .ok_or_else(|| {
                ProcessError::processing(format!("node {} has no child named '{child_name}'", self.node_name()))
            })?;
        self.forward_to_child(index, record)
    }
}

/// Runs `call` on one node. The node is taken out of its slot while it runs, so it can forward
/// to other nodes through the context.
pub(crate) fn invoke(
    nodes: &mut NodeSlots,
    meta: &[NodeMeta],
    state: &mut TaskState,
    node: NodeId,
    call: impl FnOnce(&mut dyn Node, &mut NodeContext<'_>) -> Result<(), ProcessError>,
) -> Result<(), ProcessError> {
    let mut instance = nodes
        .get_mut(node)
        .and_then(Option::take)
        .ok_or_else(|| ProcessError::processing(format!("node #{node} is not available in this task")))?;
    let result = call(instance.as_mut(), &mut NodeContext { nodes: &mut *nodes, meta, state, node });
    if let Some(slot) = nodes.get_mut(node) {
        *slot = Some(instance);
    }
    // The innermost node names the failure: the processor a dead letter blames.
    result.map_err(|error| match meta.get(node) {
        Some(meta) => error.with_processor(&meta.name),
        None => error,
    })
}

pub(crate) fn deliver(
    nodes: &mut NodeSlots,
    meta: &[NodeMeta],
    state: &mut TaskState,
    node: NodeId,
    record: AnyRecord,
) -> Result<(), ProcessError> {
    invoke(nodes, meta, state, node, |instance, ctx| instance.process(ctx, record))
}

/// Types a record that arrived at `ctx`'s node.
pub(crate) fn downcast<T: 'static>(ctx: &NodeContext<'_>, record: AnyRecord) -> Result<T, ProcessError> {
    record.downcast::<T>().map(|record| *record).map_err(|_| {
        ProcessError::processing(format!(
            "node {} received a record that is not a {}",
            ctx.node_name(),
            std::any::type_name::<T>()
        ))
    })
}
