//! The process shell shared by the apps the exactly-once tests spawn: a config with quick
//! failover, and a main loop that runs until standard input closes.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use operators::runtime::{KafkaStreams, StoreType, StreamsConfig};
use operators::topology::Topology;

/// With it set, every store is persistent, in `<dir>/<instance id>`: an instance restarted under
/// the same id finds its local state again.
pub const STATE_DIR_ENV: &str = "EOS_STATE_DIR";

/// Exactly-once defaults, with this instance's id.
pub fn config(bootstrap: &str, application_id: &str, instance_id: &str) -> StreamsConfig {
    let mut config = StreamsConfig::new(application_id, bootstrap);
    config.instance_id = instance_id.to_owned();
    if let Some(dir) = std::env::var_os(STATE_DIR_ENV) {
        config.default_store_type = StoreType::Persistent;
        config.state_dir = std::path::PathBuf::from(dir).join(instance_id);
    }
    // A killed instance's partitions move after the session timeout; keep tests short.
    config.set("session.timeout.ms", "6000").set("heartbeat.interval.ms", "1000")
}

/// Prints `started` once running, then runs until stdin closes: commits, leaves the group and
/// exits 0. A start failure or a fatal runtime error exits 1.
pub fn run_until_stdin_closes(name: &str, topology: Topology, config: StreamsConfig) -> ! {
    let streams = match KafkaStreams::start(topology, config, prometheus::default_registry()) {
        Ok(streams) => streams,
        Err(e) => {
            eprintln!("{name}: start failed: {e}");
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
        Ok(()) => {
            println!("closed");
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("{name}: stopped on error: {e}");
            std::process::exit(1);
        }
    }
}
