//! The production [`ShipmentGateway`]: a Redis idempotency key in front of the `shipments`
//! table's unique order id.

use std::sync::{Mutex, PoisonError};

use super::config::ShippingConfig;
use super::gateway::{Cancellation, Shipment, ShipmentError, ShipmentGateway};
use super::guard::{Claim, IdempotencyGuard};
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
        let guard = IdempotencyGuard::new(&config.redis_url, config.io_timeout, config.lease)?;
        let table = ShipmentsTable::new(&config.database_url, config.io_timeout, config.handover_after)?;
        Ok(GuardedShipments { stores: Mutex::new(Stores { guard, table }) })
    }
}

/// The Redis key guarding the shipment of one order.
pub fn idempotency_key(order_id: &str) -> String {
    format!("shipping:shipment:{order_id}")
}

/// The Redis key guarding the cancellation of one order's shipment.
pub fn cancellation_key(order_id: &str) -> String {
    format!("shipping:cancellation:{order_id}")
}

impl Stores {
    /// Runs `effect` under the idempotency key `key`: once per key, and a replay after it
    /// completed runs it again only to read back the row it left (every effect is idempotent
    /// in the table too).
    fn guarded<T>(&mut self, key: &str, effect: impl Fn(&mut ShipmentsTable) -> Result<T, ShipmentError>) -> Result<T, ShipmentError> {
        match self.guard.claim(key)? {
            Claim::InProgress => Err(ShipmentError::retriable(format!("another attempt holds idempotency key {key} (its lease runs out)"))),
            Claim::Completed => effect(&mut self.table),
            Claim::Acquired(lease) => match effect(&mut self.table) {
                Ok(done) => {
                    // The row is the final word; an unmarked key only delays a replay until the lease ends.
                    if let Err(error) = self.guard.complete(key) {
                        tracing::warn!(key, %error, "effect done but its idempotency key was not marked COMPLETED");
                    }
                    Ok(done)
                }
                Err(error) => {
                    // Lets the retry start at once instead of after the lease; the lease expires anyway.
                    if let Err(release_error) = self.guard.release(key, &lease) {
                        tracing::warn!(key, %release_error, "could not give up the lease");
                    }
                    Err(error)
                }
            },
        }
    }
}

impl ShipmentGateway for GuardedShipments {
    fn create_shipment(&self, order_id: &str) -> Result<Shipment, ShipmentError> {
        let mut stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        // Created before: the insert conflicts and returns the row on record.
        stores.guarded(&idempotency_key(order_id), |table| table.insert_or_fetch(order_id))
    }

    fn cancel_shipment(&self, order_id: &str, shipment_id: &str) -> Result<Cancellation, ShipmentError> {
        let mut stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        stores.guarded(&cancellation_key(order_id), |table| table.cancel(order_id, shipment_id))
    }
}
