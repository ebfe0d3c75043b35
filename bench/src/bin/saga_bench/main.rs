//! The saga under load at several offered rates, on the local stack (`dev/stack up`), with the
//! whole pipeline running in this process. Prints sustained orders/s, end-to-end latency (POST →
//! terminal state in the read model), the participants' transactions per second (what a commit
//! interval costs the broker), and where the time goes: the largest consumer lag each group
//! reached (per hop) and each application's mean transaction commit time. Under each rate's line,
//! how many orders ended in each state (the load's customers and products run out of credit
//! and stock after about 30,000 orders with the default settings: for long runs raise
//! SAGA__PAYMENT__DEFAULT_BALANCE_CENTS up to 99999999 and SAGA__INVENTORY__DEFAULT_STOCK up to
//! 9999, which keep a refused order within the API's limits; stock then lasts about 150,000
//! orders), the per-hop breakdown of a confirmed order's time (`pipeline::demo::hops`), from when a
//! `read_committed` observer saw each event of the happy path; then the CPU milliseconds per order
//! each part of the stack spent (`pipeline` is this process, load generator and observer
//! included) and the rate the machine's cores would sustain at that cost, and this process's
//! resident memory. The settings' SAGA__ variables
//! apply (SAGA__KAFKA__COMMIT_INTERVAL_MS=50, say). Logs go to stderr only when RUST_LOG is set.
//!
//! Usage: `saga-bench --help`.
//!
//! `--attach` drives a pipeline already running in its own process (`pipeline all`, same
//! settings) instead of starting one here: its CPU and memory are then its own, apart from the
//! load generator's and the observer's.
//!
//! `--order-api` measures the order service alone instead (`order_api`).

mod cost;
mod order_api;
mod scrape;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use pipeline::demo::{self, DemoOptions};
use pipeline::settings::Settings;

// The allocator of the pipeline binary, whose parts this runs in one process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str =
    "usage: saga-bench [--rates 20,40,80] [--seconds 15] [--config config/pipeline.toml] [--attach | --order-api]
  --rates      offered orders/s, one run per rate
  --seconds    how long each rate is offered
  --config     the pipeline's settings file (SAGA__ variables apply over it)
  --attach     drive a `pipeline all` already running in its own process
  --order-api  only place orders, on a `pipeline order-api` running alone: the order service's ceiling";

struct Options {
    rates: Vec<f64>,
    seconds: u64,
    config: PathBuf,
    /// Drive a pipeline already running in its own process (`pipeline all`) instead of one here.
    attach: bool,
    /// Only place orders, on an order API running alone.
    order_api: bool,
}

fn options() -> Result<Options> {
    let mut options = Options {
        rates: vec![20.0, 40.0, 80.0],
        seconds: 15,
        config: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/pipeline.toml"),
        attach: false,
        order_api: false,
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
            "--attach" => options.attach = true,
            "--order-api" => options.order_api = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    if options.attach && options.order_api {
        bail!("--attach and --order-api exclude each other\n{USAGE}");
    }
    Ok(options)
}

/// The pipeline's metrics now; empty while its admin endpoint does not answer.
async fn scrape_metrics(http: &reqwest::Client, admin: &str) -> String {
    match http.get(format!("{admin}/metrics")).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until the pipeline's `/ready` says all four participants run (assigned, stores restored).
async fn wait_until_ready(
    http: &reqwest::Client,
    admin: &str,
    pipeline: Option<&tokio::task::JoinHandle<Result<()>>>,
) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let ready = http.get(format!("{admin}/ready")).send().await.is_ok_and(|r| r.status().is_success());
        if ready {
            return Ok(());
        }
        if pipeline.is_some_and(tokio::task::JoinHandle::is_finished) {
            bail!("the pipeline stopped during start-up");
        }
        if std::time::Instant::now() > deadline {
            bail!("the pipeline at {admin} was not ready within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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
    let admin = format!("http://127.0.0.1:{}", settings.http.admin_port);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    if options.order_api {
        return order_api::run(&settings, &http, &options.rates, options.seconds).await;
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let pipeline = (!options.attach).then(|| {
        let pipeline_settings = settings.clone();
        tokio::spawn(async move {
            pipeline::components::run_all(&pipeline_settings, async {
                let _ = stopped.await;
            })
            .await
        })
    });
    wait_until_ready(&http, &admin, pipeline.as_ref()).await?;
    let own_part = if options.attach { cost::ATTACHED } else { cost::IN_PROCESS };

    match options.attach {
        true => println!(
            "saga-bench: the pipeline at {admin} in its own process, stack on the same machine; {} s per rate",
            options.seconds
        ),
        false => println!(
            "saga-bench: whole pipeline in this process, stack on the same machine; {} s per rate",
            options.seconds
        ),
    }
    println!(
        "{:>8} {:>10} {:>9} {:>9} {:>9} {:>7}  {:<44} mean commit ms per app",
        "offered", "sustained", "p50 ms", "p95 ms", "p99 ms", "txn/s", "max lag per group (events)"
    );
    for rate in &options.rates {
        let orders = (rate * options.seconds as f64).round() as usize;
        let before = scrape::commit_totals(&scrape_metrics(&http, &admin).await);
        // The largest lag each group reaches while this rate runs: where records queue up.
        let max_lag: Arc<Mutex<BTreeMap<String, i64>>> = Arc::default();
        let sampled = max_lag.clone();
        let (sampler_http, sampler_admin) = (http.clone(), admin.clone());
        let sampler = tokio::spawn(async move {
            loop {
                for (group, lag) in scrape::lag_by_group(&scrape_metrics(&sampler_http, &sampler_admin).await) {
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
        let cpu = cost::CpuSampler::start(own_part);
        let report = demo::run(&settings, &demo_options, false).await?;
        sampler.abort();
        let cost = cpu.finish(report.settled_at);
        let after = scrape::commit_totals(&scrape_metrics(&http, &admin).await);
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
        let outcomes: Vec<String> =
            report.outcomes.iter().map(|(outcome, orders)| format!("{outcome} {orders}")).collect();
        println!("    outcomes: {}", outcomes.join(", "));
        demo::hops::print(&report.hops);
        cost.print(report.orders.len());
    }
    let _ = stop.send(());
    if let Some(pipeline) = pipeline {
        let _ = tokio::time::timeout(Duration::from_secs(60), pipeline).await;
    }
    Ok(())
}
