//! What inventory stores, as JSON: one [`OrderReservation`] per order, one [`ProductStock`] per
//! product, and the requests and replies passed between them.

use schemas::{CancellationReason, Envelope, StockItem};
use serde::{Deserialize, Serialize};

/// Everything inventory knows about one order, keyed by order id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderReservation {
    /// From OrderPlaced, one entry per product; `None` until it was seen.
    pub items: Option<Vec<StockItem>>,
    /// The PaymentCompleted the reservation answers; `None` until it was seen.
    pub payment: Option<Envelope>,
    /// OrderCancelled was seen, with this reason.
    pub cancelled: Option<CancellationReason>,
    pub phase: ReservationPhase,
}

impl crate::participants::retention::OrderState for OrderReservation {
    /// No product answer outstanding, and a cancelled order's reservation was released.
    fn settled(&self) -> bool {
        match self.phase {
            ReservationPhase::Reserving { .. } => false,
            ReservationPhase::Reserved { .. } => self.cancelled.is_none(),
            ReservationPhase::Waiting | ReservationPhase::Failed { .. } | ReservationPhase::Released { .. } => true,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum ReservationPhase {
    /// Waiting for the order to be placed and paid.
    #[default]
    Waiting,
    /// Products asked, some answers outstanding.
    Reserving {
        pending: Vec<String>,
        granted: Vec<StockItem>,
        short: Vec<StockItem>,
    },
    Reserved {
        reservation_id: String,
    },
    Failed {
        reason: String,
    },
    Released {
        reservation_id: String,
    },
}

/// Units available of one product, keyed by product id. Never negative.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductStock {
    pub available: i64,
}

/// Take or give back units of a product for an order; keyed by product id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRequest {
    pub order_id: String,
    pub product_id: String,
    pub quantity: i32,
}

/// Whether a product granted a request; keyed by order id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReply {
    pub product_id: String,
    pub quantity: i32,
    pub granted: bool,
}
