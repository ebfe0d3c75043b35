//! Shared pieces of the participants' driver tests: sample events and a typed driver.

use operators::serdes::StringSerde;
use operators::test_driver::TopologyTestDriver;
use operators::topology::Topology;
use schemas::{Address, Envelope, Money, OrderItem, OrderPlaced, Payload, SagaEvent, DEFAULT_CURRENCY};

use crate::event_serde::EventSerde;

pub(crate) type TestResult = Result<(), Box<dyn std::error::Error>>;

/// 2026-01-01T00:00:00Z, the drivers' wall clock at start.
pub(crate) const T0: i64 = 1_767_225_600_000;

/// An OrderPlaced that starts a new saga run; `items` are (product, quantity, unit price).
pub(crate) fn order_placed(order_id: &str, customer_id: &str, items: &[(&str, i32, i64)], country: &str) -> SagaEvent {
    let items: Vec<OrderItem> = items
        .iter()
        .map(|&(product_id, quantity, unit_price_cents)| {
            OrderItem::new(product_id, quantity, Money::new(unit_price_cents, DEFAULT_CURRENCY))
        })
        .collect();
    let total_cents = items.iter().map(|item| i64::from(item.quantity) * item.unit_price_cents).sum();
    let shipping_address = Address {
        line1: "Main St 1".into(),
        line2: None,
        city: "Berlin".into(),
        postal_code: "10115".into(),
        country: country.into(),
    };
    let placed = OrderPlaced {
        customer_id: customer_id.to_owned(),
        items,
        total_cents,
        shipping_address,
        currency: DEFAULT_CURRENCY.into(),
        coupon_code: None,
    };
    SagaEvent::new(Envelope::new(order_id, format!("corr-{order_id}"), T0), Payload::OrderPlaced(placed))
}

/// An event reacting to `cause`, as another participant would emit it.
pub(crate) fn caused_by(cause: &SagaEvent, payload: Payload) -> SagaEvent {
    SagaEvent::new(Envelope::caused_by(&cause.envelope, cause.envelope.occurred_at + 1), payload)
}

/// A topology under test, read and written with saga events keyed by order id.
pub(crate) struct Driven {
    pub(crate) driver: TopologyTestDriver,
}

impl Driven {
    pub(crate) fn new(topology: Topology) -> Self {
        Driven { driver: TopologyTestDriver::with_wall_clock_ms(topology, T0) }
    }

    /// A driver that leaves outputs to the topology's own source topics for the test to hand
    /// back, and holds its repartition records for the test to deliver, in the order the test
    /// chooses.
    pub(crate) fn without_feedback(topology: Topology) -> Self {
        Driven {
            driver: TopologyTestDriver::with_wall_clock_ms(topology, T0).feed_back_outputs(false).hold_repartitions(),
        }
    }

    pub(crate) fn pipe(&self, topic: &str, event: &SagaEvent) -> Result<(), operators::test_driver::DriverError> {
        let input = self.driver.create_input_topic(topic, StringSerde, EventSerde::with_fixed_ids());
        input.pipe_input(event.envelope.order_id.clone(), event.clone())
    }

    /// Everything written to `topic` since the last read.
    pub(crate) fn read(&self, topic: &str) -> Result<Vec<SagaEvent>, operators::test_driver::DriverError> {
        let output = self.driver.create_output_topic(topic, StringSerde, EventSerde::with_fixed_ids());
        let records = output.read_records_to_vec()?;
        for record in &records {
            assert_eq!(record.key, record.value.envelope.order_id, "saga events are keyed by order id");
        }
        Ok(records.into_iter().map(|record| record.value).collect())
    }
}

/// Asserts `effect` continues `cause`'s saga run and was caused by it.
pub(crate) fn assert_caused_by(effect: &SagaEvent, cause: &SagaEvent) {
    assert_eq!(effect.envelope.order_id, cause.envelope.order_id);
    assert_eq!(effect.envelope.correlation_id, cause.envelope.correlation_id);
    assert_eq!(effect.envelope.causation_id.as_deref(), Some(cause.envelope.event_id.as_str()));
    assert_ne!(effect.envelope.event_id, cause.envelope.event_id);
}
