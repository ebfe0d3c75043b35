//! Debezium: a row inserted into a Postgres outbox table becomes a Kafka record on the routed
//! topic, keyed by the aggregate id, with the payload bytes untouched and the event id and type
//! as headers. Uses the project's own connector config (connectors/debezium/order-outbox.json)
//! and outbox migration, pointed at a schema of its own.
//!
//! Then duplicates through Debezium, with the four saga participants reading the routed topic:
//! the same outbox event written twice, and a snapshot replayed; side effects happen once.

use std::time::{Duration, Instant};

use integration_tests::kafka::{create_topic, read_to_end, read_topic};
use integration_tests::saga::{self, Delivered, RunOptions, SagaRun};
use integration_tests::stack::{connect_url, kafka_bootstrap, postgres_config, repo_root, unique};
use operators::serdes::Serde;
use schemas::{EventType, SagaEvent};
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

    let cleanup = Cleanup {
        connect: connect.clone(),
        connector: name.clone(),
        slot: id.clone(),
        publication: id.clone(),
        schema: schema.clone(),
    };

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
    let shown: Value = reqwest::get(format!("{connect}/connectors/{name}/config"))
        .await
        .expect("GET config")
        .json()
        .await
        .expect("JSON");
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

    let record =
        records.first().unwrap_or_else(|| panic!("no record reached {topic} within 60s; connector status: {state}"));
    assert_eq!(record.key.as_deref(), Some(b"order-42".as_slice()), "key must be the aggregate id");
    assert_eq!(record.value.as_deref(), Some(payload.as_slice()), "payload bytes must pass through untouched");
    assert_eq!(record.header("event_id"), Some(event_id.as_bytes()));
    assert_eq!(record.header("event_type"), Some(b"SmokeHappened".as_slice()));
    assert_eq!(record.header("correlation_id"), Some(b"corr-1".as_slice()));
    assert_eq!(record.header("aggregate_version"), Some(b"7".as_slice()), "the order's version, for read-your-writes");
}

/// An outbox table in a schema of its own, with the project's connector routing its rows to
/// `<aggregate_type>.events`, for the saga participants of a [`SagaRun`] to read.
struct OutboxConnector {
    connect: String,
    db: tokio_postgres::Client,
    id: String,
    name: String,
    /// Set once [`OutboxConnector::cleanup`] ran; a test that panicked before cleans up in `drop`.
    cleaned: bool,
}

impl OutboxConnector {
    /// The schema, the table and the connector (snapshot mode `initial`, as in production), RUNNING.
    async fn create(id: &str) -> OutboxConnector {
        let (db, connection) = tokio_postgres::connect(&postgres_config(), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("postgres is down or refuses the saga user: {e} (`dev/stack status`)"));
        tokio::spawn(connection);
        let migration = ["0001_outbox.sql", "0008_outbox_aggregate_version.sql"]
            .map(|file| std::fs::read_to_string(repo_root().join("connectors/migrations").join(file)).unwrap())
            .join("\n");
        db.batch_execute(&format!("create schema {id}; set search_path to {id}; {migration}; reset search_path"))
            .await
            .expect("apply the outbox migration in the test schema");
        let outbox = OutboxConnector {
            connect: connect_url(),
            db,
            id: id.to_string(),
            name: format!("dup-outbox-{id}"),
            cleaned: false,
        };
        outbox.register(None).await;
        outbox
    }

    /// Registers the connector (again), with `snapshot.mode` if given, and waits for its task to run.
    async fn register(&self, snapshot_mode: Option<&str>) {
        let mut connector: Value = serde_json::from_str(
            &std::fs::read_to_string(repo_root().join("connectors/debezium/order-outbox.json")).unwrap(),
        )
        .expect("connector JSON");
        let config = connector["config"].as_object_mut().unwrap();
        for (key, value) in [("slot.name", &self.id), ("publication.name", &self.id), ("topic.prefix", &self.id)] {
            config.insert(key.into(), json!(value));
        }
        config.insert("table.include.list".into(), json!(format!("{}.outbox", self.id)));
        config.insert("database.port".into(), json!(integration_tests::stack::port("POSTGRES_PORT").to_string()));
        if let Some(mode) = snapshot_mode {
            config.insert("snapshot.mode".into(), json!(mode));
        }
        connector["name"] = json!(self.name);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let response = reqwest::Client::new()
                .post(format!("{}/connectors", self.connect))
                .json(&connector)
                .send()
                .await
                .expect("POST /connectors");
            let status = response.status();
            if status.is_success() {
                break;
            }
            // 409: a rebalance in progress, or the deleted connector not gone yet.
            let body = response.text().await.unwrap_or_default();
            assert!(
                status == reqwest::StatusCode::CONFLICT && Instant::now() < deadline,
                "kafka connect refused the outbox connector ({status}): {body}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        loop {
            let state = connector_state(&self.connect, &self.name).await;
            match state["tasks"][0]["state"].as_str().unwrap_or("") {
                "RUNNING" => break,
                "FAILED" => panic!("debezium connector failed: {state}"),
                _ => assert!(Instant::now() < deadline, "debezium connector did not reach RUNNING: {state}"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Deletes the connector (its offsets stay in Connect, its slot in PostgreSQL) and waits
    /// until its task has let go of the slot.
    async fn delete(&self) {
        let response = reqwest::Client::new()
            .delete(format!("{}/connectors/{}", self.connect, self.name))
            .send()
            .await
            .expect("DELETE /connectors");
        assert!(response.status().is_success(), "kafka connect did not delete {}: {}", self.name, response.status());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let row = self
                .db
                .query_one("select count(*) from pg_replication_slots where slot_name = $1 and active", &[&self.id])
                .await
                .expect("pg_replication_slots");
            if row.get::<_, i64>(0) == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the replication slot {} stayed active after the connector was deleted",
                self.id
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// An outbox row as the order service writes it: `event` under the outbox row id `row_id`.
    async fn insert(
        &self,
        db: &impl tokio_postgres::GenericClient,
        row_id: uuid::Uuid,
        aggregate_type: &str,
        event: &SagaEvent,
        payload: &[u8],
    ) {
        let row_id = row_id.to_string();
        db.execute(
            &format!(
                "insert into {}.outbox (id, aggregate_type, aggregate_id, event_type, payload, correlation_id, aggregate_version) \
                 values ($1::text::uuid, $2, $3, $4, $5, $6, 1)",
                self.id
            ),
            &[&row_id, &aggregate_type, &event.envelope.order_id, &event.event_type().as_str(), &payload, &event.envelope.correlation_id],
        )
        .await
        .expect("insert outbox row");
    }

    fn leftovers(&self) -> Cleanup {
        Cleanup {
            connect: self.connect.clone(),
            connector: self.name.clone(),
            slot: self.id.clone(),
            publication: self.id.clone(),
            schema: self.id.clone(),
        }
    }

    async fn cleanup(mut self) {
        self.leftovers().run(&self.db).await;
        self.cleaned = true;
    }
}

impl Drop for OutboxConnector {
    /// A test that failed halfway still removes its connector, slot, publication and schema.
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let leftovers = self.leftovers();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("cleanup runtime");
            runtime.block_on(async move {
                if let Ok((db, connection)) = tokio_postgres::connect(&postgres_config(), tokio_postgres::NoTls).await {
                    tokio::spawn(connection);
                    leftovers.run(&db).await;
                }
            });
        })
        .join();
    }
}

/// Every saga event on `topic` now, with its record.
fn everything(run: &SagaRun, topic: &str) -> Vec<Delivered> {
    read_to_end(&run.bootstrap, topic, "read_committed")
        .into_iter()
        .filter_map(|record| {
            Some(Delivered { event: run.serde.deserialize(topic, record.value.as_deref()?).ok()?, record })
        })
        .collect()
}

/// Once the sentinel order (placed last) is confirmed, every record before it on the run's one
/// partition has been processed: each order of `orders` confirmed, charged, reserved and shipped
/// once, one shipments row, its guard COMPLETED, nothing dead-lettered.
async fn side_effects_happened_once(run: SagaRun, orders: &[&str]) {
    let (decided, payments, stock, shipped) = (
        everything(&run, &run.topics.order),
        everything(&run, &run.topics.payment),
        everything(&run, &run.topics.inventory),
        everything(&run, &run.topics.shipping),
    );
    let dead: Vec<_> = [&run.topics.order, &run.topics.payment, &run.topics.inventory, &run.topics.shipping]
        .into_iter()
        .flat_map(|topic| read_to_end(&run.bootstrap, &format!("{topic}.dlq"), "read_committed"))
        .collect();
    run.assert_running();
    run.close();
    assert!(dead.is_empty(), "nothing is dead-lettered: {:?}", saga::dead_letter_summary(&dead));
    let mut redis = saga::redis_connection();
    for order in orders {
        for (events, event_type) in [
            (&decided, EventType::OrderConfirmed),
            (&payments, EventType::PaymentCompleted),
            (&stock, EventType::InventoryReserved),
            (&shipped, EventType::ShipmentCreated),
        ] {
            assert_eq!(
                saga::of(events, order, event_type).len(),
                1,
                "{order}: one {event_type:?}: {:?}",
                saga::summary(events, order)
            );
        }
        assert!(
            saga::of(&decided, order, EventType::OrderCancelled).is_empty(),
            "{order} was cancelled: {:?}",
            saga::summary(&decided, order)
        );
        assert_eq!(saga::shipments_of(order).await.len(), 1, "{order}: one shipments row");
        assert_eq!(saga::shipment_guard_state(&mut redis, order).as_deref(), Some("COMPLETED"), "{order}: the guard");
    }
}

/// The same outbox event written twice, through Debezium to the four participants: the same
/// payload under two outbox row ids in one transaction, and one row inserted, deleted and
/// inserted again under its own id. Both copies reach the order topic; the charge, the
/// reservation, the shipment row and the Redis guard happen once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_outbox_event_twice_has_its_side_effects_once() {
    let id = unique("dbzdup");
    let serde = saga::event_serde().await;
    // One partition: the sentinel placed last is processed last by every participant.
    let run =
        SagaRun::start(&id, &serde, RunOptions { partitions: 1, step_timeout: Some(Duration::from_secs(120)) }).await;
    let aggregate_type = run.topics.order.trim_end_matches(".events").to_string();
    let outbox = OutboxConnector::create(&id).await;
    let customer = format!("{id}-customer");
    let (twice, again, once, sentinel) =
        (format!("{id}-twice"), format!("{id}-again"), format!("{id}-once"), format!("{id}-sentinel"));
    let placed = |order: &str| {
        let event = saga::order_placed(order, &customer);
        let bytes = serde.serialize(&run.topics.order, &event).expect("an OrderPlaced");
        (event, bytes)
    };

    let ((twice_event, twice_bytes), (again_event, again_bytes), (once_event, once_bytes)) =
        (placed(&twice), placed(&again), placed(&once));
    let (mut db, connection) =
        tokio_postgres::connect(&postgres_config(), tokio_postgres::NoTls).await.expect("postgres");
    tokio::spawn(connection);
    let tx = db.transaction().await.expect("begin");
    outbox.insert(&tx, uuid::Uuid::new_v4(), &aggregate_type, &twice_event, &twice_bytes).await;
    outbox.insert(&tx, uuid::Uuid::new_v4(), &aggregate_type, &twice_event, &twice_bytes).await;
    tx.commit().await.expect("commit");
    let again_row = uuid::Uuid::new_v4();
    outbox.insert(&outbox.db, again_row, &aggregate_type, &again_event, &again_bytes).await;
    outbox
        .db
        .execute(&format!("delete from {id}.outbox where id = $1::text::uuid"), &[&again_row.to_string()])
        .await
        .expect("delete");
    outbox.insert(&outbox.db, again_row, &aggregate_type, &again_event, &again_bytes).await;
    outbox.insert(&outbox.db, uuid::Uuid::new_v4(), &aggregate_type, &once_event, &once_bytes).await;

    // Both copies are on the topic, byte for byte.
    let placed_copies = |events: &[Delivered], order: &str| saga::of(events, order, EventType::OrderPlaced).len();
    let delivered = run.events(&run.topics.order, |events| {
        placed_copies(events, &twice) == 2 && placed_copies(events, &again) == 2 && placed_copies(events, &once) == 1
    });
    for (order, bytes) in [(&twice, &twice_bytes), (&again, &again_bytes)] {
        let copies = saga::of(&delivered, order, EventType::OrderPlaced);
        assert_eq!(copies.len(), 2, "{order}: both copies reached the topic: {:?}", saga::summary(&delivered, order));
        assert!(
            copies.iter().all(|copy| copy.record.value.as_deref() == Some(bytes.as_slice())),
            "{order}: the payload untouched"
        );
    }
    let (sentinel_event, sentinel_bytes) = placed(&sentinel);
    outbox.insert(&outbox.db, uuid::Uuid::new_v4(), &aggregate_type, &sentinel_event, &sentinel_bytes).await;
    let _ = run.events(&run.topics.order, |events| !saga::of(events, &sentinel, EventType::OrderConfirmed).is_empty());
    outbox.cleanup().await;
    side_effects_happened_once(run, &[&twice, &again, &once, &sentinel]).await;
}

/// A Debezium snapshot replayed: the connector is deleted and registered again under its name
/// with `snapshot.mode=always`, so every outbox row still in the table is delivered again.
/// Each order's OrderPlaced reaches the participants twice (or more); its side effects happen once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_snapshot_has_its_side_effects_once() {
    let id = unique("dbzsnap");
    let serde = saga::event_serde().await;
    let run =
        SagaRun::start(&id, &serde, RunOptions { partitions: 1, step_timeout: Some(Duration::from_secs(120)) }).await;
    let aggregate_type = run.topics.order.trim_end_matches(".events").to_string();
    let outbox = OutboxConnector::create(&id).await;
    let customer = format!("{id}-customer");
    let orders: Vec<String> = (0..3).map(|n| format!("{id}-order{n}")).collect();
    let placed = |order: &str| {
        let event = saga::order_placed(order, &customer);
        let bytes = serde.serialize(&run.topics.order, &event).expect("an OrderPlaced");
        (event, bytes)
    };
    for order in &orders {
        let (event, bytes) = placed(order);
        outbox.insert(&outbox.db, uuid::Uuid::new_v4(), &aggregate_type, &event, &bytes).await;
    }
    let _ = run.events(&run.topics.order, |events| {
        orders.iter().all(|order| !saga::of(events, order, EventType::OrderConfirmed).is_empty())
    });

    // The replay: every row of the table again, after the orders are confirmed.
    outbox.delete().await;
    outbox.register(Some("always")).await;
    let copies = run.events(&run.topics.order, |events| {
        orders.iter().all(|order| saga::of(events, order, EventType::OrderPlaced).len() >= 2)
    });
    for order in &orders {
        assert!(
            saga::of(&copies, order, EventType::OrderPlaced).len() >= 2,
            "{order}: the snapshot delivered it again: {:?}",
            saga::summary(&copies, order)
        );
    }
    let sentinel = format!("{id}-sentinel");
    let (event, bytes) = placed(&sentinel);
    outbox.insert(&outbox.db, uuid::Uuid::new_v4(), &aggregate_type, &event, &bytes).await;
    let _ = run.events(&run.topics.order, |events| !saga::of(events, &sentinel, EventType::OrderConfirmed).is_empty());
    outbox.cleanup().await;
    let mut all: Vec<&str> = orders.iter().map(String::as_str).collect();
    all.push(&sentinel);
    side_effects_happened_once(run, &all).await;
}
