//! The in-memory store: a `BTreeMap` of committed state plus an overlay of pending writes.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::pending::PendingWrites;
use super::{is_empty_range, KeyValueBytesStore, KeyValueIterator, StateStore, StoreError, StoreSupplier};
use crate::topology::TaskId;

/// Committed state and pending writes kept apart, so abort is dropping the overlay and commit is
/// folding it in.
#[derive(Debug, Default)]
pub struct InMemoryKeyValueStore {
    name: String,
    committed: BTreeMap<Vec<u8>, Vec<u8>>,
    pending: PendingWrites,
}

impl InMemoryKeyValueStore {
    pub fn new(name: impl Into<String>) -> Self {
        InMemoryKeyValueStore { name: name.into(), ..Default::default() }
    }
}

impl KeyValueBytesStore for InMemoryKeyValueStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(match self.pending.get(key) {
            Some(pending) => pending.map(<[u8]>::to_vec),
            None => self.committed.get(key).cloned(),
        })
    }

    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        self.pending.put(key, value);
        Ok(())
    }

    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> KeyValueIterator<'_> {
        if is_empty_range(from, to) {
            return Box::new(std::iter::empty());
        }
        let committed = self.committed.range::<[u8], _>((from, to)).map(Ok);
        Box::new(self.pending.merge_over(committed, from, to))
    }
}

impl StateStore for InMemoryKeyValueStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn savepoint(&mut self) {
        self.pending.savepoint();
    }

    fn rollback_to_savepoint(&mut self) {
        self.pending.rollback_to_savepoint();
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        for (key, value) in self.pending.take() {
            match value {
                Some(value) => self.committed.insert(key, value),
                None => self.committed.remove(&key),
            };
        }
        Ok(())
    }

    fn abort(&mut self) {
        self.pending.clear();
    }

    fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        match value {
            Some(value) => self.committed.insert(key.to_vec(), value.to_vec()),
            None => self.committed.remove(key),
        };
        Ok(())
    }

    fn wipe(&mut self) -> Result<(), StoreError> {
        self.committed.clear();
        self.pending.clear();
        Ok(())
    }

    fn entries(&self) -> Result<u64, StoreError> {
        Ok(self.committed.len() as u64)
    }
}

/// Supplies [`InMemoryKeyValueStore`]s; the default for every store.
#[derive(Clone, Copy, Debug, Default)]
pub struct InMemoryStoreSupplier;

impl StoreSupplier for InMemoryStoreSupplier {
    fn build(&self, name: &str, _task: TaskId) -> Result<Box<dyn StateStore>, StoreError> {
        Ok(Box::new(InMemoryKeyValueStore::new(name)))
    }
}

#[cfg(test)]
mod tests {
    crate::store::contract::store_contract_tests!(|| ((), super::InMemoryKeyValueStore::new("s")));
}
