//! Where the rebuild starts and stops: every partition of the projector's topics, from its first
//! offset to the end it had when the rebuild began, and how far the rebuild has read it.
//!
//! The end is the last stable offset (a read_committed consumer's high watermark): every record
//! before it belongs to a decided transaction, so reading up to it never waits on a producer.
//! The position that counts is the consumer's, not the last record delivered: a partition that
//! ends with a transaction marker has no record at `end - 1`, and librdkafka moves the position
//! past markers.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(10);

/// One partition's range and how far the rebuild got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// The first offset the broker still has (0 unless retention deleted records).
    pub start: i64,
    /// The last stable offset when the rebuild began: the rebuild reads every offset below it.
    pub end: i64,
    /// The next offset the rebuild will read.
    pub position: i64,
}

impl Range {
    pub fn is_done(&self) -> bool {
        self.position >= self.end
    }
}

/// Every partition of the projector's topics, keyed by (topic, partition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndOffsets {
    ranges: BTreeMap<(String, i32), Range>,
}

impl EndOffsets {
    /// Asks the broker for every partition of `topics` and its offsets. Blocking; `consumer`
    /// must read read_committed, so that its high watermark is the last stable offset.
    pub fn fetch(consumer: &impl Consumer, topics: &[String]) -> Result<Self> {
        let mut ranges = BTreeMap::new();
        for topic in topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), TIMEOUT)
                .with_context(|| format!("reading the partitions of {topic}"))?;
            let partitions = metadata.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
            if partitions == 0 {
                bail!("topic {topic} does not exist (or has no partitions): nothing to rebuild from");
            }
            for partition in 0..partitions as i32 {
                let (start, end) = consumer
                    .fetch_watermarks(topic, partition, TIMEOUT)
                    .with_context(|| format!("reading the offsets of {topic}[{partition}]"))?;
                ranges.insert((topic.clone(), partition), Range { start, end, position: start });
            }
        }
        Ok(EndOffsets { ranges })
    }

    #[cfg(test)]
    pub fn from_ranges(ranges: impl IntoIterator<Item = ((&'static str, i32), (i64, i64))>) -> Self {
        let ranges = ranges
            .into_iter()
            .map(|((topic, partition), (start, end))| {
                ((topic.to_string(), partition), Range { start, end, position: start })
            })
            .collect();
        EndOffsets { ranges }
    }

    /// Partitions whose first records retention has already deleted: a view rebuilt from them
    /// would miss those orders.
    pub fn trimmed(&self) -> Vec<String> {
        self.ranges
            .iter()
            .filter(|(_, range)| range.start > 0)
            .map(|((topic, p), range)| format!("{topic}[{p}] starts at {}", range.start))
            .collect()
    }

    /// What the rebuild consumer is assigned: every partition not done yet, from its start.
    pub fn assignment(&self) -> Result<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), range) in self.ranges.iter().filter(|(_, range)| !range.is_done()) {
            list.add_partition_offset(topic, *partition, Offset::Offset(range.start))?;
        }
        Ok(list)
    }

    /// Whether `offset` of the partition is one the rebuild folds in (below the end).
    pub fn wanted(&self, topic: &str, partition: i32, offset: i64) -> bool {
        self.ranges.get(&(topic.to_string(), partition)).is_some_and(|range| offset < range.end)
    }

    /// Records the consumer's position on a partition (positions only move forward). Returns
    /// true when this made the partition done.
    pub fn advance(&mut self, topic: &str, partition: i32, position: i64) -> bool {
        let Some(range) = self.ranges.get_mut(&(topic.to_string(), partition)) else { return false };
        let was_done = range.is_done();
        range.position = range.position.max(position);
        !was_done && range.is_done()
    }

    pub fn all_done(&self) -> bool {
        self.ranges.values().all(Range::is_done)
    }

    /// Partitions not done yet, as `topic[p] at position of end`, for a rebuild that waits.
    pub fn waiting_on(&self) -> Vec<String> {
        self.ranges
            .iter()
            .filter(|(_, range)| !range.is_done())
            .map(|((topic, p), range)| format!("{topic}[{p}] at {} of {}", range.position, range.end))
            .collect()
    }

    /// Partitions whose `committed` offset (the live projector's group) lies beyond the end:
    /// records the live projector folded into the live view that the rebuilt one lacks.
    pub fn overtaken_by(&self, committed: &[(String, i32, i64)]) -> Vec<String> {
        committed
            .iter()
            .filter_map(|(topic, partition, offset)| {
                let range = self.ranges.get(&(topic.clone(), *partition))?;
                (*offset > range.end)
                    .then(|| format!("{topic}[{partition}] committed {offset}, rebuilt up to {}", range.end))
            })
            .collect()
    }

    /// Per topic: (offsets read, offsets to read), for progress.
    pub fn per_topic(&self) -> BTreeMap<&str, (i64, i64)> {
        let mut topics: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for ((topic, _), range) in &self.ranges {
            let entry = topics.entry(topic.as_str()).or_default();
            entry.0 += range.position.min(range.end) - range.start;
            entry.1 += range.end - range.start;
        }
        topics
    }

    pub fn partitions(&self) -> impl Iterator<Item = (&str, i32)> {
        self.ranges.keys().map(|(topic, partition)| (topic.as_str(), *partition))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_done_once_the_position_reaches_its_end_even_without_a_record_there() {
        let mut offsets = EndOffsets::from_ranges([(("a", 0), (0, 10)), (("a", 1), (0, 0)), (("b", 0), (0, 3))]);
        assert!(!offsets.all_done());
        assert!(!offsets.advance("a", 0, 9), "the last record (9) is not read yet");
        // The record at 9 was a commit marker: no record, but the position moves past it.
        assert!(offsets.advance("a", 0, 10));
        assert!(!offsets.advance("a", 0, 11), "done once");
        assert!(!offsets.advance("a", 0, 4), "positions never move back");
        assert_eq!(offsets.waiting_on(), ["b[0] at 0 of 3"]);
        assert!(offsets.advance("b", 0, 3));
        assert!(offsets.all_done(), "an empty partition is done from the start");
        assert!(!offsets.advance("c", 0, 1), "an unknown partition changes nothing");
    }

    #[test]
    fn records_at_or_past_the_end_are_not_folded_in() {
        let offsets = EndOffsets::from_ranges([(("a", 0), (0, 5))]);
        assert!(offsets.wanted("a", 0, 4));
        assert!(!offsets.wanted("a", 0, 5), "produced after the rebuild began");
        assert!(!offsets.wanted("a", 1, 0), "not a partition the rebuild read");
    }

    #[test]
    fn progress_is_counted_per_topic_and_the_assignment_skips_done_partitions() {
        let mut offsets = EndOffsets::from_ranges([(("a", 0), (0, 10)), (("a", 1), (0, 4)), (("b", 0), (2, 6))]);
        offsets.advance("a", 0, 7);
        offsets.advance("a", 1, 4);
        assert_eq!(offsets.per_topic().into_iter().collect::<Vec<_>>(), [("a", (11, 14)), ("b", (0, 4))]);
        assert_eq!(offsets.trimmed(), ["b[0] starts at 2"]);
        let assigned = offsets.assignment().unwrap();
        assert_eq!(assigned.count(), 2);
        assert!(assigned.find_partition("a", 1).is_none(), "done");
        assert_eq!(assigned.find_partition("b", 0).unwrap().offset(), Offset::Offset(2));
    }

    #[test]
    fn a_live_group_that_committed_past_the_end_is_named() {
        let offsets = EndOffsets::from_ranges([(("a", 0), (0, 10)), (("a", 1), (0, 4))]);
        let committed = [("a".to_string(), 0, 10), ("a".to_string(), 1, 6), ("z".to_string(), 0, 99)];
        assert_eq!(offsets.overtaken_by(&committed), ["a[1] committed 6, rebuilt up to 4"]);
    }
}
