//! `pipeline projector rebuild` on the real stack: orders' saga events produced in Kafka
//! transactions (so partitions end in transaction markers, and one aborted transaction must
//! leave no trace) to topics of this test's own, projected by the live projector, then the view
//! rebuilt from the topics and swapped in.
//!
//! It runs in a database of its own: the rebuild swaps `order_view`, which every other test and
//! a running pipeline share in database `saga`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_tests::kafka::create_topic;
use integration_tests::saga::{order_placed, saga_codec};
use integration_tests::stack::{kafka_bootstrap, postgres_config, unique};
use operators::serdes::Serde;
use pipeline::event_serde::EventSerde;
use pipeline::projector::{rebuild_read_model, run_projector, ProjectorConfig, RebuildSummary};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use schemas::{
    CancellationReason, Envelope, EventType, InventoryReleased, InventoryReserved, OrderCancelled, OrderConfirmed,
    OrderRequiresIntervention, Payload, PaymentCompleted, PaymentFailed, PaymentRefunded, SagaCodec, SagaEvent,
    ShipmentCreated, ShipmentFailed, StockItem, INVENTORY_EVENTS, ORDER_EVENTS, PAYMENT_EVENTS, SHIPPING_EVENTS,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

const ORDERS: usize = 400;
const WAIT: Duration = Duration::from_secs(60);
/// The columns compared, row by row: everything but the time the row was last written.
const ROWS: &str =
    "select order_id, (to_jsonb(v) - 'updated_at' - 'rebuild_note')::text from order_view v order by order_id";

/// A database created for this test and dropped after it, even when the test fails halfway.
struct ScratchDatabase {
    name: String,
    dropped: bool,
}

impl ScratchDatabase {
    async fn create() -> Self {
        let name = unique("rebuild");
        connect(&postgres_config())
            .await
            .batch_execute(&format!("create database {name}"))
            .await
            .expect("postgres: create database");
        ScratchDatabase { name, dropped: false }
    }

    fn config(&self) -> String {
        postgres_config().replace("dbname=saga", &format!("dbname={}", self.name))
    }

    async fn drop_now(mut self) {
        drop_database(&self.name).await;
        self.dropped = true;
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                runtime.block_on(drop_database(&name));
            }
        })
        .join();
    }
}

async fn drop_database(name: &str) {
    if let Ok((client, connection)) = tokio_postgres::connect(&postgres_config(), NoTls).await {
        tokio::spawn(connection);
        let _ = client.batch_execute(&format!("drop database if exists {name} with (force)")).await;
    }
}

async fn connect(config: &str) -> Client {
    let (client, connection) =
        tokio_postgres::connect(config, NoTls).await.unwrap_or_else(|e| panic!("postgres at {config}: {e}"));
    tokio::spawn(connection);
    client
}

/// The four topics under this test's names, with the dead-letter topics the projector writes.
async fn create_topics(bootstrap: &str) -> [String; 4] {
    let mut names = Vec::new();
    for standard in [ORDER_EVENTS, PAYMENT_EVENTS, INVENTORY_EVENTS, SHIPPING_EVENTS] {
        let name = unique(&format!("rebuild-{}", standard.replace('.', "-")));
        create_topic(bootstrap, &name, 3).await;
        create_topic(bootstrap, &format!("{name}.dlq"), 3).await;
        names.push(name);
    }
    names.try_into().expect("four topics")
}

/// One record to produce: topic, key, value, and the `aggregate_version` header if any.
struct Out {
    topic: String,
    key: String,
    value: Vec<u8>,
    version: Option<i64>,
}

/// Produces each batch in a transaction of its own, committing it or aborting it.
fn produce_in_transactions(bootstrap: &str, batches: Vec<(Vec<Out>, bool)>) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", unique("rebuild-test"))
        .create()
        .expect("kafka producer");
    producer.init_transactions(WAIT).expect("kafka: init_transactions");
    for (records, commit) in batches {
        producer.begin_transaction().expect("kafka: begin_transaction");
        for out in &records {
            let version = out.version.map(|v| v.to_string());
            let headers = version
                .as_deref()
                .map(|v| OwnedHeaders::new().insert(Header { key: "aggregate_version", value: Some(v) }));
            let mut record = BaseRecord::to(&out.topic).key(&out.key).payload(&out.value);
            if let Some(headers) = headers {
                record = record.headers(headers);
            }
            while let Err((error, returned)) = producer.send(record) {
                assert!(
                    matches!(
                        error,
                        rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ),
                    "kafka: {error}"
                );
                producer.poll(Duration::from_millis(50));
                record = returned;
            }
        }
        // A BaseProducer's delivery reports are served by polling; abort needs them served.
        producer.flush(WAIT).expect("kafka: flush");
        if commit {
            producer.commit_transaction(WAIT).expect("kafka: commit_transaction");
        } else {
            producer.abort_transaction(WAIT).expect("kafka: abort_transaction");
        }
    }
}

fn after(cause: &SagaEvent, payload: Payload) -> SagaEvent {
    SagaEvent::new(Envelope::caused_by(&cause.envelope, cause.envelope.occurred_at + 100), payload)
}

fn stock() -> Vec<StockItem> {
    vec![StockItem { product_id: "apple".into(), quantity: 1 }]
}

/// Order `i`'s events, in the order they are produced: five kinds of lifecycle by `i % 5`.
fn lifecycle(order_id: &str, i: usize) -> Vec<SagaEvent> {
    let customer = format!("customer-{}", i % 7);
    let placed = order_placed(order_id, &customer);
    let paid = after(
        &placed,
        Payload::PaymentCompleted(PaymentCompleted {
            customer_id: customer.clone(),
            amount_cents: 1_000,
            payment_id: format!("pay-{i}"),
        }),
    );
    let reserved = after(
        &paid,
        Payload::InventoryReserved(InventoryReserved { items: stock(), reservation_id: format!("res-{i}") }),
    );
    match i % 5 {
        0 => {
            let shipped = after(
                &reserved,
                Payload::ShipmentCreated(ShipmentCreated {
                    shipment_id: format!("s-{i}"),
                    tracking_number: format!("TRK-{i}"),
                }),
            );
            let confirmed = after(
                &shipped,
                Payload::OrderConfirmed(OrderConfirmed {
                    customer_id: customer,
                    total_cents: 1_000,
                    tracking_number: format!("TRK-{i}"),
                }),
            );
            vec![placed, paid, reserved, shipped, confirmed]
        }
        1 => {
            let failed =
                after(&reserved, Payload::ShipmentFailed(ShipmentFailed { reason: "address_rejected".into() }));
            let reason = CancellationReason::ShipmentFailed;
            let cancelled = after(
                &failed,
                Payload::OrderCancelled(OrderCancelled {
                    customer_id: customer.clone(),
                    reason: reason.clone(),
                    total_cents: 1_000,
                }),
            );
            let released = after(
                &cancelled,
                Payload::InventoryReleased(InventoryReleased {
                    reservation_id: format!("res-{i}"),
                    items: stock(),
                    reason: reason.clone(),
                }),
            );
            let refunded = after(
                &released,
                Payload::PaymentRefunded(PaymentRefunded {
                    customer_id: customer,
                    amount_cents: 1_000,
                    payment_id: format!("pay-{i}"),
                    reason,
                }),
            );
            vec![placed, paid, reserved, failed, cancelled, released, refunded]
        }
        2 => {
            let declined = after(
                &placed,
                Payload::PaymentFailed(PaymentFailed {
                    customer_id: customer.clone(),
                    amount_cents: 1_000,
                    reason: "card declined".into(),
                }),
            );
            let cancelled = after(
                &declined,
                Payload::OrderCancelled(OrderCancelled {
                    customer_id: customer,
                    reason: CancellationReason::PaymentFailed,
                    total_cents: 1_000,
                }),
            );
            vec![placed, declined, cancelled]
        }
        // The participants' events before the order's own OrderPlaced.
        3 => vec![paid, reserved, placed],
        // Parked before its cancellation is seen: the row keeps an intervention only while the
        // order is parked, and a rebuild folding several events at once must see the same.
        _ => {
            let parked = after(
                &paid,
                Payload::OrderRequiresIntervention(OrderRequiresIntervention {
                    reason: "refund_failed".into(),
                    outstanding: vec!["refund".into()],
                }),
            );
            // Out of stock: a charge to refund, known from the cancellation itself.
            let cancelled = after(
                &parked,
                Payload::OrderCancelled(OrderCancelled {
                    customer_id: customer,
                    reason: CancellationReason::InsufficientStock,
                    total_cents: 1_000,
                }),
            );
            vec![placed, paid, parked, cancelled]
        }
    }
}

/// A live projector and the way to stop it.
struct LiveProjector {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl LiveProjector {
    fn start(config: &ProjectorConfig, codec: &SagaCodec, pool: &deadpool_postgres::Pool) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run_projector(config.clone(), codec.clone(), pool.clone(), async move {
            let _ = stopped.await;
        }));
        LiveProjector { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("projector did not stop")
            .expect("projector task panicked")
            .expect("projector failed");
    }
}

async fn count(db: &Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("postgres: {sql}: {e}")).get(0)
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done().await {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `projector_events_total{outcome}` over `topics`: what the live projectors of this process did.
fn counted(topics: &[String], outcome: &str) -> f64 {
    prometheus::default_registry()
        .gather()
        .iter()
        .filter(|family| family.name() == "projector_events_total")
        .flat_map(|family| family.get_metric())
        .filter(|metric| {
            let label =
                |name: &str| metric.get_label().iter().find(|l| l.name() == name).map(|l| l.value().to_string());
            label("topic").is_some_and(|t| topics.contains(&t)) && label("outcome").as_deref() == Some(outcome)
        })
        .map(|metric| metric.get_counter().value())
        .sum()
}

async fn rows(db: &Client) -> Vec<(String, String)> {
    db.query(ROWS, &[])
        .await
        .expect("postgres: reading order_view")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

async fn index_names(db: &Client, table: &str) -> BTreeSet<String> {
    db.query("select indexname::text from pg_indexes where tablename = $1", &[&table])
        .await
        .expect("postgres: pg_indexes")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

async fn oid(db: &Client, table: &str) -> Option<u32> {
    db.query_one("select to_regclass($1)::oid", &[&table]).await.expect("postgres: to_regclass").get(0)
}

async fn rebuild(
    config: &ProjectorConfig,
    codec: &SagaCodec,
    pool: &deadpool_postgres::Pool,
) -> (anyhow::Result<RebuildSummary>, Vec<String>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let result = rebuild_read_model(
        config,
        codec,
        pool,
        move |line| sink.lock().unwrap().push(line.to_string()),
        std::future::pending(),
    )
    .await;
    let lines = lines.lock().unwrap().clone();
    (result, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rebuilt_view_equals_the_live_one_and_is_swapped_in_whole() {
    let bootstrap = kafka_bootstrap();
    let database = ScratchDatabase::create().await;
    let pool = pipeline::db::pool(&database.config(), 4).expect("postgres pool");
    pipeline::db::migrate(&pool).await.expect("postgres: applying the migrations");
    let db = connect(&database.config()).await;
    let codec = saga_codec().await;
    // The stream thread's adapter over the same codec, for the synchronous closure below.
    let serde = EventSerde::new(codec.clone());
    let topics = create_topics(&bootstrap).await;
    let topic_of = |event: &SagaEvent| {
        let standard = [ORDER_EVENTS, PAYMENT_EVENTS, INVENTORY_EVENTS, SHIPPING_EVENTS]
            .iter()
            .position(|t| *t == event.topic())
            .expect("a saga topic");
        topics[standard].clone()
    };
    // Every tenth order (those whose index ends in 3) was placed by a producer still on
    // OrderPlaced v1: the rebuild reads it through the upcaster, as the live projector does.
    let registry = integration_tests::stack::registry_with_saga_schemas().await;
    let v1_text = schemas::schema_versions_of(EventType::OrderPlaced).next().expect("OrderPlaced v1").text;
    let order_placed_subject = schemas::subject_for(ORDER_EVENTS, EventType::OrderPlaced);
    let v1_id = registry
        .lookup(&order_placed_subject, v1_text)
        .await
        .expect("registry: look-up")
        .expect("OrderPlaced v1 registered");
    let written_by_v1 =
        |event: &SagaEvent| matches!(event.payload, Payload::OrderPlaced(_)) && event.envelope.order_id.ends_with('3');
    let encode = |event: &SagaEvent| Out {
        topic: topic_of(event),
        key: event.envelope.order_id.clone(),
        value: if written_by_v1(event) {
            schemas::to_wire(v1_id, &integration_tests::saga::order_placed_v1_body(event))
        } else {
            serde.serialize(event.topic(), event).expect("encoding a saga event")
        },
        version: matches!(event.payload, Payload::OrderPlaced(_)).then_some(1),
    };

    // Every tenth order's first event twice (at-least-once upstream), one record that is not
    // Avro, all in transactions of 100; then a transaction of another order, aborted.
    let run = unique("order");
    let mut records = Vec::new();
    let (mut duplicates, mut distinct) = (0, 0);
    for i in 0..ORDERS {
        let events = lifecycle(&format!("{run}-{i}"), i);
        distinct += events.len();
        if i % 10 == 0 {
            records.push(encode(&events[0]));
            duplicates += 1;
        }
        records.extend(events.iter().map(encode));
    }
    let v1_records =
        records.iter().filter(|out| schemas::parse_wire(&out.value).is_ok_and(|(id, _)| id == v1_id)).count();
    assert_eq!(v1_records, ORDERS / 10, "every tenth order's OrderPlaced is written with v1");
    records.push(Out {
        topic: topics[0].clone(),
        key: format!("{run}-2"),
        value: b"not avro at all".to_vec(),
        version: None,
    });
    let total_records = records.len();
    let mut batches: Vec<(Vec<Out>, bool)> = Vec::new();
    let mut records = records.into_iter().peekable();
    while records.peek().is_some() {
        batches.push((records.by_ref().take(100).collect(), true));
    }
    batches.push((lifecycle(&format!("{run}-aborted"), 0).iter().map(encode).collect(), false));
    let producing = bootstrap.clone();
    tokio::task::spawn_blocking(move || produce_in_transactions(&producing, batches)).await.expect("producing");

    let mut config = ProjectorConfig::new(&bootstrap);
    config.group_id = unique("rebuild-test-projector");
    config.topics = topics.to_vec();
    config.commit_interval = Duration::from_millis(200);
    let live = LiveProjector::start(&config, &codec, &pool);
    wait_until("the live projector folded every event in", async || {
        count(&db, "select count(*) from projected_events").await == distinct as i64
            && count(&db, "select count(*) from order_view where projection_problem is not null").await == 1
    })
    .await;

    // It can fail: with the projector running, the rebuild refuses and changes nothing.
    let live_oid = oid(&db, "order_view").await;
    let (refused, _) = rebuild(&config, &codec, &pool).await;
    let error = format!("{:#}", refused.expect_err("a rebuild beside a running projector must refuse"));
    assert!(error.contains("the projector is running") && error.contains(&config.group_id), "{error}");
    assert_eq!(oid(&db, "order_view").await, live_oid, "the live view stays");
    assert_eq!(oid(&db, "order_view_next").await, None, "nothing half-built is left");

    live.stop().await;
    let live_rows = rows(&db).await;
    assert_eq!(live_rows.len(), ORDERS, "one row per order, none of the aborted transaction");
    let live_indexes = index_names(&db, "order_view").await;

    // The view changes: a migration adds a column, and rows stand as an older fold left them.
    db.batch_execute(&format!(
        "alter table order_view add column rebuild_note text not null default 'from the migration'; \
         update order_view set status = 'PLACED', version = 0 where order_id in ('{run}-0', '{run}-4', '{run}-8'); \
         delete from order_view where order_id = '{run}-1';"
    ))
    .await
    .expect("postgres: changing the view");

    // A reader all along: it sees the old view or the new one, never a part of either.
    let reading = Arc::new(AtomicBool::new(true));
    let reader = {
        let (reading, config) = (reading.clone(), database.config());
        tokio::spawn(async move {
            let db = connect(&config).await;
            let mut seen = BTreeSet::new();
            while reading.load(Ordering::Relaxed) {
                seen.insert(count(&db, "select count(*) from order_view").await);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen.insert(count(&db, "select count(*) from order_view").await);
            seen
        })
    };
    let (rebuilt, progress) = rebuild(&config, &codec, &pool).await;
    reading.store(false, Ordering::Relaxed);
    let summary = rebuilt.unwrap_or_else(|e| panic!("rebuild failed: {e:#}"));
    println!("{summary}");
    for line in &progress {
        println!("{line}");
    }

    assert_eq!(rows(&db).await, live_rows, "row by row, the rebuilt view is the live view before the change");
    // The orders placed with v1 went through the upcaster: their values are the ones written.
    for i in (0..ORDERS).filter(|i| i % 10 == 3) {
        let order_id = format!("{run}-{i}");
        let row = db
            .query_one("select customer_id, total_amount, item_count from order_view where order_id = $1", &[&order_id])
            .await
            .expect("postgres: a row of an order placed with v1");
        let values: (Option<String>, Option<i64>, Option<i64>) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(
            values,
            (Some(format!("customer-{}", i % 7)), Some(1_000), Some(1)),
            "{order_id}, placed with OrderPlaced v1"
        );
    }
    assert_eq!(summary.orders, ORDERS as i64);
    assert_eq!(summary.counts.records, total_records as u64, "every committed record once, the aborted ones not");
    assert_eq!(
        (summary.counts.applied, summary.counts.duplicates, summary.counts.undecodable),
        (distinct as u64, duplicates as u64, 1)
    );
    assert_eq!(summary.rows_changed, 4, "three rows repaired, one restored");
    assert_eq!(
        reader.await.expect("reader"),
        BTreeSet::from([ORDERS as i64 - 1, ORDERS as i64]),
        "only whole views were read"
    );
    assert!(progress.first().is_some_and(|line| line.starts_with("rebuilding order_view_next from")), "{progress:?}");
    assert!(
        progress.last().is_some_and(|line| line.starts_with("rebuild 100% |") && line.ends_with("| done")),
        "{progress:?}"
    );

    // The swap happened: the old table is the previous one, the new one has the migration's
    // column and the live index names.
    assert_eq!(oid(&db, "order_view_previous").await, live_oid);
    assert_ne!(oid(&db, "order_view").await, live_oid);
    assert_eq!(count(&db, "select count(*) from order_view_previous where status = 'PLACED' and version = 0").await, 3);
    assert_eq!(
        count(&db, "select count(*) from order_view where rebuild_note = 'from the migration'").await,
        ORDERS as i64
    );
    assert_eq!(index_names(&db, "order_view").await, live_indexes);
    assert_eq!(count(&db, "select count(*) from projected_events").await, distinct as i64);

    // A projector started after the swap from before the rebuild's end (a new group: from 0)
    // skips every event the rebuild folded in, and folds a new order into the new table.
    let newcomer = order_placed(&format!("{run}-after"), "customer-after");
    let new_records = vec![(vec![encode(&newcomer)], true)];
    let producing = bootstrap.clone();
    tokio::task::spawn_blocking(move || produce_in_transactions(&producing, new_records)).await.expect("producing");
    let mut replay = config.clone();
    replay.group_id = unique("rebuild-test-after");
    let skipped_before = counted(&config.topics, "duplicate");
    let after_swap = LiveProjector::start(&replay, &codec, &pool);
    wait_until("the projector after the swap read everything again", async || {
        count(&db, &format!("select count(*) from order_view where order_id = '{run}-after'")).await == 1
            && counted(&config.topics, "duplicate") >= skipped_before + (distinct + duplicates) as f64
    })
    .await;
    after_swap.stop().await;
    assert_eq!(
        counted(&config.topics, "duplicate"),
        skipped_before + (distinct + duplicates) as f64,
        "each record of the rebuilt view skipped once"
    );
    let mut expected = live_rows.clone();
    let after_rows = rows(&db).await;
    expected.push(after_rows.iter().find(|(id, _)| id == &format!("{run}-after")).cloned().expect("the new order"));
    expected.sort();
    assert_eq!(after_rows, expected, "no event of the rebuilt view applied twice");
    assert_eq!(count(&db, "select count(*) from projected_events").await, distinct as i64 + 1);
    println!("rebuild of {ORDERS} orders: {:.0} events/s", summary.events_per_second());

    database.drop_now().await;
}
