//! Settings of the order saga.

use std::time::Duration;

use super::state::Step;
use crate::participants::retention::Retention;
use crate::participants::SagaTopics;

#[derive(Clone, Debug)]
pub struct SagaConfig {
    /// Consumer group and prefix of internal topics; `order-saga` in production.
    pub application_id: String,
    pub topics: SagaTopics,
    /// From PLACED until payment answers.
    pub payment_timeout: Duration,
    /// From PAID until inventory answers.
    pub inventory_timeout: Duration,
    /// From RESERVED until shipping answers.
    pub shipping_timeout: Duration,
    /// Per compensation, from when it became due until it arrives; on expiry the participants
    /// are asked for it again.
    pub compensation_timeout: Duration,
    /// Automatic requests again per compensation; once they are spent too, the order needs a
    /// person (REQUIRES_INTERVENTION).
    pub compensation_retries: u32,
    /// When a decided order's entry is deleted.
    pub retention: Retention,
}

impl Default for SagaConfig {
    fn default() -> Self {
        SagaConfig {
            application_id: "order-saga".to_owned(),
            topics: SagaTopics::default(),
            payment_timeout: Duration::from_secs(30),
            inventory_timeout: Duration::from_secs(10),
            shipping_timeout: Duration::from_secs(15),
            compensation_timeout: Duration::from_secs(300),
            compensation_retries: 3,
            retention: Retention::default(),
        }
    }
}

impl SagaConfig {
    pub fn timeout(&self, step: Step) -> Duration {
        match step {
            Step::Payment => self.payment_timeout,
            Step::Inventory => self.inventory_timeout,
            Step::Shipping => self.shipping_timeout,
            Step::Compensation => self.compensation_timeout,
        }
    }
}
