//! The app under test in the exactly-once tests, after Kafka's `EosTestDriver`'s app: it echoes
//! its input and keeps a running sum per key in a changelog-backed store.
//!
//! Usage: eos_app <bootstrap> <application-id> <instance-id> <input> <echo-topic> <sum-topic> [at-least-once]
//! Runs until its standard input closes, then commits and leaves the group (exit 0). A fatal
//! runtime error exits 1. Tests kill it with SIGKILL to simulate a crash.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use operators::dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
use operators::runtime::{KafkaStreams, ProcessingGuarantee, StreamsConfig};
use operators::serdes::{I64Serde, StringSerde};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 6 {
        eprintln!("usage: eos_app <bootstrap> <application-id> <instance-id> <input> <echo-topic> <sum-topic> [at-least-once]");
        std::process::exit(2);
    }
    let (bootstrap, application_id, instance_id, input, echo, sums) = (&args[0], &args[1], &args[2], &args[3], &args[4], &args[5]);

    let builder = StreamsBuilder::new();
    let numbers = builder.stream::<String, i64>(input, Consumed::with(StringSerde, I64Serde));
    numbers.to(echo, Produced::with(StringSerde, I64Serde));
    numbers
        .group_by_key(Grouped::with(StringSerde, I64Serde))
        .aggregate(|| 0i64, |_key, value, sum| sum + value, Materialized::as_store("sums").with_value_serde(I64Serde))
        .to_stream()
        .to(sums, Produced::with(StringSerde, I64Serde));
    let topology = builder.build(application_id);

    let mut config = StreamsConfig::new(application_id.as_str(), bootstrap.as_str());
    config.instance_id = instance_id.clone();
    // A killed instance's partitions move after the session timeout; keep tests short.
    let config = config.set("session.timeout.ms", "6000").set("heartbeat.interval.ms", "1000");
    let mut config = config;
    if args.get(6).map(String::as_str) == Some("at-least-once") {
        config.processing_guarantee = ProcessingGuarantee::AtLeastOnce;
    }

    let streams = match KafkaStreams::start(topology, config, prometheus::default_registry()) {
        Ok(streams) => streams,
        Err(e) => {
            eprintln!("eos_app: start failed: {e}");
            std::process::exit(1);
        }
    };
    println!("started");

    let stdin_closed = Arc::new(AtomicBool::new(false));
    let flag = stdin_closed.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        flag.store(true, Ordering::Relaxed);
    });
    while !stdin_closed.load(Ordering::Relaxed) && !streams.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let outcome = if streams.is_finished() { streams.join() } else { streams.close() };
    match outcome {
        Ok(()) => println!("closed"),
        Err(e) => {
            eprintln!("eos_app: stopped on error: {e}");
            std::process::exit(1);
        }
    }
}
