//! Repartition topics against the broker: an old backlog survives them (no time retention), and
//! what is consumed and committed is deleted (the purge).

use std::time::{Duration, Instant};

use integration_tests::kafka::{admin, create_topic_with, read_topic, KEEP_OLD_RECORDS};
use integration_tests::stack::{kafka_bootstrap, unique};
use operators::dsl::{Consumed, Produced, Repartitioned, StreamsBuilder};
use operators::runtime::{KafkaStreams, StreamsConfig};
use operators::serdes::{I64Serde, StringSerde};
use rdkafka::admin::{AdminOptions, ResourceSpecifier};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const WAIT: Duration = Duration::from_secs(60);
/// November 2023: older than any topic's default 7-day retention.
const BACKLOG_MS: i64 = 1_700_000_000_000;
const PARTITIONS: i32 = 2;

fn send_backlog(bootstrap: &str, topic: &str, values: std::ops::Range<i64>) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("producer");
    for value in values {
        let (key, payload) = (format!("k{value}"), value.to_be_bytes());
        producer.send(BaseRecord::to(topic).key(&key).payload(&payload).timestamp(BACKLOG_MS)).expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

/// input → `<app>-by-key-repartition` → output.
fn through_repartition(input: &str, output: &str, app: &str) -> operators::topology::Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, i64>(input, Consumed::with(StringSerde, I64Serde))
        .repartition(Repartitioned::with(StringSerde, I64Serde).with_name("by-key"))
        .to(output, Produced::with(StringSerde, I64Serde));
    builder.build(app)
}

/// The topics of one test: its input and output created, and the repartition topic's name.
struct Names {
    bootstrap: String,
    input: String,
    output: String,
    app: String,
    repartition: String,
}

impl Names {
    async fn create(prefix: &str) -> Self {
        let bootstrap = kafka_bootstrap();
        let id = unique(prefix);
        let (input, output, app) = (format!("{id}-input"), format!("{id}-output"), format!("{id}-app"));
        create_topic_with(&bootstrap, &input, PARTITIONS, &[KEEP_OLD_RECORDS]).await;
        create_topic_with(&bootstrap, &output, PARTITIONS, &[KEEP_OLD_RECORDS]).await;
        let repartition = format!("{app}-by-key-repartition");
        Names { bootstrap, input, output, app, repartition }
    }
}

/// Each partition's (low, high) watermarks.
fn watermarks(bootstrap: &str, topic: &str) -> Vec<(i64, i64)> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("watermark consumer");
    (0..PARTITIONS)
        .map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("kafka: watermarks"))
        .collect()
}

/// The topic's configs as the broker has them now.
async fn topic_configs(bootstrap: &str, topic: &str) -> rdkafka::admin::ConfigResource {
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let described = admin(bootstrap)
        .describe_configs([&ResourceSpecifier::Topic(topic)], &options)
        .await
        .expect("kafka: describe configs");
    described.into_iter().next().expect("one resource").expect("the topic's configs")
}

fn value<'a>(configs: &'a rdkafka::admin::ConfigResource, key: &str) -> Option<&'a str> {
    configs.get(key).and_then(|e| e.value.as_deref())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repartition_topic_an_earlier_version_created_loses_its_time_retention_and_keeps_its_other_configs() {
    let Names { bootstrap, input, output, app, repartition } = Names::create("repartition-upgrade").await;
    // As an earlier version left it: the broker's time retention, and a setting of the operator's.
    create_topic_with(&bootstrap, &repartition, PARTITIONS, &[("max.message.bytes", "2000000")]).await;
    let config = StreamsConfig::new(app.as_str(), bootstrap.as_str());
    let streams = KafkaStreams::start(through_repartition(&input, &output, &app), config, &prometheus::Registry::new())
        .expect("start");
    send_backlog(&bootstrap, &input, 0..10);
    let out = read_topic(&bootstrap, &output, "read_committed", WAIT, |r| r.len() >= 10);
    let configs = topic_configs(&bootstrap, &repartition).await;
    streams.close().expect("close");

    assert_eq!(out.len(), 10, "every record through the repartition topic");
    assert_eq!(value(&configs, "retention.ms"), Some("-1"), "no time retention any more");
    assert_eq!(value(&configs, "segment.bytes"), Some("52428800"));
    assert_eq!(value(&configs, "max.message.bytes"), Some("2000000"), "the operator's setting stays");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repartition_topic_keeps_an_old_backlog_and_deletes_what_was_committed() {
    let Names { bootstrap, input, output, app, repartition } = Names::create("repartition-purge").await;
    let mut config = StreamsConfig::new(app.as_str(), bootstrap.as_str());
    config.repartition_purge_interval = Duration::from_millis(200);
    let streams = KafkaStreams::start(through_repartition(&input, &output, &app), config, &prometheus::Registry::new())
        .expect("start");

    send_backlog(&bootstrap, &input, 0..100);
    let first = read_topic(&bootstrap, &output, "read_committed", WAIT, |r| r.len() >= 100);
    let first_batch_end = watermarks(&bootstrap, &repartition);
    // A commit after the purge interval purges up to the positions committed so far.
    std::thread::sleep(Duration::from_millis(400));
    send_backlog(&bootstrap, &input, 100..200);
    let all = read_topic(&bootstrap, &output, "read_committed", WAIT, |r| r.len() >= 200);
    let deadline = Instant::now() + WAIT;
    // Past every record of the first batch (the commit marker after them may stay).
    let purged = |now: &[(i64, i64)]| now.iter().zip(&first_batch_end).all(|(now, end)| now.0 >= end.1 - 1);
    let mut now = watermarks(&bootstrap, &repartition);
    while Instant::now() < deadline && !purged(&now) {
        std::thread::sleep(Duration::from_millis(200));
        now = watermarks(&bootstrap, &repartition);
    }
    let configs = topic_configs(&bootstrap, &repartition).await;
    streams.close().expect("close");

    assert_eq!((first.len(), all.len()), (100, 200), "every record through the repartition topic, once");
    assert!(
        all.iter().all(|r| r.timestamp_ms == Some(BACKLOG_MS)),
        "the backlog keeps its timestamps through the repartition topic"
    );
    assert_eq!(
        value(&configs, "retention.ms"),
        Some("-1"),
        "no time retention: it would delete an old backlog before it is read"
    );
    assert!(
        purged(&now),
        "the records of the first batch, consumed and committed, are deleted: low watermarks {now:?}, the first batch ended at {first_batch_end:?}"
    );
}
