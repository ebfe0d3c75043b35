//! Shipping: creates a shipment for every order inventory reserved, unless the order was
//! cancelled or its address is rejected.
//!
//! Creating a shipment is a side effect outside Kafka's transaction: a row in Postgres table
//! `shipments`. A redelivered InventoryReserved (after a crash or an aborted transaction) must
//! not create a second one, so [`GuardedShipments`] takes a Redis idempotency key first (a
//! PROCESSING lease of 30 s, then COMPLETED for 7 days, each transition one atomic command or
//! script) and inserts with the primary key on `order_id` as the last word: a replay finds the
//! row and emits the same shipment again. A store unavailable fails the record with a
//! retriable error.
//!
//! The orders that become ready during a transaction are shipped together as it commits
//! (`Processor::before_commit`): one Redis round trip for their claims, one insert for their
//! rows, one round trip to mark them COMPLETED, instead of three round trips per order. A batch
//! that fails aborts the transaction, and the replay ships order by order, where each order's
//! failure is handled on its own (paused while a store is down, retried, dead-lettered).
//!
//! A shipment of an order cancelled after it was created is cancelled the same way: a Redis
//! key per cancellation, and `shipments.cancelled_at` set once. A shipment older than
//! `handover_after` is with the carrier and cannot be cancelled: shipping says so
//! (ShipmentCancellationFailed) and the saga parks the order for a person.

mod config;
mod gateway;
mod guarded;
mod processor;
mod shipments_table;
mod state;
mod stores;
mod topology;

#[cfg(test)]
mod tests;

pub use super::reasons::shipping::{ADDRESS_REJECTED, CANCELLED};
pub use config::ShippingConfig;
pub use gateway::{Cancellation, Shipment, ShipmentError, ShipmentGateway};
pub use guarded::{cancellation_key, idempotency_key, GuardedShipments, GUARD_NAMESPACE};
pub use state::{OrderShipment, ShipmentOutcome};
pub use stores::ORDERS_STORE;
pub use topology::{topology, topology_with_gateway};
