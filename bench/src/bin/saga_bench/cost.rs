//! What a rate cost the machine: CPU milliseconds per order in each part of the stack, from
//! samples of /proc taken every half second while the rate runs, and the pipeline's memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench::process_stats::{cpu_seconds_by_part, cpu_spent, peak_rss_kb, rss_kb};

type Sample = (Instant, BTreeMap<u32, (&'static str, f64)>);

/// Samples CPU by part until dropped.
pub struct CpuSampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CpuSampler {
    pub fn start() -> Self {
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let taken = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                let sample = tokio::task::spawn_blocking(|| (Instant::now(), cpu_seconds_by_part(std::process::id())))
                    .await
                    .ok();
                taken.lock().unwrap_or_else(|e| e.into_inner()).extend(sample);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        CpuSampler { samples, task }
    }

    /// CPU seconds per part from the first sample to the last one taken by `until`.
    pub fn spent_until(self, until: Instant) -> BTreeMap<&'static str, f64> {
        self.task.abort();
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let last = samples.iter().rev().find(|(at, _)| *at <= until);
        match (samples.first(), last) {
            (Some((_, first)), Some((_, last))) => cpu_spent(first, last),
            _ => BTreeMap::new(),
        }
    }
}

/// One line: CPU ms per order by part, the total, and the rate the machine's cores would
/// sustain at that cost if nothing else limited it.
pub fn print_cpu_per_order(spent: &BTreeMap<&'static str, f64>, orders: usize) {
    let orders = orders.max(1) as f64;
    let total: f64 = spent.values().sum();
    let parts: Vec<String> =
        spent.iter().map(|(part, seconds)| format!("{part} {:.2}", seconds * 1000.0 / orders)).collect();
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let per_order_ms = total * 1000.0 / orders;
    println!(
        "    CPU ms per order: {} = {per_order_ms:.2}; {cores:.0} cores at this cost: {:.0} orders/s",
        parts.join(", "),
        cores * 1000.0 / per_order_ms.max(1e-9)
    );
}

/// The pipeline process's resident memory now and at its peak.
pub fn print_memory() {
    let pid = std::process::id();
    let mb = |kb: Option<u64>| kb.map_or("?".to_owned(), |kb| format!("{:.0}", kb as f64 / 1024.0));
    println!("    pipeline RSS: {} MB now, {} MB peak", mb(rss_kb(pid)), mb(peak_rss_kb(pid)));
}
