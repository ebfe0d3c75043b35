//! Saga events as an operators [`Serde`]: Confluent-framed Avro with schema ids from the
//! registry. The stream thread is synchronous, so every schema our events are written with is
//! registered before the topologies start ([`EventSerde::prepare`]); a writer schema we have not
//! seen (another service's version) is fetched once, off any async executor.
//! [`EventSerde::with_fixed_ids`] needs no registry at all, for tests and offline tools.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apache_avro::Schema;
use operators::serdes::{Serde, SerdeError};
use schemas::{
    decode_avro_body_written_with, encode_avro_body, parse_wire, schema_of, to_wire, EventType, RegistryClient,
    RegistryError, SagaEvent, StartupSchemaError,
};

#[derive(Clone)]
pub struct EventSerde {
    /// `None` for [`EventSerde::with_fixed_ids`]: only our own writer schemas are known.
    registry: Option<Arc<RegistryClient>>,
    /// Schema id of each event type on its topic, registered up front.
    ids: Arc<HashMap<EventType, u32>>,
    /// Writer schemas by id: ours, plus any fetched from the registry.
    writers: Arc<RwLock<HashMap<u32, Arc<Schema>>>>,
}

impl EventSerde {
    /// Looks up the id of every saga event's current schema under its topic's subject, never
    /// registering one (`pipeline schemas register` does): a missing schema stops start-up here
    /// with an error that says what to run, rather than failing the first record later.
    pub async fn prepare(registry: RegistryClient) -> Result<Self, StartupSchemaError> {
        let ids = schemas::current_schema_ids(&registry).await?;
        let writers = ids.iter().map(|(&event_type, &id)| (id, Arc::new(schema_of(event_type).clone()))).collect();
        Ok(Self { registry: Some(Arc::new(registry)), ids: Arc::new(ids), writers: Arc::new(RwLock::new(writers)) })
    }

    /// A serde that talks to no registry: the event types get schema ids 1, 2, …, in the order of
    /// [`EventType::ALL`]. For tests and offline tools only: these ids mean nothing to a
    /// registry, and bytes written with any other id cannot be read.
    pub fn with_fixed_ids() -> Self {
        let mut ids = HashMap::new();
        let mut writers = HashMap::new();
        for (id, event_type) in (1..).zip(EventType::ALL) {
            ids.insert(event_type, id);
            writers.insert(id, Arc::new(schema_of(event_type).clone()));
        }
        Self { registry: None, ids: Arc::new(ids), writers: Arc::new(RwLock::new(writers)) }
    }

    fn writer_schema(&self, id: u32) -> Result<Arc<Schema>, SerdeError> {
        if let Some(schema) = self.writers.read().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Ok(schema.clone());
        }
        let registry = self.registry.clone().ok_or_else(|| {
            SerdeError::new(format!("unknown writer schema {id}, and this serde has no registry to ask"))
        })?;
        // A scoped thread with its own runtime: callers may be inside an async runtime or not.
        let fetched = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
                        SerdeError::transient(format!("writer schema {id}: no runtime to ask the registry: {e}"))
                    })?;
                    runtime.block_on(registry.schema_by_id(id)).map_err(|e| lookup_failed(id, &e))
                })
                .join()
                .map_err(|_| {
                    SerdeError::transient(format!("writer schema {id}: the registry lookup thread panicked"))
                })?
        })?;
        self.writers.write().unwrap_or_else(|e| e.into_inner()).insert(id, fetched.clone());
        Ok(fetched)
    }
}

/// An id the registry does not have, or a schema it holds that we cannot use, will not change
/// by asking again; an unreachable or failing registry may.
fn lookup_failed(id: u32, error: &RegistryError) -> SerdeError {
    let message = format!("writer schema {id}: {error}");
    match error {
        RegistryError::Unreachable { .. } | RegistryError::BadResponse { .. } => SerdeError::transient(message),
        RegistryError::Rejected { status, .. } if status.is_server_error() => SerdeError::transient(message),
        _ => SerdeError::new(message),
    }
}

impl Serde<SagaEvent> for EventSerde {
    fn serialize(&self, _topic: &str, event: &SagaEvent) -> Result<Vec<u8>, SerdeError> {
        let event_type = event.event_type();
        let id = self
            .ids
            .get(&event_type)
            .ok_or_else(|| SerdeError::new(format!("no schema id registered for {event_type:?}")))?;
        let body = encode_avro_body(event).map_err(|e| SerdeError::new(e.to_string()))?;
        Ok(to_wire(*id, &body))
    }

    fn deserialize(&self, _topic: &str, bytes: &[u8]) -> Result<SagaEvent, SerdeError> {
        let (id, body) = parse_wire(bytes).map_err(|e| SerdeError::new(e.to_string()))?;
        let writer = self.writer_schema(id)?;
        let name = writer.name().map(|n| n.fullname(None)).unwrap_or_default();
        let event_type = EventType::from_full_name(&name)
            .ok_or_else(|| SerdeError::new(format!("schema {id} ({name}) is not a saga event")))?;
        decode_avro_body_written_with(&writer, event_type, body).map_err(|e| SerdeError::new(e.to_string()))
    }

    /// The saga topics are event logs, not tables: nothing of ours writes a null value (the
    /// outbox router drops tombstones, and the connector has `tombstones.on.delete` off), and a
    /// null deletes nothing a participant keeps. So a null is a record someone else wrote that no
    /// participant can act on: poison, dead-lettered like any undecodable record, never skipped
    /// unseen (docs/retries.md, "Poison records").
    fn deserialize_null(&self, topic: &str) -> Result<SagaEvent, SerdeError> {
        Err(SerdeError::new(format!("a null value (a tombstone) on '{topic}' is not a saga event")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_that_fails_is_transient_and_an_unknown_schema_is_not() {
        let flaky = RegistryError::BadResponse { request: "GET /schemas/ids/7".into(), detail: "truncated".into() };
        assert!(lookup_failed(7, &flaky).is_transient());
        assert!(!lookup_failed(7, &RegistryError::SchemaNotFound { id: 7 }).is_transient());
    }

    #[test]
    fn bytes_that_are_not_ours_are_poison_not_transient() {
        let error = EventSerde::with_fixed_ids().deserialize("order.events", b"not avro at all").expect_err("garbage");
        assert!(!error.is_transient(), "{error}");
    }

    #[test]
    fn a_null_value_is_poison_and_says_so() {
        let error = EventSerde::with_fixed_ids().deserialize_null("order.events").expect_err("a tombstone is no event");
        assert!(!error.is_transient(), "{error}");
        assert!(error.to_string().contains("null value"), "{error}");
    }
}
