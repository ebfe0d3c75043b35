//! The four benchmark cases and how each one runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use operators::dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
use operators::runtime::{KafkaStreams, ProcessingGuarantee, StreamsConfig};
use operators::serdes::BytesSerde;

use crate::{load, measure, passthrough};

pub const PARTITIONS: i32 = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    BarePassthrough,
    AtLeastOncePassthrough,
    ExactlyOncePassthrough,
    ExactlyOnceAggregate,
}

impl Case {
    pub const ALL: [Case; 4] =
        [Case::BarePassthrough, Case::AtLeastOncePassthrough, Case::ExactlyOncePassthrough, Case::ExactlyOnceAggregate];

    pub fn parse(name: &str) -> Result<Case> {
        Ok(match name {
            "a" => Case::BarePassthrough,
            "b" => Case::AtLeastOncePassthrough,
            "c" => Case::ExactlyOncePassthrough,
            "d" => Case::ExactlyOnceAggregate,
            other => bail!("unknown case {other}: expected a, b, c or d"),
        })
    }

    pub fn describe(self) -> &'static str {
        match self {
            Case::BarePassthrough => "(a) bare rdkafka passthrough, at-least-once",
            Case::AtLeastOncePassthrough => "(b) operators passthrough, at-least-once",
            Case::ExactlyOncePassthrough => "(c) operators passthrough, exactly-once",
            Case::ExactlyOnceAggregate => "(d) operators aggregate, exactly-once",
        }
    }
}

pub struct CaseResult {
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Runs one case on fresh topics: preload → drain (throughput), then paced load (latency).
pub fn run(case: Case, bootstrap: &str, records: u64, rate: u64, duration: Duration) -> Result<CaseResult> {
    let id = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let (input, output) = (format!("{id}-in"), format!("{id}-out"));
    bench::kafka::create_topics(bootstrap, &[&input, &output], PARTITIONS)?;
    load::preload(bootstrap, &input, records);

    let consumer = measure::output_consumer(bootstrap, &output);
    let stop = Arc::new(AtomicBool::new(false));
    let app = start(case, bootstrap, &id, &input, &output, stop.clone())?;
    let drained = measure::observe(&consumer, records, Duration::from_secs(60));
    if drained.records < records {
        bail!("{}: only {} of {} records came out", case.describe(), drained.records, records);
    }
    let paced = std::thread::scope(|scope| {
        let producer = scope.spawn(|| load::paced(bootstrap, &input, rate, duration));
        let observed = measure::observe(&consumer, rate * duration.as_secs(), Duration::from_secs(30));
        let _ = producer.join();
        observed
    });
    stop.store(true, Ordering::Relaxed);
    app.stop()?;
    Ok(CaseResult {
        throughput: drained.per_second(),
        p50_ms: paced.percentile_ms(0.50),
        p99_ms: paced.percentile_ms(0.99),
    })
}

enum RunningCase {
    Bare(std::thread::JoinHandle<()>),
    Streams(KafkaStreams),
}

impl RunningCase {
    fn stop(self) -> Result<()> {
        match self {
            RunningCase::Bare(thread) => thread.join().map_err(|_| anyhow::anyhow!("passthrough thread panicked")),
            RunningCase::Streams(streams) => streams.close().context("closing the topology"),
        }
    }
}

fn start(
    case: Case,
    bootstrap: &str,
    id: &str,
    input: &str,
    output: &str,
    stop: Arc<AtomicBool>,
) -> Result<RunningCase> {
    if case == Case::BarePassthrough {
        return Ok(RunningCase::Bare(passthrough::spawn(bootstrap, input, output, stop)));
    }
    let builder = StreamsBuilder::new();
    let stream = builder.stream::<Vec<u8>, Vec<u8>>(input, Consumed::with(BytesSerde, BytesSerde));
    match case {
        Case::ExactlyOnceAggregate => {
            // Keeps the newest value per key plus a count in its last 8 bytes: a store read,
            // a store write and a changelog record per input, and the output still carries
            // the produce time for the latency figure.
            stream
                .group_by_key(Grouped::with(BytesSerde, BytesSerde))
                .aggregate(
                    Vec::new,
                    |_key, value, previous: Vec<u8>| with_count(value, &previous),
                    Materialized::as_store("latest").with_value_serde(BytesSerde),
                )
                .to_stream()
                .to(output, Produced::with(BytesSerde, BytesSerde));
        }
        _ => stream.to(output, Produced::with(BytesSerde, BytesSerde)),
    }
    let mut config = StreamsConfig::new(format!("{id}-app"), bootstrap);
    config.instance_id = "bench".into();
    if case == Case::AtLeastOncePassthrough {
        config.processing_guarantee = ProcessingGuarantee::AtLeastOnce;
    }
    let registry = prometheus::Registry::new();
    let streams =
        KafkaStreams::start(builder.build(&format!("{id}-app")), config, &registry).context("starting the topology")?;
    Ok(RunningCase::Streams(streams))
}

fn with_count(mut value: Vec<u8>, previous: &[u8]) -> Vec<u8> {
    let count = previous
        .len()
        .checked_sub(8)
        .and_then(|start| previous[start..].try_into().ok())
        .map(i64::from_be_bytes)
        .unwrap_or(0);
    let end = value.len().saturating_sub(8);
    value.truncate(end.max(8));
    value.extend_from_slice(&(count + 1).to_be_bytes());
    value
}
