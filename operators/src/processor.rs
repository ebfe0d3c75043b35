//! The Processor API: user code with direct access to stores, punctuations and durable timers,
//! plugged into a DSL topology with [`KStream::process`](crate::dsl::KStream::process).

use std::marker::PhantomData;
use std::time::Duration;

use crate::clock::duration_ms;
use crate::error::ProcessError;
use crate::graph::StoreId;
use crate::node::NodeContext;
use crate::punctuation::{PunctuationId, PunctuationType};
use crate::record::{Data, Record, RecordMetadata};
use crate::store::timers::TimerStore;
use crate::store::{ChangeLoggingStore, KeyValueStore};
use crate::topology::TaskId;

/// A record processor, like Kafka Streams' `Processor<KIn, VIn, KOut, VOut>`. One instance runs
/// per task. Its own fields are not transactional: keep anything that must survive a failed
/// record, an aborted transaction or a restart in a store.
pub trait Processor<KIn, VIn, KOut = KIn, VOut = VIn>: Send {
    /// Called once per task, after its stores are restored and before the first record or
    /// punctuation; the place to [`schedule`](ProcessorContext::schedule) punctuations.
    fn init(&mut self, _ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<(), ProcessError> {
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
        record: Record<KIn, VIn>,
    ) -> Result<(), ProcessError>;

    /// A punctuation scheduled with [`ProcessorContext::schedule`] is due.
    fn punctuate(
        &mut self,
        _ctx: &mut ProcessorContext<'_, KOut, VOut>,
        _id: PunctuationId,
        _timestamp_ms: i64,
    ) -> Result<(), ProcessError> {
        Ok(())
    }

    /// The task's transaction is about to commit: the place to finish work batched over the
    /// records since the last commit, such as one round trip to an outside system for all of
    /// them. Store writes and forwarded records commit with the transaction. An error aborts it
    /// and every record since the last commit is processed again; so a processor whose batch
    /// failed should do that work record by record on the replay, where the runtime's retries,
    /// pauses and dead letters apply to each record, until the replay reaches its commit. Keep
    /// anything batched in memory as a hint only: after an abort the stores are rolled back, and
    /// what they say is what stands; and a processor replaced after a panic starts with empty
    /// memory, so its `init` should find in the stores what is left to finish
    /// ([`ProcessorContext::replaces_a_panicked_processor`]).
    fn before_commit(&mut self, _ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<(), ProcessError> {
        Ok(())
    }

    /// A durable timer set with [`ProcessorContext::schedule_timer`] is due. It has already been
    /// removed, so the processor may set it again. If this returns an error the removal is rolled
    /// back too, and the timer fires again on the next wall-clock punctuation.
    fn on_timer(
        &mut self,
        _ctx: &mut ProcessorContext<'_, KOut, VOut>,
        _timer_key: &[u8],
        _fire_at_ms: i64,
    ) -> Result<(), ProcessError> {
        Ok(())
    }
}

/// A processor's access to its task.
pub struct ProcessorContext<'a, KOut, VOut> {
    node: NodeContext<'a>,
    _output: PhantomData<fn(KOut, VOut)>,
}

impl<'a, KOut: Data, VOut: Data> ProcessorContext<'a, KOut, VOut> {
    pub(crate) fn new(node: NodeContext<'a>) -> Self {
        ProcessorContext { node, _output: PhantomData }
    }

    /// Sends a record to every downstream node.
    pub fn forward(&mut self, record: Record<KOut, VOut>) -> Result<(), ProcessError> {
        self.node.forward(record)
    }

    /// Sends a record to the downstream node named `child` only.
    pub fn forward_to(&mut self, child: &str, record: Record<KOut, VOut>) -> Result<(), ProcessError> {
        self.node.forward_to_named(child, record)
    }

    /// A key–value store connected to this processor, typed as it was declared with
    /// [`StoreBuilder::key_value`](crate::store::StoreBuilder::key_value).
    pub fn kv_store<K: 'static, V: 'static>(&mut self, name: &str) -> Result<KeyValueStore<'_, K, V>, ProcessError> {
        let state = &*self.node.state;
        let store = self
            .node
            .meta()
            .and_then(|meta| {
                meta.stores.iter().copied().find(|&id| state.slot(id).is_some_and(|slot| slot.name == name))
            })
            .ok_or_else(|| {
                ProcessError::store(format!(
                    "processor {} is not connected to store '{name}'; list the store when calling process",
                    self.node.node_name()
                ))
            })?;
        self.node.state.declared_key_value_store(store)
    }

    /// Calls [`Processor::punctuate`] every `interval` of the given clock. Wall-clock
    /// punctuations first fire one interval from now; stream-time ones on the first record at or
    /// after time 0, then every interval of stream time.
    pub fn schedule(&mut self, interval: Duration, kind: PunctuationType) -> Result<PunctuationId, ProcessError> {
        let interval_ms = duration_ms(interval);
        if interval_ms < 1 {
            return Err(ProcessError::processing("punctuation interval must be at least 1 ms"));
        }
        let first_ms = match kind {
            PunctuationType::WallClockTime => self.current_system_time_ms().saturating_add(interval_ms),
            PunctuationType::StreamTime => 0,
        };
        let node = self.node.node_id();
        Ok(self.node.state.punctuations.schedule(node, kind, interval_ms, first_ms))
    }

    fn timers(&mut self) -> Result<TimerStore<ChangeLoggingStore<'_>>, ProcessError> {
        let store: StoreId = self.node.meta().and_then(|meta| meta.timer_store).ok_or_else(|| {
            ProcessError::processing(format!(
                "processor {} has no durable timers; add it with Processed::with_durable_timers",
                self.node.node_name()
            ))
        })?;
        self.node.state.timer_store(store)
    }

    /// Sets a durable timer: [`Processor::on_timer`] runs with `timer_key` on the first
    /// wall-clock punctuation at or after `fire_at_ms`. Setting a key again moves its timer.
    /// Timers are change-logged and survive restarts.
    pub fn schedule_timer(&mut self, timer_key: &[u8], fire_at_ms: i64) -> Result<(), ProcessError> {
        Ok(self.timers()?.schedule(timer_key, fire_at_ms)?)
    }

    /// Removes a durable timer; returns whether it was set.
    pub fn cancel_timer(&mut self, timer_key: &[u8]) -> Result<bool, ProcessError> {
        Ok(self.timers()?.cancel(timer_key)?)
    }

    /// When the timer with this key fires, if it is set.
    pub fn timer(&mut self, timer_key: &[u8]) -> Result<Option<i64>, ProcessError> {
        Ok(self.timers()?.scheduled_at(timer_key)?)
    }

    /// The record being processed; `None` in punctuations and timers.
    pub fn record_metadata(&self) -> Option<&RecordMetadata> {
        self.node.state.record.as_ref()
    }

    /// The highest record timestamp the task has seen.
    pub fn stream_time_ms(&self) -> i64 {
        self.node.state.progress.stream_time_ms
    }

    pub fn current_system_time_ms(&self) -> i64 {
        self.node.state.clock.now_ms()
    }

    pub fn task_id(&self) -> TaskId {
        self.node.state.task_id
    }

    /// In `init`: this processor replaces one of this task that panicked, so what that one
    /// batched in memory since the last commit is gone while its store writes stand. `false` for
    /// the first instance at a task's start, where under exactly-once the stores hold committed
    /// state only: the place to look for unfinished work only when this is `true`.
    pub fn replaces_a_panicked_processor(&self) -> bool {
        self.node.state.initializing_replacement
    }

    pub fn application_id(&self) -> &str {
        &self.node.state.application_id
    }

    pub fn processor_name(&self) -> &str {
        self.node.node_name()
    }
}
