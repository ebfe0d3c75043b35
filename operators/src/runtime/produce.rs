//! Sends output records through the instance's producer.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, PurgeConfig};

use super::delivery::DeliveryTracker;
use crate::record::OutputRecord;

pub type TrackedProducer = BaseProducer<DeliveryTracker>;

/// Enqueues one record, waiting while the local queue is full. An error here means the record
/// itself cannot be produced (too large, unknown partition), not that the broker is slow.
/// `origin` comes back with the record's delivery report (see [`DeliveryTracker`]).
pub fn send(
    producer: &TrackedProducer,
    record: &OutputRecord,
    origin: usize,
) -> Result<(), KafkaError> {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for header in &record.headers {
        headers = headers.insert(KafkaHeader {
            key: &header.key,
            value: header.value.as_deref(),
        });
    }
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

/// Drops everything not yet acknowledged and serves the purged records' delivery reports, which
/// librdkafka requires before it aborts a transaction. The stream thread is the only poller:
/// a background polling thread would make every flush (and commit) wait out its poll interval.
pub fn purge_unacknowledged(producer: &TrackedProducer, timeout: Duration) {
    producer.purge(PurgeConfig::default().queue().inflight());
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
