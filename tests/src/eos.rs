//! The pieces of an exactly-once verification run, after Kafka's `streams_eos_test.py` and
//! `EosTestDriver`: a generator of numbered input, and a verifier that reads the app's
//! `read_committed` outputs and checks nothing was lost or duplicated.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::kafka::{read_topic, Consumed};

/// Keys the generator spreads records over.
pub const KEYS: usize = 12;

/// Produces `count` records: key `k<i % KEYS>`, value = the record's number (1-based) as an
/// 8-byte big-endian i64. Returns what each key received, in order.
pub fn generate(bootstrap: &str, topic: &str, first: i64, count: i64) -> BTreeMap<String, Vec<i64>> {
    generate_over(bootstrap, &[topic], first, count)
}

/// [`generate`] over several co-partitioned topics: each key's records rotate through all of
/// them, and murmur2 (as Java clients use) puts a key on the same partition number in each.
pub fn generate_over(bootstrap: &str, topics: &[&str], first: i64, count: i64) -> BTreeMap<String, Vec<i64>> {
    // Not n % topics.len() for the topic: with KEYS a multiple of it, a key would always get the
    // same topic.
    generate_with(bootstrap, first, count, |n| {
        (topics[n as usize / KEYS % topics.len()], format!("k{}", n as usize % KEYS))
    })
}

/// Produces `count` records, each under a key of its own (`n` zero-padded to `key_len` bytes),
/// so that every record adds an entry of about `key_len` bytes to a store keyed by it.
pub fn generate_distinct_keys(
    bootstrap: &str,
    topic: &str,
    first: i64,
    count: i64,
    key_len: usize,
) -> BTreeMap<String, Vec<i64>> {
    generate_with(bootstrap, first, count, |n| (topic, format!("{n:0>key_len$}")))
}

/// Produces records `first..first + count` to the topic and under the key `route` gives each
/// number; the value is the number as an 8-byte big-endian i64.
fn generate_with<'a>(
    bootstrap: &str,
    first: i64,
    count: i64,
    route: impl Fn(i64) -> (&'a str, String),
) -> BTreeMap<String, Vec<i64>> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .expect("generator producer");
    let mut sent: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for n in first..first + count {
        let (topic, key) = route(n);
        let value = n.to_be_bytes();
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    std::thread::sleep(Duration::from_millis(5));
                    record = returned;
                }
            }
        }
        sent.entry(key).or_default().push(n);
    }
    producer.flush(Duration::from_secs(30)).expect("generator flush");
    sent
}

pub fn decode_i64(bytes: &Option<Vec<u8>>) -> i64 {
    let bytes = bytes.as_deref().expect("value present");
    i64::from_be_bytes(bytes.try_into().expect("8-byte value"))
}

pub fn key_of(record: &Consumed) -> String {
    String::from_utf8(record.key.clone().unwrap_or_default()).expect("utf-8 key")
}

/// Reads a topic `read_committed` until it holds `expected` records (or a timeout passes), then
/// groups the values by key in partition order.
pub fn read_committed_by_key(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> BTreeMap<String, Vec<i64>> {
    let records = read_topic(bootstrap, topic, "read_committed", timeout, |r| r.len() >= expected);
    // A short grace read: anything beyond `expected` is a duplicate the verifier must see.
    let extra = read_topic(bootstrap, topic, "read_committed", Duration::from_secs(3), |r| r.len() > expected);
    let records = if extra.len() > records.len() { extra } else { records };
    values_by_key(&records)
}

/// Each key's i64 values, in the order read (partition order, as a key has one partition).
pub fn values_by_key(records: &[Consumed]) -> BTreeMap<String, Vec<i64>> {
    let mut by_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for record in records {
        by_key.entry(key_of(record)).or_default().push(decode_i64(&record.value));
    }
    by_key
}

/// Echo output must equal the input, per key and in order: no loss, no duplicates.
pub fn verify_echo(sent: &BTreeMap<String, Vec<i64>>, echoed: &BTreeMap<String, Vec<i64>>) -> Result<(), String> {
    for (key, values) in sent {
        let got = echoed.get(key).cloned().unwrap_or_default();
        if &got != values {
            return Err(describe_mismatch("echo", key, values, &got));
        }
    }
    if let Some(extra) = echoed.keys().find(|k| !sent.contains_key(*k)) {
        return Err(format!("echo has a key that was never sent: {extra}"));
    }
    Ok(())
}

/// The running sum per key must be the prefix sums of the input: any lost or repeated state
/// update shows up as a wrong number.
pub fn verify_sums(sent: &BTreeMap<String, Vec<i64>>, sums: &BTreeMap<String, Vec<i64>>) -> Result<(), String> {
    for (key, values) in sent {
        let expected: Vec<i64> = values
            .iter()
            .scan(0i64, |acc, v| {
                *acc += v;
                Some(*acc)
            })
            .collect();
        let got = sums.get(key).cloned().unwrap_or_default();
        if got != expected {
            return Err(describe_mismatch("sum", key, &expected, &got));
        }
    }
    Ok(())
}

fn describe_mismatch(output: &str, key: &str, expected: &[i64], got: &[i64]) -> String {
    let first_difference = expected.iter().zip(got).position(|(a, b)| a != b).unwrap_or(expected.len().min(got.len()));
    format!(
        "{output} for {key}: expected {} values, got {}; first difference at #{first_difference}: expected {:?}, got {:?}",
        expected.len(),
        got.len(),
        expected.get(first_difference),
        got.get(first_difference)
    )
}
