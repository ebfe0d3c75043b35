//! The Redis idempotency key of a shipment effect: `PROCESSING:<token>` while one attempt holds
//! the lease, COMPLETED once the effect is done. Each transition is one atomic command or
//! script, and an attempt gives up only a lease that still carries its own token: one whose
//! lease ran out and was taken over can never delete the new holder's.

use std::time::Duration;

use redis::{Client, Connection, RedisResult, Script};

use super::gateway::ShipmentError;

/// How long an attempt may hold the key before another may take over, by default.
pub(super) const LEASE: Duration = Duration::from_secs(30);
/// How long a completed key is remembered.
pub(super) const COMPLETED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

const PROCESSING: &str = "PROCESSING";
const COMPLETED: &str = "COMPLETED";

/// Takes the lease (`SET NX PX`) with this attempt's token, or reports who holds the key, in one step.
const CLAIM: &str = r"
if redis.call('SET', KEYS[1], 'PROCESSING:' .. ARGV[2], 'NX', 'PX', ARGV[1]) then return 'ACQUIRED' end
return redis.call('GET', KEYS[1])";

/// Gives the lease up, if it is still this attempt's.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == 'PROCESSING:' .. ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// Who holds an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Claim {
    /// This attempt now holds the lease, under this token, and must do the effect.
    Acquired(Lease),
    /// A shipment was created before.
    Completed,
    /// Another attempt holds the lease.
    InProgress,
}

/// The token of a lease this attempt holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Lease(String);

pub(super) struct IdempotencyGuard {
    client: Client,
    timeout: Duration,
    lease: Duration,
    /// Opened on first use and dropped after any error, so the next call reconnects.
    connection: Option<Connection>,
}

impl IdempotencyGuard {
    pub(super) fn new(redis_url: &str, timeout: Duration, lease: Duration) -> Result<Self, ShipmentError> {
        let client = Client::open(redis_url).map_err(|e| ShipmentError::permanent(format!("redis url {redis_url:?} is invalid: {e}")))?;
        Ok(IdempotencyGuard { client, timeout, lease, connection: None })
    }

    pub(super) fn claim(&mut self, key: &str) -> Result<Claim, ShipmentError> {
        let (lease_ms, token) = (millis(self.lease), uuid::Uuid::new_v4().to_string());
        let holder: Option<String> =
            self.run(|connection| Script::new(CLAIM).key(key).arg(lease_ms).arg(&token).invoke(connection))?;
        match holder.as_deref() {
            Some("ACQUIRED") => Ok(Claim::Acquired(Lease(token))),
            Some(COMPLETED) => Ok(Claim::Completed),
            Some(held) if held.starts_with(PROCESSING) => Ok(Claim::InProgress),
            other => Err(ShipmentError::permanent(format!("idempotency key {key} holds unexpected value {other:?}"))),
        }
    }

    pub(super) fn complete(&mut self, key: &str) -> Result<(), ShipmentError> {
        let ttl_ms = millis(COMPLETED_TTL);
        self.run(|connection| redis::cmd("SET").arg(key).arg(COMPLETED).arg("PX").arg(ttl_ms).query::<()>(connection))
    }

    pub(super) fn release(&mut self, key: &str, lease: &Lease) -> Result<(), ShipmentError> {
        self.run(|connection| Script::new(RELEASE).key(key).arg(&lease.0).invoke::<i64>(connection)).map(|_| ())
    }

    fn run<T>(&mut self, command: impl FnOnce(&mut Connection) -> RedisResult<T>) -> Result<T, ShipmentError> {
        if self.connection.is_none() {
            self.connection = Some(self.connect()?);
        }
        let Some(connection) = self.connection.as_mut() else {
            return Err(ShipmentError::retriable("redis connection lost"));
        };
        command(connection).map_err(|e| {
            self.connection = None;
            ShipmentError::retriable(format!("redis: {e}"))
        })
    }

    fn connect(&self) -> Result<Connection, ShipmentError> {
        let unavailable = |e: redis::RedisError| ShipmentError::retriable(format!("redis is unavailable: {e}"));
        let connection = self.client.get_connection_with_timeout(self.timeout).map_err(unavailable)?;
        connection.set_read_timeout(Some(self.timeout)).map_err(unavailable)?;
        connection.set_write_timeout(Some(self.timeout)).map_err(unavailable)?;
        Ok(connection)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
