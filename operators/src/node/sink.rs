//! Serializes typed records into records to produce.

use std::sync::Arc;

use super::{downcast, AnyRecord, Node, NodeContext};
use crate::error::ProcessError;
use crate::record::{Data, OutputRecord, Record};
use crate::serdes::Serde;

/// Writes to a user topic or a repartition topic; either way the producer picks the partition
/// by hashing the key.
pub(crate) struct SinkNode<K, V> {
    pub(crate) topic: String,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
}

impl<K: Data, V: Data> Node for SinkNode<K, V> {
    fn process(&mut self, ctx: &mut NodeContext<'_>, record: AnyRecord) -> Result<(), ProcessError> {
        let record: Record<K, V> = downcast(ctx, record)?;
        let topic = &self.topic;
        let key = self.key_serde.serialize_nullable(topic, &record.key).map_err(|e| {
            ProcessError::serialization(format!("cannot serialize the key of a record for '{topic}'")).with_cause(e)
        })?;
        let value = self.value_serde.serialize_nullable(topic, &record.value).map_err(|e| {
            ProcessError::serialization(format!("cannot serialize the value of a record for '{topic}'")).with_cause(e)
        })?;
        ctx.state.output.push(OutputRecord {
            topic: topic.clone(),
            partition: None,
            timestamp_ms: record.timestamp_ms,
            key,
            value,
            headers: record.headers,
        });
        Ok(())
    }
}
