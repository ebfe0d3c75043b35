//! The Redis side of `Idempotency-Key`: a fast first answer for retries. Each transition is one
//! atomic command or script: take a 30 s PROCESSING lease (or read what holds the key), store
//! COMPLETED with the response for 7 days after the commit, or give back our own lease after a
//! failure. PostgreSQL's `order_requests` stays the final word when Redis forgets or is down.

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
    Processing { token: String },
    Completed { response: serde_json::Value },
}

/// The outcome of trying to start a request under a key.
#[derive(Debug, PartialEq)]
pub enum Begin {
    /// We hold the lease; finish with `complete` or `release`.
    Acquired(Lease),
    /// Another request with this key is running.
    InProgress,
    /// A request with this key finished; this was its response.
    Completed(serde_json::Value),
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

    pub async fn begin(&self, idempotency_key: &str) -> Begin {
        let redis_key = redis_key(idempotency_key);
        let record = Record::Processing { token: uuid::Uuid::new_v4().to_string() };
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
        match held.map(|held| serde_json::from_str::<Record>(&held)) {
            None => Begin::Acquired(Lease { redis_key, value }),
            Some(Ok(Record::Processing { .. })) => Begin::InProgress,
            Some(Ok(Record::Completed { response })) => Begin::Completed(response),
            Some(Err(e)) => unavailable(&format!("unreadable value under {redis_key}: {e}")),
        }
    }

    /// Records the committed response for 7 days, in one SET (it replaces the lease). Without a
    /// lease (Redis was down at the start) it still tries: the response is final either way.
    pub async fn complete(&self, idempotency_key: &str, response: &serde_json::Value) {
        let record = Record::Completed { response: response.clone() };
        let Ok(value) = serde_json::to_string(&record) else { return };
        let mut set = redis::cmd("SET");
        set.arg(redis_key(idempotency_key)).arg(value).arg("PX").arg(COMPLETED_TTL.as_millis().to_string());
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

/// The Redis key of a client's idempotency key, namespaced so other services' keys cannot clash.
pub fn redis_key(idempotency_key: &str) -> String {
    format!("{KEY_PREFIX}{idempotency_key}")
}
