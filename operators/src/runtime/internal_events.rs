//! Every observable happening of the runtime as a small event: `emit()` logs it and updates its
//! metric. All metric names live here; labels are fixed and bounded.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::client_statistics::ClientSnapshot;
use super::state::State;
use crate::clock::{Clock, SystemClock};
use crate::error::{ErrorKind, ErrorPolicy, FailureClass};
use crate::metrics::{family, register};

/// The runtime's metrics for one application, registered in the registry it was given.
#[derive(Clone)]
pub struct RuntimeMetrics {
    application_id: String,
    families: &'static Families,
    /// Bumped once per record: bound to its label up front, off the hot path's hashing.
    records_processed: prometheus::IntCounter,
    process_latency: prometheus::Histogram,
    event_time_lag: prometheus::Histogram,
}

/// The metric families, created once per process: every application in the process shares them
/// (their `application_id` label tells them apart), so a second application registering the same
/// names cannot end up writing to collectors no registry exposes.
struct Families {
    records_processed: IntCounterVec,
    records_failed: IntCounterVec,
    transactions: IntCounterVec,
    commit_duration: HistogramVec,
    commit_interval: GaugeVec,
    restore_records: IntCounterVec,
    restore_duration: HistogramVec,
    restore_waiting: GaugeVec,
    tasks_assigned: IntGaugeVec,
    dead_lettered: IntCounterVec,
    retried: IntCounterVec,
    waiting_on_dependency: IntGaugeVec,
    store_entries: IntGaugeVec,
    store_disk_bytes: IntGaugeVec,
    persistent_memory: IntGaugeVec,
    rebalances: IntCounterVec,
    producer_renewals: IntCounterVec,
    state: IntGaugeVec,
    records_in: IntCounterVec,
    records_out: IntCounterVec,
    process_latency: HistogramVec,
    event_time_lag: HistogramVec,
    broker_rtt: GaugeVec,
    queued_messages: IntGaugeVec,
}

fn families() -> &'static Families {
    static FAMILIES: OnceLock<Families> = OnceLock::new();
    FAMILIES.get_or_init(define)
}

fn define() -> Families {
    let app = &["application_id"];
    Families {
        records_processed: family(IntCounterVec::new(
            Opts::new("streams_records_processed_total", "Input records processed"),
            app,
        )),
        records_failed: family(IntCounterVec::new(
            Opts::new(
                "streams_records_failed_total",
                "Input records whose processing failed, by error kind and what was done",
            ),
            &["application_id", "error_kind", "action"],
        )),
        transactions: family(IntCounterVec::new(
            Opts::new(
                "streams_transactions_total",
                "Commits by outcome (committed, aborted)",
            ),
            &["application_id", "outcome"],
        )),
        commit_duration: family(HistogramVec::new(
            HistogramOpts::new(
                "streams_commit_duration_seconds",
                "Time to send offsets and commit one transaction",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            app,
        )),
        commit_interval: family(GaugeVec::new(
            Opts::new(
                "streams_commit_interval_seconds",
                "How long the next transaction stays open: the commit interval, stretched under load when max_commit_interval allows",
            ),
            app,
        )),
        restore_records: family(IntCounterVec::new(
            Opts::new(
                "streams_restore_records_total",
                "Changelog records replayed into stores",
            ),
            app,
        )),
        restore_duration: family(HistogramVec::new(
            HistogramOpts::new(
                "streams_restore_duration_seconds",
                "Time to restore one task's stores from changelogs",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0]),
            app,
        )),
        restore_waiting: family(GaugeVec::new(
            Opts::new(
                "streams_restore_waiting_on_transaction_seconds",
                "How long a restore has waited for a transaction still open on a changelog partition (a hanging one never ends)",
            ),
            &["application_id", "changelog", "partition"],
        )),
        tasks_assigned: family(IntGaugeVec::new(
            Opts::new("streams_tasks_assigned", "Tasks this instance runs"),
            app,
        )),
        dead_lettered: family(IntCounterVec::new(
            Opts::new(
                "dlq_records_total",
                "Records written to a dead-letter topic",
            ),
            &["topic", "error_class"],
        )),
        retried: family(IntCounterVec::new(
            Opts::new("retries_total", "Records sent to the retry lane after a transient failure, by source topic"),
            &["topic"],
        )),
        waiting_on_dependency: family(IntGaugeVec::new(
            Opts::new("streams_partitions_waiting_on_dependency", "Partitions paused because a dependency they need is down"),
            &["application_id", "dependency"],
        )),
        store_entries: family(IntGaugeVec::new(
            Opts::new("streams_store_entries", "Committed entries of each store, over the tasks this instance runs, as of its last commit"),
            &["application_id", "store"],
        )),
        store_disk_bytes: family(IntGaugeVec::new(
            Opts::new("streams_store_disk_bytes", "Bytes each persistent store takes on local disk, over the tasks this instance runs (0 in memory)"),
            &["application_id", "store"],
        )),
        persistent_memory: family(IntGaugeVec::new(
            Opts::new("streams_persistent_store_memory_bytes", "Memory the instance's persistent stores hold: write buffers (memtables not yet flushed) and block cache"),
            &["application_id", "kind"],
        )),
        process_latency: family(HistogramVec::new(
            HistogramOpts::new("streams_process_latency_seconds", "Time the topology took to process one input record (its outputs produced asynchronously)")
                .buckets(vec![0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
            app,
        )),
        event_time_lag: family(HistogramVec::new(
            HistogramOpts::new("streams_event_time_lag_seconds", "From an input record's timestamp (event time) to its processing")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0]),
            app,
        )),
        broker_rtt: family(GaugeVec::new(
            Opts::new("streams_broker_rtt_seconds", "Mean round trip of the producer's requests to each broker over librdkafka's last statistics window"),
            &["application_id", "broker"],
        )),
        queued_messages: family(IntGaugeVec::new(
            Opts::new(
                "streams_client_queued_messages",
                "Messages waiting in the client: the producer's queue (not yet acknowledged), the consumer's fetch queues",
            ),
            &["application_id", "client"],
        )),
        records_in: family(IntCounterVec::new(
            Opts::new("streams_records_in_total", "Records read in committed transactions, by subtopology and source topic (retry lanes included)"),
            &["application_id", "subtopology", "topic"],
        )),
        records_out: family(IntCounterVec::new(
            Opts::new("streams_records_out_total", "Records written in committed transactions, by subtopology and topic (dead letters apart, in dlq_records_total)"),
            &["application_id", "subtopology", "topic"],
        )),
        producer_renewals: family(IntCounterVec::new(
            Opts::new(
                "streams_producer_renewals_total",
                "Transactional producers replaced after the broker left a transaction's outcome unknown (its tasks were restored from their changelogs)",
            ),
            app,
        )),
        rebalances: family(IntCounterVec::new(
            Opts::new("streams_rebalances_total", "Partition assignments this instance received from the group coordinator"),
            app,
        )),
        state: family(IntGaugeVec::new(
            Opts::new("streams_state", "1 for the state the instance is in (as KafkaStreams.State names it), 0 for the others"),
            &["application_id", "state"],
        )),
    }
}

impl RuntimeMetrics {
    /// `policy` and `dead_letter_topics` (where this application may dead-letter) name the
    /// failure series that start at 0, so that a first failure is an increase Prometheus sees;
    /// `sources` (subtopology, topic) the records-in series.
    pub fn new(
        registry: &Registry,
        application_id: &str,
        policy: ErrorPolicy,
        dead_letter_topics: &[String],
        sources: &[(usize, String)],
    ) -> prometheus::Result<Self> {
        let f = families();
        register(
            registry,
            [
                Box::new(f.records_processed.clone()) as Box<dyn prometheus::core::Collector>,
                Box::new(f.records_failed.clone()),
                Box::new(f.transactions.clone()),
                Box::new(f.commit_duration.clone()),
                Box::new(f.commit_interval.clone()),
                Box::new(f.restore_records.clone()),
                Box::new(f.restore_duration.clone()),
                Box::new(f.restore_waiting.clone()),
                Box::new(f.tasks_assigned.clone()),
                Box::new(f.dead_lettered.clone()),
                Box::new(f.retried.clone()),
                Box::new(f.waiting_on_dependency.clone()),
                Box::new(f.store_entries.clone()),
                Box::new(f.store_disk_bytes.clone()),
                Box::new(f.persistent_memory.clone()),
                Box::new(f.rebalances.clone()),
                Box::new(f.producer_renewals.clone()),
                Box::new(f.state.clone()),
                Box::new(f.records_in.clone()),
                Box::new(f.records_out.clone()),
                Box::new(f.process_latency.clone()),
                Box::new(f.event_time_lag.clone()),
                Box::new(f.broker_rtt.clone()),
                Box::new(f.queued_messages.clone()),
            ],
        )?;
        // A label set never incremented does not exist for Prometheus, and its panel would show
        // "No data" on a healthy run: the known ones start at 0.
        for outcome in ["committed", "aborted"] {
            f.transactions.with_label_values(&[application_id, outcome]);
        }
        f.restore_records.with_label_values(&[application_id]);
        let actions: &[&str] = match policy {
            ErrorPolicy::Skip => &["skipped"],
            ErrorPolicy::DeadLetter => &["dead_lettered"],
            ErrorPolicy::Retry(_) => &["retried", "dead_lettered"],
        };
        for kind in ErrorKind::ALL {
            for action in actions {
                f.records_failed.with_label_values(&[application_id, kind.as_str(), action]);
            }
        }
        for topic in dead_letter_topics {
            for class in FailureClass::ALL {
                f.dead_lettered.with_label_values(&[topic, class.as_str()]);
            }
        }
        f.tasks_assigned.with_label_values(&[application_id]);
        f.rebalances.with_label_values(&[application_id]);
        f.producer_renewals.with_label_values(&[application_id]);
        for (subtopology, topic) in sources {
            f.records_in.with_label_values(&[application_id, &subtopology.to_string(), topic]);
            if matches!(policy, ErrorPolicy::Retry(_)) {
                f.retried.with_label_values(&[topic]);
            }
        }
        for state in State::ALL {
            f.state.with_label_values(&[application_id, state.as_str()]).set(i64::from(state == State::Created));
        }
        Ok(Self {
            application_id: application_id.to_string(),
            families: f,
            records_processed: f.records_processed.with_label_values(&[application_id]),
            process_latency: f.process_latency.with_label_values(&[application_id]),
            event_time_lag: f.event_time_lag.with_label_values(&[application_id]),
        })
    }
}

/// Each store's committed entries over this instance's tasks, after a commit or a rebalance.
pub struct StoreEntries<'a>(pub &'a std::collections::BTreeMap<&'a str, u64>);
impl StoreEntries<'_> {
    pub fn emit(self, m: &RuntimeMetrics) {
        for (store, entries) in self.0 {
            m.families
                .store_entries
                .with_label_values(&[m.application_id.as_str(), store])
                .set(i64::try_from(*entries).unwrap_or(i64::MAX));
        }
    }
}

/// Each store's bytes on local disk over this instance's tasks, after a commit or a rebalance.
pub struct StoreDiskBytes<'a>(pub &'a std::collections::BTreeMap<&'a str, u64>);
impl StoreDiskBytes<'_> {
    pub fn emit(self, m: &RuntimeMetrics) {
        for (store, bytes) in self.0 {
            m.families
                .store_disk_bytes
                .with_label_values(&[m.application_id.as_str(), store])
                .set(i64::try_from(*bytes).unwrap_or(i64::MAX));
        }
    }
}

/// What the instance's persistent stores hold in memory, after a commit: both are bounded by
/// `StreamsConfig::persistent_memory` (write buffers: per store and task), so a soak shows them
/// level off.
pub struct PersistentStoreMemory {
    pub write_buffer_bytes: u64,
    pub block_cache_bytes: u64,
}
impl PersistentStoreMemory {
    pub fn emit(self, m: &RuntimeMetrics) {
        for (kind, bytes) in [("write_buffers", self.write_buffer_bytes), ("block_cache", self.block_cache_bytes)] {
            m.families
                .persistent_memory
                .with_label_values(&[m.application_id.as_str(), kind])
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }
}

/// A transaction committed what it read and wrote.
pub struct RecordsCommitted<'a> {
    pub subtopologies: &'a super::transaction_counts::TransactionCounts,
}
impl RecordsCommitted<'_> {
    pub fn emit(self, m: &RuntimeMetrics) {
        let app = m.application_id.as_str();
        for (subtopology, topic, count) in self.subtopologies.inputs() {
            m.families.records_in.with_label_values(&[app, &subtopology.to_string(), topic]).inc_by(count);
        }
        for (subtopology, topic, count) in self.subtopologies.outputs() {
            m.families.records_out.with_label_values(&[app, &subtopology.to_string(), topic]).inc_by(count);
        }
    }
}

/// librdkafka's periodic statistics of the stream thread's producer: the round trip to each
/// broker (a consumer's fetches wait at the broker for data, so their round trips say nothing),
/// and the messages it has not had acknowledged.
pub struct ProducerStatistics<'a>(pub &'a ClientSnapshot);
impl ProducerStatistics<'_> {
    pub fn emit(self, m: &RuntimeMetrics) {
        let app = m.application_id.as_str();
        for (broker, seconds) in self.0.round_trips() {
            m.families.broker_rtt.with_label_values(&[app, &broker.to_string()]).set(seconds);
        }
        m.families
            .queued_messages
            .with_label_values(&[app, "producer"])
            .set(i64::try_from(self.0.msg_cnt).unwrap_or(i64::MAX));
    }
}

/// librdkafka's periodic statistics of the stream thread's consumer: the messages fetched and
/// not yet consumed.
pub struct ConsumerStatistics<'a>(pub &'a ClientSnapshot);
impl ConsumerStatistics<'_> {
    pub fn emit(self, m: &RuntimeMetrics) {
        m.families
            .queued_messages
            .with_label_values(&[m.application_id.as_str(), "consumer"])
            .set(self.0.fetched_messages());
    }
}

/// librdkafka's statistics could not be read; the gauges keep their last values.
pub struct StatisticsUnreadable<'a> {
    pub error: &'a serde_json::Error,
}
impl StatisticsUnreadable<'_> {
    pub fn emit(self) {
        tracing::debug!(error = %self.error, "librdkafka statistics unreadable");
    }
}

/// The topology processed one input record (whether or not it failed).
pub struct RecordProcessed {
    pub elapsed: Duration,
    pub event_time_ms: i64,
}
impl RecordProcessed {
    pub fn emit(self, m: &RuntimeMetrics) {
        m.process_latency.observe(self.elapsed.as_secs_f64());
        let lag_ms = SystemClock.now_ms().saturating_sub(self.event_time_ms).max(0);
        m.event_time_lag.observe(lag_ms as f64 / 1000.0);
    }
}

pub struct RecordsProcessed(pub u64);
impl RecordsProcessed {
    pub fn emit(self, m: &RuntimeMetrics) {
        m.records_processed.inc_by(self.0);
    }
}

pub struct RecordFailed<'a> {
    pub error: &'a crate::error::ProcessError,
    pub error_kind: &'static str,
    pub action: &'static str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}
impl RecordFailed<'_> {
    pub fn emit(self, m: &RuntimeMetrics) {
        tracing::warn!(topic = self.topic, partition = self.partition, offset = self.offset,
            action = self.action, error = %self.error, "record failed");
        m.families.records_failed.with_label_values(&[&m.application_id, self.error_kind, self.action]).inc();
    }
}

/// A record that aborted its transaction reached again on replay: it is dead-lettered, or
/// skipped under the Skip policy.
pub struct RecordFailedOnReplay<'a> {
    pub poison: &'a super::dead_letter::Poison,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub skipped: bool,
}
impl RecordFailedOnReplay<'_> {
    pub fn emit(self, m: &RuntimeMetrics) {
        let action = if self.skipped { "skipped" } else { "dead_lettered" };
        tracing::warn!(topic = self.topic, partition = self.partition, offset = self.offset, action,
            reason = %self.poison.message, "record aborted its transaction; set aside on replay");
        m.families.records_failed.with_label_values(&[&m.application_id, self.poison.cause, action]).inc();
    }
}

/// The broker rejected a produced record; the delivery report names what it came from.
pub struct DeliveryFailed<'a> {
    pub failure: &'a super::delivery::FailedDelivery,
}
impl DeliveryFailed<'_> {
    pub fn emit(self, m: &RuntimeMetrics) {
        tracing::warn!(topic = %self.failure.topic, origin = ?self.failure.origin, error = %self.failure.error, "delivery failed");
        m.families.records_failed.with_label_values(&[&m.application_id, "produce", "delivery_failed"]).inc();
    }
}

/// A punctuation or timer failed (it is rolled back and fires again later), or one of its
/// outputs could not be produced.
pub struct PunctuationFailed<'a> {
    pub task: &'a str,
    pub error: &'a crate::error::ProcessError,
    pub action: &'static str,
}
impl PunctuationFailed<'_> {
    pub fn emit(self, m: &RuntimeMetrics) {
        tracing::warn!(task = self.task, action = self.action, error = %self.error, "punctuation failed");
        m.families
            .records_failed
            .with_label_values(&[&m.application_id, self.error.kind().as_str(), self.action])
            .inc();
    }
}

pub struct TransactionCommitted {
    pub records: usize,
    pub elapsed: Duration,
    /// How long the next transaction stays open (see `commit_pacing`).
    pub next_interval: Duration,
}
impl TransactionCommitted {
    pub fn emit(self, m: &RuntimeMetrics) {
        tracing::trace!(records = self.records, elapsed_ms = self.elapsed.as_millis() as u64, "committed");
        m.families.transactions.with_label_values(&[&m.application_id, "committed"]).inc();
        m.families.commit_duration.with_label_values(&[&m.application_id]).observe(self.elapsed.as_secs_f64());
        m.families.commit_interval.with_label_values(&[&m.application_id]).set(self.next_interval.as_secs_f64());
    }
}

pub struct RepartitionConfigsUpdated<'a> {
    pub topic: &'a str,
    pub error: Option<&'a str>,
}
impl RepartitionConfigsUpdated<'_> {
    pub fn emit(self) {
        match self.error {
            None => tracing::info!(topic = self.topic, "repartition topic given its configs (no time retention)"),
            Some(error) => tracing::warn!(
                topic = self.topic,
                error,
                "cannot give the repartition topic its configs: its time retention may delete an old backlog before it is read"
            ),
        }
    }
}

pub struct RepartitionRecordsPurged {
    pub partitions: usize,
}
impl RepartitionRecordsPurged {
    pub fn emit(self) {
        tracing::debug!(partitions = self.partitions, "repartition records purged up to the committed offsets");
    }
}

pub struct RepartitionPurgeFailed<'a> {
    pub error: &'a str,
}
impl RepartitionPurgeFailed<'_> {
    pub fn emit(self) {
        tracing::warn!(error = self.error, "purging consumed repartition records failed; the next purge tries again");
    }
}

pub struct TransactionAborted<'a> {
    pub reason: &'a str,
}
impl TransactionAborted<'_> {
    pub fn emit(self, m: &RuntimeMetrics) {
        tracing::warn!(reason = self.reason, "transaction aborted");
        m.families.transactions.with_label_values(&[&m.application_id, "aborted"]).inc();
    }
}

pub struct ProducerRenewed<'a> {
    pub error: &'a rdkafka::error::KafkaError,
    pub tasks: usize,
}
impl ProducerRenewed<'_> {
    pub fn emit(self, m: &RuntimeMetrics) {
        tracing::warn!(error = %self.error, tasks = self.tasks, "the transaction's outcome is unknown: producer renewed, tasks to be restored from their changelogs");
        m.families.producer_renewals.with_label_values(&[&m.application_id]).inc();
    }
}

pub struct TaskRestored<'a> {
    pub task: &'a str,
    pub records: u64,
    pub elapsed: Duration,
}
impl TaskRestored<'_> {
    pub fn emit(self, m: &RuntimeMetrics) {
        tracing::info!(
            task = self.task,
            records = self.records,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "task restored from changelogs"
        );
        m.families.restore_records.with_label_values(&[&m.application_id]).inc_by(self.records);
        m.families.restore_duration.with_label_values(&[&m.application_id]).observe(self.elapsed.as_secs_f64());
    }
}

/// A restore waits for a transaction still open on a changelog partition: a writer's crash is
/// ended by the broker within the transaction timeout; one open far longer is a hanging
/// transaction, which only an operator can end.
pub struct RestoreWaitingOnTransaction<'a> {
    pub changelog: &'a str,
    pub partition: i32,
    pub last_stable: i64,
    pub target: i64,
    pub waited: Duration,
    pub hanging: bool,
}
impl RestoreWaitingOnTransaction<'_> {
    pub fn emit(self, m: &RuntimeMetrics) {
        let (changelog, partition, last_stable, waited_s) =
            (self.changelog, self.partition, self.last_stable, self.waited.as_secs());
        if self.hanging {
            tracing::error!(
                changelog,
                partition,
                last_stable,
                waited_s,
                "a transaction on the changelog stays open past any transaction timeout (a hanging transaction); \
                 find it with `kafka-transactions.sh find-hanging` and end it with `kafka-transactions.sh abort`"
            );
        } else {
            tracing::info!(
                changelog,
                partition,
                last_stable,
                target = self.target,
                "restore waits for an open transaction on the changelog"
            );
        }
        m.families
            .restore_waiting
            .with_label_values(&[&m.application_id, changelog, &partition.to_string()])
            .set(self.waited.as_secs_f64());
    }
}

/// The restore no longer waits on that changelog partition: its series goes.
pub struct RestoreDoneWaiting<'a> {
    pub changelog: &'a str,
    pub partition: i32,
}
impl RestoreDoneWaiting<'_> {
    pub fn emit(self, m: &RuntimeMetrics) {
        let _absent_unless_it_waited = m.families.restore_waiting.remove_label_values(&[
            &m.application_id,
            self.changelog,
            &self.partition.to_string(),
        ]);
    }
}

/// The group coordinator assigned this instance its partitions (at every rebalance it takes part in).
pub struct PartitionsAssigned {
    pub partitions: usize,
}
impl PartitionsAssigned {
    pub fn emit(self, m: &RuntimeMetrics) {
        tracing::info!(partitions = self.partitions, "partitions assigned");
        m.families.rebalances.with_label_values(&[&m.application_id]).inc();
    }
}

/// The instance moved from one state to another.
pub struct StateChanged {
    pub old: State,
    pub new: State,
}
impl StateChanged {
    pub fn emit(self, m: &RuntimeMetrics) {
        m.families.state.with_label_values(&[&m.application_id, self.old.as_str()]).set(0);
        m.families.state.with_label_values(&[&m.application_id, self.new.as_str()]).set(1);
    }
}

pub struct TasksAssigned(pub usize);
impl TasksAssigned {
    pub fn emit(self, m: &RuntimeMetrics) {
        m.families.tasks_assigned.with_label_values(&[&m.application_id]).set(self.0 as i64);
    }
}

/// A record was written to a dead-letter topic (counted when it is sent, inside the transaction).
pub struct RecordDeadLettered<'a> {
    pub dead_letter_topic: &'a str,
    pub error_class: &'static str,
}
impl RecordDeadLettered<'_> {
    pub fn emit(self, m: &RuntimeMetrics) {
        m.families.dead_lettered.with_label_values(&[self.dead_letter_topic, self.error_class]).inc();
    }
}

/// A record with a transient failure went to the retry lane, to be tried again after `backoff`.
pub struct RecordRetried<'a> {
    pub topic: &'a str,
    pub attempts: u32,
    pub backoff: Duration,
}
impl RecordRetried<'_> {
    pub fn emit(self, m: &RuntimeMetrics) {
        tracing::info!(
            topic = self.topic,
            attempts = self.attempts,
            backoff_ms = self.backoff.as_millis() as u64,
            "record retried after a transient failure"
        );
        m.families.retried.with_label_values(&[self.topic]).inc();
    }
}

/// A record failed because a dependency is down: its partition is paused for `backoff`.
pub struct DependencyUnavailable<'a> {
    pub dependency: &'a str,
    pub error: &'a crate::error::ProcessError,
    pub topic: &'a str,
    pub partition: i32,
    pub backoff: Duration,
    /// Partitions now paused for it.
    pub partitions: usize,
}
impl DependencyUnavailable<'_> {
    pub fn emit(self, m: &RuntimeMetrics) {
        tracing::warn!(dependency = self.dependency, topic = self.topic, partition = self.partition,
            backoff_ms = self.backoff.as_millis() as u64, error = %self.error, "dependency unavailable; partition paused");
        m.families
            .waiting_on_dependency
            .with_label_values(&[&m.application_id, self.dependency])
            .set(self.partitions as i64);
    }
}

/// A partition that waited for a dependency handled its waiting record, or one after it.
pub struct DependencyBack<'a> {
    pub dependency: &'a str,
    pub partitions: usize,
}
impl DependencyBack<'_> {
    pub fn emit(self, m: &RuntimeMetrics) {
        tracing::info!(dependency = self.dependency, "partition no longer waits on the dependency");
        m.families
            .waiting_on_dependency
            .with_label_values(&[&m.application_id, self.dependency])
            .set(self.partitions as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_applications_known_label_sets_exist_at_0_before_anything_happens() {
        let registry = Registry::new();
        let policy = ErrorPolicy::Retry(crate::error::RetryPolicy::default());
        RuntimeMetrics::new(
            &registry,
            "zero-init-app",
            policy,
            &["zero-init-input.dlq".to_string()],
            &[(0, "zero-init-input".to_string())],
        )
        .unwrap();
        let families = registry.gather();
        let metric = |name: &str, labels: &[(&str, &str)]| {
            let family =
                families.iter().find(|family| family.name() == name).unwrap_or_else(|| panic!("{name} missing"));
            family
                .get_metric()
                .iter()
                .find(|metric| {
                    labels
                        .iter()
                        .all(|(key, value)| metric.get_label().iter().any(|l| l.name() == *key && l.value() == *value))
                })
                .cloned()
        };
        let counter = |name: &str, labels: &[(&str, &str)]| metric(name, labels).map(|m| m.get_counter().value());
        let app = ("application_id", "zero-init-app");
        assert_eq!(counter("streams_transactions_total", &[app, ("outcome", "aborted")]), Some(0.0));
        assert_eq!(counter("streams_transactions_total", &[app, ("outcome", "committed")]), Some(0.0));
        assert_eq!(counter("streams_restore_records_total", &[app]), Some(0.0));
        assert_eq!(metric("streams_tasks_assigned", &[app]).map(|m| m.get_gauge().value()), Some(0.0));
        assert_eq!(counter("streams_rebalances_total", &[app]), Some(0.0));
        assert_eq!(counter("streams_producer_renewals_total", &[app]), Some(0.0));
        assert_eq!(
            counter("streams_records_in_total", &[app, ("subtopology", "0"), ("topic", "zero-init-input")]),
            Some(0.0)
        );
        assert_eq!(counter("retries_total", &[("topic", "zero-init-input")]), Some(0.0));
        let state = |name: &str| metric("streams_state", &[app, ("state", name)]).map(|m| m.get_gauge().value());
        assert_eq!((state("CREATED"), state("RUNNING"), state("ERROR")), (Some(1.0), Some(0.0), Some(0.0)));
        for action in ["retried", "dead_lettered"] {
            let labels = [app, ("error_kind", "processing"), ("action", action)];
            assert_eq!(
                counter("streams_records_failed_total", &labels),
                Some(0.0),
                "streams_records_failed_total{{action={action}}}"
            );
        }
        for class in ["transient", "permanent", "poison"] {
            let labels = [("topic", "zero-init-input.dlq"), ("error_class", class)];
            assert_eq!(counter("dlq_records_total", &labels), Some(0.0), "dlq_records_total{{error_class={class}}}");
        }
    }

    #[test]
    fn client_statistics_give_each_brokers_round_trip_and_the_queued_messages() {
        let registry = Registry::new();
        let m = RuntimeMetrics::new(&registry, "stats-app", ErrorPolicy::DeadLetter, &[], &[]).unwrap();
        let producer = br#"{"msg_cnt": 7, "brokers": {"b1": {"nodeid": 1, "rtt": {"avg": 2500, "cnt": 3}}}}"#;
        ProducerStatistics(&ClientSnapshot::parse(producer).unwrap()).emit(&m);
        let consumer = br#"{"topics": {"orders": {"partitions": {"0": {"partition": 0, "fetchq_cnt": 40}}}}}"#;
        ConsumerStatistics(&ClientSnapshot::parse(consumer).unwrap()).emit(&m);

        let families = registry.gather();
        let gauges = |name: &str| -> Vec<(Vec<String>, f64)> {
            families
                .iter()
                .filter(|f| f.name() == name)
                .flat_map(|f| f.get_metric().iter())
                .map(|m| (m.get_label().iter().map(|l| l.value().to_string()).collect(), m.get_gauge().value()))
                .collect()
        };
        assert_eq!(gauges("streams_broker_rtt_seconds"), [(vec!["stats-app".into(), "1".into()], 0.0025)]);
        let mut queued = gauges("streams_client_queued_messages");
        queued.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            queued,
            [(vec!["stats-app".into(), "consumer".into()], 40.0), (vec!["stats-app".into(), "producer".into()], 7.0)]
        );
    }
}
