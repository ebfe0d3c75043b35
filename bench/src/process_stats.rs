//! What processes cost, from /proc: CPU seconds and resident memory per process, and CPU
//! seconds per part of the local stack (to see which part a saga run's CPU goes to).

use std::collections::BTreeMap;

use anyhow::{Context, Result};

/// User + system CPU time of a live process, every thread included.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks =
        |index: usize| fields.get(index).and_then(|f| f.parse::<f64>().ok()).context("a field of /proc/<pid>/stat");
    Ok((ticks(11)? + ticks(12)?) / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The process's peak resident set (VmHWM), in kB.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmHWM:")
}

/// The process's resident set now (VmRSS), in kB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS:")
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds so far of every live process, by pid, with the part of the stack it belongs to
/// (`own_part` for this process). A process that exits between two samples drops out of both.
pub fn cpu_seconds_by_part(own_part: &'static str) -> BTreeMap<u32, (&'static str, f64)> {
    let own_pid = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let command = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let part = if pid == own_pid { own_part } else { part_of(&String::from_utf8_lossy(&command)) };
            Some((pid, (part, cpu_seconds(pid).ok()?)))
        })
        .collect()
}

/// CPU seconds each part spent between two [`cpu_seconds_by_part`] samples.
pub fn cpu_spent(
    before: &BTreeMap<u32, (&'static str, f64)>,
    after: &BTreeMap<u32, (&'static str, f64)>,
) -> BTreeMap<&'static str, f64> {
    let mut spent = BTreeMap::new();
    for (pid, (part, seconds)) in after {
        // A process started in between counts from zero.
        let earlier = before.get(pid).map_or(0.0, |(_, seconds)| *seconds);
        *spent.entry(*part).or_insert(0.0) += (seconds - earlier).max(0.0);
    }
    spent
}

/// Which part of the local stack (`dev/stack`) a command line belongs to.
fn part_of(command: &str) -> &'static str {
    let program = command.split('\0').next().unwrap_or_default();
    let is = |needle: &str| command.contains(needle);
    if is("kafka.Kafka") {
        "kafka"
    } else if is("ConnectDistributed") {
        "connect"
    } else if is("quarkus-run.jar") {
        "registry"
    } else if program.starts_with("postgres") || program.ends_with("/postgres") {
        "postgres"
    } else if program.contains("redis-server") {
        "redis"
    } else if program.ends_with("prometheus") {
        "prometheus"
    } else if program.ends_with("/pipeline") || program == "pipeline" {
        "pipeline"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_of_the_local_stack_map_to_their_part() {
        assert_eq!(part_of("java\0-Xmx1g\0kafka.Kafka\0server.properties\0"), "kafka");
        assert_eq!(part_of("java\0org.apache.kafka.connect.cli.ConnectDistributed\0w.properties\0"), "connect");
        assert_eq!(part_of("postgres: saga saga 127.0.0.1(5) idle"), "postgres");
        assert_eq!(part_of("/usr/lib/postgresql/17/bin/postgres\0-D\0data\0"), "postgres");
        assert_eq!(part_of("redis-server 127.0.0.1:6379"), "redis");
        assert_eq!(part_of("/cache/cargo-target/release/pipeline\0all\0"), "pipeline");
        assert_eq!(part_of("bash\0-c\0echo kafka\0"), "other");
    }

    #[test]
    fn cpu_spent_counts_new_processes_from_zero_and_sums_by_part() {
        let before = BTreeMap::from([(1, ("kafka", 10.0)), (2, ("postgres", 1.0))]);
        let after = BTreeMap::from([(1, ("kafka", 12.5)), (2, ("postgres", 1.5)), (3, ("postgres", 0.25))]);
        let spent = cpu_spent(&before, &after);
        assert_eq!(spent.get("kafka"), Some(&2.5));
        assert_eq!(spent.get("postgres"), Some(&0.75));
    }
}
