//! Case (a): a bare rdkafka consume → produce passthrough, at-least-once. The machine's ceiling.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

pub fn spawn(bootstrap: &str, input: &str, output: &str, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-bare-{}", uuid::Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.offset.store", "false")
        .create()
        .expect("bare consumer");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .expect("bare producer");
    consumer.subscribe(&[input]).expect("subscribe");
    let output = output.to_string();
    std::thread::spawn(move || {
        let mut last_commit = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                let mut record = BaseRecord::<[u8], [u8]>::to(&output);
                if let Some(key) = message.key() {
                    record = record.key(key);
                }
                if let Some(value) = message.payload() {
                    record = record.payload(value);
                }
                while let Err((_, returned)) = producer.send(record) {
                    producer.poll(Duration::from_millis(1));
                    record = returned;
                }
                let _ = consumer.store_offset_from_message(&message);
            }
            producer.poll(Duration::ZERO);
            if last_commit.elapsed() >= Duration::from_millis(100) {
                let _ = producer.flush(Duration::from_secs(10));
                let _ = consumer.commit_consumer_state(CommitMode::Async);
                last_commit = Instant::now();
            }
        }
        let _ = producer.flush(Duration::from_secs(10));
    })
}
