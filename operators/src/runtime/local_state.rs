//! The instance's persistent stores: opened when configuration makes any store persistent, handed
//! to the tasks that hold such a store, and checkpointed when those tasks close cleanly.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::config::{StoreType, StreamsConfig};
use super::error::RuntimeError;
use super::internal_events::PersistentStoreMemory;
use super::restore::Restorer;
use crate::store::{PersistentStores, StoreError, StoreSupplier};
use crate::task::Task;
use crate::topology::{TaskId, Topology};

pub(crate) struct LocalState {
    persistent: Option<Arc<PersistentStores>>,
}

impl LocalState {
    pub(crate) fn open(config: &StreamsConfig, topology: &Topology) -> Result<Self, RuntimeError> {
        let wanted = topology.store_names().any(|store| config.store_type(store) == StoreType::Persistent);
        let persistent = match wanted {
            true => Some(Arc::new(
                PersistentStores::open(&config.state_dir, &config.application_id, config.persistent_memory)
                    .map_err(local_state_error)?,
            )),
            false => None,
        };
        Ok(LocalState { persistent })
    }

    /// The task, with each store the configuration makes persistent on local disk.
    pub(crate) fn create_task(
        &self,
        config: &StreamsConfig,
        topology: &Topology,
        id: TaskId,
    ) -> Result<Task, RuntimeError> {
        let supplier_for = |store: &str| -> Option<Arc<dyn StoreSupplier>> {
            let persistent = self.persistent.as_ref().filter(|_| config.store_type(store) == StoreType::Persistent)?;
            Some(Arc::clone(persistent) as Arc<dyn StoreSupplier>)
        };
        topology.create_task_with(id, &supplier_for).map_err(local_state_error)
    }

    /// Under the configured floor of free space nothing more is committed: a disk filling up
    /// stops the instance with this error before a commit, rather than between the commit and
    /// the write of its local state (which only the next start's full restore repairs).
    pub(crate) fn ensure_room(&self, config: &StreamsConfig) -> Result<(), RuntimeError> {
        let Some(stores) = &self.persistent else {
            return Ok(());
        };
        let free = stores.free_bytes().map_err(local_state_error)?;
        match free < config.state_dir_min_free_bytes {
            true => Err(RuntimeError::LocalState(format!(
                "the state directory {} has {free} bytes free, under the {} it must keep (state_dir_min_free_bytes): not committing; free disk space, then restart",
                config.state_dir.display(),
                config.state_dir_min_free_bytes
            ))),
            false => Ok(()),
        }
    }

    /// What the persistent stores hold in memory, if the instance has any.
    pub(crate) fn memory(&self) -> Option<PersistentStoreMemory> {
        let (write_buffer_bytes, block_cache_bytes) = self.persistent.as_ref()?.memory_bytes();
        Some(PersistentStoreMemory { write_buffer_bytes, block_cache_bytes })
    }

    /// After a clean commit, before the task's partitions go: its changelogs end where its local
    /// state does, since no one else writes them until the rebalance completes. A checkpoint
    /// that cannot be taken only costs a full restore later, so it is logged, not fatal.
    pub(crate) fn checkpoint(&self, config: &StreamsConfig, restorer: &Restorer, task: &mut Task) {
        let changelogs = task.persistent_changelogs();
        if changelogs.is_empty() {
            return;
        }
        let mut ends = BTreeMap::new();
        for changelog in changelogs {
            match restorer.end_offset(config, &changelog, task.id().partition) {
                Ok(end) => {
                    ends.insert(changelog, end);
                }
                Err(error) => {
                    tracing::warn!(%changelog, %error, "no checkpoint: the changelog's end offset is unknown; the next restore reads it in full")
                }
            }
        }
        if let Err(error) = task.checkpoint(&ends) {
            tracing::warn!(task = %task.id(), %error, "a checkpoint could not be written; the next restore reads the changelog in full");
        }
    }
}

pub(crate) fn local_state_error(error: StoreError) -> RuntimeError {
    RuntimeError::LocalState(error.to_string())
}
