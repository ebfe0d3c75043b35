//! Poison records for `pipeline demo --poison-percent`: bytes no reader can decode, produced
//! straight to the order topic beside the demo's orders (as a buggy producer would), and the
//! check that each one was set aside in `<topic>.dlq`, once, by every group that reads it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::{Address, Envelope, OrderPlaced, Payload, SagaCodec, SagaEvent, DEFAULT_CURRENCY};

use super::changelog::read_all;
use super::invariants::Check;

/// The header that marks a demo poison record with its kind.
const KIND_HEADER: &str = "demo.poison";

/// A poison record the demo produced.
pub struct PoisonRecord {
    pub key: String,
    pub kind: &'static str,
}

/// The poison kinds, in turn: what a reader of Confluent-framed Avro cannot get past.
fn poison_value(kind: &str, valid: &[u8]) -> Vec<u8> {
    match kind {
        "bad_magic_byte" => vec![0x01, 0, 0, 0, 1, 2, 4],
        // Framed right, but the registry never issued this id.
        "unknown_schema_id" => vec![0x00, 0x7f, 0xff, 0xff, 0xf0, 2, 4],
        "truncated_avro" => valid[..valid.len().min(9)].to_vec(),
        _ => Vec::new(),
    }
}

const KINDS: [&str; 4] = ["bad_magic_byte", "unknown_schema_id", "truncated_avro", "empty_value"];

/// Produces `count` poison records to `topic`, one every `every`, keyed `<run>-poison-<n>`.
pub async fn produce(
    bootstrap: &str,
    topic: &str,
    codec: &SagaCodec,
    run_id: &str,
    count: usize,
    every: Duration,
) -> Result<Vec<PoisonRecord>> {
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().context("creating the poison producer")?;
    let address = Address {
        line1: "1 Example Street".into(),
        line2: None,
        city: "Berlin".into(),
        postal_code: "10115".into(),
        country: "DE".into(),
    };
    let placed = OrderPlaced {
        customer_id: format!("{run_id}-poison"),
        items: vec![],
        total_cents: 0,
        shipping_address: address,
        currency: DEFAULT_CURRENCY.into(),
        coupon_code: None,
    };
    let sample = SagaEvent::new(Envelope::new(format!("{run_id}-poison"), "poison", 0), Payload::OrderPlaced(placed));
    let valid =
        codec.encode(topic, &sample).await.context("encoding the sample event the truncated poison is cut from")?;
    let mut produced = Vec::with_capacity(count);
    for n in 0..count {
        let (key, kind) = (format!("{run_id}-poison-{n}"), KINDS[n % KINDS.len()]);
        let value = poison_value(kind, &valid);
        let headers = OwnedHeaders::new().insert(Header { key: KIND_HEADER, value: Some(kind) });
        producer
            .send(FutureRecord::to(topic).key(&key).payload(&value).headers(headers), Duration::from_secs(30))
            .await
            .map_err(|(error, _)| error)
            .with_context(|| format!("producing poison record {key}"))?;
        produced.push(PoisonRecord { key, kind });
        tokio::time::sleep(every).await;
    }
    Ok(produced)
}

/// Each poison record is in `<topic>.dlq` exactly once per group in `readers`, as poison, with
/// its original bytes' coordinates.
pub fn check(bootstrap: &str, topic: &str, readers: &[&str], produced: &[PoisonRecord]) -> Result<Check> {
    let dead_letters = read_all(bootstrap, &format!("{topic}.dlq"), Duration::from_secs(120))?;
    let mut by_key: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for record in dead_letters {
        let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
        let header =
            |name: &str| record.headers.get(name).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
        by_key.entry(key).or_default().push((header("dlq.consumer.group"), header("dlq.error.class")));
    }
    let expected: BTreeSet<&str> = readers.iter().copied().collect();
    let mut violations = Vec::new();
    for record in produced {
        let letters = by_key.get(&record.key).map(Vec::as_slice).unwrap_or_default();
        let groups: Vec<&str> = letters.iter().map(|(group, _)| group.as_str()).collect();
        let distinct: BTreeSet<&str> = groups.iter().copied().collect();
        if distinct != expected || groups.len() != expected.len() {
            violations.push(format!(
                "{} ({}): dead-lettered by {groups:?}, expected once by each of {expected:?}",
                record.key, record.kind
            ));
        }
        if let Some((group, class)) = letters.iter().find(|(_, class)| class != "poison") {
            violations.push(format!("{} ({}): {group} classed it {class:?}, not poison", record.key, record.kind));
        }
    }
    Ok(Check {
        name: "every poison record dead-lettered once by every group that reads its topic, as poison",
        violations,
    })
}
