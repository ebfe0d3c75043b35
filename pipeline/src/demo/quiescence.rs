//! Waiting until the pipeline has nothing left to do before its stores are read: every group
//! has consumed every readable record of its topics (lag 0, transaction markers not counted).
//! The read model can show every order terminal while a participant that was stopped or killed
//! near the end still works through late replies and their compensations; stores read then
//! would be caught mid-way.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::admin::lag::{LagReader, PartitionLag};
use crate::components;
use crate::event_serde::EventSerde;
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
        poll_until_quiet(|| reader.read(), timeout, BETWEEN_READS)
    })
    .await
    .context("waiting for the groups to catch up")?
}

/// Reads the lag until `QUIET_READS` reads in a row find every group caught up, or until
/// `timeout`. A read that fails counts as not quiet and is tried again: right after a broker
/// restart a metadata request can time out while the pipeline is fine. Only a read still failing
/// at the deadline is an error.
fn poll_until_quiet<E: std::error::Error + Send + Sync + 'static>(
    mut read: impl FnMut() -> Result<Vec<PartitionLag>, E>,
    timeout: Duration,
    between_reads: Duration,
) -> Result<Vec<String>> {
    let deadline = Instant::now() + timeout;
    let mut quiet = 0;
    loop {
        let behind = read().map(|lags| {
            lags.into_iter()
                .filter(|lag| lag.records > 0)
                .map(|lag| format!("{} on {}[{}]: {} records", lag.group, lag.topic, lag.partition, lag.records))
                .collect::<Vec<String>>()
        });
        quiet = match &behind {
            Ok(behind) if behind.is_empty() => quiet + 1,
            _ => 0,
        };
        if quiet >= QUIET_READS || Instant::now() >= deadline {
            return behind.context("reading consumer lag");
        }
        std::thread::sleep(between_reads);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caught_up() -> Vec<PartitionLag> {
        Vec::new()
    }

    #[test]
    fn a_lag_read_that_times_out_once_is_tried_again() {
        let mut reads = 0;
        let behind = poll_until_quiet(
            || {
                reads += 1;
                if reads == 1 {
                    Err(std::io::Error::other("Meta data fetch error: OperationTimedOut"))
                } else {
                    Ok(caught_up())
                }
            },
            Duration::from_secs(10),
            Duration::ZERO,
        )
        .expect("a second read succeeds");
        assert!(behind.is_empty());
        assert_eq!(reads, 1 + QUIET_READS);
    }

    #[test]
    fn a_lag_read_still_failing_at_the_deadline_is_the_error() {
        let result = poll_until_quiet(
            || -> Result<Vec<PartitionLag>, std::io::Error> { Err(std::io::Error::other("broker gone")) },
            Duration::ZERO,
            Duration::ZERO,
        );
        let error = format!("{:#}", result.expect_err("no read succeeded"));
        assert!(error.contains("reading consumer lag") && error.contains("broker gone"), "{error}");
    }
}
