//! Reads a run's payment topic `read_committed`: how fast replies come, and how late.

use std::time::{Duration, Instant};

use anyhow::Result;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;

use crate::orders::now_ms;

pub struct Replies {
    consumer: BaseConsumer,
}

pub struct Observed {
    pub replies: u64,
    /// From the start of `observe` to the first reply seen.
    pub until_first: Duration,
    /// From the first reply seen to the last.
    pub elapsed: Duration,
    /// Per reply to a record produced at or after `latency_from_ms`: ms from that record's
    /// timestamp (which the reply carries on) to the reply seen, sorted.
    pub latencies_ms: Vec<i64>,
}

impl Observed {
    pub fn per_second(&self) -> f64 {
        self.replies as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        bench::percentile::at_percentile(&self.latencies_ms, p).map_or(f64::NAN, |ms| *ms as f64)
    }
}

impl Replies {
    pub fn subscribe(bootstrap: &str, topic: &str) -> Result<Self> {
        Ok(Replies { consumer: bench::kafka::read_committed_consumer(bootstrap, topic)? })
    }

    /// Counts `expected` replies, or gives up after `patience` without one. `on_first` runs when
    /// the first reply is seen, so that a caller can take a baseline there (start-up excluded).
    pub fn observe(
        &self,
        expected: u64,
        latency_from_ms: i64,
        patience: Duration,
        on_first: impl FnOnce(),
    ) -> Observed {
        let started = Instant::now();
        let (mut replies, mut first, mut last) = (0u64, None::<Instant>, started);
        let mut on_first = Some(on_first);
        let mut latencies_ms = Vec::new();
        while replies < expected && last.elapsed() < patience {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    let now = Instant::now();
                    if first.is_none() {
                        first = Some(now);
                        if let Some(on_first) = on_first.take() {
                            on_first();
                        }
                    }
                    last = now;
                    replies += 1;
                    if let Some(produced_ms) = message.timestamp().to_millis().filter(|ms| *ms >= latency_from_ms) {
                        latencies_ms.push(now_ms() - produced_ms);
                    }
                }
                Some(Err(e)) => eprintln!("peer-bench: replies consumer: {e}"),
                None => {}
            }
        }
        latencies_ms.sort_unstable();
        Observed {
            replies,
            until_first: first.map(|f| f - started).unwrap_or_default(),
            elapsed: first.map(|f| last - f).unwrap_or_default(),
            latencies_ms,
        }
    }
}
