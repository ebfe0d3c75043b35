//! One node type for every stateless operator: the operator is a function of the record that
//! forwards zero or more records through the context.

use std::sync::Arc;

use super::{downcast, AnyRecord, Node, NodeContext};
use crate::error::ProcessError;
use crate::record::{Data, Record};

pub(crate) type StatelessFn<K, V> =
    Arc<dyn Fn(Record<K, V>, &mut NodeContext<'_>) -> Result<(), ProcessError> + Send + Sync>;

pub(crate) struct StatelessNode<K, V> {
    pub(crate) op: StatelessFn<K, V>,
}

impl<K: Data, V: Data> Node for StatelessNode<K, V> {
    fn process(&mut self, ctx: &mut NodeContext<'_>, record: AnyRecord) -> Result<(), ProcessError> {
        let record: Record<K, V> = downcast(ctx, record)?;
        (self.op)(record, ctx)
    }
}
