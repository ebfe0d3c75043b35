//! The instance's tasks, its producer and the open transaction: processing, committing and
//! aborting. Shared between the stream thread and the rebalance callbacks, which run inside
//! `poll` on the same thread.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};

use super::commit_pacing::CommitPacing;
use super::config::{ProcessingGuarantee, StreamsConfig};
use super::dead_letter::{dead_letter_record, FailureReason, Poison};
use super::delivery::{DeliveryTracker, FailedDelivery, Origin};
use super::error::RuntimeError;
use super::internal_events::{
    DeliveryFailed, DependencyBack, DependencyUnavailable, PartitionsAssigned, ProducerRenewed, PunctuationFailed,
    RecordDeadLettered, RecordFailed, RecordFailedOnReplay, RecordProcessed, RecordRetried, RecordsCommitted,
    RecordsProcessed, RuntimeMetrics, StoreDiskBytes, StoreEntries, TaskRestored, TasksAssigned, TransactionAborted,
    TransactionCommitted,
};
use super::local_state::{local_state_error, LocalState};
use super::produce::{self, TrackedProducer};
use super::purge::RepartitionPurger;
use super::raw_message::raw_record;
use super::restore::Restorer;
use super::retry::{retry_lane_topic, LaneEntry, LaneIndex};
use super::state::{State, StateCell};
use super::transaction_counts::TransactionCounts;
use crate::clock::{Clock, SystemClock};
use crate::error::{ErrorPolicy, FailureClass, ProcessError, RetryPolicy};
use crate::record::RawRecord;
use crate::task::{panic_message, Task};
use crate::topology::{TaskId, Topology};

type Partition = (String, i32);

/// How often a suspect retried alone may lose its outputs for reasons not its own before it is
/// poisoned anyway (so that the loop ends).
const MAX_ISOLATED_RETRIES: u32 = 3;

/// A suspect retried in a transaction of its own. After a broker rejection librdkafka purges
/// the producer's queues in the background and settles the transaction's state, and that can
/// take the first record of the next transaction with it (purged, erroneous state): such a
/// failure says nothing about the record, so it is retried alone again.
#[derive(Debug)]
struct Isolated {
    record: (Partition, i64),
    retries: u32,
}

/// A partition paused: a retry lane until its first record is due, or one whose record waits
/// for a dependency.
#[derive(Debug)]
struct Held {
    /// That record's offset, or the rewind's if an abort rolled back records before it: where
    /// reading goes on, and past which anything fetched before the pause is ignored.
    offset: i64,
    until_ms: i64,
}

/// A partition whose record failed for a dependency that is down.
#[derive(Debug)]
struct DependencyWait {
    dependency: String,
    /// Failures in a row: the backoff grows with it.
    streak: u32,
    /// The failed record's: the wait ends when it, or a record after it, is handled other than
    /// by waiting (see `end_wait`).
    offset: i64,
}

/// A fenced producer is renewed, as Kafka Streams treats it (tasks migrated): the transactional.id
/// is this process's alone, so fencing means the coordinator aborted our transaction at its
/// timeout (the broker was away) and bumped the epoch. Fenced this many times without a commit
/// in between, two running instances share an instance_id and would fence each other for ever.
const MAX_FENCED_IN_A_ROW: u32 = 5;
const FENCED_AGAIN_AND_AGAIN: &str =
    "abort_transaction: fenced again and again without a commit in between; is another running instance using this instance_id?";

/// Commit metadata that carries a task's stream time across failover (as Kafka Streams does).
const STREAM_TIME_METADATA: &str = "stream_time=";

pub(crate) struct Engine {
    config: StreamsConfig,
    topology: Arc<Topology>,
    /// Polled by this thread only (see `produce::purge_unacknowledged`).
    producer: TrackedProducer,
    restorer: Restorer,
    local_state: LocalState,
    metrics: RuntimeMetrics,
    state: StateCell,
    tasks: BTreeMap<TaskId, Task>,
    /// Tasks of a clean eager revoke, kept in case the same rebalance gives them back: nobody
    /// else can have processed them in between, so they resume without a restore.
    suspended: BTreeMap<TaskId, Task>,
    /// Assigned tasks whose stores have not been restored yet; they process nothing until then.
    unrestored: BTreeSet<TaskId>,
    /// The consumer position (next offset) of every partition processed in the open transaction.
    positions: BTreeMap<Partition, i64>,
    /// The first offset processed of each partition in the open transaction: where a rewind goes
    /// when the group has no committed offset for it.
    batch_start: BTreeMap<Partition, i64>,
    /// Records whose outputs could not be produced: dead-lettered on replay instead of processed.
    poisoned: HashMap<(Partition, i64), Poison>,
    /// Poisoned records dead-lettered in the open transaction: forgotten once it commits, and
    /// dead-lettered again after an abort.
    dead_lettered: Vec<(Partition, i64)>,
    /// Records in a batch the broker rejected: the broker rejects a whole produce batch, so on
    /// replay each is first retried in a transaction of its own, and poisoned only if that fails.
    /// The count is how many of those retries lost outputs for reasons not their own (see `Isolated`).
    suspects: HashMap<(Partition, i64), u32>,
    /// The suspect being retried alone in the open transaction.
    isolated: Option<Isolated>,
    /// Whether the last transaction lost outputs without the broker blaming any of them (a
    /// purge while librdkafka settled an earlier abort): one plain replay comes first, and only
    /// if that fails too are the inputs retried one by one.
    lost_outputs_unexplained: bool,
    /// Retry lane topics by sub-topology, under the Retry policy (see `retry`).
    lane_topics: BTreeMap<String, usize>,
    /// Each task's index of the keys waiting in its retry lane.
    lanes: BTreeMap<TaskId, LaneIndex>,
    /// Partitions paused until their first record is due (a lane) or a dependency may be back.
    held: BTreeMap<Partition, Held>,
    /// Partitions whose record failed for a dependency that is down.
    waiting: BTreeMap<Partition, DependencyWait>,
    /// Deletes repartition records once their consumption is committed.
    purger: RepartitionPurger,
    /// Times the producer was fenced since the last commit (see `MAX_FENCED_IN_A_ROW`).
    fenced_in_a_row: u32,
    open_since: Option<Instant>,
    /// How long the open transaction stays open.
    pacing: CommitPacing,
    /// What the open transaction read and wrote.
    counts: TransactionCounts,
    /// Set once the thread stops on an error: the revoke callback run by leaving the group
    /// must abort, never commit.
    failed: bool,
    /// A fatal error met inside a rebalance callback, surfaced by the next loop iteration.
    pub(crate) fatal: Option<RuntimeError>,
}

impl Engine {
    pub fn new(
        config: StreamsConfig,
        topology: Arc<Topology>,
        metrics: RuntimeMetrics,
        state: StateCell,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<Self, RuntimeError> {
        let restorer = Restorer::new(&config, stop, state.clone(), metrics.clone())?;
        let local_state = LocalState::open(&config, &topology)?;
        let producer = thread_producer(&config, &metrics, &state)?;
        let purger = RepartitionPurger::new(&config, topology.repartition_topics())?;
        let pacing = CommitPacing::new(config.commit_interval, config.max_commit_interval);
        let lane_topics = match config.error_policy {
            ErrorPolicy::Retry(_) => (0..topology.subtopology_count())
                .map(|subtopology| (retry_lane_topic(&config.application_id, subtopology), subtopology))
                .collect(),
            _ => BTreeMap::new(),
        };
        Ok(Self {
            lane_topics,
            lanes: BTreeMap::new(),
            held: BTreeMap::new(),
            waiting: BTreeMap::new(),
            purger,
            fenced_in_a_row: 0,
            config,
            topology,
            producer,
            restorer,
            local_state,
            metrics,
            state,
            tasks: BTreeMap::new(),
            suspended: BTreeMap::new(),
            unrestored: BTreeSet::new(),
            positions: BTreeMap::new(),
            batch_start: BTreeMap::new(),
            poisoned: HashMap::new(),
            dead_lettered: Vec::new(),
            suspects: HashMap::new(),
            isolated: None,
            lost_outputs_unexplained: false,
            open_since: None,
            pacing,
            counts: TransactionCounts::default(),
            failed: false,
            fatal: None,
        })
    }

    fn exactly_once(&self) -> bool {
        self.config.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2
    }

    fn task_id(&self, topic: &str, partition: i32) -> Option<TaskId> {
        self.topology
            .subtopology_of(topic)
            .or_else(|| self.lane_topics.get(topic).copied())
            .map(|subtopology| TaskId { subtopology, partition })
    }

    /// Under the eager protocol `partitions` is the whole new assignment. Every task it touches
    /// must come with all of its source partitions; a task split across members would write
    /// the same changelog partition from two places.
    /// Every topic a task of `subtopology` reads: its sources, and its retry lane.
    fn topics_of(&self, subtopology: usize) -> Vec<String> {
        let mut topics = self.topology.source_topics_of(subtopology);
        topics.extend(self.lane_topics.iter().filter(|(_, s)| **s == subtopology).map(|(topic, _)| topic.clone()));
        topics
    }

    /// The retry lane topics, which the instance subscribes to beside the sources.
    pub fn lane_topics(&self) -> impl Iterator<Item = &String> {
        self.lane_topics.keys()
    }

    pub fn on_assigned<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, partitions: &TopicPartitionList) {
        PartitionsAssigned { partitions: partitions.count() }.emit(&self.metrics);
        let assigned: BTreeSet<Partition> =
            partitions.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
        let mut tasks = BTreeSet::new();
        for (topic, partition) in &assigned {
            match self.task_id(topic, *partition) {
                Some(id) => {
                    tasks.insert(id);
                }
                None => {
                    self.fatal
                        .get_or_insert(RuntimeError::UnassignedTask { topic: topic.clone(), partition: *partition });
                }
            }
        }
        for id in &tasks {
            let missing: Vec<String> = self
                .topics_of(id.subtopology)
                .into_iter()
                .filter(|topic| !assigned.contains(&(topic.clone(), id.partition)))
                .collect();
            if !missing.is_empty() {
                self.fatal.get_or_insert(RuntimeError::IncompleteTask { task: id.to_string(), missing });
            }
        }
        for id in tasks {
            match self.suspended.remove(&id) {
                Some(mut task) => {
                    if let Err(e) = task.discard_checkpoints() {
                        self.fatal.get_or_insert(local_state_error(e));
                    }
                    self.tasks.insert(id, task);
                }
                None if !self.tasks.contains_key(&id) => {
                    self.unrestored.insert(id);
                }
                None => {}
            }
        }
        // Suspended tasks that went elsewhere are closed.
        self.suspended.clear();
        let running = &self.tasks;
        self.lanes.retain(|id, _| running.contains_key(id));
        // A partition paused before the rebalance reads on from its committed offset.
        self.held.clear();
        if let Err(source) = consumer.resume(partitions) {
            self.fatal.get_or_insert(RuntimeError::Kafka { during: "resuming the assigned partitions", source });
        }
        TasksAssigned(self.tasks.len()).emit(&self.metrics);
        if self.unrestored.is_empty() {
            self.state.set(State::Running);
        }
    }

    /// Commits (or, if the assignment was lost or the thread failed, aborts) before the
    /// partitions go. Their tasks are then suspended, their stores at the last commit (a commit
    /// that aborts rolls them back), unless the assignment was lost or the thread failed: then
    /// they are dropped.
    pub fn on_revoked<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, partitions: &TopicPartitionList) {
        self.state.set(State::Rebalancing);
        let lost = consumer.assignment_lost();
        let outcome =
            if lost || self.failed { self.abort(consumer, "assignment lost", false) } else { self.commit(consumer) };
        let keep = outcome.is_ok() && !lost && !self.failed;
        if let Err(e) = outcome {
            self.fatal.get_or_insert(e);
        }
        for element in partitions.elements() {
            if let Some(id) = self.task_id(element.topic(), element.partition()) {
                if let Some(mut task) = self.tasks.remove(&id) {
                    if keep {
                        self.local_state.checkpoint(&self.config, &self.restorer, &mut task);
                        self.suspended.insert(id, task);
                    }
                }
                if !keep {
                    self.lanes.remove(&id);
                }
                self.stop_waiting(&(element.topic().to_string(), element.partition()));
                self.unrestored.remove(&id);
            }
        }
        TasksAssigned(self.tasks.len()).emit(&self.metrics);
        self.report_store_entries();
    }

    /// Builds and restores every task assigned since the last call, after closing the open
    /// transaction so that it cannot outlive `transaction.timeout.ms` during a long restore.
    pub fn restore_assigned<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), RuntimeError> {
        if self.unrestored.is_empty() {
            return Ok(());
        }
        self.commit(consumer)?;
        while let Some(id) = self.unrestored.pop_first() {
            let started = Instant::now();
            let mut task = self.local_state.create_task(&self.config, &self.topology, id)?;
            let changelogs = self.topology.changelogs_of(id.subtopology);
            let records = self.restorer.restore_task(&self.config, &mut task, &changelogs)?;
            if let Some(stream_time) = self.committed_stream_time(consumer, id)? {
                task.restore_stream_time(stream_time);
            }
            if let Some(lane) =
                self.lane_topics.iter().find(|(_, s)| **s == id.subtopology).map(|(topic, _)| topic.clone())
            {
                let index = self.rebuild_lane_index(consumer, &lane, id.partition)?;
                self.lanes.insert(id, index);
            }
            task.commit().map_err(local_state_error)?;
            TaskRestored { task: &id.to_string(), records, elapsed: started.elapsed() }.emit(&self.metrics);
            self.tasks.insert(id, task);
        }
        TasksAssigned(self.tasks.len()).emit(&self.metrics);
        self.report_store_entries();
        self.report_store_disk_bytes();
        self.state.set(State::Running);
        Ok(())
    }

    /// The lane records after the group's committed lane offset are the ones still waiting.
    fn rebuild_lane_index<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        lane: &str,
        partition: i32,
    ) -> Result<LaneIndex, RuntimeError> {
        let mut list = TopicPartitionList::new();
        list.add_partition(lane, partition);
        let committed = consumer
            .committed_offsets_retried(list, self.config.blocking_timeout, &self.state)
            .map_err(|source| RuntimeError::Kafka { during: "reading the committed retry lane offset", source })?;
        let from = committed
            .elements()
            .first()
            .map(|e| e.offset())
            .filter(|offset| matches!(offset, Offset::Offset(_)))
            .unwrap_or(Offset::Beginning);
        let waiting = self.restorer.read_tail(&self.config, lane, partition, from)?;
        Ok(LaneIndex::rebuild(waiting.into_iter().filter_map(|record| LaneEntry::parse(record).ok())))
    }

    /// The stream time the task's last commit recorded in its offsets' metadata.
    fn committed_stream_time<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        id: TaskId,
    ) -> Result<Option<i64>, RuntimeError> {
        let kafka = |source| RuntimeError::Kafka { during: "reading committed offsets", source };
        let mut list = TopicPartitionList::new();
        for topic in self.topology.source_topics_of(id.subtopology) {
            list.add_partition(&topic, id.partition);
        }
        let committed =
            consumer.committed_offsets_retried(list, self.config.blocking_timeout, &self.state).map_err(kafka)?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| e.metadata().strip_prefix(STREAM_TIME_METADATA).and_then(|t| t.parse::<i64>().ok()))
            .max())
    }

    fn ensure_open(&mut self) -> Result<(), RuntimeError> {
        if self.open_since.is_none() {
            if self.exactly_once() {
                self.producer
                    .begin_transaction()
                    .map_err(|source| RuntimeError::Fatal { during: "begin_transaction", source })?;
            }
            self.open_since = Some(Instant::now());
            self.counts.clear();
        }
        Ok(())
    }

    /// Processes one input record inside the open transaction, applying the error policy. A
    /// record of the retry lane is processed as its original once it is due and first of its key.
    pub fn process<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        message: &BorrowedMessage<'_>,
    ) -> Result<(), RuntimeError> {
        let (topic, partition, offset) = (message.topic().to_string(), message.partition(), message.offset());
        // A record of a task not running here is a bug in the assignment, never a skip: its
        // offset would be committed with nothing processed.
        let id = self
            .task_id(&topic, partition)
            .filter(|id| self.tasks.contains_key(id))
            .ok_or_else(|| RuntimeError::UnassignedTask { topic: topic.clone(), partition })?;
        if self.held.contains_key(&(topic.clone(), partition)) {
            // Fetched before the pause took effect: read again from the held offset on resume.
            return Ok(());
        }
        let from_lane = self.lane_topics.contains_key(&topic);
        let lane_entry = if from_lane {
            match LaneEntry::parse(raw_record(message)) {
                Ok(entry) if entry.not_before_ms > SystemClock.now_ms() => {
                    return self.hold(consumer, &topic, partition, offset, entry.not_before_ms);
                }
                Ok(entry) => Some(Ok(entry)),
                Err(reason) => Some(Err(reason)),
            }
        } else {
            None
        };
        let key = ((topic.clone(), partition), offset);
        if let Some(retries) = self.suspects.remove(&key) {
            // Commit what came before, so this record's outputs travel alone.
            let rewound_with_it = self.batch_start.contains_key(&key.0);
            if self.try_commit(consumer)? == CommitOutcome::Aborted {
                // What came before is read again, and this record behind it, still a suspect.
                self.suspects.insert(key, retries);
                if rewound_with_it {
                    return Ok(());
                }
                return consumer
                    .seek(&topic, partition, Offset::Offset(offset), self.config.blocking_timeout)
                    .map_err(|source| RuntimeError::Kafka { during: "rewinding to a suspect", source });
            }
            self.isolated = Some(Isolated { record: key.clone(), retries });
        }
        self.ensure_open()?;
        if !self.batch_start.contains_key(&key.0) {
            self.batch_start.insert(key.0.clone(), offset);
        }
        self.positions.insert(key.0.clone(), offset + 1);
        self.counts.read(id.subtopology, &topic);
        RecordsProcessed(1).emit(&self.metrics);

        let lane_entry = match lane_entry {
            Some(Err(reason)) => {
                // Not written by this runtime: set aside whole, in the lane's own dead-letter topic.
                let poison = Poison { cause: "retry_lane", message: format!("unreadable retry lane record: {reason}") };
                return self.dead_letter(consumer, raw_record(message), &FailureReason::Poisoned(&poison), 0);
            }
            Some(Ok(entry)) => Some(entry),
            None => None,
        };
        // Kept until its dead letter is committed: an abort before then must find it again.
        if let Some(poison) = self.poisoned.get(&key).cloned() {
            RecordFailedOnReplay { poison: &poison, topic: &topic, partition, offset, skipped: self.skips() }
                .emit(&self.metrics);
            let (record, attempts) = match lane_entry {
                Some(entry) => {
                    self.lanes.entry(id).or_default().remove(entry.original.key.as_deref(), entry.seq);
                    (entry.original, entry.attempts + 1)
                }
                None => (raw_record(message), 1),
            };
            self.end_wait(&key);
            // Before the send: an abort while sending forgets it with the transaction.
            self.dead_lettered.push(key);
            if !self.skips() {
                self.dead_letter(consumer, record, &FailureReason::Poisoned(&poison), attempts)?;
            }
            return Ok(());
        }
        let origin = self.producer.context().track(Origin::Input { topic: topic.clone(), partition, offset });
        let (lane_original, seq, attempts) = match lane_entry {
            Some(entry) => {
                let index = self.lanes.entry(id).or_default();
                let record_key = entry.original.key.as_deref();
                if let Some((first, not_before_ms)) =
                    index.first_of(record_key).filter(|(first, _)| *first != entry.seq)
                {
                    // An earlier record of its key went back into the lane: queue behind it again.
                    tracing::debug!(seq = entry.seq, first, "retry lane record waits behind an earlier one of its key");
                    let waiting = LaneEntry { not_before_ms: entry.not_before_ms.max(not_before_ms), ..entry };
                    self.end_wait(&key);
                    return self.enqueue(consumer, id, waiting, origin, key);
                }
                index.remove(record_key, entry.seq);
                (Some(entry.original), Some(entry.seq), entry.attempts + 1)
            }
            None if self.lanes.get(&id).is_some_and(|index| index.is_waiting(message.key())) => {
                // Earlier records of its key wait in the lane: it goes behind them, in order.
                let seq = self.lanes.entry(id).or_default().next_seq();
                let waiting = LaneEntry { original: raw_record(message), seq, attempts: 0, not_before_ms: 0 };
                self.end_wait(&key);
                return self.enqueue(consumer, id, waiting, origin, key);
            }
            None => (None, None, 1),
        };
        let task =
            self.tasks.get_mut(&id).ok_or_else(|| RuntimeError::UnassignedTask { topic: topic.clone(), partition })?;
        // Built here rather than kept: one copy of the bytes, none kept while all goes well.
        let input = match &lane_original {
            Some(original) => original.clone(),
            None => raw_record(message),
        };
        let event_time_ms = input.timestamp_ms;
        let started = Instant::now();
        let processed = catch_unwind(AssertUnwindSafe(|| task.process(input)));
        RecordProcessed { elapsed: started.elapsed(), event_time_ms }.emit(&self.metrics);
        match processed {
            Ok(Ok(())) => {
                let outputs = task.take_output();
                self.end_wait(&key);
                for output in &outputs {
                    if let Err(e) = produce::send(&self.producer, output, origin) {
                        // Abort and replay from the last commit; when the output itself
                        // cannot be produced, dead-letter the record when it comes round again.
                        let reason = format!("producing to {} failed: {e}", output.topic);
                        if produce::rejects_the_record(&e) {
                            self.poisoned.insert(key, Poison { cause: "produce", message: reason.clone() });
                        }
                        return self.abort_refused_send(consumer, &reason);
                    }
                    self.counts.wrote(id.subtopology, &output.topic);
                }
                Ok(())
            }
            Ok(Err(error)) => {
                let record = lane_original.unwrap_or_else(|| raw_record(message));
                self.handle_failure(consumer, id, record, &error, Attempt { number: attempts, seq, origin, key })
            }
            Err(panic) => {
                // A panic outside any unit of work: roll everything back to the last commit
                // and dead-letter this record on replay.
                let poison = Poison {
                    cause: "panic",
                    message: format!("user code panicked: {}", panic_message(panic.as_ref())),
                };
                let reason = poison.message.clone();
                self.poisoned.insert(key, poison);
                self.abort(consumer, &reason, true)
            }
        }
    }

    fn skips(&self) -> bool {
        self.config.error_policy == ErrorPolicy::Skip
    }

    /// A transient failure with attempts left goes to the retry lane with its backoff; any other
    /// is dead-lettered (or skipped).
    fn handle_failure<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        id: TaskId,
        record: RawRecord,
        error: &ProcessError,
        attempt: Attempt,
    ) -> Result<(), RuntimeError> {
        if let Some(dependency) = error.unavailable_dependency() {
            let from_lane = attempt.seq.map(|seq| (id, &record, seq));
            return self.wait_for_dependency(consumer, dependency, error, attempt.key.clone(), from_lane);
        }
        // Dead-lettered, skipped or sent to the lane: its partition no longer waits for it.
        self.end_wait(&attempt.key);
        let retry = match self.config.error_policy {
            ErrorPolicy::Retry(policy)
                if error.class() == FailureClass::Transient && attempt.number < policy.max_attempts =>
            {
                Some(policy)
            }
            _ => None,
        };
        let action = if self.skips() {
            "skipped"
        } else if retry.is_some() {
            "retried"
        } else {
            "dead_lettered"
        };
        RecordFailed {
            error,
            error_kind: error.kind().as_str(),
            action,
            topic: &record.topic,
            partition: record.partition,
            offset: record.offset,
        }
        .emit(&self.metrics);
        if self.skips() {
            return Ok(());
        }
        let Some(policy) = retry else {
            return self.dead_letter(consumer, record, &FailureReason::Process(error), attempt.number);
        };
        let seq = match attempt.seq {
            Some(seq) => seq,
            None => self.lanes.entry(id).or_default().next_seq(),
        };
        let backoff = RetryPolicy::backoff(&policy, attempt.number);
        RecordRetried { topic: &record.topic, attempts: attempt.number, backoff }.emit(&self.metrics);
        let not_before_ms = SystemClock.now_ms().saturating_add(i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX));
        let entry = LaneEntry { original: record, seq, attempts: attempt.number, not_before_ms };
        self.enqueue(consumer, id, entry, attempt.origin, attempt.key)
    }

    /// Writes `entry` to its task's retry lane, in the open transaction, and indexes its key.
    fn enqueue<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        id: TaskId,
        entry: LaneEntry,
        origin: usize,
        input: (Partition, i64),
    ) -> Result<(), RuntimeError> {
        let lane = retry_lane_topic(&self.config.application_id, id.subtopology);
        let output = entry.to_output(&lane, SystemClock.now_ms());
        if let Err(e) = produce::send(&self.producer, &output, origin) {
            let reason = format!("producing to the retry lane {lane} failed: {e}");
            if produce::rejects_the_record(&e) {
                self.poisoned.insert(input, Poison { cause: "produce", message: reason.clone() });
            }
            return self.abort_refused_send(consumer, &reason);
        }
        self.counts.wrote(id.subtopology, &lane);
        self.lanes.entry(id).or_default().insert(entry.original.key.as_deref(), entry.seq, entry.not_before_ms);
        Ok(())
    }

    /// Pauses a lane partition until its first record is due, and reads it again from there.
    fn hold<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
        offset: i64,
        until_ms: i64,
    ) -> Result<(), RuntimeError> {
        self.pause(consumer, topic, partition, offset, until_ms)?;
        consumer
            .seek(topic, partition, Offset::Offset(offset), self.config.blocking_timeout)
            .map_err(|source| RuntimeError::Kafka { during: "rewinding a retry lane", source })
    }

    /// Pauses a partition until `until_ms`; anything fetched before the pause took effect is
    /// ignored, and reading goes on from `offset` when it resumes.
    fn pause<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
        offset: i64,
        until_ms: i64,
    ) -> Result<(), RuntimeError> {
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, partition);
        consumer.pause(&list).map_err(|source| RuntimeError::Kafka { during: "pausing a partition", source })?;
        self.held.insert((topic.to_owned(), partition), Held { offset, until_ms });
        Ok(())
    }

    /// A dependency is down: pause this partition and try the same record again after a backoff
    /// that grows each time, for as long as it takes. The failed record's work was rolled back
    /// by its task and the rest of the transaction stands: the partition's position is set back
    /// to the record, so the commit covers only what came before it. Nothing goes to the lane or
    /// the DLQ meanwhile, and the instance reports what it waits for.
    fn wait_for_dependency<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        dependency: &str,
        error: &ProcessError,
        consumed: (Partition, i64),
        from_lane: Option<(TaskId, &RawRecord, u64)>,
    ) -> Result<(), RuntimeError> {
        let ((topic, partition), offset) = consumed;
        let streak = self.waiting.get(&(topic.clone(), partition)).map_or(0, |wait| wait.streak) + 1;
        let wait = DependencyWait { dependency: dependency.to_owned(), streak, offset };
        if let Some(before) = self.waiting.insert((topic.clone(), partition), wait) {
            // A record read again after an abort, or the same one, now fails on another one.
            if before.dependency != dependency {
                DependencyBack { dependency: &before.dependency, partitions: self.waiting_for(&before.dependency) }
                    .emit(&self.metrics);
            }
        }
        let policy = match self.config.error_policy {
            ErrorPolicy::Retry(policy) => policy,
            _ => RetryPolicy::default(),
        };
        let backoff = policy.backoff(streak);
        DependencyUnavailable {
            dependency,
            error,
            topic: &topic,
            partition,
            backoff,
            partitions: self.waiting_for(dependency),
        }
        .emit(&self.metrics);
        self.state.set_waiting_on(Some(dependency.to_owned()));
        self.positions.insert((topic.clone(), partition), offset);
        if let Some((id, original, seq)) = from_lane {
            // Still first of its key in the lane: it was only taken out to be processed.
            self.lanes.entry(id).or_default().insert(original.key.as_deref(), seq, 0);
        }
        let until_ms = SystemClock.now_ms().saturating_add(i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX));
        self.pause(consumer, &topic, partition, offset, until_ms)
    }

    fn waiting_for(&self, dependency: &str) -> usize {
        self.waiting.values().filter(|wait| wait.dependency == dependency).count()
    }

    /// A record was handled other than by waiting (it went through, or was dead-lettered,
    /// skipped or sent to the lane): if it is the one its partition waited on, or one after it,
    /// the partition waits no more. Records before it, read again after an abort, change nothing.
    fn end_wait(&mut self, consumed: &(Partition, i64)) {
        let (partition, offset) = consumed;
        if self.waiting.get(partition).is_none_or(|wait| *offset < wait.offset) {
            return;
        }
        self.stop_waiting(partition);
    }

    /// The partition waits no more (its record was handled, or the partition went elsewhere):
    /// its dependency's gauge and the instance's health say so.
    fn stop_waiting(&mut self, partition: &Partition) {
        let Some(wait) = self.waiting.remove(partition) else { return };
        DependencyBack { dependency: &wait.dependency, partitions: self.waiting_for(&wait.dependency) }
            .emit(&self.metrics);
        let still = self.waiting.values().next().map(|wait| wait.dependency.clone());
        self.state.set_waiting_on(still);
    }

    /// Resumes the lane partitions whose first record is due.
    pub fn resume_due<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        now_ms: i64,
    ) -> Result<(), RuntimeError> {
        let mut due = TopicPartitionList::new();
        for ((topic, partition), held) in &self.held {
            if held.until_ms <= now_ms {
                due.add_partition(topic, *partition);
            }
        }
        if due.count() == 0 {
            return Ok(());
        }
        let kafka = |during, source| RuntimeError::Kafka { during, source };
        for element in due.elements() {
            let partition = (element.topic().to_owned(), element.partition());
            if let Some(held) = self.held.remove(&partition) {
                consumer
                    .seek(&partition.0, partition.1, Offset::Offset(held.offset), self.config.blocking_timeout)
                    .map_err(|e| kafka("seeking a paused partition", e))?;
            }
        }
        consumer.resume(&due).map_err(|e| kafka("resuming a paused partition", e))
    }

    /// Sends the dead-letter copy of `record` into the open transaction. A copy that cannot be
    /// produced for what it is has nowhere else to go: that is fatal. Any other refusal aborts,
    /// and the record is dead-lettered again when it is read again.
    fn dead_letter<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        record: crate::record::RawRecord,
        reason: &FailureReason<'_>,
        attempts: u32,
    ) -> Result<(), RuntimeError> {
        let origin =
            Origin::DeadLetter { topic: record.topic.clone(), partition: record.partition, offset: record.offset };
        let origin = self.producer.context().track(origin);
        let error_class = reason.class().as_str();
        let output = dead_letter_record(record, &self.config.application_id, reason, attempts, SystemClock.now_ms());
        match produce::send(&self.producer, &output, origin) {
            Ok(()) => {
                RecordDeadLettered { dead_letter_topic: &output.topic, error_class }.emit(&self.metrics);
                Ok(())
            }
            Err(source) if produce::rejects_the_record(&source) => {
                Err(RuntimeError::Kafka { during: "producing to the dead-letter topic", source })
            }
            Err(e) => self.abort_refused_send(consumer, &format!("producing to {} failed: {e}", output.topic)),
        }
    }

    /// A send refused for a reason that is not its record's: the transaction can only abort,
    /// most often because an earlier output's delivery failed. As a failed commit does, the
    /// inputs whose outputs the broker rejected are blamed first; otherwise the replay would
    /// meet the same rejection and the same refusal for ever.
    fn abort_refused_send<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        reason: &str,
    ) -> Result<(), RuntimeError> {
        produce::purge_unacknowledged(&self.producer, self.config.blocking_timeout);
        let rejected: Vec<FailedDelivery> =
            self.producer.context().failures().into_iter().filter(FailedDelivery::blames_the_record).collect();
        if !rejected.is_empty() {
            self.poison_failed_deliveries(&rejected)?;
        }
        self.abort(consumer, reason, true)
    }

    /// Fires wall-clock punctuations and due timers of every task. A failed unit is rolled back
    /// and retried later by the task; the outputs of the units that succeeded are sent with
    /// their store writes in the open transaction.
    pub fn punctuate<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        now_ms: i64,
    ) -> Result<(), RuntimeError> {
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            let Some(task) = self.tasks.get_mut(&id) else {
                continue;
            };
            let failures = task.punctuate_wall_clock(now_ms);
            let outputs = task.take_output();
            for error in &failures {
                PunctuationFailed { task: &id.to_string(), error, action: "retried" }.emit(&self.metrics);
            }
            if outputs.is_empty() {
                continue;
            }
            self.ensure_open()?;
            let origin = self.producer.context().track(Origin::Punctuation { task: id.to_string() });
            for output in &outputs {
                if let Err(e) = produce::send(&self.producer, output, origin) {
                    if !produce::rejects_the_record(&e) {
                        // The transaction cannot go on; its timers' store writes roll back with
                        // it, so they fire again after the replay.
                        return self.abort_refused_send(
                            consumer,
                            &format!("producing a punctuation output to {} failed: {e}", output.topic),
                        );
                    }
                    // Not replayable like an input record: aborting would fire the same
                    // punctuation into the same failure forever. The record is dropped, loudly.
                    let error = ProcessError::serialization(format!(
                        "producing a punctuation output to {} failed: {e}",
                        output.topic
                    ));
                    PunctuationFailed { task: &id.to_string(), error: &error, action: "output_dropped" }
                        .emit(&self.metrics);
                    continue;
                }
                self.counts.wrote(id.subtopology, &output.topic);
            }
        }
        Ok(())
    }

    pub fn commit_due(&self) -> bool {
        self.isolated.is_some()
            || self.open_since.is_some_and(|since| {
                since.elapsed() >= self.pacing.interval() || self.counts.records() >= self.config.max_records_per_commit
            })
    }

    /// How long the next poll may block without delaying a due commit.
    pub fn poll_timeout(&self) -> Duration {
        let tick = self.config.wall_clock_tick;
        match self.open_since {
            Some(since) => self.pacing.interval().saturating_sub(since.elapsed()).min(tick),
            None => tick,
        }
    }

    /// Commits outputs, store writes and input positions together. A failed delivery poisons
    /// the input it came from, aborts and rewinds; an abortable failure aborts and rewinds (and
    /// is not an error); anything else is fatal.
    pub fn commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), RuntimeError> {
        self.try_commit(consumer).map(drop)
    }

    /// [`Self::commit`], telling whether the transaction committed or was aborted and rewound.
    fn try_commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<CommitOutcome, RuntimeError> {
        let Some(_) = self.open_since else {
            return Ok(CommitOutcome::Committed);
        };
        if let Err(full) = self.local_state.ensure_room(&self.config) {
            self.abort(consumer, &full.to_string(), false)?;
            return Err(full);
        }
        if !self.finish_batches(consumer)? {
            return Ok(CommitOutcome::Aborted);
        }
        let started = Instant::now();
        let outcome =
            if self.exactly_once() { self.commit_transaction(consumer) } else { self.commit_at_least_once(consumer) };
        match outcome {
            Ok(()) => {
                for task in self.tasks.values_mut() {
                    if let Err(e) = task.commit() {
                        // The transaction is committed; local state that fell behind it is
                        // never served: the thread stops, and the next start restores it.
                        self.close_transaction();
                        return Err(local_state_error(e));
                    }
                }
                for index in self.lanes.values_mut() {
                    index.commit();
                }
                for key in self.dead_lettered.drain(..) {
                    self.poisoned.remove(&key);
                }
                self.lost_outputs_unexplained = false;
                self.fenced_in_a_row = 0;
                self.report_store_entries();
                self.report_store_disk_bytes();
                if let Some(memory) = self.local_state.memory() {
                    memory.emit(&self.metrics);
                }
                RecordsCommitted { subtopologies: &self.counts }.emit(&self.metrics);
                let elapsed = started.elapsed();
                self.pacing.committed(elapsed);
                TransactionCommitted { records: self.counts.records(), elapsed, next_interval: self.pacing.interval() }
                    .emit(&self.metrics);
                self.purger.committed(&self.positions);
                self.close_transaction();
                Ok(CommitOutcome::Committed)
            }
            Err(CommitFailure::Delivery(failures)) => {
                self.poison_failed_deliveries(&failures)?;
                let reason = format!("{} output(s) could not be delivered", failures.len());
                self.abort(consumer, &reason, true).map(|()| CommitOutcome::Aborted)
            }
            // Any failure (a flush or a coordinator that timed out while the broker restarts, an
            // abortable error, a fatal one that leaves the outcome unknown, fencing) rolls back
            // and replays: the abort renews the producer when it has to.
            Err(CommitFailure::Kafka(e)) if self.exactly_once() => {
                self.abort(consumer, &e.to_string(), true).map(|()| CommitOutcome::Aborted)
            }
            Err(CommitFailure::Kafka(source)) => Err(RuntimeError::Fatal { during: "commit", source }),
        }
    }

    /// Lets every task finish the work its processors batched (`Processor::before_commit`) and
    /// sends what that produced into the open transaction. `false`: a batch failed, and the
    /// transaction was aborted and rewound, so that its records are processed again.
    fn finish_batches<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<bool, RuntimeError> {
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            let Some(task) = self.tasks.get_mut(&id) else {
                continue;
            };
            if let Err(error) = task.before_commit() {
                self.abort(consumer, &format!("task {id} could not finish its batch: {error}"), true)?;
                return Ok(false);
            }
            let outputs = task.take_output();
            if outputs.is_empty() {
                continue;
            }
            let origin = self.producer.context().track(Origin::Punctuation { task: id.to_string() });
            for output in &outputs {
                if let Err(e) = produce::send(&self.producer, output, origin) {
                    self.abort_refused_send(
                        consumer,
                        &format!("producing a batch's output to {} failed: {e}", output.topic),
                    )?;
                    return Ok(false);
                }
                self.counts.wrote(id.subtopology, &output.topic);
            }
        }
        Ok(true)
    }

    /// Sums each store's entries over the running tasks: a few additions per commit. A store
    /// with no task here reads 0.
    fn report_store_entries(&self) {
        let mut entries: BTreeMap<&str, u64> = self.topology.store_names().map(|store| (store, 0)).collect();
        for (store, count) in self.tasks.values().flat_map(Task::store_entries) {
            match count {
                Ok(count) => *entries.entry(store).or_insert(0) += count,
                // A metric only: a store that cannot be read fails its task's next commit.
                Err(e) => tracing::warn!(store, error = %e, "counting a store's entries failed"),
            }
        }
        StoreEntries(&entries).emit(&self.metrics);
    }

    /// Bytes on disk: the table sizes fjall keeps in memory, a few additions per commit.
    fn report_store_disk_bytes(&self) {
        let mut bytes: BTreeMap<&str, u64> = self.topology.store_names().map(|store| (store, 0)).collect();
        for (store, size) in self.tasks.values().flat_map(Task::store_disk_bytes) {
            *bytes.entry(store).or_insert(0) += size;
        }
        StoreDiskBytes(&bytes).emit(&self.metrics);
    }

    fn commit_transaction<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) -> Result<(), CommitFailure> {
        let timeout = self.config.blocking_timeout;
        if !self.positions.is_empty() {
            let offsets = self.offsets_to_commit()?;
            let metadata =
                consumer.group_metadata().ok_or(KafkaError::Subscription("no consumer group metadata".into()))?;
            // While the outputs are still being acknowledged: the offsets' round trips overlap
            // theirs. A delivery that failed meanwhile fails this call as a bare abortable
            // error, so the failure is attributed from the delivery reports first.
            if let Err(e) =
                with_retries(|| self.producer.send_offsets_to_transaction(&offsets, &metadata, timeout), &self.state)
            {
                self.flush()?;
                return Err(e.into());
            }
        }
        // Deliveries before the commit, so that a failed one is attributed to its input.
        self.flush()?;
        Ok(with_retries(|| self.producer.commit_transaction(timeout), &self.state)?)
    }

    /// Offsets are committed only once every output is acknowledged, so a failed delivery fails
    /// the commit and the batch is read again: nothing is lost, some outputs repeat.
    fn commit_at_least_once<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) -> Result<(), CommitFailure> {
        self.flush()?;
        if !self.positions.is_empty() {
            consumer.commit(&self.offsets_to_commit()?, CommitMode::Sync)?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), CommitFailure> {
        produce::flush(&self.producer, self.config.blocking_timeout)?;
        let failures = self.producer.context().failures();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(CommitFailure::Delivery(failures))
        }
    }

    /// Each input whose outputs were rejected is dead-lettered when it is read again. A
    /// dead-letter or punctuation record the broker rejects for what it is cannot be set aside
    /// that way: that is fatal.
    fn poison_failed_deliveries(&mut self, failures: &[FailedDelivery]) -> Result<(), RuntimeError> {
        // Isolating an input costs a transaction: worth it for the records the broker named, and
        // for the others only once a plain replay has lost outputs too.
        let replayed_already = self.lost_outputs_unexplained;
        self.lost_outputs_unexplained = !failures.iter().any(FailedDelivery::blames_the_record);
        for failure in failures {
            DeliveryFailed { failure }.emit(&self.metrics);
            match &failure.origin {
                Origin::Input { topic, partition, offset } => {
                    let key = ((topic.clone(), *partition), *offset);
                    match &self.isolated {
                        Some(isolated) if isolated.record == key => {
                            if !failure.blames_the_record() && isolated.retries < MAX_ISOLATED_RETRIES {
                                self.suspects.insert(key, isolated.retries + 1);
                            } else {
                                let message = format!("delivery to {} failed: {}", failure.topic, failure.error);
                                self.poisoned.insert(key, Poison { cause: "produce", message });
                            }
                        }
                        _ if failure.blames_the_record() || replayed_already => {
                            self.suspects.entry(key).or_insert(0);
                        }
                        _ => {}
                    }
                }
                // Lost with a transaction that failed (purged, erroneous state): the abort
                // that follows replays it, and the dead letter or punctuation comes again.
                Origin::DeadLetter { .. } | Origin::Punctuation { .. } if !failure.blames_the_record() => {}
                Origin::DeadLetter { .. } | Origin::Punctuation { .. } => {
                    return Err(RuntimeError::Undeliverable {
                        origin: format!("{:?}", failure.origin),
                        topic: failure.topic.clone(),
                        reason: failure.error.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The positions, each with its task's stream time as metadata.
    fn offsets_to_commit(&self) -> Result<TopicPartitionList, KafkaError> {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), next) in &self.positions {
            let task = self.task_id(topic, *partition).and_then(|id| self.tasks.get(&id));
            let mut element = list.add_partition(topic, *partition);
            element.set_offset(Offset::Offset(*next))?;
            if let Some(task) = task {
                element.set_metadata(format!("{STREAM_TIME_METADATA}{}", task.stream_time()));
            }
        }
        Ok(list)
    }

    fn close_transaction(&mut self) {
        self.isolated = None;
        self.dead_lettered.clear();
        self.positions.clear();
        self.batch_start.clear();
        self.open_since = None;
        self.producer.context().reset();
    }

    /// Aborts the open transaction (or, at-least-once, drops unsent outputs), rolls every store
    /// back to its last commit and, when `rewind`, seeks every partition processed in it back.
    pub fn abort<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        reason: &str,
        rewind: bool,
    ) -> Result<(), RuntimeError> {
        if self.open_since.is_some() {
            produce::purge_unacknowledged(&self.producer, self.config.blocking_timeout);
            let refused = match self.exactly_once() {
                true => {
                    with_retries(|| self.producer.abort_transaction(self.config.blocking_timeout), &self.state).err()
                }
                false => None,
            };
            match refused {
                None => TransactionAborted { reason }.emit(&self.metrics),
                Some(source) => {
                    if is_fenced(&source) {
                        self.fenced_in_a_row += 1;
                        if self.fenced_in_a_row >= MAX_FENCED_IN_A_ROW {
                            return Err(RuntimeError::Fatal { during: FENCED_AGAIN_AND_AGAIN, source });
                        }
                    }
                    self.renew_producer(&source)?
                }
            }
        }
        for task in self.tasks.values_mut() {
            task.abort();
        }
        for index in self.lanes.values_mut() {
            index.rollback();
        }
        let batch_start = std::mem::take(&mut self.batch_start);
        self.close_transaction();
        if rewind {
            self.rewind(consumer, &batch_start)?;
        }
        Ok(())
    }

    /// The broker left the open transaction's outcome unknown and librdkafka's producer can do
    /// nothing more: it refused the abort (INVALID_TXN_STATE, as a coordinator restarting under
    /// load answers when the commit went through after all), or the commit failed fatally. As
    /// Kafka Streams does with corrupted tasks under exactly-once, every task is closed dirty,
    /// to be restored from its changelogs, and a new producer with the same transactional.id
    /// takes over: its `init_transactions` waits until the coordinator has finished the old
    /// transaction, so the restore and the rewind that follow see whichever way it went.
    fn renew_producer(&mut self, error: &KafkaError) -> Result<(), RuntimeError> {
        self.producer = thread_producer(&self.config, &self.metrics, &self.state)?;
        let corrupted = std::mem::take(&mut self.tasks);
        ProducerRenewed { error, tasks: corrupted.len() }.emit(&self.metrics);
        for id in corrupted.into_keys() {
            self.lanes.remove(&id);
            self.unrestored.insert(id);
        }
        self.state.set(State::Rebalancing);
        TasksAssigned(0).emit(&self.metrics);
        Ok(())
    }

    /// Called once when the thread stops on an error: nothing of the open transaction may be
    /// committed, including by the revoke callback that leaving the group runs.
    pub fn abort_after_failure<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        self.failed = true;
        if let Err(e) = self.abort(consumer, "the stream thread stopped on an error", false) {
            tracing::error!(error = %e, "aborting after a fatal error failed; the broker aborts the transaction at its timeout");
        }
    }

    /// Seeks each partition processed in the aborted transaction back to its committed offset,
    /// or, where the group has none yet, to the first offset the transaction processed. A paused
    /// partition resumes from there too, not from where it paused.
    fn rewind<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        batch_start: &BTreeMap<Partition, i64>,
    ) -> Result<(), RuntimeError> {
        if batch_start.is_empty() {
            return Ok(());
        }
        let kafka = |during, source| RuntimeError::Kafka { during, source };
        let mut processed = TopicPartitionList::new();
        for (topic, partition) in batch_start.keys() {
            processed.add_partition(topic, *partition);
        }
        let committed = consumer
            .committed_offsets_retried(processed, self.config.blocking_timeout, &self.state)
            .map_err(|e| kafka("reading committed offsets", e))?;
        let mut seek = TopicPartitionList::new();
        for element in committed.elements() {
            let offset = match element.offset() {
                Offset::Offset(o) => o,
                _ => batch_start[&(element.topic().to_string(), element.partition())],
            };
            seek.add_partition_offset(element.topic(), element.partition(), Offset::Offset(offset))
                .map_err(|e| kafka("building the rewind list", e))?;
            if let Some(held) = self.held.get_mut(&(element.topic().to_owned(), element.partition())) {
                held.offset = held.offset.min(offset);
            }
        }
        let result = consumer.seek_partitions(seek, self.config.blocking_timeout).map_err(|e| kafka("rewinding", e))?;
        for element in result.elements() {
            if let Err(e) = element.error() {
                return Err(kafka("rewinding a partition", e));
            }
        }
        Ok(())
    }
}

/// One attempt at a record: its number (1 for the first), its lane sequence number when it came
/// from the lane, and the input it was read as (for delivery reports and poisoning).
struct Attempt {
    number: u32,
    seq: Option<u64>,
    origin: usize,
    key: (Partition, i64),
}

/// How a commit ended that returned no error.
#[derive(Debug, PartialEq, Eq)]
enum CommitOutcome {
    Committed,
    /// Aborted and rewound: what the transaction processed is read again.
    Aborted,
}

enum CommitFailure {
    /// Outputs the broker rejected, with what they came from.
    Delivery(Vec<FailedDelivery>),
    Kafka(KafkaError),
}

impl From<KafkaError> for CommitFailure {
    fn from(error: KafkaError) -> Self {
        CommitFailure::Kafka(error)
    }
}

/// Retries calls that failed with a retriable error (CONCURRENT_TRANSACTIONS, a timeout).
/// For up to a minute: long enough for a broker to restart under a transaction.
/// Each attempt that returns is a sign of life (the watchdog looks for calls that never do).
fn with_retries(mut call: impl FnMut() -> Result<(), KafkaError>, state: &StateCell) -> Result<(), KafkaError> {
    let deadline = Instant::now() + RETRY_TRANSACTION_CALLS_FOR;
    let mut backoff = Duration::from_millis(50);
    loop {
        let result = call();
        state.beat();
        match result {
            Err(e) if is_retriable(&e) && Instant::now() < deadline => {
                tracing::debug!(error = %e, "transactional call failed; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

const RETRY_TRANSACTION_CALLS_FOR: Duration = Duration::from_secs(60);

/// The thread's transactional producer, its transactions initialised under exactly-once: that
/// fences any zombie with our transactional.id and finishes its open transaction.
fn thread_producer(
    config: &StreamsConfig,
    metrics: &RuntimeMetrics,
    state: &StateCell,
) -> Result<TrackedProducer, RuntimeError> {
    let producer: TrackedProducer = config
        .producer_config()
        .create_with_context(DeliveryTracker::new(metrics.clone()))
        .map_err(|source| RuntimeError::Kafka { during: "creating the producer", source })?;
    if config.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2 {
        with_retries(|| producer.init_transactions(config.blocking_timeout), state)
            .map_err(|source| RuntimeError::Fatal { during: "init_transactions", source })?;
    }
    Ok(producer)
}

/// A newer producer with our transactional.id exists: this thread is a zombie.
fn is_fenced(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
    )
}

fn is_retriable(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(e) => e.is_retriable(),
        other => other.rdkafka_error_code() == Some(RDKafkaErrorCode::OperationTimedOut),
    }
}

/// Committed offsets, asked again while the coordinator does not answer in time (a broker
/// restarting), for up to a minute. Each answer is a sign of life.
trait CommittedOffsetsRetried {
    fn committed_offsets_retried(
        &self,
        list: TopicPartitionList,
        timeout: Duration,
        state: &StateCell,
    ) -> Result<TopicPartitionList, KafkaError>;
}

impl<C: ConsumerContext> CommittedOffsetsRetried for BaseConsumer<C> {
    fn committed_offsets_retried(
        &self,
        list: TopicPartitionList,
        timeout: Duration,
        state: &StateCell,
    ) -> Result<TopicPartitionList, KafkaError> {
        let deadline = Instant::now() + RETRY_TRANSACTION_CALLS_FOR;
        loop {
            let result = self.committed_offsets(list.clone(), timeout);
            state.beat();
            match result {
                Err(e) if is_retriable(&e) && Instant::now() < deadline => {
                    tracing::debug!(error = %e, "reading committed offsets; retrying")
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transactional call retried through a broker's restart returns every few seconds: the
    /// thread is alive, and the watchdog (which looks for a call that never returns) must see it.
    #[test]
    fn each_retried_attempt_is_a_sign_of_life() {
        let state = StateCell::new(None);
        let attempt = Duration::from_millis(300);
        let mut attempts = 0;
        let mut longest_silence = Duration::ZERO;
        let result = with_retries(
            || {
                longest_silence = longest_silence.max(state.stalled_for().unwrap_or_default());
                std::thread::sleep(attempt);
                attempts += 1;
                match attempts {
                    4 => Ok(()),
                    _ => Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)),
                }
            },
            &state,
        );
        assert!(result.is_ok());
        assert_eq!(attempts, 4);
        // Without a beat per attempt, the fourth would start 1.25 s after the last beat.
        assert!(longest_silence < Duration::from_millis(900), "silent for {longest_silence:?} between attempts");
    }
}
