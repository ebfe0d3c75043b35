//! The reasons the participants put in their failure events. One participant acts on another's
//! (payment's ledger on inventory's `cancelled`), so they live here, where each imports them one
//! way, and not inside the participant that emits them.

/// PaymentFailed's reasons.
pub mod payment {
    /// PaymentFailed's reason when the balance does not cover the order.
    pub const INSUFFICIENT_FUNDS: &str = "insufficient_funds";
    /// PaymentFailed's reason when the order's total is negative.
    pub const INVALID_AMOUNT: &str = "invalid_amount";
}

/// InventoryReservationFailed's reasons.
pub mod inventory {
    /// InventoryReservationFailed's reason when a product lacks stock.
    pub const INSUFFICIENT_STOCK: &str = "insufficient_stock";
    /// InventoryReservationFailed's reason when the order was cancelled before the reservation held.
    pub const CANCELLED: &str = "cancelled";
    /// InventoryReservationFailed's reason when an item's quantity is not positive.
    pub const INVALID_QUANTITY: &str = "invalid_quantity";
}

/// ShipmentFailed's reasons.
pub mod shipping {
    /// ShipmentFailed's reason when the address is not served.
    pub const ADDRESS_REJECTED: &str = "address_rejected";
    /// ShipmentFailed's reason when the order was cancelled before shipping.
    pub const CANCELLED: &str = "cancelled";
}
