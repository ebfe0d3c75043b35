//! Kafka transactions on the one-node KRaft broker: committed records are visible to a
//! `read_committed` consumer, aborted ones are not, and consumer lag counts neither the aborted
//! records nor the commit markers.

use std::time::Duration;

use integration_tests::kafka::{create_topic, read_topic};
use integration_tests::stack::{kafka_bootstrap, unique};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const TIMEOUT: Duration = Duration::from_secs(30);

fn send(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, value: &str) {
    producer.send(BaseRecord::to(topic).key("k").payload(value)).map_err(|(e, _)| e).expect("enqueue record");
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

/// Consumer lag counts records, not offsets: a group that consumed everything reads 0 although
/// commit markers and an aborted batch sit between its committed offset and the high
/// watermark, and a group that has not reads the records it has left, and their age.
#[tokio::test]
async fn consumer_lag_reads_0_for_a_caught_up_group_whatever_markers_follow() {
    use pipeline::admin::lag::{LagReader, WatchedGroup};
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};

    let bootstrap = kafka_bootstrap();
    let topic = unique("lag-markers");
    create_topic(&bootstrap, &topic, 2).await;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", unique("lag-markers-producer"))
        .create()
        .expect("transactional producer");
    producer.init_transactions(TIMEOUT).expect("init_transactions");
    let send_to = |partition: i32, value: &str| {
        producer
            .send(BaseRecord::to(&topic).partition(partition).key("k").payload(value))
            .map_err(|(e, _)| e)
            .expect("enqueue");
    };
    // Partition 0: three committed records, then an aborted batch; partition 1: two committed.
    producer.begin_transaction().expect("begin");
    ["c1", "c2", "c3"].into_iter().for_each(|value| send_to(0, value));
    ["d1", "d2"].into_iter().for_each(|value| send_to(1, value));
    producer.commit_transaction(TIMEOUT).expect("commit");
    producer.begin_transaction().expect("begin");
    ["a1", "a2"].into_iter().for_each(|value| send_to(0, value));
    producer.flush(TIMEOUT).expect("flush the batch to abort");
    producer.abort_transaction(TIMEOUT).expect("abort");

    // The caught-up group reads every record and commits the offset after the last one it read,
    // as the exactly-once runtime does (so the markers stay ahead of it).
    let caught_up = unique("lag-caught-up");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &caught_up)
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut next = TopicPartitionList::new();
    let mut read = 0;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while read < 5 {
        assert!(std::time::Instant::now() < deadline, "read {read} of the 5 committed records within {TIMEOUT:?}");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("a record");
            next.add_partition_offset(&topic, message.partition(), Offset::Offset(message.offset() + 1))
                .expect("offset");
            read += 1;
        }
    }
    consumer.commit(&next, CommitMode::Sync).expect("commit the group's offsets");

    // The other group has read nothing of partition 1.
    let behind = unique("lag-behind");
    let behind_consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("group.id", &behind).create().expect("consumer");
    let mut start = TopicPartitionList::new();
    start.add_partition_offset(&topic, 1, Offset::Offset(0)).expect("offset");
    behind_consumer.commit(&start, CommitMode::Sync).expect("commit offset 0");

    let watched = |group: &str| WatchedGroup { group: group.to_string(), topics: vec![topic.clone()] };
    let reader = LagReader::new(&bootstrap, vec![watched(&caught_up), watched(&behind)]).expect("lag reader");
    let lags = tokio::task::spawn_blocking(move || reader.read()).await.expect("lag thread").expect("lag read");
    let of = |group: &str, partition: i32| {
        lags.iter()
            .find(|lag| lag.group == group && lag.partition == partition)
            .unwrap_or_else(|| panic!("{group}/{partition} in {lags:?}"))
            .clone()
    };
    for partition in [0, 1] {
        let lag = of(&caught_up, partition);
        assert!(lag.committed < lag.latest, "markers follow the committed offset: {lag:?}");
        assert_eq!((lag.records, lag.seconds), (0, 0.0), "caught up: {lag:?}");
    }
    let lag = of(&behind, 1);
    assert_eq!((lag.committed, lag.records), (0, 3), "two records and their commit marker: {lag:?}");
    assert!(lag.seconds > 0.0, "{lag:?}");
    assert!(!lags.iter().any(|lag| lag.group == behind && lag.partition == 0), "no offset committed on partition 0");
}
