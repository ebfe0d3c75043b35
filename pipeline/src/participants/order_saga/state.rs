//! What the order saga stores per order, as JSON.

use std::collections::BTreeMap;
use std::fmt;

use schemas::{CancellationReason, Envelope};
use serde::{Deserialize, Serialize};

/// One order's saga, keyed by order id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderSagaState {
    pub status: SagaStatus,
    /// Why the order was cancelled; set once.
    pub reason: Option<CancellationReason>,
    pub customer_id: Option<String>,
    pub total_cents: i64,
    /// Units ordered, over all lines.
    pub item_count: i64,
    pub tracking_number: Option<String>,
    /// Bumped on every change, starting at 1.
    pub version: u64,
    pub correlation_id: String,
    pub progress: LearntFacts,
    /// The step with a timer running, if any.
    pub awaiting: Option<Awaiting>,
    /// Timestamp of the first event seen for the order, for the end-to-end latency metric.
    #[serde(default)]
    pub started_at_ms: i64,
    /// Why the order is parked for a person (REQUIRES_INTERVENTION); cleared once every
    /// compensation has arrived after all.
    #[serde(default)]
    pub parked: Option<String>,
    /// A customer's cancellation of the confirmed order was refused (and said so, once).
    #[serde(default)]
    pub cancellation_rejected: bool,
    /// An operator settled the parked order, with this note: it is CANCELLED as it stands.
    #[serde(default)]
    pub resolution: Option<String>,
    /// While COMPENSATING: each outstanding compensation's own deadline, by name (`refund`,
    /// `release`, `cancel_shipment`). The order's one durable timer fires at the earliest.
    #[serde(default)]
    pub compensations: BTreeMap<String, CompensationDeadline>,
    /// The W3C `traceparent` of the first event that had one: what the saga emits on a timer,
    /// which has no cause record, continues that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl crate::participants::retention::OrderState for OrderSagaState {
    /// Confirmed, or cancelled with every compensation in.
    fn settled(&self) -> bool {
        matches!(self.status, SagaStatus::Confirmed | SagaStatus::Cancelled) && self.compensations.is_empty()
    }
}

/// When an outstanding compensation is next due, and how often it was asked for again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompensationDeadline {
    pub due_ms: i64,
    pub retries: u32,
}

/// Facts learnt from the participants. They only ever become true.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearntFacts {
    pub placed: bool,
    pub charged: bool,
    pub reserved: bool,
    pub shipped: bool,
    pub refunded: bool,
    pub released: bool,
    #[serde(default)]
    pub shipment_cancelled: bool,
}

impl LearntFacts {
    /// The compensations still to come, by name: money held, stock held, a live shipment.
    pub fn outstanding(&self) -> Vec<&'static str> {
        [
            (self.charged && !self.refunded, "refund"),
            (self.reserved && !self.released, "release"),
            (self.shipped && !self.shipment_cancelled, "cancel_shipment"),
        ]
        .into_iter()
        .filter_map(|(outstanding, name)| outstanding.then_some(name))
        .collect()
    }

    /// Per saga event, so without `outstanding`'s allocation.
    pub fn compensation_outstanding(&self) -> bool {
        (self.charged && !self.refunded)
            || (self.reserved && !self.released)
            || (self.shipped && !self.shipment_cancelled)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SagaStatus {
    #[default]
    Placed,
    Paid,
    Reserved,
    Confirmed,
    Compensating,
    Cancelled,
    RequiresIntervention,
}

impl SagaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SagaStatus::Placed => "PLACED",
            SagaStatus::Paid => "PAID",
            SagaStatus::Reserved => "RESERVED",
            SagaStatus::Confirmed => "CONFIRMED",
            SagaStatus::Compensating => "COMPENSATING",
            SagaStatus::Cancelled => "CANCELLED",
            SagaStatus::RequiresIntervention => "REQUIRES_INTERVENTION",
        }
    }
}

impl fmt::Display for SagaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A running step timer: what it guards, the event that started the step (the cause of a
/// timeout's OrderCancelled) and when it fires.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Awaiting {
    pub step: Step,
    pub cause: Envelope,
    pub due_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Payment,
    Inventory,
    Shipping,
    Compensation,
}

impl Step {
    /// The name in `timeout:<step>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Payment => "payment",
            Step::Inventory => "inventory",
            Step::Shipping => "shipping",
            Step::Compensation => "compensation",
        }
    }
}
