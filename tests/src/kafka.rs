//! Kafka helpers for tests: topic creation and draining a topic with a given isolation level.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};

/// One consumed record, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp, as the broker keeps it (what its time retention goes by).
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// In order; `None` is a null value.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Consumed {
    /// The value of the first header named `name`; a null value reads as empty.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_deref().unwrap_or_default())
    }
}

pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client")
}

/// Creates a topic and fails the test with the broker's reason if it cannot.
pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    create_topic_with(bootstrap, name, partitions, &[]).await
}

/// The topic config for records with old timestamps (a backlog): time retention would delete
/// them at the broker's next check, every five minutes, while a test still reads them.
pub const KEEP_OLD_RECORDS: (&str, &str) = ("retention.ms", "-1");

/// As [`create_topic`], with topic configs such as `max.message.bytes`.
pub async fn create_topic_with(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin = admin(bootstrap);
    let topic = configs
        .iter()
        .fold(NewTopic::new(name, partitions, TopicReplication::Fixed(1)), |topic, (key, value)| topic.set(key, value));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics([&topic], &options).await.unwrap_or_else(|e| {
        panic!("kafka: cannot create topic {name} at {bootstrap}: {e} (is the broker up? `dev/stack status`)")
    });
    for result in results {
        if let Err((topic, code)) = result {
            panic!("kafka: creating topic {topic} failed: {code}");
        }
    }
}

/// Reads `topic` from the beginning until `done` says so or `timeout` passed.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    isolation: &str,
    timeout: Duration,
    done: impl Fn(&[Consumed]) -> bool,
) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", crate::stack::unique("test-reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while !done(&records) && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => records.push(consumed(&message)),
            // The app under test may not have created its internal topics yet.
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition))) => {}
            Some(Err(e)) => panic!("kafka: consuming {topic} failed: {e}"),
            None => {}
        }
    }
    records
}

/// Counts a topic's `read_committed` records as they arrive, for tests that act at a given progress.
pub struct CommittedCounter {
    consumer: BaseConsumer,
    pub count: usize,
}

impl CommittedCounter {
    pub fn new(bootstrap: &str, topic: &str) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", crate::stack::unique("test-counter"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .create()
            .expect("counting consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        Self { consumer, count: 0 }
    }

    /// Reads until at least `target` records were seen; false if `timeout` passed first.
    pub fn wait_for(&mut self, target: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.count < target && Instant::now() < deadline {
            if let Some(Ok(_)) = self.consumer.poll(Duration::from_millis(100)) {
                self.count += 1;
            }
        }
        self.count >= target
    }
}

/// A key `<prefix>-<n>` that Kafka's partitioner puts on `partition`: records that must share a
/// partition (and be co-partitioned with the replies keyed the same way) get such keys.
pub fn key_on_partition(prefix: &str, partition: i32, partitions: i32) -> String {
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|key| partition_for(key.as_bytes(), partitions) == partition)
        .expect("a key")
}

/// Everything in `topic` now, read from the beginning until librdkafka says each partition is
/// at its end (for `read_committed`, the last stable offset, past any transaction markers).
/// Call it once whatever is to be counted is known to be committed.
pub fn read_to_end(bootstrap: &str, topic: &str, isolation: &str) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", crate::stack::unique("test-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("kafka: metadata of {topic}: {e}"));
    let partitions: Vec<i32> = metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    assert!(!partitions.is_empty(), "kafka: topic {topic} has no partitions");
    let mut list = rdkafka::TopicPartitionList::new();
    for partition in &partitions {
        list.add_partition_offset(topic, *partition, rdkafka::Offset::Beginning).expect("offset");
    }
    consumer.assign(&list).expect("assign");
    let mut at_end = std::collections::BTreeSet::new();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while at_end.len() < partitions.len() {
        assert!(Instant::now() < deadline, "kafka: {topic} did not reach its end within 60 s");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => records.push(consumed(&message)),
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Some(Err(e)) => panic!("kafka: consuming {topic} failed: {e}"),
            None => {}
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

fn consumed(message: &rdkafka::message::BorrowedMessage<'_>) -> Consumed {
    Consumed {
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers: message
            .headers()
            .map(|headers| headers.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default(),
    }
}

/// The partition Kafka's default partitioner (Java's, and librdkafka's `murmur2_random`, which
/// the runtime uses) gives a record with this key: murmur2 of the key, positive, modulo.
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut h = SEED ^ key.len() as u32;
    let mut chunks = key.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]).wrapping_mul(M);
        k ^= k >> 24;
        h = h.wrapping_mul(M) ^ k.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    ((h & 0x7fff_ffff) % partitions as u32) as i32
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_land_where_kafka_puts_them() {
        // Kafka's own Utils.murmur2 test vectors (UtilsTest.testMurmur2), as positive values.
        let cases: [(&[u8], i32); 3] =
            [(b"21", -973932308), (b"foobar", -790332482), (b"a-little-bit-long-string", -985981536)];
        for (key, java) in cases {
            let expected = ((java & 0x7fff_ffff) as i64 % 1_000_003) as i32;
            assert_eq!(super::partition_for(key, 1_000_003), expected, "{:?}", String::from_utf8_lossy(key));
        }
    }
}
