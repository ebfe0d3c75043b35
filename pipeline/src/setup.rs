//! Start-up chores: the saga topics (created explicitly; automatic creation is off), schema
//! registration and the Debezium outbox connector.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;
use serde_json::{json, Value};

use crate::settings::Settings;

/// The saga's topics, each with its dead-letter topic.
pub const SAGA_TOPICS: [&str; 4] =
    [schemas::ORDER_EVENTS, schemas::PAYMENT_EVENTS, schemas::INVENTORY_EVENTS, schemas::SHIPPING_EVENTS];

pub async fn create_topics(settings: &Settings) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &settings.kafka.bootstrap_servers).create()?;
    let names: Vec<String> = SAGA_TOPICS.iter().flat_map(|t| [t.to_string(), format!("{t}.dlq")]).collect();
    let topics: Vec<NewTopic> =
        names.iter().map(|n| NewTopic::new(n, settings.kafka.partitions, TopicReplication::Fixed(-1))).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(topics.iter(), &options)
        .await
        .with_context(|| format!("creating topics at {}", settings.kafka.bootstrap_servers))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!("creating topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// Creates or updates the outbox connector (PUT is idempotent), pointing it at our database.
/// The password is not ours to send: the connector file names it as `${env:…}`, which the
/// Connect worker resolves from its own environment (a config provider), so no API shows it.
pub async fn register_connector(settings: &Settings) -> Result<()> {
    let text = std::fs::read_to_string(&settings.connect.connector_file)
        .with_context(|| format!("reading connect.connector_file {}", settings.connect.connector_file))?;
    let connector: Value = serde_json::from_str(&text).context("connector file is not JSON")?;
    let name = connector["name"].as_str().context("connector file has no name")?.to_string();
    let mut config = connector["config"].clone();
    let db = &settings.database;
    let overrides = json!({
        "database.hostname": db.host,
        "database.port": db.port.to_string(),
        "database.user": db.user,
        "database.dbname": db.dbname,
    });
    for (key, value) in overrides.as_object().expect("object literal") {
        config[key] = value.clone();
    }
    let url = format!("{}/connectors/{name}/config", settings.connect.url);
    let response = reqwest::Client::new()
        .put(&url)
        .json(&config)
        .send()
        .await
        .with_context(|| format!("Kafka Connect at {} is unreachable", settings.connect.url))?;
    if !response.status().is_success() {
        let status = response.status();
        bail!("Kafka Connect refused connector {name} ({status}): {}", response.text().await.unwrap_or_default());
    }
    wait_until_running(settings, &name).await
}

async fn wait_until_running(settings: &Settings, name: &str) -> Result<()> {
    let url = format!("{}/connectors/{name}/status", settings.connect.url);
    let mut last = Value::Null;
    for _ in 0..120 {
        if let Ok(response) = reqwest::get(&url).await {
            last = response.json().await.unwrap_or(Value::Null);
            match last["tasks"][0]["state"].as_str() {
                Some("RUNNING") => return Ok(()),
                Some("FAILED") => bail!("connector {name} failed: {}", last["tasks"][0]["trace"]),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("connector {name} did not start within 60 s: {last}")
}
