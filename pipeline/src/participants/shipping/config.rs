//! Settings of the shipping participant.

use std::time::Duration;

use schemas::Address;

use crate::participants::retention::Retention;
use crate::participants::SagaTopics;

#[derive(Clone, Debug)]
pub struct ShippingConfig {
    /// Consumer group and prefix of internal topics; `shipping` in production.
    pub application_id: String,
    pub topics: SagaTopics,
    /// Where the `shipments` table lives: a `postgres://` URL or `host=… user=…` pairs.
    pub database_url: String,
    pub redis_url: String,
    /// ISO 3166-1 alpha-2 codes of the countries we ship to.
    pub allowed_countries: Vec<String>,
    /// Bound on every connect, query and command, so a hung store cannot stall the stream thread.
    pub io_timeout: Duration,
    /// How long one attempt may hold an idempotency key before another may take over.
    pub lease: Duration,
    /// A shipment this old is with the carrier and can no longer be cancelled (a stand-in for
    /// the carrier's own answer); `None`: always cancellable.
    pub handover_after: Option<Duration>,
    /// When a decided order's entry is deleted; the Redis guard's COMPLETED marks live as long.
    pub retention: Retention,
}

impl ShippingConfig {
    pub fn new(database_url: impl Into<String>, redis_url: impl Into<String>, allowed_countries: Vec<String>) -> Self {
        ShippingConfig {
            application_id: "shipping".to_owned(),
            topics: SagaTopics::default(),
            database_url: database_url.into(),
            redis_url: redis_url.into(),
            allowed_countries,
            io_timeout: Duration::from_secs(5),
            lease: operators::idempotency::GuardConfig::new(super::guarded::GUARD_NAMESPACE).lease,
            handover_after: None,
            retention: Retention::default(),
        }
    }
}

/// Whether we ship to `address`: a test hook (`INVALID` in the first line) and the country list.
pub(super) fn accepts(allowed_countries: &[String], address: &Address) -> bool {
    let flagged = address.line1.to_uppercase().contains("INVALID");
    let served = allowed_countries.iter().any(|country| country.eq_ignore_ascii_case(address.country.trim()));
    served && !flagged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(line1: &str, country: &str) -> Address {
        Address {
            line1: line1.into(),
            line2: None,
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country: country.into(),
        }
    }

    #[test]
    fn only_served_countries_without_the_invalid_marker_are_accepted() {
        let allowed = vec!["DE".to_owned(), "FR".to_owned()];
        assert!(accepts(&allowed, &address("Main St 1", "DE")));
        assert!(accepts(&allowed, &address("Main St 1", "fr")));
        assert!(!accepts(&allowed, &address("Main St 1", "US")));
        assert!(!accepts(&allowed, &address("INVALID street 1", "DE")));
        assert!(!accepts(&[], &address("Main St 1", "DE")));
    }
}
