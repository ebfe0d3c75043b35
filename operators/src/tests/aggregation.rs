use super::{driver, kv, pair, TestResult, APP};
use crate::dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
use crate::record::RawRecord;
use crate::serdes::{I64Serde, JsonSerde, NullableSerde, StringSerde};

fn grouped_numbers(builder: &StreamsBuilder) -> crate::dsl::KGroupedStream<String, i64> {
    builder.stream("in", Consumed::with(StringSerde, I64Serde)).group_by_key(Grouped::with(StringSerde, I64Serde))
}

#[test]
fn count_emits_every_update_and_materializes_the_store() -> TestResult {
    let builder = StreamsBuilder::new();
    grouped_numbers(&builder)
        .count(Materialized::as_store("counts"))
        .to_stream()
        .to("out", Produced::with(StringSerde, I64Serde));
    let driver = driver(builder);
    driver.create_input_topic("in", StringSerde, I64Serde).pipe_key_values([kv("a", 0), kv("b", 0), kv("a", 0)])?;
    let output = driver.create_output_topic("out", StringSerde, I64Serde);
    assert_eq!(output.read_key_values_to_vec()?, vec![kv("a", 1), kv("b", 1), kv("a", 2)]);
    let store = driver.key_value_store::<String, i64>("counts")?;
    assert_eq!(store.all()?, vec![kv("a", 2), kv("b", 1)]);
    Ok(())
}

#[test]
fn every_store_write_is_change_logged_for_the_task_partition() -> TestResult {
    let builder = StreamsBuilder::new();
    grouped_numbers(&builder).count(Materialized::as_store("counts"));
    let driver = driver(builder);
    driver.create_input_topic("in", StringSerde, I64Serde).pipe_key_values([kv("a", 0), kv("a", 0)])?;
    let changelog = driver.changelog_records("app-counts-changelog");
    let entries: Vec<_> = changelog.iter().map(|r| (r.partition, r.key.clone(), r.value.clone())).collect();
    assert_eq!(
        entries,
        vec![
            (Some(0), Some(b"a".to_vec()), Some(1i64.to_be_bytes().to_vec())),
            (Some(0), Some(b"a".to_vec()), Some(2i64.to_be_bytes().to_vec()))
        ]
    );
    Ok(())
}

#[test]
fn aggregations_of_a_grouping_without_repartition_read_the_stream_itself() -> TestResult {
    let builder = StreamsBuilder::new();
    let grouped = grouped_numbers(&builder);
    grouped.count(Materialized::as_store("counts")).to_stream().to("counts", Produced::with(StringSerde, I64Serde));
    grouped
        .reduce(|sum, value| sum + value, Materialized::as_store("sums"))
        .to_stream()
        .to("sums", Produced::with(StringSerde, I64Serde));
    let topology = builder.build(APP);
    assert!(topology.repartition_topics().is_empty());
    assert_eq!(topology.subtopology_count(), 1);

    let driver = crate::test_driver::TopologyTestDriver::new(topology);
    driver.create_input_topic("in", StringSerde, I64Serde).pipe_key_values([kv("a", 5), kv("b", 1), kv("a", 7)])?;
    let counts = driver.create_output_topic("counts", StringSerde, I64Serde);
    assert_eq!(counts.read_key_values_to_vec()?, vec![kv("a", 1), kv("b", 1), kv("a", 2)]);
    let sums = driver.create_output_topic("sums", StringSerde, I64Serde);
    assert_eq!(sums.read_key_values_to_vec()?, vec![kv("a", 5), kv("b", 1), kv("a", 12)]);
    Ok(())
}

#[test]
fn reduce_combines_values_per_key() -> TestResult {
    let builder = StreamsBuilder::new();
    grouped_numbers(&builder)
        .reduce(|sum, value| sum + value, Materialized::as_store("sums"))
        .to_stream()
        .to("out", Produced::with(StringSerde, I64Serde));
    let driver = driver(builder);
    driver.create_input_topic("in", StringSerde, I64Serde).pipe_key_values([kv("a", 5), kv("b", 1), kv("a", 7)])?;
    let output = driver.create_output_topic("out", StringSerde, I64Serde);
    assert_eq!(output.read_key_values_to_vec()?, vec![kv("a", 5), kv("b", 1), kv("a", 12)]);
    assert_eq!(driver.key_value_store::<String, i64>("sums")?.get(&"a".to_owned())?, Some(12));
    Ok(())
}

#[test]
fn aggregate_folds_from_the_initializer() -> TestResult {
    let builder = StreamsBuilder::new();
    grouped_numbers(&builder)
        .aggregate(
            Vec::new,
            |_, value, mut seen: Vec<i64>| {
                seen.push(value);
                seen
            },
            Materialized::as_store("seen").with_value_serde(JsonSerde::new()),
        )
        .to_stream()
        .to("out", Produced::with(StringSerde, JsonSerde::new()));
    let driver = driver(builder);
    driver.create_input_topic("in", StringSerde, I64Serde).pipe_key_values([kv("a", 1), kv("a", 2)])?;
    let output = driver.create_output_topic("out", StringSerde, JsonSerde::<Vec<i64>>::new());
    assert_eq!(output.read_values_to_vec()?, vec![vec![1], vec![1, 2]]);
    Ok(())
}

#[test]
fn aggregate_without_a_value_serde_is_a_build_error() {
    let builder = StreamsBuilder::new();
    grouped_numbers(&builder).aggregate(|| 0.0_f64, |_, value, sum| sum + value as f64, Materialized::as_store("avg"));
    let error = builder.try_build(APP).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("store 'avg': an aggregate needs a value serde"), "{error}");
}

fn users_table(builder: &StreamsBuilder) -> crate::dsl::KTable<String, String> {
    builder.table("users", Consumed::with(StringSerde, StringSerde), Materialized::as_store("users-store"))
}

fn tombstone(topic: &str, key: &str, offset: i64) -> RawRecord {
    RawRecord {
        topic: topic.to_owned(),
        partition: 0,
        offset,
        timestamp_ms: 0,
        key: Some(key.as_bytes().to_vec()),
        value: None,
        headers: vec![],
    }
}

#[test]
fn table_source_upserts_and_deletes_on_tombstones() -> TestResult {
    let builder = StreamsBuilder::new();
    users_table(&builder)
        .to_stream_with_tombstones()
        .to("out", Produced::with(StringSerde, NullableSerde(StringSerde)));
    let driver = driver(builder);
    let users = driver.create_input_topic("users", StringSerde, StringSerde);
    users.pipe_key_values([pair("u1", "ann"), pair("u2", "bob"), pair("u1", "anna")])?;
    driver.pipe_raw_record(tombstone("users", "u2", 99))?;
    let store = driver.key_value_store::<String, String>("users-store")?;
    assert_eq!(store.all()?, vec![pair("u1", "anna")]);
    let output = driver.create_output_topic("out", StringSerde, NullableSerde(StringSerde));
    let updates = output.read_key_values_to_vec()?;
    assert_eq!(updates.last(), Some(&("u2".to_owned(), None)));
    assert_eq!(updates.len(), 4);
    Ok(())
}

#[test]
fn table_filter_and_map_values_forward_deletions() -> TestResult {
    let builder = StreamsBuilder::new();
    users_table(&builder)
        .filter(|_, name| name.len() > 3)
        .map_values(|name| name.to_uppercase())
        .to_stream_with_tombstones()
        .to("out", Produced::with(StringSerde, NullableSerde(StringSerde)));
    let driver = driver(builder);
    driver
        .create_input_topic("users", StringSerde, StringSerde)
        .pipe_key_values([pair("u1", "anna"), pair("u1", "ann")])?;
    let output = driver.create_output_topic("out", StringSerde, NullableSerde(StringSerde));
    assert_eq!(
        output.read_key_values_to_vec()?,
        vec![("u1".to_owned(), Some("ANNA".to_owned())), ("u1".to_owned(), None)]
    );
    Ok(())
}

#[test]
fn table_to_stream_leaves_deletions_out() -> TestResult {
    let builder = StreamsBuilder::new();
    users_table(&builder)
        .filter_not(|_, name| name == "bob")
        .to_stream()
        .to("out", Produced::with(StringSerde, StringSerde));
    let driver = driver(builder);
    driver
        .create_input_topic("users", StringSerde, StringSerde)
        .pipe_key_values([pair("u1", "ann"), pair("u2", "bob")])?;
    let output = driver.create_output_topic("out", StringSerde, StringSerde);
    assert_eq!(output.read_key_values_to_vec()?, vec![pair("u1", "ann")]);
    Ok(())
}

#[test]
fn counts_survive_a_restart_from_changelogs() -> TestResult {
    let builder = StreamsBuilder::new();
    grouped_numbers(&builder)
        .count(Materialized::as_store("counts"))
        .to_stream()
        .to("out", Produced::with(StringSerde, I64Serde));
    let driver = driver(builder);
    let input = driver.create_input_topic("in", StringSerde, I64Serde);
    input.pipe_key_values([kv("a", 0), kv("a", 0), kv("b", 0)])?;
    driver.restart_from_changelogs()?;
    assert_eq!(driver.key_value_store::<String, i64>("counts")?.all()?, vec![kv("a", 2), kv("b", 1)]);
    input.pipe_input("a", 0)?;
    let output = driver.create_output_topic("out", StringSerde, I64Serde);
    assert_eq!(output.read_key_values_to_vec()?.last(), Some(&kv("a", 3)));
    Ok(())
}
