//! The stack in containers, for a machine with Docker and no `dev/stack` (feature
//! `testcontainers`): the first test that needs a service starts `compose.yaml` through
//! testcontainers' Docker Compose support, then waits until every service answers on its port.
//!
//! The containers use host networking on the ports of `dev/ports.env`, so every other helper of
//! this crate reaches them unchanged. They outlive the test run, as `dev/stack up` leaves its
//! stack running; `docker compose down` stops them. Not exercised on this project's CI machine,
//! which has no Docker engine: CI only compiles this module (README, "Status").

use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use testcontainers::compose::DockerCompose;

use crate::stack::{port, repo_root, stack_dir};

/// compose.yaml's project name, so that a stack started by hand is the same one.
const PROJECT: &str = "saga-pipeline";

/// Every service the tests use, by the `dev/ports.env` name of its port.
const SERVICES: [(&str, &str); 6] = [
    ("postgres", "POSTGRES_PORT"),
    ("redis", "REDIS_PORT"),
    ("kafka", "KAFKA_PORT"),
    ("registry (Apicurio)", "REGISTRY_PORT"),
    ("kafka connect", "CONNECT_PORT"),
    ("prometheus", "PROMETHEUS_PORT"),
];

/// Kafka Connect loads Debezium and Apicurio runs its migrations after their containers count as
/// started.
const READY_WITHIN: Duration = Duration::from_secs(300);

/// Starts the stack once per test process; panics with Docker's answer if it cannot.
pub fn start_once() {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(error) = STARTED.get_or_init(|| {
        // On a thread of its own: the caller may be inside a test's runtime, which cannot block.
        std::thread::spawn(start).join().unwrap_or_else(|_| Err("starting the containers panicked".to_owned()))
    }) {
        panic!("the testcontainers stack (compose.yaml) did not start: {error}");
    }
}

fn start() -> Result<(), String> {
    // compose.yaml mounts the directory the tests drop Prometheus scrape targets in.
    let targets = stack_dir().join("prometheus/targets");
    std::fs::create_dir_all(&targets).map_err(|e| format!("creating {}: {e}", targets.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("a runtime for Docker's client: {e}"))?;
    let mut compose = DockerCompose::with_local_client(&[repo_root().join("compose.yaml")])
        .with_project_name(PROJECT)
        .with_wait(true);
    runtime.block_on(compose.up()).map_err(|e| format!("docker compose up: {e}"))?;
    // Dropping it would take the stack down with the first test process that ends.
    std::mem::forget(compose);
    wait_for_services()
}

fn wait_for_services() -> Result<(), String> {
    let deadline = Instant::now() + READY_WITHIN;
    for (service, port_name) in SERVICES {
        let address = format!("127.0.0.1:{}", port(port_name)).parse().map_err(|e| format!("{port_name}: {e}"))?;
        while TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("{service} did not answer on {address} within {} s", READY_WITHIN.as_secs()));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    Ok(())
}
