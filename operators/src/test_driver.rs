//! `TopologyTestDriver`: runs a topology in-process, without Kafka, in the spirit of Kafka
//! Streams' test driver.
//!
//! Every topic has a single partition 0, so there is one task per sub-topology. Each piped record
//! goes through [`Task::process`], [`Task::before_commit`] and [`Task::commit`], the code path
//! the runtime uses (several records share one transaction inside
//! [`TopologyTestDriver::in_one_transaction`]); records written to repartition topics (and to
//! user topics the topology also reads) are fed straight back in. Changelog records are kept, so [`TopologyTestDriver::restart_from_changelogs`] can
//! simulate a crash and prove state is recovered from them.
//!
//! Topic and store handles are cheap values that share the driver, so any number can be used
//! at once.

mod store;
mod topics;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{duration_ms, Clock, ManualClock};
use crate::error::ProcessError;
use crate::graph::StoreKind;
use crate::record::{Header, OutputRecord, RawRecord};
use crate::serdes::{Serde, SerdeError};
use crate::store::{InMemoryStoreSupplier, StoreSerdes};
use crate::task::Task;
use crate::task_state::StoreSlot;
use crate::topology::{TaskId, Topology};

pub use store::TestKeyValueStore;
pub use topics::{TestInputTopic, TestOutputTopic};

/// Why a test-driver call failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("topic '{0}' is not read by the topology")]
    UnknownTopic(String),
    #[error("no record left in output topic '{0}'")]
    NoRecord(String),
    #[error("cannot convert a record of '{topic}': {source}")]
    Serde { topic: String, source: SerdeError },
    #[error("no store named '{0}' in the topology")]
    UnknownStore(String),
    #[error("store '{name}': {reason}")]
    Store { name: String, reason: String },
}

impl DriverError {
    /// The task's error, when the failure happened while processing.
    pub fn as_process_error(&self) -> Option<&ProcessError> {
        match self {
            DriverError::Process(error) => Some(error),
            _ => None,
        }
    }
}

pub struct TopologyTestDriver {
    core: Rc<RefCell<DriverCore>>,
}

pub(crate) struct DriverCore {
    topology: Topology,
    clock: ManualClock,
    /// One task per sub-topology, all for partition 0.
    tasks: Vec<Task>,
    next_offsets: HashMap<String, i64>,
    outputs: HashMap<String, VecDeque<OutputRecord>>,
    /// Committed changelog records, in the order they were produced.
    changelog: Vec<OutputRecord>,
    changelog_topics: HashSet<String>,
    repartition_topics: HashSet<String>,
    /// Whether an output to a topic the topology also reads is processed at once (see
    /// [`TopologyTestDriver::feed_back_outputs`]).
    feed_back_outputs: bool,
    /// Repartition records waiting for [`TopologyTestDriver::deliver_held`], when held.
    held: Option<BTreeMap<String, VecDeque<RawRecord>>>,
    /// Inside [`TopologyTestDriver::in_one_transaction`]: records are processed, not committed.
    in_transaction: bool,
}

impl TopologyTestDriver {
    /// A driver whose wall clock starts at 0 ms.
    pub fn new(topology: Topology) -> Self {
        Self::with_wall_clock_ms(topology, 0)
    }

    pub fn with_wall_clock_ms(topology: Topology, start_ms: i64) -> Self {
        let clock = ManualClock::new(start_ms);
        let core = DriverCore {
            tasks: create_tasks(&topology, &clock),
            changelog_topics: topology.changelog_topics().into_iter().collect(),
            repartition_topics: topology.repartition_topics().into_iter().collect(),
            topology,
            clock,
            next_offsets: HashMap::new(),
            outputs: HashMap::new(),
            changelog: Vec::new(),
            feed_back_outputs: true,
            held: None,
            in_transaction: false,
        };
        TopologyTestDriver { core: Rc::new(RefCell::new(core)) }
    }

    /// By default an output to a topic the topology also reads is processed right away, as in
    /// Kafka Streams' driver. Turned off, such outputs only wait on their output topic, so a
    /// test can hand them back in any order it likes against the topology's other inputs, as
    /// a real broker may. Repartition topics are always processed at once.
    pub fn feed_back_outputs(self, on: bool) -> Self {
        self.core.borrow_mut().feed_back_outputs = on;
        self
    }

    /// Holds records written to repartition topics instead of processing them at once, so a
    /// test can deliver them one at a time ([`Self::deliver_held`]), interleaved with other
    /// input as a real broker may.
    pub fn hold_repartitions(self) -> Self {
        self.core.borrow_mut().held = Some(BTreeMap::new());
        self
    }

    /// The repartition topics with held records.
    pub fn held_topics(&self) -> Vec<String> {
        let core = self.core.borrow();
        core.held.iter().flatten().filter(|(_, queue)| !queue.is_empty()).map(|(topic, _)| topic.clone()).collect()
    }

    /// Processes the oldest held record of `topic`, and what it causes; `false` if none was held.
    pub fn deliver_held(&self, topic: &str) -> Result<bool, DriverError> {
        let mut core = self.core.borrow_mut();
        let Some(record) = core.held.as_mut().and_then(|held| held.get_mut(topic)).and_then(VecDeque::pop_front) else {
            return Ok(false);
        };
        core.process_all(VecDeque::from([record]))?;
        Ok(true)
    }

    pub fn create_input_topic<K, V>(
        &self,
        topic: &str,
        key_serde: impl Serde<K> + 'static,
        value_serde: impl Serde<V> + 'static,
    ) -> TestInputTopic<K, V> {
        TestInputTopic::new(Rc::clone(&self.core), topic, Arc::new(key_serde), Arc::new(value_serde))
    }

    pub fn create_output_topic<K, V>(
        &self,
        topic: &str,
        key_serde: impl Serde<K> + 'static,
        value_serde: impl Serde<V> + 'static,
    ) -> TestOutputTopic<K, V> {
        TestOutputTopic::new(Rc::clone(&self.core), topic, Arc::new(key_serde), Arc::new(value_serde))
    }

    /// Processes the records `pipe` pipes in one transaction, committed when it returns, as the
    /// runtime batches the records between two commits: `before_commit` sees them all, a record
    /// that fails (its own work undone) leaves the others' work in the transaction, and a failed
    /// `before_commit` aborts it all. What they write to topics the topology reads is processed
    /// after the commit, each record in its own transaction again. Returns what `pipe` returned,
    /// or the commit's error; a wall-clock advance inside `pipe` commits as it always does.
    pub fn in_one_transaction<T>(&self, pipe: impl FnOnce() -> T) -> Result<T, DriverError> {
        let outer = std::mem::replace(&mut self.core.borrow_mut().in_transaction, true);
        let piped = pipe();
        if !outer {
            let mut core = self.core.borrow_mut();
            core.in_transaction = false;
            core.commit_all()?;
        }
        Ok(piped)
    }

    /// Pipes a record with exactly these key and value bytes, e.g. bytes no serde would produce.
    /// The driver assigns partition 0 and the topic's next offset.
    pub fn pipe_raw_record(&self, record: RawRecord) -> Result<(), DriverError> {
        self.core.borrow_mut().pipe(record.topic.clone(), record.timestamp_ms, record.key, record.value, record.headers)
    }

    /// A typed view of a key–value store, declared with the types it holds.
    pub fn key_value_store<K: 'static, V: 'static>(&self, name: &str) -> Result<TestKeyValueStore<K, V>, DriverError> {
        let core = self.core.borrow();
        let slot = core.store_slot(name)?;
        if slot.kind != StoreKind::KeyValue {
            return Err(DriverError::Store { name: name.to_owned(), reason: "not a key-value store".to_owned() });
        }
        let serdes = slot.serdes.downcast_ref::<StoreSerdes<K, V>>().cloned().ok_or_else(|| DriverError::Store {
            name: name.to_owned(),
            reason: format!(
                "does not hold {} keys and {} values",
                std::any::type_name::<K>(),
                std::any::type_name::<V>()
            ),
        })?;
        Ok(TestKeyValueStore::new(Rc::clone(&self.core), name, serdes))
    }

    pub fn wall_clock_ms(&self) -> i64 {
        self.core.borrow().clock.now_ms()
    }

    /// Moves the wall clock forward and fires due wall-clock punctuations and durable timers.
    pub fn advance_wall_clock_time(&self, advance: Duration) -> Result<(), DriverError> {
        self.core.borrow_mut().advance_wall_clock(duration_ms(advance))
    }

    /// Simulates a crash: every task is rebuilt from nothing and its stores restored from the
    /// changelog records produced so far. Output topics are kept, as they would be in Kafka.
    pub fn restart_from_changelogs(&self) -> Result<(), DriverError> {
        self.core.borrow_mut().restart()
    }

    /// Changelog records committed so far for one changelog topic.
    pub fn changelog_records(&self, changelog_topic: &str) -> Vec<OutputRecord> {
        self.core.borrow().changelog.iter().filter(|record| record.topic == changelog_topic).cloned().collect()
    }

    /// Late records dropped by windowed aggregations, over all tasks.
    pub fn dropped_records(&self) -> u64 {
        self.core.borrow().tasks.iter().map(Task::dropped_records).sum()
    }
}

fn create_tasks(topology: &Topology, clock: &ManualClock) -> Vec<Task> {
    (0..topology.subtopology_count())
        .map(|subtopology| {
            // The driver keeps every store in memory, whatever the topology declares.
            topology
                .create_task_with(TaskId { subtopology, partition: 0 }, &|_| Some(Arc::new(InMemoryStoreSupplier)))
                .unwrap_or_else(|e| panic!("TopologyTestDriver: an in-memory store did not open: {e}"))
                .with_clock(Arc::new(clock.clone()))
        })
        .collect()
}

impl DriverCore {
    fn next_offset(&mut self, topic: &str) -> i64 {
        let offset = self.next_offsets.entry(topic.to_owned()).or_insert(0);
        *offset += 1;
        *offset - 1
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub(crate) fn pipe(
        &mut self,
        topic: String,
        timestamp_ms: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<Header>,
    ) -> Result<(), DriverError> {
        if self.topology.subtopology_of(&topic).is_none() {
            return Err(DriverError::UnknownTopic(topic));
        }
        let offset = self.next_offset(&topic);
        let record = RawRecord { topic, partition: 0, offset, timestamp_ms, key, value, headers };
        self.process_all(VecDeque::from([record]))
    }

    /// Processes records, and the records they produce into topics the topology reads, until
    /// none are left. Each record is its own committed transaction, unless one is open.
    fn process_all(&mut self, mut queue: VecDeque<RawRecord>) -> Result<(), DriverError> {
        while let Some(record) = queue.pop_front() {
            let subtopology = self
                .topology
                .subtopology_of(&record.topic)
                .ok_or_else(|| DriverError::UnknownTopic(record.topic.clone()))?;
            let Some(task) = self.tasks.get_mut(subtopology) else {
                return Err(DriverError::UnknownTopic(record.topic));
            };
            task.process(record)?;
            if !self.in_transaction {
                self.commit_task(subtopology, &mut queue)?;
            }
        }
        Ok(())
    }

    /// Ends a task's transaction as the runtime does: `before_commit`, aborting on its error
    /// (the transaction's work goes with it), then the commit.
    fn commit_task(&mut self, index: usize, queue: &mut VecDeque<RawRecord>) -> Result<(), ProcessError> {
        let Some(task) = self.tasks.get_mut(index) else {
            return Ok(());
        };
        if let Err(error) = task.before_commit() {
            task.abort();
            return Err(error);
        }
        self.commit_prepared(index, queue)
    }

    /// Commits a task whose `before_commit` ran; its outputs go to `queue`.
    fn commit_prepared(&mut self, index: usize, queue: &mut VecDeque<RawRecord>) -> Result<(), ProcessError> {
        let Some(task) = self.tasks.get_mut(index) else {
            return Ok(());
        };
        let output = task.take_output();
        task.commit().map_err(ProcessError::from)?;
        self.route(output, queue);
        Ok(())
    }

    /// Commits the transaction every task has open, then processes what they wrote to topics
    /// the topology reads. As in the runtime, one failed `before_commit` aborts every task's work.
    fn commit_all(&mut self) -> Result<(), DriverError> {
        if let Err(error) = self.tasks.iter_mut().try_for_each(Task::before_commit) {
            self.tasks.iter_mut().for_each(Task::abort);
            return Err(error.into());
        }
        let mut queue = VecDeque::new();
        for index in 0..self.tasks.len() {
            self.commit_prepared(index, &mut queue)?;
        }
        self.process_all(queue)
    }

    fn route(&mut self, output: Vec<OutputRecord>, queue: &mut VecDeque<RawRecord>) {
        for record in output {
            if self.changelog_topics.contains(&record.topic) {
                self.changelog.push(record);
                continue;
            }
            let internal = self.repartition_topics.contains(&record.topic);
            if self.topology.subtopology_of(&record.topic).is_some() && (internal || self.feed_back_outputs) {
                let offset = self.next_offset(&record.topic);
                let target = match self.held.as_mut() {
                    Some(held) if internal => held.entry(record.topic.clone()).or_default(),
                    _ => &mut *queue,
                };
                target.push_back(RawRecord {
                    topic: record.topic.clone(),
                    partition: 0,
                    offset,
                    timestamp_ms: record.timestamp_ms,
                    key: record.key.clone(),
                    value: record.value.clone(),
                    headers: record.headers.clone(),
                });
            }
            if !self.repartition_topics.contains(&record.topic) {
                self.outputs.entry(record.topic.clone()).or_default().push_back(record);
            }
        }
    }

    fn advance_wall_clock(&mut self, advance_ms: i64) -> Result<(), DriverError> {
        let now_ms = self.clock.now_ms().saturating_add(advance_ms);
        self.clock.set(now_ms);
        let mut queue = VecDeque::new();
        let mut first_error = None;
        for index in 0..self.tasks.len() {
            let Some(task) = self.tasks.get_mut(index) else {
                continue;
            };
            // Units that succeeded before a failure are kept, as the runtime would commit them.
            let mut failures = task.punctuate_wall_clock(now_ms);
            if let Err(error) = self.commit_task(index, &mut queue) {
                failures.insert(0, error);
            }
            if let Some(error) = failures.into_iter().next() {
                first_error.get_or_insert(error);
            }
        }
        self.process_all(queue)?;
        first_error.map_or(Ok(()), |error| Err(error.into()))
    }

    fn restart(&mut self) -> Result<(), DriverError> {
        self.tasks = create_tasks(&self.topology, &self.clock);
        let task_of_changelog: HashMap<String, usize> = (0..self.topology.subtopology_count())
            .flat_map(|subtopology| {
                self.topology.changelogs_of(subtopology).into_iter().map(move |topic| (topic, subtopology))
            })
            .collect();
        for record in &self.changelog {
            let (Some(&subtopology), Some(key)) = (task_of_changelog.get(&record.topic), &record.key) else {
                continue;
            };
            if let Some(task) = self.tasks.get_mut(subtopology) {
                task.restore(&record.topic, key, record.value.as_deref())?;
            }
        }
        Ok(())
    }

    pub(crate) fn store_slot(&self, name: &str) -> Result<&StoreSlot, DriverError> {
        self.tasks
            .iter()
            .find_map(|task| task.store_slot(name))
            .ok_or_else(|| DriverError::UnknownStore(name.to_owned()))
    }

    /// Takes the next record of an output topic.
    pub(crate) fn take_output(&mut self, topic: &str) -> Option<OutputRecord> {
        self.outputs.get_mut(topic).and_then(VecDeque::pop_front)
    }

    pub(crate) fn output_len(&self, topic: &str) -> usize {
        self.outputs.get(topic).map_or(0, VecDeque::len)
    }
}
