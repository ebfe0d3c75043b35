//! Sends output records through the instance's producer.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};

use crate::record::OutputRecord;

/// Enqueues one record, waiting while the local queue is full. An error here means the record
/// itself cannot be produced (too large, unknown partition), not that the broker is slow.
pub fn send(producer: &ThreadedProducer<DefaultProducerContext>, record: &OutputRecord) -> Result<(), KafkaError> {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for header in &record.headers {
        headers = headers.insert(KafkaHeader { key: &header.key, value: Some(header.value.as_slice()) });
    }
    let mut base = BaseRecord::<[u8], [u8]>::to(&record.topic).headers(headers).timestamp(record.timestamp_ms);
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
                // The producer's own thread serves delivery reports and drains the queue.
                std::thread::sleep(Duration::from_millis(1));
                base = returned;
            }
            Err((e, _)) => return Err(e),
        }
    }
}
