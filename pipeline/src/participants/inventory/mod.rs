//! Inventory: reserves an order's items once it is paid, all or nothing, and releases them
//! when the order is cancelled after the reservation.
//!
//! Orders are keyed by order id, stock by product id, so a reservation is a little protocol:
//! - **reservations** ([`reservations`]), keyed by order, keep one [`OrderReservation`] per
//!   order; when the order is placed and paid they ask every product for its quantity
//!   ([`StockRequest`]s through `<application.id>-stock-reservations-repartition`);
//! - **stock** ([`stock`]), keyed by product, grants a request if enough is available and
//!   answers ([`StockReply`]s through `<application.id>-stock-replies-repartition`);
//! - once every product answered, the reservation either holds (InventoryReserved) or gives back
//!   what was granted (through `<application.id>-stock-releases-repartition`) and fails
//!   (InventoryReservationFailed), so stock ends untouched. Stock never goes negative.

mod config;
mod processor;
mod reservations;
mod state;
mod stock;
mod stores;
mod topology;

#[cfg(test)]
mod tests;

pub use super::reasons::inventory::{CANCELLED, INSUFFICIENT_STOCK, INVALID_QUANTITY};
pub use config::InventoryConfig;
pub use state::{OrderReservation, ProductStock, ReservationPhase, StockReply, StockRequest};
pub use stores::{ORDERS_STORE, STOCK_STORE};
pub use topology::topology;
