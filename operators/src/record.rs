//! Records at the Kafka boundary (bytes) and inside a topology (typed).

/// One Kafka record header. Kafka allows a null value, distinct from an empty one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

impl Header {
    pub fn new(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Header { key: key.into(), value: Some(value.into()) }
    }

    /// A header whose value is null.
    pub fn null(key: impl Into<String>) -> Self {
        Header { key: key.into(), value: None }
    }

    /// The value's bytes; a null value reads as empty.
    pub fn value_bytes(&self) -> &[u8] {
        self.value.as_deref().unwrap_or_default()
    }
}

/// A record as read from Kafka.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
}

/// A record to produce. `partition: None` means key-hashed by the producer (murmur2, like the
/// Java clients).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputRecord {
    pub topic: String,
    pub partition: Option<i32>,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
}

/// A typed record flowing between the nodes of a topology, like Kafka Streams' `Record`.
#[derive(Clone, Debug, PartialEq)]
pub struct Record<K, V> {
    pub key: K,
    pub value: V,
    pub timestamp_ms: i64,
    pub headers: Vec<Header>,
}

impl<K, V> Record<K, V> {
    pub fn new(key: K, value: V, timestamp_ms: i64) -> Self {
        Record { key, value, timestamp_ms, headers: Vec::new() }
    }

    /// The same record with another key; value, timestamp and headers are kept.
    pub fn with_key<K2>(self, key: K2) -> Record<K2, V> {
        Record { key, value: self.value, timestamp_ms: self.timestamp_ms, headers: self.headers }
    }

    /// The same record with another value; key, timestamp and headers are kept.
    pub fn with_value<V2>(self, value: V2) -> Record<K, V2> {
        Record { key: self.key, value, timestamp_ms: self.timestamp_ms, headers: self.headers }
    }

    pub fn with_headers(mut self, headers: Vec<Header>) -> Self {
        self.headers = headers;
        self
    }
}

/// Where the record being processed came from; absent during punctuations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Keys and values that flow through a topology. Records are cloned when a node has several
/// children, and moved between nodes of a task, which may run on any thread.
pub trait Data: Clone + Send + 'static {}

impl<T: Clone + Send + 'static> Data for T {}
