//! The saga under load at several offered rates, on the local stack (`dev/stack up`), with the
//! whole pipeline running in this process. Prints sustained orders/s, end-to-end latency (POST →
//! terminal state in the read model), the participants' transactions per second (what a commit
//! interval costs the broker), and where the time goes: the largest consumer lag each group
//! reached (per hop) and each application's mean transaction commit time. Under each rate's line,
//! the per-hop breakdown of a confirmed order's time (`pipeline::demo::hops`), from when a
//! `read_committed` observer saw each event of the happy path; then the CPU milliseconds per order
//! each part of the stack spent (`pipeline` is this process, load generator and observer
//! included) and the rate the machine's cores would sustain at that cost, and this process's
//! resident memory. The settings' SAGA__ variables
//! apply (SAGA__KAFKA__COMMIT_INTERVAL_MS=50, say). Logs go to stderr only when RUST_LOG is set.
//!
//! Usage: saga-bench [--rates 20,40,80] [--seconds 15] [--config config/pipeline.toml]

mod cost;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use pipeline::components::Participant;
use pipeline::demo::{self, DemoOptions};
use pipeline::settings::Settings;

// The allocator of the pipeline binary, whose parts this runs in one process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Options {
    rates: Vec<f64>,
    seconds: u64,
    config: PathBuf,
}

fn options() -> Result<Options> {
    let mut options = Options {
        rates: vec![20.0, 40.0, 80.0],
        seconds: 15,
        config: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/pipeline.toml"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--rates" => {
                options.rates =
                    value()?.split(',').map(|r| r.trim().parse::<f64>()).collect::<Result<_, _>>().context("--rates")?
            }
            "--seconds" => options.seconds = value()?.parse().context("--seconds")?,
            "--config" => options.config = value()?.into(),
            other => bail!("unknown argument {other}; see the header of bench/src/bin/saga_bench/main.rs"),
        }
    }
    Ok(options)
}

/// Per application id: (sum, count) of `streams_commit_duration_seconds`.
fn commit_totals() -> BTreeMap<String, (f64, u64)> {
    let mut totals = BTreeMap::new();
    for family in prometheus::gather().iter().filter(|f| f.name() == "streams_commit_duration_seconds") {
        for metric in family.get_metric() {
            let app = metric.get_label().iter().find(|l| l.name() == "application_id").map(|l| l.value().to_string());
            if let Some(app) = app {
                let histogram = metric.get_histogram();
                totals.insert(app, (histogram.get_sample_sum(), histogram.get_sample_count()));
            }
        }
    }
    totals
}

/// Per consumer group: the summed lag over its partitions right now.
fn lag_by_group() -> BTreeMap<String, i64> {
    let mut lag = BTreeMap::new();
    for family in prometheus::gather().iter().filter(|f| f.name() == "kafka_consumergroup_group_lag") {
        for metric in family.get_metric() {
            if let Some(group) = metric.get_label().iter().find(|l| l.name() == "group") {
                *lag.entry(group.value().to_string()).or_insert(0) += metric.get_gauge().value() as i64;
            }
        }
    }
    lag
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<()> {
    let options = options()?;
    let settings = Settings::load(&options.config, std::env::vars())?;
    // Quiet unless asked: the figures are the output.
    let _telemetry = match std::env::var_os("RUST_LOG") {
        Some(_) => Some(pipeline::logging::init(&settings.logging, &settings.tracing)?),
        None => None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let pipeline_settings = settings.clone();
    let pipeline = tokio::spawn(async move {
        pipeline::components::run_all(&pipeline_settings, async {
            let _ = stopped.await;
        })
        .await
    });
    // Ready as /ready says, once all four participants run here (assigned, stores restored).
    while !pipeline::admin::health::is_ready(Participant::ALL.map(Participant::application_id)) {
        if pipeline.is_finished() {
            bail!("the pipeline stopped during start-up: {:?}", pipeline.await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    println!("saga-bench: whole pipeline in one process, stack on the same machine; {} s per rate", options.seconds);
    println!(
        "{:>8} {:>10} {:>9} {:>9} {:>9} {:>7}  {:<44} mean commit ms per app",
        "offered", "sustained", "p50 ms", "p95 ms", "p99 ms", "txn/s", "max lag per group (events)"
    );
    for rate in &options.rates {
        let orders = (rate * options.seconds as f64).round() as usize;
        let before = commit_totals();
        // The largest lag each group reaches while this rate runs: where records queue up.
        let max_lag: Arc<Mutex<BTreeMap<String, i64>>> = Arc::default();
        let sampled = max_lag.clone();
        let sampler = tokio::spawn(async move {
            loop {
                for (group, lag) in lag_by_group() {
                    let mut max = sampled.lock().unwrap_or_else(|e| e.into_inner());
                    let entry = max.entry(group).or_insert(0);
                    *entry = (*entry).max(lag);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        let demo_options = DemoOptions {
            orders,
            concurrency: 64,
            rate: Some(*rate),
            settle_timeout: Duration::from_secs(600),
            racing_cancels: false,
            poison_percent: 0.0,
        };
        let started = std::time::Instant::now();
        let cpu = cost::CpuSampler::start();
        let report = demo::run(&settings, &demo_options, false).await?;
        sampler.abort();
        let cpu_spent = cpu.spent_until(report.settled_at);
        let after = commit_totals();
        // What the participants cost the broker: their transactions (committed) per second.
        let transactions: u64 = after
            .iter()
            .map(|(app, (_, count))| count.saturating_sub(before.get(app).map_or(0, |(_, count0)| *count0)))
            .sum();
        let transactions_per_second = transactions as f64 / started.elapsed().as_secs_f64();
        let commits: Vec<String> = after
            .iter()
            .map(|(app, (sum, count))| {
                let (sum0, count0) = before.get(app).copied().unwrap_or((0.0, 0));
                let n = count.saturating_sub(count0).max(1);
                format!("{app}={:.1}", (sum - sum0) * 1000.0 / n as f64)
            })
            .collect();
        let lags: Vec<String> = max_lag
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(group, lag)| format!("{group}={lag}"))
            .collect();
        let (p50, p95, p99) = report.latency_ms.unwrap_or((-1, -1, -1));
        println!(
            "{:>8.0} {:>10.1} {:>9} {:>9} {:>9} {:>7.0}  {:<44} {}{}",
            rate,
            report.completed_per_second,
            p50,
            p95,
            p99,
            transactions_per_second,
            lags.join(","),
            commits.join(" "),
            if report.all_invariants_hold() { "" } else { "  (an invariant FAILED)" }
        );
        demo::hops::print(&report.hops);
        cost::print_cpu_per_order(&cpu_spent, report.orders.len());
        cost::print_memory();
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(60), pipeline).await;
    Ok(())
}
