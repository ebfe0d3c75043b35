//! Writes not yet committed, kept apart from a store's committed state: abort drops them, commit
//! hands them over, and an undo log since the last savepoint rolls back one failed record.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::iter::Peekable;
use std::ops::Bound;

use super::{ByteEntries, StoreError};

/// A pending write: `None` deletes the key when committed.
pub(super) type PendingValue = Option<Vec<u8>>;

#[derive(Debug, Default)]
pub(super) struct PendingWrites {
    writes: BTreeMap<Vec<u8>, PendingValue>,
    /// Each write since the savepoint with the pending entry it replaced (`None`: there was none).
    undo: Vec<(Vec<u8>, Option<PendingValue>)>,
}

impl PendingWrites {
    /// `Some(None)`: deleted by a pending write; `None`: no pending write, ask the committed state.
    pub(super) fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.writes.get(key).map(Option::as_deref)
    }

    pub(super) fn put(&mut self, key: &[u8], value: Option<&[u8]>) {
        let replaced = self.writes.insert(key.to_vec(), value.map(<[u8]>::to_vec));
        self.undo.push((key.to_vec(), replaced));
    }

    pub(super) fn savepoint(&mut self) {
        self.undo.clear();
    }

    pub(super) fn rollback_to_savepoint(&mut self) {
        while let Some((key, replaced)) = self.undo.pop() {
            match replaced {
                Some(previous) => self.writes.insert(key, previous),
                None => self.writes.remove(&key),
            };
        }
    }

    /// Hands the writes over to be committed, in key order.
    pub(super) fn take(&mut self) -> BTreeMap<Vec<u8>, PendingValue> {
        self.undo.clear();
        std::mem::take(&mut self.writes)
    }

    pub(super) fn clear(&mut self) {
        self.writes.clear();
        self.undo.clear();
    }

    /// The committed entries inside the bounds with the pending writes laid over them.
    pub(super) fn merge_over<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        committed: impl Iterator<Item = Result<(K, V), StoreError>>,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
    ) -> Result<ByteEntries, StoreError> {
        merge(committed.peekable(), self.writes.range::<[u8], _>((from, to)).peekable())
    }
}

/// Merges two key-ordered iterators; a pending entry hides the committed one with the same key.
fn merge<'a, K: AsRef<[u8]>, V: AsRef<[u8]>>(
    mut committed: Peekable<impl Iterator<Item = Result<(K, V), StoreError>>>,
    mut pending: Peekable<impl Iterator<Item = (&'a Vec<u8>, &'a PendingValue)>>,
) -> Result<ByteEntries, StoreError> {
    let mut merged = Vec::new();
    loop {
        let order = match (committed.peek(), pending.peek()) {
            (None, None) => break,
            (Some(Err(_)), _) => {
                return Err(committed
                    .next()
                    .and_then(Result::err)
                    .unwrap_or_else(|| StoreError::new("store read failed")))
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(Ok((committed_key, _))), Some((pending_key, _))) => {
                committed_key.as_ref().cmp(pending_key.as_slice())
            }
        };
        if order == Ordering::Less {
            if let Some(Ok((key, value))) = committed.next() {
                merged.push((key.as_ref().to_vec(), value.as_ref().to_vec()));
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
    Ok(merged)
}
