//! `pipeline`: the order saga's processes. Run every part in one process (`all`) or each part
//! as its own process; see `pipeline --help`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use pipeline::components::{self, Participant};
use pipeline::settings::Settings;
use pipeline::{demo, schema_commands};

// glibc's malloc spent a third of a participant's CPU in its free lists once its stores held a
// few hundred thousand entries; mimalloc took 30% off CPU per order (bench/peers/compare).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "pipeline",
    version,
    about = "Exactly-once order saga on Kafka: order API, participants, projector, admin"
)]
struct Cli {
    /// The TOML configuration; every key can be overridden by SAGA__<SECTION>__<KEY>.
    #[arg(long, short, global = true, default_value = "config/pipeline.toml", env = "SAGA_CONFIG")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every part in one process: order API, the four participants, projector, admin endpoint.
    All,
    /// Creates the topics, applies the migrations, registers the schemas (as `schemas register`)
    /// and the Debezium outbox connector.
    Setup,
    /// The order service (POST /orders, POST /orders/{id}/cancel) and the read model's GET /orders.
    OrderApi,
    /// The payment participant (charges, refunds; balances per customer).
    Payment,
    /// The inventory participant (all-or-nothing reservations; stock per product).
    Inventory,
    /// The shipping participant (creates shipments, guarded against duplicates).
    Shipping,
    /// The order saga (status per order, step timeouts, OrderConfirmed / OrderCancelled).
    OrderSaga,
    /// The projector that keeps the order_view read model (`projector rebuild`: build it anew).
    Projector {
        #[command(subcommand)]
        action: Option<ProjectorAction>,
    },
    /// The admin endpoint: /metrics (with consumer lag), /health, /ready, and the DLQ (its
    /// indexer and /admin/dlq: list, inspect, reprocess, discard).
    Admin,
    /// Only the HTTP APIs: the order API and the admin endpoint (/metrics, /health, /ready,
    /// /admin/dlq), with no participant, projector or DLQ indexer, so it consumes nothing.
    Api,
    /// The saga events' Avro schemas (`schemas/avro/v<N>/`, levels in `schemas/avro/compatibility.toml`).
    Schemas {
        #[command(subcommand)]
        command: SchemasCommand,
    },
    /// Drives a demo load through a running pipeline and prints what happened.
    Demo {
        /// Number of orders to place.
        #[arg(long, default_value_t = 2000)]
        orders: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Seconds to wait for every order to reach a terminal state.
        #[arg(long, default_value_t = 300)]
        settle_timeout_s: u64,
        /// Orders per second to offer (open loop); unset: as fast as `concurrency` allows.
        #[arg(long)]
        rate: Option<f64>,
        /// Customers cancel after a random 0.2–2.5 s, also one in six good orders (for `dev/chaos`).
        #[arg(long)]
        racing_cancels: bool,
        /// Poison records produced straight to the order topic, as a percentage of the orders;
        /// each must end in the order topic's DLQ once per group that reads it.
        #[arg(long, default_value_t = 0.0)]
        poison_percent: f64,
    },
}

#[derive(Subcommand)]
enum SchemasCommand {
    /// Checks every version against all earlier ones under its subject's level, locally
    /// (apache-avro) and in the live registry (on scratch subjects); exits non-zero naming the
    /// field and the rule a version breaks.
    Check {
        /// Only the local check: no registry needed.
        #[arg(long)]
        offline: bool,
    },
    /// Sets each subject's compatibility level, then registers every version, oldest first.
    Register,
}

#[derive(Subcommand)]
enum ProjectorAction {
    /// Rebuilds order_view from every record of the saga topics into a new table and swaps it
    /// in atomically; the projector must be stopped (docs/schema-evolution.md).
    Rebuild,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // The log format is configured, so logging starts once the configuration is read.
    let outcome = match Settings::load(&cli.config, std::env::vars()) {
        Ok(settings) => match pipeline::logging::init(&settings.logging, &settings.tracing) {
            Ok(_telemetry) => run(cli, settings).await,
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    if let Err(error) = outcome {
        eprintln!("pipeline: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli, settings: Settings) -> Result<()> {
    match cli.command {
        Command::All => components::run_all(&settings, shutdown_signal()).await,
        Command::Setup => {
            components::database(&settings).await?;
            components::prepare(&settings).await
        }
        Command::OrderApi => {
            let pool = components::database(&settings).await?;
            let codec = components::saga_codec(&settings).await?;
            let order_api = components::serve_order_api(&settings, pool, codec);
            components::with_process_metrics(&settings, "order-api", order_api).await
        }
        Command::Payment => run_participants(&settings, Participant::Payment).await,
        Command::Inventory => run_participants(&settings, Participant::Inventory).await,
        Command::Shipping => run_participants(&settings, Participant::Shipping).await,
        Command::OrderSaga => run_participants(&settings, Participant::OrderSaga).await,
        Command::Projector { action } => {
            let (pool, codec) = (components::database(&settings).await?, components::saga_codec(&settings).await?);
            match action {
                None => {
                    let projector = components::run_projector(&settings, pool, codec, shutdown_signal());
                    components::with_process_metrics(&settings, "projector", projector).await
                }
                Some(ProjectorAction::Rebuild) => {
                    components::rebuild_read_model(&settings, pool, codec, shutdown_signal()).await
                }
            }
        }
        Command::Admin => {
            let (pool, codec) = (components::database(&settings).await?, components::saga_codec(&settings).await?);
            components::serve_admin(&settings, pool, codec, shutdown_signal()).await
        }
        Command::Api => {
            let (pool, codec) = (components::database(&settings).await?, components::saga_codec(&settings).await?);
            components::serve_apis(&settings, pool, codec, shutdown_signal()).await
        }
        Command::Schemas { command: SchemasCommand::Check { offline } } => {
            schema_commands::check(&settings, offline).await
        }
        Command::Schemas { command: SchemasCommand::Register } => schema_commands::register(&settings).await,
        Command::Demo { orders, concurrency, settle_timeout_s, rate, racing_cancels, poison_percent } => {
            let settle_timeout = Duration::from_secs(settle_timeout_s);
            let options =
                demo::DemoOptions { orders, concurrency, rate, settle_timeout, racing_cancels, poison_percent };
            let report = demo::run(&settings, &options, true).await?;
            demo::print_report(&report, &settings);
            anyhow::ensure!(report.all_invariants_hold(), "an invariant does not hold (see above)");
            Ok(())
        }
    }
}

async fn run_participants(settings: &Settings, participant: Participant) -> Result<()> {
    let codec = components::saga_codec(settings).await?;
    let which = [participant];
    let running = components::run_participants(settings, &which, codec, shutdown_signal());
    components::with_process_metrics(settings, participant.application_id(), running).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
