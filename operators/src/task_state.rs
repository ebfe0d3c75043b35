//! Everything a task's nodes share while handling a record: stores, output, time and schedules.

use std::any::Any;
use std::sync::Arc;

use crate::clock::Clock;
use crate::error::ProcessError;
use crate::graph::{StoreId, StoreKind};
use crate::punctuation::Punctuations;
use crate::record::{OutputRecord, RecordMetadata};
use crate::store::timers::TimerStore;
use crate::store::{ChangeLoggingStore, KeyValueStore, SessionStore, StateStore, StoreSerdes, WindowStore};
use crate::task::UNKNOWN_STREAM_TIME;
use crate::topology::TaskId;

pub(crate) struct StoreSlot {
    pub(crate) name: String,
    pub(crate) changelog_topic: String,
    pub(crate) kind: StoreKind,
    pub(crate) store: Box<dyn StateStore>,
    pub(crate) serdes: Arc<dyn Any + Send + Sync>,
}

/// Task progress that is part of a transaction: rolled back with the stores.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Progress {
    pub(crate) stream_time_ms: i64,
    pub(crate) dropped_records: u64,
}

pub(crate) struct TaskState {
    pub(crate) task_id: TaskId,
    pub(crate) application_id: Arc<str>,
    /// Indexed by store id; only this task's sub-topology's stores are present.
    pub(crate) stores: Vec<Option<StoreSlot>>,
    pub(crate) output: Vec<OutputRecord>,
    /// The source record being handled, `None` while punctuating.
    pub(crate) record: Option<RecordMetadata>,
    /// Timestamp given to changelog records written now.
    pub(crate) timestamp_ms: i64,
    pub(crate) progress: Progress,
    pub(crate) punctuations: Punctuations,
    pub(crate) clock: Arc<dyn Clock>,
    /// The `init` running now is that of a processor replacing one that panicked.
    pub(crate) initializing_replacement: bool,
}

fn missing_store(id: StoreId) -> ProcessError {
    ProcessError::store(format!("store #{id} does not belong to this task"))
}

impl TaskState {
    pub(crate) fn new(
        task_id: TaskId,
        application_id: Arc<str>,
        stores: Vec<Option<StoreSlot>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        TaskState {
            task_id,
            application_id,
            stores,
            output: Vec::new(),
            record: None,
            timestamp_ms: 0,
            progress: Progress { stream_time_ms: UNKNOWN_STREAM_TIME, dropped_records: 0 },
            punctuations: Punctuations::default(),
            clock,
            initializing_replacement: false,
        }
    }

    pub(crate) fn slot(&self, id: StoreId) -> Option<&StoreSlot> {
        self.stores.get(id).and_then(Option::as_ref)
    }

    pub(crate) fn record_dropped(&mut self) {
        self.progress.dropped_records += 1;
    }

    /// The store behind `id`, seen through the change-logging view.
    pub(crate) fn logged_store(&mut self, id: StoreId) -> Result<ChangeLoggingStore<'_>, ProcessError> {
        let slot = self.stores.get_mut(id).and_then(Option::as_mut).ok_or_else(|| missing_store(id))?;
        Ok(ChangeLoggingStore {
            inner: slot.store.as_mut(),
            changelog_topic: &slot.changelog_topic,
            partition: self.task_id.partition,
            timestamp_ms: self.timestamp_ms,
            output: &mut self.output,
        })
    }

    pub(crate) fn key_value_store<'s, K, V>(
        &'s mut self,
        id: StoreId,
        serdes: &'s StoreSerdes<K, V>,
    ) -> Result<KeyValueStore<'s, K, V>, ProcessError> {
        Ok(KeyValueStore::new(self.logged_store(id)?, serdes))
    }

    pub(crate) fn window_store<'s, K, V>(
        &'s mut self,
        id: StoreId,
        serdes: &'s StoreSerdes<K, V>,
    ) -> Result<WindowStore<'s, K, V>, ProcessError> {
        Ok(WindowStore::new(self.logged_store(id)?, serdes))
    }

    pub(crate) fn session_store<'s, K, V>(
        &'s mut self,
        id: StoreId,
        serdes: &'s StoreSerdes<K, V>,
    ) -> Result<SessionStore<'s, K, V>, ProcessError> {
        Ok(SessionStore::new(self.logged_store(id)?, serdes))
    }

    pub(crate) fn timer_store(&mut self, id: StoreId) -> Result<TimerStore<ChangeLoggingStore<'_>>, ProcessError> {
        Ok(TimerStore::new(self.logged_store(id)?))
    }

    /// A key–value store typed by the serdes it was declared with; asking for other types is an
    /// error rather than a misread.
    pub(crate) fn declared_key_value_store<K: 'static, V: 'static>(
        &mut self,
        id: StoreId,
    ) -> Result<KeyValueStore<'_, K, V>, ProcessError> {
        let slot = self.stores.get_mut(id).and_then(Option::as_mut).ok_or_else(|| missing_store(id))?;
        let StoreSlot { name, changelog_topic, kind, store, serdes } = slot;
        if *kind != StoreKind::KeyValue {
            return Err(ProcessError::store(format!("store '{name}' is not a key-value store")));
        }
        let serdes = serdes.downcast_ref::<StoreSerdes<K, V>>().ok_or_else(|| {
            ProcessError::store(format!(
                "store '{name}' does not hold {} keys and {} values",
                std::any::type_name::<K>(),
                std::any::type_name::<V>()
            ))
        })?;
        let bytes = ChangeLoggingStore {
            inner: store.as_mut(),
            changelog_topic,
            partition: self.task_id.partition,
            timestamp_ms: self.timestamp_ms,
            output: &mut self.output,
        };
        Ok(KeyValueStore::new(bytes, serdes))
    }

    pub(crate) fn stores_mut(&mut self) -> impl Iterator<Item = &mut StoreSlot> {
        self.stores.iter_mut().flatten()
    }
}
