//! librdkafka's leader discovery (KIP-951) when a partition has no leader, on librdkafka's
//! mock cluster. A broker that is the only replica of its partitions answers fetches during its
//! controlled shutdown with NOT_LEADER_OR_FOLLOWER and a current leader of -1. librdkafka 2.12.1
//! counted that partition as a leader change but never filled its entry, and applied the
//! uninitialised entry to its metadata cache: warnings naming partitions and leaders that do
//! not exist, reads out of bounds, a segfault in one of `dev/chaos --outages --broker-restart`'s
//! processes. The workspace builds librdkafka patched (third_party/rdkafka-sys/README.md).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::bindings::{rd_kafka_handle_mock_cluster, rd_kafka_mock_partition_push_leader_response};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

const TOPIC: &str = "leaderless";
const NO_LEADER: i32 = -1;

/// Keeps librdkafka's warnings about metadata updates.
#[derive(Clone, Default)]
struct MetadataLog(Arc<Mutex<Vec<String>>>);

impl ClientContext for MetadataLog {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if fac.contains("METADATAUPDATE") {
            self.0.lock().unwrap().push(log_message.to_string());
        }
    }
}

impl ConsumerContext for MetadataLog {}

fn produce(producer: &BaseProducer, from: u32, to: u32) {
    for n in from..to {
        producer.send(BaseRecord::to(TOPIC).partition(0).key("k").payload(&n.to_be_bytes()[..])).expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

/// Polls until `count` more records were read, or fails after a minute.
fn consume(consumer: &BaseConsumer<MetadataLog>, count: usize) -> KafkaResult<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut read = 0;
    while read < count {
        assert!(Instant::now() < deadline, "read {read} of {count} records within a minute");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            message?.offset();
            read += 1;
        }
    }
    Ok(())
}

#[test]
fn a_fetch_answered_with_no_current_leader_updates_no_partition_that_does_not_exist() {
    // The cluster lives in this producer: its raw handle is what can push a leader response.
    let producer: BaseProducer =
        ClientConfig::new().set("test.mock.num.brokers", "3").create().expect("producer with a mock cluster");
    let mock = unsafe { rd_kafka_handle_mock_cluster(producer.client().native_ptr()) };
    assert!(!mock.is_null(), "the producer has a mock cluster");
    let cluster = producer.client().mock_cluster().expect("mock cluster");
    cluster.create_topic(TOPIC, 1, 1).expect("topic");
    cluster.partition_leader(TOPIC, 0, Some(1)).expect("leader");
    let log = MetadataLog::default();
    let consumer: BaseConsumer<MetadataLog> = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("group.id", "leader-discovery")
        .set("enable.auto.commit", "false")
        .set_log_level(RDKafkaLogLevel::Warning)
        .create_with_context(log.clone())
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(TOPIC, 0, Offset::Beginning).expect("assignment");
    consumer.assign(&assignment).expect("assign");
    produce(&producer, 0, 10);
    consume(&consumer, 10).expect("the first records");

    let topic = std::ffi::CString::new(TOPIC).unwrap();
    // Each move sends the consumer's next fetch to a broker that is no longer the leader, and
    // that broker answers that there is no leader at all.
    for (round, leader) in [2, 3, 1, 2].into_iter().enumerate() {
        let pushed = unsafe { rd_kafka_mock_partition_push_leader_response(mock, topic.as_ptr(), 0, NO_LEADER, -1) };
        assert_eq!(pushed, rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
        cluster.partition_leader(TOPIC, 0, Some(leader)).expect("move the leader");
        // The consumer's fetch takes the pushed answer before the producer can.
        let idle = Instant::now() + Duration::from_secs(2);
        while Instant::now() < idle {
            assert!(consumer.poll(Duration::from_millis(100)).is_none(), "no record was produced yet");
        }
        let from = 10 * (round as u32 + 1);
        produce(&producer, from, from + 10);
        consume(&consumer, 10).expect("the records after the leader moved");
    }

    let updates = log.0.lock().unwrap().clone();
    assert!(updates.is_empty(), "metadata updates built from a fetch that named no leader:\n{}", updates.join("\n"));
}
