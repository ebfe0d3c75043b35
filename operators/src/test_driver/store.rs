//! Typed, read-only views of the driver's stores.

use std::cell::RefCell;
use std::ops::Bound;
use std::rc::Rc;

use super::{DriverCore, DriverError};
use crate::serdes::{Serde, SerdeError};
use crate::store::{StoreError, StoreSerdes};

/// Reads a key–value store of the topology under test.
pub struct TestKeyValueStore<K, V> {
    core: Rc<RefCell<DriverCore>>,
    name: String,
    serdes: StoreSerdes<K, V>,
}

impl<K, V> TestKeyValueStore<K, V> {
    pub(crate) fn new(core: Rc<RefCell<DriverCore>>, name: &str, serdes: StoreSerdes<K, V>) -> Self {
        TestKeyValueStore { core, name: name.to_owned(), serdes }
    }

    fn store_error(&self, error: StoreError) -> DriverError {
        DriverError::Store { name: self.name.clone(), reason: error.to_string() }
    }

    fn serde_error(&self, source: SerdeError) -> DriverError {
        DriverError::Serde { topic: self.name.clone(), source }
    }

    pub fn get(&self, key: &K) -> Result<Option<V>, DriverError> {
        let core = self.core.borrow();
        let slot = core.store_slot(&self.name)?;
        let key = self.serdes.key.serialize(&slot.changelog_topic, key).map_err(|e| self.serde_error(e))?;
        let bytes = slot.store.get(&key).map_err(|e| self.store_error(e))?;
        bytes
            .map(|bytes| self.serdes.value.deserialize(&slot.changelog_topic, &bytes).map_err(|e| self.serde_error(e)))
            .transpose()
    }

    /// Every entry, in byte order of the serialized keys. Collected, unlike a processor's
    /// [`KeyValueStore::all`](crate::store::KeyValueStore::all): the scan borrows the driver's
    /// state, which this view may only hold for the call.
    pub fn all(&self) -> Result<Vec<(K, V)>, DriverError> {
        let core = self.core.borrow();
        let slot = core.store_slot(&self.name)?;
        let topic = &slot.changelog_topic;
        slot.store
            .range(Bound::Unbounded, Bound::Unbounded)
            .map(|entry| {
                let (key, value) = entry.map_err(|e| self.store_error(e))?;
                let key = self.serdes.key.deserialize(topic, &key).map_err(|e| self.serde_error(e))?;
                let value = self.serdes.value.deserialize(topic, &value).map_err(|e| self.serde_error(e))?;
                Ok((key, value))
            })
            .collect()
    }
}
