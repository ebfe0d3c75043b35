//! Sends output records through the instance's producer.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, PurgeConfig};

use super::delivery::DeliveryTracker;
use crate::record::{Header, OutputRecord};

pub type TrackedProducer = BaseProducer<DeliveryTracker>;

/// Enqueues one record, waiting while the local queue is full. An error here means the record
/// itself cannot be produced (too large, unknown partition), not that the broker is slow.
/// `origin` comes back with the record's delivery report (see [`DeliveryTracker`]).
pub fn send(producer: &TrackedProducer, record: &OutputRecord, origin: usize) -> Result<(), KafkaError> {
    let headers = kafka_headers(&record.headers);
    let mut base = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&record.topic, origin)
        .headers(headers)
        .timestamp(record.timestamp_ms);
    if let Some(key) = record.key.as_deref() {
        base = base.key(key);
    }
    if let Some(value) = record.value.as_deref() {
        base = base.payload(value);
    }
    if let Some(partition) = record.partition {
        base = base.partition(partition);
    }
    loop {
        match producer.send(base) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                // Serving delivery reports frees queue space.
                producer.poll(Duration::from_millis(1));
                base = returned;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Our headers as rdkafka's, null values kept null.
pub fn kafka_headers(headers: &[Header]) -> OwnedHeaders {
    headers.iter().fold(OwnedHeaders::new_with_capacity(headers.len()), |kafka, header| {
        kafka.insert(KafkaHeader { key: &header.key, value: header.value.as_deref() })
    })
}

/// Whether a failed `send` is about the record itself (too large, no such partition), so that
/// sending it again can never work. Anything else (the transaction in an error state, a fenced
/// or failed producer) says nothing about the record: abort and replay, and poison nothing.
pub fn rejects_the_record(error: &KafkaError) -> bool {
    error.rdkafka_error_code().is_some_and(is_record_specific)
}

/// Errors about one record, locally or from the broker.
pub fn is_record_specific(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::UnknownPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::InvalidRecord
    )
}

/// Drops everything still queued (not what is in flight: purging in-flight records of an
/// idempotent producer leaves gaps in its sequence numbers, which librdkafka repairs by bumping
/// the epoch, failing records of the next transaction) and serves the delivery reports until
/// nothing is outstanding. The stream thread is the only poller: a background polling thread
/// would make every flush (and commit) wait out its poll interval.
pub fn purge_unacknowledged(producer: &TrackedProducer, timeout: Duration) {
    producer.purge(PurgeConfig::default().queue());
    let deadline = std::time::Instant::now() + timeout;
    while producer.in_flight_count() > 0 && std::time::Instant::now() < deadline {
        producer.poll(Duration::from_millis(10));
    }
}

/// Waits until every produced record is acknowledged, serving delivery reports as they come.
/// rdkafka's own `flush` sleeps in 100 ms polls, which would cap commits at ten per second.
pub fn flush(producer: &TrackedProducer, timeout: Duration) -> Result<(), KafkaError> {
    let deadline = std::time::Instant::now() + timeout;
    while producer.in_flight_count() > 0 {
        if std::time::Instant::now() >= deadline {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
        producer.poll(Duration::from_millis(1));
    }
    Ok(())
}
