//! The retry lane: where a record with a transient failure waits out its backoff without holding
//! up the other keys of its partition, and where later records of the same key queue behind it.
//!
//! Each sub-topology has one lane topic, `<application_id>-<subtopology>-retry`, read by the same
//! task as its sources (same partition number). A lane record is the original record, byte for
//! byte, plus `retry.*` headers: its per-key sequence number, the attempts made so far, the time
//! before which it must not be tried, and its original topic and offset. The task's index of
//! which keys have records in the lane is derived from the lane itself: on assignment, every lane
//! record after the group's committed lane offset is still waiting. Writing a record to the lane
//! and committing the offset that consumed it happen in one transaction, so a record is in
//! exactly one place: its source, the lane, its outputs, or the dead-letter topic.
//! `docs/retries.md` describes the ordering guarantee.

use std::collections::{BTreeMap, HashMap};

use crate::record::{Header, OutputRecord, RawRecord};

/// The prefix of the lane's own headers, which a dead letter or a retried record sheds.
pub const RETRY_HEADER_PREFIX: &str = "retry.";
const SEQ: &str = "retry.seq";
const ATTEMPTS: &str = "retry.attempts";
const NOT_BEFORE: &str = "retry.not_before";
const ORIGINAL_TOPIC: &str = "retry.original.topic";
const ORIGINAL_OFFSET: &str = "retry.original.offset";
const ORIGINAL_TIMESTAMP: &str = "retry.original.timestamp";

/// The lane topic of a sub-topology.
pub fn retry_lane_topic(application_id: &str, subtopology: usize) -> String {
    format!("{application_id}-{subtopology}-retry")
}

/// A record in the lane: the original and its retry bookkeeping.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LaneEntry {
    /// As first read from its source topic, without `retry.*` headers.
    pub original: RawRecord,
    /// Orders the lane records of one key: lower goes first.
    pub seq: u64,
    /// Attempts made so far: 0 for a record that only waits behind its key.
    pub attempts: u32,
    pub not_before_ms: i64,
}

impl LaneEntry {
    /// The lane record, timestamped `written_at_ms`: a lane holding only records of an old backlog
    /// would otherwise be deleted by the topic's time retention before they were retried.
    pub fn to_output(&self, lane_topic: &str, written_at_ms: i64) -> OutputRecord {
        let original = &self.original;
        let mut headers = original.headers.clone();
        let mut add = |key: &str, value: String| headers.push(Header::new(key, value.into_bytes()));
        add(SEQ, self.seq.to_string());
        add(ATTEMPTS, self.attempts.to_string());
        add(NOT_BEFORE, self.not_before_ms.to_string());
        add(ORIGINAL_TOPIC, original.topic.clone());
        add(ORIGINAL_OFFSET, original.offset.to_string());
        add(ORIGINAL_TIMESTAMP, original.timestamp_ms.to_string());
        OutputRecord {
            topic: lane_topic.to_owned(),
            partition: Some(original.partition),
            timestamp_ms: written_at_ms,
            key: original.key.clone(),
            value: original.value.clone(),
            headers,
        }
    }

    /// Reads a record consumed from a lane; an error names what is missing or malformed.
    pub fn parse(mut lane_record: RawRecord) -> Result<LaneEntry, String> {
        let header = |name: &str| -> Result<String, String> {
            let header =
                lane_record.headers.iter().rev().find(|h| h.key == name).ok_or_else(|| format!("no {name} header"))?;
            String::from_utf8(header.value_bytes().to_vec()).map_err(|_| format!("the {name} header is not UTF-8"))
        };
        let number = |name: &str| -> Result<i64, String> {
            header(name)?.parse().map_err(|_| format!("the {name} header is not a number"))
        };
        let seq = u64::try_from(number(SEQ)?).map_err(|_| format!("the {SEQ} header is negative"))?;
        let attempts =
            u32::try_from(number(ATTEMPTS)?).map_err(|_| format!("the {ATTEMPTS} header is out of range"))?;
        let not_before_ms = number(NOT_BEFORE)?;
        let topic = header(ORIGINAL_TOPIC)?;
        let offset = number(ORIGINAL_OFFSET)?;
        // Lane records written before this header carry the original's timestamp themselves.
        let timestamp_ms = match header(ORIGINAL_TIMESTAMP) {
            Ok(_) => number(ORIGINAL_TIMESTAMP)?,
            Err(_) => lane_record.timestamp_ms,
        };
        lane_record.headers.retain(|h| !h.key.starts_with(RETRY_HEADER_PREFIX));
        let original = RawRecord { topic, offset, timestamp_ms, ..lane_record };
        Ok(LaneEntry { original, seq, attempts, not_before_ms })
    }
}

/// Which keys of one task have records waiting in its lane (sequence number → not-before), with
/// the changes of the open transaction undoable. Records without a key are not ordered
/// (as Kafka orders none), so they are never indexed.
#[derive(Debug, Default)]
pub(crate) struct LaneIndex {
    waiting: HashMap<Vec<u8>, BTreeMap<u64, i64>>,
    next_seq: u64,
    undo: Vec<Undo>,
}

#[derive(Debug)]
enum Undo {
    Inserted { key: Vec<u8>, seq: u64, previous: Option<i64> },
    Removed { key: Vec<u8>, seq: u64, not_before_ms: i64 },
    NextSeq(u64),
}

impl LaneIndex {
    /// The index of the lane records still waiting (those after the committed lane offset).
    pub fn rebuild(waiting: impl IntoIterator<Item = LaneEntry>) -> Self {
        let mut index = LaneIndex::default();
        for entry in waiting {
            index.next_seq = index.next_seq.max(entry.seq + 1);
            if let Some(key) = entry.original.key {
                index.waiting.entry(key).or_default().insert(entry.seq, entry.not_before_ms);
            }
        }
        index
    }

    /// True when records of `key` wait in the lane: a later record of it must queue behind them.
    pub fn is_waiting(&self, key: Option<&[u8]>) -> bool {
        key.is_some_and(|key| self.waiting.contains_key(key))
    }

    /// The first waiting record of `key`: its sequence number and not-before.
    pub fn first_of(&self, key: Option<&[u8]>) -> Option<(u64, i64)> {
        let waiting = self.waiting.get(key?)?;
        waiting.first_key_value().map(|(seq, not_before)| (*seq, *not_before))
    }

    pub fn next_seq(&mut self) -> u64 {
        self.undo.push(Undo::NextSeq(self.next_seq));
        self.next_seq += 1;
        self.next_seq - 1
    }

    pub fn insert(&mut self, key: Option<&[u8]>, seq: u64, not_before_ms: i64) {
        let Some(key) = key else { return };
        let previous = self.waiting.entry(key.to_vec()).or_default().insert(seq, not_before_ms);
        self.undo.push(Undo::Inserted { key: key.to_vec(), seq, previous });
    }

    pub fn remove(&mut self, key: Option<&[u8]>, seq: u64) {
        let Some(key) = key else { return };
        let Some(waiting) = self.waiting.get_mut(key) else { return };
        if let Some(not_before_ms) = waiting.remove(&seq) {
            if waiting.is_empty() {
                self.waiting.remove(key);
            }
            self.undo.push(Undo::Removed { key: key.to_vec(), seq, not_before_ms });
        }
    }

    /// The open transaction committed: its changes stay.
    pub fn commit(&mut self) {
        self.undo.clear();
    }

    /// The open transaction aborted: its changes go, newest first.
    pub fn rollback(&mut self) {
        while let Some(undo) = self.undo.pop() {
            match undo {
                Undo::NextSeq(seq) => self.next_seq = seq,
                Undo::Inserted { key, seq, previous } => {
                    let waiting = self.waiting.entry(key.clone()).or_default();
                    match previous {
                        Some(not_before_ms) => {
                            waiting.insert(seq, not_before_ms);
                        }
                        None => {
                            waiting.remove(&seq);
                        }
                    }
                    if waiting.is_empty() {
                        self.waiting.remove(&key);
                    }
                }
                Undo::Removed { key, seq, not_before_ms } => {
                    self.waiting.entry(key).or_default().insert(seq, not_before_ms);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn original(key: &[u8], offset: i64) -> RawRecord {
        RawRecord {
            topic: "orders".into(),
            partition: 3,
            offset,
            timestamp_ms: 1_000,
            key: Some(key.to_vec()),
            value: Some(vec![0, 1, 2]),
            headers: vec![Header::new("trace", b"t".to_vec()), Header { key: "null".into(), value: None }],
        }
    }

    /// The lane record as a consumer reads it back.
    fn consumed_from_lane(output: &OutputRecord) -> RawRecord {
        RawRecord {
            topic: output.topic.clone(),
            partition: 3,
            offset: 900,
            timestamp_ms: output.timestamp_ms,
            key: output.key.clone(),
            value: output.value.clone(),
            headers: output.headers.clone(),
        }
    }

    fn entry(key: &[u8], seq: u64, not_before_ms: i64) -> LaneEntry {
        LaneEntry { original: original(key, seq as i64), seq, attempts: 1, not_before_ms }
    }

    #[test]
    fn a_lane_record_carries_the_original_byte_for_byte_on_its_partition() {
        let entry = LaneEntry { original: original(b"k", 41), seq: 7, attempts: 2, not_before_ms: 5_000 };
        let output = entry.to_output("app-0-retry", 4_000);
        assert_eq!(
            (output.topic.as_str(), output.partition, output.timestamp_ms),
            ("app-0-retry", Some(3), 4_000),
            "timestamped when written to the lane"
        );
        assert_eq!(
            LaneEntry::parse(consumed_from_lane(&output)).expect("a lane record"),
            entry,
            "with the original's timestamp"
        );
    }

    #[test]
    fn a_lane_record_written_before_the_timestamp_header_keeps_its_own_timestamp() {
        let entry = LaneEntry { original: original(b"k", 41), seq: 7, attempts: 2, not_before_ms: 5_000 };
        let mut output = entry.to_output("app-0-retry", 1_000);
        output.headers.retain(|h| h.key != ORIGINAL_TIMESTAMP);
        assert_eq!(LaneEntry::parse(consumed_from_lane(&output)).expect("a lane record"), entry);
    }

    #[test]
    fn a_lane_record_without_its_bookkeeping_is_refused_with_the_reason() {
        let error = LaneEntry::parse(original(b"k", 1)).expect_err("no retry headers");
        assert_eq!(error, "no retry.seq header");
    }

    #[test]
    fn keys_wait_in_sequence_and_an_abort_undoes_the_open_transaction() {
        let mut index = LaneIndex::rebuild([entry(b"a", 4, 100), entry(b"a", 2, 50), entry(b"b", 3, 70)]);
        assert_eq!(index.first_of(Some(b"a")), Some((2, 50)));
        assert!(index.is_waiting(Some(b"b")) && !index.is_waiting(Some(b"c")) && !index.is_waiting(None));
        assert_eq!(index.next_seq(), 5, "past every waiting record");

        index.commit();
        index.remove(Some(b"a"), 2);
        index.remove(Some(b"b"), 3);
        let seq = index.next_seq();
        index.insert(Some(b"c"), seq, 200);
        index.insert(Some(b"a"), 4, 300);
        assert_eq!(index.first_of(Some(b"a")), Some((4, 300)));
        assert!(index.is_waiting(Some(b"c")) && !index.is_waiting(Some(b"b")));
        index.rollback();
        assert_eq!(index.first_of(Some(b"a")), Some((2, 50)));
        assert_eq!(index.first_of(Some(b"b")), Some((3, 70)));
        assert!(!index.is_waiting(Some(b"c")));
        assert_eq!(index.next_seq(), 6);
    }

    #[test]
    fn records_without_a_key_are_never_ordered() {
        let mut index = LaneIndex::default();
        index.insert(None, 0, 10);
        assert!(!index.is_waiting(None));
        assert_eq!(index.first_of(None), None);
    }
}
