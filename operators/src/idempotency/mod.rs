//! A Redis idempotency guard for side effects, usable by any topology (blocking, from the stream
//! thread) and by HTTP handlers (async). One protocol, one value format, two transports.
//!
//! `<namespace>:<key>` goes PROCESSING (a lease: a random token and a TTL, 30 s by default) →
//! COMPLETED (7 days by default, optionally holding a small result such as an HTTP response).
//! Each transition is one atomic command or Lua script:
//! - **claim** takes the lease if the key is free (`SET NX PX`), or returns what holds it;
//! - **complete** marks the key COMPLETED; call it only after the effect is committed;
//! - **release** gives the lease back after a failure, only if it still carries our token, so an
//!   attempt whose lease ran out and was taken over never deletes the new holder's.
//!
//! A crashed holder's lease expires and the effect is attempted again, never skipped. Redis
//! unreachable is [`GuardError::Unavailable`]: a guarded side effect must then not run (fail
//! closed); the stream runtime pauses the partition (`ProcessError::unavailable`).

mod blocking;
mod metrics;
mod nonblocking;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use blocking::IdempotencyGuard;
pub use nonblocking::AsyncIdempotencyGuard;

/// Takes the lease, or returns the value that holds the key, in one step.
const CLAIM: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])";

/// Deletes the key only while it still holds our lease.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// Where keys live and how long they last.
#[derive(Clone, Debug)]
pub struct GuardConfig {
    /// Prefix of every key, e.g. `shipping` or `order-service:idempotency`.
    pub namespace: String,
    /// How long an attempt holds a key before another may take over.
    pub lease: Duration,
    /// How long a completed key is remembered: at least as long as a duplicate can arrive.
    pub completed_ttl: Duration,
    /// Bound on each Redis call; a slower answer counts as unavailable.
    pub timeout: Duration,
}

impl GuardConfig {
    pub fn new(namespace: impl Into<String>) -> Self {
        GuardConfig {
            namespace: namespace.into(),
            lease: Duration::from_secs(30),
            completed_ttl: Duration::from_secs(7 * 24 * 3600),
            timeout: Duration::from_secs(2),
        }
    }

    /// The Redis key an idempotency key is stored under.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}:{key}", self.namespace)
    }
}

/// Who holds an idempotency key.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// This attempt now holds the lease and must do the effect, then `complete` or `release`.
    Acquired(Lease),
    /// The effect was done before; with the result stored then, if any.
    Completed(Option<serde_json::Value>),
    /// Another attempt holds the lease (until it completes, releases or its lease runs out).
    InProgress,
    /// The key was claimed for a request with another fingerprint.
    Reused,
}

/// A lease this attempt holds: the exact value it wrote, which `release` compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    redis_key: String,
    value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// Redis did not answer in time, or refused: retry later; never run the effect unguarded.
    #[error("redis is unavailable: {0}")]
    Unavailable(String),
    /// The key holds something this protocol did not write.
    #[error("idempotency key {key} holds an unreadable value: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("redis url is invalid: {0}")]
    InvalidUrl(String),
}

/// What a key holds, as JSON. A fingerprint (say, a request body's hash) ties a key to one
/// request: the same key with another fingerprint is [`Claim::Reused`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "SCREAMING_SNAKE_CASE")]
enum Holder {
    Processing {
        token: String,
        #[serde(default, alias = "request_hash", skip_serializing_if = "Option::is_none")]
        fingerprint: Option<String>,
    },
    Completed {
        #[serde(default, alias = "response", skip_serializing_if = "Option::is_none")]
        result: Option<serde_json::Value>,
        #[serde(default, alias = "request_hash", skip_serializing_if = "Option::is_none")]
        fingerprint: Option<String>,
    },
}

impl Holder {
    /// Also reads the plain values of the guard's first version (`COMPLETED`, `PROCESSING:<token>`).
    fn parse(value: &str) -> Result<Holder, String> {
        match value {
            "COMPLETED" => Ok(Holder::Completed { result: None, fingerprint: None }),
            _ => match value.strip_prefix("PROCESSING:") {
                Some(token) => Ok(Holder::Processing { token: token.to_owned(), fingerprint: None }),
                None => serde_json::from_str(value).map_err(|e| e.to_string()),
            },
        }
    }
}

/// The new lease's value and the claim a held value means.
fn lease_value(fingerprint: Option<&str>) -> String {
    let holder =
        Holder::Processing { token: uuid::Uuid::new_v4().to_string(), fingerprint: fingerprint.map(str::to_owned) };
    serde_json::to_string(&holder).unwrap_or_default()
}

fn completed_value(result: Option<&serde_json::Value>, fingerprint: Option<&str>) -> String {
    let holder = Holder::Completed { result: result.cloned(), fingerprint: fingerprint.map(str::to_owned) };
    serde_json::to_string(&holder).unwrap_or_default()
}

/// Reads CLAIM's answer: nothing (we took the lease) or the value that holds the key.
fn read_claim(
    config: &GuardConfig,
    redis_key: String,
    ours: String,
    held: Option<String>,
    fingerprint: Option<&str>,
) -> Result<Claim, GuardError> {
    let Some(held) = held else {
        metrics::checked(&config.namespace, "miss");
        return Ok(Claim::Acquired(Lease { redis_key, value: ours }));
    };
    let holder = Holder::parse(&held).map_err(|reason| {
        metrics::checked(&config.namespace, "error");
        GuardError::Corrupt { key: redis_key.clone(), reason }
    })?;
    let held_fingerprint = match &holder {
        Holder::Processing { fingerprint, .. } | Holder::Completed { fingerprint, .. } => fingerprint.as_deref(),
    };
    let claim = match holder {
        _ if fingerprint.is_some() && held_fingerprint.is_some() && held_fingerprint != fingerprint => Claim::Reused,
        Holder::Processing { .. } => Claim::InProgress,
        Holder::Completed { result, .. } => Claim::Completed(result),
    };
    metrics::checked(&config.namespace, if matches!(claim, Claim::Completed(_)) { "hit" } else { "conflict" });
    Ok(claim)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn unavailable(config: &GuardConfig, error: impl std::fmt::Display) -> GuardError {
    metrics::checked(&config.namespace, "error");
    GuardError::Unavailable(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GuardConfig {
        GuardConfig::new("test")
    }

    #[test]
    fn a_free_key_is_ours_and_a_held_one_says_who_holds_it() {
        let ours = lease_value(Some("h1"));
        let claim = read_claim(&config(), "test:k".into(), ours.clone(), None, Some("h1")).expect("claim");
        assert_eq!(claim, Claim::Acquired(Lease { redis_key: "test:k".into(), value: ours.clone() }));
        let other = |held: String, fingerprint| {
            read_claim(&config(), "test:k".into(), lease_value(None), Some(held), fingerprint)
        };
        assert_eq!(other(ours.clone(), Some("h1")), Ok(Claim::InProgress));
        assert_eq!(other(ours, Some("h2")), Ok(Claim::Reused), "another request under the same key");
        let done = completed_value(Some(&serde_json::json!({"status": 202})), Some("h1"));
        assert_eq!(other(done.clone(), Some("h1")), Ok(Claim::Completed(Some(serde_json::json!({"status": 202})))));
        assert_eq!(
            other(done, None),
            Ok(Claim::Completed(Some(serde_json::json!({"status": 202})))),
            "no fingerprint, no check"
        );
    }

    #[test]
    fn values_of_earlier_versions_still_read() {
        let other = |held: &str| read_claim(&config(), "test:k".into(), lease_value(None), Some(held.to_owned()), None);
        assert_eq!(other("COMPLETED"), Ok(Claim::Completed(None)));
        assert_eq!(other("PROCESSING:abc"), Ok(Claim::InProgress));
        let order_service = r#"{"state":"COMPLETED","response":{"order_id":"o-1"},"request_hash":"h"}"#;
        assert_eq!(other(order_service), Ok(Claim::Completed(Some(serde_json::json!({"order_id": "o-1"})))));
        assert!(matches!(other("garbage"), Err(GuardError::Corrupt { .. })));
    }
}
