//! A dead letter as the index keeps it: read from a `<topic>.dlq` record and its `dlq.*` headers
//! (operators/src/runtime/dead_letter.rs writes them; so does the projector).

use operators::record::{Header, RawRecord};
use operators::runtime::REPROCESSED_FROM_HEADER;

/// `dlq.error.class`, as the runtime writes it (`as_str`; the schema's names are the same,
/// checked by a test).
#[derive(Clone, Copy, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = DlqErrorClass, rename_all = "lowercase")]
pub enum ErrorClass {
    Transient,
    Permanent,
    Poison,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 3] = [ErrorClass::Transient, ErrorClass::Permanent, ErrorClass::Poison];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Poison => "poison",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|class| class.as_str() == text)
    }
}

/// What became of an entry: PENDING until an operator reprocesses or discards it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = DlqStatus, rename_all = "UPPERCASE")]
pub enum Status {
    Pending,
    Reprocessed,
    Discarded,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Pending, Status::Reprocessed, Status::Discarded];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Reprocessed => "REPROCESSED",
            Status::Discarded => "DISCARDED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

/// One DLQ record, ready to be indexed. Fields whose header is missing or unreadable are `None`:
/// the record is indexed all the same, never skipped.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEntry {
    pub dlq_topic: String,
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: Option<i64>,
    pub original_timestamp: Option<i64>,
    pub consumer_group: Option<String>,
    pub processor: Option<String>,
    pub error_class: Option<ErrorClass>,
    pub error_message: Option<String>,
    pub attempts: Option<i32>,
    pub failed_at_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// The original record's headers, in order, without the `dlq.*` ones.
    pub headers: Vec<Header>,
    /// The entry this record was reprocessed from (`dlq.reprocessed.from`), when it failed again.
    pub reprocessed_from: Option<i64>,
}

impl NewEntry {
    pub fn from_record(record: RawRecord) -> Self {
        let text = |key: &str| header(&record.headers, key).map(text);
        let number = |key: &str| text(key).and_then(|value| value.trim().parse::<i64>().ok());
        let original_topic = text("dlq.original.topic")
            .filter(|topic| !topic.is_empty())
            .unwrap_or_else(|| record.topic.strip_suffix(".dlq").unwrap_or(&record.topic).to_string());
        NewEntry {
            original_topic,
            original_partition: number("dlq.original.partition")
                .and_then(|p| i32::try_from(p).ok())
                .unwrap_or(record.partition),
            original_offset: number("dlq.original.offset"),
            original_timestamp: number("dlq.original.timestamp"),
            consumer_group: text("dlq.consumer.group"),
            processor: text("dlq.processor"),
            error_class: text("dlq.error.class").and_then(|class| ErrorClass::parse(&class)),
            error_message: text("dlq.error.message"),
            attempts: number("dlq.attempts").and_then(|n| i32::try_from(n).ok()),
            failed_at_ms: number("dlq.failed.at"),
            reprocessed_from: number(REPROCESSED_FROM_HEADER).filter(|id| *id > 0),
            headers: record.headers.iter().filter(|h| !h.key.starts_with("dlq.")).cloned().collect(),
            dlq_topic: record.topic,
            dlq_partition: record.partition,
            dlq_offset: record.offset,
            key: record.key,
            value: record.value,
        }
    }
}

fn header<'a>(headers: &'a [Header], key: &str) -> Option<&'a [u8]> {
    headers.iter().find(|h| h.key == key).and_then(|h| h.value.as_deref())
}

/// Header bytes as PostgreSQL text: lossy UTF-8, and no NUL (text cannot hold one, and one bad
/// header must not stop the indexer).
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\u{FFFD}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_letter(headers: Vec<Header>) -> RawRecord {
        RawRecord {
            topic: "order.events.dlq".into(),
            partition: 3,
            offset: 12,
            timestamp_ms: 99,
            key: Some(b"order-1".to_vec()),
            value: Some(vec![0xde, 0xad]),
            headers,
        }
    }

    #[test]
    fn the_dlq_headers_become_fields_and_the_original_headers_stay_as_they_were() {
        let headers = vec![
            Header::new("traceparent", b"00-abc".to_vec()),
            Header::null("nothing"),
            Header::new("binary", vec![0xff, 0x00]),
            Header::new("dlq.original.topic", b"order.events".to_vec()),
            Header::new("dlq.original.partition", b"2".to_vec()),
            Header::new("dlq.original.offset", b"41".to_vec()),
            Header::new("dlq.original.timestamp", b"1000".to_vec()),
            Header::new("dlq.consumer.group", b"payment".to_vec()),
            Header::new("dlq.processor", b"source".to_vec()),
            Header::new("dlq.error.class", b"poison".to_vec()),
            Header::new("dlq.error.message", b"bad magic\0byte".to_vec()),
            Header::new("dlq.attempts", b"1".to_vec()),
            Header::new("dlq.failed.at", b"5000".to_vec()),
            Header::new(REPROCESSED_FROM_HEADER, b"7".to_vec()),
        ];
        let entry = NewEntry::from_record(dead_letter(headers));
        assert_eq!((entry.dlq_topic.as_str(), entry.dlq_partition, entry.dlq_offset), ("order.events.dlq", 3, 12));
        assert_eq!((entry.original_topic.as_str(), entry.original_partition), ("order.events", 2));
        assert_eq!((entry.original_offset, entry.original_timestamp), (Some(41), Some(1000)));
        assert_eq!((entry.consumer_group.as_deref(), entry.processor.as_deref()), (Some("payment"), Some("source")));
        assert_eq!(entry.error_class, Some(ErrorClass::Poison));
        assert_eq!(entry.error_message.as_deref(), Some("bad magic\u{FFFD}byte"), "no NUL reaches PostgreSQL text");
        assert_eq!((entry.attempts, entry.failed_at_ms, entry.reprocessed_from), (Some(1), Some(5000), Some(7)));
        assert_eq!((entry.key.as_deref(), entry.value.as_deref()), (Some(&b"order-1"[..]), Some(&[0xde, 0xad][..])));
        assert_eq!(
            entry.headers,
            vec![
                Header::new("traceparent", b"00-abc".to_vec()),
                Header::null("nothing"),
                Header::new("binary", vec![0xff, 0x00])
            ],
            "the original headers, in order, byte for byte, without the dlq.* ones"
        );
    }

    #[test]
    fn a_record_without_dlq_headers_is_indexed_with_what_its_place_says() {
        let entry = NewEntry::from_record(dead_letter(vec![Header::new("dlq.error.class", b"weird".to_vec())]));
        assert_eq!((entry.original_topic.as_str(), entry.original_partition), ("order.events", 3));
        assert_eq!(
            (entry.original_offset, entry.error_class, entry.attempts, entry.reprocessed_from),
            (None, None, None, None)
        );
    }

    #[test]
    fn statuses_and_classes_parse_only_their_own_names() {
        assert_eq!(Status::parse("PENDING"), Some(Status::Pending));
        assert_eq!(Status::parse("pending"), None);
        assert_eq!(ErrorClass::parse("poison"), Some(ErrorClass::Poison));
        assert_eq!(ErrorClass::parse("Poison"), None);
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
    }
}
