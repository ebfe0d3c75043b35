//! Input for a benchmark case: records whose value starts with the wall-clock time they were
//! produced at (µs since the epoch), so the measuring consumer can compute end-to-end latency.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

pub const VALUE_BYTES: usize = 100;
pub const KEYS: u64 = 10_000;

pub fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

fn producer(bootstrap: &str) -> ThreadedProducer<DefaultProducerContext> {
    bench::kafka::load_producer(bootstrap).expect("load producer")
}

fn send(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, n: u64) {
    let key = format!("key-{}", n % KEYS);
    let mut value = vec![b'x'; VALUE_BYTES];
    value[..8].copy_from_slice(&now_micros().to_be_bytes());
    let mut record = BaseRecord::to(topic).key(&key).payload(&value);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, returned)) => {
                std::thread::sleep(Duration::from_millis(1));
                record = returned;
            }
        }
    }
}

/// Produces `count` records as fast as the producer takes them.
pub fn preload(bootstrap: &str, topic: &str, count: u64) {
    let producer = producer(bootstrap);
    for n in 0..count {
        send(&producer, topic, n);
    }
    producer.flush(Duration::from_secs(60)).expect("flush preload");
}

/// Produces `rate` records per second for `duration`, paced in 10 ms slices.
pub fn paced(bootstrap: &str, topic: &str, rate: u64, duration: Duration) -> u64 {
    let producer = producer(bootstrap);
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < duration {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            send(&producer, topic, sent);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    producer.flush(Duration::from_secs(60)).expect("flush paced load");
    sent
}
