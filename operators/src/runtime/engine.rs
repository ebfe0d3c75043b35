//! The instance's tasks, its producer and the open transaction: processing, committing and
//! aborting. Shared between the stream thread and the rebalance callbacks, which run inside
//! `poll` on the same thread.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::config::{ProcessingGuarantee, StreamsConfig};
use super::dead_letter::{dead_letter_record, FailureReason, Poison};
use super::error::RuntimeError;
use super::internal_events::{
    RecordDeadLettered, RecordFailed, RecordFailedOnReplay, RecordsProcessed, RuntimeMetrics, TaskRestored, TasksAssigned, TransactionAborted,
    TransactionCommitted,
};
use super::{produce, restore};
use crate::error::{ErrorPolicy, ProcessError};
use crate::record::{Header, RawRecord};
use crate::task::Task;
use crate::topology::{TaskId, Topology};

type Partition = (String, i32);

pub(crate) struct Engine {
    config: StreamsConfig,
    topology: Arc<Topology>,
    /// Polled by this thread only (see `produce::purge_unacknowledged`).
    producer: BaseProducer,
    restore_consumer: restore::RestoreConsumer,
    metrics: RuntimeMetrics,
    tasks: BTreeMap<TaskId, Task>,
    /// Assigned tasks whose stores have not been restored yet; they process nothing until then.
    unrestored: BTreeSet<TaskId>,
    /// The consumer position (next offset) of every partition processed in the open transaction.
    positions: BTreeMap<Partition, i64>,
    /// Records whose outputs could not be produced: dead-lettered on replay instead of processed.
    poisoned: HashMap<(Partition, i64), Poison>,
    open_since: Option<Instant>,
    records_in_transaction: usize,
    /// A fatal error met inside a rebalance callback, surfaced by the next loop iteration.
    pub(crate) fatal: Option<RuntimeError>,
}

impl Engine {
    pub fn new(config: StreamsConfig, topology: Arc<Topology>, metrics: RuntimeMetrics) -> Result<Self, RuntimeError> {
        let producer: BaseProducer = config
            .producer_config()
            .create()
            .map_err(|source| RuntimeError::Kafka { during: "creating the producer", source })?;
        let restore_consumer: restore::RestoreConsumer = config
            .restore_consumer_config()
            .create_with_context(restore::EndOfPartitionIsExpected)
            .map_err(|source| RuntimeError::Kafka { during: "creating the restore consumer", source })?;
        if config.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2 {
            // Fences any zombie with our transactional.id and aborts its open transaction.
            producer
                .init_transactions(config.blocking_timeout)
                .map_err(|source| RuntimeError::Fatal { during: "init_transactions", source })?;
        }
        Ok(Self {
            config,
            topology,
            producer,
            restore_consumer,
            metrics,
            tasks: BTreeMap::new(),
            unrestored: BTreeSet::new(),
            positions: BTreeMap::new(),
            poisoned: HashMap::new(),
            open_since: None,
            records_in_transaction: 0,
            fatal: None,
        })
    }

    fn exactly_once(&self) -> bool {
        self.config.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2
    }

    fn task_id(&self, topic: &str, partition: i32) -> Option<TaskId> {
        self.topology.subtopology_of(topic).map(|subtopology| TaskId { subtopology, partition })
    }

    pub fn on_assigned(&mut self, partitions: &TopicPartitionList) {
        for element in partitions.elements() {
            if let Some(id) = self.task_id(element.topic(), element.partition()) {
                if !self.tasks.contains_key(&id) {
                    self.unrestored.insert(id);
                }
            }
        }
    }

    /// Commits (or, if the assignment was lost, aborts) before the partitions go, then drops their tasks.
    pub fn on_revoked<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, partitions: &TopicPartitionList) {
        let outcome = if consumer.assignment_lost() {
            self.abort(consumer, "assignment lost", false)
        } else {
            self.commit(consumer)
        };
        if let Err(e) = outcome {
            self.fatal.get_or_insert(e);
        }
        for element in partitions.elements() {
            if let Some(id) = self.task_id(element.topic(), element.partition()) {
                self.tasks.remove(&id);
                self.unrestored.remove(&id);
            }
        }
        TasksAssigned(self.tasks.len()).emit(&self.metrics);
    }

    /// Builds and restores every task assigned since the last call.
    pub fn restore_assigned(&mut self) -> Result<(), RuntimeError> {
        if self.unrestored.is_empty() {
            return Ok(());
        }
        while let Some(id) = self.unrestored.pop_first() {
            let started = Instant::now();
            let mut task = self.topology.create_task(id);
            let changelogs = self.topology.changelogs_of(id.subtopology);
            let records = restore::restore_task(&self.restore_consumer, &self.config, &mut task, &changelogs)?;
            task.commit();
            TaskRestored { task: &format!("{}_{}", id.subtopology, id.partition), records, elapsed: started.elapsed() }
                .emit(&self.metrics);
            self.tasks.insert(id, task);
        }
        TasksAssigned(self.tasks.len()).emit(&self.metrics);
        Ok(())
    }

    fn ensure_open(&mut self) -> Result<(), RuntimeError> {
        if self.open_since.is_none() {
            if self.exactly_once() {
                self.producer
                    .begin_transaction()
                    .map_err(|source| RuntimeError::Fatal { during: "begin_transaction", source })?;
            }
            self.open_since = Some(Instant::now());
            self.records_in_transaction = 0;
        }
        Ok(())
    }

    /// Processes one input record inside the open transaction, applying the error policy.
    pub fn process<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        message: &BorrowedMessage<'_>,
    ) -> Result<(), RuntimeError> {
        let (topic, partition, offset) = (message.topic().to_string(), message.partition(), message.offset());
        let Some(id) = self.task_id(&topic, partition) else {
            return Ok(());
        };
        self.ensure_open()?;
        self.positions.insert((topic.clone(), partition), offset + 1);
        self.records_in_transaction += 1;
        RecordsProcessed(1).emit(&self.metrics);

        let poisoned = if self.poisoned.is_empty() { None } else { self.poisoned.remove(&((topic.clone(), partition), offset)) };
        if let Some(poison) = poisoned {
            RecordFailedOnReplay { poison: &poison, topic: &topic, partition, offset }.emit(&self.metrics);
            return self.dead_letter(raw_record(message), &FailureReason::Poisoned(&poison), 1);
        }
        let max_attempts = match self.config.error_policy {
            ErrorPolicy::Retry { max_attempts } => max_attempts.max(1),
            _ => 1,
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let Some(task) = self.tasks.get_mut(&id) else {
                return Ok(());
            };
            let outcome = catch_unwind(AssertUnwindSafe(|| task.process(raw_record(message))));
            match outcome {
                Ok(Ok(())) => {
                    let outputs = task.take_output();
                    self.producer.poll(Duration::ZERO);
                    for output in &outputs {
                        if let Err(e) = produce::send(&self.producer, output) {
                            // This record's outputs cannot be produced. Abort and replay from the
                            // last commit, dead-lettering the record when it comes round again.
                            let poison = Poison { class: "produce", message: format!("producing to {} failed: {e}", output.topic) };
                            let reason = poison.message.clone();
                            self.poisoned.insert(((topic.clone(), partition), offset), poison);
                            return self.abort(consumer, &reason, true);
                        }
                    }
                    return Ok(());
                }
                Ok(Err(error)) => {
                    if error.is_retriable() && attempts < max_attempts {
                        continue;
                    }
                    return self.handle_failure(message, &error, attempts);
                }
                Err(panic) => {
                    // A panic can leave the task's in-flight state half-written: roll everything
                    // back to the last commit and dead-letter this record on replay.
                    let poison = Poison { class: "panic", message: format!("user code panicked: {}", panic_message(&panic)) };
                    let reason = poison.message.clone();
                    self.poisoned.insert(((topic.clone(), partition), offset), poison);
                    return self.abort(consumer, &reason, true);
                }
            }
        }
    }

    fn handle_failure(&mut self, message: &BorrowedMessage<'_>, error: &ProcessError, attempts: u32) -> Result<(), RuntimeError> {
        let kind = error.kind().as_str();
        if self.config.error_policy == ErrorPolicy::Skip {
            RecordFailed { error, error_kind: kind, action: "skipped", topic: message.topic(), partition: message.partition(), offset: message.offset() }
                .emit(&self.metrics);
            return Ok(());
        }
        RecordFailed { error, error_kind: kind, action: "dead_lettered", topic: message.topic(), partition: message.partition(), offset: message.offset() }
            .emit(&self.metrics);
        self.dead_letter(raw_record(message), &FailureReason::Process(error), attempts)
    }

    fn dead_letter(&mut self, record: RawRecord, reason: &FailureReason<'_>, attempts: u32) -> Result<(), RuntimeError> {
        let output = dead_letter_record(record, &self.config.application_id, reason, attempts);
        produce::send(&self.producer, &output)
            .map_err(|source| RuntimeError::Kafka { during: "producing to the dead-letter topic", source })?;
        RecordDeadLettered { dead_letter_topic: &output.topic }.emit(&self.metrics);
        Ok(())
    }

    /// Fires wall-clock punctuations and due timers of every task.
    pub fn punctuate<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, now_ms: i64) -> Result<(), RuntimeError> {
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            let Some(task) = self.tasks.get_mut(&id) else { continue };
            if let Err(error) = task.punctuate_wall_clock(now_ms) {
                tracing::warn!(task = ?id, %error, "punctuation failed; its writes were discarded");
                continue;
            }
            let outputs = task.take_output();
            if outputs.is_empty() {
                continue;
            }
            self.ensure_open()?;
            for output in &outputs {
                if let Err(e) = produce::send(&self.producer, output) {
                    return self.abort(consumer, &format!("producing a punctuation output failed: {e}"), true);
                }
            }
        }
        Ok(())
    }

    pub fn commit_due(&self) -> bool {
        self.open_since.is_some_and(|since| {
            since.elapsed() >= self.config.commit_interval || self.records_in_transaction >= self.config.max_records_per_commit
        })
    }

    /// How long the next poll may block without delaying a due commit.
    pub fn poll_timeout(&self) -> Duration {
        let tick = self.config.wall_clock_tick;
        match self.open_since {
            Some(since) => self.config.commit_interval.saturating_sub(since.elapsed()).min(tick),
            None => tick,
        }
    }

    /// Commits outputs, store writes and input positions together. An abortable failure aborts
    /// and rewinds (and is not an error); anything else is fatal.
    pub fn commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), RuntimeError> {
        let Some(_) = self.open_since else { return Ok(()) };
        let started = Instant::now();
        let outcome = if self.exactly_once() { self.commit_transaction(consumer) } else { self.commit_at_least_once(consumer) };
        match outcome {
            Ok(()) => {
                for task in self.tasks.values_mut() {
                    task.commit();
                }
                TransactionCommitted { records: self.records_in_transaction, elapsed: started.elapsed() }.emit(&self.metrics);
                self.positions.clear();
                self.open_since = None;
                Ok(())
            }
            Err(e) if self.exactly_once() && requires_abort(&e) => self.abort(consumer, &e.to_string(), true),
            Err(source) => Err(RuntimeError::Fatal { during: "commit", source }),
        }
    }

    fn commit_transaction<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) -> Result<(), KafkaError> {
        let timeout = self.config.blocking_timeout;
        if !self.positions.is_empty() {
            let offsets = offsets_list(&self.positions)?;
            let metadata = consumer.group_metadata().ok_or(KafkaError::Subscription("no consumer group metadata".into()))?;
            with_retries(|| self.producer.send_offsets_to_transaction(&offsets, &metadata, timeout))?;
        }
        produce::flush(&self.producer, timeout)?;
        with_retries(|| self.producer.commit_transaction(timeout))
    }

    fn commit_at_least_once<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) -> Result<(), KafkaError> {
        produce::flush(&self.producer, self.config.blocking_timeout)?;
        if !self.positions.is_empty() {
            consumer.commit(&offsets_list(&self.positions)?, CommitMode::Sync)?;
        }
        Ok(())
    }

    /// Aborts the open transaction, rolls every store back to its last commit and, when `rewind`,
    /// seeks every assigned partition back to its committed offset.
    pub fn abort<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, reason: &str, rewind: bool) -> Result<(), RuntimeError> {
        if self.open_since.is_some() && self.exactly_once() {
            produce::purge_unacknowledged(&self.producer, self.config.blocking_timeout);
            self.producer
                .abort_transaction(self.config.blocking_timeout)
                .map_err(|source| RuntimeError::Fatal { during: "abort_transaction", source })?;
        }
        TransactionAborted { reason }.emit(&self.metrics);
        for task in self.tasks.values_mut() {
            task.abort();
        }
        self.positions.clear();
        self.open_since = None;
        if rewind {
            self.rewind(consumer)?;
        }
        Ok(())
    }

    fn rewind<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) -> Result<(), RuntimeError> {
        let kafka = |during, source| RuntimeError::Kafka { during, source };
        let assignment = consumer.assignment().map_err(|e| kafka("reading the assignment", e))?;
        let committed = consumer
            .committed_offsets(assignment, self.config.blocking_timeout)
            .map_err(|e| kafka("reading committed offsets", e))?;
        let mut seek = TopicPartitionList::new();
        for element in committed.elements() {
            let offset = match element.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ if self.config.auto_offset_reset == "latest" => Offset::End,
                _ => Offset::Beginning,
            };
            seek.add_partition_offset(element.topic(), element.partition(), offset)
                .map_err(|e| kafka("building the rewind list", e))?;
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

fn raw_record(message: &BorrowedMessage<'_>) -> RawRecord {
    RawRecord {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis().unwrap_or(0),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers: message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| Header::new(h.key, h.value.map(<[u8]>::to_vec).unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn offsets_list(positions: &BTreeMap<Partition, i64>) -> Result<TopicPartitionList, KafkaError> {
    let mut list = TopicPartitionList::new();
    for ((topic, partition), next) in positions {
        list.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
    }
    Ok(list)
}

fn requires_abort(error: &KafkaError) -> bool {
    matches!(error, KafkaError::Transaction(e) if e.txn_requires_abort())
}

/// Retries calls that failed with a retriable error (CONCURRENT_TRANSACTIONS, a timeout).
fn with_retries(mut call: impl FnMut() -> Result<(), KafkaError>) -> Result<(), KafkaError> {
    let mut attempts = 0;
    loop {
        match call() {
            Err(KafkaError::Transaction(e)) if e.is_retriable() && attempts < 5 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(50 << attempts));
            }
            other => return other,
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
