//! Errors raised while processing records, and the policy the runtime applies to them.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Which stage of record handling failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Bytes from Kafka could not be turned into typed keys or values.
    Deserialization,
    /// User code or an operator rejected the record.
    Processing,
    /// A typed key or value could not be turned into bytes.
    Serialization,
    /// A state store failed.
    Store,
    /// User code panicked; the task caught it and replaced the processor.
    Panic,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::Deserialization,
        ErrorKind::Processing,
        ErrorKind::Serialization,
        ErrorKind::Store,
        ErrorKind::Panic,
    ];

    /// The kind's name, as logs, metric labels and DLQ headers carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Deserialization => "deserialization",
            ErrorKind::Processing => "processing",
            ErrorKind::Serialization => "serialization",
            ErrorKind::Store => "store",
            ErrorKind::Panic => "panic",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the record that failed came from, when the failure happened while handling a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceRecordRef {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A failure while handling one record or one punctuation.
///
/// The task has already discarded every store write and output of the failed unit of work when
/// this is returned, so the runtime may skip, dead-letter or retry the record safely.
///
/// Boxed, so that a `Result<_, ProcessError>` stays one pointer wide on the hot path.
#[derive(Clone, Debug)]
pub struct ProcessError(Box<Details>);

#[derive(Clone, Debug)]
struct Details {
    kind: ErrorKind,
    retriable: bool,
    message: String,
    source_record: Option<SourceRecordRef>,
    processor: Option<String>,
    /// The dependency that is down, when that is why the record failed.
    unavailable: Option<String>,
    cause: Option<Arc<dyn Error + Send + Sync>>,
}

impl ProcessError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProcessError(Box::new(Details {
            kind,
            retriable: false,
            message: message.into(),
            source_record: None,
            processor: None,
            unavailable: None,
            cause: None,
        }))
    }

    pub fn deserialization(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Deserialization, message)
    }

    pub fn processing(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Processing, message)
    }

    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Serialization, message)
    }

    pub fn store(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Store, message)
    }

    /// Marks the error as transient: handling the same record again may succeed.
    pub fn retriable(mut self) -> Self {
        self.0.retriable = true;
        self
    }

    /// A dependency every record needs is down (a database, Redis): no record of the partition
    /// can succeed until it is back. The runtime pauses the partition and tries the same record
    /// again with backoff, for as long as it takes, instead of retrying records one by one.
    pub fn unavailable(dependency: impl Into<String>, message: impl Into<String>) -> Self {
        let mut error = Self::processing(message).retriable();
        error.0.unavailable = Some(dependency.into());
        error
    }

    /// The dependency that is down, if that is why this failed.
    pub fn unavailable_dependency(&self) -> Option<&str> {
        self.0.unavailable.as_deref()
    }

    pub fn with_retriable(mut self, retriable: bool) -> Self {
        self.0.retriable = retriable;
        self
    }

    pub fn with_cause(mut self, cause: impl Error + Send + Sync + 'static) -> Self {
        self.0.cause = Some(Arc::new(cause));
        self
    }

    /// Records where the failing record came from, unless an inner layer already did.
    pub fn with_source_record(mut self, topic: &str, partition: i32, offset: i64) -> Self {
        if self.0.source_record.is_none() {
            self.0.source_record = Some(SourceRecordRef { topic: topic.to_owned(), partition, offset });
        }
        self
    }

    /// Names the processor that failed, unless an inner one already did.
    pub fn with_processor(mut self, processor: &str) -> Self {
        self.0.processor.get_or_insert_with(|| processor.to_owned());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    pub fn is_retriable(&self) -> bool {
        self.0.retriable
    }

    pub fn message(&self) -> &str {
        &self.0.message
    }

    pub fn source_record(&self) -> Option<&SourceRecordRef> {
        self.0.source_record.as_ref()
    }

    pub fn processor(&self) -> Option<&str> {
        self.0.processor.as_deref()
    }

    /// Retriable errors are transient (a schema registry that is down included); bytes that
    /// cannot be read are poison; the rest is permanent.
    pub fn class(&self) -> FailureClass {
        if self.0.retriable {
            FailureClass::Transient
        } else if self.0.kind == ErrorKind::Deserialization {
            FailureClass::Poison
        } else {
            FailureClass::Permanent
        }
    }
}

/// How a failure is handled: a transient one is retried with backoff, a permanent or poison one
/// goes to the dead-letter topic at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// Trying again later may succeed (a dependency down, a timeout).
    Transient,
    /// Trying again cannot succeed without a change (a bug, bad data that decodes).
    Permanent,
    /// The bytes cannot be read: bad magic byte, unknown schema id, truncated Avro, a schema
    /// that does not resolve.
    Poison,
}

impl FailureClass {
    pub const ALL: [FailureClass; 3] = [FailureClass::Transient, FailureClass::Permanent, FailureClass::Poison];

    /// As the `dlq.error.class` header and metric labels carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Transient => "transient",
            FailureClass::Permanent => "permanent",
            FailureClass::Poison => "poison",
        }
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error", self.0.kind)?;
        if let Some(at) = &self.0.source_record {
            write!(f, " on record {}-{}@{}", at.topic, at.partition, at.offset)?;
        }
        write!(f, ": {}", self.0.message)?;
        if let Some(cause) = &self.0.cause {
            write!(f, ": {cause}")?;
        }
        if self.0.retriable {
            f.write_str(" (retriable)")?;
        }
        Ok(())
    }
}

impl Error for ProcessError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.cause.as_deref().map(|cause| cause as &(dyn Error + 'static))
    }
}

/// What the runtime does with a record whose processing failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// Drop the record and move on.
    Skip,
    /// Produce the original record to a dead-letter topic, in the same transaction, and move on.
    DeadLetter,
    /// Retry a transient failure with backoff, without holding up the other keys of its
    /// partition, and dead-letter it once its attempts are spent; permanent and poison failures
    /// are dead-lettered at once. See `docs/retries.md`.
    Retry(RetryPolicy),
}

impl Default for ErrorPolicy {
    fn default() -> Self {
        ErrorPolicy::Retry(RetryPolicy::default())
    }
}

/// Exponential backoff for transient failures: `initial_backoff`, times `multiplier` per retry,
/// at most `max_backoff`, for at most `max_attempts` attempts in all (the first included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial_backoff: Duration,
    pub multiplier: u32,
    pub max_backoff: Duration,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_secs(1),
            multiplier: 2,
            max_backoff: Duration::from_secs(60),
            max_attempts: 5,
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`, after `attempt` attempts failed (`attempt` >= 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = self.multiplier.max(1).saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_kind_source_and_cause() {
        let cause = std::io::Error::other("disk full");
        let error =
            ProcessError::store("cannot write").with_cause(cause).with_source_record("orders", 3, 42).retriable();
        assert_eq!(error.to_string(), "store error on record orders-3@42: cannot write: disk full (retriable)");
        assert!(error.source().is_some());
    }

    #[test]
    fn inner_source_record_wins() {
        let error = ProcessError::processing("x").with_source_record("a", 0, 1).with_source_record("b", 1, 2);
        assert_eq!(error.source_record().map(|at| at.topic.as_str()), Some("a"));
    }

    #[test]
    fn the_default_policy_retries_with_doubling_backoff_up_to_a_minute() {
        let ErrorPolicy::Retry(policy) = ErrorPolicy::default() else { panic!("the default policy retries") };
        let waits: Vec<u64> = (1..=8).map(|attempt| policy.backoff(attempt).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(policy.max_attempts, 5);
    }

    #[test]
    fn failures_fall_into_three_classes() {
        assert_eq!(ProcessError::processing("redis down").retriable().class(), FailureClass::Transient);
        assert_eq!(ProcessError::deserialization("registry down").retriable().class(), FailureClass::Transient);
        assert_eq!(ProcessError::deserialization("bad magic byte").class(), FailureClass::Poison);
        assert_eq!(ProcessError::processing("bug").class(), FailureClass::Permanent);
    }
}
