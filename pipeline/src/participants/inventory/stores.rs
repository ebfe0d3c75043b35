//! The names of the participant's state stores, which its topology builds and its processors
//! open: here, so that both import them and neither imports the other.

/// `OrderReservation`s by order id.
pub const ORDERS_STORE: &str = "orders";

/// `ProductStock` by product id.
pub const STOCK_STORE: &str = "stock";
