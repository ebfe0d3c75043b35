//! Saga events as an operators [`Serde`], for the stream thread, which is synchronous: a thin
//! adapter over the one [`SagaCodec`], calling its blocking pair. Every id our events are written
//! with is looked up before the topologies start ([`schemas::RegistryResolver::prepare`]), so only
//! a writer schema we have not seen (another service's version) makes it wait for the registry,
//! once. Async code uses the codec itself.

use operators::serdes::{Serde, SerdeError};
use schemas::{CodecError, SagaCodec, SagaEvent};

#[derive(Clone, Debug)]
pub struct EventSerde {
    codec: SagaCodec,
}

impl EventSerde {
    pub fn new(codec: SagaCodec) -> Self {
        EventSerde { codec }
    }

    /// Over [`SagaCodec::with_fixed_ids`]: for tests and offline tools.
    pub fn with_fixed_ids() -> Self {
        EventSerde::new(SagaCodec::with_fixed_ids())
    }
}

/// A registry that is down may answer later (the retry lane); bytes that cannot be read are poison.
fn serde_error(error: CodecError) -> SerdeError {
    if error.is_transient() {
        SerdeError::transient(error.to_string())
    } else {
        SerdeError::new(error.to_string())
    }
}

impl Serde<SagaEvent> for EventSerde {
    /// With the id of the event's schema on its own topic, whatever `topic` it goes to (a
    /// run's prefixed topic, a repartition topic, a changelog): the ids prepared at start-up.
    fn serialize(&self, _topic: &str, event: &SagaEvent) -> Result<Vec<u8>, SerdeError> {
        self.codec.encode_blocking(event.topic(), event).map_err(serde_error)
    }

    fn deserialize(&self, _topic: &str, bytes: &[u8]) -> Result<SagaEvent, SerdeError> {
        self.codec.decode_blocking(bytes).map_err(serde_error)
    }

    /// Poison, never skipped unseen: see [`CodecError::NullValue`] and docs/retries.md,
    /// "Poison records".
    fn deserialize_null(&self, topic: &str) -> Result<SagaEvent, SerdeError> {
        Err(serde_error(CodecError::NullValue { topic: topic.to_string() }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use schemas::{
        encode_avro_body, to_wire, Answer, Envelope, EventType, OrderConfirmed, Payload, RegistryClient,
        RegistryResolver, SchemaResolver,
    };

    use super::*;

    fn confirmed() -> SagaEvent {
        let confirmed =
            OrderConfirmed { customer_id: "c-1".into(), total_cents: 1_000, tracking_number: "TRK-1".into() };
        SagaEvent::new(Envelope::new("order-1", "corr-1", 0), Payload::OrderConfirmed(confirmed))
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

    #[test]
    fn a_registry_that_cannot_be_reached_is_transient() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let registry = RegistryClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let serde = EventSerde::new(SagaCodec::new(RegistryResolver::new(registry)));
        let bytes = to_wire(41, &encode_avro_body(&confirmed()).unwrap());
        let error = serde.deserialize("order.events", &bytes).expect_err("nothing listens");
        assert!(error.is_transient(), "{error}");
        assert!(error.to_string().starts_with("writer schema 41: "), "{error}");
    }

    /// Answers id 1 for everything and keeps the topics it was asked about.
    #[derive(Debug)]
    struct TopicsAsked(Arc<Mutex<Vec<String>>>);

    impl SchemaResolver for TopicsAsked {
        fn schema_id<'a>(&'a self, topic: &'a str, _event_type: EventType) -> Answer<'a, u32> {
            self.0.lock().unwrap().push(topic.to_string());
            Answer::Known(Ok(1))
        }

        fn writer_schema(&self, id: u32) -> Answer<'_, Arc<apache_avro::Schema>> {
            Answer::Known(Err(CodecError::UnknownWriterSchema { id }))
        }
    }

    #[test]
    fn events_go_out_with_the_id_of_their_own_topic_whatever_topic_they_are_written_to() {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let serde = EventSerde::new(SagaCodec::new(TopicsAsked(Arc::clone(&asked))));
        serde.serialize("payment-ledger-repartition", &confirmed()).unwrap();
        assert_eq!(*asked.lock().unwrap(), ["order.events"]);
    }
}
