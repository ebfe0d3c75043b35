//! The production [`ShipmentGateway`]: a Redis idempotency key in front of the `shipments`
//! table's unique order id.

use std::sync::{Mutex, PoisonError};

use super::config::ShippingConfig;
use super::gateway::{Shipment, ShipmentError, ShipmentGateway};
use super::guard::{Claim, IdempotencyGuard, LEASE};
use super::shipments_table::ShipmentsTable;

pub struct GuardedShipments {
    /// Tasks share one connection to each store; the stream thread calls one at a time anyway.
    stores: Mutex<Stores>,
}

struct Stores {
    guard: IdempotencyGuard,
    table: ShipmentsTable,
}

impl GuardedShipments {
    /// Checks the URLs; connects on first use.
    pub fn new(config: &ShippingConfig) -> Result<Self, ShipmentError> {
        let guard = IdempotencyGuard::new(&config.redis_url, config.io_timeout)?;
        let table = ShipmentsTable::new(&config.database_url, config.io_timeout)?;
        Ok(GuardedShipments { stores: Mutex::new(Stores { guard, table }) })
    }
}

/// The Redis key guarding the shipment of one order.
pub fn idempotency_key(order_id: &str) -> String {
    format!("shipping:shipment:{order_id}")
}

impl ShipmentGateway for GuardedShipments {
    fn create_shipment(&self, order_id: &str) -> Result<Shipment, ShipmentError> {
        let mut stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        let key = idempotency_key(order_id);
        match stores.guard.claim(&key)? {
            Claim::InProgress => Err(ShipmentError::retriable(format!(
                "another attempt is creating the shipment of order {order_id}; its lease ends within {LEASE:?}"
            ))),
            // Created before: the insert conflicts and returns the row on record.
            Claim::Completed => stores.table.insert_or_fetch(order_id),
            Claim::Acquired => match stores.table.insert_or_fetch(order_id) {
                Ok(shipment) => {
                    // The row is the final word; an unmarked key only delays a replay until the lease ends.
                    if let Err(error) = stores.guard.complete(&key) {
                        tracing::warn!(order_id, %error, "shipment created but its idempotency key was not marked COMPLETED");
                    }
                    Ok(shipment)
                }
                Err(error) => {
                    // Lets the retry start at once instead of after the lease; the lease expires anyway.
                    if let Err(release_error) = stores.guard.release(&key) {
                        tracing::warn!(order_id, %release_error, "could not give up the shipment lease");
                    }
                    Err(error)
                }
            },
        }
    }
}
