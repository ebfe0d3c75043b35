//! Builds the dead-letter record of a failed input record: the original key, value and headers,
//! plus `dlq.*` headers naming where it came from and why it failed (the fields Kafka Connect's
//! `__connect.errors.*` and Spring Kafka's `kafka_dlt-*` carry).

use crate::error::ProcessError;
use crate::record::{Header, OutputRecord, RawRecord};

use super::topics::dead_letter_topic;

pub fn dead_letter_record(
    record: RawRecord,
    group: &str,
    reason: &FailureReason<'_>,
    attempts: u32,
) -> OutputRecord {
    let mut headers = record.headers;
    headers.retain(|h| !h.key.starts_with("dlq."));
    let mut add = |key: &str, value: String| headers.push(Header::new(key, value.into_bytes()));
    add("dlq.original.topic", record.topic.clone());
    add("dlq.original.partition", record.partition.to_string());
    add("dlq.original.offset", record.offset.to_string());
    add("dlq.original.timestamp", record.timestamp_ms.to_string());
    add("dlq.consumer.group", group.to_string());
    add("dlq.exception.class", reason.class());
    add("dlq.exception.message", reason.message());
    add("dlq.attempts", attempts.to_string());
    OutputRecord {
        topic: dead_letter_topic(&record.topic),
        partition: None,
        timestamp_ms: record.timestamp_ms,
        key: record.key,
        value: record.value,
        headers,
    }
}

/// Why a record is dead-lettered: its processing returned an error, or it broke the whole
/// transaction (an output that cannot be produced, a panic) and was set aside on replay.
pub enum FailureReason<'a> {
    Process(&'a ProcessError),
    Poisoned(&'a Poison),
}

/// A record that aborted a transaction: dead-lettered instead of processed when replayed.
#[derive(Clone, Debug)]
pub struct Poison {
    pub class: &'static str,
    pub message: String,
}

impl FailureReason<'_> {
    pub fn class(&self) -> String {
        match self {
            FailureReason::Process(e) => e.kind().as_str().into(),
            FailureReason::Poisoned(poison) => poison.class.into(),
        }
    }

    pub fn message(&self) -> String {
        match self {
            FailureReason::Process(e) => e.to_string(),
            FailureReason::Poisoned(poison) => poison.message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_original_and_says_why() {
        let record = RawRecord {
            topic: "orders".into(),
            partition: 2,
            offset: 41,
            timestamp_ms: 1000,
            key: Some(b"k".to_vec()),
            value: Some(vec![0xff]),
            headers: vec![Header::new("trace", b"t".to_vec())],
        };
        let error = ProcessError::deserialization("bad magic byte");
        let out = dead_letter_record(record, "app", &FailureReason::Process(&error), 1);
        assert_eq!(out.topic, "orders.dlq");
        assert_eq!(out.value, Some(vec![0xff]));
        let header = |k: &str| {
            out.headers
                .iter()
                .find(|h| h.key == k)
                .map(|h| String::from_utf8(h.value_bytes().to_vec()).unwrap())
        };
        assert_eq!(header("trace").as_deref(), Some("t"));
        assert_eq!(header("dlq.original.offset").as_deref(), Some("41"));
        assert_eq!(
            header("dlq.exception.class").as_deref(),
            Some("deserialization")
        );
        assert_eq!(
            header("dlq.exception.message").as_deref(),
            Some("deserialization error: bad magic byte")
        );
    }
}
