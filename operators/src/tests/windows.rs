use std::time::Duration;

use super::{driver, TestResult};
use crate::dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
use crate::serdes::{I64Serde, NullableSerde, StringSerde};
use crate::windowing::{SessionWindowedSerde, SessionWindows, TimeWindowedSerde, TimeWindows, Windowed};

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn windowed(key: &str, start_ms: i64, end_ms: i64) -> Windowed<String> {
    Windowed::new(key.to_owned(), start_ms, end_ms)
}

fn grouped(builder: &StreamsBuilder) -> crate::dsl::KGroupedStream<String, i64> {
    builder.stream("in", Consumed::with(StringSerde, I64Serde)).group_by_key(Grouped::with(StringSerde, I64Serde))
}

#[test]
fn tumbling_windows_count_per_window_and_drop_records_after_grace() -> TestResult {
    let builder = StreamsBuilder::new();
    grouped(&builder)
        .windowed_by(TimeWindows::of_size_with_grace(ms(10), ms(5)))
        .count(Materialized::as_store("counts"))
        .to_stream()
        .to("out", Produced::with(TimeWindowedSerde::new(StringSerde, ms(10)), I64Serde));
    let driver = driver(builder);
    let input = driver.create_input_topic("in", StringSerde, I64Serde);
    let output = driver.create_output_topic("out", TimeWindowedSerde::new(StringSerde, ms(10)), I64Serde);

    input.pipe_input_at("a", 0, 1)?;
    input.pipe_input_at("a", 0, 5)?;
    input.pipe_input_at("a", 0, 12)?;
    // Stream time 12: window [0, 10) closes at 10 + 5 grace, so this late record still counts.
    input.pipe_input_at("a", 0, 8)?;
    input.pipe_input_at("a", 0, 20)?;
    // Stream time 20 is past 15: window [0, 10) is closed.
    input.pipe_input_at("a", 0, 3)?;

    assert_eq!(
        output.read_key_values_to_vec()?,
        vec![
            (windowed("a", 0, 10), 1),
            (windowed("a", 0, 10), 2),
            (windowed("a", 10, 20), 1),
            (windowed("a", 0, 10), 3),
            (windowed("a", 20, 30), 1),
        ]
    );
    assert_eq!(driver.dropped_records(), 1);
    Ok(())
}

#[test]
fn hopping_windows_update_every_overlapping_window() -> TestResult {
    let builder = StreamsBuilder::new();
    grouped(&builder)
        .windowed_by(TimeWindows::of_size_without_grace(ms(10)).advance_by(ms(5)))
        .reduce(|sum, value| sum + value, Materialized::as_store("sums"))
        .to_stream()
        .to("out", Produced::with(TimeWindowedSerde::new(StringSerde, ms(10)), I64Serde));
    let driver = driver(builder);
    let input = driver.create_input_topic("in", StringSerde, I64Serde);
    input.pipe_input_at("a", 1, 3)?;
    input.pipe_input_at("a", 10, 7)?;
    let output = driver.create_output_topic("out", TimeWindowedSerde::new(StringSerde, ms(10)), I64Serde);
    assert_eq!(
        output.read_key_values_to_vec()?,
        vec![(windowed("a", 0, 10), 1), (windowed("a", 0, 10), 11), (windowed("a", 5, 15), 10)]
    );
    Ok(())
}

#[test]
fn windowed_aggregate_and_invalid_windows() -> TestResult {
    let builder = StreamsBuilder::new();
    grouped(&builder)
        .windowed_by(TimeWindows::of_size_without_grace(ms(100)))
        .aggregate(|| 100, |_, value, total| total - value, Materialized::as_store("left").with_value_serde(I64Serde))
        .to_stream()
        .to("out", Produced::with(TimeWindowedSerde::new(StringSerde, ms(100)), I64Serde));
    let driver = driver(builder);
    driver.create_input_topic("in", StringSerde, I64Serde).pipe_input_at("a", 30, 50)?;
    let output = driver.create_output_topic("out", TimeWindowedSerde::new(StringSerde, ms(100)), I64Serde);
    assert_eq!(output.read_key_value()?, (windowed("a", 0, 100), 70));

    let invalid = StreamsBuilder::new();
    grouped(&invalid)
        .windowed_by(TimeWindows::of_size_without_grace(ms(10)).advance_by(ms(20)))
        .count(Materialized::default());
    assert!(invalid.try_build("app").is_err());
    Ok(())
}

#[test]
fn session_windows_merge_sessions_emit_tombstones_and_drop_late_records() -> TestResult {
    let builder = StreamsBuilder::new();
    grouped(&builder)
        .windowed_by(SessionWindows::with_inactivity_gap_and_grace(ms(10), ms(20)))
        .count(Materialized::as_store("sessions"))
        .to_stream_with_tombstones()
        .to("out", Produced::with(SessionWindowedSerde::new(StringSerde), NullableSerde(I64Serde)));
    let driver = driver(builder);
    let input = driver.create_input_topic("in", StringSerde, I64Serde);
    for timestamp_ms in [0, 5, 30, 14, 22, 100] {
        input.pipe_input_at("a", 0, timestamp_ms)?;
    }
    // Stream time 100, grace 20: a record at 50 would form the session [50, 50], closed at 80.
    input.pipe_input_at("a", 0, 50)?;
    input.pipe_input_at("b", 0, 90)?;

    let output = driver.create_output_topic("out", SessionWindowedSerde::new(StringSerde), NullableSerde(I64Serde));
    assert_eq!(
        output.read_key_values_to_vec()?,
        vec![
            (windowed("a", 0, 0), Some(1)),
            (windowed("a", 0, 0), None),
            (windowed("a", 0, 5), Some(2)),
            (windowed("a", 30, 30), Some(1)),
            (windowed("a", 0, 5), None),
            (windowed("a", 0, 14), Some(3)),
            (windowed("a", 0, 14), None),
            (windowed("a", 30, 30), None),
            (windowed("a", 0, 30), Some(5)),
            (windowed("a", 100, 100), Some(1)),
            (windowed("b", 90, 90), Some(1)),
        ]
    );
    assert_eq!(driver.dropped_records(), 1);
    Ok(())
}

#[test]
fn session_reduce_and_aggregate_merge_session_values() -> TestResult {
    let builder = StreamsBuilder::new();
    let sessions = grouped(&builder).windowed_by(SessionWindows::with_inactivity_gap_and_no_grace(ms(10)));
    sessions
        .reduce(|a, b| a + b, Materialized::as_store("sum"))
        .to_stream()
        .to("sum", Produced::with(SessionWindowedSerde::new(StringSerde), I64Serde));
    sessions
        .aggregate(
            || 0,
            |_, value, max: i64| max.max(value),
            |_, a, b| a.max(b),
            Materialized::as_store("max").with_value_serde(I64Serde),
        )
        .to_stream()
        .to("max", Produced::with(SessionWindowedSerde::new(StringSerde), I64Serde));
    let driver = driver(builder);
    let input = driver.create_input_topic("in", StringSerde, I64Serde);
    input.pipe_input_at("a", 4, 0)?;
    input.pipe_input_at("a", 1, 8)?;
    input.pipe_input_at("a", 9, 15)?;
    let read_last = |topic: &str| -> Result<Option<(Windowed<String>, i64)>, crate::test_driver::DriverError> {
        Ok(driver
            .create_output_topic(topic, SessionWindowedSerde::new(StringSerde), I64Serde)
            .read_key_values_to_vec()?
            .pop())
    };
    assert_eq!(read_last("sum")?, Some((windowed("a", 0, 15), 14)));
    assert_eq!(read_last("max")?, Some((windowed("a", 0, 15), 9)));
    Ok(())
}

#[test]
fn window_and_session_state_survive_a_restart() -> TestResult {
    let builder = StreamsBuilder::new();
    let grouped = grouped(&builder);
    grouped
        .windowed_by(TimeWindows::of_size_without_grace(ms(10)))
        .count(Materialized::as_store("windows"))
        .to_stream()
        .to("windows", Produced::with(TimeWindowedSerde::new(StringSerde, ms(10)), I64Serde));
    grouped
        .windowed_by(SessionWindows::with_inactivity_gap_and_no_grace(ms(10)))
        .count(Materialized::as_store("sessions"))
        .to_stream()
        .to("sessions", Produced::with(SessionWindowedSerde::new(StringSerde), I64Serde));
    let driver = driver(builder);
    let input = driver.create_input_topic("in", StringSerde, I64Serde);
    input.pipe_input_at("a", 0, 1)?;
    input.pipe_input_at("a", 0, 2)?;
    driver.restart_from_changelogs()?;
    input.pipe_input_at("a", 0, 3)?;

    let windows = driver.create_output_topic("windows", TimeWindowedSerde::new(StringSerde, ms(10)), I64Serde);
    assert_eq!(windows.read_key_values_to_vec()?.last(), Some(&(windowed("a", 0, 10), 3)));
    let sessions = driver.create_output_topic("sessions", SessionWindowedSerde::new(StringSerde), I64Serde);
    assert_eq!(sessions.read_key_values_to_vec()?.last(), Some(&(windowed("a", 1, 3), 3)));
    Ok(())
}
