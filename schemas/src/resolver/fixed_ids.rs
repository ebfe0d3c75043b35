//! Schema ids without a registry, for tests and offline tools.

use std::sync::Arc;

use apache_avro::Schema;

use super::{Answer, SchemaResolver};
use crate::avro_schemas::schema_of;
use crate::codec::CodecError;
use crate::event_type::EventType;

/// The event types get schema ids 1, 2, …, in the order of [`EventType::ALL`], on every topic.
/// These ids mean nothing to a registry, and bytes written with any other id cannot be read.
#[derive(Debug)]
pub struct FixedIdsResolver {
    /// The current schema of `EventType::ALL[id - 1]`.
    writers: Vec<Arc<Schema>>,
}

impl Default for FixedIdsResolver {
    fn default() -> Self {
        FixedIdsResolver {
            writers: EventType::ALL.iter().map(|&event_type| Arc::new(schema_of(event_type).clone())).collect(),
        }
    }
}

impl SchemaResolver for FixedIdsResolver {
    fn schema_id<'a>(&'a self, _topic: &'a str, event_type: EventType) -> Answer<'a, u32> {
        let position = EventType::ALL.iter().position(|&known| known == event_type);
        Answer::Known(
            position.and_then(|index| u32::try_from(index + 1).ok()).ok_or(CodecError::NoFixedId { event_type }),
        )
    }

    fn writer_schema(&self, id: u32) -> Answer<'_, Arc<Schema>> {
        let writer =
            usize::try_from(id).ok().and_then(|id| id.checked_sub(1)).and_then(|index| self.writers.get(index));
        Answer::Known(writer.cloned().ok_or(CodecError::UnknownWriterSchema { id }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_from_one_in_the_order_of_all_event_types() {
        let resolver = FixedIdsResolver::default();
        for (id, event_type) in (1..).zip(EventType::ALL) {
            let Answer::Known(Ok(found)) = resolver.schema_id("any.topic", event_type) else { panic!("{event_type}") };
            assert_eq!(found, id, "{event_type}");
            let Answer::Known(Ok(writer)) = resolver.writer_schema(id) else { panic!("writer {id}") };
            assert_eq!(&*writer, schema_of(event_type), "{event_type}");
        }
        for unknown in [0, EventType::ALL.len() as u32 + 1, u32::MAX] {
            let Answer::Known(Err(error)) = resolver.writer_schema(unknown) else { panic!("{unknown} is unknown") };
            assert!(!error.is_transient(), "{error}");
        }
    }
}
