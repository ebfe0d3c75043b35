//! Every observable happening of the projector as a small event: `emit()` logs it and updates its
//! metric. The metric names live here; labels are fixed and bounded (topic, outcome).

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use operators::metrics::{family, register_default};
use prometheus::{Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts};

struct ProjectorMetrics {
    events: IntCounterVec,
    batch_events: HistogramVec,
    lag_seconds: Gauge,
    requiring_intervention: IntGauge,
}

/// Registered once in the default registry, which the admin endpoint serves.
static METRICS: LazyLock<ProjectorMetrics> = LazyLock::new(|| {
    let metrics = ProjectorMetrics {
        events: family(IntCounterVec::new(
            Opts::new("projector_events_total", "Records the projector handled, by topic and outcome"),
            &["topic", "outcome"],
        )),
        batch_events: family(HistogramVec::new(
            HistogramOpts::new(
                "projector_batch_events",
                "Records per batch the projector wrote in one PostgreSQL transaction, by consumer group",
            )
            .buckets(vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0]),
            &["group"],
        )),
        lag_seconds: family(Gauge::new(
            "projector_lag_seconds",
            "Now minus occurred_at of the event applied last (or being retried): how far order_view is behind",
        )),
        requiring_intervention: family(IntGauge::new(
            "saga_orders_requiring_intervention",
            "Orders the read model shows in REQUIRES_INTERVENTION: parked, waiting for an operator",
        )),
    };
    register_default(
        "projector",
        [
            Box::new(metrics.events.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.batch_events.clone()),
            Box::new(metrics.lag_seconds.clone()),
            Box::new(metrics.requiring_intervention.clone()),
        ],
    );
    metrics
});

fn count(topic: &str, outcome: &str) {
    METRICS.events.with_label_values(&[topic, outcome]).inc();
}

fn observe_lag(occurred_at_ms: i64) {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as i64;
    METRICS.lag_seconds.set(now_ms.saturating_sub(occurred_at_ms).max(0) as f64 / 1000.0);
}

pub struct ParkedOrdersCounted {
    pub count: i64,
}
impl ParkedOrdersCounted {
    pub fn emit(self) {
        METRICS.requiring_intervention.set(self.count);
    }
}

pub struct ParkedOrdersCountFailed<'a> {
    pub error: &'a dyn std::error::Error,
}
impl ParkedOrdersCountFailed<'_> {
    pub fn emit(self) {
        tracing::warn!(error = %self.error, "counting the orders in REQUIRES_INTERVENTION failed; the gauge keeps its last value");
    }
}

pub struct EventApplied<'a> {
    pub topic: &'a str,
    pub event_type: &'a str,
    pub order_id: &'a str,
    pub occurred_at_ms: i64,
    pub status: &'a str,
    pub version: i64,
}
impl EventApplied<'_> {
    pub fn emit(self) {
        tracing::debug!(
            topic = self.topic,
            event_type = self.event_type,
            order_id = self.order_id,
            status = self.status,
            version = self.version,
            "projected"
        );
        count(self.topic, "applied");
        observe_lag(self.occurred_at_ms);
    }
}

/// The outcomes `projector_events_total` counts, per topic.
const OUTCOMES: [&str; 5] = ["applied", "duplicate", "undecodable", "decode_retried", "db_error"];

/// The projector subscribed to `topics`: their outcomes start at 0, so that a first
/// undecodable record or database error is an increase Prometheus sees.
pub struct ProjectorStarted<'a> {
    pub group: &'a str,
    pub topics: &'a [String],
}
impl ProjectorStarted<'_> {
    pub fn emit(self) {
        tracing::info!(group = self.group, topics = ?self.topics, "projector started");
        for topic in self.topics {
            for outcome in OUTCOMES {
                METRICS.events.with_label_values(&[topic, outcome]);
            }
        }
    }
}

pub struct BatchProjected<'a> {
    pub group: &'a str,
    pub records: usize,
}
impl BatchProjected<'_> {
    pub fn emit(self) {
        METRICS.batch_events.with_label_values(&[self.group]).observe(self.records as f64);
    }
}

pub struct DuplicateSkipped<'a> {
    pub topic: &'a str,
    pub event_id: &'a str,
}
impl DuplicateSkipped<'_> {
    pub fn emit(self) {
        tracing::debug!(topic = self.topic, event_id = self.event_id, "already projected; skipped");
        count(self.topic, "duplicate");
    }
}

pub struct RecordUndecodable<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub error: &'a str,
}
impl RecordUndecodable<'_> {
    pub fn emit(self) {
        tracing::warn!(
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            error = self.error,
            "record is not a saga event; dead-lettered and its order flagged"
        );
        count(self.topic, "undecodable");
    }
}

pub struct DecodeRetried<'a> {
    pub topic: &'a str,
    pub offset: i64,
    pub error: &'a str,
    pub retry_in: std::time::Duration,
}
impl DecodeRetried<'_> {
    pub fn emit(self) {
        tracing::warn!(topic = self.topic, offset = self.offset, error = self.error, retry_in = ?self.retry_in, "cannot decode the record for now; retrying");
        count(self.topic, "decode_retried");
    }
}

pub struct ProjectionFailed<'a> {
    pub topic: &'a str,
    pub events: usize,
    pub first_event_id: &'a str,
    pub occurred_at_ms: i64,
    pub error: &'a dyn std::error::Error,
    pub retry_in: Duration,
}
impl ProjectionFailed<'_> {
    pub fn emit(self) {
        tracing::warn!(topic = self.topic, events = self.events, first_event_id = self.first_event_id, error = %self.error,
            retry_in_ms = self.retry_in.as_millis() as u64, "projecting a batch failed; retrying");
        count(self.topic, "db_error");
        // The read model falls behind while this batch waits: the lag alert should see it.
        observe_lag(self.occurred_at_ms);
    }
}

pub struct ConsumeFailed<'a> {
    pub error: &'a dyn std::error::Error,
}
impl ConsumeFailed<'_> {
    pub fn emit(self) {
        tracing::warn!(error = %self.error, "projector consumer error");
    }
}

pub struct OffsetsCommitFailed<'a> {
    pub error: &'a dyn std::error::Error,
}
impl OffsetsCommitFailed<'_> {
    pub fn emit(self) {
        // Harmless for correctness: the records are read again and skipped as duplicates.
        tracing::warn!(error = %self.error, "committing projector offsets failed");
    }
}
