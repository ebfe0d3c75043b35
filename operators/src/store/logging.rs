//! The change-logging view operators write through.

use std::ops::Bound;

use super::{KeyValueBytesStore, KeyValueIterator, StateStore, StoreError};
use crate::record::OutputRecord;

/// Borrows a task's store and output buffer for one access; every write goes to the store and is
/// appended to the output as a changelog record for the task's partition.
pub(crate) struct ChangeLoggingStore<'a> {
    pub(crate) inner: &'a mut dyn StateStore,
    pub(crate) changelog_topic: &'a str,
    pub(crate) partition: i32,
    pub(crate) timestamp_ms: i64,
    pub(crate) output: &'a mut Vec<OutputRecord>,
}

impl KeyValueBytesStore for ChangeLoggingStore<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        self.inner.put(key, value)?;
        self.output.push(OutputRecord {
            topic: self.changelog_topic.to_owned(),
            partition: Some(self.partition),
            timestamp_ms: self.timestamp_ms,
            key: Some(key.to_vec()),
            value: value.map(<[u8]>::to_vec),
            headers: Vec::new(),
        });
        Ok(())
    }

    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> KeyValueIterator<'_> {
        self.inner.range(from, to)
    }
}
