//! Waiting until the pipeline has nothing left to do before its stores are read: every group
//! has consumed every readable record of its topics (lag 0, transaction markers not counted).
//! The read model can show every order terminal while a participant that was stopped or killed
//! near the end still works through late replies and their compensations; stores read then
//! would be caught mid-way.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::admin::lag::LagReader;
use crate::codec::EventSerde;
use crate::components;
use crate::settings::Settings;

/// Reads in a row that must find every group caught up.
const QUIET_READS: usize = 2;
const BETWEEN_READS: Duration = Duration::from_secs(2);

/// Returns once every group of the pipeline is caught up, or after `timeout` with the groups
/// still behind (the checks that follow then show what that left undone).
pub async fn wait_until_caught_up(settings: &Settings, timeout: Duration) -> Result<Vec<String>> {
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || {
        // The topologies only name their topics here: no registry is needed for that.
        let groups = components::watched_groups(&settings, &EventSerde::with_fixed_ids())?;
        let reader = LagReader::new(&settings.kafka.bootstrap_servers, groups).context("consumer lag reader")?;
        let deadline = Instant::now() + timeout;
        let mut quiet = 0;
        loop {
            let behind: Vec<String> = reader
                .read()
                .context("reading consumer lag")?
                .into_iter()
                .filter(|lag| lag.records > 0)
                .map(|lag| format!("{} on {}[{}]: {} records", lag.group, lag.topic, lag.partition, lag.records))
                .collect();
            quiet = if behind.is_empty() { quiet + 1 } else { 0 };
            if quiet >= QUIET_READS || Instant::now() >= deadline {
                return Ok(behind);
            }
            std::thread::sleep(BETWEEN_READS);
        }
    })
    .await
    .context("waiting for the groups to catch up")?
}
