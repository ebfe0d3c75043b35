//! Every observable happening of the DLQ index and its admin API as a small event: `emit()` logs
//! it and updates its metric. Labels are bounded: the DLQ topics, as in `dlq_records_total`.

use std::collections::BTreeSet;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use operators::metrics::{family, register_default};
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts};

struct DlqMetrics {
    pending: IntGaugeVec,
    indexed: IntCounterVec,
    reprocessed: IntCounter,
    discarded: IntCounter,
    /// DLQ topics the gauge has shown: one that drops out of the table's counts is set to 0.
    shown_topics: Mutex<BTreeSet<String>>,
}

/// Registered once in the default registry, which the admin endpoint serves.
static METRICS: LazyLock<DlqMetrics> = LazyLock::new(|| {
    let metrics = DlqMetrics {
        pending: family(IntGaugeVec::new(
            Opts::new("dlq_pending", "DLQ entries waiting for an operator (status PENDING), by DLQ topic"),
            &["topic"],
        )),
        indexed: family(IntCounterVec::new(
            Opts::new("dlq_indexed_total", "Dead letters the DLQ indexer added to the index, by DLQ topic"),
            &["topic"],
        )),
        reprocessed: family(IntCounter::new(
            "dlq_reprocessed_total",
            "DLQ entries published again to their original topic",
        )),
        discarded: family(IntCounter::new("dlq_discarded_total", "DLQ entries an operator discarded")),
        shown_topics: Mutex::default(),
    };
    register_default(
        "dlq",
        [
            Box::new(metrics.pending.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.indexed.clone()),
            Box::new(metrics.reprocessed.clone()),
            Box::new(metrics.discarded.clone()),
        ],
    );
    metrics
});

pub struct EntryIndexed<'a> {
    pub dlq_topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// False when the record was indexed before (read again after a restart).
    pub new: bool,
}
impl EntryIndexed<'_> {
    pub fn emit(self) {
        tracing::debug!(
            topic = self.dlq_topic,
            partition = self.partition,
            offset = self.offset,
            new = self.new,
            "dead letter indexed"
        );
        if self.new {
            METRICS.indexed.with_label_values(&[self.dlq_topic]).inc();
        }
    }
}

pub struct IndexingFailed<'a> {
    pub dlq_topic: &'a str,
    pub offset: i64,
    pub error: &'a dyn std::error::Error,
    pub retry_in: Duration,
}
impl IndexingFailed<'_> {
    pub fn emit(self) {
        tracing::warn!(topic = self.dlq_topic, offset = self.offset, error = %self.error, retry_in = ?self.retry_in, "indexing a dead letter failed; retrying");
    }
}

pub struct IndexerConsumeFailed<'a> {
    pub error: &'a dyn std::error::Error,
}
impl IndexerConsumeFailed<'_> {
    pub fn emit(self) {
        tracing::warn!(error = %self.error, "DLQ indexer consumer error");
    }
}

pub struct IndexerCommitFailed<'a> {
    pub error: &'a dyn std::error::Error,
}
impl IndexerCommitFailed<'_> {
    pub fn emit(self) {
        // Harmless for correctness: the records are read again and already indexed.
        tracing::warn!(error = %self.error, "committing DLQ indexer offsets failed");
    }
}

/// The PENDING counts per DLQ topic, as the table has them now.
pub struct PendingCounted<'a> {
    pub counts: &'a [(String, i64)],
}
impl PendingCounted<'_> {
    pub fn emit(self) {
        let mut shown = METRICS.shown_topics.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for topic in shown.iter() {
            if !self.counts.iter().any(|(counted, _)| counted == topic) {
                METRICS.pending.with_label_values(&[topic]).set(0);
            }
        }
        for (topic, count) in self.counts {
            METRICS.pending.with_label_values(&[topic]).set(*count);
            shown.insert(topic.clone());
        }
    }
}

pub struct PendingCountFailed<'a> {
    pub error: &'a dyn std::error::Error,
}
impl PendingCountFailed<'_> {
    pub fn emit(self) {
        tracing::warn!(error = %self.error, "counting pending DLQ entries failed; dlq_pending keeps its last values");
    }
}

pub struct EntryReprocessed {
    pub id: i64,
}
impl EntryReprocessed {
    pub fn emit(self) {
        tracing::debug!(id = self.id, "DLQ entry published again");
        METRICS.reprocessed.inc();
    }
}

/// Published and committed to Kafka, but the entry could not be marked: a later reprocess of it
/// publishes it again (downstream deduplicates by event id).
pub struct MarkAfterPublishFailed<'a> {
    pub id: i64,
    pub error: &'a dyn std::error::Error,
}
impl MarkAfterPublishFailed<'_> {
    pub fn emit(self) {
        tracing::error!(id = self.id, error = %self.error, "DLQ entry republished but not marked REPROCESSED; it is still PENDING");
        METRICS.reprocessed.inc();
    }
}

pub struct EntryDiscarded {
    pub id: i64,
}
impl EntryDiscarded {
    pub fn emit(self) {
        tracing::debug!(id = self.id, "DLQ entry discarded");
        METRICS.discarded.inc();
    }
}
