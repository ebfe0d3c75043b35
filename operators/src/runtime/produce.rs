//! Sends output records through the instance's producer.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, PurgeConfig, ThreadedProducer};

use super::delivery::DeliveryTracker;
use crate::record::{Header, OutputRecord};

/// Its own thread serves delivery reports as they arrive, so that a flush can wait on
/// librdkafka's condition variable (see [`flush`]) instead of polling.
pub type TrackedProducer = ThreadedProducer<DeliveryTracker>;

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
                // The polling thread frees queue space as it serves delivery reports.
                std::thread::sleep(Duration::from_millis(1));
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
/// the epoch, failing records of the next transaction) and waits until nothing is outstanding.
pub fn purge_unacknowledged(producer: &TrackedProducer, timeout: Duration) {
    producer.purge(PurgeConfig::default().queue());
    if let Err(error) = flush(producer, timeout) {
        tracing::debug!(%error, "records still unacknowledged after the purge");
    }
}

/// Waits until every produced record is acknowledged and its delivery report served.
/// librdkafka waits on a condition variable while the producer's polling thread serves the
/// reports; rdkafka's own `flush` would sleep in 100 ms polls (ten commits a second at most),
/// and polling here with a short timeout spins on the clock for what is left of each
/// millisecond (half of a stream thread's CPU under load, measured).
pub fn flush(producer: &TrackedProducer, timeout: Duration) -> Result<(), KafkaError> {
    let wait_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the pointer is the live producer's, and rd_kafka_flush is thread-safe. With
    // delivery reports as events (rdkafka's mode) it only waits until every record is gone,
    // which is after its report was served.
    let waited = unsafe { rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), wait_ms) };
    match waited {
        rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
        error => Err(KafkaError::Flush(error.into())),
    }
}
