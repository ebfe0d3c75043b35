//! The guard for synchronous callers, such as a processor on the stream thread: one connection,
//! opened on first use and dropped after any error so that the next call reconnects.

use redis::{Client, Connection, RedisResult, Script};

use super::{
    completed_value, lease_value, millis, read_claim, unavailable, Claim, GuardConfig, GuardError, Lease, CLAIM,
    RELEASE,
};

pub struct IdempotencyGuard {
    client: Client,
    config: GuardConfig,
    connection: Option<Connection>,
}

impl IdempotencyGuard {
    /// `redis://` or `rediss://` (TLS), with `user:password@` if the server wants one. Connects
    /// on first use.
    pub fn new(redis_url: &str, config: GuardConfig) -> Result<Self, GuardError> {
        let client = Client::open(redis_url).map_err(|e| GuardError::InvalidUrl(e.to_string()))?;
        super::metrics::guarding(&config.namespace);
        Ok(IdempotencyGuard { client, config, connection: None })
    }

    pub fn claim(&mut self, key: &str, fingerprint: Option<&str>) -> Result<Claim, GuardError> {
        let (redis_key, ours) = (self.config.redis_key(key), lease_value(fingerprint));
        let lease_ms = millis(self.config.lease);
        let held: Option<String> =
            self.run(|connection| Script::new(CLAIM).key(&redis_key).arg(&ours).arg(lease_ms).invoke(connection))?;
        read_claim(&self.config, redis_key, ours, held, fingerprint)
    }

    /// [`claim`](Self::claim) of each key, in one round trip.
    pub fn claim_many(&mut self, keys: &[String]) -> Result<Vec<Claim>, GuardError> {
        let lease_ms = millis(self.config.lease);
        let attempts: Vec<(String, String)> =
            keys.iter().map(|key| (self.config.redis_key(key), lease_value(None))).collect();
        let mut pipeline = redis::pipe();
        for (redis_key, ours) in &attempts {
            // EVAL rather than EVALSHA: a pipeline does not load a missing script by itself.
            pipeline.cmd("EVAL").arg(CLAIM).arg(1).arg(redis_key).arg(ours).arg(lease_ms);
        }
        let held: Vec<Option<String>> = self.run(|connection| pipeline.query(connection))?;
        let claims: Vec<Result<Claim, GuardError>> = attempts
            .into_iter()
            .zip(held)
            .map(|((redis_key, ours), held)| read_claim(&self.config, redis_key, ours, held, None))
            .collect();
        if let Some(Err(error)) = claims.iter().find(|claim| claim.is_err()) {
            // None of the batch goes ahead: the leases it took must not wait out their time.
            let error = error.clone();
            let leases: Vec<Lease> = claims
                .into_iter()
                .filter_map(|claim| match claim {
                    Ok(Claim::Acquired(lease)) => Some(lease),
                    _ => None,
                })
                .collect();
            if let Err(release_error) = self.release_many(&leases) {
                tracing::warn!(leases = leases.len(), %release_error, "could not give up the batch's leases");
            }
            return Err(error);
        }
        claims.into_iter().collect()
    }

    /// [`complete`](Self::complete) of each key with no result, in one round trip.
    pub fn complete_many(&mut self, keys: &[String]) -> Result<(), GuardError> {
        let (value, ttl_ms) = (completed_value(None, None), millis(self.config.completed_ttl));
        let mut pipeline = redis::pipe();
        for key in keys {
            pipeline.cmd("SET").arg(self.config.redis_key(key)).arg(&value).arg("PX").arg(ttl_ms).ignore();
        }
        self.run(|connection| pipeline.query::<()>(connection))
    }

    /// [`release`](Self::release) of each lease, in one round trip.
    pub fn release_many(&mut self, leases: &[Lease]) -> Result<(), GuardError> {
        let mut pipeline = redis::pipe();
        for lease in leases {
            pipeline.cmd("EVAL").arg(RELEASE).arg(1).arg(&lease.redis_key).arg(&lease.value).ignore();
        }
        self.run(|connection| pipeline.query::<()>(connection))
    }

    /// Marks the key COMPLETED (replacing any lease), with `result` if given.
    pub fn complete(
        &mut self,
        key: &str,
        result: Option<&serde_json::Value>,
        fingerprint: Option<&str>,
    ) -> Result<(), GuardError> {
        let (redis_key, value, ttl_ms) =
            (self.config.redis_key(key), completed_value(result, fingerprint), millis(self.config.completed_ttl));
        self.run(|connection| {
            redis::cmd("SET").arg(&redis_key).arg(&value).arg("PX").arg(ttl_ms).query::<()>(connection)
        })
    }

    pub fn release(&mut self, lease: &Lease) -> Result<(), GuardError> {
        self.run(|connection| Script::new(RELEASE).key(&lease.redis_key).arg(&lease.value).invoke::<i64>(connection))
            .map(|_| ())
    }

    fn run<T>(&mut self, command: impl FnOnce(&mut Connection) -> RedisResult<T>) -> Result<T, GuardError> {
        let connection = match self.connection.as_mut() {
            Some(connection) => connection,
            None => self.connection.insert(self.connect()?),
        };
        command(connection).map_err(|e| {
            self.connection = None;
            unavailable(&self.config, e)
        })
    }

    fn connect(&self) -> Result<Connection, GuardError> {
        let timeout = self.config.timeout;
        let connection = self.client.get_connection_with_timeout(timeout).map_err(|e| unavailable(&self.config, e))?;
        connection.set_read_timeout(Some(timeout)).map_err(|e| unavailable(&self.config, e))?;
        connection.set_write_timeout(Some(timeout)).map_err(|e| unavailable(&self.config, e))?;
        Ok(connection)
    }
}
