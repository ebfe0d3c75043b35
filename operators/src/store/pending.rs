//! Writes not yet committed, kept apart from a store's committed state: abort drops them, commit
//! hands them over, and an undo log since the last savepoint rolls back one failed record.

use std::cmp::Ordering;
use std::collections::{btree_map, BTreeMap};
use std::iter::Peekable;
use std::ops::Bound;

use super::{ByteEntry, StoreError};

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

    /// The committed entries inside the bounds with the pending writes laid over them, merged as
    /// they are read.
    pub(super) fn merge_over<'a, I>(&'a self, committed: I, from: Bound<&[u8]>, to: Bound<&[u8]>) -> MergedRange<'a, I>
    where
        I: Iterator,
    {
        MergedRange {
            committed: committed.peekable(),
            pending: self.writes.range::<[u8], _>((from, to)).peekable(),
            ended: false,
        }
    }
}

/// Two key-ordered iterators merged lazily; a pending entry hides the committed one with the same
/// key, and a pending delete hides it without taking its place.
pub(super) struct MergedRange<'a, I: Iterator> {
    committed: Peekable<I>,
    pending: Peekable<btree_map::Range<'a, Vec<u8>, PendingValue>>,
    /// Set at the end and after a read error, which ends the scan.
    ended: bool,
}

impl<I, K, V> Iterator for MergedRange<'_, I>
where
    I: Iterator<Item = Result<(K, V), StoreError>>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    type Item = Result<ByteEntry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.ended {
            if let Some(Err(error)) = self.committed.next_if(Result::is_err) {
                self.ended = true;
                return Some(Err(error));
            }
            let committed_key =
                self.committed.peek().and_then(|entry| entry.as_ref().ok()).map(|(key, _)| key.as_ref());
            let order = match (committed_key, self.pending.peek()) {
                (None, None) => {
                    self.ended = true;
                    break;
                }
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(committed_key), Some((pending_key, _))) => committed_key.cmp(pending_key.as_slice()),
            };
            if order == Ordering::Less {
                return self
                    .committed
                    .next()
                    .map(|entry| entry.map(|(key, value)| (key.as_ref().to_vec(), value.as_ref().to_vec())));
            }
            if order == Ordering::Equal {
                self.committed.next();
            }
            if let Some((key, Some(value))) = self.pending.next() {
                return Some(Ok((key.clone(), value.clone())));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_error_is_yielded_in_key_order_and_ends_the_scan() {
        let mut pending = PendingWrites::default();
        pending.put(b"a", Some(b"pending"));
        pending.put(b"z", Some(b"pending"));
        let entry = |key: &'static [u8]| Ok::<ByteEntry, _>((key.to_vec(), b"committed".to_vec()));
        let committed = [entry(b"b"), Err(StoreError::new("disk on fire")), entry(b"c")];
        let mut merged = pending.merge_over(committed.into_iter(), Bound::Unbounded, Bound::Unbounded);
        assert_eq!(merged.next().unwrap().unwrap(), (b"a".to_vec(), b"pending".to_vec()));
        assert_eq!(merged.next().unwrap().unwrap(), (b"b".to_vec(), b"committed".to_vec()));
        assert_eq!(merged.next().unwrap().unwrap_err().to_string(), "disk on fire");
        assert!(merged.next().is_none(), "nothing after the error, not even the pending z");
    }
}
