use super::{kv, pair, TestResult, APP};
use crate::dsl::{Consumed, Grouped, Materialized, Processed, Produced, Repartitioned, StreamsBuilder};
use crate::error::ProcessError;
use crate::processor::{Processor, ProcessorContext};
use crate::record::Record;
use crate::serdes::{I64Serde, StringSerde};
use crate::store::StoreBuilder;
use crate::windowing::{TimeWindowedSerde, TimeWindows, Windowed};

#[test]
fn explicit_repartition_uses_a_named_topic_and_a_new_subtopology() -> TestResult {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .select_key(|_, value| value.clone())
        .repartition(Repartitioned::with(StringSerde, StringSerde).with_name("by-value"))
        .to("out", Produced::with(StringSerde, StringSerde));
    let topology = builder.build(APP);
    assert_eq!(topology.repartition_topics(), vec!["app-by-value-repartition".to_owned()]);
    assert_eq!(topology.subtopology_count(), 2);
    assert_eq!(topology.subtopology_of("in"), Some(0));
    assert_eq!(topology.subtopology_of("app-by-value-repartition"), Some(1));
    assert_eq!(topology.source_topics(), vec!["in".to_owned(), "app-by-value-repartition".to_owned()]);
    assert_eq!(topology.sink_topics(), vec!["out".to_owned()]);

    let driver = crate::test_driver::TopologyTestDriver::new(topology);
    driver.create_input_topic("in", StringSerde, StringSerde).pipe_input("k", "v")?;
    assert_eq!(driver.create_output_topic("out", StringSerde, StringSerde).read_key_value()?, pair("v", "v"));
    Ok(())
}

#[test]
fn repartition_records_have_no_partition_so_the_producer_hashes_the_key() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .repartition(Repartitioned::with(StringSerde, StringSerde).with_name("r"));
    let topology = builder.build(APP);
    let mut task = topology.create_task(crate::topology::TaskId { subtopology: 0, partition: 2 }).unwrap();
    let record = crate::record::RawRecord {
        topic: "in".into(),
        partition: 2,
        offset: 0,
        timestamp_ms: 9,
        key: Some(b"k".to_vec()),
        value: Some(b"v".to_vec()),
        headers: vec![],
    };
    assert!(task.process(record).is_ok());
    let output = task.take_output();
    assert_eq!(output.len(), 1);
    assert_eq!((output[0].topic.as_str(), output[0].partition, output[0].timestamp_ms), ("app-r-repartition", None, 9));
}

#[test]
fn grouping_after_a_key_change_repartitions_automatically() -> TestResult {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .map(|_, value: String| (value.clone(), value))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .count(Materialized::as_store("counts"))
        .to_stream()
        .to("out", Produced::with(StringSerde, I64Serde));
    let topology = builder.build(APP);
    assert_eq!(topology.repartition_topics(), vec!["app-counts-repartition".to_owned()]);
    assert_eq!(topology.changelog_topics(), vec!["app-counts-changelog".to_owned()]);
    assert_eq!(topology.changelogs_of(0), Vec::<String>::new());
    assert_eq!(topology.changelogs_of(1), vec!["app-counts-changelog".to_owned()]);

    let driver = crate::test_driver::TopologyTestDriver::new(topology);
    driver.create_input_topic("in", StringSerde, StringSerde).pipe_key_values([
        pair("1", "a"),
        pair("2", "b"),
        pair("3", "a"),
    ])?;
    let output = driver.create_output_topic("out", StringSerde, I64Serde);
    assert_eq!(output.read_key_values_to_vec()?, vec![kv("a", 1), kv("b", 1), kv("a", 2)]);
    Ok(())
}

#[test]
fn grouped_name_names_the_repartition_topic_and_group_by_always_repartitions() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .group_by(|_, value| value.clone(), Grouped::with(StringSerde, StringSerde).with_name("by-word"))
        .count(Materialized::default());
    let topology = builder.build(APP);
    assert_eq!(topology.repartition_topics(), vec!["app-by-word-repartition".to_owned()]);
    assert_eq!(topology.subtopology_count(), 2);
}

#[test]
fn unnamed_repartition_topics_get_generated_names() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .select_key(|_, value| value.clone())
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .count(Materialized::default());
    let topology = builder.build(APP);
    assert_eq!(
        topology.repartition_topics(),
        vec!["app-KSTREAM-AGGREGATE-STATE-STORE-0000000002-repartition".to_owned()]
    );
    assert_eq!(topology.changelog_topics(), vec!["app-KSTREAM-AGGREGATE-STATE-STORE-0000000002-changelog".to_owned()]);
}

#[test]
fn grouping_an_unchanged_key_does_not_repartition() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .filter(|_, _| true)
        .map_values(|value: String| value.len() as i64)
        .group_by_key(Grouped::with(StringSerde, I64Serde))
        .count(Materialized::as_store("counts"));
    let topology = builder.build(APP);
    assert!(topology.repartition_topics().is_empty());
    assert_eq!(topology.subtopology_count(), 1);
}

struct Remember;

impl Processor<String, String> for Remember {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        ctx.kv_store::<String, String>("last")?.put(&record.key, &record.value)?;
        ctx.forward(record)
    }
}

#[test]
fn a_processor_with_stores_after_a_key_change_repartitions() -> TestResult {
    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::key_value("last", StringSerde, StringSerde));
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .select_key(|_, value| value.clone())
        .process_with(|| Remember, Processed::default().with_stores(&["last"]).with_serdes(StringSerde, StringSerde))
        .to("out", Produced::with(StringSerde, StringSerde));
    let topology = builder.build(APP);
    assert_eq!(topology.repartition_topics(), vec!["app-KSTREAM-PROCESSOR-0000000002-repartition".to_owned()]);
    let driver = crate::test_driver::TopologyTestDriver::new(topology);
    driver.create_input_topic("in", StringSerde, StringSerde).pipe_input("k", "v")?;
    assert_eq!(driver.key_value_store::<String, String>("last")?.get(&"v".to_owned())?, Some("v".to_owned()));
    Ok(())
}

#[test]
fn automatic_repartition_without_known_serdes_is_a_build_error() {
    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::key_value("last", StringSerde, StringSerde));
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .map(|key, value| (key, value))
        .process(|| Remember, &["last"]);
    let error = builder.try_build(APP).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("must be repartitioned"), "{error}");
}

/// Orders keyed `<customer>-<n>`, grouped by customer: a grouping that must repartition.
fn orders_by_customer(
    builder: &StreamsBuilder,
    grouped: Grouped<String, i64>,
) -> crate::dsl::KGroupedStream<String, i64> {
    builder
        .stream("orders", Consumed::with(StringSerde, I64Serde))
        .group_by(|order: &String, _| order.split('-').next().unwrap_or_default().to_owned(), grouped)
}

fn pipe_three_orders(driver: &crate::test_driver::TopologyTestDriver) -> TestResult {
    driver.create_input_topic("orders", StringSerde, I64Serde).pipe_key_values([
        kv("a-1", 5),
        kv("b-1", 1),
        kv("a-2", 7),
    ])?;
    Ok(())
}

#[test]
fn aggregations_of_a_named_grouping_share_its_repartition_topic() -> TestResult {
    let builder = StreamsBuilder::new();
    let by_customer = orders_by_customer(&builder, Grouped::with(StringSerde, I64Serde).with_name("by-customer"));
    by_customer.count(Materialized::as_store("counts")).to_stream().to("counts", Produced::with(StringSerde, I64Serde));
    by_customer
        .reduce(|sum, amount| sum + amount, Materialized::as_store("sums"))
        .to_stream()
        .to("sums", Produced::with(StringSerde, I64Serde));
    let topology = builder.try_build(APP)?;
    assert_eq!(topology.repartition_topics(), vec!["app-by-customer-repartition".to_owned()]);
    assert_eq!(topology.subtopology_count(), 2);

    let driver = crate::test_driver::TopologyTestDriver::new(topology);
    pipe_three_orders(&driver)?;
    let counts = driver.create_output_topic("counts", StringSerde, I64Serde);
    assert_eq!(counts.read_key_values_to_vec()?, vec![kv("a", 1), kv("b", 1), kv("a", 2)]);
    let sums = driver.create_output_topic("sums", StringSerde, I64Serde);
    assert_eq!(sums.read_key_values_to_vec()?, vec![kv("a", 5), kv("b", 1), kv("a", 12)]);
    Ok(())
}

#[test]
fn aggregations_of_an_unnamed_grouping_share_the_repartition_topic_of_the_first() -> TestResult {
    let builder = StreamsBuilder::new();
    let by_customer = orders_by_customer(&builder, Grouped::with(StringSerde, I64Serde));
    by_customer.count(Materialized::as_store("counts"));
    by_customer.reduce(|sum, amount| sum + amount, Materialized::as_store("sums"));
    let topology = builder.try_build(APP)?;
    assert_eq!(topology.repartition_topics(), vec!["app-counts-repartition".to_owned()]);

    let driver = crate::test_driver::TopologyTestDriver::new(topology);
    pipe_three_orders(&driver)?;
    assert_eq!(driver.key_value_store::<String, i64>("counts")?.all()?, vec![kv("a", 2), kv("b", 1)]);
    assert_eq!(driver.key_value_store::<String, i64>("sums")?.all()?, vec![kv("a", 12), kv("b", 1)]);
    Ok(())
}

#[test]
fn windowed_and_plain_aggregations_of_one_grouping_share_its_repartition_topic() -> TestResult {
    let window = std::time::Duration::from_millis(10);
    let builder = StreamsBuilder::new();
    let by_customer = orders_by_customer(&builder, Grouped::with(StringSerde, I64Serde).with_name("by-customer"));
    by_customer.count(Materialized::as_store("counts"));
    by_customer
        .windowed_by(TimeWindows::of_size_without_grace(window))
        .count(Materialized::as_store("windowed-counts"))
        .to_stream()
        .to("windowed-counts", Produced::with(TimeWindowedSerde::new(StringSerde, window), I64Serde));
    let topology = builder.try_build(APP)?;
    assert_eq!(topology.repartition_topics(), vec!["app-by-customer-repartition".to_owned()]);

    let driver = crate::test_driver::TopologyTestDriver::new(topology);
    let orders = driver.create_input_topic("orders", StringSerde, I64Serde);
    orders.pipe_input_at("a-1", 5, 1)?;
    orders.pipe_input_at("b-1", 1, 2)?;
    orders.pipe_input_at("a-2", 7, 12)?;
    assert_eq!(driver.key_value_store::<String, i64>("counts")?.all()?, vec![kv("a", 2), kv("b", 1)]);
    let windowed_counts =
        driver.create_output_topic("windowed-counts", TimeWindowedSerde::new(StringSerde, window), I64Serde);
    assert_eq!(
        windowed_counts.read_key_values_to_vec()?,
        vec![
            (Windowed::new("a".to_owned(), 0, 10), 1),
            (Windowed::new("b".to_owned(), 0, 10), 1),
            (Windowed::new("a".to_owned(), 10, 20), 1)
        ]
    );
    Ok(())
}
