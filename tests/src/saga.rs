//! The four saga participants (payment, inventory, shipping, order saga) running in-process on
//! topics and application ids of their own, for tests that feed them records (straight to Kafka,
//! through Debezium, or through the DLQ admin) and check what came of it: the events committed
//! to the four topics, the `shipments` rows and shipping's Redis guard.

use std::collections::HashMap;
use std::time::Duration;

use operators::idempotency::GuardConfig;
use operators::runtime::{KafkaStreams, StreamsConfig};
use operators::serdes::Serde;
use pipeline::event_serde::EventSerde;
use pipeline::participants::inventory::InventoryConfig;
use pipeline::participants::order_saga::SagaConfig;
use pipeline::participants::payment::PaymentConfig;
use pipeline::participants::shipping::{idempotency_key, ShippingConfig, GUARD_NAMESPACE};
use pipeline::participants::{inventory, order_saga, payment, shipping, SagaTopics};
use schemas::{
    Address, Envelope, EventType, Money, OrderItem, OrderPlaced, Payload, RegistryResolver, SagaCodec, SagaEvent,
    DEFAULT_CURRENCY,
};

use crate::kafka::{create_topic, read_topic, Consumed};
use crate::stack::{kafka_bootstrap, postgres_config, redis_url, registry_with_saga_schemas};

/// How long a test waits for the events it expects.
pub const WAIT: Duration = Duration::from_secs(120);

/// The saga's codec, with every event schema registered and its id looked up.
pub async fn saga_codec() -> SagaCodec {
    let registry = registry_with_saga_schemas().await;
    let resolver = RegistryResolver::prepare(registry)
        .await
        .unwrap_or_else(|e| panic!("registry: looking up the saga schemas failed: {e}"));
    SagaCodec::new(resolver)
}

/// [`saga_codec`] for the stream thread and for synchronous test code.
pub async fn event_serde() -> EventSerde {
    EventSerde::new(saga_codec().await)
}

/// Applies the migrations, so `shipments` (and the rest) exist.
pub async fn migrate() {
    let pool = pipeline::db::pool(&postgres_config(), 2).expect("postgres pool");
    pipeline::db::migrate(&pool).await.unwrap_or_else(|e| panic!("postgres is down or refuses the migrations: {e:#}"));
}

/// What a run may change from the defaults.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Partitions of each of the four topics.
    pub partitions: i32,
    /// How long the saga waits for each step (payment, inventory, shipping) before it cancels.
    pub step_timeout: Option<Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { partitions: 3, step_timeout: None }
    }
}

/// The four participants on `<prefix>.order.events` and so on; every customer has 1 000 €
/// and every product 100 in stock; shipping serves DE.
pub struct SagaRun {
    pub bootstrap: String,
    pub topics: SagaTopics,
    pub serde: EventSerde,
    /// Application ids (= consumer groups, `dlq.consumer.group`), in the order payment,
    /// inventory, shipping, order saga.
    pub groups: [String; 4],
    streams: Vec<(&'static str, KafkaStreams)>,
}

impl SagaRun {
    /// Creates the four topics and starts the participants on them.
    pub async fn start(prefix: &str, serde: &EventSerde, options: RunOptions) -> SagaRun {
        let bootstrap = kafka_bootstrap();
        migrate().await;
        let topics = SagaTopics::with_prefix(prefix);
        for topic in [&topics.order, &topics.payment, &topics.inventory, &topics.shipping] {
            create_topic(&bootstrap, topic, options.partitions).await;
        }
        let groups = ["payment", "inventory", "shipping", "saga"].map(|name| format!("{prefix}-{name}"));
        let payment_config = PaymentConfig {
            application_id: groups[0].clone(),
            topics: topics.clone(),
            initial_balances: HashMap::new(),
            default_balance_cents: 100_000,
            ..PaymentConfig::default()
        };
        let inventory_config = InventoryConfig {
            application_id: groups[1].clone(),
            topics: topics.clone(),
            default_stock: 100,
            ..InventoryConfig::default()
        };
        let shipping_config = ShippingConfig {
            application_id: groups[2].clone(),
            topics: topics.clone(),
            ..ShippingConfig::new(postgres_config(), redis_url(), vec!["DE".into()])
        };
        let mut saga_config =
            SagaConfig { application_id: groups[3].clone(), topics: topics.clone(), ..SagaConfig::default() };
        if let Some(timeout) = options.step_timeout {
            saga_config.payment_timeout = timeout;
            saga_config.inventory_timeout = timeout;
            saga_config.shipping_timeout = timeout;
        }
        let shipping_topology = shipping::topology(serde.clone(), &shipping_config).expect("shipping topology");
        let start = |name: &'static str, topology, group: &str| {
            let streams = KafkaStreams::start(
                topology,
                StreamsConfig::new(group, bootstrap.as_str()),
                &prometheus::Registry::new(),
            )
            .unwrap_or_else(|e| panic!("kafka: starting {name} ({group}) failed: {e}"));
            (name, streams)
        };
        let streams = vec![
            start("payment", payment::topology(serde.clone(), &payment_config), &groups[0]),
            start("inventory", inventory::topology(serde.clone(), &inventory_config), &groups[1]),
            start("shipping", shipping_topology, &groups[2]),
            start("order saga", order_saga::topology(serde.clone(), &saga_config), &groups[3]),
        ];
        SagaRun { bootstrap, topics, serde: serde.clone(), groups, streams }
    }

    /// Fails the test if a participant stopped on an error.
    pub fn assert_running(&self) {
        for (name, streams) in &self.streams {
            assert!(!streams.is_finished(), "the {name} stream thread stopped");
        }
    }

    /// Stops the participants; fails the test if one of them failed.
    pub fn close(self) {
        for (name, streams) in self.streams {
            streams.close().unwrap_or_else(|e| panic!("the {name} stream thread failed: {e}"));
        }
    }

    /// Everything committed to `topic` that decodes as a saga event, with its record, read
    /// (read_committed) until `done` holds or [`WAIT`] passed. Records that do not decode (the
    /// poison a test produced) are left out.
    pub fn events(&self, topic: &str, done: impl Fn(&[Delivered]) -> bool) -> Vec<Delivered> {
        let decode = |records: &[Consumed]| -> Vec<Delivered> {
            records
                .iter()
                .filter_map(|record| {
                    let event = self.serde.deserialize(topic, record.value.as_deref()?).ok()?;
                    Some(Delivered { record: record.clone(), event })
                })
                .collect()
        };
        let records = read_topic(&self.bootstrap, topic, "read_committed", WAIT, |records| done(&decode(records)));
        decode(&records)
    }
}

/// A saga event as committed, with the record that carried it.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub record: Consumed,
    pub event: SagaEvent,
}

/// The events of `order_id` of type `event_type`.
pub fn of<'a>(events: &'a [Delivered], order_id: &str, event_type: EventType) -> Vec<&'a Delivered> {
    events.iter().filter(|d| d.event.envelope.order_id == order_id && d.event.event_type() == event_type).collect()
}

/// An OrderPlaced of `customer_id` for one apple at 10 €, shipped to Berlin.
pub fn order_placed(order_id: &str, customer_id: &str) -> SagaEvent {
    let items = vec![OrderItem::new("apple", 1, Money::new(1_000, DEFAULT_CURRENCY))];
    let shipping_address = Address {
        line1: "Main St 1".into(),
        line2: None,
        city: "Berlin".into(),
        postal_code: "10115".into(),
        country: "DE".into(),
    };
    let placed = OrderPlaced {
        customer_id: customer_id.into(),
        items,
        total_cents: 1_000,
        shipping_address,
        currency: DEFAULT_CURRENCY.into(),
        coupon_code: None,
    };
    SagaEvent::new(Envelope::new(order_id, format!("corr-{order_id}"), now_ms()), Payload::OrderPlaced(placed))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The `shipments` rows of an order, as (shipment id, tracking number).
pub async fn shipments_of(order_id: &str) -> Vec<(String, String)> {
    let (client, connection) = tokio_postgres::connect(&postgres_config(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("postgres is down or refuses connections: {e}"));
    tokio::spawn(connection);
    let rows = client
        .query("SELECT shipment_id::text, tracking_number FROM shipments WHERE order_id = $1", &[&order_id])
        .await
        .expect("query shipments");
    rows.iter().map(|row| (row.get(0), row.get(1))).collect()
}

pub fn redis_connection() -> redis::Connection {
    redis::Client::open(redis_url())
        .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("redis is down or refuses connections: {e}"))
}

/// The Redis key of shipping's idempotency guard for the shipment of `order_id`.
pub fn shipment_guard_key(order_id: &str) -> String {
    GuardConfig::new(GUARD_NAMESPACE).redis_key(&idempotency_key(order_id))
}

/// The `state` (PROCESSING, COMPLETED) shipping's guard holds for the shipment of `order_id`.
pub fn shipment_guard_state(redis: &mut redis::Connection, order_id: &str) -> Option<String> {
    let value: Option<String> = redis::cmd("GET").arg(shipment_guard_key(order_id)).query(redis).expect("redis GET");
    let value: serde_json::Value = serde_json::from_str(&value?).ok()?;
    value.get("state")?.as_str().map(str::to_owned)
}

/// The events of `order_id`, as `EventType event_id [topic-partition@offset]`, for failure messages.
pub fn summary(events: &[Delivered], order_id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|d| d.event.envelope.order_id == order_id)
        .map(|d| {
            format!(
                "{:?} {} [{}@{}]",
                d.event.event_type(),
                d.event.envelope.event_id,
                d.record.partition,
                d.record.offset
            )
        })
        .collect()
}

/// Dead letters as `group: key @ original offset (class)`, for failure messages.
pub fn dead_letter_summary(records: &[Consumed]) -> Vec<String> {
    let text =
        |record: &Consumed, name: &str| String::from_utf8_lossy(record.header(name).unwrap_or_default()).into_owned();
    records
        .iter()
        .map(|r| {
            let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
            format!(
                "{}: {key} @ {} ({})",
                text(r, "dlq.consumer.group"),
                text(r, "dlq.original.offset"),
                text(r, "dlq.error.class")
            )
        })
        .collect()
}

/// The Avro body a producer still on OrderPlaced v1 writes for `event` (an OrderPlaced): the
/// current encoding read through the v1 schema, stamped `schema_version` 1, written with v1.
pub fn order_placed_v1_body(event: &SagaEvent) -> Vec<u8> {
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::types::Value;
    use apache_avro::writer::datum::GenericDatumWriter;

    let v1 = schemas::schema_version_of(EventType::OrderPlaced, 1).expect("avro/v1/OrderPlaced.avsc");
    let current = schemas::encode_avro_body(event).expect("an encodable OrderPlaced");
    let reader = GenericDatumReader::builder(schemas::schema_of(EventType::OrderPlaced))
        .reader_schema(v1)
        .build()
        .expect("v1 reader");
    let Value::Record(mut fields) = reader.read_value(&mut &current[..]).expect("v1 reads the current version") else {
        panic!("an OrderPlaced is a record")
    };
    fields.iter_mut().filter(|(name, _)| name == "schema_version").for_each(|(_, value)| *value = Value::Int(1));
    GenericDatumWriter::builder(v1)
        .build()
        .expect("v1 writer")
        .write_value_to_vec(Value::Record(fields))
        .expect("a v1 body")
}
