//! Our payment participant against its Kafka Streams peer (`bench/peers/kafka-streams`), on the
//! local stack (`dev/stack up`), alternating in one run: ours, theirs, ours, theirs, …
//!
//! Each run gets fresh topics (6 partitions) preloaded with the same N OrderPlaced events (same
//! order ids, customers and amounts), and runs its participant as a child process, so that peak
//! RSS and CPU time are the participant's alone. Then, for latency, it offers `--rate` orders/s
//! for `--seconds`. Printed per run, then as ratios ours/theirs (means over the rounds):
//! throughput (first reply to the Nth), p50/p99 (the record's timestamp → its reply visible
//! `read_committed`, in the paced phase), peak RSS (VmHWM), CPU seconds per million orders
//! (user + system, first reply to the Nth). Start-up (process start to first reply, which takes
//! in the group join and the first batch) and the read-back (Nth reply to all input consumed,
//! the participant's own replies included; the paced phase starts after it) are printed apart
//! and kept out of the ratios.
//!
//! Our runtime runs one stream thread per instance and scales by instances: ours runs as
//! `--instances` processes (default: one per core) in one group, Kafka Streams as one process
//! with a stream thread per core. RSS and CPU are summed over a contestant's processes.
//!
//! Usage: peer-bench [--records 1000000] [--rounds 2] [--rate 1000] [--seconds 20]
//!                   [--customers 10000] [--instances <cores>] [--config config/pipeline.toml]
//! Build the peer first: `bench/peers/compare` does both.

mod caught_up;
mod child;
mod orders;
mod replies;
mod run_ours;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use pipeline::event_serde::EventSerde;
use pipeline::settings::Settings;

use child::Contestant;

// The allocator of the pipeline binary, since our contestant runs in this binary's process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub struct Options {
    records: u64,
    rounds: u32,
    rate: u64,
    seconds: u64,
    customers: u64,
    /// Processes of ours in the run's group.
    instances: u32,
    config: PathBuf,
}

fn options(args: &[String]) -> Result<Options> {
    let mut options = Options {
        records: 1_000_000,
        rounds: 2,
        rate: 1_000,
        seconds: 20,
        customers: 10_000,
        instances: std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1),
        config: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/pipeline.toml"),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--records" => options.records = value()?.parse().context("--records")?,
            "--rounds" => options.rounds = value()?.parse().context("--rounds")?,
            "--rate" => options.rate = value()?.parse().context("--rate")?,
            "--seconds" => options.seconds = value()?.parse().context("--seconds")?,
            "--customers" => options.customers = value()?.parse().context("--customers")?,
            "--instances" => options.instances = value()?.parse().context("--instances")?,
            "--config" => options.config = value()?.into(),
            other => bail!("unknown argument {other}; see the header of bench/src/bin/peer_bench/main.rs"),
        }
    }
    if options.records == 0 || options.rounds == 0 || options.customers == 0 || options.instances == 0 {
        bail!("--records, --rounds, --customers and --instances must be at least 1");
    }
    Ok(options)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(run_ours::COMMAND) {
        return run_ours::main(&args[1..]);
    }
    let options = options(&args)?;
    let settings = Settings::load(&options.config, std::env::vars())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(pipeline::components::register_schemas(&settings))?;
    let serde = EventSerde::new(runtime.block_on(pipeline::components::saga_codec(&settings))?);

    println!(
        "peer-bench: {} OrderPlaced preloaded per run ({} customers), then {} orders/s for {} s; 6 partitions; {} round(s); ours as {} instance(s)",
        options.records, options.customers, options.rate, options.seconds, options.rounds, options.instances
    );
    println!(
        "{:<16} {:>9} {:>12} {:>13} {:>9} {:>9} {:>13} {:>14}",
        "run", "start s", "orders/s", "read-back s", "p50 ms", "p99 ms", "peak RSS MB", "CPU s per M"
    );
    let mut results: Vec<(Contestant, child::RunResult)> = Vec::new();
    let prefix = format!("peer-bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    for round in 1..=options.rounds {
        for contestant in Contestant::ALL {
            let result = child::run(contestant, round, &prefix, &options, &settings, &serde)?;
            println!(
                "{:<16} {:>9.1} {:>12.0} {:>13.1} {:>9.0} {:>9.0} {:>13.0} {:>14.1}",
                format!("{} #{round}", contestant.name()),
                result.start_seconds,
                result.throughput,
                result.caught_up_seconds,
                result.p50_ms,
                result.p99_ms,
                result.peak_rss_mb,
                result.cpu_seconds_per_million
            );
            results.push((contestant, result));
        }
    }
    print_ratios(&results);
    Ok(())
}

fn print_ratios(results: &[(Contestant, child::RunResult)]) {
    let mean = |who: Contestant, figure: fn(&child::RunResult) -> f64| {
        let figures: Vec<f64> = results.iter().filter(|(c, _)| *c == who).map(|(_, r)| figure(r)).collect();
        figures.iter().sum::<f64>() / figures.len().max(1) as f64
    };
    let ratio =
        |figure: fn(&child::RunResult) -> f64| mean(Contestant::Ours, figure) / mean(Contestant::KafkaStreams, figure);
    println!("ours/theirs (means over the rounds; throughput: higher is better, the rest: lower is better)");
    println!("  throughput   {:.2}", ratio(|r| r.throughput));
    println!("  p50          {:.2}", ratio(|r| r.p50_ms));
    println!("  p99          {:.2}", ratio(|r| r.p99_ms));
    println!("  peak RSS     {:.2}", ratio(|r| r.peak_rss_mb));
    println!("  CPU s per M  {:.2}", ratio(|r| r.cpu_seconds_per_million));
}
