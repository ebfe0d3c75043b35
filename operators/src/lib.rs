//! Kafka Streams-style stream processing: a DSL and a Processor API for topologies, state
//! stores with changelogs, tasks with per-record atomicity, and a `TopologyTestDriver`.
//!
//! # Writing a topology
//!
//! A [`StreamsBuilder`](dsl::StreamsBuilder) reads topics as [`KStream`](dsl::KStream)s
//! (every record) or [`KTable`](dsl::KTable)s (latest value per key). Operators are named as in
//! Kafka Streams: `filter`, `map_values`, `flat_map_values`, `group_by`, `count`, `to`, and so on.
//! [`build`](dsl::StreamsBuilder::build) compiles the graph for an `application.id` into a
//! [`Topology`](topology::Topology): sub-topologies, the topics each reads and writes, and the
//! changelog topics of its stores.
//!
//! The classic word count, tested with the [`TopologyTestDriver`](test_driver::TopologyTestDriver):
//!
//! ```
//! use operators::dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
//! use operators::serdes::{I64Serde, StringSerde};
//! use operators::test_driver::TopologyTestDriver;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream("text", Consumed::with(StringSerde, StringSerde))
//!     .flat_map_values(|line: String| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
//!     .group_by(|_, word| word.clone(), Grouped::with(StringSerde, StringSerde))
//!     .count(Materialized::as_store("counts"))
//!     .to_stream()
//!     .to("word-counts", Produced::with(StringSerde, I64Serde));
//! let topology = builder.build("word-count");
//!
//! // Grouping by a new key inserts a repartition topic, which splits the work in two.
//! assert_eq!(topology.repartition_topics(), ["word-count-counts-repartition"]);
//! assert_eq!(topology.changelog_topics(), ["word-count-counts-changelog"]);
//! assert_eq!(topology.subtopology_count(), 2);
//!
//! let driver = TopologyTestDriver::new(topology);
//! let text = driver.create_input_topic("text", StringSerde, StringSerde);
//! let counts = driver.create_output_topic("word-counts", StringSerde, I64Serde);
//! text.pipe_input("line-1", "the quick fox")?;
//! text.pipe_input("line-2", "the lazy dog")?;
//!
//! let latest = counts.read_key_values_to_map()?;
//! assert_eq!(latest["the"], 2);
//! assert_eq!(latest["fox"], 1);
//! assert_eq!(driver.key_value_store::<String, i64>("counts")?.get(&"the".to_owned())?, Some(2));
//! # Ok(())
//! # }
//! ```
//!
//! # Concepts
//!
//! - **Serdes** ([`serdes`]): every topic and store names how its keys and values become bytes.
//!   Kafka nulls are rejected unless read through [`NullableSerde`](serdes::NullableSerde).
//! - **Repartitioning**: after an operation that may change keys (`map`, `flat_map`,
//!   `select_key`, `group_by`, `process`), a stateful operation (aggregation, join, a processor
//!   with stores) first writes the stream to `<application.id>-<name>-repartition`, so each key
//!   is handled by one task. Every aggregation of one grouping reads the same repartition topic.
//!   [`KStream::repartition`](dsl::KStream::repartition) does it explicitly.
//! - **Windows** ([`windowing`]): `windowed_by(TimeWindows)` for tumbling and hopping windows,
//!   `windowed_by(SessionWindows)` for sessions. Stream time is the highest record timestamp a
//!   task has seen; records arriving after their window's end plus grace are dropped and counted.
//! - **Processor API** ([`processor`]): a [`Processor`](processor::Processor) gets typed stores,
//!   punctuations on wall-clock or stream time, and durable timers that are change-logged and
//!   survive restarts (enable them with [`Processed::with_durable_timers`](dsl::Processed::with_durable_timers)).
//! - **Stores** ([`store`]): byte-level, transactional: writes stay pending until the task
//!   commits, a failed record's writes are rolled back, and every write is also a changelog
//!   record, from which [`Task::restore`](task::Task::restore) rebuilds state.
//! - **Tasks** ([`task`]): one per sub-topology and partition. The runtime feeds a task records,
//!   takes its output (sink, repartition and changelog records) into a transaction, then commits
//!   or aborts the task with it.

pub mod clock;
pub mod dsl;
pub mod error;
mod graph;
pub mod idempotency;
pub mod metrics;
mod node;
pub mod processor;
pub mod punctuation;
pub mod record;
pub mod runtime;
pub mod serdes;
pub mod store;
pub mod task;
mod task_state;
pub mod test_driver;
pub mod topology;
pub mod windowing;

#[cfg(test)]
mod tests;
