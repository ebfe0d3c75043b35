//! The operators runtime on bad input and failing outputs, against the real broker: each test
//! drives one fault path and checks, from `read_committed` output and committed offsets, that
//! nothing was lost, duplicated under exactly-once, or committed without its outputs.

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use integration_tests::eos::generate;
use integration_tests::kafka::{admin, create_topic, create_topic_with, read_topic, KEEP_OLD_RECORDS};
use integration_tests::metrics::gauge;
use integration_tests::stack::{kafka_bootstrap, unique};
use operators::dsl::Processed;
use operators::dsl::{Consumed, Produced, StreamsBuilder};
use operators::error::{ErrorPolicy, ProcessError, RetryPolicy};
use operators::processor::{Processor, ProcessorContext};
use operators::record::Record;
use operators::runtime::{
    dead_letter_topic, Health, KafkaStreams, ProcessingGuarantee, RuntimeError, State, StreamsConfig,
};
use operators::serdes::{BytesSerde, I64Serde, StringSerde};
use rdkafka::bindings as rdsys;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(60);

/// Input `n` (1-based i64) maps to `n` as 8 bytes, or to `big` bytes for the poison number.
fn passthrough_with_poison(input: &str, output: &str, poison: i64, big: usize) -> StreamsBuilder {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, i64>(input, Consumed::with(StringSerde, I64Serde))
        .map_values(move |n| if n == poison { vec![b'x'; big] } else { n.to_be_bytes().to_vec() })
        .to(output, Produced::with(StringSerde, BytesSerde));
    builder
}

fn values(records: &[integration_tests::kafka::Consumed]) -> Vec<i64> {
    records
        .iter()
        .map(|r| i64::from_be_bytes(r.value.clone().unwrap_or_default().try_into().unwrap_or_default()))
        .collect()
}

fn wait_for_state(streams: &KafkaStreams, wanted: State) {
    let deadline = Instant::now() + WAIT;
    while streams.state() != wanted {
        assert!(Instant::now() < deadline, "never reached {wanted}: stuck in {}", streams.state());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn topic_exists(bootstrap: &str, topic: &str) -> bool {
    let metadata = admin(bootstrap).inner().fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    metadata.topics().iter().any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
}

async fn broker_rejection_is_dead_lettered(guarantee: ProcessingGuarantee, name: &str) {
    let bootstrap = kafka_bootstrap();
    let id = unique(name);
    let (input, output) = (format!("{id}-input"), format!("{id}-output"));
    create_topic(&bootstrap, &input, 1).await;
    // The broker, not the client, rejects the poison output: it fails in a delivery report.
    create_topic_with(&bootstrap, &output, 1, &[("max.message.bytes", "2000")]).await;
    let (total, poison) = (500i64, 250i64);
    generate(&bootstrap, &input, 1, total);

    let mut config = StreamsConfig::new(format!("{id}-app"), bootstrap.as_str());
    config.processing_guarantee = guarantee;
    let streams = KafkaStreams::start(
        passthrough_with_poison(&input, &output, poison, 5_000).build(&format!("{id}-app")),
        config,
        &prometheus::Registry::new(),
    )
    .expect("start");
    let dead = read_topic(&bootstrap, &dead_letter_topic(&input), "read_committed", WAIT, |r| !r.is_empty());
    let expected: Vec<i64> = (1..=total).filter(|n| *n != poison).collect();
    // At-least-once shows outputs of a failed batch too; wait until every good record is there.
    let complete = |r: &[integration_tests::kafka::Consumed]| {
        let got: std::collections::BTreeSet<i64> = values(r).into_iter().collect();
        expected.iter().all(|n| got.contains(n))
    };
    let out = read_topic(&bootstrap, &output, "read_committed", WAIT, complete);
    assert!(!streams.is_finished(), "a rejected output must not stop the instance");
    streams.close().expect("close");

    assert_eq!(dead.len(), 1, "the record whose output the broker rejected is dead-lettered once");
    let reason = String::from_utf8_lossy(dead[0].header("dlq.error.message").unwrap_or_default()).into_owned();
    assert_eq!(
        dead[0].header("dlq.original.offset"),
        Some((poison - 1).to_string().as_bytes()),
        "dead-lettered because: {reason}"
    );
    assert_eq!(
        (dead[0].header("dlq.processor"), dead[0].header("dlq.error.class")),
        (Some(&b"produce"[..]), Some(&b"permanent"[..]))
    );
    let got = values(&out);
    match guarantee {
        ProcessingGuarantee::ExactlyOnceV2 => {
            assert_eq!(got, expected, "exactly once: every good record once, in order")
        }
        ProcessingGuarantee::AtLeastOnce => {
            let mut distinct = got.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct, expected, "at least once: every good record, none lost (repeats allowed)");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_rejected_output_poisons_its_input_under_exactly_once() {
    broker_rejection_is_dead_lettered(ProcessingGuarantee::ExactlyOnceV2, "fault-reject-eos").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_rejected_output_fails_the_commit_under_at_least_once_and_loses_nothing() {
    broker_rejection_is_dead_lettered(ProcessingGuarantee::AtLeastOnce, "fault-reject-alos").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_dead_letter_send_stops_the_instance_without_committing() {
    let bootstrap = kafka_bootstrap();
    let id = unique("fault-dlq");
    let (input, output) = (format!("{id}-input"), format!("{id}-output"));
    create_topic(&bootstrap, &input, 1).await;
    create_topic(&bootstrap, &output, 1).await;
    // The dead-letter topic takes nothing as large as the failing record.
    create_topic_with(&bootstrap, &dead_letter_topic(&input), 1, &[("max.message.bytes", "200")]).await;
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("producer");
    for n in 1..=20i64 {
        let value = if n == 10 { vec![0u8; 1_000] } else { n.to_be_bytes().to_vec() };
        producer.send(rdkafka::producer::BaseRecord::to(&input).key("k").payload(&value)).expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");

    // Record 10 is not an i64: deserialization fails, and its dead-letter copy is rejected.
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, i64>(&input, Consumed::with(StringSerde, I64Serde))
        .to(&output, Produced::with(StringSerde, I64Serde));
    let app = format!("{id}-app");
    let mut config = StreamsConfig::new(app.as_str(), bootstrap.as_str());
    // Everything in one transaction, so the good records before the bad one share its fate.
    config.commit_interval = Duration::from_secs(4);
    let streams = KafkaStreams::start(builder.build(&app), config, &prometheus::Registry::new()).expect("start");
    let error = streams.join().expect_err("the instance must stop on an undeliverable dead-letter record");
    assert!(matches!(error, RuntimeError::Undeliverable { .. }), "unexpected error: {error}");

    let committed = committed_offset(&bootstrap, &app, &input);
    assert!(committed.is_none_or(|offset| offset <= 9), "offsets past the failed record were committed: {committed:?}");
    let out = read_topic(&bootstrap, &output, "read_committed", Duration::from_secs(3), |_| false);
    assert!(out.is_empty(), "outputs of the failed transaction became visible: {:?}", values(&out));
}

/// Record 5's output is too large for the output topic: the broker rejects it, and the open
/// transaction can then only abort. Record 6 is held back a second, so that the rejection is
/// known before anything more is sent into the transaction. Then record 7 is sent: a
/// malformed record, whose dead letter the producer refuses (ERR__STATE), or a good one, whose
/// output it refuses. Neither refusal is about that record: the instance must blame record 5,
/// abort, replay, and go on.
async fn a_send_refused_after_a_rejected_delivery(name: &str, malformed_seventh: bool) {
    let bootstrap = kafka_bootstrap();
    let id = unique(name);
    let (input, output) = (format!("{id}-input"), format!("{id}-output"));
    create_topic(&bootstrap, &input, 1).await;
    create_topic_with(&bootstrap, &output, 1, &[("max.message.bytes", "2000")]).await;
    let total = 20i64;
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("producer");
    for n in 1..=total {
        let value = if n == 7 && malformed_seventh { vec![0u8; 100] } else { n.to_be_bytes().to_vec() };
        producer.send(rdkafka::producer::BaseRecord::to(&input).key("k").payload(&value)).expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");

    let builder = StreamsBuilder::new();
    builder
        .stream::<String, i64>(&input, Consumed::with(StringSerde, I64Serde))
        .filter(|_, n| {
            if *n == 6 {
                std::thread::sleep(Duration::from_secs(1));
            }
            *n != 6
        })
        .map_values(|n| if n == 5 { vec![b'x'; 5_000] } else { n.to_be_bytes().to_vec() })
        .to(&output, Produced::with(StringSerde, BytesSerde));
    let app = format!("{id}-app");
    let mut config = StreamsConfig::new(app.as_str(), bootstrap.as_str());
    // All twenty records in one transaction.
    config.commit_interval = Duration::from_secs(5);
    let streams = KafkaStreams::start(builder.build(&app), config, &prometheus::Registry::new()).expect("start");
    let dropped = |n: &i64| [5, 6].contains(n) || (*n == 7 && malformed_seventh);
    let expected: Vec<i64> = (1..=total).filter(|n| !dropped(n)).collect();
    let out = read_topic(&bootstrap, &output, "read_committed", WAIT, |r| values(r).contains(&total));
    let dead_letters = if malformed_seventh { 2 } else { 1 };
    let dead = read_topic(&bootstrap, &dead_letter_topic(&input), "read_committed", WAIT, |r| r.len() >= dead_letters);
    assert!(!streams.is_finished(), "a refused send must not stop the instance: {:?}", streams.join().err());
    streams.close().expect("close");

    assert_eq!(values(&out), expected, "exactly once: every good record once, in order");
    let mut dead_offsets: Vec<String> = dead
        .iter()
        .map(|r| String::from_utf8_lossy(r.header("dlq.original.offset").unwrap_or_default()).into_owned())
        .collect();
    dead_offsets.sort();
    let wanted: Vec<String> = if malformed_seventh { vec!["4".into(), "6".into()] } else { vec!["4".into()] };
    assert_eq!(dead_offsets, wanted, "record 5 (offset 4), and the malformed record 7, dead-lettered once each");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_refused_because_the_transaction_failed_aborts_and_replays() {
    a_send_refused_after_a_rejected_delivery("fault-dlq-state", true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_output_refused_because_the_transaction_failed_blames_the_rejected_record() {
    a_send_refused_after_a_rejected_delivery("fault-out-state", false).await;
}

fn committed_offset(bootstrap: &str, group: &str, topic: &str) -> Option<i64> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).expect("committed offsets");
    match committed.elements()[0].offset() {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_skip_policy_skips_a_poisoned_record_instead_of_looping() {
    let bootstrap = kafka_bootstrap();
    let id = unique("fault-skip");
    let (input, output) = (format!("{id}-input"), format!("{id}-output"));
    create_topic(&bootstrap, &input, 1).await;
    create_topic(&bootstrap, &output, 1).await;
    let (total, poison) = (300i64, 150i64);
    generate(&bootstrap, &input, 1, total);

    let mut config = StreamsConfig::new(format!("{id}-app"), bootstrap.as_str());
    config.error_policy = ErrorPolicy::Skip;
    let registry = prometheus::Registry::new();
    // Over the client's message.max.bytes: the send fails at once, inside the transaction.
    let builder = passthrough_with_poison(&input, &output, poison, 2_000_000);
    let streams = KafkaStreams::start(builder.build(&format!("{id}-app")), config, &registry).expect("start");
    let out = read_topic(&bootstrap, &output, "read_committed", WAIT, |r| values(r).contains(&total));
    assert!(!streams.is_finished(), "the instance must keep running");
    streams.close().expect("close");

    let expected: Vec<i64> = (1..=total).filter(|n| *n != poison).collect();
    assert_eq!(values(&out), expected);
    assert!(!topic_exists(&bootstrap, &dead_letter_topic(&input)), "Skip makes no dead-letter topic");
    let skipped: f64 = registry
        .gather()
        .iter()
        .filter(|family| family.name() == "streams_records_failed_total")
        .flat_map(|family| family.get_metric().iter())
        .filter(|m| m.get_label().iter().any(|l| l.value() == "skipped"))
        .filter(|m| m.get_label().iter().any(|l| l.value() == format!("{id}-app")))
        .map(|m| m.get_counter().value())
        .sum();
    // More than once if a later abort replays it again; never a loop, and never output.
    assert!(skipped >= 1.0, "the poisoned record must be counted as skipped");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_abort_before_any_commit_replays_the_batch_under_offset_reset_latest() {
    let bootstrap = kafka_bootstrap();
    let id = unique("fault-latest");
    let (input, output) = (format!("{id}-input"), format!("{id}-output"));
    create_topic(&bootstrap, &input, 1).await;
    create_topic(&bootstrap, &output, 1).await;
    let mut config = StreamsConfig::new(format!("{id}-app"), bootstrap.as_str());
    config.auto_offset_reset = "latest".into();
    config.commit_interval = Duration::from_secs(2);
    let (total, poison) = (200i64, 100i64);
    let builder = passthrough_with_poison(&input, &output, poison, 2_000_000);
    let streams =
        KafkaStreams::start(builder.build(&format!("{id}-app")), config, &prometheus::Registry::new()).expect("start");
    wait_for_state(&streams, State::Running);
    // Let the consumer settle its starting position at the (empty) end before data arrives.
    std::thread::sleep(Duration::from_secs(2));
    generate(&bootstrap, &input, 1, total);

    let out = read_topic(&bootstrap, &output, "read_committed", WAIT, |r| values(r).contains(&total));
    streams.close().expect("close");
    let expected: Vec<i64> = (1..=total).filter(|n| *n != poison).collect();
    assert_eq!(values(&out), expected, "the records of the aborted first batch must be replayed, not skipped");
}

/// Produces one record with a header key that is not UTF-8 and a header with a null value,
/// through librdkafka directly: rdkafka's Rust API only takes `&str` keys.
fn produce_raw_headers(bootstrap: &str, topic: &str) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("producer");
    let topic_c = CString::new(topic).expect("topic name");
    // Header names go in NUL-terminated; values as (pointer, size).
    let (bad_key, null_key, key, value) = (b"\xffbad\0", b"null-value\0", b"k", 7i64.to_be_bytes());
    let vtype = |t: rdsys::rd_kafka_vtype_t| t as c_int;
    // SAFETY: every pointer outlives the call (RD_KAFKA_MSG_F_COPY copies the payload).
    let err = unsafe {
        rdsys::rd_kafka_producev(
            producer.client().native_ptr(),
            vtype(rdsys::rd_kafka_vtype_t::RD_KAFKA_VTYPE_TOPIC),
            topic_c.as_ptr(),
            vtype(rdsys::rd_kafka_vtype_t::RD_KAFKA_VTYPE_KEY),
            key.as_ptr() as *const c_void,
            key.len(),
            vtype(rdsys::rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE),
            value.as_ptr() as *const c_void,
            value.len(),
            vtype(rdsys::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADER),
            bad_key.as_ptr() as *const c_char,
            b"v".as_ptr() as *const c_void,
            1isize,
            vtype(rdsys::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADER),
            null_key.as_ptr() as *const c_char,
            std::ptr::null::<c_void>(),
            0isize,
            vtype(rdsys::rd_kafka_vtype_t::RD_KAFKA_VTYPE_MSGFLAGS),
            rdsys::RD_KAFKA_MSG_F_COPY as c_int,
            vtype(rdsys::rd_kafka_vtype_t::RD_KAFKA_VTYPE_END),
        )
    };
    assert_eq!(err, rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR, "producev failed");
    producer.flush(Duration::from_secs(10)).expect("flush");
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_header_bytes_neither_panic_nor_lose_the_record_and_null_stays_null() {
    let bootstrap = kafka_bootstrap();
    let id = unique("fault-headers");
    let (input, output) = (format!("{id}-input"), format!("{id}-output"));
    create_topic(&bootstrap, &input, 1).await;
    create_topic(&bootstrap, &output, 1).await;
    produce_raw_headers(&bootstrap, &input);
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, i64>(&input, Consumed::with(StringSerde, I64Serde))
        .to(&output, Produced::with(StringSerde, I64Serde));
    let streams = KafkaStreams::start(
        builder.build(&format!("{id}-app")),
        StreamsConfig::new(format!("{id}-app"), bootstrap.as_str()),
        &prometheus::Registry::new(),
    )
    .expect("start");
    let out = read_topic(&bootstrap, &output, "read_committed", WAIT, |r| !r.is_empty());
    assert!(!streams.is_finished(), "the instance must survive the record");
    streams.close().expect("close");
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].headers,
        vec![("\u{fffd}bad".to_string(), Some(b"v".to_vec())), ("null-value".to_string(), None)],
        "the undecodable key is kept (lossily decoded), the null value stays null"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn start_returns_at_once_and_reports_a_failed_start_as_the_error_state() {
    // Nothing listens on port 1: the stream thread cannot even read topic metadata.
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, i64>("in", Consumed::with(StringSerde, I64Serde))
        .to("out", Produced::with(StringSerde, I64Serde));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let listener = Box::new(move |new: State, _old: State| log.lock().unwrap().push(new));
    let streams = KafkaStreams::start_with_state_listener(
        builder.build("unreachable-app"),
        StreamsConfig::new("unreachable-app", "127.0.0.1:1"),
        &prometheus::Registry::new(),
        Some(listener),
    )
    .expect("start does no network I/O on the caller's thread");
    assert_eq!(streams.state(), State::Created, "start returned before the stream thread got anywhere");
    let error = tokio::task::spawn_blocking(move || streams.join())
        .await
        .expect("join")
        .expect_err("a start that cannot reach Kafka fails");
    assert!(matches!(error, RuntimeError::Kafka { .. }), "unexpected error: {error}");
    assert_eq!(seen.lock().unwrap().last(), Some(&State::Error));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_state_goes_from_rebalancing_to_running_to_not_running() {
    let bootstrap = kafka_bootstrap();
    let id = unique("state");
    let (input, output) = (format!("{id}-input"), format!("{id}-output"));
    create_topic(&bootstrap, &input, 2).await;
    create_topic(&bootstrap, &output, 2).await;
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, i64>(&input, Consumed::with(StringSerde, I64Serde))
        .to(&output, Produced::with(StringSerde, I64Serde));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let listener = Box::new(move |new: State, old: State| log.lock().unwrap().push((old, new)));
    let streams = KafkaStreams::start_with_state_listener(
        builder.build(&format!("{id}-app")),
        StreamsConfig::new(format!("{id}-app"), bootstrap.as_str()),
        &prometheus::Registry::new(),
        Some(listener),
    )
    .expect("start");
    wait_for_state(&streams, State::Running);
    streams.close().expect("close");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.first(), Some(&(State::Created, State::Rebalancing)), "{seen:?}");
    assert!(seen.contains(&(State::Rebalancing, State::Running)), "{seen:?}");
    assert_eq!(seen.last(), Some(&(State::PendingShutdown, State::NotRunning)), "{seen:?}");
}

/// Fails transiently on `slow`:1 for its first `slow_failures` attempts and on `never`:1 every
/// time, permanently on `broken`:1, and passes everything else through; counts attempts.
struct Flaky {
    attempts: Arc<Mutex<std::collections::HashMap<(String, i64), u32>>>,
    slow_failures: u32,
}

impl Processor<String, i64, String, i64> for Flaky {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        record: Record<String, i64>,
    ) -> Result<(), ProcessError> {
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
            let count = attempts.entry((record.key.clone(), record.value)).or_default();
            *count += 1;
            *count
        };
        match (record.key.as_str(), record.value) {
            ("slow", 1) if attempt <= self.slow_failures => {
                Err(ProcessError::processing("downstream unavailable").retriable())
            }
            ("never", 1) => Err(ProcessError::processing("downstream unavailable for good").retriable()),
            ("broken", 1) => Err(ProcessError::processing("cannot handle this record")),
            _ => ctx.forward(record),
        }
    }
}

fn flaky_app(
    input: &str,
    output: &str,
    app: &str,
    attempts: &Arc<Mutex<std::collections::HashMap<(String, i64), u32>>>,
    slow_failures: u32,
) -> operators::topology::Topology {
    let builder = StreamsBuilder::new();
    let attempts = Arc::clone(attempts);
    builder
        .stream::<String, i64>(input, Consumed::with(StringSerde, I64Serde))
        .process_with(move || Flaky { attempts: Arc::clone(&attempts), slow_failures }, Processed::named("flaky"))
        .to(output, Produced::with(StringSerde, I64Serde));
    builder.build(app)
}

fn send_keyed(bootstrap: &str, topic: &str, records: &[(&str, i64)]) {
    send_keyed_at(bootstrap, topic, records, None);
}

/// Like [`send_keyed`], every record timestamped `timestamp_ms` if given.
fn send_keyed_at(bootstrap: &str, topic: &str, records: &[(&str, i64)], timestamp_ms: Option<i64>) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("producer");
    for (key, value) in records {
        let payload = value.to_be_bytes();
        let mut record = rdkafka::producer::BaseRecord::to(topic).key(*key).payload(&payload);
        if let Some(timestamp_ms) = timestamp_ms {
            record = record.timestamp(timestamp_ms);
        }
        producer.send(record).expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

fn keyed(records: &[integration_tests::kafka::Consumed]) -> Vec<(String, i64)> {
    records
        .iter()
        .map(|r| {
            let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
            (key, i64::from_be_bytes(r.value.clone().unwrap_or_default().try_into().unwrap_or_default()))
        })
        .collect()
}

fn quick_retries() -> ErrorPolicy {
    ErrorPolicy::Retry(RetryPolicy {
        initial_backoff: Duration::from_millis(200),
        multiplier: 2,
        max_backoff: Duration::from_secs(1),
        max_attempts: 5,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transient_failure_is_retried_with_backoff_behind_its_key_while_other_keys_go_on() {
    let bootstrap = kafka_bootstrap();
    let id = unique("fault-retry");
    let (input, output, app) = (format!("{id}-input"), format!("{id}-output"), format!("{id}-app"));
    // Outputs keep their inputs' old timestamps: once a CI run lost the first four to retention.
    create_topic_with(&bootstrap, &input, 1, &[KEEP_OLD_RECORDS]).await;
    create_topic_with(&bootstrap, &output, 1, &[KEEP_OLD_RECORDS]).await;
    let sent = [
        ("slow", 1),
        ("slow", 2),
        ("fast", 1),
        ("never", 1),
        ("never", 2),
        ("broken", 1),
        ("broken", 2),
        ("fast", 2),
        ("slow", 3),
        ("fast", 3),
    ];
    // From an old backlog: the lane and the DLQ must not inherit a timestamp their 7-day time
    // retention would delete at the broker's next check.
    const BACKLOG_MS: i64 = 1_700_000_000_000;
    let started_ms = integration_tests::saga::now_ms();
    send_keyed_at(&bootstrap, &input, &sent, Some(BACKLOG_MS));
    let attempts = Arc::new(Mutex::new(std::collections::HashMap::new()));
    let mut config = StreamsConfig::new(app.as_str(), bootstrap.as_str());
    config.error_policy = quick_retries();
    let streams =
        KafkaStreams::start(flaky_app(&input, &output, &app, &attempts, 3), config, &prometheus::Registry::new())
            .expect("start");
    let out_records = read_topic(&bootstrap, &output, "read_committed", WAIT, |r| r.len() >= 8);
    let out = keyed(&out_records);
    let dead = read_topic(&bootstrap, &dead_letter_topic(&input), "read_committed", WAIT, |r| r.len() >= 2);
    let lane = read_topic(
        &bootstrap,
        &operators::runtime::retry_lane_topic(&app, 0),
        "read_committed",
        Duration::from_secs(5),
        |_| false,
    );
    streams.close().expect("close");

    let of = |key: &str| out.iter().filter(|(k, _)| k == key).map(|(_, v)| *v).collect::<Vec<_>>();
    assert_eq!(out.len(), 8, "every record that can succeed, once: {out:?}");
    assert_eq!(
        (of("slow"), of("fast"), of("never"), of("broken")),
        (vec![1, 2, 3], vec![1, 2, 3], vec![2], vec![2]),
        "per-key order: {out:?}"
    );
    let position = |record: (&str, i64)| out.iter().position(|(k, v)| k == record.0 && *v == record.1);
    assert!(position(("fast", 3)) < position(("slow", 1)), "other keys are not held up by a retry: {out:?}");

    let seen = attempts.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let tries = |key: &str, value: i64| seen.get(&(key.to_owned(), value)).copied().unwrap_or(0);
    assert_eq!(
        (tries("slow", 1), tries("slow", 2), tries("slow", 3)),
        (4, 1, 1),
        "three retries, then success; the rest only waited"
    );
    assert_eq!((tries("never", 1), tries("never", 2), tries("broken", 1)), (5, 1, 1));

    let header = |record: &integration_tests::kafka::Consumed, name: &str| {
        String::from_utf8_lossy(record.header(name).unwrap_or_default()).into_owned()
    };
    let by_key = |key: &str| {
        dead.iter()
            .find(|r| r.key.as_deref() == Some(key.as_bytes()))
            .unwrap_or_else(|| panic!("no dead letter for {key}"))
    };
    let (never, broken) = (by_key("never"), by_key("broken"));
    assert_eq!(
        (header(never, "dlq.error.class"), header(never, "dlq.attempts")),
        ("transient".to_owned(), "5".to_owned())
    );
    assert_eq!(
        (header(broken, "dlq.error.class"), header(broken, "dlq.attempts")),
        ("permanent".to_owned(), "1".to_owned())
    );
    assert_eq!(
        (header(never, "dlq.processor"), header(never, "dlq.original.offset")),
        ("flaky".to_owned(), "3".to_owned())
    );
    assert_eq!(never.header("retry.attempts"), None, "the lane's bookkeeping stays out of the dead letter");
    assert_eq!(dead.len(), 2);

    let slow_retries: Vec<(String, i64)> = lane
        .iter()
        .filter(|r| r.key.as_deref() == Some(&b"slow"[..]) && r.header("retry.original.offset") == Some(&b"0"[..]))
        .map(|r| (header(r, "retry.attempts"), header(r, "retry.not_before").parse().unwrap_or(0)))
        .collect();
    let attempts_in_lane: Vec<&str> = slow_retries.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(attempts_in_lane, ["1", "2", "3"], "slow:1 went through the lane after each failure");
    assert!(slow_retries.windows(2).all(|w| w[1].1 - w[0].1 >= 200), "each retry waits longer: {slow_retries:?}");

    let recent = |records: &[integration_tests::kafka::Consumed]| {
        records.iter().all(|r| r.timestamp_ms.is_some_and(|t| t >= started_ms))
    };
    assert!(!lane.is_empty() && recent(&lane), "lane records are timestamped when written");
    assert!(recent(&dead), "dead letters are timestamped when they failed");
    let timestamps: Vec<Option<i64>> = out_records.iter().map(|r| r.timestamp_ms).collect();
    assert!(
        timestamps.iter().all(|t| *t == Some(BACKLOG_MS)),
        "a retried record's outputs keep its own timestamp: {timestamps:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_instance_keeps_later_records_of_a_key_behind_one_waiting_in_the_retry_lane() {
    let bootstrap = kafka_bootstrap();
    let id = unique("fault-retry-restart");
    let (input, output, app) = (format!("{id}-input"), format!("{id}-output"), format!("{id}-app"));
    create_topic(&bootstrap, &input, 1).await;
    create_topic(&bootstrap, &output, 1).await;
    let attempts = Arc::new(Mutex::new(std::collections::HashMap::new()));
    let policy = ErrorPolicy::Retry(RetryPolicy {
        initial_backoff: Duration::from_secs(6),
        multiplier: 2,
        max_backoff: Duration::from_secs(6),
        max_attempts: 3,
    });
    let start = || {
        let mut config = StreamsConfig::new(app.as_str(), bootstrap.as_str());
        config.error_policy = policy;
        KafkaStreams::start(flaky_app(&input, &output, &app, &attempts, 1), config, &prometheus::Registry::new())
            .expect("start")
    };
    send_keyed(&bootstrap, &input, &[("slow", 1)]);
    let first = start();
    let lane = operators::runtime::retry_lane_topic(&app, 0);
    read_topic(&bootstrap, &lane, "read_committed", WAIT, |r| !r.is_empty());
    first.close().expect("close");

    // The index of waiting keys lives in the lane itself: a new instance must find slow:1 there.
    let second = start();
    wait_for_state(&second, State::Running);
    send_keyed(&bootstrap, &input, &[("slow", 2), ("fast", 1)]);
    let out = keyed(&read_topic(&bootstrap, &output, "read_committed", WAIT, |r| r.len() >= 3));
    second.close().expect("close");
    let slow: Vec<i64> = out.iter().filter(|(k, _)| k == "slow").map(|(_, v)| *v).collect();
    assert_eq!(slow, [1, 2], "slow:2 waited behind slow:1 across the restart: {out:?}");
    assert_eq!(out.first().map(|(k, _)| k.as_str()), Some("fast"), "fast:1 did not wait: {out:?}");
}

/// Says Redis is down at record 5's first try, and fails the first commit after that, once.
struct RedisDownThenCommitFails {
    attempts_at_five: Arc<Mutex<u32>>,
    failed_commits: Arc<Mutex<u32>>,
    /// What the instance says it waits on each time record 3 is processed.
    waits_seen_at_three: WaitsSeen,
}

/// The instance's health, set once it started, and what it said it waited on at each look.
#[derive(Clone, Default)]
struct WaitsSeen {
    health: Arc<OnceLock<Health>>,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl Processor<String, i64, String, i64> for RedisDownThenCommitFails {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        record: Record<String, i64>,
    ) -> Result<(), ProcessError> {
        if record.value == 3 {
            let waits = &self.waits_seen_at_three;
            let waiting_on = waits.health.get().and_then(Health::waiting_on);
            waits.seen.lock().unwrap_or_else(|e| e.into_inner()).push(waiting_on);
        }
        if record.value == 5 {
            let mut attempts = self.attempts_at_five.lock().unwrap_or_else(|e| e.into_inner());
            *attempts += 1;
            if *attempts == 1 {
                return Err(ProcessError::unavailable("redis", "connection refused"));
            }
        }
        ctx.forward(record)
    }

    fn before_commit(&mut self, _ctx: &mut ProcessorContext<'_, String, i64>) -> Result<(), ProcessError> {
        let waiting = *self.attempts_at_five.lock().unwrap_or_else(|e| e.into_inner()) >= 1;
        let mut failed = self.failed_commits.lock().unwrap_or_else(|e| e.into_inner());
        if waiting && *failed == 0 {
            *failed += 1;
            return Err(ProcessError::processing("the commit while record 5 waits fails"));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_record_dead_lettered_at_its_next_try_ends_the_wait() {
    let bootstrap = kafka_bootstrap();
    // Record 5 is the last: no record after it goes through to end the wait.
    let (input, output, app) = keyed_records(&bootstrap, "fault-waiting-dead-lettered", 5).await;

    let (builder, attempts_at_five) = fails_at_five(&input, &output, &[AtFive::Down("redis"), AtFive::Broken]);
    let mut config = StreamsConfig::new(app.as_str(), bootstrap.as_str());
    config.error_policy = quick_retries();
    let streams = KafkaStreams::start(builder.build(&app), config, &prometheus::Registry::new()).expect("start");
    let health = streams.health();
    let dead = read_topic(&bootstrap, &dead_letter_topic(&input), "read_committed", WAIT, |r| !r.is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    while health.waiting_on().is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let waiting_at_the_end = health.waiting_on();
    streams.close().expect("close");

    assert_eq!(dead.len(), 1, "record 5 dead-lettered once");
    assert_eq!(*attempts_at_five.lock().unwrap_or_else(|e| e.into_inner()), 2, "tried twice");
    assert_eq!(waiting_at_the_end, None, "the partition waits on nothing once its record is dead-lettered");
}

/// A one-partition input holding records 1 to `count` under keys k0-k2, an output topic and an
/// application id, all named after `name`.
async fn keyed_records(bootstrap: &str, name: &str, count: i64) -> (String, String, String) {
    let id = unique(name);
    let (input, output, app) = (format!("{id}-input"), format!("{id}-output"), format!("{id}-app"));
    create_topic(bootstrap, &input, 1).await;
    create_topic(bootstrap, &output, 1).await;
    let records: Vec<(String, i64)> = (1..=count).map(|n| (format!("k{}", n % 3), n)).collect();
    let refs: Vec<(&str, i64)> = records.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    send_keyed(bootstrap, &input, &refs);
    (input, output, app)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dependency_that_is_down_pauses_the_partition_and_loses_nothing() {
    let bootstrap = kafka_bootstrap();
    let (input, output, app) = keyed_records(&bootstrap, "fault-unavailable", 20).await;

    let three_outages = &[AtFive::Down("redis"), AtFive::Down("redis"), AtFive::Down("redis")];
    let (builder, attempts_at_five) = fails_at_five(&input, &output, three_outages);
    let mut config = StreamsConfig::new(app.as_str(), bootstrap.as_str());
    config.error_policy = quick_retries();
    // Records 1-4 share a transaction with 5: they commit with it, and 5 waits.
    config.commit_interval = Duration::from_secs(2);
    let streams = KafkaStreams::start(builder.build(&app), config, &prometheus::Registry::new()).expect("start");
    let health = streams.health();
    let deadline = Instant::now() + WAIT;
    let mut saw_waiting = None;
    while saw_waiting.is_none() && Instant::now() < deadline {
        saw_waiting = health.waiting_on();
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = keyed(&read_topic(&bootstrap, &output, "read_committed", WAIT, |r| r.len() >= 20));
    let waiting_at_the_end = health.waiting_on();
    let lane = read_topic(
        &bootstrap,
        &operators::runtime::retry_lane_topic(&app, 0),
        "read_committed",
        Duration::from_secs(3),
        |_| false,
    );
    let dead = read_topic(&bootstrap, &dead_letter_topic(&input), "read_committed", Duration::from_secs(3), |_| false);
    streams.close().expect("close");

    assert_eq!(saw_waiting.as_deref(), Some("redis"), "the instance says what it waits for");
    assert_eq!(waiting_at_the_end, None, "and stops saying so once the record went through");
    assert_eq!(
        out.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>(),
        "every record once, in order"
    );
    assert_eq!(*attempts_at_five.lock().unwrap_or_else(|e| e.into_inner()), 4, "three outages, then through");
    assert!(
        lane.is_empty() && dead.is_empty(),
        "an outage is waited out, not retried record by record: lane {}, dlq {}",
        lane.len(),
        dead.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_aborted_while_a_partition_waits_reads_its_rolled_back_records_again() {
    let bootstrap = kafka_bootstrap();
    let (input, output, app) = keyed_records(&bootstrap, "fault-waiting-abort", 20).await;

    // Records 1-4 go through and 5 finds Redis down: the partition waits 2 s at record 5. The
    // commit of 1-4 fails meanwhile, so they are rolled back and must be read again, from 1,
    // when the partition resumes. Until 5 itself goes through, the instance still waits on Redis.
    let (attempts_at_five, failed_commits) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
    let waits_seen = WaitsSeen::default();
    let builder = StreamsBuilder::new();
    let (attempts, failed, waits) = (Arc::clone(&attempts_at_five), Arc::clone(&failed_commits), waits_seen.clone());
    builder
        .stream::<String, i64>(&input, Consumed::with(StringSerde, I64Serde))
        .process_with(
            move || RedisDownThenCommitFails {
                attempts_at_five: Arc::clone(&attempts),
                failed_commits: Arc::clone(&failed),
                waits_seen_at_three: waits.clone(),
            },
            Processed::named("redis-down-then-commit-fails"),
        )
        .to(&output, Produced::with(StringSerde, I64Serde));
    let mut config = StreamsConfig::new(app.as_str(), bootstrap.as_str());
    config.error_policy = ErrorPolicy::Retry(RetryPolicy {
        initial_backoff: Duration::from_secs(2),
        multiplier: 2,
        max_backoff: Duration::from_secs(2),
        max_attempts: 5,
    });
    let streams = KafkaStreams::start(builder.build(&app), config, &prometheus::Registry::new()).expect("start");
    let _ = waits_seen.health.set(streams.health());
    let out = keyed(&read_topic(&bootstrap, &output, "read_committed", Duration::from_secs(20), |r| r.len() >= 20));
    streams.close().expect("close");

    assert_eq!(*failed_commits.lock().unwrap_or_else(|e| e.into_inner()), 1, "a commit failed while 5 waited");
    let seen = waits_seen.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(
        seen.last(),
        Some(&Some("redis".to_owned())),
        "record 3, read again after the abort, comes while 5 still waits on Redis (each look: {seen:?})"
    );
    assert_eq!(
        out.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>(),
        "every record once, in order, the rolled-back ones read again"
    );
}

/// What record 5 meets at one try.
#[derive(Clone, Copy)]
enum AtFive {
    Down(&'static str),
    Broken,
}

/// Record 5 meets `tries[n]` at its try `n` (from 0), then goes through.
struct FailsAtFive {
    attempts_at_five: Arc<Mutex<usize>>,
    tries: &'static [AtFive],
}

impl Processor<String, i64, String, i64> for FailsAtFive {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        record: Record<String, i64>,
    ) -> Result<(), ProcessError> {
        if record.value == 5 {
            let mut attempts = self.attempts_at_five.lock().unwrap_or_else(|e| e.into_inner());
            *attempts += 1;
            match self.tries.get(*attempts - 1) {
                Some(AtFive::Down(dependency)) => {
                    return Err(ProcessError::unavailable(*dependency, "connection refused"))
                }
                Some(AtFive::Broken) => return Err(ProcessError::processing("record 5 cannot be processed")),
                None => {}
            }
        }
        ctx.forward(record)
    }
}

/// `input` → [`FailsAtFive`] → `output`, and the count of record 5's tries.
fn fails_at_five(input: &str, output: &str, tries: &'static [AtFive]) -> (StreamsBuilder, Arc<Mutex<usize>>) {
    let attempts_at_five = Arc::new(Mutex::new(0));
    let builder = StreamsBuilder::new();
    let attempts = Arc::clone(&attempts_at_five);
    builder
        .stream::<String, i64>(input, Consumed::with(StringSerde, I64Serde))
        .process_with(
            move || FailsAtFive { attempts_at_five: Arc::clone(&attempts), tries },
            Processed::named("fails-at-five"),
        )
        .to(output, Produced::with(StringSerde, I64Serde));
    (builder, attempts_at_five)
}

/// `streams_partitions_waiting_on_dependency` for `app` and `dependency`; 0 while absent.
fn partitions_waiting_on(registry: &prometheus::Registry, app: &str, dependency: &str) -> i64 {
    gauge(registry, "streams_partitions_waiting_on_dependency", app, ("dependency", dependency)).unwrap_or(0.0) as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_record_that_fails_on_another_dependency_moves_the_wait_gauge_to_it() {
    let bootstrap = kafka_bootstrap();
    let (input, output, app) = keyed_records(&bootstrap, "fault-wait-moves", 20).await;
    let tries = &[AtFive::Down("redis"), AtFive::Down("postgres")];
    let (builder, attempts_at_five) = fails_at_five(&input, &output, tries);
    let mut config = StreamsConfig::new(app.as_str(), bootstrap.as_str());
    config.error_policy = quick_retries();
    let registry = prometheus::Registry::new();
    let streams = KafkaStreams::start(builder.build(&app), config, &registry).expect("start");
    let waiting =
        || (partitions_waiting_on(&registry, &app, "redis"), partitions_waiting_on(&registry, &app, "postgres"));
    // The (redis, postgres) counts while record 5 is tried, each change once.
    let mut seen: Vec<(i64, i64)> = Vec::new();
    let deadline = Instant::now() + WAIT;
    while *attempts_at_five.lock().unwrap_or_else(|e| e.into_inner()) < 3 && Instant::now() < deadline {
        let now = waiting();
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = read_topic(&bootstrap, &output, "read_committed", WAIT, |r| r.len() >= 20);
    let at_the_end = waiting();
    streams.close().expect("close");

    assert_eq!(out.len(), 20, "every record once");
    assert_eq!(
        *attempts_at_five.lock().unwrap_or_else(|e| e.into_inner()),
        3,
        "Redis down, then PostgreSQL, then through"
    );
    assert!(seen.contains(&(0, 1)), "while it waits on PostgreSQL, (redis, postgres) is (0, 1): {seen:?}");
    assert_eq!(at_the_end, (0, 0), "partitions waiting on (redis, postgres) once record 5 went through");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partition_taken_away_while_it_waits_leaves_the_wait_gauge() {
    let bootstrap = kafka_bootstrap();
    let (input, output, app) = keyed_records(&bootstrap, "fault-wait-revoked", 20).await;
    let (builder, attempts_at_five) = fails_at_five(&input, &output, &[AtFive::Down("redis")]);
    let start = |builder: StreamsBuilder, registry: &prometheus::Registry| {
        let mut config = StreamsConfig::new(app.as_str(), bootstrap.as_str());
        // Record 5 is not tried again on the first instance: only a new assignment reads it again.
        config.error_policy = ErrorPolicy::Retry(RetryPolicy {
            initial_backoff: Duration::from_secs(600),
            multiplier: 2,
            max_backoff: Duration::from_secs(600),
            max_attempts: 5,
        });
        KafkaStreams::start(builder.build(&app), config, registry).expect("start")
    };
    let registry = prometheus::Registry::new();
    let first = start(builder, &registry);
    let health = first.health();
    let deadline = Instant::now() + WAIT;
    while health.waiting_on().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let waiting_before = partitions_waiting_on(&registry, &app, "redis");
    // A second instance joins: the eager rebalance takes the partition from the first, and
    // whichever instance gets it reads record 5 again, with Redis back.
    let (second_builder, _) = fails_at_five(&input, &output, &[]);
    let second = start(second_builder, &prometheus::Registry::new());
    let out = read_topic(&bootstrap, &output, "read_committed", WAIT, |r| r.len() >= 20);
    let waiting_after = partitions_waiting_on(&registry, &app, "redis");
    let (health_after, attempts) = (health.waiting_on(), *attempts_at_five.lock().unwrap_or_else(|e| e.into_inner()));
    second.close().expect("close");
    first.close().expect("close");

    assert_eq!(waiting_before, 1, "the first instance waited on Redis");
    assert_eq!(out.len(), 20, "every record once, record 5 read again after the rebalance");
    assert!(attempts >= 1, "record 5 was tried on the first instance");
    assert_eq!(
        (waiting_after, health_after),
        (0, None),
        "partitions waiting on Redis, and health, once it went through"
    );
}
