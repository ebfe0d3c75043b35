//! Turns records read from Kafka into typed records.

use std::sync::Arc;

use super::{downcast, AnyRecord, Node, NodeContext};
use crate::error::ProcessError;
use crate::record::{Data, RawRecord, Record};
use crate::serdes::{deserialize_optional, Serde};

pub(crate) struct SourceNode<K, V> {
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
}

/// Deserializes a key or value of a raw record, naming which one failed.
pub(crate) fn deserialize_part<T>(
    serde: &dyn Serde<T>,
    raw: &RawRecord,
    part: &str,
    bytes: Option<&[u8]>,
) -> Result<T, ProcessError> {
    deserialize_optional(serde, &raw.topic, bytes).map_err(|e| {
        // A registry that is down fails a lookup for now, not for good.
        let transient = e.is_transient();
        ProcessError::deserialization(format!("cannot deserialize the {part} of a record from '{}'", raw.topic))
            .with_cause(e)
            .with_retriable(transient)
    })
}

impl<K: Data, V: Data> Node for SourceNode<K, V> {
    fn process(&mut self, ctx: &mut NodeContext<'_>, record: AnyRecord) -> Result<(), ProcessError> {
        let raw: RawRecord = downcast(ctx, record)?;
        let key = deserialize_part(self.key_serde.as_ref(), &raw, "key", raw.key.as_deref())?;
        let value = deserialize_part(self.value_serde.as_ref(), &raw, "value", raw.value.as_deref())?;
        ctx.forward(Record { key, value, timestamp_ms: raw.timestamp_ms, headers: raw.headers })
    }
}
