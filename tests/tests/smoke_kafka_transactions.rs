//! Kafka transactions on the one-node KRaft broker: committed records are visible to a
//! `read_committed` consumer, aborted ones are not.

use std::time::Duration;

use integration_tests::kafka::{create_topic, read_topic};
use integration_tests::stack::{kafka_bootstrap, unique};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer, DefaultProducerContext};

const TIMEOUT: Duration = Duration::from_secs(30);

fn send(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, value: &str) {
    producer
        .send(BaseRecord::to(topic).key("k").payload(value))
        .map_err(|(e, _)| e)
        .expect("enqueue record");
}

#[tokio::test]
async fn read_committed_sees_committed_and_not_aborted_records() {
    let bootstrap = kafka_bootstrap();
    let topic = unique("smoke-txn");
    create_topic(&bootstrap, &topic, 1).await;

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", unique("smoke-txn-producer"))
        .set("enable.idempotence", "true")
        .create()
        .expect("transactional producer");
    producer
        .init_transactions(TIMEOUT)
        .expect("kafka: init_transactions failed; is the transaction state log (RF 1) available?");

    producer.begin_transaction().expect("begin");
    for value in ["c1", "c2", "c3"] {
        send(&producer, &topic, value);
    }
    producer.commit_transaction(TIMEOUT).expect("commit");

    producer.begin_transaction().expect("begin");
    for value in ["a1", "a2"] {
        send(&producer, &topic, value);
    }
    producer.flush(TIMEOUT).expect("flush aborted batch to the broker");
    producer.abort_transaction(TIMEOUT).expect("abort");

    producer.begin_transaction().expect("begin");
    send(&producer, &topic, "end");
    producer.commit_transaction(TIMEOUT).expect("commit");

    let is_end = |records: &[integration_tests::kafka::Consumed]| {
        records.last().is_some_and(|r| r.value.as_deref() == Some(b"end".as_slice()))
    };
    let committed: Vec<String> = read_topic(&bootstrap, &topic, "read_committed", TIMEOUT, is_end)
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap_or_default()).unwrap())
        .collect();
    assert_eq!(committed, ["c1", "c2", "c3", "end"], "read_committed must skip the aborted batch");

    // The aborted records did reach the log: read_uncommitted sees them, so the test above means something.
    let uncommitted: Vec<String> = read_topic(&bootstrap, &topic, "read_uncommitted", TIMEOUT, is_end)
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap_or_default()).unwrap())
        .collect();
    assert_eq!(uncommitted, ["c1", "c2", "c3", "a1", "a2", "end"]);
}
