//! Byte-level session stores: one value per (key, session window).

use std::ops::Bound;

use super::time_key::{decode_time, encode_time, TIME_LEN};
use super::{keys, ByteEntry, KeyValueBytesStore, StoreError};
use crate::windowing::Window;

/// One stored session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEntry {
    pub key: Vec<u8>,
    pub window: Window,
    pub value: Vec<u8>,
}

/// Stored sessions, read as they are consumed; ends after an error.
pub type SessionStoreIterator<'a> = Box<dyn Iterator<Item = Result<SessionEntry, StoreError>> + 'a>;

/// What session-windowed aggregations need from a store.
pub trait SessionBytesStore {
    /// Sessions of `key` ending at or after `earliest_end_ms` and starting at or before
    /// `latest_start_ms`: the ones a record could merge with, earliest end first.
    fn find_sessions(&self, key: &[u8], earliest_end_ms: i64, latest_start_ms: i64) -> SessionStoreIterator<'_>;

    /// Writes the session's value, or deletes the session when `value` is `None`.
    fn put(&mut self, key: &[u8], window: Window, value: Option<&[u8]>) -> Result<(), StoreError>;

    /// Every session, earliest end first.
    fn fetch_all(&self) -> SessionStoreIterator<'_>;

    /// Deletes every session that ended before `end_ms` (retention).
    fn remove_sessions_ended_before(&mut self, end_ms: i64) -> Result<(), StoreError>;
}

/// A session store over any byte key–value store, keyed by end, start, then key: fixed-width
/// times first keep keys unambiguous and make retention a prefix removal.
pub struct TimeOrderedSessionStore<S> {
    inner: S,
}

impl<S> TimeOrderedSessionStore<S> {
    pub fn new(inner: S) -> Self {
        TimeOrderedSessionStore { inner }
    }
}

fn session_key(key: &[u8], window: Window) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(2 * TIME_LEN + key.len());
    bytes.extend_from_slice(&encode_time(window.end_ms));
    bytes.extend_from_slice(&encode_time(window.start_ms));
    bytes.extend_from_slice(key);
    bytes
}

/// Splits a stored session key into the record key and the session window.
fn parse_session_key(bytes: &[u8]) -> Result<(Vec<u8>, Window), StoreError> {
    let end_ms = decode_time(bytes)?;
    let start_ms = decode_time(bytes.get(TIME_LEN..).unwrap_or_default())?;
    let key = bytes.get(2 * TIME_LEN..).unwrap_or_default().to_vec();
    Ok((key, Window { start_ms, end_ms }))
}

fn to_session((stored_key, value): ByteEntry) -> Result<SessionEntry, StoreError> {
    let (key, window) = parse_session_key(&stored_key)?;
    Ok(SessionEntry { key, window, value })
}

impl<S: KeyValueBytesStore> SessionBytesStore for TimeOrderedSessionStore<S> {
    fn find_sessions(&self, key: &[u8], earliest_end_ms: i64, latest_start_ms: i64) -> SessionStoreIterator<'_> {
        let from = encode_time(earliest_end_ms);
        let key = key.to_vec();
        let candidates =
            self.inner.range(Bound::Included(&from), Bound::Unbounded).map(|entry| entry.and_then(to_session));
        Box::new(candidates.filter(move |session| match session {
            Ok(session) => session.key == key && session.window.start_ms <= latest_start_ms,
            Err(_) => true,
        }))
    }

    fn put(&mut self, key: &[u8], window: Window, value: Option<&[u8]>) -> Result<(), StoreError> {
        self.inner.put(&session_key(key, window), value)
    }

    fn fetch_all(&self) -> SessionStoreIterator<'_> {
        Box::new(self.inner.range(Bound::Unbounded, Bound::Unbounded).map(|entry| entry.and_then(to_session)))
    }

    fn remove_sessions_ended_before(&mut self, end_ms: i64) -> Result<(), StoreError> {
        let limit = encode_time(end_ms);
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
    fn finds_only_overlapping_sessions_of_the_key() {
        let mut store = TimeOrderedSessionStore::new(InMemoryKeyValueStore::new("s"));
        let window = |start_ms, end_ms| Window { start_ms, end_ms };
        store.put(b"a", window(0, 5), Some(b"1")).unwrap();
        store.put(b"a", window(20, 30), Some(b"2")).unwrap();
        store.put(b"ab", window(20, 30), Some(b"3")).unwrap();
        let found = store.find_sessions(b"a", 10, 25).collect::<Result<Vec<_>, _>>().unwrap();
        assert_eq!(found, vec![SessionEntry { key: b"a".to_vec(), window: window(20, 30), value: b"2".to_vec() }]);
        store.remove_sessions_ended_before(10).unwrap();
        assert_eq!(store.fetch_all().count(), 2);
    }
}
