//! The admin component's transactional producer: each reprocessed record is published in a Kafka
//! transaction of its own, so a reader (read_committed) sees it once the call has succeeded, and
//! never a half-sent one. One transaction at a time; after any failure the producer is dropped
//! and made again, and `init_transactions` under the same `transactional.id` aborts whatever the
//! old one left open.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use operators::record::OutputRecord;
use operators::runtime::kafka_headers;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

type TransactionalProducer = ThreadedProducer<DefaultProducerContext>;

/// How long a transaction step may take before the call fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Republisher {
    config: ClientConfig,
    /// `None` until the first publish, and after a failure.
    producer: Mutex<Option<TransactionalProducer>>,
}

impl Republisher {
    /// `transactional_id` must differ between live admin instances.
    pub fn new(bootstrap_servers: &str, transactional_id: &str) -> Arc<Self> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap_servers)
            .set("transactional.id", transactional_id)
            .set("enable.idempotence", "true")
            // A transaction left open by a crash blocks read_committed readers of its partition
            // until the broker aborts it.
            .set("transaction.timeout.ms", "10000");
        Arc::new(Republisher { config, producer: Mutex::new(None) })
    }

    /// Publishes `record` and commits its transaction: `Ok` means it is in the topic for good.
    pub async fn publish(self: &Arc<Self>, record: OutputRecord) -> Result<(), KafkaError> {
        let republisher = self.clone();
        // librdkafka's transaction calls block.
        tokio::task::spawn_blocking(move || republisher.publish_blocking(&record))
            .await
            .map_err(|_| KafkaError::Canceled)?
    }

    fn publish_blocking(&self, record: &OutputRecord) -> Result<(), KafkaError> {
        let mut slot = self.producer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let producer = match slot.take() {
            Some(producer) => producer,
            None => {
                let producer: TransactionalProducer = self.config.create()?;
                producer.init_transactions(STEP_TIMEOUT)?;
                producer
            }
        };
        match in_transaction(&producer, record) {
            Ok(()) => {
                *slot = Some(producer);
                Ok(())
            }
            Err(error) => {
                // Best effort: dropping the producer and initialising a new one aborts it anyway.
                let _ = producer.abort_transaction(STEP_TIMEOUT);
                Err(error)
            }
        }
    }
}

fn in_transaction(producer: &TransactionalProducer, record: &OutputRecord) -> Result<(), KafkaError> {
    producer.begin_transaction()?;
    let mut base = BaseRecord::<[u8], [u8]>::to(&record.topic)
        .headers(kafka_headers(&record.headers))
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
    producer.send(base).map_err(|(error, _)| error)?;
    // Flushes: a record the broker refuses fails the commit.
    producer.commit_transaction(STEP_TIMEOUT)
}
