//! The projector against the real stack: saga events produced (Avro through the registry) to
//! topics of this test's own, projected into order_view in PostgreSQL, served by the query API.
//! Covers a confirmed order, a cancelled one with both compensations, one whose events arrive
//! before its OrderPlaced, duplicates, an undecodable record and a full replay.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use integration_tests::kafka::create_topic;
use integration_tests::outage::Outage;
use integration_tests::stack::{kafka_bootstrap, port, postgres_config, postgres_config_at, unique};
use pipeline::projector::{query_routes, run_projector, ProjectorConfig, FRESH_HEADER};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use schemas::{
    Address, CancellationReason, Envelope, InventoryReleased, InventoryReserved, Money, OrderCancelled, OrderConfirmed,
    OrderItem, OrderPlaced, OrderRequiresIntervention, Payload, PaymentCompleted, PaymentFailed, PaymentRefunded,
    SagaCodec, SagaEvent, ShipmentCreated, ShipmentFailed, StockItem, DEFAULT_CURRENCY, INVENTORY_EVENTS, ORDER_EVENTS,
    PAYMENT_EVENTS, SHIPPING_EVENTS,
};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

const WAIT: Duration = Duration::from_secs(30);

/// The four saga topics under this test's own names.
struct Topics(HashMap<&'static str, String>);

impl Topics {
    async fn create(bootstrap: &str) -> Self {
        let mut names = HashMap::new();
        for standard in [ORDER_EVENTS, PAYMENT_EVENTS, INVENTORY_EVENTS, SHIPPING_EVENTS] {
            let name = unique(&format!("projector-{}", standard.replace('.', "-")));
            create_topic(bootstrap, &name, 6).await;
            // As `pipeline setup` creates them: where the projector sets aside what it cannot read.
            create_topic(bootstrap, &format!("{name}.dlq"), 6).await;
            names.insert(standard, name);
        }
        Topics(names)
    }

    fn of(&self, event: &SagaEvent) -> &str {
        &self.0[event.topic()]
    }

    fn all(&self) -> Vec<String> {
        self.0.values().cloned().collect()
    }
}

struct Producer {
    producer: FutureProducer,
    codec: SagaCodec,
}

impl Producer {
    async fn send(&self, topics: &Topics, event: &SagaEvent) {
        let bytes = self.codec.encode(event.topic(), event).await.expect("encoding a saga event");
        self.send_bytes(topics.of(event), &event.envelope.order_id, &bytes).await;
    }

    /// As Debezium delivers an order-service event: with the order's event-store version.
    async fn send_at_version(&self, topics: &Topics, event: &SagaEvent, version: i64) {
        let bytes = self.codec.encode(event.topic(), event).await.expect("encoding a saga event");
        let version = version.to_string();
        let headers = rdkafka::message::OwnedHeaders::new()
            .insert(rdkafka::message::Header { key: "aggregate_version", value: Some(&version) });
        self.producer
            .send(
                FutureRecord::to(topics.of(event)).key(&event.envelope.order_id).payload(&bytes).headers(headers),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("kafka: producing failed: {e}"));
    }

    async fn send_bytes(&self, topic: &str, key: &str, bytes: &[u8]) {
        self.producer
            .send(FutureRecord::to(topic).key(key).payload(bytes), Duration::from_secs(10))
            .await
            .unwrap_or_else(|(e, _)| panic!("kafka: producing to {topic} failed: {e}"));
    }
}

/// Resolves when the test stops the projector.
struct Stopped(oneshot::Receiver<()>);

impl Future for Stopped {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// A running projector and the way to stop it.
struct RunningProjector {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningProjector {
    fn start<F>(run: impl FnOnce(Stopped) -> F) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        RunningProjector { stop, task: tokio::spawn(run(Stopped(stopped))) }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("projector did not stop within 30 s")
            .expect("projector task panicked")
            .expect("projector failed");
    }
}

/// What every projector test starts from: the migrated database, the saga codec, this test's
/// own topics and a producer to them.
struct Fixture {
    bootstrap: String,
    pool: deadpool_postgres::Pool,
    db: Client,
    codec: SagaCodec,
    topics: Topics,
    producer: Producer,
}

impl Fixture {
    async fn new() -> Self {
        let bootstrap = kafka_bootstrap();
        let pool = pipeline::db::pool(&postgres_config(), 4).expect("postgres pool");
        let db = connect(&postgres_config()).await;
        pipeline::db::migrate(&pool).await.expect("postgres: applying the migrations");
        let codec = integration_tests::saga::saga_codec().await;
        let topics = Topics::create(&bootstrap).await;
        let producer = Producer {
            producer: ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("enable.idempotence", "true")
                .create()
                .expect("kafka producer"),
            codec: codec.clone(),
        };
        Fixture { bootstrap, pool, db, codec, topics, producer }
    }
}

async fn connect(config: &str) -> Client {
    let (client, connection) =
        tokio_postgres::connect(config, NoTls).await.unwrap_or_else(|e| panic!("postgres at {config}: {e}"));
    tokio::spawn(connection);
    client
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn after(cause: &SagaEvent, payload: Payload) -> SagaEvent {
    SagaEvent::new(Envelope::caused_by(&cause.envelope, cause.envelope.occurred_at + 100), payload)
}

fn placed(order_id: &str, customer_id: &str, at_ms: i64) -> SagaEvent {
    SagaEvent::new(
        Envelope::new(order_id, format!("corr-{order_id}"), at_ms),
        Payload::OrderPlaced(OrderPlaced {
            customer_id: customer_id.into(),
            items: vec![
                OrderItem::new("p-1", 2, Money::new(1_000, DEFAULT_CURRENCY)),
                OrderItem::new("p-2", 1, Money::new(500, DEFAULT_CURRENCY)),
            ],
            total_cents: 2_500,
            shipping_address: Address {
                line1: "1 Main St".into(),
                line2: None,
                city: "Berlin".into(),
                postal_code: "10115".into(),
                country: "DE".into(),
            },
            currency: DEFAULT_CURRENCY.into(),
            coupon_code: None,
        }),
    )
}

fn paid(cause: &SagaEvent, customer_id: &str) -> SagaEvent {
    after(
        cause,
        Payload::PaymentCompleted(PaymentCompleted {
            customer_id: customer_id.into(),
            amount_cents: 2_500,
            payment_id: "pay-1".into(),
        }),
    )
}

fn reserved(cause: &SagaEvent) -> SagaEvent {
    after(cause, Payload::InventoryReserved(InventoryReserved { items: stock(), reservation_id: "res-1".into() }))
}

fn stock() -> Vec<StockItem> {
    vec![StockItem { product_id: "p-1".into(), quantity: 2 }, StockItem { product_id: "p-2".into(), quantity: 1 }]
}

struct Row {
    status: String,
    version: i64,
    customer_id: Option<String>,
    total_amount: Option<i64>,
    item_count: Option<i64>,
    tracking_number: Option<String>,
    cancellation_reason: Option<String>,
    placed_at_ms: Option<i64>,
}

async fn row(client: &Client, order_id: &str) -> Option<Row> {
    client
        .query_opt(
            "select status, version, customer_id, total_amount, item_count, tracking_number, cancellation_reason, \
                    (extract(epoch from placed_at) * 1000)::bigint as placed_at_ms \
             from order_view where order_id = $1",
            &[&order_id],
        )
        .await
        .expect("postgres: reading order_view")
        .map(|r| Row {
            status: r.get("status"),
            version: r.get("version"),
            customer_id: r.get("customer_id"),
            total_amount: r.get("total_amount"),
            item_count: r.get("item_count"),
            tracking_number: r.get("tracking_number"),
            cancellation_reason: r.get("cancellation_reason"),
            placed_at_ms: r.get("placed_at_ms"),
        })
}

/// Waits until the order's row has `version` applied events.
async fn wait_for_version(db: &Client, order_id: &str, version: i64) -> Row {
    let deadline = Instant::now() + WAIT;
    loop {
        let current = row(db, order_id).await;
        match current {
            Some(current) if current.version >= version => return current,
            _ if Instant::now() > deadline => panic!(
                "order {order_id} did not reach version {version} within 30 s (now {:?})",
                current.map(|r| r.version)
            ),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn counter(topic: &str, outcome: &str) -> f64 {
    prometheus::default_registry()
        .gather()
        .iter()
        .filter(|family| family.name() == "projector_events_total")
        .flat_map(|family| family.get_metric())
        .filter(|metric| {
            let labels: HashMap<&str, &str> = metric.get_label().iter().map(|l| (l.name(), l.value())).collect();
            labels.get("topic") == Some(&topic) && labels.get("outcome") == Some(&outcome)
        })
        .map(|metric| metric.get_counter().value())
        .sum()
}

async fn wait_for_counter(topic: &str, outcome: &str, value: f64) {
    let deadline = Instant::now() + WAIT;
    while counter(topic, outcome) < value && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counter(topic, outcome), value, "projector_events_total{{topic={topic}, outcome={outcome}}}");
}

fn gauge(name: &str) -> Option<f64> {
    prometheus::default_registry()
        .gather()
        .iter()
        .find(|family| family.name() == name)
        .and_then(|family| family.get_metric().first().map(|metric| metric.get_gauge().value()))
}

async fn get(base: &str, path: &str) -> (u16, Option<String>, Value) {
    let response = reqwest::get(format!("{base}{path}")).await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    let fresh = response.headers().get(FRESH_HEADER.as_str()).map(|v| v.to_str().unwrap().to_string());
    let body = response.json().await.unwrap_or_else(|e| panic!("GET {path}: body is not JSON: {e}"));
    (status, fresh, body)
}

fn order_ids(listing: &Value) -> Vec<String> {
    listing["orders"]
        .as_array()
        .expect("orders array")
        .iter()
        .map(|o| o["order_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projector_builds_order_view_and_the_query_api_serves_it() {
    let Fixture { bootstrap, pool, db, codec, topics, producer } = Fixture::new().await;

    let customer = unique("customer");
    let [confirmed_id, cancelled_id, early_id, failed_id, awaited_id] =
        ["confirmed", "cancelled", "early", "failed", "awaited"].map(unique);
    let t0 = now_ms() - 60_000;

    // Events that come before their order's OrderPlaced, projected on their own first.
    let early_placed = placed(&early_id, &customer, t0 + 2_000);
    let early_paid = paid(&early_placed, &customer);
    let early_reserved = reserved(&early_paid);
    producer.send(&topics, &early_paid).await;
    producer.send(&topics, &early_reserved).await;

    let mut config = ProjectorConfig::new(&bootstrap);
    config.group_id = unique("projector-test");
    config.topics = topics.all();
    config.commit_interval = Duration::from_millis(200);
    let projector =
        RunningProjector::start(|stopped| run_projector(config.clone(), codec.clone(), pool.clone(), stopped));

    let early = wait_for_version(&db, &early_id, 2).await;
    assert_eq!(early.status, "RESERVED");
    assert_eq!(early.customer_id.as_deref(), Some(customer.as_str()), "learned from PaymentCompleted");
    assert_eq!((early.total_amount, early.item_count, early.placed_at_ms), (None, None, None));

    // A confirmed order, with its PaymentCompleted and OrderConfirmed delivered twice.
    let confirmed_placed = placed(&confirmed_id, &customer, t0);
    let confirmed_paid = paid(&confirmed_placed, &customer);
    let confirmed_reserved = reserved(&confirmed_paid);
    let shipped = after(
        &confirmed_reserved,
        Payload::ShipmentCreated(ShipmentCreated { shipment_id: "s-1".into(), tracking_number: "TRK-777".into() }),
    );
    let confirmed = after(
        &shipped,
        Payload::OrderConfirmed(OrderConfirmed {
            customer_id: customer.clone(),
            total_cents: 2_500,
            tracking_number: "TRK-777".into(),
        }),
    );
    for event in
        [&confirmed_placed, &confirmed_paid, &confirmed_paid, &confirmed_reserved, &shipped, &confirmed, &confirmed]
    {
        producer.send(&topics, event).await;
    }

    // A cancelled order that had been charged and reserved: release, then refund.
    let cancelled_placed = placed(&cancelled_id, &customer, t0 + 1_000);
    let cancelled_paid = paid(&cancelled_placed, &customer);
    let cancelled_reserved = reserved(&cancelled_paid);
    let shipment_failed =
        after(&cancelled_reserved, Payload::ShipmentFailed(ShipmentFailed { reason: "address_rejected".into() }));
    let cancelled = after(
        &shipment_failed,
        Payload::OrderCancelled(OrderCancelled {
            customer_id: customer.clone(),
            reason: CancellationReason::ShipmentFailed,
            total_cents: 2_500,
        }),
    );
    let released = after(
        &cancelled,
        Payload::InventoryReleased(InventoryReleased {
            reservation_id: "res-1".into(),
            items: stock(),
            reason: CancellationReason::ShipmentFailed,
        }),
    );
    let refunded = after(
        &released,
        Payload::PaymentRefunded(PaymentRefunded {
            customer_id: customer.clone(),
            amount_cents: 2_500,
            payment_id: "pay-1".into(),
            reason: CancellationReason::ShipmentFailed,
        }),
    );
    for event in [&cancelled_placed, &cancelled_paid, &cancelled_reserved, &shipment_failed, &cancelled] {
        producer.send(&topics, event).await;
    }
    let compensating = wait_for_version(&db, &cancelled_id, 5).await;
    assert_eq!(compensating.status, "COMPENSATING", "refund and release are still outstanding");
    producer.send(&topics, &released).await;
    let still_compensating = wait_for_version(&db, &cancelled_id, 6).await;
    assert_eq!(still_compensating.status, "COMPENSATING", "the refund is still outstanding");
    producer.send(&topics, &refunded).await;

    // A payment that failed; and garbage on the order topic, which must not stop anything.
    let failed_placed = placed(&failed_id, &customer, t0 + 3_000);
    let payment_failed = after(
        &failed_placed,
        Payload::PaymentFailed(PaymentFailed {
            customer_id: customer.clone(),
            amount_cents: 2_500,
            reason: "insufficient_funds".into(),
        }),
    );
    let order_failed = after(
        &payment_failed,
        Payload::OrderCancelled(OrderCancelled {
            customer_id: customer.clone(),
            reason: CancellationReason::PaymentFailed,
            total_cents: 2_500,
        }),
    );
    producer.send_bytes(&topics.0[ORDER_EVENTS], &failed_id, b"not avro at all").await;
    for event in [&failed_placed, &payment_failed, &order_failed] {
        producer.send(&topics, event).await;
    }
    producer.send(&topics, &early_placed).await;

    let confirmed_row = wait_for_version(&db, &confirmed_id, 5).await;
    assert_eq!(confirmed_row.status, "CONFIRMED");
    assert_eq!(confirmed_row.tracking_number.as_deref(), Some("TRK-777"));
    assert_eq!((confirmed_row.total_amount, confirmed_row.item_count), (Some(2_500), Some(3)));
    assert_eq!(confirmed_row.placed_at_ms, Some(t0));
    assert_eq!(confirmed_row.cancellation_reason, None);

    let cancelled_row = wait_for_version(&db, &cancelled_id, 7).await;
    assert_eq!(cancelled_row.status, "CANCELLED");
    assert_eq!(cancelled_row.cancellation_reason.as_deref(), Some("shipment_failed"));

    let failed_row = wait_for_version(&db, &failed_id, 3).await;
    assert_eq!(failed_row.status, "CANCELLED", "nothing to compensate");
    assert_eq!(failed_row.cancellation_reason.as_deref(), Some("payment_failed"));

    let early_row = wait_for_version(&db, &early_id, 3).await;
    assert_eq!(early_row.status, "RESERVED", "OrderPlaced arriving last does not move it back");
    assert_eq!((early_row.total_amount, early_row.item_count), (Some(2_500), Some(3)));
    assert_eq!(early_row.placed_at_ms, Some(t0 + 2_000));

    // The duplicates were skipped, not counted as versions; the garbage was counted and skipped.
    wait_for_counter(&topics.0[PAYMENT_EVENTS], "duplicate", 1.0).await;
    wait_for_counter(&topics.0[ORDER_EVENTS], "duplicate", 1.0).await;
    wait_for_counter(&topics.0[ORDER_EVENTS], "undecodable", 1.0).await;
    assert_eq!(row(&db, &confirmed_id).await.unwrap().version, 5);
    // The garbage is set aside with its reason, and its order says so.
    let dead = integration_tests::kafka::read_topic(
        &bootstrap,
        &format!("{}.dlq", topics.0[ORDER_EVENTS]),
        "read_committed",
        Duration::from_secs(30),
        |records| !records.is_empty(),
    );
    assert_eq!(
        dead.first().and_then(|r| r.value.clone()).as_deref(),
        Some(&b"not avro at all"[..]),
        "the original bytes"
    );
    let reason = String::from_utf8_lossy(dead[0].header("dlq.error.message").unwrap_or_default()).into_owned();
    assert!(reason.contains("magic"), "dead-lettered because: {reason}");
    let problem: Option<String> = db
        .query_one("select projection_problem from order_view where order_id = $1", &[&failed_id])
        .await
        .expect("row")
        .get(0);
    assert!(problem.is_some_and(|p| p.contains("magic")), "the order is flagged in the read model");
    let lag = gauge("projector_lag_seconds").expect("projector_lag_seconds is registered");
    assert!((0.0..300.0).contains(&lag), "lag {lag} s: events happened about a minute ago");

    // The query API.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the query API");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = query_routes(pool.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (status, fresh, order) = get(&base, &format!("/orders/{confirmed_id}")).await;
    assert_eq!((status, fresh.as_deref()), (200, Some("true")));
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(order["customer_id"], customer.as_str());
    assert_eq!(order["total_amount"], 2_500);
    assert_eq!(order["item_count"], 3);
    assert_eq!(order["tracking_number"], "TRK-777");
    assert_eq!(order["version"], 5);
    assert!(order["placed_at"].as_str().unwrap().ends_with('Z'), "RFC 3339 UTC: {}", order["placed_at"]);

    for path in ["/orders/%00", "/orders?customer_id=%00"] {
        let (status, _, error) = get(&base, path).await;
        assert_eq!(status, 400, "{path}: {error}");
        assert!(error["error"].as_str().unwrap_or_default().contains("control characters"), "{error}");
    }
    let (status, _, error) = get(&base, "/orders/no-such-order").await;
    assert_eq!(status, 404);
    assert_eq!(error["error"], "order no-such-order not found");

    // Newest first: failed (t0+3s), early (t0+2s), cancelled (t0+1s), confirmed (t0).
    let (status, _, first) = get(&base, &format!("/orders?customer_id={customer}&limit=3")).await;
    assert_eq!(status, 200);
    assert_eq!(order_ids(&first), [&failed_id, &early_id, &cancelled_id].map(String::clone));
    assert_eq!(first["has_more"], true);
    let (_, _, second) = get(&base, &format!("/orders?customer_id={customer}&limit=3&page=2")).await;
    assert_eq!(order_ids(&second), std::slice::from_ref(&confirmed_id));
    assert_eq!(second["has_more"], false);

    let (_, _, cancelled_listing) = get(&base, &format!("/orders?customer_id={customer}&status=CANCELLED")).await;
    assert_eq!(order_ids(&cancelled_listing), [failed_id.clone(), cancelled_id.clone()]);
    assert_eq!(cancelled_listing["orders"][1]["cancellation_reason"], "shipment_failed");

    for (query, message) in [
        ("limit=101", "limit must be an integer from 1 to 100, got \"101\""),
        ("page=0", "page must be an integer from 1 to 1000000, got \"0\""),
        (
            "status=SHIPPED",
            "status \"SHIPPED\" is not one of PLACED, PAID, RESERVED, CONFIRMED, COMPENSATING, CANCELLED, REQUIRES_INTERVENTION",
        ),
    ] {
        let (status, _, error) = get(&base, &format!("/orders?{query}")).await;
        assert_eq!((status, error["error"].as_str()), (400, Some(message)), "{query}");
    }
    let (status, _, _) = get(&base, &format!("/orders/{confirmed_id}?min_version=-1")).await;
    assert_eq!(status, 400);

    // Read-your-writes: a reader asking for version 1 of an order (as POST /orders returned it)
    // not projected yet waits for it.
    let awaited_placed = placed(&awaited_id, &customer, now_ms());
    let waiting_reader = {
        let (base, path) = (base.clone(), format!("/orders/{awaited_id}?min_version=1"));
        tokio::spawn(async move {
            let started = Instant::now();
            (get(&base, &path).await, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    producer.send_at_version(&topics, &awaited_placed, 1).await;
    let ((status, fresh, order), waited) = waiting_reader.await.unwrap();
    assert_eq!((status, fresh.as_deref()), (200, Some("true")), "{order}");
    assert_eq!((order["status"].as_str(), order["order_version"].as_i64()), (Some("PLACED"), Some(1)));
    assert!(waited < Duration::from_secs(5), "answered as soon as projected, took {waited:?}");

    // Events of other services do not count as versions of the order: 5 events projected, but
    // the order service's version 1 was never seen, so it is not fresh.
    // A version that never comes: after the bounded wait, what there is, marked stale.
    let started = Instant::now();
    let (status, fresh, order) = get(&base, &format!("/orders/{confirmed_id}?min_version=99")).await;
    assert_eq!((status, fresh.as_deref(), order["version"].as_i64()), (200, Some("false"), Some(5)));
    assert!(started.elapsed() >= Duration::from_secs(5), "waited the bound first");

    projector.stop().await;

    // A replay of everything (a new group, as after an offset reset) changes no row.
    let mut replay = config.clone();
    replay.group_id = unique("projector-replay");
    let replaying = RunningProjector::start(|stopped| run_projector(replay, codec.clone(), pool.clone(), stopped));
    // Every valid record once more: early 3, confirmed 7 (2 of them duplicates), cancelled 7, failed 3, awaited 1.
    let replayed_duplicates = 3 + 7 + 7 + 3 + 1;
    let duplicates = || topics.all().iter().map(|topic| counter(topic, "duplicate")).sum::<f64>();
    let deadline = Instant::now() + WAIT;
    while duplicates() < f64::from(2 + replayed_duplicates) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_counter(&topics.0[ORDER_EVENTS], "undecodable", 2.0).await;
    replaying.stop().await;
    assert_eq!(duplicates(), f64::from(2 + replayed_duplicates), "every replayed event was a duplicate");
    let applied: f64 = topics.all().iter().map(|topic| counter(topic, "applied")).sum();
    assert_eq!(applied, 19.0, "each distinct event was applied once, across both runs");
    for (order_id, version, status) in [
        (&confirmed_id, 5, "CONFIRMED"),
        (&cancelled_id, 7, "CANCELLED"),
        (&failed_id, 3, "CANCELLED"),
        (&early_id, 3, "RESERVED"),
        (&awaited_id, 1, "PLACED"),
    ] {
        let row = row(&db, order_id).await.unwrap();
        assert_eq!((row.version, row.status.as_str()), (version, status), "{order_id} after the replay");
    }
}

/// The chaos soak found a poison record dead-lettered six times by one projector: while
/// PostgreSQL was down, each retry of flagging its order produced the dead letter again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_is_dead_lettered_once_however_long_the_database_is_down() {
    let Fixture { bootstrap, db, codec, topics, producer, .. } = Fixture::new().await;
    let outage = Outage::down_in_front_of(port("POSTGRES_PORT")).await;
    let pool = pipeline::db::pool(&postgres_config_at(outage.port()), 2).expect("postgres pool");
    let order_id = unique("poison");
    let order_topic = &topics.0[ORDER_EVENTS];
    producer.send_bytes(order_topic, &order_id, b"not avro at all").await;

    let mut config = ProjectorConfig::new(&bootstrap);
    config.group_id = unique("projector-outage");
    config.topics = topics.all();
    let projector =
        RunningProjector::start(|stopped| run_projector(config.clone(), codec.clone(), pool.clone(), stopped));
    // Long enough for several attempts at flagging the order (backoff 0.5 s, 1 s, 2 s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    outage.bring_up();
    let deadline = Instant::now() + WAIT;
    let flagged = loop {
        let problem = projection_problem(&db, &order_id).await;
        if problem.is_some() || Instant::now() > deadline {
            break problem;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    projector.stop().await;
    assert!(flagged.is_some_and(|p| p.contains("magic")), "the order is flagged once the database is back");
    assert_eq!(dead_letters(&bootstrap, order_topic).len(), 1, "dead letters of the one poison record");
}

/// A local chaos run after a broker restart found poison records dead-lettered twice by the
/// projector: its offset commits failed ("Not coordinator") until its session timed out, and
/// the group read the records since its last commit again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_read_again_after_an_uncommitted_offset_is_not_dead_lettered_again() {
    let Fixture { bootstrap, pool, db, codec, topics, producer } = Fixture::new().await;
    let order_id = unique("poison-again");
    let order_topic = &topics.0[ORDER_EVENTS];
    producer.send_bytes(order_topic, &order_id, b"not avro at all").await;
    let mut config = ProjectorConfig::new(&bootstrap);
    config.group_id = unique("projector-reread");
    config.topics = topics.all();
    for (run, undecodable) in [(1, 1.0), (2, 2.0)] {
        if run == 2 {
            rewind_group(&bootstrap, &config.group_id, order_topic);
        }
        let projector =
            RunningProjector::start(|stopped| run_projector(config.clone(), codec.clone(), pool.clone(), stopped));
        wait_for_counter(order_topic, "undecodable", undecodable).await;
        projector.stop().await;
    }
    let flagged = projection_problem(&db, &order_id).await;
    assert!(flagged.is_some_and(|p| p.contains("magic")), "the order is flagged");
    assert_eq!(
        dead_letters(&bootstrap, order_topic).len(),
        1,
        "dead letters of the one poison record, read twice by one group"
    );
}

async fn projection_problem(db: &Client, order_id: &str) -> Option<String> {
    let row = db
        .query_opt("select projection_problem from order_view where order_id = $1", &[&order_id])
        .await
        .expect("query");
    row.and_then(|row| row.get(0))
}

/// The records of `topic`'s dead-letter topic, read until a second one would show.
fn dead_letters(bootstrap: &str, topic: &str) -> Vec<integration_tests::kafka::Consumed> {
    integration_tests::kafka::read_topic(
        bootstrap,
        &format!("{topic}.dlq"),
        "read_committed",
        Duration::from_secs(5),
        |records| records.len() > 1,
    )
}

/// Commits offset 0 on every partition of `topic` for `group`, whose members have all left: the
/// group reads the topic again, as after offset commits that failed.
fn rewind_group(bootstrap: &str, group: &str, topic: &str) {
    use rdkafka::consumer::{CommitMode, Consumer};
    let (consumer, partitions) = group_member(bootstrap, group, topic);
    let mut list = rdkafka::TopicPartitionList::new();
    for partition in partitions {
        list.add_partition_offset(topic, partition, rdkafka::Offset::Offset(0)).expect("offset");
    }
    consumer.commit(&list, CommitMode::Sync).expect("kafka: rewinding the group");
}

/// A consumer in `group` that joins nothing, and `topic`'s partitions.
fn group_member(bootstrap: &str, group: &str, topic: &str) -> (rdkafka::consumer::BaseConsumer, Vec<i32>) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().expect("consumer");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("kafka: metadata");
    let partitions = metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    (consumer, partitions)
}

/// What the group has committed and what the partitions hold, summed over `topic`'s partitions.
fn committed_and_end(bootstrap: &str, group: &str, topic: &str) -> (i64, i64) {
    use rdkafka::consumer::Consumer;
    let (consumer, partitions) = group_member(bootstrap, group, topic);
    let mut list = rdkafka::TopicPartitionList::new();
    let mut end = 0;
    for partition in partitions {
        list.add_partition(topic, partition);
        end += consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)).expect("kafka: watermarks").1;
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).expect("kafka: committed offsets");
    let committed = committed.elements().iter().map(|e| e.offset().to_raw().filter(|o| *o >= 0).unwrap_or(0)).sum();
    (committed, end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_commits_its_last_offsets_while_idle() {
    let Fixture { bootstrap, pool, db, codec, topics, producer } = Fixture::new().await;
    let mut config = ProjectorConfig::new(&bootstrap);
    config.group_id = unique("projector-idle");
    config.topics = topics.all();
    config.commit_interval = Duration::from_millis(200);
    let projector =
        RunningProjector::start(|stopped| run_projector(config.clone(), codec.clone(), pool.clone(), stopped));

    // A burst, then quiet: the last records of the burst arrive within one commit interval.
    let customer = unique("customer");
    let order_ids: Vec<String> = (0..5).map(|i| unique(&format!("idle-{i}"))).collect();
    for order_id in &order_ids {
        producer.send(&topics, &placed(order_id, &customer, now_ms())).await;
    }
    for order_id in &order_ids {
        wait_for_version(&db, order_id, 1).await;
    }
    let order_topic = &topics.0[ORDER_EVENTS];
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut committed, mut end) = committed_and_end(&bootstrap, &config.group_id, order_topic);
    while committed < end && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        (committed, end) = committed_and_end(&bootstrap, &config.group_id, order_topic);
    }
    projector.stop().await;
    assert_eq!((committed, end), (5, 5), "every projected record is committed while the projector is idle");
}

/// `projector_batch_events{group}`: (batches, events) the projector of `group` wrote.
fn batches(group: &str) -> (u64, f64) {
    prometheus::default_registry()
        .gather()
        .iter()
        .filter(|family| family.name() == "projector_batch_events")
        .flat_map(|family| family.get_metric())
        .filter(|metric| metric.get_label().iter().any(|l| l.name() == "group" && l.value() == group))
        .map(|metric| (metric.get_histogram().get_sample_count(), metric.get_histogram().get_sample_sum()))
        .fold((0, 0.0), |(count, sum), (c, s)| (count + c, sum + s))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_projected_in_batches_with_the_views_of_one_event_at_a_time() {
    let Fixture { bootstrap, pool, db, codec, topics, producer } = Fixture::new().await;
    // A backlog before the projector starts: three events per order on three topics, and a
    // duplicate of every tenth order's payment, which may land in the same batch as the original.
    let customer = unique("customer");
    let orders = 100;
    let order_ids: Vec<String> = (0..orders).map(|i| unique(&format!("batch-{i}"))).collect();
    for (i, order_id) in order_ids.iter().enumerate() {
        let placed = placed(order_id, &customer, now_ms());
        let paid = paid(&placed, &customer);
        let reserved = reserved(&paid);
        for event in [&placed, &paid, &reserved] {
            producer.send(&topics, event).await;
        }
        if i % 10 == 0 {
            producer.send(&topics, &paid).await;
        }
    }
    let mut config = ProjectorConfig::new(&bootstrap);
    config.group_id = unique("projector-batch");
    config.topics = topics.all();
    let projector =
        RunningProjector::start(|stopped| run_projector(config.clone(), codec.clone(), pool.clone(), stopped));
    for order_id in &order_ids {
        let view = wait_for_version(&db, order_id, 3).await;
        assert_eq!((view.status.as_str(), view.version), ("RESERVED", 3), "order {order_id}");
    }
    wait_for_counter(&topics.0[PAYMENT_EVENTS], "duplicate", (orders / 10) as f64).await;
    projector.stop().await;

    let (count, events) = batches(&config.group_id);
    let records = (orders * 3 + orders / 10) as f64;
    assert_eq!(events, records, "every record is in exactly one written batch");
    assert!(
        (count as f64) < records / 2.0,
        "{records} records in {count} batches: a backlog is written many events per transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orders_of_one_batch_keep_their_own_columns_and_a_parked_order_its_outstanding_compensations() {
    let Fixture { bootstrap, pool, db, codec, topics, producer } = Fixture::new().await;
    let customer = unique("customer");
    // Written in one statement per batch, in order-id order: the parked order comes first on the
    // topics and last in that order.
    let (parked_id, charged_id) = (unique("z-parked"), unique("a-charged"));
    let parked_placed = placed(&parked_id, &customer, now_ms() - 2_000);
    let parked_paid = paid(&parked_placed, &customer);
    // Out of stock: the charge must be refunded, and the refund does not come.
    let cancelled = after(
        &parked_paid,
        Payload::OrderCancelled(OrderCancelled {
            customer_id: customer.clone(),
            reason: CancellationReason::InsufficientStock,
            total_cents: 2_500,
        }),
    );
    let parked = after(
        &cancelled,
        Payload::OrderRequiresIntervention(OrderRequiresIntervention {
            reason: "refund_failed".into(),
            outstanding: vec!["refund".into(), "release \"all\", now".into()],
        }),
    );
    let charged_placed = placed(&charged_id, &format!("{customer}-2"), now_ms() - 1_000);
    let charged_paid = paid(&charged_placed, &format!("{customer}-2"));
    for event in [&parked_placed, &parked_paid, &cancelled, &parked, &charged_placed, &charged_paid] {
        producer.send(&topics, event).await;
    }
    let mut config = ProjectorConfig::new(&bootstrap);
    config.group_id = unique("projector-columns");
    config.topics = topics.all();
    let projector =
        RunningProjector::start(|stopped| run_projector(config.clone(), codec.clone(), pool.clone(), stopped));
    let parked_row = wait_for_version(&db, &parked_id, 4).await;
    let charged_row = wait_for_version(&db, &charged_id, 2).await;
    projector.stop().await;

    assert_eq!(parked_row.status, "REQUIRES_INTERVENTION");
    assert_eq!(charged_row.status, "PAID");
    assert_eq!(parked_row.customer_id.as_deref(), Some(customer.as_str()));
    assert_eq!(charged_row.customer_id, Some(format!("{customer}-2")));
    assert_eq!(parked_row.placed_at_ms, Some(parked_placed.envelope.occurred_at));
    assert_eq!(charged_row.placed_at_ms, Some(charged_placed.envelope.occurred_at));
    let intervention = db
        .query_one(
            "select intervention_reason, outstanding_compensations from order_view where order_id = $1",
            &[&parked_id],
        )
        .await
        .expect("postgres: reading the intervention");
    assert_eq!(intervention.get::<_, Option<String>>(0).as_deref(), Some("refund_failed"));
    assert_eq!(
        intervention.get::<_, Option<Vec<String>>>(1),
        Some(vec!["refund".to_string(), "release \"all\", now".to_string()]),
        "the outstanding compensations, quotes and commas kept"
    );
    let none: Option<Vec<String>> = db
        .query_one("select outstanding_compensations from order_view where order_id = $1", &[&charged_id])
        .await
        .expect("postgres: reading the other order")
        .get(0);
    assert_eq!(none, None, "an order that is not parked keeps none");
}
