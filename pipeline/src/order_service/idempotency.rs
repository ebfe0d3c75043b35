//! The Redis side of `Idempotency-Key`: a fast first answer for retries. Each transition is one
//! atomic command or script: take a 30 s PROCESSING lease (or read what holds the key), store
//! COMPLETED with the response for 7 days after the commit, or give back our own lease after a
//! failure. PostgreSQL's `order_requests` stays the final word when Redis forgets or is down.
//!
//! A key belongs to one customer (it is stored as `<customer>/<key>`, so two customers who pick
//! the same key never see each other's answers) and to one request body: the SHA-256 of the
//! request is kept with it, and the same key with another body is refused.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use serde::{Deserialize, Serialize};

const LEASE: Duration = Duration::from_secs(30);
const COMPLETED_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Redis is an optimisation here; a slow one must not hold requests up.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
const KEY_PREFIX: &str = "order-service:idempotency:";

/// Takes the lease, or returns the value that holds the key, in one step.
const ACQUIRE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])";

/// Deletes the key only while it is still our lease (it may have expired and been taken).
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// What Redis holds under an idempotency key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Record {
    Processing {
        token: String,
        #[serde(default)]
        request_hash: Option<String>,
    },
    Completed {
        response: serde_json::Value,
        #[serde(default)]
        request_hash: Option<String>,
    },
}

/// The outcome of trying to start a request under a key.
#[derive(Debug, PartialEq)]
pub enum Begin {
    /// We hold the lease; finish with `complete` or `release`.
    Acquired(Lease),
    /// Another request with this key and body is running.
    InProgress,
    /// A request with this key and body finished; this was its response.
    Completed(serde_json::Value),
    /// The key was used for a different request body.
    Reused,
    /// Redis did not answer or held something unreadable; PostgreSQL decides alone.
    Unavailable,
}

/// Our PROCESSING lease on a key.
#[derive(Debug, PartialEq)]
pub struct Lease {
    redis_key: String,
    value: String,
}

#[derive(Clone)]
pub struct IdempotencyGuard {
    redis: ConnectionManager,
}

impl IdempotencyGuard {
    pub fn new(redis: ConnectionManager) -> Self {
        IdempotencyGuard { redis }
    }

    /// `scoped_key` from [`scoped_key`]; `request_hash` from [`request_hash`].
    pub async fn begin(&self, scoped_key: &str, request_hash: &str) -> Begin {
        let redis_key = redis_key(scoped_key);
        let record = Record::Processing { token: uuid::Uuid::new_v4().to_string(), request_hash: Some(request_hash.to_owned()) };
        let Ok(value) = serde_json::to_string(&record) else { return Begin::Unavailable };
        let mut redis = self.redis.clone();
        let lease_ms = LEASE.as_millis().to_string();
        let acquire = Script::new(ACQUIRE);
        let mut invocation = acquire.key(&redis_key);
        invocation.arg(&value).arg(lease_ms);
        let held: Option<String> = match tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async(&mut redis)).await {
            Ok(Ok(held)) => held,
            Ok(Err(e)) => return unavailable(&e.to_string()),
            Err(_) => return unavailable("timed out"),
        };
        let other_body = |held: &Option<String>| held.as_deref().is_some_and(|held| held != request_hash);
        match held.map(|held| serde_json::from_str::<Record>(&held)) {
            None => Begin::Acquired(Lease { redis_key, value }),
            Some(Ok(Record::Processing { request_hash: held, .. } | Record::Completed { request_hash: held, .. })) if other_body(&held) => {
                Begin::Reused
            }
            Some(Ok(Record::Processing { .. })) => Begin::InProgress,
            Some(Ok(Record::Completed { response, .. })) => Begin::Completed(response),
            Some(Err(e)) => unavailable(&format!("unreadable value under {redis_key}: {e}")),
        }
    }

    /// Records the committed response for 7 days, in one SET (it replaces the lease). Without a
    /// lease (Redis was down at the start) it still tries: the response is final either way.
    pub async fn complete(&self, scoped_key: &str, request_hash: &str, response: &serde_json::Value) {
        let record = Record::Completed { response: response.clone(), request_hash: Some(request_hash.to_owned()) };
        let Ok(value) = serde_json::to_string(&record) else { return };
        let mut set = redis::cmd("SET");
        set.arg(redis_key(scoped_key)).arg(value).arg("PX").arg(COMPLETED_TTL.as_millis().to_string());
        let mut redis = self.redis.clone();
        match tokio::time::timeout(CALL_TIMEOUT, set.query_async::<()>(&mut redis)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "storing a completed idempotency key failed; PostgreSQL still has it")
            }
            Err(_) => tracing::warn!("storing a completed idempotency key timed out; PostgreSQL still has it"),
        }
    }

    /// Gives the lease back after a failure, so a retry need not wait for it to expire.
    pub async fn release(&self, lease: Lease) {
        let release = Script::new(RELEASE);
        let mut invocation = release.key(&lease.redis_key);
        invocation.arg(&lease.value);
        let mut redis = self.redis.clone();
        match tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async::<i64>(&mut redis)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing an idempotency lease failed; it expires by itself"),
            Err(_) => tracing::warn!("releasing an idempotency lease timed out; it expires by itself"),
        }
    }
}

fn unavailable(reason: &str) -> Begin {
    tracing::warn!(reason, "Redis idempotency guard unavailable; relying on PostgreSQL alone");
    Begin::Unavailable
}

/// The Redis key of a scoped idempotency key, namespaced so other services' keys cannot clash.
pub fn redis_key(scoped_key: &str) -> String {
    format!("{KEY_PREFIX}{scoped_key}")
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
