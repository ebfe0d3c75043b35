//! What shipping stores per order, as JSON.

use schemas::{Address, CancellationReason, Envelope, Payload, ShipmentCreated, ShipmentFailed};
use serde::{Deserialize, Serialize};

/// Everything shipping knows about one order, keyed by order id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderShipment {
    /// From OrderPlaced; `None` until it was seen.
    pub address: Option<Address>,
    /// The InventoryReserved a shipment answers; `None` until it was seen.
    pub reserved: Option<Envelope>,
    /// OrderCancelled was seen.
    pub cancelled: bool,
    /// Its reason, for the ShipmentCancelled of a retried cancellation.
    #[serde(default)]
    pub cancel_reason: Option<CancellationReason>,
    /// Set once, when the order was shipped or refused.
    pub outcome: Option<ShipmentOutcome>,
    /// Set once, when a shipment of a cancelled order was cancelled or found past cancelling.
    #[serde(default)]
    pub cancellation: Option<CancellationOutcome>,
}

impl crate::participants::retention::OrderState for OrderShipment {
    /// A reserved order was answered, and a cancelled order's shipment was cancelled or found
    /// past cancelling.
    fn settled(&self) -> bool {
        let unanswered = self.reserved.is_some() && self.outcome.is_none();
        let cancel_owed = self.cancelled
            && matches!(self.outcome, Some(ShipmentOutcome::Created { .. }))
            && self.cancellation.is_none();
        !unanswered && !cancel_owed
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancellationOutcome {
    Cancelled,
    TooLate { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShipmentOutcome {
    Created { shipment_id: String, tracking_number: String },
    Failed { reason: String },
}

impl ShipmentOutcome {
    pub(super) fn payload(&self) -> Payload {
        match self {
            ShipmentOutcome::Created { shipment_id, tracking_number } => Payload::ShipmentCreated(ShipmentCreated {
                shipment_id: shipment_id.clone(),
                tracking_number: tracking_number.clone(),
            }),
            ShipmentOutcome::Failed { reason } => Payload::ShipmentFailed(ShipmentFailed { reason: reason.clone() }),
        }
    }
}
