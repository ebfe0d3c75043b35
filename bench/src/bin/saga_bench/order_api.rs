//! `--order-api`: the order service's own ceiling. Drives a `pipeline order-api` running alone
//! (no participants, no projector; Debezium still turns the outbox into records, as it does
//! in production) at offered rates, 64 POSTs at most in flight, and prints per rate the
//! orders/s it accepted, how long a POST took to be accepted once sent, the same from when it
//! was due (above the ceiling the POSTs queue in the load generator, and that grows), and the
//! CPU each part of the stack spent per order.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bench::percentile::at_percentile;
use pipeline::demo::{self, DemoOptions};
use pipeline::settings::Settings;

use crate::cost;

/// Waits until the order API answers HTTP at all (a 404 for an unknown order will do).
async fn wait_until_answering(http: &reqwest::Client, api: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while http.get(format!("{api}/orders/none")).send().await.is_err() {
        if Instant::now() > deadline {
            bail!("the order API at {api} did not answer within 120 s; start `pipeline order-api` first");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// The percentile `p` of sorted durations, in ms.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    at_percentile(sorted, p).map_or(f64::NAN, |duration| duration.as_secs_f64() * 1000.0)
}

pub async fn run(settings: &Settings, http: &reqwest::Client, rates: &[f64], seconds: u64) -> Result<()> {
    let api = format!("http://127.0.0.1:{}", settings.http.order_api_port);
    wait_until_answering(http, &api).await?;
    println!("saga-bench --order-api: the order API at {api} alone, stack on the same machine; {seconds} s per rate");
    println!(
        "{:>8} {:>9} {:>12} {:>12} {:>12} {:>14}   (POST sent until 202, retries included; due: from when it was due)",
        "offered", "accepted", "POST p50 ms", "POST p95 ms", "POST p99 ms", "due p99 ms"
    );
    for rate in rates {
        let options = DemoOptions {
            orders: (rate * seconds as f64).round() as usize,
            concurrency: 64,
            rate: Some(*rate),
            settle_timeout: Duration::ZERO,
            racing_cancels: false,
            poison_percent: 0.0,
        };
        let started = Instant::now();
        let cpu = cost::CpuSampler::start(cost::ATTACHED);
        let orders = demo::place(settings, &options).await?;
        let elapsed = started.elapsed();
        let cost = cpu.finish(Instant::now());
        let mut accepted_after: Vec<Duration> = orders.iter().map(|order| order.accepted_after).collect();
        accepted_after.sort_unstable();
        let mut since_due: Vec<Duration> = orders.iter().map(|order| order.sent_late + order.accepted_after).collect();
        since_due.sort_unstable();
        println!(
            "{:>8.0} {:>9.1} {:>12.1} {:>12.1} {:>12.1} {:>14.1}",
            rate,
            orders.len() as f64 / elapsed.as_secs_f64().max(1e-3),
            percentile_ms(&accepted_after, 0.50),
            percentile_ms(&accepted_after, 0.95),
            percentile_ms(&accepted_after, 0.99),
            percentile_ms(&since_due, 0.99),
        );
        cost.print(orders.len());
    }
    Ok(())
}
