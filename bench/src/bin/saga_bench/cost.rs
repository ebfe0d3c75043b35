//! What a rate cost the machine: CPU milliseconds per order in each part of the stack, and the
//! pipeline's resident memory over the run, from samples of /proc taken every half second.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench::process_stats::{cpu_seconds_by_part, cpu_spent, rss_kb};

/// The part this process's own CPU counts as: the pipeline runs here too, or only the load.
pub const IN_PROCESS: &str = "pipeline+bench";
pub const ATTACHED: &str = "bench";

struct Sample {
    at: Instant,
    cpu: BTreeMap<u32, (&'static str, f64)>,
    /// Resident kB of the pipeline's processes, summed.
    pipeline_rss_kb: u64,
}

/// Samples CPU by part, and the pipeline's memory, until [`CpuSampler::finish`].
pub struct CpuSampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CpuSampler {
    pub fn start(own_part: &'static str) -> Self {
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let taken = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                let sample = tokio::task::spawn_blocking(move || {
                    let cpu = cpu_seconds_by_part(own_part);
                    let pipeline_rss_kb = cpu
                        .iter()
                        .filter(|(_, (part, _))| part.starts_with("pipeline"))
                        .filter_map(|(pid, _)| rss_kb(*pid))
                        .sum();
                    Sample { at: Instant::now(), cpu, pipeline_rss_kb }
                })
                .await;
                taken.lock().unwrap_or_else(|e| e.into_inner()).extend(sample.ok());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        CpuSampler { samples, task }
    }

    /// Stops sampling; what was spent from the first sample to the last one taken by `until`.
    pub fn finish(self, until: Instant) -> Cost {
        self.task.abort();
        let samples = std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()));
        let within: Vec<&Sample> = samples.iter().filter(|sample| sample.at <= until).collect();
        let (cpu_seconds, seconds) = match (within.first(), within.last()) {
            (Some(first), Some(last)) => (cpu_spent(&first.cpu, &last.cpu), (last.at - first.at).as_secs_f64()),
            _ => (BTreeMap::new(), 0.0),
        };
        Cost { cpu_seconds, seconds, rss_kb: within.iter().map(|sample| sample.pipeline_rss_kb).collect() }
    }
}

pub struct Cost {
    cpu_seconds: BTreeMap<&'static str, f64>,
    seconds: f64,
    rss_kb: Vec<u64>,
}

impl Cost {
    /// CPU ms per order by part and in all, and how many of the machine's cores were busy.
    pub fn print(&self, orders: usize) {
        let orders = orders.max(1) as f64;
        let total: f64 = self.cpu_seconds.values().sum();
        let parts: Vec<String> =
            self.cpu_seconds.iter().map(|(part, seconds)| format!("{part} {:.2}", seconds * 1000.0 / orders)).collect();
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        println!(
            "    CPU ms per order: {} = {:.2}; {:.2} of {cores} cores busy",
            parts.join(", "),
            total * 1000.0 / orders,
            total / self.seconds.max(1e-9)
        );
        self.print_memory();
    }

    /// The pipeline's resident memory at the end of each quarter of the run, and its peak.
    fn print_memory(&self) {
        let Some(peak) = self.rss_kb.iter().max() else {
            return;
        };
        let mb = |kb: u64| format!("{:.0}", kb as f64 / 1024.0);
        let quarters: Vec<String> =
            (1..=4).map(|q| mb(self.rss_kb[(self.rss_kb.len() * q / 4).saturating_sub(1)])).collect();
        println!(
            "    pipeline RSS MB at each quarter of the run: {}; peak of the samples {}",
            quarters.join(" / "),
            mb(*peak)
        );
    }
}
