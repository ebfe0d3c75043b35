//! Byte-level window stores: one value per (key, window start).

use std::ops::Bound;

use super::time_key::{decode_time, encode_time, TIME_LEN};
use super::{keys, KeyValueBytesStore, StoreError};

/// One stored window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowEntry {
    pub key: Vec<u8>,
    pub window_start_ms: i64,
    pub value: Vec<u8>,
}

/// Stored windows, read as they are consumed; ends after an error.
pub type WindowStoreIterator<'a> = Box<dyn Iterator<Item = Result<WindowEntry, StoreError>> + 'a>;

/// What windowed aggregations need from a store.
pub trait WindowBytesStore {
    fn fetch(&self, key: &[u8], window_start_ms: i64) -> Result<Option<Vec<u8>>, StoreError>;

    /// Writes the window's value, or deletes the window when `value` is `None`.
    fn put(&mut self, key: &[u8], window_start_ms: i64, value: Option<&[u8]>) -> Result<(), StoreError>;

    /// Every window, oldest start first, read as consumed.
    fn fetch_all(&self) -> WindowStoreIterator<'_>;

    /// Deletes every window that starts before `window_start_ms` (retention).
    fn remove_windows_before(&mut self, window_start_ms: i64) -> Result<(), StoreError>;
}

/// A window store over any byte key–value store, keyed by window start then key, so retention
/// removes a prefix of the key space.
pub struct TimeOrderedWindowStore<S> {
    inner: S,
}

impl<S> TimeOrderedWindowStore<S> {
    pub fn new(inner: S) -> Self {
        TimeOrderedWindowStore { inner }
    }
}

fn window_key(key: &[u8], window_start_ms: i64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(TIME_LEN + key.len());
    bytes.extend_from_slice(&encode_time(window_start_ms));
    bytes.extend_from_slice(key);
    bytes
}

/// Splits a stored window key into the record key and the window start.
fn parse_window_key(bytes: &[u8]) -> Result<(Vec<u8>, i64), StoreError> {
    let start = decode_time(bytes)?;
    Ok((bytes.get(TIME_LEN..).unwrap_or_default().to_vec(), start))
}

impl<S: KeyValueBytesStore> WindowBytesStore for TimeOrderedWindowStore<S> {
    fn fetch(&self, key: &[u8], window_start_ms: i64) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(&window_key(key, window_start_ms))
    }

    fn put(&mut self, key: &[u8], window_start_ms: i64, value: Option<&[u8]>) -> Result<(), StoreError> {
        self.inner.put(&window_key(key, window_start_ms), value)
    }

    fn fetch_all(&self) -> WindowStoreIterator<'_> {
        Box::new(self.inner.range(Bound::Unbounded, Bound::Unbounded).map(|entry| {
            let (stored_key, value) = entry?;
            let (key, window_start_ms) = parse_window_key(&stored_key)?;
            Ok(WindowEntry { key, window_start_ms, value })
        }))
    }

    fn remove_windows_before(&mut self, window_start_ms: i64) -> Result<(), StoreError> {
        let limit = encode_time(window_start_ms);
        // The scan borrows the store, so the expired keys are collected before they are deleted.
        let expired = keys(self.inner.range(Bound::Unbounded, Bound::Excluded(&limit)))?;
        for stored_key in expired {
            self.inner.put(&stored_key, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::InMemoryKeyValueStore;

    #[test]
    fn stores_fetches_and_expires_windows() {
        let mut store = TimeOrderedWindowStore::new(InMemoryKeyValueStore::new("w"));
        store.put(b"a", 0, Some(b"1")).unwrap();
        store.put(b"a", 10, Some(b"2")).unwrap();
        store.put(b"b", 10, Some(b"3")).unwrap();
        assert_eq!(store.fetch(b"a", 10).unwrap(), Some(b"2".to_vec()));
        store.remove_windows_before(10).unwrap();
        let starts: Vec<_> =
            store.fetch_all().map(|e| e.map(|e| (e.key, e.window_start_ms))).collect::<Result<_, _>>().unwrap();
        assert_eq!(starts, vec![(b"a".to_vec(), 10), (b"b".to_vec(), 10)]);
    }
}
