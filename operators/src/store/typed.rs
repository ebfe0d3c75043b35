//! Typed views over byte stores: keys and values go through the store's serdes.

use std::ops::Bound;
use std::sync::Arc;

use super::session::{SessionBytesStore, TimeOrderedSessionStore};
use super::window::{TimeOrderedWindowStore, WindowBytesStore};
use super::{ChangeLoggingStore, KeyValueBytesStore, KeyValueIterator};
use crate::error::ProcessError;
use crate::serdes::Serde;
use crate::windowing::Window;

/// The serdes of one store. Serde calls get the store's changelog topic, as in Kafka Streams.
pub(crate) struct StoreSerdes<K, V> {
    pub(crate) key: Arc<dyn Serde<K>>,
    pub(crate) value: Arc<dyn Serde<V>>,
}

impl<K, V> Clone for StoreSerdes<K, V> {
    fn clone(&self) -> Self {
        StoreSerdes { key: Arc::clone(&self.key), value: Arc::clone(&self.value) }
    }
}

fn encode<T>(serde: &dyn Serde<T>, topic: &str, what: &str, value: &T) -> Result<Vec<u8>, ProcessError> {
    serde
        .serialize(topic, value)
        .map_err(|e| ProcessError::serialization(format!("cannot serialize a {what} for '{topic}'")).with_cause(e))
}

fn decode<T>(serde: &dyn Serde<T>, topic: &str, what: &str, bytes: &[u8]) -> Result<T, ProcessError> {
    serde.deserialize(topic, bytes).map_err(|e| {
        ProcessError::deserialization(format!("cannot deserialize a stored {what} from '{topic}'")).with_cause(e)
    })
}

/// A typed key–value store, as handed to processors by
/// [`ProcessorContext::kv_store`](crate::processor::ProcessorContext::kv_store). Writes are
/// change-logged and become durable when the task commits.
pub struct KeyValueStore<'a, K, V> {
    bytes: ChangeLoggingStore<'a>,
    serdes: &'a StoreSerdes<K, V>,
}

impl<'a, K, V> KeyValueStore<'a, K, V> {
    pub(crate) fn new(bytes: ChangeLoggingStore<'a>, serdes: &'a StoreSerdes<K, V>) -> Self {
        KeyValueStore { bytes, serdes }
    }

    pub fn name(&self) -> &str {
        self.bytes.inner.name()
    }

    fn encode_key(&self, key: &K) -> Result<Vec<u8>, ProcessError> {
        encode(self.serdes.key.as_ref(), self.bytes.changelog_topic, "key", key)
    }

    /// Decodes each entry of a scan as it is consumed.
    fn decode_entries<'s>(
        &'s self,
        entries: KeyValueIterator<'s>,
    ) -> impl Iterator<Item = Result<(K, V), ProcessError>> + 's {
        let (serdes, topic): (&'s StoreSerdes<K, V>, &'s str) = (self.serdes, self.bytes.changelog_topic);
        entries.map(move |entry| {
            let (key, value) = entry?;
            Ok((
                decode(serdes.key.as_ref(), topic, "key", &key)?,
                decode(serdes.value.as_ref(), topic, "value", &value)?,
            ))
        })
    }

    pub fn get(&self, key: &K) -> Result<Option<V>, ProcessError> {
        let topic = self.bytes.changelog_topic;
        self.bytes
            .get(&self.encode_key(key)?)?
            .map(|bytes| decode(self.serdes.value.as_ref(), topic, "value", &bytes))
            .transpose()
    }

    pub fn put(&mut self, key: &K, value: &V) -> Result<(), ProcessError> {
        let key = self.encode_key(key)?;
        let value = encode(self.serdes.value.as_ref(), self.bytes.changelog_topic, "value", value)?;
        Ok(self.bytes.put(&key, Some(&value))?)
    }

    /// Removes the key; returns the value it had.
    pub fn delete(&mut self, key: &K) -> Result<Option<V>, ProcessError> {
        let previous = self.get(key)?;
        if previous.is_some() {
            self.bytes.put(&self.encode_key(key)?, None)?;
        }
        Ok(previous)
    }

    /// Every entry, in byte order of the serialized keys, read and decoded as consumed (Kafka
    /// Streams' `all()`). The iterator borrows the store: collect what you mean to write back.
    pub fn all(&self) -> impl Iterator<Item = Result<(K, V), ProcessError>> + '_ {
        self.decode_entries(self.bytes.range(Bound::Unbounded, Bound::Unbounded))
    }

    /// Entries with serialized keys between those of `from` and `to`, both inclusive, read and
    /// decoded as consumed.
    pub fn range(
        &self,
        from: &K,
        to: &K,
    ) -> Result<impl Iterator<Item = Result<(K, V), ProcessError>> + '_, ProcessError> {
        let (from, to) = (self.encode_key(from)?, self.encode_key(to)?);
        Ok(self.decode_entries(self.bytes.range(Bound::Included(&from), Bound::Included(&to))))
    }
}

/// A typed window store for windowed aggregations.
pub(crate) struct WindowStore<'a, K, V> {
    bytes: TimeOrderedWindowStore<ChangeLoggingStore<'a>>,
    topic: &'a str,
    serdes: &'a StoreSerdes<K, V>,
}

impl<'a, K, V> WindowStore<'a, K, V> {
    pub(crate) fn new(bytes: ChangeLoggingStore<'a>, serdes: &'a StoreSerdes<K, V>) -> Self {
        let topic = bytes.changelog_topic;
        WindowStore { bytes: TimeOrderedWindowStore::new(bytes), topic, serdes }
    }

    pub(crate) fn fetch(&self, key: &K, window_start_ms: i64) -> Result<Option<V>, ProcessError> {
        let key = encode(self.serdes.key.as_ref(), self.topic, "key", key)?;
        self.bytes
            .fetch(&key, window_start_ms)?
            .map(|bytes| decode(self.serdes.value.as_ref(), self.topic, "value", &bytes))
            .transpose()
    }

    pub(crate) fn put(&mut self, key: &K, window_start_ms: i64, value: &V) -> Result<(), ProcessError> {
        let key = encode(self.serdes.key.as_ref(), self.topic, "key", key)?;
        let value = encode(self.serdes.value.as_ref(), self.topic, "value", value)?;
        Ok(self.bytes.put(&key, window_start_ms, Some(&value))?)
    }

    pub(crate) fn remove_windows_before(&mut self, window_start_ms: i64) -> Result<(), ProcessError> {
        Ok(self.bytes.remove_windows_before(window_start_ms)?)
    }
}

/// A typed session store for session-windowed aggregations.
pub(crate) struct SessionStore<'a, K, V> {
    bytes: TimeOrderedSessionStore<ChangeLoggingStore<'a>>,
    topic: &'a str,
    serdes: &'a StoreSerdes<K, V>,
}

impl<'a, K, V> SessionStore<'a, K, V> {
    pub(crate) fn new(bytes: ChangeLoggingStore<'a>, serdes: &'a StoreSerdes<K, V>) -> Self {
        let topic = bytes.changelog_topic;
        SessionStore { bytes: TimeOrderedSessionStore::new(bytes), topic, serdes }
    }

    /// The sessions of `key` a record could merge with, decoded as consumed.
    pub(crate) fn find_sessions(
        &self,
        key: &K,
        earliest_end_ms: i64,
        latest_start_ms: i64,
    ) -> Result<impl Iterator<Item = Result<(Window, V), ProcessError>> + '_, ProcessError> {
        let key = encode(self.serdes.key.as_ref(), self.topic, "key", key)?;
        let (serdes, topic): (&StoreSerdes<K, V>, &str) = (self.serdes, self.topic);
        Ok(self.bytes.find_sessions(&key, earliest_end_ms, latest_start_ms).map(move |session| {
            let session = session?;
            Ok((session.window, decode(serdes.value.as_ref(), topic, "value", &session.value)?))
        }))
    }

    /// Writes the session's aggregate, or removes the session when `value` is `None`.
    pub(crate) fn put(&mut self, key: &K, window: Window, value: Option<&V>) -> Result<(), ProcessError> {
        let key = encode(self.serdes.key.as_ref(), self.topic, "key", key)?;
        let value = value.map(|value| encode(self.serdes.value.as_ref(), self.topic, "value", value)).transpose()?;
        Ok(self.bytes.put(&key, window, value.as_deref())?)
    }

    pub(crate) fn remove_sessions_ended_before(&mut self, end_ms: i64) -> Result<(), ProcessError> {
        Ok(self.bytes.remove_sessions_ended_before(end_ms)?)
    }
}
