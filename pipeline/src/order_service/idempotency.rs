//! The Redis side of `Idempotency-Key` (the guard of `operators::idempotency`): a fast first
//! answer for retries. A 30 s PROCESSING lease while the request runs, COMPLETED with the
//! response for 7 days after the commit. PostgreSQL's `order_requests` stays the final word when
//! Redis forgets or is down: the guarded effect (the insert) is unique there too, so a request
//! with Redis down still runs once.
//!
//! A key belongs to one customer (it is stored as `<customer>/<key>`, so two customers who pick
//! the same key never see each other's answers) and to one request body: the SHA-256 of the
//! request is kept with it, and the same key with another body is refused.

use std::time::Duration;

use operators::idempotency::GuardConfig;

/// Redis is an optimisation here; a slow one must not hold requests up.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
const NAMESPACE: &str = "order-service:idempotency";

/// Where the order service's keys live: 30 s leases, COMPLETED (with the response) for 7 days.
pub fn guard_config() -> GuardConfig {
    GuardConfig { timeout: CALL_TIMEOUT, ..GuardConfig::new(NAMESPACE) }
}

/// The Redis key of a scoped idempotency key.
pub fn redis_key(scoped_key: &str) -> String {
    guard_config().redis_key(scoped_key)
}

/// A client's key within its customer: what Redis and `order_requests` store.
pub fn scoped_key(customer_id: &str, idempotency_key: &str) -> String {
    format!("{customer_id}/{idempotency_key}")
}

/// SHA-256 (hex) of the request's canonical JSON: the validated order, fields in declaration order.
pub fn request_hash(placed: &schemas::OrderPlaced) -> String {
    use sha2::{Digest, Sha256};
    let canonical = serde_json::to_vec(placed).unwrap_or_default();
    Sha256::digest(&canonical).iter().map(|byte| format!("{byte:02x}")).collect()
}
