//! What the projector consumes and how.

use std::time::Duration;

use rdkafka::ClientConfig;
use schemas::{INVENTORY_EVENTS, ORDER_EVENTS, PAYMENT_EVENTS, SHIPPING_EVENTS};

#[derive(Clone, Debug, PartialEq)]
pub struct ProjectorConfig {
    pub bootstrap_servers: String,
    pub group_id: String,
    pub topics: Vec<String>,
    /// How often offsets of projected records are committed. Records projected but not yet
    /// committed are read again after a restart and skipped as duplicates.
    pub commit_interval: Duration,
}

impl ProjectorConfig {
    /// Group `projector` over the four saga topics.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        ProjectorConfig {
            bootstrap_servers: bootstrap_servers.into(),
            group_id: "projector".to_string(),
            topics: [ORDER_EVENTS, PAYMENT_EVENTS, INVENTORY_EVENTS, SHIPPING_EVENTS].map(str::to_string).to_vec(),
            commit_interval: Duration::from_secs(1),
        }
    }

    /// For dead letters: records the projector can never read.
    pub(super) fn producer_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers).set("enable.idempotence", "true");
        config
    }

    pub(super) fn consumer_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", &self.group_id)
            // Only what the saga's transactions committed; offsets only after the database commit.
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky");
        config
    }
}
