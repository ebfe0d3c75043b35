//! The saga's events as Rust values: an [`Envelope`] every event shares, and one payload struct
//! per event type. Field names are the Avro field names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::avro_schemas::current_version_of;
use crate::event_type::{topic_of, EventType};

/// One saga event: who/when/why fields shared by all events, plus what happened. Serializes
/// (e.g. to JSON for the DLQ admin) as `{"envelope": {...}, "payload": {"<EventType>": {...}}}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SagaEvent {
    pub envelope: Envelope,
    pub payload: Payload,
}

impl SagaEvent {
    /// The event as this crate writes it: `schema_version` is the current version of its type.
    pub fn new(mut envelope: Envelope, payload: Payload) -> Self {
        envelope.schema_version = current_version_of(payload.event_type());
        SagaEvent { envelope, payload }
    }

    pub fn event_type(&self) -> EventType {
        self.payload.event_type()
    }

    pub fn topic(&self) -> &'static str {
        topic_of(self.event_type())
    }
}

/// The fields every event carries. The Avro `event_type` field is not here: it is written from
/// the payload's variant, so the two cannot disagree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// A UUID; consumers deduplicate on it.
    pub event_id: String,
    /// The saga's id and the Kafka record key.
    pub order_id: String,
    /// Milliseconds since the Unix epoch (Avro `timestamp-millis`).
    pub occurred_at: i64,
    /// Shared by every event of one saga run.
    pub correlation_id: String,
    /// `event_id` of the event this one reacts to; `None` when a command caused it.
    pub causation_id: Option<String>,
    /// The version of its type's schema the event was written with (`avro/v<N>`); set by
    /// [`SagaEvent::new`], and brought to the current one by the upcaster on read.
    pub schema_version: i32,
}

impl Envelope {
    /// The envelope of an event caused by a command (it starts or interrupts a saga run).
    pub fn new(order_id: impl Into<String>, correlation_id: impl Into<String>, occurred_at: i64) -> Self {
        Envelope {
            event_id: new_event_id(),
            order_id: order_id.into(),
            occurred_at,
            correlation_id: correlation_id.into(),
            causation_id: None,
            schema_version: UNSTAMPED,
        }
    }

    /// The envelope of an event that reacts to `cause`: same order and saga run, caused by it.
    pub fn caused_by(cause: &Envelope, occurred_at: i64) -> Self {
        Envelope {
            event_id: new_event_id(),
            order_id: cause.order_id.clone(),
            occurred_at,
            correlation_id: cause.correlation_id.clone(),
            causation_id: Some(cause.event_id.clone()),
            schema_version: UNSTAMPED,
        }
    }
}

/// `schema_version` of an envelope no event carries yet: [`SagaEvent::new`] sets the real one.
const UNSTAMPED: i32 = 0;

/// Time-ordered (v7) so ids of recent events sort and index well.
fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// What happened: one variant per event type, named after it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Payload {
    OrderPlaced(OrderPlaced),
    OrderCancellationRequested(OrderCancellationRequested),
    OrderConfirmed(OrderConfirmed),
    OrderCancelled(OrderCancelled),
    PaymentCompleted(PaymentCompleted),
    PaymentFailed(PaymentFailed),
    PaymentRefunded(PaymentRefunded),
    InventoryReserved(InventoryReserved),
    InventoryReservationFailed(InventoryReservationFailed),
    InventoryReleased(InventoryReleased),
    ShipmentCreated(ShipmentCreated),
    ShipmentFailed(ShipmentFailed),
    OrderCancellationRejected(OrderCancellationRejected),
    OrderRequiresIntervention(OrderRequiresIntervention),
    OrderInterventionRequested(OrderInterventionRequested),
    ShipmentCancelled(ShipmentCancelled),
    ShipmentCancellationFailed(ShipmentCancellationFailed),
}

impl Payload {
    pub fn event_type(&self) -> EventType {
        match self {
            Payload::OrderPlaced(_) => EventType::OrderPlaced,
            Payload::OrderCancellationRequested(_) => EventType::OrderCancellationRequested,
            Payload::OrderConfirmed(_) => EventType::OrderConfirmed,
            Payload::OrderCancelled(_) => EventType::OrderCancelled,
            Payload::PaymentCompleted(_) => EventType::PaymentCompleted,
            Payload::PaymentFailed(_) => EventType::PaymentFailed,
            Payload::PaymentRefunded(_) => EventType::PaymentRefunded,
            Payload::InventoryReserved(_) => EventType::InventoryReserved,
            Payload::InventoryReservationFailed(_) => EventType::InventoryReservationFailed,
            Payload::InventoryReleased(_) => EventType::InventoryReleased,
            Payload::ShipmentCreated(_) => EventType::ShipmentCreated,
            Payload::ShipmentFailed(_) => EventType::ShipmentFailed,
            Payload::OrderCancellationRejected(_) => EventType::OrderCancellationRejected,
            Payload::OrderRequiresIntervention(_) => EventType::OrderRequiresIntervention,
            Payload::OrderInterventionRequested(_) => EventType::OrderInterventionRequested,
            Payload::ShipmentCancelled(_) => EventType::ShipmentCancelled,
            Payload::ShipmentCancellationFailed(_) => EventType::ShipmentCancellationFailed,
        }
    }
}

/// Version 2 (`avro/v2/OrderPlaced.avsc`). Serde defaults let v1 events stored as JSON (the
/// order service's event store) read back; the upcaster then fills what v1 did not have.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub customer_id: String,
    pub items: Vec<OrderItem>,
    /// In the minor unit of `currency`.
    pub total_cents: i64,
    pub shipping_address: Address,
    /// ISO 4217; every amount of the order is in it. Since v2; v1 orders were all in EUR.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Since v2.
    #[serde(default)]
    pub coupon_code: Option<String>,
}

/// The currency of every order written before v2 had a `currency` field.
pub const DEFAULT_CURRENCY: &str = "EUR";

fn default_currency() -> String {
    DEFAULT_CURRENCY.to_string()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderItem {
    pub product_id: String,
    pub quantity: i32,
    /// Deprecated since v2: equal to `unit_price.amount_minor`, still written so that v1
    /// readers read v2 events.
    pub unit_price_cents: i64,
    /// Since v2. `None` only in an event written with v1 before the upcaster ran.
    #[serde(default)]
    pub unit_price: Option<Money>,
}

impl OrderItem {
    /// A line priced in v2's terms, with the deprecated v1 field kept equal.
    pub fn new(product_id: impl Into<String>, quantity: i32, unit_price: Money) -> Self {
        OrderItem {
            product_id: product_id.into(),
            quantity,
            unit_price_cents: unit_price.amount_minor,
            unit_price: Some(unit_price),
        }
    }
}

/// An amount in a currency's minor unit (cents for EUR).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount_minor: i64,
    /// ISO 4217, e.g. `EUR`.
    pub currency: String,
}

impl Money {
    pub fn new(amount_minor: i64, currency: impl Into<String>) -> Self {
        Money { amount_minor, currency: currency.into() }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub line1: String,
    /// Since v2.
    #[serde(default)]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    pub country: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderCancellationRequested {
    pub customer_id: String,
    /// The customer's id, or an operator's.
    pub requested_by: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderConfirmed {
    pub customer_id: String,
    pub total_cents: i64,
    pub tracking_number: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub customer_id: String,
    pub reason: CancellationReason,
    pub total_cents: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentCompleted {
    pub customer_id: String,
    pub amount_cents: i64,
    pub payment_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentFailed {
    pub customer_id: String,
    pub amount_cents: i64,
    /// For people, e.g. "card declined".
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub customer_id: String,
    pub amount_cents: i64,
    pub payment_id: String,
    /// Compensations happen because the order was cancelled; this says why.
    pub reason: CancellationReason,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InventoryReserved {
    pub items: Vec<StockItem>,
    pub reservation_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InventoryReservationFailed {
    pub reason: String,
    pub items: Vec<StockItem>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InventoryReleased {
    pub reservation_id: String,
    pub items: Vec<StockItem>,
    /// Compensations happen because the order was cancelled; this says why.
    pub reason: CancellationReason,
}

/// A quantity of one product held in, or given back to, stock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StockItem {
    pub product_id: String,
    pub quantity: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShipmentCreated {
    pub shipment_id: String,
    pub tracking_number: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShipmentFailed {
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderCancellationRejected {
    pub customer_id: String,
    /// For people, e.g. "the order is already confirmed".
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderRequiresIntervention {
    /// E.g. `timeout:compensation` or `shipment_not_cancellable`.
    pub reason: String,
    /// The compensations still missing: `refund`, `release`, `cancel_shipment`.
    pub outstanding: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShipmentCancelled {
    pub shipment_id: String,
    /// Compensations happen because the order was cancelled; this says why.
    pub reason: CancellationReason,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShipmentCancellationFailed {
    pub shipment_id: String,
    /// For people, e.g. "handed to the carrier".
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderInterventionRequested {
    /// `retry_compensations` or `resolve`.
    pub action: String,
    pub note: String,
    pub operator: String,
}

/// Why an order was cancelled. On the wire a string: `payment_failed`, `insufficient_stock`,
/// `shipment_failed`, `customer_cancelled` or `timeout:<step>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum CancellationReason {
    PaymentFailed,
    InsufficientStock,
    ShipmentFailed,
    CustomerCancelled,
    /// A step (e.g. `payment`) did not answer in time.
    Timeout {
        step: String,
    },
}

const TIMEOUT_PREFIX: &str = "timeout:";

impl fmt::Display for CancellationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CancellationReason::PaymentFailed => f.write_str("payment_failed"),
            CancellationReason::InsufficientStock => f.write_str("insufficient_stock"),
            CancellationReason::ShipmentFailed => f.write_str("shipment_failed"),
            CancellationReason::CustomerCancelled => f.write_str("customer_cancelled"),
            CancellationReason::Timeout { step } => write!(f, "{TIMEOUT_PREFIX}{step}"),
        }
    }
}

/// A string that is not one of the cancellation reasons.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown cancellation reason {0:?}; expected payment_failed, insufficient_stock, shipment_failed, \
     customer_cancelled or timeout:<step>"
)]
pub struct UnknownCancellationReason(pub String);

impl FromStr for CancellationReason {
    type Err = UnknownCancellationReason;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "payment_failed" => Ok(CancellationReason::PaymentFailed),
            "insufficient_stock" => Ok(CancellationReason::InsufficientStock),
            "shipment_failed" => Ok(CancellationReason::ShipmentFailed),
            "customer_cancelled" => Ok(CancellationReason::CustomerCancelled),
            _ => match text.strip_prefix(TIMEOUT_PREFIX) {
                Some(step) if !step.is_empty() => Ok(CancellationReason::Timeout { step: step.to_string() }),
                _ => Err(UnknownCancellationReason(text.to_string())),
            },
        }
    }
}

impl From<CancellationReason> for String {
    fn from(reason: CancellationReason) -> String {
        reason.to_string()
    }
}

impl TryFrom<String> for CancellationReason {
    type Error = UnknownCancellationReason;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancellation_reasons_round_trip_through_their_text() {
        let reasons = [
            (CancellationReason::PaymentFailed, "payment_failed"),
            (CancellationReason::InsufficientStock, "insufficient_stock"),
            (CancellationReason::ShipmentFailed, "shipment_failed"),
            (CancellationReason::CustomerCancelled, "customer_cancelled"),
            (CancellationReason::Timeout { step: "payment".into() }, "timeout:payment"),
        ];
        for (reason, text) in reasons {
            assert_eq!(reason.to_string(), text);
            assert_eq!(text.parse::<CancellationReason>(), Ok(reason));
        }
    }

    #[test]
    fn unknown_cancellation_reasons_are_refused() {
        for text in ["", "timeout:", "Payment_Failed", "out_of_stock"] {
            assert_eq!(text.parse::<CancellationReason>(), Err(UnknownCancellationReason(text.into())));
        }
    }

    #[test]
    fn a_caused_event_continues_its_causes_saga_run() {
        let cause = Envelope::new("order-1", "corr-1", 1_000);
        let effect = Envelope::caused_by(&cause, 2_000);
        assert_eq!(cause.causation_id, None);
        assert_eq!(effect.order_id, "order-1");
        assert_eq!(effect.correlation_id, "corr-1");
        assert_eq!(effect.causation_id.as_deref(), Some(cause.event_id.as_str()));
        assert_ne!(effect.event_id, cause.event_id);
        assert_eq!(effect.schema_version, UNSTAMPED);
        let stamped = SagaEvent::new(effect.clone(), Payload::ShipmentFailed(ShipmentFailed { reason: "r".into() }));
        assert_eq!(stamped.envelope.schema_version, current_version_of(EventType::ShipmentFailed));
        assert!(uuid::Uuid::parse_str(&effect.event_id).is_ok());
    }
}
