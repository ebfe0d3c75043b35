//! Errors raised while processing records, and the policy the runtime applies to them.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

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
#[derive(Clone, Debug)]
pub struct ProcessError {
    kind: ErrorKind,
    retriable: bool,
    message: String,
    source_record: Option<SourceRecordRef>,
    cause: Option<Arc<dyn Error + Send + Sync>>,
}

impl ProcessError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProcessError {
            kind,
            retriable: false,
            message: message.into(),
            source_record: None,
            cause: None,
        }
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
        self.retriable = true;
        self
    }

    pub fn with_retriable(mut self, retriable: bool) -> Self {
        self.retriable = retriable;
        self
    }

    pub fn with_cause(mut self, cause: impl Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }

    /// Records where the failing record came from, unless an inner layer already did.
    pub fn with_source_record(mut self, topic: &str, partition: i32, offset: i64) -> Self {
        if self.source_record.is_none() {
            self.source_record = Some(SourceRecordRef {
                topic: topic.to_owned(),
                partition,
                offset,
            });
        }
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn is_retriable(&self) -> bool {
        self.retriable
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn source_record(&self) -> Option<&SourceRecordRef> {
        self.source_record.as_ref()
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error", self.kind)?;
        if let Some(at) = &self.source_record {
            write!(f, " on record {}-{}@{}", at.topic, at.partition, at.offset)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        if self.retriable {
            f.write_str(" (retriable)")?;
        }
        Ok(())
    }
}

impl Error for ProcessError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.cause
            .as_deref()
            .map(|cause| cause as &(dyn Error + 'static))
    }
}

/// What the runtime does with a record whose processing failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// Drop the record and move on.
    Skip,
    /// Produce the original record to a dead-letter topic, in the same transaction, and move on.
    #[default]
    DeadLetter,
    /// Handle the record again, up to `max_attempts` times in total, before dead-lettering it.
    Retry { max_attempts: u32 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_kind_source_and_cause() {
        let cause = std::io::Error::other("disk full");
        let error = ProcessError::store("cannot write")
            .with_cause(cause)
            .with_source_record("orders", 3, 42)
            .retriable();
        assert_eq!(
            error.to_string(),
            "store error on record orders-3@42: cannot write: disk full (retriable)"
        );
        assert!(error.source().is_some());
    }

    #[test]
    fn inner_source_record_wins() {
        let error = ProcessError::processing("x")
            .with_source_record("a", 0, 1)
            .with_source_record("b", 1, 2);
        assert_eq!(error.source_record().map(|at| at.topic.as_str()), Some("a"));
    }

    #[test]
    fn default_policy_dead_letters() {
        assert_eq!(ErrorPolicy::default(), ErrorPolicy::DeadLetter);
    }
}
