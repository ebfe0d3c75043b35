//! Reads a case's output `read_committed` and reports throughput and latency.

use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;

use crate::load::now_micros;

pub struct Observed {
    pub records: u64,
    /// From the first output seen to the last.
    pub elapsed: Duration,
    /// End-to-end latency of each record, µs, sorted.
    pub latencies_us: Vec<i64>,
}

impl Observed {
    pub fn per_second(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        bench::percentile::at_percentile(&self.latencies_us, p).map_or(f64::NAN, |us| *us as f64 / 1000.0)
    }
}

pub fn output_consumer(bootstrap: &str, topic: &str) -> BaseConsumer {
    bench::kafka::read_committed_consumer(bootstrap, topic).expect("measuring consumer")
}

/// Counts `expected` outputs (or gives up after `timeout` without progress).
pub fn observe(consumer: &BaseConsumer, expected: u64, timeout: Duration) -> Observed {
    let mut records = 0u64;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let mut latencies_us = Vec::with_capacity(expected as usize);
    while records < expected && last.elapsed() < timeout {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                records += 1;
                if let Some(sent) = message.payload().and_then(|p| p.get(..8)).and_then(|b| b.try_into().ok()) {
                    latencies_us.push(now_micros() - i64::from_be_bytes(sent));
                }
            }
            Some(Err(e)) => eprintln!("measure: consumer error: {e}"),
            None => {}
        }
    }
    latencies_us.sort_unstable();
    Observed { records, elapsed: first.map(|f| last - f).unwrap_or_default(), latencies_us }
}
