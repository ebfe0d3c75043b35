//! Configuration: one TOML file, every key overridable from the environment
//! (`SAGA__<SECTION>__<KEY>`), secrets from the environment or files, the local stack's addresses
//! from `dev/ports.env` unless the file names others. A bad key stops start-up with a message
//! naming it and where its value came from.

mod local_stack;
mod overrides;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use figment::providers::{Format, Toml};
use figment::Figment;
use serde::Deserialize;

use crate::components::Participant;
use overrides::Override;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub registry: RegistrySettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub http: HttpSettings,
    pub connect: ConnectSettings,
    pub saga: SagaSettings,
    pub retry: RetrySettings,
    pub order_service: OrderServiceSettings,
    pub payment: PaymentSettings,
    pub inventory: InventorySettings,
    pub shipping: ShippingSettings,
    #[serde(default)]
    pub admin: AdminSettings,
    #[serde(default)]
    pub logging: crate::logging::LoggingSettings,
    #[serde(default)]
    pub tracing: crate::otlp::TracingSettings,
    #[serde(default)]
    pub state: StateSettings,
}

/// Where the participants keep their stores' committed state (docs/state.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    /// Every store's type unless `stores` names it.
    #[serde(default)]
    pub default_store: StoreKind,
    /// By store name, in every participant that has a store of that name: `orders = "persistent"`.
    #[serde(default)]
    pub stores: HashMap<String, StoreKind>,
    /// Kafka Streams' `state.dir`: persistent stores live in `<dir>/<participant>/`. Every process
    /// on a machine needs its own (it is locked while in use). Unset: `<temp dir>/saga-pipeline-state`.
    #[serde(default)]
    pub dir: Option<std::path::PathBuf>,
    /// With a persistent store, the free space (MiB) its filesystem must keep: below it the
    /// participant stops before its next commit, saying so. Unset: the runtime's 64 MiB.
    #[serde(default)]
    pub min_free_mib: Option<u64>,
    /// With a persistent store, each participant's block cache (MiB). Unset: the runtime's 16.
    #[serde(default)]
    pub block_cache_mib: Option<u64>,
    /// With a persistent store, the writes each store (one per task) buffers in memory before
    /// flushing them to disk (MiB). Unset: the runtime's 2.
    #[serde(default)]
    pub memtable_mib: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// Restored from its changelog in full whenever its task starts.
    #[default]
    InMemory,
    /// On local disk; after a clean stop only the changelog's tail is restored.
    Persistent,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    pub partitions: i32,
    pub processing_guarantee: Guarantee,
    pub commit_interval_ms: u64,
    /// Per participant (`payment`, `inventory`, `shipping`, `order_saga`), instead of
    /// `commit_interval_ms`: shorter is less latency per hop for more transactions on the broker.
    #[serde(default)]
    pub commit_interval_ms_by_participant: HashMap<String, u64>,
    /// Makes up each participant's `transactional.id`; must differ between live instances.
    /// Unset (the default), every process generates `<host>-<pid>-<random>`.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// How long the group waits for a silent member before moving its tasks; unset: librdkafka's
    /// 45 s. Shorter means faster failover after a crash, and more rebalances on a slow host.
    #[serde(default)]
    pub session_timeout_ms: Option<u64>,
    /// The participants' producers' `linger.ms` (unset: 5). Longer means fewer produce requests
    /// on the broker and longer commits (docs/benchmarks.md, "linger.ms").
    #[serde(default)]
    pub linger_ms: Option<u64>,
    /// Above the commit interval: under load each participant's interval stretches up to this,
    /// so commits stay a fifth of its thread's time (docs/benchmarks.md, "Commit pacing").
    /// Unset: the interval is fixed.
    #[serde(default)]
    pub max_commit_interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    ExactlyOnce,
    AtLeastOnce,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    pub password: Option<String>,
    /// A file holding the password (a mounted secret); wins over `password`.
    pub password_file: Option<String>,
    pub pool_size: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// The address the order API and the admin endpoint listen on; `0.0.0.0` for every interface.
    pub bind_address: std::net::IpAddr,
    pub order_api_port: u16,
    pub admin_port: u16,
    /// Where a part run alone (`pipeline payment`, `projector`, `order-api`, …) serves its
    /// `/metrics`, `/health` and `/ready`; 0 (the default) picks a free port.
    #[serde(default)]
    pub metrics_port: u16,
    /// A directory of Prometheus file-based discovery: a part run alone announces its metrics
    /// endpoint there (`<part>-<pid>.json`) while it runs.
    #[serde(default)]
    pub metrics_targets_dir: Option<std::path::PathBuf>,
}

/// How the participants retry a record that failed transiently (docs/retries.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    pub initial_backoff_ms: u64,
    pub multiplier: u32,
    pub max_backoff_ms: u64,
    /// Attempts in all, the first included; then the record is dead-lettered.
    pub max_attempts: u32,
}

impl RetrySettings {
    pub fn policy(&self) -> operators::error::RetryPolicy {
        operators::error::RetryPolicy {
            initial_backoff: Duration::from_millis(self.initial_backoff_ms),
            multiplier: self.multiplier,
            max_backoff: Duration::from_millis(self.max_backoff_ms),
            max_attempts: self.max_attempts,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectSettings {
    pub url: String,
    pub connector_file: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SagaSettings {
    pub payment_timeout_ms: u64,
    pub inventory_timeout_ms: u64,
    pub shipping_timeout_ms: u64,
    /// Per outstanding compensation, before the participants are asked for it again.
    pub compensation_timeout_ms: u64,
    /// Requests again per compensation before the order needs a person.
    pub compensation_retries: u32,
    /// How long every participant keeps a decided order's state after its last event.
    pub order_state_retention_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderServiceSettings {
    pub snapshot_every: u32,
    pub outbox_retention_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentSettings {
    pub default_balance_cents: i64,
    #[serde(default)]
    pub balances: HashMap<String, i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventorySettings {
    pub default_stock: i64,
    #[serde(default)]
    pub stock: HashMap<String, i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingSettings {
    pub allowed_countries: Vec<String>,
    /// Shipments older than this are with the carrier and cannot be cancelled (a stand-in for
    /// the carrier's answer); unset: always cancellable.
    #[serde(default)]
    pub handover_after_ms: Option<u64>,
}

/// Operators' calls: `/admin/*` on the admin port (the DLQ) and the order service's
/// `POST /admin/orders/{id}/intervention` share one bearer token. Unset, they answer 503.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// A secret: set it through SAGA__ADMIN__TOKEN, or use `token_file`.
    #[serde(default)]
    pub token: Option<String>,
    /// A file holding the token (a mounted secret); wins over `token`.
    #[serde(default)]
    pub token_file: Option<String>,
}

/// Says whether a token is set, never what it is.
impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = if self.token.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("AdminSettings").field("token", &token).field("token_file", &self.token_file).finish()
    }
}

impl Settings {
    /// Reads `path` over the local stack's addresses, applies the `SAGA__…` variables of `env`,
    /// and validates.
    pub fn load(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        // A file that cannot be read is said to be so, not reported as a bad configuration.
        std::fs::File::open(path).with_context(|| format!("reading config file {}", path.display()))?;
        let configured = Override::all_in(&env).fold(Figment::from(Toml::file_exact(path)), Figment::merge);
        let figment = local_stack::defaults_under(&configured, &env)
            .map_err(|message| anyhow::anyhow!("bad configuration: {message}"))?
            .merge(configured);
        let settings: Settings = figment.extract().map_err(|error| explain(&figment, error))?;
        settings
            .validate()
            .map_err(|invalid| anyhow::anyhow!("{}{}", invalid.message, origin(&figment, &invalid.key)))?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), Invalid> {
        let positive = [
            ("kafka.partitions", self.kafka.partitions as i64),
            ("kafka.commit_interval_ms", self.kafka.commit_interval_ms as i64),
            ("database.pool_size", self.database.pool_size as i64),
            ("saga.payment_timeout_ms", self.saga.payment_timeout_ms as i64),
            ("saga.inventory_timeout_ms", self.saga.inventory_timeout_ms as i64),
            ("saga.shipping_timeout_ms", self.saga.shipping_timeout_ms as i64),
            ("saga.compensation_timeout_ms", self.saga.compensation_timeout_ms as i64),
            ("saga.order_state_retention_ms", self.saga.order_state_retention_ms as i64),
            ("retry.initial_backoff_ms", self.retry.initial_backoff_ms as i64),
            ("retry.multiplier", self.retry.multiplier as i64),
            ("retry.max_backoff_ms", self.retry.max_backoff_ms as i64),
            ("retry.max_attempts", self.retry.max_attempts as i64),
            ("order_service.snapshot_every", self.order_service.snapshot_every as i64),
        ];
        for (key, value) in positive {
            if value <= 0 {
                return Err(Invalid::new(key, format!("bad configuration: {key} must be positive, got {value}")));
            }
        }
        for (participant, interval) in &self.kafka.commit_interval_ms_by_participant {
            let key = format!("kafka.commit_interval_ms_by_participant.{participant}");
            if !Participant::ALL.iter().any(|known| participant_key(known.application_id()) == *participant) {
                let known: Vec<String> = Participant::ALL.iter().map(|p| participant_key(p.application_id())).collect();
                let message = format!("bad configuration: {key}: no such participant (one of {})", known.join(", "));
                return Err(Invalid::new(&key, message));
            }
            if *interval == 0 {
                return Err(Invalid::new(&key, format!("bad configuration: {key} must be positive, got 0")));
            }
        }
        if self.kafka.bootstrap_servers.trim().is_empty() {
            let key = "kafka.bootstrap_servers";
            return Err(Invalid::new(key, format!("bad configuration: {key} is empty")));
        }
        for (key, url) in [("registry.url", &self.registry.url), ("connect.url", &self.connect.url)] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Invalid::new(key, format!("bad configuration: {key} must be an http(s) URL, got {url:?}")));
            }
        }
        if !self.redis.url.starts_with("redis://") && !self.redis.url.starts_with("rediss://") {
            let key = "redis.url";
            return Err(Invalid::new(key, format!("bad configuration: {key} must start with redis:// or rediss://")));
        }
        Ok(())
    }

    /// The database password: `password_file` if set, else `password`.
    pub fn database_password(&self) -> Result<Option<String>> {
        match &self.database.password_file {
            Some(file) => std::fs::read_to_string(file)
                .map(|p| Some(p.trim_end().to_string()))
                .with_context(|| format!("database.password_file {file} cannot be read")),
            None => Ok(self.database.password.clone()),
        }
    }

    /// The operators' bearer token: `admin.token_file` if set, else `admin.token`; empty is unset.
    pub fn admin_token(&self) -> Result<Option<String>> {
        let token = match &self.admin.token_file {
            // The file's name may be logged, never its content.
            Some(file) => std::fs::read_to_string(file)
                .map(|token| token.trim_end().to_string())
                .with_context(|| format!("admin.token_file {file} cannot be read"))?,
            None => self.admin.token.clone().unwrap_or_default(),
        };
        Ok(Some(token).filter(|token| !token.is_empty()))
    }

    /// A libpq-style connection string for tokio-postgres.
    pub fn database_url(&self) -> Result<String> {
        let db = &self.database;
        let mut url = format!("host={} port={} user={} dbname={}", db.host, db.port, db.user, db.dbname);
        if let Some(password) = self.database_password()? {
            url.push_str(&format!(" password='{}'", password.replace('\\', "\\\\").replace('\'', "\\'")));
        }
        Ok(url)
    }

    /// The commit interval of the application `application_id`.
    pub fn commit_interval(&self, application_id: &str) -> Duration {
        let by_participant = self.kafka.commit_interval_ms_by_participant.get(&participant_key(application_id));
        Duration::from_millis(by_participant.copied().unwrap_or(self.kafka.commit_interval_ms))
    }

    pub fn retention(&self) -> crate::participants::retention::Retention {
        crate::participants::retention::Retention { grace: Duration::from_millis(self.saga.order_state_retention_ms) }
    }
}

/// A value its type allows and the pipeline does not.
struct Invalid {
    key: String,
    message: String,
}

impl Invalid {
    fn new(key: &str, message: String) -> Self {
        Invalid { key: key.to_string(), message }
    }
}

/// A participant's key in the settings: its application id, spelled so an environment variable
/// can name it (`order-saga` is `order_saga`).
fn participant_key(application_id: &str) -> String {
    application_id.replace('-', "_")
}

/// Every error of `error`, each with its key and where the key's value came from.
fn explain(figment: &Figment, error: figment::Error) -> anyhow::Error {
    let lines: Vec<String> = error
        .into_iter()
        .map(|error| {
            let key = error.path.join(".");
            let origin = figment.find_metadata(&key).or(error.metadata.as_ref()).map(describe_origin);
            let key = if key.is_empty() { String::new() } else { format!("{key}: ") };
            format!("bad configuration: {key}{}{}", describe(&error.kind), origin.unwrap_or_default())
        })
        .collect();
    anyhow::anyhow!(lines.join("\n"))
}

/// ` (from <the file, or the environment variable that set key>)`, if `key` has a value.
fn origin(figment: &Figment, key: &str) -> String {
    figment.find_metadata(key).map(describe_origin).unwrap_or_default()
}

fn describe_origin(metadata: &figment::Metadata) -> String {
    match &metadata.source {
        Some(source) => format!(" (from {} {source})", metadata.name),
        None => format!(" (from {})", metadata.name),
    }
}

/// figment's wording, without its nested quotes around the known names.
fn describe(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::UnknownField(_, known) => format!("unknown field, expected one of: {}", known.join(", ")),
        Kind::UnknownVariant(found, known) => format!("unknown value {found:?}, expected one of: {}", known.join(", ")),
        other => other.to_string().trim_end().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_config() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/pipeline.toml")
    }

    /// Why the shipped config with one variable set does not load.
    fn load_error(name: &str, value: &str) -> String {
        format!("{:#}", Settings::load(&repo_config(), [(name.to_string(), value.to_string())]).unwrap_err())
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
    }

    /// A copy of the shipped config with `edit` applied, as a file of its own.
    struct EditedConfig(std::path::PathBuf);

    impl EditedConfig {
        fn new(name: &str, edit: impl FnOnce(String) -> String) -> Self {
            let path = std::env::temp_dir().join(format!("saga-config-{name}-{}.toml", std::process::id()));
            std::fs::write(&path, edit(std::fs::read_to_string(repo_config()).unwrap())).unwrap();
            EditedConfig(path)
        }
    }

    impl Drop for EditedConfig {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// The default of a port, from dev/ports.env.
    fn default_port(name: &str) -> &'static str {
        local_stack::ports_env().find(|(key, _)| *key == name).map(|(_, port)| port).unwrap()
    }

    #[test]
    fn the_shipped_config_loads() {
        let settings = Settings::load(&repo_config(), []).expect("config/pipeline.toml loads");
        assert_eq!(settings.kafka.partitions, 6);
        assert_eq!(settings.saga.payment_timeout_ms, 30_000);
        assert_eq!(settings.payment.balances.get("customer-low-credit"), Some(&1000));
        assert_eq!(settings.kafka.bootstrap_servers, format!("127.0.0.1:{}", default_port("KAFKA_PORT")));
    }

    #[test]
    fn the_stack_ports_come_from_ports_env_unless_their_variables_are_set() {
        let settings = Settings::load(&repo_config(), []).unwrap();
        assert_eq!(settings.registry.url, format!("http://127.0.0.1:{}", default_port("REGISTRY_PORT")));
        assert_eq!(settings.database.port.to_string(), default_port("POSTGRES_PORT"));
        assert_eq!(settings.redis.url, format!("redis://127.0.0.1:{}/", default_port("REDIS_PORT")));
        assert_eq!(settings.connect.url, format!("http://127.0.0.1:{}", default_port("CONNECT_PORT")));
        assert_eq!(settings.http.order_api_port.to_string(), default_port("ORDER_API_PORT"));
        assert_eq!(settings.http.admin_port.to_string(), default_port("ADMIN_PORT"));

        let env = vars(&[
            ("KAFKA_PORT", "19092"),
            ("REGISTRY_PORT", "18081"),
            ("POSTGRES_PORT", "15432"),
            ("REDIS_PORT", "16379"),
            ("CONNECT_PORT", "18083"),
            ("ORDER_API_PORT", "18080"),
            ("ADMIN_PORT", "19100"),
        ]);
        let settings = Settings::load(&repo_config(), env).unwrap();
        assert_eq!(settings.kafka.bootstrap_servers, "127.0.0.1:19092");
        assert_eq!(settings.registry.url, "http://127.0.0.1:18081");
        assert_eq!(settings.database.port, 15432);
        assert!(settings.database_url().unwrap().starts_with("host=127.0.0.1 port=15432 "));
        assert_eq!(settings.redis.url, "redis://127.0.0.1:16379/");
        assert_eq!(settings.connect.url, "http://127.0.0.1:18083");
        assert_eq!((settings.http.order_api_port, settings.http.admin_port), (18080, 19100));

        let empty = Settings::load(&repo_config(), vars(&[("KAFKA_PORT", "")])).unwrap();
        assert_eq!(
            empty.kafka.bootstrap_servers,
            format!("127.0.0.1:{}", default_port("KAFKA_PORT")),
            "empty is unset, as in dev/lib/common.sh"
        );
        let error = load_error("KAFKA_PORT", "kafka");
        assert!(error.contains("KAFKA_PORT=\"kafka\" is not a port number"), "{error}");
    }

    #[test]
    fn a_stack_address_set_in_the_file_or_a_saga_variable_wins_over_its_port() {
        let env = vars(&[("KAFKA_PORT", "19092"), ("SAGA__KAFKA__BOOTSTRAP_SERVERS", "broker:9092")]);
        assert_eq!(Settings::load(&repo_config(), env).unwrap().kafka.bootstrap_servers, "broker:9092");

        let config = EditedConfig::new("servers", |text| {
            text.replace("[kafka]\n", "[kafka]\nbootstrap_servers = \"broker-1:9092\"\n")
        });
        let settings = Settings::load(&config.0, vars(&[("KAFKA_PORT", "19092")])).unwrap();
        assert_eq!(settings.kafka.bootstrap_servers, "broker-1:9092");
    }

    #[test]
    fn a_port_variable_of_another_meaning_is_not_read_when_its_address_is_set() {
        // What Kubernetes sets for a service named kafka; the deployment names its brokers itself.
        let env = vars(&[("KAFKA_PORT", "tcp://10.0.0.7:9092"), ("SAGA__KAFKA__BOOTSTRAP_SERVERS", "kafka.prod:9092")]);
        let settings = Settings::load(&repo_config(), env).expect("KAFKA_PORT is not needed here");
        assert_eq!(settings.kafka.bootstrap_servers, "kafka.prod:9092");
    }

    #[test]
    fn environment_overrides_any_key() {
        let env = [
            ("SAGA__KAFKA__BOOTSTRAP_SERVERS".to_string(), "broker:9999".to_string()),
            ("SAGA__SAGA__PAYMENT_TIMEOUT_MS".to_string(), "5".to_string()),
            ("SAGA__PAYMENT__BALANCES__ALICE".to_string(), "42".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let settings = Settings::load(&repo_config(), env).unwrap();
        assert_eq!(settings.kafka.bootstrap_servers, "broker:9999");
        assert_eq!(settings.saga.payment_timeout_ms, 5);
        assert_eq!(settings.payment.balances.get("alice"), Some(&42));
        assert_eq!(
            settings.payment.balances.get("customer-low-credit"),
            Some(&1000),
            "a variable adds to a table of the file"
        );
    }

    #[test]
    fn a_bad_key_is_named() {
        let error = load_error("SAGA__KAFKA__PARTITIONS", "\"many\"");
        assert!(error.contains("kafka.partitions"), "{error}");
        assert!(error.contains("from environment variable SAGA__KAFKA__PARTITIONS"), "{error}");

        let error = load_error("SAGA__KAFKA__BOOTSTRAP", "x");
        assert!(error.contains("kafka.bootstrap: unknown field"), "{error}");
        assert!(error.contains("from environment variable SAGA__KAFKA__BOOTSTRAP"), "{error}");

        let error = load_error("SAGA__KAFKA__COMMIT_INTERVAL_MS", "0");
        assert!(error.contains("kafka.commit_interval_ms"), "{error}");
        assert!(error.contains("from environment variable SAGA__KAFKA__COMMIT_INTERVAL_MS"), "{error}");

        let error = load_error("SAGA__KAFKA____PARTITIONS", "6");
        assert!(error.contains("malformed key (from environment variable SAGA__KAFKA____PARTITIONS)"), "{error}");
    }

    #[test]
    fn a_bad_key_in_the_file_is_named_with_the_file() {
        let config = EditedConfig::new("bad-value", |text| text.replace("partitions = 6", "partitions = \"six\""));
        let error = format!("{:#}", Settings::load(&config.0, []).unwrap_err());
        assert!(error.contains("kafka.partitions"), "{error}");
        assert!(error.contains(&format!("from TOML file {}", config.0.display())), "{error}");

        let config = EditedConfig::new("unknown-key", |text| text.replace("[shipping]\n", "[shipping]\ncolour = 1\n"));
        let error = format!("{:#}", Settings::load(&config.0, []).unwrap_err());
        assert!(error.contains("shipping.colour: unknown field"), "{error}");
        assert!(error.contains(&format!("from TOML file {}", config.0.display())), "{error}");

        let config = EditedConfig::new("retries", |text| text.replace("max_attempts = 5", "max_attempts = 0"));
        let error = format!("{:#}", Settings::load(&config.0, []).unwrap_err());
        assert!(error.contains("retry.max_attempts must be positive, got 0"), "{error}");
        assert!(error.contains(&format!("from TOML file {}", config.0.display())), "{error}");

        let error = format!("{:#}", Settings::load(Path::new("/nonexistent/pipeline.toml"), []).unwrap_err());
        assert!(error.contains("reading config file /nonexistent/pipeline.toml"), "{error}");
    }

    #[test]
    fn a_participant_may_commit_at_an_interval_of_its_own() {
        let env = [
            ("SAGA__KAFKA__COMMIT_INTERVAL_MS".to_string(), "80".to_string()),
            ("SAGA__KAFKA__COMMIT_INTERVAL_MS_BY_PARTICIPANT__ORDER_SAGA".to_string(), "20".to_string()),
        ];
        let settings = Settings::load(&repo_config(), env).unwrap();
        assert_eq!(settings.commit_interval("order-saga"), Duration::from_millis(20));
        assert_eq!(
            settings.commit_interval("payment"),
            Duration::from_millis(80),
            "the others keep kafka.commit_interval_ms"
        );

        let error = load_error("SAGA__KAFKA__COMMIT_INTERVAL_MS_BY_PARTICIPANT__BILLING", "20");
        assert!(error.contains("commit_interval_ms_by_participant.billing: no such participant"), "{error}");
        let error = load_error("SAGA__KAFKA__COMMIT_INTERVAL_MS_BY_PARTICIPANT__PAYMENT", "0");
        assert!(error.contains("commit_interval_ms_by_participant.payment must be positive"), "{error}");
    }

    #[test]
    fn stores_are_in_memory_unless_made_persistent_by_default_or_by_name() {
        let shipped = Settings::load(&repo_config(), []).unwrap();
        assert_eq!(shipped.state.default_store, StoreKind::InMemory);
        let env = [
            ("SAGA__STATE__STORES__ORDERS".to_string(), "\"persistent\"".to_string()),
            ("SAGA__STATE__DIR".to_string(), "\"/var/lib/saga\"".to_string()),
        ];
        let settings = Settings::load(&repo_config(), env).unwrap();
        assert_eq!(settings.state.stores.get("orders"), Some(&StoreKind::Persistent));
        assert_eq!(settings.state.dir.as_deref(), Some(Path::new("/var/lib/saga")));

        let error = load_error("SAGA__STATE__DEFAULT_STORE", "\"rocks\"");
        assert!(error.contains("state.default_store"), "{error}");
    }

    #[test]
    fn the_admin_token_comes_from_the_environment_or_a_file() {
        assert_eq!(
            Settings::load(&repo_config(), []).unwrap().admin_token().unwrap(),
            None,
            "unset in the shipped config"
        );
        let env = [("SAGA__ADMIN__TOKEN".to_string(), "t0ken".to_string())];
        assert_eq!(Settings::load(&repo_config(), env).unwrap().admin_token().unwrap().as_deref(), Some("t0ken"));

        let file = std::env::temp_dir().join(format!("saga-admin-token-{}", std::process::id()));
        std::fs::write(&file, "from-file\n").unwrap();
        let env = [
            ("SAGA__ADMIN__TOKEN".to_string(), "t0ken".to_string()),
            ("SAGA__ADMIN__TOKEN_FILE".to_string(), file.display().to_string()),
        ];
        assert_eq!(Settings::load(&repo_config(), env).unwrap().admin_token().unwrap().as_deref(), Some("from-file"));
        let _ = std::fs::remove_file(file);

        let digits = [("SAGA__ADMIN__TOKEN".to_string(), "0123".to_string())];
        assert_eq!(
            Settings::load(&repo_config(), digits).unwrap().admin_token().unwrap().as_deref(),
            Some("0123"),
            "a secret is taken as given"
        );
        let env = [("SAGA__ADMIN__TOKEN".to_string(), "t0ken".to_string())];
        let printed = format!("{:?}", Settings::load(&repo_config(), env).unwrap());
        assert!(!printed.contains("t0ken"), "the token never prints: {printed}");
        let empty = [("SAGA__ADMIN__TOKEN".to_string(), String::new())];
        assert_eq!(Settings::load(&repo_config(), empty).unwrap().admin_token().unwrap(), None, "empty is unset");
    }

    #[test]
    fn password_file_wins() {
        let file = std::env::temp_dir().join(format!("saga-pw-{}", std::process::id()));
        std::fs::write(&file, "s3cret\n").unwrap();
        let env = [("SAGA__DATABASE__PASSWORD_FILE".to_string(), file.display().to_string())];
        let settings = Settings::load(&repo_config(), env).unwrap();
        assert!(settings.database_url().unwrap().contains("password='s3cret'"));
        let _ = std::fs::remove_file(file);
    }
}
