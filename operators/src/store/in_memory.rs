//! The in-memory store: a `BTreeMap` of committed state plus an overlay of pending writes.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::iter::Peekable;
use std::ops::Bound;

use super::{is_empty_range, ByteEntries, KeyValueBytesStore, StateStore, StoreError, StoreSupplier};
use crate::topology::TaskId;

/// A pending write: `None` deletes the key when committed.
type PendingValue = Option<Vec<u8>>;

/// Committed state and pending writes kept apart, so abort is dropping the overlay and commit is
/// folding it in. An undo log since the last savepoint rolls back a single failed record.
#[derive(Debug, Default)]
pub struct InMemoryKeyValueStore {
    name: String,
    committed: BTreeMap<Vec<u8>, Vec<u8>>,
    pending: BTreeMap<Vec<u8>, PendingValue>,
    /// Each write since the savepoint with the pending entry it replaced (`None`: there was none).
    undo: Vec<(Vec<u8>, Option<PendingValue>)>,
}

impl InMemoryKeyValueStore {
    pub fn new(name: impl Into<String>) -> Self {
        InMemoryKeyValueStore { name: name.into(), ..Default::default() }
    }
}

impl KeyValueBytesStore for InMemoryKeyValueStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(match self.pending.get(key) {
            Some(pending) => pending.clone(),
            None => self.committed.get(key).cloned(),
        })
    }

    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        let replaced = self.pending.insert(key.to_vec(), value.map(<[u8]>::to_vec));
        self.undo.push((key.to_vec(), replaced));
        Ok(())
    }

    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<ByteEntries, StoreError> {
        if is_empty_range(from, to) {
            return Ok(Vec::new());
        }
        let committed = self.committed.range::<[u8], _>((from, to)).peekable();
        let pending = self.pending.range::<[u8], _>((from, to)).peekable();
        Ok(merge_pending_over_committed(committed, pending))
    }
}

/// Merges two key-ordered iterators; a pending entry hides the committed one with the same key.
fn merge_pending_over_committed<'a>(
    mut committed: Peekable<impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)>>,
    mut pending: Peekable<impl Iterator<Item = (&'a Vec<u8>, &'a PendingValue)>>,
) -> ByteEntries {
    let mut merged = Vec::new();
    loop {
        let order = match (committed.peek(), pending.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((committed_key, _)), Some((pending_key, _))) => committed_key.cmp(pending_key),
        };
        if order == Ordering::Less {
            if let Some((key, value)) = committed.next() {
                merged.push((key.clone(), value.clone()));
            }
            continue;
        }
        if order == Ordering::Equal {
            committed.next();
        }
        if let Some((key, Some(value))) = pending.next() {
            merged.push((key.clone(), value.clone()));
        }
    }
    merged
}

impl StateStore for InMemoryKeyValueStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn savepoint(&mut self) {
        self.undo.clear();
    }

    fn rollback_to_savepoint(&mut self) {
        while let Some((key, replaced)) = self.undo.pop() {
            match replaced {
                Some(previous) => self.pending.insert(key, previous),
                None => self.pending.remove(&key),
            };
        }
    }

    fn commit(&mut self) {
        for (key, value) in std::mem::take(&mut self.pending) {
            match value {
                Some(value) => self.committed.insert(key, value),
                None => self.committed.remove(&key),
            };
        }
        self.undo.clear();
    }

    fn abort(&mut self) {
        self.pending.clear();
        self.undo.clear();
    }

    fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        match value {
            Some(value) => self.committed.insert(key.to_vec(), value.to_vec()),
            None => self.committed.remove(key),
        };
        Ok(())
    }

    fn approximate_entries(&self) -> u64 {
        self.committed.len() as u64
    }
}

/// Supplies [`InMemoryKeyValueStore`]s; the default for every store.
#[derive(Clone, Copy, Debug, Default)]
pub struct InMemoryStoreSupplier;

impl StoreSupplier for InMemoryStoreSupplier {
    fn build(&self, name: &str, _task: TaskId) -> Box<dyn StateStore> {
        Box::new(InMemoryKeyValueStore::new(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(store: &InMemoryKeyValueStore) -> ByteEntries {
        store.range(Bound::Unbounded, Bound::Unbounded).unwrap()
    }

    #[test]
    fn pending_writes_are_visible_and_abort_drops_them() {
        let mut store = InMemoryKeyValueStore::new("s");
        store.put(b"a", Some(b"1")).unwrap();
        store.commit();
        store.put(b"a", Some(b"2")).unwrap();
        store.put(b"b", Some(b"3")).unwrap();
        assert_eq!(store.get(b"a").unwrap(), Some(b"2".to_vec()));
        store.abort();
        assert_eq!(entries(&store), vec![(b"a".to_vec(), b"1".to_vec())]);
    }

    #[test]
    fn commit_applies_writes_and_deletes() {
        let mut store = InMemoryKeyValueStore::new("s");
        store.put(b"a", Some(b"1")).unwrap();
        store.put(b"b", Some(b"2")).unwrap();
        store.commit();
        store.put(b"a", None).unwrap();
        assert_eq!(store.get(b"a").unwrap(), None);
        store.commit();
        assert_eq!(entries(&store), vec![(b"b".to_vec(), b"2".to_vec())]);
    }

    #[test]
    fn rollback_to_savepoint_keeps_earlier_pending_writes() {
        let mut store = InMemoryKeyValueStore::new("s");
        store.put(b"a", Some(b"1")).unwrap();
        store.savepoint();
        store.put(b"a", Some(b"2")).unwrap();
        store.put(b"c", Some(b"3")).unwrap();
        store.rollback_to_savepoint();
        assert_eq!(entries(&store), vec![(b"a".to_vec(), b"1".to_vec())]);
    }

    #[test]
    fn range_merges_pending_over_committed_in_key_order() {
        let mut store = InMemoryKeyValueStore::new("s");
        for key in [b"a", b"c", b"e"] {
            store.put(key, Some(b"old")).unwrap();
        }
        store.commit();
        store.put(b"b", Some(b"new")).unwrap();
        store.put(b"c", None).unwrap();
        store.put(b"e", Some(b"new")).unwrap();
        let keys_and_values: Vec<_> = entries(&store);
        assert_eq!(keys_and_values, vec![(b"a".to_vec(), b"old".to_vec()), (b"b".to_vec(), b"new".to_vec()), (b"e".to_vec(), b"new".to_vec())]);
        let bounded = store.range(Bound::Excluded(b"a"), Bound::Included(b"c")).unwrap();
        assert_eq!(bounded, vec![(b"b".to_vec(), b"new".to_vec())]);
    }

    #[test]
    fn inverted_ranges_are_empty_not_panics() {
        let store = InMemoryKeyValueStore::new("s");
        assert!(store.range(Bound::Included(b"z"), Bound::Included(b"a")).unwrap().is_empty());
        assert!(store.range(Bound::Excluded(b"a"), Bound::Excluded(b"a")).unwrap().is_empty());
    }

    #[test]
    fn restore_writes_committed_state() {
        let mut store = InMemoryKeyValueStore::new("s");
        store.restore(b"a", Some(b"1")).unwrap();
        store.abort();
        assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()));
        store.restore(b"a", None).unwrap();
        assert_eq!(store.get(b"a").unwrap(), None);
    }
}
