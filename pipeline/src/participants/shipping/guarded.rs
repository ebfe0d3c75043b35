//! The production [`ShipmentGateway`]: a Redis idempotency key in front of the `shipments`
//! table's unique order id.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::config::ShippingConfig;
use super::gateway::{Cancellation, Shipment, ShipmentError, ShipmentGateway};
use operators::idempotency::{Claim, GuardConfig, GuardError, IdempotencyGuard};

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
        // A completed mark outlives the order's state: a duplicate arriving meanwhile finds one or the other.
        let guard_config = GuardConfig {
            lease: config.lease,
            timeout: config.io_timeout,
            completed_ttl: config.retention.grace,
            ..GuardConfig::new(GUARD_NAMESPACE)
        };
        let guard = IdempotencyGuard::new(&config.redis_url, guard_config).map_err(guard_failed)?;
        let table = ShipmentsTable::new(&config.database_url, config.io_timeout, config.handover_after)?;
        Ok(GuardedShipments { stores: Mutex::new(Stores { guard, table }) })
    }
}

/// The namespace of shipping's idempotency keys in Redis.
pub const GUARD_NAMESPACE: &str = "shipping";

/// The idempotency key guarding the shipment of one order (`shipping:shipment:<order>` in Redis).
pub fn idempotency_key(order_id: &str) -> String {
    format!("shipment:{order_id}")
}

/// The idempotency key guarding the cancellation of one order's shipment.
pub fn cancellation_key(order_id: &str) -> String {
    format!("cancellation:{order_id}")
}

/// Redis down fails closed: the effect waits, with its partition paused, until Redis is back.
fn guard_failed(error: GuardError) -> ShipmentError {
    match error {
        GuardError::Unavailable(_) => ShipmentError::unavailable("redis", error.to_string()),
        GuardError::Corrupt { .. } | GuardError::InvalidUrl(_) => ShipmentError::permanent(error.to_string()),
    }
}

impl Stores {
    /// Runs `effect` under the idempotency key `key`: once per key, and a replay after it
    /// completed runs it again only to read back the row it left (every effect is idempotent
    /// in the table too).
    fn guarded<T>(
        &mut self,
        key: &str,
        effect: impl Fn(&mut ShipmentsTable) -> Result<T, ShipmentError>,
    ) -> Result<T, ShipmentError> {
        match self.guard.claim(key, None).map_err(guard_failed)? {
            // A crashed attempt's lease runs out by itself; until then the effect must wait.
            Claim::InProgress => Err(ShipmentError::unavailable(
                "idempotency lease",
                format!("another attempt holds idempotency key {key} until its lease runs out"),
            )),
            Claim::Reused => {
                Err(ShipmentError::permanent(format!("idempotency key {key} was claimed for another request")))
            }
            Claim::Completed(_) => effect(&mut self.table),
            Claim::Acquired(lease) => match effect(&mut self.table) {
                Ok(done) => {
                    // The row is the final word; an unmarked key only delays a replay until the lease ends.
                    if let Err(error) = self.guard.complete(key, None, None) {
                        tracing::warn!(key, %error, "effect done but its idempotency key was not marked COMPLETED");
                    }
                    Ok(done)
                }
                Err(error) => {
                    // Lets the retry start at once instead of after the lease; the lease expires anyway.
                    if let Err(release_error) = self.guard.release(&lease) {
                        tracing::warn!(key, %release_error, "could not give up the lease");
                    }
                    Err(error)
                }
            },
        }
    }

    /// `guarded` for many shipments: one round trip to Redis for the claims, two statements at
    /// most for the rows, one round trip for the completions. A key another attempt holds, or
    /// one claimed for another request, fails the whole batch: the caller goes order by order,
    /// where `guarded` tells those cases apart.
    fn guarded_batch(&mut self, order_ids: &[String]) -> Result<HashMap<String, Shipment>, ShipmentError> {
        let keys: Vec<String> = order_ids.iter().map(|order_id| idempotency_key(order_id)).collect();
        let claims = self.guard.claim_many(&keys).map_err(guard_failed)?;
        let (mut leases, mut acquired, mut refused) = (Vec::new(), Vec::new(), None);
        for (key, claim) in keys.iter().zip(claims) {
            match claim {
                Claim::Acquired(lease) => {
                    leases.push(lease);
                    acquired.push(key.clone());
                }
                Claim::Completed(_) => {}
                Claim::InProgress | Claim::Reused => refused = refused.or(Some(key)),
            }
        }
        let created = match refused {
            Some(key) => {
                Err(ShipmentError::retriable(format!("idempotency key {key} is not free: shipping order by order")))
            }
            None => self.table.insert_or_fetch_many(order_ids),
        };
        match created {
            Ok(shipments) => {
                // The rows are the final word; an unmarked key only delays a replay until the lease ends.
                if let Err(error) = self.guard.complete_many(&acquired) {
                    tracing::warn!(keys = acquired.len(), %error, "effects done but their idempotency keys were not marked COMPLETED");
                }
                Ok(shipments)
            }
            Err(error) => {
                if let Err(release_error) = self.guard.release_many(&leases) {
                    tracing::warn!(keys = leases.len(), %release_error, "could not give up the leases");
                }
                Err(error)
            }
        }
    }
}

impl ShipmentGateway for GuardedShipments {
    fn create_shipment(&self, order_id: &str) -> Result<Shipment, ShipmentError> {
        let mut stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        // Created before: the insert conflicts and returns the row on record.
        stores.guarded(&idempotency_key(order_id), |table| table.insert_or_fetch(order_id))
    }

    fn create_shipments(&self, order_ids: &[String]) -> Result<HashMap<String, Shipment>, ShipmentError> {
        let mut stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        stores.guarded_batch(order_ids)
    }

    fn cancel_shipment(&self, order_id: &str, shipment_id: &str) -> Result<Cancellation, ShipmentError> {
        let mut stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        stores.guarded(&cancellation_key(order_id), |table| table.cancel(order_id, shipment_id))
    }
}
