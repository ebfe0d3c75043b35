//! `process_resident_memory_bytes`, under the name Prometheus' client libraries use, read from
//! `/proc/self/status` on each scrape: how the soak shows memory flat per process. Absent where
//! there is no procfs.

use std::sync::LazyLock;

use prometheus::{register_int_gauge, IntGauge};

static RESIDENT: LazyLock<Option<IntGauge>> =
    LazyLock::new(|| register_int_gauge!("process_resident_memory_bytes", "Resident memory size in bytes").ok());

/// Sets the gauge from the kernel's current figure.
pub fn update() {
    if let (Some(gauge), Some(bytes)) = (RESIDENT.as_ref(), resident_bytes()) {
        gauge.set(bytes);
    }
}

fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss_kb(&status).map(|kb| kb.saturating_mul(1024))
}

fn parse_vm_rss_kb(status: &str) -> Option<i64> {
    status.lines().find_map(|line| line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kilobytes() {
        assert_eq!(parse_vm_rss_kb("Name:\tpipeline\nVmRSS:\t   16384 kB\nThreads:\t9\n"), Some(16_384));
        assert_eq!(parse_vm_rss_kb("Name:\tpipeline\n"), None);
    }

    #[test]
    fn this_process_reports_its_resident_memory() {
        update();
        let gauge = RESIDENT.as_ref().expect("registered");
        assert!(gauge.get() > 1024 * 1024, "a test process holds more than 1 MiB: {}", gauge.get());
    }
}
