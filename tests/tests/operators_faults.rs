//! The operators runtime on bad input and failing outputs, against the real broker: each test
//! drives one fault path and checks, from `read_committed` output and committed offsets, that
//! nothing was lost, duplicated under exactly-once, or committed without its outputs.

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_tests::eos::generate;
use integration_tests::kafka::{admin, create_topic, create_topic_with, read_topic};
use integration_tests::stack::{kafka_bootstrap, unique};
use operators::dsl::{Consumed, Produced, StreamsBuilder};
use operators::error::ErrorPolicy;
use operators::runtime::{dead_letter_topic, KafkaStreams, ProcessingGuarantee, RuntimeError, State, StreamsConfig};
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
    records.iter().map(|r| i64::from_be_bytes(r.value.clone().unwrap_or_default().try_into().unwrap_or_default())).collect()
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
    let streams = KafkaStreams::start(passthrough_with_poison(&input, &output, poison, 5_000).build(&format!("{id}-app")), config, &prometheus::Registry::new())
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
    let reason = String::from_utf8_lossy(dead[0].header("dlq.exception.message").unwrap_or_default()).into_owned();
    assert_eq!(dead[0].header("dlq.original.offset"), Some((poison - 1).to_string().as_bytes()), "dead-lettered because: {reason}");
    assert_eq!(dead[0].header("dlq.exception.class"), Some(&b"produce"[..]));
    let got = values(&out);
    match guarantee {
        ProcessingGuarantee::ExactlyOnceV2 => assert_eq!(got, expected, "exactly once: every good record once, in order"),
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
    builder.stream::<String, i64>(&input, Consumed::with(StringSerde, I64Serde)).to(&output, Produced::with(StringSerde, I64Serde));
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
    let streams = KafkaStreams::start(builder.build(&format!("{id}-app")), config, &prometheus::Registry::new()).expect("start");
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
    builder.stream::<String, i64>(&input, Consumed::with(StringSerde, I64Serde)).to(&output, Produced::with(StringSerde, I64Serde));
    let streams =
        KafkaStreams::start(builder.build(&format!("{id}-app")), StreamsConfig::new(format!("{id}-app"), bootstrap.as_str()), &prometheus::Registry::new())
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
    builder.stream::<String, i64>("in", Consumed::with(StringSerde, I64Serde)).to("out", Produced::with(StringSerde, I64Serde));
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
    let error = tokio::task::spawn_blocking(move || streams.join()).await.expect("join").expect_err("a start that cannot reach Kafka fails");
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
    builder.stream::<String, i64>(&input, Consumed::with(StringSerde, I64Serde)).to(&output, Produced::with(StringSerde, I64Serde));
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
