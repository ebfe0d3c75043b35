use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{driver, pair, TestResult, APP};
use crate::dsl::{Consumed, Processed, Produced, StreamsBuilder};
use crate::error::{ErrorKind, ProcessError};
use crate::processor::{Processor, ProcessorContext};
use crate::punctuation::{PunctuationId, PunctuationType};
use crate::record::Record;
use crate::serdes::{I64Serde, StringSerde};
use crate::store::StoreBuilder;

/// Forwards the first record of each key only.
struct Deduplicate;

impl Processor<String, String> for Deduplicate {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        let mut seen = ctx.kv_store::<String, i64>("seen")?;
        if seen.get(&record.key)?.is_some() {
            return Ok(());
        }
        seen.put(&record.key, &record.timestamp_ms)?;
        ctx.forward(record)
    }
}

#[test]
fn process_uses_its_store_and_feeds_downstream_dsl_nodes() -> TestResult {
    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::key_value("seen", StringSerde, I64Serde));
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .process(|| Deduplicate, &["seen"])
        .map_values(|value: String| value.to_uppercase())
        .to("out", Produced::with(StringSerde, StringSerde));
    let driver = driver(builder);
    let input = driver.create_input_topic("in", StringSerde, StringSerde);
    input.pipe_input_at("a", "x", 10)?;
    input.pipe_input_at("a", "y", 20)?;
    input.pipe_input_at("b", "z", 30)?;
    let output = driver.create_output_topic("out", StringSerde, StringSerde);
    assert_eq!(output.read_key_values_to_vec()?, vec![pair("a", "X"), pair("b", "Z")]);
    assert_eq!(driver.key_value_store::<String, i64>("seen")?.all()?, vec![("a".to_owned(), 10), ("b".to_owned(), 30)]);
    Ok(())
}

/// Puts each record, then forwards the store's first key and how many keys lie from "b" to "d".
struct Census;

impl Processor<String, String> for Census {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        let mut seen = ctx.kv_store::<String, String>("seen")?;
        seen.put(&record.key, &record.value)?;
        let first = seen.all().next().transpose()?.map(|(key, _)| key).unwrap_or_default();
        let between = seen.range(&"b".to_owned(), &"d".to_owned())?.collect::<Result<Vec<_>, _>>()?.len();
        ctx.forward(Record { value: format!("{first} {between}"), ..record })
    }
}

#[test]
fn a_processor_scans_its_store_lazily_with_all_and_range() -> TestResult {
    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::key_value("seen", StringSerde, StringSerde));
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .process(|| Census, &["seen"])
        .to("out", Produced::with(StringSerde, StringSerde));
    let driver = driver(builder);
    let input = driver.create_input_topic("in", StringSerde, StringSerde);
    input.pipe_key_values([pair("c", "1"), pair("a", "2"), pair("b", "3"), pair("d", "4"), pair("e", "5")])?;
    let output = driver.create_output_topic("out", StringSerde, StringSerde);
    let expected = [pair("c", "c 1"), pair("a", "a 1"), pair("b", "a 2"), pair("d", "a 3"), pair("e", "a 3")];
    assert_eq!(output.read_key_values_to_vec()?, expected);
    Ok(())
}

#[test]
fn a_store_must_be_connected_and_read_with_its_declared_types() -> TestResult {
    struct WrongTypes;
    impl Processor<String, String> for WrongTypes {
        fn process(
            &mut self,
            ctx: &mut ProcessorContext<'_, String, String>,
            _: Record<String, String>,
        ) -> Result<(), ProcessError> {
            ctx.kv_store::<String, String>("seen").map(|_| ())
        }
    }
    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::key_value("seen", StringSerde, I64Serde));
    let stream = builder.stream("in", Consumed::with(StringSerde, StringSerde));
    stream.process(|| WrongTypes, &["seen"]);
    let driver = driver(builder);
    let error = driver
        .create_input_topic("in", StringSerde, StringSerde)
        .pipe_input("a", "x")
        .err()
        .ok_or("expected an error")?;
    assert_eq!(error.as_process_error().map(ProcessError::kind), Some(ErrorKind::Store));

    let unconnected = StreamsBuilder::new();
    unconnected.add_state_store(StoreBuilder::key_value("seen", StringSerde, I64Serde));
    unconnected.stream("in", Consumed::with(StringSerde, StringSerde)).process(|| Deduplicate, &["missing"]);
    let problems = unconnected.try_build(APP).err().ok_or("expected a build error")?;
    assert_eq!(
        problems.problems(),
        [
            "KSTREAM-PROCESSOR-0000000001 refers to unknown store 'missing'",
            "store 'seen' is not connected to any processor"
        ]
    );
    Ok(())
}

/// Counts records and reports the count on each punctuation; panics on "boom".
#[derive(Default)]
struct Reporter {
    kind: Option<PunctuationType>,
    count: i64,
}

impl Processor<String, String, String, i64> for Reporter {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) -> Result<(), ProcessError> {
        let kind = self.kind.unwrap_or(PunctuationType::WallClockTime);
        ctx.schedule(Duration::from_millis(10), kind).map(|_| ())
    }

    fn process(
        &mut self,
        _: &mut ProcessorContext<'_, String, i64>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        if record.value == "boom" {
            panic!("reporter bug");
        }
        self.count += 1;
        Ok(())
    }

    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        _: PunctuationId,
        timestamp_ms: i64,
    ) -> Result<(), ProcessError> {
        ctx.forward(Record::new(format!("at-{timestamp_ms}"), self.count, timestamp_ms))
    }
}

fn reporter_topology(kind: PunctuationType) -> StreamsBuilder {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .process(move || Reporter { kind: Some(kind), count: 0 }, &[])
        .to("out", Produced::with(StringSerde, I64Serde));
    builder
}

#[test]
fn wall_clock_punctuation_fires_every_interval() -> TestResult {
    let driver = driver(reporter_topology(PunctuationType::WallClockTime));
    let output = driver.create_output_topic("out", StringSerde, I64Serde);
    driver.create_input_topic("in", StringSerde, StringSerde).pipe_input("a", "x")?;
    driver.advance_wall_clock_time(Duration::from_millis(9))?;
    assert!(output.is_empty());
    driver.advance_wall_clock_time(Duration::from_millis(1))?;
    driver.advance_wall_clock_time(Duration::from_millis(25))?;
    assert_eq!(output.read_key_values_to_vec()?, vec![("at-10".to_owned(), 1), ("at-35".to_owned(), 1)]);
    Ok(())
}

#[test]
fn a_processor_replaced_after_a_panic_punctuates_once_per_interval() -> TestResult {
    let driver = driver(reporter_topology(PunctuationType::WallClockTime));
    let input = driver.create_input_topic("in", StringSerde, StringSerde);
    let output = driver.create_output_topic("out", StringSerde, I64Serde);
    input.pipe_input("a", "x")?;
    input.pipe_input("a", "boom").err().ok_or("expected the panic as an error")?;
    input.pipe_input("a", "y")?;
    driver.advance_wall_clock_time(Duration::from_millis(10))?;
    // The fresh processor counted "y" only; the schedule of the one it replaced is gone.
    assert_eq!(output.read_key_values_to_vec()?, vec![("at-10".to_owned(), 1)]);
    Ok(())
}

/// Notes at each `init` whether it replaces a panicked instance; panics on "boom".
struct InitWitness {
    inits: Arc<Mutex<Vec<bool>>>,
}

impl Processor<String, String> for InitWitness {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> Result<(), ProcessError> {
        self.inits.lock().map_err(|_| ProcessError::processing("poisoned"))?.push(ctx.replaces_a_panicked_processor());
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        assert_ne!(record.value, "boom", "a poison record");
        ctx.forward(record)
    }
}

#[test]
fn only_the_init_of_a_processor_replacing_a_panicked_one_is_told_so() -> TestResult {
    let inits = Arc::new(Mutex::new(Vec::new()));
    let builder = StreamsBuilder::new();
    let witnessed = Arc::clone(&inits);
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .process(move || InitWitness { inits: Arc::clone(&witnessed) }, &[])
        .to("out", Produced::with(StringSerde, StringSerde));
    let driver = driver(builder);
    let input = driver.create_input_topic("in", StringSerde, StringSerde);
    input.pipe_input("a", "x")?;
    input.pipe_input("a", "boom").err().ok_or("expected the panic as an error")?;
    input.pipe_input("a", "y")?;
    input.pipe_input("a", "z")?;
    driver.restart_from_changelogs()?;
    input.pipe_input("a", "after the restart")?;
    // The task's start, the replacement (once), the restarted task's start.
    assert_eq!(*inits.lock().map_err(|_| "poisoned")?, vec![false, true, false]);
    Ok(())
}

/// Sends each record on as 0, and the number of records its transaction processed as it
/// commits; "bad" records fail.
#[derive(Default)]
struct CountPerCommit {
    processed: i64,
}

impl Processor<String, String, String, i64> for CountPerCommit {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        if record.value == "bad" {
            return Err(ProcessError::processing("a bad record"));
        }
        self.processed += 1;
        ctx.forward(Record::new(record.key, 0, record.timestamp_ms))
    }

    fn before_commit(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) -> Result<(), ProcessError> {
        let processed = std::mem::take(&mut self.processed);
        ctx.forward(Record::new("processed".to_owned(), processed, ctx.current_system_time_ms()))
    }
}

#[test]
fn records_piped_in_one_transaction_are_committed_together_and_a_failed_one_leaves_the_rest() -> TestResult {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .process(CountPerCommit::default, &[])
        .to("out", Produced::with(StringSerde, I64Serde));
    let driver = driver(builder);
    let input = driver.create_input_topic("in", StringSerde, StringSerde);
    let output = driver.create_output_topic("out", StringSerde, I64Serde);
    input.pipe_input("a", "one")?;
    let piped = driver.in_one_transaction(|| {
        [input.pipe_input("a", "two"), input.pipe_input("b", "bad"), input.pipe_input("c", "three")]
    })?;
    assert_eq!(piped.iter().map(Result::is_ok).collect::<Vec<_>>(), [true, false, true]);
    input.pipe_input("a", "four")?;
    let out: Vec<(String, i64)> = output.read_key_values_to_vec()?;
    let expected = [("a", 0), ("processed", 1), ("a", 0), ("c", 0), ("processed", 2), ("a", 0), ("processed", 1)];
    assert_eq!(
        out,
        expected.map(|(key, value)| (key.to_owned(), value)),
        "one commit per record outside; inside, one for both good records, their outputs kept"
    );
    Ok(())
}

/// Sends each record on, and fails the commit of a transaction that processed "fail at commit".
#[derive(Default)]
struct FailsAtCommit {
    failing: bool,
}

impl Processor<String, String> for FailsAtCommit {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        self.failing |= record.value == "fail at commit";
        ctx.forward(record)
    }

    fn before_commit(&mut self, _ctx: &mut ProcessorContext<'_, String, String>) -> Result<(), ProcessError> {
        match std::mem::take(&mut self.failing) {
            true => Err(ProcessError::processing("the batch fails at the commit")),
            false => Ok(()),
        }
    }
}

#[test]
fn a_batch_failing_at_the_commit_of_one_transaction_takes_every_tasks_work_with_it() -> TestResult {
    let builder = StreamsBuilder::new();
    builder
        .stream("in-a", Consumed::with(StringSerde, StringSerde))
        .process(CountPerCommit::default, &[])
        .to("out-a", Produced::with(StringSerde, I64Serde));
    builder
        .stream("in-b", Consumed::with(StringSerde, StringSerde))
        .process(FailsAtCommit::default, &[])
        .to("out-b", Produced::with(StringSerde, StringSerde));
    let driver = driver(builder);
    let (in_a, in_b) = (
        driver.create_input_topic("in-a", StringSerde, StringSerde),
        driver.create_input_topic("in-b", StringSerde, StringSerde),
    );
    let committed = driver.in_one_transaction(|| (in_a.pipe_input("a", "one"), in_b.pipe_input("b", "fail at commit")));
    let error = committed.err().ok_or("expected the commit to fail")?;
    assert!(error.to_string().contains("fails at the commit"), "{error}");
    let out_a: Vec<(String, i64)> =
        driver.create_output_topic("out-a", StringSerde, I64Serde).read_key_values_to_vec()?;
    let out_b: Vec<(String, String)> =
        driver.create_output_topic("out-b", StringSerde, StringSerde).read_key_values_to_vec()?;
    assert_eq!((out_a, out_b), (vec![], vec![]), "both tasks' outputs went with the aborted transaction");
    Ok(())
}

#[test]
fn stream_time_punctuation_follows_record_timestamps() -> TestResult {
    let driver = driver(reporter_topology(PunctuationType::StreamTime));
    let input = driver.create_input_topic("in", StringSerde, StringSerde);
    let output = driver.create_output_topic("out", StringSerde, I64Serde);
    for timestamp_ms in [3, 7, 12, 11, 31] {
        input.pipe_input_at("a", "x", timestamp_ms)?;
    }
    driver.advance_wall_clock_time(Duration::from_secs(60))?;
    let keys: Vec<String> = output.read_records_to_vec().map(|records| records.into_iter().map(|r| r.key).collect())?;
    assert_eq!(keys, vec!["at-3", "at-12", "at-31"]);
    Ok(())
}

/// Sets a step timeout per order; completion cancels it, expiry emits a timeout.
struct StepTimeouts;

const TIMEOUT_MS: i64 = 30_000;

impl Processor<String, String> for StepTimeouts {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        match record.value.as_str() {
            "started" => {
                let deadline = ctx.current_system_time_ms() + TIMEOUT_MS;
                ctx.schedule_timer(record.key.as_bytes(), deadline)
            }
            _ => ctx.cancel_timer(record.key.as_bytes()).map(|_| ()),
        }
    }

    fn on_timer(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        timer_key: &[u8],
        fire_at_ms: i64,
    ) -> Result<(), ProcessError> {
        let order = String::from_utf8_lossy(timer_key).into_owned();
        ctx.forward(Record::new(order, "timed-out".to_owned(), fire_at_ms))
    }
}

fn timeouts_topology() -> StreamsBuilder {
    let builder = StreamsBuilder::new();
    builder
        .stream("steps", Consumed::with(StringSerde, StringSerde))
        .process_with(|| StepTimeouts, Processed::named("timeouts").with_durable_timers())
        .to("timeouts", Produced::with(StringSerde, StringSerde));
    builder
}

#[test]
fn durable_timers_survive_a_restart() -> TestResult {
    let topology = timeouts_topology().build(APP);
    assert_eq!(topology.changelog_topics(), vec!["app-timeouts-timers-changelog".to_owned()]);
    let driver = crate::test_driver::TopologyTestDriver::with_wall_clock_ms(topology, 1_000);
    let steps = driver.create_input_topic("steps", StringSerde, StringSerde);
    steps.pipe_key_values([pair("o1", "started"), pair("o2", "started"), pair("o2", "completed")])?;

    driver.restart_from_changelogs()?;
    let timeouts = driver.create_output_topic("timeouts", StringSerde, StringSerde);
    driver.advance_wall_clock_time(Duration::from_millis(29_999))?;
    assert!(timeouts.is_empty());
    driver.advance_wall_clock_time(Duration::from_millis(1))?;
    let record = timeouts.read_record()?;
    assert_eq!((record.key.as_str(), record.value.as_str(), record.timestamp_ms), ("o1", "timed-out", 31_000));
    driver.advance_wall_clock_time(Duration::from_secs(3600))?;
    assert!(timeouts.is_empty(), "a fired timer does not fire again");
    Ok(())
}

#[test]
fn a_failed_timer_stays_set_and_fires_again_a_second_later() -> TestResult {
    struct FailsOnce(Arc<AtomicBool>);
    impl Processor<String, String> for FailsOnce {
        fn process(
            &mut self,
            ctx: &mut ProcessorContext<'_, String, String>,
            record: Record<String, String>,
        ) -> Result<(), ProcessError> {
            ctx.schedule_timer(record.key.as_bytes(), 5)
        }
        fn on_timer(
            &mut self,
            ctx: &mut ProcessorContext<'_, String, String>,
            key: &[u8],
            at: i64,
        ) -> Result<(), ProcessError> {
            ctx.forward(Record::new(String::from_utf8_lossy(key).into_owned(), "fired".to_owned(), at))?;
            if self.0.swap(false, Ordering::SeqCst) {
                return Err(ProcessError::processing("downstream unavailable").retriable());
            }
            Ok(())
        }
    }
    let fail = Arc::new(AtomicBool::new(true));
    let builder = StreamsBuilder::new();
    let supplier_flag = Arc::clone(&fail);
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .process_with(move || FailsOnce(Arc::clone(&supplier_flag)), Processed::named("p").with_durable_timers())
        .to("out", Produced::with(StringSerde, StringSerde));
    let driver = driver(builder);
    driver.create_input_topic("in", StringSerde, StringSerde).pipe_input("k", "v")?;
    let output = driver.create_output_topic("out", StringSerde, StringSerde);

    let error = driver.advance_wall_clock_time(Duration::from_millis(10)).err().ok_or("expected the timer to fail")?;
    assert!(error.as_process_error().is_some_and(ProcessError::is_retriable));
    assert!(output.is_empty(), "the failed callback's output is discarded");
    driver.advance_wall_clock_time(Duration::from_millis(999))?;
    assert!(output.is_empty(), "a failed timer does not spin: it fires again after TIMER_RETRY_MS");
    driver.advance_wall_clock_time(Duration::from_millis(1))?;
    assert_eq!(output.read_key_values_to_vec()?, vec![pair("k", "fired")]);
    Ok(())
}

#[test]
fn a_panicking_timer_does_not_block_the_later_timers_of_its_task() -> TestResult {
    /// Each record sets a timer at its value (a time in ms); the timer of key "bad" panics.
    struct PanicsOnBad;
    impl Processor<String, String> for PanicsOnBad {
        fn process(
            &mut self,
            ctx: &mut ProcessorContext<'_, String, String>,
            record: Record<String, String>,
        ) -> Result<(), ProcessError> {
            let at: i64 = record.value.parse().map_err(|_| ProcessError::processing("not a time"))?;
            ctx.schedule_timer(record.key.as_bytes(), at)
        }
        fn on_timer(
            &mut self,
            ctx: &mut ProcessorContext<'_, String, String>,
            key: &[u8],
            at: i64,
        ) -> Result<(), ProcessError> {
            let key = String::from_utf8_lossy(key).into_owned();
            ctx.forward(Record::new(key.clone(), "fired".to_owned(), at))?;
            if key == "bad" {
                panic!("timer callback bug");
            }
            Ok(())
        }
    }
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .process_with(|| PanicsOnBad, Processed::named("p").with_durable_timers())
        .to("out", Produced::with(StringSerde, StringSerde));
    let driver = driver(builder);
    let input = driver.create_input_topic("in", StringSerde, StringSerde);
    input.pipe_key_values([pair("early", "1"), pair("bad", "2"), pair("late", "3")])?;
    let output = driver.create_output_topic("out", StringSerde, StringSerde);

    let error =
        driver.advance_wall_clock_time(Duration::from_millis(10)).err().ok_or("expected the panic as an error")?;
    assert_eq!(error.as_process_error().map(ProcessError::kind), Some(ErrorKind::Panic));
    assert_eq!(
        output.read_key_values_to_vec()?,
        vec![pair("early", "fired"), pair("late", "fired")],
        "the timers before and after the panicking one fire; its own output is rolled back"
    );
    Ok(())
}

#[test]
fn timers_need_to_be_enabled() -> TestResult {
    let builder = StreamsBuilder::new();
    builder.stream("steps", Consumed::with(StringSerde, StringSerde)).process(|| StepTimeouts, &[]);
    let driver = driver(builder);
    let error = driver
        .create_input_topic("steps", StringSerde, StringSerde)
        .pipe_input("o1", "started")
        .err()
        .ok_or("expected an error")?;
    assert!(error.to_string().contains("has no durable timers"), "{error}");
    Ok(())
}

/// Sends records with an "!" to the alerts sink only, the rest to every child.
struct Router;

impl Processor<String, String> for Router {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        if record.value.contains('!') {
            ctx.forward_to("alerts-sink", record)
        } else {
            ctx.forward(record)
        }
    }
}

#[test]
fn forward_to_sends_to_one_named_child() -> TestResult {
    let builder = StreamsBuilder::new();
    let routed = builder.stream("in", Consumed::with(StringSerde, StringSerde)).process(|| Router, &[]);
    routed.to("all", Produced::with(StringSerde, StringSerde));
    routed.to("alerts", Produced::with(StringSerde, StringSerde).with_name("alerts-sink"));
    let driver = driver(builder);
    driver.create_input_topic("in", StringSerde, StringSerde).pipe_key_values([pair("a", "ok"), pair("b", "fire!")])?;
    let read = |topic: &str| driver.create_output_topic(topic, StringSerde, StringSerde).read_key_values_to_vec();
    assert_eq!(read("all")?, vec![pair("a", "ok")]);
    assert_eq!(read("alerts")?, vec![pair("a", "ok"), pair("b", "fire!")]);

    let missing = StreamsBuilder::new();
    missing
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .process(|| Router, &[])
        .to("all", Produced::with(StringSerde, StringSerde));
    let driver = super::driver(missing);
    let error = driver
        .create_input_topic("in", StringSerde, StringSerde)
        .pipe_input("b", "fire!")
        .err()
        .ok_or("expected an error")?;
    assert!(error.to_string().contains("has no child named 'alerts-sink'"), "{error}");
    Ok(())
}
