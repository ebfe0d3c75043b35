//! Typed input and output topics of the test driver.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::rc::Rc;
use std::sync::Arc;

use super::{DriverCore, DriverError};
use crate::record::{Header, Record};
use crate::serdes::{deserialize_optional, Serde};

/// Pipes typed records into a topic the topology reads.
pub struct TestInputTopic<K, V> {
    core: Rc<RefCell<DriverCore>>,
    topic: String,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
}

impl<K, V> TestInputTopic<K, V> {
    pub(crate) fn new(
        core: Rc<RefCell<DriverCore>>,
        topic: &str,
        key_serde: Arc<dyn Serde<K>>,
        value_serde: Arc<dyn Serde<V>>,
    ) -> Self {
        TestInputTopic { core, topic: topic.to_owned(), key_serde, value_serde }
    }

    /// Pipes a record stamped with the driver's current wall-clock time.
    pub fn pipe_input(&self, key: impl Into<K>, value: impl Into<V>) -> Result<(), DriverError> {
        let now_ms = self.core.borrow().now_ms();
        self.pipe_input_at(key, value, now_ms)
    }

    pub fn pipe_input_at(&self, key: impl Into<K>, value: impl Into<V>, timestamp_ms: i64) -> Result<(), DriverError> {
        self.pipe_record(Record::new(key.into(), value.into(), timestamp_ms))
    }

    pub fn pipe_record(&self, record: Record<K, V>) -> Result<(), DriverError> {
        let key = self.encode(self.key_serde.as_ref(), &record.key)?;
        self.pipe_bytes(key, &record.value, record.timestamp_ms, record.headers)
    }

    pub fn pipe_key_values(&self, records: impl IntoIterator<Item = (K, V)>) -> Result<(), DriverError> {
        records.into_iter().try_for_each(|(key, value)| self.pipe_input(key, value))
    }

    fn encode<T>(&self, serde: &dyn Serde<T>, value: &T) -> Result<Option<Vec<u8>>, DriverError> {
        serde
            .serialize_nullable(&self.topic, value)
            .map_err(|source| DriverError::Serde { topic: self.topic.clone(), source })
    }

    fn pipe_bytes(
        &self,
        key: Option<Vec<u8>>,
        value: &V,
        timestamp_ms: i64,
        headers: Vec<Header>,
    ) -> Result<(), DriverError> {
        let value = self.encode(self.value_serde.as_ref(), value)?;
        self.core.borrow_mut().pipe(self.topic.clone(), timestamp_ms, key, value, headers)
    }
}

/// Reads typed records the topology wrote to a topic, oldest first.
pub struct TestOutputTopic<K, V> {
    core: Rc<RefCell<DriverCore>>,
    topic: String,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
}

impl<K, V> TestOutputTopic<K, V> {
    pub(crate) fn new(
        core: Rc<RefCell<DriverCore>>,
        topic: &str,
        key_serde: Arc<dyn Serde<K>>,
        value_serde: Arc<dyn Serde<V>>,
    ) -> Self {
        TestOutputTopic { core, topic: topic.to_owned(), key_serde, value_serde }
    }

    pub fn read_record(&self) -> Result<Record<K, V>, DriverError> {
        let record =
            self.core.borrow_mut().take_output(&self.topic).ok_or_else(|| DriverError::NoRecord(self.topic.clone()))?;
        let decode_error = |source| DriverError::Serde { topic: self.topic.clone(), source };
        let key =
            deserialize_optional(self.key_serde.as_ref(), &self.topic, record.key.as_deref()).map_err(decode_error)?;
        let value = deserialize_optional(self.value_serde.as_ref(), &self.topic, record.value.as_deref())
            .map_err(decode_error)?;
        Ok(Record { key, value, timestamp_ms: record.timestamp_ms, headers: record.headers })
    }

    pub fn read_key_value(&self) -> Result<(K, V), DriverError> {
        self.read_record().map(|record| (record.key, record.value))
    }

    pub fn read_value(&self) -> Result<V, DriverError> {
        self.read_record().map(|record| record.value)
    }

    pub fn read_records_to_vec(&self) -> Result<Vec<Record<K, V>>, DriverError> {
        std::iter::from_fn(|| (!self.is_empty()).then(|| self.read_record())).collect()
    }

    pub fn read_key_values_to_vec(&self) -> Result<Vec<(K, V)>, DriverError> {
        Ok(self.read_records_to_vec()?.into_iter().map(|record| (record.key, record.value)).collect())
    }

    pub fn read_values_to_vec(&self) -> Result<Vec<V>, DriverError> {
        Ok(self.read_records_to_vec()?.into_iter().map(|record| record.value).collect())
    }

    /// The latest value per key of everything left in the topic.
    pub fn read_key_values_to_map(&self) -> Result<HashMap<K, V>, DriverError>
    where
        K: Eq + Hash,
    {
        Ok(self.read_key_values_to_vec()?.into_iter().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.queue_size() == 0
    }

    pub fn queue_size(&self) -> usize {
        self.core.borrow().output_len(&self.topic)
    }
}
