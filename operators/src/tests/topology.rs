use super::{TestResult, APP};
use crate::dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
use crate::serdes::{I64Serde, StringSerde};
use crate::test_driver::TopologyTestDriver;

fn word_count() -> StreamsBuilder {
    let builder = StreamsBuilder::new();
    builder
        .stream("text", Consumed::with(StringSerde, StringSerde))
        .flat_map_values(|line: String| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .group_by(|_, word| word.clone(), Grouped::with(StringSerde, StringSerde))
        .count(Materialized::as_store("counts"))
        .to_stream()
        .to("word-counts", Produced::with(StringSerde, I64Serde));
    builder
}

#[test]
fn topic_lists_name_every_topic_the_runtime_needs() {
    let topology = word_count().build(APP);
    assert_eq!(topology.application_id(), APP);
    assert_eq!(topology.source_topics(), vec!["text".to_owned(), "app-counts-repartition".to_owned()]);
    assert_eq!(topology.repartition_topics(), vec!["app-counts-repartition".to_owned()]);
    assert_eq!(topology.changelog_topics(), vec!["app-counts-changelog".to_owned()]);
    assert_eq!(topology.sink_topics(), vec!["word-counts".to_owned()]);
    assert_eq!(topology.subtopology_count(), 2);
    assert_eq!(topology.subtopology_of("unknown"), None);
    assert_eq!(topology.changelogs_of(7), Vec::<String>::new());
}

#[test]
fn describe_follows_kafka_streams_format() {
    let description = word_count().build(APP).describe();
    let expected = "\
Topologies:
   Sub-topology: 0
    Source: KSTREAM-SOURCE-0000000000 (topics: [text])
      --> KSTREAM-FLATMAPVALUES-0000000001
    Processor: KSTREAM-FLATMAPVALUES-0000000001 (stores: [])
      --> KSTREAM-KEY-SELECT-0000000002
      <-- KSTREAM-SOURCE-0000000000
    Processor: KSTREAM-KEY-SELECT-0000000002 (stores: [])
      --> counts-repartition-sink
      <-- KSTREAM-FLATMAPVALUES-0000000001
    Sink: counts-repartition-sink (topic: app-counts-repartition)
      <-- KSTREAM-KEY-SELECT-0000000002

   Sub-topology: 1
    Source: counts-repartition-source (topics: [app-counts-repartition])
      --> KSTREAM-AGGREGATE-0000000003
    Processor: KSTREAM-AGGREGATE-0000000003 (stores: [counts])
      --> KTABLE-TOSTREAM-0000000004
      <-- counts-repartition-source
    Processor: KTABLE-TOSTREAM-0000000004 (stores: [])
      --> KSTREAM-SINK-0000000005
      <-- KSTREAM-AGGREGATE-0000000003
    Sink: KSTREAM-SINK-0000000005 (topic: word-counts)
      <-- KTABLE-TOSTREAM-0000000004

";
    assert_eq!(description, expected);
}

#[test]
fn describe_shows_one_repartition_source_feeding_every_aggregation_of_a_grouping() {
    let builder = StreamsBuilder::new();
    let by_word = builder
        .stream("text", Consumed::with(StringSerde, StringSerde))
        .group_by(|_, word| word.clone(), Grouped::with(StringSerde, StringSerde).with_name("by-word"));
    by_word.count(Materialized::as_store("counts"));
    by_word.reduce(|longest, word| longest.max(word), Materialized::as_store("longest"));
    let expected = "\
Topologies:
   Sub-topology: 0
    Source: KSTREAM-SOURCE-0000000000 (topics: [text])
      --> KSTREAM-KEY-SELECT-0000000001
    Processor: KSTREAM-KEY-SELECT-0000000001 (stores: [])
      --> by-word-repartition-sink
      <-- KSTREAM-SOURCE-0000000000
    Sink: by-word-repartition-sink (topic: app-by-word-repartition)
      <-- KSTREAM-KEY-SELECT-0000000001

   Sub-topology: 1
    Source: by-word-repartition-source (topics: [app-by-word-repartition])
      --> KSTREAM-AGGREGATE-0000000002, KSTREAM-REDUCE-0000000003
    Processor: KSTREAM-AGGREGATE-0000000002 (stores: [counts])
      --> none
      <-- by-word-repartition-source
    Processor: KSTREAM-REDUCE-0000000003 (stores: [longest])
      --> none
      <-- by-word-repartition-source

";
    assert_eq!(builder.build(APP).describe(), expected);
}

#[test]
fn build_errors_list_every_problem() {
    let builder = StreamsBuilder::new();
    builder.stream("in", Consumed::with(StringSerde, StringSerde));
    builder.stream("in", Consumed::with(StringSerde, StringSerde));
    let error = builder.try_build("bad id!").err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("application id 'bad id!'"), "{error}");
    assert!(error.contains("topic 'in' is read by more than one source"), "{error}");
}

#[test]
fn duplicate_branch_names_are_rejected() {
    let builder = StreamsBuilder::new();
    let stream = builder.stream("in", Consumed::with(StringSerde, StringSerde));
    stream.split().branch("x", |_, _| true).branch("x", |_, _| false).no_default_branch();
    assert!(builder.try_build(APP).is_err());
}

/// Mirrors the example in the crate documentation.
#[test]
fn crate_docs_word_count_example() -> TestResult {
    let topology = word_count().build("word-count");
    assert_eq!(topology.repartition_topics(), ["word-count-counts-repartition"]);
    assert_eq!(topology.changelog_topics(), ["word-count-counts-changelog"]);
    assert_eq!(topology.subtopology_count(), 2);

    let driver = TopologyTestDriver::new(topology);
    let text = driver.create_input_topic("text", StringSerde, StringSerde);
    let counts = driver.create_output_topic("word-counts", StringSerde, I64Serde);
    text.pipe_input("line-1", "the quick fox")?;
    text.pipe_input("line-2", "the lazy dog")?;

    let latest = counts.read_key_values_to_map()?;
    assert_eq!(latest["the"], 2);
    assert_eq!(latest["fox"], 1);
    assert_eq!(latest.len(), 5);
    assert_eq!(driver.key_value_store::<String, i64>("counts")?.get(&"the".to_owned())?, Some(2));
    Ok(())
}
