//! Offsets of records already written to PostgreSQL, committed in batches: for the projector and
//! the DLQ indexer committing is only bookkeeping (the database deduplicates what is read again),
//! so one commit per interval is enough.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

pub struct PendingOffsets {
    /// The next offset to read, per topic and partition: what Kafka expects to be committed.
    next: HashMap<(String, i32), i64>,
    interval: Duration,
    last_commit: Instant,
}

impl PendingOffsets {
    pub fn new(interval: Duration) -> Self {
        PendingOffsets { next: HashMap::new(), interval, last_commit: Instant::now() }
    }

    /// Marks a record as done: its database write committed, or it was set aside for good.
    pub fn done(&mut self, topic: &str, partition: i32, offset: i64) {
        self.next.insert((topic.to_string(), partition), offset + 1);
    }

    pub fn due(&self) -> bool {
        !self.next.is_empty() && self.last_commit.elapsed() >= self.interval
    }

    /// Hands over what is pending, to be committed.
    pub fn take(&mut self) -> KafkaResult<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), next) in self.next.drain() {
            list.add_partition_offset(&topic, partition, Offset::Offset(next))?;
        }
        self.last_commit = Instant::now();
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_offset_is_the_one_after_the_last_record_done() {
        let mut pending = PendingOffsets::new(Duration::ZERO);
        assert!(!pending.due(), "nothing to commit yet");
        pending.done("a", 0, 4);
        pending.done("a", 0, 7);
        pending.done("b", 2, 0);
        assert!(pending.due());
        let list = pending.take().unwrap();
        assert_eq!(list.find_partition("a", 0).unwrap().offset(), Offset::Offset(8));
        assert_eq!(list.find_partition("b", 2).unwrap().offset(), Offset::Offset(1));
        assert_eq!(list.count(), 2);
        assert!(!pending.due(), "taken offsets are not committed twice");
    }
}
