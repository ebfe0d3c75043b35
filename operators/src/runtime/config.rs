//! User-facing runtime settings and the client properties exactly-once needs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::config::ClientConfig;

use crate::error::ErrorPolicy;
use crate::store::PersistentMemory;

const STATISTICS_INTERVAL: &str = "statistics.interval.ms";

/// How outputs, state and input offsets are committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessingGuarantee {
    /// Kafka Streams' `exactly_once_v2`: one transaction per commit interval holds outputs,
    /// changelog writes and input offsets (KIP-447).
    ExactlyOnceV2,
    /// Outputs are flushed, then offsets committed: a crash can repeat a batch.
    AtLeastOnce,
}

/// Where a store keeps its committed state (Kafka Streams' `dsl.default.store.type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreType {
    /// In memory: restored from the changelog in full whenever its task starts.
    #[default]
    InMemory,
    /// On local disk ([`PersistentStores`](crate::store::PersistentStores)): after a clean close,
    /// only the changelog's tail is restored.
    Persistent,
}

#[derive(Clone, Debug)]
pub struct StreamsConfig {
    /// Consumer group id and prefix of internal topics (`<application.id>-<name>-repartition`).
    pub application_id: String,
    pub bootstrap_servers: String,
    /// Unique per running process: it makes up the `transactional.id`. Under exactly_once_v2
    /// zombies are fenced by the group generation (KIP-447), so uniqueness matters and
    /// stability does not. Defaults to `<host>-<pid>-<random>`; set it explicitly (e.g. from
    /// an `instance_id` setting) only to a value no other live instance uses.
    pub instance_id: String,
    pub processing_guarantee: ProcessingGuarantee,
    /// How long a transaction stays open (Kafka Streams' EOS default: 100 ms).
    pub commit_interval: Duration,
    /// Above `commit_interval`: under load the interval stretches up to this, to four times
    /// what commits take lately, so that commits take at most a fifth of the stream thread's
    /// time (see `commit_pacing`). At or below `commit_interval` (the default): fixed.
    pub max_commit_interval: Duration,
    /// Upper bound on records per transaction.
    pub max_records_per_commit: usize,
    /// How often wall-clock punctuations and durable timers are checked.
    pub wall_clock_tick: Duration,
    /// Timeout of every blocking client call (commit, abort, send offsets, watermarks). Must be
    /// below `transaction_timeout`, so a stuck call cannot outlive the open transaction.
    pub blocking_timeout: Duration,
    /// `transaction.timeout.ms`: how long the broker keeps a transaction of a crashed instance
    /// open (blocking `read_committed` readers of its partitions) before aborting it.
    pub transaction_timeout: Duration,
    /// What happens to a record whose processing fails.
    pub error_policy: ErrorPolicy,
    /// Passed through to every client (consumer, producer, admin, restore consumer),
    /// e.g. `security.protocol`, `sasl.*`, `ssl.*`. See [`StreamsConfig::set`].
    pub client_properties: BTreeMap<String, String>,
    /// Offset reset for partitions without a committed offset.
    pub auto_offset_reset: String,
    /// Kafka Streams' `state.dir`: persistent stores live in `<state_dir>/<application_id>/`.
    /// Instances on one machine need one each (the directory is locked while in use).
    pub state_dir: PathBuf,
    /// The store type of every store `store_types` does not name.
    pub default_store_type: StoreType,
    /// Store type by store name.
    pub store_types: BTreeMap<String, StoreType>,
    /// With a persistent store, free space the state directory's filesystem must keep: below
    /// it the instance stops before its next commit, with an error that says so.
    pub state_dir_min_free_bytes: u64,
    /// Memory the persistent stores may hold (block cache, write buffers).
    pub persistent_memory: PersistentMemory,
    /// Kafka Streams' `repartition.purge.interval.ms`: how often records of repartition topics
    /// below the committed offsets are deleted (those topics have no time retention).
    pub repartition_purge_interval: Duration,
}

impl StreamsConfig {
    pub fn new(application_id: impl Into<String>, bootstrap_servers: impl Into<String>) -> Self {
        Self {
            instance_id: generated_instance_id(),
            application_id: application_id.into(),
            bootstrap_servers: bootstrap_servers.into(),
            processing_guarantee: ProcessingGuarantee::ExactlyOnceV2,
            commit_interval: Duration::from_millis(100),
            max_commit_interval: Duration::ZERO,
            max_records_per_commit: 10_000,
            wall_clock_tick: Duration::from_millis(100),
            blocking_timeout: Duration::from_secs(5),
            transaction_timeout: Duration::from_secs(10),
            error_policy: ErrorPolicy::default(),
            client_properties: BTreeMap::new(),
            auto_offset_reset: "earliest".into(),
            state_dir: std::env::temp_dir().join("operators-state"),
            default_store_type: StoreType::InMemory,
            store_types: BTreeMap::new(),
            state_dir_min_free_bytes: 64 * 1024 * 1024,
            persistent_memory: PersistentMemory::default(),
            repartition_purge_interval: Duration::from_secs(30),
        }
    }

    /// Where the store called `store` keeps its state.
    pub fn store_type(&self, store: &str) -> StoreType {
        self.store_types.get(store).copied().unwrap_or(self.default_store_type)
    }

    /// Sets any librdkafka property on every client. Properties exactly-once depends on are
    /// overridden at start, with a warning naming each one.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.client_properties.insert(key.into(), value.into());
        self
    }

    pub fn transactional_id(&self) -> String {
        format!("{}-{}", self.application_id, self.instance_id)
    }

    /// Settings that would break the runtime's guarantees.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.instance_id.trim().is_empty() {
            return Err("instance_id is empty".into());
        }
        if self.blocking_timeout >= self.transaction_timeout {
            return Err(format!(
                "blocking_timeout ({:?}) must be below transaction_timeout ({:?}): a blocking call must not outlive the transaction",
                self.blocking_timeout, self.transaction_timeout
            ));
        }
        let longest_interval = self.commit_interval.max(self.max_commit_interval);
        if longest_interval >= self.transaction_timeout {
            return Err(format!(
                "the commit interval may reach {longest_interval:?}; it must stay below transaction_timeout ({:?}), or the broker aborts open transactions",
                self.transaction_timeout
            ));
        }
        Ok(())
    }

    fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in &self.client_properties {
            config.set(key, value);
        }
        config.set("bootstrap.servers", &self.bootstrap_servers);
        config
    }

    /// The stream thread's consumer and producer report librdkafka's statistics (broker
    /// round trips, queued messages) as metrics, every 5 s unless the user set another interval.
    fn with_statistics(&self, mut config: ClientConfig) -> ClientConfig {
        if !self.client_properties.contains_key(STATISTICS_INTERVAL) {
            config.set(STATISTICS_INTERVAL, "5000");
        }
        config
    }

    pub(crate) fn admin_config(&self) -> ClientConfig {
        self.base()
    }

    pub(crate) fn consumer_config(&self) -> ClientConfig {
        let mut required = vec![
            ("group.id", self.application_id.clone()),
            ("enable.auto.commit", "false".to_string()),
            ("enable.auto.offset.store", "false".to_string()),
            // Eager `range` gives partition p of every source topic to the same member when the
            // topics have equal partition counts (checked at start): a task is assigned whole.
            // Cooperative-sticky knows nothing of co-partitioning (see docs/architecture.md).
            ("partition.assignment.strategy", "range".to_string()),
        ];
        if self.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2 {
            required.push(("isolation.level", "read_committed".to_string()));
        }
        let mut config = self.with_statistics(self.base());
        config.set("auto.offset.reset", &self.auto_offset_reset);
        apply_required(&mut config, &self.client_properties, "consumer", &required);
        config
    }

    /// A group-less consumer that replays changelogs into stores. Reads `read_committed`, so
    /// aborted writes are skipped; how far it reads comes from [`Self::end_offsets_config`].
    pub(crate) fn restore_consumer_config(&self) -> ClientConfig {
        let mut config = self.base();
        let required = [
            ("group.id", format!("{}-restore", self.application_id)),
            ("enable.auto.commit", "false".to_string()),
            ("enable.partition.eof", "true".to_string()),
            ("isolation.level", "read_committed".to_string()),
            // The end of a changelog shows as an empty fetch: don't let the broker hold it 500 ms.
            ("fetch.wait.max.ms", "10".to_string()),
        ];
        apply_required(&mut config, &self.client_properties, "restore consumer", &required);
        config
    }

    /// A group-less client for changelog end offsets: `read_uncommitted`, so the end is the high
    /// watermark, not the last stable offset (KAFKA-10167). A restore that stopped at the last
    /// stable offset could miss a commit whose markers the broker has not written yet.
    pub(crate) fn end_offsets_config(&self) -> ClientConfig {
        let mut config = self.base();
        let required = [
            ("group.id", format!("{}-restore", self.application_id)),
            ("enable.auto.commit", "false".to_string()),
            ("isolation.level", "read_uncommitted".to_string()),
        ];
        apply_required(&mut config, &self.client_properties, "end-offsets client", &required);
        config
    }

    pub(crate) fn producer_config(&self) -> ClientConfig {
        // murmur2 matches Java clients (Debezium, Kafka Streams), so keys land on the same
        // partitions whoever produced them: co-partitioning depends on it.
        let mut required = vec![
            ("enable.idempotence", "true".to_string()),
            ("acks", "all".to_string()),
            ("partitioner", "murmur2_random".to_string()),
        ];
        if self.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2 {
            required.push(("transactional.id", self.transactional_id()));
            required.push(("transaction.timeout.ms", self.transaction_timeout.as_millis().to_string()));
        }
        let mut config = self.with_statistics(self.base());
        // 5 ms unless the user set it. Under exactly-once the commit flushes at once, so a longer
        // linger costs no latency of its own: it trades produce requests for a longer commit
        // (docs/benchmarks.md, "linger.ms").
        if !self.client_properties.contains_key("linger.ms") {
            config.set("linger.ms", "5");
        }
        apply_required(&mut config, &self.client_properties, "producer", &required);
        config
    }
}

/// `<host>-<pid>-<random>`: two processes started the same way on one host still differ, even
/// where `HOSTNAME` is not exported.
fn generated_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..8])
}

/// Sets what the runtime needs, warning when it overrides a value the user chose.
fn apply_required(
    config: &mut ClientConfig,
    user: &BTreeMap<String, String>,
    client: &str,
    required: &[(&str, String)],
) {
    for (key, value) in required {
        if let Some(theirs) = user.get(*key) {
            if theirs != value {
                tracing::warn!(client, key, configured = %theirs, used = %value,
                    "client property overridden: the runtime's processing guarantee depends on it");
            }
        }
        config.set(*key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_once_overrides_what_it_needs_and_passes_the_rest() {
        let config = StreamsConfig::new("app", "127.0.0.1:9092")
            .set("isolation.level", "read_uncommitted")
            .set("security.protocol", "SASL_SSL");
        let consumer = config.consumer_config();
        assert_eq!(consumer.get("isolation.level"), Some("read_committed"));
        assert_eq!(consumer.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(consumer.get("group.id"), Some("app"));
        let producer = config.producer_config();
        assert_eq!(producer.get("transactional.id"), Some(config.transactional_id().as_str()));
        assert_eq!(producer.get("security.protocol"), Some("SASL_SSL"));
    }

    #[test]
    fn generated_instance_ids_differ_within_one_process() {
        let (a, b) = (StreamsConfig::new("app", "b:9092"), StreamsConfig::new("app", "b:9092"));
        assert_ne!(a.transactional_id(), b.transactional_id());
        assert!(a.instance_id.contains(&std::process::id().to_string()), "{}", a.instance_id);
    }

    #[test]
    fn a_blocking_timeout_at_or_above_the_transaction_timeout_is_refused() {
        let mut config = StreamsConfig::new("app", "b:9092");
        assert_eq!(config.validate(), Ok(()));
        config.blocking_timeout = config.transaction_timeout;
        assert!(config.validate().unwrap_err().contains("blocking_timeout"));
    }

    #[test]
    fn a_commit_interval_that_may_reach_the_transaction_timeout_is_refused() {
        let mut config = StreamsConfig::new("app", "b:9092");
        config.max_commit_interval = config.transaction_timeout / 2;
        assert_eq!(config.validate(), Ok(()));
        config.max_commit_interval = config.transaction_timeout;
        assert!(config.validate().unwrap_err().contains("may reach"));
    }

    #[test]
    fn at_least_once_has_no_transactions() {
        let mut config = StreamsConfig::new("app", "127.0.0.1:9092");
        config.processing_guarantee = ProcessingGuarantee::AtLeastOnce;
        assert_eq!(config.producer_config().get("transactional.id"), None);
        assert_eq!(config.consumer_config().get("isolation.level"), None);
    }

    #[test]
    fn a_users_linger_stands() {
        assert_eq!(StreamsConfig::new("app", "b:9092").producer_config().get("linger.ms"), Some("5"));
        let config = StreamsConfig::new("app", "b:9092").set("linger.ms", "100");
        assert_eq!(config.producer_config().get("linger.ms"), Some("100"));
    }
}
