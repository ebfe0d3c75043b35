//! The operators runtime against the real broker, after Kafka's `streams_eos_test.py`: a
//! generator, the app (in-process or as a child process killed with SIGKILL), and a verifier
//! reading `read_committed` outputs.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use integration_tests::eos::{generate, generate_distinct_keys, read_committed_by_key, verify_echo, verify_sums};
use integration_tests::kafka::{create_topic, create_topic_with, read_topic, CommittedCounter};
use integration_tests::metrics::{app_series, gauge};
use integration_tests::stack::{kafka_bootstrap, unique};

const PARTITIONS: i32 = 3;
const WAIT: Duration = Duration::from_secs(120);

struct Topics {
    application_id: String,
    input: String,
    echo: String,
    sums: String,
}

async fn topics(bootstrap: &str, name: &str) -> Topics {
    let id = unique(name);
    let topics = Topics {
        application_id: format!("{id}-app"),
        input: format!("{id}-input"),
        echo: format!("{id}-echo"),
        sums: format!("{id}-sums"),
    };
    for topic in [&topics.input, &topics.echo, &topics.sums] {
        create_topic(bootstrap, topic, PARTITIONS).await;
    }
    topics
}

fn spawn_app(bootstrap: &str, topics: &Topics, instance: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_eos_app"))
        .args([bootstrap, &topics.application_id, instance, &topics.input, &topics.echo, &topics.sums])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn eos_app")
}

/// Closes the app's stdin (a graceful stop) and checks it exited cleanly.
fn stop_gracefully(mut app: Child) {
    drop(app.stdin.take());
    let status = app.wait().expect("wait for eos_app");
    assert!(status.success(), "eos_app did not stop cleanly: {status}");
}

fn kill_9(mut app: Child) {
    app.kill().expect("SIGKILL eos_app");
    let _ = app.wait();
}

fn verify(bootstrap: &str, topics: &Topics, sent: &std::collections::BTreeMap<String, Vec<i64>>, total: usize) {
    let echoed = read_committed_by_key(bootstrap, &topics.echo, total, WAIT);
    verify_echo(sent, &echoed).unwrap_or_else(|e| panic!("echo output is not exactly the input: {e}"));
    let sums = read_committed_by_key(bootstrap, &topics.sums, total, WAIT);
    verify_sums(sent, &sums).unwrap_or_else(|e| panic!("sum output shows lost or repeated state updates: {e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_outputs_match_the_input() {
    let bootstrap = kafka_bootstrap();
    let topics = topics(&bootstrap, "eos-plain").await;
    let total = 5_000;
    let sent = generate(&bootstrap, &topics.input, 1, total as i64);
    let app = spawn_app(&bootstrap, &topics, "only");
    verify(&bootstrap, &topics, &sent, total);
    stop_gracefully(app);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_and_restart_lose_and_duplicate_nothing() {
    let bootstrap = kafka_bootstrap();
    let topics = topics(&bootstrap, "eos-crash").await;
    let total = 30_000;
    let sent = generate(&bootstrap, &topics.input, 1, total as i64);
    let mut progress = CommittedCounter::new(&bootstrap, &topics.echo);

    // Kill mid-run twice, each time after more output was committed, then let it finish.
    for target in [total / 4, total / 2] {
        let app = spawn_app(&bootstrap, &topics, "crashy");
        assert!(progress.wait_for(target, WAIT), "no progress to {target} committed records before the kill");
        kill_9(app);
    }
    let app = spawn_app(&bootstrap, &topics, "crashy");
    verify(&bootstrap, &topics, &sent, total);
    stop_gracefully(app);
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_one_of_two_instances_moves_partitions_and_state() {
    let bootstrap = kafka_bootstrap();
    let topics = topics(&bootstrap, "eos-rebalance").await;
    let first_half = generate(&bootstrap, &topics.input, 1, 10_000);
    let a = spawn_app(&bootstrap, &topics, "a");
    let b = spawn_app(&bootstrap, &topics, "b");
    let mut progress = CommittedCounter::new(&bootstrap, &topics.echo);
    assert!(progress.wait_for(10_000, WAIT), "the two instances did not process the first half");

    // b leaves; a takes its partitions and restores their sums from the changelog.
    stop_gracefully(b);
    let second_half = generate(&bootstrap, &topics.input, 10_001, 10_000);
    let mut sent = first_half;
    for (key, values) in second_half {
        sent.entry(key).or_default().extend(values);
    }
    verify(&bootstrap, &topics, &sent, 20_000);
    stop_gracefully(a);
}

/// Holds every record until its transaction commits, then forwards them all; its first batch
/// with records in it fails.
struct HoldUntilCommit {
    held: Vec<operators::record::Record<String, i64>>,
    failed_batches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl operators::processor::Processor<String, i64> for HoldUntilCommit {
    fn process(
        &mut self,
        _ctx: &mut operators::processor::ProcessorContext<'_, String, i64>,
        record: operators::record::Record<String, i64>,
    ) -> Result<(), operators::error::ProcessError> {
        self.held.push(record);
        Ok(())
    }

    fn before_commit(
        &mut self,
        ctx: &mut operators::processor::ProcessorContext<'_, String, i64>,
    ) -> Result<(), operators::error::ProcessError> {
        use std::sync::atomic::Ordering;
        let held = std::mem::take(&mut self.held);
        if !held.is_empty() && self.failed_batches.load(Ordering::SeqCst) == 0 {
            self.failed_batches.fetch_add(1, Ordering::SeqCst);
            return Err(operators::error::ProcessError::processing("the first batch fails"));
        }
        held.into_iter().try_for_each(|record| ctx.forward(record))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_finished_at_the_commit_commits_with_it_and_a_failed_one_is_replayed() {
    use operators::dsl::{Consumed, Processed, Produced, StreamsBuilder};
    use operators::runtime::{KafkaStreams, StreamsConfig};
    use operators::serdes::{I64Serde, StringSerde};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let bootstrap = kafka_bootstrap();
    let id = unique("eos-batch");
    let (input, output) = (format!("{id}-input"), format!("{id}-output"));
    create_topic(&bootstrap, &input, 1).await;
    create_topic(&bootstrap, &output, 1).await;
    let total = 2_000i64;
    generate(&bootstrap, &input, 1, total);

    let failed_batches = Arc::new(AtomicUsize::new(0));
    let builder = StreamsBuilder::new();
    let failed = Arc::clone(&failed_batches);
    builder
        .stream::<String, i64>(&input, Consumed::with(StringSerde, I64Serde))
        .process_with(
            move || HoldUntilCommit { held: Vec::new(), failed_batches: Arc::clone(&failed) },
            Processed::named("hold-until-commit"),
        )
        .to(&output, Produced::with(StringSerde, I64Serde));
    let app = format!("{id}-app");
    let streams = KafkaStreams::start(
        builder.build(&app),
        StreamsConfig::new(app.as_str(), bootstrap.as_str()),
        &prometheus::Registry::new(),
    )
    .expect("start");
    let committed = read_topic(&bootstrap, &output, "read_committed", WAIT, |r| r.len() >= total as usize);
    streams.close().expect("close");

    assert_eq!(failed_batches.load(Ordering::SeqCst), 1, "the first batch failed");
    let values: Vec<i64> =
        committed.iter().map(|r| i64::from_be_bytes(r.value.clone().unwrap().try_into().unwrap())).collect();
    let expected: Vec<i64> = (1..=total).collect();
    assert_eq!(values, expected, "read_committed shows every record once, in order, the failed batch's ones replayed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suspect_whose_preceding_commit_aborts_waits_to_be_read_again_behind_what_came_before() {
    use operators::dsl::{Consumed, Processed, Produced, StreamsBuilder};
    use operators::runtime::{KafkaStreams, StreamsConfig};
    use operators::serdes::{BytesSerde, I64Serde, StringSerde};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let bootstrap = kafka_bootstrap();
    let id = unique("eos-suspect");
    let (input, output, refusing) = (format!("{id}-input"), format!("{id}-output"), format!("{id}-refusing"));
    create_topic(&bootstrap, &input, 1).await;
    create_topic(&bootstrap, &output, 1).await;
    // The suspect's output goes alone to a topic of its own: a broker rejection hits its batch only.
    create_topic_with(&bootstrap, &refusing, 1, &[("max.message.bytes", "10000")]).await;
    let (total, suspect) = (10i64, 5i64);
    generate(&bootstrap, &input, 1, total);

    // The broker rejects the suspect's first output for its size, which makes it a suspect, to be
    // retried in a transaction of its own; it is small on every later attempt. The commit of what
    // comes before it on the replay fails once: the suspect must wait behind those records.
    let refused = Arc::new(AtomicBool::new(false));
    let failed_commits = Arc::new(AtomicUsize::new(0));
    let builder = StreamsBuilder::new();
    let (refused_seen, failed) = (Arc::clone(&refused), Arc::clone(&failed_commits));
    let records = builder.stream::<String, i64>(&input, Consumed::with(StringSerde, I64Serde)).process_with(
        move || FailTheCommitBefore {
            suspect,
            last_seen: 0,
            refused: Arc::clone(&refused_seen),
            failed_commits: Arc::clone(&failed),
        },
        Processed::named("fail-the-commit-before-the-suspect"),
    );
    records.filter(move |_, n| *n != suspect).to(&output, Produced::with(StringSerde, I64Serde));
    let refuse = Arc::clone(&refused);
    records
        .filter(move |_, n| *n == suspect)
        .map_values(
            move |n| if refuse.swap(true, Ordering::SeqCst) { n.to_be_bytes().to_vec() } else { vec![b'x'; 20_000] },
        )
        .to(&refusing, Produced::with(StringSerde, BytesSerde));
    let app = format!("{id}-app");
    let streams = KafkaStreams::start(
        builder.build(&app),
        StreamsConfig::new(app.as_str(), bootstrap.as_str()),
        &prometheus::Registry::new(),
    )
    .expect("start");
    let others = read_topic(&bootstrap, &output, "read_committed", WAIT, |r| r.len() >= (total - 1) as usize);
    // Long enough for a second copy, which would come with the last of the others.
    let suspects = read_topic(&bootstrap, &refusing, "read_committed", Duration::from_secs(10), |r| r.len() >= 2);
    streams.close().expect("close");

    assert!(refused.load(Ordering::SeqCst), "the broker saw the suspect's oversized output");
    assert_eq!(failed_commits.load(Ordering::SeqCst), 1, "the commit before the suspect failed once");
    let values = |records: &[integration_tests::kafka::Consumed]| -> Vec<i64> {
        records.iter().map(|r| i64::from_be_bytes(r.value.clone().unwrap().try_into().unwrap())).collect()
    };
    assert_eq!(
        values(&others),
        (1..=total).filter(|n| *n != suspect).collect::<Vec<_>>(),
        "the others, once, in order"
    );
    assert_eq!(values(&suspects), vec![suspect], "read_committed shows the suspect's output once");
}

/// Forwards every record; fails the commit that follows the record before the suspect, once,
/// after the broker has refused the suspect's output.
struct FailTheCommitBefore {
    suspect: i64,
    last_seen: i64,
    refused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    failed_commits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl operators::processor::Processor<String, i64> for FailTheCommitBefore {
    fn process(
        &mut self,
        ctx: &mut operators::processor::ProcessorContext<'_, String, i64>,
        record: operators::record::Record<String, i64>,
    ) -> Result<(), operators::error::ProcessError> {
        self.last_seen = record.value;
        ctx.forward(record)
    }

    fn before_commit(
        &mut self,
        _ctx: &mut operators::processor::ProcessorContext<'_, String, i64>,
    ) -> Result<(), operators::error::ProcessError> {
        use std::sync::atomic::Ordering;
        let before_the_suspect = self.last_seen == self.suspect - 1 && self.refused.load(Ordering::SeqCst);
        if before_the_suspect && self.failed_commits.load(Ordering::SeqCst) == 0 {
            self.failed_commits.fetch_add(1, Ordering::SeqCst);
            return Err(operators::error::ProcessError::processing("the commit before the suspect fails"));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_mid_transaction_aborts_the_whole_batch() {
    use operators::dsl::{Consumed, Produced, StreamsBuilder};
    use operators::runtime::{dead_letter_topic, KafkaStreams, StreamsConfig};
    use operators::serdes::{I64Serde, StringSerde};

    integration_tests::logs::capture();
    let bootstrap = kafka_bootstrap();
    let id = unique("eos-abort");
    let (input, output) = (format!("{id}-input"), format!("{id}-output"));
    create_topic(&bootstrap, &input, 1).await;
    create_topic(&bootstrap, &output, 1).await;
    let total = 2_000i64;
    let poison = 1_000i64;
    generate(&bootstrap, &input, 1, total);

    // Record `poison` maps to a value larger than the producer's message.max.bytes: producing
    // it fails inside the open transaction, after the records before it were already sent.
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, i64>(&input, Consumed::with(StringSerde, I64Serde))
        .map_values(move |n| if n == poison { vec![b'x'; 2_000_000] } else { n.to_be_bytes().to_vec() })
        .to(&output, Produced::with(StringSerde, operators::serdes::BytesSerde));
    let registry = prometheus::Registry::new();
    let streams = KafkaStreams::start(
        builder.build(&format!("{id}-app")),
        StreamsConfig::new(format!("{id}-app"), bootstrap.as_str()),
        &registry,
    )
    .expect("start");

    let committed = read_topic(&bootstrap, &output, "read_committed", WAIT, |r| r.len() >= (total - 1) as usize);
    let dead = read_topic(&bootstrap, &dead_letter_topic(&input), "read_committed", WAIT, |r| !r.is_empty());
    streams.close().expect("close");

    let values: Vec<i64> =
        committed.iter().map(|r| i64::from_be_bytes(r.value.clone().unwrap().try_into().unwrap())).collect();
    let expected: Vec<i64> = (1..=total).filter(|n| *n != poison).collect();
    assert_eq!(values, expected, "read_committed must show every good record exactly once, in order");
    assert_eq!(dead.len(), 1, "the poison record goes to the DLQ once");
    let header = |name: &str| dead[0].header(name).map(|v| String::from_utf8_lossy(v).to_string());
    assert_eq!(header("dlq.original.offset").as_deref(), Some(&*(poison - 1).to_string()));
    assert_eq!(
        (header("dlq.processor").as_deref(), header("dlq.error.class").as_deref()),
        (Some("produce"), Some("permanent"))
    );
    // The metric families are shared by every instance in the process: count this test's series
    // only (its application, its dead-letter topic).
    let app = format!("{id}-app");
    let counter = |name: &str, labels: &[&str]| {
        registry
            .gather()
            .iter()
            .find(|family| family.name() == name)
            .map(|family| {
                family
                    .get_metric()
                    .iter()
                    .filter(|m| labels.iter().all(|wanted| m.get_label().iter().any(|l| l.value() == *wanted)))
                    .map(|m| m.get_counter().value())
                    .sum::<f64>()
            })
            .unwrap_or(0.0)
    };
    assert!(counter("streams_transactions_total", &[&app, "aborted"]) >= 1.0, "an aborted transaction must be counted");
    assert!(
        counter("dlq_records_total", &[&dead_letter_topic(&input)]) >= 1.0,
        "the dead-lettered record must be counted"
    );
    // Good records of the aborted batch were processed twice (before the abort and on replay)
    // yet appear once above: the abort took their first outputs and state with it.
    let processed = counter("streams_records_processed_total", &[&app]);
    assert!(
        processed >= (total + 2) as f64,
        "the aborted batch held good records that were replayed (processed {processed})"
    );
    // Counted when their transaction commits: every record once, the aborted attempt not at all.
    assert_eq!(counter("streams_records_in_total", &[&app, &input]), total as f64, "records in");
    assert_eq!(counter("streams_records_out_total", &[&app, &output]), (total - 1) as f64, "records out");
    assert!(counter("streams_rebalances_total", &[&app]) >= 1.0, "the first assignment is a rebalance");
    let state = |name: &str| {
        registry
            .gather()
            .iter()
            .filter(|family| family.name() == "streams_state")
            .flat_map(|family| family.get_metric().iter())
            .filter(|m| [app.as_str(), name].iter().all(|wanted| m.get_label().iter().any(|l| l.value() == *wanted)))
            .map(|m| m.get_gauge().value())
            .sum::<f64>()
    };
    assert_eq!((state("NOT_RUNNING"), state("RUNNING")), (1.0, 0.0), "the closed instance's state");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_store_entries_gauge_counts_the_committed_keys_of_every_task() {
    let bootstrap = kafka_bootstrap();
    let id = unique("eos-store-entries");
    let (input, output) = (format!("{id}-input"), format!("{id}-output"));
    create_topic(&bootstrap, &input, PARTITIONS).await;
    create_topic(&bootstrap, &output, PARTITIONS).await;
    let sent = generate(&bootstrap, &input, 1, 500);

    let registry = prometheus::Registry::new();
    let app = format!("{id}-app");
    let streams = start_counting(&bootstrap, &app, &input, &output, &registry);
    read_topic(&bootstrap, &output, "read_committed", WAIT, |r| r.len() >= 500);
    let entries = || gauge(&registry, "streams_store_entries", &app, ("store", "counts"));
    // Set right after the commit that made the outputs visible.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while entries() != Some(sent.len() as f64) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let running = entries();
    streams.close().expect("close");
    assert_eq!(running, Some(sent.len() as f64), "one entry per distinct key, over the instance's {PARTITIONS} tasks");
    assert_eq!(entries(), Some(0.0), "an instance whose tasks are gone holds none");
}

/// The stream thread's producer and consumer report librdkafka's statistics: the producer's
/// round trip to each broker and both clients' queued messages.
#[tokio::test(flavor = "multi_thread")]
async fn the_stream_threads_clients_report_their_statistics() {
    use operators::dsl::{Consumed, Produced, StreamsBuilder};
    use operators::runtime::{KafkaStreams, StreamsConfig};
    use operators::serdes::{I64Serde, StringSerde};

    let bootstrap = kafka_bootstrap();
    let id = unique("eos-statistics");
    let (input, output) = (format!("{id}-input"), format!("{id}-output"));
    create_topic(&bootstrap, &input, 1).await;
    create_topic(&bootstrap, &output, 1).await;
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, i64>(&input, Consumed::with(StringSerde, I64Serde))
        .to(&output, Produced::with(StringSerde, I64Serde));
    let registry = prometheus::Registry::new();
    let app = format!("{id}-app");
    let config = StreamsConfig::new(&app, bootstrap.as_str()).set("statistics.interval.ms", "200");
    let streams = KafkaStreams::start(builder.build(&app), config, &registry).expect("start");
    let series = |name: &str| -> Vec<String> {
        app_series(&registry, name, &app)
            .iter()
            .map(|m| m.get_label().iter().map(|l| format!("{}={}", l.name(), l.value())).collect::<Vec<_>>().join(","))
            .collect()
    };
    // Records keep coming, so the producer is busy when its statistics are due.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut first = 1;
    while (series("streams_broker_rtt_seconds").is_empty() || series("streams_client_queued_messages").len() < 2)
        && std::time::Instant::now() < deadline
    {
        generate(&bootstrap, &input, first, 50);
        first += 50;
        std::thread::sleep(Duration::from_millis(300));
    }
    let (round_trips, queued) = (series("streams_broker_rtt_seconds"), series("streams_client_queued_messages"));
    streams.close().expect("close");
    assert!(
        round_trips.iter().any(|labels| labels.contains("broker=1")),
        "the producer's round trip to broker 1: {round_trips:?}"
    );
    assert!(queued.iter().any(|labels| labels.contains("client=producer")), "{queued:?}");
    assert!(queued.iter().any(|labels| labels.contains("client=consumer")), "{queued:?}");
}

/// The app of the persistent-store tests: a count per key in a persistent store, each count
/// written to the output topic.
struct PersistentCount {
    bootstrap: String,
    app: String,
    input: String,
    output: String,
}

impl PersistentCount {
    async fn create(name: &str) -> Self {
        let bootstrap = kafka_bootstrap();
        let id = unique(name);
        let (input, output) = (format!("{id}-input"), format!("{id}-output"));
        create_topic(&bootstrap, &input, PARTITIONS).await;
        create_topic(&bootstrap, &output, PARTITIONS).await;
        Self { bootstrap, app: format!("{id}-app"), input, output }
    }

    /// Starts an instance on `state_dir` with the configuration `adjust` leaves.
    fn start(
        &self,
        state_dir: &std::path::Path,
        registry: &prometheus::Registry,
        adjust: impl FnOnce(&mut operators::runtime::StreamsConfig),
    ) -> operators::runtime::KafkaStreams {
        use operators::dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
        use operators::runtime::{KafkaStreams, StoreType, StreamsConfig};
        use operators::serdes::{I64Serde, StringSerde};

        let builder = StreamsBuilder::new();
        builder
            .stream::<String, i64>(&self.input, Consumed::with(StringSerde, I64Serde))
            .group_by_key(Grouped::with(StringSerde, I64Serde))
            .count(Materialized::as_store("counts"))
            .to_stream()
            .to(&self.output, Produced::with(StringSerde, I64Serde));
        let mut config = StreamsConfig::new(&self.app, self.bootstrap.as_str());
        config.default_store_type = StoreType::Persistent;
        config.state_dir = state_dir.to_path_buf();
        adjust(&mut config);
        KafkaStreams::start(builder.build(&self.app), config, registry).expect("start")
    }

    /// Every key's last count equals the records it was sent.
    fn verify_counts(&self, sent: &std::collections::BTreeMap<String, Vec<i64>>, total: usize, why: &str) {
        let counts = read_committed_by_key(&self.bootstrap, &self.output, total, WAIT);
        for (key, values) in sent {
            let counted = counts.get(key).and_then(|counts| counts.last().copied());
            assert_eq!(counted, Some(values.len() as i64), "key {key}: {why}");
        }
    }
}

/// A persistent store closed cleanly leaves a checkpoint: started again on the same state
/// directory, the task restores nothing from its changelog, and counts on from where it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_persistent_store_started_again_after_a_clean_close_restores_only_the_changelogs_tail() {
    let counting = PersistentCount::create("eos-persistent-restart").await;
    let (bootstrap, app, input, output) = (&counting.bootstrap, &counting.app, &counting.input, &counting.output);
    let state_dir = tempfile::tempdir().expect("a state directory");
    let start = || {
        let registry = prometheus::Registry::new();
        (counting.start(state_dir.path(), &registry, |_| {}), registry)
    };
    // Process-wide families: this application's series only.
    let sample = |registry: &prometheus::Registry, name: &str, store: Option<&str>| -> f64 {
        app_series(registry, name, app)
            .iter()
            .filter(|m| {
                store.is_none_or(|store| m.get_label().iter().any(|l| l.name() == "store" && l.value() == store))
            })
            .map(|m| m.get_counter().value() + m.get_gauge().value())
            .sum()
    };

    let mut sent = generate(bootstrap, input, 1, 300);
    let (streams, registry) = start();
    read_topic(bootstrap, output, "read_committed", WAIT, |r| r.len() >= 300);
    let restored_before = sample(&registry, "streams_restore_records_total", None);
    streams.close().expect("close");
    let checkpoints =
        std::fs::read_dir(state_dir.path().join(app).join("checkpoints")).map(|tasks| tasks.count()).unwrap_or(0);
    assert_eq!(checkpoints, PARTITIONS as usize, "a checkpoint directory per task after the clean close");

    for (key, values) in generate(bootstrap, input, 301, 100) {
        sent.entry(key).or_default().extend(values);
    }
    let (streams, registry) = start();
    counting.verify_counts(&sent, 400, "counting went on from the state kept on disk");
    let restored_after = sample(&registry, "streams_restore_records_total", None);
    let disk_bytes = sample(&registry, "streams_store_disk_bytes", Some("counts"));
    streams.close().expect("close");

    assert_eq!(
        restored_after, restored_before,
        "nothing restored from the changelog: local state was complete up to its checkpoint"
    );
    assert!(disk_bytes > 0.0, "the store's bytes on disk are reported");
}

/// A filesystem short of the free space a persistent store must keep stops the instance before
/// its next commit, with an error that says why: nothing of the batch is committed, and with
/// room again every record is counted exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_state_directory_short_of_free_space_stops_the_instance_before_it_commits_and_loses_nothing() {
    use operators::runtime::{RuntimeError, StreamsConfig};

    let counting = PersistentCount::create("eos-disk-full").await;
    let state_dir = tempfile::tempdir().expect("a state directory");
    let start = |min_free_bytes: u64| {
        let registry = prometheus::Registry::new();
        counting.start(state_dir.path(), &registry, |config| config.state_dir_min_free_bytes = min_free_bytes)
    };

    let sent = generate(&counting.bootstrap, &counting.input, 1, 200);
    // A floor no filesystem meets: to this instance the disk is full.
    let error = start(u64::MAX).join().expect_err("an instance short of disk space must stop");
    assert!(
        matches!(&error, RuntimeError::LocalState(message) if message.contains("bytes free")),
        "unexpected error: {error}"
    );
    let committed =
        read_topic(&counting.bootstrap, &counting.output, "read_committed", Duration::from_secs(5), |_| false);
    assert!(committed.is_empty(), "{} outputs were committed by an instance short of disk space", committed.len());

    let streams = start(StreamsConfig::new(&counting.app, counting.bootstrap.as_str()).state_dir_min_free_bytes);
    counting.verify_counts(&sent, 200, "every record counted once after the disk had room again");
    streams.close().expect("close");
}

/// A small tmpfs for a state directory, unmounted when dropped. Mounting takes root, which the
/// stack's machines have (`dev/stack` installs Debian packages).
struct SmallFilesystem {
    dir: tempfile::TempDir,
}

impl SmallFilesystem {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("a mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a {size} tmpfs at {} failed ({status}): this test needs root",
            dir.path().display()
        );
        Self { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Takes every free byte with one file, so that the next write anyone makes gets ENOSPC.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).expect("create the filler");
        let block = vec![0u8; 4096];
        loop {
            if let Err(e) = file.write_all(&block) {
                assert_eq!(e.raw_os_error(), Some(28), "filling the tmpfs: expected ENOSPC, got {e}");
                break;
            }
        }
        // One byte at a time: the last partial block too.
        while file.write_all(&[0]).is_ok() {}
        filler
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// A disk that fills up under a running instance: fjall's own write fails with ENOSPC after the
/// Kafka transaction committed. The instance stops with an error naming local state (no panic);
/// with room again a restart finds no checkpoint, restores from the changelog, and every record
/// is counted exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_disk_that_fills_up_under_a_persistent_store_stops_the_instance_and_loses_nothing() {
    use operators::runtime::RuntimeError;

    let counting = PersistentCount::create("eos-enospc").await;
    let (bootstrap, input) = (&counting.bootstrap, &counting.input);
    let disk = SmallFilesystem::mount("16m");
    let start = || {
        // The free-space floor off: this test is about the write that fails anyway.
        counting.start(disk.path(), &prometheus::Registry::new(), |config| config.state_dir_min_free_bytes = 0)
    };

    let mut sent = generate(bootstrap, input, 1, 300);
    let streams = start();
    read_committed_by_key(bootstrap, &counting.output, 300, WAIT);
    let filler = disk.fill();
    // 3,000 new keys of 1 KB each: about 3 MB for fjall's journal, which cannot stay in its
    // buffer (8 KB), on a disk with no byte left.
    sent.extend(generate_distinct_keys(bootstrap, input, 301, 3_000, 1_000));
    let (stopped, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || stopped.send(streams.join()));
    let error = outcome
        .recv_timeout(WAIT)
        .expect("an instance whose local state cannot be written must stop")
        .expect_err("an instance whose local state cannot be written must stop with an error");
    assert!(
        matches!(&error, RuntimeError::LocalState(message) if message.contains("is the disk full?")),
        "unexpected error: {error}"
    );

    std::fs::remove_file(filler).expect("free the disk");
    let streams = start();
    counting.verify_counts(&sent, 3_300, "every record counted once after the disk had room again");
    streams.close().expect("close");
}

/// A restore held by a transaction still open on its changelog says so in a metric, for each
/// changelog partition, while it waits (a hanging transaction holds it for ever: the operator's
/// alert), and the series goes once the transaction ends.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_held_by_an_open_transaction_shows_how_long_it_waited() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let bootstrap = kafka_bootstrap();
    let id = unique("eos-restore-held");
    let (input, output, app) = (format!("{id}-input"), format!("{id}-output"), format!("{id}-app"));
    let changelog = format!("{app}-counts-changelog");
    create_topic(&bootstrap, &input, 1).await;
    create_topic(&bootstrap, &output, 1).await;
    let start = |registry: &prometheus::Registry| start_counting(&bootstrap, &app, &input, &output, registry);
    // A first instance creates the changelog and writes to it.
    let first = start(&prometheus::Registry::new());
    generate(&bootstrap, &input, 1, 10);
    read_topic(&bootstrap, &output, "read_committed", WAIT, |r| r.len() >= 10);
    first.close().expect("close");

    // Another writer leaves a transaction open on the changelog, as a hanging one would be.
    let writer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", format!("{id}-writer"))
        .set("transaction.timeout.ms", "120000")
        .create()
        .expect("writer");
    writer.init_transactions(Duration::from_secs(30)).expect("init_transactions");
    writer.begin_transaction().expect("begin_transaction");
    writer.send(BaseRecord::to(&changelog).partition(0).key("k").payload("v")).map_err(|(e, _)| e).expect("send");
    writer.flush(Duration::from_secs(30)).expect("flush");

    let registry = prometheus::Registry::new();
    let waited = || gauge(&registry, "streams_restore_waiting_on_transaction_seconds", &app, ("changelog", &changelog));
    let second = start(&registry);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while waited().is_none_or(|s| s < 5.0) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let while_open = waited();
    writer.abort_transaction(Duration::from_secs(30)).expect("abort_transaction");
    // Restored and running: a new record is counted on top of the first ten.
    generate(&bootstrap, &input, 11, 1);
    read_topic(&bootstrap, &output, "read_committed", WAIT, |r| r.len() >= 11);
    let after = waited();
    second.close().expect("close");
    assert!(while_open.is_some_and(|s| s >= 5.0), "seconds waited while the transaction was open: {while_open:?}");
    assert_eq!(after, None, "the series goes once the restore no longer waits");
}

/// A count per key in the store `counts` (changelog `<app>-counts-changelog`), each count
/// written to `output`.
fn start_counting(
    bootstrap: &str,
    app: &str,
    input: &str,
    output: &str,
    registry: &prometheus::Registry,
) -> operators::runtime::KafkaStreams {
    use operators::dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    use operators::runtime::{KafkaStreams, StreamsConfig};
    use operators::serdes::{I64Serde, StringSerde};

    let builder = StreamsBuilder::new();
    builder
        .stream::<String, i64>(input, Consumed::with(StringSerde, I64Serde))
        .group_by_key(Grouped::with(StringSerde, I64Serde))
        .count(Materialized::as_store("counts"))
        .to_stream()
        .to(output, Produced::with(StringSerde, I64Serde));
    KafkaStreams::start(builder.build(app), StreamsConfig::new(app, bootstrap), registry).expect("start")
}
