use super::{driver, kv, TestResult, APP};
use crate::dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
use crate::error::{ErrorKind, ProcessError, SourceRecordRef};
use crate::processor::{Processor, ProcessorContext};
use crate::record::{RawRecord, Record};
use crate::serdes::{I64Serde, StringSerde};
use crate::store::StoreBuilder;
use crate::task::{Task, UNKNOWN_STREAM_TIME};
use crate::topology::{TaskId, Topology};

fn counting_topology() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .count(Materialized::as_store("counts"))
        .to_stream()
        .to("out", Produced::with(StringSerde, I64Serde));
    builder.build(APP)
}

fn raw(topic: &str, key: &str, value: &[u8], offset: i64, timestamp_ms: i64) -> RawRecord {
    RawRecord {
        topic: topic.to_owned(),
        partition: 3,
        offset,
        timestamp_ms,
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.to_vec()),
        headers: vec![],
    }
}

/// The count the task emitted to "out" for each record in `output`.
fn counts(task: &mut Task) -> Vec<i64> {
    task.take_output()
        .into_iter()
        .filter(|record| record.topic == "out")
        .filter_map(|record| record.value.and_then(|bytes| bytes.try_into().ok()).map(i64::from_be_bytes))
        .collect()
}

#[test]
fn task_and_topology_can_cross_threads() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<Task>();
    send_sync::<Topology>();
}

#[test]
fn abort_drops_pending_writes_and_commit_keeps_them() -> TestResult {
    let mut task = counting_topology().create_task(TaskId { subtopology: 0, partition: 3 }).unwrap();
    task.process(raw("in", "a", b"x", 0, 10))?;
    assert_eq!(counts(&mut task), vec![1]);
    task.commit().unwrap();

    task.process(raw("in", "a", b"x", 1, 20))?;
    task.process(raw("in", "a", b"x", 2, 30))?;
    assert_eq!(task.stream_time(), 30);
    task.abort();
    assert!(task.take_output().is_empty(), "abort drops pending output");
    assert_eq!(task.stream_time(), 10, "stream time returns to its committed value");

    task.process(raw("in", "a", b"x", 1, 20))?;
    assert_eq!(counts(&mut task), vec![2], "the aborted increments are gone, the committed one is kept");
    Ok(())
}

#[test]
fn output_holds_sink_and_changelog_records_in_order() -> TestResult {
    let mut task = counting_topology().create_task(TaskId { subtopology: 0, partition: 3 }).unwrap();
    assert_eq!(task.stream_time(), UNKNOWN_STREAM_TIME);
    task.process(raw("in", "a", b"x", 0, 10))?;
    let output = task.take_output();
    let shape: Vec<_> =
        output.iter().map(|record| (record.topic.as_str(), record.partition, record.timestamp_ms)).collect();
    assert_eq!(shape, vec![("app-counts-changelog", Some(3), 10), ("out", None, 10)]);
    assert_eq!(task.id(), TaskId { subtopology: 0, partition: 3 });
    Ok(())
}

#[test]
fn restore_rebuilds_a_store_from_its_changelog() -> TestResult {
    let topology = counting_topology();
    let mut task = topology.create_task(TaskId { subtopology: 0, partition: 3 }).unwrap();
    task.restore("app-counts-changelog", b"a", Some(&41i64.to_be_bytes()))?;
    task.restore("app-counts-changelog", b"b", Some(&7i64.to_be_bytes()))?;
    task.restore("app-counts-changelog", b"b", None)?;
    assert!(task.take_output().is_empty(), "restoring is not output");
    task.process(raw("in", "a", b"x", 0, 10))?;
    task.process(raw("in", "b", b"x", 1, 10))?;
    assert_eq!(counts(&mut task), vec![42, 1]);

    let error = task.restore("elsewhere-changelog", b"a", None).err().ok_or("expected an error")?;
    assert_eq!(error.kind(), ErrorKind::Store);
    Ok(())
}

#[test]
fn a_record_from_an_unknown_topic_is_an_error() -> TestResult {
    let mut task = counting_topology().create_task(TaskId { subtopology: 0, partition: 3 }).unwrap();
    let error = task.process(raw("other", "a", b"x", 5, 0)).err().ok_or("expected an error")?;
    assert_eq!(error.source_record(), Some(&SourceRecordRef { topic: "other".to_owned(), partition: 3, offset: 5 }));

    let mut missing = counting_topology().create_task(TaskId { subtopology: 9, partition: 0 }).unwrap();
    assert!(missing.process(raw("in", "a", b"x", 0, 0)).is_err());
    Ok(())
}

#[test]
fn undeserializable_bytes_give_an_error_not_a_panic() -> TestResult {
    let builder = StreamsBuilder::new();
    builder.stream("in", Consumed::with(StringSerde, I64Serde)).to("out", Produced::with(StringSerde, I64Serde));
    let mut task = builder.build(APP).create_task(TaskId { subtopology: 0, partition: 3 }).unwrap();

    let error = task.process(raw("in", "a", &[1, 2, 3], 17, 0)).err().ok_or("expected an error")?;
    assert_eq!(error.kind(), ErrorKind::Deserialization);
    assert!(!error.is_retriable());
    assert_eq!(error.source_record(), Some(&SourceRecordRef { topic: "in".to_owned(), partition: 3, offset: 17 }));
    assert!(error.to_string().contains("cannot deserialize the value of a record from 'in'"), "{error}");

    let mut null_key = raw("in", "a", &[0; 8], 18, 0);
    null_key.key = None;
    assert_eq!(task.process(null_key).err().map(|e| e.kind()), Some(ErrorKind::Deserialization));
    assert!(task.take_output().is_empty());
    Ok(())
}

/// Writes every record to its store and forwards it, then fails on "boom".
struct FailsAfterWriting;

impl Processor<String, String> for FailsAfterWriting {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        ctx.kv_store::<String, String>("last")?.put(&record.key, &record.value)?;
        let fails = record.value == "boom";
        ctx.forward(record)?;
        if fails {
            return Err(ProcessError::processing("boom"));
        }
        Ok(())
    }
}

#[test]
fn a_failed_record_leaves_no_store_writes_and_no_output() -> TestResult {
    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::key_value("last", StringSerde, StringSerde));
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .process(|| FailsAfterWriting, &["last"])
        .to("out", Produced::with(StringSerde, StringSerde));
    let driver = driver(builder);
    let input = driver.create_input_topic("in", StringSerde, StringSerde);
    input.pipe_input("a", "fine")?;
    let error = input.pipe_input("a", "boom").err().ok_or("expected an error")?;
    assert_eq!(error.as_process_error().map(|e| (e.kind(), e.message())), Some((ErrorKind::Processing, "boom")));

    let store = driver.key_value_store::<String, String>("last")?;
    assert_eq!(store.get(&"a".to_owned())?, Some("fine".to_owned()));
    let output = driver.create_output_topic("out", StringSerde, StringSerde);
    assert_eq!(output.read_values_to_vec()?, vec!["fine".to_owned()]);
    assert_eq!(driver.changelog_records("app-last-changelog").len(), 1);

    input.pipe_input("b", "next")?;
    assert_eq!(store.all()?, vec![("a".to_owned(), "fine".to_owned()), ("b".to_owned(), "next".to_owned())]);
    Ok(())
}

#[test]
fn restored_stream_time_keeps_dropping_late_records() -> TestResult {
    use crate::windowing::TimeWindows;
    use std::time::Duration;
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .windowed_by(TimeWindows::of_size_without_grace(Duration::from_millis(10)))
        .count(Materialized::as_store("w"));
    let mut task = builder.build(APP).create_task(TaskId { subtopology: 0, partition: 0 }).unwrap();
    task.restore_stream_time(100);
    task.restore_stream_time(50);
    assert_eq!(task.stream_time(), 100);
    task.process(raw("in", "a", b"x", 0, 5))?;
    assert_eq!(task.dropped_records(), 1);
    assert_eq!(kv("dropped", task.dropped_records() as i64), kv("dropped", 1));
    Ok(())
}

/// Counts its own initializations; panics on "panic".
struct Fragile {
    inits: i64,
}

impl Processor<String, String, String, i64> for Fragile {
    fn init(&mut self, _: &mut ProcessorContext<'_, String, i64>) -> Result<(), ProcessError> {
        self.inits += 1;
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        if record.value == "panic" {
            panic!("user code failed");
        }
        ctx.forward(record.with_value(self.inits))
    }
}

#[test]
fn a_panic_is_an_error_of_its_unit_and_replaces_the_processor() -> TestResult {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .process(|| Fragile { inits: 10 }, &[])
        .to("out", Produced::with(StringSerde, I64Serde));
    let mut task = builder.build(APP).create_task(TaskId { subtopology: 0, partition: 3 }).unwrap();
    task.process(raw("in", "a", b"before", 0, 0))?;
    let error = task.process(raw("in", "a", b"panic", 0, 1)).err().ok_or("expected the panic as an error")?;
    assert_eq!(error.kind(), crate::error::ErrorKind::Panic);
    assert!(error.to_string().contains("user code failed"), "{error}");
    task.process(raw("in", "a", b"fine", 0, 2))?;
    assert_eq!(
        counts(&mut task),
        vec![11, 11],
        "the unit before the panic is kept; then a fresh processor, initialized once"
    );
    Ok(())
}
