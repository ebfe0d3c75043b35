//! The names of the participant's state stores, which its topology builds and its processors
//! open: here, so that both import them and neither imports the other.

/// `OrderShipment`s by order id.
pub const ORDERS_STORE: &str = "orders";
