//! Saga events to Confluent-framed Avro and back, with writer schemas kept in the registry.

use crate::avro_body::{decode_avro_body_written_with, encode_avro_body, AvroBodyError};
use crate::avro_schemas::schema_text_of;
use crate::event_type::EventType;
use crate::events::SagaEvent;
use crate::registry::{RegistryClient, RegistryError};
use crate::wire::{parse_wire, to_wire, WireError};

/// The registry subject of an event type on a topic (TopicRecordNameStrategy):
/// `<topic>-saga.events.<EventType>`, so one topic can carry several record types.
pub fn subject_for(topic: &str, event_type: EventType) -> String {
    format!("{topic}-{}", event_type.full_name())
}

/// A failure to frame or unframe a saga event.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Body(#[from] AvroBodyError),
    #[error("schema {schema_id} in the registry is {name:?}, not a saga event record")]
    NotASagaEvent { schema_id: u32, name: String },
    #[error("the current schema of {event_type} is not registered under subject {subject:?}: run `pipeline schemas register`")]
    NotRegistered { event_type: EventType, subject: String },
}

/// Encodes saga events to wire bytes with the id of their current schema, which it looks up (never
/// registers: `pipeline schemas register` does, under the subject's compatibility level), and
/// decodes wire bytes with the writer schema the id names, resolved against this crate's.
#[derive(Debug)]
pub struct SagaCodec {
    registry: RegistryClient,
}

impl SagaCodec {
    pub fn new(registry: RegistryClient) -> Self {
        SagaCodec { registry }
    }

    pub fn registry(&self) -> &RegistryClient {
        &self.registry
    }

    /// Wire bytes of `event` for `topic` (normally `event.topic()`; tests use their own topics).
    pub async fn encode(&self, topic: &str, event: &SagaEvent) -> Result<Vec<u8>, CodecError> {
        let event_type = event.event_type();
        // Encode first: an event that cannot be encoded must not register anything.
        let body = encode_avro_body(event)?;
        let subject = subject_for(topic, event_type);
        let schema_id = (self.registry.lookup(&subject, schema_text_of(event_type)).await?)
            .ok_or(CodecError::NotRegistered { event_type, subject })?;
        Ok(to_wire(schema_id, &body))
    }

    /// The event in wire bytes; the writer schema's record name says which event type it is.
    pub async fn decode(&self, bytes: &[u8]) -> Result<SagaEvent, CodecError> {
        let (schema_id, body) = parse_wire(bytes)?;
        let writer_schema = self.registry.schema_by_id(schema_id).await?;
        let name = writer_schema.name().map(|name| name.fullname(None)).unwrap_or_default();
        let Some(event_type) = EventType::from_full_name(&name) else {
            return Err(CodecError::NotASagaEvent { schema_id, name });
        };
        Ok(decode_avro_body_written_with(&writer_schema, event_type, body)?)
    }
}
