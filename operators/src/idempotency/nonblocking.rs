//! The guard for async callers, such as HTTP handlers: redis' connection manager, which
//! reconnects by itself; every call bounded by the configured timeout.

use std::future::Future;

use redis::aio::ConnectionManager;
use redis::{Client, RedisResult, Script};

use super::{
    completed_value, lease_value, millis, read_claim, unavailable, Claim, GuardConfig, GuardError, Lease, CLAIM,
    RELEASE,
};

#[derive(Clone)]
pub struct AsyncIdempotencyGuard {
    redis: ConnectionManager,
    config: GuardConfig,
}

impl AsyncIdempotencyGuard {
    pub fn new(redis: ConnectionManager, config: GuardConfig) -> Self {
        super::metrics::guarding(&config.namespace);
        AsyncIdempotencyGuard { redis, config }
    }

    /// Connects to `redis://` or `rediss://` (TLS), with `user:password@` if needed.
    pub async fn connect(redis_url: &str, config: GuardConfig) -> Result<Self, GuardError> {
        let client = Client::open(redis_url).map_err(|e| GuardError::InvalidUrl(e.to_string()))?;
        let redis = bounded(&config, ConnectionManager::new(client)).await?;
        Ok(Self::new(redis, config))
    }

    pub async fn claim(&self, key: &str, fingerprint: Option<&str>) -> Result<Claim, GuardError> {
        let (redis_key, ours) = (self.config.redis_key(key), lease_value(fingerprint));
        let mut redis = self.redis.clone();
        let script = Script::new(CLAIM);
        let mut invocation = script.key(&redis_key);
        invocation.arg(&ours).arg(millis(self.config.lease));
        let held: Option<String> = bounded(&self.config, invocation.invoke_async(&mut redis)).await?;
        read_claim(&self.config, redis_key, ours, held, fingerprint)
    }

    /// Marks the key COMPLETED (replacing any lease), with `result` if given.
    pub async fn complete(
        &self,
        key: &str,
        result: Option<&serde_json::Value>,
        fingerprint: Option<&str>,
    ) -> Result<(), GuardError> {
        let mut set = redis::cmd("SET");
        set.arg(self.config.redis_key(key))
            .arg(completed_value(result, fingerprint))
            .arg("PX")
            .arg(millis(self.config.completed_ttl));
        let mut redis = self.redis.clone();
        bounded(&self.config, set.query_async::<()>(&mut redis)).await
    }

    pub async fn release(&self, lease: &Lease) -> Result<(), GuardError> {
        let script = Script::new(RELEASE);
        let mut invocation = script.key(&lease.redis_key);
        invocation.arg(&lease.value);
        let mut redis = self.redis.clone();
        bounded(&self.config, invocation.invoke_async::<i64>(&mut redis)).await.map(|_| ())
    }
}

async fn bounded<T>(config: &GuardConfig, call: impl Future<Output = RedisResult<T>>) -> Result<T, GuardError> {
    match tokio::time::timeout(config.timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(unavailable(config, e)),
        Err(_) => Err(unavailable(config, "timed out")),
    }
}
