//! Schema ids and writer schemas from the registry, each asked once and then cached.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use apache_avro::Schema;

use super::{Answer, SchemaResolver};
use crate::avro_schemas::{schema_of, schema_text_of};
use crate::codec::{subject_for, CodecError};
use crate::event_type::{topic_of, EventType};
use crate::registration::{current_schema_ids, StartupSchemaError};
use crate::registry::RegistryClient;

/// Asks the registry what it does not know yet; the answers never change, so they are kept.
#[derive(Debug)]
pub struct RegistryResolver {
    registry: RegistryClient,
    /// Our current schema's id per event type, per topic (topics are looked up by `&str`).
    ids: RwLock<HashMap<EventType, HashMap<String, u32>>>,
    /// Writer schemas by id: ours under the ids above, plus any fetched (another writer's version).
    writers: RwLock<HashMap<u32, Arc<Schema>>>,
}

impl RegistryResolver {
    /// A resolver that looks each id up on first use.
    pub fn new(registry: RegistryClient) -> Self {
        RegistryResolver { registry, ids: RwLock::default(), writers: RwLock::default() }
    }

    /// Looks up the id of every event type's current schema on its own topic now, so that a
    /// missing schema stops start-up with an error that says what to run, rather than failing
    /// the first record later, and the stream thread finds every id it writes with cached.
    pub async fn prepare(registry: RegistryClient) -> Result<Self, StartupSchemaError> {
        let ids = current_schema_ids(&registry).await?;
        let resolver = RegistryResolver::new(registry);
        for (event_type, id) in ids {
            resolver.remember_id(topic_of(event_type), event_type, id);
        }
        Ok(resolver)
    }

    /// The id names exactly our schema, so decoding with that id needs no registry call.
    fn remember_id(&self, topic: &str, event_type: EventType, id: u32) {
        write(&self.ids).entry(event_type).or_default().insert(topic.to_string(), id);
        write(&self.writers).entry(id).or_insert_with(|| Arc::new(schema_of(event_type).clone()));
    }
}

impl SchemaResolver for RegistryResolver {
    fn schema_id<'a>(&'a self, topic: &'a str, event_type: EventType) -> Answer<'a, u32> {
        if let Some(&id) = read(&self.ids).get(&event_type).and_then(|by_topic| by_topic.get(topic)) {
            return Answer::Known(Ok(id));
        }
        Answer::Asking(Box::pin(async move {
            let subject = subject_for(topic, event_type);
            let id = (self.registry.lookup(&subject, schema_text_of(event_type)).await?)
                .ok_or(CodecError::NotRegistered { event_type, subject })?;
            self.remember_id(topic, event_type, id);
            Ok(id)
        }))
    }

    fn writer_schema(&self, id: u32) -> Answer<'_, Arc<Schema>> {
        if let Some(schema) = read(&self.writers).get(&id) {
            return Answer::Known(Ok(Arc::clone(schema)));
        }
        Answer::Asking(Box::pin(async move {
            let schema =
                self.registry.schema_by_id(id).await.map_err(|source| CodecError::WriterSchema { id, source })?;
            write(&self.writers).insert(id, Arc::clone(&schema));
            Ok(schema)
        }))
    }
}

/// A cache is still valid after a panic elsewhere: entries are inserted whole.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::Mutex;

    use super::*;
    use crate::samples::sample;
    use crate::{encode_avro_body, to_wire, RegistryError, SagaCodec};

    /// A registry stand-in on a port of its own: answers each request with `answer(request line)`
    /// and keeps the request lines.
    fn stand_in(answer: fn(&str) -> (&'static str, String)) -> (RegistryClient, Arc<Mutex<Vec<String>>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for socket in listener.incoming() {
                let Ok(mut socket) = socket else { return };
                let mut request = [0u8; 8192];
                let read = socket.read(&mut request).unwrap_or(0);
                let line = String::from_utf8_lossy(&request[..read]).lines().next().unwrap_or_default().to_string();
                let (status, body) = answer(&line);
                seen.lock().unwrap().push(line);
                let answer = format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = socket.write_all(answer.as_bytes());
            }
        });
        (RegistryClient::new(&format!("http://{address}")).unwrap(), requests)
    }

    fn shipment_failed_schema(_request: &str) -> (&'static str, String) {
        ("200 OK", serde_json::json!({ "schema": schema_text_of(EventType::ShipmentFailed) }).to_string())
    }

    #[tokio::test]
    async fn an_unknown_writer_schema_is_fetched_once_then_cached() {
        let (registry, requests) = stand_in(shipment_failed_schema);
        let codec = SagaCodec::new(RegistryResolver::new(registry));
        let event = sample(EventType::ShipmentFailed);
        let bytes = to_wire(41, &encode_avro_body(&event).unwrap());

        // From inside a runtime, where blocking on another one would panic.
        assert_eq!(codec.decode_blocking(&bytes).unwrap(), event);
        assert_eq!(codec.decode(&bytes).await.unwrap(), event);
        assert_eq!(codec.clone().decode_blocking(&bytes).unwrap(), event, "clones share the cache");
        assert_eq!(*requests.lock().unwrap(), ["GET /apis/ccompat/v7/schemas/ids/41 HTTP/1.1"]);
    }

    #[tokio::test]
    async fn a_fetched_writer_schema_is_then_known_without_a_runtime() {
        let (registry, _requests) = stand_in(shipment_failed_schema);
        let resolver = RegistryResolver::new(registry);
        assert!(matches!(resolver.writer_schema(41), Answer::Asking(_)), "nothing is cached yet");
        resolver.writer_schema(41).resolve().await.unwrap();
        assert!(matches!(resolver.writer_schema(41), Answer::Known(Ok(_))), "the stream thread needs no lookup now");
    }

    fn id_7_or_not_found(request: &str) -> (&'static str, String) {
        if request.contains("saga.events.OrderPlaced ") {
            ("200 OK", r#"{"id": 7}"#.to_string())
        } else {
            ("404 Not Found", r#"{"error_code": 40403, "message": "no such schema"}"#.to_string())
        }
    }

    #[test]
    fn ids_are_looked_up_under_their_topic_record_subject_once_and_never_registered() {
        let (registry, requests) = stand_in(id_7_or_not_found);
        let codec = SagaCodec::new(RegistryResolver::new(registry));
        let placed = sample(EventType::OrderPlaced);

        let bytes = codec.encode_blocking("run-1.order.events", &placed).unwrap();
        assert_eq!(bytes, to_wire(7, &encode_avro_body(&placed).unwrap()));
        assert_eq!(codec.encode_blocking("run-1.order.events", &placed).unwrap(), bytes);
        assert_eq!(codec.decode_blocking(&bytes).unwrap(), placed, "the id names our schema: no fetch");
        let error = codec.encode_blocking("run-1.order.events", &sample(EventType::OrderCancelled)).unwrap_err();
        assert!(matches!(error, CodecError::NotRegistered { event_type: EventType::OrderCancelled, .. }), "{error}");
        assert!(!error.is_transient(), "{error}");

        // POST /subjects/{s} looks up; registering would be POST /subjects/{s}/versions.
        assert_eq!(
            *requests.lock().unwrap(),
            [
                "POST /apis/ccompat/v7/subjects/run-1.order.events-saga.events.OrderPlaced HTTP/1.1",
                "POST /apis/ccompat/v7/subjects/run-1.order.events-saga.events.OrderCancelled HTTP/1.1",
            ]
        );
    }

    #[test]
    fn a_registry_that_cannot_be_reached_is_transient_and_the_miss_is_asked_again() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let codec =
            SagaCodec::new(RegistryResolver::new(RegistryClient::new(&format!("http://127.0.0.1:{port}")).unwrap()));
        let bytes = to_wire(41, &encode_avro_body(&sample(EventType::ShipmentFailed)).unwrap());
        for _ in 0..2 {
            let error = codec.decode_blocking(&bytes).expect_err("nothing listens");
            assert!(
                matches!(error, CodecError::WriterSchema { id: 41, source: RegistryError::Unreachable { .. } }),
                "{error}"
            );
            assert!(error.is_transient(), "{error}");
        }
    }
}
