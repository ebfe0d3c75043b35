//! The names of the four saga topics a participant reads and writes.

/// Topic names, defaulting to `order.events`, `payment.events`, `inventory.events` and
/// `shipping.events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SagaTopics {
    pub order: String,
    pub payment: String,
    pub inventory: String,
    pub shipping: String,
}

impl Default for SagaTopics {
    fn default() -> Self {
        SagaTopics {
            order: schemas::ORDER_EVENTS.to_owned(),
            payment: schemas::PAYMENT_EVENTS.to_owned(),
            inventory: schemas::INVENTORY_EVENTS.to_owned(),
            shipping: schemas::SHIPPING_EVENTS.to_owned(),
        }
    }
}

impl SagaTopics {
    /// The four topics named `<prefix>.order.events` and so on, e.g. for tests that must not
    /// share topics.
    pub fn with_prefix(prefix: &str) -> Self {
        let defaults = SagaTopics::default();
        SagaTopics {
            order: format!("{prefix}.{}", defaults.order),
            payment: format!("{prefix}.{}", defaults.payment),
            inventory: format!("{prefix}.{}", defaults.inventory),
            shipping: format!("{prefix}.{}", defaults.shipping),
        }
    }
}
