//! Prints what a store costs, in memory and persistent (fjall), against the local stack
//! (`dev/stack up`):
//!   restore   a task whose changelog holds N entries: time to restore it and the process's peak
//!             RSS, for an empty local state (a full restore) and, persistent only, for the local
//!             state a clean close left (the checkpoint: only the tail is read);
//!   aggregate a count per key over M distinct keys, exactly-once: records per second from the
//!             first input to the last committed output, and peak RSS.
//! Each measurement runs in a child process of its own, so that its peak RSS is its own.
//!
//! Usage: state-bench [--entries 100000,1000000,5000000] [--keys 1000000] [--stores in_memory,persistent]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use operators::dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
use operators::runtime::{KafkaStreams, State, StoreType, StreamsConfig};
use operators::serdes::{BytesSerde, I64Serde};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const STORE: &str = "counts";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(&args[1..]);
    }
    let mut entries = vec![100_000u64, 1_000_000, 5_000_000];
    let mut keys = 1_000_000u64;
    let mut stores = vec!["in_memory".to_string(), "persistent".to_string()];
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--entries" => entries = value()?.split(',').map(str::parse).collect::<Result<_, _>>().context("--entries")?,
            "--keys" => keys = value()?.parse().context("--keys")?,
            "--stores" => stores = value()?.split(',').map(str::to_owned).collect(),
            other => bail!("unknown argument {other} (usage: state-bench [--entries N,..] [--keys M] [--stores in_memory,persistent])"),
        }
    }
    for store in &stores {
        store_type(store)?;
    }
    let bootstrap = format!("127.0.0.1:{}", std::env::var("KAFKA_PORT").unwrap_or_else(|_| "9092".into()));
    let state_dir = tempfile_dir()?;
    println!("state-bench: one partition, 8-byte keys, 8-byte values; state dir {}", state_dir.display());
    println!(
        "{:<10} {:>10} {:<22} {:>10} {:>12} {:>10}",
        "case", "entries", "store", "seconds", "records/s", "peak RSS"
    );
    for &n in &entries {
        let app = format!("state-bench-{}", uuid::Uuid::new_v4().simple());
        let input = format!("{app}-input");
        bench::kafka::create_topics(&bootstrap, &[&input], 1)?;
        let changelog = create_internal_topics(&bootstrap, &app, &input, &state_dir)?;
        preload(&bootstrap, &changelog, n)?;
        for store in &stores {
            let runs: &[&str] =
                if store == "persistent" { &["full restore", "after checkpoint"] } else { &["full restore"] };
            let dir = state_dir.join(format!("{app}-{store}"));
            for run in runs {
                let line =
                    run_child(&["restore", &bootstrap, &app, &input, store, &dir.to_string_lossy(), &n.to_string()])?;
                let [seconds, records, rss] = parse_figures(&line)?;
                let rate = if seconds > 0.0 { records / seconds } else { 0.0 };
                println!(
                    "{:<10} {:>10} {:<22} {:>10.2} {:>12.0} {:>7.0} MB",
                    "restore",
                    n,
                    format!("{store} ({run})"),
                    seconds,
                    rate,
                    rss
                );
            }
        }
    }
    for store in &stores {
        let app = format!("state-bench-{}", uuid::Uuid::new_v4().simple());
        let input = format!("{app}-input");
        let output = format!("{app}-output");
        bench::kafka::create_topics(&bootstrap, &[&input, &output], 1)?;
        preload_distinct(&bootstrap, &input, keys)?;
        let dir = state_dir.join(format!("{app}-{store}"));
        let line =
            run_child(&["aggregate", &bootstrap, &app, &input, store, &dir.to_string_lossy(), &keys.to_string()])?;
        let [seconds, records, rss] = parse_figures(&line)?;
        println!(
            "{:<10} {:>10} {:<22} {:>10.2} {:>12.0} {:>7.0} MB",
            "aggregate",
            keys,
            store,
            seconds,
            records / seconds.max(f64::EPSILON),
            rss
        );
    }
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok(())
}

fn store_type(name: &str) -> Result<StoreType> {
    match name {
        "in_memory" => Ok(StoreType::InMemory),
        "persistent" => Ok(StoreType::Persistent),
        other => bail!("unknown store {other}: in_memory or persistent"),
    }
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("state-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The topology of both cases: a count per key, its changelog `<app>-counts-changelog`.
fn topology(app: &str, input: &str) -> operators::topology::Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream::<Vec<u8>, Vec<u8>>(input, Consumed::with(BytesSerde, BytesSerde))
        .group_by_key(Grouped::with(BytesSerde, BytesSerde))
        .count(Materialized::as_store(STORE).with_value_serde(I64Serde))
        .to_stream()
        .to(&format!("{app}-output"), Produced::with(BytesSerde, I64Serde));
    builder.build(app)
}

fn config(bootstrap: &str, app: &str, store: &str, dir: &Path) -> Result<StreamsConfig> {
    let mut config = StreamsConfig::new(app, bootstrap);
    config.instance_id = "bench".into();
    config.default_store_type = store_type(store)?;
    config.state_dir = dir.to_path_buf();
    Ok(config)
}

/// Starts the app once so that it creates its internal topics; returns the changelog to preload.
fn create_internal_topics(bootstrap: &str, app: &str, input: &str, dir: &Path) -> Result<String> {
    let streams = KafkaStreams::start(
        topology(app, input),
        config(bootstrap, app, "in_memory", &dir.join("setup"))?,
        &prometheus::Registry::new(),
    )?;
    wait_running(&streams, Duration::from_secs(60))?;
    streams.close()?;
    Ok(format!("{app}-{STORE}-changelog"))
}

fn preload(bootstrap: &str, topic: &str, count: u64) -> Result<()> {
    let producer = bench::kafka::load_producer(bootstrap)?;
    for n in 0..count {
        send(&producer, topic, &n.to_be_bytes(), &1i64.to_be_bytes());
    }
    producer.flush(Duration::from_secs(120)).context("flushing the changelog preload")?;
    Ok(())
}

fn preload_distinct(bootstrap: &str, topic: &str, count: u64) -> Result<()> {
    let producer = bench::kafka::load_producer(bootstrap)?;
    for n in 0..count {
        send(&producer, topic, &n.to_be_bytes(), b"v");
    }
    producer.flush(Duration::from_secs(120)).context("flushing the input preload")?;
    Ok(())
}

fn send(
    producer: &rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    topic: &str,
    key: &[u8],
    value: &[u8],
) {
    let mut record = BaseRecord::to(topic).key(key).payload(value).partition(0);
    while let Err((_, returned)) = producer.send(record) {
        std::thread::sleep(Duration::from_millis(1));
        record = returned;
    }
}

fn run_child(args: &[&str]) -> Result<String> {
    let output =
        Command::new(std::env::current_exe()?).arg("--child").args(args).output().context("running a measurement")?;
    if !output.status.success() {
        bail!("a measurement failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout.lines().last().map(str::to_owned).context("a measurement printed nothing")
}

fn parse_figures(line: &str) -> Result<[f64; 3]> {
    let figures: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("figures: {line}"))?;
    figures.try_into().map_err(|_| anyhow::anyhow!("three figures expected: {line}"))
}

/// Prints `<seconds> <records> <peak RSS MB>` on its last line.
fn child(args: &[String]) -> Result<()> {
    let [case, bootstrap, app, input, store, dir, count] = args else { bail!("child: seven arguments expected") };
    let count: u64 = count.parse()?;
    let registry = prometheus::Registry::new();
    let started = Instant::now();
    let streams = KafkaStreams::start(topology(app, input), config(bootstrap, app, store, Path::new(dir))?, &registry)?;
    let (seconds, records) = match case.as_str() {
        "restore" => {
            wait_running(&streams, Duration::from_secs(600))?;
            (
                metric_sum(&registry, "streams_restore_duration_seconds"),
                metric_sum(&registry, "streams_restore_records_total"),
            )
        }
        "aggregate" => {
            let consumer = bench::kafka::read_committed_consumer(bootstrap, &format!("{app}-output"))?;
            let mut seen = 0u64;
            while seen < count {
                if started.elapsed() > Duration::from_secs(900) {
                    bail!("only {seen} of {count} outputs after 900 s");
                }
                if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                    seen += u64::from(message?.payload().is_some());
                }
            }
            consumer.unsubscribe();
            (started.elapsed().as_secs_f64(), count as f64)
        }
        other => bail!("unknown case {other}"),
    };
    let rss = peak_rss_mb();
    streams.close()?;
    println!("{seconds:.3} {records} {rss:.1}");
    Ok(())
}

fn wait_running(streams: &KafkaStreams, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    while streams.state() != State::Running {
        if streams.is_finished() || started.elapsed() > timeout {
            bail!("not running after {:?} (state {:?})", started.elapsed(), streams.state());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn metric_sum(registry: &prometheus::Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| {
            family.get_metric().iter().map(|m| m.get_histogram().get_sample_sum() + m.get_counter().value())
        })
        .sum()
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kb.unwrap_or(0.0) / 1024.0
}
