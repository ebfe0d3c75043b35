//! Debezium: a row inserted into a Postgres outbox table becomes a Kafka record on the routed
//! topic, keyed by the aggregate id, with the payload bytes untouched and the event id and type
//! as headers. Uses the project's own connector config (connectors/debezium/order-outbox.json)
//! and outbox migration, pointed at a schema of its own.

use std::time::{Duration, Instant};

use integration_tests::kafka::{create_topic, read_topic};
use integration_tests::stack::{connect_url, kafka_bootstrap, postgres_config, repo_root, unique};
use serde_json::{json, Value};

struct Cleanup {
    connect: String,
    connector: String,
    slot: String,
    publication: String,
    schema: String,
}

impl Cleanup {
    async fn run(self, db: &tokio_postgres::Client) {
        let _ = reqwest::Client::new().delete(format!("{}/connectors/{}", self.connect, self.connector)).send().await;
        // The slot stays active until the task has stopped; retry briefly.
        for _ in 0..40 {
            let dropped = db
                .execute("select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1 and not active", &[&self.slot])
                .await;
            let remaining = db
                .query_one("select count(*) from pg_replication_slots where slot_name = $1", &[&self.slot])
                .await
                .map(|row| row.get::<_, i64>(0))
                .unwrap_or(0);
            if dropped.is_ok() && remaining == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let _ = db.batch_execute(&format!("drop publication if exists {}", self.publication)).await;
        let _ = db.batch_execute(&format!("drop schema if exists {} cascade", self.schema)).await;
    }
}

async fn connector_state(connect: &str, name: &str) -> Value {
    reqwest::get(format!("{connect}/connectors/{name}/status"))
        .await
        .expect("connect status")
        .json()
        .await
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn outbox_insert_becomes_a_keyed_kafka_record() {
    let bootstrap = kafka_bootstrap();
    let connect = connect_url();
    let (db, connection) = tokio_postgres::connect(&postgres_config(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("postgres is down or refuses the saga user: {e} (`dev/stack status`)"));
    tokio::spawn(connection);

    let id = unique("smoke");
    let schema = id.clone();
    let aggregate_type = id.replace('_', "");
    let topic = format!("{aggregate_type}.events");
    create_topic(&bootstrap, &topic, 1).await;

    let migration = ["0001_outbox.sql", "0008_outbox_aggregate_version.sql"]
        .map(|file| std::fs::read_to_string(repo_root().join("connectors/migrations").join(file)).unwrap())
        .join("\n");
    db.batch_execute(&format!("create schema {schema}; set search_path to {schema}; {migration}; reset search_path"))
        .await
        .expect("apply the outbox migration in the test schema");

    let mut connector: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("connectors/debezium/order-outbox.json")).unwrap(),
    )
    .expect("connector JSON");
    let name = format!("smoke-outbox-{id}");
    let config = connector["config"].as_object_mut().unwrap();
    config.insert("slot.name".into(), json!(id));
    config.insert("publication.name".into(), json!(id));
    config.insert("table.include.list".into(), json!(format!("{schema}.outbox")));
    config.insert("topic.prefix".into(), json!(id));
    config.insert("database.port".into(), json!(integration_tests::stack::port("POSTGRES_PORT").to_string()));
    connector["name"] = json!(name);

    let cleanup = Cleanup { connect: connect.clone(), connector: name.clone(), slot: id.clone(), publication: id.clone(), schema: schema.clone() };

    let response = reqwest::Client::new()
        .post(format!("{connect}/connectors"))
        .json(&connector)
        .send()
        .await
        .expect("POST /connectors");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        cleanup.run(&db).await;
        panic!("kafka connect refused the Debezium outbox connector ({status}): {body}");
    }

    // Wait for the task to run, so the replication slot exists before we insert.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = connector_state(&connect, &name).await;
        let task_state = state["tasks"][0]["state"].as_str().unwrap_or("");
        if task_state == "RUNNING" {
            break;
        }
        if task_state == "FAILED" || Instant::now() > deadline {
            cleanup.run(&db).await;
            panic!("debezium connector did not reach RUNNING: {state}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The password reached the connector through the worker's config provider, never the API.
    let shown: Value = reqwest::get(format!("{connect}/connectors/{name}/config")).await.expect("GET config").json().await.expect("JSON");
    let password = shown["database.password"].as_str().unwrap_or_default();
    assert!(password.starts_with("${env:") && !password.contains("saga"), "the connector config shows {password:?}");

    let event_id = uuid::Uuid::new_v4().to_string();
    let payload: Vec<u8> = vec![0x00, 0x00, 0x00, 0x00, 0x2a, 0xff, 0x10, 0x80];
    db.execute(
        &format!(
            "insert into {schema}.outbox (id, aggregate_type, aggregate_id, event_type, payload, correlation_id, causation_id, traceparent, aggregate_version) \
             values ($1::text::uuid, $2, 'order-42', 'SmokeHappened', $3, 'corr-1', 'cause-1', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 7)"
        ),
        &[&event_id, &aggregate_type, &payload],
    )
    .await
    .expect("insert outbox row");

    let records = read_topic(&bootstrap, &topic, "read_committed", Duration::from_secs(60), |r| !r.is_empty());
    let state = connector_state(&connect, &name).await;
    cleanup.run(&db).await;

    let record = records
        .first()
        .unwrap_or_else(|| panic!("no record reached {topic} within 60s; connector status: {state}"));
    assert_eq!(record.key.as_deref(), Some(b"order-42".as_slice()), "key must be the aggregate id");
    assert_eq!(record.value.as_deref(), Some(payload.as_slice()), "payload bytes must pass through untouched");
    assert_eq!(record.header("event_id"), Some(event_id.as_bytes()));
    assert_eq!(record.header("event_type"), Some(b"SmokeHappened".as_slice()));
    assert_eq!(record.header("correlation_id"), Some(b"corr-1".as_slice()));
    assert_eq!(record.header("aggregate_version"), Some(b"7".as_slice()), "the order's version, for read-your-writes");
}
