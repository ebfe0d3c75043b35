//! One run: fresh topics, the preload, a contestant in its own process, the figures.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bench::process_stats::{cpu_seconds, peak_rss_kb};
use pipeline::event_serde::EventSerde;
use pipeline::settings::Settings;

use crate::caught_up;
use crate::orders::{now_ms, OrderWriter};
use crate::replies::Replies;
use crate::{run_ours, Options};

const PARTITIONS: i32 = 6;
/// The peer's heap, as a user would cap it; PEER_JAVA_OPTS replaces it.
const DEFAULT_JAVA_OPTS: &str = "-Xmx1g";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contestant {
    Ours,
    KafkaStreams,
}

impl Contestant {
    pub const ALL: [Contestant; 2] = [Contestant::Ours, Contestant::KafkaStreams];

    pub fn name(self) -> &'static str {
        match self {
            Contestant::Ours => "ours",
            Contestant::KafkaStreams => "kafka-streams",
        }
    }
}

pub struct RunResult {
    /// Seconds from the process start to its first reply: start-up, group join, first batch.
    pub start_seconds: f64,
    pub throughput: f64,
    /// Seconds from the Nth reply until the contestant had consumed all its input (its own
    /// replies read back included); the paced phase starts after that.
    pub caught_up_seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub peak_rss_mb: f64,
    pub cpu_seconds_per_million: f64,
}

pub struct Topics {
    pub order: String,
    pub inventory: String,
    pub payment: String,
}

pub fn run(
    contestant: Contestant,
    round: u32,
    prefix: &str,
    options: &Options,
    settings: &Settings,
    serde: &EventSerde,
) -> Result<RunResult> {
    let bootstrap = settings.kafka.bootstrap_servers.as_str();
    let application_id = format!("{prefix}-r{round}-{}", contestant.name());
    let topics = Topics {
        order: format!("{application_id}.order.events"),
        inventory: format!("{application_id}.inventory.events"),
        payment: format!("{application_id}.payment.events"),
    };
    bench::kafka::create_topics(bootstrap, &[&topics.order, &topics.inventory, &topics.payment], PARTITIONS)?;
    let orders = OrderWriter::new(bootstrap, &topics.order, serde, options.customers)?;
    orders.preload(options.records)?;

    let replies = Replies::subscribe(bootstrap, &topics.payment)?;
    let log = std::env::temp_dir().join(format!("{application_id}.log"));
    let mut processes = Processes::spawn(contestant, &application_id, &topics, settings, options, &log)?;
    let mut cpu_at_first = None;
    let drained = replies
        .observe(options.records, i64::MAX, Duration::from_secs(180), || cpu_at_first = processes.cpu_seconds().ok());
    let cpu_seconds = processes.cpu_seconds().map(|total| total - cpu_at_first.unwrap_or(0.0));
    if drained.replies < options.records {
        processes.stop();
        bail!(
            "{}: {} of {} replies came; its logs: {}",
            contestant.name(),
            drained.replies,
            options.records,
            log.with_extension("*.log").display()
        );
    }

    let input = [topics.order.as_str(), topics.inventory.as_str(), topics.payment.as_str()];
    let caught_up = match caught_up::wait(bootstrap, &application_id, &input, PARTITIONS, Duration::from_secs(600)) {
        Ok(waited) => waited,
        Err(error) => {
            processes.stop();
            return Err(error.context(format!(
                "{}: its logs: {}",
                contestant.name(),
                log.with_extension("*.log").display()
            )));
        }
    };

    let paced_from_ms = now_ms();
    let paced = std::thread::scope(|scope| {
        let producer =
            scope.spawn(|| orders.paced(options.records, options.rate, Duration::from_secs(options.seconds)));
        let observed = replies.observe(options.rate * options.seconds, paced_from_ms, Duration::from_secs(60), || ());
        (producer.join(), observed)
    });
    let peak_rss_mb = processes.peak_rss_kb() as f64 / 1024.0;
    processes.stop();
    let (sent, observed) = paced;
    let sent = sent.map_err(|_| anyhow::anyhow!("the paced producer panicked"))??;
    if observed.latencies_ms.len() as u64 != sent {
        eprintln!("peer-bench: {}: {} replies to {sent} paced orders", contestant.name(), observed.latencies_ms.len());
    }
    Ok(RunResult {
        start_seconds: drained.until_first.as_secs_f64(),
        throughput: drained.per_second(),
        caught_up_seconds: caught_up.as_secs_f64(),
        p50_ms: observed.percentile_ms(0.50),
        p99_ms: observed.percentile_ms(0.99),
        peak_rss_mb,
        cpu_seconds_per_million: cpu_seconds? * 1e6 / options.records as f64,
    })
}

/// A contestant's processes: ours as `--instances` processes in one group (our runtime runs
/// one stream thread per instance, and scales by instances), Kafka Streams as one process with
/// a stream thread per core.
struct Processes {
    children: Vec<Child>,
}

impl Processes {
    fn spawn(
        contestant: Contestant,
        application_id: &str,
        topics: &Topics,
        settings: &Settings,
        options: &Options,
        log: &Path,
    ) -> Result<Self> {
        let count = match contestant {
            Contestant::Ours => options.instances,
            Contestant::KafkaStreams => 1,
        };
        let mut processes = Processes { children: Vec::new() };
        for instance in 0..count {
            let log = log.with_extension(format!("{instance}.log"));
            match spawn_one(contestant, application_id, topics, settings, options, &log) {
                Ok(child) => processes.children.push(child),
                Err(error) => {
                    processes.stop();
                    return Err(error);
                }
            }
        }
        Ok(processes)
    }

    fn cpu_seconds(&self) -> Result<f64> {
        self.children.iter().map(|child| cpu_seconds(child.id())).sum()
    }

    /// The sum of each process's peak, as the machine had to hold them side by side.
    fn peak_rss_kb(&self) -> u64 {
        self.children.iter().filter_map(|child| peak_rss_kb(child.id())).sum()
    }

    /// SIGTERM, as a service manager stops them; SIGKILL for any still up after 30 s.
    fn stop(&mut self) {
        for child in &self.children {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for child in &mut self.children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

fn spawn_one(
    contestant: Contestant,
    application_id: &str,
    topics: &Topics,
    settings: &Settings,
    options: &Options,
    log: &Path,
) -> Result<Child> {
    let mut command = match contestant {
        Contestant::Ours => {
            let mut command = Command::new(std::env::current_exe().context("this binary's path")?);
            command.arg(run_ours::COMMAND).arg("--config").arg(&options.config);
            command
        }
        Contestant::KafkaStreams => {
            let peer = peer_dir();
            let jar = peer.join("target/payment-peer-0.jar");
            if !jar.exists() {
                bail!(
                    "{} is not built: run bench/peers/compare, or mvn package dependency:copy-dependencies in {}",
                    jar.display(),
                    peer.display()
                );
            }
            let java_opts = std::env::var("PEER_JAVA_OPTS").unwrap_or_else(|_| DEFAULT_JAVA_OPTS.to_owned());
            let mut command = Command::new("java");
            command
                .args(java_opts.split_whitespace())
                .arg("-cp")
                .arg(format!("{}:{}/target/dependency/*", jar.display(), peer.display()))
                .arg("saga.peer.PaymentPeer")
                .args(["--bootstrap", &settings.kafka.bootstrap_servers, "--registry", &settings.registry.url]);
            command
        }
    };
    command
        .args(["--application-id", application_id])
        .args([
            "--order-topic",
            &topics.order,
            "--inventory-topic",
            &topics.inventory,
            "--payment-topic",
            &topics.payment,
        ])
        .args(["--default-balance-cents", &run_ours::BALANCE_CENTS.to_string()]);
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    command.stdout(out.try_clone()?).stderr(out).stdin(Stdio::null());
    command.spawn().with_context(|| format!("starting {}", contestant.name()))
}

fn peer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/kafka-streams")
}
