//! Saga events to Confluent-framed Avro and back, with schema ids and writer schemas from a
//! [`SchemaResolver`].

use std::sync::Arc;

use apache_avro::Schema;

use crate::avro_body::{decode_avro_body_written_with, encode_avro_body, AvroBodyError};
use crate::event_type::EventType;
use crate::events::SagaEvent;
use crate::registry::RegistryError;
use crate::resolver::{FixedIdsResolver, SchemaResolver};
use crate::wire::{parse_wire, to_wire, WireError};

/// The registry subject of an event type on a topic (TopicRecordNameStrategy):
/// `<topic>-saga.events.<EventType>`, so one topic can carry several record types.
pub fn subject_for(topic: &str, event_type: EventType) -> String {
    format!("{topic}-{}", event_type.full_name())
}

/// A failure to frame or unframe a saga event. The messages are what dead letters carry in
/// `dlq.error.message` (docs/retries.md, "Poison records").
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Looking up the id to encode with failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("writer schema {id}: {source}")]
    WriterSchema {
        id: u32,
        #[source]
        source: RegistryError,
    },
    #[error("writer schema {id}: not one of the fixed ids, and a codec without a registry has no one to ask")]
    UnknownWriterSchema { id: u32 },
    #[error("{event_type} has no fixed schema id")]
    NoFixedId { event_type: EventType },
    #[error(transparent)]
    Body(#[from] AvroBodyError),
    #[error("schema {schema_id} ({name}) is not a saga event")]
    NotASagaEvent { schema_id: u32, name: String },
    #[error("the current schema of {event_type} is not registered under subject {subject:?}: run `pipeline schemas register`")]
    NotRegistered { event_type: EventType, subject: String },
    /// The saga topics are event logs, not tables: nothing of ours writes a null value (the
    /// outbox router drops tombstones, and the connector has `tombstones.on.delete` off), and a
    /// null deletes nothing a reader keeps. So a null is a record someone else wrote that no
    /// reader can act on: poison, dead-lettered like any undecodable record, never skipped unseen.
    #[error("a null value (a tombstone) on '{topic}' is not a saga event")]
    NullValue { topic: String },
    #[error("{detail}")]
    CannotWait { detail: String },
}

impl CodecError {
    /// Whether asking again later can succeed: the registry was unreachable or failing, not
    /// missing what was asked for, and not the bytes.
    pub fn is_transient(&self) -> bool {
        match self {
            CodecError::Registry(error) | CodecError::WriterSchema { source: error, .. } => error.is_transient(),
            CodecError::CannotWait { .. } => true,
            _ => false,
        }
    }
}

/// Encodes saga events to wire bytes with the id of their current schema, and decodes wire bytes
/// with the writer schema the id names, resolved against this crate's, so events written with an
/// older or newer compatible schema still read. Cheap to clone: clones share the resolver and its
/// cache. Async callers use [`SagaCodec::encode`] and [`SagaCodec::decode`]; a thread that is not
/// an async task (the stream thread) uses the `_blocking` pair.
#[derive(Clone, Debug)]
pub struct SagaCodec {
    resolver: Arc<dyn SchemaResolver>,
}

impl SagaCodec {
    pub fn new(resolver: impl SchemaResolver + 'static) -> Self {
        SagaCodec { resolver: Arc::new(resolver) }
    }

    /// A codec that talks to no registry ([`FixedIdsResolver`]): for tests and offline tools.
    pub fn with_fixed_ids() -> Self {
        SagaCodec::new(FixedIdsResolver::default())
    }

    /// Wire bytes of `event` for `topic` (normally `event.topic()`; tests use their own topics).
    pub async fn encode(&self, topic: &str, event: &SagaEvent) -> Result<Vec<u8>, CodecError> {
        // Encode first: an event that cannot be encoded needs no registry call.
        let body = encode_avro_body(event)?;
        let schema_id = self.resolver.schema_id(topic, event.event_type()).resolve().await?;
        Ok(to_wire(schema_id, &body))
    }

    /// [`SagaCodec::encode`], blocking on a cache miss.
    pub fn encode_blocking(&self, topic: &str, event: &SagaEvent) -> Result<Vec<u8>, CodecError> {
        let body = encode_avro_body(event)?;
        let schema_id = self.resolver.schema_id(topic, event.event_type()).wait()?;
        Ok(to_wire(schema_id, &body))
    }

    /// The event in wire bytes; the writer schema's record name says which event type it is.
    pub async fn decode(&self, bytes: &[u8]) -> Result<SagaEvent, CodecError> {
        let (schema_id, body) = parse_wire(bytes)?;
        let writer_schema = self.resolver.writer_schema(schema_id).resolve().await?;
        decode_written_with(schema_id, &writer_schema, body)
    }

    /// [`SagaCodec::decode`], blocking on a cache miss.
    pub fn decode_blocking(&self, bytes: &[u8]) -> Result<SagaEvent, CodecError> {
        let (schema_id, body) = parse_wire(bytes)?;
        let writer_schema = self.resolver.writer_schema(schema_id).wait()?;
        decode_written_with(schema_id, &writer_schema, body)
    }

    /// A record's value, which may be null (poison: [`CodecError::NullValue`]).
    pub async fn decode_value(&self, topic: &str, value: Option<&[u8]>) -> Result<SagaEvent, CodecError> {
        match value {
            Some(bytes) => self.decode(bytes).await,
            None => Err(CodecError::NullValue { topic: topic.to_string() }),
        }
    }
}

fn decode_written_with(schema_id: u32, writer_schema: &Schema, body: &[u8]) -> Result<SagaEvent, CodecError> {
    let name = writer_schema.name().map(|name| name.fullname(None)).unwrap_or_default();
    let Some(event_type) = EventType::from_full_name(&name) else {
        return Err(CodecError::NotASagaEvent { schema_id, name });
    };
    Ok(decode_avro_body_written_with(writer_schema, event_type, body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::sample;

    #[tokio::test]
    async fn every_event_round_trips_with_fixed_ids_async_and_blocking_alike() {
        let codec = SagaCodec::with_fixed_ids();
        for (id, event_type) in (1..).zip(EventType::ALL) {
            let event = sample(event_type);
            let bytes = codec.encode("any.topic", &event).await.unwrap();
            assert_eq!(bytes, to_wire(id, &encode_avro_body(&event).unwrap()), "{event_type}: the wire bytes");
            assert_eq!(codec.encode_blocking("any.topic", &event).unwrap(), bytes, "{event_type}");
            assert_eq!(codec.decode(&bytes).await.unwrap(), event, "{event_type}");
            assert_eq!(codec.decode_blocking(&bytes).unwrap(), event, "{event_type}");
        }
    }

    #[tokio::test]
    async fn a_null_value_is_poison_and_says_so() {
        let error = SagaCodec::with_fixed_ids().decode_value("order.events", None).await.expect_err("no event");
        assert!(matches!(error, CodecError::NullValue { .. }), "{error}");
        assert!(!error.is_transient(), "{error}");
        assert_eq!(error.to_string(), "a null value (a tombstone) on 'order.events' is not a saga event");
    }

    #[test]
    fn bytes_that_are_not_ours_are_poison_not_transient() {
        let codec = SagaCodec::with_fixed_ids();
        let body = encode_avro_body(&sample(EventType::OrderPlaced)).unwrap();
        for bytes in [b"not avro at all".to_vec(), Vec::new(), to_wire(999, &body), to_wire(1, &body[..3])] {
            let error = codec.decode_blocking(&bytes).expect_err("poison");
            assert!(!error.is_transient(), "{error}");
        }
        let unknown = codec.decode_blocking(&to_wire(999, &body)).unwrap_err().to_string();
        assert!(unknown.starts_with("writer schema 999: "), "{unknown}");
    }

    #[test]
    fn a_registry_that_fails_is_transient_and_an_unknown_schema_is_not() {
        let flaky = RegistryError::BadResponse { request: "GET /schemas/ids/7".into(), detail: "truncated".into() };
        let failing = CodecError::WriterSchema { id: 7, source: flaky };
        assert!(failing.is_transient(), "{failing}");
        assert_eq!(
            failing.to_string(),
            "writer schema 7: schema registry sent an unreadable answer to GET /schemas/ids/7: truncated"
        );
        let unknown = CodecError::WriterSchema { id: 7, source: RegistryError::SchemaNotFound { id: 7 } };
        assert!(!unknown.is_transient(), "{unknown}");
        let encoding = CodecError::Registry(RegistryError::SchemaNotFound { id: 7 });
        assert!(!encoding.is_transient(), "{encoding}");
    }
}
