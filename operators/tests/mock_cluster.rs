//! Engine fault paths a real broker cannot be pushed into on demand, on librdkafka's mock
//! cluster: a fenced producer, an abortable offset commit, a transaction coordinator that goes
//! down. The mock keeps no transaction markers and no transactional offset commits, so these
//! tests judge the engine by its transaction outcomes, by what it reads again and by whether it
//! keeps running, not by `read_committed` output (the real-broker verifier in `tests/` does).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use operators::dsl::{Consumed, Produced, StreamsBuilder};
use operators::error::ErrorPolicy;
use operators::runtime::{KafkaStreams, RuntimeError, State, StreamsConfig};
use operators::serdes::{I64Serde, StringSerde};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Message, Offset, TopicPartitionList};

const INPUT: &str = "input";
const OUTPUT: &str = "output";
const RECORDS: i64 = 200;
const WAIT: Duration = Duration::from_secs(60);

struct Fixture {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl Fixture {
    fn new(brokers: i32) -> Self {
        let cluster = MockCluster::new(brokers).expect("mock cluster");
        cluster.create_topic(INPUT, 1, 1).expect("input topic");
        cluster.create_topic(OUTPUT, 1, 1).expect("output topic");
        // Broker 1 leads the data; the coordinator tests take the others down.
        for topic in [INPUT, OUTPUT] {
            cluster.partition_leader(topic, 0, Some(1)).expect("partition leader");
        }
        Self { cluster }
    }

    fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    fn produce_input(&self, from: i64, to: i64) {
        let producer: BaseProducer =
            ClientConfig::new().set("bootstrap.servers", self.bootstrap()).create().expect("producer");
        for n in from..=to {
            producer
                .send(BaseRecord::to(INPUT).key(&format!("k{}", n % 7)).payload(&n.to_be_bytes()[..]))
                .expect("send");
        }
        producer.flush(Duration::from_secs(10)).expect("flush");
    }

    /// A stateless passthrough under exactly-once. `Skip` creates no dead-letter topic: the mock
    /// has no CreateTopics.
    fn start(&self, app: &str, instance: &str) -> (KafkaStreams, Metrics) {
        let builder = StreamsBuilder::new();
        builder
            .stream::<String, i64>(INPUT, Consumed::with(StringSerde, I64Serde))
            .to(OUTPUT, Produced::with(StringSerde, I64Serde));
        let mut config = StreamsConfig::new(app, self.bootstrap());
        config.instance_id = instance.into();
        config.error_policy = ErrorPolicy::Skip;
        let registry = prometheus::Registry::new();
        let streams = KafkaStreams::start(builder.build(app), config, &registry).expect("start");
        (streams, Metrics { registry, app: app.into() })
    }

    /// The distinct values on the output topic (the mock shows aborted records too).
    fn output_values(&self) -> BTreeSet<i64> {
        self.read_output(Duration::from_secs(10))
    }

    fn wait_for_output(&self, wanted: &BTreeSet<i64>) {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.output_values();
            if wanted.is_subset(&got) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} values reached the output",
                got.intersection(wanted).count(),
                wanted.len()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn read_output(&self, within: Duration) -> BTreeSet<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", "output-reader")
            .set("enable.partition.eof", "true")
            .create()
            .expect("consumer");
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(OUTPUT, 0, Offset::Beginning).expect("offset");
        consumer.assign(&list).expect("assign");
        let mut values = BTreeSet::new();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    let bytes: [u8; 8] = message.payload().unwrap_or_default().try_into().expect("an i64 value");
                    values.insert(i64::from_be_bytes(bytes));
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                _ => {}
            }
        }
        values
    }
}

fn wait_for_state(streams: &KafkaStreams, wanted: State) {
    let deadline = Instant::now() + WAIT;
    while streams.state() != wanted {
        assert!(Instant::now() < deadline, "never reached {wanted}: stuck in {}", streams.state());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn inputs(from: i64, to: i64) -> BTreeSet<i64> {
    (from..=to).collect()
}

/// One instance's series. The runtime's metric families are shared by every instance in the
/// process, and the tests of this file run side by side: each reads its own application's.
struct Metrics {
    registry: prometheus::Registry,
    app: String,
}

impl Metrics {
    fn series(&self, name: &str) -> Vec<prometheus::proto::Metric> {
        let has = |metric: &prometheus::proto::Metric, key: &str, value: &str| {
            metric.get_label().iter().any(|l| l.name() == key && l.value() == value)
        };
        self.registry
            .gather()
            .iter()
            .filter(|family| family.name() == name)
            .flat_map(|family| family.get_metric().iter().cloned())
            .filter(|metric| has(metric, "application_id", &self.app))
            .collect()
    }

    fn counter(&self, name: &str, label: Option<(&str, &str)>) -> u64 {
        self.series(name)
            .iter()
            .filter(|metric| {
                label.is_none_or(|(k, v)| metric.get_label().iter().any(|l| l.name() == k && l.value() == v))
            })
            .map(|metric| metric.get_counter().value() as u64)
            .sum()
    }

    fn transactions(&self, outcome: &str) -> u64 {
        self.counter("streams_transactions_total", Some(("outcome", outcome)))
    }

    fn processed(&self) -> u64 {
        self.counter("streams_records_processed_total", None)
    }
}

/// The value once it stayed the same for a second (commits close every 100 ms).
fn settled(read: impl Fn() -> u64) -> u64 {
    let mut last = read();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Waits until a renewed producer committed past `committed`, then checks the instance still
/// processes new records, and closes it. `cause` names what forced the renewal.
fn goes_on_with_a_renewed_producer(
    fixture: &Fixture,
    streams: KafkaStreams,
    metrics: &Metrics,
    committed: u64,
    cause: &str,
) {
    let deadline = Instant::now() + WAIT;
    while metrics.counter("streams_producer_renewals_total", None) == 0
        || metrics.transactions("committed") == committed
    {
        assert!(!streams.is_finished(), "{cause} stopped the instance: {:?}", streams.join().err());
        assert!(Instant::now() < deadline, "no renewed producer committed a transaction");
        std::thread::sleep(Duration::from_millis(100));
    }
    fixture.produce_input(RECORDS + 1, RECORDS + 10);
    fixture.wait_for_output(&inputs(RECORDS + 1, RECORDS + 10));
    assert!(!streams.is_finished(), "the renewed instance stopped: {:?}", streams.join().err());
    streams.close().expect("close");
}

#[test]
fn a_producer_fenced_once_is_renewed_and_the_instance_goes_on() {
    let fixture = Fixture::new(1);
    let (streams, metrics) = fixture.start("fenced", "a");
    wait_for_state(&streams, State::Running);
    fixture.produce_input(1, 10);
    fixture.wait_for_output(&inputs(1, 10));
    let committed = settled(|| metrics.transactions("committed"));

    // The broker says our transactional.id has a newer epoch, as a coordinator that aborted our
    // transaction at its timeout (the broker was away) answers. Our transactional.id is ours
    // alone, so no other instance owns it: like Kafka Streams (tasks migrated), the instance
    // renews its producer, restores its tasks and goes on.
    fixture
        .cluster
        .request_errors(RDKafkaApiKey::TxnOffsetCommit, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH]);
    fixture.produce_input(11, RECORDS);
    fixture.wait_for_output(&inputs(11, RECORDS));
    goes_on_with_a_renewed_producer(&fixture, streams, &metrics, committed, "a fenced producer");
    assert_eq!(metrics.counter("streams_producer_renewals_total", None), 1, "fenced once, renewed once");
}

#[test]
fn a_producer_fenced_again_and_again_stops_the_instance_and_says_why() {
    let fixture = Fixture::new(1);
    let (streams, metrics) = fixture.start("fenced-again", "a");
    wait_for_state(&streams, State::Running);
    fixture.produce_input(1, 10);
    fixture.wait_for_output(&inputs(1, 10));
    let committed = settled(|| metrics.transactions("committed"));

    // Fenced on every commit, as two running instances given the same instance_id fence each
    // other: renewing for ever would only keep both from committing.
    fixture.cluster.request_errors(
        RDKafkaApiKey::TxnOffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH; 50],
    );
    fixture.produce_input(11, 20);
    let error = streams.join().expect_err("an instance fenced again and again must stop");
    assert!(matches!(error, RuntimeError::Fatal { .. }), "unexpected error: {error}");
    assert!(error.to_string().contains("instance_id"), "the error names the likely cause: {error}");
    assert_eq!(metrics.transactions("committed"), committed, "a fenced instance committed a transaction");
}

#[test]
fn an_abortable_offset_commit_aborts_rewinds_and_replays_the_batch() {
    let fixture = Fixture::new(1);
    let (streams, metrics) = fixture.start("abortable", "a");
    wait_for_state(&streams, State::Running);

    // A stale generation makes the offset commit abortable: the transaction must be aborted,
    // its records read again and committed by a later transaction.
    fixture
        .cluster
        .request_errors(RDKafkaApiKey::TxnOffsetCommit, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION]);
    fixture.produce_input(1, RECORDS);
    fixture.wait_for_output(&inputs(1, RECORDS));
    let deadline = Instant::now() + WAIT;
    while metrics.transactions("committed") == 0 {
        assert!(Instant::now() < deadline, "nothing was committed after the abort");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!streams.is_finished(), "an abortable commit must not stop the instance");
    streams.close().expect("close");
    // At least once: right after such an abort librdkafka may refuse a record or two of the next
    // transaction (ERR__STATE) while it settles, which aborts that one too and replays again.
    assert!(metrics.transactions("aborted") >= 1, "the failed commit was aborted");
    assert!(
        metrics.processed() > RECORDS as u64,
        "the aborted batch was not read again: {} records processed",
        metrics.processed()
    );
}

#[test]
fn a_transaction_coordinator_that_goes_down_and_comes_back_costs_no_record() {
    let fixture = Fixture::new(3);
    let (app, instance) = ("coordinator", "a");
    fixture
        .cluster
        .coordinator(MockCoordinator::Transaction(format!("{app}-{instance}")), 2)
        .expect("transaction coordinator");
    fixture.cluster.coordinator(MockCoordinator::Group(app.into()), 3).expect("group coordinator");
    let (streams, metrics) = fixture.start(app, instance);
    wait_for_state(&streams, State::Running);
    fixture.produce_input(1, RECORDS / 2);
    fixture.wait_for_output(&inputs(1, RECORDS / 2));

    fixture.cluster.broker_down(2).expect("broker down");
    fixture.produce_input(RECORDS / 2 + 1, RECORDS);
    // Shorter than the blocking timeout the engine retries within.
    std::thread::sleep(Duration::from_secs(3));
    fixture.cluster.broker_up(2).expect("broker up");
    let committed = metrics.transactions("committed");

    fixture.wait_for_output(&inputs(1, RECORDS));
    let deadline = Instant::now() + WAIT;
    while metrics.transactions("committed") == committed {
        assert!(Instant::now() < deadline, "nothing was committed after the coordinator came back");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !streams.is_finished(),
        "a coordinator outage shorter than the timeouts must not stop the instance: {:?}",
        streams.join().err()
    );
    streams.close().expect("close");
}

#[test]
fn a_transaction_failed_by_the_broker_is_replayed_and_no_record_is_blamed_for_it() {
    let fixture = Fixture::new(1);
    let records = 2_000;
    fixture.produce_input(1, records);
    // The broker refuses the instance's first produce request. The transaction can only abort
    // now, and every record sent into it after that fails locally (ERR__STATE): none of them is
    // at fault, so none may be skipped (this instance runs the Skip policy) or dead-lettered.
    fixture.cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE]);
    let (streams, metrics) = fixture.start("abortable-produce", "a");
    fixture.wait_for_output(&inputs(1, records));
    assert!(!streams.is_finished(), "a failed transaction must not stop the instance");
    streams.close().expect("close");
    assert!(metrics.transactions("aborted") >= 1, "the failed transaction was aborted");
    let blamed: Vec<String> = metrics
        .series("streams_records_failed_total")
        .iter()
        // Failed deliveries are counted as they come; only a skip or a dead letter blames.
        .filter(|metric| !metric.get_label().iter().any(|l| l.name() == "action" && l.value() == "delivery_failed"))
        .filter(|metric| metric.get_counter().value() > 0.0)
        .map(|metric| {
            format!(
                "{:?} = {}",
                metric.get_label().iter().map(|l| (l.name(), l.value())).collect::<Vec<_>>(),
                metric.get_counter().value()
            )
        })
        .collect();
    assert!(blamed.is_empty(), "no record was blamed: {blamed:?}");
}

#[test]
fn an_abort_the_broker_refuses_renews_the_producer_and_the_instance_goes_on() {
    let fixture = Fixture::new(1);
    let (streams, metrics) = fixture.start("abort-refused", "a");
    wait_for_state(&streams, State::Running);
    fixture.produce_input(1, 10);
    fixture.wait_for_output(&inputs(1, 10));
    let committed = settled(|| metrics.transactions("committed"));

    // The commit fails abortably, then the broker refuses the abort as INVALID_TXN_STATE, as a
    // coordinator restarting under load does when the commit went through after all. The
    // transaction's outcome is unknown and librdkafka's producer is left with a fatal error:
    // the instance must renew its producer and restore its tasks, not stop.
    fixture.cluster.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TXN_STATE],
    );
    fixture.produce_input(11, RECORDS);
    fixture.wait_for_output(&inputs(11, RECORDS));
    goes_on_with_a_renewed_producer(&fixture, streams, &metrics, committed, "a refused abort");
    assert_eq!(metrics.counter("streams_producer_renewals_total", None), 1, "one refused abort, one renewal");
}
