//! Attributes failed deliveries to what produced them: a broker-side rejection (an output over
//! the topic's `max.message.bytes`, say) arrives as a delivery report, long after the send, and
//! must still name the input record whose outputs it was.

use std::sync::{Mutex, MutexGuard};

use rdkafka::client::ClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::ProducerContext;

use super::client_statistics::ClientSnapshot;
use super::internal_events::{ProducerStatistics, RuntimeMetrics, StatisticsUnreadable};

/// What a produced record came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// An output of processing this input record.
    Input { topic: String, partition: i32, offset: i64 },
    /// The dead-letter copy of this input record.
    DeadLetter { topic: String, partition: i32, offset: i64 },
    /// An output of a punctuation, a timer or a batch finished before the commit, of this task.
    Punctuation { task: String },
}

/// A delivery that failed, and what it came from.
#[derive(Clone, Debug)]
pub struct FailedDelivery {
    pub origin: Origin,
    pub topic: String,
    pub error: String,
    code: Option<RDKafkaErrorCode>,
}

impl FailedDelivery {
    /// The broker refused the record for what it is (see [`super::produce::is_record_specific`]),
    /// rather than it being lost with a transaction that failed (purged, erroneous state).
    pub fn blames_the_record(&self) -> bool {
        self.code.is_some_and(super::produce::is_record_specific)
    }
}

/// The producer's context: every record carries the index of its origin in the open
/// transaction; failed deliveries are collected until the next commit or abort looks at them.
/// It also turns the producer's statistics into metrics.
pub struct DeliveryTracker {
    inner: Mutex<Tracked>,
    metrics: RuntimeMetrics,
}

#[derive(Default)]
struct Tracked {
    /// The id of `origins[0]`. Ids are never reused, so a late report from an aborted
    /// transaction matches nothing.
    first_id: usize,
    /// In id order: tracking is a push per input record, on the hot path.
    origins: Vec<Origin>,
    failed: Vec<FailedDelivery>,
}

impl DeliveryTracker {
    pub fn new(metrics: RuntimeMetrics) -> Self {
        DeliveryTracker { inner: Mutex::default(), metrics }
    }

    fn lock(&self) -> MutexGuard<'_, Tracked> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers an origin; its id goes with each of its records as the delivery opaque.
    pub fn track(&self, origin: Origin) -> usize {
        let mut tracked = self.lock();
        let id = tracked.first_id + tracked.origins.len();
        tracked.origins.push(origin);
        id
    }

    /// The failures since the last `reset`.
    pub fn failures(&self) -> Vec<FailedDelivery> {
        self.lock().failed.clone()
    }

    /// Forgets origins and failures: the transaction they belonged to is over.
    pub fn reset(&self) {
        let mut tracked = self.lock();
        tracked.first_id += tracked.origins.len();
        tracked.origins.clear();
        tracked.failed.clear();
    }
}

impl ClientContext for DeliveryTracker {
    fn stats_raw(&self, statistics: &[u8]) {
        match ClientSnapshot::parse(statistics) {
            Ok(snapshot) => ProducerStatistics(&snapshot).emit(&self.metrics),
            Err(error) => StatisticsUnreadable { error: &error }.emit(),
        }
    }
}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, origin: usize) {
        let Err((error, message)) = result else {
            return;
        };
        let mut tracked = self.lock();
        // Unknown: a record of a transaction already aborted, whose failure changes nothing.
        let Some(origin) = origin.checked_sub(tracked.first_id).and_then(|index| tracked.origins.get(index)).cloned()
        else {
            return;
        };
        tracked.failed.push(FailedDelivery {
            origin,
            topic: message.topic().to_string(),
            error: error.to_string(),
            code: error.rdkafka_error_code(),
        });
    }
}
