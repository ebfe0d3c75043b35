//! `pipeline demo`: drives a load of orders through a running pipeline, waits until it has
//! caught up, and prints what happened: outcomes, latency, throughput and the invariants.

mod changelog;
pub mod hops;
mod invariants;
mod load;
mod observer;
mod outcome;
mod poison;
mod progress;
mod quiescence;

use std::time::{Duration, Instant};

use anyhow::Result;

pub use invariants::Check;
pub use load::{PlacedOrder, Scenario};

use crate::settings::Settings;

pub struct DemoOptions {
    pub orders: usize,
    pub concurrency: usize,
    /// Offered orders per second; None = as fast as `concurrency` allows.
    pub rate: Option<f64>,
    /// How long to wait for every order to reach a terminal state once all are placed.
    pub settle_timeout: Duration,
    /// Cancellations race the saga (see `load::LoadSpec::cancel_delay_ms`), as under `dev/chaos`.
    pub racing_cancels: bool,
    /// Poison records to produce straight to the order topic, as a percentage of the orders,
    /// spread over the load (see `poison`).
    pub poison_percent: f64,
}

pub struct DemoReport {
    pub orders: Vec<PlacedOrder>,
    /// Final state per order id, as `outcome_counts` labels it.
    pub final_outcomes: std::collections::HashMap<String, String>,
    pub outcomes: std::collections::BTreeMap<String, usize>,
    pub latency_ms: Option<(i64, i64, i64)>,
    /// ms from the POST to the terminal state in the read model, per order that reached one.
    terminal_latency_ms: std::collections::HashMap<String, i64>,
    pub placed_per_second: f64,
    pub completed_per_second: f64,
    /// When the last order reached a terminal state (before the checks read the topics).
    pub settled_at: Instant,
    pub checks: Vec<Check>,
    /// Events of the run's orders on the saga topics, by type.
    pub event_counts: std::collections::BTreeMap<String, usize>,
    /// Where a confirmed order's time went, hop by hop.
    pub hops: Vec<hops::Hop>,
}

impl DemoReport {
    pub fn all_invariants_hold(&self) -> bool {
        self.checks.iter().all(Check::holds)
    }

    pub fn final_outcome(&self, order_id: &str) -> String {
        self.final_outcomes.get(order_id).cloned().unwrap_or_else(|| outcome::NOT_SEEN.to_string())
    }
}

fn load_spec(settings: &Settings, options: &DemoOptions) -> load::LoadSpec {
    load::LoadSpec {
        api: format!("http://127.0.0.1:{}", settings.http.order_api_port),
        run_id: format!("demo{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        orders: options.orders,
        concurrency: options.concurrency,
        rate: options.rate,
        unaffordable_cents: settings.payment.default_balance_cents + 1,
        unobtainable_quantity: settings.inventory.default_stock + 1,
        // Customers cancel 0.2–2.5 s after placing, the window the saga's races live in.
        cancel_delay_ms: options.racing_cancels.then_some((200, 2_500)),
    }
}

/// Only places the orders (and sends the cancellations), as [`run`] does, without waiting for
/// the saga: for measuring the order API on its own.
pub async fn place(settings: &Settings, options: &DemoOptions) -> Result<Vec<PlacedOrder>> {
    load::drive(load_spec(settings, options), |_, _| {}).await
}

pub async fn run(settings: &Settings, options: &DemoOptions, show_progress: bool) -> Result<DemoReport> {
    let pool = crate::db::pool(&settings.database_url()?, 4)?;
    let spec = load_spec(settings, options);
    let run_id = spec.run_id.clone();
    let poison_count = (options.orders as f64 * options.poison_percent / 100.0).round() as usize;
    let poisoning = async {
        if poison_count == 0 {
            return Ok(Vec::new());
        }
        let codec = crate::components::saga_codec(settings).await?;
        let placing =
            options.rate.map_or(Duration::ZERO, |rate| Duration::from_secs_f64(options.orders as f64 / rate.max(1e-3)));
        let every = placing / u32::try_from(poison_count).unwrap_or(u32::MAX);
        poison::produce(&settings.kafka.bootstrap_servers, schemas::ORDER_EVENTS, &codec, &run_id, poison_count, every)
            .await
    };
    // Before the first POST, so that every event of the run is seen.
    let bootstrap = settings.kafka.bootstrap_servers.clone();
    let observer = tokio::task::spawn_blocking(move || observer::Observer::start(&bootstrap)).await??;
    let started = Instant::now();
    let placed = std::sync::Arc::new(progress::Progress::new("placing orders"));
    let placed_shown = placed.clone();
    let placing_orders = load::drive(spec, move |done, total| {
        if show_progress {
            placed_shown.show(done, total);
        }
    });
    let (orders, poisoned) = tokio::join!(placing_orders, poisoning);
    let (orders, poisoned) = (orders?, poisoned?);
    let placing = started.elapsed();
    placed.finish();
    let terminal = progress::Progress::new("orders in a terminal state");
    let settled_states = outcome::wait_for_terminal(&pool, &orders, options.settle_timeout, |done, total| {
        if show_progress {
            terminal.show(done, total);
        }
    })
    .await?;
    let settled_at = Instant::now();
    let settled = settled_at - started;
    terminal.finish();
    let observed = observer.finish().await?;
    let behind = quiescence::wait_until_caught_up(settings, Duration::from_secs(120)).await?;
    if !behind.is_empty() {
        println!("  still behind after 120 s (the checks below read the stores as they are): {}", behind.join("; "));
    }
    // Read again once every group is caught up: an order parked (a terminal state) when the
    // settle ended can be cancelled by a late compensation reply after it, in the saga and in
    // the read model alike.
    let states = outcome::read_states(&pool, &orders).await?;
    let (mut checks, event_counts) = invariants::check_all(
        &invariants::Sources {
            bootstrap: &settings.kafka.bootstrap_servers,
            pool: &pool,
            default_balance_cents: settings.payment.default_balance_cents,
            default_stock: settings.inventory.default_stock,
        },
        &orders,
        &states,
    )
    .await?;
    if !poisoned.is_empty() {
        let mut readers: Vec<&str> = crate::components::Participant::ALL.iter().map(|p| p.application_id()).collect();
        let projector = crate::projector::ProjectorConfig::new(settings.kafka.bootstrap_servers.clone());
        readers.push(projector.group_id.as_str());
        checks.push(poison::check(&settings.kafka.bootstrap_servers, schemas::ORDER_EVENTS, &readers, &poisoned)?);
        println!("  poison records produced to {}: {}", schemas::ORDER_EVENTS, poisoned.len());
    }
    let mut report = DemoReport {
        outcomes: outcome::outcome_counts(&states, &orders),
        final_outcomes: orders.iter().map(|o| (o.order_id.clone(), outcome::label(states.get(&o.order_id)))).collect(),
        // Latency to the first terminal state the read model showed.
        latency_ms: outcome::latency_percentiles(&settled_states),
        terminal_latency_ms: settled_states
            .iter()
            .filter(|(_, state)| outcome::is_terminal(&state.status))
            .map(|(order_id, state)| (order_id.clone(), state.latency_ms))
            .collect(),
        placed_per_second: orders.len() as f64 / placing.as_secs_f64().max(1e-3),
        completed_per_second: orders.len() as f64 / settled.as_secs_f64().max(1e-3),
        settled_at,
        orders,
        checks,
        event_counts,
        hops: Vec::new(),
    };
    let codec = crate::components::saga_codec(settings).await?;
    report.hops = hops::breakdown(&observed.milestones(&report, &codec).await);
    Ok(report)
}

pub fn print_report(report: &DemoReport, settings: &Settings) {
    println!("\nOutcomes ({} orders)", report.orders.len());
    println!("  {:<40} {:>8}", "final state", "orders");
    for (outcome, count) in &report.outcomes {
        println!("  {outcome:<40} {count:>8}");
    }
    let mut planned = std::collections::BTreeMap::new();
    for order in &report.orders {
        *planned.entry(format!("{:?}", order.scenario)).or_insert(0) += 1;
    }
    println!("  planned scenarios: {planned:?}");
    match report.latency_ms {
        Some((p50, p95, p99)) => println!(
            "\nEnd-to-end latency, POST → terminal state in the read model: p50 {p50} ms, p95 {p95} ms, p99 {p99} ms"
        ),
        None => println!("\nEnd-to-end latency: no order reached a terminal state"),
    }
    println!(
        "Throughput: {:.0} orders/s placed; {:.0} orders/s from the first POST to the last terminal state",
        report.placed_per_second, report.completed_per_second
    );
    println!("\nWhere a confirmed order's time goes, hop by hop (a read_committed observer of the saga topics)");
    hops::print(&report.hops);
    let counts: Vec<String> = report.event_counts.iter().map(|(event_type, n)| format!("{event_type} {n}")).collect();
    println!("Events of these orders on the saga topics: {}", counts.join(", "));
    println!("\nInvariants");
    for check in &report.checks {
        println!("  [{}] {}", if check.holds() { "ok" } else { "FAILED" }, check.name);
        for violation in check.violations.iter().take(20) {
            println!("         {violation}");
        }
        if check.violations.len() > 20 {
            println!("         … and {} more", check.violations.len() - 20);
        }
    }
    // What `dev/chaos` (like Kafka's streams_eos_test.py) looks for.
    if report.all_invariants_hold() {
        println!("\nALL-RECORDS-DELIVERED");
    }
    println!("\nWhere to look next");
    println!("  metrics             http://127.0.0.1:{}/metrics", settings.http.admin_port);
    println!("  orders (read model) http://127.0.0.1:{}/orders?limit=20", settings.http.order_api_port);
    println!("  Prometheus          http://127.0.0.1:9090/graph?g0.expr=kafka_consumergroup_group_lag");
    println!("  alert rules         dashboards/prometheus/alerts.yml; Grafana: dashboards/grafana/saga-overview.json");
}
