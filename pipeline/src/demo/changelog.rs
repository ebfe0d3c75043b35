//! Reads a whole topic `read_committed` to its end: the latest value per key of a changelog
//! (a store's committed state), or every record of a saga topic.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use operators::runtime::EndOfPartitionIsExpected;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

pub struct TopicRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: HashMap<String, Vec<u8>>,
}

/// Every committed record of `topic`, partition by partition in offset order.
pub fn read_all(bootstrap: &str, topic: &str, timeout: Duration) -> Result<Vec<TopicRecord>> {
    let consumer: BaseConsumer<EndOfPartitionIsExpected> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("demo-reader-{}", uuid::Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create_with_context(EndOfPartitionIsExpected)?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        bail!("topic {topic} does not exist");
    }
    let mut assignment = TopicPartitionList::new();
    for partition in &partitions {
        assignment.add_partition_offset(topic, *partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut finished: HashSet<i32> = HashSet::new();
    let mut records = Vec::new();
    let deadline = Instant::now() + timeout;
    while finished.len() < partitions.len() {
        if Instant::now() > deadline {
            bail!("reading {topic} did not reach its end within {timeout:?}");
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                finished.insert(partition);
            }
            Some(Err(e)) => return Err(e).with_context(|| format!("reading {topic}")),
            Some(Ok(message)) => records.push(TopicRecord {
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
                headers: message
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
                    .unwrap_or_default(),
            }),
        }
    }
    Ok(records)
}

/// A key's last value, and whether a tombstone came after it (the entry was deleted since).
pub struct KeyHistory {
    pub last_value: Vec<u8>,
    pub deleted: bool,
}

/// Per key of a changelog, its last value, deleted or not: what a retired entry held before
/// retention deleted it (compaction could have removed it since; the demo's runs are too short
/// for a segment to roll).
pub fn history_by_key(records: Vec<TopicRecord>) -> HashMap<Vec<u8>, KeyHistory> {
    let mut history: HashMap<Vec<u8>, KeyHistory> = HashMap::new();
    for record in records {
        let Some(key) = record.key else { continue };
        match record.value {
            Some(last_value) => {
                history.insert(key, KeyHistory { last_value, deleted: false });
            }
            None => {
                if let Some(entry) = history.get_mut(&key) {
                    entry.deleted = true;
                }
            }
        }
    }
    history
}

/// The latest value per key: a changelog's committed store contents (tombstones remove keys).
pub fn latest_by_key(records: Vec<TopicRecord>) -> HashMap<Vec<u8>, Vec<u8>> {
    let mut latest = HashMap::new();
    for record in records {
        let Some(key) = record.key else { continue };
        match record.value {
            Some(value) => latest.insert(key, value),
            None => latest.remove(&key),
        };
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, value: Option<&str>) -> TopicRecord {
        TopicRecord { key: Some(key.into()), value: value.map(Into::into), headers: HashMap::new() }
    }

    #[test]
    fn a_deleted_key_keeps_its_last_value_and_says_it_was_deleted() {
        let records = vec![
            record("a", Some("1")),
            record("b", Some("1")),
            record("a", Some("2")),
            record("a", None),
            record("b", Some("3")),
        ];
        let history = history_by_key(records);
        let a = &history[b"a".as_slice()];
        assert_eq!((a.last_value.as_slice(), a.deleted), (b"2".as_slice(), true));
        let b = &history[b"b".as_slice()];
        assert_eq!((b.last_value.as_slice(), b.deleted), (b"3".as_slice(), false));
    }
}
