//! `process_resident_memory_bytes`, under the name Prometheus' client libraries use, read from
//! `/proc/self/status` on each scrape: how the soak shows memory flat per process. Absent where
//! there is no procfs.

use std::sync::LazyLock;

use operators::metrics::{family, register_default};
use prometheus::core::Collector;
use prometheus::IntGauge;

static RESIDENT: LazyLock<IntGauge> = LazyLock::new(|| {
    let gauge = family(IntGauge::new("process_resident_memory_bytes", "Resident memory size in bytes"));
    register_default("admin", [Box::new(gauge.clone()) as Box<dyn Collector>]);
    gauge
});

/// Sets the gauge from the kernel's current figure.
pub fn update() {
    if let Some(bytes) = resident_bytes() {
        RESIDENT.set(bytes);
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
        let gauge = &*RESIDENT;
        assert!(gauge.get() > 1024 * 1024, "a test process holds more than 1 MiB: {}", gauge.get());
    }
}
