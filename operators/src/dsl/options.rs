//! Operator options, named after Kafka Streams' `Consumed`, `Produced`, `Grouped`,
//! `Repartitioned`, `Materialized` and `Named`.

use std::sync::Arc;

use crate::serdes::Serde;
use crate::store::StoreSupplier;

/// How to read a topic.
pub struct Consumed<K, V> {
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
}

impl<K, V> Consumed<K, V> {
    pub fn with(key_serde: impl Serde<K> + 'static, value_serde: impl Serde<V> + 'static) -> Self {
        Consumed { key_serde: Arc::new(key_serde), value_serde: Arc::new(value_serde) }
    }
}

/// How to write a topic, and optionally the sink node's name (for
/// [`ProcessorContext::forward_to`](crate::processor::ProcessorContext::forward_to)).
pub struct Produced<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
}

impl<K, V> Produced<K, V> {
    pub fn with(key_serde: impl Serde<K> + 'static, value_serde: impl Serde<V> + 'static) -> Self {
        Produced { name: None, key_serde: Arc::new(key_serde), value_serde: Arc::new(value_serde) }
    }

    pub fn with_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }
}

/// How to group a stream: the serdes of its repartition topic, if one is needed, and optionally
/// the topic's name (`<application.id>-<name>-repartition`; without one, the topic is named after
/// the store of the grouping's first aggregation). All aggregations of the grouping read it.
pub struct Grouped<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
}

impl<K, V> Grouped<K, V> {
    pub fn with(key_serde: impl Serde<K> + 'static, value_serde: impl Serde<V> + 'static) -> Self {
        Grouped { name: None, key_serde: Arc::new(key_serde), value_serde: Arc::new(value_serde) }
    }

    pub fn with_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }
}

impl<K, V> Clone for Grouped<K, V> {
    fn clone(&self) -> Self {
        Grouped {
            name: self.name.clone(),
            key_serde: Arc::clone(&self.key_serde),
            value_serde: Arc::clone(&self.value_serde),
        }
    }
}

/// An explicit repartition topic: serdes, and optionally its name
/// (`<application.id>-<name>-repartition`).
pub struct Repartitioned<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
}

impl<K, V> Repartitioned<K, V> {
    pub fn with(key_serde: impl Serde<K> + 'static, value_serde: impl Serde<V> + 'static) -> Self {
        Repartitioned { name: None, key_serde: Arc::new(key_serde), value_serde: Arc::new(value_serde) }
    }

    pub fn with_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }
}

/// How to materialize a table in a store. Missing serdes default to those the operator knows
/// (the grouping's key serde; `I64Serde` for counts; the value serde for reduce); `aggregate`
/// needs a value serde for its aggregate type.
pub struct Materialized<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) key_serde: Option<Arc<dyn Serde<K>>>,
    pub(crate) value_serde: Option<Arc<dyn Serde<V>>>,
    pub(crate) supplier: Option<Arc<dyn StoreSupplier>>,
}

impl<K, V> Default for Materialized<K, V> {
    fn default() -> Self {
        Materialized { name: None, key_serde: None, value_serde: None, supplier: None }
    }
}

impl<K, V> Materialized<K, V> {
    /// A store with this name; its changelog is `<application.id>-<name>-changelog`.
    pub fn as_store(name: &str) -> Self {
        Materialized { name: Some(name.to_owned()), ..Self::default() }
    }

    /// An unnamed store (a name is generated) with these serdes.
    pub fn with(key_serde: impl Serde<K> + 'static, value_serde: impl Serde<V> + 'static) -> Self {
        Self::default().with_key_serde(key_serde).with_value_serde(value_serde)
    }

    pub fn with_key_serde(mut self, key_serde: impl Serde<K> + 'static) -> Self {
        self.key_serde = Some(Arc::new(key_serde));
        self
    }

    pub fn with_value_serde(mut self, value_serde: impl Serde<V> + 'static) -> Self {
        self.value_serde = Some(Arc::new(value_serde));
        self
    }

    /// Where the store's bytes live; in memory by default.
    pub fn with_store_supplier(mut self, supplier: impl StoreSupplier + 'static) -> Self {
        self.supplier = Some(Arc::new(supplier));
        self
    }
}

/// Options of a Processor API node: its name, the stores it may use, whether it gets durable
/// timers (kept in the store `<name>-timers`, change-logged to
/// `<application.id>-<name>-timers-changelog`), and the serdes of the repartition topic inserted
/// when it uses stores and keys may have changed upstream. Name processors with timers, so the
/// changelog's name stays stable when the topology changes.
pub struct Processed<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) stores: Vec<String>,
    pub(crate) durable_timers: bool,
    pub(crate) key_serde: Option<Arc<dyn Serde<K>>>,
    pub(crate) value_serde: Option<Arc<dyn Serde<V>>>,
}

impl<K, V> Default for Processed<K, V> {
    fn default() -> Self {
        Processed { name: None, stores: Vec::new(), durable_timers: false, key_serde: None, value_serde: None }
    }
}

impl<K, V> Processed<K, V> {
    pub fn named(name: &str) -> Self {
        Processed { name: Some(name.to_owned()), ..Self::default() }
    }

    pub fn with_stores(mut self, stores: &[&str]) -> Self {
        self.stores.extend(stores.iter().map(|&store| store.to_owned()));
        self
    }

    pub fn with_durable_timers(mut self) -> Self {
        self.durable_timers = true;
        self
    }

    /// Serdes for the processor's input, used if it has to be repartitioned.
    pub fn with_serdes(mut self, key_serde: impl Serde<K> + 'static, value_serde: impl Serde<V> + 'static) -> Self {
        self.key_serde = Some(Arc::new(key_serde));
        self.value_serde = Some(Arc::new(value_serde));
        self
    }
}
