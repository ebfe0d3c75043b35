//! Starts each part of the pipeline from the settings. `pipeline all` runs every one in one
//! process; each subcommand runs one, so they can also be deployed apart.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use deadpool_postgres::Pool;
use operators::error::ErrorPolicy;
use operators::runtime::{retry_lane_topics, KafkaStreams, ProcessingGuarantee, StoreType, StreamsConfig};
use operators::topology::Topology;
use schemas::{RegistryResolver, SagaCodec};

use crate::admin::auth::AdminToken;
use crate::admin::lag::WatchedGroup;
use crate::event_serde::EventSerde;
use crate::participants::{inventory, order_saga, payment, shipping};
use crate::settings::{Guarantee, Settings, StoreKind};
use crate::{admin, db, dlq, openapi, order_service, projector, setup};

/// The saga participants, by the name their subcommand and application id use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Participant {
    Payment,
    Inventory,
    Shipping,
    OrderSaga,
}

impl Participant {
    pub const ALL: [Participant; 4] =
        [Participant::Payment, Participant::Inventory, Participant::Shipping, Participant::OrderSaga];

    pub fn application_id(self) -> &'static str {
        match self {
            Participant::Payment => "payment",
            Participant::Inventory => "inventory",
            Participant::Shipping => "shipping",
            Participant::OrderSaga => "order-saga",
        }
    }
}

/// The saga's one codec, every current schema's id looked up already: a missing schema stops
/// start-up here, with what to run. Clones share its cache.
pub async fn saga_codec(settings: &Settings) -> Result<SagaCodec> {
    let registry = schemas::RegistryClient::new(&settings.registry.url).context("registry.url")?;
    let resolver = RegistryResolver::prepare(registry)
        .await
        .with_context(|| format!("looking up the saga schemas at {}", settings.registry.url))?;
    Ok(SagaCodec::new(resolver))
}

pub fn topology(participant: Participant, settings: &Settings, serde: EventSerde) -> Result<Topology> {
    Ok(match participant {
        Participant::Payment => payment::topology(
            serde,
            &payment::PaymentConfig {
                initial_balances: settings.payment.balances.clone(),
                default_balance_cents: settings.payment.default_balance_cents,
                retention: settings.retention(),
                ..Default::default()
            },
        ),
        Participant::Inventory => inventory::topology(
            serde,
            &inventory::InventoryConfig {
                initial_stock: settings.inventory.stock.clone(),
                default_stock: settings.inventory.default_stock,
                retention: settings.retention(),
                ..Default::default()
            },
        ),
        Participant::Shipping => shipping::topology(
            serde,
            &shipping::ShippingConfig {
                handover_after: settings.shipping.handover_after_ms.map(Duration::from_millis),
                retention: settings.retention(),
                ..shipping::ShippingConfig::new(
                    settings.database_url()?,
                    settings.redis.url.clone(),
                    settings.shipping.allowed_countries.clone(),
                )
            },
        )
        .context("starting shipping")?,
        Participant::OrderSaga => order_saga::topology(
            serde,
            &order_saga::SagaConfig {
                payment_timeout: Duration::from_millis(settings.saga.payment_timeout_ms),
                inventory_timeout: Duration::from_millis(settings.saga.inventory_timeout_ms),
                shipping_timeout: Duration::from_millis(settings.saga.shipping_timeout_ms),
                compensation_timeout: Duration::from_millis(settings.saga.compensation_timeout_ms),
                compensation_retries: settings.saga.compensation_retries,
                retention: settings.retention(),
                ..Default::default()
            },
        ),
    })
}

/// Starts a participant's topology on the exactly-once runtime (or at-least-once if configured).
fn start_participant(participant: Participant, settings: &Settings, serde: EventSerde) -> Result<KafkaStreams> {
    let topology = topology(participant, settings, serde)?;
    let config = streams_config(participant, settings);
    let listener = admin::health::listener(participant.application_id());
    let streams =
        KafkaStreams::start_with_state_listener(topology, config, prometheus::default_registry(), Some(listener))
            .with_context(|| format!("starting {}", participant.application_id()))?;
    admin::health::watch_dependencies(participant.application_id(), streams.health());
    Ok(streams)
}

/// `state.stores` may only name stores some participant has: a typo would silently keep a store
/// in memory.
fn check_state_stores(settings: &Settings, serde: &EventSerde) -> Result<()> {
    // Built and dropped on a thread of their own: shipping's topology owns a blocking client with
    // a runtime inside, which must not be dropped on the async runtime `run_participants` runs on.
    let known = std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<std::collections::BTreeSet<String>> {
                let mut known = std::collections::BTreeSet::new();
                for participant in Participant::ALL {
                    known.extend(topology(participant, settings, serde.clone())?.store_names().map(str::to_owned));
                }
                Ok(known)
            })
            .join()
            .map_err(|_| anyhow::anyhow!("building the participants' topologies to check state.stores panicked"))?
    })?;
    let mut named: Vec<&String> = settings.state.stores.keys().collect();
    named.sort();
    match named.into_iter().find(|store| !known.iter().any(|known| store_key(known) == store_key(store))) {
        Some(store) => anyhow::bail!(
            "bad configuration: state.stores.{store}: no such store (the participants' stores: {})",
            known.into_iter().collect::<Vec<_>>().join(", ")
        ),
        None => Ok(()),
    }
}

/// A store's name as a settings key may spell it.
fn store_key(name: &str) -> String {
    name.replace('-', "_")
}

fn streams_config(participant: Participant, settings: &Settings) -> StreamsConfig {
    let mut config = StreamsConfig::new(participant.application_id(), settings.kafka.bootstrap_servers.as_str());
    config.commit_interval = settings.commit_interval(participant.application_id());
    if let Some(max_ms) = settings.kafka.max_commit_interval_ms {
        config.max_commit_interval = Duration::from_millis(max_ms);
    }
    config.error_policy = ErrorPolicy::Retry(settings.retry.policy());
    config.processing_guarantee = match settings.kafka.processing_guarantee {
        Guarantee::ExactlyOnce => ProcessingGuarantee::ExactlyOnceV2,
        Guarantee::AtLeastOnce => ProcessingGuarantee::AtLeastOnce,
    };
    if let Some(instance_id) = &settings.kafka.instance_id {
        config.instance_id = instance_id.clone();
    }
    let store_type = |kind: StoreKind| match kind {
        StoreKind::InMemory => StoreType::InMemory,
        StoreKind::Persistent => StoreType::Persistent,
    };
    config.default_store_type = store_type(settings.state.default_store);
    // An environment variable cannot spell `order-lifecycles`: `ORDER_LIFECYCLES` names it too.
    config.store_types = settings
        .state
        .stores
        .iter()
        .flat_map(|(store, kind)| [(store.clone(), store_type(*kind)), (store.replace('_', "-"), store_type(*kind))])
        .collect();
    config.state_dir = settings.state.dir.clone().unwrap_or_else(|| std::env::temp_dir().join("saga-pipeline-state"));
    if let Some(mib) = settings.state.min_free_mib {
        config.state_dir_min_free_bytes = mib.saturating_mul(1024 * 1024);
    }
    if let Some(mib) = settings.state.block_cache_mib {
        config.persistent_memory.block_cache_bytes = mib.saturating_mul(1024 * 1024);
    }
    if let Some(mib) = settings.state.memtable_mib {
        config.persistent_memory.memtable_bytes = mib.max(1).saturating_mul(1024 * 1024);
    }
    if let Some(session_timeout_ms) = settings.kafka.session_timeout_ms {
        // librdkafka wants heartbeats well inside the session.
        config = config
            .set("session.timeout.ms", session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", (session_timeout_ms / 3).max(1).to_string());
    }
    if let Some(linger_ms) = settings.kafka.linger_ms {
        config = config.set("linger.ms", linger_ms.to_string());
    }
    config
}

/// The database pool, with every migration applied: each part that uses PostgreSQL starts here.
pub async fn database(settings: &Settings) -> Result<Pool> {
    let pool = db::pool(&settings.database_url()?, settings.database.pool_size)?;
    db::migrate(&pool).await?;
    Ok(pool)
}

/// Topics and the outbox connector: what the parts expect to exist besides the database.
pub async fn prepare(settings: &Settings) -> Result<()> {
    setup::create_topics(settings).await?;
    register_schemas(settings).await?;
    setup::register_connector(settings).await
}

/// Tries of a one-off registry command (setup, `schemas check`/`register`): a registry that has
/// just started can time out its first calls.
pub const REGISTRY_ATTEMPTS: u32 = 5;

/// Every version of every saga event's schema, in order, under its subject's compatibility
/// level (`schemas/avro/compatibility.toml`).
pub async fn register_schemas(settings: &Settings) -> Result<Vec<schemas::Registered>> {
    let registry =
        schemas::RegistryClient::new(&settings.registry.url).context("registry.url")?.retrying(REGISTRY_ATTEMPTS);
    schemas::register_all(&registry)
        .await
        .with_context(|| format!("registering the saga schemas at {}", settings.registry.url))
}

/// What the order API port serves: the commands, the read model's queries, and their OpenAPI
/// document.
pub fn order_api_router(service: order_service::OrderService, pool: Pool) -> axum::Router {
    order_service::routes(service).merge(projector::query_routes(pool)).merge(openapi::routes(openapi::order_api()))
}

/// What the admin port serves: `/metrics`, `/health`, `/ready`, the DLQ's `/admin/dlq` routes,
/// and their OpenAPI document.
pub fn admin_router(dlq: dlq::DlqAdmin, token: AdminToken) -> axum::Router {
    admin::routes().merge(dlq::routes(dlq, token)).merge(openapi::routes(openapi::admin_api()))
}

/// The command side (POST) and the query side (GET) on the order API port.
pub async fn serve_order_api(settings: &Settings, pool: Pool, codec: SagaCodec) -> Result<()> {
    let redis = redis::Client::open(settings.redis.url.as_str()).context("redis.url")?;
    let redis = redis::aio::ConnectionManager::new(redis)
        .await
        .with_context(|| format!("connecting to Redis at {}", settings.redis.url))?;
    let service = order_service::OrderService::new(pool.clone(), redis, codec, settings.order_service.snapshot_every)
        .with_admin_token(settings.admin_token()?);
    tokio::spawn(order_service::run_outbox_sweeper(
        pool.clone(),
        Duration::from_secs(settings.order_service.outbox_retention_s),
        Duration::from_secs(60),
    ));
    serve(order_api_router(service, pool), settings.http.bind_address, settings.http.order_api_port, "order API").await
}

pub async fn run_projector(
    settings: &Settings,
    pool: Pool,
    codec: SagaCodec,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    projector::run_projector(
        projector::ProjectorConfig::new(settings.kafka.bootstrap_servers.clone()),
        codec,
        pool,
        shutdown,
    )
    .await
}

/// `pipeline projector rebuild`: progress on stderr, the summary on stdout.
pub async fn rebuild_read_model(
    settings: &Settings,
    pool: Pool,
    codec: SagaCodec,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let config = projector::ProjectorConfig::new(settings.kafka.bootstrap_servers.clone());
    let summary = projector::rebuild_read_model(&config, &codec, &pool, |line| eprintln!("{line}"), shutdown).await?;
    println!("{summary}");
    Ok(())
}

/// The admin endpoint ([`serve_admin_http`]) and the DLQ indexer.
pub async fn serve_admin(
    settings: &Settings,
    pool: Pool,
    codec: SagaCodec,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let indexer =
        dlq::run_indexer(dlq::IndexerConfig::new(settings.kafka.bootstrap_servers.clone()), pool.clone(), shutdown);
    tokio::select! {
        result = indexer => result.context("DLQ indexer"),
        result = serve_admin_http(settings, pool, codec) => result,
    }
}

/// The admin port: `/metrics` (with the consumer-lag exporter for every group of the pipeline),
/// `/health`, `/ready`, and the DLQ's `/admin/dlq` routes (with their transactional producer).
/// Joins no consumer group: the DLQ indexer is [`serve_admin`]'s.
pub async fn serve_admin_http(settings: &Settings, pool: Pool, codec: SagaCodec) -> Result<()> {
    // On a blocking thread: shipping's topology owns a runtime of its own (its database
    // client), which may not be dropped inside this async context.
    let groups = {
        let (settings, serde) = (settings.clone(), EventSerde::new(codec.clone()));
        tokio::task::spawn_blocking(move || watched_groups(&settings, &serde))
            .await
            .context("listing the consumer groups")??
    };
    tokio::spawn(admin::lag::run(settings.kafka.bootstrap_servers.clone(), groups, Duration::from_secs(5)));
    tokio::spawn(dlq::run_pending_gauge(pool.clone(), Duration::from_secs(5)));
    tokio::spawn(projector::run_parked_gauge(pool.clone(), Duration::from_secs(5)));

    // Unique per live process, like the participants' (the runtime's generator when unset).
    let instance_id =
        settings.kafka.instance_id.clone().unwrap_or_else(|| StreamsConfig::new("dlq-admin", "").instance_id);
    let republisher = dlq::Republisher::new(&settings.kafka.bootstrap_servers, &format!("dlq-admin-{instance_id}"));
    let token = AdminToken::new(settings.admin_token()?);
    let app = admin_router(dlq::DlqAdmin::new(pool, codec, republisher), token);
    serve(app, settings.http.bind_address, settings.http.admin_port, "admin endpoint").await
}

/// Every consumer group of the pipeline and the topics it reads, repartition topics and retry
/// lanes included: each participant's from its topology, and the projector's from its configuration. Blocking:
/// building shipping's topology builds (and dropping it drops) its database client's runtime.
pub fn watched_groups(settings: &Settings, serde: &EventSerde) -> Result<Vec<WatchedGroup>> {
    let mut groups = Participant::ALL
        .iter()
        .map(|&participant| {
            let topology = topology(participant, settings, serde.clone())?;
            let mut topics = topology.source_topics();
            topics.extend(retry_lane_topics(&streams_config(participant, settings), &topology));
            Ok(WatchedGroup { group: topology.application_id().to_string(), topics })
        })
        .collect::<Result<Vec<_>>>()?;
    let projector = projector::ProjectorConfig::new(settings.kafka.bootstrap_servers.clone());
    groups.push(WatchedGroup { group: projector.group_id, topics: projector.topics });
    Ok(groups)
}

/// Both HTTP ports and nothing else: no participant, projector or DLQ indexer, so no consumer
/// group is joined and no saga topic is read (the APIs can be fuzzed beside a running pipeline).
/// Until `shutdown` resolves or a port fails.
pub async fn serve_apis(
    settings: &Settings,
    pool: Pool,
    codec: SagaCodec,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    tokio::select! {
        () = shutdown => Ok(()),
        result = serve_order_api(settings, pool.clone(), codec.clone()) => result.context("order API"),
        result = serve_admin_http(settings, pool, codec) => result.context("admin endpoint"),
    }
}

async fn serve(app: axum::Router, ip: std::net::IpAddr, port: u16, what: &str) -> Result<()> {
    let address = SocketAddr::new(ip, port);
    let listener =
        tokio::net::TcpListener::bind(address).await.with_context(|| format!("{what}: cannot listen on {address}"))?;
    tracing::info!(%address, "{what} listening");
    axum::serve(listener, app).await.with_context(|| format!("{what} stopped"))
}

/// `part` run alone, with its own metrics endpoint (`http.metrics_port`) for as long as it runs.
pub async fn with_process_metrics(
    settings: &Settings,
    part: &str,
    run: impl std::future::Future<Output = Result<()>>,
) -> Result<()> {
    let http = &settings.http;
    let metrics = admin::process_metrics::serve_process_metrics(
        http.bind_address,
        http.metrics_port,
        http.metrics_targets_dir.as_deref(),
        part,
    );
    tokio::select! {
        result = run => result,
        result = metrics => result,
    }
}

/// Every part in one process until `shutdown` resolves or one part fails.
/// The pool and the saga codec are made once and shared by every part.
pub async fn run_all(settings: &Settings, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let pool = database(settings).await?;
    prepare(settings).await?;
    let codec = saga_codec(settings).await?;
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    tokio::select! {
        result = run_participants(settings, &Participant::ALL, codec.clone(), shutdown.clone()) => result.context("participants"),
        result = serve_order_api(settings, pool.clone(), codec.clone()) => result.context("order API"),
        result = serve_admin(settings, pool.clone(), codec.clone(), shutdown.clone()) => result.context("admin endpoint"),
        result = run_projector(settings, pool, codec, shutdown.clone()) => result.context("projector"),
    }
}

/// Runs participants until `shutdown` (clean close) or until one stops on a fatal error (an
/// error, after closing the others). A stream thread stalled in a client call cannot be closed:
/// then this returns at once with an error, and the process exits for its supervisor to restart
/// it (its open transaction never commits, so nothing is lost or doubled).
pub async fn run_participants(
    settings: &Settings,
    which: &[Participant],
    codec: SagaCodec,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let serde = EventSerde::new(codec);
    // Once per process, before any participant starts: it builds every participant's topology.
    check_state_stores(settings, &serde)?;
    let mut running = Vec::new();
    for participant in which {
        running.push((*participant, start_participant(*participant, settings, serde.clone())?));
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if running.iter().any(|(_, streams)| streams.is_finished()) {
                    break;
                }
                let stalled = running.iter().find_map(|(p, streams)| Some((*p, streams.health().stalled_for().filter(|s| *s > admin::health::STALL_LIMIT)?)));
                if let Some((participant, stalled)) = stalled {
                    // Dropping a handle would wait for the stuck thread forever.
                    std::mem::forget(running);
                    anyhow::bail!("{}: its stream thread has shown no sign of life for {} s (a client call that never returns); exiting so that it is restarted", participant.application_id(), stalled.as_secs());
                }
            }
        }
    }
    let mut failure = None;
    for (participant, streams) in running {
        let outcome =
            tokio::task::spawn_blocking(move || if streams.is_finished() { streams.join() } else { streams.close() })
                .await?;
        if let Err(e) = outcome {
            failure.get_or_insert(anyhow::anyhow!("{} stopped: {e}", participant.application_id()));
        }
    }
    failure.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(env: &[(&str, &str)]) -> Settings {
        let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/pipeline.toml");
        Settings::load(&config, env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn the_shipped_config_paces_every_participants_commits() {
        let shipped = settings(&[]);
        for participant in Participant::ALL {
            let config = streams_config(participant, &shipped);
            assert_eq!(
                (config.commit_interval, config.max_commit_interval),
                (Duration::from_millis(25), Duration::from_millis(250)),
                "{}",
                participant.application_id()
            );
        }
    }

    #[test]
    fn the_state_settings_reach_every_participants_runtime() {
        let by_name = settings(&[
            ("SAGA__STATE__STORES__ORDERS", "persistent"),
            ("SAGA__STATE__DIR", "/srv/state"),
            ("SAGA__STATE__MIN_FREE_MIB", "10"),
            ("SAGA__STATE__BLOCK_CACHE_MIB", "8"),
            ("SAGA__STATE__MEMTABLE_MIB", "1"),
        ]);
        let config = streams_config(Participant::Shipping, &by_name);
        assert_eq!(config.store_type("orders"), StoreType::Persistent);
        assert_eq!(config.store_type("order-lifecycles"), StoreType::InMemory);
        assert_eq!(config.state_dir, std::path::PathBuf::from("/srv/state"));
        assert_eq!(config.state_dir_min_free_bytes, 10 * 1024 * 1024);
        let memory = operators::store::PersistentMemory { block_cache_bytes: 8 << 20, memtable_bytes: 1 << 20 };
        assert_eq!(config.persistent_memory, memory);
        check_state_stores(&by_name, &EventSerde::with_fixed_ids()).expect("orders is a store");

        let underscored = settings(&[("SAGA__STATE__STORES__ORDER_LIFECYCLES", "persistent")]);
        assert_eq!(
            streams_config(Participant::Shipping, &underscored).store_type("order-lifecycles"),
            StoreType::Persistent
        );
        check_state_stores(&underscored, &EventSerde::with_fixed_ids())
            .expect("ORDER_LIFECYCLES names order-lifecycles");
    }

    /// `run_participants` runs on the async runtime, where dropping a runtime panics.
    #[tokio::test]
    async fn the_state_stores_are_checked_from_async_code_too() {
        check_state_stores(&settings(&[]), &EventSerde::with_fixed_ids())
            .expect("the shipped config names no unknown store");
    }

    #[test]
    fn a_state_store_no_participant_has_is_refused_with_its_key() {
        let settings = settings(&[("SAGA__STATE__STORES__ORDRES", "\"persistent\"")]);
        let error = check_state_stores(&settings, &EventSerde::with_fixed_ids()).unwrap_err().to_string();
        assert!(error.contains("state.stores.ordres: no such store"), "{error}");
        assert!(error.contains("orders"), "the known stores are listed: {error}");
    }
}
