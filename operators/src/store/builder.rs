//! Declaring stores for the Processor API.

use std::any::Any;
use std::sync::Arc;

use super::{InMemoryStoreSupplier, StoreSerdes, StoreSupplier};
use crate::serdes::Serde;

/// A key–value store to add with
/// [`StreamsBuilder::add_state_store`](crate::dsl::StreamsBuilder::add_state_store), like Kafka
/// Streams' `Stores.keyValueStoreBuilder`. In memory unless another supplier is given.
pub struct StoreBuilder {
    pub(crate) name: String,
    pub(crate) serdes: Arc<dyn Any + Send + Sync>,
    pub(crate) supplier: Arc<dyn StoreSupplier>,
}

impl StoreBuilder {
    pub fn key_value<K: 'static, V: 'static>(
        name: &str,
        key_serde: impl Serde<K> + 'static,
        value_serde: impl Serde<V> + 'static,
    ) -> Self {
        let serdes = StoreSerdes::<K, V> { key: Arc::new(key_serde), value: Arc::new(value_serde) };
        StoreBuilder { name: name.to_owned(), serdes: Arc::new(serdes), supplier: Arc::new(InMemoryStoreSupplier) }
    }

    pub fn with_supplier(mut self, supplier: impl StoreSupplier + 'static) -> Self {
        self.supplier = Arc::new(supplier);
        self
    }
}
