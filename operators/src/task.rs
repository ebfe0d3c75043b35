//! A task: one instance of a sub-topology for one partition, driven by the runtime (or by the
//! [`TopologyTestDriver`](crate::test_driver::TopologyTestDriver)).
//!
//! Work happens in units (one record, one punctuation, one timer): a unit's store writes, output
//! and progress are rolled back if it fails. Units accumulate until the runtime commits or
//! aborts the transaction they were produced in.

use std::any::Any;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::clock::Clock;
use crate::error::{ErrorKind, ProcessError};
use crate::graph::{NodeFactory, NodeId, NodeSetup};
use crate::node::{self, Node, NodeContext, NodeMeta};
use crate::punctuation::PunctuationType;
use crate::record::{OutputRecord, RawRecord, RecordMetadata};
use crate::store::StoreError;
use crate::task_state::{Progress, StoreSlot, TaskState};
use crate::topology::{Subtopology, TaskId};

/// Stream time before the first record, as Kafka Streams' `-1`.
pub const UNKNOWN_STREAM_TIME: i64 = -1;

/// How much later a timer whose callback failed fires again.
pub const TIMER_RETRY_MS: i64 = 1_000;

pub struct Task {
    subtopology: Arc<Subtopology>,
    /// By node id; `None` for nodes of other sub-topologies, and for a node whose code panicked.
    nodes: Vec<Option<Box<dyn Node>>>,
    factories: Arc<[NodeFactory]>,
    meta: Arc<[NodeMeta]>,
    /// Nodes whose `init` has not succeeded yet, last to initialize first.
    uninitialized: Vec<NodeId>,
    /// Nodes among those whose instance panicked and was replaced: their `init` is told so.
    replaced: Vec<NodeId>,
    state: TaskState,
    committed_progress: Progress,
}

impl Task {
    pub(crate) fn new(
        subtopology: Arc<Subtopology>,
        nodes: Vec<Option<Box<dyn Node>>>,
        factories: Arc<[NodeFactory]>,
        meta: Arc<[NodeMeta]>,
        state: TaskState,
    ) -> Self {
        let uninitialized = subtopology.nodes.iter().rev().copied().collect();
        let committed_progress = state.progress;
        Task { subtopology, nodes, factories, meta, uninitialized, replaced: Vec::new(), state, committed_progress }
    }

    pub fn id(&self) -> TaskId {
        self.state.task_id
    }

    /// Replaces the clock processors read with `current_system_time_ms` and wall-clock
    /// punctuations are scheduled from.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.state.clock = clock;
        self
    }

    /// Handles one record. Atomic: on `Err`, every store write and output made while handling
    /// this record is discarded.
    pub fn process(&mut self, record: RawRecord) -> Result<(), ProcessError> {
        let (topic, partition, offset) = (record.topic.clone(), record.partition, record.offset);
        let in_context = |error: ProcessError| error.with_source_record(&topic, partition, offset);
        let source = *self.subtopology.sources.get(&record.topic).ok_or_else(|| {
            in_context(ProcessError::processing(format!(
                "topic '{}' is not a source of task {}",
                record.topic,
                self.id()
            )))
        })?;
        self.initialize().map_err(in_context)?;

        let metadata = RecordMetadata { topic: topic.clone(), partition, offset };
        let timestamp_ms = record.timestamp_ms;
        self.run_unit(Some(metadata), timestamp_ms, |task| {
            let progress = &mut task.state.progress;
            progress.stream_time_ms = progress.stream_time_ms.max(timestamp_ms);
            task.invoke(source, |node, ctx| node.process(ctx, Box::new(record)))?;
            task.state.record = None;
            let stream_time_ms = task.state.progress.stream_time_ms;
            for (id, node) in task.state.punctuations.take_due(PunctuationType::StreamTime, stream_time_ms) {
                task.invoke(node, |node, ctx| node.punctuate(ctx, id, stream_time_ms))?;
            }
            Ok(())
        })
        .map_err(in_context)
    }

    /// Fires due wall-clock punctuations, then due durable timers, each as its own unit. A unit
    /// that fails is rolled back and does not stop the ones after it: a failed timer is moved
    /// `TIMER_RETRY_MS` later, so it neither spins nor blocks the task's later timers. Returns
    /// the failures; the output and store writes of the units that succeeded stay pending.
    pub fn punctuate_wall_clock(&mut self, now_ms: i64) -> Vec<ProcessError> {
        if let Err(error) = self.initialize() {
            return vec![error];
        }
        let mut failures = Vec::new();
        for (id, node) in self.state.punctuations.take_due(PunctuationType::WallClockTime, now_ms) {
            if let Err(error) =
                self.run_unit(None, now_ms, |task| task.invoke(node, |node, ctx| node.punctuate(ctx, id, now_ms)))
            {
                failures.push(error);
            }
        }
        let subtopology = Arc::clone(&self.subtopology);
        for &(node, store) in &subtopology.timers {
            // Collected: firing a timer writes the stores, which the scan borrows; and a timer a
            // callback schedules for now fires in the next round, not this one.
            let due = match self
                .state
                .timer_store(store)
                .and_then(|timers| Ok(timers.due(now_ms).collect::<Result<Vec<_>, _>>()?))
            {
                Ok(due) => due,
                Err(error) => {
                    failures.push(error);
                    continue;
                }
            };
            for (timer_key, fire_at_ms) in due {
                let fired = self.run_unit(None, now_ms, |task| {
                    let mut timers = task.state.timer_store(store)?;
                    // An earlier timer's callback may have moved or cancelled this one.
                    if timers.scheduled_at(&timer_key)? != Some(fire_at_ms) {
                        return Ok(());
                    }
                    timers.cancel(&timer_key)?;
                    task.invoke(node, |node, ctx| node.on_timer(ctx, &timer_key, fire_at_ms))
                });
                if let Err(error) = fired {
                    failures.push(error);
                    let retry_at = now_ms + TIMER_RETRY_MS;
                    if let Err(error) = self.run_unit(None, now_ms, |task| {
                        Ok(task.state.timer_store(store)?.schedule(&timer_key, retry_at)?)
                    }) {
                        failures.push(error);
                    }
                }
            }
        }
        failures
    }

    /// The transaction is about to commit: every processor finishes the work it batched
    /// ([`Processor::before_commit`](crate::processor::Processor::before_commit)), all of them
    /// one unit, so that a failure leaves nothing of any of them.
    pub fn before_commit(&mut self) -> Result<(), ProcessError> {
        // A processor replaced after a panic gets its `init` first, to find what it must finish.
        self.initialize()?;
        let now_ms = self.state.clock.now_ms();
        let subtopology = Arc::clone(&self.subtopology);
        self.run_unit(None, now_ms, |task| {
            for &node in &subtopology.nodes {
                task.invoke(node, |node, ctx| node.before_commit(ctx))?;
            }
            Ok(())
        })
    }

    /// Everything to produce since the last take: sink, repartition and changelog records
    /// (changelog records carry the task's partition), in the order they were made.
    pub fn take_output(&mut self) -> Vec<OutputRecord> {
        std::mem::take(&mut self.state.output)
    }

    /// Each store's name and committed entries.
    pub fn store_entries(&self) -> impl Iterator<Item = (&str, Result<u64, StoreError>)> {
        self.state.stores.iter().flatten().map(|slot| (slot.name.as_str(), slot.store.entries()))
    }

    /// Each store's name and bytes on disk (0 in memory).
    pub fn store_disk_bytes(&self) -> impl Iterator<Item = (&str, u64)> {
        self.state.stores.iter().flatten().map(|slot| (slot.name.as_str(), slot.store.disk_bytes()))
    }

    /// The transaction committed: pending store writes become the committed state. A store
    /// that cannot write its local state fails the task (see [`StateStore::commit`]).
    pub fn commit(&mut self) -> Result<(), StoreError> {
        for slot in self.state.stores_mut() {
            slot.store.commit()?;
        }
        self.committed_progress = self.state.progress;
        Ok(())
    }

    /// The changelogs of the stores that keep local state across restarts.
    pub fn persistent_changelogs(&self) -> Vec<String> {
        self.state
            .stores
            .iter()
            .flatten()
            .filter(|slot| slot.store.is_persistent())
            .map(|slot| slot.changelog_topic.clone())
            .collect()
    }

    /// Closed after a clean commit: each persistent store records that its local state is
    /// complete up to its changelog's end offset, so that the next restore reads only what
    /// came after.
    pub fn checkpoint(&mut self, changelog_ends: &BTreeMap<String, i64>) -> Result<(), StoreError> {
        for slot in self.state.stores_mut() {
            if let Some(&end) = changelog_ends.get(&slot.changelog_topic) {
                slot.store.checkpoint(end)?;
            }
        }
        Ok(())
    }

    /// A suspended task resumes: its checkpoints would overstate local state once it writes on.
    pub fn discard_checkpoints(&mut self) -> Result<(), StoreError> {
        for slot in self.state.stores_mut() {
            slot.store.discard_checkpoint()?;
        }
        Ok(())
    }

    /// Where the restore of `changelog_topic` starts: the checkpointed offset of its store's local
    /// state, or `None` for the beginning.
    pub fn restore_from(&self, changelog_topic: &str) -> Option<i64> {
        self.changelog_slot(changelog_topic).and_then(|slot| slot.store.restore_from())
    }

    /// Forgets the local state behind `changelog_topic`, before a restore from the beginning.
    pub fn wipe_store(&mut self, changelog_topic: &str) -> Result<(), StoreError> {
        let store = self.subtopology.changelogs.get(changelog_topic).copied();
        match store.and_then(|id| self.state.stores.get_mut(id)).and_then(Option::as_mut) {
            Some(slot) => slot.store.wipe(),
            None => Ok(()),
        }
    }

    fn changelog_slot(&self, changelog_topic: &str) -> Option<&StoreSlot> {
        let store = self.subtopology.changelogs.get(changelog_topic).copied()?;
        self.state.stores.get(store).and_then(Option::as_ref)
    }

    /// The transaction aborted: every store returns to its last committed state, pending output
    /// is dropped and stream time goes back to its committed value. Also the way back after user
    /// code panicked inside [`Task::process`]: processors that panicked are replaced by fresh
    /// instances, initialized again before the next record.
    pub fn abort(&mut self) {
        for slot in self.state.stores_mut() {
            slot.store.abort();
        }
        self.state.output.clear();
        self.state.progress = self.committed_progress;
        self.replace_lost_nodes();
    }

    /// A node is out of its slot only while it runs, so after a panic it is missing for good.
    fn replace_lost_nodes(&mut self) {
        let setup = NodeSetup { application_id: &self.state.application_id };
        for &node in &self.subtopology.nodes {
            if let (Some(slot @ None), Some(factory)) = (self.nodes.get_mut(node), self.factories.get(node)) {
                *slot = Some(factory(&setup));
                if !self.uninitialized.contains(&node) {
                    self.uninitialized.push(node);
                }
                if !self.replaced.contains(&node) {
                    self.replaced.push(node);
                }
            }
        }
        self.uninitialized.sort_unstable_by(|a, b| b.cmp(a));
    }

    /// Restores one changelog record into the store behind `changelog_topic` (`None` deletes).
    /// Not captured as output.
    pub fn restore(&mut self, changelog_topic: &str, key: &[u8], value: Option<&[u8]>) -> Result<(), ProcessError> {
        let store = self.subtopology.changelogs.get(changelog_topic).copied();
        let slot = store.and_then(|id| self.state.stores.get_mut(id)).and_then(Option::as_mut).ok_or_else(|| {
            ProcessError::store(format!("'{changelog_topic}' is not a changelog of task {}", self.state.task_id))
        })?;
        Ok(slot.store.restore(key, value)?)
    }

    /// The highest record timestamp processed, or
    /// [`UNKNOWN_STREAM_TIME`] before the first record.
    pub fn stream_time(&self) -> i64 {
        self.state.progress.stream_time_ms
    }

    /// Sets stream time after a restart, e.g. from commit metadata, so records that were late
    /// before the restart are still dropped. Never moves stream time backwards.
    pub fn restore_stream_time(&mut self, stream_time_ms: i64) {
        let restored = self.state.progress.stream_time_ms.max(stream_time_ms);
        self.state.progress.stream_time_ms = restored;
        self.committed_progress.stream_time_ms = self.committed_progress.stream_time_ms.max(restored);
    }

    /// Records dropped because they arrived after their window closed (counted per window, as in
    /// Kafka Streams' `dropped-records` metric).
    pub fn dropped_records(&self) -> u64 {
        self.state.progress.dropped_records
    }

    pub(crate) fn store_slot(&self, name: &str) -> Option<&StoreSlot> {
        self.state.stores.iter().flatten().find(|slot| slot.name == name)
    }

    /// Runs the `init` of nodes that have not been initialized, each as its own unit, so `init`
    /// sees restored stores.
    fn initialize(&mut self) -> Result<(), ProcessError> {
        while let Some(&node) = self.uninitialized.last() {
            let now_ms = self.state.clock.now_ms();
            self.state.punctuations.cancel_node(node);
            self.state.initializing_replacement = self.replaced.contains(&node);
            let result = self.run_unit(None, now_ms, |task| task.invoke(node, |node, ctx| node.init(ctx)));
            self.state.initializing_replacement = false;
            result?;
            self.uninitialized.pop();
            self.replaced.retain(|&replaced| replaced != node);
        }
        Ok(())
    }

    fn invoke(
        &mut self,
        node: NodeId,
        call: impl FnOnce(&mut dyn Node, &mut NodeContext<'_>) -> Result<(), ProcessError>,
    ) -> Result<(), ProcessError> {
        node::invoke(&mut self.nodes, &self.meta, &mut self.state, node, call)
    }

    /// Runs `work` atomically: on error or panic, its store writes, output and progress are
    /// undone. A panic becomes an error, and the processors it took down are replaced.
    fn run_unit(
        &mut self,
        record: Option<RecordMetadata>,
        timestamp_ms: i64,
        work: impl FnOnce(&mut Self) -> Result<(), ProcessError>,
    ) -> Result<(), ProcessError> {
        let output_len = self.state.output.len();
        let progress = self.state.progress;
        for slot in self.state.stores_mut() {
            slot.store.savepoint();
        }
        self.state.record = record;
        self.state.timestamp_ms = timestamp_ms;
        let result = match catch_unwind(AssertUnwindSafe(|| work(&mut *self))) {
            Ok(result) => result,
            Err(panic) => {
                self.replace_lost_nodes();
                Err(ProcessError::new(
                    ErrorKind::Panic,
                    format!("user code panicked: {}", panic_message(panic.as_ref())),
                ))
            }
        };
        self.state.record = None;
        if result.is_err() {
            self.state.output.truncate(output_len);
            for slot in self.state.stores_mut() {
                slot.store.rollback_to_savepoint();
            }
            self.state.progress = progress;
        }
        result
    }
}

/// The text a panic was raised with, when it was a string.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
