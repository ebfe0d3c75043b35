//! The four saga participants on the real stack: each topology runs in its own `KafkaStreams`
//! (unique application ids and topics), OrderPlaced events go straight to Kafka, and outcomes
//! are read back `read_committed`, along with the `shipments` rows and Redis keys shipping
//! leaves behind. Poison records of every kind on the order topic are dead-lettered by each
//! participant while good orders go on.

use std::collections::HashMap;
use std::time::Duration;

use apache_avro::types::Value as AvroValue;
use integration_tests::kafka::{create_topic, key_on_partition, read_topic};
use integration_tests::saga::{self, RunOptions, SagaRun};
use integration_tests::stack::{kafka_bootstrap, postgres_config, redis_url, registry_url, unique};
use operators::idempotency::GuardConfig;
use operators::record::Header;
use operators::runtime::kafka_headers;
use operators::runtime::{KafkaStreams, StreamsConfig};
use operators::serdes::Serde;
use pipeline::event_serde::EventSerde;
use pipeline::participants::inventory::InventoryConfig;
use pipeline::participants::order_saga::SagaConfig;
use pipeline::participants::payment::PaymentConfig;
use pipeline::participants::shipping::{
    cancellation_key, idempotency_key, Cancellation, GuardedShipments, ShipmentGateway, ShippingConfig, GUARD_NAMESPACE,
};
use pipeline::participants::{inventory, order_saga, payment, shipping, SagaTopics};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
use schema_registry_converter::async_impl::easy_avro::EasyAvroEncoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema};
use schemas::{
    Address, CancellationReason, Envelope, EventType, Money, OrderItem, OrderPlaced, Payload, SagaEvent,
    DEFAULT_CURRENCY, HEADER_LEN,
};
use tokio::runtime::Runtime;

const PARTITIONS: i32 = 6;
const WAIT: Duration = Duration::from_secs(120);

fn runtime() -> Runtime {
    Runtime::new().expect("tokio runtime")
}

/// Applies the migrations, so the `shipments` table exists.
fn migrate(runtime: &Runtime) {
    let pool = pipeline::db::pool(&postgres_config(), 2).expect("postgres pool");
    runtime.block_on(pipeline::db::migrate(&pool)).unwrap_or_else(|e| panic!("postgres: migrations failed: {e:#}"));
}

fn shipments_of(runtime: &Runtime, order_id: &str) -> Vec<(String, String)> {
    runtime.block_on(integration_tests::saga::shipments_of(order_id))
}

fn redis_connection() -> redis::Connection {
    redis::Client::open(redis_url())
        .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("redis is down or refuses connections: {e}"))
}

fn order_placed(order_id: &str, customer_id: &str, items: &[(&str, i32, i64)], country: &str) -> SagaEvent {
    let items: Vec<OrderItem> = items
        .iter()
        .map(|&(product_id, quantity, unit_price_cents)| {
            OrderItem::new(product_id, quantity, Money::new(unit_price_cents, DEFAULT_CURRENCY))
        })
        .collect();
    let total_cents = items.iter().map(|item| i64::from(item.quantity) * item.unit_price_cents).sum();
    let shipping_address = Address {
        line1: "Main St 1".into(),
        line2: None,
        city: "Berlin".into(),
        postal_code: "10115".into(),
        country: country.into(),
    };
    let placed = OrderPlaced {
        customer_id: customer_id.into(),
        items,
        total_cents,
        shipping_address,
        currency: DEFAULT_CURRENCY.into(),
        coupon_code: None,
    };
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    SagaEvent::new(Envelope::new(order_id, format!("corr-{order_id}"), now), Payload::OrderPlaced(placed))
}

fn produce(bootstrap: &str, topic: &str, serde: &EventSerde, events: &[&SagaEvent]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .create()
        .expect("producer");
    for event in events {
        let value = serde.serialize(topic, event).expect("encode an OrderPlaced");
        producer
            .send(BaseRecord::to(topic).key(&event.envelope.order_id).payload(&value))
            .unwrap_or_else(|(e, _)| panic!("kafka: producing to {topic} failed: {e}"));
    }
    producer.flush(Duration::from_secs(30)).unwrap_or_else(|e| panic!("kafka: flushing to {topic} failed: {e}"));
}

/// Everything committed to `topic`, decoded, read until `done` holds (or the wait ends).
fn committed_events(
    bootstrap: &str,
    topic: &str,
    serde: &EventSerde,
    done: impl Fn(&[SagaEvent]) -> bool,
) -> Vec<SagaEvent> {
    let decode = |records: &[integration_tests::kafka::Consumed]| -> Vec<SagaEvent> {
        records
            .iter()
            .map(|record| {
                let event =
                    serde.deserialize(topic, record.value.as_deref().unwrap_or_default()).expect("a saga event");
                assert_eq!(
                    record.key.as_deref(),
                    Some(event.envelope.order_id.as_bytes()),
                    "saga events are keyed by order id"
                );
                event
            })
            .collect()
    };
    let records = read_topic(bootstrap, topic, "read_committed", WAIT, |records| done(&decode(records)));
    decode(&records)
}

fn of<'a>(events: &'a [SagaEvent], order_id: &str, event_type: EventType) -> Vec<&'a SagaEvent> {
    events.iter().filter(|event| event.envelope.order_id == order_id && event.event_type() == event_type).collect()
}

fn start(topology: operators::topology::Topology, application_id: &str, bootstrap: &str) -> KafkaStreams {
    let config = StreamsConfig::new(application_id, bootstrap);
    KafkaStreams::start(topology, config, &prometheus::Registry::new())
        .unwrap_or_else(|e| panic!("kafka: starting {application_id} failed: {e}"))
}

#[test]
fn orders_reach_their_outcomes_through_the_four_participants() {
    let bootstrap = kafka_bootstrap();
    let runtime = runtime();
    migrate(&runtime);
    let serde = runtime.block_on(integration_tests::saga::event_serde());

    let run = unique("participants");
    let topics = SagaTopics::with_prefix(&run);
    for topic in [&topics.order, &topics.payment, &topics.inventory, &topics.shipping] {
        runtime.block_on(create_topic(&bootstrap, topic, PARTITIONS));
    }
    let (rich, poor, rare) = (format!("{run}-rich"), format!("{run}-poor"), format!("{run}-rare"));
    let payment_config = PaymentConfig {
        application_id: format!("{run}-payment"),
        topics: topics.clone(),
        initial_balances: HashMap::from([(poor.clone(), 100)]),
        default_balance_cents: 100_000,
        ..PaymentConfig::default()
    };
    let inventory_config = InventoryConfig {
        application_id: format!("{run}-inventory"),
        topics: topics.clone(),
        initial_stock: HashMap::from([(rare.clone(), 1)]),
        default_stock: 100,
        ..InventoryConfig::default()
    };
    let shipping_config = ShippingConfig {
        application_id: format!("{run}-shipping"),
        topics: topics.clone(),
        ..ShippingConfig::new(postgres_config(), redis_url(), vec!["DE".into()])
    };
    let saga_config =
        SagaConfig { application_id: format!("{run}-saga"), topics: topics.clone(), ..SagaConfig::default() };
    let shipping_topology = shipping::topology(serde.clone(), &shipping_config).expect("shipping topology");
    let streams = [
        start(payment::topology(serde.clone(), &payment_config), &payment_config.application_id, &bootstrap),
        start(inventory::topology(serde.clone(), &inventory_config), &inventory_config.application_id, &bootstrap),
        start(shipping_topology, &shipping_config.application_id, &bootstrap),
        start(order_saga::topology(serde.clone(), &saga_config), &saga_config.application_id, &bootstrap),
    ];

    let ok = order_placed(&format!("{run}-ok"), &rich, &[("apple", 2, 1_000), ("pear", 1, 500)], "DE");
    let broke = order_placed(&format!("{run}-funds"), &poor, &[("apple", 1, 1_000)], "DE");
    let scarce = order_placed(&format!("{run}-stock"), &rich, &[("apple", 1, 1_000), (&rare, 2, 1_000)], "DE");
    let abroad = order_placed(&format!("{run}-address"), &rich, &[("apple", 1, 1_000)], "US");
    // Debezium is at-least-once: the first order arrives twice.
    produce(&bootstrap, &topics.order, &serde, &[&ok, &broke, &scarce, &abroad, &ok]);
    let id = |event: &SagaEvent| event.envelope.order_id.clone();

    let decided = committed_events(&bootstrap, &topics.order, &serde, |events| {
        of(events, &id(&ok), EventType::OrderConfirmed).len() == 1
            && [&broke, &scarce, &abroad]
                .iter()
                .all(|order| of(events, &id(order), EventType::OrderCancelled).len() == 1)
    });
    let payments = committed_events(&bootstrap, &topics.payment, &serde, |events| {
        !of(events, &id(&ok), EventType::PaymentCompleted).is_empty()
            && !of(events, &id(&broke), EventType::PaymentFailed).is_empty()
            && [&scarce, &abroad].iter().all(|order| !of(events, &id(order), EventType::PaymentRefunded).is_empty())
    });
    let stock = committed_events(&bootstrap, &topics.inventory, &serde, |events| {
        !of(events, &id(&ok), EventType::InventoryReserved).is_empty()
            && !of(events, &id(&scarce), EventType::InventoryReservationFailed).is_empty()
            && !of(events, &id(&abroad), EventType::InventoryReleased).is_empty()
    });
    let shipments = committed_events(&bootstrap, &topics.shipping, &serde, |events| {
        !of(events, &id(&ok), EventType::ShipmentCreated).is_empty()
            && !of(events, &id(&abroad), EventType::ShipmentFailed).is_empty()
    });
    for (name, stream) in ["payment", "inventory", "shipping", "order saga"].into_iter().zip(streams) {
        stream.close().unwrap_or_else(|e| panic!("the {name} stream thread failed: {e}"));
    }

    // Confirmed, charged once although placed twice, shipped once.
    let [confirmed] = of(&decided, &id(&ok), EventType::OrderConfirmed)[..] else {
        panic!("{run}-ok was not confirmed: {decided:?}")
    };
    let Payload::OrderConfirmed(confirmation) = &confirmed.payload else { unreachable!() };
    assert_eq!(of(&payments, &id(&ok), EventType::PaymentCompleted).len(), 1, "charged once");
    assert_eq!(of(&stock, &id(&ok), EventType::InventoryReserved).len(), 1, "reserved once");
    let [created] = of(&shipments, &id(&ok), EventType::ShipmentCreated)[..] else {
        panic!("{run}-ok was not shipped: {shipments:?}")
    };
    let Payload::ShipmentCreated(shipment) = &created.payload else { unreachable!() };
    assert_eq!(confirmation.tracking_number, shipment.tracking_number);
    // Caused by whichever of payment, stock and shipment reached the saga last (they travel on different topics).
    let steps =
        [&payments, &stock, &shipments].into_iter().flatten().filter(|event| event.envelope.order_id == id(&ok));
    let step_ids: Vec<&str> = steps.map(|event| event.envelope.event_id.as_str()).collect();
    assert!(confirmed.envelope.causation_id.as_deref().is_some_and(|cause| step_ids.contains(&cause)), "{confirmed:?}");
    assert_eq!(confirmed.envelope.correlation_id, ok.envelope.correlation_id);
    assert_eq!(shipments_of(&runtime, &id(&ok)), [(shipment.shipment_id.clone(), shipment.tracking_number.clone())]);

    let reason = |order: &SagaEvent| match &of(&decided, &id(order), EventType::OrderCancelled)[0].payload {
        Payload::OrderCancelled(cancelled) => cancelled.reason.clone(),
        other => panic!("expected OrderCancelled, got {other:?}"),
    };
    assert_eq!(reason(&broke), CancellationReason::PaymentFailed);
    assert!(of(&payments, &id(&broke), EventType::PaymentRefunded).is_empty(), "nothing was charged");
    assert_eq!(reason(&scarce), CancellationReason::InsufficientStock);
    assert_eq!(of(&payments, &id(&scarce), EventType::PaymentRefunded).len(), 1);

    // Compensations in reverse order: the refund is caused by the release.
    assert_eq!(reason(&abroad), CancellationReason::ShipmentFailed);
    let [released] = of(&stock, &id(&abroad), EventType::InventoryReleased)[..] else {
        panic!("no release: {stock:?}")
    };
    let [refunded] = of(&payments, &id(&abroad), EventType::PaymentRefunded)[..] else {
        panic!("no single refund: {payments:?}")
    };
    assert_eq!(refunded.envelope.causation_id.as_deref(), Some(released.envelope.event_id.as_str()));
    assert!(shipments_of(&runtime, &id(&abroad)).is_empty(), "a rejected address creates no shipment row");
}

#[test]
fn a_shipment_is_created_once_however_often_it_is_asked_for() {
    let runtime = runtime();
    migrate(&runtime);
    let config = ShippingConfig::new(postgres_config(), redis_url(), vec!["DE".into()]);
    let gateway = GuardedShipments::new(&config).expect("gateway");
    let order_id = unique("guarded-order");

    let first = gateway.create_shipment(&order_id).unwrap_or_else(|e| panic!("creating a shipment failed: {e}"));
    let again = gateway.create_shipment(&order_id).unwrap_or_else(|e| panic!("asking again failed: {e}"));
    assert_eq!(first, again, "a repeated request returns the shipment on record");
    assert_eq!(shipments_of(&runtime, &order_id), [(first.shipment_id.clone(), first.tracking_number.clone())]);

    let mut redis = redis_connection();
    let key = redis_key(&idempotency_key(&order_id));
    let state: Option<String> = redis::cmd("GET").arg(&key).query(&mut redis).expect("GET");
    assert_eq!(holder_state(state).as_deref(), Some("COMPLETED"));
    let ttl_s: i64 = redis::cmd("TTL").arg(&key).query(&mut redis).expect("TTL");
    assert!((604_000..=604_800).contains(&ttl_s), "COMPLETED is kept for 7 days, got {ttl_s} s");

    // Even with the key gone (expired, or Redis flushed) the table's primary key holds.
    let _: () = redis::cmd("DEL").arg(&key).query(&mut redis).expect("DEL");
    assert_eq!(gateway.create_shipment(&order_id).expect("after the key expired"), first);
    assert_eq!(shipments_of(&runtime, &order_id).len(), 1);
}

#[test]
fn a_batch_creates_each_shipment_once_and_returns_those_created_before() {
    let runtime = runtime();
    migrate(&runtime);
    let config = ShippingConfig::new(postgres_config(), redis_url(), vec!["DE".into()]);
    let gateway = GuardedShipments::new(&config).expect("gateway");
    let orders: Vec<String> = (0..3).map(|i| unique(&format!("batch-order-{i}"))).collect();
    let earlier = gateway.create_shipment(&orders[0]).unwrap_or_else(|e| panic!("creating a shipment failed: {e}"));

    let batch = gateway.create_shipments(&orders).unwrap_or_else(|e| panic!("the batch failed: {e}"));
    assert_eq!(batch.len(), 3, "{batch:?}");
    assert_eq!(batch.get(&orders[0]), Some(&earlier), "the shipment created before is returned as it is");
    let mut redis = redis_connection();
    for order_id in &orders {
        let shipment = &batch[order_id];
        assert_eq!(
            shipments_of(&runtime, order_id),
            [(shipment.shipment_id.clone(), shipment.tracking_number.clone())]
        );
        let state: Option<String> =
            redis::cmd("GET").arg(redis_key(&idempotency_key(order_id))).query(&mut redis).expect("GET");
        assert_eq!(holder_state(state).as_deref(), Some("COMPLETED"), "{order_id}");
    }
    let again = gateway.create_shipments(&orders).unwrap_or_else(|e| panic!("asking again failed: {e}"));
    assert_eq!(again, batch, "a repeated batch returns the shipments on record");
}

/// Another attempt's PROCESSING lease on the order's shipment key, for 30 s; returns its value.
fn hold_lease_for_another_attempt(redis: &mut redis::Connection, order_id: &str) -> &'static str {
    let other_lease = r#"{"state":"PROCESSING","token":"another-attempt"}"#;
    let _: () = redis::cmd("SET")
        .arg(redis_key(&idempotency_key(order_id)))
        .arg(other_lease)
        .arg("PX")
        .arg(30_000)
        .query(redis)
        .expect("SET");
    other_lease
}

#[test]
fn a_batch_with_a_held_lease_or_a_corrupt_key_creates_nothing_and_gives_up_its_own_leases() {
    let runtime = runtime();
    migrate(&runtime);
    let mut redis = redis_connection();
    let (free_order, busy_order) = (unique("batch-free-order"), unique("batch-leased-order"));
    let other_lease = hold_lease_for_another_attempt(&mut redis, &busy_order);
    let gateway = GuardedShipments::new(&ShippingConfig::new(postgres_config(), redis_url(), vec![])).expect("gateway");

    let error = gateway.create_shipments(&[free_order.clone(), busy_order.clone()]).expect_err("a lease is held");
    assert!(error.retriable, "{error}");
    assert!(shipments_of(&runtime, &free_order).is_empty() && shipments_of(&runtime, &busy_order).is_empty());
    let state: Option<String> =
        redis::cmd("GET").arg(redis_key(&idempotency_key(&free_order))).query(&mut redis).expect("GET");
    assert_eq!(state, None, "the batch gives up the lease it took, so the order need not wait for it");
    let held: Option<String> =
        redis::cmd("GET").arg(redis_key(&idempotency_key(&busy_order))).query(&mut redis).expect("GET");
    assert_eq!(held.as_deref(), Some(other_lease), "the other attempt's lease stays");

    // A key whose value does not read fails the batch too, and the batch's own leases go.
    let (free_order, corrupt_order) = (unique("batch-free-order"), unique("batch-corrupt-order"));
    let _: () = redis::cmd("SET")
        .arg(redis_key(&idempotency_key(&corrupt_order)))
        .arg("{not json")
        .query(&mut redis)
        .expect("SET");
    let error = gateway.create_shipments(&[free_order.clone(), corrupt_order.clone()]).expect_err("a key is corrupt");
    assert!(!error.retriable, "a corrupt key is not retried: {error}");
    let state: Option<String> =
        redis::cmd("GET").arg(redis_key(&idempotency_key(&free_order))).query(&mut redis).expect("GET");
    assert_eq!(state, None, "the lease taken before the corrupt key was found is given up");
}

#[test]
fn a_held_lease_or_a_database_outage_is_a_retriable_failure() {
    let runtime = runtime();
    migrate(&runtime);
    let mut redis = redis_connection();

    let busy_order = unique("leased-order");
    hold_lease_for_another_attempt(&mut redis, &busy_order);
    let gateway = GuardedShipments::new(&ShippingConfig::new(postgres_config(), redis_url(), vec![])).expect("gateway");
    let error = gateway.create_shipment(&busy_order).expect_err("another attempt holds the lease");
    assert!(error.retriable && error.message.contains("another attempt"), "{error}");
    assert_eq!(
        error.waiting_on,
        Some("idempotency lease"),
        "the record waits for the lease to run out, never dead-lettered"
    );
    assert!(shipments_of(&runtime, &busy_order).is_empty());

    let order_id = unique("db-down-order");
    let no_database = ShippingConfig {
        io_timeout: Duration::from_secs(2),
        ..ShippingConfig::new("host=127.0.0.1 port=1 user=saga dbname=saga", redis_url(), vec![])
    };
    let gateway = GuardedShipments::new(&no_database).expect("gateway");
    let error = gateway.create_shipment(&order_id).expect_err("postgres is unreachable");
    assert!(error.retriable && error.message.contains("postgres"), "{error}");
    assert_eq!(error.waiting_on, Some("postgres"), "an unreachable database pauses the partition");
    let state: Option<String> =
        redis::cmd("GET").arg(redis_key(&idempotency_key(&order_id))).query(&mut redis).expect("GET");
    assert_eq!(state, None, "the lease is given up so a retry need not wait for it to expire");
}

#[test]
fn giving_up_a_lease_never_deletes_the_lease_of_the_attempt_that_took_over() {
    let mut redis = redis_connection();
    // A database that accepts the connection and never answers: the attempt outlives its lease.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("address").port();
    let slow = ShippingConfig {
        io_timeout: Duration::from_secs(2),
        lease: Duration::from_millis(300),
        ..ShippingConfig::new(format!("host=127.0.0.1 port={port} user=saga dbname=saga"), redis_url(), vec![])
    };
    let gateway = GuardedShipments::new(&slow).expect("gateway");
    let order_id = unique("lease-order");
    let key = redis_key(&idempotency_key(&order_id));
    let attempt = std::thread::spawn(move || gateway.create_shipment(&order_id));
    std::thread::sleep(Duration::from_millis(800));
    // The first attempt's lease ran out; a second attempt takes the key.
    let taken: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg("PROCESSING:second-attempt")
        .arg("NX")
        .arg("PX")
        .arg(30_000)
        .query(&mut redis)
        .expect("SET");
    assert_eq!(taken.as_deref(), Some("OK"), "the first lease should have expired");

    let error = attempt.join().expect("attempt thread").expect_err("the silent database cannot create a shipment");
    assert!(error.retriable, "{error}");
    let holder: Option<String> = redis::cmd("GET").arg(&key).query(&mut redis).expect("GET");
    assert_eq!(
        holder.as_deref(),
        Some("PROCESSING:second-attempt"),
        "the first attempt deleted a lease it no longer held"
    );
    drop(silent);
}

#[test]
fn a_shipment_is_cancelled_once_and_not_once_it_is_with_the_carrier() {
    let runtime = runtime();
    migrate(&runtime);
    let config = ShippingConfig::new(postgres_config(), redis_url(), vec![]);
    let gateway = GuardedShipments::new(&config).expect("gateway");
    let order_id = unique("cancel-order");
    let shipment = gateway.create_shipment(&order_id).expect("create");
    assert_eq!(gateway.cancel_shipment(&order_id, &shipment.shipment_id).expect("cancel"), Cancellation::Cancelled);
    assert_eq!(
        gateway.cancel_shipment(&order_id, &shipment.shipment_id).expect("cancel again"),
        Cancellation::Cancelled
    );
    let mut redis = redis_connection();
    let state: Option<String> =
        redis::cmd("GET").arg(redis_key(&cancellation_key(&order_id))).query(&mut redis).expect("GET");
    assert_eq!(holder_state(state).as_deref(), Some("COMPLETED"));
    let cancelled = runtime.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(&postgres_config(), tokio_postgres::NoTls).await.expect("postgres");
        tokio::spawn(connection);
        let row = client
            .query_one("SELECT cancelled_at IS NOT NULL FROM shipments WHERE order_id = $1", &[&order_id])
            .await
            .expect("row");
        row.get::<_, bool>(0)
    });
    assert!(cancelled, "shipments.cancelled_at is set");

    let handed_over = ShippingConfig { handover_after: Some(Duration::from_millis(1)), ..config };
    let gateway = GuardedShipments::new(&handed_over).expect("gateway");
    let late_order = unique("handed-over-order");
    let shipment = gateway.create_shipment(&late_order).expect("create");
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        matches!(
            gateway.cancel_shipment(&late_order, &shipment.shipment_id).expect("cancel"),
            Cancellation::TooLate { .. }
        ),
        "a shipment past the handover stays live"
    );
}

/// The Redis key shipping stores an idempotency key under.
fn redis_key(key: &str) -> String {
    GuardConfig::new(GUARD_NAMESPACE).redis_key(key)
}

/// The `state` of a guard's value (PROCESSING, COMPLETED).
fn holder_state(value: Option<String>) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(&value?).ok()?;
    value.get("state")?.as_str().map(str::to_owned)
}

/// One kind of poison record, as an independent producer writes it to the order topic.
struct PoisonRecord {
    kind: &'static str,
    key: String,
    value: Option<Vec<u8>>,
    /// What its dead letter's `dlq.error.message` must say.
    says: String,
    /// Where it landed, once produced.
    offset: i64,
    timestamp_ms: i64,
}

fn poison_headers(kind: &str) -> Vec<Header> {
    vec![
        Header::new("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec()),
        Header::new("poison.kind", kind.as_bytes().to_vec()),
        Header::new("binary", vec![0xff, 0x00, 0xfe]),
        Header::null("null-valued"),
    ]
}

/// Registers `schema` under `<topic>-<full name>` (TopicRecordNameStrategy) and encodes `record`
/// with it, in Confluent wire format: another producer's encoder, not the saga's codec.
async fn foreign_avro(topic: &str, full_name: &str, schema: &str, record: AvroValue) -> Vec<u8> {
    let strategy = SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
        topic.to_string(),
        SuppliedSchema::new(Some(full_name.into()), SchemaType::Avro, schema.into()),
    );
    EasyAvroEncoder::new(SrSettings::new(registry_url()))
        .encode_value(record, &strategy)
        .await
        .unwrap_or_else(|e| panic!("registry: registering {full_name} under {topic} failed: {e}"))
}

async fn delete_subject(subject: &str) {
    let client = reqwest::Client::new();
    let url = format!("{}/subjects/{subject}", registry_url());
    let _ = client.delete(&url).send().await;
    let _ = client.delete(format!("{url}?permanent=true")).send().await;
}

/// A schema id the registry has never given out.
async fn unknown_schema_id() -> u32 {
    for candidate in (0..100u32).map(|n| 1_900_000_000 + (uuid::Uuid::new_v4().as_u128() % 50_000_000) as u32 + n) {
        let status = reqwest::get(format!("{}/schemas/ids/{candidate}", registry_url()))
            .await
            .expect("GET /schemas/ids")
            .status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return candidate;
        }
    }
    panic!("registry: found no unused schema id");
}

/// Every kind of record that cannot be read, produced to the order topic between good orders by
/// a producer that is not the saga's codec: each is dead-lettered once by each of the four
/// participants (all four read the order topic) to `<order topic>.dlq`, on its partition, with
/// its key, value and headers byte for byte and the `dlq.*` headers, and the good orders before,
/// between and after them on the same partition are confirmed, each charged, reserved and
/// shipped once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_kind_of_poison_record_is_dead_lettered_by_every_reader_and_good_orders_go_on() {
    const POISON_PARTITIONS: i32 = 3;
    const P: i32 = 1;
    let serde = integration_tests::saga::event_serde().await;
    let run_id = unique("poison");
    let run = SagaRun::start(
        &run_id,
        &serde,
        RunOptions { partitions: POISON_PARTITIONS, step_timeout: Some(Duration::from_secs(120)) },
    )
    .await;
    let topic = run.topics.order.clone();

    // The poison, built by hand or by another encoder.
    let unknown_id = unknown_schema_id().await;
    let mut unknown = vec![0u8];
    unknown.extend_from_slice(&unknown_id.to_be_bytes());
    unknown.extend_from_slice(&[0x02, 0x04, 0x06, 0x08]);
    let whole = serde
        .serialize(&topic, &saga::order_placed(&format!("{run_id}-truncated"), "c-truncated"))
        .expect("an OrderPlaced");
    let truncated = whole[..HEADER_LEN + (whole.len() - HEADER_LEN) / 2].to_vec();
    let foreign_schema = r#"{"type": "record", "name": "Foreign", "namespace": "run.poison", "fields": [{"name": "note", "type": "string"}]}"#;
    let foreign = foreign_avro(
        &topic,
        "run.poison.Foreign",
        foreign_schema,
        AvroValue::Record(vec![("note".into(), AvroValue::String("not ours".into()))]),
    )
    .await;
    // Named like our OrderPlaced, but nothing of it resolves against the reader's schema.
    let impostor_name = format!("{}.OrderPlaced", schemas::NAMESPACE);
    let impostor_schema = format!(
        r#"{{"type": "record", "name": "OrderPlaced", "namespace": "{}", "fields": [{{"name": "order_id", "type": "long"}}]}}"#,
        schemas::NAMESPACE
    );
    let impostor = foreign_avro(
        &topic,
        &impostor_name,
        &impostor_schema,
        AvroValue::Record(vec![("order_id".into(), AvroValue::Long(42))]),
    )
    .await;
    let kinds: Vec<(&str, Option<Vec<u8>>, String)> = vec![
        ("bad-magic-byte", Some(b"\x01\x00\x00\x00\x01not framed".to_vec()), "magic byte".into()),
        ("unknown-schema-id", Some(unknown), format!("writer schema {unknown_id}")),
        ("truncated-avro", Some(truncated), "cannot decode an Avro OrderPlaced body".into()),
        ("not-a-saga-event", Some(foreign), "is not a saga event".into()),
        ("unresolvable-schema", Some(impostor), "cannot decode an Avro OrderPlaced body".into()),
        ("empty-value", Some(Vec::new()), "too short".into()),
        ("null-value", None, "null value".into()),
    ];

    // good, poison, good, poison, …, good: all on partition P, in this order.
    let produced_at_ms = saga::now_ms();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &run.bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let send = |key: String, value: Option<Vec<u8>>, headers: Vec<Header>, timestamp_ms: i64| {
        let (producer, topic) = (&producer, &topic);
        async move {
            let mut record = FutureRecord::<[u8], [u8]>::to(topic)
                .partition(P)
                .key(key.as_bytes())
                .timestamp(timestamp_ms)
                .headers(kafka_headers(&headers));
            if let Some(value) = value.as_deref() {
                record = record.payload(value);
            }
            let delivery = producer
                .send(record, Duration::from_secs(10))
                .await
                .unwrap_or_else(|(e, _)| panic!("kafka: producing to {topic} failed: {e}"));
            assert_eq!(delivery.partition, P);
            delivery.offset
        }
    };
    let mut good = Vec::new();
    let mut poison = Vec::new();
    for (i, kind) in kinds.into_iter().map(Some).chain([None]).enumerate() {
        let order_id = key_on_partition(&format!("{run_id}-good{i}"), P, POISON_PARTITIONS);
        let placed = saga::order_placed(&order_id, &format!("{run_id}-customer"));
        send(order_id.clone(), Some(serde.serialize(&topic, &placed).expect("an OrderPlaced")), vec![], saga::now_ms())
            .await;
        good.push(order_id);
        if let Some((kind, value, says)) = kind {
            let key = format!("{run_id}-poison-{kind}");
            let timestamp_ms = 1_700_000_000_000 + i as i64;
            let offset = send(key.clone(), value.clone(), poison_headers(kind), timestamp_ms).await;
            poison.push(PoisonRecord { kind, key, value, says, offset, timestamp_ms });
        }
    }

    // Every good order confirmed, and every reader's dead letter of the last poison record
    // committed (each reader writes its dead letters in the order of the partition).
    let decided = run.events(&topic, |events| {
        good.iter().all(|order| !saga::of(events, order, EventType::OrderConfirmed).is_empty())
    });
    let last = poison.last().expect("poison").offset.to_string();
    let dlq_topic = format!("{topic}.dlq");
    let dead = read_topic(&run.bootstrap, &dlq_topic, "read_committed", saga::WAIT, |records| {
        run.groups.iter().all(|group| {
            records.iter().any(|r| {
                r.header("dlq.consumer.group") == Some(group.as_bytes())
                    && r.header("dlq.original.offset") == Some(last.as_bytes())
            })
        })
    });
    let last_good = good.last().expect("good orders");
    let payments =
        run.events(&run.topics.payment, |events| !saga::of(events, last_good, EventType::PaymentCompleted).is_empty());
    let stock = run
        .events(&run.topics.inventory, |events| !saga::of(events, last_good, EventType::InventoryReserved).is_empty());
    let shipped =
        run.events(&run.topics.shipping, |events| !saga::of(events, last_good, EventType::ShipmentCreated).is_empty());
    let groups = run.groups.clone();
    run.assert_running();
    run.close();
    delete_subject(&format!("{topic}-run.poison.Foreign")).await;
    delete_subject(&format!("{topic}-{impostor_name}")).await;

    for order in &good {
        assert_eq!(
            saga::of(&decided, order, EventType::OrderConfirmed).len(),
            1,
            "{order} confirmed once: {:?}",
            saga::summary(&decided, order)
        );
        assert_eq!(saga::of(&decided, order, EventType::OrderCancelled).len(), 0, "{order} was cancelled");
        assert_eq!(saga::of(&payments, order, EventType::PaymentCompleted).len(), 1, "{order} charged once");
        assert_eq!(saga::of(&stock, order, EventType::InventoryReserved).len(), 1, "{order} reserved once");
        assert_eq!(saga::of(&shipped, order, EventType::ShipmentCreated).len(), 1, "{order} shipped once");
        assert_eq!(saga::shipments_of(order).await.len(), 1, "{order} has one shipments row");
    }

    // Each poison record: one dead letter per reader, nothing else in the DLQ.
    assert_eq!(
        dead.len(),
        poison.len() * groups.len(),
        "one dead letter per poison record and reader: {:#?}",
        saga::dead_letter_summary(&dead)
    );
    for record in &poison {
        let original_headers: Vec<(String, Option<Vec<u8>>)> =
            poison_headers(record.kind).into_iter().map(|h| (h.key, h.value)).collect();
        for group in &groups {
            let offset = record.offset.to_string();
            let letters: Vec<_> = dead
                .iter()
                .filter(|r| {
                    r.header("dlq.consumer.group") == Some(group.as_bytes())
                        && r.header("dlq.original.offset") == Some(offset.as_bytes())
                })
                .collect();
            let [letter] = letters[..] else {
                panic!(
                    "{} ({}): {} dead letters from {group}: {:#?}",
                    record.kind,
                    record.offset,
                    letters.len(),
                    saga::dead_letter_summary(&dead)
                )
            };
            let text = |name: &str| {
                String::from_utf8_lossy(
                    letter.header(name).unwrap_or_else(|| panic!("{}: no {name} header", record.kind)),
                )
                .into_owned()
            };
            assert_eq!(letter.partition, P, "{}: on the original partition", record.kind);
            // The original is from 2023: a letter timestamped like it would be deleted by the
            // DLQ's 7-day retention at the broker's next check.
            assert!(
                letter.timestamp_ms.is_some_and(|t| t >= produced_at_ms),
                "{}: timestamped when it failed, not {:?}",
                record.kind,
                letter.timestamp_ms
            );
            assert_eq!(letter.key.as_deref(), Some(record.key.as_bytes()), "{}: the key", record.kind);
            assert_eq!(letter.value, record.value, "{}: the value, byte for byte (null stays null)", record.kind);
            let (original, added) = letter.headers.split_at(original_headers.len().min(letter.headers.len()));
            assert_eq!(original, &original_headers[..], "{}: the original headers first, byte for byte", record.kind);
            let added: Vec<&str> = added.iter().map(|(key, _)| key.as_str()).collect();
            assert_eq!(
                added,
                [
                    "dlq.original.topic",
                    "dlq.original.partition",
                    "dlq.original.offset",
                    "dlq.original.timestamp",
                    "dlq.consumer.group",
                    "dlq.processor",
                    "dlq.error.class",
                    "dlq.error.message",
                    "dlq.attempts",
                    "dlq.failed.at"
                ],
                "{}",
                record.kind
            );
            assert_eq!(text("dlq.original.topic"), topic, "{}", record.kind);
            assert_eq!(text("dlq.original.partition"), P.to_string(), "{}", record.kind);
            assert_eq!(text("dlq.original.timestamp"), record.timestamp_ms.to_string(), "{}", record.kind);
            assert_eq!(text("dlq.error.class"), "poison", "{}: {}", record.kind, text("dlq.error.message"));
            assert_eq!(text("dlq.attempts"), "1", "{}: dead-lettered at once, never retried", record.kind);
            assert!(
                text("dlq.processor").starts_with("KSTREAM-SOURCE-"),
                "{}: the source node that could not read it: {}",
                record.kind,
                text("dlq.processor")
            );
            assert!(
                text("dlq.failed.at").parse::<i64>().is_ok_and(|at| at >= record.timestamp_ms),
                "{}: {}",
                record.kind,
                text("dlq.failed.at")
            );
            let message = text("dlq.error.message");
            assert!(
                message.contains(&record.says),
                "{}: the message says what is wrong ({:?}): {message}",
                record.kind,
                record.says
            );
        }
    }
}

/// Producers and consumers on different versions of OrderPlaced, on the real stack: an order a
/// v1 producer wrote and one a v2 producer wrote both go through the (v2) saga to CONFIRMED
/// with their amounts intact, and a reader still on v1 reads the v2 producer's record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_from_a_v1_and_a_v2_producer_both_complete_and_a_v1_reader_reads_v2() {
    let serde = integration_tests::saga::event_serde().await;
    let run_id = unique("versions");
    let run = SagaRun::start(&run_id, &serde, RunOptions::default()).await;
    let registry =
        schemas::RegistryClient::new(registry_url().trim_end_matches("/apis/ccompat/v7")).expect("registry url");
    let subject = schemas::subject_for(&run.topics.order, EventType::OrderPlaced);
    registry.set_compatibility(&subject, schemas::Compatibility::FullTransitive).await.expect("registry: PUT /config");
    let v1_text = schemas::schema_versions_of(EventType::OrderPlaced).next().expect("a v1").text;
    let v1_id = registry.register(&subject, v1_text).await.expect("registry: registering OrderPlaced v1");

    let (v1_order, v2_order) = (format!("{run_id}-v1"), format!("{run_id}-v2"));
    let v1_value = schemas::to_wire(v1_id, &saga::order_placed_v1_body(&saga::order_placed(&v1_order, "c-v1")));
    let v2_value =
        serde.serialize(&run.topics.order, &saga::order_placed(&v2_order, "c-v2")).expect("a v2 OrderPlaced");
    // The participants' partitioner, so that the order's replies land on its partition.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &run.bootstrap)
        .set("partitioner", "murmur2_random")
        .create()
        .expect("producer");
    for (order, value) in [(&v1_order, &v1_value), (&v2_order, &v2_value)] {
        producer
            .send(
                FutureRecord::<str, [u8]>::to(&run.topics.order).key(order.as_str()).payload(value),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("kafka: producing to {} failed: {e}", run.topics.order));
    }

    let topic = run.topics.order.clone();
    let events = tokio::task::block_in_place(|| {
        run.events(&topic, |events| {
            [&v1_order, &v2_order].iter().all(|order| !saga::of(events, order, EventType::OrderConfirmed).is_empty())
        })
    });
    for order in [&v1_order, &v2_order] {
        let confirmed = saga::of(&events, order, EventType::OrderConfirmed);
        let [confirmed] = &confirmed[..] else {
            let mut seen: Vec<String> = Vec::new();
            for topic in [&run.topics.order, &run.topics.payment, &run.topics.inventory, &run.topics.shipping] {
                let all = tokio::task::block_in_place(|| {
                    integration_tests::kafka::read_to_end(&run.bootstrap, topic, "read_committed")
                });
                seen.extend(
                    all.iter()
                        .filter_map(|r| serde.deserialize(topic, r.value.as_deref()?).ok().map(|e| (r, e)))
                        .filter(|(_, e)| &e.envelope.order_id == order)
                        .map(|(r, e)| {
                            format!("{topic}@{}:{} t={} {:?}", r.partition, r.offset, e.envelope.occurred_at, e.payload)
                        }),
                );
            }
            panic!("{order}: one OrderConfirmed, got {}; its events: {seen:?}", confirmed.len())
        };
        let Payload::OrderConfirmed(confirmed) = &confirmed.event.payload else { unreachable!() };
        assert_eq!(confirmed.total_cents, 1_000, "{order}: the amount survives");
    }

    // The v2 reader (the saga's codec) read the v1 record, upcast.
    let [v1_placed] = &saga::of(&events, &v1_order, EventType::OrderPlaced)[..] else {
        panic!("one OrderPlaced of {v1_order}")
    };
    assert_eq!(schemas::parse_wire(v1_placed.record.value.as_deref().unwrap()).unwrap().0, v1_id, "written with v1");
    let Payload::OrderPlaced(placed) = &v1_placed.event.payload else { unreachable!() };
    assert_eq!((placed.customer_id.as_str(), placed.total_cents, placed.currency.as_str()), ("c-v1", 1_000, "EUR"));
    assert_eq!(placed.items[0].unit_price, Some(Money::new(1_000, "EUR")));

    // A consumer still on v1 reads the v2 producer's record with the deprecated cents intact.
    let (v2_id, body) = schemas::parse_wire(&v2_value).unwrap();
    let writer = registry.schema_by_id(v2_id).await.expect("registry: the v2 schema");
    let v1 = schemas::schema_version_of(EventType::OrderPlaced, 1).unwrap();
    let read = apache_avro::reader::datum::GenericDatumReader::builder(&writer).reader_schema(v1).build().unwrap();
    let AvroValue::Record(fields) = read.read_value(&mut &body[..]).expect("v1 reads v2") else { panic!("a record") };
    let field = |name: &str| fields.iter().find(|(field, _)| field == name).map(|(_, value)| value.clone());
    assert_eq!(field("customer_id"), Some(AvroValue::String("c-v2".into())));
    assert_eq!(field("total_cents"), Some(AvroValue::Long(1_000)));
    let Some(AvroValue::Array(items)) = field("items") else { panic!("items") };
    let AvroValue::Record(item) = &items[0] else { panic!("an item record") };
    assert!(item.contains(&("unit_price_cents".to_string(), AvroValue::Long(1_000))), "{item:?}");
    assert!(!fields.iter().any(|(name, _)| name == "currency"), "a v1 reader sees no v2 field");
    run.close();
}
