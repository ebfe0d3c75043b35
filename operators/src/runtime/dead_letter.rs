//! Builds the dead-letter record of a failed input record: the original key, value and headers,
//! plus `dlq.*` headers naming where it came from and why it failed (the fields Kafka Connect's
//! `__connect.errors.*` and Spring Kafka's `kafka_dlt-*` carry).

use crate::error::{FailureClass, ProcessError};
use crate::record::{Header, OutputRecord, RawRecord};

use super::retry::RETRY_HEADER_PREFIX;
use super::topics::dead_letter_topic;

/// Set by the DLQ admin's reprocess: the id of the DLQ entry a record was published again from.
/// Kept when that record fails again, so its new entry links to the old one.
pub const REPROCESSED_FROM_HEADER: &str = "dlq.reprocessed.from";

pub fn dead_letter_record(
    record: RawRecord,
    group: &str,
    reason: &FailureReason<'_>,
    attempts: u32,
    failed_at_ms: i64,
) -> OutputRecord {
    let mut headers = record.headers;
    // An earlier dead letter's dlq.* headers would contradict ours; its reprocess link would not.
    headers.retain(|h| {
        (h.key == REPROCESSED_FROM_HEADER || !h.key.starts_with("dlq.")) && !h.key.starts_with(RETRY_HEADER_PREFIX)
    });
    let mut add = |key: &str, value: String| headers.push(Header::new(key, value.into_bytes()));
    add("dlq.original.topic", record.topic.clone());
    add("dlq.original.partition", record.partition.to_string());
    add("dlq.original.offset", record.offset.to_string());
    add("dlq.original.timestamp", record.timestamp_ms.to_string());
    add("dlq.consumer.group", group.to_string());
    add("dlq.processor", reason.processor().to_string());
    add("dlq.error.class", reason.class().as_str().to_string());
    add("dlq.error.message", reason.message());
    add("dlq.attempts", attempts.to_string());
    add("dlq.failed.at", failed_at_ms.to_string());
    OutputRecord {
        topic: dead_letter_topic(&record.topic),
        // The same partition number: a record's neighbours in the DLQ are its neighbours in the
        // source (the DLQ has as many partitions as the widest source topic).
        partition: Some(record.partition),
        // When it failed, not the original's time (that is `dlq.original.timestamp`): the DLQ's
        // time retention would delete the letters of an old backlog minutes after writing them.
        timestamp_ms: failed_at_ms,
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
    /// What broke: `produce` (an output the broker rejects) or `panic`.
    pub cause: &'static str,
    pub message: String,
}

impl FailureReason<'_> {
    /// A record that broke a transaction fails the same way every time.
    pub fn class(&self) -> FailureClass {
        match self {
            FailureReason::Process(e) => e.class(),
            FailureReason::Poisoned(_) => FailureClass::Permanent,
        }
    }

    /// The processor that failed, or what did when no processor did.
    pub fn processor(&self) -> &str {
        match self {
            FailureReason::Process(e) => e.processor().unwrap_or("source"),
            FailureReason::Poisoned(poison) => poison.cause,
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
    fn keeps_the_original_on_its_partition_and_says_why() {
        let record = RawRecord {
            topic: "orders".into(),
            partition: 2,
            offset: 41,
            timestamp_ms: 1000,
            key: Some(b"k".to_vec()),
            value: Some(vec![0xff]),
            headers: vec![
                Header::new("trace", b"t".to_vec()),
                Header::new("retry.attempts", b"2".to_vec()),
                Header::new("dlq.error.message", b"an earlier failure".to_vec()),
                Header::new(REPROCESSED_FROM_HEADER, b"17".to_vec()),
            ],
        };
        let error = ProcessError::deserialization("bad magic byte").with_processor("decode");
        let out = dead_letter_record(record, "app", &FailureReason::Process(&error), 1, 5_000);
        assert_eq!((out.topic.as_str(), out.partition), ("orders.dlq", Some(2)));
        assert_eq!(out.timestamp_ms, 5_000, "timestamped when it failed; the original's time is a header");
        assert_eq!((out.key.as_deref(), out.value.as_deref()), (Some(&b"k"[..]), Some(&[0xff][..])));
        let header = |k: &str| {
            out.headers.iter().find(|h| h.key == k).map(|h| String::from_utf8_lossy(h.value_bytes()).into_owned())
        };
        assert_eq!(header("trace").as_deref(), Some("t"));
        assert_eq!(header("retry.attempts"), None, "the retry lane's bookkeeping stays behind");
        assert_eq!(
            header(REPROCESSED_FROM_HEADER).as_deref(),
            Some("17"),
            "the link to the entry it was reprocessed from survives"
        );
        let messages = out.headers.iter().filter(|h| h.key == "dlq.error.message").count();
        assert_eq!(messages, 1, "an earlier dead letter's headers are replaced, not repeated");
        let expected = [
            ("dlq.original.topic", "orders"),
            ("dlq.original.partition", "2"),
            ("dlq.original.offset", "41"),
            ("dlq.original.timestamp", "1000"),
            ("dlq.consumer.group", "app"),
            ("dlq.processor", "decode"),
            ("dlq.error.class", "poison"),
            ("dlq.error.message", "deserialization error: bad magic byte"),
            ("dlq.attempts", "1"),
            ("dlq.failed.at", "5000"),
        ];
        for (key, value) in expected {
            assert_eq!(header(key).as_deref(), Some(value), "{key}");
        }
    }

    #[test]
    fn a_transient_failure_that_ran_out_of_attempts_is_named_so() {
        let error = ProcessError::processing("redis down").retriable();
        assert_eq!(FailureReason::Process(&error).class(), FailureClass::Transient);
        assert_eq!(FailureReason::Process(&ProcessError::processing("bug")).class(), FailureClass::Permanent);
        let poison = Poison { cause: "produce", message: "too large".into() };
        assert_eq!(
            (FailureReason::Poisoned(&poison).class(), FailureReason::Poisoned(&poison).processor()),
            (FailureClass::Permanent, "produce")
        );
    }
}
