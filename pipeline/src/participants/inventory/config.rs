//! Settings of the inventory participant.

use std::collections::HashMap;

use crate::participants::retention::Retention;
use crate::participants::SagaTopics;

#[derive(Clone, Debug)]
pub struct InventoryConfig {
    /// Consumer group and prefix of internal topics; `inventory` in production.
    pub application_id: String,
    pub topics: SagaTopics,
    /// Starting stock of listed products.
    pub initial_stock: HashMap<String, i64>,
    /// Starting stock of every other product.
    pub default_stock: i64,
    /// When a decided order's entry is deleted.
    pub retention: Retention,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            application_id: "inventory".to_owned(),
            topics: SagaTopics::default(),
            initial_stock: HashMap::new(),
            default_stock: 0,
            retention: Retention::default(),
        }
    }
}

impl InventoryConfig {
    /// What a product seen for the first time starts with.
    pub fn initial_stock(&self, product_id: &str) -> i64 {
        self.initial_stock.get(product_id).copied().unwrap_or(self.default_stock)
    }
}
