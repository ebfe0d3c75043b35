//! Settings of the payment participant.

use std::collections::HashMap;

use crate::participants::retention::Retention;
use crate::participants::SagaTopics;

#[derive(Clone, Debug)]
pub struct PaymentConfig {
    /// Consumer group and prefix of internal topics; `payment` in production.
    pub application_id: String,
    pub topics: SagaTopics,
    /// Starting balance of listed customers, in cents.
    pub initial_balances: HashMap<String, i64>,
    /// Starting balance of every other customer, in cents.
    pub default_balance_cents: i64,
    /// When a decided order's entry is deleted.
    pub retention: Retention,
}

impl Default for PaymentConfig {
    fn default() -> Self {
        PaymentConfig {
            application_id: "payment".to_owned(),
            topics: SagaTopics::default(),
            initial_balances: HashMap::new(),
            default_balance_cents: 0,
            retention: Retention::default(),
        }
    }
}

impl PaymentConfig {
    /// What a customer seen for the first time starts with.
    pub fn initial_balance(&self, customer_id: &str) -> i64 {
        self.initial_balances.get(customer_id).copied().unwrap_or(self.default_balance_cents)
    }
}
