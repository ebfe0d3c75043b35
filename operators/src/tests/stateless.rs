use std::sync::{Arc, Mutex};

use super::{driver, kv, pair, TestResult};
use crate::dsl::{Consumed, Produced, StreamsBuilder};
use crate::record::{Header, Record};
use crate::serdes::{I64Serde, StringSerde};

fn numbers(builder: &StreamsBuilder) -> crate::dsl::KStream<String, i64> {
    builder.stream("in", Consumed::with(StringSerde, I64Serde))
}

#[test]
fn filter_keeps_matching_records() -> TestResult {
    let builder = StreamsBuilder::new();
    numbers(&builder).filter(|_, value| *value > 10).to("out", Produced::with(StringSerde, I64Serde));
    let driver = driver(builder);
    let input = driver.create_input_topic("in", StringSerde, I64Serde);
    let output = driver.create_output_topic("out", StringSerde, I64Serde);
    input.pipe_key_values([kv("a", 5), kv("b", 20), kv("c", 11)])?;
    assert_eq!(output.read_key_values_to_vec()?, vec![kv("b", 20), kv("c", 11)]);
    Ok(())
}

#[test]
fn filter_not_drops_matching_records() -> TestResult {
    let builder = StreamsBuilder::new();
    numbers(&builder).filter_not(|key, _| key.starts_with('x')).to("out", Produced::with(StringSerde, I64Serde));
    let driver = driver(builder);
    let input = driver.create_input_topic("in", StringSerde, I64Serde);
    let output = driver.create_output_topic("out", StringSerde, I64Serde);
    input.pipe_key_values([kv("xa", 1), kv("b", 2)])?;
    assert_eq!(output.read_key_values_to_vec()?, vec![kv("b", 2)]);
    Ok(())
}

#[test]
fn map_replaces_key_and_value_and_keeps_timestamp_and_headers() -> TestResult {
    let builder = StreamsBuilder::new();
    numbers(&builder).map(|key, value| (value.to_string(), key)).to("out", Produced::with(StringSerde, StringSerde));
    let driver = driver(builder);
    let input = driver.create_input_topic("in", StringSerde, I64Serde);
    let output = driver.create_output_topic("out", StringSerde, StringSerde);
    let headers = vec![Header::new("trace", "t-1")];
    input.pipe_record(Record::new("a".to_owned(), 7, 1234).with_headers(headers.clone()))?;
    let record = output.read_record()?;
    assert_eq!((record.key.as_str(), record.value.as_str(), record.timestamp_ms), ("7", "a", 1234));
    assert_eq!(record.headers, headers);
    Ok(())
}

#[test]
fn map_values_and_map_values_with_key() -> TestResult {
    let builder = StreamsBuilder::new();
    let lines = builder.stream("in", Consumed::with(StringSerde, StringSerde));
    lines.map_values(|line: String| line.len() as i64).to("lengths", Produced::with(StringSerde, I64Serde));
    lines
        .map_values_with_key(|key, line| format!("{key}={line}"))
        .to("labelled", Produced::with(StringSerde, StringSerde));
    let driver = driver(builder);
    driver.create_input_topic("in", StringSerde, StringSerde).pipe_input("k", "hello")?;
    assert_eq!(driver.create_output_topic("lengths", StringSerde, I64Serde).read_key_value()?, kv("k", 5));
    assert_eq!(
        driver.create_output_topic("labelled", StringSerde, StringSerde).read_key_value()?,
        pair("k", "k=hello")
    );
    Ok(())
}

#[test]
fn flat_map_emits_every_pair() -> TestResult {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .flat_map(|key, csv: String| csv.split(',').map(|part| (part.to_owned(), key.clone())).collect::<Vec<_>>())
        .to("out", Produced::with(StringSerde, StringSerde));
    let driver = driver(builder);
    driver.create_input_topic("in", StringSerde, StringSerde).pipe_input("k", "x,y")?;
    let output = driver.create_output_topic("out", StringSerde, StringSerde);
    assert_eq!(output.read_key_values_to_vec()?, vec![pair("x", "k"), pair("y", "k")]);
    Ok(())
}

#[test]
fn flat_map_values_keeps_the_key() -> TestResult {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .flat_map_values(|line: String| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .to("out", Produced::with(StringSerde, StringSerde));
    let driver = driver(builder);
    driver.create_input_topic("in", StringSerde, StringSerde).pipe_input("k", "a b")?;
    let output = driver.create_output_topic("out", StringSerde, StringSerde);
    assert_eq!(output.read_key_values_to_vec()?, vec![pair("k", "a"), pair("k", "b")]);
    assert!(output.is_empty());
    Ok(())
}

#[test]
fn peek_sees_records_and_passes_them_on() -> TestResult {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let builder = StreamsBuilder::new();
    let sink = Arc::clone(&seen);
    numbers(&builder)
        .peek(move |key, value| sink.lock().unwrap().push((key.clone(), *value)))
        .to("out", Produced::with(StringSerde, I64Serde));
    let driver = driver(builder);
    driver.create_input_topic("in", StringSerde, I64Serde).pipe_input("a", 1)?;
    assert_eq!(*seen.lock().unwrap(), vec![kv("a", 1)]);
    assert_eq!(driver.create_output_topic("out", StringSerde, I64Serde).read_key_value()?, kv("a", 1));
    Ok(())
}

#[test]
fn foreach_runs_an_action_per_record() -> TestResult {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let builder = StreamsBuilder::new();
    let sink = Arc::clone(&seen);
    numbers(&builder).foreach(move |key, value| sink.lock().unwrap().push((key.clone(), *value)));
    let driver = driver(builder);
    driver.create_input_topic("in", StringSerde, I64Serde).pipe_key_values([kv("a", 1), kv("b", 2)])?;
    assert_eq!(*seen.lock().unwrap(), vec![kv("a", 1), kv("b", 2)]);
    Ok(())
}

#[test]
fn select_key_rekeys_from_the_value() -> TestResult {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .select_key(|_, value| value.to_uppercase())
        .to("out", Produced::with(StringSerde, StringSerde));
    let driver = driver(builder);
    driver.create_input_topic("in", StringSerde, StringSerde).pipe_input_at("k", "v", 42)?;
    let record = driver.create_output_topic("out", StringSerde, StringSerde).read_record()?;
    assert_eq!((record.key.as_str(), record.value.as_str(), record.timestamp_ms), ("V", "v", 42));
    Ok(())
}

#[test]
fn split_routes_to_the_first_matching_branch_then_the_default() -> TestResult {
    let builder = StreamsBuilder::new();
    let mut branches = numbers(&builder)
        .split()
        .branch("small", |_, value| *value < 10)
        .branch("medium", |_, value| *value < 100)
        .default_branch("large");
    for name in ["small", "medium", "large"] {
        let branch = branches.remove(name).ok_or("missing branch")?;
        branch.to(name, Produced::with(StringSerde, I64Serde));
    }
    let driver = driver(builder);
    driver.create_input_topic("in", StringSerde, I64Serde).pipe_key_values([
        kv("a", 5),
        kv("b", 50),
        kv("c", 500),
        kv("d", 1),
    ])?;
    let read = |topic: &str| driver.create_output_topic(topic, StringSerde, I64Serde).read_key_values_to_vec();
    assert_eq!(read("small")?, vec![kv("a", 5), kv("d", 1)]);
    assert_eq!(read("medium")?, vec![kv("b", 50)]);
    assert_eq!(read("large")?, vec![kv("c", 500)]);
    Ok(())
}

#[test]
fn split_without_default_drops_unmatched_records() -> TestResult {
    let builder = StreamsBuilder::new();
    let branches = numbers(&builder).split().branch("even", |_, value| value % 2 == 0).no_default_branch();
    assert_eq!(branches.len(), 1);
    if let Some(even) = branches.get("even") {
        even.to("even", Produced::with(StringSerde, I64Serde));
    }
    let driver = driver(builder);
    driver.create_input_topic("in", StringSerde, I64Serde).pipe_key_values([kv("a", 1), kv("b", 2)])?;
    assert_eq!(driver.create_output_topic("even", StringSerde, I64Serde).read_key_values_to_vec()?, vec![kv("b", 2)]);
    Ok(())
}

#[test]
fn merge_combines_two_streams() -> TestResult {
    let builder = StreamsBuilder::new();
    let left = builder.stream("left", Consumed::with(StringSerde, I64Serde));
    let right = builder.stream("right", Consumed::with(StringSerde, I64Serde));
    left.merge(&right).to("out", Produced::with(StringSerde, I64Serde));
    let driver = driver(builder);
    driver.create_input_topic("left", StringSerde, I64Serde).pipe_input("l", 1)?;
    driver.create_input_topic("right", StringSerde, I64Serde).pipe_input("r", 2)?;
    assert_eq!(
        driver.create_output_topic("out", StringSerde, I64Serde).read_key_values_to_vec()?,
        vec![kv("l", 1), kv("r", 2)]
    );
    Ok(())
}

#[test]
fn one_stream_fans_out_to_every_consumer() -> TestResult {
    let builder = StreamsBuilder::new();
    let stream = numbers(&builder);
    stream.to("copy-1", Produced::with(StringSerde, I64Serde));
    stream.map_values(|value| value * 2).to("copy-2", Produced::with(StringSerde, I64Serde));
    let driver = driver(builder);
    driver.create_input_topic("in", StringSerde, I64Serde).pipe_input("a", 3)?;
    assert_eq!(driver.create_output_topic("copy-1", StringSerde, I64Serde).read_key_value()?, kv("a", 3));
    assert_eq!(driver.create_output_topic("copy-2", StringSerde, I64Serde).read_key_value()?, kv("a", 6));
    Ok(())
}
